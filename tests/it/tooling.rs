//! Programs and packages the tests and scripts rely on.

use crate::support::{PIGGYBACK, Program};
use Source::*;
use piggyback::handlers::PROGRAMS;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// `(name, path)` of every `[[bin]]` in Cargo.toml, in order.
fn cargo_bins() -> Vec<(String, String)> {
    let manifest = std::fs::read_to_string(Path::new(ROOT).join("Cargo.toml")).unwrap();
    let mut bins = Vec::new();
    let mut in_bin = false;
    let (mut name, mut path) = (None, None);
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            if let (Some(n), Some(p)) = (name.take(), path.take()) {
                bins.push((n, p));
            }
            in_bin = line == "[[bin]]";
            continue;
        }
        let value = |key: &str| {
            let rest = line.strip_prefix(key)?.trim_start().strip_prefix('=')?.trim();
            Some(rest.trim_matches('"').to_owned())
        };
        if in_bin {
            name = name.or_else(|| value("name"));
            path = path.or_else(|| value("path"));
        }
    }
    if let (Some(n), Some(p)) = (name, path) {
        bins.push((n, p));
    }
    bins
}

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
fn every_program_has_its_bin_and_every_bin_is_a_program_or_the_command_or_the_wrapper() {
    let bins = cargo_bins();
    let names: Vec<&str> = PROGRAMS.iter().map(|p| p.name).collect();
    let cgi: Vec<&str> =
        bins.iter().map(|(n, _)| n.as_str()).filter(|n| !matches!(*n, "piggyback" | "piggyback-wrap")).collect();
    assert_eq!(
        cgi, names,
        "Cargo.toml's [[bin]] entries (but piggyback and piggyback-wrap) are PROGRAMS, in its order"
    );
    assert!(bins.iter().any(|(n, p)| n == "piggyback" && p == "bin/piggyback/main.rs"), "{bins:?}");
    assert!(bins.iter().any(|(n, p)| n == "piggyback-wrap" && p == "bin/piggyback-wrap.rs"), "{bins:?}");
    let one_line = std::fs::read_to_string(Path::new(ROOT).join("bin/profile.rs")).unwrap();
    assert!(one_line.contains("piggyback::cgi_main!();"), "{one_line}");
    for program in PROGRAMS {
        let (_, path) = bins.iter().find(|(n, _)| n == program.name).unwrap();
        assert_eq!(path, &format!("bin/{}.rs", program.name));
        let text = std::fs::read_to_string(Path::new(ROOT).join(path)).unwrap();
        assert_eq!(text, one_line, "{path} is the same one-line program as bin/profile.rs");
    }
    let files: usize = std::fs::read_dir(Path::new(ROOT).join("bin"))
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "rs"))
        .count();
    assert_eq!(files, PROGRAMS.len() + 1, "no bin/*.rs outside PROGRAMS but bin/piggyback-wrap.rs");
}

#[test]
fn piggyback_programs_prints_the_list_and_the_tests_know_each_one() {
    let out = std::process::Command::new(PIGGYBACK).arg("programs").env_remove("PIGGYBACK_DB").output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let printed = String::from_utf8(out.stdout).unwrap();
    let names: Vec<&str> = PROGRAMS.iter().map(|p| p.name).collect();
    assert_eq!(printed.lines().collect::<Vec<_>>(), names);
    let mut known: Vec<&str> = Program::ALL.iter().chain([&Program::Session]).map(|p| p.name()).collect();
    known.sort_unstable();
    let mut listed = names.clone();
    listed.sort_unstable();
    assert_eq!(known, listed, "tests/it/support.rs's Program names every program");
    for program in PROGRAMS {
        assert!(Path::new(PIGGYBACK).with_file_name(program.name).is_file(), "{} is built", program.name);
    }
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
