//! The daemon's own event type: what every event source (inotify today) reports,
//! already in the daemon's terms, and what the daemon asks of a source (`Source`).
//! Sources convert the kernel's events into it in one place each (see `inotify`)
//! and hand it on; nothing else knows their kinds. A file a source holds open
//! (`Held`) and path arithmetic for renames (`below`) are shared by all of them.

use std::cell::RefCell;
use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::Sender;

use crate::model::Person;

/// What the daemon asks of an event source besides its events: to watch each
/// folder its walks reach (by the descriptor the walk holds, before the walk reads
/// it), and to stop watching a protected folder given up. Each source starts its
/// own reading thread, which hands `Msg::Fs` to the loop's channel.
pub trait Source: Send {
    fn watch(&self, dir: BorrowedFd<'_>, path: &Path) -> Result<(), WatchError>;
    fn unwatch_tree(&self, dir: &Path);

    /// Whether every unlink in the protected folders comes as its own `Removed`, at
    /// the path its folder had at that point of the events, queue overflows aside
    /// (`Rescan`). Then a file missing from a folder just moved is no loss to guess
    /// from the disk: its deletion is behind in the queue, with who made it, and the
    /// daemon records it there, with the content any file held open since still has.
    fn names_every_deletion(&self) -> bool {
        false
    }
}

/// Why a folder could not be watched.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    /// The system's limit on watches (`fs.inotify.max_user_watches`) is reached.
    #[error("the system limit on watched folders is reached")]
    Limit,
    #[error("cannot start watching files: {0}")]
    Init(io::Error),
    #[error("cannot watch {path}: {source}")]
    Folder { path: PathBuf, source: io::Error },
}

/// How many files being written are held open at most (see `Held`).
const HELD_AT_MOST: usize = 256;

static HELD_OPEN: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// A file being written, held open from the moment it was seen: once its name is
/// unlinked, its content can still be read through this, until the last close.
/// So a file written, closed and deleted at once, before the daemon could look,
/// is still kept whole. At most `HELD_AT_MOST` at a time.
#[derive(Debug, Clone)]
pub struct Held(Arc<HeldFile>);

#[derive(Debug)]
struct HeldFile(std::fs::File);

impl Drop for HeldFile {
    fn drop(&mut self) {
        HELD_OPEN.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

impl PartialEq for Held {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for Held {}

impl Held {
    /// Opens the regular file at `path` for reading, never through a symlink and
    /// never blocking; `None` past the limit, or when it is not a regular file.
    pub(super) fn open(path: &Path) -> Option<Self> {
        Self::open_with(|| super::tree::open_file(path).ok())
    }

    /// Holds the file `open` gives, if it is a regular file; `None` past the limit.
    pub(super) fn open_with(open: impl FnOnce() -> Option<std::fs::File>) -> Option<Self> {
        use std::sync::atomic::Ordering;
        if HELD_OPEN.fetch_add(1, Ordering::Relaxed) >= HELD_AT_MOST {
            HELD_OPEN.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        let file = open().filter(|f| f.metadata().is_ok_and(|m| m.is_file()));
        match file {
            Some(file) => Some(Self(Arc::new(HeldFile(file)))),
            None => {
                HELD_OPEN.fetch_sub(1, Ordering::Relaxed);
                None
            }
        }
    }

    pub fn file(&self) -> &std::fs::File {
        &self.0.0
    }
}

/// `path`, which is at or below `from`, as it is at or below `to`.
pub fn below(to: &Path, path: &Path, from: &Path) -> PathBuf {
    match path.strip_prefix(from) {
        // Not `to.join("")`: that would add a trailing slash.
        Ok(rest) if !rest.as_os_str().is_empty() => to.join(rest),
        _ => to.to_owned(),
    }
}

/// Waits until a source's descriptor `fd` has events; false when `timeout` passed
/// first. Shared by the sources' reading threads.
pub fn wait_readable(fd: BorrowedFd<'_>, timeout: Option<std::time::Duration>) -> bool {
    let mut fds = [rustix::event::PollFd::new(
        &fd,
        rustix::event::PollFlags::IN,
    )];
    let timeout = timeout.map(|t| rustix::event::Timespec {
        tv_sec: t.as_secs() as i64,
        tv_nsec: i64::from(t.subsec_nanos()),
    });
    loop {
        match rustix::event::poll(&mut fds, timeout.as_ref()) {
            Ok(n) => return n > 0,
            Err(rustix::io::Errno::INTR) => continue,
            // Reading says what is wrong.
            Err(_) => return true,
        }
    }
}

/// The kernel's own name of one file or folder, whatever its name (a file handle),
/// where the source has one (fanotify does, inotify does not).
pub type Object = super::fanotify::Fid;

/// What the daemon learns from the kernel. `object`, where the source knows it, is
/// the thing the event is about: by the time the daemon looks, its name may be
/// another's (renamed over, or made again after a deletion), whose own events are
/// still behind in the queue, and what the name holds then is not this one's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FsEvent {
    /// Something appeared, was moved in, or had its attributes changed: look at it
    /// again. `is_new` asks for folders to be walked.
    Changed {
        path: PathBuf,
        is_new: bool,
        object: Option<Object>,
    },
    /// A file was created or written to and is not closed yet: a copy made now may
    /// not hold its last content. Reported once until `Closed`, with the file held
    /// open where the source could, so its content can be read after an unlink.
    Writing { path: PathBuf, held: Option<Held> },
    /// A file open for writing was closed: its content is complete (for now).
    Closed {
        path: PathBuf,
        object: Option<Object>,
    },
    /// A name was unlinked.
    Removed { path: PathBuf, was_dir: bool },
    /// A rename inside the watched trees, both halves paired by the source. An
    /// exchange of two names comes as two renames, one each way.
    Renamed {
        from: PathBuf,
        to: PathBuf,
        object: Option<Object>,
    },
    /// Two names exchanged (`renameat2(RENAME_EXCHANGE)`), with everything below
    /// them, known for certain: the source saw both halves move the two things by
    /// their handles (fanotify). inotify cannot tell, and sends two `Renamed`.
    Exchanged { a: PathBuf, b: PathBuf },
    /// Renamed out of every watched tree: it and everything below it left.
    MovedOut { path: PathBuf },
    /// The kernel queue overflowed: events were lost, the trees must be rescanned.
    Rescan,
    /// The inotify watch limit was hit: part of the tree is not watched.
    WatchLimit { path: Option<PathBuf> },
    /// Any other watch error, logged and survived.
    Error { message: String },
}

/// The process that caused an event, where the source knows it (fanotify does,
/// inotify does not). The pidfd, when the kernel gave one, pins that very process:
/// reading `/proc` through it never names a newer process that reused the pid.
///
/// Once the person is read (see `identify::forward`), the pidfd is let go: the
/// event may wait a long time in the loop's queue, and thousands of them, each
/// with a descriptor, would take every file the daemon may open.
#[derive(Debug, Clone)]
pub struct Actor {
    pub pid: i32,
    pub pidfd: Option<Arc<OwnedFd>>,
    /// Who it is, read on the way to the loop; then there is no pidfd.
    pub person: Option<Arc<Person>>,
}

impl Actor {
    /// The process of an event just read: `pid`, and the pidfd the kernel gave with
    /// it, shared with the event read before when both are of one process (see
    /// `shared_pidfd`).
    pub fn read_now(pid: i32, pidfd: Option<OwnedFd>) -> Self {
        Self {
            pid,
            pidfd: pidfd.map(|fd| shared_pidfd(pid, fd)),
            person: None,
        }
    }

    /// The person is known: the pidfd is no longer needed.
    pub fn identified(&mut self, person: Arc<Person>) {
        self.person = Some(person);
        self.pidfd = None;
    }
}

thread_local! {
    /// The pidfd last handed out on this (the source's reading) thread: its pid, its
    /// inode, and the descriptor.
    static LAST_PIDFD: RefCell<Option<(i32, u64, Arc<OwnedFd>)>> = const { RefCell::new(None) };
}

/// The magic number of pidfs (`PID_FS_MAGIC`), where each process has an inode of its own.
const PID_FS_MAGIC: libc::__fsword_t = 0x5049_4446;

/// `fd`, or the pidfd of the same process handed out just before on this thread,
/// `fd` being closed then. The kernel gives a new pidfd with every event: a burst
/// of one `rm`, or of one smbd serving a PC, read while the events before it wait
/// to be identified, would otherwise hold one descriptor per event. Two pidfds are
/// of one process when they have one inode in pidfs (Linux 6.9 and later); before
/// that every pidfd had the same anonymous inode, and none is shared.
fn shared_pidfd(pid: i32, fd: OwnedFd) -> Arc<OwnedFd> {
    let on_pidfs = rustix::fs::fstatfs(&fd).is_ok_and(|fs| fs.f_type == PID_FS_MAGIC);
    let inode = rustix::fs::fstat(&fd).map(|st| st.st_ino);
    let (true, Ok(inode)) = (on_pidfs, inode) else {
        return Arc::new(fd);
    };
    LAST_PIDFD.with_borrow_mut(|last| {
        if let Some((last_pid, last_inode, shared)) = last
            && *last_pid == pid
            && *last_inode == inode
        {
            return Arc::clone(shared);
        }
        let fd = Arc::new(fd);
        *last = Some((pid, inode, Arc::clone(&fd)));
        fd
    })
}

/// A message to the daemon's loop, from an event source, the control socket or a signal.
#[derive(Debug)]
pub enum Msg {
    /// What the kernel reported, and who did it where the source knows.
    Fs(FsEvent, Option<Actor>),
    /// `undelete sync`: answer on the sender once everything before it is processed;
    /// with `hashed`, and once every cloned copy recorded by then is hashed.
    Sync {
        reply: Sender<SyncAnswer>,
        hashed: bool,
    },
    /// What the hasher found of a staged copy: its content's hash and size, or why
    /// it could not be hashed.
    Hashed {
        staged: crate::ids::ObjectId,
        outcome: Result<(crate::ids::ObjectId, u64), String>,
    },
    /// `undelete purge`: purge by these retention rules now, only what the command
    /// showed; answer with what was done.
    Purge(crate::retention::PurgeAsk, Sender<Result<String, String>>),
    /// SIGHUP: read the settings again.
    Reload,
    Shutdown,
    /// A command's change to the record, as JSON (see `amend`); answered once committed.
    Amend(String, Sender<Result<String, String>>),
    /// How an alert e-mail went (see `alert`).
    Delivered(crate::model::Delivery),
    /// The restore that told the daemon this mark has ended (see `own`).
    RestoreEnded(crate::names::Mark),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncAnswer {
    Done,
    Failed(String),
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustix::process::{Pid, PidfdFlags, pidfd_open};

    fn pidfd_of(pid: u32) -> OwnedFd {
        pidfd_open(Pid::from_raw(pid as i32).unwrap(), PidfdFlags::empty()).unwrap()
    }

    #[test]
    fn events_of_one_process_read_one_after_another_share_one_pidfd() {
        let me = std::process::id();
        let first = pidfd_of(me);
        if !rustix::fs::fstatfs(&first).is_ok_and(|fs| fs.f_type == PID_FS_MAGIC) {
            eprintln!("SKIPPED: pidfds have no inode of their own before Linux 6.9");
            return;
        }
        let a = Actor::read_now(me as i32, Some(first));
        let b = Actor::read_now(me as i32, Some(pidfd_of(me)));
        assert!(Arc::ptr_eq(
            a.pidfd.as_ref().unwrap(),
            b.pidfd.as_ref().unwrap()
        ));
        let mut other = std::process::Command::new("sleep")
            .arg("60")
            .spawn()
            .unwrap();
        let c = Actor::read_now(other.id() as i32, Some(pidfd_of(other.id())));
        let _ = other.kill();
        let _ = other.wait();
        assert!(!Arc::ptr_eq(
            b.pidfd.as_ref().unwrap(),
            c.pidfd.as_ref().unwrap()
        ));
        // And again this one: the last handed out is the other's now.
        let d = Actor::read_now(me as i32, Some(pidfd_of(me)));
        assert!(!Arc::ptr_eq(
            c.pidfd.as_ref().unwrap(),
            d.pidfd.as_ref().unwrap()
        ));
    }
}
