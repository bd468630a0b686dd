//! Each program's answers through `gateway::respond`, in-process.

use crate::support::{assert_headers, message_site};

use crate::support::{Program, Response};
use serde_json::{Value, json};

const JOINED: &str = "2023-11-14T22:13:20Z";

const SENT: &str = "2023-11-14T22:15:00Z";

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
    let (site, id) = message_site();
    let r = site.cgi(Program::Profile).user("alice").respond();
    assert_headers(&r, "200 OK", &[]);
    assert_eq!(r.json, json!({"profile": own_profile_of("alice"), "site_messages": hi_announced(id)}));
    assert_site_messages_last(&r);

    let again = site.cgi(Program::Profile).user("alice").respond();
    assert_eq!(again.json["site_messages"], json!({"unread": 1, "delivered": 1, "new": 0, "items": [], "more": false}));
}

#[test]
fn profile_of_another_user_and_of_nobody() {
    let (site, _) = message_site();
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
    let (site, id) = message_site();
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
    let (site, _) = message_site();
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
    let (site, id) = message_site();
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
    let (site, id) = message_site();
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
