//! Announcements under parallel requests: each exactly once, in bounded batches.

use crate::support::{Program, Response, Site};
use piggyback::message_store::Store;
use piggyback::model::now;
use serde_json::json;
use std::collections::BTreeSet;

// ---- 6. a flood -------------------------------------------------------------------------

/// Stores `n` new messages from bob to alice in one transaction, as a flood that got
/// through before the limits would leave them.
fn flood(site: &Site, n: usize) {
    let store = Store::open(&site.db).unwrap();
    let (alice, bob) = (
        store.user_by_name(&crate::support::uname("alice")).unwrap().unwrap(),
        store.user_by_name(&crate::support::uname("bob")).unwrap().unwrap(),
    );
    let messages: Vec<_> = (0..n)
        .map(|i| piggyback::model::NewMessage {
            request_id: format!("flood-{i}"),
            from: bob.id,
            to: alice.id,
            subject: format!("flood {i}"),
            body: "b".into(),
            kind: piggyback::model::MessageKind::Note,
            idempotency_key: None,
            sent_at: now(),
        })
        .collect();
    store.store_messages(&messages).unwrap();
}

const READERS: usize = 16;

const SENDERS: usize = 8;

const ROUNDS: usize = 3;

/// What the readers of every round announced: every id once, and their `new` counts.
#[derive(Default)]
struct Announcements {
    ids: Vec<i64>,
    new_total: i64,
}

impl Announcements {
    fn record(&mut self, r: &Response) {
        r.assert_status(200);
        let (unread, delivered, new) = r.counts();
        assert_eq!(unread, delivered + new);
        let ids = r.announced();
        assert_eq!(ids.len() as i64, new, "every announced message has its item (max items is large)");
        assert_eq!(r.site()["more"], false);
        self.ids.extend(ids);
        self.new_total += new;
    }
}

#[test]
fn a_flood_is_announced_in_bounded_batches_exactly_once_under_parallel_requests() {
    let batch = piggyback::message_store::CLAIM_BATCH as i64;
    let site = Site::new(&["alice", "bob"]);
    flood(&site, 10 * batch as usize + 7);
    let total = 10 * batch + 7;
    let first = site.get(Program::Profile, "alice", "");
    let s = first.site();
    assert_eq!((s["new"].as_i64(), s["waiting"].as_i64()), (Some(batch), Some(total - batch)), "{s}");
    assert_eq!(s["unread"].as_i64(), Some(total), "unread counts what is still waiting");
    assert_eq!(s["items"].as_array().unwrap().len(), 20);
    assert_eq!(site.counters("alice"), (total - batch, batch));
    // Parallel requests of the victim: each announces its own batch, none twice.
    let responses: Vec<_> = (0..12).map(|_| site.cgi(Program::Profile).user("alice").spawn()).collect();
    // (One that waited past the busy timeout answers 503 and announces nothing; one that
    // waited past the announcement's patience answers 200 without the member, and the
    // next answer announces.)
    let new_of = |r: &Response| match r.json.get("site_messages") {
        Some(site) if r.status == 200 => site["new"].as_i64().unwrap(),
        _ => 0,
    };
    let mut announced: i64 = responses.into_iter().map(|r| new_of(&r.wait())).sum();
    while site.counters("alice").0 > 0 {
        announced += new_of(&site.get(Program::Profile, "alice", ""));
    }
    assert_eq!(announced, total - batch, "every message announced exactly once");
    assert_eq!(site.counters("alice"), (0, total));
    let last = site.get(Program::Profile, "alice", "");
    assert!(last.site().get("waiting").is_none());
    assert_eq!(last.counts(), (total, total, 0));
    site.assert_check_passes();
}

#[test]
fn concurrent_requests_of_one_user_announce_every_message_exactly_once() {
    let site = Site::new(&["alice", "bob", "carol"]);
    let reader = |i: usize| {
        let program = [Program::Profile, Program::Messages, Program::Friends, Program::Posts][i % 4];
        site.cgi(program).user("alice").var("PIGGYBACK_MAX_ITEMS", "1000")
    };
    let mut seen = Announcements::default();
    let mut sends = 0usize;
    for round in 0..ROUNDS {
        // Something is new before the crowd arrives, and more arrives while it runs.
        for i in 0..4 {
            site.send("bob", "alice", &format!("r{round} before {i}"), "x");
            sends += 1;
        }
        let mut readers = Vec::new();
        let mut cli_senders = Vec::new();
        let mut cgi_senders = Vec::new();
        for i in 0..READERS {
            readers.push(reader(i).spawn());
            if i % 2 == 0 && i / 2 < SENDERS {
                let subject = format!("r{round} during {i}");
                if i % 4 == 0 {
                    cli_senders.push(site.piggyback_spawn(&[
                        "send",
                        "--from",
                        "bob",
                        "--to",
                        "alice",
                        "--subject",
                        &subject,
                        "--body",
                        "x",
                    ]));
                } else {
                    let body = json!({"to": "alice", "subject": subject, "body": "x"});
                    cgi_senders.push(
                        site.cgi(Program::Messages)
                            .user("carol")
                            .var("PIGGYBACK_SEND_RATE", "1000")
                            .post("", body)
                            .spawn(),
                    );
                }
            }
        }
        for running in readers {
            seen.record(&running.wait());
        }
        for child in cli_senders {
            let out = child.wait_with_output().unwrap();
            assert!(out.status.success(), "piggyback send: {}", String::from_utf8_lossy(&out.stderr));
            sends += 1;
        }
        for running in cgi_senders {
            let r = running.wait();
            assert!(r.status == 201 || r.status == 202, "send answered {}: {}", r.status, r.json);
            // The sender's own response never announces the recipient's messages.
            assert_eq!(r.counts(), (0, 0, 0));
            sends += 1;
        }
    }
    // One more request announces whatever arrived after the last reader's claim.
    seen.record(&reader(0).run());

    let unique: BTreeSet<i64> = seen.ids.iter().copied().collect();
    assert_eq!(unique.len(), seen.ids.len(), "an id was announced twice: {:?}", seen.ids);
    assert_eq!(seen.new_total, sends as i64);
    assert!(site.ids_in_state("new").is_empty(), "nothing stays new");
    let stored: BTreeSet<i64> = site.ids_in_state("delivered").into_iter().collect();
    assert_eq!(stored.len(), sends, "every send stored exactly once");
    assert_eq!(unique, stored, "every stored message announced exactly once");
    assert_eq!(site.counters("alice"), (0, sends as i64));
    site.assert_check_passes();
}

#[test]
fn concurrent_reads_and_marks_keep_the_counters_provable() {
    let site = Site::new(&["alice", "bob"]);
    let ids: Vec<i64> = (0..12).map(|i| site.send("bob", "alice", &format!("m{i}"), "x")).collect();
    let mut running = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        let cgi = site.cgi(Program::Messages).user("alice");
        running.push(match i % 3 {
            0 => cgi.post(&format!("/{id}/read"), json!({})).spawn(),
            1 => cgi.method("DELETE").path(&format!("/{id}")).spawn(),
            _ => cgi.spawn(),
        });
        if i % 4 == 0 {
            running.push(site.cgi(Program::Messages).user("alice").post("/read-all", json!({})).spawn());
        }
    }
    for r in running {
        let r = r.wait();
        r.assert_status(200);
        let (unread, delivered, new) = r.counts();
        assert!(unread == delivered + new && (0..=12).contains(&unread), "{}", r.json);
    }
    site.assert_check_passes();
    let (new, delivered) = site.counters("alice");
    let r = site.get(Program::Messages, "alice", "");
    assert_eq!(r.counts(), (new + delivered, delivered, new));
    let r = site.post(Program::Messages, "alice", "/read-all", json!({}));
    assert_eq!(r.counts(), (0, 0, 0));
    assert!(site.ids_in_state("new").is_empty() && site.ids_in_state("delivered").is_empty());
    site.assert_check_passes();
}
