//! The encrypted copies an overwrite incident left: moved aside into a folder of
//! their own in their protected folder, or deleted, before the files come back, as
//! the plan says. Each is moved or deleted only while it is still the very copy
//! the index recorded (same size and content); anything else there is left alone,
//! and the report says why. Folders are reached by descriptor, never through a
//! link, as restores reach their destination.
//!
//! The check and the act are about the same file: a copy is opened once and
//! checked through that descriptor; it is then renamed (into the folder for the
//! copies, or to a name of the program's own before it is deleted), and what the
//! rename took must be that very file, or it is given its name back. Between a
//! check and a rename by name, a user saving over it (a temporary file renamed
//! over the name, as office programs save) or exchanging it would otherwise have
//! had the good file moved or deleted.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, RenameFlags, Stat};

use crate::names;

use crate::report::{EncryptedOutcome, EncryptedResult};
use crate::vault::Vault;

use super::{DirCache, EncryptedAction, EncryptedItem, RestorePlan, holds};

/// Moves or deletes the plan's encrypted copies; returns what became of each. The
/// folders they go into are made first, then `made` is called (the caller waits
/// there for the daemon to watch them), and only then are the copies moved: a
/// file moved into a folder not watched yet would look moved out of the share.
pub fn set_aside(plan: &RestorePlan, vault: &Vault, made: &dyn Fn()) -> Vec<EncryptedResult> {
    let mut caches: HashMap<PathBuf, Result<DirCache, String>> = HashMap::new();
    let mut any = false;
    for item in &plan.encrypted {
        if let EncryptedAction::MoveTo(to) = &item.action {
            let cache = caches
                .entry(item.base.clone())
                .or_insert_with(|| DirCache::create(&item.base).map_err(|e| e.to_string()));
            if let Ok(cache) = cache {
                // A folder that cannot be made shows on the copies, as they are moved.
                any |= folder(cache, to.parent().unwrap_or(Path::new("")), true).is_ok();
            }
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
        let outcome = match cache {
            Ok(cache) => one(vault, cache, item),
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
    for cache in caches.values().flatten() {
        let _ = rustix::fs::syncfs(cache.base_fd());
    }
    results
}

/// Why a copy is left when another file took its name between the check and the
/// act: said to the customer as it is.
const SWAPPED: &str = "another file took its name while it was being set aside";

fn one(
    vault: &Vault,
    cache: &mut DirCache,
    item: &EncryptedItem,
) -> Result<EncryptedOutcome, String> {
    let parent = item.relative.parent().unwrap_or(Path::new(""));
    let name = item.relative.file_name().unwrap_or_default();
    let from =
        folder(cache, parent, false)?.ok_or_else(|| "its folder is no longer there".to_owned())?;
    // Interrupted before, a restore may have left a copy under a name of its own.
    super::safe_fs::remove_leftovers(&from);
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
            // Taken from its name first (a name nobody else uses, in the same folder),
            // so what is deleted is what was taken, and that is known to be the copy.
            let private = take_aside(&from, name)?;
            if let Err(why) = still_the_copy(&from, &private, &copy, &checked) {
                // Not given back only when its name was taken again meanwhile: then the
                // next restore here gives it back (`safe_fs::remove_leftovers`).
                put_back(&from, &private, &from, name);
                return Err(why);
            }
            hold_for_test(TEST_PAUSE_DELETE);
            rustix::fs::unlinkat(&from, &private, AtFlags::empty()).map_err(|e| {
                put_back(&from, &private, &from, name);
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

/// Renames `name` to a name of the program's own in the same folder (which keeps
/// `name` in it, so a copy left there by a crash is given its name back by the next
/// restore here: see `safe_fs::remove_leftovers`); returns that name.
fn take_aside(dir: &OwnedFd, name: &OsStr) -> Result<OsString, String> {
    for counter in 0..64 {
        let Some(private) = names::aside_name(counter, name) else {
            return Err("its name is too long to delete it safely".to_owned());
        };
        match rustix::fs::renameat_with(dir, name, dir, &private, RenameFlags::NOREPLACE) {
            Ok(()) => return Ok(private),
            // Taken: by a file of an earlier run of ours still running, or planted.
            Err(rustix::io::Errno::EXIST) => continue,
            Err(rustix::io::Errno::NOENT) => return Err("it is no longer there".to_owned()),
            Err(e) => return Err(format!("it could not be deleted ({e})")),
        }
    }
    Err("it could not be deleted (no free name to take it aside)".to_owned())
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
/// over another file: if its name was taken again meanwhile, it stays where it is
/// (a private name keeps its name in it, for the next restore to put it back).
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

/// The same, once a copy is checked under the name it is deleted by, just before it
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
