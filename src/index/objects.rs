//! The `objects` table and the questions retention and `verify` ask of it: which
//! older copies are kept, how many versions share each object, what a purge
//! leaves behind.
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use rusqlite::{OptionalExtension, params};

use super::{Index, Result, path_bytes, path_from_bytes};
use crate::ids::ObjectId;
use crate::journal::Record;
use crate::model::KeptVersion;

impl Index {
    /// The older versions retention must keep because an alerted incident is not
    /// settled, or settled less than `hold_ns` ago: each version that was current
    /// when such an incident began in its protected folder, with the incident's code.
    /// Settled is over (no change joined it for the gap) with its alert closed
    /// (resolved or acknowledged); the hold runs from the later of the two.
    pub fn held_versions(&self, hold_ns: i64, now: i64) -> Result<Vec<(i64, String)>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT v.id, i.code FROM incidents i
             JOIN versions v ON v.root_id = i.root_id
             WHERE i.alerted_at IS NOT NULL AND i.merged_into IS NULL
               AND (i.ended_at IS NULL
                    OR EXISTS (SELECT 1 FROM alerts a WHERE a.kind = ?3 || i.code
                                   AND a.cleared_at IS NULL)
                    OR MAX(i.ended_at, COALESCE((SELECT MAX(a.cleared_at) FROM alerts a
                                   WHERE a.kind = ?3 || i.code), 0)) > ?2 - ?1)
               AND v.object IS NOT NULL
               AND (v.replaced_at IS NOT NULL OR v.deleted_at IS NOT NULL)
               AND (v.before_incident = i.id
                    OR (v.seen_at < i.first_at
                        AND (v.replaced_at IS NULL OR v.replaced_at >= i.first_at)
                        AND (v.deleted_at IS NULL OR v.deleted_at >= i.first_at)))
             ORDER BY v.id",
        )?;
        let prefix = crate::model::AlertKind::MassDeletion(String::new())
            .as_str()
            .into_owned();
        let rows = stmt.query_map(params![hold_ns, now, prefix], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Every older version whose copy is still kept (replaced or removed, with an
    /// object), with its rank among the kept older versions of its path (1 = newest).
    pub fn kept_old_versions(&self) -> Result<Vec<KeptVersion>> {
        let mut stmt = self.conn.prepare(
            "SELECT id, path, object, size, COALESCE(deleted_at, replaced_at),
                    ROW_NUMBER() OVER (PARTITION BY path
                                       ORDER BY COALESCE(deleted_at, replaced_at) DESC, id DESC)
             FROM versions
             WHERE object IS NOT NULL AND (deleted_at IS NOT NULL OR replaced_at IS NOT NULL)",
        )?;
        let rows = stmt.query_map([], |r| {
            let object: Vec<u8> = r.get(2)?;
            Ok(KeptVersion {
                id: r.get(0)?,
                path: path_from_bytes(r.get(1)?),
                object: ObjectId::from_slice(&object),
                size: r.get::<_, i64>(3)? as u64,
                gone_at: r.get(4)?,
                rank: r.get::<_, i64>(5)? as u64,
            })
        })?;
        Ok(rows
            .filter_map(|r| match r {
                Ok(KeptVersion { object: None, .. }) => None,
                other => Some(other),
            })
            .collect::<rusqlite::Result<_>>()?)
    }

    /// How many versions refer to each object, with its size.
    pub fn object_references(&self) -> Result<HashMap<ObjectId, (u64, u64)>> {
        let mut stmt = self.conn.prepare(
            "SELECT o.id, o.size, COUNT(v.id) FROM objects o
             LEFT JOIN versions v ON v.object = o.id GROUP BY o.id",
        )?;
        let mut out = HashMap::new();
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            let id: Vec<u8> = row.get(0)?;
            if let Some(id) = ObjectId::from_slice(&id) {
                out.insert(
                    id,
                    (row.get::<_, i64>(1)? as u64, row.get::<_, i64>(2)? as u64),
                );
            }
        }
        Ok(out)
    }

    /// Records that these versions' copies are removed by retention: they stay in
    /// the history, so a later report says why they cannot come back.
    pub fn mark_purged(&self, versions: &[&KeptVersion], now: i64) -> Result<()> {
        let _r = self.record(|| {
            Ok(Record::Purged {
                versions: versions
                    .iter()
                    .filter_map(|v| Some((v.path.as_path().into(), v.object?.to_hex(), v.gone_at)))
                    .collect(),
                at: now,
            })
        })?;
        let mut stmt = self.conn.prepare_cached(
            "UPDATE versions SET object = NULL, uncaptured = 'purged', uncaptured_detail = ?2
             WHERE id = ?1",
        )?;
        for v in versions {
            stmt.execute(params![v.id, now.to_string()])?;
        }
        Ok(())
    }

    /// `mark_purged` as a journal replays it: the older version of `path` whose copy
    /// was `object` and that stopped being current at `gone_at`.
    pub fn mark_purged_copy(
        &self,
        path: &Path,
        object: &ObjectId,
        gone_at: i64,
        now: i64,
    ) -> Result<()> {
        self.conn
            .prepare_cached(
                "UPDATE versions SET object = NULL, uncaptured = 'purged', uncaptured_detail = ?4
                 WHERE path = ?1 AND object = ?2 AND COALESCE(deleted_at, replaced_at) = ?3",
            )?
            .execute(params![
                path_bytes(path),
                &object.as_bytes()[..],
                gone_at,
                now.to_string()
            ])?;
        Ok(())
    }

    /// Forgets the objects no version refers to any more; returns them, so their
    /// files can be removed once this is committed.
    pub fn forget_unreferenced_objects(&self) -> Result<Vec<(ObjectId, u64)>> {
        let mut stmt = self.conn.prepare(
            "DELETE FROM objects
             WHERE NOT EXISTS (SELECT 1 FROM versions v WHERE v.object = objects.id)
             RETURNING id, size",
        )?;
        let rows = stmt.query_map([], |r| {
            let id: Vec<u8> = r.get(0)?;
            Ok((ObjectId::from_slice(&id), r.get::<_, i64>(1)? as u64))
        })?;
        let mut out = Vec::new();
        for row in rows {
            if let (Some(id), size) = row? {
                out.push((id, size));
            }
        }
        Ok(out)
    }

    /// Whether some version (current or older) refers to the object.
    pub fn refers_to(&self, id: &ObjectId) -> Result<bool> {
        Ok(self
            .conn
            .prepare_cached("SELECT EXISTS (SELECT 1 FROM versions WHERE object = ?1)")?
            .query_row([&id.as_bytes()[..]], |r| r.get(0))?)
    }

    /// Every captured object, with one path that refers to it (for `verify`).
    pub fn objects_with_paths(&self) -> Result<Vec<(ObjectId, u64, Vec<PathBuf>)>> {
        let mut stmt = self.conn.prepare(
            "SELECT o.id, o.size, v.path FROM objects o
             LEFT JOIN versions v ON v.object = o.id
             ORDER BY o.id",
        )?;
        let mut out: Vec<(ObjectId, u64, Vec<PathBuf>)> = Vec::new();
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            let id: Vec<u8> = row.get(0)?;
            let Some(id) = ObjectId::from_slice(&id) else {
                continue;
            };
            let size = row.get::<_, i64>(1)? as u64;
            let path: Option<Vec<u8>> = row.get(2)?;
            match out.last_mut() {
                Some((last, _, paths)) if *last == id => paths.extend(path.map(path_from_bytes)),
                _ => out.push((id, size, path.map(path_from_bytes).into_iter().collect())),
            }
        }
        for (_, _, paths) in &mut out {
            paths.sort();
            paths.dedup();
        }
        Ok(out)
    }
    /// Live files without a copy, counted by reason code (see `Uncaptured::code`),
    /// most common first: `doctor` says why files are not protected.
    pub fn unprotected_by_reason(&self) -> Result<Vec<(String, u64)>> {
        let mut stmt = self.conn.prepare(
            "SELECT uncaptured, COUNT(*) FROM versions
             WHERE replaced_at IS NULL AND deleted_at IS NULL AND kind != 2
               AND uncaptured IS NOT NULL
             GROUP BY uncaptured ORDER BY COUNT(*) DESC, uncaptured",
        )?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Records that the staged copy `staged` (see `vault::staged`) holds the content
    /// `id`: every version that pointed at it points at `id` now, and the object is
    /// known by its hash (once, when identical content was kept before). `stored_at`
    /// stays the capture's. Returns false, changing nothing, when no version points
    /// at it any more (purged meanwhile, or already recorded).
    pub fn record_hashed(&self, staged: &ObjectId, id: &ObjectId, size: u64) -> Result<bool> {
        let stored_at: Option<i64> = self
            .conn
            .prepare_cached("SELECT stored_at FROM objects WHERE id = ?1")?
            .query_row([&staged.as_bytes()[..]], |r| r.get(0))
            .optional()?;
        let Some(stored_at) = stored_at else {
            return Ok(false);
        };
        let _r = self.record(|| {
            Ok(Record::Hashed {
                staged: staged.to_hex(),
                id: id.to_hex(),
                size,
            })
        })?;
        self.conn
            .prepare_cached(
                "INSERT OR IGNORE INTO objects (id, size, stored_at) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![&id.as_bytes()[..], size as i64, stored_at])?;
        self.conn
            .prepare_cached("UPDATE versions SET object = ?2 WHERE object = ?1")?
            .execute(params![&staged.as_bytes()[..], &id.as_bytes()[..]])?;
        self.conn
            .prepare_cached("DELETE FROM objects WHERE id = ?1")?
            .execute([&staged.as_bytes()[..]])?;
        Ok(true)
    }

    /// Whether the index knows the object (a version points at it).
    pub fn has_object(&self, id: &ObjectId) -> Result<bool> {
        Ok(self
            .conn
            .prepare_cached("SELECT EXISTS (SELECT 1 FROM objects WHERE id = ?1)")?
            .query_row([&id.as_bytes()[..]], |r| r.get(0))?)
    }

    /// Every staged copy some version points at: the hasher's work.
    pub fn staged_objects(&self) -> Result<Vec<ObjectId>> {
        let mut stmt = self
            .conn
            .prepare("SELECT id FROM objects WHERE substr(id, 1, 8) = ?1 ORDER BY stored_at")?;
        let rows = stmt.query_map([&crate::ids::STAGED_PREFIX[..]], |r| r.get::<_, Vec<u8>>(0))?;
        let mut out = Vec::new();
        for row in rows {
            out.extend(ObjectId::from_slice(&row?));
        }
        Ok(out)
    }
}
