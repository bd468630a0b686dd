//! The `piggyback` command: usage, exit codes, init, seed, check.

use crate::support::three_users;

use crate::support::{Program, piggyback};

// ---- piggyback check -------------------------------------------------------------

#[test]
fn check_exits_1_naming_a_corrupted_counter() {
    let site_process = three_users();
    site_process.send("bob", "alice", "s", "b");
    site_process.get(Program::Profile, "alice", "");
    site_process.send("carol", "alice", "s", "b");
    site_process.assert_check_passes();
    site_process.conn().exec("UPDATE mailbox SET new = 5 WHERE user_id = (SELECT id FROM users WHERE name = 'alice')");
    let out = site_process.piggyback(&["check"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("alice") && stderr.contains("new=5"), "{stderr}");

    let out = site_process.piggyback(&["check", "--repair"]);
    assert_eq!(out.status.code(), Some(1), "repair still reports what it found");
    site_process.assert_check_passes();
    assert_eq!(site_process.counters("alice"), (1, 1));
}

// ---- the command line ------------------------------------------------------------

#[test]
fn cli_help_works_for_every_subcommand() {
    for args in [
        vec!["--help"],
        vec!["init", "--help"],
        vec!["user", "--help"],
        vec!["user", "add", "--help"],
        vec!["send", "--help"],
        vec!["seed", "--help"],
        vec!["check", "--help"],
        vec!["token", "--help"],
        vec!["help", "send"],
    ] {
        let out = piggyback(&args, &[]);
        assert_eq!(out.status.code(), Some(0), "{args:?}");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.contains("Usage:"), "{args:?}: {stdout}");
        assert!(out.stderr.is_empty(), "{args:?}");
    }
}

#[test]
fn cli_wrong_usage_exits_2_with_usage_on_stderr() {
    let site_process = three_users();
    let db = site_process.db.to_str().unwrap();
    for args in [
        vec![],
        vec!["--db", db],
        vec!["--db", db, "frobnicate"],
        vec!["--db", db, "user"],
        vec!["--db", db, "user", "add"],
        vec!["--db", db, "send", "--from", "alice", "--to", "bob"],
        vec!["--db", db, "seed", "--users", "many", "--messages", "1"],
        vec!["--db", db, "check", "--bogus"],
    ] {
        let out = piggyback(&args, &[]);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(out.stdout.is_empty(), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        // The usage, or for a bad value a pointer to --help.
        assert!(stderr.contains("Usage:") || stderr.contains("--help"), "{args:?}: {stderr}");
    }
    // No database at all is wrong usage too.
    let out = piggyback(&["check"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(String::from_utf8_lossy(&out.stderr).lines().count(), 1);
}

#[test]
fn cli_failures_exit_1_with_one_line() {
    let site_process = three_users();
    for args in [
        vec!["user", "add", "alice"],
        vec!["user", "add", "Not A Name"],
        vec!["send", "--from", "alice", "--to", "nobody", "--subject", "s", "--body", "b"],
    ] {
        let out = site_process.piggyback(&args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
    }
    let missing = site_process.dir.path().join("missing.db");
    let out = piggyback(&["--db", missing.to_str().unwrap(), "check"], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(!missing.exists());
}

#[test]
fn cli_takes_the_database_from_piggyback_db_and_init_is_idempotent() {
    let site_process = three_users();
    let db = site_process.db.to_str().unwrap();
    // The site's own spool (where a SQLite site has it anyway; a PostgreSQL one needs it named).
    let spool = site_process.spool();
    let env = [("PIGGYBACK_DB", db), ("PIGGYBACK_SPOOL", spool.to_str().unwrap())];
    let out = piggyback(&["user", "add", "dave", "--display-name", "Dave D."], &env);
    assert!(out.status.success());
    let out = piggyback(&["init"], &env);
    assert!(out.status.success());
    let r = site_process.get(Program::Profile, "dave", "");
    assert_eq!(r.json["profile"]["display_name"], "Dave D.");
    site_process.assert_check_passes();
}

#[test]
fn cli_seed_makes_a_site_the_programs_serve_and_check_passes() {
    let site_process = three_users();
    let out = site_process.piggyback_ok(&["seed", "--users", "20", "--messages", "300", "--seed", "3"]);
    assert!(out.starts_with("seeded 20 users"), "{out}");
    site_process.assert_check_passes();
    let user = site_process.conn().text("SELECT name FROM users ORDER BY id DESC LIMIT 1");
    let (new, delivered) = site_process.counters(&user);
    let r = site_process.get(Program::Posts, &user, "");
    r.assert_status(200);
    assert_eq!(r.counts(), (new + delivered, delivered, new));
    assert!(!r.json["posts"].as_array().unwrap().is_empty());
    site_process.assert_check_passes();
}
