//! Bringing an object's bytes into a restored file, the cheapest way the two
//! filesystems allow: a clone where the vault and the destination share blocks
//! (FICLONE: nothing is copied), else a copy inside the kernel
//! (`copy_file_range`), else through a buffer. Whichever way, the bytes that
//! end up in the file are hashed and compared with the object's name before the
//! file is called restored: a damaged vault copy is never restored as recovered.
//! A copy not hashed yet (staged, see `vault::staged`) has no hash to compare
//! with: it must be as it was made before and after the copy, and the hash of
//! what was written is its content's name, handed back to be recorded.
//!
//! It never names, renames or announces the file; `restore` does.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;

use crate::ids::ObjectId;
use crate::vault::{DamageError, Vault, staged_copy_intact};

/// Why a copy did not give the object's bytes.
pub(super) enum CopyError {
    /// The vault's copy is missing, unreadable or not what its name says.
    Vault(DamageError),
    /// The restored file could not be written.
    Write(io::Error),
}

/// A staged copy's content, found while it was restored: its hash and size.
pub(super) type Found = Option<(ObjectId, u64)>;

/// Fills `dest` (empty, open for reading and writing) with the object `id`.
pub(super) fn copy_object(
    vault: &Vault,
    id: &ObjectId,
    dest: &File,
    buf: &mut [u8],
) -> Result<Found, CopyError> {
    let source = vault.object_file(id).map_err(CopyError::Vault)?;
    if !staged_copy_intact(&source, id) {
        return Err(CopyError::Vault(DamageError::Damaged));
    }
    let size = source
        .metadata()
        .map_err(|e| CopyError::Vault(DamageError::Unreadable(e)))?
        .len();
    // Small files: one read and one write cost less than the kernel's setting up.
    if size > buf.len() as u64 {
        if rustix::fs::ioctl_ficlone(dest, &source).is_ok() {
            return check(id, &source, dest, buf);
        }
        if copy_in_kernel(&source, dest, size, buf)? {
            return check(id, &source, dest, buf);
        }
    }
    copy_buffered(vault, id, dest, buf)
}

/// `copy_file_range` from start to end; `false` when this pair of filesystems
/// does not offer it (nothing written then).
fn copy_in_kernel(
    source: &File,
    dest: &File,
    size: u64,
    buf: &mut [u8],
) -> Result<bool, CopyError> {
    let (mut from, mut to) = (0u64, 0u64);
    while from < size {
        let left = usize::try_from(size - from).unwrap_or(usize::MAX);
        match rustix::fs::copy_file_range(source, Some(&mut from), dest, Some(&mut to), left) {
            // Shorter than it said: the hash check below finds out what is missing.
            Ok(0) => break,
            Ok(_) => {}
            Err(e)
                if from == 0
                    && matches!(
                        e,
                        rustix::io::Errno::XDEV
                            | rustix::io::Errno::OPNOTSUPP
                            | rustix::io::Errno::INVAL
                            | rustix::io::Errno::NOSYS
                    ) =>
            {
                return Ok(false);
            }
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(blame(source, from, buf, e.into())),
        }
    }
    Ok(true)
}

/// Which side failed a `copy_file_range` that stopped at `at` with `error`: it
/// says the same for a vault that cannot be read (a damaged disk, for the
/// technician) as for a destination that cannot be written (a full disk, for the
/// customer). The vault's copy is read where the copy stopped to tell them apart.
fn blame(source: &File, at: u64, buf: &mut [u8], error: io::Error) -> CopyError {
    let only_writes = [libc::ENOSPC, libc::EDQUOT, libc::EFBIG, libc::EROFS];
    if error
        .raw_os_error()
        .is_some_and(|e| only_writes.contains(&e))
    {
        return CopyError::Write(error);
    }
    loop {
        match source.read_at(buf, at) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(read) => return CopyError::Vault(DamageError::Unreadable(read)),
            Ok(_) => return CopyError::Write(error),
        }
    }
}

/// Through `buf`, hashing on the way: the vault's reader fails at the end when the
/// bytes are not what the name says.
fn copy_buffered(
    vault: &Vault,
    id: &ObjectId,
    mut dest: &File,
    buf: &mut [u8],
) -> Result<Found, CopyError> {
    let mut reader = vault.open_object(id).map_err(CopyError::Vault)?;
    loop {
        let n = match reader.read(buf) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                return Err(CopyError::Vault(DamageError::Damaged));
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(CopyError::Vault(DamageError::Unreadable(e))),
        };
        if n == 0 {
            return Ok(reader.content().filter(|_| id.is_staged()));
        }
        dest.write_all(&buf[..n]).map_err(CopyError::Write)?;
    }
}

/// Reads `dest` back from its start and compares its hash with the object's name;
/// for a staged copy, checks that `source` is still as it was made and gives the
/// hash found.
fn check(id: &ObjectId, source: &File, dest: &File, buf: &mut [u8]) -> Result<Found, CopyError> {
    let mut hasher = blake3::Hasher::new();
    let mut at = 0u64;
    loop {
        match dest.read_at(buf, at) {
            Ok(0) => break,
            Ok(n) => {
                hasher.update(&buf[..n]);
                at += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(CopyError::Vault(DamageError::Unreadable(e))),
        }
    }
    let found = ObjectId::of(hasher.finalize());
    match id.staged_stamp() {
        Some(made) if made.size == at && staged_copy_intact(source, id) => Ok(Some((found, at))),
        None if found == *id => Ok(None),
        _ => Err(CopyError::Vault(DamageError::Damaged)),
    }
}
