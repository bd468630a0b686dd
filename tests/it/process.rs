//! Every built program run as a web server runs it: an empty environment plus the CGI
//! variables, the body on stdin, a temporary database made with the `piggyback` command.
//! Every response parsed here is also checked for a Status line first, CRLF headers and
//! a Content-Length equal to the body's bytes (see `support::parse_response`).

use crate::support::{Cgi, Program, Response, Site, piggyback};
use serde_json::json;
use std::os::unix::ffi::OsStringExt;

/// Sites where every test user exists.
fn site() -> Site {
    Site::new(&["alice", "bob", "carol"])
}

fn ids(r: &Response) -> Vec<i64> {
    r.announced()
}

// ---- site_messages -------------------------------------------------------------

#[test]
fn every_program_carries_site_messages_on_success_and_on_4xx_but_not_on_401() {
    let site = site();
    for program in Program::ALL {
        let ok = site.get(program, "alice", "");
        ok.assert_status(200);
        assert_eq!(ok.counts(), (0, 0, 0), "{}", program.name());

        let not_found = site.get(program, "alice", "/no/such/thing");
        not_found.assert_status(404);
        assert!(not_found.has_site_messages(), "{}", program.name());

        let not_allowed = site.cgi(program).user("alice").method("PATCH").run();
        not_allowed.assert_status(405);
        assert!(not_allowed.has_site_messages(), "{}", program.name());

        let bad = site.cgi(program).user("alice").method("POST").body("application/json", b"{").run();
        bad.assert_status(400);
        assert!(bad.has_site_messages(), "{}", program.name());

        let anonymous = site.cgi(program).run();
        anonymous.assert_status(401);
        assert!(!anonymous.has_site_messages(), "{}", program.name());
        assert_eq!(anonymous.error_code(), "unauthorized");
    }
}

#[test]
fn a_message_is_announced_once_then_counted_as_delivered() {
    let site = site();
    let id = site.send("bob", "alice", "Lunch?", "Are you free at noon?");
    assert_eq!(site.counters("alice"), (1, 0));

    let first = site.get(Program::Profile, "alice", "");
    first.assert_status(200);
    assert_eq!(first.counts(), (1, 0, 1));
    let items = first.site()["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["id"], id);
    assert_eq!(items[0]["from"], "bob");
    assert_eq!(items[0]["subject"], "Lunch?");
    assert_eq!(items[0]["snippet"], "Are you free at noon?");
    assert!(items[0]["sent_at"].as_str().is_some_and(|t| t.len() == 20 && t.ends_with('Z')));
    assert_eq!(first.site()["more"], false);
    assert_eq!(site.state(id), "delivered");

    for program in Program::ALL {
        let next = site.get(program, "alice", "");
        assert_eq!(next.counts(), (1, 1, 0), "{}", program.name());
        assert!(ids(&next).is_empty());
        assert_eq!(next.site()["more"], false);
    }
    assert_eq!(site.counters("alice"), (0, 1));
    // bob's own mailbox was never touched.
    assert_eq!(site.get(Program::Profile, "bob", "").counts(), (0, 0, 0));
    site.assert_check_passes();
}

#[test]
fn empty_omit_leaves_the_member_out_only_while_nothing_is_unread() {
    let site = site();
    let omit = |path: &str| site.cgi(Program::Posts).user("alice").var("PIGGYBACK_EMPTY", "omit").path(path);
    let r = omit("").run();
    r.assert_status(200);
    assert!(!r.has_site_messages());
    assert!(r.json.get("posts").is_some());

    let id = site.send("bob", "alice", "s", "b");
    let r = omit("").run();
    assert_eq!(r.counts(), (1, 0, 1));
    assert_eq!(ids(&r), vec![id]);
    let r = omit("").run();
    assert_eq!(r.counts(), (1, 1, 0));

    // Once read, nothing is unread: the response to the read already leaves it out.
    let r = site
        .cgi(Program::Messages)
        .user("alice")
        .var("PIGGYBACK_EMPTY", "omit")
        .post(&format!("/{id}/read"), json!({}))
        .run();
    r.assert_status(200);
    assert!(!r.has_site_messages());
    // An error response leaves it out too.
    let r = omit("/no/such").run();
    r.assert_status(404);
    assert!(!r.has_site_messages());

    // The explicit default says zero.
    assert_eq!(site.get(Program::Posts, "alice", "").counts(), (0, 0, 0));
}

#[test]
fn max_items_caps_the_summaries_and_more_says_so() {
    let site = site();
    let sent: Vec<i64> = (0..5).map(|i| site.send("bob", "alice", &format!("m{i}"), "x")).collect();
    let r = site.cgi(Program::Friends).user("alice").var("PIGGYBACK_MAX_ITEMS", "2").run();
    assert_eq!(r.counts(), (5, 0, 5));
    assert_eq!(ids(&r), vec![sent[4], sent[3]], "the newest first");
    assert_eq!(r.site()["more"], true);
    // All five were announced by that response, the three without items included.
    assert!(site.ids_in_state("new").is_empty());

    let r = site.cgi(Program::Friends).user("alice").var("PIGGYBACK_MAX_ITEMS", "2").run();
    assert_eq!(r.counts(), (5, 5, 0));
    assert_eq!(r.site()["more"], false);

    site.send("carol", "alice", "one more", "x");
    let r = site.cgi(Program::Friends).user("alice").var("PIGGYBACK_MAX_ITEMS", "2").run();
    assert_eq!(r.counts(), (6, 5, 1));
    assert_eq!(r.site()["more"], false);
    site.assert_check_passes();
}

#[test]
fn chinese_snippets_are_cut_at_character_boundaries() {
    let site = site();
    let long = site.send("bob", "alice", "午饭", "明天中午一起吃饭吗？我们在老地方见");
    let exact = site.send("bob", "alice", "五个字", "一二三四五");
    let emoji = site.send("bob", "alice", "😀", "ab😀cd😀ef");
    let r = site.cgi(Program::Profile).user("alice").var("PIGGYBACK_SNIPPET_CHARS", "5").run();
    let items = r.site()["items"].as_array().unwrap();
    let snippet = |id: i64| items.iter().find(|i| i["id"] == id).unwrap()["snippet"].as_str().unwrap().to_string();
    assert_eq!(snippet(long), "明天中午一…");
    assert_eq!(snippet(exact), "一二三四五");
    assert_eq!(snippet(emoji), "ab😀cd…");
    let subject = items.iter().find(|i| i["id"] == long).unwrap()["subject"].clone();
    assert_eq!(subject, "午饭");

    // The mailbox listing cuts the same way.
    let r = site.cgi(Program::Messages).user("alice").var("PIGGYBACK_SNIPPET_CHARS", "5").run();
    let listed = r.json["messages"].as_array().unwrap();
    assert_eq!(listed.iter().find(|m| m["id"] == long).unwrap()["snippet"], "明天中午一…");
}

// ---- the mailbox ---------------------------------------------------------------

#[test]
fn read_delete_and_read_all_lower_the_counts_in_their_own_response() {
    let site = site();
    let m: Vec<i64> = (0..4).map(|i| site.send("bob", "alice", &format!("m{i}"), "x")).collect();
    assert_eq!(site.get(Program::Messages, "alice", "").counts(), (4, 0, 4));

    let r = site.post(Program::Messages, "alice", &format!("/{}/read", m[0]), json!({}));
    r.assert_status(200);
    assert_eq!(r.json["message"], json!({"id": m[0], "state": "read"}));
    assert_eq!(r.counts(), (3, 3, 0));
    assert_eq!(site.counters("alice"), (0, 3));

    // An empty JSON body is fine for read and delete.
    let r = site
        .cgi(Program::Messages)
        .user("alice")
        .method("POST")
        .path(&format!("/{}/delete", m[1]))
        .body("application/json", b"")
        .run();
    r.assert_status(200);
    assert_eq!(r.json["message"], json!({"id": m[1], "state": "deleted"}));
    assert_eq!(r.counts(), (2, 2, 0));

    let r = site.cgi(Program::Messages).user("alice").method("DELETE").path(&format!("/{}", m[2])).run();
    r.assert_status(200);
    assert_eq!(r.counts(), (1, 1, 0));
    assert_eq!(site.state(m[2]), "deleted");

    // A new message read before any response announced it.
    let fresh = site.send("carol", "alice", "fresh", "x");
    assert_eq!(site.counters("alice"), (1, 1));
    let r = site.post(Program::Messages, "alice", &format!("/{fresh}/read"), json!({}));
    assert_eq!(r.counts(), (1, 1, 0));
    assert!(ids(&r).is_empty());
    assert_eq!(site.counters("alice"), (0, 1));

    // Reading a read message again changes nothing; deleting it keeps the counts.
    let r = site.post(Program::Messages, "alice", &format!("/{}/read", m[0]), json!({}));
    r.assert_status(200);
    assert_eq!(r.counts(), (1, 1, 0));
    let r = site.post(Program::Messages, "alice", &format!("/{}/delete", m[0]), json!({}));
    assert_eq!(r.counts(), (1, 1, 0));
    // A deleted message is gone.
    let r = site.post(Program::Messages, "alice", &format!("/{}/read", m[0]), json!({}));
    r.assert_status(404);
    site.get(Program::Messages, "alice", &format!("/{}", m[0])).assert_status(404);

    site.send("bob", "alice", "late", "x");
    let r = site.post(Program::Messages, "alice", "/read-all", json!({}));
    r.assert_status(200);
    assert_eq!(r.json["marked_read"], 2);
    assert_eq!(r.counts(), (0, 0, 0));
    assert_eq!(site.counters("alice"), (0, 0));
    let unread = site.get(Program::Messages, "alice", "?state=unread");
    assert_eq!(unread.json["messages"], json!([]));
    site.assert_check_passes();
}

#[test]
fn a_get_of_a_message_changes_no_state() {
    let site = site();
    let id = site.send("bob", "alice", "s", "the whole body");
    let r = site.get(Program::Messages, "alice", &format!("/{id}"));
    r.assert_status(200);
    assert_eq!(r.json["message"]["body"], "the whole body");
    assert_eq!(r.json["message"]["to"], "alice");
    // The response announced it (delivered), but nothing marked it read.
    assert_eq!(site.state(id), "delivered");
    site.get(Program::Messages, "alice", &format!("/{id}"));
    assert_eq!(site.state(id), "delivered");
}

#[test]
fn another_users_message_answers_exactly_like_one_that_does_not_exist() {
    let site = site();
    let bobs = site.send("alice", "bob", "private", "for bob only");
    let missing = bobs + 1000;
    let before = site.snapshot();
    // Settle carol's own mailbox first, so both answers carry the same site_messages.
    site.get(Program::Messages, "carol", "");
    for (method, suffix, body) in [
        ("GET", "", None),
        ("HEAD", "", None),
        ("POST", "/read", Some(json!({}))),
        ("POST", "/delete", Some(json!({}))),
        ("DELETE", "", None),
    ] {
        let answer = |id: i64| {
            let mut cgi = site.cgi(Program::Messages).user("carol").method(method).path(&format!("/{id}{suffix}"));
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
    site.get(Program::Messages, "alice", &format!("/{bobs}")).assert_status(404);
    assert_eq!(site.snapshot(), before);
    assert_eq!(site.state(bobs), "new");
}

#[test]
fn idempotency_key_reuse_gives_the_same_message() {
    let site = site();
    let send = |subject: &str| {
        site.post(
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
    assert_eq!(site.counters("bob"), (1, 0));
    let r = site.get(Program::Profile, "bob", "");
    assert_eq!(r.counts(), (1, 0, 1));
    assert_eq!(r.site()["items"][0]["subject"], "first");
    assert_eq!(r.site()["items"][0]["id"], first.json["sent"]["message_id"]);
    site.assert_check_passes();
}

#[test]
fn a_message_sent_through_the_cgi_is_announced_to_its_recipient() {
    let site = site();
    let r = site.post(Program::Messages, "alice", "", json!({"to": "bob", "subject": "你好", "body": "世界"}));
    r.assert_status(201);
    assert_eq!(r.json["sent"]["to"], "bob");
    assert_eq!(r.counts(), (0, 0, 0), "the sender is not notified");
    let r = site.get(Program::Posts, "bob", "");
    assert_eq!(r.counts(), (1, 0, 1));
    let item = &r.site()["items"][0];
    assert_eq!(
        (item["from"].as_str(), item["subject"].as_str(), item["snippet"].as_str()),
        (Some("alice"), Some("你好"), Some("世界"))
    );

    let r = site.post(Program::Messages, "alice", "", json!({"to": "nobody", "subject": "s", "body": "b"}));
    r.assert_status(404);
    assert_eq!(r.error_code(), "user_not_found");
    let r = site.post(Program::Messages, "alice", "", json!({"to": "bob", "subject": " ", "body": "b"}));
    r.assert_status(400);
    site.assert_check_passes();
}

// ---- notices from the site itself ------------------------------------------------

#[test]
fn friend_request_accept_and_comment_notify_the_other_user() {
    let site = site();
    let r = site.post(Program::Friends, "alice", "", json!({"action": "request", "user": "bob"}));
    r.assert_status(200);
    assert_eq!(r.json["outgoing"], json!(["bob"]));

    let r = site.get(Program::Profile, "bob", "");
    assert_eq!(r.counts(), (1, 0, 1));
    assert_eq!(r.site()["items"][0]["kind"], "friend_request");
    assert_eq!(r.site()["items"][0]["from"], "alice");
    site.assert_check_passes();

    let r = site.post(Program::Friends, "bob", "", json!({"action": "accept", "user": "alice"}));
    r.assert_status(200);
    assert_eq!(r.json["friends"][0]["name"], "alice");
    assert_eq!(r.json["incoming"], json!([]));
    let r = site.get(Program::Messages, "alice", "");
    assert_eq!(r.counts(), (1, 0, 1));
    assert_eq!(r.site()["items"][0]["kind"], "friend_accept");
    assert_eq!(r.site()["items"][0]["from"], "bob");
    site.assert_check_passes();

    let post = site.post(Program::Posts, "alice", "", json!({"body": "我的第一篇"}));
    post.assert_status(201);
    let post_id = post.json["post"]["id"].as_i64().unwrap();
    let r = site.post(Program::Posts, "bob", &format!("/{post_id}/comments"), json!({"body": "好！"}));
    r.assert_status(201);
    assert_eq!(r.json["comment"]["author"], "bob");
    let r = site.get(Program::Posts, "alice", "");
    assert_eq!(r.counts(), (2, 1, 1));
    assert_eq!(r.site()["items"][0]["kind"], "comment");
    assert_eq!(r.site()["items"][0]["snippet"], "好！");
    assert_eq!(r.json["posts"][0]["comments"], 1);

    // Commenting on one's own post notifies nobody.
    site.post(Program::Posts, "alice", &format!("/{post_id}/comments"), json!({"body": "thanks"})).assert_status(201);
    assert_eq!(site.counters("alice"), (0, 2));
    assert_eq!(site.counters("bob"), (0, 1));
    // A post is visible to friends only.
    site.get(Program::Posts, "carol", &format!("/{post_id}")).assert_status(404);
    site.post(Program::Posts, "carol", &format!("/{post_id}/comments"), json!({"body": "hi"})).assert_status(404);
    site.assert_check_passes();
}

#[test]
fn decline_and_remove_notify_nobody() {
    let site = site();
    site.post(Program::Friends, "carol", "", json!({"action": "request", "user": "alice"})).assert_status(200);
    let r = site.post(Program::Friends, "alice", "", json!({"action": "decline", "user": "carol"}));
    r.assert_status(200);
    assert_eq!(r.json["incoming"], json!([]));
    assert_eq!(site.counters("carol"), (0, 0));
    site.post(Program::Friends, "alice", "", json!({"action": "decline", "user": "carol"})).assert_status(404);
    site.post(Program::Friends, "alice", "", json!({"action": "remove", "user": "carol"})).assert_status(404);
    site.post(Program::Friends, "alice", "", json!({"action": "accept", "user": "carol"})).assert_status(404);
    site.post(Program::Friends, "alice", "", json!({"action": "poke", "user": "carol"})).assert_status(400);
    site.post(Program::Friends, "alice", "", json!({"action": "request", "user": "alice"})).assert_status(400);
    site.assert_check_passes();
}

// ---- HTTP ------------------------------------------------------------------------

#[test]
fn head_answers_headers_without_a_body_and_announces_nothing() {
    let site = site();
    let id = site.send("bob", "alice", "s", "b");
    for program in Program::ALL {
        let r = site.cgi(program).user("alice").method("HEAD").run();
        r.assert_status(200);
        assert!(r.body.is_empty());
        assert_eq!(r.header("Content-Type"), Some("application/json; charset=utf-8"));
    }
    assert_eq!(site.state(id), "new");
    assert_eq!(site.counters("alice"), (1, 0));
    // The next GET still announces it.
    assert_eq!(ids(&site.get(Program::Profile, "alice", "")), vec![id]);
}

#[test]
fn an_unsupported_method_is_405_with_allow() {
    let site = site();
    for (program, method, path, allow) in [
        (Program::Profile, "DELETE", "", "GET, HEAD, POST"),
        (Program::Friends, "PUT", "", "GET, HEAD, POST"),
        (Program::Posts, "POST", "/1", "GET, HEAD"),
        (Program::Messages, "GET", "/read-all", "POST"),
        (Program::Messages, "POST", "/1", "GET, HEAD, DELETE"),
    ] {
        let r = site.cgi(program).user("alice").method(method).path(path).body("application/json", b"{}").run();
        r.assert_status(405);
        assert_eq!(r.header("Allow"), Some(allow), "{} {method} {path}", program.name());
        assert_eq!(r.error_code(), "method_not_allowed");
    }
}

#[test]
fn bad_bodies_are_refused_and_change_nothing() {
    let site = site();
    site.send("bob", "alice", "s", "b");
    site.get(Program::Profile, "alice", "");
    let before = site.snapshot();
    let compose = br#"{"to":"bob","subject":"s","body":"b"}"#;
    let cases: Vec<(Program, &str, Cgi, u16, &str)> = vec![
        (
            Program::Messages,
            "POST without CONTENT_LENGTH",
            site.cgi(Program::Messages)
                .user("alice")
                .method("POST")
                .body("application/json", compose)
                .no_content_length(),
            400,
            "empty_body",
        ),
        (
            Program::Messages,
            "CONTENT_LENGTH 70000",
            site.cgi(Program::Messages)
                .user("alice")
                .method("POST")
                .body("application/json", &[b' '; 70_000])
                .content_length("70000"),
            413,
            "body_too_large",
        ),
        (
            Program::Profile,
            "CONTENT_LENGTH 70000",
            site.cgi(Program::Profile)
                .user("alice")
                .method("POST")
                .body("application/json", &[b' '; 70_000])
                .content_length("70000"),
            413,
            "body_too_large",
        ),
        (
            Program::Messages,
            "text/plain",
            site.cgi(Program::Messages).user("alice").method("POST").body("text/plain", compose),
            415,
            "unsupported_media_type",
        ),
        (
            Program::Messages,
            "malformed JSON",
            site.cgi(Program::Messages).user("alice").method("POST").body("application/json", b"{\"to\": \"bob\""),
            400,
            "malformed_json",
        ),
        (
            Program::Messages,
            "an unknown member",
            site.cgi(Program::Messages)
                .user("alice")
                .post("", json!({"to": "bob", "subject": "s", "body": "b", "from": "carol"})),
            400,
            "malformed_json",
        ),
        (
            Program::Profile,
            "an unknown member",
            site.cgi(Program::Profile).user("alice").post("", json!({"bio": "x", "admin": true})),
            400,
            "malformed_json",
        ),
        (
            Program::Friends,
            "a missing member",
            site.cgi(Program::Friends).user("alice").post("", json!({"action": "request"})),
            400,
            "malformed_json",
        ),
        (
            Program::Posts,
            "a wrong type",
            site.cgi(Program::Posts).user("alice").post("", json!({"body": 5})),
            400,
            "malformed_json",
        ),
        (
            Program::Messages,
            "a bad CONTENT_LENGTH",
            site.cgi(Program::Messages)
                .user("alice")
                .method("POST")
                .body("application/json", compose)
                .content_length("ten"),
            400,
            "bad_content_length",
        ),
        (
            Program::Messages,
            "a body shorter than CONTENT_LENGTH",
            site.cgi(Program::Messages)
                .user("alice")
                .method("POST")
                .body("application/json", compose)
                .content_length("500"),
            400,
            "incomplete_body",
        ),
    ];
    for (program, what, cgi, status, code) in cases {
        let r = cgi.run();
        assert_eq!((r.status, r.error_code()), (status, code), "{} {what}", program.name());
        assert_eq!(r.counts(), (1, 1, 0), "{} {what}", program.name());
        if what == "POST without CONTENT_LENGTH" || status == 413 {
            assert_eq!(r.stdin_read, 0, "{} {what}: the body must not be read", program.name());
        }
        assert!(r.stderr.is_empty(), "{what}: {}", r.stderr);
    }
    assert_eq!(site.snapshot(), before);
}

#[test]
fn a_post_reads_exactly_its_body() {
    let site = site();
    let r = site.post(Program::Profile, "alice", "", json!({"bio": "你好，世界"}));
    r.assert_status(200);
    assert_eq!(r.json["profile"]["bio"], "你好，世界");
    let expected = json!({"bio": "你好，世界"}).to_string().len() as u64;
    assert_eq!(r.stdin_read, expected);
}

#[test]
fn unknown_path_info_is_404() {
    let site = site();
    for (program, path) in [
        (Program::Profile, "/alice"),
        (Program::Friends, "/list"),
        (Program::Posts, "/1/comments/2"),
        (Program::Posts, "/x"),
        (Program::Messages, "/1/2/3"),
        (Program::Messages, "/-1"),
        (Program::Messages, "/0"),
    ] {
        let r = site.get(program, "alice", path);
        r.assert_status(404);
        assert_eq!(r.error_code(), "not_found", "{} {path}", program.name());
    }
}

#[test]
fn content_length_counts_bytes_not_characters() {
    let site = site();
    site.send("bob", "alice", "长长的主题", "正文包含很多汉字，以及 emoji 😀😀😀");
    let r = site.get(Program::Messages, "alice", "");
    assert!(r.body.len() > String::from_utf8(r.body.clone()).unwrap().chars().count());
    assert_eq!(r.header("Content-Length").unwrap(), r.body.len().to_string());
    assert_eq!(r.header("Cache-Control"), Some("private, no-store"));
}

// ---- configuration -------------------------------------------------------------

/// The single stderr line of a misconfigured request, which must name `variable`.
fn assert_misconfigured(r: &Response, variable: &str) {
    r.assert_status(500);
    assert_eq!(r.error_code(), "misconfigured");
    assert!(!r.has_site_messages());
    let lines: Vec<&str> = r.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "exactly one stderr line: {:?}", r.stderr);
    assert!(lines[0].contains(variable), "{variable} not named in {:?}", lines[0]);
    assert!(!r.stderr.contains("panicked"));
}

#[test]
fn a_missing_or_relative_database_is_a_500_naming_the_variable() {
    let site = site();
    for program in Program::ALL {
        assert_misconfigured(&site.cgi(program).user("alice").without("PIGGYBACK_DB").run(), "PIGGYBACK_DB");
        assert_misconfigured(&site.cgi(program).user("alice").var("PIGGYBACK_DB", "").run(), "PIGGYBACK_DB");
        assert_misconfigured(&site.cgi(program).user("alice").var("PIGGYBACK_DB", "site.db").run(), "PIGGYBACK_DB");
    }
    // Also without identity and for a POST: the configuration is checked first.
    assert_misconfigured(&Cgi::new(Program::Messages, None).run(), "PIGGYBACK_DB");
    let post = Cgi::new(Program::Messages, None).user("alice").post("", json!({}));
    assert_misconfigured(&post.run(), "PIGGYBACK_DB");
}

#[test]
fn a_database_file_that_does_not_exist_is_a_500_and_is_not_created() {
    let site = site();
    let missing = site.dir.path().join("missing.db");
    let r = site.cgi(Program::Profile).user("alice").var("PIGGYBACK_DB", missing.to_str().unwrap()).run();
    assert_misconfigured(&r, "PIGGYBACK_DB");
    assert!(!missing.exists());
}

#[test]
fn other_bad_settings_are_500s_naming_their_variable() {
    let site = site();
    for (variable, value) in [
        ("PIGGYBACK_EMPTY", "never"),
        ("PIGGYBACK_MAX_ITEMS", "0"),
        ("PIGGYBACK_MAX_ITEMS", "many"),
        ("PIGGYBACK_SNIPPET_CHARS", "-1"),
    ] {
        let r = site.cgi(Program::Profile).user("alice").var(variable, value).run();
        assert_misconfigured(&r, variable);
    }
}

#[test]
fn an_unknown_remote_user_is_401() {
    let site = site();
    let r = site.get(Program::Messages, "mallory", "");
    r.assert_status(401);
    assert!(!r.has_site_messages());
}

// ---- piggyback check -------------------------------------------------------------

#[test]
fn check_exits_1_naming_a_corrupted_counter() {
    let site = site();
    site.send("bob", "alice", "s", "b");
    site.get(Program::Profile, "alice", "");
    site.send("carol", "alice", "s", "b");
    site.assert_check_passes();
    site.conn().exec("UPDATE mailbox SET new = 5 WHERE user_id = (SELECT id FROM users WHERE name = 'alice')");
    let out = site.piggyback(&["check"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("alice") && stderr.contains("new=5"), "{stderr}");

    let out = site.piggyback(&["check", "--repair"]);
    assert_eq!(out.status.code(), Some(1), "repair still reports what it found");
    site.assert_check_passes();
    assert_eq!(site.counters("alice"), (1, 1));
}

// ---- the command line ------------------------------------------------------------

#[test]
fn cli_help_works_for_every_subcommand() {
    for args in [
        vec!["--help"],
        vec!["init", "--help"],
        vec!["user", "--help"],
        vec!["user", "add", "--help"],
        vec!["send", "--help"],
        vec!["seed", "--help"],
        vec!["check", "--help"],
        vec!["token", "--help"],
        vec!["help", "send"],
    ] {
        let out = piggyback(&args, &[]);
        assert_eq!(out.status.code(), Some(0), "{args:?}");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.contains("Usage:"), "{args:?}: {stdout}");
        assert!(out.stderr.is_empty(), "{args:?}");
    }
}

#[test]
fn cli_wrong_usage_exits_2_with_usage_on_stderr() {
    let site = site();
    let db = site.db.to_str().unwrap();
    for args in [
        vec![],
        vec!["--db", db],
        vec!["--db", db, "frobnicate"],
        vec!["--db", db, "user"],
        vec!["--db", db, "user", "add"],
        vec!["--db", db, "send", "--from", "alice", "--to", "bob"],
        vec!["--db", db, "seed", "--users", "many", "--messages", "1"],
        vec!["--db", db, "check", "--bogus"],
    ] {
        let out = piggyback(&args, &[]);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(out.stdout.is_empty(), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        // The usage, or for a bad value a pointer to --help.
        assert!(stderr.contains("Usage:") || stderr.contains("--help"), "{args:?}: {stderr}");
    }
    // No database at all is wrong usage too.
    let out = piggyback(&["check"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(String::from_utf8_lossy(&out.stderr).lines().count(), 1);
}

#[test]
fn cli_failures_exit_1_with_one_line() {
    let site = site();
    for args in [
        vec!["user", "add", "alice"],
        vec!["user", "add", "Not A Name"],
        vec!["send", "--from", "alice", "--to", "nobody", "--subject", "s", "--body", "b"],
    ] {
        let out = site.piggyback(&args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
    }
    let missing = site.dir.path().join("missing.db");
    let out = piggyback(&["--db", missing.to_str().unwrap(), "check"], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(!missing.exists());
}

#[test]
fn cli_takes_the_database_from_piggyback_db_and_init_is_idempotent() {
    let site = site();
    let db = site.db.to_str().unwrap();
    // The site's own spool (where a SQLite site has it anyway; a PostgreSQL one needs it named).
    let spool = site.spool();
    let env = [("PIGGYBACK_DB", db), ("PIGGYBACK_SPOOL", spool.to_str().unwrap())];
    let out = piggyback(&["user", "add", "dave", "--display-name", "Dave D."], &env);
    assert!(out.status.success());
    let out = piggyback(&["init"], &env);
    assert!(out.status.success());
    let r = site.get(Program::Profile, "dave", "");
    assert_eq!(r.json["profile"]["display_name"], "Dave D.");
    site.assert_check_passes();
}

#[test]
fn cli_seed_makes_a_site_the_programs_serve_and_check_passes() {
    let site = site();
    let out = site.piggyback_ok(&["seed", "--users", "20", "--messages", "300", "--seed", "3"]);
    assert!(out.starts_with("seeded 20 users"), "{out}");
    site.assert_check_passes();
    let user = site.conn().text("SELECT name FROM users ORDER BY id DESC LIMIT 1");
    let (new, delivered) = site.counters(&user);
    let r = site.get(Program::Posts, &user, "");
    r.assert_status(200);
    assert_eq!(r.counts(), (new + delivered, delivered, new));
    assert!(!r.json["posts"].as_array().unwrap().is_empty());
    site.assert_check_passes();
}

// ---- endpoints in more detail ------------------------------------------------------

#[test]
fn messages_and_posts_page_with_before_and_next() {
    let site = site();
    let sent: Vec<i64> = (0..5).map(|i| site.send("bob", "alice", &format!("m{i}"), "x")).collect();
    let page = |path: &str| {
        let r = site.get(Program::Messages, "alice", path);
        r.assert_status(200);
        let ids: Vec<i64> = r.json["messages"].as_array().unwrap().iter().map(|m| m["id"].as_i64().unwrap()).collect();
        (ids, r.json["next"].as_i64())
    };
    assert_eq!(page("?limit=2"), (vec![sent[4], sent[3]], Some(sent[3])));
    assert_eq!(page(&format!("?limit=2&before={}", sent[3])), (vec![sent[2], sent[1]], Some(sent[1])));
    assert_eq!(page(&format!("?limit=2&before={}", sent[1])), (vec![sent[0]], None));
    site.post(Program::Messages, "alice", &format!("/{}/read", sent[0]), json!({})).assert_status(200);
    site.post(Program::Messages, "alice", &format!("/{}/delete", sent[1]), json!({})).assert_status(200);
    assert_eq!(page("?state=read").0, vec![sent[0]]);
    assert_eq!(page("?state=unread").0, vec![sent[4], sent[3], sent[2]]);
    assert_eq!(page("?state=delivered").0, vec![sent[4], sent[3], sent[2]]);
    assert_eq!(page("?state=new").0, Vec::<i64>::new());
    assert_eq!(page("").0, vec![sent[4], sent[3], sent[2], sent[0]], "deleted messages are not listed");
    for bad in ["?state=deleted", "?state=x", "?limit=0", "?limit=101", "?limit=x", "?before=0", "?before=x"] {
        let r = site.get(Program::Messages, "alice", bad);
        r.assert_status(400);
        assert!(r.has_site_messages(), "{bad}");
    }

    let posts: Vec<i64> = (0..3)
        .map(|i| {
            site.post(Program::Posts, "alice", "", json!({"body": format!("p{i}")})).json["post"]["id"]
                .as_i64()
                .unwrap()
        })
        .collect();
    let r = site.get(Program::Posts, "alice", "?limit=2");
    let ids: Vec<i64> = r.json["posts"].as_array().unwrap().iter().map(|p| p["id"].as_i64().unwrap()).collect();
    assert_eq!(ids, vec![posts[2], posts[1]]);
    assert_eq!(r.json["next"], posts[1]);
    let r = site.get(Program::Posts, "alice", &format!("?limit=2&before={}", posts[1]));
    assert_eq!(r.json["posts"][0]["id"], posts[0]);
    assert_eq!(r.json["next"], json!(null));
    site.get(Program::Posts, "alice", "?limit=1000").assert_status(400);
}

#[test]
fn text_limits_count_characters_and_refuse_blank_or_long_values() {
    let site = site();
    let send = |subject: String, body: &str| {
        site.post(Program::Messages, "alice", "", json!({"to": "bob", "subject": subject, "body": body}))
    };
    send("字".repeat(200), "b").assert_status(201);
    assert_eq!(send("字".repeat(201), "b").error_code(), "too_long");
    assert_eq!(send("s".into(), &"x".repeat(10_001)).error_code(), "too_long");
    assert_eq!(send("s".into(), "  \n ").error_code(), "missing_field");
    assert_eq!(send("s".into(), "a\u{0}b").error_code(), "invalid_text");
    let key = "k".repeat(129);
    let r = site.post(
        Program::Messages,
        "alice",
        "",
        json!({"to": "bob", "subject": "s", "body": "b", "idempotency_key": key}),
    );
    assert_eq!(r.error_code(), "bad_idempotency_key");
    assert_eq!(site.post(Program::Profile, "alice", "", json!({"display_name": " "})).error_code(), "missing_field");
    assert_eq!(site.post(Program::Posts, "alice", "", json!({"body": ""})).error_code(), "missing_field");
    assert_eq!(site.counters("bob"), (1, 0), "only the first send was stored");
    site.assert_check_passes();
}

#[test]
fn sending_is_rate_limited_and_so_are_the_actions_that_send_notices() {
    let site = site();
    let send = |i: usize| {
        site.cgi(Program::Messages)
            .user("alice")
            .var("PIGGYBACK_SEND_RATE", "2")
            .post("", json!({"to": "bob", "subject": format!("s{i}"), "body": "b"}))
            .run()
    };
    send(0).assert_status(201);
    send(1).assert_status(201);
    let r = send(2);
    r.assert_status(429);
    assert_eq!(r.error_code(), "rate_limited");
    let wait: i64 = r.header("Retry-After").expect("Retry-After").parse().unwrap();
    assert!((1..=60).contains(&wait));
    assert!(r.has_site_messages());
    assert_eq!(site.counters("bob"), (2, 0));
    // A retry of a stored send is answered, not counted.
    let keyed = |key: &str, rate: &str| {
        site.cgi(Program::Messages)
            .user("carol")
            .var("PIGGYBACK_SEND_RATE", rate)
            .post("", json!({"to": "bob", "subject": "k", "body": "b", "idempotency_key": key}))
            .run()
    };
    let first = keyed("k1", "1");
    first.assert_status(201);
    let again = keyed("k1", "1");
    again.assert_status(201);
    assert_eq!(again.json["sent"]["message_id"], first.json["sent"]["message_id"]);
    keyed("k2", "1").assert_status(429);
    // Request, withdraw, request again cannot flood bob either: the request is refused
    // before it changes anything.
    let r = site
        .cgi(Program::Friends)
        .user("alice")
        .var("PIGGYBACK_SEND_RATE", "2")
        .post("", json!({"action": "request", "user": "bob"}))
        .run();
    r.assert_status(429);
    assert_eq!(r.json["outgoing"], serde_json::Value::Null);
    assert_eq!(site.get(Program::Friends, "alice", "").json["outgoing"], json!([]));
    assert_eq!(site.counters("bob"), (3, 0));
}

#[test]
fn profile_of_another_user_and_edits() {
    let site = site();
    let r = site.get(Program::Profile, "alice", "?user=bob");
    r.assert_status(200);
    assert_eq!(r.json["profile"]["name"], "bob");
    let r = site.get(Program::Profile, "alice", "?user=nobody");
    assert_eq!((r.status, r.error_code()), (404, "user_not_found"));
    // A name no user can have says which rule it breaks; the case is not one of them.
    let r = site.get(Program::Profile, "alice", "?user=Not%20A%20Name");
    assert_eq!((r.status, r.error_code()), (400, "invalid_name"), "{}", r.json);
    assert!(r.json["error"]["message"].as_str().unwrap().contains("U+0020"), "{}", r.json);
    assert_eq!(site.get(Program::Profile, "alice", "?user=BOB").json["profile"]["name"], "bob");
    let r = site.post(Program::Profile, "alice", "", json!({"display_name": "Alice 爱丽丝"}));
    assert_eq!(r.json["profile"]["display_name"], "Alice 爱丽丝");
    let r = site.post(Program::Profile, "alice", "", json!({"bio": "hello"}));
    assert_eq!(
        (r.json["profile"]["display_name"].as_str(), r.json["profile"]["bio"].as_str()),
        (Some("Alice 爱丽丝"), Some("hello"))
    );
    assert_eq!(site.get(Program::Profile, "bob", "?user=alice").json["profile"]["bio"], "hello");
}

// ---- the environment as servers pass it ----------------------------------------------

#[test]
fn non_utf8_header_bytes_in_other_variables_do_not_matter() {
    use std::os::unix::ffi::OsStringExt;
    let site = site();
    let id = site.send("bob", "alice", "s", "b");
    let r = site
        .cgi(Program::Profile)
        .user("alice")
        .var_os("HTTP_USER_AGENT", std::ffi::OsString::from_vec(b"agent \xff\xfe".to_vec()))
        .var_os("HTTP_X_ODD", std::ffi::OsString::from_vec(vec![0x80]))
        .run();
    r.assert_status(200);
    assert_eq!(ids(&r), vec![id]);
    assert!(r.stderr.is_empty());
}

#[test]
fn lighttpd_style_content_length_zero_on_get_is_fine() {
    let site = site();
    let r = site.cgi(Program::Messages).user("alice").content_length("0").run();
    r.assert_status(200);
    assert_eq!(r.counts(), (0, 0, 0));
}

#[test]
fn the_common_request_takes_no_write_lock() {
    let site = site();
    let id = site.send("bob", "alice", "s", "b");
    site.get(Program::Profile, "alice", "");
    // Another writer holds the database; a request with nothing new must not wait for it
    // (it would answer 503 or leave site_messages out after the busy timeout).
    let writer = site.conn();
    writer.begin_writing();
    for program in Program::ALL {
        let r = site.get(program, "alice", "");
        r.assert_status(200);
        assert_eq!(r.counts(), (1, 1, 0), "{}", program.name());
        assert!(r.stderr.is_empty(), "{}", r.stderr);
    }
    let r = site.get(Program::Messages, "alice", &format!("/{id}"));
    r.assert_status(200);
    writer.exec("ROLLBACK");
}

// ---- the request-file queue ---------------------------------------------------------

#[test]
fn a_waiting_request_file_is_stored_and_announced_by_the_recipients_next_request() {
    use piggyback::model::{NewMessage, UserId};
    use piggyback::msq::spool::{FileRequest, Spool};
    let site = site();
    let spool = Spool::new(site.dir.path().join("spool"));
    let id_of = |name: &str| site.id_of(name);
    let message = NewMessage {
        request_id: piggyback::msq::new_request_id(),
        from: UserId(id_of("bob")),
        to: UserId(id_of("alice")),
        subject: "from the spool".into(),
        body: "queued while the database was busy".into(),
        kind: piggyback::model::MessageKind::Note,
        idempotency_key: None,
        sent_at: 1_700_000_000,
    };
    spool.enqueue(&FileRequest::Send(message.clone())).unwrap();
    assert_eq!(spool.state().unwrap().waiting, 1);
    assert_eq!(site.counters("alice"), (0, 0));

    // Any program's request drains it; the recipient's response announces it.
    let r = site.get(Program::Friends, "alice", "");
    assert_eq!(r.counts(), (1, 0, 1));
    assert_eq!(r.site()["items"][0]["subject"], "from the spool");
    assert_eq!(spool.state().unwrap().waiting, 0);
    // Replaying the same file stores nothing twice.
    spool.enqueue(&FileRequest::Send(message.clone())).unwrap();
    let out = site.piggyback_ok(&["drain"]);
    assert!(out.contains("already stored 1"), "{out}");
    assert_eq!(site.counters("alice"), (0, 1));
    site.assert_check_passes();
}

#[test]
fn an_unwritable_spool_accepts_no_message() {
    let site = site();
    let not_a_dir = site.dir.path().join("not-a-dir");
    std::fs::write(&not_a_dir, b"").unwrap();
    let before = site.snapshot();
    let r = site
        .cgi(Program::Messages)
        .user("alice")
        .var("PIGGYBACK_SPOOL", not_a_dir.to_str().unwrap())
        .post("", json!({"to": "bob", "subject": "s", "body": "b"}))
        .run();
    r.assert_status(503);
    assert!(r.header("Retry-After").is_some());
    assert!(r.stderr.contains("PIGGYBACK_SPOOL"), "{}", r.stderr);
    assert_eq!(site.snapshot(), before);
    // Reading still works.
    let r = site.cgi(Program::Messages).user("alice").var("PIGGYBACK_SPOOL", not_a_dir.to_str().unwrap()).run();
    r.assert_status(200);
}

#[test]
fn a_chunked_body_without_content_length_is_read_to_the_end_as_apache_passes_it() {
    let site = site();
    let body = json!({"to": "bob", "subject": "chunked", "body": "b"}).to_string();
    let chunked = |bytes: &[u8]| {
        site.cgi(Program::Messages)
            .user("alice")
            .method("POST")
            .body("application/json", bytes)
            .no_content_length()
            .var("HTTP_TRANSFER_ENCODING", "chunked")
            .run()
    };
    let r = chunked(body.as_bytes());
    r.assert_status(201);
    assert_eq!(site.counters("bob"), (1, 0));
    let mut huge = body.into_bytes();
    huge.resize(70_000, b' ');
    let r = chunked(&huge);
    r.assert_status(413);
    assert_eq!(site.counters("bob"), (1, 0));
}

#[test]
fn a_friend_request_back_makes_friends_and_tells_the_first_asker() {
    let site = site();
    site.post(Program::Friends, "alice", "", json!({"action": "request", "user": "bob"})).assert_status(200);
    let r = site.post(Program::Friends, "bob", "", json!({"action": "request", "user": "alice"}));
    r.assert_status(200);
    assert_eq!(r.json["friends"][0]["name"], "alice");
    assert_eq!(r.counts(), (1, 0, 1), "bob's own response announces alice's request");
    assert_eq!(r.site()["items"][0]["kind"], "friend_request");
    let r = site.get(Program::Friends, "alice", "");
    assert_eq!(r.json["friends"][0]["name"], "bob");
    assert_eq!(r.json["outgoing"], json!([]));
    assert_eq!(r.site()["items"][0]["kind"], "friend_accept");
    // Asking again once friends notifies nobody.
    site.post(Program::Friends, "alice", "", json!({"action": "request", "user": "bob"})).assert_status(200);
    assert_eq!(site.counters("bob"), (0, 1));
    let r = site.post(Program::Friends, "alice", "", json!({"action": "remove", "user": "bob"}));
    assert_eq!(r.json["friends"], json!([]));
    site.assert_check_passes();
}

#[test]
fn a_notes_idempotency_key_cannot_swallow_a_comment_notice() {
    let site = site();
    site.post(Program::Friends, "alice", "", json!({"action": "request", "user": "bob"})).assert_status(200);
    site.post(Program::Friends, "bob", "", json!({"action": "accept", "user": "alice"})).assert_status(200);
    let post = site.post(Program::Posts, "alice", "", json!({"body": "hello"}));
    let post_id = post.json["post"]["id"].as_i64().unwrap();
    // bob keys a note the way the site might key its own notice of his next comment.
    for key in ["comment:1", "comment:2"] {
        site.post(
            Program::Messages,
            "bob",
            "",
            json!({"to": "alice", "subject": "n", "body": "b", "idempotency_key": key}),
        )
        .assert_status(201);
    }
    site.get(Program::Profile, "alice", "");
    site.post(Program::Posts, "bob", &format!("/{post_id}/comments"), json!({"body": "nice"})).assert_status(201);
    let r = site.get(Program::Profile, "alice", "");
    assert_eq!(r.counts().2, 1, "the comment notice arrived");
    assert_eq!(r.site()["items"][0]["kind"], "comment");
    site.assert_check_passes();
}

#[test]
fn a_bodiless_post_needs_no_content_type_but_a_declared_one_must_be_json() {
    let site = site();
    let id = site.send("bob", "alice", "hi", "there");
    let form = site
        .cgi(Program::Messages)
        .user("alice")
        .path(&format!("/{id}/read"))
        .method("POST")
        .body("application/x-www-form-urlencoded", b"");
    let r = form.run();
    r.assert_status(415);
    assert_eq!(r.counts(), (1, 0, 1), "the 415 still announces the message");
    assert_eq!(site.state(id), "delivered", "announced, not read: the refused request changed nothing else");
    let r = site
        .cgi(Program::Messages)
        .user("alice")
        .path(&format!("/{id}/read"))
        .method("POST")
        .without("CONTENT_TYPE")
        .run();
    r.assert_status(200);
    assert_eq!(site.state(id), "read");
    assert_eq!(r.counts(), (0, 0, 0), "the answer to mark read already shows the lower count");
}

#[test]
fn a_request_that_cannot_be_parsed_is_a_400_that_still_carries_site_messages() {
    let site = site();
    let id = site.send("bob", "alice", "hi", "there");
    let r = site.get(Program::Profile, "alice", "?user=%ff");
    r.assert_status(400);
    assert_eq!(r.error_code(), "invalid_utf8");
    assert_eq!(r.announced(), vec![id], "an identified user's 400 announces like any other answer");
    let r = site.cgi(Program::Messages).user("alice").var("HTTP_X_PIGGYBACK_ACK", "soon").run();
    r.assert_status(400);
    assert_eq!(r.error_code(), "bad_ack");
    assert!(r.has_site_messages());
    // A REMOTE_USER that is not UTF-8 names nobody.
    let r = site.cgi(Program::Profile).var_os("REMOTE_USER", std::ffi::OsString::from_vec(b"alice\xff".to_vec())).run();
    r.assert_status(400);
    assert!(!r.has_site_messages());
}

#[test]
fn control_characters_and_bidi_overrides_are_refused_where_they_could_disguise_text() {
    let site = site();
    for (program, body) in [
        (Program::Profile, json!({"display_name": "ali\u{202E}ecila"})),
        (Program::Profile, json!({"display_name": "two\nlines"})),
        (Program::Profile, json!({"bio": "bell \u{7}"})),
        (Program::Messages, json!({"to": "bob", "subject": "line\nbreak", "body": "b"})),
        (Program::Messages, json!({"to": "bob", "subject": "s", "body": "escape \u{1b}[31m"})),
    ] {
        let r = site.post(program, "alice", "", body.clone());
        r.assert_status(400);
        assert_eq!(r.error_code(), "invalid_text", "{body}");
    }
    assert_eq!(site.counters("bob"), (0, 0), "nothing was sent");
    let r = site.post(
        Program::Messages,
        "alice",
        "",
        json!({"to": "bob", "subject": "s", "body": "two\nlines\tand a tab"}),
    );
    r.assert_status(201);
    let r = site.post(Program::Profile, "alice", "", json!({"bio": "line one\nline two"}));
    r.assert_status(200);
}

#[test]
fn an_unacknowledged_announcement_is_made_again_to_an_acknowledging_client() {
    let site = site();
    let id = site.send("bob", "alice", "hi", "there");
    let get = |ack: Option<&str>| {
        let cgi = site.cgi(Program::Profile).user("alice").var("PIGGYBACK_ACK_LEASE", "5");
        match ack {
            Some(ack) => cgi.var("HTTP_X_PIGGYBACK_ACK", ack).run(),
            None => cgi.run(),
        }
    };
    let age = || site.conn().exec("UPDATE mailbox SET announced_at = announced_at - 60");
    let first = get(Some("0"));
    assert_eq!(first.announced(), vec![id]);
    let batch = first.site()["batch"].as_i64().expect("an announcing answer has a batch");
    // The answer was lost: nothing acknowledged it. Within the lease nothing repeats.
    assert_eq!(get(Some("0")).announced(), Vec::<i64>::new());
    age();
    assert!(get(None).site()["items"].as_array().unwrap().is_empty(), "never to a client without the header");
    let again = get(Some("0"));
    assert_eq!(again.site()["items"][0]["id"], id);
    assert_eq!(again.site()["items"][0]["repeat"], true);
    assert_eq!((again.site()["repeated"].as_i64(), again.counts()), (Some(1), (1, 1, 0)));
    let second = again.site()["batch"].as_i64().unwrap();
    assert!(second > batch);
    // Acknowledged: never again.
    get(Some(&second.to_string()));
    age();
    assert!(get(Some(&second.to_string())).site()["items"].as_array().unwrap().is_empty());
    site.piggyback_ok(&["check"]);
}

#[test]
fn msqd_applies_request_files_as_they_arrive_and_stops_cleanly_on_sigterm() {
    use piggyback::model::{MessageKind, NewMessage, UserId};
    use piggyback::msq::spool::{FileRequest, Spool};
    let site = site();
    let keeper = site.piggyback_spawn(&["msqd", "--poll-ms", "20", "--checkpoint-secs", "1"]);
    // A request file as a sender leaves it when the database was busy: waiting in new/.
    let (alice, bob) = (UserId(1), UserId(2));
    Spool::new(site.dir.path().join("spool"))
        .enqueue(&FileRequest::Send(NewMessage {
            request_id: "00000000000000000001.1.1".into(),
            from: bob,
            to: alice,
            subject: "via msqd".into(),
            body: "applied by the keeper".into(),
            kind: MessageKind::Note,
            idempotency_key: None,
            sent_at: 1_700_000_000,
        }))
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while site.counters("alice") != (1, 0) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(site.counters("alice"), (1, 0), "msqd stored the waiting request");
    let status = std::process::Command::new("kill").arg("-TERM").arg(keeper.id().to_string()).status().unwrap();
    assert!(status.success());
    let out = keeper.wait_with_output().unwrap();
    assert!(out.status.success(), "msqd exits 0 on SIGTERM: {:?}", out.status);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("applied 1,"), "{stdout}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("stopped"));
    assert!(site.piggyback_ok(&["check"]).contains("0 waiting, 0 claimed, 0 bad"));
}

#[test]
fn a_cgi_that_wrote_checkpoints_on_close_and_one_that_only_read_leaves_the_wal_empty() {
    let site = site();
    let wal = site.db.with_extension("db-wal");
    let wal_len = || std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
    site.deliver("bob", "alice", "hello");
    // The announcing request wrote, and as the last connection its close checkpointed.
    let announced = site.get(Program::Profile, "alice", "");
    assert_eq!(announced.announced().len(), 1);
    assert_eq!(wal_len(), 0, "the writer's close checkpointed and emptied the WAL");
    // A reader exits without closing its connection: nothing of it reaches the WAL, and
    // the next processes find the database whole.
    let read = site.get(Program::Profile, "alice", "");
    assert_eq!(read.counts(), (1, 1, 0));
    assert_eq!(wal_len(), 0);
    site.piggyback_ok(&["check"]);
    site.deliver("bob", "alice", "again");
    assert_eq!(site.get(Program::Messages, "alice", "").announced().len(), 1);
}
