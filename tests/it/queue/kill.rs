//! Programs killed at random and faults of disk, locks and files: nothing accepted lost.

use crate::support::{Cgi, PIGGYBACK, Program, Response, Site, parse_response, settle_spool, sqlite_only};
use serde_json::json;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Rounds of the kill test, and programs started at once in each.
const ROUNDS: usize = 10;

const PER_ROUND: usize = 24;

/// A small generator of the test's random choices; the seed is printed, and
/// `KILL_SEED` repeats a run.
struct Rng(u64);

impl Rng {
    #[allow(clippy::print_stderr, reason = "the seed is said where the test's output goes")]
    fn seeded() -> Rng {
        let seed = std::env::var("KILL_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64 | 1);
        eprintln!("kill test seed: KILL_SEED={seed}");
        Rng(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A site whose send limits do not get in the kill test's way.
fn unlimited_site(users: &[&str]) -> Site {
    let mut site = Site::new(users);
    site.extra_env.push(("PIGGYBACK_SEND_RATE".into(), "1000000".into()));
    site.extra_env.push(("PIGGYBACK_SEND_PAIR_DAILY".into(), "1000000".into()));
    site
}

/// Starts a CGI request as a process we can kill, its body on stdin.
fn spawn(cgi: &Cgi) -> Child {
    let mut stdin = tempfile::tempfile().unwrap();
    std::io::Write::write_all(&mut stdin, cgi.body_bytes()).unwrap();
    std::io::Seek::rewind(&mut stdin).unwrap();
    Command::new(cgi.program().executable())
        .env_clear()
        .envs(cgi.env())
        .stdin(Stdio::from(stdin))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the program starts")
}

fn status_of(stdout: &[u8]) -> u16 {
    let head = String::from_utf8_lossy(stdout);
    head.strip_prefix("Status: ").and_then(|s| s.get(..3)).and_then(|s| s.parse().ok()).unwrap_or(0)
}

// ---- faults -------------------------------------------------------------------

fn is_unavailable(r: &Response) -> bool {
    r.status == 503 && r.header("Retry-After").is_some() && r.json["error"]["code"] == "unavailable"
}

fn subjects(r: &Response) -> Vec<String> {
    let items = r.json.get("site_messages").and_then(|s| s["items"].as_array().cloned()).unwrap_or_default();
    let mut subjects: Vec<String> = items.iter().map(|i| i["subject"].as_str().unwrap().to_owned()).collect();
    subjects.sort();
    subjects
}

fn stored_count(site: &Site, subject: &str) -> i64 {
    site.conn().int(&format!("SELECT count(*) FROM messages WHERE subject = '{subject}'"))
}

fn spool_files(site: &Site, sub: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(site.spool().join(sub))
        .map(|d| d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    names.sort();
    names
}

fn send(site: &Site, subject: &str) -> Cgi {
    site.cgi(Program::Messages).user("bob").post("", json!({"to": "alice", "subject": subject, "body": "x"}))
}

fn profile(site: &Site) -> Cgi {
    site.cgi(Program::Profile).user("alice")
}

/// Runs `cgi` behind `prefix` (another user, a file-size limit); as usual when empty.
fn run_with(prefix: &[&str], cgi: &Cgi) -> Response {
    let Some((first, rest)) = prefix.split_first() else { return cgi.run() };
    let out = with_stdin(
        Command::new(first).args(rest).arg(cgi.program().executable()).env_clear().envs(cgi.env()),
        cgi.body_bytes(),
    );
    assert!(out.status.success(), "{} exited with {}", cgi.program().name(), out.status);
    let mut r = parse_response(&out.stdout, false);
    r.stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    r
}

fn with_stdin(command: &mut Command, input: &[u8]) -> Output {
    let mut child = command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let _ = std::io::Write::write_all(&mut stdin, input);
    drop(stdin);
    child.wait_with_output().unwrap()
}

/// A send accepted while the write lock is held: `piggyback send` (no admission limits)
/// makes its request file durable and leaves it in new/ for the next drain.
fn queued_send(site: &Site, subject: &str, prefix: &[&str]) {
    let held = site.conn();
    held.begin_holding_message_writes();
    let db = site.db.to_str().unwrap();
    let args = ["--db", db, "send", "--from", "bob", "--to", "alice", "--subject", subject, "--body", "queued"];
    let out = match prefix.split_first() {
        None => site.piggyback(&args[2..]),
        Some((first, rest)) => with_stdin(Command::new(first).args(rest).arg(PIGGYBACK).args(args).env_clear(), b""),
    };
    drop(held);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("queued"),
        "send {subject} under a held lock: {stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The prefix that runs a program as the site's unprivileged user: as root, nobody,
/// owning the site's files (root reads and writes whatever the modes say); otherwise
/// ourselves.
fn as_site_user(site: &Site) -> Vec<&'static str> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Vec::new();
    }
    std::fs::set_permissions(site.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = Command::new("chown").arg("-R").arg("nobody:nogroup").arg(site.dir.path()).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    vec!["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn sidecar(db: &Path, suffix: &str) -> std::path::PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push(suffix);
    name.into()
}

/// A full disk as the programs meet it: a file-size limit of 0 (SIGXFSZ ignored), so
/// every write that would grow a file fails with EFBIG, as on a full disk.
const FULL_DISK: [&str; 3] = ["sh", "-c", "trap '' XFSZ; ulimit -f 0 && exec \"$0\" \"$@\""];

fn disk_full(sidecars: bool) {
    let site = Site::new(&["alice", "bob", "carol"]);
    if !sqlite_only(&site, "a full disk under a SQLite file") {
        return;
    }
    let post = |user: &str, program, path: &str, body| site.cgi(program).user(user).post(path, body);
    post("bob", Program::Friends, "", json!({"action": "request", "user": "alice"})).run().assert_status(200);
    post("alice", Program::Friends, "", json!({"action": "accept", "user": "bob"})).run().assert_status(200);
    let made = post("alice", Program::Posts, "", json!({"body": "a post"})).run();
    made.assert_status(201);
    let post_id = made.json["post"]["id"].as_i64().unwrap();
    let a = send(&site, "df-0").run();
    let message_id = a.json["sent"]["message_id"].as_i64().unwrap();
    assert!(subjects(&profile(&site).run()).contains(&"df-0".to_owned()), "df-0 announced");
    queued_send(&site, "df-1", &[]);
    // The last connection to close removes -wal and -shm, as on an idle site without
    // msqd; a connection held open (msqd's) keeps them.
    drop(site.conn());
    let holder = sidecars.then(|| site.conn());
    if let Some(h) = &holder {
        assert!(h.int("SELECT count(*) FROM users") > 0);
    }
    let present = ["-wal", "-shm"].map(|s| sidecar(&site.db, s).exists());
    assert_eq!(present, [sidecars, sidecars], "-wal/-shm present");

    for program in [Program::Profile, Program::Messages, Program::Friends, Program::Posts] {
        let r = run_with(&FULL_DISK, &site.cgi(program).user("alice"));
        r.assert_status(200);
        assert!(r.has_site_messages(), "GET {} on a full disk: {}", program.name(), r.json);
    }
    for (what, cgi) in [
        ("bio", post("alice", Program::Profile, "", json!({"bio": "full"}))),
        ("comment", post("bob", Program::Posts, &format!("/{post_id}/comments"), json!({"body": "c"}))),
        ("friend request", post("bob", Program::Friends, "", json!({"action": "request", "user": "carol"}))),
        ("mark read", post("alice", Program::Messages, &format!("/{message_id}/read"), json!({}))),
        ("send", post("bob", Program::Messages, "", json!({"to": "alice", "subject": "df-2", "body": "x"}))),
    ] {
        let r = run_with(&FULL_DISK, &cgi);
        assert!(is_unavailable(&r), "{what} on a full disk: {} {} {}", r.status, r.json, r.stderr);
    }
    assert_eq!(spool_files(&site, "new").len(), 1, "df-1 waits in new/");
    assert_eq!(spool_files(&site, "bad"), Vec::<String>::new(), "nothing in bad/");
    drop(holder);

    let after = profile(&site).run();
    assert_eq!(subjects(&after), ["df-1"], "after space is freed df-1 lands, announced once: {}", after.json);
    post("alice", Program::Messages, &format!("/{message_id}/read"), json!({})).run().assert_status(200);
    post("bob", Program::Posts, &format!("/{post_id}/comments"), json!({"body": "c"})).run().assert_status(201);
    for (subject, n) in [("df-0", 1), ("df-1", 1), ("df-2", 0)] {
        assert_eq!(stored_count(&site, subject), n, "{subject}");
    }
    site.assert_check_passes();
    assert_eq!((spool_files(&site, "new"), spool_files(&site, "bad")), (vec![], vec![]));
}

#[test]
#[allow(clippy::print_stderr, reason = "the counts are said where the test's output goes")]
fn programs_killed_at_random_lose_no_accepted_send_and_store_none_twice() {
    let users = ["alice", "bob", "carol", "dave"];
    let site = unlimited_site(&users);
    let mut rng = Rng::seeded();
    let mut accepted = Vec::new();
    let (mut started, mut kills, mut sent) = (0, 0, 0);
    for _ in 0..ROUNDS {
        let mut running: Vec<(Option<String>, Child)> = Vec::new();
        for _ in 0..PER_ROUND {
            let child = match rng.below(10) {
                0..6 => {
                    sent += 1;
                    let token = format!("tok-{sent}");
                    let from = users[rng.below(4) as usize];
                    let to = users.iter().copied().filter(|u| *u != from).nth(rng.below(3) as usize).unwrap();
                    let body = "kill test ".repeat(1 + rng.below(50) as usize);
                    let cgi = site
                        .cgi(Program::Messages)
                        .user(from)
                        .post("", json!({"to": to, "subject": token, "body": body}));
                    running.push((Some(token), spawn(&cgi)));
                    continue;
                }
                6..8 => site.piggyback_spawn(&["drain", "--stale-after", ["0", "30"][rng.below(2) as usize]]),
                _ => spawn(&site.cgi(Program::Profile).user(users[rng.below(4) as usize])),
            };
            running.push((None, child));
        }
        started += running.len();
        for (_, child) in running.iter_mut() {
            if rng.below(10) < 3 {
                std::thread::sleep(Duration::from_micros(rng.below(3_000)));
                let _ = child.kill();
            }
        }
        for (token, child) in running {
            let out = child.wait_with_output().unwrap();
            if out.status.signal() == Some(libc::SIGKILL) {
                kills += 1;
                continue;
            }
            if let Some(token) = token {
                let status = status_of(&out.stdout);
                assert!(matches!(status, 201 | 202), "send {token} answered {status}");
                accepted.push(token);
            }
        }
    }
    // The test saw what it checks: sends accepted, and programs killed.
    assert!(!accepted.is_empty(), "no send was accepted in {started} processes: nothing was tested");
    assert!(kills > 0, "{kills} programs killed in {ROUNDS} rounds: the kill part tested nothing");

    site.piggyback_ok(&["drain", "--stale-after", "0"]);
    let conn = site.conn();
    let stored = conn.column("SELECT subject FROM messages ORDER BY subject");
    let mut twice = stored.clone();
    twice.dedup();
    assert_eq!(twice.len(), stored.len(), "a send was stored twice");
    let missing: Vec<_> = accepted.iter().filter(|t| !stored.contains(t)).collect();
    assert!(missing.is_empty(), "accepted but not stored: {missing:?}");
    if !site.is_postgres() {
        assert_eq!(conn.text("PRAGMA integrity_check"), "ok");
    }
    site.assert_check_passes();
    for sub in ["new", "cur", "bad"] {
        assert_eq!(spool_files(&site, sub), Vec::<String>::new(), "spool/{sub} is not empty");
    }
    eprintln!(
        "kill test: {started} processes, {kills} SIGKILLed, {} sends accepted, {} stored",
        accepted.len(),
        stored.len()
    );
}

#[test]
fn a_send_under_a_held_write_lock_is_queued_and_lands_once_after() {
    let site = Site::new(&["alice", "bob", "carol"]);
    if !sqlite_only(&site, "the write lock of a SQLite file") {
        return;
    }
    let held = site.conn();
    held.begin_holding_writes();
    let a = send(&site, "busy-1").run();
    assert_eq!(stored_count(&site, "busy-1"), 0, "stored under the lock");
    drop(held);
    a.assert_status(202);
    assert_eq!(a.json["sent"]["state"], "queued", "{}", a.json);
    let r = profile(&site).run();
    assert_eq!(subjects(&r), ["busy-1"], "busy-1 reaches alice's next response: {}", r.json);
    assert_eq!(stored_count(&site, "busy-1"), 1);
}

#[test]
fn under_a_held_write_lock_reads_answer_writes_503_sends_wait_and_nothing_is_lost() {
    let site = Site::new(&["alice", "bob", "carol"]);
    if !sqlite_only(&site, "the write lock of a SQLite file") {
        return;
    }
    send(&site, "lk-1").run().assert_status(201);
    let held = site.conn();
    held.begin_holding_writes();
    let read = profile(&site).run();
    let write = site.cgi(Program::Profile).user("alice").post("", json!({"bio": "under a lock"})).run();
    let sent = send(&site, "lk-2").run();
    drop(held);
    read.assert_status(200);
    assert!(read.json.get("profile").is_some(), "{}", read.json);
    assert!(!read.has_site_messages(), "the claim cannot take the lock, so no site_messages: {}", read.json);
    assert!(is_unavailable(&write), "write under the lock: {} {}", write.status, write.json);
    sent.assert_status(202);
    assert_eq!(spool_files(&site, "new").len(), 1, "the queued send waits in new/");
    let after = profile(&site).run();
    assert_eq!(subjects(&after), ["lk-1", "lk-2"], "after the lock, both announced: {}", after.json);
    assert_eq!(subjects(&profile(&site).run()), Vec::<String>::new(), "nothing announced twice");
    assert_eq!((stored_count(&site, "lk-1"), stored_count(&site, "lk-2")), (1, 1));
}

#[test]
fn a_read_only_database_answers_reads_keeps_sends_waiting_and_writes_again_after_chmod() {
    let site = Site::new(&["alice", "bob"]);
    if !sqlite_only(&site, "the modes of a SQLite file") {
        return;
    }
    let prefix = as_site_user(&site);
    let set_mode = |m| std::fs::set_permissions(&site.db, std::fs::Permissions::from_mode(m)).unwrap();
    set_mode(0o444);
    let read = run_with(&prefix, &profile(&site));
    read.assert_status(200);
    assert!(read.json.get("profile").is_some(), "{}", read.json);
    let write = run_with(&prefix, &site.cgi(Program::Profile).user("alice").post("", json!({"bio": "ro"})));
    assert!(is_unavailable(&write), "write to a read-only database: {} {}", write.status, write.json);
    assert!(write.stderr.contains("writable"), "the log says what to do: {}", write.stderr);
    run_with(&prefix, &send(&site, "rr-1")).assert_status(202);
    assert_eq!(spool_files(&site, "new").len(), 1, "the queued send waits in new/");
    queued_send(&site, "rr-0", &prefix); // the operator's `piggyback send`, as the site's user
    set_mode(0o644);
    let after = run_with(&prefix, &profile(&site));
    assert_eq!(subjects(&after), ["rr-0", "rr-1"], "after chmod 644 the waiting sends land: {}", after.json);
    for suffix in ["-shm", "-wal"] {
        let path = sidecar(&site.db, suffix);
        if path.exists() {
            assert_eq!(mode(&path), 0o644, "{suffix} follows the database's mode after the fault cleared");
        }
    }
    run_with(&prefix, &site.cgi(Program::Profile).user("alice").post("", json!({"bio": "rw"}))).assert_status(200);
    run_with(&prefix, &send(&site, "rr-2")).assert_status(201);
    for subject in ["rr-0", "rr-1", "rr-2"] {
        assert_eq!(stored_count(&site, subject), 1, "{subject}");
    }
    assert_eq!((spool_files(&site, "new"), spool_files(&site, "bad")), (vec![], vec![]));
    if !prefix.is_empty() {
        // Root's maintenance left -wal/-shm of its own, mode 0600: the next program root
        // runs gives them the database's owner and mode again, and the site writes.
        run_with(&prefix, &site.cgi(Program::Profile).user("bob"));
        for suffix in ["-wal", "-shm"] {
            let path = sidecar(&site.db, suffix);
            assert!(path.exists(), "{suffix} left by a reader");
            std::os::unix::fs::chown(&path, Some(0), Some(0)).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        site.piggyback_ok(&["drain"]);
        let want = std::fs::metadata(&site.db).unwrap();
        for suffix in ["-wal", "-shm"] {
            let path = sidecar(&site.db, suffix);
            if let Ok(got) = std::fs::metadata(&path) {
                use std::os::unix::fs::MetadataExt;
                assert_eq!(
                    (got.uid(), got.mode() & 0o777),
                    (want.uid(), want.mode() & 0o777),
                    "{suffix} after root's drain"
                );
            }
        }
        run_with(&prefix, &send(&site, "rr-3")).assert_status(201);
    }
}

#[test]
fn a_full_disk_without_wal_and_shm_answers_reads_refuses_writes_and_loses_nothing() {
    disk_full(false);
}

#[test]
fn a_full_disk_with_wal_and_shm_answers_reads_refuses_writes_and_loses_nothing() {
    disk_full(true);
}

#[test]
fn a_spool_moved_away_and_replaced_by_a_file_refuses_sends_and_loses_nothing() {
    let site = Site::new(&["alice", "bob"]);
    let spool = site.spool();
    let away = spool.with_extension("away");
    queued_send(&site, "sp-1", &[]);
    std::fs::rename(&spool, &away).unwrap();
    std::fs::write(&spool, "not a directory\n").unwrap();
    let read = profile(&site).run();
    read.assert_status(200);
    assert!(read.has_site_messages(), "read with a file for a spool: {}", read.json);
    let sent = send(&site, "sp-2").run();
    assert!(is_unavailable(&sent), "send with a file for a spool: {} {}", sent.status, sent.json);
    assert!(sent.stderr.contains("PIGGYBACK_SPOOL"), "the log names the setting: {}", sent.stderr);
    std::fs::remove_file(&spool).unwrap();
    std::fs::rename(&away, &spool).unwrap();
    let after = profile(&site).run();
    assert_eq!(subjects(&after), ["sp-1"], "sp-1 lands once the spool is back: {}", after.json);
    std::fs::remove_dir_all(&spool).unwrap();
    send(&site, "sp-3").run().assert_status(201);
    for (subject, n) in [("sp-1", 1), ("sp-2", 0), ("sp-3", 1)] {
        assert_eq!(stored_count(&site, subject), n, "{subject}");
    }
}

#[test]
fn corrupt_truncated_and_empty_request_files_go_to_bad_and_the_rest_lands() {
    let site = Site::new(&["alice", "bob"]);
    queued_send(&site, "bf-1", &[]);
    let new = site.spool().join("new");
    let [good] = <[String; 1]>::try_from(spool_files(&site, "new")).unwrap();
    let data = std::fs::read(new.join(&good)).unwrap();
    let mut flipped = data.clone();
    let at = flipped.len() - 5;
    flipped[at] ^= 0x01;
    let broken: [(&str, &[u8]); 4] = [
        ("00000000000000000001.1.1", &flipped),
        ("00000000000000000002.1.1", &data[..data.len() / 2]),
        ("00000000000000000003.1.1", b""),
        ("00000000000000000004.1.1", b"hello\n"),
    ];
    for (name, content) in broken {
        std::fs::write(new.join(name), content).unwrap();
    }
    settle_spool(&site.spool());
    let read = profile(&site).run();
    read.assert_status(200);
    assert_eq!(subjects(&read), ["bf-1"], "the good file lands beside the broken: {}", read.json);
    assert_eq!(spool_files(&site, "bad"), broken.map(|(name, _)| name.to_owned()));
    assert_eq!(read.stderr.matches("moved to bad/").count(), broken.len(), "one log line per file: {}", read.stderr);
    assert_eq!((spool_files(&site, "new"), spool_files(&site, "cur")), (vec![], vec![]));
    assert_eq!(stored_count(&site, "bf-1"), 1);
}

#[test]
fn a_database_of_a_newer_schema_is_503_and_the_log_does_not_advise_init() {
    let site = Site::new(&["alice", "bob"]);
    let conn = site.conn();
    let version = conn.schema_version();
    conn.set_schema_version(99);
    let read = profile(&site).run();
    assert!(is_unavailable(&read), "read of a newer schema: {} {}", read.status, read.json);
    assert!(read.stderr.contains("newer") && !read.stderr.contains("run `piggyback init`"), "{}", read.stderr);
    let init = site.piggyback(&["init"]);
    assert!(!init.status.success(), "piggyback init on a newer schema: {}", String::from_utf8_lossy(&init.stdout));
    conn.set_schema_version(version);
    profile(&site).run().assert_status(200);
}
