//! The values the store's interface takes and returns, the same for every engine:
//! what a request, a handler or `piggyback` holds after a call, with no engine type
//! in them.

use crate::model::{MessageId, MessageKind, MessageState, PostId, Preview, User, UserId};

// Users.

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

/// What `piggyback user list` and `user show` print of a user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub id: UserId,
    pub name: String,
    pub display_name: String,
    pub joined_at: String,
    /// Unread messages not yet announced, and announced but unread (the counters).
    pub new: i64,
    pub delivered: i64,
    pub friends: i64,
    pub posts: i64,
    /// Messages this user sent.
    pub sent: i64,
}

/// Why a name cannot be given to a user (`add_user`, `rename_user`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameTaken {
    /// Another user has this very name.
    Exact,
    /// Another user's name looks the same (the same UTS #39 skeleton): that name.
    LookAlike(String),
}

/// What `remove_user` did, for `piggyback user remove` to print.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Removal {
    pub id: UserId,
    /// The label their kept messages, posts and comments now show (no name can be it).
    pub label: String,
    /// Messages they had received, deleted.
    pub received: i64,
    /// Messages they sent that were not announced yet, withdrawn (deleted).
    pub withdrawn: i64,
    /// Messages they sent that were announced or read, kept under the label.
    pub kept: i64,
    /// Friendships and friend requests (either way), deleted.
    pub friendships: i64,
    pub requests: i64,
    /// Posts and comments they wrote, kept under the label.
    pub posts: i64,
    pub comments: i64,
}

impl Removal {
    /// Nothing counted yet.
    pub fn of(id: UserId) -> Removal {
        Removal {
            id,
            label: tombstone_label(id),
            received: 0,
            withdrawn: 0,
            kept: 0,
            friendships: 0,
            requests: 0,
            posts: 0,
            comments: 0,
        }
    }
}

/// The tombstone label of removed user `id`: a space and `#` make it a name that
/// [`UserName::parse`](crate::names::UserName::parse) refuses, so no login, `REMOTE_USER` or new user can take it.
pub fn tombstone_label(id: UserId) -> String {
    format!("removed user #{}", id.0)
}

// The social graph.

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Friend {
    pub name: String,
    pub display_name: String,
    pub since: String,
}

/// Outcome of a friend request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FriendRequestOutcome {
    Requested,
    /// The other user had asked first: now friends.
    Accepted,
    AlreadyRequested,
    AlreadyFriends,
    /// One of the two was removed (`piggyback user remove`) after the request was
    /// checked: nothing was asked.
    Removed,
}

// Posts and comments.

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

// The mailbox and the claim.

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
    pub(crate) fn states(self) -> [&'static str; 3] {
        match self {
            StateFilter::All => ["new", "delivered", "read"],
            StateFilter::Unread => ["new", "delivered", "delivered"],
            StateFilter::Only(s) => [s.as_str(); 3],
        }
    }
}

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

/// What storing a message did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    /// Stored now, and counted `new` for the recipient.
    Inserted(MessageId),
    /// Stored before: the same request id, or the sender's same idempotency key.
    Already(MessageId),
    /// Not stored: the sender or the recipient has been removed (`user remove`) since
    /// the send was accepted. The queue drops it with a log line.
    Dropped,
}

impl Stored {
    pub fn inserted(&self) -> bool {
        matches!(self, Stored::Inserted(_))
    }

    /// The message, unless it was dropped.
    pub fn id(&self) -> Option<MessageId> {
        match *self {
            Stored::Inserted(id) | Stored::Already(id) => Some(id),
            Stored::Dropped => None,
        }
    }
}

/// Most messages one claim flips (or announces again): a flood of any size costs the
/// victim's next request, and the write lock, no more than this many rows. Measured in
/// docs/PERFORMANCE.md (scripts/bench-claim).
pub const CLAIM_BATCH: usize = 100;

// Limits.

/// One limit of an action: at most `limit` events per `window` seconds under `key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limit {
    pub key: String,
    pub limit: u32,
    pub window: i64,
}

impl Limit {
    pub fn new(key: impl Into<String>, limit: u32, window: i64) -> Limit {
        Limit { key: key.into(), limit, window }
    }
}

/// Why an action was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// A limit is reached: seconds until its window ends.
    Wait(i64),
    /// The author's posts and comments would exceed the quota.
    OverQuota,
    /// The author was removed (`piggyback user remove`) after the request was checked.
    Removed,
}

// Sessions.

/// A user with the session state a request checks its cookie against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionUser {
    pub user: User,
    pub generation: i64,
    /// `<session id>:<expires>` of single sessions ended early, space-separated.
    pub ended: String,
}

impl SessionUser {
    /// Whether the single session `id` was ended.
    pub fn has_ended(&self, id: &str) -> bool {
        self.ended.split(' ').any(|e| e.split(':').next() == Some(id))
    }
}

/// Most single sessions remembered as ended; past that, ending one ends them all.
pub const MAX_ENDED_SESSIONS: usize = 64;

// Maintenance.

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
