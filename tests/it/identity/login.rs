//! Login, logout, cookies and the password commands, through the real programs.

use super::*;
use crate::support::{Cgi, Program, Response, Site};
use piggyback::identity::Key;
use piggyback::message_store::Store;
use piggyback::model::{UserId, now};
use serde_json::{Value, json};
use std::os::unix::ffi::OsStringExt;

fn login(site: &Site, name: &str, password: &str) -> Response {
    site.bare(Program::Session).post("", json!({"name": name, "password": password})).run()
}

#[test]
fn login_sets_a_working_cookie_and_announces_messages() {
    let site = site_with_dave();
    site.deliver("erin", "dave", "welcome");
    let r = login(&site, "dave", PASSWORD);
    assert_eq!(r.status, 200, "{:?}", r.json);
    let set = r.header("Set-Cookie").unwrap();
    let attrs: Vec<&str> = set.split("; ").collect();
    assert!(attrs[0].starts_with("pb_session=v2."), "{set}");
    for want in ["Path=/", "Max-Age=604800", "HttpOnly", "SameSite=Lax"] {
        assert!(attrs.contains(&want), "{want} in {set}");
    }
    assert!(!attrs.contains(&"Secure"), "no Secure over plain HTTP: {set}");
    assert_eq!(r.json["session"]["name"], "dave");
    assert_eq!(r.json["session"]["via"], "cookie");
    assert!(r.json["session"]["expires_at"].as_str().unwrap().ends_with('Z'));
    // The login answer already carries the new user's messages.
    assert_eq!(r.json["site_messages"]["new"], 1, "{:?}", r.json);
    assert_eq!(r.json["site_messages"]["items"][0]["subject"], "welcome");

    let cookie = r.session_cookie();
    let who = site.bare(Program::Session).cookie(cookie).run();
    assert_eq!((who.status, who.json["session"]["name"].as_str()), (200, Some("dave")));
    assert_eq!(who.json["session"]["expires_at"], r.json["session"]["expires_at"]);
    let mine = site.bare(Program::Messages).cookie(cookie).run();
    assert_eq!(mine.status, 200);
    assert_eq!(mine.json["messages"][0]["subject"], "welcome");
}

#[test]
fn secure_over_https_and_ttl_from_the_environment() {
    let mut site = site_with_dave();
    site.extra_env.push(("PIGGYBACK_SESSION_TTL".into(), "2h".into()));
    let r = site
        .bare(Program::Session)
        .post("", json!({"name": "dave", "password": PASSWORD}))
        .var("HTTPS", "on")
        .var("SERVER_PORT", "443")
        .run();
    assert_eq!(r.status, 200);
    let set = r.header("Set-Cookie").unwrap();
    assert!(set.split("; ").any(|a| a == "Secure"), "{set}");
    assert!(set.split("; ").any(|a| a == "Max-Age=7200"), "{set}");
    let out = site.bare(Program::Session).delete("").var("HTTPS", "on").run();
    assert!(out.header("Set-Cookie").unwrap().ends_with("; Secure"));
}

#[test]
fn nobody_logged_in_is_a_null_session() {
    let site = site_with_dave();
    let r = site.bare(Program::Session).run();
    assert_eq!((r.status, &r.json), (200, &json!({"session": null})));
    let r = site.bare(Program::Session).path("/nowhere").run();
    assert_eq!(r.status, 404);
    let r = site.bare(Program::Session).method("PUT").run();
    assert_eq!((r.status, r.header("Allow")), (405, Some("GET, HEAD, POST, DELETE")));
}

#[test]
fn a_wrong_name_and_a_wrong_password_get_the_same_answer() {
    let site = site_with_dave();
    let wrong_password = login(&site, "dave", "not the password");
    let wrong_name = login(&site, "nobody", "not the password");
    let no_password = login(&site, "erin", "not the password");
    for r in [&wrong_name, &no_password] {
        assert_eq!((r.status, &r.json), (wrong_password.status, &wrong_password.json));
    }
    // A name no user can have is refused by the public rule (docs/API.md "User
    // names"), before any count or verification: that tells nothing about who exists.
    let not_a_name = login(&site, "Not A Name!", "not the password");
    assert_eq!((not_a_name.status, not_a_name.error_code()), (400, "invalid_name"));
    assert!(not_a_name.header("Set-Cookie").is_none());
    assert_eq!(wrong_password.status, 401);
    assert_eq!(wrong_password.error_code(), "bad_credentials");
    assert!(wrong_password.header("Set-Cookie").is_none());
    assert!(wrong_password.json.get("site_messages").is_none());

    // The same time: both run exactly one argon2 verification with the same parameters
    // (password::tests::the_dummy_uses_the_same_parameters_as_real_hashes); the timing
    // itself is measured by scripts/bench, never asserted in a test on a shared machine.
}

#[test]
fn logout_clears_the_cookie_and_announces_nothing() {
    let site = site_with_dave();
    let cookie = login(&site, "dave", PASSWORD).session_cookie().to_owned();
    site.deliver("erin", "dave", "after login");
    for req in [site.bare(Program::Session).post_empty("/logout"), site.bare(Program::Session).delete("")] {
        let r = req.cookie(&cookie).run();
        assert_eq!((r.status, &r.json), (200, &json!({"session": null})));
        assert_eq!(r.header("Set-Cookie"), Some("pb_session=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax"));
    }
    let store = Store::open(&site.db).unwrap();
    let dave = store.user_by_name(&crate::support::uname("dave")).unwrap().unwrap();
    assert_eq!(store.counters(dave.id).unwrap().new, 1, "the logout answers did not announce the message");
    let r = site.bare(Program::Session).path("/logout").cookie(&cookie).run();
    assert_eq!(r.status, 405);
}

#[test]
fn forged_expired_and_malformed_cookies_are_401_and_login_still_works_over_them() {
    let site = site_with_dave();
    let good = site.token("dave");
    let key = Key::load(site.secret()).unwrap();
    let dave = Store::open(&site.db).unwrap().user_by_name(&crate::support::uname("dave")).unwrap().unwrap();
    let expired = key.sign(dave.id, now() - 10);
    let other_key = Key::new(vec![b'k'; 32]).unwrap().sign(dave.id, now() + 3600);
    let tampered = good.replacen("v2.1.", "v2.2.", 1);
    assert_ne!(tampered, good);
    let ghost = key.sign(UserId(999), now() + 3600);
    for (what, cookie) in [
        ("expired", expired.as_str()),
        ("other key", &other_key),
        ("tampered", &tampered),
        ("no user", &ghost),
        ("garbage", "v1.x.y.z"),
    ] {
        for program in [Program::Messages, Program::Profile, Program::Friends, Program::Posts] {
            let r = site.bare(program).cookie(cookie).run();
            assert_eq!(r.status, 401, "{what} on {}", program.name());
            assert!(r.json.get("site_messages").is_none());
        }
        let r = site.bare(Program::Session).cookie(cookie).run();
        assert_eq!(r.status, 401, "{what} on session");
        assert!(r.header("Set-Cookie").unwrap().contains("Max-Age=0"), "{what}: the bad cookie is dropped");
        let r =
            site.bare(Program::Session).post("", json!({"name": "dave", "password": PASSWORD})).cookie(cookie).run();
        assert_eq!(r.status, 200, "{what}: logging in over a bad cookie works");
    }
    assert_eq!(site.bare(Program::Messages).cookie(&good).run().status, 200);
}

#[test]
fn a_stale_cookie_does_not_hide_a_valid_one_and_two_users_cookies_are_refused() {
    let site = site_with_dave();
    let dave = site.token("dave");
    let erin = site.token("erin");
    let key = Key::load(site.secret()).unwrap();
    let daves_id = Store::open(&site.db).unwrap().user_by_name(&crate::support::uname("dave")).unwrap().unwrap().id;
    let stale = key.sign(daves_id, now() - 10);
    let r = site.bare(Program::Profile).cookie(&format!("{stale}; pb_session={dave}")).run();
    assert_eq!((r.status, &r.json["profile"]["name"]), (200, &json!("dave")));
    // A cookie planted by a sibling subdomain comes first, naming another user.
    let r = site.bare(Program::Profile).cookie(&format!("{erin}; pb_session={dave}")).run();
    assert_eq!((r.status, r.error_code()), (401, "ambiguous_session"));
    assert!(r.json.get("site_messages").is_none());
}

#[test]
fn remote_user_wins_over_the_cookie() {
    let site = site_with_dave();
    site.deliver("dave", "erin", "for erin");
    let daves = site.token("dave");
    let r = site.bare(Program::Session).cookie(&daves).user("erin").run();
    assert_eq!(
        r.json["session"],
        json!({"name": "erin", "display_name": "erin", "via": "remote_user", "expires_at": null})
    );
    let r = site.bare(Program::Messages).cookie(&daves).user("erin").run();
    assert_eq!(r.json["messages"][0]["subject"], "for erin");
    let r = site.bare(Program::Messages).cookie(&daves).user("mallory").run();
    assert_eq!((r.status, r.error_code()), (401, "unknown_user"), "an unknown REMOTE_USER never falls back");
}

#[test]
fn a_login_without_a_key_is_a_500_naming_nothing_secret() {
    let site = site_with_dave();
    std::fs::remove_file(site.secret()).unwrap();
    let r = login(&site, "dave", PASSWORD);
    assert_eq!((r.status, r.error_code()), (500, "misconfigured"));
}

#[test]
fn password_commands() {
    let site = Site::keyed(&[]);
    let out = site.piggyback_with_input(&["user", "add", "fay", "--password-stdin"], "short\n");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("at least 8"));
    assert!(
        Store::open(&site.db).unwrap().user_by_name(&crate::support::uname("fay")).unwrap().is_none(),
        "no user without a usable password"
    );

    let id = site.piggyback_ok_with_input(
        &["user", "add", "fay", "--display-name", "Fay F.", "--password-stdin"],
        "first password\r\n",
    );
    assert_eq!(id.trim(), "1");
    let (_, hash) = Store::open(&site.db).unwrap().password_hash(&crate::support::uname("fay")).unwrap().unwrap();
    assert!(hash.unwrap().starts_with("$argon2id$v=19$"), "a PHC argon2id string");
    assert_eq!(login(&site, "fay", "first password").status, 200, "the line end is not part of the password");

    site.piggyback_ok_with_input(&["passwd", "fay"], "second password\n");
    assert_eq!(login(&site, "fay", "first password").status, 401);
    let r = login(&site, "fay", "second password");
    assert_eq!((r.status, &r.json["session"]["display_name"]), (200, &Value::from("Fay F.")));

    let out = site.piggyback_with_input(&["passwd", "nobody"], "some password\n");
    assert_eq!(out.status.code(), Some(1));
    let out = site.piggyback_with_input(&["passwd", "fay"], "");
    assert_eq!(out.status.code(), Some(1), "an empty standard input sets nothing");
    assert_eq!(login(&site, "fay", "second password").status, 200);
    let out = site.piggyback(&["passwd"]);
    assert_eq!(out.status.code(), Some(2), "wrong usage");
}

#[test]
fn another_applications_cookie_of_arbitrary_bytes_does_not_lock_the_user_out() {
    let site = site_with_dave();
    let dave = site.token("dave");
    let cookie = std::ffi::OsString::from_vec([b"other=\xff\xfe; pb_session=".as_slice(), dave.as_bytes()].concat());
    let r = Cgi::bare(Program::Profile)
        .var_os("PIGGYBACK_DB", &site.db)
        .var_os("PIGGYBACK_SPOOL", site.spool())
        .var_os("PIGGYBACK_SECRET_FILE", site.secret())
        .var_os("HTTP_COOKIE", cookie)
        .run();
    assert_eq!((r.status, &r.json["profile"]["name"]), (200, &json!("dave")));
}
