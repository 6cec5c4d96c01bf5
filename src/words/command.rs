//! The commands the program prints for someone to type: `undelete --vault VAULT …`,
//! every word that needs it quoted for a shell, and the one that repeats a restore.
//! Each is whole on a line of its own where it is shown, so it is typed as read.

use std::fmt;
use std::path::{Path, PathBuf};

use super::quote;

/// The vault of the system service: commands for it name no vault, and run as root.
const SERVICE_VAULT: &str = "/var/lib/undelete";

/// A command line for a shell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandLine(Vec<String>);

impl CommandLine {
    /// `undelete --vault VAULT`.
    pub fn undelete(vault: &Path) -> Self {
        Self(vec!["undelete".into(), "--vault".into(), quote(vault)])
    }

    /// For the server's administrator, as root: `sudo undelete`, with `--vault VAULT`
    /// unless it is the service's own.
    pub fn as_root(vault: &Path) -> Self {
        match vault == Path::new(SERVICE_VAULT) {
            true => Self(vec!["sudo".into(), "undelete".into()]),
            false => Self::undelete(vault).with_sudo(),
        }
    }

    /// For whoever reads `vault`: `sudo undelete` for the service's (it is root's),
    /// `undelete --vault VAULT` for another one.
    pub fn for_vault(vault: &Path) -> Self {
        match vault == Path::new(SERVICE_VAULT) {
            true => Self(vec!["sudo".into(), "undelete".into()]),
            false => Self::undelete(vault),
        }
    }

    /// The same command, run as root.
    pub fn with_sudo(mut self) -> Self {
        self.0.insert(0, "sudo".into());
        self
    }

    /// Words as they are: a subcommand, a flag, an incident code.
    pub fn arg(mut self, words: impl Into<String>) -> Self {
        self.0.push(words.into());
        self
    }

    /// A path, quoted for a shell.
    pub fn path(mut self, path: &Path) -> Self {
        self.0.push(quote(path));
        self
    }

    /// Text someone gave, quoted for a shell as a path would be.
    pub fn quoted(self, text: &str) -> Self {
        self.path(Path::new(text))
    }
}

impl fmt::Display for CommandLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join(" "))
    }
}

/// Which command repeats a restore: `restore` itself, or the guided one without
/// its questions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rerun {
    Restore,
    Emergency,
}

/// What a restore was asked for, as the command that repeats it spells it.
#[derive(Debug, Clone)]
pub struct Repeat<'a> {
    pub rerun: Rerun,
    /// The paths asked for, absolute.
    pub paths: &'a [PathBuf],
    pub under: Option<&'a Path>,
    /// The incident's code as the index spells it (`RGA-HY8`, however it was typed).
    pub incident: Option<&'a str>,
    pub all_deleted: bool,
    pub deleted_after: Option<i64>,
    pub deleted_before: Option<i64>,
    pub as_of: Option<i64>,
    pub include_lock_files: bool,
    /// The flag saying what became of an overwrite incident's encrypted copies.
    pub encrypted: Option<&'static str>,
    /// Where the files really went, when not to their original place.
    pub to: Option<&'a Path>,
}

impl Repeat<'_> {
    /// The command that repeats the restore without questions. Relative times are
    /// written out as the moments they meant, so it repeats this restore rather
    /// than a different one later; every word is quoted for a shell.
    pub fn command(&self, vault: &Path) -> String {
        let mut command = CommandLine::undelete(vault);
        command = match self.rerun {
            Rerun::Restore => command.arg("restore"),
            Rerun::Emergency => command.arg("emergency").arg("--yes"),
        };
        for path in self.paths {
            command = command.path(path);
        }
        if let Some(under) = self.under {
            command = command.arg("--under").path(under);
        }
        if let Some(code) = self.incident {
            command = command.arg("--incident").quoted(code);
        }
        if self.all_deleted {
            command = command.arg("--all-deleted");
        }
        for (flag, t) in [
            ("--deleted-after", self.deleted_after),
            ("--deleted-before", self.deleted_before),
            ("--as-of", self.as_of),
        ] {
            if let Some(t) = t {
                command = command.arg(flag).arg(crate::clock::rfc3339_exact(t));
            }
        }
        if self.include_lock_files {
            command = command.arg("--include-lock-files");
        }
        if let Some(flag) = self.encrypted {
            command = command.arg(flag);
        }
        if let Some(dir) = self.to {
            command = command.arg("--to").path(dir);
        }
        command.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_service_vault_is_named_only_where_a_command_needs_it() {
        let service = Path::new(SERVICE_VAULT);
        let other = Path::new("/srv/my vault");
        assert_eq!(
            CommandLine::as_root(service).arg("emergency").to_string(),
            "sudo undelete emergency"
        );
        assert_eq!(
            CommandLine::as_root(other).arg("emergency").to_string(),
            "sudo undelete --vault '/srv/my vault' emergency"
        );
        assert_eq!(
            CommandLine::for_vault(other).arg("alerts test").to_string(),
            "undelete --vault '/srv/my vault' alerts test"
        );
    }
}
