//! Fuzzes the FastCGI record layer: the input is what a web server (or anyone able to
//! connect to the socket) sends, fed in chunks whose size the first byte picks. No input
//! may panic; every answer the connection writes must itself be well-formed records;
//! a request handed out to run keeps at most the stdin cap of its body.
#![no_main]

use libfuzzer_sys::fuzz_target;
use piggyback::gateway::fcgi::records::{Connection, Step, parse_record};

const CAP: usize = 1024;

fuzz_target!(|data: &[u8]| {
    let Some((&chunk, wire)) = data.split_first() else { return };
    let mut conn = Connection::new(CAP);
    let mut buf = Vec::new();
    for piece in wire.chunks(usize::from(chunk).max(1)) {
        buf.extend_from_slice(piece);
        loop {
            let step = match parse_record(&buf) {
                Ok(Some((record, used))) => {
                    let step = conn.feed(record);
                    buf.drain(..used);
                    step
                }
                Ok(None) => break,
                Err(_) => return,
            };
            match step {
                Err(_) => return,
                Ok(Step::Wait) => {}
                Ok(Step::Write(out) | Step::WriteAndClose(out)) => well_formed(&out),
                Ok(Step::Run(request)) => assert!(request.stdin.len() <= CAP + 1),
            }
        }
    }
});

fn well_formed(mut out: &[u8]) {
    while !out.is_empty() {
        let (_, used) = parse_record(out).expect("valid").expect("whole records");
        assert_eq!(used % 8, 0, "padded to 8");
        out = &out[used..];
    }
}
