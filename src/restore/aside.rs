//! The encrypted copies an overwrite incident left: moved aside into a folder of
//! their own in their protected folder, or deleted, before the files come back, as
//! the plan says. Each is moved or deleted only while it is still the very copy
//! the index recorded (same size and content); anything else there is left alone,
//! and the report says why. Folders are reached by descriptor, never through a
//! link, as restores reach their destination.

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, RenameFlags};

use crate::report::{EncryptedOutcome, EncryptedResult};
use crate::vault::Vault;

use super::{DirCache, EncryptedAction, EncryptedItem, RestorePlan, same_content};

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
        };
        if item.action == EncryptedAction::Leave {
            results.push(EncryptedResult {
                path: item.version.path.clone(),
                outcome: EncryptedOutcome::Left,
                why_left: None,
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
            },
            Err(why) => left(why),
        });
    }
    for cache in caches.values().flatten() {
        let _ = rustix::fs::syncfs(cache.base_fd());
    }
    results
}

fn one(
    vault: &Vault,
    cache: &mut DirCache,
    item: &EncryptedItem,
) -> Result<EncryptedOutcome, String> {
    let parent = item.relative.parent().unwrap_or(Path::new(""));
    let name = item.relative.file_name().unwrap_or_default();
    let from =
        folder(cache, parent, false)?.ok_or_else(|| "its folder is no longer there".to_owned())?;
    let existing = match rustix::fs::statat(&from, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => st,
        Err(rustix::io::Errno::NOENT) => return Err("it is no longer there".to_owned()),
        Err(e) => return Err(format!("it could not be looked at ({e})")),
    };
    // Another file there now (saved since, or put back by hand) is not touched.
    if !same_content(vault, &from, name, &existing, &item.version) {
        return Err("it changed since it was encrypted".to_owned());
    }
    match &item.action {
        EncryptedAction::Leave => Ok(EncryptedOutcome::Left),
        EncryptedAction::Delete => {
            rustix::fs::unlinkat(&from, name, AtFlags::empty())
                .map_err(|e| format!("it could not be deleted ({e})"))?;
            Ok(EncryptedOutcome::Deleted)
        }
        EncryptedAction::MoveTo(to) => {
            let to_parent = to.parent().unwrap_or(Path::new(""));
            let into = folder(cache, to_parent, true)?.expect("created when missing");
            let to_name = to.file_name().unwrap_or_default();
            match rustix::fs::renameat_with(&from, name, &into, to_name, RenameFlags::NOREPLACE) {
                Ok(()) => Ok(EncryptedOutcome::MovedTo(cache.base().join(to))),
                Err(rustix::io::Errno::EXIST) => Err(format!(
                    "another file already has its name in {}",
                    crate::words::display_path(&cache.base().join(to_parent))
                )),
                Err(e) => Err(format!("it could not be moved ({e})")),
            }
        }
    }
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
