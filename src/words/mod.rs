//! How things are said: paths for people and for programs, counts and sizes,
//! wrapping for an 80-column terminal and for a letter, and the commands the
//! program prints for someone to type, quoted for a shell.
//!
//! Paths: Linux names are bytes. For people, bytes that are not UTF-8 and
//! control characters (a newline in a name) are shown escaped as `\xNN`, `\n`,
//! and such names are put in quotes so the escape is visible as one. For
//! programs, JSON `path` holds the name when it is valid UTF-8; otherwise it
//! holds the same escaped text and `path_bytes` holds the exact bytes in hex,
//! so no name is ever changed silently (see `json`).
//!
//! It decides nothing: every sentence here says what a caller already knows.

mod command;
mod json;
mod wrap;

use std::os::unix::ffi::OsStrExt;
use std::path::Path;

pub use command::{CommandLine, Repeat, Rerun};
pub use json::{JsonPath, json_path};
pub use wrap::{
    marked_spans, whole_in, whole_path, wrap, wrap_after, wrap_item, wrap_letter, wrap_line,
};

/// A path for people: as is when plain, quoted and escaped when it holds bytes that
/// are not printable UTF-8.
pub fn display_path(path: &Path) -> String {
    let bytes = path.as_os_str().as_bytes();
    match std::str::from_utf8(bytes) {
        Ok(text) if !text.chars().any(|c| is_hidden(c) || c == '"' || c == '\\') => text.to_owned(),
        _ => format!("\"{}\"", escape(bytes)),
    }
}

/// Characters that change what a line looks like without showing themselves:
/// control characters (a newline, an escape that recolours the terminal), and the
/// formatting ones of Unicode, such as the right-to-left override (U+202E), which
/// turns `gpj.exe` into what reads as `exe.jpg`. Shown escaped, never raw.
pub fn is_hidden(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{00ad}'
                | '\u{061c}'
                | '\u{180e}'
                | '\u{200b}'..='\u{200f}'
                | '\u{2028}'..='\u{202e}'
                | '\u{2060}'..='\u{2064}'
                | '\u{2066}'..='\u{206f}'
                | '\u{feff}'
                | '\u{fff9}'..='\u{fffb}'
        )
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
                // As the bytes of its UTF-8, like a name that is not UTF-8 at all.
                c if is_hidden(c) => {
                    for b in c.encode_utf8(&mut [0; 4]).bytes() {
                        out.push_str(&format!("\\x{b:02x}"));
                    }
                }
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

/// Quotes a path for a POSIX shell; bytes that are not UTF-8 use `$'\xNN'`.
pub fn quote(path: &Path) -> String {
    let bytes = path.as_os_str().as_bytes();
    let plain = |b: &u8| b.is_ascii_alphanumeric() || b"/._-+,:@%".contains(b);
    if !bytes.is_empty() && bytes.iter().all(plain) {
        return String::from_utf8_lossy(bytes).into_owned();
    }
    match std::str::from_utf8(bytes) {
        Ok(text) if !text.chars().any(is_hidden) => {
            format!("'{}'", text.replace('\'', "'\\''"))
        }
        _ => {
            let mut out = String::from("$'");
            for &b in bytes {
                match b {
                    b'\'' | b'\\' => out.push_str(&format!("\\{}", b as char)),
                    0x20..=0x7e => out.push(b as char),
                    _ => out.push_str(&format!("\\x{b:02x}")),
                }
            }
            out.push('\'');
            out
        }
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

/// A span of time in the largest whole unit it is: "1 hour", "90 minutes", "2 days".
pub fn duration(ns: i64) -> String {
    let seconds = (ns / 1_000_000_000).max(0) as u64;
    let (n, unit) = [(86_400, "day"), (3600, "hour"), (60, "minute")]
        .into_iter()
        .find(|(size, _)| seconds >= *size && seconds.is_multiple_of(*size))
        .map_or((seconds, "second"), |(size, unit)| (seconds / size, unit));
    match n {
        1 => format!("1 {unit}"),
        n => format!("{} {unit}s", count(n)),
    }
}

/// "a", "a and b", "a, b and c".
pub fn and_list(items: &[&str]) -> String {
    match items {
        [] => String::new(),
        [one] => (*one).to_owned(),
        [rest @ .., last] => format!("{} and {last}", rest.join(", ")),
    }
}

/// "today 09:41", "yesterday 23:50" or "on Sat 21 Nov 2026 02:14": a time after a word.
pub fn spoken_in_a_sentence(ns: i64, now: i64) -> String {
    let spoken = crate::clock::spoken(ns, now);
    match spoken.split_once(' ') {
        Some(("Today", rest)) => format!("today {rest}"),
        Some(("Yesterday", rest)) => format!("yesterday {rest}"),
        _ => format!("on {spoken}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;

    #[test]
    fn a_span_of_time_is_said_in_its_largest_whole_unit() {
        let s = 1_000_000_000i64;
        assert_eq!(duration(3600 * s), "1 hour");
        assert_eq!(duration(90 * 60 * s), "90 minutes");
        assert_eq!(duration(2 * 86_400 * s), "2 days");
        assert_eq!(duration(45 * s), "45 seconds");
    }

    #[test]
    fn odd_names_are_escaped_visibly_and_kept_exactly_in_json() {
        let p = Path::new(OsStr::from_bytes(b"/s/caf\xe9\nx"));
        assert_eq!(display_path(p), "\"/s/caf\\xe9\\nx\"");
        let (text, hex) = json_path(p);
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
