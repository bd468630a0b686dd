//! Sessions that can end: the generation and the ended sessions in the `users` row the
//! request reads anyway to know its user, and the addresses a name logged in from.

use rusqlite::{OptionalExtension, params};

use super::SqliteStore;
use super::users::user_row;
use crate::message_store::sql;
use crate::message_store::{MAX_ENDED_SESSIONS, Result, SessionUser, Sessions};
use crate::model::UserId;
use crate::names::UserName;

impl Sessions for SqliteStore {
    fn known_login_address(&self, name: &UserName, addr: &str) -> Result<bool> {
        Ok(self.conn()?.prepare_cached(sql::KNOWN_LOGIN_ADDRESS)?.exists(params![name.as_str(), addr])?)
    }

    fn remember_login_address(&self, name: &UserName, addr: &str, now: i64) -> Result<()> {
        let tx = self.immediate()?;
        tx.prepare_cached(sql::REMEMBER_LOGIN_ADDRESS)?.execute(params![name.as_str(), addr, now])?;
        tx.commit()?;
        Ok(())
    }

    fn session_user(&self, id: UserId) -> Result<Option<SessionUser>> {
        Ok(self
            .conn
            .prepare_cached(sql::SESSION_USER)?
            .query_row([id.0], |r| Ok(SessionUser { user: user_row(r)?, generation: r.get(4)?, ended: r.get(5)? }))
            .optional()?)
    }

    fn end_session(&self, user: UserId, id: &str, expires: i64, now: i64) -> Result<()> {
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
            tx.prepare_cached(sql::END_ALL_SESSIONS)?.execute([user.0])?;
        } else {
            kept.push(format!("{id}:{expires}"));
            tx.prepare_cached(sql::SET_ENDED_SESSIONS)?.execute(params![user.0, kept.join(" ")])?;
        }
        tx.commit()?;
        Ok(())
    }

    fn end_all_sessions(&self, user: UserId) -> Result<bool> {
        let tx = self.immediate()?;
        let n = tx.prepare_cached(sql::END_ALL_SESSIONS)?.execute([user.0])?;
        tx.commit()?;
        Ok(n == 1)
    }
}
