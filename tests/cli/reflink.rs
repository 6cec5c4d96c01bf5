//! Reflinks: on a filesystem that shares blocks (XFS and btrfs here, on
//! loop-mounted images), the vault clones big files instead of copying them, and
//! a restore clones them back, with the hash still checked.
//!
//! Needs root and loop devices; where either is missing the test says it was
//! skipped and why, and passes.

use std::fs;
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::*;

/// Bigger than the vault's 1 MiB buffer: only such files are cloned.
const BIG: usize = 32 << 20;

/// A loop-mounted XFS or btrfs image, unmounted (lazily, in case a daemon still
/// holds it) on drop.
struct CloneMount {
    dir: PathBuf,
    image: PathBuf,
}

/// The filesystems that share blocks, and how to make each.
const CLONING: [(&str, &[&str]); 2] = [
    ("mkfs.xfs", &["-q", "-m", "reflink=1"]),
    ("mkfs.btrfs", &["-q"]),
];

impl CloneMount {
    /// `Err`, with the reason, where this machine cannot mount one.
    fn made_by(root: &Path, (mkfs, args): (&str, &[&str])) -> Result<Self, String> {
        let image = root.join(format!("{mkfs}.img"));
        let dir = root.join(mkfs);
        fs::create_dir(&dir).map_err(|e| e.to_string())?;
        let file = fs::File::create(&image).map_err(|e| e.to_string())?;
        // Sparse: the image only takes what is written to it.
        file.set_len(512 << 20).map_err(|e| e.to_string())?;
        run(mkfs, args, &image)?;
        let mount = Command::new("mount")
            .args(["-o", "loop"])
            .arg(&image)
            .arg(&dir)
            .output()
            .map_err(|e| format!("mount: {e}"))?;
        if !mount.status.success() {
            return Err(format!(
                "mount -o loop failed: {}",
                String::from_utf8_lossy(&mount.stderr).trim()
            ));
        }
        Ok(Self { dir, image })
    }

    /// Bytes in use on the filesystem, after everything written is on disk.
    fn used(&self) -> u64 {
        let dir = fs::File::open(&self.dir).expect("open the mount");
        rustix::fs::syncfs(&dir).expect("syncfs");
        let st = rustix::fs::fstatvfs(&dir).expect("statvfs");
        (st.f_blocks - st.f_bfree) * st.f_frsize
    }
}

impl Drop for CloneMount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
        let _ = fs::remove_file(&self.image);
    }
}

fn run(program: &str, args: &[&str], path: &Path) -> Result<(), String> {
    let out = Command::new(program)
        .args(args)
        .arg(path)
        .output()
        .map_err(|e| format!("{program}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{program} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// That writing a `BIG` file (`doing` it: "XFS: capturing") grew the disk by a
/// quarter of its size at most: its blocks were shared, not copied.
/// `grown` is taken with `saturating_sub`: the filesystem may free blocks of its
/// own meanwhile (preallocation, a removed file), and a disk that shrank copied
/// nothing.
fn assert_cloned(grown: u64, doing: &str) {
    assert!(
        grown < (BIG / 4) as u64,
        "{doing} {} MiB took {} MiB more: it was copied, not cloned",
        BIG >> 20,
        grown >> 20
    );
}

/// A test's folders with share and vault on a filesystem made by `mkfs`, loop-mounted;
/// `None`, said as skipped, where this machine cannot mount one.
fn env_on_disk(mkfs: (&str, &[&str])) -> Option<(TestEnv, CloneMount)> {
    let mut env = TestEnv::new();
    let disk = match CloneMount::made_by(&env.root, mkfs) {
        Ok(disk) => disk,
        Err(why) => {
            eprintln!("skipped for {}: cannot mount it here ({why})", mkfs.0);
            return None;
        }
    };
    env.share = disk.dir.join("share");
    env.vault = disk.dir.join("vault");
    fs::create_dir(&env.share).unwrap();
    Some((env, disk))
}

#[test]
fn big_files_on_xfs_are_cloned_not_copied_and_stay_as_captured() {
    let Some((mut env, xfs)) = env_on_disk(CLONING[0]) else {
        return;
    };
    let photo = content(7, BIG);
    env.write("photos/IMG_0001.CR2", &photo);

    let before = xfs.used();
    env.start_daemon(&[]);
    // Captured as a clone at once, named by its hash in the background.
    env.run_ok(&["sync", "--hashed", "--timeout", "120"]);
    let grown = xfs.used().saturating_sub(before);
    assert!(
        env.object_path(&photo).is_file(),
        "the photo is not in the vault"
    );
    assert_cloned(grown, "XFS: capturing");

    // Changing the original in place must not change the clone: its blocks are
    // copied on write, so the vault keeps what was captured.
    let mut file = fs::OpenOptions::new()
        .write(true)
        .open(env.path("photos/IMG_0001.CR2"))
        .unwrap();
    file.seek(SeekFrom::Start(0)).unwrap();
    file.write_all(b"overwritten in place").unwrap();
    drop(file);
    env.sync();
    assert_eq!(
        fs::read(env.object_path(&photo)).unwrap(),
        photo,
        "the vault's copy changed with the original"
    );
    env.run_ok(&["verify"]);
    env.stop_daemon();
}

#[test]
fn a_restore_by_clone_is_hash_checked_and_a_damaged_vault_copy_is_never_restored() {
    for mkfs in CLONING {
        let Some((mut env, disk)) = env_on_disk(mkfs) else {
            continue;
        };
        let (whole, damaged) = (content(1, BIG), content(2, BIG));
        env.write("videos/whole.mp4", &whole);
        env.write("videos/damaged.mp4", &damaged);
        env.start_daemon(&[]);
        env.run_ok(&["sync", "--hashed", "--timeout", "120"]);
        env.remove_and_sync(&["videos"]);
        env.stop_daemon();
        // One byte of the vault's copy changes on disk: cloned back as it is, the
        // restored file would be wrong.
        let object = fs::OpenOptions::new()
            .write(true)
            .open(env.object_path(&damaged))
            .unwrap();
        object.write_all_at(b"X", (BIG / 2) as u64).unwrap();
        drop(object);

        let before = disk.used();
        let (success, report, output) = restore_json(&env, &["--all-deleted"]);
        let grown = disk.used().saturating_sub(before);
        assert!(!success, "{}: {output}", mkfs.0);
        assert_eq!(report["recovered"], 1, "{}: {report}", mkfs.0);
        let files = report["files"].as_array().unwrap();
        let bad = files
            .iter()
            .find(|f| f["path"].as_str().unwrap().ends_with("damaged.mp4"))
            .unwrap();
        assert_eq!(bad["outcome"], "lost", "{}: {bad}", mkfs.0);
        assert_eq!(bad["reason_code"], "damaged", "{}: {bad}", mkfs.0);
        assert!(
            !env.path("videos/damaged.mp4").exists(),
            "{}: a damaged copy was put in place",
            mkfs.0
        );
        assert_eq!(restore_temp_files(&env.share), Vec::<PathBuf>::new());
        assert!(
            fs::read(env.path("videos/whole.mp4")).unwrap() == whole,
            "{}: the restored file differs",
            mkfs.0
        );
        assert_cloned(grown, &format!("{}: restoring", mkfs.0));
    }
}

/// The copies waiting in the vault's `staged/` to be hashed, with their sizes.
fn staged(env: &TestEnv) -> Vec<(PathBuf, u64)> {
    let mut out: Vec<(PathBuf, u64)> = match fs::read_dir(env.vault.join("staged")) {
        Ok(entries) => entries
            .flatten()
            .map(|e| (e.path(), e.metadata().unwrap().len()))
            .collect(),
        Err(_) => Vec::new(),
    };
    out.sort();
    out
}

/// The one staged copy of `size` bytes.
fn staged_of_size(env: &TestEnv, size: usize) -> PathBuf {
    let found: Vec<PathBuf> = staged(env)
        .into_iter()
        .filter(|(_, len)| *len == size as u64)
        .map(|(path, _)| path)
        .collect();
    assert_eq!(found.len(), 1, "staged: {:?}", staged(env));
    found.into_iter().next().unwrap()
}

/// Each filesystem that shares blocks, loop-mounted, with share and vault on it.
fn on_each_cloning_disk(test: impl Fn(&mut TestEnv, &CloneMount, &str)) {
    for mkfs in CLONING {
        if let Some((mut env, disk)) = env_on_disk(mkfs) {
            test(&mut env, &disk, mkfs.0);
        }
    }
}

#[test]
fn a_clone_is_the_capture_and_stays_as_captured_when_the_original_is_rewritten_in_place() {
    on_each_cloning_disk(|env, disk, fs_name| {
        env.hold_hashing = true;
        let photo = content(11, BIG);
        env.write("photos/IMG_0002.CR2", &photo);
        let before = disk.used();
        env.start_daemon_and_sync(&[]);
        let grown = disk.used().saturating_sub(before);
        // Recorded at once as the clone, not read: no object named by its hash yet.
        let copy = staged_of_size(env, BIG);
        assert!(
            !env.object_path(&photo).exists(),
            "{fs_name}: hashed although hashing is held"
        );
        assert_cloned(grown, &format!("{fs_name}: capturing"));

        // Every byte of the original rewritten in place, its times put back: the
        // clone's blocks are copied on write, so the vault keeps what was captured.
        let original = env.path("photos/IMG_0002.CR2");
        let times = fs::metadata(&original).unwrap().modified().unwrap();
        let other = content(12, BIG);
        let file = fs::OpenOptions::new().write(true).open(&original).unwrap();
        file.write_all_at(&other, 0).unwrap();
        file.set_modified(times).unwrap();
        drop(file);
        env.sync();
        assert!(
            fs::read(&copy).unwrap() == photo,
            "{fs_name}: the staged copy changed with the original"
        );
        let versions = env.run_ok(&["versions", original.to_str().unwrap(), "--json"]);
        let versions: serde_json::Value = serde_json::from_str(&versions).unwrap();
        let versions = versions.as_array().expect("a list of versions");
        assert_eq!(versions.len(), 2, "{fs_name}: {versions:?}");
        let first = versions
            .iter()
            .find(|v| v["current"] == false)
            .expect("the version before the rewrite");

        // Brought back beside the rewritten file, hashed on the way out.
        let seen = first["seen_at"].as_str().unwrap();
        let (success, report, output) =
            restore_json(env, &[original.to_str().unwrap(), "--as-of", seen]);
        assert!(success, "{fs_name}: {output}");
        assert_eq!(report["recovered"], 1, "{fs_name}: {report}");
        let to = report["files"][0]["restored_to"].as_str().unwrap();
        assert_ne!(
            Path::new(to),
            original,
            "{fs_name}: put over the rewritten file"
        );
        assert!(
            fs::read(to).unwrap() == photo,
            "{fs_name}: the restored file differs from what was captured"
        );
        assert!(fs::read(&original).unwrap() == other);
        // The restore told the service what it found: the copy has its real name now,
        // and the staged one is gone once the restore is over.
        env.sync();
        assert!(
            fs::read(env.object_path(&photo)).unwrap() == photo,
            "{fs_name}: the restore's hash was not recorded"
        );
        assert!(!copy.exists(), "{fs_name}: the staged copy is still there");
        env.stop_daemon();
        let verified = env.run_ok(&["verify"]);
        assert!(
            verified.contains("intact") && verified.contains("not hashed yet"),
            "{fs_name}: {verified}"
        );
    });
}

#[test]
fn staged_clones_left_by_a_kill_are_all_hashed_at_the_next_start_and_none_is_lost() {
    on_each_cloning_disk(|env, _disk, fs_name| {
        env.hold_hashing = true;
        let files: Vec<(String, Vec<u8>)> = (0..4)
            .map(|n| {
                (
                    format!("videos/clip{n}.mp4"),
                    content(20 + n, BIG + n * 4096),
                )
            })
            .collect();
        for (path, bytes) in &files {
            env.write(path, bytes);
        }
        // The same content as clip0 under another name: hashed, it is stored once.
        env.write("videos/copy of clip0.mp4", &files[0].1);
        env.start_daemon_and_sync(&[]);
        assert_eq!(staged(env).len(), 5, "{fs_name}: {:?}", staged(env));
        env.kill_daemon();
        // A clone named in the vault whose version was never committed (killed in
        // between): nothing points at it, so it must go.
        let orphan = env.vault.join("staged").join(format!(
            "{}{}",
            "00737461676564000000000000001000", "00000000000000010000000000abcdef"
        ));
        fs::write(&orphan, vec![0u8; 4096]).unwrap();

        env.hold_hashing = false;
        env.start_daemon(&[]);
        env.run_ok(&["sync", "--hashed", "--timeout", "120"]);
        assert_eq!(staged(env), Vec::new(), "{fs_name}: not all hashed");
        for (path, bytes) in &files {
            assert!(
                fs::read(env.object_path(bytes)).unwrap() == *bytes,
                "{fs_name}: {path} has no intact copy named by its hash"
            );
        }
        let verified = env.run_ok(&["verify", "--json"]);
        let verified: serde_json::Value = serde_json::from_str(&verified).unwrap();
        assert_eq!(verified["objects_checked"], 4, "{fs_name}: {verified}");
        assert_eq!(verified["not_hashed_yet"], 0, "{fs_name}: {verified}");
        assert_eq!(verified["unrecorded_objects"], 0, "{fs_name}: {verified}");
        assert_eq!(verified["totals_match"], true, "{fs_name}: {verified}");

        // Every file comes back whole.
        env.remove_and_sync(&["videos"]);
        env.stop_daemon();
        // The hashes are journaled: an index rebuilt from the journal has them too.
        env.run_ok(&["rebuild-index"]);
        let verified = env.run_ok(&["verify"]);
        assert!(verified.contains("All 4 copies"), "{fs_name}: {verified}");
        let (success, report, output) = restore_json(env, &["--all-deleted"]);
        assert!(success, "{fs_name}: {output}");
        assert_eq!(report["recovered"], 5, "{fs_name}: {report}");
        for (path, bytes) in &files {
            assert!(
                fs::read(env.path(path)).unwrap() == *bytes,
                "{fs_name}: {path}"
            );
        }
    });
}

#[test]
fn a_staged_copy_damaged_before_it_was_hashed_is_caught_and_never_restored_as_recovered() {
    on_each_cloning_disk(|env, _disk, fs_name| {
        env.hold_hashing = true;
        let (whole, written, cut) = (
            content(31, BIG),
            content(32, BIG + 4096),
            content(33, BIG + 8192),
        );
        env.write("scans/whole.pdf", &whole);
        env.write("scans/written.pdf", &written);
        env.write("scans/cut.pdf", &cut);
        env.start_daemon_and_sync(&[]);
        env.remove_and_sync(&["scans"]);
        env.stop_daemon();

        // One byte changed in place; and a copy cut short with its time put back.
        let copy = staged_of_size(env, BIG + 4096);
        let file = fs::OpenOptions::new().write(true).open(&copy).unwrap();
        file.write_all_at(b"X", (BIG / 2) as u64).unwrap();
        drop(file);
        let copy = staged_of_size(env, BIG + 8192);
        let times = fs::metadata(&copy).unwrap().modified().unwrap();
        let file = fs::OpenOptions::new().write(true).open(&copy).unwrap();
        file.set_len(BIG as u64).unwrap();
        file.set_modified(times).unwrap();
        drop(file);

        let verify = env.run(&["verify"]);
        assert!(
            !verify.status.success(),
            "{fs_name}: verify found nothing wrong"
        );
        let said = String::from_utf8_lossy(&verify.stdout);
        assert!(
            said.contains("written.pdf") && said.contains("cut.pdf") && !said.contains("whole.pdf"),
            "{fs_name}: {said}"
        );

        let (success, report, output) = restore_json(env, &["--all-deleted"]);
        assert!(!success, "{fs_name}: {output}");
        assert_eq!(report["recovered"], 1, "{fs_name}: {report}");
        for name in ["written.pdf", "cut.pdf"] {
            let file = report["files"]
                .as_array()
                .unwrap()
                .iter()
                .find(|f| f["path"].as_str().unwrap().ends_with(name))
                .unwrap();
            assert_eq!(file["outcome"], "lost", "{fs_name}: {file}");
            assert_eq!(file["reason_code"], "damaged", "{fs_name}: {file}");
            assert!(
                !env.path(format!("scans/{name}")).exists(),
                "{fs_name}: a damaged copy of {name} was put in place"
            );
        }
        assert_eq!(restore_temp_files(&env.share), Vec::<PathBuf>::new());
        assert!(fs::read(env.path("scans/whole.pdf")).unwrap() == whole);
        // The damaged ones were never given a hash: nothing wrong is named as right.
        assert!(!env.object_path(&written).exists() && !env.object_path(&cut).exists());
        assert_eq!(staged(env).len(), 2, "{fs_name}: {:?}", staged(env));
    });
}

#[test]
fn identical_content_in_place_counts_as_already_present_before_the_copy_is_hashed() {
    on_each_cloning_disk(|env, _disk, fs_name| {
        env.hold_hashing = true;
        let report = content(41, BIG);
        env.write("accounts/2026.xlsx", &report);
        env.start_daemon_and_sync(&[]);
        env.remove_and_sync(&["accounts/2026.xlsx"]);
        env.stop_daemon();
        assert_eq!(staged(env).len(), 1, "{fs_name}");
        // Copied back by hand, byte for byte, before anyone restored it.
        env.write("accounts/2026.xlsx", &report);

        let (success, json, output) = restore_json(env, &["--all-deleted"]);
        assert!(success, "{fs_name}: {output}");
        assert_eq!(json["already_present"], 1, "{fs_name}: {json}");
        assert_eq!(json["recovered"], 0, "{fs_name}: {json}");
        let names: Vec<_> = fs::read_dir(env.path("accounts"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            names.len(),
            1,
            "{fs_name}: a second copy beside it: {names:?}"
        );
    });
}

#[test]
fn a_file_the_mount_listed_before_its_clone_was_hashed_still_opens_after() {
    on_each_cloning_disk(|env, _disk, fs_name| {
        env.hold_hashing = true;
        let scan = content(51, BIG);
        env.write("scans/contract.pdf", &scan);
        env.start_daemon_and_sync(&[]);
        crate::common::mount::next_second();
        env.remove_and_sync(&["scans/contract.pdf"]);
        let copy = staged_of_size(env, BIG);
        let Some(mount) = crate::common::mount::Mount::start(env, fs_name) else {
            return;
        };
        // Looked at while the copy is still staged: the kernel and the mount now
        // know each file by the staged copy.
        let point = mount.points().into_iter().next().expect("a point in time");
        let files = [
            mount.at(&point, &env.path("scans/contract.pdf")),
            mount.at("deleted", &env.path("scans/contract.pdf")),
        ];
        for file in &files {
            assert_eq!(
                fs::metadata(file).unwrap().len(),
                BIG as u64,
                "{fs_name}: {}",
                file.display()
            );
        }

        // Hashed meanwhile: the staged name goes once the index points at the copy's
        // real name.
        env.stop_daemon();
        env.hold_hashing = false;
        env.start_daemon(&[]);
        env.run_ok(&["sync", "--hashed", "--timeout", "120"]);
        assert!(!copy.exists(), "{fs_name}: the staged copy is still there");

        for file in &files {
            let read = fs::read(file);
            assert!(
                read.as_ref().is_ok_and(|bytes| *bytes == scan),
                "{fs_name}: {} listed, then {:?}\n{}",
                file.display(),
                read.map(|b| b.len()),
                mount.log()
            );
        }
        env.stop_daemon();
    });
}
