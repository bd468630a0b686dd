//! The one integration-test binary: each module runs the real executables (or
//! `gateway::respond` in-process) against its own temporary database.
//!
//! Where a new test goes (a subject with several files is a folder; pick the file
//! whose opening line fits, or add one and list it in the folder's `mod.rs`):
//!
//! - `endpoints` what each program answers: profile, friends, posts, messages and their notices
//! - `announce`  `site_messages`: announced exactly once, counters, acknowledgements, claims, the status poll
//! - `identity`  who the caller is and what they may see: sessions, cookies, login, REMOTE_USER, proxies, https
//! - `limits`    send and post rates, daily quotas, login lockouts, limits under parallel requests
//! - `input`     hostile, malformed and unusual requests: methods, lengths, bodies, headers, bad text
//! - `settings`  misconfiguration: missing or bad settings, a database of another schema, piggyback doctor
//! - `queue`     the request-file spool, drain and msqd, faults of disk and database, the kill test
//! - `engines`   the store on both engines: its calls, files and modes, hosts, removal races, locks
//! - `users`     user names and the user admin commands
//! - `cli`       the piggyback command: usage, exit codes, init, seed, check
//! - `wrapper`   piggyback-wrap: a site's own programs, their answers, servers, shebangs, identity
//! - `fastcgi`   the FastCGI responder and the C start of every program
//! - `docs`      the docs hold true: snippets run, quoted numbers, names that exist
//! - `tooling`   the list of programs and packages the tests and scripts need
//!
//! `support` holds what several subjects share: sites, programs, requests, both engines.

mod support;

mod announce;
mod cli;
mod docs;
mod endpoints;
mod engines;
mod fastcgi;
mod identity;
mod input;
mod limits;
mod queue;
mod settings;
mod tooling;
mod users;
mod wrapper;
