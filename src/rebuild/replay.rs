//! Replaying the journal into a new index, record by record, through the very
//! index methods the daemon used, so the rebuilt index is the one it would have
//! made. A record that does not fit (cut short, a protected folder it never
//! named) is skipped and said, never fatal.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::ids::ObjectId;
use crate::index::{Index, IndexError};
use crate::journal::{self, Record};
use crate::model::AlertKind;
use crate::model::{EntryKind, Gone, Incomplete, Removal};
use crate::words::JsonPath;

/// How many replayed records go into one transaction of the new index.
const REPLAY_COMMIT_EVERY: u64 = 20_000;

/// A line of the journal that could not be replayed, and why.
#[derive(Debug, Clone, Serialize)]
pub struct Skipped {
    pub file: PathBuf,
    pub line: u64,
    pub why: String,
}

/// What a replay did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Replayed {
    pub records: u64,
    pub skipped: Vec<Skipped>,
    /// Versions the index held before the journal began (not rebuilt).
    pub versions_before: u64,
    /// When the last replayed change happened.
    pub last_at: Option<i64>,
}

/// Replays every record of the journal in `dir` into `index` (which has no journal
/// of its own), committing as it goes. `new_code` draws an incident code when a
/// record does not hold enough of them.
pub fn replay(
    dir: &Path,
    index: &Index,
    new_code: &mut dyn FnMut() -> String,
) -> Result<Replayed, IndexError> {
    let mut out = Replayed::default();
    let mut since_commit = 0;
    let mut replayer = Replayer {
        index,
        roots: HashMap::new(),
        new_code,
    };
    index.begin()?;
    for line in journal::read(dir)? {
        let line = line?;
        let skip = |why: String| Skipped {
            file: line.file.clone(),
            line: line.number,
            why,
        };
        let record = match line.record {
            Ok(record) => record,
            Err(why) => {
                out.skipped.push(skip(why));
                continue;
            }
        };
        out.last_at = record.at().max(out.last_at);
        if let Record::Start {
            versions_before, ..
        } = &record
        {
            out.versions_before += versions_before;
        }
        match replayer.apply(record)? {
            Ok(()) => out.records += 1,
            Err(why) => out.skipped.push(skip(why)),
        }
        since_commit += 1;
        if since_commit >= REPLAY_COMMIT_EVERY {
            since_commit = 0;
            index.commit()?;
            index.begin()?;
        }
    }
    index.commit()?;
    Ok(out)
}

struct Replayer<'a> {
    index: &'a Index,
    /// Protected folder path → its id in the new index.
    roots: HashMap<PathBuf, i64>,
    new_code: &'a mut dyn FnMut() -> String,
}

/// The outer result fails the replay (the new index cannot be written); the inner
/// one skips a record that does not fit (and says why).
type Applied = Result<Result<(), String>, IndexError>;

impl Replayer<'_> {
    fn apply(&mut self, record: Record) -> Applied {
        let ix = self.index;
        match record {
            Record::Start { format, .. } if format > journal::FORMAT => {
                return Ok(Err(format!(
                    "the journal was written by a newer version of undelete (format {format})"
                )));
            }
            Record::Start { .. } => {}
            Record::Roots { paths, at } => {
                let paths: Vec<PathBuf> = paths.into_iter().map(JsonPath::into_path).collect();
                // `set_roots` is a transaction of its own.
                ix.commit()?;
                ix.set_roots(&paths, at)?;
                ix.begin()?;
                self.roots = ix.roots()?.into_iter().map(|r| (r.path, r.id)).collect();
            }
            Record::Insert {
                path,
                root,
                observed,
                at,
                by,
            } => {
                let (root, observed) = match (self.root_id(&root), observed.to_observed()) {
                    (Ok(root), Ok(observed)) => (root, observed),
                    (Err(why), _) | (_, Err(why)) => return Ok(Err(why)),
                };
                ix.insert_version_by(path.as_path(), root, &observed, by.as_ref(), at)?;
            }
            Record::Metadata { path, observed } => {
                let observed = match observed.to_observed() {
                    Ok(observed) => observed,
                    Err(why) => return Ok(Err(why)),
                };
                let Some(current) = ix.current(path.as_path())? else {
                    return Ok(Err(format!(
                        "{} has no current version to update",
                        path.as_path().display()
                    )));
                };
                ix.update_metadata(current.id, &observed)?;
            }
            Record::Removed {
                path,
                subtree,
                at,
                approx,
                last_seen,
                moved_out,
                by,
            } => {
                let gone = Gone {
                    at,
                    approx,
                    last_seen,
                    removal: if moved_out {
                        Removal::MovedOut
                    } else {
                        Removal::Deleted
                    },
                    by: by.map(std::sync::Arc::new),
                };
                ix.mark_removed(path.as_path(), subtree, &gone)?;
            }
            Record::Lost {
                path,
                root,
                kind,
                at,
                by,
            } => {
                let root = match self.root_id(&root) {
                    Ok(root) => root,
                    Err(why) => return Ok(Err(why)),
                };
                ix.record_lost(
                    path.as_path(),
                    root,
                    EntryKind::from_code(kind),
                    by.as_ref(),
                    at,
                )?;
            }
            Record::Rename { from, to, root, at } => {
                let root = match self.root_id(&root) {
                    Ok(root) => root,
                    Err(why) => return Ok(Err(why)),
                };
                ix.rename(from.as_path(), to.as_path(), root, at)?;
            }
            Record::Incomplete { path, why } => match Incomplete::from_code(&why) {
                Some(why) => ix.mark_incomplete(path.as_path(), why)?,
                None => return Ok(Err(format!("not a reason this version knows: {why}"))),
            },
            Record::Exchange {
                a,
                a_root,
                b,
                b_root,
                at,
            } => {
                let (a_root, b_root) = match (self.root_id(&a_root), self.root_id(&b_root)) {
                    (Ok(a_root), Ok(b_root)) => (a_root, b_root),
                    (Err(why), _) | (_, Err(why)) => return Ok(Err(why)),
                };
                ix.exchange(a.as_path(), a_root, b.as_path(), b_root, at)?;
            }
            Record::Incidents {
                gap_ns,
                codes,
                rules,
            } => {
                let mut codes = codes.into_iter();
                let new_code = &mut *self.new_code;
                ix.group_incidents_by(
                    gap_ns,
                    crate::grouping::Rules::from_number(rules),
                    &mut || codes.next().unwrap_or_else(&mut *new_code),
                )?;
            }
            Record::Overwrites {
                files,
                window_ns,
                gap_ns,
                codes,
            } => {
                let mut codes = codes.into_iter();
                let new_code = &mut *self.new_code;
                let rules = crate::index::OverwriteRules {
                    files,
                    window_ns,
                    gap_ns,
                };
                ix.group_overwrites(rules, &mut || codes.next().unwrap_or_else(&mut *new_code))?;
            }
            Record::Ended { code, at } => {
                let Some(incident) = ix.incident_by_code(&code)? else {
                    return Ok(Err(format!("no incident {code} to mark as over")));
                };
                ix.end_incident(incident.id, at)?;
            }
            Record::EndTold { code, at } => {
                let Some(incident) = ix.incident_by_code(&code)? else {
                    return Ok(Err(format!("no incident {code} to mark as told")));
                };
                ix.mark_end_told(incident.id, at)?;
            }
            Record::Restored { files, report, at } => {
                let files: Vec<(PathBuf, i64)> = files
                    .into_iter()
                    .map(|(path, t)| (path.into_path(), t))
                    .collect();
                ix.mark_restored(&files, report.as_ref().map(JsonPath::as_path), at)?;
            }
            Record::RestoredAsBefore {
                code,
                files,
                report,
                at,
            } => {
                let files: Vec<PathBuf> = files.into_iter().map(JsonPath::into_path).collect();
                ix.mark_restored_as_before(
                    &code,
                    &files,
                    report.as_ref().map(JsonPath::as_path),
                    at,
                )?;
            }
            Record::Acknowledged {
                kind,
                raised_at,
                note,
                at,
            } => {
                ix.acknowledge_alert(&AlertKind::from(kind), raised_at, note.as_deref(), at)?;
            }
            Record::Alerted {
                code,
                at,
                tells_end,
            } => {
                let Some(incident) = ix.incident_by_code(&code)? else {
                    return Ok(Err(format!("no incident {code} to mark as alerted")));
                };
                ix.mark_incident_alerted(incident.id, at, tells_end)?;
            }
            Record::CutOff { code, cut_off } => {
                let Some(incident) = ix.incident_by_code(&code)? else {
                    return Ok(Err(format!("no incident {code} to record a cut-off for")));
                };
                ix.record_cut_off(incident.id, &cut_off)?;
            }
            Record::Alert { kind, message, at } => {
                ix.raise_alert(&AlertKind::from(kind), &message, at)?;
            }
            Record::AlertCleared { kind, at } => ix.clear_alert(&AlertKind::from(kind), at)?,
            Record::Purged { versions, at } => {
                for (path, object, gone_at) in versions {
                    let Ok(object) = object.parse::<ObjectId>() else {
                        return Ok(Err(format!("an object name is not valid: {object}")));
                    };
                    ix.mark_purged_copy(path.as_path(), &object, gone_at, at)?;
                }
                ix.forget_unreferenced_objects()?;
            }
            Record::Hashed { staged, id, size } => {
                let (Ok(staged), Ok(id)) = (staged.parse::<ObjectId>(), id.parse::<ObjectId>())
                else {
                    return Ok(Err(format!(
                        "an object name is not valid: {staged} or {id}"
                    )));
                };
                if !ix.record_hashed(&staged, &id, size)? {
                    return Ok(Err(format!(
                        "no version points at the staged copy {staged} any more"
                    )));
                }
            }
        }
        Ok(Ok(()))
    }

    fn root_id(&self, root: &JsonPath) -> Result<i64, String> {
        self.roots.get(root.as_path()).copied().ok_or_else(|| {
            format!(
                "{} is not a protected folder in the journal",
                root.as_path().display()
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::tests::file;

    /// Every row of every path, in a form that compares.
    fn everything(ix: &Index, paths: &[&str]) -> Vec<String> {
        let mut out: Vec<String> = paths
            .iter()
            .flat_map(|p| ix.history(Path::new(p)).unwrap())
            .map(|v| format!("{v:?}"))
            .collect();
        out.extend(ix.incidents(100).unwrap().iter().map(|i| format!("{i:?}")));
        out.extend(ix.open_alerts().unwrap().iter().map(|a| format!("{a:?}")));
        out
    }

    /// A new index made from the journal in `dir` alone, every record of it read.
    fn rebuilt(dir: &Path) -> Index {
        let rebuilt = Index::open(&dir.join("new.db")).unwrap();
        let replayed = replay(&dir.join("journal"), &rebuilt, &mut || unreachable!()).unwrap();
        assert!(replayed.skipped.is_empty(), "{replayed:?}");
        rebuilt
    }

    #[test]
    fn a_replay_gives_back_the_same_versions_deletions_and_incidents() {
        let (dir, live, root) = crate::index::tests::journaled_index();
        let gone = crate::index::tests::deleted_at;
        live.begin().unwrap();
        live.insert_version(Path::new("/s/a"), root, &file(1, 1), 10)
            .unwrap();
        let v = live
            .insert_version(Path::new("/s/a"), root, &file(2, 2), 20)
            .unwrap();
        let mut touched = file(2, 2);
        touched.mode = 0o600;
        live.update_metadata(v, &touched).unwrap();
        live.insert_version(Path::new("/s/d/b"), root, &file(3, 3), 20)
            .unwrap();
        live.rename(Path::new("/s/d"), Path::new("/s/e"), root, 30)
            .unwrap();
        live.mark_removed(Path::new("/s/e"), true, &gone(40))
            .unwrap();
        live.record_lost(Path::new("/s/quick"), root, EntryKind::File, None, 41)
            .unwrap();
        // Two incidents: /s/e, and the file deleted in /s itself (unrelated to /s/e).
        let mut codes = ["AAA-AAAA".to_owned(), "BBB-BBBB".to_owned()].into_iter();
        live.group_incidents(60_000_000_000, &mut || codes.next().unwrap())
            .unwrap();
        live.raise_alert(&AlertKind::VaultFull, "full", 42).unwrap();
        live.commit().unwrap();

        let rebuilt = rebuilt(dir.path());
        let paths = ["/s/a", "/s/d/b", "/s/e/b", "/s/quick"];
        let before = everything(&live, &paths);
        assert_eq!(before.len(), 7, "{before:#?}");
        assert_eq!(everything(&rebuilt, &paths), before);
    }

    fn person(via: crate::model::Via, user: &str, pid: i32) -> crate::model::Person {
        let share = via == crate::model::Via::FileShare;
        crate::model::Person {
            via,
            user: Some(user.into()),
            process: Some(if share { "smbd" } else { "rm" }.into()),
            pid,
            command: None,
            machine: share.then(|| "FRONTDESK".into()),
            address: share.then(|| "192.168.1.23".into()),
        }
    }

    #[test]
    fn who_changed_and_deleted_is_replayed_and_two_people_make_two_incidents() {
        use crate::model::Via;
        let (dir, live, root) = crate::index::tests::journaled_index();
        // anna over the share, served by one smbd and then (connected again) another;
        // bob with rm on the server, deleting in the same folder at the same moment.
        let anna = person(Via::FileShare, "anna", 100);
        let anna_again = person(Via::FileShare, "anna", 101);
        let bob = person(Via::Local, "bob", 200);
        let gone = |at, by: &crate::model::Person| Gone {
            by: Some(std::sync::Arc::new(by.clone())),
            ..crate::index::tests::deleted_at(at)
        };
        live.begin().unwrap();
        for (n, name) in ["a", "b", "c", "d"].iter().enumerate() {
            let path = format!("/s/photos/{name}.jpg");
            live.insert_version_by(
                Path::new(&path),
                root,
                &file(n as u8 + 1, 10),
                Some(&anna),
                10,
            )
            .unwrap();
        }
        live.mark_removed(Path::new("/s/photos/a.jpg"), false, &gone(40, &anna))
            .unwrap();
        live.mark_removed(Path::new("/s/photos/b.jpg"), false, &gone(40, &bob))
            .unwrap();
        live.mark_removed(Path::new("/s/photos/c.jpg"), false, &gone(41, &anna_again))
            .unwrap();
        live.record_lost(
            Path::new("/s/photos/quick"),
            root,
            EntryKind::File,
            Some(&bob),
            41,
        )
        .unwrap();
        let mut codes = ["AAA-AAAA".to_owned(), "BBB-BBBB".to_owned()].into_iter();
        live.group_incidents(60_000_000_000, &mut || codes.next().unwrap())
            .unwrap();
        live.commit().unwrap();

        let a = &live.history(Path::new("/s/photos/a.jpg")).unwrap()[0];
        assert_eq!(
            (a.changed_by.as_ref(), a.deleted_by.as_ref()),
            (Some(&anna), Some(&anna))
        );
        let mut incidents: Vec<(Option<String>, u64)> = live
            .incidents(10)
            .unwrap()
            .into_iter()
            .map(|i| (i.person.and_then(|p| p.user), i.files))
            .collect();
        incidents.sort();
        assert_eq!(
            incidents,
            [(Some("anna".into()), 2), (Some("bob".into()), 2)],
            "one incident each, anna's two smbd processes in one"
        );

        let rebuilt = rebuilt(dir.path());
        let paths = [
            "/s/photos/a.jpg",
            "/s/photos/b.jpg",
            "/s/photos/c.jpg",
            "/s/photos/d.jpg",
            "/s/photos/quick",
        ];
        assert_eq!(everything(&rebuilt, &paths), everything(&live, &paths));
    }

    #[test]
    fn an_exchange_replays_to_the_same_swapped_records() {
        let (dir, live, root) = crate::index::tests::journaled_index();
        live.begin().unwrap();
        live.insert_version(Path::new("/s/a/x"), root, &file(1, 1), 10)
            .unwrap();
        live.insert_version(Path::new("/s/a"), root, &file(2, 2), 10)
            .unwrap();
        live.insert_version(Path::new("/s/b"), root, &file(3, 3), 10)
            .unwrap();
        live.insert_version(Path::new("/s/b/y"), root, &file(4, 4), 10)
            .unwrap();
        live.exchange(Path::new("/s/a"), root, Path::new("/s/b"), root, 20)
            .unwrap();
        live.commit().unwrap();
        let size = |ix: &Index, p: &str| ix.current(Path::new(p)).unwrap().map(|v| v.observed.size);
        assert_eq!(
            ["/s/a", "/s/a/y", "/s/b", "/s/b/x", "/s/a/x", "/s/b/y"].map(|p| size(&live, p)),
            [Some(3), Some(4), Some(2), Some(1), None, None]
        );
        let rebuilt = rebuilt(dir.path());
        let paths = ["/s/a", "/s/a/x", "/s/a/y", "/s/b", "/s/b/x", "/s/b/y"];
        assert_eq!(everything(&rebuilt, &paths), everything(&live, &paths));
    }

    #[test]
    fn a_batch_rolled_back_leaves_nothing_in_the_journal() {
        let (dir, live, root) = crate::index::tests::journaled_index();
        let failed = live.batch(|ix| {
            ix.insert_version(Path::new("/s/never"), root, &file(1, 1), 10)?;
            Err::<(), _>(IndexError::Damaged {
                path: PathBuf::from("/s"),
                problem: "a failure in the middle of the batch".into(),
            })
        });
        assert!(failed.is_err());
        live.begin().unwrap();
        live.insert_version(Path::new("/s/kept"), root, &file(2, 2), 20)
            .unwrap();
        live.commit().unwrap();

        let rebuilt = rebuilt(dir.path());
        assert!(rebuilt.history(Path::new("/s/never")).unwrap().is_empty());
        assert_eq!(rebuilt.history(Path::new("/s/kept")).unwrap().len(), 1);
    }
}
