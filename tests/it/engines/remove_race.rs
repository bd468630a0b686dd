//! Writes racing the removal of a user: stored before it or not at all.

use crate::support::{Raw, TestDb, uname};
use piggyback::message_store::{FriendRequestOutcome, Limit, Refusal, Removal, Store, Stored};
use piggyback::model::{MessageKind, NewMessage, PostId, UserId};
use std::time::Duration;

/// Long enough that neither side gives up on the lock while the test holds it: the
/// order is set by the raw transaction, not by timeouts.
const PATIENCE: Duration = Duration::from_secs(60);

/// Which end of the message is removed.
#[derive(Clone, Copy, Debug)]
enum Removed {
    Sender,
    Recipient,
}

fn send_racing_a_removal(which: Removed) {
    let dir = tempfile::tempdir().unwrap();
    let db = TestDb::new(dir.path());
    let store = Store::init(&db.path).unwrap();
    let add = |name: &str| store.add_user(&uname(name), name, None, piggyback::model::now()).unwrap().unwrap();
    let (alice, bob) = (add("alice"), add("bob"));
    let (gone, gone_name) = match which {
        Removed::Sender => (alice, "alice"),
        Removed::Recipient => (bob, "bob"),
    };
    drop(store);
    let message = NewMessage {
        request_id: piggyback::msq::new_request_id(),
        from: alice,
        to: bob,
        subject: "racing the removal".into(),
        body: "b".into(),
        kind: MessageKind::Note,
        idempotency_key: None,
        sent_at: piggyback::model::now(),
    };
    let (removal, stored) = racing_a_removal(&db, gone, gone_name, |store| store.store_message(&message).unwrap());
    assert_eq!(removal.id, gone, "the removal went through");
    let raw = Raw::open(&db.path);
    let left = raw.int(&format!("SELECT count(*) FROM messages WHERE sender_id = {0} OR recipient_id = {0}", gone.0));
    assert_eq!(left, 0, "{which:?} removed: no message to or from the tombstone (the send: {stored:?})");
    if crate::support::postgres_only(db.is_postgres(), "the send ordered after the removal's commit") {
        assert_eq!(stored, Stored::Dropped, "the send came after the removal's commit");
    }
    let other = if gone == alice { bob } else { alice };
    let counted = raw.int(&format!("SELECT new FROM mailbox WHERE user_id = {}", other.0));
    let present = raw.int(&format!("SELECT count(*) FROM messages WHERE recipient_id = {} AND state = 'new'", other.0));
    assert_eq!(counted, present, "the other user's counter matches the messages");
    assert_eq!(raw.int(&format!("SELECT new FROM mailbox WHERE user_id = {}", gone.0)), 0);
    assert_eq!(Store::open(&db.path).unwrap().audit().unwrap(), Vec::<String>::new());
}

/// Runs `action` on a store of its own while `gone_name` (whose id is `gone`) is
/// removed, and returns the removal and what the action returned. On PostgreSQL the
/// action starts only once the removal holds the user's row and is held up (a raw
/// transaction holds the user's mailbox row, which the removal locks next), and waits
/// for that row itself; then the removal goes on and commits, and the action after
/// it. On SQLite the two simply run at once.
fn racing_a_removal<T: Send>(
    db: &TestDb,
    gone: UserId,
    gone_name: &str,
    action: impl FnOnce(&Store) -> T + Send,
) -> (Removal, T) {
    let holder = Raw::open(&db.path);
    if db.is_postgres() {
        holder.exec(&format!("BEGIN; SELECT 1 FROM mailbox WHERE user_id = {} FOR UPDATE", gone.0));
    }
    std::thread::scope(|s| {
        // Each side opens its own store and waits up to PATIENCE for the other's locks.
        let removal = s.spawn(|| {
            let store = Store::open(&db.path).unwrap();
            let _patience = store.patience(PATIENCE);
            store.remove_user(&uname(gone_name), piggyback::model::now()).unwrap()
        });
        if db.is_postgres() {
            // The removal holds the user's row and waits for the mailbox row.
            wait_for_lock_waiters(db, 1);
        }
        let acted = s.spawn(|| {
            let store = Store::open(&db.path).unwrap();
            let _patience = store.patience(PATIENCE);
            action(&store)
        });
        if db.is_postgres() {
            // The action waits too: for the removal, holding the user's row.
            wait_for_lock_waiters(db, 2);
            holder.exec("ROLLBACK");
        }
        let removal = removal.join().unwrap().expect("the user was there to remove");
        (removal, acted.join().unwrap())
    })
}

/// A site of alice and bob for a race, with a post of alice's to comment on.
fn two_users(db: &TestDb) -> (UserId, UserId, PostId) {
    let store = Store::init(&db.path).unwrap();
    let add = |name: &str| store.add_user(&uname(name), name, None, piggyback::model::now()).unwrap().unwrap();
    let (alice, bob) = (add("alice"), add("bob"));
    let post = store.add_post(alice, "a post of alice's", piggyback::model::now()).unwrap();
    (alice, bob, post)
}

/// Returns once `n` sessions of the test's database wait for a lock (each look is a
/// statement of its own, so PostgreSQL's activity view is read afresh).
fn wait_for_lock_waiters(db: &TestDb, n: i64) {
    let watcher = Raw::open(&db.path);
    let sql = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'";
    for _ in 0..6000 {
        if watcher.int(sql) >= n {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("{n} sessions never waited for a lock: {}", watcher.int(sql));
}

#[test]
fn a_send_racing_the_removal_of_its_recipient_stores_nothing_to_the_tombstone() {
    send_racing_a_removal(Removed::Recipient);
}

#[test]
fn a_send_racing_the_removal_of_its_sender_stores_nothing_from_the_tombstone() {
    send_racing_a_removal(Removed::Sender);
}

#[test]
fn a_friend_request_racing_the_removal_of_either_user_leaves_no_request_of_the_tombstone() {
    for asker_removed in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let db = TestDb::new(dir.path());
        let (alice, bob, _) = two_users(&db);
        let (from, to) = if asker_removed { (bob, alice) } else { (alice, bob) };
        let (_, outcome) =
            racing_a_removal(&db, bob, "bob", |store| store.request_friend(from, to, piggyback::model::now()).unwrap());
        let raw = Raw::open(&db.path);
        let left = raw.int(&format!("SELECT count(*) FROM friend_requests WHERE from_id = {0} OR to_id = {0}", bob.0));
        assert_eq!(left, 0, "asker removed: {asker_removed}; the request: {outcome:?}");
        if crate::support::postgres_only(db.is_postgres(), "the request ordered after the removal's commit") {
            assert_eq!(outcome, FriendRequestOutcome::Removed, "the request came after the removal's commit");
        }
    }
}

#[test]
fn a_post_racing_the_removal_of_its_author_is_stored_before_it_or_not_at_all() {
    let dir = tempfile::tempdir().unwrap();
    let db = TestDb::new(dir.path());
    let (_, bob, _) = two_users(&db);
    let limits = [Limit::new("post-race", 100, 60)];
    let (removal, added) = racing_a_removal(&db, bob, "bob", |store| {
        store.add_post_within(bob, "racing the removal", &limits, 1_000_000, piggyback::model::now()).unwrap()
    });
    let raw = Raw::open(&db.path);
    let posts = raw.int(&format!("SELECT count(*) FROM posts WHERE author_id = {}", bob.0));
    assert_eq!(posts, removal.posts, "a post by bob is one the removal counted, never one after it ({added:?})");
    if crate::support::postgres_only(db.is_postgres(), "the post ordered after the removal's commit") {
        assert_eq!(added, Err(Refusal::Removed), "the post came after the removal's commit");
        assert_eq!(posts, 0);
    }
}

#[test]
fn a_comment_racing_the_removal_of_its_author_is_stored_before_it_or_not_at_all() {
    let dir = tempfile::tempdir().unwrap();
    let db = TestDb::new(dir.path());
    let (_, bob, post) = two_users(&db);
    let limits = [Limit::new("comment-race", 100, 60)];
    let (removal, added) = racing_a_removal(&db, bob, "bob", |store| {
        store.add_comment_within(post, bob, "racing the removal", &limits, 1_000_000, piggyback::model::now()).unwrap()
    });
    let raw = Raw::open(&db.path);
    let comments = raw.int(&format!("SELECT count(*) FROM comments WHERE author_id = {}", bob.0));
    assert_eq!(comments, removal.comments, "bob's comment is one the removal counted ({added:?})");
    if crate::support::postgres_only(db.is_postgres(), "the comment ordered after the removal's commit") {
        assert_eq!(added, Err(Refusal::Removed), "the comment came after the removal's commit");
        assert_eq!(comments, 0);
    }
}
