//! `piggyback-wrap`'s settings: the environment, else `etc/piggyback-wrap.conf` beside
//! the install (suexec drops `SetEnv` values, so a file must be able to carry them).

use std::ffi::OsString;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::parse_duration;
use crate::gateway::Env;

/// Default largest JSON answer held back to add `site_messages`; a larger one streams
/// through unchanged.
pub const DEFAULT_BUFFER_BYTES: usize = 1024 * 1024;
/// Default seconds the program may run before it is killed.
pub const DEFAULT_TIMEOUT_SECS: u64 = 30;
/// Default extensions the wrapper runs.
pub const DEFAULT_EXTENSIONS: &str = ".cgi .pl .php .py .sh";
/// Default interpreters, by extension; any other program runs by its own `#!` line.
pub const DEFAULT_INTERPRETERS: &str = ".php=/usr/bin/php-cgi";

/// The settings file, relative to the folder the wrapper is installed in.
pub const CONFIG_FILE: &str = "../etc/piggyback-wrap.conf";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// `PIGGYBACK_WRAP_ROOT`, each resolved; folders that do not exist are left out.
    pub roots: Vec<PathBuf>,
    /// `PIGGYBACK_WRAP_EXTENSIONS`, lowercase, each with its dot.
    pub extensions: Vec<String>,
    /// `PIGGYBACK_WRAP_INTERPRETERS`: `.ext=/path/to/interpreter` pairs.
    pub interpreters: Vec<(String, PathBuf)>,
    /// `PIGGYBACK_WRAP_BUFFER`: bytes of a JSON answer held back at most.
    pub buffer_bytes: usize,
    /// `PIGGYBACK_WRAP_TIMEOUT`: how long the program may run.
    pub timeout: Duration,
    /// `PIGGYBACK_WRAP_CREATE_USERS=1`: a valid name a program prints in
    /// `X-Piggyback-User` that Piggyback does not know yet is added as a user.
    pub create_users: Switch,
    /// `PIGGYBACK_WRAP_PASS_SECRET_FILE=1`: the program sees `PIGGYBACK_SECRET_FILE`
    /// (for a login that mints cookies itself); otherwise no Piggyback setting.
    pub pass_secret_file: Switch,
}

/// A setting that is `1` (on) or `0`/unset (off).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Switch {
    #[default]
    Off,
    On,
}

impl Settings {
    /// Reads the settings through `var`; the problems found (a root that does not
    /// exist, a value that cannot be used and was replaced by its default) are
    /// returned for the log.
    pub fn from_lookup(var: impl Fn(&str) -> Option<OsString>) -> (Settings, Vec<String>) {
        let mut problems = Vec::new();
        let text = |name: &str| var(name).filter(|v| !v.is_empty()).map(|v| v.to_string_lossy().into_owned());
        let mut roots = Vec::new();
        if let Some(list) = var("PIGGYBACK_WRAP_ROOT") {
            for part in list.to_string_lossy().split(':').filter(|p| !p.is_empty()) {
                match std::fs::canonicalize(part) {
                    Ok(root) if root.is_dir() && Path::new(part).is_absolute() => roots.push(root),
                    _ => problems.push(format!("PIGGYBACK_WRAP_ROOT: {part} is not an existing absolute folder")),
                }
            }
        } else {
            problems.push("PIGGYBACK_WRAP_ROOT is not set".into());
        }
        let extensions = text("PIGGYBACK_WRAP_EXTENSIONS")
            .unwrap_or_else(|| DEFAULT_EXTENSIONS.into())
            .split([' ', ',', ':'])
            .filter(|e| !e.is_empty())
            .map(|e| format!(".{}", e.trim_start_matches('.').to_ascii_lowercase()))
            .collect();
        let interpreters = text("PIGGYBACK_WRAP_INTERPRETERS")
            .unwrap_or_else(|| DEFAULT_INTERPRETERS.into())
            .split([' ', ','])
            .filter(|p| !p.is_empty())
            .filter_map(|pair| match pair.split_once('=') {
                Some((ext, path)) if Path::new(path).is_absolute() => {
                    Some((format!(".{}", ext.trim_start_matches('.').to_ascii_lowercase()), PathBuf::from(path)))
                }
                _ => {
                    problems.push(format!("PIGGYBACK_WRAP_INTERPRETERS: `{pair}` is not .ext=/absolute/path"));
                    None
                }
            })
            .collect();
        let buffer_bytes = match text("PIGGYBACK_WRAP_BUFFER") {
            None => DEFAULT_BUFFER_BYTES,
            Some(v) => parse_bytes(&v).unwrap_or_else(|| {
                problems.push(format!("PIGGYBACK_WRAP_BUFFER: `{v}` is not a size (65536, 512k, 4M)"));
                DEFAULT_BUFFER_BYTES
            }),
        };
        let timeout = match text("PIGGYBACK_WRAP_TIMEOUT") {
            None => Duration::from_secs(DEFAULT_TIMEOUT_SECS),
            Some(v) => match parse_duration(&v) {
                Some(secs) => Duration::from_secs(secs as u64),
                None => {
                    problems.push(format!("PIGGYBACK_WRAP_TIMEOUT: `{v}` is not a duration (30, 90s, 2m)"));
                    Duration::from_secs(DEFAULT_TIMEOUT_SECS)
                }
            },
        };
        let mut switch = |name: &str| match text(name).as_deref() {
            None | Some("0") => Switch::Off,
            Some("1") => Switch::On,
            Some(other) => {
                problems.push(format!("{name}: `{other}` is not 1 or 0; taken as 0"));
                Switch::Off
            }
        };
        let create_users = switch("PIGGYBACK_WRAP_CREATE_USERS");
        let pass_secret_file = switch("PIGGYBACK_WRAP_PASS_SECRET_FILE");
        (Settings { roots, extensions, interpreters, buffer_bytes, timeout, create_users, pass_secret_file }, problems)
    }

    /// Whether the resolved program's name ends in an allowed extension.
    pub fn allows_extension(&self, program: &Path) -> bool {
        let name = program.file_name().map(|n| n.to_string_lossy().to_ascii_lowercase()).unwrap_or_default();
        self.extensions.iter().any(|ext| name.len() > ext.len() && name.ends_with(ext.as_str()))
    }

    /// The interpreter that runs `program`, when its extension names one.
    pub fn interpreter_for(&self, program: &Path) -> Option<&Path> {
        let name = program.file_name()?.to_string_lossy().to_ascii_lowercase();
        self.interpreters.iter().find(|(ext, _)| name.ends_with(ext.as_str())).map(|(_, p)| p.as_path())
    }
}

/// `65536`, `512k`, `4M` in bytes.
pub(crate) fn parse_bytes(v: &str) -> Option<usize> {
    let v = v.trim();
    let (digits, scale) = match v.char_indices().last()? {
        (i, 'k' | 'K') => (&v[..i], 1024),
        (i, 'm' | 'M') => (&v[..i], 1024 * 1024),
        _ => (v, 1),
    };
    digits.parse::<usize>().ok()?.checked_mul(scale).filter(|n| *n > 0)
}

/// The `PIGGYBACK_*` lines of the settings file at `path`, for the variables the
/// environment lacks. A file that others may change is ignored (and reported); a file
/// that exists but cannot be read is reported with the user that could not read it, so
/// the log names the real cause of the settings that are then missing.
pub fn merge_file(env: &mut Env, path: &Path) -> Option<String> {
    let unreadable = |e: std::io::Error| {
        Some(format!(
            "{}: cannot be read by the user this runs as ({}): {e}; its settings are missing",
            path.display(),
            user_description()
        ))
    };
    let meta = match std::fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => return unreadable(e),
    };
    if meta.mode() & 0o022 != 0 {
        return Some(format!("{}: ignored, it is writable by its group or others", path.display()));
    }
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) => return unreadable(e),
    };
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
        if let Some((name, value)) = line.split_once('=') {
            let name = name.trim();
            if name.starts_with("PIGGYBACK_") && env.get(name).is_none_or(|v| v.is_empty()) {
                env.insert(name.to_owned(), value.trim().trim_matches('"').into());
            }
        }
    }
    None
}

/// `www-data (uid 33)`: the effective user, by name when the password database has it.
pub fn user_description() -> String {
    // SAFETY: geteuid cannot fail; getpwuid returns null or a pointer to static storage
    // that is read at once, in this single-threaded start of the process.
    let uid = unsafe { libc::geteuid() };
    let name = unsafe {
        let entry = libc::getpwuid(uid);
        if entry.is_null() || (*entry).pw_name.is_null() {
            None
        } else {
            Some(std::ffi::CStr::from_ptr((*entry).pw_name).to_string_lossy().into_owned())
        }
    };
    match name {
        Some(name) => format!("{name} (uid {uid})"),
        None => format!("uid {uid}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn settings(vars: &[(&str, &str)]) -> (Settings, Vec<String>) {
        let map: HashMap<String, OsString> = vars.iter().map(|(k, v)| (k.to_string(), OsString::from(v))).collect();
        Settings::from_lookup(|name| map.get(name).cloned())
    }

    #[test]
    fn roots_that_do_not_exist_are_left_out_and_reported() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_str().unwrap().to_owned();
        let (s, problems) = settings(&[("PIGGYBACK_WRAP_ROOT", &format!("{root}:/no/such/dir:relative"))]);
        assert_eq!(s.roots, vec![std::fs::canonicalize(dir.path()).unwrap()]);
        assert_eq!(problems.len(), 2, "{problems:?}");
        let (s, problems) = settings(&[]);
        assert!(s.roots.is_empty() && problems.len() == 1);
    }

    #[test]
    fn sizes_durations_and_extensions() {
        let (s, problems) = settings(&[
            ("PIGGYBACK_WRAP_BUFFER", "512k"),
            ("PIGGYBACK_WRAP_TIMEOUT", "2m"),
            ("PIGGYBACK_WRAP_EXTENSIONS", "pl .PHP"),
        ]);
        assert_eq!((s.buffer_bytes, s.timeout), (512 * 1024, Duration::from_secs(120)));
        assert!(s.allows_extension(Path::new("/x/a.pl")) && s.allows_extension(Path::new("/x/a.php")));
        assert!(!s.allows_extension(Path::new("/x/a.sh")) && !s.allows_extension(Path::new("/x/.pl")));
        assert_eq!(problems.len(), 1, "only the missing root: {problems:?}");
        let (s, problems) = settings(&[("PIGGYBACK_WRAP_BUFFER", "lots"), ("PIGGYBACK_WRAP_TIMEOUT", "0")]);
        assert_eq!(s.buffer_bytes, DEFAULT_BUFFER_BYTES);
        assert_eq!(s.timeout, Duration::from_secs(DEFAULT_TIMEOUT_SECS));
        assert_eq!(problems.len(), 3, "{problems:?}");
    }

    #[test]
    fn php_runs_under_php_cgi_by_default() {
        let (s, _) = settings(&[]);
        assert_eq!(s.interpreter_for(Path::new("/x/a.php")), Some(Path::new("/usr/bin/php-cgi")));
        assert_eq!(s.interpreter_for(Path::new("/x/a.pl")), None);
    }

    #[test]
    fn the_file_fills_what_the_environment_lacks_unless_others_may_write_it() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("piggyback-wrap.conf");
        std::fs::write(&path, "# comment\nPIGGYBACK_DB=/file.db\nPIGGYBACK_WRAP_ROOT=/srv\nPATH=/evil\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let mut env: Env = [("PIGGYBACK_DB".to_string(), OsString::from("/env.db"))].into_iter().collect();
        assert_eq!(merge_file(&mut env, &path), None);
        assert_eq!(env["PIGGYBACK_DB"], "/env.db");
        assert_eq!(env["PIGGYBACK_WRAP_ROOT"], "/srv");
        assert!(!env.contains_key("PATH"), "only PIGGYBACK_ settings come from the file");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
        let mut env = Env::default();
        assert!(merge_file(&mut env, &path).is_some());
        assert!(env.is_empty());
    }
}
