//! A damaged or lost index: every command says so in plain words, and
//! `rebuild-index` gives back every version and deletion from the journal kept
//! in the vault.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::*;

/// The index's files: the database, its write-ahead log and its shared memory.
fn index_files(env: &TestEnv) -> [PathBuf; 3] {
    ["index.db", "index.db-wal", "index.db-shm"].map(|name| env.vault.join(name))
}

fn remove_index(env: &TestEnv) {
    for file in index_files(env) {
        let _ = fs::remove_file(file);
    }
}

/// `list --all --json` and `incidents --json`: what a rebuild must give back.
fn recorded(env: &TestEnv) -> (Value, Value) {
    let list = env.run_ok(&["list", "--all", "--json"]);
    let incidents = env.run_ok(&["incidents", "--json"]);
    (
        serde_json::from_str(&list).expect("list --json is JSON"),
        serde_json::from_str(&incidents).expect("incidents --json is JSON"),
    )
}

/// Asserts that `args` fails with the damaged-index message and its way back.
fn assert_says_the_index_is_damaged(env: &TestEnv, args: &[&str]) {
    let out = env.run(args);
    let text = output_text(&out);
    assert!(!out.status.success(), "{args:?} should fail:\n{text}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let words = stderr.split_whitespace().collect::<Vec<_>>().join(" ");
    for said in [
        "the index of the vault",
        "is damaged",
        "Nothing in the vault is lost",
        "Stop the undelete service",
    ] {
        assert!(
            words.contains(said),
            "{args:?} does not say {said:?}:\n{text}"
        );
    }
    let command = format!(
        "sudo undelete --vault {} rebuild-index",
        env.vault.display()
    );
    assert!(
        stderr.lines().any(|l| l.trim() == command),
        "{args:?} does not give the command on a line of its own:\n{text}"
    );
    assert!(
        stderr.lines().all(|l| l.len() <= 80),
        "{args:?} is not wrapped for 80 columns:\n{text}"
    );
}

/// Every command a customer or the service may run on the vault.
fn assert_every_command_says_the_index_is_damaged(env: &TestEnv) {
    let share = env.share.to_str().unwrap().to_owned();
    for args in [
        &["status"][..],
        &["list"],
        &["restore", "--under", &share, "--dry-run"],
        &["emergency", "--yes", "--under", &share],
        &["daemon", "--protect", &share],
    ] {
        assert_says_the_index_is_damaged(env, args);
    }
}

/// Runs `rebuild-index --json`, which must succeed; returns its summary.
fn rebuild(env: &TestEnv) -> Value {
    let stdout = env.run_ok(&["rebuild-index", "--json"]);
    serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("rebuild-index --json is not JSON ({e}):\n{stdout}"))
}

/// How many copies `verify` finds the index pointing at (all intact).
fn objects_checked(env: &TestEnv) -> u64 {
    let out = env.run(&["verify", "--json"]);
    assert!(out.status.success(), "{}", output_text(&out));
    let report: Value = serde_json::from_slice(&out.stdout).expect("verify --json is JSON");
    report["objects_checked"].as_u64().expect("a count")
}

/// Restores every deleted file below the share to `to`; returns the report.
fn restore_all_to(env: &TestEnv, to: &Path) -> Value {
    let (success, report, output) = restore_json(
        env,
        &[
            "--under",
            env.share.to_str().unwrap(),
            "--to",
            to.to_str().unwrap(),
        ],
    );
    assert!(success, "{output}");
    report
}

#[test]
fn a_deleted_index_is_rebuilt_with_every_version_deletion_and_rename() {
    let mut env = TestEnv::new();
    let mut kept: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for n in 0..30 {
        let rel = format!("docs/d{}/f{n:02}.txt", n % 3);
        env.write(&rel, content(n, 100 + n * 50));
        kept.insert(rel, content(n, 100 + n * 50));
    }
    env.start_daemon_and_sync(&[]);
    // Versions: the old content stays in the vault and in the history.
    for n in 0..5 {
        let rel = format!("docs/d{}/f{n:02}.txt", n % 3);
        env.write(&rel, content(1000 + n, 300));
        kept.insert(rel, content(1000 + n, 300));
    }
    env.sync();
    // Renames of a file and of a folder.
    fs::rename(env.path("docs/d0/f03.txt"), env.path("docs/d0/renamed.txt")).unwrap();
    let moved = kept.remove("docs/d0/f03.txt").unwrap();
    kept.insert("docs/d0/renamed.txt".into(), moved);
    fs::rename(env.path("docs/d2"), env.path("docs/two")).unwrap();
    kept = kept
        .into_iter()
        .map(|(rel, data)| (rel.replacen("docs/d2/", "docs/two/", 1), data))
        .collect();
    env.sync();
    // Deletions: a renamed file, one that had two versions, a whole folder.
    let mut deleted = BTreeMap::new();
    for rel in ["docs/d0/renamed.txt", "docs/d1/f01.txt"] {
        fs::remove_file(env.path(rel)).unwrap();
        deleted.insert(rel.to_owned(), kept.remove(rel).unwrap());
    }
    fs::remove_dir_all(env.path("docs/two")).unwrap();
    for rel in kept
        .keys()
        .filter(|r| r.starts_with("docs/two/"))
        .cloned()
        .collect::<Vec<_>>()
    {
        deleted.insert(rel.clone(), kept.remove(&rel).unwrap());
    }
    env.sync();
    let (list_before, incidents_before) = recorded(&env);
    assert!(!incidents_before.as_array().unwrap().is_empty());
    let copies_before = objects_checked(&env);
    assert_eq!(copies_before, 35, "30 files and 5 older versions");
    env.stop_daemon();

    let journal = env.vault.join("journal");
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&journal), 0o700, "the journal folder is private");
    assert_eq!(
        mode(&journal.join("000001.log")),
        0o600,
        "the journal is private"
    );

    remove_index(&env);
    assert_every_command_says_the_index_is_damaged(&env);
    assert!(
        !env.vault.join("index.db").exists(),
        "no command made a new empty index in its place"
    );

    let summary = rebuild(&env);
    assert_eq!(summary["records_skipped"], 0, "{summary}");
    assert_eq!(summary["objects_missing"], 0, "{summary}");
    assert_eq!(summary["damaged_index_kept_as"], Value::Null, "{summary}");
    assert_eq!(summary["deleted_recoverable"], deleted.len(), "{summary}");
    let (list_after, incidents_after) = recorded(&env);
    assert_eq!(
        list_after, list_before,
        "list --all --json differs after the rebuild"
    );
    assert_eq!(
        incidents_after, incidents_before,
        "incidents keep their codes"
    );

    // The deleted files come back byte for byte.
    let to = env.root.join("restored");
    let report = restore_all_to(&env, &to);
    assert_eq!(report["recovered"], deleted.len(), "{report}");
    for (rel, data) in &deleted {
        let back = fs::read(to.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
        assert!(&back == data, "{rel} differs after the rebuild");
    }
    // Older versions are still pointed at: every copy is accounted for and intact.
    assert_eq!(
        objects_checked(&env),
        copies_before,
        "copies known to the index"
    );

    // The service starts on the rebuilt index and finds nothing changed.
    env.start_daemon_and_sync(&[]);
    assert_eq!(recorded(&env).0, list_before);
    env.stop_daemon();
}

#[test]
fn a_truncated_or_garbled_index_is_said_in_plain_words_and_kept_aside() {
    type Damage = fn(&Path);
    let damages: [(&str, Damage); 2] = [
        ("cut to half its length", |db| {
            let len = fs::metadata(db).unwrap().len();
            fs::File::options()
                .write(true)
                .open(db)
                .unwrap()
                .set_len(len / 2)
                .unwrap();
        }),
        ("header overwritten", |db| {
            let mut bytes = fs::read(db).unwrap();
            bytes[..100].copy_from_slice(&[0x5a; 100]);
            fs::write(db, bytes).unwrap();
        }),
    ];
    for (what, damage) in damages {
        let mut env = TestEnv::new();
        for n in 0..40 {
            env.write(format!("photos/p{n:02}.jpg"), content(n, 2000));
        }
        env.start_daemon_and_sync(&[]);
        env.remove_and_sync(&["photos"]);
        let (list_before, incidents_before) = recorded(&env);
        env.stop_daemon();

        let db = env.vault.join("index.db");
        damage(&db);
        let damaged = fs::read(&db).unwrap();
        assert_every_command_says_the_index_is_damaged(&env);

        let summary = rebuild(&env);
        assert_eq!(summary["deleted_recoverable"], 40, "{what}: {summary}");
        let kept = PathBuf::from(summary["damaged_index_kept_as"].as_str().unwrap());
        assert_eq!(kept.parent(), Some(env.vault.as_path()), "{what}");
        assert!(
            kept.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("index.db.damaged-"),
            "{what}: {}",
            kept.display()
        );
        assert!(
            fs::read(&kept).unwrap() == damaged,
            "{what}: kept as it was"
        );
        assert_eq!(recorded(&env), (list_before, incidents_before), "{what}");
        let report = restore_all_to(&env, &env.root.join("restored"));
        assert_eq!(report["recovered"], 40, "{what}: {report}");
    }
}

#[test]
fn a_journal_record_cut_short_is_skipped_and_reported() {
    let mut env = TestEnv::new();
    for n in 0..10 {
        env.write(format!("a/f{n}.txt"), content(n, 500));
    }
    env.start_daemon_and_sync(&[]);
    env.remove_and_sync(&["a/f0.txt"]);
    let (list_before, _) = recorded(&env);
    // The last record: the capture of one more file, moved in whole so that it
    // is one record (written in place, it may also be seen empty first).
    let staged = env.root.join("staged");
    fs::write(&staged, "the last one").unwrap();
    fs::rename(&staged, env.path("last.txt")).unwrap();
    env.sync();
    env.stop_daemon();

    let log = env.vault.join("journal/000001.log");
    let len = fs::metadata(&log).unwrap().len();
    fs::File::options()
        .write(true)
        .open(&log)
        .unwrap()
        .set_len(len - 5)
        .unwrap();
    remove_index(&env);
    let summary = rebuild(&env);
    assert_eq!(summary["records_skipped"], 1, "{summary}");
    let why = summary["skipped"][0]["why"].as_str().unwrap();
    assert!(why.contains("cut short"), "{summary}");
    assert_eq!(
        recorded(&env).0,
        list_before,
        "all but the cut record is back"
    );

    // The text summary says so too, and the service carries on.
    remove_index(&env);
    let text = env.run_ok(&["rebuild-index"]);
    assert!(text.contains("Records skipped: 1"), "{text}");
    assert!(text.contains("cut short"), "{text}");
    env.start_daemon_and_sync(&[]);
    let all = env.list_by_path(&["--all"]);
    assert_live_and_recoverable(entry(&all, &env.json_path("last.txt")));
    env.stop_daemon();
    // A later rebuild still reads past the cut record to what came after it.
    remove_index(&env);
    let summary = rebuild(&env);
    assert_eq!(summary["records_skipped"], 1, "{summary}");
    let all = env.list_by_path(&["--all"]);
    assert_live_and_recoverable(entry(&all, &env.json_path("last.txt")));
}

#[test]
fn rebuild_index_refuses_while_the_service_runs() {
    let mut env = TestEnv::new();
    env.write("a.txt", "a");
    env.start_daemon_and_sync(&[]);
    let out = env.run(&["rebuild-index"]);
    assert!(!out.status.success(), "{}", output_text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("is running") && stderr.contains("Stop it first"),
        "{stderr}"
    );
    assert!(env.vault.join("index.db").exists());
    env.stop_daemon();
}

#[test]
fn after_kill_9_mid_capture_a_rebuild_keeps_everything_sync_confirmed() {
    let (mut rng, seed) = Rng::from_env_or_clock("after_kill_9_mid_capture_a_rebuild");
    let mut env = TestEnv::new();
    let mut confirmed: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for n in 0..300 {
        let rel = format!("tree/s{:02}/f{n:04}.dat", n % 7);
        let data = content(n, rng.range(0, 20_000));
        env.write(&rel, &data);
        confirmed.insert(rel, data);
    }
    env.start_daemon_and_sync(&[]);
    let mut deleted = BTreeMap::new();
    for rel in confirmed
        .keys()
        .filter(|r| r.starts_with("tree/s03/"))
        .cloned()
        .collect::<Vec<_>>()
    {
        fs::remove_file(env.path(&rel)).unwrap();
        deleted.insert(rel.clone(), confirmed.remove(&rel).unwrap());
    }
    env.sync();

    // More files, and a kill while they are being copied.
    let before = env.object_count();
    for n in 300..900 {
        env.write(
            format!("tree/late/f{n:04}.dat"),
            content(n, rng.range(0, 20_000)),
        );
    }
    let target = before + rng.range(1, 600);
    let deadline = Instant::now() + Duration::from_secs(60);
    while env.object_count() < target && Instant::now() < deadline {
        std::thread::yield_now();
    }
    env.kill_daemon();
    let context = format!(
        "seed {seed}, killed after {} new copies",
        env.object_count() - before
    );

    remove_index(&env);
    let summary = rebuild(&env);
    assert_eq!(summary["objects_missing"], 0, "{context}: {summary}");
    let all = env.list_by_path(&["--all"]);
    for (rel, data) in &confirmed {
        let e = entry(&all, &env.json_path(rel));
        assert_live_and_recoverable(e);
        assert_eq!(e["size"], data.len(), "{rel} ({context})");
    }
    for rel in deleted.keys() {
        assert_deleted_and_recoverable(entry(&all, &env.json_path(rel)));
    }
    let to = env.root.join("restored");
    let report = restore_all_to(&env, &to);
    assert_eq!(report["recovered"], deleted.len(), "{context}: {report}");
    for (rel, data) in &deleted {
        assert!(
            &fs::read(to.join(rel)).unwrap() == data,
            "{rel} differs ({context})"
        );
    }
    let out = env.run(&["verify", "--json"]);
    assert!(out.status.success(), "{context}: {}", output_text(&out));

    // The service picks up what the kill interrupted.
    env.start_daemon_and_sync(&[]);
    let all = env.list_by_path(&["--all"]);
    for n in 300..900 {
        assert_live_and_recoverable(entry(
            &all,
            &env.json_path(format!("tree/late/f{n:04}.dat")),
        ));
    }
    env.stop_daemon();
}
