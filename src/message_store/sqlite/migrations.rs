//! The schema as an append-only list of migrations, and the one function that applies
//! them (`piggyback init`) or refuses a database they do not describe (every program).
//!
//! `PRAGMA user_version` is the number of migrations applied. To change the schema,
//! append one [`Migration`] to [`MIGRATIONS`]; never edit or reorder one that shipped,
//! since databases in the field have run it.

use rusqlite::Connection;

use super::{Result, StoreError};

/// One step of the schema: SQL run in the migrating transaction.
pub struct Migration {
    /// What the step does, for a reader of this list.
    pub what: &'static str,
    pub sql: &'static [&'static str],
    /// Work SQL cannot do (a Unicode computation), run after `sql` in the same
    /// transaction.
    pub then: Option<fn(&Connection) -> Result<()>>,
}

/// Every schema change, oldest first: the database has version `n` once the first `n`
/// have run.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        what: "users, mailboxes, messages, the social graph, posts, rate limits",
        sql: &[V1_TABLES, MESSAGE_INDEXES],
        then: None,
    },
    Migration {
        what: "sessions that can end, the addresses a name logged in from, the post quota",
        sql: &[V2_SESSIONS_AND_QUOTAS],
        then: None,
    },
    Migration {
        what: "user names' confusable skeletons (unique), removed users' tombstones",
        sql: &[V3_SKELETONS_AND_REMOVAL],
        then: Some(backfill_skeletons),
    },
];

/// Version of the schema this build reads and writes (`PRAGMA user_version`).
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// What to do with a database whose schema is older than this build's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Older {
    /// Run the missing migrations (`piggyback init`, inside its IMMEDIATE transaction).
    Migrate,
    /// Refuse it: a request never changes the schema.
    Refuse,
}

/// Brings the database to [`SCHEMA_VERSION`] or refuses it: the one place that reads
/// `user_version`. A newer schema than this build knows is always refused.
pub(super) fn apply_or_refuse(conn: &Connection, older: Older) -> Result<()> {
    // Cached: a FastCGI process asks before every request.
    let found: i64 = conn.prepare_cached("PRAGMA user_version")?.query_row([], |r| r.get(0))?;
    if found == SCHEMA_VERSION {
        return Ok(());
    }
    if !(0..=SCHEMA_VERSION).contains(&found) || older == Older::Refuse {
        return Err(StoreError::Schema { found });
    }
    for migration in &MIGRATIONS[found as usize..] {
        for sql in migration.sql {
            conn.execute_batch(sql)?;
        }
        if let Some(then) = migration.then {
            then(conn)?;
        }
    }
    conn.execute_batch(&format!("PRAGMA user_version = {SCHEMA_VERSION}"))?;
    Ok(())
}

/// Version 3: each user's UTS #39 skeleton, so that a new name that looks
/// like an existing one is refused (`crate::names`), and the time a user was removed
/// (the row stays as a tombstone: its id is never reused, see `Users::remove_user`).
const V3_SKELETONS_AND_REMOVAL: &str = "
ALTER TABLE users ADD COLUMN skeleton TEXT;
ALTER TABLE users ADD COLUMN removed_at INTEGER;
";

/// Fills version 3's `skeleton` of every user, oldest first, then makes it unique. Two
/// existing names that look alike both keep working: the older one holds the
/// skeleton, the newer one's stays NULL (no new name can take either look).
fn backfill_skeletons(conn: &Connection) -> Result<()> {
    let users: Vec<(i64, String)> = conn
        .prepare("SELECT id, name FROM users WHERE skeleton IS NULL AND removed_at IS NULL ORDER BY id")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let mut seen = std::collections::HashSet::new();
    let mut set = conn.prepare("UPDATE users SET skeleton = ?2 WHERE id = ?1")?;
    for (id, name) in users {
        let skeleton = crate::names::skeleton(&name);
        if seen.insert(skeleton.clone()) {
            set.execute(rusqlite::params![id, skeleton])?;
        }
    }
    conn.execute_batch("CREATE UNIQUE INDEX users_by_skeleton ON users (skeleton)")?;
    Ok(())
}

/// Version 2: sessions, login addresses, bytes of posts per author.
const V2_SESSIONS_AND_QUOTAS: &str = "
-- Sessions: a cookie names the generation it was minted in; ending every session of a
-- user moves the generation on. Single sessions that ended early are listed as
-- `<session id>:<expires>` until they would have expired.
ALTER TABLE users ADD COLUMN session_gen INTEGER NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN ended_sessions TEXT NOT NULL DEFAULT '';
-- Client addresses a name has logged in from: its lock-out does not stop logins there.
CREATE TABLE login_addresses (
    name TEXT NOT NULL,
    addr TEXT NOT NULL,
    last_login INTEGER NOT NULL,
    PRIMARY KEY (name, addr)
) WITHOUT ROWID;
-- Bytes of posts and comments per author, for the quota.
CREATE TABLE post_usage (
    user_id INTEGER PRIMARY KEY REFERENCES users(id),
    bytes INTEGER NOT NULL DEFAULT 0 CHECK (bytes >= 0)
);
INSERT INTO post_usage (user_id, bytes)
    SELECT author_id, sum(n) FROM (
        SELECT author_id, length(CAST(body AS BLOB)) AS n FROM posts
        UNION ALL SELECT author_id, length(CAST(body AS BLOB)) FROM comments
    ) GROUP BY author_id;
";

/// Version 1: the first schema.
const V1_TABLES: &str = "
CREATE TABLE users (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    display_name TEXT NOT NULL,
    bio TEXT NOT NULL DEFAULT '',
    -- What toasts may show of a message: the user's privacy choice.
    preview TEXT NOT NULL DEFAULT 'full' CHECK (preview IN ('full', 'subject', 'sender')),
    password_hash TEXT,
    joined_at INTEGER NOT NULL
);
-- The per-user counters that site_messages reports: O(1) whatever the mailbox size.
CREATE TABLE mailbox (
    user_id INTEGER PRIMARY KEY REFERENCES users(id),
    new INTEGER NOT NULL DEFAULT 0 CHECK (new >= 0),
    delivered INTEGER NOT NULL DEFAULT 0 CHECK (delivered >= 0),
    -- The last announcement batch issued, the highest one a client acknowledged, and
    -- when the last one was issued (unix seconds): what to announce again.
    batch INTEGER NOT NULL DEFAULT 0,
    acked INTEGER NOT NULL DEFAULT 0,
    announced_at INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE messages (
    id INTEGER PRIMARY KEY,
    request_id TEXT NOT NULL UNIQUE,
    sender_id INTEGER NOT NULL REFERENCES users(id),
    recipient_id INTEGER NOT NULL REFERENCES users(id),
    subject TEXT NOT NULL,
    body TEXT NOT NULL,
    kind TEXT NOT NULL DEFAULT 'note' CHECK (kind IN ('note', 'friend_request', 'friend_accept', 'comment')),
    idempotency_key TEXT,
    sent_at INTEGER NOT NULL,
    state TEXT NOT NULL DEFAULT 'new' CHECK (state IN ('new', 'delivered', 'read', 'deleted')),
    -- The announcement batch that last announced it.
    batch INTEGER,
    UNIQUE (sender_id, idempotency_key)
);
-- One row per direction, so 'friends of X' is one index range.
CREATE TABLE friendships (
    user_id INTEGER NOT NULL REFERENCES users(id),
    friend_id INTEGER NOT NULL REFERENCES users(id),
    since INTEGER NOT NULL,
    PRIMARY KEY (user_id, friend_id)
) WITHOUT ROWID;
CREATE TABLE friend_requests (
    from_id INTEGER NOT NULL REFERENCES users(id),
    to_id INTEGER NOT NULL REFERENCES users(id),
    created_at INTEGER NOT NULL,
    PRIMARY KEY (from_id, to_id)
) WITHOUT ROWID;
CREATE INDEX friend_requests_to ON friend_requests (to_id, from_id);
CREATE TABLE posts (
    id INTEGER PRIMARY KEY,
    author_id INTEGER NOT NULL REFERENCES users(id),
    body TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX posts_by_author ON posts (author_id, id);
CREATE TABLE comments (
    id INTEGER PRIMARY KEY,
    post_id INTEGER NOT NULL REFERENCES posts(id),
    author_id INTEGER NOT NULL REFERENCES users(id),
    body TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX comments_by_post ON comments (post_id, id);
-- Fixed-window counters for rate limits (sends per user, failed logins per name/address).
CREATE TABLE rate_limits (
    key TEXT PRIMARY KEY,
    window_start INTEGER NOT NULL,
    count INTEGER NOT NULL
) WITHOUT ROWID;
";

/// The secondary indexes of `messages`: `seed` drops them while it bulk-loads and
/// builds them again afterwards, which is several times faster than keeping them.
pub(super) const MESSAGE_INDEXES: &str = "
CREATE INDEX IF NOT EXISTS messages_by_state ON messages (recipient_id, state, id);
CREATE INDEX IF NOT EXISTS messages_by_recipient ON messages (recipient_id, id);
-- Delivered messages by batch: the unacknowledged ones to announce again.
CREATE INDEX IF NOT EXISTS messages_unacknowledged ON messages (recipient_id, batch) WHERE state = 'delivered';
-- The send rate limit counts a sender's recent messages without taking a write lock.
CREATE INDEX IF NOT EXISTS messages_by_sender ON messages (sender_id, sent_at);
";

pub(super) const DROP_MESSAGE_INDEXES: &str = "
DROP INDEX IF EXISTS messages_by_state;
DROP INDEX IF EXISTS messages_by_recipient;
DROP INDEX IF EXISTS messages_unacknowledged;
DROP INDEX IF EXISTS messages_by_sender;
";

#[cfg(test)]
mod tests {
    use super::*;

    fn version(conn: &Connection) -> i64 {
        conn.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap()
    }

    #[test]
    fn an_empty_database_is_migrated_to_the_last_version_and_refused_nothing_after() {
        let conn = Connection::open_in_memory().unwrap();
        assert!(matches!(apply_or_refuse(&conn, Older::Refuse), Err(StoreError::Schema { found: 0 })));
        apply_or_refuse(&conn, Older::Migrate).unwrap();
        assert_eq!(version(&conn), SCHEMA_VERSION);
        apply_or_refuse(&conn, Older::Refuse).unwrap();
        apply_or_refuse(&conn, Older::Migrate).unwrap();
        assert_eq!(version(&conn), SCHEMA_VERSION, "applying again changes nothing");
    }

    #[test]
    fn a_newer_schema_is_refused_without_sending_the_operator_to_init() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(&format!("PRAGMA user_version = {}", SCHEMA_VERSION + 1)).unwrap();
        for older in [Older::Migrate, Older::Refuse] {
            let e = apply_or_refuse(&conn, older).unwrap_err();
            assert!(matches!(e, StoreError::Schema { found } if found == SCHEMA_VERSION + 1));
            let text = e.to_string();
            assert!(!text.contains("piggyback init"), "{text}");
            assert!(text.contains("newer"), "{text}");
        }
        let old = StoreError::Schema { found: 0 }.to_string();
        assert!(old.contains("piggyback init"), "{old}");
    }
}
