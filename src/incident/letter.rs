//! The e-mails of alerts: a mass deletion or overwrite, the vault growing fast,
//! and the test message, each written for an owner who is not at the server and
//! may not know what a terminal is, with the commands for whoever helps them.

use std::path::Path;

use super::{AlertEvent, cut_off_said, what_happened};
use crate::words::wrap_letter;

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
fn restore_command_for_email(incident: &crate::model::Incident, vault: &Path) -> String {
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
                "Encrypting has stopped on {host}: {}",
                what_happened(incident, &folder)
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
                "Deleting has stopped on {host}: {}",
                what_happened(incident, &folder)
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
