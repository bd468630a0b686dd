//! FastCGI: the same programs, kept running by the web server.
//!
//! A process started with a listening socket on stdin (lighttpd `bin-path`, Apache
//! `mod_fcgid`, `spawn-fcgi`) accepts connections on it and answers responder requests
//! one at a time, each through [`respond_keeping`], the CGI path, with the process's
//! database connection kept. Under Apache `mod_cgid` stdin is a *connected* socket,
//! which is not listening, so such a process stays a CGI program.
//!
//! What one request leaves behind is only that connection: each request's environment
//! is built afresh from its own parameters over the process's `PIGGYBACK_*` settings,
//! its body is its own buffer, and a handler's panic drops the connection too.
//!
//! A malformed record or a peer that goes away closes that connection, never the
//! process. So does a peer that stalls: one process serves one connection at a time,
//! so each read and each write on it, and each wait for the next request on a kept
//! connection, is bounded by `PIGGYBACK_FCGI_IO_TIMEOUT` (default 30 s), and a request
//! must have arrived whole within `PIGGYBACK_FCGI_REQUEST_DEADLINE` (default 60 s) of
//! its first byte, so that a peer trickling a byte now and then cannot hold the process
//! either; then the connection is closed and the process accepts the next one.
//! SIGTERM (or SIGINT) lets the request in progress finish and be written, then
//! the process exits 0. Both signals stay blocked except while the process waits in
//! `ppoll`, so a signal can neither interrupt a request nor slip in just before a wait.
//!
//! What answers a request is an [`Answer`]: our programs' handler ([`Program`]), or
//! `piggyback-wrap`'s child (`wrap::fastcgi`). The socket, the records and the bounds
//! are the same for both.

pub mod records;

use std::ffi::OsString;
use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::os::unix::ffi::OsStringExt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::{Env, Handler, Kept, log, respond_keeping};
use crate::config::{MAX_BODY_BYTES, parse_duration};
use records::{Connection, Step};

/// Whether fd 0 is a listening socket (`SO_ACCEPTCONN`): a FastCGI process manager
/// started this process. A CGI process has a pipe, a file or a connected socket there.
pub fn listening_on_stdin() -> bool {
    let mut value: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `value` and `len` are valid for writes of the sizes given.
    let rc =
        unsafe { libc::getsockopt(0, libc::SOL_SOCKET, libc::SO_ACCEPTCONN, (&raw mut value).cast(), &raw mut len) };
    rc == 0 && value == 1
}

/// Serves FastCGI connections on fd 0 with `handler` until SIGTERM or SIGINT.
pub fn serve(handler: Handler) -> ExitCode {
    serve_with(Responder::new(handler))
}

/// Serves FastCGI connections on fd 0 with `responder` until SIGTERM or SIGINT.
pub fn serve_with<A: Answer>(mut responder: Responder<A>) -> ExitCode {
    let waiter = match Waiter::install() {
        Ok(waiter) => waiter,
        Err(e) => {
            log(&format!("FastCGI: cannot handle signals: {e}"));
            return ExitCode::FAILURE;
        }
    };
    // Non-blocking, so that a connection another process of the pool accepted first
    // cannot leave this one blocked in accept with its stop signals held back.
    // SAFETY: fcntl on fd 0, which is open (it is a socket).
    unsafe {
        let flags = libc::fcntl(0, libc::F_GETFL);
        if flags >= 0 {
            libc::fcntl(0, libc::F_SETFL, flags | libc::O_NONBLOCK);
        }
    }
    loop {
        if waiter.wait_readable(0, None) == Wake::Stop {
            return ExitCode::SUCCESS;
        }
        // SAFETY: fd 0 is a listening socket (checked by the caller); the result is
        // checked before use.
        let fd = unsafe { libc::accept4(0, std::ptr::null_mut(), std::ptr::null_mut(), libc::SOCK_CLOEXEC) };
        if fd < 0 {
            let e = std::io::Error::last_os_error();
            match e.raw_os_error() {
                // Another process of the same pool took the connection, or the peer gave up.
                Some(libc::EAGAIN | libc::ECONNABORTED | libc::EINTR | libc::EPROTO) => {}
                // Out of descriptors or memory: say so and let the condition pass.
                Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM) => {
                    log(&format!("FastCGI accept: {e}"));
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
                _ => {
                    log(&format!("FastCGI accept: {e}; exiting"));
                    return ExitCode::FAILURE;
                }
            }
            continue;
        }
        // SAFETY: `accept4` returned a new descriptor that nothing else owns.
        let mut stream = unsafe { File::from_raw_fd(fd) };
        if responder.connection(&mut stream, &waiter) == Wake::Stop {
            return ExitCode::SUCCESS;
        }
    }
}

/// Whether to go on serving.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    Ready,
    Stop,
    /// Nothing arrived within the time allowed.
    TimedOut,
}

/// `PIGGYBACK_FCGI_IO_TIMEOUT` when unset: far above what a web server on the same
/// machine needs between two records, and a bound on what a stalled one can hold.
pub const DEFAULT_IO_TIMEOUT: Duration = Duration::from_secs(30);

/// `PIGGYBACK_FCGI_REQUEST_DEADLINE` when unset: a web server on the same machine sends
/// a request, its body included, in milliseconds (nginx, lighttpd and Apache read the
/// client's body before they pass it on); a minute is still room for a slow upload that
/// a server streams through.
pub const DEFAULT_REQUEST_DEADLINE: Duration = Duration::from_secs(60);

/// A duration setting (`90s`, `2m`, or seconds) from the process's settings; `default`,
/// with a line in the log, when it is not a duration.
fn duration_setting(settings: &Env, name: &str, default: Duration) -> Duration {
    let Some(value) = settings.get(name).filter(|v| !v.is_empty()) else {
        return default;
    };
    match value.to_str().and_then(parse_duration).and_then(|secs| u64::try_from(secs).ok()) {
        Some(secs) => Duration::from_secs(secs),
        None => {
            log(&format!("{name}: {value:?} is not a duration (30, 90s, 2m); using {} s", default.as_secs()));
            default
        }
    }
}

/// Bounds each blocking read and write on the socket `fd` (`SO_RCVTIMEO`,
/// `SO_SNDTIMEO`): past it the call fails with `WouldBlock` instead of waiting on.
fn bound_socket_io(fd: RawFd, timeout: Duration) {
    let tv =
        libc::timeval { tv_sec: libc::time_t::try_from(timeout.as_secs()).unwrap_or(libc::time_t::MAX), tv_usec: 0 };
    for option in [libc::SO_RCVTIMEO, libc::SO_SNDTIMEO] {
        // SAFETY: `tv` is a valid timeval of the size given; a descriptor that is not a
        // socket only makes the call fail, which leaves it as it was.
        unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                option,
                (&raw const tv).cast(),
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
    }
}

/// A connection's socket, bounded only when it has to wait: each read and write is first
/// tried without waiting (`MSG_DONTWAIT`), and only one that would wait sets the bounds
/// ([`bound_socket_io`]) and waits, at most that long. A web server on the same machine
/// rarely makes a responder wait, so most connections skip the two `setsockopt` calls.
struct Socket<'a, S> {
    stream: &'a mut S,
    timeout: Duration,
    bounded: bool,
}

impl<S: Read + Write + AsRawFd> Socket<'_, S> {
    fn bound(&mut self) {
        if !self.bounded {
            bound_socket_io(self.stream.as_raw_fd(), self.timeout);
            self.bounded = true;
        }
    }

    /// Reads what has arrived; `None` when nothing has.
    fn read_arrived(&mut self, buf: &mut [u8]) -> Option<std::io::Result<usize>> {
        // SAFETY: `buf` is valid for writes of its length; the descriptor is the
        // connection's, open for as long as `stream` is.
        let n = unsafe { libc::recv(self.stream.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT) };
        match usize::try_from(n) {
            Ok(n) => Some(Ok(n)),
            Err(_) => match std::io::Error::last_os_error() {
                e if e.kind() == ErrorKind::WouldBlock => None,
                e => Some(Err(e)),
            },
        }
    }

    /// Reads what has arrived, or waits for something at most `limit`: `None` when
    /// nothing came in that time.
    fn read_within(&mut self, buf: &mut [u8], limit: Duration) -> Option<std::io::Result<usize>> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(read) = self.read_arrived(buf) {
                return Some(read);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            let mut poll = libc::pollfd { fd: self.stream.as_raw_fd(), events: libc::POLLIN, revents: 0 };
            let ms = libc::c_int::try_from(left.as_millis().max(1)).unwrap_or(libc::c_int::MAX);
            // SAFETY: one valid pollfd. The stop signals stay blocked here: a request
            // being read is finished, not cut short, by one.
            unsafe { libc::poll(&raw mut poll, 1, ms) };
        }
    }

    /// Writes all of `out`, waiting at most the bound each time the peer reads nothing.
    fn write_all(&mut self, mut out: &[u8]) -> std::io::Result<()> {
        while !out.is_empty() && !self.bounded {
            // SAFETY: `out` is valid for reads of its length; the descriptor is the
            // connection's. MSG_NOSIGNAL: a peer that is gone is an error, not a SIGPIPE.
            let n = unsafe {
                libc::send(
                    self.stream.as_raw_fd(),
                    out.as_ptr().cast(),
                    out.len(),
                    libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
                )
            };
            match usize::try_from(n) {
                Ok(n) => out = &out[n..],
                Err(_) => match std::io::Error::last_os_error() {
                    e if e.kind() == ErrorKind::Interrupted => {}
                    e if e.kind() == ErrorKind::WouldBlock => self.bound(),
                    e => return Err(e),
                },
            }
        }
        self.stream.write_all(out)
    }
}

/// Whether an I/O error is a bound set by [`bound_socket_io`] running out.
fn timed_out(e: &std::io::Error) -> bool {
    matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
}

/// Blocks the stop signals and waits for input with them unblocked.
pub struct Waiter {
    stop: Arc<AtomicBool>,
    /// The signal mask to wait with: the process's own, stop signals allowed.
    waiting_mask: libc::sigset_t,
}

impl Waiter {
    /// Installs the handlers and blocks SIGTERM and SIGINT outside waits.
    pub fn install() -> std::io::Result<Waiter> {
        let stop = Arc::new(AtomicBool::new(false));
        for signal in [libc::SIGTERM, libc::SIGINT] {
            signal_hook::flag::register(signal, Arc::clone(&stop))?;
        }
        // SAFETY: plain calls on local, initialised signal sets.
        unsafe {
            let mut stop_set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&raw mut stop_set);
            libc::sigaddset(&raw mut stop_set, libc::SIGTERM);
            libc::sigaddset(&raw mut stop_set, libc::SIGINT);
            let mut waiting_mask: libc::sigset_t = std::mem::zeroed();
            let rc = libc::pthread_sigmask(libc::SIG_BLOCK, &raw const stop_set, &raw mut waiting_mask);
            if rc != 0 {
                return Err(std::io::Error::from_raw_os_error(rc));
            }
            // A process manager may have started us with them blocked: allow them in waits.
            libc::sigdelset(&raw mut waiting_mask, libc::SIGTERM);
            libc::sigdelset(&raw mut waiting_mask, libc::SIGINT);
            Ok(Waiter { stop, waiting_mask })
        }
    }

    /// Whether a stop signal has arrived.
    pub fn stopping(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// Waits until `fd` is readable (or closed), a stop signal arrives, or `limit`
    /// (when given) has passed.
    pub fn wait_readable(&self, fd: RawFd, limit: Option<Duration>) -> Wake {
        let deadline = limit.map(|limit| Instant::now() + limit);
        loop {
            if self.stopping() {
                return Wake::Stop;
            }
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            if left == Some(Duration::ZERO) {
                return Wake::TimedOut;
            }
            let timeout = left.map(|left| libc::timespec {
                tv_sec: libc::time_t::try_from(left.as_secs()).unwrap_or(libc::time_t::MAX),
                tv_nsec: libc::c_long::from(left.subsec_nanos()),
            });
            let timeout_ptr = timeout.as_ref().map_or(std::ptr::null(), |t| t as *const libc::timespec);
            let mut poll = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
            // SAFETY: one valid pollfd; the timeout is null or a valid timespec; the mask
            // is an initialised sigset.
            let rc = unsafe { libc::ppoll(&raw mut poll, 1, timeout_ptr, &raw const self.waiting_mask) };
            if rc > 0 {
                return Wake::Ready;
            }
            // 0: the time may be up (checked above); EINTR: look at the flag.
        }
    }
}

/// How much one read of a connection takes at most.
const READ_CHUNK: usize = 16 * 1024;

/// What answers one responder request.
pub trait Answer {
    /// Bytes of a request's body worth keeping (see `records::Connection::new`).
    fn stdin_cap(&self) -> usize;
    /// Writes the CGI response (header block and body) to the request whose environment
    /// is `env` and whose body is `stdin`. A failure to write means the web server has
    /// gone: the answer stops there.
    fn answer(&mut self, env: &Env, stdin: &[u8], out: &mut dyn Write) -> std::io::Result<()>;
    /// Forgets what it kept across requests: after a panic it may be half-changed.
    fn forget(&mut self);
}

/// Our programs: a handler, and the database connection, spool memory and session key
/// it keeps ([`Kept`]).
pub struct Program {
    handler: Handler,
    kept: Kept,
}

impl Program {
    pub fn new(handler: Handler) -> Program {
        Program { handler, kept: Kept::across_requests() }
    }
}

impl Answer for Program {
    fn stdin_cap(&self) -> usize {
        MAX_BODY_BYTES
    }

    fn answer(&mut self, env: &Env, stdin: &[u8], out: &mut dyn Write) -> std::io::Result<()> {
        out.write_all(&respond_keeping(self.handler, env, stdin, &mut self.kept))
    }

    fn forget(&mut self) {
        self.kept = Kept::across_requests();
    }
}

/// One process's FastCGI state: what answers, the settings of its environment, and the
/// bounds on a connection.
pub struct Responder<A> {
    answer: A,
    /// `PIGGYBACK_*` of the process environment (lighttpd `bin-environment`,
    /// `FcgidInitialEnv`, spawn-fcgi's environment). Only those: a process manager
    /// passes its whole environment on, and a stray `REMOTE_USER` or `HTTPS` there must
    /// never reach a request.
    settings: Env,
    /// `PIGGYBACK_FCGI_IO_TIMEOUT`: how long one read, one write or the wait for the
    /// next request on a kept connection may take.
    io_timeout: Duration,
    /// `PIGGYBACK_FCGI_REQUEST_DEADLINE`: how long a request may take to arrive whole,
    /// from its first byte to the end of its body.
    deadline: Duration,
    /// Where each read lands before it joins the connection's buffer: zeroed once per
    /// process, not on every read (a fresh zeroed chunk per read was 13 % of a
    /// request's instructions).
    chunk: Box<[u8]>,
}

impl Responder<Program> {
    /// A responder of our programs: `handler` answers.
    pub fn new(handler: Handler) -> Responder<Program> {
        Responder::with(Program::new(handler))
    }
}

impl<A: Answer> Responder<A> {
    /// A responder where `answer` answers, its settings the process environment's.
    pub fn with(answer: A) -> Responder<A> {
        let settings = std::env::vars_os()
            .filter_map(|(k, v)| k.into_string().ok().map(|k| (k, v)))
            .filter(|(k, _)| k.starts_with("PIGGYBACK_"))
            .collect();
        Responder::with_settings(answer, settings)
    }

    /// A responder where `answer` answers, over `settings` (`PIGGYBACK_*` only).
    pub fn with_settings(answer: A, settings: Env) -> Responder<A> {
        let io_timeout = duration_setting(&settings, "PIGGYBACK_FCGI_IO_TIMEOUT", DEFAULT_IO_TIMEOUT);
        let deadline = duration_setting(&settings, "PIGGYBACK_FCGI_REQUEST_DEADLINE", DEFAULT_REQUEST_DEADLINE);
        Responder { answer, settings, io_timeout, deadline, chunk: vec![0; READ_CHUNK].into() }
    }

    /// The environment of one request: its parameters over the process's settings.
    fn environment(&self, params: Vec<(Vec<u8>, Vec<u8>)>) -> Env {
        let mut env = self.settings.clone();
        for (name, value) in params {
            // A name that is not UTF-8 names nothing this program reads.
            if let Ok(name) = String::from_utf8(name) {
                env.insert(name, OsString::from_vec(value));
            }
        }
        env
    }

    /// Serves one connection until the peer closes it, asks for it to be closed, breaks
    /// the protocol, or a stop signal arrives between requests.
    pub fn connection<S: Read + Write + AsRawFd>(&mut self, stream: &mut S, waiter: &Waiter) -> Wake {
        let mut socket = Socket { stream, timeout: self.io_timeout, bounded: false };
        let served = catch_unwind(AssertUnwindSafe(|| self.records(&mut socket, waiter)));
        served.unwrap_or_else(|_| {
            // The record layer is fuzzed not to panic; should it, only this connection ends.
            self.answer.forget();
            log("FastCGI: the connection's handling panicked; closed it");
            Wake::Ready
        })
    }

    fn records<S: Read + Write + AsRawFd>(&mut self, stream: &mut Socket<'_, S>, waiter: &Waiter) -> Wake {
        let mut conn = Connection::new(self.answer.stdin_cap());
        let mut buf: Vec<u8> = Vec::with_capacity(READ_CHUNK);
        let mut start = 0;
        // When the request being read must have arrived whole: its first byte's arrival
        // plus the deadline. `None` while the connection is between requests.
        let mut due: Option<Instant> = None;
        // A new connection's request has usually arrived by the time it is accepted: read
        // it without the wait (one `ppoll` fewer). A stop signal is seen at the next
        // accept; only a kept connection's later requests are waited for with it allowed.
        let mut fresh = true;
        loop {
            loop {
                let step = match records::parse_record(&buf[start..]) {
                    Ok(Some((record, used))) => {
                        start += used;
                        conn.feed(record)
                    }
                    Ok(None) => break,
                    Err(e) => Err(e),
                };
                let written = match step {
                    Ok(Step::Wait) => continue,
                    Ok(Step::Write(out)) => stream.write_all(&out),
                    Ok(Step::WriteAndClose(out)) => {
                        let _ = stream.write_all(&out);
                        return Wake::Ready;
                    }
                    Ok(Step::Run(request)) => {
                        // The request has arrived whole: the next one's time starts at
                        // its own first byte.
                        due = None;
                        let env = self.environment(request.params);
                        let mut out = Stdout { socket: stream, id: request.id, pending: Vec::new() };
                        let answered = self.answer.answer(&env, &request.stdin, &mut out).and_then(|()| out.end());
                        if request.close {
                            // The peer may be gone: its request is over either way.
                            return Wake::Ready;
                        }
                        answered
                    }
                    Err(e) => {
                        log(&format!("FastCGI: {e}; closed the connection"));
                        return Wake::Ready;
                    }
                };
                if let Err(e) = written {
                    if timed_out(&e) {
                        log(&format!(
                            "FastCGI: the web server read nothing of an answer for {} s \
                             (PIGGYBACK_FCGI_IO_TIMEOUT); closed the connection",
                            self.io_timeout.as_secs()
                        ));
                    }
                    return Wake::Ready;
                }
            }
            buf.drain(..start);
            start = 0;
            let idle = buf.is_empty() && !conn.mid_request();
            if idle && waiter.stopping() {
                return Wake::Stop;
            }
            if !idle && due.is_none() {
                // Part of the next request came with the end of the last one.
                due = Some(Instant::now() + self.deadline);
            }
            // Mid-request a stop signal waits for the request to arrive and be answered.
            // A kept connection with nothing more to ask is closed after the timeout too:
            // while it is open this process serves no other.
            let arrived = if std::mem::take(&mut fresh) { stream.read_arrived(&mut self.chunk) } else { None };
            let read = match (arrived, due) {
                (Some(read), _) => read,
                (None, None) => {
                    match waiter.wait_readable(stream.stream.as_raw_fd(), Some(self.io_timeout)) {
                        Wake::Stop => return Wake::Stop,
                        Wake::TimedOut => return Wake::Ready,
                        Wake::Ready => {}
                    }
                    match stream.read_arrived(&mut self.chunk) {
                        Some(read) => read,
                        None => continue,
                    }
                }
                (None, Some(due)) => {
                    let left = due.saturating_duration_since(Instant::now());
                    match stream.read_within(&mut self.chunk, left.min(self.io_timeout)) {
                        Some(read) => read,
                        None if left <= self.io_timeout => {
                            log(&format!(
                                "FastCGI: a request had not arrived whole {} s after its first byte \
                                 (PIGGYBACK_FCGI_REQUEST_DEADLINE); closed the connection",
                                self.deadline.as_secs()
                            ));
                            return Wake::Ready;
                        }
                        None => {
                            log(&format!(
                                "FastCGI: the web server sent nothing for {} s in the middle of a request \
                                 (PIGGYBACK_FCGI_IO_TIMEOUT); closed the connection",
                                self.io_timeout.as_secs()
                            ));
                            return Wake::Ready;
                        }
                    }
                }
            };
            match read {
                Ok(0) => return Wake::Ready,
                Ok(n) => {
                    if due.is_none() {
                        due = Some(Instant::now() + self.deadline);
                    }
                    buf.extend_from_slice(&self.chunk[..n]);
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return Wake::Ready,
            }
        }
    }
}

/// The answer's stdout on its way to the web server as FCGI_STDOUT records: collected,
/// and written when it has grown past [`STDOUT_FLUSH`] and at its end (with
/// END_REQUEST), so that a short answer is one write and a long one never waits whole
/// in memory.
struct Stdout<'s, 'a, S> {
    socket: &'s mut Socket<'a, S>,
    id: u16,
    pending: Vec<u8>,
}

/// Bytes of records collected before they are written.
const STDOUT_FLUSH: usize = 64 * 1024;

impl<S: Read + Write + AsRawFd> Stdout<'_, '_, S> {
    /// Closes the stream and ends the request.
    fn end(&mut self) -> std::io::Result<()> {
        records::write_records(&mut self.pending, records::STDOUT, self.id, &[]);
        records::write_end(&mut self.pending, self.id, 0, records::ProtocolStatus::RequestComplete);
        self.socket.write_all(&std::mem::take(&mut self.pending))
    }
}

impl<S: Read + Write + AsRawFd> Write for Stdout<'_, '_, S> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        if bytes.is_empty() {
            // An empty record would end the stream.
            return Ok(0);
        }
        records::write_records(&mut self.pending, records::STDOUT, self.id, bytes);
        if self.pending.len() >= STDOUT_FLUSH {
            self.socket.write_all(&self.pending)?;
            self.pending.clear();
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
