//! The plan: which versions a restore selects, where each goes, and what is in the
//! way. Looks at the destination through folders held by descriptor; writes nothing.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use crate::index::{Index, IndexError};
use crate::model::{EncryptedCopies, EntryKind, RestoreFilter, Version};
use crate::names;
use crate::report::LossReason;
use crate::vault::{DamageError, Vault};

use super::{
    Action, Destination, DirCache, EncryptedAction, EncryptedItem, PlanItem, RestoreError,
    RestorePlan, beside_label, safe_fs, same_content,
};

/// Selects versions and decides, for each, what a restore would do. Writes nothing.
pub fn plan(
    index: &Index,
    vault: &Vault,
    filter: &RestoreFilter,
    destination: &Destination,
) -> Result<RestorePlan, RestoreError> {
    let roots: HashMap<i64, PathBuf> = index.roots()?.into_iter().map(|r| (r.id, r.path)).collect();
    let mut versions = index.restore_candidates(filter)?;
    // Beside an encrypted file, a file brought back from before an overwrite
    // incident is named for the moment it began: "name (as of …).ext".
    let overwrite = match filter.incident {
        Some(id) => index.incident(id)?.filter(|i| i.kind.is_overwrite()),
        None => None,
    };
    let before_incident = overwrite.as_ref().map(|i| i.first_at);
    let encrypted = match &overwrite {
        Some(incident) => plan_encrypted(index, incident, filter, &roots)?,
        None => Vec::new(),
    };
    // Names the encrypted copies will have left by the time the files come back.
    let vacated: HashSet<PathBuf> = match destination {
        Destination::Original => encrypted
            .iter()
            .filter(|e| e.action != EncryptedAction::Leave)
            .map(|e| e.version.path.clone())
            .collect(),
        Destination::Under(_) => HashSet::new(),
    };
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
        let label = beside_label(&version, filter.as_of.or(before_incident));
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
                let action = decide(vault, cache.as_mut(), &version, &relative, &label, &vacated);
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
        as_before: before_incident,
        encrypted,
    })
}

/// The encrypted copies of overwrite incident `incident` within the restore's
/// scopes, each with what is to become of it: moved into the incident's folder in
/// its protected folder, at the same path below it, deleted, or left.
fn plan_encrypted(
    index: &Index,
    incident: &crate::model::Incident,
    filter: &RestoreFilter,
    roots: &HashMap<i64, PathBuf>,
) -> Result<Vec<EncryptedItem>, IndexError> {
    let aside = PathBuf::from(crate::model::encrypted_folder(&incident.code));
    let mut out = Vec::new();
    for version in index.encrypted_copies(incident.id)? {
        let Some(root) = roots.get(&version.root_id) else {
            continue;
        };
        if !filter.scopes.is_empty() && !filter.scopes.iter().any(|s| version.path.starts_with(s)) {
            continue;
        }
        let Ok(relative) = version.path.strip_prefix(root).map(Path::to_owned) else {
            continue;
        };
        // Already moved aside by an earlier restore: where it belongs.
        if relative.starts_with(&aside) {
            continue;
        }
        let action = match filter.encrypted {
            EncryptedCopies::Leave => EncryptedAction::Leave,
            EncryptedCopies::MoveAside => EncryptedAction::MoveTo(aside.join(&relative)),
            EncryptedCopies::Delete => EncryptedAction::Delete,
        };
        out.push(EncryptedItem {
            version,
            base: root.clone(),
            relative,
            action,
        });
    }
    Ok(out)
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
    vacated: &HashSet<PathBuf>,
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
        // An encrypted copy moved or deleted first: the name will be free.
        let existing = existing.filter(|_| {
            n > 1
                || observed.kind == EntryKind::Dir
                || !vacated.contains(&dirs.base().join(parent).join(&candidate))
        });
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
        if same_as(vault, dirs, parent, &candidate, &existing, version) {
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
    vault: &Vault,
    dirs: &mut DirCache,
    parent: &Path,
    name: &OsStr,
    existing: &rustix::fs::Stat,
    version: &Version,
) -> bool {
    let Ok(Some(dir)) = dirs.dir(parent, false) else {
        return false;
    };
    same_content(vault, dir, name, existing, version)
}
