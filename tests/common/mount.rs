//! Small loop-mounted filesystems, for tests that need a disk of their own (to
//! fill it, or to freeze it). Mounting needs root and a kernel that allows loop
//! devices; where either is missing the test is skipped with a message.

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct LoopMount {
    /// Kept for its Drop, which removes the image and the mount point.
    _dir: tempfile::TempDir,
    pub path: PathBuf,
    frozen: bool,
}

impl LoopMount {
    /// A fresh `fstype` filesystem of `megabytes`, or None (with a message saying
    /// why the test is skipped) where this machine cannot mount one.
    pub fn new(fstype: &str, megabytes: u64) -> Option<Self> {
        if !rustix::process::geteuid().is_root() {
            eprintln!("SKIPPED: mounting a test filesystem needs root");
            return None;
        }
        let dir = tempfile::Builder::new()
            .prefix("undelete-mount-")
            .tempdir()
            .expect("create a temporary folder");
        let image = dir.path().join("disk.img");
        let path = dir.path().join("mnt");
        std::fs::create_dir(&path).expect("create the mount point");
        std::fs::File::create(&image)
            .and_then(|f| f.set_len(megabytes << 20))
            .expect("create the disk image");
        let made = run(Command::new(format!("mkfs.{fstype}")).arg("-q").arg(&image));
        if let Err(why) = made.and_then(|()| {
            run(Command::new("mount")
                .args(["-o", "loop"])
                .arg(&image)
                .arg(&path))
        }) {
            eprintln!("SKIPPED: cannot mount a {fstype} test filesystem here: {why}");
            return None;
        }
        Some(Self {
            _dir: dir,
            path,
            frozen: false,
        })
    }

    pub fn join(&self, relative: impl AsRef<Path>) -> PathBuf {
        self.path.join(relative)
    }

    /// Freezes the filesystem: every write to it waits until `thaw`.
    pub fn freeze(&mut self) {
        run(Command::new("fsfreeze").arg("-f").arg(&self.path)).expect("freeze");
        self.frozen = true;
    }

    pub fn thaw(&mut self) {
        run(Command::new("fsfreeze").arg("-u").arg(&self.path)).expect("thaw");
        self.frozen = false;
    }
}

impl Drop for LoopMount {
    fn drop(&mut self) {
        // A frozen filesystem would hang the unmount (and every later writer).
        if self.frozen {
            let _ = run(Command::new("fsfreeze").arg("-u").arg(&self.path));
        }
        let _ = run(Command::new("umount").arg(&self.path));
    }
}

fn run(cmd: &mut Command) -> Result<(), String> {
    match cmd.output() {
        Ok(out) if out.status.success() => Ok(()),
        Ok(out) => Err(String::from_utf8_lossy(&out.stderr).trim().to_owned()),
        Err(e) => Err(format!("{:?}: {e}", cmd.get_program())),
    }
}
