//! Files deleted while, or right after, they were written: a restore brings back
//! their whole last content, or says plainly that only part of it was kept, and
//! never calls a cut-short file recovered.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::time::Duration;

use serde_json::Value;

use crate::common::*;

/// Writes `chunks` pieces slowly, so the daemon sees the file while it grows.
fn write_slowly(file: &mut fs::File, data: &[u8], chunks: usize) {
    for piece in data.chunks(data.len().div_ceil(chunks)) {
        file.write_all(piece).unwrap();
        std::thread::sleep(Duration::from_millis(4));
    }
}

#[test]
fn a_file_deleted_while_or_right_after_it_was_written_is_never_called_recovered_cut_short() {
    // The daemon copied whatever part existed when the file appeared; deleted before
    // its close was looked at, that part was recorded as a whole version, and the
    // restore wrote back a truncated file and called it recovered.
    let iterations = count_from_env("UNDELETE_TEST_ITERATIONS", 12);
    let mut env = TestEnv::new();
    env.write("old.txt", "an older, complete version");
    env.start_daemon_and_sync(&[]);
    let mut finals = std::collections::BTreeMap::new();
    for i in 0..iterations {
        let data = content(i, 20_000 + 1000 * i);
        let rel = format!("w{i}.bin");
        let path = env.path(&rel);
        let mut file = fs::File::create(&path).unwrap();
        write_slowly(&mut file, &data[..data.len() / 2], 4);
        match i % 3 {
            // Written slowly, closed, deleted at once.
            0 => {
                write_slowly(&mut file, &data[data.len() / 2..], 4);
                drop(file);
                fs::remove_file(&path).unwrap();
            }
            // Deleted while still open, and written on after that.
            1 => {
                fs::remove_file(&path).unwrap();
                write_slowly(&mut file, &data[data.len() / 2..], 2);
                drop(file);
            }
            // Deleted still open, never closed before the restore.
            _ => {
                write_slowly(&mut file, &data[data.len() / 2..], 2);
                fs::remove_file(&path).unwrap();
                std::mem::forget(file);
            }
        }
        finals.insert(rel, data);
    }
    // An existing file rewritten in place and deleted while open: the older complete
    // version is what comes back, and the report says its last changes are missing.
    let mut rewritten = OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(env.path("old.txt"))
        .unwrap();
    rewritten.write_all(b"new words, never closed").unwrap();
    env.remove_and_sync(&["old.txt"]);

    let to = env.root.join("restored");
    let (ok, report, output) = restore_json(
        &env,
        &[
            "--under",
            env.share.to_str().unwrap(),
            "--to",
            to.to_str().unwrap(),
        ],
    );
    let files = report["files"].as_array().unwrap();
    let by_path = |rel: &str| -> &Value {
        files
            .iter()
            .find(|f| f["path"] == env.json_path(rel))
            .unwrap_or_else(|| panic!("{rel} is not in the report\n{output}"))
    };
    let mut partial = 0;
    for (rel, data) in &finals {
        let f = by_path(rel);
        match f["outcome"].as_str().unwrap() {
            "recovered" => {
                let back = fs::read(to.join(rel)).unwrap();
                assert_eq!(
                    back.len(),
                    data.len(),
                    "{rel} was called recovered but came back cut short\n{output}"
                );
                assert_eq!(&back, data, "{rel}");
            }
            "partial" => {
                partial += 1;
                let reason = f["reason"].as_str().unwrap();
                assert!(reason.contains("only part of it was kept"), "{f}");
                // What was kept is the file's first bytes. It may be all of them:
                // a file deleted before its writer closed it may have been read
                // after the last write, but the daemon cannot know that no write
                // was to come, so it never calls it whole.
                let back = fs::read(to.join(rel)).unwrap();
                assert!(data.starts_with(&back), "{rel}: {f}");
            }
            "lost" => assert_eq!(f["reason"], "deleted before it could be copied", "{f}"),
            other => panic!("{rel}: {other}\n{output}"),
        }
    }
    // Held open by the daemon from the moment they were seen being written, the
    // files closed before or after their deletion keep their whole last content.
    assert!(
        report["recovered"].as_u64() > Some(0),
        "none came back whole, {partial} in part: {report}"
    );
    let old = by_path("old.txt");
    assert_eq!(old["outcome"], "partial", "{old}");
    assert_eq!(old["reason_code"], "last_changes_missing", "{old}");
    assert!(
        old["reason"]
            .as_str()
            .unwrap()
            .contains("last changes were not kept"),
        "{old}"
    );
    assert_eq!(report["partial"], partial + 1, "{report}");
    assert!(ok, "only part kept counts like never copied: {output}");
    let again = env.root.join("again");
    let text = env.run_ok(&[
        "restore",
        "--under",
        env.share.to_str().unwrap(),
        "--to",
        again.to_str().unwrap(),
    ]);
    assert!(text.contains("Brought back only in part"), "{text}");
    assert!(text.contains("came back only in part"), "{text}");
    drop(rewritten);
}
