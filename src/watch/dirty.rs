//! The paths waiting to be looked at at the end of a batch, and who touched each
//! last: what the events of a batch leave for `look`. Kept apart from what the
//! events mean (`apply`, `renames`), which fill and take from it.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::model::Person;

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
