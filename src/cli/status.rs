//! `undelete status`: one screen a customer can read out.

use std::process::ExitCode;

use serde_json::json;

use crate::clock;
use crate::config::Config;
use crate::control;
use crate::index::MetaKey;
use crate::words::{bytes, count, display_path, files, whole_in, wrap};

/// Protection is off (see `STATUS_EXIT_CODES`).
const OFF: u8 = 3;

pub fn run(config: &Config, as_json: bool) -> anyhow::Result<ExitCode> {
    let (vault, index) = match super::open_vault(config) {
        Err(e) if e.downcast_ref::<super::NeverStarted>().is_some() => {
            if as_json {
                println!("{}", json!({ "daemon_running": false, "started": false }));
            } else {
                println!("Protection is OFF: the undelete service has not started yet.");
                println!("{}", wrap(&super::start_words(&config.vault)));
            }
            return Ok(ExitCode::from(OFF));
        }
        opened => opened?,
    };
    let running = control::is_running(&vault.socket_path());
    let now = clock::now();
    // One moment's view: what the daemon changes meanwhile is either all seen or not at all.
    let (roots, totals, alerts, history, since, settings_read_at, source) =
        index.snapshot(|index| {
            let roots: Vec<_> = index.roots()?.into_iter().filter(|r| r.active).collect();
            let meta_time = |key| -> crate::index::Result<Option<i64>> {
                Ok(index.meta(key)?.and_then(|s| s.parse::<i64>().ok()))
            };
            Ok((
                roots,
                index.totals()?,
                crate::incident::current_alerts(index, vault.root())?,
                // Alerts that ended (everything back, or the deletion was wanted): history now.
                crate::incident::recent_history(index, now)?,
                meta_time(MetaKey::DaemonStartedAt)?,
                meta_time(MetaKey::SettingsReadAt)?,
                index
                    .meta(MetaKey::EventSource)?
                    .and_then(|s| serde_json::from_str::<crate::model::EventSourceNote>(&s).ok()),
            ))
        })?;
    let free = crate::vault::free_space(vault.root());
    // The copies the index knows of, kept as they come and go rather than walked: a
    // copy the index does not know of (a crash between naming and recording it) is
    // removed when the service starts, and `verify` counts any there.
    let used = totals.object_bytes;
    if as_json {
        let value = json!({
            "daemon_running": running,
            "daemon_started_at": since.filter(|_| running).map(clock::rfc3339),
            "protected_folders": roots.iter().map(|r| crate::words::json_path(&r.path).0).collect::<Vec<_>>(),
            "files_protected": totals.files_protected,
            "bytes_protected": totals.bytes_protected,
            "files_not_protected": totals.files_unprotected,
            "deleted_recoverable": totals.deleted_recoverable,
            "deleted_lost": totals.deleted_lost,
            "deleted_restored": totals.deleted_restored,
            "vault": {
                "path": vault.root(),
                "bytes_used": used,
                "bytes_free": free,
            },
            "last_capture": totals.last_capture.map(clock::rfc3339),
            // When the daemon last read its settings (at start, or on SIGHUP).
            "settings_read_at": settings_read_at.map(clock::rfc3339_exact),
            // How the running service notices changes, and why that way.
            "event_source": source.as_ref().filter(|_| running),
            "alerts": alerts.iter().map(|a| json!({
                "kind": a.kind,
                "message": a.message,
                "raised_at": clock::rfc3339(a.raised_at),
            })).collect::<Vec<_>>(),
            "alert_history": history.iter().map(|(entry, line)| json!({
                "kind": entry.alert.kind,
                "message": line.one_line(),
                "raised_at": clock::rfc3339(entry.alert.raised_at),
                "closed_at": entry.alert.cleared_at.map(clock::rfc3339),
            })).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(exit_code(running));
    }

    for alert in &alerts {
        println!(
            "{}",
            wrap(&whole_in(
                &format!(
                    "WARNING ({}): {}",
                    clock::spoken(alert.raised_at, now),
                    alert.message
                ),
                &alert.paths
            ))
        );
        println!();
    }
    match (running, since) {
        (true, Some(since)) => println!(
            "Protection is ON: the undelete service is running (since {}).",
            clock::spoken(since, now)
        ),
        (true, None) => println!("Protection is ON: the undelete service is running."),
        (false, _) => {
            println!("Protection is OFF: the undelete service is not running.");
            println!("Files changed or deleted now cannot be brought back.");
        }
    }
    if let Some(note) = source.as_ref().filter(|_| running) {
        println!(
            "{}",
            wrap(&format!(
                "Changes are noticed with {}: {}",
                note.source, note.why
            ))
        );
    }
    if roots.is_empty() {
        println!("No folders are protected yet.");
    } else {
        println!("Protected folders:");
        for root in &roots {
            println!("  {}", display_path(&root.path));
        }
    }
    println!(
        "Files protected: {} ({})",
        count(totals.files_protected),
        bytes(totals.bytes_protected)
    );
    if totals.files_unprotected > 0 {
        println!(
            "Not protected: {} (excluded, too large or unreadable; see: undelete list --all)",
            files(totals.files_unprotected)
        );
    }
    println!(
        "Deleted files that can be brought back: {}",
        count(totals.deleted_recoverable)
    );
    if totals.deleted_lost > 0 {
        println!(
            "Deleted files that cannot be brought back: {}",
            count(totals.deleted_lost)
        );
    }
    if totals.deleted_restored > 0 {
        println!(
            "Deleted files brought back by a restore: {}",
            count(totals.deleted_restored)
        );
    }
    match free {
        Some(free) => println!(
            "Vault: {} ({} used, {} free)",
            vault.root().display(),
            bytes(used),
            bytes(free)
        ),
        None => println!("Vault: {} ({} used)", vault.root().display(), bytes(used)),
    }
    match totals.last_capture {
        Some(at) => println!("Last copy made: {}", clock::spoken(at, now)),
        None => println!("Last copy made: never"),
    }
    // Below what matters now: these need nothing done.
    for (_, line) in &history {
        println!();
        println!("{}", line.text(""));
    }
    Ok(exit_code(running))
}

fn exit_code(running: bool) -> ExitCode {
    if running {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(OFF)
    }
}
