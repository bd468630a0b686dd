//! The C start: CGI or FastCGI by stdin, SIGPIPE.

use super::*;
use crate::support::{Program, Site, parse_response};
use std::io::Write;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};

#[test]
fn a_cgi_program_with_a_connected_socket_on_stdin_stays_cgi() {
    // Apache mod_cgid passes a connected socket on fd 0: not listening, so plain CGI.
    let site = site();
    let cgi = site.cgi(Program::Profile).user("alice").method("POST").body("application/json", br#"{"bio":"x"}"#);
    let (mut ours, theirs) = UnixStream::pair().unwrap();
    ours.write_all(cgi.body_bytes()).unwrap();
    ours.shutdown(std::net::Shutdown::Write).unwrap();
    let out = Command::new(Program::Profile.executable())
        .env_clear()
        .envs(cgi.env())
        .stdin(Stdio::from(OwnedFd::from(theirs.try_clone().unwrap())))
        .output()
        .unwrap();
    drop(theirs.shutdown(std::net::Shutdown::Both));
    assert!(out.status.success());
    let response = parse_response(&out.stdout, false);
    assert_ne!(response.status, 500, "{}", response.json);
    assert!(response.has_site_messages());
}

/// A client that went away leaves the program a pipe nobody reads. The write of the
/// answer fails with EPIPE, which the program ignores: it is not killed by SIGPIPE
/// (std's `Command` starts children with SIGPIPE at its default, killing, action).
#[test]
fn a_program_whose_reader_is_gone_exits_normally_not_by_sigpipe() {
    let site = Site::new(&["alice"]);
    for program in Program::ALL {
        let cgi = site.cgi(program).user("alice");
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let status = Command::new(program.executable())
            .env_clear()
            .envs(cgi.env())
            .stdin(std::process::Stdio::null())
            .stdout(writer)
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "{}: {status}", program.name());
    }
}
