//! The store's side of the second security round (issue 11): what an idempotency key
//! already made. Kept in its own file so the store's concerns stay apart.

use rusqlite::{OptionalExtension, params};

use super::{MessageId, Result, Store, UserId};

impl Store {
    /// The message `sender` already stored under `key`, and its recipient.
    pub fn keyed_message(&self, sender: UserId, key: &str) -> Result<Option<(MessageId, UserId)>> {
        Ok(self
            .conn
            .prepare_cached("SELECT id, recipient_id FROM messages WHERE sender_id = ?1 AND idempotency_key = ?2")?
            .query_row(params![sender.0, key], |r| Ok((MessageId(r.get(0)?), UserId(r.get(1)?))))
            .optional()?)
    }
}
