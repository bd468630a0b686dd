//! Every name the docs use exists and takes the options shown.

use super::*;
use crate::support::{PIGGYBACK, Site};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

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
