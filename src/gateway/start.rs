//! The process start of the CGI programs, without Rust's runtime start.
//!
//! A CGI program starts once per request, so what Rust's `lang_start` does before
//! `main` is paid on every click. Most of it is finding the main thread's stack bounds
//! for the stack-overflow message: glibc's `pthread_getattr_np` reads and `sscanf`s
//! `/proc/self/maps`, about 45 k instructions of a request's 940 k (CHANGELOG.md, 2026-11-30,
//! "The CGI start"). The programs are `#![no_main]` with a C `main` ([`crate::cgi_main`])
//! that does here only the parts of that start a CGI program or a FastCGI responder
//! needs. std still gets the arguments and the environment: glibc hands them to std's
//! `.init_array` entry whatever `main` is.
//!
//! Kept from Rust's start:
//! - SIGPIPE ignored: a client that went away makes a write fail with `EPIPE`, which the
//!   gateway ignores (CGI) or turns into the end of one connection (FastCGI), instead
//!   of killing the process, and with it a FastCGI responder's other requests.
//! - fds 0, 1 and 2 opened on `/dev/null` when a server started the program without
//!   them: otherwise the database or a spool file could be opened as fd 1 and the
//!   answer written into it.
//!
//! Left out:
//! - the stack-overflow handler. An overflow still kills the process with SIGSEGV (the
//!   guard page is the kernel's), only without std's one-line message; the server logs
//!   the signal.
//! - the flush of stdout at exit: the gateway flushes every answer itself.
//! - the catch of a panic that escapes `main` (exit status 101): one outside the
//!   handler's `catch_unwind` now aborts the process instead. Neither answers.

use std::ffi::c_int;
use std::process::ExitCode;

/// What a C `main` returns for the gateway's exit status.
fn status(code: ExitCode) -> c_int {
    if code == ExitCode::SUCCESS { 0 } else { 1 }
}

/// The whole body of a CGI program's C `main`: the parts of Rust's start a CGI program
/// needs, then [`super::run_program`] for the executable `name`.
pub fn cgi_main(name: &str) -> c_int {
    ignore_sigpipe();
    open_standard_fds();
    status(super::run_program(name))
}

fn ignore_sigpipe() {
    // SAFETY: setting a signal's disposition to SIG_IGN runs no code of ours.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
}

/// Opens `/dev/null` on whichever of fds 0, 1, 2 is closed, as Rust's start does: one
/// `poll` system call when all three are open (always, under a web server).
fn open_standard_fds() {
    let mut fds = [0, 1, 2].map(|fd| libc::pollfd { fd, events: 0, revents: 0 });
    // SAFETY: `fds` is a valid array of three pollfd for the duration of the call.
    let rc = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 0) };
    if rc < 0 {
        // poll itself failed (EINTR, ENOMEM): check each fd the slow way.
        for fd in 0..3 {
            // SAFETY: F_GETFD on any integer only reads the fd table.
            if unsafe { libc::fcntl(fd, libc::F_GETFD) } == -1 {
                reopen_null(fd);
            }
        }
        return;
    }
    for pfd in fds {
        if pfd.revents & libc::POLLNVAL != 0 {
            reopen_null(pfd.fd);
        }
    }
}

/// Opens `/dev/null` as `fd`, the lowest closed descriptor (fds are filled in order).
fn reopen_null(fd: c_int) {
    // SAFETY: a NUL-terminated path; the fd returned is left open on purpose.
    let opened = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDWR) };
    if opened != fd && opened >= 0 {
        // Not the lowest: another fd below it was closed too and is reopened first.
        // SAFETY: moving our own fresh fd onto `fd`, then closing the copy.
        unsafe {
            libc::dup2(opened, fd);
            libc::close(opened);
        }
    }
}

/// The `main` of a CGI program (`bin/<program>.rs`, which is `#![no_main]` but in its
/// test build): a C `main`
/// that runs [`cgi_main`] for the executable's name, without Rust's runtime start.
///
/// `main` itself stays a Rust function of the program (`<program>::main`, never inlined),
/// so a profile shows the start apart from the request.
#[macro_export]
macro_rules! cgi_main {
    () => {
        #[inline(never)]
        fn main() -> ::std::ffi::c_int {
            $crate::gateway::start::cgi_main(env!("CARGO_BIN_NAME"))
        }

        // A test build of the program keeps the test harness's `main`.
        #[cfg(not(test))]
        mod c_start {
            /// The C entry point glibc's start calls with the arguments (which std has
            /// already taken from its `.init_array` hook).
            #[unsafe(no_mangle)]
            extern "C" fn main(_argc: ::std::ffi::c_int, _argv: *const *const ::std::ffi::c_char) -> ::std::ffi::c_int {
                super::main()
            }
        }
    };
}
