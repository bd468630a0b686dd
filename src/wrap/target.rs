//! Which program `piggyback-wrap` may run: the rules of a safe CGI interpreter-wrapper
//! (docs/INTEGRATE.md, "What the wrapper refuses"), applied to what the server passed.
//!
//! Values in, values out, apart from reading file metadata: the edge (`wrap::run`)
//! hands in the environment, the arguments and the wrapper's own real path, resolved
//! once per process rather than on every request.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

use crate::gateway::Env;

use super::settings::{Settings, Switch};

/// The Apache handler name the shipped configuration gives the wrapper
/// (`Action piggyback-wrap /cgi-bin/piggyback-wrap`).
pub const APACHE_HANDLER: &str = "piggyback-wrap";

/// Set by the nginx configuration (a FastCGI parameter, which no client header can
/// produce: headers arrive as `HTTP_*`) to the program fcgiwrap should have run.
pub const FCGIWRAP_TARGET: &str = "PIGGYBACK_WRAP_TARGET";

/// How the server started the wrapper.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Server {
    /// `Action` + `AddHandler`: the target is `PATH_TRANSLATED`, argv is the query's.
    Apache,
    /// `cgi.assign`: argv is `[wrapper, SCRIPT_FILENAME]`.
    Lighttpd,
    /// nginx + fcgiwrap: the target is `PIGGYBACK_WRAP_TARGET`, no arguments.
    Fcgiwrap,
    /// The program's own first line, `#!/…/piggyback-wrap /usr/bin/perl`: the kernel
    /// started the wrapper with argv `[wrapper, interpreter, program, query words…]`
    /// (Python's `http.server --cgi`, which maps nothing, or any server that executes
    /// the program itself).
    Shebang,
    /// `piggyback-wrap` kept running as a FastCGI responder, as fcgiwrap is: the target
    /// is the request's `SCRIPT_FILENAME`; there are no arguments.
    FastCgi,
}

/// How the program is started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Launch {
    /// Executed itself, by its own `#!` line (or as a compiled program).
    Itself,
    /// By the interpreter `PIGGYBACK_WRAP_INTERPRETERS` names for its extension, with
    /// no argument: php-cgi finds the program in `SCRIPT_FILENAME`, and an argument
    /// there is what CVE-2012-1823 abused.
    Mapped(PathBuf),
    /// By the interpreter its `#!<wrapper> <interpreter>` line names, with the program
    /// as the one argument, as the kernel would have run it. Executing the program
    /// itself would start the wrapper again.
    Shebang(PathBuf),
}

/// The program to run, resolved and checked, and the CGI variables rebuilt for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub server: Server,
    /// The real path of the program (symbolic links resolved).
    pub program: PathBuf,
    /// How it is started.
    pub launch: Launch,
    /// `SCRIPT_NAME`: the program's URL path.
    pub script_name: OsString,
    /// `PATH_INFO`: the extra path after the program's URL (may be empty).
    pub path_info: OsString,
}

impl Target {
    /// The folder the program runs in (RFC 3875 leaves it to the server; both servers
    /// use the script's folder, and scripts rely on it for relative paths).
    pub fn folder(&self) -> &Path {
        self.program.parent().unwrap_or(Path::new("/"))
    }

    /// An `nph-` program writes the whole HTTP response itself: it passes untouched.
    pub fn is_nph(&self) -> bool {
        self.program.file_name().is_some_and(|n| n.as_bytes().starts_with(b"nph-"))
    }
}

/// Why a request was refused: the status to answer and the line for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    pub why: String,
}

fn forbidden(why: impl Into<String>) -> Refusal {
    Refusal { status: 403, why: why.into() }
}

fn not_found(why: impl Into<String>) -> Refusal {
    Refusal { status: 404, why: why.into() }
}

/// Decides which program this request runs, or refuses it.
///
/// `args` are the wrapper's arguments after its own name; `wrapper` its real path
/// (symbolic links resolved once by the caller: it does not change while it runs);
/// `exec_fn` the file the kernel was asked to run (`AT_EXECFN`): the program itself
/// only when the kernel found the wrapper in the program's `#!` line.
/// `HTTP_REDIRECT_STATUS` (a client's `Redirect-Status:` header) is never consulted.
pub fn resolve(
    env: &Env,
    args: &[OsString],
    cwd: &Path,
    wrapper: &Path,
    exec_fn: Option<&OsStr>,
    settings: &Settings,
) -> Result<Target, Refusal> {
    no_root(settings)?;
    let var = |name: &str| env.get(name).filter(|v| !v.is_empty());
    let (server, requested, script_name, path_info) = if let Some(handler) = var("REDIRECT_HANDLER") {
        // Apache's Action: the wrapper was reached by an internal redirect. argv holds
        // the query string's words (RFC 3875 4.4); they are never used.
        if handler != APACHE_HANDLER {
            return Err(forbidden(format!(
                "REDIRECT_HANDLER is {:?}, not {APACHE_HANDLER}: not started by the configured Action",
                handler
            )));
        }
        if var("REDIRECT_STATUS").is_none() {
            return Err(forbidden("REDIRECT_HANDLER without REDIRECT_STATUS: not an internal redirect"));
        }
        let translated = var("PATH_TRANSLATED").ok_or_else(|| forbidden("PATH_TRANSLATED is not set"))?;
        let (file, extra) = split_extra_path(Path::new(translated))
            .ok_or_else(|| not_found(format!("no file in PATH_TRANSLATED {}", Path::new(translated).display())))?;
        // PATH_INFO is the whole URL path; the program's URL is it without the extra path.
        let url = var("PATH_INFO").cloned().unwrap_or_default();
        let script_name = url
            .as_bytes()
            .strip_suffix(extra.as_bytes())
            .map(|s| OsString::from_vec(s.to_vec()))
            .unwrap_or_else(|| url.clone());
        (Server::Apache, file, script_name, extra)
    } else if let Some(target) = var(FCGIWRAP_TARGET) {
        if !args.is_empty() {
            return Err(forbidden("started with arguments, which fcgiwrap never passes"));
        }
        let script_name = var("SCRIPT_NAME").cloned().unwrap_or_default();
        let path_info = var("PATH_INFO").cloned().unwrap_or_default();
        (Server::Fcgiwrap, PathBuf::from(target), script_name, path_info)
    } else if let [interpreter, program, ..] = args
        && names_wrapper_with(Path::new(program), cwd, wrapper, interpreter)
    {
        // The kernel read the program's `#!` line, which names this wrapper and the
        // interpreter: argv is [interpreter, program, the query's words…]. The words
        // (Python always passes one when the query has no `=`) are never used.
        // Only the kernel makes these arguments: a server that started the wrapper
        // itself (Apache turns `?/usr/bin/perl+/x/secret.pl` into exactly this argv)
        // asked the kernel to run the wrapper, not the program.
        if exec_fn != Some(program.as_os_str()) {
            return Err(forbidden(format!(
                "arguments in the #! form, but the kernel was asked to run {:?}, not the program {:?}: \
                 a direct request of the wrapper with a query string",
                exec_fn.unwrap_or_default(),
                program
            )));
        }
        if var("SCRIPT_FILENAME").is_some_and(|f| is_wrapper(Path::new(f), wrapper)) {
            return Err(forbidden("SCRIPT_FILENAME is the wrapper itself: a direct request of the wrapper"));
        }
        let script_name = var("SCRIPT_NAME").cloned().unwrap_or_default();
        let path_info = var("PATH_INFO").cloned().unwrap_or_default();
        (Server::Shebang, cwd.join(program), script_name, path_info)
    } else {
        // lighttpd's cgi.assign: exactly one argument, the script, which the server also
        // names in SCRIPT_FILENAME (busybox httpd: its file name, run in its folder).
        // Anything else is a direct request of the wrapper (Apache without REDIRECT_*)
        // or arguments from a query string.
        let filename = var("SCRIPT_FILENAME").ok_or_else(|| forbidden("SCRIPT_FILENAME is not set"))?;
        let in_its_folder = |one: &OsString| {
            let path = Path::new(filename);
            path.file_name() == Some(one.as_os_str()) && path.parent() == Some(cwd)
        };
        match args {
            [one] if one == filename || in_its_folder(one) => {}
            [] => {
                return Err(forbidden(
                    "started without an argument naming SCRIPT_FILENAME: a direct request of the wrapper",
                ));
            }
            _ => {
                return Err(forbidden(format!(
                    "{} arguments that are not exactly SCRIPT_FILENAME: a direct request or a query string",
                    args.len()
                )));
            }
        }
        let script_name = var("SCRIPT_NAME").cloned().unwrap_or_default();
        let path_info = var("PATH_INFO").cloned().unwrap_or_default();
        (Server::Lighttpd, PathBuf::from(filename), script_name, path_info)
    };
    checked(server, &requested, script_name, path_info, wrapper, settings)
}

/// A 500 when no root is configured: then nothing may run.
fn no_root(settings: &Settings) -> Result<(), Refusal> {
    if settings.roots.is_empty() {
        return Err(Refusal {
            status: 500,
            why: "PIGGYBACK_WRAP_ROOT names no existing folder, so no program may be run".into(),
        });
    }
    Ok(())
}

/// The prefix of `SCRIPT_FILENAME` that Apache's `mod_proxy_fcgi` adds when it is
/// reached through `ProxyPass` (`proxy:fcgi://localhost/srv/app/x.pl`).
const PROXY_FCGI: &[u8] = b"proxy:fcgi://";

/// Decides which program a FastCGI request runs, or refuses it: the server names it in
/// `SCRIPT_FILENAME` (nginx's `$document_root$fastcgi_script_name`, lighttpd's and
/// Apache's physical path), or, from the nginx configuration written for the CGI
/// wrapper under fcgiwrap, in `PIGGYBACK_WRAP_TARGET`. Both are parameters the web
/// server sets; a client's headers arrive as `HTTP_*` and cannot set either. Every
/// rule of [`resolve`] applies to the file.
pub fn resolve_fastcgi(env: &Env, wrapper: &Path, settings: &Settings) -> Result<Target, Refusal> {
    no_root(settings)?;
    let var = |name: &str| env.get(name).filter(|v| !v.is_empty());
    let named = var(FCGIWRAP_TARGET)
        .or_else(|| var("SCRIPT_FILENAME"))
        .ok_or_else(|| forbidden("SCRIPT_FILENAME is not set"))?;
    let named = match named.as_bytes().strip_prefix(PROXY_FCGI) {
        // The host part, then the path.
        Some(rest) => OsStr::from_bytes(&rest[rest.iter().position(|&b| b == b'/').unwrap_or(rest.len())..]),
        None => named.as_os_str(),
    };
    if !Path::new(named).is_absolute() {
        // A kept process has no folder of the request's own to resolve it from.
        return Err(forbidden(format!("SCRIPT_FILENAME {:?} is not an absolute path", named)));
    }
    let script_name = var("SCRIPT_NAME").cloned().unwrap_or_default();
    let path_info = var("PATH_INFO").cloned().unwrap_or_default();
    checked(Server::FastCgi, Path::new(named), script_name, path_info, wrapper, settings)
}

/// The target once the requested file has passed every rule.
fn checked(
    server: Server,
    requested: &Path,
    script_name: OsString,
    path_info: OsString,
    wrapper: &Path,
    settings: &Settings,
) -> Result<Target, Refusal> {
    let program = check_program(requested, wrapper, settings)?;
    let launch = match wrapper_shebang(&program, wrapper)? {
        Some(interpreter) => Launch::Shebang(interpreter),
        None => match settings.interpreter_for(&program) {
            Some(interpreter) => Launch::Mapped(interpreter.to_path_buf()),
            None => Launch::Itself,
        },
    };
    Ok(Target { server, program, launch, script_name, path_info })
}

/// The longest `#!` line the kernel reads (`BINPRM_BUF_SIZE`).
const SHEBANG_MAX: usize = 256;

/// The `#!` line of `program` split into its interpreter and its optional argument (the
/// kernel passes everything after the first blank as one argument), when it is a regular
/// file that starts with one.
fn read_shebang(program: &Path) -> Option<(PathBuf, OsString)> {
    use std::io::Read;
    // Never open a FIFO or a device: reading one could block or consume the body.
    if !std::fs::metadata(program).is_ok_and(|m| m.is_file()) {
        return None;
    }
    let mut head = Vec::with_capacity(SHEBANG_MAX);
    std::fs::File::open(program).ok()?.take(SHEBANG_MAX as u64).read_to_end(&mut head).ok()?;
    let line = head.strip_prefix(b"#!")?;
    let line = &line[..line.iter().position(|&b| b == b'\n').unwrap_or(line.len())];
    let blank = |b: &u8| *b == b' ' || *b == b'\t';
    let line = &line[line.iter().position(|b| !blank(b)).unwrap_or(line.len())..];
    let end = line.iter().position(blank).unwrap_or(line.len());
    let (interpreter, rest) = line.split_at(end);
    let rest = &rest[rest.iter().position(|b| !blank(b)).unwrap_or(rest.len())..];
    let rest = &rest[..rest.len() - rest.iter().rev().take_while(|b| blank(b)).count()];
    Some((PathBuf::from(OsStr::from_bytes(interpreter)), OsString::from_vec(rest.to_vec())))
}

/// Whether the `#!` interpreter `named` is this wrapper (`named` resolved; `wrapper` is
/// already the real path).
fn is_wrapper(named: &Path, wrapper: &Path) -> bool {
    named.is_absolute() && std::fs::canonicalize(named).is_ok_and(|n| n == wrapper)
}

/// Whether `program`'s `#!` line names this wrapper with exactly `interpreter` as its
/// argument: then these arguments are the kernel's, not a query string's.
fn names_wrapper_with(program: &Path, cwd: &Path, wrapper: &Path, interpreter: &OsStr) -> bool {
    read_shebang(&cwd.join(program))
        .is_some_and(|(named, argument)| argument == interpreter && is_wrapper(&named, wrapper))
}

/// The interpreter of a program whose `#!` line names this wrapper: one absolute path
/// to a program other than the wrapper. `None` when the line names something else.
fn wrapper_shebang(program: &Path, wrapper: &Path) -> Result<Option<PathBuf>, Refusal> {
    let Some((named, argument)) = read_shebang(program) else { return Ok(None) };
    if !is_wrapper(&named, wrapper) {
        return Ok(None);
    }
    let interpreter = PathBuf::from(&argument);
    let usable = interpreter.is_absolute()
        && !argument.as_bytes().iter().any(|b| b.is_ascii_whitespace())
        && std::fs::metadata(&interpreter).is_ok_and(|m| m.is_file() && m.mode() & 0o111 != 0)
        && !is_wrapper(&interpreter, wrapper);
    if !usable {
        return Err(forbidden(format!(
            "{}: its #! line names the wrapper but not, after it, one absolute path of an \
             interpreter other than the wrapper ({:?})",
            program.display(),
            argument
        )));
    }
    Ok(Some(interpreter))
}

/// Splits Apache's `PATH_TRANSLATED` (`/docroot/app/x.pl/extra/path`) into the longest
/// prefix that is a regular file and the extra path after it (`/extra/path`).
pub fn split_extra_path(translated: &Path) -> Option<(PathBuf, OsString)> {
    if !translated.is_absolute() {
        return None;
    }
    let mut candidate = translated.to_path_buf();
    loop {
        if std::fs::metadata(&candidate).is_ok_and(|m| m.is_file()) {
            let rest = &translated.as_os_str().as_bytes()[candidate.as_os_str().len()..];
            return Some((candidate, OsString::from_vec(rest.to_vec())));
        }
        if !candidate.pop() {
            return None;
        }
    }
}

/// Resolves `requested` and applies every rule to the resolved file.
fn check_program(requested: &Path, wrapper: &Path, settings: &Settings) -> Result<PathBuf, Refusal> {
    if requested.components().any(|c| c == Component::ParentDir) {
        return Err(forbidden(format!("{} contains `..`", requested.display())));
    }
    let program = std::fs::canonicalize(requested).map_err(|e| not_found(format!("{}: {e}", requested.display())))?;
    let meta = std::fs::metadata(&program).map_err(|e| not_found(format!("{}: {e}", program.display())))?;
    if !meta.is_file() {
        return Err(forbidden(format!("{} is not a regular file", program.display())));
    }
    if program == wrapper {
        return Err(forbidden("the wrapper may not run itself"));
    }
    if !settings.roots.iter().any(|root| program.starts_with(root)) {
        return Err(forbidden(format!("{} is outside PIGGYBACK_WRAP_ROOT", program.display())));
    }
    // On the resolved name, not the URL: /upload/x.jpg/y.php must not run x.jpg.
    if !settings.allows_extension(&program) {
        return Err(forbidden(format!(
            "{} does not end in an extension of PIGGYBACK_WRAP_EXTENSIONS",
            program.display()
        )));
    }
    // suexec's checks: nobody but the owner may change what runs.
    if meta.mode() & 0o022 != 0 {
        return Err(forbidden(format!("{} is writable by its group or others", program.display())));
    }
    if meta.mode() & 0o6000 != 0 {
        return Err(forbidden(format!("{} is setuid or setgid", program.display())));
    }
    let folder = program.parent().unwrap_or(Path::new("/"));
    let folder_meta = std::fs::metadata(folder).map_err(|e| forbidden(format!("{}: {e}", folder.display())))?;
    if folder_meta.mode() & 0o022 != 0 {
        return Err(forbidden(format!("{} is writable by its group or others", folder.display())));
    }
    Ok(program)
}

/// The environment the program runs with: the server's, with the CGI variables that
/// name the program rebuilt for it, the wrapper's own settings removed, and the
/// request headers a program must never trust dropped.
pub fn child_env(env: &Env, target: &Target, settings: &Settings) -> Vec<(OsString, OsString)> {
    let mut out: Vec<(OsString, OsString)> = env
        .iter()
        .filter(|(name, _)| {
            let name = name.as_str();
            // httpoxy: a `Proxy:` request header would become the program's proxy.
            name != "HTTP_PROXY"
                // php-cgi once accepted a client's `Redirect-Status:` (CVE-2024-8927).
                && !name.starts_with("HTTP_REDIRECT_")
                && !name.starts_with("REDIRECT_")
                // Piggyback's settings are not the program's: the database URL (with its
                // password), the spool, the key; a `phpinfo()` page would show them. The
                // key's path only where the operator lets a cookie-minting login have it.
                && (!name.starts_with("PIGGYBACK_")
                    || (name == "PIGGYBACK_SECRET_FILE" && settings.pass_secret_file == Switch::On))
                && !matches!(name, "SCRIPT_FILENAME" | "SCRIPT_NAME" | "PATH_INFO" | "PATH_TRANSLATED")
        })
        .map(|(name, value)| (OsString::from(name), value.clone()))
        .collect();
    let mut set = |name: &str, value: &OsStr| out.push((name.into(), value.to_owned()));
    set("SCRIPT_FILENAME", target.program.as_os_str());
    set("SCRIPT_NAME", &target.script_name);
    // php-cgi's cgi.force_redirect: the wrapper has checked how it was started.
    set("REDIRECT_STATUS", OsStr::new("200"));
    if !target.path_info.is_empty() {
        set("PATH_INFO", &target.path_info);
        if let Some(root) = env.get("DOCUMENT_ROOT").filter(|r| !r.is_empty()) {
            let mut translated = root.as_bytes().strip_suffix(b"/").unwrap_or(root.as_bytes()).to_vec();
            translated.extend_from_slice(target.path_info.as_bytes());
            set("PATH_TRANSLATED", &OsString::from_vec(translated));
        }
    }
    out
}
