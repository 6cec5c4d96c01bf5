//! Capture: files that exist at start-up, files written while running, new
//! folder bursts, rules that keep files out, and things that are not files.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt, symlink};
use std::os::unix::net::UnixListener;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::common::*;

#[test]
fn files_present_before_the_daemon_starts_are_captured() {
    let mut env = TestEnv::new();
    let files: [(&str, &[u8]); 4] = [
        ("a.txt", b"alpha"),
        ("sub/deeper/b.txt", b"bravo bravo"),
        ("sub/c.bin", &[0u8, 1, 2, 255, 254]),
        ("empty.txt", b""),
    ];
    for (rel, data) in files {
        env.write(rel, data);
    }
    env.start_daemon_and_sync(&[]);

    let all = env.list_by_path(&["--all"]);
    assert_eq!(
        all.len(),
        files.len(),
        "only the files are listed: {all:#?}"
    );
    for (rel, data) in files {
        let e = entry(&all, &env.json_path(rel));
        assert_live_and_recoverable(e);
        assert_eq!(e["kind"], "file", "{e}");
        assert_eq!(e["size"], data.len(), "{e}");
        assert!(
            env.object_path(data).is_file(),
            "the content of {rel} is not in the vault"
        );
    }
    assert!(
        env.list_json(&[]).is_empty(),
        "nothing was deleted yet, yet the recycle bin is not empty"
    );

    fs::remove_file(env.path("a.txt")).unwrap();
    env.remove_and_sync(&["sub"]);

    let deleted = env.list_by_path(&[]);
    assert_eq!(deleted.len(), 3, "{deleted:#?}");
    for rel in ["a.txt", "sub/deeper/b.txt", "sub/c.bin"] {
        let e = entry(&deleted, &env.json_path(rel));
        assert_deleted_and_recoverable(e);
        assert_eq!(e["how"], "deleted", "{e}");
        assert_eq!(e["deleted_at_approximate"], false, "seen by an event: {e}");
    }
    let all = env.list_by_path(&["--all"]);
    assert_live_and_recoverable(entry(&all, &env.json_path("empty.txt")));
}

/// What the daemon records is committed without anyone asking (there is no sync
/// here), and while changes keep coming, not only once they stop: a reader, and the
/// start-up after a crash, never wait for a busy share to calm down.
#[test]
fn what_is_recorded_is_committed_while_changes_keep_coming() {
    let mut env = TestEnv::new();
    let busy = env.write("busy.txt", "its mode changes again and again");
    env.start_daemon_and_sync(&[]);
    let first = env.json_path("first.txt");
    let stop = AtomicBool::new(false);
    let changes = AtomicU64::new(0);
    let (committed_while_busy, changes) = std::thread::scope(|scope| {
        let changer = scope.spawn(|| {
            let started = Instant::now();
            while !stop.load(Ordering::Relaxed) && started.elapsed() < Duration::from_secs(30) {
                let n = changes.fetch_add(1, Ordering::Relaxed);
                let mode = if n.is_multiple_of(2) { 0o600 } else { 0o644 };
                fs::set_permissions(&busy, fs::Permissions::from_mode(mode)).unwrap();
            }
        });
        // The share is busy before first.txt comes, so a quiet moment does not commit it.
        while changes.load(Ordering::Relaxed) < 100 && !changer.is_finished() {
            std::thread::yield_now();
        }
        env.write("first.txt", "recorded while the share is busy");
        let committed_while_busy = loop {
            if env.list_by_path(&["--all"]).contains_key(&first) {
                break !changer.is_finished();
            }
            if changer.is_finished() {
                break false;
            }
        };
        stop.store(true, Ordering::Relaxed);
        changer.join().unwrap();
        (committed_while_busy, changes.load(Ordering::Relaxed))
    });
    assert!(
        committed_while_busy,
        "first.txt was committed only once the changes stopped ({changes} changes)"
    );
}

#[test]
fn files_written_while_running_are_captured_and_rewrites_keep_every_version() {
    let mut env = TestEnv::new();
    env.start_daemon_and_sync(&[]);

    let v1 = b"first version".as_slice();
    let v2 = b"the second version, longer".as_slice();
    let v3 = b"the second version, longer + an appended line\n".as_slice();
    env.write("notes.txt", v1);
    env.write("docs/2024/report.txt", "quarterly numbers");
    env.sync();
    let all = env.list_by_path(&["--all"]);
    let notes = entry(&all, &env.json_path("notes.txt"));
    assert_live_and_recoverable(notes);
    assert_eq!(notes["size"], v1.len());
    assert_live_and_recoverable(entry(&all, &env.json_path("docs/2024/report.txt")));
    assert!(
        env.object_path(v1).is_file(),
        "version 1 is not in the vault"
    );
    assert!(env.object_path(b"quarterly numbers").is_file());

    // Rewritten in place (truncate + write), then appended to.
    env.write("notes.txt", v2);
    env.sync();
    let mut file = OpenOptions::new()
        .append(true)
        .open(env.path("notes.txt"))
        .unwrap();
    file.write_all(&v3[v2.len()..]).unwrap();
    drop(file);
    env.sync();

    let all = env.list_by_path(&["--all"]);
    let notes = entry(&all, &env.json_path("notes.txt"));
    assert_live_and_recoverable(notes);
    assert_eq!(
        notes["size"],
        v3.len(),
        "the newest version is current: {notes}"
    );
    for (n, version) in [v1, v2, v3].into_iter().enumerate() {
        assert!(
            env.object_path(version).is_file(),
            "version {} of notes.txt is not in the vault",
            n + 1
        );
    }
    let verify = env.run(&["verify"]);
    assert!(verify.status.success(), "{}", output_text(&verify));

    env.remove_and_sync(&["notes.txt"]);
    let deleted = env.list_by_path(&[]);
    assert_eq!(
        deleted.len(),
        1,
        "only the last version is deleted: {deleted:#?}"
    );
    let notes = entry(&deleted, &env.json_path("notes.txt"));
    assert_deleted_and_recoverable(notes);
    assert_eq!(notes["size"], v3.len(), "{notes}");
}

#[test]
fn files_in_new_nested_folders_made_in_a_burst_are_all_captured() {
    let mut env = TestEnv::new();
    env.start_daemon_and_sync(&[]);

    // `mkdir -p a/b/c` and a file inside, over and over, with no sync in between:
    // files made in a folder before its watch exists are never reported by the kernel.
    const BURSTS: usize = 200;
    let mut expected = Vec::new();
    for i in 0..BURSTS {
        let deep = format!("burst{i:03}/a/b/c/deep.txt");
        let top = format!("burst{i:03}/a/top.txt");
        let deep_data = content(2 * i, 100 + i);
        let top_data = content(2 * i + 1, 10 + i);
        env.write(&deep, &deep_data);
        fs::write(env.path(&top), &top_data).unwrap();
        expected.push((deep, deep_data));
        expected.push((top, top_data));
    }
    env.sync();

    let all = env.list_by_path(&["--all"]);
    let missed: Vec<&String> = expected
        .iter()
        .map(|(rel, _)| rel)
        .filter(|rel| !all.contains_key(&env.json_path(rel)))
        .collect();
    assert!(
        missed.is_empty(),
        "{} of {} files were missed: {missed:?}",
        missed.len(),
        expected.len()
    );
    assert_eq!(all.len(), expected.len());
    for (rel, data) in &expected {
        let e = entry(&all, &env.json_path(rel));
        assert_live_and_recoverable(e);
        assert_eq!(e["size"], data.len(), "{e}");
        assert!(env.object_path(data).is_file(), "{rel} is not in the vault");
    }
}

#[test]
fn files_made_in_a_brand_new_folder_at_once_are_captured() {
    // `mkdir d && cp file d/`: the kernel reports the folder, but the file only if
    // the folder's watch exists by then; a walk of the folder must cover the rest.
    const FOLDERS: usize = 300;
    let mut env = TestEnv::new();
    env.start_daemon_and_sync(&[]);
    // Another user keeps writing meanwhile, as on a busy file server: the kernel's
    // reports never pause, so they and the daemon's own work interleave in every order.
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                fs::write(env.path("busy.txt"), n.to_le_bytes()).unwrap();
                n += 1;
            }
        });
        for n in 0..FOLDERS {
            fs::create_dir(env.path(format!("new{n:03}"))).unwrap();
            fs::write(env.path(format!("new{n:03}/file.txt")), content(n, 200)).unwrap();
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
    });
    env.sync();

    let all = env.list_by_path(&["--all"]);
    let missed: Vec<usize> = (0..FOLDERS)
        .filter(|n| !all.contains_key(&env.json_path(format!("new{n:03}/file.txt"))))
        .collect();
    assert!(
        missed.is_empty(),
        "{} of {FOLDERS} files made right after their folder were never recorded: \
         newNNN/file.txt for NNN in {missed:?}",
        missed.len()
    );
    for n in 0..FOLDERS {
        let e = entry(&all, &env.json_path(format!("new{n:03}/file.txt")));
        assert_live_and_recoverable(e);
        assert_eq!(e["size"], 200, "{e}");
    }
}

#[test]
fn excluded_and_oversized_files_are_recorded_with_their_reason() {
    let mut env = TestEnv::new();
    // Present at start-up: found by the scan.
    env.write("before.tmp", "scratch from before");
    env.write("before-big.bin", content(1, 2048));
    env.write("before-ok.txt", "kept from before");
    env.start_daemon_and_sync(&["--exclude", "*.tmp", "--max-file-size", "1KiB"]);
    // Written while running: found by events.
    env.write("during.tmp", "scratch while running");
    env.write("deep/er/during.tmp", "deep scratch");
    // Moved in whole: a file growing past the limit while the daemon looks is
    // a_file_over_the_size_limit_is_never_copied_even_while_it_is_written's subject.
    let outside = env.root.join("during-big.bin");
    fs::write(&outside, content(2, 5000)).unwrap();
    fs::rename(&outside, env.path("during-big.bin")).unwrap();
    env.write("during-ok.txt", "kept while running");
    env.write("exactly-the-limit.bin", content(3, 1024));
    env.sync();

    let excluded = ["before.tmp", "during.tmp", "deep/er/during.tmp"];
    let too_large = ["before-big.bin", "during-big.bin"];
    let kept = ["before-ok.txt", "during-ok.txt", "exactly-the-limit.bin"];

    let check_reasons = |listed: &std::collections::HashMap<String, serde_json::Value>| {
        for rel in excluded {
            let e = entry(listed, &env.json_path(rel));
            assert!(!flag(e, "recoverable"), "{e}");
            let reason = e["reason"].as_str().unwrap_or_default();
            assert!(
                reason.contains("excluded") && reason.contains("*.tmp"),
                "the reason should name the rule: {e}"
            );
            assert_eq!(e["reason_code"], "excluded", "{e}");
        }
        for rel in too_large {
            let e = entry(listed, &env.json_path(rel));
            assert!(!flag(e, "recoverable"), "{e}");
            let reason = e["reason"].as_str().unwrap_or_default();
            assert!(
                reason.contains("capture limit") && reason.contains("1.0 KiB"),
                "the reason should name the capture limit: {e}"
            );
            assert_eq!(e["reason_code"], "too_large", "{e}");
        }
    };

    let all = env.list_by_path(&["--all"]);
    assert_eq!(all.len(), excluded.len() + too_large.len() + kept.len());
    check_reasons(&all);
    for rel in kept {
        assert_live_and_recoverable(entry(&all, &env.json_path(rel)));
    }
    for (rel, data) in [
        ("before.tmp", b"scratch from before".to_vec()),
        ("during.tmp", b"scratch while running".to_vec()),
        ("before-big.bin", content(1, 2048)),
        ("during-big.bin", content(2, 5000)),
    ] {
        assert!(
            !env.object_path(&data).exists(),
            "{rel}, kept out by a rule, was copied into the vault anyway"
        );
    }

    for rel in excluded.iter().chain(&too_large).chain(&kept) {
        fs::remove_file(env.path(rel)).unwrap();
    }
    env.sync();
    let deleted = env.list_by_path(&[]);
    assert_eq!(deleted.len(), all.len(), "{deleted:#?}");
    check_reasons(&deleted);
    for rel in excluded.iter().chain(&too_large) {
        let e = entry(&deleted, &env.json_path(rel));
        assert!(e["deleted_at"].is_string(), "{e}");
    }
    for rel in kept {
        assert_deleted_and_recoverable(entry(&deleted, &env.json_path(rel)));
    }
}

#[test]
fn a_file_over_the_size_limit_is_never_copied_even_while_it_is_written() {
    // `cp big.iso share/`: the daemon hears of the file when it is created, still
    // empty, and may read it while it grows. The limit holds for what is read.
    const FILES: usize = 200;
    let mut env = TestEnv::new();
    env.start_daemon_and_sync(&["--max-file-size", "1KiB"]);
    for n in 0..FILES {
        fs::write(env.path(format!("big{n:03}.bin")), content(n, 64 * 1024)).unwrap();
    }
    env.sync();

    let copied: Vec<usize> = (0..FILES)
        .filter(|&n| env.object_path(&content(n, 64 * 1024)).exists())
        .collect();
    assert!(
        copied.is_empty(),
        "{} of {FILES} files over the 1 KiB limit were copied into the vault anyway: \
         bigNNN.bin for NNN in {copied:?}",
        copied.len()
    );
    let all = env.list_by_path(&["--all"]);
    for n in 0..FILES {
        let e = entry(&all, &env.json_path(format!("big{n:03}.bin")));
        assert!(!flag(e, "recoverable"), "{e}");
        assert_eq!(e["reason_code"], "too_large", "{e}");
    }
}

#[test]
fn links_pipes_sockets_and_unreadable_modes_are_recorded_without_hanging() {
    let mut env = TestEnv::new();
    let mkfifo = |path: &std::path::Path| {
        rustix::fs::mkfifoat(
            rustix::fs::CWD,
            path,
            rustix::fs::Mode::from_raw_mode(0o644),
        )
        .unwrap_or_else(|e| panic!("mkfifo {}: {e}", path.display()))
    };
    // Present at start-up: the scan must not open the pipe, and must read the 000 file.
    mkfifo(&env.path("pipe-before"));
    env.write("locked-before.txt", "secret from before");
    fs::set_permissions(
        env.path("locked-before.txt"),
        fs::Permissions::from_mode(0o000),
    )
    .unwrap();
    env.start_daemon_and_sync(&[]);

    env.write("target.txt", "the target");
    let absolute_target = env.path("target.txt");
    symlink(&absolute_target, env.path("link-absolute")).unwrap();
    symlink("target.txt", env.path("link-relative")).unwrap();
    symlink("nowhere/missing.txt", env.path("link-dangling")).unwrap();
    mkfifo(&env.path("pipe-during"));
    let _listener = UnixListener::bind(env.path("socket")).unwrap();
    // Created with mode 000 and written through the open descriptor.
    let mut locked = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o000)
        .open(env.path("locked-during.txt"))
        .unwrap();
    locked.write_all(b"secret while running").unwrap();
    drop(locked);
    env.sync();

    let all = env.list_by_path(&["--all"]);
    for (rel, target) in [
        ("link-absolute", absolute_target.to_str().unwrap()),
        ("link-relative", "target.txt"),
        ("link-dangling", "nowhere/missing.txt"),
    ] {
        let e = entry(&all, &env.json_path(rel));
        assert_eq!(e["kind"], "symlink", "{e}");
        assert_live_and_recoverable(e);
        assert_eq!(
            e["size"],
            target.len(),
            "a link's size is its target's: {e}"
        );
    }
    for (rel, what) in [
        ("pipe-before", "FIFO"),
        ("pipe-during", "FIFO"),
        ("socket", "socket"),
    ] {
        let e = entry(&all, &env.json_path(rel));
        assert_eq!(e["kind"], "special", "{e}");
        assert!(!flag(e, "recoverable"), "{e}");
        let reason = e["reason"].as_str().unwrap_or_default();
        assert!(reason.contains(what), "the reason should say {what}: {e}");
    }
    for (rel, data) in [
        ("locked-before.txt", "secret from before"),
        ("locked-during.txt", "secret while running"),
    ] {
        let e = entry(&all, &env.json_path(rel));
        assert_eq!(e["kind"], "file", "{e}");
        assert_live_and_recoverable(e);
        assert!(
            env.object_path(data.as_bytes()).is_file(),
            "{rel} (mode 000) was not copied"
        );
    }

    // Still working afterwards.
    env.write("after.txt", "written after the special files");
    env.sync();
    let all = env.list_by_path(&["--all"]);
    assert_live_and_recoverable(entry(&all, &env.json_path("after.txt")));
    assert!(
        env.object_path(b"written after the special files")
            .is_file()
    );

    // And their deletion is recorded too.
    for rel in ["pipe-before", "pipe-during", "socket", "link-dangling"] {
        fs::remove_file(env.path(rel)).unwrap();
    }
    env.sync();
    let deleted = env.list_by_path(&[]);
    assert_eq!(deleted.len(), 4, "{deleted:#?}");
    assert_deleted_and_recoverable(entry(&deleted, &env.json_path("link-dangling")));
    let pipe = entry(&deleted, &env.json_path("pipe-during"));
    assert!(pipe["deleted_at"].is_string() && !flag(pipe, "recoverable"));
}

#[test]
fn a_file_written_through_its_other_hard_link_is_restored_with_its_last_content() {
    let mut env = TestEnv::new();
    fs::create_dir(env.path("x")).unwrap();
    fs::create_dir(env.path("y")).unwrap();
    env.write("x/report.doc", "first draft");
    fs::hard_link(env.path("x/report.doc"), env.path("y/report.doc")).unwrap();
    fs::hard_link(env.path("x/report.doc"), env.path("x/copy.doc")).unwrap();
    env.start_daemon_and_sync(&[]);
    // Written in place through one name: inotify names only that one.
    let mut file = OpenOptions::new()
        .write(true)
        .open(env.path("x/report.doc"))
        .unwrap();
    file.write_all(b"FINAL draft").unwrap();
    drop(file);
    env.sync();
    fs::remove_file(env.path("y/report.doc")).unwrap();
    env.remove_and_sync(&["x/copy.doc"]);
    let out = env
        .command()
        .args(["restore", "--all-deleted"])
        .output()
        .unwrap();
    let text = output_text(&out);
    assert!(out.status.success(), "{text}");
    assert_eq!(
        fs::read(env.path("y/report.doc")).unwrap(),
        b"FINAL draft",
        "{text}"
    );
    assert_eq!(
        fs::read(env.path("x/copy.doc")).unwrap(),
        b"FINAL draft",
        "{text}"
    );
}

#[test]
fn a_folder_made_and_removed_before_the_daemon_looked_is_no_lost_file() {
    let mut env = TestEnv::new();
    env.start_daemon_and_sync(&[]);
    // Many times over: whichever the daemon sees first, the folder or its removal,
    // it is recorded as a folder, and no incident counts it as a file.
    for i in 0..200 {
        let dir = env.path(format!("brief{i}"));
        fs::create_dir(&dir).unwrap();
        fs::remove_dir(&dir).unwrap();
    }
    env.sync();
    let all = env.list_by_path(&["--all"]);
    for (path, e) in &all {
        if path.contains("/brief") {
            assert_eq!(e["kind"], "directory", "{e}");
        }
    }
    for incident in env.incidents_json() {
        assert_eq!(incident["files"], 0, "{incident}");
    }
}
