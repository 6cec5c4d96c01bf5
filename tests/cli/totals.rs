//! The sums `status` shows are kept as the index changes, not counted at each
//! call: they must equal a count of the rows after every kind of change, a
//! `kill -9` and a rebuild.

use std::fs;
use std::process::Command;

use rusqlite::{Connection, OpenFlags};
use serde_json::{Value, json};

use crate::common::*;

/// The sums counted from the index's rows, as `status` counted them before they
/// were kept (the oracle the kept sums must equal).
fn counted(env: &TestEnv) -> Value {
    let db =
        Connection::open_with_flags(env.vault.join("index.db"), OpenFlags::SQLITE_OPEN_READ_ONLY)
            .expect("open the index");
    let row = |sql: &str| -> Vec<i64> {
        db.query_row(sql, [], |r| Ok(vec![r.get(0)?, r.get(1)?, r.get(2)?]))
            .expect("count the index")
    };
    let live = row(
        "SELECT COALESCE(SUM(kind IN (0, 1) AND uncaptured IS NULL), 0),
                COALESCE(SUM(CASE WHEN kind = 0 AND uncaptured IS NULL THEN size END), 0),
                COALESCE(SUM(kind != 2 AND uncaptured IS NOT NULL), 0)
         FROM versions WHERE replaced_at IS NULL AND deleted_at IS NULL",
    );
    let deleted = row(
        "SELECT COALESCE(SUM(uncaptured IS NULL AND restored_at IS NULL), 0),
                COALESCE(SUM(uncaptured IS NOT NULL AND restored_at IS NULL), 0),
                COALESCE(SUM(restored_at IS NOT NULL), 0)
         FROM versions WHERE deleted_at IS NOT NULL AND kind != 2",
    );
    let bytes: i64 = db
        .query_row("SELECT COALESCE(SUM(size), 0) FROM objects", [], |r| {
            r.get(0)
        })
        .unwrap();
    json!({
        "files_protected": live[0],
        "bytes_protected": live[1],
        "files_not_protected": live[2],
        "deleted_recoverable": deleted[0],
        "deleted_lost": deleted[1],
        "deleted_restored": deleted[2],
        "bytes_used": bytes,
    })
}

/// What `status --json` says of the same sums.
fn shown(env: &TestEnv) -> Value {
    let status = env.status_json();
    let mut shown = json!({});
    for key in [
        "files_protected",
        "bytes_protected",
        "files_not_protected",
        "deleted_recoverable",
        "deleted_lost",
        "deleted_restored",
    ] {
        shown[key] = status[key].clone();
    }
    shown["bytes_used"] = status["vault"]["bytes_used"].clone();
    shown
}

/// Asserts that `status` shows what a count of the rows gives, and that `verify`
/// (which counts again inside the program) agrees; returns the sums.
fn assert_kept_equal_counted(env: &TestEnv, after: &str) -> Value {
    let (shown, counted) = (shown(env), counted(env));
    assert_eq!(shown, counted, "after {after}: status (left) and a recount");
    let out = env.run(&["verify", "--json"]);
    let verify: Value = serde_json::from_slice(&out.stdout).expect("verify --json is JSON");
    assert_eq!(verify["totals_match"], true, "after {after}: {verify}");
    assert!(out.status.success(), "after {after}: {verify}");
    shown
}

#[test]
fn the_sums_status_shows_equal_a_recount_after_every_kind_of_change_a_kill_and_a_rebuild() {
    let mut env = TestEnv::new();
    for n in 0..20 {
        env.write(format!("docs/f{n:02}.txt"), content(n, 100 + n * 37));
    }
    env.write("docs/twin.txt", content(0, 100));
    env.write("scratch.tmp", "excluded");
    env.write("big.bin", content(99, 100_000));
    std::os::unix::fs::symlink("docs/f00.txt", env.path("link")).unwrap();
    let fifo = env.path("pipe");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let rules = ["--exclude", "*.tmp", "--max-file-size", "64KiB"];
    env.start_daemon_and_sync(&rules);
    let first = assert_kept_equal_counted(&env, "the first scan");
    // 21 files and a link have copies; the excluded, the oversized and the pipe not.
    assert_eq!(first["files_protected"], 22, "{first}");
    assert_eq!(first["files_not_protected"], 3, "{first}");

    for n in 1..5 {
        env.write(format!("docs/f{n:02}.txt"), content(100 + n, 50));
    }
    for n in 5..13 {
        fs::remove_file(env.path(format!("docs/f{n:02}.txt"))).unwrap();
    }
    fs::remove_file(env.path("big.bin")).unwrap();
    env.remove_and_sync(&["link"]);
    let changed = assert_kept_equal_counted(&env, "edits and deletions");
    assert_eq!(changed["deleted_recoverable"], 9, "{changed}");
    assert_eq!(changed["deleted_lost"], 1, "{changed}");

    let back: Vec<String> = (5..9)
        .map(|n| env.path(format!("docs/f{n:02}.txt")).display().to_string())
        .collect();
    let paths: Vec<&str> = back.iter().map(String::as_str).collect();
    let (success, report, output) = restore_json(&env, &paths);
    assert!(success, "{output}");
    assert_eq!(report["recovered"], 4, "{report}");
    env.sync();
    let restored = assert_kept_equal_counted(&env, "a restore");
    assert_eq!(restored["deleted_restored"], 4, "{restored}");

    // Deleted files kept no time at all: their copies go, and they count as lost.
    let out = env.run_ok(&["purge", "--keep-deleted", "0s", "--keep-versions", "1"]);
    assert!(out.contains("Purged"), "{out}");
    let purged = assert_kept_equal_counted(&env, "a purge");
    assert!(
        purged["bytes_used"].as_u64() < restored["bytes_used"].as_u64(),
        "{purged}"
    );

    // Killed while copying a burst of new files and deleting others.
    for n in 0..300 {
        env.write(format!("burst/b{n:03}.dat"), content(1000 + n, 3000));
    }
    fs::remove_dir_all(env.path("burst")).ok();
    for n in 300..600 {
        env.write(format!("burst/b{n:03}.dat"), content(1000 + n, 3000));
    }
    env.kill_daemon();
    assert_kept_equal_counted(&env, "kill -9");
    env.start_daemon_and_sync(&rules);
    let restarted = assert_kept_equal_counted(&env, "a restart after kill -9");
    env.stop_daemon();

    env.run_ok(&["rebuild-index"]);
    let rebuilt = assert_kept_equal_counted(&env, "rebuild-index");
    assert_eq!(
        rebuilt, restarted,
        "the rebuilt index (left) shows the same sums"
    );
}
