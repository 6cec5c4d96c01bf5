//! `undelete mount DIR`: the vault as read-only folders (points in time for
//! Windows' Previous Versions, incidents, deleted files), until unmounted or
//! stopped; and `undelete samba-config [SHARE_PATH]`: the lines a Samba share
//! needs to offer them.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;

use crate::config::Config;
use crate::index::{Index, IndexError};
use crate::mount::{self, Ended, MountError, VaultView};
use crate::samba;

pub fn run(config: &Config, dir: &Path) -> anyhow::Result<ExitCode> {
    let vault = super::open_vault_folder(config)?;
    let index = Index::open_for_reading(&vault.index_path()).map_err(|e| match e {
        IndexError::OldAndReadOnly { .. } => anyhow::anyhow!(
            "the index of the vault {} is from an older version of undelete: start the \
             undelete service once (it brings the index up to date), then mount again",
            vault.root().display()
        ),
        other => other.into(),
    })?;
    let roots: Vec<PathBuf> = index.roots()?.into_iter().map(|r| r.path).collect();
    let dir = super::absolute(dir);
    remove_stale_mount(&dir);
    mount::check_mount_point(&dir, &roots, vault.root()).map_err(|why| MountError::Refused {
        dir: dir.clone(),
        why,
    })?;
    let view = VaultView::new(vault, index, config.retention.keep_deleted_ns)?;
    let ended = mount::serve(view, &dir)?;
    match ended {
        Ended::Unmounted => eprintln!("undelete: {} was unmounted.", dir.display()),
        Ended::Stopped => eprintln!("undelete: stopped; {} is unmounted.", dir.display()),
        Ended::Detached => eprintln!(
            "undelete: stopped; {} is unmounted (a program was still using it).",
            dir.display()
        ),
    }
    Ok(ExitCode::SUCCESS)
}

/// A mount left by a run that was killed answers nothing ("Transport endpoint is not
/// connected"): it is taken away, so the folder can be mounted again.
fn remove_stale_mount(dir: &Path) {
    if let Err(e) = std::fs::metadata(dir)
        && e.raw_os_error() == Some(libc::ENOTCONN)
    {
        match rustix::mount::unmount(dir, rustix::mount::UnmountFlags::DETACH) {
            Ok(()) => tracing::warn!(
                "{} still held the mount of a run that was stopped without unmounting; it is removed",
                dir.display()
            ),
            Err(e) => tracing::warn!("cannot remove the stale mount on {}: {e}", dir.display()),
        }
    }
}

pub fn samba_config(
    config: &Config,
    share: Option<&Path>,
    mount_dir: Option<&Path>,
) -> anyhow::Result<ExitCode> {
    let vault = super::open_vault_folder(config)?;
    let mount_dir = match mount_dir {
        Some(dir) => super::absolute(dir),
        None => mount::mounted_on(vault.root())
            .unwrap_or_else(|| PathBuf::from(samba::DEFAULT_MOUNT_POINT)),
    };
    let shares: Vec<PathBuf> = match share {
        Some(share) => vec![super::absolute(share)],
        None => {
            let (_, index) = super::open_vault(config)?;
            index
                .roots()
                .context("cannot read the protected folders")?
                .into_iter()
                .filter(|r| r.active)
                .map(|r| r.path)
                .collect()
        }
    };
    for (n, share) in shares.iter().enumerate() {
        if n > 0 {
            println!();
        }
        println!(
            "# Previous Versions for the share of {} (undelete samba-config).",
            crate::words::display_path(share)
        );
        println!("# Add to the share's [section] in /etc/samba/smb.conf, then run");
        println!("#   sudo smbcontrol all reload-config");
        println!("# A share with vfs objects of its own keeps them, on one line:");
        println!("#   vfs objects = acl_xattr shadow_copy2");
        print!("{}", samba::config_lines(share, &mount_dir));
    }
    Ok(ExitCode::SUCCESS)
}
