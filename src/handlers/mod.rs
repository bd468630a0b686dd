//! One module per CGI program: each turns a [`Request`] into a [`Reply`] through the
//! store (and the queue for sends). Handlers never print, never read the clock and never
//! open the database: the gateway gives them a [`Context`].

mod friends;
mod message_poll;
mod messages;
mod posts;
mod profile;
mod session;

pub use friends::friends;
pub use messages::messages;
pub use posts::posts;
pub use profile::profile;
pub use session::session;

use crate::config::Config;
use crate::http::{ApiError, Reply, Request};
use crate::message_store::{Limit, Refusal, Store, StoreError};
use crate::model::{NewMessage, User, UserId};
use crate::msq::{Queue, QueueError, SendOutcome};
use crate::names::UserName;
use crate::text;

/// Who is asking, as the gateway found out before the handler runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// No identity was presented.
    Anonymous,
    Identified(User),
    /// An identity was presented and refused (a forged or expired cookie, an unknown
    /// `REMOTE_USER`). The handler answers with the refusal when it needs a user, so
    /// that the `session` program can still log in over a stale cookie.
    Refused(ApiError),
}

impl Caller {
    /// The identified user, if any.
    pub fn identified(&self) -> Option<&User> {
        match self {
            Caller::Identified(user) => Some(user),
            Caller::Anonymous | Caller::Refused(_) => None,
        }
    }
}

/// What a handler gets besides the request.
pub struct Context<'a> {
    pub config: &'a Config,
    pub store: &'a Store,
    /// The spool's front door: the only way a handler sends a message.
    pub queue: Queue<'a>,
    pub caller: Caller,
    /// The request's time, unix seconds: read once by the gateway, so that every
    /// row a request writes carries the same time and tests can set it.
    pub now: i64,
}

impl Context<'_> {
    /// The identified user, or 401 (the refusal, when the identity was refused).
    pub fn require_user(&self) -> Result<&User, ApiError> {
        match &self.caller {
            Caller::Identified(user) => Ok(user),
            Caller::Refused(refusal) => Err(refusal.clone()),
            Caller::Anonymous => Err(ApiError::unauthorized()),
        }
    }
}

/// A CGI program's logic: request in, reply out; never prints, never opens the database.
pub type Handler = fn(&Context<'_>, &Request) -> Result<Reply, ApiError>;

/// A CGI program: the executable's name (its `[[bin]]` in Cargo.toml and its
/// `bin/<name>.rs`) and its handler.
#[derive(Clone, Copy)]
pub struct Program {
    pub name: &'static str,
    pub handler: Handler,
}

/// Every CGI program, the one list: the binaries, the tests, the fuzz target, the
/// install script and the end-to-end tests (`piggyback programs`) read it. Adding a
/// program is an entry here, its handler module, and its `[[bin]]` with a copy of the
/// one-line `bin/*.rs` (a test holds the three together).
pub const PROGRAMS: &[Program] = &[
    Program { name: "profile", handler: profile },
    Program { name: "friends", handler: friends },
    Program { name: "posts", handler: posts },
    Program { name: "messages", handler: messages },
    Program { name: "session", handler: session },
];

/// The program called `name`.
pub fn program(name: &str) -> Option<&'static Program> {
    PROGRAMS.iter().find(|p| p.name == name)
}

/// What a text field accepts.
pub struct TextRule {
    pub field: &'static str,
    /// Most characters (Unicode scalar values).
    pub max: usize,
    pub blank: Blank,
    pub lines: Lines,
}

/// Whether a field may be empty or white space only.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Blank {
    Refused,
    Allowed,
}

/// Whether a field may hold line breaks and tabs.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Lines {
    One,
    Many,
}

pub const SUBJECT: TextRule = TextRule { field: "subject", max: 200, blank: Blank::Refused, lines: Lines::One };
pub const MESSAGE_BODY: TextRule = TextRule { field: "body", max: 10_000, blank: Blank::Refused, lines: Lines::Many };
/// A post or a comment.
pub const POST_BODY: TextRule = TextRule { field: "body", max: 5_000, blank: Blank::Refused, lines: Lines::Many };
pub const DISPLAY_NAME: TextRule =
    TextRule { field: "display_name", max: 64, blank: Blank::Refused, lines: Lines::One };
pub const BIO: TextRule = TextRule { field: "bio", max: 1_000, blank: Blank::Allowed, lines: Lines::Many };
/// Longest idempotency key, in bytes.
pub const MAX_IDEMPOTENCY_KEY_BYTES: usize = 128;

/// `limit` from the query: 1 to 100, `default` when absent.
fn page_limit(req: &Request, default: usize) -> Result<usize, ApiError> {
    match req.query_param("limit") {
        None => Ok(default),
        Some(v) => match v.parse::<usize>() {
            Ok(n) if (1..=100).contains(&n) => Ok(n),
            _ => Err(ApiError::bad_request("bad_limit", "limit must be a whole number from 1 to 100")),
        },
    }
}

/// `before` from the query: a positive id.
fn before_param(req: &Request) -> Result<Option<i64>, ApiError> {
    match req.query_param("before") {
        None | Some("") => Ok(None),
        Some(v) => match v.parse::<i64>() {
            Ok(n) if n > 0 => Ok(Some(n)),
            _ => Err(ApiError::bad_request("bad_before", "before must be a positive id")),
        },
    }
}

/// A resource id from the path; anything that is not one names no resource.
fn path_id(segment: &str, what: &str) -> Result<i64, ApiError> {
    match segment.parse::<i64>() {
        Ok(n) if n > 0 && segment.bytes().all(|b| b.is_ascii_digit()) => Ok(n),
        _ => Err(ApiError::not_found(what)),
    }
}

fn unknown_path() -> ApiError {
    ApiError::new(404, "not_found", "no such resource")
}

/// Checks a text field against its rule: length in characters, blankness, and no
/// control characters (line breaks and tabs only where a field has lines) and no
/// bidirectional overrides, which could disguise a name or a subject in a toast.
fn check_text(value: &str, rule: &TextRule) -> Result<(), ApiError> {
    let field = rule.field;
    if rule.blank == Blank::Refused && value.trim().is_empty() {
        return Err(ApiError::bad_request("missing_field", format!("{field} must not be empty")));
    }
    if text::char_len(value) > rule.max {
        return Err(ApiError::bad_request("too_long", format!("{field} is longer than {} characters", rule.max)));
    }
    let allowed = |c: char| rule.lines == Lines::Many && matches!(c, '\n' | '\r' | '\t');
    let bidi = |c: char| matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}');
    if value.chars().any(|c| (c.is_control() && !allowed(c)) || bidi(c)) {
        return Err(ApiError::bad_request(
            "invalid_text",
            format!("{field} contains a control character or a bidirectional override"),
        ));
    }
    Ok(())
}

/// A user name from a request in canonical form (`crate::names`), or 400
/// `invalid_name` saying which rule it breaks.
fn user_name(raw: &str) -> Result<UserName, ApiError> {
    UserName::parse(raw).map_err(|e| ApiError::bad_request("invalid_name", e.to_string()))
}

/// A user named in a request: 400 `invalid_name` for a name no user can have, 404 when
/// no user has it.
fn named_user(ctx: &Context<'_>, name: &str) -> Result<User, ApiError> {
    ctx.store.user_by_name(&user_name(name)?)?.ok_or_else(|| ApiError::new(404, "user_not_found", "no such user"))
}

/// The limits every send counts against: `PIGGYBACK_SEND_RATE` per sender per minute
/// (a person's notes and the notices their actions send alike, so that no action can
/// flood a mailbox) and `PIGGYBACK_SEND_PAIR_DAILY` per sender and recipient per day.
fn send_limits(ctx: &Context<'_>, from: UserId, to: UserId) -> Vec<Limit> {
    vec![
        Limit::new(format!("send:{}", from.0), ctx.config.send_rate_per_minute, 60),
        Limit::new(format!("send-pair:{}:{}", from.0, to.0), ctx.config.send_pair_per_day, 86_400),
    ]
}

/// Admits one send from `from` to `to`, or refuses it with 429: counted before the
/// request file is written (so a send waiting in the spool has already counted, and
/// parallel sends cannot get past the limit together), where a held write lock of the
/// database does not stop it ([`crate::msq::Queue::admit_send`]).
fn admit_send(ctx: &Context<'_>, from: UserId, to: UserId) -> Result<(), ApiError> {
    let limits = send_limits(ctx, from, to);
    ctx.queue.admit_send(&limits, ctx.now)?.map_err(|r| refused(r, "messages"))
}

/// Runs `action`, which sends one message from `from` to `to`, once that send is
/// admitted; when the action fails, nothing was sent and the admission is given back
/// (if even that fails, the sender has spent one send: never more than the limit).
fn with_send_admitted<T>(
    ctx: &Context<'_>,
    from: UserId,
    to: UserId,
    action: impl FnOnce() -> Result<T, ApiError>,
) -> Result<T, ApiError> {
    admit_send(ctx, from, to)?;
    let out = action();
    if out.is_err() {
        let _ = ctx.queue.refund_send(&send_limits(ctx, from, to));
    }
    out
}

/// The answer to an action for or by a user removed after the request was checked.
fn removed_user() -> ApiError {
    ApiError::new(404, "user_not_found", "no such user")
}

/// The answer to an action a limit refused.
fn refused(refusal: Refusal, what: &str) -> ApiError {
    match refusal {
        Refusal::Wait(wait) => ApiError::new(429, "rate_limited", format!("too many {what} for now; wait a little"))
            .header("Retry-After", wait.to_string()),
        // Removed since identification: as a session of a removed user is answered.
        Refusal::Removed => removed_user(),
        Refusal::OverQuota => ApiError::new(
            403,
            "quota_exceeded",
            "your posts and comments have reached their size limit; delete some first",
        ),
    }
}

/// Sends one message (a person's note or a notice) through the queue: the only way
/// handlers send. Make its `request_id` with [`crate::msq::new_request_id`] and its
/// `sent_at` the request's time.
fn send(ctx: &Context<'_>, message: NewMessage) -> Result<SendOutcome, ApiError> {
    Ok(ctx.queue.send(message)?)
}

/// A store failure as an answer; what an operator must see goes in its log line.
impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        match e {
            StoreError::Busy => ApiError::unavailable("the message database is busy; try again"),
            StoreError::ReadOnly => {
                ApiError::unavailable("the message database cannot be written now; try again").log(format!(
                    "PIGGYBACK_DB: {e}: make the database file, its -wal and -shm files and its directory \
                     writable by the user the programs run as"
                ))
            }
            StoreError::Full | StoreError::Io(_) | StoreError::Corrupt(_) => {
                ApiError::unavailable("the message database cannot be written now; try again")
                    .log(format!("PIGGYBACK_DB: {e}"))
            }
            StoreError::Schema { .. } => {
                ApiError::unavailable("the message database needs maintenance").log(format!("PIGGYBACK_DB: {e}"))
            }
            StoreError::Unopenable(_) => ApiError::misconfigured().log(format!("PIGGYBACK_DB: {e}")),
            StoreError::Unreachable(_) => ApiError::unavailable("the message database cannot be reached; try again")
                .log(format!("PIGGYBACK_DB: {e}")),
            StoreError::Refused(_) | StoreError::Failed(_) => ApiError::internal("internal error").log(e.to_string()),
        }
    }
}

impl From<QueueError> for ApiError {
    fn from(e: QueueError) -> ApiError {
        match e {
            QueueError::Spool(e) => ApiError::unavailable("messages cannot be accepted now; nothing was sent").log(
                format!("PIGGYBACK_SPOOL: {e}: it must be a directory the programs' user can write, with free space"),
            ),
            QueueError::Store(e) => e.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The conversion only describes: what the operator must see rides on the answer
    /// for the gateway to write once, and a busy database is not worth a line.
    #[test]
    fn a_store_failure_carries_its_log_line_instead_of_writing_it() {
        let read_only = ApiError::from(StoreError::ReadOnly);
        assert_eq!((read_only.status, read_only.code), (503, "unavailable"));
        assert!(read_only.log.as_deref().is_some_and(|l| l.starts_with("PIGGYBACK_DB: ")), "{read_only:?}");
        let newer = ApiError::from(StoreError::Schema { found: crate::message_store::SCHEMA_VERSION + 1 });
        assert!(newer.log.as_deref().is_some_and(|l| !l.contains("piggyback init")), "{newer:?}");
        assert_eq!(ApiError::from(StoreError::Busy).log, None);
        let reply = ApiError::from(StoreError::Unopenable("gone".into())).into_reply();
        assert_eq!(reply.status, 500);
        assert!(reply.log.is_some_and(|l| l.contains("gone")));
        assert!(!serde_json::to_string(&reply.body).unwrap().contains("gone"), "the client never sees the log line");
    }
}
