//! Fuzzes `gateway::respond` for every program: the input is an environment (lines of
//! `NAME=VALUE`, any bytes) and a body after the first empty line. The answer must be a
//! CGI document response with a status below 500; a panic anywhere is a finding.
#![no_main]

use std::collections::HashMap;
use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use piggyback::gateway::{Env, respond};
use piggyback::handlers::{Handler, PROGRAMS};
use piggyback::message_store::Store;

struct Site {
    _dir: tempfile::TempDir,
    db: PathBuf,
    secret: PathBuf,
}

fn site() -> &'static Site {
    static SITE: OnceLock<Site> = OnceLock::new();
    SITE.get_or_init(|| {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let db = dir.path().join("fuzz.db");
        let secret = dir.path().join("secret");
        std::fs::write(&secret, [b'k'; 32]).expect("the key file");
        let store = Store::init(&db).expect("the database");
        let hash = piggyback::password::hash("correct horse").expect("a hash");
        let alice = store.add_user("alice", "Alice", Some(&hash), piggyback::model::now()).expect("alice").expect("new");
        let bob = store.add_user("bob", "Bob", None, piggyback::model::now()).expect("bob").expect("new");
        store.request_friend(bob, alice, piggyback::model::now()).expect("a friend request");
        store.add_post(bob, "hello", piggyback::model::now()).expect("a post");
        Site { _dir: dir, db, secret }
    })
}


fuzz_target!(|data: &[u8]| {
    let Some((&which, data)) = data.split_first() else { return };
    let handler: Handler = PROGRAMS[usize::from(which) % PROGRAMS.len()].handler;
    let (head, body) = match data.windows(2).position(|w| w == b"\n\n") {
        Some(i) => (&data[..i], &data[i + 2..]),
        None => (data, &[][..]),
    };
    let mut env: Env = HashMap::new();
    for line in head.split(|b| *b == b'\n') {
        let Some(eq) = line.iter().position(|b| *b == b'=') else { continue };
        let Ok(name) = std::str::from_utf8(&line[..eq]) else { continue };
        if name.starts_with("PIGGYBACK_") {
            continue;
        }
        env.insert(name.to_owned(), OsString::from_vec(line[eq + 1..].to_vec()));
    }
    let site = site();
    env.insert("PIGGYBACK_DB".into(), site.db.clone().into_os_string());
    env.insert("PIGGYBACK_SECRET_FILE".into(), site.secret.clone().into_os_string());
    let head_only = env.get("REQUEST_METHOD").is_some_and(|m| m == "HEAD");
    let out = respond(handler, &env, body);

    let split = out.windows(4).position(|w| w == b"\r\n\r\n").expect("a blank line after the headers");
    let headers = std::str::from_utf8(&out[..split]).expect("UTF-8 headers");
    let status: u16 = headers.get(8..11).and_then(|s| s.parse().ok()).expect("a Status line");
    assert!(headers.starts_with("Status: ") && status < 500, "{headers}");
    assert!(headers.split("\r\n").all(|l| !l.contains(['\r', '\n'])));
    let body = &out[split + 4..];
    let length = headers
        .split("\r\n")
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .and_then(|n| n.parse::<usize>().ok())
        .expect("Content-Length");
    if !head_only {
        assert_eq!(length, body.len());
        let value: serde_json::Value = serde_json::from_slice(body).expect("a JSON body");
        assert!(value.is_object());
    }
});
