//! What each `FsEvent` means for the index: paths to look at, removals (with
//! the files below a removed folder), renames paired by the source and followed
//! through everything the daemon remembers by path, and files held open across
//! an unlink. It never reads a file's content: `look` does.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use super::event::FsEvent;
use super::event::{Held, below};
use super::{DUPLICATE_REMOVAL_NS, Daemon, DaemonError, RENAME_EXPLAINS, SCAN_PAGE, tree};
use crate::model::{EntryKind, Gone, Incomplete, Person, Removal, Root, Version};
use crate::names::is_internal;

/// Moves the entries at and below `from` to where they are below `to` now.
pub(super) fn follow_rename<V>(map: &mut HashMap<PathBuf, V>, from: &Path, to: &Path) {
    let moved: Vec<PathBuf> = map
        .keys()
        .filter(|p| p.starts_with(from))
        .cloned()
        .collect();
    for path in moved {
        if let Some(value) = map.remove(&path) {
            map.insert(below(to, &path, from), value);
        }
    }
}

/// Exchanges the entries at and below `a` with those at and below `b`.
pub(super) fn follow_exchange<V>(map: &mut HashMap<PathBuf, V>, a: &Path, b: &Path) {
    let moved: Vec<PathBuf> = map
        .keys()
        .filter(|p| p.starts_with(a) || p.starts_with(b))
        .cloned()
        .collect();
    let mut taken: Vec<(PathBuf, V)> = Vec::new();
    for path in moved {
        if let Some(value) = map.remove(&path) {
            let new = if path.starts_with(a) {
                below(b, &path, a)
            } else {
                below(a, &path, b)
            };
            taken.push((new, value));
        }
    }
    map.extend(taken);
}

/// Who made a change or a removal, where the event source said.
pub(super) type By = Option<Arc<Person>>;

/// Paths to look at at the end of a batch, in the order they first came, each with
/// who touched it last. Kept sorted by path, so taking a folder and everything
/// below it costs what is taken, not every path pending: a burst of files created
/// and deleted at once would otherwise cost the square of its size.
#[derive(Default)]
pub(super) struct Dirty {
    /// Path → (when it first came, whether it is new: folders that are new get
    /// walked, who touched it last where known).
    entries: BTreeMap<PathBuf, (u64, bool, By)>,
    next: u64,
}

impl Dirty {
    pub(super) fn insert(&mut self, path: PathBuf, is_new: bool) {
        self.insert_by(path, is_new, None);
    }

    /// `insert`, touched by `by`: an event that says who replaces one that did not.
    pub(super) fn insert_by(&mut self, path: PathBuf, is_new: bool, by: By) {
        match self.entries.get_mut(&path) {
            Some((_, new, who)) => {
                *new |= is_new;
                if by.is_some() {
                    *who = by;
                }
            }
            None => {
                self.entries.insert(path, (self.next, is_new, by));
                self.next += 1;
            }
        }
    }

    pub(super) fn contains(&self, path: &Path) -> bool {
        self.entries.contains_key(path)
    }

    /// Takes out `path` and, if `subtree`, everything below it; returns what was
    /// taken, in the order it came. Paths order by component, so what is below a
    /// folder comes right after it (`/a`, `/a/b`, then `/a b`).
    pub(super) fn take(&mut self, path: &Path, subtree: bool) -> Vec<PathBuf> {
        self.take_by(path, subtree)
            .into_iter()
            .map(|(p, _)| p)
            .collect()
    }

    /// `take`, with who touched each path last.
    pub(super) fn take_by(&mut self, path: &Path, subtree: bool) -> Vec<(PathBuf, By)> {
        let mut taken: Vec<(u64, PathBuf, By)> = Vec::new();
        if subtree {
            let below: Vec<PathBuf> = self
                .entries
                .range::<Path, _>((Bound::Included(path), Bound::Unbounded))
                .map(|(p, _)| p)
                .take_while(|p| p.starts_with(path))
                .cloned()
                .collect();
            for p in below {
                if let Some((seq, _, by)) = self.entries.remove(&p) {
                    taken.push((seq, p, by));
                }
            }
        } else if let Some((seq, _, by)) = self.entries.remove(path) {
            taken.push((seq, path.to_owned(), by));
        }
        taken.sort_unstable_by_key(|(seq, _, _)| *seq);
        taken.into_iter().map(|(_, p, by)| (p, by)).collect()
    }

    pub(super) fn drain(&mut self) -> Vec<(PathBuf, bool, By)> {
        let mut all: Vec<(u64, PathBuf, bool, By)> = std::mem::take(&mut self.entries)
            .into_iter()
            .map(|(p, (seq, is_new, by))| (seq, p, is_new, by))
            .collect();
        all.sort_unstable_by_key(|(seq, _, _, _)| *seq);
        all.into_iter()
            .map(|(_, p, is_new, by)| (p, is_new, by))
            .collect()
    }
}

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
            FsEvent::Changed { path, is_new } => {
                if crate::names::is_cookie(&path) {
                    self.syncs.cookie_seen(&path);
                } else if self.is_protected(&path) {
                    self.dirty.insert_by(path, is_new, by);
                }
            }
            FsEvent::Writing { path, held } => {
                if self.is_protected(&path) {
                    self.writing.insert(path, held);
                }
            }
            FsEvent::Closed { path } => {
                let held = self.writing.remove(&path).flatten();
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
                self.dirty.insert_by(path, false, by);
            }
            FsEvent::Removed { path, was_dir } => {
                if self.is_protected(&path) {
                    self.removed(&path, was_dir, by, now)?;
                }
            }
            FsEvent::Renamed { from, to } => self.renamed(&from, &to, by, now)?,
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
        self.look_at_all_by(&[path.to_owned()], &[by], now)?;
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
        let gone = Gone {
            at: now,
            approx: false,
            last_seen: None,
            removal: Removal::Deleted,
            by: None,
        };
        self.index.mark_removed(path, false, &gone)?;
        Ok(())
    }

    /// Inside a protected folder, and none of the daemon's own files.
    pub(super) fn is_protected(&self, path: &Path) -> bool {
        !is_internal(path) && self.root_for(path).is_some()
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
        if let Some(held) = self.writing.remove(path) {
            if let Some(held) = held {
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
        let gone = Gone {
            at: now,
            approx: false,
            last_seen: None,
            removal: Removal::Deleted,
            by: by.clone(),
        };
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

    /// A rename inside the protected folders. Decided with the disk, by inode, and
    /// never by the order of events: the kernel reports an exchange of `a` and `b`
    /// (`renameat2(RENAME_EXCHANGE)`, `mv --exchange`) as a rename `a → b` and one
    /// `b → a`, and by the time the daemon reads them the disk may be further on.
    /// When `from` holds the inode of `to`'s record and `to` that of `from`'s, the two
    /// were exchanged, with everything below them (also when `from`'s folder has gone
    /// since: see `from_unknown`). When `from` still holds the inode
    /// of its record (the second half of an exchange already applied, or a rename
    /// undone since), or nothing known moved and `to` still holds its record's,
    /// nothing moves. Otherwise `from` moved over `to`, whose record is replaced.
    /// Whatever is at either name is looked at again.
    pub(super) fn renamed(
        &mut self,
        from: &Path,
        to: &Path,
        by: By,
        now: i64,
    ) -> Result<(), DaemonError> {
        if is_internal(to) {
            // Gone from its name all the same: a restore deleting an encrypted copy
            // takes it from its name first, and it is deleted like any file.
            let was_dir = self
                .index
                .current(from)?
                .is_some_and(|v| v.observed.kind == EntryKind::Dir);
            return self.removed(from, was_dir, by, now);
        }
        if is_internal(from) {
            // A restore renaming its finished temporary file into place.
            self.dirty.insert(to.to_owned(), true);
            return Ok(());
        }
        let from_root = self.root_for(from).map(|r| r.id);
        let Some(to_root) = self.root_for(to).map(|r| r.id) else {
            // Renamed out of every protected folder.
            return self.moved_out(from, by, now);
        };
        let Some(from_root) = from_root else {
            self.dirty.insert(to.to_owned(), true);
            return Ok(());
        };
        // Files being written, and held open, follow the rename too.
        follow_rename(&mut self.writing, from, to);
        follow_rename(&mut self.closed, from, to);
        follow_rename(&mut self.deleted_open, from, to);
        let moving = self.index.current(from)?;
        let at_to = self.index.current(to)?;
        let inode_at = |p: &Path| tree::lstat(p).ok().map(|st| st.st_ino);
        let (on_from, on_to) = (inode_at(from), inode_at(to));
        let (m, t) = (
            moving.as_ref().map(|v| v.observed.inode),
            at_to.as_ref().map(|v| v.observed.inode),
        );
        // With `from`'s folder gone since (moved on, or out), `from` cannot say whether
        // this was an exchange or a rename over `to`: taken for an exchange, which
        // keeps `to`'s old record (in the recycle bin at worst), where a rename would
        // drop it.
        let from_unknown = on_from.is_none()
            && from
                .parent()
                .is_some_and(|dir| tree::lstat(dir).is_err_and(|e| tree::is_gone(&e)));
        let exchanged = m.is_some() && t.is_some() && on_to == m && (on_from == t || from_unknown);
        let stays = !exchanged
            && ((m.is_some() && on_from == m) || (m.is_none() && t.is_some() && on_to == t));
        if stays {
            self.dirty.insert(from.to_owned(), true);
            self.dirty.insert(to.to_owned(), true);
            // Events may still name it by the other name: they mean this one.
            let (other, kept) = if m.is_some() && on_from == m {
                (to, from)
            } else {
                (from, to)
            };
            self.remember_rename(other, kept);
            return Ok(());
        }
        // Paths waiting to be looked at follow the rename (both ways for an exchange).
        let mut follow = Vec::new();
        for waiting in self.dirty.take(from, true) {
            follow.push(below(to, &waiting, from));
        }
        if exchanged {
            for waiting in self.dirty.take(to, true) {
                follow.push(below(from, &waiting, to));
            }
        }
        for path in follow {
            self.dirty.insert(path, true);
        }
        if on_from.is_some() {
            self.dirty.insert(from.to_owned(), true);
        }
        if exchanged {
            self.index.exchange(from, from_root, to, to_root, now)?;
            self.dirty.insert(from.to_owned(), true);
        } else {
            self.index.rename(from, to, to_root, now)?;
        }
        // Walked again: the record moved, but the folder may have changed meanwhile.
        self.dirty.insert(to.to_owned(), true);
        // What was deleted in a moved folder while events still named its old path:
        // what the index has below it and the disk does not is gone. Only when the
        // folder is still there: one that has moved on since gets its own rename.
        let is_dir = |v: &Option<Version>| {
            v.as_ref()
                .is_some_and(|v| v.observed.kind == EntryKind::Dir)
        };
        if !self.deletions_all_named() {
            if let (true, Some(m)) = (is_dir(&moving), m) {
                self.mark_missing_below(to, m, now)?;
            }
            if let (true, true, Some(t)) = (exchanged, is_dir(&at_to), t) {
                self.mark_missing_below(from, t, now)?;
            }
        }
        self.remember_rename(from, to);
        Ok(())
    }

    /// An exchange the source is sure of: the records at and below `a` and `b`
    /// change places, whatever the disk shows by now. The disk cannot tell once
    /// one of the two was deleted or moved on before the events were read: `f0`
    /// and `f1` exchanged, then `f1` deleted, left only `f0` to look at, and
    /// `f1`'s deletion was taken for f0's old name going.
    pub(super) fn exchanged(&mut self, a: &Path, b: &Path, now: i64) -> Result<(), DaemonError> {
        let (Some(a_root), Some(b_root)) = (
            self.root_for(a).map(|r| r.id),
            self.root_for(b).map(|r| r.id),
        ) else {
            return Ok(());
        };
        if is_internal(a) || is_internal(b) {
            self.dirty.insert(a.to_owned(), true);
            self.dirty.insert(b.to_owned(), true);
            return Ok(());
        }
        follow_exchange(&mut self.writing, a, b);
        follow_exchange(&mut self.closed, a, b);
        follow_exchange(&mut self.deleted_open, a, b);
        let at_a = self.index.current(a)?;
        let at_b = self.index.current(b)?;
        let mut follow = Vec::new();
        for waiting in self.dirty.take(a, true) {
            follow.push(below(b, &waiting, a));
        }
        for waiting in self.dirty.take(b, true) {
            follow.push(below(a, &waiting, b));
        }
        for path in follow {
            self.dirty.insert(path, true);
        }
        self.index.exchange(a, a_root, b, b_root, now)?;
        // Walked again: the records moved, but the folders may have changed meanwhile.
        self.dirty.insert(a.to_owned(), true);
        self.dirty.insert(b.to_owned(), true);
        let dir_inode = |v: &Option<Version>| {
            v.as_ref()
                .filter(|v| v.observed.kind == EntryKind::Dir)
                .map(|v| v.observed.inode)
        };
        if !self.deletions_all_named() {
            if let Some(inode) = dir_inode(&at_a) {
                self.mark_missing_below(b, inode, now)?;
            }
            if let Some(inode) = dir_inode(&at_b) {
                self.mark_missing_below(a, inode, now)?;
            }
        }
        self.remember_rename(a, b);
        Ok(())
    }

    pub(super) fn remember_rename(&mut self, from: &Path, to: &Path) {
        self.recent_renames
            .retain(|(_, _, at)| at.elapsed() < RENAME_EXPLAINS);
        self.recent_renames
            .push((from.to_owned(), to.to_owned(), Instant::now()));
    }

    /// A remove event for a path that a recent rename moved away (an event read under
    /// the old name) is no loss: the thing is where the rename put it, or, if it is
    /// not there either, it was deleted there.
    pub(super) fn explained_by_rename(
        &mut self,
        path: &Path,
        was_dir: bool,
        by: &By,
        now: i64,
    ) -> Result<bool, DaemonError> {
        if self.index.current(path)?.is_some() || self.dirty.contains(path) {
            return Ok(false);
        }
        // The other name of a recent rename, either way: while the two names are
        // read against a disk that moved on, an event may carry either of them.
        let mut names = Vec::new();
        for (from, to, at) in self.recent_renames.iter().rev() {
            if at.elapsed() >= RENAME_EXPLAINS {
                continue;
            }
            if path.starts_with(from) {
                names.push(below(to, path, from));
            }
            if path.starts_with(to) {
                names.push(below(from, path, to));
            }
        }
        let since = now - RENAME_EXPLAINS.as_nanos() as i64;
        let mut moved = None;
        for name in names {
            if self.index.current(&name)?.is_some() {
                moved = Some(name);
                break;
            }
            if self.index.removed_since(&name, since)? {
                // Its deletion is recorded there already.
                return Ok(true);
            }
        }
        let Some(moved) = moved else {
            return Ok(false);
        };
        if tree::lstat(&moved).is_err_and(|e| tree::is_gone(&e)) {
            let gone = Gone {
                at: now,
                approx: false,
                last_seen: None,
                removal: Removal::Deleted,
                by: by.clone(),
            };
            self.index
                .mark_removed(&moved, was_dir || self.is_dir_in_index(&moved)?, &gone)?;
        } else {
            self.dirty.insert(moved, was_dir);
        }
        Ok(true)
    }

    pub(super) fn is_dir_in_index(&self, path: &Path) -> Result<bool, DaemonError> {
        Ok(self
            .index
            .current(path)?
            .is_some_and(|v| v.observed.kind == EntryKind::Dir))
    }

    /// Whether the source names every deletion where it happened (fanotify): then
    /// the disk, which may be further on than the events read, is never asked what
    /// was deleted below a moved folder. Asked, it answers before the deletion's own
    /// event comes: the file is taken for deleted with nobody named, and the event,
    /// with who and the content held since the write, finds no file left to give them
    /// to, and records a second one.
    fn deletions_all_named(&self) -> bool {
        self.source
            .as_ref()
            .is_some_and(|source| source.names_every_deletion())
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
        let gone = Gone {
            at: now,
            approx: false,
            last_seen: None,
            removal: Removal::Deleted,
            by: None,
        };
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
        let gone = Gone {
            at: now,
            approx: false,
            last_seen: None,
            removal: Removal::MovedOut,
            by,
        };
        let n = self.index.mark_removed(path, true, &gone)?;
        tracing::info!(
            "{} moved out of the protected folder ({n} entries)",
            path.display()
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dirty(paths: &[&str]) -> Dirty {
        let mut dirty = Dirty::default();
        for p in paths {
            dirty.insert(PathBuf::from(p), false);
        }
        dirty
    }

    #[test]
    fn taking_a_folder_takes_what_is_below_it_in_the_order_it_came_and_nothing_next_door() {
        let mut d = dirty(&["/s/a/2", "/s/a b", "/s/a", "/s/ab", "/s/a/1/x", "/s/b"]);
        assert_eq!(
            d.take(Path::new("/s/a"), true),
            ["/s/a/2", "/s/a", "/s/a/1/x"].map(PathBuf::from)
        );
        assert_eq!(d.take(Path::new("/s/b"), false), [PathBuf::from("/s/b")]);
        assert!(d.take(Path::new("/s/a"), true).is_empty());
        let left: Vec<PathBuf> = d.drain().into_iter().map(|(p, _, _)| p).collect();
        assert_eq!(left, ["/s/a b", "/s/ab"].map(PathBuf::from));
    }

    #[test]
    fn pending_paths_taken_one_by_one_cost_what_is_taken() {
        // 200,000 files created and deleted in one burst: each removal takes its own
        // path. Scanning every pending path on each would be 2 * 10^10 comparisons.
        let n = 200_000;
        let mut d = Dirty::default();
        for i in 0..n {
            d.insert(PathBuf::from(format!("/s/burst/{i}")), true);
        }
        let taken: usize = (0..n)
            .map(|i| d.take(Path::new(&format!("/s/burst/{i}")), true).len())
            .sum();
        assert_eq!(taken, n);
        assert!(d.drain().is_empty());
    }
}
