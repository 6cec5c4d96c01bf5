use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;

use super::*;

// The tests' own Samba server, the one the command-line tests use.
#[path = "../../../tests/common/samba.rs"]
#[allow(dead_code)]
mod samba;

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

fn output_text(out: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The actor a whole-filesystem source would send for process `pid`.
fn actor(pid: i32) -> Actor {
    let pidfd = rustix::process::pidfd_open(
        rustix::process::Pid::from_raw(pid).expect("a pid"),
        rustix::process::PidfdFlags::empty(),
    )
    .expect("pidfd_open");
    Actor {
        pid,
        pidfd: Some(Arc::new(pidfd)),
        person: None,
    }
}

/// A child that lives until dropped.
struct Running(Child);

impl Running {
    fn start(command: &mut Command) -> Self {
        Self(
            command
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .spawn()
                .expect("start a child"),
        )
    }

    fn pid(&self) -> i32 {
        self.0.id() as i32
    }

    /// Waits until the child runs `program` (exec is not instant, and setpriv execs
    /// the program it is given).
    fn running(self, program: &str) -> Self {
        let deadline = Instant::now() + Duration::from_secs(10);
        let cmdline = format!("/proc/{}/cmdline", self.pid());
        while !std::fs::read(&cmdline)
            .is_ok_and(|c| c.starts_with(format!("{program}\0").as_bytes()))
        {
            assert!(Instant::now() < deadline, "the child never ran {program}");
            std::thread::sleep(Duration::from_millis(5));
        }
        self
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_running_program_is_named_with_its_command_line_and_user() {
    let child = Running::start(Command::new("sleep").args(["300", "1"])).running("sleep");
    let person = Identities::default().person(&actor(child.pid()));
    let me = crate::accounts::user_called(rustix::process::getuid().as_raw());
    assert_eq!(person.via, Via::Local, "{person:?}");
    assert_eq!(person.process.as_deref(), Some("sleep"));
    assert_eq!(person.command.as_deref(), Some("sleep 300 1"));
    assert_eq!(person.user, me);
    assert_eq!(person.pid, child.pid());
}

#[test]
fn a_program_run_as_another_user_is_named_by_that_user() {
    if !is_root() {
        eprintln!("SKIPPED: running a program as another user needs root");
        return;
    }
    let child = Running::start(Command::new("setpriv").args([
        "--reuid=nobody",
        "--regid=nogroup",
        "--clear-groups",
        "sleep",
        "300",
    ]))
    .running("sleep");
    let person = Identities::default().person(&actor(child.pid()));
    assert_eq!(person.user.as_deref(), Some("nobody"), "{person:?}");
    assert_eq!(person.process.as_deref(), Some("sleep"));
}

#[test]
fn a_program_that_ended_is_named_by_its_pid_only() {
    let mut child = Command::new("true").spawn().expect("run true");
    let pid = child.id() as i32;
    let actor = actor(pid);
    child.wait().expect("wait");
    let person = Identities::default().person(&actor);
    assert_eq!(*person, ended(pid));
    assert_eq!(
        person.to_string(),
        format!("process {pid} (it had ended before it could be asked who it was)")
    );
    // Without a pidfd nothing says the pid is still that process.
    let alive = Running::start(Command::new("sleep").arg("300"));
    let unpinned = Actor {
        pid: alive.pid(),
        pidfd: None,
        person: None,
    };
    assert_eq!(
        Identities::default().person(&unpinned).via,
        Via::Ended,
        "a bare pid may be another process's by now"
    );
}

#[test]
fn a_pid_taken_by_a_newer_process_never_names_it() {
    if !is_root() {
        eprintln!("SKIPPED: steering the next pid (ns_last_pid) needs root");
        return;
    }
    // The kernel hands out the pid after `ns_last_pid`: the old process's pid goes to
    // a new one, unless another process on the machine takes it first (tried again).
    for _ in 0..50 {
        let mut old = Command::new("true").spawn().expect("run true");
        let pid = old.id() as i32;
        let actor = actor(pid);
        old.wait().expect("wait");
        if std::fs::write("/proc/sys/kernel/ns_last_pid", (pid - 1).to_string()).is_err() {
            eprintln!("SKIPPED: ns_last_pid cannot be written here");
            return;
        }
        let newer = Running::start(Command::new("sleep").arg("300"));
        if newer.pid() != pid {
            continue;
        }
        let person = Identities::default().person(&actor);
        assert_eq!(*person, ended(pid), "the newer sleep was named");
        return;
    }
    eprintln!("SKIPPED: the old pid never went to the new process in 50 tries");
}

#[test]
fn a_process_is_read_once_while_it_lives() {
    let child = Running::start(Command::new("sleep").arg("300"));
    let mut identities = Identities::default();
    let first = identities.person(&actor(child.pid()));
    // Another pidfd of the same process: the same inode in pidfs.
    let again = identities.person(&actor(child.pid()));
    assert!(Arc::ptr_eq(&first, &again), "read twice");
}

#[test]
fn a_session_is_read_from_smbstatus_json() {
    // As Samba 4.17 prints it: over port 139 the PC gave its NetBIOS name, over 445
    // Samba puts the address where the name goes.
    let json = br#"{"sessions": {
        "1": {"session_id": "1", "server_id": {"pid": "4242", "task_id": "0"},
              "username": "anna", "remote_machine": "frontdesk",
              "hostname": "ipv4:127.0.0.1:50112"},
        "2": {"session_id": "2", "server_id": {"pid": "4343", "task_id": "0"},
              "username": "bob", "remote_machine": "192.168.1.23",
              "hostname": "ipv4:192.168.1.23:50113"},
        "3": {"session_id": "3", "server_id": {"pid": "4444"},
              "username": "carl", "remote_machine": "fe80::1",
              "hostname": "ipv6:fe80::1:445"}}}"#;
    let session = |user: &str, machine: Option<&str>, address: &str| Session {
        user: Some(user.into()),
        machine: machine.map(str::to_owned),
        address: Some(address.into()),
    };
    assert_eq!(
        session_of(json, 4242),
        Some(session("anna", Some("FRONTDESK"), "127.0.0.1"))
    );
    assert_eq!(
        session_of(json, 4343),
        Some(session("bob", None, "192.168.1.23"))
    );
    assert_eq!(
        session_of(json, 4444),
        Some(session("carl", None, "fe80::1"))
    );
    assert_eq!(session_of(json, 1), None);
    assert_eq!(session_of(b"not json", 4242), None);
}

#[test]
fn the_settings_file_is_read_from_smbds_command_line() {
    let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    for line in [
        &["smbd", "--foreground", "--configfile", "/t/smb.conf"][..],
        &["smbd", "--configfile=/t/smb.conf"],
        &["smbd", "-s", "/t/smb.conf"],
        &["smbd", "-s/t/smb.conf"],
    ] {
        assert_eq!(
            settings_file(&args(line)),
            Some(PathBuf::from("/t/smb.conf")),
            "{line:?}"
        );
    }
    assert_eq!(settings_file(&args(&["smbd", "--foreground"])), None);
}

#[test]
fn the_smbd_serving_a_pc_names_the_samba_user_the_pc_and_its_address() {
    let share = tempfile::tempdir().unwrap();
    let Some(server) = samba::Samba::start_with_names(
        "the_smbd_serving_a_pc_names_the_samba_user_the_pc_and_its_address",
        &[("office", share.path())],
    ) else {
        return;
    };
    let anna = server.add_user("anna");
    std::fs::set_permissions(
        share.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    // A session held open (smbclient reads its commands from a pipe) by the PC FRONTDESK.
    let frontdesk = server.client(&anna, "office").on_pc("FRONTDESK");
    let session = frontdesk.hold();
    let smbd = session.serving_pid();
    let person = Identities::default().person(&actor(smbd));
    assert_eq!(
        (
            person.via,
            person.user.as_deref(),
            person.machine.as_deref(),
            person.address.as_deref()
        ),
        (
            Via::FileShare,
            Some("anna"),
            Some("FRONTDESK"),
            Some("127.0.0.1")
        ),
        "{person:?}\n{}",
        server.log()
    );
    assert_eq!(
        person.to_string(),
        "anna from FRONTDESK (127.0.0.1) over the file share"
    );
}

#[test]
fn a_process_is_read_on_its_way_to_the_loop_so_it_is_named_after_it_ended() {
    use super::super::event::FsEvent;
    let identities = Arc::new(Mutex::new(Identities::default()));
    identities
        .lock()
        .unwrap()
        .protecting(vec![PathBuf::from("/srv/share")]);
    let (to_loop, the_loop) = mpsc::channel();
    let events = forward(to_loop, Arc::clone(&identities));
    let removed = |path: &str| FsEvent::Removed {
        path: path.into(),
        was_dir: false,
    };
    let mut passed = Vec::new();
    let mut children = Vec::new();
    for path in ["/srv/share/a.txt", "/var/lib/samba/lock.tdb"] {
        let child = Running::start(Command::new("sleep").arg("300")).running("sleep");
        events
            .send(Msg::Fs(removed(path), Some(actor(child.pid()))))
            .unwrap();
        let Ok(Msg::Fs(_, Some(actor))) = the_loop.recv_timeout(Duration::from_secs(10)) else {
            panic!("the event was not handed on");
        };
        passed.push(actor);
        children.push(child);
    }
    // Ended and reaped before the loop got to them, as a short rm is.
    drop(children);
    let mut identities = identities.lock().unwrap();
    let inside = identities.person(&passed[0]);
    assert_eq!(inside.process.as_deref(), Some("sleep"), "{inside:?}");
    // Only what changes protected files is asked about on the way.
    assert_eq!(identities.person(&passed[1]).via, Via::Ended);
}

#[test]
fn an_event_read_after_its_process_ended_is_that_of_the_one_met_with_its_pid() {
    let mut identities = Identities::default();
    let child = Running::start(Command::new("sleep").arg("300")).running("sleep");
    let pid = child.pid();
    // The first events came while it ran; the kernel gives no pidfd for the ones
    // read after it ended.
    identities.person(&actor(pid));
    let late = Actor {
        pid,
        pidfd: None,
        person: None,
    };
    assert_eq!(
        identities.person(&late).via,
        Via::Ended,
        "while it runs, an event without a pidfd is not that process's"
    );
    drop(child);
    let person = identities.person(&late);
    assert_eq!(person.process.as_deref(), Some("sleep"), "{person:?}");
}

#[test]
fn a_kernel_thread_is_the_kernels_file_server_which_names_nobody() {
    // nfsd and ksmbd are kernel threads, as kthreadd (pid 2) is: one stands in for them.
    let person = Identities::default().person(&actor(2));
    assert_eq!(
        (person.via, person.user.as_deref()),
        (Via::KernelServer, None),
        "{person:?}"
    );
    assert_eq!(
        person.to_string(),
        "a client of the kernel's file server (NFS or ksmbd), which does not say who"
    );
}
