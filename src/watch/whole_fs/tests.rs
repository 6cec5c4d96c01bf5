//! The source against a loop-mounted filesystem of its own (see `test_disk`).

use super::*;
use crate::watch::test_disk::TestDisk;
use std::os::fd::AsRawFd;
use std::sync::mpsc::Receiver;

/// The source on a filesystem of its own, taking nobody's events for its own,
/// with every folder already there watched as a walk would.
fn source(disk: &TestDisk, folders: &[&str]) -> (WholeFs, Receiver<Msg>) {
    let (tx, rx) = std::sync::mpsc::channel();
    let root = disk.path.clone();
    let source =
        WholeFs::start_as(tx, std::slice::from_ref(&root), -1, &disk.join(".vault")).unwrap();
    for f in folders {
        let dir = super::super::tree::open_dir(&disk.join(f)).unwrap();
        source.watch(dir.as_fd(), &disk.join(f)).unwrap();
    }
    (source, rx)
}

/// What came until the cookie `end` was made, which marks the end.
fn until(rx: &Receiver<Msg>, end: &Path) -> Vec<FsEvent> {
    let mut got = Vec::new();
    loop {
        match rx.recv_timeout(Duration::from_secs(10)).expect("events") {
            Msg::Fs(FsEvent::Changed { path, .. }, _) if path == end => return got,
            Msg::Fs(e, by) => {
                assert!(by.is_some_and(|b| b.pid == std::process::id() as i32));
                got.push(e)
            }
            _ => {}
        }
    }
}

#[test]
fn exchanges_and_deleted_folders_keep_the_paths_they_had_in_queue_order() {
    let Some(disk) = TestDisk::new("whole_fs exchanges") else {
        return;
    };
    for f in ["x/deep", "y"] {
        std::fs::create_dir_all(disk.join(f)).unwrap();
    }
    std::fs::write(disk.join("f0"), "0").unwrap();
    std::fs::write(disk.join("f1"), "1").unwrap();
    std::fs::write(disk.join("x/deep/old"), "old").unwrap();
    let (_source, rx) = source(&disk, &["x", "x/deep", "y"]);
    let exchange = |a: &str, b: &str| {
        use rustix::fs::{CWD, RenameFlags, renameat_with};
        renameat_with(CWD, disk.join(a), CWD, disk.join(b), RenameFlags::EXCHANGE).unwrap();
    };
    exchange("f1", "f0");
    exchange("x", "y");
    // x's folder is y now: a file made in it is y's.
    std::fs::write(disk.join("y/deep/new"), "new").unwrap();
    std::fs::remove_dir_all(disk.join("y")).unwrap();
    let end = disk.join(".undelete-sync-1-1");
    std::fs::write(&end, "").unwrap();
    let got = until(&rx, &end);
    let p = |s: &str| disk.join(s);
    let exchanges: Vec<&FsEvent> = got
        .iter()
        .filter(|e| matches!(e, FsEvent::Exchanged { .. } | FsEvent::Renamed { .. }))
        .collect();
    assert_eq!(
        exchanges,
        [
            &FsEvent::Exchanged {
                a: p("f1"),
                b: p("f0")
            },
            &FsEvent::Exchanged {
                a: p("x"),
                b: p("y")
            },
        ],
        "{got:#?}"
    );
    for removed in ["y/deep/new", "y/deep/old", "y/deep", "y"] {
        assert!(
            got.iter()
                .any(|e| matches!(e, FsEvent::Removed { path, .. } if *path == p(removed))),
            "{removed} not removed: {got:#?}"
        );
    }
    assert!(
        !got.iter().any(|e| format!("{e:?}").contains("/x/")),
        "{got:#?}"
    );
}
/// The inodes the group's ignore marks are on (`ignored_mask` lines of its fdinfo).
fn quiet_inodes(source: &WholeFs) -> Vec<u64> {
    let fd = source.shared.group.as_fd().as_raw_fd();
    let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}")).unwrap();
    info.lines()
        .filter(|l| l.contains("ignored_mask:") && !l.contains("ignored_mask:0 "))
        .filter_map(|l| l.split_whitespace().find_map(|w| w.strip_prefix("ino:")))
        .map(|hex| u64::from_str_radix(hex, 16).unwrap())
        .collect()
}

#[test]
fn the_vaults_folders_are_kept_quiet_and_no_other_folder_the_daemon_writes_in() {
    use std::os::unix::fs::MetadataExt;
    let Some(disk) = TestDisk::new("whole_fs quiet vault") else {
        return;
    };
    for f in ["share/docs", "vault/objects/ab", "elsewhere"] {
        std::fs::create_dir_all(disk.join(f)).unwrap();
    }
    let (tx, rx) = std::sync::mpsc::channel();
    // This test's own writes are the daemon's: taken for its own, and dropped.
    let share = disk.join("share");
    let source = WholeFs::start_as(
        tx,
        std::slice::from_ref(&share),
        std::process::id() as i32,
        &disk.join("vault"),
    )
    .unwrap();
    for f in [
        "share/docs/a",
        "vault/index",
        "vault/objects/ab/cd",
        "elsewhere/tmp",
    ] {
        std::fs::write(disk.join(f), "written").unwrap();
    }
    std::fs::rename(
        disk.join("vault/objects/ab/cd"),
        disk.join("vault/objects/ab/ef"),
    )
    .unwrap();
    // Its cookie comes back: every event before it has been read.
    let end = disk.join("share/.undelete-sync-1-1");
    std::fs::write(&end, "").unwrap();
    loop {
        match rx.recv_timeout(Duration::from_secs(10)).expect("events") {
            Msg::Fs(e, _) if format!("{e:?}").contains(".undelete-sync-1-1") => break,
            Msg::Fs(e, _) => panic!("the daemon's own write was handed on: {e:?}"),
            _ => {}
        }
    }
    let ino = |f: &str| std::fs::metadata(disk.join(f)).unwrap().ino();
    let mut quiet = quiet_inodes(&source);
    quiet.sort();
    let mut vault = vec![ino("vault"), ino("vault/objects/ab")];
    vault.sort();
    assert_eq!(
        quiet, vault,
        "only the vault's folders written in are kept quiet"
    );
}

/// The source on `disk` protecting its folder `share`, with a reader no thread
/// runs: events are given to it by hand (the group's own queue is never read).
fn unread_source(disk: &TestDisk) -> (WholeFs, Reader, Receiver<Msg>) {
    let share = disk.join("share");
    let source = WholeFs::open_as(std::slice::from_ref(&share), -1, &disk.join(".vault")).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = Reader::new(Arc::clone(&source.shared), tx);
    (source, reader, rx)
}

/// The handle of `rel` on `disk`, as the kernel reports it.
fn fid_of(disk: &TestDisk, rel: &str) -> Fid {
    let file = std::fs::File::open(disk.join(rel)).unwrap();
    fanotify::fid_of(file.as_fd()).unwrap()
}

/// The event of `pid` renaming `old` to `new` (names in `dir`), moving `object`.
fn rename_event(pid: i32, dir: &Fid, old: &str, new: &str, object: &Fid) -> Event {
    let entry = |name: &str| Entry {
        dir: dir.clone(),
        name: name.into(),
    };
    Event {
        mask: fanotify::FAN_RENAME,
        pid,
        pidfd: None,
        entry: None,
        old: Some(entry(old)),
        new: Some(entry(new)),
        object: Some(object.clone()),
    }
}

/// The event of `pid` making `name` in `dir`, and writing and closing it.
fn made_event(pid: i32, dir: &Fid, name: &str, object: &Fid) -> Event {
    Event {
        mask: fanotify::FAN_CREATE | fanotify::FAN_MODIFY | fanotify::FAN_CLOSE_WRITE,
        pid,
        pidfd: None,
        entry: Some(Entry {
            dir: dir.clone(),
            name: name.into(),
        }),
        old: None,
        new: None,
        object: Some(object.clone()),
    }
}

#[test]
fn another_process_between_the_halves_of_an_exchange_leaves_it_one_exchange_in_order() {
    // The kernel queues an exchange's two halves one after the other, and on a busy
    // filesystem another process's event may come between them. Read in that
    // order (the kernel cannot be made to interleave on purpose, so the events are
    // given to the reader by hand), the exchange must stay one, and everyone's
    // events keep their order around it, the mover's other threads' too. Taken as two renames, each file's history
    // went to the other's name as "replaced".
    let Some(disk) = TestDisk::new("whole_fs interleaved exchange") else {
        return;
    };
    for f in ["share", "elsewhere"] {
        std::fs::create_dir_all(disk.join(f)).unwrap();
    }
    for f in [
        "share/f0",
        "share/f1",
        "share/g",
        "share/h",
        "share/k",
        "elsewhere/log",
    ] {
        std::fs::write(disk.join(f), f).unwrap();
    }
    let (_source, mut reader, rx) = unread_source(&disk);
    let fid = |f: &str| fid_of(&disk, f);
    let (dir, elsewhere) = (fid("share"), fid("elsewhere"));
    let (f0, f1, g, log) = (
        fid("share/f0"),
        fid("share/f1"),
        fid("share/g"),
        fid("elsewhere/log"),
    );
    use rustix::fs::{CWD, RenameFlags, renameat_with};
    renameat_with(
        CWD,
        disk.join("share/f1"),
        CWD,
        disk.join("share/f0"),
        RenameFlags::EXCHANGE,
    )
    .unwrap();
    for (from, to) in [("share/h", "share/h2"), ("share/k", "share/k2")] {
        std::fs::rename(disk.join(from), disk.join(to)).unwrap();
    }
    let (h, k) = (fid("share/h2"), fid("share/k2"));
    let (mover, writer, logger) = (4242, 4343, 4444);
    for event in [
        rename_event(mover, &dir, "f1", "f0", &f1),
        made_event(logger, &elsewhere, "log", &log),
        made_event(writer, &dir, "g", &g),
        // Another thread of the mover, writing: the same process to the kernel.
        made_event(mover, &dir, "g", &g),
        // Another process renaming elsewhere: waits too, then waits in its turn.
        rename_event(writer, &dir, "k", "k2", &k),
        rename_event(mover, &dir, "f0", "f1", &f0),
        // A plain rename, then another's event, then the mover's next one: both
        // wait behind it until the queue is quiet.
        rename_event(mover, &dir, "h", "h2", &h),
        made_event(writer, &dir, "g", &g),
        made_event(mover, &dir, "g", &g),
    ] {
        assert!(reader.handle(event));
    }
    // The queue empty a moment: the rename waiting had no other half.
    assert!(reader.quiet());
    drop(reader);
    let p = |s: &str| disk.join(s);
    let got: Vec<(FsEvent, i32)> = rx
        .iter()
        .filter_map(|m| match m {
            Msg::Fs(
                e @ (FsEvent::Exchanged { .. } | FsEvent::Renamed { .. } | FsEvent::Closed { .. }),
                by,
            ) => Some((e, by.unwrap().pid)),
            _ => None,
        })
        .collect();
    let closed_g = FsEvent::Closed {
        path: p("share/g"),
        object: Some(g),
    };
    assert_eq!(
        got,
        [
            (
                FsEvent::Exchanged {
                    a: p("share/f1"),
                    b: p("share/f0")
                },
                mover
            ),
            (closed_g.clone(), writer),
            (closed_g.clone(), mover),
            (
                FsEvent::Renamed {
                    from: p("share/k"),
                    to: p("share/k2"),
                    object: Some(k)
                },
                writer
            ),
            (
                FsEvent::Renamed {
                    from: p("share/h"),
                    to: p("share/h2"),
                    object: Some(h)
                },
                mover
            ),
            (closed_g.clone(), writer),
            (closed_g, mover),
        ],
        "{got:#?}"
    );
}

#[test]
fn a_rename_by_another_process_at_the_same_places_ends_the_wait_for_an_exchange() {
    // `mv a b` by one process, `mv c b` by another, `mv b a` by the first: the
    // first and last are the same two places the other way, moving other things,
    // but no exchange: the second rename came between them at one of its places.
    let Some(disk) = TestDisk::new("whole_fs renames at the same places") else {
        return;
    };
    std::fs::create_dir_all(disk.join("share")).unwrap();
    for f in ["share/a", "share/c"] {
        std::fs::write(disk.join(f), f).unwrap();
    }
    let (_source, mut reader, rx) = unread_source(&disk);
    let fid = |f: &str| fid_of(&disk, f);
    let (dir, x, w) = (fid("share"), fid("share/a"), fid("share/c"));
    for (from, to) in [
        ("share/a", "share/b"),
        ("share/c", "share/b"),
        ("share/b", "share/a"),
    ] {
        std::fs::rename(disk.join(from), disk.join(to)).unwrap();
    }
    let (mover, other) = (4242, 4343);
    for event in [
        rename_event(mover, &dir, "a", "b", &x),
        rename_event(other, &dir, "c", "b", &w),
        rename_event(mover, &dir, "b", "a", &w),
    ] {
        assert!(reader.handle(event));
    }
    assert!(reader.quiet());
    drop(reader);
    let got: Vec<FsEvent> = rx
        .iter()
        .filter_map(|m| match m {
            Msg::Fs(e @ (FsEvent::Exchanged { .. } | FsEvent::Renamed { .. }), _) => Some(e),
            _ => None,
        })
        .collect();
    let p = |s: &str| disk.join(s);
    let renamed = |from: &str, to: &str, object: &Fid| FsEvent::Renamed {
        from: p(from),
        to: p(to),
        object: Some(object.clone()),
    };
    assert_eq!(
        got,
        [
            renamed("share/a", "share/b", &x),
            renamed("share/c", "share/b", &w),
            renamed("share/b", "share/a", &w),
        ],
        "{got:#?}"
    );
}
