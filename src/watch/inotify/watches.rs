//! The map from watch descriptor to folder, and what a rename or an exchange of
//! folders does to it: plain data, kept apart from the thread that reads the
//! kernel's queue, so each move of the map can be tried on its own.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use crate::watch::event::below;

/// One watched folder.
pub(super) struct Watched {
    pub(super) path: PathBuf,
    /// Its inode, to tell an exchange of two folders from a rename over one.
    pub(super) inode: u64,
}

#[derive(Default)]
pub(super) struct Watches {
    pub(super) by_wd: HashMap<i32, Watched>,
    pub(super) by_path: BTreeMap<PathBuf, i32>,
    /// Watches of folders that left the tree: removed, their queued events ignored
    /// until the kernel confirms the removal (IN_IGNORED).
    pub(super) detached: HashSet<i32>,
}

impl Watches {
    pub(super) fn insert(&mut self, wd: i32, path: &Path, inode: u64) {
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

    pub(super) fn forget(&mut self, wd: i32) {
        self.detached.remove(&wd);
        if let Some(w) = self.by_wd.remove(&wd)
            && self.by_path.get(&w.path) == Some(&wd)
        {
            self.by_path.remove(&w.path);
        }
    }

    /// The watches at and below `dir`.
    pub(super) fn subtree(&self, dir: &Path) -> Vec<(PathBuf, i32)> {
        self.by_path
            .range(dir.to_owned()..)
            .take_while(|(p, _)| p.starts_with(dir))
            .map(|(p, wd)| (p.clone(), *wd))
            .collect()
    }

    /// Gives every watch at and below `from` the path it has below `to` now.
    pub(super) fn rebase(&mut self, from: &Path, to: &Path) {
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
    pub(super) fn exchange(&mut self, a: &Path, b: &Path) {
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

#[cfg(test)]
impl Watches {
    /// A map of `paths`, watch descriptors counted from 1, inodes from 100.
    pub(super) fn of(paths: &[&str]) -> Self {
        let mut w = Self::default();
        for (i, p) in paths.iter().enumerate() {
            w.insert(i as i32 + 1, Path::new(p), i as u64 + 100);
        }
        w
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path_of(w: &Watches, wd: i32) -> &str {
        w.by_wd[&wd].path.to_str().unwrap()
    }

    #[test]
    fn a_rename_rebases_the_folder_and_everything_below_it_only() {
        let mut w = Watches::of(&["/s", "/s/a", "/s/a/b", "/s/a0", "/s/ab"]);
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
        let mut w = Watches::of(&["/s/a", "/s/a/x", "/s/b", "/s/b/y"]);
        w.exchange(Path::new("/s/a"), Path::new("/s/b"));
        assert_eq!(path_of(&w, 1), "/s/b");
        assert_eq!(path_of(&w, 2), "/s/b/x");
        assert_eq!(path_of(&w, 3), "/s/a");
        assert_eq!(path_of(&w, 4), "/s/a/y");
        assert_eq!(w.by_path.len(), 4);
    }
}
