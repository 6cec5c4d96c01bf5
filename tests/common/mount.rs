//! `undelete mount` for one test: the vault of a `TestEnv` mounted on a folder of
//! its own with FUSE, stopped with SIGTERM when the test is done.
//!
//! The mount needs root (it mounts directly, and reads the root-only vault) and
//! the kernel's FUSE device; without them the test skips, saying why.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::{TestEnv, is_root};

/// How long a mount may take to appear after the command starts.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long it may take to end after SIGTERM or `umount`.
const STOP_TIMEOUT: Duration = Duration::from_secs(20);

pub struct Mount {
    child: Option<Child>,
    /// The folder the vault is mounted on.
    pub dir: PathBuf,
    log: PathBuf,
}

impl Mount {
    /// Mounts `env`'s vault on `env.root/mnt`; `None` (after saying why) where FUSE
    /// mounts cannot be made here.
    pub fn start(env: &TestEnv, test: &str) -> Option<Self> {
        if !is_root() {
            eprintln!("SKIPPED {test}: mounting needs root");
            return None;
        }
        if !Path::new("/dev/fuse").exists() {
            eprintln!("SKIPPED {test}: the kernel offers no FUSE device (/dev/fuse)");
            return None;
        }
        let dir = env.root.join("mnt");
        fs::create_dir_all(&dir).expect("create the mount point");
        Some(Self::start_on(env, &dir))
    }

    /// Mounts on `dir`, which must be a place the mount accepts.
    pub fn start_on(env: &TestEnv, dir: &Path) -> Self {
        let log = env.root.join(format!(
            "mount-{}.log",
            dir.file_name().unwrap().to_string_lossy()
        ));
        let child = env
            .command()
            .arg("mount")
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).expect("create the mount's log"))
            .spawn()
            .expect("start undelete mount");
        let mut mount = Self {
            child: Some(child),
            dir: dir.to_owned(),
            log,
        };
        let deadline = Instant::now() + START_TIMEOUT;
        while !is_mounted(dir) {
            if let Some(status) = mount.child.as_mut().unwrap().try_wait().unwrap() {
                mount.child = None;
                panic!("undelete mount exited with {status}:\n{}", mount.log());
            }
            assert!(
                Instant::now() < deadline,
                "not mounted within {START_TIMEOUT:?}:\n{}",
                mount.log()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        mount
    }

    /// What the mount wrote to its log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `path` (an absolute path of the share) inside the top-level folder `top` of the
    /// mount (`@GMT-…`, `deleted`, `incidents/CODE`).
    pub fn at(&self, top: &str, path: &Path) -> PathBuf {
        self.dir
            .join(top)
            .join(path.strip_prefix("/").expect("an absolute path"))
    }

    /// The names at the top of the mount that are points in time, as listed.
    pub fn points(&self) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(&self.dir)
            .expect("list the mount")
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.starts_with("@GMT-"))
            .collect();
        names.sort_unstable_by(|a, b| b.cmp(a));
        names
    }

    /// Sends SIGTERM and waits for the mount to end; its exit status.
    pub fn stop(&mut self) -> ExitStatus {
        let child = self.child.as_mut().expect("running");
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        self.wait()
    }

    /// Waits (bounded) for the mount's process to end.
    pub fn wait(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "the mount did not end within {STOP_TIMEOUT:?}:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if self.child.is_some() {
            if std::thread::panicking() {
                eprintln!("----- mount log -----\n{}", self.log());
            }
            self.stop();
        }
        if is_mounted(&self.dir) {
            let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
        }
    }
}

/// Whether something is mounted on `dir`, by the kernel's own table.
pub fn is_mounted(dir: &Path) -> bool {
    let wanted = dir.to_string_lossy().replace(' ', "\\040");
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .any(|line| line.split(' ').nth(4) == Some(wanted.as_str()))
}

/// Waits until the clock's second has changed: a point in time names a whole second,
/// so what a test writes must be in an earlier second than what it deletes after.
/// A wait for the clock, not for the daemon (that is `sync`'s).
pub fn next_second() {
    let second = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    };
    let start = second();
    while second() == start {
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Waits, when the current hour (UTC) ends within a minute, until the next one has
/// begun: a test that counts the points in time must not see a whole hour end in
/// the middle of it, which adds that hour's point. A wait for the clock, not for
/// the daemon.
pub fn clear_of_the_hour() {
    let into_hour = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            % 3600
    };
    while into_hour() >= 3600 - 60 {
        std::thread::sleep(Duration::from_millis(200));
    }
}
