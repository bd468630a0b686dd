//! The message status query module (消息状态查询模块): what is new for a user, flipped
//! to delivered, as the `site_messages` member every response carries.

use serde::Serialize;

use crate::config::{Config, EmptyPolicy};
use crate::message_store::{StoreError, Summary, UserId};
use crate::msq::Queue;
use crate::text;

/// The `site_messages` member (see docs/API.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SiteMessages {
    pub unread: i64,
    pub delivered: i64,
    pub new: i64,
    pub items: Vec<Item>,
    pub more: bool,
}

/// One announced message, as a toast shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Item {
    pub id: i64,
    pub from: String,
    pub subject: String,
    pub snippet: String,
    pub sent_at: String,
    pub kind: String,
}

impl Item {
    pub fn from_summary(s: &Summary, snippet_chars: usize) -> Item {
        Item {
            id: s.id.0,
            from: s.from.clone(),
            subject: s.subject.clone(),
            snippet: text::snippet_of_prefix(&s.body_prefix, s.body_truncated, snippet_chars),
            sent_at: s.sent_at.clone(),
            kind: s.kind.clone(),
        }
    }
}

/// Characters of a body to read for a snippet of `snippet_chars`: more than the
/// snippet, since folding whitespace shortens the text.
pub fn prefix_chars(snippet_chars: usize) -> usize {
    snippet_chars * 2 + 16
}

/// Checks `user`'s messages and announces what is new. Takes the write lock only when
/// the counters say something is `new`; the common request only reads one row.
/// `None` when nothing is unread and the configuration says to omit the member.
pub fn check(queue: &Queue<'_>, user: UserId, config: &Config) -> Result<Option<SiteMessages>, StoreError> {
    let counters = queue.counters(user)?;
    let site = if counters.new == 0 {
        SiteMessages {
            unread: counters.delivered,
            delivered: counters.delivered,
            new: 0,
            items: Vec::new(),
            more: false,
        }
    } else {
        let claim = queue.claim(user, config.max_items, prefix_chars(config.snippet_chars))?;
        let items: Vec<Item> = claim.items.iter().map(|s| Item::from_summary(s, config.snippet_chars)).collect();
        let delivered = claim.after.delivered - claim.flipped;
        SiteMessages {
            // Anything that arrived after the flip stays `new` for the next response.
            unread: delivered + claim.flipped,
            delivered,
            new: claim.flipped,
            more: claim.flipped > items.len() as i64,
            items,
        }
    };
    if site.unread == 0 && config.empty == EmptyPolicy::Omit {
        return Ok(None);
    }
    Ok(Some(site))
}
