//! Sessions that can end, and login addresses, on PostgreSQL (as `sqlite/sessions.rs`).

use super::users::user_row;
use super::{PgStore, int, text};
use crate::message_store::sql::{self, pg};
use crate::message_store::{MAX_ENDED_SESSIONS, Result, SessionUser, Sessions};
use crate::model::UserId;
use crate::names::UserName;

impl Sessions for PgStore {
    fn known_login_address(&self, name: &UserName, addr: &str) -> Result<bool> {
        Ok(self.query_opt(pg!(sql::KNOWN_LOGIN_ADDRESS), &[text(&name.as_str()), text(&addr)])?.is_some())
    }

    fn remember_login_address(&self, name: &UserName, addr: &str, now: i64) -> Result<()> {
        self.client()?
            .execute_typed(pg!(sql::REMEMBER_LOGIN_ADDRESS), &[text(&name.as_str()), text(&addr), int(&now)])?;
        Ok(())
    }

    fn session_user(&self, id: UserId) -> Result<Option<SessionUser>> {
        Ok(self.query_opt(pg!(sql::SESSION_USER), &[int(&id.0)])?.map(|r| SessionUser {
            user: user_row(&r),
            generation: r.get(4),
            ended: r.get(5),
        }))
    }

    // Ends the single session `id` of `user`, as on SQLite (the user's row locked
    // while its list is rewritten).
    fn end_session(&self, user: UserId, id: &str, expires: i64, now: i64) -> Result<()> {
        self.write(|tx| {
            let ended: Option<String> = tx
                .query_typed_opt("SELECT ended_sessions FROM users WHERE id = $1 FOR NO KEY UPDATE", &[int(&user.0)])?
                .map(|r| r.get(0));
            let Some(ended) = ended else { return Ok(()) };
            let mut kept: Vec<String> = ended
                .split(' ')
                .filter(|e| e.split(':').nth(1).and_then(|x| x.parse::<i64>().ok()).is_some_and(|x| x > now))
                .map(str::to_owned)
                .collect();
            if kept.len() >= MAX_ENDED_SESSIONS {
                tx.query_typed(pg!(sql::END_ALL_SESSIONS), &[int(&user.0)])?;
            } else {
                kept.push(format!("{id}:{expires}"));
                let list = kept.join(" ");
                tx.query_typed(pg!(sql::SET_ENDED_SESSIONS), &[int(&user.0), text(&list)])?;
            }
            Ok(())
        })
    }

    fn end_all_sessions(&self, user: UserId) -> Result<bool> {
        Ok(self.client()?.execute_typed(pg!(sql::END_ALL_SESSIONS), &[int(&user.0)])? == 1)
    }
}
