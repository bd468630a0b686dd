//! The message database (消息数据库): the only module that knows SQL.
//!
//! One SQLite file in WAL mode holds users, the site's friends/posts/comments, the
//! messages with their states, and per-user counters (`mailbox.new`,
//! `mailbox.delivered`) kept in the same transaction as every state change.
//! Every transaction that may write begins IMMEDIATE; schema changes run only from
//! [`Store::init`] (`piggyback init`), never per request.
//!
//! The public surface is methods on [`Store`] that take values and return the types of
//! [`crate::model`] and of this module: no SQLite type crosses it, so a second engine
//! can implement the same methods. One file per concern holds its queries:
//! `users`, `social` (friendships and requests), `posts` (and comments), `mailbox`
//! (storing, listing, reading, marking, deleting, and the claim that announces),
//! `limits` (every limit counted in one IMMEDIATE transaction), `sessions` (sessions
//! that can end, login addresses), `maintenance` (check, repair, checkpoint, seed), and
//! [`migrations`] (the schema).
//!
//! Those files are the SQLite engine, [`SqliteStore`]. [`postgres`] is the second
//! engine, the same methods for a site served by several hosts; [`Store`] (`engines`)
//! is the enum over both that every caller holds, chosen by `PIGGYBACK_DB`.

use std::cell::Cell;
use std::path::Path;
use std::time::Duration;

use rusqlite::config::DbConfig;
use rusqlite::{Connection, ErrorCode, OpenFlags, Transaction, TransactionBehavior};

mod engines;
mod limits;
mod mailbox;
mod maintenance;
pub mod migrations;
pub mod postgres;
mod posts;
mod sessions;
mod social;
mod users;

pub use engines::{Store, display_db, postgres_url};

pub use limits::{Limit, Refusal};
pub use mailbox::{Announce, CLAIM_BATCH, Claim, Counters, Mailbox, Message, StateFilter, Stored, Summary};
pub use maintenance::{SeedPlan, SeedReport};
pub use migrations::SCHEMA_VERSION;
pub use posts::{Comment, Post};
pub use sessions::{MAX_ENDED_SESSIONS, SessionUser};
pub use social::{Friend, FriendRequestOutcome};
pub use users::{Account, NameTaken, Profile, Removal, tombstone_label};

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

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> StoreError {
        match e.sqlite_error_code() {
            Some(ErrorCode::DatabaseBusy) | Some(ErrorCode::DatabaseLocked) => StoreError::Busy,
            Some(ErrorCode::ReadOnly) => StoreError::ReadOnly,
            Some(ErrorCode::DiskFull) => StoreError::Full,
            Some(ErrorCode::SystemIoFailure) => StoreError::Io(e.to_string()),
            Some(ErrorCode::CannotOpen) | Some(ErrorCode::NotADatabase) => StoreError::Unopenable(e.to_string()),
            _ => StoreError::Failed(Box::new(e)),
        }
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// How SQLite formats unix seconds as the contract's timestamps.
const RFC3339: &str = "'%Y-%m-%dT%H:%M:%SZ'";

/// An open SQLite message database (the embedded engine; [`Store`] chooses).
pub struct SqliteStore {
    conn: Connection,
    /// A write transaction was begun on this connection.
    wrote: Cell<bool>,
    /// Opened read-only for want of disk space.
    degraded: Cell<bool>,
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
        // One stat serves both the existence check and the sidecars' wanted mode.
        let meta = match std::fs::metadata(path) {
            Ok(meta) if meta.is_file() => meta,
            _ => {
                return Err(StoreError::Unopenable(format!(
                    "{} does not exist (run `piggyback init`)",
                    path.display()
                )));
            }
        };
        crate::sidecars::match_database(path, &meta);
        match SqliteStore::open_read_write(path) {
            Err(e @ (StoreError::Full | StoreError::Io(_))) if crate::sidecars::wal_is_empty(path) => {
                SqliteStore::open_immutable(path).map_err(|_| e)
            }
            other => other,
        }
    }

    fn open_read_write(path: &Path) -> Result<SqliteStore> {
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags)?;
        // The last connection to close checkpoints and deletes the WAL: about a
        // millisecond and four fsyncs. A request that only read skips that (see Drop).
        conn.set_db_config(DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, true)?;
        let store = SqliteStore::configure(conn)?;
        migrations::apply_or_refuse(&store.conn, migrations::Older::Refuse)?;
        Ok(store)
    }

    /// A full disk leaves no room for the `-wal` and `-shm` files a WAL reader needs;
    /// when no `-wal` holds commits the database file alone is the whole truth, and
    /// a read-only connection that takes no locks (`immutable=1`) can still answer
    /// reads. Every write through it fails as [`StoreError::Full`] (503): nothing can
    /// be written anyway until space is freed, and then the next request opens normally.
    fn open_immutable(path: &Path) -> Result<SqliteStore> {
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI;
        let uri = format!("file:{}?immutable=1", crate::sidecars::uri_path(path));
        let store = SqliteStore::configure(Connection::open_with_flags(uri, flags)?)?;
        migrations::apply_or_refuse(&store.conn, migrations::Older::Refuse)?;
        store.degraded.set(true);
        Ok(store)
    }

    /// The connection can write: it was not opened read-only (for a full disk, or a
    /// database file the process could not open for writing at the time).
    pub fn can_write(&self) -> bool {
        !self.degraded.get() && !self.conn.is_readonly(rusqlite::MAIN_DB).unwrap_or(true)
    }

    /// Whether this connection may write, for `piggyback doctor` (the file's and the
    /// folder's permissions are the doctor's own checks).
    pub fn may_write(&self) -> Result<bool> {
        Ok(self.can_write())
    }

    /// Opened read-only because the disk is full (see `open_immutable`).
    pub fn is_degraded(&self) -> bool {
        self.degraded.get()
    }

    /// Makes this connection refuse every write, as a read-only file does (tests).
    #[cfg(test)]
    pub(crate) fn set_query_only(&self) -> Result<()> {
        Ok(self.conn.execute_batch("PRAGMA query_only = 1")?)
    }

    /// Whether a write transaction was begun on this connection (its close checkpoints).
    pub fn wrote(&self) -> bool {
        self.wrote.get()
    }

    /// Fails as [`Store::open`] does unless the schema is this build's: a connection kept
    /// across requests (FastCGI) checks again each time, since `piggyback init` may
    /// have migrated the database in between.
    pub fn check_version(&self) -> Result<()> {
        migrations::apply_or_refuse(&self.conn, migrations::Older::Refuse)
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
        migrations::apply_or_refuse(&tx, migrations::Older::Migrate)?;
        tx.commit()?;
        Ok(store)
    }

    fn configure(conn: Connection) -> Result<SqliteStore> {
        conn.busy_timeout(BUSY_TIMEOUT)?;
        // Foreign keys through the C interface: one statement fewer to prepare on every
        // open (4 k instructions of a CGI request). The pragma stays the statement that
        // parses the schema, here in `open` rather than in the first request's query.
        conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_FKEY, true)?;
        conn.execute_batch("PRAGMA synchronous = NORMAL")?;
        Ok(SqliteStore { conn, wrote: Cell::new(false), degraded: Cell::new(false) })
    }

    fn immediate(&self) -> Result<Transaction<'_>> {
        if self.degraded.get() {
            return Err(StoreError::Full);
        }
        self.wrote.set(true);
        Ok(Transaction::new_unchecked(&self.conn, TransactionBehavior::Immediate)?)
    }

    /// Sets how long the next statements wait for another writer.
    pub fn set_busy_timeout(&self, timeout: Duration) -> Result<()> {
        Ok(self.conn.busy_timeout(timeout)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `configure` sets foreign keys through the C interface, not a pragma: every
    /// connection a request opens must still enforce them, and sync the WAL as
    /// docs/RELIABILITY.md says (`synchronous = NORMAL`).
    #[test]
    fn a_request_connection_enforces_foreign_keys_and_syncs_normally() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("pb.db");
        drop(SqliteStore::init(&db).unwrap());
        let store = SqliteStore::open(&db).unwrap();
        let pragma = |name: &str| -> i64 { store.conn.query_row(&format!("PRAGMA {name}"), [], |r| r.get(0)).unwrap() };
        assert_eq!(pragma("foreign_keys"), 1);
        assert_eq!(pragma("synchronous"), 1, "NORMAL");
        let orphan = store.conn.execute("INSERT INTO mailbox (user_id) VALUES (12345)", []);
        assert!(orphan.is_err(), "a mailbox of no user is refused: {orphan:?}");
    }
}
