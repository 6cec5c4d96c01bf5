//! Bringing files back: first a plan (what is selected, where each file goes,
//! what is already there, what is lost and why), then its execution.
//!
//! Planning writes nothing, so the plan can be shown and confirmed. Execution
//! never overwrites: identical content already in place counts as present,
//! different content gets the restored file beside it under a clear new name.
//! Files are written under a temporary name and renamed, every byte read from
//! the vault is hash-checked, and no symlink on the destination path is ever
//! followed. Running the same restore again restores nothing twice.
//!
//! It decides nothing the plan does not show.

mod lock;
mod safe_fs;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

use rustix::fs::{AtFlags, Mode, OFlags, Timespec, Timestamps};

use crate::announce::{Announcement, Announcer, Ticket};
use crate::clock;
use crate::ids::ObjectId;
use crate::index::{Index, IndexError};
use crate::model::{EntryKind, RestoreFilter, Version};
use crate::names;
use crate::report::{FileResult, LossReason, Outcome};
use crate::vault::{DamageError, Vault, is_disk_full};
use crate::words::display_path;

pub use lock::{RestoreLock, lock};
use safe_fs::DirCache;
pub use safe_fs::{PathProblem, write_replacing};

/// Where restored files go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// Back where they were.
    Original,
    /// Under this folder, at their path relative to the protected folder they came from.
    Under(PathBuf),
}

/// What the plan will do with one selected version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Write it at its place.
    Restore,
    /// Something different has its name: write it beside, under this name.
    Beside(OsString),
    /// The same content is already there (at `at`).
    AlreadyPresent { at: PathBuf },
    /// It cannot come back, and why.
    Lost(LossReason),
    /// A lock file of a program, left out on purpose (see `names::is_program_lock`).
    LeftOut,
    /// A folder: created if missing, its metadata restored if this restore created it
    /// (decided when restoring, not when planning: the plan may be minutes old).
    Folder,
}

#[derive(Debug, Clone)]
pub struct PlanItem {
    pub version: Version,
    /// The destination folder this item is written under.
    pub base: PathBuf,
    /// Its path below `base`.
    pub relative: PathBuf,
    pub action: Action,
}

impl PlanItem {
    /// Where it will be (or is) in the end.
    pub fn target(&self) -> PathBuf {
        match &self.action {
            Action::Beside(name) => self.base.join(self.relative.with_file_name(name)),
            Action::AlreadyPresent { at } => at.clone(),
            _ => self.base.join(&self.relative),
        }
    }

    pub fn is_folder(&self) -> bool {
        matches!(self.action, Action::Folder)
    }
}

/// Everything a restore will do, before it does it.
#[derive(Debug, Clone)]
pub struct RestorePlan {
    pub items: Vec<PlanItem>,
    pub destination: Destination,
    pub as_of: Option<i64>,
}

/// Totals of a plan, by what will happen.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlanTotals {
    pub files: u64,
    pub to_restore: u64,
    pub bytes_to_restore: u64,
    pub beside: u64,
    pub already_present: u64,
    pub lost: u64,
    /// Lock files of programs left out on purpose; not among `files`.
    pub left_out: u64,
}

impl RestorePlan {
    /// The files (not folders) of the plan.
    pub fn files(&self) -> impl Iterator<Item = &PlanItem> {
        self.items.iter().filter(|i| !i.is_folder())
    }

    pub fn totals(&self) -> PlanTotals {
        let mut t = PlanTotals::default();
        for item in self.files() {
            t.files += !matches!(item.action, Action::LeftOut) as u64;
            match &item.action {
                Action::Restore | Action::Beside(_) => {
                    t.to_restore += 1;
                    t.bytes_to_restore += item.version.observed.size;
                    t.beside += matches!(item.action, Action::Beside(_)) as u64;
                }
                Action::AlreadyPresent { .. } => t.already_present += 1,
                Action::Lost(_) => t.lost += 1,
                Action::LeftOut => t.left_out += 1,
                Action::Folder => {}
            }
        }
        t
    }

    /// What the plan's results would be, for a dry run's report.
    pub fn as_results(&self) -> Vec<FileResult> {
        self.files()
            .map(|item| match &item.action {
                Action::Restore | Action::Beside(_) => {
                    result(item, Outcome::Recovered, None, Some(item.target()))
                }
                Action::AlreadyPresent { at } => {
                    result(item, Outcome::AlreadyPresent, None, Some(at.clone()))
                }
                Action::Lost(why) => lost(item, why.clone()),
                Action::LeftOut => left_out(item),
                Action::Folder => unreachable!("folders are filtered out"),
            })
            .collect()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error(transparent)]
    Index(#[from] IndexError),
    #[error("cannot restore into {}: {problem}", display_path(path))]
    Destination { path: PathBuf, problem: PathProblem },
}

/// Selects versions and decides, for each, what a restore would do. Writes nothing.
pub fn plan(
    index: &Index,
    vault: &Vault,
    filter: &RestoreFilter,
    destination: &Destination,
) -> Result<RestorePlan, RestoreError> {
    let roots: HashMap<i64, PathBuf> = index.roots()?.into_iter().map(|r| (r.id, r.path)).collect();
    let mut versions = index.restore_candidates(filter)?;
    add_missing_folders(index, &mut versions, &roots)?;
    // Each destination is found once, by descriptor: the way to it is checked, and
    // every file planned below it is looked at through the folder found.
    let mut dirs: HashMap<PathBuf, Result<(PathBuf, Option<DirCache>), String>> = HashMap::new();
    let mut destination = destination.clone();
    if let Destination::Under(dir) = &destination {
        let found = safe_fs::resolve(dir, false).map_err(|problem| RestoreError::Destination {
            path: dir.clone(),
            problem,
        })?;
        let real = found.path.clone();
        dirs.insert(real.clone(), Ok(DirCache::from_resolved(found)));
        destination = Destination::Under(real);
    }
    let mut items = Vec::with_capacity(versions.len());
    for version in versions {
        let Some(root) = roots.get(&version.root_id) else {
            continue;
        };
        let relative = version
            .path
            .strip_prefix(root)
            .unwrap_or(&version.path)
            .to_owned();
        if relative.as_os_str().is_empty() {
            // The protected folder itself: it is the destination, created if missing.
            continue;
        }
        let wanted = match &destination {
            Destination::Original => root.clone(),
            Destination::Under(dir) => dir.clone(),
        };
        let found = dirs.entry(wanted.clone()).or_insert_with(|| {
            safe_fs::resolve(&wanted, false)
                .map(DirCache::from_resolved)
                .map_err(|problem| {
                    RestoreError::Destination {
                        path: wanted.clone(),
                        problem,
                    }
                    .to_string()
                })
        });
        let label = beside_label(&version, filter.as_of);
        let is_dir = version.observed.kind == EntryKind::Dir;
        let (base, action) = match found {
            // A protected folder that is now a planted link: its files say why, and
            // the other folders' files still come back. Its folders are not files.
            Err(_) if is_dir => continue,
            Err(why) => (wanted, Action::Lost(LossReason::Blocked(why.clone()))),
            // Brought back, a program's lock file says the document is still open.
            Ok((base, _))
                if !filter.include_lock_files
                    && !is_dir
                    && names::is_program_lock(&version.path) =>
            {
                (base.clone(), Action::LeftOut)
            }
            Ok((base, cache)) => {
                let action = decide(vault, cache.as_mut(), &version, &relative, &label);
                (base.clone(), action)
            }
        };
        items.push(PlanItem {
            version,
            base,
            relative,
            action,
        });
    }
    Ok(RestorePlan {
        items,
        destination,
        as_of: filter.as_of,
    })
}

/// The words in a restored-beside name: "deleted 2026-11-22" (stable, so a re-run
/// finds the file instead of making another copy), or "as of 2026-11-22 14.30".
fn beside_label(version: &Version, as_of: Option<i64>) -> String {
    match (as_of, version.deleted_at) {
        (Some(t), _) => format!("as of {}", clock::local(t).replace(':', ".")),
        (None, Some(t)) => format!("deleted {}", &clock::local(t)[..10]),
        (None, None) => "restored".to_owned(),
    }
}

/// Adds the folders above selected files that are not selected themselves, with their
/// last recorded metadata, so a folder recreated for a file gets its mode back.
fn add_missing_folders(
    index: &Index,
    versions: &mut Vec<Version>,
    roots: &HashMap<i64, PathBuf>,
) -> Result<(), IndexError> {
    let present: HashSet<PathBuf> = versions.iter().map(|v| v.path.clone()).collect();
    let mut wanted: BTreeSet<PathBuf> = BTreeSet::new();
    for v in versions.iter() {
        let Some(root) = roots.get(&v.root_id) else {
            continue;
        };
        let mut dir = v.path.parent();
        while let Some(d) = dir {
            if !d.starts_with(root) || d == root || present.contains(d) {
                break;
            }
            wanted.insert(d.to_owned());
            dir = d.parent();
        }
    }
    for dir in wanted {
        if let Some(latest) = index.latest(&dir)?
            && latest.observed.kind == EntryKind::Dir
        {
            versions.push(latest);
        }
    }
    versions.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(())
}

fn decide(
    vault: &Vault,
    dirs: Option<&mut DirCache>,
    version: &Version,
    relative: &Path,
    label: &str,
) -> Action {
    if let Err(problem) = safe_fs::check_relative(relative) {
        return Action::Lost(LossReason::UnsafeName(problem.to_string()));
    }
    let observed = &version.observed;
    if let Some(why) = &observed.uncaptured {
        return Action::Lost(LossReason::Uncaptured(why.clone()));
    }
    match observed.kind {
        EntryKind::Special => {
            return Action::Lost(LossReason::Special);
        }
        EntryKind::File => match &observed.object {
            None => return Action::Lost(LossReason::NeverCaptured),
            Some(id) if !vault.contains(id) => {
                return Action::Lost(LossReason::Missing(DamageError::Missing.to_string()));
            }
            Some(_) => {}
        },
        EntryKind::Symlink | EntryKind::Dir => {}
    }
    let Some(dirs) = dirs else {
        // The destination folder does not exist yet: nothing can be in the way.
        return if observed.kind == EntryKind::Dir {
            Action::Folder
        } else {
            Action::Restore
        };
    };
    let parent = relative.parent().unwrap_or(Path::new(""));
    let name = relative.file_name().unwrap_or_default();
    let mut candidate = name.to_owned();
    for n in 1.. {
        let existing = match dirs.stat(parent, &candidate) {
            Ok(existing) => existing,
            Err(problem) => return Action::Lost(LossReason::Blocked(problem.to_string())),
        };
        let Some(existing) = existing else {
            return match (observed.kind, n) {
                (EntryKind::Dir, _) => Action::Folder,
                (_, 1) => Action::Restore,
                _ => Action::Beside(candidate),
            };
        };
        if observed.kind == EntryKind::Dir {
            // Something else in a folder's place blocks the files inside it, and each of
            // them reports why; the folder itself is never counted as a file.
            return Action::Folder;
        }
        if same_as(dirs, parent, &candidate, &existing, version) {
            return Action::AlreadyPresent {
                at: dirs.base().join(parent).join(&candidate),
            };
        }
        candidate = safe_fs::beside_name(name, label, n);
    }
    unreachable!("the loop only ends by returning")
}

/// Whether what is at `parent/name` is exactly `version`'s content.
fn same_as(
    dirs: &mut DirCache,
    parent: &Path,
    name: &OsStr,
    existing: &rustix::fs::Stat,
    version: &Version,
) -> bool {
    let Ok(Some(dir)) = dirs.dir(parent, false) else {
        return false;
    };
    same_content(dir, name, existing, version)
}

/// Whether `name` in `dir` (whose metadata is `existing`) is exactly `version`'s
/// content: for a file, the same size and hash; for a link, the same target.
fn same_content(
    dir: &OwnedFd,
    name: &OsStr,
    existing: &rustix::fs::Stat,
    version: &Version,
) -> bool {
    let file_type = rustix::fs::FileType::from_raw_mode(existing.st_mode);
    match (version.observed.kind, file_type) {
        (EntryKind::Symlink, rustix::fs::FileType::Symlink) => {
            rustix::fs::readlinkat(dir, name, Vec::new())
                .ok()
                .map(|t| t.into_bytes())
                == version
                    .observed
                    .link_target
                    .as_ref()
                    .map(|t| t.as_os_str().as_bytes().to_vec())
        }
        (EntryKind::File, rustix::fs::FileType::RegularFile) => {
            existing.st_size as u64 == version.observed.size
                && version
                    .observed
                    .object
                    .is_some_and(|id| hash_at(dir, name).ok() == Some(id))
        }
        _ => false,
    }
}

fn hash_at(dir: &OwnedFd, name: &OsStr) -> io::Result<ObjectId> {
    let fd = rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let mut file = std::fs::File::from(fd);
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(ObjectId::from_bytes(*hasher.finalize().as_bytes()))
}

fn result(
    item: &PlanItem,
    outcome: Outcome,
    reason: Option<LossReason>,
    restored_to: Option<PathBuf>,
) -> FileResult {
    // Brought back, but not whole: never called recovered.
    let incomplete = item
        .version
        .observed
        .incomplete
        .filter(|_| outcome == Outcome::Recovered);
    let (outcome, reason) = match incomplete {
        Some(why) => (Outcome::Partial, Some(LossReason::Incomplete(why))),
        None => (outcome, reason),
    };
    FileResult {
        path: item.version.path.clone(),
        size: item.version.observed.size,
        outcome,
        reason,
        beside: matches!(item.action, Action::Beside(_)),
        restored_to,
        deleted_at: item.version.deleted_at,
    }
}

fn left_out(item: &PlanItem) -> FileResult {
    result(item, Outcome::LeftOut, Some(LossReason::ProgramLock), None)
}

fn lost(item: &PlanItem, reason: LossReason) -> FileResult {
    result(item, Outcome::Lost, Some(reason), None)
}

/// Reports progress: called with the number of files just finished.
pub type Progress<'a> = &'a (dyn Fn(u64) + Sync);

/// How many threads restore at once: enough to keep the disk busy with reads of the
/// vault and writes of the destination while others hash (8 on two cores was
/// clearly faster than 2 or 4 on a cold cache), few enough not to thrash a spinning disk.
fn workers() -> usize {
    std::thread::available_parallelism()
        .map(|n| (n.get() * 4).clamp(4, 16))
        .unwrap_or(8)
}

/// The read size of a restore: large files go in few syscalls.
const COPY_BUFFER: usize = 1 << 20;

/// What every restore worker shares.
struct Shared<'a> {
    vault: &'a Vault,
    /// Numbers the temporary names.
    counter: AtomicU64,
    is_root: bool,
    as_of: Option<i64>,
    /// The daemon, told about each file before it is renamed into place.
    announcer: Option<&'a Announcer>,
}

/// Carries out a plan. Returns one result per file, in plan order.
/// `stop` is checked before each file: once set (Ctrl-C), the files being written
/// finish and the rest are reported as not restored yet. With an `announcer`, the
/// daemon hears of each file it is about to see appear (see `announce`).
pub fn execute(
    plan: &RestorePlan,
    vault: &Vault,
    progress: Progress<'_>,
    stop: &AtomicBool,
    announcer: Option<&Announcer>,
) -> Result<Vec<FileResult>, RestoreError> {
    let is_root = rustix::process::geteuid().is_root();
    let shared = Shared {
        vault,
        counter: AtomicU64::new(0),
        is_root,
        as_of: plan.as_of,
        announcer,
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
            safe_fs::remove_leftovers(dir);
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
    Ok(results
        .into_inner()
        .expect("never poisoned")
        .into_iter()
        .map(|r| r.expect("every file gets a result"))
        .collect())
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
    let temp = names::own_name(
        names::RESTORE_TEMP,
        shared.counter.fetch_add(1, Ordering::Relaxed),
    );
    let written = match item.version.observed.kind {
        EntryKind::Symlink => {
            write_symlink(dir, &temp, &item.version, shared.is_root).map(|()| None)
        }
        _ => {
            let target = item.base.join(parent).join(&name);
            write_file(dir, &temp, &target, &item.version, shared, buf)
        }
    };
    match (written, shared.announcer) {
        (Err(failure), _) => {
            let _ = rustix::fs::unlinkat(dir, &temp, AtFlags::empty());
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
        match safe_fs::rename_no_replace(dir, &temp, &final_name) {
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
                    && same_content(dir, &final_name, &existing, &item.version)
                {
                    let _ = rustix::fs::unlinkat(dir, &temp, AtFlags::empty());
                    let at = item.base.join(parent).join(&final_name);
                    return result(item, Outcome::AlreadyPresent, None, Some(at));
                }
                final_name =
                    safe_fs::beside_name(item.relative.file_name().unwrap_or_default(), &label, n);
            }
            Err(e) => {
                let _ = rustix::fs::unlinkat(dir, &temp, AtFlags::empty());
                return Failure::Write(e).into_result(item);
            }
        }
    }
    let _ = rustix::fs::unlinkat(dir, &temp, AtFlags::empty());
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

/// Writes a file's content and metadata under `temp`. With an announcer, the daemon
/// is told, before the copying starts, that this file will appear at `target`; the
/// ticket returned is to wait on before renaming it there.
fn write_file(
    dir: &OwnedFd,
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
    let mut reader = shared.vault.open_object(id).map_err(Failure::Vault)?;
    let fd = rustix::fs::openat(
        dir,
        temp,
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
    )
    .map_err(|e| Failure::Write(e.into()))?;
    let mut file = std::fs::File::from(fd);
    let ticket = shared.announcer.and_then(|announcer| {
        announcer.announce(&Announcement {
            path: target.to_owned(),
            inode: file.metadata().ok()?.ino(),
            size: version.observed.size,
            mtime_ns: version.observed.mtime_ns,
            object: *id,
        })
    });
    loop {
        let n = match reader.read(buf) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                return Err(Failure::Vault(DamageError::Damaged));
            }
            Err(e) => return Err(Failure::Vault(DamageError::Unreadable(e))),
        };
        if n == 0 {
            break;
        }
        file.write_all(&buf[..n]).map_err(Failure::Write)?;
    }
    // Start writing it to disk now, so the flush at the end of the restore waits for
    // little instead of writing everything at once after the last copy.
    crate::vault::start_writeback(&file);
    set_metadata_fd(&file, version, shared.is_root);
    Ok(ticket)
}

fn write_symlink(
    dir: &OwnedFd,
    temp: &OsStr,
    version: &Version,
    is_root: bool,
) -> Result<(), Failure> {
    let target = version
        .observed
        .link_target
        .as_ref()
        .ok_or(Failure::Vault(DamageError::Missing))?;
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
