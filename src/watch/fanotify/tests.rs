//! The wrapper against the kernel itself, on a loop-mounted filesystem of its own.

use super::*;
use crate::watch::test_disk::TestDisk;

fn group(disk: &TestDisk, unlimited_queue: bool, pidfds: bool) -> Group {
    let g = Group::init(Options {
        unlimited_queue,
        pidfds,
    })
    .expect("fanotify_init as root");
    let root = std::fs::File::open(&disk.path).unwrap();
    g.mark_filesystem(root.as_fd(), CHANGES).unwrap();
    g
}

fn read_all(g: &Group) -> Vec<Event> {
    let mut buf = vec![0u8; READ_BUFFER];
    let mut all = Vec::new();
    loop {
        let events = g.read(&mut buf).unwrap();
        if events.is_empty() {
            return all;
        }
        all.extend(events);
    }
}

fn events(disk: &TestDisk, unlimited_queue: bool, act: impl FnOnce()) -> Vec<Event> {
    let g = group(disk, unlimited_queue, true);
    act();
    read_all(&g)
}

/// As `events`, without a pidfd in each: 17,000 events would hold 17,000
/// descriptors, past the test process's limit, and fail the tests beside it.
fn many_events(disk: &TestDisk, unlimited_queue: bool, act: impl FnOnce()) -> Vec<Event> {
    let g = group(disk, unlimited_queue, false);
    act();
    read_all(&g)
}

fn fid(path: &Path) -> Fid {
    let f = std::fs::File::open(path).unwrap();
    fid_of(f.as_fd()).unwrap()
}

#[test]
fn an_entry_is_its_folders_handle_and_a_name_with_the_pid_and_a_pidfd() {
    let Some(disk) = TestDisk::new("fanotify entries") else {
        return;
    };
    std::fs::create_dir(disk.join("d")).unwrap();
    let dir = fid(&disk.join("d"));
    let got = events(&disk, true, || {
        std::fs::write(disk.join("d/f"), b"content").unwrap();
    });
    let file = fid(&disk.join("d/f"));
    assert_eq!(got.len(), 1, "create, write and close merged: {got:?}");
    let e = &got[0];
    assert!(
        e.is(FAN_CREATE) && e.is(FAN_MODIFY) && e.is(FAN_CLOSE_WRITE),
        "{e:?}"
    );
    let entry = e.entry.as_ref().unwrap();
    assert_eq!(entry.dir, dir);
    assert_eq!(entry.name, "f");
    assert_eq!(e.object.as_ref(), Some(&file), "the file's own handle");
    assert_eq!(e.pid, std::process::id() as i32);
    let pidfd = e.pidfd.as_ref().expect("a pidfd");
    let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", pidfd.as_raw_fd())).unwrap();
    assert!(
        info.lines()
            .any(|l| l == format!("Pid:\t{}", std::process::id())),
        "{info}"
    );
}

#[test]
fn a_rename_is_one_event_with_both_names() {
    let Some(disk) = TestDisk::new("fanotify rename") else {
        return;
    };
    std::fs::create_dir(disk.join("a")).unwrap();
    std::fs::create_dir(disk.join("b")).unwrap();
    std::fs::write(disk.join("a/f"), b"x").unwrap();
    let (a, b, f) = (
        fid(&disk.join("a")),
        fid(&disk.join("b")),
        fid(&disk.join("a/f")),
    );
    let got = events(&disk, true, || {
        std::fs::rename(disk.join("a/f"), disk.join("b/g")).unwrap();
    });
    let renames: Vec<&Event> = got.iter().filter(|e| e.is(FAN_RENAME)).collect();
    assert_eq!(renames.len(), 1, "{got:?}");
    let r = renames[0];
    let (old, new) = (r.old.as_ref().unwrap(), r.new.as_ref().unwrap());
    assert_eq!((&old.dir, old.name.as_os_str()), (&a, "f".as_ref()));
    assert_eq!((&new.dir, new.name.as_os_str()), (&b, "g".as_ref()));
    assert_eq!(r.object.as_ref(), Some(&f));
}

#[test]
fn a_folder_told_to_be_quiet_queues_nothing_and_its_neighbours_everything() {
    let Some(disk) = TestDisk::new("fanotify ignore") else {
        return;
    };
    for d in ["quiet", "loud"] {
        std::fs::create_dir(disk.join(d)).unwrap();
    }
    std::fs::write(disk.join("quiet/kept"), b"old").unwrap();
    let g = group(&disk, true, false);
    let quiet = std::fs::File::open(disk.join("quiet")).unwrap();
    g.ignore_folder(quiet.as_fd()).unwrap();
    for d in ["quiet", "loud"] {
        std::fs::write(disk.join(d).join("new"), b"new").unwrap();
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(disk.join(d).join("new"))
            .unwrap();
        std::io::Write::write_all(&mut f, b" and more").unwrap();
        drop(f);
        std::fs::rename(disk.join(d).join("new"), disk.join(d).join("renamed")).unwrap();
        std::fs::create_dir(disk.join(d).join("sub")).unwrap();
        std::fs::remove_file(disk.join(d).join("renamed")).unwrap();
    }
    std::fs::write(disk.join("quiet/kept"), b"rewritten").unwrap();
    let dirs: Vec<Fid> = read_all(&g)
        .iter()
        .flat_map(|e| [&e.entry, &e.old, &e.new])
        .flatten()
        .map(|entry| entry.dir.clone())
        .collect();
    let (quiet, loud) = (fid(&disk.join("quiet")), fid(&disk.join("loud")));
    assert!(
        !dirs.contains(&quiet),
        "the quiet folder's events were queued"
    );
    // create+write+close, the rename, the folder made, the file removed
    assert!(
        dirs.iter().filter(|d| **d == loud).count() >= 4,
        "{} events in its neighbour",
        dirs.iter().filter(|d| **d == loud).count()
    );
}

#[test]
fn a_folder_deleted_since_no_longer_opens_by_its_handle() {
    let Some(disk) = TestDisk::new("fanotify stale handle") else {
        return;
    };
    std::fs::create_dir(disk.join("gone")).unwrap();
    let gone = fid(&disk.join("gone"));
    let mount = std::fs::File::open(&disk.path).unwrap();
    let held = open_fid(mount.as_fd(), &gone, libc::O_PATH).unwrap();
    assert_eq!(path_of(held.as_fd()).unwrap(), disk.join("gone"));
    drop(held);
    std::fs::remove_dir(disk.join("gone")).unwrap();
    let err = open_fid(mount.as_fd(), &gone, libc::O_PATH).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::ESTALE), "{err}");
}

#[test]
fn a_full_queue_reports_one_overflow_and_an_unlimited_one_none() {
    let Some(disk) = TestDisk::new("fanotify overflow") else {
        return;
    };
    std::fs::create_dir(disk.join("d")).unwrap();
    // More than the 16,384 events the default queue holds: each name its own event.
    let make = |prefix: &str| {
        for i in 0..17_000 {
            std::fs::File::create(disk.join(format!("d/{prefix}{i}"))).unwrap();
        }
    };
    let limited = many_events(&disk, false, || make("a"));
    let overflows = limited.iter().filter(|e| e.is(FAN_Q_OVERFLOW)).count();
    assert_eq!(overflows, 1, "{} events", limited.len());
    let unlimited = many_events(&disk, true, || make("b"));
    assert!(!unlimited.iter().any(|e| e.is(FAN_Q_OVERFLOW)));
    let made = unlimited
        .iter()
        .filter(|e| e.is(FAN_CREATE))
        .filter(|e| {
            e.entry
                .as_ref()
                .is_some_and(|n| n.name.as_bytes()[0] == b'b')
        })
        .count();
    assert_eq!(made, 17_000, "every creation, none lost");
}
