//! `undelete doctor`: is protection really working? Plain-language checks, each
//! OK or PROBLEM, and for a problem the fix in words a customer can follow on
//! the phone. Exit code 0 when every check is OK, 1 otherwise.
//!
//! Gather, then diagnose: `gather` reads the facts (the control socket, /proc,
//! the disk, the index) and `diagnose` turns them into checks without any I/O,
//! so every rule can be tried on made-up facts. Doctor changes nothing.
//!
//! The inotify limit is read from /proc/sys/fs/inotify/max_user_watches, or from
//! the file named by `UNDELETE_MAX_USER_WATCHES_FILE`: tests provoke a low limit
//! that way without touching the machine's setting.

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use serde::Serialize;
use serde_json::{Value, json};
use walkdir::WalkDir;

use crate::clock;
use crate::config::Config;
use crate::control;
use crate::index::{Index, IndexError};
use crate::model::Alert;
use crate::vault::Vault;
use crate::watch::alert::Delivery;
use crate::words::{bytes, count, display_path, files};

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

pub fn run(config: &Config, as_json: bool) -> anyhow::Result<ExitCode> {
    let facts = gather(config)?;
    let checks = diagnose(&facts);
    let problems = checks.iter().filter(|c| !c.ok).count();
    if as_json {
        let value = json!({
            "vault": facts.vault,
            "ok": problems == 0,
            "problems": problems,
            "checks": checks,
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        print!("{}", text(&facts.vault, &checks));
    }
    Ok(if problems == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// One check's verdict, as printed and as JSON.
#[derive(Debug, Serialize)]
struct Check {
    check: &'static str,
    ok: bool,
    message: String,
    /// What to do, in words; null when OK.
    fix: Option<String>,
    /// The commands the fix names, each printed on a line of its own.
    commands: Vec<String>,
    #[serde(skip_serializing_if = "Value::is_null")]
    details: Value,
}

impl Check {
    fn ok(check: &'static str, message: String) -> Self {
        Self {
            check,
            ok: true,
            message,
            fix: None,
            commands: Vec::new(),
            details: Value::Null,
        }
    }

    fn problem(check: &'static str, message: String, fix: String, commands: Vec<String>) -> Self {
        Self {
            check,
            ok: false,
            message,
            fix: Some(fix),
            commands,
            details: Value::Null,
        }
    }

    fn with_details(mut self, details: Value) -> Self {
        self.details = details;
        self
    }
}

// --- the facts ---------------------------------------------------------------

/// Everything the checks look at, read once.
#[derive(Debug, Default)]
struct Facts {
    now: i64,
    vault: PathBuf,
    /// False when there is no vault (or only its empty folder): the daemon never ran
    /// with it.
    vault_found: bool,
    daemon_running: bool,
    /// The system's limit on watched folders (per user), when readable.
    watch_limit: Option<u64>,
    /// Who alert e-mails go to, when the settings name anyone.
    email_to: Option<String>,
    disk: Option<Disk>,
    /// What is wrong with the index itself: it cannot be opened, its own check
    /// failed, or reading it failed.
    index_problems: Vec<String>,
    /// What the index records; None when it cannot be read.
    recorded: Option<Recorded>,
    /// How the running daemon took its settings, for fixes that change them.
    started: Started,
}

/// Where the running daemon's settings come from, and how it reads them again: a
/// fix that says "edit the settings file and restart" is wrong for a daemon started
/// with flags, and a restart is more than a service that reloads needs.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
enum Started {
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

impl Started {
    /// Reads what the process that answers on `socket` was started with.
    fn of_daemon(socket: &Path) -> Self {
        let Some(pid) = control::request(socket, "PING", std::time::Duration::from_secs(5))
            .ok()
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            return Self::Unknown;
        };
        let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            return Self::Unknown;
        };
        let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
        let config = args
            .iter()
            .position(|a| *a == b"--config")
            .and_then(|i| args.get(i + 1))
            .map(|a| PathBuf::from(std::ffi::OsStr::from_bytes(a)))
            .or_else(|| {
                args.iter()
                    .find_map(|a| a.strip_prefix(b"--config="))
                    .map(|a| PathBuf::from(std::ffi::OsStr::from_bytes(a)))
            });
        let by_systemd = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
            .is_ok_and(|cgroup| cgroup.contains("/undelete.service"));
        let flags = args.iter().any(|a| *a == b"--protect");
        match (by_systemd, config, flags) {
            (true, settings, _) => Self::Service {
                settings: settings.unwrap_or_else(|| CONFIG_FILE.into()),
            },
            (false, Some(settings), false) => Self::ByHand { settings, pid },
            _ => Self::Flags { pid },
        }
    }

    /// The fix for a setting to change, `what` ("name the folders to protect
    /// (protect = ...)"), and the commands that make the daemon use it.
    fn change(&self, what: &str) -> (String, Vec<String>) {
        match self {
            Self::Unknown => (
                format!("{what} in {CONFIG_FILE}, then restart the service:"),
                vec![restart()],
            ),
            Self::Service { settings } => (
                format!(
                    "{what} in {}, then have the service read it again (nothing is \
                     missed meanwhile):",
                    display_path(settings)
                ),
                vec!["sudo systemctl reload undelete".into()],
            ),
            Self::ByHand { settings, pid } => (
                format!(
                    "{what} in {}, then have the running service (process {pid}) read it \
                     again:",
                    display_path(settings)
                ),
                vec![format!("sudo kill -HUP {pid}")],
            ),
            Self::Flags { pid } => (
                format!(
                    "The service (process {pid}) was started with flags (--protect, \
                     --exclude, --max-file-size), which it never reads again: stop it, \
                     and start it again with the flags changed. Or keep the settings in \
                     {CONFIG_FILE} and start it with --config {CONFIG_FILE}, so a reload \
                     reads them. To do: {what}."
                ),
                Vec::new(),
            ),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Disk {
    free: u64,
    total: u64,
}

#[derive(Debug, Default)]
struct Recorded {
    roots: Vec<RootState>,
    /// Folders in and below the protected folders that are there: each needs a watch.
    folders: u64,
    files_protected: u64,
    /// Live files without a copy, by reason code.
    unprotected: Vec<(String, u64)>,
    /// The daemon's exclude rules and size limit, as it last started with them.
    exclude: Vec<String>,
    max_file_size: Option<u64>,
    last_capture: Option<i64>,
    started_at: Option<i64>,
    last_alive: Option<i64>,
    /// The watch limit the daemon ran into, as it was then (it may be raised since).
    watch_limit_hit: Option<u64>,
    alerts: Vec<Alert>,
    /// The last alert e-mail sent, and the last that failed (the daemon's notes).
    email_sent: Option<Delivery>,
    email_failed: Option<Delivery>,
}

#[derive(Debug, Clone)]
struct RootState {
    path: PathBuf,
    /// Protected by the daemon's latest start.
    active: bool,
    on_disk: bool,
}

fn gather(config: &Config) -> anyhow::Result<Facts> {
    // Not ours to read (doctor run without sudo): say so as other commands do,
    // rather than report a vault that is merely hidden as missing.
    if let Err(e) = std::fs::read_dir(&config.vault)
        && e.kind() == std::io::ErrorKind::PermissionDenied
    {
        super::open_vault_folder(config)?;
    }
    let mut facts = Facts {
        now: clock::now(),
        vault: config.vault.clone(),
        // The folder alone is made by install-service before the daemon ever ran.
        vault_found: config.vault.join("objects").is_dir(),
        watch_limit: read_watch_limit(),
        email_to: config.incidents.email.as_ref().map(|e| e.recipients()),
        ..Facts::default()
    };
    if !facts.vault_found {
        return Ok(facts);
    }
    facts.disk = disk_space(&config.vault);
    // A damaged index is a finding, not a reason to stop: the other checks still help.
    let index = match super::open_vault(config) {
        Ok((vault, index)) => {
            facts.daemon_running = control::is_running(&vault.socket_path());
            if facts.daemon_running {
                facts.started = Started::of_daemon(&vault.socket_path());
            }
            Some(index)
        }
        Err(err) => {
            let broken = err.downcast::<IndexError>()?;
            let vault = Vault::open_existing(&config.vault)?;
            facts.daemon_running = control::is_running(&vault.socket_path());
            facts.index_problems.push(index_error_words(&broken));
            None
        }
    };
    if let Some(index) = index {
        match index.check_integrity() {
            Ok(problems) => facts.index_problems.extend(problems),
            Err(e) => facts.index_problems.push(index_error_words(&e)),
        }
        match recorded(&index, &config.vault) {
            Ok(recorded) => facts.recorded = Some(recorded),
            Err(e) => facts.index_problems.push(index_error_words(&e)),
        }
        // One damaged page often fails several reads the same way.
        facts.index_problems.dedup();
    }
    Ok(facts)
}

/// SQLite's own words: the check's message already says the index is damaged.
fn index_error_words(err: &IndexError) -> String {
    match err {
        IndexError::Sql(e) => e.to_string(),
        other => other.to_string(),
    }
}

fn read_watch_limit() -> Option<u64> {
    let file = std::env::var_os(WATCHES_OVERRIDE)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(WATCHES_FILE));
    std::fs::read_to_string(file).ok()?.trim().parse().ok()
}

fn disk_space(path: &Path) -> Option<Disk> {
    let s = rustix::fs::statvfs(path).ok()?;
    Some(Disk {
        free: s.f_bavail.saturating_mul(s.f_frsize),
        total: s.f_blocks.saturating_mul(s.f_frsize),
    })
}

fn recorded(index: &Index, vault: &Path) -> Result<Recorded, IndexError> {
    let roots: Vec<RootState> = index
        .roots()?
        .into_iter()
        .map(|r| RootState {
            on_disk: r.path.is_dir(),
            path: r.path,
            active: r.active,
        })
        .collect();
    let folders = roots
        .iter()
        .filter(|r| r.active && r.on_disk)
        .map(|r| count_folders(&r.path))
        .sum();
    let totals = index.totals()?;
    let settings: Value = index
        .meta("settings")?
        .and_then(|s| serde_json::from_str(&s).ok())
        .unwrap_or_default();
    let meta_time = |key: &str| -> Result<Option<i64>, IndexError> {
        Ok(index.meta(key)?.and_then(|s| s.parse().ok()))
    };
    let delivery = |key: &str| -> Result<Option<Delivery>, IndexError> {
        Ok(index.meta(key)?.and_then(|s| serde_json::from_str(&s).ok()))
    };
    Ok(Recorded {
        roots,
        folders,
        files_protected: totals.files_protected,
        unprotected: index.unprotected_by_reason()?,
        exclude: settings["exclude"]
            .as_array()
            .map(|rules| {
                rules
                    .iter()
                    .filter_map(|r| r.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default(),
        max_file_size: settings["max_file_size"].as_u64(),
        last_capture: totals.last_capture,
        started_at: meta_time("daemon_started_at")?,
        last_alive: meta_time("last_alive")?,
        email_sent: delivery("email_sent")?,
        email_failed: delivery("email_failed")?,
        watch_limit_hit: index.meta("watch_limit_hit")?.and_then(|s| s.parse().ok()),
        alerts: crate::incident::current_alerts(index, vault)?,
    })
}

/// Folders in and below `root`, the root included: inotify needs one watch each.
fn count_folders(root: &Path) -> u64 {
    WalkDir::new(root)
        .follow_links(false)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_dir())
        .count() as u64
}

// --- the checks ---------------------------------------------------------------

fn diagnose(facts: &Facts) -> Vec<Check> {
    let mut checks = vec![daemon_check(facts)];
    if !facts.vault_found {
        return checks;
    }
    if let Some(rec) = &facts.recorded {
        checks.push(folders_check(facts, rec));
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
    }
    checks
}

fn daemon_check(facts: &Facts) -> Check {
    let name = "daemon";
    if !facts.vault_found {
        return Check::problem(
            name,
            format!(
                "Nothing is protected yet: the undelete service has never run with \
                 the vault {}.",
                display_path(&facts.vault)
            ),
            format!(
                "Name the folders to protect in {CONFIG_FILE}, then start the service \
                 (if it is not installed yet, first: sudo undelete install-service):"
            ),
            vec!["sudo systemctl enable --now undelete".into()],
        );
    }
    let started = facts.recorded.as_ref().and_then(|r| r.started_at);
    if facts.daemon_running {
        let since = started
            .map(|at| format!(" (since {})", clock::spoken(at, facts.now)))
            .unwrap_or_default();
        return Check::ok(name, format!("The undelete service is running{since}."));
    }
    let last_seen = facts
        .recorded
        .as_ref()
        .and_then(|r| r.last_alive)
        .map(|at| format!(" It was last seen {}.", clock::spoken(at, facts.now)))
        .unwrap_or_default();
    Check::problem(
        name,
        format!(
            "The undelete service is not running: files changed or deleted now \
             cannot be brought back.{last_seen}"
        ),
        "Start the service, and have it start at every boot:".into(),
        vec!["sudo systemctl enable --now undelete".into()],
    )
}

fn folders_check(facts: &Facts, rec: &Recorded) -> Check {
    let name = "folders";
    let missing: Vec<&RootState> = rec
        .roots
        .iter()
        .filter(|r| r.active && !r.on_disk)
        .collect();
    // A folder dropped from the settings but gone from the disk too needs nothing.
    let dropped: Vec<&RootState> = rec
        .roots
        .iter()
        .filter(|r| !r.active && r.on_disk)
        .collect();
    let watched: Vec<String> = rec
        .roots
        .iter()
        .filter(|r| r.active && r.on_disk)
        .map(|r| display_path(&r.path))
        .collect();
    let details = json!({
        "protected": watched,
        "missing": paths_json(&missing),
        "no_longer_protected": paths_json(&dropped),
    });
    if rec.roots.is_empty() {
        let (fix, commands) = facts
            .started
            .change("Name the folders to protect (protect = ...)");
        return Check::problem(name, "No folder is protected yet.".into(), fix, commands);
    }
    if let Some(first) = missing.first() {
        return Check::problem(
            name,
            format!(
                "The protected folder {} is not there any more{}.",
                display_path(&first.path),
                more(missing.len())
            ),
            {
                let (fix, _) = facts.started.change("name its new place");
                format!(
                    "If it was deleted by mistake, the guided restore brings it back (the \
                     first command). If it was moved: {}",
                    lowercase_first(&fix)
                )
            },
            [
                vec![undelete(&facts.vault, "emergency")],
                facts.started.change("").1,
            ]
            .concat(),
        )
        .with_details(details);
    }
    if let Some(first) = dropped.first() {
        return Check::problem(
            name,
            format!(
                "The folder {} was protected before, but is not any more{}: \
                 changes in it are not copied.",
                display_path(&first.path),
                more(dropped.len())
            ),
            {
                let (fix, _) = facts.started.change("add it to protect");
                format!("If it should be protected: {}", lowercase_first(&fix))
            },
            facts.started.change("").1,
        )
        .with_details(details);
    }
    Check::ok(name, format!("Protected folders: {}.", watched.join(", "))).with_details(details)
}

fn paths_json(roots: &[&RootState]) -> Vec<String> {
    roots
        .iter()
        .map(|r| crate::words::json_path(&r.path).0)
        .collect()
}

/// " (and 2 more)" after the first of several.
fn more(n: usize) -> String {
    match n {
        0 | 1 => String::new(),
        n => format!(" (and {} more)", n - 1),
    }
}

fn watch_check(facts: &Facts, rec: &Recorded) -> Check {
    let name = "watch_limit";
    let folders = rec.folders;
    // Raised by the daemon's current run: older ones were fixed by a restart.
    let hit = facts.daemon_running
        && rec.alerts.iter().any(|a| {
            a.kind == "watch_limit" && rec.started_at.is_none_or(|start| a.raised_at >= start)
        });
    let Some(limit) = facts.watch_limit else {
        return Check::ok(
            name,
            format!(
                "The protected folders hold {} folders (the system's limit on watched \
                 folders could not be read).",
                count(folders)
            ),
        );
    };
    let suggested = folders.saturating_mul(2).max(MIN_SUGGESTED_WATCHES);
    let details = json!({
        "limit": limit,
        "folders": folders,
        "suggested_limit": suggested,
        "sysctl_line": format!("fs.inotify.max_user_watches={suggested}"),
        "sysctl_file": SYSCTL_FILE,
    });
    // Other programs need watches too: keep a tenth of the limit for them.
    let too_low = folders > limit / 10 * 9;
    if !too_low && !hit {
        return Check::ok(
            name,
            format!(
                "The system can watch {} folders; the protected folders hold {}.",
                count(limit),
                count(folders)
            ),
        )
        .with_details(details);
    }
    if hit {
        // The limit it ran into, not today's: raised since, the service is about to
        // add the missing watches by itself.
        let hit_at = rec.watch_limit_hit.unwrap_or(limit);
        let mut details = details;
        details["limit_hit"] = json!(hit_at);
        let raised = if limit > hit_at {
            format!(
                " The limit is {} now: the service adds the missing watches by itself \
                 within a few seconds.",
                count(limit)
            )
        } else {
            String::new()
        };
        return Check::problem(
            name,
            format!(
                "The service reached the system's limit of {} watched folders: \
                 changes in folders beyond it are noticed only every few minutes, \
                 and a file saved and deleted in between is lost.{raised}",
                count(hit_at)
            ),
            format!(
                "Raise the limit with the command below. To keep it after a restart of \
                 the computer, put the line fs.inotify.max_user_watches={suggested} in \
                 the file {SYSCTL_FILE}. The service adds the missing watches by itself \
                 within a few seconds; it needs no restart."
            ),
            vec![format!(
                "sudo sysctl -w fs.inotify.max_user_watches={suggested}"
            )],
        )
        .with_details(details);
    }
    let message = {
        format!(
            "The system can watch only {} folders, and the protected folders hold {}: \
             changes in folders beyond the limit are noticed only every few minutes, \
             and a file saved and deleted in between is lost.",
            count(limit),
            count(folders)
        )
    };
    Check::problem(
        name,
        message,
        format!(
            "Raise the limit with the first command. To keep it after a restart of \
             the computer, put the line fs.inotify.max_user_watches={suggested} in \
             the file {SYSCTL_FILE}. Then restart the service:"
        ),
        vec![
            format!("sudo sysctl -w fs.inotify.max_user_watches={suggested}"),
            restart(),
        ],
    )
    .with_details(details)
}

fn vault_space_check(facts: &Facts) -> Check {
    let name = "vault_space";
    let full_alert = facts
        .recorded
        .iter()
        .flat_map(|r| &r.alerts)
        .find(|a| a.kind == "vault_full");
    let Some(disk) = facts.disk else {
        return Check::ok(
            name,
            "The free space on the vault's disk could not be read.".into(),
        );
    };
    let details = json!({ "bytes_free": disk.free, "bytes_total": disk.total });
    let nearly_full = disk.free < GB || disk.free.saturating_mul(20) < disk.total;
    if !nearly_full && full_alert.is_none() {
        return Check::ok(
            name,
            format!(
                "The vault's disk has {} free of {}.",
                bytes(disk.free),
                bytes(disk.total)
            ),
        )
        .with_details(details);
    }
    let message = match full_alert {
        Some(alert) => format!(
            "The vault's disk was full ({}): some files could not be copied. \
             It has {} free now.",
            clock::spoken(alert.raised_at, facts.now),
            bytes(disk.free)
        ),
        None => format!(
            "The vault's disk is nearly full: {} free of {}. When it is full, new \
             and changed files are not copied.",
            bytes(disk.free),
            bytes(disk.total)
        ),
    };
    Check::problem(
        name,
        message,
        format!(
            "Make room on the disk that holds {}, or give the vault a bigger disk \
             (vault = in {CONFIG_FILE}) and restart the service. Never delete files \
             inside the vault folder by hand.",
            display_path(&facts.vault)
        ),
        Vec::new(),
    )
    .with_details(details)
}

/// Reasons the customer chose (rules) or that are not about ordinary files: told, not
/// a problem. The others mean files the customer expects to be protected are not.
fn reason_is_a_problem(code: &str) -> bool {
    matches!(code, "unreadable" | "vault_full" | "deleted_before_capture")
}

fn reason_words(code: &str, n: u64, rec: &Recorded) -> String {
    let n = count(n);
    match code {
        "excluded" if rec.exclude.is_empty() => format!("{n} excluded by a rule"),
        "excluded" => format!(
            "{n} excluded by the exclude rules ({})",
            rec.exclude.join(" ")
        ),
        "too_large" => match rec.max_file_size {
            Some(limit) => format!("{n} larger than the size limit ({})", bytes(limit)),
            None => format!("{n} larger than the size limit"),
        },
        "unreadable" => format!("{n} could not be read"),
        "vault_full" => format!("{n} not copied because the vault's disk was full"),
        "changing" => format!("{n} kept changing while being copied (copied once closed)"),
        "special" => format!("{n} not ordinary files (pipes, sockets or devices)"),
        other => format!("{n} not copied ({other})"),
    }
}

fn unprotected_check(facts: &Facts, rec: &Recorded) -> Check {
    let name = "unprotected_files";
    let details = Value::Object(
        rec.unprotected
            .iter()
            .map(|(code, n)| (code.clone(), json!(n)))
            .collect(),
    );
    let total: u64 = rec.unprotected.iter().map(|(_, n)| n).sum();
    if total == 0 {
        return Check::ok(
            name,
            format!(
                "Every file in the protected folders has a copy ({}).",
                files(rec.files_protected)
            ),
        )
        .with_details(details);
    }
    let reasons: Vec<String> = rec
        .unprotected
        .iter()
        .map(|(code, n)| reason_words(code, *n, rec))
        .collect();
    let message = format!(
        "{} in the protected folders {} no copy: {}.",
        files(total),
        if total == 1 { "has" } else { "have" },
        reasons.join(", ")
    );
    let by_rule = rec
        .unprotected
        .iter()
        .any(|(code, _)| matches!(code.as_str(), "excluded" | "too_large"));
    let hint = if by_rule {
        let (fix, commands) = facts
            .started
            .change("To protect those kept out by a rule, change exclude or max_file_size");
        let fix = fix.trim_end_matches(':');
        match commands.as_slice() {
            [] => format!(" {fix}"),
            commands => format!(" {fix}: {}.", commands.join(", then ")),
        }
    } else {
        String::new()
    };
    if !rec.unprotected.iter().any(|(c, _)| reason_is_a_problem(c)) {
        return Check::ok(name, format!("{message}{hint}")).with_details(details);
    }
    Check::problem(
        name,
        message,
        format!(
            "See which files and why with the command below. Files that could not \
             be read are copied as soon as they can be (check the disk and the \
             files' permissions); files missed because the vault's disk was full \
             are copied at the next scan once there is room.{hint}"
        ),
        vec!["undelete list --all".into()],
    )
    .with_details(details)
}

fn activity_check(facts: &Facts, rec: &Recorded) -> Check {
    let name = "last_capture";
    let now = facts.now;
    let last_copy = match rec.last_capture {
        Some(at) => format!("Last copy made: {}.", clock::spoken(at, now)),
        None => "No file has been copied yet.".to_owned(),
    };
    if !facts.daemon_running {
        return Check::ok(name, last_copy);
    }
    // A start-up scan records nothing until it ends: the start is a sign of life too.
    let alive = rec.last_alive.max(rec.started_at);
    if let Some(alive) = alive.filter(|at| now - at > STUCK_AFTER) {
        return Check::problem(
            name,
            format!(
                "The service is running but has recorded nothing for {} (since {}): \
                 it is stuck, or still busy with a very long scan.",
                age(now - alive),
                clock::spoken(alive, now)
            ),
            "Restart the service. If this comes back, call support with its log \
             (the second command shows it):"
                .into(),
            vec![restart(), "journalctl -u undelete --since -1d".into()],
        );
    }
    match rec.last_capture {
        Some(at) if now - at > QUIET_AFTER => Check::problem(
            name,
            format!(
                "No file has been copied for {} (last copy: {}). If people work in \
                 the protected folders, changes are not being noticed.",
                age(now - at),
                clock::spoken(at, now)
            ),
            "Restart the service, save a small file in a protected folder, and run \
             undelete doctor again: this check should then be OK."
                .into(),
            vec![restart()],
        ),
        _ => Check::ok(name, last_copy),
    }
}

/// "8 days", "3 hours", "45 minutes": how long, for people.
fn age(ns: i64) -> String {
    let plural = |n: i64, unit: &str| {
        if n == 1 {
            format!("1 {unit}")
        } else {
            format!("{n} {unit}s")
        }
    };
    match ns {
        ns if ns >= 2 * DAY => plural(ns / DAY, "day"),
        ns if ns >= 2 * 60 * MINUTE => plural(ns / (60 * MINUTE), "hour"),
        ns => plural(ns / MINUTE, "minute"),
    }
}

fn index_check(facts: &Facts) -> Check {
    let name = "index";
    let Some(first) = facts.index_problems.first() else {
        return Check::ok(
            name,
            "The index (the record of every version and deletion) is intact.".into(),
        );
    };
    Check::problem(
        name,
        format!(
            "The index (the record of every version and deletion) is damaged: {first}{}.",
            more(facts.index_problems.len())
        ),
        "Do not delete the vault: the copies in it are safe. Stop the service, \
         keep a copy of the whole vault folder, and call support."
            .into(),
        vec!["sudo systemctl stop undelete".into()],
    )
    .with_details(json!({ "problems": facts.index_problems }))
}

fn alerts_check(facts: &Facts, rec: &Recorded) -> Check {
    let name = "alerts";
    // The watch limit and a full disk have checks of their own.
    let recent: Vec<&Alert> = rec
        .alerts
        .iter()
        .filter(|a| !matches!(a.kind.as_str(), "watch_limit" | "vault_full"))
        .filter(|a| facts.now - a.raised_at <= RECENT_ALERTS)
        .collect();
    let Some(newest) = recent.first() else {
        return Check::ok(name, "No warnings in the last 7 days.".into());
    };
    // Its command goes on a line of its own, to be read out and typed as shown.
    let (words, command) = match newest.message.split_once(": undelete ") {
        Some((words, command)) => (format!("{words}:"), Some(format!("undelete {command}"))),
        None => (newest.message.clone(), None),
    };
    let mut commands: Vec<String> = command.into_iter().collect();
    commands.push(undelete(&facts.vault, "emergency"));
    Check::problem(
        name,
        format!(
            "Warning from {}{}: {words}",
            clock::spoken(newest.raised_at, facts.now),
            more(recent.len())
        ),
        "If it was not on purpose, bring the files back with the first command, or \
         step by step with the second:"
            .into(),
        commands,
    )
    .with_details(json!(recent))
}

/// Whether alert e-mails get through: a check only where e-mail is set up, or one
/// failed (the daemon keeps trying with each alert; it never stops for it).
fn email_check(facts: &Facts, rec: &Recorded) -> Option<Check> {
    let name = "alert_email";
    let failed = rec
        .email_failed
        .as_ref()
        .filter(|f| rec.email_sent.as_ref().is_none_or(|sent| sent.at < f.at));
    if let Some(failed) = failed {
        return Some(Check::problem(
            name,
            format!(
                "The alert e-mail to {} could not be sent ({}): {}",
                failed.to,
                clock::spoken(failed.at, facts.now),
                failed.error.as_deref().unwrap_or("no reason given"),
            ),
            format!(
                "Check the [alert.email] settings in {CONFIG_FILE} (server, port, security, \
                 user and password file), reload the service, then send a test message:"
            ),
            vec![
                "sudo systemctl reload undelete".into(),
                undelete(&facts.vault, "alerts test"),
            ],
        ));
    }
    let to = facts.email_to.as_ref()?;
    Some(Check::ok(
        name,
        match &rec.email_sent {
            Some(sent) => format!(
                "Alert e-mails go to {to}; the last one was sent {}.",
                crate::words::spoken_in_a_sentence(sent.at, facts.now)
            ),
            None => format!(
                "Alert e-mails go to {to}. None was sent yet; to try: {}",
                undelete(&facts.vault, "alerts test")
            ),
        },
    ))
}

/// `undelete ARGS`, naming the vault when it is not the service's default one.
fn undelete(vault: &Path, args: &str) -> String {
    crate::words::CommandLine::for_vault(vault)
        .arg(args)
        .to_string()
}

/// "Name the folders…" → "name the folders…", to follow a colon.
fn lowercase_first(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

fn restart() -> String {
    "sudo systemctl restart undelete".into()
}

// --- the text --------------------------------------------------------------------

/// Width of "PROBLEM" plus two spaces: messages and fixes line up after it.
const INDENT: &str = "         ";

fn text(vault: &Path, checks: &[Check]) -> String {
    let mut out = format!("Checking the vault {}\n\n", display_path(vault));
    for check in checks {
        let label = if check.ok { "OK       " } else { "PROBLEM  " };
        out.push_str(&fill(&check.message, label));
        if let Some(fix) = &check.fix {
            out.push_str(&fill(&format!("What to do: {fix}"), INDENT));
        }
        for command in &check.commands {
            out.push_str(&format!("{INDENT}    {command}\n"));
        }
    }
    let problems = checks.iter().filter(|c| !c.ok).count();
    out.push('\n');
    out.push_str(&match problems {
        0 => format!(
            "All {} checks are OK: protection is working.\n",
            checks.len()
        ),
        1 => "1 problem found. Fix it, then run undelete doctor again.\n".to_owned(),
        n => format!("{n} problems found. Fix them, then run undelete doctor again.\n"),
    });
    out
}

/// Wraps to 80 columns after `first` (the label), later lines indented under it.
/// Paths are never split.
fn fill(text: &str, first: &str) -> String {
    let options = textwrap::Options::new(80)
        .initial_indent(first)
        .subsequent_indent(INDENT)
        .break_words(false)
        .word_splitter(textwrap::WordSplitter::NoHyphenation);
    format!("{}\n", textwrap::fill(text, options))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000 * 1_000_000_000;
    /// The vault the service uses unless told otherwise.
    const DEFAULT_VAULT: &str = "/var/lib/undelete";

    #[test]
    fn the_fix_for_a_setting_follows_how_the_daemon_was_started() {
        let mut facts = healthy();
        if let Some(rec) = facts.recorded.as_mut() {
            rec.roots.clear();
        }
        let fix = |facts: &Facts| {
            let check = folders_check(facts, facts.recorded.as_ref().unwrap());
            (check.fix.unwrap(), check.commands)
        };
        facts.started = Started::Service {
            settings: CONFIG_FILE.into(),
        };
        let (words, commands) = fix(&facts);
        assert!(words.contains(CONFIG_FILE), "{words}");
        assert_eq!(commands, ["sudo systemctl reload undelete"]);
        facts.started = Started::ByHand {
            settings: "/srv/undelete.toml".into(),
            pid: 4321,
        };
        let (words, commands) = fix(&facts);
        assert!(words.contains("/srv/undelete.toml"), "{words}");
        assert_eq!(commands, ["sudo kill -HUP 4321"]);
        facts.started = Started::Flags { pid: 4321 };
        let (words, commands) = fix(&facts);
        assert!(words.contains("started with flags"), "{words}");
        assert!(commands.is_empty(), "{commands:?}");
    }

    fn healthy() -> Facts {
        Facts {
            now: NOW,
            vault: PathBuf::from(DEFAULT_VAULT),
            vault_found: true,
            daemon_running: true,
            watch_limit: Some(65_536),
            email_to: None,
            disk: Some(Disk {
                free: 500 * GB,
                total: 1000 * GB,
            }),
            index_problems: Vec::new(),
            started: Started::Unknown,
            recorded: Some(Recorded {
                roots: vec![RootState {
                    path: "/srv/share".into(),
                    active: true,
                    on_disk: true,
                }],
                folders: 1000,
                files_protected: 20_000,
                last_capture: Some(NOW - 5 * MINUTE),
                started_at: Some(NOW - 3 * DAY),
                last_alive: Some(NOW - MINUTE / 6),
                watch_limit_hit: None,
                ..Recorded::default()
            }),
        }
    }

    fn verdict<'a>(checks: &'a [Check], name: &str) -> &'a Check {
        checks
            .iter()
            .find(|c| c.check == name)
            .unwrap_or_else(|| panic!("no {name} check in {checks:#?}"))
    }

    fn recorded(facts: &mut Facts) -> &mut Recorded {
        facts.recorded.as_mut().unwrap()
    }

    #[test]
    fn a_healthy_service_passes_every_check() {
        let checks = diagnose(&healthy());
        assert_eq!(checks.len(), 8);
        assert!(checks.iter().all(|c| c.ok), "{checks:#?}");
    }

    #[test]
    fn a_silent_daemon_is_called_stuck_but_a_start_up_scan_is_not() {
        let mut facts = healthy();
        recorded(&mut facts).last_alive = Some(NOW - 2 * 60 * MINUTE);
        recorded(&mut facts).started_at = Some(NOW - 3 * DAY);
        let checks = diagnose(&facts);
        let check = verdict(&checks, "last_capture");
        assert!(!check.ok, "{check:#?}");
        assert!(check.message.contains("2 hours"), "{check:#?}");

        // Restarted a minute ago after a long stop: still on its start-up scan.
        recorded(&mut facts).started_at = Some(NOW - MINUTE);
        assert!(verdict(&diagnose(&facts), "last_capture").ok);

        // Stopped: the daemon check says so; this one does not pile on.
        facts.daemon_running = false;
        recorded(&mut facts).started_at = Some(NOW - 3 * DAY);
        assert!(verdict(&diagnose(&facts), "last_capture").ok);
    }

    #[test]
    fn files_kept_out_by_rules_are_told_but_unreadable_ones_are_a_problem() {
        let mut facts = healthy();
        recorded(&mut facts).unprotected = vec![("excluded".into(), 3), ("too_large".into(), 1)];
        recorded(&mut facts).exclude = vec!["*.tmp".into()];
        recorded(&mut facts).max_file_size = Some(1_000_000);
        let checks = diagnose(&facts);
        let check = verdict(&checks, "unprotected_files");
        assert!(check.ok, "{check:#?}");
        assert!(
            check
                .message
                .contains("3 excluded by the exclude rules (*.tmp)")
        );
        assert!(
            check
                .message
                .contains("1 larger than the size limit (1.0 MB)")
        );

        recorded(&mut facts)
            .unprotected
            .push(("unreadable".into(), 2));
        let checks = diagnose(&facts);
        let check = verdict(&checks, "unprotected_files");
        assert!(!check.ok, "{check:#?}");
        assert!(check.message.starts_with("6 files"), "{check:#?}");
    }

    #[test]
    fn a_watch_limit_alert_counts_only_from_the_current_run() {
        let mut facts = healthy();
        let alert = |raised_at| Alert {
            id: 1,
            kind: "watch_limit".into(),
            message: "limit reached".into(),
            raised_at,
            cleared_at: None,
        };
        recorded(&mut facts).alerts = vec![alert(NOW - 4 * DAY)];
        assert!(verdict(&diagnose(&facts), "watch_limit").ok);
        recorded(&mut facts).alerts = vec![alert(NOW - 2 * DAY)];
        assert!(!verdict(&diagnose(&facts), "watch_limit").ok);
    }

    #[test]
    fn old_mass_deletion_alerts_are_history() {
        let mut facts = healthy();
        recorded(&mut facts).alerts = vec![Alert {
            id: 1,
            kind: "mass_deletion:K7Q-4MD".into(),
            message: "Mass deletion: 600 files. To bring them back: undelete restore".into(),
            raised_at: NOW - 8 * DAY,
            cleared_at: None,
        }];
        assert!(verdict(&diagnose(&facts), "alerts").ok);
        recorded(&mut facts).alerts[0].raised_at = NOW - DAY;
        let checks = diagnose(&facts);
        let check = verdict(&checks, "alerts");
        assert!(!check.ok);
        assert_eq!(check.commands[0], "undelete restore");
    }

    #[test]
    fn a_small_or_nearly_full_vault_disk_is_a_problem() {
        for (free, total) in [(GB / 2, 2 * GB), (40 * GB, 1000 * GB)] {
            let mut facts = healthy();
            facts.disk = Some(Disk { free, total });
            assert!(
                !verdict(&diagnose(&facts), "vault_space").ok,
                "{free} {total}"
            );
        }
    }

    #[test]
    fn the_text_fits_80_columns() {
        let mut facts = healthy();
        facts.daemon_running = false;
        facts.watch_limit = Some(100);
        facts.index_problems = vec![
            "*** in database main *** Tree 4 page 4: btreeInitPage() returns error code 11".into(),
        ];
        recorded(&mut facts).unprotected = vec![("unreadable".into(), 2)];
        let checks = diagnose(&facts);
        let out = text(&facts.vault, &checks);
        for line in out.lines() {
            assert!(line.chars().count() <= 80, "{line:?} in\n{out}");
        }
        assert!(
            out.contains("\nPROBLEM  The undelete service is not running"),
            "{out}"
        );
        assert!(out.ends_with("Fix them, then run undelete doctor again.\n"));
    }
}
