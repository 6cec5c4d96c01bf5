//! The client of the daemon's control socket (`daemon.sock` in the vault); the
//! daemon's side is `watch::socket`.
//!
//! One line in, one line out (except a restore's announcements: see `announce`).
//! The socket lives inside the vault folder, which is 0700, so only the account
//! that runs the daemon can talk to it.

use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

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
