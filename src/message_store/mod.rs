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
mod send_limits;
mod sql;
pub mod sqlite;
mod store;
mod values;

use std::time::Duration;

pub use engine::{Database, Engine, Limits, Mailboxes, Maintenance, Patience, Posts, Sessions, Social, Users};
pub use send_limits::SEND_LIMITS_FILE;
pub use sqlite::migrations::SCHEMA_VERSION;
pub use store::{Store, display_db, postgres_url};
pub use values::{
    Account, Announce, CLAIM_BATCH, Claim, Comment, Counters, Friend, FriendRequestOutcome, Limit, MAX_ENDED_SESSIONS,
    Mailbox, Message, NameTaken, Post, Profile, Refusal, Removal, SeedPlan, SeedReport, SessionUser, StateFilter,
    Stored, Summary, tombstone_label,
};

// Each engine's list of migrations takes its schema through the same versions.
const _: () = assert!(postgres::MIGRATIONS.len() as i64 == SCHEMA_VERSION, "one PostgreSQL migration per version");

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
    /// The database file or an index in it is damaged (`SQLITE_CORRUPT`, PostgreSQL's
    /// `data_corrupted`/`index_corrupted`).
    Corrupt(String),
    /// The database refused the content it was given: a constraint (an unknown user,
    /// a duplicate), a value too large, a value it cannot decode or store. The only
    /// error that says something is wrong with the data rather than the environment:
    /// the queue sets a request file aside only for this one.
    Refused(Box<dyn std::error::Error + Send + Sync>),
    /// Any other failure of the engine (out of memory, an internal error, a bug). Like
    /// every error but [`StoreError::Refused`], a fault of the environment until shown
    /// otherwise: what is waiting keeps waiting.
    Failed(Box<dyn std::error::Error + Send + Sync>),
}

impl StoreError {
    /// Does the database refuse the content it was given (and would refuse it again,
    /// whatever the environment)? Positively classified: every new kind of error is
    /// an error of the environment.
    pub fn is_refusal(&self) -> bool {
        matches!(self, StoreError::Refused(_))
    }
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
            StoreError::Corrupt(why) => write!(
                f,
                "the message database is damaged ({why}): stop the programs, run `piggyback check`, \
                 and restore the database from a backup"
            ),
            StoreError::Refused(e) => write!(f, "the message database refused the data: {e}"),
            StoreError::Failed(e) => write!(f, "message database error: {e}"),
        }
    }
}

impl std::error::Error for StoreError {}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;
