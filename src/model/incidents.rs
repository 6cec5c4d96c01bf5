//! Incidents (deletions or overwrites that belong together), the alerts the
//! daemon raises and what became of them, and the notes it keeps for `status`
//! and `doctor`.

use std::path::PathBuf;

use super::Person;

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
    /// What the circuit breaker did about that person's PC, when it was on.
    pub cut_off: Option<super::CutOff>,
}

impl Incident {
    /// Files that could come back and are not back yet.
    pub fn missing(&self) -> u64 {
        self.recoverable.saturating_sub(self.restored)
    }

    /// 2,149 photos (4 GB) deleted from /srv/share/photos, all of them copied, by
    /// `person`: for tests of what is said of an incident.
    #[cfg(test)]
    pub fn photos_deleted_by(person: Option<super::Person>) -> Self {
        Self {
            id: 1,
            code: "K7Q-4MDX".into(),
            kind: IncidentKind::Deleted,
            folder: "/srv/share/photos".into(),
            first_at: 0,
            last_at: 0,
            files: 2149,
            bytes: 4_000_000_000,
            recoverable: 2149,
            alerted_at: None,
            ended_at: None,
            restored: 0,
            person,
            cut_off: None,
        }
    }
}

/// The start of a mass-deletion alert's stored kind; the incident code follows.
const MASS_DELETION: &str = "mass_deletion:";
/// The start of a cut-off alert's stored kind; the PC's address follows.
const CUT_OFF: &str = "cut_off:";

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
    /// The circuit breaker cut off the PC at this address. While it is open, that
    /// address is not cut off again; acknowledging it re-arms the breaker.
    CutOff(String),
    /// A kind this version does not know (written by a newer one), kept as it was.
    Other(String),
}

impl AlertKind {
    /// The stored form: `watch_limit`, `vault_full`, `settings`, `mass_deletion:CODE`,
    /// `cut_off:ADDRESS`.
    pub fn as_str(&self) -> std::borrow::Cow<'_, str> {
        match self {
            Self::WatchLimit => "watch_limit".into(),
            Self::VaultFull => "vault_full".into(),
            Self::Settings => "settings".into(),
            Self::VaultGrowth => "vault_growth".into(),
            Self::MassDeletion(code) => format!("{MASS_DELETION}{code}").into(),
            Self::CutOff(address) => format!("{CUT_OFF}{address}").into(),
            Self::Other(kind) => kind.as_str().into(),
        }
    }

    pub fn from_stored(kind: &str) -> Self {
        match kind {
            "watch_limit" => Self::WatchLimit,
            "vault_full" => Self::VaultFull,
            "settings" => Self::Settings,
            "vault_growth" => Self::VaultGrowth,
            _ => match (kind.strip_prefix(MASS_DELETION), kind.strip_prefix(CUT_OFF)) {
                (Some(code), _) => Self::MassDeletion(code.to_owned()),
                (_, Some(address)) => Self::CutOff(address.to_owned()),
                _ => Self::Other(kind.to_owned()),
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
    /// The paths `message` names, as it shows them: kept whole wherever it is
    /// wrapped (`words::whole_in`). Stored marked in the message (`whole_path`);
    /// not in JSON, whose `message` is whole already.
    #[serde(skip)]
    pub paths: Vec<String>,
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
