//! Odd files and names, beyond what `names.rs` and `capture.rs` cover: device
//! nodes, symlink loops, hard links, sparse files, names of one dash, paths near
//! the 4,096-byte limit — found by the start-up scan and by events, captured or
//! recorded with a reason, and restored with byte-identical names and content.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

use rustix::fs::{CWD, FileType, Mode, makedev, mknodat};

use crate::common::*;

/// What `list --all` must say about a path.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    /// Captured, and restored identical.
    Kept,
    /// Recorded, not captured, with a reason containing this.
    NotCopied(&'static str),
}

const SPARSE_SIZE: u64 = 8 << 20;

/// Makes the odd things under `dir` (which exists); returns them by path relative to it.
fn make_odd_files(dir: &Path) -> BTreeMap<PathBuf, Expect> {
    let mut made = BTreeMap::new();
    let mut add = |rel: &[u8], expect| {
        made.insert(PathBuf::from(OsStr::from_bytes(rel)), expect);
    };
    let p = |rel: &str| dir.join(rel);

    if is_root() {
        mknodat(
            CWD,
            p("char-device"),
            FileType::CharacterDevice,
            Mode::from_raw_mode(0o600),
            makedev(1, 3),
        )
        .expect("mknod c");
        mknodat(
            CWD,
            p("block-device"),
            FileType::BlockDevice,
            Mode::from_raw_mode(0o600),
            makedev(7, 250),
        )
        .expect("mknod b");
        add(b"char-device", Expect::NotCopied("device node"));
        add(b"block-device", Expect::NotCopied("device node"));
    }
    rustix::fs::mkfifoat(CWD, p("pipe"), Mode::from_raw_mode(0o644)).expect("mkfifo");
    add(b"pipe", Expect::NotCopied("FIFO"));
    drop(UnixListener::bind(p("socket")).expect("bind a socket"));
    add(b"socket", Expect::NotCopied("socket"));

    fs::write(p("empty.txt"), b"").unwrap();
    add(b"empty.txt", Expect::Kept);
    for (name, target) in [
        ("link-relative", "empty.txt"),
        ("link-absolute", "/etc/hostname"),
        ("link-dangling", "no/such/file"),
        ("loop-a", "loop-b"),
        ("loop-b", "loop-a"),
        ("loop-self", "loop-self"),
        ("link-to-dir", "."),
    ] {
        symlink(target, p(name)).unwrap();
        add(name.as_bytes(), Expect::Kept);
    }

    fs::write(p("hard-1"), "one inode, two names").unwrap();
    fs::hard_link(p("hard-1"), p("hard-2")).unwrap();
    add(b"hard-1", Expect::Kept);
    add(b"hard-2", Expect::Kept);

    let mut sparse = File::create(p("sparse.img")).unwrap();
    sparse.set_len(SPARSE_SIZE).unwrap();
    for (at, data) in [
        (0, &b"head"[..]),
        (SPARSE_SIZE / 2, b"middle"),
        (SPARSE_SIZE - 4, b"tail"),
    ] {
        sparse.seek(SeekFrom::Start(at)).unwrap();
        sparse.write_all(data).unwrap();
    }
    drop(sparse);
    add(b"sparse.img", Expect::Kept);

    fs::write(p("locked.txt"), "mode 000").unwrap();
    fs::set_permissions(p("locked.txt"), fs::Permissions::from_mode(0o000)).unwrap();
    add(b"locked.txt", Expect::Kept);

    for name in ["-", "--", "-rf", "--help=yes"] {
        fs::write(p(name), format!("named {name}")).unwrap();
        add(name.as_bytes(), Expect::Kept);
    }
    let mut long_name = vec![b'x'; 251];
    long_name.extend_from_slice(b".txt");
    fs::write(dir.join(OsStr::from_bytes(&long_name)), "255 bytes").unwrap();
    add(&long_name, Expect::Kept);
    let odd = b"caf\xe9\nmenu\x01.txt";
    fs::write(dir.join(OsStr::from_bytes(odd)), "croissant").unwrap();
    add(odd, Expect::Kept);

    // A path of 4,090 bytes: folders of up to 200-byte names, then a file name that
    // fills it up. Every name stays within 255 bytes, however long `dir` is.
    let mut rel = Vec::new();
    let mut depth = 0;
    let left =
        |rel: &Vec<u8>| 4090 - dir.as_os_str().len() - 1 - rel.len() - usize::from(!rel.is_empty());
    while left(&rel) > 255 {
        depth += 1;
        let folder = (left(&rel) - 2).min(200);
        if !rel.is_empty() {
            rel.push(b'/');
        }
        rel.extend(std::iter::repeat_n(b'a' + (depth % 26) as u8, folder));
    }
    fs::create_dir_all(dir.join(OsStr::from_bytes(&rel))).unwrap();
    let file_len = left(&rel);
    rel.push(b'/');
    rel.extend(std::iter::repeat_n(b'z', file_len));
    let long_path = dir.join(OsStr::from_bytes(&rel));
    assert_eq!(long_path.as_os_str().len(), 4090);
    fs::write(&long_path, "far down").unwrap();
    add(&rel, Expect::Kept);
    made
}

/// The list entry for an absolute path, by its text or, if not UTF-8, its bytes.
fn listed<'a>(listed: &'a [serde_json::Value], path: &Path) -> &'a serde_json::Value {
    let found = match path.to_str() {
        Some(text) => listed.iter().find(|e| e["path"] == text),
        None => listed.iter().find(|e| e["path_bytes"] == path_hex(path)),
    };
    found.unwrap_or_else(|| panic!("{path:?} is not listed"))
}

#[test]
fn odd_files_are_recorded_without_hanging_and_restored_byte_identical() {
    let mut env = TestEnv::new();
    // One set found by the start-up scan, one by events.
    fs::create_dir(env.path("before")).unwrap();
    let mut expected: BTreeMap<PathBuf, Expect> = make_odd_files(&env.path("before"))
        .into_iter()
        .map(|(rel, e)| (Path::new("before").join(rel), e))
        .collect();
    env.start_daemon_and_sync(&[]);
    fs::create_dir(env.path("during")).unwrap();
    expected.extend(
        make_odd_files(&env.path("during"))
            .into_iter()
            .map(|(rel, e)| (Path::new("during").join(rel), e)),
    );
    env.sync();
    assert_eq!(env.status_json()["daemon_running"], true);

    let all = env.list_json(&["--all"]);
    assert_eq!(
        all.len(),
        expected.len(),
        "one entry per odd file: {all:#?}"
    );
    for (rel, expect) in &expected {
        let e = listed(&all, &env.path(rel));
        match expect {
            Expect::Kept => assert_live_and_recoverable(e),
            Expect::NotCopied(what) => {
                assert_eq!(e["kind"], "special", "{e}");
                assert!(!flag(e, "recoverable"), "{e}");
                let reason = e["reason"].as_str().unwrap_or_default();
                assert!(reason.contains(what), "the reason names the {what}: {e}");
            }
        }
    }
    let sparse = listed(&all, &env.path("during/sparse.img"));
    assert_eq!(sparse["size"], SPARSE_SIZE, "{sparse}");

    let before = tree(&env.share);
    fs::remove_dir_all(env.path("before")).unwrap();
    env.remove_and_sync(&["during"]);
    let deleted = env.list_json(&[]);
    assert_eq!(deleted.len(), expected.len(), "every one is deleted");

    // Special files cannot come back and were never copied: expected losses, exit 0.
    let (success, report, output) = restore_json(&env, &["--all-deleted"]);
    assert!(success, "{output}");
    let specials = expected
        .values()
        .filter(|e| matches!(e, Expect::NotCopied(_)))
        .count();
    assert_eq!(report["lost"], specials, "{output}");
    assert_eq!(report["recovered"], expected.len() - specials, "{output}");

    let after = tree(&env.share);
    for (rel, node) in &before {
        if matches!(node.kind, "fifo" | "socket" | "device") {
            assert!(!after.contains_key(rel), "{rel:?} is not a file to restore");
            continue;
        }
        let back = after
            .get(rel)
            .unwrap_or_else(|| panic!("{rel:?} was not restored under its exact name"));
        assert_eq!(back.kind, node.kind, "{rel:?}");
        assert!(back.data == node.data, "{rel:?}: content differs");
        if node.kind != "symlink" {
            assert_eq!(back.mode, node.mode, "{rel:?}: mode differs");
        }
    }
    let extra: Vec<&PathBuf> = after.keys().filter(|p| !before.contains_key(*p)).collect();
    assert!(extra.is_empty(), "restored under other names: {extra:?}");
}
