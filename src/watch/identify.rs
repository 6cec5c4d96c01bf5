//! Who an event's process is: its name, command line and user, read from `/proc`,
//! and for Samba's `smbd` the Samba user and the PC it serves, from `smbstatus
//! --json`. Each process is read once and remembered while it lives.
//!
//! A pid alone can name the wrong process: by the time the daemon reads an event,
//! the process may have ended and its pid gone to another one. So `/proc/<pid>` is
//! opened first and then the pidfd the source gave is asked whether its process
//! still has that pid (its `fdinfo`): while a process lives, nobody else has its
//! pid, so the folder opened is that very process. A process that had ended is
//! named by its pid only, never by what `/proc` says of a newer one. Processes
//! are remembered by the pidfd's inode (pidfs gives each process its own, never
//! reused), not by pid, for the same reason.
//!
//! Asked on the way from the event source to the daemon's loop (`forward`), as
//! soon as the source hands an event on: a short `rm` may have ended by the time
//! the loop reaches its events (after a commit, say), and once it is reaped even
//! its pidfd says nothing of it but its exit code. The event then goes on with the
//! person and without its pidfd, so a long queue holds no descriptor per event.
//!
//! `smbstatus` is a program of its own, asked once per `smbd` process, with the
//! settings file that smbd was started with (so each server's sessions are
//! asked of the right one), and given `SMBSTATUS_TIMEOUT` at most: the events
//! behind it wait for it. It never changes anything.

use std::collections::HashMap;
use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::event::{Actor, Msg};
use crate::model::{Person, Via};

/// The longest the loop waits for `smbstatus`.
const SMBSTATUS_TIMEOUT: Duration = Duration::from_secs(3);
/// A command line longer than this is cut (an `rm` of thousands of names).
const COMMAND_AT_MOST: usize = 200;
/// How many processes are remembered before the ended ones are forgotten.
const REMEMBERED: usize = 1024;
/// How soon an smbd whose session smbstatus did not name is asked about again: the
/// session may not be known yet, or smbstatus was slow. A session that has ended is
/// gone from smbstatus: a PC that deletes and disconnects at once (a script, not
/// Explorer) is "someone over the file share".
const SESSION_RETRY: Duration = Duration::from_secs(1);
/// The kernel's flag for its own threads (`PF_KTHREAD`, in `/proc/<pid>/stat`).
const PF_KTHREAD: u64 = 0x0020_0000;

/// A channel to hand the source's messages to, which passes them on to `to` in
/// the same order, having read who each new process is into `identities` (the
/// loop then finds it there). Where no thread can be started, `to` itself: the
/// loop asks then.
pub fn forward(to: Sender<Msg>, identities: Arc<Mutex<Identities>>) -> Sender<Msg> {
    let (tx, rx) = mpsc::channel::<Msg>();
    let passed_to = to.clone();
    let started = std::thread::Builder::new()
        .name("identify".into())
        .spawn(move || {
            let to = passed_to;
            for mut msg in rx {
                if let Msg::Fs(event, Some(actor)) = &mut msg {
                    let mut identities = identities.lock().unwrap_or_else(PoisonError::into_inner);
                    if identities.concerns(event) {
                        let person = identities.person(actor);
                        // Let go of the pidfd here, not when the loop reaches the event.
                        actor.identified(person);
                    }
                }
                if to.send(msg).is_err() {
                    break;
                }
            }
        });
    match started {
        Ok(_) => tx,
        Err(e) => {
            tracing::warn!("cannot start the thread that names who made changes: {e}");
            to
        }
    }
}

/// The processes met so far, by their pidfd's inode, with the pidfd that pins each
/// and, for an smbd whose session is not known yet, when to ask again.
#[derive(Default)]
pub struct Identities {
    /// The protected folders: only processes that change something in them are
    /// asked about on the way (smbd writes its own state files on the same
    /// filesystem, and smbstatus would be asked about those for nothing).
    roots: Vec<PathBuf>,
    known: HashMap<u64, Known>,
    /// The last process met with each pid (by its pidfd's inode), for the events a
    /// source could give no pidfd for (see `person`).
    by_pid: HashMap<i32, u64>,
}

struct Known {
    pidfd: Arc<OwnedFd>,
    person: Arc<Person>,
    ask_again: Option<Instant>,
}

impl Identities {
    /// The protected folders are now these.
    pub fn protecting(&mut self, roots: Vec<PathBuf>) {
        self.roots = roots;
    }

    /// Whether `event` touches a protected folder (or may: kinds not known here).
    fn concerns(&self, event: &super::event::FsEvent) -> bool {
        use super::event::FsEvent;
        let inside = |p: &Path| self.roots.iter().any(|r| p.starts_with(r));
        match event {
            FsEvent::Changed { path, .. }
            | FsEvent::Writing { path, .. }
            | FsEvent::Closed { path, .. }
            | FsEvent::Removed { path, .. }
            | FsEvent::MovedOut { path } => inside(path),
            FsEvent::Renamed { from, to, .. } => inside(from) || inside(to),
            FsEvent::Rescan | FsEvent::WatchLimit { .. } | FsEvent::Error { .. } => false,
            #[allow(unreachable_patterns)]
            _ => true,
        }
    }

    /// Who `actor` is. Never fails: what cannot be read is left out, and a process
    /// that had ended is named by its pid.
    ///
    /// The kernel gives no pidfd for an event read after its process ended (a short
    /// `rm`, read late on a busy server). Such an event is that of the process met
    /// last with its pid, if that one has ended too: the pid could only have gone
    /// to another process that also ended in between, after the kernel went round
    /// all its pids. Otherwise it is named by its pid.
    pub fn person(&mut self, actor: &Actor) -> Arc<Person> {
        if let Some(person) = &actor.person {
            return Arc::clone(person);
        }
        let Some(pidfd) = &actor.pidfd else {
            let earlier = self
                .by_pid
                .get(&actor.pid)
                .and_then(|key| self.known.get(key))
                .filter(|k| pidfd_pid(&k.pidfd).is_none());
            return match earlier {
                Some(known) => Arc::clone(&known.person),
                None => Arc::new(ended(actor.pid)),
            };
        };
        let key = rustix::fs::fstat(pidfd.as_fd()).map(|st| st.st_ino).ok();
        let known = key.and_then(|key| self.known.get(&key));
        if let Some(known) = known
            && known.ask_again.is_none_or(|at| Instant::now() < at)
        {
            return Arc::clone(&known.person);
        }
        let person = read_process(actor.pid, pidfd);
        if person.via == Via::Ended {
            // Whatever was read of it before it ended still holds.
            return match known {
                Some(known) => Arc::clone(&known.person),
                None => Arc::new(person),
            };
        }
        let person = Arc::new(person);
        if let Some(key) = key {
            if self.known.len() >= REMEMBERED {
                self.known.retain(|_, k| pidfd_pid(&k.pidfd).is_some());
                let known = &self.known;
                self.by_pid.retain(|_, key| known.contains_key(key));
            }
            self.by_pid.insert(actor.pid, key);
            let unknown_session = person.via == Via::FileShare && person.user.is_none();
            self.known.insert(
                key,
                Known {
                    pidfd: Arc::clone(pidfd),
                    person: Arc::clone(&person),
                    ask_again: unknown_session.then(|| Instant::now() + SESSION_RETRY),
                },
            );
        }
        person
    }
}

fn ended(pid: i32) -> Person {
    Person {
        via: Via::Ended,
        user: None,
        process: None,
        pid,
        command: None,
        machine: None,
        address: None,
    }
}

/// The pid the pidfd's process has now; None once it has ended and been reaped.
fn pidfd_pid(pidfd: &OwnedFd) -> Option<i32> {
    let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", pidfd.as_raw_fd())).ok()?;
    let pid: i32 = info
        .lines()
        .find_map(|l| l.strip_prefix("Pid:"))?
        .trim()
        .parse()
        .ok()?;
    (pid > 0).then_some(pid)
}

/// What `/proc` says of the process `pidfd` pins, which had `pid` when the event came.
fn read_process(pid: i32, pidfd: &OwnedFd) -> Person {
    let Ok(proc_dir) = std::fs::File::open(format!("/proc/{pid}")) else {
        return ended(pid);
    };
    // Opened first, asked second: if the pidfd's process still has this pid, the
    // folder opened cannot belong to a newer process.
    if pidfd_pid(pidfd) != Some(pid) {
        return ended(pid);
    }
    let dir = OwnedFd::from(proc_dir);
    let Some(stat) = read_at(&dir, "stat") else {
        return ended(pid);
    };
    let stat = Stat::parse(&stat);
    let process = read_at(&dir, "comm").map(|c| String::from_utf8_lossy(&c).trim_end().to_owned());
    if stat.as_ref().is_some_and(|s| s.flags & PF_KTHREAD != 0) {
        return Person {
            via: Via::KernelServer,
            user: None,
            process,
            pid,
            command: None,
            machine: None,
            address: None,
        };
    }
    let args = read_at(&dir, "cmdline")
        .map(|c| arguments(&c))
        .unwrap_or_default();
    let exe = rustix::fs::readlinkat(&dir, "exe", Vec::new())
        .ok()
        .map(|p| PathBuf::from(p.to_string_lossy().into_owned()));
    let is_smbd = exe
        .as_deref()
        .and_then(Path::file_name)
        .is_some_and(|n| n == "smbd")
        || process
            .as_deref()
            .is_some_and(|p| p == "smbd" || p.starts_with("smbd["));
    let mut person = Person {
        via: Via::Local,
        user: unix_user(&dir),
        process,
        pid,
        command: (!args.is_empty()).then(|| command_line(&args)),
        machine: None,
        address: None,
    };
    if is_smbd {
        person.via = Via::FileShare;
        // smbd runs as root between requests: its Unix user says nothing of who.
        person.user = None;
        let parent_args = stat
            .as_ref()
            .and_then(|s| std::fs::read(format!("/proc/{}/cmdline", s.ppid)).ok())
            .map(|c| arguments(&c))
            .unwrap_or_default();
        let settings = settings_file(&args).or_else(|| settings_file(&parent_args));
        if let Some(session) = smb_session(pid, settings.as_deref(), exe.as_deref()) {
            person.user = session.user;
            person.machine = session.machine;
            person.address = session.address;
        }
    }
    person
}

/// The fields of `/proc/<pid>/stat` read here.
struct Stat {
    ppid: i32,
    flags: u64,
}

impl Stat {
    fn parse(stat: &[u8]) -> Option<Self> {
        let text = String::from_utf8_lossy(stat);
        // The name, in parentheses, may hold spaces and parentheses itself.
        let rest = &text[text.rfind(')')? + 1..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // After the name: state, ppid, pgrp, session, tty_nr, tpgid, flags.
        Some(Self {
            ppid: fields.get(1)?.parse().ok()?,
            flags: fields.get(6)?.parse().ok()?,
        })
    }
}

fn read_at(dir: &OwnedFd, name: &str) -> Option<Vec<u8>> {
    use rustix::fs::{Mode, OFlags};
    let fd = rustix::fs::openat(dir, name, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty()).ok()?;
    let mut out = Vec::new();
    std::fs::File::from(fd).read_to_end(&mut out).ok()?;
    Some(out)
}

fn arguments(cmdline: &[u8]) -> Vec<String> {
    cmdline
        .split(|&b| b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect()
}

/// The command line as one line, cut at `COMMAND_AT_MOST` characters.
fn command_line(args: &[String]) -> String {
    let line = args.join(" ");
    match line.char_indices().nth(COMMAND_AT_MOST) {
        Some((at, _)) => format!("{}…", &line[..at]),
        None => line,
    }
}

/// The name of the real user of the process (the one who ran it, also for a
/// setuid program), or "uid N" without a name.
fn unix_user(dir: &OwnedFd) -> Option<String> {
    let status = read_at(dir, "status")?;
    let status = String::from_utf8_lossy(&status);
    let uid: u32 = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(crate::accounts::user_called(uid).unwrap_or_else(|| format!("uid {uid}")))
}

/// The settings file smbd was started with (`--configfile F`, `--configfile=F`, `-s F`).
fn settings_file(args: &[String]) -> Option<PathBuf> {
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        if let Some(file) = arg.strip_prefix("--configfile=") {
            return Some(file.into());
        }
        if arg == "--configfile" || arg == "-s" {
            return args.next().map(PathBuf::from);
        }
        if let Some(file) = arg.strip_prefix("-s").filter(|f| !f.is_empty()) {
            return Some(file.into());
        }
    }
    None
}

/// What Samba knows of the session an smbd process serves.
#[derive(Debug, Default, PartialEq, Eq)]
struct Session {
    user: Option<String>,
    machine: Option<String>,
    address: Option<String>,
}

/// Asks `smbstatus` (beside smbd, or on the PATH) for the session of smbd `pid`.
fn smb_session(pid: i32, settings: Option<&Path>, smbd: Option<&Path>) -> Option<Session> {
    let beside = smbd
        .and_then(Path::parent)
        .and_then(Path::parent)
        .map(|prefix| prefix.join("bin/smbstatus"))
        .filter(|p| p.exists());
    let mut command = Command::new(beside.unwrap_or_else(|| "smbstatus".into()));
    command.args(["--json", "--brief"]);
    if let Some(settings) = settings {
        command.arg("--configfile").arg(settings);
    }
    let out = run_bounded(command, SMBSTATUS_TIMEOUT)?;
    session_of(&out, pid)
}

/// Runs `command` for its output, killed after `timeout`.
fn run_bounded(mut command: Command, timeout: Duration) -> Option<Vec<u8>> {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| tracing::debug!("cannot run smbstatus: {e}"))
        .ok()?;
    let mut stdout = child.stdout.take()?;
    // Read on a thread of its own: a full pipe would otherwise hold the child.
    let reader = std::thread::spawn(move || {
        let mut out = Vec::new();
        let _ = stdout.read_to_end(&mut out);
        out
    });
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => break,
            Ok(Some(_)) | Err(_) => return None,
            Ok(None) if Instant::now() >= deadline => {
                tracing::warn!(
                    "smbstatus did not answer within {} s: who deleted over the file share is not known",
                    timeout.as_secs()
                );
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
    reader.join().ok()
}

/// The session served by smbd `pid` in `smbstatus --json`'s answer.
fn session_of(json: &[u8], pid: i32) -> Option<Session> {
    let all: serde_json::Value = serde_json::from_slice(json).ok()?;
    let sessions = all.get("sessions")?.as_object()?;
    let pid = pid.to_string();
    let session = sessions.values().find(|s| {
        let server_pid = &s["server_id"]["pid"];
        server_pid.as_str() == Some(pid.as_str())
            || server_pid.as_i64().map(|p| p.to_string()).as_deref() == Some(pid.as_str())
    })?;
    let text = |key: &str| {
        session[key]
            .as_str()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    // "ipv4:192.168.1.23:50112", "ipv6:[fe80::1]:50112" or "ipv6:fe80::1:50112".
    let address = text("hostname").map(|h| {
        let h = h
            .strip_prefix("ipv4:")
            .or_else(|| h.strip_prefix("ipv6:"))
            .unwrap_or(&h)
            .to_owned();
        let h = match h.rsplit_once(':') {
            Some((host, port)) if port.chars().all(|c| c.is_ascii_digit()) && !port.is_empty() => {
                host.to_owned()
            }
            _ => h,
        };
        h.trim_start_matches('[').trim_end_matches(']').to_owned()
    });
    // Over port 445 a PC gives no name, and Samba puts its address there instead.
    // NetBIOS names are capitals on the wire (and in Windows); Samba lowers them.
    let machine = text("remote_machine")
        .filter(|m| Some(m) != address.as_ref())
        .map(|m| m.to_uppercase());
    Some(Session {
        user: text("username"),
        machine,
        address,
    })
}

#[cfg(test)]
mod tests;
