//! `gateway::respond` in-process: an environment map and a body in, the whole CGI
//! response out (status line, every header in order, Content-Length, the JSON), for
//! each program.

use std::io::Read;

use crate::support::{Program, Response, Site, parse_response};
use piggyback::message_store::Store;
use piggyback::model::{NewMessage, UserId};
use serde_json::{Value, json};

const JOINED: &str = "2023-11-14T22:13:20Z";
const SENT: &str = "2023-11-14T22:15:00Z";

/// alice and bob, joined at a fixed time; bob has sent alice one message ("hi").
fn site() -> (Site, i64) {
    let site = Site::new(&["alice", "bob"]);
    site.conn().exec("UPDATE users SET joined_at = 1700000000");
    let id = store_message(&site, "bob", "alice", "hi", "hello there", None);
    (site, id)
}

fn store_message(site: &Site, from: &str, to: &str, subject: &str, body: &str, key: Option<&str>) -> i64 {
    let store = Store::open(&site.db).unwrap();
    let id = |name: &str| -> UserId { store.user_by_name(&crate::support::uname(name)).unwrap().unwrap().id };
    let m = NewMessage {
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
fn assert_headers(r: &Response, status: &str, extra: &[(&str, &str)]) {
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

/// `site_messages` is the last member, after the endpoint's own.
fn assert_site_messages_last(r: &Response) {
    assert_eq!(r.json.as_object().unwrap().keys().next_back().map(String::as_str), Some("site_messages"));
}

fn nothing_unread() -> Value {
    json!({"unread": 0, "delivered": 0, "new": 0, "items": [], "more": false})
}

fn hi_announced(id: i64) -> Value {
    json!({
        "unread": 1, "delivered": 0, "new": 1,
        "items": [{"id": id, "from": "bob", "subject": "hi", "snippet": "hello there", "sent_at": SENT, "kind": "note"}],
        "more": false,
        "batch": 1,
    })
}

fn profile_of(name: &str) -> Value {
    json!({"name": name, "display_name": name, "bio": "", "joined_at": JOINED, "friends": 0, "posts": 0})
}

/// One's own profile also shows one's announcement privacy choice.
fn own_profile_of(name: &str) -> Value {
    let mut profile = profile_of(name);
    profile["message_preview"] = json!("full");
    profile
}

#[test]
fn profile_get_announces_the_new_message() {
    let (site, id) = site();
    let r = site.cgi(Program::Profile).user("alice").respond();
    assert_headers(&r, "200 OK", &[]);
    assert_eq!(r.json, json!({"profile": own_profile_of("alice"), "site_messages": hi_announced(id)}));
    assert_site_messages_last(&r);

    let again = site.cgi(Program::Profile).user("alice").respond();
    assert_eq!(again.json["site_messages"], json!({"unread": 1, "delivered": 1, "new": 0, "items": [], "more": false}));
}

#[test]
fn profile_of_another_user_and_of_nobody() {
    let (site, _) = site();
    let r = site.cgi(Program::Profile).user("bob").path("?user=alice").respond();
    assert_headers(&r, "200 OK", &[]);
    // Posts are for alice's friends: bob, not one, does not learn how many she has.
    let mut want = profile_of("alice");
    want["posts"] = Value::Null;
    assert_eq!(r.json, json!({"profile": want, "site_messages": nothing_unread()}));

    let r = site.cgi(Program::Profile).user("bob").path("?user=nobody").respond();
    assert_headers(&r, "404 Not Found", &[]);
    assert_eq!(r.error_code(), "user_not_found");
    assert_eq!(r.json["site_messages"], nothing_unread());
}

#[test]
fn profile_post_updates_and_answers_the_updated_profile() {
    let (site, id) = site();
    let r =
        site.cgi(Program::Profile).user("alice").post("", json!({"display_name": " Alice A. ", "bio": "我"})).respond();
    assert_headers(&r, "200 OK", &[]);
    let mut want = own_profile_of("alice");
    want["display_name"] = json!("Alice A.");
    want["bio"] = json!("我");
    assert_eq!(r.json, json!({"profile": want, "site_messages": hi_announced(id)}));
}

#[test]
fn friends_get_and_request() {
    let (site, _) = site();
    site.conn().exec("UPDATE messages SET state = 'read'");
    site.conn().exec("UPDATE mailbox SET new = 0");
    let r = site.cgi(Program::Friends).user("bob").respond();
    assert_headers(&r, "200 OK", &[]);
    assert_eq!(r.json, json!({"friends": [], "incoming": [], "outgoing": [], "site_messages": nothing_unread()}));

    let r = site.cgi(Program::Friends).user("bob").post("", json!({"action": "request", "user": "alice"})).respond();
    assert_headers(&r, "200 OK", &[]);
    assert_eq!(
        r.json,
        json!({"friends": [], "incoming": [], "outgoing": ["alice"], "site_messages": nothing_unread()})
    );

    let r = site.cgi(Program::Friends).user("alice").respond();
    assert_eq!(r.json["incoming"], json!(["bob"]));
    let items = r.json["site_messages"]["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["from"], "bob");
    assert_eq!(items[0]["kind"], "friend_request");
    assert_eq!(items[0]["subject"], "bob wants to be your friend");
}

#[test]
fn posts_create_then_read() {
    let (site, id) = site();
    let r = site.cgi(Program::Posts).user("alice").post("", json!({"body": "第一篇"})).respond();
    assert_headers(&r, "201 Created", &[]);
    let post = r.json["post"].clone();
    let post_id = post["id"].as_i64().unwrap();
    let created_at = post["created_at"].as_str().unwrap().to_string();
    assert_eq!(
        r.json,
        json!({
            "post": {"id": post_id, "author": "alice", "body": "第一篇", "created_at": created_at, "comments": 0},
            "site_messages": hi_announced(id),
        })
    );

    let r = site.cgi(Program::Posts).user("alice").path(&format!("/{post_id}")).respond();
    assert_headers(&r, "200 OK", &[]);
    assert_eq!(
        r.json,
        json!({
            "post": {"id": post_id, "author": "alice", "body": "第一篇", "created_at": created_at, "comments": 0,
                     "comment_list": []},
            "site_messages": {"unread": 1, "delivered": 1, "new": 0, "items": [], "more": false},
        })
    );

    let r = site.cgi(Program::Posts).user("alice").respond();
    assert_headers(&r, "200 OK", &[]);
    assert_eq!(r.json["posts"].as_array().unwrap().len(), 1);
    assert_eq!(r.json["next"], Value::Null);
}

#[test]
fn messages_list_read_and_send() {
    let (site, id) = site();
    let r = site.cgi(Program::Messages).user("alice").respond();
    assert_headers(&r, "200 OK", &[]);
    // The list is read before the flip, so it still says `new`.
    assert_eq!(
        r.json,
        json!({
            "messages": [{"id": id, "from": "bob", "subject": "hi", "snippet": "hello there", "sent_at": SENT,
                          "state": "new", "kind": "note"}],
            "next": null,
            "site_messages": hi_announced(id),
        })
    );

    let r = site.cgi(Program::Messages).user("alice").path(&format!("/{id}")).respond();
    assert_headers(&r, "200 OK", &[]);
    assert_eq!(
        r.json,
        json!({
            "message": {"id": id, "from": "bob", "to": "alice", "subject": "hi", "body": "hello there",
                        "sent_at": SENT, "state": "delivered", "kind": "note"},
            "site_messages": {"unread": 1, "delivered": 1, "new": 0, "items": [], "more": false},
        })
    );

    let r = site
        .cgi(Program::Messages)
        .user("alice")
        .post("", json!({"to": "bob", "subject": "re: hi", "body": "yes", "idempotency_key": "k1"}))
        .respond();
    assert_headers(&r, "201 Created", &[]);
    let sent = &r.json["sent"];
    assert!(sent["request_id"].as_str().is_some_and(|s| !s.is_empty()));
    let message_id = sent["message_id"].as_i64().unwrap();
    assert_eq!(
        r.json,
        json!({
            "sent": {"request_id": sent["request_id"], "message_id": message_id, "to": "bob", "state": "stored"},
            "site_messages": {"unread": 1, "delivered": 1, "new": 0, "items": [], "more": false},
        })
    );

    let r = site.cgi(Program::Messages).user("alice").post(&format!("/{id}/read"), json!({})).respond();
    assert_headers(&r, "200 OK", &[]);
    assert_eq!(r.json, json!({"message": {"id": id, "state": "read"}, "site_messages": nothing_unread()}));
}

#[test]
fn method_not_allowed_names_the_allowed_methods() {
    let (site, id) = site();
    for (program, path, allow) in [
        (Program::Profile, "", "GET, HEAD, POST"),
        (Program::Friends, "", "GET, HEAD, POST"),
        (Program::Posts, "", "GET, HEAD, POST"),
        (Program::Messages, "", "GET, HEAD, POST"),
        (Program::Messages, "/read-all", "POST"),
        (Program::Messages, "/1/read", "POST"),
    ] {
        let r = site.cgi(program).user("alice").method("PUT").path(path).respond();
        assert_headers(&r, "405 Method Not Allowed", &[("Allow", allow)]);
        assert_eq!(r.error_code(), "method_not_allowed");
        assert!(r.has_site_messages());
    }
    // The announcement happened once, on the first of these responses.
    assert_eq!(site.state(id), "delivered");
}

#[test]
fn no_identity_is_401_without_site_messages() {
    let (site, id) = site();
    for program in Program::ALL {
        let r = site.cgi(program).respond();
        assert_headers(&r, "401 Unauthorized", &[]);
        assert_eq!(
            r.json,
            json!({"error": {"code": "unauthorized", "message": "log in first: no valid session"}}),
            "{}",
            program.name()
        );
    }
    let r = site.cgi(Program::Profile).user("mallory").respond();
    assert_headers(&r, "401 Unauthorized", &[]);
    assert_eq!(r.error_code(), "unknown_user");
    assert!(!r.has_site_messages());
    assert_eq!(site.state(id), "new");
}

#[test]
fn head_has_the_headers_and_no_body_and_announces_nothing() {
    let (site, id) = site();
    for program in Program::ALL {
        let r = site.cgi(program).user("alice").method("HEAD").respond();
        assert_eq!(r.headers[0], ("Status".into(), "200 OK".into()), "{}", program.name());
        assert_eq!(r.header("Content-Type"), Some("application/json; charset=utf-8"));
        assert!(r.header("Content-Length").unwrap().parse::<usize>().unwrap() > 2);
        assert!(r.body.is_empty());
    }
    assert_eq!(site.state(id), "new");
    assert_eq!(site.counters("alice"), (1, 0));
}

/// A body that records whether anyone read from it.
struct Watched {
    read: bool,
}

impl Read for Watched {
    fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
        self.read = true;
        Ok(0)
    }
}

#[test]
fn an_oversized_or_unsized_body_is_refused_without_reading_it() {
    let (site, _) = site();
    let before = site.snapshot();
    for (length, status, code) in
        [(Some("70000"), "413 Content Too Large", "body_too_large"), (None, "400 Bad Request", "empty_body")]
    {
        let mut cgi = site.cgi(Program::Messages).user("bob").method("POST").var("CONTENT_TYPE", "application/json");
        cgi = match length {
            Some(n) => cgi.content_length(n),
            None => cgi.no_content_length(),
        };
        let env: piggyback::gateway::Env = cgi.env().into_iter().collect();
        let mut body = Watched { read: false };
        let raw = piggyback::gateway::respond(Program::Messages.handler(), &env, &mut body);
        let r = parse_response(&raw, false);
        assert_headers(&r, status, &[]);
        assert_eq!(r.error_code(), code);
        assert_eq!(r.json["site_messages"], nothing_unread());
        assert!(!body.read, "{status}: the body was read");
    }
    assert_eq!(site.snapshot(), before);
}

#[test]
fn wrong_type_and_malformed_bodies_are_refused() {
    let (site, _) = site();
    let before = site.snapshot();
    let cases: [(&str, &[u8], &str, &str); 5] = [
        (
            "text/plain",
            br#"{"to":"alice","subject":"s","body":"b"}"#,
            "415 Unsupported Media Type",
            "unsupported_media_type",
        ),
        ("application/json", b"{\"to\":", "400 Bad Request", "malformed_json"),
        (
            "application/json",
            br#"{"to":"alice","subject":"s","body":"b","cc":"x"}"#,
            "400 Bad Request",
            "malformed_json",
        ),
        ("application/json", b"  ", "400 Bad Request", "empty_body"),
        ("application/json", b"\"\xff\"", "400 Bad Request", "invalid_utf8"),
    ];
    for (content_type, body, status, code) in cases {
        let r = site.cgi(Program::Messages).user("bob").method("POST").body(content_type, body).respond();
        assert_headers(&r, status, &[]);
        assert_eq!(r.error_code(), code, "{content_type} {body:?}");
        assert!(r.has_site_messages());
    }
    assert_eq!(site.snapshot(), before);
}

#[test]
fn unknown_paths_are_404_on_every_program() {
    let (site, _) = site();
    for (program, path) in [
        (Program::Profile, "/x"),
        (Program::Friends, "/x"),
        (Program::Posts, "/1/likes"),
        (Program::Messages, "/1/archive"),
        (Program::Messages, "/abc"),
    ] {
        let r = site.cgi(program).user("bob").path(path).respond();
        assert_headers(&r, "404 Not Found", &[]);
        assert_eq!(r.json["error"]["code"], "not_found", "{} {path}", program.name());
        assert_eq!(r.json["site_messages"], nothing_unread());
    }
}

#[test]
fn a_missing_or_relative_database_setting_is_500_misconfigured() {
    let (site, id) = site();
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
    let (site, _) = site();
    site.conn().set_schema_version(99);
    let r = site.cgi(Program::Profile).user("alice").respond();
    assert_headers(&r, "503 Service Unavailable", &[("Retry-After", "1")]);
    assert_eq!(r.error_code(), "unavailable");
    assert!(!r.has_site_messages());
}

/// `X-Piggyback-Ack: shown=N,M` names the batches shown: a batch whose answer was lost
/// stays unacknowledged even when a later one is acknowledged, and is announced again
/// after the lease (docs/API.md, *Acknowledgements*). A malformed list is `400 bad_ack`.
#[test]
fn acknowledging_by_name_leaves_a_lost_batch_to_announce_again() {
    let (site, lost) = site();
    let get = |ack: &str| site.cgi(Program::Profile).user("alice").var("HTTP_X_PIGGYBACK_ACK", ack).run();
    assert_eq!(get("shown=").json["site_messages"]["batch"], 1, "this answer is lost in transit");
    let later = store_message(&site, "bob", "alice", "again", "a second one", None);
    let shown = get("shown=");
    assert_eq!(shown.json["site_messages"]["items"][0]["id"], later);
    assert_eq!(shown.json["site_messages"]["batch"], 2);
    get("shown=2");
    site.conn().exec("UPDATE mailbox SET announced_at = announced_at - 1000");
    let again = get("shown=");
    let items = &again.json["site_messages"]["items"];
    assert_eq!(items.as_array().unwrap().len(), 1, "{}", again.json);
    assert_eq!((&items[0]["id"], &items[0]["repeat"]), (&json!(lost), &json!(true)));
    let bad = get("shown=2,x");
    assert_eq!((bad.status, &bad.json["error"]["code"]), (400, &json!("bad_ack")));
}
