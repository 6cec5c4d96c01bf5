//! Telling people that files are being deleted: the alert command and the
//! e-mail, handed to a thread of their own once the incident is committed, so a
//! slow command or a dead mail server never stalls capture. Each is tried once,
//! with a bounded wait; how the e-mail went is handed back to the daemon's loop,
//! which keeps it for `doctor`.
//!
//! It never touches the index.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::mpsc::{self, Sender};

use crate::config::EmailSettings;
use crate::email::Letter;
use crate::incident::AlertEvent;
use crate::model::Delivery;
use crate::model::Incident;
use crate::model::VaultGrowth;

use super::Msg;

/// What a notice is about.
pub enum About {
    Incident(Box<Incident>),
    /// The vault grew unusually fast.
    VaultGrowth(VaultGrowth),
}

/// One thing to tell about an incident, with the settings in use when it happened.
pub struct Notice {
    pub event: AlertEvent,
    pub about: About,
    pub vault: PathBuf,
    pub command: Option<String>,
    pub email: Option<EmailSettings>,
}

/// The thread that tells, and the way to it.
pub struct Notifier {
    tx: Sender<Notice>,
}

impl Notifier {
    /// Starts the thread; how each e-mail went comes back to `daemon`.
    pub fn start(daemon: Sender<Msg>) -> Self {
        let (tx, rx) = mpsc::channel::<Notice>();
        std::thread::spawn(move || {
            let host = crate::incident::host_name();
            for notice in rx {
                let incident = match &notice.about {
                    About::Incident(incident) => Some(incident),
                    About::VaultGrowth(_) => None,
                };
                if let Some(command) = &notice.command {
                    let mut command = match &notice.about {
                        About::Incident(incident) => {
                            alert_command(command, notice.event, Some(incident), &notice.vault)
                        }
                        About::VaultGrowth(growth) => {
                            growth_command(command, growth, &notice.vault)
                        }
                    };
                    run(&mut command);
                }
                if let Some(settings) = &notice.email {
                    let letter = match (&notice.about, incident) {
                        (_, Some(incident)) => crate::incident::mass_deletion_letter(
                            notice.event,
                            incident,
                            &notice.vault,
                            &host,
                        ),
                        (About::VaultGrowth(growth), _) => {
                            crate::incident::vault_growth_letter(growth, &notice.vault, &host)
                        }
                        (About::Incident(_), None) => unreachable!("an incident is its own"),
                    };
                    let _ = daemon.send(Msg::Delivered(send(settings, &letter)));
                }
            }
        });
        Self { tx }
    }

    pub fn tell(&self, notice: Notice) {
        let _ = self.tx.send(notice);
    }
}

/// The alert command with what it is told in its environment: `UNDELETE_EVENT`
/// (`started`, `ended` or `test`) and, for an incident, its numbers as they are now.
pub fn alert_command(
    command: &str,
    event: AlertEvent,
    incident: Option<&Incident>,
    vault: &Path,
) -> Command {
    let mut alert = Command::new("/bin/sh");
    alert
        .arg("-c")
        .arg(command)
        .env("UNDELETE_EVENT", event.name())
        .stdin(std::process::Stdio::null());
    match incident {
        Some(incident) => {
            let message = match event {
                AlertEvent::Ended => format!(
                    "Ended. {}",
                    crate::incident::mass_deletion_message(incident, vault)
                ),
                _ => crate::incident::mass_deletion_message(incident, vault),
            };
            alert
                .env("UNDELETE_INCIDENT", &incident.code)
                .env("UNDELETE_KIND", incident.kind.code())
                .env("UNDELETE_FOLDER", &incident.folder)
                .env("UNDELETE_FILES", incident.files.to_string())
                .env("UNDELETE_BYTES", incident.bytes.to_string())
                .env("UNDELETE_RECOVERABLE", incident.recoverable.to_string())
                .env("UNDELETE_RESTORED", incident.restored.to_string())
                .env(
                    "UNDELETE_RESTORE_COMMAND",
                    crate::incident::undo_command(incident, vault),
                )
                .env("UNDELETE_MESSAGE", message);
            // Empty where the event source did not say who (inotify).
            let person = incident.person.as_ref();
            alert
                .env(
                    "UNDELETE_DELETED_BY",
                    person.map(|p| p.to_string()).unwrap_or_default(),
                )
                .env(
                    "UNDELETE_DELETED_BY_USER",
                    person.and_then(|p| p.user.clone()).unwrap_or_default(),
                )
                .env(
                    "UNDELETE_DELETED_FROM",
                    person.and_then(|p| p.pc()).unwrap_or_default(),
                );
            // Empty where the breaker is off or had nobody to act on.
            let cut_off = incident.cut_off.as_ref();
            alert
                .env(
                    "UNDELETE_CUT_OFF",
                    cut_off.map(|c| c.outcome.code()).unwrap_or_default(),
                )
                .env(
                    "UNDELETE_CUT_OFF_ADDRESS",
                    cut_off.map(|c| c.address.as_str()).unwrap_or_default(),
                )
                .env(
                    "UNDELETE_CUT_OFF_MESSAGE",
                    crate::incident::cut_off_said(incident).unwrap_or_default(),
                );
        }
        None => {
            alert.env(
                "UNDELETE_MESSAGE",
                "A test of the undelete alert command (undelete alerts test).",
            );
        }
    }
    alert
}

/// The alert command told that the vault grows unusually fast: `UNDELETE_KIND` is
/// `vault_growth`, `UNDELETE_BYTES` how much it grew within the window.
fn growth_command(command: &str, growth: &VaultGrowth, vault: &Path) -> Command {
    let mut alert = Command::new("/bin/sh");
    alert
        .arg("-c")
        .arg(command)
        .env("UNDELETE_EVENT", AlertEvent::Started.name())
        .env("UNDELETE_KIND", "vault_growth")
        .env("UNDELETE_BYTES", growth.grown.to_string())
        .env(
            "UNDELETE_MESSAGE",
            crate::incident::vault_growth_message(growth, vault),
        )
        .stdin(std::process::Stdio::null());
    alert
}

/// Starts the command; it is reaped on a thread of its own, so a slow one stalls
/// nothing. Returns why it could not start.
pub fn run(command: &mut Command) -> Option<String> {
    match command.spawn() {
        Ok(mut child) => {
            std::thread::spawn(move || {
                if let Ok(status) = child.wait()
                    && !status.success()
                {
                    tracing::warn!("the alert command failed ({status})");
                }
            });
            None
        }
        Err(e) => {
            tracing::warn!("cannot run the alert command: {e}");
            Some(e.to_string())
        }
    }
}

/// Sends one e-mail and says how it went (logged either way).
pub fn send(settings: &EmailSettings, letter: &Letter) -> Delivery {
    let result = crate::email::send(settings, letter);
    let to = settings.recipients();
    match &result {
        Ok(()) => tracing::info!("alert e-mail sent to {to}: {}", letter.subject),
        Err(e) => tracing::error!("the alert e-mail to {to} was not sent: {e}"),
    }
    Delivery {
        at: crate::clock::now(),
        to,
        subject: letter.subject.clone(),
        error: result.err().map(|e| e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Person;

    #[test]
    fn the_alert_command_is_told_who_deleted_and_from_which_pc() {
        let mut incident = Incident::photos_deleted_by(Some(Person::anna_over_the_share()));
        let told = |incident: &Incident| {
            let command =
                alert_command("true", AlertEvent::Started, Some(incident), Path::new("/v"));
            let env: std::collections::HashMap<String, String> = command
                .get_envs()
                .filter_map(|(k, v)| Some((k.to_str()?.to_owned(), v?.to_str()?.to_owned())))
                .collect();
            [
                "UNDELETE_DELETED_BY",
                "UNDELETE_DELETED_BY_USER",
                "UNDELETE_DELETED_FROM",
            ]
            .map(|k| env.get(k).cloned().unwrap_or_else(|| panic!("{k} not set")))
        };
        assert_eq!(
            told(&incident),
            [
                "anna from FRONTDESK (192.168.1.23) over the file share",
                "anna",
                "FRONTDESK (192.168.1.23)"
            ]
        );
        // Where the source named nobody (inotify): empty, never a guess.
        incident.person = None;
        assert_eq!(told(&incident), ["", "", ""]);
    }
}
