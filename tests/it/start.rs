//! The CGI programs' own process start (`gateway::start`): what they keep of Rust's
//! runtime start without running it.

use std::process::Command;

use crate::support::{Program, Site};

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
