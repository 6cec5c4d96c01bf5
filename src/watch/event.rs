//! The daemon's own event type, and the one place notify's events become it.
//!
//! The conversion runs on notify's thread, so it only maps and hands on:
//! no hashing, no database, no blocking.

use std::path::PathBuf;
use std::sync::mpsc::Sender;

use notify::event::{AccessKind, AccessMode, CreateKind, EventKind, ModifyKind, RenameMode};
use notify::{ErrorKind, Event};

/// What the daemon learns from the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FsEvent {
    /// Something appeared, was written and closed, or had its attributes changed:
    /// look at it again. `is_new` asks for new folders to be walked.
    Changed { path: PathBuf, is_new: bool },
    /// A name was unlinked.
    Removed { path: PathBuf, was_dir: bool },
    /// The first half of a rename. If no `RenameTo` with the same cookie follows,
    /// the thing was moved out of the protected folder.
    RenameFrom { path: PathBuf, cookie: usize },
    /// Both halves of a rename inside the watched trees.
    Renamed {
        from: PathBuf,
        to: PathBuf,
        cookie: usize,
    },
    /// The second half of a rename; alone, it means moved in from outside.
    RenameTo { path: PathBuf, cookie: usize },
    /// The kernel queue overflowed: events were lost, the trees must be rescanned.
    Rescan,
    /// The inotify watch limit was hit: part of the tree is not watched.
    WatchLimit { path: Option<PathBuf> },
    /// Any other watch error, logged and survived.
    Error { message: String },
}

/// A message to the daemon's loop, from notify, the control socket or a signal.
#[derive(Debug)]
pub enum Msg {
    Fs(FsEvent),
    /// `undelete sync`: answer on the sender once everything before it is processed.
    Sync(Sender<SyncAnswer>),
    /// `undelete purge`: purge by these retention rules now; answer with what was done.
    Purge(crate::retention::Retention, Sender<Result<String, String>>),
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

/// Converts one notify result into zero or more of our events.
pub fn convert(result: notify::Result<Event>) -> Vec<FsEvent> {
    let event = match result {
        Ok(event) => event,
        Err(err) => {
            return vec![match err.kind {
                ErrorKind::MaxFilesWatch => FsEvent::WatchLimit {
                    path: err.paths.first().cloned(),
                },
                _ => FsEvent::Error {
                    message: err.to_string(),
                },
            }];
        }
    };
    if event.need_rescan() {
        return vec![FsEvent::Rescan];
    }
    let cookie = event.tracker();
    let mut paths = event.paths.into_iter();
    let Some(first) = paths.next() else {
        return Vec::new();
    };
    match event.kind {
        EventKind::Create(kind) => vec![FsEvent::Changed {
            path: first,
            is_new: kind != CreateKind::File,
        }],
        EventKind::Access(AccessKind::Close(AccessMode::Write))
        | EventKind::Modify(ModifyKind::Metadata(_))
        | EventKind::Modify(ModifyKind::Data(_)) => vec![FsEvent::Changed {
            path: first,
            is_new: false,
        }],
        EventKind::Remove(kind) => vec![FsEvent::Removed {
            path: first,
            was_dir: kind == notify::event::RemoveKind::Folder,
        }],
        EventKind::Modify(ModifyKind::Name(mode)) => match (mode, cookie) {
            (RenameMode::From, Some(cookie)) => vec![FsEvent::RenameFrom {
                path: first,
                cookie,
            }],
            (RenameMode::To, Some(cookie)) => vec![FsEvent::RenameTo {
                path: first,
                cookie,
            }],
            (RenameMode::Both, Some(cookie)) => match paths.next() {
                Some(to) => vec![FsEvent::Renamed {
                    from: first,
                    to,
                    cookie,
                }],
                None => Vec::new(),
            },
            // A watched folder moving itself (IN_MOVE_SELF) has no cookie; its parent
            // reports the same move with one.
            _ => Vec::new(),
        },
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{Flag, RemoveKind};

    #[test]
    fn overflow_becomes_a_rescan() {
        let ev = Event::new(EventKind::Other).set_flag(Flag::Rescan);
        assert_eq!(convert(Ok(ev)), vec![FsEvent::Rescan]);
    }

    #[test]
    fn the_watch_limit_is_named() {
        let err = notify::Error::new(ErrorKind::MaxFilesWatch).add_path("/srv/x".into());
        assert_eq!(
            convert(Err(err)),
            vec![FsEvent::WatchLimit {
                path: Some("/srv/x".into())
            }]
        );
    }

    #[test]
    fn renames_keep_their_cookie() {
        let ev = Event::new(EventKind::Modify(ModifyKind::Name(RenameMode::Both)))
            .set_tracker(7)
            .add_path("/a".into())
            .add_path("/b".into());
        assert_eq!(
            convert(Ok(ev)),
            vec![FsEvent::Renamed {
                from: "/a".into(),
                to: "/b".into(),
                cookie: 7
            }]
        );
        let ev = Event::new(EventKind::Remove(RemoveKind::Folder)).add_path("/d".into());
        assert_eq!(
            convert(Ok(ev)),
            vec![FsEvent::Removed {
                path: "/d".into(),
                was_dir: true
            }]
        );
    }
}
