//! Renames inside the protected folder, and moves out of it.

use std::fs;

use crate::common::*;

#[test]
fn renames_inside_the_tree_move_the_record_and_are_not_deletions() {
    let mut env = TestEnv::new();
    env.write("a.txt", "file a");
    env.write("dir1/x.txt", "file x");
    env.write("dir1/sub/y.txt", "file y");
    env.write("from/z.txt", "file z");
    fs::create_dir(env.path("to")).unwrap();
    env.start_daemon_and_sync(&[]);

    fs::rename(env.path("a.txt"), env.path("renamed.txt")).unwrap();
    fs::rename(env.path("dir1"), env.path("dir2")).unwrap();
    fs::rename(env.path("from/z.txt"), env.path("to/z.txt")).unwrap();
    // A folder made and renamed before the daemon could look at it.
    env.write("newdir/inner/w.txt", "file w");
    fs::rename(env.path("newdir"), env.path("newdir-renamed")).unwrap();
    env.sync();

    let all = env.list_by_path(&["--all"]);
    for (rel, data) in [
        ("renamed.txt", "file a"),
        ("dir2/x.txt", "file x"),
        ("dir2/sub/y.txt", "file y"),
        ("to/z.txt", "file z"),
        ("newdir-renamed/inner/w.txt", "file w"),
    ] {
        let e = entry(&all, &env.json_path(rel));
        assert_live_and_recoverable(e);
        assert_eq!(e["size"], data.len(), "{e}");
        assert!(env.object_path(data.as_bytes()).is_file(), "{rel}");
    }
    assert_eq!(all.len(), 5, "old names must not stay listed: {all:#?}");
    let old_names = [
        "a.txt",
        "dir1/x.txt",
        "dir1/sub/y.txt",
        "from/z.txt",
        "newdir/inner/w.txt",
    ];
    let deleted = env.list_by_path(&[]);
    for rel in old_names {
        assert!(
            !deleted.contains_key(&env.json_path(rel)),
            "{rel} was renamed, not deleted: {deleted:#?}"
        );
    }
    assert!(deleted.is_empty(), "nothing was deleted: {deleted:#?}");

    // The moved record is the live one: deleting the new name is one deletion.
    fs::remove_dir_all(env.path("dir2")).unwrap();
    env.sync();
    let deleted = env.list_by_path(&[]);
    assert_eq!(deleted.len(), 2, "{deleted:#?}");
    for rel in ["dir2/x.txt", "dir2/sub/y.txt"] {
        assert_deleted_and_recoverable(entry(&deleted, &env.json_path(rel)));
    }
}

#[test]
fn files_written_under_a_temporary_name_and_renamed_at_once_are_captured() {
    // What rsync, LibreOffice and many editors do: write `.name.XXXXXX`, then rename
    // it over `name`, faster than the daemon gets to look at the temporary name.
    const FILES: usize = 20;
    let mut env = TestEnv::new();
    env.write("report-0.txt", "an old version to be replaced");
    env.start_daemon_and_sync(&[]);

    for n in 0..FILES {
        let temporary = format!(".report-{n}.txt.Xa9{n:03}");
        env.write(&temporary, content(n, 500 + n));
        fs::rename(env.path(&temporary), env.path(format!("report-{n}.txt"))).unwrap();
    }
    env.sync();

    let all = env.list_by_path(&["--all"]);
    let missed: Vec<usize> = (0..FILES)
        .filter(|n| {
            all.get(&env.json_path(format!("report-{n}.txt")))
                .is_none_or(|e| e["size"] != 500 + n)
        })
        .collect();
    assert!(
        missed.is_empty(),
        "{} of {FILES} renamed files are not recorded with their new content: report-N.txt for N in {missed:?}\n{all:#?}",
        missed.len()
    );
    for n in 0..FILES {
        let e = entry(&all, &env.json_path(format!("report-{n}.txt")));
        assert_live_and_recoverable(e);
        assert!(
            env.object_path(&content(n, 500 + n)).is_file(),
            "report-{n}.txt is not in the vault"
        );
    }
    assert_eq!(
        all.len(),
        FILES,
        "temporary names must not stay listed: {all:#?}"
    );
    assert!(env.list_json(&[]).is_empty(), "nothing was deleted");
}

#[test]
fn a_folder_moved_out_of_the_protected_tree_is_recoverable() {
    let mut env = TestEnv::new();
    let files = ["project/a.txt", "project/b.txt", "project/sub/c.txt"];
    for (n, rel) in files.iter().enumerate() {
        env.write(rel, content(n, 300));
    }
    env.write("single.txt", "a single file");
    env.write("keep.txt", "stays here");
    env.start_daemon_and_sync(&[]);

    let outside = env.root.join("outside");
    fs::create_dir(&outside).unwrap();
    fs::rename(env.path("project"), outside.join("project")).unwrap();
    fs::rename(env.path("single.txt"), outside.join("single.txt")).unwrap();
    env.sync();

    let check = |stage: &str| {
        let deleted = env.list_by_path(&[]);
        assert_eq!(deleted.len(), files.len() + 1, "{stage}: {deleted:#?}");
        for rel in files.iter().chain(&["single.txt"]) {
            let e = entry(&deleted, &env.json_path(rel));
            assert_deleted_and_recoverable(e);
            assert_eq!(
                e["how"], "moved out of the protected folder",
                "{stage}: {e}"
            );
        }
    };
    check("after the move");
    let all = env.list_by_path(&["--all"]);
    assert_live_and_recoverable(entry(&all, &env.json_path("keep.txt")));

    // Deleted where it went: nothing changes, the copies are still there.
    fs::remove_dir_all(&outside).unwrap();
    env.sync();
    check("after deleting outside");
    for n in 0..files.len() {
        assert!(env.object_path(&content(n, 300)).is_file());
    }
}

/// `renameat2(RENAME_EXCHANGE)`: what `mv --exchange` and some sync tools do.
fn exchange(a: &std::path::Path, b: &std::path::Path) {
    use rustix::fs::{CWD, RenameFlags, renameat_with};
    renameat_with(CWD, a, CWD, b, RenameFlags::EXCHANGE)
        .unwrap_or_else(|e| panic!("exchange {} and {}: {e}", a.display(), b.display()));
}

/// `a` is the one file in `deleted` (as `list` gave it), deleted with `content`,
/// and comes back with it.
fn the_one_deleted_comes_back(
    env: &TestEnv,
    deleted: &std::collections::HashMap<String, serde_json::Value>,
    content: &str,
) {
    let e = entry(deleted, &env.json_path("a"));
    assert_deleted_and_recoverable(e);
    assert_eq!(
        e["size"],
        content.len(),
        "deleted with its own content: {e}"
    );
    assert_eq!(deleted.len(), 1, "{deleted:?}");
    let to = env.root.join("back");
    restore_json(
        env,
        &[
            env.path("a").to_str().unwrap(),
            "--to",
            to.to_str().unwrap(),
        ],
    );
    assert_eq!(
        tree(&to)[std::path::Path::new("a")].data,
        content.as_bytes()
    );
}

/// Restores everything deleted into a fresh folder; returns what came back there.
fn restore_everything(
    env: &TestEnv,
    into: &str,
) -> std::collections::BTreeMap<std::path::PathBuf, Node> {
    let to = env.root.join(into);
    let (_, report, output) = restore_json(
        env,
        &[
            "--under",
            env.share.to_str().unwrap(),
            "--to",
            to.to_str().unwrap(),
        ],
    );
    assert_eq!(report["lost"], 0, "{output}");
    tree(&to)
}

#[test]
fn a_swapped_pair_of_files_keeps_both_histories() {
    // The kernel reports an exchange as two renames with different cookies, a → b
    // then b → a: the first took b for replaced and moved a's record there, the
    // second moved it back, and b's file dropped out of the index.
    let iterations = count_from_env("UNDELETE_TEST_ITERATIONS", 12);
    let mut env = TestEnv::new();
    env.start_daemon(&[]);
    let mut expected = std::collections::BTreeMap::new();
    for i in 0..iterations {
        let (a, b) = (format!("a{i}.txt"), format!("b{i}.txt"));
        let (data_a, data_b) = (content(2 * i, 100 + i), content(2 * i + 1, 300 + i));
        env.write(&a, &data_a);
        env.write(&b, &data_b);
        if i % 3 != 2 {
            env.sync();
        }
        // Once, twice (back again) or three times, sometimes all in one batch.
        let times = 1 + i % 3;
        if i % 2 == 1 {
            env.pause_daemon();
        }
        for _ in 0..times {
            exchange(&env.path(&a), &env.path(&b));
        }
        if i % 2 == 1 {
            env.resume_daemon();
        }
        env.sync();
        let (now_a, now_b) = if times % 2 == 1 {
            (data_b, data_a)
        } else {
            (data_a, data_b)
        };
        let all = env.list_by_path(&["--all"]);
        for (rel, data) in [(&a, &now_a), (&b, &now_b)] {
            let e = entry(&all, &env.json_path(rel));
            assert_live_and_recoverable(e);
            assert_eq!(
                e["size"],
                data.len(),
                "round {i}: {rel} has the other's record: {e}"
            );
        }
        // Deleted later: protected all along, never "deleted before it could be copied".
        fs::remove_file(env.path(&a)).unwrap();
        env.sync();
        let deleted = env.list_by_path(&[]);
        assert_deleted_and_recoverable(entry(&deleted, &env.json_path(&a)));
        expected.insert(std::path::PathBuf::from(&a), now_a);
        fs::remove_file(env.path(&b)).unwrap();
        expected.insert(std::path::PathBuf::from(&b), now_b);
    }
    env.sync();
    let back = restore_everything(&env, "restored");
    for (rel, data) in &expected {
        let got = back
            .get(rel)
            .unwrap_or_else(|| panic!("{rel:?} did not come back"));
        assert_eq!(
            &got.data, data,
            "{rel:?} came back with the other file's content"
        );
    }
}

#[test]
fn swapped_folders_keep_their_files_under_the_right_folder() {
    let iterations = count_from_env("UNDELETE_TEST_ITERATIONS", 8);
    let mut env = TestEnv::new();
    env.start_daemon(&[]);
    let mut expected = std::collections::BTreeMap::new();
    for i in 0..iterations {
        let (a, b) = (format!("left{i}"), format!("right{i}"));
        let files_a: Vec<(String, Vec<u8>)> = (0..3)
            .map(|n| (format!("sub/l{n}.txt"), content(1000 * i + n, 50 + n)))
            .collect();
        let files_b: Vec<(String, Vec<u8>)> = (0..2)
            .map(|n| (format!("r{n}.txt"), content(1000 * i + 500 + n, 80 + n)))
            .collect();
        for (rel, data) in &files_a {
            env.write(format!("{a}/{rel}"), data);
        }
        for (rel, data) in &files_b {
            env.write(format!("{b}/{rel}"), data);
        }
        env.sync();
        if i % 2 == 1 {
            env.pause_daemon();
        }
        exchange(&env.path(&a), &env.path(&b));
        if i % 2 == 1 {
            // A file written in the moved folder at once, under its new name.
            env.write(format!("{a}/late.txt"), format!("late {i}"));
            env.resume_daemon();
        }
        env.sync();
        let all = env.list_by_path(&["--all"]);
        let mut live_now = vec![];
        for (rel, data) in &files_a {
            live_now.push((format!("{b}/{rel}"), data.clone()));
        }
        for (rel, data) in &files_b {
            live_now.push((format!("{a}/{rel}"), data.clone()));
        }
        for (rel, data) in &live_now {
            let e = entry(&all, &env.json_path(rel));
            assert_live_and_recoverable(e);
            assert_eq!(e["size"], data.len(), "round {i}: {rel}: {e}");
        }
        for (rel, _) in files_a.iter() {
            assert!(
                !all.contains_key(&env.json_path(format!("{a}/{rel}"))),
                "round {i}: {a}/{rel} is still listed though it moved to {b}"
            );
        }
        fs::remove_dir_all(env.path(&a)).unwrap();
        fs::remove_dir_all(env.path(&b)).unwrap();
        env.sync();
        let deleted = env.list_by_path(&[]);
        for (rel, data) in live_now {
            assert_deleted_and_recoverable(entry(&deleted, &env.json_path(&rel)));
            expected.insert(std::path::PathBuf::from(rel), data);
        }
    }
    let back = restore_everything(&env, "restored");
    for (rel, data) in &expected {
        let got = back
            .get(rel)
            .unwrap_or_else(|| panic!("{rel:?} did not come back"));
        assert_eq!(&got.data, data, "{rel:?}");
    }
}

#[test]
fn a_folder_renamed_while_its_files_are_deleted_leaves_none_listed_and_none_lost() {
    // One user reorganises while another deletes: events from inside the folder were
    // reported under its old name, and some were lost, so deleted files stayed
    // listed as present and others were called "deleted before it could be copied".
    let iterations = count_from_env("UNDELETE_TEST_ITERATIONS", 6);
    const FILES: usize = 400;
    for round in 0..iterations {
        let mut env = TestEnv::new();
        let mut originals = std::collections::HashSet::new();
        for n in 0..FILES {
            let data = content(n, 64 + n % 200);
            env.write(format!("work/deep/f{n:04}.txt"), &data);
            originals.insert(data);
        }
        env.write("work/keep.txt", "not deleted");
        env.start_daemon_and_sync(&[]);
        // Deleted by descriptor, so the deletions go on whatever the folder is called.
        let deep = fs::File::open(env.path("work/deep")).unwrap();
        let deleter = std::thread::spawn(move || {
            for n in 0..FILES {
                rustix::fs::unlinkat(&deep, format!("f{n:04}.txt"), rustix::fs::AtFlags::empty())
                    .unwrap();
            }
        });
        let mut name = "work".to_owned();
        for step in 0..30 {
            let next = format!("work-{round}-{step}");
            fs::rename(env.path(&name), env.path(&next)).unwrap();
            name = next;
            if step % 10 == 9 {
                // And the inner folder too, once in a while.
                let inner = env.path(&name).join("deep");
                let renamed = env.path(&name).join(format!("deep{step}"));
                fs::rename(&inner, &renamed).unwrap();
                fs::rename(&renamed, &inner).unwrap();
            }
        }
        deleter.join().unwrap();
        env.sync();

        let all = env.list_by_path(&["--all"]);
        let live: Vec<&String> = all
            .iter()
            .filter(|(_, e)| e["deleted_at"].is_null())
            .map(|(p, _)| p)
            .collect();
        assert_eq!(
            live,
            vec![&env.json_path(format!("{name}/keep.txt"))],
            "round {round}: only keep.txt is still there"
        );
        let lost: Vec<&String> = all
            .iter()
            .filter(|(_, e)| !e["reason"].is_null())
            .map(|(p, _)| p)
            .collect();
        assert!(lost.is_empty(), "round {round}: called lost: {lost:#?}");
        let restored = restore_everything(&env, "restored");
        let back: Vec<&Vec<u8>> = restored
            .values()
            .filter(|n| n.kind == "file")
            .map(|n| &n.data)
            .collect();
        assert_eq!(
            back.len(),
            FILES,
            "round {round}: every deleted file comes back once"
        );
        assert!(back.iter().all(|d| originals.contains(*d)), "round {round}");
    }
}

#[test]
fn files_and_folders_exchanged_three_times_before_the_daemon_read_it_keep_their_own_histories() {
    // The kernel merges an event into an identical one still queued: the third
    // exchange moves the same file between the same two names as the first, so its
    // two renames vanish into the first's, and two exchanges are read for three.
    // Taken at their word, each file's history (and each folder's files) went to
    // the other's name.
    let mut env = TestEnv::new();
    let (old_a, old_b) = (content(1, 111), content(2, 222));
    env.write("kept/a", &old_a);
    env.write("kept/b", &old_b);
    let (in_x, in_y) = (content(5, 55), content(6, 66));
    env.write("folders/x/f", &in_x);
    env.write("folders/y/f", &in_y);
    env.start_daemon_and_sync(&[]);
    env.pause_daemon();
    let (new_c, new_d) = (content(3, 333), content(4, 444));
    env.write("new/c", &new_c);
    env.write("new/d", &new_d);
    for _ in 0..3 {
        exchange(&env.path("kept/a"), &env.path("kept/b"));
        exchange(&env.path("new/c"), &env.path("new/d"));
        exchange(&env.path("folders/x"), &env.path("folders/y"));
    }
    env.resume_daemon();
    env.sync();
    // What each name holds now: the other's file, three exchanges on.
    let now = [
        ("kept/a", &old_b),
        ("kept/b", &old_a),
        ("new/c", &new_d),
        ("new/d", &new_c),
        ("folders/x/f", &in_y),
        ("folders/y/f", &in_x),
    ];
    let all = env.list_by_path(&["--all"]);
    for (rel, data) in now {
        let e = entry(&all, &env.json_path(rel));
        assert_live_and_recoverable(e);
        assert_eq!(e["size"], data.len(), "{rel} has the other's record: {e}");
    }
    // Each name's history is the file it holds now: no older version of the other.
    for (rel, data) in now.iter().filter(|(rel, _)| !rel.starts_with("new/")) {
        let out = env.run_ok(&["versions", env.path(rel).to_str().unwrap(), "--json"]);
        let versions: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
        assert!(
            versions.iter().all(|v| v["size"] == data.len()),
            "{rel} keeps the other file's history: {out}"
        );
    }
    for (rel, _) in now {
        fs::remove_file(env.path(rel)).unwrap();
    }
    env.sync();
    let back = restore_everything(&env, "restored");
    for (rel, data) in now {
        let got = back
            .get(std::path::Path::new(rel))
            .unwrap_or_else(|| panic!("{rel} did not come back"));
        assert_eq!(
            &got.data, data,
            "{rel} came back with the other file's content"
        );
    }
}

#[test]
fn a_log_rotated_before_the_daemon_read_it_is_whole_under_its_new_name() {
    // Written and closed, renamed, and a new file made under the old name, all read
    // at once: the kernel merges the write and the close into one event, read when
    // the name holds the new file. The close was dropped with the name, the first
    // file stayed "being written" under its new name, and its deletion then called
    // its last changes missing.
    let mut env = TestEnv::new();
    env.start_daemon_and_sync(&[]);
    env.pause_daemon();
    let first = content(7, 700);
    env.write("logs/app.log", &first);
    fs::rename(env.path("logs/app.log"), env.path("logs/app.log.1")).unwrap();
    env.write("logs/app.log", "the new log\n");
    env.resume_daemon();
    env.sync();
    let all = env.list_by_path(&["--all"]);
    let rotated = entry(&all, &env.json_path("logs/app.log.1"));
    assert_live_and_recoverable(rotated);
    assert_eq!(rotated["size"], first.len(), "{rotated}");
    env.remove_and_sync(&["logs/app.log.1"]);
    let deleted = env.list_by_path(&[]);
    let gone = entry(&deleted, &env.json_path("logs/app.log.1"));
    assert_deleted_and_recoverable(gone);
    assert!(gone["reason"].is_null(), "the whole file is kept: {gone}");
    let to = env.root.join("back");
    let (_, report, output) = restore_json(
        &env,
        &[
            env.path("logs/app.log.1").to_str().unwrap(),
            "--to",
            to.to_str().unwrap(),
        ],
    );
    assert_eq!(report["recovered"], 1, "{output}");
    let back = tree(&to);
    let got = back
        .iter()
        .find(|(p, n)| n.kind == "file" && p.ends_with("app.log.1"))
        .unwrap_or_else(|| panic!("app.log.1 did not come back: {output}"));
    assert_eq!(got.1.data, first, "app.log.1 came back in part");
}

#[test]
fn files_exchanged_and_one_deleted_before_the_daemon_read_it_come_back_with_their_own_content() {
    // The model test's minimal failure, held in one batch for certain: f0 written,
    // f1 and f0 exchanged, f1 (now f0's file) deleted, all read after the fact.
    // Looked at by name, "f0" showed f1's file, and f0's last write was kept as f1's.
    // fanotify only: inotify names no file by handle, and after the fact the disk
    // shows only the other one (a hole inotify has, not fixed here).
    if !is_root() {
        eprintln!("SKIPPED: fanotify needs root");
        return;
    }
    let mut env = TestEnv::new();
    env.write("f0", "f0 at the sync");
    env.write("f1", "f1 at the sync");
    env.start_daemon(&["--events", "fanotify"]);
    env.sync();
    env.pause_daemon();
    env.write("f0", "f0 written after the sync");
    env.write("x/f0", "another f0");
    exchange(&env.path("f1"), &env.path("f0"));
    fs::remove_file(env.path("f1")).unwrap();
    env.resume_daemon();
    env.sync();
    let all = env.list_by_path(&["--all"]);
    let f0 = entry(&all, &env.json_path("f0"));
    assert_live_and_recoverable(f0);
    assert_eq!(
        f0["size"],
        "f1 at the sync".len(),
        "f0 holds f1's file now: {f0}"
    );
    let deleted = env.list_by_path(&[]);
    assert_deleted_and_recoverable(entry(&deleted, &env.json_path("f1")));
    let to = env.root.join("back");
    restore_json(
        &env,
        &[
            env.path("f1").to_str().unwrap(),
            "--to",
            to.to_str().unwrap(),
        ],
    );
    let back = tree(&to);
    let got = String::from_utf8_lossy(&back[std::path::Path::new("f1")].data).into_owned();
    assert!(
        got == "f0 at the sync" || got == "f0 written after the sync",
        "f1 came back with {got:?}, content its file never had"
    );
}

#[test]
fn folders_exchanged_while_their_files_are_written_and_deleted_keep_each_file_its_content() {
    let mut env = TestEnv::new();
    env.write("x/a", "x/a at the sync");
    env.write("x/keep", "x/keep at the sync");
    env.write("y/b", "y/b at the sync");
    env.start_daemon(&[]);
    env.sync();
    env.pause_daemon();
    env.write("x/a", "x/a written after the sync");
    exchange(&env.path("x"), &env.path("y"));
    // x's files are in y now: one deleted there, one written there.
    fs::remove_file(env.path("y/a")).unwrap();
    env.write("y/keep", "x/keep written in y");
    env.write("x/b", "y/b written in x");
    env.resume_daemon();
    env.sync();
    let all = env.list_by_path(&["--all"]);
    for (rel, data) in [
        ("y/keep", "x/keep written in y"),
        ("x/b", "y/b written in x"),
    ] {
        let e = entry(&all, &env.json_path(rel));
        assert_live_and_recoverable(e);
        assert_eq!(e["size"], data.len(), "{rel}: {e}");
    }
    // The kernel merged y/a's deletion into x/a's write, queued before the exchange:
    // handed on there, it was x/a that was deleted, and y/a never was.
    for gone in ["x/a", "x/keep", "y/b"] {
        assert!(
            !all.contains_key(&env.json_path(gone)),
            "{gone} is listed, though its file moved: {}",
            all[&env.json_path(gone)]
        );
    }
    let deleted = env.list_by_path(&[]);
    assert_deleted_and_recoverable(entry(&deleted, &env.json_path("y/a")));
    let to = env.root.join("back");
    restore_json(
        &env,
        &[
            env.path("y/a").to_str().unwrap(),
            "--to",
            to.to_str().unwrap(),
        ],
    );
    let got = String::from_utf8_lossy(&tree(&to)[std::path::Path::new("y/a")].data).into_owned();
    assert!(
        got == "x/a at the sync" || got == "x/a written after the sync",
        "y/a came back with {got:?}"
    );
}

/// Written, its folder moved (exchanged with another, or renamed), then deleted
/// there, all before the daemon read a word of it, while another process still had
/// the file open: the source held it since the write, so the daemon keeps its last
/// content. It is one file deleted, once, with that content and, where the source
/// names who, by whom; never a second file at the same name, "deleted" by a guess
/// from the disk with nobody named.
#[test]
fn a_file_written_then_deleted_in_its_moved_folder_is_one_deletion_with_its_last_content() {
    for exchanged in [true, false] {
        let mut env = TestEnv::new();
        env.write("x/a", "x/a at the sync");
        env.write("y/b", "y/b at the sync");
        env.start_daemon_and_sync(&[]);
        let fanotify = env.status_json()["event_source"]["source"] == "fanotify";
        env.pause_daemon();
        env.write("x/a", "x/a written after the sync");
        // Open still when the daemon reads the write: its source can then hold it.
        let reader = fs::File::open(env.path("x/a")).unwrap();
        let now_at = if exchanged {
            exchange(&env.path("x"), &env.path("y"));
            "y/a"
        } else {
            fs::rename(env.path("x"), env.path("z")).unwrap();
            "z/a"
        };
        fs::remove_file(env.path(now_at)).unwrap();
        env.resume_daemon();
        env.sync();
        drop(reader);
        let how = if exchanged { "exchanged" } else { "renamed" };
        // `list_by_path` fails on a path listed twice.
        let deleted = env.list_by_path(&[]);
        let e = entry(&deleted, &env.json_path(now_at));
        assert_deleted_and_recoverable(e);
        assert_eq!(deleted.len(), 1, "{how}: one file was deleted: {deleted:?}");
        if fanotify {
            assert_eq!(e["size"], "x/a written after the sync".len(), "{how}: {e}");
            assert_eq!(
                e["deleted_by"]["user"], "root",
                "{how}: the source named who deleted it: {e}"
            );
        }
        let to = env.root.join("back");
        restore_json(
            &env,
            &[
                env.path(now_at).to_str().unwrap(),
                "--to",
                to.to_str().unwrap(),
            ],
        );
        let got =
            String::from_utf8_lossy(&tree(&to)[std::path::Path::new(now_at)].data).into_owned();
        let expected: &[&str] = if fanotify {
            &["x/a written after the sync"]
        } else {
            &["x/a at the sync", "x/a written after the sync"]
        };
        assert!(
            expected.contains(&got.as_str()),
            "{how}: {now_at} came back with {got:?}"
        );
    }
}

/// A folder made, removed and made again under its name before the daemon read any
/// of it: the kernel may fold the removal into the first folder's creation, queued
/// before the second folder's. The second folder and its file are kept; the removal
/// is the first one's.
#[test]
fn a_folder_made_again_under_the_name_of_one_just_removed_keeps_its_files() {
    let mut env = TestEnv::new();
    env.write("kept", "a file at the sync");
    env.start_daemon_and_sync(&[]);
    env.pause_daemon();
    env.write("y/first", "in the first y");
    fs::remove_dir_all(env.path("y")).unwrap();
    env.write("y/second", "in the second y");
    env.resume_daemon();
    env.sync();
    let all = env.list_by_path(&["--all"]);
    assert_live_and_recoverable(entry(&all, &env.json_path("y/second")));
    env.remove_and_sync(&["y"]);
    let to = env.root.join("back");
    restore_json(
        &env,
        &[
            "--under",
            env.path("y").to_str().unwrap(),
            "--to",
            to.to_str().unwrap(),
        ],
    );
    let back = tree(&to);
    assert_eq!(
        back[std::path::Path::new("y/second")].data,
        b"in the second y"
    );
}

/// Files written as filler between two steps: more events than the loop takes in
/// one batch (8,192 messages; three for each file made), so what came before them
/// is looked at, at the end of a batch, before what comes after them is read.
const FILLER_FILES: usize = 3000;

/// Runs `first`, the filler, then `then` while the daemon's loop waits for the
/// index's write lock, taken as a long command would; its reading thread goes on.
/// The loop then looks at the names `first` touched when the disk is already as
/// `then` left it, and only afterwards reads what `then` did: a name looked at may
/// hold its next owner by then.
fn with_the_loop_held(env: &TestEnv, first: impl FnOnce(), then: impl FnOnce()) {
    let db = rusqlite::Connection::open(env.vault.join("index.db")).unwrap();
    db.execute_batch("BEGIN IMMEDIATE").unwrap();
    first();
    for i in 0..FILLER_FILES {
        env.write(format!("filler/f{i:04}"), "filler");
    }
    then();
    // Not held longer: the loop waits for the lock 30 s at most, and then stops.
    db.execute_batch("ROLLBACK").unwrap();
    drop(db);
    env.sync();
}

/// The daemon on fanotify, which names each file by its handle; `None` (and the
/// test skipped) without root.
fn fanotify_daemon(test: &str, setup: impl FnOnce(&TestEnv)) -> Option<TestEnv> {
    if !is_root() {
        eprintln!("SKIPPED {test}: fanotify needs root");
        return None;
    }
    let mut env = TestEnv::new();
    setup(&env);
    env.start_daemon_and_sync(&["--events", "fanotify"]);
    Some(env)
}

fn sizes_of_versions(env: &TestEnv, relative: &str) -> Vec<u64> {
    let out = env.run_ok(&["versions", env.path(relative).to_str().unwrap(), "--json"]);
    let versions: serde_json::Value = serde_json::from_str(&out).expect("versions --json is JSON");
    versions
        .as_array()
        .expect("an array")
        .iter()
        .map(|v| v["size"].as_u64().unwrap())
        .collect()
}

/// Written (or its mode changed), then another file renamed over it, before the
/// daemon looked: looked at by name, the name showed the other file, whose content
/// and metadata went into this one's history as a version it never had, and its
/// own content was kept nowhere. Each name keeps its own versions, in order.
#[test]
fn a_file_replaced_by_a_rename_before_the_daemon_looked_keeps_only_its_own_versions() {
    let (a, b, c, d) = (
        "a, written and replaced at once",
        "b, at the sync",
        "c, at the sync, its mode changed later",
        "d, at the sync too",
    );
    let Some(env) = fanotify_daemon("a_file_replaced_by_a_rename…", |env| {
        env.write("b", b);
        env.write("c", c);
        env.write("d", d);
    }) else {
        return;
    };
    with_the_loop_held(
        &env,
        || {
            env.write("a", a);
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(env.path("c"), fs::Permissions::from_mode(0o600)).unwrap();
        },
        || {
            fs::rename(env.path("b"), env.path("a")).unwrap();
            fs::rename(env.path("d"), env.path("c")).unwrap();
        },
    );
    // In the order they were first seen: b's file before a's was written.
    let mut sizes = sizes_of_versions(&env, "a");
    sizes.sort();
    assert_eq!(sizes, [b.len() as u64, a.len() as u64], "a's own and b's");
    let mut sizes = sizes_of_versions(&env, "c");
    sizes.sort();
    assert_eq!(sizes, [d.len() as u64, c.len() as u64], "c's own and d's");
    let all = env.list_by_path(&["--all", "--under", env.share.to_str().unwrap()]);
    for gone in ["b", "d"] {
        assert!(!all.contains_key(&env.json_path(gone)), "{gone} is listed");
    }
    assert_eq!(entry(&all, &env.json_path("a"))["size"], b.len());
    assert_eq!(entry(&all, &env.json_path("c"))["size"], d.len());
}

/// A file written, deleted and written again under its name before the daemon
/// looked: looked at by name, the second file's content was kept as the first's,
/// and then as the first one deleted; a restore found that content in place, and
/// the first file's own content was lost.
#[test]
fn a_file_made_again_after_its_deletion_before_the_daemon_looked_is_deleted_with_its_own_content() {
    let (first, second) = (
        "the first a",
        "the second a, written after the first was deleted",
    );
    let Some(env) = fanotify_daemon("a_file_made_again…", |env| {
        env.write("kept", "a file at the sync");
    }) else {
        return;
    };
    with_the_loop_held(
        &env,
        || {
            env.write("a", first);
        },
        || {
            fs::remove_file(env.path("a")).unwrap();
            env.write("a", second);
        },
    );
    let deleted = env.list_by_path(&[]);
    the_one_deleted_comes_back(&env, &deleted, first);
    assert_eq!(fs::read(env.path("a")).unwrap(), second.as_bytes());
}

/// A folder made with files, removed, and made again with other files before the
/// daemon looked: walked by name, the new folder's files were taken for the old
/// one's, and then deleted with it, though they are there. Each deletion once,
/// only the first folder's files, with their own content.
#[test]
fn a_folder_made_again_before_the_daemon_looked_takes_none_of_the_new_files_for_deleted() {
    let Some(env) = fanotify_daemon("a_folder_made_again_before…", |env| {
        env.write("kept", "a file at the sync");
    }) else {
        return;
    };
    let firsts = [("d/1", "one in the first d"), ("d/2", "two in the first d")];
    let seconds = [
        ("d/3", "three, in the second d"),
        ("d/4", "four, in the second d too"),
    ];
    with_the_loop_held(
        &env,
        || {
            for (rel, data) in firsts {
                env.write(rel, data);
            }
        },
        || {
            fs::remove_dir_all(env.path("d")).unwrap();
            for (rel, data) in seconds {
                env.write(rel, data);
            }
        },
    );
    let deleted = env.list_by_path(&["--under", env.path("d").to_str().unwrap()]);
    let mut listed: Vec<&String> = deleted.keys().collect();
    listed.sort();
    assert_eq!(
        listed,
        [env.json_path("d/1"), env.json_path("d/2")]
            .iter()
            .collect::<Vec<_>>(),
        "{deleted:#?}"
    );
    for (rel, data) in firsts {
        let e = entry(&deleted, &env.json_path(rel));
        assert_deleted_and_recoverable(e);
        assert_eq!(e["size"], data.len(), "{rel}: {e}");
    }
    let all = env.list_by_path(&["--all", "--under", env.path("d").to_str().unwrap()]);
    for (rel, data) in seconds {
        let e = entry(&all, &env.json_path(rel));
        assert_live_and_recoverable(e);
        assert_eq!(e["size"], data.len(), "{rel}: {e}");
    }
    let to = env.root.join("back");
    restore_json(
        &env,
        &[
            "--under",
            env.path("d").to_str().unwrap(),
            "--to",
            to.to_str().unwrap(),
        ],
    );
    let back = tree(&to);
    for (rel, data) in firsts {
        assert_eq!(
            back[std::path::Path::new(rel)].data,
            data.as_bytes(),
            "{rel}"
        );
    }
    for (rel, _) in seconds {
        assert!(
            !back.contains_key(std::path::Path::new(rel)),
            "{rel} came back"
        );
    }
}

/// A file renamed to a name, then deleted there and another made under the name,
/// before the daemon looked: looked at by name, the other file was taken for a new
/// version of the renamed one, and then for the file deleted. The renamed file is
/// the one deleted, with its own content; the other one is there.
#[test]
fn a_file_renamed_then_deleted_and_its_name_taken_again_is_deleted_with_its_own_content() {
    let (moved, after) = ("b, at the sync, renamed to a", "another a, made after");
    let Some(env) = fanotify_daemon("a_file_renamed_then_deleted…", |env| {
        env.write("b", moved);
    }) else {
        return;
    };
    with_the_loop_held(
        &env,
        || fs::rename(env.path("b"), env.path("a")).unwrap(),
        || {
            fs::remove_file(env.path("a")).unwrap();
            env.write("a", after);
        },
    );
    let deleted = env.list_by_path(&["--under", env.share.to_str().unwrap()]);
    the_one_deleted_comes_back(&env, &deleted, moved);
}
