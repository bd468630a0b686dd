//! Sessions that can end: the generation and the ended sessions in the `users` row the
//! request reads anyway to know its user, and the addresses a name logged in from.

use rusqlite::{OptionalExtension, params};

use super::users::user_row;
use super::{Result, SqliteStore};
use crate::model::{User, UserId};
use crate::names::UserName;

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

impl SqliteStore {
    /// Whether `name` has logged in from `addr` before.
    pub fn known_login_address(&self, name: &UserName, addr: &str) -> Result<bool> {
        Ok(self
            .conn
            .prepare_cached("SELECT 1 FROM login_addresses WHERE name = ?1 AND addr = ?2")?
            .exists(params![name.as_str(), addr])?)
    }

    /// Remembers that `name` logged in from `addr`.
    pub fn remember_login_address(&self, name: &UserName, addr: &str, now: i64) -> Result<()> {
        let tx = self.immediate()?;
        tx.prepare_cached(
            "INSERT INTO login_addresses (name, addr, last_login) VALUES (?1, ?2, ?3)
             ON CONFLICT (name, addr) DO UPDATE SET last_login = excluded.last_login",
        )?
        .execute(params![name.as_str(), addr, now])?;
        tx.commit()?;
        Ok(())
    }

    /// The user with their session state, in the one query that identifies a request
    /// (a removed user is nobody: every cookie of theirs answers 401).
    pub fn session_user(&self, id: UserId) -> Result<Option<SessionUser>> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT id, name, display_name, preview, session_gen, ended_sessions FROM users
                 WHERE id = ?1 AND removed_at IS NULL",
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
