//! How results are written for people and for programs.
//!
//! Paths are shown as `words` shows them: escaped visibly for people, exact to
//! the byte in JSON, never changed silently.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

mod category;
mod reason;
mod text;

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
    /// Who wrote it (the encryption), where the event source said.
    pub changed_by: Option<crate::model::Person>,
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
    /// What the circuit breaker did about the PC that made the incident.
    pub cut_off: Option<crate::model::CutOff>,
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

    /// Who wrote the encrypted copies, each person with how many, most first, as
    /// `deleted_by`; empty where the event source never said.
    pub fn changed_by(&self) -> Vec<(&crate::model::Person, u64)> {
        let mut people: Vec<(&crate::model::Person, u64)> = Vec::new();
        for person in self.encrypted.iter().filter_map(|e| e.changed_by.as_ref()) {
            match people.iter_mut().find(|(p, _)| p.same_as(person)) {
                Some((_, n)) => *n += 1,
                None => people.push((person, 1)),
            }
        }
        people.sort_by_key(|(_, n)| std::cmp::Reverse(*n));
        people
    }

    /// "Changed by anna from FRONTDESK (192.168.1.23) over the file share.": who
    /// encrypted the files an overwrite restore brought back; None when nobody is known.
    pub fn changed_by_line(&self) -> Option<String> {
        match self.changed_by().as_slice() {
            [] => None,
            [(person, _)] => Some(format!("Changed by {person}.")),
            people => Some(format!(
                "Changed by {}.",
                people
                    .iter()
                    .map(|(p, n)| format!("{p} ({})", crate::words::files(*n)))
                    .collect::<Vec<_>>()
                    .join("; ")
            )),
        }
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
            "cut_off": self.cut_off.as_ref().map(crate::model::CutOff::json),
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
                    "changed_by": e.changed_by.as_ref().map(crate::model::Person::json),
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
