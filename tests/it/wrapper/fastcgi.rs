//! The wrapper as a FastCGI responder: kept between requests, bounded, socket-activated.

use super::*;
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
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
    let sender = crate::fastcgi::trickle(trickler.try_clone().unwrap(), whole.clone());
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

/// The session cookie's key file opened since `watch` was made: inotify's `IN_OPEN`
/// events on it.
fn opens(watch: &OwnedFd) -> usize {
    let mut buf = [0u8; 4096];
    let mut count = 0;
    loop {
        // SAFETY: reads into a buffer of its length from a descriptor the test owns.
        let n = unsafe { libc::read(watch.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        let Ok(n) = usize::try_from(n) else { return count };
        let mut at = 0;
        // Each event: wd, mask, cookie, len (4 bytes each), then `len` bytes of name.
        while at + 16 <= n {
            let len = u32::from_ne_bytes(buf[at + 12..at + 16].try_into().unwrap()) as usize;
            count += 1;
            at += 16 + len;
        }
    }
}

fn tasks(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task")).unwrap().count()
}

#[test]
fn a_kept_fastcgi_wrapper_starts_no_thread_and_rereads_the_key_and_the_spool_only_when_they_change() {
    // One worker: the process itself answers every request.
    let w = Wrapped::in_mode(Mode::FastCgi).set("PIGGYBACK_WRAP_CHILDREN", "1");
    // A key file written long ago may be remembered at once (a fresh one is read again
    // until its time stamp has settled).
    let long_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(60);
    std::fs::File::options().write(true).open(w.site.secret()).unwrap().set_modified(long_ago).unwrap();
    let path = w.app.join("slow-reader.sh");
    std::fs::write(
        &path,
        "#!/bin/sh\necho started >&2\nsleep 1\nprintf 'Content-Type: application/json\\n\\n{\"slow\": 1}'\n",
    )
    .unwrap();
    chmod(&path, 0o755);
    w.site.deliver("bob", "alice", "hello");
    // So is the spool's `new/`, emptied long ago: the worker remembers it empty.
    std::fs::File::open(w.site.spool().join("new")).unwrap().set_modified(long_ago).unwrap();
    let old = w.cookie("alice");
    let identified = |answer: &Answer| answer.json().get("site_messages").is_some();
    let first = w.lighttpd("hello.sh", std::slice::from_ref(&old));
    assert!(identified(&first), "{}", first.text());
    let kept = w.kept();
    // SAFETY: plain calls on a descriptor made here and a NUL-terminated path.
    let watch = unsafe {
        let fd = libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC);
        assert!(fd >= 0, "{}", std::io::Error::last_os_error());
        let watch = OwnedFd::from_raw_fd(fd);
        let name = std::ffi::CString::new(w.site.secret().as_os_str().as_bytes()).unwrap();
        assert!(libc::inotify_add_watch(fd, name.as_ptr(), libc::IN_OPEN) >= 0);
        watch
    };
    for _ in 0..30 {
        let answer = w.lighttpd("hello.sh", std::slice::from_ref(&old));
        assert!(identified(&answer), "{}", answer.text());
        let mut env = fastcgi_params(&w, "env.pl", std::slice::from_ref(&old)).into_iter().collect::<Vec<_>>();
        env.push(var("REQUEST_METHOD", "POST"));
        env.push(var("CONTENT_LENGTH", "4"));
        let answer = kept.ask(&env, b"body");
        assert_eq!(answer.json()["body"], "body", "{}", answer.text());
    }
    assert_eq!(opens(&watch), 0, "the kept key was used, not the file read again");
    assert_eq!(tasks(kept.pid()), 1, "no thread outlives a request");
    // While a program runs, with a body larger than a pipe that it does not read, the
    // worker is still one thread.
    let mut conn = kept.connect();
    let params = fastcgi_params(&w, "slow-reader.sh", &[var("REQUEST_METHOD", "POST")]);
    conn.write_all(&crate::fastcgi::request_bytes(1, false, &params, &vec![b'x'; 300_000])).unwrap();
    let mut waited = 0;
    while !kept.stderr().contains("started") {
        assert!(waited < 600, "the program never started: {}", kept.stderr());
        std::thread::sleep(std::time::Duration::from_millis(50));
        waited += 1;
    }
    assert_eq!(tasks(kept.pid()), 1, "no thread for a running request");
    let (raw, _) = crate::fastcgi::read_answer(&mut conn, 1);
    assert_eq!(Answer { raw, stderr: String::new() }.json()["slow"], 1);
    // A message waiting in the spool still reaches the worker that saw it empty.
    w.site.piggyback_ok(&["send", "--from", "bob", "--to", "alice", "--subject", "queued", "--body", "b"]);
    crate::support::settle_spool(&w.site.spool());
    let answer = w.lighttpd("hello.sh", std::slice::from_ref(&old));
    assert_eq!(subjects(&answer), vec!["queued"], "{}", answer.text());
    // A new key file (renamed over the old one) is noticed at the next request.
    let rotated = w.site.secret().with_extension("new");
    std::fs::write(&rotated, [b'k'; 32]).unwrap();
    std::fs::rename(&rotated, w.site.secret()).unwrap();
    let new = w.cookie("alice");
    let answer = w.lighttpd("hello.sh", std::slice::from_ref(&new));
    assert!(identified(&answer), "the new key's cookie is accepted: {}", answer.text());
    let answer = w.lighttpd("hello.sh", std::slice::from_ref(&old));
    assert!(!identified(&answer), "the old key's cookie is not: {}", answer.text());
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
    let kept = KeptWrapper::start_at(&wrapper, &[var("PIGGYBACK_WRAP_CHILDREN", "1")]);
    let ask = || {
        let params: Vec<(String, OsString)> = fastcgi_params(&w, "hello.sh", &[]).into_iter().collect();
        kept.ask(&params, b"")
    };
    let before = ask();
    assert_eq!(before.status(), 200, "{}; {}", before.text(), before.stderr);
    // The root moves elsewhere: the same program is now outside it.
    write_settings(&other_root);
    let after = ask();
    assert_eq!(after.status(), 403, "{}", after.text());
    // And back.
    write_settings(&w.app);
    assert_eq!(ask().status(), 200);
    let (status, log) = kept.stop_waiting();
    assert!(status.success(), "{status}: {log}");
}
