//! The SQLite engine: one file in WAL mode, the embedded default. Every transaction
//! that may write begins IMMEDIATE; one file per concern implements its trait of
//! [`Engine`](super::Engine): `users`, `social`, `posts`, `mailbox`, `limits`,
//! `sessions`, `maintenance`; `migrations` holds the schema.

use std::cell::{Cell, RefCell};
use std::path::Path;
use std::time::Duration;

use rusqlite::config::DbConfig;
use rusqlite::{Connection, ErrorCode, OpenFlags, Transaction, TransactionBehavior};

use super::send_limits::Counter;
use super::{BUSY_TIMEOUT, Database, Result, StoreError};

pub(in crate::message_store) mod limits;
mod mailbox;
mod maintenance;
pub mod migrations;
mod posts;
mod sessions;
mod social;
mod users;

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> StoreError {
        match e.sqlite_error_code() {
            Some(ErrorCode::DatabaseBusy) | Some(ErrorCode::DatabaseLocked) => StoreError::Busy,
            Some(ErrorCode::ReadOnly) => StoreError::ReadOnly,
            Some(ErrorCode::DiskFull) => StoreError::Full,
            Some(ErrorCode::SystemIoFailure) => StoreError::Io(e.to_string()),
            Some(ErrorCode::CannotOpen) | Some(ErrorCode::NotADatabase) => StoreError::Unopenable(e.to_string()),
            Some(ErrorCode::DatabaseCorrupt) => StoreError::Corrupt(e.to_string()),
            // The content: a constraint (a foreign key to an unknown user, a CHECK, a
            // UNIQUE), a string or blob over SQLite's size limit, a datatype mismatch.
            Some(ErrorCode::ConstraintViolation) | Some(ErrorCode::TooBig) | Some(ErrorCode::TypeMismatch) => {
                StoreError::Refused(Box::new(e))
            }
            // Everything else (NOMEM, an internal error, a new code) is the environment's.
            _ => StoreError::Failed(Box::new(e)),
        }
    }
}

/// An open SQLite message database (the embedded engine; [`Store`](super::Store) chooses).
pub struct SqliteStore {
    pub(in crate::message_store) conn: Connection,
    /// A write transaction was begun on this connection.
    wrote: Cell<bool>,
    /// Opened read-only for want of disk space.
    degraded: Cell<bool>,
    /// How long statements wait for another writer ([`Patience`](super::Patience)).
    patience: Cell<Duration>,
    /// The busy timeout the connection has now.
    applied: Cell<Duration>,
    /// The spool's send-limits database, once a send has opened it (boxed: most
    /// requests send nothing).
    pub(in crate::message_store) send_limits: RefCell<Option<Box<Counter>>>,
}

impl Drop for SqliteStore {
    /// A connection that wrote checkpoints on close when it is the last one, so the
    /// next process finds no WAL to recover; one that only read leaves the WAL alone.
    /// Measured (CHANGELOG.md, 2026-11-27, "A checkpoint on close"): skipping the close checkpoint everywhere made
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

    /// Makes this connection refuse every write, as a read-only file does (tests).
    #[cfg(test)]
    pub(crate) fn set_query_only(&self) -> Result<()> {
        Ok(self.conn.execute_batch("PRAGMA query_only = 1")?)
    }

    /// Creates the database or migrates it to [`SCHEMA_VERSION`](super::SCHEMA_VERSION) (idempotent), in WAL mode.
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
        Ok(SqliteStore {
            conn,
            wrote: Cell::new(false),
            degraded: Cell::new(false),
            patience: Cell::new(BUSY_TIMEOUT),
            applied: Cell::new(BUSY_TIMEOUT),
            send_limits: RefCell::new(None),
        })
    }

    fn immediate(&self) -> Result<Transaction<'_>> {
        if self.degraded.get() {
            return Err(StoreError::Full);
        }
        let conn = self.conn()?;
        self.wrote.set(true);
        Ok(Transaction::new_unchecked(conn, TransactionBehavior::Immediate)?)
    }

    /// The connection, waiting for other writers as long as the patience says now.
    fn conn(&self) -> Result<&Connection> {
        let patience = self.patience.get();
        if patience != self.applied.get() {
            self.conn.busy_timeout(patience)?;
            self.applied.set(patience);
        }
        Ok(&self.conn)
    }
}

impl Database for SqliteStore {
    fn wrote(&self) -> bool {
        self.wrote.get()
    }

    fn can_write(&self) -> bool {
        !self.degraded.get() && !self.conn.is_readonly(rusqlite::MAIN_DB).unwrap_or(true)
    }

    fn may_write(&self) -> Result<bool> {
        Ok(self.can_write())
    }

    // See `open_immutable`.
    fn is_degraded(&self) -> bool {
        self.degraded.get()
    }

    fn check_version(&self) -> Result<()> {
        migrations::apply_or_refuse(&self.conn, migrations::Older::Refuse)
    }

    fn patience_cell(&self) -> &Cell<Duration> {
        &self.patience
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

    /// A [`Patience`](crate::message_store::Patience) guard sets how long the
    /// connection's statements wait for another writer while it lives, and the
    /// connection waits as before once it is dropped.
    #[test]
    fn patience_holds_while_its_guard_lives() {
        use crate::message_store::{Mailboxes, Patience};
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("pb.db");
        drop(SqliteStore::init(&db).unwrap());
        let store = SqliteStore::open(&db).unwrap();
        let busy_timeout = || -> i64 { store.conn.query_row("PRAGMA busy_timeout", [], |r| r.get(0)).unwrap() };
        {
            let _patience = Patience::new(&store, Duration::from_millis(30));
            store.mailbox(crate::model::UserId(1)).unwrap();
            assert_eq!(busy_timeout(), 30);
            let holder = Connection::open(&db).unwrap();
            holder.execute_batch("BEGIN IMMEDIATE").unwrap();
            let refused = store.acknowledge(crate::model::UserId(1), 1);
            assert!(matches!(refused, Err(StoreError::Busy)), "{refused:?}");
        }
        store.mailbox(crate::model::UserId(1)).unwrap();
        assert_eq!(busy_timeout(), BUSY_TIMEOUT.as_millis() as i64);
    }
}
