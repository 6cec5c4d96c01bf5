//! Reading objects back: every byte hash-checked against the object's name.

use std::fs::File;
use std::io::{self, Read};

use super::{DamageError, Vault};
use crate::ids::ObjectId;

impl Vault {
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

    /// The object's file, for a caller that checks the hash of what it makes of it
    /// (a restore by clone reads its clone back).
    pub fn object_file(&self, id: &ObjectId) -> Result<File, DamageError> {
        File::open(self.object_path(id)).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => DamageError::Missing,
            _ => DamageError::Unreadable(e),
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
