//! `site_messages`: what is announced, once, and what is counted.

mod once;
mod parallel;
mod poll;
