//! The store's two engines behind one type: SQLite (the embedded default) and
//! PostgreSQL (a site served by several hosts), chosen by `PIGGYBACK_DB`.
//!
//! An enum rather than a trait object: each call is one predictable branch, with no
//! allocation and no start-up work beyond opening the chosen engine, so the SQLite
//! request path costs what it cost before there was a second engine.

use std::path::Path;
use std::time::Duration;

use super::StoreError;
use super::postgres::{PgStore, TableCopy, is_url};
use super::{
    Account, Announce, Claim, Comment, Counters, Friend, FriendRequestOutcome, Limit, Mailbox, Message, NameTaken,
    Post, Profile, Refusal, Removal, Result, SeedPlan, SeedReport, SessionUser, SqliteStore, StateFilter, Stored,
    Summary,
};
use crate::model::{Change, MessageId, NewMessage, PostId, Preview, User, UserId};
use crate::names::UserName;

/// An open message database on either engine.
pub enum Store {
    Sqlite(SqliteStore),
    /// Boxed: a client with its buffers is several times the size of a SQLite handle.
    Postgres(Box<PgStore>),
}

/// The PostgreSQL URL `db` names (CONTRACT.md, version 2: a `postgresql://` or
/// `postgres://` URL; anything else is a SQLite path).
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

    /// Which engine this is, for messages and reports.
    pub fn engine(&self) -> &'static str {
        match self {
            Store::Sqlite(_) => "sqlite",
            Store::Postgres(_) => "postgresql",
        }
    }
}

/// Each operation, forwarded to the engine: the documentation is on [`SqliteStore`].
macro_rules! forward {
    ($(fn $name:ident(&self $(, $arg:ident: $ty:ty)*) -> $ret:ty;)*) => {
        impl Store {
            $(
                #[inline]
                pub fn $name(&self $(, $arg: $ty)*) -> $ret {
                    match self {
                        Store::Sqlite(s) => s.$name($($arg),*),
                        Store::Postgres(p) => p.$name($($arg),*),
                    }
                }
            )*
        }
    };
}

forward! {
    fn rename_user(&self, from: &UserName, to: &UserName) -> Result<Option<Result<(), NameTaken>>>;
    fn remove_user(&self, name: &UserName, now: i64) -> Result<Option<Removal>>;
    fn accounts(&self) -> Result<Vec<Account>>;
    fn account(&self, name: &UserName) -> Result<Option<Account>>;
    fn wrote(&self) -> bool;
    fn can_write(&self) -> bool;
    fn may_write(&self) -> Result<bool>;
    fn is_degraded(&self) -> bool;
    fn check_version(&self) -> Result<()>;
    fn user_by_name(&self, name: &UserName) -> Result<Option<User>>;
    fn user_by_id(&self, id: UserId) -> Result<Option<User>>;
    fn add_user(&self, name: &UserName, display_name: &str, password_hash: Option<&str>, now: i64) -> Result<Result<UserId, NameTaken>>;
    fn password_hash(&self, name: &UserName) -> Result<Option<(UserId, Option<String>)>>;
    fn set_password_hash(&self, user: UserId, hash: &str) -> Result<bool>;
    fn profile(&self, user: UserId) -> Result<Option<Profile>>;
    fn update_profile(&self, user: UserId, display_name: Option<&str>, bio: Option<&str>, preview: Option<Preview>) -> Result<()>;
    fn friends(&self, user: UserId) -> Result<Vec<Friend>>;
    fn incoming_requests(&self, user: UserId) -> Result<Vec<String>>;
    fn outgoing_requests(&self, user: UserId) -> Result<Vec<String>>;
    fn are_friends(&self, a: UserId, b: UserId) -> Result<bool>;
    fn request_friend(&self, from: UserId, to: UserId, now: i64) -> Result<FriendRequestOutcome>;
    fn accept_friend(&self, user: UserId, from: UserId, now: i64) -> Result<bool>;
    fn decline_friend(&self, user: UserId, from: UserId) -> Result<bool>;
    fn remove_friend(&self, user: UserId, other: UserId) -> Result<bool>;
    fn feed(&self, user: UserId, before: Option<i64>, limit: usize) -> Result<Vec<Post>>;
    fn post(&self, id: PostId) -> Result<Option<Post>>;
    fn comments(&self, post: PostId) -> Result<Vec<Comment>>;
    fn add_post(&self, author: UserId, body: &str, now: i64) -> Result<PostId>;
    fn add_comment(&self, post: PostId, author: UserId, body: &str, now: i64) -> Result<Comment>;
    fn counters(&self, user: UserId) -> Result<Counters>;
    fn mailbox(&self, user: UserId) -> Result<Mailbox>;
    fn acknowledge(&self, user: UserId, batch: i64) -> Result<()>;
    fn acknowledge_shown(&self, user: UserId, shown: &[i64]) -> Result<()>;
    fn claim_new(&self, user: UserId, max_items: usize, prefix_chars: usize, announce: Announce, now: i64) -> Result<Claim>;
    fn list_messages(&self, user: UserId, filter: StateFilter, before: Option<i64>, limit: usize, prefix_chars: usize) -> Result<Vec<Summary>>;
    fn message(&self, user: UserId, id: MessageId) -> Result<Option<Message>>;
    fn change(&self, user: UserId, id: MessageId, change: Change) -> Result<bool>;
    fn mark_all_read(&self, user: UserId) -> Result<i64>;
    fn store_message(&self, m: &NewMessage) -> Result<Stored>;
    fn store_messages(&self, messages: &[NewMessage]) -> Result<Vec<Stored>>;
    fn stored_for(&self, request_id: &str, from: UserId, key: Option<&str>) -> Result<Option<MessageId>>;
    fn set_busy_timeout(&self, timeout: Duration) -> Result<()>;
    fn take_limits(&self, limits: &[Limit], now: i64) -> Result<Result<(), Refusal>>;
    fn refund_limit(&self, key: &str) -> Result<()>;
    fn keyed_message(&self, sender: UserId, key: &str) -> Result<Option<(MessageId, UserId)>>;
    fn known_login_address(&self, name: &UserName, addr: &str) -> Result<bool>;
    fn remember_login_address(&self, name: &UserName, addr: &str, now: i64) -> Result<()>;
    fn session_user(&self, id: UserId) -> Result<Option<SessionUser>>;
    fn end_session(&self, user: UserId, id: &str, expires: i64, now: i64) -> Result<()>;
    fn end_all_sessions(&self, user: UserId) -> Result<bool>;
    fn add_post_within(&self, author: UserId, body: &str, limits: &[Limit], quota: i64, now: i64) -> Result<Result<PostId, Refusal>>;
    fn add_comment_within(&self, post: PostId, author: UserId, body: &str, limits: &[Limit], quota: i64, now: i64) -> Result<Result<i64, Refusal>>;
    fn audit(&self) -> Result<Vec<String>>;
    fn repair_counters(&self) -> Result<usize>;
    fn checkpoint(&self) -> Result<()>;
    fn seed(&self, plan: &SeedPlan, now: i64) -> Result<SeedReport>;
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
