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
    env.start_daemon(&[]);
    env.sync();

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
    env.start_daemon(&[]);
    env.sync();

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
    env.start_daemon(&[]);
    env.sync();

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
