//! `undelete sync`: proving that every change made before the call is in the index.
//!
//! A control message alone cannot prove that: events still sitting in the
//! kernel's queue would be missed. So the daemon drops a small cookie file into
//! each protected folder, the way watchman does. inotify keeps one queue in
//! order, so when a cookie's event comes back, every earlier change has come
//! back too; once the batch holding it is committed, the sync is answered. If
//! the queue overflows and a cookie's event is lost, the rescan that follows
//! covers everything before it, so syncs older than the scan are answered too.
//!
//! `sync --hashed` waits, besides, until the hasher has nothing left: every
//! cloned copy recorded by then has its hash (see `hasher`).

use std::fs::OpenOptions;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc::Sender;
use std::time::Instant;

use super::SyncAnswer;

struct PendingSync {
    reply: Sender<SyncAnswer>,
    /// Cookies not yet reported back by the kernel.
    waiting: Vec<PathBuf>,
    started: Instant,
    /// Waits for the hasher to be idle too.
    hashed: bool,
}

impl PendingSync {
    fn ready(&self, hashing_idle: bool) -> bool {
        self.waiting.is_empty() && (hashing_idle || !self.hashed)
    }
}

#[derive(Default)]
pub struct Syncs {
    next: u64,
    pending: Vec<PendingSync>,
}

impl Syncs {
    /// Drops a cookie into each protected folder for a new sync request.
    pub fn start(&mut self, reply: Sender<SyncAnswer>, roots: &[PathBuf], hashed: bool) {
        self.next += 1;
        let name = crate::names::own_name(crate::names::SYNC_COOKIE, self.next);
        let mut waiting = Vec::new();
        for root in roots {
            let cookie = root.join(&name);
            match OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&cookie)
            {
                Ok(_) => waiting.push(cookie),
                // A read-only folder cannot change, so it has nothing to wait for.
                Err(e) => tracing::debug!("no sync cookie in {}: {e}", root.display()),
            }
        }
        self.pending.push(PendingSync {
            reply,
            waiting,
            started: Instant::now(),
            hashed,
        });
    }

    /// The kernel reported a cookie: every change before it has been read.
    pub fn cookie_seen(&mut self, cookie: &Path) {
        for sync in &mut self.pending {
            if let Some(i) = sync.waiting.iter().position(|c| c == cookie) {
                sync.waiting.swap_remove(i);
                let _ = std::fs::remove_file(cookie);
            }
        }
    }

    /// A full scan that started at `started` has finished: older syncs are covered.
    pub fn scan_finished(&mut self, started: Instant) {
        for sync in &mut self.pending {
            if sync.started <= started {
                for cookie in sync.waiting.drain(..) {
                    let _ = std::fs::remove_file(cookie);
                }
            }
        }
    }

    /// Whether some sync has all its cookies back (and, for `--hashed`, the hasher
    /// is idle).
    pub fn any_ready(&self, hashing_idle: bool) -> bool {
        self.pending.iter().any(|s| s.ready(hashing_idle))
    }

    /// Answers every sync that is ready. Call after committing.
    pub fn answer_ready(&mut self, hashing_idle: bool) {
        self.pending.retain(|sync| {
            if sync.ready(hashing_idle) {
                let _ = sync.reply.send(SyncAnswer::Done);
                false
            } else {
                true
            }
        });
    }

    pub fn fail_all(&mut self, why: &str) {
        for sync in self.pending.drain(..) {
            for cookie in &sync.waiting {
                let _ = std::fs::remove_file(cookie);
            }
            let _ = sync.reply.send(SyncAnswer::Failed(why.to_owned()));
        }
    }
}
