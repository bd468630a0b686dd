//! Several hosts, PostgreSQL servers that vanish, migration between engines.

use crate::support::{Program, Site, piggyback};
use serde_json::json;
use std::collections::BTreeSet;

const ROUNDS: usize = 3;

const READERS_PER_HOST: usize = 6;

const SENDERS_PER_HOST: usize = 3;

#[test]
fn two_hosts_with_their_own_spools_announce_every_message_exactly_once() {
    let site = Site::new(&["alice", "bob", "carol"]);
    let hosts = [site.dir.path().join("spool-a"), site.dir.path().join("spool-b")];
    for spool in &hosts {
        let out = piggyback(&["--db", site.db.to_str().unwrap(), "--spool", spool.to_str().unwrap(), "init"], &[]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let on = |host: usize, program: Program| site.cgi(program).var_os("PIGGYBACK_SPOOL", &hosts[host]);
    let mut announced = Vec::new();
    let mut sent = 0usize;
    let mut record = |r: &crate::support::Response| {
        r.assert_status(200);
        let ids = r.announced();
        assert_eq!(ids.len() as i64, r.counts().2, "every announced message has its item");
        announced.extend(ids);
    };
    for round in 0..ROUNDS {
        let mut readers = Vec::new();
        let mut senders = Vec::new();
        for i in 0..READERS_PER_HOST * 2 {
            let host = i % 2;
            let program = [Program::Profile, Program::Messages, Program::Friends, Program::Posts][i % 4];
            readers.push(on(host, program).user("alice").var("PIGGYBACK_MAX_ITEMS", "1000").spawn());
            if i < SENDERS_PER_HOST * 2 {
                let body = json!({"to": "alice", "subject": format!("r{round} s{i}"), "body": "x"});
                senders.push(
                    on(host, Program::Messages).user("carol").var("PIGGYBACK_SEND_RATE", "1000").post("", body).spawn(),
                );
                sent += 1;
            }
        }
        for running in senders {
            let r = running.wait();
            assert!(r.status == 201 || r.status == 202, "a send is accepted: {} {}", r.status, r.stderr);
        }
        for running in readers {
            record(&running.wait());
        }
    }
    // What a host still holds in its spool lands with its own drain (its msqd).
    for spool in &hosts {
        let out = piggyback(&["--db", site.db.to_str().unwrap(), "--spool", spool.to_str().unwrap(), "drain"], &[]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    for host in 0..2 {
        record(&on(host, Program::Profile).user("alice").var("PIGGYBACK_MAX_ITEMS", "1000").run());
    }
    let unique: BTreeSet<i64> = announced.iter().copied().collect();
    assert_eq!(unique.len(), announced.len(), "no message announced twice: {announced:?}");
    assert_eq!(announced.len(), sent, "every message sent through either host announced once");
    assert_eq!(site.counters("alice"), (0, sent as i64));
    site.assert_check_passes();
}

#[test]
fn an_unreachable_postgresql_server_is_503_with_retry_after_on_every_program() {
    let site = Site::new(&["alice", "bob"]);
    // A socket folder with no server in it: what a host sees while the database is down.
    let down = format!("postgresql:///piggyback?host={}&user=piggyback", site.dir.path().join("no-server").display());
    let spool = site.dir.path().join("spool-down");
    for program in Program::ALL {
        let r = site.cgi(program).var("PIGGYBACK_DB", &down).var_os("PIGGYBACK_SPOOL", &spool).user("alice").run();
        assert_eq!(r.status, 503, "{}: {}", program.name(), r.stderr);
        assert_eq!(r.header("Retry-After"), Some("1"), "{}", program.name());
        assert_eq!(r.error_code(), "unavailable");
        assert!(r.stderr.contains("unreachable"), "the log says why: {}", r.stderr);
    }
    let send = json!({"to": "bob", "subject": "s", "body": "b"});
    let r = site.cgi(Program::Messages).var("PIGGYBACK_DB", &down).var_os("PIGGYBACK_SPOOL", &spool).user("alice");
    let r = r.post("", send).run();
    assert_eq!((r.status, r.header("Retry-After")), (503, Some("1")), "a refused send is not accepted");
    assert!(!spool.join("new").exists() || std::fs::read_dir(spool.join("new")).unwrap().next().is_none());
    let out = piggyback(&["--db", &down, "--spool", spool.to_str().unwrap(), "check"], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unreachable"));
}

#[test]
fn a_postgresql_url_needs_a_spool_named_for_its_host() {
    let site = Site::new(&["alice"]);
    let url = "postgresql:///piggyback?host=/nonexistent&user=piggyback";
    let r = site.cgi(Program::Profile).var("PIGGYBACK_DB", url).without("PIGGYBACK_SPOOL").user("alice").run();
    assert_eq!((r.status, r.error_code()), (500, "misconfigured"));
    assert!(r.stderr.contains("PIGGYBACK_SPOOL"), "{}", r.stderr);
    let out = piggyback(&["--db", url, "check"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("PIGGYBACK_SPOOL"));
}

/// A SQLite site moved to PostgreSQL keeps every row and answers alike; a second copy
/// into the same database is refused. Without a PostgreSQL server under test, the copy
/// to an unreachable one fails and leaves the source as it was.
#[test]
fn migrate_to_postgres_copies_every_row_and_counts_both_sides() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("site.db");
    let src = source.to_str().unwrap();
    let cli = |args: &[&str]| piggyback(&[&["--db", src][..], args].concat(), &[]);
    assert!(cli(&["init"]).status.success());
    assert!(cli(&["seed", "--users", "30", "--messages", "3000", "--seed", "5"]).status.success());
    for name in ["alice", "bob"] {
        assert!(cli(&["user", "add", name]).status.success());
    }
    assert!(cli(&["send", "--from", "bob", "--to", "alice", "--subject", "hello", "--body", "x"]).status.success());
    let before = crate::support::Raw::open(&source).snapshot();
    let target = crate::support::TestDb::new(dir.path());
    let to = if target.is_postgres() {
        target.path.to_str().unwrap().to_owned()
    } else {
        format!("postgresql:///piggyback?host={}&user=piggyback", dir.path().join("no-server").display())
    };
    let out = cli(&["migrate-to-postgres", "--to", &to]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(crate::support::Raw::open(&source).snapshot(), before, "the source is only read");
    if !crate::support::postgres_only(target.is_postgres(), "the copy into a running PostgreSQL server") {
        assert_eq!(out.status.code(), Some(1), "{stdout}");
        return;
    }
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("users: 32 rows in SQLite, 32 in PostgreSQL"), "{stdout}");
    assert!(stdout.contains("messages: 3001 rows in SQLite, 3001 in PostgreSQL"), "{stdout}");
    // The same counters and the same message, read through each engine.
    let spool = dir.path().join("spool");
    let get = |db: &str| {
        let cgi = crate::support::Cgi::new(Program::Messages, None).var("PIGGYBACK_DB", db);
        cgi.var_os("PIGGYBACK_SPOOL", &spool).var("PIGGYBACK_EMPTY", "explicit").user("alice").run()
    };
    let (on_sqlite, on_postgres) = (get(src), get(&to));
    on_postgres.assert_status(200);
    assert_eq!(on_postgres.json["messages"], on_sqlite.json["messages"]);
    assert_eq!(on_postgres.counts(), on_sqlite.counts());
    // New rows get new ids after the copied ones.
    let out = piggyback(&["--db", &to, "--spool", spool.to_str().unwrap(), "user", "add", "carol"], &[]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "33");
    let again = cli(&["migrate-to-postgres", "--to", &to]);
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("already has"));
}
