//! The hasher: names each staged copy (a clone recorded before it was read, see
//! `vault::staged`) by its BLAKE3 hash, on a thread of its own at the lowest
//! priority (nice 19, idle I/O class), off the capture's path.
//!
//! The thread only reads: it hands each result to the loop (`Msg::Hashed`), which
//! records it in its own transaction (`amend::record_hashed`: the copy gets its
//! real name, or is found to be a duplicate, and the index points there), so the
//! index keeps its one writer. The staged name goes once that is committed.
//!
//! Crash-safe by order: the real name is made durable before the index points at
//! it, and the staged name is removed only after. A kill in between leaves either
//! an index still pointing at the staged copy (hashed again at the next start,
//! which queues every staged copy the index knows) or a name nobody points at
//! (removed by the start-up sweep).

use std::sync::mpsc::{self, Sender};

use super::event::Msg;
use super::{Answer, Daemon, DaemonError};
use crate::amend::HashedOutcome;
use crate::ids::ObjectId;
use crate::vault::Vault;

/// The hasher thread's end of the queue; `None` while hashing is held
/// (`Config::hold_hashing`).
pub struct Hasher {
    queue: Option<Sender<ObjectId>>,
}

impl Hasher {
    /// Starts the thread, reading through its own handle on the vault in `root`.
    pub fn start(root: &std::path::Path, inbox: Sender<Msg>, hold: bool) -> Self {
        if hold {
            tracing::info!("hashing of cloned copies is held (UNDELETE_HOLD_HASHING)");
            return Self { queue: None };
        }
        let vault = match Vault::open_existing(root) {
            Ok(vault) => vault,
            Err(e) => {
                tracing::error!("cannot start hashing cloned copies: {e}");
                return Self { queue: None };
            }
        };
        let (queue, work) = mpsc::channel::<ObjectId>();
        let started = std::thread::Builder::new()
            .name("hasher".to_owned())
            .spawn(move || {
                lower_priority();
                for staged in work {
                    let outcome = vault.hash_staged(&staged).map_err(|e| e.to_string());
                    if inbox.send(Msg::Hashed { staged, outcome }).is_err() {
                        break;
                    }
                }
            });
        match started {
            Ok(_) => Self { queue: Some(queue) },
            Err(e) => {
                tracing::error!("cannot start hashing cloned copies: {e}");
                Self { queue: None }
            }
        }
    }

    /// Queues a staged copy; false when it will not be hashed by this run.
    pub fn hash(&self, staged: ObjectId) -> bool {
        self.queue
            .as_ref()
            .is_some_and(|queue| queue.send(staged).is_ok())
    }
}

/// The calling thread at the lowest CPU and disk priority, so hashing waits for
/// whatever else the server does (captures included).
fn lower_priority() {
    const IOPRIO_WHO_PROCESS: libc::c_long = 1;
    const IOPRIO_CLASS_IDLE: libc::c_long = 3;
    const IOPRIO_CLASS_SHIFT: u32 = 13;
    // SAFETY: plain system calls that change only this thread's priorities.
    unsafe {
        let tid = libc::gettid();
        if libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, 19) != 0 {
            tracing::debug!("cannot lower the hasher's CPU priority");
        }
        if libc::syscall(
            libc::SYS_ioprio_set,
            IOPRIO_WHO_PROCESS,
            libc::c_long::from(tid),
            IOPRIO_CLASS_IDLE << IOPRIO_CLASS_SHIFT,
        ) != 0
        {
            tracing::debug!("cannot lower the hasher's disk priority");
        }
    }
}

impl Daemon {
    /// Hands the hasher every staged copy the index knows: at start, those a crash
    /// or a held run left.
    pub(super) fn hash_left_over(&mut self) -> Result<(), DaemonError> {
        let staged = self.index.staged_objects()?;
        if !staged.is_empty() {
            tracing::info!("{} cloned copies wait to be hashed", staged.len());
        }
        for id in staged {
            self.queue_hashing(id);
        }
        Ok(())
    }

    pub(super) fn queue_hashing(&mut self, staged: ObjectId) {
        if self.hasher.hash(staged) {
            self.hashing += 1;
        }
    }

    /// What the hasher found, recorded in the open transaction.
    pub(super) fn hashed(
        &mut self,
        staged: ObjectId,
        outcome: Result<(ObjectId, u64), String>,
    ) -> Result<(), DaemonError> {
        self.hashing = self.hashing.saturating_sub(1);
        match outcome {
            Ok((id, size)) => {
                if let Err(why) = self.record_hashed(&staged, &id, size)? {
                    tracing::error!("a cloned copy in the vault could not be named: {why}");
                }
            }
            Err(why) if self.index.has_object(&staged)? => tracing::error!(
                "a cloned copy in the vault ({}) cannot be hashed: it {why}; \
                 `undelete verify` names the file",
                self.vault.object_path(&staged).display()
            ),
            // Purged or recorded meanwhile: nobody needs it.
            Err(_) => self.staged_done.push(staged),
        }
        Ok(())
    }

    /// Records one staged copy's hash; its staged name goes after the commit.
    fn record_hashed(
        &mut self,
        staged: &ObjectId,
        id: &ObjectId,
        size: u64,
    ) -> Result<Result<(), String>, DaemonError> {
        match crate::amend::record_hashed(&self.vault, &self.index, staged, id, size)? {
            Ok(HashedOutcome::Recorded | HashedOutcome::Unknown) => {
                self.staged_done.push(*staged);
                Ok(Ok(()))
            }
            Err(why) => Ok(Err(why)),
        }
    }

    /// A restore's `Amendment::Hashed`: the copies it hashed on the way out.
    pub(super) fn hashed_by_restore(
        &mut self,
        copies: &[(String, String, u64)],
    ) -> Result<Answer, DaemonError> {
        let mut recorded = 0u64;
        for (staged, id, size) in crate::amend::hashed_copies(copies) {
            match self.record_hashed(&staged, &id, size)? {
                Ok(()) => recorded += 1,
                Err(why) => tracing::warn!("a restore's hash was not recorded: {why}"),
            }
        }
        Ok(Ok(crate::words::count(recorded)))
    }

    /// After a commit: hand the hasher the staged copies it recorded, and remove the
    /// staged names nothing points at any more.
    pub(super) fn after_commit_hashing(&mut self) {
        for id in self.vault.take_newly_staged() {
            self.queue_hashing(id);
        }
        if self.staged_done.is_empty() {
            return;
        }
        // A restore running now may have planned with these names: they go once it
        // is over (the next commit tries again).
        let (vault, done) = (&self.vault, &mut self.staged_done);
        vault.unless_restoring(|| {
            for staged in done.drain(..) {
                if let Err(e) = vault.remove_object(&staged) {
                    tracing::warn!("{e}");
                }
            }
        });
    }
}
