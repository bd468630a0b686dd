//! Helpers shared by the integration tests: temporary sites (a database made with the
//! `piggyback` command), CGI requests built as a web server builds them, run either as a
//! real process or in-process through `gateway::respond`, and their responses parsed.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs::File;
use std::io::{Seek, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use serde_json::Value;
use tempfile::TempDir;

/// One of the CGI programs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Program {
    Profile,
    Friends,
    Posts,
    Messages,
}

impl Program {
    pub const ALL: [Program; 4] = [Program::Profile, Program::Friends, Program::Posts, Program::Messages];

    pub fn name(self) -> &'static str {
        match self {
            Program::Profile => "profile",
            Program::Friends => "friends",
            Program::Posts => "posts",
            Program::Messages => "messages",
        }
    }

    pub fn executable(self) -> &'static str {
        match self {
            Program::Profile => env!("CARGO_BIN_EXE_profile"),
            Program::Friends => env!("CARGO_BIN_EXE_friends"),
            Program::Posts => env!("CARGO_BIN_EXE_posts"),
            Program::Messages => env!("CARGO_BIN_EXE_messages"),
        }
    }

    pub fn handler(self) -> piggyback::gateway::Handler {
        match self {
            Program::Profile => piggyback::handlers::profile,
            Program::Friends => piggyback::handlers::friends,
            Program::Posts => piggyback::handlers::posts,
            Program::Messages => piggyback::handlers::messages,
        }
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
    pub reason: String,
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
    assert!(!reason.is_empty());
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
    Response { status, reason: reason.to_string(), headers, body, json, stderr: String::new(), stdin_read: 0 }
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
    /// A GET of `path` (`/PATH_INFO?QUERY`) on `program`, with PIGGYBACK_DB set when `db`
    /// is given, the variables every server sets, and the headers a same-origin
    /// `fetch` sends.
    pub fn new(program: Program, db: Option<&Path>) -> Cgi {
        let mut vars: BTreeMap<String, OsString> = BTreeMap::new();
        for (k, v) in [
            ("GATEWAY_INTERFACE", "CGI/1.1"),
            ("SERVER_PROTOCOL", "HTTP/1.1"),
            ("SERVER_SOFTWARE", "test"),
            ("SERVER_NAME", "localhost"),
            ("SERVER_PORT", "80"),
            ("REMOTE_ADDR", "127.0.0.1"),
            ("HTTP_HOST", "localhost"),
            ("HTTP_ORIGIN", "http://localhost"),
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

    /// REMOTE_USER, as after the server's own authentication.
    pub fn user(self, name: &str) -> Cgi {
        self.var("REMOTE_USER", name)
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

    /// A POST of `value` as `application/json`.
    pub fn post(self, path: &str, value: Value) -> Cgi {
        self.method("POST").path(path).body("application/json", value.to_string().as_bytes())
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
    pub dir: TempDir,
    pub db: PathBuf,
}

impl Site {
    /// An initialised database with these users.
    pub fn new(users: &[&str]) -> Site {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let db = dir.path().join("site.db");
        let site = Site { dir, db };
        site.piggyback_ok(&["init"]);
        for user in users {
            site.add_user(user);
        }
        site
    }

    /// Runs `piggyback --db DB ARGS…` with an empty environment.
    pub fn piggyback(&self, args: &[&str]) -> Output {
        let db = self.db.to_str().unwrap();
        let mut all = vec!["--db", db];
        all.extend_from_slice(args);
        piggyback(&all, &[])
    }

    /// Starts `piggyback --db DB ARGS…` with an empty environment, its output piped.
    pub fn piggyback_spawn(&self, args: &[&str]) -> Child {
        Command::new(PIGGYBACK)
            .arg("--db")
            .arg(&self.db)
            .args(args)
            .env_clear()
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("piggyback starts")
    }

    /// Like [`Site::piggyback`], and it must succeed: its stdout.
    pub fn piggyback_ok(&self, args: &[&str]) -> String {
        let out = self.piggyback(args);
        assert!(out.status.success(), "piggyback {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }

    pub fn add_user(&self, name: &str) -> i64 {
        self.piggyback_ok(&["user", "add", name]).trim().parse().expect("user add prints the id")
    }

    /// `piggyback send`: the new message's id.
    pub fn send(&self, from: &str, to: &str, subject: &str, body: &str) -> i64 {
        let out = self.piggyback_ok(&["send", "--from", from, "--to", to, "--subject", subject, "--body", body]);
        message_id_of(&out)
    }

    /// A request on `program` with PIGGYBACK_DB set.
    pub fn cgi(&self, program: Program) -> Cgi {
        Cgi::new(program, Some(&self.db))
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
    pub fn conn(&self) -> rusqlite::Connection {
        let conn = rusqlite::Connection::open(&self.db).unwrap();
        conn.busy_timeout(std::time::Duration::from_secs(5)).unwrap();
        conn
    }

    /// A user's stored counters `(new, delivered)`.
    pub fn counters(&self, user: &str) -> (i64, i64) {
        self.conn()
            .query_row(
                "SELECT m.new, m.delivered FROM mailbox m JOIN users u ON u.id = m.user_id WHERE u.name = ?1",
                [user],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap()
    }

    pub fn state(&self, message: i64) -> String {
        self.conn().query_row("SELECT state FROM messages WHERE id = ?1", [message], |r| r.get(0)).unwrap()
    }

    /// Ids of the messages in `state`, ascending.
    pub fn ids_in_state(&self, state: &str) -> Vec<i64> {
        let conn = self.conn();
        let mut stmt = conn.prepare("SELECT id FROM messages WHERE state = ?1 ORDER BY id").unwrap();
        stmt.query_map([state], |r| r.get(0)).unwrap().collect::<Result<_, _>>().unwrap()
    }

    /// Every row of every table, as text: equal snapshots mean nothing changed.
    pub fn snapshot(&self) -> String {
        let conn = self.conn();
        let tables: Vec<String> = conn
            .prepare("SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let mut out = String::new();
        for table in tables {
            out.push_str(&format!("[{table}]\n"));
            let mut stmt = conn.prepare(&format!("SELECT * FROM \"{table}\" ORDER BY 1, 2")).unwrap();
            let columns = stmt.column_count();
            let mut rows = stmt.query([]).unwrap();
            while let Some(row) = rows.next().unwrap() {
                let cells: Vec<String> =
                    (0..columns).map(|i| format!("{:?}", row.get::<_, rusqlite::types::Value>(i).unwrap())).collect();
                out.push_str(&cells.join("|"));
                out.push('\n');
            }
        }
        out
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

/// The message id in `piggyback send`'s output (`stored message N to …`).
pub fn message_id_of(output: &str) -> i64 {
    output
        .strip_prefix("stored message ")
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|id| id.parse().ok())
        .unwrap_or_else(|| panic!("piggyback send printed no message id: {output:?}"))
}
