//! Step 5 of the guided restore: the files brought back, the report saved, and
//! the end of the call on screen, with what is read aloud last.

use std::path::PathBuf;
use std::process::ExitCode;

use super::{LOST_SHOWN, Planned};
use crate::cli::interrupt::Interrupt;
use crate::cli::restore::{carry_out, exit_code};
use crate::config::Config;
use crate::restore::Destination;
use crate::vault::Vault;
use crate::words::{Rerun, count, display_path, files, wrap, wrap_line};

/// Step 5: the restore carried out, its report saved (and the daemon told what
/// came back to its place), then the end of the call on screen.
pub(super) fn bring_them_back(
    config: &Config,
    vault: &Vault,
    planned: &Planned,
    interrupt: &Interrupt,
) -> anyhow::Result<ExitCode> {
    let Planned { request, plan } = planned;
    let command = request.command(vault.root(), Rerun::Emergency, &plan.destination);
    let report = carry_out(plan, vault, request, command, Some(interrupt), true)?;
    let saved = crate::cli::report::save(&report, vault, config);
    if plan.destination == Destination::Original {
        crate::cli::restore::note_brought_back(vault, request, &report, saved.as_deref().ok());
    }
    say_how_it_ended(vault, &report, &saved);
    Ok(exit_code(&report))
}

/// The end of the call: first what scrolls away (the names of what was lost),
/// then what is read aloud, last on screen: the count, the verdict, the command
/// that shows the report and the one that repeats the restore.
fn say_how_it_ended(
    vault: &Vault,
    report: &crate::report::RestoreReport,
    saved: &Result<PathBuf, crate::saved_reports::SaveError>,
) {
    if saved.is_err() {
        // Nothing else keeps it: the whole report goes on the screen, above the end.
        println!();
        print!("{}", report.text());
    }
    for (reason, group) in report.lost_by_reason() {
        println!();
        println!("{}", wrap_line(&format!("Not recovered, {reason}:")));
        for f in group.iter().take(LOST_SHOWN) {
            println!("  {}", display_path(&f.path));
        }
        if group.len() > LOST_SHOWN {
            println!(
                "  … and {} more (all are in the report)",
                count((group.len() - LOST_SHOWN) as u64)
            );
        }
    }
    println!();
    for line in report.summary_lines() {
        println!("{}", wrap_line(&line));
    }
    let beside = report.counts().beside;
    if beside > 0 {
        println!(
            "{}",
            wrap_line(&format!(
                "{} restored beside a newer file with the same name (see the report).",
                files(beside)
            ))
        );
    }
    println!("{}", wrap(&report.verdict()));
    println!();
    match saved {
        Ok(saved) => {
            println!("To see the full report, with every file:");
            println!(
                "    {}",
                crate::cli::report::command(vault.root(), report, saved)
            );
        }
        Err(why) => println!("{}", wrap(&format!("{why}; it is printed above."))),
    }
    println!("To do exactly this again without questions:");
    println!("    {}", report.command);
}
