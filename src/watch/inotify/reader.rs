//! The inotify source's reading thread: it reads the kernel's queue, pairs each
//! rename-from with its rename-to (holding back what comes between), turns watch
//! descriptors into paths and hands the events on. All that runs on that thread
//! is here, so it is plain to see that it only reads, maps and hands on.

use std::collections::{HashSet, VecDeque};
use std::ffi::OsStr;
use std::mem::MaybeUninit;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::Sender;
use std::time::Duration;

use rustix::fs::FileType;
use rustix::fs::inotify::{self, ReadFlags};
use rustix::io::Errno;

use super::Inotify;
use super::watches::Watches;
use crate::watch::event::{FsEvent, Held, Msg, WatchError, wait_readable};

/// How long a rename-from waits for its rename-to once the queue has been read to
/// its end: the kernel queues the two halves one after the other, but not atomically.
/// Counted from the queue's end, never from when the rename-from was read: a reader
/// held up on a loaded machine still finds the rename-to queued behind it.
const PAIRING: Duration = Duration::from_millis(20);

/// How many events may come between a rename-from and its rename-to before it is
/// taken for a move out while the queue never runs dry: the kernel's whole queue.
const HELD_BACK_MAX: usize = 16_384;

/// How many files being written are remembered, to report each once (`Writing`).
const WRITING_REMEMBERED: usize = 65_536;

/// A rename-from waiting for its rename-to.
struct PendingMove {
    cookie: u32,
    path: PathBuf,
    is_dir: bool,
    /// When the queue was first read to its end after the rename-from.
    drained: Option<std::time::Instant>,
}

/// One event as the kernel gave it, before its watch is turned into a path.
struct Raw {
    wd: i32,
    mask: ReadFlags,
    cookie: u32,
    name: Option<std::ffi::OsString>,
}

pub(super) struct Reader {
    source: Inotify,
    tx: Sender<Msg>,
    pending: Option<PendingMove>,
    /// Events read after a rename-from and before its rename-to. The kernel queues
    /// the two halves in two steps, and a process working inside the renamed folder
    /// meanwhile (deleting its files, say) gets its events queued in between, under
    /// the folder's old path. Held back, they are turned into paths once the pair is
    /// known: the new ones, or none for a folder that left the tree.
    held_back: VecDeque<Raw>,
    /// Files reported as being written and not closed since, by path.
    writing: HashSet<PathBuf>,
}

impl Reader {
    pub(super) fn new(source: Inotify, tx: Sender<Msg>) -> Self {
        Self {
            source,
            tx,
            pending: None,
            held_back: VecDeque::new(),
            writing: HashSet::new(),
        }
    }

    pub(super) fn run(mut self) {
        let fd = Arc::clone(&self.source.fd);
        let mut buf = vec![MaybeUninit::<u8>::uninit(); 64 * 1024];
        loop {
            let timeout = self.pending.as_ref().map(|m| {
                m.drained
                    .map_or(PAIRING, |at| PAIRING.saturating_sub(at.elapsed()))
            });
            if !wait_readable(fd.as_fd(), timeout) {
                // No rename-to came: the thing left the protected folders.
                if !self.settle_move() || !self.replay() {
                    return;
                }
                continue;
            }
            let mut events = inotify::Reader::new(fd.as_fd(), &mut buf);
            loop {
                match events.next() {
                    Ok(event) => {
                        let (wd, mask, cookie) = (event.wd(), event.events(), event.cookie());
                        let name = event
                            .file_name()
                            .map(|n| OsStr::from_bytes(n.to_bytes()).to_owned());
                        let raw = Raw {
                            wd,
                            mask,
                            cookie,
                            name,
                        };
                        if !self.feed(raw) {
                            return;
                        }
                    }
                    Err(Errno::AGAIN) => {
                        if !self.drained() {
                            return;
                        }
                        break;
                    }
                    Err(Errno::INTR) => {}
                    Err(e) => {
                        if !self.send(FsEvent::Error {
                            message: format!("reading inotify events failed: {e}"),
                        }) {
                            return;
                        }
                        std::thread::sleep(Duration::from_millis(100));
                        break;
                    }
                }
            }
        }
    }

    /// False once the daemon is gone.
    fn send(&self, event: FsEvent) -> bool {
        self.tx.send(Msg::Fs(event, None)).is_ok()
    }

    /// Handles one event, or holds it back while a rename-from waits for its pair.
    /// False once the daemon is gone.
    fn feed(&mut self, raw: Raw) -> bool {
        if let Some(pending) = &self.pending {
            let pairs = raw.mask.contains(ReadFlags::MOVED_TO) && raw.cookie == pending.cookie;
            if !pairs {
                self.held_back.push_back(raw);
                // More events than the kernel's queue holds and no rename-to: it moved out.
                let overdue = self.held_back.len() >= HELD_BACK_MAX;
                return !overdue || (self.settle_move() && self.replay());
            }
        }
        self.handle(raw.wd, raw.mask, raw.cookie, raw.name.as_deref())
            && (self.pending.is_some() || self.replay())
    }

    /// The queue was read to its end. A rename-from still unpaired when the queue
    /// ends again `PAIRING` after it first ended moved out: everything queued by
    /// then has been read, and its rename-to was not among it.
    fn drained(&mut self) -> bool {
        let Some(pending) = &mut self.pending else {
            return true;
        };
        match pending.drained {
            None => {
                pending.drained = Some(std::time::Instant::now());
                true
            }
            Some(at) if at.elapsed() >= PAIRING => self.settle_move() && self.replay(),
            Some(_) => true,
        }
    }

    /// Handles the events held back, in the order they came.
    fn replay(&mut self) -> bool {
        let queued = std::mem::take(&mut self.held_back);
        queued.into_iter().all(|raw| self.feed(raw))
    }

    fn handle(&mut self, wd: i32, mask: ReadFlags, cookie: u32, name: Option<&OsStr>) -> bool {
        if mask.contains(ReadFlags::QUEUE_OVERFLOW) {
            self.settle_move();
            self.writing.clear();
            return self.send(FsEvent::Rescan);
        }
        if mask.contains(ReadFlags::IGNORED) {
            self.source.watches().forget(wd);
            return true;
        }
        let dir = {
            let watches = self.source.watches();
            if watches.detached.contains(&wd) {
                return true;
            }
            match watches.by_wd.get(&wd) {
                Some(w) => w.path.clone(),
                None => return true,
            }
        };
        // A watched folder's own deletion or move is reported by its parent too.
        let Some(name) = name else {
            return true;
        };
        let path = dir.join(name);
        let is_dir = mask.contains(ReadFlags::ISDIR);
        // Only a rename-to that pairs with it comes here while one waits (`feed`).
        let pairs = mask.contains(ReadFlags::MOVED_TO)
            && self.pending.as_ref().is_some_and(|m| m.cookie == cookie);
        if mask.contains(ReadFlags::MOVED_FROM) {
            self.writing.remove(&path);
            self.pending = Some(PendingMove {
                cookie,
                path,
                is_dir,
                drained: None,
            });
            return true;
        }
        if mask.contains(ReadFlags::MOVED_TO) {
            if let Some(from) = self.pending.take().filter(|_| pairs) {
                if from.is_dir {
                    self.rebase(&from.path, &path);
                }
                return self.send(FsEvent::Renamed {
                    from: from.path,
                    to: path,
                    object: None,
                });
            }
            // Moved in from outside: new to us.
            return self.arrived(path, is_dir);
        }
        if mask.contains(ReadFlags::CREATE) {
            if is_dir {
                return self.arrived(path, is_dir);
            }
            // A new name for a file already there (`ln`), a link or a special file:
            // nothing is being written.
            let new_file = rustix::fs::lstat(&path).is_ok_and(|st| {
                FileType::from_raw_mode(st.st_mode) == FileType::RegularFile && st.st_nlink == 1
            });
            if new_file && !self.writing(path.clone()) {
                return false;
            }
            return self.send(FsEvent::Changed {
                path,
                is_new: false,
                object: None,
            });
        }
        if mask.contains(ReadFlags::DELETE) {
            // Still being written if it is still open: its close comes after.
            return self.send(FsEvent::Removed {
                path,
                was_dir: is_dir,
            });
        }
        if mask.contains(ReadFlags::MODIFY) {
            return self.writing(path);
        }
        if mask.contains(ReadFlags::CLOSE_WRITE) {
            self.writing.remove(&path);
            return self.send(FsEvent::Closed { path, object: None });
        }
        if mask.contains(ReadFlags::ATTRIB) {
            return self.send(FsEvent::Changed {
                path,
                is_new: false,
                object: None,
            });
        }
        true
    }

    /// Reports that a file is being written, once until it is closed.
    fn writing(&mut self, path: PathBuf) -> bool {
        if self.writing.contains(&path) {
            return true;
        }
        if self.writing.len() >= WRITING_REMEMBERED {
            // Forgetting only costs a repeated report.
            self.writing.clear();
        }
        self.writing.insert(path.clone());
        let held = Held::open(&path);
        self.send(FsEvent::Writing { path, held })
    }

    /// A rename-from with no rename-to: the thing left the protected folders. Its
    /// watches go, and what is still queued from them is ignored.
    fn settle_move(&mut self) -> bool {
        let Some(moved) = self.pending.take() else {
            return true;
        };
        if moved.is_dir {
            self.source.unwatch_tree(&moved.path);
        }
        self.send(FsEvent::MovedOut { path: moved.path })
    }

    /// A folder renamed from `from` to `to`. The kernel reports an exchange
    /// (`renameat2(RENAME_EXCHANGE)`) as two renames, the second the other way;
    /// the disk says which is which: when `from` now holds the folder the map has
    /// at `to`, the two were exchanged; when it still holds the folder the map has
    /// at `from`, this is the second half of an exchange already applied.
    fn rebase(&mut self, from: &Path, to: &Path) {
        let at_from = rustix::fs::lstat(from).ok().map(|s| s.st_ino);
        let mut watches = self.source.watches();
        let inode_at = |watches: &Watches, p: &Path| {
            watches
                .by_path
                .get(p)
                .and_then(|wd| watches.by_wd.get(wd))
                .map(|w| w.inode)
        };
        match at_from {
            Some(ino) if inode_at(&watches, from) == Some(ino) => {}
            Some(ino) if inode_at(&watches, to) == Some(ino) => watches.exchange(from, to),
            _ => watches.rebase(from, to),
        }
    }

    /// Something new at `path`, made or moved in; a folder is watched before the
    /// event goes on, since the daemon's walk must find the watch there.
    fn arrived(&mut self, path: PathBuf, is_dir: bool) -> bool {
        if is_dir {
            self.watch_new(&path);
        }
        self.send(FsEvent::Changed {
            path,
            is_new: true,
            object: None,
        })
    }

    /// Watches a folder that just appeared, opened without passing through a
    /// symlink (see `tree`), so a name swapped for a link never gets a watch on
    /// the folder it points to; the daemon's walk of it comes after.
    fn watch_new(&mut self, path: &Path) {
        let Ok(dir) = crate::watch::tree::open_dir(path) else {
            // Gone already, or not a folder any more: the daemon's look says so.
            return;
        };
        if let Err(WatchError::Limit) = self.source.watch(dir.as_fd(), path) {
            let _ = self.send(FsEvent::WatchLimit {
                path: Some(path.to_owned()),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use rustix::fs::inotify::CreateFlags;

    use super::*;

    /// A reader with no thread of its own: the events are fed to it by hand.
    fn reader(paths: &[&str]) -> (Reader, std::sync::mpsc::Receiver<Msg>) {
        let (tx, rx) = std::sync::mpsc::channel();
        let fd = inotify::init(CreateFlags::CLOEXEC | CreateFlags::NONBLOCK).unwrap();
        let source = Inotify {
            fd: Arc::new(fd),
            watches: Arc::new(Mutex::new(Watches::of(paths))),
        };
        let reader = Reader {
            source,
            tx,
            pending: None,
            held_back: Default::default(),
            writing: HashSet::new(),
        };
        (reader, rx)
    }

    fn raw(wd: i32, mask: ReadFlags, cookie: u32, name: &str) -> Raw {
        Raw {
            wd,
            mask,
            cookie,
            name: Some(name.into()),
        }
    }

    fn sent(rx: &std::sync::mpsc::Receiver<Msg>) -> Vec<FsEvent> {
        rx.try_iter()
            .filter_map(|m| match m {
                Msg::Fs(e, _) => Some(e),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_rename_whose_second_half_is_read_late_is_a_rename_not_a_move_out() {
        let (mut r, rx) = reader(&["/p/share", "/p/share/x"]);
        assert!(r.feed(raw(1, ReadFlags::MOVED_FROM, 7, "f0")));
        // The reader held up past the pairing time before it reads on (a loaded
        // machine), with another process's event queued between the two halves.
        std::thread::sleep(PAIRING * 2);
        assert!(r.feed(raw(1, ReadFlags::ATTRIB, 0, "g")));
        assert!(r.feed(raw(2, ReadFlags::MOVED_TO, 7, "f0")));
        let events = sent(&rx);
        assert!(
            events
                .iter()
                .any(|e| matches!(e, FsEvent::Renamed { from, to, .. }
                if from == Path::new("/p/share/f0") && to == Path::new("/p/share/x/f0"))),
            "{events:?}"
        );
        assert!(
            !events.iter().any(|e| matches!(e, FsEvent::MovedOut { .. })),
            "{events:?}"
        );
        // What came between the halves is still handed on, after the rename.
        assert!(
            matches!(events.last(), Some(FsEvent::Changed { path, .. }) if path == Path::new("/p/share/g")),
            "{events:?}"
        );
    }
}
