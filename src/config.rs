//! Configuration from the contract's environment variables (values in, values out).

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::file_mode::FileMode;
use crate::proxy::{self, Cidr};

/// Largest request body any program accepts.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Whether `REMOTE_USER` names the user: only where the operator says the server itself
/// authenticated the request (`PIGGYBACK_TRUST_REMOTE_USER=1`). nginx's stock
/// `fastcgi_params` and Python's `http.server` fill it from any client's
/// `Authorization` header without checking the password.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemoteUser {
    Trusted,
    Ignored,
}

/// What to attach when the user has nothing unread (patent claim 4 allows both).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmptyPolicy {
    Explicit,
    Omit,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub db: PathBuf,
    pub spool: PathBuf,
    pub secret_file: Option<PathBuf>,
    pub empty: EmptyPolicy,
    pub max_items: usize,
    pub snippet_chars: usize,
    /// Messages a user may send per minute.
    pub send_rate_per_minute: u32,
    /// Messages one user may send one recipient per day (`PIGGYBACK_SEND_PAIR_DAILY`).
    pub send_pair_per_day: u32,
    /// Posts and comments a user may write per minute (`PIGGYBACK_POST_RATE`).
    pub post_rate_per_minute: u32,
    /// Bytes of posts and comments a user may have stored (`PIGGYBACK_POST_QUOTA`).
    pub post_quota_bytes: i64,
    /// Seconds after which an unacknowledged announcement is made again to a client
    /// that acknowledges (sends `X-Piggyback-Ack`).
    pub ack_lease_secs: i64,
    /// Extra origins allowed to make state-changing requests.
    pub allowed_origins: Vec<String>,
    /// How long a session cookie from the `session` program is valid, in seconds.
    pub session_ttl: i64,
    /// `PIGGYBACK_TRUST_REMOTE_USER`.
    pub remote_user: RemoteUser,
    /// Proxies whose forwarding headers are believed (`PIGGYBACK_TRUSTED_PROXIES`).
    pub trusted_proxies: Vec<Cidr>,
    /// Who may read the files the programs create (`PIGGYBACK_FILE_MODE`).
    pub file_mode: FileMode,
    /// Seconds an idle page waits between `GET messages/status` checks (`X-Poll-Interval`).
    pub poll_interval_secs: i64,
    /// `PIGGYBACK_SITE_SESSION_COOKIE`: the site's own session cookie (`PHPSESSID`), to
    /// which `piggyback-wrap` binds the cookie it sets when a wrapped program names the
    /// user; a bound cookie counts only with the same value of it.
    pub site_session_cookie: Option<String>,
}

/// Default session lifetime: 7 days.
pub const DEFAULT_SESSION_TTL: i64 = 7 * 86_400;
/// Longest session lifetime: browsers cap `Max-Age` at 400 days.
pub const MAX_SESSION_TTL: i64 = 400 * 86_400;

/// The session cookie's name over plain http (and read on https during the transition).
pub const COOKIE_NAME: &str = "pb_session";

/// The session cookie's name on https: browsers accept a `__Host-` cookie only with
/// `Secure`, `Path=/` and no `Domain`, so no sibling subdomain can set one.
pub const HOST_COOKIE_NAME: &str = "__Host-pb_session";

/// A configuration that cannot be used: names the variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub variable: &'static str,
    pub problem: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.variable, self.problem)
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Reads the configuration through `var`, which looks a variable up (the process
    /// environment in production, a map in tests).
    pub fn from_lookup(var: impl Fn(&str) -> Option<OsString>) -> Result<Config, ConfigError> {
        let text = |name: &'static str| -> Result<Option<String>, ConfigError> {
            match var(name) {
                None => Ok(None),
                Some(v) if v.is_empty() => Ok(None),
                Some(v) => v
                    .into_string()
                    .map(Some)
                    .map_err(|_| ConfigError { variable: name, problem: "is not valid UTF-8".into() }),
            }
        };
        let db = match var("PIGGYBACK_DB") {
            Some(v) if !v.is_empty() => PathBuf::from(v),
            _ => {
                return Err(ConfigError {
                    variable: "PIGGYBACK_DB",
                    problem: "is not set; it must name the SQLite message database or a PostgreSQL URL".into(),
                });
            }
        };
        let postgres = crate::message_store::postgres_url(&db).is_some();
        if !postgres && !db.is_absolute() {
            return Err(ConfigError {
                variable: "PIGGYBACK_DB",
                problem: format!("must be an absolute path or a postgresql:// URL, not {}", db.display()),
            });
        }
        let spool = match var("PIGGYBACK_SPOOL") {
            Some(v) if !v.is_empty() => PathBuf::from(v),
            // Each web host has its own spool: there is no folder "beside" a server.
            _ if postgres => {
                return Err(ConfigError {
                    variable: "PIGGYBACK_SPOOL",
                    problem: "must be set when PIGGYBACK_DB is a PostgreSQL URL".into(),
                });
            }
            _ => default_spool(&db),
        };
        let secret_file = var("PIGGYBACK_SECRET_FILE").filter(|v| !v.is_empty()).map(PathBuf::from);
        let empty = match text("PIGGYBACK_EMPTY")?.as_deref() {
            None | Some("explicit") => EmptyPolicy::Explicit,
            Some("omit") => EmptyPolicy::Omit,
            Some(other) => {
                return Err(ConfigError {
                    variable: "PIGGYBACK_EMPTY",
                    problem: format!("must be `explicit` or `omit`, not `{other}`"),
                });
            }
        };
        let max_items = number(text("PIGGYBACK_MAX_ITEMS")?, "PIGGYBACK_MAX_ITEMS", 20, 1, 1000)?;
        let snippet_chars = number(text("PIGGYBACK_SNIPPET_CHARS")?, "PIGGYBACK_SNIPPET_CHARS", 60, 0, 10_000)?;
        let send_rate_per_minute =
            number(text("PIGGYBACK_SEND_RATE")?, "PIGGYBACK_SEND_RATE", 30, 1, 1_000_000)? as u32;
        let send_pair_per_day =
            number(text("PIGGYBACK_SEND_PAIR_DAILY")?, "PIGGYBACK_SEND_PAIR_DAILY", 200, 1, 1_000_000)? as u32;
        let post_rate_per_minute =
            number(text("PIGGYBACK_POST_RATE")?, "PIGGYBACK_POST_RATE", 10, 1, 1_000_000)? as u32;
        let post_quota_bytes =
            number(text("PIGGYBACK_POST_QUOTA")?, "PIGGYBACK_POST_QUOTA", 10 << 20, 1, 1 << 40)? as i64;
        let ack_lease_secs = number(text("PIGGYBACK_ACK_LEASE")?, "PIGGYBACK_ACK_LEASE", 120, 5, 86_400)? as i64;
        let poll_interval_secs =
            number(text("PIGGYBACK_POLL_INTERVAL")?, "PIGGYBACK_POLL_INTERVAL", 30, 2, 3_600)? as i64;
        let allowed_origins = text("PIGGYBACK_ALLOWED_ORIGINS")?
            .map(|s| {
                s.split([',', ' '])
                    .filter(|o| !o.is_empty())
                    .map(|o| o.trim_end_matches('/').to_ascii_lowercase())
                    .collect()
            })
            .unwrap_or_default();
        let session_ttl = match text("PIGGYBACK_SESSION_TTL")? {
            None => DEFAULT_SESSION_TTL,
            Some(v) => match parse_duration(&v) {
                Some(secs) if (60..=MAX_SESSION_TTL).contains(&secs) => secs,
                _ => {
                    return Err(ConfigError {
                        variable: "PIGGYBACK_SESSION_TTL",
                        problem: format!("must be a duration from 60s to 400d (90m, 12h, 7d), not `{v}`"),
                    });
                }
            },
        };
        let remote_user = match text("PIGGYBACK_TRUST_REMOTE_USER")?.as_deref() {
            None | Some("0") => RemoteUser::Ignored,
            Some("1") => RemoteUser::Trusted,
            Some(other) => {
                return Err(ConfigError {
                    variable: "PIGGYBACK_TRUST_REMOTE_USER",
                    problem: format!("must be 1 (the server authenticates REMOTE_USER) or 0, not `{other}`"),
                });
            }
        };
        let trusted_proxies = match text("PIGGYBACK_TRUSTED_PROXIES")? {
            None => Vec::new(),
            Some(v) => proxy::parse_list(&v)
                .map_err(|e| ConfigError { variable: "PIGGYBACK_TRUSTED_PROXIES", problem: e.to_string() })?,
        };
        let file_mode = match text("PIGGYBACK_FILE_MODE")? {
            None => FileMode::Owner,
            Some(v) => FileMode::parse(&v).ok_or_else(|| ConfigError {
                variable: "PIGGYBACK_FILE_MODE",
                problem: format!("must be `owner` or `group`, not `{v}`"),
            })?,
        };
        let site_session_cookie = match text("PIGGYBACK_SITE_SESSION_COOKIE")? {
            None => None,
            Some(v) if is_cookie_name(&v) => Some(v),
            Some(v) => {
                return Err(ConfigError {
                    variable: "PIGGYBACK_SITE_SESSION_COOKIE",
                    problem: format!("must be a cookie name (letters, digits, `_`, `-`, `.`), not `{v}`"),
                });
            }
        };
        Ok(Config {
            db,
            spool,
            secret_file,
            empty,
            max_items,
            snippet_chars,
            send_rate_per_minute,
            send_pair_per_day,
            post_rate_per_minute,
            post_quota_bytes,
            ack_lease_secs,
            allowed_origins,
            session_ttl,
            remote_user,
            trusted_proxies,
            file_mode,
            poll_interval_secs,
            site_session_cookie,
        })
    }

    /// The configuration of this process's environment.
    pub fn from_env() -> Result<Config, ConfigError> {
        Config::from_lookup(|name| std::env::var_os(name))
    }

    /// A configuration for `db` with every default (for the command line and tests).
    pub fn for_db(db: PathBuf) -> Config {
        Config {
            spool: default_spool(&db),
            db,
            secret_file: None,
            empty: EmptyPolicy::Explicit,
            max_items: 20,
            snippet_chars: 60,
            send_rate_per_minute: 30,
            send_pair_per_day: 200,
            post_rate_per_minute: 10,
            post_quota_bytes: 10 << 20,
            ack_lease_secs: 120,
            allowed_origins: Vec::new(),
            session_ttl: DEFAULT_SESSION_TTL,
            remote_user: RemoteUser::Ignored,
            trusted_proxies: Vec::new(),
            file_mode: FileMode::Owner,
            poll_interval_secs: 30,
            site_session_cookie: None,
        }
    }
}

/// A cookie name a site's session uses: an RFC 6265 token, restricted to what such
/// names are made of in practice (`PHPSESSID`, `CGISESSID`, `session-id`, `sid.v2`).
pub fn is_cookie_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
        && !name.eq_ignore_ascii_case(COOKIE_NAME)
        && !name.eq_ignore_ascii_case(HOST_COOKIE_NAME)
}

/// `90s`, `15m`, `12h`, `7d` (or plain seconds) in seconds; `None` unless positive.
pub fn parse_duration(s: &str) -> Option<i64> {
    let s = s.trim();
    let (digits, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: i64 = digits.parse().ok()?;
    let scale = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return None,
    };
    n.checked_mul(scale).filter(|secs| *secs > 0)
}

fn number(
    value: Option<String>,
    variable: &'static str,
    default: usize,
    min: usize,
    max: usize,
) -> Result<usize, ConfigError> {
    let Some(value) = value else { return Ok(default) };
    match value.trim().parse::<usize>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => {
            Err(ConfigError { variable, problem: format!("must be a whole number from {min} to {max}, not `{value}`") })
        }
    }
}

/// The spool when `PIGGYBACK_SPOOL` is not set: `spool/` beside the database.
pub fn default_spool(db: &Path) -> PathBuf {
    db.parent().unwrap_or(Path::new(".")).join("spool")
}

/// `PIGGYBACK_FILE_MODE` from the process environment: the command line's reading of
/// the setting.
pub fn file_mode_from_env() -> Result<FileMode, ConfigError> {
    match std::env::var("PIGGYBACK_FILE_MODE") {
        Err(_) => Ok(FileMode::Owner),
        Ok(v) if v.is_empty() => Ok(FileMode::Owner),
        Ok(v) => FileMode::parse(&v).ok_or_else(|| ConfigError {
            variable: "PIGGYBACK_FILE_MODE",
            problem: format!("must be `owner` or `group`, not `{v}`"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, OsString> = vars.iter().map(|(k, v)| (k.to_string(), OsString::from(v))).collect();
        Config::from_lookup(|name| map.get(name).cloned())
    }

    #[test]
    fn defaults() {
        let c = config(&[("PIGGYBACK_DB", "/srv/pb/site.db")]).unwrap();
        assert_eq!(c.spool, PathBuf::from("/srv/pb/spool"));
        assert_eq!(c.empty, EmptyPolicy::Explicit);
        assert_eq!((c.max_items, c.snippet_chars), (20, 60));
    }

    #[test]
    fn errors_name_the_variable() {
        assert_eq!(config(&[]).unwrap_err().variable, "PIGGYBACK_DB");
        assert_eq!(config(&[("PIGGYBACK_DB", "rel.db")]).unwrap_err().variable, "PIGGYBACK_DB");
        let url = "postgresql:///piggyback?host=/run/postgresql";
        assert_eq!(config(&[("PIGGYBACK_DB", url)]).unwrap_err().variable, "PIGGYBACK_SPOOL");
        let c = config(&[("PIGGYBACK_DB", url), ("PIGGYBACK_SPOOL", "/var/spool/pb")]).unwrap();
        assert_eq!((c.db.to_str(), c.spool.to_str()), (Some(url), Some("/var/spool/pb")));
        let e = config(&[("PIGGYBACK_DB", "/a.db"), ("PIGGYBACK_MAX_ITEMS", "lots")]).unwrap_err();
        assert_eq!(e.variable, "PIGGYBACK_MAX_ITEMS");
        let e = config(&[("PIGGYBACK_DB", "/a.db"), ("PIGGYBACK_EMPTY", "never")]).unwrap_err();
        assert_eq!(e.variable, "PIGGYBACK_EMPTY");
        let e =
            config(&[("PIGGYBACK_DB", "/a.db"), ("PIGGYBACK_TRUSTED_PROXIES", "10.0.0.0/8, proxy.lan")]).unwrap_err();
        assert_eq!(e.variable, "PIGGYBACK_TRUSTED_PROXIES");
        let c = config(&[("PIGGYBACK_DB", "/a.db"), ("PIGGYBACK_TRUSTED_PROXIES", "10.0.0.0/8 ::1")]).unwrap();
        assert_eq!(c.trusted_proxies.len(), 2);
    }

    #[test]
    fn omit_and_overrides() {
        let c = config(&[
            ("PIGGYBACK_DB", "/a.db"),
            ("PIGGYBACK_EMPTY", "omit"),
            ("PIGGYBACK_MAX_ITEMS", "3"),
            ("PIGGYBACK_SPOOL", "/q"),
        ])
        .unwrap();
        assert_eq!(c.empty, EmptyPolicy::Omit);
        assert_eq!(c.max_items, 3);
        assert_eq!(c.spool, PathBuf::from("/q"));
    }

    #[test]
    fn session_ttl() {
        assert_eq!(config(&[("PIGGYBACK_DB", "/a.db")]).unwrap().session_ttl, 7 * 86_400);
        let c = config(&[("PIGGYBACK_DB", "/a.db"), ("PIGGYBACK_SESSION_TTL", "12h")]).unwrap();
        assert_eq!(c.session_ttl, 12 * 3600);
        for bad in ["0", "59", "401d", "soon", "-5m", "99999999999999999999d"] {
            let e = config(&[("PIGGYBACK_DB", "/a.db"), ("PIGGYBACK_SESSION_TTL", bad)]).unwrap_err();
            assert_eq!(e.variable, "PIGGYBACK_SESSION_TTL", "{bad}");
        }
    }

    #[test]
    fn remote_user_is_trusted_only_when_the_operator_says_so() {
        assert_eq!(config(&[("PIGGYBACK_DB", "/a.db")]).unwrap().remote_user, RemoteUser::Ignored);
        let c = |v| config(&[("PIGGYBACK_DB", "/a.db"), ("PIGGYBACK_TRUST_REMOTE_USER", v)]);
        assert_eq!(c("1").unwrap().remote_user, RemoteUser::Trusted);
        assert_eq!(c("0").unwrap().remote_user, RemoteUser::Ignored);
        assert_eq!(c("yes").unwrap_err().variable, "PIGGYBACK_TRUST_REMOTE_USER");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90"), Some(90));
        assert_eq!(parse_duration("15m"), Some(900));
        assert_eq!(parse_duration("7d"), Some(604_800));
        assert_eq!(parse_duration("0s"), None);
        assert_eq!(parse_duration("1w"), None);
        assert_eq!(parse_duration(""), None);
    }
}
