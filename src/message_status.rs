//! The message status query module (消息状态查询模块): what is new for a user, flipped
//! to delivered, as the `site_messages` member every response carries.

use serde::Serialize;

use crate::config::{Config, EmptyPolicy};
use crate::http::Ack;
use crate::message_store::{Announce, Counters, Store, StoreError, Summary};
use crate::model::{MessageKind, Preview, User};
use crate::text;

/// The `site_messages` member (see docs/API.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SiteMessages {
    pub unread: i64,
    pub delivered: i64,
    pub new: i64,
    pub items: Vec<Item>,
    pub more: bool,
    /// The batch this response announces; a client acknowledges it with
    /// `X-Piggyback-Ack` on its next request. Absent when nothing is announced.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batch: Option<i64>,
    /// How many of `delivered` this response announces again, because the response
    /// that first announced them was never acknowledged. Absent when none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repeated: Option<i64>,
    /// Messages still `new` that this answer does not announce: more than one answer
    /// announces (a claim flips at most `CLAIM_BATCH` or `max_items`, whichever is
    /// larger), or a request from another site, which announces nothing. Later answers
    /// announce them. Absent when none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waiting: Option<i64>,
}

/// Whether a request may announce (and so flip) messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Announcing {
    /// Announce what is new, record the client's acknowledgement.
    Claim,
    /// Report the counts only, write nothing: a request from another site, which the
    /// user did not make on this site's page and whose answer nobody here will show.
    CountsOnly,
}

/// One announced message, as a toast shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Item {
    pub id: i64,
    pub from: String,
    pub subject: String,
    pub snippet: String,
    pub sent_at: String,
    pub kind: MessageKind,
    /// Announced before by a response that was never acknowledged.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub repeat: bool,
}

impl Item {
    /// The summary as `preview` allows it to be shown.
    pub fn from_summary(s: &Summary, snippet_chars: usize, preview: Preview) -> Item {
        Item {
            id: s.id.0,
            from: s.from.clone(),
            subject: match preview {
                Preview::Sender => String::new(),
                Preview::Full | Preview::Subject => s.subject.clone(),
            },
            snippet: match preview {
                Preview::Full => text::snippet_of_prefix(&s.body_prefix, s.body_truncated, snippet_chars),
                Preview::Subject | Preview::Sender => String::new(),
            },
            sent_at: s.sent_at.clone(),
            kind: s.kind,
            repeat: false,
        }
    }
}

/// Characters of a body to read for a snippet of `snippet_chars`: more than the
/// snippet, since folding whitespace shortens the text.
pub fn prefix_chars(snippet_chars: usize) -> usize {
    snippet_chars * 2 + 16
}

/// Claims `user`'s new messages at `now` and announces them, after recording the
/// client's acknowledgement `ack` of an earlier batch. Takes the write lock only when there is
/// something to write: new messages, a batch to acknowledge, or (for a client that
/// acknowledges) a batch unacknowledged past the lease to announce again. The common
/// request only reads one row.
/// `None` when nothing is unread and the configuration says to omit the member.
pub fn claim(
    store: &Store,
    user: &User,
    ack: Option<&Ack>,
    config: &Config,
    now: i64,
    announcing: Announcing,
) -> Result<Option<SiteMessages>, StoreError> {
    let (preview, user) = (user.preview, user.id);
    let mut mailbox = store.mailbox(user)?;
    if announcing == Announcing::CountsOnly {
        let Counters { new, delivered } = mailbox.counters;
        return Ok(SiteMessages::of(config, delivered, Announced::default(), new));
    }
    match ack {
        Some(&Ack::UpTo(batch)) if batch > mailbox.acked && batch <= mailbox.batch => {
            store.acknowledge(user, batch)?;
            mailbox.acked = batch;
        }
        Some(Ack::Shown(shown)) if shown.iter().any(|&b| b > mailbox.acked && b <= mailbox.batch) => {
            store.acknowledge_shown(user, shown)?;
            mailbox = store.mailbox(user)?;
        }
        _ => {}
    }
    let announce = if ack.is_some() && mailbox.unacknowledged_since(now, config.ack_lease_secs) {
        Announce::NewAndUnacknowledged
    } else {
        Announce::New
    };
    let counters = mailbox.counters;
    if counters.new == 0 && announce == Announce::New {
        return Ok(SiteMessages::of(config, counters.delivered, Announced::default(), 0));
    }
    let claim = store.claim_new(user, config.max_items, prefix_chars(config.snippet_chars), announce, now)?;
    let item = |s: &Summary| Item::from_summary(s, config.snippet_chars, preview);
    let mut items: Vec<Item> = claim.items.iter().map(item).collect();
    items.extend(claim.repeats.iter().map(|s| Item { repeat: true, ..item(s) }));
    let announced = Announced { new: claim.flipped, items, batch: claim.batch, repeated: claim.repeated };
    // A claim flips a bounded batch: what it left stays `new` for the next answers.
    Ok(SiteMessages::of(config, claim.after.delivered - claim.flipped, announced, claim.after.new))
}

/// What one answer announces: for most answers, nothing.
#[derive(Debug, Default)]
struct Announced {
    /// Messages flipped from `new` to `delivered` by this answer.
    new: i64,
    items: Vec<Item>,
    /// The batch issued (0: none).
    batch: i64,
    /// Delivered messages of unacknowledged batches announced again.
    repeated: i64,
}

impl SiteMessages {
    /// The one place the member is made, with the rule that omits an empty one:
    /// `delivered` messages announced before and still unread, what this answer
    /// `announced`, and `waiting` messages still new that it leaves to later answers.
    /// `None` when nothing is unread and the configuration omits the empty member.
    fn of(config: &Config, delivered: i64, announced: Announced, waiting: i64) -> Option<SiteMessages> {
        let unread = delivered + announced.new + waiting;
        if unread == 0 && config.empty == EmptyPolicy::Omit {
            return None;
        }
        Some(SiteMessages {
            unread,
            delivered,
            new: announced.new,
            more: announced.new + announced.repeated > announced.items.len() as i64,
            items: announced.items,
            batch: (announced.batch > 0).then_some(announced.batch),
            repeated: (announced.repeated > 0).then_some(announced.repeated),
            waiting: (waiting > 0).then_some(waiting),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    use crate::model::{Change, MessageId, NewMessage, UserId};

    /// When the fixture's requests happen.
    const START: i64 = 1_700_000_000;

    struct Fixture {
        _dir: tempfile::TempDir,
        store: Store,
        /// The time of the next request.
        clock: Cell<i64>,
        alice: UserId,
        bob: UserId,
        config: Config,
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("pb.db");
        let store = Store::init(&db).unwrap();
        let alice =
            store.add_user(&crate::names::UserName::parse("alice").unwrap(), "Alice", None, START).unwrap().unwrap();
        let bob = store.add_user(&crate::names::UserName::parse("bob").unwrap(), "Bob", None, START).unwrap().unwrap();
        let config = Config::for_db(db);
        Fixture { _dir: dir, store, clock: Cell::new(START), alice, bob, config }
    }

    impl Fixture {
        fn send(&self, n: i64) -> MessageId {
            self.store
                .store_message(&NewMessage {
                    request_id: format!("r{n}"),
                    from: self.bob,
                    to: self.alice,
                    subject: format!("s{n}"),
                    body: "明天中午一起吃饭吗？".repeat(10),
                    kind: MessageKind::Note,
                    idempotency_key: None,
                    sent_at: START + n,
                })
                .unwrap()
                .id()
                .unwrap()
        }

        fn claim(&self, ack: Option<Ack>) -> SiteMessages {
            let user = self.store.user_by_id(self.alice).unwrap().unwrap();
            claim(&self.store, &user, ack.as_ref(), &self.config, self.clock.get(), Announcing::Claim).unwrap().unwrap()
        }

        /// Moves the clock on, past any lease.
        fn age(&self) {
            self.clock.set(self.clock.get() + 100_000);
        }
    }

    #[test]
    fn announces_once_then_counts_delivered() {
        let f = fixture();
        f.send(1);
        f.send(2);
        let first = f.claim(None);
        assert_eq!((first.new, first.delivered, first.unread), (2, 0, 2));
        assert_eq!(first.items.iter().map(|i| i.subject.as_str()).collect::<Vec<_>>(), ["s2", "s1"]);
        assert_eq!(first.batch, Some(1));
        assert_eq!(first.items[0].snippet.chars().count(), 61, "60 characters and the ellipsis");
        let second = f.claim(None);
        assert_eq!((second.new, second.delivered, second.unread), (0, 2, 2));
        assert!(second.items.is_empty());
        assert_eq!(second.batch, None);
    }

    #[test]
    fn counts_only_announces_nothing_and_names_only_what_waits() {
        let mut f = fixture();
        let user = f.store.user_by_id(f.alice).unwrap().unwrap();
        let counts =
            |f: &Fixture| claim(&f.store, &user, None, &f.config, f.clock.get(), Announcing::CountsOnly).unwrap();
        let nothing = counts(&f).unwrap();
        assert_eq!((nothing.unread, nothing.waiting), (0, None), "nothing waits: no `waiting` member");
        f.send(1);
        let one = counts(&f).unwrap();
        assert_eq!((one.unread, one.new, one.waiting, one.batch), (1, 0, Some(1), None));
        assert_eq!(f.store.mailbox(f.alice).unwrap().counters.new, 1, "still new: nothing was announced");
        f.store.mark_all_read(f.alice).unwrap();
        f.config.empty = EmptyPolicy::Omit;
        assert_eq!(counts(&f), None, "nothing unread, and the configuration omits the empty member");
    }

    #[test]
    fn the_users_preview_choice_hides_subject_and_snippet() {
        let f = fixture();
        f.store.update_profile(f.alice, None, None, Some(Preview::Sender)).unwrap();
        f.send(1);
        let site = f.claim(None);
        assert_eq!(
            (site.items[0].from.as_str(), site.items[0].subject.as_str(), site.items[0].snippet.as_str()),
            ("bob", "", "")
        );
    }

    #[test]
    fn max_items_and_more() {
        let mut f = fixture();
        f.config.max_items = 2;
        for n in 1..=5 {
            f.send(n);
        }
        let site = f.claim(None);
        assert_eq!((site.new, site.items.len(), site.more), (5, 2, true));
    }

    #[test]
    fn unacknowledged_batches_are_announced_again_to_acknowledging_clients_only() {
        let f = fixture();
        f.send(1);
        let first = f.claim(Some(Ack::UpTo(0)));
        assert_eq!(first.batch, Some(1));
        f.age();
        assert_eq!(f.claim(None).repeated, None, "a client without the header never gets repeats");
        let again = f.claim(Some(Ack::UpTo(0)));
        assert_eq!(again.repeated, Some(1));
        assert_eq!((again.new, again.delivered), (0, 1));
        assert!(again.items[0].repeat);
        let batch = again.batch.unwrap();
        f.age();
        let acked = f.claim(Some(Ack::UpTo(batch)));
        assert_eq!((acked.repeated, acked.items.len()), (None, 0), "acknowledged: nothing again");
    }

    #[test]
    fn read_messages_are_not_announced_again_and_the_search_stops() {
        let f = fixture();
        let id = f.send(1);
        f.claim(Some(Ack::UpTo(0)));
        f.store.change(f.alice, id, Change::MarkRead).unwrap();
        f.age();
        let site = f.claim(Some(Ack::UpTo(0)));
        assert_eq!((site.repeated, site.unread), (None, 0));
        let mailbox = f.store.mailbox(f.alice).unwrap();
        assert_eq!(mailbox.acked, mailbox.batch, "no batch is left waiting, so no request writes again");
    }

    #[test]
    fn a_lost_answer_is_announced_again_when_a_later_one_is_acknowledged_by_name() {
        let f = fixture();
        let lost = f.send(1);
        assert_eq!(f.claim(Some(Ack::Shown(vec![]))).batch, Some(1), "this answer never arrives");
        f.send(2);
        let shown = f.claim(Some(Ack::Shown(vec![]))).batch.unwrap();
        f.claim(Some(Ack::Shown(vec![shown])));
        f.age();
        let again = f.claim(Some(Ack::Shown(vec![])));
        assert_eq!(again.items.iter().map(|i| (i.id, i.repeat)).collect::<Vec<_>>(), [(lost.0, true)]);
        f.claim(Some(Ack::Shown(vec![again.batch.unwrap()])));
        f.age();
        let after = f.claim(Some(Ack::Shown(vec![])));
        assert_eq!((after.repeated, after.items.len()), (None, 0), "both shown: nothing again");
        let mailbox = f.store.mailbox(f.alice).unwrap();
        assert_eq!(mailbox.acked, mailbox.batch, "nothing waits, so no request writes again");
    }

    #[test]
    fn the_first_form_acknowledges_every_earlier_batch_too() {
        let f = fixture();
        f.send(1);
        f.claim(Some(Ack::UpTo(0)));
        f.send(2);
        let shown = f.claim(Some(Ack::UpTo(0))).batch.unwrap();
        f.claim(Some(Ack::UpTo(shown)));
        f.age();
        assert_eq!(f.claim(Some(Ack::UpTo(shown))).repeated, None, "batch 1 counts as shown");
    }

    #[test]
    fn the_watermark_moves_past_only_batches_all_named() {
        assert_eq!(Ack::UpTo(5).watermark(2, 6), 5);
        assert_eq!(Ack::UpTo(9).watermark(2, 6), 2, "a batch never issued");
        assert_eq!(Ack::Shown(vec![3, 4, 5, 6]).watermark(2, 6), 6);
        assert_eq!(Ack::Shown(vec![4, 5, 6]).watermark(2, 6), 2, "batch 3 may be a lost answer");
        assert_eq!(Ack::Shown(vec![]).watermark(2, 2), 2);
    }

    #[test]
    fn ack_header_forms() {
        assert_eq!(Ack::parse(""), Some(Ack::UpTo(0)));
        assert_eq!(Ack::parse(" 7 "), Some(Ack::UpTo(7)));
        assert_eq!(Ack::parse("shown="), Some(Ack::Shown(vec![])));
        assert_eq!(Ack::parse("shown=3, 5"), Some(Ack::Shown(vec![3, 5])));
        for bad in ["-1", "x", "shown=1,,2", "shown=a", "1,2", &format!("shown={}", vec!["1"; 65].join(","))] {
            assert_eq!(Ack::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn an_acknowledgement_of_a_batch_never_issued_changes_nothing() {
        let f = fixture();
        f.send(1);
        f.claim(Some(Ack::UpTo(0)));
        f.claim(Some(Ack::UpTo(99)));
        assert_eq!(f.store.mailbox(f.alice).unwrap().acked, 0);
    }
}
