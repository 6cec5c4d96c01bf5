//! What people read: versions that are versions, names that cannot disguise
//! themselves, times and errors said plainly, and messages that send people the
//! right way.

use std::fs;
use std::os::unix::ffi::OsStrExt;

use crate::common::*;

#[test]
fn versions_lists_only_what_can_be_brought_back_and_says_why_the_rest_cannot() {
    let mut env = TestEnv::new();
    env.write("work/draft.tmp", "scratch");
    env.write("work/kept.txt", "one");
    env.start_daemon_and_sync(&["--exclude", "*.tmp"]);
    env.write("work/kept.txt", "two, longer");
    env.sync();

    let out = env.run(&["versions", env.path("work/draft.tmp").to_str().unwrap()]);
    let text = output_text(&out);
    assert!(!out.status.success(), "no version to offer: {text}");
    assert!(text.contains("No version of"), "{text}");
    assert!(
        !text.contains("1) saved"),
        "an excluded file has no version: {text}"
    );
    assert!(text.contains("excluded by the rule *.tmp"), "{text}");

    let text = env.run_ok(&["versions", env.path("work/kept.txt").to_str().unwrap()]);
    assert!(
        text.contains("  1) saved") && text.contains("  2) saved"),
        "{text}"
    );
    assert!(!text.contains("  3)"), "{text}");
}

#[test]
fn a_name_with_a_right_to_left_override_is_shown_escaped_never_raw() {
    // Reads as "invoice-exe.pdf" on a screen that obeys the override.
    let name = "invoice-\u{202e}fdp.exe";
    let env = captured_then_deleted(&[(name, "MZ")]);
    let listed = env.run_ok(&["list"]);
    assert!(!listed.contains('\u{202e}'), "{listed:?}");
    assert!(
        listed.contains("invoice-\\xe2\\x80\\xaefdp.exe"),
        "{listed}"
    );
    let (success, report, output) = restore_json(&env, &["--all-deleted", "--dry-run"]);
    assert!(success, "{output}");
    assert_eq!(
        report["files"][0]["path"],
        env.json_path(name),
        "JSON keeps the exact name"
    );
    let text = env.run_ok(&["restore", "--all-deleted", "--dry-run"]);
    assert!(!text.contains('\u{202e}'), "{text:?}");
    // A control character in a name cannot recolour or rewrite the screen either.
    let env = captured_then_deleted(&[(std::ffi::OsStr::from_bytes(b"a\x1b[2Jb"), "x")]);
    let listed = env.run_ok(&["list"]);
    assert!(!listed.contains('\x1b'), "{listed:?}");
}

#[test]
fn a_time_after_2262_is_too_far_in_the_future_not_not_a_time() {
    let env = captured_then_deleted(&[("a.txt", "a")]);
    let share = env.json_path("");
    let out = env.run(&["restore", &share, "--as-of", "2262-04-12T00:00:00Z"]);
    let text = output_text(&out);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("too far in the future"), "{text}");
    assert!(!text.contains("is not a time"), "{text}");
}

#[test]
fn an_error_names_its_cause_once() {
    let env = TestEnv::new();
    let file = env.root.join("a-file");
    fs::write(&file, "").unwrap();
    let out = bare_command()
        .arg("--vault")
        .arg(file.join("vault"))
        .args(["daemon", "--protect", env.share.to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert_eq!(stderr.matches("Not a directory").count(), 1, "{stderr}");
}

#[test]
fn times_accept_yesterday_today_and_a_clock_time() {
    let env = captured_then_deleted(&[("a.txt", "a")]);
    for t in ["yesterday", "today", "today 00:00", "00:00"] {
        let (success, report, output) = restore_json(&env, &["--deleted-after", t, "--dry-run"]);
        assert!(success, "{t}: {output}");
        assert_eq!(report["recovered"], 1, "{t}: {report}");
    }
}

#[test]
fn every_json_flag_says_what_it_does_in_help() {
    let env = TestEnv::new();
    for command in [
        "status",
        "list",
        "incidents",
        "restore",
        "verify",
        "versions",
        "doctor",
        "rebuild-index",
        "report",
    ] {
        let help = env.run_ok(&[command, "--help"]);
        let line = help
            .lines()
            .find(|l| l.trim_start().starts_with("--json"))
            .unwrap_or_else(|| panic!("{command} has no --json: {help}"));
        assert!(
            line.trim_start().trim_start_matches("--json").trim().len() > 10,
            "{command}'s --json has no help line: {help}"
        );
    }
}

#[test]
fn doctors_fix_for_an_excluded_file_fits_a_daemon_started_with_flags() {
    let mut env = TestEnv::new();
    env.write("a.tmp", "scratch");
    env.start_daemon_and_sync(&["--exclude", "*.tmp"]);
    let out = env.run(&["doctor", "--json"]);
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let check = answer["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == "unprotected_files")
        .unwrap_or_else(|| panic!("{answer:#}"));
    let message = check["message"].as_str().unwrap();
    assert!(message.contains("started with flags"), "{message}");
    assert!(!message.contains("restart the service"), "{message}");
}

#[test]
fn status_right_after_install_service_says_it_has_not_started_and_how_to_start_it() {
    let root = tempfile::tempdir().unwrap();
    let out = bare_command()
        .args(["install-service", "--root"])
        .arg(root.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", output_text(&out));
    let vault = root.path().join("var/lib/undelete");
    let out = bare_command()
        .arg("--vault")
        .arg(&vault)
        .arg("status")
        .output()
        .unwrap();
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(3), "protection is off: {text}");
    assert!(text.contains("has not started yet"), "{text}");
    assert!(text.contains("daemon --protect"), "how to start it: {text}");
    assert!(!text.contains("os error"), "{text}");
}

#[test]
fn a_restore_of_a_folder_never_protected_says_so_and_names_the_protected_ones() {
    let env = captured_then_deleted(&[("a.txt", "a")]);
    let elsewhere = env.root.join("never-protected");
    let out = env.run(&["restore", "--under", elsewhere.to_str().unwrap()]);
    let text = output_text(&out);
    assert!(!out.status.success(), "{text}");
    let words = text.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(words.contains("was never in a protected folder"), "{text}");
    assert!(words.contains(env.share.to_str().unwrap()), "{text}");
}

/// A folder whose path, with spaces, is longer than a line: wherever it is
/// wrapped it must stand whole on one line, to be read aloud and copied.
const LONG_FOLDER: &str =
    "Office files/Accounts and tax returns/Year 2025, final version of the books";

/// Whether some line of `text` holds `path` whole.
fn whole_on_a_line(text: &str, path: &std::path::Path) -> bool {
    let path = path.to_str().unwrap();
    text.lines().any(|line| line.contains(path))
}

#[test]
fn a_long_folder_with_spaces_stays_whole_in_the_warning_and_the_guided_restore() {
    let mut env = TestEnv::new();
    for i in 0..6 {
        env.write(format!("{LONG_FOLDER}/IMG_{i:04}.jpg"), content(i, 100));
    }
    env.start_daemon_and_sync(&["--alert-files", "5"]);
    env.remove_and_sync(&["Office files"]);
    let folder = env.path(LONG_FOLDER);
    assert!(folder.to_str().unwrap().len() > 80);

    let status = env.run_ok(&["status"]);
    assert!(status.starts_with("WARNING"), "{status}");
    assert!(whole_on_a_line(&status, &folder), "{status}");

    let code = env.incidents_json()[0]["code"].as_str().unwrap().to_owned();
    let to = env
        .root
        .join("Restored for the office/after the deletion of last night, kept");
    let out = env.run(&[
        "emergency",
        "--yes",
        "--incident",
        &code,
        "--to",
        to.to_str().unwrap(),
    ]);
    let text = output_text(&out);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("Chosen: "), "{text}");
    assert!(whole_on_a_line(&text, &folder), "{text}");
    assert!(text.contains("The files will go into"), "{text}");
    assert!(whole_on_a_line(&text, &to), "{text}");

    let text = env.run_ok(&["emergency", "--yes", "--under", folder.to_str().unwrap()]);
    assert!(text.contains("Chosen: files deleted from"), "{text}");
    assert!(whole_on_a_line(&text, &folder), "{text}");
}
