//! The read-only FUSE view of the vault: `@GMT-YYYY.MM.DD-HH.MM.SS/` folders (the
//! protected folders as they were then, which Samba's `vfs_shadow_copy2` serves as
//! Windows' Previous Versions), `incidents/CODE/` (an incident's files as they were
//! deleted) and `deleted/` (every deleted file's last version), each holding the
//! protected folders at their full paths.
//!
//! It never writes anything: the index is opened for reading, the vault's copies
//! are read and checked (see `content`), the kernel refuses every change (a
//! read-only mount) and so does every handler here. Owners and modes are the
//! original ones and the kernel enforces them (`default_permissions`, and
//! `allow_other` so other users and Samba can look at all), so each user sees
//! only what they could see in the share. What a folder lists comes from the
//! index when it is first looked at, and is kept for a short while.

mod content;
mod kernel;
mod listing;
mod points;
mod views;

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fuser::FileAttr;

use crate::ids::ObjectId;
use crate::index::{Index, IndexError};
use crate::vault::Vault;

use content::Contents;
use views::{Entry, Kind, View};

/// How long the kernel may keep what it was told about a name or an entry.
const KERNEL_TTL: Duration = Duration::from_secs(10);
/// How long a folder's listing is kept before the index is asked again.
const LISTING_TTL: Duration = Duration::from_secs(30);
/// At most this many folders' listings are kept.
const MOST_LISTINGS: usize = 4096;
/// The names of the two fixed folders at the top of the mount.
pub const INCIDENTS: &str = "incidents";
pub const DELETED: &str = "deleted";
/// The mount's subtype, where `/proc/self/mountinfo` shows one: `fuse.undelete`.
pub const FS_TYPE: &str = "undelete";
/// How many incidents `incidents/` lists (the most recent); older ones still open by code.
const MOST_INCIDENTS: usize = 500;

/// Where a folder or entry of the mount is.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Place {
    /// The top of the mount.
    Top,
    /// `incidents/`.
    Incidents,
    /// A path (`/` for the view's own folder) in one of the trees.
    Tree(View, PathBuf),
}

impl Place {
    /// Whether what it lists can no longer change as the service records more: a
    /// moment that is over. (Purges can still take a copy away; the copy is then
    /// missing when opened, an error, never other bytes.)
    fn is_settled(&self, now: i64) -> bool {
        matches!(self, Place::Tree(View::AsOf(t), _) if *t < now)
    }
}

/// A folder's listing, kept.
struct Kept {
    at: Instant,
    /// How long it took to make.
    took: Duration,
    /// The index's `data_version` when it was made.
    index_version: Option<i64>,
    listed: Arc<Vec<Listed>>,
}

/// One inode the kernel knows.
#[derive(Debug, Clone)]
struct Node {
    place: Place,
    kind: Kind,
    attr: FileAttr,
    /// How many times the kernel was given it and has not forgotten it yet.
    lookups: u64,
}

/// An open file: its copy in the vault.
struct OpenFile {
    file: Arc<File>,
    object: ObjectId,
    size: u64,
    /// For log lines.
    place: Place,
}

/// The mounted view.
pub struct VaultView {
    index: Mutex<Index>,
    vault_root: PathBuf,
    contents: Contents,
    /// Every protected folder the index knows, current or not.
    roots: Vec<PathBuf>,
    /// How long deleted files are kept: no point in time is offered before that.
    keep_ns: i64,
    /// When it was mounted: the time its own folders show.
    started_ns: i64,
    nodes: Mutex<HashMap<u64, Node>>,
    listings: Mutex<HashMap<Place, Kept>>,
    open_files: Mutex<HashMap<u64, OpenFile>>,
    open_dirs: Mutex<HashMap<u64, Arc<Vec<Listed>>>>,
    next_handle: AtomicU64,
}

/// An entry of a listing, with where it leads.
#[derive(Debug, Clone)]
struct Listed {
    entry: Entry,
    place: Place,
}

impl VaultView {
    /// A view of `vault` through `index` (opened for reading); `keep_ns` is how long
    /// deleted files are kept.
    pub fn new(vault: Vault, index: Index, keep_ns: i64) -> Result<Self, MountError> {
        let roots = index.roots()?.into_iter().map(|r| r.path).collect();
        Ok(Self {
            index: Mutex::new(index),
            vault_root: vault.root().to_owned(),
            contents: Contents::new(vault),
            roots,
            keep_ns,
            started_ns: crate::clock::now(),
            nodes: Mutex::new(HashMap::new()),
            listings: Mutex::new(HashMap::new()),
            open_files: Mutex::new(HashMap::new()),
            open_dirs: Mutex::new(HashMap::new()),
            next_handle: AtomicU64::new(1),
        })
    }

    pub fn vault_root(&self) -> &Path {
        &self.vault_root
    }
}

/// Why the vault could not be mounted.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error(transparent)]
    Index(#[from] IndexError),
    #[error("cannot mount the vault on {}: {source}", .dir.display())]
    Mount {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot mount the vault on {}: {why}", .dir.display())]
    Refused { dir: PathBuf, why: Refusal },
}

/// Why a folder is not a place for the mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    NotAFolder,
    Missing,
    NotEmpty,
    InsideProtected(PathBuf),
    HoldsProtected(PathBuf),
    InsideVault,
    HoldsVault,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotAFolder => f.write_str("it is not a folder"),
            Self::Missing => f.write_str("there is no such folder (make it first: mkdir -p DIR)"),
            Self::NotEmpty => f.write_str(
                "the folder is not empty, and its files would be hidden while the vault is \
                 mounted on it; choose an empty folder",
            ),
            Self::InsideProtected(root) => write!(
                f,
                "it is inside the protected folder {}: the service would copy the mount \
                 into the vault it shows; choose a folder outside, such as /run/undelete/versions",
                root.display()
            ),
            Self::HoldsProtected(root) => write!(
                f,
                "the protected folder {} is inside it, and would be hidden",
                root.display()
            ),
            Self::InsideVault => f.write_str("it is inside the vault"),
            Self::HoldsVault => f.write_str("the vault is inside it, and would be hidden"),
        }
    }
}

/// Whether `dir` (absolute) is a place to mount the vault on: an empty folder,
/// outside every protected folder and the vault, holding none of them.
pub fn check_mount_point(dir: &Path, roots: &[PathBuf], vault: &Path) -> Result<(), Refusal> {
    match std::fs::symlink_metadata(dir) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => return Err(Refusal::NotAFolder),
        Err(_) => return Err(Refusal::Missing),
    }
    let dir = std::fs::canonicalize(dir).map_err(|_| Refusal::Missing)?;
    for root in roots {
        if dir.starts_with(root) {
            return Err(Refusal::InsideProtected(root.clone()));
        }
        if root.starts_with(&dir) {
            return Err(Refusal::HoldsProtected(root.clone()));
        }
    }
    let vault = std::fs::canonicalize(vault).unwrap_or_else(|_| vault.to_owned());
    if dir.starts_with(&vault) {
        return Err(Refusal::InsideVault);
    }
    if vault.starts_with(&dir) {
        return Err(Refusal::HoldsVault);
    }
    match std::fs::read_dir(&dir).map(|mut entries| entries.next().is_none()) {
        Ok(true) => Ok(()),
        Ok(false) => Err(Refusal::NotEmpty),
        Err(_) => Err(Refusal::NotAFolder),
    }
}

/// How a mount ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// Someone unmounted it (`umount DIR`).
    Unmounted,
    /// Stopped by SIGTERM or SIGINT, and unmounted here.
    Stopped,
    /// Stopped while a program still used it: detached, and gone for that program.
    Detached,
}

/// Mounts `view` on `dir` and serves it until it is unmounted, or until SIGTERM or
/// SIGINT, which unmount it.
pub fn serve(view: VaultView, dir: &Path) -> Result<Ended, MountError> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mount_err = |source| MountError::Mount {
        dir: dir.to_owned(),
        source,
    };
    let mut config = fuser::Config::default();
    config.mount_options = vec![
        fuser::MountOption::FSName(format!("undelete:{}", view.vault_root().display())),
        fuser::MountOption::Subtype(FS_TYPE.into()),
        fuser::MountOption::RO,
        fuser::MountOption::NoSuid,
        fuser::MountOption::NoDev,
        fuser::MountOption::NoAtime,
        fuser::MountOption::DefaultPermissions,
    ];
    // allow_other: Samba and every user look through it; the kernel checks who may.
    config.acl = fuser::SessionACL::All;
    // Reads of big files and listings of big folders go on side by side.
    config.n_threads = Some(4);
    // Signals are caught before the mount exists, so none ends the process with the
    // mount left behind.
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT]).map_err(mount_err)?;
    let mut session = fuser::Session::new(view, dir, &config).map_err(mount_err)?;
    let mut unmounter = session.unmount_callable();
    tracing::info!("the vault is mounted on {}", dir.display());
    let closer = signals.handle();
    let runner = std::thread::spawn(move || {
        let result = session.run();
        closer.close();
        result
    });
    let stopped = signals.forever().next().is_some();
    if !stopped {
        runner
            .join()
            .map_err(|_| mount_err(std::io::Error::other("the mount's thread failed")))?
            .map_err(mount_err)?;
        tracing::info!("{} was unmounted", dir.display());
        return Ok(Ended::Unmounted);
    }
    match unmounter.unmount() {
        Ok(()) => {
            let _ = runner.join();
            tracing::info!("stopped: {} is unmounted", dir.display());
            Ok(Ended::Stopped)
        }
        Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
            // Detached now; the connection ends with this process, and a program still
            // inside gets an error rather than a mount that answers nobody.
            use rustix::mount::{UnmountFlags, unmount};
            unmount(dir, UnmountFlags::DETACH).map_err(|e| mount_err(e.into()))?;
            tracing::warn!(
                "stopped while a program was still using {}: it is unmounted, and that \
                 program gets an error from it",
                dir.display()
            );
            Ok(Ended::Detached)
        }
        Err(e) => Err(mount_err(e)),
    }
}

/// Where the vault at `vault` is mounted now, if it is (from `/proc/self/mountinfo`).
pub fn mounted_on(vault: &Path) -> Option<PathBuf> {
    let text = std::fs::read("/proc/self/mountinfo").ok()?;
    let vault = std::fs::canonicalize(vault).unwrap_or_else(|_| vault.to_owned());
    let source = format!("undelete:{}", vault.display());
    mounts_of(&text, &source).into_iter().next()
}

/// The mount points in a `mountinfo` text of mounts of this type from `source`.
fn mounts_of(mountinfo: &[u8], source: &str) -> Vec<PathBuf> {
    use std::os::unix::ffi::OsStringExt;
    let mut out = Vec::new();
    for line in mountinfo.split(|&b| b == b'\n') {
        let fields: Vec<&[u8]> = line.split(|&b| b == b' ').collect();
        let Some(dash) = fields.iter().position(|f| *f == b"-") else {
            continue;
        };
        let (Some(point), Some(fstype), Some(from)) =
            (fields.get(4), fields.get(dash + 1), fields.get(dash + 2))
        else {
            continue;
        };
        // Mounted directly (as root) it is plain `fuse`; through a helper `fuse.undelete`.
        let is_fuse = *fstype == b"fuse" || *fstype == format!("fuse.{FS_TYPE}").as_bytes();
        if is_fuse && unescape(from) == source.as_bytes() {
            out.push(PathBuf::from(OsString::from_vec(unescape(point))));
        }
    }
    out
}

/// `mountinfo` writes space, tab, newline and backslash as `\040`, `\011`, `\012`, `\134`.
fn unescape(field: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        if field[i] == b'\\'
            && field.len() >= i + 4
            && field[i + 1..i + 4]
                .iter()
                .all(|b| (b'0'..=b'7').contains(b))
        {
            let n = field[i + 1..i + 4]
                .iter()
                .fold(0u32, |n, b| n * 8 + u32::from(b - b'0'));
            out.push(n as u8);
            i += 4;
        } else {
            out.push(field[i]);
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mount_is_found_in_mountinfo_with_spaces_in_its_names() {
        let text = b"36 35 98:0 / /mnt rw - ext3 /dev/root rw\n\
            40 24 0:52 / /run/undelete/my\\040versions ro,nosuid - fuse.undelete undelete:/var/lib/my\\040vault ro\n\
            41 24 0:53 / /elsewhere ro - fuse.undelete undelete:/var/lib/other ro\n";
        assert_eq!(
            mounts_of(text, "undelete:/var/lib/my vault"),
            vec![PathBuf::from("/run/undelete/my versions")]
        );
        assert!(mounts_of(text, "undelete:/var/lib/none").is_empty());
    }
}
