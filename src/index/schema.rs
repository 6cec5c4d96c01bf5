//! The index's schema: its migrations, applied in order, and the cheap checks of
//! the file made before SQLite opens it.
use std::path::Path;

use super::{Index, IndexError, Result};

/// Schema migrations, applied in order; `PRAGMA user_version` counts those applied.
pub(super) const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE roots (
    id INTEGER PRIMARY KEY,
    path BLOB NOT NULL UNIQUE,
    added_at INTEGER NOT NULL,
    active INTEGER NOT NULL DEFAULT 1
);
CREATE TABLE objects (
    id BLOB PRIMARY KEY,
    size INTEGER NOT NULL,
    stored_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE versions (
    id INTEGER PRIMARY KEY,
    path BLOB NOT NULL,
    root_id INTEGER NOT NULL REFERENCES roots(id),
    kind INTEGER NOT NULL,
    object BLOB,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    mode INTEGER NOT NULL,
    uid INTEGER NOT NULL,
    gid INTEGER NOT NULL,
    inode INTEGER NOT NULL,
    link_target BLOB,
    seen_at INTEGER NOT NULL,
    captured_at INTEGER,
    replaced_at INTEGER,
    deleted_at INTEGER,
    deleted_approx INTEGER NOT NULL DEFAULT 0,
    last_seen_at INTEGER,
    removal TEXT,
    uncaptured TEXT,
    uncaptured_detail TEXT,
    incident_id INTEGER
);
CREATE UNIQUE INDEX versions_current ON versions(path)
    WHERE replaced_at IS NULL AND deleted_at IS NULL;
CREATE INDEX versions_by_path ON versions(path);
CREATE INDEX versions_by_deletion ON versions(deleted_at) WHERE deleted_at IS NOT NULL;
CREATE TABLE alerts (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    message TEXT NOT NULL,
    raised_at INTEGER NOT NULL,
    cleared_at INTEGER,
    acknowledged_at INTEGER
);
CREATE TABLE meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"#,
    r#"
CREATE TABLE incidents (
    id INTEGER PRIMARY KEY,
    code TEXT NOT NULL UNIQUE,
    root_id INTEGER NOT NULL REFERENCES roots(id),
    folder BLOB NOT NULL,
    first_at INTEGER NOT NULL,
    last_at INTEGER NOT NULL,
    files INTEGER NOT NULL DEFAULT 0,
    bytes INTEGER NOT NULL DEFAULT 0,
    recoverable INTEGER NOT NULL DEFAULT 0,
    alerted_at INTEGER
);
CREATE INDEX versions_without_incident ON versions(deleted_at)
    WHERE deleted_at IS NOT NULL AND incident_id IS NULL;
CREATE INDEX versions_by_incident ON versions(incident_id) WHERE incident_id IS NOT NULL;
"#,
    // Folders never join an incident, so the index of deletions waiting for one kept
    // every deleted folder, and each batch of the daemon walked them all again.
    r#"
DROP INDEX versions_without_incident;
CREATE INDEX versions_without_incident ON versions(deleted_at)
    WHERE deleted_at IS NOT NULL AND incident_id IS NULL AND kind != 2;
"#,
    // Retention asks which objects no version refers to any more.
    r#"
CREATE INDEX versions_by_object ON versions(object) WHERE object IS NOT NULL;
"#,
    // Alerts that end: a deleted version a restore brought back, an incident over (no
    // deletion joined it for the gap, or everything in it is back), merged into
    // another, the owner told of its end; an alert resolved or acknowledged, and why.
    // Incidents from before are over, and none of their ends is news to tell.
    // Deleted folders now take part in grouping (a folder's deletion is evidence);
    // those deleted before are grouped into no incident (0), or the first grouping
    // after the upgrade would take years of them for new deletions.
    r#"
ALTER TABLE versions ADD COLUMN restored_at INTEGER;
ALTER TABLE incidents ADD COLUMN ended_at INTEGER;
ALTER TABLE incidents ADD COLUMN end_told_at INTEGER;
ALTER TABLE incidents ADD COLUMN merged_into INTEGER;
ALTER TABLE incidents ADD COLUMN restored INTEGER NOT NULL DEFAULT 0;
ALTER TABLE alerts ADD COLUMN closed_how TEXT;
ALTER TABLE alerts ADD COLUMN note TEXT;
ALTER TABLE alerts ADD COLUMN report BLOB;
UPDATE versions SET incident_id = 0
    WHERE kind = 2 AND deleted_at IS NOT NULL AND incident_id IS NULL;
UPDATE incidents SET ended_at = last_at, end_told_at = alerted_at;
CREATE INDEX incidents_open ON incidents(last_at)
    WHERE ended_at IS NULL AND merged_into IS NULL;
DROP INDEX versions_without_incident;
CREATE INDEX versions_without_incident ON versions(deleted_at)
    WHERE deleted_at IS NOT NULL AND incident_id IS NULL;
"#,
    // Size, mtime and inode do not prove content unchanged: tools put the mtime back
    // after editing. The change time cannot be set by users; 0 is "not recorded".
    r#"
ALTER TABLE versions ADD COLUMN ctime_ns INTEGER NOT NULL DEFAULT 0;
"#,
    // A copy made while the file was still being written, or kept from before writes
    // that were never closed, may not hold the last content (see `Incomplete`).
    r#"
ALTER TABLE versions ADD COLUMN incomplete TEXT;
"#,
    // Hard links: a file written through one name changed under its other names too,
    // and inotify reports only the name that was used.
    r#"
CREATE INDEX versions_current_by_inode ON versions(inode)
    WHERE replaced_at IS NULL AND deleted_at IS NULL;
"#,
    // The mount offers a point in time for every hour in which files changed: it asks
    // whether any version was seen in an hour, which without this reads every row.
    r#"
CREATE INDEX versions_by_seen ON versions(seen_at);
"#,
    // Mass overwrites are incidents too. A version carries the signs that its content
    // is the one it replaced, encrypted; one with signs joins an overwrite incident
    // (`overwrite_incident`, 0 when it joined none), and the version of its file that
    // was current when that incident began is marked (`before_incident`): that is
    // what the incident's restore brings back, and what retention holds.
    r#"
ALTER TABLE versions ADD COLUMN signs INTEGER NOT NULL DEFAULT 0;
ALTER TABLE versions ADD COLUMN overwrite_incident INTEGER;
ALTER TABLE versions ADD COLUMN before_incident INTEGER;
ALTER TABLE incidents ADD COLUMN kind TEXT NOT NULL DEFAULT 'deleted';
CREATE INDEX versions_signed_loose ON versions(seen_at)
    WHERE signs != 0 AND overwrite_incident IS NULL;
CREATE INDEX versions_before_incident ON versions(before_incident)
    WHERE before_incident IS NOT NULL;
"#,
    // `status` summed every current version (0.66 s over 1,000,000 rows). Each row
    // now says which of status's sums it counts in (`tally`, computed, never stored),
    // and triggers keep the sums in `tallies`, in the same transaction as the change:
    // no crash can leave them apart from the rows they count. `rebuild-index` counts
    // them again from the rows and `verify` checks them (see `totals`). The last
    // copy made is the end of an index rather than a sum.
    r#"
ALTER TABLE versions ADD COLUMN tally INTEGER GENERATED ALWAYS AS (
    CASE
        WHEN kind = 2 THEN NULL
        WHEN deleted_at IS NOT NULL THEN
            CASE WHEN restored_at IS NOT NULL THEN 6
                 WHEN uncaptured IS NULL THEN 4
                 ELSE 5 END
        WHEN replaced_at IS NOT NULL THEN NULL
        WHEN uncaptured IS NOT NULL THEN 3
        WHEN kind IN (0, 1) THEN 1 + kind
    END) VIRTUAL;
CREATE TABLE tallies (
    tally INTEGER PRIMARY KEY,
    files INTEGER NOT NULL DEFAULT 0,
    bytes INTEGER NOT NULL DEFAULT 0
);
INSERT INTO tallies (tally) VALUES (0), (1), (2), (3), (4), (5), (6);
UPDATE tallies SET
    files = (SELECT COUNT(*) FROM versions WHERE versions.tally = tallies.tally),
    bytes = (SELECT COALESCE(SUM(size), 0) FROM versions WHERE versions.tally = tallies.tally)
    WHERE tally != 0;
UPDATE tallies SET files = (SELECT COUNT(*) FROM objects),
    bytes = (SELECT COALESCE(SUM(size), 0) FROM objects) WHERE tally = 0;
CREATE INDEX versions_by_capture ON versions(captured_at);
CREATE TRIGGER tally_version_added AFTER INSERT ON versions BEGIN
    UPDATE tallies SET files = files + 1, bytes = bytes + NEW.size WHERE tally = NEW.tally;
END;
CREATE TRIGGER tally_version_changed
    AFTER UPDATE OF kind, size, replaced_at, deleted_at, uncaptured, restored_at
    ON versions BEGIN
    UPDATE tallies SET files = files - 1, bytes = bytes - OLD.size WHERE tally = OLD.tally;
    UPDATE tallies SET files = files + 1, bytes = bytes + NEW.size WHERE tally = NEW.tally;
END;
CREATE TRIGGER tally_version_removed AFTER DELETE ON versions BEGIN
    UPDATE tallies SET files = files - 1, bytes = bytes - OLD.size WHERE tally = OLD.tally;
END;
CREATE TRIGGER tally_object_added AFTER INSERT ON objects BEGIN
    UPDATE tallies SET files = files + 1, bytes = bytes + NEW.size WHERE tally = 0;
END;
CREATE TRIGGER tally_object_removed AFTER DELETE ON objects BEGIN
    UPDATE tallies SET files = files - 1, bytes = bytes - OLD.size WHERE tally = 0;
END;
"#,
    // Who made each version and who deleted it, and whose an incident is, where the
    // event source says (fanotify names the process; inotify does not). A person is
    // stored once (`model::Person` as JSON, compared whole) and referred to: one
    // `rm -rf` of 100,000 files is one row here, not 100,000 copies of a name.
    r#"
CREATE TABLE people (
    id INTEGER PRIMARY KEY,
    person TEXT NOT NULL UNIQUE
);
ALTER TABLE versions ADD COLUMN changed_by INTEGER REFERENCES people(id);
ALTER TABLE versions ADD COLUMN deleted_by INTEGER REFERENCES people(id);
ALTER TABLE incidents ADD COLUMN person INTEGER REFERENCES people(id);
"#,
    // A file renamed to its own name with an extension added (`a.docx` →
    // `a.docx.locked`, as ransomware does) keeps the name it had (`renamed_from`),
    // so that when it is rewritten under the new name its overwrite incident brings
    // it back under the old one. Set by `Index::rename`, so a replayed journal sets
    // it again. A restore finds an incident's encrypted copies by its versions.
    r#"
ALTER TABLE versions ADD COLUMN renamed_from BLOB;
CREATE INDEX versions_renamed_from ON versions(renamed_from) WHERE renamed_from IS NOT NULL;
CREATE INDEX versions_overwrite_incident ON versions(overwrite_incident)
    WHERE overwrite_incident IS NOT NULL;
"#,
    // What the circuit breaker did about an incident's PC (`model::CutOff` as JSON:
    // cut off, tried and failed, not again, or spared), once per incident, set by
    // `Index::record_cut_off` and kept by the journal.
    r#"
ALTER TABLE incidents ADD COLUMN cut_off TEXT;
"#,
];

impl Index {
    /// How many migrations the index file has had; one written by a newer version
    /// of undelete, which this one cannot read safely, is refused.
    pub(super) fn schema(&self, path: &Path) -> Result<i64> {
        let found: i64 = self
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))?;
        let known = MIGRATIONS.len() as i64;
        if found > known {
            return Err(IndexError::TooNew {
                path: path.to_owned(),
                found,
                known,
            });
        }
        Ok(found)
    }

    /// Applies the migrations the file has not had. Another process may be opening
    /// the same new index at the same moment (the daemon starting, and a command run
    /// at once): each migration takes the write lock before it reads how far the file
    /// is, so it is applied once, by whoever comes first, and the other waits (the
    /// busy timeout) and then finds it done. Read first without the lock, so an
    /// index already up to date is never held up by a writer.
    pub(super) fn migrate(&self, path: &Path) -> Result<()> {
        let known = MIGRATIONS.len() as i64;
        if self.schema(path)? == known {
            return Ok(());
        }
        loop {
            let tx = rusqlite::Transaction::new_unchecked(
                &self.conn,
                rusqlite::TransactionBehavior::Immediate,
            )?;
            let found = self.schema(path)?;
            let Some(sql) = MIGRATIONS.get(found as usize) else {
                return Ok(());
            };
            tx.execute_batch(sql)?;
            tx.pragma_update(None, "user_version", found + 1)?;
            tx.commit()?;
        }
    }
}

/// The first bytes of every SQLite database file.
const SQLITE_MAGIC: &[u8; 16] = b"SQLite format 3\0";

/// Cheap checks of the file before SQLite opens it: a file that is not a database,
/// or shorter than its own header says (cut short), is damaged. SQLite would
/// otherwise read the missing pages as empty and answer some queries wrongly.
pub(super) fn check_file(path: &Path) -> Result<()> {
    use std::io::Read as _;
    let damaged = |problem: String| IndexError::Damaged {
        path: path.to_owned(),
        problem,
    };
    let Ok(mut file) = std::fs::File::open(path) else {
        // Missing is for the caller to judge; unreadable is for SQLite to say.
        return Ok(());
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    if len == 0 {
        return Ok(());
    }
    let mut header = [0u8; 100];
    if len < 100 || file.read_exact(&mut header).is_err() {
        return Err(damaged(format!("it is only {len} bytes long")));
    }
    if &header[..16] != SQLITE_MAGIC {
        return Err(damaged("it is not a database file".to_owned()));
    }
    let be32 = |at: usize| u32::from_be_bytes(header[at..at + 4].try_into().expect("4 bytes"));
    let page_size = match u16::from_be_bytes([header[16], header[17]]) {
        1 => 65536,
        n => u64::from(n),
    };
    let pages = u64::from(be32(28));
    // The page count is only trusted when SQLite marked it valid, and only without a
    // write-ahead log: during a checkpoint the header may run ahead of the file.
    let count_valid = be32(24) == be32(92) && pages > 0;
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    let has_wal = std::fs::metadata(&wal).is_ok_and(|m| m.len() > 0);
    if count_valid && !has_wal && len < pages * page_size {
        return Err(damaged(format!(
            "it is cut short ({len} of {} bytes)",
            pages * page_size
        )));
    }
    Ok(())
}
