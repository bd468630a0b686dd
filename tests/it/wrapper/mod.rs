//! `piggyback-wrap`: a site's own CGI programs under the wrapper.

mod answers;
mod fastcgi;
mod identity;
mod program;
mod servers;
mod shebang;

use crate::support::Site;
use serde_json::Value;
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::Write;
use std::os::fd::OwnedFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;

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
        KeptWrapper::start_at(Path::new(WRAPPER), env)
    }

    /// [`KeptWrapper::start`] of the wrapper at `wrapper` (a copy, installed beside a
    /// settings file of its own).
    fn start_at(wrapper: &Path, env: &[(String, OsString)]) -> KeptWrapper {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("wrap.sock");
        let log = dir.path().join("stderr.log");
        let listener = UnixListener::bind(&socket).unwrap();
        let child = Command::new(wrapper)
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
