//! How each server starts the wrapper, and what it refuses to run.

use super::*;
use std::ffi::OsString;
use std::path::Path;
use std::process::Command;

#[test]
fn apache_action_runs_the_file_in_path_translated_without_its_extra_path() {
    let w = Wrapped::new();
    w.site.deliver("bob", "alice", "via apache");
    let alice = w.cookie("alice");
    let answer = w.apache("/app/env.pl/extra/path", "", std::slice::from_ref(&alice));
    let json = answer.json();
    assert_eq!(json["env"]["SCRIPT_NAME"], "/app/env.pl");
    assert_eq!(json["env"]["PATH_INFO"], "/extra/path");
    assert_eq!(json["env"]["PATH_TRANSLATED"], format!("{}/extra/path", w.docroot.display()));
    assert!(json["env"].get("REDIRECT_HANDLER").is_none());
    assert_eq!(answer.announced().len(), 1);
}

#[test]
fn arguments_from_a_query_string_never_reach_the_program() {
    let w = Wrapped::new();
    // Apache turns `?-s` and `?foo+bar` into argv (RFC 3875 4.4): php-cgi's CVE-2012-1823.
    let json = w.apache("/app/env.pl", "foo+bar", &[]).json();
    assert_eq!(json["argv"], serde_json::json!([]));
    let php = w.apache("/app/hello.php", "-s", &[]);
    assert_eq!(php.json()["from"], "php", "php-cgi ran the program, did not show its source: {}", php.text());
    assert!(!php.text().contains("<?php"));
    let php = w.apache("/app/hello.php", "-d+allow_url_include%3d1", &[]);
    assert_eq!(php.json()["argv"], serde_json::json!([]), "{}", php.text());
}

#[test]
fn a_direct_request_of_the_wrapper_on_apache_is_refused() {
    let w = Wrapped::new();
    let translated = format!("{}/app/hello.sh", w.docroot.display());
    // GET /cgi-bin/piggyback-wrap/app/hello.sh: no REDIRECT_* at all.
    let mut env = w.base_env("GET", "");
    env.push(var("SCRIPT_FILENAME", WRAPPER));
    env.push(var("PATH_INFO", "/app/hello.sh"));
    env.push(var("PATH_TRANSLATED", &translated));
    w.run(WRAPPER, &[], env.clone(), b"").assert_refused("direct request");
    // A client's `Redirect-Status:` and `Redirect-Handler:` headers count for nothing.
    let mut forged = env.clone();
    forged.push(var("HTTP_REDIRECT_STATUS", "200"));
    forged.push(var("HTTP_REDIRECT_HANDLER", "piggyback-wrap"));
    w.run(WRAPPER, &[], forged, b"").assert_refused("direct request");
    // The query naming the target as argv: it is not SCRIPT_FILENAME (the wrapper).
    w.run(WRAPPER, &[translated.clone().into()], env.clone(), b"").assert_refused("not exactly SCRIPT_FILENAME");
    // Another handler, or a handler with no REDIRECT_STATUS.
    let mut other = env.clone();
    other.push(var("REDIRECT_STATUS", "200"));
    other.push(var("REDIRECT_HANDLER", "cgi-script"));
    w.run(WRAPPER, &[], other, b"").assert_refused("REDIRECT_HANDLER");
    let mut no_status = env;
    no_status.push(var("REDIRECT_HANDLER", "piggyback-wrap"));
    w.run(WRAPPER, &[], no_status, b"").assert_refused("without REDIRECT_STATUS");
}

#[test]
fn on_lighttpd_exactly_one_argument_equal_to_script_filename() {
    let w = Wrapped::new();
    let path = w.app.join("hello.sh");
    let mut env = w.base_env("GET", "");
    env.push(var("SCRIPT_FILENAME", &path));
    let other = w.app.join("page.sh");
    for args in [vec![], vec![path.clone().into_os_string(), "-x".into()], vec![other.into_os_string()]] {
        w.run(WRAPPER, &args, env.clone(), b"").assert_refused("SCRIPT_FILENAME");
    }
}

#[test]
fn busybox_httpd_passes_the_file_name_and_runs_the_wrapper_in_the_programs_folder() {
    let w = Wrapped::new();
    let path = w.app.join("hello.sh");
    let mut env = w.base_env("GET", "");
    env.push(var("SCRIPT_FILENAME", &path));
    env.push(w.cookie("alice"));
    let run_in = |cwd: &Path, env: Vec<(String, OsString)>| {
        let out = Command::new(WRAPPER).arg("hello.sh").env_clear().envs(env).current_dir(cwd).output().unwrap();
        Answer { raw: out.stdout, stderr: String::from_utf8_lossy(&out.stderr).into_owned() }
    };
    let answer = run_in(&w.app, env.clone());
    assert!(answer.json().get("site_messages").is_some(), "{}", answer.text());
    // The same name from another folder is not the program SCRIPT_FILENAME names.
    run_in(w.site.dir.path(), env).assert_refused("SCRIPT_FILENAME");
}

#[test]
fn the_wrapper_never_runs_itself() {
    let w = Wrapped::new().set("PIGGYBACK_WRAP_EXTENSIONS", ".cgi");
    let copy = w.app.join("self.cgi");
    std::fs::copy(WRAPPER, &copy).unwrap();
    chmod(&copy, 0o755);
    let mut env = w.base_env("GET", "");
    env.push(var("SCRIPT_FILENAME", &copy));
    w.run(copy.to_str().unwrap(), &[copy.clone().into()], env, b"").assert_refused("itself");
}

#[test]
fn under_fcgiwrap_the_target_comes_from_the_servers_parameter_only() {
    let w = Wrapped::new();
    let alice = w.cookie("alice");
    let mut env = w.base_env("GET", "");
    env.push(var("SCRIPT_FILENAME", WRAPPER));
    env.push(var("SCRIPT_NAME", "/app/env.pl"));
    env.push(var("PATH_INFO", "/x"));
    env.push(var("PIGGYBACK_WRAP_TARGET", w.app.join("env.pl")));
    env.push(alice);
    let json = w.run(WRAPPER, &[], env.clone(), b"").json();
    assert_eq!(json["env"]["SCRIPT_NAME"], "/app/env.pl");
    assert_eq!(json["env"]["PATH_INFO"], "/x");
    assert!(json["env"].get("PIGGYBACK_WRAP_TARGET").is_none());
    assert!(json.get("site_messages").is_some());
    w.run(WRAPPER, &["-s".into()], env, b"").assert_refused("arguments");
}

#[test]
fn settings_come_from_the_install_file_when_the_environment_has_none() {
    // suexec passes no SetEnv value: the wrapper reads ../etc/piggyback-wrap.conf.
    let w = Wrapped::new();
    let install = w.site.dir.path().join("install");
    std::fs::create_dir_all(install.join("cgi-bin")).unwrap();
    std::fs::create_dir_all(install.join("etc")).unwrap();
    let copy = install.join("cgi-bin/piggyback-wrap");
    std::fs::copy(WRAPPER, &copy).unwrap();
    let conf = install.join("etc/piggyback-wrap.conf");
    std::fs::write(
        &conf,
        format!(
            "# the settings\nPIGGYBACK_WRAP_ROOT={}\nPIGGYBACK_DB={}\nPIGGYBACK_SPOOL={}\nPIGGYBACK_SECRET_FILE={}\n",
            w.app.display(),
            w.site.db.display(),
            w.site.spool().display(),
            w.site.secret().display()
        ),
    )
    .unwrap();
    chmod(&conf, 0o644);
    w.site.deliver("bob", "alice", "by file");
    let path = w.app.join("hello.pl");
    let mut env = w.base_env("GET", "");
    env.retain(|(k, _)| !k.starts_with("PIGGYBACK_"));
    env.push(var("SCRIPT_FILENAME", &path));
    env.push(w.cookie("alice"));
    let answer = w.run(copy.to_str().unwrap(), &[path.into()], env.clone(), b"");
    assert_eq!(answer.announced().len(), 1, "{}", answer.text());
    chmod(&conf, 0o666);
    let answer = w.run(copy.to_str().unwrap(), &[w.app.join("hello.pl").into()], env, b"");
    assert_eq!(answer.status(), 500, "a file others may write is ignored: {}", answer.text());
    assert!(answer.stderr.contains("writable by its group or others"), "{}", answer.stderr);
}
