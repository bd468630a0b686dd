//! `piggyback-wrap`: the gateway for programs we did not write. Configured as the
//! interpreter of a site's own CGI programs, it runs the program and adds
//! `site_messages` (computed by `gateway::site_messages`, the same single place as for
//! our programs) to its JSON answers; any other body passes byte for byte.
//!
//! [`run`] is the only code here that touches the process; [`target`] decides what may
//! run, [`answer`] relays what it answers, [`identity`] decides who it is for,
//! [`settings`] reads the settings.

pub mod answer;
pub mod identity;
pub mod settings;
pub mod target;

use std::ffi::OsString;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::gateway::{Cause, Env, log};
use crate::http::reason_phrase;

use answer::{Call, Framing, Limits, Outcome, Own, Why};
use settings::Settings;
use target::Launch;

/// Runs one request: the whole `main` of `piggyback-wrap`.
pub fn run() -> ExitCode {
    let mut env: Env = std::env::vars_os().filter_map(|(k, v)| k.into_string().ok().map(|k| (k, v))).collect();
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let wrapper = std::env::current_exe()
        .and_then(std::fs::canonicalize)
        .unwrap_or_else(|_| PathBuf::from(std::env::args_os().next().unwrap_or_default()));
    let file_problem =
        wrapper.parent().and_then(|folder| settings::merge_file(&mut env, &folder.join(settings::CONFIG_FILE)));
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
    let mut stdout = std::io::stdout().lock();
    let cwd = std::env::current_dir().unwrap_or_default();
    let exec_fn = kernel_exec_fn();
    let target = match target::resolve(&env, &args, &cwd, &wrapper, exec_fn.as_deref(), &settings) {
        Ok(target) => target,
        Err(refusal) => {
            log(&format!("piggyback-wrap: refused: {}", refusal.why));
            let _ = stdout.write_all(&refusal_answer(refusal.status)).and_then(|()| stdout.flush());
            return ExitCode::SUCCESS;
        }
    };
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
        .envs(target::child_env(&env, &target, &settings))
        .current_dir(target.folder())
        // The body stays on fd 0 for the program, whatever it is (a pipe, a file, a socket).
        .stdin(Stdio::inherit())
        .stdout(Stdio::piped())
        // The program's complaints go where the server logs a CGI program's stderr.
        .stderr(Stdio::inherit())
        // A group of its own, so that stopping it also stops what it started (a shell
        // script's `sleep`, a pipeline), which would otherwise run on alone.
        .process_group(0);
    // The server stops a CGI with SIGTERM (lighttpd when the client goes away or its
    // timeout passes): then the program is stopped too, not left running alone. Handled
    // from before the program starts, so a signal in between cannot orphan it.
    let stopped = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT, signal_hook::consts::SIGHUP] {
        if let Err(e) = signal_hook::flag::register(signal, Arc::clone(&stopped)) {
            log(&format!("piggyback-wrap: cannot handle signal {signal}: {e}"));
        }
    }
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(e) => {
            log(&format!("piggyback-wrap: cannot start {}: {e}", target.program.display()));
            let _ = stdout.write_all(&refusal_answer(500)).and_then(|()| stdout.flush());
            return ExitCode::SUCCESS;
        }
    };
    let Some(child_out) = child.stdout.take() else {
        return ExitCode::SUCCESS;
    };
    let expired = Arc::new(AtomicBool::new(false));
    let (done, finished) = mpsc::channel::<()>();
    let watchdog = {
        let expired = Arc::clone(&expired);
        let stopped = Arc::clone(&stopped);
        let timeout = settings.timeout;
        std::thread::spawn(move || {
            let deadline = Instant::now() + timeout;
            loop {
                match finished.recv_timeout(Duration::from_millis(50)) {
                    Err(mpsc::RecvTimeoutError::Timeout) if stopped.load(Ordering::SeqCst) => {
                        stop_program(&mut child);
                        break;
                    }
                    Err(mpsc::RecvTimeoutError::Timeout) if Instant::now() >= deadline => {
                        expired.store(true, Ordering::SeqCst);
                        stop_program(&mut child);
                        break;
                    }
                    Err(mpsc::RecvTimeoutError::Timeout) => {}
                    Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected) => break,
                }
            }
            // The program closed its output; it still may not linger past the deadline.
            while matches!(child.try_wait(), Ok(None)) {
                if Instant::now() >= deadline {
                    stop_program(&mut child);
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.wait();
        })
    };
    let framing = if target.is_nph() { Framing::Nph } else { Framing::Cgi };
    let limits = Limits { buffer_bytes: settings.buffer_bytes };
    let text = |name: &str| env.get(name).and_then(|v| v.to_str());
    let call = Call::of(text("HTTP_SEC_FETCH_MODE"), text("HTTP_SEC_FETCH_DEST"));
    let mut notes = Vec::new();
    let outcome =
        answer::relay(child_out, &mut stdout, framing, limits, call, &|| expired.load(Ordering::SeqCst), |answered| {
            let (attach, said) = identity::decide(&env, &settings, answered, crate::model::now());
            notes = said;
            attach
        });
    let _ = done.send(());
    let _ = watchdog.join();
    let program = target.program.display();
    let mut complaints = Complaints::default();
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
    if stopped.load(Ordering::SeqCst) {
        log(&format!("piggyback-wrap: {program}: stopped by the server; the program was stopped too"));
    }
    if expired.load(Ordering::SeqCst) {
        log(&format!("piggyback-wrap: {program}: stopped after PIGGYBACK_WRAP_TIMEOUT"));
    }
    ExitCode::SUCCESS
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
fn stop_program(child: &mut Child) {
    if let Ok(group) = libc::pid_t::try_from(child.id()) {
        // SAFETY: kill(2) takes plain integers; a negative pid names the program's group,
        // which only it and what it started belong to.
        unsafe { libc::kill(-group, libc::SIGKILL) };
    }
    let _ = child.kill();
}

/// The answer to a request the wrapper will not run: the reason is in the log only,
/// since it names paths of the server.
fn refusal_answer(status: u16) -> Vec<u8> {
    let body = serde_json::json!({"error": {
        "code": if status == 500 { "misconfigured" } else { "refused" },
        "message": "the server will not run this program; its error log says why",
    }})
    .to_string();
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
