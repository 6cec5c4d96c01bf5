//! Restore: plan, safe execution, the recovered-versus-lost report, incidents
//! and the guided emergency.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde_json::Value;

use crate::common::{TestEnv, captured_then_deleted, content, output_text, restore_json};

/// Every file below `dir` with its content, mode and mtime, by relative path.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, (Vec<u8>, u32, i64)> {
    let mut out = BTreeMap::new();
    for entry in walkdir::WalkDir::new(dir).min_depth(1) {
        let entry = entry.expect("walk");
        let meta = entry.path().symlink_metadata().expect("stat");
        let data = if meta.is_file() {
            fs::read(entry.path()).expect("read")
        } else if meta.file_type().is_symlink() {
            fs::read_link(entry.path())
                .expect("readlink")
                .as_os_str()
                .as_bytes()
                .to_vec()
        } else {
            Vec::new()
        };
        let rel = entry.path().strip_prefix(dir).expect("below").to_owned();
        let mtime = if meta.is_dir() { 0 } else { meta.mtime() };
        out.insert(rel, (data, meta.mode() & 0o7777, mtime));
    }
    out
}

/// The seed's night at small scale: a folder of photos with some files too big to
/// copy and some excluded, deleted at once.
fn night_of_photos(env: &mut TestEnv) -> (usize, usize, usize) {
    let (mut ok, mut big, mut tmp) = (0, 0, 0);
    for i in 0..200 {
        let folder = format!("photos/day{}", i % 4);
        let (name, len) = match i % 20 {
            0 => {
                big += 1;
                (format!("{folder}/raw{i}.cr2"), 4096)
            }
            1 => {
                tmp += 1;
                (format!("{folder}/edit{i}.tmp"), 100)
            }
            _ => {
                ok += 1;
                (format!("{folder}/img{i}.jpg"), 200 + i * 3)
            }
        };
        let path = env.write(&name, content(i, len));
        fs::set_permissions(
            &path,
            fs::Permissions::from_mode(if i % 3 == 0 { 0o600 } else { 0o644 }),
        )
        .unwrap();
        let mtime = 1_600_000_000 + i as i64 * 3600;
        rustix::fs::utimensat(
            rustix::fs::CWD,
            &path,
            &rustix::fs::Timestamps {
                last_access: rustix::fs::Timespec {
                    tv_sec: mtime,
                    tv_nsec: 0,
                },
                last_modification: rustix::fs::Timespec {
                    tv_sec: mtime,
                    tv_nsec: 0,
                },
            },
            rustix::fs::AtFlags::empty(),
        )
        .unwrap();
    }
    fs::set_permissions(env.path("photos/day2"), fs::Permissions::from_mode(0o750)).unwrap();
    env.start_daemon_and_sync(&["--exclude", "*.tmp", "--max-file-size", "2KiB"]);
    (ok, big, tmp)
}

#[test]
fn the_night_of_deleted_photos_comes_back_with_an_exact_report() {
    let mut env = TestEnv::new();
    let (ok, big, tmp) = night_of_photos(&mut env);
    let before = snapshot(&env.path("photos"));
    env.remove_and_sync(&["photos"]);

    let report_file = env.root.join("report.json");
    let under = env.path("photos");
    let (success, report, _) = restore_json(
        &env,
        &[
            "--under",
            under.to_str().unwrap(),
            "--report",
            report_file.to_str().unwrap(),
        ],
    );
    assert!(
        success,
        "every loss was expected, so the exit code is 0: {report}"
    );
    assert_eq!(report["recovered"], ok as u64, "{report}");
    assert_eq!(report["lost"], (big + tmp) as u64);
    assert_eq!(report["already_present"], 0);
    assert_eq!(
        report["lost_by_kind"]["images"], big as u64,
        "the .cr2 files are images"
    );
    let saved: Value = serde_json::from_slice(&fs::read(&report_file).unwrap()).unwrap();
    assert_eq!(saved["recovered"], report["recovered"]);
    for file in report["files"].as_array().unwrap() {
        let path = file["path"].as_str().unwrap();
        match file["outcome"].as_str().unwrap() {
            "recovered" => assert_eq!(file["restored_to"], file["path"]),
            "lost" if path.ends_with(".tmp") => {
                assert!(file["reason"].as_str().unwrap().contains("*.tmp"), "{file}")
            }
            "lost" => assert!(
                file["reason"].as_str().unwrap().contains("capture limit"),
                "{file}"
            ),
            other => panic!("unexpected outcome {other}: {file}"),
        }
    }
    let after = snapshot(&env.path("photos"));
    for (rel, (data, mode, mtime)) in &before {
        let name = rel.to_string_lossy();
        if name.ends_with(".tmp") || name.ends_with(".cr2") {
            assert!(!after.contains_key(rel), "{name} was never copied");
            continue;
        }
        let got = after
            .get(rel)
            .unwrap_or_else(|| panic!("{name} not restored"));
        assert_eq!(&got.0, data, "{name}: content");
        assert_eq!(got.1, *mode, "{name}: mode");
        assert_eq!(got.2, *mtime, "{name}: mtime");
    }
    assert_eq!(
        after.len(),
        before.len() - big - tmp,
        "nothing extra was created"
    );

    // The text report was saved in the vault, and a second run changes nothing.
    let saved_reports = fs::read_dir(env.vault.join("reports")).unwrap().count();
    assert!(saved_reports >= 2, "text and JSON reports are saved");
    let (success, again, _) = restore_json(&env, &["--under", under.to_str().unwrap()]);
    assert!(success);
    assert_eq!(again["recovered"], 0, "{again}");
    assert_eq!(again["already_present"], ok as u64);
    assert_eq!(snapshot(&env.path("photos")), after);
}

#[test]
fn restore_to_a_new_folder_and_dry_run() {
    let mut env = TestEnv::new();
    env.write("docs/a.txt", "alpha");
    env.write("docs/deep/b.txt", "beta");
    env.start_daemon_and_sync(&[]);
    env.remove_and_sync(&["docs"]);

    let out_dir = env.root.join("recovered");
    let (success, plan, _) = restore_json(
        &env,
        &[
            "--all-deleted",
            "--to",
            out_dir.to_str().unwrap(),
            "--dry-run",
        ],
    );
    assert!(success);
    assert_eq!(plan["dry_run"], true);
    assert_eq!(plan["recovered"], 2, "{plan}");
    assert!(!out_dir.exists(), "a dry run writes nothing");
    assert!(!env.path("docs").exists());

    let (success, report, _) =
        restore_json(&env, &["--all-deleted", "--to", out_dir.to_str().unwrap()]);
    assert!(success, "{report}");
    assert_eq!(fs::read(out_dir.join("docs/a.txt")).unwrap(), b"alpha");
    assert_eq!(fs::read(out_dir.join("docs/deep/b.txt")).unwrap(), b"beta");
    assert!(
        !env.path("docs").exists(),
        "the original place is untouched"
    );
}

#[test]
fn a_different_file_with_the_same_name_gets_the_restored_one_beside_it() {
    let mut env = TestEnv::new();
    env.write("report.docx", "the old report");
    env.write("same.txt", "unchanged");
    env.start_daemon_and_sync(&[]);
    env.remove_and_sync(&["report.docx", "same.txt"]);
    env.write("report.docx", "a newer report");
    env.write("same.txt", "unchanged");
    env.sync();

    let (success, report, _) = restore_json(&env, &["--all-deleted"]);
    assert!(success, "{report}");
    assert_eq!(report["recovered"], 1, "{report}");
    assert_eq!(report["already_present"], 1);
    assert_eq!(report["restored_beside"], 1);
    assert_eq!(
        fs::read(env.path("report.docx")).unwrap(),
        b"a newer report"
    );
    let beside: Vec<_> = fs::read_dir(&env.share)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("report (deleted "))
        .collect();
    assert_eq!(beside.len(), 1, "{beside:?}");
    assert!(beside[0].ends_with(").docx"));
    assert_eq!(
        fs::read(env.share.join(&beside[0])).unwrap(),
        b"the old report"
    );
    // Running it again finds the file beside and restores nothing twice.
    let (_, again, _) = restore_json(&env, &["--all-deleted"]);
    assert_eq!(again["recovered"], 0, "{again}");
    assert_eq!(again["already_present"], 2);
}

#[test]
fn a_symlink_planted_where_a_folder_was_is_not_followed() {
    let mut env = TestEnv::new();
    env.write("payroll/salaries.xlsx", "secret numbers");
    env.start_daemon_and_sync(&[]);
    fs::remove_dir_all(env.path("payroll")).unwrap();
    let elsewhere = env.root.join("elsewhere");
    fs::create_dir(&elsewhere).unwrap();
    std::os::unix::fs::symlink(&elsewhere, env.path("payroll")).unwrap();
    env.sync();

    let (success, report, _) = restore_json(&env, &["--all-deleted"]);
    assert!(
        !success,
        "a file that was copied but not restored fails the run: {report}"
    );
    assert_eq!(report["recovered"], 0, "{report}");
    let file = &report["files"][0];
    assert_eq!(file["outcome"], "lost");
    assert!(
        file["reason"].as_str().unwrap().contains("symbolic link"),
        "{file}"
    );
    assert_eq!(
        fs::read_dir(&elsewhere).unwrap().count(),
        0,
        "nothing written through the link"
    );

    // `..` in a path given on the command line cannot lead writes outside either.
    let sneaky = format!("{}/../../etc", env.share.display());
    let (_, report, _) = restore_json(&env, &["--under", &sneaky, "--dry-run"]);
    assert_eq!(
        report["files"].as_array().map(|a| a.len()).unwrap_or(0),
        0,
        "{report}"
    );
}

#[test]
fn a_damaged_copy_is_reported_lost_and_not_restored() {
    let mut env = TestEnv::new();
    env.write("good.txt", "fine");
    env.write("contract.pdf", "the signed contract");
    env.start_daemon_and_sync(&[]);
    env.remove_and_sync(&["good.txt", "contract.pdf"]);
    fs::write(
        env.object_path(b"the signed contract"),
        "the signed c0ntract",
    )
    .unwrap();

    let (success, report, _) = restore_json(&env, &["--all-deleted"]);
    assert!(!success, "{report}");
    assert_eq!(report["recovered"], 1);
    assert_eq!(report["lost"], 1);
    let lost: Vec<_> = report["files"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["outcome"] == "lost")
        .collect();
    assert!(lost[0]["path"].as_str().unwrap().ends_with("contract.pdf"));
    assert!(
        lost[0]["reason"].as_str().unwrap().contains("damaged"),
        "{}",
        lost[0]
    );
    assert!(
        !env.path("contract.pdf").exists(),
        "damaged content is never written"
    );
    let leftovers: Vec<_> = fs::read_dir(&env.share)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().as_bytes().starts_with(b".undelete-restore-"))
        .collect();
    assert!(leftovers.is_empty(), "no temporary file is left");
}

#[test]
fn non_utf8_names_round_trip_through_restore() {
    let name = std::ffi::OsStr::from_bytes(b"caf\xe9\nmenu.txt");
    let env = captured_then_deleted(&[(name, "croissant")]);
    let (success, report, _) = restore_json(&env, &["--all-deleted"]);
    assert!(success, "{report}");
    assert_eq!(report["recovered"], 1);
    assert_eq!(
        report["files"][0]["path_bytes"],
        crate::common::path_hex(&env.share.join(name))
    );
    assert_eq!(fs::read(env.share.join(name)).unwrap(), b"croissant");
}

#[test]
fn a_restore_killed_midway_finishes_when_run_again() {
    let mut env = TestEnv::new();
    for i in 0..3000 {
        env.write(format!("big/f{i:04}.bin"), content(i, 4096));
    }
    env.start_daemon_and_sync(&[]);
    env.remove_and_sync(&["big"]);

    let mut child = env
        .command()
        .args(["restore", "--under", env.path("big").to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Killed as soon as it has started writing: a condition, not a delay.
    while !env.path("big").exists() || fs::read_dir(env.path("big")).unwrap().count() < 10 {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::yield_now();
    }
    let _ = child.kill();
    child.wait().unwrap();

    let (success, report, _) = restore_json(&env, &["--under", env.path("big").to_str().unwrap()]);
    assert!(success, "{report}");
    assert_eq!(
        report["recovered"].as_u64().unwrap() + report["already_present"].as_u64().unwrap(),
        3000
    );
    let names: Vec<_> = fs::read_dir(env.path("big"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(names.len(), 3000, "no half file or temporary name is left");
    for i in (0..3000).step_by(97) {
        assert_eq!(
            fs::read(env.path(format!("big/f{i:04}.bin"))).unwrap(),
            content(i, 4096)
        );
    }
}

#[test]
fn two_bursts_apart_in_time_are_two_incidents_and_restore_by_code() {
    let mut env = TestEnv::new();
    env.write("first/a.txt", "a");
    env.write("second/b.txt", "b");
    env.start_daemon_and_sync(&["--incident-gap", "1s"]);
    env.remove_and_sync(&["first"]);
    // The gap between the bursts is what this test is about, not a wait for the daemon.
    std::thread::sleep(std::time::Duration::from_millis(1500));
    env.remove_and_sync(&["second"]);

    let incidents: Value = serde_json::from_str(&env.run_ok(&["incidents", "--json"])).unwrap();
    let incidents = incidents.as_array().unwrap();
    assert_eq!(incidents.len(), 2, "{incidents:?}");
    assert!(
        incidents[0]["folder"].as_str().unwrap().ends_with("second"),
        "newest first"
    );
    let code = incidents[1]["code"]
        .as_str()
        .unwrap()
        .to_lowercase()
        .replace('-', "");
    let (success, report, _) = restore_json(&env, &["--incident", &code]);
    assert!(success, "{report}");
    assert_eq!(report["recovered"], 1);
    assert!(env.path("first/a.txt").exists());
    assert!(
        !env.path("second/b.txt").exists(),
        "only that incident came back"
    );
}

#[test]
fn a_mass_deletion_raises_an_alert_and_runs_the_alert_command() {
    let mut env = TestEnv::new();
    for i in 0..30 {
        env.write(format!("shared/f{i}.txt"), format!("file {i}"));
    }
    let marker = env.root.join("alert.txt");
    let command = format!("env | grep ^UNDELETE_ | sort > {}", marker.display());
    env.start_daemon_and_sync(&["--alert-files", "20", "--alert-command", &command]);
    env.remove_and_sync(&["shared"]);
    let status = env.run_ok(&["status"]);
    assert!(
        status.starts_with("WARNING"),
        "alerts come first:\n{status}"
    );
    assert!(status.contains("restore --incident"), "{status}");
    // The alert command runs on its own; the status above proves it was started.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !marker.exists() || fs::read_to_string(&marker).unwrap().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the alert command did not run"
        );
        std::thread::yield_now();
    }
    let env_vars = fs::read_to_string(&marker).unwrap();
    // The alert fires when the threshold is crossed, which may be mid-burst.
    let files: u64 = env_vars
        .lines()
        .find_map(|l| l.strip_prefix("UNDELETE_FILES="))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no UNDELETE_FILES: {env_vars}"));
    assert!((20..=30).contains(&files), "{env_vars}");
    assert!(env_vars.contains("UNDELETE_INCIDENT="), "{env_vars}");
}

#[test]
fn emergency_without_a_terminal_stops_and_names_the_flags() {
    let env = captured_then_deleted(&[("a.txt", "a")]);
    let out = env.run(&["emergency"]);
    assert!(!out.status.success());
    let text = output_text(&out);
    assert!(
        text.contains("--yes") && text.contains("--incident"),
        "{text}"
    );
    assert!(!env.path("a.txt").exists(), "nothing was changed");

    let out = env.run(&["emergency", "--yes"]);
    assert!(out.status.success(), "{}", output_text(&out));
    assert!(env.path("a.txt").exists());
    let text = output_text(&out);
    assert!(text.contains("Recovered 1 of 1 file"), "{text}");
    assert!(
        text.contains("emergency --yes --incident"),
        "the repeat command is shown:\n{text}"
    );
}

#[test]
fn emergency_pressing_enter_at_every_prompt_restores_the_newest_incident() {
    let mut env = TestEnv::new();
    for i in 0..40 {
        env.write(format!("photos/p{i}.jpg"), content(i, 500));
    }
    env.write("photos/x.tmp", "scratch");
    env.start_daemon_and_sync(&["--exclude", "*.tmp"]);
    let before = snapshot(&env.path("photos"));
    env.remove_and_sync(&["photos"]);

    // Enter at each question, typed only once the question is on the screen.
    let mut term = crate::common::pty::Terminal::start(&format!(
        "{} --vault {} emergency",
        crate::common::BIN,
        env.vault.display()
    ));
    for question in ["Press Enter for 1:", "Your choice [1]:", "[Y/n]:"] {
        term.expect(question);
        term.send("\n");
    }
    let (status, screen) = term.finish();
    assert!(status.success(), "{screen}");
    for step in 1..=5 {
        assert!(screen.contains(&format!("Step {step} of 5")), "{screen}");
    }
    assert!(screen.contains("Recovered 40 of 41 files"), "{screen}");
    assert!(
        screen.contains("1 was excluded by the rule *.tmp"),
        "{screen}"
    );
    let after = snapshot(&env.path("photos"));
    let expected: BTreeMap<_, _> = before
        .into_iter()
        .filter(|(rel, _)| !rel.to_string_lossy().ends_with(".tmp"))
        .collect();
    assert_eq!(after, expected, "restored byte for byte");
}

#[test]
fn a_users_file_named_like_a_temporary_file_is_protected_and_never_removed() {
    let mut env = TestEnv::new();
    env.write("notes/.undelete-restore-notes.txt", "mine, not undelete's");
    env.write("notes/.undelete-sync-list.txt", "also mine");
    env.write("notes/a.txt", "a");
    env.start_daemon_and_sync(&[]);
    let live = env.list_by_path(&["--all"]);
    for name in [".undelete-restore-notes.txt", ".undelete-sync-list.txt"] {
        crate::common::assert_live_and_recoverable(crate::common::entry(
            &live,
            &env.json_path(format!("notes/{name}")),
        ));
    }

    // A restore into that folder cleans only real leftovers, never the user's file.
    env.remove_and_sync(&["notes/a.txt"]);
    let (success, report, _) = restore_json(&env, &["--all-deleted"]);
    assert!(success, "{report}");
    assert_eq!(report["recovered"], 1, "{report}");
    assert_eq!(
        fs::read(env.path("notes/.undelete-restore-notes.txt")).unwrap(),
        b"mine, not undelete's"
    );
}

#[test]
fn choices_that_cannot_combine_are_refused_not_ignored() {
    let env = captured_then_deleted(&[("a.txt", "a")]);
    for args in [
        &["restore", "--as-of", "1h", "--deleted-after", "2h"][..],
        &["restore", "--as-of", "1h", "--incident", "K7Q-4MD"],
        &["restore", "--deleted-after", "1h", "--deleted-before", "2h"],
        &["emergency", "--yes", "--deleted-after", "2h"],
        &[
            "emergency",
            "--yes",
            "--incident",
            "K7Q-4MD",
            "--under",
            "/",
        ],
    ] {
        let out = env.run(args);
        assert!(!out.status.success(), "{args:?}: {}", output_text(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            ["cannot be used with", "no deletion can match", "required"]
                .iter()
                .any(|refusal| stderr.contains(refusal)),
            "{args:?} must be refused with a reason, not run: {}",
            output_text(&out)
        );
        assert!(!env.path("a.txt").exists(), "{args:?} changed something");
    }
}

#[test]
fn a_non_utf8_file_restored_beside_another_keeps_its_exact_new_name_in_json() {
    let name = std::ffi::OsStr::from_bytes(b"r\xe9sum\xe9.txt");
    let env = captured_then_deleted(&[(name, "old")]);
    fs::write(env.share.join(name), "new").unwrap();
    env.sync();

    let (success, report, _) = restore_json(&env, &["--all-deleted"]);
    assert!(success, "{report}");
    let file = &report["files"][0];
    assert_eq!(file["outcome"], "recovered", "{file}");
    let hex = file["restored_to_bytes"]
        .as_str()
        .unwrap_or_else(|| panic!("no restored_to_bytes: {file}"));
    let bytes: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect();
    let restored = PathBuf::from(std::ffi::OsStr::from_bytes(&bytes));
    assert_eq!(
        fs::read(&restored).unwrap(),
        b"old",
        "{}",
        restored.display()
    );
    assert_eq!(fs::read(env.share.join(name)).unwrap(), b"new");
}

#[test]
fn a_restore_with_no_selection_is_refused_and_writes_nothing() {
    let env = captured_then_deleted(&[("a.txt", "a"), ("docs/b.txt", "b")]);
    let to = env.root.join("elsewhere");
    let reports = || fs::read_dir(env.vault.join("reports")).map_or(0, |d| d.count());
    let before = reports();
    for args in [
        &["restore"][..],
        &["restore", "--to", to.to_str().unwrap()],
        &["restore", "--json"],
        &["restore", "--dry-run"],
    ] {
        let out = env.run(args);
        let text = output_text(&out);
        assert!(!out.status.success(), "{args:?} ran: {text}");
        for choice in [
            "PATH",
            "--under",
            "--incident",
            "--deleted-after",
            "--all-deleted",
        ] {
            assert!(text.contains(choice), "{args:?} names {choice}: {text}");
        }
        assert!(text.contains("nothing was changed"), "{text}");
        assert!(
            !env.path("a.txt").exists() && !env.path("docs/b.txt").exists(),
            "{text}"
        );
        assert!(!to.exists(), "{text}");
        assert_eq!(reports(), before, "no report is saved: {text}");
    }
    let (success, report, output) = restore_json(&env, &["--all-deleted"]);
    assert!(success, "{output}");
    assert_eq!(report["recovered"], 2, "{report}");
    assert!(
        report["command"]
            .as_str()
            .unwrap()
            .contains(" --all-deleted"),
        "the command to repeat it says so too: {report}"
    );
}

#[test]
fn two_restores_of_the_same_files_at_once_never_make_a_second_copy() {
    let iterations = crate::common::count_from_env("UNDELETE_TEST_ITERATIONS", 6);
    let mut env = TestEnv::new();
    let files = 150;
    for i in 0..files {
        env.write(format!("team/f{i:03}.txt"), content(i, 300));
    }
    env.start_daemon_and_sync(&[]);
    let under = env.path("team");
    for round in 0..iterations {
        fs::remove_dir_all(&under).unwrap();
        env.sync();
        let start = || {
            env.command()
                .args(["restore", "--under", under.to_str().unwrap(), "--json"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        };
        let (first, second) = (start(), start());
        let mut recovered = 0;
        let mut present = 0;
        for child in [first, second] {
            let out = child.wait_with_output().unwrap();
            assert!(out.status.success(), "round {round}: {}", output_text(&out));
            let report: Value = serde_json::from_slice(&out.stdout).unwrap();
            recovered += report["recovered"].as_u64().unwrap();
            present += report["already_present"].as_u64().unwrap();
        }
        // Whoever won: each file was written once, and found present by the other.
        assert_eq!(
            (recovered, present),
            (files as u64, files as u64),
            "round {round}"
        );
        let names: Vec<String> = fs::read_dir(&under)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), files, "round {round}: {names:?}");
        assert!(
            names.iter().all(|n| !n.contains("(deleted")),
            "round {round}: {names:?}"
        );
        for i in (0..files).step_by(17) {
            assert_eq!(
                fs::read(under.join(format!("f{i:03}.txt"))).unwrap(),
                content(i, 300)
            );
        }
    }
}

#[test]
fn a_file_put_back_by_hand_after_the_plan_is_found_present_not_copied_beside() {
    let env = captured_then_deleted(&[("notes/plan.txt", "the plan"), ("notes/b.txt", "b")]);
    let mut term = crate::common::pty::Terminal::start(&format!(
        "{} --vault {} emergency",
        crate::common::BIN,
        env.vault.display()
    ));
    term.expect("Press Enter for 1:");
    term.send("\n");
    term.expect("Your choice [1]:");
    term.send("\n");
    // The plan saw the name free; now the very same file is copied back by hand.
    term.expect("[Y/n]:");
    env.write("notes/plan.txt", "the plan");
    term.send("\n");
    let (status, screen) = term.finish();
    assert!(status.success(), "{screen}");
    assert!(screen.contains("1 was already in place"), "{screen}");
    let names: Vec<String> = fs::read_dir(env.path("notes"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names.iter().all(|n| !n.contains("(deleted")),
        "no second copy beside it: {names:?}\n{screen}"
    );
    assert_eq!(names.len(), 2, "{names:?}");
}

#[test]
fn lock_files_of_programs_are_left_out_of_a_restore_and_not_counted_lost() {
    let locks = [
        "repo/.git/index.lock",
        "office/~$budget.xlsx",
        "office/.~lock.report.odt#",
    ];
    let mut all: Vec<(&str, &str)> = locks.iter().map(|l| (*l, "lock")).collect();
    all.extend([("office/budget.xlsx", "numbers"), ("repo/.git/HEAD", "ref")]);
    let env = captured_then_deleted(&all);
    let (success, report, output) = restore_json(&env, &["--all-deleted"]);
    assert!(
        success,
        "left-out lock files do not fail the restore: {output}"
    );
    assert_eq!(report["recovered"], 2, "{report}");
    assert_eq!(report["lost"], 0, "{report}");
    assert_eq!(report["files_selected"], 2, "{report}");
    assert_eq!(report["left_out"], 3, "{report}");
    for lock in locks {
        assert!(!env.path(lock).exists(), "{lock} came back");
        let file = report["files"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["path"] == env.json_path(lock))
            .unwrap_or_else(|| panic!("{lock} is not in the report: {report}"));
        assert_eq!(file["outcome"], "left_out", "{file}");
    }
    // The text report says so in words, apart from the lost ones.
    let saved = fs::read_dir(env.vault.join("reports"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "txt"))
        .unwrap();
    let text = fs::read_to_string(saved).unwrap();
    assert!(
        text.contains("Lock files, not brought back on purpose (3):"),
        "{text}"
    );
    assert!(text.starts_with("Recovered 2 of 2 files"), "{text}");
    // Asked for, they come back.
    let (success, report, output) = restore_json(&env, &["--all-deleted", "--include-lock-files"]);
    assert!(success, "{output}");
    assert_eq!(report["recovered"], 3, "{report}");
    assert_eq!(fs::read(env.path("repo/.git/index.lock")).unwrap(), b"lock");
}

#[test]
fn report_prints_a_saved_report_by_last_by_incident_and_by_name() {
    let env = captured_then_deleted(&[("a.jpg", "a"), ("b.txt", "b")]);
    let out = env.run_ok(&["restore", "--all-deleted"]);
    let saved = out
        .lines()
        .find_map(|l| l.strip_prefix("Report saved: "))
        .unwrap_or_else(|| panic!("{out}"))
        .to_owned();
    let name = Path::new(&saved)
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    let last = env.run_ok(&["report", "last"]);
    assert!(last.starts_with("Recovered 2 of 2 files"), "{last}");
    assert_eq!(env.run_ok(&["report", &saved]), last);
    assert_eq!(env.run_ok(&["report", &name]), last);
    let json: Value = serde_json::from_str(&env.run_ok(&["report", "--json"])).unwrap();
    assert_eq!(json["recovered"], 2, "{json}");
    let out = env.run(&["report", "K7Q-4MD"]);
    let text = output_text(&out);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("no saved restore report is for the incident K7Q-4MD"),
        "{text}"
    );
}

#[test]
fn a_code_typed_in_lower_case_with_a_space_is_repeated_as_the_code_itself() {
    let env = captured_then_deleted(&[("a.txt", "a")]);
    let incidents: Value = serde_json::from_str(&env.run_ok(&["incidents", "--json"])).unwrap();
    let code = incidents[0]["code"].as_str().unwrap().to_owned();
    let typed = code.to_lowercase().replace('-', " ");
    for command in ["restore", "emergency"] {
        let mut args = vec![command];
        if command == "emergency" {
            args.push("--yes");
        }
        args.extend(["--incident", &typed]);
        let out = env.run(&args);
        let text = output_text(&out);
        assert!(
            text.contains(&format!(" --yes --incident {code}\n"))
                || text.contains(&format!(" restore --incident {code}\n")),
            "{command}: {text}"
        );
        env.remove_and_sync(&["a.txt"]);
    }
}

#[test]
fn a_dry_run_says_what_would_happen_not_what_happened() {
    let env = captured_then_deleted(&[("a.txt", "a"), ("b.jpg", "b")]);
    let text = env.run_ok(&["restore", "--all-deleted", "--dry-run"]);
    assert!(
        text.starts_with("2 of 2 files would be recovered"),
        "{text}"
    );
    assert!(
        !text.contains("Recovered") && !text.contains("in place."),
        "{text}"
    );
    assert!(text.contains("nothing was changed"), "{text}");
    assert!(!env.path("a.txt").exists());
}

#[test]
fn a_report_file_that_cannot_be_written_still_shows_the_report_and_marks_the_files_back() {
    let env = captured_then_deleted(&[("a.txt", "a")]);
    let fifo = env.root.join("reader-gone");
    rustix::fs::mknodat(
        rustix::fs::CWD,
        &fifo,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    )
    .unwrap();
    let missing = env.root.join("gone/report.json");
    for (n, place) in [missing, fifo].iter().enumerate() {
        if n > 0 {
            env.remove_and_sync(&["a.txt"]);
        }
        // A pipe nobody reads would hold the restore forever: it is refused at once.
        let out = env
            .command()
            .args(["restore", "--all-deleted", "--report"])
            .arg(place)
            .output()
            .unwrap();
        let text = output_text(&out);
        assert!(out.status.success(), "{text}");
        assert!(text.contains("Recovered 1 of 1 file"), "{text}");
        assert!(text.contains("Report saved: "), "{text}");
        assert!(
            text.contains("the JSON report could not be written to"),
            "{text}"
        );
        assert!(text.contains(&place.display().to_string()), "{text}");
        assert_eq!(fs::read(env.path("a.txt")).unwrap(), b"a");
        let listed = env.list_json(&[]);
        assert!(listed.is_empty(), "still listed as deleted: {listed:?}");
    }
}

#[test]
fn a_report_file_replaces_a_hard_link_and_never_writes_through_a_symlink_at_its_name() {
    let env = captured_then_deleted(&[("a.txt", "a")]);
    let victim = env.root.join("victim");
    fs::write(&victim, "precious").unwrap();
    let linked = env.root.join("linked.json");
    fs::hard_link(&victim, &linked).unwrap();
    let out = env
        .command()
        .args(["restore", "--all-deleted", "--report"])
        .arg(&linked)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", output_text(&out));
    assert_eq!(fs::read(&victim).unwrap(), b"precious");
    let json: Value = serde_json::from_slice(&fs::read(&linked).unwrap()).unwrap();
    assert_eq!(json["recovered"], 1, "{json}");

    env.remove_and_sync(&["a.txt"]);
    let place = env.root.join("report.json");
    std::os::unix::fs::symlink(&victim, &place).unwrap();
    let out = env
        .command()
        .args(["restore", "--all-deleted", "--report"])
        .arg(&place)
        .output()
        .unwrap();
    let text = output_text(&out);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("Recovered 1 of 1 file"), "{text}");
    assert!(text.contains("is a symbolic link"), "{text}");
    assert_eq!(fs::read(&victim).unwrap(), b"precious");
    assert!(fs::symlink_metadata(&place).unwrap().is_symlink());
}

/// A restore into thousands of folders keeps only a few of them open at a time: with
/// every one kept open, a restore under the usual limit of 1,024 descriptors ran out
/// after about a thousand folders and called every later file lost ("its destination
/// folder could not be opened"). Here 1,500 folders under that limit.
#[test]
fn a_restore_into_more_folders_than_it_may_open_files_brings_back_every_file() {
    const FOLDERS: usize = 1_500;
    let mut env = TestEnv::new();
    for n in 0..FOLDERS {
        env.write(
            format!("tree/{:02}/{n:04}/f.txt", n % 30),
            format!("file {n}"),
        );
    }
    env.start_daemon_and_sync(&[]);
    env.remove_and_sync(&["tree"]);
    let to = env.root.join("restored");
    let mut restore = env.command();
    restore
        .args(["restore", "--all-deleted", "--json", "--to"])
        .arg(&to);
    {
        use std::os::unix::process::CommandExt;
        // SAFETY: only system calls between fork and exec, no allocation.
        unsafe {
            restore.pre_exec(|| {
                use rustix::process::{Resource, Rlimit, setrlimit};
                setrlimit(
                    Resource::Nofile,
                    Rlimit {
                        current: Some(1024),
                        maximum: Some(1024),
                    },
                )
                .map_err(std::io::Error::from)
            });
        }
    }
    let out = restore.output().expect("run restore");
    assert!(out.status.success(), "{}", output_text(&out));
    let report: Value = serde_json::from_slice(&out.stdout).expect("the report as JSON");
    let lost: Vec<&Value> = report["files"]
        .as_array()
        .expect("files")
        .iter()
        .filter(|f| f["outcome"] != "recovered")
        .collect();
    assert!(
        lost.is_empty(),
        "{} not recovered, first: {}",
        lost.len(),
        lost[0]
    );
    for n in 0..FOLDERS {
        let path = to.join(format!("tree/{:02}/{n:04}/f.txt", n % 30));
        assert_eq!(
            fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
            format!("file {n}")
        );
    }
}

#[test]
fn files_come_back_into_a_setgid_folder_of_a_group_share() {
    // A folder made 0700 inside a setgid one is 02700: the restore took the folder
    // it made to write in for another's, and every file failed to come back.
    use std::os::unix::fs::PermissionsExt;
    let mut env = TestEnv::new();
    env.write("team/plan.txt", "the team's plan");
    fs::set_permissions(env.path("team"), fs::Permissions::from_mode(0o2775)).unwrap();
    env.start_daemon_and_sync(&[]);
    env.remove_and_sync(&["team/plan.txt"]);
    let (ok, report, text) = restore_json(&env, &["--all-deleted"]);
    assert!(ok, "{text}");
    assert_eq!(report["recovered"], 1, "{report:#}");
    assert_eq!(
        fs::read(env.path("team/plan.txt")).unwrap(),
        b"the team's plan"
    );
}
