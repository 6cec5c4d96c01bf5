//! The checks of the service itself and of its vault: is it running, is it
//! still recording, is there room for copies, is the index intact.

use serde_json::json;

use super::fix::{more, restart};
use super::*;
use crate::clock;
use crate::model::AlertKind;
use crate::words::{bytes, display_path};

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
