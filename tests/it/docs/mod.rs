//! The docs hold true.

mod names;
mod numbers;
mod snippets;

use crate::support::{PIGGYBACK, Site};
use std::path::Path;
use std::process::Command;

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

// ---- the numbers README.md and ARCHITECTURE.md quote ------------------------------

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(relative: &str) -> String {
    std::fs::read_to_string(repo().join(relative)).unwrap_or_else(|e| panic!("{relative}: {e}"))
}
