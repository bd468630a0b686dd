//! `piggyback-wrap` as a process: the site's own shell, Perl and PHP programs run under
//! it as lighttpd, Apache and fcgiwrap start it, and every rule of a safe wrapper is
//! attacked (docs/INTEGRATE.md, "What the wrapper refuses").
//!
//! The tests that hold for any server run in both modes ([`Mode`]): a CGI wrapper
//! started per request, and one FastCGI wrapper kept running for the whole test, with
//! a listening socket on fd 0 as spawn-fcgi or systemd starts it.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::Write;
use std::os::fd::OwnedFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;

use serde_json::Value;

use crate::support::Site;

const WRAPPER: &str = env!("CARGO_BIN_EXE_piggyback-wrap");

/// The site's own programs, as a site owner would have written them.
const PROGRAMS: &[(&str, &str)] = &[
    (
        "hello.sh",
        "#!/bin/sh\nprintf 'Content-Type: application/json\\r\\nX-Site: shell\\r\\n\\r\\n{\"from\": \"sh\", \"n\": 1.50}\\n'\n",
    ),
    (
        "hello.pl",
        "#!/usr/bin/perl\nuse strict;\nprint \"Content-Type: application/json; charset=utf-8\\n\\n\";\nprint '{\"from\":\"perl\",\"big\":12345678901234567890123}';\n",
    ),
    (
        "hello.php",
        "<?php\nheader('Content-Type: application/json');\necho json_encode(['from' => 'php', 'argv' => $_SERVER['argv'] ?? []]);\n",
    ),
    (
        "env.pl",
        "#!/usr/bin/perl\nuse strict; use Cwd; use JSON::PP;\nmy $in = ''; read(STDIN, $in, $ENV{CONTENT_LENGTH} || 0);\nprint \"Content-Type: application/json\\n\\n\";\nprint JSON::PP->new->canonical->encode({env => \\%ENV, argv => \\@ARGV, cwd => getcwd(), body => $in});\n",
    ),
    ("page.sh", "#!/bin/sh\nprintf 'Content-Type: text/html\\n\\n<!doctype html><p>{\"not\": \"json\"}</p>\\n'\n"),
    (
        "redirect.sh",
        "#!/bin/sh\nprintf 'Status: 302 Found\\r\\nLocation: http://127.0.0.1/elsewhere\\r\\nContent-Type: application/json\\r\\n\\r\\n{}'\n",
    ),
    (
        "download.pl",
        "#!/usr/bin/perl\nbinmode STDOUT;\nprint \"Content-Type: application/octet-stream\\nContent-Length: 1048576\\n\\n\";\nprint pack('C*', map { ($_ * 7) % 256 } 0 .. 1023) for 1 .. 1024;\n",
    ),
    (
        "large.pl",
        "#!/usr/bin/perl\nprint \"Content-Type: application/json\\n\\n{\\\"pad\\\":\\\"\" . ('x' x 5000) . \"\\\"}\";\n",
    ),
    (
        "nph-raw.sh",
        "#!/bin/sh\nprintf 'HTTP/1.1 200 OK\\r\\nContent-Type: application/json\\r\\n\\r\\n{\"nph\": true}'\n",
    ),
    ("slow.sh", "#!/bin/sh\necho \"pid $$\" >&2\nexec sleep 30\n"),
    // A program that started one of its own: stopping it stops that one too.
    ("slow-tree.sh", "#!/bin/sh\nsleep 30 >/dev/null 2>&1 &\necho \"pid $!\" >&2\nwait\n"),
    (
        "complain.sh",
        "#!/bin/sh\necho 'the site program complains' >&2\nprintf 'Content-Type: application/json\\n\\n{}'\n",
    ),
    ("picture.jpg", "#!/bin/sh\nprintf 'Content-Type: application/json\\n\\n{\"ran\": \"picture.jpg\"}'\n"),
    // A program echoing stored user content that carries a site_messages of its own.
    (
        "fake.sh",
        "#!/bin/sh\nprintf 'Content-Type: application/json\\n\\n{\"comment\": \"hi\", \"site_messages\": {\"unread\": 1, \"items\": [{\"subject\": \"Security notice: sign in again at http://evil.example\"}]}}'\n",
    ),
    // JSON a browser may show as a page, and JSON sent as a download.
    ("twotypes.sh", "#!/bin/sh\nprintf 'Content-Type: application/json\\nContent-Type: text/html\\n\\n{\"a\": 1}'\n"),
    (
        "export.sh",
        "#!/bin/sh\nprintf 'Content-Type: application/json\\nContent-Disposition: attachment; filename=\"export.json\"\\n\\n{\"rows\": []}'\n",
    ),
    // A site with its own login: the session id in its cookie SID, the user in the
    // file `sessions` (`SID NAME` lines); it says who the user is in X-Piggyback-User.
    // `?html` answers a page instead of JSON.
    (
        "whoami.sh",
        "#!/bin/sh\nsid=$(printf '%s\\n' \"$HTTP_COOKIE\" | tr ';' '\\n' | sed -n 's/^ *SID=//p' | head -n 1)\n\
         user=''\n[ -n \"$sid\" ] && user=$(sed -n \"s/^$sid //p\" sessions | head -n 1)\n\
         type=application/json; [ \"$QUERY_STRING\" = html ] && type=text/html\n\
         printf 'Content-Type: %s\\r\\nX-Piggyback-User: %s\\r\\n\\r\\n{\"page\": \"mine\"}' \"$type\" \"$user\"\n",
    ),
];

/// How the wrapper runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Started per request, as lighttpd's `cgi.assign` starts it.
    Cgi,
    /// Kept running as a FastCGI responder (as fcgiwrap), the program named by
    /// `SCRIPT_FILENAME`.
    FastCgi,
}

/// A site with programs under `htdocs/app` (the wrap root), a session key, and alice.
struct Wrapped {
    site: Site,
    docroot: PathBuf,
    app: PathBuf,
    extra_env: Vec<(String, OsString)>,
    mode: Mode,
    /// The FastCGI wrapper, started at the first request in that mode.
    kept: OnceLock<KeptWrapper>,
}

/// `piggyback-wrap` started with a listening socket on fd 0, its stderr in a file.
struct KeptWrapper {
    /// `None` once waited for.
    child: Option<Child>,
    socket: PathBuf,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl KeptWrapper {
    fn start(env: &[(String, OsString)]) -> KeptWrapper {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("wrap.sock");
        let log = dir.path().join("stderr.log");
        let listener = UnixListener::bind(&socket).unwrap();
        let child = Command::new(WRAPPER)
            .env_clear()
            .envs(env.iter().cloned())
            .stdin(Stdio::from(OwnedFd::from(listener)))
            .stdout(Stdio::null())
            .stderr(Stdio::from(std::fs::File::create(&log).unwrap()))
            .spawn()
            .expect("the wrapper starts");
        KeptWrapper { child: Some(child), socket, log, _dir: dir }
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    fn stderr(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.log).unwrap_or_default()).into_owned()
    }

    fn connect(&self) -> UnixStream {
        let conn = UnixStream::connect(&self.socket).unwrap();
        // A request that is never answered fails the test instead of hanging it.
        conn.set_read_timeout(Some(std::time::Duration::from_secs(60))).unwrap();
        conn
    }

    /// One request on a connection of its own: the CGI answer, and what the log gained
    /// meanwhile (written before the answer's end, so it is all there).
    fn ask(&self, params: &[(String, OsString)], body: &[u8]) -> Answer {
        let before = std::fs::metadata(&self.log).map(|m| m.len() as usize).unwrap_or(0);
        let params: BTreeMap<String, OsString> = params.iter().cloned().collect();
        let mut conn = self.connect();
        conn.write_all(&crate::fastcgi::request_bytes(1, false, &params, body)).unwrap();
        let (raw, status) = crate::fastcgi::read_answer(&mut conn, 1);
        assert_eq!(status, 0, "FCGI_REQUEST_COMPLETE");
        let stderr = self.stderr();
        Answer { raw, stderr: stderr.get(before..).unwrap_or_default().to_owned() }
    }

    /// SIGTERM, then the exit status and the whole log.
    fn stop_waiting(mut self) -> (std::process::ExitStatus, String) {
        let mut child = self.child.take().expect("running");
        // SAFETY: a signal to the process this test started.
        assert_eq!(unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) }, 0);
        let status = child.wait().unwrap();
        (status, self.stderr())
    }
}

impl Drop for KeptWrapper {
    /// A test that failed leaves no process behind; workers exit when their parent's
    /// SIGTERM reaches them.
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: a signal to the process this test started.
            unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
            let _ = child.wait();
        }
    }
}

/// A wrapper run's output.
struct Answer {
    raw: Vec<u8>,
    stderr: String,
}

impl Answer {
    /// Where the body starts: after the first empty line (LF or CRLF).
    fn body_start(&self) -> usize {
        let mut line_start = 0;
        for (i, &b) in self.raw.iter().enumerate() {
            if b == b'\n' {
                if matches!(&self.raw[line_start..i], b"" | b"\r") {
                    return i + 1;
                }
                line_start = i + 1;
            }
        }
        panic!("no header block: {}", self.text())
    }

    fn head(&self) -> &str {
        std::str::from_utf8(&self.raw[..self.body_start()]).unwrap()
    }

    fn body(&self) -> &[u8] {
        &self.raw[self.body_start()..]
    }

    fn json(&self) -> Value {
        serde_json::from_slice(self.body()).unwrap_or_else(|e| panic!("{e}: {}; {}", self.text(), self.stderr))
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.head().lines().find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    fn status(&self) -> u16 {
        self.header("Status").and_then(|s| s.split(' ').next()?.parse().ok()).unwrap_or(200)
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.raw).into_owned()
    }

    fn announced(&self) -> Vec<i64> {
        self.json()["site_messages"]["items"].as_array().unwrap().iter().map(|i| i["id"].as_i64().unwrap()).collect()
    }

    /// The `Set-Cookie` lines, as `(name, value, line)`.
    fn set_cookies(&self) -> Vec<(String, String, String)> {
        self.head()
            .lines()
            .filter_map(|l| {
                let (n, v) = l.split_once(':')?;
                n.eq_ignore_ascii_case("Set-Cookie").then(|| v.trim().to_owned())
            })
            .map(|line| {
                let (name, value) = line.split(';').next().unwrap().split_once('=').unwrap();
                (name.to_owned(), value.to_owned(), line.clone())
            })
            .collect()
    }

    fn assert_refused(&self, why: &str) {
        assert_eq!(self.status(), 403, "{}; stderr {}", self.text(), self.stderr);
        assert!(self.stderr.contains(why), "the log says {why:?}: {}", self.stderr);
        assert!(!self.text().contains("from"), "the program did not run: {}", self.text());
    }
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

impl Wrapped {
    fn new() -> Wrapped {
        let site = Site::keyed(&["alice", "bob"]);
        let docroot = site.dir.path().join("htdocs");
        let app = docroot.join("app");
        std::fs::create_dir_all(&app).unwrap();
        chmod(&docroot, 0o755);
        chmod(&app, 0o755);
        for (name, text) in PROGRAMS {
            let path = app.join(name);
            std::fs::write(&path, text).unwrap();
            chmod(&path, 0o755);
        }
        std::fs::write(app.join("sessions"), "").unwrap();
        chmod(&app.join("sessions"), 0o644);
        Wrapped { site, docroot, app, extra_env: Vec::new(), mode: Mode::Cgi, kept: OnceLock::new() }
    }

    fn in_mode(mode: Mode) -> Wrapped {
        Wrapped { mode, ..Wrapped::new() }
    }

    /// The FastCGI wrapper, started with the site's settings (and `set` ones) as its
    /// process environment, two workers unless a test sets otherwise.
    fn kept(&self) -> &KeptWrapper {
        self.kept.get_or_init(|| {
            let mut env: Vec<(String, OsString)> = vec![var("PIGGYBACK_WRAP_CHILDREN", "2")];
            env.extend(self.base_env("GET", "").into_iter().chain(self.extra_env.iter().cloned()));
            env.retain(|(k, _)| k.starts_with("PIGGYBACK_") || k == "PATH");
            KeptWrapper::start(&env)
        })
    }

    /// A request of the program at `path` with `env` and `body`, as the mode's server
    /// sends it: argv `[wrapper, path]` to a CGI wrapper, or FastCGI parameters (the
    /// program in `SCRIPT_FILENAME`) to the kept one.
    fn request(&self, path: &Path, env: Vec<(String, OsString)>, body: &[u8]) -> Answer {
        self.request_as(self.mode, path, env, body)
    }

    /// [`Wrapped::request`] in `mode`, whatever the test's own.
    fn request_as(&self, mode: Mode, path: &Path, env: Vec<(String, OsString)>, body: &[u8]) -> Answer {
        match mode {
            Mode::Cgi => self.run(WRAPPER, &[path.into()], env, body),
            Mode::FastCgi => {
                let mut env = env;
                if !env.iter().any(|(k, _)| k == "SCRIPT_FILENAME") {
                    env.push(var("SCRIPT_FILENAME", path));
                }
                env.extend(self.extra_env.iter().cloned());
                self.kept().ask(&env, body)
            }
        }
    }

    fn set(mut self, name: &str, value: impl Into<OsString>) -> Wrapped {
        self.extra_env.push((name.into(), value.into()));
        self
    }

    /// The environment every server gives, plus the site's settings and alice's cookie.
    fn base_env(&self, method: &str, query: &str) -> Vec<(String, OsString)> {
        let mut env: Vec<(String, OsString)> = [
            ("GATEWAY_INTERFACE", "CGI/1.1"),
            ("SERVER_PROTOCOL", "HTTP/1.1"),
            ("SERVER_NAME", "example.com"),
            ("SERVER_PORT", "80"),
            ("REMOTE_ADDR", "192.0.2.1"),
            ("HTTP_HOST", "example.com"),
            ("REQUEST_METHOD", method),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), OsString::from(v)))
        .collect();
        env.push(("QUERY_STRING".into(), query.into()));
        env.push(("DOCUMENT_ROOT".into(), self.docroot.clone().into()));
        env.push(("PIGGYBACK_DB".into(), self.site.db.clone().into()));
        env.push(("PIGGYBACK_SPOOL".into(), self.site.spool().into()));
        env.push(("PIGGYBACK_SECRET_FILE".into(), self.site.secret().into()));
        env.push(("PIGGYBACK_WRAP_ROOT".into(), self.app.clone().into()));
        env.push(("PATH".into(), "/usr/bin:/bin".into()));
        env
    }

    fn cookie(&self, user: &str) -> (String, OsString) {
        ("HTTP_COOKIE".into(), format!("pb_session={}", self.site.token(user)).into())
    }

    /// lighttpd's `cgi.assign`: argv `[wrapper, script]`, SCRIPT_FILENAME the script;
    /// in FastCGI mode the same variables as parameters.
    fn lighttpd(&self, script: &str, extra: &[(String, OsString)]) -> Answer {
        self.lighttpd_as(self.mode, script, extra)
    }

    /// [`Wrapped::lighttpd`] in `mode`.
    fn lighttpd_as(&self, mode: Mode, script: &str, extra: &[(String, OsString)]) -> Answer {
        let path = self.app.join(script);
        let mut env = self.base_env("GET", "");
        env.push(("SCRIPT_FILENAME".into(), path.clone().into()));
        env.push(("SCRIPT_NAME".into(), format!("/app/{script}").into()));
        env.push(("REDIRECT_STATUS".into(), "200".into()));
        env.extend(extra.iter().cloned());
        self.request_as(mode, &path, env, b"")
    }

    /// Apache's `Action piggyback-wrap /cgi-bin/piggyback-wrap`: the target in
    /// PATH_TRANSLATED with the extra path, argv from a query string without `=`.
    fn apache(&self, url: &str, query: &str, extra: &[(String, OsString)]) -> Answer {
        let mut env = self.base_env("GET", query);
        env.push(("SCRIPT_FILENAME".into(), WRAPPER.into()));
        env.push(("SCRIPT_NAME".into(), "/cgi-bin/piggyback-wrap".into()));
        env.push(("PATH_INFO".into(), url.into()));
        env.push(("PATH_TRANSLATED".into(), format!("{}{url}", self.docroot.display()).into()));
        env.push(("REDIRECT_STATUS".into(), "200".into()));
        env.push(("REDIRECT_HANDLER".into(), "piggyback-wrap".into()));
        env.push(("REDIRECT_URL".into(), url.into()));
        env.extend(extra.iter().cloned());
        let args: Vec<OsString> = if query.contains('=') { vec![] } else { query.split('+').map(Into::into).collect() };
        self.run(WRAPPER, &args, env, b"")
    }

    fn run(&self, exe: &str, args: &[OsString], env: Vec<(String, OsString)>, body: &[u8]) -> Answer {
        let mut env = env;
        env.extend(self.extra_env.iter().cloned());
        let mut child = Command::new(exe)
            .args(args)
            .env_clear()
            .envs(env)
            .current_dir("/")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the wrapper starts");
        let mut stdin = child.stdin.take().unwrap();
        let _ = stdin.write_all(body);
        drop(stdin);
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "the wrapper exits 0: {}", String::from_utf8_lossy(&out.stderr));
        Answer { raw: out.stdout, stderr: String::from_utf8_lossy(&out.stderr).into_owned() }
    }

    /// The program run directly, as the server would without the wrapper.
    fn direct(&self, script: &str) -> Vec<u8> {
        let path = self.app.join(script);
        let out = Command::new(&path)
            .env_clear()
            .envs(self.base_env("GET", ""))
            .current_dir(&self.app)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        out.stdout
    }
}

fn var(name: &str, value: impl Into<OsString>) -> (String, OsString) {
    (name.into(), value.into())
}

fn shell_perl_and_php_json_answers_carry_site_messages_announced_once(mode: Mode) {
    let w = Wrapped::in_mode(mode);
    let alice = w.cookie("alice");
    for script in ["hello.sh", "hello.pl", "hello.php"] {
        w.site.deliver("bob", "alice", &format!("for {script}"));
        let first = w.lighttpd(script, std::slice::from_ref(&alice));
        let json = first.json();
        assert_eq!(first.announced().len(), 1, "{script} announces the new message: {json}");
        assert_eq!(json["site_messages"]["items"][0]["subject"], format!("for {script}"));
        assert!(json["from"].is_string(), "the program's own members stay: {json}");
        assert_eq!(first.header("Content-Length"), Some(first.body().len().to_string().as_str()), "{script}");
        assert_eq!(first.header("Cache-Control"), Some("private, no-store"), "{script}");
        let again = w.lighttpd(script, std::slice::from_ref(&alice));
        assert!(again.announced().is_empty(), "{script}: announced once: {}", again.text());
        assert_eq!(again.json()["site_messages"]["new"], 0);
    }
    // The program's own text is kept exactly: 1.50 and a 23-digit number survive.
    let sh = w.lighttpd("hello.sh", std::slice::from_ref(&alice));
    assert!(sh.body().starts_with(b"{\"from\": \"sh\", \"n\": 1.50,\"site_messages\":"), "{}", sh.text());
    assert_eq!(sh.header("X-Site"), Some("shell"));
    let pl = w.lighttpd("hello.pl", &[alice]);
    assert!(pl.text().contains("\"big\":12345678901234567890123,"), "{}", pl.text());
    w.site.assert_check_passes();
}

fn a_cross_site_request_through_the_wrapper_reports_counts_and_announces_nothing(mode: Mode) {
    let w = Wrapped::in_mode(mode);
    w.site.deliver("bob", "alice", "not for another site");
    let alice = w.cookie("alice");
    let evil = var("HTTP_ORIGIN", "http://evil.example");
    let answer = w.lighttpd("hello.sh", &[alice.clone(), evil]);
    let json = answer.json();
    assert_eq!(json["site_messages"]["items"], serde_json::json!([]), "{json}");
    assert_eq!(w.site.counters("alice"), (1, 0), "nothing flipped");
    assert_eq!(w.lighttpd("hello.sh", &[alice]).announced().len(), 1, "announced on the site's own page");
}

fn html_a_redirect_a_download_and_nph_pass_byte_for_byte(mode: Mode) {
    let w = Wrapped::in_mode(mode);
    let alice = w.cookie("alice");
    w.site.deliver("bob", "alice", "unseen");
    for script in ["page.sh", "redirect.sh", "download.pl", "nph-raw.sh"] {
        let wrapped = w.lighttpd(script, std::slice::from_ref(&alice));
        let direct = w.direct(script);
        assert!(!direct.is_empty());
        assert!(wrapped.raw == direct, "{script} passes unchanged ({} vs {} bytes)", wrapped.raw.len(), direct.len());
    }
    assert_eq!(w.lighttpd("download.pl", &[]).body().len(), 1 << 20);
    // Nothing was announced by answers that carry no messages.
    assert_eq!(w.site.counters("alice"), (1, 0));
}

fn anonymous_and_non_object_json_pass_unchanged(mode: Mode) {
    let w = Wrapped::in_mode(mode);
    assert_eq!(w.lighttpd("hello.sh", &[]).raw, w.direct("hello.sh"));
    let forged = var("HTTP_COOKIE", "pb_session=forged.value");
    assert_eq!(w.lighttpd("hello.sh", &[forged]).raw, w.direct("hello.sh"));
}

fn a_json_answer_past_the_buffer_streams_through_and_the_log_says_so(mode: Mode) {
    let w = Wrapped::in_mode(mode).set("PIGGYBACK_WRAP_BUFFER", "1k");
    let alice = w.cookie("alice");
    let answer = w.lighttpd("large.pl", &[alice]);
    assert_eq!(answer.raw, w.direct("large.pl"));
    assert!(answer.stderr.contains("PIGGYBACK_WRAP_BUFFER"), "{}", answer.stderr);
}

fn a_piggyback_failure_never_changes_the_answer(mode: Mode) {
    let w = Wrapped::in_mode(mode);
    let alice = w.cookie("alice");
    let missing = var("PIGGYBACK_DB", w.site.dir.path().join("gone/none.db"));
    let answer = w.lighttpd("hello.pl", &[alice.clone(), missing]);
    assert_eq!(answer.raw, w.direct("hello.pl"));
    assert!(answer.stderr.contains("site_messages left out"), "{}", answer.stderr);
    let unconfigured = var("PIGGYBACK_DB", "relative.db");
    let answer = w.lighttpd("hello.pl", &[alice.clone(), unconfigured]);
    assert_eq!(answer.raw, w.direct("hello.pl"));
    assert!(answer.stderr.contains("PIGGYBACK_DB"), "{}", answer.stderr);
    // A database locked by someone else: the site still answers.
    w.site.deliver("bob", "alice", "waiting");
    let conn = w.site.conn();
    conn.begin_exclusive();
    let answer = w.lighttpd("hello.pl", std::slice::from_ref(&alice));
    assert_eq!(answer.raw, w.direct("hello.pl"));
    conn.exec("ROLLBACK");
    assert_eq!(w.lighttpd("hello.pl", &[alice]).announced().len(), 1, "announced once the lock is gone");
}

fn the_program_gets_a_rebuilt_environment_and_its_own_folder(mode: Mode) {
    let w = Wrapped::in_mode(mode);
    let extra = [
        var("HTTP_PROXY", "http://evil.example:3128"),
        var("HTTP_REDIRECT_STATUS", "200"),
        var("PATH_INFO", "/more/path"),
        var("REMOTE_USER", "someone"),
    ];
    let json = w.lighttpd("env.pl", &extra).json();
    let env = &json["env"];
    let program = std::fs::canonicalize(w.app.join("env.pl")).unwrap();
    assert_eq!(env["SCRIPT_FILENAME"], program.to_str().unwrap());
    assert_eq!(env["SCRIPT_NAME"], "/app/env.pl");
    assert_eq!(env["PATH_INFO"], "/more/path");
    assert_eq!(env["PATH_TRANSLATED"], format!("{}/more/path", w.docroot.display()));
    assert_eq!(env["REDIRECT_STATUS"], "200");
    assert_eq!(env["REMOTE_USER"], "someone", "the site's program decides about its own users");
    for dropped in ["HTTP_PROXY", "HTTP_REDIRECT_STATUS", "PIGGYBACK_WRAP_ROOT"] {
        assert!(env.get(dropped).is_none(), "{dropped} reaches the program: {env}");
    }
    assert_eq!(json["cwd"], std::fs::canonicalize(&w.app).unwrap().to_str().unwrap());
    assert_eq!(json["argv"], serde_json::json!([]));
}

fn the_body_stays_on_stdin_for_the_program(mode: Mode) {
    let w = Wrapped::in_mode(mode);
    let path = w.app.join("env.pl");
    let mut env = w.base_env("POST", "");
    env.push(var("SCRIPT_FILENAME", &path));
    env.push(var("CONTENT_LENGTH", "13"));
    env.push(var("CONTENT_TYPE", "application/json"));
    env.push(w.cookie("alice"));
    let answer = w.request(&path, env, b"{\"a\": \"body\"}");
    let json = answer.json();
    assert_eq!(json["body"], "{\"a\": \"body\"}");
    assert!(json.get("site_messages").is_some(), "{json}");
}

fn the_programs_stderr_goes_to_the_servers_log(mode: Mode) {
    let w = Wrapped::in_mode(mode);
    let answer = w.lighttpd("complain.sh", &[]);
    assert!(answer.stderr.contains("the site program complains"), "{}", answer.stderr);
    assert!(!answer.text().contains("complains"));
}

fn a_program_past_the_timeout_is_stopped_and_answered_504(mode: Mode) {
    let w = Wrapped::in_mode(mode).set("PIGGYBACK_WRAP_TIMEOUT", "1");
    let answer = w.lighttpd("slow.sh", &[]);
    assert_eq!(answer.status(), 504, "{}", answer.text());
    let pid: u32 = answer.stderr.split("pid ").nth(1).and_then(|s| s.split_whitespace().next()?.parse().ok()).unwrap();
    assert!(!Path::new(&format!("/proc/{pid}")).exists(), "the program {pid} is gone");
    assert!(answer.stderr.contains("PIGGYBACK_WRAP_TIMEOUT"), "{}", answer.stderr);
    let answer = w.lighttpd("slow-tree.sh", &[]);
    assert_eq!(answer.status(), 504, "{}", answer.text());
    let pid: u32 = answer.stderr.split("pid ").nth(1).and_then(|s| s.split_whitespace().next()?.parse().ok()).unwrap();
    // SIGKILL is delivered asynchronously: a loaded machine may show the grandchild
    // running for a moment after the wrapper answered, so wait for it, boundedly.
    let gone = |state: &str| state.is_empty() || state.contains(") Z ");
    let mut state = String::new();
    for _ in 0..100 {
        state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        if gone(&state) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(gone(&state), "the program's own child {pid} is gone: {state}");
}

#[test]
fn a_wrapper_stopped_by_the_server_stops_its_program() {
    // lighttpd sends SIGTERM when the client goes away or its own timeout passes.
    let w = Wrapped::new();
    let path = w.app.join("slow.sh");
    let mut env = w.base_env("GET", "");
    env.push(var("SCRIPT_FILENAME", &path));
    let mut wrapper = Command::new(WRAPPER)
        .arg(&path)
        .env_clear()
        .envs(env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = std::io::BufReader::new(wrapper.stderr.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut stderr, &mut line).unwrap();
    let pid: u32 = line.trim().strip_prefix("pid ").and_then(|p| p.parse().ok()).unwrap_or_else(|| panic!("{line}"));
    assert!(Path::new(&format!("/proc/{pid}")).exists(), "the program runs");
    let term = Command::new("kill").arg("-TERM").arg(wrapper.id().to_string()).status().unwrap();
    assert!(term.success());
    let status = wrapper.wait().unwrap();
    assert!(status.success(), "{status}");
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
    assert!(rest.contains("stopped by the server"), "{rest}");
    let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    assert!(state.is_empty() || state.contains(") Z "), "the program {pid} is gone: {state}");
}

#[test]
fn apache_action_runs_the_file_in_path_translated_without_its_extra_path() {
    let w = Wrapped::new();
    w.site.deliver("bob", "alice", "via apache");
    let alice = w.cookie("alice");
    let answer = w.apache("/app/env.pl/extra/path", "", std::slice::from_ref(&alice));
    let json = answer.json();
    assert_eq!(json["env"]["SCRIPT_NAME"], "/app/env.pl");
    assert_eq!(json["env"]["PATH_INFO"], "/extra/path");
    assert_eq!(json["env"]["PATH_TRANSLATED"], format!("{}/extra/path", w.docroot.display()));
    assert!(json["env"].get("REDIRECT_HANDLER").is_none());
    assert_eq!(answer.announced().len(), 1);
}

#[test]
fn arguments_from_a_query_string_never_reach_the_program() {
    let w = Wrapped::new();
    // Apache turns `?-s` and `?foo+bar` into argv (RFC 3875 4.4): php-cgi's CVE-2012-1823.
    let json = w.apache("/app/env.pl", "foo+bar", &[]).json();
    assert_eq!(json["argv"], serde_json::json!([]));
    let php = w.apache("/app/hello.php", "-s", &[]);
    assert_eq!(php.json()["from"], "php", "php-cgi ran the program, did not show its source: {}", php.text());
    assert!(!php.text().contains("<?php"));
    let php = w.apache("/app/hello.php", "-d+allow_url_include%3d1", &[]);
    assert_eq!(php.json()["argv"], serde_json::json!([]), "{}", php.text());
}

#[test]
fn a_direct_request_of_the_wrapper_on_apache_is_refused() {
    let w = Wrapped::new();
    let translated = format!("{}/app/hello.sh", w.docroot.display());
    // GET /cgi-bin/piggyback-wrap/app/hello.sh: no REDIRECT_* at all.
    let mut env = w.base_env("GET", "");
    env.push(var("SCRIPT_FILENAME", WRAPPER));
    env.push(var("PATH_INFO", "/app/hello.sh"));
    env.push(var("PATH_TRANSLATED", &translated));
    w.run(WRAPPER, &[], env.clone(), b"").assert_refused("direct request");
    // A client's `Redirect-Status:` and `Redirect-Handler:` headers count for nothing.
    let mut forged = env.clone();
    forged.push(var("HTTP_REDIRECT_STATUS", "200"));
    forged.push(var("HTTP_REDIRECT_HANDLER", "piggyback-wrap"));
    w.run(WRAPPER, &[], forged, b"").assert_refused("direct request");
    // The query naming the target as argv: it is not SCRIPT_FILENAME (the wrapper).
    w.run(WRAPPER, &[translated.clone().into()], env.clone(), b"").assert_refused("not exactly SCRIPT_FILENAME");
    // Another handler, or a handler with no REDIRECT_STATUS.
    let mut other = env.clone();
    other.push(var("REDIRECT_STATUS", "200"));
    other.push(var("REDIRECT_HANDLER", "cgi-script"));
    w.run(WRAPPER, &[], other, b"").assert_refused("REDIRECT_HANDLER");
    let mut no_status = env;
    no_status.push(var("REDIRECT_HANDLER", "piggyback-wrap"));
    w.run(WRAPPER, &[], no_status, b"").assert_refused("without REDIRECT_STATUS");
}

#[test]
fn on_lighttpd_exactly_one_argument_equal_to_script_filename() {
    let w = Wrapped::new();
    let path = w.app.join("hello.sh");
    let mut env = w.base_env("GET", "");
    env.push(var("SCRIPT_FILENAME", &path));
    let other = w.app.join("page.sh");
    for args in [vec![], vec![path.clone().into_os_string(), "-x".into()], vec![other.into_os_string()]] {
        w.run(WRAPPER, &args, env.clone(), b"").assert_refused("SCRIPT_FILENAME");
    }
}

#[test]
fn busybox_httpd_passes_the_file_name_and_runs_the_wrapper_in_the_programs_folder() {
    let w = Wrapped::new();
    let path = w.app.join("hello.sh");
    let mut env = w.base_env("GET", "");
    env.push(var("SCRIPT_FILENAME", &path));
    env.push(w.cookie("alice"));
    let run_in = |cwd: &Path, env: Vec<(String, OsString)>| {
        let out = Command::new(WRAPPER).arg("hello.sh").env_clear().envs(env).current_dir(cwd).output().unwrap();
        Answer { raw: out.stdout, stderr: String::from_utf8_lossy(&out.stderr).into_owned() }
    };
    let answer = run_in(&w.app, env.clone());
    assert!(answer.json().get("site_messages").is_some(), "{}", answer.text());
    // The same name from another folder is not the program SCRIPT_FILENAME names.
    run_in(w.site.dir.path(), env).assert_refused("SCRIPT_FILENAME");
}

#[test]
fn the_wrapper_never_runs_itself() {
    let w = Wrapped::new().set("PIGGYBACK_WRAP_EXTENSIONS", ".cgi");
    let copy = w.app.join("self.cgi");
    std::fs::copy(WRAPPER, &copy).unwrap();
    chmod(&copy, 0o755);
    let mut env = w.base_env("GET", "");
    env.push(var("SCRIPT_FILENAME", &copy));
    w.run(copy.to_str().unwrap(), &[copy.clone().into()], env, b"").assert_refused("itself");
}

fn only_regular_files_under_the_root_with_an_allowed_extension_on_the_resolved_name(mode: Mode) {
    let w = Wrapped::in_mode(mode);
    let outside = w.site.dir.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    chmod(&outside, 0o755);
    std::fs::copy(w.app.join("hello.sh"), outside.join("hello.sh")).unwrap();
    chmod(&outside.join("hello.sh"), 0o755);
    std::os::unix::fs::symlink(outside.join("hello.sh"), w.app.join("link.sh")).unwrap();
    std::os::unix::fs::symlink(w.app.join("picture.jpg"), w.app.join("picture.pl")).unwrap();
    std::fs::create_dir(w.app.join("folder.sh")).unwrap();
    chmod(&w.app.join("folder.sh"), 0o755);
    let lighttpd = |path: PathBuf| {
        let mut env = w.base_env("GET", "");
        env.push(var("SCRIPT_FILENAME", &path));
        w.request(&path, env, b"")
    };
    lighttpd(outside.join("hello.sh")).assert_refused("outside PIGGYBACK_WRAP_ROOT");
    lighttpd(w.app.join("link.sh")).assert_refused("outside PIGGYBACK_WRAP_ROOT");
    lighttpd(w.app.join("../app/../outside/hello.sh")).assert_refused("`..`");
    lighttpd(w.app.join("folder.sh")).assert_refused("not a regular file");
    lighttpd(w.app.join("picture.jpg")).assert_refused("PIGGYBACK_WRAP_EXTENSIONS");
    lighttpd(w.app.join("picture.pl")).assert_refused("PIGGYBACK_WRAP_EXTENSIONS");
    let missing = lighttpd(w.app.join("missing.sh"));
    assert_eq!(missing.status(), 404, "{}", missing.text());
    if mode == Mode::FastCgi {
        return;
    }
    // nginx's old mistake, /upload/x.jpg/y.php: the file found is picture.jpg.
    w.apache("/app/picture.jpg/y.php", "", &[]).assert_refused("PIGGYBACK_WRAP_EXTENSIONS");
    // No root configured: nothing runs.
    let mut env = w.base_env("GET", "");
    env.retain(|(k, _)| k != "PIGGYBACK_WRAP_ROOT");
    env.push(var("SCRIPT_FILENAME", w.app.join("hello.sh")));
    let answer = w.run(WRAPPER, &[w.app.join("hello.sh").into()], env, b"");
    assert_eq!(answer.status(), 500, "{}", answer.text());
    assert!(answer.stderr.contains("PIGGYBACK_WRAP_ROOT"));
}

fn programs_that_others_may_change_are_refused(mode: Mode) {
    let w = Wrapped::in_mode(mode);
    chmod(&w.app.join("hello.sh"), 0o775);
    w.lighttpd("hello.sh", &[]).assert_refused("writable by its group or others");
    chmod(&w.app.join("hello.sh"), 0o757);
    w.lighttpd("hello.sh", &[]).assert_refused("writable by its group or others");
    chmod(&w.app.join("hello.sh"), 0o4755);
    w.lighttpd("hello.sh", &[]).assert_refused("setuid");
    chmod(&w.app.join("hello.sh"), 0o755);
    chmod(&w.app, 0o777);
    w.lighttpd("hello.sh", &[]).assert_refused("writable by its group or others");
    chmod(&w.app, 0o755);
    assert_eq!(w.lighttpd("hello.sh", &[]).status(), 200);
}

#[test]
fn under_fcgiwrap_the_target_comes_from_the_servers_parameter_only() {
    let w = Wrapped::new();
    let alice = w.cookie("alice");
    let mut env = w.base_env("GET", "");
    env.push(var("SCRIPT_FILENAME", WRAPPER));
    env.push(var("SCRIPT_NAME", "/app/env.pl"));
    env.push(var("PATH_INFO", "/x"));
    env.push(var("PIGGYBACK_WRAP_TARGET", w.app.join("env.pl")));
    env.push(alice);
    let json = w.run(WRAPPER, &[], env.clone(), b"").json();
    assert_eq!(json["env"]["SCRIPT_NAME"], "/app/env.pl");
    assert_eq!(json["env"]["PATH_INFO"], "/x");
    assert!(json["env"].get("PIGGYBACK_WRAP_TARGET").is_none());
    assert!(json.get("site_messages").is_some());
    w.run(WRAPPER, &["-s".into()], env, b"").assert_refused("arguments");
}

#[test]
fn settings_come_from_the_install_file_when_the_environment_has_none() {
    // suexec passes no SetEnv value: the wrapper reads ../etc/piggyback-wrap.conf.
    let w = Wrapped::new();
    let install = w.site.dir.path().join("install");
    std::fs::create_dir_all(install.join("cgi-bin")).unwrap();
    std::fs::create_dir_all(install.join("etc")).unwrap();
    let copy = install.join("cgi-bin/piggyback-wrap");
    std::fs::copy(WRAPPER, &copy).unwrap();
    let conf = install.join("etc/piggyback-wrap.conf");
    std::fs::write(
        &conf,
        format!(
            "# the settings\nPIGGYBACK_WRAP_ROOT={}\nPIGGYBACK_DB={}\nPIGGYBACK_SPOOL={}\nPIGGYBACK_SECRET_FILE={}\n",
            w.app.display(),
            w.site.db.display(),
            w.site.spool().display(),
            w.site.secret().display()
        ),
    )
    .unwrap();
    chmod(&conf, 0o644);
    w.site.deliver("bob", "alice", "by file");
    let path = w.app.join("hello.pl");
    let mut env = w.base_env("GET", "");
    env.retain(|(k, _)| !k.starts_with("PIGGYBACK_"));
    env.push(var("SCRIPT_FILENAME", &path));
    env.push(w.cookie("alice"));
    let answer = w.run(copy.to_str().unwrap(), &[path.into()], env.clone(), b"");
    assert_eq!(answer.announced().len(), 1, "{}", answer.text());
    chmod(&conf, 0o666);
    let answer = w.run(copy.to_str().unwrap(), &[w.app.join("hello.pl").into()], env, b"");
    assert_eq!(answer.status(), 500, "a file others may write is ignored: {}", answer.text());
    assert!(answer.stderr.contains("writable by its group or others"), "{}", answer.stderr);
}

/// A program of the site whose own `#!` line names the wrapper and its interpreter, as
/// under Python's `http.server --cgi`, which maps no interpreter (docs/INTEGRATE.md).
fn shebang_program(w: &Wrapped, name: &str, interpreter: &str, body: &str) -> PathBuf {
    let path = w.app.join(name);
    std::fs::write(&path, format!("#!{WRAPPER} {interpreter}\n{body}")).unwrap();
    chmod(&path, 0o755);
    path
}

const ENV_PL: &str = "use strict; use Cwd; use JSON::PP;\nprint \"Content-Type: application/json\\n\\n\";\n\
    print JSON::PP->new->canonical->encode({env => \\%ENV, argv => \\@ARGV, cwd => getcwd()});\n";

impl Wrapped {
    /// The program executed as Python's `http.server --cgi` executes it: argv
    /// `[name, query]` (the query only when it has no `=`), no `SCRIPT_FILENAME`, the
    /// server's folder as the working directory; the kernel reads the `#!` line.
    fn python(&self, program: &Path, query: &str, extra: &[(String, OsString)]) -> Answer {
        let mut env = self.base_env("GET", query);
        env.push(var("SCRIPT_NAME", format!("/app/{}", program.file_name().unwrap().to_str().unwrap())));
        env.extend(extra.iter().cloned());
        env.extend(self.extra_env.iter().cloned());
        let mut command = Command::new(program);
        if !query.contains('=') {
            command.arg(query.replace('+', " "));
        }
        let out = command.env_clear().envs(env).current_dir(self.site.dir.path()).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        Answer { raw: out.stdout, stderr: String::from_utf8_lossy(&out.stderr).into_owned() }
    }
}

#[test]
fn a_program_whose_first_line_names_the_wrapper_runs_under_the_interpreter_it_names() {
    let w = Wrapped::new();
    let alice = w.cookie("alice");
    let perl = shebang_program(&w, "env-shebang.pl", "/usr/bin/perl", ENV_PL);
    let php = shebang_program(
        &w,
        "shebang.php",
        "/usr/bin/php-cgi",
        "<?php\nheader('Content-Type: application/json');\necho json_encode(['from' => 'php']);\n",
    );
    let sh = shebang_program(
        &w,
        "shebang.sh",
        "/bin/sh",
        "printf 'Content-Type: application/json\\n\\n{\"from\": \"sh\"}'\n",
    );
    let py = shebang_program(
        &w,
        "shebang.py",
        "/usr/bin/python3",
        "print('Content-Type: application/json')\nprint()\nprint('{\"from\": \"python\"}')\n",
    );
    for program in [&perl, &php, &sh, &py] {
        w.site.deliver("bob", "alice", &format!("for {}", program.display()));
        let first = w.python(program, "", std::slice::from_ref(&alice));
        assert_eq!(first.announced().len(), 1, "{}: {}; {}", program.display(), first.text(), first.stderr);
        let again = w.python(program, "", std::slice::from_ref(&alice));
        assert!(again.announced().is_empty(), "announced once: {}", again.text());
    }
    // The program sees itself as if the server had started it, in its own folder.
    let json = w.python(&perl, "", &[var("PATH_INFO", "/extra")]).json();
    assert_eq!(json["env"]["SCRIPT_FILENAME"], std::fs::canonicalize(&perl).unwrap().to_str().unwrap());
    assert_eq!(json["env"]["SCRIPT_NAME"], "/app/env-shebang.pl");
    assert_eq!(json["env"]["PATH_INFO"], "/extra");
    assert_eq!(json["cwd"], std::fs::canonicalize(&w.app).unwrap().to_str().unwrap());
    assert!(json.get("site_messages").is_none(), "anonymous: passed unchanged");
    // The same program through a server's mapping (lighttpd's cgi.assign) runs under
    // the interpreter its line names, once: executing it would start the wrapper again.
    let mapped = w.lighttpd("env-shebang.pl", std::slice::from_ref(&alice));
    assert!(mapped.text().matches("site_messages").count() == 1, "{}", mapped.text());
    assert_eq!(mapped.json()["argv"], serde_json::json!([]));
}

#[test]
fn under_a_wrapper_shebang_the_query_words_never_reach_the_program() {
    let w = Wrapped::new();
    let perl = shebang_program(&w, "env-shebang.pl", "/usr/bin/perl", ENV_PL);
    let php = shebang_program(
        &w,
        "argv.php",
        "/usr/bin/php-cgi",
        "<?php\nheader('Content-Type: application/json');\necho json_encode(['from' => 'php', 'argv' => $_SERVER['argv'] ?? []]);\n",
    );
    for query in ["foo+bar", "-s", "-d+allow_url_include%3d1"] {
        assert_eq!(w.python(&perl, query, &[]).json()["argv"], serde_json::json!([]), "?{query}");
        let answer = w.python(&php, query, &[]);
        assert!(!answer.text().contains("<?php"), "php-cgi ran the program: {}", answer.text());
        assert_eq!(answer.json()["argv"], serde_json::json!([]), "?{query}: {}", answer.text());
    }
}

#[test]
fn shebang_arguments_count_only_when_the_programs_own_line_names_the_wrapper_with_them() {
    let w = Wrapped::new();
    let perl = shebang_program(&w, "env-shebang.pl", "/usr/bin/perl", ENV_PL);
    let mut env = w.base_env("GET", "");
    env.push(var("SCRIPT_NAME", "/app/x"));
    // A program whose line names its interpreter directly: not one to wrap this way.
    let plain = w.app.join("env.pl");
    w.run(WRAPPER, &["/usr/bin/perl".into(), plain.into()], env.clone(), b"").assert_refused("SCRIPT_FILENAME");
    // Another interpreter than the line names.
    w.run(WRAPPER, &["/bin/sh".into(), perl.clone().into()], env.clone(), b"").assert_refused("SCRIPT_FILENAME");
    // One argument only (Python executing the wrapper itself with a query): refused.
    w.run(WRAPPER, &[perl.clone().into()], env, b"").assert_refused("SCRIPT_FILENAME");
    // Lines the wrapper will not follow: a relative interpreter, switches after it, the
    // wrapper itself, nothing at all.
    for (name, interpreter) in
        [("rel.pl", "perl"), ("switch.pl", "/usr/bin/perl -w"), ("self.pl", WRAPPER), ("none.sh", "")]
    {
        let program = shebang_program(&w, name, interpreter, ENV_PL);
        w.lighttpd(name, &[]).assert_refused("its #! line names the wrapper");
        // With no interpreter the kernel's arguments are [program, query]: no shebang form.
        let why = if interpreter.is_empty() { "SCRIPT_FILENAME" } else { "its #! line names the wrapper" };
        w.python(&program, "", &[]).assert_refused(why);
    }
    // A wrapped program outside the root, or others may change: refused like any other.
    let outside = w.site.dir.path().join("outside.pl");
    std::fs::write(&outside, format!("#!{WRAPPER} /usr/bin/perl\n{ENV_PL}")).unwrap();
    chmod(&outside, 0o755);
    w.python(&outside, "", &[]).assert_refused("outside PIGGYBACK_WRAP_ROOT");
    chmod(&perl, 0o775);
    w.python(&perl, "", &[]).assert_refused("writable by its group or others");
}

/// Each test of the list, as `NAME::cgi` and `NAME::fastcgi`.
macro_rules! in_both_modes {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[test]
            fn cgi() {
                super::$name(super::Mode::Cgi)
            }
            #[test]
            fn fastcgi() {
                super::$name(super::Mode::FastCgi)
            }
        }
    )*};
}

in_both_modes!(
    shell_perl_and_php_json_answers_carry_site_messages_announced_once,
    a_cross_site_request_through_the_wrapper_reports_counts_and_announces_nothing,
    html_a_redirect_a_download_and_nph_pass_byte_for_byte,
    anonymous_and_non_object_json_pass_unchanged,
    a_json_answer_past_the_buffer_streams_through_and_the_log_says_so,
    a_piggyback_failure_never_changes_the_answer,
    the_program_gets_a_rebuilt_environment_and_its_own_folder,
    the_body_stays_on_stdin_for_the_program,
    the_programs_stderr_goes_to_the_servers_log,
    a_program_past_the_timeout_is_stopped_and_answered_504,
    only_regular_files_under_the_root_with_an_allowed_extension_on_the_resolved_name,
    programs_that_others_may_change_are_refused
);

/// A request of `script` in the kept FastCGI wrapper, on a connection the test holds.
fn fastcgi_params(w: &Wrapped, script: &str, extra: &[(String, OsString)]) -> BTreeMap<String, OsString> {
    let mut env = w.base_env("GET", "");
    env.push(var("SCRIPT_FILENAME", w.app.join(script)));
    env.push(var("SCRIPT_NAME", format!("/app/{script}")));
    env.extend(extra.iter().cloned());
    env.into_iter().collect()
}

#[test]
fn a_kept_fastcgi_wrapper_carries_no_identity_from_one_request_to_the_next() {
    // One worker: every request below is answered by the same process.
    let w = Wrapped::in_mode(Mode::FastCgi).set("PIGGYBACK_WRAP_CHILDREN", "1");
    w.site.deliver("bob", "alice", "for alice only");
    w.site.deliver("alice", "bob", "for bob only");
    let alice = w.cookie("alice");
    let first = w.lighttpd("hello.sh", std::slice::from_ref(&alice));
    assert_eq!(first.announced().len(), 1, "{}", first.text());
    // Nobody, then a forged cookie: passed unchanged, nothing of alice's left.
    assert_eq!(w.lighttpd("hello.sh", &[]).raw, w.direct("hello.sh"));
    assert_eq!(w.lighttpd("hello.sh", &[var("HTTP_COOKIE", "pb_session=forged.value")]).raw, w.direct("hello.sh"));
    // REMOTE_USER without the operator's trust setting names nobody either.
    assert_eq!(w.lighttpd("hello.sh", &[var("REMOTE_USER", "alice")]).raw, w.direct("hello.sh"));
    // bob sees his own message, and only his.
    let bob = w.lighttpd("hello.sh", &[w.cookie("bob")]);
    let items = bob.json()["site_messages"]["items"].clone();
    assert_eq!(items.as_array().map(Vec::len), Some(1), "{}", bob.text());
    assert_eq!(items[0]["subject"], "for bob only");
    assert_eq!(w.site.counters("alice"), (0, 1), "alice's message was announced once, to alice");
    w.site.assert_check_passes();
}

#[test]
fn announcements_are_made_once_across_cgi_and_fastcgi_wrappers_under_concurrency() {
    let w = Wrapped::in_mode(Mode::FastCgi);
    // Fewer than PIGGYBACK_MAX_ITEMS in all, so that every announcement lists each one.
    const MESSAGES: usize = 12;
    let alice = w.cookie("alice");
    let mut announced: Vec<i64> = std::thread::scope(|scope| {
        // Messages arrive while both wrappers answer alice's pages.
        scope.spawn(|| {
            for i in 0..MESSAGES {
                w.site.deliver("bob", "alice", &format!("message {i}"));
            }
        });
        let mut askers = Vec::new();
        for (n, mode) in [Mode::FastCgi, Mode::Cgi, Mode::FastCgi, Mode::Cgi].into_iter().enumerate() {
            let (alice, w) = (alice.clone(), &w);
            askers.push(scope.spawn(move || {
                let script = ["hello.sh", "hello.pl"][n / 2];
                (0..8)
                    .flat_map(|_| w.lighttpd_as(mode, script, std::slice::from_ref(&alice)).announced())
                    .collect::<Vec<_>>()
            }));
        }
        askers.into_iter().flat_map(|a| a.join().unwrap()).collect()
    });
    // What arrived after the last of them: the next page announces it.
    announced.extend(w.lighttpd("hello.sh", &[alice]).announced());
    let mut unique = announced.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), announced.len(), "no message announced twice: {announced:?}");
    assert_eq!(unique.len(), MESSAGES, "every message announced: {announced:?}");
    assert_eq!(w.site.counters("alice"), (0, MESSAGES as i64));
    w.site.assert_check_passes();
}

#[test]
fn sigterm_lets_a_kept_fastcgi_wrapper_finish_a_slow_programs_answer_then_exit_0() {
    let w = Wrapped::in_mode(Mode::FastCgi);
    let path = w.app.join("slow-answer.sh");
    std::fs::write(
        &path,
        "#!/bin/sh\necho started >&2\nsleep 1\nprintf 'Content-Type: application/json\\n\\n{\"slow\": true}'\n",
    )
    .unwrap();
    chmod(&path, 0o755);
    w.site.deliver("bob", "alice", "while stopping");
    let kept = w.kept();
    let mut conn = kept.connect();
    let params = fastcgi_params(&w, "slow-answer.sh", &[w.cookie("alice")]);
    conn.write_all(&crate::fastcgi::request_bytes(1, false, &params, b"")).unwrap();
    // The program runs: then the wrapper is told to stop.
    let mut waited = 0;
    while !kept.stderr().contains("started") {
        assert!(waited < 600, "the program never started: {}", kept.stderr());
        std::thread::sleep(std::time::Duration::from_millis(50));
        waited += 1;
    }
    // SAFETY: a signal to the process this test started.
    assert_eq!(unsafe { libc::kill(kept.pid() as libc::pid_t, libc::SIGTERM) }, 0);
    let (raw, status) = crate::fastcgi::read_answer(&mut conn, 1);
    assert_eq!(status, 0);
    let answer = Answer { raw, stderr: String::new() };
    assert_eq!(answer.json()["slow"], true, "{}", answer.text());
    assert_eq!(answer.announced().len(), 1, "{}", answer.text());
    let (status, log) = w.kept.into_inner().unwrap().stop_waiting();
    assert!(status.success(), "{status}: {log}");
    assert!(!log.contains("panicked"), "{log}");
}

#[test]
fn a_trickling_client_is_cut_off_at_the_deadline_while_the_fastcgi_wrapper_serves_another() {
    let w = Wrapped::in_mode(Mode::FastCgi)
        .set("PIGGYBACK_WRAP_CHILDREN", "1")
        .set("PIGGYBACK_FCGI_IO_TIMEOUT", "3")
        .set("PIGGYBACK_FCGI_REQUEST_DEADLINE", "2");
    let kept = w.kept();
    let whole = crate::fastcgi::request_bytes(1, false, &fastcgi_params(&w, "hello.sh", &[]), b"");
    let mut trickler = kept.connect();
    let sender = {
        let mut trickler = trickler.try_clone().unwrap();
        let whole = whole.clone();
        std::thread::spawn(move || {
            for (i, byte) in whole.iter().enumerate() {
                if trickler.write_all(&[*byte]).is_err() {
                    return i;
                }
                std::thread::sleep(std::time::Duration::from_millis(500));
            }
            whole.len()
        })
    };
    std::thread::sleep(std::time::Duration::from_millis(300));
    // The one worker is on the trickling connection; this one waits, then is answered.
    let other = w.lighttpd("hello.sh", &[]);
    assert_eq!(other.raw, w.direct("hello.sh"));
    assert!(crate::fastcgi::read_record(&mut trickler).is_none(), "the trickling connection was closed unanswered");
    assert!(sender.join().unwrap() < whole.len(), "cut off before the request was whole");
    assert!(kept.stderr().contains("PIGGYBACK_FCGI_REQUEST_DEADLINE"), "{}", kept.stderr());
}

#[test]
fn no_more_programs_run_at_once_than_the_fastcgi_wrapper_has_children() {
    let w = Wrapped::in_mode(Mode::FastCgi).set("PIGGYBACK_WRAP_CHILDREN", "2");
    let running = w.site.dir.path().join("running");
    std::fs::create_dir(&running).unwrap();
    chmod(&running, 0o777);
    let path = w.app.join("count.sh");
    std::fs::write(
        &path,
        format!(
            "#!/bin/sh\ntouch {dir}/$$\nsleep 0.5\nn=$(ls {dir} | wc -l)\nrm {dir}/$$\n\
             printf 'Content-Type: application/json\\n\\n{{\"running\": %s}}' \"$n\"\n",
            dir = running.display()
        ),
    )
    .unwrap();
    chmod(&path, 0o755);
    let counts: Vec<i64> = std::thread::scope(|scope| {
        let askers: Vec<_> =
            (0..5).map(|_| scope.spawn(|| w.lighttpd("count.sh", &[]).json()["running"].as_i64().unwrap())).collect();
        askers.into_iter().map(|a| a.join().unwrap()).collect()
    });
    assert_eq!(counts.len(), 5, "every request answered");
    assert!(counts.iter().all(|n| (1..=2).contains(n)), "at most two programs at once: {counts:?}");
}

#[test]
fn systemd_socket_activation_hands_the_fastcgi_wrapper_its_socket_on_fd_3() {
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    let w = Wrapped::new();
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("activated.sock");
    let listener = UnixListener::bind(&socket).unwrap();
    let fd = listener.as_raw_fd();
    let mut env: Vec<(String, OsString)> = w.base_env("GET", "");
    env.retain(|(k, _)| k.starts_with("PIGGYBACK_") || k == "PATH");
    env.push(var("PIGGYBACK_WRAP_CHILDREN", "1"));
    // As systemd starts a service: the socket on fd 3, LISTEN_PID the service's pid
    // (the shell's, which becomes the wrapper's), stdin not a socket.
    let mut command = Command::new("/bin/sh");
    command
        .args(["-c", "export LISTEN_PID=$$ LISTEN_FDS=1; exec \"$0\"", WRAPPER])
        .env_clear()
        .envs(env)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(std::fs::File::create(dir.path().join("stderr.log")).unwrap()));
    // SAFETY: dup2 between descriptors this process owns, in the child before exec.
    unsafe {
        command.pre_exec(move || {
            // On fd 3 already, it only has to outlive the exec.
            let moved = if fd == 3 { libc::fcntl(3, libc::F_SETFD, 0) == 0 } else { libc::dup2(fd, 3) == 3 };
            if moved { Ok(()) } else { Err(std::io::Error::last_os_error()) }
        });
    }
    let child = command.spawn().unwrap();
    drop(listener);
    let log = dir.path().join("stderr.log");
    let kept = KeptWrapper { child: Some(child), socket, log, _dir: dir };
    let answer = kept.ask(&fastcgi_params(&w, "hello.sh", &[]).into_iter().collect::<Vec<_>>(), b"");
    assert_eq!(answer.raw, w.direct("hello.sh"));
    let (status, _) = kept.stop_waiting();
    assert!(status.success(), "{status}");
}

impl Wrapped {
    /// The site's own login: session `sid` is `user`'s.
    fn site_login(&self, sid: &str, user: &str) {
        let path = self.app.join("sessions");
        let mut text = std::fs::read_to_string(&path).unwrap();
        text.push_str(&format!("{sid} {user}\n"));
        std::fs::write(&path, text).unwrap();
    }

    /// The site's own logout, as PHP's `session_destroy()` does it: the session's data
    /// is gone, the browser keeps sending the same session id.
    fn site_logout(&self, sid: &str) {
        let path = self.app.join("sessions");
        let text = std::fs::read_to_string(&path).unwrap();
        let kept: String =
            text.lines().filter(|l| !l.starts_with(&format!("{sid} "))).map(|l| format!("{l}\n")).collect();
        std::fs::write(&path, kept).unwrap();
    }

    /// Piggyback's idle check (`GET messages/status`) with these cookies.
    fn idle_check(&self, cookies: &str) -> crate::support::Response {
        self.site
            .cgi(crate::support::Program::Messages)
            .path("/status")
            .var("PIGGYBACK_SITE_SESSION_COOKIE", "SID")
            .var("HTTP_COOKIE", cookies)
            .run()
    }
}

fn subjects(answer: &Answer) -> Vec<String> {
    answer.json()["site_messages"]["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["subject"].as_str().unwrap().to_owned())
        .collect()
}

fn ends_session_cookie(answer: &Answer) -> bool {
    answer
        .set_cookies()
        .iter()
        .any(|(name, value, line)| name.ends_with("pb_session") && value.is_empty() && line.contains("Max-Age=0"))
}

#[test]
fn the_programs_header_names_the_user_ahead_of_any_cookie_and_never_reaches_the_client() {
    let w = Wrapped::new();
    w.site.deliver("bob", "alice", "by header");
    w.site_login("s1", "alice");
    // Bob's cookie is ignored (and ended): the program says alice.
    let bob = w.site.token("bob");
    let answer = w.lighttpd("whoami.sh", &[var("HTTP_COOKIE", format!("SID=s1; pb_session={bob}"))]);
    assert_eq!(subjects(&answer), vec!["by header"], "{}", answer.stderr);
    assert!(!answer.text().to_ascii_lowercase().contains("x-piggyback-user"), "{}", answer.text());
    assert!(ends_session_cookie(&answer), "a cookie naming someone else is ended: {}", answer.head());
    // A page naming the user: the header goes, the body is the program's.
    let page = w.lighttpd("whoami.sh", &[var("HTTP_COOKIE", "SID=s1"), var("QUERY_STRING", "html")]);
    assert!(!page.text().to_ascii_lowercase().contains("x-piggyback-user"), "{}", page.text());
    assert_eq!(page.body(), b"{\"page\": \"mine\"}");
    // Nobody named (an empty header): anonymous whatever cookie the browser sent.
    w.site.deliver("bob", "alice", "unseen");
    let anonymous = w.lighttpd("whoami.sh", &[w.cookie("alice")]);
    assert!(anonymous.json().get("site_messages").is_none(), "{}", anonymous.text());
    assert!(ends_session_cookie(&anonymous), "{}", anonymous.head());
    assert_eq!(w.site.counters("alice"), (1, 1), "nothing flipped for an answer naming nobody");
}

#[test]
fn unknown_names_pass_unchanged_unless_the_wrapper_adds_users_and_refused_names_are_logged() {
    let w = Wrapped::new();
    w.site_login("s1", "carol");
    let carol = var("HTTP_COOKIE", "SID=s1");
    let unknown = w.lighttpd("whoami.sh", std::slice::from_ref(&carol));
    assert_eq!(unknown.body(), b"{\"page\": \"mine\"}", "{}", unknown.text());
    assert!(unknown.stderr.contains("no such user"), "{}", unknown.stderr);
    assert!(!w.site.piggyback(&["user", "show", "carol"]).status.success());
    let w = w.set("PIGGYBACK_WRAP_CREATE_USERS", "1");
    let added = w.lighttpd("whoami.sh", std::slice::from_ref(&carol));
    assert_eq!(added.json()["site_messages"]["unread"], 0, "{}", added.text());
    assert!(w.site.piggyback(&["user", "show", "carol"]).status.success(), "carol was added");
    // A name Piggyback refuses (a bidirectional control hides its real end).
    w.site_login("s2", "eve\u{202e}gnp.exe");
    let refused = w.lighttpd("whoami.sh", &[var("HTTP_COOKIE", "SID=s2")]);
    assert_eq!(refused.body(), b"{\"page\": \"mine\"}", "{}", refused.text());
    assert!(refused.stderr.contains("refused"), "{}", refused.stderr);
    assert!(!w.site.piggyback_ok(&["user", "list"]).contains("eve"));
}

#[test]
fn a_bound_cookie_follows_the_sites_session_and_ends_with_it() {
    let w = Wrapped::new().set("PIGGYBACK_SITE_SESSION_COOKIE", "SID");
    w.site_login("s1", "alice");
    w.site.deliver("bob", "alice", "first");
    let first = w.lighttpd("whoami.sh", &[var("HTTP_COOKIE", "SID=s1")]);
    assert_eq!(subjects(&first), vec!["first"]);
    let cookies = first.set_cookies();
    let [(name, value, line)] = cookies.as_slice() else { panic!("one cookie: {}", first.head()) };
    assert_eq!(name, "pb_session");
    assert!(value.starts_with("v3.") && line.contains("HttpOnly"), "{line}");
    // The browser has it: not set again.
    let both = format!("SID=s1; pb_session={value}");
    assert!(w.lighttpd("whoami.sh", &[var("HTTP_COOKIE", &both)]).set_cookies().is_empty());
    // Piggyback's own idle check accepts it only with the same site session.
    w.site.deliver("bob", "alice", "second");
    for without in [format!("pb_session={value}"), format!("SID=s2; pb_session={value}")] {
        let r = w.idle_check(&without);
        assert!(!r.has_site_messages() && r.status == 401, "{without}: {} {}", r.status, r.json);
    }
    assert_eq!(w.site.counters("alice").0, 1, "nothing flipped");
    assert_eq!(w.idle_check(&both).announced().len(), 1);
    // The site's logout keeps the session id; the program names nobody now.
    w.site_logout("s1");
    w.site.deliver("bob", "alice", "after logout");
    let out = w.lighttpd("whoami.sh", &[var("HTTP_COOKIE", &both)]);
    assert!(out.json().get("site_messages").is_none(), "{}", out.text());
    assert!(ends_session_cookie(&out), "{}", out.head());
    let r = w.idle_check("SID=s1");
    assert!(!r.has_site_messages(), "{}", r.json);
    // The next person on that browser, the old cookie still sent: only their own.
    w.site_login("s9", "bob");
    w.site.deliver("alice", "bob", "for bob");
    let bob = w.lighttpd("whoami.sh", &[var("HTTP_COOKIE", format!("SID=s9; pb_session={value}"))]);
    assert_eq!(subjects(&bob), vec!["for bob"]);
    let bob_cookie = bob.set_cookies().into_iter().find(|(n, v, _)| n == "pb_session" && !v.is_empty()).unwrap().1;
    assert_ne!(&bob_cookie, value);
    assert_eq!(w.site.counters("alice").0, 1, "alice's message waits for her");
    // Revocation ends a bound cookie too; the next answer naming bob sets a new one.
    let bobs = format!("SID=s9; pb_session={bob_cookie}");
    assert_eq!(w.idle_check(&bobs).status, 200);
    w.site.piggyback_ok(&["user", "revoke", "bob"]);
    assert_eq!(w.idle_check(&bobs).status, 401);
    assert_eq!(w.lighttpd("whoami.sh", &[var("HTTP_COOKIE", &bobs)]).set_cookies().len(), 1);
    // On https the cookie is __Host-pb_session, Secure.
    let https = w.lighttpd("whoami.sh", &[var("HTTP_COOKIE", "SID=s9"), var("HTTPS", "on")]);
    let cookies = https.set_cookies();
    assert!(cookies.iter().any(|(n, _, l)| n == "__Host-pb_session" && l.contains("; Secure")), "{cookies:?}");
}

#[test]
fn a_direct_request_with_a_query_in_the_kernels_shebang_form_runs_nothing() {
    // GET /cgi-bin/piggyback-wrap?/usr/bin/perl+/…/admin/secret.pl under Apache: the
    // query has no `=`, so Apache makes it argv, exactly the kernel's `#!` form for a
    // program whose first line names the wrapper; its folder may be denied to clients.
    let w = Wrapped::new();
    let admin = w.app.join("admin");
    std::fs::create_dir(&admin).unwrap();
    chmod(&admin, 0o755);
    let secret = admin.join("secret.pl");
    std::fs::write(&secret, format!("#!{WRAPPER} /usr/bin/perl\n{ENV_PL}")).unwrap();
    chmod(&secret, 0o755);
    let query = format!("/usr/bin/perl+{}", secret.display());
    let mut env = w.base_env("GET", &query);
    env.push(var("SCRIPT_FILENAME", WRAPPER));
    env.push(var("SCRIPT_NAME", "/cgi-bin/piggyback-wrap"));
    let args: Vec<OsString> = query.split('+').map(Into::into).collect();
    w.run(WRAPPER, &args, env.clone(), b"").assert_refused("the kernel was asked to run");
    // With the wrapper's own name in SCRIPT_FILENAME removed, still not the kernel's call.
    env.retain(|(k, _)| k != "SCRIPT_FILENAME");
    w.run(WRAPPER, &args, env, b"").assert_refused("the kernel was asked to run");
    // The kernel's own call of the same program still runs it.
    assert_eq!(w.python(&secret, "", &[]).json()["argv"], serde_json::json!([]));
}

#[test]
fn a_programs_own_site_messages_never_reaches_the_client_as_the_servers() {
    let w = Wrapped::new();
    w.site.deliver("bob", "alice", "the real one");
    let identified = w.lighttpd("fake.sh", &[w.cookie("alice")]);
    assert!(!identified.text().contains("evil.example"), "{}", identified.text());
    assert_eq!(subjects(&identified), vec!["the real one"]);
    assert_eq!(identified.json()["comment"], "hi");
    assert!(identified.stderr.contains("site_messages member of its own"), "{}", identified.stderr);
    let anonymous = w.lighttpd("fake.sh", &[]);
    assert!(!anonymous.text().contains("evil.example"), "{}", anonymous.text());
    assert_eq!(anonymous.json(), serde_json::json!({"comment": "hi"}));
    assert_eq!(anonymous.header("Content-Length"), Some(anonymous.body().len().to_string().as_str()));
    assert!(anonymous.stderr.contains("site_messages member of its own"), "{}", anonymous.stderr);
}

#[test]
fn json_that_is_not_plainly_a_pages_call_passes_byte_for_byte_and_flips_nothing() {
    let w = Wrapped::new();
    w.site.deliver("bob", "alice", "not into a download");
    let alice = w.cookie("alice");
    for (script, extra) in [
        ("twotypes.sh", vec![]),
        ("export.sh", vec![]),
        ("hello.sh", vec![var("HTTP_SEC_FETCH_MODE", "navigate"), var("HTTP_SEC_FETCH_DEST", "document")]),
    ] {
        let mut vars = vec![alice.clone()];
        vars.extend(extra);
        let answer = w.lighttpd(script, &vars);
        assert_eq!(answer.raw, w.direct(script), "{script}: {}", answer.text());
    }
    assert_eq!(w.site.counters("alice"), (1, 0), "no claim was made");
    assert_eq!(w.lighttpd("hello.sh", &[alice]).announced().len(), 1, "a page's own call announces it");
}

#[test]
fn the_member_holds_no_markup_and_every_answer_carrying_it_says_nosniff() {
    let w = Wrapped::new();
    let subject = "<img src=x onerror=alert(1)> & </script>";
    w.site.deliver("bob", "alice", subject);
    let answer = w.lighttpd("hello.sh", &[w.cookie("alice")]);
    let body = String::from_utf8(answer.body().to_vec()).unwrap();
    let member = &body[body.find("\"site_messages\":").unwrap()..];
    assert!(!member.contains(['<', '>', '&']), "{member}");
    assert!(member.contains("\\u003cimg src=x onerror=alert(1)\\u003e \\u0026 \\u003c/script\\u003e"), "{member}");
    assert_eq!(subjects(&answer), vec![subject], "the same text once parsed");
    assert_eq!(answer.header("X-Content-Type-Options"), Some("nosniff"));
    // Our own programs write through the same serializer.
    w.site.deliver("bob", "alice", subject);
    let ours = w.site.cgi(crate::support::Program::Profile).user("alice").run();
    let raw = String::from_utf8_lossy(&ours.body).into_owned();
    assert!(!raw.contains(['<', '>', '&']), "{raw}");
    assert_eq!(ours.site()["items"][0]["subject"], subject);
}

#[test]
fn the_program_sees_no_piggyback_setting_and_the_keys_path_only_when_let() {
    let w = Wrapped::new().set("PIGGYBACK_EMPTY", "omit").set("PIGGYBACK_TRUST_REMOTE_USER", "0");
    let env = w.lighttpd("env.pl", &[w.cookie("alice")]).json()["env"].clone();
    let names: Vec<&String> = env.as_object().unwrap().keys().filter(|k| k.starts_with("PIGGYBACK_")).collect();
    assert!(names.is_empty(), "the program sees {names:?}");
    let w = w.set("PIGGYBACK_WRAP_PASS_SECRET_FILE", "1");
    let env = w.lighttpd("env.pl", &[]).json()["env"].clone();
    let names: Vec<&String> = env.as_object().unwrap().keys().filter(|k| k.starts_with("PIGGYBACK_")).collect();
    assert_eq!(names, vec!["PIGGYBACK_SECRET_FILE"], "{env}");
    assert_eq!(env["PIGGYBACK_SECRET_FILE"], w.site.secret().to_str().unwrap());
}

#[test]
fn every_cause_of_a_left_out_member_is_logged() {
    let w = Wrapped::new();
    let alice = w.cookie("alice");
    w.site.deliver("bob", "alice", "waiting");
    // Busy: another process holds the database.
    let conn = w.site.conn();
    conn.begin_exclusive();
    let busy = w.lighttpd("hello.pl", std::slice::from_ref(&alice));
    conn.exec("ROLLBACK");
    assert_eq!(busy.raw, w.direct("hello.pl"));
    assert!(busy.stderr.contains("site_messages left out") && busy.stderr.contains("busy"), "{}", busy.stderr);
    // Unopenable, and misconfigured.
    for (value, says) in [
        (w.site.dir.path().join("gone/none.db").into_os_string(), "does not exist"),
        (OsString::from("relative.db"), "PIGGYBACK_DB"),
    ] {
        let answer = w.lighttpd("hello.pl", &[alice.clone(), var("PIGGYBACK_DB", value)]);
        assert_eq!(answer.raw, w.direct("hello.pl"));
        assert!(answer.stderr.contains("site_messages left out") && answer.stderr.contains(says), "{}", answer.stderr);
    }
    // The settings file cannot be read: the log names it and the user, next to the
    // setting that is then missing.
    let install = w.site.dir.path().join("install");
    std::fs::create_dir_all(install.join("cgi-bin")).unwrap();
    std::fs::create_dir_all(install.join("etc/piggyback-wrap.conf")).unwrap();
    let copy = install.join("cgi-bin/piggyback-wrap");
    std::fs::copy(WRAPPER, &copy).unwrap();
    let path = w.app.join("hello.pl");
    let mut env = w.base_env("GET", "");
    env.retain(|(k, _)| !k.starts_with("PIGGYBACK_"));
    env.push(var("SCRIPT_FILENAME", &path));
    let answer = w.run(copy.to_str().unwrap(), &[path.into()], env, b"");
    assert_eq!(answer.status(), 500, "{}", answer.text());
    let line = answer.stderr.lines().find(|l| l.contains("PIGGYBACK_WRAP_ROOT is not set")).unwrap_or_default();
    assert!(
        line.contains("piggyback-wrap.conf") && line.contains("cannot be read by") && line.contains("uid"),
        "{}",
        answer.stderr
    );
    w.site.assert_check_passes();
}

#[test]
fn the_php_identity_line_of_the_guide_follows_the_sites_login_and_logout() {
    let w = Wrapped::new().set("PIGGYBACK_SITE_SESSION_COOKIE", "PHPSESSID");
    let sessions = w.site.dir.path().join("php-sessions");
    std::fs::create_dir(&sessions).unwrap();
    let program = format!(
        "<?php\nini_set('session.save_path', {:?});\n{}\nsession_start();\n\
         if (($_GET['do'] ?? '') === 'login') {{ session_regenerate_id(); $_SESSION['user'] = 'alice'; }}\n\
         if (($_GET['do'] ?? '') === 'logout') {{ session_destroy(); }}\n\
         header('Content-Type: application/json');\necho json_encode(['ok' => true]);\n",
        sessions.to_str().unwrap(),
        crate::docs::snippet("user-header-php")
    );
    let path = w.app.join("site.php");
    std::fs::write(&path, program).unwrap();
    chmod(&path, 0o644);
    w.site.deliver("bob", "alice", "hello php");
    let login = w.lighttpd("site.php", &[var("QUERY_STRING", "do=login")]);
    assert_eq!(subjects(&login), vec!["hello php"], "{}; {}", login.text(), login.stderr);
    let cookies = login.set_cookies();
    let sid = cookies.iter().find(|(n, _, _)| n == "PHPSESSID").expect("PHP's session cookie").1.clone();
    let pb = cookies.iter().find(|(n, _, _)| n == "pb_session").expect("the bound cookie").1.clone();
    let both = format!("PHPSESSID={sid}; pb_session={pb}");
    w.site.deliver("bob", "alice", "while logged in");
    assert_eq!(w.idle_check(&both.replace("PHPSESSID", "SID")).status, 401, "bound to PHPSESSID, not SID");
    let page = w.lighttpd("site.php", &[var("HTTP_COOKIE", &both)]);
    assert_eq!(subjects(&page), vec!["while logged in"], "{}", page.text());
    // The site's own logout, unchanged: session_destroy() keeps the cookie's value.
    w.site.deliver("bob", "alice", "after logout");
    let logout = w.lighttpd("site.php", &[var("HTTP_COOKIE", &both), var("QUERY_STRING", "do=logout")]);
    assert!(logout.json().get("site_messages").is_none(), "{}", logout.text());
    assert!(ends_session_cookie(&logout), "{}", logout.head());
    let after = w.lighttpd("site.php", &[var("HTTP_COOKIE", format!("PHPSESSID={sid}"))]);
    assert!(after.json().get("site_messages").is_none(), "{}", after.text());
    assert_eq!(w.site.counters("alice").0, 1, "the message after the logout waits for alice");
}
