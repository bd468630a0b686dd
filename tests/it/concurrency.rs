//! Many processes of one user at once, while other processes send to that user: the
//! claim (`new` → `delivered` in one IMMEDIATE transaction) announces every message
//! exactly once over all responses, and the counters stay provable.

use std::collections::BTreeSet;

use crate::support::{Program, Response, Site};
use serde_json::json;

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
