//! The `piggyback` command line: administration of the message database.
//! Errors are one line on stderr; exit 0 on success, 1 on failure, 2 on wrong usage.
//! Each command is a thin wrapper over a library operation that returns a value; this
//! program prints it. The library itself prints nothing.
// A command's report on stdout and its errors on stderr are this program's purpose.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod doctor;
mod msqd;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context as _, Result, anyhow, bail};
use clap::{Parser, Subcommand};

use piggyback::config::Config;
use piggyback::file_mode::{self, FileMode, Kind};
use piggyback::gateway;
use piggyback::identity::{self, Claims, CookieName, Key};
use piggyback::message_store::NameTaken;
use piggyback::message_store::{SeedPlan, Store, display_db, postgres_url};
use piggyback::model::{MessageKind, NewMessage, now};
use piggyback::msq::spool::Spool;
use piggyback::msq::{self, DrainReport, Queue, SendOutcome, new_request_id};
use piggyback::names::UserName;
use piggyback::password;
use piggyback::wrap::settings as wrap_settings;

#[derive(Parser)]
#[command(name = "piggyback", version, about = "Administer a Piggyback message database")]
struct Cli {
    /// The message database: a SQLite file, or a postgresql:// URL (default: $PIGGYBACK_DB).
    #[arg(long, global = true, value_name = "PATH|URL")]
    db: Option<PathBuf>,
    /// The request-file spool (default: $PIGGYBACK_SPOOL, else spool/ beside a SQLite
    /// database; required with a PostgreSQL URL).
    #[arg(long, global = true, value_name = "DIR")]
    spool: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create or migrate the database (idempotent), in WAL mode; create the secret file
    /// named by $PIGGYBACK_SECRET_FILE when it does not exist.
    Init,
    /// Manage users.
    #[command(subcommand)]
    User(UserCommand),
    /// Send an in-site message through the same path the CGI programs use.
    Send {
        #[arg(long)]
        from: String,
        #[arg(long)]
        to: String,
        #[arg(long)]
        subject: String,
        #[arg(long)]
        body: String,
        /// The same key from the same sender never makes a second message.
        #[arg(long)]
        idempotency_key: Option<String>,
    },
    /// Fill the database with synthetic users, friendships, posts and messages.
    Seed {
        #[arg(long)]
        users: u64,
        #[arg(long)]
        messages: u64,
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Apply every waiting request file once, and print what was done.
    Drain {
        /// Take back claims older than this many seconds (their drainer died).
        #[arg(long, value_name = "SECONDS", default_value_t = msq::CLAIM_TIMEOUT_SECS)]
        stale_after: i64,
    },
    /// Keep one connection open, apply request files as they arrive, checkpoint the
    /// WAL now and then; stop cleanly on SIGTERM or SIGINT.
    Msqd {
        /// How often to look for new request files, in milliseconds.
        #[arg(long, value_name = "MS", default_value_t = 50)]
        poll_ms: u64,
        /// How often to checkpoint the WAL, in seconds.
        #[arg(long, value_name = "SECONDS", default_value_t = 30)]
        checkpoint_secs: u64,
    },
    /// Integrity check and recount of every counter, and the spool's state; exit 1 on
    /// any mismatch.
    Check {
        /// Rewrite the counters from the recount when they are off.
        #[arg(long)]
        repair: bool,
    },
    /// Copy this SQLite site's data into a new PostgreSQL database (made with the
    /// schema on the way) and count every table on both sides; exit 1 on any
    /// difference. Drain the spool first: waiting request files are not rows yet.
    MigrateToPostgres {
        /// The PostgreSQL database: postgresql:///NAME?host=/run/postgresql
        #[arg(long, value_name = "URL")]
        to: String,
    },
    /// Set a user's password, read as one line from standard input.
    Passwd { name: String },
    /// Print `{"site_messages": …}` for a user, announcing what is new exactly as a
    /// request of theirs would (for programs that are not CGI children).
    Status {
        #[arg(long)]
        user: String,
    },
    /// Print the names of the CGI programs, one a line (for scripts; needs no database).
    Programs,
    /// Check the install as the web server's user meets it: the settings and their file,
    /// the database, the spool, the session key, PIGGYBACK_WRAP_ROOT. One line per
    /// check, `ok …` or `problem …: what to do`; exit 0 only when every check is ok.
    Doctor {
        /// Check as this user (the web server's, e.g. www-data); needs root.
        #[arg(long = "as", value_name = "USER")]
        as_user: Option<String>,
        /// piggyback-wrap's settings file (default: ../etc/piggyback-wrap.conf from the
        /// folder this program is in, where piggyback-wrap looks).
        #[arg(long, value_name = "PATH")]
        settings: Option<PathBuf>,
    },
    /// Print the `Set-Cookie:` header line that logs a user in (for a site's own login:
    /// the cookie carries the user's session generation, so `piggyback user revoke`
    /// ends it). `__Host-pb_session` with `Secure` when the CGI environment says https
    /// (`HTTPS=on`, `REQUEST_SCHEME=https`) or with --https.
    Cookie {
        name: String,
        /// How long it is valid: 90s, 15m, 12h, 7d.
        #[arg(long, default_value = "7d")]
        ttl: String,
        /// Mint the https cookie whatever the environment says.
        #[arg(long)]
        https: bool,
    },
    /// Print a `pb_session` cookie value for a user (for host sites, scripts and tests).
    Token {
        name: String,
        /// How long it is valid: 90s, 15m, 12h, 7d.
        #[arg(long, default_value = "12h")]
        ttl: String,
        /// The key file (default: $PIGGYBACK_SECRET_FILE).
        #[arg(long, value_name = "PATH")]
        secret_file: Option<PathBuf>,
    },
}

/// Every NAME below is taken in canonical form (NFC, lowercase): `Bob@Example.com` is
/// bob@example.com. A name is refused when it breaks the rules of docs/API.md "User
/// names" (controls, invisible or bidirectional characters, symbols, mixed scripts),
/// and a new name when it looks like an existing user's (UTS #39 confusables).
#[derive(Subcommand)]
enum UserCommand {
    /// Add a user and print its id.
    Add {
        name: String,
        #[arg(long)]
        display_name: Option<String>,
        /// Read the user's password as one line from standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Print every user, one a line: id, name and display name, separated by tabs.
    List,
    /// Print one user as JSON: id, name, display name, when they joined, their counters
    /// (new, delivered), friends, posts and messages sent.
    Show { name: String },
    /// Rename a user; messages, friends, posts and session cookies follow (they refer
    /// to the id), `REMOTE_USER` must then carry the new name.
    Rename { from: String, to: String },
    /// End every session of a user at once: every cookie that names the user stops
    /// working, whatever minted it (a v1 value a site signed itself counts only until
    /// the user's first revocation).
    Revoke { name: String },
    /// Remove a user, in one transaction: their sessions end at once (their cookies
    /// answer 401); the messages they received are deleted; the messages they sent
    /// that were not announced yet are withdrawn (their recipients' counters
    /// recounted); friendships and friend requests are deleted. What they sent that
    /// was announced or read, their posts and their comments stay, shown as from
    /// "removed user #ID", a label no name can take. Sends of theirs or to them still
    /// in the spool are dropped by the drain. The name is free again at once. Prints
    /// what was removed.
    Remove { name: String },
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { ExitCode::from(2) } else { ExitCode::SUCCESS };
        }
    };
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("piggyback: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    let Cli { db, spool, command } = cli;
    // `programs` needs no database.
    match command {
        Command::Programs => return programs(),
        // A missing setting is one of the doctor's findings, not wrong usage.
        Command::Doctor { as_user, settings } => return doctor::run(db, spool, as_user.as_deref(), settings),
        _ => {}
    }
    let Some(site) = site(db, spool)? else { return Ok(ExitCode::from(2)) };
    match command {
        Command::Init => init(&site),
        Command::User(command) => user(&site, command),
        Command::Send { from, to, subject, body, idempotency_key } => {
            send(site, &from, &to, subject, body, idempotency_key)
        }
        Command::Seed { users, messages, seed } => seed_site(&site, SeedPlan { users, messages, seed }),
        Command::Drain { stale_after } => drain(site, stale_after),
        Command::Msqd { poll_ms, checkpoint_secs } => {
            let store = open(&site.db)?;
            msqd::run(&Queue::new(&store, site.spool), poll_ms, checkpoint_secs)
        }
        Command::MigrateToPostgres { to } => migrate_to_postgres(&site, &to),
        Command::Check { repair } => check(&site, repair),
        Command::Passwd { name } => passwd(&site, &name),
        Command::Status { user } => status(&site, &user),
        Command::Cookie { name, ttl, https } => cookie(&site, &name, &ttl, https),
        Command::Token { name, ttl, secret_file } => token(&site, &name, &ttl, secret_file),
        Command::Programs | Command::Doctor { .. } => unreachable!("answered above"),
    }
}

/// What every command but `programs` works on.
struct Site {
    /// The database: a SQLite path or a PostgreSQL URL.
    db: PathBuf,
    spool: Spool,
    /// The permissions new files get (`PIGGYBACK_FILE_MODE`).
    mode: FileMode,
}

/// The site the options and the environment name; `None` (after one line on stderr)
/// when the database or, beside PostgreSQL, the spool is not given.
fn site(db: Option<PathBuf>, spool: Option<PathBuf>) -> Result<Option<Site>> {
    let Some(db) = db.or_else(|| env_path("PIGGYBACK_DB")) else {
        eprintln!("piggyback: no database: give --db PATH or set PIGGYBACK_DB");
        return Ok(None);
    };
    let mode = piggyback::config::file_mode_from_env()?;
    let spool = match spool.or_else(|| env_path("PIGGYBACK_SPOOL")) {
        Some(spool) => Spool::new(spool),
        None if postgres_url(&db).is_some() => {
            eprintln!("piggyback: no spool: give --spool DIR or set PIGGYBACK_SPOOL (each host has its own)");
            return Ok(None);
        }
        None => Spool::new(piggyback::config::default_spool(&db)),
    }
    .with_mode(mode);
    Ok(Some(Site { db, spool, mode }))
}

fn init(site: &Site) -> Result<ExitCode> {
    let Site { db, spool, mode } = site;
    // An empty file is an empty database: made here with the mode's bits, so that
    // SQLite gives `-wal` and `-shm` the same ones. (A PostgreSQL URL names no file.)
    if postgres_url(db).is_none() {
        match file_mode::create_new(db, *mode) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e).with_context(|| format!("cannot create {}", db.display())),
        }
    }
    Store::init(db).with_context(|| format!("cannot initialise {}", display_db(db)))?;
    println!("initialised {}", display_db(db));
    spool.create().with_context(|| format!("cannot create the spool {}", spool.root().display()))?;
    println!("spool {}", spool.root().display());
    if let Some(path) = env_path("PIGGYBACK_SECRET_FILE")
        && identity::create_key_file(&path, *mode).with_context(|| format!("cannot create {}", path.display()))?
    {
        println!("created secret {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

fn user(site: &Site, command: UserCommand) -> Result<ExitCode> {
    match command {
        UserCommand::Add { name, display_name, password_stdin } => user_add(site, &name, display_name, password_stdin),
        UserCommand::List => user_list(site),
        UserCommand::Show { name } => user_show(site, &name),
        UserCommand::Rename { from, to } => user_rename(site, &from, &to),
        UserCommand::Revoke { name } => user_revoke(site, &name),
        UserCommand::Remove { name } => user_remove(site, &name),
    }
}

fn user_add(site: &Site, name: &str, display_name: Option<String>, password_stdin: bool) -> Result<ExitCode> {
    let name = user_name(name)?;
    let hash = if password_stdin { Some(password::hash(&password_line()?)?) } else { None };
    let store = open(&site.db)?;
    let display = display_name.unwrap_or_else(|| name.to_string());
    match store.add_user(&name, &display, hash.as_deref(), now())? {
        Ok(id) => println!("{}", id.0),
        Err(taken) => bail!("{}", taken_message(&name, &taken)),
    }
    Ok(ExitCode::SUCCESS)
}

fn user_list(site: &Site) -> Result<ExitCode> {
    for a in open(&site.db)?.accounts()? {
        println!("{}\t{}\t{}", a.id.0, a.name, a.display_name.replace(['\t', '\n', '\r'], " "));
    }
    Ok(ExitCode::SUCCESS)
}

fn user_show(site: &Site, name: &str) -> Result<ExitCode> {
    let name = user_name(name)?;
    let a = open(&site.db)?.account(&name)?.ok_or_else(|| anyhow!("no user named {name}"))?;
    println!(
        "{}",
        serde_json::json!({
            "id": a.id.0, "name": a.name, "display_name": a.display_name, "joined_at": a.joined_at,
            "new": a.new, "delivered": a.delivered, "unread": a.new + a.delivered,
            "friends": a.friends, "posts": a.posts, "sent": a.sent,
        })
    );
    Ok(ExitCode::SUCCESS)
}

fn user_rename(site: &Site, from: &str, to: &str) -> Result<ExitCode> {
    let (from, to) = (user_name(from)?, user_name(to)?);
    match open(&site.db)?.rename_user(&from, &to)? {
        Some(Ok(())) => println!("renamed {from} to {to}"),
        Some(Err(taken)) => bail!("{}", taken_message(&to, &taken)),
        None => bail!("no user named {from}"),
    }
    Ok(ExitCode::SUCCESS)
}

fn user_revoke(site: &Site, name: &str) -> Result<ExitCode> {
    let name = user_name(name)?;
    let store = open(&site.db)?;
    let user = store.user_by_name(&name)?.ok_or_else(|| anyhow!("no user named {name}"))?;
    store.end_all_sessions(user.id)?;
    println!("ended every session of {name}");
    Ok(ExitCode::SUCCESS)
}

fn user_remove(site: &Site, name: &str) -> Result<ExitCode> {
    let name = user_name(name)?;
    let r = open(&site.db)?.remove_user(&name, now())?.ok_or_else(|| anyhow!("no user named {name}"))?;
    println!("removed {name} (id {}); every session ended", r.id.0);
    println!("deleted: {} messages received, {} unannounced messages sent (withdrawn)", r.received, r.withdrawn);
    println!("deleted: {} friendships, {} friend requests", r.friendships, r.requests);
    println!(
        "kept as from \"{}\": {} announced or read messages sent, {} posts, {} comments",
        r.label, r.kept, r.posts, r.comments
    );
    println!("the name {name} is free again");
    Ok(ExitCode::SUCCESS)
}

fn send(
    site: Site,
    from: &str,
    to: &str,
    subject: String,
    body: String,
    idempotency_key: Option<String>,
) -> Result<ExitCode> {
    let store = open(&site.db)?;
    let user =
        |name: &UserName| -> Result<_> { store.user_by_name(name)?.ok_or_else(|| anyhow!("no user named {name}")) };
    let (from, to) = (user(&user_name(from)?)?, user(&user_name(to)?)?);
    let queue = Queue::new(&store, site.spool);
    let outcome = queue.send(NewMessage {
        request_id: new_request_id(),
        from: from.id,
        to: to.id,
        subject,
        body,
        kind: MessageKind::Note,
        idempotency_key,
        sent_at: now(),
    })?;
    match outcome {
        SendOutcome::Stored { request_id, message } => {
            println!("stored message {} to {} (request {request_id})", message.0, to.name)
        }
        SendOutcome::Queued { request_id } => {
            println!("queued request {request_id} to {}; the next drain stores it", to.name)
        }
        SendOutcome::Dropped { request_id } => bail!("request {request_id} dropped: a user has been removed"),
    }
    Ok(ExitCode::SUCCESS)
}

fn seed_site(site: &Site, plan: SeedPlan) -> Result<ExitCode> {
    let store = open(&site.db)?;
    let started = Instant::now();
    let report = store.seed(&plan, now())?;
    println!(
        "seeded {} users (ids from {}) and {} messages in {:.1} s",
        report.users,
        report.first_user.0,
        report.messages,
        started.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}

fn drain(site: Site, stale_after: i64) -> Result<ExitCode> {
    let store = open(&site.db)?;
    let report = Queue::new(&store, site.spool).drain_all(stale_after, now())?;
    print_drain(&report);
    if report.stopped.is_some() {
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

fn migrate_to_postgres(site: &Site, to: &str) -> Result<ExitCode> {
    let store = open(&site.db)?;
    let copies =
        store.migrate_to_postgres(to).with_context(|| format!("cannot copy into {}", display_db(Path::new(to))))?;
    let mut same = true;
    for c in &copies {
        println!("{}: {} rows in SQLite, {} in PostgreSQL", c.table, c.source, c.target);
        same &= c.source == c.target;
    }
    let problems = Store::open(Path::new(to))?.audit()?;
    for p in &problems {
        eprintln!("{p}");
    }
    if !same || !problems.is_empty() {
        eprintln!("piggyback: the copy differs from its source");
        return Ok(ExitCode::FAILURE);
    }
    println!("copied into {}: every table counts the same on both sides", display_db(Path::new(to)));
    Ok(ExitCode::SUCCESS)
}

fn check(site: &Site, repair: bool) -> Result<ExitCode> {
    let Site { db, spool, mode } = site;
    let store = open(db)?;
    // Looser permissions are a warning, not a failed check: the data is sound.
    for line in file_mode::looser(&sensitive_paths(db, spool), *mode) {
        eprintln!("warning: {line}");
    }
    let state = spool.state().with_context(|| format!("cannot read the spool {}", spool.root().display()))?;
    println!(
        "spool {}: {} waiting, {} claimed, {} bad, {} being written",
        spool.root().display(),
        state.waiting,
        state.claimed,
        state.bad,
        state.writing
    );
    let problems = store.audit()?;
    if problems.is_empty() {
        println!("ok: integrity and every counter check out");
        return Ok(ExitCode::SUCCESS);
    }
    let mut err = std::io::stderr().lock();
    for p in &problems {
        let _ = writeln!(err, "{p}");
    }
    if repair {
        let n = store.repair_counters()?;
        println!("repaired the counters of {n} users");
    }
    Ok(ExitCode::FAILURE)
}

fn passwd(site: &Site, name: &str) -> Result<ExitCode> {
    let name = user_name(name)?;
    let store = open(&site.db)?;
    let user = store.user_by_name(&name)?.ok_or_else(|| anyhow!("no user named {name}"))?;
    let hash = password::hash(&password_line()?)?;
    if !store.set_password_hash(user.id, &hash)? {
        bail!("no user named {name}");
    }
    // Whoever had the old password may hold a cookie: it ends with it.
    store.end_all_sessions(user.id)?;
    println!("password of {name} set; every session of {name} ended");
    Ok(ExitCode::SUCCESS)
}

fn programs() -> Result<ExitCode> {
    for program in piggyback::handlers::PROGRAMS {
        println!("{}", program.name);
    }
    Ok(ExitCode::SUCCESS)
}

fn status(site: &Site, user: &str) -> Result<ExitCode> {
    // The programs' own settings (PIGGYBACK_EMPTY, PIGGYBACK_MAX_ITEMS…), on this database.
    // (A PostgreSQL URL is no path to make absolute.)
    let db = if postgres_url(&site.db).is_some() { site.db.clone() } else { std::path::absolute(&site.db)? };
    let config = Config::from_lookup(|name| match name {
        "PIGGYBACK_DB" => Some(db.clone().into_os_string()),
        "PIGGYBACK_SPOOL" => Some(site.spool.root().as_os_str().to_owned()),
        _ => std::env::var_os(name),
    })?;
    let member = gateway::site_messages_of_user(&config, user).map_err(|e| anyhow!(e))?;
    let mut answer = serde_json::Map::new();
    if let Some(member) = member {
        answer.insert(gateway::SITE_MESSAGES.into(), member);
    }
    println!("{}", serde_json::Value::Object(answer));
    Ok(ExitCode::SUCCESS)
}

fn token(site: &Site, name: &str, ttl: &str, secret_file: Option<PathBuf>) -> Result<ExitCode> {
    let path = secret_file
        .or_else(|| env_path("PIGGYBACK_SECRET_FILE"))
        .ok_or_else(|| anyhow!("no key: give --secret-file PATH or set PIGGYBACK_SECRET_FILE"))?;
    let key = Key::load(&path)?;
    let ttl = parse_duration(ttl)?;
    let name = user_name(name)?;
    let store = open(&site.db)?;
    let user = store.user_by_name(&name)?.ok_or_else(|| anyhow!("no user named {name}"))?;
    let generation = store.session_user(user.id)?.map(|u| u.generation);
    let claims = Claims { user: user.id, generation, session: None, expires: now() + ttl, binding: None };
    println!("{}", key.mint(&claims, CookieName::Plain));
    Ok(ExitCode::SUCCESS)
}

fn cookie(site: &Site, name: &str, ttl: &str, https: bool) -> Result<ExitCode> {
    let path = env_path("PIGGYBACK_SECRET_FILE")
        .ok_or_else(|| anyhow!("no key: set PIGGYBACK_SECRET_FILE (or install etc/piggyback-wrap.conf)"))?;
    let key = Key::load(&path)?;
    let ttl = parse_duration(ttl)?;
    let name = user_name(name)?;
    let store = open(&site.db)?;
    let user = store.user_by_name(&name)?.ok_or_else(|| anyhow!("no user named {name}"))?;
    let generation = store.session_user(user.id)?.map(|u| u.generation);
    let claims = Claims { user: user.id, generation, session: None, expires: now() + ttl, binding: None };
    let https = https
        || std::env::var("HTTPS").is_ok_and(|v| v.eq_ignore_ascii_case("on") || v == "1")
        || std::env::var("REQUEST_SCHEME").is_ok_and(|v| v.eq_ignore_ascii_case("https"));
    let cookie = CookieName::for_scheme(https);
    println!(
        "Set-Cookie: {}={}; Path=/; Max-Age={ttl}; HttpOnly; SameSite=Lax{}",
        cookie.as_str(),
        key.mint(&claims, cookie),
        if https { "; Secure" } else { "" }
    );
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn print_drain(report: &DrainReport) {
    println!(
        "applied {}, already stored {}, claims taken back {}, set aside {}, dropped (user removed) {}",
        report.applied,
        report.duplicates,
        report.reclaimed,
        report.bad.len(),
        report.dropped.len()
    );
    for line in report.bad.iter().chain(&report.dropped).chain(&report.stopped) {
        eprintln!("{line}");
    }
}

fn open(db: &Path) -> Result<Store> {
    Store::open(db).with_context(|| format!("cannot open {}", display_db(db)))
}

/// One line of standard input, without its line end: a password for `--password-stdin`
/// and `passwd` (whose terminal echo, if any, is the caller's business).
fn password_line() -> Result<String> {
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).context("cannot read the password from standard input")?;
    let line = line.strip_suffix('\n').unwrap_or(&line);
    let line = line.strip_suffix('\r').unwrap_or(line);
    if line.is_empty() {
        bail!("no password on standard input");
    }
    Ok(line.to_string())
}

/// The files whose permissions `check` looks at: the database with its `-wal` and
/// `-shm`, the session key, the spool's folders and files.
fn sensitive_paths(db: &Path, spool: &Spool) -> Vec<(PathBuf, Kind)> {
    let mut paths = vec![(db.to_path_buf(), Kind::File)];
    for suffix in ["-wal", "-shm"] {
        let mut name = db.as_os_str().to_owned();
        name.push(suffix);
        paths.push((PathBuf::from(name), Kind::File));
    }
    if let Some(secret) = env_path("PIGGYBACK_SECRET_FILE") {
        paths.push((secret, Kind::Secret));
    }
    paths.extend(spool.paths());
    paths
}

/// A setting from the environment, else from the `etc/piggyback-wrap.conf` of the
/// install this command belongs to: a site's program run by `piggyback-wrap` sees no
/// Piggyback setting, yet its login may call `piggyback cookie`.
fn env_path(name: &str) -> Option<PathBuf> {
    std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from).or_else(|| install_setting(name))
}

fn install_setting(name: &str) -> Option<PathBuf> {
    let exe = std::env::current_exe().and_then(std::fs::canonicalize).ok()?;
    let mut settings = piggyback::gateway::Env::default();
    if let Some(problem) = wrap_settings::merge_file(&mut settings, &exe.parent()?.join(wrap_settings::CONFIG_FILE)) {
        eprintln!("piggyback: {problem}");
    }
    settings.get(name).filter(|v| !v.is_empty()).map(PathBuf::from)
}

/// `90s`, `15m`, `12h`, `7d` (or plain seconds) in seconds.
fn parse_duration(s: &str) -> Result<i64> {
    piggyback::config::parse_duration(s).ok_or_else(|| anyhow!("not a usable duration: {s:?} (try 90s, 15m, 12h, 7d)"))
}

/// A name from the command line in canonical form (`piggyback::names`), or why not.
fn user_name(raw: &str) -> Result<UserName> {
    UserName::parse(raw).map_err(|e| anyhow!("{raw:?}: {e}"))
}

/// Why `name` cannot be given, for `user add` and `user rename`.
fn taken_message(name: &UserName, taken: &NameTaken) -> String {
    match taken {
        NameTaken::Exact => format!("user {name} exists already"),
        NameTaken::LookAlike(other) => {
            format!("{name} looks like the existing user {other} (the same UTS #39 skeleton): choose another name")
        }
    }
}
