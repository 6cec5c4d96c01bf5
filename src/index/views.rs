//! What the mount reads from the `versions` table: the rows a folder of one of its
//! views shows, a page at a time, and when anything changed. Only reads.

use rusqlite::params;

use super::versions::{CURRENT_AT, VERSION_COLUMNS, version_from_row};
use super::{Index, Result};
use crate::model::Version;

/// Which versions a view of the vault shows (see `Index::view_page`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ViewRows {
    /// Those current at this moment: the folders as they were then.
    AsOf(i64),
    /// The newest version of each path that is gone: the recycle bin.
    Deleted,
    /// The versions an incident deleted, by its id.
    Incident(i64),
}

impl Index {
    /// Up to `limit` versions that `rows` shows with `from <= path < to`, in path
    /// order, the newest row of a path first. Paged by the caller, which skips whole
    /// subtrees between pages, so listing one folder never reads its subfolders' rows.
    pub fn view_page(
        &self,
        rows: ViewRows,
        from: &[u8],
        to: &[u8],
        limit: usize,
    ) -> Result<Vec<Version>> {
        let (when, moment) = match rows {
            ViewRows::AsOf(t) => (CURRENT_AT, Some(t)),
            // The newest row of its path is a removal: nothing is there now.
            ViewRows::Deleted => (
                "deleted_at IS NOT NULL AND NOT EXISTS (
                     SELECT 1 FROM versions newer
                     WHERE newer.path = versions.path AND newer.id > versions.id)",
                None,
            ),
            ViewRows::Incident(id) => ("incident_id = ?4 AND deleted_at IS NOT NULL", Some(id)),
        };
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {VERSION_COLUMNS} FROM versions
             WHERE path >= ?1 AND path < ?2 AND {when}
             ORDER BY path, id DESC LIMIT ?3"
        ))?;
        let limit = limit as i64;
        // SQLite wants exactly as many parameters as the statement numbers.
        let rows = match moment {
            Some(moment) => stmt.query_map(params![from, to, limit, moment], version_from_row)?,
            None => stmt.query_map(params![from, to, limit], version_from_row)?,
        };
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Whether any version was seen, replaced by a newer one or removed in `[from, to)`.
    pub fn changed_between(&self, from: i64, to: i64) -> Result<bool> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM versions WHERE seen_at >= ?1 AND seen_at < ?2)
                 OR EXISTS (SELECT 1 FROM versions WHERE deleted_at >= ?1 AND deleted_at < ?2)",
        )?;
        Ok(stmt.query_row(params![from, to], |r| r.get(0))?)
    }

    /// When the index first saw anything; `None` while it is empty.
    pub fn first_seen(&self) -> Result<Option<i64>> {
        Ok(self
            .conn
            .prepare_cached("SELECT MIN(seen_at) FROM versions")?
            .query_row([], |r| r.get(0))?)
    }

    /// A number that changes whenever another connection commits: what was read
    /// before may be out of date when it differs.
    pub fn data_version(&self) -> Result<i64> {
        Ok(self
            .conn
            .query_row("PRAGMA data_version", [], |r| r.get(0))?)
    }
}
