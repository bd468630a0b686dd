//! Text rules shared by handlers and the message status module: snippets and limits.

/// The first `max` characters of `text` (Unicode scalar values, so Chinese text comes
/// out whole), with `…` appended when something was cut. Whitespace runs are folded so
/// a toast shows one line.
pub fn snippet(text: &str, max: usize) -> String {
    snippet_of_prefix(text, false, max)
}

/// Like [`snippet`] for a text of which only a prefix was read; `cut_already` says that
/// more followed it, so the result ends in `…` in any case.
pub fn snippet_of_prefix(text: &str, cut_already: bool, max: usize) -> String {
    let folded: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut chars = folded.char_indices();
    match chars.nth(max) {
        None if cut_already => {
            let mut s = folded;
            s.push('…');
            s
        }
        None => folded,
        Some((cut, _)) => {
            let mut s = folded[..cut].trim_end().to_string();
            s.push('…');
            s
        }
    }
}

/// Checks a user name: 1 to 32 of `[a-z0-9_]`.
pub fn valid_name(name: &str) -> bool {
    (1..=32).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// Number of characters (Unicode scalar values).
pub fn char_len(s: &str) -> usize {
    s.chars().count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snippet_keeps_short_text_whole() {
        assert_eq!(snippet("hi", 60), "hi");
        assert_eq!(snippet("", 60), "");
    }

    #[test]
    fn snippet_cuts_at_characters_not_bytes() {
        let s = "明天中午一起吃饭吗？我们在老地方见";
        assert_eq!(snippet(s, 5), "明天中午一…");
        assert_eq!(snippet(s, 17), s);
        assert_eq!(snippet("ab😀cd", 3), "ab😀…");
    }

    #[test]
    fn snippet_folds_whitespace() {
        assert_eq!(snippet("a\n\n b\tc", 60), "a b c");
        assert_eq!(snippet("abc def", 4), "abc…");
    }

    #[test]
    fn names() {
        assert!(valid_name("alice_2"));
        assert!(!valid_name(""));
        assert!(!valid_name("Alice"));
        assert!(!valid_name(&"a".repeat(33)));
        assert!(!valid_name("a-b"));
    }
}
