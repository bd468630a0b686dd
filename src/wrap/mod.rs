//! `piggyback-wrap`: the gateway for programs we did not write. Configured as the
//! interpreter of a site's own CGI programs, it runs the program and adds
//! `site_messages` (computed by `gateway::site_messages`, the same single place as for
//! our programs) to its JSON answers; any other body passes byte for byte.
//!
//! [`run`] is the only code here that touches the process as a CGI program, and
//! [`fastcgi`] as a FastCGI responder (kept running, as fcgiwrap is); both run a request
//! through the same `run_target`, under the same rules. [`target`] decides what may
//! run, [`answer`] relays what it answers, [`identity`] decides who it is for,
//! [`settings`] reads the settings.

pub mod answer;
pub mod fastcgi;
pub mod identity;
pub mod settings;
pub mod target;

use std::cell::Cell;
use std::ffi::OsString;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, ChildStdout, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::gateway::{Cause, Env, Kept, log};
use crate::http::reason_phrase;

use answer::{Call, Framing, Limits, Outcome, Own, Why};
use settings::Settings;
use target::Launch;

/// The whole `main` of `piggyback-wrap`: one CGI request, or, started with a listening
/// socket (fd 0, or systemd's socket activation), FastCGI requests until it is stopped.
pub fn run() -> ExitCode {
    if fastcgi::listening() {
        return fastcgi::serve();
    }
    let mut env: Env = std::env::vars_os().filter_map(|(k, v)| k.into_string().ok().map(|k| (k, v))).collect();
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let wrapper = own_path();
    let settings = load_settings(&mut env, &wrapper);
    let mut stdout = std::io::stdout().lock();
    let cwd = std::env::current_dir().unwrap_or_default();
    let exec_fn = kernel_exec_fn();
    let target = match target::resolve(&env, &args, &cwd, &wrapper, exec_fn.as_deref(), &settings) {
        Ok(target) => target,
        Err(refusal) => {
            refuse(&refusal, &mut stdout);
            return ExitCode::SUCCESS;
        }
    };
    // The server stops a CGI with SIGTERM (lighttpd when the client goes away or its
    // timeout passes): then the program is stopped too, not left running alone. Handled
    // from before the program starts, so a signal in between cannot orphan it.
    let stopped = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT, signal_hook::consts::SIGHUP] {
        if let Err(e) = signal_hook::flag::register(signal, Arc::clone(&stopped)) {
            log(&format!("piggyback-wrap: cannot handle signal {signal}: {e}"));
        }
    }
    let mut kept = Kept::default();
    let mut complaints = Complaints::default();
    run_target(&env, &target, &settings, Body::Inherited, &mut stdout, &stopped, &mut kept, &mut complaints);
    if stopped.load(Ordering::SeqCst) {
        log(&format!(
            "piggyback-wrap: {}: stopped by the server; the program was stopped too",
            target.program.display()
        ));
    }
    ExitCode::SUCCESS
}

/// The wrapper's own real path (the rules refuse to run it), resolved once: the
/// request's checks compare resolved paths with it as it is.
fn own_path() -> PathBuf {
    let named = PathBuf::from(std::env::args_os().next().unwrap_or_default());
    std::env::current_exe()
        .and_then(std::fs::canonicalize)
        // Without /proc, the name it was started by, resolved now: a kept FastCGI
        // wrapper moves to each program's folder, so a relative name means nothing later.
        .or_else(|_| std::fs::canonicalize(&named))
        .unwrap_or(named)
}

/// The settings: `env` filled from the install's settings file, then read; each
/// problem logged.
fn load_settings(env: &mut Env, wrapper: &Path) -> Settings {
    let file_problem =
        wrapper.parent().and_then(|folder| settings::merge_file(env, &folder.join(settings::CONFIG_FILE)));
    if let Some(problem) = &file_problem {
        log(&format!("piggyback-wrap: {problem}"));
    }
    let (settings, problems) = Settings::from_lookup(|name| env.get(name).cloned());
    for problem in &problems {
        match &file_problem {
            // The missing setting is the file's fault: say so on the same line.
            Some(cause) if problem.ends_with("is not set") => log(&format!("piggyback-wrap: {problem}: {cause}")),
            _ => log(&format!("piggyback-wrap: {problem}")),
        }
    }
    settings
}

/// Answers a request the wrapper will not run, and logs why.
fn refuse(refusal: &target::Refusal, out: &mut dyn Write) {
    log(&format!("piggyback-wrap: refused: {}", refusal.why));
    let _ = out.write_all(&refusal_answer(refusal.status)).and_then(|()| out.flush());
}

/// Where the program's stdin comes from.
enum Body<'a> {
    /// The wrapper's own fd 0, untouched (CGI: a pipe, a file or a socket).
    Inherited,
    /// These bytes, through a pipe (FastCGI: the request's STDIN records).
    Bytes(&'a [u8]),
}

/// Runs the checked `target` with `env` (the request's, rebuilt for the program by
/// `target::child_env`) and relays its answer to `out`, deciding who it is for with
/// `identity::decide`. The same for both modes: only where the body comes from, where
/// the answer goes and what is kept between requests differ. `stopped` set (by a
/// signal) stops the program.
#[allow(clippy::too_many_arguments)]
fn run_target(
    env: &Env,
    target: &target::Target,
    settings: &Settings,
    body: Body<'_>,
    out: &mut dyn Write,
    stopped: &AtomicBool,
    kept: &mut Kept,
    complaints: &mut Complaints,
) {
    let mut command = match &target.launch {
        Launch::Itself => Command::new(&target.program),
        Launch::Mapped(interpreter) => Command::new(interpreter),
        Launch::Shebang(interpreter) => {
            let mut command = Command::new(interpreter);
            command.arg(&target.program);
            command
        }
    };
    command
        .env_clear()
        .envs(target::child_env(env, target, settings))
        .stdin(match body {
            // The body stays on fd 0 for the program, whatever it is (a pipe, a file, a socket).
            Body::Inherited => Stdio::inherit(),
            Body::Bytes([]) => Stdio::null(),
            Body::Bytes(_) => Stdio::piped(),
        })
        .stdout(Stdio::piped())
        // The program's complaints go where the server logs a CGI program's stderr.
        .stderr(Stdio::inherit())
        // A group of its own, so that stopping it also stops what it started (a shell
        // script's `sleep`, a pipeline), which would otherwise run on alone.
        .process_group(0);
    // The program runs in its own folder. The wrapper moves there itself rather than
    // asking `Command` to: with a working directory to set, the standard library (in a
    // static build) forks, copying a kept FastCGI wrapper's page tables on every
    // request (3 ms); without one it uses posix_spawn, which does not. Every path the
    // wrapper itself uses is absolute.
    let spawned = std::env::set_current_dir(target.folder()).and_then(|()| command.spawn());
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) => {
            log(&format!("piggyback-wrap: cannot start {}: {e}", target.program.display()));
            let _ = out.write_all(&refusal_answer(500)).and_then(|()| out.flush());
            return;
        }
    };
    let Some(child_out) = child.stdout.take() else {
        return;
    };
    let pid = child.id();
    let deadline = Instant::now() + settings.timeout;
    let expired = Cell::new(false);
    let framing = if target.is_nph() { Framing::Nph } else { Framing::Cgi };
    let limits = Limits { buffer_bytes: settings.buffer_bytes };
    let text = |name: &str| env.get(name).and_then(|v| v.to_str());
    let call = Call::of(text("HTTP_SEC_FETCH_MODE"), text("HTTP_SEC_FETCH_DEST"));
    let mut notes = Vec::new();
    let body = match (child.stdin.take(), &body) {
        (Some(pipe), Body::Bytes(bytes)) => Some((pipe, *bytes)),
        _ => None,
    };
    // No thread: the answer is read, and the body written, as each becomes possible,
    // within the deadline (`Watched`).
    let watched = Watched::new(child_out, body, pid, deadline, stopped, &expired);
    let outcome = answer::relay(watched, &mut *out, framing, limits, call, &|| expired.get(), |answered| {
        let (attach, said) = identity::decide(env, settings, answered, crate::model::now(), kept);
        notes = said;
        attach
    });
    // The program has closed its output; it still may not linger past the deadline. It
    // is reaped only once it has ended and nothing will signal it any more, so its pid
    // (and group) cannot pass to another process while `stop_program` may name them.
    wait_bounded(pid, deadline, stopped, &expired);
    let _ = child.wait();
    let program = target.program.display();
    for note in &notes {
        complaints.say(note.cause, &format!("piggyback-wrap: {program}: {}", note.line));
    }
    match &outcome {
        Ok(Outcome::PassedThrough(Why::Failed(_)) | Outcome::OwnRemoved(Why::Failed(_))) => {
            // Said above, with its cause.
        }
        Ok(Outcome::PassedThrough(Why::TooLarge)) => log(&format!(
            "piggyback-wrap: {program}: JSON answer larger than PIGGYBACK_WRAP_BUFFER ({} bytes): \
             passed without site_messages",
            settings.buffer_bytes
        )),
        Ok(Outcome::TimedOut) => {
            log(&format!("piggyback-wrap: {program}: stopped after PIGGYBACK_WRAP_TIMEOUT; answered 504"));
        }
        _ => {}
    }
    if let Ok(Outcome::Piggybacked(Own::Replaced) | Outcome::OwnRemoved(_)) = &outcome {
        complaints.say(
            Cause::OwnMember,
            &format!("piggyback-wrap: {program}: its answer had a site_messages member of its own; removed"),
        );
    }
    // The client went away (the server closed our stdout): nothing is left to do.
    if let Err(e) = &outcome {
        log(&format!("piggyback-wrap: {program}: writing the answer: {e}"));
    }
    if expired.get() {
        log(&format!("piggyback-wrap: {program}: stopped after PIGGYBACK_WRAP_TIMEOUT"));
    }
}

/// Which causes were logged when, so that each is said at most once a minute by a
/// process (a FastCGI responder serves many requests; a CGI process one).
#[derive(Default)]
pub struct Complaints(std::collections::HashMap<Cause, Instant>);

impl Complaints {
    /// Logs `line` unless `cause` was logged less than a minute ago.
    pub fn say(&mut self, cause: Cause, line: &str) {
        if self.due(cause, Instant::now()) {
            log(line);
        }
    }

    /// Whether `cause` may be said at `now`; remembers that it is.
    pub fn due(&mut self, cause: Cause, now: Instant) -> bool {
        match self.0.get(&cause) {
            Some(said) if now.duration_since(*said) < Duration::from_secs(60) => false,
            _ => {
                self.0.insert(cause, now);
                true
            }
        }
    }
}

/// What the kernel's `execve` was given as the file to run (`AT_EXECFN`): the program's
/// own path when the kernel ran it and found the wrapper in its `#!` line, the
/// wrapper's when a server started the wrapper.
fn kernel_exec_fn() -> Option<OsString> {
    use std::os::unix::ffi::OsStrExt;
    // SAFETY: getauxval reads the auxiliary vector; AT_EXECFN, when present, points to a
    // NUL-terminated string the kernel placed on the initial stack, valid for the life
    // of the process.
    let pointer = unsafe { libc::getauxval(libc::AT_EXECFN) } as *const libc::c_char;
    if pointer.is_null() {
        return None;
    }
    let name = unsafe { std::ffi::CStr::from_ptr(pointer) };
    Some(std::ffi::OsStr::from_bytes(name.to_bytes()).to_owned())
}

/// Kills the program and every process of its group (it was started as the leader of
/// its own group), then the program itself should the group be gone already.
fn stop_program(pid: u32) {
    if let Ok(pid) = libc::pid_t::try_from(pid) {
        // SAFETY: kill(2) takes plain integers; a negative pid names the program's group,
        // which only it and what it started belong to. The program is not reaped before
        // the last call of this (`wait_bounded` returns first), so neither number can
        // name another process.
        unsafe {
            libc::kill(-pid, libc::SIGKILL);
            libc::kill(pid, libc::SIGKILL);
        }
    }
}

/// How long the wrapper waits at most before it looks at `stopped` and the clock again.
const SLICE: Duration = Duration::from_millis(50);

/// The program's output, read only within the deadline, and its request body, written
/// to it while its output is awaited (a program may read its whole body before it
/// answers, or answer as it reads). When the deadline passes (or, in CGI mode, the
/// server stops the wrapper) with nothing to read, it stops the program's group and
/// ends the output: [`answer::relay`] then sees the end, and `expired` says why.
struct Watched<'a> {
    out: ChildStdout,
    /// The pipe to the program's stdin and what is left to write to it (non-blocking:
    /// a program that never reads its body must not hold the wrapper).
    body: Option<(ChildStdin, &'a [u8])>,
    pid: u32,
    deadline: Instant,
    stopped: &'a AtomicBool,
    expired: &'a Cell<bool>,
    /// The program was stopped: its output ends here, whoever else holds the pipe.
    over: bool,
}

impl<'a> Watched<'a> {
    fn new(
        out: ChildStdout,
        body: Option<(ChildStdin, &'a [u8])>,
        pid: u32,
        deadline: Instant,
        stopped: &'a AtomicBool,
        expired: &'a Cell<bool>,
    ) -> Watched<'a> {
        let body = body.filter(|(pipe, _)| match set_nonblocking(pipe.as_raw_fd()) {
            Ok(()) => true,
            // Never seen on a pipe just made; a blocking write could hold the wrapper
            // past the deadline, so the program reads an empty body instead.
            Err(e) => {
                log(&format!("piggyback-wrap: the request body cannot be passed to the program: {e}"));
                false
            }
        });
        Watched { out, body, pid, deadline, stopped, expired, over: false }
    }

    /// Writes what the pipe takes of the body; the pipe is closed (the program reads
    /// the end of its body) once all is written, or dropped when the program closed it.
    fn feed(&mut self) {
        let Some((pipe, rest)) = &mut self.body else { return };
        match pipe.write(rest) {
            Ok(n) => {
                *rest = &rest[n..];
                if rest.is_empty() {
                    self.body = None;
                }
            }
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted) => {}
            // The program closed its stdin (or ended): the rest is not wanted.
            Err(_) => self.body = None,
        }
    }

    /// Stops the program's group: its output ends now.
    fn stop(&mut self, timed_out: bool) -> usize {
        if timed_out {
            self.expired.set(true);
        }
        stop_program(self.pid);
        self.over = true;
        self.body = None;
        0
    }
}

impl Read for Watched<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            if self.over {
                return Ok(0);
            }
            if self.stopped.load(Ordering::SeqCst) {
                return Ok(self.stop(false));
            }
            let left = self.deadline.saturating_duration_since(Instant::now());
            let mut fds = [
                libc::pollfd { fd: self.out.as_raw_fd(), events: libc::POLLIN, revents: 0 },
                libc::pollfd { fd: -1, events: libc::POLLOUT, revents: 0 },
            ];
            if let Some((pipe, _)) = &self.body {
                fds[1].fd = pipe.as_raw_fd();
            }
            // SAFETY: `fds` is a valid array of two pollfd; a negative fd is ignored.
            let ready = unsafe { libc::poll(fds.as_mut_ptr(), 2, millis(left.min(SLICE))) };
            if ready < 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            if fds[1].revents != 0 {
                self.feed();
            }
            if fds[0].revents != 0 {
                // Data, the end (every writer closed it) or an error: read says which.
                return self.out.read(buf);
            }
            if left.is_zero() {
                return Ok(self.stop(true));
            }
        }
    }
}

/// `d` in whole milliseconds for poll(2), rounded up so that a wait is never cut to 0.
fn millis(d: Duration) -> libc::c_int {
    libc::c_int::try_from(d.as_micros().div_ceil(1000)).unwrap_or(libc::c_int::MAX)
}

fn set_nonblocking(fd: RawFd) -> std::io::Result<()> {
    // SAFETY: fcntl on a descriptor this process owns (the pipe to the program's stdin).
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    // SAFETY: as above.
    if flags < 0 || unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Waits for the program `pid` to end, at most until `deadline` (or, in CGI mode, until
/// the server stops the wrapper): then it stops the program's group and waits for the
/// program's end. Leaves it to be reaped.
fn wait_bounded(pid: u32, deadline: Instant, stopped: &AtomicBool, expired: &Cell<bool>) {
    let id: libc::id_t = pid;
    if has_ended(id) {
        return;
    }
    // A descriptor that becomes readable when the program ends (Linux 5.3); without
    // it, the wrapper looks every few milliseconds.
    // SAFETY: pidfd_open takes a pid and flags; it returns a new descriptor or -1.
    let raw = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    // SAFETY: a descriptor pidfd_open just returned is this process's own to close.
    let pidfd = i32::try_from(raw).ok().filter(|fd| *fd >= 0).map(|fd| unsafe { OwnedFd::from_raw_fd(fd) });
    loop {
        if stopped.load(Ordering::SeqCst) {
            break;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            expired.set(true);
            break;
        }
        match &pidfd {
            Some(fd) => {
                let mut pollfd = libc::pollfd { fd: fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
                // SAFETY: one valid pollfd.
                if unsafe { libc::poll(&raw mut pollfd, 1, millis(left.min(SLICE))) } > 0 {
                    return;
                }
            }
            None => {
                if has_ended(id) {
                    return;
                }
                std::thread::sleep(left.min(Duration::from_millis(5)));
            }
        }
    }
    stop_program(pid);
    wait_ended(id);
}

/// Whether the program `pid` has ended (not reaped: `WNOWAIT`), or is no child to wait
/// for (a wrapper started with SIGCHLD ignored has its children reaped by the kernel).
fn has_ended(pid: libc::id_t) -> bool {
    loop {
        // SAFETY: a zeroed siginfo_t is valid for waitid to fill.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: asks about this process's own child, without waiting; `info` is valid
        // for a write.
        let rc =
            unsafe { libc::waitid(libc::P_PID, pid, &raw mut info, libc::WEXITED | libc::WNOHANG | libc::WNOWAIT) };
        if rc == 0 {
            // SAFETY: waitid filled `info`; si_pid stays 0 while the child runs.
            return unsafe { info.si_pid() } != 0;
        }
        if std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return true;
        }
    }
}

/// Blocks until the program `pid` has ended, leaving it to be reaped (`WNOWAIT`).
fn wait_ended(pid: libc::id_t) {
    loop {
        // SAFETY: a zeroed siginfo_t is valid for waitid to fill.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: waits on this process's own child; `info` is valid for a write.
        let rc = unsafe { libc::waitid(libc::P_PID, pid, &raw mut info, libc::WEXITED | libc::WNOWAIT) };
        if rc == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return;
        }
    }
}

/// The answer to a request the wrapper will not run: the reason is in the log only,
/// since it names paths of the server.
fn refusal_answer(status: u16) -> Vec<u8> {
    let (code, message) = match status {
        500 => ("misconfigured", "the server will not run this program; its error log says why"),
        413 => ("too_large", "the request body is larger than the server passes to a program"),
        _ => ("refused", "the server will not run this program; its error log says why"),
    };
    let body = serde_json::json!({"error": {"code": code, "message": message}}).to_string();
    format!(
        "Status: {status} {}\r\nContent-Type: application/json; charset=utf-8\r\nCache-Control: private, no-store\r\n\
         X-Content-Type-Options: nosniff\r\nContent-Length: {}\r\n\r\n{body}",
        reason_phrase(status),
        body.len()
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cause_is_said_at_most_once_a_minute() {
        let mut complaints = Complaints::default();
        let start = Instant::now();
        assert!(complaints.due(Cause::Busy, start));
        assert!(!complaints.due(Cause::Busy, start + Duration::from_secs(59)));
        assert!(complaints.due(Cause::ReadOnly, start + Duration::from_secs(1)), "another cause is said");
        assert!(complaints.due(Cause::Busy, start + Duration::from_secs(60)));
    }
}
