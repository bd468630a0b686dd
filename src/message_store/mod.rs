//! The message database (消息数据库): the only module that knows SQL.
//!
//! Users, the site's friends/posts/comments, the messages with their states, and
//! per-user counters (`mailbox.new`, `mailbox.delivered`) kept in the same transaction
//! as every state change. Schema changes run only from [`Store::init`]
//! (`piggyback init`), never per request.
//!
//! - `engine`: the interface, every operation documented once (one trait per concern,
//!   [`Engine`] all of them).
//! - `values`: what the operations take and return, the same for every engine.
//! - `store`: [`Store`], the engine a caller holds, chosen by `PIGGYBACK_DB`.
//! - `sqlite/` (the embedded default) and `postgres/` (a site served by several hosts):
//!   the two engines, each with one file per concern and its own migrations.

mod engine;
pub mod postgres;
pub mod sqlite;
mod store;
mod values;

use std::time::Duration;

pub use engine::{Engine, Limits, Mailboxes, Maintenance, Posts, Sessions, Social, Users};
pub use sqlite::migrations::SCHEMA_VERSION;
pub use store::{Store, display_db, postgres_url};
pub use values::{
    Account, Announce, CLAIM_BATCH, Claim, Comment, Counters, Friend, FriendRequestOutcome, Limit, MAX_ENDED_SESSIONS,
    Mailbox, Message, NameTaken, Post, Profile, Refusal, Removal, SeedPlan, SeedReport, SessionUser, StateFilter,
    Stored, Summary, tombstone_label,
};

// Each engine's list of migrations takes its schema through the same versions.
const _: () = assert!(postgres::MIGRATIONS.len() as i64 == SCHEMA_VERSION, "one PostgreSQL migration per version");

/// Recounts `mailbox` counters from the messages themselves, for the rows a `WHERE`
/// appended to it selects: the one statement both engines' repairs, seeds and
/// removals share (the same SQL on SQLite and PostgreSQL).
pub(crate) const RECOUNT_COUNTERS: &str = "UPDATE mailbox SET
    new = (SELECT count(*) FROM messages WHERE recipient_id = mailbox.user_id AND state = 'new'),
    delivered = (SELECT count(*) FROM messages WHERE recipient_id = mailbox.user_id AND state = 'delivered')";

/// How long a request waits for another writer before answering 503.
/// Below both servers' CGI timeouts (3 s and more in `cgi-bin-config/`).
pub const BUSY_TIMEOUT: Duration = Duration::from_millis(2000);

/// Why the store could not do what was asked.
#[derive(Debug)]
pub enum StoreError {
    /// Another writer held the database past the busy timeout.
    Busy,
    /// The database (or its directory) cannot be written.
    ReadOnly,
    /// The filesystem of the database is full (`SQLITE_FULL`, or no room for the
    /// `-wal`/`-shm` files).
    Full,
    /// The operating system reported an I/O error.
    Io(String),
    /// The file has another schema version: an older one `piggyback init` migrates,
    /// a newer one only a newer build reads.
    Schema { found: i64 },
    /// The file is missing or not a database.
    Unopenable(String),
    /// The database server cannot be reached now (down, restarting, too many clients).
    Unreachable(String),
    /// The engine refused the statement for another reason (a constraint, a bug): not
    /// a reason to wait, and not the engine's type, so that another engine fits.
    Failed(Box<dyn std::error::Error + Send + Sync>),
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::Busy => write!(f, "the message database is busy"),
            StoreError::ReadOnly => write!(f, "the message database is read-only"),
            StoreError::Full => write!(f, "the disk of the message database is full: free space on its filesystem"),
            StoreError::Io(why) => {
                write!(f, "I/O error on the message database ({why}): check its disk and the kernel log")
            }
            StoreError::Schema { found } if *found > SCHEMA_VERSION => write!(
                f,
                "the message database has schema version {found}, newer than this build's {SCHEMA_VERSION}: \
                 install the build that made it"
            ),
            StoreError::Schema { found } => write!(
                f,
                "the message database has schema version {found}, this build needs {SCHEMA_VERSION}: run `piggyback init`"
            ),
            StoreError::Unopenable(why) => write!(f, "cannot open the message database: {why}"),
            StoreError::Unreachable(why) => write!(f, "the message database server is unreachable: {why}"),
            StoreError::Failed(e) => write!(f, "message database error: {e}"),
        }
    }
}

impl std::error::Error for StoreError {}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;
