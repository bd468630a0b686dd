//! The program under the wrapper: its environment, stdin, stderr, timeout.

use super::*;
use std::path::Path;
use std::process::{Command, Stdio};

#[test]
fn a_wrapper_stopped_by_the_server_stops_its_program() {
    // lighttpd sends SIGTERM when the client goes away or its own timeout passes.
    let w = Wrapped::new();
    let path = w.app.join("slow.sh");
    let mut env = w.base_env("GET", "");
    env.push(var("SCRIPT_FILENAME", &path));
    let mut wrapper = Command::new(WRAPPER)
        .arg(&path)
        .env_clear()
        .envs(env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = std::io::BufReader::new(wrapper.stderr.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut stderr, &mut line).unwrap();
    let pid: u32 = line.trim().strip_prefix("pid ").and_then(|p| p.parse().ok()).unwrap_or_else(|| panic!("{line}"));
    assert!(Path::new(&format!("/proc/{pid}")).exists(), "the program runs");
    let term = Command::new("kill").arg("-TERM").arg(wrapper.id().to_string()).status().unwrap();
    assert!(term.success());
    let status = wrapper.wait().unwrap();
    assert!(status.success(), "{status}");
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
    assert!(rest.contains("stopped by the server"), "{rest}");
    let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    assert!(state.is_empty() || state.contains(") Z "), "the program {pid} is gone: {state}");
}

#[test]
fn the_program_sees_no_piggyback_setting_and_the_keys_path_only_when_let() {
    let w = Wrapped::new().set("PIGGYBACK_EMPTY", "omit").set("PIGGYBACK_TRUST_REMOTE_USER", "0");
    let env = w.lighttpd("env.pl", &[w.cookie("alice")]).json()["env"].clone();
    let names: Vec<&String> = env.as_object().unwrap().keys().filter(|k| k.starts_with("PIGGYBACK_")).collect();
    assert!(names.is_empty(), "the program sees {names:?}");
    let w = w.set("PIGGYBACK_WRAP_PASS_SECRET_FILE", "1");
    let env = w.lighttpd("env.pl", &[]).json()["env"].clone();
    let names: Vec<&String> = env.as_object().unwrap().keys().filter(|k| k.starts_with("PIGGYBACK_")).collect();
    assert_eq!(names, vec!["PIGGYBACK_SECRET_FILE"], "{env}");
    assert_eq!(env["PIGGYBACK_SECRET_FILE"], w.site.secret().to_str().unwrap());
}

#[test]
fn a_wrapper_started_with_sigchld_ignored_answers_without_waiting_for_the_timeout() {
    // A server may pass SIGCHLD ignored: the kernel then reaps the program itself, and
    // there is no child left to wait for.
    let w = Wrapped::new().set("PIGGYBACK_WRAP_TIMEOUT", "2");
    let path = w.app.join("hello.sh");
    let mut env = w.base_env("GET", "");
    env.push(var("SCRIPT_FILENAME", &path));
    env.extend(w.extra_env.iter().cloned());
    let mut command = Command::new(WRAPPER);
    command.arg(&path).env_clear().envs(env).stdin(Stdio::null());
    // SAFETY: signal(2) only, between fork and exec.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut command, || {
            libc::signal(libc::SIGCHLD, libc::SIG_IGN);
            Ok(())
        });
    }
    let out = command.output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.stdout, w.direct("hello.sh"));
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(!log.contains("PIGGYBACK_WRAP_TIMEOUT"), "{log}");
}
