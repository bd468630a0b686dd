//! Login throttles and lockouts per name and per address.

use super::*;
use crate::support::{Program, Response, Site};
use serde_json::json;

const PASSWORD: &str = "correct horse battery";

/// A keyed site where dave has a password and erin none.
fn site_with_dave() -> Site {
    let site = Site::keyed(&[]);
    site.add_user_with_password("dave", PASSWORD);
    site.add_user("erin");
    site
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

fn login_from(site: &Site, name: &str, password: &str, addr: &str) -> crate::support::Cgi {
    site.bare(Program::Session).post("", json!({"name": name, "password": password})).var("REMOTE_ADDR", addr)
}

fn login(site: &Site, name: &str, password: &str) -> Response {
    site.bare(Program::Session).post("", json!({"name": name, "password": password})).run()
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

#[test]
fn failed_logins_are_throttled_per_name_and_per_address() {
    let site = site_with_dave();
    for i in 0..5 {
        let r = login(&site, "dave", &format!("guess number {i}"));
        assert_eq!(r.status, 401, "attempt {i}");
    }
    let r = login(&site, "dave", PASSWORD);
    assert_eq!((r.status, r.error_code()), (429, "too_many_attempts"), "even the right password waits");
    let wait: i64 = r.header("Retry-After").unwrap().parse().unwrap();
    assert!((1..=900).contains(&wait));
    // Another address is held back by the name's throttle too.
    let r = site
        .bare(Program::Session)
        .post("", json!({"name": "dave", "password": PASSWORD}))
        .var("REMOTE_ADDR", "198.51.100.7")
        .run();
    assert_eq!(r.status, 429);

    // Per address: 20 failures over many names, then even a fresh name waits.
    let site = site_with_dave();
    for i in 0..20 {
        let r = login(&site, &format!("user{i}"), "whatever it is");
        assert_eq!(r.status, 401, "attempt {i}");
    }
    assert_eq!(login(&site, "dave", PASSWORD).status, 429);
    let elsewhere = site
        .bare(Program::Session)
        .post("", json!({"name": "dave", "password": PASSWORD}))
        .var("REMOTE_ADDR", "203.0.113.9");
    assert_eq!(elsewhere.run().status, 200, "another address still logs in");
}

#[test]
fn a_successful_login_forgives_the_names_failures() {
    let site = site_with_dave();
    for _ in 0..4 {
        assert_eq!(login(&site, "dave", "wrong guess").status, 401);
    }
    assert_eq!(login(&site, "dave", PASSWORD).status, 200);
    for _ in 0..4 {
        assert_eq!(login(&site, "dave", "wrong guess").status, 401);
    }
    assert_eq!(login(&site, "dave", PASSWORD).status, 200);
}
