//! A send and a `user remove` of its sender or recipient at the same moment: the
//! message is stored before the removal (and then removed with the rest) or dropped,
//! never stored to or from the tombstone after it.
//!
//! On PostgreSQL the test forces the one bad interleaving: the removal has locked the
//! user's row and is held up (a raw transaction holds the user's mailbox row, which
//! the removal locks next) while the send has already read the user as present; only
//! then does the removal go on and commit, and the send after it. SQLite serialises
//! writers, so there the two simply run at once.

use std::time::Duration;

use piggyback::message_store::{Store, Stored};
use piggyback::model::{MessageKind, NewMessage};

use crate::support::{Raw, TestDb, uname};

/// Long enough that neither side gives up on the lock while the test holds it: the
/// order is set by the raw transaction, not by timeouts.
const PATIENCE: Duration = Duration::from_secs(60);

/// Which end of the message is removed.
#[derive(Clone, Copy, Debug)]
enum Removed {
    Sender,
    Recipient,
}

#[test]
fn a_send_racing_the_removal_of_its_recipient_stores_nothing_to_the_tombstone() {
    send_racing_a_removal(Removed::Recipient);
}

#[test]
fn a_send_racing_the_removal_of_its_sender_stores_nothing_from_the_tombstone() {
    send_racing_a_removal(Removed::Sender);
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
    let opened = || {
        let store = Store::open(&db.path).unwrap();
        store.set_busy_timeout(PATIENCE).unwrap();
        store
    };

    let holder = Raw::open(&db.path);
    if db.is_postgres() {
        holder.exec(&format!("BEGIN; SELECT 1 FROM mailbox WHERE user_id = {} FOR UPDATE", gone.0));
    }
    let stored = std::thread::scope(|s| {
        let removal = s.spawn(|| opened().remove_user(&uname(gone_name), piggyback::model::now()).unwrap());
        if db.is_postgres() {
            // The removal holds the user's row and waits for the mailbox row.
            wait_for_lock_waiters(&db, 1);
        }
        let send = s.spawn(|| opened().store_message(&message).unwrap());
        if db.is_postgres() {
            // The send waits too: for the removal, holding the user's row.
            wait_for_lock_waiters(&db, 2);
            holder.exec("ROLLBACK");
        }
        let removal = removal.join().unwrap();
        assert_eq!(removal.map(|r| r.id), Some(gone), "the removal went through");
        send.join().unwrap()
    });

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
