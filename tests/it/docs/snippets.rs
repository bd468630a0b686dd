//! The docs' snippets run and do what the docs say.

use super::*;
use crate::support::{PIGGYBACK, Program, Site};
use serde_json::Value;
use std::path::Path;
use std::process::Command;

/// An install as `scripts/install` lays it out, as far as `piggyback cookie` needs it:
/// `bin/piggyback` and `etc/piggyback-wrap.conf` naming the site's database and key.
fn install(site: &Site) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let root = site.dir.path().join("install");
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::copy(PIGGYBACK, root.join("bin/piggyback")).unwrap();
    let conf = root.join("etc/piggyback-wrap.conf");
    std::fs::write(
        &conf,
        format!(
            "PIGGYBACK_DB={}\nPIGGYBACK_SPOOL={}\nPIGGYBACK_SECRET_FILE={}\n",
            site.db.display(),
            site.spool().display(),
            site.secret().display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&conf, std::fs::Permissions::from_mode(0o644)).unwrap();
    root
}

/// Runs a cookie snippet's program as the wrapper runs a site's program: no Piggyback
/// setting in its environment, the install's `bin/` on `PATH`.
fn run_as_wrapped(site: &Site, install: &Path, interpreter: &str, suffix: &str, program: &str, https: bool) -> String {
    let path = site.dir.path().join(format!("snippet{suffix}"));
    std::fs::write(&path, program).unwrap();
    let mut command = Command::new(interpreter);
    command
        .arg(&path)
        .env_clear()
        .env("PATH", format!("{}:/usr/bin:/bin", install.join("bin").display()))
        .env("SCRIPT_FILENAME", &path)
        .env("REDIRECT_STATUS", "200")
        .env("REQUEST_METHOD", "GET")
        .env("GATEWAY_INTERFACE", "CGI/1.1");
    if https {
        command.env("HTTPS", "on");
    }
    let out = command.output().unwrap();
    assert!(out.status.success(), "{interpreter} {program}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// The cookie a snippet's output sets: its name and value, and the whole line.
fn set_cookie(output: &str) -> (String, String, String) {
    let line = output
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("set-cookie: "))
        .unwrap_or_else(|| panic!("no Set-Cookie in {output:?}"))
        .to_owned();
    let pair = line["Set-Cookie: ".len()..].split(';').next().unwrap();
    let (name, value) = pair.split_once('=').unwrap();
    (name.to_owned(), value.to_owned(), line)
}

#[test]
fn the_cookie_snippets_log_the_user_in_on_http_and_https_until_a_revocation() {
    let site = Site::keyed(&[]);
    let alice = piggyback::model::UserId(site.add_user("alice"));
    let install = install(&site);
    let mint = |lang: &str, https: bool| {
        let code = snippet(&format!("cookie-{lang}"));
        let output = match lang {
            "python" => {
                let program = format!("{code}\nprint(pb_session_cookie('alice'))\n");
                run_as_wrapped(&site, &install, "python3", ".py", &program, https)
            }
            "php" => {
                let program = format!("<?php\n{code}\npb_session_cookie('alice');\necho '{{}}';\n");
                run_as_wrapped(&site, &install, "php-cgi", ".php", &program, https)
            }
            _ => {
                let program = format!("{code}\nprint pb_session_cookie('alice'), \"\\n\";\n");
                run_as_wrapped(&site, &install, "perl", ".pl", &program, https)
            }
        };
        set_cookie(&output)
    };
    let session = |name: &str, value: &str, https: bool| {
        let cgi = site.cgi(Program::Session).var("HTTP_COOKIE", &format!("{name}={value}"));
        if https { cgi.var("HTTPS", "on").run() } else { cgi.run() }
    };
    let mut minted = Vec::new();
    for lang in ["python", "php", "perl"] {
        for https in [false, true] {
            let (name, value, line) = mint(lang, https);
            let expected = if https { "__Host-pb_session" } else { "pb_session" };
            assert_eq!(name, expected, "{lang}: {line}");
            assert_eq!(line.contains("; Secure"), https, "{lang}: {line}");
            assert!(line.contains("HttpOnly") && line.contains("Path=/"), "{lang}: {line}");
            let r = session(&name, &value, https);
            assert_eq!(r.json["session"]["name"], "alice", "{lang} https={https}: {}", r.json);
            minted.push((name, value, https));
        }
    }
    // A v1 value a site signed itself still counts, until the first revocation.
    let key = piggyback::identity::Key::load(site.secret()).unwrap();
    let v1 = key.sign(alice, piggyback::model::now() + 3600);
    assert_eq!(session("pb_session", &v1, false).json["session"]["name"], "alice");
    site.piggyback_ok(&["user", "revoke", "alice"]);
    for (name, value, https) in &minted {
        assert_eq!(session(name, value, *https).status, 401, "revoked: {name}");
    }
    assert_eq!(session("pb_session", &v1, false).status, 401, "a v1 value ends with the revocation");
    let v1 = key.sign(alice, piggyback::model::now() + 7200);
    assert_eq!(session("pb_session", &v1, false).status, 401, "and so does any v1 value signed later");
    // The snippets log the user in again.
    let (name, value, _) = mint("python", false);
    assert_eq!(session(&name, &value, false).json["session"]["name"], "alice");
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
