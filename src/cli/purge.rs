//! `undelete purge`: apply the retention rules now, or show what they would do.
//!
//! The running daemon purges by itself every hour. Asked now, it is the daemon
//! that purges, between two batches of work, so no copy under way can come to
//! refer to an object being removed; with the daemon stopped, this command
//! purges itself, holding the daemon's lock so one cannot start meanwhile.

use std::process::ExitCode;
use std::time::Duration;

use crate::clock;
use crate::config::Config;
use crate::config::Retention;
use crate::control;
use crate::index::Index;
use crate::index::MetaKey;
use crate::retention::{self, PurgeAsk, PurgePlan, Why};
use crate::vault::LockError;
use crate::words::{bytes, count, display_path};

/// How many purged files the plan names; the rest are counted.
const SHOWN: usize = 20;

/// Without retention rules on the command line, the rules are the service's own, as
/// its daemon last recorded them: the daemon may run with other flags or another
/// settings file than this command reads.
pub fn run(config: &Config, dry_run: bool) -> anyhow::Result<ExitCode> {
    let vault = super::open_vault_folder(config)?;
    let now = clock::now();
    let read_only = || Index::open_existing(&vault.index_path(), &vault.journal_dir());
    let rules = match config.retention_from_flags() {
        true => config.retention.clone(),
        false => service_rules(&read_only()?)?.unwrap_or_else(|| config.retention.clone()),
    };
    let plan_and_show = |index: &Index| -> anyhow::Result<PurgePlan> {
        let plan = retention::plan(index, &vault, &rules, now)?;
        show(&plan);
        Ok(plan)
    };
    if dry_run {
        plan_and_show(&read_only()?)?;
        println!("Dry run: nothing was changed.");
        return Ok(ExitCode::SUCCESS);
    }
    let summary = match vault.lock() {
        // Locked first, so no daemon starts capturing while copies are removed;
        // journaled, as the daemon's changes are, so a rebuilt index knows them.
        Ok(_lock) => {
            let index = Index::open_journaled(&vault.index_path(), &vault.journal_dir())?;
            // Copies no version refers to are removed first: the size rules would
            // otherwise purge kept versions for room they take.
            crate::watch::sweep(&vault, &index)?;
            let plan = plan_and_show(&index)?;
            let done = retention::execute(&plan, &index, &vault, now)?;
            for (path, why) in &done.not_removed {
                eprintln!("Could not remove {}: {why}", path.display());
            }
            retention::summary(&done)
        }
        // The daemon runs: it purges, between two batches, what was shown here and
        // what its own plan, made then, still purges.
        Err(LockError::Taken { .. }) => {
            let plan = plan_and_show(&read_only()?)?;
            let ask = PurgeAsk {
                rules: rules.clone(),
                only: Some(plan.version_ids()),
            };
            control::request(
                &vault.socket_path(),
                &format!("PURGE {}", serde_json::to_string(&ask)?),
                Duration::from_secs(600),
            )?
        }
        Err(e) => return Err(e.into()),
    };
    println!("{summary}");
    Ok(ExitCode::SUCCESS)
}

/// The retention rules the daemon last recorded, if any.
fn service_rules(index: &Index) -> anyhow::Result<Option<Retention>> {
    let Some(settings) = index.meta(MetaKey::Settings)? else {
        return Ok(None);
    };
    let settings: serde_json::Value = serde_json::from_str(&settings)?;
    Ok(serde_json::from_value(settings["retention"].clone()).ok())
}

fn show(plan: &PurgePlan) {
    if plan.purges.is_empty() {
        println!("Nothing needs purging: every kept copy is within the retention rules.");
    } else {
        println!(
            "{} older {} to purge, freeing {}:",
            count(plan.purges.len() as u64),
            if plan.purges.len() == 1 {
                "copy"
            } else {
                "copies"
            },
            bytes(plan.bytes_freed)
        );
        for why in [Why::Age, Why::Versions, Why::Space] {
            let n = plan.count(why);
            if n > 0 {
                println!("  {}: {why}", count(n as u64));
            }
        }
        for purge in plan.purges.iter().take(SHOWN) {
            println!(
                "  {}  ({}, gone since {})",
                display_path(&purge.version.path),
                bytes(purge.version.size),
                clock::local(purge.version.gone_at)
            );
        }
        if plan.purges.len() > SHOWN {
            println!("  … and {} more", count((plan.purges.len() - SHOWN) as u64));
        }
    }
    if !plan.held.is_empty() {
        let mut codes: Vec<&str> = plan.held.iter().map(|(_, code)| code.as_str()).collect();
        codes.sort_unstable();
        codes.dedup();
        println!(
            "{} older {} held, not purged: {} current when incident {} began, and \
             what its restore brings back.",
            count(plan.held.len() as u64),
            if plan.held.len() == 1 {
                "copy"
            } else {
                "copies"
            },
            if plan.held.len() == 1 {
                "it was"
            } else {
                "they were"
            },
            codes.join(", ")
        );
        for (version, code) in plan.held.iter().take(SHOWN) {
            println!(
                "  {}  ({}, held by incident {code})",
                display_path(&version.path),
                bytes(version.size),
            );
        }
        if plan.held.len() > SHOWN {
            println!("  … and {} more", count((plan.held.len() - SHOWN) as u64));
        }
    }
    if let Some(alert) = &plan.space_paused_by
        && plan.still_short > 0
    {
        println!(
            "The vault is {} over its size rules, but nothing is purged for room while \
             {alert} is open: files may be being destroyed, and their copies are what \
             brings them back.",
            bytes(plan.still_short)
        );
    } else if plan.still_short > 0 {
        println!(
            "The vault still needs {} more room, but only copies of files that still \
             exist are left, and those are never purged. Give the vault more space.",
            bytes(plan.still_short)
        );
    }
}
