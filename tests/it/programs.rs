//! The one list of CGI programs, `piggyback::handlers::PROGRAMS`, held against what
//! cargo builds: Cargo.toml's `[[bin]]` entries and the `bin/*.rs` files.

use std::path::Path;

use piggyback::handlers::PROGRAMS;

use crate::support::{PIGGYBACK, Program};

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
