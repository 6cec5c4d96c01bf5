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
    /// A loop-mounted XFS.
    fn new(root: &Path) -> Result<Self, String> {
        Self::made_by(root, CLONING[0])
    }

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

#[test]
fn big_files_on_xfs_are_cloned_not_copied_and_stay_as_captured() {
    let mut env = TestEnv::new();
    let xfs = match CloneMount::new(&env.root) {
        Ok(xfs) => xfs,
        Err(why) => {
            eprintln!("skipped: cannot mount a loop XFS here ({why})");
            return;
        }
    };
    env.share = xfs.dir.join("share");
    env.vault = xfs.dir.join("vault");
    fs::create_dir(&env.share).unwrap();
    let photo = content(7, BIG);
    env.write("photos/IMG_0001.CR2", &photo);

    let before = xfs.used();
    env.start_daemon_and_sync(&[]);
    let grown = xfs.used() - before;
    assert!(
        env.object_path(&photo).is_file(),
        "the photo is not in the vault"
    );
    assert!(
        grown < (BIG / 4) as u64,
        "capturing a {} MiB file took {} MiB more on XFS: it was copied, not cloned",
        BIG >> 20,
        grown >> 20
    );

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
        let mut env = TestEnv::new();
        let disk = match CloneMount::made_by(&env.root, mkfs) {
            Ok(disk) => disk,
            Err(why) => {
                eprintln!("skipped for {}: cannot mount it here ({why})", mkfs.0);
                continue;
            }
        };
        env.share = disk.dir.join("share");
        env.vault = disk.dir.join("vault");
        fs::create_dir(&env.share).unwrap();
        let (whole, damaged) = (content(1, BIG), content(2, BIG));
        env.write("videos/whole.mp4", &whole);
        env.write("videos/damaged.mp4", &damaged);
        env.start_daemon_and_sync(&[]);
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
        let grown = disk.used() - before;
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
        assert!(
            grown < (BIG / 4) as u64,
            "{}: restoring {} MiB took {} MiB more: it was copied, not cloned",
            mkfs.0,
            BIG >> 20,
            grown >> 20
        );
    }
}
