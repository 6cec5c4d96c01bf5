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
//!
//! A cookie's name cannot be guessed (a random number, not a count): anyone who
//! may write in a protected folder could otherwise make the next one first, and
//! a folder where the cookie cannot be made is one a sync does not wait for, so
//! `sync` would answer before that folder's changes were read. A name found taken
//! is drawn again; only a folder that refuses new files is not waited for.
//!
//! Only cookies the daemon made are its own, and only until the kernel reports
//! them gone: a user's file with a cookie's name (made before, or renamed onto an
//! outstanding cookie) is recorded like any other. A cookie is removed only while
//! its name still holds the file the daemon made (by inode): a user's file that
//! took the name is left, and looked at.

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
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

/// How many names are drawn for a cookie before a folder is given up as full of
/// them: with 64 random bits, more than one means someone is planting names.
const DRAWS: usize = 16;

/// How many cookies are remembered as the daemon's own at most: more means their
/// removals were never reported (a queue overflow), and the oldest are forgotten.
const MADE_REMEMBERED: usize = 4096;

#[derive(Default)]
pub struct Syncs {
    pending: Vec<PendingSync>,
    /// The cookies made and not yet reported gone, with the inode each was made as.
    made: HashMap<PathBuf, (u64, u64)>,
}

impl Syncs {
    /// Drops a cookie into each protected folder for a new sync request.
    pub fn start(&mut self, reply: Sender<SyncAnswer>, roots: &[PathBuf], hashed: bool) {
        let mut waiting = Vec::new();
        if self.made.len() >= MADE_REMEMBERED {
            self.made.clear();
        }
        for root in roots {
            match make_cookie(root) {
                Ok((cookie, made)) => {
                    self.made.insert(cookie.clone(), made);
                    waiting.push(cookie);
                }
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

    /// Whether `path` is a cookie the daemon made that the kernel has not reported
    /// gone yet.
    pub fn is_own(&self, path: &Path) -> bool {
        self.made.contains_key(path)
    }

    /// The kernel reported `path` gone, or another file took its name: it is no
    /// cookie of the daemon's any more. Whether it was one.
    pub fn forget(&mut self, path: &Path) -> bool {
        self.made.remove(path).is_some()
    }

    /// The kernel reported a cookie: every change before it has been read. Whether
    /// its name holds another file than the cookie now (a user's, to look at).
    pub fn cookie_seen(&mut self, cookie: &Path) -> bool {
        for sync in &mut self.pending {
            if let Some(i) = sync.waiting.iter().position(|c| c == cookie) {
                sync.waiting.swap_remove(i);
            }
        }
        !remove_made(&mut self.made, cookie)
    }

    /// A full scan that started at `started` has finished: older syncs are covered.
    pub fn scan_finished(&mut self, started: Instant) {
        for sync in &mut self.pending {
            if sync.started <= started {
                for cookie in std::mem::take(&mut sync.waiting) {
                    remove_made(&mut self.made, &cookie);
                }
            }
        }
        // Removals a queue overflow lost: what is gone is no cookie of ours.
        self.made
            .retain(|cookie, _| std::fs::symlink_metadata(cookie).is_ok());
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
        for sync in std::mem::take(&mut self.pending) {
            for cookie in &sync.waiting {
                remove_made(&mut self.made, cookie);
            }
            let _ = sync.reply.send(SyncAnswer::Failed(why.to_owned()));
        }
    }
}

/// Removes a cookie while its name still holds the file made; whether it did (or it
/// was gone already). A name that holds another file now is forgotten, not removed.
fn remove_made(made: &mut HashMap<PathBuf, (u64, u64)>, cookie: &Path) -> bool {
    let Some(&inode) = made.get(cookie) else {
        return true;
    };
    match std::fs::symlink_metadata(cookie) {
        Ok(m) if (m.dev(), m.ino()) == inode => {
            let _ = std::fs::remove_file(cookie);
            true
        }
        Ok(_) => {
            made.remove(cookie);
            false
        }
        Err(_) => true,
    }
}

/// A new cookie in `root`, under a name nobody could have made first, with the
/// device and inode it was made as.
fn make_cookie(root: &Path) -> std::io::Result<(PathBuf, (u64, u64))> {
    let mut last = None;
    for _ in 0..DRAWS {
        let cookie = root.join(crate::names::cookie_name(crate::names::unguessable()));
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&cookie)
        {
            Ok(file) => {
                let m = file.metadata()?;
                return Ok((cookie, (m.dev(), m.ino())));
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("no cookie name was free")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A user's file renamed onto a cookie's name before the daemon removes the
    /// cookie: it is left there, whole, and said to be a user's to look at.
    #[test]
    fn a_file_renamed_onto_a_cookie_is_not_removed_with_it() {
        let root = tempfile::tempdir().unwrap();
        let (tx, _rx) = std::sync::mpsc::channel();
        let mut syncs = Syncs::default();
        syncs.start(tx, &[root.path().to_owned()], false);
        let cookie = syncs.pending[0].waiting[0].clone();
        let mine = root.path().join("report.docx");
        std::fs::write(&mine, b"a user's report").unwrap();
        std::fs::rename(&mine, &cookie).unwrap();
        assert!(syncs.cookie_seen(&cookie), "taken for the cookie");
        assert_eq!(std::fs::read(&cookie).unwrap(), b"a user's report");
        assert!(!syncs.is_own(&cookie), "still taken for the daemon's own");
        assert!(syncs.any_ready(true), "the sync still waits");
    }

    /// Files made under the names a count would give next (pid-1, pid-2, …) and a
    /// link there: the sync still drops its cookie, under another name, and waits.
    #[test]
    fn a_sync_waits_for_a_folder_where_cookie_names_were_planted() {
        let root = tempfile::tempdir().unwrap();
        for n in 0..200 {
            let name = crate::names::cookie_name(n);
            std::fs::write(root.path().join(&name), b"planted").unwrap();
        }
        let (tx, _rx) = std::sync::mpsc::channel();
        let mut syncs = Syncs::default();
        let roots = vec![root.path().to_owned()];
        syncs.start(tx.clone(), &roots, false);
        syncs.start(tx, &roots, false);
        assert!(
            !syncs.any_ready(true),
            "a sync answered without a cookie back"
        );
        let cookies: Vec<&PathBuf> = syncs.pending.iter().flat_map(|s| &s.waiting).collect();
        assert_eq!(cookies.len(), 2, "{cookies:?}");
        assert_ne!(cookies[0], cookies[1]);
        for cookie in cookies {
            assert!(syncs.is_own(cookie), "{}", cookie.display());
            assert_eq!(
                std::fs::read(cookie).unwrap(),
                b"",
                "a planted file was taken"
            );
        }
    }
}
