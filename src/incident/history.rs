//! What became of a mass-deletion alert that is no longer a warning, in a
//! sentence: resolved by a restore (with its report), or acknowledged.

use crate::index::{Index, IndexError};
use crate::words::spoken_in_a_sentence;

/// How long a closed alert is shown by `status` as history.
pub const HISTORY_NS: i64 = 7 * 24 * 3600 * 1_000_000_000;

/// What became of a mass-deletion alert, in a sentence, with the report of the
/// restore that ended it.
#[derive(Debug, Clone)]
pub struct History {
    pub sentence: String,
    /// The incident's folder as the sentence shows it, to keep it whole when wrapped.
    pub folder: String,
    pub report: Option<std::path::PathBuf>,
}

impl History {
    /// For a terminal: the sentence wrapped after `prefix`, and the report on a line
    /// of its own, so its path is never split and the layout never depends on it.
    pub fn text(&self, prefix: &str) -> String {
        let sentence = crate::words::whole_in(&self.sentence, std::slice::from_ref(&self.folder));
        let mut out = crate::words::wrap(&format!("{prefix}{sentence}"));
        if let Some(report) = &self.report {
            out.push_str(&format!(
                "\n  Report: {}",
                crate::words::display_path(report)
            ));
        }
        out
    }

    /// In one line, for JSON.
    pub fn one_line(&self) -> String {
        match &self.report {
            Some(report) => format!(
                "{} Report: {}",
                self.sentence,
                crate::words::json_path(report).0
            ),
            None => self.sentence.clone(),
        }
    }
}

/// The history of a mass-deletion alert that is no longer a warning: "Resolved
/// today 09:41: 2,132 of 2,149 files brought back (incident K7Q-4MD)." with its
/// report. None for alerts of other kinds, or still open.
pub fn history_line(
    entry: &crate::model::AlertEntry,
    incident: Option<&crate::model::Incident>,
    now: i64,
) -> Option<History> {
    use crate::model::AlertState;
    let incident = incident?;
    let when = spoken_in_a_sentence(entry.alert.cleared_at?, now);
    let folder = crate::words::display_path(&incident.folder);
    match &entry.state {
        AlertState::Resolved { report } => {
            let of = if incident.files == 1 {
                "1 file".to_owned()
            } else {
                format!("{} files", crate::words::count(incident.files))
            };
            let what = match incident.kind.is_overwrite() {
                true => " changed beyond use brought back as they were before",
                false => " brought back",
            };
            Some(History {
                folder: folder.clone(),
                sentence: format!(
                    "Resolved {when}: {} of {of}{what} (incident {}).",
                    crate::words::count(incident.restored),
                    incident.code,
                ),
                report: report.clone(),
            })
        }
        AlertState::Acknowledged { note } => {
            let note = note
                .as_deref()
                .map(|n| format!(" (note: {n})"))
                .unwrap_or_default();
            let sentence = if incident.kind.is_overwrite() {
                format!(
                    "Acknowledged {when}: the {} changed in {folder} (incident {}) {} \
                     no restore{note}.",
                    crate::words::files(incident.files),
                    incident.code,
                    if incident.files == 1 { "needs" } else { "need" },
                )
            } else {
                format!(
                    "Acknowledged {when}: the deletion of {} from {folder} (incident {}) \
                     needs no restore{note}.",
                    crate::words::files(incident.files),
                    incident.code,
                )
            };
            Some(History {
                folder,
                sentence,
                report: None,
            })
        }
        _ => None,
    }
}

/// Mass-deletion alerts resolved or acknowledged in the last `HISTORY_NS`, newest
/// first, each with its incident and its line of history.
pub fn recent_history(
    index: &Index,
    now: i64,
) -> Result<Vec<(crate::model::AlertEntry, History)>, IndexError> {
    let mut out = Vec::new();
    for entry in index.alert_entries(now - HISTORY_NS)? {
        let Some(code) = entry.alert.kind.incident_code() else {
            continue;
        };
        if entry
            .alert
            .cleared_at
            .is_none_or(|at| now - at > HISTORY_NS)
        {
            continue;
        }
        let incident = index.incident_by_code(code)?;
        if let Some(line) = history_line(&entry, incident.as_ref(), now) {
            out.push((entry, line));
        }
    }
    Ok(out)
}
