//! The pieces each check's fix is said with: the change of a setting, said for
//! the way the running service was started, and the commands a fix names. In one
//! place, so every check tells the same person the same way to do a thing.

use std::path::Path;

use super::{CONFIG_FILE, Started};
use crate::words::display_path;

impl Started {
    /// The fix for a setting to change, `what` ("name the folders to protect
    /// (protect = ...)"), and the commands that make the daemon use it.
    pub(super) fn change(&self, what: &str) -> (String, Vec<String>) {
        match self {
            Self::Unknown => (
                format!("{what} in {CONFIG_FILE}, then restart the service:"),
                vec![restart()],
            ),
            Self::Service { settings } => (
                format!(
                    "{what} in {}, then have the service read it again (nothing is \
                     missed meanwhile):",
                    display_path(settings)
                ),
                vec!["sudo systemctl reload undelete".into()],
            ),
            Self::ByHand { settings, pid } => (
                format!(
                    "{what} in {}, then have the running service (process {pid}) read it \
                     again:",
                    display_path(settings)
                ),
                vec![format!("sudo kill -HUP {pid}")],
            ),
            Self::Flags { pid } => (
                format!(
                    "The service (process {pid}) was started with flags (--protect, \
                     --exclude, --max-file-size), which it never reads again: stop it, \
                     and start it again with the flags changed. Or keep the settings in \
                     {CONFIG_FILE} and start it with --config {CONFIG_FILE}, so a reload \
                     reads them. To do: {what}."
                ),
                Vec::new(),
            ),
        }
    }
}

/// " (and 2 more)" after the first of several.
pub(super) fn more(n: usize) -> String {
    match n {
        0 | 1 => String::new(),
        n => format!(" (and {} more)", n - 1),
    }
}

/// `undelete ARGS`, naming the vault when it is not the service's default one.
pub(super) fn undelete(vault: &Path, args: &str) -> String {
    crate::words::CommandLine::for_vault(vault)
        .arg(args)
        .to_string()
}

/// "Name the folders…" → "name the folders…", to follow a colon.
pub(super) fn lowercase_first(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

pub(super) fn restart() -> String {
    "sudo systemctl restart undelete".into()
}
