//! The `incidents` table as the daemon and the commands read it, the ends of
//! incidents, and the marks of what restores brought back (which end incidents
//! and resolve their alerts).
use std::path::{Path, PathBuf};

use rusqlite::{OptionalExtension, Row, params};

use super::{Index, NO_INCIDENT, Result, path_bytes, path_from_bytes};
use crate::journal::Record;
use crate::model::AlertKind;
use crate::model::Incident;
use crate::words::JsonPath;

const INCIDENT_COLUMNS: &str = "id, code, root_id, folder, first_at, last_at, files, bytes, \
     recoverable, alerted_at, ended_at, end_told_at, restored, kind, \
     (SELECT person FROM people WHERE people.id = incidents.person), cut_off";

fn incident_from_row(r: &Row<'_>) -> rusqlite::Result<Incident> {
    Ok(Incident {
        id: r.get(0)?,
        code: r.get(1)?,
        kind: crate::model::IncidentKind::from_code(&r.get::<_, String>(13)?),
        folder: path_from_bytes(r.get(3)?),
        first_at: r.get(4)?,
        last_at: r.get(5)?,
        files: r.get::<_, i64>(6)?.max(0) as u64,
        bytes: r.get::<_, i64>(7)?.max(0) as u64,
        recoverable: r.get::<_, i64>(8)?.max(0) as u64,
        alerted_at: r.get(9)?,
        ended_at: r.get(10)?,
        restored: r.get::<_, i64>(12)?.max(0) as u64,
        person: r
            .get::<_, Option<String>>(14)?
            .as_deref()
            .and_then(super::people::person_from_stored),
        cut_off: r
            .get::<_, Option<String>>(15)?
            .and_then(|json| serde_json::from_str(&json).ok()),
    })
}

impl Index {
    /// Recent incidents, newest first.
    pub fn incidents(&self, limit: usize) -> Result<Vec<Incident>> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {INCIDENT_COLUMNS} FROM incidents WHERE merged_into IS NULL
             ORDER BY last_at DESC, id DESC LIMIT ?1"
        ))?;
        let rows = stmt.query_map([limit as i64], incident_from_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    pub fn incident(&self, id: i64) -> Result<Option<Incident>> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {INCIDENT_COLUMNS} FROM incidents WHERE id = ?1"
        ))?;
        Ok(stmt.query_row([id], incident_from_row).optional()?)
    }

    /// The incident with this code, or the one it became part of: a code people
    /// were told keeps working after a merge.
    pub fn incident_by_code(&self, code: &str) -> Result<Option<Incident>> {
        let found: Option<(i64, Option<i64>)> = self
            .conn
            .prepare_cached("SELECT id, merged_into FROM incidents WHERE code = ?1")?
            .query_row([code], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        let Some((mut id, mut merged_into)) = found else {
            return Ok(None);
        };
        // Bounded, in case of a cycle no grouping makes.
        for _ in 0..64 {
            let Some(next) = merged_into else { break };
            id = next;
            merged_into = self
                .conn
                .prepare_cached("SELECT merged_into FROM incidents WHERE id = ?1")?
                .query_row([id], |r| r.get(0))
                .optional()?
                .flatten();
        }
        self.incident(id)
    }

    /// Files (each path once) and bytes of an incident deleted in `[since, ∞)`.
    pub fn incident_activity_since(&self, id: i64, since: i64) -> Result<(u64, u64)> {
        Ok(self.conn.query_row(
            "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM (
                 SELECT path, MAX(size) AS size FROM versions
                 WHERE incident_id = ?1 AND deleted_at >= ?2 AND kind != 2
                   AND NOT is_program_lock(path)
                 GROUP BY path)",
            params![id, since],
            |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64)),
        )?)
    }

    /// Records that the owner was told of the incident; with `tells_end`, they are
    /// to be told of its end too (alerts from before ends were told are not).
    pub fn mark_incident_alerted(&self, id: i64, now: i64, tells_end: bool) -> Result<()> {
        let _r = self.record(|| {
            Ok(Record::Alerted {
                code: self.code_of(id)?,
                at: now,
                tells_end,
            })
        })?;
        self.conn.execute(
            "UPDATE incidents SET alerted_at = ?2,
                 end_told_at = CASE WHEN ?3 THEN end_told_at ELSE ?2 END
             WHERE id = ?1",
            params![id, now, tells_end],
        )?;
        Ok(())
    }

    /// Records what the circuit breaker did about the incident's PC.
    pub fn record_cut_off(&self, id: i64, cut_off: &crate::model::CutOff) -> Result<()> {
        let _r = self.record(|| {
            Ok(Record::CutOff {
                code: self.code_of(id)?,
                cut_off: cut_off.clone(),
            })
        })?;
        let json = serde_json::to_string(cut_off).unwrap_or_default();
        self.conn.execute(
            "UPDATE incidents SET cut_off = ?2 WHERE id = ?1",
            params![id, json],
        )?;
        Ok(())
    }

    /// An incident's code: the journal names incidents by code, as ids may differ.
    fn code_of(&self, id: i64) -> Result<String> {
        Ok(self.incident(id)?.map(|i| i.code).unwrap_or_default())
    }

    /// Marks the incident over: no deletion joins it any more.
    pub fn end_incident(&self, id: i64, now: i64) -> Result<()> {
        let _r = self.record(|| {
            Ok(Record::Ended {
                code: self.code_of(id)?,
                at: now,
            })
        })?;
        self.conn.execute(
            "UPDATE incidents SET ended_at = ?2 WHERE id = ?1 AND ended_at IS NULL",
            params![id, now],
        )?;
        Ok(())
    }

    /// Records that the owner was told the alerted incident is over.
    pub fn mark_end_told(&self, id: i64, now: i64) -> Result<()> {
        let _r = self.record(|| {
            Ok(Record::EndTold {
                code: self.code_of(id)?,
                at: now,
            })
        })?;
        self.conn.execute(
            "UPDATE incidents SET end_told_at = ?2 WHERE id = ?1",
            params![id, now],
        )?;
        Ok(())
    }

    /// When the first incident still open will be over if nothing joins it: its last
    /// deletion plus `gap_ns`.
    pub fn next_incident_end(&self, gap_ns: i64) -> Result<Option<i64>> {
        let last: Option<i64> = self.conn.query_row(
            "SELECT MIN(last_at) FROM incidents WHERE ended_at IS NULL AND merged_into IS NULL",
            [],
            |r| r.get(0),
        )?;
        Ok(last.map(|at| at.saturating_add(gap_ns)))
    }

    /// The incidents still open whose last deletion is more than `gap_ns` before `now`.
    pub fn incidents_over(&self, gap_ns: i64, now: i64) -> Result<Vec<i64>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id FROM incidents
             WHERE ended_at IS NULL AND merged_into IS NULL AND last_at < ?1
             ORDER BY last_at, id",
        )?;
        let rows = stmt.query_map([now.saturating_sub(gap_ns)], |r| r.get(0))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Alerted incidents that are over, whose owner was not yet told so.
    pub fn ends_to_tell(&self) -> Result<Vec<Incident>> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {INCIDENT_COLUMNS} FROM incidents
             WHERE alerted_at IS NOT NULL AND ended_at IS NOT NULL AND end_told_at IS NULL
               AND merged_into IS NULL
             ORDER BY ended_at, id"
        ))?;
        let rows = stmt.query_map([], incident_from_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Records that a restore brought these deleted versions back (each named by its
    /// path and when it was deleted): they are on disk again, by the restore's report
    /// `report`. An incident every file of which that could come back is back is
    /// over, and its alert resolved. Returns how many versions were marked.
    pub fn mark_restored(
        &self,
        files: &[(PathBuf, i64)],
        report: Option<&Path>,
        now: i64,
    ) -> Result<usize> {
        let _r = self.record(|| {
            Ok(Record::Restored {
                files: files
                    .iter()
                    .map(|(path, at)| (path.as_path().into(), *at))
                    .collect(),
                report: report.map(JsonPath::from),
                at: now,
            })
        })?;
        let mut marked = 0;
        let mut touched = std::collections::BTreeSet::new();
        let mut overwrites = std::collections::BTreeSet::new();
        let mut mark = self.conn.prepare_cached(
            "UPDATE versions SET restored_at = ?3
             WHERE path = ?1 AND deleted_at = ?2 AND restored_at IS NULL AND kind != 2
             RETURNING incident_id, before_incident",
        )?;
        for (path, deleted_at) in files {
            let rows = mark.query_map(params![path_bytes(path), deleted_at, now], |r| {
                Ok((r.get::<_, Option<i64>>(0)?, r.get::<_, Option<i64>>(1)?))
            })?;
            for row in rows {
                let (incident, before) = row?;
                marked += 1;
                if let Some(id) = incident.filter(|&id| id != NO_INCIDENT) {
                    touched.insert(id);
                }
                // An original deleted after its encrypted copy was made (`a.docx`
                // after `a.docx.locked`) is back for its overwrite incident too.
                overwrites.extend(before);
            }
        }
        for id in touched {
            self.recount_incident(id)?;
            self.resolve_if_back(id, report, now)?;
        }
        for id in overwrites {
            self.recount_overwrite(id)?;
            self.resolve_if_back(id, report, now)?;
        }
        Ok(marked)
    }

    /// Records that a restore of overwrite incident `code` brought these files back
    /// to their place as they were before it began (each by the path it came back
    /// at, its original name), by the restore's report `report`. An incident all of
    /// whose files that could come back are back is over, and its alert resolved, as
    /// for deletions. Returns how many files were marked.
    pub fn mark_restored_as_before(
        &self,
        code: &str,
        files: &[PathBuf],
        report: Option<&Path>,
        now: i64,
    ) -> Result<usize> {
        let _r = self.record(|| {
            Ok(Record::RestoredAsBefore {
                code: code.to_owned(),
                files: files.iter().map(|p| p.as_path().into()).collect(),
                report: report.map(JsonPath::from),
                at: now,
            })
        })?;
        let Some(incident) = self.incident_by_code(code)? else {
            return Ok(0);
        };
        let mut marked = 0;
        let mut mark = self.conn.prepare_cached(
            "UPDATE versions SET restored_at = ?3
             WHERE before_incident = ?1 AND COALESCE(renamed_from, path) = ?2
               AND restored_at IS NULL",
        )?;
        for path in files {
            marked += mark.execute(params![incident.id, path_bytes(path), now])?;
        }
        self.recount_overwrite(incident.id)?;
        self.resolve_if_back(incident.id, report, now)?;
        Ok(marked)
    }

    /// Counts what restores brought back of overwrite incident `id`: each file once,
    /// among those with a copy from before it.
    fn recount_overwrite(&self, id: i64) -> Result<()> {
        self.conn
            .prepare_cached(
                "UPDATE incidents SET restored = (
                     SELECT COUNT(DISTINCT COALESCE(renamed_from, path)) FROM versions
                     WHERE before_incident = ?1 AND restored_at IS NOT NULL
                       AND object IS NOT NULL AND uncaptured IS NULL)
                 WHERE id = ?1 AND kind != 'deleted'",
            )?
            .execute([id])?;
        Ok(())
    }

    /// Ends incident `id` and resolves its alert once every file of it that could
    /// come back is back.
    fn resolve_if_back(&self, id: i64, report: Option<&Path>, now: i64) -> Result<()> {
        let Some(incident) = self.incident(id)? else {
            return Ok(());
        };
        if incident.missing() > 0 {
            return Ok(());
        }
        // What follows is another incident, not more of this one.
        self.conn.execute(
            "UPDATE incidents SET ended_at = ?2 WHERE id = ?1 AND ended_at IS NULL",
            params![id, now],
        )?;
        self.conn.execute(
            "UPDATE alerts SET cleared_at = ?2, closed_how = 'resolved', report = ?3
             WHERE kind = ?1 AND cleared_at IS NULL",
            params![
                AlertKind::MassDeletion(incident.code.clone()).as_str(),
                now,
                report.map(path_bytes)
            ],
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::index::tests::*;
    use crate::model::*;
    use std::path::{Path, PathBuf};

    #[test]
    fn an_incident_all_brought_back_is_over_and_its_alert_resolved() {
        let (_d, ix, root) = index();
        let gone = deleted_at;
        for (n, p) in ["/srv/share/photos/a.jpg", "/srv/share/photos/b.jpg"]
            .iter()
            .enumerate()
        {
            ix.insert_version(Path::new(p), root, &file(n as u8 + 1, 10), 1)
                .unwrap();
            ix.mark_removed(Path::new(p), false, &gone(100)).unwrap();
        }
        let id = ix.group_incidents(1000, &mut || "K7Q-4MD".into()).unwrap()[0];
        ix.raise_alert(
            &crate::model::AlertKind::MassDeletion("K7Q-4MD".into()),
            "m",
            101,
        )
        .unwrap();
        let report = Path::new("/v/reports/restore-1.txt");
        let a = (PathBuf::from("/srv/share/photos/a.jpg"), 100);
        assert_eq!(
            ix.mark_restored(std::slice::from_ref(&a), Some(report), 200)
                .unwrap(),
            1
        );
        let half = ix.incident(id).unwrap().unwrap();
        assert_eq!((half.restored, half.missing(), half.ended_at), (1, 1, None));
        assert_eq!(
            ix.open_alerts().unwrap().len(),
            1,
            "half back is not resolved"
        );
        // Marked once only, however often a restore runs.
        assert_eq!(ix.mark_restored(&[a], Some(report), 250).unwrap(), 0);
        let b = (PathBuf::from("/srv/share/photos/b.jpg"), 100);
        assert_eq!(ix.mark_restored(&[b], Some(report), 300).unwrap(), 1);
        let done = ix.incident(id).unwrap().unwrap();
        assert_eq!(
            (done.restored, done.missing(), done.ended_at),
            (2, 0, Some(300))
        );
        assert!(ix.open_alerts().unwrap().is_empty());
        let entry = &ix.alert_entries(0).unwrap()[0];
        assert_eq!(
            entry.state,
            AlertState::Resolved {
                report: Some(report.to_owned())
            }
        );
        // Deleted again: another incident, not more of this one.
        ix.insert_version(
            Path::new("/srv/share/photos/a.jpg"),
            root,
            &file(1, 10),
            310,
        )
        .unwrap();
        ix.mark_removed(Path::new("/srv/share/photos/a.jpg"), false, &gone(320))
            .unwrap();
        let again = ix.group_incidents(1000, &mut || "H2X-9PA".into()).unwrap();
        assert_eq!(again.len(), 1);
        assert_ne!(again[0], id);
    }
}
