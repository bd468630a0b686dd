//! Who is asking: `REMOTE_USER` from the web server, else the signed `pb_session` cookie.
//!
//! Cookie value: `v1.<user id>.<expires, unix seconds>.<tag>`, where `tag` is the
//! lowercase hex HMAC-SHA256 of `v1.<user id>.<expires>` under the key (the whole
//! content of `PIGGYBACK_SECRET_FILE`, at least 32 bytes). No request parameter, header
//! or body field ever selects the user.

use std::path::Path;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::config::Config;
use crate::http::ApiError;
use crate::model::UserId;

/// The session cookie's name.
pub const COOKIE_NAME: &str = "pb_session";

/// Shortest key accepted.
pub const MIN_KEY_BYTES: usize = 32;

/// The session-signing key.
pub struct Key(Vec<u8>);

impl Key {
    pub fn new(bytes: Vec<u8>) -> Result<Key, String> {
        if bytes.len() < MIN_KEY_BYTES {
            return Err(format!("the key has {} bytes; at least {MIN_KEY_BYTES} are needed", bytes.len()));
        }
        Ok(Key(bytes))
    }

    /// Reads the key file.
    pub fn load(path: &Path) -> Result<Key, String> {
        let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        Key::new(bytes)
    }

    fn mac(&self, payload: &str) -> Hmac<Sha256> {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.0).expect("HMAC takes keys of any length");
        mac.update(payload.as_bytes());
        mac
    }

    /// A cookie value naming `user` until `expires` (unix seconds).
    pub fn sign(&self, user: UserId, expires: i64) -> String {
        let payload = format!("v1.{}.{}", user.0, expires);
        let tag = self.mac(&payload).finalize().into_bytes();
        let mut value = payload;
        value.push('.');
        for b in tag.iter() {
            value.push_str(&format!("{b:02x}"));
        }
        value
    }

    /// The user a cookie value names, if its tag is right (checked in constant time)
    /// and it has not expired.
    pub fn verify(&self, value: &str, now: i64) -> Result<UserId, CookieError> {
        let (payload, tag_hex) = value.rsplit_once('.').ok_or(CookieError::Malformed)?;
        let mut parts = payload.split('.');
        let (Some("v1"), Some(user), Some(expires), None) = (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(CookieError::Malformed);
        };
        let user: i64 = digits(user).ok_or(CookieError::Malformed)?;
        let expires: i64 = digits(expires).ok_or(CookieError::Malformed)?;
        let tag = unhex(tag_hex).ok_or(CookieError::Malformed)?;
        self.mac(payload).verify_slice(&tag).map_err(|_| CookieError::Forged)?;
        if expires <= now {
            return Err(CookieError::Expired);
        }
        Ok(UserId(user))
    }
}

/// The expiry (unix seconds) a cookie value states, without checking its tag: only for
/// a value the gateway has already verified.
pub fn stated_expiry(value: &str) -> Option<i64> {
    value.split('.').nth(2).and_then(digits)
}

/// Why a cookie names nobody.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CookieError {
    Malformed,
    Forged,
    Expired,
}

fn digits(s: &str) -> Option<i64> {
    if s.is_empty() || s.len() > 18 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.len() != 64 {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| s.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok())).collect()
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

/// Creates a key file of 64 random hex characters, mode 0600 (`piggyback init`);
/// false if it exists.
pub fn create_key_file(path: &Path) -> std::io::Result<bool> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| std::io::Error::other(format!("no randomness for the key: {e}")))?;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path);
    match file {
        Ok(mut f) => {
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
    let Some(path) = &config.secret_file else {
        return Err(ApiError::misconfigured().log("PIGGYBACK_SECRET_FILE: not set, so no session cookie can be made"));
    };
    Key::load(path).map_err(|e| ApiError::misconfigured().log(format!("PIGGYBACK_SECRET_FILE: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> Key {
        Key::new(b"0123456789abcdef0123456789abcdef".to_vec()).unwrap()
    }

    #[test]
    fn round_trip() {
        let v = key().sign(UserId(7), 2_000_000_000);
        assert!(v.starts_with("v1.7.2000000000."));
        assert_eq!(stated_expiry(&v), Some(2_000_000_000));
        assert_eq!(key().verify(&v, 1_900_000_000), Ok(UserId(7)));
    }

    #[test]
    fn expired_forged_malformed() {
        let k = key();
        let v = k.sign(UserId(7), 100);
        assert_eq!(k.verify(&v, 100), Err(CookieError::Expired));
        let other = Key::new(vec![b'x'; 32]).unwrap();
        assert_eq!(other.verify(&v, 50), Err(CookieError::Forged));
        let tampered = v.replacen("v1.7.", "v1.8.", 1);
        assert_eq!(k.verify(&tampered, 50), Err(CookieError::Forged));
        for bad in ["", "v1", "v1.7.100", "v2.7.100.00", "v1.-7.100.aa", "v1.7.100.zz", "v1.7.1.0.aa"] {
            assert_eq!(k.verify(bad, 50), Err(CookieError::Malformed), "{bad}");
        }
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
