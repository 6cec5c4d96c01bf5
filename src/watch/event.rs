//! The daemon's own event type: what every event source (inotify today) reports,
//! already in the daemon's terms. Sources convert the kernel's events into it in
//! one place each (see `inotify`) and hand it on; nothing else knows their kinds.

use std::path::PathBuf;
use std::sync::mpsc::Sender;

/// What the daemon learns from the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FsEvent {
    /// Something appeared, was moved in, or had its attributes changed: look at it
    /// again. `is_new` asks for folders to be walked.
    Changed { path: PathBuf, is_new: bool },
    /// A file was created or written to and is not closed yet: a copy made now may
    /// not hold its last content. Reported once until `Closed`, with the file held
    /// open where the source could, so its content can be read after an unlink.
    Writing {
        path: PathBuf,
        held: Option<super::inotify::Held>,
    },
    /// A file open for writing was closed: its content is complete (for now).
    Closed { path: PathBuf },
    /// A name was unlinked.
    Removed { path: PathBuf, was_dir: bool },
    /// A rename inside the watched trees, both halves paired by the source. An
    /// exchange of two names comes as two renames, one each way.
    Renamed { from: PathBuf, to: PathBuf },
    /// Renamed out of every watched tree: it and everything below it left.
    MovedOut { path: PathBuf },
    /// The kernel queue overflowed: events were lost, the trees must be rescanned.
    Rescan,
    /// The inotify watch limit was hit: part of the tree is not watched.
    WatchLimit { path: Option<PathBuf> },
    /// Any other watch error, logged and survived.
    Error { message: String },
}

/// A message to the daemon's loop, from an event source, the control socket or a signal.
#[derive(Debug)]
pub enum Msg {
    Fs(FsEvent),
    /// `undelete sync`: answer on the sender once everything before it is processed.
    Sync(Sender<SyncAnswer>),
    /// `undelete purge`: purge by these retention rules now; answer with what was done.
    Purge(crate::config::Retention, Sender<Result<String, String>>),
    /// SIGHUP: read the settings again.
    Reload,
    Shutdown,
    /// A command's change to the record, as JSON (see `amend`); answered once committed.
    Amend(String, Sender<Result<String, String>>),
    /// How an alert e-mail went (see `alert`).
    Delivered(super::alert::Delivery),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncAnswer {
    Done,
    Failed(String),
}
