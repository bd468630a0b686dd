//! The FastCGI record layer (FastCGI 1.0 specification): values in, bytes out, no I/O.
//!
//! A web server that keeps a program running (lighttpd `mod_fastcgi`, Apache
//! `mod_fcgid`, nginx behind `spawn-fcgi`) talks to it in records over a socket. This
//! module parses and writes those records and runs one connection's state machine
//! ([`Connection`]): it collects a responder request's parameters and stdin, answers the
//! management records itself, and refuses what a process that serves one request at a
//! time cannot do. `gateway::fcgi` does the socket I/O and runs the requests. Nothing
//! here panics on any input: a record that breaks the protocol is a [`Malformed`] error,
//! after which the connection is closed.

/// The only protocol version.
pub const VERSION: u8 = 1;
/// Bytes of a record header.
pub const HEADER_LEN: usize = 8;
/// Largest content of one record.
pub const MAX_CONTENT: usize = 0xFFFF;

pub const BEGIN_REQUEST: u8 = 1;
pub const ABORT_REQUEST: u8 = 2;
pub const END_REQUEST: u8 = 3;
pub const PARAMS: u8 = 4;
pub const STDIN: u8 = 5;
pub const STDOUT: u8 = 6;
pub const STDERR: u8 = 7;
pub const DATA: u8 = 8;
pub const GET_VALUES: u8 = 9;
pub const GET_VALUES_RESULT: u8 = 10;
pub const UNKNOWN_TYPE: u8 = 11;

/// The role this program plays; authorizer and filter are refused.
pub const ROLE_RESPONDER: u16 = 1;
/// `flags` bit of BEGIN_REQUEST: keep the connection open after the request.
pub const KEEP_CONN: u8 = 1;

/// `protocolStatus` of END_REQUEST.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProtocolStatus {
    RequestComplete = 0,
    CantMpxConn = 1,
    Overloaded = 2,
    UnknownRole = 3,
}

/// The answers to FCGI_GET_VALUES: one connection, one request at a time.
const VALUES: [(&[u8], &[u8]); 3] = [(b"FCGI_MAX_CONNS", b"1"), (b"FCGI_MAX_REQS", b"1"), (b"FCGI_MPXS_CONNS", b"0")];

/// Largest total size of one request's parameters. Web servers send a few kilobytes;
/// more is a broken or hostile peer, and the connection is closed.
pub const MAX_PARAMS_BYTES: usize = 1 << 20;

/// A record that breaks the protocol; the connection cannot go on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed(pub &'static str);

impl std::fmt::Display for Malformed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "malformed FastCGI input: {}", self.0)
    }
}

impl std::error::Error for Malformed {}

/// One record as read from the wire, padding dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    pub kind: u8,
    pub request_id: u16,
    pub content: &'a [u8],
}

/// Parses the first record of `buf`: `Ok(None)` when `buf` holds only part of one,
/// else the record and how many bytes it took (header, content and padding).
pub fn parse_record(buf: &[u8]) -> Result<Option<(Record<'_>, usize)>, Malformed> {
    let Some(header) = buf.get(..HEADER_LEN) else {
        return Ok(None);
    };
    if header[0] != VERSION {
        return Err(Malformed("unsupported protocol version"));
    }
    let request_id = u16::from_be_bytes([header[2], header[3]]);
    let content_len = usize::from(u16::from_be_bytes([header[4], header[5]]));
    let total = HEADER_LEN + content_len + usize::from(header[6]);
    match buf.get(HEADER_LEN..HEADER_LEN + content_len) {
        Some(content) if buf.len() >= total => Ok(Some((Record { kind: header[1], request_id, content }, total))),
        _ => Ok(None),
    }
}

/// Appends `content` as records of `kind`, split into pieces of at most
/// [`MAX_CONTENT`] bytes, each padded to a multiple of 8. Empty content writes one
/// empty record: the end of a stream.
pub fn write_records(out: &mut Vec<u8>, kind: u8, request_id: u16, content: &[u8]) {
    let mut pieces = content.chunks(MAX_CONTENT).peekable();
    if pieces.peek().is_none() {
        write_one(out, kind, request_id, &[]);
    }
    for piece in pieces {
        write_one(out, kind, request_id, piece);
    }
}

fn write_one(out: &mut Vec<u8>, kind: u8, request_id: u16, content: &[u8]) {
    let len = content.len() as u16;
    let padding = (8 - content.len() % 8) % 8;
    let [id_hi, id_lo] = request_id.to_be_bytes();
    let [len_hi, len_lo] = len.to_be_bytes();
    out.extend_from_slice(&[VERSION, kind, id_hi, id_lo, len_hi, len_lo, padding as u8, 0]);
    out.extend_from_slice(content);
    out.extend_from_slice(&[0; 7][..padding]);
}

/// The whole answer to a request: its stdout stream, closed, then END_REQUEST.
pub fn write_response(out: &mut Vec<u8>, request_id: u16, stdout: &[u8]) {
    if !stdout.is_empty() {
        write_records(out, STDOUT, request_id, stdout);
    }
    write_records(out, STDOUT, request_id, &[]);
    write_end(out, request_id, 0, ProtocolStatus::RequestComplete);
}

/// Appends an END_REQUEST record.
pub fn write_end(out: &mut Vec<u8>, request_id: u16, app_status: u32, status: ProtocolStatus) {
    let mut body = [0u8; 8];
    body[..4].copy_from_slice(&app_status.to_be_bytes());
    body[4] = status as u8;
    write_one(out, END_REQUEST, request_id, &body);
}

/// One name-value pair, borrowed from the record it was read from.
pub type Pair<'a> = (&'a [u8], &'a [u8]);

/// Parses FastCGI name-value pairs (section 3.4): each length is one byte below 128,
/// else four bytes with the top bit set.
pub fn parse_pairs(mut bytes: &[u8]) -> Result<Vec<Pair<'_>>, Malformed> {
    let mut pairs = Vec::new();
    while !bytes.is_empty() {
        let name_len = take_len(&mut bytes)?;
        let value_len = take_len(&mut bytes)?;
        let name = take(&mut bytes, name_len)?;
        let value = take(&mut bytes, value_len)?;
        pairs.push((name, value));
    }
    Ok(pairs)
}

fn take_len(bytes: &mut &[u8]) -> Result<usize, Malformed> {
    match bytes.first() {
        None => Err(Malformed("name-value pair cut short")),
        Some(&b) if b < 0x80 => {
            *bytes = &bytes[1..];
            Ok(usize::from(b))
        }
        Some(_) => {
            let four = take(bytes, 4)?;
            Ok((u32::from_be_bytes([four[0], four[1], four[2], four[3]]) & 0x7FFF_FFFF) as usize)
        }
    }
}

fn take<'a>(bytes: &mut &'a [u8], n: usize) -> Result<&'a [u8], Malformed> {
    if bytes.len() < n {
        return Err(Malformed("name-value pair cut short"));
    }
    let (head, rest) = bytes.split_at(n);
    *bytes = rest;
    Ok(head)
}

/// Appends one name-value pair.
pub fn write_pair(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    for len in [name.len(), value.len()] {
        if len < 0x80 {
            out.push(len as u8);
        } else {
            out.extend_from_slice(&(len as u32 | 0x8000_0000).to_be_bytes());
        }
    }
    out.extend_from_slice(name);
    out.extend_from_slice(value);
}

/// A responder request whose parameters and stdin have all arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub id: u16,
    /// The CGI variables, as the web server sent them.
    pub params: Vec<(Vec<u8>, Vec<u8>)>,
    /// The body; at most `stdin_cap` bytes are kept (see [`Connection::new`]).
    pub stdin: Vec<u8>,
    /// Close the connection after the answer.
    pub close: bool,
}

/// What the caller must do after a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Nothing yet.
    Wait,
    /// Write these bytes (a management answer, a refusal, an aborted request's end).
    Write(Vec<u8>),
    /// Write these bytes, then close the connection.
    WriteAndClose(Vec<u8>),
    /// Run this request and write [`write_response`]'s bytes.
    Run(Request),
}

#[derive(Debug)]
struct Active {
    id: u16,
    close: bool,
    params: Vec<u8>,
    params_done: bool,
    stdin: Vec<u8>,
    stdin_done: bool,
}

/// One connection's state: at most one request active at a time.
#[derive(Debug)]
pub struct Connection {
    active: Option<Active>,
    stdin_cap: usize,
}

impl Connection {
    /// `stdin_cap`: bytes of a body worth keeping. The gateway refuses a body longer than
    /// its limit before reading it, so keeping one byte more than the limit answers as
    /// a CGI process does, without holding a hostile upload in memory.
    pub fn new(stdin_cap: usize) -> Connection {
        Connection { active: None, stdin_cap }
    }

    /// Whether a request has begun and not yet been handed out to run.
    pub fn mid_request(&self) -> bool {
        self.active.is_some()
    }

    /// Takes one record in.
    pub fn feed(&mut self, record: Record<'_>) -> Result<Step, Malformed> {
        let Record { kind, request_id: id, content } = record;
        if id == 0 {
            return Ok(management(kind, content));
        }
        match kind {
            BEGIN_REQUEST => self.begin(id, content),
            ABORT_REQUEST => match &self.active {
                Some(active) if active.id == id => {
                    let close = active.close;
                    self.active = None;
                    let mut out = Vec::new();
                    write_end(&mut out, id, 0, ProtocolStatus::RequestComplete);
                    Ok(if close { Step::WriteAndClose(out) } else { Step::Write(out) })
                }
                // An abort for a request already answered crossed the answer: nothing to do.
                _ => Ok(Step::Wait),
            },
            PARAMS => self.stream(id, content, true),
            STDIN => self.stream(id, content, false),
            // DATA belongs to the filter role, refused at BEGIN_REQUEST; other types are
            // the application's own records, which a server never sends.
            _ => Ok(Step::Wait),
        }
    }

    fn begin(&mut self, id: u16, content: &[u8]) -> Result<Step, Malformed> {
        let [role_hi, role_lo, flags, ..] = *content else {
            return Err(Malformed("BEGIN_REQUEST body shorter than 8 bytes"));
        };
        if content.len() != 8 {
            return Err(Malformed("BEGIN_REQUEST body is not 8 bytes"));
        }
        let mut out = Vec::new();
        match &self.active {
            Some(active) if active.id == id => return Err(Malformed("BEGIN_REQUEST for a request already active")),
            Some(_) => {
                write_end(&mut out, id, 0, ProtocolStatus::CantMpxConn);
                return Ok(Step::Write(out));
            }
            None => {}
        }
        let close = flags & KEEP_CONN == 0;
        if u16::from_be_bytes([role_hi, role_lo]) != ROLE_RESPONDER {
            write_end(&mut out, id, 0, ProtocolStatus::UnknownRole);
            return Ok(if close { Step::WriteAndClose(out) } else { Step::Write(out) });
        }
        self.active =
            Some(Active { id, close, params: Vec::new(), params_done: false, stdin: Vec::new(), stdin_done: false });
        Ok(Step::Wait)
    }

    fn stream(&mut self, id: u16, content: &[u8], params: bool) -> Result<Step, Malformed> {
        let Some(active) = self.active.as_mut().filter(|a| a.id == id) else {
            // Records of a request that was aborted or refused: the server may still be
            // sending them.
            return Ok(Step::Wait);
        };
        let (done, buf) = if params {
            (&mut active.params_done, &mut active.params)
        } else {
            (&mut active.stdin_done, &mut active.stdin)
        };
        if *done {
            return Err(Malformed("a record after the end of its stream"));
        }
        if content.is_empty() {
            *done = true;
        } else if params {
            if buf.len() + content.len() > MAX_PARAMS_BYTES {
                return Err(Malformed("request parameters too large"));
            }
            buf.extend_from_slice(content);
        } else {
            let room = (self.stdin_cap + 1).saturating_sub(buf.len());
            buf.extend_from_slice(&content[..content.len().min(room)]);
        }
        if !(active.params_done && active.stdin_done) {
            return Ok(Step::Wait);
        }
        let Some(active) = self.active.take() else {
            return Ok(Step::Wait);
        };
        let params = parse_pairs(&active.params)?.into_iter().map(|(n, v)| (n.to_vec(), v.to_vec())).collect();
        Ok(Step::Run(Request { id: active.id, params, stdin: active.stdin, close: active.close }))
    }
}

/// The answer to a management record (request id 0).
fn management(kind: u8, content: &[u8]) -> Step {
    let mut out = Vec::new();
    if kind == GET_VALUES {
        let mut body = Vec::new();
        // A query that cannot be parsed is answered with what could be read of it.
        let asked = parse_pairs(content).unwrap_or_default();
        for (name, value) in VALUES {
            if asked.iter().any(|(n, _)| *n == name) {
                write_pair(&mut body, name, value);
            }
        }
        write_records(&mut out, GET_VALUES_RESULT, 0, &body);
    } else {
        write_one(&mut out, UNKNOWN_TYPE, 0, &[kind, 0, 0, 0, 0, 0, 0, 0]);
    }
    Step::Write(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn begin(id: u16, role: u16, flags: u8) -> Vec<u8> {
        let mut out = Vec::new();
        let [r0, r1] = role.to_be_bytes();
        write_records(&mut out, BEGIN_REQUEST, id, &[r0, r1, flags, 0, 0, 0, 0, 0]);
        out
    }

    fn params(id: u16, pairs: &[(&str, &str)]) -> Vec<u8> {
        let mut body = Vec::new();
        for (n, v) in pairs {
            write_pair(&mut body, n.as_bytes(), v.as_bytes());
        }
        let mut out = Vec::new();
        if !body.is_empty() {
            write_records(&mut out, PARAMS, id, &body);
        }
        write_records(&mut out, PARAMS, id, &[]);
        out
    }

    fn stdin(id: u16, body: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        if !body.is_empty() {
            write_records(&mut out, STDIN, id, body);
        }
        write_records(&mut out, STDIN, id, &[]);
        out
    }

    /// Feeds a byte stream record by record, in chunks of `chunk` bytes, collecting steps.
    fn run(conn: &mut Connection, wire: &[u8], chunk: usize) -> Result<Vec<Step>, Malformed> {
        let mut buf = Vec::new();
        let mut steps = Vec::new();
        for piece in wire.chunks(chunk.max(1)) {
            buf.extend_from_slice(piece);
            while let Some((record, used)) = parse_record(&buf)? {
                let step = conn.feed(record)?;
                buf.drain(..used);
                if step != Step::Wait {
                    steps.push(step);
                }
            }
        }
        Ok(steps)
    }

    #[test]
    fn a_request_runs_once_its_params_and_stdin_have_ended() {
        let mut wire = begin(1, ROLE_RESPONDER, KEEP_CONN);
        wire.extend(params(1, &[("REQUEST_METHOD", "POST"), ("CONTENT_LENGTH", "5")]));
        wire.extend(stdin(1, b"hello"));
        let steps = run(&mut Connection::new(100), &wire, 3).unwrap();
        let [Step::Run(req)] = &steps[..] else { panic!("{steps:?}") };
        assert_eq!(req.id, 1);
        assert!(!req.close);
        assert_eq!(req.stdin, b"hello");
        assert_eq!(
            req.params,
            vec![(b"REQUEST_METHOD".to_vec(), b"POST".to_vec()), (b"CONTENT_LENGTH".to_vec(), b"5".to_vec())]
        );
    }

    #[test]
    fn a_second_request_while_one_is_active_is_refused_and_the_first_goes_on() {
        let mut wire = begin(1, ROLE_RESPONDER, 0);
        wire.extend(begin(2, ROLE_RESPONDER, 0));
        wire.extend(params(1, &[]));
        wire.extend(stdin(1, b""));
        let steps = run(&mut Connection::new(100), &wire, 1000).unwrap();
        let mut refusal = Vec::new();
        write_end(&mut refusal, 2, 0, ProtocolStatus::CantMpxConn);
        assert_eq!(steps[0], Step::Write(refusal));
        let Step::Run(req) = &steps[1] else { panic!("{steps:?}") };
        assert_eq!((req.id, req.close), (1, true));
    }

    #[test]
    fn other_roles_are_refused() {
        let steps = run(&mut Connection::new(100), &begin(7, 2, 0), 1000).unwrap();
        let mut refusal = Vec::new();
        write_end(&mut refusal, 7, 0, ProtocolStatus::UnknownRole);
        assert_eq!(steps, vec![Step::WriteAndClose(refusal)]);
    }

    #[test]
    fn an_abort_ends_the_request_and_its_late_records_are_ignored() {
        let mut wire = begin(3, ROLE_RESPONDER, KEEP_CONN);
        wire.extend(params(3, &[("A", "b")]));
        let mut abort = Vec::new();
        write_records(&mut abort, ABORT_REQUEST, 3, &[]);
        wire.extend(abort);
        wire.extend(stdin(3, b"late"));
        let mut conn = Connection::new(100);
        let steps = run(&mut conn, &wire, 5).unwrap();
        let mut end = Vec::new();
        write_end(&mut end, 3, 0, ProtocolStatus::RequestComplete);
        assert_eq!(steps, vec![Step::Write(end)]);
        assert!(!conn.mid_request());
    }

    #[test]
    fn get_values_answers_the_three_limits_it_is_asked_for() {
        let mut body = Vec::new();
        write_pair(&mut body, b"FCGI_MAX_CONNS", b"");
        write_pair(&mut body, b"FCGI_MPXS_CONNS", b"");
        write_pair(&mut body, b"SOMETHING_ELSE", b"");
        let mut wire = Vec::new();
        write_records(&mut wire, GET_VALUES, 0, &body);
        let steps = run(&mut Connection::new(0), &wire, 1000).unwrap();
        let [Step::Write(out)] = &steps[..] else { panic!("{steps:?}") };
        let (record, used) = parse_record(out).unwrap().unwrap();
        assert_eq!(used, out.len());
        assert_eq!(record.kind, GET_VALUES_RESULT);
        let pairs = parse_pairs(record.content).unwrap();
        assert_eq!(pairs, vec![(&b"FCGI_MAX_CONNS"[..], &b"1"[..]), (&b"FCGI_MPXS_CONNS"[..], &b"0"[..])]);
    }

    #[test]
    fn an_unknown_management_record_is_answered_unknown_type() {
        let mut wire = Vec::new();
        write_records(&mut wire, 42, 0, b"x");
        let steps = run(&mut Connection::new(0), &wire, 1000).unwrap();
        let [Step::Write(out)] = &steps[..] else { panic!("{steps:?}") };
        let (record, _) = parse_record(out).unwrap().unwrap();
        assert_eq!((record.kind, record.content), (UNKNOWN_TYPE, &[42, 0, 0, 0, 0, 0, 0, 0][..]));
    }

    #[test]
    fn broken_input_is_malformed_not_a_panic() {
        assert!(parse_record(&[2, 1, 0, 1, 0, 0, 0, 0]).is_err());
        assert!(parse_pairs(&[5, 1, b'a']).is_err());
        assert!(parse_pairs(&[0x80, 0, 0]).is_err());
        let mut short = Vec::new();
        write_records(&mut short, BEGIN_REQUEST, 1, &[0, 1]);
        assert!(run(&mut Connection::new(0), &short, 100).is_err());
        let mut twice = begin(1, ROLE_RESPONDER, 0);
        twice.extend(begin(1, ROLE_RESPONDER, 0));
        assert!(run(&mut Connection::new(0), &twice, 100).is_err());
        let mut after_end = begin(1, ROLE_RESPONDER, 0);
        write_records(&mut after_end, PARAMS, 1, &[]);
        write_records(&mut after_end, PARAMS, 1, &[1, 1, b'a', b'b']);
        assert!(run(&mut Connection::new(0), &after_end, 100).is_err());
    }

    #[test]
    fn stdin_beyond_the_cap_is_dropped() {
        let mut wire = begin(1, ROLE_RESPONDER, 0);
        wire.extend(params(1, &[]));
        wire.extend(stdin(1, &[7; 200_000]));
        let steps = run(&mut Connection::new(10), &wire, 4096).unwrap();
        let [Step::Run(req)] = &steps[..] else { panic!("{steps:?}") };
        assert_eq!(req.stdin, vec![7; 11]);
    }

    /// `len` bytes that differ from place to place (generating each byte with proptest
    /// is slow for hundreds of kilobytes).
    fn bytes(len: usize, seed: u8) -> Vec<u8> {
        (0..len).map(|i| (i as u8).wrapping_mul(31) ^ seed ^ (i >> 8) as u8).collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn params_and_stdin_of_any_size_arrive_whole_however_the_bytes_are_split(
            pairs in prop::collection::vec(("[A-Z_]{1,200}", ".{0,300}"), 0..20),
            body_len in 0usize..140_000,
            seed: u8,
            chunk in 1usize..70_000,
        ) {
            let body = bytes(body_len, seed);
            let pairs: Vec<(&str, &str)> = pairs.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
            let mut wire = begin(9, ROLE_RESPONDER, KEEP_CONN);
            wire.extend(params(9, &pairs));
            wire.extend(stdin(9, &body));
            let steps = run(&mut Connection::new(usize::MAX - 1), &wire, chunk).unwrap();
            let [Step::Run(req)] = &steps[..] else { panic!("{steps:?}") };
            let expected: Vec<(Vec<u8>, Vec<u8>)> =
                pairs.iter().map(|(n, v)| (n.as_bytes().to_vec(), v.as_bytes().to_vec())).collect();
            prop_assert_eq!(&req.params, &expected);
            prop_assert_eq!(&req.stdin, &body);
        }

        #[test]
        fn a_response_of_any_size_reads_back_as_the_same_stdout(len in 0usize..200_000, seed: u8) {
            let out = bytes(len, seed);
            let mut wire = Vec::new();
            write_response(&mut wire, 5, &out);
            let mut rest = &wire[..];
            let mut stdout = Vec::new();
            let mut ended = false;
            while let Some((record, used)) = parse_record(rest).unwrap() {
                prop_assert_eq!(record.request_id, 5);
                prop_assert_eq!(used % 8, 0);
                match record.kind {
                    STDOUT => stdout.extend_from_slice(record.content),
                    END_REQUEST => { ended = true; prop_assert_eq!(record.content, &[0u8; 8][..]); }
                    other => prop_assert!(false, "unexpected record type {}", other),
                }
                rest = &rest[used..];
            }
            prop_assert!(ended && rest.is_empty());
            prop_assert_eq!(stdout, out);
        }

        #[test]
        fn no_input_panics(wire in prop::collection::vec(any::<u8>(), 0..2000), chunk in 1usize..64) {
            let _ = run(&mut Connection::new(64), &wire, chunk);
        }
    }
}
