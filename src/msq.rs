//! The message-queue layer: every operation on the message database is a typed request
//! executed here. Sends are the requests that create messages; they carry a request id
//! so that applying one twice stores it once.

use crate::message_store::{Change, Claim, Counters, MessageId, NewMessage, Store, StoreError, UserId, now};

/// A request to send one in-site message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Send {
    pub from: UserId,
    pub to: UserId,
    pub subject: String,
    pub body: String,
    /// `note` for a person's message; `friend_request`, `friend_accept`, `comment` for
    /// the site's own notices.
    pub kind: String,
    pub idempotency_key: Option<String>,
}

/// What became of a send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendOutcome {
    /// In the database (now, or before: the same idempotency key).
    Stored { request_id: String, message: MessageId },
    /// Accepted and durable, stored on a later drain.
    Queued { request_id: String },
}

impl SendOutcome {
    pub fn request_id(&self) -> &str {
        match self {
            SendOutcome::Stored { request_id, .. } | SendOutcome::Queued { request_id } => request_id,
        }
    }
}

/// The queue in front of one open store.
pub struct Queue<'a> {
    store: &'a Store,
}

impl<'a> Queue<'a> {
    pub fn new(store: &'a Store) -> Queue<'a> {
        Queue { store }
    }

    pub fn store(&self) -> &'a Store {
        self.store
    }

    /// Reads a user's counters (no lock).
    pub fn counters(&self, user: UserId) -> Result<Counters, StoreError> {
        self.store.counters(user)
    }

    /// Check-and-claim: flips the user's `new` messages to `delivered`.
    pub fn claim(&self, user: UserId, max_items: usize, prefix_chars: usize) -> Result<Claim, StoreError> {
        self.store.claim_new(user, max_items, prefix_chars)
    }

    /// Sends one message.
    pub fn send(&self, send: Send) -> Result<SendOutcome, StoreError> {
        let request_id = new_request_id();
        let message = NewMessage {
            request_id: request_id.clone(),
            from: send.from,
            to: send.to,
            subject: send.subject,
            body: send.body,
            kind: send.kind,
            idempotency_key: send.idempotency_key,
            sent_at: now(),
        };
        let stored = self.store.store_message(&message)?;
        Ok(SendOutcome::Stored { request_id, message: stored.id })
    }

    /// Marks one message read or deleted; false when the user has no such message.
    pub fn change(&self, user: UserId, id: MessageId, change: Change) -> Result<bool, StoreError> {
        self.store.change(user, id, change)
    }

    pub fn mark_all_read(&self, user: UserId) -> Result<i64, StoreError> {
        self.store.mark_all_read(user)
    }
}

/// A fresh request id: time, process and 64 random bits, unique across processes.
pub fn new_request_id() -> String {
    let mut random = [0u8; 8];
    // Without randomness the time and pid still make a collision very unlikely.
    let _ = getrandom::fill(&mut random);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    format!("{nanos:x}.{:x}.{:016x}", std::process::id(), u64::from_le_bytes(random))
}
