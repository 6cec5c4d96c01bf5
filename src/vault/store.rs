//! Copying into the vault: hashing in the same pass, cloning where the filesystem
//! shares blocks, staging each copy in `tmp/` until a flush makes it durable and
//! gives it its name.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::atomic::Ordering;

use rustix::fs::{AtFlags, Mode, OFlags};
use tempfile::TempPath;

use super::{
    CHUNK, Likely, RESERVE, StoreError, Stored, Vault, VaultError, create_private_dir, free_space,
    is_disk_full, start_writeback, sync_filesystem,
};
use crate::ids::ObjectId;

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
pub(super) struct Staging {
    copies: HashMap<ObjectId, Claimed>,
    /// How many of them are unnamed, so hold a descriptor.
    open: usize,
}

impl Staging {
    /// Whether no copy waits for a flush.
    pub(super) fn is_empty(&self) -> bool {
        self.copies.is_empty()
    }
}

/// A staged copy, and how many stores since the last flush handed out its id: one
/// `discard` each may take them back, and the copy goes when none is left.
struct Claimed {
    staged: Staged,
    claims: usize,
}

thread_local! {
    /// Each capture thread reads through its own buffer: a fresh megabyte per small
    /// file would cost more than the file.
    static BUFFER: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

impl Vault {
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
        // A staged copy has no hash to compare with: the clone costs less than the read.
        if let Some(likely) = likely.filter(|l| !l.id.is_staged())
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
        if self.hash_later.load(Ordering::Relaxed) {
            // Recorded as it is: the clone cannot change with the original, and the
            // hasher names it later, off the capture's path.
            let meta = tmp
                .file
                .metadata()
                .map_err(|e| VaultError::io("inspect", tmp.path(&tmp_dir), e))?;
            if meta.len() > limit {
                return Err(StoreError::TooLarge(limit));
            }
            let id = ObjectId::staged(super::staged::stamp_of(&meta));
            return self.stage(tmp, id, meta.len()).map(Some);
        }
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
        let mut newly_staged = Vec::new();
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
            if id.is_staged() {
                newly_staged.push(id);
            }
        }
        sync_filesystem(&tmp_dir)?;
        self.newly_staged
            .lock()
            .expect("never poisoned")
            .extend(newly_staged);
        Ok(())
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
pub(super) fn max_open_staged() -> usize {
    let soft = rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .current
        .unwrap_or(u64::MAX);
    usize::try_from(soft / 4).unwrap_or(usize::MAX).min(4096)
}

impl Vault {
    /// The first `len` bytes of an object, unchecked: a sample to judge content by
    /// (`signs`), never content to give back. A copy stored in this batch is read
    /// where it waits for its name (`flush`).
    pub fn sample(&self, id: &ObjectId, len: usize) -> io::Result<Vec<u8>> {
        use std::os::unix::fs::FileExt;
        let waiting = {
            let staged = self
                .staged
                .lock()
                .expect("the staged objects are never poisoned");
            match staged.copies.get(id).map(|c| &c.staged) {
                Some(Staged::Unnamed(file)) => Some(file.try_clone()?),
                Some(Staged::Named(tmp)) => Some(File::open(tmp)?),
                None => None,
            }
        };
        let file = match waiting {
            Some(file) => file,
            None => File::open(self.object_path(id))?,
        };
        let mut out = vec![0; len];
        let mut filled = 0;
        while filled < len {
            match file.read_at(&mut out[filled..], filled as u64)? {
                0 => break,
                n => filled += n,
            }
        }
        out.truncate(filled);
        Ok(out)
    }
}
