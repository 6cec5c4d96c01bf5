//! The daemon's control socket (`daemon.sock` in the vault) and its client.
//!
//! One line in, one line out (except a restore's announcements: see `announce`).
//! The socket lives inside the vault folder, which is 0700, so only the account
//! that runs the daemon can talk to it.

use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{self, Sender};
use std::time::{Duration, Instant};

use crate::announce::{self, Announced};
use crate::watch::{Msg, SyncAnswer};

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("the undelete daemon is not running for the vault {vault}")]
    NotRunning { vault: PathBuf },
    #[error("permission denied talking to the daemon of the vault {vault}; run it with sudo")]
    PermissionDenied { vault: PathBuf },
    #[error("the daemon did not answer within {0} seconds")]
    Timeout(u64),
    #[error("the daemon answered: {0}")]
    Failed(String),
    #[error("cannot talk to the daemon: {0}")]
    Io(#[from] io::Error),
}

/// The command that asks the daemon to make a change a command wants recorded
/// (see `amend`); the change follows as JSON, and the answer comes once committed.
pub const AMEND: &str = "AMEND";

/// Sends one command and waits up to `timeout` for the answer. A daemon that holds
/// the vault's lock but is not listening yet is starting: it is waited for.
pub fn request(socket: &Path, command: &str, timeout: Duration) -> Result<String, ControlError> {
    let vault = socket.parent().unwrap_or(socket).to_owned();
    let total = timeout.as_secs();
    let deadline = Instant::now() + timeout;
    let mut stream = loop {
        match UnixStream::connect(socket) {
            Ok(stream) => break stream,
            Err(e) => match e.kind() {
                io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused => {
                    if !daemon_starting(&vault) || Instant::now() >= deadline {
                        return Err(ControlError::NotRunning { vault });
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                io::ErrorKind::PermissionDenied => {
                    return Err(ControlError::PermissionDenied { vault });
                }
                _ => return Err(ControlError::Io(e)),
            },
        }
    };
    let timeout = deadline.saturating_duration_since(Instant::now());
    stream.set_read_timeout(Some(timeout.max(Duration::from_millis(1))))?;
    stream.write_all(format!("{command}\n").as_bytes())?;
    let mut line = String::new();
    match BufReader::new(stream).read_line(&mut line) {
        Ok(0) => Err(ControlError::Failed("the daemon stopped".into())),
        Ok(_) => {
            let line = line.trim_end();
            match line.strip_prefix("OK") {
                Some(rest) => Ok(rest.trim().to_owned()),
                None => Err(ControlError::Failed(
                    line.strip_prefix("ERR ").unwrap_or(line).to_owned(),
                )),
            }
        }
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) =>
        {
            Err(ControlError::Timeout(total))
        }
        Err(e) => Err(ControlError::Io(e)),
    }
}

/// Whether some process holds the writer lock of `vault` (a daemon is running or starting).
fn daemon_starting(vault: &Path) -> bool {
    crate::vault::Vault::open_existing(vault).is_ok_and(|v| v.is_locked())
}

/// Whether a daemon answers on this socket.
pub fn is_running(socket: &Path) -> bool {
    request(socket, "PING", Duration::from_secs(5)).is_ok()
}

/// Binds the socket; a leftover file from a daemon that died is replaced.
/// The caller must hold the vault's daemon lock.
pub fn bind(socket: &Path) -> io::Result<UnixListener> {
    match std::fs::remove_file(socket) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    UnixListener::bind(socket)
}

/// Answers commands until the listener fails; each connection gets its own thread
/// because a `SYNC` may wait a long time, and a restore's announcements last as long
/// as the restore.
pub fn serve(listener: UnixListener, daemon: Sender<Msg>, announced: Arc<Announced>) {
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        let daemon = daemon.clone();
        let announced = Arc::clone(&announced);
        std::thread::spawn(move || {
            if let Err(e) = answer(stream, &daemon, &announced) {
                tracing::debug!("control connection ended: {e}");
            }
        });
    }
}

fn answer(stream: UnixStream, daemon: &Sender<Msg>, announced: &Announced) -> io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let (command, argument) = line.trim().split_once(' ').unwrap_or((line.trim(), ""));
    let reply = match command {
        "PING" => format!("OK {}", std::process::id()),
        // Not one line: every line that follows is an announcement, each acknowledged.
        announce::COMMAND => return announced.receive(&mut reader, stream),
        "SYNC" => {
            let (tx, rx) = mpsc::channel();
            if daemon.send(Msg::Sync(tx)).is_err() {
                "ERR the daemon is stopping".to_owned()
            } else {
                match rx.recv() {
                    Ok(SyncAnswer::Done) => "OK".to_owned(),
                    Ok(SyncAnswer::Failed(why)) => format!("ERR {why}"),
                    Err(_) => "ERR the daemon is stopping".to_owned(),
                }
            }
        }
        "PURGE" => {
            let (tx, rx) = mpsc::channel();
            let rules = match serde_json::from_str::<crate::config::Retention>(argument) {
                Ok(rules) if rules.keep_deleted_ns >= 0 => rules,
                _ => return send_line(stream, "ERR PURGE needs valid retention rules as JSON"),
            };
            if daemon.send(Msg::Purge(rules, tx)).is_err() {
                "ERR the daemon is stopping".to_owned()
            } else {
                match rx.recv() {
                    Ok(Ok(done)) => format!("OK {done}"),
                    Ok(Err(why)) => format!("ERR {why}"),
                    Err(_) => "ERR the daemon is stopping".to_owned(),
                }
            }
        }
        AMEND => {
            let (tx, rx) = mpsc::channel();
            if daemon.send(Msg::Amend(argument.to_owned(), tx)).is_err() {
                "ERR the daemon is stopping".to_owned()
            } else {
                match rx.recv() {
                    Ok(Ok(words)) => format!("OK {words}"),
                    Ok(Err(why)) => format!("ERR {why}"),
                    Err(_) => "ERR the daemon is stopping".to_owned(),
                }
            }
        }
        other => format!("ERR unknown command {other:?}"),
    };
    send_line(stream, &reply)
}

fn send_line(mut stream: UnixStream, line: &str) -> io::Result<()> {
    stream.write_all(format!("{line}\n").as_bytes())
}
