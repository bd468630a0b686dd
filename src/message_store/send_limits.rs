//! Where a send's limits are counted: somewhere a held write lock of the database
//! cannot stop them, so that a valid send is accepted (202) whatever the database is
//! doing, and the limits stay exact under parallel senders.
//!
//! On SQLite, the database has one write lock for everything: an operator's
//! `BEGIN IMMEDIATE`, a long maintenance or a stuck process holding it past the busy
//! timeout would refuse every send if its limits were counted there. They are counted
//! instead in a small SQLite database of their own in the spool (`limits.db`, the
//! same `rate_limits` table), with the same one-`BEGIN IMMEDIATE` check-and-count
//! ([`take_limits_in`]): N parallel senders are serialised on *its* lock, which only
//! senders take, each for the microseconds of one check, so at most `limit` of them
//! are admitted whatever N. It lives beside the request files because it belongs to
//! accepting a send, as they do: the spool's disk being full refuses both, the
//! database's disk being full refuses neither. A commit there is atomic: a program
//! killed at any point has counted its send or not, and one killed after counting but
//! before its request file was durable has only spent one of its sender's sends.
//!
//! On PostgreSQL there is no database-wide write lock (a held lock on the messages
//! or a mailbox stops neither the rate rows nor the spool), and several web hosts
//! share one database but each has its own spool: the limits stay in the database's
//! `rate_limits`, exact across hosts.

use std::cell::RefCell;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use rusqlite::config::DbConfig;
use rusqlite::{Connection, OpenFlags, Transaction, TransactionBehavior};

use super::sqlite::limits::take_limits_in;
use super::{BUSY_TIMEOUT, Limit, Limits, Refusal, Result, Store};
use crate::file_mode::{self, FileMode};

/// The send limits' own database, in the spool's root.
pub const SEND_LIMITS_FILE: &str = "limits.db";

impl Store {
    /// Checks and counts a send's `limits` in `counter` (a SQLite store; see the
    /// module) or in the database (PostgreSQL): all counted, or none and how long to
    /// wait. `mode` is the spool's, for a file this makes.
    pub fn take_send_limits(
        &self,
        counter: &Path,
        mode: FileMode,
        limits: &[Limit],
        now: i64,
    ) -> Result<Result<(), Refusal>> {
        match self {
            Store::Sqlite(s) => with_counter(&s.send_limits, counter, mode, |conn| {
                let tx = Transaction::new_unchecked(conn, TransactionBehavior::Immediate)?;
                let taken = take_limits_in(&tx, limits, now)?;
                tx.commit()?;
                Ok(taken)
            }),
            Store::Postgres(p) => p.take_limits(limits, now),
        }
    }

    /// Gives back one event of each of `limits`, counted by [`Store::take_send_limits`]
    /// for a send that was then not accepted.
    pub fn refund_send_limits(&self, counter: &Path, mode: FileMode, limits: &[Limit]) -> Result<()> {
        match self {
            Store::Sqlite(s) => with_counter(&s.send_limits, counter, mode, |conn| {
                let tx = Transaction::new_unchecked(conn, TransactionBehavior::Immediate)?;
                for l in limits {
                    tx.prepare_cached("UPDATE rate_limits SET count = count - 1 WHERE key = ?1 AND count > 0")?
                        .execute([&l.key])?;
                    tx.prepare_cached("DELETE FROM rate_limits WHERE key = ?1 AND count = 0")?.execute([&l.key])?;
                }
                tx.commit()?;
                Ok(())
            }),
            Store::Postgres(p) => {
                for l in limits {
                    p.refund_limit(&l.key)?;
                }
                Ok(())
            }
        }
    }
}

/// The limits' database as a process keeps it open, with the file it was opened as.
pub(in crate::message_store) struct Counter {
    path: PathBuf,
    file: (u64, u64),
    conn: Connection,
}

/// Runs `f` on the connection to the limits' database at `path` that `kept` holds, or
/// on one opened now and kept. A FastCGI process counts every send on one connection,
/// its statements prepared once; a CGI process opens it once, as before. One `stat` a
/// send tells whether the file is still the one opened (a spool removed and made again
/// has a new one, which every sender must count in): if not, it is opened again. After
/// an error the connection is not kept.
fn with_counter<T>(
    kept: &RefCell<Option<Box<Counter>>>,
    path: &Path,
    mode: FileMode,
    f: impl FnOnce(&Connection) -> Result<T>,
) -> Result<T> {
    let mut kept = kept.borrow_mut();
    // Only a kept connection costs the `stat`; opening takes its own.
    let current = match kept.as_deref() {
        Some(c) if c.path == path => std::fs::metadata(path).is_ok_and(|m| (m.dev(), m.ino()) == c.file),
        _ => false,
    };
    if !current {
        *kept = None;
        *kept = Some(Box::new(open(path, mode)?));
    }
    let result = f(&kept.as_ref().expect("kept above").conn);
    if result.is_err() {
        *kept = None;
    }
    result
}

/// Opens the limits' database at `path`, making it (with the spool's `mode`, owned
/// like the folder it is in) when missing; its `-wal` and `-shm` follow it.
fn open(path: &Path, mode: FileMode) -> Result<Counter> {
    let meta = match std::fs::metadata(path) {
        Ok(meta) => meta,
        Err(_) => {
            // An empty file is an empty SQLite database.
            file_mode::touch(path, mode).map_err(|e| super::StoreError::Io(format!("{}: {e}", path.display())))?;
            if let Some(folder) = path.parent().and_then(|p| std::fs::metadata(p).ok()) {
                // Made by root (`piggyback send`): the programs' user must write it too.
                let _ = std::os::unix::fs::chown(path, Some(folder.uid()), Some(folder.gid()));
            }
            std::fs::metadata(path).map_err(|e| super::StoreError::Io(format!("{}: {e}", path.display())))?
        }
    };
    crate::sidecars::match_database(path, &meta);
    let file = (meta.dev(), meta.ino());
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    // The last connection to close leaves the WAL in place instead of checkpointing it
    // into the file and deleting it: that was three fsyncs, the WAL and -shm made again
    // and about forty system calls on every CGI send. The next opener reads back the
    // WAL, which `wal_autocheckpoint` keeps to a few pages (see `set_up`).
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, true)?;
    // Senders that find the file new all set it up at once: switching to WAL takes an
    // exclusive lock for which SQLite does not always wait (it answers busy at once to
    // avoid a deadlock), so the setup is tried again until the busy timeout is spent.
    let deadline = std::time::Instant::now() + BUSY_TIMEOUT;
    loop {
        match set_up(&conn) {
            Err(rusqlite::Error::SqliteFailure(e, _))
                if matches!(e.code, rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            done => return done.map(|()| Counter { path: path.to_owned(), file, conn }).map_err(Into::into),
        }
    }
}

/// WAL (which persists in the file once set: later opens only read the mode) and the
/// one table.
fn set_up(conn: &Connection) -> rusqlite::Result<()> {
    let journal: String = conn.query_row("PRAGMA journal_mode", [], |r| r.get(0))?;
    if !journal.eq_ignore_ascii_case("wal") {
        conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get::<_, String>(0))?;
    }
    conn.execute_batch(
        "PRAGMA synchronous = NORMAL;
         PRAGMA wal_autocheckpoint = 32;
         CREATE TABLE IF NOT EXISTS rate_limits (
             key TEXT PRIMARY KEY,
             window_start INTEGER NOT NULL,
             count INTEGER NOT NULL CHECK (count >= 0)
         ) WITHOUT ROWID;",
    )
}
