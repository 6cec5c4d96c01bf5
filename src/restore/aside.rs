//! The encrypted copies an overwrite incident left: moved aside into a folder of
//! their own in their protected folder, or deleted, before the files come back, as
//! the plan says. Each is moved or deleted only while it is still the very copy
//! the index recorded (same size and content); anything else there is left alone,
//! and the report says why. Folders are reached by descriptor, never through a
//! link, as restores reach their destination.
//!
//! The check and the act are about the same file: a copy is opened once and
//! checked through that descriptor; it is then renamed (into the folder for the
//! copies, or into a folder of the restore's own before it is deleted), and what
//! the rename took must be that very file, or it is given its name back. Between a
//! check and a rename by name, a user saving over it (a temporary file renamed
//! over the name, as office programs save) or exchanging it would otherwise have
//! had the good file moved or deleted.
//!
//! A copy is deleted only inside a folder nobody else can write: made 0700 by the
//! restore, under a name with its mark, and checked through its descriptor to be
//! the restore's (owner and mode) before anything is moved into it. Deleted by a
//! name in a folder users write, a copy checked and then deleted could have been a
//! user's good file renamed onto that name in between.

use std::collections::{HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, RenameFlags, Stat};

use crate::names::{self, Mark};

use crate::report::{EncryptedOutcome, EncryptedResult};
use crate::vault::Vault;

use super::{DirCache, EncryptedAction, EncryptedItem, RestorePlan, holds};

/// Moves or deletes the plan's encrypted copies; returns what became of each. The
/// folders they go into are made first, then `made` is called (the caller waits
/// there for the daemon to watch them), and only then are the copies moved: a
/// file moved into a folder not watched yet would look moved out of the share.
/// `mark` names the folders copies are deleted in (see `names::Mark`).
pub fn set_aside(
    plan: &RestorePlan,
    vault: &Vault,
    mark: Mark,
    made: &dyn Fn(),
) -> Vec<EncryptedResult> {
    let mut caches: HashMap<PathBuf, Result<DirCache, String>> = HashMap::new();
    let mut privates: HashMap<(PathBuf, PathBuf), Result<Private, String>> = HashMap::new();
    let mut looked: HashSet<(PathBuf, PathBuf)> = HashSet::new();
    let mut any = false;
    for item in &plan.encrypted {
        if item.action == EncryptedAction::Leave {
            continue;
        }
        let cache = caches
            .entry(item.base.clone())
            .or_insert_with(|| DirCache::create(&item.base).map_err(|e| e.to_string()));
        let Ok(cache) = cache else { continue };
        let parent = item.relative.parent().unwrap_or(Path::new(""));
        let key = (item.base.clone(), parent.to_owned());
        if looked.insert(key.clone())
            && let Ok(Some(from)) = folder(cache, parent, false)
        {
            // Interrupted before, a restore may have left copies in a folder of its own.
            super::staging::give_back_leftovers(&from, mark);
            if item.action == EncryptedAction::Delete {
                let private = Private::make(from, mark);
                any |= private.is_ok();
                privates.insert(key, private);
            }
        }
        if let EncryptedAction::MoveTo(to) = &item.action {
            // A folder that cannot be made shows on the copies, as they are moved.
            any |= folder(cache, to.parent().unwrap_or(Path::new("")), true).is_ok();
        }
    }
    if any {
        made();
    }
    let mut results = Vec::with_capacity(plan.encrypted.len());
    for item in &plan.encrypted {
        let left = |why: String| EncryptedResult {
            path: item.version.path.clone(),
            outcome: EncryptedOutcome::Left,
            why_left: Some(why),
            changed_by: item.version.changed_by.clone(),
        };
        if item.action == EncryptedAction::Leave {
            results.push(EncryptedResult {
                path: item.version.path.clone(),
                outcome: EncryptedOutcome::Left,
                why_left: None,
                changed_by: item.version.changed_by.clone(),
            });
            continue;
        }
        let cache = caches
            .entry(item.base.clone())
            .or_insert_with(|| DirCache::create(&item.base).map_err(|e| e.to_string()));
        let parent = item.relative.parent().unwrap_or(Path::new(""));
        let private = privates.get_mut(&(item.base.clone(), parent.to_owned()));
        let outcome = match cache {
            Ok(cache) => one(vault, cache, item, private),
            Err(why) => Err(why.clone()),
        };
        results.push(match outcome {
            Ok(outcome) => EncryptedResult {
                path: item.version.path.clone(),
                outcome,
                why_left: None,
                changed_by: item.version.changed_by.clone(),
            },
            Err(why) => left(why),
        });
    }
    for private in privates.into_values().flatten() {
        private.finish();
    }
    for cache in caches.values().flatten() {
        let _ = rustix::fs::syncfs(cache.base_fd());
    }
    results
}

/// A folder of the restore's own, beside the copies it deletes, and the folder it is in.
struct Private {
    dir: OwnedFd,
    parent: OwnedFd,
    name: OsString,
    made: (u64, u64),
    /// A file it could not give back its name (that name was taken again meanwhile):
    /// the folder then stays, opened to everyone who may read its parent.
    keeps: bool,
}

impl Private {
    /// Made 0700 in `parent`, and checked through its descriptor to be the one made:
    /// a folder someone else put at its name in between is not used.
    fn make(parent: OwnedFd, mark: Mark) -> Result<Self, String> {
        let cannot =
            |e: rustix::io::Errno| format!("no folder could be made to delete it in ({e})");
        for counter in 0..16 {
            let name = names::marked_name(names::ASIDE_TEMP, mark, counter);
            match rustix::fs::mkdirat(&parent, &name, Mode::from_raw_mode(0o700)) {
                Ok(()) => {}
                Err(rustix::io::Errno::EXIST) => continue,
                Err(e) => return Err(cannot(e)),
            }
            let dir = rustix::fs::openat(
                &parent,
                &name,
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(cannot)?;
            let st = rustix::fs::fstat(&dir).map_err(cannot)?;
            if !super::staging::is_ours(&st) {
                return Err("another folder took the name of the one made to delete it in".into());
            }
            return Ok(Self {
                dir,
                parent,
                name,
                made: (st.st_dev, st.st_ino),
                keeps: false,
            });
        }
        Err("no folder could be made to delete it in (no free name)".to_owned())
    }

    /// Removed when empty, by its name only while that name is still this folder;
    /// one that keeps a file is opened to those who may read the folder it is in.
    fn finish(self) {
        if self.keeps {
            if let Ok(st) = rustix::fs::fstat(&self.parent) {
                let mode = Mode::from_raw_mode(st.st_mode & 0o777);
                let _ = rustix::fs::fchmod(&self.dir, mode);
            }
            return;
        }
        if let Ok(st) = rustix::fs::statat(&self.parent, &self.name, AtFlags::SYMLINK_NOFOLLOW)
            && (st.st_dev, st.st_ino) == self.made
        {
            let _ = rustix::fs::unlinkat(&self.parent, &self.name, AtFlags::REMOVEDIR);
        }
    }
}

/// Why a copy is left when another file took its name between the check and the
/// act: said to the customer as it is.
const SWAPPED: &str = "another file took its name while it was being set aside";

fn one(
    vault: &Vault,
    cache: &mut DirCache,
    item: &EncryptedItem,
    private: Option<&mut Result<Private, String>>,
) -> Result<EncryptedOutcome, String> {
    let parent = item.relative.parent().unwrap_or(Path::new(""));
    let name = item.relative.file_name().unwrap_or_default();
    let from =
        folder(cache, parent, false)?.ok_or_else(|| "its folder is no longer there".to_owned())?;
    // The copy is opened once, and checked through that descriptor: whatever is done
    // by name afterwards is checked to have been done to this very file.
    let (copy, checked) = match open_copy(&from, name) {
        Ok(opened) => opened,
        Err(rustix::io::Errno::NOENT) => return Err("it is no longer there".to_owned()),
        Err(e) => return Err(format!("it could not be looked at ({e})")),
    };
    // Another file there now (saved since, or put back by hand) is not touched.
    if !holds(vault, &copy, &checked, &item.version) {
        return Err("it changed since it was encrypted".to_owned());
    }
    hold_for_test(TEST_PAUSE);
    match &item.action {
        EncryptedAction::Leave => Ok(EncryptedOutcome::Left),
        EncryptedAction::Delete => {
            let private = match private {
                Some(Ok(private)) => private,
                Some(Err(why)) => return Err(why.clone()),
                None => return Err("its folder is no longer there".to_owned()),
            };
            // Moved into the restore's own folder first, where nobody else can put a
            // file at its name: what is deleted there is what was moved, and that is
            // known to be the copy.
            match rustix::fs::renameat_with(&from, name, &private.dir, name, RenameFlags::NOREPLACE)
            {
                Ok(()) => {}
                Err(rustix::io::Errno::NOENT) => return Err("it is no longer there".to_owned()),
                Err(e) => return Err(format!("it could not be deleted ({e})")),
            }
            if let Err(why) = still_the_copy(&private.dir, name, &copy, &checked) {
                if put_back(&private.dir, name, &from, name) {
                    return Err(why);
                }
                // Its name taken once more meanwhile: it stays in that folder, which
                // stays, and the customer is told where it is.
                private.keeps = true;
                let at = cache.base().join(parent).join(&private.name);
                return Err(format!(
                    "{why}; that file is in {} now",
                    crate::words::display_path(&at)
                ));
            }
            hold_for_test(TEST_PAUSE_DELETE);
            rustix::fs::unlinkat(&private.dir, name, AtFlags::empty()).map_err(|e| {
                if !put_back(&private.dir, name, &from, name) {
                    private.keeps = true;
                }
                format!("it could not be deleted ({e})")
            })?;
            Ok(EncryptedOutcome::Deleted)
        }
        EncryptedAction::MoveTo(to) => {
            let to_parent = to.parent().unwrap_or(Path::new(""));
            let into = folder(cache, to_parent, true)?.expect("created when missing");
            let to_name = to.file_name().unwrap_or_default();
            match rustix::fs::renameat_with(&from, name, &into, to_name, RenameFlags::NOREPLACE) {
                Ok(()) => {}
                Err(rustix::io::Errno::EXIST) => {
                    return Err(format!(
                        "another file already has its name in {}",
                        crate::words::display_path(&cache.base().join(to_parent))
                    ));
                }
                Err(e) => return Err(format!("it could not be moved ({e})")),
            }
            // Moved by name: what arrived must be the file checked, or it goes back.
            if let Err(why) = still_the_copy(&into, to_name, &copy, &checked) {
                if put_back(&into, to_name, &from, name) {
                    return Err(why);
                }
                // Its name taken once more meanwhile: it stays with the copies, and
                // the customer is told where it is.
                return Err(format!(
                    "{why}; that file is in {} now",
                    crate::words::display_path(&cache.base().join(to_parent))
                ));
            }
            Ok(EncryptedOutcome::MovedTo(cache.base().join(to)))
        }
    }
}

/// The copy at `name`, opened without following a link, with what it was when
/// opened: a link itself, or a file reopened for reading from that descriptor (the
/// same file, whatever has its name by then). Nothing else is opened for reading:
/// opening a pipe or a device could block or act.
fn open_copy(dir: &OwnedFd, name: &OsStr) -> rustix::io::Result<(OwnedFd, Stat)> {
    let path = rustix::fs::openat(
        dir,
        name,
        OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let st = rustix::fs::fstat(&path)?;
    if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
        return Ok((path, st));
    }
    let proc = format!("/proc/self/fd/{}", path.as_raw_fd());
    let fd = rustix::fs::open(
        proc.as_str(),
        OFlags::RDONLY | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    Ok((fd, st))
}

/// Whether `name` in `dir` is the very file `copy` was opened on, unchanged since it
/// was checked (`checked`). Another file there (saved over it, or exchanged with it,
/// between the check and the rename) is not; nor is the copy written to meanwhile.
fn still_the_copy(
    dir: &OwnedFd,
    name: &OsStr,
    copy: &OwnedFd,
    checked: &Stat,
) -> Result<(), String> {
    let there = rustix::fs::openat(
        dir,
        name,
        OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .and_then(|fd| rustix::fs::fstat(&fd))
    .map_err(|_| SWAPPED.to_owned())?;
    if (there.st_dev, there.st_ino) != (checked.st_dev, checked.st_ino) {
        return Err(SWAPPED.to_owned());
    }
    let now = rustix::fs::fstat(copy).map_err(|e| format!("it could not be looked at ({e})"))?;
    let unchanged = now.st_size == checked.st_size
        && (now.st_mtime, now.st_mtime_nsec) == (checked.st_mtime, checked.st_mtime_nsec);
    match unchanged {
        true => Ok(()),
        false => Err("it changed since it was encrypted".to_owned()),
    }
}

/// Gives the file at `name` in `dir` back the name it had (`to` in `to_dir`), never
/// over another file: if its name was taken again meanwhile, it stays where it is.
fn put_back(dir: &OwnedFd, name: &OsStr, to_dir: &OwnedFd, to: &OsStr) -> bool {
    rustix::fs::renameat_with(dir, name, to_dir, to, RenameFlags::NOREPLACE).is_ok()
}

/// A folder below the protected folder, by descriptor; a folder made for the copies
/// gets the mode of the protected folder itself, not the 0700 it is made with.
fn folder(cache: &mut DirCache, relative: &Path, create: bool) -> Result<Option<OwnedFd>, String> {
    let made = cache.created.len();
    let fd = match cache.dir(relative, create) {
        Ok(Some(fd)) => rustix::io::fcntl_dupfd_cloexec(fd, 0).map_err(|e| e.to_string())?,
        Ok(None) => return Ok(None),
        Err(problem) => return Err(problem.to_string()),
    };
    if cache.created.len() > made
        && let Ok(st) = rustix::fs::fstat(cache.base_fd())
    {
        for made in cache.created.split_off(made) {
            if let Ok(Some(dir)) = cache.dir(&made, false) {
                let mode = rustix::fs::Mode::from_raw_mode(st.st_mode & 0o7777);
                let _ = rustix::fs::fchmod(dir, mode);
            }
        }
    }
    Ok(Some(fd))
}

/// Tests hold a restore here, between the check of a copy and the act on it, to
/// swap another file in at its name: the named FIFO is opened and read to its end,
/// so the test knows the restore waits once its own open returns.
const TEST_PAUSE: &str = "UNDELETE_TEST_PAUSE_ASIDE";

/// The same, once a copy is checked in the folder it is deleted in, just before it
/// is deleted.
const TEST_PAUSE_DELETE: &str = "UNDELETE_TEST_PAUSE_DELETE";

fn hold_for_test(pause: &str) {
    if let Some(fifo) = std::env::var_os(pause) {
        use std::io::Read;
        if let Ok(mut fifo) = std::fs::File::open(fifo) {
            let _ = fifo.read_to_end(&mut Vec::new());
        }
    }
}
