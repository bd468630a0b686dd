//! The message queue's request files: a Maildir-style spool that never loses an
//! accepted send.
//!
//! ```text
//! PIGGYBACK_SPOOL/
//!   tmp/  being written: O_EXCL, write, fsync; garbage once older than TMP_GRACE
//!   new/  accepted: renamed from tmp/, directory fsynced; waiting to be applied
//!   cur/  claimed by a drainer (rename new/ → cur/, one renamer wins); taken again
//!         when older than the claim timeout (the drainer died)
//!   bad/  failed the self-check; kept for an operator, never applied
//! ```
//!
//! A file is `PBQ1 <payload bytes> <sha256 hex of payload>\n` followed by the payload,
//! a JSON object. A truncated or altered file fails the check as a whole.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::file_mode::{self, FileMode, Kind, Stamp};
use crate::model::NewMessage;

/// Version tag at the start of every request file.
const MAGIC: &str = "PBQ1";

/// Largest request file read back (a send's fields are far smaller).
const MAX_FILE_BYTES: u64 = 256 * 1024;

/// Files in `tmp/` older than this are left over from a writer that died.
pub const TMP_GRACE_SECS: i64 = 300;

/// A request's drain looks for dead drainers' claims and for `tmp/` leftovers at most
/// this often per spool, across all processes: a claim is stale only after
/// `CLAIM_TIMEOUT_SECS` anyway, and the look lists two folders (10 system calls) that a
/// request with nothing to do would otherwise pay every time. `piggyback drain` and
/// `msqd` always look.
pub const RECOVER_EVERY_SECS: i64 = 5;

/// The file in the spool's root whose modification time says when a request last
/// looked ([`Spool::recovery_due`]). Its name starts with a dot: never a request.
const RECOVERED_MARK: &str = ".recovered";

/// The request a file carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum FileRequest {
    Send(NewMessage),
}

impl FileRequest {
    pub fn request_id(&self) -> &str {
        match self {
            FileRequest::Send(m) => &m.request_id,
        }
    }
}

/// Encodes a request as a self-checking file body.
pub fn encode(request: &FileRequest) -> Vec<u8> {
    let payload = serde_json::to_vec(request).unwrap_or_default();
    let mut out = format!("{MAGIC} {} {}\n", payload.len(), hex(&Sha256::digest(&payload))).into_bytes();
    out.extend_from_slice(&payload);
    out
}

/// Why a file body is not a whole, untouched request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    NoHeaderLine,
    HeaderNotText,
    /// Not `<magic> <length> <sha256>`: the header as read.
    UnknownHeader(String),
    BadLength,
    /// The payload is not as long as the header says (a cut file).
    Length {
        found: usize,
        header: usize,
    },
    ChecksumMismatch,
    /// Whole and untouched, but not a request this build knows: the parser's reason.
    NotARequest(String),
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodeError::NoHeaderLine => write!(f, "no header line"),
            DecodeError::HeaderNotText => write!(f, "header is not text"),
            DecodeError::UnknownHeader(header) => write!(f, "unknown header {header:?}"),
            DecodeError::BadLength => write!(f, "bad length in header"),
            DecodeError::Length { found, header } => {
                write!(f, "payload has {found} bytes, header says {header} (truncated?)")
            }
            DecodeError::ChecksumMismatch => write!(f, "checksum mismatch"),
            DecodeError::NotARequest(why) => write!(f, "payload is not a request: {why}"),
        }
    }
}

impl std::error::Error for DecodeError {}

/// Decodes a file body; `Err` says why it is not a whole, untouched request.
pub fn decode(bytes: &[u8]) -> Result<FileRequest, DecodeError> {
    let newline = bytes.iter().position(|&b| b == b'\n').ok_or(DecodeError::NoHeaderLine)?;
    let header = std::str::from_utf8(&bytes[..newline]).map_err(|_| DecodeError::HeaderNotText)?;
    let mut parts = header.split(' ');
    let (Some(MAGIC), Some(len), Some(sum), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(DecodeError::UnknownHeader(header.to_owned()));
    };
    let len: usize = len.parse().map_err(|_| DecodeError::BadLength)?;
    let payload = &bytes[newline + 1..];
    if payload.len() != len {
        return Err(DecodeError::Length { found: payload.len(), header: len });
    }
    if hex(&Sha256::digest(payload)) != sum {
        return Err(DecodeError::ChecksumMismatch);
    }
    serde_json::from_slice(payload).map_err(|e| DecodeError::NotARequest(e.to_string()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A spool directory.
#[derive(Debug, Clone)]
pub struct Spool {
    root: PathBuf,
    /// Who may read the folders and files it creates.
    mode: FileMode,
    /// What a long-lived process remembers of `new/` between its requests.
    memory: Option<SpoolMemory>,
}

/// What a process that serves many requests (FastCGI) remembers of the spool:
/// - `new/`'s [`Stamp`] when a listing found it empty. While the stamp is unchanged
///   nothing has been added, and a request's drain costs one `stat` instead of listing
///   the folder (five system calls). Sound only for a spool on a local file system,
///   which is what docs/SCALE.md asks for (a spool per host): the stamps come from this
///   host's clock.
/// - when the next look for dead drainers' claims is due, as the `.recovered` mark last
///   said: until then the mark is not read again.
#[derive(Debug, Clone, Default)]
pub struct SpoolMemory(Arc<Mutex<Remembered>>);

#[derive(Debug, Default)]
struct Remembered {
    empty_new: Option<Stamp>,
    /// Unix seconds; 0 before the first look.
    next_recovery: i64,
}

impl SpoolMemory {
    fn lock(&self) -> std::sync::MutexGuard<'_, Remembered> {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A claimed request file: in `cur/`, owned by this process until applied or released.
#[derive(Debug)]
pub struct Claimed {
    pub name: String,
    pub request: FileRequest,
}

/// What a look at one file found.
#[derive(Debug)]
pub enum ClaimResult {
    Claimed(Claimed),
    /// Another process claimed it first.
    Gone,
    /// It failed the self-check and was moved to `bad/`.
    Bad(BadFile),
}

/// A request file moved to `bad/`, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadFile {
    pub name: String,
    pub why: Rejected,
}

/// Why a claimed file is not a request to apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejected {
    /// Not a whole, untouched request.
    Damaged(DecodeError),
    /// A request, but its id is not the file's name.
    WrongName,
}

impl std::fmt::Display for BadFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = &self.name;
        match &self.why {
            Rejected::Damaged(why) => write!(f, "request file {name} moved to bad/: {why}"),
            Rejected::WrongName => {
                write!(f, "request file {name} moved to bad/: the request id does not match the file name")
            }
        }
    }
}

impl std::error::Error for BadFile {}

/// Counts of files per directory.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpoolState {
    pub waiting: usize,
    pub claimed: usize,
    pub bad: usize,
    pub writing: usize,
}

impl Spool {
    /// A spool whose folders and files are the owner's only.
    pub fn new(root: impl Into<PathBuf>) -> Spool {
        Spool { root: root.into(), mode: FileMode::Owner, memory: None }
    }

    /// The same spool, remembering an empty `new/` in `memory` between requests.
    pub fn remembering(self, memory: &SpoolMemory) -> Spool {
        Spool { memory: Some(memory.clone()), ..self }
    }

    /// The same spool, creating folders and files with `mode`'s permissions.
    pub fn with_mode(self, mode: FileMode) -> Spool {
        Spool { mode, ..self }
    }

    /// The spool's folders and files as they are now, for `piggyback check`.
    pub fn paths(&self) -> Vec<(PathBuf, Kind)> {
        let mut paths = vec![(self.root.clone(), Kind::Dir)];
        for d in ["tmp", "new", "cur", "bad"] {
            paths.push((self.dir(d), Kind::Dir));
            for name in list(&self.dir(d)).unwrap_or_default() {
                paths.push((self.dir(d).join(name), Kind::File));
            }
        }
        paths
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The mode the spool makes its folders and files with.
    pub fn mode(&self) -> FileMode {
        self.mode
    }

    fn dir(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// Creates the four directories (and the root) when missing, with the spool's mode.
    pub fn create(&self) -> io::Result<()> {
        for d in ["tmp", "new", "cur", "bad"] {
            file_mode::create_dir_all(&self.dir(d), self.mode)?;
        }
        Ok(())
    }

    /// Makes a request durable: tmp/ with O_EXCL, write, fsync, rename into new/,
    /// fsync new/. Only after this returns is the request accepted.
    pub fn enqueue(&self, request: &FileRequest) -> io::Result<()> {
        let name = file_name(request.request_id())?;
        let tmp = self.dir("tmp").join(name);
        let mut file = match file_mode::create_new(&tmp, self.mode) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                self.create()?;
                file_mode::create_new(&tmp, self.mode)?
            }
            Err(e) => return Err(e),
        };
        let written = file.write_all(&encode(request)).and_then(|()| file.sync_all());
        drop(file);
        if let Err(e) = written.and_then(|()| fs::rename(&tmp, self.dir("new").join(name))) {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
        File::open(self.dir("new"))?.sync_all()
    }

    /// Names in `new/`, oldest first (names start with the send time), at most `max`.
    pub fn waiting(&self, max: usize) -> io::Result<Vec<String>> {
        let names = match &self.memory {
            None => list(&self.dir("new")),
            Some(memory) => self.list_new_unless_unchanged(memory),
        };
        let mut names = match names {
            Ok(names) => names,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        names.sort_unstable();
        names.truncate(max);
        Ok(names)
    }

    /// Lists `new/`, or answers empty at the cost of one `stat` when the folder is as it
    /// was when a listing last found it empty. The stamp is read before the listing, so
    /// a file added during the listing changes it after.
    fn list_new_unless_unchanged(&self, memory: &SpoolMemory) -> io::Result<Vec<String>> {
        let dir = self.dir("new");
        let stamp = Stamp::of(&fs::metadata(&dir)?);
        let mut remembered = memory.lock();
        if remembered.empty_new == Some(stamp) {
            return Ok(Vec::new());
        }
        let listed_at = SystemTime::now();
        let names = list(&dir)?;
        remembered.empty_new = (names.is_empty() && stamp.settled_at(listed_at)).then_some(stamp);
        Ok(names)
    }

    /// Claims `new/<name>` by renaming it into `cur/`, then reads and checks it.
    pub fn claim(&self, name: &str) -> io::Result<ClaimResult> {
        let name = file_name(name)?;
        let cur = self.dir("cur").join(name);
        match fs::rename(self.dir("new").join(name), &cur) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(ClaimResult::Gone),
            Err(e) => return Err(e),
        }
        let mut bytes = Vec::new();
        match File::open(&cur) {
            Ok(f) => f.take(MAX_FILE_BYTES).read_to_end(&mut bytes)?,
            // Taken again by another process after a claim timeout: theirs now.
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(ClaimResult::Gone),
            Err(e) => return Err(e),
        };
        match decode(&bytes) {
            Ok(request) if request.request_id() == name => {
                Ok(ClaimResult::Claimed(Claimed { name: name.to_string(), request }))
            }
            Ok(_) => self.reject(name, Rejected::WrongName),
            Err(why) => self.reject(name, Rejected::Damaged(why)),
        }
    }

    fn reject(&self, name: &str, why: Rejected) -> io::Result<ClaimResult> {
        self.set_aside(name)?;
        Ok(ClaimResult::Bad(BadFile { name: name.to_owned(), why }))
    }

    /// Moves a claimed file to `bad/`, where an operator can look at it.
    pub fn set_aside(&self, name: &str) -> io::Result<()> {
        let name = file_name(name)?;
        file_mode::create_dir_all(&self.dir("bad"), self.mode)?;
        fs::rename(self.dir("cur").join(name), self.dir("bad").join(name))
    }

    /// Forgets an applied request (its effect is committed; a replay would be a no-op).
    pub fn done(&self, name: &str) -> io::Result<()> {
        match fs::remove_file(self.dir("cur").join(file_name(name)?)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Gives a claimed request back to `new/` (it could not be applied now).
    pub fn release(&self, name: &str) -> io::Result<()> {
        let name = file_name(name)?;
        let cur = self.dir("cur").join(name);
        // Dated long ago: a file its sender gave up on is for the next drain at once
        // (see `settled`). Should that fail, it is only taken a moment later.
        let _ = File::open(&cur).and_then(|f| f.set_modified(SystemTime::UNIX_EPOCH));
        fs::rename(cur, self.dir("new").join(name))
    }

    /// Whether `new/<name>` was written at least `grace` ago, or was given back by a
    /// claimer ([`Spool::release`]): a younger one belongs to a sender about to claim
    /// it. One `stat`; a file gone meanwhile counts as settled (its claim finds it gone).
    pub fn settled(&self, name: &str, grace: std::time::Duration) -> bool {
        let Ok(name) = file_name(name) else { return true };
        match fs::metadata(self.dir("new").join(name)).and_then(|m| m.modified()) {
            Ok(written) => written.elapsed().is_ok_and(|age| age >= grace),
            Err(_) => true,
        }
    }

    /// Whether a request's drain should [`Spool::recover`] now: at most once per
    /// [`RECOVER_EVERY_SECS`] across the processes that share the spool, told by the
    /// mark file's modification time, which this sets when it says yes. When the mark
    /// cannot be read or set (a spool this user may not write), always yes.
    /// A process that remembers ([`SpoolMemory`]) reads the mark only when the period
    /// it last saw there is over.
    pub fn recovery_due(&self, now: i64) -> bool {
        let memory = self.memory.as_ref().map(SpoolMemory::lock);
        if memory.as_ref().is_some_and(|m| (1..=RECOVER_EVERY_SECS).contains(&(m.next_recovery - now))) {
            return false;
        }
        let mark = self.root.join(RECOVERED_MARK);
        let (due, next) = match fs::metadata(&mark) {
            Ok(m) if (0..RECOVER_EVERY_SECS).contains(&(now - m.mtime())) => (false, m.mtime() + RECOVER_EVERY_SECS),
            _ => {
                let _ = file_mode::touch(&mark, self.mode);
                (true, now + RECOVER_EVERY_SECS)
            }
        };
        if let Some(mut memory) = memory {
            memory.next_recovery = next;
        }
        due
    }

    /// Moves claims older than `stale_after` seconds back to `new/` (their drainer died)
    /// and removes `tmp/` files older than [`TMP_GRACE_SECS`]. Returns how many claims.
    pub fn recover(&self, stale_after: i64, now: i64) -> io::Result<usize> {
        let mut taken = 0;
        // rename() sets the inode's change time, so ctime is the moment of the claim.
        for name in list_or_empty(&self.dir("cur"))? {
            let path = self.dir("cur").join(&name);
            if let Ok(m) = fs::metadata(&path)
                && now - m.ctime() >= stale_after
                && fs::rename(&path, self.dir("new").join(&name)).is_ok()
            {
                taken += 1;
            }
        }
        for name in list_or_empty(&self.dir("tmp"))? {
            let path = self.dir("tmp").join(&name);
            if let Ok(m) = fs::metadata(&path)
                && now - m.mtime() >= TMP_GRACE_SECS
            {
                let _ = fs::remove_file(&path);
            }
        }
        Ok(taken)
    }

    pub fn state(&self) -> io::Result<SpoolState> {
        let count = |d: &str| list_or_empty(&self.dir(d)).map(|v| v.len());
        Ok(SpoolState { waiting: count("new")?, claimed: count("cur")?, bad: count("bad")?, writing: count("tmp")? })
    }
}

/// A request id is a file name: refuse anything that could walk out of the spool.
fn file_name(name: &str) -> io::Result<&str> {
    if name.is_empty() || name.len() > 128 || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
    {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("not a request file name: {name:?}")));
    }
    if name.starts_with('.') {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "request file names do not start with a dot"));
    }
    Ok(name)
}

fn list(dir: &Path) -> io::Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in fs::read_dir(dir)? {
        if let Ok(name) = entry?.file_name().into_string()
            && !name.starts_with('.')
        {
            names.push(name);
        }
    }
    Ok(names)
}

fn list_or_empty(dir: &Path) -> io::Result<Vec<String>> {
    match list(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::model::{MessageKind, UserId};

    fn request(id: &str) -> FileRequest {
        FileRequest::Send(NewMessage {
            request_id: id.into(),
            from: UserId(1),
            to: UserId(2),
            subject: "午饭".into(),
            body: "明天见".into(),
            kind: MessageKind::Note,
            idempotency_key: None,
            sent_at: 1_700_000_000,
        })
    }

    #[test]
    fn encode_decode_round_trip() {
        let r = request("abc.1.2");
        assert_eq!(decode(&encode(&r)), Ok(r));
    }

    /// The payload's shape is the `PBQ1` format: files written by earlier builds still
    /// apply, and a field nobody knows is refused.
    #[test]
    fn the_payload_is_one_flat_object_with_its_type() {
        let payload = r#"{"type":"send","request_id":"abc.1.2","from":1,"to":2,"subject":"午饭","body":"明天见","kind":"note","idempotency_key":null,"sent_at":1700000000}"#;
        let file = |payload: &str| {
            let mut out = format!("{MAGIC} {} {}\n", payload.len(), hex(&Sha256::digest(payload))).into_bytes();
            out.extend_from_slice(payload.as_bytes());
            out
        };
        assert_eq!(decode(&file(payload)), Ok(request("abc.1.2")));
        assert_eq!(serde_json::to_string(&request("abc.1.2")).unwrap(), payload);
        let extra = payload.replace(r#""sent_at""#, r#""extra":1,"sent_at""#);
        assert!(matches!(decode(&file(&extra)), Err(DecodeError::NotARequest(_))), "unknown fields are refused");
    }

    #[test]
    fn truncation_and_tampering_are_detected() {
        let bytes = encode(&request("abc.1.2"));
        for cut in [0, 3, 10, bytes.len() - 1] {
            assert!(decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut flipped = bytes.clone();
        let last = flipped.len() - 2;
        flipped[last] ^= 1;
        assert_eq!(decode(&flipped), Err(DecodeError::ChecksumMismatch));
        let mut longer = bytes.clone();
        longer.push(b' ');
        assert!(matches!(decode(&longer), Err(DecodeError::Length { .. })));
    }

    #[test]
    fn names_cannot_escape() {
        for bad in ["", "../x", "a/b", ".hidden", "a b"] {
            assert!(file_name(bad).is_err(), "{bad}");
        }
        assert!(file_name("18ebca5f309cc941.199c.4a377af99fb708b0").is_ok());
    }

    #[test]
    fn enqueue_claim_done() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::new(dir.path().join("spool"));
        spool.enqueue(&request("a.1.1")).unwrap();
        assert_eq!(spool.state().unwrap(), SpoolState { waiting: 1, ..Default::default() });
        assert_eq!(spool.waiting(10).unwrap(), vec!["a.1.1".to_string()]);
        let ClaimResult::Claimed(c) = spool.claim("a.1.1").unwrap() else { panic!("not claimed") };
        assert!(matches!(spool.claim("a.1.1").unwrap(), ClaimResult::Gone));
        assert_eq!(spool.state().unwrap().claimed, 1);
        spool.done(&c.name).unwrap();
        assert_eq!(spool.state().unwrap(), SpoolState::default());
    }

    #[test]
    fn request_files_and_folders_are_the_owners_only_or_the_groups() {
        use std::os::unix::fs::PermissionsExt;
        let bits = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        let dir = tempfile::tempdir().unwrap();
        for (mode, file, folder) in [(FileMode::Owner, 0o600, 0o700), (FileMode::Group, 0o660, 0o2770)] {
            let spool = Spool::new(dir.path().join(format!("{mode:?}"))).with_mode(mode);
            spool.enqueue(&request("a.1.1")).unwrap();
            assert_eq!(bits(&spool.root().join("new/a.1.1")), file, "{mode:?}");
            for d in ["", "tmp", "new", "cur", "bad"] {
                assert_eq!(bits(&spool.root().join(d)), folder, "{mode:?} {d}");
            }
        }
    }

    #[test]
    fn corrupt_files_go_to_bad() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::new(dir.path());
        spool.create().unwrap();
        let bytes = encode(&request("b.1.1"));
        fs::write(dir.path().join("new/b.1.1"), &bytes[..bytes.len() / 2]).unwrap();
        let ClaimResult::Bad(bad) = spool.claim("b.1.1").unwrap() else { panic!("not set aside") };
        assert_eq!(bad.name, "b.1.1");
        assert!(matches!(bad.why, Rejected::Damaged(DecodeError::Length { .. })), "{bad}");
        assert_eq!(spool.state().unwrap(), SpoolState { bad: 1, ..Default::default() });
    }

    #[test]
    fn stale_claims_are_taken_again() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::new(dir.path());
        spool.enqueue(&request("c.1.1")).unwrap();
        let ClaimResult::Claimed(_) = spool.claim("c.1.1").unwrap() else { panic!("not claimed") };
        let now = crate::model::now();
        assert_eq!(spool.recover(60, now).unwrap(), 0, "a fresh claim stays");
        assert_eq!(spool.recover(60, now + 61).unwrap(), 1);
        assert_eq!(spool.waiting(10).unwrap(), vec!["c.1.1".to_string()]);
    }

    /// A made spool in a new folder, as a FastCGI process sees it, and its memory.
    fn remembering_spool() -> (tempfile::TempDir, SpoolMemory, Spool) {
        let dir = tempfile::tempdir().unwrap();
        let memory = SpoolMemory::default();
        let spool = Spool::new(dir.path()).remembering(&memory);
        spool.create().unwrap();
        (dir, memory, spool)
    }

    /// Sets a folder's modification time, as a clock that went on would have left it.
    fn set_mtime(dir: &Path, when: SystemTime) {
        File::open(dir).unwrap().set_times(fs::FileTimes::new().set_modified(when)).unwrap();
    }

    #[test]
    fn a_request_recovers_at_most_once_per_period_across_processes() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::new(dir.path());
        spool.create().unwrap();
        let now = crate::model::now();
        assert!(spool.recovery_due(now), "no mark yet: due");
        assert!(!spool.recovery_due(now), "just recovered");
        // Another process's view of the same spool: the mark is in the folder, not here.
        assert!(!Spool::new(dir.path()).recovery_due(now + RECOVER_EVERY_SECS - 1));
        assert!(spool.recovery_due(now + RECOVER_EVERY_SECS), "the period is over");
        // A mark from the future (the clock was set back) does not stop recovery for long.
        File::options()
            .write(true)
            .open(dir.path().join(RECOVERED_MARK))
            .unwrap()
            .set_modified(SystemTime::now() + Duration::from_secs(3600))
            .unwrap();
        assert!(spool.recovery_due(crate::model::now()));
    }

    #[test]
    fn a_remembering_process_reads_the_mark_only_when_its_period_is_over() {
        let (dir, _memory, spool) = remembering_spool();
        let now = crate::model::now();
        assert!(spool.recovery_due(now));
        // The mark is gone: only a process that trusts its memory does not notice.
        fs::remove_file(dir.path().join(RECOVERED_MARK)).unwrap();
        assert!(!spool.recovery_due(now + 1), "remembered: the mark is not read");
        assert!(Spool::new(dir.path()).recovery_due(now + 1), "no memory: no mark, so due");
        assert!(spool.recovery_due(now + RECOVER_EVERY_SECS + 1), "the period is over");
        assert!(!spool.recovery_due(now + RECOVER_EVERY_SECS + 2));
        assert!(spool.recovery_due(now - 3600), "a clock set back does not put recovery off");
    }

    #[test]
    fn an_unreadable_mark_means_recovery_is_due_every_time() {
        let dir = tempfile::tempdir().unwrap();
        // The mark's place is taken by a folder: it cannot be opened for writing.
        fs::create_dir_all(dir.path().join(RECOVERED_MARK)).unwrap();
        set_mtime(&dir.path().join(RECOVERED_MARK), SystemTime::now());
        let spool = Spool::new(dir.path());
        let now = crate::model::now();
        assert!(spool.recovery_due(now + RECOVER_EVERY_SECS));
        assert!(spool.recovery_due(now + RECOVER_EVERY_SECS));
    }

    #[test]
    fn a_remembered_empty_new_folder_is_not_listed_again_until_it_changes() {
        let (dir, memory, spool) = remembering_spool();
        let before = SystemTime::now() - Duration::from_secs(10);
        set_mtime(&spool.dir("new"), before);
        assert!(spool.waiting(10).unwrap().is_empty());
        let stamp = Stamp::of(&fs::metadata(spool.dir("new")).unwrap());
        assert_eq!(memory.lock().empty_new, Some(stamp));
        // A file slipped in, and the memory told it saw the folder so: only a process
        // that trusts its memory misses the file, which shows the memory is used.
        fs::write(spool.dir("new").join("x.1.1"), b"").unwrap();
        memory.lock().empty_new = Some(Stamp::of(&fs::metadata(spool.dir("new")).unwrap()));
        assert!(spool.waiting(10).unwrap().is_empty(), "remembered empty");
        assert_eq!(Spool::new(dir.path()).waiting(10).unwrap(), vec!["x.1.1".to_string()], "no memory: listed");
        fs::remove_file(spool.dir("new").join("x.1.1")).unwrap();
        // A real send changes the stamp, and the next look lists the folder.
        spool.enqueue(&request("c.1.1")).unwrap();
        assert_eq!(spool.waiting(10).unwrap(), vec!["c.1.1".to_string()]);
    }

    #[test]
    fn an_empty_listing_of_a_folder_changed_a_moment_ago_is_not_remembered() {
        let (_dir, memory, spool) = remembering_spool();
        // new/ was just made: a send landing within the clock's grain could keep its stamp.
        assert!(spool.waiting(10).unwrap().is_empty());
        assert_eq!(memory.lock().empty_new, None);
        spool.enqueue(&request("c.1.1")).unwrap();
        assert_eq!(spool.waiting(10).unwrap(), vec!["c.1.1".to_string()]);
        // A listing that found files is not remembered either.
        assert_eq!(memory.lock().empty_new, None);
    }
}
