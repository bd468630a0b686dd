//! Identity a site can trust: `REMOTE_USER` counts only under
//! `PIGGYBACK_TRUST_REMOTE_USER=1`, and a POST with no body at all (no CONTENT_LENGTH,
//! as busybox httpd sends `Content-Length: 0`) reaches the endpoints that need none.

use crate::support::{Program, Site};

#[test]
fn remote_user_without_the_operators_word_identifies_nobody_and_the_log_says_so_once() {
    let site = Site::new(&["alice", "bob"]);
    site.deliver("bob", "alice", "private");
    // What nginx's stock fastcgi_params sends for `curl -u alice:anything`.
    let r = site.cgi(Program::Messages).var("REMOTE_USER", "alice").run();
    assert_eq!((r.status, r.error_code()), (401, "unauthorized"), "{}", r.json);
    assert!(!r.has_site_messages());
    assert_eq!(r.stderr.matches("PIGGYBACK_TRUST_REMOTE_USER").count(), 1, "{}", r.stderr);
    let r = site.cgi(Program::Messages).var("REMOTE_USER", "alice").var("PIGGYBACK_TRUST_REMOTE_USER", "0").run();
    assert_eq!(r.status, 401);
    assert_eq!(site.counters("alice"), (1, 0), "nothing announced to an unchecked name");
    // The session program does not call it a remote_user session either.
    let r = site.cgi(Program::Session).var("REMOTE_USER", "alice").run();
    assert_eq!(r.json["session"], serde_json::Value::Null, "{}", r.json);
    // Trusted, it identifies alice.
    let r = site.cgi(Program::Messages).var("REMOTE_USER", "alice").var("PIGGYBACK_TRUST_REMOTE_USER", "1").run();
    r.assert_status(200);
    assert_eq!(r.announced().len(), 1);
}

#[test]
fn a_bad_trust_setting_is_a_misconfiguration_naming_the_variable() {
    let site = Site::new(&["alice"]);
    let r = site.cgi(Program::Profile).user("alice").var("PIGGYBACK_TRUST_REMOTE_USER", "yes").run();
    assert_eq!((r.status, r.error_code()), (500, "misconfigured"));
    assert!(r.stderr.contains("PIGGYBACK_TRUST_REMOTE_USER"), "{}", r.stderr);
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
