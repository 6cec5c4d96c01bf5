//! Reading objects back: every byte hash-checked against the object's name, or,
//! for a copy not hashed yet, checked against what its provisional name holds
//! (see `staged`), and hashed on the way.

use std::fs::File;
use std::io::{self, Read};

use super::{DamageError, Vault};
use crate::ids::ObjectId;

impl Vault {
    /// Opens an object for reading; the reader fails with `InvalidData` at the end if
    /// the content does not match its name. A staged copy fails at once, or at the
    /// end, if it is not as it was made; its hash is then `ObjectReader::content`.
    pub fn open_object(&self, id: &ObjectId) -> Result<ObjectReader, DamageError> {
        let path = self.object_path(id);
        let file = File::open(&path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => DamageError::Missing,
            _ => DamageError::Unreadable(e),
        })?;
        if !super::staged_copy_intact(&file, id) {
            return Err(DamageError::Damaged);
        }
        Ok(ObjectReader {
            file,
            hasher: blake3::Hasher::new(),
            expected: *id,
            checked: None,
            size: 0,
        })
    }

    /// The object's file, for a caller that checks the hash of what it makes of it
    /// (a restore by clone reads its clone back).
    pub fn object_file(&self, id: &ObjectId) -> Result<File, DamageError> {
        File::open(self.object_path(id)).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => DamageError::Missing,
            _ => DamageError::Unreadable(e),
        })
    }

    /// Re-reads an object and checks its hash; a staged copy is read whole and
    /// checked against its provisional name (it has no hash to compare with yet).
    pub fn verify(&self, id: &ObjectId) -> Result<u64, DamageError> {
        if id.is_staged() {
            return self.hash_staged(id).map(|(_, size)| size);
        }
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
    /// The content's hash, once the end was reached and the check passed.
    checked: Option<ObjectId>,
    size: u64,
}

impl ObjectReader {
    /// The hash of everything read, once the reader reached the end and found the
    /// copy intact: the name a staged copy's content has.
    pub fn content(&self) -> Option<(ObjectId, u64)> {
        self.checked.map(|id| (id, self.size))
    }
}

impl Read for ObjectReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.file.read(buf)?;
        if n > 0 {
            self.hasher.update(&buf[..n]);
            self.size += n as u64;
        } else if self.checked.is_none() {
            let id = ObjectId::of(self.hasher.finalize());
            let intact = match self.expected.staged_stamp() {
                Some(made) => {
                    made.size == self.size && super::staged_copy_intact(&self.file, &self.expected)
                }
                None => id == self.expected,
            };
            if !intact {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "the copy in the vault is damaged",
                ));
            }
            self.checked = Some(id);
        }
        Ok(n)
    }
}
