//! How results are written for people and for programs.
//!
//! Paths: Linux names are bytes. For people, bytes that are not UTF-8 and
//! control characters (a newline in a name) are shown escaped as `\xNN`, `\n`,
//! and such names are put in quotes so the escape is visible as one. For
//! programs, JSON `path` holds the name when it is valid UTF-8; otherwise it
//! holds the same escaped text and `path_bytes` holds the exact bytes in hex,
//! so no name is ever changed silently.

use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// A path for people: as is when plain, quoted and escaped when it holds bytes that
/// are not printable UTF-8.
pub fn display_path(path: &Path) -> String {
    let bytes = path.as_os_str().as_bytes();
    match std::str::from_utf8(bytes) {
        Ok(text)
            if !text
                .chars()
                .any(|c| c.is_control() || c == '"' || c == '\\') =>
        {
            text.to_owned()
        }
        _ => format!("\"{}\"", escape(bytes)),
    }
}

/// Valid UTF-8 is kept (control characters and backslashes escaped); other bytes
/// become `\xNN`.
fn escape(bytes: &[u8]) -> String {
    let mut out = String::new();
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\n' => out.push_str("\\n"),
                '\t' => out.push_str("\\t"),
                '\\' => out.push_str("\\\\"),
                '"' => out.push_str("\\\""),
                c if c.is_control() => out.push_str(&format!("\\x{:02x}", c as u32)),
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

/// The JSON fields for a path: `path`, and `path_bytes` (hex) when it is not UTF-8.
pub fn json_path(path: &Path) -> (String, Option<String>) {
    let bytes = path.as_os_str().as_bytes();
    match std::str::from_utf8(bytes) {
        Ok(text) => (text.to_owned(), None),
        Err(_) => (
            escape(bytes),
            Some(bytes.iter().map(|b| format!("{b:02x}")).collect()),
        ),
    }
}

/// 2149 → "2,149": counts read out on the phone.
pub fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// 4_000_000_000 → "4.0 GB".
pub fn bytes(n: u64) -> String {
    bytesize::ByteSize::b(n).display().si().to_string()
}

/// "1 file" / "3 files".
pub fn files(n: u64) -> String {
    if n == 1 {
        "1 file".to_owned()
    } else {
        format!("{} files", count(n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::path_from_bytes;

    #[test]
    fn odd_names_are_escaped_visibly_and_kept_exactly_in_json() {
        let p = path_from_bytes(b"/s/caf\xe9\nx".to_vec());
        assert_eq!(display_path(&p), "\"/s/caf\\xe9\\nx\"");
        let (text, hex) = json_path(&p);
        assert_eq!(text, "/s/caf\\xe9\\nx");
        assert_eq!(hex.unwrap(), "2f732f636166e90a78");
        assert_eq!(display_path(Path::new("/s/plain é.txt")), "/s/plain é.txt");
        assert_eq!(json_path(Path::new("/s/a\nb")).0, "/s/a\nb");
    }

    #[test]
    fn counts_have_thousands_separators() {
        assert_eq!(count(2149), "2,149");
        assert_eq!(count(17), "17");
        assert_eq!(count(1_000_000), "1,000,000");
        assert_eq!(files(1), "1 file");
    }
}
