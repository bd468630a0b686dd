//! The FastCGI responder: the programs over FastCGI, records, faults.

use super::*;
use crate::support::{Cgi, Program, Response, Site, parse_response, settle_spool, sqlite_only};
use piggyback::model::{MessageKind, NewMessage, UserId, now};
use piggyback::msq;
use piggyback::msq::spool::{FileRequest, Spool};
use serde_json::json;
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::Write;
use std::os::fd::OwnedFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};

const ABORT_REQUEST: u8 = 2;

const GET_VALUES: u8 = 9;

const GET_VALUES_RESULT: u8 = 10;

const UNKNOWN_TYPE: u8 = 11;

/// A program started as a FastCGI process manager starts it.
struct Responder {
    /// `None` once waited for.
    child: Option<Child>,
    socket: PathBuf,
    _dir: tempfile::TempDir,
}

impl Responder {
    /// `program` with a listening socket on fd 0 and `settings` as its whole environment.
    fn start(program: Program, settings: &[(&str, &OsString)]) -> Responder {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("fcgi.sock");
        let listener = UnixListener::bind(&socket).unwrap();
        let child = Command::new(program.executable())
            .env_clear()
            .envs(settings.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::from(OwnedFd::from(listener)))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        Responder { child: Some(child), socket, _dir: dir }
    }

    /// `program` for `site`: its database (and key) in the process environment.
    fn for_site(program: Program, site: &Site) -> Responder {
        let db: OsString = site.db.clone().into();
        Responder::start(program, &[("PIGGYBACK_DB", &db)])
    }

    fn connect(&self) -> UnixStream {
        UnixStream::connect(&self.socket).unwrap()
    }

    /// One request on a connection of its own (closed after the answer).
    fn ask(&self, cgi: &Cgi) -> Response {
        let mut conn = self.connect();
        let response = ask_on(&mut conn, 1, false, cgi);
        assert!(read_record(&mut conn).is_none(), "the connection is closed without FCGI_KEEP_CONN");
        response
    }

    fn signal(&self, signal: libc::c_int) {
        let pid = self.child.as_ref().expect("running").id();
        // SAFETY: a signal to the child this test started.
        assert_eq!(unsafe { libc::kill(pid as libc::pid_t, signal) }, 0);
    }

    /// Waits for the process; its status and stderr.
    fn finish(mut self) -> (ExitStatus, String) {
        let out = self.child.take().expect("running").wait_with_output().unwrap();
        (out.status, String::from_utf8_lossy(&out.stderr).into_owned())
    }

    fn stop(self) -> String {
        self.signal(libc::SIGTERM);
        let (status, stderr) = self.finish();
        assert!(status.success(), "exit status {status}; stderr: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
        stderr
    }
}

impl Drop for Responder {
    /// A test that failed leaves no process behind.
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A request sent on an open connection, its answer parsed as a CGI response.
fn ask_on(conn: &mut UnixStream, id: u16, keep_conn: bool, cgi: &Cgi) -> Response {
    let env = fastcgi_params(cgi);
    conn.write_all(&request_bytes(id, keep_conn, &env, cgi.body_bytes())).unwrap();
    let (stdout, status) = read_answer(conn, id);
    assert_eq!(status, 0, "FCGI_REQUEST_COMPLETE");
    parse_response(&stdout, cgi.is_head())
}

/// The request's variables as a web server sends them over FastCGI: its settings come
/// from the process environment, so they are left out unless a test adds them.
fn fastcgi_params(cgi: &Cgi) -> BTreeMap<String, OsString> {
    let mut env = cgi.env();
    env.remove("PIGGYBACK_DB");
    env
}

#[test]
fn every_program_answers_over_fastcgi_as_it_does_over_cgi() {
    let site = site();
    for program in Program::ALL {
        let fcgi = Responder::for_site(program, &site);
        let request = site.cgi(program).user("alice");
        let over_fcgi = fcgi.ask(&request);
        let over_cgi = request.run();
        over_fcgi.assert_status(200);
        assert_eq!(over_fcgi.json, over_cgi.json, "{}", program.name());
        let head = fcgi.ask(&site.cgi(program).user("alice").method("HEAD"));
        head.assert_status(200);
        assert!(head.body.is_empty());
        fcgi.stop();
    }
}

#[test]
fn announcements_are_made_once_across_fastcgi_and_cgi_processes() {
    let site = site();
    let profile = Responder::for_site(Program::Profile, &site);
    let messages = Responder::for_site(Program::Messages, &site);
    let mut keep = profile.connect();

    let first = site.send("bob", "alice", "one", "first");
    site.piggyback_ok(&["drain"]);
    let r = ask_on(&mut keep, 1, true, &site.cgi(Program::Profile).user("alice"));
    assert_eq!(r.announced(), vec![first]);
    assert!(site.get(Program::Profile, "alice", "").announced().is_empty(), "CGI does not announce it again");

    let second = site.send("bob", "alice", "two", "second");
    site.piggyback_ok(&["drain"]);
    assert_eq!(site.get(Program::Friends, "alice", "").announced(), vec![second]);
    let r = ask_on(&mut keep, 2, true, &site.cgi(Program::Profile).user("alice"));
    assert!(r.announced().is_empty());
    assert_eq!(r.counts(), (2, 2, 0));

    // A send through the FastCGI messages process, announced by the kept profile one.
    let sent = messages.ask(
        &site.cgi(Program::Messages).user("bob").post("", json!({"to": "alice", "subject": "s", "body": "third"})),
    );
    sent.assert_status(201);
    let r = ask_on(&mut keep, 3, true, &site.cgi(Program::Profile).user("alice"));
    assert_eq!(r.announced().len(), 1);
    assert_eq!(r.site()["items"][0]["id"], sent.json["sent"]["message_id"]);
    drop(keep);
    profile.stop();
    messages.stop();
}

/// A kept process remembers an empty `new/` and then costs one `stat` per drain (the
/// spool's `SpoolMemory`); a send that waits in the spool (a 202, a send from another
/// host's program) changes the folder, and the next request applies and announces it.
#[test]
fn a_send_waiting_in_the_spool_reaches_a_process_that_saw_the_spool_empty() {
    let site = site();
    let spool = Spool::new(site.spool());
    spool.create().unwrap();
    // Settled long ago, so the first empty listing is remembered.
    let long_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(60);
    std::fs::File::open(site.spool().join("new")).unwrap().set_modified(long_ago).unwrap();
    let profile = Responder::for_site(Program::Profile, &site);
    assert!(profile.ask(&site.cgi(Program::Profile).user("alice")).announced().is_empty());
    assert!(profile.ask(&site.cgi(Program::Profile).user("alice")).announced().is_empty());

    let request_id = msq::new_request_id();
    spool
        .enqueue(&FileRequest::Send(NewMessage {
            request_id: request_id.clone(),
            from: UserId(site.id_of("bob")),
            to: UserId(site.id_of("alice")),
            subject: "queued".into(),
            body: "waited in new/".into(),
            kind: MessageKind::Note,
            idempotency_key: None,
            sent_at: now(),
        }))
        .unwrap();
    settle_spool(&site.spool());
    let r = profile.ask(&site.cgi(Program::Profile).user("alice"));
    assert_eq!(r.site()["items"].as_array().map(Vec::len), Some(1), "{}", r.json);
    assert_eq!(r.site()["items"][0]["subject"], "queued");
    assert!(std::fs::read_dir(site.spool().join("new")).unwrap().next().is_none(), "applied");
    profile.stop();
}

/// A kept process keeps the session key while its file is unchanged; a rotated key file
/// (a new file renamed over the old one, as SECURITY.md says) takes effect at
/// the next request: cookies of the old key are refused, the new key's accepted.
#[test]
fn a_rotated_session_key_takes_effect_at_the_next_request() {
    let site = Site::keyed(&["alice"]);
    let long_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(60);
    std::fs::File::options().write(true).open(site.secret()).unwrap().set_modified(long_ago).unwrap();
    let profile = Responder::for_site(Program::Profile, &site);
    let old = site.token("alice");
    for _ in 0..2 {
        profile.ask(&site.cgi(Program::Profile).cookie(&old)).assert_status(200);
    }
    let rotated = site.secret().with_extension("new");
    std::fs::write(&rotated, [b'k'; 32]).unwrap();
    std::fs::rename(&rotated, site.secret()).unwrap();
    let r = profile.ask(&site.cgi(Program::Profile).cookie(&old));
    r.assert_status(401);
    assert_eq!(r.json["error"]["code"], "invalid_session", "{}", r.json);
    let new = site.token("alice");
    profile.ask(&site.cgi(Program::Profile).cookie(&new)).assert_status(200);
    profile.stop();
}

#[test]
fn nothing_of_one_request_survives_into_the_next() {
    let site = site();
    let other = Site::new(&["bob"]);
    // The process environment holds what a careless process manager might pass on: it
    // must never identify anyone.
    let db: OsString = site.db.clone().into();
    let mallory: OsString = "alice".into();
    let fcgi = Responder::start(Program::Messages, &[("PIGGYBACK_DB", &db), ("REMOTE_USER", &mallory)]);
    let mut conn = fcgi.connect();

    // Identity: alice, then nobody.
    ask_on(&mut conn, 1, true, &site.cgi(Program::Messages).user("alice")).assert_status(200);
    let anonymous = ask_on(&mut conn, 2, true, &site.cgi(Program::Messages));
    anonymous.assert_status(401);
    assert_eq!(anonymous.error_code(), "unauthorized");

    // Configuration from parameters: another database for one request only.
    let elsewhere = site.cgi(Program::Messages).user("alice").var_os("PIGGYBACK_DB", &other.db);
    let mut elsewhere_env = elsewhere.env();
    elsewhere_env.insert("PIGGYBACK_DB".into(), other.db.clone().into());
    conn.write_all(&request_bytes(3, true, &elsewhere_env, b"")).unwrap();
    let (stdout, _) = read_answer(&mut conn, 3);
    let r = parse_response(&stdout, false);
    r.assert_status(401);
    assert_eq!(r.error_code(), "unknown_user", "alice has no account in the other database");
    ask_on(&mut conn, 4, true, &site.cgi(Program::Messages).user("alice")).assert_status(200);

    // A body shorter than its CONTENT_LENGTH: refused, and the next body is its own.
    let short = site
        .cgi(Program::Messages)
        .user("bob")
        .method("POST")
        .body("application/json", br#"{"to":"alice","bo"#)
        .content_length("200");
    let r = ask_on(&mut conn, 5, true, &short);
    r.assert_status(400);
    let whole =
        site.cgi(Program::Messages).user("bob").post("", json!({"to": "alice", "subject": "s", "body": "whole"}));
    ask_on(&mut conn, 6, true, &whole).assert_status(201);
    let inbox = ask_on(&mut conn, 7, true, &site.cgi(Program::Messages).user("alice"));
    let bodies: Vec<&str> =
        inbox.json["messages"].as_array().unwrap().iter().filter_map(|m| m["snippet"].as_str()).collect();
    assert_eq!(bodies, vec!["whole"], "{}", inbox.json);
    drop(conn);
    fcgi.stop();
}

#[test]
fn management_records_and_refusals() {
    let site = site();
    let fcgi = Responder::for_site(Program::Profile, &site);
    let mut conn = fcgi.connect();
    let mut asked = Vec::new();
    for name in ["FCGI_MAX_CONNS", "FCGI_MAX_REQS", "FCGI_MPXS_CONNS"] {
        pair(&mut asked, name.as_bytes(), b"");
    }
    conn.write_all(&record(GET_VALUES, 0, &asked, true)).unwrap();
    let (kind, id, content) = read_record(&mut conn).unwrap();
    assert_eq!((kind, id), (GET_VALUES_RESULT, 0));
    let mut expected = Vec::new();
    for (name, value) in [("FCGI_MAX_CONNS", "1"), ("FCGI_MAX_REQS", "1"), ("FCGI_MPXS_CONNS", "0")] {
        pair(&mut expected, name.as_bytes(), value.as_bytes());
    }
    assert_eq!(content, expected);

    conn.write_all(&record(200, 0, b"", true)).unwrap();
    assert_eq!(read_record(&mut conn).unwrap(), (UNKNOWN_TYPE, 0, vec![200, 0, 0, 0, 0, 0, 0, 0]));

    // An authorizer is refused; a second request while one is active cannot be multiplexed.
    conn.write_all(&begin(5, 2, true)).unwrap();
    assert_eq!(read_answer(&mut conn, 5), (vec![], 3), "FCGI_UNKNOWN_ROLE");
    let cgi = site.cgi(Program::Profile).user("alice");
    let env = fastcgi_params(&cgi);
    let whole = request_bytes(1, true, &env, b"");
    // The BEGIN_REQUEST record (16 bytes), then another request's, then the rest.
    let (head, tail) = whole.split_at(16);
    conn.write_all(head).unwrap();
    conn.write_all(&begin(2, 1, true)).unwrap();
    assert_eq!(read_answer(&mut conn, 2), (vec![], 1), "FCGI_CANT_MPX_CONN");
    conn.write_all(tail).unwrap();
    let (stdout, status) = read_answer(&mut conn, 1);
    assert_eq!(status, 0);
    parse_response(&stdout, false).assert_status(200);

    // An aborted request is ended and never runs.
    conn.write_all(&begin(3, 1, true)).unwrap();
    conn.write_all(&record(ABORT_REQUEST, 3, b"", true)).unwrap();
    assert_eq!(read_answer(&mut conn, 3), (vec![], 0));
    drop(conn);
    fcgi.stop();
}

#[test]
fn a_malformed_record_or_a_vanished_client_ends_only_its_connection() {
    let site = site();
    let fcgi = Responder::for_site(Program::Profile, &site);
    let alice = site.cgi(Program::Profile).user("alice");

    let mut bad = fcgi.connect();
    bad.write_all(&[9, 1, 0, 1, 0, 0, 0, 0]).unwrap();
    assert!(read_record(&mut bad).is_none(), "a wrong version closes the connection");

    let mut bad = fcgi.connect();
    bad.write_all(&begin(1, 1, true)).unwrap();
    bad.write_all(&record(PARAMS, 1, &[0x85, 1, 2], true)).unwrap();
    bad.write_all(&record(PARAMS, 1, &[], true)).unwrap();
    bad.write_all(&record(STDIN, 1, &[], true)).unwrap();
    assert!(read_record(&mut bad).is_none(), "broken name-value pairs close the connection");

    let mut gone = fcgi.connect();
    let whole = request_bytes(1, false, &fastcgi_params(&alice), b"");
    gone.write_all(&whole[..whole.len() / 2]).unwrap();
    drop(gone);

    // A client that asks and leaves before the answer.
    let mut rude = fcgi.connect();
    rude.write_all(&whole).unwrap();
    drop(rude);

    fcgi.ask(&alice).assert_status(200);
    let stderr = fcgi.stop();
    assert!(stderr.contains("malformed FastCGI input"), "{stderr}");
}

#[test]
fn sigterm_finishes_the_request_in_progress_then_exits_0() {
    let site = site();
    let fcgi = Responder::for_site(Program::Messages, &site);
    let mut conn = fcgi.connect();
    let send =
        site.cgi(Program::Messages).user("bob").post("", json!({"to": "alice", "subject": "s", "body": "in flight"}));
    // Everything but the body's records (an empty body's stream is one 8-byte record).
    let head = request_bytes(1, true, &fastcgi_params(&send), b"");
    let head = &head[..head.len() - 8];
    let tail = stream(STDIN, 1, send.body_bytes(), 1000);
    conn.write_all(head).unwrap();
    // A management record answered proves the process has read the request's first half.
    let mut asked = Vec::new();
    pair(&mut asked, b"FCGI_MAX_REQS", b"");
    conn.write_all(&record(GET_VALUES, 0, &asked, true)).unwrap();
    assert_eq!(read_record(&mut conn).unwrap().0, GET_VALUES_RESULT);

    fcgi.signal(libc::SIGTERM);
    conn.write_all(&tail).unwrap();
    let (stdout, _) = read_answer(&mut conn, 1);
    let sent = parse_response(&stdout, false);
    sent.assert_status(201);
    let (status, stderr) = fcgi.finish();
    assert!(status.success(), "{status} {stderr}");
    assert!(read_record(&mut conn).is_none(), "closed after the request in progress");

    let inbox = site.get(Program::Messages, "alice", "");
    assert_eq!(inbox.json["messages"][0]["id"], sent.json["sent"]["message_id"]);
}

#[test]
fn a_process_killed_after_accepting_a_send_loses_nothing() {
    let site = site();
    let fcgi = Responder::for_site(Program::Messages, &site);
    let sent = fcgi
        .ask(&site.cgi(Program::Messages).user("bob").post("", json!({"to": "alice", "subject": "s", "body": "kept"})));
    sent.assert_status(201);
    fcgi.signal(libc::SIGKILL);
    let (status, _) = fcgi.finish();
    assert!(!status.success());
    let inbox = site.get(Program::Messages, "alice", "");
    assert_eq!(inbox.json["messages"][0]["id"], sent.json["sent"]["message_id"]);
}

#[test]
fn a_panicking_handler_answers_500_and_the_connection_serves_on() {
    fn panics_on_post(
        ctx: &piggyback::handlers::Context<'_>,
        request: &piggyback::http::Request,
    ) -> Result<piggyback::http::Reply, piggyback::http::ApiError> {
        assert!(request.method != piggyback::http::Method::Post, "a handler bug");
        piggyback::handlers::profile(ctx, request)
    }
    let site = site();
    let (mut ours, mut theirs) = UnixStream::pair().unwrap();
    let server = std::thread::spawn(move || {
        let waiter = piggyback::gateway::fcgi::Waiter::install().unwrap();
        let mut responder = piggyback::gateway::fcgi::Responder::new(panics_on_post);
        responder.connection(&mut theirs, &waiter)
    });
    let with_db = |cgi: Cgi| cgi.var_os("PIGGYBACK_DB", &site.db);
    let get = with_db(site.cgi(Program::Profile).user("alice"));
    let post = with_db(site.cgi(Program::Profile).user("alice").post("", json!({"bio": "x"})));
    let mut ask = |id: u16, cgi: &Cgi| {
        ours.write_all(&request_bytes(id, true, &cgi.env(), cgi.body_bytes())).unwrap();
        let (stdout, _) = read_answer(&mut ours, id);
        parse_response(&stdout, false)
    };
    ask(1, &get).assert_status(200);
    let r = ask(2, &post);
    r.assert_status(500);
    assert_eq!(r.error_code(), "internal_error");
    ask(3, &get).assert_status(200);
    drop(ours);
    assert_eq!(server.join().unwrap(), piggyback::gateway::fcgi::Wake::Ready);
}

#[test]
fn a_client_that_stalls_is_dropped_and_the_process_then_serves_the_next_one() {
    let site = site();
    let db: OsString = site.db.clone().into();
    let one_second: OsString = "1".into();
    let fcgi = Responder::start(Program::Profile, &[("PIGGYBACK_DB", &db), ("PIGGYBACK_FCGI_IO_TIMEOUT", &one_second)]);
    let alice = site.cgi(Program::Profile).user("alice");
    // Without the bound a stalled connection holds the only process for ever: this
    // client would then wait for ever too, so it gives up (and fails) after a minute.
    let patient = |conn: &UnixStream| conn.set_read_timeout(Some(std::time::Duration::from_secs(60))).unwrap();

    // A request without its body's records (an empty body's stream is one 8-byte
    // record), then silence.
    let mut stalled = fcgi.connect();
    patient(&stalled);
    let whole = request_bytes(1, false, &fastcgi_params(&alice), b"");
    stalled.write_all(&whole[..whole.len() - 8]).unwrap();
    // A management record answered: the process is on this connection, mid-request.
    let mut asked = Vec::new();
    pair(&mut asked, b"FCGI_MAX_REQS", b"");
    stalled.write_all(&record(GET_VALUES, 0, &asked, true)).unwrap();
    assert_eq!(read_record(&mut stalled).unwrap().0, GET_VALUES_RESULT);
    let mut next = fcgi.connect();
    patient(&next);
    ask_on(&mut next, 1, false, &alice).assert_status(200);
    assert!(read_record(&mut stalled).is_none(), "the stalled connection was closed");

    // A kept connection with nothing more to ask: closed too, and the next one served.
    let mut kept = fcgi.connect();
    patient(&kept);
    ask_on(&mut kept, 1, true, &alice).assert_status(200);
    let mut after = fcgi.connect();
    patient(&after);
    ask_on(&mut after, 1, false, &alice).assert_status(200);
    assert!(read_record(&mut kept).is_none(), "the idle kept connection was closed");

    let stderr = fcgi.stop();
    assert!(stderr.contains("in the middle of a request (PIGGYBACK_FCGI_IO_TIMEOUT)"), "{stderr}");
}

#[test]
fn a_client_that_reads_no_answer_is_dropped_and_the_process_then_serves_the_next_one() {
    let site = site();
    let db: OsString = site.db.clone().into();
    let one_second: OsString = "1".into();
    let fcgi = Responder::start(Program::Profile, &[("PIGGYBACK_DB", &db), ("PIGGYBACK_FCGI_IO_TIMEOUT", &one_second)]);
    let alice = site.cgi(Program::Profile).user("alice");
    // Requests on a kept connection whose answers are never read: once the socket's
    // buffers are full the process can write no more. Far more than they hold.
    let deaf = fcgi.connect();
    let one = request_bytes(1, true, &fastcgi_params(&alice), b"");
    let writer = {
        let mut deaf = deaf.try_clone().unwrap();
        std::thread::spawn(move || {
            for _ in 0..5000 {
                // Fails once the process has closed the connection: that is the point.
                if deaf.write_all(&one).is_err() {
                    return true;
                }
            }
            false
        })
    };
    let mut next = fcgi.connect();
    next.set_read_timeout(Some(std::time::Duration::from_secs(60))).unwrap();
    ask_on(&mut next, 1, false, &alice).assert_status(200);
    assert!(writer.join().unwrap(), "the connection that read nothing was closed");
    let _ = deaf.shutdown(std::net::Shutdown::Both);
    let stderr = fcgi.stop();
    assert!(stderr.contains("read nothing of an answer"), "{stderr}");
}

#[test]
fn a_client_that_trickles_its_request_is_cut_off_at_the_deadline_while_a_second_is_answered() {
    let site = site();
    let db: OsString = site.db.clone().into();
    let (io, deadline): (OsString, OsString) = ("3".into(), "2".into());
    let fcgi = Responder::start(
        Program::Profile,
        &[("PIGGYBACK_DB", &db), ("PIGGYBACK_FCGI_IO_TIMEOUT", &io), ("PIGGYBACK_FCGI_REQUEST_DEADLINE", &deadline)],
    );
    let alice = site.cgi(Program::Profile).user("alice");
    let whole = request_bytes(1, false, &fastcgi_params(&alice), b"");
    let mut trickler = fcgi.connect();
    trickler.set_read_timeout(Some(std::time::Duration::from_secs(60))).unwrap();
    let sender = trickle(trickler.try_clone().unwrap(), whole.clone());
    // The process is on the trickling connection; the second client waits in the
    // listening socket's queue and is answered once the first is cut off.
    std::thread::sleep(std::time::Duration::from_millis(300));
    let mut second = fcgi.connect();
    second.set_read_timeout(Some(std::time::Duration::from_secs(60))).unwrap();
    ask_on(&mut second, 1, false, &alice).assert_status(200);
    assert!(read_record(&mut trickler).is_none(), "the trickling connection was closed, unanswered");
    let sent = sender.join().unwrap();
    assert!(sent < whole.len(), "the trickling request was cut off before it was whole ({sent} bytes sent)");
    let stderr = fcgi.stop();
    assert!(stderr.contains("(PIGGYBACK_FCGI_REQUEST_DEADLINE); closed the connection"), "{stderr}");
}

/// A FastCGI process keeps its connection to the spool's send-limits database; a
/// limits file replaced meanwhile (a spool removed and made again) must be the one it
/// counts in next, or it would go on counting in the old, unlinked file, where no other
/// process sees its counts.
#[test]
fn a_kept_process_counts_sends_in_a_limits_file_made_again() {
    let site = site();
    if !sqlite_only(&site, "the limits are counted in the database") {
        return;
    }
    let messages = Responder::for_site(Program::Messages, &site);
    let send = |i: usize| {
        let body = json!({"to": "alice", "subject": format!("limited {i}"), "body": "b"});
        messages.ask(&site.cgi(Program::Messages).user("bob").var("PIGGYBACK_SEND_RATE", "2").post("", body)).status
    };
    assert_eq!([send(1), send(2), send(3)], [201, 201, 429], "two sends a minute");
    let limits = site.spool().join("limits.db");
    for suffix in ["", "-wal", "-shm"] {
        let mut path = limits.clone().into_os_string();
        path.push(suffix);
        let _ = std::fs::remove_file(path);
    }
    // Made again by another process before this one sends (an empty file is an empty
    // database, as the first sender makes it).
    std::fs::write(&limits, b"").unwrap();
    // A new file counts from nothing, in this process as in any other.
    assert_eq!([send(4), send(5), send(6)], [201, 201, 429], "counted in the new file");
    assert!(limits.exists());
    messages.stop();
}
