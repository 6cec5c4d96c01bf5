//! The checks: each a verdict on the facts, with the fix in words and the
//! commands it names. No I/O here.

use std::path::Path;

use serde_json::json;

use super::*;
use crate::clock;
use crate::model::AlertKind;
use crate::words::{bytes, count, display_path, files};

impl Started {
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

pub(super) fn daemon_check(facts: &Facts) -> Check {
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

pub(super) fn folders_check(facts: &Facts, rec: &Recorded) -> Check {
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

pub(super) fn paths_json(roots: &[&RootState]) -> Vec<String> {
    roots
        .iter()
        .map(|r| crate::words::json_path(&r.path).0)
        .collect()
}

/// " (and 2 more)" after the first of several.
pub(super) fn more(n: usize) -> String {
    match n {
        0 | 1 => String::new(),
        n => format!(" (and {} more)", n - 1),
    }
}

/// Which event source the running service uses, and why; nothing when none runs.
pub(super) fn event_source_check(facts: &Facts, rec: &Recorded) -> Option<Check> {
    let note = rec.event_source.as_ref().filter(|_| facts.daemon_running)?;
    Some(
        Check::ok(
            "event_source",
            format!("Changes are noticed with {}: {}", note.source, note.why),
        )
        .with_details(json!({ "source": note.source, "why": note.why })),
    )
}

pub(super) fn watch_check(facts: &Facts, rec: &Recorded) -> Check {
    let name = "watch_limit";
    let folders = rec.folders;
    if facts.daemon_running
        && rec
            .event_source
            .as_ref()
            .is_some_and(|n| n.source == "fanotify")
    {
        return Check::ok(
            name,
            format!(
                "With fanotify the service needs no watch per folder; the protected \
                 folders hold {} folders.",
                count(folders)
            ),
        )
        .with_details(json!({ "folders": folders, "source": "fanotify" }));
    }
    // Raised by the daemon's current run: older ones were fixed by a restart.
    let hit = facts.daemon_running
        && rec.alerts.iter().any(|a| {
            a.kind == AlertKind::WatchLimit
                && rec.started_at.is_none_or(|start| a.raised_at >= start)
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

pub(super) fn vault_space_check(facts: &Facts) -> Check {
    let name = "vault_space";
    let full_alert = facts
        .recorded
        .iter()
        .flat_map(|r| &r.alerts)
        .find(|a| a.kind == AlertKind::VaultFull);
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
pub(super) fn reason_is_a_problem(code: &str) -> bool {
    matches!(code, "unreadable" | "vault_full" | "deleted_before_capture")
}

pub(super) fn reason_words(code: &str, n: u64, rec: &Recorded) -> String {
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

pub(super) fn unprotected_check(facts: &Facts, rec: &Recorded) -> Check {
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

pub(super) fn activity_check(facts: &Facts, rec: &Recorded) -> Check {
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
pub(super) fn age(ns: i64) -> String {
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

pub(super) fn index_check(facts: &Facts) -> Check {
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

pub(super) fn alerts_check(facts: &Facts, rec: &Recorded) -> Check {
    let name = "alerts";
    // The watch limit and a full disk have checks of their own.
    let recent: Vec<&Alert> = rec
        .alerts
        .iter()
        .filter(|a| !matches!(a.kind, AlertKind::WatchLimit | AlertKind::VaultFull))
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
pub(super) fn email_check(facts: &Facts, rec: &Recorded) -> Option<Check> {
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
pub(super) fn undelete(vault: &Path, args: &str) -> String {
    crate::words::CommandLine::for_vault(vault)
        .arg(args)
        .to_string()
}

/// "Name the folders…" → "name the folders…", to follow a colon.
pub(super) fn lowercase_first(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

pub(super) fn restart() -> String {
    "sudo systemctl restart undelete".into()
}
