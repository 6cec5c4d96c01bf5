//! The daemon's side of the control socket: one thread per connection, each
//! command handed to the loop as a `Msg` and its answer written back as one line
//! (a restore's announcements excepted: see `announce`). The client is `control`.
//!
//! It never touches the index or the vault itself: the loop does.

use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc::{self, Sender};

use super::event::{Msg, SyncAnswer};
use crate::announce::{self, Announced};
use crate::control::AMEND;
use crate::retention::PurgeAsk;

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
        // Its mark is the restore's until the connection ends; then the daemon looks
        // at what still has a name with it.
        announce::COMMAND => {
            let mark = crate::names::Mark::from_hex(argument);
            let received = announced.receive(&mut reader, stream, mark);
            if let Some(mark) = mark {
                announced.restore_seen_to_its_end(mark);
                let _ = daemon.send(Msg::RestoreEnded(mark));
            }
            return received;
        }
        "SYNC" => {
            let (tx, rx) = mpsc::channel();
            let sync = Msg::Sync {
                reply: tx,
                hashed: argument == "HASHED",
            };
            if daemon.send(sync).is_err() {
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
            let ask = match serde_json::from_str::<PurgeAsk>(argument) {
                Ok(ask) if ask.rules.keep_deleted_ns >= 0 => ask,
                _ => {
                    return send_line(
                        stream,
                        "ERR PURGE needs valid retention rules and the copies shown, as JSON",
                    );
                }
            };
            if daemon.send(Msg::Purge(ask, tx)).is_err() {
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
