//! The wrapper as a FastCGI responder: kept between requests, bounded, socket-activated.

use super::*;
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::Write;
use std::os::unix::net::UnixListener;
use std::process::{Command, Stdio};

/// A request of `script` in the kept FastCGI wrapper, on a connection the test holds.
fn fastcgi_params(w: &Wrapped, script: &str, extra: &[(String, OsString)]) -> BTreeMap<String, OsString> {
    let mut env = w.base_env("GET", "");
    env.push(var("SCRIPT_FILENAME", w.app.join(script)));
    env.push(var("SCRIPT_NAME", format!("/app/{script}")));
    env.extend(extra.iter().cloned());
    env.into_iter().collect()
}

#[test]
fn a_kept_fastcgi_wrapper_carries_no_identity_from_one_request_to_the_next() {
    // One worker: every request below is answered by the same process.
    let w = Wrapped::in_mode(Mode::FastCgi).set("PIGGYBACK_WRAP_CHILDREN", "1");
    w.site.deliver("bob", "alice", "for alice only");
    w.site.deliver("alice", "bob", "for bob only");
    let alice = w.cookie("alice");
    let first = w.lighttpd("hello.sh", std::slice::from_ref(&alice));
    assert_eq!(first.announced().len(), 1, "{}", first.text());
    // Nobody, then a forged cookie: passed unchanged, nothing of alice's left.
    assert_eq!(w.lighttpd("hello.sh", &[]).raw, w.direct("hello.sh"));
    assert_eq!(w.lighttpd("hello.sh", &[var("HTTP_COOKIE", "pb_session=forged.value")]).raw, w.direct("hello.sh"));
    // REMOTE_USER without the operator's trust setting names nobody either.
    assert_eq!(w.lighttpd("hello.sh", &[var("REMOTE_USER", "alice")]).raw, w.direct("hello.sh"));
    // bob sees his own message, and only his.
    let bob = w.lighttpd("hello.sh", &[w.cookie("bob")]);
    let items = bob.json()["site_messages"]["items"].clone();
    assert_eq!(items.as_array().map(Vec::len), Some(1), "{}", bob.text());
    assert_eq!(items[0]["subject"], "for bob only");
    assert_eq!(w.site.counters("alice"), (0, 1), "alice's message was announced once, to alice");
    w.site.assert_check_passes();
}

#[test]
fn announcements_are_made_once_across_cgi_and_fastcgi_wrappers_under_concurrency() {
    let w = Wrapped::in_mode(Mode::FastCgi);
    // Fewer than PIGGYBACK_MAX_ITEMS in all, so that every announcement lists each one.
    const MESSAGES: usize = 12;
    let alice = w.cookie("alice");
    let mut announced: Vec<i64> = std::thread::scope(|scope| {
        // Messages arrive while both wrappers answer alice's pages.
        scope.spawn(|| {
            for i in 0..MESSAGES {
                w.site.deliver("bob", "alice", &format!("message {i}"));
            }
        });
        let mut askers = Vec::new();
        for (n, mode) in [Mode::FastCgi, Mode::Cgi, Mode::FastCgi, Mode::Cgi].into_iter().enumerate() {
            let (alice, w) = (alice.clone(), &w);
            askers.push(scope.spawn(move || {
                let script = ["hello.sh", "hello.pl"][n / 2];
                (0..8)
                    .flat_map(|_| w.lighttpd_as(mode, script, std::slice::from_ref(&alice)).announced())
                    .collect::<Vec<_>>()
            }));
        }
        askers.into_iter().flat_map(|a| a.join().unwrap()).collect()
    });
    // What arrived after the last of them: the next page announces it.
    announced.extend(w.lighttpd("hello.sh", &[alice]).announced());
    let mut unique = announced.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), announced.len(), "no message announced twice: {announced:?}");
    assert_eq!(unique.len(), MESSAGES, "every message announced: {announced:?}");
    assert_eq!(w.site.counters("alice"), (0, MESSAGES as i64));
    w.site.assert_check_passes();
}

#[test]
fn sigterm_lets_a_kept_fastcgi_wrapper_finish_a_slow_programs_answer_then_exit_0() {
    let w = Wrapped::in_mode(Mode::FastCgi);
    let path = w.app.join("slow-answer.sh");
    std::fs::write(
        &path,
        "#!/bin/sh\necho started >&2\nsleep 1\nprintf 'Content-Type: application/json\\n\\n{\"slow\": true}'\n",
    )
    .unwrap();
    chmod(&path, 0o755);
    w.site.deliver("bob", "alice", "while stopping");
    let kept = w.kept();
    let mut conn = kept.connect();
    let params = fastcgi_params(&w, "slow-answer.sh", &[w.cookie("alice")]);
    conn.write_all(&crate::fastcgi::request_bytes(1, false, &params, b"")).unwrap();
    // The program runs: then the wrapper is told to stop.
    let mut waited = 0;
    while !kept.stderr().contains("started") {
        assert!(waited < 600, "the program never started: {}", kept.stderr());
        std::thread::sleep(std::time::Duration::from_millis(50));
        waited += 1;
    }
    // SAFETY: a signal to the process this test started.
    assert_eq!(unsafe { libc::kill(kept.pid() as libc::pid_t, libc::SIGTERM) }, 0);
    let (raw, status) = crate::fastcgi::read_answer(&mut conn, 1);
    assert_eq!(status, 0);
    let answer = Answer { raw, stderr: String::new() };
    assert_eq!(answer.json()["slow"], true, "{}", answer.text());
    assert_eq!(answer.announced().len(), 1, "{}", answer.text());
    let (status, log) = w.kept.into_inner().unwrap().stop_waiting();
    assert!(status.success(), "{status}: {log}");
    assert!(!log.contains("panicked"), "{log}");
}

#[test]
fn a_trickling_client_is_cut_off_at_the_deadline_while_the_fastcgi_wrapper_serves_another() {
    let w = Wrapped::in_mode(Mode::FastCgi)
        .set("PIGGYBACK_WRAP_CHILDREN", "1")
        .set("PIGGYBACK_FCGI_IO_TIMEOUT", "3")
        .set("PIGGYBACK_FCGI_REQUEST_DEADLINE", "2");
    let kept = w.kept();
    let whole = crate::fastcgi::request_bytes(1, false, &fastcgi_params(&w, "hello.sh", &[]), b"");
    let mut trickler = kept.connect();
    let sender = {
        let mut trickler = trickler.try_clone().unwrap();
        let whole = whole.clone();
        std::thread::spawn(move || {
            for (i, byte) in whole.iter().enumerate() {
                if trickler.write_all(&[*byte]).is_err() {
                    return i;
                }
                std::thread::sleep(std::time::Duration::from_millis(500));
            }
            whole.len()
        })
    };
    std::thread::sleep(std::time::Duration::from_millis(300));
    // The one worker is on the trickling connection; this one waits, then is answered.
    let other = w.lighttpd("hello.sh", &[]);
    assert_eq!(other.raw, w.direct("hello.sh"));
    assert!(crate::fastcgi::read_record(&mut trickler).is_none(), "the trickling connection was closed unanswered");
    assert!(sender.join().unwrap() < whole.len(), "cut off before the request was whole");
    assert!(kept.stderr().contains("PIGGYBACK_FCGI_REQUEST_DEADLINE"), "{}", kept.stderr());
}

#[test]
fn no_more_programs_run_at_once_than_the_fastcgi_wrapper_has_children() {
    let w = Wrapped::in_mode(Mode::FastCgi).set("PIGGYBACK_WRAP_CHILDREN", "2");
    let running = w.site.dir.path().join("running");
    std::fs::create_dir(&running).unwrap();
    chmod(&running, 0o777);
    let path = w.app.join("count.sh");
    std::fs::write(
        &path,
        format!(
            "#!/bin/sh\ntouch {dir}/$$\nsleep 0.5\nn=$(ls {dir} | wc -l)\nrm {dir}/$$\n\
             printf 'Content-Type: application/json\\n\\n{{\"running\": %s}}' \"$n\"\n",
            dir = running.display()
        ),
    )
    .unwrap();
    chmod(&path, 0o755);
    let counts: Vec<i64> = std::thread::scope(|scope| {
        let askers: Vec<_> =
            (0..5).map(|_| scope.spawn(|| w.lighttpd("count.sh", &[]).json()["running"].as_i64().unwrap())).collect();
        askers.into_iter().map(|a| a.join().unwrap()).collect()
    });
    assert_eq!(counts.len(), 5, "every request answered");
    assert!(counts.iter().all(|n| (1..=2).contains(n)), "at most two programs at once: {counts:?}");
}

#[test]
fn systemd_socket_activation_hands_the_fastcgi_wrapper_its_socket_on_fd_3() {
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    let w = Wrapped::new();
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("activated.sock");
    let listener = UnixListener::bind(&socket).unwrap();
    let fd = listener.as_raw_fd();
    let mut env: Vec<(String, OsString)> = w.base_env("GET", "");
    env.retain(|(k, _)| k.starts_with("PIGGYBACK_") || k == "PATH");
    env.push(var("PIGGYBACK_WRAP_CHILDREN", "1"));
    // As systemd starts a service: the socket on fd 3, LISTEN_PID the service's pid
    // (the shell's, which becomes the wrapper's), stdin not a socket.
    let mut command = Command::new("/bin/sh");
    command
        .args(["-c", "export LISTEN_PID=$$ LISTEN_FDS=1; exec \"$0\"", WRAPPER])
        .env_clear()
        .envs(env)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(std::fs::File::create(dir.path().join("stderr.log")).unwrap()));
    // SAFETY: dup2 between descriptors this process owns, in the child before exec.
    unsafe {
        command.pre_exec(move || {
            // On fd 3 already, it only has to outlive the exec.
            let moved = if fd == 3 { libc::fcntl(3, libc::F_SETFD, 0) == 0 } else { libc::dup2(fd, 3) == 3 };
            if moved { Ok(()) } else { Err(std::io::Error::last_os_error()) }
        });
    }
    let child = command.spawn().unwrap();
    drop(listener);
    let log = dir.path().join("stderr.log");
    let kept = KeptWrapper { child: Some(child), socket, log, _dir: dir };
    let answer = kept.ask(&fastcgi_params(&w, "hello.sh", &[]).into_iter().collect::<Vec<_>>(), b"");
    assert_eq!(answer.raw, w.direct("hello.sh"));
    let (status, _) = kept.stop_waiting();
    assert!(status.success(), "{status}");
}

#[test]
fn a_body_over_the_limit_is_answered_413_and_the_program_never_runs() {
    let w = Wrapped::in_mode(Mode::FastCgi).set("PIGGYBACK_WRAP_MAX_BODY", "1000");
    let path = w.app.join("ran.sh");
    let mark = w.app.join("ran");
    std::fs::write(
        &path,
        format!("#!/bin/sh\ntouch {}\nprintf 'Content-Type: application/json\\n\\n{{}}'\n", mark.display()),
    )
    .unwrap();
    chmod(&path, 0o755);
    let post = |size: usize| {
        let mut env = w.base_env("POST", "");
        env.push(var("CONTENT_LENGTH", size.to_string()));
        env.push(var("CONTENT_TYPE", "application/json"));
        w.request(&path, env, &vec![b'x'; size])
    };
    let over = post(1001);
    assert_eq!(over.status(), 413, "{}", over.text());
    assert_eq!(over.json()["error"]["code"], "too_large", "{}", over.text());
    assert!(over.stderr.contains("PIGGYBACK_WRAP_MAX_BODY"), "the log says which setting: {}", over.stderr);
    assert!(!mark.exists(), "the program did not run");
    // At the limit the program runs, and the same kept process goes on serving.
    let at = post(1000);
    assert_eq!(at.status(), 200, "{}; {}", at.text(), at.stderr);
    assert!(mark.exists(), "the program ran");
}

#[test]
fn a_relative_script_filename_is_refused_by_the_kept_wrapper() {
    let w = Wrapped::in_mode(Mode::FastCgi);
    for named in ["hello.sh", "app/hello.sh", "./hello.sh"] {
        let mut env = w.base_env("GET", "");
        env.push(var("SCRIPT_FILENAME", named));
        let answer = w.request(&w.app.join("hello.sh"), env, b"");
        answer.assert_refused("is not an absolute path");
    }
    // The same program named absolutely runs.
    assert_eq!(w.request(&w.app.join("hello.sh"), w.base_env("GET", ""), b"").status(), 200);
}

/// The settings file beside a kept wrapper (`../etc/piggyback-wrap.conf`) is read again
/// at the next request after it changes, as the CGI wrapper reads it on every request.
#[test]
fn a_kept_wrapper_reads_its_settings_file_again_when_it_changes() {
    let w = Wrapped::new();
    let install = tempfile::tempdir().unwrap();
    let (bin, etc) = (install.path().join("bin"), install.path().join("etc"));
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::create_dir_all(&etc).unwrap();
    let wrapper = bin.join("piggyback-wrap");
    std::fs::copy(WRAPPER, &wrapper).unwrap();
    let settings = etc.join("piggyback-wrap.conf");
    let other_root = w.site.dir.path().join("elsewhere");
    std::fs::create_dir_all(&other_root).unwrap();
    // The site's own settings (either engine), with the root this test moves.
    let site_settings: String = w
        .base_env("GET", "")
        .into_iter()
        .filter(|(k, _)| k.starts_with("PIGGYBACK_") && k != "PIGGYBACK_WRAP_ROOT")
        .map(|(k, v)| format!("{k}={}\n", v.to_string_lossy()))
        .collect();
    let write_settings = |root: &Path| {
        std::fs::write(&settings, format!("{site_settings}PIGGYBACK_WRAP_ROOT={}\n", root.display())).unwrap();
    };
    write_settings(&w.app);
    let socket = install.path().join("wrap.sock");
    let log = install.path().join("stderr.log");
    let listener = UnixListener::bind(&socket).unwrap();
    let mut child = Command::new(&wrapper)
        .env_clear()
        .env("PIGGYBACK_WRAP_CHILDREN", "1")
        .stdin(Stdio::from(std::os::fd::OwnedFd::from(listener)))
        .stdout(Stdio::null())
        .stderr(Stdio::from(std::fs::File::create(&log).unwrap()))
        .spawn()
        .unwrap();
    let ask = || {
        let params = fastcgi_params(&w, "hello.sh", &[]);
        let mut conn = std::os::unix::net::UnixStream::connect(&socket).unwrap();
        conn.set_read_timeout(Some(std::time::Duration::from_secs(60))).unwrap();
        conn.write_all(&crate::fastcgi::request_bytes(1, false, &params, b"")).unwrap();
        Answer { raw: crate::fastcgi::read_answer(&mut conn, 1).0, stderr: String::new() }
    };
    let before = ask();
    assert_eq!(before.status(), 200, "{}; {}", before.text(), String::from_utf8_lossy(&std::fs::read(&log).unwrap()));
    // The root moves elsewhere: the same program is now outside it.
    write_settings(&other_root);
    let after = ask();
    assert_eq!(after.status(), 403, "{}", after.text());
    // And back.
    write_settings(&w.app);
    assert_eq!(ask().status(), 200);
    // SAFETY: a signal to the process this test started.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    assert!(child.wait().unwrap().success());
}
