//! `undelete report [last|CODE|FILE] [--json]`: a saved restore report, printed;
//! and saving one at the end of a restore.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::config::Config;
use crate::report::RestoreReport;
use crate::saved_reports::{self, FindError, SaveError, Wanted};
use crate::vault::Vault;
use crate::words::display_path;

use crate::words::CommandLine;

pub fn run(config: &Config, which: Option<&str>, json: bool) -> anyhow::Result<ExitCode> {
    let wanted = Wanted::parse(which.unwrap_or("last"));
    let in_vault = config.vault.join("reports");
    let found = match saved_reports::find(&in_vault, &wanted, json) {
        Err(FindError::Unreadable { source, .. })
            if source.kind() == std::io::ErrorKind::PermissionDenied =>
        {
            from_group_folder(config, &wanted, json)?
        }
        Err(FindError::Unreadable { source, .. })
            if source.kind() == std::io::ErrorKind::NotFound =>
        {
            // A vault folder that is closed to us, or no vault at all: said as for
            // every other command.
            super::open_vault_folder(config)?;
            return Err(FindError::NoneYet.into());
        }
        other => other?,
    };
    use std::io::Write;
    std::io::stdout().write_all(&found.1)?;
    Ok(ExitCode::SUCCESS)
}

/// The group-readable copies, for someone who cannot read the vault.
fn from_group_folder(
    config: &Config,
    wanted: &Wanted,
    json: bool,
) -> anyhow::Result<(PathBuf, Vec<u8>)> {
    let shared = saved_reports::shared_dir(&config.vault);
    match saved_reports::find(&shared, wanted, json) {
        Err(FindError::Unreadable { source, .. })
            if source.kind() == std::io::ErrorKind::PermissionDenied =>
        {
            let group = std::fs::metadata(&shared)
                .ok()
                .and_then(|m| crate::accounts::group_name(std::os::unix::fs::MetadataExt::gid(&m)));
            match group {
                Some(group) => anyhow::bail!(
                    "only root and the members of the group {group} can read the restore \
                     reports of this vault; run it with sudo"
                ),
                None => anyhow::bail!(
                    "only root can read the restore reports of this vault; run it with sudo"
                ),
            }
        }
        Err(FindError::Unreadable { source, .. })
            if source.kind() == std::io::ErrorKind::NotFound =>
        {
            anyhow::bail!(
                "only root can read the restore reports of this vault; run it with sudo \
                 (or name a group that may read them with report_group in the settings)"
            )
        }
        other => Ok(other?),
    }
}

/// Saves the report of a restore that ran; says so when the group's copy could
/// not be made (the report itself is kept).
pub fn save(report: &RestoreReport, vault: &Vault, config: &Config) -> Result<PathBuf, SaveError> {
    let (saved, warning) = saved_reports::save(
        report,
        &vault.reports_dir(),
        vault.root(),
        config.report_group.as_deref(),
    )?;
    if let Some(warning) = warning {
        eprintln!("undelete: {warning}");
    }
    Ok(saved)
}

/// The command that prints the saved report again: by its incident's code when it
/// has one, by its name otherwise.
pub fn command(vault: &Path, report: &RestoreReport, saved: &Path) -> String {
    let command = CommandLine::undelete(vault).arg("report");
    match &report.incident {
        Some(code) => command.arg(code.as_str()),
        None => command.path(Path::new(saved.file_name().unwrap_or_default())),
    }
    .to_string()
}

/// "Report saved: PATH", or why it was not.
pub fn saved_words(saved: &Result<PathBuf, SaveError>) -> String {
    match saved {
        Ok(path) => format!("Report saved: {}", display_path(path)),
        Err(e) => format!("Not saved: {e}."),
    }
}
