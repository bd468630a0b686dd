//! Hostile input: random CGI environments and bodies through `gateway::respond`.

use piggyback::gateway::{Env, respond};
use piggyback::handlers;
use piggyback::handlers::Handler;
use piggyback::identity::Key;
use piggyback::message_store::Store;
use piggyback::model::{UserId, now};
use proptest::prelude::*;
use proptest::sample::select;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::{Value, json};
use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;

/// Cases per program: enough to reach every route, small enough for two cores.
const CASES: u32 = 200;

struct Fixture {
    _test_db: crate::support::TestDb,
    dir: tempfile::TempDir,
    db: PathBuf,
    secret: PathBuf,
    /// Valid, expired and forged cookie values.
    cookies: Vec<String>,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let test_db = crate::support::TestDb::new(dir.path());
        let db = test_db.path.clone();
        let secret = dir.path().join("secret");
        std::fs::write(&secret, "k".repeat(48)).unwrap();
        let store = Store::init(&db).unwrap();
        let hash = piggyback::password::hash("correct horse").unwrap();
        let alice = store.add_user(&crate::support::uname("alice"), "Alice", Some(&hash), now()).unwrap().unwrap();
        let bob = store.add_user(&crate::support::uname("bob"), "Bob", None, now()).unwrap().unwrap();
        store.request_friend(bob, alice, now()).unwrap();
        store.add_post(bob, "bob's post", now()).unwrap();
        let key = Key::load(&secret).unwrap();
        let cookies = vec![
            key.sign(alice, now() + 3600),
            key.sign(bob, now() + 3600),
            key.sign(alice, now() - 1),
            key.sign(UserId(77), now() + 3600),
            Key::new(vec![b'x'; 32]).unwrap().sign(alice, now() + 3600),
        ];
        Fixture { _test_db: test_db, dir, db, secret, cookies }
    }
}

/// A value for an environment variable: usual ones, arbitrary text, or arbitrary bytes.
fn var(usual: &'static [&'static str]) -> impl Strategy<Value = Option<OsString>> {
    // Rare enough that a dozen variables still leave most requests readable.
    prop_oneof![
        8 => Just(None),
        40 => select(usual).prop_map(|s| Some(OsString::from(s))),
        1 => any::<String>().prop_map(|s| Some(OsString::from(s))),
        1 => proptest::collection::vec(any::<u8>(), 0..24).prop_map(|b| Some(OsString::from_vec(b))),
    ]
}

fn path() -> impl Strategy<Value = Option<OsString>> {
    let segment = select(
        &[
            "",
            "1",
            "2",
            "3",
            "0",
            "-1",
            "999999999999999999999",
            "read",
            "delete",
            "read-all",
            "comments",
            "logout",
            "..",
            "%2F",
            "１",
            "1 ",
            "1.0",
            "+1",
        ][..],
    );
    prop_oneof![
        3 => Just(Some(OsString::from("/"))),
        6 => proptest::collection::vec(segment, 0..4).prop_map(|s| Some(OsString::from(format!("/{}", s.join("/"))))),
        1 => var(&["", "/"]),
    ]
}

fn query() -> impl Strategy<Value = Option<OsString>> {
    let key = select(&["state", "before", "limit", "user", "x", "", "%", "state%"][..]);
    let value = select(
        &[
            "",
            "unread",
            "new",
            "delivered",
            "read",
            "deleted",
            "all",
            "1",
            "0",
            "100",
            "101",
            "-5",
            "alice",
            "bob",
            "nobody",
            "%",
            "%zz",
            "%ff%fe",
            "%C3%28",
            "+",
            "a+b",
            "%00",
            "99999999999999999999",
            "%E6%98%8E",
        ][..],
    );
    prop_oneof![
        6 => proptest::collection::vec((key, value), 0..4).prop_map(|pairs| {
            let q: Vec<String> = pairs.into_iter().map(|(k, v)| format!("{k}={v}")).collect();
            Some(OsString::from(q.join("&")))
        }),
        1 => var(&["", "&&", "=", "limit"]),
    ]
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => select(&["alice", "bob", "carol", "", " ", "Alice", "correct horse", "a\u{0}b", "明天中午"][..])
            .prop_map(String::from),
        2 => any::<String>(),
        1 => (1usize..12_000).prop_map(|n| "x".repeat(n)),
    ]
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    let json_body = (0usize..7, text(), text(), text()).prop_map(|(shape, a, b, c)| {
        let v = match shape {
            0 => json!({"to": a, "subject": b, "body": c}),
            1 => json!({"to": a, "subject": b, "body": c, "idempotency_key": a}),
            2 => json!({"action": select_action(&b), "user": a}),
            3 => json!({"name": a, "password": b}),
            4 => json!({"body": c}),
            5 => json!({"display_name": a, "bio": b}),
            _ => json!({"name": a, "extra": 1}),
        };
        v.to_string().into_bytes()
    });
    prop_oneof![
        5 => json_body,
        1 => Just(Vec::new()),
        1 => select(&["{}", "[]", "null", "1", "\"x\"", "{", "  ", "{\"to\": \"\\ud800\"}"][..]).prop_map(|s| s.as_bytes().to_vec()),
        2 => proptest::collection::vec(any::<u8>(), 0..200),
    ]
}

fn select_action(s: &str) -> &'static str {
    match s.len() % 5 {
        0 => "request",
        1 => "accept",
        2 => "decline",
        3 => "remove",
        _ => "befriend",
    }
}

/// How CONTENT_LENGTH relates to the body.
#[derive(Debug, Clone)]
enum Length {
    Unset,
    Exact,
    Off(i64),
    Text(&'static str),
}

fn length() -> impl Strategy<Value = Length> {
    prop_oneof![
        1 => Just(Length::Unset),
        6 => Just(Length::Exact),
        1 => (-2i64..3).prop_map(Length::Off),
        1 => select(&["", "0", "-1", "abc", " 12", "65536", "65537", "99999999999999999999", "1e3"][..]).prop_map(Length::Text),
    ]
}

#[derive(Debug, Clone)]
struct Case {
    env: Vec<(&'static str, Option<OsString>)>,
    length: Length,
    cookie: Option<usize>,
    body: Vec<u8>,
}

fn case() -> impl Strategy<Value = Case> {
    let method = var(&["GET", "GET", "GET", "HEAD", "POST", "POST", "POST", "POST", "DELETE", "PUT", "get", ""]);
    let content_type = var(&[
        "application/json",
        "application/json; charset=utf-8",
        "APPLICATION/JSON",
        "text/plain",
        "application/x-www-form-urlencoded",
        "",
    ]);
    let remote_user = prop_oneof![8 => Just(None), 1 => var(&["alice", "bob", "mallory", "", "Alice"])];
    let origin = prop_oneof![3 => Just(None), 1 => var(&["https://example.com", "http://example.com", "https://evil.test", "null", "", "http://[::1]"])];
    let fetch_site = prop_oneof![3 => Just(None), 1 => var(&["same-origin", "same-site", "cross-site", "none", ""])];
    let host = var(&["example.com", "example.com:443", "EXAMPLE.com", "[::1]:8080", "", "a/b"]);
    let https = var(&["on", "off", "1", ""]);
    let addr = var(&["192.0.2.1", "198.51.100.2", "::1", ""]);
    let chunked = prop_oneof![4 => Just(None), 1 => var(&["chunked", "gzip, chunked"])];
    let raw_cookie = prop_oneof![3 => Just(None), 1 => var(&["pb_session=", "pb_session=v1.1.1.aa", "a=b; pb_session", "pb_session=\"v1\"", "=;=;"])];
    let ack = prop_oneof![3 => Just(None), 1 => var(&["1", "0", "-1", "", " 2 ", "abc", "99999999999999999999"])];
    let cookie = prop_oneof![2 => Just(None), 4 => (0usize..2).prop_map(Some), 1 => (2usize..5).prop_map(Some)];
    (
        (method, path(), query(), content_type, remote_user, origin),
        (fetch_site, host, https, addr, chunked, raw_cookie, ack),
        cookie,
        length(),
        body(),
    )
        .prop_map(|((m, p, q, ct, ru, o), (fs, h, s, a, te, rc, ack), cookie, length, body)| Case {
            env: vec![
                ("REQUEST_METHOD", m),
                ("PATH_INFO", p),
                ("QUERY_STRING", q),
                ("CONTENT_TYPE", ct),
                ("REMOTE_USER", ru),
                ("HTTP_ORIGIN", o),
                ("HTTP_SEC_FETCH_SITE", fs),
                ("HTTP_HOST", h),
                ("HTTPS", s),
                ("REMOTE_ADDR", a),
                ("HTTP_TRANSFER_ENCODING", te),
                ("HTTP_COOKIE", rc),
                ("HTTP_X_PIGGYBACK_ACK", ack),
            ],
            length,
            cookie,
            body,
        })
}

fn env_of(fx: &Fixture, case: &Case) -> Env {
    let mut env = Env::default();
    env.insert("PIGGYBACK_DB".into(), fx.db.clone().into_os_string());
    env.insert("PIGGYBACK_SPOOL".into(), fx.dir.path().join("spool").into_os_string());
    env.insert("PIGGYBACK_SECRET_FILE".into(), fx.secret.clone().into_os_string());
    env.insert("GATEWAY_INTERFACE".into(), "CGI/1.1".into());
    env.insert("SERVER_NAME".into(), "example.com".into());
    for (name, value) in &case.env {
        if let Some(v) = value {
            env.insert((*name).to_owned(), v.clone());
        }
    }
    if let Some(i) = case.cookie {
        env.insert("HTTP_COOKIE".into(), format!("theme=dark; pb_session={}", fx.cookies[i]).into());
    }
    let n = case.body.len() as i64;
    match &case.length {
        Length::Unset => {}
        Length::Exact => {
            env.insert("CONTENT_LENGTH".into(), n.to_string().into());
        }
        Length::Off(d) => {
            env.insert("CONTENT_LENGTH".into(), (n + d).to_string().into());
        }
        Length::Text(t) => {
            env.insert("CONTENT_LENGTH".into(), (*t).into());
        }
    }
    env
}

/// Checks the CGI form of one answer (RFC 3875 6.2.1 and 6.3).
fn check_response(raw: &[u8], head: bool) -> Result<(), TestCaseError> {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n");
    prop_assert!(split.is_some(), "no blank line after the headers: {:?}", String::from_utf8_lossy(raw));
    let split = split.unwrap_or_default();
    let head_block = std::str::from_utf8(&raw[..split]);
    prop_assert!(head_block.is_ok(), "headers are not UTF-8");
    let head_block = head_block.unwrap_or_default();
    let body = &raw[split + 4..];
    let mut lines = head_block.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status: Option<u16> =
        status_line.strip_prefix("Status: ").and_then(|s| s.get(..3)).and_then(|s| s.parse().ok());
    prop_assert!(status.is_some(), "bad status line {status_line:?}");
    let status = status.unwrap_or(0);
    prop_assert!((200..500).contains(&status), "status {status}: {:?}", String::from_utf8_lossy(raw));
    let mut length = None;
    let mut content_type = false;
    for line in lines {
        prop_assert!(!line.contains(['\r', '\n']), "a bare CR or LF in header line {line:?}");
        let parts = line.split_once(": ");
        prop_assert!(parts.is_some(), "bad header line {line:?}");
        let (name, value) = parts.unwrap_or_default();
        prop_assert!(!name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'), "{name:?}");
        match name {
            "Content-Length" => length = value.parse::<usize>().ok(),
            "Content-Type" => content_type = value == "application/json; charset=utf-8",
            "Status" => prop_assert!(false, "a second Status header"),
            _ => {}
        }
    }
    prop_assert!(content_type, "Content-Type");
    prop_assert!(length.is_some(), "Content-Length");
    if head {
        prop_assert!(body.is_empty(), "HEAD answered with a body");
        return Ok(());
    }
    prop_assert_eq!(length, Some(body.len()), "Content-Length is the body's length");
    let json: Result<Value, _> = serde_json::from_slice(body);
    prop_assert!(
        matches!(json, Ok(Value::Object(_))),
        "the body is not a JSON object: {:?}",
        String::from_utf8_lossy(body)
    );
    Ok(())
}

fn hammer(handler: Handler) {
    let fx = Fixture::new();
    let config = Config { cases: CASES, failure_persistence: None, ..Config::default() };
    let mut runner = TestRunner::new(config);
    let result = runner.run(&case(), |case| {
        let env = env_of(&fx, &case);
        let head = env.get("REQUEST_METHOD").is_some_and(|m| m == "HEAD");
        let raw = respond(handler, &env, case.body.as_slice());
        check_response(&raw, head)
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    // Whatever arrived, the database is still sound.
    let problems = Store::open(&fx.db).unwrap().audit().unwrap();
    assert!(problems.is_empty(), "{problems:?}");
}

#[test]
fn profile_survives_hostile_input() {
    hammer(handlers::profile);
}

#[test]
fn friends_survives_hostile_input() {
    hammer(handlers::friends);
}

#[test]
fn posts_survives_hostile_input() {
    hammer(handlers::posts);
}

#[test]
fn messages_survives_hostile_input() {
    hammer(handlers::messages);
}

#[test]
fn session_survives_hostile_input() {
    hammer(handlers::session);
}
