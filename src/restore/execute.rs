//! Carrying out a plan: folders first, files in parallel, each written in a folder
//! of the restore's own beside its place (see `staging::Staging`) and put in place
//! only where the name is still free, then folder metadata.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

use rustix::fs::{AtFlags, Mode, Timespec, Timestamps};

use crate::announce::{Announcement, Announcer, Ticket};
use crate::ids::ObjectId;
use crate::model::{EntryKind, Version};
use crate::names::Mark;
use crate::report::{FileResult, LossReason, Outcome};
use crate::vault::{DamageError, Vault, is_disk_full};

use super::copy::CopyError;

use super::staging::{self, Staging};
use super::{
    Action, DirCache, PlanItem, RestoreError, RestorePlan, beside_label, left_out, lost, result,
    safe_fs, same_content,
};

/// Reports progress: called with the number of files just finished.
pub type Progress<'a> = &'a (dyn Fn(u64) + Sync);

/// How many threads restore at once: enough to keep the disk busy with reads of the
/// vault and writes of the destination while others hash (8 on two cores was
/// clearly faster than 2 or 4 on a cold cache, on a quiet machine), few enough not
/// to thrash a spinning disk. On a loaded machine, 2, 4 and 8 alternating did not
/// tell themselves apart (docs/benchmarks.md, "Restore workers on ext4").
fn workers() -> usize {
    std::thread::available_parallelism()
        .map(|n| (n.get() * 4).clamp(4, 16))
        .unwrap_or(8)
}

/// How many folders to write in are kept at most (see `Shared::staging_for`): a
/// restore into 20,000 folders must not run out of descriptors.
const STAGING_OPEN_AT_MOST: usize = 64;

/// The read size of a restore: large files go in few syscalls.
const COPY_BUFFER: usize = 1 << 20;

/// What every restore worker shares.
struct Shared<'a> {
    vault: &'a Vault,
    /// Marks the folders files are written in (see `names::Mark`).
    mark: Mark,
    /// Those folders, one beside each folder written to, by destination and folder.
    staging: Mutex<HashMap<(PathBuf, PathBuf), std::sync::Arc<Staging>>>,
    /// Numbers the files written in them.
    counter: AtomicU64,
    is_root: bool,
    as_of: Option<i64>,
    /// The daemon, told about each file before it is renamed into place.
    announcer: Option<&'a Announcer>,
    /// Staged copies hashed on the way out: provisional name, hash, size.
    hashed: Mutex<Vec<(ObjectId, ObjectId, u64)>>,
}

/// Carries out a plan. Returns one result per file, in plan order.
/// `stop` is checked before each file: once set (Ctrl-C), the files being written
/// finish and the rest are reported as not restored yet. With an `announcer`, the
/// daemon hears of each file it is about to see appear (see `announce`); `mark` is
/// the one it was told, for the names this restore needs.
pub fn execute(
    plan: &RestorePlan,
    vault: &Vault,
    progress: Progress<'_>,
    stop: &AtomicBool,
    announcer: Option<&Announcer>,
    mark: Mark,
) -> Result<Vec<FileResult>, RestoreError> {
    let is_root = rustix::process::geteuid().is_root();
    let shared = Shared {
        vault,
        mark,
        staging: Mutex::new(HashMap::new()),
        counter: AtomicU64::new(0),
        is_root,
        // A name taken since the plan gets the same label the plan would have given.
        as_of: plan.as_of.or(plan.as_before),
        announcer,
        hashed: Mutex::new(Vec::new()),
    };
    // Only where something is to be written: a destination refused at planning
    // time holds only lost files.
    let bases: BTreeSet<&PathBuf> = plan
        .items
        .iter()
        .filter(|i| !matches!(i.action, Action::Lost(_) | Action::LeftOut))
        .map(|i| &i.base)
        .collect();
    // Folders first (shallow to deep, so each parent exists), files in parallel, then
    // folder metadata deepest first: writing a file inside changes a folder's mtime.
    // Each destination is found once, here; every worker writes through that folder
    // (a copy of its descriptor), never through its path found again.
    let mut folder_caches: HashMap<PathBuf, DirCache> = HashMap::new();
    for base in &bases {
        // Creates the destination itself, or says why it cannot be used.
        let cache = DirCache::create(base).map_err(|problem| RestoreError::Destination {
            path: (*base).clone(),
            problem,
        })?;
        folder_caches.insert((*base).clone(), cache);
    }
    for item in plan.items.iter().filter(|i| i.is_folder()) {
        // A folder that cannot be made shows up on the files inside it, as "blocked".
        if let Some(cache) = folder_caches.get_mut(&item.base) {
            let _ = cache.dir(&item.relative, true);
        }
    }

    let files: Vec<(usize, &PlanItem)> = plan.files().enumerate().collect();
    let parents: BTreeSet<(&PathBuf, &Path)> = files
        .iter()
        .map(|(_, i)| (&i.base, i.relative.parent().unwrap_or(Path::new(""))))
        .collect();
    for (base, parent) in parents {
        if let Some(cache) = folder_caches.get_mut(base)
            && let Ok(Some(dir)) = cache.dir(parent, false)
        {
            staging::clear_leftover_staging(dir, mark);
        }
    }
    let results: Mutex<Vec<Option<FileResult>>> = Mutex::new(vec![None; files.len()]);
    let next = AtomicUsize::new(0);
    // Set once when the destination disk fills: the files not yet written say why.
    let disk_full: OnceLock<LossReason> = OnceLock::new();
    let (results_ref, next, files_ref, disk_full_ref, shared) =
        (&results, &next, &files, &disk_full, &shared);
    std::thread::scope(|scope| {
        for _ in 0..workers() {
            let (results, files, disk_full) = (results_ref, files_ref, disk_full_ref);
            let mut caches: HashMap<PathBuf, DirCache> = folder_caches
                .iter()
                .filter_map(|(base, cache)| Some((base.clone(), cache.same_destination().ok()?)))
                .collect();
            scope.spawn(move || {
                // One buffer per worker: a fresh megabyte per small file costs more than its copy.
                let mut buf = vec![0u8; COPY_BUFFER];
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(&(slot, item)) = files.get(i) else {
                        break;
                    };
                    let outcome = match disk_full.get() {
                        _ if stop.load(Ordering::Relaxed) => {
                            result(item, Outcome::Stopped, Some(LossReason::Stopped), None)
                        }
                        Some(why) => lost(item, why.clone()),
                        None => {
                            let outcome = restore_one(item, shared, &mut caches, &mut buf);
                            if let Some(why @ LossReason::DestinationFull { .. }) = &outcome.reason
                            {
                                let _ = disk_full.set(why.clone());
                            }
                            outcome
                        }
                    };
                    results.lock().expect("never poisoned")[slot] = Some(outcome);
                    progress(1);
                }
            });
        }
    });

    // Before folders get their times back: removing them changes their folder's.
    let staging = std::mem::take(&mut *shared.staging.lock().expect("never poisoned"));
    for staging in staging.into_values() {
        if let Ok(staging) = std::sync::Arc::try_unwrap(staging) {
            staging.finish();
        }
    }
    // Only folders this restore made: one made by someone else since the plan (it
    // may have waited for a confirmation) keeps its owner, mode and times.
    let created: HashSet<(PathBuf, PathBuf)> = folder_caches
        .iter()
        .flat_map(|(base, cache)| cache.created.iter().map(|r| (base.clone(), r.clone())))
        .collect();
    for item in plan.items.iter().rev().filter(|i| i.is_folder()) {
        if created.contains(&(item.base.clone(), item.relative.clone()))
            && let Some(cache) = folder_caches.get_mut(&item.base)
            && let Ok(Some(dir)) = cache.dir(&item.relative, false)
        {
            set_metadata_fd(dir, &item.version, is_root);
        }
    }
    // One flush for the whole restore instead of one per file: the report is only
    // written once everything it lists is on disk.
    for cache in folder_caches.values() {
        let _ = rustix::fs::syncfs(cache.base_fd());
    }
    record_hashed(
        vault,
        std::mem::take(&mut *shared.hashed.lock().expect("never poisoned")),
    );
    Ok(results
        .into_inner()
        .expect("never poisoned")
        .into_iter()
        .map(|r| r.expect("every file gets a result"))
        .collect())
}

/// Tells the vault's writer the hashes of the staged copies this restore read
/// whole, so the hasher need not read them again. Best effort: the hasher finds
/// them itself otherwise (a read-only vault, say).
fn record_hashed(vault: &Vault, hashed: Vec<(ObjectId, ObjectId, u64)>) {
    if hashed.is_empty() {
        return;
    }
    let amendment = crate::amend::Amendment::Hashed {
        copies: hashed
            .iter()
            .map(|(staged, id, size)| (staged.to_hex(), id.to_hex(), *size))
            .collect(),
    };
    if let Err(e) = crate::amend::make(vault, &amendment) {
        tracing::debug!("the hashes found by this restore were not recorded: {e}");
    }
}

impl Shared<'_> {
    /// The folder to write in beside `parent` of `base` (whose descriptor is `dir`),
    /// made when first needed.
    fn staging_for(
        &self,
        base: &Path,
        parent: &Path,
        dir: &OwnedFd,
    ) -> io::Result<std::sync::Arc<Staging>> {
        let mut staging = self.staging.lock().expect("never poisoned");
        let key = (base.to_owned(), parent.to_owned());
        if let Some(made) = staging.get(&key) {
            return Ok(std::sync::Arc::clone(made));
        }
        if staging.len() >= STAGING_OPEN_AT_MOST {
            // Each holds two descriptors: those no worker writes in now are removed
            // (made again if a later file needs one there).
            let idle: Vec<(PathBuf, PathBuf)> = staging
                .iter()
                .filter(|(_, s)| std::sync::Arc::strong_count(s) == 1)
                .map(|(k, _)| k.clone())
                .collect();
            for key in idle {
                if let Some(done) = staging
                    .remove(&key)
                    .and_then(|s| std::sync::Arc::try_unwrap(s).ok())
                {
                    done.finish();
                }
            }
        }
        let made = std::sync::Arc::new(Staging::make(dir, self.mark)?);
        staging.insert(key, std::sync::Arc::clone(&made));
        Ok(made)
    }
}

fn restore_one(
    item: &PlanItem,
    shared: &Shared<'_>,
    caches: &mut HashMap<PathBuf, DirCache>,
    buf: &mut [u8],
) -> FileResult {
    let name = match &item.action {
        Action::Restore => item.relative.file_name().unwrap_or_default().to_owned(),
        Action::Beside(name) => name.clone(),
        Action::AlreadyPresent { at } => {
            return result(item, Outcome::AlreadyPresent, None, Some(at.clone()));
        }
        Action::LeftOut => return left_out(item),
        Action::Lost(why) => return lost(item, why.clone()),
        Action::Folder => unreachable!("folders are not files"),
    };
    let Some(cache) = caches.get_mut(&item.base) else {
        return lost(item, LossReason::DestinationUnopened);
    };
    let parent = item.relative.parent().unwrap_or(Path::new(""));
    let dir = match cache.dir(parent, true) {
        Ok(Some(dir)) => dir,
        Ok(None) => unreachable!("created when missing"),
        Err(problem) => return lost(item, LossReason::Blocked(problem.to_string())),
    };
    let staging = match shared.staging_for(&item.base, parent, dir) {
        Ok(staging) => staging,
        Err(e) => return Failure::Write(e).into_result(item),
    };
    let temp = OsString::from(shared.counter.fetch_add(1, Ordering::Relaxed).to_string());
    let written = match item.version.observed.kind {
        EntryKind::Symlink => {
            write_symlink(&staging, &temp, &item.version, shared.is_root).map(|()| None)
        }
        _ => {
            let target = item.base.join(parent).join(&name);
            write_file(&staging, &temp, &target, &item.version, shared, buf)
        }
    };
    match (written, shared.announcer) {
        (Err(failure), _) => {
            staging.discard(&temp);
            return failure.into_result(item);
        }
        // The daemon must know the file before it can see it under its name.
        (Ok(Some(ticket)), Some(announcer)) => announcer.wait(ticket),
        _ => {}
    }
    // Renamed into place only if the name is still free; if something appeared since
    // the plan, the next free name beside it is used.
    let mut final_name = name.clone();
    let label = beside_label(&item.version, shared.as_of);
    for n in 1..1000 {
        match staging.place(&temp, &final_name) {
            Ok(true) => {
                let to = item.base.join(parent).join(&final_name);
                let mut r = result(item, Outcome::Recovered, None, Some(to));
                r.beside = final_name != item.relative.file_name().unwrap_or_default();
                return r;
            }
            Ok(false) => {
                // Taken since the plan: by this very file (another restore, or someone
                // copying it back by hand) it is already present, never a second copy.
                if let Ok(existing) =
                    rustix::fs::statat(dir, &final_name, AtFlags::SYMLINK_NOFOLLOW)
                    && same_content(shared.vault, dir, &final_name, &existing, &item.version)
                {
                    staging.discard(&temp);
                    let at = item.base.join(parent).join(&final_name);
                    return result(item, Outcome::AlreadyPresent, None, Some(at));
                }
                final_name =
                    safe_fs::beside_name(item.relative.file_name().unwrap_or_default(), &label, n);
            }
            Err(e) => {
                staging.discard(&temp);
                return Failure::Write(e).into_result(item);
            }
        }
    }
    staging.discard(&temp);
    lost(item, LossReason::NoFreeName)
}

enum Failure {
    Vault(DamageError),
    Write(io::Error),
}

impl Failure {
    fn into_result(self, item: &PlanItem) -> FileResult {
        match self {
            Failure::Vault(DamageError::Damaged) => lost(item, LossReason::Damaged),
            Failure::Vault(e) => lost(item, LossReason::Missing(e.to_string())),
            Failure::Write(e) if is_disk_full(&e) => lost(
                item,
                LossReason::DestinationFull {
                    base: item.base.clone(),
                },
            ),
            Failure::Write(e) => lost(item, LossReason::WriteFailed(e.to_string())),
        }
    }
}

/// Writes a file's content and metadata as `temp` in `staging`. With an announcer,
/// the daemon is told, before the copying starts, that this file will appear at
/// `target`; the ticket returned is to wait on before putting it there.
fn write_file(
    staging: &Staging,
    temp: &OsStr,
    target: &Path,
    version: &Version,
    shared: &Shared<'_>,
    buf: &mut [u8],
) -> Result<Option<Ticket>, Failure> {
    let id = version
        .observed
        .object
        .as_ref()
        .ok_or(Failure::Vault(DamageError::Missing))?;
    // Read too: a clone or a copy in the kernel is read back to check its hash.
    let fd = staging.create(temp).map_err(Failure::Write)?;
    let file = std::fs::File::from(fd);
    let ticket = shared.announcer.and_then(|announcer| {
        announcer.announce(&Announcement {
            path: target.to_owned(),
            inode: file.metadata().ok()?.ino(),
            size: version.observed.size,
            mtime_ns: version.observed.mtime_ns,
            object: *id,
        })
    });
    let found = super::copy::copy_object(shared.vault, id, &file, buf).map_err(|e| match e {
        CopyError::Vault(damage) => Failure::Vault(damage),
        CopyError::Write(e) => Failure::Write(e),
    })?;
    if let Some((content, size)) = found {
        shared
            .hashed
            .lock()
            .expect("never poisoned")
            .push((*id, content, size));
    }
    // Start writing it to disk now, so the flush at the end of the restore waits for
    // little instead of writing everything at once after the last copy.
    crate::vault::start_writeback(&file);
    set_metadata_fd(&file, version, shared.is_root);
    Ok(ticket)
}

/// A link, made as `temp` in `staging`, where nobody else can put another file
/// at its name before its owner and times are set by that name.
fn write_symlink(
    staging: &Staging,
    temp: &OsStr,
    version: &Version,
    is_root: bool,
) -> Result<(), Failure> {
    let target = version
        .observed
        .link_target
        .as_ref()
        .ok_or(Failure::Vault(DamageError::Missing))?;
    let dir = staging.fd();
    rustix::fs::symlinkat(target.as_os_str(), dir, temp).map_err(|e| Failure::Write(e.into()))?;
    if is_root {
        let _ = rustix::fs::chownat(
            dir,
            temp,
            Some(rustix::fs::Uid::from_raw(version.observed.uid)),
            Some(rustix::fs::Gid::from_raw(version.observed.gid)),
            AtFlags::SYMLINK_NOFOLLOW,
        );
    }
    let _ = rustix::fs::utimensat(dir, temp, &times(version), AtFlags::SYMLINK_NOFOLLOW);
    Ok(())
}

/// Owner (when root), then mode (chown clears set-id bits), then times.
/// Files are created 0600, so they are never more readable than they were.
fn set_metadata_fd(fd: &impl AsFd, version: &Version, is_root: bool) {
    let o = &version.observed;
    if is_root {
        let _ = rustix::fs::fchown(
            fd,
            Some(rustix::fs::Uid::from_raw(o.uid)),
            Some(rustix::fs::Gid::from_raw(o.gid)),
        );
    }
    let mode = if o.mode == 0 && o.kind == EntryKind::Dir {
        0o755
    } else {
        o.mode
    };
    let _ = rustix::fs::fchmod(fd, Mode::from_raw_mode(mode));
    let _ = rustix::fs::futimens(fd, &times(version));
}

fn times(version: &Version) -> Timestamps {
    let mtime = version.observed.mtime_ns;
    let spec = Timespec {
        tv_sec: mtime.div_euclid(1_000_000_000),
        tv_nsec: mtime.rem_euclid(1_000_000_000) as _,
    };
    Timestamps {
        last_access: spec,
        last_modification: spec,
    }
}
