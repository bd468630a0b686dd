//! Piggyback: in-site message notifications carried on every CGI JSON response.
//!
//! The modules follow the parts of patent CN101079848A:
//! [`gateway`] receives the CGI request and writes the response, [`handlers`] do each
//! program's work, [`message_status`] claims what is new for a user (flips it to
//! delivered) as `site_messages`, [`message_store`] is the message database (the only
//! SQL), and [`msq`] is the message queue: the spool's front door, through which every
//! send is made durable before it is stored. [`model`] holds the values they share.

pub mod alloc;
pub mod config;
pub mod csrf;
pub mod file_mode;
pub mod gateway;
pub mod handlers;
pub mod http;
pub mod identity;
pub mod message_status;
pub mod message_store;
pub mod model;
pub mod msq;
pub mod names;
pub mod password;
pub mod proxy;
pub mod sidecars;
pub mod text;
pub mod wrap;

#[global_allocator]
static ALLOCATOR: alloc::Allocator = alloc::Allocator;
