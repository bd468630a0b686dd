//! Rate limits on PostgreSQL (as `sqlite/limits.rs`): every limit of an action counted
//! in one transaction, each key's row locked in key order.

use super::{PgStore, int, text};
use crate::message_store::sql::{self, pg};
use crate::message_store::{Limit, Limits, Refusal, Result};

impl Limits for PgStore {
    // Checks and counts every one of `limits` in one transaction, as on SQLite: all
    // counted, or none and how long to wait. Each key's row is locked (made first if
    // missing), in key order so that two actions sharing keys cannot deadlock; a
    // refusal rolls back, leaving no row it made.
    fn take_limits(&self, limits: &[Limit], now: i64) -> Result<Result<(), Refusal>> {
        self.admit(|tx| take_limits_in(tx, limits, now))
    }

    // Gives back one event counted against `key` in its current window.
    fn refund_limit(&self, key: &str) -> Result<()> {
        self.write(|tx| {
            tx.query_typed(pg!(sql::REFUND_EVENT), &[text(&key)])?;
            tx.query_typed(pg!(sql::FORGET_EMPTY_LIMIT), &[text(&key)])?;
            Ok(())
        })
    }
}

/// [`PgStore::take_limits`] inside a transaction the caller goes on with.
pub(super) fn take_limits_in(
    tx: &mut postgres::Transaction<'_>,
    limits: &[Limit],
    now: i64,
) -> Result<Result<(), Refusal>> {
    let mut order: Vec<&Limit> = limits.iter().collect();
    order.sort_by(|a, b| a.key.cmp(&b.key));
    let mut wait = None;
    let mut in_window = Vec::with_capacity(order.len());
    for l in &order {
        tx.query_typed(
            "INSERT INTO rate_limits (key, window_start, count) VALUES ($1, $2, 0) ON CONFLICT (key) DO NOTHING",
            &[text(&l.key), int(&now)],
        )?;
        let r = tx.query_typed_one(
            "SELECT window_start, count FROM rate_limits WHERE key = $1 FOR UPDATE",
            &[text(&l.key)],
        )?;
        let (start, count): (i64, i64) = (r.get(0), r.get(1));
        if now < start + l.window {
            if count >= i64::from(l.limit) {
                let w = (start + l.window - now).max(1);
                wait = Some(wait.map_or(w, |x: i64| x.max(w)));
            }
            in_window.push(true);
        } else {
            in_window.push(false);
        }
    }
    if let Some(w) = wait {
        return Ok(Err(Refusal::Wait(w)));
    }
    for (l, in_window) in order.iter().zip(in_window) {
        if in_window {
            tx.query_typed(pg!(sql::COUNT_EVENT), &[text(&l.key)])?;
        } else {
            tx.query_typed(
                "UPDATE rate_limits SET window_start = $2, count = 1 WHERE key = $1",
                &[text(&l.key), int(&now)],
            )?;
        }
    }
    Ok(Ok(()))
}
