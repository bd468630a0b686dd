//! Malformed and unusual requests to the real programs: methods, lengths, bodies, text.

use crate::support::three_users;

use crate::support::{Cgi, Program, Response, Site};
use serde_json::json;
use std::os::unix::ffi::OsStringExt;

fn ids(r: &Response) -> Vec<i64> {
    r.announced()
}

// ---- HTTP ------------------------------------------------------------------------

#[test]
fn head_answers_headers_without_a_body_and_announces_nothing() {
    let site_process = three_users();
    let id = site_process.send("bob", "alice", "s", "b");
    for program in Program::ALL {
        let r = site_process.cgi(program).user("alice").method("HEAD").run();
        r.assert_status(200);
        assert!(r.body.is_empty());
        assert_eq!(r.header("Content-Type"), Some("application/json; charset=utf-8"));
    }
    assert_eq!(site_process.state(id), "new");
    assert_eq!(site_process.counters("alice"), (1, 0));
    // The next GET still announces it.
    assert_eq!(ids(&site_process.get(Program::Profile, "alice", "")), vec![id]);
}

#[test]
fn an_unsupported_method_is_405_with_allow() {
    let site_process = three_users();
    for (program, method, path, allow) in [
        (Program::Profile, "DELETE", "", "GET, HEAD, POST"),
        (Program::Friends, "PUT", "", "GET, HEAD, POST"),
        (Program::Posts, "POST", "/1", "GET, HEAD"),
        (Program::Messages, "GET", "/read-all", "POST"),
        (Program::Messages, "POST", "/1", "GET, HEAD, DELETE"),
    ] {
        let r = site_process.cgi(program).user("alice").method(method).path(path).body("application/json", b"{}").run();
        r.assert_status(405);
        assert_eq!(r.header("Allow"), Some(allow), "{} {method} {path}", program.name());
        assert_eq!(r.error_code(), "method_not_allowed");
    }
}

#[test]
fn bad_bodies_are_refused_and_change_nothing() {
    let site_process = three_users();
    site_process.send("bob", "alice", "s", "b");
    site_process.get(Program::Profile, "alice", "");
    let before = site_process.snapshot();
    let compose = br#"{"to":"bob","subject":"s","body":"b"}"#;
    let cases: Vec<(Program, &str, Cgi, u16, &str)> = vec![
        (
            Program::Messages,
            "POST without CONTENT_LENGTH",
            site_process
                .cgi(Program::Messages)
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
            site_process
                .cgi(Program::Messages)
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
            site_process
                .cgi(Program::Profile)
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
            site_process.cgi(Program::Messages).user("alice").method("POST").body("text/plain", compose),
            415,
            "unsupported_media_type",
        ),
        (
            Program::Messages,
            "malformed JSON",
            site_process
                .cgi(Program::Messages)
                .user("alice")
                .method("POST")
                .body("application/json", b"{\"to\": \"bob\""),
            400,
            "malformed_json",
        ),
        (
            Program::Messages,
            "an unknown member",
            site_process
                .cgi(Program::Messages)
                .user("alice")
                .post("", json!({"to": "bob", "subject": "s", "body": "b", "from": "carol"})),
            400,
            "malformed_json",
        ),
        (
            Program::Profile,
            "an unknown member",
            site_process.cgi(Program::Profile).user("alice").post("", json!({"bio": "x", "admin": true})),
            400,
            "malformed_json",
        ),
        (
            Program::Friends,
            "a missing member",
            site_process.cgi(Program::Friends).user("alice").post("", json!({"action": "request"})),
            400,
            "malformed_json",
        ),
        (
            Program::Posts,
            "a wrong type",
            site_process.cgi(Program::Posts).user("alice").post("", json!({"body": 5})),
            400,
            "malformed_json",
        ),
        (
            Program::Messages,
            "a bad CONTENT_LENGTH",
            site_process
                .cgi(Program::Messages)
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
            site_process
                .cgi(Program::Messages)
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
    assert_eq!(site_process.snapshot(), before);
}

#[test]
fn a_post_reads_exactly_its_body() {
    let site_process = three_users();
    let r = site_process.post(Program::Profile, "alice", "", json!({"bio": "你好，世界"}));
    r.assert_status(200);
    assert_eq!(r.json["profile"]["bio"], "你好，世界");
    let expected = json!({"bio": "你好，世界"}).to_string().len() as u64;
    assert_eq!(r.stdin_read, expected);
}

#[test]
fn unknown_path_info_is_404() {
    let site_process = three_users();
    for (program, path) in [
        (Program::Profile, "/alice"),
        (Program::Friends, "/list"),
        (Program::Posts, "/1/comments/2"),
        (Program::Posts, "/x"),
        (Program::Messages, "/1/2/3"),
        (Program::Messages, "/-1"),
        (Program::Messages, "/0"),
    ] {
        let r = site_process.get(program, "alice", path);
        r.assert_status(404);
        assert_eq!(r.error_code(), "not_found", "{} {path}", program.name());
    }
}

#[test]
fn content_length_counts_bytes_not_characters() {
    let site_process = three_users();
    site_process.send("bob", "alice", "长长的主题", "正文包含很多汉字，以及 emoji 😀😀😀");
    let r = site_process.get(Program::Messages, "alice", "");
    assert!(r.body.len() > String::from_utf8(r.body.clone()).unwrap().chars().count());
    assert_eq!(r.header("Content-Length").unwrap(), r.body.len().to_string());
    assert_eq!(r.header("Cache-Control"), Some("private, no-store"));
}

#[test]
fn text_limits_count_characters_and_refuse_blank_or_long_values() {
    let site_process = three_users();
    let send = |subject: String, body: &str| {
        site_process.post(Program::Messages, "alice", "", json!({"to": "bob", "subject": subject, "body": body}))
    };
    send("字".repeat(200), "b").assert_status(201);
    assert_eq!(send("字".repeat(201), "b").error_code(), "too_long");
    assert_eq!(send("s".into(), &"x".repeat(10_001)).error_code(), "too_long");
    assert_eq!(send("s".into(), "  \n ").error_code(), "missing_field");
    assert_eq!(send("s".into(), "a\u{0}b").error_code(), "invalid_text");
    let key = "k".repeat(129);
    let r = site_process.post(
        Program::Messages,
        "alice",
        "",
        json!({"to": "bob", "subject": "s", "body": "b", "idempotency_key": key}),
    );
    assert_eq!(r.error_code(), "bad_idempotency_key");
    assert_eq!(
        site_process.post(Program::Profile, "alice", "", json!({"display_name": " "})).error_code(),
        "missing_field"
    );
    assert_eq!(site_process.post(Program::Posts, "alice", "", json!({"body": ""})).error_code(), "missing_field");
    assert_eq!(site_process.counters("bob"), (1, 0), "only the first send was stored");
    site_process.assert_check_passes();
}

// ---- the environment as servers pass it ----------------------------------------------

#[test]
fn non_utf8_header_bytes_in_other_variables_do_not_matter() {
    use std::os::unix::ffi::OsStringExt;
    let site_process = three_users();
    let id = site_process.send("bob", "alice", "s", "b");
    let r = site_process
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
    let site_process = three_users();
    let r = site_process.cgi(Program::Messages).user("alice").content_length("0").run();
    r.assert_status(200);
    assert_eq!(r.counts(), (0, 0, 0));
}

#[test]
fn a_chunked_body_without_content_length_is_read_to_the_end_as_apache_passes_it() {
    let site_process = three_users();
    let body = json!({"to": "bob", "subject": "chunked", "body": "b"}).to_string();
    let chunked = |bytes: &[u8]| {
        site_process
            .cgi(Program::Messages)
            .user("alice")
            .method("POST")
            .body("application/json", bytes)
            .no_content_length()
            .var("HTTP_TRANSFER_ENCODING", "chunked")
            .run()
    };
    let r = chunked(body.as_bytes());
    r.assert_status(201);
    assert_eq!(site_process.counters("bob"), (1, 0));
    let mut huge = body.into_bytes();
    huge.resize(70_000, b' ');
    let r = chunked(&huge);
    r.assert_status(413);
    assert_eq!(site_process.counters("bob"), (1, 0));
}

#[test]
fn a_bodiless_post_needs_no_content_type_but_a_declared_one_must_be_json() {
    let site_process = three_users();
    let id = site_process.send("bob", "alice", "hi", "there");
    let form = site_process
        .cgi(Program::Messages)
        .user("alice")
        .path(&format!("/{id}/read"))
        .method("POST")
        .body("application/x-www-form-urlencoded", b"");
    let r = form.run();
    r.assert_status(415);
    assert_eq!(r.counts(), (1, 0, 1), "the 415 still announces the message");
    assert_eq!(site_process.state(id), "delivered", "announced, not read: the refused request changed nothing else");
    let r = site_process
        .cgi(Program::Messages)
        .user("alice")
        .path(&format!("/{id}/read"))
        .method("POST")
        .without("CONTENT_TYPE")
        .run();
    r.assert_status(200);
    assert_eq!(site_process.state(id), "read");
    assert_eq!(r.counts(), (0, 0, 0), "the answer to mark read already shows the lower count");
}

#[test]
fn a_request_that_cannot_be_parsed_is_a_400_that_still_carries_site_messages() {
    let site_process = three_users();
    let id = site_process.send("bob", "alice", "hi", "there");
    let r = site_process.get(Program::Profile, "alice", "?user=%ff");
    r.assert_status(400);
    assert_eq!(r.error_code(), "invalid_utf8");
    assert_eq!(r.announced(), vec![id], "an identified user's 400 announces like any other answer");
    let r = site_process.cgi(Program::Messages).user("alice").var("HTTP_X_PIGGYBACK_ACK", "soon").run();
    r.assert_status(400);
    assert_eq!(r.error_code(), "bad_ack");
    assert!(r.has_site_messages());
    // A REMOTE_USER that is not UTF-8 names nobody.
    let r = site_process
        .cgi(Program::Profile)
        .var_os("REMOTE_USER", std::ffi::OsString::from_vec(b"alice\xff".to_vec()))
        .run();
    r.assert_status(400);
    assert!(!r.has_site_messages());
}

#[test]
fn control_characters_and_bidi_overrides_are_refused_where_they_could_disguise_text() {
    let site_process = three_users();
    for (program, body) in [
        (Program::Profile, json!({"display_name": "ali\u{202E}ecila"})),
        (Program::Profile, json!({"display_name": "two\nlines"})),
        (Program::Profile, json!({"bio": "bell \u{7}"})),
        (Program::Messages, json!({"to": "bob", "subject": "line\nbreak", "body": "b"})),
        (Program::Messages, json!({"to": "bob", "subject": "s", "body": "escape \u{1b}[31m"})),
    ] {
        let r = site_process.post(program, "alice", "", body.clone());
        r.assert_status(400);
        assert_eq!(r.error_code(), "invalid_text", "{body}");
    }
    assert_eq!(site_process.counters("bob"), (0, 0), "nothing was sent");
    let r = site_process.post(
        Program::Messages,
        "alice",
        "",
        json!({"to": "bob", "subject": "s", "body": "two\nlines\tand a tab"}),
    );
    r.assert_status(201);
    let r = site_process.post(Program::Profile, "alice", "", json!({"bio": "line one\nline two"}));
    r.assert_status(200);
}

#[test]
fn a_post_with_no_content_length_is_a_post_with_no_body() {
    let site = Site::new(&["alice", "bob"]);
    let id = site.send("bob", "alice", "s", "b");
    site.piggyback_ok(&["drain"]);
    // An endpoint that needs no body: the POST is done.
    let r =
        site.cgi(Program::Messages).user("alice").method("POST").path(&format!("/{id}/read")).no_content_length().run();
    r.assert_status(200);
    assert_eq!(site.state(id), "read");
    assert_eq!(r.stdin_read, 0);
    // One that needs a body says so, and changes nothing.
    let before = site.snapshot();
    let r = site.cgi(Program::Posts).user("alice").method("POST").no_content_length().run();
    assert_eq!((r.status, r.error_code()), (400, "empty_body"));
    assert_eq!(site.snapshot(), before);
}
