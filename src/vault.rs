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

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};

use rustix::fs::{AtFlags, Mode, OFlags};
use tempfile::TempPath;

use crate::ids::ObjectId;

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
}

/// A copy being written in `tmp/`. Unnamed (`O_TMPFILE`) where the vault's filesystem
/// allows it: creating a named file holds `tmp/`'s lock while the filesystem finds a
/// free inode (which ext4 without a journal does by scanning past every inode freed
/// in the last minutes), and every capture thread queued behind that lock (a sixth
/// of the CPU of a start-up capture went to waiting for it). An unnamed file takes
/// no lock on the folder, and a crash leaves nothing behind. Elsewhere, a named
/// temporary file.
struct Incoming {
    file: File,
    /// `None` for an unnamed copy.
    named: Option<TempPath>,
}

impl Incoming {
    /// The path to name in errors.
    fn path<'a>(&'a self, tmp_dir: &'a Path) -> &'a Path {
        self.named.as_deref().unwrap_or(tmp_dir)
    }
}

/// A finished copy waiting for `flush` to give it its name.
enum Staged {
    /// An unnamed copy exists only through its open descriptor.
    Unnamed(File),
    Named(TempPath),
}

impl Staged {
    fn name_as(&self, dest: &Path) -> io::Result<()> {
        match self {
            Staged::Unnamed(file) => link_unnamed(file, dest),
            Staged::Named(tmp) => fs::rename(tmp, dest),
        }
    }
}

#[derive(Default)]
struct Staging {
    copies: HashMap<ObjectId, Claimed>,
    /// How many of them are unnamed, so hold a descriptor.
    open: usize,
}

/// A staged copy, and how many stores since the last flush handed out its id: one
/// `discard` each may take them back, and the copy goes when none is left.
struct Claimed {
    staged: Staged,
    claims: usize,
}

/// Space the daemon keeps set aside on the vault's disk, in a file of its own, for
/// the index and its journal. Copies made in parallel can take the last free block
/// before the daemon writes down what it could not copy, and an index that cannot
/// be written stops the daemon; the reserve is given up at once when the disk is
/// full, so the index always has this much room.
const RESERVE: u64 = 4 << 20;

thread_local! {
    /// Each capture thread reads through its own buffer: a fresh megabyte per small
    /// file would cost more than the file.
    static BUFFER: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

impl Vault {
    /// Opens the vault folder, creating it (0700) if needed.
    pub fn open(root: &Path) -> Result<Self, VaultError> {
        for dir in [
            root.to_owned(),
            root.join("objects"),
            root.join("tmp"),
            root.join("reports"),
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
        }
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

    pub fn object_path(&self, id: &ObjectId) -> PathBuf {
        let hex = id.to_hex();
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

    /// Every object file in `objects/`, with its size on disk. Files whose name is not
    /// an object's are left out (nothing but this module writes there).
    pub fn object_files(&self) -> Result<Vec<(ObjectId, u64)>, VaultError> {
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

    /// The bytes the vault's copies take: every object file, and anything in `tmp/`.
    pub fn bytes_on_disk(&self) -> Result<u64, VaultError> {
        let tmp = self.root.join("tmp");
        let in_tmp: u64 = fs::read_dir(&tmp)
            .map_err(|e| VaultError::io("list", &tmp, e))?
            .flatten()
            .filter_map(|e| e.metadata().ok())
            .map(|m| m.len())
            .sum();
        Ok(self
            .object_files()?
            .iter()
            .map(|(_, size)| size)
            .sum::<u64>()
            + in_tmp)
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
                .copies
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

    /// Copies everything `source` yields into the vault, hashing in the same pass.
    /// The object gets its name at the next `flush`; until then it is only staged.
    #[cfg(test)]
    pub fn store(&self, source: &mut impl Read) -> Result<Stored, StoreError> {
        self.store_limited(source, u64::MAX)
    }

    /// Like `store`, but gives up without keeping anything once more than `limit`
    /// bytes were read: a file can grow past a size limit while it is being copied.
    pub fn store_limited(&self, source: &mut impl Read, limit: u64) -> Result<Stored, StoreError> {
        BUFFER.with_borrow_mut(|buf| {
            buf.resize(CHUNK, 0);
            let first = read_full(source, buf).map_err(StoreError::Source)?;
            if (first as u64) > limit {
                return Err(StoreError::TooLarge(limit));
            }
            if first < buf.len() {
                // All of it is in memory: content already kept costs no write at all.
                let id = ObjectId::of(blake3::hash(&buf[..first]));
                if self.claim_kept(&id) {
                    return Ok(Stored {
                        id,
                        size: first as u64,
                        is_new: false,
                    });
                }
                let mut tmp = self.temp_file()?;
                self.write(&mut tmp, &buf[..first])?;
                return self.stage(tmp, id, first as u64);
            }
            self.store_streaming(source, limit, buf)
        })
    }

    /// Stores a regular file. Where the vault's filesystem can share blocks with the
    /// file's (XFS, btrfs), a file larger than one buffer is cloned instead of copied
    /// (no data is written) and the clone, which no later write to the original can
    /// change, is what gets hashed. Elsewhere, or if cloning fails, it is copied.
    ///
    /// With `likely` content of the same size already kept, the file is first only
    /// hashed: a restored photo coming back costs one read and no write.
    pub fn store_file(
        &self,
        file: &mut File,
        limit: u64,
        likely: Option<Likely>,
    ) -> Result<Stored, StoreError> {
        let meta = file.metadata().map_err(StoreError::Source)?;
        if let Some(likely) = likely
            && meta.len() > CHUNK as u64
            && meta.len() == likely.size
            && meta.len() <= limit
            && self.contains(&likely.id)
        {
            let (id, size) = hash_through(file).map_err(StoreError::Source)?;
            if id == likely.id {
                return Ok(Stored {
                    id,
                    size,
                    is_new: false,
                });
            }
            file.seek(SeekFrom::Start(0)).map_err(StoreError::Source)?;
        }
        if meta.len() > CHUNK as u64
            && self.may_clone_from(meta.dev())
            && let Some(stored) = self.store_clone(file, meta.dev(), limit)?
        {
            return Ok(stored);
        }
        self.store_limited(file, limit)
    }

    fn may_clone_from(&self, dev: u64) -> bool {
        let cannot = self
            .cannot_clone_from
            .lock()
            .expect("the set of devices is never poisoned");
        !cannot.contains(&dev)
    }

    /// `Ok(None)` when the file could not be cloned: copy it instead.
    fn store_clone(&self, file: &File, dev: u64, limit: u64) -> Result<Option<Stored>, StoreError> {
        let tmp = self.temp_file()?;
        if let Err(e) = rustix::fs::ioctl_ficlone(&tmp.file, file) {
            if matches!(
                e,
                rustix::io::Errno::OPNOTSUPP
                    | rustix::io::Errno::XDEV
                    | rustix::io::Errno::INVAL
                    | rustix::io::Errno::NOTTY
            ) {
                // Another filesystem, or one without shared blocks: asked once per device.
                tracing::debug!("no reflinks from device {dev} into the vault ({e}); copying");
                self.cannot_clone_from
                    .lock()
                    .expect("the set of devices is never poisoned")
                    .insert(dev);
            }
            return Ok(None);
        }
        let tmp_dir = self.root.join("tmp");
        // Read back through the same descriptor: the clone's offset is still at its start.
        let mut clone = &tmp.file;
        let mut hasher = blake3::Hasher::new();
        let size = BUFFER.with_borrow_mut(|buf| {
            buf.resize(CHUNK, 0);
            let mut size = 0u64;
            loop {
                match clone.read(buf) {
                    Ok(0) => return Ok(size),
                    Ok(n) => {
                        size += n as u64;
                        if size > limit {
                            return Err(StoreError::TooLarge(limit));
                        }
                        hasher.update(&buf[..n]);
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        return Err(VaultError::io("read back", tmp.path(&tmp_dir), e).into());
                    }
                }
            }
        })?;
        let id = ObjectId::of(hasher.finalize());
        if self.claim_kept(&id) {
            return Ok(Some(Stored {
                id,
                size,
                is_new: false,
            }));
        }
        self.stage(tmp, id, size).map(Some)
    }

    /// The rest of `store_limited` for content larger than one buffer, which holds
    /// its first chunk.
    fn store_streaming(
        &self,
        source: &mut impl Read,
        limit: u64,
        buf: &mut [u8],
    ) -> Result<Stored, StoreError> {
        let mut tmp = self.temp_file()?;
        let mut hasher = blake3::Hasher::new();
        let mut n = buf.len();
        let mut size = 0u64;
        while n > 0 {
            size += n as u64;
            if size > limit {
                return Err(StoreError::TooLarge(limit));
            }
            hasher.update(&buf[..n]);
            self.write(&mut tmp, &buf[..n])?;
            n = loop {
                match source.read(buf) {
                    Ok(n) => break n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(StoreError::Source(e)),
                }
            };
        }
        let id = ObjectId::of(hasher.finalize());
        if self.claim_kept(&id) {
            // Identical content is already kept; the temporary copy goes away with `tmp`.
            return Ok(Stored {
                id,
                size,
                is_new: false,
            });
        }
        self.stage(tmp, id, size)
    }

    fn temp_file(&self) -> Result<Incoming, VaultError> {
        let tmp_dir = self.root.join("tmp");
        if self.reserve_released.load(Ordering::Relaxed)
            && free_space(&self.root).is_some_and(|free| free < RESERVE)
        {
            return Err(VaultError::Full { path: tmp_dir });
        }
        let room_for_unnamed = {
            let staging = self
                .staged
                .lock()
                .expect("the staged objects are never poisoned");
            staging.open < self.max_open_staged
        };
        if room_for_unnamed
            && *self
                .unnamed_works
                .get_or_init(|| unnamed_copies_work(&tmp_dir))
        {
            match rustix::fs::open(&tmp_dir, unnamed_flags(), Mode::from_raw_mode(0o600)) {
                Ok(fd) => {
                    return Ok(Incoming {
                        file: File::from(fd),
                        named: None,
                    });
                }
                Err(e) if is_disk_full(&e.into()) => {
                    return Err(VaultError::Full { path: tmp_dir });
                }
                // Out of descriptors, say: a named copy holds none once staged.
                Err(_) => {}
            }
        }
        let (file, path) = tempfile::Builder::new()
            .prefix("incoming-")
            .tempfile_in(&tmp_dir)
            .map_err(|e| VaultError::io("create a temporary file in", &tmp_dir, e))?
            .into_parts();
        Ok(Incoming {
            file,
            named: Some(path),
        })
    }

    fn write(&self, tmp: &mut Incoming, bytes: &[u8]) -> Result<(), VaultError> {
        tmp.file
            .write_all(bytes)
            .map_err(|e| VaultError::io("write", tmp.path(&self.root.join("tmp")), e))
    }

    /// Whether an object is in the vault, or staged to be named at the next flush; a
    /// staged one is claimed by the store that asks (see `discard`).
    fn claim_kept(&self, id: &ObjectId) -> bool {
        if let Some(claimed) = self
            .staged
            .lock()
            .expect("the staged objects are never poisoned")
            .copies
            .get_mut(id)
        {
            claimed.claims += 1;
            return true;
        }
        self.object_path(id).is_file()
    }

    /// Takes back what a store handed out, when its copy will not be recorded (the
    /// file changed while it was read): a staged copy that no other store claimed is
    /// dropped before any flush can name it, so nothing lands in `objects/` that the
    /// index does not account for. A copy already named is left to the sweep.
    pub fn discard(&self, stored: &Stored) {
        let mut staging = self
            .staged
            .lock()
            .expect("the staged objects are never poisoned");
        let Some(claimed) = staging.copies.get_mut(&stored.id) else {
            return;
        };
        claimed.claims -= 1;
        if claimed.claims == 0
            && let Some(gone) = staging.copies.remove(&stored.id)
            && matches!(gone.staged, Staged::Unnamed(_))
        {
            staging.open -= 1;
        }
    }

    /// Keeps a finished temporary copy until `flush` names it. Its writing to disk
    /// starts now, so the flush mostly waits for work already done.
    fn stage(&self, tmp: Incoming, id: ObjectId, size: u64) -> Result<Stored, StoreError> {
        start_writeback(&tmp.file);
        let mut staging = self
            .staged
            .lock()
            .expect("the staged objects are never poisoned");
        // Another worker may have staged the same content meanwhile: one copy is enough.
        if let Some(claimed) = staging.copies.get_mut(&id) {
            claimed.claims += 1;
            return Ok(Stored {
                id,
                size,
                is_new: false,
            });
        }
        let staged = match tmp.named {
            None => {
                staging.open += 1;
                Staged::Unnamed(tmp.file)
            }
            Some(path) => Staged::Named(path),
        };
        staging.copies.insert(id, Claimed { staged, claims: 1 });
        Ok(Stored {
            id,
            size,
            is_new: true,
        })
    }

    /// Makes every object stored since the last call durable under its name. Call
    /// before committing index rows that point at them.
    ///
    /// One pass for the whole batch instead of an fsync per object: the content of
    /// every staged copy is flushed (`syncfs`), only then are they renamed to their
    /// names, and the renames are flushed too. So a name in `objects/` always holds
    /// complete content, even after a power cut, and a later store of the same
    /// content can trust it.
    pub fn flush(&self) -> Result<(), VaultError> {
        let staged = std::mem::take(
            &mut *self
                .staged
                .lock()
                .expect("the staged objects are never poisoned"),
        );
        if staged.copies.is_empty() {
            return Ok(());
        }
        let tmp_dir = self.root.join("tmp");
        sync_filesystem(&tmp_dir)?;
        for (id, Claimed { staged, .. }) in staged.copies {
            let dest = self.object_path(&id);
            match staged.name_as(&dest) {
                Ok(()) => {}
                // Only the first object of a folder finds the folder missing.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    create_private_dir(dest.parent().expect("object paths have a parent"))?;
                    staged
                        .name_as(&dest)
                        .map_err(|e| VaultError::io("store", &dest, e))?;
                }
                Err(e) => return Err(VaultError::io("store", &dest, e)),
            }
            if let Staged::Named(tmp) = staged {
                // Renamed away: nothing is left for it to remove.
                let _ = tmp.keep();
            }
        }
        sync_filesystem(&tmp_dir)
    }

    /// Opens an object for reading; the reader fails with `InvalidData` at the end if
    /// the content does not match its name.
    pub fn open_object(&self, id: &ObjectId) -> Result<ObjectReader, DamageError> {
        let path = self.object_path(id);
        let file = File::open(&path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => DamageError::Missing,
            _ => DamageError::Unreadable(e),
        })?;
        Ok(ObjectReader {
            file,
            hasher: blake3::Hasher::new(),
            expected: *id,
            checked: false,
        })
    }

    /// Re-reads an object and checks its hash.
    pub fn verify(&self, id: &ObjectId) -> Result<u64, DamageError> {
        let mut reader = self.open_object(id)?;
        match io::copy(&mut reader, &mut io::sink()) {
            Ok(size) => Ok(size),
            Err(e) if e.kind() == io::ErrorKind::InvalidData => Err(DamageError::Damaged),
            Err(e) => Err(DamageError::Unreadable(e)),
        }
    }
}

/// Reads an object and checks, when the end is reached, that its content still has its name.
pub struct ObjectReader {
    file: File,
    hasher: blake3::Hasher,
    expected: ObjectId,
    checked: bool,
}

impl Read for ObjectReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.file.read(buf)?;
        if n > 0 {
            self.hasher.update(&buf[..n]);
        } else if !self.checked {
            self.checked = true;
            if ObjectId::of(self.hasher.finalize()) != self.expected {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "the copy in the vault is damaged",
                ));
            }
        }
        Ok(n)
    }
}

/// Hashes everything `source` yields, keeping nothing.
fn hash_through(source: &mut impl Read) -> io::Result<(ObjectId, u64)> {
    let mut hasher = blake3::Hasher::new();
    BUFFER.with_borrow_mut(|buf| {
        buf.resize(CHUNK, 0);
        let mut size = 0u64;
        loop {
            match source.read(buf) {
                Ok(0) => return Ok((ObjectId::of(hasher.finalize()), size)),
                Ok(n) => {
                    size += n as u64;
                    hasher.update(&buf[..n]);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    })
}

/// Reads until `buf` is full or the source ends; returns how much was read.
fn read_full(source: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match source.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// The flags of an unnamed copy in `tmp/`.
fn unnamed_flags() -> OFlags {
    OFlags::TMPFILE | OFlags::RDWR | OFlags::CLOEXEC
}

/// Whether an unnamed file can be made in `tmp_dir` and later given a name: some
/// filesystems (NFS, many FUSE ones) cannot, and linking through `/proc` needs it mounted.
fn unnamed_copies_work(tmp_dir: &Path) -> bool {
    let Ok(fd) = rustix::fs::open(tmp_dir, unnamed_flags(), Mode::from_raw_mode(0o600)) else {
        return false;
    };
    let probe = tmp_dir.join(format!("probe-{}", std::process::id()));
    // A probe left by a crash would make linking "succeed" without trying.
    let _ = fs::remove_file(&probe);
    let linked = link_unnamed(&File::from(fd), &probe).is_ok();
    let _ = fs::remove_file(&probe);
    linked
}

/// Gives an unnamed file its name. An object already under that name has the same
/// content (it is named by it) and was made durable before being named: it stays.
fn link_unnamed(file: &File, dest: &Path) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // Through `/proc`, as open(2) documents: linking the descriptor itself
    // (AT_EMPTY_PATH) needs a capability the daemon may not have.
    let by_descriptor = format!("/proc/self/fd/{}", file.as_raw_fd());
    match rustix::fs::linkat(
        rustix::fs::CWD,
        by_descriptor.as_str(),
        rustix::fs::CWD,
        dest,
        AtFlags::SYMLINK_FOLLOW,
    ) {
        Err(rustix::io::Errno::EXIST) => Ok(()),
        other => other.map_err(io::Error::from),
    }
}

/// How many unnamed copies may wait for a flush: a quarter of the descriptors this
/// process may open, and no more than a batch usually copies.
fn max_open_staged() -> usize {
    let soft = rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .current
        .unwrap_or(u64::MAX);
    usize::try_from(soft / 4).unwrap_or(usize::MAX).min(4096)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_content_is_stored_once_and_read_back_checked() {
        let dir = tempfile::tempdir().unwrap();
        let vault = Vault::open(&dir.path().join("v")).unwrap();
        let a = vault.store(&mut &b"hello"[..]).unwrap();
        let b = vault.store(&mut &b"hello"[..]).unwrap();
        assert!(a.is_new);
        assert!(!b.is_new);
        assert_eq!(a.id, b.id);
        assert_eq!(a.id.to_hex(), blake3::hash(b"hello").to_hex().to_string());
        assert!(!vault.contains(&a.id), "named only by the flush");
        vault.flush().unwrap();
        let c = vault.store(&mut &b"hello"[..]).unwrap();
        assert!(!c.is_new);
        let mut out = Vec::new();
        vault
            .open_object(&a.id)
            .unwrap()
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, b"hello");
        assert_eq!(vault.verify(&a.id).unwrap(), 5);
    }

    #[test]
    fn content_larger_than_one_buffer_is_streamed_and_kept_once() {
        let dir = tempfile::tempdir().unwrap();
        let vault = Vault::open(&dir.path().join("v")).unwrap();
        let big: Vec<u8> = (0..CHUNK * 2 + 17).map(|i| (i % 251) as u8).collect();
        let a = vault.store(&mut &big[..]).unwrap();
        let b = vault.store(&mut &big[..]).unwrap();
        assert!(a.is_new && !b.is_new, "the staged copy counts as kept");
        assert_eq!(a.size, big.len() as u64);
        assert_eq!(a.id.as_bytes(), blake3::hash(&big).as_bytes());
        assert!(matches!(
            vault.store_limited(&mut &big[..], CHUNK as u64),
            Err(StoreError::TooLarge(_))
        ));
        vault.flush().unwrap();
        assert_eq!(vault.verify(&a.id).unwrap(), big.len() as u64);
        assert_eq!(fs::read_dir(dir.path().join("v/tmp")).unwrap().count(), 0);
    }

    #[test]
    fn copies_wait_for_the_flush_unnamed_up_to_the_limit_and_named_beyond_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut vault = Vault::open(&dir.path().join("v")).unwrap();
        vault.max_open_staged = 2;
        let contents: Vec<String> = (0..4).map(|i| format!("copy {i}")).collect();
        let ids: Vec<ObjectId> = contents
            .iter()
            .map(|c| vault.store(&mut c.as_bytes()).unwrap().id)
            .collect();
        assert_eq!(
            vault.unnamed_works.get(),
            Some(&true),
            "O_TMPFILE works here"
        );
        let in_tmp = || fs::read_dir(dir.path().join("v/tmp")).unwrap().count();
        assert_eq!(in_tmp(), 2, "only the copies beyond the limit have names");
        assert!(
            ids.iter().all(|id| !vault.contains(id)),
            "named only by the flush"
        );
        vault.flush().unwrap();
        for (id, content) in ids.iter().zip(&contents) {
            assert_eq!(vault.verify(id).unwrap(), content.len() as u64);
        }
        assert_eq!(in_tmp(), 0);
        // The limit counts copies waiting now, not since the start.
        let more = vault.store(&mut &b"after the flush"[..]).unwrap();
        assert_eq!(in_tmp(), 0, "unnamed again");
        vault.flush().unwrap();
        assert!(vault.contains(&more.id));
    }

    #[test]
    fn a_file_with_its_likely_content_is_hashed_and_one_that_differs_is_copied() {
        let dir = tempfile::tempdir().unwrap();
        let vault = Vault::open(&dir.path().join("v")).unwrap();
        let photo: Vec<u8> = (0..CHUNK * 3).map(|i| (i % 253) as u8).collect();
        let kept = vault.store(&mut &photo[..]).unwrap();
        vault.flush().unwrap();
        let likely = Some(Likely {
            id: kept.id,
            size: photo.len() as u64,
        });
        let path = dir.path().join("photo.jpg");
        fs::write(&path, &photo).unwrap();
        let again = vault
            .store_file(&mut File::open(&path).unwrap(), u64::MAX, likely)
            .unwrap();
        assert_eq!((again.id, again.is_new), (kept.id, false));
        assert!(
            vault.staged.lock().unwrap().copies.is_empty(),
            "nothing was copied"
        );

        // Same size, different content: the guess is wrong and the file is copied whole.
        let mut edited = photo.clone();
        edited[CHUNK * 2] ^= 1;
        fs::write(&path, &edited).unwrap();
        let new = vault
            .store_file(&mut File::open(&path).unwrap(), u64::MAX, likely)
            .unwrap();
        assert!(new.is_new);
        assert_eq!(new.id.as_bytes(), blake3::hash(&edited).as_bytes());
        vault.flush().unwrap();
        assert_eq!(vault.verify(&new.id).unwrap(), edited.len() as u64);
    }

    #[test]
    fn a_discarded_copy_is_never_named_unless_another_store_claimed_it() {
        let dir = tempfile::tempdir().unwrap();
        let vault = Vault::open(&dir.path().join("v")).unwrap();
        let thrown = vault.store(&mut &b"read while it changed"[..]).unwrap();
        vault.discard(&thrown);
        let shared = vault.store(&mut &b"two files, one content"[..]).unwrap();
        let other = vault.store(&mut &b"two files, one content"[..]).unwrap();
        assert!(shared.is_new && !other.is_new);
        vault.discard(&shared);
        vault.flush().unwrap();
        assert!(!vault.contains(&thrown.id), "a discarded copy was named");
        assert!(
            vault.contains(&other.id),
            "the copy another store relies on went"
        );
        assert_eq!(vault.object_files().unwrap().len(), 1);
        assert_eq!(fs::read_dir(dir.path().join("v/tmp")).unwrap().count(), 0);
    }

    #[test]
    fn a_damaged_object_is_reported_not_returned() {
        let dir = tempfile::tempdir().unwrap();
        let vault = Vault::open(&dir.path().join("v")).unwrap();
        let a = vault.store(&mut &b"precious photo"[..]).unwrap();
        vault.flush().unwrap();
        fs::write(vault.object_path(&a.id), b"precious phot0").unwrap();
        assert!(matches!(vault.verify(&a.id), Err(DamageError::Damaged)));
        fs::remove_file(vault.object_path(&a.id)).unwrap();
        assert!(matches!(vault.verify(&a.id), Err(DamageError::Missing)));
    }

    #[test]
    fn a_full_disk_is_recognised_even_when_wrapped_with_a_path() {
        use std::io::Write as _;
        let mut dev_full = OpenOptions::new().write(true).open("/dev/full").unwrap();
        let full = dev_full.write_all(b"x").unwrap_err();
        assert!(is_disk_full(&full), "{full}");
        // What tempfile returns for a failed write: the kind kept, the OS code hidden.
        let wrapped = io::Error::new(full.kind(), format!("{full} at path \"/vault/tmp/x\""));
        assert_eq!(wrapped.raw_os_error(), None);
        assert!(is_disk_full(&wrapped), "{wrapped}");
        assert!(!is_disk_full(&io::Error::from(
            io::ErrorKind::PermissionDenied
        )));
    }

    #[test]
    fn vault_folders_and_objects_are_private() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("v");
        let vault = Vault::open(&root).unwrap();
        let a = vault.store(&mut &b"x"[..]).unwrap();
        vault.flush().unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&root), 0o700);
        assert_eq!(mode(&root.join("objects")), 0o700);
        assert_eq!(mode(&vault.object_path(&a.id)), 0o600);
        assert_eq!(fs::read_dir(root.join("tmp")).unwrap().count(), 0);
    }
}
