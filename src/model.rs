//! The values every layer shares: ids, users, what a message is and its state.
//! No SQL, no I/O: the request values (`http`, `identity`) and the handlers name these
//! without knowing the store.

/// A user's id in the message database.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct UserId(pub i64);

/// A message's id in the message database.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MessageId(pub i64);

/// A post's id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PostId(pub i64);

/// A user as a request sees them: who they are and what their announcements may show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: UserId,
    pub name: String,
    pub display_name: String,
    pub preview: Preview,
}

/// What announcements may show of a message: a user's privacy choice, for screens
/// other people can see.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Preview {
    /// Sender, subject and snippet.
    #[default]
    Full,
    /// Sender and subject.
    Subject,
    /// The sender only.
    Sender,
}

impl Preview {
    pub fn as_str(self) -> &'static str {
        match self {
            Preview::Full => "full",
            Preview::Subject => "subject",
            Preview::Sender => "sender",
        }
    }

    pub fn parse(s: &str) -> Option<Preview> {
        Some(match s {
            "full" => Preview::Full,
            "subject" => Preview::Subject,
            "sender" => Preview::Sender,
            _ => return None,
        })
    }
}

/// A message's state for its recipient (the contract's table).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageState {
    New,
    Delivered,
    Read,
    Deleted,
}

impl MessageState {
    pub fn as_str(self) -> &'static str {
        match self {
            MessageState::New => "new",
            MessageState::Delivered => "delivered",
            MessageState::Read => "read",
            MessageState::Deleted => "deleted",
        }
    }

    pub fn parse(s: &str) -> Option<MessageState> {
        Some(match s {
            "new" => MessageState::New,
            "delivered" => MessageState::Delivered,
            "read" => MessageState::Read,
            "deleted" => MessageState::Deleted,
            _ => return None,
        })
    }
}

/// What a message is: a person's note, or a notice the site sends for an action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageKind {
    Note,
    FriendRequest,
    FriendAccept,
    Comment,
}

impl MessageKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MessageKind::Note => "note",
            MessageKind::FriendRequest => "friend_request",
            MessageKind::FriendAccept => "friend_accept",
            MessageKind::Comment => "comment",
        }
    }

    pub fn parse(s: &str) -> Option<MessageKind> {
        Some(match s {
            "note" => MessageKind::Note,
            "friend_request" => MessageKind::FriendRequest,
            "friend_accept" => MessageKind::FriendAccept,
            "comment" => MessageKind::Comment,
            _ => return None,
        })
    }
}

/// A state change on one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    MarkRead,
    Delete,
}

impl Change {
    /// The state the message is in afterwards.
    pub fn target(self) -> MessageState {
        match self {
            Change::MarkRead => MessageState::Read,
            Change::Delete => MessageState::Deleted,
        }
    }
}

/// A message to send: the one record from the request that sends it, through the
/// spool's request file (as JSON), to the row the store inserts.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewMessage {
    /// Unique per request; a replay of the same request is a no-op.
    pub request_id: String,
    pub from: UserId,
    pub to: UserId,
    pub subject: String,
    pub body: String,
    /// `note` for a person's message; `friend_request`, `friend_accept`, `comment` for
    /// the site's own notices.
    pub kind: MessageKind,
    /// The sender's key: the same key never makes a second message.
    pub idempotency_key: Option<String>,
    /// Unix seconds when it was sent (accepted), not when it was stored.
    pub sent_at: i64,
}

/// Unix seconds now: read once per request by the gateway (and per command by
/// `piggyback`), then passed down as the request's `now`.
pub fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}
