//! The checks of what the service warned about: its recent alerts, with the
//! command that undoes each, and whether its alert e-mails get through.

use serde_json::json;

use super::fix::{more, undelete};
use super::*;
use crate::clock;
use crate::model::AlertKind;

pub(super) fn alerts_check(facts: &Facts, rec: &Recorded) -> Check {
    let name = "alerts";
    // The watch limit and a full disk have checks of their own.
    let recent: Vec<&Alert> = rec
        .alerts
        .iter()
        .filter(|a| !matches!(a.kind, AlertKind::WatchLimit | AlertKind::VaultFull))
        .filter(|a| facts.now - a.raised_at <= RECENT_ALERTS)
        .collect();
    let Some(newest) = recent.first() else {
        return Check::ok(name, "No warnings in the last 7 days.".into());
    };
    // Its command goes on a line of its own, to be read out and typed as shown.
    let (words, command) = match newest.message.split_once(": undelete ") {
        Some((words, command)) => (format!("{words}:"), Some(format!("undelete {command}"))),
        None => (newest.message.clone(), None),
    };
    let mut commands: Vec<String> = command.into_iter().collect();
    commands.push(undelete(&facts.vault, "emergency"));
    Check::problem(
        name,
        format!(
            "Warning from {}{}: {words}",
            clock::spoken(newest.raised_at, facts.now),
            more(recent.len())
        ),
        "If it was not on purpose, bring the files back with the first command, or \
         step by step with the second:"
            .into(),
        commands,
    )
    .with_details(json!(recent))
}

/// Whether alert e-mails get through: a check only where e-mail is set up, or one
/// failed (the daemon keeps trying with each alert; it never stops for it).
pub(super) fn email_check(facts: &Facts, rec: &Recorded) -> Option<Check> {
    let name = "alert_email";
    let failed = rec
        .email_failed
        .as_ref()
        .filter(|f| rec.email_sent.as_ref().is_none_or(|sent| sent.at < f.at));
    if let Some(failed) = failed {
        return Some(Check::problem(
            name,
            format!(
                "The alert e-mail to {} could not be sent ({}): {}",
                failed.to,
                clock::spoken(failed.at, facts.now),
                failed.error.as_deref().unwrap_or("no reason given"),
            ),
            format!(
                "Check the [alert.email] settings in {CONFIG_FILE} (server, port, security, \
                 user and password file), reload the service, then send a test message:"
            ),
            vec![
                "sudo systemctl reload undelete".into(),
                undelete(&facts.vault, "alerts test"),
            ],
        ));
    }
    let to = facts.email_to.as_ref()?;
    Some(Check::ok(
        name,
        match &rec.email_sent {
            Some(sent) => format!(
                "Alert e-mails go to {to}; the last one was sent {}.",
                crate::words::spoken_in_a_sentence(sent.at, facts.now)
            ),
            None => format!(
                "Alert e-mails go to {to}. None was sent yet; to try: {}",
                undelete(&facts.vault, "alerts test")
            ),
        },
    ))
}
