//! Who deleted it: the person named with each deletion, where the event source
//! says (fanotify names the process; inotify names nobody). Over the share, the
//! Samba user, her PC and its address; on the server, the Unix user and the
//! program. An incident is one person's.
//!
//! These need the whole-filesystem source: where the daemon watches with inotify
//! they say so and stop.

use std::fs;
use std::os::unix::fs::{PermissionsExt, chown};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::samba::{Samba, ensure_unix_user, make_traversable};
use crate::common::*;

/// How many files each person deletes: enough that `rm` still runs when the daemon
/// asks who it is (a process that ended first is named by its pid only).
const FILES_EACH: usize = 2000;

/// The incident of `folder` (relative to the share) in `incidents --json`.
fn incident_of(env: &TestEnv, folder: &str) -> Value {
    let folder = env.json_path(folder);
    let all = env.incidents_json();
    all.iter()
        .find(|i| i["folder"] == folder.as_str())
        .cloned()
        .unwrap_or_else(|| panic!("no incident of {folder}: {all:#?}"))
}

/// `user`, `process`, `machine`, `address` and `via` of a `deleted_by`.
fn who(by: &Value) -> [Option<&str>; 5] {
    ["user", "process", "machine", "address", "via"].map(|k| by[k].as_str())
}

/// Runs `command` as the Unix user `user` (same group, no others), which must succeed.
fn run_as(user: &str, command: &[&str], dir: &Path) -> std::process::Child {
    Command::new("setpriv")
        .arg(format!("--reuid={user}"))
        .arg(format!("--regid={user}"))
        .arg("--clear-groups")
        .args(command)
        .current_dir(dir)
        .spawn()
        .expect("run setpriv")
}

#[test]
fn a_folder_deleted_over_the_share_names_anna_her_pc_and_the_file_share() {
    let test = "a_folder_deleted_over_the_share_names_anna_her_pc_and_the_file_share";
    let mut env = TestEnv::new();
    let Some(samba) = Samba::start_with_names(test, &[("office", &env.share)]) else {
        return;
    };
    let anna = samba.add_user("anna");
    for n in 0..40 {
        env.write(format!("photos/2026/p{n:02}.jpg"), content(n, 5_000 + n));
    }
    env.write("photos/index.txt", "the photos of 2026");
    for entry in walkdir::WalkDir::new(&env.share) {
        let path = entry.unwrap().into_path();
        chown(&path, Some(anna.uid), Some(anna.gid)).expect("give anna the share");
    }
    // Synced first: `status` beside a daemon still making its index may find it half made.
    env.start_daemon_and_sync(&[]);
    if !fanotify_in_use(&env, test) {
        return;
    }

    // From the PC FRONTDESK, over port 139, where a PC says its name, in a session
    // that stays open as a PC's does (Samba forgets a session once it ends).
    let pc = samba.client(&anna, "office").on_pc("FRONTDESK");
    let mut session = pc.hold();
    session.send("deltree photos");
    let deadline = Instant::now() + Duration::from_secs(60);
    while env.path("photos").exists() {
        assert!(Instant::now() < deadline, "smbclient did not delete photos");
        std::thread::sleep(Duration::from_millis(10));
    }
    env.sync();
    drop(session);

    let incident = incident_of(&env, "photos");
    assert_eq!(incident["files"], 41, "{incident:#}");
    assert_eq!(
        who(&incident["deleted_by"]),
        [
            Some("anna"),
            Some("smbd"),
            Some("FRONTDESK"),
            Some("127.0.0.1"),
            Some("file_share")
        ],
        "{incident:#}\n{}",
        env.daemon_log()
    );
    let said = "anna from FRONTDESK (127.0.0.1) over the file share";
    let text = env.run_ok(&["incidents"]);
    assert!(text.contains(&format!("deleted by {said}")), "{text}");
    let listed = env.list_by_path(&[]);
    let photo = entry(&listed, &env.json_path("photos/2026/p07.jpg"));
    assert_eq!(photo["deleted_by"]["user"], "anna", "{photo:#}");

    // The report of the restore names her too, as a whole and file by file.
    let code = incident["code"].as_str().unwrap();
    let (ok, report, output) = restore_json(&env, &["--incident", code]);
    assert!(ok, "{output}");
    assert_eq!(report["recovered"], 41, "{report:#}");
    assert_eq!(
        who(&report["deleted_by"][0]),
        who(&incident["deleted_by"]),
        "{report:#}"
    );
    assert_eq!(report["deleted_by"][0]["files"], 41, "{report:#}");
    assert_eq!(report["files"][0]["deleted_by"]["machine"], "FRONTDESK");
    let saved = env.run_ok(&["report", "last"]);
    assert!(saved.contains(&format!("Deleted by {said}.")), "{saved}");
}

#[test]
fn a_folder_removed_by_another_unix_user_names_that_user_and_rm_and_a_rebuild_keeps_it() {
    let test =
        "a_folder_removed_by_another_unix_user_names_that_user_and_rm_and_a_rebuild_keeps_it";
    if !is_root() {
        eprintln!("SKIPPED {test}: running rm as another user needs root");
        return;
    }
    let mut env = TestEnv::new();
    ensure_unix_user("bob");
    for n in 0..FILES_EACH {
        env.write(format!("reports/r{n:04}.txt"), content(n, 100));
    }
    make_traversable(&env.share);
    // bob may remove the folder and what is in it: the share is open to everyone.
    fs::set_permissions(&env.share, fs::Permissions::from_mode(0o777)).unwrap();
    fs::set_permissions(env.path("reports"), fs::Permissions::from_mode(0o777)).unwrap();
    // Synced first: `status` beside a daemon still making its index may find it half made.
    env.start_daemon_and_sync(&[]);
    if !fanotify_in_use(&env, test) {
        return;
    }

    let status = run_as("bob", &["rm", "-rf", "reports"], &env.share)
        .wait()
        .unwrap();
    assert!(status.success(), "rm -rf as bob: {status}");
    env.sync();
    assert!(!env.path("reports").exists());

    let incident = incident_of(&env, "reports");
    let expected = [Some("bob"), Some("rm"), None, None, Some("local")];
    assert_eq!(
        who(&incident["deleted_by"]),
        expected,
        "{incident:#}\n{}",
        env.daemon_log()
    );
    let command = incident["deleted_by"]["command"].as_str().unwrap_or("");
    assert!(command.starts_with("rm -rf reports"), "{incident:#}");
    let text = env.run_ok(&["incidents"]);
    assert!(
        text.contains("deleted by bob, running rm on the server itself"),
        "{text}"
    );
    let listed = env.list_by_path(&[]);
    let file = entry(&listed, &env.json_path("reports/r0007.txt"));
    assert_eq!(who(&file["deleted_by"]), expected, "{file:#}");

    // Rebuilt from the journal, the index still knows who.
    env.stop_daemon();
    for name in ["index.db", "index.db-wal", "index.db-shm"] {
        let _ = fs::remove_file(env.vault.join(name));
    }
    env.run_ok(&["rebuild-index", "--json"]);
    let rebuilt = incident_of(&env, "reports");
    assert_eq!(rebuilt["deleted_by"], incident["deleted_by"], "{rebuilt:#}");
    let listed = env.list_by_path(&[]);
    let file = entry(&listed, &env.json_path("reports/r0007.txt"));
    assert_eq!(who(&file["deleted_by"]), expected, "{file:#}");
}

#[test]
fn two_people_deleting_in_one_folder_at_once_are_two_incidents() {
    let test = "two_people_deleting_in_one_folder_at_once_are_two_incidents";
    if !is_root() {
        eprintln!("SKIPPED {test}: running rm as other users needs root");
        return;
    }
    let mut env = TestEnv::new();
    for user in ["anna", "bob"] {
        ensure_unix_user(user);
    }
    // One folder, anna's files and bob's side by side, as in an office's scans/.
    for n in 0..FILES_EACH {
        env.write(format!("scans/anna-{n:04}.pdf"), content(n, 100));
        env.write(
            format!("scans/bob-{n:04}.pdf"),
            content(n + FILES_EACH, 100),
        );
    }
    make_traversable(&env.share);
    fs::set_permissions(env.path("scans"), fs::Permissions::from_mode(0o777)).unwrap();
    // Synced first: `status` beside a daemon still making its index may find it half made.
    env.start_daemon_and_sync(&[]);
    if !fanotify_in_use(&env, test) {
        return;
    }

    // At the same moment, each their own files (find, so no shell has to expand
    // 2,000 names).
    let scans = env.path("scans");
    let mut running: Vec<_> = ["anna", "bob"]
        .into_iter()
        .map(|user| {
            let name = format!("{user}-*");
            run_as(user, &["find", ".", "-name", &name, "-delete"], &scans)
        })
        .collect();
    for child in &mut running {
        assert!(child.wait().unwrap().success(), "find -delete failed");
    }
    env.sync();
    assert_eq!(
        fs::read_dir(&scans).unwrap().count(),
        0,
        "everything deleted"
    );

    let folder = env.json_path("scans");
    let mut theirs: Vec<(String, u64)> = env
        .incidents_json()
        .iter()
        .filter(|i| i["folder"] == folder.as_str())
        .map(|i| {
            (
                i["deleted_by"]["user"].as_str().unwrap_or("?").to_owned(),
                i["files"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    theirs.sort();
    assert_eq!(
        theirs,
        [
            ("anna".to_owned(), FILES_EACH as u64),
            ("bob".to_owned(), FILES_EACH as u64)
        ],
        "{:#?}\n{}",
        env.incidents_json(),
        env.daemon_log()
    );
}
