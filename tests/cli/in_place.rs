//! Edits made in place that put the modification time back (`touch -r`,
//! `rsync --inplace -t`, photo tools writing metadata): the size, the mtime and
//! the inode stay as they were, and only the change time tells that the content
//! is new.

use std::fs::{self, File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::time::SystemTime;

use crate::common::*;

/// Sets `path`'s modification time to `mtime`, as `touch -r` does.
fn put_mtime_back(path: &std::path::Path, mtime: SystemTime) {
    File::options()
        .write(true)
        .open(path)
        .and_then(|f| f.set_modified(mtime))
        .unwrap_or_else(|e| panic!("set the mtime of {}: {e}", path.display()));
}

/// Restores every deleted file into a fresh folder; returns the content of `rel`.
fn restored(env: &TestEnv, rel: &str) -> Vec<u8> {
    let to = env.root.join("restored");
    let (_, report, output) = restore_json(
        env,
        &[
            "--under",
            env.share.to_str().unwrap(),
            "--to",
            to.to_str().unwrap(),
        ],
    );
    assert_eq!(report["recovered"], 1, "{output}");
    fs::read(to.join(rel)).unwrap_or_else(|e| panic!("{rel} did not come back ({e})\n{output}"))
}

#[test]
fn an_edit_that_keeps_the_size_and_puts_the_mtime_back_is_captured() {
    // Paused across the edit, so the daemon sees the file only once the mtime is
    // back: nothing but the change time says the content is new.
    for (round, how) in ["touch -r", "rewrite in place"].iter().enumerate() {
        let mut env = TestEnv::new();
        let path = env.write("photo.jpg", "original content, 32 bytes long.");
        env.start_daemon_and_sync(&[]);
        let mtime = fs::metadata(&path).unwrap().modified().unwrap();
        env.pause_daemon();
        if round == 0 {
            // A new file's content copied over, then `touch -r old new`.
            fs::write(&path, "edited content, also 32 bytes!!.").unwrap();
        } else {
            // Written through the open file, as `rsync --inplace` does.
            let mut f = OpenOptions::new().write(true).open(&path).unwrap();
            f.seek(SeekFrom::Start(0)).unwrap();
            f.write_all(b"edited content, also 32 bytes!!.").unwrap();
        }
        put_mtime_back(&path, mtime);
        assert_eq!(fs::metadata(&path).unwrap().modified().unwrap(), mtime);
        env.resume_daemon();
        env.sync();
        fs::remove_file(&path).unwrap();
        env.sync();
        assert_eq!(
            restored(&env, "photo.jpg"),
            b"edited content, also 32 bytes!!.",
            "{how}: the edit was never captured"
        );
    }
}

#[test]
fn a_change_of_metadata_alone_is_hashed_but_not_copied_again() {
    let mut env = TestEnv::new();
    // Larger than one read buffer, so the content is streamed, not held in memory.
    let data = content(1, 3 << 20);
    let path = env.write("big.bin", &data);
    env.start_daemon_and_sync(&[]);
    let objects = env.object_count();
    let written = written_by(env.daemon_pid());
    fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    env.sync();
    assert_eq!(env.object_count(), objects, "no new object for a chmod");
    let more = written_by(env.daemon_pid()) - written;
    assert!(
        more < 1 << 20,
        "the daemon wrote {more} bytes for a chmod of a 3 MB file"
    );
    let versions = env.run_ok(&["versions", env.path("big.bin").to_str().unwrap(), "--json"]);
    assert!(versions.contains("big.bin"), "{versions}");
}

/// Bytes the process has handed to `write` and its kin so far (`wchar`).
fn written_by(pid: u32) -> u64 {
    let io = fs::read_to_string(format!("/proc/{pid}/io")).expect("read /proc/PID/io");
    io.lines()
        .find_map(|l| l.strip_prefix("wchar: "))
        .and_then(|n| n.trim().parse().ok())
        .expect("a wchar line")
}
