//! The SQLite index: every version of every protected path, deletions,
//! files seen but not captured (with the reason), protected folders and alerts.
//!
//! Paths are stored as bytes, because Linux names are bytes, not UTF-8. A
//! path's *current* version is the row that is neither replaced nor deleted.
//! Times are nanoseconds since the Unix epoch.
//!
//! The index never touches the vault: it records object ids, it does not
//! read or write objects.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::grouping;
use crate::ids::ObjectId;
use crate::journal::{Journal, JournalError, Record};
use crate::model::{
    Alert, AlertEntry, AlertState, EntryKind, Gone, Incident, Incomplete, KeptVersion, Observed,
    Removal, RestoreFilter, Root, Selection, Totals, Uncaptured, Version,
};
use crate::words::JsonPath;

/// Schema migrations, applied in order; `PRAGMA user_version` counts those applied.
const MIGRATIONS: &[&str] = &[
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
];

/// The incident id of deletions that belong to no incident (a folder or a lock file
/// deleted with nothing happening around it).
const NO_INCIDENT: i64 = 0;

#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("the index {path} cannot be opened: {source}")]
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error(
        "the index {path} was written by a newer version of undelete (schema {found}, this one knows {known})"
    )]
    TooNew {
        path: PathBuf,
        found: i64,
        known: i64,
    },
    #[error(
        "the index {path} was written by an older version of undelete, and cannot be \
         brought up to date while its disk is read-only"
    )]
    OldAndReadOnly { path: PathBuf },
    #[error("the index is damaged or unreadable: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("the index {path} is damaged: {problem}")]
    Damaged { path: PathBuf, problem: String },
    #[error(transparent)]
    Journal(#[from] JournalError),
}

impl IndexError {
    /// What is wrong, when the error means the index file itself is damaged or missing
    /// (as opposed to a busy or unreadable one): the case `rebuild-index` repairs.
    pub fn damage(&self) -> Option<String> {
        match self {
            Self::Damaged { problem, .. } => Some(problem.clone()),
            Self::Open { source, .. } | Self::Sql(source) => sqlite_damage(source),
            _ => None,
        }
    }
}

/// What is wrong, when SQLite says the database file is damaged.
pub fn sqlite_damage(err: &rusqlite::Error) -> Option<String> {
    match err.sqlite_error_code() {
        Some(rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase) => {
            Some(err.to_string())
        }
        _ => None,
    }
}

pub type Result<T> = std::result::Result<T, IndexError>;

const VERSION_COLUMNS: &str = "id, path, root_id, kind, object, size, mtime_ns, mode, uid, gid, inode, \
     link_target, seen_at, captured_at, replaced_at, deleted_at, deleted_approx, last_seen_at, \
     removal, uncaptured, uncaptured_detail, incident_id, restored_at, ctime_ns, incomplete";

fn version_from_row(row: &Row<'_>) -> rusqlite::Result<Version> {
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
        },
        seen_at: row.get(12)?,
        captured_at: row.get(13)?,
        replaced_at: row.get(14)?,
        deleted_at: row.get(15)?,
        deleted_approx: row.get(16)?,
        last_seen_at: row.get(17)?,
        removal: removal.as_deref().map(Removal::from_code),
        incident_id: row.get(21)?,
        restored_at: row.get(22)?,
    })
}

pub fn path_bytes(path: &Path) -> &[u8] {
    path.as_os_str().as_bytes()
}

pub fn path_from_bytes(bytes: Vec<u8>) -> PathBuf {
    PathBuf::from(std::ffi::OsString::from_vec(bytes))
}

/// The half-open byte range `[dir + "/", dir + "0")` holds every path strictly below `dir`
/// ('0' is the byte after '/'), so subtree queries use the path index.
fn subtree_range(dir: &Path) -> (Vec<u8>, Vec<u8>) {
    let mut lo = path_bytes(dir).to_vec();
    if lo.last() != Some(&b'/') {
        lo.push(b'/');
    }
    let mut hi = lo.clone();
    *hi.last_mut().expect("never empty") = b'0';
    (lo, hi)
}

/// The parameters `path = ?exact OR (path >= ?lo AND path < ?hi)` need to select
/// `scope` and everything below it, or every path when there is no scope.
fn scope_range(scope: Option<&Path>) -> (&[u8], Vec<u8>, Vec<u8>) {
    match scope.filter(|s| !s.as_os_str().is_empty()) {
        Some(dir) => {
            let (lo, hi) = subtree_range(dir);
            (path_bytes(dir), lo, hi)
        }
        // Every path starts with '/', below 0xff; none is longer than 4,096 bytes.
        None => (b"", Vec::new(), vec![0xff; 4097]),
    }
}

const INCIDENT_COLUMNS: &str = "id, code, root_id, folder, first_at, last_at, files, bytes, \
     recoverable, alerted_at, ended_at, end_told_at, restored";

fn incident_from_row(r: &Row<'_>) -> rusqlite::Result<Incident> {
    Ok(Incident {
        id: r.get(0)?,
        code: r.get(1)?,
        root_id: r.get(2)?,
        folder: path_from_bytes(r.get(3)?),
        first_at: r.get(4)?,
        last_at: r.get(5)?,
        files: r.get::<_, i64>(6)?.max(0) as u64,
        bytes: r.get::<_, i64>(7)?.max(0) as u64,
        recoverable: r.get::<_, i64>(8)?.max(0) as u64,
        alerted_at: r.get(9)?,
        ended_at: r.get(10)?,
        end_told_at: r.get(11)?,
        restored: r.get::<_, i64>(12)?.max(0) as u64,
    })
}

pub struct Index {
    conn: Connection,
    /// The daemon's: every change is recorded there before it is committed.
    journal: Option<RefCell<Journal>>,
    /// Above 0 while a journaled method runs: what it calls is part of its record.
    recording: Cell<u32>,
    /// Where the journal's waiting records stood when the batch began (see `rollback`).
    journal_mark: Cell<usize>,
}

/// Marks a journaled method as running, until dropped.
struct Recording<'a>(&'a Cell<u32>);

impl Drop for Recording<'_> {
    fn drop(&mut self) {
        self.0.set(self.0.get() - 1);
    }
}

impl Index {
    /// Opens the index, creating it and applying migrations as needed.
    pub fn open(path: &Path) -> Result<Self> {
        check_file(path)?;
        // Created 0600 before SQLite sees it, so it is never briefly world-readable.
        crate::vault::create_private_file(path).map_err(|e| IndexError::Open {
            path: path.to_owned(),
            source: rusqlite::Error::ToSqlConversionFailure(Box::new(e)),
        })?;
        let open_err = |source| IndexError::Open {
            path: path.to_owned(),
            source,
        };
        let conn = Connection::open(path).map_err(open_err)?;
        conn.busy_timeout(Duration::from_secs(30))
            .map_err(open_err)?;
        // WAL lets the CLI read while the daemon writes. NORMAL keeps every commit
        // across a killed process; only a power cut may lose the last few.
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(open_err)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(open_err)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(open_err)?;
        // One query plan per statement, whatever its parameters. Otherwise SQLite
        // (built with STAT4) plans some statements again each time a path is bound:
        // `latest` was parsed anew for every file the daemon looked at, a third of its
        // time during a big restore.
        conn.set_db_config(
            rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
            true,
        )
        .map_err(open_err)?;
        // Counts of incidents leave programs' lock files out, in SQL as in Rust.
        conn.create_scalar_function(
            "is_program_lock",
            1,
            rusqlite::functions::FunctionFlags::SQLITE_UTF8
                | rusqlite::functions::FunctionFlags::SQLITE_DETERMINISTIC,
            |ctx| {
                let path: Vec<u8> = ctx.get(0)?;
                Ok(crate::names::is_program_lock(&path_from_bytes(path)))
            },
        )
        .map_err(open_err)?;
        let index = Self {
            conn,
            journal: None,
            recording: Cell::new(0),
            journal_mark: Cell::new(0),
        };
        index.migrate(path)?;
        Ok(index)
    }

    /// Opens the index for the daemon, with its journal in `journal_dir`. Refuses an
    /// index that fails SQLite's integrity check, or that is missing while the
    /// journal is not: a new empty index would hide everything recorded so far.
    pub fn open_journaled(path: &Path, journal_dir: &Path) -> Result<Self> {
        if is_missing(path) && crate::journal::has_records(journal_dir) {
            return Err(missing(path));
        }
        let mut index = Self::open(path)?;
        if let Some(problem) = index.check_integrity()?.into_iter().next() {
            return Err(IndexError::Damaged {
                path: path.to_owned(),
                problem: format!("SQLite's integrity check found: {problem}"),
            });
        }
        let journal = Journal::open(journal_dir, || index.version_count().unwrap_or(0))?;
        index.journal = Some(RefCell::new(journal));
        Ok(index)
    }

    /// Opens the index for a command: like `open`, but a missing index is an error
    /// when the journal shows there was one.
    pub fn open_existing(path: &Path, journal_dir: &Path) -> Result<Self> {
        if is_missing(path) && crate::journal::has_records(journal_dir) {
            return Err(missing(path));
        }
        Self::open(path)
    }

    /// Opens the index of a vault on a read-only disk (ext4 remounts read-only on
    /// errors): for reading only, nothing written, not even SQLite's shared-memory
    /// file where it is missing. Committed changes still in the write-ahead log are
    /// read when the log is there; where it cannot be, the database is opened as
    /// unchanging, which it is, since nothing can write to it.
    pub fn open_read_only(path: &Path) -> Result<Self> {
        use rusqlite::OpenFlags;
        check_file(path)?;
        if is_missing(path) {
            return Err(missing(path));
        }
        let open_err = |source| IndexError::Open {
            path: path.to_owned(),
            source,
        };
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_URI
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let uri = |extra: &str| {
            let mut uri = String::from("file:");
            for &b in path_bytes(path) {
                match b {
                    b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'/' | b'-' | b'_' | b'.' => {
                        uri.push(b as char)
                    }
                    _ => uri.push_str(&format!("%{b:02X}")),
                }
            }
            uri.push_str(extra);
            uri
        };
        let wal_here = Path::new(&format!("{}-wal", path.display())).exists();
        let conn = match Connection::open_with_flags(uri("?mode=ro"), flags) {
            Ok(conn)
                if conn
                    .query_row("PRAGMA user_version", [], |_| Ok(()))
                    .is_ok() =>
            {
                conn
            }
            // No log to read and no way to make the files SQLite shares between readers.
            _ if !wal_here => {
                Connection::open_with_flags(uri("?mode=ro&immutable=1"), flags).map_err(open_err)?
            }
            Ok(conn) => conn,
            Err(e) => return Err(open_err(e)),
        };
        let index = Self {
            conn,
            journal: None,
            recording: Cell::new(0),
            journal_mark: Cell::new(0),
        };
        if index.schema(path)? < MIGRATIONS.len() as i64 {
            return Err(IndexError::OldAndReadOnly {
                path: path.to_owned(),
            });
        }
        Ok(index)
    }

    /// Notes a change in the journal (if any) before it is made; the change is part
    /// of the journal's next `sync`, which comes before the index's commit.
    fn record(&self, record: impl FnOnce() -> Result<Record>) -> Result<Recording<'_>> {
        if let Some(journal) = &self.journal
            && self.recording.get() == 0
        {
            let mut journal = journal.borrow_mut();
            let mark = journal.mark();
            journal.append(&record()?);
            if !self.in_transaction()
                // The change commits on its own at once: the record must be on disk first.
                && let Err(e) = journal.sync()
            {
                journal.discard_since(mark);
                return Err(e.into());
            }
        }
        self.recording.set(self.recording.get() + 1);
        Ok(Recording(&self.recording))
    }

    fn root_path(&self, root_id: i64) -> Result<PathBuf> {
        Ok(self
            .conn
            .prepare_cached("SELECT path FROM roots WHERE id = ?1")?
            .query_row([root_id], |r| Ok(path_from_bytes(r.get(0)?)))?)
    }

    pub fn version_count(&self) -> Result<u64> {
        Ok(self
            .conn
            .query_row("SELECT COUNT(*) FROM versions", [], |r| r.get::<_, i64>(0))?
            as u64)
    }

    /// How many migrations the index file has had; one written by a newer version
    /// of undelete, which this one cannot read safely, is refused.
    fn schema(&self, path: &Path) -> Result<i64> {
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

    fn migrate(&self, path: &Path) -> Result<()> {
        let found = self.schema(path)?;
        for (n, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
            let tx = self.conn.unchecked_transaction()?;
            tx.execute_batch(sql)?;
            tx.pragma_update(None, "user_version", n as i64 + 1)?;
            tx.commit()?;
        }
        Ok(())
    }

    /// Starts a batch of writes; nothing is visible to others until `commit`.
    pub fn begin(&self) -> Result<()> {
        self.conn.execute_batch("BEGIN IMMEDIATE")?;
        if let Some(journal) = &self.journal {
            self.journal_mark.set(journal.borrow().mark());
        }
        Ok(())
    }

    /// Undoes the batch, in the index and in the journal's records not yet written.
    pub fn rollback(&self) {
        let _ = self.conn.execute_batch("ROLLBACK");
        if let Some(journal) = &self.journal {
            journal.borrow_mut().discard_since(self.journal_mark.get());
        }
    }

    pub fn commit(&self) -> Result<()> {
        let synced_from = match &self.journal {
            Some(journal) => {
                let mut journal = journal.borrow_mut();
                let len = journal.synced_len();
                journal.sync()?;
                Some(len)
            }
            None => None,
        };
        if let Err(e) = self.conn.execute_batch("COMMIT") {
            // The records just written describe changes the index did not make.
            if let (Some(journal), Some(len)) = (&self.journal, synced_from) {
                journal.borrow_mut().truncate_to(len);
            }
            return Err(e.into());
        }
        Ok(())
    }

    pub fn in_transaction(&self) -> bool {
        !self.conn.is_autocommit()
    }

    /// Runs `f` inside one transaction.
    pub fn batch<T>(&self, f: impl FnOnce(&Self) -> Result<T>) -> Result<T> {
        self.begin()?;
        match f(self) {
            Ok(value) => match self.commit() {
                Ok(()) => Ok(value),
                Err(e) => {
                    self.rollback();
                    Err(e)
                }
            },
            Err(e) => {
                self.rollback();
                Err(e)
            }
        }
    }

    /// Runs `f`'s reads in one read transaction, so they see the index as it was at
    /// one moment: a command reading alerts, then the time settings were read, must not
    /// see the daemon's newer settings beside the alerts it has since cleared.
    pub fn snapshot<T>(&self, f: impl FnOnce(&Self) -> Result<T>) -> Result<T> {
        self.conn.execute_batch("BEGIN DEFERRED")?;
        let out = f(self);
        // Nothing was written: ending it cannot lose anything.
        let _ = self.conn.execute_batch("COMMIT");
        out
    }

    // --- protected folders -------------------------------------------------

    /// Records the protected folders of this run: new ones are added, missing ones
    /// kept but marked inactive (their history stays restorable).
    pub fn set_roots(&self, paths: &[PathBuf], now: i64) -> Result<Vec<Root>> {
        let _r = self.record(|| {
            Ok(Record::Roots {
                paths: paths.iter().map(|p| p.as_path().into()).collect(),
                at: now,
            })
        })?;
        self.batch(|ix| {
            ix.conn.execute("UPDATE roots SET active = 0", [])?;
            for path in paths {
                ix.conn.execute(
                    "INSERT INTO roots (path, added_at, active) VALUES (?1, ?2, 1)
                     ON CONFLICT(path) DO UPDATE SET active = 1",
                    params![path_bytes(path), now],
                )?;
            }
            Ok(())
        })?;
        Ok(self.roots()?.into_iter().filter(|r| r.active).collect())
    }

    pub fn roots(&self) -> Result<Vec<Root>> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT id, path, added_at, active FROM roots ORDER BY path")?;
        let rows = stmt.query_map([], |r| {
            Ok(Root {
                id: r.get(0)?,
                path: path_from_bytes(r.get(1)?),
                added_at: r.get(2)?,
                active: r.get(3)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    // --- versions ------------------------------------------------------------

    pub fn current(&self, path: &Path) -> Result<Option<Version>> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {VERSION_COLUMNS} FROM versions
             WHERE path = ?1 AND replaced_at IS NULL AND deleted_at IS NULL"
        ))?;
        Ok(stmt
            .query_row([path_bytes(path)], version_from_row)
            .optional()?)
    }

    /// The newest row for `path`, current or not.
    pub fn latest(&self, path: &Path) -> Result<Option<Version>> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {VERSION_COLUMNS} FROM versions WHERE path = ?1 ORDER BY id DESC LIMIT 1"
        ))?;
        Ok(stmt
            .query_row([path_bytes(path)], version_from_row)
            .optional()?)
    }

    /// Every row for `path`, oldest first.
    pub fn history(&self, path: &Path) -> Result<Vec<Version>> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {VERSION_COLUMNS} FROM versions WHERE path = ?1 ORDER BY id"
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
        let _r = self.record(|| {
            Ok(Record::Insert {
                path: path.into(),
                root: self.root_path(root_id)?.as_path().into(),
                observed: observed.into(),
                at: now,
            })
        })?;
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
                     ctime_ns, incomplete)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16,
                     ?17)",
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
        let mut n = self
            .conn
            .prepare_cached(
                "UPDATE versions SET deleted_at = ?2, deleted_approx = ?3, last_seen_at = ?4,
                     removal = ?5
                 WHERE path = ?1 AND replaced_at IS NULL AND deleted_at IS NULL",
            )?
            .execute(params![
                path_bytes(path),
                gone.at,
                gone.approx,
                gone.last_seen,
                gone.removal.code()
            ])?;
        if subtree {
            let (lo, hi) = subtree_range(path);
            n += self
                .conn
                .prepare_cached(
                    "UPDATE versions SET deleted_at = ?3, deleted_approx = ?4, last_seen_at = ?5,
                         removal = ?6
                     WHERE path >= ?1 AND path < ?2
                       AND replaced_at IS NULL AND deleted_at IS NULL",
                )?
                .execute(params![
                    lo,
                    hi,
                    gone.at,
                    gone.approx,
                    gone.last_seen,
                    gone.removal.code()
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

    /// Records a path that existed but vanished before it could be captured.
    pub fn record_lost(&self, path: &Path, root_id: i64, kind: EntryKind, now: i64) -> Result<()> {
        let _r = self.record(|| {
            Ok(Record::Lost {
                path: path.into(),
                root: self.root_path(root_id)?.as_path().into(),
                kind: kind.code(),
                at: now,
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
        };
        let id = self.insert_version(path, root_id, &observed, now)?;
        self.conn
            .prepare_cached(
                "UPDATE versions SET deleted_at = ?2, removal = 'deleted', last_seen_at = ?2
                 WHERE id = ?1",
            )?
            .execute(params![id, now])?;
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

    /// The paths whose current version could not be copied for `reason`
    /// (an `Uncaptured::code`), oldest first.
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
            rusqlite::params![inode as i64, path_bytes(path), EntryKind::File.code()],
            |r| Ok(path_from_bytes(r.get(0)?)),
        )?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

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

    /// The versions a restore would bring back, one per path, ordered by path.
    ///
    /// Without `as_of`: the most recent removed version of each path that matches.
    /// With `as_of`: the version that was current at that moment, for every path that
    /// existed then (the folder as it was).
    pub fn restore_candidates(&self, filter: &RestoreFilter) -> Result<Vec<Version>> {
        let everything = [None];
        let given: Vec<Option<&Path>> = filter.scopes.iter().map(|s| Some(s.as_path())).collect();
        let scopes: &[Option<&Path>] = if given.is_empty() {
            &everything
        } else {
            &given
        };
        let when = if filter.as_of.is_some() {
            "seen_at <= ?4 AND (replaced_at IS NULL OR replaced_at > ?4)
             AND (deleted_at IS NULL OR deleted_at > ?4)"
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

    // --- retention -----------------------------------------------------------

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

    pub fn totals(&self) -> Result<Totals> {
        let mut t = Totals::default();
        self.conn.query_row(
            "SELECT
                 COALESCE(SUM(kind IN (0, 1) AND uncaptured IS NULL), 0),
                 COALESCE(SUM(CASE WHEN kind = 0 AND uncaptured IS NULL THEN size END), 0),
                 COALESCE(SUM(kind != 2 AND uncaptured IS NOT NULL), 0)
             FROM versions WHERE replaced_at IS NULL AND deleted_at IS NULL",
            [],
            |r| {
                t.files_protected = r.get::<_, i64>(0)? as u64;
                t.bytes_protected = r.get::<_, i64>(1)? as u64;
                t.files_unprotected = r.get::<_, i64>(2)? as u64;
                Ok(())
            },
        )?;
        self.conn.query_row(
            "SELECT COALESCE(SUM(uncaptured IS NULL AND restored_at IS NULL), 0),
                    COALESCE(SUM(uncaptured IS NOT NULL AND restored_at IS NULL), 0),
                    COALESCE(SUM(restored_at IS NOT NULL), 0)
             FROM versions WHERE deleted_at IS NOT NULL AND kind != 2",
            [],
            |r| {
                t.deleted_recoverable = r.get::<_, i64>(0)? as u64;
                t.deleted_lost = r.get::<_, i64>(1)? as u64;
                t.deleted_restored = r.get::<_, i64>(2)? as u64;
                Ok(())
            },
        )?;
        self.conn.query_row(
            "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM objects",
            [],
            |r| {
                t.objects = r.get::<_, i64>(0)? as u64;
                t.object_bytes = r.get::<_, i64>(1)? as u64;
                Ok(())
            },
        )?;
        t.last_capture = self
            .conn
            .query_row("SELECT MAX(captured_at) FROM versions", [], |r| r.get(0))?;
        Ok(t)
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

    // --- incidents -----------------------------------------------------------

    /// Puts every deletion not yet in an incident into one, by the rules of
    /// `grouping`; deletions further apart than `gap_ns` never join. Returns the ids
    /// of incidents that changed.
    pub fn group_incidents(
        &self,
        gap_ns: i64,
        new_code: &mut dyn FnMut() -> String,
    ) -> Result<Vec<i64>> {
        self.group_incidents_by(gap_ns, grouping::Rules::ByFolder, new_code)
    }

    /// `group_incidents` by the given rules: a journal replayed keeps the rules its
    /// incidents were made by.
    pub fn group_incidents_by(
        &self,
        gap_ns: i64,
        rules: grouping::Rules,
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
        rules: grouping::Rules,
        new_code: &mut dyn FnMut() -> String,
    ) -> Result<(Vec<i64>, bool)> {
        let mut loose: Vec<Loose> = {
            let mut stmt = self.conn.prepare_cached(
                "SELECT id, path, root_id, kind, deleted_at, seen_at, size, uncaptured IS NULL
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
        for row in &loose {
            let here = match by_root.entry(row.root_id) {
                std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::hash_map::Entry::Vacant(e) => e.insert(RootGroupings::new(
                    self.root_path(row.root_id)?,
                    self.open_groupings(row.root_id, row.at.saturating_sub(gap_ns))?,
                )),
            };
            let deletion = grouping::Deletion {
                path: &row.path,
                at: row.at,
                folder: row.folder,
                lock: crate::names::is_program_lock(&row.path),
            };
            let into = match grouping::place(&here.views, &here.root, &deletion, rules, gap_ns) {
                grouping::Place::Join(k) => here.open[k],
                grouping::Place::Widen(k, folder) => {
                    here.all[here.open[k]].folder = folder;
                    here.open[k]
                }
                grouping::Place::Merge(ks, folder) => here.merge(&ks, folder),
                grouping::Place::New(folder) => {
                    let g = self.new_incident(row.root_id, &folder, row.at, new_code)?;
                    here.views.push(g.view());
                    here.all.push(g);
                    here.open.push(here.all.len() - 1);
                    here.all.len() - 1
                }
                grouping::Place::Nowhere => {
                    nowhere.push(row.id);
                    continue;
                }
            };
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
            "SELECT id, code, folder, first_at, last_at FROM incidents
             WHERE root_id = ?1 AND last_at >= ?2 AND ended_at IS NULL AND merged_into IS NULL
             ORDER BY id",
        )?;
        let rows = stmt.query_map(params![root_id, since], |r| {
            let first_at: i64 = r.get(3)?;
            Ok(Grouping::new(
                r.get(0)?,
                r.get(1)?,
                path_from_bytes(r.get(2)?),
                first_at,
                r.get(4)?,
                Some(first_at),
            ))
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
                     recoverable = recoverable + ?7
                 WHERE id = ?1",
            )?
            .execute(params![
                g.id,
                path_bytes(&g.folder),
                g.first_at,
                g.last_at,
                g.files,
                g.bytes,
                g.recoverable
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
        let kind = crate::incident::alert_kind(&into.code);
        let theirs = crate::incident::alert_kind(absorbed_code);
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
    fn recount_incident(&self, id: i64) -> Result<()> {
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

    // --- what restores brought back -----------------------------------------------

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
        let mut mark = self.conn.prepare_cached(
            "UPDATE versions SET restored_at = ?3
             WHERE path = ?1 AND deleted_at = ?2 AND restored_at IS NULL AND kind != 2
             RETURNING incident_id",
        )?;
        for (path, deleted_at) in files {
            let rows = mark.query_map(params![path_bytes(path), deleted_at, now], |r| {
                r.get::<_, Option<i64>>(0)
            })?;
            for incident in rows {
                marked += 1;
                if let Some(id) = incident?.filter(|&id| id != NO_INCIDENT) {
                    touched.insert(id);
                }
            }
        }
        for id in touched {
            self.recount_incident(id)?;
            let Some(incident) = self.incident(id)? else {
                continue;
            };
            if incident.missing() > 0 {
                continue;
            }
            // What follows is another deletion, not more of this one.
            self.conn.execute(
                "UPDATE incidents SET ended_at = ?2 WHERE id = ?1 AND ended_at IS NULL",
                params![id, now],
            )?;
            self.conn.execute(
                "UPDATE alerts SET cleared_at = ?2, closed_how = 'resolved', report = ?3
                 WHERE kind = ?1 AND cleared_at IS NULL",
                params![
                    crate::incident::alert_kind(&incident.code),
                    now,
                    report.map(path_bytes)
                ],
            )?;
        }
        Ok(marked)
    }

    // --- alerts --------------------------------------------------------------

    /// Raises an alert of `kind` unless one of that kind is already open.
    pub fn raise_alert(&self, kind: &str, message: &str, now: i64) -> Result<bool> {
        let open: bool = self.conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM alerts WHERE kind = ?1 AND cleared_at IS NULL)",
            [kind],
            |r| r.get(0),
        )?;
        if open {
            // Nothing changes, so nothing is recorded: a limit hit at every folder
            // walked would otherwise write the same record thousands of times.
            return Ok(false);
        }
        let _r = self.record(|| {
            Ok(Record::Alert {
                kind: kind.to_owned(),
                message: message.to_owned(),
                at: now,
            })
        })?;
        self.conn.execute(
            "INSERT INTO alerts (kind, message, raised_at) VALUES (?1, ?2, ?3)",
            params![kind, message, now],
        )?;
        Ok(true)
    }

    pub fn clear_alert(&self, kind: &str, now: i64) -> Result<()> {
        let _r = self.record(|| {
            Ok(Record::AlertCleared {
                kind: kind.to_owned(),
                at: now,
            })
        })?;
        self.conn
            .prepare_cached(
                "UPDATE alerts SET cleared_at = ?2 WHERE kind = ?1 AND cleared_at IS NULL",
            )?
            .execute(params![kind, now])?;
        Ok(())
    }

    /// Acknowledges the open alert of `kind` raised at `raised_at`: it needs nothing
    /// done (the deletion was wanted). Returns whether there was such an alert.
    pub fn acknowledge_alert(
        &self,
        kind: &str,
        raised_at: i64,
        note: Option<&str>,
        now: i64,
    ) -> Result<bool> {
        let open: bool = self.conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM alerts
                 WHERE kind = ?1 AND raised_at = ?2 AND cleared_at IS NULL)",
            params![kind, raised_at],
            |r| r.get(0),
        )?;
        if !open {
            return Ok(false);
        }
        let _r = self.record(|| {
            Ok(Record::Acknowledged {
                kind: kind.to_owned(),
                raised_at,
                note: note.map(str::to_owned),
                at: now,
            })
        })?;
        let n = self.conn.execute(
            "UPDATE alerts SET cleared_at = ?3, acknowledged_at = ?3,
                 closed_how = 'acknowledged', note = ?4
             WHERE kind = ?1 AND raised_at = ?2 AND cleared_at IS NULL",
            params![kind, raised_at, now, note],
        )?;
        Ok(n > 0)
    }

    pub fn open_alerts(&self) -> Result<Vec<Alert>> {
        let mut stmt = self.conn.prepare(
            "SELECT id, kind, message, raised_at, cleared_at FROM alerts
             WHERE cleared_at IS NULL ORDER BY raised_at DESC",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(Alert {
                id: r.get(0)?,
                kind: r.get(1)?,
                message: r.get(2)?,
                raised_at: r.get(3)?,
                cleared_at: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Every alert still open, and every other raised or closed at or after `since`,
    /// newest first, with what became of each.
    pub fn alert_entries(&self, since: i64) -> Result<Vec<AlertEntry>> {
        let mut stmt = self.conn.prepare(
            "SELECT id, kind, message, raised_at, cleared_at, closed_how, note, report
             FROM alerts
             WHERE cleared_at IS NULL OR raised_at >= ?1 OR cleared_at >= ?1
             ORDER BY cleared_at IS NOT NULL, COALESCE(cleared_at, raised_at) DESC, id DESC",
        )?;
        let rows = stmt.query_map([since], |r| {
            let cleared_at: Option<i64> = r.get(4)?;
            let how: Option<String> = r.get(5)?;
            let report: Option<Vec<u8>> = r.get(7)?;
            let state = match (cleared_at, how.as_deref()) {
                (None, _) => AlertState::Open,
                (Some(_), Some("resolved")) => AlertState::Resolved {
                    report: report.map(path_from_bytes),
                },
                (Some(_), Some("acknowledged")) => AlertState::Acknowledged { note: r.get(6)? },
                (Some(_), Some("merged")) => AlertState::Merged,
                (Some(_), _) => AlertState::Cleared,
            };
            Ok(AlertEntry {
                alert: Alert {
                    id: r.get(0)?,
                    kind: r.get(1)?,
                    message: r.get(2)?,
                    raised_at: r.get(3)?,
                    cleared_at,
                },
                state,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    // --- meta ----------------------------------------------------------------

    pub fn set_meta(&self, key: &str, value: &str) -> Result<()> {
        self.conn
            .prepare_cached(
                "INSERT INTO meta (key, value) VALUES (?1, ?2)
                 ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            )?
            .execute([key, value])?;
        Ok(())
    }

    pub fn meta(&self, key: &str) -> Result<Option<String>> {
        Ok(self
            .conn
            .prepare_cached("SELECT value FROM meta WHERE key = ?1")?
            .query_row([key], |r| r.get(0))
            .optional()?)
    }

    /// Sized for a process that keeps the index open and writes to it all day: the
    /// daemon's lookups and inserts land all over the path and object indexes. With
    /// SQLite's default 2 MB of cache, a big restore read 33,000 pages back from the
    /// file, and checkpointing after every 1,000 pages of log wrote each index page
    /// again after nearly every commit: 32 MB of cache, and 32 MB of log between
    /// checkpoints. Not for the commands, which read little and would only hold more.
    pub fn keep_busy_pages_in_memory(&self) -> Result<()> {
        self.conn.pragma_update(None, "cache_size", -32768)?;
        self.conn.pragma_update(None, "wal_autocheckpoint", 8192)?;
        Ok(())
    }

    /// Checks the database file itself (`PRAGMA quick_check`).
    pub fn check_integrity(&self) -> Result<Vec<String>> {
        let mut stmt = self.conn.prepare("PRAGMA quick_check")?;
        let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
        let rows: Vec<String> = rows.collect::<rusqlite::Result<_>>()?;
        let problems = rows.into_iter().filter(|s: &String| s != "ok").collect();
        Ok(problems)
    }
}

fn is_missing(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.len() == 0) || !path.exists()
}

fn missing(path: &Path) -> IndexError {
    IndexError::Damaged {
        path: path.to_owned(),
        problem: "it is missing or empty".to_owned(),
    }
}

/// The first bytes of every SQLite database file.
const SQLITE_MAGIC: &[u8; 16] = b"SQLite format 3\0";

/// Cheap checks of the file before SQLite opens it: a file that is not a database,
/// or shorter than its own header says (cut short), is damaged. SQLite would
/// otherwise read the missing pages as empty and answer some queries wrongly.
fn check_file(path: &Path) -> Result<()> {
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
}

/// The incidents of one protected folder a grouping works with: those open when
/// it began and those it made (`all`), and of them the ones still open to more
/// deletions (`open`, indexes into `all`) as the rules see them (`views`).
struct RootGroupings {
    root: PathBuf,
    all: Vec<Grouping>,
    open: Vec<usize>,
    views: Vec<grouping::Open>,
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
            self.all[other].merged_into = Some(survivor);
            let s = &mut self.all[survivor];
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
        }
    }

    fn view(&self) -> grouping::Open {
        grouping::Open {
            folder: self.folder.clone(),
            first_at: self.first_at,
            last_at: self.last_at,
        }
    }

    /// Adds a deletion; folders and lock files join without being counted.
    fn add(&mut self, ix: &Index, row: &Loose, lock: bool) -> Result<()> {
        self.touched = true;
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
pub(crate) mod tests {
    use super::*;

    /// A captured file's observation, for tests here and in `journal`.
    pub(crate) fn file(object: u8, size: u64) -> Observed {
        Observed {
            kind: EntryKind::File,
            object: Some(ObjectId::from_bytes([object; 32])),
            size,
            mtime_ns: 1,
            ctime_ns: 1,
            mode: 0o644,
            uid: 0,
            gid: 0,
            inode: 7,
            link_target: None,
            uncaptured: None,
            incomplete: None,
        }
    }

    #[test]
    fn a_snapshot_sees_one_moment_while_another_process_writes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.db");
        let reader = Index::open(&path).unwrap();
        let daemon = Index::open(&path).unwrap();
        daemon.raise_alert("settings", "a mistake", 1).unwrap();
        daemon.set_meta("settings_read_at", "1").unwrap();
        let (alerts, read_at) = reader
            .snapshot(|ix| {
                let alerts = ix.open_alerts()?.len();
                // The daemon mends its settings between the two reads.
                daemon.clear_alert("settings", 2).unwrap();
                daemon.set_meta("settings_read_at", "2").unwrap();
                Ok((alerts, ix.meta("settings_read_at")?))
            })
            .unwrap();
        assert_eq!((alerts, read_at.as_deref()), (1, Some("1")));
        assert_eq!(reader.open_alerts().unwrap().len(), 0, "seen after it");
    }

    #[test]
    fn a_commit_that_fails_takes_its_records_back_out_of_the_journal() {
        let (dir, ix, root) = journaled_index();
        let journal = dir.path().join("journal");
        ix.begin().unwrap();
        ix.insert_version(Path::new("/s/never"), root, &file(1, 1), 10)
            .unwrap();
        // A constraint checked only at COMMIT makes the commit itself fail, after the
        // journal has been written.
        ix.conn
            .execute_batch("PRAGMA defer_foreign_keys = ON; DELETE FROM roots;")
            .unwrap();
        assert!(ix.commit().is_err());
        ix.rollback();

        let rebuilt = Index::open(&dir.path().join("new.db")).unwrap();
        crate::rebuild::replay(&journal, &rebuilt, &mut || unreachable!()).unwrap();
        assert!(rebuilt.history(Path::new("/s/never")).unwrap().is_empty());
    }

    #[test]
    fn only_an_index_kept_busy_holds_32_mb_of_pages() {
        let (_dir, ix, _) = index();
        let setting = |name: &str| -> i64 {
            ix.conn
                .pragma_query_value(None, name, |row| row.get(0))
                .unwrap()
        };
        // SQLite's defaults: 2 MB (as -2000 KiB), a checkpoint every 1,000 pages.
        assert_eq!(
            (setting("cache_size"), setting("wal_autocheckpoint")),
            (-2000, 1000)
        );
        ix.keep_busy_pages_in_memory().unwrap();
        assert_eq!(
            (setting("cache_size"), setting("wal_autocheckpoint")),
            (-32768, 8192)
        );
    }

    /// An index journaled to `journal/` in the returned folder, with one protected
    /// folder, `/s`, whose id comes last.
    pub(crate) fn journaled_index() -> (tempfile::TempDir, Index, i64) {
        let dir = tempfile::tempdir().unwrap();
        let ix = Index::open_journaled(&dir.path().join("index.db"), &dir.path().join("journal"))
            .unwrap();
        let root = ix.set_roots(&[PathBuf::from("/s")], 1).unwrap()[0].id;
        (dir, ix, root)
    }

    fn index() -> (tempfile::TempDir, Index, i64) {
        let dir = tempfile::tempdir().unwrap();
        let ix = Index::open(&dir.path().join("index.db")).unwrap();
        let roots = ix.set_roots(&[PathBuf::from("/srv/share")], 1).unwrap();
        let root = roots[0].id;
        (dir, ix, root)
    }

    #[test]
    fn a_new_version_replaces_the_current_one_and_keeps_the_old() {
        let (_d, ix, root) = index();
        let p = Path::new("/srv/share/a.txt");
        ix.insert_version(p, root, &file(1, 10), 100).unwrap();
        ix.insert_version(p, root, &file(2, 20), 200).unwrap();
        let history = ix.history(p).unwrap();
        assert_eq!(history.len(), 2);
        assert_eq!(history[0].replaced_at, Some(200));
        assert!(history[1].is_current());
        assert_eq!(ix.current(p).unwrap().unwrap().observed.size, 20);
    }

    #[test]
    fn removing_a_folder_marks_its_whole_subtree_but_not_its_neighbours() {
        let (_d, ix, root) = index();
        for p in [
            "/srv/share/d/x",
            "/srv/share/d/e/y",
            "/srv/share/d0",
            "/srv/share/dx/z",
        ] {
            ix.insert_version(Path::new(p), root, &file(1, 1), 1)
                .unwrap();
        }
        let gone = Gone {
            at: 5,
            approx: false,
            last_seen: None,
            removal: Removal::MovedOut,
        };
        let n = ix
            .mark_removed(Path::new("/srv/share/d"), true, &gone)
            .unwrap();
        assert_eq!(n, 2);
        assert!(ix.current(Path::new("/srv/share/d0")).unwrap().is_some());
        assert!(ix.current(Path::new("/srv/share/dx/z")).unwrap().is_some());
        let moved = ix.latest(Path::new("/srv/share/d/e/y")).unwrap().unwrap();
        assert_eq!(moved.removal, Some(Removal::MovedOut));
    }

    #[test]
    fn rename_moves_a_subtree_and_replaces_what_was_at_the_target() {
        let (_d, ix, root) = index();
        ix.insert_version(Path::new("/srv/share/old/f"), root, &file(1, 1), 1)
            .unwrap();
        ix.insert_version(Path::new("/srv/share/new/f"), root, &file(2, 2), 1)
            .unwrap();
        ix.rename(
            Path::new("/srv/share/old"),
            Path::new("/srv/share/new"),
            root,
            9,
        )
        .unwrap();
        assert!(ix.current(Path::new("/srv/share/old/f")).unwrap().is_none());
        let now = ix.current(Path::new("/srv/share/new/f")).unwrap().unwrap();
        assert_eq!(now.observed.size, 1);
        assert_eq!(ix.history(Path::new("/srv/share/new/f")).unwrap().len(), 2);
    }

    #[test]
    fn deletions_close_together_share_an_incident_across_calls() {
        let (_d, ix, root) = index();
        let delete = |p: &str, at: i64| {
            ix.insert_version(Path::new(p), root, &file(1, 10), 1)
                .unwrap();
            let gone = Gone {
                at,
                approx: false,
                last_seen: None,
                removal: Removal::Deleted,
            };
            ix.mark_removed(Path::new(p), false, &gone).unwrap();
        };
        let mut n = 0;
        let mut code = || {
            n += 1;
            format!("C{n}")
        };
        delete("/srv/share/photos/a/1.jpg", 100);
        delete("/srv/share/photos/b/2.jpg", 150);
        delete("/srv/share/docs/late.txt", 1000);
        let changed = ix.group_incidents(100, &mut code).unwrap();
        assert_eq!(changed.len(), 2, "a gap of 850 starts a new incident");
        // A later batch joins the incident that is still open.
        delete("/srv/share/docs/later.txt", 1050);
        assert_eq!(
            ix.group_incidents(100, &mut code).unwrap(),
            vec![changed[1]]
        );

        let first = ix.incident(changed[0]).unwrap().unwrap();
        assert_eq!((first.files, first.bytes, first.recoverable), (2, 20, 2));
        assert_eq!((first.first_at, first.last_at), (100, 150));
        assert_eq!(first.folder, PathBuf::from("/srv/share/photos"));
        let second = ix.incident(changed[1]).unwrap().unwrap();
        assert_eq!(
            (second.files, second.first_at, second.last_at),
            (2, 1000, 1050)
        );
        assert_eq!(second.folder, PathBuf::from("/srv/share/docs"));
    }

    #[test]
    fn raising_an_alert_already_open_writes_nothing_more_to_the_journal() {
        let (dir, ix, _) = journaled_index();
        let log = dir.path().join("journal").join("000001.log");
        assert!(ix.raise_alert("watch_limit", "the limit", 1).unwrap());
        let once = std::fs::metadata(&log).unwrap().len();
        for at in 2..50 {
            assert!(!ix.raise_alert("watch_limit", "the limit", at).unwrap());
        }
        assert_eq!(std::fs::metadata(&log).unwrap().len(), once);
    }

    #[test]
    fn an_incident_all_brought_back_is_over_and_its_alert_resolved() {
        let (_d, ix, root) = index();
        let gone = |at| Gone {
            at,
            approx: false,
            last_seen: None,
            removal: Removal::Deleted,
        };
        for (n, p) in ["/srv/share/photos/a.jpg", "/srv/share/photos/b.jpg"]
            .iter()
            .enumerate()
        {
            ix.insert_version(Path::new(p), root, &file(n as u8 + 1, 10), 1)
                .unwrap();
            ix.mark_removed(Path::new(p), false, &gone(100)).unwrap();
        }
        let id = ix.group_incidents(1000, &mut || "K7Q-4MD".into()).unwrap()[0];
        ix.raise_alert(&crate::incident::alert_kind("K7Q-4MD"), "m", 101)
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

    #[test]
    fn a_merged_incidents_code_still_finds_it() {
        let (_d, ix, root) = index();
        let gone = |at| Gone {
            at,
            approx: false,
            last_seen: None,
            removal: Removal::Deleted,
        };
        ix.insert_version(Path::new("/srv/share/p"), root, &dir_observed(), 1)
            .unwrap();
        for (p, at) in [
            ("/srv/share/p/a/1.jpg", 100),
            ("/srv/share/p/b/2.jpg", 10_000_000_000),
        ] {
            ix.insert_version(Path::new(p), root, &file(1, 10), 1)
                .unwrap();
            ix.mark_removed(Path::new(p), false, &gone(at)).unwrap();
        }
        let mut codes = ["AAA-AAA", "BBB-BBB"].into_iter().map(String::from);
        let gap = 60_000_000_000;
        assert_eq!(
            ix.group_incidents(gap, &mut || codes.next().unwrap())
                .unwrap()
                .len(),
            2
        );
        ix.raise_alert(&crate::incident::alert_kind("BBB-BBB"), "m", 1)
            .unwrap();
        // The rm -rf reached the folder holding both.
        ix.mark_removed(Path::new("/srv/share/p"), true, &gone(11_000_000_000))
            .unwrap();
        ix.group_incidents(gap, &mut || unreachable!()).unwrap();
        let listed = ix.incidents(10).unwrap();
        assert_eq!(listed.len(), 1, "{listed:#?}");
        assert_eq!((listed[0].code.as_str(), listed[0].files), ("AAA-AAA", 2));
        assert_eq!(listed[0].folder, PathBuf::from("/srv/share/p"));
        assert_eq!(
            ix.incident_by_code("BBB-BBB").unwrap().unwrap().code,
            "AAA-AAA"
        );
        // The alert told under the other code goes on under the one that stays.
        let open = ix.open_alerts().unwrap();
        assert_eq!(open[0].kind, crate::incident::alert_kind("AAA-AAA"));
    }

    #[test]
    fn an_empty_folder_deleted_with_its_neighbours_files_is_part_of_their_incident() {
        let (_d, ix, root) = index();
        // Recorded parent first, as a scan records them; all gone in one batch.
        for p in ["/srv/share/acc", "/srv/share/acc/empty"] {
            ix.insert_version(Path::new(p), root, &dir_observed(), 1)
                .unwrap();
        }
        ix.insert_version(Path::new("/srv/share/acc/q.xls"), root, &file(1, 5), 1)
            .unwrap();
        let gone = Gone {
            at: 100,
            approx: false,
            last_seen: None,
            removal: Removal::Deleted,
        };
        ix.mark_removed(Path::new("/srv/share/acc"), true, &gone)
            .unwrap();
        let id = ix.group_incidents(1000, &mut || "K7Q-4MD".into()).unwrap()[0];
        let listed = ix.incidents(10).unwrap();
        assert_eq!(listed.len(), 1, "{listed:#?}");
        assert_eq!(
            (listed[0].folder.as_path(), listed[0].files),
            (Path::new("/srv/share/acc"), 1)
        );
        // Taken after the files it was deleted with, so a restore of the incident
        // brings the empty folder back too.
        for p in ["/srv/share/acc/empty", "/srv/share/acc"] {
            let folder = ix.latest(Path::new(p)).unwrap().unwrap();
            assert_eq!(folder.incident_id, Some(id), "{p}");
        }
    }

    fn dir_observed() -> Observed {
        Observed {
            kind: EntryKind::Dir,
            object: None,
            ..file(0, 0)
        }
    }

    #[test]
    fn non_utf8_paths_round_trip() {
        let (_d, ix, root) = index();
        let p = path_from_bytes(b"/srv/share/caf\xe9\n.txt".to_vec());
        ix.insert_version(&p, root, &file(1, 1), 1).unwrap();
        assert_eq!(ix.current(&p).unwrap().unwrap().path, p);
    }
}
