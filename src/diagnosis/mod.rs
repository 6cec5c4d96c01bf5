//! Is protection really working? The facts (the control socket, /proc, the disk,
//! the index) gathered once, and plain-language checks made of them, each OK or
//! a problem with the fix in words a customer can follow on the phone.
//!
//! Gather, then diagnose: `gather` reads the facts, and the checks turn them
//! into verdicts without any I/O, so every rule can be tried on made-up facts:
//! `service` (running, recording, room in the vault, the index), `folders` (what
//! is protected, watched, and copied), `alerts` (warnings and their e-mails),
//! `shares` (Samba's Previous Versions), each fix said with `fix`. It changes
//! nothing and prints nothing: `undelete doctor` prints the checks.
//!
//! The inotify limit is read from /proc/sys/fs/inotify/max_user_watches, or from
//! the file named by `UNDELETE_MAX_USER_WATCHES_FILE`: tests provoke a low limit
//! that way without touching the machine's setting.

mod alerts;
mod breaker;
mod fix;
mod folders;
mod gather;
mod service;
mod shares;
#[cfg(test)]
pub(crate) mod tests;

use std::path::PathBuf;

use serde::Serialize;
use serde_json::Value;

use crate::model::Alert;
use crate::model::Delivery;
use alerts::{alerts_check, email_check};
use folders::{event_source_check, folders_check, unprotected_check, watch_check};
use service::{activity_check, daemon_check, index_check, vault_space_check};

/// Where the service's settings live; named in the fixes.
const CONFIG_FILE: &str = "/etc/undelete/config.toml";
const WATCHES_FILE: &str = "/proc/sys/fs/inotify/max_user_watches";
const WATCHES_OVERRIDE: &str = "UNDELETE_MAX_USER_WATCHES_FILE";
/// Where the raised limit is kept across restarts.
const SYSCTL_FILE: &str = "/etc/sysctl.d/90-undelete.conf";
/// Never suggest less than this: it costs about 1 KB of kernel memory per folder
/// actually watched, nothing for the ones that are not.
const MIN_SUGGESTED_WATCHES: u64 = 524_288;

const GB: u64 = 1 << 30;
const MINUTE: i64 = 60 * 1_000_000_000;
const DAY: i64 = 24 * 60 * MINUTE;
/// The daemon records that it is alive every few seconds; this much silence means
/// it is stuck (or still on a very long start-up scan).
const STUCK_AFTER: i64 = 30 * MINUTE;
/// No copy for this long while running: changes are probably not being seen.
const QUIET_AFTER: i64 = 7 * DAY;
/// Alerts older than this are history (still shown by `status`), not a problem
/// now: a mass deletion nobody restored in a week was most likely meant.
const RECENT_ALERTS: i64 = 7 * DAY;

/// One check's verdict, as printed and as JSON.
#[derive(Debug, Serialize)]
pub struct Check {
    pub check: &'static str,
    pub ok: bool,
    pub message: String,
    /// What to do, in words; null when OK.
    pub fix: Option<String>,
    /// The commands the fix names, each printed on a line of its own.
    pub commands: Vec<String>,
    #[serde(skip_serializing_if = "Value::is_null")]
    pub details: Value,
}

impl Check {
    pub(super) fn ok(check: &'static str, message: String) -> Self {
        Self {
            check,
            ok: true,
            message,
            fix: None,
            commands: Vec::new(),
            details: Value::Null,
        }
    }

    pub(super) fn problem(
        check: &'static str,
        message: String,
        fix: String,
        commands: Vec<String>,
    ) -> Self {
        Self {
            check,
            ok: false,
            message,
            fix: Some(fix),
            commands,
            details: Value::Null,
        }
    }

    pub(super) fn with_details(mut self, details: Value) -> Self {
        self.details = details;
        self
    }
}

/// Everything the checks look at, read once.
#[derive(Debug, Default)]
pub struct Facts {
    pub now: i64,
    pub vault: PathBuf,
    /// False when there is no vault (or only its empty folder): the daemon never ran
    /// with it.
    pub vault_found: bool,
    pub daemon_running: bool,
    /// The system's limit on watched folders (per user), when readable.
    pub watch_limit: Option<u64>,
    /// Who alert e-mails go to, when the settings name anyone.
    pub email_to: Option<String>,
    pub disk: Option<Disk>,
    /// What is wrong with the index itself: it cannot be opened, its own check
    /// failed, or reading it failed.
    pub index_problems: Vec<String>,
    /// What the index records; None when it cannot be read.
    pub recorded: Option<Recorded>,
    /// How the running daemon took its settings, for fixes that change them.
    pub started: Started,
    /// Samba's shares of the protected folders and their Previous Versions; `None`
    /// where Samba is not installed.
    pub shares: Option<Vec<crate::samba::ShareState>>,
}

/// Where the running daemon's settings come from, and how it reads them again: a
/// fix that says "edit the settings file and restart" is wrong for a daemon started
/// with flags, and a restart is more than a service that reloads needs.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub enum Started {
    /// Not running, or not known: the system service, as installed.
    #[default]
    Unknown,
    /// By systemd, from this settings file: `systemctl reload` reads it again.
    Service { settings: PathBuf },
    /// By hand with a settings file: SIGHUP reads it again.
    ByHand { settings: PathBuf, pid: u32 },
    /// By hand with flags only, which nothing reads again.
    Flags { pid: u32 },
}

#[derive(Debug, Clone, Copy)]
pub struct Disk {
    pub free: u64,
    pub total: u64,
}

#[derive(Debug, Default)]
pub struct Recorded {
    pub roots: Vec<RootState>,
    /// Folders in and below the protected folders, as the index knows them: each
    /// needs a watch.
    pub folders: u64,
    pub files_protected: u64,
    /// Live files without a copy, by reason code.
    pub unprotected: Vec<(String, u64)>,
    /// The daemon's exclude rules and size limit, as it last started with them.
    pub exclude: Vec<String>,
    pub max_file_size: Option<u64>,
    pub last_capture: Option<i64>,
    pub started_at: Option<i64>,
    pub last_alive: Option<i64>,
    /// The watch limit the daemon ran into, as it was then (it may be raised since).
    pub watch_limit_hit: Option<u64>,
    /// Which event source the daemon last started with, and why.
    pub event_source: Option<crate::model::EventSourceNote>,
    pub alerts: Vec<Alert>,
    /// The last alert e-mail sent, and the last that failed (the daemon's notes).
    pub email_sent: Option<Delivery>,
    pub email_failed: Option<Delivery>,
    /// What the circuit breaker did about recent incidents, each with its code.
    pub cut_offs: Vec<(String, crate::model::CutOff)>,
}

#[derive(Debug, Clone)]
pub struct RootState {
    pub path: PathBuf,
    /// Protected by the daemon's latest start.
    pub active: bool,
    pub on_disk: bool,
}

/// The checks, in the order they are printed; no I/O.
pub fn diagnose(facts: &Facts) -> Vec<Check> {
    let mut checks = vec![daemon_check(facts)];
    if !facts.vault_found {
        return checks;
    }
    if let Some(rec) = &facts.recorded {
        checks.push(folders_check(facts, rec));
        checks.extend(event_source_check(facts, rec));
        checks.push(watch_check(facts, rec));
    }
    checks.push(vault_space_check(facts));
    if let Some(rec) = &facts.recorded {
        checks.push(unprotected_check(facts, rec));
        checks.push(activity_check(facts, rec));
    }
    checks.push(index_check(facts));
    if let Some(rec) = &facts.recorded {
        checks.push(alerts_check(facts, rec));
        checks.extend(email_check(facts, rec));
        checks.extend(breaker::breaker_check(facts, rec));
    }
    checks.extend(shares::previous_versions_check(facts));
    checks
}
