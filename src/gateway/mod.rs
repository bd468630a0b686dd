//! The gateway module (网关程序模块): the only code that touches the process.
//!
//! It reads the CGI environment and stdin (RFC 3875), opens the message database,
//! identifies the user, runs a handler, attaches `site_messages` (here and nowhere
//! else), and writes the whole response to stdout with one write after every
//! transaction of the request has committed.

use std::collections::HashMap;
use std::ffi::OsString;
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use serde_json::Value;

use crate::config::{Config, MAX_BODY_BYTES, RemoteUser};
use crate::csrf;
use crate::handlers::{Caller, Context, Handler};
use crate::http::{Ack, ApiError, BodyError, Meta, Method, Reply, Request, SessionChange, reason_phrase};
use crate::identity::{self, KeyMemory, Verdict};
use crate::message_status::{self, Announcing};
use crate::message_store::{Store, StoreError};
use crate::model::{User, now};
use crate::msq::spool::{Spool, SpoolMemory};
use crate::msq::{self, Queue, QueueError};
use crate::names::{NameError, UserName};
use crate::proxy::{self, ForwardingHeaders};

/// The CGI environment as the server passed it. Hashed with foldhash, seeded per
/// process: SipHash cost 12 % of a FastCGI request (header names come from the client,
/// so the hasher stays seeded).
pub type Env = HashMap<String, OsString, foldhash::fast::RandomState>;

pub mod fcgi;
pub mod start;

/// The whole `main` of every CGI program: runs the handler [`crate::handlers::PROGRAMS`]
/// pairs with the executable's name (`CARGO_BIN_NAME`).
pub fn run_program(name: &str) -> ExitCode {
    match crate::handlers::program(name) {
        Some(program) => run(program.handler),
        None => {
            let mut stdout = std::io::stdout().lock();
            let reply = ApiError::misconfigured().log(format!("{name} is not a Piggyback program")).into_reply();
            log(reply.log.as_deref().unwrap_or_default());
            let _ = stdout.write_all(&serialize(reply, false)).and_then(|()| stdout.flush());
            ExitCode::SUCCESS
        }
    }
}

/// Runs one CGI request of the process with `handler`, or, when the process was started
/// with a listening socket on stdin, FastCGI requests until it is told to stop.
pub fn run(handler: Handler) -> ExitCode {
    if fcgi::listening_on_stdin() {
        // `PIGGYBACK_FASTCGI_MALLOC=glibc` keeps glibc's malloc: the comparison that
        // shows what mimalloc gains (scripts/bench-start --fastcgi).
        if std::env::var_os("PIGGYBACK_FASTCGI_MALLOC").as_deref() != Some(std::ffi::OsStr::new("glibc")) {
            crate::alloc::serve_many();
        }
        return fcgi::serve(handler);
    }
    let env: Env = std::env::vars_os().filter_map(|(k, v)| k.into_string().ok().map(|k| (k, v))).collect();
    let mut kept = Kept::default();
    let output = respond_keeping(handler, &env, std::io::stdin().lock(), &mut kept);
    // A connection that wrote closes before the answer, as it always did: its close
    // may checkpoint (ARCHITECTURE.md, the close-checkpoint rule).
    if kept.store.as_ref().is_some_and(|(_, store)| store.wrote()) {
        kept.store = None;
    }
    let mut stdout = std::io::stdout().lock();
    // The client may be gone (lighttpd then sends SIGTERM); nothing is left to do.
    let _ = stdout.write_all(&output).and_then(|()| stdout.flush());
    // One that only read would not checkpoint on close anyway: the process is about to
    // exit, and freeing SQLite's schema and statements is work nobody needs (about
    // 100 k instructions, CHANGELOG.md, 2026-11-30). The exit releases its locks as a
    // crash would, which SQLite is built for.
    std::mem::forget(kept);
    ExitCode::SUCCESS
}

/// The complete CGI response (header block and body) to one request.
pub fn respond(handler: Handler, env: &Env, stdin: impl Read) -> Vec<u8> {
    respond_keeping(handler, env, stdin, &mut Kept::default())
}

/// [`respond`] with the database connection of earlier requests, if it is to the same
/// file: a FastCGI process keeps it, and with it SQLite's parsed schema and prepared
/// statements. Nothing else survives a request.
pub fn respond_keeping(handler: Handler, env: &Env, stdin: impl Read, kept: &mut Kept) -> Vec<u8> {
    let head = env.get("REQUEST_METHOD").and_then(|m| m.to_str()) == Some("HEAD");
    let mut reply = catch_unwind(AssertUnwindSafe(|| serve(handler, env, stdin, now(), kept))).unwrap_or_else(|_| {
        // The connection may be mid-transaction: the next request opens a fresh one.
        kept.store = None;
        ApiError::internal("internal error").log("a handler panicked; answered 500").into_reply()
    });
    // The one place a reply's log line is written.
    if let Some(line) = reply.log.take() {
        log(&line);
    }
    serialize(reply, head)
}

/// What a process keeps between requests: the open database and the path it was opened
/// as, and, in a process that serves many (FastCGI), what it last saw of the spool.
#[derive(Default)]
pub struct Kept {
    store: Option<(PathBuf, Store)>,
    new_dir: Option<SpoolMemory>,
    key: Option<KeyMemory>,
}

impl Kept {
    /// For a process that serves request after request: it remembers an empty `new/`
    /// and the session key.
    pub fn across_requests() -> Kept {
        Kept { store: None, new_dir: Some(SpoolMemory::default()), key: Some(KeyMemory::default()) }
    }

    /// The kept connection when it is to `path` and its schema is still this build's
    /// (`piggyback init` may have migrated it since); else a newly opened one, kept.
    /// With it, the kept session key, if this process keeps one.
    pub(crate) fn open(&mut self, path: &Path) -> Result<(&Store, Option<&KeyMemory>), StoreError> {
        let kept = match self.store.take() {
            // A connection opened while the database could not be written stays
            // read-only: open again, so a fault that has cleared is not remembered.
            Some((kept, store)) if kept == path && store.can_write() => {
                store.check_version()?;
                (kept, store)
            }
            _ => (path.to_owned(), Store::open(path)?),
        };
        Ok((&self.store.insert(kept).1, self.key.as_ref()))
    }

    /// The site's spool, remembering what this process saw of it.
    pub(crate) fn spool(&self, config: &Config) -> Spool {
        match &self.new_dir {
            Some(memory) => spool_of(config).remembering(memory),
            None => spool_of(config),
        }
    }
}

/// The spool `config` names, creating what it creates with the configured mode.
pub(crate) fn spool_of(config: &Config) -> Spool {
    Spool::new(&config.spool).with_mode(config.file_mode)
}

/// Serves one request at `now` (unix seconds, read once for the whole request).
fn serve(handler: Handler, env: &Env, stdin: impl Read, now: i64, kept: &mut Kept) -> Reply {
    let config = match Config::from_lookup(|name| env.get(name).cloned()) {
        Ok(config) => config,
        Err(e) => return ApiError::misconfigured().log(format!("configuration: {e}")).into_reply(),
    };
    let mut request = parse_request(env, stdin);
    distrust_remote_user(&mut request.meta, &config);
    believe_proxies(&mut request.meta, &config);
    let spool = kept.spool(&config);
    let (store, key_memory) = match kept.open(&config.db) {
        Ok(opened) => opened,
        Err(e) => return ApiError::from(e).into_reply(),
    };
    if store.is_degraded() {
        log(
            "PIGGYBACK_DB: no disk space for the -wal and -shm files: answering reads only; free space on its filesystem",
        );
    }
    let caller = match identify(&request.meta, store, &config, now, key_memory) {
        Ok(Some(user)) => Caller::Identified(user),
        Ok(None) => Caller::Anonymous,
        Err(mut e) if e.status < 500 => {
            // Logged now, whether or not the handler answers with the refusal.
            if let Some(line) = e.log.take() {
                log(&line);
            }
            Caller::Refused(e)
        }
        Err(e) => return e.into_reply(),
    };
    let queue = Queue::new(store, spool);
    let ctx = Context { config: &config, store, queue, caller, now };
    // A request that could not be parsed, or a cross-site one, is refused before the
    // handler runs, so it changes nothing.
    let checked = match &request.problem {
        Some(problem) => Err(problem.clone()),
        None => csrf::refuse_cross_site(request.method, &request.meta, &config.allowed_origins),
    };
    let mut reply = match checked.and_then(|()| handler(&ctx, &request)) {
        Ok(reply) => reply,
        Err(e) => e.into_reply(),
    };
    // A login announces to the user who just logged in, a logout to nobody.
    let session = std::mem::take(&mut reply.session);
    let announce_to = match &session {
        SessionChange::Unchanged => ctx.caller.identified(),
        SessionChange::Started(user) => Some(user),
        SessionChange::Ended => None,
    };
    // A request from another site (a link, a form, a script on another page) reports
    // counts but announces nothing: that page would use up the user's toasts.
    let announcing = match csrf::cross_site(&request.meta, &config.allowed_origins) {
        Some(_) => Announcing::CountsOnly,
        None if reply.counts_only => Announcing::CountsOnly,
        None => Announcing::Claim,
    };
    if let Some(user) = announce_to {
        drain(&ctx.queue, now);
        // A 304 says "nothing changed": it has no body to carry the member.
        if reply.status < 500 && reply.status != 304 && request.method != Method::Head {
            match site_messages(ctx.store, user, request.meta.ack.as_ref(), &config, now, announcing) {
                Ok(Some(value)) => {
                    reply.body.insert(SITE_MESSAGES.into(), value);
                }
                Ok(None) => {}
                // Another writer, or a database that cannot be written now: left out, and
                // the next answer announces. Not worth a log line on every answer.
                Err(left) if left.is_passing() => {}
                // The endpoint's own work has committed: report it, leave the member out.
                Err(left) => log(&left.line),
            }
        }
    }
    reply
}

/// Replaces the peer's address and scheme with the client's when the peer is a trusted
/// proxy (`PIGGYBACK_TRUSTED_PROXIES`); from anybody else the forwarding headers are
/// ignored, so a client cannot pick the address its login failures count against.
pub(crate) fn believe_proxies(meta: &mut Meta, config: &Config) {
    let client = proxy::client(meta.remote_addr.as_deref(), meta.https, &meta.forwarding, &config.trusted_proxies);
    meta.remote_addr = client.addr;
    meta.https = client.https;
}

/// The member every JSON answer to an identified user carries.
pub const SITE_MESSAGES: &str = "site_messages";

/// Why `site_messages` was left out: what the log says once a minute per process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Cause {
    /// Another writer held the database past the patience.
    Busy,
    /// The database (or its folder) cannot be written now.
    ReadOnly,
    /// The disk or the database is full.
    Full,
    /// The database server cannot be reached.
    Unreachable,
    /// The database cannot be opened, or has another schema version.
    Unopenable,
    /// The settings are missing or invalid.
    Misconfigured,
    /// The request's identity was refused (a bad cookie, an unknown `REMOTE_USER`).
    Identity,
    /// A program named a user Piggyback refuses.
    RefusedName,
    /// A program named a user Piggyback does not know.
    UnknownUser,
    /// Anything else the database or the encoder reported.
    Failed,
    /// A wrapped program's answer had a `site_messages` member of its own.
    OwnMember,
}

/// Why `site_messages` was left out of an answer: its cause (one log line per cause
/// and minute is enough) and the line for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeftOut {
    pub cause: Cause,
    pub line: String,
}

impl LeftOut {
    pub fn new(cause: Cause, line: impl Into<String>) -> LeftOut {
        LeftOut { cause, line: line.into() }
    }

    /// A passing state of the database (another writer, a read-only or full disk):
    /// the next answer announces.
    pub fn is_passing(&self) -> bool {
        matches!(self.cause, Cause::Busy | Cause::ReadOnly | Cause::Full)
    }

    /// Why a store error leaves the member out.
    pub fn of_store(e: &StoreError) -> LeftOut {
        let cause = match e {
            StoreError::Busy => Cause::Busy,
            StoreError::ReadOnly => Cause::ReadOnly,
            StoreError::Full => Cause::Full,
            StoreError::Unreachable(_) => Cause::Unreachable,
            StoreError::Unopenable(_) | StoreError::Schema { .. } => Cause::Unopenable,
            _ => Cause::Failed,
        };
        LeftOut::new(cause, format!("site_messages left out: {e}"))
    }
}

impl std::fmt::Display for LeftOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.line)
    }
}

impl std::error::Error for LeftOut {}

/// Why `piggyback status --user NAME` has no member to print.
#[derive(Debug)]
pub enum SiteMessagesError {
    /// The message database could not be opened.
    Open(StoreError),
    /// Not a user name this site accepts.
    Name { name: String, why: NameError },
    /// Nobody has this name.
    NoUser(UserName),
    /// The database failed while looking the user up.
    Store(StoreError),
    /// The member was left out, and why.
    LeftOut(LeftOut),
}

impl std::fmt::Display for SiteMessagesError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SiteMessagesError::Open(e) => write!(f, "PIGGYBACK_DB: {e}"),
            SiteMessagesError::Name { name, why } => write!(f, "{name:?}: {why}"),
            SiteMessagesError::NoUser(name) => write!(f, "no user named {name}"),
            SiteMessagesError::Store(e) => write!(f, "{e}"),
            SiteMessagesError::LeftOut(left) => write!(f, "{left}"),
        }
    }
}

impl std::error::Error for SiteMessagesError {}

/// The one place `site_messages` is computed, for every program: ours (through
/// [`serve`]) and the site's own (through `wrap::identity`). `None` when the
/// configuration omits an empty member; `Err` says why it was left out.
pub(crate) fn site_messages(
    store: &Store,
    user: &User,
    ack: Option<&Ack>,
    config: &Config,
    now: i64,
    announcing: Announcing,
) -> Result<Option<Value>, LeftOut> {
    // A page must not wait seconds for another writer just to announce: past the
    // patience the member is left out and the next answer announces.
    let claimed = {
        let _patience = store.patience(msq::ANNOUNCE_PATIENCE);
        message_status::claim(store, user, ack, config, now, announcing)
    };
    match claimed {
        Ok(Some(site)) => serde_json::to_value(site)
            .map(Some)
            .map_err(|e| LeftOut::new(Cause::Failed, format!("site_messages left out: {e}"))),
        Ok(None) => Ok(None),
        Err(e) => Err(LeftOut::of_store(&e)),
    }
}

/// JSON text of `value` with `<`, `>` and `&` written as `\u003c`, `\u003e`, `\u0026`:
/// a body some browser or server mistakes for HTML still holds no markup. The one
/// serializer of every body we write and of the member the wrapper inserts.
pub fn json_bytes(value: &Value) -> Vec<u8> {
    use serde::Serialize;
    let mut out = Vec::with_capacity(128);
    let mut serializer = serde_json::Serializer::with_formatter(&mut out, HtmlSafe);
    if value.serialize(&mut serializer).is_err() {
        return b"{}".to_vec();
    }
    out
}

/// serde_json's compact formatter, escaping the three characters markup needs.
struct HtmlSafe;

impl serde_json::ser::Formatter for HtmlSafe {
    fn write_string_fragment<W: ?Sized + Write>(&mut self, writer: &mut W, fragment: &str) -> std::io::Result<()> {
        let bytes = fragment.as_bytes();
        let mut done = 0;
        for (i, b) in bytes.iter().enumerate() {
            let escaped: &[u8] = match b {
                b'<' => b"\\u003c",
                b'>' => b"\\u003e",
                b'&' => b"\\u0026",
                _ => continue,
            };
            writer.write_all(&bytes[done..i])?;
            writer.write_all(escaped)?;
            done = i + 1;
        }
        writer.write_all(&bytes[done..])
    }
}

/// Applies a bounded batch of waiting request files, so that a message sent a moment
/// ago by another process is in the database before `site_messages` is computed.
/// A failure here only delays those messages: it is logged, never answered.
pub(crate) fn drain(queue: &Queue<'_>, now: i64) {
    match queue.drain_for_request(now) {
        Ok(report) => {
            for line in report.bad.iter().chain(&report.dropped).chain(&report.stopped) {
                log(line);
            }
        }
        Err(QueueError::Store(StoreError::Busy)) => {}
        Err(QueueError::Store(e)) => log(&crate::msq::stopped_line(&e)),
        Err(e) => log(&format!("drain: {e}")),
    }
}

/// One line on stderr, which the web server puts in its error log.
pub fn log(line: &str) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "piggyback[{}]: {}", std::process::id(), line.replace(['\r', '\n'], " "));
}

/// `site_messages` for the user named `name`, with the same effect as a request of
/// theirs (the drain, the announcement): for a program that is not a CGI child
/// (`piggyback status --user NAME`). `Err` names what went wrong.
pub fn site_messages_of_user(config: &Config, name: &str) -> Result<Option<Value>, SiteMessagesError> {
    let store = Store::open(&config.db).map_err(SiteMessagesError::Open)?;
    let name = UserName::parse(name).map_err(|why| SiteMessagesError::Name { name: name.to_owned(), why })?;
    let user = store.user_by_name(&name).map_err(SiteMessagesError::Store)?.ok_or(SiteMessagesError::NoUser(name))?;
    let now = now();
    drain(&Queue::new(&store, spool_of(config)), now);
    site_messages(&store, &user, None, config, now, Announcing::Claim).map_err(SiteMessagesError::LeftOut)
}

/// Forgets `REMOTE_USER` unless the operator said the server authenticated it; the log
/// says so once per process.
pub(crate) fn distrust_remote_user(meta: &mut Meta, config: &Config) {
    static SAID: std::sync::Once = std::sync::Once::new();
    if config.remote_user == RemoteUser::Ignored && meta.remote_user.take().is_some() {
        SAID.call_once(|| {
            log("REMOTE_USER ignored: set PIGGYBACK_TRUST_REMOTE_USER=1 where the server authenticates it");
        });
    }
}

pub(crate) fn identify(
    meta: &Meta,
    store: &Store,
    config: &Config,
    now: i64,
    key_memory: Option<&KeyMemory>,
) -> Result<Option<User>, ApiError> {
    // The web server's own authentication wins: it is the site's primary login, and a
    // stale cookie must not override it.
    if let Some(raw) = &meta.remote_user {
        // The same canonical form as a login: `Alice@Example.COM` is alice@example.com.
        let name = UserName::parse(raw).map_err(|e| {
            ApiError::new(401, "unknown_user", format!("the authenticated user name is not one this site accepts: {e}"))
        })?;
        return match store.user_by_name(&name)? {
            Some(user) => Ok(Some(user)),
            None => Err(ApiError::new(401, "unknown_user", "the authenticated user has no account here")),
        };
    }
    let cookies = meta.cookie.as_deref();
    if cookies.map(identity::session_cookies).unwrap_or_default().is_empty() {
        return Ok(None);
    }
    if config.secret_file.is_none() {
        return Err(
            ApiError::unauthorized().log("PIGGYBACK_SECRET_FILE: not set, so session cookies cannot be checked")
        );
    }
    let key = identity::session_key_remembered(config, key_memory)?;
    // Several cookies: a stale one must not hide a valid one, and two valid ones naming
    // different users mean one was planted (by a sibling subdomain): trust neither.
    let claims = match identity::judge(cookies, &key, now) {
        Verdict::Valid(claims) => claims,
        Verdict::None => return Ok(None),
        Verdict::Ambiguous => {
            return Err(ApiError::new(
                401,
                "ambiguous_session",
                "several session cookies name different users; log in again",
            ));
        }
        Verdict::Invalid(why) => {
            let why = match why {
                identity::CookieError::Expired => "the session has expired; log in again",
                _ => "the session cookie is not valid; log in again",
            };
            return Err(ApiError::new(401, "invalid_session", why));
        }
    };
    // The users row that names the user also says whether the session still stands:
    // its generation moved on (logout everywhere, a new password, a revocation), or
    // this one session was logged out.
    let Some(found) = store.session_user(claims.user)? else {
        return Err(ApiError::new(401, "invalid_session", "the session names no user; log in again"));
    };
    // A v1 value (minted by a host site, no generation) counts only until the user's
    // first revocation: `piggyback user revoke` ends every cookie, whatever minted it.
    let ended = claims.generation.map_or(found.generation != 0, |g| g != found.generation)
        || claims.session.as_deref().is_some_and(|id| found.has_ended(id));
    if ended {
        return Err(ApiError::new(401, "invalid_session", "the session has ended; log in again"));
    }
    if let Some(binding) = &claims.binding
        && !site_session_matches(cookies, binding, &key, config)
    {
        return Err(ApiError::new(401, "invalid_session", "the site's session has ended; log in again"));
    }
    Ok(Some(found.user))
}

/// Whether the request carries the site session a bound cookie (v3) was minted for:
/// a value of the `PIGGYBACK_SITE_SESSION_COOKIE` cookie whose keyed hash is `binding`.
fn site_session_matches(cookies: Option<&str>, binding: &str, key: &identity::Key, config: &Config) -> bool {
    let (Some(cookies), Some(site)) = (cookies, config.site_session_cookie.as_deref()) else { return false };
    identity::cookie_values(cookies, site).any(|value| key.binding(site, value) == binding)
}

/// Parses the CGI environment and reads the body (RFC 3875, sections 4.1 and 4.2).
/// What cannot be parsed (a value that is not UTF-8, a broken query) becomes the
/// request's `problem`, answered instead of running the handler; the rest is still
/// parsed, so an identified user's 400 carries `site_messages` like any other answer.
/// A variable that is not UTF-8 counts as absent, so it never names a user.
pub fn parse_request(env: &Env, mut stdin: impl Read) -> Request {
    let mut vars = Vars { env, problem: None };
    let method = Method::parse(vars.text("REQUEST_METHOD").unwrap_or("GET"));
    let path = vars.text("PATH_INFO").unwrap_or("").split('/').filter(|s| !s.is_empty()).map(str::to_owned).collect();
    let query = match parse_query(vars.text("QUERY_STRING").unwrap_or("")) {
        Ok(query) => query,
        Err(e) => {
            vars.problem.get_or_insert(e);
            Vec::new()
        }
    };
    let content_type = vars.text("CONTENT_TYPE").map(str::to_owned);
    let host = match vars.nonempty("HTTP_HOST") {
        Some(h) => Some(h),
        None => vars.nonempty("SERVER_NAME").map(|name| match vars.nonempty("SERVER_PORT") {
            Some(port) if port != "80" && port != "443" => format!("{name}:{port}"),
            _ => name,
        }),
    };
    let ack = match vars.text("HTTP_X_PIGGYBACK_ACK").map(Ack::parse) {
        None => None,
        Some(Some(ack)) => Some(ack),
        Some(None) => {
            vars.problem.get_or_insert(ApiError::bad_request(
                "bad_ack",
                "X-Piggyback-Ack must be shown=BATCH,... (the batches shown), or the last batch shown",
            ));
            None
        }
    };
    let meta = Meta {
        remote_user: vars.nonempty("REMOTE_USER"),
        cookie: env.get("HTTP_COOKIE").and_then(|c| utf8_cookies(c.as_bytes())),
        origin: vars.nonempty("HTTP_ORIGIN"),
        sec_fetch_site: vars.nonempty("HTTP_SEC_FETCH_SITE"),
        sec_fetch_mode: vars.nonempty("HTTP_SEC_FETCH_MODE"),
        requested_with: vars.nonempty("HTTP_X_REQUESTED_WITH"),
        host,
        https: vars.nonempty("HTTPS").is_some_and(|v| v.eq_ignore_ascii_case("on") || v == "1")
            || vars.nonempty("REQUEST_SCHEME").is_some_and(|v| v.eq_ignore_ascii_case("https")),
        remote_addr: vars.nonempty("REMOTE_ADDR"),
        forwarding: ForwardingHeaders {
            forwarded: vars.nonempty("HTTP_FORWARDED"),
            x_forwarded_for: vars.nonempty("HTTP_X_FORWARDED_FOR"),
            x_forwarded_proto: vars.nonempty("HTTP_X_FORWARDED_PROTO"),
        },
        ack,
        if_none_match: vars.nonempty("HTTP_IF_NONE_MATCH"),
    };
    let body = if method.is_safe() || vars.problem.is_some() {
        Ok(Vec::new())
    } else {
        let length = vars.text("CONTENT_LENGTH");
        let chunked = vars.text("HTTP_TRANSFER_ENCODING").is_some_and(|t| t.to_ascii_lowercase().contains("chunked"));
        read_body(length, chunked, &mut stdin)
    };
    Request { method, path, query, content_type, body, meta, problem: vars.problem }
}

/// The cookies of a `Cookie` header that are UTF-8: another application's cookie of
/// arbitrary bytes on the same host must not lock the user out of this site.
fn utf8_cookies(header: &[u8]) -> Option<String> {
    let kept: Vec<&str> = header.split(|&b| b == b';').filter_map(|pair| std::str::from_utf8(pair).ok()).collect();
    let joined = kept.join(";");
    (!joined.trim().is_empty()).then_some(joined)
}

/// Reads CGI variables, keeping the first one that was not UTF-8 as the problem.
struct Vars<'a> {
    env: &'a Env,
    problem: Option<ApiError>,
}

impl<'a> Vars<'a> {
    fn text(&mut self, name: &str) -> Option<&'a str> {
        let value = self.env.get(name)?;
        let text = value.to_str();
        if text.is_none() {
            self.problem
                .get_or_insert_with(|| ApiError::bad_request("invalid_utf8", format!("{name} is not valid UTF-8")));
        }
        text
    }

    fn nonempty(&mut self, name: &str) -> Option<String> {
        self.text(name).filter(|v| !v.is_empty()).map(str::to_owned)
    }
}

fn read_body(length: Option<&str>, chunked: bool, stdin: &mut impl Read) -> Result<Vec<u8>, BodyError> {
    let mut body = Vec::new();
    match length.map(str::trim).filter(|l| !l.is_empty()) {
        Some(length) => {
            let n: u64 = length.parse().map_err(|_| BodyError::BadLength)?;
            if n > MAX_BODY_BYTES as u64 {
                return Err(BodyError::TooLarge);
            }
            body.reserve_exact(n as usize);
            stdin.take(n).read_to_end(&mut body).map_err(|_| BodyError::Unreadable)?;
            if body.len() as u64 != n {
                return Err(BodyError::Unreadable);
            }
        }
        // Apache passes a chunked body without a length, until end of file.
        None if chunked => {
            stdin.take(MAX_BODY_BYTES as u64 + 1).read_to_end(&mut body).map_err(|_| BodyError::Unreadable)?;
            if body.len() > MAX_BODY_BYTES {
                return Err(BodyError::TooLarge);
            }
        }
        // RFC 3875 4.1.2: no CONTENT_LENGTH means no body (busybox httpd leaves it unset
        // for `Content-Length: 0`); an endpoint that needs one answers `empty_body`.
        None => {}
    }
    Ok(body)
}

fn parse_query(query: &str) -> Result<Vec<(String, String)>, ApiError> {
    let decode = |s: &str| -> Result<String, ApiError> {
        let plus = s.replace('+', " ");
        let bytes: Vec<u8> = percent_encoding::percent_decode_str(&plus).collect();
        String::from_utf8(bytes)
            .map_err(|_| ApiError::bad_request("invalid_utf8", "the query string is not valid UTF-8"))
    };
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            Ok((decode(k)?, decode(v)?))
        })
        .collect()
}

/// Writes a reply as a CGI document response (RFC 3875 6.2.1).
fn serialize(reply: Reply, head: bool) -> Vec<u8> {
    if reply.status == 304 {
        return not_modified(&reply);
    }
    let body = json_bytes(&Value::Object(reply.body));
    let mut out = Vec::with_capacity(body.len() + 256);
    let _ = write!(
        out,
        "Status: {} {}\r\nContent-Type: application/json; charset=utf-8\r\nCache-Control: private, no-store\r\n\
         X-Content-Type-Options: nosniff\r\n",
        reply.status,
        reason_phrase(reply.status)
    );
    write_headers(&mut out, &reply.headers);
    let _ = write!(out, "Content-Length: {}\r\n\r\n", body.len());
    if !head {
        out.extend_from_slice(&body);
    }
    out
}

/// A `304 Not Modified` (RFC 9110 15.4.5): its headers and no body, not even an
/// empty JSON object, and no `Content-Length` that would describe one.
fn not_modified(reply: &Reply) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    let _ = write!(out, "Status: 304 {}\r\nCache-Control: private, no-store\r\n", reason_phrase(304));
    write_headers(&mut out, &reply.headers);
    out.extend_from_slice(b"\r\n");
    out
}

fn write_headers(out: &mut Vec<u8>, headers: &[(&'static str, String)]) {
    for (name, value) in headers {
        // Nothing from input may split a header.
        let value: String = value.chars().filter(|c| *c != '\r' && *c != '\n').collect();
        let _ = write!(out, "{name}: {value}\r\n");
    }
}
