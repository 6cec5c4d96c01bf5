//! Putting new versions that show signs of encryption into overwrite incidents.
//!
//! Versions with signs (`signs::Signs`) wait, each of its protected folder, until
//! enough different files show them within the window: then they become an
//! incident of kind `overwritten`, which later ones join while they keep coming
//! (less than the incident gap apart). Ones that never reach the threshold are
//! put in no incident once out of the window. The version of each file that was
//! current when its incident began is marked: that is what the incident's restore
//! brings back, and what retention holds. Decided from the index alone, so a
//! journal replayed makes the same incidents with the same codes.
use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};

use rusqlite::{OptionalExtension, params};

use super::{Index, NO_INCIDENT, Result, path_bytes, path_from_bytes};
use crate::journal::Record;
use crate::model::{IncidentKind, Person};
use crate::signs::Signs;

/// When overwrites become an incident.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OverwriteRules {
    /// This many different files with signs within `window_ns` make an incident.
    pub files: u64,
    pub window_ns: i64,
    /// How far apart overwrites may be and still join one incident.
    pub gap_ns: i64,
}

/// A version with signs, waiting for an incident.
struct Signed {
    id: i64,
    path: PathBuf,
    root_id: i64,
    at: i64,
    signs: Signs,
    /// The name it had before an extension was added to it (`Index::rename`).
    renamed_from: Option<PathBuf>,
    /// Who wrote it (a `people` id), where the event source said.
    by: Option<i64>,
}

/// Who an overwrite incident is of, where more than a pid is known (see
/// `Person::is_known`); `None` for nobody known, which may be anybody's.
type PersonKey = Option<Person>;

/// Whether two people may be one, as overwrite incidents compare them: the same way
/// in, and the same user, PC and address where both say one. smbd asked after a
/// session ended names the user but not the PC: that is no other person.
fn may_be_same(a: &Person, b: &Person) -> bool {
    fn agree(a: &Option<String>, b: &Option<String>) -> bool {
        a.is_none() || b.is_none() || a == b
    }
    a.via == b.via
        && agree(&a.user, &b.user)
        && agree(&a.machine, &b.machine)
        && agree(&a.address, &b.address)
}

/// The overwrites of one person in one protected folder, as they are grouped.
#[derive(Default)]
struct Bucket {
    /// Their incident still open, with its last overwrite.
    open: Option<(i64, i64)>,
    waiting: VecDeque<Signed>,
    /// Different files among those waiting, by how many versions each has there.
    files: HashMap<PathBuf, usize>,
}

impl Signed {
    /// The file it is a new version of: itself, or for a copy under a new
    /// extension, or a file renamed to one, the name it was made from.
    fn original(&self) -> PathBuf {
        if let Some(name) = &self.renamed_from {
            name.clone()
        } else if self.signs.contains(Signs::NEW_EXTENSION) {
            crate::signs::without_added_extension(&self.path).unwrap_or_else(|| self.path.clone())
        } else {
            self.path.clone()
        }
    }
}

impl Index {
    /// Puts the versions with signs of encryption into overwrite incidents by
    /// `rules`. Returns the ids of the incidents that changed.
    pub fn group_overwrites(
        &self,
        rules: OverwriteRules,
        new_code: &mut dyn FnMut() -> String,
    ) -> Result<Vec<i64>> {
        let mut codes = Vec::new();
        let (changed, decided) = self.group_signed(rules, &mut || {
            let code = new_code();
            codes.push(code.clone());
            code
        })?;
        if decided {
            self.record(|| {
                Ok(Record::Overwrites {
                    files: rules.files,
                    window_ns: rules.window_ns,
                    gap_ns: rules.gap_ns,
                    codes,
                })
            })?;
        }
        Ok(changed)
    }

    /// Returns the incidents that changed, and whether any version was decided.
    fn group_signed(
        &self,
        rules: OverwriteRules,
        new_code: &mut dyn FnMut() -> String,
    ) -> Result<(Vec<i64>, bool)> {
        let signed: Vec<Signed> = {
            let mut stmt = self.conn.prepare_cached(
                "SELECT id, path, root_id, seen_at, signs, renamed_from, changed_by FROM versions
                 WHERE signs != 0 AND overwrite_incident IS NULL ORDER BY seen_at, id",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok(Signed {
                    id: r.get(0)?,
                    path: path_from_bytes(r.get(1)?),
                    root_id: r.get(2)?,
                    at: r.get(3)?,
                    signs: Signs::from_bits(r.get(4)?),
                    renamed_from: r.get::<_, Option<Vec<u8>>>(5)?.map(path_from_bytes),
                    by: r.get(6)?,
                })
            })?;
            rows.collect::<rusqlite::Result<_>>()?
        };
        let mut changed = Vec::new();
        let mut decided = false;
        let mut by_root: HashMap<i64, Vec<Signed>> = HashMap::new();
        for row in signed {
            by_root.entry(row.root_id).or_default().push(row);
        }
        let mut roots: Vec<_> = by_root.into_iter().collect();
        roots.sort_by_key(|(root, _)| *root);
        let mut keys: HashMap<i64, PersonKey> = HashMap::new();
        for (root_id, rows) in roots {
            // An incident is one person's: two PCs encrypting at once make two. Who
            // is not known (inotify, a process that had ended) joins whoever wrote
            // last here, as a deletion by nobody known may join anyone's incident.
            let mut buckets: Vec<(PersonKey, Bucket)> = Vec::new();
            let mut last: Option<usize> = None;
            for row in rows {
                let known_key = self.person_key(&mut keys, row.by)?;
                let known = known_key.as_ref().and(row.by);
                let found = match &known_key {
                    Some(p) => buckets
                        .iter()
                        .position(|(k, _)| k.as_ref().is_none_or(|k| may_be_same(k, p))),
                    None => last.or_else(|| (!buckets.is_empty()).then_some(0)),
                };
                let at = match found {
                    Some(at) => at,
                    None => {
                        let open = self.open_overwrite_incident(root_id, &known_key, &mut keys)?;
                        let bucket = Bucket {
                            open,
                            ..Bucket::default()
                        };
                        buckets.push((known_key.clone(), bucket));
                        buckets.len() - 1
                    }
                };
                last = Some(at);
                let (key, bucket) = &mut buckets[at];
                // What a person is known by grows as more of it is said.
                if let Some(p) = known_key {
                    match key {
                        None => *key = Some(p),
                        Some(k) => {
                            k.user = k.user.take().or(p.user);
                            k.machine = k.machine.take().or(p.machine);
                            k.address = k.address.take().or(p.address);
                        }
                    }
                }
                if let Some((id, last_at)) = bucket.open
                    && row.at <= last_at.saturating_add(rules.gap_ns)
                {
                    self.join_overwrite(id, &row, known)?;
                    bucket.open = Some((id, last_at.max(row.at)));
                    changed.push(id);
                    decided = true;
                    continue;
                }
                bucket.open = None;
                let (waiting, files) = (&mut bucket.waiting, &mut bucket.files);
                // Out of the window of this one: they never made an incident.
                while waiting
                    .front()
                    .is_some_and(|w| w.at < row.at.saturating_sub(rules.window_ns))
                {
                    let w = waiting.pop_front().expect("checked");
                    forget(files, &w.original());
                    self.conn
                        .prepare_cached(
                            "UPDATE versions SET overwrite_incident = ?2 WHERE id = ?1",
                        )?
                        .execute(params![w.id, NO_INCIDENT])?;
                    decided = true;
                }
                *files.entry(row.original()).or_default() += 1;
                waiting.push_back(row);
                if (files.len() as u64) < rules.files.max(1) {
                    continue;
                }
                let folder = waiting
                    .iter()
                    .map(Signed::original)
                    .reduce(|a, b| crate::grouping::common_folder(&a, &b))
                    .and_then(|p| {
                        if waiting.len() == 1 {
                            p.parent().map(Path::to_owned)
                        } else {
                            Some(p)
                        }
                    })
                    .unwrap_or_default();
                let first_at = waiting.front().map_or(0, |w| w.at);
                let kind = match waiting.front() {
                    Some(w) if w.signs.contains(Signs::NEW_EXTENSION) => IncidentKind::Renamed,
                    _ => IncidentKind::Overwritten,
                };
                // Named by its first overwrite whose person is known.
                let mut person = None;
                let mut known_of = Vec::with_capacity(waiting.len());
                for w in waiting.iter() {
                    let known = self.person_key(&mut keys, w.by)?.and(w.by);
                    person = person.or(known);
                    known_of.push(known);
                }
                let id = self
                    .new_overwrite_incident(root_id, &folder, first_at, kind, person, new_code)?;
                let mut last_at = first_at;
                for (w, known) in waiting.drain(..).zip(known_of) {
                    self.join_overwrite(id, &w, known)?;
                    last_at = last_at.max(w.at);
                }
                files.clear();
                bucket.open = Some((id, last_at));
                changed.push(id);
                decided = true;
            }
        }
        changed.sort_unstable();
        changed.dedup();
        Ok((changed, decided))
    }

    /// The overwrite incident of `root_id` still open for `key`'s overwrites, with its
    /// last overwrite: the latest of that person's, or of nobody known (which may be
    /// anybody's); for nobody known, the latest of all.
    fn open_overwrite_incident(
        &self,
        root_id: i64,
        key: &PersonKey,
        keys: &mut HashMap<i64, PersonKey>,
    ) -> Result<Option<(i64, i64)>> {
        let open: Vec<(i64, i64, Option<i64>)> = self
            .conn
            .prepare_cached(
                "SELECT id, last_at, person FROM incidents
                 WHERE root_id = ?1 AND kind != 'deleted' AND ended_at IS NULL
                     AND merged_into IS NULL
                 ORDER BY last_at DESC",
            )?
            .query_map([root_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
            .collect::<rusqlite::Result<_>>()?;
        for (id, last_at, person) in open {
            let theirs = self.person_key(keys, person)?;
            let joins = match (key, &theirs) {
                (Some(a), Some(b)) => may_be_same(a, b),
                _ => true,
            };
            if joins {
                return Ok(Some((id, last_at)));
            }
        }
        Ok(None)
    }

    /// The key `by` (a `people` id) is compared by; `None` when nobody is known (see
    /// `Person::is_known`).
    fn person_key(&self, keys: &mut HashMap<i64, PersonKey>, by: Option<i64>) -> Result<PersonKey> {
        let Some(by) = by else {
            return Ok(None);
        };
        if let Some(key) = keys.get(&by) {
            return Ok(key.clone());
        }
        let key = self.person(by)?.filter(|p| p.is_known());
        keys.insert(by, key.clone());
        Ok(key)
    }

    fn new_overwrite_incident(
        &self,
        root_id: i64,
        folder: &Path,
        at: i64,
        kind: IncidentKind,
        person: Option<i64>,
        new_code: &mut dyn FnMut() -> String,
    ) -> Result<i64> {
        // Codes are random; on the rare clash another is drawn.
        let mut insert = self.conn.prepare_cached(
            "INSERT OR IGNORE INTO incidents (code, root_id, folder, first_at, last_at,
                 files, bytes, recoverable, kind, person)
             VALUES (?1, ?2, ?3, ?4, ?4, 0, 0, 0, ?5, ?6)",
        )?;
        loop {
            let code = new_code();
            let values = params![code, root_id, path_bytes(folder), at, kind.code(), person];
            if insert.execute(values)? > 0 {
                return Ok(self.conn.last_insert_rowid());
            }
        }
    }

    /// Puts one version with signs into incident `id`: its file's version from
    /// before the incident began is marked, and counted once.
    /// `known` is who wrote it where that is more than a pid (see `Person::is_known`):
    /// an incident of nobody known yet becomes that person's.
    fn join_overwrite(&self, id: i64, row: &Signed, known: Option<i64>) -> Result<()> {
        self.conn
            .prepare_cached("UPDATE versions SET overwrite_incident = ?2 WHERE id = ?1")?
            .execute(params![row.id, id])?;
        let (first_at, folder): (i64, Vec<u8>) = self.conn.query_row(
            "SELECT first_at, folder FROM incidents WHERE id = ?1",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        let original = row.original();
        let marked: bool = self.conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM versions
                 WHERE (path = ?1 OR renamed_from = ?1) AND before_incident = ?2)",
            params![path_bytes(&original), id],
            |r| r.get(0),
        )?;
        let mut folder = path_from_bytes(folder);
        if !original.starts_with(&folder) {
            folder = crate::grouping::common_folder(&folder, &original);
        }
        self.conn.execute(
            "UPDATE incidents SET last_at = MAX(last_at, ?2), folder = ?3,
                 person = COALESCE(person, ?5),
                 kind = CASE
                     WHEN ?4 AND kind = 'overwritten' THEN 'mixed'
                     WHEN NOT ?4 AND kind = 'renamed' THEN 'mixed'
                     ELSE kind END
             WHERE id = ?1",
            params![
                id,
                row.at,
                path_bytes(&folder),
                row.signs.contains(Signs::NEW_EXTENSION),
                known
            ],
        )?;
        if marked {
            return Ok(());
        }
        // As it was just before the incident began: the last version without signs
        // from before it, under its name or renamed since to a new extension. One
        // seen while it was being written, or empty (truncated, the encryption to
        // come), is taken only when there is no other.
        let before: Option<(i64, i64, bool)> = self
            .conn
            .prepare_cached(
                "SELECT id, size, object IS NOT NULL AND uncaptured IS NULL FROM versions
                 WHERE (path = ?1 OR renamed_from = ?1) AND id < ?2 AND signs = 0
                   AND seen_at <= ?3 AND kind = 0
                 ORDER BY (incomplete IS NULL AND size > 0) DESC, id DESC LIMIT 1",
            )?
            .query_row(params![path_bytes(&original), row.id, first_at], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .optional()?;
        let Some((before, size, recoverable)) = before else {
            return Ok(());
        };
        self.conn
            .prepare_cached("UPDATE versions SET before_incident = ?2 WHERE id = ?1")?
            .execute(params![before, id])?;
        self.conn
            .prepare_cached(
                "UPDATE incidents SET files = files + 1, bytes = bytes + ?2,
                     recoverable = recoverable + ?3 WHERE id = ?1",
            )?
            .execute(params![id, size, recoverable as i64])?;
        Ok(())
    }
}

fn forget(files: &mut HashMap<PathBuf, usize>, path: &Path) {
    if let Some(n) = files.get_mut(path) {
        *n -= 1;
        if *n == 0 {
            files.remove(path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::tests::*;
    use crate::model::*;

    const S: i64 = 1_000_000_000;
    const RULES: OverwriteRules = OverwriteRules {
        files: 3,
        window_ns: 300 * S,
        gap_ns: 60 * S,
    };

    fn encrypted(object: u8) -> Observed {
        Observed {
            signs: Signs::ENTROPY_JUMP,
            ..file(object, 10)
        }
    }

    #[test]
    fn enough_files_with_signs_make_an_overwrite_incident_that_keeps_what_was_before() {
        let (_d, ix, root) = index();
        for n in 0..4u8 {
            let p = PathBuf::from(format!("/srv/share/docs/{n}.txt"));
            ix.insert_version(&p, root, &file(n + 1, 10), S).unwrap();
        }
        let mut codes = ["K7Q-4MD".to_owned()].into_iter();
        let mut code = || codes.next().unwrap();
        // Two: not yet an incident.
        for n in 0..2u8 {
            let p = PathBuf::from(format!("/srv/share/docs/{n}.txt"));
            ix.insert_version(&p, root, &encrypted(100 + n), 10 * S)
                .unwrap();
        }
        assert!(ix.group_overwrites(RULES, &mut code).unwrap().is_empty());
        // The first one rewritten again: still two files.
        ix.insert_version(
            Path::new("/srv/share/docs/0.txt"),
            root,
            &encrypted(120),
            11 * S,
        )
        .unwrap();
        assert!(ix.group_overwrites(RULES, &mut code).unwrap().is_empty());
        ix.insert_version(
            Path::new("/srv/share/docs/2.txt"),
            root,
            &encrypted(102),
            12 * S,
        )
        .unwrap();
        let changed = ix.group_overwrites(RULES, &mut code).unwrap();
        assert_eq!(changed.len(), 1);
        let incident = ix.incident(changed[0]).unwrap().unwrap();
        assert_eq!(incident.kind, IncidentKind::Overwritten);
        assert_eq!((incident.files, incident.recoverable), (3, 3));
        assert_eq!(incident.first_at, 10 * S);
        assert_eq!(incident.folder, Path::new("/srv/share/docs"));
        let before = ix.overwritten_before(incident.id).unwrap();
        let objects: Vec<_> = before.iter().map(|v| v.observed.object).collect();
        assert_eq!(
            objects,
            (1..=3u8)
                .map(|n| Some(crate::ids::ObjectId::from_bytes([n; 32])))
                .collect::<Vec<_>>(),
            "the versions from before the incident, not the first encrypted one"
        );
    }

    #[test]
    fn signs_spread_wider_than_the_window_make_no_incident() {
        let (_d, ix, root) = index();
        for n in 0..5u8 {
            let p = PathBuf::from(format!("/srv/share/{n}.txt"));
            ix.insert_version(&p, root, &file(n + 1, 10), S).unwrap();
            ix.insert_version(&p, root, &encrypted(50 + n), (n as i64 + 1) * 400 * S)
                .unwrap();
        }
        let changed = ix
            .group_overwrites(RULES, &mut || "K7Q-4MD".into())
            .unwrap();
        assert!(changed.is_empty());
        let waiting: i64 = ix
            .conn
            .query_row(
                "SELECT COUNT(*) FROM versions WHERE overwrite_incident IS NULL AND signs != 0",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(waiting, 1, "only the last may still join one");
    }

    #[test]
    fn two_pcs_encrypting_at_once_make_two_incidents_each_naming_its_pc() {
        let (_d, ix, root) = index();
        let anna = Person::anna_over_the_share();
        let bob = Person {
            user: Some("bob".into()),
            machine: Some("OFFICE2".into()),
            address: Some("192.168.1.24".into()),
            pid: 4343,
            ..anna.clone()
        };
        for n in 0..8u8 {
            let p = PathBuf::from(format!("/srv/share/docs/{n}.txt"));
            ix.insert_version(&p, root, &file(n + 1, 10), S).unwrap();
        }
        // Interleaved, as two PCs at once: anna 0-3, bob 4-7.
        for n in 0..4u8 {
            for (k, who, at) in [
                (n, &anna, 10 + 2 * n as i64),
                (n + 4, &bob, 11 + 2 * n as i64),
            ] {
                let p = PathBuf::from(format!("/srv/share/docs/{k}.txt"));
                ix.insert_version_by(&p, root, &encrypted(100 + k), Some(who), at * S)
                    .unwrap();
            }
        }
        let mut codes = ["K7Q-4MD".to_owned(), "M2X-8RT".to_owned()].into_iter();
        let changed = ix
            .group_overwrites(RULES, &mut || codes.next().unwrap())
            .unwrap();
        assert_eq!(changed.len(), 2);
        let mut incidents: Vec<Incident> = changed
            .iter()
            .map(|id| ix.incident(*id).unwrap().unwrap())
            .collect();
        incidents.sort_by_key(|i| i.first_at);
        let users: Vec<_> = incidents
            .iter()
            .map(|i| (i.person.as_ref().and_then(|p| p.user.clone()), i.files))
            .collect();
        assert_eq!(
            users,
            vec![(Some("anna".into()), 4), (Some("bob".into()), 4)],
        );
    }

    #[test]
    fn smbd_asked_after_its_session_ended_is_no_other_person() {
        let (_d, ix, root) = index();
        let anna = Person::anna_over_the_share();
        // The same PC's next session, asked once it had ended: the user, no PC.
        let later = Person {
            machine: None,
            address: None,
            pid: 4343,
            ..anna.clone()
        };
        for n in 0..6u8 {
            let p = PathBuf::from(format!("/srv/share/docs/{n}.txt"));
            ix.insert_version(&p, root, &file(n + 1, 10), S).unwrap();
            let who = if n < 3 { &anna } else { &later };
            ix.insert_version_by(
                &p,
                root,
                &encrypted(100 + n),
                Some(who),
                (10 + n as i64) * S,
            )
            .unwrap();
        }
        let changed = ix
            .group_overwrites(RULES, &mut || "K7Q-4MD".into())
            .unwrap();
        assert_eq!(changed.len(), 1);
        let incident = ix.incident(changed[0]).unwrap().unwrap();
        assert_eq!(incident.files, 6);
        assert_eq!(incident.person, Some(anna));
    }
}
