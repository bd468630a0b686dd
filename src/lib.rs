//! Piggyback: in-site message notifications carried on every CGI JSON response.
//!
//! The modules follow the parts of patent CN101079848A:
//! [`gateway`] receives the CGI request and writes the response, [`message_status`]
//! finds what is new for a user and flips it to delivered, [`message_store`] is the
//! message database (the only SQL), and [`msq`] is the message-queue layer through
//! which every operation on that database runs.
#![deny(clippy::print_stdout, clippy::print_stderr)]

pub mod cli;
pub mod config;
pub mod csrf;
pub mod gateway;
pub mod handlers;
pub mod http;
pub mod identity;
pub mod message_status;
pub mod message_store;
pub mod msq;
pub mod password;
pub mod spool;
pub mod text;
pub mod wrap;
