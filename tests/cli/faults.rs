//! Faults: a full vault disk, a full destination disk, and `kill -9` of the
//! daemon or of a restore at random moments. Nothing captured is ever lost, the
//! index is never damaged, and users' files are never touched.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::*;

/// The `alerts` of `status --json` with this kind.
fn alerts_of_kind(env: &TestEnv, kind: &str) -> Vec<Value> {
    env.status_json()["alerts"]
        .as_array()
        .expect("status --json has alerts")
        .iter()
        .filter(|a| a["kind"] == kind)
        .cloned()
        .collect()
}

/// `verify` must pass: every object re-read and hash-checked, and SQLite's own
/// integrity check of the index clean.
fn assert_verify_clean(env: &TestEnv, when: &str) {
    let out = env.run(&["verify", "--json"]);
    assert!(
        out.status.success(),
        "verify failed {when}:\n{}",
        output_text(&out)
    );
    let report: Value = serde_json::from_slice(&out.stdout).expect("verify --json is JSON");
    assert_eq!(report["index_problems"], serde_json::json!([]), "{when}");
    assert_eq!(report["damaged"], serde_json::json!([]), "{when}");
}

#[test]
fn a_vault_disk_filled_by_parallel_copies_still_records_what_was_not_copied() {
    let Some(disk) = LoopDisk::new("a_vault_disk_filled_by_parallel_copies…", 16) else {
        return;
    };
    let mut env = TestEnv::new();
    env.vault = disk.join("vault");
    env.write("early.txt", "kept before the disk filled");
    env.start_daemon_and_sync(&[]);

    // Parallel copies take the last free blocks before the daemon writes down what
    // it could not copy: 60 files of 64 KiB, with room for a few.
    disk.fill_leaving("filler", 256 << 10);
    for n in 0..60 {
        env.write(
            format!("late/a-long-name-for-a-late-file-{n:03}.bin"),
            content(n, 65_536),
        );
    }
    env.remove_and_sync(&["early.txt"]);

    assert_eq!(alerts_of_kind(&env, "vault_full").len(), 1);
    let listed = env.list_by_path(&["--all"]);
    assert_deleted_and_recoverable(entry(&listed, &env.json_path("early.txt")));
    let not_copied = listed
        .values()
        .filter(|v| v["reason_code"] == "vault_full")
        .count();
    assert!(not_copied > 0, "some late files did not fit: {listed:#?}");
    assert_eq!(listed.len(), 61, "every file is recorded: {listed:#?}");
}

#[test]
fn a_full_vault_disk_stops_capture_with_an_alert_and_resumes_when_space_returns() {
    let Some(disk) = LoopDisk::new("a_full_vault_disk…", 16) else {
        return;
    };
    let mut env = TestEnv::new();
    env.vault = disk.path.join("vault");
    let mut expected: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for n in 0..10 {
        let rel = format!("early/e{n}.txt");
        let data = content(n, 20_000);
        env.write(&rel, &data);
        expected.insert(rel, data);
    }
    env.start_daemon_and_sync(&[]);
    assert!(alerts_of_kind(&env, "vault_full").is_empty());

    // Room for a few of the new files, not for all of them.
    let filler = disk.fill_leaving("filler", 3 << 20);
    let mut late = Vec::new();
    for n in 0..16 {
        let rel = format!("late/l{n:02}.bin");
        let data = content(100 + n, 512 * 1024);
        env.write(&rel, &data);
        expected.insert(rel.clone(), data);
        late.push(rel);
    }
    env.sync();
    // Things that are not copied (a folder, a link, a file whose copy exists) must not
    // make the daemon think the disk has room again.
    fs::create_dir(env.path("late/sub")).unwrap();
    std::os::unix::fs::symlink("l00.bin", env.path("late/link")).unwrap();
    let early0 = env.path("early/e0.txt");
    fs::set_permissions(&early0, std::os::unix::fs::PermissionsExt::from_mode(0o640)).unwrap();
    env.sync();

    let status = env.status_json();
    assert_eq!(status["daemon_running"], true, "{status}");
    let alert = alerts_of_kind(&env, "vault_full");
    assert_eq!(alert.len(), 1, "the vault-full alert is raised: {status}");
    let message = alert[0]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("full") && message.contains("Free space"),
        "the alert says what to do, in plain words: {message}"
    );
    // Words, not lines: the message is wrapped to the terminal's width.
    let text = env.run_ok(&["status"]);
    let words = text.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        text.starts_with("WARNING") && words.contains("is full"),
        "status shows the alert first:\n{text}"
    );

    let all = env.list_by_path(&["--all"]);
    let not_copied: Vec<&String> = late
        .iter()
        .filter(|rel| !flag(entry(&all, &env.json_path(rel)), "recoverable"))
        .collect();
    assert!(
        !not_copied.is_empty() && not_copied.len() < late.len(),
        "some late files fit, some not: {not_copied:?}"
    );
    for rel in &not_copied {
        let e = entry(&all, &env.json_path(rel));
        assert_eq!(e["reason_code"], "vault_full", "{e}");
        assert!(
            e["reason"].as_str().unwrap_or_default().contains("full"),
            "{e}"
        );
    }
    let copied: Vec<&String> = late.iter().filter(|r| !not_copied.contains(r)).collect();

    // Deletions are still recorded while the disk is full: copied files stay
    // recoverable, the others are listed as lost because the vault was full.
    let gone_uncopied = not_copied[0].clone();
    let gone_copied = copied[0].clone();
    for rel in [&gone_uncopied, &gone_copied, &"early/e1.txt".to_owned()] {
        fs::remove_file(env.path(rel)).unwrap();
        expected.remove(rel);
    }
    env.sync();
    let deleted = env.list_by_path(&[]);
    assert_eq!(deleted.len(), 3, "{deleted:#?}");
    assert_deleted_and_recoverable(entry(&deleted, &env.json_path(&gone_copied)));
    assert_deleted_and_recoverable(entry(&deleted, &env.json_path("early/e1.txt")));
    let lost = entry(&deleted, &env.json_path(&gone_uncopied));
    assert!(lost["deleted_at"].is_string(), "{lost}");
    assert!(!flag(lost, "recoverable"), "{lost}");
    assert_eq!(lost["reason_code"], "vault_full", "{lost}");
    assert_verify_clean(&env, "while the vault disk is full");

    // Space returns: the next sync copies what was skipped and clears the alert.
    fs::remove_file(&filler).unwrap();
    env.sync();
    let all = env.list_by_path(&["--all"]);
    for (rel, data) in &expected {
        let e = entry(&all, &env.json_path(rel));
        assert_live_and_recoverable(e);
        assert!(
            env.object_path(data).is_file(),
            "{rel} is not in the vault after space returned"
        );
    }
    assert!(
        alerts_of_kind(&env, "vault_full").is_empty(),
        "the alert is cleared once copies succeed again"
    );
    assert_verify_clean(&env, "after space returned");

    // The users' files were never touched.
    for (rel, data) in &expected {
        assert_eq!(&fs::read(env.path(rel)).unwrap(), data, "{rel} changed");
    }
    env.stop_daemon();
}

#[test]
fn a_full_destination_disk_stops_the_restore_cleanly_and_a_rerun_finishes() {
    let Some(disk) = LoopDisk::new("a_full_destination_disk…", 16) else {
        return;
    };
    const FILES: usize = 40;
    const SIZE: usize = 256 * 1024;
    let mut env = TestEnv::new();
    for n in 0..FILES {
        env.write(format!("album/p{n:02}.jpg"), content(n, SIZE));
    }
    env.start_daemon_and_sync(&[]);
    env.remove_and_sync(&["album"]);

    // Room for about a third of the 10 MB.
    let filler = disk.fill_leaving("filler", 3 << 20);
    let to = disk.path.join("restored");
    let to_arg = to.to_str().unwrap();
    let (success, report, output) = restore_json(&env, &["--all-deleted", "--to", to_arg]);
    assert!(!success, "a restore that could not finish fails: {output}");
    let recovered = report["recovered"].as_u64().unwrap();
    let lost = report["lost"].as_u64().unwrap();
    assert!(
        recovered > 0 && lost > 0,
        "some fit, some not: {report}\n{output}"
    );
    assert_eq!(recovered + lost, FILES as u64, "{report}");
    for f in report["files"].as_array().unwrap() {
        if f["outcome"] == "lost" {
            assert_eq!(f["reason_code"], "destination_full", "{f}");
            let reason = f["reason"].as_str().unwrap();
            assert!(
                reason.contains("disk") && reason.contains("full"),
                "the reason is in plain words: {reason}"
            );
        }
    }
    // What is under a real name is complete; no temporary file is left behind.
    let restored = to.join("album");
    let present = tree(&restored);
    assert_eq!(present.len() as u64, recovered, "{present:#?}");
    for (rel, node) in &present {
        let n: usize = rel.to_str().unwrap()[1..3].parse().unwrap();
        assert!(
            node.data == content(n, SIZE),
            "{} is not the complete file",
            rel.display()
        );
    }
    assert_eq!(restore_temp_files(&to), Vec::<PathBuf>::new());

    // Space freed: the same command finishes the job, and says so.
    fs::remove_file(&filler).unwrap();
    let (success, report, output) = restore_json(&env, &["--all-deleted", "--to", to_arg]);
    assert!(success, "the re-run finishes: {output}");
    assert_eq!(report["recovered"].as_u64().unwrap(), lost, "{report}");
    assert_eq!(report["already_present"].as_u64().unwrap(), recovered);
    let present = tree(&restored);
    assert_eq!(present.len(), FILES);
    for n in 0..FILES {
        let node = &present[Path::new(&format!("p{n:02}.jpg"))];
        assert!(node.data == content(n, SIZE), "p{n:02}.jpg differs");
    }
    assert_eq!(restore_temp_files(&to), Vec::<PathBuf>::new());
    env.stop_daemon();
}

#[test]
fn a_full_destination_disk_is_said_in_plain_words() {
    let Some(disk) = LoopDisk::new("a_full_destination_disk_is_said…", 8) else {
        return;
    };
    let env = {
        let mut env = TestEnv::new();
        env.write("big.bin", content(1, 2 << 20));
        env.write("small.txt", "small");
        env.start_daemon_and_sync(&[]);
        env.remove_and_sync(&["big.bin", "small.txt"]);
        env
    };
    let _filler = disk.fill_leaving("filler", 512 * 1024);
    let to = disk.path.join("restored");
    let out = env.run(&["restore", "--all-deleted", "--to", to.to_str().unwrap()]);
    assert!(!out.status.success(), "{}", output_text(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("is full") && !text.contains("os error"),
        "the text report says the disk is full, without jargon:\n{}",
        output_text(&out)
    );
    assert!(
        text.contains("Report saved"),
        "and where the report is: {text}"
    );
}

/// Files of distinct content and random sizes, written below `share/dir/`.
fn write_batch(
    env: &TestEnv,
    rng: &mut Rng,
    dir: &str,
    first: usize,
    count: usize,
) -> Vec<(String, Vec<u8>)> {
    (first..first + count)
        .map(|n| {
            let rel = format!("{dir}/s{:02}/f{n:05}.dat", n % 17);
            let data = content(n, rng.range(0, 24_000));
            env.write(&rel, &data);
            (rel, data)
        })
        .collect()
}

#[test]
fn kill_9_of_the_daemon_at_random_moments_loses_nothing_captured() {
    let iterations = count_from_env("UNDELETE_TEST_ITERATIONS", 5);
    let (mut rng, seed) = Rng::from_env_or_clock("kill_9_of_the_daemon_at_random_moments");
    const BATCH: usize = 400;
    let mut env = TestEnv::new();
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    let mut kill_points = Vec::new();
    for i in 0..iterations {
        // Half the batch waits for the start-up scan, half comes as events.
        let first = i * BATCH;
        files.extend(write_batch(&env, &mut rng, "tree", first, BATCH / 2));
        let before = env.object_count();
        env.start_daemon(&[]);
        files.extend(write_batch(
            &env,
            &mut rng,
            "tree",
            first + BATCH / 2,
            BATCH / 2,
        ));
        let target = before + rng.range(0, BATCH);
        let deadline = Instant::now() + Duration::from_secs(60);
        while env.object_count() < target && Instant::now() < deadline {
            std::thread::yield_now();
        }
        kill_points.push(env.object_count() - before);
        env.kill_daemon();
        // Some deletions while it is down, of files that may or may not have been copied.
        if i % 2 == 1 {
            let (rel, _) = files.remove(rng.range(0, files.len()));
            fs::remove_file(env.path(rel)).unwrap();
        }
    }
    let context = format!("seed {seed}, kills after {kill_points:?} new copies");
    eprintln!("{context}");

    env.start_daemon_and_sync(&[]);
    assert_verify_clean(&env, &context);
    let all = env.list_by_path(&["--all"]);
    for (rel, data) in &files {
        let e = entry(&all, &env.json_path(rel));
        assert!(
            flag(e, "recoverable") && e["deleted_at"].is_null(),
            "{rel}: {e} ({context})"
        );
        assert_eq!(e["size"], data.len(), "{e} ({context})");
    }
    assert_eq!(restore_temp_files(&env.vault), Vec::<PathBuf>::new());
    assert_eq!(
        fs::read_dir(env.vault.join("tmp")).unwrap().count(),
        0,
        "no unfinished copy is left in the vault ({context})"
    );

    // Every file comes back byte for byte.
    env.remove_and_sync(&["tree"]);
    let to = env.root.join("restored");
    let (success, report, output) =
        restore_json(&env, &["--all-deleted", "--to", to.to_str().unwrap()]);
    assert!(success, "{context}\n{output}");
    // Files deleted while the daemon was down come back too, if they had been copied.
    assert!(
        report["recovered"].as_u64().unwrap() >= files.len() as u64,
        "{context}\n{report}"
    );
    let restored = tree(&to.join("tree"));
    for (rel, data) in &files {
        let rel = Path::new(rel).strip_prefix("tree").unwrap();
        let node = restored
            .get(rel)
            .unwrap_or_else(|| panic!("{} was not restored ({context})", rel.display()));
        assert!(&node.data == data, "{} differs ({context})", rel.display());
    }
    env.stop_daemon();
}

#[test]
fn kill_9_of_a_restore_at_random_moments_then_a_rerun_finishes() {
    let iterations = count_from_env("UNDELETE_TEST_ITERATIONS", 5);
    let (mut rng, seed) = Rng::from_env_or_clock("kill_9_of_a_restore_at_random_moments");
    const FILES: usize = 1500;
    let mut env = TestEnv::new();
    let mut files: HashMap<PathBuf, Vec<u8>> = HashMap::new();
    for n in 0..FILES {
        let rel = PathBuf::from(format!("docs/d{:02}/f{n:04}.bin", n % 10));
        let data = content(n, rng.range(1, 40_000));
        env.write(&rel, &data);
        files.insert(rel.strip_prefix("docs").unwrap().to_owned(), data);
    }
    env.start_daemon_and_sync(&[]);
    env.remove_and_sync(&["docs"]);
    let under = env.path("docs");
    let under = under.to_str().unwrap();

    for i in 0..iterations {
        let to = env.root.join(format!("restored{i}"));
        let to_arg = to.to_str().unwrap();
        let mut kills = Vec::new();
        // Killed once or twice, each time after a random number of files is in place.
        for _ in 0..rng.range(1, 3) {
            let target = rng.range(0, FILES);
            let mut child = env
                .command()
                .args(["restore", "--under", under, "--to", to_arg])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            let started = Instant::now();
            loop {
                let done = walkdir::WalkDir::new(&to).into_iter().count();
                if done >= target || child.try_wait().unwrap().is_some() {
                    break;
                }
                assert!(started.elapsed() < Duration::from_secs(60), "restore hangs");
                std::thread::yield_now();
            }
            let _ = child.kill();
            child.wait().unwrap();
            kills.push(target);
            let context = format!("seed {seed}, iteration {i}, killed after {kills:?} files");
            // Whatever is under a real name is complete.
            for (rel, node) in tree(&to.join("docs")) {
                if node.kind != "file" {
                    continue;
                }
                // Files half written are in a folder of the restore's own.
                let staged = rel.components().any(|c| {
                    c.as_os_str()
                        .as_encoded_bytes()
                        .starts_with(b".undelete-restore-")
                });
                if staged {
                    continue;
                }
                let expected = files
                    .get(&rel)
                    .unwrap_or_else(|| panic!("unexpected {} ({context})", rel.display()));
                assert!(
                    &node.data == expected,
                    "{} is under its real name but not complete ({context})",
                    rel.display()
                );
            }
        }
        let context = format!("seed {seed}, iteration {i}, killed after {kills:?} files");
        let (success, report, output) = restore_json(&env, &["--under", under, "--to", to_arg]);
        assert!(success, "the re-run finishes ({context}):\n{output}");
        assert_eq!(
            report["recovered"].as_u64().unwrap() + report["already_present"].as_u64().unwrap(),
            FILES as u64,
            "{context}"
        );
        let restored = tree(&to.join("docs"));
        let restored_files: HashMap<&PathBuf, &Node> =
            restored.iter().filter(|(_, n)| n.kind == "file").collect();
        assert_eq!(
            restored_files.len(),
            FILES,
            "no extra or temporary file is left ({context})"
        );
        for (rel, data) in &files {
            assert!(
                restored_files.get(rel).is_some_and(|n| &n.data == data),
                "{} differs ({context})",
                rel.display()
            );
        }
        assert_eq!(restore_temp_files(&to), Vec::<PathBuf>::new(), "{context}");
        fs::remove_dir_all(&to).unwrap();
    }
    env.stop_daemon();
}

/// Every command that only reads, run on a vault whose disk went read-only: each
/// works, says once that the vault is read-only, and tries no write.
fn read_only_vault_still_lists_and_restores(stop: &str) {
    let Some(disk) = LoopDisk::new("read_only_vault_still_lists_and_restores", 64) else {
        return;
    };
    let mut env = TestEnv::new();
    env.vault = disk.join("vault");
    for n in 0..20 {
        env.write(format!("docs/f{n}.txt"), content(n, 2000));
    }
    env.start_daemon_and_sync(&[]);
    env.remove_and_sync(&["docs"]);
    if stop == "killed" {
        // The last changes are then still in SQLite's write-ahead log.
        env.kill_daemon();
        assert!(
            disk.join("vault/index.db-wal").exists(),
            "a log is left to read"
        );
    } else {
        env.stop_daemon();
    }
    disk.remount_read_only();
    let to = env.root.join("elsewhere");
    let share = env.json_path("");
    let docs = env.path("docs/f3.txt");
    for args in [
        vec!["list", "--json"],
        vec!["list"],
        vec!["incidents"],
        vec!["status"],
        vec!["status", "--json"],
        vec!["versions", docs.to_str().unwrap()],
        vec!["restore", "--under", &share, "--dry-run"],
        vec!["restore", "--under", &share, "--to", to.to_str().unwrap()],
    ] {
        let out = env.run(&args);
        let text = output_text(&out);
        // status says 3: protection is off, the daemon being stopped.
        let wanted = if args[0] == "status" { 3 } else { 0 };
        assert_eq!(out.status.code(), Some(wanted), "{stop}: {args:?}: {text}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            stderr.matches("read-only").count(),
            1,
            "{stop}: {args:?} says it once: {text}"
        );
        assert!(
            !text.contains("Read-only file system"),
            "{stop}: {args:?}: {text}"
        );
    }
    let listed = env.list_json(&[]);
    assert_eq!(listed.len(), 20, "{stop}: every deletion is listed");
    for n in 0..20 {
        assert_eq!(
            fs::read(to.join(format!("docs/f{n}.txt"))).unwrap(),
            content(n, 2000)
        );
    }
    let out = env.run(&["restore", "--under", &share, "--to", to.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("the vault is read-only, so this report was not saved"),
        "{stop}: {stdout}"
    );
    assert!(
        stdout.contains("20 were already in place"),
        "{stop}: {stdout}"
    );
}

#[test]
fn a_read_only_vault_after_a_clean_stop_still_lists_and_restores_elsewhere() {
    read_only_vault_still_lists_and_restores("stopped");
}

#[test]
fn a_read_only_vault_of_a_killed_daemon_still_lists_and_restores_elsewhere() {
    read_only_vault_still_lists_and_restores("killed");
}

#[test]
fn copies_of_a_file_that_changed_while_read_are_not_left_in_the_vault() {
    // A log appended every few milliseconds: most reads see it change and are thrown
    // away. Each of those copies stayed in `objects/`, unknown to the index, until a
    // small vault filled while `status` said almost nothing was used.
    let Some(disk) = LoopDisk::new("copies_of_a_file_that_changed_while_read…", 64) else {
        return;
    };
    let mut env = TestEnv::new();
    env.vault = disk.join("vault");
    let log = env.write("app.log", content(1, 6 << 20));
    env.start_daemon_and_sync(&[]);
    let stop = Instant::now() + Duration::from_secs(3);
    let mut n = 0;
    while Instant::now() < stop {
        let mut f = OpenOptions::new().append(true).open(&log).unwrap();
        f.write_all(&content(n, 4096)).unwrap();
        drop(f);
        n += 1;
        std::thread::sleep(Duration::from_millis(3));
    }
    env.sync();
    env.stop_daemon();

    let on_disk: u64 = walkdir::WalkDir::new(env.vault.join("objects"))
        .min_depth(2)
        .into_iter()
        .flatten()
        .map(|e| e.metadata().unwrap().len())
        .sum();
    let verify: serde_json::Value =
        serde_json::from_str(&env.run_ok(&["verify", "--json"])).unwrap();
    assert_eq!(
        verify["bytes_checked"].as_u64(),
        Some(on_disk),
        "the vault holds bytes the index does not account for ({n} appends): {verify}"
    );
    assert_eq!(verify["unrecorded_objects"], 0, "{verify}");
    let status = env.status_json();
    assert_eq!(
        status["vault"]["bytes_used"].as_u64(),
        Some(on_disk),
        "{status}"
    );
    assert_eq!(
        fs::read_dir(env.vault.join("tmp")).unwrap().count(),
        0,
        "nothing is left in tmp/"
    );
}

#[test]
fn a_copy_named_but_never_recorded_is_swept_at_start_and_seen_by_verify() {
    // A crash between naming a copy and committing the row that refers to it.
    let mut env = TestEnv::new();
    env.write("kept.txt", "kept");
    env.start_daemon_and_sync(&[]);
    env.stop_daemon();
    let stray = env.object_path(b"never recorded");
    fs::write(&stray, b"never recorded").unwrap();
    let verify: serde_json::Value =
        serde_json::from_str(&env.run_ok(&["verify", "--json"])).unwrap();
    assert_eq!(verify["unrecorded_objects"], 1, "{verify}");
    assert_eq!(verify["unrecorded_bytes"], 14, "{verify}");
    // `status` keeps the sum of the copies recorded rather than walking the vault:
    // the stray is named by verify, and gone once the service starts.
    let used = env.status_json()["vault"]["bytes_used"].as_u64().unwrap();
    assert_eq!(used, 4, "status counts the copies recorded");
    env.start_daemon_and_sync(&[]);
    assert!(!stray.exists(), "the stray copy was swept");
    assert!(env.object_path(b"kept").is_file(), "a recorded copy stays");
    env.stop_daemon();
}

/// An ext4 image of 4 KiB blocks, loop-mounted on `dir` (errors=continue, so a
/// damaged block fails the reads that meet it and nothing else); unmounted when
/// dropped.
struct Ext4Image {
    image: PathBuf,
    dir: PathBuf,
    mounted: bool,
}

impl Ext4Image {
    /// `None`, after saying why, where this machine cannot make or mount one.
    fn new(test: &str, root: &Path, megabytes: u64) -> Option<Self> {
        if !is_root() {
            eprintln!("SKIPPED {test}: loop mounts need root");
            return None;
        }
        let image = root.join("disk.img");
        let dir = root.join("disk");
        fs::create_dir(&dir).unwrap();
        fs::File::create(&image)
            .and_then(|f| f.set_len(megabytes << 20))
            .unwrap();
        let made = std::process::Command::new("mkfs.ext4")
            .args(["-q", "-F", "-m", "0", "-b", "4096"])
            .arg(&image)
            .output();
        if !made.as_ref().is_ok_and(|out| out.status.success()) {
            eprintln!("SKIPPED {test}: mkfs.ext4 failed: {made:?}");
            return None;
        }
        let mut disk = Self {
            image,
            dir,
            mounted: false,
        };
        if let Err(why) = disk.mount() {
            eprintln!("SKIPPED {test}: cannot mount a loop device here: {why}");
            return None;
        }
        Some(disk)
    }

    fn mount(&mut self) -> Result<(), String> {
        let out = std::process::Command::new("mount")
            .args(["-o", "loop,errors=continue"])
            .arg(&self.image)
            .arg(&self.dir)
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(output_text(&out));
        }
        self.mounted = true;
        Ok(())
    }

    /// Unmounted, so nothing of it stays in memory and the next mount reads the disk.
    fn unmount(&mut self) {
        let out = std::process::Command::new("umount")
            .arg(&self.dir)
            .output()
            .unwrap();
        assert!(out.status.success(), "umount: {}", output_text(&out));
        self.mounted = false;
    }

    /// The block that holds the map of the pieces of the file at `path` (inside the
    /// file system, from its top), where ext4 keeps it in a block of its own.
    fn extent_block(&self, path: &Path) -> Result<u64, String> {
        let out = std::process::Command::new("debugfs")
            .arg("-R")
            .arg(format!("ex {}", path.display()))
            .arg(&self.image)
            .output()
            .expect("run debugfs");
        // " 0/ 1   1/  1     0 -   511  5825            512": level 0 of a tree one
        // level deep, its entry's first logical block, last, and where it points.
        let said = String::from_utf8_lossy(&out.stdout);
        said.lines()
            .find_map(|line| {
                let mut line = line.to_owned();
                while line.contains("/ ") {
                    line = line.replace("/ ", "/");
                }
                let fields: Vec<&str> = line.split_whitespace().collect();
                let depth = fields.first()?.strip_prefix("0/")?.parse::<u32>().ok()?;
                (depth > 0 && fields.len() >= 7).then(|| fields[5].parse().ok())?
            })
            .ok_or_else(|| format!("{said}{}", String::from_utf8_lossy(&out.stderr)))
    }

    /// Writes zeros over the block `block` of the image.
    fn zero_block(&self, block: u64) {
        let image = OpenOptions::new().write(true).open(&self.image).unwrap();
        std::os::unix::fs::FileExt::write_all_at(&image, &[0u8; 4096], block * 4096).unwrap();
        image.sync_all().unwrap();
    }
}

impl Drop for Ext4Image {
    fn drop(&mut self) {
        if self.mounted {
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(&self.dir)
                .status();
        }
    }
}

/// Takes every free block of the file system at `dir` into two files in `dir`, then
/// gives back every other block of the last 48 MiB: what is written next lies in
/// single blocks, scattered.
fn scatter_free_space(dir: &Path) -> [PathBuf; 2] {
    use rustix::fs::FallocateFlags;
    let files = [dir.join("filler"), dir.join("filler.rest")];
    let free = free_space(dir);
    let filler = fs::File::create(&files[0]).unwrap();
    let size = free - (16 << 20);
    rustix::fs::fallocate(&filler, FallocateFlags::empty(), 0, size).unwrap();
    let rest = fs::File::create(&files[1]).unwrap();
    let mut at = 0;
    for step in [1 << 20, 4096] {
        while rustix::fs::fallocate(&rest, FallocateFlags::empty(), at, step).is_ok() {
            at += step;
        }
    }
    let holes = FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE;
    for offset in (size - (48 << 20)..size).step_by(8192) {
        rustix::fs::fallocate(&filler, holes, offset, 4096).unwrap();
    }
    files
}

#[test]
fn a_vault_copy_its_disk_cannot_read_is_lost_as_the_vaults_not_as_a_failed_write() {
    let mut env = TestEnv::new();
    let Some(mut disk) = Ext4Image::new("a_vault_copy_its_disk_cannot_read…", &env.root, 128)
    else {
        return;
    };
    env.share = disk.dir.join("share");
    env.vault = disk.dir.join("vault");
    fs::create_dir(&env.share).unwrap();
    // Copied into scattered blocks, the vault's copy is in so many pieces that ext4
    // keeps their map in a block of its own.
    let fillers = scatter_free_space(&disk.dir);
    env.start_daemon_and_sync(&[]);
    let scan = content(61, 2 << 20);
    env.write("scans/contract.pdf", &scan);
    env.sync();
    env.remove_and_sync(&["scans/contract.pdf"]);
    env.stop_daemon();
    let object = Path::new("/").join(env.object_path(&scan).strip_prefix(&disk.dir).unwrap());
    disk.unmount();
    let map = disk.extent_block(&object).unwrap_or_else(|why| {
        panic!(
            "the vault's copy {} is not in pieces: {why}",
            object.display()
        )
    });
    // That map lost: the copy still opens, and every read of it fails with an I/O
    // error, as on a failing disk, while the disk takes writes as before.
    disk.zero_block(map);
    disk.mount().unwrap();
    assert!(
        fs::read(env.object_path(&scan)).is_err(),
        "the vault's copy can still be read"
    );
    for filler in fillers {
        fs::remove_file(filler).unwrap();
    }

    let (success, report, output) = restore_json(&env, &["--all-deleted"]);
    assert!(!success, "{output}");
    let file = &report["files"][0];
    assert_eq!(file["outcome"], "lost", "{report}");
    let reason = file["reason"].as_str().unwrap();
    assert_ne!(file["reason_code"], "write_failed", "{reason}");
    assert!(
        reason.contains("in the vault") && reason.contains("Input/output error"),
        "the vault's copy is named as what failed: {reason}"
    );
    assert!(!env.path("scans/contract.pdf").exists());
    assert_eq!(restore_temp_files(&env.share), Vec::<PathBuf>::new());
}
