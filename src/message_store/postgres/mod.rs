//! The message database on PostgreSQL: the same operations, guarantees and answers as
//! the SQLite engine, for a site served by several web hosts.
//!
//! One connection per process (a CGI process makes one; `msqd` keeps one and makes it
//! again when the server went away). Every statement is sent with `query_typed`: an
//! unnamed Parse/Bind/Execute in one round trip, so that a pgbouncer in transaction
//! mode works (named statements collide there: every new process names its first one
//! `s0`), and no session state is used: what must hold for a transaction is set with
//! `set_config(…, true)` inside it, and the database's defaults are set by `init`.
//!
//! Locking order, so that no two transactions deadlock: every transaction that
//! changes a user's message states locks that user's `mailbox` row first
//! (`FOR UPDATE`); a transaction that stores messages inserts them first (new rows
//! nobody else can see or wait for) and then updates the counters of their
//! recipients in ascending id order.
//!
//! The claim is exactly-once under READ COMMITTED without the mailbox lock too:
//! `UPDATE … SET state = 'delivered' WHERE … AND state = 'new'` re-checks the state of
//! a row another transaction changed before it updates it. The lock serialises one
//! user's claims so that batch numbers follow each other as on SQLite.
//!
//! One file per concern, as the SQLite engine's: `users`, `social`, `posts`,
//! `mailbox` (the claim), `limits`, `sessions`, `maintenance` and `migrations` (the
//! schema, `init`, and the copy from SQLite); this file holds the connection.

use std::cell::{Cell, RefCell};
use std::time::Duration;

use postgres::error::SqlState;
use postgres::types::{ToSql, Type};
use postgres::{Client, NoTls, Row};

use super::{BUSY_TIMEOUT, Database, Refusal, Result, SCHEMA_VERSION, StoreError};

/// How long `connect` waits for the server: a request whose database is unreachable
/// answers 503 well within the web servers' CGI timeouts.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

mod limits;
mod mailbox;
mod maintenance;
mod migrations;
mod posts;
mod sessions;
mod social;
mod users;

pub use migrations::{MIGRATIONS, TableCopy};

/// One typed parameter of `query_typed`.
type Param<'a> = (&'a (dyn ToSql + Sync), Type);

fn int(v: &i64) -> Param<'_> {
    (v, Type::INT8)
}

fn int4(v: &i32) -> Param<'_> {
    (v, Type::INT4)
}

fn text<'a, T: ToSql + Sync>(v: &'a T) -> Param<'a> {
    (v, Type::TEXT)
}

/// An open PostgreSQL message database.
pub struct PgStore {
    url: String,
    client: RefCell<Client>,
    /// How long the next write transactions wait for a row lock (the drain's patience).
    patience: Cell<Duration>,
}

/// Is `db` a PostgreSQL URL rather than a SQLite path?
pub fn is_url(db: &str) -> bool {
    db.starts_with("postgresql://") || db.starts_with("postgres://")
}

/// The server's own message when there is one ("db error" alone says nothing).
pub fn describe(e: &postgres::Error) -> String {
    match (e.as_db_error(), std::error::Error::source(e)) {
        (Some(db), _) => db.to_string(),
        (None, Some(source)) => format!("{e}: {source}"),
        (None, None) => e.to_string(),
    }
}

impl From<postgres::Error> for StoreError {
    fn from(e: postgres::Error) -> StoreError {
        let Some(code) = e.code() else {
            // No SQLSTATE: the connection failed or was closed.
            return StoreError::Unreachable(describe(&e));
        };
        if *code == SqlState::T_R_SERIALIZATION_FAILURE
            || *code == SqlState::T_R_DEADLOCK_DETECTED
            || *code == SqlState::LOCK_NOT_AVAILABLE
            || *code == SqlState::QUERY_CANCELED
        {
            StoreError::Busy
        } else if *code == SqlState::READ_ONLY_SQL_TRANSACTION {
            StoreError::ReadOnly
        } else if code.code().starts_with("08")
            || *code == SqlState::ADMIN_SHUTDOWN
            || *code == SqlState::CRASH_SHUTDOWN
            || *code == SqlState::CANNOT_CONNECT_NOW
            || *code == SqlState::TOO_MANY_CONNECTIONS
        {
            StoreError::Unreachable(describe(&e))
        } else if *code == SqlState::UNDEFINED_TABLE {
            StoreError::Schema { found: 0 }
        } else if *code == SqlState::DISK_FULL {
            StoreError::Full
        } else if *code == SqlState::IO_ERROR {
            StoreError::Io(describe(&e))
        } else if *code == SqlState::DATA_CORRUPTED || *code == SqlState::INDEX_CORRUPTED {
            StoreError::Corrupt(describe(&e))
        } else if code.code().starts_with("22")
            || code.code().starts_with("23")
            || *code == SqlState::PROGRAM_LIMIT_EXCEEDED
        {
            // The content: a data exception (a value too long, a byte sequence the
            // encoding refuses, such as NUL), an integrity constraint, a row or value
            // over a limit. Nothing else sets a request file aside.
            StoreError::Refused(describe(&e).into())
        } else {
            // Out of memory, out of disk quota, an internal error, a new code: the
            // environment's until shown otherwise.
            StoreError::Failed(describe(&e).into())
        }
    }
}

fn connect(url: &str) -> Result<Client> {
    let mut config: postgres::Config =
        url.parse().map_err(|e: postgres::Error| StoreError::Unopenable(format!("bad PostgreSQL URL: {e}")))?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    config.connect(NoTls).map_err(|e| match StoreError::from(e) {
        StoreError::Failed(e) => StoreError::Unopenable(e.to_string()),
        other => other,
    })
}

impl PgStore {
    /// Connects for a request: never creates or migrates the schema.
    pub fn open(url: &str) -> Result<PgStore> {
        let mut client = connect(url)?;
        // One round trip: a database without the table is version 0 (see `From`).
        let version = match client.query_typed_opt("SELECT version FROM piggyback_schema", &[]) {
            Ok(row) => row.map(|r| r.get(0)).unwrap_or(0),
            Err(e) => match StoreError::from(e) {
                StoreError::Schema { found } => found,
                other => return Err(other),
            },
        };
        if version != SCHEMA_VERSION {
            return Err(StoreError::Schema { found: version });
        }
        Ok(PgStore { url: url.to_owned(), client: RefCell::new(client), patience: Cell::new(BUSY_TIMEOUT) })
    }

    /// The connection, made again when the server closed it (a restart under `msqd`).
    fn client(&self) -> Result<std::cell::RefMut<'_, Client>> {
        let mut client = self.client.borrow_mut();
        if client.is_closed() {
            *client = connect(&self.url)?;
        }
        Ok(client)
    }

    /// Runs `work` in one READ COMMITTED transaction and commits it.
    fn write<T>(&self, work: impl FnOnce(&mut postgres::Transaction<'_>) -> Result<T>) -> Result<T> {
        let mut client = self.client()?;
        let mut tx = client.transaction()?;
        let patience = self.patience.get();
        if patience != BUSY_TIMEOUT {
            let ms = format!("{}ms", patience.as_millis());
            tx.query_typed("SELECT set_config('lock_timeout', $1, true)", &[text(&ms)])?;
        }
        let out = work(&mut tx)?;
        tx.commit()?;
        Ok(out)
    }

    fn query(&self, sql: &str, params: &[Param<'_>]) -> Result<Vec<Row>> {
        Ok(self.client()?.query_typed(sql, params)?)
    }

    fn query_opt(&self, sql: &str, params: &[Param<'_>]) -> Result<Option<Row>> {
        Ok(self.client()?.query_typed_opt(sql, params)?)
    }

    /// Runs `work` in one transaction, committed only when it admits the action.
    fn admit<T>(
        &self,
        work: impl FnOnce(&mut postgres::Transaction<'_>) -> Result<Result<T, Refusal>>,
    ) -> Result<Result<T, Refusal>> {
        let mut client = self.client()?;
        let mut tx = client.transaction()?;
        let out = work(&mut tx)?;
        if out.is_ok() {
            tx.commit()?;
        }
        Ok(out)
    }
}

impl Database for PgStore {
    // Nothing to checkpoint on close: the server keeps its own log.
    fn wrote(&self) -> bool {
        false
    }

    // A server connection is never opened read-only: a server that cannot write
    // answers each write with an error (503), and the next request connects anew.
    fn can_write(&self) -> bool {
        true
    }

    fn may_write(&self) -> Result<bool> {
        let row = self.client()?.query_one(
            "SELECT NOT pg_is_in_recovery() AND current_setting('transaction_read_only') = 'off' \
             AND has_table_privilege('mailbox', 'UPDATE') AND has_table_privilege('messages', 'INSERT')",
            &[],
        )?;
        Ok(row.get(0))
    }

    // Never degraded: the read-only fallback is for a SQLite file on a full disk.
    fn is_degraded(&self) -> bool {
        false
    }

    // Fails as [`PgStore::open`] does unless the schema is this build's (a connection
    // kept across FastCGI requests checks again each time).
    fn check_version(&self) -> Result<()> {
        let version = match self.client()?.query_typed_opt("SELECT version FROM piggyback_schema", &[]) {
            Ok(row) => row.map(|r| r.get(0)).unwrap_or(0),
            Err(e) => match StoreError::from(e) {
                StoreError::Schema { found } => found,
                other => return Err(other),
            },
        };
        if version != SCHEMA_VERSION {
            return Err(StoreError::Schema { found: version });
        }
        Ok(())
    }

    // How long the next write transactions wait for a row lock (`write`).
    fn patience_cell(&self) -> &Cell<Duration> {
        &self.patience
    }
}
