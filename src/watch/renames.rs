//! Renames and exchanges inside the protected folders: the records moved with
//! everything below them, what the daemon remembers by path (files being
//! written, held open, waiting to be looked at) moved along, and a removal read
//! under a name a recent rename gave up taken for what it is.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use super::dirty::By;
use super::event::{Object, below};
use super::{Daemon, DaemonError, RENAME_EXPLAINS, tree};
use crate::model::{EntryKind, Gone, Removal, Version};

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

impl Daemon {
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
        object: Option<Object>,
        by: By,
        now: i64,
    ) -> Result<(), DaemonError> {
        // A file renamed onto a cookie is a user's file under that name, and a
        // cookie renamed is a user's file under its new name: no cookie of ours.
        self.syncs.forget(to);
        if self.syncs.forget(from) {
            self.dirty.insert(to.to_owned(), true);
            return Ok(());
        }
        if self.restores_own(to).is_some() {
            // Gone from its name all the same: a restore deleting an encrypted copy
            // moves it into a folder of its own first, and it is deleted like any file.
            let was_dir = self
                .index
                .current(from)?
                .is_some_and(|v| v.observed.kind == EntryKind::Dir);
            return self.removed(from, was_dir, by, now);
        }
        if let Some(own) = self.restores_own(from) {
            // A restore renaming its finished temporary file into place, or giving a
            // file back its name.
            if own == from {
                self.own_gone(from);
            }
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
        self.dirty.follow(from, to, exchanged);
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
        // The thing moved, where the source names it: another at `to` by the time it
        // is looked at came later, and its own events say so.
        self.dirty.insert_event(to.to_owned(), true, None, object);
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
    /// change places, whatever else the disk shows by now. The disk cannot tell
    /// once one of the two was deleted or moved on before the events were read:
    /// `f0` and `f1` exchanged, then `f1` deleted, left only `f0` to look at, and
    /// `f1`'s deletion was taken for f0's old name going. But where the disk has
    /// what is known at each name still there, and neither at the other's name,
    /// nothing changes places: the exchange is undone already. The kernel merges
    /// an event into an identical one still queued, so a third exchange of the
    /// same two files by one process vanishes into the first, and two are read for
    /// three; an exchange back that is still to be read finds the disk the same.
    pub(super) fn exchanged(&mut self, a: &Path, b: &Path, now: i64) -> Result<(), DaemonError> {
        let (Some(a_root), Some(b_root)) = (
            self.root_for(a).map(|r| r.id),
            self.root_for(b).map(|r| r.id),
        ) else {
            return Ok(());
        };
        if self.is_own(a) || self.is_own(b) {
            self.dirty.insert(a.to_owned(), true);
            self.dirty.insert(b.to_owned(), true);
            return Ok(());
        }
        let at_a = self.index.current(a)?;
        let at_b = self.index.current(b)?;
        if self.exchange_undone(a, b, &at_a, &at_b) {
            self.dirty.insert(a.to_owned(), true);
            self.dirty.insert(b.to_owned(), true);
            return Ok(());
        }
        follow_exchange(&mut self.writing, a, b);
        follow_exchange(&mut self.closed, a, b);
        follow_exchange(&mut self.deleted_open, a, b);
        self.dirty.follow(a, b, true);
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

    /// Whether the disk has what is known at `a` and at `b` (its record, or the
    /// file held open for it since its write) still at that name, for each name
    /// where something is known, and neither at the other's name. A file held open keeps its inode,
    /// so it cannot be another's; a record's inode could be reused only by a file
    /// made after it was deleted, which then has the record's name at most.
    fn exchange_undone(
        &self,
        a: &Path,
        b: &Path,
        at_a: &Option<Version>,
        at_b: &Option<Version>,
    ) -> bool {
        let known = |path: &Path, record: &Option<Version>| {
            let held = self
                .writing
                .get(path)
                .and_then(|w| w.held.as_ref())
                .or_else(|| self.closed.get(path))
                .and_then(|held| held.file().metadata().ok())
                .map(|m| m.ino());
            held.or_else(|| record.as_ref().map(|v| v.observed.inode))
        };
        let on_disk = |path: &Path| tree::lstat(path).ok().map(|st| st.st_ino);
        let (known_a, known_b) = (known(a, at_a), known(b, at_b));
        let (disk_a, disk_b) = (on_disk(a), on_disk(b));
        // Every name known holds what is known at it: half undone (exchanged, then
        // one moved over the other) is no undoing.
        let in_place = |known: Option<u64>, disk: Option<u64>| known.is_none() || known == disk;
        (known_a.is_some() || known_b.is_some())
            && in_place(known_a, disk_a)
            && in_place(known_b, disk_b)
            && !(known_a.is_some() && known_a == disk_b)
            && !(known_b.is_some() && known_b == disk_a)
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
            let gone = Gone::now(now, Removal::Deleted, by.clone());
            self.index
                .mark_removed(&moved, was_dir || self.is_dir_in_index(&moved)?, &gone)?;
        } else {
            self.dirty.insert(moved, was_dir);
        }
        Ok(true)
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
}
