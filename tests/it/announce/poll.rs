//! The status poll: `site_messages`, then 304 until something arrives.

use crate::support::{Program, Response, Site};

fn status(site: &Site, tag: Option<&str>, ack: Option<&str>) -> Response {
    let mut cgi = site.cgi(Program::Messages).user("alice").path("/status").var("PIGGYBACK_POLL_INTERVAL", "7");
    if let Some(tag) = tag {
        cgi = cgi.var("HTTP_IF_NONE_MATCH", tag);
    }
    if let Some(ack) = ack {
        cgi = cgi.var("HTTP_X_PIGGYBACK_ACK", ack);
    }
    cgi.run()
}

fn tag(r: &Response) -> String {
    r.header("ETag").unwrap_or_else(|| panic!("no ETag on {} {}", r.status, r.json)).to_owned()
}

fn mailbox(site: &Site) -> (i64, i64, i64) {
    let conn = site.conn();
    let column = |c: &str| conn.int(&format!("SELECT {c} FROM mailbox WHERE user_id = 1"));
    (column("new"), column("delivered"), column("batch"))
}

#[test]
fn status_answers_with_site_messages_then_304_until_something_arrives() {
    let site = Site::new(&["alice", "bob"]);
    let first_id = site.send("bob", "alice", "one", "first");
    let first = status(&site, None, Some("0"));
    first.assert_status(200);
    assert_eq!(first.json.as_object().unwrap().len(), 1, "only site_messages: {}", first.json);
    assert_eq!(first.announced(), vec![first_id]);
    assert_eq!(first.header("X-Poll-Interval"), Some("7"));
    let t1 = tag(&first);

    // Nothing new: 304, no body (support::parse_response checks it), nothing written.
    let before = mailbox(&site);
    let same = status(&site, Some(&t1), Some("1"));
    same.assert_status(304);
    assert_eq!((tag(&same), same.header("X-Poll-Interval")), (t1.clone(), Some("7")));
    assert_eq!(mailbox(&site), before, "a 304 flips nothing");

    // Another tag, or none: 200 with the counters, announcing nothing.
    let other = status(&site, Some("\"stale\""), Some("1"));
    other.assert_status(200);
    assert_eq!((other.counts(), other.announced()), ((1, 1, 0), vec![]));
    assert_eq!(tag(&other), t1);

    // A new arrival: the same tag no longer stops the announcement.
    let second_id = site.send("bob", "alice", "two", "second");
    let arrived = status(&site, Some(&t1), Some("1"));
    arrived.assert_status(200);
    assert_eq!((arrived.announced(), arrived.counts()), (vec![second_id], (2, 1, 1)));
    let t2 = tag(&arrived);
    assert_ne!(t2, t1);
    status(&site, Some(&t2), Some("2")).assert_status(304);

    // Reading a message changes the counters, so the tag.
    site.post(Program::Messages, "alice", &format!("/{first_id}/read"), serde_json::json!({})).assert_status(200);
    let read = status(&site, Some(&t2), Some("2"));
    read.assert_status(200);
    assert_eq!(read.counts(), (1, 1, 0));
    site.piggyback_ok(&["check"]);
}

#[test]
fn a_due_announcement_again_is_never_hidden_by_a_304() {
    let site = Site::new(&["alice", "bob"]);
    let id = site.send("bob", "alice", "lost", "its answer never arrived");
    let first = status(&site, None, Some("0"));
    assert_eq!(first.announced(), vec![id]);
    let t1 = tag(&first);
    // The answer was lost: the client still acknowledges 0. Within the lease: 304.
    status(&site, Some(&t1), Some("0")).assert_status(304);
    site.conn().exec("UPDATE mailbox SET announced_at = announced_at - 1000");
    let again = status(&site, Some(&t1), Some("0"));
    again.assert_status(200);
    assert_eq!(again.site()["items"][0]["id"], id);
    assert_eq!(again.site()["items"][0]["repeat"], true);
}

#[test]
fn status_needs_an_identity_and_only_reads() {
    let site = Site::new(&["alice"]);
    let anonymous = site.cgi(Program::Messages).path("/status").run();
    anonymous.assert_status(401);
    assert!(!anonymous.has_site_messages());
    let post = site.cgi(Program::Messages).user("alice").post("/status", serde_json::json!({})).run();
    post.assert_status(405);
    assert_eq!(post.header("Allow"), Some("GET, HEAD"));
    let bad = site.cgi(Program::Messages).user("alice").path("/status").var("PIGGYBACK_POLL_INTERVAL", "1").run();
    bad.assert_status(500);
}

#[test]
fn a_navigation_on_plain_http_reports_counts_and_flips_nothing() {
    let site = Site::new(&["alice", "bob"]);
    let id = site.send("bob", "alice", "keep", "for the page, not a link");
    let before = mailbox(&site);
    // A link from another site on plain http: no Sec-Fetch-*, no Origin, no header a
    // script would add; the browser sends the cookie and the Host.
    let plain = |headers: &[(&str, &str)]| {
        let mut cgi = site.cgi(Program::Messages).user("alice").path("/status").without_headers();
        for (name, value) in [("HTTP_HOST", "example.com")].iter().chain(headers) {
            cgi = cgi.var(name, value);
        }
        cgi.run()
    };
    let nav = plain(&[]);
    nav.assert_status(200);
    assert_eq!(nav.counts(), (1, 0, 0), "counts as (unread, delivered, new)");
    assert_eq!(nav.site()["waiting"], 1, "what it does not announce is waiting: {}", nav.json);
    assert!(nav.announced().is_empty(), "a navigation announced {:?}", nav.announced());
    assert_eq!(mailbox(&site), before, "a navigation flipped something");
    // Where the browser says it navigated, the same.
    let typed = site.cgi(Program::Messages).user("alice").path("/status").var("HTTP_SEC_FETCH_MODE", "navigate").run();
    assert!(typed.announced().is_empty());
    assert_eq!(mailbox(&site), before);
    // The page's script: piggyback.js's acknowledgement, or the browser's own word.
    let script = plain(&[("HTTP_X_PIGGYBACK_ACK", "shown=")]);
    assert_eq!(script.announced(), vec![id]);
    let id2 = site.send("bob", "alice", "two", "second");
    let fetched = site.cgi(Program::Messages).user("alice").path("/status").var("HTTP_SEC_FETCH_MODE", "cors").run();
    assert_eq!(fetched.announced(), vec![id2]);
}
