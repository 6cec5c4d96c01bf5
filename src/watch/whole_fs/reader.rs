//! The reading thread of the whole-filesystem source: the queue read in order,
//! each event turned into the daemon's (see the parent module for why each rule).

use super::*;

mod renames;

use renames::PendingRename;

pub(super) struct Reader {
    shared: Arc<Shared>,
    tx: Sender<Msg>,
    /// Files reported as being written and not closed since, by path.
    writing: HashSet<PathBuf>,
    /// A rename read, waiting to see whether the same process's next event is its
    /// other half.
    pending: Option<PendingRename>,
    /// Events read while a rename waits for its other half, handed on after it
    /// (see `handle`).
    behind: Vec<Event>,
    /// How many reads brought events so far.
    reads: u64,
    /// Deletions merged into an earlier event, waiting for their unlink's own
    /// place in the queue (see `handle`).
    deferred: Vec<Deletion>,
    /// Folders the daemon wrote in, looked at once to keep the vault's quiet.
    looked_at_for_quiet: HashSet<Fid>,
}

/// A deletion not handed on yet: where (folder handle and name), what, by whom.
struct Deletion {
    entry: Entry,
    object: Option<Fid>,
    is_dir: bool,
    by: Actor,
}

/// Bits that, beside a deletion in one event, say the kernel merged it into an
/// event queued before it.
const MERGED_WITH_DELETE: u64 =
    fanotify::FAN_CREATE | fanotify::FAN_MODIFY | fanotify::FAN_CLOSE_WRITE | fanotify::FAN_ATTRIB;

impl Reader {
    pub(super) fn new(shared: Arc<Shared>, tx: Sender<Msg>) -> Self {
        Self {
            shared,
            tx,
            writing: HashSet::new(),
            pending: None,
            behind: Vec::new(),
            reads: 0,
            deferred: Vec::new(),
            looked_at_for_quiet: HashSet::new(),
        }
    }

    pub(super) fn run(mut self) {
        let mut buf = vec![0u8; fanotify::READ_BUFFER];
        loop {
            // A rename waits for its other half a moment: the kernel queues the two
            // halves of an exchange one after the other, not at once.
            let timeout = self.pending.as_ref().map(|_| PAIRING);
            if !wait_readable(self.shared.group.as_fd(), timeout) {
                if !self.quiet() {
                    return;
                }
                continue;
            }
            // Read until the queue is empty, which `drained` needs to know.
            loop {
                match self.shared.group.read(&mut buf) {
                    Ok(events) if events.is_empty() => {
                        if !self.drained() {
                            return;
                        }
                        break;
                    }
                    Ok(events) => {
                        self.reads += 1;
                        for event in events {
                            if !self.handle(event) {
                                return;
                            }
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        let message = format!("reading fanotify events failed: {e}");
                        if self
                            .tx
                            .send(Msg::Fs(FsEvent::Error { message }, None))
                            .is_err()
                        {
                            return;
                        }
                        std::thread::sleep(Duration::from_millis(100));
                        break;
                    }
                }
            }
        }
    }

    /// The queue stayed empty a moment: the rename waiting (if any) had no other
    /// half, nor has one that waited behind it and waits in its turn now, and the
    /// queue is read to its end once what waited is handed on.
    pub(super) fn quiet(&mut self) -> bool {
        while self.pending.is_some() {
            if !self.flush_rename() {
                return false;
            }
        }
        self.drained()
    }

    /// The queue was read to its end: every event about a deleted folder's files
    /// has been read, so the folder can be forgotten.
    fn drained(&mut self) -> bool {
        // Events read but waiting behind a rename are not handed on yet: they may be
        // the place of a deletion held back, or about a deleted folder's files.
        if !self.behind.is_empty() {
            return true;
        }
        // The queue is read to its end: every deletion held back has happened by now.
        if !self.release_deletions() {
            return false;
        }
        let mut tree = self.shared.tree.lock().expect("never poisoned");
        for fid in std::mem::take(&mut tree.dead) {
            if let Some(Place::Child { .. }) = tree.nodes.get(&fid) {
                tree.nodes.remove(&fid);
            }
        }
        true
    }

    /// False once the daemon is gone.
    fn send(&self, event: FsEvent, by: &Actor) -> bool {
        tracing::trace!("fanotify: {event:?} by {}", by.pid);
        self.tx.send(Msg::Fs(event, Some(by.clone()))).is_ok()
    }

    /// What was there at `path` changed (a new name, new attributes): to be
    /// looked at again.
    fn send_changed(&self, path: &Path, object: Option<&Fid>, by: &Actor) -> bool {
        let path = path.to_owned();
        self.send(
            FsEvent::Changed {
                path,
                is_new: false,
                object: object.cloned(),
            },
            by,
        )
    }

    /// Hands on `event`, the rename waiting for its other half (if any) being the
    /// one `event` completes.
    fn hand_on(&mut self, mut event: Event) -> bool {
        if event.is(fanotify::FAN_Q_OVERFLOW) {
            if !self.release_deletions() {
                return false;
            }
            // Events were lost, renames among them: the tree is filled again by the
            // rescan's walk.
            self.shared
                .tree
                .lock()
                .expect("never poisoned")
                .keep_roots();
            self.writing.clear();
            return self.tx.send(Msg::Fs(FsEvent::Rescan, None)).is_ok();
        }
        if event.pid == self.shared.own_pid && self.own_write(&event) {
            return true;
        }
        let by = Actor::read_now(event.pid, event.pidfd.take());
        let is_dir = event.is(fanotify::FAN_ONDIR);
        if event.is(fanotify::FAN_RENAME) {
            let (Some(old), Some(new)) = (&event.old, &event.new) else {
                return true;
            };
            if !self.release_deletion_of_name(new, event.object.as_ref()) {
                return false;
            }
            return self.renamed(old, new, event.object.as_ref(), is_dir, &by);
        }
        // Events on a file's inode with no name (its link count, a write through a
        // descriptor of a file already unlinked) say nothing a path could, except
        // when a deletion merged into an earlier event waits for it (`deferred`).
        let Some(entry) = &event.entry else {
            if event.is(fanotify::FAN_ATTRIB)
                && let Some(fid) = &event.object
            {
                return self.release_deletion(fid);
            }
            return true;
        };
        if !self.release_deletion_of_name(entry, event.object.as_ref()) {
            return false;
        }
        let Some(path) = self.path_of(entry) else {
            return true;
        };
        let object = event.object.as_ref();
        // Another file or folder at the path now than the one the event is about:
        // it was renamed away (or exchanged, or removed and the name taken again)
        // since, and an event behind in the queue says so. Looked at by name now,
        // the path would show the other file's content as this one's, so the event
        // says nothing of the path; only the file being written is still held, by
        // its own handle. Asked only of what the answer changes (a creation, new
        // attributes) and not of a deletion, whose name is gone: it costs a lookup
        // of the whole path, and a write, a close or a deletion is handed on with
        // its object, looked at only while the name holds it (see
        // `capture::Job::object`).
        let elsewhere = event.is(fanotify::FAN_CREATE | fanotify::FAN_ATTRIB)
            && !event.is(fanotify::FAN_DELETE)
            && object.is_some_and(|fid| self.moved_away(fid, &path));
        if event.is(fanotify::FAN_CREATE) {
            if is_dir {
                if let Some(fid) = object {
                    self.tree().set(
                        fid.clone(),
                        Place::Child {
                            parent: entry.dir.clone(),
                            name: entry.name.clone(),
                        },
                    );
                }
                // Another folder there now (this one removed or renamed away, and
                // the name taken again): walked now, the path would show the other
                // folder's files as this one's, to be taken for deleted when this
                // one's removal is read. The other folder's own event comes later.
                if !elsewhere
                    && !self.send(
                        FsEvent::Changed {
                            path: path.clone(),
                            is_new: true,
                            object: object.cloned(),
                        },
                        &by,
                    )
                {
                    return false;
                }
            } else {
                // A new name for a file already there (`ln`), a link or a special
                // file: nothing is being written.
                let new_file = object
                    .and_then(|fid| self.open(fid, libc::O_PATH))
                    .and_then(|fd| rustix::fs::fstat(&fd).ok())
                    .is_some_and(|st| {
                        rustix::fs::FileType::from_raw_mode(st.st_mode)
                            == rustix::fs::FileType::RegularFile
                            && st.st_nlink == 1
                    });
                if new_file && !self.writing(&path, object, &by) {
                    return false;
                }
                if !elsewhere && !self.send_changed(&path, object, &by) {
                    return false;
                }
            }
        }
        if event.is(fanotify::FAN_MODIFY) && !is_dir && !self.writing(&path, object, &by) {
            return false;
        }
        if event.is(fanotify::FAN_ATTRIB) && !elsewhere && !self.send_changed(&path, object, &by) {
            return false;
        }
        if event.is(fanotify::FAN_CLOSE_WRITE) && !is_dir {
            self.writing.remove(&path);
            // Handed on even when the name holds another file now: the file was
            // reported being written at this path, and only its close ends that
            // (renamed on since, it stayed "being written" under each new name).
            // It names its object, so the name is not looked at for another file.
            let closed = FsEvent::Closed {
                path: path.clone(),
                object: object.cloned(),
            };
            if !self.send(closed, &by) {
                return false;
            }
        }
        if event.is(fanotify::FAN_DELETE) {
            self.writing.remove(&path);
            let deletion = Deletion {
                entry: entry.clone(),
                object: object.cloned(),
                is_dir,
                by,
            };
            if event.is(MERGED_WITH_DELETE) {
                // Merged into an event queued earlier: the deletion may have come
                // after renames queued since (its folder renamed, then the file
                // deleted there). Handed on where the unlink really was: the link
                // count's own event, queued at the unlink, or the queue's end.
                self.deferred.push(deletion);
                return true;
            }
            return self.send_deletion(deletion);
        }
        true
    }

    /// A deletion held back (see `deferred`) whose unlink's own event came: handed
    /// on now, at the path its folder has at this point of the queue.
    fn release_deletion(&mut self, fid: &Fid) -> bool {
        let Some(i) = self
            .deferred
            .iter()
            .position(|d| d.object.as_ref() == Some(fid))
        else {
            return true;
        };
        let deletion = self.deferred.remove(i);
        self.send_deletion(deletion)
    }

    /// A deletion held back (see `deferred`) of another thing than `object` at the
    /// same name: this event finds that name taken again, so the deletion happened
    /// before it, and is handed on now. Held to the queue's end instead (a folder's
    /// removal has no link count event of its own), it would be read against the
    /// name's newer owner: `mkdir y; rmdir y; mkdir y; echo > y/f`, merged by the
    /// kernel into one event for the first `y`, removed the second `y` with `y/f`.
    fn release_deletion_of_name(&mut self, entry: &Entry, object: Option<&Fid>) -> bool {
        let Some(i) = self
            .deferred
            .iter()
            .position(|d| d.entry == *entry && d.object.as_ref() != object)
        else {
            return true;
        };
        let deletion = self.deferred.remove(i);
        self.send_deletion(deletion)
    }

    /// Hands on every deletion held back, in the order they came.
    fn release_deletions(&mut self) -> bool {
        let deferred = std::mem::take(&mut self.deferred);
        deferred.into_iter().all(|d| self.send_deletion(d))
    }

    fn send_deletion(&mut self, deletion: Deletion) -> bool {
        let Some(path) = self.path_of(&deletion.entry) else {
            return true;
        };
        if deletion.is_dir
            && let Some(fid) = deletion.object
        {
            self.tree().dead.push(fid);
        }
        self.send(
            FsEvent::Removed {
                path,
                was_dir: deletion.is_dir,
            },
            &deletion.by,
        )
    }

    /// Whether `event`, the daemon's own, is one of its writes (anything but its
    /// sync cookies, which must come back), dropped here. The first in a folder
    /// of the vault tells the kernel to keep that folder quiet from then on.
    fn own_write(&mut self, event: &Event) -> bool {
        let entries: Vec<&Entry> = [&event.entry, &event.old, &event.new]
            .into_iter()
            .flatten()
            .collect();
        if entries.is_empty() || entries.iter().any(|e| is_cookie_name(&e.name)) {
            return false;
        }
        for entry in entries {
            self.quiet_if_vault(&entry.dir);
        }
        true
    }

    /// Tells the kernel to drop every event in the folder `dir` when it is one of
    /// the vault's, where only the daemon writes. Checked once per folder: the
    /// daemon writes in few others (SQLite's temporary files).
    fn quiet_if_vault(&mut self, dir: &Fid) {
        if self.looked_at_for_quiet.len() >= OUTSIDE_REMEMBERED {
            self.looked_at_for_quiet.clear();
        }
        // Asked on every one of the daemon's own events: no copy of the handle for
        // a folder looked at already.
        if self.looked_at_for_quiet.contains(dir) || !self.looked_at_for_quiet.insert(dir.clone()) {
            return;
        }
        // Not O_PATH: fanotify_mark refuses one (EBADF).
        let Some(fd) = self.open(dir, libc::O_RDONLY | libc::O_DIRECTORY) else {
            return;
        };
        if !fanotify::path_of(fd.as_fd()).is_ok_and(|p| p.starts_with(&self.shared.vault)) {
            return;
        }
        tracing::trace!("fanotify: the vault's folder {dir:?} is kept quiet");
        if let Err(e) = self.shared.group.ignore_folder(fd.as_fd()) {
            // Before Linux 6.0 (no FAN_MARK_IGNORE): its events are read and dropped.
            tracing::debug!("the vault's folders cannot be kept quiet: {e}");
        }
    }

    fn tree(&self) -> std::sync::MutexGuard<'_, Tree> {
        self.shared.tree.lock().expect("the tree is never poisoned")
    }

    /// The path of `entry` inside the protected folders, or `None` outside them.
    fn path_of(&mut self, entry: &Entry) -> Option<PathBuf> {
        let found = self.tree().find(&entry.dir);
        let dir = match found {
            Found::Inside(path) => path,
            Found::Outside => return None,
            Found::Unknown => self.look_up(&entry.dir)?,
        };
        if entry.name == "." {
            Some(dir)
        } else {
            Some(dir.join(&entry.name))
        }
    }

    /// A folder the tree does not know: where the kernel says it is now. Inside a
    /// protected folder, it and the folders above it up to that one go into the
    /// tree; outside, it is remembered as outside. Gone (ESTALE): see the opening.
    fn look_up(&mut self, fid: &Fid) -> Option<PathBuf> {
        let fd = self.open(fid, libc::O_PATH | libc::O_DIRECTORY)?;
        let path = fanotify::path_of(fd.as_fd()).ok()?;
        let roots = self.shared.roots.lock().expect("never poisoned").clone();
        let Some(root) = roots
            .iter()
            .filter(|r| path.starts_with(r))
            .max_by_key(|r| r.as_os_str().len())
        else {
            self.tree().set(fid.clone(), Place::Outside);
            return None;
        };
        // The chain from the folder up to the protected one, each by its handle.
        let mut at = fd;
        let mut here = path.clone();
        let mut fid = fid.clone();
        while here != *root {
            let (Some(name), Ok(parent)) =
                (here.file_name().map(OsStr::to_owned), open_parent(&at))
            else {
                return None;
            };
            let parent_fid = fanotify::fid_of(parent.as_fd()).ok()?;
            let known = !matches!(self.tree().find(&parent_fid), Found::Unknown);
            self.tree().set(
                fid,
                Place::Child {
                    parent: parent_fid.clone(),
                    name,
                },
            );
            if known {
                break;
            }
            fid = parent_fid;
            at = parent;
            here.pop();
        }
        Some(path)
    }

    /// Whether another file than `fid` is at `path` now.
    fn moved_away(&self, fid: &Fid, path: &Path) -> bool {
        fanotify::fid_at(path, fid.fsid).is_ok_and(|here| here != *fid)
    }

    /// Opens the object `fid` through a descriptor of its filesystem.
    fn open(&self, fid: &Fid, flags: libc::c_int) -> Option<OwnedFd> {
        let mounts = self.shared.mounts.lock().expect("never poisoned");
        let mount = mounts.get(&fid.fsid)?;
        fanotify::open_fid(mount.as_fd(), fid, flags).ok()
    }

    /// Reports that a file is being written, once until it is closed, held open by
    /// its own handle (see the opening).
    fn writing(&mut self, path: &Path, object: Option<&Fid>, by: &Actor) -> bool {
        if self.writing.contains(path) {
            return true;
        }
        if self.writing.len() >= WRITING_REMEMBERED {
            // Forgetting only costs a repeated report.
            self.writing.clear();
        }
        self.writing.insert(path.to_owned());
        let held = object.and_then(|fid| {
            Held::open_with(|| {
                self.open(fid, libc::O_RDONLY | libc::O_NONBLOCK | libc::O_NOFOLLOW)
                    .map(std::fs::File::from)
            })
        });
        self.send(
            FsEvent::Writing {
                path: path.to_owned(),
                held,
            },
            by,
        )
    }
}

fn is_cookie_name(name: &OsStr) -> bool {
    crate::names::is_cookie(Path::new(name))
}
