//! The things the index records, as the rest of the program sees them: a version
//! of a path and what was observed of it, why a file has no copy, how it went,
//! incidents and alerts, and the questions a listing or a restore asks.
//!
//! Plain data, with the stable codes the index and the journal store them by and
//! the customer's wording in one `Display` each. Capture, the journal and restore
//! use these without knowing SQL; the index alone reads and writes them.
//!
//! Here: versions and what was observed, why a file has no copy, and the
//! questions asked of the index; `person` says who made a change, `incidents`
//! holds incidents, alerts and the daemon's notes, `cut_off` what the circuit
//! breaker did about an incident's PC.

use std::path::PathBuf;

use crate::ids::ObjectId;

mod cut_off;
mod incidents;
mod person;

pub use cut_off::*;
pub use incidents::*;
pub use person::*;

/// What kind of thing a version records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    File,
    Symlink,
    Dir,
    /// FIFOs, sockets and device nodes: recorded, never opened.
    Special,
}

impl EntryKind {
    pub fn code(self) -> i64 {
        match self {
            Self::File => 0,
            Self::Symlink => 1,
            Self::Dir => 2,
            Self::Special => 3,
        }
    }

    pub fn from_code(code: i64) -> Self {
        match code {
            1 => Self::Symlink,
            2 => Self::Dir,
            3 => Self::Special,
            _ => Self::File,
        }
    }
}

/// Why a file that was seen has no copy in the vault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Uncaptured {
    Excluded {
        rule: String,
    },
    TooLarge {
        limit: u64,
    },
    Special {
        what: String,
    },
    Unreadable {
        error: String,
    },
    Changing,
    VaultFull,
    DeletedBeforeCapture,
    /// Its copy was removed by the retention rules at this time.
    Purged {
        at: i64,
    },
}

impl Uncaptured {
    /// The stable code stored in the index and used to group the report.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Excluded { .. } => "excluded",
            Self::TooLarge { .. } => "too_large",
            Self::Special { .. } => "special",
            Self::Unreadable { .. } => "unreadable",
            Self::Changing => "changing",
            Self::VaultFull => "vault_full",
            Self::DeletedBeforeCapture => "deleted_before_capture",
            Self::Purged { .. } => "purged",
        }
    }

    pub fn detail(&self) -> Option<String> {
        match self {
            Self::Excluded { rule } => Some(rule.clone()),
            Self::TooLarge { limit } => Some(limit.to_string()),
            Self::Special { what } => Some(what.clone()),
            Self::Unreadable { error } => Some(error.clone()),
            Self::Purged { at } => Some(at.to_string()),
            _ => None,
        }
    }

    pub fn from_columns(code: &str, detail: Option<String>) -> Self {
        let detail = detail.unwrap_or_default();
        match code {
            "excluded" => Self::Excluded { rule: detail },
            "too_large" => Self::TooLarge {
                limit: detail.parse().unwrap_or(0),
            },
            "special" => Self::Special { what: detail },
            "unreadable" => Self::Unreadable { error: detail },
            "changing" => Self::Changing,
            "vault_full" => Self::VaultFull,
            "purged" => Self::Purged {
                at: detail.parse().unwrap_or(0),
            },
            _ => Self::DeletedBeforeCapture,
        }
    }
}

impl std::fmt::Display for Uncaptured {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Excluded { rule } => write!(f, "excluded by the rule {rule}"),
            Self::TooLarge { limit } => {
                // In the units it was most likely set in: 1 MiB, but 2 MB.
                let size = bytesize::ByteSize::b(*limit).display();
                let size = if limit % 1024 == 0 {
                    size.iec()
                } else {
                    size.si()
                };
                write!(f, "larger than the capture limit ({size})")
            }
            Self::Special { what } => write!(f, "a {what}, which is not a file and is not copied"),
            Self::Unreadable { error } => write!(f, "could not be read ({error})"),
            Self::Changing => write!(f, "kept changing while it was being copied"),
            Self::VaultFull => write!(f, "the vault disk was full"),
            Self::DeletedBeforeCapture => write!(f, "deleted before it could be copied"),
            Self::Purged { at } => write!(
                f,
                "purged by the retention rules on {}",
                crate::clock::to_local(*at).format("%Y-%m-%d")
            ),
        }
    }
}

/// Why the copy a version has may not hold the file's last content: it was deleted
/// while it was still being written (seen created or written to, and not closed).
/// A restore brings such a copy back, and says plainly that it is not the whole file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Incomplete {
    /// Copied while it was being written: a part of the content is what was kept.
    WhileWritten,
    /// Written to after the copy kept was made, and deleted before it was closed:
    /// what comes back is the older, complete version.
    LastChangesMissing,
}

impl Incomplete {
    pub fn code(self) -> &'static str {
        match self {
            Self::WhileWritten => "partial_copy",
            Self::LastChangesMissing => "last_changes_missing",
        }
    }

    pub fn from_code(code: &str) -> Option<Self> {
        match code {
            "partial_copy" => Some(Self::WhileWritten),
            "last_changes_missing" => Some(Self::LastChangesMissing),
            _ => None,
        }
    }
}

impl std::fmt::Display for Incomplete {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::WhileWritten => {
                "only part of it was kept: it was deleted while it was still being written"
            }
            Self::LastChangesMissing => {
                "its last changes were not kept: it was deleted while it was still being \
                 written, and the version from before those changes came back"
            }
        })
    }
}

/// How a version stopped being current, when it was not replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removal {
    Deleted,
    MovedOut,
}

impl Removal {
    pub fn code(self) -> &'static str {
        match self {
            Self::Deleted => "deleted",
            Self::MovedOut => "moved_out",
        }
    }

    pub fn from_code(code: &str) -> Self {
        match code {
            "moved_out" => Self::MovedOut,
            _ => Self::Deleted,
        }
    }
}

impl std::fmt::Display for Removal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Deleted => "deleted",
            Self::MovedOut => "moved out of the protected folder",
        })
    }
}

/// What was observed of a path on disk: everything a new version records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    pub kind: EntryKind,
    pub object: Option<ObjectId>,
    pub size: u64,
    pub mtime_ns: i64,
    /// The change time, which no user can set back; 0 when not recorded (older versions).
    pub ctime_ns: i64,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub inode: u64,
    pub link_target: Option<PathBuf>,
    pub uncaptured: Option<Uncaptured>,
    /// Set when the copy may not hold the file's last content.
    pub incomplete: Option<Incomplete>,
    /// Signs that this content is the content it replaced, encrypted.
    pub signs: crate::signs::Signs,
}

/// An older version whose copy is kept, as retention sees it.
#[derive(Debug, Clone)]
pub struct KeptVersion {
    pub id: i64,
    pub path: PathBuf,
    pub object: Option<ObjectId>,
    pub size: u64,
    /// When it stopped being current (deleted, moved out or replaced).
    pub gone_at: i64,
    /// 1 for the newest kept older version of its path, 2 for the one before, …
    pub rank: u64,
}

/// One row of `versions`.
#[derive(Debug, Clone)]
pub struct Version {
    pub id: i64,
    pub path: PathBuf,
    pub root_id: i64,
    pub observed: Observed,
    pub seen_at: i64,
    pub replaced_at: Option<i64>,
    pub deleted_at: Option<i64>,
    pub deleted_approx: bool,
    pub last_seen_at: Option<i64>,
    pub removal: Option<Removal>,
    /// Read by the grouping tests; the index itself asks the column.
    #[cfg_attr(not(test), allow(dead_code))]
    pub incident_id: Option<i64>,
    /// When a restore brought this deleted version back (it is on disk again).
    pub restored_at: Option<i64>,
    /// Who made this version, and who deleted it, where the event source said.
    pub changed_by: Option<Person>,
    pub deleted_by: Option<Person>,
}

impl Version {
    pub fn is_current(&self) -> bool {
        self.replaced_at.is_none() && self.deleted_at.is_none()
    }
}

/// A protected folder.
#[derive(Debug, Clone)]
pub struct Root {
    pub id: i64,
    pub path: PathBuf,
    pub active: bool,
}

/// Counts for `status`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Totals {
    pub files_protected: u64,
    pub bytes_protected: u64,
    pub files_unprotected: u64,
    /// Deleted files not brought back yet, with and without a copy.
    pub deleted_recoverable: u64,
    pub deleted_lost: u64,
    /// Deleted files a restore brought back.
    pub deleted_restored: u64,
    pub objects: u64,
    pub object_bytes: u64,
    pub last_capture: Option<i64>,
}

/// Which versions a restore brings back. Empty `scopes` means every protected folder.
#[derive(Debug, Clone, Default)]
pub struct RestoreFilter {
    pub scopes: Vec<PathBuf>,
    pub deleted_after: Option<i64>,
    pub deleted_before: Option<i64>,
    pub incident: Option<i64>,
    pub as_of: Option<i64>,
    /// Also bring back lock files of programs (see `names::is_program_lock`).
    pub include_lock_files: bool,
    /// What a restore of an overwrite incident does with its encrypted copies.
    pub encrypted: EncryptedCopies,
}

/// What a restore of an overwrite incident does with the encrypted copies it left
/// where the files were.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum EncryptedCopies {
    /// Left where they are: nothing on the share is touched but what comes back.
    #[default]
    Leave,
    /// Moved into a folder of their own in their protected folder, at the same
    /// paths below it (`ENCRYPTED_FOLDER`), making room for the originals.
    MoveAside,
    /// Deleted, only when asked by name (the vault keeps a copy of each, as of any
    /// deleted file).
    Delete,
}

/// The folder, in each protected folder, that encrypted copies are moved into:
/// "Encrypted files (incident K7Q-4MD)".
pub fn encrypted_folder(code: &str) -> String {
    format!("Encrypted files (incident {code})")
}

/// Which deleted or live versions to list.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    pub under: Option<PathBuf>,
    pub include_live: bool,
    /// Also deleted versions a restore brought back (by default, what is still missing).
    pub include_restored: bool,
    pub deleted_after: Option<i64>,
    pub deleted_before: Option<i64>,
}

/// How and when a path disappeared, and who removed it where that is known.
#[derive(Debug, Clone)]
pub struct Gone {
    pub at: i64,
    /// True when noticed by a scan rather than an event: `at` is when it was noticed.
    pub approx: bool,
    pub last_seen: Option<i64>,
    pub removal: Removal,
    pub by: Option<std::sync::Arc<Person>>,
}

impl Gone {
    /// Removed (`removal`) at `at` by `by`, as an event said at the time: not a
    /// scan's guess, so the time is exact and nothing was seen since.
    pub fn now(at: i64, removal: Removal, by: Option<std::sync::Arc<Person>>) -> Self {
        Self {
            at,
            approx: false,
            last_seen: None,
            removal,
            by,
        }
    }
}
