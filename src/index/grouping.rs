//! Putting new deletions into incidents: the decisions of `crate::grouping`,
//! applied to the `incidents` table in memory first and written once per incident.
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use rusqlite::{OptionalExtension, params};

use super::{Index, NO_INCIDENT, Result, path_bytes, path_from_bytes};
use crate::journal::Record;
use crate::model::AlertKind;
use crate::model::EntryKind;

impl Index {
    /// Puts every deletion not yet in an incident into one, by the rules of
    /// `grouping`; deletions further apart than `gap_ns` never join. Returns the ids
    /// of incidents that changed.
    pub fn group_incidents(
        &self,
        gap_ns: i64,
        new_code: &mut dyn FnMut() -> String,
    ) -> Result<Vec<i64>> {
        self.group_incidents_by(gap_ns, crate::grouping::Rules::ByFolder, new_code)
    }

    /// `group_incidents` by the given rules: a journal replayed keeps the rules its
    /// incidents were made by.
    pub fn group_incidents_by(
        &self,
        gap_ns: i64,
        rules: crate::grouping::Rules,
        new_code: &mut dyn FnMut() -> String,
    ) -> Result<Vec<i64>> {
        // Recorded after, with the codes drawn, so a rebuild gives the same codes.
        let mut codes = Vec::new();
        let (changed, grouped) = self.group_loose_deletions(gap_ns, rules, &mut || {
            let code = new_code();
            codes.push(code.clone());
            code
        })?;
        if grouped {
            self.record(|| {
                Ok(Record::Incidents {
                    gap_ns,
                    codes,
                    rules: rules.number(),
                })
            })?;
        }
        Ok(changed)
    }

    /// Returns the incidents that changed, and whether any deletion was grouped.
    fn group_loose_deletions(
        &self,
        gap_ns: i64,
        rules: crate::grouping::Rules,
        new_code: &mut dyn FnMut() -> String,
    ) -> Result<(Vec<i64>, bool)> {
        let mut loose: Vec<Loose> = {
            let mut stmt = self.conn.prepare_cached(
                "SELECT id, path, root_id, kind, deleted_at, seen_at, size, uncaptured IS NULL,
                     deleted_by
                 FROM versions WHERE deleted_at IS NOT NULL AND incident_id IS NULL
                 ORDER BY deleted_at, id",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok(Loose {
                    id: r.get(0)?,
                    path: path_from_bytes(r.get(1)?),
                    root_id: r.get(2)?,
                    folder: EntryKind::from_code(r.get(3)?) == EntryKind::Dir,
                    at: r.get(4)?,
                    seen_at: r.get(5)?,
                    size: r.get(6)?,
                    recoverable: r.get(7)?,
                    by: r.get(8)?,
                })
            })?;
            rows.collect::<rusqlite::Result<_>>()?
        };
        if loose.is_empty() {
            return Ok((Vec::new(), false));
        }
        // Deleted in the same moment (one batch, or one scan), in the order `rm -rf`
        // goes: files, then folders deepest first. A folder taken before the files in
        // it would find no incident to be evidence for. (Stable: files keep their order.)
        loose.sort_by_key(|r| {
            let depth = if r.folder {
                r.path.as_os_str().len()
            } else {
                0
            };
            (r.at, r.folder, std::cmp::Reverse(depth))
        });
        // Decided in memory and written once per incident at the end: a burst of
        // 100,000 deletions costs one statement per file instead of three.
        let mut by_root: HashMap<i64, RootGroupings> = HashMap::new();
        let mut nowhere = Vec::new();
        let mut people = People::default();
        for row in &loose {
            let here = match by_root.entry(row.root_id) {
                std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::hash_map::Entry::Vacant(e) => e.insert(RootGroupings::new(
                    self.root_path(row.root_id)?,
                    self.open_groupings(row.root_id, row.at.saturating_sub(gap_ns))?,
                )),
            };
            let deletion = crate::grouping::Deletion {
                path: &row.path,
                at: row.at,
                folder: row.folder,
                lock: crate::names::is_program_lock(&row.path),
            };
            // An incident is one person's: the rules see only the open incidents of
            // the person who made this deletion (and those of nobody known yet).
            let theirs: Vec<usize> = (0..here.open.len())
                .map(|k| Ok((k, people.same(self, here.all[here.open[k]].person, row.by)?)))
                .collect::<Result<Vec<_>>>()?
                .into_iter()
                .filter_map(|(k, same)| same.then_some(k))
                .collect();
            let all_theirs = theirs.len() == here.open.len();
            let views: Vec<crate::grouping::Open> = match all_theirs {
                true => Vec::new(),
                false => theirs.iter().map(|&k| here.views[k].clone()).collect(),
            };
            let views = if all_theirs { &here.views } else { &views };
            let at = |k: usize| theirs[k];
            let into = match crate::grouping::place(views, &here.root, &deletion, rules, gap_ns) {
                crate::grouping::Place::Join(k) => here.open[at(k)],
                crate::grouping::Place::Widen(k, folder) => {
                    here.all[here.open[at(k)]].folder = folder;
                    here.open[at(k)]
                }
                crate::grouping::Place::Merge(ks, folder) => {
                    let ks: Vec<usize> = ks.into_iter().map(at).collect();
                    here.merge(&ks, folder)
                }
                crate::grouping::Place::New(folder) => {
                    let g = self.new_incident(row.root_id, &folder, row.at, new_code)?;
                    here.views.push(g.view());
                    here.all.push(g);
                    here.open.push(here.all.len() - 1);
                    here.all.len() - 1
                }
                crate::grouping::Place::Nowhere => {
                    nowhere.push(row.id);
                    continue;
                }
            };
            // Whose it is: the first deletion by someone known (better than a pid).
            if !people.known(self, here.all[into].person)? && people.known(self, row.by)? {
                here.all[into].person = row.by;
            }
            here.all[into].add(self, row, deletion.lock)?;
            if let Some(k) = here.open.iter().position(|&i| i == into) {
                here.views[k] = here.all[into].view();
            }
        }
        let mut changed = Vec::new();
        for here in by_root.into_values() {
            for g in &here.all {
                if let Some(survivor) = g.merged_into {
                    self.conn
                        .prepare_cached("UPDATE incidents SET merged_into = ?2 WHERE id = ?1")?
                        .execute(params![g.id, here.all[survivor].id])?;
                } else if g.touched {
                    self.save_grouping(g)?;
                    changed.push(g.id);
                }
            }
        }
        let mut none = self
            .conn
            .prepare_cached("UPDATE versions SET incident_id = ?2 WHERE id = ?1")?;
        for id in nowhere {
            none.execute(params![id, NO_INCIDENT])?;
        }
        Ok((changed, true))
    }

    /// The incidents of `root_id` still open whose last deletion is at or after `since`.
    fn open_groupings(&self, root_id: i64, since: i64) -> Result<Vec<Grouping>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, code, folder, first_at, last_at, person FROM incidents
             WHERE root_id = ?1 AND last_at >= ?2 AND ended_at IS NULL AND merged_into IS NULL
                 AND kind = 'deleted'
             ORDER BY id",
        )?;
        let rows = stmt.query_map(params![root_id, since], |r| {
            let first_at: i64 = r.get(3)?;
            let mut g = Grouping::new(
                r.get(0)?,
                r.get(1)?,
                path_from_bytes(r.get(2)?),
                first_at,
                r.get(4)?,
                Some(first_at),
            );
            g.person = r.get(5)?;
            Ok(g)
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Starts an incident with no files yet; `save_grouping` adds them.
    fn new_incident(
        &self,
        root_id: i64,
        folder: &Path,
        at: i64,
        new_code: &mut dyn FnMut() -> String,
    ) -> Result<Grouping> {
        // Codes are random; on the rare clash another is drawn.
        let mut insert = self.conn.prepare_cached(
            "INSERT OR IGNORE INTO incidents (code, root_id, folder, first_at, last_at,
                 files, bytes, recoverable)
             VALUES (?1, ?2, ?3, ?4, ?4, 0, 0, 0)",
        )?;
        let code = loop {
            let code = new_code();
            if insert.execute(params![code, root_id, path_bytes(folder), at])? > 0 {
                break code;
            }
        };
        Ok(Grouping::new(
            self.conn.last_insert_rowid(),
            code,
            folder.to_owned(),
            at,
            at,
            None,
        ))
    }

    /// The size and whether it can come back, of the latest deletion of `path` already
    /// in the incident `id`.
    fn counted_in_incident(&self, id: i64, path: &Path) -> Result<Option<(i64, bool)>> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT size, uncaptured IS NULL FROM versions
                 WHERE path = ?1 AND incident_id = ?2 AND kind != 2
                 ORDER BY deleted_at DESC, id DESC LIMIT 1",
            )?
            .query_row(params![path_bytes(path), id], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()?)
    }

    fn save_grouping(&self, g: &Grouping) -> Result<()> {
        let mut join = self
            .conn
            .prepare_cached("UPDATE versions SET incident_id = ?2 WHERE id = ?1")?;
        for version in &g.versions {
            join.execute(params![version, g.id])?;
        }
        for &(absorbed, ref code) in &g.absorbed {
            self.absorb(g, absorbed, code)?;
        }
        self.conn
            .prepare_cached(
                "UPDATE incidents SET folder = ?2, first_at = MIN(first_at, ?3),
                     last_at = MAX(last_at, ?4), files = files + ?5, bytes = bytes + ?6,
                     recoverable = recoverable + ?7, person = COALESCE(?8, person)
                 WHERE id = ?1",
            )?
            .execute(params![
                g.id,
                path_bytes(&g.folder),
                g.first_at,
                g.last_at,
                g.files,
                g.bytes,
                g.recoverable,
                g.person
            ])?;
        if g.recount || !g.absorbed.is_empty() {
            self.recount_incident(g.id)?;
        }
        Ok(())
    }

    /// Makes the incident `absorbed` part of `into`: its deletions, and its alert (the
    /// merged incident's code still finds it: see `incident_by_code`).
    fn absorb(&self, into: &Grouping, absorbed: i64, absorbed_code: &str) -> Result<()> {
        self.conn
            .prepare_cached("UPDATE versions SET incident_id = ?2 WHERE incident_id = ?1")?
            .execute(params![absorbed, into.id])?;
        self.conn
            .prepare_cached(
                "UPDATE incidents SET alerted_at = (SELECT MIN(alerted_at) FROM incidents
                     WHERE id IN (?1, ?2))
                 WHERE id = ?2",
            )?
            .execute(params![absorbed, into.id])?;
        let kind = AlertKind::MassDeletion(into.code.clone())
            .as_str()
            .into_owned();
        let theirs = AlertKind::MassDeletion(absorbed_code.to_owned())
            .as_str()
            .into_owned();
        let has_own: bool = self.conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM alerts WHERE kind = ?1 AND cleared_at IS NULL)",
            [&kind],
            |r| r.get(0),
        )?;
        if has_own {
            self.conn.execute(
                "UPDATE alerts SET cleared_at = ?2, closed_how = 'merged'
                 WHERE kind = ?1 AND cleared_at IS NULL",
                params![theirs, into.last_at],
            )?;
        } else {
            self.conn.execute(
                "UPDATE alerts SET kind = ?2 WHERE kind = ?1 AND cleared_at IS NULL",
                params![theirs, kind],
            )?;
        }
        Ok(())
    }

    /// Counts an incident's files again from its deletions: each path once, by its
    /// latest deletion in the incident; programs' lock files left out.
    pub(super) fn recount_incident(&self, id: i64) -> Result<()> {
        self.conn
            .prepare_cached(
                "UPDATE incidents SET (files, bytes, recoverable, restored) = (
                     SELECT COUNT(*), COALESCE(SUM(size), 0), COALESCE(SUM(uncaptured IS NULL), 0),
                            COALESCE(SUM(restored_at IS NOT NULL), 0)
                     FROM (SELECT size, uncaptured, restored_at,
                                  ROW_NUMBER() OVER (PARTITION BY path
                                                     ORDER BY deleted_at DESC, id DESC) AS n
                           FROM versions
                           WHERE incident_id = ?1 AND kind != 2 AND NOT is_program_lock(path))
                     WHERE n = 1)
                 WHERE id = ?1",
            )?
            .execute([id])?;
        Ok(())
    }
}

/// A deletion waiting for an incident.
struct Loose {
    id: i64,
    path: PathBuf,
    root_id: i64,
    folder: bool,
    at: i64,
    seen_at: i64,
    size: i64,
    recoverable: bool,
    /// Who deleted it (a `people` id), where the event source said.
    by: Option<i64>,
}

/// The people deletions name, read once each, for telling them apart.
#[derive(Default)]
struct People(HashMap<i64, Option<crate::model::Person>>);

impl People {
    /// Whether a deletion by `by` may join an incident of `owner`: the same person
    /// (see `Person::same_as`), or one of them not known (a deletion found by a
    /// scan says nothing of who, nor one by a process known by its pid alone, and
    /// an incident found by one may be anybody's).
    fn same(&mut self, ix: &Index, owner: Option<i64>, by: Option<i64>) -> Result<bool> {
        let (Some(owner), Some(by)) = (owner, by) else {
            return Ok(true);
        };
        if owner == by {
            return Ok(true);
        }
        let (a, b) = (self.get(ix, owner)?, self.get(ix, by)?);
        Ok(match (a, b) {
            (Some(a), Some(b)) if a.is_known() && b.is_known() => a.same_as(&b),
            _ => true,
        })
    }

    /// Whether `id` names more than a pid (see `Person::is_known`).
    fn known(&mut self, ix: &Index, id: Option<i64>) -> Result<bool> {
        Ok(match id {
            Some(id) => self.get(ix, id)?.is_some_and(|p| p.is_known()),
            None => false,
        })
    }

    fn get(&mut self, ix: &Index, id: i64) -> Result<Option<crate::model::Person>> {
        if let Some(p) = self.0.get(&id) {
            return Ok(p.clone());
        }
        let p = ix.person(id)?;
        self.0.insert(id, p.clone());
        Ok(p)
    }
}

/// The incidents of one protected folder a grouping works with: those open when
/// it began and those it made (`all`), and of them the ones still open to more
/// deletions (`open`, indexes into `all`) as the rules see them (`views`).
struct RootGroupings {
    root: PathBuf,
    all: Vec<Grouping>,
    open: Vec<usize>,
    views: Vec<crate::grouping::Open>,
}

impl RootGroupings {
    fn new(root: PathBuf, all: Vec<Grouping>) -> Self {
        Self {
            root,
            open: (0..all.len()).collect(),
            views: all.iter().map(Grouping::view).collect(),
            all,
        }
    }

    /// Makes the open incidents `ks` (indexes into `open`, the oldest first) one,
    /// named by `folder`; returns the one that goes on (in `all`).
    fn merge(&mut self, ks: &[usize], folder: PathBuf) -> usize {
        let survivor = self.open[ks[0]];
        for &k in &ks[1..] {
            let other = self.open[k];
            let versions = std::mem::take(&mut self.all[other].versions);
            let mut absorbed = std::mem::take(&mut self.all[other].absorbed);
            absorbed.push((self.all[other].id, self.all[other].code.clone()));
            let (first_at, last_at) = (self.all[other].first_at, self.all[other].last_at);
            let person = self.all[other].person;
            self.all[other].merged_into = Some(survivor);
            let s = &mut self.all[survivor];
            s.person = s.person.or(person);
            s.versions.extend(versions);
            s.absorbed.extend(absorbed);
            s.first_at = s.first_at.min(first_at);
            s.last_at = s.last_at.max(last_at);
        }
        self.all[survivor].folder = folder;
        let mut gone: Vec<usize> = ks[1..].to_vec();
        gone.sort_unstable_by(|a, b| b.cmp(a));
        for k in gone {
            self.open.remove(k);
            self.views.remove(k);
        }
        survivor
    }
}

/// Deletions being added to one incident: what the incident row had, and what
/// this grouping adds to it.
struct Grouping {
    id: i64,
    code: String,
    folder: PathBuf,
    first_at: i64,
    last_at: i64,
    /// What this grouping adds to the incident's counts.
    files: i64,
    bytes: i64,
    recoverable: i64,
    versions: Vec<i64>,
    /// The files counted by this grouping, each with the size and whether it can
    /// come back as counted: a path deleted again replaces its count, never adds one.
    counted: HashMap<PathBuf, (i64, bool)>,
    /// When its first deletion was, for an incident the index already had.
    saved_first_at: Option<i64>,
    touched: bool,
    /// Counted again from the index once saved (merged, or a file deleted again).
    recount: bool,
    /// Made part of another grouping (an index into the same `all`).
    merged_into: Option<usize>,
    /// Incidents made part of this one (id and code).
    absorbed: Vec<(i64, String)>,
    /// Whose it is (a `people` id): the first known person of its deletions.
    person: Option<i64>,
}

impl Grouping {
    fn new(
        id: i64,
        code: String,
        folder: PathBuf,
        first_at: i64,
        last_at: i64,
        saved_first_at: Option<i64>,
    ) -> Self {
        Self {
            id,
            code,
            folder,
            first_at,
            last_at,
            files: 0,
            bytes: 0,
            recoverable: 0,
            versions: Vec::new(),
            counted: HashMap::new(),
            saved_first_at,
            touched: false,
            recount: false,
            merged_into: None,
            absorbed: Vec::new(),
            person: None,
        }
    }

    fn view(&self) -> crate::grouping::Open {
        crate::grouping::Open {
            folder: self.folder.clone(),
            first_at: self.first_at,
            last_at: self.last_at,
        }
    }

    /// Adds a deletion; folders and lock files join without being counted.
    fn add(&mut self, ix: &Index, row: &Loose, lock: bool) -> Result<()> {
        self.touched = true;
        self.person = self.person.or(row.by);
        self.first_at = self.first_at.min(row.at);
        self.last_at = self.last_at.max(row.at);
        self.versions.push(row.id);
        if row.folder || lock {
            return Ok(());
        }
        let prior = match self.counted.get(&row.path) {
            Some(&prior) => Some(prior),
            // A file that existed since before the incident began cannot have been
            // deleted in it already: only one made since is looked up.
            None if self
                .saved_first_at
                .is_some_and(|first| row.seen_at >= first) =>
            {
                let prior = ix.counted_in_incident(self.id, &row.path)?;
                self.recount |= prior.is_some();
                prior
            }
            None => None,
        };
        match prior {
            Some((size, recoverable)) => {
                self.bytes += row.size - size;
                self.recoverable += i64::from(row.recoverable) - i64::from(recoverable);
            }
            None => {
                self.files += 1;
                self.bytes += row.size;
                self.recoverable += i64::from(row.recoverable);
            }
        }
        self.counted
            .insert(row.path.clone(), (row.size, row.recoverable));
        Ok(())
    }
}

#[cfg(test)]
mod tests;
