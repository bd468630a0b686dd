//! The message database (消息数据库): the only module that knows SQL.
//!
//! One SQLite file in WAL mode holds users, the site's friends/posts/comments, the
//! messages with their states, and per-user counters (`mailbox.new`,
//! `mailbox.delivered`) kept in the same transaction as every state change.
//! Every transaction that may write begins IMMEDIATE; schema changes run only from
//! [`Store::init`] (`piggyback init`), never per request.

use std::cell::Cell;
use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use rusqlite::config::DbConfig;
use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension, Transaction, TransactionBehavior, params};

mod engines;
pub mod postgres;

pub use engines::{Store, display_db, postgres_url};

/// Version of the schema this build reads and writes (`PRAGMA user_version`).
pub const SCHEMA_VERSION: i64 = 1;

/// How long a request waits for another writer before answering 503.
/// Below both servers' CGI timeouts (3 s and more in `cgi-bin-config/`).
pub const BUSY_TIMEOUT: Duration = Duration::from_millis(2000);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UserId(pub i64);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MessageId(pub i64);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PostId(pub i64);

/// A message's state for its recipient (the contract's table).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageState {
    New,
    Delivered,
    Read,
    Deleted,
}

impl MessageState {
    pub fn as_str(self) -> &'static str {
        match self {
            MessageState::New => "new",
            MessageState::Delivered => "delivered",
            MessageState::Read => "read",
            MessageState::Deleted => "deleted",
        }
    }

    fn parse(s: &str) -> Option<MessageState> {
        Some(match s {
            "new" => MessageState::New,
            "delivered" => MessageState::Delivered,
            "read" => MessageState::Read,
            "deleted" => MessageState::Deleted,
            _ => return None,
        })
    }
}

/// What a message is: a person's note, or a notice the site sends for an action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageKind {
    Note,
    FriendRequest,
    FriendAccept,
    Comment,
}

impl MessageKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MessageKind::Note => "note",
            MessageKind::FriendRequest => "friend_request",
            MessageKind::FriendAccept => "friend_accept",
            MessageKind::Comment => "comment",
        }
    }

    pub fn parse(s: &str) -> Option<MessageKind> {
        Some(match s {
            "note" => MessageKind::Note,
            "friend_request" => MessageKind::FriendRequest,
            "friend_accept" => MessageKind::FriendAccept,
            "comment" => MessageKind::Comment,
            _ => return None,
        })
    }
}

/// Which messages a mailbox listing shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateFilter {
    /// Every message not deleted.
    All,
    /// `new` and `delivered`.
    Unread,
    Only(MessageState),
}

impl StateFilter {
    pub fn parse(s: &str) -> Option<StateFilter> {
        match s {
            "all" => Some(StateFilter::All),
            "unread" => Some(StateFilter::Unread),
            "deleted" => None,
            other => MessageState::parse(other).map(StateFilter::Only),
        }
    }

    /// The states as an SQL-free pair of bounds on a fixed list.
    fn states(self) -> [&'static str; 3] {
        match self {
            StateFilter::All => ["new", "delivered", "read"],
            StateFilter::Unread => ["new", "delivered", "delivered"],
            StateFilter::Only(s) => [s.as_str(); 3],
        }
    }
}

/// Why the store could not do what was asked.
#[derive(Debug)]
pub enum StoreError {
    /// Another writer held the database past the busy timeout.
    Busy,
    /// The database (or its directory) cannot be written.
    ReadOnly,
    /// The file was made by another version; `piggyback init` migrates it.
    Schema {
        found: i64,
    },
    /// The file is missing or not a database.
    Unopenable(String),
    /// The database server cannot be reached now (down, restarting, too many clients).
    Unreachable(String),
    Sqlite(rusqlite::Error),
    Postgres(::postgres::Error),
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::Busy => write!(f, "the message database is busy"),
            StoreError::ReadOnly => write!(f, "the message database is read-only"),
            StoreError::Schema { found } => write!(
                f,
                "the message database has schema version {found}, this build needs {SCHEMA_VERSION}: run `piggyback init`"
            ),
            StoreError::Unopenable(why) => write!(f, "cannot open the message database: {why}"),
            StoreError::Unreachable(why) => write!(f, "the message database server is unreachable: {why}"),
            StoreError::Sqlite(e) => write!(f, "message database error: {e}"),
            StoreError::Postgres(e) => write!(f, "message database error: {}", postgres::describe(e)),
        }
    }
}

impl std::error::Error for StoreError {}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> StoreError {
        match e.sqlite_error_code() {
            Some(ErrorCode::DatabaseBusy) | Some(ErrorCode::DatabaseLocked) => StoreError::Busy,
            Some(ErrorCode::ReadOnly) => StoreError::ReadOnly,
            Some(ErrorCode::CannotOpen) | Some(ErrorCode::NotADatabase) => StoreError::Unopenable(e.to_string()),
            _ => StoreError::Sqlite(e),
        }
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// The per-user counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counters {
    pub new: i64,
    pub delivered: i64,
}

/// A user's counters and announcement batches, read in one row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Mailbox {
    pub counters: Counters,
    /// The last batch issued (0: none yet).
    pub batch: i64,
    /// The highest batch a client acknowledged.
    pub acked: i64,
    /// When the last batch was issued, unix seconds.
    pub announced_at: i64,
}

impl Mailbox {
    /// A batch went out unacknowledged at least `lease` seconds ago.
    pub fn unacknowledged_since(&self, now: i64, lease: i64) -> bool {
        self.batch > self.acked && self.announced_at + lease <= now
    }
}

/// What a claim announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Announce {
    /// The `new` messages.
    New,
    /// The `new` messages and the delivered ones of unacknowledged batches.
    NewAndUnacknowledged,
}

/// One message as a toast or a mailbox row shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub id: MessageId,
    pub from: String,
    pub subject: String,
    /// The first characters of the body, as read (see `body_truncated`).
    pub body_prefix: String,
    /// The body is longer than `body_prefix`.
    pub body_truncated: bool,
    pub sent_at: String,
    pub state: MessageState,
    pub kind: MessageKind,
}

/// A whole message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub id: MessageId,
    pub from: String,
    pub to: String,
    pub subject: String,
    pub body: String,
    pub sent_at: String,
    pub state: MessageState,
    pub kind: MessageKind,
}

/// What one claim flipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// The batch this claim issued (0 when it announced nothing).
    pub batch: i64,
    /// How many messages went from `new` to `delivered`.
    pub flipped: i64,
    /// The newest of them, newest first, at most the asked number.
    pub items: Vec<Summary>,
    /// How many delivered messages of unacknowledged batches are announced again.
    pub repeated: i64,
    /// The newest of those, newest first, filling what `items` left of the asked number.
    pub repeats: Vec<Summary>,
    /// The counters after the flip, read in the same transaction.
    pub after: Counters,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: UserId,
    pub name: String,
    pub display_name: String,
    pub preview: Preview,
}

/// What announcements may show of a message: a user's privacy choice, for screens
/// other people can see.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Preview {
    /// Sender, subject and snippet.
    #[default]
    Full,
    /// Sender and subject.
    Subject,
    /// The sender only.
    Sender,
}

impl Preview {
    pub fn as_str(self) -> &'static str {
        match self {
            Preview::Full => "full",
            Preview::Subject => "subject",
            Preview::Sender => "sender",
        }
    }

    pub fn parse(s: &str) -> Option<Preview> {
        Some(match s {
            "full" => Preview::Full,
            "subject" => Preview::Subject,
            "sender" => Preview::Sender,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    pub name: String,
    pub display_name: String,
    pub bio: String,
    pub preview: Preview,
    pub joined_at: String,
    pub friends: i64,
    pub posts: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Friend {
    pub name: String,
    pub display_name: String,
    pub since: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Post {
    pub id: PostId,
    pub author: String,
    pub author_id: UserId,
    pub body: String,
    pub created_at: String,
    pub comments: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Comment {
    pub id: i64,
    pub author: String,
    pub body: String,
    pub created_at: String,
}

/// A message to store: what a send request file carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMessage {
    /// Unique per request; a replay of the same request is a no-op.
    pub request_id: String,
    pub from: UserId,
    pub to: UserId,
    pub subject: String,
    pub body: String,
    pub kind: MessageKind,
    /// The sender's key: the same key never makes a second message.
    pub idempotency_key: Option<String>,
    /// Unix seconds when it was sent (accepted), not when it was stored.
    pub sent_at: i64,
}

/// What storing a message did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stored {
    pub id: MessageId,
    /// False when the request id or idempotency key had already been stored.
    pub inserted: bool,
}

/// Outcome of a friend request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FriendRequestOutcome {
    Requested,
    /// The other user had asked first: now friends.
    Accepted,
    AlreadyRequested,
    AlreadyFriends,
}

/// A state change on one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    MarkRead,
    Delete,
}

const SCHEMA: &str = "
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
const MESSAGE_INDEXES: &str = "
CREATE INDEX IF NOT EXISTS messages_by_state ON messages (recipient_id, state, id);
CREATE INDEX IF NOT EXISTS messages_by_recipient ON messages (recipient_id, id);
-- Delivered messages by batch: the unacknowledged ones to announce again.
CREATE INDEX IF NOT EXISTS messages_unacknowledged ON messages (recipient_id, batch) WHERE state = 'delivered';
-- The send rate limit counts a sender's recent messages without taking a write lock.
CREATE INDEX IF NOT EXISTS messages_by_sender ON messages (sender_id, sent_at);
";

const DROP_MESSAGE_INDEXES: &str = "
DROP INDEX IF EXISTS messages_by_state;
DROP INDEX IF EXISTS messages_by_recipient;
DROP INDEX IF EXISTS messages_unacknowledged;
DROP INDEX IF EXISTS messages_by_sender;
";

const RFC3339: &str = "'%Y-%m-%dT%H:%M:%SZ'";

/// Unix seconds now.
pub fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// An open SQLite message database (the embedded engine; [`Store`] chooses).
pub struct SqliteStore {
    conn: Connection,
    /// A write transaction was begun on this connection.
    wrote: Cell<bool>,
}

impl Drop for SqliteStore {
    /// A connection that wrote checkpoints on close when it is the last one, so the
    /// next process finds no WAL to recover; one that only read leaves the WAL alone.
    /// Measured (docs/PERFORMANCE.md): skipping the close checkpoint everywhere made
    /// every reader after a writer rebuild the WAL index from a WAL of up to 4 MB, and
    /// the common request on a 10-million-message database cost 2.4 times as much.
    /// With `msqd` holding a connection open, no CGI process is ever the last one.
    fn drop(&mut self) {
        if self.wrote.get() {
            let _ = self.conn.set_db_config(DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, false);
        }
    }
}

impl SqliteStore {
    /// Opens an existing database for a request: never creates or migrates it.
    pub fn open(path: &Path) -> Result<SqliteStore> {
        if !path.is_file() {
            return Err(StoreError::Unopenable(format!("{} does not exist (run `piggyback init`)", path.display())));
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags)?;
        // The last connection to close checkpoints and deletes the WAL: about a
        // millisecond and four fsyncs. A request that only read skips that (see Drop).
        conn.set_db_config(DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, true)?;
        let store = SqliteStore::configure(conn)?;
        let version: i64 = store.conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if version != SCHEMA_VERSION {
            return Err(StoreError::Schema { found: version });
        }
        Ok(store)
    }

    /// Creates the database or migrates it to [`SCHEMA_VERSION`] (idempotent), in WAL mode.
    pub fn init(path: &Path) -> Result<SqliteStore> {
        let conn = Connection::open(path)?;
        let store = SqliteStore::configure(conn)?;
        let mode: String = store.conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Unopenable(format!("could not switch to WAL mode (got {mode})")));
        }
        let tx = store.immediate()?;
        let version: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        match version {
            0 => {
                tx.execute_batch(SCHEMA)?;
                tx.execute_batch(MESSAGE_INDEXES)?;
                tx.execute_batch(&format!("PRAGMA user_version = {SCHEMA_VERSION}"))?;
            }
            SCHEMA_VERSION => {}
            found => return Err(StoreError::Schema { found }),
        }
        tx.commit()?;
        Ok(store)
    }

    fn configure(conn: Connection) -> Result<SqliteStore> {
        conn.busy_timeout(BUSY_TIMEOUT)?;
        conn.execute_batch("PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;")?;
        Ok(SqliteStore { conn, wrote: Cell::new(false) })
    }

    fn immediate(&self) -> Result<Transaction<'_>> {
        self.wrote.set(true);
        Ok(Transaction::new_unchecked(&self.conn, TransactionBehavior::Immediate)?)
    }

    // ---- users -------------------------------------------------------------

    pub fn user_by_name(&self, name: &str) -> Result<Option<User>> {
        Ok(self
            .conn
            .prepare_cached("SELECT id, name, display_name, preview FROM users WHERE name = ?1")?
            .query_row([name], user_row)
            .optional()?)
    }

    pub fn user_by_id(&self, id: UserId) -> Result<Option<User>> {
        Ok(self
            .conn
            .prepare_cached("SELECT id, name, display_name, preview FROM users WHERE id = ?1")?
            .query_row([id.0], user_row)
            .optional()?)
    }

    /// Adds a user with an empty mailbox; `None` when the name is taken.
    pub fn add_user(&self, name: &str, display_name: &str, password_hash: Option<&str>) -> Result<Option<UserId>> {
        let tx = self.immediate()?;
        let id: Option<i64> = tx
            .prepare_cached(
                "INSERT INTO users (name, display_name, password_hash, joined_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (name) DO NOTHING RETURNING id",
            )?
            .query_row(params![name, display_name, password_hash, now()], |r| r.get(0))
            .optional()?;
        if let Some(id) = id {
            tx.prepare_cached("INSERT INTO mailbox (user_id) VALUES (?1)")?.execute([id])?;
        }
        tx.commit()?;
        Ok(id.map(UserId))
    }

    /// The user's id and password hash, if the user exists.
    pub fn password_hash(&self, name: &str) -> Result<Option<(UserId, Option<String>)>> {
        Ok(self
            .conn
            .prepare_cached("SELECT id, password_hash FROM users WHERE name = ?1")?
            .query_row([name], |r| Ok((UserId(r.get(0)?), r.get(1)?)))
            .optional()?)
    }

    /// Sets a password hash; false when there is no such user.
    pub fn set_password_hash(&self, user: UserId, hash: &str) -> Result<bool> {
        Ok(self
            .conn
            .prepare_cached("UPDATE users SET password_hash = ?2 WHERE id = ?1")?
            .execute(params![user.0, hash])?
            == 1)
    }

    pub fn profile(&self, user: UserId) -> Result<Option<Profile>> {
        let sql = format!(
            "SELECT name, display_name, bio, strftime({RFC3339}, joined_at, 'unixepoch'),
                    (SELECT count(*) FROM friendships WHERE user_id = u.id),
                    (SELECT count(*) FROM posts WHERE author_id = u.id), preview
             FROM users u WHERE id = ?1"
        );
        Ok(self
            .conn
            .prepare_cached(&sql)?
            .query_row([user.0], |r| {
                Ok(Profile {
                    name: r.get(0)?,
                    display_name: r.get(1)?,
                    bio: r.get(2)?,
                    joined_at: r.get(3)?,
                    friends: r.get(4)?,
                    posts: r.get(5)?,
                    preview: Preview::parse(&r.get::<_, String>(6)?).unwrap_or_default(),
                })
            })
            .optional()?)
    }

    pub fn update_profile(
        &self,
        user: UserId,
        display_name: Option<&str>,
        bio: Option<&str>,
        preview: Option<Preview>,
    ) -> Result<()> {
        let tx = self.immediate()?;
        tx.prepare_cached(
            "UPDATE users SET display_name = coalesce(?2, display_name), bio = coalesce(?3, bio),
                              preview = coalesce(?4, preview) WHERE id = ?1",
        )?
        .execute(params![user.0, display_name, bio, preview.map(Preview::as_str)])?;
        tx.commit()?;
        Ok(())
    }

    // ---- friends -----------------------------------------------------------

    pub fn friends(&self, user: UserId) -> Result<Vec<Friend>> {
        let sql = format!(
            "SELECT u.name, u.display_name, strftime({RFC3339}, f.since, 'unixepoch')
             FROM friendships f JOIN users u ON u.id = f.friend_id
             WHERE f.user_id = ?1 ORDER BY u.name"
        );
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let rows =
            stmt.query_map([user.0], |r| Ok(Friend { name: r.get(0)?, display_name: r.get(1)?, since: r.get(2)? }))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Names of users who asked `user` to be friends.
    pub fn incoming_requests(&self, user: UserId) -> Result<Vec<String>> {
        self.names(
            "SELECT u.name FROM friend_requests r JOIN users u ON u.id = r.from_id WHERE r.to_id = ?1 ORDER BY u.name",
            user,
        )
    }

    /// Names of users `user` asked to be friends.
    pub fn outgoing_requests(&self, user: UserId) -> Result<Vec<String>> {
        self.names(
            "SELECT u.name FROM friend_requests r JOIN users u ON u.id = r.to_id WHERE r.from_id = ?1 ORDER BY u.name",
            user,
        )
    }

    fn names(&self, sql: &str, user: UserId) -> Result<Vec<String>> {
        let mut stmt = self.conn.prepare_cached(sql)?;
        let rows = stmt.query_map([user.0], |r| r.get(0))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    pub fn are_friends(&self, a: UserId, b: UserId) -> Result<bool> {
        Ok(self
            .conn
            .prepare_cached("SELECT 1 FROM friendships WHERE user_id = ?1 AND friend_id = ?2")?
            .exists(params![a.0, b.0])?)
    }

    /// `from` asks `to` to be friends; when `to` had asked first, they become friends.
    pub fn request_friend(&self, from: UserId, to: UserId) -> Result<FriendRequestOutcome> {
        let tx = self.immediate()?;
        let exists = |sql: &str, a: UserId, b: UserId| -> Result<bool> {
            Ok(tx.prepare_cached(sql)?.exists(params![a.0, b.0])?)
        };
        let outcome = if exists("SELECT 1 FROM friendships WHERE user_id = ?1 AND friend_id = ?2", from, to)? {
            FriendRequestOutcome::AlreadyFriends
        } else if exists("SELECT 1 FROM friend_requests WHERE from_id = ?1 AND to_id = ?2", from, to)? {
            FriendRequestOutcome::AlreadyRequested
        } else if exists("SELECT 1 FROM friend_requests WHERE from_id = ?1 AND to_id = ?2", to, from)? {
            befriend(&tx, from, to)?;
            FriendRequestOutcome::Accepted
        } else {
            tx.prepare_cached("INSERT INTO friend_requests (from_id, to_id, created_at) VALUES (?1, ?2, ?3)")?
                .execute(params![from.0, to.0, now()])?;
            FriendRequestOutcome::Requested
        };
        tx.commit()?;
        Ok(outcome)
    }

    /// `user` accepts `from`'s request; false when there was none.
    pub fn accept_friend(&self, user: UserId, from: UserId) -> Result<bool> {
        let tx = self.immediate()?;
        let had = tx
            .prepare_cached("SELECT 1 FROM friend_requests WHERE from_id = ?1 AND to_id = ?2")?
            .exists(params![from.0, user.0])?;
        if had {
            befriend(&tx, user, from)?;
        }
        tx.commit()?;
        Ok(had)
    }

    /// `user` declines `from`'s request; false when there was none.
    pub fn decline_friend(&self, user: UserId, from: UserId) -> Result<bool> {
        let tx = self.immediate()?;
        let n = tx
            .prepare_cached("DELETE FROM friend_requests WHERE from_id = ?1 AND to_id = ?2")?
            .execute(params![from.0, user.0])?;
        tx.commit()?;
        Ok(n > 0)
    }

    /// Ends a friendship or withdraws `user`'s own request; false when there was neither.
    pub fn remove_friend(&self, user: UserId, other: UserId) -> Result<bool> {
        let tx = self.immediate()?;
        let n = tx
            .prepare_cached(
                "DELETE FROM friendships WHERE (user_id = ?1 AND friend_id = ?2) OR (user_id = ?2 AND friend_id = ?1)",
            )?
            .execute(params![user.0, other.0])?
            + tx.prepare_cached("DELETE FROM friend_requests WHERE from_id = ?1 AND to_id = ?2")?
                .execute(params![user.0, other.0])?;
        tx.commit()?;
        Ok(n > 0)
    }

    // ---- posts and comments -------------------------------------------------

    /// The caller's and their friends' posts, newest first, with ids below `before`.
    pub fn feed(&self, user: UserId, before: Option<i64>, limit: usize) -> Result<Vec<Post>> {
        let sql = format!(
            "SELECT p.id, u.name, p.author_id, p.body, strftime({RFC3339}, p.created_at, 'unixepoch'),
                    (SELECT count(*) FROM comments c WHERE c.post_id = p.id)
             FROM posts p JOIN users u ON u.id = p.author_id
             WHERE (p.author_id = ?1 OR p.author_id IN (SELECT friend_id FROM friendships WHERE user_id = ?1))
               AND p.id < ?2
             ORDER BY p.id DESC LIMIT ?3"
        );
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let rows = stmt.query_map(params![user.0, before.unwrap_or(i64::MAX), limit as i64], post_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    pub fn post(&self, id: PostId) -> Result<Option<Post>> {
        let sql = format!(
            "SELECT p.id, u.name, p.author_id, p.body, strftime({RFC3339}, p.created_at, 'unixepoch'),
                    (SELECT count(*) FROM comments c WHERE c.post_id = p.id)
             FROM posts p JOIN users u ON u.id = p.author_id WHERE p.id = ?1"
        );
        Ok(self.conn.prepare_cached(&sql)?.query_row([id.0], post_row).optional()?)
    }

    pub fn comments(&self, post: PostId) -> Result<Vec<Comment>> {
        let sql = format!(
            "SELECT c.id, u.name, c.body, strftime({RFC3339}, c.created_at, 'unixepoch')
             FROM comments c JOIN users u ON u.id = c.author_id WHERE c.post_id = ?1 ORDER BY c.id"
        );
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let rows = stmt.query_map([post.0], comment_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    pub fn add_post(&self, author: UserId, body: &str) -> Result<PostId> {
        let tx = self.immediate()?;
        tx.prepare_cached("INSERT INTO posts (author_id, body, created_at) VALUES (?1, ?2, ?3)")?.execute(params![
            author.0,
            body,
            now()
        ])?;
        let id = tx.last_insert_rowid();
        tx.commit()?;
        Ok(PostId(id))
    }

    pub fn add_comment(&self, post: PostId, author: UserId, body: &str) -> Result<Comment> {
        let tx = self.immediate()?;
        tx.prepare_cached("INSERT INTO comments (post_id, author_id, body, created_at) VALUES (?1, ?2, ?3, ?4)")?
            .execute(params![post.0, author.0, body, now()])?;
        let id = tx.last_insert_rowid();
        let sql = format!(
            "SELECT c.id, u.name, c.body, strftime({RFC3339}, c.created_at, 'unixepoch')
             FROM comments c JOIN users u ON u.id = c.author_id WHERE c.id = ?1"
        );
        let comment = tx.prepare_cached(&sql)?.query_row([id], comment_row)?;
        tx.commit()?;
        Ok(comment)
    }

    // ---- messages ----------------------------------------------------------

    /// The user's counters: one autocommit read, no write lock.
    pub fn counters(&self, user: UserId) -> Result<Counters> {
        Ok(self.mailbox(user)?.counters)
    }

    /// The user's counters and batches: one autocommit read, no write lock.
    pub fn mailbox(&self, user: UserId) -> Result<Mailbox> {
        read_mailbox(&self.conn, user)
    }

    /// Records that a client showed batch `batch` and the ones before it; a batch that
    /// was never issued, or one already acknowledged, changes nothing.
    pub fn acknowledge(&self, user: UserId, batch: i64) -> Result<()> {
        let tx = self.immediate()?;
        tx.prepare_cached("UPDATE mailbox SET acked = ?2 WHERE user_id = ?1 AND acked < ?2 AND ?2 <= batch")?
            .execute(params![user.0, batch])?;
        tx.commit()?;
        Ok(())
    }

    /// Flips every `new` message of `user` to `delivered` in one IMMEDIATE transaction,
    /// as one new batch, and returns the newest `max_items` of them with `prefix_chars`
    /// of their bodies. With [`Announce::NewAndUnacknowledged`] the delivered messages
    /// of batches nobody acknowledged join the batch too. Committed before it returns:
    /// the caller writes the response only afterwards.
    pub fn claim_new(&self, user: UserId, max_items: usize, prefix_chars: usize, announce: Announce) -> Result<Claim> {
        let tx = self.immediate()?;
        let Mailbox { batch: last, acked, .. } = read_mailbox(&tx, user)?;
        let batch = last + 1;
        let returning_ids = |sql: &str, args: &[&dyn rusqlite::ToSql]| -> Result<Vec<i64>> {
            let mut stmt = tx.prepare_cached(sql)?;
            let mut ids: Vec<i64> = stmt.query_map(args, |r| r.get(0))?.collect::<rusqlite::Result<_>>()?;
            // RETURNING's order is arbitrary.
            ids.sort_unstable_by(|a, b| b.cmp(a));
            Ok(ids)
        };
        let repeat_ids = match announce {
            Announce::New => Vec::new(),
            Announce::NewAndUnacknowledged => returning_ids(
                "UPDATE messages SET batch = ?2
                 WHERE recipient_id = ?1 AND state = 'delivered' AND batch > ?3 RETURNING id",
                &[&user.0, &batch, &acked],
            )?,
        };
        let ids = returning_ids(
            "UPDATE messages SET state = 'delivered', batch = ?2 WHERE recipient_id = ?1 AND state = 'new' RETURNING id",
            &[&user.0, &batch],
        )?;
        let flipped = ids.len() as i64;
        let repeated = repeat_ids.len() as i64;
        if flipped + repeated > 0 {
            tx.prepare_cached(
                "UPDATE mailbox SET new = new - ?2, delivered = delivered + ?2, batch = ?3, announced_at = ?4
                 WHERE user_id = ?1",
            )?
            .execute(params![user.0, flipped, batch, now()])?;
        } else if announce == Announce::NewAndUnacknowledged {
            // What the unacknowledged batches held has been read or deleted since:
            // nothing is left to announce again, so stop looking.
            tx.prepare_cached("UPDATE mailbox SET acked = batch WHERE user_id = ?1")?.execute([user.0])?;
        }
        let (items, repeats) = {
            let mut stmt = tx.prepare_cached(&summary_sql("m.id = ?1"))?;
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

    /// The user's mailbox, newest first, ids below `before`.
    pub fn list_messages(
        &self,
        user: UserId,
        filter: StateFilter,
        before: Option<i64>,
        limit: usize,
        prefix_chars: usize,
    ) -> Result<Vec<Summary>> {
        let mut stmt = self.conn.prepare_cached(&summary_sql(
            "m.recipient_id = ?3 AND m.state IN (?4, ?5, ?6) AND m.id < ?7 ORDER BY m.id DESC LIMIT ?1",
        ))?;
        let [a, b, c] = filter.states();
        let rows = stmt.query_map(
            params![limit as i64, prefix_chars as i64, user.0, a, b, c, before.unwrap_or(i64::MAX)],
            summary_row,
        )?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// One message of the user's mailbox; `None` for another user's or a deleted one.
    pub fn message(&self, user: UserId, id: MessageId) -> Result<Option<Message>> {
        let sql = format!(
            "SELECT m.id, s.name, r.name, m.subject, m.body, strftime({RFC3339}, m.sent_at, 'unixepoch'), m.state, m.kind
             FROM messages m JOIN users s ON s.id = m.sender_id JOIN users r ON r.id = m.recipient_id
             WHERE m.id = ?1 AND m.recipient_id = ?2 AND m.state <> 'deleted'"
        );
        Ok(self
            .conn
            .prepare_cached(&sql)?
            .query_row(params![id.0, user.0], |r| {
                Ok(Message {
                    id: MessageId(r.get(0)?),
                    from: r.get(1)?,
                    to: r.get(2)?,
                    subject: r.get(3)?,
                    body: r.get(4)?,
                    sent_at: r.get(5)?,
                    state: state_column(r, 6)?,
                    kind: kind_column(r, 7)?,
                })
            })
            .optional()?)
    }

    /// Marks one message read or deleted, keeping the counters; false when the user has
    /// no such message (another user's, deleted, or none).
    pub fn change(&self, user: UserId, id: MessageId, change: Change) -> Result<bool> {
        let tx = self.immediate()?;
        let state: Option<String> = tx
            .prepare_cached("SELECT state FROM messages WHERE id = ?1 AND recipient_id = ?2 AND state <> 'deleted'")?
            .query_row(params![id.0, user.0], |r| r.get(0))
            .optional()?;
        let Some(state) = state else { return Ok(false) };
        let target = match change {
            Change::MarkRead => "read",
            Change::Delete => "deleted",
        };
        if state != target {
            tx.prepare_cached("UPDATE messages SET state = ?2 WHERE id = ?1")?.execute(params![id.0, target])?;
            let (new, delivered) = match state.as_str() {
                "new" => (1, 0),
                "delivered" => (0, 1),
                _ => (0, 0),
            };
            if new + delivered > 0 {
                tx.prepare_cached("UPDATE mailbox SET new = new - ?2, delivered = delivered - ?3 WHERE user_id = ?1")?
                    .execute(params![user.0, new, delivered])?;
            }
        }
        tx.commit()?;
        Ok(true)
    }

    /// Marks every unread message of the user read; returns how many.
    pub fn mark_all_read(&self, user: UserId) -> Result<i64> {
        let tx = self.immediate()?;
        let n = tx
            .prepare_cached(
                "UPDATE messages SET state = 'read' WHERE recipient_id = ?1 AND state IN ('new', 'delivered')",
            )?
            .execute([user.0])?;
        tx.prepare_cached("UPDATE mailbox SET new = 0, delivered = 0 WHERE user_id = ?1")?.execute([user.0])?;
        tx.commit()?;
        Ok(n as i64)
    }

    /// Stores a message unless its request id or (sender, idempotency key) was stored
    /// before, and counts it `new` for the recipient, in one IMMEDIATE transaction.
    pub fn store_message(&self, m: &NewMessage) -> Result<Stored> {
        let tx = self.immediate()?;
        let stored = store_message_in(&tx, m)?;
        tx.commit()?;
        Ok(stored)
    }

    /// Stores many messages in one transaction (the queue's drain and `seed`).
    pub fn store_messages(&self, messages: &[NewMessage]) -> Result<Vec<Stored>> {
        let tx = self.immediate()?;
        let stored = messages.iter().map(|m| store_message_in(&tx, m)).collect::<Result<Vec<_>>>()?;
        tx.commit()?;
        Ok(stored)
    }

    /// The message a request id or idempotency key already made, if any.
    pub fn stored_for(&self, request_id: &str, from: UserId, key: Option<&str>) -> Result<Option<MessageId>> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT id FROM messages WHERE request_id = ?1 OR (sender_id = ?2 AND idempotency_key = ?3) LIMIT 1",
            )?
            .query_row(params![request_id, from.0, key], |r| r.get(0))
            .optional()?
            .map(MessageId))
    }

    /// How many messages `user` sent since `since` (unix seconds), and when the oldest
    /// of them was sent: a read, so the send rate limit takes no write lock.
    pub fn messages_sent_since(&self, user: UserId, since: i64) -> Result<(i64, Option<i64>)> {
        Ok(self
            .conn
            .prepare_cached("SELECT count(*), min(sent_at) FROM messages WHERE sender_id = ?1 AND sent_at >= ?2")?
            .query_row(params![user.0, since], |r| Ok((r.get(0)?, r.get(1)?)))?)
    }

    /// Sets how long the next statements wait for another writer.
    pub fn set_busy_timeout(&self, timeout: Duration) -> Result<()> {
        Ok(self.conn.busy_timeout(timeout)?)
    }

    // ---- rate limits ---------------------------------------------------------

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

    // ---- maintenance ---------------------------------------------------------

    /// Integrity check and recount of every counter: the problems found, empty when sound.
    pub fn check(&self) -> Result<Vec<String>> {
        let mut problems = Vec::new();
        {
            let mut stmt = self.conn.prepare("PRAGMA integrity_check")?;
            let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
            for row in rows {
                let row = row?;
                if row != "ok" {
                    problems.push(format!("integrity: {row}"));
                }
            }
        }
        {
            let mut stmt = self.conn.prepare("PRAGMA foreign_key_check")?;
            let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, Option<i64>>(1)?)))?;
            for row in rows {
                let (table, rowid) = row?;
                problems.push(format!("foreign key: {table} row {rowid:?} points at nothing"));
            }
        }
        let mut actual: HashMap<i64, Counters> = HashMap::new();
        {
            let mut stmt = self.conn.prepare(
                "SELECT recipient_id, sum(state = 'new'), sum(state = 'delivered') FROM messages
                 WHERE state IN ('new', 'delivered') GROUP BY recipient_id",
            )?;
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, Counters { new: r.get(1)?, delivered: r.get(2)? })))?;
            for row in rows {
                let (user, counters) = row?;
                actual.insert(user, counters);
            }
        }
        let mut stmt = self.conn.prepare(
            "SELECT u.id, u.name, m.new, m.delivered FROM users u LEFT JOIN mailbox m ON m.user_id = u.id ORDER BY u.id",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get::<_, Option<i64>>(2)?, r.get::<_, Option<i64>>(3)?))
        })?;
        for row in rows {
            let (id, name, new, delivered) = row?;
            let want = actual.remove(&id).unwrap_or_default();
            match (new, delivered) {
                (Some(new), Some(delivered)) => {
                    if new != want.new || delivered != want.delivered {
                        problems.push(format!(
                            "counters of {name} (id {id}): stored new={new} delivered={delivered}, recount new={} delivered={}",
                            want.new, want.delivered
                        ));
                    }
                }
                _ => problems.push(format!("user {name} (id {id}) has no mailbox row")),
            }
        }
        for (id, _) in actual {
            problems.push(format!("messages for user id {id}, who does not exist"));
        }
        Ok(problems)
    }

    /// Rewrites every counter from a recount (`piggyback check --repair`).
    pub fn repair_counters(&self) -> Result<usize> {
        let tx = self.immediate()?;
        tx.execute(
            "INSERT INTO mailbox (user_id) SELECT id FROM users WHERE id NOT IN (SELECT user_id FROM mailbox)",
            [],
        )?;
        let n = tx.execute(
            "UPDATE mailbox SET
                new = (SELECT count(*) FROM messages WHERE recipient_id = mailbox.user_id AND state = 'new'),
                delivered = (SELECT count(*) FROM messages WHERE recipient_id = mailbox.user_id AND state = 'delivered')",
            [],
        )?;
        tx.commit()?;
        Ok(n)
    }

    /// Checkpoints the WAL into the database and truncates it.
    pub fn checkpoint(&self) -> Result<()> {
        self.conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
        Ok(())
    }

    /// Fills the database with synthetic data in large transactions (`piggyback seed`).
    pub fn seed(&self, plan: &SeedPlan) -> Result<SeedReport> {
        self.conn.execute_batch("PRAGMA synchronous = OFF; PRAGMA cache_size = -262144;")?;
        let mut rng = SplitMix(plan.seed);
        let now = now();
        let tx = self.immediate()?;
        let first_user: i64 = tx.query_row("SELECT coalesce(max(id), 0) + 1 FROM users", [], |r| r.get(0))?;
        let tag: i64 = tx.query_row("SELECT count(*) FROM users", [], |r| r.get(0))?;
        {
            let mut user =
                tx.prepare("INSERT INTO users (id, name, display_name, bio, joined_at) VALUES (?1, ?2, ?3, '', ?4)")?;
            let mut mailbox = tx.prepare("INSERT INTO mailbox (user_id) VALUES (?1)")?;
            for i in 0..plan.users {
                let id = first_user + i as i64;
                user.execute(params![id, format!("u{tag}_{i}"), format!("User {i}"), now - 86_400 * 365])?;
                mailbox.execute([id])?;
            }
        }
        tx.commit()?;
        let users = plan.users as i64;
        if users > 1 {
            let tx = self.immediate()?;
            {
                let mut friend =
                    tx.prepare("INSERT OR IGNORE INTO friendships (user_id, friend_id, since) VALUES (?1, ?2, ?3)")?;
                let mut post = tx.prepare("INSERT INTO posts (author_id, body, created_at) VALUES (?1, ?2, ?3)")?;
                for i in 0..users {
                    let a = first_user + i;
                    for step in 1..=3.min(users - 1) {
                        let b = first_user + (i + step) % users;
                        friend.execute(params![a, b, now])?;
                        friend.execute(params![b, a, now])?;
                    }
                    post.execute(params![a, format!("Hello from user {i}"), now - (rng.next() % 86_400) as i64])?;
                }
            }
            tx.commit()?;
        }
        let mut written = 0u64;
        const BATCH: u64 = 500_000;
        if plan.messages > 0 {
            self.conn.execute_batch(DROP_MESSAGE_INDEXES)?;
        }
        while written < plan.messages && users > 0 {
            let tx = self.immediate()?;
            {
                let mut insert = tx.prepare(
                    "INSERT INTO messages (request_id, sender_id, recipient_id, subject, body, sent_at, state)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )?;
                let end = (written + BATCH).min(plan.messages);
                for n in written..end {
                    let r = rng.next();
                    let to = first_user + (r % users as u64) as i64;
                    let from = first_user + ((r >> 20) % users as u64) as i64;
                    let state = match (r >> 40) % 100 {
                        0..=79 => "read",
                        80..=89 => "delivered",
                        90..=94 => "deleted",
                        _ => "new",
                    };
                    insert.execute(params![
                        format!("seed-{}-{tag}-{n}", plan.seed),
                        from,
                        to,
                        format!("Message {n}"),
                        "This is a synthetic message made by piggyback seed for demos and benchmarks.",
                        now - (plan.messages - n) as i64,
                        state
                    ])?;
                }
                written = end;
            }
            tx.commit()?;
        }
        self.conn.execute_batch(MESSAGE_INDEXES)?;
        let tx = self.immediate()?;
        tx.execute(
            "UPDATE mailbox SET
                new = (SELECT count(*) FROM messages WHERE recipient_id = mailbox.user_id AND state = 'new'),
                delivered = (SELECT count(*) FROM messages WHERE recipient_id = mailbox.user_id AND state = 'delivered')
             WHERE user_id >= ?1",
            [first_user],
        )?;
        tx.commit()?;
        self.conn.execute_batch("PRAGMA synchronous = NORMAL; PRAGMA wal_checkpoint(TRUNCATE);")?;
        Ok(SeedReport { first_user: UserId(first_user), users: plan.users, messages: written })
    }
}

/// What `seed` makes.
#[derive(Debug, Clone, Copy)]
pub struct SeedPlan {
    pub users: u64,
    pub messages: u64,
    pub seed: u64,
}

#[derive(Debug, Clone, Copy)]
pub struct SeedReport {
    pub first_user: UserId,
    pub users: u64,
    pub messages: u64,
}

/// A small deterministic generator for `seed` (SplitMix64).
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// A user's `mailbox` row (counters and batches); all zero when there is none.
fn read_mailbox(conn: &Connection, user: UserId) -> Result<Mailbox> {
    Ok(conn
        .prepare_cached("SELECT new, delivered, batch, acked, announced_at FROM mailbox WHERE user_id = ?1")?
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

fn befriend(tx: &Transaction<'_>, a: UserId, b: UserId) -> Result<()> {
    let now = now();
    let mut insert =
        tx.prepare_cached("INSERT OR IGNORE INTO friendships (user_id, friend_id, since) VALUES (?1, ?2, ?3)")?;
    insert.execute(params![a.0, b.0, now])?;
    insert.execute(params![b.0, a.0, now])?;
    tx.prepare_cached(
        "DELETE FROM friend_requests WHERE (from_id = ?1 AND to_id = ?2) OR (from_id = ?2 AND to_id = ?1)",
    )?
    .execute(params![a.0, b.0])?;
    Ok(())
}

fn store_message_in(tx: &Transaction<'_>, m: &NewMessage) -> Result<Stored> {
    let id: Option<i64> = tx
        .prepare_cached(
            "INSERT INTO messages (request_id, sender_id, recipient_id, subject, body, kind, idempotency_key, sent_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT DO NOTHING RETURNING id",
        )?
        .query_row(
            params![m.request_id, m.from.0, m.to.0, m.subject, m.body, m.kind.as_str(), m.idempotency_key, m.sent_at],
            |r| r.get(0),
        )
        .optional()?;
    if let Some(id) = id {
        tx.prepare_cached("UPDATE mailbox SET new = new + 1 WHERE user_id = ?1")?.execute([m.to.0])?;
        return Ok(Stored { id: MessageId(id), inserted: true });
    }
    let existing: i64 = tx
        .prepare_cached(
            "SELECT id FROM messages WHERE request_id = ?1 OR (sender_id = ?2 AND idempotency_key = ?3) LIMIT 1",
        )?
        .query_row(params![m.request_id, m.from.0, m.idempotency_key], |r| r.get(0))?;
    Ok(Stored { id: MessageId(existing), inserted: false })
}

fn summary_sql(condition: &str) -> String {
    // ?2 is the number of body characters to read; one more tells whether it was cut.
    format!(
        "SELECT m.id, u.name, m.subject, substr(m.body, 1, ?2), length(m.body) > ?2,
                strftime({RFC3339}, m.sent_at, 'unixepoch'), m.state, m.kind
         FROM messages m JOIN users u ON u.id = m.sender_id WHERE {condition}"
    )
}

fn summary_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Summary> {
    Ok(Summary {
        id: MessageId(r.get(0)?),
        from: r.get(1)?,
        subject: r.get(2)?,
        body_prefix: r.get(3)?,
        body_truncated: r.get(4)?,
        sent_at: r.get(5)?,
        state: state_column(r, 6)?,
        kind: kind_column(r, 7)?,
    })
}

fn user_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<User> {
    let preview: String = r.get(3)?;
    Ok(User {
        id: UserId(r.get(0)?),
        name: r.get(1)?,
        display_name: r.get(2)?,
        preview: Preview::parse(&preview).unwrap_or_default(),
    })
}

fn post_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Post> {
    Ok(Post {
        id: PostId(r.get(0)?),
        author: r.get(1)?,
        author_id: UserId(r.get(2)?),
        body: r.get(3)?,
        created_at: r.get(4)?,
        comments: r.get(5)?,
    })
}

fn comment_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Comment> {
    Ok(Comment { id: r.get(0)?, author: r.get(1)?, body: r.get(2)?, created_at: r.get(3)? })
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
