//! For tests: a small ext4 filesystem of its own, made on a file and loop-mounted,
//! so a whole-filesystem mark sees only what the test does. Unmounted and removed
//! when dropped. `None`, after printing why, where the kernel or the rights refuse.

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct TestDisk {
    pub path: PathBuf,
    _dir: tempfile::TempDir,
}

impl TestDisk {
    pub fn new(test: &str) -> Option<Self> {
        if !rustix::process::geteuid().is_root() {
            eprintln!("SKIPPED {test}: a loop-mounted filesystem needs root");
            return None;
        }
        let dir = tempfile::Builder::new()
            .prefix("undelete-fs-")
            .tempdir()
            .ok()?;
        let image = dir.path().join("disk.img");
        let path = dir.path().join("mnt");
        std::fs::create_dir(&path).ok()?;
        std::fs::File::create(&image)
            .and_then(|f| f.set_len(64 << 20))
            .ok()?;
        let run = |cmd: &mut Command| match cmd.output() {
            Ok(out) if out.status.success() => Ok(()),
            Ok(out) => Err(String::from_utf8_lossy(&out.stderr).trim().to_owned()),
            Err(e) => Err(e.to_string()),
        };
        if let Err(e) = run(Command::new("mkfs.ext4")
            .args(["-q", "-F", "-N", "65536"])
            .arg(&image))
        {
            eprintln!("SKIPPED {test}: mkfs.ext4 failed: {e}");
            return None;
        }
        if let Err(e) = run(Command::new("mount")
            .args(["-o", "loop"])
            .arg(&image)
            .arg(&path))
        {
            eprintln!("SKIPPED {test}: the kernel refused a loop mount: {e}");
            return None;
        }
        Some(Self { path, _dir: dir })
    }

    pub fn join(&self, relative: impl AsRef<Path>) -> PathBuf {
        self.path.join(relative)
    }
}

impl Drop for TestDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).output();
    }
}
