//! The request-file queue: spool, drain, msqd, faults, kills.

mod drain_faults;
mod kill;
mod spool;
