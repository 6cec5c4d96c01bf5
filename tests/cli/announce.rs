//! A restore tells the daemon which files it writes and with which content, so
//! the daemon records them without reading them again; the daemon believes it
//! only for a file whose inode, size and modification time are as announced.
//!
//! Two tests speak the announcement protocol themselves (the socket is root's
//! alone, as the vault is), because only an announcement that differs from the
//! file shows whether the daemon read the file or took the restore's word.

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use crate::common::*;

/// A restore's connection to the daemon, held as a restore holds it while it
/// writes: the mark of its own names told first, so that the daemon passes over
/// its temporary files until they are renamed.
struct Restoring {
    stream: UnixStream,
    mark: String,
}

impl Restoring {
    fn start(env: &TestEnv) -> Self {
        let mut stream = UnixStream::connect(env.socket()).expect("connect to the daemon");
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64;
        let mark = format!("{:016x}", nanos ^ (u64::from(std::process::id()) << 40));
        writeln!(stream, "RESTORING {mark}").unwrap();
        let mut ack = String::new();
        BufReader::new(&stream).read_line(&mut ack).unwrap();
        assert_eq!(ack, "OK\n", "the daemon takes the mark");
        Self { stream, mark }
    }

    /// A temporary name with this restore's mark.
    fn temp_name(&self, n: u32) -> String {
        format!(".undelete-restore-{}-{n}", self.mark)
    }

    /// Announces `path` as holding `content`, with the inode, size and time given,
    /// and waits for the daemon's acknowledgement.
    fn announce(&mut self, path: &Path, inode: u64, size: u64, mtime_ns: i64, content: &[u8]) {
        let line = serde_json::json!({
            "path": path.to_str().expect("a UTF-8 test path"),
            "inode": inode,
            "size": size,
            "mtime_ns": mtime_ns,
            "object": blake3::hash(content).to_hex().to_string(),
        });
        writeln!(self.stream, "{line}").unwrap();
        let mut ack = String::new();
        BufReader::new(&self.stream).read_line(&mut ack).unwrap();
        assert_eq!(ack, "OK\n", "the daemon acknowledges each announcement");
    }
}

fn mtime_ns(meta: &fs::Metadata) -> i64 {
    meta.mtime() * 1_000_000_000 + meta.mtime_nsec()
}

/// Deletes `name`, then restores it and returns what came back.
fn delete_and_restore(env: &TestEnv, name: &str) -> Vec<u8> {
    env.remove_and_sync(&[name]);
    let (ok, report, _) = restore_json(env, &[env.path(name).to_str().unwrap()]);
    assert!(ok, "{report}");
    fs::read(env.path(name)).unwrap()
}

#[test]
fn a_restored_file_is_recorded_without_the_daemon_reading_it_again() {
    let env = captured_then_deleted(&[("contract.odt", content(1, 300_000))]);

    let (ok, report, _) = restore_json(&env, &["--all-deleted"]);
    assert!(ok, "{report}");
    env.sync();

    let log = env.daemon_log();
    assert!(
        log.contains("recorded 1 restored files as their restore announced them"),
        "{log}"
    );
    // Recorded with the right content: it comes back again after a second deletion.
    assert_eq!(
        delete_and_restore(&env, "contract.odt"),
        content(1, 300_000)
    );
}

#[test]
fn the_daemon_takes_the_restores_word_for_a_file_as_announced() {
    let mut env = TestEnv::new();
    // The daemon trusts an announcement only for content the vault already holds.
    env.write("kept.txt", "vouched");
    env.start_daemon_and_sync(&[]);

    // Written like a restore writes: under a temporary name, announced, renamed.
    let mut restoring = Restoring::start(&env);
    let temp = env.write(restoring.temp_name(1), "written");
    let meta = fs::metadata(&temp).unwrap();
    let target = env.path("claimed.txt");
    restoring.announce(&target, meta.ino(), meta.len(), mtime_ns(&meta), b"vouched");
    fs::rename(&temp, &target).unwrap();
    env.sync();
    drop(restoring);

    // The daemon recorded the announced content, which it could only know from the
    // announcement: reading the file would have given "written".
    assert_eq!(delete_and_restore(&env, "claimed.txt"), b"vouched");
}

#[test]
fn an_announced_file_that_is_not_as_announced_is_read() {
    let mut env = TestEnv::new();
    // The daemon trusts an announcement only for content the vault already holds.
    env.write("kept.txt", "vouched");
    env.start_daemon_and_sync(&[]);

    type Change = fn(&fs::Metadata) -> (u64, u64, i64);
    let changes: [(&str, Change); 3] = [
        ("another-file.txt", |m| (m.ino() + 1, m.len(), mtime_ns(m))),
        ("written-to.txt", |m| (m.ino(), m.len() + 1, mtime_ns(m))),
        ("touched.txt", |m| {
            (m.ino(), m.len(), mtime_ns(m) - 1_000_000_000)
        }),
    ];
    let mut restoring = Restoring::start(&env);
    for (n, (name, change)) in changes.iter().enumerate() {
        let temp = env.write(restoring.temp_name(n as u32), "written");
        let (inode, size, mtime) = change(&fs::metadata(&temp).unwrap());
        restoring.announce(&env.path(name), inode, size, mtime, b"vouched");
        fs::rename(&temp, env.path(name)).unwrap();
    }
    env.sync();
    drop(restoring);

    for (name, _) in changes {
        assert_eq!(
            delete_and_restore(&env, name),
            b"written",
            "{name} was read, not taken on trust"
        );
    }
}
