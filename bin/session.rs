//! A CGI program: the handler `piggyback::handlers::PROGRAMS` pairs with this executable's name.
//! `no_main`: a C `main` skips Rust's runtime start, paid on every request (`gateway::start`).
#![cfg_attr(not(test), no_main)]
piggyback::cgi_main!();
