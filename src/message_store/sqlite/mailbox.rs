//! The mailbox on SQLite: storing a sent message, listing, reading, marking read, deleting, and
//! the claim that announces new messages (flips them to delivered as one batch). Every
//! state change keeps the user's counters (`mailbox.new`, `mailbox.delivered`) in the
//! same transaction.

use rusqlite::{Connection, OptionalExtension, Transaction, params};

use super::SqliteStore;
use crate::message_store::sql;
use crate::message_store::{
    Announce, CLAIM_BATCH, Claim, Counters, Mailbox, Mailboxes, Message, Result, StateFilter, Stored, Summary,
};
use crate::model::{Change, MessageId, MessageKind, MessageState, NewMessage, UserId};
use crate::text::rfc3339;

impl Mailboxes for SqliteStore {
    fn counters(&self, user: UserId) -> Result<Counters> {
        Ok(self.mailbox(user)?.counters)
    }

    fn mailbox(&self, user: UserId) -> Result<Mailbox> {
        read_mailbox(self.conn()?, user)
    }

    fn keyed_message(&self, sender: UserId, key: &str) -> Result<Option<(MessageId, UserId)>> {
        Ok(self
            .conn
            .prepare_cached(sql::KEYED_MESSAGE)?
            .query_row(params![sender.0, key], |r| Ok((MessageId(r.get(0)?), UserId(r.get(1)?))))
            .optional()?)
    }

    fn acknowledge(&self, user: UserId, batch: i64) -> Result<()> {
        let tx = self.immediate()?;
        tx.prepare_cached(sql::ACKNOWLEDGE)?.execute(params![user.0, batch])?;
        tx.commit()?;
        Ok(())
    }

    fn acknowledge_shown(&self, user: UserId, shown: &[i64]) -> Result<()> {
        if shown.is_empty() {
            return Ok(());
        }
        let tx = self.immediate()?;
        let Mailbox { batch: last, acked, .. } = read_mailbox(&tx, user)?;
        {
            let mut mark = tx.prepare_cached(sql::ACKNOWLEDGE_BATCH)?;
            for &b in shown.iter().filter(|&&b| b > acked && b <= last) {
                mark.execute(params![user.0, b, acked])?;
            }
        }
        let waiting: bool =
            tx.prepare_cached(sql::UNACKNOWLEDGED_LEFT)?.query_row(params![user.0, acked], |r| r.get(0))?;
        if !waiting {
            tx.prepare_cached(sql::ACKNOWLEDGE_ALL)?.execute([user.0])?;
        }
        tx.commit()?;
        Ok(())
    }

    fn claim_new(
        &self,
        user: UserId,
        max_items: usize,
        prefix_chars: usize,
        announce: Announce,
        now: i64,
    ) -> Result<Claim> {
        let tx = self.immediate()?;
        let Mailbox { batch: last, acked, .. } = read_mailbox(&tx, user)?;
        let batch = last + 1;
        let bound = max_items.max(CLAIM_BATCH) as i64;
        let returning_ids = |sql: &str, args: &[&dyn rusqlite::ToSql]| -> Result<Vec<i64>> {
            let mut stmt = tx.prepare_cached(sql)?;
            let mut ids: Vec<i64> = stmt.query_map(args, |r| r.get(0))?.collect::<rusqlite::Result<_>>()?;
            // RETURNING's order is arbitrary.
            ids.sort_unstable_by(|a, b| b.cmp(a));
            Ok(ids)
        };
        let repeat_ids = match announce {
            Announce::New => Vec::new(),
            Announce::NewAndUnacknowledged => returning_ids(sql::ANNOUNCE_AGAIN, &[&user.0, &batch, &acked, &bound])?,
        };
        // The newest `bound` only: what is left is reported as `waiting`.
        let ids = returning_ids(sql::ANNOUNCE_NEW, &[&user.0, &batch, &bound])?;
        let flipped = ids.len() as i64;
        let repeated = repeat_ids.len() as i64;
        if flipped + repeated > 0 {
            tx.prepare_cached(sql::COUNT_ANNOUNCED)?.execute(params![user.0, flipped, batch, now])?;
        } else if announce == Announce::NewAndUnacknowledged {
            // What the unacknowledged batches held has been read or deleted since:
            // nothing is left to announce again, so stop looking.
            tx.prepare_cached(sql::ACKNOWLEDGE_ALL)?.execute([user.0])?;
        }
        let (items, repeats) = {
            let mut stmt = tx.prepare_cached(SUMMARY)?;
            let mut summaries = |ids: &[i64], n: usize| -> Result<Vec<Summary>> {
                ids.iter()
                    .take(n)
                    .map(|id| Ok(stmt.query_row(params![id, prefix_chars as i64], summary_row)?))
                    .collect()
            };
            let items = summaries(&ids, max_items)?;
            let repeats = summaries(&repeat_ids, max_items - items.len())?;
            (items, repeats)
        };
        let after = read_mailbox(&tx, user)?.counters;
        tx.commit()?;
        let batch = if flipped + repeated > 0 { batch } else { 0 };
        Ok(Claim { batch, flipped, items, repeated, repeats, after })
    }

    fn list_messages(
        &self,
        user: UserId,
        filter: StateFilter,
        before: Option<i64>,
        limit: usize,
        prefix_chars: usize,
    ) -> Result<Vec<Summary>> {
        let mut stmt = self.conn()?.prepare_cached(sql::LIST_MESSAGES)?;
        let [a, b, c] = filter.states();
        let rows = stmt.query_map(
            params![limit as i64, prefix_chars as i64, user.0, a, b, c, before.unwrap_or(i64::MAX)],
            summary_row,
        )?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn message(&self, user: UserId, id: MessageId) -> Result<Option<Message>> {
        Ok(self
            .conn
            .prepare_cached(sql::MESSAGE)?
            .query_row(params![id.0, user.0], |r| {
                Ok(Message {
                    id: MessageId(r.get(0)?),
                    from: r.get(1)?,
                    to: r.get(2)?,
                    subject: r.get(3)?,
                    body: r.get(4)?,
                    sent_at: rfc3339(r.get(5)?),
                    state: state_column(r, 6)?,
                    kind: kind_column(r, 7)?,
                })
            })
            .optional()?)
    }

    fn change(&self, user: UserId, id: MessageId, change: Change) -> Result<bool> {
        let tx = self.immediate()?;
        let state: Option<MessageState> = tx
            .prepare_cached(sql::MESSAGE_STATE)?
            .query_row(params![id.0, user.0], |r| state_column(r, 0))
            .optional()?;
        let Some(state) = state else { return Ok(false) };
        let target = change.target();
        if state != target {
            tx.prepare_cached(sql::SET_STATE)?.execute(params![id.0, target.as_str()])?;
            let (new, delivered) = match state {
                MessageState::New => (1, 0),
                MessageState::Delivered => (0, 1),
                MessageState::Read | MessageState::Deleted => (0, 0),
            };
            if new + delivered > 0 {
                tx.prepare_cached(sql::UNCOUNT)?.execute(params![user.0, new, delivered])?;
            }
        }
        tx.commit()?;
        Ok(true)
    }

    fn mark_all_read(&self, user: UserId) -> Result<i64> {
        let tx = self.immediate()?;
        let n = tx.prepare_cached(sql::MARK_ALL_READ)?.execute([user.0])?;
        tx.prepare_cached(sql::EMPTY_MAILBOX)?.execute([user.0])?;
        tx.commit()?;
        Ok(n as i64)
    }

    fn store_message(&self, m: &NewMessage) -> Result<Stored> {
        let tx = self.immediate()?;
        let stored = store_message_in(&tx, m)?;
        tx.commit()?;
        Ok(stored)
    }

    fn store_messages(&self, messages: &[NewMessage]) -> Result<Vec<Stored>> {
        let tx = self.immediate()?;
        let stored = messages.iter().map(|m| store_message_in(&tx, m)).collect::<Result<Vec<_>>>()?;
        tx.commit()?;
        Ok(stored)
    }

    fn stored_for(&self, request_id: &str, from: UserId, key: Option<&str>) -> Result<Option<MessageId>> {
        find_stored(self.conn()?, request_id, from, key)
    }
}

/// The message a request id or (sender, idempotency key) made, if any.
fn find_stored(conn: &Connection, request_id: &str, from: UserId, key: Option<&str>) -> Result<Option<MessageId>> {
    Ok(conn
        .prepare_cached(sql::STORED_FOR)?
        .query_row(params![request_id, from.0, key], |r| r.get(0))
        .optional()?
        .map(MessageId))
}

/// Sets the counters of every user from `first` on from a count of their messages
/// (`piggyback check --repair`, and `seed` after a bulk load); returns how many rows.
pub(super) fn recount_counters(conn: &Connection, first: UserId) -> Result<usize> {
    Ok(conn.execute(sql::RECOUNT_FROM, [first.0])?)
}

/// A user's `mailbox` row (counters and batches); all zero when there is none.
fn read_mailbox(conn: &Connection, user: UserId) -> Result<Mailbox> {
    Ok(conn
        .prepare_cached(sql::MAILBOX)?
        .query_row([user.0], |r| {
            Ok(Mailbox {
                counters: Counters { new: r.get(0)?, delivered: r.get(1)? },
                batch: r.get(2)?,
                acked: r.get(3)?,
                announced_at: r.get(4)?,
            })
        })
        .optional()?
        .unwrap_or_default())
}

fn store_message_in(tx: &Transaction<'_>, m: &NewMessage) -> Result<Stored> {
    let id: Option<i64> = tx
        .prepare_cached(sql::INSERT_MESSAGE)?
        .query_row(
            params![m.request_id, m.from.0, m.to.0, m.subject, m.body, m.kind.as_str(), m.idempotency_key, m.sent_at],
            |r| r.get(0),
        )
        .optional()?;
    if let Some(id) = id {
        tx.prepare_cached(sql::COUNT_NEW)?.execute([m.to.0, 1])?;
        return Ok(Stored::Inserted(MessageId(id)));
    }
    // A conflict on one of these two UNIQUE constraints (the row exists), or else a
    // removed sender or recipient.
    Ok(match find_stored(tx, &m.request_id, m.from, m.idempotency_key.as_deref())? {
        Some(existing) => Stored::Already(existing),
        None => Stored::Dropped,
    })
}

/// One message's summary, `?1` its id.
const SUMMARY: &str = concat!(sql::summary_select!(), "WHERE m.id = ?1");

fn summary_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Summary> {
    Ok(Summary {
        id: MessageId(r.get(0)?),
        from: r.get(1)?,
        subject: r.get(2)?,
        body_prefix: r.get(3)?,
        body_truncated: r.get(4)?,
        sent_at: rfc3339(r.get(5)?),
        state: state_column(r, 6)?,
        kind: kind_column(r, 7)?,
    })
}

fn kind_column(r: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<MessageKind> {
    let s: String = r.get(i)?;
    MessageKind::parse(&s).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, format!("unknown kind {s}").into())
    })
}

fn state_column(r: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<MessageState> {
    let s: String = r.get(i)?;
    MessageState::parse(&s).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, format!("unknown state {s}").into())
    })
}
