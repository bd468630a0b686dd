//! Faults injected for real while draining: every file waits or lands once.

use crate::support::{PIGGYBACK, Raw, TestDb, uname};
use piggyback::message_store::{Store, StoreError};
use piggyback::model::{MessageKind, NewMessage, UserId, now};
use piggyback::msq::spool::{FileRequest, Spool, SpoolState};
use piggyback::msq::{DrainReport, Queue, QueueError};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Request files waiting in every test.
const FILES: usize = 6;

/// `FILES` sends from bob to alice waiting in a fresh spool at `dir/spool`.
fn waiting(store: &Store, dir: &Path) -> (Spool, Vec<String>, UserId) {
    let add = |name: &str| store.add_user(&uname(name), name, None, now()).unwrap().unwrap();
    let (alice, bob) = (add("alice"), add("bob"));
    let spool = Spool::new(dir.join("spool"));
    spool.create().unwrap();
    let ids: Vec<String> = (0..FILES).map(|i| format!("{:020}.1.{i}", 1_000 + i)).collect();
    for id in &ids {
        spool.enqueue(&FileRequest::Send(note(id, bob, alice))).unwrap();
    }
    (spool, ids, alice)
}

fn note(id: &str, from: UserId, to: UserId) -> NewMessage {
    NewMessage {
        request_id: id.into(),
        from,
        to,
        subject: format!("note {id}"),
        body: "b".repeat(200),
        kind: MessageKind::Note,
        idempotency_key: None,
        sent_at: now(),
    }
}

/// The drain met an error of the environment: what it says, after checking that it
/// is not a refusal and that every file still waits, none in `bad/`.
fn environment_error(got: Result<DrainReport, QueueError>, spool: &Spool) -> String {
    let said = match got {
        Err(QueueError::Store(e)) => {
            assert!(!e.is_refusal(), "{e}");
            e.to_string()
        }
        Ok(report) => {
            assert!(report.bad.is_empty() && report.applied == 0, "{report:?}");
            report.stopped.clone().unwrap_or_else(|| panic!("the drain neither failed nor stopped: {report:?}"))
        }
        Err(e) => panic!("not an error of the database: {e}"),
    };
    assert_eq!(spool.state().unwrap(), SpoolState { waiting: FILES, ..Default::default() }, "{said}");
    said
}

/// Every file stored exactly once and the spool empty.
fn applied_once(db: &Path, spool: &Spool, ids: &[String], alice: UserId) {
    let raw = Raw::open(db);
    let list = ids.iter().map(|i| format!("'{i}'")).collect::<Vec<_>>().join(", ");
    let sql = format!("SELECT count(*) FROM messages WHERE request_id IN ({list})");
    assert_eq!(raw.int(&sql), FILES as i64, "each waiting file stored");
    let distinct = format!("SELECT count(DISTINCT request_id) FROM messages WHERE request_id IN ({list})");
    assert_eq!(raw.int(&distinct), FILES as i64, "none twice");
    assert_eq!(raw.int(&format!("SELECT new FROM mailbox WHERE user_id = {}", alice.0)), FILES as i64);
    assert_eq!(spool.state().unwrap(), SpoolState::default());
}

fn drain_all(db: &Path, spool: &Spool) -> DrainReport {
    let store = Store::open(db).unwrap();
    let report = Queue::new(&store, spool.clone()).drain_all(0, now()).unwrap();
    assert!(report.bad.is_empty() && report.stopped.is_none(), "{report:?}");
    report
}

// ---- a full disk, on both engines -----------------------------------------------------

/// A tmpfs of `size` mounted at `at`, owned by `uid`; unmounted when dropped.
struct Tmpfs {
    at: PathBuf,
}

impl Tmpfs {
    fn mount(at: &Path, size: &str, uid: u32) -> Tmpfs {
        std::fs::create_dir_all(at).unwrap();
        let options = format!("size={size},mode=0700,uid={uid},gid={uid}");
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &options, "tmpfs"])
            .arg(at)
            .output()
            .expect("mount starts");
        assert!(out.status.success(), "mounting a small tmpfs needs root: {}", String::from_utf8_lossy(&out.stderr));
        Tmpfs { at: at.to_owned() }
    }

    /// Fills the filesystem to the last byte with one file; returns its path.
    fn fill(&self) -> PathBuf {
        let filler = self.at.join("filler");
        let mut file = std::fs::File::create(&filler).unwrap();
        let chunk = vec![0u8; 4096];
        while file.write_all(&chunk).is_ok() {}
        while file.write_all(&chunk[..1]).is_ok() {}
        filler
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(&self.at).status();
    }
}

/// A tablespace on a tmpfs of its own, for the PostgreSQL server of the tests (which
/// runs on this machine: its sockets are local). Dropped, and unmounted, after the
/// test's database (declare it first).
struct Tablespace {
    superuser: String,
    name: String,
    tmpfs: Tmpfs,
    /// The database whose `messages` it holds, moved back out
    /// before the tablespace is dropped, whether or not that database is dropped.
    holds: std::cell::RefCell<Option<String>>,
}

impl Tablespace {
    fn new(base: &str, at: &Path) -> Tablespace {
        let superuser = as_superuser(base);
        let mut admin = postgres::Client::connect(&superuser, postgres::NoTls).unwrap();
        let pid: i32 = admin.query_one("SELECT pg_backend_pid()", &[]).unwrap().get(0);
        let uid = std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(format!("/proc/{pid}")).unwrap());
        let tmpfs = Tmpfs::mount(at, "1m", uid);
        let name = format!("pbt_small_{}_{}", std::process::id(), now());
        admin.batch_execute(&format!("CREATE TABLESPACE {name} LOCATION '{}'", at.display())).unwrap();
        // The site's own role moves its table: no superuser session on its database,
        // which the database's owner could not end when it drops it.
        admin.batch_execute(&format!("GRANT CREATE ON TABLESPACE {name} TO piggyback")).unwrap();
        Tablespace { superuser, name, tmpfs, holds: Default::default() }
    }

    /// Moves the (empty) `messages` table of `db` into the tablespace: its first insert
    /// must extend a file there.
    fn take_messages(&self, db: &Path) {
        let url = db.to_str().unwrap().to_owned();
        let mut owner = postgres::Client::connect(&url, postgres::NoTls).unwrap();
        owner.batch_execute(&format!("ALTER TABLE messages SET TABLESPACE {}", self.name)).unwrap();
        *self.holds.borrow_mut() = Some(url);
    }
}

impl Drop for Tablespace {
    fn drop(&mut self) {
        if let Some(db) = self.holds.borrow().as_deref()
            && let Ok(mut admin) = postgres::Client::connect(db, postgres::NoTls)
        {
            let _ = admin.batch_execute("ALTER TABLE messages SET TABLESPACE pg_default");
        }
        if let Ok(mut admin) = postgres::Client::connect(&self.superuser, postgres::NoTls) {
            let _ = admin.batch_execute(&format!("DROP TABLESPACE IF EXISTS {}", self.name));
        }
    }
}

/// `url` for the cluster's superuser, `postgres`,
/// whom the test cluster trusts over its socket as it trusts `piggyback`.
fn as_superuser(url: &str) -> String {
    let mut url = url::Url::parse(url).unwrap();
    let pairs: Vec<(String, String)> =
        url.query_pairs().filter(|(k, _)| k != "user").map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
    url.query_pairs_mut().clear().extend_pairs(pairs).append_pair("user", "postgres");
    url.to_string()
}

// ---- SQLite ------------------------------------------------------------------------

/// SQLITE_CORRUPT: a copy of the database with one page of an index of `messages`
/// overwritten; the operator restores the undamaged database, and the files land.
#[test]
fn a_damaged_index_page_stops_the_drain_and_the_files_wait_for_the_restored_database() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("site.db");
    let store = Store::init(&good).unwrap();
    let (spool, ids, alice) = waiting(&store, dir.path());
    drop(store);
    let damaged = dir.path().join("damaged.db");
    let raw = rusqlite::Connection::open(&good).unwrap();
    raw.execute("VACUUM INTO ?1", [damaged.to_str().unwrap()]).unwrap();
    drop(raw);
    let copy = rusqlite::Connection::open(&damaged).unwrap();
    let page_size: i64 = copy.query_row("PRAGMA page_size", [], |r| r.get(0)).unwrap();
    let root: i64 = copy
        .query_row(
            "SELECT rootpage FROM sqlite_schema WHERE type = 'index' AND tbl_name = 'messages' ORDER BY name LIMIT 1",
            [],
            |r| r.get(0),
        )
        .unwrap();
    drop(copy);
    let mut file = std::fs::OpenOptions::new().write(true).open(&damaged).unwrap();
    std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(((root - 1) * page_size) as u64)).unwrap();
    file.write_all(&vec![0xA5; page_size as usize]).unwrap();
    file.sync_all().unwrap();

    let store = Store::open(&damaged).unwrap();
    let got = Queue::new(&store, spool.clone()).drain_all(0, now());
    assert!(matches!(got, Err(QueueError::Store(StoreError::Corrupt(_)))), "{got:?}");
    let said = environment_error(got, &spool);
    assert!(said.contains("restore the database from a backup"), "the operator is told what to do: {said}");

    assert_eq!(drain_all(&good, &spool).applied, FILES);
    applied_once(&good, &spool, &ids, alice);
}

/// SQLITE_IOERR: `piggyback drain` runs with its file size limit at one block
/// (`ulimit -f 1`, SIGXFSZ ignored), so the kernel refuses every write past the first
/// 512 bytes of a file with EFBIG, which SQLite reports as SQLITE_IOERR_WRITE when
/// it appends the batch to the `-wal`. (A real failing disk is out of reach here;
/// this is the same error code from the same system call.) The spool's renames write
/// nothing and are not affected.
#[test]
fn an_io_error_stops_the_drain_and_the_files_wait() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("site.db");
    let store = Store::init(&db).unwrap();
    let (spool, ids, alice) = waiting(&store, dir.path());
    drop(store);
    // A reader keeps the `-wal` and `-shm` made, as on a live site: the limited drain
    // opens the database as usual and meets the limit when it writes.
    let reader = Raw::open(&db);
    assert_eq!(reader.int("SELECT count(*) FROM users"), 2);
    let limited = std::process::Command::new("sh")
        .arg("-c")
        .arg("trap '' XFSZ; ulimit -f 1 && exec \"$0\" \"$@\"")
        .arg(PIGGYBACK)
        .args(["--db", db.to_str().unwrap(), "--spool", spool.root().to_str().unwrap(), "drain", "--stale-after", "0"])
        .env_clear()
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&limited.stderr);
    assert_eq!(limited.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("I/O error on the message database"), "{stderr}");
    assert!(stderr.contains("check its disk"), "the operator is told what to do: {stderr}");
    assert_eq!(spool.state().unwrap(), SpoolState { waiting: FILES, ..Default::default() }, "{stderr}");
    drop(reader);

    assert_eq!(drain_all(&db, &spool).applied, FILES);
    applied_once(&db, &spool, &ids, alice);
}

/// SQLITE_FULL on SQLite: the database on a tmpfs filled to the last byte while the
/// store is open (its `-wal` and `-shm` made). On PostgreSQL (`disk_full`, 53100):
/// the `messages` table in a tablespace on a tmpfs filled the same way, so that the
/// first insert cannot extend the table's file. Room is made again, and the files land.
#[test]
fn a_full_disk_stops_the_drain_and_the_files_wait_for_room() {
    let dir = tempfile::tempdir().unwrap();
    // The PostgreSQL server's user must reach the tablespace under it.
    std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o711)).unwrap();
    let small = dir.path().join("small");
    let tablespace = crate::support::postgres_base().map(|base| Tablespace::new(&base, &small));
    let test_db = TestDb::new(dir.path());
    let sqlite_tmpfs = tablespace.is_none().then(|| Tmpfs::mount(&small, "2m", 0));
    let db = if test_db.is_postgres() { test_db.path.clone() } else { small.join("site.db") };
    let tmpfs = sqlite_tmpfs.as_ref().or(tablespace.as_ref().map(|t| &t.tmpfs)).unwrap();

    let store = Store::init(&db).unwrap();
    let (spool, ids, alice) = waiting(&store, dir.path());
    if let Some(space) = &tablespace {
        space.take_messages(&db);
    }
    let filler = tmpfs.fill();

    let got = Queue::new(&store, spool.clone()).drain_all(0, now());
    assert!(matches!(got, Err(QueueError::Store(StoreError::Full))), "{got:?}");
    let said = environment_error(got, &spool);
    assert!(said.contains("free space"), "the operator is told what to do: {said}");

    std::fs::remove_file(filler).unwrap();
    drop(store);
    assert_eq!(drain_all(&db, &spool).applied, FILES);
    applied_once(&db, &spool, &ids, alice);
}

// ---- a connection the server cuts -------------------------------------------------------

/// On PostgreSQL the drainer waits for a lock another session holds on `messages`,
/// and an administrator terminates its server process (`pg_terminate_backend`): the
/// drain fails with the connection, and a new drainer applies every file once. On
/// SQLite no server can cut a connection: the same drain meets the held write lock,
/// gives up (busy), and the files wait all the same.
#[test]
fn a_drainer_whose_connection_is_cut_leaves_every_file_waiting() {
    let dir = tempfile::tempdir().unwrap();
    let db = TestDb::new(dir.path());
    let store = Store::init(&db.path).unwrap();
    let (spool, ids, alice) = waiting(&store, dir.path());
    drop(store);
    let holder = Raw::open(&db.path);
    let patience = if db.is_postgres() {
        holder.exec("BEGIN; LOCK TABLE messages IN SHARE MODE");
        Duration::from_secs(60)
    } else {
        holder.exec("BEGIN IMMEDIATE");
        Duration::from_millis(200)
    };
    let got = std::thread::scope(|s| {
        let drain = s.spawn(|| {
            let store = Store::open(&db.path).unwrap();
            let _patience = store.patience(patience);
            Queue::new(&store, spool.clone()).drain(256, 0, patience, now())
        });
        if db.is_postgres() {
            let watcher = Raw::open(&db.path);
            let waiting = "SELECT count(*) FROM pg_stat_activity
                           WHERE datname = current_database() AND wait_event_type = 'Lock'";
            let mut tries = 0;
            while watcher.int(waiting) < 1 {
                tries += 1;
                assert!(tries < 6000, "the drain never waited for the lock");
                std::thread::sleep(Duration::from_millis(10));
            }
            watcher.exec(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                 WHERE datname = current_database() AND wait_event_type = 'Lock'",
            );
        }
        drain.join().unwrap()
    });
    holder.exec("ROLLBACK");
    if db.is_postgres() {
        assert!(matches!(got, Err(QueueError::Store(StoreError::Unreachable(_)))), "{got:?}");
    } else {
        assert!(matches!(got, Err(QueueError::Store(StoreError::Busy))), "{got:?}");
    }
    environment_error(got, &spool);

    assert_eq!(drain_all(&db.path, &spool).applied, FILES);
    applied_once(&db.path, &spool, &ids, alice);
}

// ---- a refusal ---------------------------------------------------------------------------

/// A file the database refuses for its content (its recipient is no user: a foreign
/// key) goes to `bad/` on either engine, and the files around it are applied.
#[test]
fn a_file_the_database_refuses_goes_to_bad_and_the_others_land() {
    let dir = tempfile::tempdir().unwrap();
    let db = TestDb::new(dir.path());
    let store = Store::init(&db.path).unwrap();
    let (spool, ids, alice) = waiting(&store, dir.path());
    let bob = store.user_by_name(&uname("bob")).unwrap().unwrap().id;
    spool.enqueue(&FileRequest::Send(note("00000000000000001003.1.9", bob, UserId(999_999)))).unwrap();
    let report = Queue::new(&store, spool.clone()).drain_all(0, now()).unwrap();
    assert_eq!((report.applied, report.bad.len(), report.stopped.as_deref()), (FILES, 1, None), "{report:?}");
    assert!(report.bad[0].contains("00000000000000001003.1.9"), "{report:?}");
    assert_eq!(spool.state().unwrap(), SpoolState { bad: 1, ..Default::default() });
    drop(store);
    let raw = Raw::open(&db.path);
    let list = ids.iter().map(|i| format!("'{i}'")).collect::<Vec<_>>().join(", ");
    assert_eq!(raw.int(&format!("SELECT count(*) FROM messages WHERE request_id IN ({list})")), FILES as i64);
    assert_eq!(raw.int(&format!("SELECT new FROM mailbox WHERE user_id = {}", alice.0)), FILES as i64);
}
