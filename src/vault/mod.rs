//! The vault folder and its content-addressed objects.
//!
//! Owns the layout of the vault folder (`objects/`, `tmp/`, `reports/`, the
//! index file and its `journal/`) and the objects themselves: each one named by
//! the BLAKE3 hash of its content, written to a temporary file inside the
//! vault, fsynced and then renamed, so a crash never leaves half an object
//! under a real name.
//! Identical content is stored once. Every read checks the hash.
//!
//! It never knows about protected paths or the index: it stores bytes and
//! gives them back unchanged, or says they are damaged.
//!
//! `store`: copying in, staging and naming at a flush; `read`: reading back,
//! hash-checked; `staged`: copies cloned in and not hashed yet (`staged/`), and
//! giving them their real names.

mod read;
mod staged;
mod store;
#[cfg(test)]
mod tests;

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};

use crate::ids::ObjectId;

pub use staged::staged_copy_intact;
use store::{Staging, max_open_staged};

/// Read and write in large chunks: the vault is written sequentially and a
/// bigger buffer halves the syscalls on photos and videos.
const CHUNK: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error("the vault disk is full (while writing in {path})")]
    Full { path: PathBuf },
    #[error("cannot {doing} {path}: {source}")]
    Io {
        doing: &'static str,
        path: PathBuf,
        source: io::Error,
    },
}

impl VaultError {
    fn io(doing: &'static str, path: &Path, source: io::Error) -> Self {
        if is_disk_full(&source) {
            Self::Full {
                path: path.to_owned(),
            }
        } else {
            Self::Io {
                doing,
                path: path.to_owned(),
                source,
            }
        }
    }

    pub fn is_full(&self) -> bool {
        matches!(self, Self::Full { .. })
    }
}

/// The vault's writer lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("another undelete daemon is already running for the vault {vault}")]
    Taken { vault: PathBuf },
    #[error("cannot lock the vault {vault}: {source}")]
    Io { vault: PathBuf, source: io::Error },
}

/// Held by the one process that may write the index and its journal: the daemon,
/// or a command while no daemon runs (see `amend`, `rebuild`, `undelete purge`).
/// Released when dropped, or when the process ends however it ends (`flock`).
#[derive(Debug)]
pub struct WriterLock {
    _file: File,
}

/// Bytes free for writing (as a non-root user sees it) on the disk holding `path`.
pub fn free_space(path: &Path) -> Option<u64> {
    rustix::fs::statvfs(path)
        .ok()
        .map(|s| s.f_bavail.saturating_mul(s.f_frsize))
}

/// True for "no space left" and "quota exceeded": both mean the disk is full for us.
/// Decided by the error's kind, not its OS code: tempfile wraps write errors with the
/// path, which hides the code but keeps the kind, and a full vault must never be
/// taken for a broken one.
pub fn is_disk_full(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
    )
}

/// Storing a file can fail on either side: reading the user's file, or writing the vault.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("reading the file failed: {0}")]
    Source(io::Error),
    #[error(transparent)]
    Vault(#[from] VaultError),
    /// More than the limit was read: nothing was kept.
    #[error("larger than the limit of {0} bytes")]
    TooLarge(u64),
}

/// Content a file probably has (what it had before), so storing it can check that first.
#[derive(Debug, Clone, Copy)]
pub struct Likely {
    pub id: ObjectId,
    pub size: u64,
}

/// What happened when content was stored.
#[derive(Debug, Clone, Copy)]
pub struct Stored {
    pub id: ObjectId,
    pub size: u64,
    /// False when identical content was already in the vault.
    pub is_new: bool,
}

/// Why an object could not be read back intact.
#[derive(Debug, thiserror::Error)]
pub enum DamageError {
    #[error("missing from the vault")]
    Missing,
    #[error("damaged in the vault (its content no longer matches)")]
    Damaged,
    #[error("unreadable in the vault: {0}")]
    Unreadable(io::Error),
}

pub struct Vault {
    root: PathBuf,
    /// Complete copies waiting in `tmp/` for `flush` to make them durable and give
    /// them their names. Workers store in parallel, so it is shared.
    staged: Mutex<Staging>,
    /// Whether copies can be made unnamed (see `Incoming`); found out by the first copy.
    unnamed_works: OnceLock<bool>,
    /// How many unnamed copies may wait for a flush at once: each holds a descriptor.
    max_open_staged: usize,
    /// Devices whose files cannot be cloned into the vault (another filesystem, or
    /// one without reflinks): their files are copied without trying again.
    cannot_clone_from: Mutex<HashSet<u64>>,
    /// Set while the space set aside for the index is given up (see `release_reserve`).
    reserve_released: AtomicBool,
    /// Whether a clone is kept as it is, to be hashed later (`staged`), instead of
    /// being read back and hashed before its capture is recorded.
    hash_later: AtomicBool,
    /// Staged copies named by flushes since `take_newly_staged` last asked.
    newly_staged: Mutex<Vec<ObjectId>>,
}

/// Space the daemon keeps set aside on the vault's disk, in a file of its own, for
/// the index and its journal. Copies made in parallel can take the last free block
/// before the daemon writes down what it could not copy, and an index that cannot
/// be written stops the daemon; the reserve is given up at once when the disk is
/// full, so the index always has this much room.
const RESERVE: u64 = 4 << 20;

impl Vault {
    /// Opens the vault folder, creating it (0700) if needed.
    pub fn open(root: &Path) -> Result<Self, VaultError> {
        for dir in [
            root.to_owned(),
            root.join("objects"),
            root.join("tmp"),
            root.join("reports"),
            root.join("staged"),
        ] {
            create_private_dir(&dir)?;
        }
        // Every fan-out folder is made up front, while there is room: made when its
        // first object arrives, it would need space just when the disk may be full,
        // and failing there would fail a whole batch. Best effort: a vault opened on
        // a full disk still starts, and makes the missing ones later.
        for prefix in 0..=255u8 {
            let _ = create_private_dir(&root.join("objects").join(format!("{prefix:02x}")));
        }
        Ok(Self::at(root))
    }

    fn at(root: &Path) -> Self {
        Self {
            root: root.to_owned(),
            staged: Mutex::new(Staging::default()),
            unnamed_works: OnceLock::new(),
            max_open_staged: max_open_staged(),
            cannot_clone_from: Mutex::new(HashSet::new()),
            reserve_released: AtomicBool::new(true),
            hash_later: AtomicBool::new(false),
            newly_staged: Mutex::new(Vec::new()),
        }
    }

    /// From now on, a file cloned into the vault is recorded as a staged copy at
    /// once and hashed later by whoever takes `take_newly_staged` (the daemon's
    /// hasher), instead of being read back before its capture is recorded.
    pub fn hash_clones_later(&self) {
        self.hash_later.store(true, Ordering::Relaxed);
    }

    /// The staged copies named by the flushes since the last call: durable, and
    /// about to be recorded by the commit that follows the flush.
    pub fn take_newly_staged(&self) -> Vec<ObjectId> {
        std::mem::take(&mut *self.newly_staged.lock().expect("never poisoned"))
    }

    /// Opens an existing vault without creating anything (for commands that only read).
    pub fn open_existing(root: &Path) -> Result<Self, VaultError> {
        if !root.join("objects").is_dir() {
            return Err(VaultError::io(
                "open the vault",
                root,
                io::Error::new(io::ErrorKind::NotFound, "no vault here"),
            ));
        }
        Ok(Self::at(root))
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn index_path(&self) -> PathBuf {
        self.root.join("index.db")
    }

    /// The index's journal (see `journal`), from which a lost index is rebuilt.
    pub fn journal_dir(&self) -> PathBuf {
        self.root.join("journal")
    }

    pub fn reports_dir(&self) -> PathBuf {
        self.root.join("reports")
    }

    pub fn socket_path(&self) -> PathBuf {
        self.root.join("daemon.sock")
    }

    pub fn lock_path(&self) -> PathBuf {
        self.root.join("daemon.lock")
    }

    /// Takes the writer lock, without waiting: `LockError::Taken` when a daemon (or a
    /// command standing in for one) holds it.
    pub fn lock(&self) -> Result<WriterLock, LockError> {
        let io = |source| LockError::Io {
            vault: self.root.clone(),
            source,
        };
        let file = create_private_file(&self.lock_path()).map_err(io)?;
        match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => Ok(WriterLock { _file: file }),
            Err(rustix::io::Errno::WOULDBLOCK) => Err(LockError::Taken {
                vault: self.root.clone(),
            }),
            Err(e) => Err(io(e.into())),
        }
    }

    /// Whether some process holds the writer lock (a daemon is running or starting).
    /// Looks without creating anything, so a read-only vault answers too.
    pub fn is_locked(&self) -> bool {
        let Ok(file) = File::open(self.lock_path()) else {
            return false;
        };
        matches!(
            rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockShared),
            Err(rustix::io::Errno::WOULDBLOCK)
        )
    }

    /// Where the copy `id` is: `objects/ab/cdef…` by its hash, or `staged/…` by its
    /// provisional name until it is hashed.
    pub fn object_path(&self, id: &ObjectId) -> PathBuf {
        let hex = id.to_hex();
        if id.is_staged() {
            return self.staged_dir().join(hex);
        }
        self.root.join("objects").join(&hex[..2]).join(&hex[2..])
    }

    pub fn contains(&self, id: &ObjectId) -> bool {
        self.object_path(id).is_file()
    }

    /// Removes an object no version refers to any more (retention). Already gone is fine.
    pub fn remove_object(&self, id: &ObjectId) -> Result<(), VaultError> {
        let path = self.object_path(id);
        match fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(VaultError::io("remove", &path, e))
            }
            _ => Ok(()),
        }
    }

    fn reserve_path(&self) -> PathBuf {
        self.root.join("reserve")
    }

    /// Sets the reserve aside. Best effort: on a disk too full for it, the daemon goes
    /// on without.
    fn set_aside_reserve(&self) {
        let path = self.reserve_path();
        let made = create_private_file(&path).and_then(|file| {
            rustix::fs::fallocate(&file, rustix::fs::FallocateFlags::empty(), 0, RESERVE)
                .map_err(io::Error::from)
        });
        match made {
            Ok(()) => self.reserve_released.store(false, Ordering::Relaxed),
            Err(e) => {
                tracing::debug!("cannot set space aside in {}: {e}", path.display());
                let _ = fs::remove_file(&path);
            }
        }
    }

    /// Gives the reserve up for the index, once the disk is full. Until it is set aside
    /// again, no copy starts with less than its size free: the space it freed is the
    /// index's, not the next copy's.
    pub fn release_reserve(&self) {
        self.reserve_released.store(true, Ordering::Relaxed);
        let _ = fs::remove_file(self.reserve_path());
    }

    /// Keeps the reserve right, before the index is written: given up when less than
    /// its size is free (a batch whose copies took the last blocks must still be
    /// written down), set aside again once twice its size is.
    pub fn balance_reserve(&self) {
        let free = free_space(&self.root);
        if self.reserve_released.load(Ordering::Relaxed) {
            if free.is_some_and(|free| free >= 2 * RESERVE) {
                self.set_aside_reserve();
            }
        } else if free.is_some_and(|free| free < RESERVE) {
            self.release_reserve();
        }
    }

    /// Runs `f` unless a restore holds the vault's restore lock (`restore::lock`, a
    /// `flock` on the vault folder): a restore plans from the index and then opens
    /// the copies it names, so a staged copy it may have planned with must stay
    /// until it is done. Returns whether `f` ran.
    pub fn unless_restoring(&self, f: impl FnOnce()) -> bool {
        use rustix::fs::{FlockOperation, Mode, OFlags};
        let Ok(folder) = rustix::fs::open(
            &self.root,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        ) else {
            return false;
        };
        if rustix::fs::flock(&folder, FlockOperation::NonBlockingLockExclusive).is_err() {
            return false;
        }
        f();
        true
    }

    /// Removes temporary files left by a crash. Only the daemon calls this, at start.
    pub fn clean_tmp(&self) -> Result<usize, VaultError> {
        let tmp = self.root.join("tmp");
        let entries = fs::read_dir(&tmp).map_err(|e| VaultError::io("list", &tmp, e))?;
        let mut removed = 0;
        for entry in entries.flatten() {
            if fs::remove_file(entry.path()).is_ok() {
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Every object file in `objects/`, and every staged copy in `staged/`, with its
    /// size on disk. Files whose name is not an object's are left out (nothing but
    /// this module writes there).
    pub fn object_files(&self) -> Result<Vec<(ObjectId, u64)>, VaultError> {
        let mut out = self.named_object_files()?;
        out.extend(self.staged_files()?);
        Ok(out)
    }

    fn named_object_files(&self) -> Result<Vec<(ObjectId, u64)>, VaultError> {
        let objects = self.root.join("objects");
        let fans = fs::read_dir(&objects).map_err(|e| VaultError::io("list", &objects, e))?;
        let mut out = Vec::new();
        for fan in fans.flatten() {
            let prefix = fan.file_name();
            let Some(prefix) = prefix.to_str().filter(|p| p.len() == 2) else {
                continue;
            };
            let Ok(files) = fs::read_dir(fan.path()) else {
                continue;
            };
            for file in files.flatten() {
                let name = file.file_name();
                let Some(id) = name
                    .to_str()
                    .and_then(|rest| format!("{prefix}{rest}").parse::<ObjectId>().ok())
                else {
                    continue;
                };
                if let Ok(meta) = file.metadata() {
                    out.push((id, meta.len()));
                }
            }
        }
        Ok(out)
    }

    /// Removes the object files `is_recorded` does not know: copies named by a flush
    /// whose index commit never came (a crash in between, or a failed commit), or
    /// left by a purge stopped before it removed them. Only the daemon calls this,
    /// holding the vault's lock, with nothing staged, on a healthy index.
    pub fn sweep<E>(
        &self,
        mut is_recorded: impl FnMut(&ObjectId) -> Result<bool, E>,
    ) -> Result<(usize, u64), E>
    where
        E: From<VaultError>,
    {
        debug_assert!(
            self.staged
                .lock()
                .expect("the staged objects are never poisoned")
                .is_empty(),
            "a sweep with copies waiting to be named would remove them"
        );
        let mut removed = (0, 0);
        for (id, size) in self.object_files()? {
            if !is_recorded(&id)? {
                self.remove_object(&id)?;
                removed.0 += 1;
                removed.1 += size;
            }
        }
        Ok(removed)
    }
}

/// Flushes everything written to the filesystem holding `dir` to disk.
fn sync_filesystem(dir: &Path) -> Result<(), VaultError> {
    File::open(dir)
        .and_then(|d| rustix::fs::syncfs(&d).map_err(io::Error::from))
        .map_err(|e| VaultError::io("flush", dir, e))
}

/// Asks the kernel to start writing `file`'s dirty pages to disk without waiting.
/// A later `fsync` or `syncfs` then finds most of the work done: copying and writing
/// to disk overlap instead of following each other.
pub fn start_writeback(file: &File) {
    use std::os::fd::AsRawFd;
    // SAFETY: a valid descriptor owned by `file`; the call only starts I/O.
    unsafe {
        libc::sync_file_range(file.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE);
    }
}

/// Creates a folder readable only by its owner, and tightens it if it already exists.
fn create_private_dir(dir: &Path) -> Result<(), VaultError> {
    match fs::DirBuilder::new()
        .mode(0o700)
        .recursive(true)
        .create(dir)
    {
        Ok(()) => {}
        Err(e) => return Err(VaultError::io("create the folder", dir, e)),
    }
    let meta = fs::metadata(dir).map_err(|e| VaultError::io("inspect", dir, e))?;
    if meta.permissions().mode() & 0o077 != 0 {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
            .map_err(|e| VaultError::io("restrict access to", dir, e))?;
    }
    Ok(())
}

/// Opens (creating 0600) a private file inside the vault, for the index's neighbours.
pub fn create_private_file(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
}
