//! Request files waiting in the spool, drained by the next request or by msqd.

use crate::support::{settle_spool, three_users};

use crate::support::{Program, Site};
use serde_json::json;

/// `msqd` holds one connection for its whole life: when the server cuts it (a restart,
/// a failover, an administrator), the keeper makes a new one and goes on draining.
/// On SQLite there is no server to cut it, and the keeper drains all the same.
#[test]
fn msqd_keeps_draining_after_the_server_cuts_its_connection() {
    use piggyback::model::{MessageKind, NewMessage, UserId};
    use piggyback::msq::spool::{FileRequest, Spool};
    let site = Site::new(&["alice", "bob"]);
    let keeper = site.piggyback_spawn(&["msqd", "--poll-ms", "20"]);
    let spool = Spool::new(site.spool());
    let wait_for = |want: (i64, i64)| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while site.counters("alice") != want && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert_eq!(site.counters("alice"), want, "msqd stored the waiting request");
    };
    let file = |n: u32| {
        FileRequest::Send(NewMessage {
            request_id: format!("0000000000000000000{n}.1.1"),
            from: UserId(site.id_of("bob")),
            to: UserId(site.id_of("alice")),
            subject: format!("via msqd {n}"),
            body: "applied by the keeper".into(),
            kind: MessageKind::Note,
            idempotency_key: None,
            sent_at: 1_700_000_000,
        })
    };
    spool.enqueue(&file(1)).unwrap();
    wait_for((1, 0));
    if crate::support::postgres_only(site.is_postgres(), "the keeper's connection cut by the server") {
        // Every other server process of the database, the keeper's among them when it
        // connects directly. Through pgbouncer the keeper's server connection may be
        // this very one, idle between transactions: then pgbouncer absorbs the cut.
        site.conn().exec(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE datname = current_database() AND pid <> pg_backend_pid()",
        );
    }
    spool.enqueue(&file(2)).unwrap();
    wait_for((2, 0));
    let status = std::process::Command::new("kill").arg("-TERM").arg(keeper.id().to_string()).status().unwrap();
    assert!(status.success());
    let out = keeper.wait_with_output().unwrap();
    assert!(out.status.success(), "msqd exits 0 on SIGTERM: {:?}", out.status);
    site.assert_check_passes();
}

// ---- the request-file queue ---------------------------------------------------------

#[test]
fn a_waiting_request_file_is_stored_and_announced_by_the_recipients_next_request() {
    use piggyback::model::{NewMessage, UserId};
    use piggyback::msq::spool::{FileRequest, Spool};
    let site_process = three_users();
    let spool = Spool::new(site_process.dir.path().join("spool"));
    let id_of = |name: &str| site_process.id_of(name);
    let message = NewMessage {
        request_id: piggyback::msq::new_request_id(),
        from: UserId(id_of("bob")),
        to: UserId(id_of("alice")),
        subject: "from the spool".into(),
        body: "queued while the database was busy".into(),
        kind: piggyback::model::MessageKind::Note,
        idempotency_key: None,
        sent_at: 1_700_000_000,
    };
    spool.enqueue(&FileRequest::Send(message.clone())).unwrap();
    settle_spool(spool.root());
    assert_eq!(spool.state().unwrap().waiting, 1);
    assert_eq!(site_process.counters("alice"), (0, 0));

    // Any program's request drains it; the recipient's response announces it.
    let r = site_process.get(Program::Friends, "alice", "");
    assert_eq!(r.counts(), (1, 0, 1));
    assert_eq!(r.site()["items"][0]["subject"], "from the spool");
    assert_eq!(spool.state().unwrap().waiting, 0);
    // Replaying the same file stores nothing twice.
    spool.enqueue(&FileRequest::Send(message.clone())).unwrap();
    let out = site_process.piggyback_ok(&["drain"]);
    assert!(out.contains("already stored 1"), "{out}");
    assert_eq!(site_process.counters("alice"), (0, 1));
    site_process.assert_check_passes();
}

#[test]
fn an_unwritable_spool_accepts_no_message() {
    let site_process = three_users();
    let not_a_dir = site_process.dir.path().join("not-a-dir");
    std::fs::write(&not_a_dir, b"").unwrap();
    let before = site_process.snapshot();
    let r = site_process
        .cgi(Program::Messages)
        .user("alice")
        .var("PIGGYBACK_SPOOL", not_a_dir.to_str().unwrap())
        .post("", json!({"to": "bob", "subject": "s", "body": "b"}))
        .run();
    r.assert_status(503);
    assert!(r.header("Retry-After").is_some());
    assert!(r.stderr.contains("PIGGYBACK_SPOOL"), "{}", r.stderr);
    assert_eq!(site_process.snapshot(), before);
    // Reading still works.
    let r = site_process.cgi(Program::Messages).user("alice").var("PIGGYBACK_SPOOL", not_a_dir.to_str().unwrap()).run();
    r.assert_status(200);
}

#[test]
fn msqd_applies_request_files_as_they_arrive_and_stops_cleanly_on_sigterm() {
    use piggyback::model::{MessageKind, NewMessage, UserId};
    use piggyback::msq::spool::{FileRequest, Spool};
    let site_process = three_users();
    let keeper = site_process.piggyback_spawn(&["msqd", "--poll-ms", "20", "--checkpoint-secs", "1"]);
    // A request file as a sender leaves it when the database was busy: waiting in new/.
    let (alice, bob) = (UserId(1), UserId(2));
    Spool::new(site_process.dir.path().join("spool"))
        .enqueue(&FileRequest::Send(NewMessage {
            request_id: "00000000000000000001.1.1".into(),
            from: bob,
            to: alice,
            subject: "via msqd".into(),
            body: "applied by the keeper".into(),
            kind: MessageKind::Note,
            idempotency_key: None,
            sent_at: 1_700_000_000,
        }))
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while site_process.counters("alice") != (1, 0) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(site_process.counters("alice"), (1, 0), "msqd stored the waiting request");
    let status = std::process::Command::new("kill").arg("-TERM").arg(keeper.id().to_string()).status().unwrap();
    assert!(status.success());
    let out = keeper.wait_with_output().unwrap();
    assert!(out.status.success(), "msqd exits 0 on SIGTERM: {:?}", out.status);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("applied 1,"), "{stdout}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("stopped"));
    assert!(site_process.piggyback_ok(&["check"]).contains("0 waiting, 0 claimed, 0 bad"));
}
