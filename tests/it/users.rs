//! Accounts from the command line: e-mail addresses as user names (what a site whose
//! logins are e-mail addresses gets in `REMOTE_USER`), `user list` and `user show`.

use serde_json::Value;

use crate::support::{Program, Site};

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
    // Names are exact: the uppercase form is not a name, and names nobody.
    let out = site.piggyback(&["user", "add", "Ann@Example.com"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("e-mail address"), "{out:?}");
    let r = site.get(Program::Messages, "Ann.Lee+site@example.com", "");
    assert_eq!((r.status, r.error_code()), (401, "unknown_user"));
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
        (["user", "rename", "bob", "Bob"], "e-mail address"),
    ] {
        let out = site.piggyback(&args);
        assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains(why), "{args:?}: {out:?}");
    }
    assert_eq!(site.snapshot(), before, "a refused rename changes nothing");
}
