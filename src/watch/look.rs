//! Looking at paths on disk and recording what is there: a batch's pending
//! paths, the walk of a new or moved-in folder (adding each folder's watch before
//! reading it), and the full scan at start and after a lost event. A vault that
//! filled up is retried here. It never decides when to commit: `serve` does.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use super::capture::{self, Look, Rules};
use super::dirty::By;
use super::event::{Object, WatchError};
use super::{Daemon, DaemonError, LOOK_CHUNK, tree};
use crate::clock;
use crate::model::{EntryKind, Gone, Incomplete, Observed, Removal, Uncaptured};
use crate::vault::Likely;

/// What recording one look found: the kind on disk, whether the index already had
/// a current version of it, and, when a file's content changed from a copy the
/// index held, its inode (its other hard links changed too).
pub(super) struct Recorded {
    kind: EntryKind,
    was_known: bool,
    new_content_of: Option<u64>,
}

impl Daemon {
    pub(super) fn look_at_dirty(&mut self, now: i64) -> Result<(), DaemonError> {
        let dirty = self.dirty.drain();
        for chunk in dirty.chunks(LOOK_CHUNK) {
            let paths: Vec<PathBuf> = chunk.iter().map(|(p, ..)| p.clone()).collect();
            let by: Vec<By> = chunk.iter().map(|(_, _, by, _)| by.clone()).collect();
            let objects: Vec<Option<Object>> = chunk.iter().map(|(.., o)| o.clone()).collect();
            let found = self.look_at_all_by(&paths, &by, &objects, now)?;
            // A file written through one of its hard links changed under the others
            // too, and inotify named only the one used: those are looked at now.
            let mut linked = Vec::new();
            for (path, found) in paths.iter().zip(&found) {
                if let Some(inode) = found.as_ref().and_then(|f| f.new_content_of) {
                    linked.extend(self.index.current_with_inode(inode, path)?);
                }
            }
            if !linked.is_empty() {
                self.look_at_all(&linked, now)?;
            }
            for ((path, is_new, ..), found) in chunk.iter().zip(found) {
                if let Some(Recorded {
                    kind: EntryKind::Dir,
                    was_known,
                    ..
                }) = found
                    && (*is_new || !was_known)
                {
                    // Files made in a new folder before its watch existed are never
                    // reported; its watch is there now, so a walk finds all of them.
                    self.walk(path, now)?;
                }
            }
        }
        Ok(())
    }

    /// Brings the index up to date with `path` on disk. Returns the kind found, and
    /// whether the index already had a current version of it.
    pub(super) fn look_at(
        &mut self,
        path: &Path,
        now: i64,
    ) -> Result<Option<(EntryKind, bool)>, DaemonError> {
        let found = self.look_at_all(&[path.to_owned()], now)?;
        Ok(found
            .into_iter()
            .next()
            .flatten()
            .map(|f| (f.kind, f.was_known)))
    }

    /// `look_at` for many paths: what the index has is read here, the files are copied
    /// by the capture workers in parallel (hashing and copying is the slow part, and it
    /// touches neither the index nor the daemon), and the results are recorded here, in
    /// order, in the caller's transaction.
    pub(super) fn look_at_all(
        &mut self,
        paths: &[PathBuf],
        now: i64,
    ) -> Result<Vec<Option<Recorded>>, DaemonError> {
        self.look_at_all_by(paths, &[], &[], now)
    }

    /// `look_at_all`, each path changed by who `by` says at the same place (none
    /// known past its end): a new version records who made it. Where `objects` names
    /// the thing the events were about, the path is looked at only while it holds
    /// that thing (see `capture::Job::object`).
    pub(super) fn look_at_all_by(
        &mut self,
        paths: &[PathBuf],
        by: &[By],
        objects: &[Option<Object>],
        now: i64,
    ) -> Result<Vec<Option<Recorded>>, DaemonError> {
        let mut jobs = Vec::with_capacity(paths.len());
        let mut announced = self.announced.take(paths).into_iter();
        for (n, path) in paths.iter().enumerate() {
            let announced = announced.next().flatten();
            let Some(root) = self.root_for(path) else {
                jobs.push(None);
                continue;
            };
            let (root_id, relative) = (
                root.id,
                path.strip_prefix(&root.path).unwrap_or(path).to_owned(),
            );
            let current = self.index.current(path)?;
            // A restore's announcement says more than a guess from the history would,
            // and if the file is no longer as announced, its content may still be.
            let likely = match (&current, &announced) {
                (Some(_), _) => None,
                (None, Some(a)) => Some(Likely {
                    id: a.object,
                    size: a.size,
                }),
                (None, None) => self.index.latest(path)?.and_then(|v| {
                    v.observed.object.map(|id| Likely {
                        id,
                        size: v.observed.size,
                    })
                }),
            };
            let before = self.content_before(path, current.as_ref())?;
            let job = Some(capture::Job {
                by: by.get(n).cloned().flatten(),
                object: objects.get(n).cloned().flatten(),
                before,
                path: path.clone(),
                root_id,
                relative,
                current,
                likely,
                announced,
                name_gone: self.held_for_look.contains_key(path),
                held: self
                    .held_for_look
                    .get(path)
                    .or_else(|| self.closed.get(path))
                    .cloned(),
            });
            jobs.push(job);
        }
        // Each protected folder's own rules (`[[folder]]` tables), by folder id.
        let rules: HashMap<i64, Rules<'_>> = self
            .roots
            .iter()
            .map(|root| {
                let (excludes, max_file_size) = self.config.rules_for(&root.path);
                (
                    root.id,
                    Rules {
                        excludes,
                        max_file_size,
                    },
                )
            })
            .collect();
        let looks = capture::look_all(&self.vault, &rules, &jobs);
        let mut found = Vec::with_capacity(jobs.len());
        for (job, look) in jobs.into_iter().zip(looks) {
            found.push(match job {
                Some(job) => self.record(job, look, now)?,
                None => None,
            });
        }
        Ok(found)
    }

    /// The content a new copy of `path` is judged against for signs of encryption:
    /// its last copy with enough in it to judge, or for a new name that is an old
    /// one with an extension added, the old one's (renamed to it, or copied). A copy made while the file was
    /// empty or still being written (a program writes after it creates) says
    /// nothing: judged against it, the random bytes that follow would look normal.
    fn content_before(
        &self,
        path: &Path,
        current: Option<&crate::model::Version>,
    ) -> Result<Option<capture::Before>, DaemonError> {
        let copy_of = |v: &crate::model::Version| {
            (v.observed.kind == EntryKind::File
                && v.observed.uncaptured.is_none()
                && v.observed.incomplete.is_none()
                && v.observed.size >= crate::signs::LEAST_JUDGED as u64)
                .then_some(v.observed.object)
                .flatten()
        };
        if let Some(current) = current {
            let history;
            let judged = match copy_of(current) {
                Some(object) => Some((current, object)),
                None => {
                    history = self.index.history(path)?;
                    history.iter().rev().find_map(|v| Some((v, copy_of(v)?)))
                }
            };
            if let Some((version, object)) = judged {
                // Renamed to this name with an extension added, then rewritten: a new
                // extension as much as a copy made under it.
                let new_extension = self.index.renamed_from(version.id)?.is_some();
                return Ok(Some(capture::Before {
                    object,
                    new_extension,
                }));
            }
        }
        let Some(original) = crate::signs::without_added_extension(path) else {
            return Ok(None);
        };
        Ok(self
            .index
            .history(&original)?
            .iter()
            .rev()
            .find_map(copy_of)
            .map(|object| capture::Before {
                object,
                new_extension: true,
            }))
    }

    /// Records what looking at a path found.
    pub(super) fn record(
        &mut self,
        job: capture::Job,
        look: Look,
        now: i64,
    ) -> Result<Option<Recorded>, DaemonError> {
        let (observed, copied) = match look {
            Look::Missing | Look::Another => return Ok(None),
            Look::Uninspectable(e) => {
                tracing::warn!("cannot look at {}: {e}", job.path.display());
                return Ok(None);
            }
            Look::Found(observed) => (observed, false),
            // Only a copy actually written proves the vault has room again: a folder, a
            // link, a file whose content is already kept or one a restore announced
            // takes no space.
            Look::Copied(observed) => (observed, true),
            Look::Announced(observed) => {
                self.announced_used += 1;
                (observed, false)
            }
        };
        self.note_vault_state(&observed.uncaptured, copied, now)?;
        let mut observed = observed;
        if observed.kind != EntryKind::File {
            self.writing.remove(&job.path);
        } else if observed.object.is_some() && self.writing.contains_key(&job.path) {
            // Copied while a writer may still be at it: the last content may come later.
            observed.incomplete = Some(Incomplete::WhileWritten);
        }
        let kind = observed.kind;
        let was_known = job.current.is_some();
        let new_content_of = job
            .current
            .as_ref()
            .is_some_and(|cur| {
                kind == EntryKind::File
                    && cur.observed.object.is_some()
                    && cur.observed.object != observed.object
            })
            .then_some(observed.inode);
        match job.current {
            Some(cur)
                if cur.observed.kind == observed.kind
                    && cur.observed.object == observed.object
                    && cur.observed.link_target == observed.link_target
                    && cur.observed.uncaptured == observed.uncaptured
                    && !folder_access_changed(&cur.observed, &observed) =>
            {
                if cur.observed != observed {
                    self.index.update_metadata(cur.id, &observed)?;
                }
            }
            _ => {
                self.index.insert_version_by(
                    &job.path,
                    job.root_id,
                    &observed,
                    job.by.as_deref(),
                    now,
                )?;
            }
        }
        Ok(Some(Recorded {
            kind,
            was_known,
            new_content_of,
        }))
    }

    /// Copies again the current files that were skipped because the vault was full,
    /// stopping at the first that still does not fit.
    pub(super) fn retry_vault_full(&mut self, now: i64) -> Result<(), DaemonError> {
        for path in self
            .index
            .current_uncaptured(Uncaptured::VaultFull.code())?
        {
            self.look_at(&path, now)?;
            self.maybe_commit()?;
            if self.vault_full
                && self
                    .index
                    .current(&path)?
                    .is_some_and(|v| v.observed.uncaptured == Some(Uncaptured::VaultFull))
            {
                break;
            }
        }
        Ok(())
    }

    /// Looks at everything below `dir`, watching each folder before reading it. Each
    /// folder is opened by `tree`, never through a symlink: one swapped in for a
    /// folder during the walk is seen as a link, not followed.
    pub(super) fn walk(&mut self, dir: &Path, now: i64) -> Result<(), DaemonError> {
        let vault_root = self.vault.root().to_owned();
        let mut folders = vec![dir.to_owned()];
        let mut chunk = Vec::with_capacity(LOOK_CHUNK);
        while let Some(folder) = folders.pop() {
            let fd = match tree::open_dir(&folder) {
                Ok(fd) => fd,
                Err(e) if tree::is_gone(&e) => continue,
                Err(e) => {
                    tracing::warn!(
                        "cannot read the folder {} while scanning: {e}",
                        folder.display()
                    );
                    continue;
                }
            };
            self.watch_folder(&fd, &folder)?;
            let names = match tree::entries(&fd) {
                Ok(names) => names,
                Err(e) => {
                    tracing::warn!(
                        "cannot read the folder {} while scanning: {e}",
                        folder.display()
                    );
                    continue;
                }
            };
            drop(fd);
            for (name, is_dir) in names {
                let path = folder.join(name);
                if self.is_own(&path) || (is_dir && path.starts_with(&vault_root)) {
                    continue;
                }
                if is_dir {
                    folders.push(path.clone());
                }
                chunk.push(path);
                if chunk.len() == LOOK_CHUNK {
                    self.look_at_chunk(&mut chunk, now)?;
                }
            }
        }
        self.look_at_chunk(&mut chunk, now)
    }

    /// Adds the watch of a folder a walk holds open.
    pub(super) fn watch_folder(
        &mut self,
        dir: &std::os::fd::OwnedFd,
        path: &Path,
    ) -> Result<(), DaemonError> {
        use std::os::fd::AsFd;
        let Some(source) = &self.source else {
            return Ok(());
        };
        match source.watch(dir.as_fd(), path) {
            Ok(()) => {}
            // Folders below one already waiting are walked again with it.
            Err(WatchError::Limit) if self.unwatched.iter().any(|d| path.starts_with(d)) => {}
            Err(WatchError::Limit) => self.watch_limit_reached(Some(path.to_owned()))?,
            Err(e) => tracing::warn!("{e}"),
        }
        Ok(())
    }

    /// Looks at the paths a walk gathered, and empties `chunk` for the next ones.
    pub(super) fn look_at_chunk(
        &mut self,
        chunk: &mut Vec<PathBuf>,
        now: i64,
    ) -> Result<(), DaemonError> {
        if chunk.is_empty() {
            return Ok(());
        }
        self.look_at_all(chunk, now)?;
        self.since_commit += chunk.len() - 1;
        chunk.clear();
        self.maybe_commit()
    }

    /// Walks every protected folder, then marks what the index has but the disk does not.
    /// `last_alive` is when the daemon was last known running, for deletions found now.
    /// Runs inside the caller's transaction, committing as it goes.
    pub(super) fn full_scan(&mut self, last_alive: Option<i64>) -> Result<(), DaemonError> {
        let started = Instant::now();
        let now = clock::now();
        let roots: Vec<PathBuf> = self.roots.iter().map(|r| r.path.clone()).collect();
        for root in &roots {
            self.look_at(root, now)?;
            self.walk(root, now)?;
        }
        let gone = Gone {
            at: clock::now(),
            approx: true,
            last_seen: last_alive.or(Some(now)),
            removal: Removal::Deleted,
            by: None,
        };
        let mut missing = 0;
        for root in &roots {
            // Only "not there" is a deletion: a folder that cannot be read
            // (permissions, an I/O error, a share gone away) still holds its files.
            // Reached through a symlink is not there: not in the tree.
            missing += self.mark_missing(root, &gone, |path| {
                tree::lstat(path).is_err_and(|e| tree::is_gone(&e))
            })?;
        }
        self.commit()?;
        self.index.begin()?;
        self.last_fallback_scan = Instant::now();
        // Everything that happened before the scan started is now in the index.
        self.syncs.scan_finished(started);
        tracing::info!(
            "scan finished in {:.1}s; {missing} deletions found by the scan",
            started.elapsed().as_secs_f64()
        );
        Ok(())
    }
}

/// Whether a folder's owner or mode changed: that is a new version of the folder, not
/// an update of the old one, because who could reach the files inside it then is
/// what the mount's points in time must show (a folder opened to everyone today
/// must not open last week's files in it).
fn folder_access_changed(was: &Observed, now: &Observed) -> bool {
    was.kind == EntryKind::Dir && (was.mode != now.mode || was.uid != now.uid || was.gid != now.gid)
}
