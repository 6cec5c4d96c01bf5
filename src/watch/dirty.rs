//! The paths waiting to be looked at at the end of a batch, and who touched each
//! last: what the events of a batch leave for `look`. Kept apart from what the
//! events mean (`apply`, `renames`), which fill and take from it.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::event::{Object, below};
use crate::model::Person;

/// Who made a change or a removal, where the event source said.
pub(super) type By = Option<Arc<Person>>;

/// Paths to look at at the end of a batch, in the order they first came, each with
/// who touched it last and what it was about. Kept sorted by path, so taking a
/// folder and everything below it costs what is taken, not every path pending: a
/// burst of files created and deleted at once would otherwise cost the square of
/// its size.
#[derive(Default)]
pub(super) struct Dirty {
    entries: BTreeMap<PathBuf, Waiting>,
    next: u64,
}

/// One path waiting.
struct Waiting {
    /// When it first came.
    seq: u64,
    /// Whether it is new: folders that are new get walked.
    is_new: bool,
    /// Who touched it last, where known.
    by: By,
    /// The thing the last event about it named, where the source knows (see
    /// `FsEvent`): the look is of that thing only.
    object: Option<Object>,
}

/// A path taken out: the path, whether it is new, who touched it last, and the
/// thing its last event named.
pub(super) type Taken = (PathBuf, bool, By, Option<Object>);

impl Dirty {
    /// `path`, to be looked at for whatever it holds then.
    pub(super) fn insert(&mut self, path: PathBuf, is_new: bool) {
        self.insert_event(path, is_new, None, None);
    }

    /// `insert`, touched by `by` (an event that says who replaces one that did not),
    /// about `object`: the last event's word on what the name holds is the one kept,
    /// also when it names no thing.
    pub(super) fn insert_event(
        &mut self,
        path: PathBuf,
        is_new: bool,
        by: By,
        object: Option<Object>,
    ) {
        match self.entries.get_mut(&path) {
            Some(waiting) => {
                waiting.is_new |= is_new;
                if by.is_some() {
                    waiting.by = by;
                }
                waiting.object = object;
            }
            None => {
                let seq = self.next;
                self.next += 1;
                let waiting = Waiting {
                    seq,
                    is_new,
                    by,
                    object,
                };
                self.entries.insert(path, waiting);
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
        self.take_all(path, subtree)
            .into_iter()
            .map(|(p, ..)| p)
            .collect()
    }

    /// `take`, with who touched each path last.
    pub(super) fn take_by(&mut self, path: &Path, subtree: bool) -> Vec<(PathBuf, By)> {
        self.take_all(path, subtree)
            .into_iter()
            .map(|(p, _, by, _)| (p, by))
            .collect()
    }

    /// `take`, with all that is known of each path.
    fn take_all(&mut self, path: &Path, subtree: bool) -> Vec<Taken> {
        let mut taken: Vec<(u64, Taken)> = Vec::new();
        let mut take = |entries: &mut BTreeMap<PathBuf, Waiting>, p: &Path| {
            if let Some(w) = entries.remove(p) {
                taken.push((w.seq, (p.to_owned(), w.is_new, w.by, w.object)));
            }
        };
        if subtree {
            let below: Vec<PathBuf> = self
                .entries
                .range::<Path, _>((Bound::Included(path), Bound::Unbounded))
                .map(|(p, _)| p)
                .take_while(|p| p.starts_with(path))
                .cloned()
                .collect();
            for p in below {
                take(&mut self.entries, &p);
            }
        } else {
            take(&mut self.entries, path);
        }
        taken.sort_unstable_by_key(|(seq, _)| *seq);
        taken.into_iter().map(|(_, t)| t).collect()
    }

    /// What waits at and below `from` waits at the same place below `to` now (and,
    /// for an exchange, what waits below `to` below `from`), new, still about the
    /// same things: they moved with the rename.
    pub(super) fn follow(&mut self, from: &Path, to: &Path, exchanged: bool) {
        let mut moved: Vec<(PathBuf, By, Option<Object>)> = Vec::new();
        for (path, _, by, object) in self.take_all(from, true) {
            moved.push((below(to, &path, from), by, object));
        }
        if exchanged {
            for (path, _, by, object) in self.take_all(to, true) {
                moved.push((below(from, &path, to), by, object));
            }
        }
        for (path, by, object) in moved {
            self.insert_event(path, true, by, object);
        }
    }

    pub(super) fn drain(&mut self) -> Vec<Taken> {
        let mut all: Vec<(u64, Taken)> = std::mem::take(&mut self.entries)
            .into_iter()
            .map(|(p, w)| (w.seq, (p, w.is_new, w.by, w.object)))
            .collect();
        all.sort_unstable_by_key(|(seq, _)| *seq);
        all.into_iter().map(|(_, t)| t).collect()
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
        let left: Vec<PathBuf> = d.drain().into_iter().map(|(p, ..)| p).collect();
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
