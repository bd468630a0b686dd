//! Authorization: user A walks every program, method and route against user B's
//! resources through the real CGI programs; each answer must be the one for a resource
//! that does not exist (404), and B's data must be untouched afterwards.

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
