//! Big trees: a deletion burst that overflows the kernel queue, and a crash in
//! the middle of capturing.

use std::collections::HashSet;
use std::fs;
use std::time::{Duration, Instant};

use crate::common::*;

#[test]
fn rm_rf_of_20000_files_is_recorded_file_by_file() {
    // 20,000 in CI; UNDELETE_TEST_FILES=100000 for the full count.
    const PER_FOLDER: usize = 100;
    let total = count_from_env("UNDELETE_TEST_FILES", 20_000);
    let folders = total.div_ceil(PER_FOLDER);
    let mut env = TestEnv::new();
    let mut expected = HashSet::new();
    for d in 0..folders {
        let dir = env.path(format!("big/folder{d:04}"));
        fs::create_dir_all(&dir).unwrap();
        for f in 0..PER_FOLDER {
            let path = dir.join(format!("file{f:03}.dat"));
            // Few distinct contents: this test is about deletions, not copying.
            fs::write(&path, content(f, 64)).unwrap();
            expected.insert(path.to_str().unwrap().to_owned());
        }
    }
    env.write("survivor.txt", "not deleted");
    env.start_daemon_and_sync(&[]);
    let all = env.list_json(&["--all"]);
    assert_eq!(all.len(), folders * PER_FOLDER + 1, "captured at start-up");

    // With the daemon stopped, the 20,000 (or more) remove events (and the folders' own) cannot
    // all fit in the kernel's queue (16,384 by default): it overflows for certain.
    env.pause_daemon();
    fs::remove_dir_all(env.path("big")).unwrap();
    env.resume_daemon();
    env.sync();

    let deleted = env.list_json(&[]);
    let mut seen = HashSet::new();
    for e in &deleted {
        let path = e["path"].as_str().unwrap_or_default().to_owned();
        assert!(expected.contains(&path), "unexpected entry: {e}");
        assert!(seen.insert(path), "listed twice: {e}");
        assert_deleted_and_recoverable(e);
    }
    let missing: Vec<_> = expected.difference(&seen).take(20).collect();
    assert_eq!(
        deleted.len(),
        expected.len(),
        "{} of {} deleted files are not listed as deleted; some: {missing:#?}",
        expected.len() - seen.len(),
        expected.len()
    );
    // Those whose events were lost were found by the rescan, and say so. (Only if the
    // queue can overflow: some machines raise the limit above 20,000.)
    let queue_limit: usize = fs::read_to_string("/proc/sys/fs/inotify/max_queued_events")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(16_384);
    let found_by_scan = deleted
        .iter()
        .filter(|e| e["deleted_at_approximate"] == true)
        .count();
    let fanotify = env.status_json()["event_source"]["source"] == "fanotify";
    if fanotify {
        // fanotify's queue has no limit: every deletion comes from its own event.
        assert_eq!(found_by_scan, 0, "deletions found by a scan under fanotify");
    } else if queue_limit < folders * PER_FOLDER {
        assert!(
            found_by_scan > 0,
            "no deletion is marked as found by a scan: did the queue not overflow?"
        );
    }
    let all = env.list_by_path(&["--all"]);
    assert_live_and_recoverable(entry(&all, &env.json_path("survivor.txt")));

    // And every one of them comes back.
    let to = env.root.join("restored");
    let (success, report, output) = restore_json(
        &env,
        &[
            "--under",
            &env.json_path("big"),
            "--to",
            to.to_str().unwrap(),
        ],
    );
    assert!(success, "{output}");
    assert_eq!(report["recovered"], expected.len(), "{output}");
    let restored = tree(&to.join("big"));
    let files = restored.iter().filter(|(_, n)| n.kind == "file").count();
    assert_eq!(files, expected.len());
    for (rel, node) in restored.iter().filter(|(_, n)| n.kind == "file") {
        let name = rel.file_name().unwrap().to_str().unwrap();
        let f: usize = name["file".len()..name.len() - ".dat".len()]
            .parse()
            .unwrap();
        assert!(node.data == content(f, 64), "{} differs", rel.display());
    }
}

#[test]
fn kill_9_during_capture_loses_and_damages_nothing() {
    const FILES: usize = 3000;
    let mut env = TestEnv::new();
    let size_of = |n: usize| 10_000 + (n * 7919) % 90_000;
    let mut files = Vec::new();
    for n in 0..FILES {
        let rel = format!("photos/set{:02}/img{n:04}.raw", n % 30);
        let data = content(n, size_of(n));
        env.write(&rel, &data);
        files.push((rel, blake3::hash(&data)));
    }
    env.start_daemon(&[]);
    // Mid-capture: once some copies exist, long before all 3,000 can.
    let deadline = Instant::now() + Duration::from_secs(60);
    while env.object_count() < 100 {
        assert!(Instant::now() < deadline, "no copies made within 60 s");
        std::thread::sleep(Duration::from_millis(10));
    }
    let copies_at_kill = env.object_count();
    env.kill_daemon();
    assert!(
        copies_at_kill < FILES,
        "the kill came too late to test anything ({copies_at_kill} copies)"
    );

    env.start_daemon_and_sync(&[]);
    let verify = env.run(&["verify"]);
    assert!(verify.status.success(), "{}", output_text(&verify));

    let all = env.list_by_path(&["--all"]);
    assert_eq!(all.len(), FILES);
    for (n, (rel, hash)) in files.iter().enumerate() {
        let e = entry(&all, &env.json_path(rel));
        assert_live_and_recoverable(e);
        assert_eq!(e["size"], size_of(n), "{e}");
        let hex = hash.to_hex();
        let object = env
            .vault
            .join("objects")
            .join(&hex.as_str()[..2])
            .join(&hex.as_str()[2..]);
        assert!(object.is_file(), "{rel} is not in the vault");
    }

    env.remove_and_sync(&["photos"]);
    let deleted = env.list_by_path(&[]);
    assert_eq!(deleted.len(), FILES);
    for (rel, _) in &files {
        assert_deleted_and_recoverable(entry(&deleted, &env.json_path(rel)));
    }
}
