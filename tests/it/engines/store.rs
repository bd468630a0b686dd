//! The store's calls, on a real temporary database.

use crate::support::{Raw, TestDb};
use piggyback::message_store::{Announce, Counters, FriendRequestOutcome, NameTaken, SeedPlan, StateFilter, Store};
use piggyback::model::{Change, MessageId, MessageState, NewMessage, UserId};
use tempfile::TempDir;

struct Db {
    store: Store,
    path: std::path::PathBuf,
    test_db: TestDb,
    _dir: TempDir,
}

impl Db {
    /// A new database on the engine under test (see `support::postgres_base`).
    fn new() -> Db {
        let dir = tempfile::tempdir().unwrap();
        let test_db = TestDb::new(dir.path());
        let path = test_db.path.clone();
        let store = Store::init(&path).unwrap();
        Db { store, path, test_db, _dir: dir }
    }

    fn user(&self, name: &str) -> UserId {
        self.store
            .add_user(&crate::support::uname(name), &name.to_uppercase(), None, piggyback::model::now())
            .unwrap()
            .expect("a new name")
    }

    fn send(&self, from: UserId, to: UserId, subject: &str) -> MessageId {
        let stored = self.store.store_message(&message(from, to, subject, None)).unwrap();
        assert!(stored.inserted());
        stored.id().unwrap()
    }

    fn raw(&self) -> Raw {
        Raw::open(&self.path)
    }

    fn state(&self, id: MessageId) -> String {
        self.raw().text(&format!("SELECT state FROM messages WHERE id = {}", id.0))
    }

    fn counters(&self, user: UserId) -> Counters {
        self.store.counters(user).unwrap()
    }

    fn assert_sound(&self) {
        assert_eq!(self.store.audit().unwrap(), Vec::<String>::new());
    }
}

fn message(from: UserId, to: UserId, subject: &str, key: Option<&str>) -> NewMessage {
    NewMessage {
        request_id: piggyback::msq::new_request_id(),
        from,
        to,
        subject: subject.into(),
        body: format!("body of {subject}"),
        kind: piggyback::model::MessageKind::Note,
        idempotency_key: key.map(str::to_owned),
        sent_at: 1_700_000_000,
    }
}

fn counters(new: i64, delivered: i64) -> Counters {
    Counters { new, delivered }
}

#[test]
fn init_is_idempotent_and_keeps_data() {
    let db = Db::new();
    let alice = db.user("alice");
    db.send(alice, alice, "to myself");
    drop(Store::init(&db.path).unwrap());
    let again = Store::init(&db.path).unwrap();
    assert_eq!(again.user_by_name(&crate::support::uname("alice")).unwrap().unwrap().id, alice);
    assert_eq!(again.counters(alice).unwrap(), counters(1, 0));
    let raw = db.raw();
    if !db.test_db.is_postgres() {
        assert_eq!(raw.text("PRAGMA journal_mode"), "wal");
    }
    assert_eq!(raw.schema_version(), piggyback::message_store::SCHEMA_VERSION);
    db.assert_sound();
}

#[test]
fn open_refuses_a_missing_file_and_another_schema_version() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.db");
    assert!(Store::open(&missing).is_err());
    assert!(!missing.exists(), "open never creates the database");
    let db = Db::new();
    if crate::support::postgres_only(db.test_db.is_postgres(), "a PostgreSQL database without the schema") {
        let no_schema = TestDb::new(dir.path());
        match Store::open(&no_schema.path) {
            Err(piggyback::message_store::StoreError::Schema { found: 0 }) => {}
            other => panic!("expected a schema error, got {:?}", other.err()),
        }
    }
    db.raw().set_schema_version(99);
    match Store::open(&db.path) {
        Err(piggyback::message_store::StoreError::Schema { found: 99 }) => {}
        other => panic!("expected a schema error, got {:?}", other.err()),
    }
}

#[test]
fn add_user_makes_an_empty_mailbox_and_refuses_a_taken_name() {
    let db = Db::new();
    let alice = db.user("alice");
    assert_eq!(db.counters(alice), counters(0, 0));
    assert_eq!(
        db.store.add_user(&crate::support::uname("alice"), "Other", None, piggyback::model::now()).unwrap(),
        Err(NameTaken::Exact)
    );
    let user = db.store.user_by_id(alice).unwrap().unwrap();
    assert_eq!((user.name.as_str(), user.display_name.as_str()), ("alice", "ALICE"));
    db.assert_sound();
}

#[test]
fn store_message_counts_it_new() {
    let db = Db::new();
    let (alice, bob) = (db.user("alice"), db.user("bob"));
    db.send(alice, bob, "one");
    db.send(alice, bob, "two");
    assert_eq!(db.counters(bob), counters(2, 0));
    assert_eq!(db.counters(alice), counters(0, 0));
    db.assert_sound();
}

#[test]
fn claim_flips_every_new_message_and_returns_the_newest_first() {
    let db = Db::new();
    let (alice, bob) = (db.user("alice"), db.user("bob"));
    let ids: Vec<MessageId> = (0..5).map(|i| db.send(alice, bob, &format!("m{i}"))).collect();
    let claim = db.store.claim_new(bob, 3, 100, Announce::New, piggyback::model::now()).unwrap();
    assert_eq!(claim.flipped, 5);
    let got: Vec<MessageId> = claim.items.iter().map(|s| s.id).collect();
    assert_eq!(got, vec![ids[4], ids[3], ids[2]]);
    assert_eq!(claim.after, counters(0, 5));
    let first = &claim.items[0];
    assert_eq!((first.from.as_str(), first.subject.as_str()), ("alice", "m4"));
    assert_eq!((first.body_prefix.as_str(), first.body_truncated), ("body of m4", false));
    assert_eq!(first.state, MessageState::Delivered);
    for id in ids {
        assert_eq!(db.state(id), "delivered");
    }
    assert_eq!(db.counters(bob), counters(0, 5));
    db.assert_sound();
}

#[test]
fn claim_reads_a_body_prefix_of_characters_and_says_when_it_was_cut() {
    let db = Db::new();
    let alice = db.user("alice");
    let mut m = message(alice, alice, "长", None);
    m.body = "明天中午一起吃饭吗".into();
    db.store.store_message(&m).unwrap();
    let claim = db.store.claim_new(alice, 10, 4, Announce::New, piggyback::model::now()).unwrap();
    assert_eq!(claim.items[0].body_prefix, "明天中午");
    assert!(claim.items[0].body_truncated);
}

#[test]
fn claim_with_nothing_new_flips_nothing() {
    let db = Db::new();
    let (alice, bob) = (db.user("alice"), db.user("bob"));
    let claim = db.store.claim_new(bob, 20, 100, Announce::New, piggyback::model::now()).unwrap();
    assert_eq!((claim.flipped, claim.items.len(), claim.after), (0, 0, counters(0, 0)));
    db.send(alice, bob, "once");
    assert_eq!(db.store.claim_new(bob, 20, 100, Announce::New, piggyback::model::now()).unwrap().flipped, 1);
    let second = db.store.claim_new(bob, 20, 100, Announce::New, piggyback::model::now()).unwrap();
    assert_eq!((second.flipped, second.items.len(), second.after), (0, 0, counters(0, 1)));
    db.assert_sound();
}

#[test]
fn claim_touches_only_the_claimers_mailbox() {
    let db = Db::new();
    let (alice, bob) = (db.user("alice"), db.user("bob"));
    let to_alice = db.send(bob, alice, "for alice");
    db.send(alice, bob, "for bob");
    assert_eq!(db.store.claim_new(bob, 20, 100, Announce::New, piggyback::model::now()).unwrap().flipped, 1);
    assert_eq!(db.state(to_alice), "new");
    assert_eq!(db.counters(alice), counters(1, 0));
}

#[test]
fn change_moves_each_state_and_keeps_the_counters() {
    let db = Db::new();
    let (alice, bob) = (db.user("alice"), db.user("bob"));
    let delivered_then_read = db.send(alice, bob, "a");
    let delivered_then_deleted = db.send(alice, bob, "b");
    db.store.claim_new(bob, 20, 100, Announce::New, piggyback::model::now()).unwrap();
    let new_then_read = db.send(alice, bob, "c");
    let new_then_deleted = db.send(alice, bob, "d");
    assert_eq!(db.counters(bob), counters(2, 2));

    assert!(db.store.change(bob, new_then_read, Change::MarkRead).unwrap());
    assert_eq!(db.counters(bob), counters(1, 2));
    assert!(db.store.change(bob, new_then_deleted, Change::Delete).unwrap());
    assert_eq!(db.counters(bob), counters(0, 2));
    assert!(db.store.change(bob, delivered_then_read, Change::MarkRead).unwrap());
    assert_eq!(db.counters(bob), counters(0, 1));
    assert!(db.store.change(bob, delivered_then_deleted, Change::Delete).unwrap());
    assert_eq!(db.counters(bob), counters(0, 0));
    db.assert_sound();

    // Read again: still there, nothing to count; read then deleted: gone.
    assert!(db.store.change(bob, delivered_then_read, Change::MarkRead).unwrap());
    assert!(db.store.change(bob, delivered_then_read, Change::Delete).unwrap());
    assert_eq!(db.state(delivered_then_read), "deleted");
    assert_eq!(db.counters(bob), counters(0, 0));
    // A deleted message is no longer there to change.
    assert!(!db.store.change(bob, delivered_then_read, Change::MarkRead).unwrap());
    assert!(!db.store.change(bob, delivered_then_read, Change::Delete).unwrap());
    assert_eq!(db.state(delivered_then_read), "deleted");
    db.assert_sound();
}

#[test]
fn change_of_another_users_or_a_missing_message_is_false_and_changes_nothing() {
    let db = Db::new();
    let (alice, bob, carol) = (db.user("alice"), db.user("bob"), db.user("carol"));
    let to_bob = db.send(alice, bob, "private");
    for change in [Change::MarkRead, Change::Delete] {
        assert!(!db.store.change(carol, to_bob, change).unwrap());
        assert!(!db.store.change(alice, to_bob, change).unwrap(), "the sender does not own it either");
        assert!(!db.store.change(bob, MessageId(9999), change).unwrap());
    }
    assert_eq!(db.state(to_bob), "new");
    assert_eq!(db.counters(bob), counters(1, 0));
    assert!(db.store.message(carol, to_bob).unwrap().is_none());
    assert_eq!(db.store.message(bob, to_bob).unwrap().unwrap().subject, "private");
    db.assert_sound();
}

#[test]
fn mark_all_read_reads_new_and_delivered_and_zeroes_the_counters() {
    let db = Db::new();
    let (alice, bob) = (db.user("alice"), db.user("bob"));
    let read_before = db.send(alice, bob, "a");
    db.store.change(bob, read_before, Change::MarkRead).unwrap();
    db.send(alice, bob, "b");
    db.store.claim_new(bob, 20, 100, Announce::New, piggyback::model::now()).unwrap();
    db.send(alice, bob, "c");
    let to_alice = db.send(bob, alice, "d");
    assert_eq!(db.store.mark_all_read(bob).unwrap(), 2);
    assert_eq!(db.counters(bob), counters(0, 0));
    assert_eq!(db.state(to_alice), "new");
    assert_eq!(db.store.mark_all_read(bob).unwrap(), 0);
    let unread = db.store.list_messages(bob, StateFilter::Unread, None, 10, 10).unwrap();
    assert!(unread.is_empty());
    assert_eq!(db.store.list_messages(bob, StateFilter::All, None, 10, 10).unwrap().len(), 3);
    db.assert_sound();
}

#[test]
fn replaying_a_request_id_stores_nothing_new() {
    let db = Db::new();
    let (alice, bob) = (db.user("alice"), db.user("bob"));
    let m = message(alice, bob, "once", None);
    let first = db.store.store_message(&m).unwrap();
    let again = db.store.store_message(&m).unwrap();
    assert!(first.inserted() && !again.inserted());
    assert_eq!(again.id(), first.id());
    assert_eq!(db.counters(bob), counters(1, 0));
    assert_eq!(db.store.stored_for(&m.request_id, alice, None).unwrap(), first.id());
    db.assert_sound();
}

#[test]
fn an_idempotency_key_makes_one_message_per_sender() {
    let db = Db::new();
    let (alice, bob, carol) = (db.user("alice"), db.user("bob"), db.user("carol"));
    let first = db.store.store_message(&message(alice, bob, "k", Some("key-1"))).unwrap();
    let again = db.store.store_message(&message(alice, bob, "k again", Some("key-1"))).unwrap();
    assert!(!again.inserted());
    assert_eq!(again.id(), first.id());
    // Another sender may use the same key; no key never deduplicates.
    assert!(db.store.store_message(&message(carol, bob, "k", Some("key-1"))).unwrap().inserted());
    assert!(db.store.store_message(&message(alice, bob, "n", None)).unwrap().inserted());
    assert!(db.store.store_message(&message(alice, bob, "n", None)).unwrap().inserted());
    assert_eq!(db.counters(bob), counters(4, 0));
    // A batch with a replay in it stores the rest.
    let batch = [message(alice, bob, "x", Some("key-1")), message(alice, bob, "y", Some("key-2"))];
    let stored = db.store.store_messages(&batch).unwrap();
    assert_eq!(stored.iter().map(|s| s.inserted()).collect::<Vec<_>>(), vec![false, true]);
    assert_eq!(db.counters(bob), counters(5, 0));
    db.assert_sound();
}

#[test]
fn friend_request_then_accept() {
    let db = Db::new();
    let (alice, bob) = (db.user("alice"), db.user("bob"));
    assert_eq!(db.store.request_friend(alice, bob, piggyback::model::now()).unwrap(), FriendRequestOutcome::Requested);
    assert_eq!(
        db.store.request_friend(alice, bob, piggyback::model::now()).unwrap(),
        FriendRequestOutcome::AlreadyRequested
    );
    assert_eq!(db.store.outgoing_requests(alice).unwrap(), vec!["bob"]);
    assert_eq!(db.store.incoming_requests(bob).unwrap(), vec!["alice"]);
    assert!(!db.store.accept_friend(alice, bob, piggyback::model::now()).unwrap(), "only the asked user accepts");
    assert!(db.store.accept_friend(bob, alice, piggyback::model::now()).unwrap());
    assert!(db.store.are_friends(alice, bob).unwrap() && db.store.are_friends(bob, alice).unwrap());
    assert!(db.store.incoming_requests(bob).unwrap().is_empty());
    assert!(db.store.outgoing_requests(alice).unwrap().is_empty());
    let names: Vec<String> = db.store.friends(alice).unwrap().into_iter().map(|f| f.name).collect();
    assert_eq!(names, vec!["bob"]);
    assert_eq!(
        db.store.request_friend(bob, alice, piggyback::model::now()).unwrap(),
        FriendRequestOutcome::AlreadyFriends
    );
    assert_eq!(db.store.profile(alice).unwrap().unwrap().friends, 1);
    db.assert_sound();
}

#[test]
fn a_request_back_accepts_and_decline_and_remove_undo() {
    let db = Db::new();
    let (alice, bob, carol) = (db.user("alice"), db.user("bob"), db.user("carol"));
    db.store.request_friend(alice, bob, piggyback::model::now()).unwrap();
    assert_eq!(db.store.request_friend(bob, alice, piggyback::model::now()).unwrap(), FriendRequestOutcome::Accepted);
    assert!(db.store.are_friends(alice, bob).unwrap());

    db.store.request_friend(carol, alice, piggyback::model::now()).unwrap();
    assert!(!db.store.decline_friend(carol, alice).unwrap(), "only the asked user declines");
    assert!(db.store.decline_friend(alice, carol).unwrap());
    assert!(!db.store.decline_friend(alice, carol).unwrap());
    assert!(!db.store.are_friends(alice, carol).unwrap());
    assert!(db.store.incoming_requests(alice).unwrap().is_empty());

    assert!(db.store.remove_friend(bob, alice).unwrap());
    assert!(!db.store.are_friends(alice, bob).unwrap() && !db.store.are_friends(bob, alice).unwrap());
    assert!(!db.store.remove_friend(bob, alice).unwrap());
    // Remove also withdraws one's own request.
    db.store.request_friend(carol, bob, piggyback::model::now()).unwrap();
    assert!(db.store.remove_friend(carol, bob).unwrap());
    assert!(db.store.incoming_requests(bob).unwrap().is_empty());
    db.assert_sound();
}

#[test]
fn the_feed_shows_own_and_friends_posts_newest_first() {
    let db = Db::new();
    let (alice, bob, carol) = (db.user("alice"), db.user("bob"), db.user("carol"));
    db.store.request_friend(alice, bob, piggyback::model::now()).unwrap();
    db.store.accept_friend(bob, alice, piggyback::model::now()).unwrap();
    let a1 = db.store.add_post(alice, "alice 1", piggyback::model::now()).unwrap();
    let b1 = db.store.add_post(bob, "bob 1", piggyback::model::now()).unwrap();
    let c1 = db.store.add_post(carol, "carol 1", piggyback::model::now()).unwrap();
    let a2 = db.store.add_post(alice, "alice 2", piggyback::model::now()).unwrap();
    let ids = |user, before, limit| -> Vec<_> {
        db.store.feed(user, before, limit).unwrap().into_iter().map(|p| p.id).collect()
    };
    assert_eq!(ids(alice, None, 10), vec![a2, b1, a1]);
    assert_eq!(ids(bob, None, 10), vec![a2, b1, a1]);
    assert_eq!(ids(carol, None, 10), vec![c1]);
    assert_eq!(ids(alice, None, 2), vec![a2, b1]);
    assert_eq!(ids(alice, Some(b1.0), 10), vec![a1]);
    let comment = db.store.add_comment(a1, bob, "nice", piggyback::model::now()).unwrap();
    assert_eq!((comment.author.as_str(), comment.body.as_str()), ("bob", "nice"));
    assert_eq!(db.store.post(a1).unwrap().unwrap().comments, 1);
    assert_eq!(db.store.comments(a1).unwrap(), vec![comment]);
    // Friendship ended: the posts leave the feed.
    db.store.remove_friend(alice, bob).unwrap();
    assert_eq!(ids(alice, None, 10), vec![a2, a1]);
}

#[test]
fn check_finds_a_counter_changed_behind_the_stores_back_and_repair_fixes_it() {
    let db = Db::new();
    let (alice, bob) = (db.user("alice"), db.user("bob"));
    db.send(alice, bob, "a");
    db.send(alice, bob, "b");
    db.store.claim_new(bob, 20, 100, Announce::New, piggyback::model::now()).unwrap();
    db.send(alice, bob, "c");
    db.assert_sound();
    db.raw().exec(&format!("UPDATE mailbox SET delivered = 7 WHERE user_id = {}", bob.0));
    let problems = db.store.audit().unwrap();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].contains("bob") && problems[0].contains("delivered=7"), "{problems:?}");
    db.store.repair_counters().unwrap();
    db.assert_sound();
    assert_eq!(db.counters(bob), counters(1, 2));

    db.raw().exec(&format!("DELETE FROM mailbox WHERE user_id = {}", alice.0));
    let problems = db.store.audit().unwrap();
    assert!(problems.len() == 1 && problems[0].contains("alice"), "{problems:?}");
    db.store.repair_counters().unwrap();
    db.assert_sound();
}

#[test]
fn seed_makes_what_it_says_and_check_passes() {
    let db = Db::new();
    db.user("alice");
    let report = db.store.seed(&SeedPlan { users: 50, messages: 2000, seed: 7 }, piggyback::model::now()).unwrap();
    assert_eq!((report.users, report.messages), (50, 2000));
    let raw = db.raw();
    let count = |sql: &str| -> i64 { raw.int(sql) };
    assert_eq!(count("SELECT count(*) FROM users"), 51);
    assert_eq!(count("SELECT count(*) FROM mailbox"), 51);
    assert_eq!(count("SELECT count(*) FROM messages"), 2000);
    assert_eq!(count(&format!("SELECT count(*) FROM posts WHERE author_id >= {}", report.first_user.0)), 50);
    assert!(count("SELECT count(*) FROM friendships") >= 50 * 2);
    for state in ["new", "delivered", "read", "deleted"] {
        assert!(count(&format!("SELECT count(*) FROM messages WHERE state = '{state}'")) > 0, "{state}");
    }
    db.assert_sound();
    // Seeding again adds more users without clashing names.
    let second = db.store.seed(&SeedPlan { users: 10, messages: 100, seed: 7 }, piggyback::model::now()).unwrap();
    assert!(second.first_user.0 > report.first_user.0 + 49);
    assert_eq!(count("SELECT count(*) FROM users"), 61);
    db.assert_sound();
    // Seeded users have the skeleton a user add would give them (PostgreSQL's seed
    // computes it in SQL), so no look-alike of theirs can be added.
    for row in raw.column("SELECT name || ' ' || skeleton FROM users ORDER BY id") {
        let (name, skeleton) = row.split_once(' ').unwrap();
        assert_eq!(skeleton, piggyback::names::skeleton(name), "{name}");
    }
    let seeded = raw.text(&format!("SELECT name FROM users WHERE id = {}", report.first_user.0 + 10));
    let lookalike = crate::support::uname(&seeded.replace('0', "o").replace('1', "l"));
    assert_ne!(lookalike.as_str(), seeded);
    assert!(db.store.add_user(&lookalike, "x", None, piggyback::model::now()).unwrap().is_err(), "{lookalike}");
}
