//! User names: the one canonical form and the rules a name must pass, applied in one
//! place ([`UserName::parse`]) wherever a name enters: a login, `REMOTE_USER`, the
//! command line, and an API body or query naming a recipient or a friend. The store
//! takes only a [`UserName`], so no name reaches a query without passing here.
//!
//! Canonical form: Unicode NFC, then lowercase (Unicode's full lowercase mapping), then
//! NFC again. So `Bob@Example.com` and `bob@example.com` are one user, and so are a
//! composed and a decomposed `é`. Names that used to be refused for their capitals
//! (`Alice`) now name the lowercase user (`alice`).
//!
//! Refused (docs/API.md "User names"): empty, longer than [`MAX_CHARS`] characters
//! ([`MAX_ADDRESS_CHARS`] for an e-mail address) or [`MAX_BYTES`] bytes; any
//! character outside UTS #39's identifier "Allowed" set (which leaves out controls,
//! format characters such as bidirectional overrides and zero-width joiners,
//! unassigned code points, whitespace, symbols and punctuation but `_ - . ' : ·`),
//! except `@` (once, between a local part and a dotted domain) and `+ %` in an
//! address's local part; and a name mixing scripts beyond UTS #39's "highly
//! restrictive" level (Latin with Cyrillic, as in `pаypal`, is refused; Latin with
//! Han and kana, as in `tanaka_太郎`, is allowed).
//!
//! Confusables: [`UserName::skeleton`] is UTS #39's skeleton of the canonical name
//! (lowercased and taken again, so that `b0b` looks like `bob`);
//! the store keeps it with a unique index, so a new name (created or renamed) that
//! looks like an existing user's (`a1ice` beside `alice`, an all-Cyrillic `ѕсоре`
//! beside `scope`) is refused.

use unicode_normalization::UnicodeNormalization;
use unicode_security::{GeneralSecurityProfile, RestrictionLevel, RestrictionLevelDetection};

/// Characters a name has at most (an e-mail address: [`MAX_ADDRESS_CHARS`]).
pub const MAX_CHARS: usize = 64;
/// Characters an e-mail address has at most (RFC 5321's path limit less the brackets).
pub const MAX_ADDRESS_CHARS: usize = 254;
/// Bytes of UTF-8 any name has at most, whatever its script.
pub const MAX_BYTES: usize = 254;

/// A user name in canonical form that passed every rule.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UserName(String);

/// Why a name is refused: said in the error's message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameError {
    Empty,
    TooLong,
    /// A character outside the allowed set, with what kind of character it is.
    Character(char, &'static str),
    /// An `@` that does not separate a local part from a dotted domain.
    Address,
    /// Letters of scripts that do not belong together.
    MixedScripts,
}

impl std::fmt::Display for NameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NameError::Empty => write!(f, "the user name is empty"),
            NameError::TooLong => write!(
                f,
                "the user name is longer than {MAX_CHARS} characters ({MAX_ADDRESS_CHARS} for an e-mail address) \
                 or {MAX_BYTES} bytes"
            ),
            NameError::Character(c, what) => {
                write!(f, "the user name contains U+{:04X}, {what}, which names may not contain", u32::from(*c))
            }
            NameError::Address => {
                write!(f, "the user name has an @ but is not an e-mail address (local@domain.tld)")
            }
            NameError::MixedScripts => {
                write!(f, "the user name mixes letters of different scripts (as in a look-alike of another name)")
            }
        }
    }
}

impl std::error::Error for NameError {}

impl UserName {
    /// The canonical form of `raw` if it passes every rule.
    pub fn parse(raw: &str) -> Result<UserName, NameError> {
        // Most names are plain lowercase ASCII, already canonical and passing every rule:
        // the Unicode work below was 5 % of a FastCGI request's instructions for them.
        if plain_ascii(raw) {
            return Ok(UserName(raw.to_owned()));
        }
        UserName::parse_unicode(raw)
    }

    /// [`UserName::parse`] for any name, the plain ASCII ones included.
    fn parse_unicode(raw: &str) -> Result<UserName, NameError> {
        let name: String = raw.nfc().flat_map(char::to_lowercase).nfc().collect();
        if name.is_empty() {
            return Err(NameError::Empty);
        }
        let address = name.contains('@');
        let max_chars = if address { MAX_ADDRESS_CHARS } else { MAX_CHARS };
        if name.len() > MAX_BYTES || name.chars().count() > max_chars {
            return Err(NameError::TooLong);
        }
        let (local, domain) = match name.split_once('@') {
            Some((local, domain)) => (local, Some(domain)),
            None => (name.as_str(), None),
        };
        for c in local.chars() {
            if !(c.identifier_allowed() || (domain.is_some() && matches!(c, '+' | '%'))) {
                return Err(NameError::Character(c, kind_of(c)));
            }
        }
        if let Some(domain) = domain {
            if let Some(c) = domain.chars().find(|&c| !c.identifier_allowed()) {
                return Err(if c == '@' { NameError::Address } else { NameError::Character(c, kind_of(c)) });
            }
            let dotted = |s: &str| !s.starts_with('.') && !s.ends_with('.') && !s.contains("..");
            let labels_ok = domain.split('.').all(|l| !l.is_empty() && !l.starts_with('-') && !l.ends_with('-'));
            if local.is_empty() || !dotted(local) || !domain.contains('.') || !labels_ok {
                return Err(NameError::Address);
            }
        }
        // The scripts of the letters: `@ + %` are common to every script but not
        // identifier characters, so they are left out of the test.
        let letters: String = name.chars().filter(|c| !matches!(c, '@' | '+' | '%')).collect();
        if letters.as_str().detect_restriction_level() > RestrictionLevel::HighlyRestrictive {
            return Err(NameError::MixedScripts);
        }
        Ok(UserName(name))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Its look ([`skeleton`]): two names with the same skeleton look alike.
    pub fn skeleton(&self) -> String {
        skeleton(&self.0)
    }
}

/// Whether `raw` is a name of lowercase ASCII letters, digits and `_ - .` within the
/// length: canonical and allowed as it is, by every rule.
fn plain_ascii(raw: &str) -> bool {
    let byte_ok = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-' | b'.');
    !raw.is_empty() && raw.len() <= MAX_CHARS && raw.bytes().all(byte_ok)
}

/// The look of `name` (a name in the store: canonical already): UTS #39's skeleton,
/// lowercased, and its skeleton again. UTS #39 maps `0` to a capital `O`, which no
/// lowercase name contains: without the second pass `b0b` would not look like `bob`.
pub fn skeleton(name: &str) -> String {
    let once: String = unicode_security::skeleton(name).flat_map(char::to_lowercase).collect();
    unicode_security::skeleton(&once).collect()
}

impl std::fmt::Display for UserName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// What kind of refused character `c` is, for the error message.
fn kind_of(c: char) -> &'static str {
    if c.is_control() {
        "a control character"
    } else if c.is_whitespace() {
        "a space"
    } else if matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{206F}' | '\u{FEFF}')
        || c == '\u{00AD}'
    {
        "an invisible format character"
    } else if c.identifier_type().is_none() {
        "an unassigned code point"
    } else {
        "a symbol or a character UTS #39 does not allow in identifiers"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shortcut for plain ASCII names gives exactly what the full rules give.
    #[test]
    fn plain_ascii_names_parse_as_the_full_rules_parse_them() {
        let mut names: Vec<String> = (0u8..128).map(|b| char::from(b).to_string()).filter(|s| plain_ascii(s)).collect();
        assert_eq!(names.len(), 26 + 10 + 3);
        names.extend(["alice", "bob_2", "a.b-c", "user.name_01", "x".repeat(MAX_CHARS).as_str()].map(String::from));
        for name in &names {
            assert!(plain_ascii(name), "{name:?}");
            assert_eq!(UserName::parse(name), UserName::parse_unicode(name), "{name:?}");
        }
        for name in ["", "Alice", "a b", "a@b.c", "x".repeat(MAX_CHARS + 1).as_str(), "é"] {
            assert!(!plain_ascii(name), "{name:?}");
        }
    }

    fn canonical(raw: &str) -> String {
        UserName::parse(raw).map(|n| n.0).unwrap_or_else(|e| panic!("{raw:?}: {e}"))
    }

    #[test]
    fn case_and_normalisation_give_one_name() {
        assert_eq!(canonical("Bob@Example.com"), "bob@example.com");
        assert_eq!(canonical("Alice"), "alice");
        // Composed and decomposed é.
        assert_eq!(canonical("jos\u{e9}"), canonical("jose\u{301}"));
        assert_eq!(canonical("JOSE\u{301}"), "jos\u{e9}");
        assert_eq!(canonical("ΟΔΥΣΣΕΑΣ"), "οδυσσεασ");
        assert_eq!(canonical("Straße"), "straße");
    }

    #[test]
    fn every_old_name_is_still_itself() {
        for old in ["alice_2", "a", "ann.lee+site@example.com", "x_1%y@a-b.co", &"z".repeat(32)] {
            assert_eq!(canonical(old), old);
        }
        let long = format!("{}@{}.com", "a".repeat(64), ["b".repeat(63), "c".repeat(63), "d".repeat(55)].join("."));
        assert_eq!(long.len(), 252);
        assert_eq!(canonical(&long), long);
    }

    #[test]
    fn scripts_people_write_their_names_in() {
        for ok in ["tanaka_太郎", "иван", "δοκιμή", "محمد", "김민준", "o'brien", "jean-luc", "josé@correo.es", "王小明"]
        {
            UserName::parse(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
    }

    #[test]
    fn attack_strings_are_refused() {
        let refused = |raw: &str| UserName::parse(raw).expect_err(raw);
        // Latin p, a, y, p, a, l with a Cyrillic а (U+0430).
        assert_eq!(refused("p\u{430}ypal"), NameError::MixedScripts);
        // Greek omicron in a Latin name.
        assert_eq!(refused("g\u{3bf}ogle"), NameError::MixedScripts);
        // Right-to-left override making "alice" read backwards, and the isolates.
        assert!(matches!(refused("\u{202e}ecila"), NameError::Character('\u{202e}', _)));
        assert!(matches!(refused("al\u{2066}ice"), NameError::Character('\u{2066}', _)));
        // Zero-width space, joiner, non-joiner, word joiner, BOM, soft hyphen.
        for c in ['\u{200b}', '\u{200d}', '\u{200c}', '\u{2060}', '\u{feff}', '\u{ad}'] {
            assert!(matches!(refused(&format!("ali{c}ce")), NameError::Character(x, _) if x == c), "{c:?}");
        }
        // Controls, spaces of every kind, and unassigned code points.
        for raw in ["al\u{0}ice", "al\nice", "al\u{7f}ice", "al ice", "al\u{a0}ice", "al\u{3000}ice", "al\u{e0001}ice"]
        {
            assert!(matches!(refused(raw), NameError::Character(..)), "{raw:?}");
        }
        assert!(matches!(refused("a\u{50000}"), NameError::Character(_, "an unassigned code point")));
        // Compatibility look-alikes and symbols outside the identifier set.
        for raw in ["ﬁle", "ℌello", "①", "a/b", "a<b>", "😀", "a\"b", "a;b"] {
            assert!(matches!(refused(raw), NameError::Character(..)), "{raw:?}");
        }
        // `@` only as an address's one separator.
        for raw in ["alice@", "@example.com", "a@b@example.com", "alice@localhost", "a..b@example.com", "a@-x.com"] {
            refused(raw);
        }
        assert!(matches!(refused("a+b"), NameError::Character('+', _)));
        assert_eq!(refused(""), NameError::Empty);
        assert_eq!(refused(&"a".repeat(65)), NameError::TooLong);
        assert_eq!(refused(&"太".repeat(85)), NameError::TooLong);
    }

    #[test]
    fn look_alikes_share_a_skeleton() {
        let skel = |raw: &str| UserName::parse(raw).unwrap().skeleton();
        assert_eq!(skel("alice"), skel("a1ice"));
        assert_eq!(skel("bob"), skel("b0b"));
        assert_eq!(skel("modern"), skel("rnodern"));
        // Whole-script look-alikes: all Cyrillic (ѕ с о р е, у а ӏ), each one script,
        // so only the skeleton tells them from the Latin names.
        assert_eq!(skel("scope"), skel("\u{455}\u{441}\u{43e}\u{440}\u{435}"));
        assert_eq!(skel("paypal"), skel("\u{440}\u{430}\u{443}\u{440}\u{430}\u{4cf}"));
        assert_ne!(skel("alice"), skel("bob"));
        assert_ne!(skel("jose"), skel("josé"));
    }
}
