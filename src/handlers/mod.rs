//! One module per CGI program: each turns a [`Request`] into a [`Reply`] through the
//! store and the queue. Handlers never print and never open the database.

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

use crate::gateway::Context;
use crate::http::{ApiError, Request};
use crate::message_store::{User, UserId};
use crate::msq::{Send, SendOutcome};
use crate::text;

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

/// A user named in a request, or 404 (names that cannot exist are 404 too).
fn named_user(ctx: &Context<'_>, name: &str) -> Result<User, ApiError> {
    if !text::valid_name(name) {
        return Err(ApiError::new(404, "user_not_found", "no such user"));
    }
    ctx.store.user_by_name(name)?.ok_or_else(|| ApiError::new(404, "user_not_found", "no such user"))
}

/// Refuses with 429 when `user` already caused `PIGGYBACK_SEND_RATE` messages in the
/// last minute: a person's notes and the notices their actions send (friend requests,
/// comments) alike, so that no action can flood a mailbox. Checked before the action,
/// so a refused one changes nothing; counted with a read, so it takes no write lock.
/// (Sends still waiting in the spool are counted once they are stored.)
fn within_send_rate(ctx: &Context<'_>, user: UserId) -> Result<(), ApiError> {
    let window = 60;
    let now = crate::message_store::now();
    let (sent, oldest) = ctx.store.messages_sent_since(user, now - window + 1)?;
    if sent >= i64::from(ctx.config.send_rate_per_minute) {
        let wait = oldest.map_or(window, |t| (t + window - now).max(1));
        return Err(ApiError::new(
            429,
            "rate_limited",
            format!("more than {} messages a minute; wait a little", ctx.config.send_rate_per_minute),
        )
        .header("Retry-After", wait.to_string()));
    }
    Ok(())
}

/// Sends one message (a person's note or a notice) through the queue: the only way
/// handlers send.
fn send(ctx: &Context<'_>, send: Send) -> Result<SendOutcome, ApiError> {
    Ok(ctx.queue.send(send)?)
}
