//! The whole-filesystem event source: one fanotify mark per protected filesystem
//! (see `fanotify`) instead of one inotify watch per folder, and each event with
//! the process that caused it.
//!
//! The kernel names where an event happened by the handle of its folder and a
//! name. The source keeps a tree of folder handles (each folder's parent handle
//! and name, the protected folders at their paths), filled by the daemon's walks
//! (`watch`: the handle of each folder a walk holds) and by the events that make
//! or move a folder, which carry the folder's own handle. Renames and exchanges
//! move a folder in the tree in queue order, by that handle, so an event read
//! later still gets the path it had when it happened, and the files of a folder
//! already gone when their events are read (`rm -rf`) still get theirs. A folder
//! deleted stays in the tree until the queue has been read to its end.
//!
//! Events outside the protected folders are dropped here, after one look per
//! folder the tree does not know (`open_by_handle_at`, and where the kernel says
//! it is now). A folder that no longer opens (ESTALE) and that the tree does not
//! know was never reached by a walk nor made or moved in since: the scan that
//! fills the tree covers what was in it. The daemon's own events (its pid) are
//! dropped too, except its sync cookies, which must come back for `sync`.
//!
//! The kernel merges events on one object queued one after another: a created,
//! written and closed file is one event. They are handed on in inotify's order
//! (`Writing`, `Changed`, `Closed`, `Removed`), the order `apply` expects. A file
//! being written is held open by its own handle, never by its name: the event
//! may be read after its name went to another file (an exchange), and the
//! content kept for it must be its own.

use std::collections::{HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::event::{Actor, FsEvent, Held, Msg, Source, WatchError, wait_readable};
use super::fanotify::{self, Entry, Event, Fid, Group, Options};

/// How many folders found outside the protected ones are remembered as such.
const OUTSIDE_REMEMBERED: usize = 65_536;
/// How long a rename waits for the second half of an exchange once the queue is empty.
const PAIRING: Duration = Duration::from_millis(20);
/// How many files being written are remembered, to report each once (`Writing`).
const WRITING_REMEMBERED: usize = 65_536;

/// Where a folder the tree knows is.
#[derive(Debug, Clone)]
enum Place {
    /// A protected folder, at its path.
    Root(PathBuf),
    /// A folder inside one, by its parent's handle and its name there.
    Child { parent: Fid, name: OsString },
    /// Outside every protected folder.
    Outside,
}

/// What a folder handle means now.
#[derive(Debug, PartialEq, Eq)]
enum Found {
    Inside(PathBuf),
    Outside,
    Unknown,
}

#[derive(Default)]
struct Tree {
    nodes: HashMap<Fid, Place>,
    outside: usize,
    /// Folders deleted, forgotten once the queue has been read to its end: their
    /// files' events, queued before their own, are read by then.
    dead: Vec<Fid>,
}

impl Tree {
    /// The path of the folder `fid`, walking up its parents.
    fn find(&self, fid: &Fid) -> Found {
        let mut names: Vec<&OsStr> = Vec::new();
        let mut at = fid;
        // A cycle cannot come from the kernel's renames; bounded all the same.
        for _ in 0..4096 {
            match self.nodes.get(at) {
                None => return Found::Unknown,
                Some(Place::Outside) => return Found::Outside,
                Some(Place::Root(path)) => {
                    let mut path = path.clone();
                    for name in names.iter().rev() {
                        path.push(name);
                    }
                    return Found::Inside(path);
                }
                Some(Place::Child { parent, name }) => {
                    names.push(name);
                    at = parent;
                }
            }
        }
        Found::Unknown
    }

    fn set(&mut self, fid: Fid, place: Place) {
        if matches!(place, Place::Outside) {
            if self.outside >= OUTSIDE_REMEMBERED {
                self.forget_outside();
            }
            self.outside += 1;
        }
        if let Some(Place::Outside) = self.nodes.insert(fid, place) {
            self.outside -= 1;
        }
    }

    /// Forgets which folders are outside: one moved in may hold some of them.
    fn forget_outside(&mut self) {
        self.nodes.retain(|_, p| !matches!(p, Place::Outside));
        self.outside = 0;
    }

    /// Keeps only the protected folders: after lost events, the rescan's walk
    /// fills the tree again.
    fn keep_roots(&mut self) {
        self.nodes.retain(|_, p| matches!(p, Place::Root(_)));
        self.outside = 0;
        self.dead.clear();
    }
}

/// What the reading thread and the daemon's walks share.
struct Shared {
    group: Group,
    tree: Mutex<Tree>,
    /// A descriptor of each marked filesystem, by its id, to open handles through.
    mounts: Mutex<HashMap<[i32; 2], OwnedFd>>,
    roots: Mutex<Vec<PathBuf>>,
    /// The daemon's own process, whose events are its own writes.
    own_pid: i32,
}

/// The source, shared by the reading thread and the daemon's walks.
#[derive(Clone)]
pub struct WholeFs {
    shared: Arc<Shared>,
}

impl Source for WholeFs {
    fn watch(&self, dir: BorrowedFd<'_>, path: &Path) -> Result<(), WatchError> {
        WholeFs::watch(self, dir, path)
    }

    fn unwatch_tree(&self, dir: &Path) {
        WholeFs::unwatch_tree(self, dir)
    }
}

impl WholeFs {
    /// Makes the group and marks the filesystem of each protected folder; the
    /// error says why fanotify cannot be used (not root, a filesystem without
    /// handles), for the daemon to say so and use inotify. Then starts the
    /// reading thread, which hands every event to `tx`.
    pub fn start(tx: Sender<Msg>, roots: &[PathBuf]) -> Result<Self, WatchError> {
        Self::start_as(tx, roots, std::process::id() as i32)
    }

    /// `start`, taking the events of `own_pid` for the daemon's own.
    fn start_as(tx: Sender<Msg>, roots: &[PathBuf], own_pid: i32) -> Result<Self, WatchError> {
        let unlimited_queue = true;
        let group = Group::init(Options {
            unlimited_queue,
            pidfds: true,
        })
        .or_else(|e| {
            // Before Linux 5.15 there are no pidfds: the pid alone still says who.
            if e.raw_os_error() == Some(libc::EINVAL) {
                Group::init(Options {
                    unlimited_queue,
                    pidfds: false,
                })
            } else {
                Err(e)
            }
        })
        .map_err(WatchError::Init)?;
        let source = Self {
            shared: Arc::new(Shared {
                group,
                tree: Mutex::default(),
                mounts: Mutex::default(),
                roots: Mutex::default(),
                own_pid,
            }),
        };
        for root in roots {
            let dir = super::tree::open_dir(root).map_err(|source| WatchError::Folder {
                path: root.clone(),
                source,
            })?;
            source.add_root(dir.as_fd(), root)?;
        }
        let reader = Reader {
            shared: Arc::clone(&source.shared),
            tx,
            writing: HashSet::new(),
            pending: None,
            deferred: Vec::new(),
        };
        std::thread::Builder::new()
            .name("fanotify".into())
            .spawn(move || reader.run())
            .map_err(WatchError::Init)?;
        Ok(source)
    }

    fn tree(&self) -> std::sync::MutexGuard<'_, Tree> {
        self.shared.tree.lock().expect("the tree is never poisoned")
    }

    /// A protected folder: its filesystem marked (once), its handle a root of the tree.
    fn add_root(&self, dir: BorrowedFd<'_>, path: &Path) -> Result<(), WatchError> {
        let folder = |source: io::Error| WatchError::Folder {
            path: path.to_owned(),
            source,
        };
        let fid = fanotify::fid_of(dir).map_err(folder)?;
        {
            let mut mounts = self.shared.mounts.lock().expect("never poisoned");
            if let std::collections::hash_map::Entry::Vacant(vacant) = mounts.entry(fid.fsid) {
                self.shared
                    .group
                    .mark_filesystem(dir, fanotify::CHANGES)
                    .map_err(folder)?;
                // Not O_PATH: open_by_handle_at wants a descriptor it can use as a file.
                let held = rustix::fs::openat(
                    dir,
                    ".",
                    rustix::fs::OFlags::RDONLY
                        | rustix::fs::OFlags::DIRECTORY
                        | rustix::fs::OFlags::CLOEXEC,
                    rustix::fs::Mode::empty(),
                )
                .map_err(|e| folder(e.into()))?;
                vacant.insert(held);
            }
        }
        let mut roots = self.shared.roots.lock().expect("never poisoned");
        if !roots.iter().any(|r| r == path) {
            roots.push(path.to_owned());
        }
        drop(roots);
        let mut tree = self.tree();
        tree.set(fid, Place::Root(path.to_owned()));
        // Anything remembered as outside may be inside this one.
        tree.forget_outside();
        Ok(())
    }

    /// A folder a walk holds, at `path`: its handle goes into the tree, unless the
    /// tree knows it inside already (events read since, in queue order, say
    /// better where it is than a walk that may have started before they came).
    pub fn watch(&self, dir: BorrowedFd<'_>, path: &Path) -> Result<(), WatchError> {
        let is_root = self
            .shared
            .roots
            .lock()
            .expect("never poisoned")
            .iter()
            .any(|r| r == path);
        let inside = self
            .shared
            .roots
            .lock()
            .expect("never poisoned")
            .iter()
            .any(|r| path.starts_with(r));
        if is_root || !inside {
            // A protected folder, perhaps one added by a reload.
            return self.add_root(dir, path);
        }
        let folder = |source: io::Error| WatchError::Folder {
            path: path.to_owned(),
            source,
        };
        let fid = fanotify::fid_of(dir).map_err(folder)?;
        if let Found::Inside(_) = self.tree().find(&fid) {
            return Ok(());
        }
        let (Some(name), Ok(parent)) = (
            path.file_name(),
            rustix::fs::openat(
                dir,
                "..",
                rustix::fs::OFlags::PATH
                    | rustix::fs::OFlags::DIRECTORY
                    | rustix::fs::OFlags::CLOEXEC,
                rustix::fs::Mode::empty(),
            ),
        ) else {
            return Ok(());
        };
        let parent = fanotify::fid_of(parent.as_fd()).map_err(folder)?;
        self.tree().set(
            fid,
            Place::Child {
                parent,
                name: name.to_owned(),
            },
        );
        Ok(())
    }

    /// A protected folder given up: what is in it is outside from now on.
    pub fn unwatch_tree(&self, dir: &Path) {
        self.shared
            .roots
            .lock()
            .expect("never poisoned")
            .retain(|r| r != dir);
        let mut tree = self.tree();
        let gone: Vec<Fid> = tree
            .nodes
            .iter()
            .filter(|(_, p)| matches!(p, Place::Root(r) if r == dir))
            .map(|(f, _)| f.clone())
            .collect();
        for fid in gone {
            tree.set(fid, Place::Outside);
        }
    }
}

struct Reader {
    shared: Arc<Shared>,
    tx: Sender<Msg>,
    /// Files reported as being written and not closed since, by path.
    writing: HashSet<PathBuf>,
    /// A rename read, waiting to see whether the next event is its other half.
    pending: Option<PendingRename>,
    /// Deletions merged into an earlier event, waiting for their unlink's own
    /// place in the queue (see `handle`).
    deferred: Vec<Deletion>,
}

/// A deletion not handed on yet: where (folder handle and name), what, by whom.
struct Deletion {
    entry: Entry,
    object: Option<Fid>,
    is_dir: bool,
    by: Actor,
}

/// Bits that, beside a deletion in one event, say the kernel merged it into an
/// event queued before it.
const MERGED_WITH_DELETE: u64 =
    fanotify::FAN_CREATE | fanotify::FAN_MODIFY | fanotify::FAN_CLOSE_WRITE | fanotify::FAN_ATTRIB;

/// A rename read and not handed on yet (see `Reader::renamed`).
struct PendingRename {
    from: Option<PathBuf>,
    to: Option<PathBuf>,
    old: Entry,
    new: Entry,
    object: Option<Fid>,
    by: Actor,
}

impl PendingRename {
    /// Whether `next` is this rename's other half in an exchange: the same two
    /// places the other way, moving another thing.
    fn reversed_by(&self, next: &PendingRename) -> bool {
        self.old == next.new
            && self.new == next.old
            && self.object.is_some()
            && next.object.is_some()
            && self.object != next.object
    }
}

impl Reader {
    fn run(mut self) {
        let mut buf = vec![0u8; fanotify::READ_BUFFER];
        loop {
            // A rename waits for its other half a moment: the kernel queues the two
            // halves of an exchange one after the other, not at once.
            let timeout = self.pending.as_ref().map(|_| PAIRING);
            if !wait_readable(self.shared.group.as_fd(), timeout) {
                if !self.flush_rename() {
                    return;
                }
                continue;
            }
            // Read until the queue is empty, which `drained` needs to know.
            loop {
                match self.shared.group.read(&mut buf) {
                    Ok(events) if events.is_empty() => {
                        if !self.drained() {
                            return;
                        }
                        break;
                    }
                    Ok(events) => {
                        for event in events {
                            if !self.handle(event) {
                                return;
                            }
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        let message = format!("reading fanotify events failed: {e}");
                        if self
                            .tx
                            .send(Msg::Fs(FsEvent::Error { message }, None))
                            .is_err()
                        {
                            return;
                        }
                        std::thread::sleep(Duration::from_millis(100));
                        break;
                    }
                }
            }
        }
    }

    /// The queue was read to its end: every event about a deleted folder's files
    /// has been read, so the folder can be forgotten.
    fn drained(&mut self) -> bool {
        // The queue is read to its end: every deletion held back has happened by now.
        if !self.release_deletions() {
            return false;
        }
        let mut tree = self.shared.tree.lock().expect("never poisoned");
        for fid in std::mem::take(&mut tree.dead) {
            if let Some(Place::Child { .. }) = tree.nodes.get(&fid) {
                tree.nodes.remove(&fid);
            }
        }
        true
    }

    /// False once the daemon is gone.
    fn send(&self, event: FsEvent, by: &Actor) -> bool {
        tracing::trace!("fanotify: {event:?} by {}", by.pid);
        self.tx.send(Msg::Fs(event, Some(by.clone()))).is_ok()
    }

    fn handle(&mut self, mut event: Event) -> bool {
        if !event.is(fanotify::FAN_RENAME) && !self.flush_rename() {
            return false;
        }
        if event.is(fanotify::FAN_Q_OVERFLOW) {
            if !self.release_deletions() {
                return false;
            }
            // Events were lost, renames among them: the tree is filled again by the
            // rescan's walk.
            self.shared
                .tree
                .lock()
                .expect("never poisoned")
                .keep_roots();
            self.writing.clear();
            return self.tx.send(Msg::Fs(FsEvent::Rescan, None)).is_ok();
        }
        let by = Actor {
            pid: event.pid,
            pidfd: event.pidfd.take().map(Arc::new),
        };
        let own = event.pid == self.shared.own_pid;
        let is_dir = event.is(fanotify::FAN_ONDIR);
        if event.is(fanotify::FAN_RENAME) {
            let (Some(old), Some(new)) = (&event.old, &event.new) else {
                return true;
            };
            if own && !is_cookie_name(&old.name) && !is_cookie_name(&new.name) {
                return true;
            }
            return self.renamed(old, new, event.object.as_ref(), is_dir, &by);
        }
        // Events on a file's inode with no name (its link count, a write through a
        // descriptor of a file already unlinked) say nothing a path could, except
        // when a deletion merged into an earlier event waits for it (`deferred`).
        let Some(entry) = &event.entry else {
            if event.is(fanotify::FAN_ATTRIB)
                && let Some(fid) = &event.object
            {
                return self.release_deletion(fid);
            }
            return true;
        };
        if own && !is_cookie_name(&entry.name) {
            return true;
        }
        let Some(path) = self.path_of(entry) else {
            return true;
        };
        let object = event.object.as_ref();
        // Another file at the path now than the one the event is about: it was
        // renamed away (or exchanged) since, and a rename behind in the queue says
        // where. Looked at by name now, the path would show the other file's
        // content as this one's, so the event says nothing of the path; only the
        // file being written is still held, by its own handle.
        let elsewhere = !is_dir && object.is_some_and(|fid| self.moved_away(fid, &path));
        if event.is(fanotify::FAN_CREATE) {
            if is_dir {
                if let Some(fid) = object {
                    self.tree().set(
                        fid.clone(),
                        Place::Child {
                            parent: entry.dir.clone(),
                            name: entry.name.clone(),
                        },
                    );
                }
                if !self.send(
                    FsEvent::Changed {
                        path: path.clone(),
                        is_new: true,
                    },
                    &by,
                ) {
                    return false;
                }
            } else {
                // A new name for a file already there (`ln`), a link or a special
                // file: nothing is being written.
                let new_file = object
                    .and_then(|fid| self.open(fid, libc::O_PATH))
                    .and_then(|fd| rustix::fs::fstat(&fd).ok())
                    .is_some_and(|st| {
                        rustix::fs::FileType::from_raw_mode(st.st_mode)
                            == rustix::fs::FileType::RegularFile
                            && st.st_nlink == 1
                    });
                if new_file && !self.writing(&path, object, &by) {
                    return false;
                }
                if !elsewhere
                    && !self.send(
                        FsEvent::Changed {
                            path: path.clone(),
                            is_new: false,
                        },
                        &by,
                    )
                {
                    return false;
                }
            }
        }
        if event.is(fanotify::FAN_MODIFY) && !is_dir && !self.writing(&path, object, &by) {
            return false;
        }
        if event.is(fanotify::FAN_ATTRIB)
            && !elsewhere
            && !self.send(
                FsEvent::Changed {
                    path: path.clone(),
                    is_new: false,
                },
                &by,
            )
        {
            return false;
        }
        if event.is(fanotify::FAN_CLOSE_WRITE) && !is_dir {
            self.writing.remove(&path);
            if !elsewhere && !self.send(FsEvent::Closed { path: path.clone() }, &by) {
                return false;
            }
        }
        if event.is(fanotify::FAN_DELETE) {
            self.writing.remove(&path);
            let deletion = Deletion {
                entry: entry.clone(),
                object: object.cloned(),
                is_dir,
                by,
            };
            if event.is(MERGED_WITH_DELETE) {
                // Merged into an event queued earlier: the deletion may have come
                // after renames queued since (its folder renamed, then the file
                // deleted there). Handed on where the unlink really was: the link
                // count's own event, queued at the unlink, or the queue's end.
                self.deferred.push(deletion);
                return true;
            }
            return self.send_deletion(deletion);
        }
        true
    }

    /// A deletion held back (see `deferred`) whose unlink's own event came: handed
    /// on now, at the path its folder has at this point of the queue.
    fn release_deletion(&mut self, fid: &Fid) -> bool {
        let Some(i) = self
            .deferred
            .iter()
            .position(|d| d.object.as_ref() == Some(fid))
        else {
            return true;
        };
        let deletion = self.deferred.remove(i);
        self.send_deletion(deletion)
    }

    /// Hands on every deletion held back, in the order they came.
    fn release_deletions(&mut self) -> bool {
        let deferred = std::mem::take(&mut self.deferred);
        deferred.into_iter().all(|d| self.send_deletion(d))
    }

    fn send_deletion(&mut self, deletion: Deletion) -> bool {
        let Some(path) = self.path_of(&deletion.entry) else {
            return true;
        };
        if deletion.is_dir
            && let Some(fid) = deletion.object
        {
            self.tree().dead.push(fid);
        }
        self.send(
            FsEvent::Removed {
                path,
                was_dir: deletion.is_dir,
            },
            &deletion.by,
        )
    }

    /// A rename: one event with both places and the thing moved. A folder moves in
    /// the tree at once, by its own handle. Handed on one event later: the kernel
    /// reports an exchange as two renames one after the other, each moving its own
    /// thing, and the pair is handed on as one `Exchanged`.
    fn renamed(
        &mut self,
        old: &Entry,
        new: &Entry,
        object: Option<&Fid>,
        is_dir: bool,
        by: &Actor,
    ) -> bool {
        let from = self.path_of(old);
        let to = self.path_of(new);
        if is_dir && let Some(fid) = object {
            let mut tree = self.tree();
            if to.is_some() {
                if from.is_none() {
                    // Moved in: what was remembered outside may be inside it now.
                    tree.forget_outside();
                }
                tree.set(
                    fid.clone(),
                    Place::Child {
                        parent: new.dir.clone(),
                        name: new.name.clone(),
                    },
                );
            } else {
                tree.set(fid.clone(), Place::Outside);
            }
        }
        for path in [&from, &to].into_iter().flatten() {
            self.writing.remove(path);
        }
        let this = PendingRename {
            from,
            to,
            old: old.clone(),
            new: new.clone(),
            object: object.cloned(),
            by: by.clone(),
        };
        match self.pending.take() {
            Some(first) if first.reversed_by(&this) => match (first.from, first.to) {
                (Some(a), Some(b)) => self.send(FsEvent::Exchanged { a, b }, &first.by),
                (from, to) => {
                    let first = PendingRename { from, to, ..first };
                    self.send_rename(first) && self.send_rename(this)
                }
            },
            Some(first) => {
                self.pending = Some(this);
                self.send_rename(first)
            }
            None => {
                self.pending = Some(this);
                true
            }
        }
    }

    /// Hands on the rename waiting for a second half that did not come.
    fn flush_rename(&mut self) -> bool {
        match self.pending.take() {
            Some(rename) => self.send_rename(rename),
            None => true,
        }
    }

    fn send_rename(&self, rename: PendingRename) -> bool {
        let by = &rename.by;
        match (rename.from, rename.to) {
            (Some(from), Some(to)) => self.send(FsEvent::Renamed { from, to }, by),
            (Some(path), None) => self.send(FsEvent::MovedOut { path }, by),
            (None, Some(path)) => self.send(FsEvent::Changed { path, is_new: true }, by),
            (None, None) => true,
        }
    }

    fn tree(&self) -> std::sync::MutexGuard<'_, Tree> {
        self.shared.tree.lock().expect("the tree is never poisoned")
    }

    /// The path of `entry` inside the protected folders, or `None` outside them.
    fn path_of(&mut self, entry: &Entry) -> Option<PathBuf> {
        let found = self.tree().find(&entry.dir);
        let dir = match found {
            Found::Inside(path) => path,
            Found::Outside => return None,
            Found::Unknown => self.look_up(&entry.dir)?,
        };
        if entry.name == "." {
            Some(dir)
        } else {
            Some(dir.join(&entry.name))
        }
    }

    /// A folder the tree does not know: where the kernel says it is now. Inside a
    /// protected folder, it and the folders above it up to that one go into the
    /// tree; outside, it is remembered as outside. Gone (ESTALE): see the opening.
    fn look_up(&mut self, fid: &Fid) -> Option<PathBuf> {
        let fd = self.open(fid, libc::O_PATH | libc::O_DIRECTORY)?;
        let path = fanotify::path_of(fd.as_fd()).ok()?;
        let roots = self.shared.roots.lock().expect("never poisoned").clone();
        let Some(root) = roots
            .iter()
            .filter(|r| path.starts_with(r))
            .max_by_key(|r| r.as_os_str().len())
        else {
            self.tree().set(fid.clone(), Place::Outside);
            return None;
        };
        // The chain from the folder up to the protected one, each by its handle.
        let mut at = fd;
        let mut here = path.clone();
        let mut fid = fid.clone();
        while here != *root {
            let (Some(name), Ok(parent)) = (
                here.file_name().map(OsStr::to_owned),
                rustix::fs::openat(
                    &at,
                    "..",
                    rustix::fs::OFlags::PATH
                        | rustix::fs::OFlags::DIRECTORY
                        | rustix::fs::OFlags::CLOEXEC,
                    rustix::fs::Mode::empty(),
                ),
            ) else {
                return None;
            };
            let parent_fid = fanotify::fid_of(parent.as_fd()).ok()?;
            let known = !matches!(self.tree().find(&parent_fid), Found::Unknown);
            self.tree().set(
                fid,
                Place::Child {
                    parent: parent_fid.clone(),
                    name,
                },
            );
            if known {
                break;
            }
            fid = parent_fid;
            at = parent;
            here.pop();
        }
        Some(path)
    }

    /// Whether another file than `fid` is at `path` now.
    fn moved_away(&self, fid: &Fid, path: &Path) -> bool {
        fanotify::fid_at(path, fid.fsid).is_ok_and(|here| here != *fid)
    }

    /// Opens the object `fid` through a descriptor of its filesystem.
    fn open(&self, fid: &Fid, flags: libc::c_int) -> Option<OwnedFd> {
        let mounts = self.shared.mounts.lock().expect("never poisoned");
        let mount = mounts.get(&fid.fsid)?;
        fanotify::open_fid(mount.as_fd(), fid, flags).ok()
    }

    /// Reports that a file is being written, once until it is closed, held open by
    /// its own handle (see the opening).
    fn writing(&mut self, path: &Path, object: Option<&Fid>, by: &Actor) -> bool {
        if self.writing.contains(path) {
            return true;
        }
        if self.writing.len() >= WRITING_REMEMBERED {
            // Forgetting only costs a repeated report.
            self.writing.clear();
        }
        self.writing.insert(path.to_owned());
        let held = object.and_then(|fid| {
            Held::open_with(|| {
                self.open(fid, libc::O_RDONLY | libc::O_NONBLOCK | libc::O_NOFOLLOW)
                    .map(std::fs::File::from)
            })
        });
        self.send(
            FsEvent::Writing {
                path: path.to_owned(),
                held,
            },
            by,
        )
    }
}

fn is_cookie_name(name: &OsStr) -> bool {
    crate::names::is_cookie(Path::new(name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::watch::test_disk::TestDisk;
    use std::sync::mpsc::Receiver;

    /// The source on a filesystem of its own, taking nobody's events for its own,
    /// with every folder already there watched as a walk would.
    fn source(disk: &TestDisk, folders: &[&str]) -> (WholeFs, Receiver<Msg>) {
        let (tx, rx) = std::sync::mpsc::channel();
        let root = disk.path.clone();
        let source = WholeFs::start_as(tx, std::slice::from_ref(&root), -1).unwrap();
        for f in folders {
            let dir = super::super::tree::open_dir(&disk.join(f)).unwrap();
            source.watch(dir.as_fd(), &disk.join(f)).unwrap();
        }
        (source, rx)
    }

    /// What came until the cookie `end` was made, which marks the end.
    fn until(rx: &Receiver<Msg>, end: &Path) -> Vec<FsEvent> {
        let mut got = Vec::new();
        loop {
            match rx.recv_timeout(Duration::from_secs(10)).expect("events") {
                Msg::Fs(FsEvent::Changed { path, .. }, _) if path == end => return got,
                Msg::Fs(e, by) => {
                    assert!(by.is_some_and(|b| b.pid == std::process::id() as i32));
                    got.push(e)
                }
                _ => {}
            }
        }
    }

    #[test]
    fn exchanges_and_deleted_folders_keep_the_paths_they_had_in_queue_order() {
        let Some(disk) = TestDisk::new("whole_fs exchanges") else {
            return;
        };
        for f in ["x/deep", "y"] {
            std::fs::create_dir_all(disk.join(f)).unwrap();
        }
        std::fs::write(disk.join("f0"), "0").unwrap();
        std::fs::write(disk.join("f1"), "1").unwrap();
        std::fs::write(disk.join("x/deep/old"), "old").unwrap();
        let (_source, rx) = source(&disk, &["x", "x/deep", "y"]);
        let exchange = |a: &str, b: &str| {
            use rustix::fs::{CWD, RenameFlags, renameat_with};
            renameat_with(CWD, disk.join(a), CWD, disk.join(b), RenameFlags::EXCHANGE).unwrap();
        };
        exchange("f1", "f0");
        exchange("x", "y");
        // x's folder is y now: a file made in it is y's.
        std::fs::write(disk.join("y/deep/new"), "new").unwrap();
        std::fs::remove_dir_all(disk.join("y")).unwrap();
        let end = disk.join(".undelete-sync-1-1");
        std::fs::write(&end, "").unwrap();
        let got = until(&rx, &end);
        let p = |s: &str| disk.join(s);
        let exchanges: Vec<&FsEvent> = got
            .iter()
            .filter(|e| matches!(e, FsEvent::Exchanged { .. } | FsEvent::Renamed { .. }))
            .collect();
        assert_eq!(
            exchanges,
            [
                &FsEvent::Exchanged {
                    a: p("f1"),
                    b: p("f0")
                },
                &FsEvent::Exchanged {
                    a: p("x"),
                    b: p("y")
                },
            ],
            "{got:#?}"
        );
        for removed in ["y/deep/new", "y/deep/old", "y/deep", "y"] {
            assert!(
                got.iter()
                    .any(|e| matches!(e, FsEvent::Removed { path, .. } if *path == p(removed))),
                "{removed} not removed: {got:#?}"
            );
        }
        assert!(
            !got.iter().any(|e| format!("{e:?}").contains("/x/")),
            "{got:#?}"
        );
    }
}
