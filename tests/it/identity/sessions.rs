//! Sessions: their cookies on https, revocation, tags; each attack shown refused.

use super::*;
use crate::support::{Program, Response, Site};
use piggyback::identity::{Claims, CookieName, Key};
use piggyback::message_store::Store;
use piggyback::model::now;
use serde_json::json;

fn cookie_of<'a>(r: &'a Response, name: &str) -> &'a str {
    let set = r.header("Set-Cookie").expect("Set-Cookie");
    set.split(';').next().unwrap().strip_prefix(&format!("{name}=")).unwrap_or_else(|| panic!("{name} in {set}"))
}

// ---- 7. sessions that end --------------------------------------------------------------

fn logged_in(site: &Site) -> String {
    let r = site.bare(Program::Session).post("", json!({"name": "dave", "password": PASSWORD})).run();
    assert_eq!(r.status, 200);
    cookie_of(&r, "pb_session").to_owned()
}

fn works(site: &Site, cookie: &str) -> bool {
    let r = site.bare(Program::Profile).cookie(cookie).run();
    assert!(matches!(r.status, 200 | 401), "{}", r.json);
    r.status == 200
}

// ---- 8. planted cookies -------------------------------------------------------------

#[test]
fn on_https_the_cookie_is_host_only_and_a_planted_one_neither_overrides_nor_logs_in() {
    let site = site_with_dave();
    let https = |program: Program| site.bare(program).var("HTTPS", "on").var("SERVER_PORT", "443");
    let r = https(Program::Session).post("", json!({"name": "dave", "password": PASSWORD})).run();
    assert_eq!(r.status, 200);
    let daves = cookie_of(&r, "__Host-pb_session").to_owned();
    // The attacker, erin, logs in at the site too and plants her own value on the
    // parent domain from a sibling subdomain, under the only name it can set.
    let key = Key::load(site.secret()).unwrap();
    let erin = Store::open(&site.db).unwrap().user_by_name(&crate::support::uname("erin")).unwrap().unwrap();
    let claims = Claims { user: erin.id, generation: Some(0), session: None, expires: now() + 3600, binding: None };
    let erins_host_value = key.mint(&claims, CookieName::Host);

    // Beside the victim's own cookie the planted one is ignored: no lasting 401.
    let both = format!("pb_session={erins_host_value}; __Host-pb_session={daves}");
    let r = https(Program::Profile).var("HTTP_COOKIE", &both).run();
    assert_eq!((r.status, &r.json["profile"]["name"]), (200, &json!("dave")), "{}", r.json);
    let r = https(Program::Session).var("HTTP_COOKIE", &both).run();
    assert_eq!(r.json["session"]["name"], "dave");

    // A logged-out victim with only the planted cookie is not logged in as erin: a
    // value minted for `__Host-pb_session` is forged under `pb_session`.
    let r = https(Program::Profile).var("HTTP_COOKIE", &format!("pb_session={erins_host_value}")).run();
    assert_eq!((r.status, r.error_code()), (401, "invalid_session"));

    // The old name still works during the transition, for values minted for it.
    let old = site.token("dave");
    let r = https(Program::Profile).var("HTTP_COOKIE", &format!("pb_session={old}")).run();
    assert_eq!((r.status, &r.json["profile"]["name"]), (200, &json!("dave")));

    // Logging out on https clears both names.
    let r = https(Program::Session).delete("").var("HTTP_COOKIE", &both).run();
    let cleared: Vec<&str> =
        r.headers.iter().filter(|(n, _)| n == "Set-Cookie").map(|(_, v)| v.split('=').next().unwrap()).collect();
    assert_eq!(cleared, ["__Host-pb_session", "pb_session"]);
}

#[test]
fn an_upper_case_session_tag_is_refused() {
    let site = site_with_dave();
    let token = site.token("dave");
    let (payload, tag) = token.rsplit_once('.').unwrap();
    let upper = format!("{payload}.{}", tag.to_ascii_uppercase());
    assert_eq!(site.bare(Program::Profile).cookie(&token).run().status, 200);
    let r = site.bare(Program::Profile).cookie(&upper).run();
    assert_eq!((r.status, r.error_code()), (401, "invalid_session"));
}

#[test]
fn get_session_reports_the_expiry_of_the_cookie_that_is_valid() {
    let site = site_with_dave();
    let key = Key::load(site.secret()).unwrap();
    let dave = Store::open(&site.db).unwrap().user_by_name(&crate::support::uname("dave")).unwrap().unwrap();
    let stale = key.sign(dave.id, now() - 10);
    let valid_until = now() + 3600;
    let valid = key.sign(dave.id, valid_until);
    let r = site.bare(Program::Session).var("HTTP_COOKIE", &format!("pb_session={stale}; pb_session={valid}")).run();
    assert_eq!(r.status, 200);
    assert_eq!(r.json["session"]["expires_at"], json!(piggyback::text::rfc3339(valid_until)));
}

#[test]
fn a_captured_cookie_stops_working_after_logout_and_after_passwd() {
    let site = site_with_dave();
    let phone = logged_in(&site);
    let laptop = logged_in(&site);
    let captured = phone.clone();
    assert!(works(&site, &captured));
    let r = site.bare(Program::Session).post_empty("/logout").cookie(&phone).run();
    assert_eq!(r.status, 200);
    assert!(!works(&site, &captured), "the logged-out session is over, copies included");
    assert!(works(&site, &laptop), "another session of the same user stands");

    site.piggyback_ok_with_input(&["passwd", "dave"], "a new password entirely\n");
    assert!(!works(&site, &laptop), "a new password ends every session");
    let r = site.bare(Program::Session).post("", json!({"name": "dave", "password": "a new password entirely"})).run();
    assert_eq!(r.status, 200);
}

#[test]
fn logout_everywhere_and_the_admin_revocation_end_every_session() {
    let site = site_with_dave();
    let (a, b) = (logged_in(&site), logged_in(&site));
    let token = site.token("dave");
    let r = site.bare(Program::Session).post_empty("/logout-all").cookie(&a).run();
    assert_eq!((r.status, &r.json), (200, &json!({"session": null})));
    for c in [&a, &b, &token] {
        assert!(!works(&site, c));
    }
    let r = site.bare(Program::Session).post_empty("/logout-all").run();
    assert_eq!(r.status, 401, "nobody to log out");

    let c = logged_in(&site);
    assert!(works(&site, &c));
    site.piggyback_ok(&["user", "revoke", "dave"]);
    assert!(!works(&site, &c));
    let out = site.piggyback(&["user", "revoke", "nobody"]);
    assert_eq!(out.status.code(), Some(1));
}
