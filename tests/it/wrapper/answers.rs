//! The wrapper's answers: `site_messages` added to JSON, everything else byte for byte.

use super::*;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

fn shell_perl_and_php_json_answers_carry_site_messages_announced_once(mode: Mode) {
    let w = Wrapped::in_mode(mode);
    let alice = w.cookie("alice");
    for script in ["hello.sh", "hello.pl", "hello.php"] {
        w.site.deliver("bob", "alice", &format!("for {script}"));
        let first = w.lighttpd(script, std::slice::from_ref(&alice));
        let json = first.json();
        assert_eq!(first.announced().len(), 1, "{script} announces the new message: {json}");
        assert_eq!(json["site_messages"]["items"][0]["subject"], format!("for {script}"));
        assert!(json["from"].is_string(), "the program's own members stay: {json}");
        assert_eq!(first.header("Content-Length"), Some(first.body().len().to_string().as_str()), "{script}");
        assert_eq!(first.header("Cache-Control"), Some("private, no-store"), "{script}");
        let again = w.lighttpd(script, std::slice::from_ref(&alice));
        assert!(again.announced().is_empty(), "{script}: announced once: {}", again.text());
        assert_eq!(again.json()["site_messages"]["new"], 0);
    }
    // The program's own text is kept exactly: 1.50 and a 23-digit number survive.
    let sh = w.lighttpd("hello.sh", std::slice::from_ref(&alice));
    assert!(sh.body().starts_with(b"{\"from\": \"sh\", \"n\": 1.50,\"site_messages\":"), "{}", sh.text());
    assert_eq!(sh.header("X-Site"), Some("shell"));
    let pl = w.lighttpd("hello.pl", &[alice]);
    assert!(pl.text().contains("\"big\":12345678901234567890123,"), "{}", pl.text());
    w.site.assert_check_passes();
}

fn a_cross_site_request_through_the_wrapper_reports_counts_and_announces_nothing(mode: Mode) {
    let w = Wrapped::in_mode(mode);
    w.site.deliver("bob", "alice", "not for another site");
    let alice = w.cookie("alice");
    let evil = var("HTTP_ORIGIN", "http://evil.example");
    let answer = w.lighttpd("hello.sh", &[alice.clone(), evil]);
    let json = answer.json();
    assert_eq!(json["site_messages"]["items"], serde_json::json!([]), "{json}");
    assert_eq!(w.site.counters("alice"), (1, 0), "nothing flipped");
    assert_eq!(w.lighttpd("hello.sh", &[alice]).announced().len(), 1, "announced on the site's own page");
}

fn html_a_redirect_a_download_and_nph_pass_byte_for_byte(mode: Mode) {
    let w = Wrapped::in_mode(mode);
    let alice = w.cookie("alice");
    w.site.deliver("bob", "alice", "unseen");
    for script in ["page.sh", "redirect.sh", "download.pl", "nph-raw.sh"] {
        let wrapped = w.lighttpd(script, std::slice::from_ref(&alice));
        let direct = w.direct(script);
        assert!(!direct.is_empty());
        assert!(wrapped.raw == direct, "{script} passes unchanged ({} vs {} bytes)", wrapped.raw.len(), direct.len());
    }
    assert_eq!(w.lighttpd("download.pl", &[]).body().len(), 1 << 20);
    // Nothing was announced by answers that carry no messages.
    assert_eq!(w.site.counters("alice"), (1, 0));
}

fn anonymous_and_non_object_json_pass_unchanged(mode: Mode) {
    let w = Wrapped::in_mode(mode);
    assert_eq!(w.lighttpd("hello.sh", &[]).raw, w.direct("hello.sh"));
    let forged = var("HTTP_COOKIE", "pb_session=forged.value");
    assert_eq!(w.lighttpd("hello.sh", &[forged]).raw, w.direct("hello.sh"));
}

fn a_json_answer_past_the_buffer_streams_through_and_the_log_says_so(mode: Mode) {
    let w = Wrapped::in_mode(mode).set("PIGGYBACK_WRAP_BUFFER", "1k");
    let alice = w.cookie("alice");
    let answer = w.lighttpd("large.pl", &[alice]);
    assert_eq!(answer.raw, w.direct("large.pl"));
    assert!(answer.stderr.contains("PIGGYBACK_WRAP_BUFFER"), "{}", answer.stderr);
}

fn a_piggyback_failure_never_changes_the_answer(mode: Mode) {
    let w = Wrapped::in_mode(mode);
    let alice = w.cookie("alice");
    let missing = var("PIGGYBACK_DB", w.site.dir.path().join("gone/none.db"));
    let answer = w.lighttpd("hello.pl", &[alice.clone(), missing]);
    assert_eq!(answer.raw, w.direct("hello.pl"));
    assert!(answer.stderr.contains("site_messages left out"), "{}", answer.stderr);
    let unconfigured = var("PIGGYBACK_DB", "relative.db");
    let answer = w.lighttpd("hello.pl", &[alice.clone(), unconfigured]);
    assert_eq!(answer.raw, w.direct("hello.pl"));
    assert!(answer.stderr.contains("PIGGYBACK_DB"), "{}", answer.stderr);
    // A database locked by someone else: the site still answers.
    w.site.deliver("bob", "alice", "waiting");
    let conn = w.site.conn();
    conn.begin_exclusive();
    let answer = w.lighttpd("hello.pl", std::slice::from_ref(&alice));
    assert_eq!(answer.raw, w.direct("hello.pl"));
    conn.exec("ROLLBACK");
    assert_eq!(w.lighttpd("hello.pl", &[alice]).announced().len(), 1, "announced once the lock is gone");
}

fn the_program_gets_a_rebuilt_environment_and_its_own_folder(mode: Mode) {
    let w = Wrapped::in_mode(mode);
    let extra = [
        var("HTTP_PROXY", "http://evil.example:3128"),
        var("HTTP_REDIRECT_STATUS", "200"),
        var("PATH_INFO", "/more/path"),
        var("REMOTE_USER", "someone"),
    ];
    let json = w.lighttpd("env.pl", &extra).json();
    let env = &json["env"];
    let program = std::fs::canonicalize(w.app.join("env.pl")).unwrap();
    assert_eq!(env["SCRIPT_FILENAME"], program.to_str().unwrap());
    assert_eq!(env["SCRIPT_NAME"], "/app/env.pl");
    assert_eq!(env["PATH_INFO"], "/more/path");
    assert_eq!(env["PATH_TRANSLATED"], format!("{}/more/path", w.docroot.display()));
    assert_eq!(env["REDIRECT_STATUS"], "200");
    assert_eq!(env["REMOTE_USER"], "someone", "the site's program decides about its own users");
    for dropped in ["HTTP_PROXY", "HTTP_REDIRECT_STATUS", "PIGGYBACK_WRAP_ROOT"] {
        assert!(env.get(dropped).is_none(), "{dropped} reaches the program: {env}");
    }
    assert_eq!(json["cwd"], std::fs::canonicalize(&w.app).unwrap().to_str().unwrap());
    assert_eq!(json["argv"], serde_json::json!([]));
}

fn the_body_stays_on_stdin_for_the_program(mode: Mode) {
    let w = Wrapped::in_mode(mode);
    let path = w.app.join("env.pl");
    let mut env = w.base_env("POST", "");
    env.push(var("SCRIPT_FILENAME", &path));
    env.push(var("CONTENT_LENGTH", "13"));
    env.push(var("CONTENT_TYPE", "application/json"));
    env.push(w.cookie("alice"));
    let answer = w.request(&path, env, b"{\"a\": \"body\"}");
    let json = answer.json();
    assert_eq!(json["body"], "{\"a\": \"body\"}");
    assert!(json.get("site_messages").is_some(), "{json}");
}

fn the_programs_stderr_goes_to_the_servers_log(mode: Mode) {
    let w = Wrapped::in_mode(mode);
    let answer = w.lighttpd("complain.sh", &[]);
    assert!(answer.stderr.contains("the site program complains"), "{}", answer.stderr);
    assert!(!answer.text().contains("complains"));
}

fn a_program_past_the_timeout_is_stopped_and_answered_504(mode: Mode) {
    let w = Wrapped::in_mode(mode).set("PIGGYBACK_WRAP_TIMEOUT", "1");
    let answer = w.lighttpd("slow.sh", &[]);
    assert_eq!(answer.status(), 504, "{}", answer.text());
    let pid: u32 = answer.stderr.split("pid ").nth(1).and_then(|s| s.split_whitespace().next()?.parse().ok()).unwrap();
    assert!(!Path::new(&format!("/proc/{pid}")).exists(), "the program {pid} is gone");
    assert!(answer.stderr.contains("PIGGYBACK_WRAP_TIMEOUT"), "{}", answer.stderr);
    let answer = w.lighttpd("slow-tree.sh", &[]);
    assert_eq!(answer.status(), 504, "{}", answer.text());
    let pid: u32 = answer.stderr.split("pid ").nth(1).and_then(|s| s.split_whitespace().next()?.parse().ok()).unwrap();
    // SIGKILL is delivered asynchronously: a loaded machine may show the grandchild
    // running for a moment after the wrapper answered, so wait for it, boundedly.
    let gone = |state: &str| state.is_empty() || state.contains(") Z ");
    let mut state = String::new();
    for _ in 0..100 {
        state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        if gone(&state) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(gone(&state), "the program's own child {pid} is gone: {state}");
}

fn a_program_that_closes_its_output_early_is_still_stopped_at_the_timeout(mode: Mode) {
    let w = Wrapped::in_mode(mode).set("PIGGYBACK_WRAP_TIMEOUT", "1");
    let path = w.app.join("early.sh");
    std::fs::write(
        &path,
        "#!/bin/sh\nprintf 'Content-Type: application/json\\n\\n{\"early\": true}'\nexec >&-\n\
         echo \"pid $$\" >&2\nexec sleep 30\n",
    )
    .unwrap();
    chmod(&path, 0o755);
    let answer = w.lighttpd("early.sh", &[]);
    assert_eq!(answer.status(), 200, "{}", answer.text());
    assert_eq!(answer.json(), serde_json::json!({"early": true}));
    let pid: u32 = answer.stderr.split("pid ").nth(1).and_then(|s| s.split_whitespace().next()?.parse().ok()).unwrap();
    // The wrapper reaps it before it has finished the request.
    assert!(!Path::new(&format!("/proc/{pid}")).exists(), "the program {pid} is gone");
    assert!(answer.stderr.contains("stopped after PIGGYBACK_WRAP_TIMEOUT"), "{}", answer.stderr);
}

fn a_body_larger_than_a_pipe_reaches_the_program_whole_and_one_left_unread_holds_nothing(mode: Mode) {
    let w = Wrapped::in_mode(mode).set("PIGGYBACK_WRAP_TIMEOUT", "20");
    let counting = w.app.join("count.sh");
    std::fs::write(&counting, "#!/bin/sh\nn=$(wc -c)\nprintf 'Content-Type: application/json\\n\\n{\"got\": %s}' $n\n")
        .unwrap();
    chmod(&counting, 0o755);
    let body: Vec<u8> = (0..1_000_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    let post = |path: &Path| {
        let mut env = w.base_env("POST", "");
        env.push(var("SCRIPT_FILENAME", path));
        env.push(var("CONTENT_LENGTH", body.len().to_string()));
        env.push(var("CONTENT_TYPE", "application/octet-stream"));
        env.push(w.cookie("alice"));
        w.request(path, env, &body)
    };
    let counted = post(&counting);
    assert_eq!(counted.json()["got"], body.len(), "{}", counted.text());
    assert!(counted.json().get("site_messages").is_some(), "{}", counted.text());
    // hello.sh reads none of it: answered all the same, long before the timeout stops it.
    let ignored = post(&w.app.join("hello.sh"));
    assert_eq!(ignored.status(), 200, "{}", ignored.text());
    assert!(ignored.json().get("site_messages").is_some(), "{}", ignored.text());
    assert!(!ignored.stderr.contains("PIGGYBACK_WRAP_TIMEOUT"), "{}", ignored.stderr);
}

fn only_regular_files_under_the_root_with_an_allowed_extension_on_the_resolved_name(mode: Mode) {
    let w = Wrapped::in_mode(mode);
    let outside = w.site.dir.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    chmod(&outside, 0o755);
    std::fs::copy(w.app.join("hello.sh"), outside.join("hello.sh")).unwrap();
    chmod(&outside.join("hello.sh"), 0o755);
    std::os::unix::fs::symlink(outside.join("hello.sh"), w.app.join("link.sh")).unwrap();
    std::os::unix::fs::symlink(w.app.join("picture.jpg"), w.app.join("picture.pl")).unwrap();
    std::fs::create_dir(w.app.join("folder.sh")).unwrap();
    chmod(&w.app.join("folder.sh"), 0o755);
    let lighttpd = |path: PathBuf| {
        let mut env = w.base_env("GET", "");
        env.push(var("SCRIPT_FILENAME", &path));
        w.request(&path, env, b"")
    };
    lighttpd(outside.join("hello.sh")).assert_refused("outside PIGGYBACK_WRAP_ROOT");
    lighttpd(w.app.join("link.sh")).assert_refused("outside PIGGYBACK_WRAP_ROOT");
    lighttpd(w.app.join("../app/../outside/hello.sh")).assert_refused("`..`");
    lighttpd(w.app.join("folder.sh")).assert_refused("not a regular file");
    lighttpd(w.app.join("picture.jpg")).assert_refused("PIGGYBACK_WRAP_EXTENSIONS");
    lighttpd(w.app.join("picture.pl")).assert_refused("PIGGYBACK_WRAP_EXTENSIONS");
    let missing = lighttpd(w.app.join("missing.sh"));
    assert_eq!(missing.status(), 404, "{}", missing.text());
    if mode == Mode::FastCgi {
        return;
    }
    // nginx's old mistake, /upload/x.jpg/y.php: the file found is picture.jpg.
    w.apache("/app/picture.jpg/y.php", "", &[]).assert_refused("PIGGYBACK_WRAP_EXTENSIONS");
    // No root configured: nothing runs.
    let mut env = w.base_env("GET", "");
    env.retain(|(k, _)| k != "PIGGYBACK_WRAP_ROOT");
    env.push(var("SCRIPT_FILENAME", w.app.join("hello.sh")));
    let answer = w.run(WRAPPER, &[w.app.join("hello.sh").into()], env, b"");
    assert_eq!(answer.status(), 500, "{}", answer.text());
    assert!(answer.stderr.contains("PIGGYBACK_WRAP_ROOT"));
}

fn programs_that_others_may_change_are_refused(mode: Mode) {
    let w = Wrapped::in_mode(mode);
    chmod(&w.app.join("hello.sh"), 0o775);
    w.lighttpd("hello.sh", &[]).assert_refused("writable by its group or others");
    chmod(&w.app.join("hello.sh"), 0o757);
    w.lighttpd("hello.sh", &[]).assert_refused("writable by its group or others");
    chmod(&w.app.join("hello.sh"), 0o4755);
    w.lighttpd("hello.sh", &[]).assert_refused("setuid");
    chmod(&w.app.join("hello.sh"), 0o755);
    chmod(&w.app, 0o777);
    w.lighttpd("hello.sh", &[]).assert_refused("writable by its group or others");
    chmod(&w.app, 0o755);
    assert_eq!(w.lighttpd("hello.sh", &[]).status(), 200);
}

/// Each test of the list, as `NAME::cgi` and `NAME::fastcgi`.
macro_rules! in_both_modes {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[test]
            fn cgi() {
                super::$name(super::Mode::Cgi)
            }
            #[test]
            fn fastcgi() {
                super::$name(super::Mode::FastCgi)
            }
        }
    )*};
}

in_both_modes!(
    shell_perl_and_php_json_answers_carry_site_messages_announced_once,
    a_cross_site_request_through_the_wrapper_reports_counts_and_announces_nothing,
    html_a_redirect_a_download_and_nph_pass_byte_for_byte,
    anonymous_and_non_object_json_pass_unchanged,
    a_json_answer_past_the_buffer_streams_through_and_the_log_says_so,
    a_piggyback_failure_never_changes_the_answer,
    the_program_gets_a_rebuilt_environment_and_its_own_folder,
    the_body_stays_on_stdin_for_the_program,
    the_programs_stderr_goes_to_the_servers_log,
    a_program_past_the_timeout_is_stopped_and_answered_504,
    a_program_that_closes_its_output_early_is_still_stopped_at_the_timeout,
    a_body_larger_than_a_pipe_reaches_the_program_whole_and_one_left_unread_holds_nothing,
    only_regular_files_under_the_root_with_an_allowed_extension_on_the_resolved_name,
    programs_that_others_may_change_are_refused
);

#[test]
fn a_programs_own_site_messages_never_reaches_the_client_as_the_servers() {
    let w = Wrapped::new();
    w.site.deliver("bob", "alice", "the real one");
    let identified = w.lighttpd("fake.sh", &[w.cookie("alice")]);
    assert!(!identified.text().contains("evil.example"), "{}", identified.text());
    assert_eq!(subjects(&identified), vec!["the real one"]);
    assert_eq!(identified.json()["comment"], "hi");
    assert!(identified.stderr.contains("site_messages member of its own"), "{}", identified.stderr);
    let anonymous = w.lighttpd("fake.sh", &[]);
    assert!(!anonymous.text().contains("evil.example"), "{}", anonymous.text());
    assert_eq!(anonymous.json(), serde_json::json!({"comment": "hi"}));
    assert_eq!(anonymous.header("Content-Length"), Some(anonymous.body().len().to_string().as_str()));
    assert!(anonymous.stderr.contains("site_messages member of its own"), "{}", anonymous.stderr);
}

#[test]
fn json_that_is_not_plainly_a_pages_call_passes_byte_for_byte_and_flips_nothing() {
    let w = Wrapped::new();
    w.site.deliver("bob", "alice", "not into a download");
    let alice = w.cookie("alice");
    for (script, extra) in [
        ("twotypes.sh", vec![]),
        ("export.sh", vec![]),
        ("hello.sh", vec![var("HTTP_SEC_FETCH_MODE", "navigate"), var("HTTP_SEC_FETCH_DEST", "document")]),
    ] {
        let mut vars = vec![alice.clone()];
        vars.extend(extra);
        let answer = w.lighttpd(script, &vars);
        assert_eq!(answer.raw, w.direct(script), "{script}: {}", answer.text());
    }
    assert_eq!(w.site.counters("alice"), (1, 0), "no claim was made");
    assert_eq!(w.lighttpd("hello.sh", &[alice]).announced().len(), 1, "a page's own call announces it");
}

#[test]
fn the_member_holds_no_markup_and_every_answer_carrying_it_says_nosniff() {
    let w = Wrapped::new();
    let subject = "<img src=x onerror=alert(1)> & </script>";
    w.site.deliver("bob", "alice", subject);
    let answer = w.lighttpd("hello.sh", &[w.cookie("alice")]);
    let body = String::from_utf8(answer.body().to_vec()).unwrap();
    let member = &body[body.find("\"site_messages\":").unwrap()..];
    assert!(!member.contains(['<', '>', '&']), "{member}");
    assert!(member.contains("\\u003cimg src=x onerror=alert(1)\\u003e \\u0026 \\u003c/script\\u003e"), "{member}");
    assert_eq!(subjects(&answer), vec![subject], "the same text once parsed");
    assert_eq!(answer.header("X-Content-Type-Options"), Some("nosniff"));
    // Our own programs write through the same serializer.
    w.site.deliver("bob", "alice", subject);
    let ours = w.site.cgi(crate::support::Program::Profile).user("alice").run();
    let raw = String::from_utf8_lossy(&ours.body).into_owned();
    assert!(!raw.contains(['<', '>', '&']), "{raw}");
    assert_eq!(ours.site()["items"][0]["subject"], subject);
}

#[test]
fn every_cause_of_a_left_out_member_is_logged() {
    let w = Wrapped::new();
    let alice = w.cookie("alice");
    w.site.deliver("bob", "alice", "waiting");
    // Busy: another process holds the database.
    let conn = w.site.conn();
    conn.begin_exclusive();
    let busy = w.lighttpd("hello.pl", std::slice::from_ref(&alice));
    conn.exec("ROLLBACK");
    assert_eq!(busy.raw, w.direct("hello.pl"));
    assert!(busy.stderr.contains("site_messages left out") && busy.stderr.contains("busy"), "{}", busy.stderr);
    // Unopenable, and misconfigured.
    for (value, says) in [
        (w.site.dir.path().join("gone/none.db").into_os_string(), "does not exist"),
        (OsString::from("relative.db"), "PIGGYBACK_DB"),
    ] {
        let answer = w.lighttpd("hello.pl", &[alice.clone(), var("PIGGYBACK_DB", value)]);
        assert_eq!(answer.raw, w.direct("hello.pl"));
        assert!(answer.stderr.contains("site_messages left out") && answer.stderr.contains(says), "{}", answer.stderr);
    }
    // The settings file cannot be read: the log names it and the user, next to the
    // setting that is then missing.
    let install = w.site.dir.path().join("install");
    std::fs::create_dir_all(install.join("cgi-bin")).unwrap();
    std::fs::create_dir_all(install.join("etc/piggyback-wrap.conf")).unwrap();
    let copy = install.join("cgi-bin/piggyback-wrap");
    std::fs::copy(WRAPPER, &copy).unwrap();
    let path = w.app.join("hello.pl");
    let mut env = w.base_env("GET", "");
    env.retain(|(k, _)| !k.starts_with("PIGGYBACK_"));
    env.push(var("SCRIPT_FILENAME", &path));
    let answer = w.run(copy.to_str().unwrap(), &[path.into()], env, b"");
    assert_eq!(answer.status(), 500, "{}", answer.text());
    let line = answer.stderr.lines().find(|l| l.contains("PIGGYBACK_WRAP_ROOT is not set")).unwrap_or_default();
    assert!(
        line.contains("piggyback-wrap.conf") && line.contains("cannot be read by") && line.contains("uid"),
        "{}",
        answer.stderr
    );
    w.site.assert_check_passes();
}
