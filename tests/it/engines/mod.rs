//! The store on both engines.

mod files;
mod hosts;
mod remove_race;
mod store;
