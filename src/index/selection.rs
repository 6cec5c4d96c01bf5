//! What `list` and `restore` select from the `versions` table: deleted files in
//! a scope and a time, the versions an overwrite incident replaced, and the
//! versions current at a moment (`--as-of`).
use std::path::{Path, PathBuf};

use rusqlite::{OptionalExtension, params};

use super::versions::{CURRENT_AT, VERSION_COLUMN_COUNT, VERSION_COLUMNS, version_from_row};
use super::{Index, Result, path_from_bytes, scope_range};
use crate::model::{RestoreFilter, Selection, Version};

impl Index {
    /// Versions for `list`: removed ones (and current ones with `include_live`), files,
    /// links and special files only, ordered by path.
    pub fn select(&self, sel: &Selection) -> Result<Vec<Version>> {
        let (under_exact, lo, hi) = scope_range(sel.under.as_deref());
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {VERSION_COLUMNS} FROM versions
             WHERE kind != 2
               AND (path = ?1 OR (path >= ?2 AND path < ?3))
               AND ((deleted_at IS NOT NULL AND deleted_at >= ?4 AND deleted_at < ?5
                     AND (?7 OR restored_at IS NULL))
                    OR (?6 AND replaced_at IS NULL AND deleted_at IS NULL))
             ORDER BY path, id"
        ))?;
        let rows = stmt.query_map(
            params![
                under_exact,
                lo,
                hi,
                sel.deleted_after.unwrap_or(i64::MIN),
                sel.deleted_before.unwrap_or(i64::MAX),
                sel.include_live,
                sel.include_restored
            ],
            version_from_row,
        )?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The versions current when overwrite incident `id` began, one per file it
    /// touched, ordered by path: what its restore brings back.
    /// A file renamed to a new extension since (`a.docx` → `a.docx.locked`) comes
    /// under the name it had.
    pub fn overwritten_before(&self, id: i64) -> Result<Vec<Version>> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {VERSION_COLUMNS}, renamed_from FROM versions WHERE before_incident = ?1"
        ))?;
        let rows = stmt.query_map([id], |r| {
            let mut version = version_from_row(r)?;
            if let Some(name) = r.get::<_, Option<Vec<u8>>>(VERSION_COLUMN_COUNT)? {
                version.path = path_from_bytes(name);
            }
            Ok(version)
        })?;
        let mut out: Vec<Version> = rows.collect::<rusqlite::Result<_>>()?;
        out.sort_by(|a, b| a.path.cmp(&b.path).then(a.id.cmp(&b.id)));
        Ok(out)
    }

    /// The encrypted copies overwrite incident `id` left: the current versions, with
    /// signs of encryption, of the paths whose versions joined it. Ordered by path.
    pub fn encrypted_copies(&self, id: i64) -> Result<Vec<Version>> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {VERSION_COLUMNS} FROM versions
             WHERE replaced_at IS NULL AND deleted_at IS NULL AND signs != 0 AND kind = 0
               AND path IN (SELECT path FROM versions WHERE overwrite_incident = ?1)
             ORDER BY path"
        ))?;
        let rows = stmt.query_map([id], version_from_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The name the version `id` had before an extension was added to it, if so.
    pub fn renamed_from(&self, id: i64) -> Result<Option<PathBuf>> {
        Ok(self
            .conn
            .prepare_cached("SELECT renamed_from FROM versions WHERE id = ?1")?
            .query_row([id], |r| r.get::<_, Option<Vec<u8>>>(0))
            .optional()?
            .flatten()
            .map(path_from_bytes))
    }

    /// The versions a restore would bring back, one per path, ordered by path.
    ///
    /// Without `as_of`: the most recent removed version of each path that matches.
    /// With `as_of`: the version that was current at that moment, for every path that
    /// existed then (the folder as it was).
    pub fn restore_candidates(&self, filter: &RestoreFilter) -> Result<Vec<Version>> {
        // An overwrite incident brings back each file as it was when it began.
        if let Some(id) = filter.incident
            && self.incident(id)?.is_some_and(|i| i.kind.is_overwrite())
        {
            let mut before = self.overwritten_before(id)?;
            before.retain(|v| {
                filter.scopes.is_empty() || filter.scopes.iter().any(|s| v.path.starts_with(s))
            });
            before.dedup_by(|a, b| a.path == b.path);
            return Ok(before);
        }
        let everything = [None];
        let given: Vec<Option<&Path>> = filter.scopes.iter().map(|s| Some(s.as_path())).collect();
        let scopes: &[Option<&Path>] = if given.is_empty() {
            &everything
        } else {
            &given
        };
        let when = if filter.as_of.is_some() {
            CURRENT_AT
        } else {
            "deleted_at IS NOT NULL AND deleted_at >= ?5 AND deleted_at < ?6
             AND (?7 IS NULL OR incident_id = ?7)"
        };
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {VERSION_COLUMNS} FROM versions
             WHERE (path = ?1 OR (path >= ?2 AND path < ?3)) AND {when}
             ORDER BY path, COALESCE(deleted_at, seen_at) DESC, id DESC"
        ))?;
        let mut out: Vec<Version> = Vec::new();
        for scope in scopes {
            let (exact, lo, hi) = scope_range(*scope);
            // SQLite wants exactly as many parameters as the statement numbers.
            let rows = match filter.as_of {
                Some(as_of) => stmt.query_map(params![exact, lo, hi, as_of], version_from_row)?,
                None => stmt.query_map(
                    params![
                        exact,
                        lo,
                        hi,
                        0,
                        filter.deleted_after.unwrap_or(i64::MIN),
                        filter.deleted_before.unwrap_or(i64::MAX),
                        filter.incident,
                    ],
                    version_from_row,
                )?,
            };
            for row in rows {
                let row = row?;
                // Rows come newest first within a path: keep the first of each.
                if out.last().is_none_or(|last| last.path != row.path) {
                    out.push(row);
                }
            }
        }
        out.sort_by(|a, b| a.path.cmp(&b.path));
        out.dedup_by(|a, b| a.path == b.path);
        Ok(out)
    }
}
