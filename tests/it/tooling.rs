//! Every external program the tests and scripts start comes from a Debian package in
//! scripts/packages, the list `scripts/test` installs first of all: a fresh machine
//! then has everything before the first test runs.
//!
//! Two sources of names: every package a script asks for (`ensure_packages X`, and
//! the `packages=(…)` arrays it passes), and every command the tests and scripts
//! start (`Command::new("x")`, `which("x")`, `shutil.which("x")`,
//! `subprocess.run(["x", …])`, `command -v x`, and `"/usr/bin/x"` paths), each of
//! which must be in [`COMMANDS`] with the package it comes from. A command found that
//! the table lacks fails the test until someone says where it comes from.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Where a command comes from.
#[derive(Debug, Clone, Copy)]
enum Source {
    /// A package that must be in scripts/packages.
    Package(&'static str),
    /// Part of every Debian system (an Essential package: coreutils, util-linux,
    /// dash, bash, procps…), never installed by a list.
    Essential,
    /// The Rust toolchain the project is built with (rustup), not a Debian package.
    Toolchain,
    /// Node.js: scripts/install-packages installs `nodejs` and `npm` only when no
    /// `node` is on the PATH, and scripts/lib.sh exempts exactly those two names
    /// from the list (checked below).
    NodeWhenMissing,
}

use Source::*;

/// Every command the tests and scripts start, and where it comes from.
const COMMANDS: &[(&str, Source)] = &[
    // web servers and FastCGI peers
    ("lighttpd", Package("lighttpd")),
    ("apache2", Package("apache2")),
    ("nginx", Package("nginx")),
    ("spawn-fcgi", Package("spawn-fcgi")),
    ("fcgiwrap", Package("fcgiwrap")),
    ("busybox", Package("busybox")),
    // site programs and interpreters
    ("php-cgi", Package("php-cgi")),
    ("php", Package("php-cli")),
    ("perl", Package("perl")),
    ("python3", Package("python3")),
    // PostgreSQL (psql comes with postgresql, through postgresql-client)
    ("psql", Package("postgresql")),
    ("pg_ctl", Package("postgresql")),
    ("initdb", Package("postgresql")),
    ("pgbouncer", Package("pgbouncer")),
    // the browser
    ("chromium", Package("chromium")),
    ("node", NodeWhenMissing),
    // benchmarks and their measuring tools
    ("wrk", Package("wrk")),
    ("gcc", Package("gcc")),
    ("cc", Package("gcc")),
    ("curl", Package("curl")),
    ("time", Package("time")),
    ("valgrind", Package("valgrind")),
    ("callgrind_annotate", Package("valgrind")),
    ("strace", Package("strace")),
    ("sqlite3", Package("sqlite3")),
    ("ip", Package("iproute2")),
    // every Debian has these
    ("sh", Essential),
    ("bash", Essential),
    ("kill", Essential),
    ("id", Essential),
    ("cp", Essential),
    ("rm", Essential),
    ("chown", Essential),
    ("mount", Essential),
    ("umount", Essential),
    ("setpriv", Essential),
    ("runuser", Essential),
    // the build
    ("cargo", Toolchain),
    ("rustc", Toolchain),
];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The package names of a scripts/packages text: one a line, `#` comments.
fn listed(text: &str) -> BTreeSet<String> {
    text.lines().map(|l| l.split('#').next().unwrap_or("").trim()).filter(|l| !l.is_empty()).map(String::from).collect()
}

/// Every file of the scripts and the tests (not installed modules, not build output).
fn sources() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if name == "node_modules" || name == "target" || name.starts_with('.') {
                continue;
            }
            if path.is_dir() {
                walk(&path, out);
            } else {
                out.push(path);
            }
        }
    }
    let mut out = Vec::new();
    walk(&root().join("scripts"), &mut out);
    walk(&root().join("tests"), &mut out);
    out
}

/// The quoted word right after each occurrence of `before` in `text`.
fn quoted_after<'a>(text: &'a str, before: &str, out: &mut BTreeSet<String>) {
    for (at, _) in text.match_indices(before) {
        let rest = &text[at + before.len()..];
        if let Some(word) = rest.split('"').next() {
            let word: &'a str = word;
            if !word.is_empty() && !word.contains(['{', ' ', '$']) {
                out.insert(word.rsplit('/').next().unwrap_or(word).to_owned());
            }
        }
    }
}

/// The commands `text` starts, as far as its literal text says.
fn commands_in(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for before in [
        "Command::new(\"",
        "which(\"",
        "subprocess.run([\"",
        "subprocess.Popen([\"",
        "check_output([\"",
        "\"/usr/bin/",
        "\"/usr/sbin/",
        "\"/bin/",
    ] {
        let mut words = BTreeSet::new();
        quoted_after(text, before, &mut words);
        found.extend(words);
    }
    for (at, _) in text.match_indices("command -v ") {
        let word: String =
            text[at + 11..].chars().take_while(|c| c.is_ascii_alphanumeric() || "-_.".contains(*c)).collect();
        if !word.is_empty() {
            found.insert(word);
        }
    }
    found
}

/// The packages a script asks for: the words after `ensure_packages` and in its
/// `packages=(…)`/`packages+=(…)` arrays.
fn packages_in(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || line.starts_with("//") {
            continue;
        }
        let words = if let Some(at) = line.find("ensure_packages ") {
            &line[at + "ensure_packages ".len()..]
        } else if let Some(at) = line.find("packages=(").or_else(|| line.find("packages+=(")) {
            let rest = &line[at..];
            &rest[rest.find('(').unwrap() + 1..rest.find(')').unwrap_or(rest.len())]
        } else {
            continue;
        };
        // Literal names up to the first thing that is not one (a quote, `$`, `;`, `{`).
        for word in words.split(' ') {
            if word.is_empty()
                || !word.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-+.".contains(c))
            {
                break;
            }
            found.insert(word.to_owned());
        }
    }
    found
}

/// What is wrong with `packages` (a scripts/packages text) for these scripts and tests.
fn problems(packages: &str) -> Vec<String> {
    let list = listed(packages);
    let mut problems = Vec::new();
    let exempt = ["nodejs", "npm"];
    for file in sources() {
        let Ok(text) = std::fs::read_to_string(&file) else { continue };
        let shown = file.strip_prefix(root()).unwrap_or(&file).display().to_string();
        if shown.ends_with("tests/it/tooling.rs") {
            continue;
        }
        for package in packages_in(&text) {
            if !list.contains(&package) && !exempt.contains(&package.as_str()) {
                problems.push(format!("{shown} asks for package {package}, which scripts/packages lacks"));
            }
        }
        for command in commands_in(&text) {
            match COMMANDS.iter().find(|(name, _)| *name == command) {
                None => problems.push(format!(
                    "{shown} starts `{command}`: add it to COMMANDS in tests/it/tooling.rs with its package"
                )),
                Some((_, Package(p))) if !list.contains(*p) => {
                    problems.push(format!("{shown} starts `{command}`, from package {p}, which scripts/packages lacks"))
                }
                Some(_) => {}
            }
        }
    }
    problems
}

fn packages_file() -> String {
    std::fs::read_to_string(root().join("scripts/packages")).unwrap()
}

#[test]
fn every_program_the_tests_and_scripts_start_comes_from_a_listed_package() {
    let problems = problems(&packages_file());
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // The scan saw what it checks: the servers, PostgreSQL and the scripts' own lists.
    let mut seen = BTreeSet::new();
    let mut asked = BTreeSet::new();
    for file in sources() {
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        seen.extend(commands_in(&text));
        asked.extend(packages_in(&text));
    }
    for command in ["lighttpd", "nginx", "apache2", "php-cgi", "psql", "chromium"] {
        assert!(seen.contains(command), "the scan found no start of {command}: {seen:?}");
    }
    for package in ["postgresql", "pgbouncer", "wrk", "php-sqlite3"] {
        assert!(asked.contains(package), "the scan found no script asking for {package}: {asked:?}");
    }
    // Node.js is the one exemption, and it is the one scripts/lib.sh makes.
    let lib = std::fs::read_to_string(root().join("scripts/lib.sh")).unwrap();
    assert!(
        lib.contains("[ \"$pkg\" != nodejs ]") && lib.contains("[ \"$pkg\" != npm ]"),
        "lib.sh's exemption changed"
    );
}

/// The check bites: without any one package the tests or scripts need, it fails,
/// naming that package.
#[test]
fn removing_any_needed_package_from_the_list_fails_the_check() {
    let text = packages_file();
    // What the scripts and tests need: the packages of the commands they start, and
    // the packages they ask for.
    let mut needed: BTreeSet<String> = BTreeSet::new();
    for file in sources() {
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        for command in commands_in(&text) {
            if let Some((_, Package(p))) = COMMANDS.iter().find(|(name, _)| *name == command) {
                needed.insert((*p).to_owned());
            }
        }
        needed.extend(packages_in(&text).into_iter().filter(|p| !["nodejs", "npm"].contains(&p.as_str())));
    }
    assert!(needed.len() >= 15, "{needed:?}");
    for package in &needed {
        let package = package.as_str();
        let without: String = text.lines().filter(|l| l.trim() != package).map(|l| format!("{l}\n")).collect();
        assert!(listed(&text).contains(package), "{package} is not in scripts/packages");
        let problems = problems(&without);
        assert!(problems.iter().any(|p| p.contains(package)), "without {package}: {problems:?}");
    }
}
