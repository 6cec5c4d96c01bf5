//! What each `FsEvent` means for the index: paths to look at (`dirty`), removals
//! (with the files below a removed folder), files held open across an unlink,
//! and moves out of the protected folders; renames and exchanges are `renames`.
//! It never reads a file's content: `look` does.

use std::path::{Path, PathBuf};

use super::dirty::By;
use super::event::{FsEvent, Held};
use super::{DUPLICATE_REMOVAL_NS, Daemon, DaemonError, SCAN_PAGE, tree};
use crate::model::{EntryKind, Gone, Incomplete, Removal, Root};

impl Daemon {
    pub(super) fn root_for(&self, path: &Path) -> Option<&Root> {
        self.roots
            .iter()
            .filter(|r| path.starts_with(&r.path))
            .max_by_key(|r| r.path.as_os_str().len())
    }

    /// Applies one event, made by `by` where the source said who.
    pub(super) fn apply(&mut self, event: FsEvent, by: By, now: i64) -> Result<(), DaemonError> {
        match event {
            FsEvent::Changed {
                path,
                is_new,
                object,
            } => {
                if self.syncs.is_own(&path) {
                    if self.syncs.cookie_seen(&path) {
                        // Its name holds a user's file now, not the cookie.
                        self.dirty.insert_event(path, is_new, by, object);
                    }
                } else if let Some(own) = self.restores_own(&path) {
                    if own == path && is_new {
                        self.watch_own_folder(&path)?;
                    }
                } else if self.is_protected(&path) {
                    self.dirty.insert_event(path, is_new, by, object);
                }
            }
            FsEvent::Writing { path, held } => {
                if self.is_protected(&path) {
                    self.writing.insert(path, super::Writer { held, by });
                }
            }
            FsEvent::Closed { path, object } => {
                let (held, by) = match self.writing.remove(&path) {
                    Some(writer) => (writer.held, writer.by.or(by)),
                    None => (None, by),
                };
                if !self.is_protected(&path) {
                    return Ok(());
                }
                if let Some(deleted) = self.deleted_open.remove(&path)
                    && self.index.current(&path)?.is_none()
                {
                    // Deleted while it was written, now closed: its last content.
                    self.keep_deleted(&path, deleted, now)?;
                } else if let Some(held) = held {
                    self.closed.insert(path.clone(), held);
                }
                self.dirty.insert_event(path, false, by, object);
            }
            FsEvent::Removed { path, was_dir } => {
                if self.syncs.forget(&path) {
                    return Ok(());
                }
                if self.restores_own(&path).is_some() {
                    self.own_gone(&path);
                } else if self.is_protected(&path) {
                    self.removed(&path, was_dir, by, now)?;
                }
            }
            FsEvent::Renamed { from, to, object } => self.renamed(&from, &to, object, by, now)?,
            FsEvent::Exchanged { a, b } => self.exchanged(&a, &b, now)?,
            FsEvent::MovedOut { path } => {
                if self.is_protected(&path) {
                    self.moved_out(&path, by, now)?;
                }
            }
            FsEvent::Rescan => {}
            FsEvent::WatchLimit { path } => self.watch_limit_reached(path)?,
            FsEvent::Error { message } => tracing::warn!("watching: {message}"),
        }
        Ok(())
    }

    /// Records what the held descriptor of a file whose name is gone holds, as the
    /// current version of `path`.
    pub(super) fn look_at_held(
        &mut self,
        path: &Path,
        held: Held,
        by: By,
        now: i64,
    ) -> Result<(), DaemonError> {
        self.held_for_look.insert(path.to_owned(), held);
        self.look_at_all_by(&[path.to_owned()], &[by], &[], now)?;
        self.held_for_look.remove(path);
        Ok(())
    }

    /// A file deleted while it was written, closed since: its last content becomes
    /// the newest deleted version of `path`, whole.
    pub(super) fn keep_deleted(
        &mut self,
        path: &Path,
        held: Held,
        now: i64,
    ) -> Result<(), DaemonError> {
        self.look_at_held(path, held, None, now)?;
        let gone = Gone::now(now, Removal::Deleted, None);
        self.index.mark_removed(path, false, &gone)?;
        Ok(())
    }

    /// Inside a protected folder, and none of the program's own files (see `own`).
    pub(super) fn is_protected(&self, path: &Path) -> bool {
        self.root_for(path).is_some() && !self.is_own(path)
    }

    /// A folder a restore made to write files in or to delete encrypted copies in:
    /// watched (by inotify), so that a file moved in or out is seen moved, not moved
    /// out of the protected folder or into it from elsewhere. Nothing in it is recorded.
    fn watch_own_folder(&mut self, path: &Path) -> Result<(), DaemonError> {
        match tree::open_dir(path) {
            Ok(fd) => self.watch_folder(&fd, path),
            Err(_) => Ok(()),
        }
    }

    pub(super) fn removed(
        &mut self,
        path: &Path,
        was_dir: bool,
        by: By,
        now: i64,
    ) -> Result<(), DaemonError> {
        if self.explained_by_rename(path, was_dir, &by, now)? {
            return Ok(());
        }
        if let Some(held) = self.closed.remove(path) {
            // Written, closed and unlinked before the daemon looked: its content is
            // still there through the descriptor held since it was written.
            let writer = self.dirty.take_by(path, false).pop().and_then(|(_, by)| by);
            self.look_at_held(path, held, writer, now)?;
        }
        if let Some(writer) = self.writing.remove(path) {
            if let Some(held) = writer.held {
                self.deleted_open.insert(path.to_owned(), held);
            }
            // Deleted while being written: the version kept does not hold the last
            // content, whether it is a copy of part of it or one from before.
            if let Some(v) = self.index.current(path)?
                && v.observed.kind == EntryKind::File
                && v.observed.object.is_some()
                && v.observed.incomplete.is_none()
            {
                self.index
                    .mark_incomplete(path, Incomplete::LastChangesMissing)?;
            }
        }
        let root_id = self.root_for(path).map(|r| r.id).unwrap_or_default();
        // Created and removed before we got to look: it existed, and it is lost. A
        // folder is one by the kernel's word for the path removed, or because other
        // paths never seen were below it; a lost folder is no lost file.
        let never_seen = self.dirty.take(path, true);
        let who = by.as_deref();
        for lost in &never_seen {
            // Not one whose removal this batch already recorded (found missing below
            // a folder that moved): it was seen, and is kept.
            if self.index.current(lost)?.is_none() && !self.index.removed_since(lost, now)? {
                let is_dir = (lost == path && was_dir)
                    || never_seen.iter().any(|p| p != lost && p.starts_with(lost));
                let kind = if is_dir {
                    EntryKind::Dir
                } else {
                    EntryKind::File
                };
                self.index.record_lost(lost, root_id, kind, who, now)?;
            }
        }
        let current = self.index.current(path)?;
        let subtree = was_dir
            || current
                .as_ref()
                .is_some_and(|v| v.observed.kind == EntryKind::Dir);
        let gone = Gone::now(now, Removal::Deleted, by.clone());
        let marked = self.index.mark_removed(path, subtree, &gone)?;
        if marked == 0
            && current.is_none()
            && !self.index.removed_since(path, now - DUPLICATE_REMOVAL_NS)?
        {
            let kind = if was_dir {
                EntryKind::Dir
            } else {
                EntryKind::File
            };
            self.index.record_lost(path, root_id, kind, who, now)?;
        }
        Ok(())
    }

    pub(super) fn is_dir_in_index(&self, path: &Path) -> Result<bool, DaemonError> {
        Ok(self
            .index
            .current(path)?
            .is_some_and(|v| v.observed.kind == EntryKind::Dir))
    }

    /// Marks what the index has below the folder `dir` that is not in it on disk as
    /// deleted, when the folder at `dir` is still the one with `inode`. Through the
    /// folder's descriptor: renamed again meanwhile, it still answers for its files.
    pub(super) fn mark_missing_below(
        &mut self,
        dir: &Path,
        inode: u64,
        now: i64,
    ) -> Result<(), DaemonError> {
        let Ok(held) = tree::open_dir(dir) else {
            return Ok(());
        };
        if rustix::fs::fstat(&held).map(|st| st.st_ino).ok() != Some(inode) {
            return Ok(());
        }
        let gone = Gone::now(now, Removal::Deleted, None);
        self.mark_missing(dir, &gone, |path| match path.strip_prefix(dir) {
            Ok(relative) if !relative.as_os_str().is_empty() => {
                tree::lstat_beneath(&held, relative).is_err_and(|e| tree::is_gone(&e))
            }
            _ => false,
        })?;
        Ok(())
    }

    /// Marks the current versions at and below `dir` that `is_gone` says are not on
    /// disk as gone, dated by `gone`. Returns how many were marked.
    pub(super) fn mark_missing(
        &mut self,
        dir: &Path,
        gone: &Gone,
        is_gone: impl Fn(&Path) -> bool,
    ) -> Result<usize, DaemonError> {
        let mut missing = 0;
        let mut after: Option<PathBuf> = None;
        // A page at a time: a million paths held at once would be the daemon's
        // largest allocation, and the memory would stay with it.
        loop {
            let page = self
                .index
                .current_paths_page(dir, after.as_deref(), SCAN_PAGE)?;
            let Some(last) = page.last().cloned() else {
                break;
            };
            for path in page {
                if is_gone(&path) {
                    missing += self.index.mark_removed(&path, false, gone)?;
                    self.maybe_commit()?;
                }
            }
            after = Some(last);
        }
        Ok(missing)
    }

    pub(super) fn moved_out(&mut self, path: &Path, by: By, now: i64) -> Result<(), DaemonError> {
        self.dirty.take(path, true);
        let gone = Gone::now(now, Removal::MovedOut, by);
        let n = self.index.mark_removed(path, true, &gone)?;
        tracing::info!(
            "{} moved out of the protected folder ({n} entries)",
            path.display()
        );
        Ok(())
    }
}
