//! Rate limits: fixed-window counters (failed logins), and the send rate read from the
//! messages themselves so that it takes no write lock.

use rusqlite::{OptionalExtension, params};

use super::{Result, SqliteStore};
use crate::model::UserId;

impl SqliteStore {
    /// How many messages `user` sent since `since` (unix seconds), and when the oldest
    /// of them was sent: a read, so the send rate limit takes no write lock.
    pub fn messages_sent_since(&self, user: UserId, since: i64) -> Result<(i64, Option<i64>)> {
        Ok(self
            .conn
            .prepare_cached("SELECT count(*), min(sent_at) FROM messages WHERE sender_id = ?1 AND sent_at >= ?2")?
            .query_row(params![user.0, since], |r| Ok((r.get(0)?, r.get(1)?)))?)
    }

    /// Counts one event against `key` in a fixed window of `window` seconds; returns
    /// `Some(seconds to wait)` when `limit` events were already counted in the window.
    pub fn take_rate(&self, key: &str, limit: u32, window: i64, now: i64) -> Result<Option<i64>> {
        let tx = self.immediate()?;
        let row: Option<(i64, i64)> = tx
            .prepare_cached("SELECT window_start, count FROM rate_limits WHERE key = ?1")?
            .query_row([key], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        let wait = match row {
            Some((start, count)) if now < start + window => {
                if count >= limit as i64 {
                    Some((start + window - now).max(1))
                } else {
                    tx.prepare_cached("UPDATE rate_limits SET count = count + 1 WHERE key = ?1")?.execute([key])?;
                    None
                }
            }
            _ => {
                tx.prepare_cached(
                    "INSERT INTO rate_limits (key, window_start, count) VALUES (?1, ?2, 1)
                     ON CONFLICT (key) DO UPDATE SET window_start = excluded.window_start, count = 1",
                )?
                .execute(params![key, now])?;
                None
            }
        };
        tx.commit()?;
        Ok(wait)
    }

    /// Seconds to wait before `key` may count another event, without counting one.
    pub fn rate_wait(&self, key: &str, limit: u32, window: i64, now: i64) -> Result<Option<i64>> {
        let row: Option<(i64, i64)> = self
            .conn
            .prepare_cached("SELECT window_start, count FROM rate_limits WHERE key = ?1")?
            .query_row([key], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        Ok(match row {
            Some((start, count)) if now < start + window && count >= limit as i64 => {
                Some((start + window - now).max(1))
            }
            _ => None,
        })
    }

    /// Forgets the events counted against `key`.
    pub fn clear_rate(&self, key: &str) -> Result<()> {
        self.conn.prepare_cached("DELETE FROM rate_limits WHERE key = ?1")?.execute([key])?;
        Ok(())
    }
}
