//! `piggyback-wrap` kept running: a FastCGI responder that runs the program each request
//! names in `SCRIPT_FILENAME` as a CGI child, as fcgiwrap does, through the same
//! `run_target` and the same rules as the CGI wrapper, and keeps Piggyback's database
//! connection, spool memory and session key between requests as our own FastCGI
//! programs do (`gateway::Kept`). Nothing of a request's identity is kept: each request's
//! environment is its own parameters over the process's `PIGGYBACK_*` settings.
//!
//! The socket, the records and their bounds (`PIGGYBACK_FCGI_IO_TIMEOUT`,
//! `PIGGYBACK_FCGI_REQUEST_DEADLINE`) are `gateway::fcgi`'s. One process answers one
//! request at a time, so at most `PIGGYBACK_WRAP_CHILDREN` programs run at once: the
//! process forks that many workers, each accepting on the shared socket, and replaces
//! one that dies. SIGTERM lets every request in progress finish (its program is not
//! stopped) and be written; then the workers and the process exit 0.

use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use super::settings::{self, Settings};
use super::{Body, Complaints, load_settings, own_path, refusal_answer, refuse, run_target, target};
use crate::gateway::fcgi::{self, Answer, Responder};
use crate::gateway::{Env, Kept, log};

/// `PIGGYBACK_WRAP_CHILDREN` when unset: programs running at once.
pub const DEFAULT_CHILDREN: usize = 4;
/// Most `PIGGYBACK_WRAP_CHILDREN` taken.
pub const MAX_CHILDREN: usize = 256;
/// `PIGGYBACK_WRAP_MAX_BODY` when unset: the largest request body passed to a program
/// (it is held in memory until the program runs).
pub const DEFAULT_MAX_BODY: usize = 8 * 1024 * 1024;
/// `PATH` of a program whose request has none, when the wrapper's own has none either.
const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// Whether the process was started to serve FastCGI: a listening socket on fd 0
/// (spawn-fcgi, lighttpd `bin-path`, mod_fcgid, systemd's `StandardInput=socket`), or
/// one passed by systemd's socket activation (`LISTEN_FDS`, fd 3), which is then moved
/// to fd 0.
pub fn listening() -> bool {
    if fcgi::listening_on_stdin() {
        return true;
    }
    let ours = std::env::var("LISTEN_PID").ok().and_then(|p| p.parse::<u32>().ok()) == Some(std::process::id());
    let count = std::env::var("LISTEN_FDS").ok().and_then(|n| n.parse::<u32>().ok()).unwrap_or(0);
    if !ours || count < 1 {
        return false;
    }
    // SAFETY: dup2 and close on descriptors systemd passed (3 is the first, sd_listen_fds).
    let moved = unsafe { libc::dup2(3, 0) == 0 && libc::close(3) == 0 };
    moved && fcgi::listening_on_stdin()
}

/// What the FastCGI wrapper is told by its process environment and settings file.
struct Setup {
    /// `PIGGYBACK_*` of the process environment.
    process: Env,
    /// With what the settings file adds, as last read.
    env: Env,
    settings: Settings,
    wrapper: PathBuf,
    children: usize,
    max_body: usize,
    path: OsString,
}

impl Setup {
    fn read() -> Setup {
        let process: Env = std::env::vars_os()
            .filter_map(|(k, v)| k.into_string().ok().map(|k| (k, v)))
            .filter(|(k, _)| k.starts_with("PIGGYBACK_"))
            .collect();
        let mut env = process.clone();
        let wrapper = own_path();
        let settings = load_settings(&mut env, &wrapper);
        let text = |name: &str| env.get(name).and_then(|v| v.to_str()).filter(|v| !v.is_empty());
        let children = match text("PIGGYBACK_WRAP_CHILDREN") {
            None => DEFAULT_CHILDREN,
            Some(v) => match v.trim().parse::<usize>() {
                Ok(n) if (1..=MAX_CHILDREN).contains(&n) => n,
                _ => {
                    log(&format!(
                        "piggyback-wrap: PIGGYBACK_WRAP_CHILDREN: `{v}` is not a number from 1 to {MAX_CHILDREN}; \
                         using {DEFAULT_CHILDREN}"
                    ));
                    DEFAULT_CHILDREN
                }
            },
        };
        let max_body = match text("PIGGYBACK_WRAP_MAX_BODY") {
            None => DEFAULT_MAX_BODY,
            Some(v) => settings::parse_bytes(v).unwrap_or_else(|| {
                log(&format!("piggyback-wrap: PIGGYBACK_WRAP_MAX_BODY: `{v}` is not a size (65536, 512k, 4M)"));
                DEFAULT_MAX_BODY
            }),
        };
        let path = std::env::var_os("PATH").filter(|p| !p.is_empty()).unwrap_or_else(|| DEFAULT_PATH.into());
        Setup { process, env, settings, wrapper, children, max_body, path }
    }
}

/// Serves FastCGI on fd 0 until SIGTERM or SIGINT.
pub fn serve() -> ExitCode {
    let setup = Setup::read();
    if setup.children == 1 {
        return worker(setup);
    }
    prefork(setup)
}

/// One worker: answers requests one at a time until it is told to stop.
fn worker(setup: Setup) -> ExitCode {
    // The worker stays on glibc's malloc, unlike our FastCGI programs (it never calls
    // `alloc::serve_many`). It once started a watchdog thread per request, and the
    // mimalloc built here (its process-attach hook compiled out, see src/alloc.rs) never
    // takes back a finished thread's heap, which grew a worker by 12 to 17 KiB a request
    // (scripts/bench-capacity's memory rows). Now a request starts no thread (the
    // program's output and body are polled within the deadline, `run_target`), so that
    // reason is gone; switching waits for a worker's memory measured flat over 100 000
    // requests under mimalloc.
    let Setup { process, env, settings, wrapper, max_body, path, .. } = setup;
    let file = wrapper.parent().map(|folder| folder.join(settings::CONFIG_FILE)).unwrap_or_default();
    let stamp = stamp(&file);
    let answer = Wrapper {
        file,
        stamp,
        process: process.clone(),
        env,
        settings,
        wrapper,
        max_body,
        path,
        kept: Kept::across_requests(),
        complaints: Complaints::default(),
    };
    // The connection's bounds come from the process environment; a request's
    // environment gets the settings file's values in `Wrapper::answer`.
    fcgi::serve_with(Responder::with_settings(answer, process))
}

/// Runs `setup.children` workers on the shared socket, replaces one that dies, and on
/// SIGTERM or SIGINT passes SIGTERM on and waits for every worker to finish.
fn prefork(setup: Setup) -> ExitCode {
    // SAFETY: plain calls on local, initialised signal sets. The signals stay blocked
    // and are taken with sigwait, so no handler runs in this process.
    let (set, old) = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&raw mut set);
        for signal in [libc::SIGTERM, libc::SIGINT, libc::SIGCHLD] {
            libc::sigaddset(&raw mut set, signal);
        }
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::pthread_sigmask(libc::SIG_BLOCK, &raw const set, &raw mut old);
        (set, old)
    };
    let mut workers: Vec<(libc::pid_t, Instant)> = Vec::new();
    let mut stopping = false;
    let mut setup = Some(setup);
    loop {
        while !stopping && workers.len() < setup.as_ref().map_or(0, |s| s.children) {
            // SAFETY: this process has one thread (no worker, no handler thread), so the
            // child may go on running Rust code.
            match unsafe { libc::fork() } {
                0 => {
                    // SAFETY: restores the mask this process started with.
                    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &raw const old, std::ptr::null_mut()) };
                    let code = worker(setup.take().expect("the setup, until the first fork returns"));
                    std::process::exit(if code == ExitCode::SUCCESS { 0 } else { 1 });
                }
                pid if pid > 0 => workers.push((pid, Instant::now())),
                _ => {
                    log(&format!("piggyback-wrap: cannot start a worker: {}", std::io::Error::last_os_error()));
                    break;
                }
            }
        }
        if workers.is_empty() {
            return if stopping { ExitCode::SUCCESS } else { ExitCode::FAILURE };
        }
        let mut signal: libc::c_int = 0;
        // SAFETY: `set` is initialised; `signal` is valid for a write.
        if unsafe { libc::sigwait(&raw const set, &raw mut signal) } != 0 {
            continue;
        }
        if signal == libc::SIGCHLD {
            loop {
                let mut status = 0;
                // SAFETY: reaps any child that has ended, without waiting.
                let pid = unsafe { libc::waitpid(-1, &raw mut status, libc::WNOHANG) };
                if pid <= 0 {
                    break;
                }
                let Some(at) = workers.iter().position(|(p, _)| *p == pid) else { continue };
                let (_, started) = workers.swap_remove(at);
                if !stopping {
                    log(&format!("piggyback-wrap: worker {pid} ended (status {status}); starting another"));
                    // A worker that cannot even start must not be restarted in a tight loop.
                    if started.elapsed() < Duration::from_secs(1) {
                        std::thread::sleep(Duration::from_secs(1));
                    }
                }
            }
        } else if !stopping {
            stopping = true;
            for (pid, _) in &workers {
                // SAFETY: a signal to a worker this process started and has not reaped.
                unsafe { libc::kill(*pid, libc::SIGTERM) };
            }
        }
    }
}

/// The FastCGI wrapper's [`Answer`]: the request's program, run under every rule of the
/// CGI wrapper, with its body from the STDIN records.
struct Wrapper {
    /// The settings file, and what it was when last read: a change takes effect at the
    /// next request, as it does for the CGI wrapper, which reads it on every request.
    file: PathBuf,
    stamp: Option<Stamp>,
    /// `PIGGYBACK_*` of the process environment, and with the file's values added.
    process: Env,
    env: Env,
    settings: Settings,
    wrapper: PathBuf,
    max_body: usize,
    path: OsString,
    kept: Kept,
    /// What this process has logged lately: each cause at most once a minute.
    complaints: Complaints,
}

impl Answer for Wrapper {
    fn stdin_cap(&self) -> usize {
        self.max_body
    }

    fn answer(&mut self, env: &Env, stdin: &[u8], out: &mut dyn Write) -> std::io::Result<()> {
        self.reread();
        // The request's parameters over the settings (as for our programs); the
        // wrapper's own rules only ever come from the settings.
        let mut env = env.clone();
        for (name, value) in &self.env {
            env.entry(name.clone()).or_insert_with(|| value.clone());
        }
        // A program's shell needs a PATH; fcgiwrap's programs get none unless the server
        // passes one. The wrapper's own is the operator's, never the client's. (The rules
        // read no PATH.)
        if env.get("PATH").is_none_or(|p| p.is_empty()) {
            env.insert("PATH".into(), self.path.clone());
        }
        let target = match target::resolve_fastcgi(&env, &self.wrapper, &self.settings) {
            Ok(target) => target,
            Err(refusal) => {
                refuse(&refusal, out);
                return Ok(());
            }
        };
        if stdin.len() > self.max_body {
            log(&format!(
                "piggyback-wrap: {}: request body over PIGGYBACK_WRAP_MAX_BODY ({} bytes): answered 413",
                target.program.display(),
                self.max_body
            ));
            return out.write_all(&refusal_answer(413));
        }
        // SIGTERM finishes what runs: the program is never stopped by it here.
        let never = AtomicBool::new(false);
        run_target(
            &env,
            &target,
            &self.settings,
            Body::Bytes(stdin),
            out,
            &never,
            &mut self.kept,
            &mut self.complaints,
        );
        Ok(())
    }

    fn forget(&mut self) {
        self.kept = Kept::across_requests();
    }
}

/// What identifies a version of the settings file: a change of any part is a new one.
type Stamp = (i64, i64, u64, u64);

fn stamp(file: &std::path::Path) -> Option<Stamp> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(file).ok().map(|m| (m.mtime(), m.mtime_nsec(), m.len(), m.ino()))
}

impl Wrapper {
    /// Reads the settings again when the settings file has changed (one `stat`).
    fn reread(&mut self) {
        let now = stamp(&self.file);
        if now != self.stamp {
            self.stamp = now;
            let mut env = self.process.clone();
            self.settings = load_settings(&mut env, &self.wrapper);
            self.env = env;
        }
    }
}
