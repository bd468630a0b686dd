//! Who the user is under the wrapper: the program's header, bound cookies.

use super::*;

fn ends_session_cookie(answer: &Answer) -> bool {
    answer
        .set_cookies()
        .iter()
        .any(|(name, value, line)| name.ends_with("pb_session") && value.is_empty() && line.contains("Max-Age=0"))
}

#[test]
fn the_programs_header_names_the_user_ahead_of_any_cookie_and_never_reaches_the_client() {
    let w = Wrapped::new();
    w.site.deliver("bob", "alice", "by header");
    w.site_login("s1", "alice");
    // Bob's cookie is ignored (and ended): the program says alice.
    let bob = w.site.token("bob");
    let answer = w.lighttpd("whoami.sh", &[var("HTTP_COOKIE", format!("SID=s1; pb_session={bob}"))]);
    assert_eq!(subjects(&answer), vec!["by header"], "{}", answer.stderr);
    assert!(!answer.text().to_ascii_lowercase().contains("x-piggyback-user"), "{}", answer.text());
    assert!(ends_session_cookie(&answer), "a cookie naming someone else is ended: {}", answer.head());
    // A page naming the user: the header goes, the body is the program's.
    let page = w.lighttpd("whoami.sh", &[var("HTTP_COOKIE", "SID=s1"), var("QUERY_STRING", "html")]);
    assert!(!page.text().to_ascii_lowercase().contains("x-piggyback-user"), "{}", page.text());
    assert_eq!(page.body(), b"{\"page\": \"mine\"}");
    // Nobody named (an empty header): anonymous whatever cookie the browser sent.
    w.site.deliver("bob", "alice", "unseen");
    let anonymous = w.lighttpd("whoami.sh", &[w.cookie("alice")]);
    assert!(anonymous.json().get("site_messages").is_none(), "{}", anonymous.text());
    assert!(ends_session_cookie(&anonymous), "{}", anonymous.head());
    assert_eq!(w.site.counters("alice"), (1, 1), "nothing flipped for an answer naming nobody");
}

#[test]
fn unknown_names_pass_unchanged_unless_the_wrapper_adds_users_and_refused_names_are_logged() {
    let w = Wrapped::new();
    w.site_login("s1", "carol");
    let carol = var("HTTP_COOKIE", "SID=s1");
    let unknown = w.lighttpd("whoami.sh", std::slice::from_ref(&carol));
    assert_eq!(unknown.body(), b"{\"page\": \"mine\"}", "{}", unknown.text());
    assert!(unknown.stderr.contains("no such user"), "{}", unknown.stderr);
    assert!(!w.site.piggyback(&["user", "show", "carol"]).status.success());
    let w = w.set("PIGGYBACK_WRAP_CREATE_USERS", "1");
    let added = w.lighttpd("whoami.sh", std::slice::from_ref(&carol));
    assert_eq!(added.json()["site_messages"]["unread"], 0, "{}", added.text());
    assert!(w.site.piggyback(&["user", "show", "carol"]).status.success(), "carol was added");
    // A name Piggyback refuses (a bidirectional control hides its real end).
    w.site_login("s2", "eve\u{202e}gnp.exe");
    let refused = w.lighttpd("whoami.sh", &[var("HTTP_COOKIE", "SID=s2")]);
    assert_eq!(refused.body(), b"{\"page\": \"mine\"}", "{}", refused.text());
    assert!(refused.stderr.contains("refused"), "{}", refused.stderr);
    assert!(!w.site.piggyback_ok(&["user", "list"]).contains("eve"));
}

#[test]
fn a_bound_cookie_follows_the_sites_session_and_ends_with_it() {
    let w = Wrapped::new().set("PIGGYBACK_SITE_SESSION_COOKIE", "SID");
    w.site_login("s1", "alice");
    w.site.deliver("bob", "alice", "first");
    let first = w.lighttpd("whoami.sh", &[var("HTTP_COOKIE", "SID=s1")]);
    assert_eq!(subjects(&first), vec!["first"]);
    let cookies = first.set_cookies();
    let [(name, value, line)] = cookies.as_slice() else { panic!("one cookie: {}", first.head()) };
    assert_eq!(name, "pb_session");
    assert!(value.starts_with("v3.") && line.contains("HttpOnly"), "{line}");
    // The browser has it: not set again.
    let both = format!("SID=s1; pb_session={value}");
    assert!(w.lighttpd("whoami.sh", &[var("HTTP_COOKIE", &both)]).set_cookies().is_empty());
    // Piggyback's own idle check accepts it only with the same site session.
    w.site.deliver("bob", "alice", "second");
    for without in [format!("pb_session={value}"), format!("SID=s2; pb_session={value}")] {
        let r = w.idle_check(&without);
        assert!(!r.has_site_messages() && r.status == 401, "{without}: {} {}", r.status, r.json);
    }
    assert_eq!(w.site.counters("alice").0, 1, "nothing flipped");
    assert_eq!(w.idle_check(&both).announced().len(), 1);
    // The site's logout keeps the session id; the program names nobody now.
    w.site_logout("s1");
    w.site.deliver("bob", "alice", "after logout");
    let out = w.lighttpd("whoami.sh", &[var("HTTP_COOKIE", &both)]);
    assert!(out.json().get("site_messages").is_none(), "{}", out.text());
    assert!(ends_session_cookie(&out), "{}", out.head());
    let r = w.idle_check("SID=s1");
    assert!(!r.has_site_messages(), "{}", r.json);
    // The next person on that browser, the old cookie still sent: only their own.
    w.site_login("s9", "bob");
    w.site.deliver("alice", "bob", "for bob");
    let bob = w.lighttpd("whoami.sh", &[var("HTTP_COOKIE", format!("SID=s9; pb_session={value}"))]);
    assert_eq!(subjects(&bob), vec!["for bob"]);
    let bob_cookie = bob.set_cookies().into_iter().find(|(n, v, _)| n == "pb_session" && !v.is_empty()).unwrap().1;
    assert_ne!(&bob_cookie, value);
    assert_eq!(w.site.counters("alice").0, 1, "alice's message waits for her");
    // Revocation ends a bound cookie too; the next answer naming bob sets a new one.
    let bobs = format!("SID=s9; pb_session={bob_cookie}");
    assert_eq!(w.idle_check(&bobs).status, 200);
    w.site.piggyback_ok(&["user", "revoke", "bob"]);
    assert_eq!(w.idle_check(&bobs).status, 401);
    assert_eq!(w.lighttpd("whoami.sh", &[var("HTTP_COOKIE", &bobs)]).set_cookies().len(), 1);
    // On https the cookie is __Host-pb_session, Secure.
    let https = w.lighttpd("whoami.sh", &[var("HTTP_COOKIE", "SID=s9"), var("HTTPS", "on")]);
    let cookies = https.set_cookies();
    assert!(cookies.iter().any(|(n, _, l)| n == "__Host-pb_session" && l.contains("; Secure")), "{cookies:?}");
}

#[test]
fn the_php_identity_line_of_the_guide_follows_the_sites_login_and_logout() {
    let w = Wrapped::new().set("PIGGYBACK_SITE_SESSION_COOKIE", "PHPSESSID");
    let sessions = w.site.dir.path().join("php-sessions");
    std::fs::create_dir(&sessions).unwrap();
    let program = format!(
        "<?php\nini_set('session.save_path', {:?});\n{}\nsession_start();\n\
         if (($_GET['do'] ?? '') === 'login') {{ session_regenerate_id(); $_SESSION['user'] = 'alice'; }}\n\
         if (($_GET['do'] ?? '') === 'logout') {{ session_destroy(); }}\n\
         header('Content-Type: application/json');\necho json_encode(['ok' => true]);\n",
        sessions.to_str().unwrap(),
        crate::docs::snippet("user-header-php")
    );
    let path = w.app.join("site.php");
    std::fs::write(&path, program).unwrap();
    chmod(&path, 0o644);
    w.site.deliver("bob", "alice", "hello php");
    let login = w.lighttpd("site.php", &[var("QUERY_STRING", "do=login")]);
    assert_eq!(subjects(&login), vec!["hello php"], "{}; {}", login.text(), login.stderr);
    let cookies = login.set_cookies();
    let sid = cookies.iter().find(|(n, _, _)| n == "PHPSESSID").expect("PHP's session cookie").1.clone();
    let pb = cookies.iter().find(|(n, _, _)| n == "pb_session").expect("the bound cookie").1.clone();
    let both = format!("PHPSESSID={sid}; pb_session={pb}");
    w.site.deliver("bob", "alice", "while logged in");
    assert_eq!(w.idle_check(&both.replace("PHPSESSID", "SID")).status, 401, "bound to PHPSESSID, not SID");
    let page = w.lighttpd("site.php", &[var("HTTP_COOKIE", &both)]);
    assert_eq!(subjects(&page), vec!["while logged in"], "{}", page.text());
    // The site's own logout, unchanged: session_destroy() keeps the cookie's value.
    w.site.deliver("bob", "alice", "after logout");
    let logout = w.lighttpd("site.php", &[var("HTTP_COOKIE", &both), var("QUERY_STRING", "do=logout")]);
    assert!(logout.json().get("site_messages").is_none(), "{}", logout.text());
    assert!(ends_session_cookie(&logout), "{}", logout.head());
    let after = w.lighttpd("site.php", &[var("HTTP_COOKIE", format!("PHPSESSID={sid}"))]);
    assert!(after.json().get("site_messages").is_none(), "{}", after.text());
    assert_eq!(w.site.counters("alice").0, 1, "the message after the logout waits for alice");
}
