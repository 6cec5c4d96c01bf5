//! What one folder of the mount holds, computed from the index: the protected
//! folders as they were at a moment, deleted files, or an incident's files, each
//! at its full path (`/srv/share/…`), so no name a user gives a folder can
//! collide with the mount's own (`@GMT-…`, `incidents`, `deleted`).
//!
//! The kernel checks every folder on the way to a file against the owner and mode
//! this module gives it (the mount uses `default_permissions`), so those must be
//! the ones that kept people out then:
//! - at a point in time, each folder is its version current at that moment;
//! - in `deleted/` and `incidents/CODE/`, a folder shows one version (the newest,
//!   or the one from just before the incident began), and a file is shown only when
//!   every folder from its protected folder down had that same owner and mode when
//!   the file was deleted: one deleted from a folder whose owner or mode changed
//!   since is left out there, and found at the point in time before its deletion;
//! - a folder whose version is not known is root's alone (0700): who could enter it
//!   then cannot be told, and root can always look;
//! - folders above a protected folder are not recorded: they show their owner and
//!   mode of today, which already decide who reaches the share.
//!
//! Files without a copy (excluded, never copied, purged), copies known to be
//! incomplete, and special files (FIFOs, devices, sockets) are left out: the mount
//! shows what can be read back whole. Listing reads only the folder's own rows:
//! each subfolder met is skipped over in the index, never read row by row.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::ids::ObjectId;
use crate::index::{Index, Result, ViewRows, path_bytes};
use crate::model::{EntryKind, Version};

/// Rows read from the index at once while listing.
const PAGE: usize = 512;

/// Which versions a tree of the mount shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum View {
    /// The protected folders as they were at this moment (nanoseconds).
    AsOf(i64),
    /// Every path whose newest version is gone: its last version.
    Deleted,
    /// What an incident deleted; `before` is the moment just before it began.
    Incident { id: i64, before: i64 },
}

/// Owner, mode and time of an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime_ns: i64,
}

impl Meta {
    /// For a folder nobody knows the owner of: only root may enter.
    pub const ROOT_ONLY: Meta = Meta {
        mode: 0o700,
        uid: 0,
        gid: 0,
        mtime_ns: 0,
    };

    fn of(v: &Version) -> Self {
        Self {
            mode: v.observed.mode & 0o7777,
            uid: v.observed.uid,
            gid: v.observed.gid,
            mtime_ns: v.observed.mtime_ns,
        }
    }

    /// Whether the kernel would let the same people through.
    fn same_access(&self, other: &Meta) -> bool {
        self.mode == other.mode && self.uid == other.uid && self.gid == other.gid
    }
}

/// What an entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File { object: ObjectId, size: u64 },
    Symlink(PathBuf),
}

/// One entry of a folder of a view.
#[derive(Debug, Clone)]
pub struct Entry {
    pub name: OsString,
    pub kind: Kind,
    pub meta: Meta,
}

/// Something found directly in the folder being listed.
#[derive(Default)]
struct Child {
    /// The newest version shown at this very path, if any.
    row: Option<Box<Version>>,
    /// Something below it is shown, so it is a folder, whatever the row says.
    below: bool,
}

/// Lists the folder `dir` (absolute; `/` for the top of the view) of `view`, sorted by
/// name. `roots` are every protected folder the index knows, current or not.
pub fn list(index: &Index, roots: &[PathBuf], view: View, dir: &Path) -> Result<Vec<Entry>> {
    let rows = match view {
        View::AsOf(t) => ViewRows::AsOf(t),
        View::Deleted => ViewRows::Deleted,
        View::Incident { id, .. } => ViewRows::Incident(id),
    };
    let found = children(index, rows, dir)?;
    let mut folders = Folders {
        index,
        roots,
        view,
        histories: HashMap::new(),
    };
    let mut out = Vec::with_capacity(found.len());
    for (name, child) in found {
        let name = OsString::from_vec(name);
        let path = dir.join(&name);
        let v = match child.row {
            // At a moment, a folder is its version then; a folder shown for what is below
            // it in the other views is the version `shown` picks.
            Some(v)
                if !child.below
                    || (v.observed.kind == EntryKind::Dir && matches!(view, View::AsOf(_))) =>
            {
                v
            }
            _ => {
                let meta = folders.shown(&path)?;
                out.push(Entry {
                    name,
                    kind: Kind::Dir,
                    meta,
                });
                continue;
            }
        };
        let kind = match (v.observed.kind, view) {
            // Folders are shown as they were at the moment; in the other views only as
            // the way to what was deleted in them.
            (EntryKind::Dir, View::AsOf(_)) => Kind::Dir,
            (EntryKind::Dir | EntryKind::Special, _) => continue,
            (EntryKind::File, _) => match (v.observed.object, &v.observed.uncaptured) {
                (Some(object), None) if v.observed.incomplete.is_none() => Kind::File {
                    object,
                    size: v.observed.size,
                },
                _ => continue,
            },
            (EntryKind::Symlink, _) => match &v.observed.link_target {
                Some(target) => Kind::Symlink(target.clone()),
                None => continue,
            },
        };
        if !matches!(view, View::AsOf(_))
            && !folders.same_way_as_when_deleted(&path, v.deleted_at)?
        {
            tracing::debug!(
                "{} is left out of the view: a folder on its way changed owner or mode since it was deleted",
                path.display()
            );
            continue;
        }
        out.push(Entry {
            name,
            kind,
            meta: Meta::of(&v),
        });
    }
    Ok(out)
}

/// Everything directly in `dir` that the view's rows show, by name. Rows come in path
/// order; the first row below a subfolder names that subfolder, and the listing jumps
/// past everything below it.
fn children(index: &Index, rows: ViewRows, dir: &Path) -> Result<BTreeMap<Vec<u8>, Child>> {
    let mut prefix = path_bytes(dir).to_vec();
    if prefix.last() != Some(&b'/') {
        prefix.push(b'/');
    }
    // '0' is the byte after '/': [prefix, end) holds every path below `dir`.
    let mut end = prefix.clone();
    *end.last_mut().expect("never empty") = b'0';
    let mut found: BTreeMap<Vec<u8>, Child> = BTreeMap::new();
    let mut from = prefix.clone();
    loop {
        let page = index.view_page(rows, &from, &end, PAGE)?;
        let full = page.len() == PAGE;
        let mut skip_to = None;
        for v in &page {
            let rel = &path_bytes(&v.path)[prefix.len()..];
            match rel.iter().position(|&b| b == b'/') {
                None if rel.is_empty() => {}
                // The newest row of a path comes first: the others are older versions.
                None => {
                    let child = found.entry(rel.to_vec()).or_default();
                    child.row.get_or_insert_with(|| Box::new(v.clone()));
                }
                Some(slash) => {
                    let name = &rel[..slash];
                    // A file and a folder of the same name (one deleted, the other made
                    // later): the folder keeps the name, so what is inside stays reachable.
                    found.entry(name.to_vec()).or_default().below = true;
                    let mut next = prefix.clone();
                    next.extend_from_slice(name);
                    next.push(b'0');
                    skip_to = Some(next);
                    break;
                }
            }
        }
        match (skip_to, page.last()) {
            (Some(next), _) => from = next,
            (None, Some(last)) if full => {
                // Past every row of the last path: older versions of it are not shown.
                from = path_bytes(&last.path).to_vec();
                from.push(0);
            }
            _ => break,
        }
    }
    Ok(found)
}

/// The folders on the way to what a view shows, and what they were.
struct Folders<'a> {
    index: &'a Index,
    roots: &'a [PathBuf],
    view: View,
    /// Every folder version of a path, oldest first, read once per listing.
    histories: HashMap<PathBuf, Vec<Version>>,
}

impl Folders<'_> {
    /// The owner and mode the view gives the folder `path`.
    fn shown(&mut self, path: &Path) -> Result<Meta> {
        if self.is_above_a_root(path) {
            return Ok(live(path));
        }
        let view = self.view;
        let history = self.history(path)?;
        let version = match view {
            View::AsOf(t) => history.iter().rev().find(|v| current_at(v, t)),
            View::Deleted => history.last(),
            View::Incident { before, .. } => history
                .iter()
                .rev()
                .find(|v| current_at(v, before))
                .or_else(|| history.last()),
        };
        Ok(version.map(Meta::of).unwrap_or(Meta::ROOT_ONLY))
    }

    /// Whether every folder from the protected folder down to the one holding `path`
    /// had, when `path` was deleted, the owner and mode the view shows for it.
    fn same_way_as_when_deleted(&mut self, path: &Path, deleted_at: Option<i64>) -> Result<bool> {
        let (Some(deleted_at), Some(root)) = (deleted_at, self.root_of(path)) else {
            return Ok(false);
        };
        let root = root.to_path_buf();
        let mut folder = path.parent();
        while let Some(dir) = folder.filter(|dir| dir.starts_with(&root)) {
            let shown = self.shown(dir)?;
            // Root's alone lets nobody in who was kept out then.
            if shown != Meta::ROOT_ONLY {
                let then = self
                    .history(dir)?
                    .iter()
                    .rev()
                    .find(|v| current_at(v, deleted_at - 1))
                    .map(Meta::of);
                if !then.is_some_and(|then| then.same_access(&shown)) {
                    return Ok(false);
                }
            }
            folder = dir.parent();
        }
        Ok(true)
    }

    fn history(&mut self, path: &Path) -> Result<&Vec<Version>> {
        if !self.histories.contains_key(path) {
            let folders: Vec<Version> = self
                .index
                .history(path)?
                .into_iter()
                .filter(|v| v.observed.kind == EntryKind::Dir)
                .collect();
            self.histories.insert(path.to_owned(), folders);
        }
        Ok(&self.histories[path])
    }

    fn is_above_a_root(&self, path: &Path) -> bool {
        self.roots
            .iter()
            .any(|root| root != path && root.starts_with(path))
    }

    /// The deepest protected folder holding `path`.
    fn root_of(&self, path: &Path) -> Option<&Path> {
        self.roots
            .iter()
            .filter(|root| path.starts_with(root))
            .max_by_key(|root| root.as_os_str().len())
            .map(PathBuf::as_path)
    }
}

/// Whether version `v` was the one at its path at moment `t`.
fn current_at(v: &Version, t: i64) -> bool {
    v.seen_at <= t && v.replaced_at.is_none_or(|r| r > t) && v.deleted_at.is_none_or(|d| d > t)
}

/// A folder above the protected ones, as it is today; root's alone if it is gone.
fn live(path: &Path) -> Meta {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => Meta {
            mode: meta.mode() & 0o7777,
            uid: meta.uid(),
            gid: meta.gid(),
            mtime_ns: meta.mtime() * 1_000_000_000 + meta.mtime_nsec(),
        },
        _ => Meta::ROOT_ONLY,
    }
}
