//! A simulated ransomware, and the office files it finds: documents that look
//! like documents (letters, JPEG photos, PDF, Office files), so that what the
//! daemon judges is what a real share holds.
//!
//! Variant A rewrites each file in place with random bytes, as most families do;
//! variant B writes an encrypted copy beside it named `NAME.locked`, then deletes
//! the original. Both go file by file, calling `between` after each, so a test can
//! look at the daemon (with `undelete sync`) at a chosen count.

use std::fs;
use std::path::{Path, PathBuf};

/// An ordinary office file, number `n`: a letter, a JPEG, a PDF or a Word file,
/// of a few KB each, and different for every `n`.
pub fn office_file(n: usize) -> (String, Vec<u8>) {
    let letter = format!(
        "Dear customer {n},\n\nplease find attached invoice {n} for the work done in \
         March. Payment is due within thirty days.\n\nKind regards,\nthe office\n"
    )
    .repeat(40);
    match n % 4 {
        0 => (format!("letters/letter-{n:04}.txt"), letter.into_bytes()),
        1 => {
            let mut jpeg = b"\xFF\xD8\xFF\xE0\x00\x10JFIF\x00".to_vec();
            jpeg.extend(random(n as u64, 6000));
            (format!("photos/IMG_{n:04}.jpg"), jpeg)
        }
        2 => {
            let mut pdf = b"%PDF-1.7\n".to_vec();
            pdf.extend(letter.as_bytes());
            (format!("invoices/invoice-{n:04}.pdf"), pdf)
        }
        _ => {
            let mut docx = b"PK\x03\x04\x14\x00\x06\x00".to_vec();
            docx.extend(random(n as u64 + 7, 5000));
            (format!("contracts/contract-{n:04}.docx"), docx)
        }
    }
}

/// Random-looking bytes, the same for the same seed: what encryption gives.
pub fn random(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Which way the files are encrypted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// Each file rewritten in place with random bytes.
    InPlace,
    /// `NAME.locked` written with random bytes, then `NAME` deleted.
    LockedCopies,
}

/// Encrypts `files` one after the other the `variant` way; `between(k)` is called
/// after the k-th file (1-based).
pub fn encrypt(variant: Variant, files: &[PathBuf], mut between: impl FnMut(usize)) {
    for (k, path) in files.iter().enumerate() {
        let len = fs::metadata(path).map(|m| m.len() as usize).unwrap_or(4096);
        let cipher = cipher(k, len);
        match variant {
            Variant::InPlace => fs::write(path, cipher).unwrap(),
            Variant::LockedCopies => {
                fs::write(locked(path), cipher).unwrap();
                fs::remove_file(path).unwrap();
            }
        }
        between(k + 1);
    }
}

/// The name variant B gives a file's encrypted copy.
pub fn locked(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".locked");
    PathBuf::from(name)
}

/// The encrypted bytes `encrypt` writes for the k-th file (0-based) of `len` bytes.
pub fn cipher(k: usize, len: usize) -> Vec<u8> {
    random(0xC0FFEE + k as u64, len.max(512))
}

/// The `smbclient` commands that encrypt the files `relative` (paths below the
/// share) the `variant` way, as an infected PC does over the share, from the
/// encrypted copies already made in `staged` (one per file, named by its number).
pub fn smb_commands(variant: Variant, relative: &[(usize, PathBuf)], staged: &Path) -> String {
    let mut commands = String::new();
    for (k, path) in relative {
        let remote = path.to_string_lossy().replace('/', "\\");
        let local = staged.join(k.to_string());
        match variant {
            Variant::InPlace => commands.push_str(&format!("put {} {remote}; ", local.display())),
            Variant::LockedCopies => commands.push_str(&format!(
                "put {} {remote}.locked; del {remote}; ",
                local.display()
            )),
        }
    }
    commands
}
