//! A real Samba server for one test: `smbd` on a free loopback port, with its
//! own settings, state, lock, cache and password files in a temporary folder,
//! and `smbclient` as the Windows PCs of an office would use it.
//!
//! Nothing is shared with a system Samba: no file under /etc/samba or
//! /var/lib/samba is read or written, and the server listens on 127.0.0.1 only
//! (and on the server's end of each test PC's own link, see `lan`).
//! Users are real Unix accounts (Samba serves each session as its user), made
//! once when missing and kept: tests run as root on a throwaway machine.

use std::fs;
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::{is_root, output_text};

/// How long smbd may take to listen after it is started.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long one smbclient call may take.
const CLIENT_TIMEOUT: &str = "60";
/// The password of every test user: the tests are about files, not about logins.
pub const PASSWORD: &str = "Undelete-test-1";

pub struct Samba {
    dir: tempfile::TempDir,
    pub port: u16,
    conf: PathBuf,
    smbd: Option<Child>,
    /// Held while this server also listens on port 139 (see `start_with_names`).
    port_139: Option<fs::File>,
}

/// The port on which a PC sends its name (a NetBIOS session); over 445 it sends none.
const NETBIOS_PORT: u16 = 139;
/// Taken by the one test server at a time that listens on port 139.
const NETBIOS_LOCK: &str = "/tmp/undelete-test-smb-139.lock";

impl Samba {
    /// Starts smbd serving `shares` (name, folder). `None`, after printing why, where
    /// that is not possible here (not root, Samba not installed): the caller skips.
    /// Every folder above a shared one is made traversable (`o+x`), since Samba opens
    /// files as the connected user, and temporary folders are private by default.
    pub fn start(test: &str, shares: &[(&str, &Path)]) -> Option<Self> {
        let plain: Vec<(&str, &Path, &str)> = shares.iter().map(|(n, p)| (*n, *p, "")).collect();
        Self::start_with(test, &plain)
    }

    /// Like `start`, also listening on port 139, where a PC says its name: clients
    /// `on_pc` connect there. One such server at a time (a lock file), since the
    /// port is fixed; the next test waits for it.
    pub fn start_with_names(test: &str, shares: &[(&str, &Path)]) -> Option<Self> {
        let plain: Vec<(&str, &Path, &str)> = shares.iter().map(|(n, p)| (*n, *p, "")).collect();
        Self::start_listening(test, &plain, true, &[])
    }

    /// Like `start`, each share with more lines of settings of its own (`vfs objects
    /// = shadow_copy2`, `shadow:…`), written into its section as they are.
    pub fn start_with(test: &str, shares: &[(&str, &Path, &str)]) -> Option<Self> {
        Self::start_listening(test, shares, false, &[])
    }

    /// Like `start`, also listening on each of `addresses` (the server's end of
    /// each test PC's link, see `lan::Pc`), so clients `at_pc` reach it from
    /// addresses of their own.
    // Not used by the daemon's own tests of who a process is, which include this file.
    #[allow(dead_code)]
    pub fn start_for_pcs(test: &str, shares: &[(&str, &Path)], addresses: &[&str]) -> Option<Self> {
        let plain: Vec<(&str, &Path, &str)> = shares.iter().map(|(n, p)| (*n, *p, "")).collect();
        Self::start_listening(test, &plain, false, addresses)
    }

    fn start_listening(
        test: &str,
        shares: &[(&str, &Path, &str)],
        names: bool,
        addresses: &[&str],
    ) -> Option<Self> {
        if !is_root() {
            eprintln!("SKIPPED {test}: serving files over SMB as other users needs root");
            return None;
        }
        for tool in ["smbd", "smbclient", "smbpasswd"] {
            if which(tool).is_none() {
                eprintln!("SKIPPED {test}: {tool} is not installed (packages samba, smbclient)");
                return None;
            }
        }
        for (_, folder, _) in shares {
            make_traversable(folder);
        }
        let dir = tempfile::Builder::new()
            .prefix("undelete-samba-")
            .tempdir()
            .expect("create Samba's temporary folder");
        // The daemon runs as root; smbd drops to each user only for file access, and
        // must reach its own files, so this folder stays root's.
        for sub in ["private", "lock", "state", "cache", "pid", "ncalrpc", "log"] {
            fs::create_dir(dir.path().join(sub)).expect("create Samba's folders");
        }
        let conf = dir.path().join("smb.conf");
        let port_139 = names.then(|| {
            let lock = fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(NETBIOS_LOCK)
                .expect("open the lock of port 139");
            rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive)
                .expect("wait for port 139");
            lock
        });
        let mut samba = Self {
            dir,
            port: 0,
            conf,
            smbd: None,
            port_139,
        };
        // A free port can be taken between asking for it and smbd binding it: try again.
        for _ in 0..5 {
            samba.port = free_port();
            let ports = match samba.port_139 {
                Some(_) => format!("{} {NETBIOS_PORT}", samba.port),
                None => samba.port.to_string(),
            };
            let names = samba.port_139.is_some();
            let mut interfaces = vec!["127.0.0.1"];
            interfaces.extend(addresses);
            fs::write(
                &samba.conf,
                settings(
                    samba.dir.path(),
                    &ports,
                    names,
                    &interfaces.join(" "),
                    shares,
                ),
            )
            .expect("write smb.conf");
            let log =
                fs::File::create(samba.dir.path().join("smbd.out")).expect("create smbd's log");
            let smbd = Command::new(which("smbd").expect("checked above"))
                .args(["--foreground", "--no-process-group", "--debug-stdout"])
                .arg("--configfile")
                .arg(&samba.conf)
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("clone the log"))
                .stderr(log)
                // Its own process group, so the children serving sessions stop with it.
                .process_group(0)
                .spawn()
                .expect("start smbd");
            samba.smbd = Some(smbd);
            if samba.wait_until_listening() {
                return Some(samba);
            }
            samba.stop();
        }
        panic!("smbd did not start on any of five free ports");
    }

    /// Waits (bounded) until smbd accepts connections; false if it exited first.
    fn wait_until_listening(&mut self) -> bool {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self
                .smbd
                .as_mut()
                .expect("started")
                .try_wait()
                .expect("poll smbd")
            {
                eprintln!("smbd exited with {status}:\n{}", self.log());
                self.smbd = None;
                return false;
            }
            let on_139 =
                self.port_139.is_none() || TcpStream::connect(("127.0.0.1", NETBIOS_PORT)).is_ok();
            if on_139 && TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return true;
            }
            assert!(
                Instant::now() < deadline,
                "smbd did not listen on port {} within {START_TIMEOUT:?}:\n{}",
                self.port,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The Unix account `name` (made when missing, with no home and no shell) as a
    /// Samba user with the test password.
    pub fn add_user(&self, name: &str) -> User {
        ensure_unix_user(name);
        let mut passwd = Command::new("smbpasswd")
            .arg("-c")
            .arg(&self.conf)
            .args(["-a", "-s", name])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run smbpasswd");
        use std::io::Write as _;
        passwd
            .stdin
            .take()
            .expect("piped")
            .write_all(format!("{PASSWORD}\n{PASSWORD}\n").as_bytes())
            .expect("give smbpasswd the password");
        let out = passwd.wait_with_output().expect("wait for smbpasswd");
        assert!(
            out.status.success(),
            "smbpasswd -a {name}: {}",
            output_text(&out)
        );
        let uid = unix_id("-u", name);
        let gid = unix_id("-g", name);
        User {
            name: name.to_owned(),
            uid,
            gid,
        }
    }

    /// `smbclient //127.0.0.1/SHARE` as `user`.
    pub fn client(&self, user: &User, share: &str) -> Client<'_> {
        Client {
            samba: self,
            user: user.name.clone(),
            share: share.to_owned(),
            machine: None,
            pc: None,
        }
    }

    /// Its settings file, as `testparm` would read it.
    pub fn conf(&self) -> &Path {
        &self.conf
    }

    /// What smbd wrote to its log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("smbd.out")).unwrap_or_default()
    }

    fn stop(&mut self) {
        if let Some(mut smbd) = self.smbd.take() {
            let group = rustix::process::Pid::from_child(&smbd);
            let _ = rustix::process::kill_process_group(group, rustix::process::Signal::TERM);
            let deadline = Instant::now() + Duration::from_secs(10);
            while smbd.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
            let _ = smbd.wait();
        }
    }
}

impl Drop for Samba {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("----- smbd log -----\n{}", self.log());
        }
        self.stop();
    }
}

/// A Samba user, with the Unix ids it has on the server.
#[derive(Debug, Clone)]
pub struct User {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

/// One office PC's view of a share.
pub struct Client<'a> {
    samba: &'a Samba,
    user: String,
    share: String,
    machine: Option<String>,
    /// The PC's network namespace and the server's address there (see `at_pc`).
    pc: Option<(String, String)>,
}

impl Client<'_> {
    /// The same client, saying it is the PC `machine` (its NetBIOS name).
    pub fn on_pc(mut self, machine: &str) -> Self {
        self.machine = Some(machine.to_owned());
        self
    }

    /// The same client, at a PC of its own (`lan::Pc`): smbclient runs in its
    /// network namespace `netns` and reaches the server at `server`, from the PC's
    /// own address.
    #[allow(dead_code)]
    pub fn at_pc(mut self, netns: &str, server: &str) -> Self {
        self.pc = Some((netns.to_owned(), server.to_owned()));
        self
    }

    /// Runs `commands` (`smbclient -c` syntax: `put a b; del c; deltree d`) and
    /// returns the output, whatever the outcome.
    pub fn run(&self, commands: &str) -> Output {
        let mut cmd = self.smbclient();
        cmd.args(["--command", commands]).stdin(Stdio::null());
        cmd.output().expect("run smbclient")
    }

    /// smbclient for this share, as this user from this PC. A PC with a name
    /// connects to port 139 where the server listens there: only there is the
    /// name sent.
    fn smbclient(&self) -> Command {
        let port = match (&self.machine, &self.samba.port_139) {
            (Some(_), Some(_)) => NETBIOS_PORT,
            _ => self.samba.port,
        };
        let (mut cmd, server) = match &self.pc {
            Some((netns, server)) => {
                let mut cmd = Command::new("ip");
                cmd.args(["netns", "exec", netns, "timeout"]);
                (cmd, server.as_str())
            }
            None => (Command::new("timeout"), "127.0.0.1"),
        };
        cmd.arg(CLIENT_TIMEOUT)
            .arg("smbclient")
            .arg("--configfile")
            .arg(&self.samba.conf)
            .arg(format!("//{server}/{}", self.share))
            .args(["--port", &port.to_string()])
            .args(["--user", &format!("{}%{PASSWORD}", self.user)])
            .args(["--max-protocol", "SMB3"]);
        if let Some(machine) = &self.machine {
            cmd.args(["--netbiosname", machine]);
        }
        cmd
    }

    /// A session kept open: smbclient reads its commands from a pipe that stays open
    /// until the session is dropped, so the smbd serving it lives on, as a PC's does.
    pub fn hold(&self) -> Session<'_> {
        let mut cmd = self.smbclient();
        let child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("run smbclient");
        Session {
            client: self,
            child,
        }
    }

    /// Runs `commands`, which must succeed (smbclient prints NT_STATUS_… on failure,
    /// with exit code 1 only for some of them).
    pub fn run_ok(&self, commands: &str) -> String {
        let out = self.run(commands);
        let text = output_text(&out);
        assert!(
            out.status.success() && !text.contains("NT_STATUS_"),
            "smbclient -c {commands:?} as {}: {text}",
            self.user
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

/// An open session of a PC (see `Client::hold`).
pub struct Session<'a> {
    client: &'a Client<'a>,
    child: Child,
}

impl Session<'_> {
    /// The pid of the smbd process serving this session, from `smbstatus`, once
    /// it is there (bounded).
    // For the daemon's own tests of who a process is (src/watch/identify), which
    // include this file.
    #[allow(dead_code)]
    pub fn serving_pid(&self) -> i32 {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let out = Command::new("smbstatus")
                .args(["--json", "--brief", "--configfile"])
                .arg(&self.client.samba.conf)
                .output()
                .expect("run smbstatus");
            let all: serde_json::Value =
                serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
            let pid = all["sessions"].as_object().and_then(|sessions| {
                sessions.values().find_map(|s| {
                    (s["username"].as_str() == Some(self.client.user.as_str()))
                        .then(|| s["server_id"]["pid"].as_str()?.parse().ok())
                        .flatten()
                })
            });
            if let Some(pid) = pid {
                return pid;
            }
            assert!(
                Instant::now() < deadline,
                "no session of {} in smbstatus: {}",
                self.client.user,
                output_text(&out)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Runs one command in the open session (smbclient's syntax: `del a`, `deltree d`),
    /// without waiting for it.
    pub fn send(&mut self, command: &str) {
        use std::io::Write as _;
        let stdin = self.child.stdin.as_mut().expect("piped");
        writeln!(stdin, "{command}").expect("send to smbclient");
        stdin.flush().expect("send to smbclient");
    }
}

impl Drop for Session<'_> {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// smb.conf for one test server.
/// With `names`, NetBIOS stays on: smbclient reads these settings too, and without
/// it refuses port 139.
fn settings(
    dir: &Path,
    ports: &str,
    names: bool,
    interfaces: &str,
    shares: &[(&str, &Path, &str)],
) -> String {
    let d = dir.display();
    let netbios_off = if names { "no" } else { "yes" };
    let mut text = format!(
        "[global]
  netbios name = UNDELETETEST
  workgroup = WORKGROUP
  server role = standalone server
  smb ports = {ports}
  interfaces = {interfaces}
  bind interfaces only = yes
  disable netbios = {netbios_off}
  private dir = {d}/private
  lock directory = {d}/lock
  state directory = {d}/state
  cache directory = {d}/cache
  pid directory = {d}/pid
  ncalrpc dir = {d}/ncalrpc
  log file = {d}/log/log.%m
  passdb backend = tdbsam:{d}/private/passdb.tdb
  load printers = no
  printing = bsd
  printcap name = /dev/null
  disable spoolss = yes
  map to guest = never
  server min protocol = SMB2
  client min protocol = SMB2
"
    );
    for (name, folder, extra) in shares {
        text.push_str(&format!(
            "[{name}]\n  path = {}\n  read only = no\n{extra}\n",
            folder.display()
        ));
    }
    text
}

/// A loopback port nobody listens on right now.
fn free_port() -> u16 {
    TcpListener::bind(("127.0.0.1", 0))
        .and_then(|l| l.local_addr())
        .expect("find a free port")
        .port()
}

fn which(tool: &str) -> Option<PathBuf> {
    [
        "/usr/sbin",
        "/usr/bin",
        "/sbin",
        "/bin",
        "/usr/local/sbin",
        "/usr/local/bin",
    ]
    .iter()
    .map(|dir| Path::new(dir).join(tool))
    .find(|p| p.is_file())
}

/// `o+x` on every folder from `/` down to `folder`, so another user can reach it.
pub fn make_traversable(folder: &Path) {
    for dir in folder.ancestors() {
        let Ok(meta) = fs::metadata(dir) else {
            continue;
        };
        let mode = meta.permissions().mode();
        if mode & 0o001 == 0 {
            fs::set_permissions(dir, fs::Permissions::from_mode(mode | 0o001))
                .unwrap_or_else(|e| panic!("make {} traversable: {e}", dir.display()));
        }
    }
}

/// Makes the Unix account `name` if it does not exist: no home, no login shell.
pub fn ensure_unix_user(name: &str) {
    if Command::new("id")
        .arg("-u")
        .arg(name)
        .output()
        .is_ok_and(|o| o.status.success())
    {
        return;
    }
    let out = Command::new("useradd")
        .args([
            "--no-create-home",
            "--shell",
            "/usr/sbin/nologin",
            "--user-group",
        ])
        .arg(name)
        .output()
        .expect("run useradd");
    // Another test may have made it meanwhile.
    let made_by_another = String::from_utf8_lossy(&out.stderr).contains("already exists");
    assert!(
        out.status.success() || made_by_another,
        "useradd {name}: {}",
        output_text(&out)
    );
}

fn unix_id(which: &str, name: &str) -> u32 {
    let out = Command::new("id")
        .arg(which)
        .arg(name)
        .output()
        .expect("run id");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("id {which} {name}: {}", output_text(&out)))
}
