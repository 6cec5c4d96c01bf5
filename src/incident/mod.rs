//! Deletion incidents: deletions close together in time under one protected
//! folder, grouped so a person can say "bring back what was deleted last night".

use std::path::Path;

use crate::index::{Index, IndexError};
use crate::model::{Alert, Incident};
use crate::words::{bytes, count, display_path, files, whole_path};

mod history;
mod letter;

pub use history::{history_line, recent_history};
pub use letter::{host_name, mass_deletion_letter, test_letter, vault_growth_letter};

/// The warning for a mass deletion, with the command that undoes it. `status`
/// words it again from the incident as it is now, which may have grown since, or
/// been brought back in part.
pub fn mass_deletion_message(incident: &Incident, vault: &Path) -> String {
    if incident.kind.is_overwrite() {
        return mass_overwrite_message(incident, vault);
    }
    let (back, them) = match incident.restored {
        0 => (String::new(), "them"),
        n => (format!("{} already brought back. ", count(n)), "the rest"),
    };
    format!(
        "Mass deletion: {} ({}) deleted from {} since {} (incident {}). \
         {}{}{back}To bring {them} back: {}",
        files(incident.files),
        bytes(incident.bytes),
        display_path(&incident.folder),
        crate::clock::local(incident.first_at),
        incident.code,
        who_sentence(incident),
        cut_off_sentences(incident),
        undo_command(incident, vault),
    )
}

/// "deleted by anna from FRONTDESK (192.168.1.23) over the file share": who made an
/// incident, where the event source said; None where it did not (inotify names
/// nobody, and a guess would send the owner after the wrong person).
pub fn who_did_it(incident: &Incident) -> Option<String> {
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

/// `who_did_it` as a sentence of a warning, followed by a space ("Deleted by anna
/// …. "); empty where nobody is known.
fn who_sentence(incident: &Incident) -> String {
    let Some(who) = who_did_it(incident) else {
        return String::new();
    };
    let mut letters = who.chars();
    let first = letters.next().map(|c| c.to_ascii_uppercase());
    format!(
        "{}{}. ",
        first.into_iter().collect::<String>(),
        letters.as_str()
    )
}

/// "2,149 files deleted from /srv/share/photos", or "1,870 files changed beyond use
/// in /srv/share": what happened, and where (`folder`, the incident's as shown).
fn what_happened(incident: &Incident, folder: &str) -> String {
    let how = match incident.kind.is_overwrite() {
        true => "changed beyond use in",
        false => "deleted from",
    };
    format!("{} {how} {folder}", files(incident.files))
}

/// The warning for files rewritten the way ransomware does: what came back is
/// the version from before, and what is there now is left alone.
fn mass_overwrite_message(incident: &Incident, vault: &Path) -> String {
    format!(
        "Files changed beyond use: {} in {} since {} look encrypted (incident {}): \
         their content became random or lost its format{}. {}{}Find the computer doing it \
         and disconnect it from the network. To bring back each file as it was before: {}",
        files(incident.files),
        display_path(&incident.folder),
        crate::clock::local(incident.first_at),
        incident.code,
        if incident.kind == crate::model::IncidentKind::Mixed {
            ", and copies of them appeared under a new extension"
        } else {
            ""
        },
        who_sentence(incident),
        cut_off_sentences(incident),
        undo_command(incident, vault),
    )
}

/// What the circuit breaker did about the incident's PC, in sentences, where it
/// was on and the incident was made over the file share: "undelete cut off
/// FRONTDESK (192.168.1.23) from the file share at 02:14. It can connect again…"
pub fn cut_off_said(incident: &Incident) -> Option<String> {
    let cut_off = incident.cut_off.as_ref()?;
    Some(match cut_off.outcome {
        crate::model::CutOutcome::Cut => format!(
            "{cut_off} Its connections were ended, but it can connect again (Windows \
             does so by itself): unplug it from the network."
        ),
        _ => cut_off.to_string(),
    })
}

/// `cut_off_said` followed by a space, for the middle of a warning; empty where
/// the breaker did nothing.
fn cut_off_sentences(incident: &Incident) -> String {
    cut_off_said(incident)
        .map(|c| format!("{c} "))
        .unwrap_or_default()
}

/// The cut-off alert: which PC, why, that it can come back, and how the owner
/// says it may be cut off again. Stored, so the folder is marked to be kept whole
/// (`whole_path`) wherever the alert is wrapped.
pub fn cut_off_message(cut_off: &crate::model::CutOff, incident: &Incident) -> String {
    let what = what_happened(incident, &whole_path(&incident.folder));
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

/// The command that brings back everything deleted in the incident.
pub fn undo_command(incident: &Incident, vault: &Path) -> String {
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
            alert.paths = vec![display_path(&incident.folder)];
        }
    }
    Ok(alerts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Person;

    fn incident(person: Option<Person>) -> Incident {
        Incident::photos_deleted_by(person)
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
