//! How results are written for people and for programs.
//!
//! Paths: Linux names are bytes. For people, bytes that are not UTF-8 and
//! control characters (a newline in a name) are shown escaped as `\xNN`, `\n`,
//! and such names are put in quotes so the escape is visible as one. For
//! programs, JSON `path` holds the name when it is valid UTF-8; otherwise it
//! holds the same escaped text and `path_bytes` holds the exact bytes in hex,
//! so no name is ever changed silently.

use std::collections::BTreeMap;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

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

/// The JSON fields for a path: `path`, and `path_bytes` (hex) when it is not UTF-8.
/// A UTF-8 name is kept exactly, invisible characters and all: JSON escapes what
/// must be escaped, and programs compare names, they do not look at them.
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
    fn wrapped_messages_fit_80_columns_and_keep_commands_whole() {
        let message = "Mass deletion: 2,149 files (4.0 GB) deleted from /srv/share/photos/competition-2026 \
             since 2026-11-22 02:14 (incident K7Q-4MD). To bring them back: undelete --vault \
             /var/lib/undelete restore --incident K7Q-4MD";
        let wrapped = wrap(message);
        let lines: Vec<&str> = wrapped.lines().collect();
        assert_eq!(
            lines.last(),
            Some(&"    undelete --vault /var/lib/undelete restore --incident K7Q-4MD"),
            "{wrapped}"
        );
        assert!(lines.iter().all(|l| l.len() <= 80), "{wrapped}");
        assert_eq!(lines[lines.len() - 2], "  To bring them back:", "{wrapped}");
        assert!(
            wrapped.contains("/srv/share/photos/competition-2026"),
            "{wrapped}"
        );
    }

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
    fn a_path_with_a_full_stop_and_a_space_is_not_split() {
        let text = "Files in /srv/share/Vol. 2 scans were deleted. Run it again.";
        assert_eq!(
            wrap(text),
            "Files in /srv/share/Vol. 2 scans were deleted.\n  Run it again."
        );
    }

    #[test]
    fn counts_have_thousands_separators() {
        assert_eq!(count(2149), "2,149");
        assert_eq!(count(17), "17");
        assert_eq!(count(1_000_000), "1,000,000");
        assert_eq!(files(1), "1 file");
    }
}

/// Wraps a message for an 80-column terminal: each sentence starts a line, later
/// lines are indented. Paths are never split inside a word and commands not at
/// all, so each stays readable aloud.
pub fn wrap(text: &str) -> String {
    let options = textwrap::Options::new(79)
        .subsequent_indent("  ")
        .break_words(false)
        .word_splitter(textwrap::WordSplitter::NoHyphenation);
    let sentences: Vec<String> = sentences(text)
        .into_iter()
        .enumerate()
        .map(|(n, sentence)| {
            let indent = if n == 0 { "" } else { "  " };
            let options = options.clone().initial_indent(indent);
            // A command goes whole on a line of its own, so it can be typed as shown.
            match sentence.trim_end().split_once(": undelete ") {
                Some((words, command)) => format!(
                    "{}:\n    undelete {command}",
                    textwrap::fill(words, options)
                ),
                None => textwrap::fill(sentence.trim_end(), options),
            }
        })
        .collect();
    sentences.join("\n")
}

/// Wraps one line of a list for an 80-column terminal at word boundaries, keeping
/// its indent and indenting what follows by two more; no word (a path, a command)
/// is ever split.
pub fn wrap_line(line: &str) -> String {
    let indent = &line[..line.len() - line.trim_start().len()];
    let more = format!("{indent}  ");
    let options = textwrap::Options::new(79)
        .initial_indent(indent)
        .subsequent_indent(&more)
        .break_words(false)
        .word_splitter(textwrap::WordSplitter::NoHyphenation);
    textwrap::fill(line.trim_start(), options)
}

/// A reason as it is read out: "larger than the 2 MB capture limit" rather than the
/// index's "larger than the capture limit (2 MB)", which programs may rely on.
fn plain(reason: &str) -> String {
    match reason
        .strip_prefix("larger than the capture limit (")
        .and_then(|rest| rest.strip_suffix(')'))
    {
        Some(size) => format!("larger than the {size} capture limit"),
        None => reason.to_owned(),
    }
}

/// The exclude rule that kept a lost file out, if that is why it was lost.
fn excluding_rule(f: &FileResult) -> Option<&str> {
    if f.reason_code.as_deref() != Some("excluded") {
        return None;
    }
    f.reason.as_deref()?.strip_prefix("excluded by the rule ")
}

/// Names programs leave only while they run, which no one means to keep.
const TEMPORARY_RULES: &[&str] = &[
    "*.tmp",
    "*.temp",
    "~$*",
    ".~lock.*#",
    "Thumbs.db",
    "desktop.ini",
    ".DS_Store",
    "*.swp",
    "*~",
    "*.part",
    "*.crdownload",
    ".~*",
];

fn rule_keeps_temporary_files(rule: &str) -> bool {
    TEMPORARY_RULES.iter().any(|t| t.eq_ignore_ascii_case(rule))
}

/// An exclude rule in words, for people who do not read patterns: "names ending
/// in .xmp", "everything in folders named cache".
pub fn rule_in_words(rule: &str) -> String {
    let wild = |s: &str| s.contains(['*', '?', '[', '{']);
    let rule = rule.trim_start_matches('/').trim_end_matches('/');
    if let Some(dir) = rule.strip_suffix("/**")
        && !wild(dir)
    {
        return format!("everything in the folder {dir}");
    }
    if rule.contains('/') {
        return format!("paths like {rule}, a rule of this server");
    }
    if let Some(ext) = rule.strip_prefix('*')
        && !wild(ext)
    {
        return format!("names ending in {ext}");
    }
    if let Some(start) = rule.strip_suffix('*')
        && !wild(start)
    {
        return format!("names starting with {start}");
    }
    if !wild(rule) {
        return format!("anything named {rule}");
    }
    format!("names like {rule}, a rule of this server")
}

/// "a", "a and b", "a, b and c".
fn and_list(items: &[&str]) -> String {
    match items {
        [] => String::new(),
        [one] => (*one).to_owned(),
        [rest @ .., last] => format!("{} and {last}", rest.join(", ")),
    }
}

/// Splits at each ". " that ends a sentence: one after a word with a '/' in it is
/// part of a path ("/srv/share/Vol. 2 scans"), and a path is never split.
fn sentences(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    for (at, _) in text.match_indices(". ") {
        let word = text[start..at].rsplit(' ').next().unwrap_or_default();
        if !word.contains('/') {
            out.push(&text[start..at + 2]);
            start = at + 2;
        }
    }
    out.push(&text[start..]);
    out.retain(|s| !s.is_empty());
    out
}

/// What happened to one file in a restore.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Recovered,
    AlreadyPresent,
    Lost,
    /// Not written because the restore was stopped (Ctrl-C) first; running the
    /// same command again brings it back.
    Stopped,
    /// A lock file of a program, left out on purpose: brought back, it would tell
    /// its program that the document is still open. Not counted as lost.
    LeftOut,
    /// Brought back, but not whole: what was kept does not hold its last content
    /// (the reason says why). Counts like a file never copied for the exit code.
    Partial,
}

/// One file's line in a restore report.
#[derive(Debug, Clone)]
pub struct FileResult {
    pub path: PathBuf,
    pub size: u64,
    pub outcome: Outcome,
    pub reason: Option<String>,
    /// A stable code for the reason (`too_large`, `excluded`, `damaged`, …).
    pub reason_code: Option<String>,
    /// For lost files: true when it was never copied (a rule, a limit, deleted too
    /// fast), false when a copy existed and still could not be brought back.
    pub expected: bool,
    /// Restored under a new name because something different had its name.
    pub beside: bool,
    pub restored_to: Option<PathBuf>,
    pub deleted_at: Option<i64>,
}

/// The kinds of file the summary counts separately.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Category {
    Images,
    Documents,
    Video,
    Audio,
    Archives,
    Other,
}

impl Category {
    pub fn of(path: &Path) -> Self {
        let ext = path
            .extension()
            .map(|e| e.to_string_lossy().to_lowercase())
            .unwrap_or_default();
        match ext.as_str() {
            "jpg" | "jpeg" | "png" | "gif" | "heic" | "heif" | "tif" | "tiff" | "bmp" | "webp"
            | "raw" | "cr2" | "cr3" | "nef" | "arw" | "dng" | "orf" | "rw2" | "psd" | "svg" => {
                Self::Images
            }
            "pdf" | "doc" | "docx" | "xls" | "xlsx" | "ppt" | "pptx" | "odt" | "ods" | "odp"
            | "txt" | "rtf" | "csv" | "md" | "pages" | "numbers" | "key" | "eml" | "msg" => {
                Self::Documents
            }
            "mp4" | "mov" | "avi" | "mkv" | "m4v" | "wmv" | "mpg" | "mpeg" | "webm" | "mts" => {
                Self::Video
            }
            "mp3" | "wav" | "flac" | "aac" | "m4a" | "ogg" | "wma" | "aiff" | "opus" => Self::Audio,
            "zip" | "tar" | "gz" | "tgz" | "bz2" | "xz" | "7z" | "rar" | "zst" => Self::Archives,
            _ => Self::Other,
        }
    }

    /// The key in JSON reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::Images => "images",
            Self::Documents => "documents",
            Self::Video => "video",
            Self::Audio => "audio",
            Self::Archives => "archives",
            Self::Other => "other",
        }
    }

    fn noun(self, n: u64) -> &'static str {
        match (self, n == 1) {
            (Self::Images, true) => "image",
            (Self::Images, false) => "images",
            (Self::Documents, true) => "document",
            (Self::Documents, false) => "documents",
            (Self::Video, true) => "video",
            (Self::Video, false) => "videos",
            (Self::Audio, true) => "audio file",
            (Self::Audio, false) => "audio files",
            (Self::Archives, true) => "archive",
            (Self::Archives, false) => "archives",
            (Self::Other, true) => "other file",
            (Self::Other, false) => "other files",
        }
    }
}

/// Counts of a restore, by outcome.
#[derive(Debug, Clone, Default)]
pub struct Counts {
    pub files: u64,
    pub recovered: u64,
    pub recovered_bytes: u64,
    pub already_present: u64,
    pub lost: u64,
    pub lost_unexpected: u64,
    pub beside: u64,
    pub stopped: u64,
    /// Lock files of programs left out on purpose: not among `files`.
    pub left_out: u64,
    pub partial: u64,
}

/// The recovered-versus-lost report of one restore.
#[derive(Debug, Clone)]
pub struct RestoreReport {
    pub files: Vec<FileResult>,
    pub dry_run: bool,
    pub started_at: i64,
    pub finished_at: i64,
    /// Where files went, in words ("their original place", "/tmp/out").
    pub destination: String,
    /// The command that repeats this restore without questions.
    pub command: String,
    /// The code of the incident restored, when one was chosen.
    pub incident: Option<String>,
}

impl RestoreReport {
    pub fn counts(&self) -> Counts {
        let mut c = Counts::default();
        for f in &self.files {
            c.files += (f.outcome != Outcome::LeftOut) as u64;
            match f.outcome {
                Outcome::Recovered => {
                    c.recovered += 1;
                    c.recovered_bytes += f.size;
                    c.beside += f.beside as u64;
                }
                Outcome::AlreadyPresent => c.already_present += 1,
                Outcome::Lost => {
                    c.lost += 1;
                    c.lost_unexpected += (!f.expected) as u64;
                }
                Outcome::Stopped => c.stopped += 1,
                Outcome::LeftOut => c.left_out += 1,
                Outcome::Partial => c.partial += 1,
            }
        }
        c
    }

    /// True when every lost file was never copied in the first place and the
    /// restore ran to its end: it did all that could be done.
    pub fn complete(&self) -> bool {
        let c = self.counts();
        c.lost_unexpected == 0 && c.stopped == 0
    }

    /// Lost files grouped by reason in plain words, largest group first. Files kept
    /// out by rules for temporary files form one group, whichever rule it was.
    pub fn lost_by_reason(&self) -> Vec<(String, Vec<&FileResult>)> {
        let mut groups: BTreeMap<String, Vec<&FileResult>> = BTreeMap::new();
        let mut temporary: BTreeMap<&str, Vec<&FileResult>> = BTreeMap::new();
        for f in self.files.iter().filter(|f| f.outcome == Outcome::Lost) {
            let reason = f.reason.clone().unwrap_or_else(|| "unknown".into());
            match excluding_rule(f) {
                Some(rule) if rule_keeps_temporary_files(rule) => {
                    temporary.entry(rule).or_default().push(f)
                }
                Some(rule) => groups
                    .entry(format!("{reason} ({})", rule_in_words(rule)))
                    .or_default()
                    .push(f),
                None => groups.entry(plain(&reason)).or_default().push(f),
            }
        }
        if !temporary.is_empty() {
            let rules: Vec<&str> = temporary.keys().copied().collect();
            let key = match rules.as_slice() {
                [rule] => format!("excluded by the rule {rule}: temporary files, never kept"),
                rules => format!(
                    "excluded by the rules {}: temporary files, never kept",
                    and_list(rules)
                ),
            };
            groups.insert(key, temporary.into_values().flatten().collect());
        }
        let mut groups: Vec<_> = groups.into_iter().collect();
        groups.sort_by(|a, b| b.1.len().cmp(&a.1.len()).then(a.0.cmp(&b.0)));
        groups
    }

    /// Files with `outcome` grouped by reason, largest group first.
    fn by_reason(&self, outcome: Outcome) -> Vec<(String, Vec<&FileResult>)> {
        let mut groups: BTreeMap<String, Vec<&FileResult>> = BTreeMap::new();
        for f in self.files.iter().filter(|f| f.outcome == outcome) {
            groups
                .entry(f.reason.clone().unwrap_or_else(|| "unknown".into()))
                .or_default()
                .push(f);
        }
        let mut groups: Vec<_> = groups.into_iter().collect();
        groups.sort_by(|a, b| b.1.len().cmp(&a.1.len()).then(a.0.cmp(&b.0)));
        groups
    }

    /// The lock files of programs left out on purpose.
    pub fn left_out(&self) -> Vec<&FileResult> {
        self.files
            .iter()
            .filter(|f| f.outcome == Outcome::LeftOut)
            .collect()
    }

    /// The summary as lines to read out: the count, the lost files by reason and by
    /// kind, the lock files left out, a stop. A dry run says what would happen.
    ///
    /// "Recovered 2,132 of 2,149 files (3.9 GB).", "17 could not be recovered:",
    /// "  14 were larger than the 2 MB capture limit", …,
    /// "Lost, by kind: 14 images, 3 other files."
    pub fn summary_lines(&self) -> Vec<String> {
        let c = self.counts();
        let future = self.dry_run;
        let be = |n: u64| match (future, n == 1) {
            (true, true) => "is",
            (true, false) => "are",
            (false, true) => "was",
            (false, false) => "were",
        };
        let mut lines = Vec::new();
        let mut first = if future {
            format!(
                "{} of {} would be recovered ({}).",
                count(c.recovered),
                files(c.files),
                bytes(c.recovered_bytes)
            )
        } else {
            format!(
                "Recovered {} of {} ({}).",
                count(c.recovered),
                files(c.files),
                bytes(c.recovered_bytes)
            )
        };
        if c.already_present > 0 {
            first.push_str(&format!(
                " {} {} already in place.",
                count(c.already_present),
                be(c.already_present)
            ));
        }
        lines.push(first);
        if c.lost > 0 {
            lines.push(format!(
                "{} {} be recovered:",
                count(c.lost),
                if future { "would not" } else { "could not" }
            ));
            for (reason, group) in self.lost_by_reason() {
                let n = group.len() as u64;
                // "14 were larger than the capture limit", but "2: the vault disk was full".
                let adjectival = [
                    "larger", "excluded", "deleted", "damaged", "missing", "moved", "not",
                    "purged", "kept",
                ];
                lines.push(if adjectival.iter().any(|w| reason.starts_with(w)) {
                    format!("  {} {} {reason}", count(n), be(n))
                } else {
                    format!("  {}: {reason}", count(n))
                });
            }
            lines.push(format!("Lost, by kind: {}.", self.kinds(Outcome::Lost)));
        }
        if c.left_out > 0 {
            // Brought back, a lock file would only make its program refuse the document.
            lines.push(match c.left_out {
                1 => format!(
                    "1 lock file of a program {} left out on purpose (see the report).",
                    be(1)
                ),
                n => format!(
                    "{} lock files of programs {} left out on purpose (see the report).",
                    count(n),
                    be(n)
                ),
            });
        }
        if c.partial > 0 {
            let parts: Vec<String> = self
                .by_reason(Outcome::Partial)
                .iter()
                .map(|(reason, group)| format!("{}: {reason}", count(group.len() as u64)))
                .collect();
            lines.push(format!(
                "{} {} back only in part: {}.",
                count(c.partial),
                if future { "would come" } else { "came" },
                parts.join("; ")
            ));
        }
        if c.stopped > 0 {
            lines.push(format!(
                "The restore was stopped before the end: {} not restored yet.",
                files(c.stopped)
            ));
        }
        lines
    }

    /// The summary as one paragraph: "Recovered 2,132 of 2,149 files (3.9 GB). 17
    /// could not be recovered: 14 were larger than the 2 MB capture limit; 3 were
    /// excluded by the rule *.tmp: temporary files, never kept. Lost, by kind: …".
    pub fn summary(&self) -> String {
        let lines = self.summary_lines();
        let mut out = String::new();
        for (n, line) in lines.iter().enumerate() {
            if n > 0 {
                out.push(' ');
            }
            out.push_str(line.trim_start());
            let reason = line.starts_with("  ");
            let next_reason = lines.get(n + 1).is_some_and(|l| l.starts_with("  "));
            if reason {
                out.push(if next_reason { ';' } else { '.' });
            }
        }
        out
    }

    /// "14 images, 1 document, 2 other files": the files of `outcome` by kind.
    pub fn kinds(&self, outcome: Outcome) -> String {
        let parts: Vec<String> = self
            .by_category(outcome)
            .iter()
            .map(|(cat, n)| format!("{} {}", count(*n), cat.noun(*n)))
            .collect();
        parts.join(", ")
    }

    /// Recovered and lost by kind of file: "14 images, 3 documents".
    pub fn by_category(&self, outcome: Outcome) -> Vec<(Category, u64)> {
        let mut m: BTreeMap<Category, u64> = BTreeMap::new();
        for f in self.files.iter().filter(|f| f.outcome == outcome) {
            *m.entry(Category::of(&f.path)).or_default() += 1;
        }
        m.into_iter().collect()
    }

    /// The last line: whether the exit code says "all that could be done was done".
    pub fn verdict(&self) -> String {
        let c = self.counts();
        if self.dry_run {
            return "A dry run: nothing was changed. The same command without --dry-run \
                    restores the files."
                .to_owned();
        }
        let destination_full = self
            .files
            .iter()
            .any(|f| f.reason_code.as_deref() == Some("destination_full"));
        if c.stopped > 0 {
            "Stopped before the end. Run the same command again to finish; \
             nothing is restored twice."
                .to_owned()
        } else if destination_full {
            "The disk the files go to is full. Free some space on it, or choose \
             another folder, then run the same command again: nothing is restored twice."
                .to_owned()
        } else if c.partial > 0 && c.lost_unexpected == 0 {
            format!(
                "Everything that had been kept was brought back, but {} only in part \
                 (see above).",
                files(c.partial)
            )
        } else if c.lost == 0 {
            "Every selected file is in place.".to_owned()
        } else if c.lost_unexpected == 0 {
            format!(
                "All files that had been copied were recovered; the {} lost {} never copied.",
                count(c.lost),
                if c.lost == 1 { "was" } else { "were" }
            )
        } else {
            format!(
                "{} that had been copied could not be recovered (see above); this needs attention.",
                files(c.lost_unexpected)
            )
        }
    }

    /// The report for people.
    pub fn text(&self) -> String {
        let mut out = String::new();
        for line in self.summary_lines() {
            out.push_str(&wrap_line(&line));
            out.push('\n');
        }
        out.push_str(&format!("Destination: {}.\n", self.destination));
        let verb = if self.dry_run {
            "Would not be"
        } else {
            "Could not be"
        };
        for (reason, group) in self.lost_by_reason() {
            out.push('\n');
            out.push_str(&wrap_line(&format!(
                "{verb} recovered ({}), {reason}:",
                count(group.len() as u64)
            )));
            out.push('\n');
            for f in group {
                out.push_str(&format!("  {}\n", display_path(&f.path)));
            }
        }
        let left_out = self.left_out();
        if !left_out.is_empty() {
            out.push_str(&format!(
                "\nLock files, not brought back on purpose ({}):\n",
                count(left_out.len() as u64)
            ));
            for f in left_out {
                out.push_str(&format!("  {}\n", display_path(&f.path)));
            }
        }
        for (reason, group) in self.by_reason(Outcome::Partial) {
            out.push_str(&format!(
                "\nBrought back only in part — {reason} ({}):\n",
                count(group.len() as u64)
            ));
            for f in group {
                out.push_str(&format!("  {}\n", display_path(&f.path)));
            }
        }
        let beside: Vec<_> = self
            .files
            .iter()
            .filter(|f| f.outcome == Outcome::Recovered && f.beside)
            .collect();
        if !beside.is_empty() {
            out.push_str(&format!(
                "\nRestored beside a different file with the same name ({}):\n",
                count(beside.len() as u64)
            ));
            for f in beside {
                out.push_str(&format!(
                    "  {} -> {}\n",
                    display_path(&f.path),
                    f.restored_to
                        .as_deref()
                        .map(display_path)
                        .unwrap_or_default()
                ));
            }
        }
        // Whole on a line of its own, so it can be typed as shown.
        out.push_str(&format!(
            "\nTo repeat this restore:\n    {}\n",
            self.command
        ));
        out.push_str(&wrap(&self.verdict()));
        out.push('\n');
        out
    }

    /// The report for programs.
    pub fn json(&self) -> serde_json::Value {
        let c = self.counts();
        let by_kind = |outcome| {
            self.by_category(outcome)
                .into_iter()
                .map(|(cat, n)| (cat.name().to_owned(), serde_json::json!(n)))
                .collect::<serde_json::Map<_, _>>()
        };
        serde_json::json!({
            "dry_run": self.dry_run,
            "started_at": crate::clock::rfc3339(self.started_at),
            "finished_at": crate::clock::rfc3339(self.finished_at),
            "destination": self.destination,
            "files_selected": c.files,
            "recovered": c.recovered,
            "recovered_bytes": c.recovered_bytes,
            "already_present": c.already_present,
            "lost": c.lost,
            "lost_unexpected": c.lost_unexpected,
            "restored_beside": c.beside,
            "not_restored_yet": c.stopped,
            "left_out": c.left_out,
            "incident": self.incident,
            "partial": c.partial,
            "recovered_by_kind": by_kind(Outcome::Recovered),
            "lost_by_kind": by_kind(Outcome::Lost),
            "complete": self.complete(),
            "command": self.command,
            "files": self.files.iter().map(|f| {
                let (path, path_bytes) = json_path(&f.path);
                let restored_to = f.restored_to.as_deref().map(json_path);
                let mut v = serde_json::json!({
                    "path": path,
                    "outcome": f.outcome,
                    "reason": f.reason,
                    "reason_code": f.reason_code,
                    "restored_to": restored_to.as_ref().map(|(text, _)| text),
                    "size": f.size,
                    "deleted_at": f.deleted_at.map(crate::clock::rfc3339),
                });
                if let Some(hex) = path_bytes {
                    v["path_bytes"] = serde_json::json!(hex);
                }
                if let Some((_, Some(hex))) = restored_to {
                    v["restored_to_bytes"] = serde_json::json!(hex);
                }
                v
            }).collect::<Vec<_>>(),
        })
    }

    /// Saves the text and JSON reports under `dir` with a timestamped name; returns
    /// the text report's path.
    pub fn save(&self, dir: &Path) -> std::io::Result<PathBuf> {
        let stamp = chrono::Local::now().format("%Y-%m-%d_%H%M%S");
        let mut n = 0;
        loop {
            let suffix = if n == 0 {
                String::new()
            } else {
                format!("-{n}")
            };
            let text_path = dir.join(format!("restore-{stamp}{suffix}.txt"));
            if !text_path.exists() {
                let json_path = text_path.with_extension("json");
                write_private(
                    &json_path,
                    serde_json::to_string_pretty(&self.json())?.as_bytes(),
                )?;
                write_private(&text_path, self.text().as_bytes())?;
                return Ok(text_path);
            }
            n += 1;
        }
    }
}

fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut file = crate::vault::create_private_file(path)?;
    file.set_len(0)?;
    file.write_all(data)
}
