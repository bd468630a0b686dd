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

/// Number of characters (Unicode scalar values).
pub fn char_len(s: &str) -> usize {
    s.chars().count()
}

/// Unix seconds as an RFC 3339 UTC timestamp (`2026-11-26T09:30:00Z`), the form every
/// time in the API takes.
pub fn rfc3339(unix: i64) -> String {
    // Howard Hinnant's days-to-civil algorithm (proleptic Gregorian calendar).
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", secs / 3600, secs % 3600 / 60, secs % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(4_102_444_799), "2099-12-31T23:59:59Z");
        assert_eq!(rfc3339(-1), "1969-12-31T23:59:59Z");
    }

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
}
