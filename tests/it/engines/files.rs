//! The database's files: modes, locks taken, the write-ahead log.

use crate::support::three_users;

use crate::support::{Program, piggyback};
use serde_json::json;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).permissions().mode() & 0o7777
}

// ---- 3. file modes ---------------------------------------------------------------------

#[test]
fn init_and_the_programs_create_files_only_their_owner_can_read() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let db = dir.path().join("site.db");
    let secret = dir.path().join("secret");
    let env = [("PIGGYBACK_SECRET_FILE", secret.to_str().unwrap())];
    let args = |more: &[&'static str]| {
        let mut a = vec!["--db", db.to_str().unwrap()];
        a.extend_from_slice(more);
        a
    };
    assert!(piggyback(&args(&["init"]), &env).status.success());
    assert!(piggyback(&args(&["user", "add", "alice"]), &env).status.success());
    assert!(piggyback(&args(&["user", "add", "bob"]), &env).status.success());
    // A send through a CGI program writes the WAL (kept while another connection, as
    // msqd's would be, stays open).
    let held = rusqlite::Connection::open(&db).unwrap();
    held.query_row("SELECT count(*) FROM users", [], |r| r.get::<_, i64>(0)).unwrap();
    let r = crate::support::Cgi::new(Program::Messages, Some(&db))
        .var_os("PIGGYBACK_SECRET_FILE", &secret)
        .user("alice")
        .post("", json!({"to": "bob", "subject": "s", "body": "b"}))
        .run();
    assert_eq!(r.status, 201, "{}", r.json);
    assert_eq!(mode(&db), 0o600);
    assert_eq!(mode(&dir.path().join("site.db-wal")), 0o600);
    assert_eq!(mode(&dir.path().join("site.db-shm")), 0o600);
    drop(held);
    assert_eq!(mode(&secret), 0o600);
    for d in ["spool", "spool/tmp", "spool/new", "spool/cur", "spool/bad"] {
        assert_eq!(mode(&dir.path().join(d)), 0o700, "{d}");
    }
    let check = piggyback(&args(&["check"]), &env);
    assert!(check.status.success());
    assert!(!String::from_utf8_lossy(&check.stderr).contains("warning"), "{}", String::from_utf8_lossy(&check.stderr));

    // Anything looser is named by `piggyback check`, which still passes.
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::set_permissions(dir.path().join("spool/new"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let check = piggyback(&args(&["check"]), &env);
    let stderr = String::from_utf8_lossy(&check.stderr);
    assert!(check.status.success());
    assert!(stderr.contains("warning: ") && stderr.contains("site.db is 0644; at most 0600"), "{stderr}");
    assert!(stderr.contains("spool/new is 0755; at most 0700"), "{stderr}");
}

#[test]
fn the_group_mode_shares_with_the_group_and_nobody_else() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("site.db");
    let secret = dir.path().join("secret");
    let env = [("PIGGYBACK_SECRET_FILE", secret.to_str().unwrap()), ("PIGGYBACK_FILE_MODE", "group")];
    assert!(piggyback(&["--db", db.to_str().unwrap(), "init"], &env).status.success());
    assert_eq!(mode(&db), 0o660);
    assert_eq!(mode(&secret), 0o640);
    assert_eq!(mode(&dir.path().join("spool/new")), 0o2770);
    let out = piggyback(&["--db", db.to_str().unwrap(), "check"], &env);
    assert!(out.status.success() && !String::from_utf8_lossy(&out.stderr).contains("warning"));
    // The same files are too loose for the owner-only default.
    let owner = [("PIGGYBACK_SECRET_FILE", secret.to_str().unwrap())];
    let out = piggyback(&["--db", db.to_str().unwrap(), "check"], &owner);
    assert!(String::from_utf8_lossy(&out.stderr).contains("secret is 0640; at most 0600"));
}

#[test]
fn the_common_request_takes_no_write_lock() {
    let site_process = three_users();
    let id = site_process.send("bob", "alice", "s", "b");
    site_process.get(Program::Profile, "alice", "");
    // Another writer holds the database; a request with nothing new must not wait for it
    // (it would answer 503 or leave site_messages out after the busy timeout).
    let writer = site_process.conn();
    writer.begin_writing();
    for program in Program::ALL {
        let r = site_process.get(program, "alice", "");
        r.assert_status(200);
        assert_eq!(r.counts(), (1, 1, 0), "{}", program.name());
        assert!(r.stderr.is_empty(), "{}", r.stderr);
    }
    let r = site_process.get(Program::Messages, "alice", &format!("/{id}"));
    r.assert_status(200);
    writer.exec("ROLLBACK");
}

#[test]
fn a_cgi_that_wrote_checkpoints_on_close_and_one_that_only_read_leaves_the_wal_empty() {
    let site_process = three_users();
    let wal = site_process.db.with_extension("db-wal");
    let wal_len = || std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
    site_process.deliver("bob", "alice", "hello");
    // The announcing request wrote, and as the last connection its close checkpointed.
    let announced = site_process.get(Program::Profile, "alice", "");
    assert_eq!(announced.announced().len(), 1);
    assert_eq!(wal_len(), 0, "the writer's close checkpointed and emptied the WAL");
    // A reader exits without closing its connection: nothing of it reaches the WAL, and
    // the next processes find the database whole.
    let read = site_process.get(Program::Profile, "alice", "");
    assert_eq!(read.counts(), (1, 1, 0));
    assert_eq!(wal_len(), 0);
    site_process.piggyback_ok(&["check"]);
    site_process.deliver("bob", "alice", "again");
    assert_eq!(site_process.get(Program::Messages, "alice", "").announced().len(), 1);
}
