//! The `versions` table: every version of every path, with what became of it
//! (replaced, deleted, moved out, renamed), read back one path at a time and
//! written as the daemon sees changes. What `list` and `restore` select is in
//! `selection`.
use std::path::{Path, PathBuf};

use rusqlite::{Row, params};

use super::people::person_from_stored;
use super::{Index, Result, path_bytes, path_from_bytes, subtree_range};
use crate::ids::ObjectId;
use crate::journal::Record;
use crate::model::{EntryKind, Gone, Incomplete, Observed, Person, Removal, Uncaptured, Version};

pub(super) const VERSION_COLUMNS: &str = "id, path, root_id, kind, object, size, mtime_ns, mode, uid, gid, inode, \
     link_target, seen_at, captured_at, replaced_at, deleted_at, deleted_approx, last_seen_at, \
     removal, uncaptured, uncaptured_detail, incident_id, restored_at, ctime_ns, incomplete, signs, \
     (SELECT person FROM people WHERE people.id = versions.changed_by), \
     (SELECT person FROM people WHERE people.id = versions.deleted_by)";

/// How many columns `VERSION_COLUMNS` names: a query may ask for more after them.
pub(super) const VERSION_COLUMN_COUNT: usize = 28;

/// The versions current at the moment bound as `?4`: what `--as-of` restores, and
/// what the mount shows at a point in time.
pub(super) const CURRENT_AT: &str = "seen_at <= ?4 AND (replaced_at IS NULL OR replaced_at > ?4)
     AND (deleted_at IS NULL OR deleted_at > ?4)";

pub(super) fn version_from_row(row: &Row<'_>) -> rusqlite::Result<Version> {
    let path: Vec<u8> = row.get(1)?;
    let object: Option<Vec<u8>> = row.get(4)?;
    let link: Option<Vec<u8>> = row.get(11)?;
    let removal: Option<String> = row.get(18)?;
    let uncaptured: Option<String> = row.get(19)?;
    let uncaptured_detail: Option<String> = row.get(20)?;
    Ok(Version {
        id: row.get(0)?,
        path: path_from_bytes(path),
        root_id: row.get(2)?,
        observed: Observed {
            kind: EntryKind::from_code(row.get(3)?),
            object: object.as_deref().and_then(ObjectId::from_slice),
            size: row.get::<_, i64>(5)? as u64,
            mtime_ns: row.get(6)?,
            ctime_ns: row.get(23)?,
            mode: row.get(7)?,
            uid: row.get(8)?,
            gid: row.get(9)?,
            inode: row.get::<_, i64>(10)? as u64,
            link_target: link.map(path_from_bytes),
            uncaptured: uncaptured.map(|code| Uncaptured::from_columns(&code, uncaptured_detail)),
            incomplete: row
                .get::<_, Option<String>>(24)?
                .as_deref()
                .and_then(Incomplete::from_code),
            signs: crate::signs::Signs::from_bits(row.get(25)?),
        },
        seen_at: row.get(12)?,
        replaced_at: row.get(14)?,
        deleted_at: row.get(15)?,
        deleted_approx: row.get(16)?,
        last_seen_at: row.get(17)?,
        removal: removal.as_deref().map(Removal::from_code),
        incident_id: row.get(21)?,
        restored_at: row.get(22)?,
        changed_by: row
            .get::<_, Option<String>>(26)?
            .as_deref()
            .and_then(person_from_stored),
        deleted_by: row
            .get::<_, Option<String>>(27)?
            .as_deref()
            .and_then(person_from_stored),
    })
}

impl Index {
    /// Folders at and below `dir` that are there as the index last saw them: the
    /// daemon watches each one, so doctor need not walk the tree to count them.
    pub fn folders_below(&self, dir: &Path) -> Result<u64> {
        let (lo, hi) = subtree_range(dir);
        let n: i64 = self
            .conn
            .prepare_cached(
                "SELECT COUNT(*) FROM versions
                 WHERE kind = 2 AND replaced_at IS NULL AND deleted_at IS NULL
                   AND (path = ?1 OR (path >= ?2 AND path < ?3))",
            )?
            .query_row(params![path_bytes(dir), lo, hi], |r| r.get(0))?;
        Ok(n.max(0) as u64)
    }

    pub fn current(&self, path: &Path) -> Result<Option<Version>> {
        Ok(self
            .versions_of(path, "AND replaced_at IS NULL AND deleted_at IS NULL")?
            .into_iter()
            .next())
    }

    /// The newest row for `path`, current or not.
    pub fn latest(&self, path: &Path) -> Result<Option<Version>> {
        Ok(self
            .versions_of(path, "ORDER BY id DESC LIMIT 1")?
            .into_iter()
            .next())
    }

    /// Every row for `path`, oldest first.
    pub fn history(&self, path: &Path) -> Result<Vec<Version>> {
        self.versions_of(path, "ORDER BY id")
    }

    /// The rows for `path` that `rest` (a condition, an order) leaves.
    fn versions_of(&self, path: &Path, rest: &str) -> Result<Vec<Version>> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {VERSION_COLUMNS} FROM versions WHERE path = ?1 {rest}"
        ))?;
        let rows = stmt.query_map([path_bytes(path)], version_from_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Adds a new current version of `path`; the previous current one becomes replaced.
    pub fn insert_version(
        &self,
        path: &Path,
        root_id: i64,
        observed: &Observed,
        now: i64,
    ) -> Result<i64> {
        self.insert_version_by(path, root_id, observed, None, now)
    }

    /// `insert_version`, made by `by` where the event source said who.
    pub fn insert_version_by(
        &self,
        path: &Path,
        root_id: i64,
        observed: &Observed,
        by: Option<&Person>,
        now: i64,
    ) -> Result<i64> {
        let _r = self.record(|| {
            Ok(Record::Insert {
                path: path.into(),
                root: self.root_path(root_id)?.as_path().into(),
                observed: observed.into(),
                at: now,
                by: by.cloned(),
            })
        })?;
        let changed_by = self.person_id(by)?;
        self.conn
            .prepare_cached(
                "UPDATE versions SET replaced_at = ?2
                 WHERE path = ?1 AND replaced_at IS NULL AND deleted_at IS NULL",
            )?
            .execute(params![path_bytes(path), now])?;
        if let (Some(object), EntryKind::File) = (&observed.object, observed.kind) {
            self.conn
                .prepare_cached(
                    "INSERT OR IGNORE INTO objects (id, size, stored_at) VALUES (?1, ?2, ?3)",
                )?
                .execute(params![&object.as_bytes()[..], observed.size as i64, now])?;
        }
        let captured_at = observed.uncaptured.is_none().then_some(now);
        self.conn
            .prepare_cached(
                "INSERT INTO versions (path, root_id, kind, object, size, mtime_ns, mode, uid, gid,
                     inode, link_target, seen_at, captured_at, uncaptured, uncaptured_detail,
                     ctime_ns, incomplete, signs, changed_by)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16,
                     ?17, ?18, ?19)",
            )?
            .execute(params![
                path_bytes(path),
                root_id,
                observed.kind.code(),
                observed.object.as_ref().map(|o| &o.as_bytes()[..]),
                observed.size as i64,
                observed.mtime_ns,
                observed.mode,
                observed.uid,
                observed.gid,
                observed.inode as i64,
                observed.link_target.as_deref().map(path_bytes),
                now,
                captured_at,
                observed.uncaptured.as_ref().map(Uncaptured::code),
                observed.uncaptured.as_ref().and_then(Uncaptured::detail),
                observed.ctime_ns,
                observed.incomplete.map(Incomplete::code),
                observed.signs.bits(),
                changed_by,
            ])?;
        Ok(self.conn.last_insert_rowid())
    }

    /// Updates the metadata of a version whose content did not change
    /// (`cp -a` and rsync set mtime and mode after writing).
    pub fn update_metadata(&self, id: i64, observed: &Observed) -> Result<()> {
        let _r = self.record(|| {
            let path: Vec<u8> = self
                .conn
                .prepare_cached("SELECT path FROM versions WHERE id = ?1")?
                .query_row([id], |r| r.get(0))?;
            Ok(Record::Metadata {
                path: path_from_bytes(path).as_path().into(),
                observed: observed.into(),
            })
        })?;
        self.conn
            .prepare_cached(
                "UPDATE versions SET size = ?2, mtime_ns = ?3, mode = ?4, uid = ?5, gid = ?6,
                     inode = ?7, ctime_ns = ?8, incomplete = ?9 WHERE id = ?1",
            )?
            .execute(params![
                id,
                observed.size as i64,
                observed.mtime_ns,
                observed.mode,
                observed.uid,
                observed.gid,
                observed.inode as i64,
                observed.ctime_ns,
                observed.incomplete.map(Incomplete::code),
            ])?;
        Ok(())
    }

    /// Records that the current version of `path` does not hold the file's last
    /// content (see `Incomplete`).
    pub fn mark_incomplete(&self, path: &Path, why: Incomplete) -> Result<()> {
        let _r = self.record(|| {
            Ok(Record::Incomplete {
                path: path.into(),
                why: why.code().to_owned(),
            })
        })?;
        self.conn
            .prepare_cached(
                "UPDATE versions SET incomplete = ?2
                 WHERE path = ?1 AND replaced_at IS NULL AND deleted_at IS NULL",
            )?
            .execute(params![path_bytes(path), why.code()])?;
        Ok(())
    }

    /// Marks the current version of `path` and, if `subtree`, of everything below it, as
    /// gone. Returns how many versions were marked.
    pub fn mark_removed(&self, path: &Path, subtree: bool, gone: &Gone) -> Result<usize> {
        let _r = self.record(|| Ok(Record::removed(path, subtree, gone)))?;
        let by = self.person_id(gone.by.as_deref())?;
        let mut n = self
            .conn
            .prepare_cached(
                "UPDATE versions SET deleted_at = ?2, deleted_approx = ?3, last_seen_at = ?4,
                     removal = ?5, deleted_by = ?6
                 WHERE path = ?1 AND replaced_at IS NULL AND deleted_at IS NULL",
            )?
            .execute(params![
                path_bytes(path),
                gone.at,
                gone.approx,
                gone.last_seen,
                gone.removal.code(),
                by
            ])?;
        if subtree {
            let (lo, hi) = subtree_range(path);
            n += self
                .conn
                .prepare_cached(
                    "UPDATE versions SET deleted_at = ?3, deleted_approx = ?4, last_seen_at = ?5,
                         removal = ?6, deleted_by = ?7
                     WHERE path >= ?1 AND path < ?2
                       AND replaced_at IS NULL AND deleted_at IS NULL",
                )?
                .execute(params![
                    lo,
                    hi,
                    gone.at,
                    gone.approx,
                    gone.last_seen,
                    gone.removal.code(),
                    by
                ])?;
        }
        Ok(n)
    }

    /// Whether a removal of `path` was already recorded at or after `since`
    /// (an event arriving after a scan already noticed the deletion).
    pub fn removed_since(&self, path: &Path, since: i64) -> Result<bool> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM versions WHERE path = ?1 AND deleted_at >= ?2)",
        )?;
        Ok(stmt.query_row(params![path_bytes(path), since], |r| r.get(0))?)
    }

    /// Records a path that existed but vanished before it could be captured, removed
    /// by `by` where the event source said who.
    pub fn record_lost(
        &self,
        path: &Path,
        root_id: i64,
        kind: EntryKind,
        by: Option<&Person>,
        now: i64,
    ) -> Result<()> {
        let _r = self.record(|| {
            Ok(Record::Lost {
                path: path.into(),
                root: self.root_path(root_id)?.as_path().into(),
                kind: kind.code(),
                at: now,
                by: by.cloned(),
            })
        })?;
        let observed = Observed {
            kind,
            object: None,
            size: 0,
            mtime_ns: 0,
            ctime_ns: 0,
            mode: 0,
            uid: 0,
            gid: 0,
            inode: 0,
            link_target: None,
            uncaptured: Some(Uncaptured::DeletedBeforeCapture),
            incomplete: None,
            signs: crate::signs::Signs::NONE,
        };
        let id = self.insert_version(path, root_id, &observed, now)?;
        let by = self.person_id(by)?;
        self.conn
            .prepare_cached(
                "UPDATE versions SET deleted_at = ?2, removal = 'deleted', last_seen_at = ?2,
                     deleted_by = ?3
                 WHERE id = ?1",
            )?
            .execute(params![id, now, by])?;
        Ok(())
    }

    /// Moves the current versions of `from` (and everything below it) to `to`.
    /// Whatever was current at `to` becomes replaced: a rename over a file is a new version.
    pub fn rename(&self, from: &Path, to: &Path, root_id: i64, now: i64) -> Result<usize> {
        let _r = self.record(|| {
            Ok(Record::Rename {
                from: from.into(),
                to: to.into(),
                root: self.root_path(root_id)?.as_path().into(),
                at: now,
            })
        })?;
        let (to_lo, to_hi) = subtree_range(to);
        self.conn
            .prepare_cached(
                "UPDATE versions SET replaced_at = ?4
                 WHERE (path = ?1 OR (path >= ?2 AND path < ?3))
                   AND replaced_at IS NULL AND deleted_at IS NULL",
            )?
            .execute(params![path_bytes(to), to_lo, to_hi, now])?;
        // New paths are built in Rust: SQL's `||` would turn the byte paths into text.
        let moving = self.current_subtree(from)?;
        let from_len = path_bytes(from).len();
        let mut update = self
            .conn
            .prepare_cached("UPDATE versions SET path = ?2, root_id = ?3 WHERE id = ?1")?;
        for (id, old) in &moving {
            let mut new = path_bytes(to).to_vec();
            new.extend_from_slice(&old[from_len..]);
            update.execute(params![id, new, root_id])?;
        }
        // An extension added to the name (`a.docx` → `a.docx.locked`): the name it
        // had is kept, the first one along a chain of such renames.
        if crate::signs::without_added_extension(to).as_deref() == Some(from) {
            let mut keep = self.conn.prepare_cached(
                "UPDATE versions SET renamed_from = COALESCE(renamed_from, ?2)
                 WHERE id = ?1 AND kind = 0",
            )?;
            for (id, old) in &moving {
                if old.as_slice() == path_bytes(from) {
                    keep.execute(params![id, path_bytes(from)])?;
                }
            }
        }
        Ok(moving.len())
    }

    /// Exchanges the current versions of `a` and everything below it with those of
    /// `b` (`renameat2(RENAME_EXCHANGE)`): both histories go on, each under the
    /// other's name. Nothing is replaced.
    pub fn exchange(&self, a: &Path, a_root: i64, b: &Path, b_root: i64, now: i64) -> Result<()> {
        let _r = self.record(|| {
            Ok(Record::Exchange {
                a: a.into(),
                a_root: self.root_path(a_root)?.as_path().into(),
                b: b.into(),
                b_root: self.root_path(b_root)?.as_path().into(),
                at: now,
            })
        })?;
        let at_a = self.current_subtree(a)?;
        let at_b = self.current_subtree(b)?;
        let mut update = self
            .conn
            .prepare_cached("UPDATE versions SET path = ?2, root_id = ?3 WHERE id = ?1")?;
        // Through a name no path can have (paths hold no NUL byte), so the two sets
        // never meet in the index of current paths.
        let parked = |path: &[u8]| [b"\0".as_slice(), path].concat();
        let moved = |old: &[u8], from: &Path, to: &Path| {
            let mut new = path_bytes(to).to_vec();
            new.extend_from_slice(&old[path_bytes(from).len()..]);
            new
        };
        for (id, old) in &at_a {
            update.execute(params![id, parked(&moved(old, a, b)), b_root])?;
        }
        for (id, old) in &at_b {
            update.execute(params![id, moved(old, b, a), a_root])?;
        }
        for (id, old) in &at_a {
            update.execute(params![id, moved(old, a, b), b_root])?;
        }
        Ok(())
    }

    /// Ids and paths of the current versions of `dir` and everything below it.
    fn current_subtree(&self, dir: &Path) -> Result<Vec<(i64, Vec<u8>)>> {
        let (lo, hi) = subtree_range(dir);
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, path FROM versions
             WHERE (path = ?1 OR (path >= ?2 AND path < ?3))
               AND replaced_at IS NULL AND deleted_at IS NULL",
        )?;
        let rows = stmt.query_map(params![path_bytes(dir), lo, hi], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The paths other than `path` whose current version is a file with `inode`: its
    /// other hard links, or (on another filesystem) an unrelated file to look at again.
    pub fn current_with_inode(&self, inode: u64, path: &Path) -> Result<Vec<PathBuf>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT path FROM versions
             WHERE inode = ?1 AND path != ?2 AND kind = ?3
               AND replaced_at IS NULL AND deleted_at IS NULL
             ORDER BY id",
        )?;
        let rows = stmt.query_map(
            params![inode as i64, path_bytes(path), EntryKind::File.code()],
            |r| Ok(path_from_bytes(r.get(0)?)),
        )?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The paths whose current version could not be copied for `reason`
    /// (an `Uncaptured::code`), oldest first.
    pub fn current_uncaptured(&self, reason: &str) -> Result<Vec<PathBuf>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT path FROM versions
             WHERE uncaptured = ?1 AND replaced_at IS NULL AND deleted_at IS NULL
             ORDER BY id",
        )?;
        let rows = stmt.query_map([reason], |r| Ok(path_from_bytes(r.get(0)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Up to `limit` paths of current versions in and below `dir`, in path order, after
    /// `after` (from the start when `None`). Paged, so a caller can walk a million
    /// paths without holding them all, and may write to the index between pages.
    pub fn current_paths_page(
        &self,
        dir: &Path,
        after: Option<&Path>,
        limit: usize,
    ) -> Result<Vec<PathBuf>> {
        let (lo, hi) = subtree_range(dir);
        let mut stmt = self.conn.prepare_cached(
            "SELECT path FROM versions
             WHERE (path = ?1 OR (path >= ?2 AND path < ?3)) AND path > ?4
               AND replaced_at IS NULL AND deleted_at IS NULL
             ORDER BY path LIMIT ?5",
        )?;
        let after = after.map(path_bytes).unwrap_or(b"");
        let rows = stmt.query_map(params![path_bytes(dir), lo, hi, after, limit as i64], |r| {
            Ok(path_from_bytes(r.get(0)?))
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
}

#[cfg(test)]
mod tests;
