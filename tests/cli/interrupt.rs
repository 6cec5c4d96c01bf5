//! Ctrl-C: at a question nothing changes; during a restore it stops cleanly and
//! running the same command again finishes the job.

use std::fs;
use std::io::Read;
use std::process::Stdio;

use crate::common::LoopDisk;
use crate::common::pty::Terminal;
use crate::common::{BIN, TestEnv, content, output_text};

/// Forty photos, copied by the daemon, then deleted together.
fn deleted_photos() -> TestEnv {
    let mut env = TestEnv::new();
    for i in 0..40 {
        env.write(format!("photos/p{i}.jpg"), content(i, 700));
    }
    env.start_daemon_and_sync(&[]);
    env.remove_and_sync(&["photos"]);
    env
}

#[test]
fn ctrl_c_at_a_question_changes_nothing() {
    let env = deleted_photos();
    // At each of the two questions in turn.
    for answers_before in [&[][..], &["\n"]] {
        let mut term = Terminal::start(&format!("{BIN} --vault {} emergency", env.vault.display()));
        term.expect("Press Enter for 1:");
        for answer in answers_before {
            term.send(answer);
            term.expect("Your choice [1]:");
        }
        term.send("\x03");
        let (status, screen) = term.finish();
        assert_eq!(status.code(), Some(130), "{screen}");
        assert!(screen.contains("Stopped. Nothing was changed."), "{screen}");
        assert!(!env.path("photos").exists(), "nothing restored:\n{screen}");
    }
    // And the photos are all still there to bring back.
    let out = env.run(&["emergency", "--yes"]);
    assert!(out.status.success(), "{}", output_text(&out));
    assert_eq!(fs::read_dir(env.path("photos")).unwrap().count(), 40);
}

/// The destination is a filesystem frozen with fsfreeze: the restore waits on its
/// first write, so Ctrl-C certainly comes during the restore, whatever the speed.
/// The folders exist already, so the waiting is done by the threads writing
/// files: a signal for the process is then taken by its main thread, which a
/// frozen write would hold until the thaw.
#[test]
fn ctrl_c_during_a_restore_stops_cleanly_and_running_it_again_finishes() {
    let env = deleted_photos();
    let Some(mut disk) = LoopDisk::new("ctrl_c_during_a_restore", 32) else {
        return;
    };
    let to = disk.join("restored");
    fs::create_dir_all(to.join("photos")).unwrap();
    disk.freeze();
    let mut restore = env
        .command()
        .args(["restore", "--under"])
        .arg(&env.share)
        .arg("--to")
        .arg(&to)
        .arg("--json")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the restore");
    let pid = restore.id();
    wait_until_blocked_on_disk(pid);
    rustix::process::kill_process(
        rustix::process::Pid::from_child(&restore),
        rustix::process::Signal::INT,
    )
    .expect("send Ctrl-C");
    // The restore says it is stopping before the disk lets it write anything.
    let stderr = restore.stderr.take().unwrap();
    let said = read_in_background(stderr);
    let mut messages = String::new();
    while !messages.contains("Stopping") {
        match said.recv_timeout(std::time::Duration::from_secs(120)) {
            Ok(chunk) => messages.push_str(&String::from_utf8_lossy(&chunk)),
            Err(_) => panic!("the restore never said it was stopping: {messages:?}"),
        }
    }
    disk.thaw();
    let out = restore.wait_with_output().expect("the restore ends");
    assert_eq!(out.status.code(), Some(130), "{}", output_text(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    assert_eq!(report["complete"], false, "{report}");
    assert_eq!(
        report["recovered"].as_u64().unwrap() + report["not_restored_yet"].as_u64().unwrap(),
        40,
        "{report}"
    );
    assert!(report["not_restored_yet"].as_u64().unwrap() > 0, "{report}");
    // No half-written file under a real name: whatever is there is whole.
    for entry in walkdir::WalkDir::new(&to).min_depth(1) {
        let entry = entry.unwrap();
        if entry.file_type().is_file() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let n: usize = name
                .trim_start_matches('p')
                .trim_end_matches(".jpg")
                .parse()
                .unwrap_or_else(|_| panic!("unexpected file {name}"));
            assert_eq!(fs::read(entry.path()).unwrap(), content(n, 700), "{name}");
        }
    }

    // The same command again finishes the job.
    let again = env
        .command()
        .args(["restore", "--under"])
        .arg(&env.share)
        .arg("--to")
        .arg(&to)
        .output()
        .unwrap();
    assert!(again.status.success(), "{}", output_text(&again));
    for i in 0..40 {
        assert_eq!(
            fs::read(to.join(format!("photos/p{i}.jpg"))).unwrap(),
            content(i, 700)
        );
    }
    assert_eq!(fs::read_dir(to.join("photos")).unwrap().count(), 40);
}

/// Chunks of what `from` says, as they come.
fn read_in_background(mut from: impl Read + Send + 'static) -> std::sync::mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 256];
        while let Ok(n @ 1..) = from.read(&mut buf) {
            if tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    rx
}

/// Waits until one of the process's threads sleeps in the kernel, uninterruptibly
/// (state D), waiting for the frozen disk: `percpu_rwsem_wait`, where a write to a
/// frozen filesystem waits. Any D is not enough: reading the program or the index
/// from a cold cache is one too, and would send Ctrl-C before the restore started.
/// Where the kernel does not name waits at all (none of this test's own sleeping
/// threads has a wchan), state D has to do. Decided once: a thread read in state D
/// and then running reads "0" too.
fn wait_until_blocked_on_disk(pid: u32) {
    let names_waits = fs::read_dir("/proc/self/task")
        .expect("this test's threads")
        .flatten()
        .any(|task| {
            let wchan = fs::read_to_string(task.path().join("wchan")).unwrap_or_default();
            !matches!(wchan.trim(), "0" | "")
        });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let tasks = fs::read_dir(format!("/proc/{pid}/task")).expect("the restore is running");
        for task in tasks.flatten() {
            let stat = fs::read_to_string(task.path().join("stat")).unwrap_or_default();
            // The state follows the command name, which is in parentheses.
            let waiting = stat
                .rsplit_once(") ")
                .is_some_and(|(_, rest)| rest.starts_with('D'));
            let wchan = fs::read_to_string(task.path().join("wchan")).unwrap_or_default();
            if waiting && (wchan.trim() == "percpu_rwsem_wait" || !names_waits) {
                return;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the restore never waited on the frozen disk"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}
