//! The snippets of docs/INTEGRATE.md, run as the page shows them: each block marked
//! `<!-- test: NAME -->` is taken from the file, wrapped in the few lines that give it
//! its input, and run with the real interpreter against a temporary site.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::support::{PIGGYBACK, Program, Site};

/// The code block after `<!-- test: NAME -->` in docs/INTEGRATE.md.
fn snippet(name: &str) -> String {
    let doc = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/INTEGRATE.md")).unwrap();
    let marker = format!("<!-- test: {name} -->");
    let after = &doc[doc.find(&marker).unwrap_or_else(|| panic!("no {marker} in docs/INTEGRATE.md"))..];
    let fence = after.find("```").unwrap();
    let body = &after[fence..];
    let start = body.find('\n').unwrap() + 1;
    let end = body[start..].find("```").unwrap();
    body[start..start + end].to_owned()
}

/// Runs `program` (written to a file with `suffix`) under `interpreter` with `env`.
fn run(site: &Site, interpreter: &str, suffix: &str, program: &str, args: &[&str], env: &[(&str, &str)]) -> String {
    let path = site.dir.path().join(format!("snippet{suffix}"));
    std::fs::write(&path, program).unwrap();
    let bin = Path::new(PIGGYBACK).parent().unwrap().to_str().unwrap().to_owned();
    let out = Command::new(interpreter)
        .arg(&path)
        .args(args)
        .env_clear()
        .env("PATH", format!("{bin}:/usr/bin:/bin"))
        .env("PIGGYBACK_DB", &site.db)
        .env("PIGGYBACK_SPOOL", site.spool())
        .env("PIGGYBACK_SECRET_FILE", site.secret())
        .env("SCRIPT_FILENAME", &path)
        .env("REDIRECT_STATUS", "200")
        .env("REQUEST_METHOD", "GET")
        .env("GATEWAY_INTERFACE", "CGI/1.1")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    assert!(out.status.success(), "{interpreter} {program}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn the_cookie_snippets_log_the_user_in_on_http_and_https() {
    let site = Site::keyed(&[]);
    let alice = site.add_user("alice").to_string();
    for (lang, scheme) in [
        ("python", "http"),
        ("python", "https"),
        ("php", "http"),
        ("php", "https"),
        ("perl", "http"),
        ("perl", "https"),
    ] {
        let code = snippet(&format!("cookie-{lang}"));
        let https: &[(&str, &str)] = if scheme == "https" { &[("HTTPS", "on")] } else { &[] };
        let output = match lang {
            "python" => {
                let program = format!("{code}\nimport sys\nprint(pb_session_cookie(int(sys.argv[1])))\n");
                run(&site, "python3", ".py", &program, &[&alice], https)
            }
            "php" => {
                let program =
                    format!("<?php\n{code}\npb_session_cookie((int) getenv('TEST_USER_ID'));\necho '{{}}';\n");
                let mut env = vec![("TEST_USER_ID", alice.as_str())];
                env.extend_from_slice(https);
                run(&site, "php-cgi", ".php", &program, &[], &env)
            }
            _ => {
                let program = format!("{code}\nprint pb_session_cookie($ARGV[0]), \"\\n\";\n");
                run(&site, "perl", ".pl", &program, &[&alice], https)
            }
        };
        let line = output
            .lines()
            .find(|l| l.starts_with("Set-Cookie: pb_session="))
            .unwrap_or_else(|| panic!("{lang}: no Set-Cookie in {output:?}"));
        assert_eq!(
            line.contains("; Secure") || line.contains("; secure"),
            scheme == "https",
            "{lang} {scheme}: {line}"
        );
        assert!(line.to_ascii_lowercase().contains("httponly"), "{lang}: {line}");
        let value = line["Set-Cookie: pb_session=".len()..].split(';').next().unwrap();
        let r = site.cgi(Program::Session).cookie(value).run();
        assert_eq!(r.json["session"]["name"], "alice", "{lang} {scheme}: {}", r.json);
    }
}

#[test]
fn the_status_snippets_print_site_messages_and_announce_once() {
    let site = Site::keyed(&["alice", "bob"]);
    for lang in ["perl", "php", "python"] {
        let code = snippet(&format!("status-{lang}"));
        let (interpreter, suffix, program) = match lang {
            "perl" => (
                "perl",
                ".pl",
                format!("my $user = $ARGV[0];\n{code}\nprint JSON::PP->new->allow_nonref->encode($site);\n"),
            ),
            "php" => ("php", ".php", format!("<?php\n$user = $argv[1];\n{code}\necho json_encode($site);\n")),
            _ => ("python3", ".py", format!("import sys\nuser = sys.argv[1]\n{code}\nprint(json.dumps(site))\n")),
        };
        let subject = format!("for the {lang} snippet");
        site.deliver("bob", "alice", &subject);
        let first: Value = serde_json::from_str(&run(&site, interpreter, suffix, &program, &["alice"], &[])).unwrap();
        let subjects: Vec<&str> =
            first["items"].as_array().unwrap().iter().map(|i| i["subject"].as_str().unwrap()).collect();
        assert_eq!(subjects, vec![subject.as_str()], "{lang}: {first}");
        let again: Value = serde_json::from_str(&run(&site, interpreter, suffix, &program, &["alice"], &[])).unwrap();
        assert_eq!(again["new"], 0, "{lang}: announced once: {again}");
        assert_eq!(again["unread"], first["unread"], "{lang}");
    }
    // And the command itself, for a name that does not exist: an error, not a member.
    let out = site.piggyback(&["status", "--user", "nobody"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no user named nobody"));
}

#[test]
fn the_identity_lines_print_the_header_only_while_someone_is_logged_in() {
    let site = Site::keyed(&[]);
    for lang in ["php", "perl", "python"] {
        let code = snippet(&format!("identity-{lang}"));
        for user in ["ann@example.com", ""] {
            // A program with the line where the guide puts it: after the session is read,
            // among the headers.
            let output = match lang {
                "php" => {
                    let program = format!(
                        "<?php\nsession_save_path(getenv('TEST_SESSIONS'));\nsession_start();\n\
                         if (getenv('TEST_USER') !== '') $_SESSION['user'] = getenv('TEST_USER');\n{code}\n\
                         header('Content-Type: application/json');\necho '{{}}';\n"
                    );
                    let sessions = site.dir.path().to_str().unwrap().to_owned();
                    run(&site, "php-cgi", ".php", &program, &[], &[("TEST_USER", user), ("TEST_SESSIONS", &sessions)])
                }
                "perl" => {
                    let program = format!(
                        "package Session; sub new {{ bless {{ user => $_[1] }} }} \
                         sub param {{ my ($s, $k) = @_; length $s->{{$k}} ? $s->{{$k}} : undef }}\n\
                         package main;\nmy $session = Session->new($ENV{{TEST_USER}});\n\
                         print \"Content-Type: application/json\\r\\n\";\n{code}\nprint \"\\r\\n{{}}\";\n"
                    );
                    run(&site, "perl", ".pl", &program, &[], &[("TEST_USER", user)])
                }
                _ => {
                    let program = format!(
                        "import os\nsession = {{'user': os.environ['TEST_USER']}} if os.environ['TEST_USER'] else {{}}\n\
                         print('Content-Type: application/json', end='\\r\\n')\n{code}\nprint(end='\\r\\n')\nprint('{{}}')\n"
                    );
                    run(&site, "python3", ".py", &program, &[], &[("TEST_USER", user)])
                }
            };
            let head = output.split("\r\n\r\n").next().unwrap();
            let named: Vec<&str> = head.lines().filter_map(|l| l.strip_prefix("X-Piggyback-User: ")).collect();
            let expected: Vec<&str> = if user.is_empty() { vec![] } else { vec![user] };
            assert_eq!(named, expected, "{lang}, user {user:?}: {output:?}");
            assert!(head.contains("Content-Type: application/json"), "{lang}: the header block is intact: {output:?}");
        }
    }
}
