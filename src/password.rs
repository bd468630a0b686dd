//! Password hashing, in one place: argon2id (the `argon2` crate, RustCrypto) with its
//! default parameters (19 MiB, 2 passes, 1 lane: OWASP's minimum), stored as PHC strings
//! in `users.password_hash`.

use argon2::Argon2;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};

/// Shortest password accepted when one is set, in characters.
pub const MIN_CHARS: usize = 8;
/// Longest password accepted, in bytes: argon2 takes any length, this bounds the work.
pub const MAX_BYTES: usize = 1024;

/// A hash of a password nobody has, made with the same parameters as [`hash`]: logging
/// in as a user who does not exist (or has no password) verifies against it, so that a
/// wrong name costs the same time as a wrong password.
const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$oEgTy6rdq7ZpoJ6qDVXyMQ$3WpOXhv/8ixxfGlrlvEQ75LFPob/6+mdtCFMqRjF1Vk";

/// Why a new password is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PasswordError {
    TooShort,
    TooLong,
    /// No randomness for the salt, or the hasher failed.
    Hashing(String),
}

impl std::fmt::Display for PasswordError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PasswordError::TooShort => write!(f, "a password needs at least {MIN_CHARS} characters"),
            PasswordError::TooLong => write!(f, "a password may have at most {MAX_BYTES} bytes"),
            PasswordError::Hashing(why) => write!(f, "cannot hash the password: {why}"),
        }
    }
}

impl std::error::Error for PasswordError {}

/// The PHC string (`$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>`) of a new password,
/// with a fresh random salt.
pub fn hash(password: &str) -> Result<String, PasswordError> {
    if password.chars().count() < MIN_CHARS {
        return Err(PasswordError::TooShort);
    }
    if password.len() > MAX_BYTES {
        return Err(PasswordError::TooLong);
    }
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| PasswordError::Hashing(e.to_string()))
}

/// Whether `password` matches `stored` (a PHC string). `None`, an unparsable hash and an
/// over-long password are a mismatch that still costs one argon2 verification.
pub fn verify(password: &str, stored: Option<&str>) -> bool {
    let argon2 = Argon2::default();
    let usable = password.len() <= MAX_BYTES;
    let candidate = if usable { password.as_bytes() } else { b"" };
    match stored {
        Some(phc) if usable => match argon2.verify_password(candidate, phc) {
            Ok(()) => true,
            Err(argon2::password_hash::Error::PasswordInvalid) => false,
            // A malformed stored hash: spend the same time, then refuse.
            Err(_) => {
                let _ = argon2.verify_password(candidate, DUMMY_HASH);
                false
            }
        },
        _ => {
            let _ = argon2.verify_password(candidate, DUMMY_HASH);
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_then_verify() {
        let h = hash("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
        assert!(verify("correct horse", Some(&h)));
        assert!(!verify("correct horsE", Some(&h)));
        assert!(!verify("correct horse", None));
        assert!(!verify("correct horse", Some("not a phc string")));
    }

    #[test]
    fn salts_differ() {
        assert_ne!(hash("same password").unwrap(), hash("same password").unwrap());
    }

    #[test]
    fn limits() {
        assert_eq!(hash("short"), Err(PasswordError::TooShort));
        assert_eq!(hash(&"x".repeat(MAX_BYTES + 1)), Err(PasswordError::TooLong));
        // Eight characters, more bytes: characters count.
        assert!(hash("密码密码密码密码").is_ok());
    }

    #[test]
    fn the_dummy_uses_the_same_parameters_as_real_hashes() {
        let real = hash("whatever it is").unwrap();
        let params = |h: &str| h.splitn(5, '$').take(4).collect::<Vec<_>>().join("$");
        assert_eq!(params(DUMMY_HASH), params(&real));
        assert!(!verify("piggyback: no such user!", Some(DUMMY_HASH)));
    }
}
