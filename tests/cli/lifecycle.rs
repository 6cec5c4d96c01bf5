//! Starting, stopping, refusing to start, status, verify, and what happens
//! while the daemon is down.

use std::fs;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;

/// Waits (bounded) for a daemon expected to refuse to start; kills it and fails if it runs on.
fn wait_for_refusal(mut child: Child, what: &str) -> std::process::Output {
    let deadline = Instant::now() + Duration::from_secs(10);
    while child.try_wait().expect("poll the daemon").is_none() {
        if Instant::now() >= deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("collect output");
            panic!(
                "{what}: the daemon did not refuse to start\n{}",
                output_text(&out)
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    child.wait_with_output().expect("collect output")
}

#[test]
fn sigterm_stops_the_daemon_cleanly() {
    let mut env = TestEnv::new();
    env.start_daemon(&[]);
    env.write("a.txt", "captured before the stop");
    env.sync();

    let status = env.stop_daemon();
    assert!(status.success(), "SIGTERM should exit 0, got {status}");
    assert!(
        !env.socket().exists(),
        "the control socket is left behind after a clean stop"
    );
    let out = env.run(&["sync", "--timeout", "5"]);
    assert!(!out.status.success(), "sync must fail with no daemon");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("not running"), "{}", output_text(&out));

    // What was captured stays listed.
    let all = env.list_by_path(&["--all"]);
    assert_live_and_recoverable(entry(&all, &env.json_path("a.txt")));
}

/// Copies waiting for the vault's flush each hold a descriptor: the daemon lifts the
/// low soft limit a service manager may start it with, up to the hard limit.
#[test]
fn the_daemon_may_open_as_many_files_as_the_system_allows_it() {
    let hard = rustix::process::getrlimit(rustix::process::Resource::Nofile).maximum;
    if hard.is_some_and(|hard| hard <= 256) {
        eprintln!("skipped: the hard limit on open files here is only {hard:?}");
        return;
    }
    let mut env = TestEnv::new();
    env.daemon_open_files = Some(256);
    env.start_daemon(&[]);
    let limits = fs::read_to_string(format!("/proc/{}/limits", env.daemon_pid())).unwrap();
    let open_files: Vec<&str> = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap_or_else(|| panic!("no open-file limit in:\n{limits}"))
        .split_whitespace()
        .skip(3)
        .take(2)
        .collect();
    assert_ne!(open_files[0], "256", "{limits}");
    assert_eq!(
        open_files[0], open_files[1],
        "soft limit raised to the hard one: {limits}"
    );
}

/// The name and nice value of each of the daemon's threads (Linux keeps one per thread).
fn thread_nice_values(pid: u32) -> Vec<(String, i32)> {
    fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        // A short-lived thread (a capture worker) may end between the listing and the
        // read: it has no nice value left to check.
        .filter_map(|task| fs::read_to_string(task.ok()?.path().join("stat")).ok())
        .map(|stat| {
            // Field 19; the name in parentheses (field 2) may hold spaces.
            let name = &stat[stat.find('(').unwrap() + 1..stat.rfind(')').unwrap()];
            let after_name = &stat[stat.rfind(')').unwrap() + 2..];
            (
                name.to_owned(),
                after_name.split(' ').nth(16).unwrap().parse().unwrap(),
            )
        })
        .collect()
}

/// The daemon gives way to the server's users, and to a restore they wait for:
/// every one of its threads runs at nice 10, and one started nicer still stays so.
/// The hasher, which names cloned copies in the background, runs at 19.
#[test]
fn the_daemon_runs_at_a_lower_cpu_priority_than_its_users() {
    let mut env = TestEnv::new();
    env.start_daemon(&[]);
    // Started: the hasher is among its threads.
    env.sync();
    let nice = thread_nice_values(env.daemon_pid());
    assert!(nice.len() >= 2, "the daemon has its threads: {nice:?}");
    assert!(
        nice.iter()
            .all(|(name, n)| *n == if name == "hasher" { 19 } else { 10 }),
        "{nice:?}"
    );
    assert!(nice.iter().any(|(name, _)| name == "hasher"), "{nice:?}");
    env.stop_daemon();

    // Started at 15 (as `nice -n 15` would), it keeps 15: this test's thread passes
    // its own nice value on to the daemon, and is gone when the test ends.
    rustix::process::setpriority_process(None, 15).unwrap();
    env.start_daemon_and_sync(&[]);
    let nice = thread_nice_values(env.daemon_pid());
    assert!(
        nice.iter()
            .all(|(name, n)| *n == if name == "hasher" { 19 } else { 15 }),
        "{nice:?}"
    );
}

/// The hasher reads only when the disk has nothing else to do (the idle I/O
/// class), so naming cloned copies never slows the server's users down.
#[test]
fn the_hasher_reads_at_the_idle_disk_priority() {
    let mut env = TestEnv::new();
    env.start_daemon_and_sync(&[]);
    let pid = env.daemon_pid();
    let hasher = fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
        .find(|task| {
            fs::read_to_string(task.path().join("comm")).is_ok_and(|name| name.trim() == "hasher")
        })
        .expect("the daemon has a hasher thread")
        .file_name();
    let out = std::process::Command::new("ionice")
        .arg("-p")
        .arg(&hasher)
        .output();
    match out {
        Ok(out) if out.status.success() => {
            let class = String::from_utf8_lossy(&out.stdout);
            assert!(class.trim() == "idle", "ionice says {class:?}");
        }
        _ => eprintln!("skipped the disk priority check: ionice cannot run here"),
    }
    env.stop_daemon();
}

#[test]
fn a_vault_inside_the_protected_folder_is_refused() {
    let env = TestEnv::new();
    for existing in [false, true] {
        let vault = env.share.join("vault");
        if existing {
            fs::create_dir(&vault).unwrap();
        }
        let child = bare_command()
            .arg("--vault")
            .arg(&vault)
            .arg("daemon")
            .arg("--protect")
            .arg(&env.share)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let what = if existing {
            "existing vault folder"
        } else {
            "new vault folder"
        };
        let out = wait_for_refusal(child, what);
        assert!(!out.status.success(), "{what}: {}", output_text(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("inside the protected folder"),
            "{what}: {}",
            output_text(&out)
        );
        if !existing {
            assert!(
                !vault.exists(),
                "the refused vault was created inside the share anyway"
            );
        }
    }
}

#[test]
fn a_second_daemon_on_the_same_vault_is_refused() {
    let mut env = TestEnv::new();
    env.start_daemon_and_sync(&[]);
    let child = env
        .command()
        .arg("daemon")
        .arg("--protect")
        .arg(&env.share)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = wait_for_refusal(child, "second daemon");
    assert!(!out.status.success(), "{}", output_text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("already running"),
        "{}",
        output_text(&out)
    );
    // The first one is unharmed.
    env.write("after.txt", "still protected");
    env.sync();
    let all = env.list_by_path(&["--all"]);
    assert_live_and_recoverable(entry(&all, &env.json_path("after.txt")));
}

#[test]
fn status_says_whether_protection_is_on() {
    let mut env = TestEnv::new();
    env.write("one.txt", "1");
    env.write("sub/two.txt", "22");
    env.start_daemon_and_sync(&[]);

    let status = env.status_json();
    assert_eq!(status["daemon_running"], true, "{status:#}");
    assert_eq!(
        status["protected_folders"],
        serde_json::json!([env.share.to_str().unwrap()]),
        "{status:#}"
    );
    assert_eq!(status["files_protected"], 2, "{status:#}");
    let text = env.run_ok(&["status"]);
    assert!(text.contains("Protection is ON"), "{text}");
    assert!(text.contains(env.share.to_str().unwrap()), "{text}");

    assert!(env.stop_daemon().success());
    let status = env.status_json();
    assert_eq!(status["daemon_running"], false, "{status:#}");
    assert_eq!(status["files_protected"], 2, "{status:#}");
    // Protection off is status 3, as systemctl says of a unit that is not running.
    let out = env.run(&["status"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "{text}");
    assert!(text.contains("Protection is OFF"), "{text}");
}

#[test]
fn verify_names_the_file_whose_copy_is_damaged() {
    let mut env = TestEnv::new();
    let good = b"this copy stays intact".as_slice();
    let bad = b"this copy will be damaged".as_slice();
    env.write("good.txt", good);
    env.write("folder/bad.txt", bad);
    env.start_daemon_and_sync(&[]);
    let out = env.run(&["verify"]);
    assert!(out.status.success(), "{}", output_text(&out));

    // Same length, different bytes: only the hash can tell.
    let object = env.object_path(bad);
    let mut damaged = bad.to_vec();
    damaged[0] ^= 0x20;
    fs::write(&object, &damaged).unwrap();

    let out = env.run(&["verify"]);
    assert!(!out.status.success(), "{}", output_text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let bad_path = env.json_path("folder/bad.txt");
    assert!(stdout.contains(&bad_path), "{}", output_text(&out));
    assert!(
        !stdout.contains(&env.json_path("good.txt")),
        "the intact file is named as damaged: {}",
        output_text(&out)
    );

    let out = env.run(&["verify", "--json"]);
    assert!(!out.status.success(), "{}", output_text(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        report["damaged"],
        serde_json::json!([{"problem": "damaged", "paths": [bad_path]}]),
        "{report:#}"
    );
}

#[test]
fn files_deleted_while_the_daemon_was_down_are_found_at_start() {
    let mut env = TestEnv::new();
    env.start_daemon(&[]);
    env.write("keep.txt", "kept");
    env.write("gone.txt", "deleted while down");
    env.write("folder/gone-too.txt", "also deleted while down");
    env.sync();
    assert!(env.stop_daemon().success());

    fs::remove_file(env.path("gone.txt")).unwrap();
    fs::remove_dir_all(env.path("folder")).unwrap();

    env.start_daemon_and_sync(&[]);
    let deleted = env.list_by_path(&[]);
    assert_eq!(deleted.len(), 2, "{deleted:#?}");
    for rel in ["gone.txt", "folder/gone-too.txt"] {
        let e = entry(&deleted, &env.json_path(rel));
        assert_deleted_and_recoverable(e);
        assert_eq!(e["deleted_at_approximate"], true, "{e}");
        let last_seen = time(e, "last_seen_at");
        assert!(last_seen <= time(e, "deleted_at"), "{e}");
    }
    let all = env.list_by_path(&["--all"]);
    assert_live_and_recoverable(entry(&all, &env.json_path("keep.txt")));
}

/// An idle daemon leaves the index alone between heartbeats: no transaction each
/// quiet second (each took the index's write lock, seen as SQLite's `fcntl` locks),
/// no write, no flush. The sync just answered wrote a heartbeat, and the next is
/// ten seconds away. Its own last batch (the sync's cookies, removed) is given a
/// second to end; the three seconds after that have nothing due, where a daemon
/// that opened a transaction every quiet second would show three.
#[test]
fn an_idle_daemon_touches_neither_the_index_nor_its_locks_between_heartbeats() {
    if std::process::Command::new("strace")
        .arg("-V")
        .output()
        .is_err()
    {
        eprintln!("SKIP: strace is not installed, so the daemon's system calls cannot be watched");
        return;
    }
    let mut env = TestEnv::new();
    // inotify: fanotify's one mark covers the whole filesystem, so the changes of
    // other programs (the tests beside this one) wake its reader, which reads and
    // drops them, allocating as it goes: a daemon not idle, its index untouched.
    env.start_daemon(&["--events", "inotify"]);
    env.write("a.txt", "something to keep");
    env.sync();
    let synced = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let out = std::process::Command::new("timeout")
        .args(["4", "strace", "-f", "-ttt", "-e"])
        .arg("trace=fcntl,openat,write,pwrite64,fsync,fdatasync,rename,renameat2,unlink")
        .arg("-p")
        .arg(env.daemon_pid().to_string())
        .output()
        .expect("run strace");
    let calls: Vec<String> = String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| {
            // "[pid N] SECONDS.MICROS call(…)" or "SECONDS.MICROS call(…)".
            let rest = l
                .strip_prefix("[pid ")
                .map_or(*l, |r| r.split_once("] ").map_or(r, |(_, rest)| rest));
            let at: Option<f64> = rest.split(' ').next().and_then(|t| t.parse().ok());
            at.is_some_and(|at| at > synced + 1.0) && rest.contains('(')
        })
        .map(str::to_owned)
        .collect();
    assert!(
        calls.is_empty(),
        "an idle daemon made these calls:\n{}",
        calls.join("\n")
    );
    env.write("b.txt", "and the daemon still records");
    env.sync();
    assert_live_and_recoverable(entry(
        &env.list_by_path(&["--all"]),
        &env.json_path("b.txt"),
    ));
}

/// Whether `pid` (its main thread) holds `path` open and sleeps: SQLite waiting for
/// the index's write lock sleeps between tries.
fn waits_with_open(pid: u32, path: Option<&std::path::Path>) -> bool {
    let holds = path.is_none_or(|path| {
        fs::read_dir(format!("/proc/{pid}/fd"))
            .into_iter()
            .flatten()
            .filter_map(|fd| fs::read_link(fd.ok()?.path()).ok())
            .any(|target| target == path)
    });
    holds
        && fs::read_to_string(format!("/proc/{pid}/task/{pid}/wchan"))
            .is_ok_and(|w| w.contains("nanosleep"))
}

/// Waits (bounded) until `ready`.
fn wait_until(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ready() {
        assert!(
            Instant::now() < deadline,
            "{what} did not happen within 30 s"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A new vault: the daemon makes its index while `status` and `sync`, run at the
/// same moment, open it too. The daemon listened before its index was made, and a
/// command that found it listening made the index's tables beside it: one of the
/// two stopped with "table roots already exists" or "database is locked". The
/// index's write lock is held here until all three wait for it, so they meet for
/// certain.
#[test]
fn commands_run_while_the_daemon_makes_a_new_index_wait_for_it() {
    use std::os::unix::fs::PermissionsExt;
    let mut env = TestEnv::new();
    env.write("a.txt", "a");
    fs::create_dir(&env.vault).unwrap();
    fs::set_permissions(&env.vault, fs::Permissions::from_mode(0o700)).unwrap();
    let index = env.vault.join("index.db");
    let db = rusqlite::Connection::open(&index).unwrap();
    db.pragma_update(None, "journal_mode", "WAL").unwrap();
    db.execute_batch("BEGIN IMMEDIATE").unwrap();
    env.spawn_daemon(&[]);
    let daemon = env.daemon_pid();
    wait_until("the daemon waiting to make its index", || {
        waits_with_open(daemon, Some(&index))
    });
    assert!(
        !env.socket().exists(),
        "the daemon listens before its index is made"
    );
    let run = |args: &[&str]| {
        env.command()
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let status = run(&["status", "--json"]);
    let sync = run(&["sync", "--timeout", "120"]);
    wait_until("status waiting", || waits_with_open(status.id(), None));
    wait_until("sync waiting", || waits_with_open(sync.id(), None));
    db.execute_batch("ROLLBACK").unwrap();
    drop(db);
    let status = status.wait_with_output().unwrap();
    let sync = sync.wait_with_output().unwrap();
    assert!(sync.status.success(), "{}", output_text(&sync));
    // 0 (on) or 3 (not started yet), never 1 (cannot tell).
    assert_ne!(status.status.code(), Some(1), "{}", output_text(&status));
    assert!(status.stderr.is_empty(), "{}", output_text(&status));
    let all = env.list_by_path(&["--all"]);
    assert!(all.contains_key(&env.json_path("a.txt")), "{all:#?}");
    let log = env.daemon_log();
    assert!(!log.contains("ERROR"), "{log}");
}
