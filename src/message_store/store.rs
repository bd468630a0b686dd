//! [`Store`]: the engine a caller holds, SQLite (the embedded default) or PostgreSQL
//! (a site served by several hosts), chosen by `PIGGYBACK_DB`.
//!
//! An enum: opening the chosen engine is the only start-up work and the only
//! allocation (a PostgreSQL client, boxed), and each operation (the methods
//! `engine::interface!` gives it, one per operation of the interface) is one branch
//! to a direct call, so a program links only the operations it uses and the SQLite
//! request path costs what it cost before there was a second engine.

use std::path::Path;
use std::time::Duration;

use super::postgres::{PgStore, TableCopy, is_url};
use super::sqlite::SqliteStore;
use super::{Patience, Result, StoreError};

/// An open message database on either engine.
pub enum Store {
    Sqlite(SqliteStore),
    /// Boxed: a client with its buffers is several times the size of a SQLite handle.
    Postgres(Box<PgStore>),
}

/// The PostgreSQL URL `db` names: a `postgresql://` or `postgres://` URL; anything
/// else is a SQLite path.
pub fn postgres_url(db: &Path) -> Option<&str> {
    db.to_str().filter(|s| is_url(s))
}

/// `db` as a report or a log line may show it: a URL without its password.
pub fn display_db(db: &Path) -> String {
    match postgres_url(db).and_then(|u| url::Url::parse(u).ok()) {
        Some(mut url) => {
            if url.password().is_some() {
                let _ = url.set_password(Some("***"));
            }
            url.to_string()
        }
        None => db.display().to_string(),
    }
}

impl Store {
    /// Opens an existing database for a request: never creates or migrates it.
    pub fn open(db: &Path) -> Result<Store> {
        match postgres_url(db) {
            Some(url) => PgStore::open(url).map(|p| Store::Postgres(Box::new(p))),
            None => SqliteStore::open(db).map(Store::Sqlite),
        }
    }

    /// Creates the database or migrates it to the schema this build needs (idempotent).
    pub fn init(db: &Path) -> Result<Store> {
        match postgres_url(db) {
            Some(url) => PgStore::init(url).map(|p| Store::Postgres(Box::new(p))),
            None => SqliteStore::init(db).map(Store::Sqlite),
        }
    }

    /// Copies this SQLite database into the PostgreSQL database `url` (made or
    /// migrated first, and empty), counting every table on both sides.
    pub fn migrate_to_postgres(&self, url: &str) -> Result<Vec<TableCopy>> {
        match self {
            Store::Sqlite(source) => PgStore::init(url)?.copy_from_sqlite(&source.conn),
            Store::Postgres(_) => Err(StoreError::Unopenable("the source is PostgreSQL already".into())),
        }
    }

    /// Until the guard is dropped, this store waits at most `wait` for another writer
    /// (see [`Patience`]).
    pub fn patience(&self, wait: Duration) -> Patience<'_> {
        match self {
            Store::Sqlite(s) => Patience::new(s, wait),
            Store::Postgres(p) => Patience::new(&**p, wait),
        }
    }

    /// Which engine this is, for messages and reports.
    pub fn engine(&self) -> &'static str {
        match self {
            Store::Sqlite(_) => "sqlite",
            Store::Postgres(_) => "postgresql",
        }
    }
}

impl Store {
    /// Makes a SQLite connection refuse every write, as a read-only file does (tests).
    #[cfg(test)]
    pub(crate) fn set_query_only(&self) -> Result<()> {
        match self {
            Store::Sqlite(s) => s.set_query_only(),
            Store::Postgres(_) => Err(StoreError::Unopenable("query_only is a SQLite test aid".into())),
        }
    }
}
