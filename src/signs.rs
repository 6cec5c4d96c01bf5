//! Signs that a new version of a file is its old content encrypted rather than
//! edited: its content became random-looking (entropy jumped), it lost the header
//! of its format (JPEG, PNG, PDF, ZIP and so Office, old Office), or it appeared
//! under the old name with a new extension added (`report.docx.locked`).
//!
//! Judged from a sample of a few KB of each version, never the whole file: a
//! document saved by its program keeps its header, and a format that was already
//! compressed cannot jump. It only judges bytes; what a sign means for an incident
//! is decided where incidents are made.

/// How much of each version is looked at.
pub const SAMPLE_BYTES: usize = 4096;

/// A version shorter than this is too short to judge another one against.
pub const LEAST_JUDGED: usize = 64;

/// The signs of encryption one new version shows, as a set.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Signs(u8);

impl Signs {
    pub const NONE: Self = Self(0);
    pub const ENTROPY_JUMP: Self = Self(1);
    pub const HEADER_LOST: Self = Self(2);
    pub const NEW_EXTENSION: Self = Self(4);

    /// The stored form (index column, journal field).
    pub fn bits(self) -> u8 {
        self.0
    }

    pub fn from_bits(bits: u8) -> Self {
        Self(bits & 7)
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }

    pub fn with(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }

    /// Signs of encryption in `after`, a sample of the new content, against
    /// `before`, the same sample of the content it replaced. A new extension alone
    /// is not judged here: the caller knows the names.
    pub fn of_change(before: &[u8], after: &[u8]) -> Self {
        let mut signs = Self::NONE;
        // A sample too short to say how random it is says nothing.
        if after.len() >= 256 && before.len() >= LEAST_JUDGED {
            let (was, now) = (entropy(before), entropy(after));
            if now >= 7.0 && now - was >= 1.0 {
                signs = signs.with(Self::ENTROPY_JUMP);
            }
        }
        if let Some(header) = known_header(before)
            && !after.starts_with(header)
        {
            signs = signs.with(Self::HEADER_LOST);
        }
        signs
    }
}

impl std::fmt::Display for Signs {
    /// The signs in words: "its content became random, its file format was lost".
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut words = Vec::new();
        if self.contains(Self::ENTROPY_JUMP) {
            words.push("its content became random");
        }
        if self.contains(Self::HEADER_LOST) {
            words.push("its file format was lost");
        }
        if self.contains(Self::NEW_EXTENSION) {
            words.push("a copy appeared under a new extension");
        }
        f.write_str(&words.join(", "))
    }
}

/// Shannon entropy in bits per byte: 8 for random bytes, about 4.5 for text.
pub fn entropy(sample: &[u8]) -> f64 {
    if sample.is_empty() {
        return 0.0;
    }
    let mut counts = [0u32; 256];
    for &b in sample {
        counts[b as usize] += 1;
    }
    let n = sample.len() as f64;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = f64::from(c) / n;
            -p * p.log2()
        })
        .sum()
}

/// The headers a file keeps whenever its own program saves it.
const HEADERS: &[&[u8]] = &[
    b"\xFF\xD8\xFF",                     // JPEG
    b"\x89PNG\r\n\x1a\n",                // PNG
    b"%PDF-",                            // PDF
    b"PK\x03\x04",                       // ZIP, and so docx, xlsx, odt
    b"\xD0\xCF\x11\xE0\xA1\xB1\x1A\xE1", // old Office (doc, xls)
    b"GIF8",                             // GIF
];

fn known_header(sample: &[u8]) -> Option<&'static [u8]> {
    HEADERS.iter().copied().find(|h| sample.starts_with(h))
}

/// The name `path` would have without its last extension, when what is left still
/// has one of its own (`a.docx.locked` → `a.docx`): a copy made of `a.docx` under a
/// new extension. `a.locked` alone gives nothing, nor does a hidden name.
pub fn without_added_extension(path: &std::path::Path) -> Option<std::path::PathBuf> {
    let stem = path.file_stem()?;
    path.extension()?;
    let inner = std::path::Path::new(stem);
    inner.extension()?;
    if inner.file_stem().is_none_or(|s| s.is_empty()) {
        return None;
    }
    Some(path.with_file_name(stem))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn random(n: usize) -> Vec<u8> {
        // A fixed xorshift: random-looking, the same every run.
        let mut x = 0x2545_F491_4F6C_DD1Du64;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    #[test]
    fn text_overwritten_with_random_bytes_jumps() {
        let text = b"Dear customer, your invoice is attached. ".repeat(100);
        let signs = Signs::of_change(&text, &random(4096));
        assert!(signs.contains(Signs::ENTROPY_JUMP));
        assert!(!signs.contains(Signs::HEADER_LOST));
    }

    #[test]
    fn a_jpeg_that_lost_its_header_is_a_sign_even_when_already_random() {
        let mut jpeg = b"\xFF\xD8\xFF\xE0".to_vec();
        jpeg.extend(random(4000));
        let signs = Signs::of_change(&jpeg, &random(4096)[7..]);
        assert_eq!(signs, Signs::HEADER_LOST);
    }

    #[test]
    fn an_office_document_saved_again_shows_nothing() {
        let mut before = b"PK\x03\x04".to_vec();
        before.extend(random(3000));
        let mut after = b"PK\x03\x04".to_vec();
        after.extend(random(4000)[5..].iter());
        assert!(Signs::of_change(&before, &after).is_empty());
        let edited = b"Dear customer, your invoice is attached, paid. ".repeat(90);
        let text = b"Dear customer, your invoice is attached. ".repeat(100);
        assert!(Signs::of_change(&text, &edited).is_empty());
    }

    #[test]
    fn an_added_extension_names_the_original() {
        let p = std::path::Path::new("/s/a/report.docx.locked");
        assert_eq!(
            without_added_extension(p).unwrap(),
            std::path::Path::new("/s/a/report.docx")
        );
        assert!(without_added_extension(std::path::Path::new("/s/a.locked")).is_none());
        assert!(without_added_extension(std::path::Path::new("/s/.bashrc.bak")).is_none());
    }
}
