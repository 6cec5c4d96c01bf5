use std::path::PathBuf;

use super::folders::folders_check;
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

pub(crate) fn healthy() -> Facts {
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
        shares: None,
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

pub(crate) fn recorded(facts: &mut Facts) -> &mut Recorded {
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
        kind: crate::model::AlertKind::WatchLimit,
        message: "limit reached".into(),
        paths: Vec::new(),
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
        kind: crate::model::AlertKind::MassDeletion("K7Q-4MD".into()),
        message: "Mass deletion: 600 files. To bring them back: undelete restore".into(),
        paths: Vec::new(),
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
