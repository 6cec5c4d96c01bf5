//! `undelete alerts`: the alerts, open ones first, then what became of the
//! others; `alerts ack` says one needs no restore; `alerts test` sends a test
//! message the way a real alert goes.

use std::process::ExitCode;

use clap::{Args, Subcommand};
use serde_json::json;

use crate::amend::Amendment;
use crate::clock;
use crate::config::Config;
use crate::incident::{self, AlertEvent};
use crate::index::Index;
use crate::index::MetaKey;
use crate::model::AlertKind;
use crate::model::{AlertEntry, AlertState, Incident};
use crate::words::{display_path, json_path, whole_in, wrap};

/// How far back closed alerts are listed.
const LISTED_NS: i64 = 30 * 24 * 3600 * 1_000_000_000;

#[derive(Debug, Args)]
pub struct AlertsArgs {
    #[command(subcommand)]
    action: Option<Action>,
    /// Print the alerts as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Subcommand)]
enum Action {
    /// Say an alert needs no restore (the deletion was wanted): it stops being a warning.
    Ack {
        /// The alert's number (see `undelete alerts`) or its incident's code.
        #[arg(
            value_name = "ID",
            required_unless_present = "all",
            conflicts_with = "all"
        )]
        id: Option<String>,
        /// Every open mass-deletion alert.
        #[arg(long)]
        all: bool,
        /// Why, in a few words; shown with the alert from then on.
        #[arg(long, value_name = "TEXT")]
        note: Option<String>,
    },
    /// Send a test e-mail and run the alert command, as a real alert would.
    Test,
}

pub fn run(config: &Config, args: AlertsArgs) -> anyhow::Result<ExitCode> {
    match args.action {
        None => list(config, args.json),
        Some(Action::Ack { id, all, note }) => ack(config, id.as_deref(), all, note),
        Some(Action::Test) => test(config),
    }
}

fn list(config: &Config, as_json: bool) -> anyhow::Result<ExitCode> {
    let (vault, index) = super::open_vault(config)?;
    let now = clock::now();
    let entries = index.alert_entries(now - LISTED_NS)?;
    let with_incidents: Vec<(AlertEntry, Option<Incident>)> = entries
        .into_iter()
        .map(|e| {
            let incident = incident_of(&index, &e)?;
            Ok((e, incident))
        })
        .collect::<anyhow::Result<_>>()?;
    if as_json {
        let rows: Vec<_> = with_incidents
            .iter()
            .map(|(e, i)| entry_json(e, i.as_ref(), vault.root()))
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(ExitCode::SUCCESS);
    }
    if with_incidents.is_empty() {
        println!("No alerts in the last 30 days.");
        return Ok(ExitCode::SUCCESS);
    }
    for (entry, incident) in &with_incidents {
        let a = &entry.alert;
        // The incident's folder is kept whole on a line, however the message wraps.
        let message = match incident {
            Some(i) => whole_in(
                &incident::mass_deletion_message(i, vault.root()),
                &[display_path(&i.folder)],
            ),
            None => whole_in(&a.message, &a.paths),
        };
        match &entry.state {
            AlertState::Open => {
                println!(
                    "Alert {}, open since {}:",
                    a.id,
                    clock::spoken(a.raised_at, now)
                );
                println!("{}", wrap(&message));
                if incident.is_some() {
                    println!("If the deletion was wanted: undelete alerts ack {}", a.id);
                } else if a.kind == AlertKind::VaultGrowth {
                    println!("Once you know why it grew: undelete alerts ack {}", a.id);
                } else if let AlertKind::CutOff(address) = &a.kind {
                    println!(
                        "{}",
                        wrap(&format!(
                            "To let undelete cut off {address} again (a false alarm, or the \
                             PC is safe): undelete alerts ack {}",
                            a.id
                        ))
                    );
                }
            }
            state => {
                let prefix = format!("Alert {}: ", a.id);
                match incident
                    .as_ref()
                    .and_then(|i| incident::history_line(entry, Some(i), now))
                {
                    Some(history) => println!("{}", history.text(&prefix)),
                    None => println!(
                        "{}",
                        wrap(&format!(
                            "{prefix}{}",
                            closed_words(entry, state, &message, now)
                        ))
                    ),
                }
            }
        }
        println!();
    }
    Ok(ExitCode::SUCCESS)
}

/// The incident of a mass-deletion alert, as it is now.
fn incident_of(index: &Index, entry: &AlertEntry) -> anyhow::Result<Option<Incident>> {
    Ok(match entry.alert.kind.incident_code() {
        Some(code) => index.incident_by_code(code)?,
        None => None,
    })
}

fn closed_words(entry: &AlertEntry, state: &AlertState, message: &str, now: i64) -> String {
    let when = entry
        .alert
        .cleared_at
        .map(|at| crate::words::spoken_in_a_sentence(at, now))
        .unwrap_or_default();
    match state {
        AlertState::Merged => format!("became part of a larger deletion {when}. {message}"),
        AlertState::Acknowledged { note } => format!(
            "acknowledged {when}{}. {message}",
            note.as_deref()
                .map(|n| format!(" (note: {n})"))
                .unwrap_or_default()
        ),
        _ => format!("cleared {when}: {message}"),
    }
}

fn entry_json(
    entry: &AlertEntry,
    incident: Option<&Incident>,
    vault: &std::path::Path,
) -> serde_json::Value {
    let a = &entry.alert;
    let (state, note, report) = match &entry.state {
        AlertState::Open => ("open", None, None),
        AlertState::Cleared => ("cleared", None, None),
        AlertState::Resolved { report } => {
            ("resolved", None, report.as_deref().map(|r| json_path(r).0))
        }
        AlertState::Acknowledged { note } => ("acknowledged", note.clone(), None),
        AlertState::Merged => ("merged", None, None),
    };
    json!({
        "id": a.id,
        "kind": incident.map_or(a.kind.as_str(), |i| if i.kind.is_overwrite() {
            "mass_overwrite".into()
        } else {
            "mass_deletion".into()
        }),
        "incident_kind": incident.map(|i| i.kind.code()),
        "state": state,
        "raised_at": clock::rfc3339(a.raised_at),
        "closed_at": a.cleared_at.map(clock::rfc3339),
        "message": match incident {
            Some(i) => incident::mass_deletion_message(i, vault),
            None => a.message.clone(),
        },
        "note": note,
        "report": report,
        "address": match &a.kind {
            AlertKind::CutOff(address) => Some(address.as_str()),
            _ => None,
        },
        "incident": incident.map(|i| json!({
            "cut_off": i.cut_off.as_ref().map(crate::model::CutOff::json),
            "code": i.code,
            "folder": json_path(&i.folder).0,
            "files": i.files,
            "recoverable": i.recoverable,
            "restored": i.restored,
            "missing": i.missing(),
            "ended_at": i.ended_at.map(clock::rfc3339),
        })),
    })
}

fn ack(
    config: &Config,
    id: Option<&str>,
    all: bool,
    note: Option<String>,
) -> anyhow::Result<ExitCode> {
    let (vault, index) = super::open_vault(config)?;
    let open = index.alert_entries(i64::MAX)?;
    let chosen: Vec<&AlertEntry> = match id {
        _ if all => open
            .iter()
            .filter(|e| {
                e.alert.kind.incident_code().is_some()
                    || matches!(e.alert.kind, AlertKind::CutOff(_))
            })
            .collect(),
        Some(id) => vec![find_open(&index, &open, id)?],
        None => unreachable!("clap requires an ID or --all"),
    };
    if chosen.is_empty() {
        println!("No mass-deletion alert is open: nothing to acknowledge.");
        return Ok(ExitCode::SUCCESS);
    }
    for entry in chosen {
        if entry.alert.kind == AlertKind::VaultFull {
            anyhow::bail!(
                "alert {} (the vault disk is full) clears by itself once the disk has room \
                 again; it cannot be acknowledged",
                entry.alert.id
            );
        }
        let amendment = Amendment::Acknowledge {
            kind: entry.alert.kind.clone(),
            raised_at: entry.alert.raised_at,
            note: note.clone(),
        };
        crate::amend::make(&vault, &amendment)?;
        // A deletion that was wanted makes the cut-off it caused a false alarm: the
        // breaker is re-armed for that PC with it.
        let cut_off = incident_of(&index, entry)?
            .and_then(|i| i.cut_off)
            .filter(|c| c.outcome == crate::model::CutOutcome::Cut)
            .map(|c| AlertKind::CutOff(c.address));
        if let Some(held) = open
            .iter()
            .find(|e| e.state == AlertState::Open && Some(&e.alert.kind) == cut_off.as_ref())
            // With --all it is among those chosen, and acknowledged in its turn.
            .filter(|_| !all)
        {
            crate::amend::make(
                &vault,
                &Amendment::Acknowledge {
                    kind: held.alert.kind.clone(),
                    raised_at: held.alert.raised_at,
                    note: note.clone(),
                },
            )?;
            println!(
                "{}",
                wrap(&format!(
                    "Acknowledged that undelete cut off {}: it will cut it off again if it \
                     deletes or encrypts files en masse.",
                    held.alert.kind.as_str().trim_start_matches("cut_off:")
                ))
            );
        }
        if let AlertKind::CutOff(address) = &entry.alert.kind {
            println!(
                "{}",
                wrap(&format!(
                    "Acknowledged that undelete cut off {address}: it will cut it off again \
                     if it deletes or encrypts files en masse."
                ))
            );
            continue;
        }
        let what = match incident_of(&index, entry)? {
            Some(i) if i.kind.is_overwrite() => {
                format!("the files changed beyond use of incident {}", i.code)
            }
            Some(i) => format!("the mass deletion of incident {}", i.code),
            None => format!("alert {}", entry.alert.id),
        };
        println!(
            "Acknowledged {what}: it is no longer a warning. Its files can still be brought back."
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The open alert a person named, by its number or by its incident's code.
fn find_open<'a>(
    index: &Index,
    open: &'a [AlertEntry],
    id: &str,
) -> anyhow::Result<&'a AlertEntry> {
    let found = match id.trim().parse::<i64>() {
        Ok(n) => open.iter().find(|e| e.alert.id == n),
        Err(_) => {
            let code: crate::ids::IncidentCode = id.parse()?;
            let code = index
                .incident_by_code(code.as_str())?
                .map(|i| i.code)
                .ok_or_else(|| {
                    anyhow::anyhow!("no incident has the code {code} (see: undelete incidents)")
                })?;
            let kind = AlertKind::MassDeletion(code);
            open.iter().find(|e| e.alert.kind == kind)
        }
    };
    found.ok_or_else(|| {
        anyhow::anyhow!("no open alert is {id}; the open ones are listed by: undelete alerts")
    })
}

fn test(config: &Config) -> anyhow::Result<ExitCode> {
    let rules = &config.incidents;
    if rules.email.is_none() && rules.alert_command.is_none() {
        println!(
            "{}",
            wrap(
                "No alert is set up: mass deletions are shown by status only. To be told \
                 by e-mail, fill in the [alert.email] table of the settings \
                 (/etc/undelete/config.toml); then run this again."
            )
        );
        return Ok(ExitCode::FAILURE);
    }
    let mut failed = false;
    if let Some(email) = &rules.email {
        println!(
            "Sending a test e-mail to {} through {} (port {})…",
            email.recipients(),
            email.server,
            email.port
        );
        let letter = incident::test_letter(&incident::host_name(), &config.protect);
        let delivery = crate::watch::alert::send(email, &letter);
        match &delivery.error {
            None => println!(
                "Sent. It should arrive in a minute; if it does not, look in the spam folder."
            ),
            Some(why) => {
                failed = true;
                println!("{}", wrap(&format!("NOT sent: {why}")));
            }
        }
        note_delivery(config, &delivery);
    }
    if let Some(command) = &rules.alert_command {
        println!("Running the alert command with UNDELETE_EVENT=test…");
        let mut command =
            crate::watch::alert::alert_command(command, AlertEvent::Test, None, &config.vault);
        match command.status() {
            Ok(status) if status.success() => println!("It ran and succeeded."),
            Ok(status) => {
                failed = true;
                println!("It ran but failed ({status}).");
            }
            Err(e) => {
                failed = true;
                println!("It could not be run: {e}");
            }
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Keeps how the test went where `doctor` looks, as the daemon keeps its own: a
/// test that works after a fix clears the problem. Best effort (no vault yet).
fn note_delivery(config: &Config, delivery: &crate::model::Delivery) {
    let Ok((_, index)) = super::open_vault(config) else {
        return;
    };
    let key = if delivery.error.is_some() {
        MetaKey::EmailFailed
    } else {
        MetaKey::EmailSent
    };
    let _ = index.set_meta(key, &serde_json::to_string(delivery).unwrap_or_default());
}
