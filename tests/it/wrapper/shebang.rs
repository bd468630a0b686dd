//! Programs whose first line names the wrapper.

use super::*;
use std::ffi::OsString;
use std::path::PathBuf;

/// A program of the site whose own `#!` line names the wrapper and its interpreter, as
/// under Python's `http.server --cgi`, which maps no interpreter (docs/INTEGRATE.md).
fn shebang_program(w: &Wrapped, name: &str, interpreter: &str, body: &str) -> PathBuf {
    let path = w.app.join(name);
    std::fs::write(&path, format!("#!{WRAPPER} {interpreter}\n{body}")).unwrap();
    chmod(&path, 0o755);
    path
}

const ENV_PL: &str = "use strict; use Cwd; use JSON::PP;\nprint \"Content-Type: application/json\\n\\n\";\n\
    print JSON::PP->new->canonical->encode({env => \\%ENV, argv => \\@ARGV, cwd => getcwd()});\n";

#[test]
fn a_program_whose_first_line_names_the_wrapper_runs_under_the_interpreter_it_names() {
    let w = Wrapped::new();
    let alice = w.cookie("alice");
    let perl = shebang_program(&w, "env-shebang.pl", "/usr/bin/perl", ENV_PL);
    let php = shebang_program(
        &w,
        "shebang.php",
        "/usr/bin/php-cgi",
        "<?php\nheader('Content-Type: application/json');\necho json_encode(['from' => 'php']);\n",
    );
    let sh = shebang_program(
        &w,
        "shebang.sh",
        "/bin/sh",
        "printf 'Content-Type: application/json\\n\\n{\"from\": \"sh\"}'\n",
    );
    let py = shebang_program(
        &w,
        "shebang.py",
        "/usr/bin/python3",
        "print('Content-Type: application/json')\nprint()\nprint('{\"from\": \"python\"}')\n",
    );
    for program in [&perl, &php, &sh, &py] {
        w.site.deliver("bob", "alice", &format!("for {}", program.display()));
        let first = w.python(program, "", std::slice::from_ref(&alice));
        assert_eq!(first.announced().len(), 1, "{}: {}; {}", program.display(), first.text(), first.stderr);
        let again = w.python(program, "", std::slice::from_ref(&alice));
        assert!(again.announced().is_empty(), "announced once: {}", again.text());
    }
    // The program sees itself as if the server had started it, in its own folder.
    let json = w.python(&perl, "", &[var("PATH_INFO", "/extra")]).json();
    assert_eq!(json["env"]["SCRIPT_FILENAME"], std::fs::canonicalize(&perl).unwrap().to_str().unwrap());
    assert_eq!(json["env"]["SCRIPT_NAME"], "/app/env-shebang.pl");
    assert_eq!(json["env"]["PATH_INFO"], "/extra");
    assert_eq!(json["cwd"], std::fs::canonicalize(&w.app).unwrap().to_str().unwrap());
    assert!(json.get("site_messages").is_none(), "anonymous: passed unchanged");
    // The same program through a server's mapping (lighttpd's cgi.assign) runs under
    // the interpreter its line names, once: executing it would start the wrapper again.
    let mapped = w.lighttpd("env-shebang.pl", std::slice::from_ref(&alice));
    assert!(mapped.text().matches("site_messages").count() == 1, "{}", mapped.text());
    assert_eq!(mapped.json()["argv"], serde_json::json!([]));
}

#[test]
fn under_a_wrapper_shebang_the_query_words_never_reach_the_program() {
    let w = Wrapped::new();
    let perl = shebang_program(&w, "env-shebang.pl", "/usr/bin/perl", ENV_PL);
    let php = shebang_program(
        &w,
        "argv.php",
        "/usr/bin/php-cgi",
        "<?php\nheader('Content-Type: application/json');\necho json_encode(['from' => 'php', 'argv' => $_SERVER['argv'] ?? []]);\n",
    );
    for query in ["foo+bar", "-s", "-d+allow_url_include%3d1"] {
        assert_eq!(w.python(&perl, query, &[]).json()["argv"], serde_json::json!([]), "?{query}");
        let answer = w.python(&php, query, &[]);
        assert!(!answer.text().contains("<?php"), "php-cgi ran the program: {}", answer.text());
        assert_eq!(answer.json()["argv"], serde_json::json!([]), "?{query}: {}", answer.text());
    }
}

#[test]
fn shebang_arguments_count_only_when_the_programs_own_line_names_the_wrapper_with_them() {
    let w = Wrapped::new();
    let perl = shebang_program(&w, "env-shebang.pl", "/usr/bin/perl", ENV_PL);
    let mut env = w.base_env("GET", "");
    env.push(var("SCRIPT_NAME", "/app/x"));
    // A program whose line names its interpreter directly: not one to wrap this way.
    let plain = w.app.join("env.pl");
    w.run(WRAPPER, &["/usr/bin/perl".into(), plain.into()], env.clone(), b"").assert_refused("SCRIPT_FILENAME");
    // Another interpreter than the line names.
    w.run(WRAPPER, &["/bin/sh".into(), perl.clone().into()], env.clone(), b"").assert_refused("SCRIPT_FILENAME");
    // One argument only (Python executing the wrapper itself with a query): refused.
    w.run(WRAPPER, &[perl.clone().into()], env, b"").assert_refused("SCRIPT_FILENAME");
    // Lines the wrapper will not follow: a relative interpreter, switches after it, the
    // wrapper itself, nothing at all.
    for (name, interpreter) in
        [("rel.pl", "perl"), ("switch.pl", "/usr/bin/perl -w"), ("self.pl", WRAPPER), ("none.sh", "")]
    {
        let program = shebang_program(&w, name, interpreter, ENV_PL);
        w.lighttpd(name, &[]).assert_refused("its #! line names the wrapper");
        // With no interpreter the kernel's arguments are [program, query]: no shebang form.
        let why = if interpreter.is_empty() { "SCRIPT_FILENAME" } else { "its #! line names the wrapper" };
        w.python(&program, "", &[]).assert_refused(why);
    }
    // A wrapped program outside the root, or others may change: refused like any other.
    let outside = w.site.dir.path().join("outside.pl");
    std::fs::write(&outside, format!("#!{WRAPPER} /usr/bin/perl\n{ENV_PL}")).unwrap();
    chmod(&outside, 0o755);
    w.python(&outside, "", &[]).assert_refused("outside PIGGYBACK_WRAP_ROOT");
    chmod(&perl, 0o775);
    w.python(&perl, "", &[]).assert_refused("writable by its group or others");
}

#[test]
fn a_direct_request_with_a_query_in_the_kernels_shebang_form_runs_nothing() {
    // GET /cgi-bin/piggyback-wrap?/usr/bin/perl+/…/admin/secret.pl under Apache: the
    // query has no `=`, so Apache makes it argv, exactly the kernel's `#!` form for a
    // program whose first line names the wrapper; its folder may be denied to clients.
    let w = Wrapped::new();
    let admin = w.app.join("admin");
    std::fs::create_dir(&admin).unwrap();
    chmod(&admin, 0o755);
    let secret = admin.join("secret.pl");
    std::fs::write(&secret, format!("#!{WRAPPER} /usr/bin/perl\n{ENV_PL}")).unwrap();
    chmod(&secret, 0o755);
    let query = format!("/usr/bin/perl+{}", secret.display());
    let mut env = w.base_env("GET", &query);
    env.push(var("SCRIPT_FILENAME", WRAPPER));
    env.push(var("SCRIPT_NAME", "/cgi-bin/piggyback-wrap"));
    let args: Vec<OsString> = query.split('+').map(Into::into).collect();
    w.run(WRAPPER, &args, env.clone(), b"").assert_refused("the kernel was asked to run");
    // With the wrapper's own name in SCRIPT_FILENAME removed, still not the kernel's call.
    env.retain(|(k, _)| k != "SCRIPT_FILENAME");
    w.run(WRAPPER, &args, env, b"").assert_refused("the kernel was asked to run");
    // The kernel's own call of the same program still runs it.
    assert_eq!(w.python(&secret, "", &[]).json()["argv"], serde_json::json!([]));
}
