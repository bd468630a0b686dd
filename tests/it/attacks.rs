//! Issue 11, the second security round: each attack reproduced as it was made against
//! the real programs, and shown refused. docs/SECURITY.md names each test.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::support::{Program, Response, Site, piggyback};
use piggyback::identity::{Claims, CookieName, Key};
use piggyback::message_store::{Store, now};
use serde_json::json;

const PASSWORD: &str = "correct horse battery";

/// A keyed site where dave has a password and erin none.
fn site_with_dave() -> Site {
    let site = Site::keyed(&[]);
    site.add_user_with_password("dave", PASSWORD);
    site.add_user("erin");
    site
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).permissions().mode() & 0o7777
}

fn cookie_of<'a>(r: &'a Response, name: &str) -> &'a str {
    let set = r.header("Set-Cookie").expect("Set-Cookie");
    set.split(';').next().unwrap().strip_prefix(&format!("{name}=")).unwrap_or_else(|| panic!("{name} in {set}"))
}

// ---- 2. one attacker behind a TLS proxy ------------------------------------------

/// A login through a proxy at 127.0.0.1 for the client `client`.
fn proxied_login(site: &Site, name: &str, password: &str, client: &str) -> Response {
    site.bare(Program::Session)
        .post("", json!({"name": name, "password": password}))
        .var("REMOTE_ADDR", "127.0.0.1")
        .var("HTTP_X_FORWARDED_FOR", client)
        .var("HTTP_X_FORWARDED_PROTO", "https")
        .run()
}

#[test]
fn behind_a_trusted_proxy_one_clients_failures_do_not_lock_out_the_others() {
    let mut site = site_with_dave();
    site.extra_env.push(("PIGGYBACK_TRUSTED_PROXIES".into(), "127.0.0.1/32, ::1".into()));
    // The attack: 20 bad logins over many names from one client behind the proxy.
    for i in 0..20 {
        assert_eq!(proxied_login(&site, &format!("user{i}"), "guess", "198.51.100.66").status, 401, "attempt {i}");
    }
    assert_eq!(proxied_login(&site, "dave", PASSWORD, "198.51.100.66").status, 429, "the attacker is held back");
    // Everybody else behind the same proxy still logs in, over https as the proxy says.
    let r = proxied_login(&site, "dave", PASSWORD, "203.0.113.5");
    assert_eq!(r.status, 200, "{}", r.json);
    let set = r.header("Set-Cookie").unwrap();
    assert!(set.starts_with("__Host-pb_session=v2."), "{set}");
    assert!(set.split("; ").any(|a| a == "Secure") && set.split("; ").any(|a| a == "Path=/"), "{set}");
    assert!(!set.contains("Domain"), "{set}");
    // A client cannot pick its own address by sending the header itself: the proxy
    // appends what it saw, and only the right-most untrusted entry counts.
    let r = proxied_login(&site, "dave", PASSWORD, "203.0.113.5, 198.51.100.66");
    assert_eq!(r.status, 429);
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
    let erin = Store::open(&site.db).unwrap().user_by_name("erin").unwrap().unwrap();
    let claims = Claims { user: erin.id, generation: Some(0), session: None, expires: now() + 3600 };
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

// ---- 3. file modes ---------------------------------------------------------------------

#[test]
fn init_and_the_programs_create_files_only_their_owner_can_read() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let db = dir.path().join("site.db");
    let secret = dir.path().join("secret");
    let env = [("PIGGYBACK_SECRET_FILE", secret.to_str().unwrap())];
    let args = |more: &[&'static str]| {
        let mut a = vec!["--db", db.to_str().unwrap()];
        a.extend_from_slice(more);
        a
    };
    assert!(piggyback(&args(&["init"]), &env).status.success());
    assert!(piggyback(&args(&["user", "add", "alice"]), &env).status.success());
    assert!(piggyback(&args(&["user", "add", "bob"]), &env).status.success());
    // A send through a CGI program writes the WAL (kept while another connection, as
    // msqd's would be, stays open).
    let held = rusqlite::Connection::open(&db).unwrap();
    held.query_row("SELECT count(*) FROM users", [], |r| r.get::<_, i64>(0)).unwrap();
    let r = crate::support::Cgi::new(Program::Messages, Some(&db))
        .var_os("PIGGYBACK_SECRET_FILE", &secret)
        .user("alice")
        .post("", json!({"to": "bob", "subject": "s", "body": "b"}))
        .run();
    assert_eq!(r.status, 201, "{}", r.json);
    assert_eq!(mode(&db), 0o600);
    assert_eq!(mode(&dir.path().join("site.db-wal")), 0o600);
    assert_eq!(mode(&dir.path().join("site.db-shm")), 0o600);
    drop(held);
    assert_eq!(mode(&secret), 0o600);
    for d in ["spool", "spool/tmp", "spool/new", "spool/cur", "spool/bad"] {
        assert_eq!(mode(&dir.path().join(d)), 0o700, "{d}");
    }
    let check = piggyback(&args(&["check"]), &env);
    assert!(check.status.success());
    assert!(!String::from_utf8_lossy(&check.stderr).contains("warning"), "{}", String::from_utf8_lossy(&check.stderr));

    // Anything looser is named by `piggyback check`, which still passes.
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::set_permissions(dir.path().join("spool/new"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let check = piggyback(&args(&["check"]), &env);
    let stderr = String::from_utf8_lossy(&check.stderr);
    assert!(check.status.success());
    assert!(stderr.contains("warning: ") && stderr.contains("site.db is 0644; at most 0600"), "{stderr}");
    assert!(stderr.contains("spool/new is 0755; at most 0700"), "{stderr}");
}

#[test]
fn the_group_mode_shares_with_the_group_and_nobody_else() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("site.db");
    let secret = dir.path().join("secret");
    let env = [("PIGGYBACK_SECRET_FILE", secret.to_str().unwrap()), ("PIGGYBACK_FILE_MODE", "group")];
    assert!(piggyback(&["--db", db.to_str().unwrap(), "init"], &env).status.success());
    assert_eq!(mode(&db), 0o660);
    assert_eq!(mode(&secret), 0o640);
    assert_eq!(mode(&dir.path().join("spool/new")), 0o2770);
    let out = piggyback(&["--db", db.to_str().unwrap(), "check"], &env);
    assert!(out.status.success() && !String::from_utf8_lossy(&out.stderr).contains("warning"));
    // The same files are too loose for the owner-only default.
    let owner = [("PIGGYBACK_SECRET_FILE", secret.to_str().unwrap())];
    let out = piggyback(&["--db", db.to_str().unwrap(), "check"], &owner);
    assert!(String::from_utf8_lossy(&out.stderr).contains("secret is 0640; at most 0600"));
}

// ---- 10. the smaller points ---------------------------------------------------------

#[test]
fn an_idempotency_key_reused_for_another_recipient_is_409_and_sends_nothing() {
    let site = Site::new(&["alice", "bob", "carol"]);
    let send = |to: &str| {
        site.post(
            Program::Messages,
            "alice",
            "",
            json!({"to": to, "subject": "s", "body": "b", "idempotency_key": "k1"}),
        )
    };
    assert_eq!(send("bob").status, 201);
    let r = send("carol");
    assert_eq!((r.status, r.error_code()), (409, "idempotency_key_reused"), "{}", r.json);
    assert_eq!(site.counters("carol"), (0, 0));
    let again = send("bob");
    assert_eq!(again.status, 201, "a retry to the same recipient is still answered");
    assert_eq!(site.counters("bob"), (1, 0));
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
    let dave = Store::open(&site.db).unwrap().user_by_name("dave").unwrap().unwrap();
    let stale = key.sign(dave.id, now() - 10);
    let valid_until = now() + 3600;
    let valid = key.sign(dave.id, valid_until);
    let r = site.bare(Program::Session).var("HTTP_COOKIE", &format!("pb_session={stale}; pb_session={valid}")).run();
    assert_eq!(r.status, 200);
    assert_eq!(r.json["session"]["expires_at"], json!(piggyback::text::rfc3339(valid_until)));
}
