//! A restore tells the daemon which files it is writing, and with which content,
//! so the daemon records them without reading them again.
//!
//! Without this, every restored file is a new file to the daemon, which hashes it
//! to find out what it holds: a second read of everything restored, on the same
//! cores and disk as the restore, just when the customer is waiting.
//!
//! The restore announces each file as soon as it has created it under its
//! temporary name (so its inode is known), and renames it into place only once
//! the daemon has acknowledged the announcement: by the time the daemon sees the
//! file appear, it knows what it is. The daemon trusts an announcement only for a
//! file whose inode, size and modification time are still the ones announced,
//! which is the rule it already uses for files it has copied itself (a file
//! written to since has a new modification time); anything else is read as usual.
//! Announcements that go wrong in any way cost speed only: the file is hashed.
//!
//! Only the daemon's own account can talk to its socket (see `control`), so no
//! user can vouch for content that is not there.
//!
//! The restore first tells the daemon the mark of its own names (`names::Mark`):
//! for as long as the connection lasts, and no longer, the daemon passes over
//! names with that mark (the folders it writes files in and deletes encrypted
//! copies in), for as long as the connection lasts; the restore asks for a sync
//! before it ends it, so that every change it made has been seen by then. Then
//! whatever still has such a name is a user's file to the daemon, and is looked
//! at (see `watch::own`).

use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use std::collections::HashSet;

use crate::ids::ObjectId;
use crate::names::Mark;
use crate::words::JsonPath;

/// The command that starts a connection of announcements, one JSON line each.
pub const COMMAND: &str = "RESTORING";

/// How long a restore waits for the daemon to acknowledge an announcement before it
/// stops announcing (the daemon is busy or stopped): the restore never waits on it longer.
const ACK_TIMEOUT: Duration = Duration::from_secs(2);

/// How long an announcement stays good. The daemon uses one within a batch of the
/// file's rename; one left unused (the file went elsewhere, or its copy failed and it
/// was never renamed into place) must not vouch for whatever comes to that path later.
const KEEP_UNUSED: Duration = Duration::from_secs(60);

/// At most this many unused announcements are kept; more are ignored (those files are
/// hashed), so a huge restore outside the protected folders cannot grow the daemon.
const MAX_KEPT: usize = 65_536;

/// One file a restore writes: where it will be, and what it will hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announcement {
    pub path: PathBuf,
    pub inode: u64,
    pub size: u64,
    pub mtime_ns: i64,
    pub object: ObjectId,
}

/// An announcement as it goes over the socket.
#[derive(Serialize, Deserialize)]
struct Line {
    path: JsonPath,
    inode: u64,
    size: u64,
    mtime_ns: i64,
    object: String,
}

impl Announcement {
    fn to_line(&self) -> String {
        let line = Line {
            path: JsonPath::from(self.path.as_path()),
            inode: self.inode,
            size: self.size,
            mtime_ns: self.mtime_ns,
            object: self.object.to_hex(),
        };
        serde_json::to_string(&line).expect("an announcement always serializes")
    }

    fn from_line(text: &str) -> Option<Self> {
        let line: Line = serde_json::from_str(text).ok()?;
        Some(Self {
            path: line.path.into_path(),
            inode: line.inode,
            size: line.size,
            mtime_ns: line.mtime_ns,
            object: line.object.parse().ok()?,
        })
    }

    /// Whether a file found with this inode, size and modification time is the
    /// announced one, unchanged.
    pub fn matches(&self, inode: u64, size: u64, mtime_ns: i64) -> bool {
        self.inode == inode && self.size == size && self.mtime_ns == mtime_ns
    }
}

/// The restore's side: a connection to the daemon, shared by the restore's workers.
pub struct Announcer {
    stream: Mutex<UnixStream>,
    /// Announcements sent so far; the n-th one is acknowledged once `acked >= n`.
    sent: AtomicU64,
    acked: Arc<Acked>,
}

#[derive(Default)]
struct Acked {
    count: Mutex<u64>,
    changed: Condvar,
    /// Set when the daemon stopped answering: nothing more is announced or waited for.
    gave_up: AtomicBool,
}

impl Acked {
    fn give_up(&self) {
        self.gave_up.store(true, Ordering::Relaxed);
        self.changed.notify_all();
    }
}

/// A ticket for one announcement, to wait on before the file is renamed into place.
pub struct Ticket(u64);

impl Announcer {
    /// Connects to the daemon of the vault whose socket this is and tells it `mark`;
    /// `None` when no daemon listens or it did not take the mark (then there is
    /// nobody to tell, and the names with the mark are looked at like any other).
    pub fn connect(socket: &Path, mark: Mark) -> Option<Self> {
        let stream = UnixStream::connect(socket).ok()?;
        stream.set_write_timeout(Some(ACK_TIMEOUT)).ok()?;
        let mut writer = stream.try_clone().ok()?;
        writer
            .write_all(format!("{COMMAND} {}\n", mark.to_hex()).as_bytes())
            .ok()?;
        // The mark is known before any name with it is made: read here, a byte at a
        // time, so nothing after this line is taken from the reader below.
        stream.set_read_timeout(Some(ACK_TIMEOUT)).ok()?;
        let mut taken = Vec::new();
        let mut byte = [0u8; 1];
        while taken.len() < 8 {
            match (&stream).read(&mut byte) {
                Ok(1) if byte[0] == b'\n' => break,
                Ok(1) => taken.push(byte[0]),
                _ => return None,
            }
        }
        if taken != b"OK" {
            return None;
        }
        stream.set_read_timeout(None).ok()?;
        let reader = stream.try_clone().ok()?;
        let acked = Arc::new(Acked::default());
        let counting = Arc::clone(&acked);
        // Reads the acknowledgements as they come; ends when the daemon hangs up.
        std::thread::spawn(move || {
            for line in BufReader::new(reader).lines() {
                match line {
                    Ok(line) if line == "OK" => {
                        *counting.count.lock().expect("never poisoned") += 1;
                        counting.changed.notify_all();
                    }
                    _ => break,
                }
            }
            counting.give_up();
        });
        Some(Self {
            stream: Mutex::new(stream),
            sent: AtomicU64::new(0),
            acked,
        })
    }

    /// Tells the daemon about a file; `None` once the daemon stopped answering.
    pub fn announce(&self, announcement: &Announcement) -> Option<Ticket> {
        if self.acked.gave_up.load(Ordering::Relaxed) {
            return None;
        }
        let line = format!("{}\n", announcement.to_line());
        let mut stream = self.stream.lock().expect("never poisoned");
        // Under the lock, so tickets are numbered in the order the lines are written.
        if let Err(e) = stream.write_all(line.as_bytes()) {
            tracing::debug!("the daemon is not taking announcements: {e}");
            self.acked.give_up();
            return None;
        }
        Some(Ticket(self.sent.fetch_add(1, Ordering::Relaxed) + 1))
    }

    /// Waits until the daemon has taken the announcement, or has stopped answering.
    pub fn wait(&self, ticket: Ticket) {
        let deadline = Instant::now() + ACK_TIMEOUT;
        let mut count = self.acked.count.lock().expect("never poisoned");
        while *count < ticket.0 && !self.acked.gave_up.load(Ordering::Relaxed) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                tracing::debug!("the daemon did not take an announcement in time");
                self.acked.give_up();
                return;
            }
            count = self
                .acked
                .changed
                .wait_timeout(count, left)
                .expect("never poisoned")
                .0;
        }
    }
}

impl Drop for Announcer {
    fn drop(&mut self) {
        // The daemon sees the end of the announcements; the reader thread then ends.
        if let Ok(stream) = self.stream.lock() {
            let _ = stream.shutdown(std::net::Shutdown::Write);
        }
    }
}

/// The daemon's side: announcements not yet used, by path, and the marks of the
/// restores connected now.
#[derive(Default)]
pub struct Announced {
    by_path: Mutex<HashMap<PathBuf, (Announcement, Instant)>>,
    restoring: Mutex<HashSet<Mark>>,
}

impl Announced {
    /// Reads announcements from one restore's connection until it ends, keeping each
    /// before acknowledging it. Acknowledgements go out whenever everything received
    /// so far is kept: one write for all the lines that came together. A `mark` is
    /// the restore's from now on, acknowledged first, until `restore_seen_to_its_end`
    /// (called once the connection ends).
    pub fn receive<R: Read>(
        &self,
        reader: &mut BufReader<R>,
        writer: impl Write,
        mark: Option<Mark>,
    ) -> io::Result<()> {
        let Some(mark) = mark else {
            return self.receive_announcements(reader, writer);
        };
        self.restoring.lock().expect("never poisoned").insert(mark);
        let mut writer = writer;
        writer.write_all(b"OK\n")?;
        writer.flush()?;
        self.receive_announcements(reader, writer)
    }

    /// The restore that told this mark has ended: the mark is nobody's now.
    pub fn restore_seen_to_its_end(&self, mark: Mark) {
        self.restoring.lock().expect("never poisoned").remove(&mark);
    }

    /// Whether a restore connected now told the daemon this mark.
    pub fn is_restoring(&self, mark: Mark) -> bool {
        self.restoring
            .lock()
            .expect("never poisoned")
            .contains(&mark)
    }

    fn receive_announcements<R: Read>(
        &self,
        reader: &mut BufReader<R>,
        writer: impl Write,
    ) -> io::Result<()> {
        let mut writer = io::BufWriter::new(writer);
        let mut line = String::new();
        loop {
            line.clear();
            if reader.read_line(&mut line)? == 0 {
                return writer.flush();
            }
            if let Some(announcement) = Announcement::from_line(line.trim_end()) {
                self.keep(announcement, Instant::now());
            }
            writer.write_all(b"OK\n")?;
            if reader.buffer().is_empty() {
                writer.flush()?;
            }
        }
    }

    fn keep(&self, announcement: Announcement, at: Instant) {
        let mut by_path = self.by_path.lock().expect("never poisoned");
        if by_path.len() >= MAX_KEPT {
            by_path.retain(|_, (_, at)| at.elapsed() < KEEP_UNUSED);
            if by_path.len() >= MAX_KEPT {
                return;
            }
        }
        by_path.insert(announcement.path.clone(), (announcement, at));
    }

    /// Takes the announcements for these paths that are still good (each is used once).
    pub fn take(&self, paths: &[PathBuf]) -> Vec<Option<Announcement>> {
        let mut by_path = self.by_path.lock().expect("never poisoned");
        if by_path.is_empty() {
            return vec![None; paths.len()];
        }
        paths
            .iter()
            .map(|path| {
                by_path
                    .remove(path)
                    .filter(|(_, at)| at.elapsed() < KEEP_UNUSED)
                    .map(|(a, _)| a)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;

    fn sample(path: &Path) -> Announcement {
        Announcement {
            path: path.to_owned(),
            inode: 42,
            size: 7,
            mtime_ns: -1_500_000_000,
            object: ObjectId::from_bytes([9; 32]),
        }
    }

    #[test]
    fn a_line_reads_back_as_sent_even_for_names_that_are_not_utf8() {
        let odd = Path::new(OsStr::from_bytes(b"/share/caf\xe9\nmenu.txt"));
        for path in [Path::new("/share/report.pdf"), odd] {
            let announcement = sample(path);
            let line = announcement.to_line();
            assert!(!line.contains('\n'), "one line each: {line:?}");
            assert_eq!(Announcement::from_line(&line), Some(announcement));
        }
        assert_eq!(Announcement::from_line("not json"), None);
    }

    #[test]
    fn each_announcement_is_acknowledged_and_used_once() {
        let announced = Announced::default();
        let a = sample(Path::new("/share/a"));
        let input = format!("{}\ngarbage\n", a.to_line());
        let mut replies = Vec::new();
        announced
            .receive(&mut BufReader::new(input.as_bytes()), &mut replies, None)
            .unwrap();
        // Garbage is acknowledged too, so a restore never waits on it.
        assert_eq!(replies, b"OK\nOK\n");
        let paths = [PathBuf::from("/share/a"), PathBuf::from("/share/b")];
        assert_eq!(announced.take(&paths), vec![Some(a), None]);
        assert_eq!(announced.take(&paths), vec![None, None]);
    }

    #[test]
    fn a_mark_is_the_restores_only_until_its_end_is_seen() {
        let announced = Announced::default();
        let mark = Mark::new();
        let mut replies = Vec::new();
        announced
            .receive(&mut BufReader::new(&b""[..]), &mut replies, Some(mark))
            .unwrap();
        assert_eq!(replies, b"OK\n", "the mark is acknowledged before anything");
        assert!(
            announced.is_restoring(mark),
            "until its changes are all seen"
        );
        announced.restore_seen_to_its_end(mark);
        assert!(!announced.is_restoring(mark), "the restore has ended");
        assert!(!announced.is_restoring(Mark::new()));
    }

    #[test]
    fn an_announcement_left_unused_too_long_vouches_for_nothing() {
        let announced = Announced::default();
        let long_ago = Instant::now().checked_sub(KEEP_UNUSED * 2).unwrap();
        announced.keep(sample(Path::new("/share/a")), long_ago);
        assert_eq!(announced.take(&[PathBuf::from("/share/a")]), vec![None]);
    }

    #[test]
    fn only_the_announced_inode_size_and_time_match() {
        let a = sample(Path::new("/share/a"));
        assert!(a.matches(42, 7, -1_500_000_000));
        assert!(!a.matches(43, 7, -1_500_000_000), "another file put there");
        assert!(!a.matches(42, 8, -1_500_000_000), "written to since");
        assert!(!a.matches(42, 7, 0), "written to since");
    }
}
