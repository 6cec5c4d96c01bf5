//! The test environment: a temporary folder with a `share/` to protect and a
//! `vault/` beside it, the real `undelete` binary started on them, and helpers
//! to run commands and read their JSON.
//!
//! Tests wait for the daemon only with `undelete sync` (or, right after a
//! start, for its control socket to answer): never with a sleep.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub mod lan;
pub mod mount;
pub mod pty;
pub mod ransomware;
pub mod samba;
pub mod smtp;

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_undelete");

/// How long a daemon may take from spawn to answering on its socket.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a daemon may take to stop after SIGTERM.
const STOP_TIMEOUT: Duration = Duration::from_secs(60);
/// Polling interval for the few conditions tests wait on.
const POLL: Duration = Duration::from_millis(10);

pub struct TestEnv {
    /// Kept for its Drop, which removes everything.
    _dir: tempfile::TempDir,
    /// The canonical temporary folder (the daemon records canonical paths).
    pub root: PathBuf,
    /// The protected folder.
    pub share: PathBuf,
    /// The vault, beside the share, never inside it.
    pub vault: PathBuf,
    daemon: Option<Child>,
    /// Every daemon log written so far, one per start.
    logs: Vec<PathBuf>,
    /// A soft limit on open files to start the daemon with, as a service manager may.
    pub daemon_open_files: Option<u64>,
    /// A hard limit on open files too (the soft one the same), which the daemon
    /// cannot raise: to show that something does not hold a descriptor each.
    pub daemon_open_files_at_most: Option<u64>,
    /// Starts the daemon in a user namespace of its own with this limit on inotify
    /// watches, so a test can lower and raise the limit without touching the
    /// machine's (which every other test and program shares).
    pub daemon_watch_limit: Option<u64>,
    /// Starts the daemon with `UNDELETE_HOLD_HASHING=1`: cloned copies stay staged.
    pub hold_hashing: bool,
    /// Starts the daemon with only these capabilities (by number) left in its
    /// bounding set, as the service unit's `CapabilityBoundingSet=` leaves it.
    pub daemon_capabilities: Option<Vec<u32>>,
}

impl TestEnv {
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("undelete-test-")
            .tempdir()
            .expect("create a temporary folder");
        let root = fs::canonicalize(dir.path()).expect("canonical temporary folder");
        let share = root.join("share");
        fs::create_dir(&share).expect("create share/");
        let vault = root.join("vault");
        Self {
            _dir: dir,
            root,
            share,
            vault,
            daemon: None,
            logs: Vec::new(),
            daemon_open_files: None,
            daemon_open_files_at_most: None,
            daemon_watch_limit: None,
            hold_hashing: false,
            daemon_capabilities: None,
        }
    }

    /// A command for the binary with this environment's vault (see `bare_command`).
    pub fn command(&self) -> Command {
        let mut cmd = bare_command();
        cmd.arg("--vault").arg(&self.vault);
        cmd
    }

    /// Starts `undelete daemon --protect share/` plus `extra` and waits until its
    /// control socket answers. Panics (with the log) if it exits instead.
    pub fn start_daemon(&mut self, extra: &[&str]) {
        self.spawn_daemon(extra);
        self.wait_until_listening();
    }

    /// Starts the daemon as `start_daemon` does and waits until it has recorded
    /// everything already in the share: the start of most tests.
    pub fn start_daemon_and_sync(&mut self, extra: &[&str]) {
        self.start_daemon(extra);
        self.sync();
    }

    /// Deletes each of `relatives` from the share (a folder with all it holds) and
    /// waits until the daemon has recorded it: "then someone deleted them".
    pub fn remove_and_sync<P: AsRef<Path>>(&self, relatives: &[P]) {
        for relative in relatives {
            let path = self.path(relative);
            let is_dir = fs::symlink_metadata(&path)
                .unwrap_or_else(|e| panic!("{} to delete: {e}", path.display()))
                .is_dir();
            match is_dir {
                true => fs::remove_dir_all(&path),
                false => fs::remove_file(&path),
            }
            .unwrap_or_else(|e| panic!("delete {}: {e}", path.display()));
        }
        self.sync();
    }

    /// Starts `undelete daemon ARGS…` (protecting what they or a config file say).
    pub fn start_daemon_with(&mut self, args: &[&str]) {
        self.spawn_daemon_with(args);
        self.wait_until_listening();
    }

    /// Starts the daemon as `start_daemon` does, without waiting for it to listen:
    /// for what a command run at once meets.
    pub fn spawn_daemon(&mut self, extra: &[&str]) {
        let share = self
            .share
            .to_str()
            .expect("a UTF-8 temporary path")
            .to_owned();
        let mut args = vec!["--protect", &share];
        args.extend_from_slice(extra);
        self.spawn_daemon_with(&args);
    }

    fn spawn_daemon_with(&mut self, args: &[&str]) {
        assert!(self.daemon.is_none(), "a daemon is already running");
        let log = self
            .root
            .join(format!("daemon-{}.log", self.logs.len() + 1));
        let stderr = File::create(&log).expect("create the daemon log");
        self.logs.push(log);
        let mut command = self.command();
        command.arg("daemon");
        // The event source every daemon of the run uses (`.ci/run` runs the suites
        // of every event kind under both); a test that chose one keeps its own, and
        // one in a user namespace of its own cannot have fanotify (auto says so).
        let chosen = args.iter().any(|a| a.starts_with("--events"));
        if let Some(events) = test_events()
            && !chosen
            && self.daemon_watch_limit.is_none()
        {
            command.arg("--events").arg(events);
        }
        command.args(args).stdout(Stdio::null()).stderr(stderr);
        if self.hold_hashing {
            command.env("UNDELETE_HOLD_HASHING", "1");
        }
        let at_most = self.daemon_open_files_at_most;
        if let Some(soft) = self.daemon_open_files.or(at_most) {
            use rustix::process::{Resource, getrlimit, setrlimit};
            use std::os::unix::process::CommandExt;
            // SAFETY: only system calls between fork and exec, no allocation.
            unsafe {
                command.pre_exec(move || {
                    let mut limit = getrlimit(Resource::Nofile);
                    limit.current = Some(soft);
                    if at_most.is_some() {
                        limit.maximum = at_most;
                    }
                    setrlimit(Resource::Nofile, limit).map_err(std::io::Error::from)
                });
            }
        }
        if let Some(kept) = self.daemon_capabilities.clone() {
            use std::os::unix::process::CommandExt;
            // SAFETY: only system calls between fork and exec, no allocation.
            unsafe {
                command.pre_exec(move || {
                    // Root keeps, across exec, exactly what its bounding set holds.
                    for cap in 0..64u32 {
                        if !kept.contains(&cap)
                            && libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0)
                                != 0
                        {
                            let e = std::io::Error::last_os_error();
                            // Past the last capability this kernel knows.
                            if e.raw_os_error() == Some(libc::EINVAL) {
                                break;
                            }
                            return Err(e);
                        }
                    }
                    Ok(())
                });
            }
        }
        if let Some(limit) = self.daemon_watch_limit {
            use std::os::unix::process::CommandExt;
            // Formatted before the fork: nothing may allocate between fork and exec.
            let uid_map = format!("0 {} 1", rustix::process::geteuid().as_raw());
            let gid_map = format!("0 {} 1", rustix::process::getegid().as_raw());
            let limit = format!("{limit}\n");
            // SAFETY: only system calls between fork and exec, no allocation.
            unsafe {
                command.pre_exec(move || {
                    if libc::unshare(libc::CLONE_NEWUSER) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    write_proc(c"/proc/self/setgroups", b"deny")?;
                    write_proc(c"/proc/self/uid_map", uid_map.as_bytes())?;
                    write_proc(c"/proc/self/gid_map", gid_map.as_bytes())?;
                    write_proc(c"/proc/sys/user/max_inotify_watches", limit.as_bytes())
                });
            }
        }
        let child = command.spawn().expect("spawn the daemon");
        self.daemon = Some(child);
    }

    /// Waits (bounded) until the daemon we spawned answers PING on the vault's socket.
    /// A leftover socket file from a killed daemon does not count: the answer must
    /// carry our child's pid.
    fn wait_until_listening(&mut self) {
        let socket = self.socket();
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let child = self.daemon.as_mut().expect("a daemon was spawned");
            let pid = child.id();
            if let Some(status) = child.try_wait().expect("poll the daemon") {
                self.daemon = None;
                panic!(
                    "the daemon exited during start-up with {status}\n{}",
                    self.daemon_log()
                );
            }
            if socket.exists() && ping(&socket) == Some(pid) {
                return;
            }
            if Instant::now() >= deadline {
                panic!(
                    "the daemon did not listen on {} within {START_TIMEOUT:?}\n{}",
                    socket.display(),
                    self.daemon_log()
                );
            }
            std::thread::sleep(POLL);
        }
    }

    /// Sets the watch limit of the daemon's user namespace (see `daemon_watch_limit`).
    pub fn set_daemon_watch_limit(&self, limit: u64) {
        let out = Command::new("nsenter")
            .args([
                "--user",
                "--target",
                &self.daemon_pid().to_string(),
                "sh",
                "-c",
            ])
            .arg(format!("echo {limit} > /proc/sys/user/max_inotify_watches"))
            .output()
            .expect("run nsenter");
        assert!(
            out.status.success(),
            "set the watch limit: {}",
            output_text(&out)
        );
    }

    /// The running daemon's process id.
    pub fn daemon_pid(&self) -> u32 {
        self.daemon.as_ref().expect("a daemon is running").id()
    }

    pub fn socket(&self) -> PathBuf {
        self.vault.join("daemon.sock")
    }

    /// Sends SIGTERM and waits (bounded) for the daemon to exit; returns its status.
    pub fn stop_daemon(&mut self) -> ExitStatus {
        self.signal(rustix::process::Signal::TERM);
        let mut child = self.daemon.take().expect("a daemon is running");
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            if let Some(status) = child.try_wait().expect("poll the daemon") {
                return status;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "the daemon did not stop within {STOP_TIMEOUT:?} of SIGTERM\n{}",
                    self.daemon_log()
                );
            }
            std::thread::sleep(POLL);
        }
    }

    /// SIGSTOP: every thread of the daemon stops, including the one reading inotify,
    /// so the kernel's queue fills up (and overflows) as if the daemon were very busy.
    /// Returns once every thread has stopped: the signal is only sent by `kill`, and
    /// a thread still running a moment later would read events meant to wait.
    pub fn pause_daemon(&self) {
        self.signal(rustix::process::Signal::STOP);
        let tasks = format!("/proc/{}/task", self.daemon_pid());
        let stopped = || {
            fs::read_dir(&tasks)
                .expect("the daemon's threads")
                .all(|task| {
                    let stat = fs::read_to_string(task.expect("a thread").path().join("stat"))
                        .unwrap_or_default();
                    // The state follows the command name in parentheses.
                    stat.rsplit_once(')')
                        .is_none_or(|(_, rest)| rest.trim_start().starts_with('T'))
                })
        };
        while !stopped() {
            std::thread::sleep(POLL);
        }
    }

    /// SIGHUP: read the settings again.
    pub fn reload_daemon(&self) {
        self.signal(rustix::process::Signal::HUP);
    }

    /// SIGCONT after `pause_daemon`.
    pub fn resume_daemon(&self) {
        self.signal(rustix::process::Signal::CONT);
    }

    fn signal(&self, signal: rustix::process::Signal) {
        let child = self.daemon.as_ref().expect("a daemon is running");
        rustix::process::kill_process(rustix::process::Pid::from_child(child), signal)
            .unwrap_or_else(|e| panic!("send {signal:?}: {e}"));
    }

    /// SIGKILL, as a crash or `kill -9` would.
    pub fn kill_daemon(&mut self) {
        let mut child = self.daemon.take().expect("a daemon is running");
        child.kill().expect("send SIGKILL");
        child.wait().expect("reap the daemon");
    }

    /// Runs `undelete --vault VAULT ARGS…`.
    pub fn run(&self, args: &[&str]) -> Output {
        self.command().args(args).output().expect("run undelete")
    }

    /// Runs a command that must succeed; returns its stdout.
    pub fn run_ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "undelete {args:?} failed with {}\nstdout:\n{}\nstderr:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        String::from_utf8(out.stdout).expect("stdout is UTF-8")
    }

    /// `undelete sync --timeout 120`, which must succeed.
    pub fn sync(&self) {
        self.run_ok(&["sync", "--timeout", "120"]);
    }

    /// `undelete list --json ARGS…`, parsed.
    pub fn list_json(&self, args: &[&str]) -> Vec<Value> {
        let mut all = vec!["list", "--json"];
        all.extend_from_slice(args);
        let stdout = self.run_ok(&all);
        match serde_json::from_str(&stdout) {
            Ok(Value::Array(rows)) => rows,
            other => panic!("list --json did not print an array: {other:?}\n{stdout}"),
        }
    }

    /// `list --json ARGS…` as a map from `path` to the entry; a path listed twice fails.
    pub fn list_by_path(&self, args: &[&str]) -> HashMap<String, Value> {
        let mut map = HashMap::new();
        for row in self.list_json(args) {
            let path = row["path"]
                .as_str()
                .unwrap_or_else(|| panic!("entry without a path: {row}"))
                .to_owned();
            if let Some(before) = map.insert(path.clone(), row.clone()) {
                panic!("{path} is listed twice:\n{before}\n{row}");
            }
        }
        map
    }

    /// `undelete incidents --json`, parsed: newest first.
    pub fn incidents_json(&self) -> Vec<Value> {
        let stdout = self.run_ok(&["incidents", "--json"]);
        match serde_json::from_str(&stdout) {
            Ok(Value::Array(rows)) => rows,
            other => panic!("incidents --json did not print an array: {other:?}\n{stdout}"),
        }
    }

    /// `undelete status --json`, parsed; it exits 0 when protection is on, 3 when off.
    pub fn status_json(&self) -> Value {
        let out = self.run(&["status", "--json"]);
        assert!(
            matches!(out.status.code(), Some(0 | 3)),
            "status --json failed: {}",
            output_text(&out)
        );
        let stdout = String::from_utf8(out.stdout).expect("stdout is UTF-8");
        serde_json::from_str(&stdout)
            .unwrap_or_else(|e| panic!("status --json is not JSON ({e}):\n{stdout}"))
    }

    /// Where the vault keeps `content`: `objects/<2 hex>/<62 hex>` of its BLAKE3 hash.
    pub fn object_path(&self, content: &[u8]) -> PathBuf {
        let hex = blake3::hash(content).to_hex();
        self.vault
            .join("objects")
            .join(&hex.as_str()[..2])
            .join(&hex.as_str()[2..])
    }

    /// How many objects the vault holds.
    pub fn object_count(&self) -> usize {
        let Ok(dirs) = fs::read_dir(self.vault.join("objects")) else {
            return 0;
        };
        dirs.flatten()
            .filter_map(|d| fs::read_dir(d.path()).ok())
            .map(|files| files.count())
            .sum()
    }

    /// A path in the share, given relative to it.
    pub fn path(&self, relative: impl AsRef<Path>) -> PathBuf {
        self.share.join(relative)
    }

    /// The JSON `path` of a share-relative path that is valid UTF-8.
    pub fn json_path(&self, relative: impl AsRef<Path>) -> String {
        self.path(relative)
            .to_str()
            .expect("a UTF-8 path")
            .to_owned()
    }

    /// Writes `content` to a share-relative path, creating parent folders.
    pub fn write(&self, relative: impl AsRef<Path>, content: impl AsRef<[u8]>) -> PathBuf {
        let path = self.path(relative);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).expect("create parent folders");
        }
        fs::write(&path, content).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        path
    }

    /// Every daemon log so far, for failure messages.
    pub fn daemon_log(&self) -> String {
        let mut out = String::new();
        for log in &self.logs {
            let text = fs::read(log).unwrap_or_default();
            let text = String::from_utf8_lossy(&text);
            let lines: Vec<&str> = text.lines().collect();
            // A big test can log a lot; the end is what explains a failure.
            let skip = lines.len().saturating_sub(300);
            out.push_str(&format!(
                "----- {} ({} lines{}) -----\n",
                log.display(),
                lines.len(),
                if skip > 0 { ", last 300 shown" } else { "" }
            ));
            for line in &lines[skip..] {
                out.push_str(line);
                out.push('\n');
            }
        }
        out
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        if let Some(mut child) = self.daemon.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!("{}", self.daemon_log());
        }
    }
}

/// A share whose `files` the daemon captured and then saw deleted; it still runs.
pub fn captured_then_deleted<P: AsRef<Path>, C: AsRef<[u8]>>(files: &[(P, C)]) -> TestEnv {
    let mut env = TestEnv::new();
    for (relative, content) in files {
        env.write(relative, content);
    }
    env.start_daemon_and_sync(&[]);
    let relatives: Vec<&Path> = files
        .iter()
        .map(|(relative, _)| relative.as_ref())
        .collect();
    env.remove_and_sync(&relatives);
    env
}

/// A command for the binary with no vault given, isolated from the caller's
/// environment and from a system config file (/etc/undelete/config.toml, read
/// by default as root), which could add exclude rules or a size limit.
pub fn bare_command() -> Command {
    let mut cmd = Command::new(BIN);
    cmd.env_remove("UNDELETE_VAULT")
        .env("UNDELETE_CONFIG", "/dev/null")
        .stdin(Stdio::null());
    cmd
}

/// Whether the daemon sees changes with fanotify, as `status --json` says; says
/// why a test stops when not (inotify never says who made a change, nor from
/// which PC).
pub fn fanotify_in_use(env: &TestEnv, test: &str) -> bool {
    let status = env.status_json();
    let source = status["event_source"]["source"].as_str().map(str::to_owned);
    if source.as_deref() == Some("fanotify") {
        return true;
    }
    eprintln!(
        "SKIPPED {test}: the daemon does not watch with fanotify here ({}), and inotify \
         never says who made a change, nor from which PC",
        source.unwrap_or_else(|| "status names no event source".into())
    );
    false
}

/// The event source asked for by `UNDELETE_TEST_EVENTS` (inotify or fanotify);
/// `None` lets the daemon choose (as root: fanotify).
pub fn test_events() -> Option<String> {
    std::env::var("UNDELETE_TEST_EVENTS")
        .ok()
        .filter(|e| !e.is_empty() && e != "auto")
}

/// Writes `data` to a file of /proc, between fork and exec (no allocation).
fn write_proc(path: &std::ffi::CStr, data: &[u8]) -> std::io::Result<()> {
    // SAFETY: a NUL-terminated path and a buffer of the given length.
    unsafe {
        let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let written = libc::write(fd, data.as_ptr().cast(), data.len());
        libc::close(fd);
        if written != data.len() as isize {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Whether a process may have a user namespace of its own here (`daemon_watch_limit`).
pub fn user_namespaces_work() -> bool {
    Command::new("unshare")
        .args(["--user", "--map-root-user", "sh", "-c"])
        .arg("echo 5 > /proc/sys/user/max_inotify_watches")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Sends PING on the control socket; returns the pid that answered.
fn ping(socket: &Path) -> Option<u32> {
    let mut stream = UnixStream::connect(socket).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    stream.write_all(b"PING\n").ok()?;
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).ok()?;
    line.trim().strip_prefix("OK ")?.parse().ok()
}

/// This machine's name, as the program reads it for its e-mails.
pub fn host_name() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_default()
}

/// The hex spelling of a path's bytes, as in JSON `path_bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn path_hex(path: &Path) -> String {
    hex(path.as_os_str().as_bytes())
}

/// The text of a command's stdout and stderr, for assertions and messages.
pub fn output_text(out: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Deterministic, distinct content of `len` bytes for file number `n`.
pub fn content(n: usize, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    let mut state = (n as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    while out.len() < len {
        // xorshift: cheap, and no two files share content.
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    let tag = format!("file {n}\n");
    let tag = &tag.as_bytes()[..tag.len().min(len)];
    out[..tag.len()].copy_from_slice(tag);
    out
}

/// A field of a list entry as a bool, failing clearly when absent.
pub fn flag(entry: &Value, field: &str) -> bool {
    entry[field]
        .as_bool()
        .unwrap_or_else(|| panic!("{field} is not a bool in {entry}"))
}

/// The entry for `path` in a `list_by_path` map, failing with the paths that are there.
pub fn entry<'a>(listed: &'a HashMap<String, Value>, path: &str) -> &'a Value {
    listed.get(path).unwrap_or_else(|| {
        let mut paths: Vec<&String> = listed.keys().collect();
        paths.sort();
        paths.truncate(50);
        panic!("{path:?} is not listed; listed (first 50): {paths:#?}")
    })
}

/// A live file whose content is kept in the vault.
pub fn assert_live_and_recoverable(entry: &Value) {
    assert!(entry["deleted_at"].is_null(), "expected live: {entry}");
    assert!(flag(entry, "recoverable"), "expected recoverable: {entry}");
    assert!(entry["reason"].is_null(), "expected no reason: {entry}");
}

/// A deleted file whose content is kept in the vault.
pub fn assert_deleted_and_recoverable(entry: &Value) {
    assert!(
        entry["deleted_at"].is_string(),
        "expected deleted_at to be set: {entry}"
    );
    assert!(flag(entry, "recoverable"), "expected recoverable: {entry}");
    assert!(entry["reason"].is_null(), "expected no reason: {entry}");
}

/// Parses an RFC 3339 time from a list entry.
pub fn time(entry: &Value, field: &str) -> chrono::DateTime<chrono::FixedOffset> {
    let text = entry[field]
        .as_str()
        .unwrap_or_else(|| panic!("{field} is not a string in {entry}"));
    chrono::DateTime::parse_from_rfc3339(text)
        .unwrap_or_else(|e| panic!("{field} {text:?} is not RFC 3339 ({e}) in {entry}"))
}

// --- Fault tests: counts, seeds, small disks ----------------------------------

/// A count for long tests: `default` in CI, more by setting `var`
/// (e.g. `UNDELETE_TEST_ITERATIONS=50`, `UNDELETE_TEST_FILES=100000`).
pub fn count_from_env(var: &str, default: usize) -> usize {
    match std::env::var(var) {
        Ok(text) => text
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{var}={text:?} is not a number")),
        Err(_) => default,
    }
}

/// A small seeded random generator (splitmix64), so a failing run can be repeated.
pub struct Rng(u64);

impl Rng {
    /// Seeded from `UNDELETE_TEST_SEED` when set, else from the clock; the seed is
    /// printed, and tests put it in their failure messages.
    pub fn from_env_or_clock(test: &str) -> (Self, u64) {
        let seed = match std::env::var("UNDELETE_TEST_SEED") {
            Ok(text) => text
                .trim()
                .parse()
                .unwrap_or_else(|_| panic!("UNDELETE_TEST_SEED={text:?} is not a number")),
            Err(_) => std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1),
        };
        eprintln!("{test}: seed {seed} (repeat with UNDELETE_TEST_SEED={seed})");
        (Self(seed), seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `lo..hi` (`hi` > `lo`).
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + (self.next_u64() % (hi - lo) as u64) as usize
    }
}

/// Whether this process runs as root (loop mounts, other owners, device nodes).
pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// A small ext4 file system on a loop device, mounted for one test and unmounted
/// (and its image removed) when dropped.
pub struct LoopDisk {
    /// The mount point.
    pub path: PathBuf,
    _dir: tempfile::TempDir,
    frozen: bool,
}

impl LoopDisk {
    /// Makes and mounts a `megabytes` MB ext4 file system. `None`, after printing why,
    /// where that is not possible (not root, no mkfs.ext4, mounting not allowed): the
    /// caller skips its test.
    pub fn new(test: &str, megabytes: u64) -> Option<Self> {
        if !is_root() {
            eprintln!("SKIPPED {test}: loop mounts need root");
            return None;
        }
        let dir = tempfile::Builder::new()
            .prefix("undelete-disk-")
            .tempdir()
            .expect("create a temporary folder");
        let image = dir.path().join("disk.img");
        let path = dir.path().join("mnt");
        fs::create_dir(&path).expect("create the mount point");
        File::create(&image)
            .and_then(|f| f.set_len(megabytes << 20))
            .expect("create the disk image");
        // -m 0: no blocks reserved for root, so "full" means full for the daemon too.
        let made = Command::new("mkfs.ext4")
            .args(["-q", "-F", "-m", "0"])
            .arg(&image)
            .output();
        match made {
            Ok(out) if out.status.success() => {}
            Ok(out) => {
                eprintln!("SKIPPED {test}: mkfs.ext4 failed: {}", output_text(&out));
                return None;
            }
            Err(e) => {
                eprintln!("SKIPPED {test}: cannot run mkfs.ext4 ({e}); install e2fsprogs");
                return None;
            }
        }
        let mounted = Command::new("mount")
            .args(["-o", "loop"])
            .arg(&image)
            .arg(&path)
            .output()
            .expect("run mount");
        if !mounted.status.success() {
            eprintln!(
                "SKIPPED {test}: mounting a loop device is not allowed here: {}",
                String::from_utf8_lossy(&mounted.stderr).trim()
            );
            return None;
        }
        Some(Self {
            path,
            _dir: dir,
            frozen: false,
        })
    }

    pub fn join(&self, relative: impl AsRef<Path>) -> PathBuf {
        self.path.join(relative)
    }

    /// Freezes the file system (fsfreeze): every write to it waits until `thaw`.
    pub fn freeze(&mut self) {
        self.fsfreeze("-f");
        self.frozen = true;
    }

    pub fn thaw(&mut self) {
        self.fsfreeze("-u");
        self.frozen = false;
    }

    fn fsfreeze(&self, how: &str) {
        let out = Command::new("fsfreeze")
            .arg(how)
            .arg(&self.path)
            .output()
            .expect("run fsfreeze");
        assert!(
            out.status.success(),
            "fsfreeze {how}: {}",
            output_text(&out)
        );
    }

    /// Mounts it again read-only, as the kernel does to an ext4 disk with errors.
    pub fn remount_read_only(&self) {
        let out = Command::new("mount")
            .args(["-o", "remount,ro"])
            .arg(&self.path)
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "remount read-only: {}",
            output_text(&out)
        );
    }

    /// Bytes free for writing on this file system.
    pub fn free(&self) -> u64 {
        free_space(&self.path)
    }

    /// Fills the disk with `name` until only about `leave` bytes are free.
    pub fn fill_leaving(&self, name: &str, leave: u64) -> PathBuf {
        let filler = self.path.join(name);
        let size = self.free().saturating_sub(leave);
        let mut file = File::create(&filler).expect("create the filler");
        // Written, not truncated: a sparse file would take no space.
        let block = vec![0x5au8; 64 * 1024];
        let mut written = 0u64;
        while written < size {
            let n = (size - written).min(block.len() as u64) as usize;
            file.write_all(&block[..n]).expect("write the filler");
            written += n as u64;
        }
        file.sync_all().expect("flush the filler");
        filler
    }
}

impl Drop for LoopDisk {
    fn drop(&mut self) {
        // A frozen file system would hang the unmount, and every later writer.
        if self.frozen {
            self.fsfreeze("-u");
        }
        let ok = Command::new("umount")
            .arg(&self.path)
            .output()
            .is_ok_and(|o| o.status.success());
        if !ok {
            // Something still has a file open there (a test failed midway): detach lazily.
            let _ = Command::new("umount").arg("-l").arg(&self.path).output();
        }
    }
}

/// Bytes free for writing on the file system holding `path`.
pub fn free_space(path: &Path) -> u64 {
    let st = rustix::fs::statvfs(path).expect("statvfs");
    st.f_bavail * st.f_frsize
}

/// Runs `restore ARGS… --json`; returns whether it exited 0, the parsed report, and
/// the whole output for messages.
pub fn restore_json(env: &TestEnv, args: &[&str]) -> (bool, Value, String) {
    let mut all = vec!["restore"];
    all.extend_from_slice(args);
    all.push("--json");
    let out = env.run(&all);
    let report = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("restore --json is not JSON ({e}):\n{}", output_text(&out)));
    (out.status.success(), report, output_text(&out))
}

/// What a tree holds, by path relative to its top: kind and content (a link's
/// target), mode, owner. Names are compared as bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub kind: &'static str,
    pub data: Vec<u8>,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

/// Empty when `dir` does not exist.
pub fn tree(dir: &Path) -> std::collections::BTreeMap<PathBuf, Node> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let mut out = std::collections::BTreeMap::new();
    if !dir.exists() {
        return out;
    }
    for entry in walkdir::WalkDir::new(dir).min_depth(1) {
        let entry = entry.unwrap_or_else(|e| panic!("walk {}: {e}", dir.display()));
        let meta = entry.path().symlink_metadata().expect("stat");
        let ft = meta.file_type();
        let (kind, data) = if ft.is_file() {
            let data = fs::read(entry.path())
                .unwrap_or_else(|e| panic!("read {}: {e}", entry.path().display()));
            ("file", data)
        } else if ft.is_symlink() {
            let target = fs::read_link(entry.path()).expect("readlink");
            ("symlink", target.as_os_str().as_bytes().to_vec())
        } else if ft.is_dir() {
            ("dir", Vec::new())
        } else if ft.is_fifo() {
            ("fifo", Vec::new())
        } else if ft.is_socket() {
            ("socket", Vec::new())
        } else {
            ("device", Vec::new())
        };
        let rel = entry.path().strip_prefix(dir).expect("below").to_owned();
        out.insert(
            rel,
            Node {
                kind,
                data,
                mode: meta.mode() & 0o7777,
                uid: meta.uid(),
                gid: meta.gid(),
            },
        );
    }
    out
}

/// Temporary files a restore writes before renaming, anywhere below `dir`.
pub fn restore_temp_files(dir: &Path) -> Vec<PathBuf> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .flatten()
        .filter(|e| e.file_name().as_bytes().starts_with(b".undelete-restore-"))
        .map(|e| e.path().to_owned())
        .collect()
}
