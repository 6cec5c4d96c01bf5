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
//! deleted stays in the tree until the queue has been read to its end. An
//! exchange comes as two renames, one after the other from one process; events
//! read between them wait and follow the pair.
//!
//! Events outside the protected folders are dropped here, after one look per
//! folder the tree does not know (`open_by_handle_at`, and where the kernel says
//! it is now). A folder that no longer opens (ESTALE) and that the tree does not
//! know was never reached by a walk nor made or moved in since: the scan that
//! fills the tree covers what was in it. The daemon's own events (its pid) are
//! dropped too, except its sync cookies, which must come back for `sync`. The
//! vault's folders are told to be quiet (an ignore mark on each, as the first
//! of the daemon's own events in it is read): its index, journal and copies are
//! written on every capture, and on the vault's filesystem each write would
//! otherwise be queued, read and dropped (a third of the daemon's time at
//! start-up on one disk).
//!
//! The kernel merges events on one object queued one after another: a created,
//! written and closed file is one event. They are handed on in inotify's order
//! (`Writing`, `Changed`, `Closed`, `Removed`), the order `apply` expects. A file
//! being written is held open by its own handle, never by its name: the event
//! may be read after its name went to another file (an exchange), and the
//! content kept for it must be its own. For the same reason each event carries
//! the handle of the thing it is about, and the daemon looks at a name only
//! while it still holds that thing (see `capture::Job::object`).

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

mod reader;

use reader::Reader;

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
    /// The vault, whose folders only the daemon writes in: told to be quiet.
    vault: PathBuf,
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

    /// Each deletion's folder is named by its handle, where it is at that point of
    /// the queue (see `Reader::path_of`).
    fn names_every_deletion(&self) -> bool {
        true
    }
}

impl WholeFs {
    /// Makes the group and marks the filesystem of each protected folder; the
    /// error says why fanotify cannot be used (not root, a filesystem without
    /// handles), for the daemon to say so and use inotify. Then starts the
    /// reading thread, which hands every event to `tx`.
    pub fn start(tx: Sender<Msg>, roots: &[PathBuf], vault: &Path) -> Result<Self, WatchError> {
        Self::start_as(tx, roots, std::process::id() as i32, vault)
    }

    /// `start`, taking the events of `own_pid` for the daemon's own.
    fn start_as(
        tx: Sender<Msg>,
        roots: &[PathBuf],
        own_pid: i32,
        vault: &Path,
    ) -> Result<Self, WatchError> {
        let source = Self::open_as(roots, own_pid, vault)?;
        let reader = Reader::new(Arc::clone(&source.shared), tx);
        std::thread::Builder::new()
            .name("fanotify".into())
            .spawn(move || reader.run())
            .map_err(WatchError::Init)?;
        Ok(source)
    }

    /// The group made and the filesystems marked, with no thread reading yet.
    fn open_as(roots: &[PathBuf], own_pid: i32, vault: &Path) -> Result<Self, WatchError> {
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
                // As the kernel names folders: a relative or linked path would
                // never match, and the vault's folders would go on being read.
                vault: std::fs::canonicalize(vault).unwrap_or_else(|_| vault.to_owned()),
            }),
        };
        for root in roots {
            let dir = super::tree::open_dir(root).map_err(|source| WatchError::Folder {
                path: root.clone(),
                source,
            })?;
            source.add_root(dir.as_fd(), root)?;
        }
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
        let (Some(name), Ok(parent)) = (path.file_name(), open_parent(dir)) else {
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

/// The folder above `dir`, by descriptor (`..` of the folder itself, never a path
/// found again), only to be named by its handle.
fn open_parent(dir: impl AsFd) -> rustix::io::Result<OwnedFd> {
    rustix::fs::openat(
        dir,
        "..",
        rustix::fs::OFlags::PATH | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
}

#[cfg(test)]
mod tests;
