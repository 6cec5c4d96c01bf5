//! The journal: an append-only record, kept in the vault, of every change the
//! daemon makes to the index. It is written and flushed to disk before the
//! index commits the change, so whatever the index holds, the journal holds
//! too. When the index is lost or damaged, `rebuild` reads it back (`read`) and
//! replays it through the very same index methods, so the rebuilt index is the
//! one the daemon would have made.
//!
//! The journal lives in `journal/` in the vault, as numbered files
//! (`000001.log`, …) read in order. Each record is one line: the first 16 hex
//! digits of the BLAKE3 hash of its JSON, a space, the JSON. A line cut short
//! by a crash, or whose hash does not match, is read back as such, never
//! fatal. Paths are JSON strings when they are UTF-8, `{"hex": …}` otherwise.
//!
//! A leaf: it knows the records and their lines, never the index that writes
//! them nor the vault's objects.
//!
//! `record` holds the records and their lines; `read` reads them back; this
//! file writes them (`Journal`) and finds the journal's files.

mod read;
mod record;

pub use read::read;
pub use record::{FORMAT, Record};

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use record::encode;

/// The name of the first journal file; later ones count up (for a future compaction).
const FIRST_FILE: &str = "000001.log";

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("cannot {doing} the journal {path}: {source}")]
    Io {
        doing: &'static str,
        path: PathBuf,
        source: io::Error,
    },
}

impl JournalError {
    fn io(doing: &'static str, path: &Path, source: io::Error) -> Self {
        Self::Io {
            doing,
            path: path.to_owned(),
            source,
        }
    }
}

type Result<T> = std::result::Result<T, JournalError>;

/// The journal, open for appending. Records wait in memory until `sync`, which the
/// index calls right before it commits.
pub struct Journal {
    dir: PathBuf,
    path: PathBuf,
    file: File,
    pending: Vec<u8>,
    /// Whether the folder entry of a new journal file still needs flushing.
    new_file: bool,
    has_records: bool,
    /// The file's length, and how far beyond it space is set aside (see `reserve`).
    len: u64,
    reserved_to: u64,
}

/// Disk space kept allocated ahead of the journal's end, so the records of a batch
/// that copied nothing still fit on a vault disk another program has just filled.
/// 256 KiB is about 800 records.
const RESERVE: u64 = 256 * 1024;

impl Journal {
    /// Opens the journal in `dir` (created 0700) for appending. `versions_before`
    /// goes into the start record of a new journal.
    pub fn open(dir: &Path, versions_before: impl FnOnce() -> u64) -> Result<Self> {
        fs::DirBuilder::new()
            .mode(0o700)
            .recursive(true)
            .create(dir)
            .map_err(|e| JournalError::io("create the folder of", dir, e))?;
        let path = files(dir)?.pop().unwrap_or_else(|| dir.join(FIRST_FILE));
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| JournalError::io("open", &path, e))?;
        let len = file
            .metadata()
            .map_err(|e| JournalError::io("inspect", &path, e))?
            .len();
        // A record cut short by a crash: a newline keeps it apart from the next record,
        // and the reader skips it. Never cut off: it is evidence.
        let torn = len > 0 && !ends_with_newline(&mut file, len);
        let mut journal = Self {
            dir: dir.to_owned(),
            path,
            file,
            pending: if torn { vec![b'\n'] } else { Vec::new() },
            new_file: len == 0,
            has_records: len > 0 || has_records(dir),
            len,
            reserved_to: len,
        };
        journal.reserve();
        if !journal.has_records {
            journal.append(&Record::Start {
                format: FORMAT,
                at: crate::clock::now(),
                versions_before: versions_before(),
            });
        }
        Ok(journal)
    }

    /// Adds a record; it reaches the disk at the next `sync`.
    pub fn append(&mut self, record: &Record) {
        self.pending.extend_from_slice(&encode(record));
        self.has_records = true;
    }

    /// How many bytes wait for `sync`: a mark to `discard_since` if what follows is
    /// rolled back.
    pub fn mark(&self) -> usize {
        self.pending.len()
    }

    /// Forgets the records added since `mark`: their transaction was rolled back, and
    /// replaying them would rebuild changes that never happened (a purge among them).
    pub fn discard_since(&mut self, mark: usize) {
        self.pending.truncate(mark);
    }

    /// Writes the waiting records and makes them durable.
    pub fn sync(&mut self) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        if let Err(e) = self
            .file
            .write_all(&self.pending)
            .and_then(|()| self.file.sync_data())
        {
            // Nothing half-written may stay: the next record would be glued to it.
            self.truncate_to(self.len);
            return Err(JournalError::io("write", &self.path, e));
        }
        self.len += self.pending.len() as u64;
        self.pending.clear();
        self.reserve();
        if self.new_file {
            File::open(&self.dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| JournalError::io("flush the folder of", &self.dir, e))?;
            self.new_file = false;
        }
        Ok(())
    }

    /// The journal's length on disk, to `truncate_to` if what was synced after it
    /// turns out not to have happened (the index's commit failed).
    pub fn synced_len(&self) -> u64 {
        self.len
    }

    /// Cuts the file back to `len`. Best effort: the reader skips a torn last record.
    pub fn truncate_to(&mut self, len: u64) {
        if self
            .file
            .set_len(len)
            .and_then(|()| self.file.sync_data())
            .is_ok()
        {
            self.len = len;
            // Truncating also gave back the space set aside past the end.
            self.reserved_to = len;
            self.reserve();
        }
    }

    /// Sets space aside past the end of the file (allocated, but not part of the file
    /// yet), once less than half the reserve is left. Writes into it need no free
    /// space. Best effort: on a full disk, or a filesystem without `fallocate`, the
    /// journal goes on with what it has.
    fn reserve(&mut self) {
        if self.reserved_to >= self.len + RESERVE / 2 {
            return;
        }
        match rustix::fs::fallocate(
            &self.file,
            rustix::fs::FallocateFlags::KEEP_SIZE,
            self.len,
            RESERVE,
        ) {
            Ok(()) => self.reserved_to = self.len + RESERVE,
            Err(e) => tracing::debug!("cannot set space aside for the journal: {e}"),
        }
    }
}

fn ends_with_newline(file: &mut File, len: u64) -> bool {
    let mut last = [0u8];
    file.seek(SeekFrom::Start(len - 1))
        .and_then(|_| file.read_exact(&mut last))
        .is_ok_and(|()| last[0] == b'\n')
}

/// The journal files in `dir`, in the order they were written.
fn files(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(JournalError::io("list", dir, e)),
    };
    let mut out: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    out.sort();
    Ok(out)
}

/// Whether the journal in `dir` holds anything (without opening it for writing).
pub fn has_records(dir: &Path) -> bool {
    files(dir)
        .unwrap_or_default()
        .iter()
        .any(|p| fs::metadata(p).is_ok_and(|m| m.len() > 0))
}
