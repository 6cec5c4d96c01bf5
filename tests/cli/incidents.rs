//! Incidents follow what people did: unrelated folders are two incidents however
//! close in time, one `rm -rf` is one however deep, and counts are files, not
//! deletion events. (The timing rules are tried with made-up times in
//! `grouping`'s unit tests, so nothing here waits.)

use std::fs;

use serde_json::Value;

use crate::common::pty::Terminal;
use crate::common::*;

fn folder(incident: &Value) -> &str {
    incident["folder"].as_str().unwrap()
}

#[test]
fn two_folders_deleted_seconds_apart_are_two_incidents() {
    let mut env = TestEnv::new();
    for i in 0..3 {
        env.write(format!("accounts/2026/q{i}.xls"), content(i, 100));
        env.write(format!("photos/p{i}.jpg"), content(10 + i, 100));
    }
    env.write("notes.txt", "at the top of the share");
    // The default gap: a minute. The two are unrelated however close they come.
    env.start_daemon_and_sync(&[]);
    env.remove_and_sync(&["accounts"]);
    fs::remove_dir_all(env.path("photos")).unwrap();
    env.remove_and_sync(&["notes.txt"]);
    let all = env.incidents_json();
    assert_eq!(all.len(), 3, "{all:#?}");
    let mut folders: Vec<&str> = all.iter().map(folder).collect();
    folders.sort();
    assert_eq!(
        folders,
        [
            env.share.to_str().unwrap().to_owned(),
            env.json_path("accounts/2026"),
            env.json_path("photos")
        ]
    );
    for i in &all {
        let expected = if folder(i) == env.share.to_str().unwrap() {
            1
        } else {
            3
        };
        assert_eq!(i["files"], expected, "{i:#}");
    }
}

#[test]
fn one_rm_rf_of_a_folder_with_subfolders_is_one_incident() {
    let mut env = TestEnv::new();
    for year in ["2023", "2024", "2025"] {
        for i in 0..4 {
            env.write(format!("photos/{year}/trip/p{i}.jpg"), content(i, 100));
        }
    }
    env.write("photos/cover.jpg", "cover");
    env.start_daemon_and_sync(&[]);
    env.remove_and_sync(&["photos"]);
    let all = env.incidents_json();
    assert_eq!(all.len(), 1, "{all:#?}");
    assert_eq!(folder(&all[0]), env.json_path("photos"));
    assert_eq!(all[0]["files"], 13);
    assert_eq!(all[0]["recoverable"], 13);
}

#[test]
fn a_file_deleted_twice_in_one_incident_counts_once() {
    let mut env = TestEnv::new();
    for i in 0..30 {
        env.write(format!("docs/d{i:02}.txt"), format!("first {i}"));
    }
    env.start_daemon_and_sync(&[]);
    // A sync tool that replaces each file by deleting it and writing it anew.
    for i in 0..30 {
        fs::remove_file(env.path(format!("docs/d{i:02}.txt"))).unwrap();
        env.write(format!("docs/d{i:02}.txt"), format!("second {i}"));
    }
    env.sync();
    env.remove_and_sync(&["docs"]);
    let all = env.incidents_json();
    assert_eq!(all.len(), 1, "{all:#?}");
    assert_eq!(all[0]["files"], 30, "files, not deletions: {all:#?}");
    assert_eq!(all[0]["bytes"], 30 * "second 0".len() + 20, "{all:#?}");
    let code = all[0]["code"].as_str().unwrap().to_owned();
    let (ok, report, text) = restore_json(&env, &["--incident", &code]);
    assert!(ok, "{text}");
    assert_eq!(report["recovered"], 30, "{text}");
    assert_eq!(
        fs::read_to_string(env.path("docs/d07.txt")).unwrap(),
        "second 7"
    );
}

#[test]
fn the_guided_search_counts_files_not_deletions() {
    let mut env = TestEnv::new();
    for i in 0..30 {
        env.write(format!("photos/p{i:02}.jpg"), content(i, 100));
    }
    env.start_daemon_and_sync(&[]);
    env.remove_and_sync(&["photos"]);
    // Put back by hand (not by a restore), then deleted again.
    for i in 0..30 {
        env.write(format!("photos/p{i:02}.jpg"), content(i, 100));
    }
    env.sync();
    env.remove_and_sync(&["photos"]);
    let mut term = Terminal::start(&format!("{BIN} --vault {} emergency", env.vault.display()));
    term.expect("Press Enter for 1:");
    term.send("s\n");
    term.expect("Type part of a file or folder name:");
    term.send("photo\n");
    term.expect("Press Enter for 1:");
    term.send("\x03");
    let (_, screen) = term.finish();
    assert!(
        screen.contains(&format!("{} — 30 files deleted", env.json_path("photos"))),
        "{screen}"
    );
}

#[test]
fn lock_files_of_programs_are_left_out_of_an_incidents_count() {
    let mut env = TestEnv::new();
    for i in 0..4 {
        env.write(format!("reports/r{i}.docx"), content(i, 100));
    }
    env.write("reports/~$r0.docx", "word's owner file");
    env.write("reports/.~lock.r1.odt#", "libreoffice's lock");
    env.start_daemon_and_sync(&[]);
    // Office makes and removes its lock at every open and close: never an incident.
    env.remove_and_sync(&["reports/~$r0.docx"]);
    assert!(
        env.incidents_json().is_empty(),
        "{:#?}",
        env.incidents_json()
    );
    env.remove_and_sync(&["reports"]);
    let all = env.incidents_json();
    assert_eq!(all.len(), 1, "{all:#?}");
    assert_eq!(all[0]["files"], 4, "{all:#?}");
}
