//! The daemon's inotify event source: the watches, the map from watch
//! descriptor to folder, and the one place the kernel's events become `FsEvent`.
//!
//! Written here rather than taken from notify. notify applied what a folder's
//! rename means for its watches only after it had read the whole kernel queue:
//! on the rename-from it queued the removal of the folder's watches, on the
//! rename-to a recursive re-add, both done once the queue was drained. Events
//! from inside the moved folder read meanwhile were reported under its old
//! path, and events between the removal and the re-add were lost, with no
//! overflow to call for a rescan: a folder renamed while another user deleted
//! its files left 337 of 2,000 deleted files listed as present and called 242
//! "deleted before it could be copied". The kernel keeps a watch across a
//! rename, so nothing needs removing: here the map is rebased at the moment the
//! rename-to is read, in queue order, and every later event gets the new path.
//!
//! The reading thread only reads, maps and hands on (one channel). It adds a
//! watch for a folder it sees created or moved in before handing the event on,
//! so the daemon's walk of that folder comes after the watch exists; it stats a
//! renamed folder to tell an exchange from a rename; it never hashes, copies or
//! touches the index. The fanotify source (`whole_fs`) sits beside this one,
//! producing the same `FsEvent`s behind the same `Source`.
//!
//! This file holds the instance both share (`Inotify`) and what a watch asks
//! the kernel for; `watches` is the map, `reader` the reading thread.

mod reader;
mod watches;

use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};

use rustix::fs::inotify::{self, CreateFlags, WatchFlags};
use rustix::io::Errno;

use super::event::{Msg, Source, WatchError};
use reader::Reader;
use watches::Watches;

/// What a watch costs nothing to ask for but would flood the queue if asked: no
/// IN_OPEN, no IN_ACCESS, no close-after-reading (every read on the share). IN_MODIFY
/// tells that a file is being written; the reader reports it once per file until
/// it is closed. No IN_EXCL_UNLINK: a file unlinked while open still reports its
/// close-after-writing.
fn watch_flags() -> WatchFlags {
    WatchFlags::CREATE
        | WatchFlags::DELETE
        | WatchFlags::MOVED_FROM
        | WatchFlags::MOVED_TO
        | WatchFlags::CLOSE_WRITE
        | WatchFlags::ATTRIB
        | WatchFlags::MODIFY
        | WatchFlags::ONLYDIR
        | WatchFlags::DONT_FOLLOW
}

/// The inotify instance, shared by the reading thread and the daemon's walks.
#[derive(Clone)]
pub struct Inotify {
    fd: Arc<OwnedFd>,
    watches: Arc<Mutex<Watches>>,
}

impl Source for Inotify {
    fn watch(&self, dir: BorrowedFd<'_>, path: &Path) -> Result<(), WatchError> {
        Inotify::watch(self, dir, path)
    }

    fn unwatch_tree(&self, dir: &Path) {
        Inotify::unwatch_tree(self, dir)
    }
}

impl Inotify {
    /// Starts the reading thread, which hands every event to `tx`.
    pub fn start(tx: Sender<Msg>) -> Result<Self, WatchError> {
        let fd = inotify::init(CreateFlags::CLOEXEC | CreateFlags::NONBLOCK)
            .map_err(|e| WatchError::Init(e.into()))?;
        let source = Self {
            fd: Arc::new(fd),
            watches: Arc::default(),
        };
        let reader = Reader::new(source.clone(), tx);
        std::thread::Builder::new()
            .name("inotify".into())
            .spawn(move || reader.run())
            .map_err(WatchError::Init)?;
        Ok(source)
    }

    fn watches(&self) -> std::sync::MutexGuard<'_, Watches> {
        self.watches.lock().expect("the watches are never poisoned")
    }

    /// Watches the folder held by `dir`, found at `path`. Through the descriptor, so
    /// the folder watched is the one the walk holds, whatever the path leads to now.
    pub fn watch(&self, dir: BorrowedFd<'_>, path: &Path) -> Result<(), WatchError> {
        let inode = rustix::fs::fstat(dir).map(|s| s.st_ino).unwrap_or(0);
        let by_descriptor = format!("/proc/self/fd/{}", dir.as_raw_fd());
        // The magic link itself must be followed: no IN_DONT_FOLLOW here.
        let flags = watch_flags() - WatchFlags::DONT_FOLLOW;
        let wd = match inotify::add_watch(&*self.fd, by_descriptor.as_str(), flags) {
            Ok(wd) => wd,
            // No /proc: by path, never following a link at its end.
            Err(Errno::NOENT) if !Path::new("/proc/self/fd").exists() => {
                inotify::add_watch(&*self.fd, path, watch_flags())
                    .map_err(|e| self.watch_error(path, e))?
            }
            Err(e) => return Err(self.watch_error(path, e)),
        };
        self.watches().insert(wd, path, inode);
        Ok(())
    }

    fn watch_error(&self, path: &Path, e: Errno) -> WatchError {
        match e {
            Errno::NOSPC => WatchError::Limit,
            e => WatchError::Folder {
                path: path.to_owned(),
                source: e.into(),
            },
        }
    }

    /// Stops watching `dir` and everything below it (a protected folder given up).
    pub fn unwatch_tree(&self, dir: &Path) {
        let mut watches = self.watches();
        for (_, wd) in watches.subtree(dir) {
            let _ = inotify::remove_watch(&*self.fd, wd);
            watches.detached.insert(wd);
        }
    }
}
