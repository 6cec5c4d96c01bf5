//! Looking at one path on disk and turning it into an `Observed` version,
//! copying the content into the vault when it is a file that may be kept.
//!
//! Looks with `fstatat` on the opened parent first (see `tree`) and never opens
//! anything that is not a regular file: a FIFO opened for reading blocks
//! forever, a followed symlink leaves the protected folder.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::fd::AsFd;
use std::path::PathBuf;

use rustix::fs::{AtFlags, FileType, Stat};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

use crate::announce::Announcement;
use crate::config::Excludes;
use crate::model::{EntryKind, Observed, Uncaptured, Version};
use crate::vault::{Likely, StoreError, Vault};

use super::event::{Held, Object};
use super::{fanotify, tree};

/// How many times a file that changes while being read is read again.
const READ_ATTEMPTS: usize = 3;

/// The rules that decide what is copied.
#[derive(Clone, Copy)]
pub struct Rules<'a> {
    pub excludes: &'a Excludes,
    pub max_file_size: Option<u64>,
}

/// What looking at a path found.
pub enum Look {
    /// Nothing there (any more).
    Missing,
    /// The path could not even be inspected (a parent folder is unreadable).
    Uninspectable(io::Error),
    /// Something is there; `Observed` says what, and the copy it has, if any, was
    /// already kept.
    Found(Observed),
    /// A file whose content was just copied into the vault.
    Copied(Observed),
    /// A file a restore wrote and announced, recorded with the announced content
    /// without reading it.
    Announced(Observed),
    /// Another file or folder than the one the events were about (`Job::object`)
    /// has the name now: nothing of it is this one's, and its own events come later.
    Another,
}

/// One path to look at, with what the index has for it.
pub struct Job {
    pub path: PathBuf,
    pub root_id: i64,
    /// Its path below the protected folder, for the exclusion rules.
    pub relative: PathBuf,
    pub current: Option<Version>,
    /// The content it probably has: what it had before it was deleted (a restored
    /// file comes back with it). Checked by hashing before anything is written.
    pub likely: Option<Likely>,
    /// What the restore that is writing it said it holds.
    pub announced: Option<Announcement>,
    /// The file held open since it was being written: read when its name is gone.
    pub held: Option<Held>,
    /// Its name is known to be unlinked: whatever has the name now is another file.
    pub name_gone: bool,
    /// The content a new copy is judged against for signs of encryption.
    pub before: Option<Before>,
    /// Who changed it, where the event source said: a new version records it.
    pub by: Option<std::sync::Arc<crate::model::Person>>,
    /// The thing the events were about, where the source names it (fanotify): the
    /// name is looked at only while it holds that one. Looked at late, the name may
    /// be its next owner's (renamed over it, or made again after a deletion whose
    /// event is still behind), and that one's content and metadata must never be
    /// recorded as this one's.
    pub object: Option<Object>,
}

/// The content a file had before, to compare a new copy with (`signs`).
#[derive(Debug, Clone, Copy)]
pub struct Before {
    pub object: crate::ids::ObjectId,
    /// It is the content of another name: this one is that name with an
    /// extension added (`report.docx` → `report.docx.locked`).
    pub new_extension: bool,
}

/// How many threads copy at once: four per core, because with small files most of
/// them wait for the disk (metadata reads, creating the copies) rather than hash.
/// On two cores, 100,000 small files from a cold cache took 44 s with 4, 36 s with 8
/// and 33 s with 16 threads; a tree of large photos was as fast with 8 as with 4.
/// Found out once: asking reads the cgroup's files, and it was asked for every batch.
fn workers() -> usize {
    static WORKERS: OnceLock<usize> = OnceLock::new();
    *WORKERS.get_or_init(|| {
        std::thread::available_parallelism()
            .map(|n| (n.get() * 4).clamp(4, 16))
            .unwrap_or(8)
    })
}

/// Looks at every job (`None` jobs give `Missing`) in parallel; results in job order.
/// `rules` are by protected folder id.
pub fn look_all(vault: &Vault, rules: &HashMap<i64, Rules<'_>>, jobs: &[Option<Job>]) -> Vec<Look> {
    let look_one = |job: &Option<Job>| {
        let Some(job) = job else {
            return Look::Missing;
        };
        match rules.get(&job.root_id) {
            Some(rules) => look(vault, rules, job),
            // Never "missing": that would record a deletion.
            None => Look::Uninspectable(io::Error::other("no rules for its protected folder")),
        }
    };
    // Only files to read need a thread of their own: a file a restore announced is
    // looked at, not read.
    let to_read = jobs
        .iter()
        .filter(|job| job.as_ref().is_some_and(|job| job.announced.is_none()))
        .count();
    let workers = workers().min(to_read);
    if workers <= 1 {
        // One file (an event while idle), or none to read: no thread to start.
        return jobs.iter().map(look_one).collect();
    }
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<(usize, Look)>> = Mutex::new(Vec::with_capacity(jobs.len()));
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(job) = jobs.get(i) else {
                        break;
                    };
                    let look = look_one(job);
                    results.lock().expect("never poisoned").push((i, look));
                }
            });
        }
    });
    let mut results = results.into_inner().expect("never poisoned");
    results.sort_unstable_by_key(|(i, _)| *i);
    results.into_iter().map(|(_, look)| look).collect()
}

/// Looks at the job's path and copies it into the vault unless its current version
/// already holds the same content. Through the opened parent folder (see `tree`):
/// a path that now passes through a symlink is not inside the tree.
pub fn look(vault: &Vault, rules: &Rules<'_>, job: &Job) -> Look {
    if job.name_gone {
        return look_held(vault, rules, job);
    }
    let found = tree::open_parent(&job.path).and_then(|(dir, name)| {
        let st = rustix::fs::statat(&dir, &name, AtFlags::SYMLINK_NOFOLLOW)?;
        Ok((dir, name, st))
    });
    let (dir, name, st) = match found {
        Ok(found) => found,
        Err(e) if tree::is_gone(&e) => return look_held(vault, rules, job),
        Err(e) => return Look::Uninspectable(e),
    };
    if let Some(object) = &job.object
        && !named_is(&dir, &name, object)
    {
        // Still held open since it was written, its content is its own.
        let held_is_it = job
            .held
            .as_ref()
            .is_some_and(|held| fanotify::fid_of(held.file().as_fd()).is_ok_and(|f| f == *object));
        return if held_is_it {
            look_held(vault, rules, job)
        } else {
            Look::Another
        };
    }
    let mut observed = observed_from(&st);
    match observed.kind {
        EntryKind::Dir => {}
        EntryKind::Symlink => match tree::read_link_at(&dir, &name) {
            Ok(target) => observed.link_target = Some(target),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Look::Missing,
            Err(e) => {
                observed.uncaptured = Some(Uncaptured::Unreadable {
                    error: describe(&e),
                })
            }
        },
        EntryKind::Special => {
            observed.uncaptured = Some(Uncaptured::Special {
                what: special_name(&st).to_owned(),
            })
        }
        EntryKind::File => {
            let open = || {
                let file = tree::open_file_at(&dir, &name)?;
                // The name may have changed hands since it was looked at: read as
                // gone, never as this one's content.
                match &job.object {
                    Some(object) if fanotify::fid_of(file.as_fd()).is_ok_and(|f| f != *object) => {
                        Err(io::ErrorKind::NotFound.into())
                    }
                    _ => Ok(file),
                }
            };
            return look_file(vault, rules, job, observed, open);
        }
    }
    Look::Found(observed)
}

/// Whether the name `name` in `dir` holds `object` now. A handle that cannot be
/// had says nothing either way: looked at as before.
fn named_is(dir: &impl AsFd, name: &std::ffi::OsStr, object: &Object) -> bool {
    !fanotify::fid_in(dir.as_fd(), name, object.fsid).is_ok_and(|here| here != *object)
}

/// A file whose name is gone, through the descriptor held since it was being
/// written (`Job::held`): its content is still there until the last close.
fn look_held(vault: &Vault, rules: &Rules<'_>, job: &Job) -> Look {
    use std::io::{Seek, SeekFrom};
    let Some(held) = &job.held else {
        return Look::Missing;
    };
    let Ok(st) = rustix::fs::fstat(held.file()) else {
        return Look::Missing;
    };
    let open = || {
        let mut file = held.file().try_clone()?;
        file.seek(SeekFrom::Start(0))?;
        Ok(file)
    };
    look_file(vault, rules, job, observed_from(&st), open)
}

/// The file part of `look`: kept out by a rule, the same content as kept, what a
/// restore announced, or copied through `open`.
fn look_file(
    vault: &Vault,
    rules: &Rules<'_>,
    job: &Job,
    mut observed: Observed,
    open: impl Fn() -> io::Result<File>,
) -> Look {
    let (relative, current) = (&job.relative, job.current.as_ref());
    if let Some(rule) = rules.excludes.matching_rule(relative) {
        observed.uncaptured = Some(Uncaptured::Excluded {
            rule: rule.to_owned(),
        });
    } else if rules.max_file_size.is_some_and(|max| observed.size > max) {
        observed.uncaptured = Some(Uncaptured::TooLarge {
            limit: rules.max_file_size.unwrap_or_default(),
        });
    } else if let Some(kept) = current.filter(|c| same_content(c, &observed)) {
        // Same size, times and inode as a copy already made: nothing was written.
        observed.object = kept.observed.object;
    } else if let Some(object) = job
        .announced
        .as_ref()
        .filter(|a| a.matches(observed.inode, observed.size, observed.mtime_ns))
        .map(|a| a.object)
        // A staged copy may be named by its hash and removed at any commit: a
        // version must never come to point at it again.
        .filter(|id| !id.is_staged() && vault.contains(id))
    {
        // The same rule, for the copy a restore just made from the vault.
        observed.object = Some(object);
        return Look::Announced(observed);
    } else {
        // A change of metadata alone (or of content with the mtime put back) is
        // hashed before anything is written: content already kept costs no copy.
        let likely = current
            .filter(|c| c.observed.kind == EntryKind::File && c.observed.uncaptured.is_none())
            .and_then(|c| {
                c.observed.object.map(|id| Likely {
                    id,
                    size: c.observed.size,
                })
            })
            .or(job.likely);
        let look = copy_file(vault, open, observed, rules.max_file_size, likely);
        return with_signs(vault, job.before, look);
    }
    Look::Found(observed)
}

/// Adds to a new copy the signs that it is the content before, encrypted. Judged
/// from the vault's copies, which hold exactly what was read.
fn with_signs(vault: &Vault, before: Option<Before>, look: Look) -> Look {
    let Some(before) = before else {
        return look;
    };
    let (mut observed, copied) = match look {
        Look::Copied(observed) => (observed, true),
        Look::Found(observed) => (observed, false),
        other => return other,
    };
    if let Some(object) = observed.object.filter(|o| *o != before.object) {
        let sample = |id| {
            vault
                .sample(&id, crate::signs::SAMPLE_BYTES)
                .unwrap_or_default()
        };
        let mut signs = crate::signs::Signs::of_change(&sample(before.object), &sample(object));
        if before.new_extension && !signs.is_empty() {
            signs = signs.with(crate::signs::Signs::NEW_EXTENSION);
        }
        observed.signs = signs;
    }
    if copied {
        Look::Copied(observed)
    } else {
        Look::Found(observed)
    }
}

/// Whether the version already kept is certainly this content, without reading it.
/// Size, mtime and inode are not enough: `touch -r`, `rsync --inplace -t` and photo
/// tools put the mtime back after writing. Every write moves the change time, and
/// no user can set it back; a version recorded without one is read again.
fn same_content(current: &Version, now: &Observed) -> bool {
    let was = &current.observed;
    was.kind == EntryKind::File
        && was.object.is_some()
        && was.uncaptured.is_none()
        && was.size == now.size
        && was.mtime_ns == now.mtime_ns
        && was.ctime_ns != 0
        && was.ctime_ns == now.ctime_ns
        && was.inode == now.inode
}

/// Copies a regular file into the vault; reads it again if it changed meanwhile.
/// `open` opens it afresh for each attempt.
fn copy_file(
    vault: &Vault,
    open: impl Fn() -> io::Result<File>,
    mut observed: Observed,
    limit: Option<u64>,
    likely: Option<Likely>,
) -> Look {
    for _ in 0..READ_ATTEMPTS {
        // O_NOFOLLOW and O_NONBLOCK: if the file was swapped for a link or a FIFO since
        // we looked, opening fails or returns at once instead of leaving the tree or hanging.
        let mut file = match open() {
            Ok(file) => file,
            Err(e) if tree::is_gone(&e) => return Look::Missing,
            Err(e) => return unreadable(observed, &e),
        };
        let before = match rustix::fs::fstat(&file) {
            Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::RegularFile => st,
            Ok(st) => {
                // Replaced by something else between the look and the open.
                let mut other = observed_from(&st);
                if other.kind == EntryKind::Special {
                    other.uncaptured = Some(Uncaptured::Special {
                        what: special_name(&st).to_owned(),
                    });
                }
                return Look::Found(other);
            }
            Err(e) => return unreadable(observed, &e.into()),
        };
        let stored = match vault.store_file(&mut file, limit.unwrap_or(u64::MAX), likely) {
            Ok(stored) => stored,
            Err(StoreError::TooLarge(limit)) => {
                // It grew past the limit after we looked: recorded as it is now, never kept.
                let mut grown = observed_from(&rustix::fs::fstat(&file).unwrap_or(before));
                grown.uncaptured = Some(Uncaptured::TooLarge { limit });
                return Look::Found(grown);
            }
            Err(StoreError::Source(e)) => return unreadable(observed, &e),
            Err(StoreError::Vault(e)) if e.is_full() => {
                observed.uncaptured = Some(Uncaptured::VaultFull);
                return Look::Found(observed);
            }
            Err(StoreError::Vault(e)) => {
                tracing::error!("{e}");
                observed.uncaptured = Some(Uncaptured::Unreadable {
                    error: format!("the vault could not be written: {e}"),
                });
                return Look::Found(observed);
            }
        };
        let after = match rustix::fs::fstat(&file) {
            Ok(st) => st,
            Err(e) => {
                vault.discard(&stored);
                return unreadable(observed, &e.into());
            }
        };
        if unchanged_while_read(&before, &after, stored.size) {
            observed = observed_from(&after);
            observed.object = Some(stored.id);
            return if stored.is_new {
                Look::Copied(observed)
            } else {
                Look::Found(observed)
            };
        }
        // This copy will not be recorded: it must not stay in the vault either.
        vault.discard(&stored);
        tracing::debug!("a file changed while it was read; reading again");
    }
    observed.uncaptured = Some(Uncaptured::Changing);
    Look::Found(observed)
}

fn unchanged_while_read(before: &Stat, after: &Stat, read: u64) -> bool {
    before.st_size == after.st_size
        && after.st_size as u64 == read
        && before.st_mtime == after.st_mtime
        && before.st_mtime_nsec == after.st_mtime_nsec
        && before.st_ctime == after.st_ctime
        && before.st_ctime_nsec == after.st_ctime_nsec
}

fn unreadable(mut observed: Observed, e: &io::Error) -> Look {
    observed.uncaptured = Some(Uncaptured::Unreadable { error: describe(e) });
    Look::Found(observed)
}

/// An I/O error in words a customer can read out ("permission denied").
fn describe(e: &io::Error) -> String {
    let text = e.to_string();
    match text.find(" (os error") {
        Some(cut) => text[..cut].to_lowercase(),
        None => text.to_lowercase(),
    }
}

pub fn kind_of(st: &Stat) -> EntryKind {
    match FileType::from_raw_mode(st.st_mode) {
        FileType::RegularFile => EntryKind::File,
        FileType::Directory => EntryKind::Dir,
        FileType::Symlink => EntryKind::Symlink,
        _ => EntryKind::Special,
    }
}

fn special_name(st: &Stat) -> &'static str {
    match FileType::from_raw_mode(st.st_mode) {
        FileType::Fifo => "named pipe (FIFO)",
        FileType::Socket => "socket",
        FileType::BlockDevice | FileType::CharacterDevice => "device node",
        _ => "special file",
    }
}

pub fn observed_from(st: &Stat) -> Observed {
    let kind = kind_of(st);
    Observed {
        kind,
        object: None,
        size: if kind == EntryKind::Dir {
            0
        } else {
            st.st_size as u64
        },
        mtime_ns: st.st_mtime * 1_000_000_000 + st.st_mtime_nsec as i64,
        ctime_ns: st.st_ctime * 1_000_000_000 + st.st_ctime_nsec as i64,
        mode: st.st_mode & 0o7777,
        uid: st.st_uid,
        gid: st.st_gid,
        inode: st.st_ino,
        link_target: None,
        uncaptured: None,
        incomplete: None,
        signs: crate::signs::Signs::NONE,
    }
}
