//! Changes to the record that a command asks for, rather than the daemon finding
//! them: the deleted files a restore brought back, an alert acknowledged.
//!
//! The journal has one writer at a time. So such a change is made by the daemon
//! when it runs (asked over its control socket, and answered once committed),
//! and otherwise by the command itself, holding the daemon's lock so that none
//! starts meanwhile. Either way `apply` makes it, through the index, which
//! writes it to the journal before it commits. A restore asks only once the
//! files it wrote are flushed to disk, so a file marked as brought back is on
//! disk, whichever of the two processes is killed, and when.
//!
//! A restore that brought back a copy not hashed yet (see `vault::staged`) hashed
//! it on the way out, and tells its hash the same way (`Amendment::Hashed`); the
//! daemon's own hasher records its results through `record_hashed` too.
//!
//! It never decides what was brought back: the restore's report says.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::control::{self, ControlError};
use crate::ids::ObjectId;
use crate::index::{Index, IndexError};
use crate::vault::{LockError, Vault};
use crate::words::JsonPath;

/// How long a command waits for the daemon to commit an amendment: it may be busy
/// recording the files the restore just wrote.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(120);

/// How many files one amendment marks at most: a restore of 100,000 files is told
/// in parts, none of them a line of many megabytes.
const FILES_AT_ONCE: usize = 5000;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "change", rename_all = "snake_case")]
pub enum Amendment {
    /// A restore brought these deleted versions back (path, and when it was
    /// deleted), as its report says.
    Restored {
        files: Vec<(JsonPath, i64)>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        report: Option<JsonPath>,
    },
    /// A restore of overwrite incident `incident` brought these files back to their
    /// place as they were before it, as its report says.
    RestoredAsBefore {
        incident: String,
        files: Vec<JsonPath>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        report: Option<JsonPath>,
    },
    /// Someone says the open alert of `kind` raised at `raised_at` needs nothing
    /// done (the deletion was wanted).
    Acknowledge {
        kind: crate::model::AlertKind,
        raised_at: i64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        note: Option<String>,
    },
    /// A restore read these staged copies whole, found each as it was made, and
    /// hashed it: provisional name, content hash, size.
    Hashed { copies: Vec<(String, String, u64)> },
}

/// What became of a staged copy whose hash was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashedOutcome {
    /// The index points at the content's real name now; the staged name can go
    /// once that is committed.
    Recorded,
    /// No version points at the staged copy any more (purged, or recorded
    /// before): the staged name can go.
    Unknown,
}

/// Records that the staged copy `staged` holds `id` (`size` bytes): gives it its
/// real name in the vault (`Vault::adopt`), then points the index at that, in the
/// caller's transaction. The staged name is the caller's to remove once committed.
/// The inner error says, in words, why the copy could not be named (changed
/// since it was made, say): the index then still points at the staged copy.
pub fn record_hashed(
    vault: &Vault,
    index: &Index,
    staged: &ObjectId,
    id: &ObjectId,
    size: u64,
) -> Result<Result<HashedOutcome, String>, IndexError> {
    if !index.has_object(staged)? {
        return Ok(Ok(HashedOutcome::Unknown));
    }
    if let Err(e) = vault.adopt(staged, id) {
        return Ok(Err(e.to_string()));
    }
    Ok(Ok(if index.record_hashed(staged, id, size)? {
        HashedOutcome::Recorded
    } else {
        HashedOutcome::Unknown
    }))
}

/// The copies of an `Amendment::Hashed` that name valid objects.
pub fn hashed_copies(copies: &[(String, String, u64)]) -> Vec<(ObjectId, ObjectId, u64)> {
    copies
        .iter()
        .filter_map(|(staged, id, size)| {
            let staged = staged
                .parse::<ObjectId>()
                .ok()
                .filter(ObjectId::is_staged)?;
            let id = id.parse::<ObjectId>().ok().filter(|id| !id.is_staged())?;
            Some((staged, id, *size))
        })
        .collect()
}

impl Amendment {
    /// The amendments that mark `files` as brought back by the restore whose report
    /// is `report`: one per part.
    pub fn restored(files: &[(PathBuf, i64)], report: Option<&Path>) -> Vec<Self> {
        files
            .chunks(FILES_AT_ONCE)
            .map(|part| Self::Restored {
                files: part
                    .iter()
                    .map(|(path, at)| (path.as_path().into(), *at))
                    .collect(),
                report: report.map(JsonPath::from),
            })
            .collect()
    }

    /// The amendments that mark `files` as brought back as they were before
    /// overwrite incident `code`, by the restore whose report is `report`.
    pub fn restored_as_before(code: &str, files: &[PathBuf], report: Option<&Path>) -> Vec<Self> {
        files
            .chunks(FILES_AT_ONCE)
            .map(|part| Self::RestoredAsBefore {
                incident: code.to_owned(),
                files: part.iter().map(|p| p.as_path().into()).collect(),
                report: report.map(JsonPath::from),
            })
            .collect()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AmendError {
    #[error("the undelete service did not take the change: {0}")]
    Daemon(ControlError),
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Index(#[from] IndexError),
    #[error("cannot lock the vault: {0}")]
    Lock(String),
}

/// Makes the change in the index (and so in the journal), by whoever may write it
/// now. Returns the answer in words ("3 files", for a restore).
pub fn make(vault: &Vault, amendment: &Amendment) -> Result<String, AmendError> {
    let line = format!(
        "{} {}",
        control::AMEND,
        serde_json::to_string(amendment).expect("an amendment always serializes")
    );
    match control::request(&vault.socket_path(), &line, ANSWER_TIMEOUT) {
        Ok(answer) => return Ok(answer),
        Err(ControlError::NotRunning { .. }) => {}
        Err(ControlError::Failed(why)) => return Err(AmendError::Refused(why)),
        Err(e) => return Err(AmendError::Daemon(e)),
    }
    let _lock = match vault.lock() {
        Ok(lock) => lock,
        // A daemon started meanwhile: it is the writer now.
        Err(LockError::Taken { .. }) => {
            return control::request(&vault.socket_path(), &line, ANSWER_TIMEOUT).map_err(
                |e| match e {
                    ControlError::Failed(why) => AmendError::Refused(why),
                    other => AmendError::Daemon(other),
                },
            );
        }
        Err(e) => return Err(AmendError::Lock(e.to_string())),
    };
    let index = Index::open_journaled(&vault.index_path(), &vault.journal_dir())?;
    let now = crate::clock::now();
    if let Amendment::Hashed { copies } = amendment {
        let copies = hashed_copies(copies);
        let done = index.batch(|ix| {
            let mut done = Vec::new();
            for (staged, id, size) in &copies {
                if record_hashed(vault, ix, staged, id, *size)?.is_ok() {
                    done.push(*staged);
                }
            }
            Ok::<_, IndexError>(done)
        })?;
        // Committed: the staged names are no longer pointed at.
        for staged in &done {
            let _ = vault.remove_object(staged);
        }
        return Ok(crate::words::count(done.len() as u64));
    }
    let answer = index.batch(|ix| apply(ix, amendment, now))?;
    answer.map_err(AmendError::Refused)
}

/// Applies an amendment in the caller's transaction. The inner error is a change
/// that does not fit what the index holds (an alert already closed), in words.
pub fn apply(
    index: &Index,
    amendment: &Amendment,
    now: i64,
) -> Result<Result<String, String>, IndexError> {
    match amendment {
        Amendment::Restored { files, report } => {
            let files: Vec<(PathBuf, i64)> = files
                .iter()
                .map(|(path, at)| (path.clone().into_path(), *at))
                .collect();
            let marked = index.mark_restored(&files, report.as_ref().map(|r| r.as_path()), now)?;
            Ok(Ok(crate::words::files(marked as u64)))
        }
        Amendment::RestoredAsBefore {
            incident,
            files,
            report,
        } => {
            let files: Vec<PathBuf> = files.iter().map(|p| p.clone().into_path()).collect();
            let marked = index.mark_restored_as_before(
                incident,
                &files,
                report.as_ref().map(|r| r.as_path()),
                now,
            )?;
            Ok(Ok(crate::words::files(marked as u64)))
        }
        Amendment::Acknowledge {
            kind,
            raised_at,
            note,
        } => {
            if index.acknowledge_alert(kind, *raised_at, note.as_deref(), now)? {
                Ok(Ok("acknowledged".to_owned()))
            } else {
                Ok(Err("that alert is no longer open".to_owned()))
            }
        }
        // It names files in the vault, so it is made by `make` or by the daemon,
        // which hold the vault too.
        Amendment::Hashed { .. } => Ok(Err(
            "copies hashed by a restore are recorded by whoever holds the vault".to_owned(),
        )),
    }
}
