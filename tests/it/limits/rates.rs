//! Send and post rates and daily quotas, also under parallel requests and held locks.

use crate::support::three_users;

use super::*;
use crate::support::{Program, Site};
use serde_json::json;

// ---- 5. the send limit -----------------------------------------------------------------

fn note(site: &Site, i: usize) -> crate::support::Cgi {
    site.cgi(Program::Messages).user("alice").post("", json!({"to": "bob", "subject": format!("n{i}"), "body": "b"}))
}

fn stored_and_waiting(site: &Site) -> i64 {
    site.piggyback_ok(&["drain"]);
    site.conn().int("SELECT count(*) FROM messages")
}

// ---- 4. posts and comments -------------------------------------------------------------

#[test]
fn parallel_posts_stop_at_the_rate_and_the_quota_holds() {
    let site = Site::new(&["alice", "bob"]);
    let body = "x".repeat(5_000);
    let posts: Vec<_> =
        (0..40).map(|_| site.cgi(Program::Posts).user("alice").post("", json!({"body": body}))).collect();
    let got = statuses(posts);
    let stored: i64 = site.conn().int("SELECT count(*) FROM posts");
    assert!(stored <= 10, "{stored} posts stored: {got:?}");
    assert_eq!(got.iter().filter(|s| **s == 201).count() as i64, stored);
    assert!(got.iter().filter(|s| matches!(s, 429 | 503)).count() >= 30, "{got:?}");

    // The quota: bytes of posts and comments per user.
    let mut site = Site::new(&["alice"]);
    site.extra_env.push(("PIGGYBACK_POST_RATE".into(), "1000".into()));
    site.extra_env.push(("PIGGYBACK_POST_QUOTA".into(), "12000".into()));
    let post = || site.cgi(Program::Posts).user("alice").post("", json!({"body": body})).run();
    assert_eq!(post().status, 201);
    assert_eq!(post().status, 201);
    let r = post();
    assert_eq!((r.status, r.error_code()), (403, "quota_exceeded"));
    let first: i64 = site.conn().int("SELECT min(id) FROM posts");
    let r = site
        .cgi(Program::Posts)
        .user("alice")
        .post(&format!("/{first}/comments"), json!({"body": "y".repeat(2_001)}))
        .run();
    assert_eq!(r.status, 403, "comments count against the same quota");
    let r = site.cgi(Program::Posts).user("alice").post(&format!("/{first}/comments"), json!({"body": "short"})).run();
    assert_eq!(r.status, 201);
}

#[test]
fn parallel_sends_never_pass_the_limit() {
    let site = Site::new(&["alice", "bob"]);
    let got = statuses((0..100).map(|i| note(&site, i)).collect());
    let accepted = got.iter().filter(|s| matches!(s, 201 | 202)).count() as i64;
    assert!(accepted <= 30, "{accepted} accepted: {got:?}");
    assert_eq!(stored_and_waiting(&site), accepted);
    assert!(got.iter().filter(|s| matches!(s, 429 | 503)).count() >= 70, "{got:?}");
}

#[test]
fn sends_accepted_while_another_process_holds_the_write_lock_count_too() {
    let site = Site::new(&["alice", "bob"]);
    let holder = site.conn();
    holder.begin_holding_writes();
    let running: Vec<_> = (0..60).map(|i| note(&site, i).spawn()).collect();
    std::thread::sleep(std::time::Duration::from_millis(300));
    holder.exec("COMMIT");
    let got: Vec<u16> = running.into_iter().map(|r| r.wait().status).collect();
    let accepted = got.iter().filter(|s| matches!(s, 201 | 202)).count() as i64;
    assert!(accepted <= 30, "{accepted} accepted: {got:?}");
    assert_eq!(stored_and_waiting(&site), accepted, "every accepted send is stored, none uncounted");
    site.assert_check_passes();
}

/// The write lock held longer than the busy timeout: every send within the limit is
/// accepted (202) meanwhile and waits in the spool, the sends past the limit are
/// refused (429) all the same, and once the lock is gone each accepted send is stored
/// exactly once. The limits are counted where the lock does not reach (on SQLite the
/// spool's own limits file).
#[test]
fn sends_under_a_write_lock_held_past_the_busy_timeout_are_queued_and_the_limit_still_holds() {
    let mut site = Site::new(&["alice", "bob"]);
    site.extra_env.push(("PIGGYBACK_SEND_RATE".into(), "10".into()));
    let holder = site.conn();
    holder.begin_holding_message_writes();
    let held = std::time::Instant::now();
    let got = statuses((0..16).map(|i| note(&site, i)).collect());
    let over = note(&site, 99).run();
    let queued = got.iter().filter(|s| **s == 202).count();
    assert_eq!(queued, 10, "every send within the limit queued: {got:?}");
    assert_eq!(got.iter().filter(|s| **s == 429).count(), 6, "the rest refused: {got:?}");
    assert_eq!((over.status, over.error_code()), (429, "rate_limited"), "{}", over.json);
    assert!(over.header("Retry-After").is_some());
    let raw = site.conn();
    assert_eq!(raw.int("SELECT count(*) FROM messages"), 0, "nothing stored under the lock");
    let waiting = std::fs::read_dir(site.spool().join("new")).unwrap().count();
    assert_eq!(waiting, queued, "each accepted send waits in the spool");
    // Held past the busy timeout whatever the speed of the machine.
    let busy_timeout = piggyback::message_store::BUSY_TIMEOUT + std::time::Duration::from_millis(500);
    std::thread::sleep(busy_timeout.saturating_sub(held.elapsed()));
    holder.exec("ROLLBACK");

    site.piggyback_ok(&["drain"]);
    assert_eq!(raw.int("SELECT count(*) FROM messages"), 10);
    assert_eq!(raw.int("SELECT count(DISTINCT subject) FROM messages"), 10, "each stored once");
    site.assert_check_passes();
}

#[test]
fn one_sender_reaches_one_recipient_a_limited_number_of_times_a_day() {
    let mut site = Site::new(&["alice", "bob", "carol"]);
    site.extra_env.push(("PIGGYBACK_SEND_PAIR_DAILY".into(), "3".into()));
    for i in 0..3 {
        assert_eq!(note(&site, i).run().status, 201);
    }
    let r = note(&site, 4).run();
    assert_eq!((r.status, r.error_code()), (429, "rate_limited"));
    let wait: i64 = r.header("Retry-After").unwrap().parse().unwrap();
    assert!(wait > 3600, "the pair's window is a day: {wait}");
    let r = site.post(Program::Messages, "alice", "", json!({"to": "carol", "subject": "s", "body": "b"}));
    assert_eq!(r.status, 201, "other recipients are not affected");
}

#[test]
fn sending_is_rate_limited_and_so_are_the_actions_that_send_notices() {
    let site_process = three_users();
    let send = |i: usize| {
        site_process
            .cgi(Program::Messages)
            .user("alice")
            .var("PIGGYBACK_SEND_RATE", "2")
            .post("", json!({"to": "bob", "subject": format!("s{i}"), "body": "b"}))
            .run()
    };
    send(0).assert_status(201);
    send(1).assert_status(201);
    let r = send(2);
    r.assert_status(429);
    assert_eq!(r.error_code(), "rate_limited");
    let wait: i64 = r.header("Retry-After").expect("Retry-After").parse().unwrap();
    assert!((1..=60).contains(&wait));
    assert!(r.has_site_messages());
    assert_eq!(site_process.counters("bob"), (2, 0));
    // A retry of a stored send is answered, not counted.
    let keyed = |key: &str, rate: &str| {
        site_process
            .cgi(Program::Messages)
            .user("carol")
            .var("PIGGYBACK_SEND_RATE", rate)
            .post("", json!({"to": "bob", "subject": "k", "body": "b", "idempotency_key": key}))
            .run()
    };
    let first = keyed("k1", "1");
    first.assert_status(201);
    let again = keyed("k1", "1");
    again.assert_status(201);
    assert_eq!(again.json["sent"]["message_id"], first.json["sent"]["message_id"]);
    keyed("k2", "1").assert_status(429);
    // Request, withdraw, request again cannot flood bob either: the request is refused
    // before it changes anything.
    let r = site_process
        .cgi(Program::Friends)
        .user("alice")
        .var("PIGGYBACK_SEND_RATE", "2")
        .post("", json!({"action": "request", "user": "bob"}))
        .run();
    r.assert_status(429);
    assert_eq!(r.json["outgoing"], serde_json::Value::Null);
    assert_eq!(site_process.get(Program::Friends, "alice", "").json["outgoing"], json!([]));
    assert_eq!(site_process.counters("bob"), (3, 0));
}
