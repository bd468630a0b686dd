//! Helpers shared by the integration tests: temporary sites (a database, and a session
//! key when asked, made with the `piggyback` command), CGI requests built as a web server
//! builds them, run either as a real process or in-process through `gateway::respond`,
//! and their responses parsed.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs::File;
use std::io::{Seek, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use piggyback::names::UserName;
use serde_json::Value;
use tempfile::TempDir;

// ---- the engine under test ---------------------------------------------------

/// The PostgreSQL server the suite runs against when `PIGGYBACK_TEST_POSTGRES` names
/// one (a `postgresql://` URL; scripts/test sets it, directly and through pgbouncer);
/// otherwise every database is a SQLite file.
pub fn postgres_base() -> Option<String> {
    std::env::var("PIGGYBACK_TEST_POSTGRES").ok().filter(|v| !v.is_empty())
}

/// Whether a test's PostgreSQL-only part `what` runs: on SQLite it is skipped, and says
/// so on stderr rather than passing in silence (scripts/test runs the suite again with
/// `PIGGYBACK_TEST_POSTGRES` set, so every such part runs there).
#[allow(clippy::print_stderr, reason = "the skip is said where the test's output goes")]
pub fn postgres_only(is_postgres: bool, what: &str) -> bool {
    if !is_postgres {
        eprintln!("skipped: PIGGYBACK_TEST_POSTGRES not set: {what}");
    }
    is_postgres
}

/// Whether a test's SQLite-only part `what` runs: on PostgreSQL it is skipped, and says
/// so on stderr.
#[allow(clippy::print_stderr, reason = "the skip is said where the test's output goes")]
pub fn sqlite_only(site: &Site, what: &str) -> bool {
    if site.is_postgres() {
        eprintln!("skipped on PostgreSQL: {what}");
    }
    !site.is_postgres()
}

/// A fresh, empty database for one test: a file in `dir`, or a database of its own on
/// the PostgreSQL server, dropped with this value.
pub struct TestDb {
    /// What `PIGGYBACK_DB` and `--db` take: the file's path or the database's URL.
    pub path: PathBuf,
    postgres: Option<(String, String)>,
}

impl TestDb {
    pub fn new(dir: &Path) -> TestDb {
        let Some(base) = postgres_base() else {
            return TestDb { path: dir.join("site.db"), postgres: None };
        };
        use std::sync::atomic::{AtomicU32, Ordering};
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
        let name = format!("pbt_{}_{}_{nanos}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        admin(&base).batch_execute(&format!("CREATE DATABASE {name}")).expect("CREATE DATABASE");
        let mut url = url::Url::parse(&base).expect("PIGGYBACK_TEST_POSTGRES is a URL");
        url.set_path(&format!("/{name}"));
        TestDb { path: PathBuf::from(url.to_string()), postgres: Some((base, name)) }
    }

    pub fn is_postgres(&self) -> bool {
        self.postgres.is_some()
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some((base, name)) = &self.postgres {
            let _ = admin(base).batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
        }
    }
}

fn admin(base: &str) -> postgres::Client {
    postgres::Client::connect(base, postgres::NoTls).expect("the test PostgreSQL server answers")
}

/// A raw connection behind the store's back, on either engine. Statements are plain
/// SQL both engines read alike; the few that differ have a method of their own.
pub enum Raw {
    Sqlite(rusqlite::Connection),
    Postgres(std::cell::RefCell<postgres::Client>),
}

impl Raw {
    pub fn open(db: &Path) -> Raw {
        match db.to_str().filter(|s| s.starts_with("postgres")) {
            Some(url) => Raw::Postgres(std::cell::RefCell::new(admin(url))),
            None => {
                let conn = rusqlite::Connection::open(db).unwrap();
                conn.busy_timeout(std::time::Duration::from_secs(5)).unwrap();
                Raw::Sqlite(conn)
            }
        }
    }

    /// Runs statements without parameters.
    pub fn exec(&self, sql: &str) {
        match self {
            Raw::Sqlite(c) => c.execute_batch(sql).unwrap(),
            Raw::Postgres(c) => c.borrow_mut().batch_execute(sql).unwrap(),
        }
    }

    /// The first column of every row, as text (SQLite's integers and PostgreSQL's
    /// BIGINTs alike).
    pub fn column(&self, sql: &str) -> Vec<String> {
        match self {
            Raw::Sqlite(c) => {
                let mut stmt = c.prepare(sql).unwrap();
                stmt.query_map([], |r| {
                    Ok(match r.get::<_, rusqlite::types::Value>(0)? {
                        rusqlite::types::Value::Integer(i) => i.to_string(),
                        rusqlite::types::Value::Text(t) => t,
                        other => format!("{other:?}"),
                    })
                })
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap()
            }
            Raw::Postgres(c) => c
                .borrow_mut()
                .simple_query(sql)
                .unwrap()
                .into_iter()
                .filter_map(|m| match m {
                    postgres::SimpleQueryMessage::Row(r) => Some(r.get(0).unwrap_or("NULL").to_owned()),
                    _ => None,
                })
                .collect(),
        }
    }

    /// The one integer a query answers.
    pub fn int(&self, sql: &str) -> i64 {
        let rows = self.column(sql);
        assert_eq!(rows.len(), 1, "{sql}");
        rows[0].parse().unwrap()
    }

    /// The one text a query answers.
    pub fn text(&self, sql: &str) -> String {
        let rows = self.column(sql);
        assert_eq!(rows.len(), 1, "{sql}");
        rows[0].clone()
    }

    /// Sets the schema version the store reads (SQLite's `user_version`).
    pub fn set_schema_version(&self, version: i64) {
        match self {
            Raw::Sqlite(_) => self.exec(&format!("PRAGMA user_version = {version}")),
            Raw::Postgres(_) => self.exec(&format!("UPDATE piggyback_schema SET version = {version}")),
        }
    }

    pub fn schema_version(&self) -> i64 {
        match self {
            Raw::Sqlite(_) => self.int("PRAGMA user_version"),
            Raw::Postgres(_) => self.int("SELECT version FROM piggyback_schema"),
        }
    }

    /// Begins a write transaction that changes a row of `carol`'s and holds it open
    /// (SQLite: the database's write lock; PostgreSQL: that row's lock).
    pub fn begin_writing(&self) {
        match self {
            Raw::Sqlite(_) => self.exec("BEGIN IMMEDIATE; UPDATE users SET bio = 'x' WHERE name = 'carol'"),
            Raw::Postgres(_) => self.exec("BEGIN; UPDATE users SET bio = 'x' WHERE name = 'carol'"),
        }
    }

    /// Begins a transaction that every writer must wait for until it ends (SQLite: the
    /// write lock; PostgreSQL: the limits' table, which every write that admits takes).
    pub fn begin_holding_writes(&self) {
        match self {
            Raw::Sqlite(_) => self.exec("BEGIN IMMEDIATE"),
            Raw::Postgres(_) => self.exec("BEGIN; LOCK TABLE rate_limits IN SHARE ROW EXCLUSIVE MODE"),
        }
    }

    /// Begins a transaction that holds storing messages up until it ends (SQLite: the
    /// database's write lock, `BEGIN IMMEDIATE`; PostgreSQL, which has no such lock:
    /// the `messages` table, against every insert).
    pub fn begin_holding_message_writes(&self) {
        match self {
            Raw::Sqlite(_) => self.exec("BEGIN IMMEDIATE"),
            Raw::Postgres(_) => self.exec("BEGIN; LOCK TABLE messages IN SHARE ROW EXCLUSIVE MODE"),
        }
    }

    /// Begins a transaction that locks even readers of the mailboxes out (SQLite:
    /// `BEGIN EXCLUSIVE`; PostgreSQL: the `mailbox` table's strongest lock).
    pub fn begin_exclusive(&self) {
        match self {
            Raw::Sqlite(_) => self.exec("BEGIN EXCLUSIVE"),
            Raw::Postgres(_) => self.exec("BEGIN; LOCK TABLE mailbox IN ACCESS EXCLUSIVE MODE"),
        }
    }

    /// Every row of every table, as text: equal snapshots mean nothing changed.
    pub fn snapshot(&self) -> String {
        let tables = match self {
            Raw::Sqlite(_) => self.column("SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name"),
            Raw::Postgres(_) => {
                self.column("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename")
            }
        };
        let mut out = String::new();
        for table in tables {
            out.push_str(&format!("[{table}]\n"));
            let rows = match self {
                Raw::Sqlite(c) => {
                    let mut stmt = c.prepare(&format!("SELECT * FROM \"{table}\" ORDER BY 1, 2")).unwrap();
                    let columns = stmt.column_count();
                    let mut rows = stmt.query([]).unwrap();
                    let mut lines = Vec::new();
                    while let Some(row) = rows.next().unwrap() {
                        let cells: Vec<String> = (0..columns)
                            .map(|i| format!("{:?}", row.get::<_, rusqlite::types::Value>(i).unwrap()))
                            .collect();
                        lines.push(cells.join("|"));
                    }
                    lines
                }
                Raw::Postgres(_) => self.column(&format!("SELECT t::text FROM \"{table}\" t ORDER BY 1")),
            };
            for line in rows {
                out.push_str(&line);
                out.push('\n');
            }
        }
        out
    }
}

/// One of the CGI programs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Program {
    Profile,
    Friends,
    Posts,
    Messages,
    /// Login and logout: not in [`Program::ALL`], it has no resource of its own.
    Session,
}

impl Program {
    /// The four resource programs, the ones every request reaches with an identity.
    pub const ALL: [Program; 4] = [Program::Profile, Program::Friends, Program::Posts, Program::Messages];

    pub fn name(self) -> &'static str {
        match self {
            Program::Profile => "profile",
            Program::Friends => "friends",
            Program::Posts => "posts",
            Program::Messages => "messages",
            Program::Session => "session",
        }
    }

    /// The built executable: beside `piggyback`, under the name `PROGRAMS` gives it.
    pub fn executable(self) -> std::path::PathBuf {
        std::path::Path::new(PIGGYBACK).with_file_name(self.name())
    }

    /// The handler `piggyback::handlers::PROGRAMS` pairs with the name.
    pub fn handler(self) -> piggyback::handlers::Handler {
        piggyback::handlers::program(self.name()).map(|p| p.handler).unwrap_or_else(|| {
            panic!("{} is not in piggyback::handlers::PROGRAMS", self.name());
        })
    }
}

pub const PIGGYBACK: &str = env!("CARGO_BIN_EXE_piggyback");

// ---- responses ---------------------------------------------------------------

/// A parsed CGI response. Parsing already checks what every response must satisfy:
/// a `Status` line first, CRLF header lines, `Content-Length` equal to the body's bytes
/// (no body at all for HEAD), and a JSON object body.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    /// In order, the `Status` line included.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// `Null` when there is no body (HEAD).
    pub json: Value,
    /// What the program wrote on stderr (empty for in-process responses).
    pub stderr: String,
    /// How many bytes of its stdin the program read (process runs only).
    pub stdin_read: u64,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn has_site_messages(&self) -> bool {
        self.json.get("site_messages").is_some()
    }

    /// The `site_messages` member; panics when it is absent.
    pub fn site(&self) -> &Value {
        self.json.get("site_messages").unwrap_or_else(|| panic!("no site_messages in {}", self.json))
    }

    /// `(unread, delivered, new)` of `site_messages`.
    pub fn counts(&self) -> (i64, i64, i64) {
        let s = self.site();
        let n = |k: &str| s[k].as_i64().unwrap_or_else(|| panic!("site_messages.{k} is not a number: {s}"));
        (n("unread"), n("delivered"), n("new"))
    }

    /// The ids this response announced (empty when it carries no `site_messages`).
    pub fn announced(&self) -> Vec<i64> {
        match self.json.get("site_messages") {
            None => Vec::new(),
            Some(s) => {
                s["items"].as_array().expect("items is an array").iter().map(|i| i["id"].as_i64().unwrap()).collect()
            }
        }
    }

    /// The value of the `pb_session` cookie this response sets; panics without `Set-Cookie`.
    pub fn session_cookie(&self) -> &str {
        let set = self.header("Set-Cookie").expect("Set-Cookie");
        set.split(';').next().unwrap().strip_prefix("pb_session=").unwrap()
    }

    /// The error code of an error response.
    pub fn error_code(&self) -> &str {
        self.json["error"]["code"].as_str().unwrap_or_else(|| panic!("not an error response: {}", self.json))
    }

    pub fn assert_status(&self, status: u16) -> &Response {
        assert_eq!(self.status, status, "unexpected status; response: {} stderr: {}", self.json, self.stderr);
        self
    }
}

/// Parses a complete CGI response and checks the rules every response obeys.
pub fn parse_response(raw: &[u8], head: bool) -> Response {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("a blank line ends the header block");
    let block = std::str::from_utf8(&raw[..split]).expect("the header block is UTF-8");
    let body = raw[split + 4..].to_vec();
    let mut headers = Vec::new();
    for line in block.split("\r\n") {
        assert!(!line.contains('\n') && !line.contains('\r'), "bare CR or LF in header line {line:?}");
        let (name, value) = line.split_once(": ").unwrap_or_else(|| panic!("not a header line: {line:?}"));
        assert!(!name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'), "header {name:?}");
        headers.push((name.to_string(), value.to_string()));
    }
    let (first, status_value) = &headers[0];
    assert_eq!(first, "Status", "the first header is Status");
    let (code, reason) = status_value.split_once(' ').expect("Status: NNN Reason");
    let status: u16 = code.parse().expect("a numeric status");
    assert!(!reason.is_empty(), "a reason follows the status code");
    if status == 304 {
        // Not Modified: no body, and no Content-Type or Content-Length describing one.
        assert!(body.is_empty(), "a 304 has no body, got {} bytes", body.len());
        for never in ["Content-Type", "Content-Length"] {
            assert!(!headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(never)), "a 304 with {never}");
        }
        return Response { status, headers, body, json: Value::Null, stderr: String::new(), stdin_read: 0 };
    }
    for once in ["Status", "Content-Type", "Content-Length"] {
        let n = headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case(once)).count();
        assert_eq!(n, 1, "{once} appears {n} times");
    }
    let length: usize = headers
        .iter()
        .find(|(n, _)| n == "Content-Length")
        .map(|(_, v)| v.parse().expect("a numeric Content-Length"))
        .unwrap();
    let json = if head {
        assert!(body.is_empty(), "a HEAD response has no body, got {} bytes", body.len());
        Value::Null
    } else {
        assert_eq!(length, body.len(), "Content-Length is the body's bytes");
        let json: Value = serde_json::from_slice(&body).expect("the body is JSON");
        assert!(json.is_object(), "the body is one JSON object");
        json
    };
    Response { status, headers, body, json, stderr: String::new(), stdin_read: 0 }
}

// ---- requests ----------------------------------------------------------------

/// A CGI request as a web server would start it: the environment and the body.
#[derive(Debug, Clone)]
pub struct Cgi {
    program: Program,
    method: String,
    vars: BTreeMap<String, OsString>,
    body: Vec<u8>,
    auto_length: bool,
}

impl Cgi {
    /// A GET on `program` of the site `http://example.com`, with PIGGYBACK_DB set when
    /// `db` is given, the variables every server sets, and the headers a same-origin
    /// `fetch` sends.
    pub fn new(program: Program, db: Option<&Path>) -> Cgi {
        let mut vars: BTreeMap<String, OsString> = BTreeMap::new();
        for (k, v) in [
            ("GATEWAY_INTERFACE", "CGI/1.1"),
            ("SERVER_PROTOCOL", "HTTP/1.1"),
            ("SERVER_SOFTWARE", "test"),
            ("SERVER_NAME", "example.com"),
            ("SERVER_PORT", "80"),
            ("REMOTE_ADDR", "192.0.2.1"),
            ("HTTP_HOST", "example.com"),
            ("HTTP_ORIGIN", "http://example.com"),
            ("HTTP_SEC_FETCH_SITE", "same-origin"),
            ("HTTP_X_REQUESTED_WITH", "XMLHttpRequest"),
            ("QUERY_STRING", ""),
        ] {
            vars.insert(k.to_string(), v.into());
        }
        vars.insert("SCRIPT_NAME".into(), format!("/cgi-bin/{}", program.name()).into());
        if let Some(db) = db {
            vars.insert("PIGGYBACK_DB".into(), db.as_os_str().to_owned());
        }
        Cgi { program, method: "GET".into(), vars, body: Vec::new(), auto_length: true }.path("")
    }

    /// A GET on `program` with no variable at all but REQUEST_METHOD: add each one.
    pub fn bare(program: Program) -> Cgi {
        Cgi { program, method: "GET".into(), vars: BTreeMap::new(), body: Vec::new(), auto_length: true }
    }

    /// Sets PATH_INFO and QUERY_STRING from `/path?query`.
    pub fn path(mut self, path_and_query: &str) -> Cgi {
        let (path, query) = path_and_query.split_once('?').unwrap_or((path_and_query, ""));
        if path.is_empty() {
            self.vars.remove("PATH_INFO");
        } else {
            self.vars.insert("PATH_INFO".into(), path.into());
        }
        self.vars.insert("QUERY_STRING".into(), query.into());
        self
    }

    pub fn method(mut self, method: &str) -> Cgi {
        self.method = method.to_string();
        self
    }

    pub fn program(&self) -> Program {
        self.program
    }

    /// The REQUEST_METHOD this request will have.
    pub fn method_name(&self) -> &str {
        &self.method
    }

    /// REMOTE_USER, as after the server's own authentication (which the operator
    /// declares with PIGGYBACK_TRUST_REMOTE_USER=1).
    pub fn user(self, name: &str) -> Cgi {
        self.var("REMOTE_USER", name).var("PIGGYBACK_TRUST_REMOTE_USER", "1")
    }

    pub fn var(self, name: &str, value: &str) -> Cgi {
        self.var_os(name, value)
    }

    /// A variable that need not be UTF-8 (servers pass header bytes through).
    pub fn var_os(mut self, name: &str, value: impl Into<OsString>) -> Cgi {
        self.vars.insert(name.into(), value.into());
        self
    }

    pub fn without(mut self, name: &str) -> Cgi {
        self.vars.remove(name);
        self
    }

    /// No `HTTP_*` variable: a request with no header (no Host, Origin, Sec-Fetch-Site,
    /// X-Requested-With), as from a script, before a test adds the ones it is about.
    pub fn without_headers(mut self) -> Cgi {
        self.vars.retain(|name, _| !name.starts_with("HTTP_"));
        self
    }

    /// HTTP_COOKIE holding the session cookie `pb_session=VALUE`.
    pub fn cookie(self, value: &str) -> Cgi {
        self.var("HTTP_COOKIE", &format!("pb_session={value}"))
    }

    /// A POST of `value` as `application/json`.
    pub fn post(self, path: &str, value: Value) -> Cgi {
        self.method("POST").path(path).body("application/json", value.to_string().as_bytes())
    }

    /// A POST with an empty `application/json` body (`/messages/ID/read`).
    pub fn post_empty(self, path: &str) -> Cgi {
        self.method("POST").path(path).body("application/json", b"")
    }

    pub fn delete(self, path: &str) -> Cgi {
        self.method("DELETE").path(path)
    }

    /// A body of `content_type`; CONTENT_LENGTH follows unless set otherwise.
    pub fn body(mut self, content_type: &str, body: &[u8]) -> Cgi {
        self.vars.insert("CONTENT_TYPE".into(), content_type.into());
        self.body = body.to_vec();
        self
    }

    /// CONTENT_LENGTH as given instead of the body's length.
    pub fn content_length(mut self, value: &str) -> Cgi {
        self.auto_length = false;
        self.vars.insert("CONTENT_LENGTH".into(), value.into());
        self
    }

    /// No CONTENT_LENGTH at all.
    pub fn no_content_length(mut self) -> Cgi {
        self.auto_length = false;
        self.vars.remove("CONTENT_LENGTH");
        self
    }

    pub fn is_head(&self) -> bool {
        self.method == "HEAD"
    }

    /// The body sent on stdin.
    pub fn body_bytes(&self) -> &[u8] {
        &self.body
    }

    /// The complete CGI environment.
    pub fn env(&self) -> BTreeMap<String, OsString> {
        let mut env = self.vars.clone();
        env.insert("REQUEST_METHOD".into(), self.method.clone().into());
        // A POST always has a length (`fetch` sends `Content-Length: 0` for no body).
        if self.auto_length && (!self.body.is_empty() || self.method == "POST") {
            env.insert("CONTENT_LENGTH".into(), self.body.len().to_string().into());
        }
        env
    }

    /// Runs the program's executable with exactly this environment.
    pub fn run(&self) -> Response {
        self.spawn().wait()
    }

    /// Starts the program's executable with exactly this environment, the body on stdin.
    pub fn spawn(&self) -> Running {
        let mut stdin = tempfile::tempfile().expect("a temporary file for stdin");
        stdin.write_all(&self.body).unwrap();
        stdin.rewind().unwrap();
        let stdin_view = stdin.try_clone().unwrap();
        let child = Command::new(self.program.executable())
            .env_clear()
            .envs(self.env())
            .stdin(Stdio::from(stdin))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the program starts");
        Running { child, stdin_view, program: self.program, head: self.is_head() }
    }

    /// Runs the program's handler in-process through `gateway::respond`.
    pub fn respond(&self) -> Response {
        let env: piggyback::gateway::Env = self.env().into_iter().collect();
        let raw = piggyback::gateway::respond(self.program.handler(), &env, self.body.as_slice());
        parse_response(&raw, self.is_head())
    }
}

/// A CGI program started by [`Cgi::spawn`].
pub struct Running {
    child: Child,
    stdin_view: File,
    program: Program,
    head: bool,
}

impl Running {
    /// Waits for the program and parses its response.
    pub fn wait(mut self) -> Response {
        let output = self.child.wait_with_output().expect("the program runs");
        assert!(output.status.success(), "{} exited with {}", self.program.name(), output.status);
        let mut response = parse_response(&output.stdout, self.head);
        response.stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        // The child shared the file description: its offset is what the child read.
        response.stdin_read = self.stdin_view.stream_position().unwrap();
        response
    }
}

// ---- sites -------------------------------------------------------------------

/// A temporary site: a database made with `piggyback init`, in its own directory.
pub struct Site {
    /// Declared before `dir`: a PostgreSQL database is dropped first.
    test_db: TestDb,
    pub dir: TempDir,
    pub db: PathBuf,
    /// The session key file, for a site made with [`Site::keyed`].
    secret: Option<PathBuf>,
    /// Extra variables for every CGI request made after they are pushed
    /// (PIGGYBACK_ALLOWED_ORIGINS, PIGGYBACK_SESSION_TTL...).
    pub extra_env: Vec<(String, String)>,
}

impl Site {
    /// An initialised database with these users, and no session key: identity comes from
    /// REMOTE_USER.
    pub fn new(users: &[&str]) -> Site {
        Site::make(users, None)
    }

    /// Like [`Site::new`], with a key file made by `piggyback init`: every `piggyback`
    /// command and CGI request gets PIGGYBACK_SECRET_FILE, so session cookies work.
    pub fn keyed(users: &[&str]) -> Site {
        Site::make(users, Some("secret"))
    }

    fn make(users: &[&str], secret: Option<&str>) -> Site {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let test_db = TestDb::new(dir.path());
        let db = test_db.path.clone();
        let secret = secret.map(|name| dir.path().join(name));
        let site = Site { test_db, dir, db, secret, extra_env: Vec::new() };
        site.piggyback_ok(&["init"]);
        for user in users {
            site.add_user(user);
        }
        site
    }

    /// The session key file; panics for a site made without one.
    pub fn secret(&self) -> &Path {
        self.secret.as_deref().expect("a site made with Site::keyed")
    }

    /// The environment of every `piggyback` command: PIGGYBACK_SECRET_FILE or nothing.
    fn command_env(&self) -> Vec<(&str, &str)> {
        self.secret.iter().map(|s| ("PIGGYBACK_SECRET_FILE", s.to_str().unwrap())).collect()
    }

    /// The site runs on PostgreSQL (see [`postgres_base`]).
    pub fn is_postgres(&self) -> bool {
        self.test_db.is_postgres()
    }

    /// The site's request-file spool: beside a SQLite file by default; named
    /// explicitly for PostgreSQL, where each host has its own.
    pub fn spool(&self) -> PathBuf {
        self.dir.path().join("spool")
    }

    fn args<'a>(&'a self, args: &[&'a str]) -> Vec<String> {
        let mut all = vec!["--db".to_owned(), self.db.to_str().unwrap().to_owned()];
        if self.is_postgres() {
            all.extend(["--spool".to_owned(), self.spool().to_str().unwrap().to_owned()]);
        }
        all.extend(args.iter().map(|a| a.to_string()));
        all
    }

    /// Runs `piggyback --db DB ARGS…` with an empty environment (but the key file).
    pub fn piggyback(&self, args: &[&str]) -> Output {
        let args = self.args(args);
        piggyback(&args.iter().map(String::as_str).collect::<Vec<_>>(), &self.command_env())
    }

    /// Like [`Site::piggyback`], with `input` on its standard input.
    pub fn piggyback_with_input(&self, args: &[&str], input: &str) -> Output {
        let args = self.args(args);
        piggyback_with_input(&args.iter().map(String::as_str).collect::<Vec<_>>(), &self.command_env(), input)
    }

    /// Starts `piggyback --db DB ARGS…` with an empty environment (but the key file), its
    /// output piped.
    pub fn piggyback_spawn(&self, args: &[&str]) -> Child {
        Command::new(PIGGYBACK)
            .args(self.args(args))
            .env_clear()
            .envs(self.command_env())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("piggyback starts")
    }

    /// Like [`Site::piggyback`], and it must succeed: its stdout.
    pub fn piggyback_ok(&self, args: &[&str]) -> String {
        succeeded(args, self.piggyback(args))
    }

    /// Like [`Site::piggyback_with_input`], and it must succeed: its stdout.
    pub fn piggyback_ok_with_input(&self, args: &[&str], input: &str) -> String {
        succeeded(args, self.piggyback_with_input(args, input))
    }

    pub fn add_user(&self, name: &str) -> i64 {
        self.piggyback_ok(&["user", "add", name]).trim().parse().expect("user add prints the id")
    }

    /// `piggyback user add NAME --password-stdin`.
    pub fn add_user_with_password(&self, name: &str, password: &str) -> i64 {
        let out = self.piggyback_ok_with_input(&["user", "add", name, "--password-stdin"], &format!("{password}\n"));
        out.trim().parse().expect("user add prints the id")
    }

    /// A session cookie value for `name` from `piggyback token`, valid for an hour.
    pub fn token(&self, name: &str) -> String {
        self.piggyback_ok(&["token", name, "--ttl", "1h"]).trim().to_owned()
    }

    /// `piggyback send`: the new message's id.
    pub fn send(&self, from: &str, to: &str, subject: &str, body: &str) -> i64 {
        let out = self.piggyback_ok(&["send", "--from", from, "--to", to, "--subject", subject, "--body", body]);
        message_id_of(&out)
    }

    /// `piggyback send` of a note with a fixed body, then `piggyback drain`, so that it is
    /// in the database whatever the send did with it.
    pub fn deliver(&self, from: &str, to: &str, subject: &str) {
        self.piggyback_ok(&["send", "--from", from, "--to", to, "--subject", subject, "--body", "body of the message"]);
        self.piggyback_ok(&["drain"]);
    }

    /// A request on `program` with PIGGYBACK_DB set, and PIGGYBACK_SECRET_FILE and
    /// [`Site::extra_env`] when the site has them.
    pub fn cgi(&self, program: Program) -> Cgi {
        self.configure(Cgi::new(program, Some(&self.db)))
    }

    /// [`Site::cgi`] with no request header: see [`Cgi::without_headers`].
    pub fn bare(&self, program: Program) -> Cgi {
        self.configure(Cgi::new(program, Some(&self.db)).without_headers())
    }

    fn configure(&self, mut cgi: Cgi) -> Cgi {
        if self.is_postgres() {
            cgi = cgi.var_os("PIGGYBACK_SPOOL", self.spool());
        }
        if let Some(secret) = &self.secret {
            cgi = cgi.var_os("PIGGYBACK_SECRET_FILE", secret);
        }
        for (name, value) in &self.extra_env {
            cgi = cgi.var(name, value);
        }
        cgi
    }

    /// `GET path` on `program` as `user`, run as a process.
    pub fn get(&self, program: Program, user: &str, path: &str) -> Response {
        self.cgi(program).user(user).path(path).run()
    }

    /// `POST path` with a JSON body on `program` as `user`, run as a process.
    pub fn post(&self, program: Program, user: &str, path: &str, body: Value) -> Response {
        self.cgi(program).user(user).post(path, body).run()
    }

    /// A raw connection behind the store's back.
    pub fn conn(&self) -> Raw {
        Raw::open(&self.db)
    }

    /// A user's id, read behind the store's back.
    pub fn id_of(&self, name: &str) -> i64 {
        self.conn().int(&format!("SELECT id FROM users WHERE name = '{name}'"))
    }

    /// A user's stored counters `(new, delivered)`.
    pub fn counters(&self, user: &str) -> (i64, i64) {
        let conn = self.conn();
        let sql = |column: &str| {
            format!("SELECT m.{column} FROM mailbox m JOIN users u ON u.id = m.user_id WHERE u.name = '{user}'")
        };
        (conn.int(&sql("new")), conn.int(&sql("delivered")))
    }

    pub fn state(&self, message: i64) -> String {
        self.conn().text(&format!("SELECT state FROM messages WHERE id = {message}"))
    }

    /// Ids of the messages in `state`, ascending.
    pub fn ids_in_state(&self, state: &str) -> Vec<i64> {
        let sql = format!("SELECT id FROM messages WHERE state = '{state}' ORDER BY id");
        self.conn().column(&sql).iter().map(|id| id.parse().unwrap()).collect()
    }

    /// Every row of every table, as text: equal snapshots mean nothing changed.
    pub fn snapshot(&self) -> String {
        self.conn().snapshot()
    }

    /// `piggyback check` exits 0.
    pub fn assert_check_passes(&self) {
        let out = self.piggyback(&["check"]);
        assert!(
            out.status.success(),
            "piggyback check failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Runs the `piggyback` command with only `env` in its environment.
pub fn piggyback(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(PIGGYBACK)
        .args(args)
        .env_clear()
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .expect("piggyback starts")
}

/// Like [`piggyback`], with `input` on its standard input.
pub fn piggyback_with_input(args: &[&str], env: &[(&str, &str)], input: &str) -> Output {
    let mut child = Command::new(PIGGYBACK)
        .args(args)
        .env_clear()
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("piggyback starts");
    let mut stdin = child.stdin.take().unwrap();
    // A program that fails on its arguments may exit before reading: a broken pipe is fine.
    let _ = stdin.write_all(input.as_bytes());
    drop(stdin);
    child.wait_with_output().expect("piggyback runs")
}

/// The stdout of a `piggyback` run that must have succeeded.
fn succeeded(args: &[&str], out: Output) -> String {
    assert!(out.status.success(), "piggyback {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// The message id in `piggyback send`'s output (`stored message N to …`).
pub fn message_id_of(output: &str) -> i64 {
    output
        .strip_prefix("stored message ")
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|id| id.parse().ok())
        .unwrap_or_else(|| panic!("piggyback send printed no message id: {output:?}"))
}

/// `raw` as the canonical user name every store call takes.
pub fn uname(raw: &str) -> UserName {
    UserName::parse(raw).unwrap_or_else(|e| panic!("{raw:?}: {e}"))
}

/// alice and bob, joined at a fixed time; bob has sent alice one message ("hi").
pub fn message_site() -> (Site, i64) {
    let site = Site::new(&["alice", "bob"]);
    site.conn().exec("UPDATE users SET joined_at = 1700000000");
    let id = store_message(&site, "bob", "alice", "hi", "hello there", None);
    (site, id)
}

/// Sites where every test user exists.
pub fn three_users() -> Site {
    Site::new(&["alice", "bob", "carol"])
}

pub fn store_message(site: &Site, from: &str, to: &str, subject: &str, body: &str, key: Option<&str>) -> i64 {
    let store = piggyback::message_store::Store::open(&site.db).unwrap();
    let id = |name: &str| -> piggyback::model::UserId { store.user_by_name(&uname(name)).unwrap().unwrap().id };
    let m = piggyback::model::NewMessage {
        request_id: piggyback::msq::new_request_id(),
        from: id(from),
        to: id(to),
        subject: subject.into(),
        body: body.into(),
        kind: piggyback::model::MessageKind::Note,
        idempotency_key: key.map(str::to_owned),
        sent_at: 1_700_000_100,
    };
    store.store_message(&m).unwrap().id().unwrap().0
}

/// The exact header block: the fixed headers, then `extra`, then Content-Length.
pub fn assert_headers(r: &Response, status: &str, extra: &[(&str, &str)]) {
    let length = r.body.len().to_string();
    let mut want: Vec<(&str, &str)> = vec![
        ("Status", status),
        ("Content-Type", "application/json; charset=utf-8"),
        ("Cache-Control", "private, no-store"),
        ("X-Content-Type-Options", "nosniff"),
    ];
    want.extend_from_slice(extra);
    want.push(("Content-Length", &length));
    let got: Vec<(&str, &str)> = r.headers.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    assert_eq!(got, want);
}

/// Dates every request file in the spool's `new/` a minute back: files written by a
/// test stand for ones a sender left there long ago (a request's drain leaves a file
/// younger than `msq::SENDER_GRACE` to its sender).
pub fn settle_spool(spool: &Path) {
    let long_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(60);
    for entry in std::fs::read_dir(spool.join("new")).unwrap() {
        File::open(entry.unwrap().path()).unwrap().set_modified(long_ago).unwrap();
    }
}
