//! `piggyback doctor [--as USER]`: checks an install as the web server's user meets it,
//! one line per check (`ok …` or `problem …: what to do`), exit 0 only when all are ok.
//!
//! With `--as USER` (as root) this process becomes USER (its groups, then its group,
//! then its uid) before anything is read, so every check is the kernel's answer for
//! that user, not a guess from permission bits.

use std::ffi::{CString, OsString};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Result, anyhow, bail};

use piggyback::config::Config;
use piggyback::gateway::Env;
use piggyback::identity::Key;
use piggyback::message_store::{Store, display_db, postgres_url};
use piggyback::wrap::settings::{self, Settings};

/// Who the checks run as, for the advice.
struct Who {
    user: String,
    group: String,
}

/// The report: the lines so far and whether any was a problem.
#[derive(Default)]
struct Report {
    problems: usize,
}

impl Report {
    fn ok(&mut self, what: impl std::fmt::Display) {
        println!("ok {what}");
    }

    fn problem(&mut self, what: impl std::fmt::Display, todo: impl std::fmt::Display) {
        self.problems += 1;
        println!("problem {what}: {todo}");
    }
}

pub fn run(
    db: Option<PathBuf>,
    spool: Option<PathBuf>,
    as_user: Option<&str>,
    file: Option<PathBuf>,
) -> Result<ExitCode> {
    // Where piggyback-wrap looks: ../etc/ from the folder both programs are installed in.
    let file = match file {
        Some(file) => file,
        None => {
            let exe = std::env::current_exe().and_then(std::fs::canonicalize)?;
            exe.parent().map(|dir| dir.join(settings::CONFIG_FILE)).unwrap_or_default()
        }
    };
    let file = std::path::absolute(&file)?;
    let who = match as_user {
        Some(name) => become_user(name)?,
        None => current_user(),
    };
    let mut report = Report::default();
    if euid() == 0 {
        report.problem(
            "running as root",
            "root may read and write everything, so these checks say nothing about the web server: \
             give --as and the server's user (www-data on Debian)",
        );
    }
    let mut env: Env = std::env::vars_os().filter_map(|(k, v)| k.into_string().ok().map(|k| (k, v))).collect();
    // The command line's --db and --spool stand for the environment's.
    if let Some(db) = db {
        env.insert("PIGGYBACK_DB".into(), db.into_os_string());
    }
    if let Some(spool) = spool {
        env.insert("PIGGYBACK_SPOOL".into(), spool.into_os_string());
    }
    settings_file(&mut report, &mut env, &file, &who);
    let config = match Config::from_lookup(|name| env.get(name).cloned()) {
        Ok(config) => {
            report.ok(format_args!("settings: PIGGYBACK_DB is {}", display_db(&config.db)));
            Some(config)
        }
        Err(e) => {
            report.problem(
                format_args!("settings: {e}"),
                format_args!("set it in {} (or the server's environment)", file.display()),
            );
            None
        }
    };
    if let Some(config) = &config {
        database(&mut report, &config.db, &who);
        spool_dir(&mut report, &config.spool, &who);
        session_key(&mut report, config.secret_file.as_deref(), &who, &file);
    }
    wrap_root(&mut report, env.get("PIGGYBACK_WRAP_ROOT"), &who, &file);
    if report.problems == 0 {
        println!("every check is ok for {}", who.user);
        Ok(ExitCode::SUCCESS)
    } else {
        println!("{} problem(s) for {}", report.problems, who.user);
        Ok(ExitCode::FAILURE)
    }
}

/// The settings file piggyback-wrap reads for what its environment lacks.
fn settings_file(report: &mut Report, env: &mut Env, file: &Path, who: &Who) {
    let shown = file.display();
    let meta = match std::fs::metadata(file) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            report.ok(format_args!("settings file: none at {shown}; the settings come from the environment"));
            return;
        }
        Err(e) => {
            // Its folder is closed to the user (scripts/install: etc/ is root's, opened to
            // the server's group).
            let folder = file.parent().unwrap_or(Path::new("/")).display();
            report.problem(
                format_args!("settings file {shown} is not readable by {}: {e}", who.user),
                format_args!(
                    "chown root:{group} {folder} {shown} && chmod 750 {folder} && chmod 640 {shown}",
                    group = who.group
                ),
            );
            return;
        }
    };
    if meta.mode() & 0o022 != 0 {
        report.problem(
            format_args!("settings file {shown} is writable by its group or others, so piggyback-wrap ignores it"),
            format_args!("chmod 640 {shown}"),
        );
        return;
    }
    if let Err(e) = std::fs::File::open(file) {
        report.problem(
            format_args!("settings file {shown} is not readable by {}: {e}", who.user),
            format_args!("chown root:{} {shown} && chmod 640 {shown}", who.group),
        );
        return;
    }
    match settings::merge_file(env, file) {
        None => report.ok(format_args!("settings file {shown} readable by {}", who.user)),
        Some(problem) => report.problem(format_args!("settings file: {problem}"), "fix the file"),
    }
}

/// The database: reachable, and writable for announcing (SQLite in WAL mode also needs
/// its folder, where `-wal` and `-shm` are made).
fn database(report: &mut Report, db: &Path, who: &Who) {
    let user = &who.user;
    if postgres_url(db).is_none() {
        let shown = db.display();
        if !db.exists() {
            report.problem(
                format_args!("database {shown} does not exist (or {user} cannot reach it)"),
                format_args!("run `piggyback --db {shown} init`, and let {user} reach its folder"),
            );
            return;
        }
        if let Err(e) = access(db, libc::R_OK | libc::W_OK) {
            report.problem(
                format_args!("database {shown} is not readable and writable by {user}: {e}"),
                format_args!("chown {user}:{} {shown} && chmod 600 {shown}", who.group),
            );
            return;
        }
        let folder = db.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        if let Err(e) = access(folder, libc::W_OK | libc::X_OK) {
            report.problem(
                format_args!(
                    "database folder {} is not writable by {user} ({e}): the -wal and -shm files are made there",
                    folder.display()
                ),
                format_args!("chown {user}:{} {} && chmod 750 {}", who.group, folder.display(), folder.display()),
            );
            return;
        }
        for suffix in ["-wal", "-shm"] {
            let mut side = db.as_os_str().to_owned();
            side.push(suffix);
            let side = PathBuf::from(side);
            if side.exists()
                && let Err(e) = access(&side, libc::R_OK | libc::W_OK)
            {
                report.problem(
                    format_args!("{} is not writable by {user}: {e}", side.display()),
                    format_args!("chown {user}:{} {}", who.group, side.display()),
                );
                return;
            }
        }
    }
    let store = match Store::open(db) {
        Ok(store) => store,
        Err(e) => {
            report.problem(
                format_args!("database {}: {e}", display_db(db)),
                "run `piggyback init` on it (as the owner), and check the server's user may connect",
            );
            return;
        }
    };
    match store.may_write() {
        Ok(true) => report.ok(format_args!("database {} reachable and writable by {user}", display_db(db))),
        Ok(false) => report.problem(
            format_args!("database {} is read-only for {user}", display_db(db)),
            "make it writable by the server's user (a read-only database drops site_messages): \
             on PostgreSQL grant it UPDATE on mailbox and INSERT on messages, and use the primary",
        ),
        Err(e) => report.problem(format_args!("database {}: {e}", display_db(db)), "see the error"),
    }
}

/// The spool's folders: a send is a file written there first.
fn spool_dir(report: &mut Report, spool: &Path, who: &Who) {
    let shown = spool.display();
    for sub in ["", "tmp", "new", "cur", "bad"] {
        let dir = spool.join(sub);
        if let Err(e) = access(&dir, libc::W_OK | libc::X_OK) {
            report.problem(
                format_args!("spool folder {} is not writable by {}: {e}", dir.display(), who.user),
                format_args!("run `piggyback init`, then chown -R {}:{} {shown}", who.user, who.group),
            );
            return;
        }
    }
    report.ok(format_args!("spool {shown} writable by {}", who.user));
}

/// The session-cookie key: the wrapper's bound cookie and the session program sign with it.
fn session_key(report: &mut Report, secret: Option<&Path>, who: &Who, file: &Path) {
    let Some(secret) = secret else {
        report.problem(
            "session key: PIGGYBACK_SECRET_FILE is not set, so no pb_session cookie can be signed or read",
            format_args!("set PIGGYBACK_SECRET_FILE in {} (`piggyback init` creates the key)", file.display()),
        );
        return;
    };
    let shown = secret.display();
    match Key::load(secret) {
        Ok(_) => report.ok(format_args!("session key {shown} readable by {}", who.user)),
        Err(e) => report.problem(
            format_args!("session key: {e}"),
            format_args!("chown root:{} {shown} && chmod 640 {shown} (run `piggyback init` to make one)", who.group),
        ),
    }
}

/// `PIGGYBACK_WRAP_ROOT`: the folders whose programs piggyback-wrap runs. Someone else
/// who may write there could make it run anything.
fn wrap_root(report: &mut Report, root: Option<&OsString>, who: &Who, file: &Path) {
    let Some(root) = root.filter(|r| !r.is_empty()) else {
        report.problem(
            "PIGGYBACK_WRAP_ROOT is not set: piggyback-wrap runs no program",
            format_args!("set PIGGYBACK_WRAP_ROOT=/folder/of/the/site/programs in {}", file.display()),
        );
        return;
    };
    let root = root.to_string_lossy();
    let mut bad = 0;
    for part in root.split(':').filter(|p| !p.is_empty()) {
        let path = Path::new(part);
        let meta = match std::fs::metadata(path) {
            Ok(meta) if meta.is_dir() && path.is_absolute() => meta,
            Ok(_) => {
                bad += 1;
                report.problem(
                    format_args!("PIGGYBACK_WRAP_ROOT: {part} is not an absolute path of a folder"),
                    "name the folder of the site's programs by its absolute path",
                );
                continue;
            }
            Err(e) => {
                bad += 1;
                report.problem(
                    format_args!("PIGGYBACK_WRAP_ROOT: {part}: {e}"),
                    format_args!("create it, or fix the path (and let {} reach it)", who.user),
                );
                continue;
            }
        };
        if meta.mode() & 0o022 != 0 {
            bad += 1;
            report.problem(
                format_args!("PIGGYBACK_WRAP_ROOT: {part} is writable by its group or others"),
                format_args!("chmod go-w {part}"),
            );
        } else if let Err(e) = access(path, libc::R_OK | libc::X_OK) {
            bad += 1;
            report.problem(
                format_args!("PIGGYBACK_WRAP_ROOT: {part} is not readable by {}: {e}", who.user),
                format_args!("chmod 755 {part}"),
            );
        }
    }
    if bad == 0 {
        // Read as piggyback-wrap reads it, so both agree on what counts.
        let (parsed, _) = Settings::from_lookup(|name| (name == "PIGGYBACK_WRAP_ROOT").then(|| root.as_ref().into()));
        let roots: Vec<String> = parsed.roots.iter().map(|r| r.display().to_string()).collect();
        report.ok(format_args!("PIGGYBACK_WRAP_ROOT {} exists and only its owner may write it", roots.join(":")));
    }
}

/// The kernel's answer for this process's user (real ids, which `--as` set).
fn access(path: &Path, mode: libc::c_int) -> std::io::Result<()> {
    let c = CString::new(path.as_os_str().as_bytes()).map_err(|_| std::io::ErrorKind::InvalidInput)?;
    // SAFETY: `c` is a NUL-terminated path that outlives the call.
    if unsafe { libc::access(c.as_ptr(), mode) } == 0 { Ok(()) } else { Err(std::io::Error::last_os_error()) }
}

fn euid() -> libc::uid_t {
    // SAFETY: geteuid cannot fail and touches no memory of ours.
    unsafe { libc::geteuid() }
}

/// The current user's and group's names.
fn current_user() -> Who {
    // SAFETY: getuid and getgid cannot fail.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    Who {
        user: passwd().into_iter().find(|p| p.uid == uid).map(|p| p.name).unwrap_or_else(|| uid.to_string()),
        group: group_name(gid).unwrap_or_else(|| gid.to_string()),
    }
}

/// Turns this process into `name`: its supplementary groups, its group, its uid, in
/// that order (each later step needs the privilege the earlier ones still had).
fn become_user(name: &str) -> Result<Who> {
    let entry =
        passwd().into_iter().find(|p| p.name == name).ok_or_else(|| anyhow!("no user named {name} in /etc/passwd"))?;
    if euid() != 0 {
        // SAFETY: getuid cannot fail.
        if unsafe { libc::getuid() } == entry.uid {
            return Ok(current_user());
        }
        bail!("--as {name} needs root (or run the doctor as {name} without --as)");
    }
    let mut groups: Vec<libc::gid_t> =
        group_file().into_iter().filter(|g| g.members.iter().any(|m| m == name)).map(|g| g.gid).collect();
    groups.push(entry.gid);
    // SAFETY: plain system calls on values; `groups` holds `groups.len()` entries.
    let failed = unsafe {
        libc::setgroups(groups.len(), groups.as_ptr()) != 0
            || libc::setgid(entry.gid) != 0
            || libc::setuid(entry.uid) != 0
    };
    if failed {
        bail!("cannot become {name}: {}", std::io::Error::last_os_error());
    }
    Ok(Who { user: name.to_owned(), group: group_name(entry.gid).unwrap_or_else(|| entry.gid.to_string()) })
}

// The installed programs are static (scripts/build-release), and a static glibc cannot
// load the NSS modules `getpwnam` needs: the user and group files are read directly.
// Users only a directory service knows (LDAP, sssd) are not found.

struct PasswdEntry {
    name: String,
    uid: libc::uid_t,
    gid: libc::gid_t,
}

fn passwd() -> Vec<PasswdEntry> {
    let text = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            Some(PasswdEntry {
                name: f.first()?.to_string(),
                uid: f.get(2)?.parse().ok()?,
                gid: f.get(3)?.parse().ok()?,
            })
        })
        .collect()
}

struct GroupEntry {
    name: String,
    gid: libc::gid_t,
    members: Vec<String>,
}

fn group_file() -> Vec<GroupEntry> {
    let text = std::fs::read_to_string("/etc/group").unwrap_or_default();
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            Some(GroupEntry {
                name: f.first()?.to_string(),
                gid: f.get(2)?.parse().ok()?,
                members: f.get(3).map(|m| m.split(',').filter(|m| !m.is_empty()).map(str::to_owned).collect())?,
            })
        })
        .collect()
}

fn group_name(gid: libc::gid_t) -> Option<String> {
    group_file().into_iter().find(|g| g.gid == gid).map(|g| g.name)
}
