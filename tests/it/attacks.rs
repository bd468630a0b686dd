//! The second security review: each attack reproduced as it was made against
//! the real programs, and shown refused. docs/SECURITY.md names each test.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::support::{Program, Response, Site, piggyback};
use piggyback::identity::{Claims, CookieName, Key};
use piggyback::message_store::Store;
use piggyback::model::now;
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
    let dave = Store::open(&site.db).unwrap().user_by_name(&crate::support::uname("dave")).unwrap().unwrap();
    let stale = key.sign(dave.id, now() - 10);
    let valid_until = now() + 3600;
    let valid = key.sign(dave.id, valid_until);
    let r = site.bare(Program::Session).var("HTTP_COOKIE", &format!("pb_session={stale}; pb_session={valid}")).run();
    assert_eq!(r.status, 200);
    assert_eq!(r.json["session"]["expires_at"], json!(piggyback::text::rfc3339(valid_until)));
}

// ---- 1. the login throttle raced ---------------------------------------------------

/// Starts every request at once, then collects the statuses.
fn statuses(requests: Vec<crate::support::Cgi>) -> Vec<u16> {
    let running: Vec<_> = requests.iter().map(|r| r.spawn()).collect();
    running.into_iter().map(|r| r.wait().status).collect()
}

fn login_from(site: &Site, name: &str, password: &str, addr: &str) -> crate::support::Cgi {
    site.bare(Program::Session).post("", json!({"name": name, "password": password})).var("REMOTE_ADDR", addr)
}

#[test]
fn parallel_wrong_passwords_from_many_addresses_get_at_most_five_verifications() {
    let site = site_with_dave();
    let attempts: Vec<_> = (0..120)
        .map(|i| {
            // The 45th carries the right password, as in the attack.
            let password = if i == 45 { PASSWORD } else { "a wrong guess" };
            login_from(&site, "dave", password, &format!("198.51.{}.{}", i / 200, i % 200 + 1))
        })
        .collect();
    let got = statuses(attempts);
    let verified = got.iter().filter(|s| matches!(s, 200 | 401)).count();
    assert!(verified <= 5, "{verified} attempts were verified: {got:?}");
    assert!(got.iter().all(|s| matches!(s, 200 | 401 | 429 | 503)), "{got:?}");
    // On a loaded machine a few may wait past the busy timeout (503): refused too.
    assert!(got.iter().filter(|s| matches!(s, 429 | 503)).count() >= 115, "{got:?}");
}

#[test]
fn a_locked_out_name_still_logs_in_from_where_its_owner_did_and_one_address_locks_few_names() {
    let site = site_with_dave();
    assert_eq!(login_from(&site, "dave", PASSWORD, "192.0.2.10").run().status, 200, "dave at home");
    for i in 0..5 {
        assert_eq!(login_from(&site, "dave", "guess", &format!("203.0.113.{i}")).run().status, 401);
    }
    assert_eq!(login_from(&site, "dave", PASSWORD, "203.0.113.77").run().status, 429, "locked out elsewhere");
    assert_eq!(login_from(&site, "dave", PASSWORD, "192.0.2.10").run().status, 200, "not at home");

    // One address trying to lock out every name runs out of attempts after four.
    let site = site_with_dave();
    for name in ["ann", "ben", "cat", "dan", "dave", "eve"] {
        for _ in 0..5 {
            let s = login_from(&site, name, "guess", "198.51.100.1").run().status;
            assert!(matches!(s, 401 | 429), "{s}");
        }
    }
    let r = login_from(&site, "dave", PASSWORD, "203.0.113.5").run();
    assert_eq!(r.status, 200, "the fifth name was never counted: {}", r.json);
}

// ---- 4. posts and comments -------------------------------------------------------------

#[test]
fn parallel_posts_stop_at_the_rate_and_the_quota_holds() {
    let site = Site::new(&["alice", "bob"]);
    let body = "x".repeat(5_000);
    let posts: Vec<_> =
        (0..40).map(|_| site.cgi(Program::Posts).user("alice").post("", json!({"body": body}))).collect();
    let got = statuses(posts);
    let stored: i64 = site.conn().int("SELECT count(*) FROM posts");
    assert!(stored <= 10, "{stored} posts stored: {got:?}");
    assert_eq!(got.iter().filter(|s| **s == 201).count() as i64, stored);
    assert!(got.iter().filter(|s| matches!(s, 429 | 503)).count() >= 30, "{got:?}");

    // The quota: bytes of posts and comments per user.
    let mut site = Site::new(&["alice"]);
    site.extra_env.push(("PIGGYBACK_POST_RATE".into(), "1000".into()));
    site.extra_env.push(("PIGGYBACK_POST_QUOTA".into(), "12000".into()));
    let post = || site.cgi(Program::Posts).user("alice").post("", json!({"body": body})).run();
    assert_eq!(post().status, 201);
    assert_eq!(post().status, 201);
    let r = post();
    assert_eq!((r.status, r.error_code()), (403, "quota_exceeded"));
    let first: i64 = site.conn().int("SELECT min(id) FROM posts");
    let r = site
        .cgi(Program::Posts)
        .user("alice")
        .post(&format!("/{first}/comments"), json!({"body": "y".repeat(2_001)}))
        .run();
    assert_eq!(r.status, 403, "comments count against the same quota");
    let r = site.cgi(Program::Posts).user("alice").post(&format!("/{first}/comments"), json!({"body": "short"})).run();
    assert_eq!(r.status, 201);
}

// ---- 5. the send limit -----------------------------------------------------------------

fn note(site: &Site, i: usize) -> crate::support::Cgi {
    site.cgi(Program::Messages).user("alice").post("", json!({"to": "bob", "subject": format!("n{i}"), "body": "b"}))
}

fn stored_and_waiting(site: &Site) -> i64 {
    site.piggyback_ok(&["drain"]);
    site.conn().int("SELECT count(*) FROM messages")
}

#[test]
fn parallel_sends_never_pass_the_limit() {
    let site = Site::new(&["alice", "bob"]);
    let got = statuses((0..100).map(|i| note(&site, i)).collect());
    let accepted = got.iter().filter(|s| matches!(s, 201 | 202)).count() as i64;
    assert!(accepted <= 30, "{accepted} accepted: {got:?}");
    assert_eq!(stored_and_waiting(&site), accepted);
    assert!(got.iter().filter(|s| matches!(s, 429 | 503)).count() >= 70, "{got:?}");
}

#[test]
fn sends_accepted_while_another_process_holds_the_write_lock_count_too() {
    let site = Site::new(&["alice", "bob"]);
    let holder = site.conn();
    holder.begin_holding_writes();
    let running: Vec<_> = (0..60).map(|i| note(&site, i).spawn()).collect();
    std::thread::sleep(std::time::Duration::from_millis(300));
    holder.exec("COMMIT");
    let got: Vec<u16> = running.into_iter().map(|r| r.wait().status).collect();
    let accepted = got.iter().filter(|s| matches!(s, 201 | 202)).count() as i64;
    assert!(accepted <= 30, "{accepted} accepted: {got:?}");
    assert_eq!(stored_and_waiting(&site), accepted, "every accepted send is stored, none uncounted");
    site.assert_check_passes();
}

/// The write lock held longer than the busy timeout: every send within the limit is
/// accepted (202) meanwhile and waits in the spool, the sends past the limit are
/// refused (429) all the same, and once the lock is gone each accepted send is stored
/// exactly once. The limits are counted where the lock does not reach (on SQLite the
/// spool's own limits file).
#[test]
fn sends_under_a_write_lock_held_past_the_busy_timeout_are_queued_and_the_limit_still_holds() {
    let mut site = Site::new(&["alice", "bob"]);
    site.extra_env.push(("PIGGYBACK_SEND_RATE".into(), "10".into()));
    let holder = site.conn();
    holder.begin_holding_message_writes();
    let held = std::time::Instant::now();
    let got = statuses((0..16).map(|i| note(&site, i)).collect());
    let over = note(&site, 99).run();
    let queued = got.iter().filter(|s| **s == 202).count();
    assert_eq!(queued, 10, "every send within the limit queued: {got:?}");
    assert_eq!(got.iter().filter(|s| **s == 429).count(), 6, "the rest refused: {got:?}");
    assert_eq!((over.status, over.error_code()), (429, "rate_limited"), "{}", over.json);
    assert!(over.header("Retry-After").is_some());
    let raw = site.conn();
    assert_eq!(raw.int("SELECT count(*) FROM messages"), 0, "nothing stored under the lock");
    let waiting = std::fs::read_dir(site.spool().join("new")).unwrap().count();
    assert_eq!(waiting, queued, "each accepted send waits in the spool");
    // Held past the busy timeout whatever the speed of the machine.
    let busy_timeout = piggyback::message_store::BUSY_TIMEOUT + std::time::Duration::from_millis(500);
    std::thread::sleep(busy_timeout.saturating_sub(held.elapsed()));
    holder.exec("ROLLBACK");

    site.piggyback_ok(&["drain"]);
    assert_eq!(raw.int("SELECT count(*) FROM messages"), 10);
    assert_eq!(raw.int("SELECT count(DISTINCT subject) FROM messages"), 10, "each stored once");
    site.assert_check_passes();
}

#[test]
fn one_sender_reaches_one_recipient_a_limited_number_of_times_a_day() {
    let mut site = Site::new(&["alice", "bob", "carol"]);
    site.extra_env.push(("PIGGYBACK_SEND_PAIR_DAILY".into(), "3".into()));
    for i in 0..3 {
        assert_eq!(note(&site, i).run().status, 201);
    }
    let r = note(&site, 4).run();
    assert_eq!((r.status, r.error_code()), (429, "rate_limited"));
    let wait: i64 = r.header("Retry-After").unwrap().parse().unwrap();
    assert!(wait > 3600, "the pair's window is a day: {wait}");
    let r = site.post(Program::Messages, "alice", "", json!({"to": "carol", "subject": "s", "body": "b"}));
    assert_eq!(r.status, 201, "other recipients are not affected");
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

// ---- 6. a flood -------------------------------------------------------------------------

/// Stores `n` new messages from bob to alice in one transaction, as a flood that got
/// through before the limits would leave them.
fn flood(site: &Site, n: usize) {
    let store = Store::open(&site.db).unwrap();
    let (alice, bob) = (
        store.user_by_name(&crate::support::uname("alice")).unwrap().unwrap(),
        store.user_by_name(&crate::support::uname("bob")).unwrap().unwrap(),
    );
    let messages: Vec<_> = (0..n)
        .map(|i| piggyback::model::NewMessage {
            request_id: format!("flood-{i}"),
            from: bob.id,
            to: alice.id,
            subject: format!("flood {i}"),
            body: "b".into(),
            kind: piggyback::model::MessageKind::Note,
            idempotency_key: None,
            sent_at: now(),
        })
        .collect();
    store.store_messages(&messages).unwrap();
}

#[test]
fn a_flood_is_announced_in_bounded_batches_exactly_once_under_parallel_requests() {
    let batch = piggyback::message_store::CLAIM_BATCH as i64;
    let site = Site::new(&["alice", "bob"]);
    flood(&site, 10 * batch as usize + 7);
    let total = 10 * batch + 7;
    let first = site.get(Program::Profile, "alice", "");
    let s = first.site();
    assert_eq!((s["new"].as_i64(), s["waiting"].as_i64()), (Some(batch), Some(total - batch)), "{s}");
    assert_eq!(s["unread"].as_i64(), Some(total), "unread counts what is still waiting");
    assert_eq!(s["items"].as_array().unwrap().len(), 20);
    assert_eq!(site.counters("alice"), (total - batch, batch));
    // Parallel requests of the victim: each announces its own batch, none twice.
    let responses: Vec<_> = (0..12).map(|_| site.cgi(Program::Profile).user("alice").spawn()).collect();
    // (One that waited past the busy timeout answers 503 and announces nothing.)
    let new_of = |r: &Response| if r.status == 200 { r.site()["new"].as_i64().unwrap() } else { 0 };
    let mut announced: i64 = responses.into_iter().map(|r| new_of(&r.wait())).sum();
    while site.counters("alice").0 > 0 {
        announced += new_of(&site.get(Program::Profile, "alice", ""));
    }
    assert_eq!(announced, total - batch, "every message announced exactly once");
    assert_eq!(site.counters("alice"), (0, total));
    let last = site.get(Program::Profile, "alice", "");
    assert!(last.site().get("waiting").is_none());
    assert_eq!(last.counts(), (total, total, 0));
    site.assert_check_passes();
}
