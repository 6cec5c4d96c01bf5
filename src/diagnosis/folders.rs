//! The checks of what is protected: are the protected folders there, is every
//! folder in them watched (the event source and its limit), and which files in
//! them have no copy, and why.

use serde_json::json;

use super::fix::{lowercase_first, more, restart, undelete};
use super::*;
use crate::model::AlertKind;
use crate::words::{bytes, count, display_path, files};

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
