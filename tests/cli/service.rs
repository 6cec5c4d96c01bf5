//! `undelete install-service`, tried as a new user would, in a temporary root:
//! the files, their modes, a second install that keeps the settings, and the
//! unit checked by systemd's own tool where it exists.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

use crate::common::*;

const UNIT: &str = include_str!("../../contrib/undelete.service");
const MOUNT_UNIT: &str = include_str!("../../contrib/undelete-mount.service");
const EXAMPLE: &str = include_str!("../../docs/config.example.toml");

fn install(root: &Path) -> Output {
    let out = bare_command()
        .args(["install-service", "--root"])
        .arg(root)
        .output()
        .expect("run undelete install-service");
    assert!(out.status.success(), "{}", output_text(&out));
    out
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

#[test]
fn install_service_puts_the_unit_settings_and_vault_in_place() {
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    let out = install(root);
    let shown = String::from_utf8(out.stdout).unwrap();

    let unit = root.join("etc/systemd/system/undelete.service");
    assert_eq!(fs::read_to_string(&unit).unwrap(), UNIT);
    assert_eq!(mode(&unit), 0o644);
    let mount_unit = root.join("etc/systemd/system/undelete-mount.service");
    assert_eq!(fs::read_to_string(&mount_unit).unwrap(), MOUNT_UNIT);
    assert_eq!(mode(&mount_unit), 0o644);
    // Previous Versions are offered, not switched on: the reader is told how.
    let mount_step = shown
        .find("sudo systemctl enable --now undelete-mount")
        .unwrap_or_else(|| panic!("{shown}"));
    assert!(
        shown[mount_step..].contains("sudo undelete samba-config"),
        "{shown}"
    );
    let config = root.join("etc/undelete/config.toml");
    assert_eq!(fs::read_to_string(&config).unwrap(), EXAMPLE);
    assert_eq!(mode(&config), 0o600, "the settings may hold a secret");
    let vault = root.join("var/lib/undelete");
    assert!(vault.is_dir());
    assert_eq!(mode(&vault), 0o700, "the vault is root's only");

    // Not the running system: systemctl is left to the reader, in order.
    let reload = shown
        .find("sudo systemctl daemon-reload")
        .unwrap_or_else(|| panic!("{shown}"));
    let edit = shown.find("sudoedit /etc/undelete/config.toml").unwrap();
    let start = shown.find("sudo systemctl enable --now undelete").unwrap();
    let check = shown.find("sudo undelete doctor").unwrap();
    assert!(edit < reload && reload < start && start < check, "{shown}");
    // The program is not in the temporary root: the reader is told where it goes,
    // into that root (where the unit finds it once the root is the system).
    assert!(
        shown.contains(&format!(
            "sudo install {BIN} {}/usr/local/bin/undelete\n",
            root.display()
        )),
        "{shown}"
    );
    for line in shown.lines() {
        if !line.contains(&root.display().to_string()) && !line.contains(BIN) {
            assert!(line.chars().count() <= 80, "{line:?} is too wide");
        }
    }

    // The installed settings are read as they are, and doctor works from them.
    let vault_arg = vault.to_str().unwrap();
    let out = bare_command()
        .arg("--config")
        .arg(&config)
        .args(["--vault", vault_arg, "doctor"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        shown.contains("PROBLEM  Nothing is protected yet: the undelete service has never run"),
        "{}",
        output_text(&out)
    );
}

#[test]
fn a_unit_edited_by_hand_is_kept_beside_ours() {
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    install(root);
    let unit = root.join("etc/systemd/system/undelete.service");
    let edited = format!("{UNIT}# ReadWritePaths=/srv/extra\n");
    fs::write(&unit, &edited).unwrap();

    let shown = String::from_utf8(install(root).stdout).unwrap();
    assert_eq!(fs::read_to_string(&unit).unwrap(), UNIT);
    let kept = root.join("etc/systemd/system/undelete.service.bak");
    assert_eq!(fs::read_to_string(&kept).unwrap(), edited);
    assert!(shown.contains("undelete.service.bak"), "{shown}");
    // Installing again with our unit in place keeps nothing more.
    install(root);
    assert!(
        !root
            .join("etc/systemd/system/undelete.service.bak.2")
            .exists()
    );
}

#[test]
fn a_second_install_never_overwrites_the_settings() {
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    install(root);
    let config = root.join("etc/undelete/config.toml");
    let mine = "vault = \"/data/undelete\"\nprotect = [\"/srv/office\"]\n";
    fs::write(&config, mine).unwrap();
    let unit = root.join("etc/systemd/system/undelete.service");
    fs::write(&unit, "an older unit").unwrap();

    let out = install(root);
    let shown = String::from_utf8(out.stdout).unwrap();
    assert_eq!(fs::read_to_string(&config).unwrap(), mine);
    assert_eq!(
        fs::read_to_string(&unit).unwrap(),
        UNIT,
        "the unit is ours to update"
    );
    assert!(shown.contains("kept as they were"), "{shown}");
    assert!(shown.contains("sudo systemctl restart undelete"), "{shown}");
    assert!(!shown.contains("sudoedit"), "{shown}");
}

#[test]
fn the_unit_passes_systemd_analyze_verify() {
    let Ok(version) = Command::new("systemd-analyze").arg("--version").output() else {
        eprintln!("SKIPPED: systemd-analyze is not installed here");
        return;
    };
    assert!(version.status.success());
    let root = tempfile::tempdir().unwrap();
    install(root.path());
    for name in ["undelete.service", "undelete-mount.service"] {
        // verify insists the program exists: point the unit at the binary under test.
        let unit = fs::read_to_string(root.path().join("etc/systemd/system").join(name))
            .unwrap()
            .replace("/usr/local/bin/undelete", BIN);
        let path = root.path().join(name);
        fs::write(&path, unit).unwrap();
        let out = Command::new("systemd-analyze")
            .arg("verify")
            .arg(&path)
            .output()
            .unwrap();
        assert!(out.status.success(), "{name}: {}", output_text(&out));
        // Unknown or misspelt settings are only warnings, and the exit code stays 0.
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let about_ours: Vec<&str> = said.lines().filter(|l| l.contains(name)).collect();
        assert!(about_ours.is_empty(), "{}", output_text(&out));
    }
}

/// The capabilities the unit's `CapabilityBoundingSet=` leaves, by number.
fn unit_capabilities() -> Vec<u32> {
    let line = UNIT
        .lines()
        .find_map(|l| l.strip_prefix("CapabilityBoundingSet="))
        .expect("the unit limits the service's capabilities");
    line.split_whitespace()
        .map(|name| match name {
            "CAP_DAC_OVERRIDE" => 1,
            "CAP_DAC_READ_SEARCH" => 2,
            "CAP_KILL" => 5,
            "CAP_SYS_PTRACE" => 19,
            "CAP_SYS_ADMIN" => 21,
            other => panic!("{other}: add its number (capability.h) to this test"),
        })
        .collect()
}

/// Run with only the powers the unit gives it, the daemon still sees changes with
/// fanotify and says who deleted a file: without `CAP_SYS_ADMIN` it would fall
/// back to inotify, and the installed service would never name anyone (nor could
/// the breaker act).
#[test]
fn the_service_with_the_units_powers_only_says_who_deleted_a_file() {
    let test = "the_service_with_the_units_powers_only_says_who_deleted_a_file";
    if !is_root() {
        eprintln!("SKIPPED {test}: the service runs as root, and so must this test");
        return;
    }
    let mut env = TestEnv::new();
    env.write("letters/a.txt", "a letter");
    env.daemon_capabilities = Some(unit_capabilities());
    env.start_daemon_and_sync(&["--events", "auto"]);
    let status = env.status_json();
    assert_eq!(
        status["event_source"]["source"],
        "fanotify",
        "with the unit's capabilities: {}\n{}",
        status["event_source"],
        env.daemon_log()
    );
    env.remove_and_sync(&["letters/a.txt"]);
    let deleted = env.list_by_path(&[]);
    let e = entry(&deleted, &env.json_path("letters/a.txt"));
    assert_eq!(e["deleted_by"]["user"], "root", "{e}");
    assert_eq!(e["deleted_by"]["via"], "local", "{e}");
}
