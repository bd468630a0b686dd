//! Who is asking: `REMOTE_USER` from the web server, else the signed session cookie
//! (`__Host-pb_session` on https, `pb_session` otherwise and during the transition).
//!
//! Two value formats, both tagged with HMAC-SHA256 under the key (the whole content of
//! `PIGGYBACK_SECRET_FILE`, at least 32 bytes), the tag in lowercase hex:
//! - `v2.<user id>.<generation>.<session id>.<expires>.<tag>`, what the `session`
//!   program and `piggyback token` mint: the tag covers `<cookie name>=` and the payload,
//!   so a value is refused under any other cookie name (a `__Host-` value planted as
//!   `pb_session` by a sibling subdomain is forged), and the generation and session id
//!   let a session end before it expires (see docs/SECURITY.md);
//! - `v3.<user id>.<generation>.<session id>.<expires>.<binding>.<tag>`, what
//!   `piggyback-wrap` mints when a wrapped program names the user: a v2 value bound to
//!   the site's own session cookie (`PIGGYBACK_SITE_SESSION_COOKIE`), `<binding>` being
//!   a keyed hash of that cookie's value (never the value itself), so the value counts
//!   only while the request carries the same site session;
//! - `v1.<user id>.<expires>.<tag>`, what host sites mint (tag over the payload only);
//!   it counts only while the user's session generation is 0, so that any revocation
//!   ends it for good.
//!
//! No request parameter, header or body field ever selects the user.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use hmac::{Hmac, KeyInit, Mac};

use crate::file_mode::{FileMode, Stamp};
use sha2::Sha256;

use crate::config::Config;
use crate::http::ApiError;
use crate::model::UserId;

// The cookie's names are settings' business too (a site's session cookie must not be
// ours): they live in `config`, which sits below this module.
pub use crate::config::{COOKIE_NAME, HOST_COOKIE_NAME};

/// Which of the two cookie names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CookieName {
    /// `pb_session`.
    Plain,
    /// `__Host-pb_session`.
    Host,
}

impl CookieName {
    /// The name a site served over https (or not) sets.
    pub fn for_scheme(https: bool) -> CookieName {
        if https { CookieName::Host } else { CookieName::Plain }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            CookieName::Plain => COOKIE_NAME,
            CookieName::Host => HOST_COOKIE_NAME,
        }
    }
}

/// What a verified cookie value says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    pub user: UserId,
    /// The user's session generation when it was minted; `None` for a v1 value.
    pub generation: Option<i64>,
    /// The session's own id (16 lowercase hex digits); `None` for a v1 value.
    pub session: Option<String>,
    /// Unix seconds after which the value is refused.
    pub expires: i64,
    /// For a v3 value, the keyed hash of the site session it is bound to.
    pub binding: Option<String>,
}

/// A fresh session id: 64 random bits in hex.
pub fn new_session_id() -> String {
    let mut random = [0u8; 8];
    // Without randomness the id only loses its use for ending one session alone.
    let _ = getrandom::fill(&mut random);
    random.iter().map(|b| format!("{b:02x}")).collect()
}

/// Shortest key accepted.
pub const MIN_KEY_BYTES: usize = 32;

/// The session-signing key, keyed into HMAC-SHA-256 once: each signature or check then
/// costs two compressions fewer (a FastCGI process checks a cookie per request).
#[derive(Clone)]
pub struct Key(Hmac<Sha256>);

/// Why a session key cannot be used.
#[derive(Debug)]
pub enum KeyError {
    /// The key is shorter than [`MIN_KEY_BYTES`].
    TooShort(usize),
    /// The key file cannot be read.
    Unreadable { path: PathBuf, error: std::io::Error },
}

impl std::fmt::Display for KeyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyError::TooShort(len) => write!(f, "the key has {len} bytes; at least {MIN_KEY_BYTES} are needed"),
            KeyError::Unreadable { path, error } => write!(f, "cannot read {}: {error}", path.display()),
        }
    }
}

impl std::error::Error for KeyError {}

impl Key {
    pub fn new(bytes: Vec<u8>) -> Result<Key, KeyError> {
        if bytes.len() < MIN_KEY_BYTES {
            return Err(KeyError::TooShort(bytes.len()));
        }
        Ok(Key(<Hmac<Sha256> as KeyInit>::new_from_slice(&bytes).expect("HMAC takes keys of any length")))
    }

    /// Reads the key file.
    pub fn load(path: &Path) -> Result<Key, KeyError> {
        let bytes = std::fs::read(path).map_err(|error| KeyError::Unreadable { path: path.to_owned(), error })?;
        Key::new(bytes)
    }

    fn mac(&self, payload: &str) -> Hmac<Sha256> {
        let mut mac = self.0.clone();
        mac.update(payload.as_bytes());
        mac
    }

    /// A v1 value naming `user` until `expires` (unix seconds): the format host sites
    /// mint, valid under either cookie name.
    pub fn sign(&self, user: UserId, expires: i64) -> String {
        let payload = format!("v1.{}.{}", user.0, expires);
        let tag = self.mac(&payload).finalize().into_bytes();
        with_tag(payload, &tag)
    }

    /// A v2 value of `claims` for the cookie `name` (a v1 `claims` is minted as
    /// generation 0 with a fresh session id); v3 when `claims` has a binding.
    pub fn mint(&self, claims: &Claims, name: CookieName) -> String {
        let session = claims.session.clone().unwrap_or_else(new_session_id);
        let (user, generation, expires) = (claims.user.0, claims.generation.unwrap_or(0), claims.expires);
        let payload = match &claims.binding {
            Some(binding) => format!("v3.{user}.{generation}.{session}.{expires}.{binding}"),
            None => format!("v2.{user}.{generation}.{session}.{expires}"),
        };
        let tag = self.mac(&format!("{}={payload}", name.as_str())).finalize().into_bytes();
        with_tag(payload, &tag)
    }

    /// The binding of a value to the site session whose cookie `cookie` has `value`:
    /// 32 hex digits of a hash keyed with the session key, so the cookie never carries
    /// the site's session value and nobody without the key can compute it.
    pub fn binding(&self, cookie: &str, value: &str) -> String {
        let tag = self.mac(&format!("pb-site-session\0{cookie}={value}")).finalize().into_bytes();
        with_tag(String::new(), &tag[..16])[1..].to_owned()
    }

    /// What a value of cookie `name` says, if its tag is right (checked in constant
    /// time) and it has not expired.
    pub fn verify(&self, value: &str, name: CookieName, now: i64) -> Result<Claims, CookieError> {
        let (payload, tag_hex) = value.rsplit_once('.').ok_or(CookieError::Malformed)?;
        let parts: Vec<&str> = payload.split('.').collect();
        let (claims, signed) = match parts.as_slice() {
            ["v1", user, expires] => {
                let claims = Claims {
                    user: UserId(digits(user).ok_or(CookieError::Malformed)?),
                    generation: None,
                    session: None,
                    expires: digits(expires).ok_or(CookieError::Malformed)?,
                    binding: None,
                };
                (claims, payload.to_owned())
            }
            ["v2", user, generation, session, expires] | ["v3", user, generation, session, expires, _] => {
                if !lower_hex(session, 16) {
                    return Err(CookieError::Malformed);
                }
                let binding = match parts.as_slice() {
                    ["v3", .., binding] if lower_hex(binding, 32) => Some((*binding).to_owned()),
                    ["v3", ..] => return Err(CookieError::Malformed),
                    _ => None,
                };
                let claims = Claims {
                    user: UserId(digits(user).ok_or(CookieError::Malformed)?),
                    generation: Some(digits(generation).ok_or(CookieError::Malformed)?),
                    session: Some((*session).to_owned()),
                    expires: digits(expires).ok_or(CookieError::Malformed)?,
                    binding,
                };
                (claims, format!("{}={payload}", name.as_str()))
            }
            _ => return Err(CookieError::Malformed),
        };
        let tag = unhex(tag_hex).ok_or(CookieError::Malformed)?;
        self.mac(&signed).verify_slice(&tag).map_err(|_| CookieError::Forged)?;
        if claims.expires <= now {
            return Err(CookieError::Expired);
        }
        Ok(claims)
    }
}

fn with_tag(payload: String, tag: &[u8]) -> String {
    let mut value = payload;
    value.push('.');
    for b in tag {
        value.push_str(&format!("{b:02x}"));
    }
    value
}

/// The session cookies of a `Cookie` header that count, with their name: the
/// `__Host-pb_session` ones when there is any (a `pb_session` beside it may have been
/// planted by a sibling subdomain, and is ignored), else the `pb_session` ones.
pub fn session_cookies(header: &str) -> Vec<(CookieName, &str)> {
    let host: Vec<_> = cookie_values(header, HOST_COOKIE_NAME).map(|v| (CookieName::Host, v)).collect();
    if !host.is_empty() {
        return host;
    }
    cookie_values(header, COOKIE_NAME).map(|v| (CookieName::Plain, v)).collect()
}

/// What the session cookies of a request come to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// No session cookie.
    None,
    /// Every valid one names this user; the claims are of the one that expires last.
    Valid(Claims),
    /// Valid ones name different users.
    Ambiguous,
    /// None is valid; why the first one is not.
    Invalid(CookieError),
}

/// Judges the session cookies of a `Cookie` header: a stale one does not hide a valid
/// one, and valid ones naming different users are [`Verdict::Ambiguous`].
pub fn judge(header: Option<&str>, key: &Key, now: i64) -> Verdict {
    let cookies = header.map(session_cookies).unwrap_or_default();
    let Some((first_name, first)) = cookies.first() else { return Verdict::None };
    let mut valid = cookies.iter().filter_map(|(name, v)| key.verify(v, *name, now).ok());
    let Some(mut best) = valid.next() else {
        return Verdict::Invalid(key.verify(first, *first_name, now).err().unwrap_or(CookieError::Malformed));
    };
    for other in valid {
        if other.user != best.user {
            return Verdict::Ambiguous;
        }
        if other.expires > best.expires {
            best = other;
        }
    }
    Verdict::Valid(best)
}

/// Why a cookie names nobody.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CookieError {
    Malformed,
    Forged,
    Expired,
}

/// Exactly `len` lowercase hex digits.
fn lower_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn digits(s: &str) -> Option<i64> {
    if s.is_empty() || s.len() > 18 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// The tag as minted: exactly 64 lowercase hex digits (one spelling per value, so a
/// value cannot be varied by case to dodge a comparison).
fn unhex(s: &str) -> Option<[u8; 32]> {
    let nibble = |b: u8| match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        _ => None,
    };
    let pairs = s.as_bytes().as_chunks::<2>();
    let mut tag = [0u8; 32];
    if s.len() != 64 || !pairs.1.is_empty() {
        return None;
    }
    for (out, &[hi, lo]) in tag.iter_mut().zip(pairs.0) {
        *out = nibble(hi)? << 4 | nibble(lo)?;
    }
    Some(tag)
}

/// The value of cookie `name` in a `Cookie` header, if present once or more (the first).
pub fn cookie_value<'a>(header: &'a str, name: &'a str) -> Option<&'a str> {
    cookie_values(header, name).next()
}

/// Every non-empty value of cookie `name` in a `Cookie` header, in order. A browser
/// sends several when a sibling subdomain or another path set one too.
pub fn cookie_values<'a>(header: &'a str, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    header.split(';').filter_map(move |pair| {
        let (k, v) = pair.split_once('=')?;
        let v = v.trim().trim_matches('"');
        (k.trim() == name && !v.is_empty()).then_some(v)
    })
}

/// Creates a key file of 64 random hex characters, mode 0600 (0640 with
/// `PIGGYBACK_FILE_MODE=group`) whatever the umask (`piggyback init`);
/// false if it exists.
pub fn create_key_file(path: &Path, mode: FileMode) -> std::io::Result<bool> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| std::io::Error::other(format!("no randomness for the key: {e}")))?;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path);
    match file {
        Ok(mut f) => {
            f.set_permissions(std::fs::Permissions::from_mode(mode.secret()))?;
            f.write_all(hex.as_bytes())?;
            f.sync_all()?;
            Ok(true)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e),
    }
}

/// The session-signing key of `PIGGYBACK_SECRET_FILE`; a 500 whose log line names the
/// setting when it is unset or unusable.
pub fn session_key(config: &Config) -> Result<Key, ApiError> {
    session_key_remembered(config, None)
}

/// [`session_key`], kept in `memory` by a process that serves many requests.
pub fn session_key_remembered(config: &Config, memory: Option<&KeyMemory>) -> Result<Key, ApiError> {
    let Some(path) = &config.secret_file else {
        return Err(ApiError::misconfigured().log("PIGGYBACK_SECRET_FILE: not set, so no session cookie can be made"));
    };
    let loaded = match memory {
        Some(memory) => memory.load(path),
        None => Key::load(path),
    };
    loaded.map_err(|e| ApiError::misconfigured().log(format!("PIGGYBACK_SECRET_FILE: {e}")))
}

/// What a process that serves many requests (FastCGI) keeps of the key file: the key
/// and the file's [`Stamp`] when it was read. While the stamp is unchanged the key is
/// used again, for one `stat` instead of reading the file (five system calls); a
/// rotated key file is read at the next request.
#[derive(Default)]
pub struct KeyMemory(RefCell<Option<(PathBuf, Stamp, Key)>>);

impl KeyMemory {
    fn load(&self, path: &Path) -> Result<Key, KeyError> {
        let stamp = std::fs::metadata(path)
            .map(|m| Stamp::of(&m))
            .map_err(|error| KeyError::Unreadable { path: path.to_owned(), error })?;
        if let Some((kept, kept_stamp, key)) = &*self.0.borrow()
            && kept == path
            && *kept_stamp == stamp
        {
            return Ok(key.clone());
        }
        // The stamp is read before the file, so a change while reading changes it after.
        let read_at = SystemTime::now();
        let key = Key::load(path)?;
        *self.0.borrow_mut() = stamp.settled_at(read_at).then(|| (path.to_owned(), stamp, key.clone()));
        Ok(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> Key {
        Key::new(b"0123456789abcdef0123456789abcdef".to_vec()).unwrap()
    }

    fn user(v: Result<Claims, CookieError>) -> Result<UserId, CookieError> {
        v.map(|c| c.user)
    }

    #[test]
    fn round_trip() {
        let v = key().sign(UserId(7), 2_000_000_000);
        assert!(v.starts_with("v1.7.2000000000."));
        assert_eq!(user(key().verify(&v, CookieName::Plain, 1_900_000_000)), Ok(UserId(7)));
        assert_eq!(user(key().verify(&v, CookieName::Host, 1_900_000_000)), Ok(UserId(7)));
        let claims =
            Claims { user: UserId(7), generation: Some(3), session: None, expires: 2_000_000_000, binding: None };
        let v = key().mint(&claims, CookieName::Host);
        assert!(v.starts_with("v2.7.3."), "{v}");
        let back = key().verify(&v, CookieName::Host, 1_900_000_000).unwrap();
        assert_eq!((back.user, back.generation, back.expires), (UserId(7), Some(3), 2_000_000_000));
        assert_eq!(back.session.as_ref().map(String::len), Some(16));
    }

    #[test]
    fn a_v2_value_is_forged_under_the_other_cookie_name() {
        let claims =
            Claims { user: UserId(7), generation: Some(0), session: None, expires: 2_000_000_000, binding: None };
        let host = key().mint(&claims, CookieName::Host);
        assert_eq!(key().verify(&host, CookieName::Plain, 1), Err(CookieError::Forged));
        let plain = key().mint(&claims, CookieName::Plain);
        assert_eq!(key().verify(&plain, CookieName::Host, 1), Err(CookieError::Forged));
    }

    #[test]
    fn expired_forged_malformed() {
        let k = key();
        let v = k.sign(UserId(7), 100);
        assert_eq!(user(k.verify(&v, CookieName::Plain, 100)), Err(CookieError::Expired));
        let other = Key::new(vec![b'x'; 32]).unwrap();
        assert_eq!(user(other.verify(&v, CookieName::Plain, 50)), Err(CookieError::Forged));
        let tampered = v.replacen("v1.7.", "v1.8.", 1);
        assert_eq!(user(k.verify(&tampered, CookieName::Plain, 50)), Err(CookieError::Forged));
        for bad in ["", "v1", "v1.7.100", "v2.7.100.00", "v1.-7.100.aa", "v1.7.100.zz", "v1.7.1.0.aa"] {
            assert_eq!(user(k.verify(bad, CookieName::Plain, 50)), Err(CookieError::Malformed), "{bad}");
        }
    }

    #[test]
    fn a_bound_value_carries_a_keyed_hash_of_the_site_session_never_the_value() {
        let binding = key().binding("PHPSESSID", "secret-session-value");
        assert_eq!(binding.len(), 32);
        assert_ne!(binding, key().binding("PHPSESSID", "another"));
        assert_ne!(binding, Key::new(vec![b'x'; 32]).unwrap().binding("PHPSESSID", "secret-session-value"));
        let claims = Claims {
            user: UserId(7),
            generation: Some(2),
            session: None,
            expires: 2_000_000_000,
            binding: Some(binding),
        };
        let v = key().mint(&claims, CookieName::Plain);
        assert!(v.starts_with("v3.7.2.") && !v.contains("secret-session-value"), "{v}");
        let back = key().verify(&v, CookieName::Plain, 1).unwrap();
        assert_eq!(back.binding, claims.binding);
        assert_eq!(key().verify(&v, CookieName::Host, 1), Err(CookieError::Forged));
        let (payload, tag) = v.rsplit_once('.').unwrap();
        let (unbound, _) = payload.rsplit_once('.').unwrap();
        let stripped = format!("{}.{tag}", unbound.replacen("v3.", "v2.", 1));
        assert_eq!(key().verify(&stripped, CookieName::Plain, 1), Err(CookieError::Forged), "the binding is signed");
    }

    #[test]
    fn an_upper_case_tag_is_refused() {
        let v = key().sign(UserId(7), 2_000_000_000);
        let (payload, tag) = v.rsplit_once('.').unwrap();
        let upper = format!("{payload}.{}", tag.to_ascii_uppercase());
        assert_ne!(upper, v);
        assert_eq!(user(key().verify(&upper, CookieName::Plain, 1)), Err(CookieError::Malformed));
    }

    #[test]
    fn host_cookies_hide_plain_ones() {
        assert_eq!(session_cookies("pb_session=a; __Host-pb_session=b; pb_session=c"), vec![(CookieName::Host, "b")]);
        assert_eq!(session_cookies("pb_session=a; x=1"), vec![(CookieName::Plain, "a")]);
    }

    /// A kept key is used while its file is unchanged, and a rotated file is read again.
    #[test]
    fn a_remembered_key_lasts_until_its_file_changes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        let (a, b) = (vec![b'a'; 32], vec![b'b'; 32]);
        let long_ago = SystemTime::now() - std::time::Duration::from_secs(60);
        let write = |bytes: &[u8], when: SystemTime| {
            let tmp = dir.path().join("secret.new");
            std::fs::write(&tmp, bytes).unwrap();
            std::fs::File::options().write(true).open(&tmp).unwrap().set_modified(when).unwrap();
            std::fs::rename(&tmp, &path).unwrap();
        };
        let signs_like =
            |key: &Key, bytes: &[u8]| key.sign(UserId(1), 9) == Key::new(bytes.to_vec()).unwrap().sign(UserId(1), 9);
        let memory = KeyMemory::default();
        write(&a, SystemTime::now());
        assert!(signs_like(&memory.load(&path).unwrap(), &a));
        assert!(memory.0.borrow().is_none(), "written a moment ago: too recent to trust the stamp");
        write(&a, long_ago);
        assert!(signs_like(&memory.load(&path).unwrap(), &a));
        assert!(memory.0.borrow().is_some(), "settled: remembered");
        // Rewritten in place with the old stamp put back: only a process that answers
        // from its memory still signs with the first key, which shows the memory is used.
        std::fs::write(&path, &b).unwrap();
        std::fs::File::options().write(true).open(&path).unwrap().set_modified(long_ago).unwrap();
        let stamp = Stamp::of(&std::fs::metadata(&path).unwrap());
        memory.0.borrow_mut().as_mut().unwrap().1 = stamp;
        assert!(signs_like(&memory.load(&path).unwrap(), &a));
        // Rotated: a new file (another inode) is read at once.
        write(&b, long_ago);
        assert!(signs_like(&memory.load(&path).unwrap(), &b));
        std::fs::remove_file(&path).unwrap();
        assert!(memory.load(&path).is_err(), "a key file that is gone is not answered from memory");
    }

    #[test]
    fn short_keys_are_refused() {
        assert!(Key::new(vec![1; 31]).is_err());
    }

    #[test]
    fn cookie_header() {
        assert_eq!(cookie_value("a=1; pb_session=v1.x; b=2", "pb_session"), Some("v1.x"));
        assert_eq!(cookie_value("a=1", "pb_session"), None);
        assert_eq!(cookie_value("xpb_session=1", "pb_session"), None);
    }
}
