//! The program's answer on its way to the server: read its CGI header block, strip the
//! `X-Piggyback-User` header it may print, let the caller decide who the answer is for
//! (cookies to set or end), and when it is plainly a JSON object answering a page's call,
//! add `site_messages`; any other body passes byte for byte (RFC 3875 6: document, local
//! and client redirect answers).
//!
//! No I/O but the two streams it is given: the decision is the caller's closure, so the
//! CGI wrapper and a FastCGI responder share every rule here.

use std::io::{self, Read, Write};

use serde_json::Value;

use crate::gateway::{LeftOut, SITE_MESSAGES, json_bytes};

/// Largest header block looked at; a longer one passes through unread.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;

/// The header a wrapped program prints to say who its user is. Never reaches the client.
pub const USER_HEADER: &str = "X-Piggyback-User";

/// What [`relay`] did with the answer, for the log and the tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The body passed byte for byte (header edits aside: [`USER_HEADER`] stripped,
    /// cookies set or ended).
    PassedThrough(Why),
    /// `site_messages` added (the program's own member of that name, if any, replaced).
    Piggybacked(Own),
    /// `site_messages` left out for `Why`, and the program's own member of that name
    /// removed: it must never reach the client as if it were the server's.
    OwnRemoved(Why),
    /// The program ran out of time before it answered: a 504 was written instead.
    TimedOut,
}

/// Whether the program's JSON object carried a `site_messages` member of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Own {
    Absent,
    Replaced,
}

/// Why an answer's body passed unchanged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Why {
    /// `nph-` program: it speaks HTTP itself.
    Nph,
    /// No complete header block.
    NoHead,
    /// HTML, a redirect, a 5xx answer: not ours to change.
    NotJson,
    /// JSON, but not plainly an answer to a page's call: the reason (more than one
    /// `Content-Type`, a download, an encoded body, a navigation…).
    NotPlain(&'static str),
    /// A JSON answer longer than the buffer; streamed.
    TooLarge,
    /// A JSON body that is not an object.
    NotAnObject,
    /// Nobody is identified (or the empty member is omitted).
    Nobody,
    /// Piggyback failed (database busy, missing, misconfigured): the cause and line.
    Failed(LeftOut),
}

/// Who the program says its user is, from its [`USER_HEADER`] lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Named {
    /// No such header.
    Absent,
    /// The header with an empty value: nobody is logged in.
    Nobody,
    /// The name as printed (not yet checked).
    User(String),
    /// Several lines naming different users, or a value that is not UTF-8.
    Conflicting,
}

/// What the caller's decision sees of the answer.
#[derive(Debug, Clone)]
pub struct Answered<'a> {
    pub named: Named,
    /// The values of the program's own `Set-Cookie` headers (a login sets the site's
    /// new session cookie in the same answer).
    pub set_cookies: Vec<&'a str>,
    /// Whether the answer may carry `site_messages`: a complete JSON object answering a
    /// page's call, below 500. Only then is a claim made.
    pub carries: Carries,
}

/// Whether an answer may carry `site_messages`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Carries {
    Yes,
    No,
}

/// The caller's decision: header lines to add (`Set-Cookie`), and the member.
#[derive(Debug, Clone, Default)]
pub struct Attach {
    pub headers: Vec<(&'static str, String)>,
    /// Looked at only when the answer carries: `None` leaves it out (nobody, or an
    /// empty member omitted).
    pub member: Option<Result<Value, LeftOut>>,
}

/// The limits `relay` works within.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub buffer_bytes: usize,
}

/// Whether the program writes raw HTTP (`nph-`): then its body is never looked at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    Cgi,
    Nph,
}

/// What kind of request the answer is for: a page's own `fetch`/XHR, or a navigation
/// (a link, a typed address, a frame), whose answer no script of the page reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    Script,
    Navigation,
}

impl Call {
    /// From the request's `Sec-Fetch-Mode` and `Sec-Fetch-Dest` (absent from older
    /// browsers and plain-http requests of some: then a script's call is assumed).
    pub fn of(mode: Option<&str>, dest: Option<&str>) -> Call {
        let navigate = mode.is_some_and(|m| m.eq_ignore_ascii_case("navigate"))
            || dest.is_some_and(|d| !d.is_empty() && !d.eq_ignore_ascii_case("empty"));
        if navigate { Call::Navigation } else { Call::Script }
    }
}

/// Copies the program's answer from `child` to `out`. `decide` is called once the header
/// block is read (and, for an answer that may carry the member, the body): it says who
/// the answer is for and what to add. `expired` says whether the program was stopped
/// for running too long; an answer cut short that way, before anything was written,
/// becomes a 504.
pub fn relay(
    mut child: impl Read,
    mut out: impl Write,
    framing: Framing,
    limits: Limits,
    call: Call,
    expired: &dyn Fn() -> bool,
    decide: impl FnOnce(&Answered<'_>) -> Attach,
) -> io::Result<Outcome> {
    let mut buf = Vec::with_capacity(8192);
    // The header block (after the status line for an nph- program).
    let body_start = loop {
        if let Some(end) = head_end(&buf) {
            break end;
        }
        if buf.len() > MAX_HEAD_BYTES || fill(&mut child, &mut buf)? == 0 {
            if buf.is_empty() && expired() && framing == Framing::Cgi {
                out.write_all(&timeout_answer())?;
                return Ok(Outcome::TimedOut);
            }
            return pass(&buf, 0, None, child, out, if framing == Framing::Nph { Why::Nph } else { Why::NoHead });
        }
    };
    let (named, refusal) = {
        let head = parse_head(&buf[..body_start], framing);
        let refusal = match framing {
            Framing::Nph => Some(Why::Nph),
            Framing::Cgi => not_carrying(&head, call),
        };
        (named(&head), refusal)
    };
    let cookies_of = |head: &[Header<'_>]| -> Vec<String> {
        head.iter().filter(|h| h.is("Set-Cookie")).filter_map(|h| h.value.map(str::to_owned)).collect()
    };
    if let Some(why) = refusal {
        let head = parse_head(&buf[..body_start], framing);
        let set_cookies = cookies_of(&head);
        let set_cookies = set_cookies.iter().map(String::as_str).collect();
        let attach = decide(&Answered { named, set_cookies, carries: Carries::No });
        let edited = edit_head(&head, &attach.headers, Rewrite::HeadOnly);
        return pass(&buf, body_start, edited, child, out, why);
    }
    // The body, up to the buffer's size.
    let too_large = loop {
        if buf.len() - body_start > limits.buffer_bytes {
            break true;
        }
        if fill(&mut child, &mut buf)? == 0 {
            break false;
        }
    };
    let head = parse_head(&buf[..body_start], framing);
    let set_cookies = cookies_of(&head);
    let set_cookies: Vec<&str> = set_cookies.iter().map(String::as_str).collect();
    if too_large {
        let attach = decide(&Answered { named, set_cookies, carries: Carries::No });
        let edited = edit_head(&head, &attach.headers, Rewrite::HeadOnly);
        return pass(&buf, body_start, edited, child, out, Why::TooLarge);
    }
    if expired() {
        // A body cut short is not the program's answer: nothing reached the client yet.
        out.write_all(&timeout_answer())?;
        return Ok(Outcome::TimedOut);
    }
    let body = &buf[body_start..];
    let Some(own) = object_with_own_member(body) else {
        let attach = decide(&Answered { named, set_cookies, carries: Carries::No });
        let edited = edit_head(&head, &attach.headers, Rewrite::HeadOnly);
        return pass(&buf, body_start, edited, child, out, Why::NotAnObject);
    };
    let attach = decide(&Answered { named, set_cookies, carries: Carries::Yes });
    let body = match own {
        Own::Absent => body.to_vec(),
        Own::Replaced => match without_member(body, SITE_MESSAGES) {
            Some(cleaned) => cleaned,
            // Cannot happen for a body serde parsed; never let it through regardless.
            None => br#"{}"#.to_vec(),
        },
    };
    let (why, member) = match attach.member {
        Some(Ok(member)) => (None, Some(member)),
        None => (Some(Why::Nobody), None),
        Some(Err(left)) => (Some(Why::Failed(left)), None),
    };
    let spliced = member.as_ref().and_then(|m| splice(&body, m));
    let (new_body, outcome) = match (spliced, why) {
        (Some(spliced), _) => (spliced, Outcome::Piggybacked(own)),
        (None, why) => {
            let why = why.unwrap_or(Why::NotAnObject);
            if own == Own::Absent {
                let edited = edit_head(&head, &attach.headers, Rewrite::HeadOnly);
                return pass(&buf, body_start, edited, child, out, why);
            }
            (body, Outcome::OwnRemoved(why))
        }
    };
    let rewrite = match outcome {
        Outcome::Piggybacked(_) => Rewrite::Carrying(new_body.len()),
        _ => Rewrite::Length(new_body.len()),
    };
    let head = edit_head(&head, &attach.headers, rewrite).unwrap_or_default();
    out.write_all(&head)?;
    out.write_all(&new_body)?;
    out.flush()?;
    Ok(outcome)
}

/// Writes the header block (`head`, or the original bytes when `None`) and what was
/// read of the body, then streams the rest unchanged.
fn pass(
    buf: &[u8],
    body_start: usize,
    head: Option<Vec<u8>>,
    mut child: impl Read,
    mut out: impl Write,
    why: Why,
) -> io::Result<Outcome> {
    match head {
        Some(head) => {
            out.write_all(&head)?;
            out.write_all(&buf[body_start..])?;
        }
        None => out.write_all(buf)?,
    }
    io::copy(&mut child, &mut out)?;
    out.flush()?;
    Ok(Outcome::PassedThrough(why))
}

/// Why a complete CGI header block does not announce a JSON object for a page.
fn not_carrying(head: &[Header<'_>], call: Call) -> Option<Why> {
    let count = |name: &str| head.iter().filter(|h| h.is(name)).count();
    let types: Vec<Option<&str>> = head.iter().filter(|h| h.is("Content-Type")).map(|h| h.value).collect();
    let status = status_of(head);
    if !matches!(types.as_slice(), [Some(t)] if is_json(t)) && types.len() <= 1 {
        return Some(Why::NotJson);
    }
    if count("Location") > 0 || status >= 500 {
        return Some(Why::NotJson);
    }
    // Servers disagree on which of two types they send (Apache the last): the client
    // could get `text/html` for a body judged JSON here.
    if types.len() > 1 {
        return Some(Why::NotPlain("more than one Content-Type"));
    }
    if !(200..300).contains(&status) && !(400..500).contains(&status) || status == 204 {
        return Some(Why::NotPlain("a status without a JSON body to extend"));
    }
    let disposition = head.iter().filter(|h| h.is("Content-Disposition")).map(|h| h.value);
    if disposition
        .into_iter()
        .any(|d| !d.is_some_and(|d| d.split(';').next().unwrap_or("").trim().eq_ignore_ascii_case("inline")))
    {
        return Some(Why::NotPlain("a download (Content-Disposition)"));
    }
    let encoded = |name: &str| {
        head.iter().filter(|h| h.is(name)).any(|h| !h.value.is_some_and(|v| v.trim().eq_ignore_ascii_case("identity")))
    };
    if encoded("Content-Encoding") || encoded("Transfer-Encoding") {
        return Some(Why::NotPlain("an encoded body"));
    }
    if count("Content-Length") > 1 || count("Status") > 1 {
        return Some(Why::NotPlain("a repeated Content-Length or Status"));
    }
    if call == Call::Navigation {
        return Some(Why::NotPlain("a navigation, not a page's call"));
    }
    None
}

/// Who the program's [`USER_HEADER`] lines name.
fn named(head: &[Header<'_>]) -> Named {
    let mut lines = head.iter().filter(|h| h.is(USER_HEADER)).map(|h| h.value);
    let Some(first) = lines.next() else { return Named::Absent };
    let Some(first) = first else { return Named::Conflicting };
    if lines.any(|other| other != Some(first)) {
        return Named::Conflicting;
    }
    if first.is_empty() { Named::Nobody } else { Named::User(first.to_owned()) }
}

/// One header line of the program's block.
#[derive(Debug, Clone)]
struct Header<'a> {
    name: &'a str,
    /// `None` when the value is not UTF-8.
    value: Option<&'a str>,
    raw: &'a [u8],
}

impl Header<'_> {
    fn is(&self, name: &str) -> bool {
        self.name.eq_ignore_ascii_case(name)
    }
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

/// The header lines of a complete block (the empty line excluded). An nph- block's
/// first line is its status line: kept as a line with no name.
fn parse_head(block: &[u8], framing: Framing) -> Vec<Header<'_>> {
    let mut headers = Vec::new();
    for (i, raw) in block.split_inclusive(|&b| b == b'\n').enumerate() {
        let line = raw.strip_suffix(b"\n").unwrap_or(raw);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            break;
        }
        if i == 0 && framing == Framing::Nph {
            headers.push(Header { name: "", value: None, raw });
            continue;
        }
        let (name, value) = match line.iter().position(|&b| b == b':') {
            Some(colon) => (&line[..colon], &line[colon + 1..]),
            None => (line, &b""[..]),
        };
        let name = std::str::from_utf8(name).map(str::trim).unwrap_or("");
        let value = std::str::from_utf8(value).ok().map(str::trim);
        headers.push(Header { name, value, raw });
    }
    headers
}

fn status_of(head: &[Header<'_>]) -> u16 {
    head.iter().find(|h| h.is("Status")).and_then(|h| h.value?.split_whitespace().next()?.parse().ok()).unwrap_or(200)
}

/// `application/json`, or any `+json` type (`application/problem+json`).
pub fn is_json(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    let Some((kind, subtype)) = essence.split_once('/') else { return false };
    !kind.is_empty() && (subtype == "json" && kind == "application" || subtype.ends_with("+json"))
}

/// For a JSON object, whether it has a `site_messages` member of its own; `None` for
/// anything else.
fn object_with_own_member(body: &[u8]) -> Option<Own> {
    let map = serde_json::from_slice::<std::collections::HashMap<String, serde::de::IgnoredAny>>(body).ok()?;
    Some(if map.contains_key(SITE_MESSAGES) { Own::Replaced } else { Own::Absent })
}

/// A JSON object's layout: where its braces are, and each top-level member's decoded
/// key and byte span (key through value).
struct Layout {
    open: usize,
    members: Vec<(String, usize, usize)>,
    close: usize,
}

/// The [`Layout`] of a JSON object, or `None` when `body` is not one. Only called on
/// bodies serde has parsed, so the scan needs no error reporting beyond giving up.
fn member_spans(body: &[u8]) -> Option<Layout> {
    let ws = |b: u8| matches!(b, b' ' | b'\t' | b'\n' | b'\r');
    let skip_ws = |mut i: usize| {
        while i < body.len() && ws(body[i]) {
            i += 1;
        }
        i
    };
    let skip_string = |mut i: usize| -> Option<usize> {
        i += 1;
        loop {
            match *body.get(i)? {
                b'\\' => i += 2,
                b'"' => return Some(i + 1),
                _ => i += 1,
            }
        }
    };
    let skip_value = |i: usize| -> Option<usize> {
        match *body.get(i)? {
            b'"' => skip_string(i),
            b'{' | b'[' => {
                let (mut depth, mut j) = (0usize, i);
                loop {
                    match *body.get(j)? {
                        b'"' => {
                            j = skip_string(j)?;
                            continue;
                        }
                        b'{' | b'[' => depth += 1,
                        b'}' | b']' => {
                            depth -= 1;
                            if depth == 0 {
                                return Some(j + 1);
                            }
                        }
                        _ => {}
                    }
                    j += 1;
                }
            }
            _ => {
                let mut j = i;
                while j < body.len() && !matches!(body[j], b',' | b'}' | b']') && !ws(body[j]) {
                    j += 1;
                }
                Some(j)
            }
        }
    };
    let open = skip_ws(0);
    if body.get(open) != Some(&b'{') {
        return None;
    }
    let mut members = Vec::new();
    let mut i = skip_ws(open + 1);
    if body.get(i) == Some(&b'}') {
        return Some(Layout { open, members, close: i });
    }
    loop {
        let key_end = skip_string(i)?;
        let key: String = serde_json::from_slice(&body[i..key_end]).ok()?;
        let colon = skip_ws(key_end);
        if body.get(colon) != Some(&b':') {
            return None;
        }
        let value_end = skip_value(skip_ws(colon + 1))?;
        members.push((key, i, value_end));
        let next = skip_ws(value_end);
        match body.get(next)? {
            b',' => i = skip_ws(next + 1),
            b'}' => return Some(Layout { open, members, close: next }),
            _ => return None,
        }
    }
}

/// The object without its top-level members named `name` (all of them: a repeated key
/// is still the same member to a parser); the others keep their text.
fn without_member(body: &[u8], name: &str) -> Option<Vec<u8>> {
    let Layout { open, members, close } = member_spans(body)?;
    let kept: Vec<&[u8]> = members.iter().filter(|(k, _, _)| k != name).map(|(_, s, e)| &body[*s..*e]).collect();
    let mut out = body[..=open].to_vec();
    out.extend_from_slice(&kept.join(&b","[..]));
    out.extend_from_slice(&body[close..]);
    Some(out)
}

/// The program's body with `"site_messages": member` added before its closing brace,
/// every byte of the program's own text kept.
fn splice(body: &[u8], member: &Value) -> Option<Vec<u8>> {
    let close = body.iter().rposition(|&b| b == b'}')?;
    let open = body.iter().position(|&b| b == b'{')?;
    let empty = body[open + 1..close].iter().all(u8::is_ascii_whitespace);
    let member = json_bytes(member);
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

/// How much of the header block [`edit_head`] rewrites.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rewrite {
    /// The body is unchanged: only [`USER_HEADER`] goes, the caller's lines come.
    HeadOnly,
    /// The body changed to this length (the program's own member removed).
    Length(usize),
    /// The body carries `site_messages` and has this length: `Content-Length`
    /// recomputed, `Cache-Control: private, no-store` (an answer naming a user's
    /// messages must not be stored by any cache) and `X-Content-Type-Options: nosniff`.
    Carrying(usize),
}

/// The program's header lines as it wrote them, with the edits of `rewrite` and the
/// caller's `add`ed lines; `None` when nothing changes (the block passes as it was).
fn edit_head(head: &[Header<'_>], add: &[(&'static str, String)], rewrite: Rewrite) -> Option<Vec<u8>> {
    let has_user = head.iter().any(|h| h.is(USER_HEADER));
    if rewrite == Rewrite::HeadOnly && add.is_empty() && !has_user {
        return None;
    }
    let carrying = matches!(rewrite, Rewrite::Carrying(_));
    // A cookie is set or ended: no shared cache may keep it.
    let private = carrying || add.iter().any(|(name, _)| name.eq_ignore_ascii_case("Set-Cookie"));
    let mut out = Vec::new();
    for h in head {
        let drop = h.is(USER_HEADER)
            || (rewrite != Rewrite::HeadOnly && h.is("Content-Length"))
            || (private && h.is("Cache-Control"))
            || (carrying && h.is("X-Content-Type-Options"));
        if !drop {
            out.extend_from_slice(h.raw);
        }
    }
    for (name, value) in add {
        let value: String = value.chars().filter(|c| *c != '\r' && *c != '\n').collect();
        out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
    }
    if private {
        out.extend_from_slice(b"Cache-Control: private, no-store\r\n");
    }
    if carrying {
        out.extend_from_slice(b"X-Content-Type-Options: nosniff\r\n");
    }
    if let Rewrite::Length(n) | Rewrite::Carrying(n) = rewrite {
        out.extend_from_slice(format!("Content-Length: {n}\r\n").as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    Some(out)
}

/// What the client gets when the program ran out of time before answering.
fn timeout_answer() -> Vec<u8> {
    let body = br#"{"error":{"code":"timeout","message":"the program did not answer in time"}}"#;
    let mut out = format!(
        "Status: 504 Gateway Timeout\r\nContent-Type: application/json; charset=utf-8\r\n\
         Cache-Control: private, no-store\r\nX-Content-Type-Options: nosniff\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::Cause;
    use serde_json::json;

    fn relay_with(child: &[u8], framing: Framing, buffer: usize, call: Call, attach: Attach) -> (Vec<u8>, Outcome) {
        let mut out = Vec::new();
        let outcome =
            relay(child, &mut out, framing, Limits { buffer_bytes: buffer }, call, &|| false, |_| attach).unwrap();
        (out, outcome)
    }

    fn run(child: &[u8], framing: Framing, buffer: usize, member: Option<Value>) -> (Vec<u8>, Outcome) {
        relay_with(child, framing, buffer, Call::Script, Attach { headers: Vec::new(), member: member.map(Ok) })
    }

    fn member() -> Option<Value> {
        Some(json!({"unread": 1}))
    }

    #[test]
    fn a_json_object_gets_the_member_and_a_new_length() {
        let child =
            b"Status: 201 Created\nContent-Type: application/json\nContent-Length: 9\nX-Site: 1\n\n{\"a\": 1}\n";
        let (out, outcome) = run(child, Framing::Cgi, 1024, member());
        assert_eq!(outcome, Outcome::Piggybacked(Own::Absent));
        let text = String::from_utf8(out).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert_eq!(body, "{\"a\": 1,\"site_messages\":{\"unread\":1}}\n");
        assert!(head.starts_with("Status: 201 Created\nContent-Type: application/json\nX-Site: 1\n"), "{head}");
        assert!(head.contains(&format!("Content-Length: {}", body.len())), "{head}");
        assert!(head.contains("Cache-Control: private, no-store") && !head.contains("Content-Length: 9"), "{head}");
        assert!(head.contains("X-Content-Type-Options: nosniff"), "{head}");
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
            (b"no header block at all", Why::NoHead),
            (b"", Why::NoHead),
            (
                b"Content-Type: application/json\nContent-Type: text/html\n\n{\"a\":1}",
                Why::NotPlain("more than one Content-Type"),
            ),
            (
                b"Content-Type: application/json\nContent-Disposition: attachment; filename=a.json\n\n{}",
                Why::NotPlain("a download (Content-Disposition)"),
            ),
            (b"Content-Type: application/json\nContent-Encoding: gzip\n\n{}", Why::NotPlain("an encoded body")),
            (
                b"Status: 204 No Content\nContent-Type: application/json\n\n",
                Why::NotPlain("a status without a JSON body to extend"),
            ),
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
        let attach = Attach { headers: Vec::new(), member: member().map(Ok) };
        let navigation = relay_with(nobody, Framing::Cgi, 1024, Call::Navigation, attach);
        assert_eq!(
            navigation,
            (nobody.to_vec(), Outcome::PassedThrough(Why::NotPlain("a navigation, not a page's call")))
        );
    }

    #[test]
    fn the_user_header_never_passes_and_the_callers_cookies_are_added() {
        for (framing, child) in [
            (Framing::Cgi, &b"Content-Type: text/html\nX-Piggyback-User: alice\n\n<p>hi</p>"[..]),
            (Framing::Nph, b"HTTP/1.1 200 OK\r\nx-piggyback-user: alice\r\nContent-Type: text/html\r\n\r\n<p>hi</p>"),
            (Framing::Cgi, b"Content-Type: application/json\nX-Piggyback-User: \xff\n\n{\"a\":1}"),
        ] {
            let mut seen = None;
            let mut out = Vec::new();
            relay(child, &mut out, framing, Limits { buffer_bytes: 99 }, Call::Script, &|| false, |answered| {
                seen = Some(answered.named.clone());
                Attach { headers: vec![("Set-Cookie", "pb_session=x".into())], member: None }
            })
            .unwrap();
            let text = String::from_utf8_lossy(&out).to_ascii_lowercase();
            assert!(!text.contains("x-piggyback-user"), "{text}");
            assert!(text.contains("set-cookie: pb_session=x\r\n") && text.contains("cache-control: private"), "{text}");
            assert!(out.ends_with(b"<p>hi</p>") || out.ends_with(b"{\"a\":1}"), "the body is unchanged: {text}");
            let expected = if child.contains(&0xff) { Named::Conflicting } else { Named::User("alice".into()) };
            assert_eq!(seen, Some(expected));
        }
        let mut seen = None;
        let child = b"X-Piggyback-User: ann\nX-Piggyback-User: bob\nContent-Type: text/plain\n\nx";
        relay(&child[..], Vec::new(), Framing::Cgi, Limits { buffer_bytes: 9 }, Call::Script, &|| false, |a| {
            seen = Some(a.named.clone());
            Attach::default()
        })
        .unwrap();
        assert_eq!(seen, Some(Named::Conflicting));
    }

    #[test]
    fn a_programs_own_site_messages_is_replaced_or_removed() {
        let child = b"Content-Type: application/json\n\n{\"a\": \"<b>\", \"site\\u005fmessages\": {\"items\": [\"}\"]}, \"z\": [1, {\"site_messages\": 2}], \"site_messages\": 3}";
        let (out, outcome) = run(child, Framing::Cgi, 1024, member());
        assert_eq!(outcome, Outcome::Piggybacked(Own::Replaced));
        let text = String::from_utf8(out).unwrap();
        let body: Value = serde_json::from_str(text.split_once("\r\n\r\n").unwrap().1).unwrap();
        assert_eq!(body, json!({"a": "<b>", "z": [1, {"site_messages": 2}], "site_messages": {"unread": 1}}));
        let (out, outcome) = run(child, Framing::Cgi, 1024, None);
        assert_eq!(outcome, Outcome::OwnRemoved(Why::Nobody));
        let text = String::from_utf8(out).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert_eq!(serde_json::from_str::<Value>(body).unwrap(), json!({"a": "<b>", "z": [1, {"site_messages": 2}]}));
        assert!(head.contains(&format!("Content-Length: {}", body.len())), "{head}");
        let (out, _) = run(b"Content-Type: application/json\n\n{\"site_messages\":0}", Framing::Cgi, 99, None);
        assert!(out.ends_with(b"\n\r\n{}"), "{}", String::from_utf8_lossy(&out));
    }

    #[test]
    fn the_inserted_member_holds_no_markup() {
        let evil = json!({"items": [{"subject": "<img src=x onerror=alert(1)> & </script>"}]});
        let (out, _) = run(b"Content-Type: application/json\n\n{}", Framing::Cgi, 99, Some(evil.clone()));
        let text = String::from_utf8(out).unwrap();
        let body = text.split_once("\r\n\r\n").unwrap().1;
        assert!(!body.contains('<') && !body.contains('>') && !body.contains('&'), "{body}");
        assert!(body.contains("\\u003cimg"), "{body}");
        assert_eq!(serde_json::from_str::<Value>(body).unwrap()["site_messages"], evil);
    }

    #[test]
    fn an_answer_past_the_buffer_streams_through_unchanged() {
        let mut child = b"Content-Type: application/json\n\n{\"a\":\"".to_vec();
        child.extend(std::iter::repeat_n(b'x', 5000));
        child.extend_from_slice(b"\"}");
        let (out, outcome) = run(&child, Framing::Cgi, 1000, member());
        assert_eq!((out, outcome), (child.clone(), Outcome::PassedThrough(Why::TooLarge)));
        assert_eq!(run(&child, Framing::Cgi, 10_000, member()).1, Outcome::Piggybacked(Own::Absent));
    }

    #[test]
    fn a_piggyback_failure_leaves_the_answer_alone() {
        let child = b"Content-Type: application/json\n\n{\"a\":1}";
        let left = LeftOut::new(Cause::Busy, "database is locked");
        let attach = Attach { headers: Vec::new(), member: Some(Err(left.clone())) };
        let (out, outcome) = relay_with(child, Framing::Cgi, 99, Call::Script, attach);
        assert_eq!(out, child);
        assert_eq!(outcome, Outcome::PassedThrough(Why::Failed(left)));
    }

    #[test]
    fn a_program_stopped_before_answering_is_a_504() {
        for child in [&b""[..], b"Content-Type: application/json\n\n{\"half\":"] {
            let mut out = Vec::new();
            let outcome =
                relay(child, &mut out, Framing::Cgi, Limits { buffer_bytes: 99 }, Call::Script, &|| true, |_| {
                    Attach::default()
                })
                .unwrap();
            assert_eq!(outcome, Outcome::TimedOut);
            assert!(out.starts_with(b"Status: 504 "), "{}", String::from_utf8_lossy(&out));
        }
    }
}
