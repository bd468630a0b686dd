//! The mailbox on PostgreSQL (as `sqlite/mailbox.rs`): storing, listing, reading, marking,
//! deleting, and the claim that announces new messages exactly once.

use std::collections::BTreeMap;

use postgres::types::Type;
use postgres::{GenericClient, Row};

use super::{Param, PgStore, int, int4, text};
use crate::message_store::sql::{self, pg};
use crate::message_store::{
    Announce, CLAIM_BATCH, Claim, Counters, Mailbox, Mailboxes, Message, Result, StateFilter, StoreError, Stored,
    Summary,
};
use crate::model::{Change, MessageId, MessageKind, MessageState, NewMessage, UserId};
use crate::text::rfc3339;

impl Mailboxes for PgStore {
    fn counters(&self, user: UserId) -> Result<Counters> {
        Ok(self.mailbox(user)?.counters)
    }

    fn mailbox(&self, user: UserId) -> Result<Mailbox> {
        read_mailbox(&mut *self.client()?, user, "")
    }

    fn keyed_message(&self, sender: UserId, key: &str) -> Result<Option<(MessageId, UserId)>> {
        Ok(self
            .query_opt(pg!(sql::KEYED_MESSAGE), &[int(&sender.0), text(&key)])?
            .map(|r| (MessageId(r.get(0)), UserId(r.get(1)))))
    }

    fn acknowledge(&self, user: UserId, batch: i64) -> Result<()> {
        self.client()?.execute_typed(pg!(sql::ACKNOWLEDGE), &[int(&user.0), int(&batch)])?;
        Ok(())
    }

    // As on SQLite: only the batches named are acknowledged (their messages' batch
    // numbers negated, out of reach of `batch > acked`); the watermark moves to the
    // last batch when no unacknowledged delivered message is left.
    fn acknowledge_shown(&self, user: UserId, shown: &[i64]) -> Result<()> {
        if shown.is_empty() {
            return Ok(());
        }
        self.write(|tx| {
            let Mailbox { batch: last, acked, .. } = read_mailbox(tx, user, " FOR UPDATE")?;
            for &b in shown.iter().filter(|&&b| b > acked && b <= last) {
                tx.execute_typed(pg!(sql::ACKNOWLEDGE_BATCH), &[int(&user.0), int(&b), int(&acked)])?;
            }
            let waiting: bool = tx
                .query_typed(pg!(sql::UNACKNOWLEDGED_LEFT), &[int(&user.0), int(&acked)])?
                .first()
                .map(|r| r.get(0))
                .unwrap_or(false);
            if !waiting {
                tx.execute_typed(pg!(sql::ACKNOWLEDGE_ALL), &[int(&user.0)])?;
            }
            Ok(())
        })
    }

    fn claim_new(
        &self,
        user: UserId,
        max_items: usize,
        prefix_chars: usize,
        announce: Announce,
        now: i64,
    ) -> Result<Claim> {
        let prefix = prefix_chars.min(i32::MAX as usize) as i32;
        let bound = max_items.max(CLAIM_BATCH) as i64;
        self.write(|tx| {
            let Mailbox { batch: last, acked, .. } = read_mailbox(tx, user, " FOR UPDATE")?;
            let batch = last + 1;
            let mut returning_ids = |sql: &str, params: &[Param<'_>]| -> Result<Vec<i64>> {
                let mut ids: Vec<i64> = tx.query_typed(sql, params)?.iter().map(|r| r.get(0)).collect();
                // RETURNING's order is arbitrary.
                ids.sort_unstable_by(|a, b| b.cmp(a));
                Ok(ids)
            };
            let repeat_ids = match announce {
                Announce::New => Vec::new(),
                Announce::NewAndUnacknowledged => {
                    returning_ids(pg!(sql::ANNOUNCE_AGAIN), &[int(&user.0), int(&batch), int(&acked), int(&bound)])?
                }
            };
            let ids = returning_ids(pg!(sql::ANNOUNCE_NEW), &[int(&user.0), int(&batch), int(&bound)])?;
            let flipped = ids.len() as i64;
            let repeated = repeat_ids.len() as i64;
            if flipped + repeated > 0 {
                tx.query_typed(pg!(sql::COUNT_ANNOUNCED), &[int(&user.0), int(&flipped), int(&batch), int(&now)])?;
            } else if announce == Announce::NewAndUnacknowledged {
                // What the unacknowledged batches held has been read or deleted since.
                tx.query_typed(pg!(sql::ACKNOWLEDGE_ALL), &[int(&user.0)])?;
            }
            let items = summaries(tx, &ids, max_items, prefix)?;
            let repeats = summaries(tx, &repeat_ids, max_items - items.len(), prefix)?;
            let after = read_mailbox(tx, user, "")?.counters;
            let batch = if flipped + repeated > 0 { batch } else { 0 };
            Ok(Claim { batch, flipped, items, repeated, repeats, after })
        })
    }

    fn list_messages(
        &self,
        user: UserId,
        filter: StateFilter,
        before: Option<i64>,
        limit: usize,
        prefix_chars: usize,
    ) -> Result<Vec<Summary>> {
        let [a, b, c] = filter.states();
        let (limit, prefix, before) =
            (limit as i64, prefix_chars.min(i32::MAX as usize) as i32, before.unwrap_or(i64::MAX));
        let rows = self.query(
            pg!(sql::LIST_MESSAGES),
            &[int(&limit), int4(&prefix), int(&user.0), text(&a), text(&b), text(&c), int(&before)],
        )?;
        rows.iter().map(summary_row).collect()
    }

    fn message(&self, user: UserId, id: MessageId) -> Result<Option<Message>> {
        let Some(r) = self.query_opt(pg!(sql::MESSAGE), &[int(&id.0), int(&user.0)])? else { return Ok(None) };
        Ok(Some(Message {
            id: MessageId(r.get(0)),
            from: r.get(1),
            to: r.get(2),
            subject: r.get(3),
            body: r.get(4),
            sent_at: rfc3339(r.get(5)),
            state: state_of(r.get(6))?,
            kind: kind_of(r.get(7))?,
        }))
    }

    fn change(&self, user: UserId, id: MessageId, change: Change) -> Result<bool> {
        self.write(|tx| {
            read_mailbox(tx, user, " FOR UPDATE")?;
            let state: Option<String> =
                tx.query_typed_opt(pg!(sql::MESSAGE_STATE), &[int(&id.0), int(&user.0)])?.map(|r| r.get(0));
            let Some(state) = state else { return Ok(false) };
            let target = match change {
                Change::MarkRead => "read",
                Change::Delete => "deleted",
            };
            if state != target {
                tx.query_typed(pg!(sql::SET_STATE), &[int(&id.0), text(&target)])?;
                let (new, delivered): (i64, i64) = match state.as_str() {
                    "new" => (1, 0),
                    "delivered" => (0, 1),
                    _ => (0, 0),
                };
                if new + delivered > 0 {
                    tx.query_typed(pg!(sql::UNCOUNT), &[int(&user.0), int(&new), int(&delivered)])?;
                }
            }
            Ok(true)
        })
    }

    fn mark_all_read(&self, user: UserId) -> Result<i64> {
        self.write(|tx| {
            read_mailbox(tx, user, " FOR UPDATE")?;
            let n = tx.execute_typed(pg!(sql::MARK_ALL_READ), &[int(&user.0)])?;
            tx.query_typed(pg!(sql::EMPTY_MAILBOX), &[int(&user.0)])?;
            Ok(n as i64)
        })
    }

    fn store_message(&self, m: &NewMessage) -> Result<Stored> {
        Ok(self.store_messages(std::slice::from_ref(m))?[0])
    }

    // Stores many messages in one transaction: the inserts first, then each
    // recipient's counter once, in ascending id order (no deadlock between drains).
    fn store_messages(&self, messages: &[NewMessage]) -> Result<Vec<Stored>> {
        self.write(|tx| {
            let mut added: BTreeMap<i64, i64> = BTreeMap::new();
            let mut stored = Vec::with_capacity(messages.len());
            for m in messages {
                let s = insert_message(tx, m)?;
                if s.inserted() {
                    *added.entry(m.to.0).or_default() += 1;
                }
                stored.push(s);
            }
            for (to, n) in &added {
                tx.query_typed(pg!(sql::COUNT_NEW), &[int(to), int(n)])?;
            }
            Ok(stored)
        })
    }

    fn stored_for(&self, request_id: &str, from: UserId, key: Option<&str>) -> Result<Option<MessageId>> {
        Ok(self
            .query_opt(pg!(sql::STORED_FOR), &[text(&request_id), int(&from.0), text(&key)])?
            .map(|r| MessageId(r.get(0))))
    }
}

const MAILBOX_FOR_UPDATE: &str = pg!(concat!(sql::mailbox!(), " FOR UPDATE"));

/// A user's `mailbox` row (all zero when there is none); `lock` is `""` or `" FOR UPDATE"`.
pub(super) fn read_mailbox(client: &mut impl GenericClient, user: UserId, lock: &str) -> Result<Mailbox> {
    let sql = if lock.is_empty() { pg!(sql::MAILBOX) } else { MAILBOX_FOR_UPDATE };
    Ok(client
        .query_typed_opt(sql, &[int(&user.0)])?
        .map(|r| Mailbox {
            counters: Counters { new: r.get(0), delivered: r.get(1) },
            batch: r.get(2),
            acked: r.get(3),
            announced_at: r.get(4),
        })
        .unwrap_or_default())
}

/// Inserts one message unless its request id or (sender, key) is stored already; the
/// caller counts it. A concurrent insert of the same key waits for the other and
/// then conflicts, so a replay on two hosts still stores one message.
pub(super) fn insert_message(tx: &mut postgres::Transaction<'_>, m: &NewMessage) -> Result<Stored> {
    // Both users' rows first, FOR KEY SHARE (what the foreign keys take anyway): a
    // `user remove` holding one FOR UPDATE is waited for here, so the insert's
    // tombstone test below, a new statement with a new snapshot under READ COMMITTED,
    // sees its commit. Without this the test read the user as present, the foreign
    // key check then waited for the removal, and the message was stored after it,
    // to or from the tombstone. Until commit, a removal waits for this send instead.
    tx.query_typed(
        "SELECT 1 FROM users WHERE id IN ($1, $2) ORDER BY id FOR KEY SHARE",
        &[int(&m.from.0), int(&m.to.0)],
    )?;
    let kind = m.kind.as_str();
    let id: Option<i64> = tx
        .query_typed_opt(
            pg!(sql::INSERT_MESSAGE),
            &[
                text(&m.request_id),
                int(&m.from.0),
                int(&m.to.0),
                text(&m.subject),
                text(&m.body),
                text(&kind),
                text(&m.idempotency_key),
                int(&m.sent_at),
            ],
        )?
        .map(|r| r.get(0));
    if let Some(id) = id {
        return Ok(Stored::Inserted(MessageId(id)));
    }
    // A conflict (the row exists), or else a removed sender or recipient.
    Ok(tx
        .query_typed_opt(pg!(sql::STORED_FOR), &[text(&m.request_id), int(&m.from.0), text(&m.idempotency_key)])?
        .map_or(Stored::Dropped, |r| Stored::Already(MessageId(r.get(0)))))
}

/// The summaries of the first `n` of `ids` (newest first), in one statement.
pub(super) fn summaries(
    tx: &mut postgres::Transaction<'_>,
    ids: &[i64],
    n: usize,
    prefix: i32,
) -> Result<Vec<Summary>> {
    let ids: Vec<i64> = ids.iter().take(n).copied().collect();
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let rows = tx.query_typed(
        pg!(concat!(sql::summary_select!(), "WHERE m.id = ANY(?1) ORDER BY m.id DESC")),
        &[(&ids, Type::INT8_ARRAY), int4(&prefix)],
    )?;
    rows.iter().map(summary_row).collect()
}

pub(super) fn summary_row(r: &Row) -> Result<Summary> {
    Ok(Summary {
        id: MessageId(r.get(0)),
        from: r.get(1),
        subject: r.get(2),
        body_prefix: r.get(3),
        body_truncated: r.get(4),
        sent_at: rfc3339(r.get(5)),
        state: state_of(r.get(6))?,
        kind: kind_of(r.get(7))?,
    })
}

pub(super) fn kind_of(s: &str) -> Result<MessageKind> {
    MessageKind::parse(s).ok_or_else(|| StoreError::Unopenable(format!("unknown message kind {s} in the database")))
}

pub(super) fn state_of(s: &str) -> Result<MessageState> {
    MessageState::parse(s).ok_or_else(|| StoreError::Unopenable(format!("unknown message state {s} in the database")))
}
