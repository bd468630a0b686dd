//! Limits: fixed-window counters in `rate_limits` (logins, sends, posts and comments).
//!
//! [`Store::take_limits`] checks and counts all of an action's limits at once in one
//! `BEGIN IMMEDIATE` transaction, before the action's expensive work, so N parallel
//! attempts are serialised on the write lock and at most `limit` of them are admitted,
//! whatever N.

use rusqlite::{OptionalExtension, Transaction, params};

use super::{Result, SqliteStore};

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
    /// The author was removed (`piggyback user remove`) after the request was checked.
    Removed,
}

impl SqliteStore {
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
}

/// [`Store::take_limits`] inside a transaction the caller goes on with.
pub(super) fn take_limits_in(tx: &Transaction<'_>, limits: &[Limit], now: i64) -> Result<Result<(), Refusal>> {
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
