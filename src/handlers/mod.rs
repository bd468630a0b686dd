//! One module per CGI program: each turns a [`Request`] into a [`Reply`] through the
//! store and the queue. Handlers never print and never open the database.

mod friends;
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

/// Longest subject, in characters.
pub const MAX_SUBJECT_CHARS: usize = 200;
/// Longest message body, in characters.
pub const MAX_MESSAGE_CHARS: usize = 10_000;
/// Longest post or comment, in characters.
pub const MAX_POST_CHARS: usize = 5_000;
/// Longest display name and bio.
pub const MAX_DISPLAY_NAME_CHARS: usize = 64;
pub const MAX_BIO_CHARS: usize = 1_000;
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

/// Checks a text field's length in characters, and that it is not blank when required.
fn check_text(field: &str, value: &str, max: usize, required: bool) -> Result<(), ApiError> {
    if required && value.trim().is_empty() {
        return Err(ApiError::bad_request("missing_field", format!("{field} must not be empty")));
    }
    if text::char_len(value) > max {
        return Err(ApiError::bad_request("too_long", format!("{field} is longer than {max} characters")));
    }
    if value.chars().any(|c| c == '\0') {
        return Err(ApiError::bad_request("invalid_text", format!("{field} contains a NUL character")));
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
