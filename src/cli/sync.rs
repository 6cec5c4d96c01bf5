//! `undelete sync`: wait until the daemon has recorded every earlier change (with
//! `--hashed`, and hashed every copy it cloned).

use std::process::ExitCode;
use std::time::Duration;

use crate::config::Config;
use crate::control;
use crate::vault::Vault;

pub fn run(config: &Config, timeout: u64, hashed: bool) -> anyhow::Result<ExitCode> {
    if let Err(e) = std::fs::read_dir(&config.vault)
        && e.kind() == std::io::ErrorKind::PermissionDenied
    {
        // Not "no vault there": it is there, only not ours to read.
        super::open_vault_folder(config)?;
    }
    let vault = Vault::open_existing(&config.vault).map_err(|_| {
        anyhow::anyhow!(
            "the undelete daemon is not running for the vault {} (there is no vault there yet)",
            config.vault.display()
        )
    })?;
    let command = if hashed { "SYNC HASHED" } else { "SYNC" };
    control::request(&vault.socket_path(), command, Duration::from_secs(timeout))?;
    Ok(ExitCode::SUCCESS)
}
