//! Missing and bad settings: a clear 500 or 503 naming the setting; piggyback doctor finds each.

use crate::support::{assert_headers, message_site, three_users};

use crate::support::{Cgi, PIGGYBACK, Program, Response, TestDb, postgres_only};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use tempfile::TempDir;

const SERVER_USER: &str = "nobody";

struct Install {
    /// Declared before `dir`: a PostgreSQL database is dropped first.
    test_db: TestDb,
    dir: TempDir,
}

impl Install {
    /// DIR/data (the database and spool, the server's), DIR/etc (key and settings,
    /// root's, readable by the server's group), DIR/site (the site's programs).
    fn new() -> Install {
        // SAFETY: geteuid cannot fail.
        assert_eq!(unsafe { libc::geteuid() }, 0, "the doctor tests become another user: run them as root");
        let dir = tempfile::tempdir().expect("a temporary directory");
        let test_db = TestDb::new(&dir.path().join("data"));
        let install = Install { test_db, dir };
        let group = group_of(SERVER_USER);
        sh(&format!("chmod 755 {0} && mkdir -p {0}/data {0}/etc {0}/site", install.root().display()));
        let out = Command::new(PIGGYBACK)
            .args([
                "--db",
                install.db().to_str().unwrap(),
                "--spool",
                install.path("data/spool").to_str().unwrap(),
                "init",
            ])
            .env_clear()
            .env("PIGGYBACK_SECRET_FILE", install.path("etc/secret"))
            .output()
            .expect("piggyback runs");
        assert!(out.status.success(), "init: {}", String::from_utf8_lossy(&out.stderr));
        std::fs::write(
            install.settings(),
            format!(
                "# as scripts/install writes it\nPIGGYBACK_DB={}\nPIGGYBACK_SECRET_FILE={}\nPIGGYBACK_SPOOL={}\nPIGGYBACK_WRAP_ROOT={}\n",
                install.db().display(),
                install.path("etc/secret").display(),
                install.path("data/spool").display(),
                install.path("site").display(),
            ),
        )
        .unwrap();
        sh(&format!(
            "cd {} && chown -R {SERVER_USER}:{group} data && chmod 750 data && chown root:{group} etc etc/secret etc/piggyback-wrap.conf \
             && chmod 750 etc && chmod 640 etc/secret etc/piggyback-wrap.conf && chmod 755 site",
            install.root().display()
        ));
        install
    }

    fn root(&self) -> &Path {
        self.dir.path()
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.root().join(rel)
    }

    /// The SQLite file in data/, or the test's PostgreSQL database.
    fn db(&self) -> PathBuf {
        if self.test_db.is_postgres() { self.test_db.path.clone() } else { self.path("data/piggyback.db") }
    }

    fn is_postgres(&self) -> bool {
        self.test_db.is_postgres()
    }

    /// A test of the SQLite file's permissions on a PostgreSQL install: skipped, and
    /// said so (the SQLite run of the suite runs it).
    #[allow(clippy::print_stderr, reason = "the skip is said where the test's output goes")]
    fn sqlite_file_skipped(&self) -> bool {
        if self.is_postgres() {
            eprintln!("skipped on PostgreSQL: a test of the SQLite file's permissions");
        }
        self.is_postgres()
    }

    fn settings(&self) -> PathBuf {
        self.path("etc/piggyback-wrap.conf")
    }

    /// `piggyback doctor --settings FILE ARGS…` with an empty environment.
    fn doctor(&self, args: &[&str]) -> Report {
        let out = Command::new(PIGGYBACK)
            .args(["doctor", "--settings", self.settings().to_str().unwrap()])
            .args(args)
            .env_clear()
            .output()
            .expect("piggyback runs");
        Report::of(out)
    }

    fn doctor_as(&self, user: &str) -> Report {
        self.doctor(&["--as", user])
    }

    fn sh(&self, script: &str) {
        sh(&format!("cd {} && {script}", self.root().display()));
    }
}

struct Report {
    code: Option<i32>,
    lines: Vec<String>,
    stderr: String,
}

impl Report {
    fn of(out: Output) -> Report {
        Report {
            code: out.status.code(),
            lines: String::from_utf8_lossy(&out.stdout).lines().map(str::to_owned).collect(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    fn problems(&self) -> Vec<&str> {
        self.lines.iter().filter(|l| l.starts_with("problem ")).map(String::as_str).collect()
    }

    /// Exit 1, and a problem line containing every one of `words`.
    fn assert_problem(&self, words: &[&str]) {
        assert_eq!(self.code, Some(1), "{self:?}");
        assert!(
            self.problems().iter().any(|l| words.iter().all(|w| l.contains(w))),
            "no problem line with {words:?}: {self:?}"
        );
    }
}

impl std::fmt::Debug for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit {:?}\n{}\nstderr: {}", self.code, self.lines.join("\n"), self.stderr)
    }
}

fn sh(script: &str) {
    let status = Command::new("sh").args(["-c", script]).status().expect("sh runs");
    assert!(status.success(), "{script}");
}

fn group_of(user: &str) -> String {
    let out = Command::new("id").args(["-gn", user]).output().expect("id runs");
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

// ---- configuration -------------------------------------------------------------

/// The single stderr line of a misconfigured request, which must name `variable`.
fn assert_misconfigured(r: &Response, variable: &str) {
    r.assert_status(500);
    assert_eq!(r.error_code(), "misconfigured");
    assert!(!r.has_site_messages());
    let lines: Vec<&str> = r.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "exactly one stderr line: {:?}", r.stderr);
    assert!(lines[0].contains(variable), "{variable} not named in {:?}", lines[0]);
    assert!(!r.stderr.contains("panicked"));
}

#[test]
fn a_good_install_passes_every_check_as_the_servers_user() {
    let install = Install::new();
    let r = install.doctor_as(SERVER_USER);
    assert_eq!(r.code, Some(0), "{r:?}");
    assert!(r.problems().is_empty(), "{r:?}");
    for check in ["ok settings file", "ok database", "ok spool", "ok session key", "ok PIGGYBACK_WRAP_ROOT"] {
        assert!(r.lines.iter().any(|l| l.starts_with(check)), "no `{check}` line: {r:?}");
    }
}

#[test]
fn another_user_than_the_servers_is_refused_the_database_and_told_what_to_do() {
    let install = Install::new();
    // daemon is not in nobody's group: the settings file and the data are closed to it.
    let r = install.doctor_as("daemon");
    r.assert_problem(&["settings file", "not readable by daemon", "chmod 750"]);
    assert!(r.lines.iter().all(|l| l.starts_with("ok ") || l.starts_with("problem ") || l.contains("problem(s)")));
}

#[test]
fn an_unreadable_settings_file_is_named_as_the_cause() {
    let install = Install::new();
    install.sh("chmod 600 etc/piggyback-wrap.conf");
    let r = install.doctor_as(SERVER_USER);
    r.assert_problem(&["settings file", "not readable by nobody", "chown root:"]);
    // What the wrapper would log instead ("PIGGYBACK_WRAP_ROOT is not set") follows from it.
    r.assert_problem(&["PIGGYBACK_WRAP_ROOT is not set"]);
}

#[test]
fn a_settings_file_others_may_write_is_ignored_and_said_so() {
    let install = Install::new();
    install.sh("chmod 666 etc/piggyback-wrap.conf");
    install.doctor_as(SERVER_USER).assert_problem(&["writable by its group or others", "chmod 640"]);
}

#[test]
fn a_read_only_database_is_a_problem() {
    let install = Install::new();
    if install.sqlite_file_skipped() {
        return;
    }
    install.sh("chmod 400 data/piggyback.db");
    install.doctor_as(SERVER_USER).assert_problem(&["database", "not readable and writable by nobody"]);
}

#[test]
fn a_database_folder_the_server_cannot_write_is_a_problem() {
    let install = Install::new();
    if install.sqlite_file_skipped() {
        return;
    }
    install.sh("chown root data && chmod 755 data");
    install.doctor_as(SERVER_USER).assert_problem(&["database folder", "-wal and -shm"]);
}

#[test]
fn a_spool_the_server_cannot_write_is_a_problem() {
    let install = Install::new();
    install.sh("chown root data/spool/new");
    install.doctor_as(SERVER_USER).assert_problem(&["spool folder", "new", "not writable by nobody"]);
}

#[test]
fn a_missing_or_unsafe_wrap_root_is_a_problem() {
    let install = Install::new();
    install.sh("rmdir site");
    install.doctor_as(SERVER_USER).assert_problem(&["PIGGYBACK_WRAP_ROOT", "site", "No such file"]);
    install.sh("mkdir site && chmod 777 site");
    install.doctor_as(SERVER_USER).assert_problem(&["PIGGYBACK_WRAP_ROOT", "writable by its group or others"]);
}

#[test]
fn an_unreadable_session_key_is_a_problem() {
    let install = Install::new();
    install.sh("chmod 600 etc/secret");
    install.doctor_as(SERVER_USER).assert_problem(&["session key", "etc/secret"]);
}

#[test]
fn root_without_as_is_told_its_checks_say_nothing() {
    let install = Install::new();
    let r = install.doctor(&[]);
    r.assert_problem(&["running as root", "--as"]);
    assert_eq!(r.problems().len(), 1, "root passes every other check: {r:?}");
}

#[test]
fn an_unknown_user_is_an_error() {
    let install = Install::new();
    let r = install.doctor_as("no-such-user-here");
    assert_eq!(r.code, Some(1), "{r:?}");
    assert!(r.stderr.contains("no user named no-such-user-here"), "{r:?}");
}

#[test]
fn a_postgresql_install_passes_and_one_the_role_may_not_write_is_a_problem() {
    let install = Install::new();
    if !postgres_only(install.is_postgres(), "the doctor on PostgreSQL") {
        return;
    }
    let r = install.doctor_as(SERVER_USER);
    assert_eq!(r.code, Some(0), "{r:?}");
    assert!(r.lines.iter().any(|l| l.starts_with("ok database") && l.contains("writable")), "{r:?}");
    let url = install.db();
    // A right taken away holds at once for every session, a pooler's kept ones too
    // (`ALTER DATABASE … SET default_transaction_read_only` would reach only new ones).
    let mut admin = postgres::Client::connect(url.to_str().unwrap(), postgres::NoTls).unwrap();
    admin.batch_execute("REVOKE UPDATE ON mailbox FROM CURRENT_USER").unwrap();
    install.doctor_as(SERVER_USER).assert_problem(&["database", "read-only for nobody"]);
}

#[test]
fn a_missing_or_relative_database_setting_is_500_misconfigured() {
    let (site, id) = message_site();
    for cgi in [
        site.cgi(Program::Profile).user("alice").without("PIGGYBACK_DB"),
        site.cgi(Program::Profile).user("alice").var("PIGGYBACK_DB", "site.db"),
        site.cgi(Program::Profile).user("alice").var("PIGGYBACK_EMPTY", "sometimes"),
        site.cgi(Program::Profile).user("alice").var("PIGGYBACK_DB", "/nonexistent/site.db"),
    ] {
        let r = cgi.respond();
        assert_headers(&r, "500 Internal Server Error", &[]);
        assert_eq!(
            r.json,
            json!({"error": {"code": "misconfigured",
                             "message": "the server is misconfigured; its error log names the setting"}})
        );
    }
    assert_eq!(site.state(id), "new");
}

#[test]
fn a_database_of_another_schema_version_is_503_with_retry_after() {
    let (site, _) = message_site();
    site.conn().set_schema_version(99);
    let r = site.cgi(Program::Profile).user("alice").respond();
    assert_headers(&r, "503 Service Unavailable", &[("Retry-After", "1")]);
    assert_eq!(r.error_code(), "unavailable");
    assert!(!r.has_site_messages());
}

#[test]
fn a_missing_or_relative_database_is_a_500_naming_the_variable() {
    let site_process = three_users();
    for program in Program::ALL {
        assert_misconfigured(&site_process.cgi(program).user("alice").without("PIGGYBACK_DB").run(), "PIGGYBACK_DB");
        assert_misconfigured(&site_process.cgi(program).user("alice").var("PIGGYBACK_DB", "").run(), "PIGGYBACK_DB");
        assert_misconfigured(
            &site_process.cgi(program).user("alice").var("PIGGYBACK_DB", "site.db").run(),
            "PIGGYBACK_DB",
        );
    }
    // Also without identity and for a POST: the configuration is checked first.
    assert_misconfigured(&Cgi::new(Program::Messages, None).run(), "PIGGYBACK_DB");
    let post = Cgi::new(Program::Messages, None).user("alice").post("", json!({}));
    assert_misconfigured(&post.run(), "PIGGYBACK_DB");
}

#[test]
fn a_database_file_that_does_not_exist_is_a_500_and_is_not_created() {
    let site_process = three_users();
    let missing = site_process.dir.path().join("missing.db");
    let r = site_process.cgi(Program::Profile).user("alice").var("PIGGYBACK_DB", missing.to_str().unwrap()).run();
    assert_misconfigured(&r, "PIGGYBACK_DB");
    assert!(!missing.exists());
}

#[test]
fn other_bad_settings_are_500s_naming_their_variable() {
    let site_process = three_users();
    for (variable, value) in [
        ("PIGGYBACK_EMPTY", "never"),
        ("PIGGYBACK_MAX_ITEMS", "0"),
        ("PIGGYBACK_MAX_ITEMS", "many"),
        ("PIGGYBACK_SNIPPET_CHARS", "-1"),
    ] {
        let r = site_process.cgi(Program::Profile).user("alice").var(variable, value).run();
        assert_misconfigured(&r, variable);
    }
}
