//! Which incident a deletion belongs to: the rules, decided in memory from the
//! incidents still open and the one deletion, so they can be tried on made-up
//! deletions. The index applies the decisions; this module never reads or
//! writes it.
//!
//! An incident should be what one person did. Without knowing who deleted what,
//! the evidence is the folders and the timing:
//!
//! - Deletions in and below an incident's folder join it while they keep coming
//!   (less than the incident gap apart): one `rm -rf`, however long it runs.
//! - Folders directly in the protected folder are unrelated to each other (the
//!   accounts and the photos of a small office): their deletions are never one
//!   incident, and no incident's folder grows to the whole share.
//! - Within one of those folders, a deletion next door joins only in the same
//!   continuous stream (`BURST`): the `rm -rf` moving on to the next subfolder.
//!   A person deleting `2023/` and then, seconds later, `2024/` made two.
//! - When a folder holding several open incidents is deleted itself, the
//!   `rm -rf` reached it: they merge into one.
//! - An incident is named by the deepest folder holding its files.
//! - A program's lock file never starts an incident (Office makes and removes
//!   one at every open and close); it joins one that is happening.
//!
//! The open incidents given are those of one protected folder (and, once
//! deletions say who made them, of one person): the key the caller groups by.

use std::path::{Path, PathBuf};

/// How far apart two deletions may be and still be one continuous stream.
pub const BURST_NS: i64 = 2_000_000_000;

/// Which rules a grouping follows. Journals keep the rules their incidents were
/// made by, so a rebuilt index groups old deletions as they were grouped then.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rules {
    /// Before incidents followed folders: one open incident per protected folder,
    /// its folder widened to hold every deletion within the gap.
    ByTime,
    /// The rules above.
    ByFolder,
}

impl Rules {
    /// The number the journal records them by.
    pub fn number(self) -> u32 {
        match self {
            Self::ByTime => 1,
            Self::ByFolder => 2,
        }
    }

    pub fn from_number(n: u32) -> Self {
        if n >= 2 { Self::ByFolder } else { Self::ByTime }
    }
}

/// One deletion waiting for an incident.
#[derive(Debug, Clone, Copy)]
pub struct Deletion<'a> {
    pub path: &'a Path,
    pub at: i64,
    /// A folder was deleted (files are the ones counted).
    pub folder: bool,
    /// A lock file a program made (see `names::is_program_lock`).
    pub lock: bool,
}

/// An incident still open for more deletions, as the grouping sees it.
#[derive(Debug, Clone)]
pub struct Open {
    pub folder: PathBuf,
    pub first_at: i64,
    pub last_at: i64,
}

/// Where a deletion goes, by index into the open incidents given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Place {
    Join(usize),
    /// Join, and the incident's folder becomes this one (an ancestor of it).
    Widen(usize, PathBuf),
    /// These incidents become one (the first, the oldest, keeps its code), named
    /// by this folder (the deepest holding them all); the deletion joins it.
    Merge(Vec<usize>, PathBuf),
    /// A new incident, in this folder.
    New(PathBuf),
    /// In no incident: a folder or lock file with nothing happening around it.
    Nowhere,
}

/// Decides where `d`, deleted below the protected folder `root`, belongs.
pub fn place(open: &[Open], root: &Path, d: &Deletion<'_>, rules: Rules, gap_ns: i64) -> Place {
    let fits = |o: &Open| o.last_at >= d.at.saturating_sub(gap_ns);
    let parent = d.path.parent().unwrap_or(d.path);
    if rules == Rules::ByTime {
        if d.folder {
            return Place::Nowhere;
        }
        return match latest(open, |o| fits(o)) {
            Some(i) => Place::Widen(i, common_folder(&open[i].folder, parent)),
            None => Place::New(parent.to_owned()),
        };
    }
    if d.folder {
        let mut inside: Vec<usize> = (0..open.len())
            .filter(|&i| fits(&open[i]) && open[i].folder.starts_with(d.path))
            .collect();
        inside.sort_by_key(|&i| (open[i].first_at, i));
        match inside.as_slice() {
            [] => {}
            [one] => return Place::Join(*one),
            [first, rest @ ..] => {
                // Named, as every incident, by the deepest folder holding its files.
                let folder = rest.iter().fold(open[*first].folder.clone(), |f, &i| {
                    common_folder(&f, &open[i].folder)
                });
                return Place::Merge(inside, folder);
            }
        }
        return match deepest(open, |o| {
            fits(o) && o.folder != root && d.path.starts_with(&o.folder)
        }) {
            Some(i) => Place::Join(i),
            None => Place::Nowhere,
        };
    }
    // An incident in the protected folder itself holds only the files deleted there:
    // every folder of the share is below it, and none of them is related to it.
    if let Some(i) = deepest(open, |o| {
        fits(o) && parent.starts_with(&o.folder) && (o.folder != root || parent == root)
    }) {
        return Place::Join(i);
    }
    let burst = BURST_NS.min(gap_ns);
    let next_door = latest(open, |o| {
        d.at - o.last_at <= burst && below(&common_folder(&o.folder, parent), root)
    });
    if let Some(i) = next_door {
        return Place::Widen(i, common_folder(&open[i].folder, parent));
    }
    if d.lock {
        Place::Nowhere
    } else {
        Place::New(parent.to_owned())
    }
}

/// Whether `folder` is strictly below `root`.
fn below(folder: &Path, root: &Path) -> bool {
    folder != root && folder.starts_with(root)
}

/// The open incident with the latest deletion among those that `ok`.
fn latest(open: &[Open], ok: impl Fn(&Open) -> bool) -> Option<usize> {
    (0..open.len())
        .filter(|&i| ok(&open[i]))
        .max_by_key(|&i| (open[i].last_at, i))
}

/// The open incident with the deepest folder among those that `ok` (then the latest).
fn deepest(open: &[Open], ok: impl Fn(&Open) -> bool) -> Option<usize> {
    (0..open.len())
        .filter(|&i| ok(&open[i]))
        .max_by_key(|&i| (open[i].folder.components().count(), open[i].last_at, i))
}

/// The deepest folder holding both `a` and `b`.
pub fn common_folder(a: &Path, b: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for (x, y) in a.components().zip(b.components()) {
        if x != y {
            break;
        }
        out.push(x);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000_000;
    const GAP: i64 = 60 * S;

    /// Deletions in order, each placed among the incidents the earlier ones made.
    /// Returns each incident's folder and the deletions in it (by number).
    fn group(deletions: &[(&str, i64, bool)]) -> Vec<(String, Vec<usize>)> {
        let root = Path::new("/share");
        let mut open: Vec<Open> = Vec::new();
        let mut members: Vec<Vec<usize>> = Vec::new();
        let mut merged: Vec<bool> = Vec::new();
        for (n, (path, at, folder)) in deletions.iter().enumerate() {
            let path = Path::new(path);
            let d = Deletion {
                path,
                at: *at,
                folder: *folder,
                lock: crate::names::is_program_lock(path),
            };
            let live: Vec<usize> = (0..open.len()).filter(|&i| !merged[i]).collect();
            let view: Vec<Open> = live.iter().map(|&i| open[i].clone()).collect();
            let into = match place(&view, root, &d, Rules::ByFolder, GAP) {
                Place::Join(i) => live[i],
                Place::Widen(i, folder) => {
                    open[live[i]].folder = folder;
                    live[i]
                }
                Place::Merge(all, folder) => {
                    let survivor = live[all[0]];
                    for &other in &all[1..] {
                        let moved = std::mem::take(&mut members[live[other]]);
                        members[survivor].extend(moved);
                        merged[live[other]] = true;
                    }
                    open[survivor].folder = folder;
                    survivor
                }
                Place::New(folder) => {
                    open.push(Open {
                        folder,
                        first_at: *at,
                        last_at: *at,
                    });
                    members.push(Vec::new());
                    merged.push(false);
                    open.len() - 1
                }
                Place::Nowhere => continue,
            };
            open[into].last_at = open[into].last_at.max(*at);
            members[into].push(n);
        }
        (0..open.len())
            .filter(|&i| !merged[i])
            .map(|i| (open[i].folder.display().to_string(), members[i].clone()))
            .collect()
    }

    #[test]
    fn two_top_folders_deleted_at_once_are_two_incidents() {
        let got = group(&[
            ("/share/accounts/a.xls", 0, false),
            ("/share/accounts", 0, true),
            ("/share/photos/b.jpg", 0, false),
            ("/share/photos", 0, true),
        ]);
        assert_eq!(
            got,
            [
                ("/share/accounts".into(), vec![0, 1]),
                ("/share/photos".into(), vec![2, 3])
            ]
        );
        // Named by where the files were, the folders above joining it.
        let got = group(&[
            ("/share/accounts/2026/q1.xls", 0, false),
            ("/share/accounts/2026", 0, true),
            ("/share/accounts", 0, true),
        ]);
        assert_eq!(got, [("/share/accounts/2026".into(), vec![0, 1, 2])]);
    }

    #[test]
    fn one_rm_rf_is_one_incident_however_deep_and_long() {
        // Depth first, as rm -rf goes: the first files are deep in a subfolder.
        let got = group(&[
            ("/share/photos/2023/a.jpg", 0, false),
            ("/share/photos/2023", S / 10, true),
            ("/share/photos/2024/b.jpg", S / 5, false),
            ("/share/photos/2024", S / 2, true),
            ("/share/photos/c.jpg", 40 * S, false),
            ("/share/photos", 90 * S, true),
        ]);
        assert_eq!(got, [("/share/photos".into(), vec![0, 1, 2, 3, 4, 5])]);
    }

    #[test]
    fn subfolders_deleted_seconds_apart_are_two_incidents_until_their_folder_goes() {
        let first = [
            ("/share/photos/2023/a.jpg", 0, false),
            ("/share/photos/2023", 0, true),
            ("/share/photos/2024/b.jpg", 5 * S, false),
            ("/share/photos/2024", 5 * S, true),
        ];
        assert_eq!(
            group(&first),
            [
                ("/share/photos/2023".into(), vec![0, 1]),
                ("/share/photos/2024".into(), vec![2, 3])
            ]
        );
        // The rm -rf reached the folder holding both: it was one after all.
        let mut all = first.to_vec();
        all.push(("/share/photos", 6 * S, true));
        assert_eq!(group(&all), [("/share/photos".into(), vec![0, 1, 2, 3, 4])]);
    }

    #[test]
    fn a_folder_never_grows_to_the_share_for_a_deletion_nearby() {
        let got = group(&[
            ("/share/photos/a.jpg", 0, false),
            ("/share/notes.txt", S / 10, false),
            ("/share/photos/b.jpg", S / 5, false),
            ("/share/docs/c.txt", S / 4, false),
        ]);
        assert_eq!(
            got,
            [
                ("/share/photos".into(), vec![0, 2]),
                ("/share".into(), vec![1]),
                ("/share/docs".into(), vec![3])
            ]
        );
    }

    #[test]
    fn lock_files_start_nothing_but_join_what_is_happening() {
        let got = group(&[
            ("/share/docs/~$report.docx", 0, false),
            ("/share/photos/a.jpg", 100 * S, false),
            ("/share/photos/.~lock.b.odt#", 101 * S, false),
        ]);
        assert_eq!(got, [("/share/photos".into(), vec![1, 2])]);
    }

    #[test]
    fn the_old_rules_keep_one_incident_per_share_within_the_gap() {
        let open = [Open {
            folder: PathBuf::from("/share/photos"),
            first_at: 0,
            last_at: 0,
        }];
        let d = Deletion {
            path: Path::new("/share/docs/c.txt"),
            at: S,
            folder: false,
            lock: false,
        };
        assert_eq!(
            place(&open, Path::new("/share"), &d, Rules::ByTime, GAP),
            Place::Widen(0, PathBuf::from("/share"))
        );
    }

    #[test]
    fn the_common_folder_is_the_deepest_shared_one() {
        assert_eq!(
            common_folder(
                Path::new("/s/photos/a/1.jpg"),
                Path::new("/s/photos/b/2.jpg")
            ),
            PathBuf::from("/s/photos")
        );
    }
}
