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

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::OsStr;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustix::fs::FileType;
use rustix::fs::inotify::{self, CreateFlags, ReadFlags, WatchFlags};
use rustix::io::Errno;

use super::event::{FsEvent, Held, Msg, Source, WatchError, below, wait_readable};

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

/// One watched folder.
struct Watched {
    path: PathBuf,
    /// Its inode, to tell an exchange of two folders from a rename over one.
    inode: u64,
}

#[derive(Default)]
struct Watches {
    by_wd: HashMap<i32, Watched>,
    by_path: BTreeMap<PathBuf, i32>,
    /// Watches of folders that left the tree: removed, their queued events ignored
    /// until the kernel confirms the removal (IN_IGNORED).
    detached: HashSet<i32>,
}

impl Watches {
    fn insert(&mut self, wd: i32, path: &Path, inode: u64) {
        // The same folder seen under a new path (a walk after a rename): one entry.
        if let Some(old) = self.by_wd.get(&wd)
            && self.by_path.get(&old.path) == Some(&wd)
        {
            self.by_path.remove(&old.path.clone());
        }
        self.detached.remove(&wd);
        self.by_wd.insert(
            wd,
            Watched {
                path: path.to_owned(),
                inode,
            },
        );
        self.by_path.insert(path.to_owned(), wd);
    }

    fn forget(&mut self, wd: i32) {
        self.detached.remove(&wd);
        if let Some(w) = self.by_wd.remove(&wd)
            && self.by_path.get(&w.path) == Some(&wd)
        {
            self.by_path.remove(&w.path);
        }
    }

    /// The watches at and below `dir`.
    fn subtree(&self, dir: &Path) -> Vec<(PathBuf, i32)> {
        self.by_path
            .range(dir.to_owned()..)
            .take_while(|(p, _)| p.starts_with(dir))
            .map(|(p, wd)| (p.clone(), *wd))
            .collect()
    }

    /// Gives every watch at and below `from` the path it has below `to` now.
    fn rebase(&mut self, from: &Path, to: &Path) {
        let moved = self.subtree(from);
        for (path, _) in &moved {
            self.by_path.remove(path);
        }
        for (path, wd) in moved {
            let new = below(to, &path, from);
            if let Some(w) = self.by_wd.get_mut(&wd) {
                w.path = new.clone();
            }
            self.by_path.insert(new, wd);
        }
    }

    /// Exchanges the watches at and below `a` with those at and below `b`.
    fn exchange(&mut self, a: &Path, b: &Path) {
        let (at_a, at_b) = (self.subtree(a), self.subtree(b));
        for (path, _) in at_a.iter().chain(&at_b) {
            self.by_path.remove(path);
        }
        for (moved, from, to) in [(at_a, a, b), (at_b, b, a)] {
            for (path, wd) in moved {
                let new = below(to, &path, from);
                if let Some(w) = self.by_wd.get_mut(&wd) {
                    w.path = new.clone();
                }
                self.by_path.insert(new, wd);
            }
        }
    }
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
        let reader = Reader {
            source: source.clone(),
            tx,
            pending: None,
            held_back: std::collections::VecDeque::new(),
            writing: HashSet::new(),
        };
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

struct Reader {
    source: Inotify,
    tx: Sender<Msg>,
    pending: Option<PendingMove>,
    /// Events read after a rename-from and before its rename-to. The kernel queues
    /// the two halves in two steps, and a process working inside the renamed folder
    /// meanwhile (deleting its files, say) gets its events queued in between, under
    /// the folder's old path. Held back, they are turned into paths once the pair is
    /// known: the new ones, or none for a folder that left the tree.
    held_back: std::collections::VecDeque<Raw>,
    /// Files reported as being written and not closed since, by path.
    writing: HashSet<PathBuf>,
}

impl Reader {
    fn run(mut self) {
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
                });
            }
            // Moved in from outside: new to us.
            if is_dir {
                self.watch_new(&path);
            }
            return self.send(FsEvent::Changed { path, is_new: true });
        }
        if mask.contains(ReadFlags::CREATE) {
            if is_dir {
                // Before the event goes on: the daemon's walk must find the watch there.
                self.watch_new(&path);
                return self.send(FsEvent::Changed { path, is_new: true });
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
            return self.send(FsEvent::Closed { path });
        }
        if mask.contains(ReadFlags::ATTRIB) {
            return self.send(FsEvent::Changed {
                path,
                is_new: false,
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

    /// Watches a folder that just appeared, opened without passing through a
    /// symlink (see `tree`), so a name swapped for a link never gets a watch on
    /// the folder it points to; the daemon's walk of it comes after.
    fn watch_new(&mut self, path: &Path) {
        let Ok(dir) = super::tree::open_dir(path) else {
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
    use super::*;

    fn watches(paths: &[&str]) -> Watches {
        let mut w = Watches::default();
        for (i, p) in paths.iter().enumerate() {
            w.insert(i as i32 + 1, Path::new(p), i as u64 + 100);
        }
        w
    }

    fn path_of(w: &Watches, wd: i32) -> &str {
        w.by_wd[&wd].path.to_str().unwrap()
    }

    #[test]
    fn a_rename_rebases_the_folder_and_everything_below_it_only() {
        let mut w = watches(&["/s", "/s/a", "/s/a/b", "/s/a0", "/s/ab"]);
        w.rebase(Path::new("/s/a"), Path::new("/s/z"));
        assert_eq!(path_of(&w, 2), "/s/z");
        assert_eq!(path_of(&w, 3), "/s/z/b");
        assert_eq!(path_of(&w, 4), "/s/a0");
        assert_eq!(path_of(&w, 5), "/s/ab");
        assert_eq!(w.by_path.get(Path::new("/s/z/b")), Some(&3));
        assert!(!w.by_path.contains_key(Path::new("/s/a")));
    }

    #[test]
    fn an_exchange_swaps_both_subtrees() {
        let mut w = watches(&["/s/a", "/s/a/x", "/s/b", "/s/b/y"]);
        w.exchange(Path::new("/s/a"), Path::new("/s/b"));
        assert_eq!(path_of(&w, 1), "/s/b");
        assert_eq!(path_of(&w, 2), "/s/b/x");
        assert_eq!(path_of(&w, 3), "/s/a");
        assert_eq!(path_of(&w, 4), "/s/a/y");
        assert_eq!(w.by_path.len(), 4);
    }

    /// A reader with no thread of its own: the events are fed to it by hand.
    fn reader(paths: &[&str]) -> (Reader, std::sync::mpsc::Receiver<Msg>) {
        let (tx, rx) = std::sync::mpsc::channel();
        let fd = inotify::init(CreateFlags::CLOEXEC | CreateFlags::NONBLOCK).unwrap();
        let source = Inotify {
            fd: Arc::new(fd),
            watches: Arc::new(Mutex::new(watches(paths))),
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
                .any(|e| matches!(e, FsEvent::Renamed { from, to }
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
