//! Malformed requests through `gateway::respond`, in-process.

use crate::support::{assert_headers, message_site};

use crate::support::{Program, parse_response};
use serde_json::{Value, json};
use std::io::Read;

fn nothing_unread() -> Value {
    json!({"unread": 0, "delivered": 0, "new": 0, "items": [], "more": false})
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
fn method_not_allowed_names_the_allowed_methods() {
    let (site, id) = message_site();
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
fn head_has_the_headers_and_no_body_and_announces_nothing() {
    let (site, id) = message_site();
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

#[test]
fn an_oversized_or_unsized_body_is_refused_without_reading_it() {
    let (site, _) = message_site();
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
    let (site, _) = message_site();
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
    let (site, _) = message_site();
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
