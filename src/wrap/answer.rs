//! The program's answer on its way to the server: read its CGI header block, and when
//! it is a complete JSON object for an identified user, add `site_messages`; anything
//! else passes byte for byte (RFC 3875 6: document, local and client redirect answers).

use std::io::{self, Read, Write};

use serde_json::Value;

use crate::gateway::{SITE_MESSAGES, SiteMessagesError};

/// Largest header block looked at; a longer one passes through unread.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;

/// What [`relay`] did with the answer, for the log and the tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Passed byte for byte.
    PassedThrough(Why),
    /// `site_messages` added.
    Piggybacked,
    /// The program ran out of time before it answered: a 504 was written instead.
    TimedOut,
}

/// Why an answer passed unchanged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Why {
    /// `nph-` program: it speaks HTTP itself.
    Nph,
    /// No complete header block.
    NoHead,
    /// HTML, a redirect, a download, a 5xx answer: not ours to change.
    NotJson,
    /// A JSON answer longer than the buffer; streamed.
    TooLarge,
    /// A JSON body that is not an object, or already has `site_messages`.
    NotAnObject,
    /// Nobody is identified (or the empty member is omitted).
    Nobody,
    /// Piggyback failed (database busy, missing, misconfigured): the line logged.
    Failed(String),
}

/// One header line of the program's block.
#[derive(Debug, Clone)]
struct Header<'a> {
    name: &'a str,
    value: &'a str,
    raw: &'a [u8],
}

/// The limits `relay` works within.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub buffer_bytes: usize,
}

/// Whether the program writes raw HTTP (`nph-`): then nothing is looked at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    Cgi,
    Nph,
}

/// Copies the program's answer from `child` to `out`, adding `site_messages` from
/// `piggyback` (called only for a complete JSON object answer below 500) when it gives
/// one. `expired` says whether the program was stopped for running too long; an answer
/// cut short that way, before anything was written, becomes a 504.
pub fn relay(
    mut child: impl Read,
    mut out: impl Write,
    framing: Framing,
    limits: Limits,
    expired: &dyn Fn() -> bool,
    piggyback: impl FnOnce() -> Result<Option<Value>, SiteMessagesError>,
) -> io::Result<Outcome> {
    let mut buf = Vec::with_capacity(8192);
    if framing == Framing::Nph {
        io::copy(&mut child, &mut out)?;
        return Ok(Outcome::PassedThrough(Why::Nph));
    }
    // The header block.
    let body_start = loop {
        if let Some(end) = head_end(&buf) {
            break end;
        }
        if buf.len() > MAX_HEAD_BYTES || fill(&mut child, &mut buf)? == 0 {
            if buf.is_empty() && expired() {
                out.write_all(&timeout_answer())?;
                return Ok(Outcome::TimedOut);
            }
            return pass(buf, child, out, Why::NoHead);
        }
    };
    let head = parse_head(&buf[..body_start]);
    let status = status_of(&head);
    let json = content_type(&head).is_some_and(is_json);
    let redirect = head.iter().any(|h| h.name.eq_ignore_ascii_case("Location"));
    if !json || redirect || status >= 500 {
        return pass(buf, child, out, Why::NotJson);
    }
    // The body, up to the buffer's size.
    loop {
        if buf.len() - body_start > limits.buffer_bytes {
            return pass(buf, child, out, Why::TooLarge);
        }
        if fill(&mut child, &mut buf)? == 0 {
            break;
        }
    }
    if expired() {
        // A body cut short is not the program's answer: nothing reached the client yet.
        out.write_all(&timeout_answer())?;
        return Ok(Outcome::TimedOut);
    }
    let body = &buf[body_start..];
    if !is_plain_object(body) {
        return pass(buf, child, out, Why::NotAnObject);
    }
    let member = match piggyback() {
        Ok(Some(member)) => member,
        Ok(None) => return pass(buf, child, out, Why::Nobody),
        Err(why) => return pass(buf, child, out, Why::Failed(why.to_string())),
    };
    let Some(new_body) = splice(body, &member) else {
        return pass(buf, child, out, Why::NotAnObject);
    };
    let head = parse_head(&buf[..body_start]);
    out.write_all(&rewrite_head(&head, new_body.len()))?;
    out.write_all(&new_body)?;
    out.flush()?;
    Ok(Outcome::Piggybacked)
}

/// Writes what was read so far and streams the rest unchanged.
fn pass(buf: Vec<u8>, mut child: impl Read, mut out: impl Write, why: Why) -> io::Result<Outcome> {
    out.write_all(&buf)?;
    drop(buf);
    io::copy(&mut child, &mut out)?;
    out.flush()?;
    Ok(Outcome::PassedThrough(why))
}

/// Reads once into `buf`; the number of bytes read (0 at the end).
fn fill(child: &mut impl Read, buf: &mut Vec<u8>) -> io::Result<usize> {
    let mut chunk = [0u8; 16 * 1024];
    loop {
        match child.read(&mut chunk) {
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                return Ok(n);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Where the body starts: after the first empty line (LF or CRLF line ends).
fn head_end(buf: &[u8]) -> Option<usize> {
    let mut line_start = 0;
    for (i, &b) in buf.iter().enumerate() {
        if b == b'\n' {
            let line = &buf[line_start..i];
            if line.is_empty() || line == b"\r" {
                return Some(i + 1);
            }
            line_start = i + 1;
        }
    }
    None
}

/// The header lines of a complete block (the empty line excluded).
fn parse_head(block: &[u8]) -> Vec<Header<'_>> {
    let mut headers = Vec::new();
    for raw in block.split_inclusive(|&b| b == b'\n') {
        let line = raw.strip_suffix(b"\n").unwrap_or(raw);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            break;
        }
        let Ok(line) = std::str::from_utf8(line) else {
            headers.push(Header { name: "", value: "", raw });
            continue;
        };
        let (name, value) = line.split_once(':').unwrap_or((line, ""));
        headers.push(Header { name: name.trim(), value: value.trim(), raw });
    }
    headers
}

fn status_of(head: &[Header<'_>]) -> u16 {
    head.iter()
        .find(|h| h.name.eq_ignore_ascii_case("Status"))
        .and_then(|h| h.value.split_whitespace().next()?.parse().ok())
        .unwrap_or(200)
}

fn content_type<'a>(head: &[Header<'a>]) -> Option<&'a str> {
    head.iter().find(|h| h.name.eq_ignore_ascii_case("Content-Type")).map(|h| h.value)
}

/// `application/json`, or any `+json` type (`application/problem+json`).
pub fn is_json(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    let Some((kind, subtype)) = essence.split_once('/') else { return false };
    !kind.is_empty() && (subtype == "json" && kind == "application" || subtype.ends_with("+json"))
}

/// A JSON object without a `site_messages` member of its own.
fn is_plain_object(body: &[u8]) -> bool {
    match serde_json::from_slice::<std::collections::HashMap<String, serde::de::IgnoredAny>>(body) {
        Ok(map) => !map.contains_key(SITE_MESSAGES),
        Err(_) => false,
    }
}

/// The program's body with `"site_messages": member` added before its closing brace,
/// every byte of the program's own text kept.
fn splice(body: &[u8], member: &Value) -> Option<Vec<u8>> {
    let close = body.iter().rposition(|&b| b == b'}')?;
    let open = body.iter().position(|&b| b == b'{')?;
    let empty = body[open + 1..close].iter().all(u8::is_ascii_whitespace);
    let member = serde_json::to_vec(member).ok()?;
    let mut out = Vec::with_capacity(body.len() + member.len() + 20);
    out.extend_from_slice(&body[..close]);
    if !empty {
        out.push(b',');
    }
    out.extend_from_slice(b"\"");
    out.extend_from_slice(SITE_MESSAGES.as_bytes());
    out.extend_from_slice(b"\":");
    out.extend_from_slice(&member);
    out.extend_from_slice(&body[close..]);
    Some(out)
}

/// The program's header lines as it wrote them, with `Content-Length` recomputed and
/// `Cache-Control: private, no-store` (an answer naming a user's messages must not be
/// stored by any cache).
fn rewrite_head(head: &[Header<'_>], body_len: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for h in head {
        if h.name.eq_ignore_ascii_case("Content-Length") || h.name.eq_ignore_ascii_case("Cache-Control") {
            continue;
        }
        out.extend_from_slice(h.raw);
    }
    out.extend_from_slice(b"Cache-Control: private, no-store\r\n");
    out.extend_from_slice(format!("Content-Length: {body_len}\r\n\r\n").as_bytes());
    out
}

/// What the client gets when the program ran out of time before answering.
fn timeout_answer() -> Vec<u8> {
    let body = br#"{"error":{"code":"timeout","message":"the program did not answer in time"}}"#;
    let mut out = format!(
        "Status: 504 Gateway Timeout\r\nContent-Type: application/json; charset=utf-8\r\n\
         Cache-Control: private, no-store\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message_store::StoreError;
    use serde_json::json;

    fn run(child: &[u8], framing: Framing, buffer: usize, member: Option<Value>) -> (Vec<u8>, Outcome) {
        let mut out = Vec::new();
        let outcome =
            relay(child, &mut out, framing, Limits { buffer_bytes: buffer }, &|| false, || Ok(member)).unwrap();
        (out, outcome)
    }

    fn member() -> Option<Value> {
        Some(json!({"unread": 1}))
    }

    #[test]
    fn a_json_object_gets_the_member_and_a_new_length() {
        let child =
            b"Status: 201 Created\nContent-Type: application/json\nContent-Length: 9\nX-Site: 1\n\n{\"a\": 1}\n";
        let (out, outcome) = run(child, Framing::Cgi, 1024, member());
        assert_eq!(outcome, Outcome::Piggybacked);
        let text = String::from_utf8(out).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert_eq!(body, "{\"a\": 1,\"site_messages\":{\"unread\":1}}\n");
        assert!(head.starts_with("Status: 201 Created\nContent-Type: application/json\nX-Site: 1\n"), "{head}");
        assert!(head.contains(&format!("Content-Length: {}", body.len())), "{head}");
        assert!(head.contains("Cache-Control: private, no-store") && !head.contains("Content-Length: 9"), "{head}");
    }

    #[test]
    fn an_empty_object_and_plus_json_types() {
        let child = b"Content-Type: application/problem+json\r\n\r\n{ }";
        let (out, _) = run(child, Framing::Cgi, 1024, member());
        assert!(out.ends_with(b"{ \"site_messages\":{\"unread\":1}}"), "{}", String::from_utf8_lossy(&out));
        for (t, json) in [
            ("application/json; charset=utf-8", true),
            ("Application/JSON", true),
            ("application/vnd.api+json", true),
            ("text/json-ish", false),
            ("text/html", false),
            ("application/jsonp", false),
            ("", false),
        ] {
            assert_eq!(is_json(t), json, "{t}");
        }
    }

    #[test]
    fn everything_else_passes_byte_for_byte() {
        let cases: Vec<(&[u8], Why)> = vec![
            (b"Content-Type: text/html\n\n<p>{\"a\":1}</p>", Why::NotJson),
            (b"Status: 302 Found\nLocation: /x\nContent-Type: application/json\n\n{}", Why::NotJson),
            (b"Location: /local\n\n", Why::NotJson),
            (b"Status: 500 Oops\nContent-Type: application/json\n\n{}", Why::NotJson),
            (b"Content-Type: application/json\n\n[1,2]", Why::NotAnObject),
            (b"Content-Type: application/json\n\n{\"a\":", Why::NotAnObject),
            (b"Content-Type: application/json\n\n{\"site_messages\":0}", Why::NotAnObject),
            (b"no header block at all", Why::NoHead),
            (b"", Why::NoHead),
        ];
        for (child, why) in cases {
            let (out, outcome) = run(child, Framing::Cgi, 1024, member());
            assert_eq!(out, child, "{}", String::from_utf8_lossy(child));
            assert_eq!(outcome, Outcome::PassedThrough(why));
        }
        let nph = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n{}";
        assert_eq!(run(nph, Framing::Nph, 1024, member()), (nph.to_vec(), Outcome::PassedThrough(Why::Nph)));
        let nobody = b"Content-Type: application/json\n\n{}";
        assert_eq!(run(nobody, Framing::Cgi, 1024, None), (nobody.to_vec(), Outcome::PassedThrough(Why::Nobody)));
    }

    #[test]
    fn an_answer_past_the_buffer_streams_through_unchanged() {
        let mut child = b"Content-Type: application/json\n\n{\"a\":\"".to_vec();
        child.extend(std::iter::repeat_n(b'x', 5000));
        child.extend_from_slice(b"\"}");
        let (out, outcome) = run(&child, Framing::Cgi, 1000, member());
        assert_eq!((out, outcome), (child.clone(), Outcome::PassedThrough(Why::TooLarge)));
        assert_eq!(run(&child, Framing::Cgi, 10_000, member()).1, Outcome::Piggybacked);
    }

    #[test]
    fn a_piggyback_failure_leaves_the_answer_alone() {
        let child = b"Content-Type: application/json\n\n{\"a\":1}";
        let mut out = Vec::new();
        let outcome = relay(&child[..], &mut out, Framing::Cgi, Limits { buffer_bytes: 99 }, &|| false, || {
            Err(SiteMessagesError::Store(StoreError::Unreachable("connection refused".into())))
        })
        .unwrap();
        assert_eq!(out, child);
        assert_eq!(
            outcome,
            Outcome::PassedThrough(Why::Failed(
                "site_messages left out: the message database server is unreachable: connection refused".into()
            ))
        );
    }

    #[test]
    fn a_program_stopped_before_answering_is_a_504() {
        for child in [&b""[..], b"Content-Type: application/json\n\n{\"half\":"] {
            let mut out = Vec::new();
            let outcome =
                relay(child, &mut out, Framing::Cgi, Limits { buffer_bytes: 99 }, &|| true, || Ok(None)).unwrap();
            assert_eq!(outcome, Outcome::TimedOut);
            assert!(out.starts_with(b"Status: 504 "), "{}", String::from_utf8_lossy(&out));
        }
    }
}
