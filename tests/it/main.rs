//! The one integration-test binary: each module runs the real executables (or
//! `gateway::respond` in-process) against its own temporary database.

mod support;

mod attacks;
mod authz;
mod concurrency;
mod docs;
mod doctor;
mod drain_faults;
mod fastcgi;
mod gateway;
mod hostile_input;
mod hosts;
mod message_poll;
mod process;
mod programs;
mod queue_kill;
mod remove_race;
mod security;
mod start;
mod store;
mod tooling;
mod trust;
mod users;
mod wrap;
