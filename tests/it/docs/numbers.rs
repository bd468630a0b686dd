//! Every number the README and ARCHITECTURE.md quote is what its source says.

use super::*;
use serde_json::Value;

/// A doc's prose: code blocks left out, every run of white space one space (so that a
/// quote may wrap across lines).
fn prose(markdown: &str) -> String {
    let mut kept = String::new();
    let mut in_block = false;
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            in_block = !in_block;
        } else if !in_block {
            kept.push_str(line);
            kept.push('\n');
        }
    }
    kept.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The number at the start of `text` ("13.55", "600", "10485760"), if any.
fn number_at(text: &str) -> &str {
    let b = text.as_bytes();
    let mut end = 0;
    while end < b.len()
        && (b[end].is_ascii_digit() || (b[end] == b'.' && end > 0 && b.get(end + 1).is_some_and(u8::is_ascii_digit)))
    {
        end += 1;
    }
    &text[..end]
}

/// One quoted figure: the doc's text `before` it and `after` it, and what its source says.
struct Quote {
    doc: &'static str,
    before: String,
    after: &'static str,
    source: String,
    what: &'static str,
}

fn quote(doc: &'static str, before: &str, after: &'static str, source: impl ToString, what: &'static str) -> Quote {
    Quote { doc, before: before.to_owned(), after, source: source.to_string(), what }
}

/// A whole number of seconds, as the docs write it.
fn secs(d: std::time::Duration) -> u128 {
    assert_eq!(d.as_millis() % 1000, 0, "{d:?} is quoted in whole seconds");
    d.as_millis() / 1000
}

/// The generated figure the README quotes: profile as FastCGI under lighttpd, ÷ the CGI
/// floor, as docs/perf/results.json holds the table scripts/bench-report wrote.
fn generated_fastcgi_over_cgi_floor() -> String {
    let results: Value = serde_json::from_str(&read("docs/perf/results.json")).unwrap();
    let table = &results["steps"]["fastcgi"]["tables"][0];
    let column = table["header"].as_array().unwrap().iter().position(|h| h == "÷ CGI floor").unwrap();
    let row = table["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r[0].as_str().unwrap().starts_with("profile as FastCGI, lighttpd"))
        .expect("the FastCGI row of bench-fastcgi's table");
    row[column].as_str().unwrap().to_owned()
}

fn quotes() -> Vec<Quote> {
    use piggyback::msq::{ANNOUNCE_PATIENCE, CGI_DRAIN_PATIENCE, SENDER_GRACE};
    let db = std::ffi::OsString::from("/nonexistent/site.db");
    let config = piggyback::config::Config::from_lookup(|name| (name == "PIGGYBACK_DB").then(|| db.clone())).unwrap();
    assert_eq!(config.session_ttl % 86_400, 0, "the README quotes the session lifetime in days");
    let mut q = vec![
        quote(
            "README.md",
            "the session-cookie key (at least ",
            " bytes",
            piggyback::identity::MIN_KEY_BYTES,
            "identity::MIN_KEY_BYTES",
        ),
        quote(
            "README.md",
            "limits request bodies to ",
            " KiB",
            piggyback::config::MAX_BODY_BYTES / 1024,
            "config::MAX_BODY_BYTES",
        ),
        quote(
            "README.md",
            "between requests (",
            " times the requests/s of a C CGI that does nothing",
            generated_fastcgi_over_cgi_floor(),
            "docs/perf/results.json, bench-fastcgi: profile as FastCGI, lighttpd, ÷ CGI floor",
        ),
        quote("README.md", "| `PIGGYBACK_SESSION_TTL` | `", "d` |", config.session_ttl / 86_400, "Config::session_ttl"),
        quote(
            "ARCHITECTURE.md",
            "at most every ",
            " s (`.recovered`)",
            piggyback::msq::spool::RECOVER_EVERY_SECS,
            "spool::RECOVER_EVERY_SECS",
        ),
        quote(
            "ARCHITECTURE.md",
            "own write ",
            " s then 503",
            secs(piggyback::message_store::BUSY_TIMEOUT),
            "message_store::BUSY_TIMEOUT",
        ),
        quote(
            "ARCHITECTURE.md",
            "announcing and acknowledging ",
            " ms each",
            ANNOUNCE_PATIENCE.as_millis(),
            "msq::ANNOUNCE_PATIENCE",
        ),
        quote(
            "ARCHITECTURE.md",
            "the drain ",
            " ms), so a GET",
            CGI_DRAIN_PATIENCE.as_millis(),
            "msq::CGI_DRAIN_PATIENCE",
        ),
        quote(
            "ARCHITECTURE.md",
            "leaves a file written less than ",
            " ms ago to its",
            SENDER_GRACE.as_millis(),
            "msq::SENDER_GRACE",
        ),
        quote(
            "ARCHITECTURE.md",
            "a GET waits at most ",
            " ms however long",
            (CGI_DRAIN_PATIENCE + 2 * ANNOUNCE_PATIENCE).as_millis(),
            "the drain's patience and announcing's and acknowledging's",
        ),
        quote(
            "ARCHITECTURE.md",
            "A claim flips at most `CLAIM_BATCH` (",
            ")",
            piggyback::message_store::CLAIM_BATCH,
            "message_store::CLAIM_BATCH",
        ),
    ];
    for (variable, value, what) in [
        ("PIGGYBACK_MAX_ITEMS", config.max_items as i64, "Config::max_items"),
        ("PIGGYBACK_SNIPPET_CHARS", config.snippet_chars as i64, "Config::snippet_chars"),
        ("PIGGYBACK_SEND_RATE", config.send_rate_per_minute.into(), "Config::send_rate_per_minute"),
        ("PIGGYBACK_SEND_PAIR_DAILY", config.send_pair_per_day.into(), "Config::send_pair_per_day"),
        ("PIGGYBACK_POST_RATE", config.post_rate_per_minute.into(), "Config::post_rate_per_minute"),
        ("PIGGYBACK_POST_QUOTA", config.post_quota_bytes, "Config::post_quota_bytes"),
        ("PIGGYBACK_ACK_LEASE", config.ack_lease_secs, "Config::ack_lease_secs"),
        ("PIGGYBACK_POLL_INTERVAL", config.poll_interval_secs, "Config::poll_interval_secs"),
    ] {
        q.push(quote("README.md", &format!("| `{variable}` | `"), "` |", value, what));
    }
    q
}

/// Numbers in the prose that are not quantities of this project: names, versions, status
/// codes. Each is the text around the number, as the doc has it.
const NOT_QUANTITIES: &[(&str, &str)] = &[
    ("README.md", "`PORT=8081"),
    ("README.md", "error answers below 500 included"),
    ("README.md", "program answer `500`"),
    ("README.md", "**lighttpd** (1.4, mod_cgi)"),
    ("README.md", "**Apache** (2.4)"),
    ("README.md", "`PIGGYBACK_TRUST_REMOTE_USER=1`"),
    ("README.md", "exit 1 on a mismatch"),
    ("ARCHITECTURE.md", "fds 0-2 open"),
    ("ARCHITECTURE.md", "RFC 3875"),
    ("ARCHITECTURE.md", "when fd 0 is a listening socket"),
    ("ARCHITECTURE.md", "(ETag/304)"),
    ("ARCHITECTURE.md", "answers below 500 to an identified user"),
    ("ARCHITECTURE.md", "s then 503"),
    ("ARCHITECTURE.md", "`CHECK (>= 0)`"),
    ("ARCHITECTURE.md", "answers 503"),
    ("ARCHITECTURE.md", "message id is 404"),
    ("ARCHITECTURE.md", "(a panic is a 500 JSON)"),
];

/// The numbers of a prose text, as (start, end) byte spans: digits not inside a word
/// (`CN101079848A`, `sha2`), with their decimals.
fn numbers(text: &str) -> Vec<(usize, usize)> {
    let b = text.as_bytes();
    let mut found = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let inside_word = i > 0 && (b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_');
        if b[i].is_ascii_digit() && !inside_word {
            let end = i + number_at(&text[i..]).len();
            found.push((i, end));
            i = end;
        } else if b[i].is_ascii_alphanumeric() || b[i] == b'_' {
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                i += 1;
            }
        } else {
            i += 1;
        }
    }
    found
}

/// Where each occurrence of `needle` is in `text`.
fn occurrences(text: &str, needle: &str) -> Vec<usize> {
    text.match_indices(needle).map(|(at, _)| at).collect()
}

/// What is wrong with `quotes` in the prose of `doc`, and the spans they cover.
fn quote_problems(doc: &str, text: &str, quotes: &[Quote]) -> (Vec<String>, Vec<(usize, usize)>) {
    let (mut problems, mut covered) = (Vec::new(), Vec::new());
    for q in quotes.iter().filter(|q| q.doc == doc) {
        let places = occurrences(text, &q.before);
        if places.is_empty() {
            problems.push(format!("{doc}: no longer says \"{}…{}\" ({})", q.before, q.after, q.what));
        }
        for at in places {
            let start = at + q.before.len();
            let quoted = number_at(&text[start..]);
            let end = start + quoted.len();
            if !text[end..].starts_with(q.after) {
                problems.push(format!("{doc}: \"{}{quoted}\" is not followed by \"{}\"", q.before, q.after));
            } else if quoted != q.source {
                problems.push(format!("{doc}: quotes {quoted} where {} says {}", q.what, q.source));
            }
            covered.push((start, end));
        }
    }
    (problems, covered)
}

#[test]
fn every_number_the_readme_and_architecture_quote_is_what_its_source_says() {
    let quotes = quotes();
    let mut problems = Vec::new();
    for doc in ["README.md", "ARCHITECTURE.md"] {
        let text = prose(&read(doc));
        let (found, mut covered) = quote_problems(doc, &text, &quotes);
        problems.extend(found);
        for (_, context) in NOT_QUANTITIES.iter().filter(|(d, _)| *d == doc) {
            let places = occurrences(&text, context);
            if places.is_empty() {
                problems.push(format!("{doc}: no longer says \"{context}\" (NOT_QUANTITIES)"));
            }
            covered.extend(places.into_iter().map(|at| (at, at + context.len())));
        }
        // A number nobody holds: a new quote needs its source here (or a reason it is none).
        for (start, end) in numbers(&text) {
            if !covered.iter().any(|&(s, e)| s <= start && end <= e) {
                let context: String = text[..start]
                    .chars()
                    .rev()
                    .take(40)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .chain(text[start..].chars().take(end - start + 20))
                    .collect();
                problems.push(format!("{doc}: {} is held against no source: \"…{context}…\"", &text[start..end]));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn a_quote_edited_on_one_side_only_is_caught() {
    let quotes = quotes();
    let claim = quotes.iter().find(|q| q.what == "message_store::CLAIM_BATCH").unwrap();
    let good = format!(
        "Two requests never announce the same message. {}{}{} (the rest)",
        claim.before, claim.source, claim.after
    );
    assert_eq!(
        quote_problems("ARCHITECTURE.md", &good, &quotes).0.len(),
        quotes.iter().filter(|q| q.doc == "ARCHITECTURE.md").count() - 1
    );
    let edited = good.replace(&format!("({})", claim.source), "(250)");
    let (problems, _) = quote_problems("ARCHITECTURE.md", &edited, &quotes);
    assert!(problems.iter().any(|p| p.contains("quotes 250 where message_store::CLAIM_BATCH says")), "{problems:?}");
    // The generated side: a README that quotes another ratio than results.json.
    let readme = prose(&read("README.md")).replace(&generated_fastcgi_over_cgi_floor(), "99.99");
    let (problems, _) = quote_problems("README.md", &readme, &quotes);
    assert!(problems.iter().any(|p| p.contains("quotes 99.99 where docs/perf/results.json")), "{problems:?}");
}
