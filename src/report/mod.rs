//! How results are written for people and for programs.
//!
//! Paths are shown as `words` shows them: escaped visibly for people, exact to
//! the byte in JSON, never changed silently.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

mod category;
mod reason;

pub use category::Category;
pub use reason::LossReason;

use crate::words::{and_list, bytes, count, display_path, files, json_path, wrap, wrap_line};

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
    /// Why it is lost, left out, stopped or back only in part; none when it came back whole.
    pub reason: Option<LossReason>,
    /// Restored under a new name because something different had its name.
    pub beside: bool,
    pub restored_to: Option<PathBuf>,
    pub deleted_at: Option<i64>,
    /// Who deleted it, where the event source said.
    pub deleted_by: Option<crate::model::Person>,
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

/// What became of one encrypted copy an overwrite incident left.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EncryptedOutcome {
    Left,
    MovedTo(PathBuf),
    Deleted,
}

#[derive(Debug, Clone)]
pub struct EncryptedResult {
    pub path: PathBuf,
    pub outcome: EncryptedOutcome,
    /// Why it was left although asked to be moved or deleted.
    pub why_left: Option<String>,
}

/// How the report groups encrypted copies, in the order it tells them.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum EncryptedGroup {
    Moved,
    Deleted,
    Left,
    LeftBecause(String),
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
    /// For an overwrite incident: the moment it began, as of which files came back.
    pub as_before: Option<i64>,
    /// For an overwrite incident: what became of each encrypted copy.
    pub encrypted: Vec<EncryptedResult>,
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
                    c.lost_unexpected += f.reason.as_ref().is_some_and(|r| !r.expected()) as u64;
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
            let reason = f
                .reason
                .as_ref()
                .map_or_else(|| "unknown".into(), ToString::to_string);
            match f.reason.as_ref().and_then(LossReason::excluding_rule) {
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
                .entry(
                    f.reason
                        .as_ref()
                        .map_or_else(|| "unknown".into(), ToString::to_string),
                )
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
        if let Some(at) = self.as_before {
            lines.push(format!(
                "Each file {} back as it was at {}, before the encryption began.",
                if future { "would come" } else { "came" },
                crate::clock::local(at)
            ));
        }
        lines.extend(self.encrypted_lines());
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

    /// What became of the encrypted copies, in a sentence for each outcome.
    fn encrypted_lines(&self) -> Vec<String> {
        let future = self.dry_run;
        let were = |n: usize| match (future, n == 1) {
            (true, _) => "would be",
            (false, true) => "was",
            (false, false) => "were",
        };
        let copies = |n: usize| match n {
            1 => "1 encrypted copy".to_owned(),
            n => format!("{} encrypted copies", count(n as u64)),
        };
        let mut lines = Vec::new();
        for (heading, group) in self.encrypted_groups() {
            let n = group.len();
            let place = if n == 1 {
                "where it is"
            } else {
                "where they are"
            };
            lines.push(match heading {
                EncryptedGroup::Left => format!("{} {} left {place}.", copies(n), were(n)),
                EncryptedGroup::LeftBecause(why) => {
                    format!("{} {} left {place}: {why}.", copies(n), were(n))
                }
                EncryptedGroup::Moved => {
                    // The folders on lines of their own: a path is never split.
                    let folders: std::collections::BTreeSet<String> = group
                        .iter()
                        .filter_map(|e| self.aside_folder(e))
                        .map(|f| format!("  {}", display_path(&f)))
                        .collect();
                    lines.push(format!("{} {} moved aside, into:", copies(n), were(n)));
                    lines.extend(folders);
                    continue;
                }
                EncryptedGroup::Deleted => format!(
                    "{} {} deleted (the vault keeps a copy of each).",
                    copies(n),
                    were(n)
                ),
            });
        }
        lines
    }

    /// The encrypted copies by what became of them, in a fixed order.
    fn encrypted_groups(&self) -> Vec<(EncryptedGroup, Vec<&EncryptedResult>)> {
        let mut groups: BTreeMap<EncryptedGroup, Vec<&EncryptedResult>> = BTreeMap::new();
        for e in &self.encrypted {
            let group = match (&e.outcome, &e.why_left) {
                (_, Some(why)) => EncryptedGroup::LeftBecause(why.clone()),
                (EncryptedOutcome::Left, None) => EncryptedGroup::Left,
                (EncryptedOutcome::MovedTo(_), None) => EncryptedGroup::Moved,
                (EncryptedOutcome::Deleted, None) => EncryptedGroup::Deleted,
            };
            groups.entry(group).or_default().push(e);
        }
        groups.into_iter().collect()
    }

    /// The incident's folder of encrypted copies that `e` was moved into.
    fn aside_folder(&self, e: &EncryptedResult) -> Option<PathBuf> {
        let EncryptedOutcome::MovedTo(to) = &e.outcome else {
            return None;
        };
        let name = crate::model::encrypted_folder(self.incident.as_deref()?);
        to.ancestors()
            .find(|a| a.file_name().is_some_and(|n| n == name.as_str()))
            .map(Path::to_owned)
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
            .any(|f| matches!(f.reason, Some(LossReason::DestinationFull { .. })));
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

    /// Who deleted the files, each person with how many, most first (people who
    /// differ only by process are one); empty where the event source never said.
    pub fn deleted_by(&self) -> Vec<(&crate::model::Person, u64)> {
        let mut people: Vec<(&crate::model::Person, u64)> = Vec::new();
        for person in self.files.iter().filter_map(|f| f.deleted_by.as_ref()) {
            match people.iter_mut().find(|(p, _)| p.same_as(person)) {
                Some((_, n)) => *n += 1,
                None => people.push((person, 1)),
            }
        }
        people.sort_by_key(|(_, n)| std::cmp::Reverse(*n));
        people
    }

    /// "Deleted by anna from FRONTDESK (192.168.1.23) over the file share.", or with
    /// several people, each with a count; None when nobody is known.
    pub fn deleted_by_line(&self) -> Option<String> {
        match self.deleted_by().as_slice() {
            [] => None,
            [(person, _)] => Some(format!("Deleted by {person}.")),
            people => Some(format!(
                "Deleted by {}.",
                people
                    .iter()
                    .map(|(p, n)| format!("{p} ({})", files(*n)))
                    .collect::<Vec<_>>()
                    .join("; ")
            )),
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
        if let Some(who) = self.deleted_by_line() {
            out.push_str(&wrap_line(&who));
            out.push('\n');
        }
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
        for (group, copies) in self.encrypted_groups() {
            let heading = match &group {
                EncryptedGroup::Left => "Encrypted copies, left where they are".to_owned(),
                EncryptedGroup::LeftBecause(why) => {
                    format!("Encrypted copies, left where they are: {why}")
                }
                EncryptedGroup::Moved => "Encrypted copies, moved aside".to_owned(),
                EncryptedGroup::Deleted => "Encrypted copies, deleted".to_owned(),
            };
            out.push('\n');
            out.push_str(&wrap_line(&format!(
                "{heading} ({}):",
                count(copies.len() as u64)
            )));
            out.push('\n');
            for e in copies {
                match &e.outcome {
                    EncryptedOutcome::MovedTo(to) if e.why_left.is_none() => out.push_str(
                        &format!("  {} -> {}\n", display_path(&e.path), display_path(to)),
                    ),
                    _ => out.push_str(&format!("  {}\n", display_path(&e.path))),
                }
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
            "deleted_by": self.deleted_by().iter().map(|(p, n)| {
                let mut v = p.json();
                v["files"] = serde_json::json!(n);
                v
            }).collect::<Vec<_>>(),
            "partial": c.partial,
            "recovered_by_kind": by_kind(Outcome::Recovered),
            "lost_by_kind": by_kind(Outcome::Lost),
            "complete": self.complete(),
            "command": self.command,
            "as_of": self.as_before.map(crate::clock::rfc3339),
            "encrypted_left": self.encrypted.iter()
                .filter(|e| e.outcome == EncryptedOutcome::Left).count(),
            "encrypted_moved": self.encrypted.iter()
                .filter(|e| matches!(e.outcome, EncryptedOutcome::MovedTo(_))).count(),
            "encrypted_deleted": self.encrypted.iter()
                .filter(|e| e.outcome == EncryptedOutcome::Deleted).count(),
            "encrypted": self.encrypted.iter().map(|e| {
                let (path, path_bytes) = json_path(&e.path);
                let (outcome, moved_to) = match &e.outcome {
                    EncryptedOutcome::Left => ("left", None),
                    EncryptedOutcome::MovedTo(to) => ("moved", Some(json_path(to))),
                    EncryptedOutcome::Deleted => ("deleted", None),
                };
                let mut v = serde_json::json!({
                    "path": path,
                    "outcome": outcome,
                    "moved_to": moved_to.as_ref().map(|(text, _)| text),
                    "reason": e.why_left,
                });
                if let Some(hex) = path_bytes {
                    v["path_bytes"] = serde_json::json!(hex);
                }
                if let Some((_, Some(hex))) = moved_to {
                    v["moved_to_bytes"] = serde_json::json!(hex);
                }
                v
            }).collect::<Vec<_>>(),
            "files": self.files.iter().map(|f| {
                let (path, path_bytes) = json_path(&f.path);
                let restored_to = f.restored_to.as_deref().map(json_path);
                let mut v = serde_json::json!({
                    "path": path,
                    "outcome": f.outcome,
                    "reason": f.reason.as_ref().map(ToString::to_string),
                    "reason_code": f.reason.as_ref().map(LossReason::code),
                    "restored_to": restored_to.as_ref().map(|(text, _)| text),
                    "size": f.size,
                    "deleted_at": f.deleted_at.map(crate::clock::rfc3339),
                    "deleted_by": f.deleted_by.as_ref().map(crate::model::Person::json),
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
