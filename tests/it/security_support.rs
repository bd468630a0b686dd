//! A site for the security tests: a temporary database and key made with the real
//! `piggyback` binary, and CGI requests run through the real built programs with a
//! cleared environment, as a web server runs them.
#![allow(dead_code)]

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use serde_json::Value;
use tempfile::TempDir;

pub struct Site {
    _dir: TempDir,
    pub db: PathBuf,
    pub secret: PathBuf,
    /// Extra variables for every CGI request (PIGGYBACK_ALLOWED_ORIGINS...).
    pub extra_env: Vec<(String, String)>,
}

/// One CGI request; `Default` is an anonymous GET with no body.
#[derive(Default, Clone)]
pub struct Req {
    pub method: &'static str,
    pub path: String,
    pub query: String,
    pub body: Option<String>,
    pub cookie: Option<String>,
    pub env: Vec<(&'static str, String)>,
}

impl Req {
    pub fn get(path: &str) -> Req {
        Req { method: "GET", path: path.to_owned(), ..Req::default() }
    }

    pub fn post(path: &str, body: Value) -> Req {
        Req { method: "POST", path: path.to_owned(), body: Some(body.to_string()), ..Req::default() }
    }

    /// A POST with an empty JSON body (`/messages/ID/read`).
    pub fn post_empty(path: &str) -> Req {
        Req { method: "POST", path: path.to_owned(), body: Some(String::new()), ..Req::default() }
    }

    pub fn delete(path: &str) -> Req {
        Req { method: "DELETE", path: path.to_owned(), ..Req::default() }
    }

    pub fn cookie(mut self, value: &str) -> Req {
        self.cookie = Some(format!("pb_session={value}"));
        self
    }

    pub fn with(mut self, name: &'static str, value: &str) -> Req {
        self.env.push((name, value.to_owned()));
        self
    }
}

/// A parsed CGI response.
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Value,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn error_code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }
}

pub fn exe(program: &str) -> &'static str {
    match program {
        "profile" => env!("CARGO_BIN_EXE_profile"),
        "friends" => env!("CARGO_BIN_EXE_friends"),
        "posts" => env!("CARGO_BIN_EXE_posts"),
        "messages" => env!("CARGO_BIN_EXE_messages"),
        "session" => env!("CARGO_BIN_EXE_session"),
        "piggyback" => env!("CARGO_BIN_EXE_piggyback"),
        other => panic!("no program {other}"),
    }
}

impl Site {
    /// `piggyback init` of a fresh database and key file.
    pub fn new() -> Site {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("site.db");
        let secret = dir.path().join("secret");
        let site = Site { db, secret, _dir: dir, extra_env: Vec::new() };
        let out = site.piggyback(&["init"], None);
        assert!(out.status.success(), "init: {}", String::from_utf8_lossy(&out.stderr));
        site
    }

    /// Runs the `piggyback` command line with this site's database and key.
    pub fn piggyback(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut cmd = Command::new(exe("piggyback"));
        cmd.env_clear()
            .env("PIGGYBACK_DB", &self.db)
            .env("PIGGYBACK_SECRET_FILE", &self.secret)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        let mut input = child.stdin.take().unwrap();
        // A program that fails on its arguments may exit before reading: a broken pipe is fine.
        let _ = input.write_all(stdin.unwrap_or("").as_bytes());
        drop(input);
        child.wait_with_output().unwrap()
    }

    /// Runs `piggyback ARGS` and returns its stdout, failing the test on failure.
    pub fn ok(&self, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.piggyback(args, stdin);
        assert!(out.status.success(), "piggyback {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }

    pub fn add_user(&self, name: &str, password: Option<&str>) {
        match password {
            Some(p) => self.ok(&["user", "add", name, "--password-stdin"], Some(&format!("{p}\n"))),
            None => self.ok(&["user", "add", name], None),
        };
    }

    /// Sends a message and drains the queue, so that it is in the database.
    pub fn send(&self, from: &str, to: &str, subject: &str) {
        self.ok(&["send", "--from", from, "--to", to, "--subject", subject, "--body", "body of the message"], None);
        self.ok(&["drain"], None);
    }

    /// A session cookie value for `name`, valid for an hour.
    pub fn token(&self, name: &str) -> String {
        self.ok(&["token", name, "--ttl", "1h"], None).trim().to_owned()
    }

    /// Runs one CGI request through the real program.
    pub fn cgi(&self, program: &str, req: &Req) -> Resp {
        let mut cmd = Command::new(exe(program));
        cmd.env_clear()
            .env("GATEWAY_INTERFACE", "CGI/1.1")
            .env("SERVER_PROTOCOL", "HTTP/1.1")
            .env("SERVER_NAME", "example.com")
            .env("SERVER_PORT", "80")
            .env("SCRIPT_NAME", format!("/cgi-bin/{program}"))
            .env("REMOTE_ADDR", "192.0.2.1")
            .env("PIGGYBACK_DB", &self.db)
            .env("PIGGYBACK_SECRET_FILE", &self.secret)
            .env("REQUEST_METHOD", req.method)
            .env("QUERY_STRING", &req.query)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if !req.path.is_empty() {
            cmd.env("PATH_INFO", &req.path);
        }
        if let Some(body) = &req.body {
            cmd.env("CONTENT_TYPE", "application/json").env("CONTENT_LENGTH", body.len().to_string());
        }
        if let Some(cookie) = &req.cookie {
            cmd.env("HTTP_COOKIE", cookie);
        }
        for (k, v) in &self.extra_env {
            cmd.env(k, v);
        }
        for (k, v) in &req.env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        let mut input = child.stdin.take().unwrap();
        input.write_all(req.body.as_deref().unwrap_or("").as_bytes()).unwrap();
        drop(input);
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{program} exited {:?}", out.status);
        parse(&out.stdout, req.method == "HEAD")
    }
}

/// Parses a CGI document response, checking its form on the way (a HEAD answer has
/// no body: its `body` is then an empty object).
pub fn parse(raw: &[u8], head_only: bool) -> Resp {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("a blank line ends the header block");
    let head = std::str::from_utf8(&raw[..split]).expect("headers are UTF-8");
    let body = &raw[split + 4..];
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    let status: u16 = status_line
        .strip_prefix("Status: ")
        .and_then(|s| s.get(..3))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let headers: Vec<(String, String)> = lines
        .map(|l| {
            let (k, v) = l.split_once(": ").unwrap_or_else(|| panic!("bad header line {l:?}"));
            (k.to_owned(), v.to_owned())
        })
        .collect();
    let length: usize = headers.iter().find(|(k, _)| k == "Content-Length").unwrap().1.parse().unwrap();
    if head_only {
        assert!(body.is_empty(), "HEAD answers have no body");
        return Resp { status, headers, body: Value::Object(Default::default()) };
    }
    assert_eq!(length, body.len(), "Content-Length");
    let body: Value = serde_json::from_slice(body).expect("the body is JSON");
    assert!(body.is_object(), "the body is a JSON object");
    Resp { status, headers, body }
}
