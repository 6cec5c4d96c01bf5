//! The ids things are known by: the BLAKE3 hash that names an object in the
//! vault, and the short code a person reads over the phone for an incident.
//!
//! Each is its own type, never a bare string or array passed around, and each
//! reads back what it writes. It never decides which object or incident is meant.

use std::fmt;
use std::str::FromStr;

/// The BLAKE3 hash that names an object.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectId([u8; 32]);

impl ObjectId {
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// From the 32 bytes stored in the index; `None` if the length is wrong.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        Some(Self(bytes.try_into().ok()?))
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    pub fn to_hex(self) -> String {
        blake3::Hash::from_bytes(self.0).to_hex().to_string()
    }

    pub(crate) fn of(hash: blake3::Hash) -> Self {
        Self(*hash.as_bytes())
    }

    /// The provisional name of a copy captured by a clone and not hashed yet (see
    /// `vault::staged`): what the copy's own file had when it was made, its size,
    /// modification time and inode, after a fixed prefix that sets it apart from a
    /// hash. No two copies staged at once share an inode, so no two share a name,
    /// and the name says what to compare the copy with until it has a hash. A
    /// BLAKE3 hash begins with these 8 bytes once in 2^64.
    pub fn staged(stamp: StagedStamp) -> Self {
        let mut bytes = [0u8; 32];
        bytes[..8].copy_from_slice(STAGED_PREFIX);
        bytes[8..16].copy_from_slice(&stamp.size.to_be_bytes());
        bytes[16..24].copy_from_slice(&stamp.mtime_ns.to_be_bytes());
        bytes[24..].copy_from_slice(&stamp.inode.to_be_bytes());
        Self(bytes)
    }

    /// What a staged copy's file had when it was made; `None` for a hash.
    pub fn staged_stamp(&self) -> Option<StagedStamp> {
        if &self.0[..8] != STAGED_PREFIX {
            return None;
        }
        let word = |at: usize| <[u8; 8]>::try_from(&self.0[at..at + 8]).expect("8 bytes");
        Some(StagedStamp {
            size: u64::from_be_bytes(word(8)),
            mtime_ns: i64::from_be_bytes(word(16)),
            inode: u64::from_be_bytes(word(24)),
        })
    }

    /// Whether this names a copy not hashed yet, not content.
    pub fn is_staged(&self) -> bool {
        self.staged_stamp().is_some()
    }
}

/// The first bytes of every staged copy's provisional name.
pub const STAGED_PREFIX: &[u8; 8] = b"\0staged\0";

/// What a staged copy's file had when it was made: a change to it through the
/// filesystem changes its size or its modification time, a file put in its place
/// has another inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StagedStamp {
    pub size: u64,
    pub mtime_ns: i64,
    pub inode: u64,
}

impl fmt::Display for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ObjectId({})", self.to_hex())
    }
}

impl FromStr for ObjectId {
    type Err = blake3::HexError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self::of(blake3::Hash::from_hex(s)?))
    }
}

/// Incident codes are Crockford base32 (no I, L, O or U; when typed, O is read as 0
/// and I or L as 1), in two groups of three, like `K7Q-4MD`.
const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// An incident's phone-friendly code.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IncidentCode(String);

/// Fresh incident codes: each a hash of a seed (the time and the process) and a
/// counter, so codes drawn together differ and a restarted program does not
/// repeat the ones before it.
pub struct CodeSource {
    seed: u64,
    drawn: u64,
}

impl CodeSource {
    pub fn new() -> Self {
        Self {
            seed: (crate::clock::now() as u64) ^ (u64::from(std::process::id()) << 32),
            drawn: 0,
        }
    }

    pub fn next_code(&mut self) -> String {
        self.drawn += 1;
        let hash = blake3::hash(&[self.seed.to_le_bytes(), self.drawn.to_le_bytes()].concat());
        let seed = u64::from_le_bytes(hash.as_bytes()[..8].try_into().expect("8 bytes"));
        IncidentCode::from_seed(seed).to_string()
    }
}

impl Default for CodeSource {
    fn default() -> Self {
        Self::new()
    }
}

impl IncidentCode {
    /// A fresh code from 30 bits of `seed`.
    pub fn from_seed(seed: u64) -> Self {
        let mut s = String::with_capacity(7);
        for i in 0..6 {
            if i == 3 {
                s.push('-');
            }
            let digit = (seed >> (5 * (5 - i))) & 31;
            s.push(ALPHABET[digit as usize] as char);
        }
        Self(s)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for IncidentCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0:?} is not an incident code; codes look like K7Q-4MD (see: undelete incidents)")]
pub struct BadCode(String);

impl FromStr for IncidentCode {
    type Err = BadCode;
    /// Accepts what people type: any case, with or without the dash or spaces,
    /// O for 0 and I or L for 1.
    fn from_str(text: &str) -> Result<Self, BadCode> {
        let mut digits = String::new();
        for c in text.chars().filter(|c| !matches!(c, '-' | ' ')) {
            let c = match c.to_ascii_uppercase() {
                'O' => '0',
                'I' | 'L' => '1',
                c => c,
            };
            if !ALPHABET.contains(&(c as u8)) || !c.is_ascii() {
                return Err(BadCode(text.to_owned()));
            }
            digits.push(c);
        }
        if digits.len() != 6 {
            return Err(BadCode(text.to_owned()));
        }
        Ok(Self(format!("{}-{}", &digits[..3], &digits[3..])))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_staged_name_gives_back_its_stamp_and_is_never_taken_for_a_hash() {
        let stamp = StagedStamp {
            size: 33_554_432,
            mtime_ns: -5,
            inode: u64::MAX,
        };
        let id = ObjectId::staged(stamp);
        assert!(id.is_staged());
        assert_eq!(id.staged_stamp(), Some(stamp));
        let again: ObjectId = id.to_hex().parse().unwrap();
        assert_eq!(again.staged_stamp(), Some(stamp));
        assert!(!ObjectId::of(blake3::hash(b"a photo")).is_staged());
    }

    #[test]
    fn codes_read_back_whatever_people_type() {
        let code = IncidentCode::from_seed(0x3FFF_FFFF);
        assert_eq!(code.as_str(), "ZZZ-ZZZ");
        let code = IncidentCode::from_seed(0b00001_00000_10010_00000_00000_00001);
        assert_eq!(code.as_str(), "10J-001");
        assert_eq!("ioj 0OL".parse::<IncidentCode>().unwrap(), code);
        assert_eq!("10j001".parse::<IncidentCode>().unwrap(), code);
        assert!("K7Q-4M".parse::<IncidentCode>().is_err());
        assert!("K7Q-4MU".parse::<IncidentCode>().is_err());
    }
}
