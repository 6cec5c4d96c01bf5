//! Which names in the protected folders are the program's own, decided by who
//! knows them, never by their form: the daemon's cookies it has not seen gone yet
//! (see `sync`), and names with the mark of a restore connected now (see
//! `announce`). A name passed over under a restore's mark is looked at once that
//! restore has ended: if it is still there, it is a user's file and is recorded
//! like any other, unless it is a folder only the program's account could have
//! made (of a restore's form, its owner this account, 0700: see
//! `names::is_own_folder`), which holds what a stopped restore left, and
//! which the next restore there clears or gives back.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::{Daemon, tree};
use crate::names::{self, Mark};

/// How many names are remembered under one mark at most; past that, names with it
/// are looked at as usual (which costs only reading a restore's files again).
const PASSED_AT_MOST: usize = 100_000;

/// Names with a running restore's mark passed over, by mark.
#[derive(Default)]
pub(super) struct Restores {
    passed: RefCell<HashMap<Mark, HashSet<PathBuf>>>,
}

impl Daemon {
    /// Whether `path` is one of the daemon's own cookies, or at or below a name a
    /// restore running now told the daemon is its own.
    pub(super) fn is_own(&self, path: &Path) -> bool {
        self.syncs.is_own(path) || self.restores_own(path).is_some()
    }

    /// The name at or above `path`, inside its protected folder, that carries the
    /// mark of a restore running now (remembered, to be looked at once it ends), or
    /// that is a folder a restore made for itself and left.
    pub(super) fn restores_own(&self, path: &Path) -> Option<PathBuf> {
        let root = &self.root_for(path)?.path;
        let mut at = path;
        while at != root {
            if let Some(name) = at.file_name().map(|n| n.as_bytes())
                && name.starts_with(b".undelete-")
                && let Some(mark) = names::mark_of(name)
            {
                if !self.announced.is_restoring(mark) {
                    if made_by_a_restore(at) {
                        return Some(at.to_owned());
                    }
                    at = at.parent()?;
                    continue;
                }
                let mut passed = self.restores.passed.borrow_mut();
                let names = passed.entry(mark).or_default();
                if names.len() >= PASSED_AT_MOST && !names.contains(at) {
                    return None;
                }
                names.insert(at.to_owned());
                return Some(at.to_owned());
            }
            at = at.parent()?;
        }
        None
    }

    /// A name of a restore's own is gone (renamed into place, or removed by it).
    pub(super) fn own_gone(&self, path: &Path) {
        for names in self.restores.passed.borrow_mut().values_mut() {
            names.remove(path);
        }
    }

    /// The restore with this mark has ended (having waited, when it ended as it
    /// should, for a sync: every change it made has been seen): what still has a
    /// name with it is looked at, as anyone's file would be.
    pub(super) fn restore_ended(&mut self, mark: Mark) {
        let left = self
            .restores
            .passed
            .borrow_mut()
            .remove(&mark)
            .unwrap_or_default();
        for path in left {
            if !self.is_own(&path) {
                self.dirty.insert(path, true);
            }
        }
    }
}

/// Whether `path` is a folder only this account could have made: owned by it and
/// readable by it alone. Users cannot make one, so nothing in it is theirs.
fn made_by_a_restore(path: &Path) -> bool {
    tree::lstat(path).is_ok_and(|st| names::is_own_folder(&st))
}
