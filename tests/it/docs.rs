//! The docs held to the code. Three kinds of checks:
//! - the snippets of docs/INTEGRATE.md, run as the page shows them: each block marked
//!   `<!-- test: NAME -->` is taken from the file, wrapped in the few lines that give it
//!   its input, and run with the real interpreter against a temporary site;
//! - every number README.md and ARCHITECTURE.md quote, held against its source (a
//!   constant of the code, a default of the configuration, the generated figures in
//!   docs/perf/results.json), and README's command table against `piggyback --help`;
//! - what a newcomer copies from the docs exists: the `PIGGYBACK_*` variables they name
//!   are read by the sources that define things (never by tests/, whose own text would
//!   make a made-up name pass), the scripts and `piggyback` subcommands their shell
//!   blocks run take the options shown, and the paths they name exist.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::support::{PIGGYBACK, Program, Site};

/// The code block after `<!-- test: NAME -->` in docs/INTEGRATE.md.
pub(crate) fn snippet(name: &str) -> String {
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

#[test]
fn the_identity_lines_print_the_header_only_while_someone_is_logged_in() {
    let site = Site::keyed(&[]);
    for lang in ["php", "perl", "python"] {
        let code = snippet(&format!("user-header-{lang}"));
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
            // An empty value names nobody, as no header does.
            let named: Vec<&str> = head
                .lines()
                .filter_map(|l| l.strip_prefix("X-Piggyback-User:"))
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .collect();
            let expected: Vec<&str> = if user.is_empty() { vec![] } else { vec![user] };
            assert_eq!(named, expected, "{lang}, user {user:?}: {output:?}");
            assert!(head.contains("Content-Type: application/json"), "{lang}: the header block is intact: {output:?}");
        }
    }
}
// ---- the numbers README.md and ARCHITECTURE.md quote ------------------------------

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(relative: &str) -> String {
    std::fs::read_to_string(repo().join(relative)).unwrap_or_else(|e| panic!("{relative}: {e}"))
}

/// A doc's prose: code blocks left out, every run of white space one space (so that a
/// quote may wrap across lines).
fn prose(markdown: &str) -> String {
    let mut kept = String::new();
    let mut in_block = false;
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            in_block = !in_block;
        } else if !in_block {
            kept.push_str(line);
            kept.push('\n');
        }
    }
    kept.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The number at the start of `text` ("13.55", "600", "10485760"), if any.
fn number_at(text: &str) -> &str {
    let b = text.as_bytes();
    let mut end = 0;
    while end < b.len()
        && (b[end].is_ascii_digit() || (b[end] == b'.' && end > 0 && b.get(end + 1).is_some_and(u8::is_ascii_digit)))
    {
        end += 1;
    }
    &text[..end]
}

/// One quoted figure: the doc's text `before` it and `after` it, and what its source says.
struct Quote {
    doc: &'static str,
    before: String,
    after: &'static str,
    source: String,
    what: &'static str,
}

fn quote(doc: &'static str, before: &str, after: &'static str, source: impl ToString, what: &'static str) -> Quote {
    Quote { doc, before: before.to_owned(), after, source: source.to_string(), what }
}

/// A whole number of seconds, as the docs write it.
fn secs(d: std::time::Duration) -> u128 {
    assert_eq!(d.as_millis() % 1000, 0, "{d:?} is quoted in whole seconds");
    d.as_millis() / 1000
}

/// The generated figure the README quotes: profile as FastCGI under lighttpd, ÷ the CGI
/// floor, as docs/perf/results.json holds the table scripts/bench-report wrote.
fn generated_fastcgi_over_cgi_floor() -> String {
    let results: Value = serde_json::from_str(&read("docs/perf/results.json")).unwrap();
    let table = &results["steps"]["fastcgi"]["tables"][0];
    let column = table["header"].as_array().unwrap().iter().position(|h| h == "÷ CGI floor").unwrap();
    let row = table["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r[0].as_str().unwrap().starts_with("profile as FastCGI, lighttpd"))
        .expect("the FastCGI row of bench-fastcgi's table");
    row[column].as_str().unwrap().to_owned()
}

fn quotes() -> Vec<Quote> {
    use piggyback::msq::{ANNOUNCE_PATIENCE, CGI_DRAIN_PATIENCE};
    let db = std::ffi::OsString::from("/nonexistent/site.db");
    let config = piggyback::config::Config::from_lookup(|name| (name == "PIGGYBACK_DB").then(|| db.clone())).unwrap();
    assert_eq!(config.session_ttl % 86_400, 0, "the README quotes the session lifetime in days");
    let mut q = vec![
        quote(
            "README.md",
            "the session-cookie key (at least ",
            " bytes",
            piggyback::identity::MIN_KEY_BYTES,
            "identity::MIN_KEY_BYTES",
        ),
        quote(
            "README.md",
            "limits request bodies to ",
            " KiB",
            piggyback::config::MAX_BODY_BYTES / 1024,
            "config::MAX_BODY_BYTES",
        ),
        quote(
            "README.md",
            "between requests (",
            " times the requests/s of a C CGI that does nothing",
            generated_fastcgi_over_cgi_floor(),
            "docs/perf/results.json, bench-fastcgi: profile as FastCGI, lighttpd, ÷ CGI floor",
        ),
        quote("README.md", "| `PIGGYBACK_SESSION_TTL` | `", "d` |", config.session_ttl / 86_400, "Config::session_ttl"),
        quote(
            "ARCHITECTURE.md",
            "at most every ",
            " s (`.recovered`)",
            piggyback::msq::spool::RECOVER_EVERY_SECS,
            "spool::RECOVER_EVERY_SECS",
        ),
        quote(
            "ARCHITECTURE.md",
            "own write ",
            " s then 503",
            secs(piggyback::message_store::BUSY_TIMEOUT),
            "message_store::BUSY_TIMEOUT",
        ),
        quote(
            "ARCHITECTURE.md",
            "announcing and acknowledging ",
            " ms each",
            ANNOUNCE_PATIENCE.as_millis(),
            "msq::ANNOUNCE_PATIENCE",
        ),
        quote(
            "ARCHITECTURE.md",
            "the drain ",
            " ms), so a GET",
            CGI_DRAIN_PATIENCE.as_millis(),
            "msq::CGI_DRAIN_PATIENCE",
        ),
        quote(
            "ARCHITECTURE.md",
            "a GET waits at most ",
            " ms however long",
            (CGI_DRAIN_PATIENCE + 2 * ANNOUNCE_PATIENCE).as_millis(),
            "the drain's patience and announcing's and acknowledging's",
        ),
        quote(
            "ARCHITECTURE.md",
            "A claim flips at most `CLAIM_BATCH` (",
            ")",
            piggyback::message_store::CLAIM_BATCH,
            "message_store::CLAIM_BATCH",
        ),
    ];
    for (variable, value, what) in [
        ("PIGGYBACK_MAX_ITEMS", config.max_items as i64, "Config::max_items"),
        ("PIGGYBACK_SNIPPET_CHARS", config.snippet_chars as i64, "Config::snippet_chars"),
        ("PIGGYBACK_SEND_RATE", config.send_rate_per_minute.into(), "Config::send_rate_per_minute"),
        ("PIGGYBACK_SEND_PAIR_DAILY", config.send_pair_per_day.into(), "Config::send_pair_per_day"),
        ("PIGGYBACK_POST_RATE", config.post_rate_per_minute.into(), "Config::post_rate_per_minute"),
        ("PIGGYBACK_POST_QUOTA", config.post_quota_bytes, "Config::post_quota_bytes"),
        ("PIGGYBACK_ACK_LEASE", config.ack_lease_secs, "Config::ack_lease_secs"),
        ("PIGGYBACK_POLL_INTERVAL", config.poll_interval_secs, "Config::poll_interval_secs"),
    ] {
        q.push(quote("README.md", &format!("| `{variable}` | `"), "` |", value, what));
    }
    q
}

/// Numbers in the prose that are not quantities of this project: names, versions, status
/// codes. Each is the text around the number, as the doc has it.
const NOT_QUANTITIES: &[(&str, &str)] = &[
    ("README.md", "`PORT=8081"),
    ("README.md", "error answers below 500 included"),
    ("README.md", "program answer `500`"),
    ("README.md", "**lighttpd** (1.4, mod_cgi)"),
    ("README.md", "**Apache** (2.4)"),
    ("README.md", "`PIGGYBACK_TRUST_REMOTE_USER=1`"),
    ("README.md", "exit 1 on a mismatch"),
    ("ARCHITECTURE.md", "fds 0-2 open"),
    ("ARCHITECTURE.md", "RFC 3875"),
    ("ARCHITECTURE.md", "when fd 0 is a listening socket"),
    ("ARCHITECTURE.md", "(ETag/304)"),
    ("ARCHITECTURE.md", "answers below 500 to an identified user"),
    ("ARCHITECTURE.md", "s then 503"),
    ("ARCHITECTURE.md", "`CHECK (>= 0)`"),
    ("ARCHITECTURE.md", "answers 503"),
    ("ARCHITECTURE.md", "message id is 404"),
    ("ARCHITECTURE.md", "(a panic is a 500 JSON)"),
];

/// The numbers of a prose text, as (start, end) byte spans: digits not inside a word
/// (`CN101079848A`, `sha2`), with their decimals.
fn numbers(text: &str) -> Vec<(usize, usize)> {
    let b = text.as_bytes();
    let mut found = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let inside_word = i > 0 && (b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_');
        if b[i].is_ascii_digit() && !inside_word {
            let end = i + number_at(&text[i..]).len();
            found.push((i, end));
            i = end;
        } else if b[i].is_ascii_alphanumeric() || b[i] == b'_' {
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                i += 1;
            }
        } else {
            i += 1;
        }
    }
    found
}

/// Where each occurrence of `needle` is in `text`.
fn occurrences(text: &str, needle: &str) -> Vec<usize> {
    text.match_indices(needle).map(|(at, _)| at).collect()
}

/// What is wrong with `quotes` in the prose of `doc`, and the spans they cover.
fn quote_problems(doc: &str, text: &str, quotes: &[Quote]) -> (Vec<String>, Vec<(usize, usize)>) {
    let (mut problems, mut covered) = (Vec::new(), Vec::new());
    for q in quotes.iter().filter(|q| q.doc == doc) {
        let places = occurrences(text, &q.before);
        if places.is_empty() {
            problems.push(format!("{doc}: no longer says \"{}…{}\" ({})", q.before, q.after, q.what));
        }
        for at in places {
            let start = at + q.before.len();
            let quoted = number_at(&text[start..]);
            let end = start + quoted.len();
            if !text[end..].starts_with(q.after) {
                problems.push(format!("{doc}: \"{}{quoted}\" is not followed by \"{}\"", q.before, q.after));
            } else if quoted != q.source {
                problems.push(format!("{doc}: quotes {quoted} where {} says {}", q.what, q.source));
            }
            covered.push((start, end));
        }
    }
    (problems, covered)
}

#[test]
fn every_number_the_readme_and_architecture_quote_is_what_its_source_says() {
    let quotes = quotes();
    let mut problems = Vec::new();
    for doc in ["README.md", "ARCHITECTURE.md"] {
        let text = prose(&read(doc));
        let (found, mut covered) = quote_problems(doc, &text, &quotes);
        problems.extend(found);
        for (_, context) in NOT_QUANTITIES.iter().filter(|(d, _)| *d == doc) {
            let places = occurrences(&text, context);
            if places.is_empty() {
                problems.push(format!("{doc}: no longer says \"{context}\" (NOT_QUANTITIES)"));
            }
            covered.extend(places.into_iter().map(|at| (at, at + context.len())));
        }
        // A number nobody holds: a new quote needs its source here (or a reason it is none).
        for (start, end) in numbers(&text) {
            if !covered.iter().any(|&(s, e)| s <= start && end <= e) {
                let context: String = text[..start]
                    .chars()
                    .rev()
                    .take(40)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .chain(text[start..].chars().take(end - start + 20))
                    .collect();
                problems.push(format!("{doc}: {} is held against no source: \"…{context}…\"", &text[start..end]));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn a_quote_edited_on_one_side_only_is_caught() {
    let quotes = quotes();
    let claim = quotes.iter().find(|q| q.what == "message_store::CLAIM_BATCH").unwrap();
    let good = format!(
        "Two requests never announce the same message. {}{}{} (the rest)",
        claim.before, claim.source, claim.after
    );
    assert_eq!(
        quote_problems("ARCHITECTURE.md", &good, &quotes).0.len(),
        quotes.iter().filter(|q| q.doc == "ARCHITECTURE.md").count() - 1
    );
    let edited = good.replace(&format!("({})", claim.source), "(250)");
    let (problems, _) = quote_problems("ARCHITECTURE.md", &edited, &quotes);
    assert!(problems.iter().any(|p| p.contains("quotes 250 where message_store::CLAIM_BATCH says")), "{problems:?}");
    // The generated side: a README that quotes another ratio than results.json.
    let readme = prose(&read("README.md")).replace(&generated_fastcgi_over_cgi_floor(), "99.99");
    let (problems, _) = quote_problems("README.md", &readme, &quotes);
    assert!(problems.iter().any(|p| p.contains("quotes 99.99 where docs/perf/results.json")), "{problems:?}");
}

// ---- README's command table -------------------------------------------------------

/// The subcommands `piggyback [PARENT] --help` lists, `help` left out.
fn subcommands(parent: &[&str]) -> Vec<String> {
    let out = Command::new(PIGGYBACK).args(parent).arg("--help").output().unwrap();
    assert!(out.status.success(), "piggyback {parent:?} --help");
    let help = String::from_utf8(out.stdout).unwrap();
    let listed = help.split("Commands:\n").nth(1).unwrap_or_else(|| panic!("no Commands: in {help}"));
    listed
        .lines()
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(|name| parent.iter().copied().chain([name]).collect::<Vec<_>>().join(" "))
        .collect()
}

#[test]
fn the_readme_lists_every_piggyback_subcommand_and_no_other() {
    let mut commands = BTreeSet::new();
    for name in subcommands(&[]) {
        let nested = Command::new(PIGGYBACK).args([name.as_str(), "--help"]).output().unwrap();
        let nested = String::from_utf8_lossy(&nested.stdout).contains("Commands:");
        if nested {
            commands.extend(subcommands(&[&name]));
        } else {
            commands.insert(name);
        }
    }
    assert!(commands.contains("user add") && commands.contains("msqd"), "{commands:?}");
    let readme = read("README.md");
    let table = readme.split("| subcommand | what |").nth(1).expect("README's subcommand table");
    let documented: BTreeSet<String> = table
        .lines()
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .map(|l| l.trim_start_matches("| `").split('`').next().unwrap().to_owned())
        .collect();
    assert_eq!(documented, commands, "README.md's subcommand table against `piggyback --help`");
}

// ---- what the docs name exists -----------------------------------------------------

/// The docs a newcomer copies from. CHANGELOG.md is history: it may name what is gone.
fn docs() -> Vec<PathBuf> {
    let mut docs = vec![repo().join("README.md"), repo().join("ARCHITECTURE.md")];
    let mut more: Vec<PathBuf> = std::fs::read_dir(repo().join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    more.sort();
    docs.extend(more);
    docs
}

/// The text of the sources that define what the docs may name: the library, the
/// binaries, the scripts, the shipped configurations and the browser client. Never
/// tests/: a test that names a variable (as this file does) reads nothing.
fn defining_sources() -> String {
    fn walk(dir: &Path, into: &mut String) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for entry in entries {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if path.is_dir() {
                if name != "node_modules" {
                    walk(&path, into);
                }
            } else if !name.ends_with(".md")
                && !name.ends_with(".png")
                && let Ok(bytes) = std::fs::read(&path)
            {
                into.push_str(&String::from_utf8_lossy(&bytes));
                into.push('\n');
            }
        }
    }
    let mut corpus = String::new();
    for folder in ["src", "bin", "scripts", "cgi-bin-config", "web"] {
        walk(&repo().join(folder), &mut corpus);
    }
    corpus
}

/// One doc checked against the sources: how many checks ran, and the problems found.
#[derive(Default)]
struct DocCheck {
    checks: usize,
    problems: Vec<String>,
}

impl DocCheck {
    fn problem(&mut self, doc: &str, what: String) {
        self.problems.push(format!("{doc}: {what}"));
    }
}

/// The names `PIGGYBACK_*` a text mentions.
fn variables(text: &str) -> BTreeSet<&str> {
    let b = text.as_bytes();
    let mut found = BTreeSet::new();
    for (at, _) in text.match_indices("PIGGYBACK_") {
        if at > 0 && (b[at - 1].is_ascii_alphanumeric() || b[at - 1] == b'_') {
            continue;
        }
        let end = at + text[at..].bytes().take_while(|c| c.is_ascii_alphanumeric() || *c == b'_').count();
        let name = &text[at..end];
        if name.bytes().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == b'_') && !name.ends_with('_') {
            found.insert(name);
        }
    }
    found
}

/// The repository paths a text names under the folders a reader looks in.
fn paths(text: &str) -> BTreeSet<&str> {
    let b = text.as_bytes();
    let mut found = BTreeSet::new();
    for folder in ["cgi-bin-config/", "scripts/", "web/", "docs/"] {
        for (at, _) in text.match_indices(folder) {
            if at > 0 && (b[at - 1].is_ascii_alphanumeric() || b"_/.-".contains(&b[at - 1])) {
                continue;
            }
            let rest = &text[at + folder.len()..];
            let len = rest.bytes().take_while(|c| c.is_ascii_alphanumeric() || b"_.-".contains(c)).count();
            if len > 0 {
                found.insert(text[at..at + folder.len() + len].trim_end_matches('.'));
            }
        }
    }
    found
}

/// The shell blocks (```sh, bash, shell, console) of a Markdown text.
fn shell_blocks(text: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    // Inside a block: `Some(Some(text))` for a shell block, `Some(None)` for another kind.
    let mut inside: Option<Option<String>> = None;
    for line in text.lines() {
        if let Some(fence) = line.strip_prefix("```") {
            match inside.take() {
                Some(Some(block)) => blocks.push(block),
                Some(None) => {}
                None => {
                    let kind = fence.split_whitespace().next().unwrap_or("");
                    inside = Some(["sh", "bash", "shell", "console"].contains(&kind).then(String::new));
                }
            }
        } else if let Some(Some(block)) = inside.as_mut() {
            block.push_str(line);
            block.push('\n');
        }
    }
    blocks
}

/// The commands of a shell block: continuation lines joined, prompts and comments
/// taken off, split at `&&`, `||`, `;` and `|`.
fn command_lines(block: &str) -> Vec<String> {
    let mut joined = String::new();
    let mut lines = block.lines().peekable();
    while let Some(line) = lines.next() {
        match line.strip_suffix('\\') {
            Some(start) if lines.peek().is_some() => {
                joined.push_str(start);
                joined.push(' ');
            }
            _ => {
                joined.push_str(line);
                joined.push('\n');
            }
        }
    }
    let mut commands = Vec::new();
    for line in joined.lines() {
        let line = line.trim();
        let line = line.strip_prefix("$ ").unwrap_or(line);
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.replace("&&", "\n").replace("||", "\n").replace([';', '|'], "\n");
        for part in line.lines() {
            let part = part.split(" #").next().unwrap().trim();
            if !part.is_empty() {
                commands.push(part.to_owned());
            }
        }
    }
    commands
}

/// A command's words as a POSIX shell splits them (quotes and backslashes), with the
/// leading `NAME=value` assignments and `sudo`, `env`, `exec`, `time` taken off. `None`
/// for unbalanced quotes.
fn words_of(command: &str) -> Option<Vec<String>> {
    let (mut words, mut word, mut in_word) = (Vec::new(), String::new(), false);
    let mut chars = command.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                loop {
                    match chars.next()? {
                        '\'' => break,
                        x => word.push(x),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next()? {
                        '"' => break,
                        '\\' => word.push(chars.next()?),
                        x => word.push(x),
                    }
                }
            }
            '\\' => {
                in_word = true;
                word.push(chars.next()?);
            }
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    let is_assignment = |w: &str| {
        w.split_once('=').is_some_and(|(name, _)| {
            name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        })
    };
    let skip =
        words.iter().take_while(|w| is_assignment(w) || ["sudo", "env", "exec", "time"].contains(&w.as_str())).count();
    Some(words.split_off(skip))
}

/// The `--options` among `words`, without their `=value`.
fn options(words: &[String]) -> BTreeSet<String> {
    words
        .iter()
        .filter(|w| w.starts_with("--") && w.len() > 2)
        .map(|w| w.split('=').next().unwrap().to_owned())
        .collect()
}

fn check_script(doc: &str, words: &[String], found: &mut DocCheck) {
    use std::os::unix::fs::PermissionsExt;
    let name = words[0].trim_start_matches("./");
    let path = repo().join(name);
    found.checks += 1;
    let Ok(meta) = std::fs::metadata(&path) else {
        return found.problem(doc, format!("`{}`: {name} does not exist", words.join(" ")));
    };
    if meta.permissions().mode() & 0o111 == 0 {
        found.problem(doc, format!("`{name}` is not executable"));
    }
    let text = String::from_utf8_lossy(&std::fs::read(&path).unwrap()).into_owned();
    for option in options(&words[1..]) {
        found.checks += 1;
        if !text.contains(&option) {
            found.problem(doc, format!("`{}`: {name} knows no option {option}", words.join(" ")));
        }
    }
}

fn check_piggyback(doc: &str, words: &[String], found: &mut DocCheck) {
    let mut rest = &words[1..];
    // Global options before the subcommand (`--db PATH`, `--spool PATH`) take a value.
    while rest.first().is_some_and(|w| w.starts_with("--")) {
        rest = &rest[if rest[0].contains('=') { 1 } else { 2.min(rest.len()) }..];
    }
    let sub: Vec<&str> = rest
        .iter()
        .take(2)
        .take_while(|w| {
            w.starts_with(|c: char| c.is_ascii_lowercase()) && w.chars().all(|c| c.is_ascii_lowercase() || c == '-')
        })
        .map(String::as_str)
        .collect();
    let help = |sub: &[&str]| Command::new(PIGGYBACK).args(sub).arg("--help").output().unwrap();
    found.checks += 1;
    let mut out = help(&sub);
    // The second word may be an argument (`user add NAME` is a subcommand; `send alice` is not).
    if !out.status.success() && sub.len() == 2 {
        out = help(&sub[..1]);
    }
    if !out.status.success() {
        let why = String::from_utf8_lossy(&out.stderr);
        return found.problem(doc, format!("`{}`: `piggyback {} --help` fails: {why}", words.join(" "), sub.join(" ")));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    for option in options(&words[1..]) {
        found.checks += 1;
        if option != "--help" && !text.contains(&option) {
            found.problem(doc, format!("`{}`: piggyback {} has no option {option}", words.join(" "), sub.join(" ")));
        }
    }
}

/// Checks one doc's text against the defining sources: variables read, paths present,
/// scripts and `piggyback` subcommands with the options shown.
fn check_doc(doc: &str, text: &str, sources: &str) -> DocCheck {
    let mut found = DocCheck::default();
    for variable in variables(text) {
        found.checks += 1;
        if !sources.contains(variable) {
            found.problem(doc, format!("names {variable}, which nothing in the code, scripts or configs reads"));
        }
    }
    for path in paths(text) {
        found.checks += 1;
        if !repo().join(path).exists() {
            found.problem(doc, format!("names {path}, which does not exist"));
        }
    }
    for block in shell_blocks(text) {
        for command in command_lines(&block) {
            let Some(words) = words_of(&command) else { continue };
            let Some(first) = words.first() else { continue };
            let script = first.trim_start_matches("./");
            if script.strip_prefix("scripts/").is_some_and(|n| !n.is_empty() && !n.contains('/')) {
                check_script(doc, &words, &mut found);
            } else if first == "piggyback" || first.ends_with("/piggyback") {
                check_piggyback(doc, &words, &mut found);
            }
        }
    }
    found
}

#[test]
fn what_the_docs_name_exists_and_takes_the_options_shown() {
    let sources = defining_sources();
    let (mut checks, mut problems) = (0, Vec::new());
    for path in docs() {
        let name = path.strip_prefix(repo()).unwrap().display().to_string();
        let found = check_doc(&name, &std::fs::read_to_string(&path).unwrap(), &sources);
        checks += found.checks;
        problems.extend(found.problems);
    }
    // It saw what it checks: the docs name dozens of variables, paths and commands.
    assert!(checks > 100, "only {checks} checks: the docs were not read");
    assert!(problems.is_empty(), "{} problems in {checks} checks:\n{}", problems.len(), problems.join("\n"));
}

#[test]
fn a_made_up_variable_script_option_subcommand_or_path_in_a_doc_is_caught() {
    let sources = defining_sources();
    // This very file names the made-up variable: the sources searched must not include it.
    let doc = "Set `PIGGYBACK_NOT_A_SETTING=1` and `PIGGYBACK_DB`; see docs/NOT_A_PAGE.md and docs/API.md.\n\n\
               ```sh\nscripts/bench-site --not-an-option 3\nscripts/not-a-script\npiggyback --db x check --not-a-flag\n\
               piggyback not-a-subcommand\nPIGGYBACK_DB=/x piggyback user add dave --password-stdin\n```\n";
    let found = check_doc("a doc", doc, &sources);
    let expected = [
        "names PIGGYBACK_NOT_A_SETTING, which nothing",
        "names docs/NOT_A_PAGE.md, which does not exist",
        "scripts/bench-site knows no option --not-an-option",
        "`scripts/not-a-script`: scripts/not-a-script does not exist",
        "names scripts/not-a-script, which does not exist",
        "piggyback check has no option --not-a-flag",
        "`piggyback not-a-subcommand --help` fails",
    ];
    for e in expected {
        assert!(found.problems.iter().any(|p| p.contains(e)), "not caught: {e}\n{:?}", found.problems);
    }
    assert_eq!(found.problems.len(), expected.len(), "the real names pass: {:?}", found.problems);
}
