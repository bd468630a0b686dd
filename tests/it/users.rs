//! User names and the user admin commands.

use crate::support::{Program, Site};
use serde_json::{Value, json};

/// A request file waiting in the spool: a send from `from` to `to`.
fn spooled_send(site: &Site, from: &str, to: &str) {
    use piggyback::model::{MessageKind, NewMessage, UserId};
    use piggyback::msq::spool::{FileRequest, Spool};
    let message = NewMessage {
        request_id: piggyback::msq::new_request_id(),
        from: UserId(site.id_of(from)),
        to: UserId(site.id_of(to)),
        subject: format!("spooled from {from}"),
        body: "waiting in the spool".into(),
        kind: MessageKind::Note,
        idempotency_key: None,
        sent_at: piggyback::model::now(),
    };
    Spool::new(site.spool()).enqueue(&FileRequest::Send(message)).unwrap();
}

#[test]
fn an_email_address_is_a_user_name_everywhere() {
    let site = Site::keyed(&["bob"]);
    let id = site.add_user("ann.lee+site@example.com");
    // The command docs/INTEGRATE.md shows.
    site.piggyback_ok(&["user", "add", "ann@example.com"]);
    site.deliver("bob", "ann.lee+site@example.com", "to an address");
    let r = site.get(Program::Messages, "ann.lee+site@example.com", "");
    r.assert_status(200);
    assert_eq!(r.announced().len(), 1, "{}", r.json);
    let token = site.token("ann.lee+site@example.com");
    let r = site.cgi(Program::Session).cookie(&token).run();
    assert_eq!(r.json["session"]["name"], "ann.lee+site@example.com");
    let r = site.cgi(Program::Profile).cookie(&token).path("?user=bob").run();
    r.assert_status(200);
    assert!(id > 0);
    // One canonical form: the uppercase address is the same user, as a new name and
    // in REMOTE_USER.
    let out = site.piggyback(&["user", "add", "Ann@Example.com"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("user ann@example.com exists already"), "{out:?}");
    let r = site.get(Program::Messages, "Ann.Lee+site@Example.COM", "");
    r.assert_status(200);
    assert_eq!(r.json["site_messages"]["unread"], 1, "{}", r.json);
}

#[test]
fn user_list_and_user_show_print_ids_and_counts() {
    let site = Site::new(&["alice", "bob"]);
    let carol = site.add_user("carol@example.org");
    let list = site.piggyback_ok(&["user", "list"]);
    let lines: Vec<Vec<&str>> = list.lines().map(|l| l.split('\t').collect()).collect();
    assert_eq!(lines.len(), 3, "{list}");
    assert_eq!(lines[2], vec![carol.to_string().as_str(), "carol@example.org", "carol@example.org"]);
    assert_eq!(lines[0][1], "alice");
    site.deliver("bob", "alice", "one");
    site.deliver("bob", "alice", "two");
    let show = |name: &str| -> Value { serde_json::from_str(&site.piggyback_ok(&["user", "show", name])).unwrap() };
    let alice = show("alice");
    assert_eq!(
        (alice["new"].as_i64(), alice["delivered"].as_i64(), alice["unread"].as_i64()),
        (Some(2), Some(0), Some(2))
    );
    assert_eq!(alice["id"].as_i64(), lines[0][0].parse().ok());
    assert!(alice["joined_at"].as_str().unwrap().ends_with('Z'), "{alice}");
    site.get(Program::Profile, "alice", "");
    let alice = show("alice");
    assert_eq!((alice["new"].as_i64(), alice["delivered"].as_i64()), (Some(0), Some(2)), "announced: {alice}");
    assert_eq!(show("bob")["sent"], 2);
    let out = site.piggyback(&["user", "show", "nobody"]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("no user named nobody"));
}

#[test]
fn a_renamed_user_keeps_messages_friends_and_sessions() {
    let site = Site::keyed(&["alice", "bob"]);
    site.deliver("bob", "alice", "before the rename");
    let token = site.token("alice");
    let out = site.piggyback_ok(&["user", "rename", "alice", "ann@example.com"]);
    assert_eq!(out.trim(), "renamed alice to ann@example.com");
    let r = site.cgi(Program::Messages).cookie(&token).run();
    r.assert_status(200);
    assert_eq!(r.announced().len(), 1, "the message followed: {}", r.json);
    let r = site.cgi(Program::Session).cookie(&token).run();
    assert_eq!(r.json["session"]["name"], "ann@example.com");
    let r = site.get(Program::Messages, "alice", "");
    assert_eq!((r.status, r.error_code()), (401, "unknown_user"), "the old name names nobody");
    site.get(Program::Messages, "ann@example.com", "").assert_status(200);
    let before = site.snapshot();
    for (args, why) in [
        (["user", "rename", "ann@example.com", "bob"], "exists already"),
        (["user", "rename", "nobody", "carol"], "no user named nobody"),
        (["user", "rename", "bob", "b\u{43e}b"], "mixes letters of different scripts"),
        (["user", "rename", "bob", "a\u{200b}b"], "U+200B, an invisible format character"),
    ] {
        let out = site.piggyback(&args);
        assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains(why), "{args:?}: {out:?}");
    }
    assert_eq!(site.snapshot(), before, "a refused rename changes nothing");
}

#[test]
fn unicode_names_are_one_user_in_every_form_they_arrive_in() {
    let site = Site::keyed(&["bob"]);
    // Added decomposed and capitalised: stored composed and lowercase.
    let id = site.add_user_with_password("Jose\u{301}", "a long enough password");
    let list = site.piggyback_ok(&["user", "list"]);
    assert!(list.lines().any(|l| l.starts_with(&format!("{id}\tjos\u{e9}\t"))), "{list}");
    // REMOTE_USER composed and uppercase, an API body decomposed, a login in capitals.
    site.deliver("bob", "JOS\u{c9}", "to josé");
    let r = site.get(Program::Messages, "JOS\u{c9}", "");
    r.assert_status(200);
    assert_eq!(r.announced().len(), 1, "{}", r.json);
    let r = site.post(Program::Messages, "bob", "", json!({"to": "jose\u{301}", "subject": "s", "body": "b"}));
    assert_eq!((r.status, r.json["sent"]["to"].as_str()), (201, Some("jos\u{e9}")), "{}", r.json);
    let r = site
        .bare(Program::Session)
        .post("", json!({"name": "JOSE\u{301}", "password": "a long enough password"}))
        .run();
    assert_eq!((r.status, r.json["session"]["name"].as_str()), (200, Some("jos\u{e9}")), "{}", r.json);
    // Scripts people write names in.
    for name in ["tanaka_太郎", "иван", "δοκιμή", "o'brien", "josé@correo.es"] {
        site.add_user(name);
        site.get(Program::Profile, name, "").assert_status(200);
    }
}

#[test]
fn refused_names_get_a_clear_error_and_change_nothing() {
    let site = Site::new(&["alice", "bob"]);
    let before = site.snapshot();
    for (name, why) in [
        ("p\u{430}ypal", "mixes letters of different scripts"),
        ("\u{202e}ecila", "U+202E, an invisible format character"),
        ("al\u{200b}ice", "U+200B, an invisible format character"),
        ("al\u{200d}ice", "U+200D"),
        ("al ice", "U+0020, a space"),
        ("al\u{7}ice", "U+0007, a control character"),
        ("a\u{50000}", "an unassigned code point"),
        ("ﬁle", "U+FB01"),
        ("alice@localhost", "not an e-mail address"),
        ("", "empty"),
    ] {
        let out = site.piggyback(&["user", "add", name]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{name:?}: {stderr}");
        assert!(stderr.contains(why) && stderr.lines().count() == 1, "{name:?}: {stderr}");
        let r = site.post(Program::Messages, "alice", "", json!({"to": name, "subject": "s", "body": "b"}));
        assert_eq!((r.status, r.error_code()), (400, "invalid_name"), "{name:?}: {}", r.json);
        assert!(r.json["error"]["message"].as_str().unwrap().contains(why), "{name:?}: {}", r.json);
        let r = site.post(Program::Friends, "alice", "", json!({"action": "request", "user": name}));
        assert_eq!((r.status, r.error_code()), (400, "invalid_name"), "{name:?}: {}", r.json);
        assert!(r.has_site_messages(), "an identified 400 still carries site_messages");
    }
    // REMOTE_USER that no user can have identifies nobody.
    let r = site.get(Program::Messages, "p\u{430}ypal", "");
    assert_eq!((r.status, r.error_code()), (401, "unknown_user"), "{}", r.json);
    assert_eq!(site.snapshot(), before, "a refused name changes nothing");
}

#[test]
fn a_new_name_that_looks_like_an_existing_one_is_refused() {
    let site = Site::new(&["alice", "bob", "paypal", "scope", "dave"]);
    let before = site.snapshot();
    for (name, existing) in [
        ("a1ice", "alice"),
        ("b0b", "bob"),
        // All Cyrillic (р а у р а ӏ; ѕ с о р е): one script each, so only the skeleton
        // tells them from the Latin names.
        ("\u{440}\u{430}\u{443}\u{440}\u{430}\u{4cf}", "paypal"),
        ("\u{455}\u{441}\u{43e}\u{440}\u{435}", "scope"),
    ] {
        let out = site.piggyback(&["user", "add", name]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(&format!("looks like the existing user {existing}")), "{name}: {stderr}");
        let out = site.piggyback(&["user", "rename", "dave", name]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(&format!("looks like the existing user {existing}")), "{name}: {stderr}");
    }
    assert_eq!(site.snapshot(), before, "a refused name changes nothing");
    // A user may take a name that looks like their own.
    site.piggyback_ok(&["user", "rename", "alice", "a1ice"]);
    site.get(Program::Profile, "a1ice", "").assert_status(200);
}

#[test]
fn init_gives_existing_users_skeletons_and_keeps_look_alikes_that_already_exist() {
    let site = Site::new(&["bob1", "carol"]);
    let conn = site.conn();
    // Back to schema version 2, as a database of the previous release.
    if site.is_postgres() {
        conn.exec(
            "DROP INDEX users_by_skeleton; ALTER TABLE users DROP COLUMN skeleton, DROP COLUMN removed_at;
             UPDATE piggyback_schema SET version = 2;",
        );
    } else {
        conn.exec(
            "DROP INDEX users_by_skeleton; ALTER TABLE users DROP COLUMN skeleton;
             ALTER TABLE users DROP COLUMN removed_at; PRAGMA user_version = 2;",
        );
    }
    // A look-alike the old release let in.
    conn.exec(
        "INSERT INTO users (name, display_name, joined_at) VALUES ('bobl', 'bobl', 0);
         INSERT INTO mailbox (user_id) SELECT id FROM users WHERE name = 'bobl';",
    );
    let r = site.get(Program::Profile, "carol", "");
    assert_eq!(r.status, 503, "an old schema is refused until init: {}", r.json);
    site.piggyback_ok(&["init"]);
    let skeletons = conn.column("SELECT coalesce(skeleton, 'NULL') FROM users ORDER BY id");
    assert_eq!(skeletons, vec!["bobl", "carol", "NULL"], "the older look-alike holds the skeleton");
    // Both look-alikes keep working; no new name can take their look.
    for name in ["bob1", "bobl", "carol"] {
        site.get(Program::Profile, name, "").assert_status(200);
    }
    let out = site.piggyback(&["user", "add", "b0bl"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("looks like the existing user bob1"), "{out:?}");
    site.assert_check_passes();
}

#[test]
fn user_remove_does_what_docs_api_says_to_everything_of_theirs() {
    let site = Site::keyed(&["alice", "bob", "carol", "dave"]);
    let alice_id = site.id_of("alice");
    let token = site.token("alice");
    site.cgi(Program::Session).cookie(&token).run().assert_status(200);
    // Friends with bob, a request to carol, one from dave.
    site.post(Program::Friends, "alice", "", json!({"action": "request", "user": "bob"})).assert_status(200);
    site.post(Program::Friends, "bob", "", json!({"action": "accept", "user": "alice"})).assert_status(200);
    site.post(Program::Friends, "alice", "", json!({"action": "request", "user": "carol"})).assert_status(200);
    site.post(Program::Friends, "dave", "", json!({"action": "request", "user": "alice"})).assert_status(200);
    // Notices of those requests are messages too: announce everything so far.
    for user in ["alice", "bob", "carol", "dave"] {
        site.get(Program::Messages, user, "");
    }
    // A post of hers, and her comment on bob's post (whose notice to bob is not
    // announced yet).
    let post = site.post(Program::Posts, "bob", "", json!({"body": "bob's post"}));
    let post_id = post.json["post"]["id"].as_i64().unwrap();
    site.post(Program::Posts, "alice", &format!("/{post_id}/comments"), json!({"body": "alice's comment"}))
        .assert_status(201);
    site.post(Program::Posts, "alice", "", json!({"body": "alice's post"})).assert_status(201);
    // What alice sent: one announced to bob, one read by carol, one not announced yet.
    site.deliver("alice", "carol", "read by carol");
    site.post(Program::Messages, "carol", "/read-all", json!({})).assert_status(200);
    site.deliver("alice", "bob", "seen by bob");
    site.get(Program::Messages, "bob", "");
    site.deliver("alice", "bob", "not announced yet");
    site.post(Program::Posts, "alice", &format!("/{post_id}/comments"), json!({"body": "another comment"}))
        .assert_status(201);
    // What alice received: bob's acceptance and dave's request (notices), and a note.
    site.deliver("bob", "alice", "to alice");
    // Sends of hers and to her still in the spool.
    spooled_send(&site, "alice", "dave");
    spooled_send(&site, "dave", "alice");
    let (bob_new, bob_delivered) = site.counters("bob");
    assert_eq!(bob_new, 2, "the note and the comment's notice, not announced yet");

    let out = site.piggyback_ok(&["user", "remove", "Alice"]);
    let label = format!("removed user #{alice_id}");
    for line in [
        format!("removed alice (id {alice_id}); every session ended"),
        "deleted: 3 messages received, 2 unannounced messages sent (withdrawn)".to_owned(),
        "deleted: 1 friendships, 2 friend requests".to_owned(),
        format!("kept as from \"{label}\": 5 announced or read messages sent, 1 posts, 2 comments"),
        "the name alice is free again".to_owned(),
    ] {
        assert!(out.contains(&line), "{line:?} in {out}");
    }

    // The drain (before any request drains) drops the spooled sends from and to her,
    // with a line each, not an error that stalls the queue.
    let out = site.piggyback(&["drain"]);
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("set aside 0, dropped (user removed) 2"), "{stdout}");
    assert_eq!(String::from_utf8_lossy(&out.stderr).matches("has been removed").count(), 2, "{out:?}");
    let conn = site.conn();
    assert_eq!(conn.int("SELECT count(*) FROM messages WHERE subject LIKE 'spooled%'"), 0);
    assert!(std::fs::read_dir(site.spool().join("bad")).map_or(true, |mut d| d.next().is_none()));

    // Sessions died at once; REMOTE_USER alice names nobody.
    let r = site.cgi(Program::Session).cookie(&token).run();
    assert_eq!((r.status, r.error_code()), (401, "invalid_session"), "{}", r.json);
    let r = site.get(Program::Messages, "alice", "");
    assert_eq!((r.status, r.error_code()), (401, "unknown_user"));
    // Received: deleted. Unannounced: withdrawn, bob's counters recounted in the same
    // transaction. Announced or read: kept, from the label.
    assert_eq!(conn.int(&format!("SELECT count(*) FROM messages WHERE recipient_id = {alice_id}")), 0);
    assert_eq!(site.counters("bob"), (0, bob_delivered));
    let r = site.get(Program::Messages, "bob", "?state=all");
    let from: Vec<(&str, &str)> = r.json["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["from"].as_str().unwrap(), m["subject"].as_str().unwrap()))
        .collect();
    assert!(from.contains(&(label.as_str(), "seen by bob")), "{from:?}");
    assert!(!from.iter().any(|(_, s)| *s == "not announced yet"), "withdrawn: {from:?}");
    assert_eq!(r.counts().2, 0, "no toast from a removed account: {}", r.json);
    let r = site.get(Program::Messages, "carol", "?state=all");
    assert_eq!(r.json["messages"][0]["from"], label.as_str(), "{}", r.json);
    // Friendships and requests: gone both ways.
    for user in ["bob", "carol", "dave"] {
        let r = site.get(Program::Friends, user, "");
        assert_eq!(r.json["friends"].as_array().map(|f| f.len()), Some(0), "{user}: {}", r.json);
        assert_eq!(
            (r.json["incoming"].as_array().unwrap().len(), r.json["outgoing"].as_array().unwrap().len()),
            (0, 0)
        );
    }
    // Her comment stays, under the label.
    let r = site.get(Program::Posts, "bob", &format!("/{post_id}"));
    assert_eq!(r.json["post"]["comment_list"][0]["author"], label.as_str(), "{}", r.json);
    // No name can take the label; the name itself is free, for a new user.
    let out = site.piggyback(&["user", "add", &label]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("U+0020, a space"), "{out:?}");
    let list = site.piggyback_ok(&["user", "list"]);
    assert!(!list.contains("removed user") && !list.contains("alice"), "{list}");
    let new_id = site.add_user("alice");
    assert_ne!(new_id, alice_id, "ids are never reused");
    let r = site.get(Program::Messages, "alice", "?state=all");
    assert_eq!(r.json["messages"].as_array().map(|m| m.len()), Some(0), "nothing of the old alice: {}", r.json);
    let r = site.cgi(Program::Session).cookie(&token).run();
    assert_eq!(r.status, 401, "the old cookie does not name the new alice");
    site.assert_check_passes();
    // Removing again: there is no alice of that id any more.
    site.piggyback_ok(&["user", "remove", "alice"]);
    let out = site.piggyback(&["user", "remove", "alice"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("no user named alice"), "{out:?}");
}

#[test]
fn a_send_to_a_user_removed_meanwhile_is_not_stored() {
    let site = Site::new(&["alice", "bob"]);
    // A send admitted before the removal and applied after it (the spool's case for
    // a send of the API): dropped, and the sender's answer does not claim a message.
    spooled_send(&site, "alice", "bob");
    site.piggyback_ok(&["user", "remove", "bob"]);
    let r = site.get(Program::Messages, "alice", "");
    r.assert_status(200);
    assert_eq!(site.conn().int("SELECT count(*) FROM messages"), 0);
    let r = site.post(Program::Messages, "alice", "", json!({"to": "bob", "subject": "s", "body": "b"}));
    assert_eq!((r.status, r.error_code()), (404, "user_not_found"));
    site.assert_check_passes();
}
