//! Every message announced exactly once, then counted as delivered; acknowledgements.

use crate::support::{message_site, store_message, three_users};

use crate::support::{Program, Response};
use serde_json::json;

fn ids(r: &Response) -> Vec<i64> {
    r.announced()
}

/// `X-Piggyback-Ack: shown=N,M` names the batches shown: a batch whose answer was lost
/// stays unacknowledged even when a later one is acknowledged, and is announced again
/// after the lease (docs/API.md, *Acknowledgements*). A malformed list is `400 bad_ack`.
#[test]
fn acknowledging_by_name_leaves_a_lost_batch_to_announce_again() {
    let (site, lost) = message_site();
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

// ---- site_messages -------------------------------------------------------------

#[test]
fn every_program_carries_site_messages_on_success_and_on_4xx_but_not_on_401() {
    let site_process = three_users();
    for program in Program::ALL {
        let ok = site_process.get(program, "alice", "");
        ok.assert_status(200);
        assert_eq!(ok.counts(), (0, 0, 0), "{}", program.name());

        let not_found = site_process.get(program, "alice", "/no/such/thing");
        not_found.assert_status(404);
        assert!(not_found.has_site_messages(), "{}", program.name());

        let not_allowed = site_process.cgi(program).user("alice").method("PATCH").run();
        not_allowed.assert_status(405);
        assert!(not_allowed.has_site_messages(), "{}", program.name());

        let bad = site_process.cgi(program).user("alice").method("POST").body("application/json", b"{").run();
        bad.assert_status(400);
        assert!(bad.has_site_messages(), "{}", program.name());

        let anonymous = site_process.cgi(program).run();
        anonymous.assert_status(401);
        assert!(!anonymous.has_site_messages(), "{}", program.name());
        assert_eq!(anonymous.error_code(), "unauthorized");
    }
}

#[test]
fn a_message_is_announced_once_then_counted_as_delivered() {
    let site_process = three_users();
    let id = site_process.send("bob", "alice", "Lunch?", "Are you free at noon?");
    assert_eq!(site_process.counters("alice"), (1, 0));

    let first = site_process.get(Program::Profile, "alice", "");
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
    assert_eq!(site_process.state(id), "delivered");

    for program in Program::ALL {
        let next = site_process.get(program, "alice", "");
        assert_eq!(next.counts(), (1, 1, 0), "{}", program.name());
        assert!(ids(&next).is_empty());
        assert_eq!(next.site()["more"], false);
    }
    assert_eq!(site_process.counters("alice"), (0, 1));
    // bob's own mailbox was never touched.
    assert_eq!(site_process.get(Program::Profile, "bob", "").counts(), (0, 0, 0));
    site_process.assert_check_passes();
}

#[test]
fn empty_omit_leaves_the_member_out_only_while_nothing_is_unread() {
    let site_process = three_users();
    let omit = |path: &str| site_process.cgi(Program::Posts).user("alice").var("PIGGYBACK_EMPTY", "omit").path(path);
    let r = omit("").run();
    r.assert_status(200);
    assert!(!r.has_site_messages());
    assert!(r.json.get("posts").is_some());

    let id = site_process.send("bob", "alice", "s", "b");
    let r = omit("").run();
    assert_eq!(r.counts(), (1, 0, 1));
    assert_eq!(ids(&r), vec![id]);
    let r = omit("").run();
    assert_eq!(r.counts(), (1, 1, 0));

    // Once read, nothing is unread: the response to the read already leaves it out.
    let r = site_process
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
    assert_eq!(site_process.get(Program::Posts, "alice", "").counts(), (0, 0, 0));
}

#[test]
fn max_items_caps_the_summaries_and_more_says_so() {
    let site_process = three_users();
    let sent: Vec<i64> = (0..5).map(|i| site_process.send("bob", "alice", &format!("m{i}"), "x")).collect();
    let r = site_process.cgi(Program::Friends).user("alice").var("PIGGYBACK_MAX_ITEMS", "2").run();
    assert_eq!(r.counts(), (5, 0, 5));
    assert_eq!(ids(&r), vec![sent[4], sent[3]], "the newest first");
    assert_eq!(r.site()["more"], true);
    // All five were announced by that response, the three without items included.
    assert!(site_process.ids_in_state("new").is_empty());

    let r = site_process.cgi(Program::Friends).user("alice").var("PIGGYBACK_MAX_ITEMS", "2").run();
    assert_eq!(r.counts(), (5, 5, 0));
    assert_eq!(r.site()["more"], false);

    site_process.send("carol", "alice", "one more", "x");
    let r = site_process.cgi(Program::Friends).user("alice").var("PIGGYBACK_MAX_ITEMS", "2").run();
    assert_eq!(r.counts(), (6, 5, 1));
    assert_eq!(r.site()["more"], false);
    site_process.assert_check_passes();
}

#[test]
fn chinese_snippets_are_cut_at_character_boundaries() {
    let site_process = three_users();
    let long = site_process.send("bob", "alice", "午饭", "明天中午一起吃饭吗？我们在老地方见");
    let exact = site_process.send("bob", "alice", "五个字", "一二三四五");
    let emoji = site_process.send("bob", "alice", "😀", "ab😀cd😀ef");
    let r = site_process.cgi(Program::Profile).user("alice").var("PIGGYBACK_SNIPPET_CHARS", "5").run();
    let items = r.site()["items"].as_array().unwrap();
    let snippet = |id: i64| items.iter().find(|i| i["id"] == id).unwrap()["snippet"].as_str().unwrap().to_string();
    assert_eq!(snippet(long), "明天中午一…");
    assert_eq!(snippet(exact), "一二三四五");
    assert_eq!(snippet(emoji), "ab😀cd…");
    let subject = items.iter().find(|i| i["id"] == long).unwrap()["subject"].clone();
    assert_eq!(subject, "午饭");

    // The mailbox listing cuts the same way.
    let r = site_process.cgi(Program::Messages).user("alice").var("PIGGYBACK_SNIPPET_CHARS", "5").run();
    let listed = r.json["messages"].as_array().unwrap();
    assert_eq!(listed.iter().find(|m| m["id"] == long).unwrap()["snippet"], "明天中午一…");
}

#[test]
fn a_message_sent_through_the_cgi_is_announced_to_its_recipient() {
    let site_process = three_users();
    let r = site_process.post(Program::Messages, "alice", "", json!({"to": "bob", "subject": "你好", "body": "世界"}));
    r.assert_status(201);
    assert_eq!(r.json["sent"]["to"], "bob");
    assert_eq!(r.counts(), (0, 0, 0), "the sender is not notified");
    let r = site_process.get(Program::Posts, "bob", "");
    assert_eq!(r.counts(), (1, 0, 1));
    let item = &r.site()["items"][0];
    assert_eq!(
        (item["from"].as_str(), item["subject"].as_str(), item["snippet"].as_str()),
        (Some("alice"), Some("你好"), Some("世界"))
    );

    let r = site_process.post(Program::Messages, "alice", "", json!({"to": "nobody", "subject": "s", "body": "b"}));
    r.assert_status(404);
    assert_eq!(r.error_code(), "user_not_found");
    let r = site_process.post(Program::Messages, "alice", "", json!({"to": "bob", "subject": " ", "body": "b"}));
    r.assert_status(400);
    site_process.assert_check_passes();
}

#[test]
fn an_unacknowledged_announcement_is_made_again_to_an_acknowledging_client() {
    let site_process = three_users();
    let id = site_process.send("bob", "alice", "hi", "there");
    let get = |ack: Option<&str>| {
        let cgi = site_process.cgi(Program::Profile).user("alice").var("PIGGYBACK_ACK_LEASE", "5");
        match ack {
            Some(ack) => cgi.var("HTTP_X_PIGGYBACK_ACK", ack).run(),
            None => cgi.run(),
        }
    };
    let age = || site_process.conn().exec("UPDATE mailbox SET announced_at = announced_at - 60");
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
    site_process.piggyback_ok(&["check"]);
}
