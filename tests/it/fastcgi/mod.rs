//! FastCGI, and the C start every program shares.

mod responder;
mod start;

use crate::support::Site;
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixStream;

const BEGIN_REQUEST: u8 = 1;

const END_REQUEST: u8 = 3;

const PARAMS: u8 = 4;

const STDIN: u8 = 5;

const STDOUT: u8 = 6;

/// One record: version 1, no padding when `pad` is false (both are valid).
pub(crate) fn record(kind: u8, id: u16, content: &[u8], pad: bool) -> Vec<u8> {
    assert!(content.len() <= 0xFFFF);
    let padding = if pad { (8 - content.len() % 8) % 8 } else { 0 };
    let mut out = vec![1, kind];
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&(content.len() as u16).to_be_bytes());
    out.extend_from_slice(&[padding as u8, 0]);
    out.extend_from_slice(content);
    out.extend(std::iter::repeat_n(0xAA, padding));
    out
}

/// A stream cut into records of `piece` bytes, then its empty closing record.
fn stream(kind: u8, id: u16, content: &[u8], piece: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, part) in content.chunks(piece).enumerate() {
        out.extend(record(kind, id, part, i % 2 == 0));
    }
    out.extend(record(kind, id, &[], true));
    out
}

fn pair(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    for len in [name.len(), value.len()] {
        if len < 128 {
            out.push(len as u8);
        } else {
            out.extend_from_slice(&(len as u32 | 1 << 31).to_be_bytes());
        }
    }
    out.extend_from_slice(name);
    out.extend_from_slice(value);
}

fn begin(id: u16, role: u16, keep_conn: bool) -> Vec<u8> {
    let r = role.to_be_bytes();
    record(BEGIN_REQUEST, id, &[r[0], r[1], u8::from(keep_conn), 0, 0, 0, 0, 0], true)
}

/// A whole responder request: BEGIN, PARAMS cut every 7 bytes, STDIN every 1000.
pub(crate) fn request_bytes(id: u16, keep_conn: bool, env: &BTreeMap<String, OsString>, body: &[u8]) -> Vec<u8> {
    let mut params = Vec::new();
    for (name, value) in env {
        pair(&mut params, name.as_bytes(), value.as_bytes());
    }
    let mut out = begin(id, 1, keep_conn);
    out.extend(stream(PARAMS, id, &params, 7));
    out.extend(stream(STDIN, id, body, 1000));
    out
}

/// Reads one record: `None` when the peer closed the connection.
/// Sends `bytes` on `conn` one byte every half second, from a thread, as a client that
/// trickles its request: each read comes well within an I/O timeout, so only a
/// whole-request deadline can end it. The thread stops at the first write that fails
/// (the process closed the connection) and answers how many bytes went out.
pub(crate) fn trickle(mut conn: UnixStream, bytes: Vec<u8>) -> std::thread::JoinHandle<usize> {
    use std::io::Write;
    std::thread::spawn(move || {
        for (i, byte) in bytes.iter().enumerate() {
            if conn.write_all(&[*byte]).is_err() {
                return i;
            }
            std::thread::sleep(std::time::Duration::from_millis(500));
        }
        bytes.len()
    })
}

pub(crate) fn read_record(conn: &mut UnixStream) -> Option<(u8, u16, Vec<u8>)> {
    let mut header = [0u8; 8];
    conn.read_exact(&mut header).ok()?;
    assert_eq!(header[0], 1, "version 1");
    let len = usize::from(u16::from_be_bytes([header[4], header[5]]));
    let mut content = vec![0u8; len + usize::from(header[6])];
    conn.read_exact(&mut content).ok()?;
    content.truncate(len);
    Some((header[1], u16::from_be_bytes([header[2], header[3]]), content))
}

/// Reads records up to the END_REQUEST of `id`: the stdout and the protocol status.
pub(crate) fn read_answer(conn: &mut UnixStream, id: u16) -> (Vec<u8>, u8) {
    let mut stdout = Vec::new();
    loop {
        let (kind, rid, content) = read_record(conn).expect("an answer before the connection closes");
        assert_eq!(rid, id, "a record of another request");
        match kind {
            STDOUT => stdout.extend(content),
            END_REQUEST => return (stdout, content[4]),
            other => panic!("unexpected record type {other}"),
        }
    }
}

fn site() -> Site {
    Site::new(&["alice", "bob"])
}
