//! The statements both engines run as they stand, written once with SQLite's `?N`
//! placeholders. The PostgreSQL engine reads each through `pg!`, which turns every
//! `?N` into `$N` at compile time (the same length, so the text is a constant of the
//! binary; nothing is converted per call or per process). What differs between the
//! dialects (upserts, row locks, collations, bulk inserts) stays in each engine's
//! files. Times are selected as unix seconds and formatted in Rust
//! ([`crate::text::rfc3339`]), never by the database.

/// `sql` with each `?` replaced by `$`, as bytes: the body of `pg!`. Refuses, at
/// compile time, a `?` that is not a numbered placeholder (`?` followed by a digit).
pub(crate) const fn dollars<const N: usize>(sql: &str) -> [u8; N] {
    let bytes = sql.as_bytes();
    assert!(bytes.len() == N, "the length is the statement's");
    let mut out = [0u8; N];
    let mut i = 0;
    while i < N {
        out[i] = if bytes[i] == b'?' {
            assert!(i + 1 < N && bytes[i + 1].is_ascii_digit(), "a `?` that is not `?N`");
            b'$'
        } else {
            bytes[i]
        };
        i += 1;
    }
    out
}

/// A shared statement in PostgreSQL's placeholders (`$N`), as a `&'static str`
/// computed at compile time.
macro_rules! pg {
    ($sql:expr) => {{
        const BYTES: [u8; $sql.len()] = $crate::message_store::sql::dollars::<{ $sql.len() }>($sql);
        const TEXT: &str = match ::std::str::from_utf8(&BYTES) {
            Ok(text) => text,
            Err(_) => panic!("a statement is UTF-8"),
        };
        TEXT
    }};
}
pub(crate) use pg;

/// Recounts `mailbox` counters from the messages themselves, for the rows a `WHERE`
/// appended to it selects (repairs, seeds and removals).
macro_rules! recount_counters {
    () => {
        "UPDATE mailbox SET
            new = (SELECT count(*) FROM messages WHERE recipient_id = mailbox.user_id AND state = 'new'),
            delivered = (SELECT count(*) FROM messages WHERE recipient_id = mailbox.user_id AND state = 'delivered')"
    };
}

// Users.

pub const USER_BY_NAME: &str = "SELECT id, name, display_name, preview FROM users WHERE name = ?1";
pub const USER_BY_ID: &str = "SELECT id, name, display_name, preview FROM users WHERE id = ?1 AND removed_at IS NULL";

/// The columns of an [`Account`](super::Account), for every user not removed.
macro_rules! account_select {
    () => {
        "SELECT u.id, u.name, u.display_name, u.joined_at, coalesce(m.new, 0), coalesce(m.delivered, 0),
                (SELECT count(*) FROM friendships WHERE user_id = u.id),
                (SELECT count(*) FROM posts WHERE author_id = u.id),
                (SELECT count(*) FROM messages WHERE sender_id = u.id)
         FROM users u LEFT JOIN mailbox m ON m.user_id = u.id WHERE u.removed_at IS NULL"
    };
}
pub const ACCOUNTS: &str = concat!(account_select!(), " ORDER BY u.id");
pub const ACCOUNT: &str = concat!(account_select!(), " AND u.name = ?1");

/// Under a unique index on the name and one on the skeleton: when two hosts add
/// look-alikes at once, the second inserts nothing.
pub const INSERT_USER: &str = "INSERT INTO users (name, display_name, password_hash, joined_at, skeleton)
     VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT DO NOTHING RETURNING id";
pub const INSERT_MAILBOX: &str = "INSERT INTO mailbox (user_id) VALUES (?1)";
pub const NAME_TAKEN: &str = "SELECT 1 FROM users WHERE name = ?1 AND id <> ?2";
pub const SKELETON_TAKEN: &str = "SELECT name FROM users WHERE skeleton = ?1 AND id <> ?2";
pub const PASSWORD_HASH: &str = "SELECT id, password_hash FROM users WHERE name = ?1";
pub const SET_PASSWORD_HASH: &str = "UPDATE users SET password_hash = ?2 WHERE id = ?1";
pub const RENAME_USER: &str = "UPDATE users SET name = ?2, skeleton = ?3 WHERE id = ?1";
pub const PROFILE: &str = "SELECT name, display_name, bio, joined_at,
        (SELECT count(*) FROM friendships WHERE user_id = u.id),
        (SELECT count(*) FROM posts WHERE author_id = u.id), preview
     FROM users u WHERE id = ?1";
pub const UPDATE_PROFILE: &str = "UPDATE users SET display_name = coalesce(?2, display_name), bio = coalesce(?3, bio),
        preview = coalesce(?4, preview) WHERE id = ?1";

// Removing a user (`Users::remove_user`), every statement of `?1` the user's id.

pub const COUNT_FRIENDSHIPS: &str = "SELECT count(*) FROM friendships WHERE user_id = ?1";
pub const COUNT_REQUESTS: &str = "SELECT count(*) FROM friend_requests WHERE from_id = ?1 OR to_id = ?1";
pub const COUNT_POSTS: &str = "SELECT count(*) FROM posts WHERE author_id = ?1";
pub const COUNT_COMMENTS: &str = "SELECT count(*) FROM comments WHERE author_id = ?1";
/// Whose counters a removal recounts, in the order their rows are locked.
pub const UNANNOUNCED_RECIPIENTS: &str = "SELECT DISTINCT recipient_id FROM messages
     WHERE sender_id = ?1 AND state = 'new' AND recipient_id <> ?1 ORDER BY recipient_id";
pub const DELETE_RECEIVED: &str = "DELETE FROM messages WHERE recipient_id = ?1";
pub const WITHDRAW_UNANNOUNCED: &str = "DELETE FROM messages WHERE sender_id = ?1 AND state = 'new'";
pub const COUNT_KEPT: &str = "SELECT count(*) FROM messages WHERE sender_id = ?1 AND state <> 'deleted'";
pub const RECOUNT_ONE: &str = concat!(recount_counters!(), " WHERE user_id = ?1");
pub const RECOUNT_FROM: &str = concat!(recount_counters!(), " WHERE user_id >= ?1");
pub const RECOUNT_ALL: &str = recount_counters!();
pub const EMPTY_MAILBOX: &str = "UPDATE mailbox SET new = 0, delivered = 0 WHERE user_id = ?1";
pub const DELETE_FRIENDSHIPS: &str = "DELETE FROM friendships WHERE user_id = ?1 OR friend_id = ?1";
pub const DELETE_REQUESTS: &str = "DELETE FROM friend_requests WHERE from_id = ?1 OR to_id = ?1";
/// `?1` the removed user's name.
pub const DELETE_LOGIN_ADDRESSES: &str = "DELETE FROM login_addresses WHERE name = ?1";
pub const TOMBSTONE: &str = "UPDATE users SET name = ?2, display_name = ?2, bio = '', password_hash = NULL,
        skeleton = NULL, session_gen = session_gen + 1, ended_sessions = '', removed_at = ?3
     WHERE id = ?1";

// The social graph.

pub const ARE_FRIENDS: &str = "SELECT 1 FROM friendships WHERE user_id = ?1 AND friend_id = ?2";
pub const REQUESTED: &str = "SELECT 1 FROM friend_requests WHERE from_id = ?1 AND to_id = ?2";
pub const INSERT_REQUEST: &str = "INSERT INTO friend_requests (from_id, to_id, created_at) VALUES (?1, ?2, ?3)";
pub const DELETE_REQUEST: &str = "DELETE FROM friend_requests WHERE from_id = ?1 AND to_id = ?2";
pub const DELETE_FRIENDSHIP: &str =
    "DELETE FROM friendships WHERE (user_id = ?1 AND friend_id = ?2) OR (user_id = ?2 AND friend_id = ?1)";
pub const INSERT_FRIENDSHIP: &str =
    "INSERT INTO friendships (user_id, friend_id, since) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING";
pub const DELETE_BOTH_REQUESTS: &str =
    "DELETE FROM friend_requests WHERE (from_id = ?1 AND to_id = ?2) OR (from_id = ?2 AND to_id = ?1)";

// Posts and comments.

/// The columns of a [`Post`](super::Post).
macro_rules! post_select {
    () => {
        "SELECT p.id, u.name, p.author_id, p.body, p.created_at,
                (SELECT count(*) FROM comments c WHERE c.post_id = p.id)
         FROM posts p JOIN users u ON u.id = p.author_id "
    };
}
pub const FEED: &str = concat!(
    post_select!(),
    "WHERE (p.author_id = ?1 OR p.author_id IN (SELECT friend_id FROM friendships WHERE user_id = ?1))
       AND p.id < ?2 ORDER BY p.id DESC LIMIT ?3"
);
pub const POST: &str = concat!(post_select!(), "WHERE p.id = ?1");
pub const COMMENTS: &str = "SELECT c.id, u.name, c.body, c.created_at
     FROM comments c JOIN users u ON u.id = c.author_id WHERE c.post_id = ?1 ORDER BY c.id";
pub const COMMENT: &str = "SELECT c.id, u.name, c.body, c.created_at
     FROM comments c JOIN users u ON u.id = c.author_id WHERE c.id = ?1";
pub const INSERT_POST: &str = "INSERT INTO posts (author_id, body, created_at) VALUES (?1, ?2, ?3) RETURNING id";
pub const INSERT_COMMENT: &str =
    "INSERT INTO comments (post_id, author_id, body, created_at) VALUES (?1, ?2, ?3, ?4) RETURNING id";

// The mailbox.

/// A user's counters and batches.
macro_rules! mailbox {
    () => {
        "SELECT new, delivered, batch, acked, announced_at FROM mailbox WHERE user_id = ?1"
    };
}
pub(crate) use mailbox;
pub const MAILBOX: &str = mailbox!();
pub const KEYED_MESSAGE: &str = "SELECT id, recipient_id FROM messages WHERE sender_id = ?1 AND idempotency_key = ?2";
pub const ACKNOWLEDGE: &str = "UPDATE mailbox SET acked = ?2 WHERE user_id = ?1 AND acked < ?2 AND ?2 <= batch";
/// An acknowledged message keeps its batch number, negated: out of reach of the
/// search for unacknowledged ones (`batch > acked`).
pub const ACKNOWLEDGE_BATCH: &str = "UPDATE messages SET batch = -batch
     WHERE recipient_id = ?1 AND state = 'delivered' AND batch = ?2 AND batch > ?3";
pub const UNACKNOWLEDGED_LEFT: &str =
    "SELECT EXISTS (SELECT 1 FROM messages WHERE recipient_id = ?1 AND state = 'delivered' AND batch > ?2)";
pub const ACKNOWLEDGE_ALL: &str = "UPDATE mailbox SET acked = batch WHERE user_id = ?1";
/// The newest `?4` delivered messages of unacknowledged batches join batch `?2`. The
/// outer state test is re-checked on a row another transaction changed meanwhile (a
/// server engine); the subquery's choice alone would not be.
pub const ANNOUNCE_AGAIN: &str = "UPDATE messages SET batch = ?2 WHERE id IN (
         SELECT id FROM messages WHERE recipient_id = ?1 AND state = 'delivered' AND batch > ?3
         ORDER BY batch DESC, id DESC LIMIT ?4) AND state = 'delivered' RETURNING id";
/// The newest `?3` new messages flip to delivered in batch `?2` (the outer state test
/// as in [`ANNOUNCE_AGAIN`]). The cost of a claim does not grow with the backlog; what
/// is left stays `new` for the next answers.
pub const ANNOUNCE_NEW: &str = "UPDATE messages SET state = 'delivered', batch = ?2 WHERE id IN (
         SELECT id FROM messages WHERE recipient_id = ?1 AND state = 'new' ORDER BY id DESC LIMIT ?3)
     AND state = 'new' RETURNING id";
pub const COUNT_ANNOUNCED: &str =
    "UPDATE mailbox SET new = new - ?2, delivered = delivered + ?2, batch = ?3, announced_at = ?4 WHERE user_id = ?1";

/// The columns of a [`Summary`](super::Summary): `?2` is the number of body characters
/// to read; one more tells whether it was cut.
macro_rules! summary_select {
    () => {
        "SELECT m.id, u.name, m.subject, substr(m.body, 1, ?2), length(m.body) > ?2, m.sent_at, m.state, m.kind
         FROM messages m JOIN users u ON u.id = m.sender_id "
    };
}
pub(crate) use summary_select;
pub const LIST_MESSAGES: &str = concat!(
    summary_select!(),
    "WHERE m.recipient_id = ?3 AND m.state IN (?4, ?5, ?6) AND m.id < ?7 ORDER BY m.id DESC LIMIT ?1"
);
pub const MESSAGE: &str = "SELECT m.id, s.name, r.name, m.subject, m.body, m.sent_at, m.state, m.kind
     FROM messages m JOIN users s ON s.id = m.sender_id JOIN users r ON r.id = m.recipient_id
     WHERE m.id = ?1 AND m.recipient_id = ?2 AND m.state <> 'deleted'";
pub const MESSAGE_STATE: &str = "SELECT state FROM messages WHERE id = ?1 AND recipient_id = ?2 AND state <> 'deleted'";
pub const SET_STATE: &str = "UPDATE messages SET state = ?2 WHERE id = ?1";
pub const UNCOUNT: &str = "UPDATE mailbox SET new = new - ?2, delivered = delivered - ?3 WHERE user_id = ?1";
pub const MARK_ALL_READ: &str =
    "UPDATE messages SET state = 'read' WHERE recipient_id = ?1 AND state IN ('new', 'delivered')";
/// Inserts nothing when the request id or (sender, idempotency key) is stored already,
/// or when the sender or the recipient has been removed.
pub const INSERT_MESSAGE: &str =
    "INSERT INTO messages (request_id, sender_id, recipient_id, subject, body, kind, idempotency_key, sent_at)
     SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8
     WHERE NOT EXISTS (SELECT 1 FROM users WHERE id IN (?2, ?3) AND removed_at IS NOT NULL)
     ON CONFLICT DO NOTHING RETURNING id";
pub const COUNT_NEW: &str = "UPDATE mailbox SET new = new + ?2 WHERE user_id = ?1";
pub const STORED_FOR: &str =
    "SELECT id FROM messages WHERE request_id = ?1 OR (sender_id = ?2 AND idempotency_key = ?3) LIMIT 1";

// Limits.

pub const COUNT_EVENT: &str = "UPDATE rate_limits SET count = count + 1 WHERE key = ?1";
pub const REFUND_EVENT: &str = "UPDATE rate_limits SET count = count - 1 WHERE key = ?1 AND count > 0";
/// A counter back at zero is as good as none: leave no trace.
pub const FORGET_EMPTY_LIMIT: &str = "DELETE FROM rate_limits WHERE key = ?1 AND count = 0";

// Sessions.

pub const KNOWN_LOGIN_ADDRESS: &str = "SELECT 1 FROM login_addresses WHERE name = ?1 AND addr = ?2";
pub const REMEMBER_LOGIN_ADDRESS: &str = "INSERT INTO login_addresses (name, addr, last_login) VALUES (?1, ?2, ?3)
     ON CONFLICT (name, addr) DO UPDATE SET last_login = excluded.last_login";
pub const SESSION_USER: &str = "SELECT id, name, display_name, preview, session_gen, ended_sessions FROM users
     WHERE id = ?1 AND removed_at IS NULL";
pub const END_ALL_SESSIONS: &str = "UPDATE users SET session_gen = session_gen + 1, ended_sessions = '' WHERE id = ?1";
pub const SET_ENDED_SESSIONS: &str = "UPDATE users SET ended_sessions = ?2 WHERE id = ?1";

// Maintenance.

pub const STORED_COUNTERS: &str =
    "SELECT u.id, u.name, m.new, m.delivered FROM users u LEFT JOIN mailbox m ON m.user_id = u.id ORDER BY u.id";
pub const ADD_MISSING_MAILBOXES: &str =
    "INSERT INTO mailbox (user_id) SELECT id FROM users WHERE id NOT IN (SELECT user_id FROM mailbox)";

#[cfg(test)]
mod tests {
    #[test]
    fn postgres_reads_the_same_statement_with_dollar_placeholders() {
        assert_eq!(
            pg!(super::ACKNOWLEDGE),
            "UPDATE mailbox SET acked = $2 WHERE user_id = $1 AND acked < $2 AND $2 <= batch"
        );
        assert!(!pg!(super::INSERT_MESSAGE).contains('?'));
    }
}
