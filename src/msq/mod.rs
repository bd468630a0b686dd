//! The message queue (the patent's message queue between the CGI programs and the
//! message database), as the spool's front door: it makes sends durable and applies
//! them, and does nothing else. Every other operation calls [`Store`] directly.
//!
//! A send is made durable first, as a request file in the spool ([`spool`]);
//! only then is it accepted. The sender applies its own file at once (201), and when
//! the database is busy or read-only the file waits for the next drain (202). Every
//! CGI invocation drains a bounded batch, so nothing waits long even without
//! `piggyback msqd`. Applying is idempotent: the request id is UNIQUE in the database,
//! so a replay after a crash stores nothing twice.

pub mod spool;

use std::cell::Cell;
use std::io;
use std::time::Duration;

use crate::message_store::{BUSY_TIMEOUT, Limit, Refusal, SEND_LIMITS_FILE, Store, StoreError, Stored};
use crate::model::{MessageId, NewMessage};
use spool::{ClaimResult, Claimed, FileRequest, Spool};

/// Claims older than this many seconds belong to a drainer that died.
pub const CLAIM_TIMEOUT_SECS: i64 = 30;

/// Request files one CGI invocation applies at most before answering.
pub const CGI_DRAIN_BATCH: usize = 32;

/// How long a CGI invocation's drain waits for the write lock: whoever holds it is
/// draining or claiming already, so the request need not wait the full busy timeout.
pub const CGI_DRAIN_PATIENCE: Duration = Duration::from_millis(100);

/// How long a send waits for the write lock to store its durable file at once (201)
/// before answering 202 and leaving the file to the next drain.
pub const SEND_PATIENCE: Duration = Duration::from_millis(250);

/// A request's drain leaves a request file written less than this ago to its sender,
/// which claims it a few milliseconds after making it durable: taken by a reader
/// instead, the sender waited for that reader's commit and the reader wrote on a read
/// page (under load, a third of the sends were taken so). A file its sender gave up on
/// (202) is dated back ([`Spool::release`]) and taken by the next request; one whose
/// sender died before claiming it, by the first request after this grace.
pub const SENDER_GRACE: Duration = Duration::from_millis(100);

/// How long announcing (`site_messages`' claim and an acknowledgement) waits for the
/// write lock; past it the answer leaves `site_messages` out and the next one announces.
/// Every read page waits at most this (and [`CGI_DRAIN_PATIENCE`]) for a lock.
pub const ANNOUNCE_PATIENCE: Duration = Duration::from_millis(250);

/// What became of an accepted send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendOutcome {
    /// In the database (now, or before: the same idempotency key).
    Stored { request_id: String, message: MessageId },
    /// Durable in the spool; a later drain stores it.
    Queued { request_id: String },
    /// Not stored: the sender or the recipient was removed after the send was checked.
    Dropped { request_id: String },
}

impl SendOutcome {
    pub fn request_id(&self) -> &str {
        match self {
            SendOutcome::Stored { request_id, .. }
            | SendOutcome::Queued { request_id }
            | SendOutcome::Dropped { request_id } => request_id,
        }
    }
}

/// Why a request failed.
#[derive(Debug)]
pub enum QueueError {
    /// The spool cannot be written: nothing was accepted.
    Spool(io::Error),
    Store(StoreError),
}

impl std::fmt::Display for QueueError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            QueueError::Spool(e) => write!(f, "the request spool cannot be written: {e}"),
            QueueError::Store(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for QueueError {}

impl From<StoreError> for QueueError {
    fn from(e: StoreError) -> QueueError {
        QueueError::Store(e)
    }
}

/// What one drain did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DrainReport {
    /// Requests that stored a message.
    pub applied: usize,
    /// Requests whose message was already stored (a replay, or a repeated idempotency key).
    pub duplicates: usize,
    /// Claims of dead drainers taken back.
    pub reclaimed: usize,
    /// One line for each file moved to `bad/`.
    pub bad: Vec<String>,
    /// One line for each request dropped because its sender or recipient was removed
    /// (`piggyback user remove`): deleted from the spool, not an error.
    pub dropped: Vec<String>,
    /// Why the drain stopped early, leaving files waiting: an error of the environment
    /// met after a file was set aside, with what the operator should do.
    pub stopped: Option<String>,
}

impl DrainReport {
    /// Counts one applied request file.
    fn count(&mut self, name: &str, message: &NewMessage, stored: &Stored) {
        match stored {
            Stored::Inserted(_) => self.applied += 1,
            Stored::Already(_) => self.duplicates += 1,
            Stored::Dropped => self.dropped.push(format!(
                "request file {name} dropped: user {} or user {} has been removed",
                message.from.0, message.to.0
            )),
        }
    }

    fn add(&mut self, other: DrainReport) {
        self.applied += other.applied;
        self.duplicates += other.duplicates;
        self.reclaimed += other.reclaimed;
        self.bad.extend(other.bad);
        self.dropped.extend(other.dropped);
        self.stopped = self.stopped.take().or(other.stopped);
    }
}

/// The log line of a drain an error of the environment stopped: the files wait.
pub fn stopped_line(e: &StoreError) -> String {
    format!(
        "drain stopped, request files left waiting in the spool: {e}; once the cause is removed, \
         the next drain (any request, `piggyback drain` or msqd) applies them"
    )
}

/// The queue in front of one open store.
pub struct Queue<'a> {
    store: &'a Store,
    spool: Spool,
    /// Whether [`Queue::drain_for_request`] has drained already: a request drains once.
    drained: Cell<bool>,
}

impl<'a> Queue<'a> {
    pub fn new(store: &'a Store, spool: Spool) -> Queue<'a> {
        Queue { store, spool, drained: Cell::new(false) }
    }

    pub fn store(&self) -> &'a Store {
        self.store
    }

    pub fn spool(&self) -> &Spool {
        &self.spool
    }

    /// Checks and counts a send's `limits` before its request file is written, where a
    /// held write lock of the database does not stop them (on SQLite the spool's own
    /// limits file; see `message_store::send_limits`). A failure to count is the
    /// spool's: nothing was accepted.
    pub fn admit_send(&self, limits: &[Limit], now: i64) -> Result<Result<(), Refusal>, QueueError> {
        let counter = self.spool.root().join(SEND_LIMITS_FILE);
        let mode = self.spool.mode();
        match self.store.take_send_limits(&counter, mode, limits, now) {
            // A spool removed since: made again, as the next request file would make it.
            Err(_) if !self.spool.root().is_dir() => {
                self.spool.create().map_err(QueueError::Spool)?;
                self.store.take_send_limits(&counter, mode, limits, now)
            }
            taken => taken,
        }
        .map_err(|e| limits_error(self.store, e))
    }

    /// Gives back what [`Queue::admit_send`] counted, for a send that was not accepted.
    pub fn refund_send(&self, limits: &[Limit]) -> Result<(), QueueError> {
        let counter = self.spool.root().join(SEND_LIMITS_FILE);
        self.store.refund_send_limits(&counter, self.spool.mode(), limits).map_err(|e| limits_error(self.store, e))
    }

    /// Sends one message: durable request file first, then applied at once when the
    /// database allows (`Stored`), else left for the next drain (`Queued`).
    /// `message.request_id` names its request file: make it with [`new_request_id`].
    pub fn send(&self, message: NewMessage) -> Result<SendOutcome, QueueError> {
        let request_id = message.request_id.clone();
        let message = FileRequest::Send(message);
        self.spool.enqueue(&message).map_err(QueueError::Spool)?;
        let FileRequest::Send(message) = message;
        // Accepted. From here on a failure only delays the message.
        let queued = || SendOutcome::Queued { request_id: request_id.clone() };
        let claimed = match self.spool.claim(&request_id) {
            Ok(ClaimResult::Claimed(c)) => c,
            // A concurrent drain (msqd, another request) took it and is storing it now:
            // wait a moment for its commit, so the usual answer is still 201.
            Ok(ClaimResult::Gone) => return Ok(self.stored_soon(&message).unwrap_or_else(queued)),
            Ok(ClaimResult::Bad(bad)) => return Err(QueueError::Spool(io::Error::other(bad))),
            Err(_) => return Ok(queued()),
        };
        let applied = {
            // The file is durable: waiting long for the lock would only delay the answer.
            let _patience = self.store.patience(SEND_PATIENCE);
            self.store.store_message(&message)
        };
        match applied {
            Ok(stored) => {
                // Committed; if the unlink fails, the replay is a no-op.
                let _ = self.spool.done(&claimed.name);
                Ok(match stored.id() {
                    Some(message) => SendOutcome::Stored { request_id, message },
                    None => SendOutcome::Dropped { request_id },
                })
            }
            Err(_) => {
                // Busy, read-only or worse: the next drain (or a claim timeout) retries.
                let _ = self.spool.release(&claimed.name);
                Ok(queued())
            }
        }
    }

    /// The outcome of a send another process is applying: `Stored` once its commit is
    /// visible, within about 50 ms; `None` when it takes longer.
    fn stored_soon(&self, message: &NewMessage) -> Option<SendOutcome> {
        for _ in 0..10 {
            if let Ok(Some(id)) =
                self.store.stored_for(&message.request_id, message.from, message.idempotency_key.as_deref())
            {
                return Some(SendOutcome::Stored { request_id: message.request_id.clone(), message: id });
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        None
    }

    /// Applies at most `max` waiting request files, oldest first, in one transaction,
    /// after taking back claims older than `stale_after` seconds at `now`, waiting at
    /// most `patience` for the write lock. With nothing waiting it touches only the spool.
    pub fn drain(&self, max: usize, stale_after: i64, patience: Duration, now: i64) -> Result<DrainReport, QueueError> {
        let reclaimed = self.spool.recover(stale_after, now).map_err(QueueError::Spool)?;
        self.apply_waiting(max, patience, reclaimed, None)
    }

    /// A request's drain, before its `site_messages`: a batch of [`CGI_DRAIN_BATCH`],
    /// waiting at most [`CGI_DRAIN_PATIENCE`] for the write lock; dead drainers' claims
    /// are taken back only when [`Spool::recovery_due`] says so. Once per request: after
    /// a drain that succeeded (a handler's, as `messages/status` drains before it
    /// decides), the gateway's own is a no-op instead of looking at the spool again.
    pub fn drain_for_request(&self, now: i64) -> Result<DrainReport, QueueError> {
        if self.drained.get() {
            return Ok(DrainReport::default());
        }
        let reclaimed = if self.spool.recovery_due(now) {
            self.spool.recover(CLAIM_TIMEOUT_SECS, now).map_err(QueueError::Spool)?
        } else {
            0
        };
        let report = self.apply_waiting(CGI_DRAIN_BATCH, CGI_DRAIN_PATIENCE, reclaimed, Some(SENDER_GRACE))?;
        self.drained.set(true);
        Ok(report)
    }

    /// Applies what waits; with a `grace`, none of the files made within it.
    fn apply_waiting(
        &self,
        max: usize,
        patience: Duration,
        reclaimed: usize,
        grace: Option<Duration>,
    ) -> Result<DrainReport, QueueError> {
        let mut report = DrainReport { reclaimed, ..Default::default() };
        let mut names = self.spool.waiting(max).map_err(QueueError::Spool)?;
        if let Some(grace) = grace {
            names.retain(|name| self.spool.settled(name, grace));
        }
        let mut claimed = Vec::with_capacity(names.len());
        for name in names {
            match self.spool.claim(&name).map_err(QueueError::Spool)? {
                ClaimResult::Claimed(c) => claimed.push(c),
                ClaimResult::Gone => {}
                ClaimResult::Bad(bad) => report.bad.push(bad.to_string()),
            }
        }
        if claimed.is_empty() {
            return Ok(report);
        }
        let messages: Vec<NewMessage> = claimed.iter().map(|c| message_of(&c.request).clone()).collect();
        let applied = {
            let _patience = self.store.patience(patience);
            self.store.store_messages(&messages)
        };
        match applied {
            Ok(stored) => {
                for ((c, m), s) in claimed.iter().zip(&messages).zip(&stored) {
                    let _ = self.spool.done(&c.name);
                    report.count(&c.name, m, s);
                }
            }
            // Only a refusal of some file's content is worth looking for that file.
            Err(e) if e.is_refusal() => report.add(self.apply_one_by_one(claimed)),
            Err(e) => {
                for c in &claimed {
                    let _ = self.spool.release(&c.name);
                }
                return Err(QueueError::Store(e));
            }
        }
        Ok(report)
    }

    /// Drains until nothing waits (the command line and `msqd`).
    pub fn drain_all(&self, stale_after: i64, now: i64) -> Result<DrainReport, QueueError> {
        let mut total = DrainReport::default();
        loop {
            let report = self.drain(256, stale_after, BUSY_TIMEOUT, now)?;
            let progress = report.applied + report.duplicates + report.bad.len() + report.dropped.len();
            let stopped = report.stopped.is_some();
            total.add(report);
            if progress == 0 || stopped {
                return Ok(total);
            }
        }
    }

    /// A batch the database refused for some file's content: find that file, and set it
    /// aside so it cannot block the queue. Only a file the database refuses for its
    /// content ([`StoreError::is_refusal`]: a constraint, a size, an encoding) goes to
    /// `bad/`; any other error (full disk, I/O, corruption, out of memory, a lost
    /// connection, read-only, busy, and any kind not known yet) stops here and leaves
    /// this file and the rest in the spool for the next drain (`stopped` says why,
    /// except for a busy database, which is only a wait).
    fn apply_one_by_one(&self, claimed: Vec<Claimed>) -> DrainReport {
        let mut report = DrainReport::default();
        let mut claimed = claimed.into_iter();
        for c in claimed.by_ref() {
            match self.store.store_message(message_of(&c.request)) {
                Ok(stored) => {
                    let _ = self.spool.done(&c.name);
                    report.count(&c.name, message_of(&c.request), &stored);
                }
                Err(e) if e.is_refusal() => match self.spool.set_aside(&c.name) {
                    Ok(()) => report.bad.push(format!("request file {} moved to bad/: {e}", c.name)),
                    Err(_) => {
                        let _ = self.spool.release(&c.name);
                    }
                },
                Err(e) => {
                    let _ = self.spool.release(&c.name);
                    if !matches!(e, StoreError::Busy) {
                        report.stopped = Some(stopped_line(&e));
                    }
                    break;
                }
            }
        }
        for c in claimed {
            let _ = self.spool.release(&c.name);
        }
        report
    }
}

fn message_of(request: &FileRequest) -> &NewMessage {
    match request {
        FileRequest::Send(m) => m,
    }
}

/// A failure of the limits' count: on SQLite the spool's limits file could not be
/// written (an unwritable or full spool), so nothing can be accepted; on PostgreSQL the
/// database's own error.
fn limits_error(store: &Store, e: StoreError) -> QueueError {
    match (store, e) {
        (Store::Sqlite(_), e) if !matches!(e, StoreError::Busy) => {
            QueueError::Spool(io::Error::other(format!("the send limits cannot be counted: {e}")))
        }
        (_, e) => QueueError::Store(e),
    }
}

/// A fresh request id: time, process and 64 random bits, unique across processes,
/// usable as a file name, and sorting by time.
pub fn new_request_id() -> String {
    let mut random = [0u8; 8];
    // Without randomness the time and pid still make a collision very unlikely.
    let _ = getrandom::fill(&mut random);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    format!("{nanos:020x}.{:x}.{:016x}", std::process::id(), u64::from_le_bytes(random))
}

#[cfg(test)]
mod tests {
    //! Every crash point of the file protocol ends with the message stored exactly once
    //! after the next drain.
    use super::*;
    use crate::model::{MessageKind, UserId, now};
    use crate::msq::spool::{SpoolState, encode};

    struct Fixture {
        _dir: tempfile::TempDir,
        store: Store,
        spool: Spool,
        alice: UserId,
        bob: UserId,
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::init(&dir.path().join("pb.db")).unwrap();
        let alice =
            store.add_user(&crate::names::UserName::parse("alice").unwrap(), "Alice", None, now()).unwrap().unwrap();
        let bob = store.add_user(&crate::names::UserName::parse("bob").unwrap(), "Bob", None, now()).unwrap().unwrap();
        let spool = Spool::new(dir.path().join("spool"));
        spool.create().unwrap();
        Fixture { _dir: dir, store, spool, alice, bob }
    }

    fn message(f: &Fixture, id: &str) -> NewMessage {
        NewMessage {
            request_id: id.into(),
            from: f.bob,
            to: f.alice,
            subject: "hi".into(),
            body: "there".into(),
            kind: MessageKind::Note,
            idempotency_key: None,
            sent_at: now(),
        }
    }

    fn stored(f: &Fixture) -> i64 {
        f.store.counters(f.alice).unwrap().new
    }

    #[test]
    fn send_stores_at_once_and_leaves_no_file() {
        let f = fixture();
        let queue = Queue::new(&f.store, f.spool.clone());
        let send = NewMessage {
            request_id: new_request_id(),
            from: f.bob,
            to: f.alice,
            subject: "s".into(),
            body: "b".into(),
            kind: MessageKind::Note,
            idempotency_key: Some("k1".into()),
            sent_at: now(),
        };
        let SendOutcome::Stored { message: first, .. } = queue.send(send.clone()).unwrap() else { panic!("queued") };
        let retry = NewMessage { request_id: new_request_id(), ..send };
        let SendOutcome::Stored { message: again, .. } = queue.send(retry).unwrap() else { panic!("queued") };
        assert_eq!(first, again, "the same idempotency key never makes a second message");
        assert_eq!(stored(&f), 1);
        assert_eq!(f.spool.state().unwrap(), SpoolState::default());
    }

    #[test]
    fn crash_with_the_file_only_in_tmp_accepts_nothing_and_is_cleaned() {
        let f = fixture();
        let m = message(&f, "00000000000000000001.1.1");
        std::fs::write(f.spool.root().join("tmp").join(&m.request_id), encode(&FileRequest::Send(m.clone()))).unwrap();
        let queue = Queue::new(&f.store, f.spool.clone());
        assert_eq!(queue.drain_all(CLAIM_TIMEOUT_SECS, now()).unwrap().applied, 0);
        assert_eq!(stored(&f), 0, "never accepted, never stored");
        f.spool.recover(CLAIM_TIMEOUT_SECS, now() + crate::msq::spool::TMP_GRACE_SECS).unwrap();
        assert_eq!(f.spool.state().unwrap(), SpoolState::default());
    }

    #[test]
    fn crash_after_rename_before_apply_is_applied_by_the_next_drain() {
        let f = fixture();
        let m = message(&f, "00000000000000000002.1.1");
        f.spool.enqueue(&FileRequest::Send(m.clone())).unwrap();
        let report = Queue::new(&f.store, f.spool.clone()).drain_all(CLAIM_TIMEOUT_SECS, now()).unwrap();
        assert_eq!((report.applied, report.duplicates), (1, 0));
        assert_eq!(stored(&f), 1);
        assert_eq!(f.spool.state().unwrap(), SpoolState::default());
    }

    #[test]
    fn crash_after_claim_before_apply_is_taken_back_after_the_timeout() {
        let f = fixture();
        let m = message(&f, "00000000000000000003.1.1");
        f.spool.enqueue(&FileRequest::Send(m.clone())).unwrap();
        let ClaimResult::Claimed(_) = f.spool.claim(&m.request_id).unwrap() else { panic!("not claimed") };
        let queue = Queue::new(&f.store, f.spool.clone());
        assert_eq!(queue.drain_all(CLAIM_TIMEOUT_SECS, now()).unwrap().applied, 0, "a live claim is left alone");
        let report = queue.drain_all(0, now()).unwrap();
        assert_eq!((report.reclaimed, report.applied), (1, 1));
        assert_eq!(stored(&f), 1);
        assert_eq!(f.spool.state().unwrap(), SpoolState::default());
    }

    #[test]
    fn crash_after_commit_before_unlink_replays_as_a_no_op() {
        let f = fixture();
        let m = message(&f, "00000000000000000004.1.1");
        f.spool.enqueue(&FileRequest::Send(m.clone())).unwrap();
        let ClaimResult::Claimed(_) = f.spool.claim(&m.request_id).unwrap() else { panic!("not claimed") };
        f.store.store_message(&m).unwrap();
        let report = Queue::new(&f.store, f.spool.clone()).drain_all(0, now()).unwrap();
        assert_eq!((report.applied, report.duplicates), (0, 1));
        assert_eq!(stored(&f), 1, "stored exactly once");
        assert_eq!(f.spool.state().unwrap(), SpoolState::default());
    }

    #[test]
    fn a_request_the_database_refuses_is_set_aside_without_blocking_others() {
        let f = fixture();
        let good = message(&f, "00000000000000000005.1.1");
        let mut orphan = message(&f, "00000000000000000006.1.1");
        orphan.to = UserId(999);
        f.spool.enqueue(&FileRequest::Send(orphan.clone())).unwrap();
        f.spool.enqueue(&FileRequest::Send(good.clone())).unwrap();
        let report = Queue::new(&f.store, f.spool.clone()).drain_all(0, now()).unwrap();
        assert_eq!(report.applied, 1);
        assert_eq!(report.bad.len(), 1, "{report:?}");
        assert_eq!(stored(&f), 1);
        assert_eq!(f.spool.state().unwrap(), SpoolState { bad: 1, ..Default::default() });
    }

    #[test]
    fn a_database_that_cannot_write_now_leaves_every_file_waiting() {
        let f = fixture();
        let orphan = NewMessage { to: UserId(999), ..message(&f, "00000000000000000007.1.1") };
        f.spool.enqueue(&FileRequest::Send(orphan)).unwrap();
        f.spool.enqueue(&FileRequest::Send(message(&f, "00000000000000000008.1.1"))).unwrap();
        // Read-only, as a full disk or a chmod makes it: the environment's fault, not
        // the files'. Even the file the database would refuse is kept, for now.
        let ro = Store::open(&f._dir.path().join("pb.db")).unwrap();
        ro.set_query_only().unwrap();
        let queue = Queue::new(&ro, f.spool.clone());
        assert!(matches!(queue.drain_all(0, now()), Err(QueueError::Store(StoreError::ReadOnly))));
        assert_eq!(f.spool.state().unwrap(), SpoolState { waiting: 2, ..Default::default() });
        let report = Queue::new(&f.store, f.spool.clone()).drain_all(0, now()).unwrap();
        assert_eq!((report.applied, report.bad.len()), (1, 1), "writable again: one lands, one is bad");
    }

    /// A request drains once: the gateway's drain after a handler's is a no-op, and the
    /// next request (its own queue) applies what came meanwhile.
    /// Dates the files in `new/` back past [`SENDER_GRACE`], as a sender that died
    /// before claiming its file would have left it.
    fn settle(spool: &Spool) {
        let long_ago = std::time::SystemTime::now() - Duration::from_secs(60);
        for name in spool.waiting(100).unwrap() {
            let file = std::fs::File::open(spool.root().join("new").join(name)).unwrap();
            file.set_modified(long_ago).unwrap();
        }
    }

    #[test]
    fn a_request_leaves_a_file_just_written_to_its_sender_and_takes_one_its_sender_gave_up() {
        let f = fixture();
        let queue = || Queue::new(&f.store, f.spool.clone());
        f.spool.enqueue(&FileRequest::Send(message(&f, "00000000000000000007.1.1"))).unwrap();
        assert_eq!(queue().drain_for_request(now()).unwrap().applied, 0, "its sender is about to claim it");
        assert_eq!(f.spool.state().unwrap().waiting, 1);
        // The sender claims it, finds the database busy and gives it back.
        let ClaimResult::Claimed(claimed) = f.spool.claim("00000000000000000007.1.1").unwrap() else {
            panic!("claimed")
        };
        f.spool.release(&claimed.name).unwrap();
        assert_eq!(queue().drain_for_request(now()).unwrap().applied, 1, "given up: the next request takes it");
        // A sender that died before claiming: taken once the grace has passed.
        f.spool.enqueue(&FileRequest::Send(message(&f, "00000000000000000008.1.1"))).unwrap();
        assert_eq!(queue().drain_for_request(now()).unwrap().applied, 0);
        std::thread::sleep(SENDER_GRACE);
        assert_eq!(queue().drain_for_request(now()).unwrap().applied, 1);
        assert_eq!(stored(&f), 2);
        // Operators' drains (msqd, `piggyback drain`) take every file at once.
        f.spool.enqueue(&FileRequest::Send(message(&f, "00000000000000000009.1.1"))).unwrap();
        assert_eq!(queue().drain(10, CLAIM_TIMEOUT_SECS, BUSY_TIMEOUT, now()).unwrap().applied, 1);
    }

    #[test]
    fn a_request_drains_once() {
        let f = fixture();
        let queue = Queue::new(&f.store, f.spool.clone());
        assert_eq!(queue.drain_for_request(now()).unwrap().applied, 0);
        f.spool.enqueue(&FileRequest::Send(message(&f, "00000000000000000009.1.1"))).unwrap();
        settle(&f.spool);
        assert_eq!(queue.drain_for_request(now()).unwrap().applied, 0, "drained already");
        assert_eq!(stored(&f), 0);
        assert_eq!(Queue::new(&f.store, f.spool.clone()).drain_for_request(now()).unwrap().applied, 1);
        assert_eq!(stored(&f), 1);
    }

    #[test]
    fn an_unwritable_spool_accepts_nothing() {
        let f = fixture();
        let file = f.spool.root().join("not-a-dir");
        std::fs::write(&file, b"").unwrap();
        let queue = Queue::new(&f.store, Spool::new(&file));
        let send = NewMessage {
            request_id: new_request_id(),
            from: f.bob,
            to: f.alice,
            subject: "s".into(),
            body: "b".into(),
            kind: MessageKind::Note,
            idempotency_key: None,
            sent_at: now(),
        };
        assert!(matches!(queue.send(send), Err(QueueError::Spool(_))));
        assert_eq!(stored(&f), 0);
    }
}
