//! The event sources: fanotify where the kernel allows it (one mark per
//! filesystem, paths from folder handles), inotify otherwise, and what `status`
//! and `doctor` say of the one in use.

use std::fs;
use std::process::Command;

use crate::common::*;

/// Starts the daemon with fanotify, or says why the test is skipped.
fn fanotify_env(test: &str) -> Option<TestEnv> {
    if !is_root() {
        eprintln!("SKIPPED {test}: fanotify needs root");
        return None;
    }
    Some(TestEnv::new())
}

#[test]
fn events_come_as_paths_inside_the_protected_folder_only_even_after_their_folder_is_gone() {
    let Some(mut env) = fanotify_env("events_come_as_paths…") else {
        return;
    };
    env.write("a/b/c/old.txt", "kept before");
    env.write("a/b/other.txt", "kept too");
    let outside = env.root.join("outside");
    fs::create_dir(&outside).unwrap();
    env.start_daemon_and_sync(&["--events", "fanotify"]);
    // Read only after the folders are gone: every path comes from the handles of
    // folders that no longer exist.
    env.pause_daemon();
    env.write(
        "a/b/c/new.txt",
        "made and deleted while the daemon was held up",
    );
    fs::create_dir_all(outside.join("x/y")).unwrap();
    fs::write(outside.join("x/y/elsewhere.txt"), "outside").unwrap();
    fs::write(env.root.join("beside-the-share.txt"), "outside").unwrap();
    fs::remove_dir_all(env.path("a")).unwrap();
    fs::remove_dir_all(outside.join("x")).unwrap();
    env.resume_daemon();
    env.sync();
    let deleted = env.list_by_path(&[]);
    for kept in ["a/b/c/old.txt", "a/b/other.txt"] {
        assert_deleted_and_recoverable(entry(&deleted, &env.json_path(kept)));
    }
    // Listed at its own path. Read through its handle while the kernel still had
    // the file, it is kept whole; evicted first, it was deleted before it could be copied.
    let new = entry(&deleted, &env.json_path("a/b/c/new.txt"));
    assert!(
        new["recoverable"] == true || new["reason_code"] == "deleted_before_capture",
        "{new}"
    );
    let all = env.list_by_path(&["--all"]);
    let share = env.json_path("");
    for path in all.keys() {
        assert!(path.starts_with(&share), "{path} is outside the share");
    }
    assert!(
        !env.daemon_log().contains("elsewhere"),
        "{}",
        env.daemon_log()
    );
}

#[test]
fn status_and_doctor_say_fanotify_is_in_use_and_why() {
    let Some(mut env) = fanotify_env("status_and_doctor_say_fanotify…") else {
        return;
    };
    env.write("f.txt", "protected");
    env.start_daemon_and_sync(&["--events", "auto"]);
    let status = env.status_json();
    assert_eq!(status["event_source"]["source"], "fanotify", "{status:#}");
    let why = status["event_source"]["why"].as_str().unwrap();
    assert!(
        why.contains("one mark covers each protected filesystem"),
        "{why}"
    );
    let text = env.run_ok(&["status"]);
    assert!(
        text.contains("Changes are noticed with fanotify: one mark covers"),
        "{text}"
    );
    let out = env.run(&["doctor", "--json"]);
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let checks = answer["checks"].as_array().unwrap();
    let named = |name: &str| {
        checks
            .iter()
            .find(|c| c["check"] == name)
            .unwrap_or_else(|| panic!("no check {name}: {answer:#}"))
    };
    let source = named("event_source");
    assert_eq!(source["ok"], true, "{source:#}");
    assert_eq!(source["details"]["source"], "fanotify", "{source:#}");
    let watch = named("watch_limit");
    assert_eq!(watch["ok"], true, "{watch:#}");
    assert!(
        watch["message"]
            .as_str()
            .unwrap()
            .contains("needs no watch per folder"),
        "{watch:#}"
    );
    let text = String::from_utf8_lossy(&env.run(&["doctor"]).stdout).into_owned();
    assert!(text.contains("Changes are noticed with fanotify"), "{text}");
}

#[test]
fn without_the_rights_for_fanotify_the_daemon_uses_inotify_and_says_why() {
    if !user_namespaces_work() {
        eprintln!("SKIPPED without_the_rights_for_fanotify…: no user namespaces here");
        return;
    }
    let mut env = TestEnv::new();
    // Root in a user namespace of its own: every right there, none over the
    // machine's filesystems, which a filesystem mark needs.
    env.daemon_watch_limit = Some(100_000);
    env.start_daemon_and_sync(&[]);
    env.write("f.txt", "protected all the same");
    env.sync();
    let status = env.status_json();
    assert_eq!(status["event_source"]["source"], "inotify", "{status:#}");
    let why = status["event_source"]["why"].as_str().unwrap();
    assert!(
        why.starts_with("fanotify cannot be used here: it needs root"),
        "{why}"
    );
    let all = env.list_by_path(&["--all"]);
    assert_live_and_recoverable(entry(&all, &env.json_path("f.txt")));
    assert!(
        env.daemon_log()
            .contains("using inotify: fanotify cannot be used here"),
        "{}",
        env.daemon_log()
    );
}

#[test]
fn fanotify_asked_for_but_refused_stops_the_daemon_with_the_reason() {
    if !user_namespaces_work() {
        eprintln!("SKIPPED fanotify_asked_for_but_refused…: no user namespaces here");
        return;
    }
    let env = TestEnv::new();
    let out = Command::new("unshare")
        .args(["--user", "--map-root-user", BIN, "--vault"])
        .arg(&env.vault)
        .args(["daemon", "--events", "fanotify", "--protect"])
        .arg(&env.share)
        .output()
        .expect("run unshare");
    assert!(!out.status.success(), "{}", output_text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "fanotify was asked for (--events fanotify) but cannot be used: it needs root"
        ),
        "{stderr}"
    );
}

#[test]
fn an_event_source_that_does_not_exist_is_refused_by_name() {
    let env = TestEnv::new();
    let out = env.run(&[
        "daemon",
        "--events",
        "dnotify",
        "--protect",
        env.share.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("\"dnotify\" is not an event source; write auto, fanotify or inotify"),
        "{}",
        output_text(&out)
    );
}

/// What the process `pid` holds: inotify watches, and fanotify groups.
fn watches_and_groups(pid: u32) -> (usize, usize) {
    let (mut watches, mut groups) = (0, 0);
    for fd in fs::read_dir(format!("/proc/{pid}/fdinfo")).unwrap() {
        let info = fs::read_to_string(fd.unwrap().path()).unwrap_or_default();
        watches += info
            .lines()
            .filter(|l| l.starts_with("inotify wd:"))
            .count();
        if info.lines().any(|l| l.starts_with("fanotify flags:")) {
            groups += 1;
        }
    }
    (watches, groups)
}

/// The machine's limit on inotify watches (`fs.inotify.max_user_watches`), lowered
/// while this lives and put back when it is dropped, also when a test fails.
struct MachineWatchLimit {
    before: String,
}

const MACHINE_WATCH_LIMIT: &str = "/proc/sys/fs/inotify/max_user_watches";

impl MachineWatchLimit {
    /// Lowered to `limit` where `UNDELETE_TEST_MACHINE_WATCH_LIMIT=1` asks for it. Off
    /// by default: the limit is the whole machine's, counted per user, so root's
    /// services and every test run beside this one that watches with inotify would
    /// be refused watches meanwhile. (A test of the daemon under inotify lowers a
    /// limit of its own, in a user namespace of its own: see `daemon_watch_limit`;
    /// fanotify needs root of the machine's first namespace and cannot run there.)
    /// Run it on a machine of its own, alone:
    /// `UNDELETE_TEST_MACHINE_WATCH_LIMIT=1 cargo test --release --test cli --
    /// --exact sources::a_hundred_thousand_folders_need_no_watch_with_fanotify`.
    fn lowered_if_asked(limit: u64) -> Option<Self> {
        if std::env::var_os("UNDELETE_TEST_MACHINE_WATCH_LIMIT").is_none_or(|v| v != "1") {
            eprintln!(
                "the machine's limit on inotify watches is left as it is; \
                 UNDELETE_TEST_MACHINE_WATCH_LIMIT=1 lowers it to {limit} for this test"
            );
            return None;
        }
        let before = fs::read_to_string(MACHINE_WATCH_LIMIT).unwrap();
        fs::write(MACHINE_WATCH_LIMIT, format!("{limit}\n")).unwrap();
        Some(Self { before })
    }
}

impl Drop for MachineWatchLimit {
    fn drop(&mut self) {
        if let Err(e) = fs::write(MACHINE_WATCH_LIMIT, &self.before) {
            eprintln!(
                "could not put {MACHINE_WATCH_LIMIT} back to {}: {e}",
                self.before.trim()
            );
        }
    }
}

/// 100,000 folders under fanotify: no inotify watch at all, one fanotify group,
/// nothing left unwatched (which would raise the watch-limit alert and a fallback
/// scan every five minutes), and with `UNDELETE_TEST_MACHINE_WATCH_LIMIT=1` under a
/// machine limit of 1,000 watches.
#[test]
fn a_hundred_thousand_folders_need_no_watch_with_fanotify() {
    let Some(mut env) = fanotify_env("a_hundred_thousand_folders…") else {
        return;
    };
    let limit = MachineWatchLimit::lowered_if_asked(1000);
    let folders = count_from_env("UNDELETE_TEST_FOLDERS", 100_000);
    // 100 folders of 1,000, a file in every 50th.
    let mut expected = std::collections::BTreeMap::new();
    for i in 0..folders {
        if i % 1000 == 0 {
            fs::create_dir(env.path(format!("d{}", i / 1000))).unwrap();
        }
        let dir = env.path(format!("d{}/e{i}", i / 1000));
        fs::create_dir(&dir).unwrap();
        if i % 50 == 0 {
            let rel = format!("d{}/e{i}/f.txt", i / 1000);
            let data = format!("file {i}");
            fs::write(dir.join("f.txt"), &data).unwrap();
            expected.insert(rel, data);
        }
    }
    env.start_daemon_and_sync(&["--events", "fanotify"]);
    // A file in a folder made a moment ago is seen without walking it again.
    for i in 0..50 {
        let rel = format!("new/n{i}/deeper/f.txt");
        env.write(&rel, format!("new {i}"));
        expected.insert(rel, format!("new {i}"));
    }
    env.sync();
    let (watches, groups) = watches_and_groups(env.daemon_pid());
    assert_eq!(watches, 0, "inotify watches held");
    assert_eq!(groups, 1, "fanotify groups held");
    if limit.is_some() {
        assert_eq!(
            fs::read_to_string(MACHINE_WATCH_LIMIT).unwrap().trim(),
            "1000",
            "the machine's limit held all along"
        );
    }
    let status = env.status_json();
    assert_eq!(status["event_source"]["source"], "fanotify", "{status:#}");
    assert!(
        status["alerts"].as_array().unwrap().is_empty(),
        "{status:#}"
    );
    assert_eq!(status["files_protected"], expected.len(), "{status:#}");
    // One scan, the start-up one: no fallback scans.
    assert_eq!(
        env.daemon_log().matches("scan finished in").count(),
        1,
        "{}",
        env.daemon_log()
    );
    for entry in fs::read_dir(&env.share).unwrap() {
        fs::remove_dir_all(entry.unwrap().path()).unwrap();
    }
    env.sync();
    let to = env.root.join("back");
    // The files by name: the 100,000 empty folders need no restore.
    let paths: Vec<String> = expected
        .keys()
        .map(|rel| env.path(rel).to_str().unwrap().to_owned())
        .collect();
    let mut args: Vec<&str> = paths.iter().map(String::as_str).collect();
    args.extend(["--to", to.to_str().unwrap()]);
    let (ok, report, output) = restore_json(&env, &args);
    assert!(ok, "{output}");
    assert_eq!(report["recovered"], expected.len(), "{output}");
    let back = tree(&to);
    for (rel, data) in &expected {
        let got = back
            .get(std::path::Path::new(rel))
            .unwrap_or_else(|| panic!("{rel} did not come back"));
        assert_eq!(got.data, data.as_bytes(), "{rel}");
    }
}

/// How many process descriptors (pidfds) the process `pid` holds.
fn pidfds(pid: u32) -> usize {
    fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|fd| fs::read_link(fd.ok()?.path()).ok())
        .filter(|target| target.as_os_str() == "anon_inode:[pidfd]")
        .count()
}

/// fanotify gives each event a descriptor of the process that made it (a pidfd).
/// Held with the event until the daemon's loop reached it, a burst queued while the
/// loop was busy took one descriptor per event: thousands, past the limit on open
/// files, and then no file could be opened to resolve a path or copy a file, and
/// the rest of the burst came without its process. The loop is held busy here by
/// the index's write lock, taken as a long command would; the reading threads go on.
#[test]
fn a_burst_queued_while_the_daemon_is_busy_holds_no_descriptor_per_event() {
    let Some(mut env) = fanotify_env("a_burst_queued_while_the_daemon_is_busy…") else {
        return;
    };
    // Not more: the loop waits for the index's lock 30 s at most, and then stops.
    let files = 4000;
    for i in 0..files {
        env.write(format!("burst/f{i:05}"), format!("burst {i}"));
    }
    // Far fewer descriptors than events, as a service with a low limit would have.
    env.daemon_open_files_at_most = Some(1024);
    fs::create_dir(env.path("second")).unwrap();
    env.start_daemon_and_sync(&["--events", "fanotify"]);
    let db = rusqlite::Connection::open(env.vault.join("index.db")).unwrap();
    db.execute_batch("BEGIN IMMEDIATE").unwrap();
    // Deleted by this very process, which lives on: the kernel gives a pidfd with
    // each event.
    fs::remove_dir_all(env.path("burst")).unwrap();
    for i in 0..files {
        env.write(format!("second/f{i:05}"), format!("second {i}"));
    }
    let held = pidfds(env.daemon_pid());
    db.execute_batch("ROLLBACK").unwrap();
    drop(db);
    // One read of the kernel's queue (32 KiB, some 340 events) gives a pidfd with
    // each of its events at once, for a moment; the events queued after it hold none.
    assert!(
        held < 400,
        "the daemon held {held} pidfds for a queue of {} events",
        files * 2
    );
    env.sync();
    let me = std::process::id();
    let deleted = env.list_json(&["--under", env.path("burst").to_str().unwrap()]);
    assert_eq!(deleted.len(), files, "every deletion recorded");
    for row in &deleted {
        assert_eq!(row["recoverable"], true, "{row:#}");
        let by = &row["deleted_by"];
        assert_eq!(by["pid"], me, "{row:#}");
        assert_eq!(by["via"], "local", "{row:#}");
        assert_eq!(by["user"], "root", "{row:#}");
    }
    let all = env.list_json(&["--all", "--under", env.path("second").to_str().unwrap()]);
    assert_eq!(all.len(), files, "every new file recorded");
    for row in &all {
        assert_eq!(row["changed_by"]["pid"], me, "{row:#}");
        assert_eq!(row["changed_by"]["via"], "local", "{row:#}");
    }
    let log = env.daemon_log();
    assert!(!log.contains("os error 24"), "{log}");
}

/// A program that starts another hands it its open files for a moment (between the
/// fork and the new program), and a file whose writer closes first is last closed
/// by that other process: the kernel reports the close as its. A test suite that
/// runs tests in threads starts commands all the time; so does any server that
/// writes and runs helpers. The change is the writer's, not the helper's.
#[test]
fn a_file_last_closed_by_a_process_that_inherited_it_is_changed_by_its_writer() {
    use std::io::Write;
    use std::os::fd::AsRawFd;
    let Some(mut env) = fanotify_env("a_file_last_closed_by_a_process_that_inherited_it…") else {
        return;
    };
    env.start_daemon_and_sync(&["--events", "fanotify"]);
    // The daemon paused: the write and the close are read together, as on a busy
    // server.
    env.pause_daemon();
    let mut file = fs::File::create(env.path("report.txt")).unwrap();
    file.write_all(b"written by this test").unwrap();
    // Handed to a child as a descriptor without close-on-exec, as the moment
    // between a fork and an exec does with every descriptor.
    let inherited = rustix::io::fcntl_dupfd_cloexec(&file, 100).unwrap();
    rustix::io::fcntl_setfd(&inherited, rustix::io::FdFlags::empty()).unwrap();
    let mut child = Command::new("sh")
        .args(["-c", "read line"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let child_pid = child.id();
    assert!(inherited.as_raw_fd() >= 100);
    drop(inherited);
    drop(file);
    // The child's exit is the file's last close.
    drop(child.stdin.take());
    child.wait().unwrap();
    env.resume_daemon();
    env.sync();
    let rows = env.list_json(&["--all", "--under", env.path("report.txt").to_str().unwrap()]);
    assert_eq!(rows.len(), 1, "{rows:?}");
    let by = &rows[0]["changed_by"];
    assert_eq!(
        by["pid"],
        std::process::id(),
        "not the child {child_pid}: {by:#}"
    );
}
