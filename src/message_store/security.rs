//! The store's side of the second security round (issue 11): limits counted in the
//! transaction that admits an action, before the expensive work; sessions that can end;
//! what an idempotency key already made. Kept in its own file so the store's concerns
//! stay apart.
//!
//! Every limit is a fixed-window counter in `rate_limits`. [`Store::take_limits`]
//! checks and counts all of an action's limits at once in one `BEGIN IMMEDIATE`
//! transaction, so N parallel attempts are serialised on the write lock and at most
//! `limit` of them are admitted, whatever N.

use rusqlite::{OptionalExtension, Transaction, params};

use super::{MessageId, PostId, Result, Store, User, UserId, user_row};

/// The schema change of this round, applied once by `piggyback init` (version 1 → 2).
pub(super) const MIGRATION_2: &str = "
-- Sessions: a cookie names the generation it was minted in; ending every session of a
-- user moves the generation on. Single sessions that ended early are listed as
-- `<session id>:<expires>` until they would have expired.
ALTER TABLE users ADD COLUMN session_gen INTEGER NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN ended_sessions TEXT NOT NULL DEFAULT '';
-- Client addresses a name has logged in from: its lock-out does not stop logins there.
CREATE TABLE login_addresses (
    name TEXT NOT NULL,
    addr TEXT NOT NULL,
    last_login INTEGER NOT NULL,
    PRIMARY KEY (name, addr)
) WITHOUT ROWID;
-- Bytes of posts and comments per author, for the quota.
CREATE TABLE post_usage (
    user_id INTEGER PRIMARY KEY REFERENCES users(id),
    bytes INTEGER NOT NULL DEFAULT 0 CHECK (bytes >= 0)
);
INSERT INTO post_usage (user_id, bytes)
    SELECT author_id, sum(n) FROM (
        SELECT author_id, length(CAST(body AS BLOB)) AS n FROM posts
        UNION ALL SELECT author_id, length(CAST(body AS BLOB)) FROM comments
    ) GROUP BY author_id;
";

/// One limit of an action: at most `limit` events per `window` seconds under `key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limit {
    pub key: String,
    pub limit: u32,
    pub window: i64,
}

impl Limit {
    pub fn new(key: impl Into<String>, limit: u32, window: i64) -> Limit {
        Limit { key: key.into(), limit, window }
    }
}

/// Why an action was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// A limit is reached: seconds until its window ends.
    Wait(i64),
    /// The author's posts and comments would exceed the quota.
    OverQuota,
}

/// A user with the session state a request checks its cookie against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionUser {
    pub user: User,
    pub generation: i64,
    /// `<session id>:<expires>` of single sessions ended early, space-separated.
    pub ended: String,
}

impl SessionUser {
    /// Whether the single session `id` was ended.
    pub fn has_ended(&self, id: &str) -> bool {
        self.ended.split(' ').any(|e| e.split(':').next() == Some(id))
    }
}

/// Most single sessions remembered as ended; past that, ending one ends them all.
pub const MAX_ENDED_SESSIONS: usize = 64;

impl Store {
    /// The message `sender` already stored under `key`, and its recipient.
    pub fn keyed_message(&self, sender: UserId, key: &str) -> Result<Option<(MessageId, UserId)>> {
        Ok(self
            .conn
            .prepare_cached("SELECT id, recipient_id FROM messages WHERE sender_id = ?1 AND idempotency_key = ?2")?
            .query_row(params![sender.0, key], |r| Ok((MessageId(r.get(0)?), UserId(r.get(1)?))))
            .optional()?)
    }

    // ---- limits --------------------------------------------------------------

    /// Checks and counts every one of `limits` in one IMMEDIATE transaction: either all
    /// are below their limit and each counts one more event, or none counts and the
    /// answer is how long to wait.
    pub fn take_limits(&self, limits: &[Limit], now: i64) -> Result<Result<(), Refusal>> {
        let tx = self.immediate()?;
        let taken = take_limits_in(&tx, limits, now)?;
        tx.commit()?;
        Ok(taken)
    }

    /// Gives back one event counted against `key` in its current window (an attempt
    /// admitted before the work turned out not to be a failure).
    pub fn refund_limit(&self, key: &str) -> Result<()> {
        let tx = self.immediate()?;
        tx.prepare_cached("UPDATE rate_limits SET count = count - 1 WHERE key = ?1 AND count > 0")?.execute([key])?;
        // A counter back at zero is as good as none: leave no trace.
        tx.prepare_cached("DELETE FROM rate_limits WHERE key = ?1 AND count = 0")?.execute([key])?;
        tx.commit()?;
        Ok(())
    }

    /// Whether `name` has logged in from `addr` before.
    pub fn known_login_address(&self, name: &str, addr: &str) -> Result<bool> {
        Ok(self
            .conn
            .prepare_cached("SELECT 1 FROM login_addresses WHERE name = ?1 AND addr = ?2")?
            .exists(params![name, addr])?)
    }

    /// Remembers that `name` logged in from `addr`.
    pub fn remember_login_address(&self, name: &str, addr: &str, now: i64) -> Result<()> {
        let tx = self.immediate()?;
        tx.prepare_cached(
            "INSERT INTO login_addresses (name, addr, last_login) VALUES (?1, ?2, ?3)
             ON CONFLICT (name, addr) DO UPDATE SET last_login = excluded.last_login",
        )?
        .execute(params![name, addr, now])?;
        tx.commit()?;
        Ok(())
    }

    // ---- posts and comments within their limits --------------------------------

    /// Adds a post if `limits` and the author's `quota` (bytes of posts and comments)
    /// allow it, counting both in the same IMMEDIATE transaction as the insert.
    pub fn add_post_within(
        &self,
        author: UserId,
        body: &str,
        limits: &[Limit],
        quota: i64,
        now: i64,
    ) -> Result<Result<PostId, Refusal>> {
        let tx = self.immediate()?;
        if let Err(refusal) = admit_text(&tx, author, body, limits, quota, now)? {
            return Ok(Err(refusal));
        }
        tx.prepare_cached("INSERT INTO posts (author_id, body, created_at) VALUES (?1, ?2, ?3)")?
            .execute(params![author.0, body, now])?;
        let id = tx.last_insert_rowid();
        tx.commit()?;
        Ok(Ok(PostId(id)))
    }

    /// Adds a comment if `limits` and the quota allow it, as [`Store::add_post_within`];
    /// returns the new comment's id.
    pub fn add_comment_within(
        &self,
        post: PostId,
        author: UserId,
        body: &str,
        limits: &[Limit],
        quota: i64,
        now: i64,
    ) -> Result<Result<i64, Refusal>> {
        let tx = self.immediate()?;
        if let Err(refusal) = admit_text(&tx, author, body, limits, quota, now)? {
            return Ok(Err(refusal));
        }
        tx.prepare_cached("INSERT INTO comments (post_id, author_id, body, created_at) VALUES (?1, ?2, ?3, ?4)")?
            .execute(params![post.0, author.0, body, now])?;
        let id = tx.last_insert_rowid();
        tx.commit()?;
        Ok(Ok(id))
    }

    // ---- sessions ----------------------------------------------------------------

    /// The user with their session state, in the one query that identifies a request.
    pub fn session_user(&self, id: UserId) -> Result<Option<SessionUser>> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT id, name, display_name, preview, session_gen, ended_sessions FROM users WHERE id = ?1",
            )?
            .query_row([id.0], |r| Ok(SessionUser { user: user_row(r)?, generation: r.get(4)?, ended: r.get(5)? }))
            .optional()?)
    }

    /// Ends the single session `id` (expiring at `expires`) of `user`. Entries past
    /// their expiry are dropped; when [`MAX_ENDED_SESSIONS`] are listed already, every
    /// session of the user ends instead.
    pub fn end_session(&self, user: UserId, id: &str, expires: i64, now: i64) -> Result<()> {
        let tx = self.immediate()?;
        let ended: Option<String> = tx
            .prepare_cached("SELECT ended_sessions FROM users WHERE id = ?1")?
            .query_row([user.0], |r| r.get(0))
            .optional()?;
        let Some(ended) = ended else { return Ok(()) };
        let mut kept: Vec<String> = ended
            .split(' ')
            .filter(|e| e.split(':').nth(1).and_then(|x| x.parse::<i64>().ok()).is_some_and(|x| x > now))
            .map(str::to_owned)
            .collect();
        if kept.len() >= MAX_ENDED_SESSIONS {
            tx.prepare_cached("UPDATE users SET session_gen = session_gen + 1, ended_sessions = '' WHERE id = ?1")?
                .execute([user.0])?;
        } else {
            kept.push(format!("{id}:{expires}"));
            tx.prepare_cached("UPDATE users SET ended_sessions = ?2 WHERE id = ?1")?
                .execute(params![user.0, kept.join(" ")])?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Ends every session of `user` (logout everywhere, a new password, an
    /// administrator's revocation); false when there is no such user.
    pub fn end_all_sessions(&self, user: UserId) -> Result<bool> {
        let tx = self.immediate()?;
        let n = tx
            .prepare_cached("UPDATE users SET session_gen = session_gen + 1, ended_sessions = '' WHERE id = ?1")?
            .execute([user.0])?;
        tx.commit()?;
        Ok(n == 1)
    }
}

/// [`Store::take_limits`] inside a transaction the caller goes on with.
fn take_limits_in(tx: &Transaction<'_>, limits: &[Limit], now: i64) -> Result<Result<(), Refusal>> {
    let mut wait = None;
    let mut counts = Vec::with_capacity(limits.len());
    for l in limits {
        let row: Option<(i64, i64)> = tx
            .prepare_cached("SELECT window_start, count FROM rate_limits WHERE key = ?1")?
            .query_row([&l.key], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        match row {
            Some((start, count)) if now < start + l.window => {
                if count >= i64::from(l.limit) {
                    let w = (start + l.window - now).max(1);
                    wait = Some(wait.map_or(w, |x: i64| x.max(w)));
                }
                counts.push(true);
            }
            _ => counts.push(false),
        }
    }
    if let Some(w) = wait {
        return Ok(Err(Refusal::Wait(w)));
    }
    for (l, in_window) in limits.iter().zip(counts) {
        if in_window {
            tx.prepare_cached("UPDATE rate_limits SET count = count + 1 WHERE key = ?1")?.execute([&l.key])?;
        } else {
            tx.prepare_cached(
                "INSERT INTO rate_limits (key, window_start, count) VALUES (?1, ?2, 1)
                 ON CONFLICT (key) DO UPDATE SET window_start = excluded.window_start, count = 1",
            )?
            .execute(params![l.key, now])?;
        }
    }
    Ok(Ok(()))
}

/// Counts a post or comment of `body` against `limits` and the author's quota.
fn admit_text(
    tx: &Transaction<'_>,
    author: UserId,
    body: &str,
    limits: &[Limit],
    quota: i64,
    now: i64,
) -> Result<Result<(), Refusal>> {
    let used: i64 = tx
        .prepare_cached("SELECT bytes FROM post_usage WHERE user_id = ?1")?
        .query_row([author.0], |r| r.get(0))
        .optional()?
        .unwrap_or(0);
    let bytes = body.len() as i64;
    if used + bytes > quota {
        return Ok(Err(Refusal::OverQuota));
    }
    if let Err(refusal) = take_limits_in(tx, limits, now)? {
        return Ok(Err(refusal));
    }
    tx.prepare_cached(
        "INSERT INTO post_usage (user_id, bytes) VALUES (?1, ?2)
         ON CONFLICT (user_id) DO UPDATE SET bytes = bytes + excluded.bytes",
    )?
    .execute(params![author.0, bytes])?;
    Ok(Ok(()))
}
