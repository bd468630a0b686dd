//! Each program's answers, through the real CGI executables.

use crate::support::three_users;

use crate::support::{Program, Response, Site};
use serde_json::json;

fn ids(r: &Response) -> Vec<i64> {
    r.announced()
}

// ---- 10. the smaller points ---------------------------------------------------------

#[test]
fn an_idempotency_key_reused_for_another_recipient_is_409_and_sends_nothing() {
    let site = Site::new(&["alice", "bob", "carol"]);
    let send = |to: &str| {
        site.post(
            Program::Messages,
            "alice",
            "",
            json!({"to": to, "subject": "s", "body": "b", "idempotency_key": "k1"}),
        )
    };
    assert_eq!(send("bob").status, 201);
    let r = send("carol");
    assert_eq!((r.status, r.error_code()), (409, "idempotency_key_reused"), "{}", r.json);
    assert_eq!(site.counters("carol"), (0, 0));
    let again = send("bob");
    assert_eq!(again.status, 201, "a retry to the same recipient is still answered");
    assert_eq!(site.counters("bob"), (1, 0));
}

// ---- the mailbox ---------------------------------------------------------------

#[test]
fn read_delete_and_read_all_lower_the_counts_in_their_own_response() {
    let site_process = three_users();
    let m: Vec<i64> = (0..4).map(|i| site_process.send("bob", "alice", &format!("m{i}"), "x")).collect();
    assert_eq!(site_process.get(Program::Messages, "alice", "").counts(), (4, 0, 4));

    let r = site_process.post(Program::Messages, "alice", &format!("/{}/read", m[0]), json!({}));
    r.assert_status(200);
    assert_eq!(r.json["message"], json!({"id": m[0], "state": "read"}));
    assert_eq!(r.counts(), (3, 3, 0));
    assert_eq!(site_process.counters("alice"), (0, 3));

    // An empty JSON body is fine for read and delete.
    let r = site_process
        .cgi(Program::Messages)
        .user("alice")
        .method("POST")
        .path(&format!("/{}/delete", m[1]))
        .body("application/json", b"")
        .run();
    r.assert_status(200);
    assert_eq!(r.json["message"], json!({"id": m[1], "state": "deleted"}));
    assert_eq!(r.counts(), (2, 2, 0));

    let r = site_process.cgi(Program::Messages).user("alice").method("DELETE").path(&format!("/{}", m[2])).run();
    r.assert_status(200);
    assert_eq!(r.counts(), (1, 1, 0));
    assert_eq!(site_process.state(m[2]), "deleted");

    // A new message read before any response announced it.
    let fresh = site_process.send("carol", "alice", "fresh", "x");
    assert_eq!(site_process.counters("alice"), (1, 1));
    let r = site_process.post(Program::Messages, "alice", &format!("/{fresh}/read"), json!({}));
    assert_eq!(r.counts(), (1, 1, 0));
    assert!(ids(&r).is_empty());
    assert_eq!(site_process.counters("alice"), (0, 1));

    // Reading a read message again changes nothing; deleting it keeps the counts.
    let r = site_process.post(Program::Messages, "alice", &format!("/{}/read", m[0]), json!({}));
    r.assert_status(200);
    assert_eq!(r.counts(), (1, 1, 0));
    let r = site_process.post(Program::Messages, "alice", &format!("/{}/delete", m[0]), json!({}));
    assert_eq!(r.counts(), (1, 1, 0));
    // A deleted message is gone.
    let r = site_process.post(Program::Messages, "alice", &format!("/{}/read", m[0]), json!({}));
    r.assert_status(404);
    site_process.get(Program::Messages, "alice", &format!("/{}", m[0])).assert_status(404);

    site_process.send("bob", "alice", "late", "x");
    let r = site_process.post(Program::Messages, "alice", "/read-all", json!({}));
    r.assert_status(200);
    assert_eq!(r.json["marked_read"], 2);
    assert_eq!(r.counts(), (0, 0, 0));
    assert_eq!(site_process.counters("alice"), (0, 0));
    let unread = site_process.get(Program::Messages, "alice", "?state=unread");
    assert_eq!(unread.json["messages"], json!([]));
    site_process.assert_check_passes();
}

#[test]
fn a_get_of_a_message_changes_no_state() {
    let site_process = three_users();
    let id = site_process.send("bob", "alice", "s", "the whole body");
    let r = site_process.get(Program::Messages, "alice", &format!("/{id}"));
    r.assert_status(200);
    assert_eq!(r.json["message"]["body"], "the whole body");
    assert_eq!(r.json["message"]["to"], "alice");
    // The response announced it (delivered), but nothing marked it read.
    assert_eq!(site_process.state(id), "delivered");
    site_process.get(Program::Messages, "alice", &format!("/{id}"));
    assert_eq!(site_process.state(id), "delivered");
}

#[test]
fn another_users_message_answers_exactly_like_one_that_does_not_exist() {
    let site_process = three_users();
    let bobs = site_process.send("alice", "bob", "private", "for bob only");
    let missing = bobs + 1000;
    let before = site_process.snapshot();
    // Settle carol's own mailbox first, so both answers carry the same site_messages.
    site_process.get(Program::Messages, "carol", "");
    for (method, suffix, body) in [
        ("GET", "", None),
        ("HEAD", "", None),
        ("POST", "/read", Some(json!({}))),
        ("POST", "/delete", Some(json!({}))),
        ("DELETE", "", None),
    ] {
        let answer = |id: i64| {
            let mut cgi =
                site_process.cgi(Program::Messages).user("carol").method(method).path(&format!("/{id}{suffix}"));
            if let Some(body) = &body {
                cgi = cgi.body("application/json", body.to_string().as_bytes());
            }
            cgi.run()
        };
        let (other, none) = (answer(bobs), answer(missing));
        assert_eq!(other.status, 404, "{method} {suffix}");
        assert_eq!(other.headers, none.headers, "{method} {suffix}");
        assert_eq!(other.body, none.body, "{method} {suffix}");
    }
    // The sender cannot read it from the recipient's side either.
    site_process.get(Program::Messages, "alice", &format!("/{bobs}")).assert_status(404);
    assert_eq!(site_process.snapshot(), before);
    assert_eq!(site_process.state(bobs), "new");
}

#[test]
fn idempotency_key_reuse_gives_the_same_message() {
    let site_process = three_users();
    let send = |subject: &str| {
        site_process.post(
            Program::Messages,
            "alice",
            "",
            json!({"to": "bob", "subject": subject, "body": "b", "idempotency_key": "order-17"}),
        )
    };
    let first = send("first");
    first.assert_status(201);
    let again = send("second try");
    again.assert_status(201);
    assert_eq!(first.json["sent"]["message_id"], again.json["sent"]["message_id"]);
    assert_eq!(site_process.counters("bob"), (1, 0));
    let r = site_process.get(Program::Profile, "bob", "");
    assert_eq!(r.counts(), (1, 0, 1));
    assert_eq!(r.site()["items"][0]["subject"], "first");
    assert_eq!(r.site()["items"][0]["id"], first.json["sent"]["message_id"]);
    site_process.assert_check_passes();
}

// ---- notices from the site itself ------------------------------------------------

#[test]
fn friend_request_accept_and_comment_notify_the_other_user() {
    let site_process = three_users();
    let r = site_process.post(Program::Friends, "alice", "", json!({"action": "request", "user": "bob"}));
    r.assert_status(200);
    assert_eq!(r.json["outgoing"], json!(["bob"]));

    let r = site_process.get(Program::Profile, "bob", "");
    assert_eq!(r.counts(), (1, 0, 1));
    assert_eq!(r.site()["items"][0]["kind"], "friend_request");
    assert_eq!(r.site()["items"][0]["from"], "alice");
    site_process.assert_check_passes();

    let r = site_process.post(Program::Friends, "bob", "", json!({"action": "accept", "user": "alice"}));
    r.assert_status(200);
    assert_eq!(r.json["friends"][0]["name"], "alice");
    assert_eq!(r.json["incoming"], json!([]));
    let r = site_process.get(Program::Messages, "alice", "");
    assert_eq!(r.counts(), (1, 0, 1));
    assert_eq!(r.site()["items"][0]["kind"], "friend_accept");
    assert_eq!(r.site()["items"][0]["from"], "bob");
    site_process.assert_check_passes();

    let post = site_process.post(Program::Posts, "alice", "", json!({"body": "我的第一篇"}));
    post.assert_status(201);
    let post_id = post.json["post"]["id"].as_i64().unwrap();
    let r = site_process.post(Program::Posts, "bob", &format!("/{post_id}/comments"), json!({"body": "好！"}));
    r.assert_status(201);
    assert_eq!(r.json["comment"]["author"], "bob");
    let r = site_process.get(Program::Posts, "alice", "");
    assert_eq!(r.counts(), (2, 1, 1));
    assert_eq!(r.site()["items"][0]["kind"], "comment");
    assert_eq!(r.site()["items"][0]["snippet"], "好！");
    assert_eq!(r.json["posts"][0]["comments"], 1);

    // Commenting on one's own post notifies nobody.
    site_process
        .post(Program::Posts, "alice", &format!("/{post_id}/comments"), json!({"body": "thanks"}))
        .assert_status(201);
    assert_eq!(site_process.counters("alice"), (0, 2));
    assert_eq!(site_process.counters("bob"), (0, 1));
    // A post is visible to friends only.
    site_process.get(Program::Posts, "carol", &format!("/{post_id}")).assert_status(404);
    site_process
        .post(Program::Posts, "carol", &format!("/{post_id}/comments"), json!({"body": "hi"}))
        .assert_status(404);
    site_process.assert_check_passes();
}

#[test]
fn decline_and_remove_notify_nobody() {
    let site_process = three_users();
    site_process.post(Program::Friends, "carol", "", json!({"action": "request", "user": "alice"})).assert_status(200);
    let r = site_process.post(Program::Friends, "alice", "", json!({"action": "decline", "user": "carol"}));
    r.assert_status(200);
    assert_eq!(r.json["incoming"], json!([]));
    assert_eq!(site_process.counters("carol"), (0, 0));
    site_process.post(Program::Friends, "alice", "", json!({"action": "decline", "user": "carol"})).assert_status(404);
    site_process.post(Program::Friends, "alice", "", json!({"action": "remove", "user": "carol"})).assert_status(404);
    site_process.post(Program::Friends, "alice", "", json!({"action": "accept", "user": "carol"})).assert_status(404);
    site_process.post(Program::Friends, "alice", "", json!({"action": "poke", "user": "carol"})).assert_status(400);
    site_process.post(Program::Friends, "alice", "", json!({"action": "request", "user": "alice"})).assert_status(400);
    site_process.assert_check_passes();
}

// ---- endpoints in more detail ------------------------------------------------------

#[test]
fn messages_and_posts_page_with_before_and_next() {
    let site_process = three_users();
    let sent: Vec<i64> = (0..5).map(|i| site_process.send("bob", "alice", &format!("m{i}"), "x")).collect();
    let page = |path: &str| {
        let r = site_process.get(Program::Messages, "alice", path);
        r.assert_status(200);
        let ids: Vec<i64> = r.json["messages"].as_array().unwrap().iter().map(|m| m["id"].as_i64().unwrap()).collect();
        (ids, r.json["next"].as_i64())
    };
    assert_eq!(page("?limit=2"), (vec![sent[4], sent[3]], Some(sent[3])));
    assert_eq!(page(&format!("?limit=2&before={}", sent[3])), (vec![sent[2], sent[1]], Some(sent[1])));
    assert_eq!(page(&format!("?limit=2&before={}", sent[1])), (vec![sent[0]], None));
    site_process.post(Program::Messages, "alice", &format!("/{}/read", sent[0]), json!({})).assert_status(200);
    site_process.post(Program::Messages, "alice", &format!("/{}/delete", sent[1]), json!({})).assert_status(200);
    assert_eq!(page("?state=read").0, vec![sent[0]]);
    assert_eq!(page("?state=unread").0, vec![sent[4], sent[3], sent[2]]);
    assert_eq!(page("?state=delivered").0, vec![sent[4], sent[3], sent[2]]);
    assert_eq!(page("?state=new").0, Vec::<i64>::new());
    assert_eq!(page("").0, vec![sent[4], sent[3], sent[2], sent[0]], "deleted messages are not listed");
    for bad in ["?state=deleted", "?state=x", "?limit=0", "?limit=101", "?limit=x", "?before=0", "?before=x"] {
        let r = site_process.get(Program::Messages, "alice", bad);
        r.assert_status(400);
        assert!(r.has_site_messages(), "{bad}");
    }

    let posts: Vec<i64> = (0..3)
        .map(|i| {
            site_process.post(Program::Posts, "alice", "", json!({"body": format!("p{i}")})).json["post"]["id"]
                .as_i64()
                .unwrap()
        })
        .collect();
    let r = site_process.get(Program::Posts, "alice", "?limit=2");
    let ids: Vec<i64> = r.json["posts"].as_array().unwrap().iter().map(|p| p["id"].as_i64().unwrap()).collect();
    assert_eq!(ids, vec![posts[2], posts[1]]);
    assert_eq!(r.json["next"], posts[1]);
    let r = site_process.get(Program::Posts, "alice", &format!("?limit=2&before={}", posts[1]));
    assert_eq!(r.json["posts"][0]["id"], posts[0]);
    assert_eq!(r.json["next"], json!(null));
    site_process.get(Program::Posts, "alice", "?limit=1000").assert_status(400);
}

#[test]
fn profile_of_another_user_and_edits() {
    let site_process = three_users();
    let r = site_process.get(Program::Profile, "alice", "?user=bob");
    r.assert_status(200);
    assert_eq!(r.json["profile"]["name"], "bob");
    let r = site_process.get(Program::Profile, "alice", "?user=nobody");
    assert_eq!((r.status, r.error_code()), (404, "user_not_found"));
    // A name no user can have says which rule it breaks; the case is not one of them.
    let r = site_process.get(Program::Profile, "alice", "?user=Not%20A%20Name");
    assert_eq!((r.status, r.error_code()), (400, "invalid_name"), "{}", r.json);
    assert!(r.json["error"]["message"].as_str().unwrap().contains("U+0020"), "{}", r.json);
    assert_eq!(site_process.get(Program::Profile, "alice", "?user=BOB").json["profile"]["name"], "bob");
    let r = site_process.post(Program::Profile, "alice", "", json!({"display_name": "Alice 爱丽丝"}));
    assert_eq!(r.json["profile"]["display_name"], "Alice 爱丽丝");
    let r = site_process.post(Program::Profile, "alice", "", json!({"bio": "hello"}));
    assert_eq!(
        (r.json["profile"]["display_name"].as_str(), r.json["profile"]["bio"].as_str()),
        (Some("Alice 爱丽丝"), Some("hello"))
    );
    assert_eq!(site_process.get(Program::Profile, "bob", "?user=alice").json["profile"]["bio"], "hello");
}

#[test]
fn a_friend_request_back_makes_friends_and_tells_the_first_asker() {
    let site_process = three_users();
    site_process.post(Program::Friends, "alice", "", json!({"action": "request", "user": "bob"})).assert_status(200);
    let r = site_process.post(Program::Friends, "bob", "", json!({"action": "request", "user": "alice"}));
    r.assert_status(200);
    assert_eq!(r.json["friends"][0]["name"], "alice");
    assert_eq!(r.counts(), (1, 0, 1), "bob's own response announces alice's request");
    assert_eq!(r.site()["items"][0]["kind"], "friend_request");
    let r = site_process.get(Program::Friends, "alice", "");
    assert_eq!(r.json["friends"][0]["name"], "bob");
    assert_eq!(r.json["outgoing"], json!([]));
    assert_eq!(r.site()["items"][0]["kind"], "friend_accept");
    // Asking again once friends notifies nobody.
    site_process.post(Program::Friends, "alice", "", json!({"action": "request", "user": "bob"})).assert_status(200);
    assert_eq!(site_process.counters("bob"), (0, 1));
    let r = site_process.post(Program::Friends, "alice", "", json!({"action": "remove", "user": "bob"}));
    assert_eq!(r.json["friends"], json!([]));
    site_process.assert_check_passes();
}

#[test]
fn a_notes_idempotency_key_cannot_swallow_a_comment_notice() {
    let site_process = three_users();
    site_process.post(Program::Friends, "alice", "", json!({"action": "request", "user": "bob"})).assert_status(200);
    site_process.post(Program::Friends, "bob", "", json!({"action": "accept", "user": "alice"})).assert_status(200);
    let post = site_process.post(Program::Posts, "alice", "", json!({"body": "hello"}));
    let post_id = post.json["post"]["id"].as_i64().unwrap();
    // bob keys a note the way the site might key its own notice of his next comment.
    for key in ["comment:1", "comment:2"] {
        site_process
            .post(
                Program::Messages,
                "bob",
                "",
                json!({"to": "alice", "subject": "n", "body": "b", "idempotency_key": key}),
            )
            .assert_status(201);
    }
    site_process.get(Program::Profile, "alice", "");
    site_process
        .post(Program::Posts, "bob", &format!("/{post_id}/comments"), json!({"body": "nice"}))
        .assert_status(201);
    let r = site_process.get(Program::Profile, "alice", "");
    assert_eq!(r.counts().2, 1, "the comment notice arrived");
    assert_eq!(r.site()["items"][0]["kind"], "comment");
    site_process.assert_check_passes();
}
