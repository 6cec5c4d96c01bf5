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

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::ids::ObjectId;
use crate::model::{EntryKind, Gone, Incomplete, Observed, Person, Removal, Uncaptured};
use crate::words::JsonPath;

/// The record layout this version writes and reads.
pub const FORMAT: u32 = 1;
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

/// What a version records of a path, as the journal spells it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ObservedRecord {
    kind: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    object: Option<String>,
    size: u64,
    mtime_ns: i64,
    /// Absent in records written before the change time was recorded.
    #[serde(default, skip_serializing_if = "is_zero")]
    ctime_ns: i64,
    mode: u32,
    uid: u32,
    gid: u32,
    inode: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    link_target: Option<JsonPath>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    uncaptured: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    uncaptured_detail: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    incomplete: Option<String>,
    /// Signs of encryption (`signs::Signs`); absent in older records and when none.
    #[serde(default, skip_serializing_if = "is_zero_u8")]
    signs: u8,
}

impl From<&Observed> for ObservedRecord {
    fn from(o: &Observed) -> Self {
        Self {
            kind: o.kind.code(),
            object: o.object.map(|id| id.to_hex()),
            size: o.size,
            mtime_ns: o.mtime_ns,
            ctime_ns: o.ctime_ns,
            mode: o.mode,
            uid: o.uid,
            gid: o.gid,
            inode: o.inode,
            link_target: o.link_target.as_deref().map(JsonPath::from),
            uncaptured: o.uncaptured.as_ref().map(|u| u.code().to_owned()),
            uncaptured_detail: o.uncaptured.as_ref().and_then(Uncaptured::detail),
            incomplete: o.incomplete.map(|i| i.code().to_owned()),
            signs: o.signs.bits(),
        }
    }
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

fn is_zero_u8(n: &u8) -> bool {
    *n == 0
}

impl ObservedRecord {
    pub fn to_observed(&self) -> std::result::Result<Observed, String> {
        let object = match &self.object {
            Some(hex) => Some(
                hex.parse::<ObjectId>()
                    .map_err(|e| format!("an object name is not valid: {e}"))?,
            ),
            None => None,
        };
        Ok(Observed {
            kind: EntryKind::from_code(self.kind),
            object,
            size: self.size,
            mtime_ns: self.mtime_ns,
            ctime_ns: self.ctime_ns,
            mode: self.mode,
            uid: self.uid,
            gid: self.gid,
            inode: self.inode,
            link_target: self.link_target.clone().map(JsonPath::into_path),
            uncaptured: self
                .uncaptured
                .as_deref()
                .map(|code| Uncaptured::from_columns(code, self.uncaptured_detail.clone())),
            incomplete: self.incomplete.as_deref().and_then(Incomplete::from_code),
            signs: crate::signs::Signs::from_bits(self.signs),
        })
    }
}

/// One change to the index: the name of the index method and its arguments.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Record {
    /// The first record of a journal. `versions_before` counts the versions the
    /// index already held then (a vault made before journals existed): those
    /// cannot be rebuilt from it.
    Start {
        format: u32,
        at: i64,
        versions_before: u64,
    },
    /// `Index::set_roots`.
    Roots { paths: Vec<JsonPath>, at: i64 },
    /// `Index::insert_version`; the protected folder by path, as ids may differ.
    Insert {
        path: JsonPath,
        root: JsonPath,
        observed: ObservedRecord,
        at: i64,
        /// Who made it, where the event source said (absent in older records).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<Person>,
    },
    /// `Index::update_metadata` of the current version of `path`.
    Metadata {
        path: JsonPath,
        observed: ObservedRecord,
    },
    /// `Index::mark_removed`.
    Removed {
        path: JsonPath,
        subtree: bool,
        at: i64,
        approx: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        last_seen: Option<i64>,
        moved_out: bool,
        /// Who removed it, where the event source said (absent in older records).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<Person>,
    },
    /// `Index::record_lost`.
    Lost {
        path: JsonPath,
        root: JsonPath,
        kind: i64,
        at: i64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<Person>,
    },
    /// `Index::rename`.
    Rename {
        from: JsonPath,
        to: JsonPath,
        root: JsonPath,
        at: i64,
    },
    /// `Index::mark_incomplete` of the current version of `path`.
    Incomplete { path: JsonPath, why: String },
    /// `Index::exchange`.
    Exchange {
        a: JsonPath,
        a_root: JsonPath,
        b: JsonPath,
        b_root: JsonPath,
        at: i64,
    },
    /// `Index::group_incidents` that grouped something, with the codes it drew, so
    /// the rebuilt incidents keep the codes people were told, and the rules it
    /// grouped by (`grouping::Rules`; records from before have none: the first).
    Incidents {
        gap_ns: i64,
        codes: Vec<String>,
        #[serde(default = "first_rules")]
        rules: u32,
    },
    /// `Index::group_overwrites` that decided something, with its rules and the
    /// codes it drew.
    Overwrites {
        files: u64,
        window_ns: i64,
        gap_ns: i64,
        codes: Vec<String>,
    },
    /// `Index::end_incident`, by incident code.
    Ended { code: String, at: i64 },
    /// `Index::mark_end_told`, by incident code.
    EndTold { code: String, at: i64 },
    /// `Index::mark_restored`: deleted versions a restore brought back, each by path
    /// and the moment it was deleted, with the restore's report.
    Restored {
        files: Vec<(JsonPath, i64)>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        report: Option<JsonPath>,
        at: i64,
    },
    /// `Index::mark_restored_as_before`: files of an overwrite incident a restore
    /// brought back as they were before it, each by path, with the restore's report.
    RestoredAsBefore {
        code: String,
        files: Vec<JsonPath>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        report: Option<JsonPath>,
        at: i64,
    },
    /// `Index::acknowledge_alert`: the alert by kind and the moment it was raised.
    Acknowledged {
        kind: String,
        raised_at: i64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        note: Option<String>,
        at: i64,
    },
    /// `Index::mark_incident_alerted`, by incident code.
    Alerted {
        code: String,
        at: i64,
        #[serde(default)]
        tells_end: bool,
    },
    /// `Index::raise_alert`.
    Alert {
        kind: String,
        message: String,
        at: i64,
    },
    /// `Index::clear_alert`.
    AlertCleared { kind: String, at: i64 },
    /// `Index::mark_purged`: older versions whose copies retention removed, each by
    /// path, object and the moment it stopped being current (ids may differ in a
    /// rebuilt index; the moment tells apart two versions with the same content).
    Purged {
        versions: Vec<(JsonPath, String, i64)>,
        at: i64,
    },
    /// `Index::record_hashed`: the staged copy (by its provisional name) holds the
    /// content `id`, `size` bytes.
    Hashed {
        staged: String,
        id: String,
        size: u64,
    },
}

/// The rules of incident records written before they named theirs.
fn first_rules() -> u32 {
    crate::grouping::Rules::ByTime.number()
}

impl Record {
    pub fn removed(path: &Path, subtree: bool, gone: &Gone) -> Self {
        Self::Removed {
            path: path.into(),
            subtree,
            at: gone.at,
            approx: gone.approx,
            last_seen: gone.last_seen,
            moved_out: gone.removal == Removal::MovedOut,
            by: gone.by.as_deref().cloned(),
        }
    }

    /// When the change happened, for records that say.
    pub fn at(&self) -> Option<i64> {
        match self {
            Self::Start { at, .. }
            | Self::Roots { at, .. }
            | Self::Insert { at, .. }
            | Self::Removed { at, .. }
            | Self::Lost { at, .. }
            | Self::Rename { at, .. }
            | Self::Exchange { at, .. }
            | Self::Alerted { at, .. }
            | Self::Alert { at, .. }
            | Self::AlertCleared { at, .. }
            | Self::Ended { at, .. }
            | Self::EndTold { at, .. }
            | Self::Restored { at, .. }
            | Self::RestoredAsBefore { at, .. }
            | Self::Acknowledged { at, .. }
            | Self::Purged { at, .. } => Some(*at),
            Self::Metadata { .. }
            | Self::Incidents { .. }
            | Self::Overwrites { .. }
            | Self::Incomplete { .. }
            | Self::Hashed { .. } => None,
        }
    }
}

/// The one line a record is written as, newline included.
fn encode(record: &Record) -> Vec<u8> {
    let json = serde_json::to_vec(record).expect("records always serialize");
    let mut line = checksum(&json).into_bytes();
    line.push(b' ');
    line.extend_from_slice(&json);
    line.push(b'\n');
    line
}

fn checksum(json: &[u8]) -> String {
    blake3::hash(json).to_hex()[..16].to_owned()
}

/// Why a line could not be read as a record (without its newline).
fn decode(line: &[u8]) -> std::result::Result<Record, String> {
    let (sum, json) = line
        .split_at_checked(16)
        .and_then(|(sum, rest)| Some((sum, rest.strip_prefix(b" ")?)))
        .ok_or("too short to be a record")?;
    if sum != checksum(json).as_bytes() {
        return Err("its checksum does not match (damaged or cut short)".into());
    }
    serde_json::from_slice(json).map_err(|e| format!("not a record this version knows ({e})"))
}

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

/// One line of the journal as read back: where it is, and its record, or why it
/// cannot be read (the line is then skipped, never fatal).
#[derive(Debug)]
pub struct Line {
    pub file: PathBuf,
    /// Counted from 1.
    pub number: u64,
    pub record: std::result::Result<Record, String>,
}

/// Reads the journal in `dir` back, file by file in the order written. A last line
/// cut short by a crash ends its file, said as such; a line whose checksum fails is
/// said and passed over.
pub fn read(dir: &Path) -> Result<Reader> {
    Ok(Reader {
        files: files(dir)?.into_iter(),
        open: None,
        buf: Vec::new(),
    })
}

/// The lines of a journal, as `read` gives them.
pub struct Reader {
    files: std::vec::IntoIter<PathBuf>,
    /// The file being read, and the number of its last line.
    open: Option<(PathBuf, BufReader<File>, u64)>,
    buf: Vec<u8>,
}

impl Iterator for Reader {
    type Item = Result<Line>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let Some((path, reader, number)) = &mut self.open else {
                let path = self.files.next()?;
                match File::open(&path) {
                    Ok(file) => self.open = Some((path, BufReader::new(file), 0)),
                    Err(e) => return Some(Err(JournalError::io("open", &path, e))),
                }
                continue;
            };
            self.buf.clear();
            let n = match reader.read_until(b'\n', &mut self.buf) {
                Ok(n) => n,
                Err(e) => return Some(Err(JournalError::io("read", path, e))),
            };
            if n == 0 {
                self.open = None;
                continue;
            }
            *number += 1;
            let line = |record| Line {
                file: path.clone(),
                number: *number,
                record,
            };
            let Some(text) = self.buf.strip_suffix(b"\n") else {
                let cut = line(Err(
                    "the last record was cut short, most likely by a crash".into()
                ));
                self.open = None;
                return Some(Ok(cut));
            };
            if text.is_empty() {
                continue;
            }
            return Some(Ok(line(decode(text))));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::ffi::OsStrExt;

    #[test]
    fn a_record_round_trips_with_a_non_utf8_path() {
        let record = Record::Lost {
            path: Path::new(std::ffi::OsStr::from_bytes(b"/s/caf\xe9\n")).into(),
            root: Path::new("/s").into(),
            kind: 0,
            at: 5,
            by: None,
        };
        let line = encode(&record);
        let text = std::str::from_utf8(&line).unwrap();
        assert!(text.contains(r#""hex":"2f732f636166e90a""#), "{text}");
        match decode(&line[..line.len() - 1]).unwrap() {
            Record::Lost { path, .. } => {
                assert_eq!(path.as_path().as_os_str().as_bytes(), b"/s/caf\xe9\n")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_changed_byte_is_caught_by_the_checksum() {
        let mut line = encode(&Record::AlertCleared {
            kind: "vault_full".into(),
            at: 1,
        });
        let n = line.len();
        line[n - 5] ^= 1;
        assert!(decode(&line[..n - 1]).is_err());
    }
}
