//! The things the index records, as the rest of the program sees them: a version
//! of a path and what was observed of it, why a file has no copy, how it went,
//! incidents and alerts, and the questions a listing or a restore asks.
//!
//! Plain data, with the stable codes the index and the journal store them by and
//! the customer's wording in one `Display` each. Capture, the journal and restore
//! use these without knowing SQL; the index alone reads and writes them.

use std::path::PathBuf;

use crate::ids::ObjectId;

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

/// How the person who made a change reached the files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Via {
    /// A program run on the server itself (a shell, a backup, a script).
    Local,
    /// Samba's `smbd`, serving a PC of the office.
    FileShare,
    /// The kernel's own file server (NFS, ksmbd): it acts for a client it does not name.
    KernelServer,
    /// Only the process id is known: it had ended before it could be looked at.
    Ended,
}

impl std::fmt::Display for Via {
    /// The way in, as people read it after a name: "over the file share".
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Local => "on the server itself",
            Self::FileShare => "over the file share",
            Self::KernelServer => "through the kernel's file server (NFS or ksmbd)",
            Self::Ended => "(it had ended before it could be asked who it was)",
        })
    }
}

/// Who made a change or a deletion, as far as the event source could tell. `None`
/// where the source cannot say (inotify names no process).
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Person {
    pub via: Via,
    /// The account: the Samba user over the file share, else the Unix user of the
    /// process. None for the kernel's file server, which does not say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The program's name (`rm`, `smbd`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process: Option<String>,
    pub pid: i32,
    /// Its command line, shortened (see `identify`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// The PC's name over the file share, when it gave one (NetBIOS, port 139).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub machine: Option<String>,
    /// The PC's network address over the file share.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
}

impl Person {
    /// What tells one person from another for incidents: the way in, the user and the
    /// PC, never the process (one person's `rm` and `find -delete`, or a PC that
    /// connected again, are the same person).
    pub fn same_as(&self, other: &Self) -> bool {
        self.via == other.via
            && self.user == other.user
            && self.machine == other.machine
            && self.address == other.address
            && (self.via != Via::Ended || self.pid == other.pid)
    }

    /// Whether more than a pid is known: one that had ended before it could be
    /// asked tells nothing of who, and is no evidence of another person.
    pub fn is_known(&self) -> bool {
        self.via != Via::Ended
    }

    /// For programs: `{user, process, pid, command, machine, address, via}` (`via`
    /// one of `local`, `file_share`, `kernel_server`, `ended`), with `said`, the
    /// words people read.
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "user": self.user,
            "process": self.process,
            "pid": self.pid,
            "command": self.command,
            "machine": self.machine,
            "address": self.address,
            "via": self.via,
            "said": self.to_string(),
        })
    }

    /// "FRONTDESK (192.168.1.23)", "192.168.1.23", or None: the PC, as people say it.
    pub fn pc(&self) -> Option<String> {
        match (&self.machine, &self.address) {
            (Some(m), Some(a)) => Some(format!("{m} ({a})")),
            (Some(m), None) => Some(m.clone()),
            (None, Some(a)) => Some(a.clone()),
            (None, None) => None,
        }
    }
}

impl std::fmt::Display for Person {
    /// "anna from FRONTDESK (192.168.1.23) over the file share", "bob, running rm on
    /// the server itself", what follows "deleted by".
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let user = self.user.as_deref().unwrap_or("someone");
        match self.via {
            Via::FileShare => match self.pc() {
                Some(pc) => write!(f, "{user} from {pc} {}", self.via),
                None => write!(f, "{user} {}", self.via),
            },
            Via::Local => match &self.process {
                Some(process) => write!(f, "{user}, running {process} {}", self.via),
                None => write!(f, "{user} {}", self.via),
            },
            Via::KernelServer => write!(
                f,
                "a client of the kernel's file server (NFS or ksmbd), which does not say who"
            ),
            Via::Ended => write!(f, "process {} {}", self.pid, self.via),
        }
    }
}

/// A protected folder.
#[derive(Debug, Clone)]
pub struct Root {
    pub id: i64,
    pub path: PathBuf,
    pub active: bool,
}

/// What happened to an incident's files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IncidentKind {
    Deleted,
    /// Rewritten in place with what looks like their content encrypted.
    Overwritten,
    /// Copied under a new extension (`.locked`) with what looks like their content
    /// encrypted (the originals are usually deleted next).
    Renamed,
    /// Both: some rewritten in place, some copied under a new extension.
    Mixed,
}

impl IncidentKind {
    pub fn code(self) -> &'static str {
        match self {
            Self::Deleted => "deleted",
            Self::Overwritten => "overwritten",
            Self::Renamed => "renamed",
            Self::Mixed => "mixed",
        }
    }

    pub fn from_code(code: &str) -> Self {
        match code {
            "overwritten" => Self::Overwritten,
            "renamed" => Self::Renamed,
            "mixed" => Self::Mixed,
            _ => Self::Deleted,
        }
    }

    /// Changed beyond use rather than deleted: what comes back is the version from
    /// before the incident, and what is there now is kept.
    pub fn is_overwrite(self) -> bool {
        self != Self::Deleted
    }
}

impl std::fmt::Display for IncidentKind {
    /// The verb people read: "1,870 files changed beyond use".
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Deleted => "deleted",
            Self::Overwritten | Self::Renamed | Self::Mixed => "changed beyond use",
        })
    }
}

/// Deletions close together under one protected folder, or overwrites that look
/// like encryption (`kind`).
#[derive(Debug, Clone)]
pub struct Incident {
    pub id: i64,
    pub code: String,
    pub kind: IncidentKind,
    pub folder: PathBuf,
    pub first_at: i64,
    pub last_at: i64,
    /// Files deleted (each path once, programs' lock files left out).
    pub files: u64,
    pub bytes: u64,
    /// Of those, how many have a copy to bring back.
    pub recoverable: u64,
    pub alerted_at: Option<i64>,
    /// When it was over: no deletion joined it for the incident gap, or every file
    /// in it that could come back was brought back.
    pub ended_at: Option<i64>,
    /// Of its files, how many restores brought back.
    pub restored: u64,
    /// Who deleted them, where the event source said (an incident is one person's).
    pub person: Option<Person>,
}

impl Incident {
    /// Files that could come back and are not back yet.
    pub fn missing(&self) -> u64 {
        self.recoverable.saturating_sub(self.restored)
    }
}

/// The start of a mass-deletion alert's stored kind; the incident code follows.
const MASS_DELETION: &str = "mass_deletion:";

/// What an alert is about. Stored in the index and the journal as `as_str` says,
/// so journals written before and after read alike.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(into = "String", from = "String")]
pub enum AlertKind {
    /// The inotify watch limit was reached.
    WatchLimit,
    /// The vault's disk is full: capture stopped.
    VaultFull,
    /// The settings file could not be used.
    Settings,
    /// A mass deletion: the incident's code.
    MassDeletion(String),
    /// The vault grew unusually fast (`VaultGrowth`).
    VaultGrowth,
    /// A kind this version does not know (written by a newer one), kept as it was.
    Other(String),
}

impl AlertKind {
    /// The stored form: `watch_limit`, `vault_full`, `settings`, `mass_deletion:CODE`.
    pub fn as_str(&self) -> std::borrow::Cow<'_, str> {
        match self {
            Self::WatchLimit => "watch_limit".into(),
            Self::VaultFull => "vault_full".into(),
            Self::Settings => "settings".into(),
            Self::VaultGrowth => "vault_growth".into(),
            Self::MassDeletion(code) => format!("{MASS_DELETION}{code}").into(),
            Self::Other(kind) => kind.as_str().into(),
        }
    }

    pub fn from_stored(kind: &str) -> Self {
        match kind {
            "watch_limit" => Self::WatchLimit,
            "vault_full" => Self::VaultFull,
            "settings" => Self::Settings,
            "vault_growth" => Self::VaultGrowth,
            _ => match kind.strip_prefix(MASS_DELETION) {
                Some(code) => Self::MassDeletion(code.to_owned()),
                None => Self::Other(kind.to_owned()),
            },
        }
    }

    /// The incident code of a mass-deletion alert.
    pub fn incident_code(&self) -> Option<&str> {
        match self {
            Self::MassDeletion(code) => Some(code),
            _ => None,
        }
    }
}

impl From<String> for AlertKind {
    fn from(kind: String) -> Self {
        Self::from_stored(&kind)
    }
}

impl From<AlertKind> for String {
    fn from(kind: AlertKind) -> Self {
        kind.as_str().into_owned()
    }
}

/// An alert raised by the daemon, shown by `status` until cleared.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Alert {
    pub id: i64,
    pub kind: AlertKind,
    pub message: String,
    pub raised_at: i64,
    pub cleared_at: Option<i64>,
}

/// What became of an alert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AlertState {
    /// Still a warning.
    Open,
    /// It cleared by itself (the disk has room again, the settings were mended).
    Cleared,
    /// Every file of its incident that could come back was brought back; the
    /// report of the restore that finished it.
    Resolved { report: Option<PathBuf> },
    /// Someone said it needs no restore (the deletion was wanted).
    Acknowledged { note: Option<String> },
    /// Its incident became part of a larger one, whose alert goes on.
    Merged,
}

/// An alert and what became of it, for `undelete alerts` and `status`'s history.
#[derive(Debug, Clone)]
pub struct AlertEntry {
    pub alert: Alert,
    pub state: AlertState,
}

/// How fast the vault grew, when it grew unusually fast: by more than `limit`
/// within `window_ns` (a share of the size cap, or without one, of the vault's size).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VaultGrowth {
    /// Bytes added since `since`.
    pub grown: u64,
    pub since: i64,
    pub window_ns: i64,
    /// What counts as unusually fast: `percent` of `of` (the cap, or the size then).
    pub limit: u64,
    pub percent: u64,
    pub cap: Option<u64>,
    /// The vault's size now.
    pub size: u64,
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

/// How an alert e-mail went, as the daemon records it for `doctor` (meta keys
/// `email_sent` and `email_failed`).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Delivery {
    pub at: i64,
    pub to: String,
    pub subject: String,
    /// Why it was not sent; none when the server took it.
    pub error: Option<String>,
}

/// Which event source the daemon uses, and why, in words for `status` and
/// `doctor` (a daemon's note: `MetaKey::EventSource`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EventSourceNote {
    /// `fanotify` or `inotify`.
    pub source: String,
    /// Why, as a sentence.
    pub why: String,
}
