//! The store's interface: every operation, documented once here, that each engine
//! (`sqlite::SqliteStore`, `postgres::PgStore`) implements. One trait per concern, as
//! the engines keep one file per concern; [`Engine`] is all of them. Each trait is
//! declared through `interface!`, which also gives [`Store`] the same methods, each
//! calling the chosen engine's: a caller calls them as methods of the store it holds.
//!
//! Adding an operation: declare it in its concern's trait with its documentation, then
//! write it once in that concern's file of each engine; nothing else lists it. Both engines answer alike: the
//! integration suite runs on each.
//!
//! Every operation takes values and returns the values of [`super::values`] and
//! [`crate::model`]; no engine type crosses it. Times are unix seconds in and RFC 3339
//! UTC text out, formatted in Rust (`crate::text::rfc3339`), never by the database.

use std::cell::Cell;
use std::time::Duration;

use super::values::{
    Account, Announce, Claim, Comment, Counters, Friend, FriendRequestOutcome, Limit, Mailbox, Message, NameTaken,
    Post, Profile, Refusal, Removal, SeedPlan, SeedReport, SessionUser, StateFilter, Stored, Summary,
};
use super::{Result, Store};
use crate::model::{Change, MessageId, NewMessage, PostId, Preview, User, UserId};
use crate::names::UserName;

/// Declares one trait of the interface and the same methods on [`Store`], each calling
/// the chosen engine's (static dispatch: a program links only the operations it calls,
/// where a `dyn Engine` made every program carry both engines whole). The trait is the
/// one place an operation's signature and documentation are written.
macro_rules! interface {
    (
        $(#[$doc:meta])*
        pub trait $trait:ident {
            $(
                $(#[$method_doc:meta])*
                fn $name:ident(&self $(, $arg:ident: $ty:ty)* $(,)?) -> $ret:ty;
            )*
        }
    ) => {
        $(#[$doc])*
        pub trait $trait {
            $(
                $(#[$method_doc])*
                fn $name(&self $(, $arg: $ty)*) -> $ret;
            )*
        }

        impl Store {
            $(
                $(#[$method_doc])*
                #[inline]
                pub fn $name(&self $(, $arg: $ty)*) -> $ret {
                    match self {
                        Store::Sqlite(s) => $trait::$name(s $(, $arg)*),
                        Store::Postgres(p) => $trait::$name(&**p $(, $arg)*),
                    }
                }
            )*
        }
    };
}

/// One open message database: every concern, and the connection's own state. Each
/// engine implements the traits it is made of.
pub trait Engine: Database + Users + Social + Posts + Mailboxes + Limits + Sessions + Maintenance {}

impl<T: Database + Users + Social + Posts + Mailboxes + Limits + Sessions + Maintenance> Engine for T {}

interface! {
    /// The open database's own state.
    pub trait Database {
        /// Whether a write transaction was begun on this connection (on SQLite its close
        /// then checkpoints; a server engine never needs to).
        fn wrote(&self) -> bool;

        /// The connection can write: it was not opened read-only (for a full disk, or a
        /// database file the process could not open for writing at the time).
        fn can_write(&self) -> bool;

        /// Whether this connection may write what requests write, asked without writing
        /// anything (`piggyback doctor`): on SQLite [`Database::can_write`] (the file's
        /// and the folder's permissions are the doctor's own checks); on PostgreSQL not a
        /// standby, not a read-only session, and the rights on the tables an announcement
        /// and a send change.
        fn may_write(&self) -> Result<bool>;

        /// Opened read-only because the disk is full: reads work, every write fails as
        /// [`StoreError::Full`](super::StoreError::Full).
        fn is_degraded(&self) -> bool;

        /// Fails as opening does unless the schema is this build's: a connection kept
        /// across requests (FastCGI) checks again each time, since `piggyback init` may
        /// have migrated the database in between.
        fn check_version(&self) -> Result<()>;

        /// How long the connection's statements wait for another writer (a lock held by
        /// another connection). Changed only by [`Patience`], which puts it back when
        /// dropped; each engine reads it when it begins a statement or a transaction.
        fn patience_cell(&self) -> &Cell<Duration>;
    }
}

/// A shorter (or longer) wait for other writers while it lives: the store's
/// [`Database::patience_cell`] holds `wait` until the guard is dropped, then what it held
/// before. Nothing to reset by hand and no error to ignore: setting it cannot fail;
/// the engine applies it at its next statement, where a failure is that statement's.
///
/// A request that must not wait long for a write lock (a page announcing, a send whose
/// request file is durable already) holds one around the calls it bounds.
#[must_use = "the wait lasts only while the guard lives"]
pub struct Patience<'a> {
    cell: &'a Cell<Duration>,
    before: Duration,
}

impl<'a> Patience<'a> {
    /// Until the guard is dropped, `store` waits at most `wait` for another writer.
    pub fn new(store: &'a (impl Database + ?Sized), wait: Duration) -> Patience<'a> {
        let cell = store.patience_cell();
        Patience { cell, before: cell.replace(wait) }
    }
}

impl Drop for Patience<'_> {
    fn drop(&mut self) {
        self.cell.set(self.before);
    }
}

interface! {
    /// Users: accounts, passwords' hashes, profiles, renaming and removal.
    pub trait Users {
        /// Every user, by id (`piggyback user list`).
        fn accounts(&self) -> Result<Vec<Account>>;

        /// The user named `name`, with the counts `piggyback user show` prints.
        fn account(&self, name: &UserName) -> Result<Option<Account>>;

        /// The user named `name`, removed or not (a removed user's name is its tombstone
        /// label, which no [`UserName`] can be).
        fn user_by_name(&self, name: &UserName) -> Result<Option<User>>;

        /// The user `id`, unless removed.
        fn user_by_id(&self, id: UserId) -> Result<Option<User>>;

        /// Adds a user who joined at `now` with an empty mailbox, unless the name or its
        /// look (skeleton) is taken.
        fn add_user(
            &self,
            name: &UserName,
            display_name: &str,
            password_hash: Option<&str>,
            now: i64,
        ) -> Result<Result<UserId, NameTaken>>;

        /// The user's id and password hash, if the user exists.
        fn password_hash(&self, name: &UserName) -> Result<Option<(UserId, Option<String>)>>;

        /// Sets a password hash; false when there is no such user.
        fn set_password_hash(&self, user: UserId, hash: &str) -> Result<bool>;

        /// Renames the user `from` to `to`: `Ok(None)` when there is no `from`, `Err` when
        /// another user has `to` or a name that looks like it. Everything refers to users
        /// by id, so messages, friendships, posts and session cookies follow; only
        /// `REMOTE_USER` must now say `to`.
        fn rename_user(&self, from: &UserName, to: &UserName) -> Result<Option<Result<(), NameTaken>>>;

        /// Removes the user `name` (docs/API.md "Removing a user"), in one transaction:
        /// their sessions end (the row is marked removed, so every cookie answers 401),
        /// the messages they received are deleted, the messages they sent that were not
        /// announced yet are withdrawn and their recipients' counters recounted, their
        /// friendships and requests are deleted, and the row stays as a tombstone whose
        /// name is [`tombstone_label`](super::tombstone_label): what they sent that was
        /// announced or read, their posts and their comments stay, shown under it. The id
        /// is never reused, and the name (and its look) is free again. A send naming them
        /// that commits after the removal is dropped ([`Stored::Dropped`]). `None` when
        /// there is no such user.
        fn remove_user(&self, name: &UserName, now: i64) -> Result<Option<Removal>>;

        /// The user's profile with their friend and post counts.
        fn profile(&self, user: UserId) -> Result<Option<Profile>>;

        /// Sets the fields given, keeps the others.
        fn update_profile(
            &self,
            user: UserId,
            display_name: Option<&str>,
            bio: Option<&str>,
            preview: Option<Preview>,
        ) -> Result<()>;
    }
}

interface! {
    /// The social graph: friendships (one row per direction) and friend requests. Two
    /// users' requests to each other are decided one at a time.
    pub trait Social {
        /// The user's friends, by name (byte order).
        fn friends(&self, user: UserId) -> Result<Vec<Friend>>;

        /// Names of users who asked `user` to be friends, in byte order.
        fn incoming_requests(&self, user: UserId) -> Result<Vec<String>>;

        /// Names of users `user` asked to be friends, in byte order.
        fn outgoing_requests(&self, user: UserId) -> Result<Vec<String>>;

        /// Whether `a` counts `b` as a friend.
        fn are_friends(&self, a: UserId, b: UserId) -> Result<bool>;

        /// `from` asks `to` to be friends; when `to` had asked first, they become friends.
        fn request_friend(&self, from: UserId, to: UserId, now: i64) -> Result<FriendRequestOutcome>;

        /// `user` accepts `from`'s request; false when there was none.
        fn accept_friend(&self, user: UserId, from: UserId, now: i64) -> Result<bool>;

        /// `user` declines `from`'s request; false when there was none.
        fn decline_friend(&self, user: UserId, from: UserId) -> Result<bool>;

        /// Ends a friendship or withdraws `user`'s own request; false when there was neither.
        fn remove_friend(&self, user: UserId, other: UserId) -> Result<bool>;
    }
}

interface! {
    /// Posts and their comments.
    pub trait Posts {
        /// The caller's and their friends' posts, newest first, with ids below `before`.
        fn feed(&self, user: UserId, before: Option<i64>, limit: usize) -> Result<Vec<Post>>;

        /// One post with its comment count.
        fn post(&self, id: PostId) -> Result<Option<Post>>;

        /// A post's comments, oldest first.
        fn comments(&self, post: PostId) -> Result<Vec<Comment>>;

        /// Adds a post, counting no limit (`seed`, tests).
        fn add_post(&self, author: UserId, body: &str, now: i64) -> Result<PostId>;

        /// Adds a comment, counting no limit, and returns it as [`Posts::comments`] shows it.
        fn add_comment(&self, post: PostId, author: UserId, body: &str, now: i64) -> Result<Comment>;

        /// Adds a post if `limits` and the author's `quota` (bytes of posts and comments)
        /// allow it, counting both in the insert's transaction; a refusal counts nothing.
        fn add_post_within(
            &self,
            author: UserId,
            body: &str,
            limits: &[Limit],
            quota: i64,
            now: i64,
        ) -> Result<Result<PostId, Refusal>>;

        /// Adds a comment if `limits` and the quota allow it, as [`Posts::add_post_within`];
        /// returns the new comment's id.
        fn add_comment_within(
            &self,
            post: PostId,
            author: UserId,
            body: &str,
            limits: &[Limit],
            quota: i64,
            now: i64,
        ) -> Result<Result<i64, Refusal>>;
    }
}

interface! {
    /// The mailbox: storing a sent message, listing, reading, marking read, deleting, and
    /// the claim that announces new messages (flips them to delivered as one batch). Every
    /// state change keeps the user's counters (`mailbox.new`, `mailbox.delivered`) in the
    /// same transaction.
    pub trait Mailboxes {
        /// The user's counters: one read, no write lock.
        fn counters(&self, user: UserId) -> Result<Counters>;

        /// The user's counters and batches: one read, no write lock; all zero when the
        /// user has no mailbox row.
        fn mailbox(&self, user: UserId) -> Result<Mailbox>;

        /// Records that a client showed batch `batch` and the ones before it; a batch that
        /// was never issued, or one already acknowledged, changes nothing.
        fn acknowledge(&self, user: UserId, batch: i64) -> Result<()>;

        /// Records that a client showed exactly the batches `shown` (not the ones before
        /// them): their delivered messages need no second announcement. When no delivered
        /// message of an unacknowledged batch is left, the watermark moves to the last batch,
        /// so later requests stop looking. Writes only when `shown` names a batch.
        fn acknowledge_shown(&self, user: UserId, shown: &[i64]) -> Result<()>;

        /// Flips the newest [`CLAIM_BATCH`](super::CLAIM_BATCH) (or `max_items`, if more)
        /// `new` messages of `user` to `delivered` in one write transaction, as one new
        /// batch, and returns the newest `max_items` of them with `prefix_chars` of their
        /// bodies. With [`Announce::NewAndUnacknowledged`] the delivered messages of
        /// batches nobody acknowledged join the batch too. Exactly once: two concurrent
        /// claims never announce the same message. Committed before it returns: the caller
        /// writes the response only afterwards.
        fn claim_new(
            &self,
            user: UserId,
            max_items: usize,
            prefix_chars: usize,
            announce: Announce,
            now: i64,
        ) -> Result<Claim>;

        /// The user's mailbox, newest first, ids below `before`, with `prefix_chars` of
        /// each body.
        fn list_messages(
            &self,
            user: UserId,
            filter: StateFilter,
            before: Option<i64>,
            limit: usize,
            prefix_chars: usize,
        ) -> Result<Vec<Summary>>;

        /// One message of the user's mailbox; `None` for another user's or a deleted one.
        fn message(&self, user: UserId, id: MessageId) -> Result<Option<Message>>;

        /// Marks one message read or deleted, keeping the counters; false when the user has
        /// no such message (another user's, deleted, or none).
        fn change(&self, user: UserId, id: MessageId, change: Change) -> Result<bool>;

        /// Marks every unread message of the user read; returns how many.
        fn mark_all_read(&self, user: UserId) -> Result<i64>;

        /// Stores a message unless its request id or (sender, idempotency key) was stored
        /// before, and counts it `new` for the recipient, in one write transaction.
        fn store_message(&self, m: &NewMessage) -> Result<Stored>;

        /// Stores many messages in one transaction (the queue's drain), as
        /// [`Mailboxes::store_message`] each.
        fn store_messages(&self, messages: &[NewMessage]) -> Result<Vec<Stored>>;

        /// The message a request id or (sender, idempotency key) already made, if any.
        fn stored_for(&self, request_id: &str, from: UserId, key: Option<&str>) -> Result<Option<MessageId>>;

        /// The message `sender` already stored under `key`, and its recipient.
        fn keyed_message(&self, sender: UserId, key: &str) -> Result<Option<(MessageId, UserId)>>;
    }
}

interface! {
    /// Limits: fixed-window counters (logins, sends, posts and comments), every limit of
    /// an action checked and counted in one write transaction before the action's work, so
    /// N parallel attempts admit at most `limit` of them, whatever N.
    pub trait Limits {
        /// Checks and counts every one of `limits` in one transaction: either all are below
        /// their limit and each counts one more event, or none counts and the answer is how
        /// long to wait.
        fn take_limits(&self, limits: &[Limit], now: i64) -> Result<Result<(), Refusal>>;

        /// Gives back one event counted against `key` in its current window (an attempt
        /// admitted before the work turned out not to be a failure).
        fn refund_limit(&self, key: &str) -> Result<()>;
    }
}

interface! {
    /// Sessions that can end (the generation and the ended sessions live in the `users`
    /// row a request reads anyway to know its user), and the addresses a name logged in
    /// from.
    pub trait Sessions {
        /// Whether `name` has logged in from `addr` before.
        fn known_login_address(&self, name: &UserName, addr: &str) -> Result<bool>;

        /// Remembers that `name` logged in from `addr`.
        fn remember_login_address(&self, name: &UserName, addr: &str, now: i64) -> Result<()>;

        /// The user with their session state, in the one query that identifies a request
        /// (a removed user is nobody: every cookie of theirs answers 401).
        fn session_user(&self, id: UserId) -> Result<Option<SessionUser>>;

        /// Ends the single session `id` (expiring at `expires`) of `user`. Entries past
        /// their expiry are dropped; when [`MAX_ENDED_SESSIONS`](super::MAX_ENDED_SESSIONS)
        /// are listed already, every session of the user ends instead.
        fn end_session(&self, user: UserId, id: &str, expires: i64, now: i64) -> Result<()>;

        /// Ends every session of `user` (logout everywhere, a new password, an
        /// administrator's revocation); false when there is no such user.
        fn end_all_sessions(&self, user: UserId) -> Result<bool>;
    }
}

interface! {
    /// Maintenance for `piggyback`: the integrity check and counter recount, the repair,
    /// checkpoints, and `seed`'s synthetic data.
    pub trait Maintenance {
        /// Integrity check and recount of every counter: the problems found, empty when sound.
        fn audit(&self) -> Result<Vec<String>>;

        /// Rewrites every counter from a recount (`piggyback check --repair`); returns how
        /// many mailbox rows.
        fn repair_counters(&self) -> Result<usize>;

        /// Moves the write-ahead log into the database and truncates it (nothing to do on a
        /// server, which checkpoints on its own).
        fn checkpoint(&self) -> Result<()>;

        /// Fills the database with synthetic data in large transactions (`piggyback seed`):
        /// 3 friends each way and one post per user, messages 80 % read, 10 % delivered,
        /// 5 % deleted, 5 % new.
        fn seed(&self, plan: &SeedPlan, now: i64) -> Result<SeedReport>;
    }
}
