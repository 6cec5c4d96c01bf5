//! An exchange's two halves made one, and the events read between them held
//! back meanwhile (see `Reader::handle`).

use super::*;
use std::time::Instant;

/// How many events may wait behind a rename for its other half: each holds a
/// descriptor of its process.
const BEHIND_MAX: usize = 256;

/// A rename read and not handed on yet (see `Reader::renamed`).
pub(super) struct PendingRename {
    from: Option<PathBuf>,
    to: Option<PathBuf>,
    old: Entry,
    new: Entry,
    object: Option<Fid>,
    by: Actor,
    /// When it was read: the number of the read that brought it, and the time.
    read: (u64, Instant),
}

impl PendingRename {
    /// Whether events read now may still come before its other half: those of the
    /// read that brought it and of the next, or a moment after it was read. The
    /// kernel queues the other half right after it; counted in reads, a reader
    /// that lost the processor a while still waits for it.
    fn may_wait(&self, reads: u64) -> bool {
        let (read, at) = self.read;
        reads <= read + 1 || at.elapsed() < PAIRING
    }

    /// Whether `next` is this rename's other half in an exchange: a rename by the
    /// same process of the same two places the other way, moving another thing.
    fn reversed_by(&self, next: &Event) -> bool {
        let (Some(old), Some(new)) = (&next.old, &next.new) else {
            return false;
        };
        next.is(fanotify::FAN_RENAME)
            && next.pid == self.by.pid
            && self.old == *new
            && self.new == *old
            && self.object.is_some()
            && next.object.is_some()
            && self.object != next.object
    }
}

impl PendingRename {
    /// Whether `event` happened at one of the two places of this rename.
    fn names_a_place_of(&self, event: &Event) -> bool {
        [&event.entry, &event.old, &event.new]
            .into_iter()
            .flatten()
            .any(|e| *e == self.old || *e == self.new)
    }
}

impl Reader {
    /// Hands on `event` in queue order, but for one thing: the kernel queues the
    /// two halves of an exchange one after the other from the same process, and
    /// other events (another process anywhere on the filesystem, another thread
    /// of the same one writing, another process's renames elsewhere) may come
    /// between them. While a rename waits for its other half, every event but that
    /// half waits behind it, in order, and follows it: taken as the end of the
    /// pairing, it would make the exchange two renames, each taking the other
    /// file's history for replaced. The kernel holds both folders locked for the
    /// exchange, so nothing that waits changed the names exchanged. The same
    /// process's next rename, a queue overflow, too many events waiting, or the
    /// moment over (see `PendingRename::may_wait`) end the wait.
    pub(in crate::watch::whole_fs) fn handle(&mut self, event: Event) -> bool {
        let Some(first) = &self.pending else {
            return self.hand_on(event);
        };
        if first.reversed_by(&event) {
            return self.hand_on(event);
        }
        // The same process's next rename: the exchange's other half would have come
        // first. An event at either of the two places: no exchange holds them
        // locked, so the first half was a rename of its own (`mv a b; mv c b` by
        // another; `mv b a` would otherwise pass for the other half).
        let next_rename = event.is(fanotify::FAN_RENAME) && event.pid == first.by.pid;
        if !next_rename
            && !first.names_a_place_of(&event)
            && !event.is(fanotify::FAN_Q_OVERFLOW)
            && self.behind.len() < BEHIND_MAX
            && first.may_wait(self.reads)
        {
            self.behind.push(event);
            return true;
        }
        self.flush_rename() && self.handle(event)
    }

    /// A rename: one event with both places and the thing moved. A folder moves in
    /// the tree at once, by its own handle. Handed on when its other half or the
    /// end of the wait comes (see `handle`): the kernel reports an exchange as two
    /// renames, each moving its own thing, and the pair is handed on as one
    /// `Exchanged`.
    pub(super) fn renamed(
        &mut self,
        old: &Entry,
        new: &Entry,
        object: Option<&Fid>,
        is_dir: bool,
        by: &Actor,
    ) -> bool {
        let from = self.path_of(old);
        let to = self.path_of(new);
        if is_dir && let Some(fid) = object {
            let mut tree = self.tree();
            if to.is_some() {
                if from.is_none() {
                    // Moved in: what was remembered outside may be inside it now.
                    tree.forget_outside();
                }
                tree.set(
                    fid.clone(),
                    Place::Child {
                        parent: new.dir.clone(),
                        name: new.name.clone(),
                    },
                );
            } else {
                tree.set(fid.clone(), Place::Outside);
            }
        }
        for path in [&from, &to].into_iter().flatten() {
            self.writing.remove(path);
        }
        let this = PendingRename {
            from,
            to,
            old: old.clone(),
            new: new.clone(),
            object: object.cloned(),
            by: by.clone(),
            read: (self.reads, Instant::now()),
        };
        // Waiting still, the first half is this one's other half (see `handle`).
        let Some(first) = self.pending.take() else {
            self.pending = Some(this);
            return true;
        };
        let sent = match (first.from, first.to) {
            (Some(a), Some(b)) => self.send(FsEvent::Exchanged { a, b }, &first.by),
            (from, to) => {
                let first = PendingRename { from, to, ..first };
                self.send_rename(first) && self.send_rename(this)
            }
        };
        sent && self.hand_on_behind()
    }

    /// Hands on the rename waiting for a second half that did not come, then the
    /// events that waited behind it.
    pub(super) fn flush_rename(&mut self) -> bool {
        match self.pending.take() {
            Some(rename) => self.send_rename(rename) && self.hand_on_behind(),
            None => true,
        }
    }

    /// The events that waited behind a rename, in the order they came; one of them
    /// may be a rename that waits in its turn, and those after it behind it.
    fn hand_on_behind(&mut self) -> bool {
        std::mem::take(&mut self.behind)
            .into_iter()
            .all(|event| self.handle(event))
    }

    fn send_rename(&self, rename: PendingRename) -> bool {
        let (by, object) = (&rename.by, rename.object);
        match (rename.from, rename.to) {
            (Some(from), Some(to)) => self.send(FsEvent::Renamed { from, to, object }, by),
            (Some(path), None) => self.send(FsEvent::MovedOut { path }, by),
            (None, Some(path)) => {
                let moved_in = FsEvent::Changed {
                    path,
                    is_new: true,
                    object,
                };
                self.send(moved_in, by)
            }
            (None, None) => true,
        }
    }
}
