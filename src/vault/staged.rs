//! Copies captured by a clone and not hashed yet: "clone now, hash later".
//!
//! Where the protected file and the vault share a filesystem that can clone, a
//! capture is a clone (no data is read or written) kept in `staged/` under a
//! provisional name (`ObjectId::staged`) that holds what its own file had when it
//! was made: size, modification time and inode. The index records it as the
//! version at once, so the file is protected from that moment; a hasher reads it
//! later and gives it its real name in `objects/` (`adopt`).
//!
//! Until then, what can be checked is what the provisional name holds: the copy is
//! there, under the same inode, with the same size and modification time. Any
//! write through the filesystem changes the size or the modification time, a file
//! put in its place has another inode. What cannot be caught before a hash exists
//! is a change that puts the modification time back by hand, or bits that rot on
//! the disk without the filesystem noticing (btrfs checks its data blocks, XFS
//! does not). Once hashed, a copy is checked by its hash like any other.

use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use super::{CHUNK, DamageError, Vault, VaultError};
use crate::ids::{ObjectId, StagedStamp};

/// The stamp of a staged copy's own file, as it is now.
pub(super) fn stamp_of(meta: &fs::Metadata) -> StagedStamp {
    StagedStamp {
        size: meta.len(),
        mtime_ns: meta.mtime() * 1_000_000_000 + meta.mtime_nsec(),
        inode: meta.ino(),
    }
}

/// Whether `file`, opened as the staged copy `id`, is as it was when it was made.
/// For a hashed id, always true: its content is checked by its hash instead.
pub fn staged_copy_intact(file: &File, id: &ObjectId) -> bool {
    match id.staged_stamp() {
        None => true,
        Some(made) => file.metadata().is_ok_and(|now| stamp_of(&now) == made),
    }
}

impl Vault {
    /// The folder of staged copies.
    pub(super) fn staged_dir(&self) -> PathBuf {
        self.root.join("staged")
    }

    /// Reads a staged copy whole and names its content: its BLAKE3 hash and size.
    /// The copy must be as it was made before and after the read (see the module's
    /// opening), or it is `Damaged` and no hash is given.
    pub fn hash_staged(&self, id: &ObjectId) -> Result<(ObjectId, u64), DamageError> {
        let mut file = self.object_file(id)?;
        if !staged_copy_intact(&file, id) {
            return Err(DamageError::Damaged);
        }
        let mut hasher = blake3::Hasher::new();
        let mut buf = vec![0u8; CHUNK];
        let mut size = 0u64;
        loop {
            match file.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    hasher.update(&buf[..n]);
                    size += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(DamageError::Unreadable(e)),
            }
        }
        let expected = id.staged_stamp().map(|s| s.size);
        if !staged_copy_intact(&file, id) || expected.is_some_and(|s| s != size) {
            return Err(DamageError::Damaged);
        }
        Ok((ObjectId::of(hasher.finalize()), size))
    }

    /// Gives the staged copy `staged`, whose content is `id`, its real name: a
    /// second name in `objects/` for the same file, durable when this returns. When
    /// `objects/` already holds `id` (identical content kept before), nothing is
    /// added: the staged copy is a duplicate. Either way the staged name stays until
    /// the index no longer points at it (then `remove_object`), so a crash in
    /// between leaves the index pointing at a copy that is still there.
    /// Returns whether a name was added.
    pub fn adopt(&self, staged: &ObjectId, id: &ObjectId) -> Result<bool, AdoptError> {
        let from = self.object_path(staged);
        let file = self.object_file(staged).map_err(AdoptError::Damage)?;
        if !staged_copy_intact(&file, staged) {
            return Err(AdoptError::Damage(DamageError::Damaged));
        }
        let dest = self.object_path(id);
        if dest.is_file() {
            return Ok(false);
        }
        let parent = dest.parent().expect("object paths have a parent");
        let linked = match fs::hard_link(&from, &dest) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                super::create_private_dir(parent).map_err(AdoptError::Vault)?;
                fs::hard_link(&from, &dest)
            }
            other => other,
        };
        match linked {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(false),
            Err(e) => return Err(AdoptError::Vault(VaultError::io("name", &dest, e))),
        }
        // The content was made durable before the staged copy was recorded; the new
        // name must be too before the index points at it.
        File::open(parent)
            .and_then(|d| d.sync_all())
            .map_err(|e| AdoptError::Vault(VaultError::io("flush", parent, e)))?;
        Ok(true)
    }

    /// Every staged copy's provisional name on disk.
    pub fn staged_files(&self) -> Result<Vec<(ObjectId, u64)>, VaultError> {
        let dir = self.staged_dir();
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(VaultError::io("list", &dir, e)),
        };
        let mut out = Vec::new();
        for entry in entries.flatten() {
            let Some(id) = entry
                .file_name()
                .to_str()
                .and_then(|name| name.parse::<ObjectId>().ok())
                .filter(ObjectId::is_staged)
            else {
                continue;
            };
            if let Ok(meta) = entry.metadata() {
                out.push((id, meta.len()));
            }
        }
        Ok(out)
    }
}

/// Why a staged copy could not be given its real name.
#[derive(Debug, thiserror::Error)]
pub enum AdoptError {
    #[error("the copy waiting to be hashed is {0}")]
    Damage(DamageError),
    #[error(transparent)]
    Vault(VaultError),
}
