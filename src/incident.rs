//! Deletion incidents: deletions close together in time under one protected
//! folder, grouped so a person can say "bring back what was deleted last night".

use std::path::Path;

use crate::index::{Index, IndexError};
use crate::model::Alert;
use crate::words::{spoken_in_a_sentence, wrap_letter};

/// The warning for a mass deletion, with the command that undoes it. `status`
/// words it again from the incident as it is now, which may have grown since, or
/// been brought back in part.
pub fn mass_deletion_message(incident: &crate::model::Incident, vault: &Path) -> String {
    if incident.kind.is_overwrite() {
        return mass_overwrite_message(incident, vault);
    }
    let (back, them) = match incident.restored {
        0 => (String::new(), "them"),
        n => (
            format!("{} already brought back. ", crate::words::count(n)),
            "the rest",
        ),
    };
    let who = match &incident.person {
        Some(person) => format!("Deleted by {person}. "),
        None => String::new(),
    };
    let cut = cut_off_said(incident)
        .map(|c| format!("{c} "))
        .unwrap_or_default();
    format!(
        "Mass deletion: {} ({}) deleted from {} since {} (incident {}). \
         {who}{cut}{back}To bring {them} back: {}",
        crate::words::files(incident.files),
        crate::words::bytes(incident.bytes),
        crate::words::display_path(&incident.folder),
        crate::clock::local(incident.first_at),
        incident.code,
        undo_command(incident, vault),
    )
}

/// "deleted by anna from FRONTDESK (192.168.1.23) over the file share": who made an
/// incident, where the event source said; None where it did not (inotify names
/// nobody, and a guess would send the owner after the wrong person).
pub fn who_did_it(incident: &crate::model::Incident) -> Option<String> {
    let verb = if incident.kind.is_overwrite() {
        "changed"
    } else {
        "deleted"
    };
    incident
        .person
        .as_ref()
        .map(|person| format!("{verb} by {person}"))
}

/// The warning for files rewritten the way ransomware does: what came back is
/// the version from before, and what is there now is left alone.
fn mass_overwrite_message(incident: &crate::model::Incident, vault: &Path) -> String {
    let who = match &incident.person {
        Some(person) => format!("Changed by {person}. "),
        None => String::new(),
    };
    format!(
        "Files changed beyond use: {} in {} since {} look encrypted (incident {}): \
         their content became random or lost its format{}. {who}{}Find the computer doing it \
         and disconnect it from the network. To bring back each file as it was before: {}",
        crate::words::files(incident.files),
        crate::words::display_path(&incident.folder),
        crate::clock::local(incident.first_at),
        incident.code,
        if incident.kind == crate::model::IncidentKind::Mixed {
            ", and copies of them appeared under a new extension"
        } else {
            ""
        },
        cut_off_said(incident)
            .map(|c| format!("{c} "))
            .unwrap_or_default(),
        undo_command(incident, vault),
    )
}

/// What the circuit breaker did about the incident's PC, in sentences, where it
/// was on and the incident was made over the file share: "undelete cut off
/// FRONTDESK (192.168.1.23) from the file share at 02:14. It can connect again…"
pub fn cut_off_said(incident: &crate::model::Incident) -> Option<String> {
    let cut_off = incident.cut_off.as_ref()?;
    Some(match cut_off.outcome {
        crate::model::CutOutcome::Cut => format!(
            "{cut_off} Its connections were ended, but it can connect again (Windows \
             does so by itself): unplug it from the network."
        ),
        _ => cut_off.to_string(),
    })
}

/// The cut-off alert: which PC, why, that it can come back, and how the owner
/// says it may be cut off again.
pub fn cut_off_message(
    cut_off: &crate::model::CutOff,
    incident: &crate::model::Incident,
) -> String {
    let what = match incident.kind.is_overwrite() {
        true => format!(
            "{} changed beyond use in {}",
            crate::words::files(incident.files),
            crate::words::display_path(&incident.folder)
        ),
        false => format!(
            "{} deleted from {}",
            crate::words::files(incident.files),
            crate::words::display_path(&incident.folder)
        ),
    };
    // Not opening with "undelete …": after "WARNING (…): " that reads as a command.
    format!(
        "Cut off from the file share: {} at {}, by the circuit breaker of undelete. \
         Its connections were ended because of incident {} ({what}). It can connect \
         again (Windows does so by itself): find that PC and unplug it from the \
         network. It will not be cut off again until this alert is acknowledged; if it \
         was a false alarm, or once the PC is safe: undelete alerts ack NUMBER (the \
         number is shown by: undelete alerts)",
        cut_off.pc(),
        crate::clock::to_local(cut_off.at).format("%H:%M"),
        incident.code,
    )
}

/// The warning that the vault grows unusually fast, and what it means for the
/// size cap while it is open.
pub fn vault_growth_message(growth: &crate::model::VaultGrowth, vault: &Path) -> String {
    use crate::words::bytes;
    let of = match growth.cap {
        Some(cap) => format!("its size cap ({})", bytes(cap)),
        None => "its size".to_owned(),
    };
    format!(
        "The vault grew unusually fast: {} within {} (more than {}% of {of}; it holds {} \
         now). Something may be writing or rewriting many files, as ransomware does. \
         While this alert is open the size cap purges nothing, so the vault may fill \
         up, and copying then stops with the vault-full alert. Once you know why, end \
         it with: {} alerts ack NUMBER (the number is shown by: undelete alerts)",
        bytes(growth.grown),
        crate::words::duration(growth.window_ns),
        growth.percent,
        bytes(growth.size),
        crate::words::CommandLine::undelete(vault),
    )
}

/// The e-mail that the vault grows unusually fast.
pub fn vault_growth_letter(
    growth: &crate::model::VaultGrowth,
    vault: &Path,
    host: &str,
) -> crate::email::Letter {
    use crate::words::bytes;
    let since = crate::clock::to_local(growth.since)
        .format("%A %-d %B %Y, %H:%M")
        .to_string();
    let body = format!(
        "Hello,\n\n{}\n\n\
         What:   the vault grew by {} (it holds {} now)\n\
         Where:  {}\n\
         When:   since {since}\n\n\
         {}\n\n{}\n\n    {}\n\n\
         -- \nundelete, the recycle bin of {host}\n",
        wrap_letter(&format!(
            "The copies undelete keeps on the file server {host} grew unusually fast. \
             Something may be writing or rewriting many files, as ransomware does."
        )),
        bytes(growth.grown),
        bytes(growth.size),
        crate::words::display_path(vault),
        wrap_letter(
            "While this warning is open, nothing is purged to keep the vault under its \
             size limit, so no older copy is lost; the vault may fill up, and copying \
             then stops until there is room again."
        ),
        wrap_letter("Once you know why it grew, end the warning on the server with:"),
        server_command(vault, "alerts ack NUMBER"),
    );
    crate::email::Letter {
        subject: format!("The vault is growing unusually fast on {host}"),
        body,
    }
}

/// What an alert about an incident tells: the `UNDELETE_EVENT` of the alert command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertEvent {
    /// The threshold was crossed: files are being deleted, perhaps still.
    Started,
    /// No more deletions joined it: the final counts.
    Ended,
    /// `undelete alerts test`.
    Test,
}

impl AlertEvent {
    pub fn name(self) -> &'static str {
        match self {
            Self::Started => "started",
            Self::Ended => "ended",
            Self::Test => "test",
        }
    }
}

/// The name of this server, as its owner knows it.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "the file server".to_owned())
}

/// The command a technician types on the server to bring the incident back: as root
/// (the vault is root's), with the vault named unless it is the service's own.
pub fn restore_command_for_email(incident: &crate::model::Incident, vault: &Path) -> String {
    server_command(vault, &format!("restore --incident {}", incident.code))
}

fn server_command(vault: &Path, args: &str) -> String {
    crate::words::CommandLine::as_root(vault)
        .arg(args)
        .to_string()
}

/// The e-mail about a mass deletion, for a reader who is not at the server and
/// may not know what a terminal is: what, where, when, how many, the code, and
/// the one command that undoes it (for whoever helps them).
pub fn mass_deletion_letter(
    event: AlertEvent,
    incident: &crate::model::Incident,
    vault: &Path,
    host: &str,
) -> crate::email::Letter {
    use crate::words::{bytes, count, display_path, files};
    let day = |ns: i64| {
        crate::clock::to_local(ns)
            .format("%A %-d %B %Y, %H:%M")
            .to_string()
    };
    let clock = |ns: i64| crate::clock::to_local(ns).format("%H:%M").to_string();
    let folder = display_path(&incident.folder);
    let encrypted = incident.kind.is_overwrite();
    let (subject, opening, what, when, next) = match event {
        AlertEvent::Ended if encrypted => (
            format!(
                "Encrypting has stopped on {host}: {} changed beyond use in {folder}",
                files(incident.files)
            ),
            format!(
                "The files being encrypted on the file server {host} are no longer \
                 changing."
            ),
            format!("{} changed beyond use", files(incident.files)),
            format!("{} to {}", day(incident.first_at), clock(incident.last_at)),
            "These are the final counts.".to_owned(),
        ),
        _ if encrypted => (
            format!("Files are being encrypted on {host}: {folder}"),
            format!(
                "Files on the file server {host} are being rewritten the way ransomware \
                 does: their content became random or lost its format."
            ),
            format!("{} changed beyond use so far", files(incident.files)),
            format!("since {}", day(incident.first_at)),
            "Find the computer doing it and disconnect it from the network now. A second \
             message follows when the files stop changing, with the final count."
                .to_owned(),
        ),
        AlertEvent::Ended => (
            format!(
                "Deleting has stopped on {host}: {} deleted from {folder}",
                files(incident.files)
            ),
            format!("The mass deletion on the file server {host} has stopped."),
            format!(
                "{} ({}) deleted",
                files(incident.files),
                bytes(incident.bytes)
            ),
            match (
                crate::clock::local(incident.first_at),
                crate::clock::local(incident.last_at),
            ) {
                (first, last) if first == last => day(incident.first_at),
                (first, last) if first[..10] == last[..10] => {
                    format!("{} to {}", day(incident.first_at), clock(incident.last_at))
                }
                _ => format!("{} to {}", day(incident.first_at), day(incident.last_at)),
            },
            "These are the final counts.".to_owned(),
        ),
        _ => (
            format!("Files are being deleted on {host}: {folder}"),
            format!("Many files are being deleted on the file server {host}."),
            format!(
                "{} ({}) deleted so far",
                files(incident.files),
                bytes(incident.bytes)
            ),
            format!("since {}", day(incident.first_at)),
            "The deleting may still be going on. A second message follows when it \
             stops, with the final count."
                .to_owned(),
        ),
    };
    let kept = if encrypted && incident.recoverable >= incident.files {
        "The version of every one of them from before was kept, so all of them can be \
         brought back as they were; the encrypted files are left where they are."
            .to_owned()
    } else if encrypted {
        format!(
            "{} of them can be brought back as they were before; {} had no copy kept \
             (the report of a restore says why, file by file).",
            count(incident.recoverable),
            count(incident.files - incident.recoverable)
        )
    } else if incident.recoverable >= incident.files {
        "Every one of them was copied before it was deleted, so all of them can be \
         brought back."
            .to_owned()
    } else {
        format!(
            "{} of them were copied before they were deleted and can be brought back; {} \
             could not be copied (the report of a restore says why, file by file).",
            count(incident.recoverable),
            count(incident.files - incident.recoverable)
        )
    };
    let back = match incident.restored {
        0 => String::new(),
        n if incident.missing() == 0 => format!(
            "\n\n{}",
            wrap_letter(&format!(
                "{} of them have already been brought back: every file that could \
                 come back is back.",
                count(n)
            ))
        ),
        n => format!(
            "\n\n{}",
            wrap_letter(&format!(
                "{} of them have already been brought back.",
                count(n)
            ))
        ),
    };
    // Only where the event source said: no line rather than a guess.
    let who = match &incident.person {
        Some(person) => format!("Who:    {person}\n"),
        None => String::new(),
    };
    let cut = cut_off_said(incident)
        .map(|c| format!("{}\n\n", wrap_letter(&c)))
        .unwrap_or_default();
    let mut body = format!(
        "Hello,\n\n{}\n\n\
         What:   {what}\n\
         Where:  {folder}\n\
         When:   {when}\n\
         {who}\
         Code:   {} (the incident code: give it to whoever helps you)\n\n\
         {cut}{}\n\n{}{back}\n\n",
        // Wrapped like the rest: the opening about encryption is longer than a line.
        wrap_letter(&opening),
        incident.code,
        wrap_letter(&next),
        wrap_letter(&kept),
    );
    // Each command whole on a line of its own, to be read out and typed as it is.
    for (words, command) in [
        (
            "If this was not on purpose, the files can be brought back to where they \
             were, without overwriting anything. On the server, this one command does it:",
            restore_command_for_email(incident, vault),
        ),
        (
            "Or step by step, with questions:",
            server_command(vault, "emergency"),
        ),
        (
            "If it was on purpose, nothing needs to be done. To say so, and end the \
             warning:",
            server_command(vault, &format!("alerts ack {}", incident.code)),
        ),
    ] {
        body.push_str(&format!("{}\n\n    {command}\n\n", wrap_letter(words)));
    }
    body.push_str(&format!("-- \nundelete, the recycle bin of {host}\n"));
    crate::email::Letter { subject, body }
}

/// The message `undelete alerts test` sends.
pub fn test_letter(host: &str, folders: &[std::path::PathBuf]) -> crate::email::Letter {
    let folders: Vec<String> = folders
        .iter()
        .map(|f| crate::words::whole_path(f))
        .collect();
    let watched = match folders.len() {
        0 => String::new(),
        _ => format!(" ({})", folders.join(", ")),
    };
    let body = format!(
        "Hello,\n\n{}\n\n{}\n\nNothing needs to be done about this message.\n\n\
         -- \nundelete, the recycle bin of {host}\n",
        wrap_letter(&format!(
            "This is a test of the mass-deletion e-mail of undelete, the recycle bin \
             of the file server {host}. It was sent by the command: undelete alerts test"
        )),
        wrap_letter(&format!(
            "When many files are deleted from the protected folders{watched}, a \
             message like this one says what was deleted, where, when and how many, \
             with the one command that brings them back; a second one follows when \
             the deleting stops."
        )),
    );
    crate::email::Letter {
        subject: format!("Test message from undelete on {host}"),
        body,
    }
}

/// The command that brings back everything deleted in the incident.
pub fn undo_command(incident: &crate::model::Incident, vault: &Path) -> String {
    crate::words::CommandLine::undelete(vault)
        .arg("restore --incident")
        .arg(incident.code.as_str())
        .to_string()
}

/// Open alerts, each mass deletion's told at its size now: it may have gone on
/// after the alert was raised (`status` and `doctor` show these).
pub fn current_alerts(index: &Index, vault: &Path) -> Result<Vec<Alert>, IndexError> {
    let mut alerts = index.open_alerts()?;
    for alert in &mut alerts {
        if let Some(code) = alert.kind.incident_code()
            && let Some(incident) = index.incident_by_code(code)?
        {
            alert.message = mass_deletion_message(&incident, vault);
        }
    }
    Ok(alerts)
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Incident, IncidentKind, Person};

    fn incident(person: Option<Person>) -> Incident {
        Incident {
            id: 1,
            code: "K7Q-4MDX".into(),
            kind: IncidentKind::Deleted,
            folder: "/srv/share/photos".into(),
            first_at: 0,
            last_at: 0,
            files: 2149,
            bytes: 4_000_000_000,
            recoverable: 2149,
            alerted_at: None,
            ended_at: None,
            restored: 0,
            person,
            cut_off: None,
        }
    }

    fn anna() -> Person {
        Person::anna_over_the_share()
    }

    #[test]
    fn the_letter_and_the_warning_say_what_the_breaker_did() {
        use crate::model::{CutOff, CutOutcome};
        let vault = Path::new("/var/lib/undelete");
        let mut cut = incident(Some(anna()));
        let at = crate::clock::now();
        cut.cut_off = Some(CutOff {
            at,
            address: "192.168.1.23".into(),
            user: Some("anna".into()),
            machine: Some("FRONTDESK".into()),
            outcome: CutOutcome::Cut,
        });
        let clock = crate::clock::to_local(at).format("%H:%M").to_string();
        let said =
            format!("undelete cut off FRONTDESK (192.168.1.23) from the file share at {clock}.");
        assert!(mass_deletion_message(&cut, vault).contains(&said));
        let letter = mass_deletion_letter(AlertEvent::Started, &cut, vault, "server");
        assert!(
            letter.body.replace('\n', " ").contains(&said),
            "{}",
            letter.body
        );
        let alert = cut_off_message(cut.cut_off.as_ref().unwrap(), &cut);
        assert!(
            alert.starts_with(&format!(
                "Cut off from the file share: FRONTDESK (192.168.1.23) at {clock},"
            )),
            "{alert}"
        );
        assert!(
            alert.contains("until this alert is acknowledged"),
            "{alert}"
        );
        // Without the breaker, or nobody to act on: not a word of it.
        assert!(!mass_deletion_message(&incident(Some(anna())), vault).contains("cut off"));
    }

    #[test]
    fn the_letter_and_the_warning_say_who_only_when_it_is_known() {
        let vault = Path::new("/var/lib/undelete");
        let said = "anna from FRONTDESK (192.168.1.23) over the file share";
        let known = incident(Some(anna()));
        let letter = mass_deletion_letter(AlertEvent::Started, &known, vault, "server");
        assert!(
            letter.body.contains("When:   ")
                && letter
                    .body
                    .contains(&format!("\nWho:    {said}\nCode:   K7Q-4MDX")),
            "{}",
            letter.body
        );
        assert!(mass_deletion_message(&known, vault).contains(&format!("Deleted by {said}.")));
        assert_eq!(who_did_it(&known), Some(format!("deleted by {said}")));

        let unknown = incident(None);
        let letter = mass_deletion_letter(AlertEvent::Started, &unknown, vault, "server");
        assert!(!letter.body.contains("Who:"), "{}", letter.body);
        assert!(!mass_deletion_message(&unknown, vault).contains("Deleted by"));
        assert_eq!(who_did_it(&unknown), None);
    }
}
