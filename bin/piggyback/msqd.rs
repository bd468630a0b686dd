//! `piggyback msqd`: the queue keeper, one long-lived connection draining the spool.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use piggyback::model::now;
use piggyback::msq::{self, Queue};

use crate::print_drain;

/// The queue keeper: one long-lived connection draining the spool.
pub fn run(queue: &Queue<'_>, poll_ms: u64, checkpoint_secs: u64) -> Result<ExitCode> {
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(signal, Arc::clone(&stop)).context("cannot handle signals")?;
    }
    eprintln!("piggyback msqd: draining {} every {poll_ms} ms", queue.spool().root().display());
    let mut last_checkpoint = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        match queue.drain_all(msq::CLAIM_TIMEOUT_SECS, now()) {
            Ok(report) => {
                if report.applied + report.duplicates + report.reclaimed > 0
                    || !report.bad.is_empty()
                    || !report.dropped.is_empty()
                    || report.stopped.is_some()
                {
                    print_drain(&report);
                }
            }
            Err(msq::QueueError::Store(e)) => eprintln!("piggyback msqd: {}", msq::stopped_line(&e)),
            Err(e) => eprintln!("piggyback msqd: {e}"),
        }
        if last_checkpoint.elapsed() >= Duration::from_secs(checkpoint_secs) {
            if let Err(e) = queue.store().checkpoint() {
                eprintln!("piggyback msqd: checkpoint: {e}");
            }
            last_checkpoint = Instant::now();
        }
        std::thread::sleep(Duration::from_millis(poll_ms));
    }
    let report = queue.drain_all(msq::CLAIM_TIMEOUT_SECS, now())?;
    print_drain(&report);
    let _ = queue.store().checkpoint();
    eprintln!("piggyback msqd: stopped");
    Ok(ExitCode::SUCCESS)
}
