//! Reading a copy from the vault at any offset without ever handing out a byte that
//! is not the content the copy is named for.
//!
//! An object's name is the BLAKE3 hash of all of it, which proves nothing about a
//! piece read at an offset. So the first read of an object reads all of it once,
//! checks the whole against its name, and keeps a hash of each block of 128 KiB
//! made in that same pass: a table of 32 bytes per block (256 KiB per GiB), trusted
//! because the pass that made it matched the name. Every read after that reads the
//! whole blocks it touches and checks each against the table. A copy damaged
//! before the first read, or after it, fails with an error, never wrong bytes.
//! The first read of a large file costs one full read of it; later reads cost
//! reading whole blocks, about what the kernel's read-ahead asks for anyway.
//!
//! Tables are kept for the objects read most recently, up to a budget.

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::{Arc, Mutex};

use crate::ids::ObjectId;
use crate::vault::Vault;

/// The unit of checking: what the kernel usually reads from a FUSE file at once.
const BLOCK: u64 = 128 * 1024;
/// How many bytes of block tables are kept (each covers 4096 times its size).
const TABLE_BUDGET: usize = 16 << 20;

/// Why a piece of a copy could not be given.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("the copy in the vault is damaged (its content no longer matches its name)")]
    Damaged,
    #[error("the copy is missing from the vault")]
    Missing,
    #[error("the copy in the vault cannot be read: {0}")]
    Io(#[from] io::Error),
}

/// The hash of each block of one object, made by a pass that matched its name.
struct Table {
    size: u64,
    blocks: Vec<[u8; 32]>,
}

impl Table {
    fn bytes(&self) -> usize {
        self.blocks.len() * 32 + 64
    }
}

/// The copies being read through the mount, and the tables that check them.
pub struct Contents {
    vault: Vault,
    tables: Mutex<Tables>,
}

#[derive(Default)]
struct Tables {
    by_object: HashMap<ObjectId, Arc<Table>>,
    /// Oldest first, for dropping tables when over the budget.
    order: VecDeque<ObjectId>,
    bytes: usize,
}

impl Contents {
    pub fn new(vault: Vault) -> Self {
        Self {
            vault,
            tables: Mutex::new(Tables::default()),
        }
    }

    /// Opens the copy of `id` for reading.
    pub fn open(&self, id: &ObjectId) -> Result<File, ReadError> {
        File::open(self.vault.object_path(id)).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => ReadError::Missing,
            _ => ReadError::Io(e),
        })
    }

    /// Up to `len` bytes of the copy `id` (`size` bytes long, as the index says) from
    /// `offset`, read through `file` and checked.
    pub fn read(
        &self,
        file: &File,
        id: &ObjectId,
        size: u64,
        offset: u64,
        len: usize,
    ) -> Result<Vec<u8>, ReadError> {
        let table = self.table(file, id, size)?;
        if offset >= table.size || len == 0 {
            return Ok(Vec::new());
        }
        let end = table.size.min(offset.saturating_add(len as u64));
        let first = offset / BLOCK;
        let last = (end - 1) / BLOCK;
        let mut out = Vec::with_capacity((end - offset) as usize);
        let mut buf = vec![0u8; BLOCK as usize];
        for block in first..=last {
            let start = block * BLOCK;
            let n = (table.size - start).min(BLOCK) as usize;
            read_exactly(file, &mut buf[..n], start)?;
            let expected = table.blocks.get(block as usize).ok_or(ReadError::Damaged)?;
            if blake3::hash(&buf[..n]).as_bytes() != expected {
                self.forget(id);
                return Err(ReadError::Damaged);
            }
            let from = offset.max(start) - start;
            let to = end.min(start + n as u64) - start;
            out.extend_from_slice(&buf[from as usize..to as usize]);
        }
        Ok(out)
    }

    /// The table of `id`, made by reading all of it the first time.
    fn table(&self, file: &File, id: &ObjectId, size: u64) -> Result<Arc<Table>, ReadError> {
        if let Some(table) = self
            .tables
            .lock()
            .expect("never poisoned")
            .by_object
            .get(id)
        {
            return Ok(table.clone());
        }
        let table = Arc::new(make_table(file, id, size)?);
        let mut tables = self.tables.lock().expect("never poisoned");
        if tables.by_object.insert(*id, table.clone()).is_none() {
            tables.order.push_back(*id);
            tables.bytes += table.bytes();
        }
        while tables.bytes > TABLE_BUDGET && tables.order.len() > 1 {
            let Some(old) = tables.order.pop_front() else {
                break;
            };
            if let Some(dropped) = tables.by_object.remove(&old) {
                tables.bytes -= dropped.bytes();
            }
        }
        Ok(table)
    }

    /// Drops the table of a copy found damaged, so the next read checks it whole again.
    fn forget(&self, id: &ObjectId) {
        let mut tables = self.tables.lock().expect("never poisoned");
        if let Some(dropped) = tables.by_object.remove(id) {
            tables.bytes -= dropped.bytes();
            tables.order.retain(|o| o != id);
        }
    }
}

/// Reads all of the copy once: its hash must be its name (or, staged, it must be
/// as it was made) and its length `size`.
fn make_table(file: &File, id: &ObjectId, size: u64) -> Result<Table, ReadError> {
    let mut whole = blake3::Hasher::new();
    let mut blocks = Vec::with_capacity(size.div_ceil(BLOCK) as usize);
    let mut buf = vec![0u8; BLOCK as usize];
    let mut at = 0u64;
    loop {
        let n = read_full(file, &mut buf, at)?;
        if n == 0 {
            break;
        }
        whole.update(&buf[..n]);
        blocks.push(*blake3::hash(&buf[..n]).as_bytes());
        at += n as u64;
        if (n as u64) < BLOCK {
            break;
        }
    }
    // A copy not hashed yet has only what it was made with to be checked against;
    // its blocks are checked from here on like any other's.
    let intact = if id.is_staged() {
        crate::vault::staged_copy_intact(file, id)
    } else {
        whole.finalize().as_bytes() == id.as_bytes()
    };
    if at != size || !intact {
        return Err(ReadError::Damaged);
    }
    Ok(Table { size, blocks })
}

/// Reads until `buf` is full or the file ends; how much was read.
fn read_full(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read_at(&mut buf[filled..], offset + filled as u64) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Reads exactly `buf.len()` bytes; a copy that became shorter is damaged.
fn read_exactly(file: &File, buf: &mut [u8], offset: u64) -> Result<(), ReadError> {
    if read_full(file, buf, offset)? < buf.len() {
        return Err(ReadError::Damaged);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn stored(content: &[u8]) -> (tempfile::TempDir, Contents, ObjectId) {
        let dir = tempfile::tempdir().unwrap();
        let vault = Vault::open(&dir.path().join("vault")).unwrap();
        let stored = vault.store(&mut &content[..]).unwrap();
        vault.flush().unwrap();
        (dir, Contents::new(vault), stored.id)
    }

    fn content(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
    }

    #[test]
    fn reads_at_any_offset_give_the_content() {
        let data = content(3 * BLOCK as usize + 1234);
        let (_dir, contents, id) = stored(&data);
        let file = contents.open(&id).unwrap();
        let size = data.len() as u64;
        for (offset, len) in [
            (0, 10),
            (BLOCK - 3, 10),
            (BLOCK, BLOCK as usize),
            (2 * BLOCK + 5, 5 * BLOCK as usize),
            (size - 1, 100),
            (size, 100),
        ] {
            let got = contents.read(&file, &id, size, offset, len).unwrap();
            let from = (offset as usize).min(data.len());
            let to = (offset as usize + len).min(data.len());
            assert_eq!(got, &data[from..to], "{offset} {len}");
        }
    }

    #[test]
    fn a_copy_damaged_after_its_first_read_fails_instead_of_giving_wrong_bytes() {
        let data = content(2 * BLOCK as usize + 77);
        let (_dir, contents, id) = stored(&data);
        let size = data.len() as u64;
        let file = contents.open(&id).unwrap();
        assert_eq!(contents.read(&file, &id, size, 0, 4).unwrap(), &data[..4]);
        // One byte changes on the disk, in a block not read yet.
        let path = contents.vault.object_path(&id);
        let mut perms = std::fs::metadata(&path).unwrap().permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o600);
        std::fs::set_permissions(&path, perms).unwrap();
        let mut raw = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        raw.write_all_at(b"X", BLOCK + 10).unwrap();
        raw.flush().unwrap();
        let err = contents.read(&file, &id, size, BLOCK, 16).unwrap_err();
        assert!(matches!(err, ReadError::Damaged), "{err}");
        // The block read before is still right, and the whole copy is now refused.
        let err = contents.read(&file, &id, size, 0, 4).unwrap_err();
        assert!(matches!(err, ReadError::Damaged), "{err}");
    }

    #[test]
    fn a_copy_damaged_before_its_first_read_gives_nothing() {
        let data = content(1000);
        let (_dir, contents, id) = stored(&data);
        let path = contents.vault.object_path(&id);
        let mut perms = std::fs::metadata(&path).unwrap().permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o600);
        std::fs::set_permissions(&path, perms).unwrap();
        std::fs::write(&path, b"something else entirely").unwrap();
        let file = contents.open(&id).unwrap();
        let err = contents.read(&file, &id, 1000, 0, 10).unwrap_err();
        assert!(matches!(err, ReadError::Damaged), "{err}");
    }
}
