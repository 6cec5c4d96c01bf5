//! Reflinks: on a filesystem that shares blocks (XFS here, on a loop-mounted
//! image), the vault clones big files instead of copying them.
//!
//! Needs root and loop devices; where either is missing the test says it was
//! skipped and why, and passes.

use std::fs;
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::*;

/// Bigger than the vault's 1 MiB buffer: only such files are cloned.
const BIG: usize = 32 << 20;

/// A loop-mounted XFS image, unmounted (lazily, in case a daemon still holds it) on drop.
struct XfsMount {
    dir: PathBuf,
    image: PathBuf,
}

impl XfsMount {
    /// `None`, with the reason, where this machine cannot mount one.
    fn new(root: &Path) -> Result<Self, String> {
        let image = root.join("xfs.img");
        let dir = root.join("xfs");
        fs::create_dir(&dir).map_err(|e| e.to_string())?;
        let file = fs::File::create(&image).map_err(|e| e.to_string())?;
        // Sparse: the image only takes what is written to it.
        file.set_len(512 << 20).map_err(|e| e.to_string())?;
        run("mkfs.xfs", &["-q", "-m", "reflink=1"], &image)?;
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

impl Drop for XfsMount {
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
    let xfs = match XfsMount::new(&env.root) {
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
    env.start_daemon(&[]);
    env.sync();
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
