//! One restore at a time per vault.
//!
//! Two restores of the same files at once would each see the other's files
//! appear between their plan and their writes, and put a second copy beside
//! every one. The lock is taken before planning, since a plan made while another
//! restore was still writing is out of date, and held until the report is written.
//! It is the kernel's `flock` on the vault folder itself: no file to create (so a
//! read-only vault locks too), and it goes away with the process, however it ends.

use std::io;
use std::os::fd::OwnedFd;
use std::path::Path;

use rustix::fs::{FlockOperation, Mode, OFlags};
use rustix::io::Errno;

/// Held while a restore plans and runs; released when dropped.
#[derive(Debug)]
pub struct RestoreLock {
    _folder: OwnedFd,
}

/// Takes the restore lock of the vault at `root`. When another restore holds it,
/// `waiting` is called once (to say so) and this one waits for it to finish.
pub fn lock(root: &Path, waiting: impl FnOnce()) -> io::Result<RestoreLock> {
    let folder = rustix::fs::open(
        root,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    match rustix::fs::flock(&folder, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => {}
        Err(Errno::WOULDBLOCK) => {
            waiting();
            rustix::fs::flock(&folder, FlockOperation::LockExclusive)?;
        }
        Err(e) => return Err(e.into()),
    }
    Ok(RestoreLock { _folder: folder })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_restore_waits_for_the_first_and_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let first = lock(dir.path(), || panic!("nobody else holds it")).unwrap();
        let (said, waited) = std::sync::mpsc::channel();
        let root = dir.path().to_owned();
        let second = std::thread::spawn(move || {
            lock(&root, || said.send(()).unwrap()).unwrap();
        });
        waited.recv().unwrap();
        assert!(!second.is_finished(), "it waits while the first one runs");
        drop(first);
        second.join().unwrap();
    }
}
