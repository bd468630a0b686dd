//! Limits: fixed-window counters in `rate_limits` (logins, sends, posts and comments).
//!
//! [`Limits::take_limits`] checks and counts all of an action's limits at once in one
//! `BEGIN IMMEDIATE` transaction, before the action's expensive work, so N parallel
//! attempts are serialised on the write lock and at most `limit` of them are admitted,
//! whatever N.

use rusqlite::{OptionalExtension, Transaction, params};

use super::SqliteStore;
use crate::message_store::sql;
use crate::message_store::{Limit, Limits, Refusal, Result};

impl Limits for SqliteStore {
    fn take_limits(&self, limits: &[Limit], now: i64) -> Result<Result<(), Refusal>> {
        let tx = self.immediate()?;
        let taken = take_limits_in(&tx, limits, now)?;
        tx.commit()?;
        Ok(taken)
    }

    fn refund_limit(&self, key: &str) -> Result<()> {
        let tx = self.immediate()?;
        tx.prepare_cached(sql::REFUND_EVENT)?.execute([key])?;
        tx.prepare_cached(sql::FORGET_EMPTY_LIMIT)?.execute([key])?;
        tx.commit()?;
        Ok(())
    }
}

/// [`Limits::take_limits`] inside a transaction the caller goes on with.
pub(in crate::message_store) fn take_limits_in(
    tx: &Transaction<'_>,
    limits: &[Limit],
    now: i64,
) -> Result<Result<(), Refusal>> {
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
            tx.prepare_cached(sql::COUNT_EVENT)?.execute([&l.key])?;
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
