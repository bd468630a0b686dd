//! Who may see what: REMOTE_USER, trusted proxies, cross-site requests, another user's things.

use crate::support::{assert_headers, message_site, three_users};

use super::*;
use crate::support::{Cgi, Program, Response, Site};
use piggyback::message_store::{StateFilter, Store};
use piggyback::model::User;
use serde_json::{Value, json};

/// Everything of B's that A could try to change, read through the library.
#[derive(Debug, PartialEq)]
struct Snapshot {
    counters: (i64, i64),
    messages: Vec<(i64, String)>,
    friends: Vec<String>,
    incoming: Vec<String>,
    outgoing: Vec<String>,
    profile: (String, String),
    posts: Vec<(i64, String, i64)>,
}

fn snapshot(site: &Site, name: &str) -> Snapshot {
    let store = Store::open(&site.db).unwrap();
    let user: User = store.user_by_name(&crate::support::uname(name)).unwrap().unwrap();
    let counters = store.counters(user.id).unwrap();
    let messages = store
        .list_messages(user.id, StateFilter::All, None, 1000, 10)
        .unwrap()
        .into_iter()
        .map(|m| (m.id.0, m.state.as_str().to_owned()))
        .collect();
    let profile = store.profile(user.id).unwrap().unwrap();
    let posts = store.feed(user.id, None, 1000).unwrap().into_iter().map(|p| (p.id.0, p.body, p.comments)).collect();
    Snapshot {
        counters: (counters.new, counters.delivered),
        messages,
        friends: store.friends(user.id).unwrap().into_iter().map(|f| f.name).collect(),
        incoming: store.incoming_requests(user.id).unwrap(),
        outgoing: store.outgoing_requests(user.id).unwrap(),
        profile: (profile.display_name, profile.bio),
        posts,
    }
}

fn message_ids(site: &Site, name: &str) -> Vec<i64> {
    let store = Store::open(&site.db).unwrap();
    let user = store.user_by_name(&crate::support::uname(name)).unwrap().unwrap();
    store.list_messages(user.id, StateFilter::All, None, 1000, 10).unwrap().into_iter().map(|m| m.id.0).collect()
}

/// A request on a message id, made of a request on the messages program.
type Route = fn(Cgi, i64) -> Cgi;

/// The parts of an answer that must not tell another's resource from a missing one.
fn shape(r: &Response) -> (u16, Value) {
    (r.status, r.json["error"].clone())
}

fn message_state(site: &Site, name: &str, id: i64) -> String {
    let store = Store::open(&site.db).unwrap();
    let user = store.user_by_name(&crate::support::uname(name)).unwrap().unwrap();
    store.message(user.id, piggyback::model::MessageId(id)).unwrap().unwrap().state.as_str().to_owned()
}

#[test]
fn forwarding_headers_from_anybody_but_a_trusted_proxy_are_ignored() {
    let mut site = site_with_dave();
    site.extra_env.push(("PIGGYBACK_TRUSTED_PROXIES".into(), "10.0.0.0/8".into()));
    for i in 0..20 {
        // Each attempt claims another address; none is believed from 192.0.2.1.
        let r = site
            .bare(Program::Session)
            .post("", json!({"name": format!("user{i}"), "password": "guess"}))
            .var("HTTP_X_FORWARDED_FOR", &format!("203.0.113.{i}"))
            .var("HTTP_FORWARDED", &format!("for=203.0.113.{i};proto=https"))
            .var("HTTP_X_FORWARDED_PROTO", "https")
            .run();
        assert_eq!(r.status, 401);
    }
    let r = site
        .bare(Program::Session)
        .post("", json!({"name": "dave", "password": PASSWORD}))
        .var("HTTP_X_FORWARDED_FOR", "203.0.113.200")
        .run();
    assert_eq!(r.status, 429, "the failures counted against REMOTE_ADDR, which the header did not change");
    let r = site
        .bare(Program::Session)
        .post("", json!({"name": "dave", "password": PASSWORD}))
        .var("REMOTE_ADDR", "192.0.2.99")
        .var("HTTP_X_FORWARDED_PROTO", "https")
        .run();
    assert_eq!(r.status, 200);
    let set = r.header("Set-Cookie").unwrap();
    assert!(set.starts_with("pb_session=") && !set.contains("Secure"), "an untrusted proto header is ignored: {set}");
}

// ---- 9. a cross-site link ----------------------------------------------------------

#[test]
fn a_cross_site_get_reports_counts_but_announces_nothing() {
    let site = site_with_dave();
    site.deliver("erin", "dave", "one");
    site.deliver("erin", "dave", "two");
    let dave = site.token("dave");
    // A top-level link from another site carries the Lax cookie.
    for (what, req) in [
        ("Sec-Fetch-Site", site.bare(Program::Messages).var("HTTP_SEC_FETCH_SITE", "cross-site")),
        ("Origin", site.bare(Program::Profile).var("HTTP_ORIGIN", "https://evil.test")),
        (
            "a refused POST",
            site.bare(Program::Posts).post("", json!({"body": "x"})).var("HTTP_ORIGIN", "https://evil.test"),
        ),
    ] {
        let r = req.cookie(&dave).run();
        let site_messages = r.site();
        assert_eq!(site_messages["new"], 0, "{what}: {site_messages}");
        assert_eq!(site_messages["waiting"], 2, "{what}: {site_messages}");
        assert_eq!(site_messages["unread"], 2, "{what}");
        assert!(site_messages["items"].as_array().unwrap().is_empty(), "{what}");
        assert_eq!(site.counters("dave"), (2, 0), "{what}: nothing flipped");
    }
    // The user's own page then announces both.
    let r = site.bare(Program::Messages).var("HTTP_SEC_FETCH_SITE", "same-origin").cookie(&dave).run();
    assert_eq!(r.announced().len(), 2);
    assert!(r.site().get("waiting").is_none());
    site.assert_check_passes();
}

#[test]
fn a_cannot_see_or_change_what_belongs_to_b() {
    let site = Site::keyed(&["alice", "bob", "carol"]);
    site.deliver("carol", "bob", "for bob 1");
    site.deliver("carol", "bob", "for bob 2");
    site.deliver("carol", "alice", "for alice");
    let (alice, bob, carol) = (site.token("alice"), site.token("bob"), site.token("carol"));

    // Carol asks Bob to be friends; Bob and Carol post; Bob's post is private to friends.
    let r = site.bare(Program::Friends).post("", json!({"action": "request", "user": "bob"})).cookie(&carol).run();
    assert_eq!(r.status, 200, "{:?}", r.json);
    let r = site.bare(Program::Posts).post("", json!({"body": "bob's private post"})).cookie(&bob).run();
    assert_eq!(r.status, 201, "{:?}", r.json);
    let bob_post = r.json["post"]["id"].as_i64().unwrap();
    // Bob announces his messages once, so that both `new` and `delivered` are at stake.
    site.deliver("carol", "bob", "for bob 3");
    let r = site.bare(Program::Profile).cookie(&bob).run();
    assert_eq!(r.status, 200);

    let before = snapshot(&site, "bob");
    let bob_messages = message_ids(&site, "bob");
    assert_eq!(bob_messages.len(), 4, "three notes and the friend request");
    let missing = 1_000_000;

    // Messages: every route on each of Bob's ids answers exactly as a missing id.
    let routes: Vec<(&str, Route)> = vec![
        ("GET /messages/ID", |cgi, id| cgi.path(&format!("/{id}"))),
        ("HEAD /messages/ID", |cgi, id| cgi.method("HEAD").path(&format!("/{id}"))),
        ("POST /messages/ID/read", |cgi, id| cgi.post_empty(&format!("/{id}/read"))),
        ("POST /messages/ID/delete", |cgi, id| cgi.post_empty(&format!("/{id}/delete"))),
        ("DELETE /messages/ID", |cgi, id| cgi.delete(&format!("/{id}"))),
    ];
    let as_alice = |program: Program| site.bare(program).cookie(&alice);
    for (what, route) in &routes {
        let nothing = route(as_alice(Program::Messages), missing).run();
        assert_eq!(nothing.status, 404, "{what} on a missing id");
        for id in &bob_messages {
            let r = route(as_alice(Program::Messages), *id).run();
            assert_eq!(shape(&r), shape(&nothing), "{what} on Bob's message {id}");
            if r.status < 500 && r.headers.iter().all(|(k, _)| k != "Allow") && what != &"HEAD /messages/ID" {
                assert!(r.json.get("site_messages").is_some(), "{what}: A's site_messages still attached");
            }
        }
    }
    // Alice's own list and read-all touch only Alice's mailbox.
    let r = as_alice(Program::Messages).run();
    let listed: Vec<i64> = r.json["messages"].as_array().unwrap().iter().map(|m| m["id"].as_i64().unwrap()).collect();
    assert!(listed.iter().all(|id| !bob_messages.contains(id)), "A's list shows none of B's: {listed:?}");
    assert_eq!(listed.len(), 1);
    let r = as_alice(Program::Messages).post_empty("/read-all").run();
    assert_eq!((r.status, r.json["marked_read"].as_i64()), (200, Some(1)));
    for state in ["all", "unread", "new", "delivered", "read"] {
        let r = as_alice(Program::Messages).path(&format!("?state={state}")).run();
        assert_eq!(r.status, 200);
        for m in r.json["messages"].as_array().unwrap() {
            assert!(!bob_messages.contains(&m["id"].as_i64().unwrap()), "state={state} listed Bob's message");
        }
    }

    // Friend requests: Carol's request is Bob's to accept or decline, not Alice's.
    for action in ["accept", "decline"] {
        let r = as_alice(Program::Friends).post("", json!({"action": action, "user": "carol"})).run();
        assert_eq!(r.status, 404, "{action} a request addressed to Bob");
    }
    let r = as_alice(Program::Friends).post("", json!({"action": "remove", "user": "bob"})).run();
    assert_eq!(r.status, 404, "remove a friendship Alice does not have");
    let r = as_alice(Program::Friends).run();
    assert_eq!(r.json["incoming"], json!([]), "Bob's incoming requests are not Alice's");

    // Posts: Bob's private post is missing for Alice, and she cannot comment on it.
    let nothing = as_alice(Program::Posts).path(&format!("/{missing}")).run();
    let r = as_alice(Program::Posts).path(&format!("/{bob_post}")).run();
    assert_eq!(shape(&r), shape(&nothing), "GET Bob's private post");
    assert_eq!(r.status, 404);
    let comment = |id: i64| as_alice(Program::Posts).post(&format!("/{id}/comments"), json!({"body": "let me in"}));
    let nothing = comment(missing).run();
    let r = comment(bob_post).run();
    assert_eq!(shape(&r), shape(&nothing), "comment on Bob's private post");
    assert_eq!(r.status, 404);
    let r = as_alice(Program::Posts).run();
    assert!(r.json["posts"].as_array().unwrap().iter().all(|p| p["id"] != json!(bob_post)), "feed");

    // Profile: an edit changes Alice only, whatever names the body or query mention.
    let r = as_alice(Program::Profile).post("", json!({"display_name": "Mallory", "bio": "mine"})).run();
    assert_eq!((r.status, r.json["profile"]["name"].as_str()), (200, Some("alice")));
    let r = as_alice(Program::Profile).post("?user=bob", json!({"display_name": "Bob?"})).run();
    assert_eq!(r.json["profile"]["name"].as_str(), Some("alice"), "?user= selects nobody on POST");
    let r = as_alice(Program::Profile).post("", json!({"name": "bob", "display_name": "x"})).run();
    assert_eq!(r.status, 400, "unknown fields are refused");

    // No parameter, header or body field selects whose messages come back.
    let r = as_alice(Program::Messages).path("?user=bob&to=bob").run();
    assert_eq!(r.json["messages"].as_array().unwrap().len(), 1);

    assert_eq!(snapshot(&site, "bob"), before, "Bob's data is untouched");
    let alice_after = snapshot(&site, "alice");
    assert_eq!(alice_after.profile, ("Bob?".to_owned(), "mine".to_owned()));
    let check = site.piggyback(&["check"]);
    assert!(check.status.success(), "piggyback check: {}", String::from_utf8_lossy(&check.stderr));
}

#[test]
fn no_identity_is_401_without_site_messages() {
    let (site, id) = message_site();
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
fn an_unknown_remote_user_is_401() {
    let site_process = three_users();
    let r = site_process.get(Program::Messages, "mallory", "");
    r.assert_status(401);
    assert!(!r.has_site_messages());
}

#[test]
fn cross_site_requests_change_nothing() {
    let mut site = site_with_dave();
    site.deliver("erin", "dave", "to be kept");
    let dave = site.token("dave");
    let note = |site: &Site| {
        site.bare(Program::Messages)
            .post("", json!({"to": "erin", "subject": "csrf", "body": "sent by a foreign page"}))
    };
    let foreign: Vec<(&str, Cgi)> = vec![
        ("foreign Origin", note(&site).var("HTTP_ORIGIN", "https://evil.test")),
        ("null Origin", note(&site).var("HTTP_ORIGIN", "null")),
        ("lookalike Origin", note(&site).var("HTTP_ORIGIN", "http://example.com.evil.test")),
        ("cross-site fetch", note(&site).var("HTTP_SEC_FETCH_SITE", "cross-site")),
        ("same-site fetch", note(&site).var("HTTP_SEC_FETCH_SITE", "same-site")),
        (
            "Origin right, fetch cross-site",
            note(&site).var("HTTP_ORIGIN", "http://example.com").var("HTTP_SEC_FETCH_SITE", "cross-site"),
        ),
    ];
    let erin_before = site.counters("erin");
    for (what, req) in &foreign {
        let r = req.clone().cookie(&dave).run();
        assert_eq!((r.status, r.error_code()), (403, "cross_site"), "{what}");
        assert!(r.json.get("site_messages").is_some(), "{what}: the 403 still carries site_messages");
    }
    site.piggyback_ok(&["drain"]);
    assert_eq!(site.counters("erin"), erin_before, "no message was sent");

    // Mailbox changes, profile edits, friend requests, posts and logins alike.
    let id = Store::open(&site.db).unwrap().user_by_name(&crate::support::uname("dave")).unwrap().unwrap().id;
    let first = Store::open(&site.db)
        .unwrap()
        .list_messages(id, piggyback::message_store::StateFilter::All, None, 10, 10)
        .unwrap()[0]
        .id
        .0;
    let evil = |program: Program| site.bare(program).var("HTTP_ORIGIN", "https://evil.test").cookie(&dave);
    for req in [
        evil(Program::Messages).delete(&format!("/{first}")),
        evil(Program::Messages).post_empty(&format!("/{first}/read")),
        evil(Program::Messages).post_empty("/read-all"),
        evil(Program::Profile).post("", json!({"bio": "pwned"})),
        evil(Program::Friends).post("", json!({"action": "request", "user": "erin"})),
        evil(Program::Posts).post("", json!({"body": "spam"})),
        evil(Program::Session).post("", json!({"name": "dave", "password": PASSWORD})),
    ] {
        let r = req.run();
        assert_eq!(r.status, 403, "{} {}", req.program().name(), req.method_name());
        assert!(r.header("Set-Cookie").is_none());
    }
    assert_ne!(message_state(&site, "dave", first), "read");
    assert_ne!(message_state(&site, "dave", first), "deleted");
    let profile = site.bare(Program::Profile).cookie(&dave).run();
    assert_eq!(profile.json["profile"]["bio"], "");
    assert_eq!(profile.json["profile"]["posts"], 0);
    assert_eq!(site.bare(Program::Friends).cookie(&dave).run().json["outgoing"], json!([]));

    // Reads pass whatever the headers; the site's own origin and allowlisted ones pass.
    let r = site.bare(Program::Messages).var("HTTP_ORIGIN", "https://evil.test").cookie(&dave).run();
    assert_eq!(r.status, 200);
    let own = note(&site).var("HTTP_ORIGIN", "http://example.com").var("HTTP_SEC_FETCH_SITE", "same-origin");
    assert!(matches!(own.cookie(&dave).run().status, 201 | 202));
    let hosted = note(&site)
        .var("HTTP_ORIGIN", "https://www.example.com")
        .var("HTTP_HOST", "www.example.com")
        .var("HTTPS", "on");
    assert!(matches!(hosted.cookie(&dave).run().status, 201 | 202));
    site.extra_env.push(("PIGGYBACK_ALLOWED_ORIGINS".into(), "https://app.example.org".into()));
    let allowed = note(&site).var("HTTP_ORIGIN", "https://app.example.org").var("HTTP_SEC_FETCH_SITE", "cross-site");
    assert!(matches!(allowed.cookie(&dave).run().status, 201 | 202));
    let plain = note(&site);
    assert!(matches!(plain.cookie(&dave).run().status, 201 | 202), "curl and scripts pass");
    let check = site.piggyback(&["check"]);
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stderr));
}

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
