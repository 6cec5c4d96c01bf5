//! Bringing files back: first a plan (what is selected, where each file goes,
//! what is already there, what is lost and why), then its execution.
//!
//! Planning writes nothing, so the plan can be shown and confirmed. Execution
//! never overwrites: identical content already in place counts as present,
//! different content gets the restored file beside it under a clear new name.
//! Files are written under a temporary name and renamed, every byte read from
//! the vault is hash-checked, and no symlink on the destination path is ever
//! followed. Running the same restore again restores nothing twice.
//!
//! It decides nothing the plan does not show.

mod aside;
mod copy;
mod execute;
mod lock;
mod plan;
mod safe_fs;
mod staging;

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use rustix::fs::{Mode, OFlags};

use crate::clock;
use crate::ids::ObjectId;
use crate::index::IndexError;
use crate::model::{EntryKind, Version};
use crate::report::{EncryptedOutcome, EncryptedResult, FileResult, LossReason, Outcome};
use crate::vault::Vault;
use crate::words::display_path;

pub use aside::set_aside;
pub use execute::execute;
pub use lock::{RestoreLock, lock};
pub use plan::plan;
use safe_fs::DirCache;
pub use safe_fs::{PathProblem, write_replacing};

/// Where restored files go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// Back where they were.
    Original,
    /// Under this folder, at their path relative to the protected folder they came from.
    Under(PathBuf),
}

/// What the plan will do with one selected version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Write it at its place.
    Restore,
    /// Something different has its name: write it beside, under this name.
    Beside(OsString),
    /// The same content is already there (at `at`).
    AlreadyPresent { at: PathBuf },
    /// It cannot come back, and why.
    Lost(LossReason),
    /// A lock file of a program, left out on purpose (see `names::is_program_lock`).
    LeftOut,
    /// A folder: created if missing, its metadata restored if this restore created it
    /// (decided when restoring, not when planning: the plan may be minutes old).
    Folder,
}

#[derive(Debug, Clone)]
pub struct PlanItem {
    pub version: Version,
    /// The destination folder this item is written under.
    pub base: PathBuf,
    /// Its path below `base`.
    pub relative: PathBuf,
    pub action: Action,
}

impl PlanItem {
    /// Where it will be (or is) in the end.
    pub fn target(&self) -> PathBuf {
        match &self.action {
            Action::Beside(name) => self.base.join(self.relative.with_file_name(name)),
            Action::AlreadyPresent { at } => at.clone(),
            _ => self.base.join(&self.relative),
        }
    }

    pub fn is_folder(&self) -> bool {
        matches!(self.action, Action::Folder)
    }
}

/// What the plan will do with one encrypted copy an overwrite incident left.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EncryptedAction {
    Leave,
    /// Move it to this path below its protected folder.
    MoveTo(PathBuf),
    Delete,
}

/// An encrypted copy an overwrite incident left, and what the restore does with it.
#[derive(Debug, Clone)]
pub struct EncryptedItem {
    /// Its current version: what must still be on disk for it to be moved or deleted.
    pub version: Version,
    /// Its protected folder.
    pub base: PathBuf,
    /// Its path below `base`.
    pub relative: PathBuf,
    pub action: EncryptedAction,
}

/// Everything a restore will do, before it does it.
#[derive(Debug, Clone)]
pub struct RestorePlan {
    pub items: Vec<PlanItem>,
    pub destination: Destination,
    pub as_of: Option<i64>,
    /// For an overwrite incident: the moment it began, as of which files come back.
    pub as_before: Option<i64>,
    /// For an overwrite incident: its encrypted copies, moved or deleted before the
    /// files come back (so an original may take its own name again), or left.
    pub encrypted: Vec<EncryptedItem>,
}

/// Totals of a plan, by what will happen.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlanTotals {
    pub files: u64,
    pub to_restore: u64,
    pub bytes_to_restore: u64,
    pub beside: u64,
    pub already_present: u64,
    pub lost: u64,
    /// Lock files of programs left out on purpose; not among `files`.
    pub left_out: u64,
}

impl RestorePlan {
    /// The files (not folders) of the plan.
    pub fn files(&self) -> impl Iterator<Item = &PlanItem> {
        self.items.iter().filter(|i| !i.is_folder())
    }

    pub fn totals(&self) -> PlanTotals {
        let mut t = PlanTotals::default();
        for item in self.files() {
            t.files += !matches!(item.action, Action::LeftOut) as u64;
            match &item.action {
                Action::Restore | Action::Beside(_) => {
                    t.to_restore += 1;
                    t.bytes_to_restore += item.version.observed.size;
                    t.beside += matches!(item.action, Action::Beside(_)) as u64;
                }
                Action::AlreadyPresent { .. } => t.already_present += 1,
                Action::Lost(_) => t.lost += 1,
                Action::LeftOut => t.left_out += 1,
                Action::Folder => {}
            }
        }
        t
    }

    /// What would become of the encrypted copies, for a dry run's report.
    pub fn encrypted_as_results(&self) -> Vec<EncryptedResult> {
        self.encrypted
            .iter()
            .map(|e| EncryptedResult {
                path: e.version.path.clone(),
                outcome: match &e.action {
                    EncryptedAction::Leave => EncryptedOutcome::Left,
                    EncryptedAction::MoveTo(to) => EncryptedOutcome::MovedTo(e.base.join(to)),
                    EncryptedAction::Delete => EncryptedOutcome::Deleted,
                },
                why_left: None,
                changed_by: e.version.changed_by.clone(),
            })
            .collect()
    }

    /// What the plan's results would be, for a dry run's report.
    pub fn as_results(&self) -> Vec<FileResult> {
        self.files()
            .map(|item| match &item.action {
                Action::Restore | Action::Beside(_) => {
                    result(item, Outcome::Recovered, None, Some(item.target()))
                }
                Action::AlreadyPresent { at } => {
                    result(item, Outcome::AlreadyPresent, None, Some(at.clone()))
                }
                Action::Lost(why) => lost(item, why.clone()),
                Action::LeftOut => left_out(item),
                Action::Folder => unreachable!("folders are filtered out"),
            })
            .collect()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error(transparent)]
    Index(#[from] IndexError),
    #[error("cannot restore into {}: {problem}", display_path(path))]
    Destination { path: PathBuf, problem: PathProblem },
}

/// The words in a restored-beside name: "deleted 2026-11-22" (stable, so a re-run
/// finds the file instead of making another copy), or "as of 2026-11-22 14.30".
fn beside_label(version: &Version, as_of: Option<i64>) -> String {
    match (as_of, version.deleted_at) {
        (Some(t), _) => format!("as of {}", clock::local(t).replace(':', ".")),
        (None, Some(t)) => format!("deleted {}", &clock::local(t)[..10]),
        (None, None) => "restored".to_owned(),
    }
}

/// Whether `name` in `dir` (whose metadata is `existing`) is exactly `version`'s
/// content: for a file, the same size and hash; for a link, the same target. A
/// copy not hashed yet is hashed here (intact, see `vault::staged`) to compare.
fn same_content(
    vault: &Vault,
    dir: &OwnedFd,
    name: &OsStr,
    existing: &rustix::fs::Stat,
    version: &Version,
) -> bool {
    let file_type = rustix::fs::FileType::from_raw_mode(existing.st_mode);
    // Only what could be the same is opened: never a device or a pipe.
    let flags = match (version.observed.kind, file_type) {
        (EntryKind::Symlink, rustix::fs::FileType::Symlink) => OFlags::PATH,
        (EntryKind::File, rustix::fs::FileType::RegularFile) => OFlags::RDONLY | OFlags::NONBLOCK,
        _ => return false,
    };
    match rustix::fs::openat(
        dir,
        name,
        flags | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => holds(vault, &fd, existing, version),
        Err(_) => false,
    }
}

/// `same_content` for what the descriptor `fd` (opened with `O_NOFOLLOW`, a link
/// with `O_PATH`) refers to: this very file, whatever has its name by now.
fn holds(vault: &Vault, fd: &OwnedFd, existing: &rustix::fs::Stat, version: &Version) -> bool {
    let file_type = rustix::fs::FileType::from_raw_mode(existing.st_mode);
    match (version.observed.kind, file_type) {
        (EntryKind::Symlink, rustix::fs::FileType::Symlink) => {
            rustix::fs::readlinkat(fd, "", Vec::new())
                .ok()
                .map(|t| t.into_bytes())
                == version
                    .observed
                    .link_target
                    .as_ref()
                    .map(|t| t.as_os_str().as_bytes().to_vec())
        }
        (EntryKind::File, rustix::fs::FileType::RegularFile) => {
            existing.st_size as u64 == version.observed.size
                && version.observed.object.is_some_and(|id| {
                    let content = match id.is_staged() {
                        true => match vault.hash_staged(&id) {
                            Ok((content, _)) => content,
                            Err(_) => return false,
                        },
                        false => id,
                    };
                    hash_fd(fd).ok() == Some(content)
                })
        }
        _ => false,
    }
}

/// The hash of what `fd` reads, from its start (it is read through a duplicate, so
/// `fd` itself can be read from the start again).
fn hash_fd(fd: &OwnedFd) -> io::Result<ObjectId> {
    let file = std::fs::File::from(rustix::io::fcntl_dupfd_cloexec(fd, 0)?);
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut at = 0u64;
    loop {
        let n = std::os::unix::fs::FileExt::read_at(&file, &mut buf, at)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        at += n as u64;
    }
    Ok(ObjectId::from_bytes(*hasher.finalize().as_bytes()))
}

fn result(
    item: &PlanItem,
    outcome: Outcome,
    reason: Option<LossReason>,
    restored_to: Option<PathBuf>,
) -> FileResult {
    // Brought back, but not whole: never called recovered.
    let incomplete = item
        .version
        .observed
        .incomplete
        .filter(|_| outcome == Outcome::Recovered);
    let (outcome, reason) = match incomplete {
        Some(why) => (Outcome::Partial, Some(LossReason::Incomplete(why))),
        None => (outcome, reason),
    };
    FileResult {
        path: item.version.path.clone(),
        size: item.version.observed.size,
        outcome,
        reason,
        beside: matches!(item.action, Action::Beside(_)),
        restored_to,
        deleted_at: item.version.deleted_at,
        deleted_by: item.version.deleted_by.clone(),
    }
}

fn left_out(item: &PlanItem) -> FileResult {
    result(item, Outcome::LeftOut, Some(LossReason::ProgramLock), None)
}

fn lost(item: &PlanItem, reason: LossReason) -> FileResult {
    result(item, Outcome::Lost, Some(reason), None)
}
