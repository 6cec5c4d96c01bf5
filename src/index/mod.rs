//! The SQLite index: every version of every protected path, deletions,
//! files seen but not captured (with the reason), protected folders and alerts.
//!
//! Paths are stored as bytes, because Linux names are bytes, not UTF-8. A
//! path's *current* version is the row that is neither replaced nor deleted.
//! Times are nanoseconds since the Unix epoch.
//!
//! The index never touches the vault: it records object ids, it does not
//! read or write objects.

mod alerts;
mod grouping;
mod incidents;
mod meta;
mod objects;
mod overwrites;
mod people;
mod roots;
mod schema;
mod selection;
mod totals;
mod versions;
mod views;

pub use meta::MetaKey;

pub use overwrites::OverwriteRules;
use schema::{MIGRATIONS, check_file};
pub use views::ViewRows;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::Connection;

use crate::journal::{Journal, JournalError, Record};

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

pub struct Index {
    conn: Connection,
    /// The daemon's: every change is recorded there before it is committed.
    journal: Option<RefCell<Journal>>,
    /// Above 0 while a journaled method runs: what it calls is part of its record.
    recording: Cell<u32>,
    /// Where the journal's waiting records stood when the batch began (see `rollback`).
    journal_mark: Cell<usize>,
    /// The ids of people met so far, by their stored form (see `people`).
    people: RefCell<HashMap<String, i64>>,
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
        let index = Self::over(conn);
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
        let open_err = Self::existing_for_reading(path)?;
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
        Self::reader(conn, path)
    }

    /// Opens the index to read it beside a daemon that writes it (the mount): never
    /// written, never created, and never taken for unchanging, since the daemon may
    /// start and write at any time.
    pub fn open_for_reading(path: &Path) -> Result<Self> {
        use rusqlite::OpenFlags;
        let open_err = Self::existing_for_reading(path)?;
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags).map_err(open_err)?;
        conn.busy_timeout(Duration::from_secs(30))
            .map_err(open_err)?;
        conn.set_db_config(
            rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
            true,
        )
        .map_err(open_err)?;
        Self::reader(conn, path)
    }

    /// Checks that the index file is there to be read, and gives what says why it
    /// then could not be opened.
    fn existing_for_reading(
        path: &Path,
    ) -> Result<impl Fn(rusqlite::Error) -> IndexError + Copy + '_> {
        check_file(path)?;
        if is_missing(path) {
            return Err(missing(path));
        }
        Ok(move |source| IndexError::Open {
            path: path.to_owned(),
            source,
        })
    }

    /// The index over `conn`, without a journal until one is given.
    fn over(conn: Connection) -> Self {
        Self {
            conn,
            journal: None,
            recording: Cell::new(0),
            journal_mark: Cell::new(0),
            people: RefCell::default(),
        }
    }

    /// An index that only reads through `conn`: one whose schema is older than this
    /// program's cannot be brought up to date here.
    fn reader(conn: Connection, path: &Path) -> Result<Self> {
        let index = Self::over(conn);
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

    pub fn version_count(&self) -> Result<u64> {
        Ok(self
            .conn
            .query_row("SELECT COUNT(*) FROM versions", [], |r| r.get::<_, i64>(0))?
            as u64)
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
        // Rows made in the batch are gone, and their ids may be given again.
        self.people.borrow_mut().clear();
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

    /// Sized for a process that keeps the index open and writes to it all day: the
    /// daemon's lookups and inserts land all over the path and object indexes. With
    /// SQLite's default 2 MB of cache, a big restore read 33,000 pages back from the
    /// file, and checkpointing after every 1,000 pages of log wrote each index page
    /// again after nearly every commit: 32 MB of cache, and 32 MB of log between
    /// checkpoints. Not for the commands, which read little and would only hold more.
    /// A statement's undo pages (its statement journal) stay in memory too: spilled
    /// to a temporary file, each of the daemon's big inserts wrote pages to a file
    /// in /var/tmp, and where that is on a watched filesystem every write was an
    /// event to read and drop.
    pub fn keep_busy_pages_in_memory(&self) -> Result<()> {
        self.conn.pragma_update(None, "cache_size", -32768)?;
        self.conn.pragma_update(None, "wal_autocheckpoint", 8192)?;
        self.conn.pragma_update(None, "temp_store", "MEMORY")?;
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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::ids::ObjectId;
    use crate::model::{EntryKind, Observed};

    /// A file seen deleted at `at`, at once, for tests here and in `retention`.
    pub(crate) fn deleted_at(at: i64) -> crate::model::Gone {
        crate::model::Gone {
            at,
            approx: false,
            last_seen: None,
            removal: crate::model::Removal::Deleted,
            by: None,
        }
    }

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
            signs: crate::signs::Signs::NONE,
        }
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

    pub(crate) fn index() -> (tempfile::TempDir, Index, i64) {
        let dir = tempfile::tempdir().unwrap();
        let ix = Index::open(&dir.path().join("index.db")).unwrap();
        let roots = ix.set_roots(&[PathBuf::from("/srv/share")], 1).unwrap();
        let root = roots[0].id;
        (dir, ix, root)
    }

    #[test]
    fn a_snapshot_sees_one_moment_while_another_process_writes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.db");
        let reader = Index::open(&path).unwrap();
        let daemon = Index::open(&path).unwrap();
        daemon
            .raise_alert(&crate::model::AlertKind::Settings, "a mistake", 1)
            .unwrap();
        daemon.set_meta(MetaKey::SettingsReadAt, "1").unwrap();
        let (alerts, read_at) = reader
            .snapshot(|ix| {
                let alerts = ix.open_alerts()?.len();
                // The daemon mends its settings between the two reads.
                daemon
                    .clear_alert(&crate::model::AlertKind::Settings, 2)
                    .unwrap();
                daemon.set_meta(MetaKey::SettingsReadAt, "2").unwrap();
                Ok((alerts, ix.meta(MetaKey::SettingsReadAt)?))
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

        // What a rebuild would replay: the only version inserted is not there.
        let inserts = crate::journal::read(&journal)
            .unwrap()
            .filter(|line| matches!(line.as_ref().unwrap().record, Ok(Record::Insert { .. })))
            .count();
        assert_eq!(
            inserts, 0,
            "a version the index never kept is in the journal"
        );
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
}
