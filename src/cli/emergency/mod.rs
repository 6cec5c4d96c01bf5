//! `undelete emergency`: the guided restore, for a frightened customer with a
//! technician on the phone.
//!
//! Five numbered steps in short sentences. Pressing Enter at every question
//! restores the most recent incident to its original place, never overwriting
//! anything. A typo at a question asks again, saying what is accepted. Every
//! choice has a flag, so `--yes` runs it without questions; with no terminal and
//! no `--yes` it stops at once and names the flags. Plain numbered prompts rather
//! than a menu crate: they read the same over the phone and in a log as on the
//! screen. Every line fits 80 columns, wrapped between words, and the last
//! screen ends with what is read aloud: the count, what was lost and why, the
//! command that shows the full report and the one that repeats the restore.

use std::io::{self, IsTerminal};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;

use super::interrupt::Interrupt;
use super::restore::{Request, RestoreArgs, carry_out, exit_code, lock_restores};
use crate::clock;
use crate::config::Config;
use crate::control;
use crate::index::Index;
use crate::model::Incident;
use crate::restore::{self, Destination};
use crate::words::Rerun;
use crate::words::{bytes, count, display_path, files, whole_in, whole_path, wrap, wrap_line};

mod prompts;
mod search;

use prompts::{Wizard, menu_line, number_up_to, numbers};
use search::{ask_folder, search};

const STEPS: u32 = 5;
/// How many recent incidents step 2 offers.
const CHOICES: usize = 5;
/// How many lost files per reason the final screen names; the report has them all.
const LOST_SHOWN: usize = 5;

#[derive(Debug, Args, Clone, Default)]
pub struct EmergencyArgs {
    /// Restore this incident (default: the most recent one).
    #[arg(long, value_name = "CODE", conflicts_with = "under")]
    incident: Option<String>,
    /// Instead of an incident: everything deleted in and below this folder.
    #[arg(long, value_name = "DIR")]
    under: Option<PathBuf>,
    /// With --under: only what was deleted at or after this time (e.g. 12h, "2026-11-22 02:00").
    #[arg(long, value_name = "T", requires = "under")]
    deleted_after: Option<String>,
    /// Put the files in this folder instead of their original place.
    #[arg(long, value_name = "DIR")]
    to: Option<PathBuf>,
    /// Also bring back lock files of programs (left out by default).
    #[arg(long)]
    include_lock_files: bool,
    /// For files encrypted: move the encrypted copies into a folder of their own,
    /// "Encrypted files (incident CODE)" in the protected folder (default: leave them).
    #[arg(long, conflicts_with = "delete_encrypted")]
    move_encrypted_aside: bool,
    /// For files encrypted: delete the encrypted copies (never done without this flag).
    #[arg(long)]
    delete_encrypted: bool,
    /// Do not ask anything: take the defaults and the choices given as flags.
    #[arg(long)]
    yes: bool,
}

/// What the customer chose to bring back.
enum Choice {
    Incident(Box<Incident>),
    Folder {
        under: PathBuf,
        since: Option<String>,
    },
}

pub fn run(config: &Config, args: EmergencyArgs) -> anyhow::Result<ExitCode> {
    let interactive = !args.yes;
    if interactive && !io::stdin().is_terminal() {
        anyhow::bail!(
            "emergency asks questions, but there is no one at a terminal to answer them. \
             Run it without questions with --yes, choosing with --incident CODE or \
             --under DIR [--deleted-after T], and --to DIR to restore elsewhere"
        );
    }
    let interrupt = Interrupt::install()?;
    let (vault, index) = super::open_vault(config)?;
    let mut w = Wizard {
        interactive,
        step: 0,
        interrupt: &interrupt,
    };
    println!("Emergency undelete. Nothing will be changed until you confirm.");

    w.step("Is protection working?");
    let now = clock::now();
    let totals = index.totals()?;
    if control::is_running(&vault.socket_path()) {
        println!("Yes: the undelete service is running.");
    } else {
        println!("The undelete service is NOT running right now.");
        println!("Files deleted while it was stopped may not have been copied.");
    }
    match totals.last_capture {
        Some(at) => println!("The last copy was made: {}.", clock::spoken(at, now)),
        None => {
            println!("No file was ever copied into this vault, so nothing can be brought back.");
            println!("The one thing that helps most now: stop writing to that disk.");
            println!("Every new file may overwrite what was deleted. Call your IT support.");
            return Ok(ExitCode::FAILURE);
        }
    }

    // Files encrypted are changed, not deleted: the question says so when such an
    // incident is the one chosen, or offered first.
    let changed = match &args.incident {
        Some(code) => super::incidents::find(&index, code)?.kind.is_overwrite(),
        None if args.under.is_some() => false,
        None => index
            .incidents(CHOICES)?
            .iter()
            .any(|i| i.kind.is_overwrite() && i.missing() > 0),
    };
    w.step(match changed {
        true => "What was changed or deleted?",
        false => "What was deleted?",
    });
    let choice = choose_what(&mut w, &index, &args, now)?;

    w.step("What can come back?");
    let restore_args = RestoreArgs {
        incident: match &choice {
            Choice::Incident(i) => Some(i.code.clone()),
            Choice::Folder { .. } => None,
        },
        under: match &choice {
            Choice::Folder { under, .. } => Some(under.clone()),
            Choice::Incident(_) => None,
        },
        deleted_after: match &choice {
            Choice::Folder { since, .. } => since.clone(),
            Choice::Incident(_) => None,
        },
        to: args.to.clone(),
        include_lock_files: args.include_lock_files,
        move_encrypted_aside: args.move_encrypted_aside,
        delete_encrypted: args.delete_encrypted,
        ..RestoreArgs::default()
    };
    let mut request = Request::from_args(&restore_args, &index)?;
    // Held from this plan to the report: a plan made while another restore still
    // writes would be out of date by the time this one starts.
    let _lock = lock_restores(&vault)?;
    let mut plan = restore::plan(&index, &vault, &request.filter, &request.destination)?;
    let totals = plan.totals();
    if totals.files == 0 && totals.left_out == 0 {
        println!("No deleted files were found for that choice.");
        println!("Nothing was changed. Try again and choose another folder or time.");
        return Ok(ExitCode::FAILURE);
    }
    let what = match &choice {
        Choice::Incident(i) if i.kind.is_overwrite() => "changed beyond use",
        _ => "deleted",
    };
    println!(
        "{} {what}. {} can come back ({}).",
        files(totals.files),
        count(totals.to_restore + totals.already_present),
        bytes(totals.bytes_to_restore)
    );
    if totals.already_present > 0 {
        println!(
            "{} of them are already back in place.",
            count(totals.already_present)
        );
    }
    let preview = crate::report::RestoreReport {
        files: plan.as_results(),
        dry_run: true,
        started_at: now,
        finished_at: now,
        destination: String::new(),
        command: String::new(),
        incident: None,
        as_before: None,
        encrypted: Vec::new(),
        cut_off: None,
    };
    for (reason, group) in preview.lost_by_reason() {
        println!(
            "{}",
            wrap_line(&format!(
                "{} cannot come back: {reason}.",
                files(group.len() as u64)
            ))
        );
    }
    if totals.left_out > 0 {
        // Brought back, a lock file makes its program think the document is still open.
        println!(
            "{}",
            wrap_line(&match totals.left_out {
                1 => "1 lock file of a program will be left out on purpose.".to_owned(),
                n => format!(
                    "{} lock files of programs will be left out on purpose.",
                    count(n)
                ),
            })
        );
    }
    let destination = plan
        .items
        .first()
        .map(|i| i.base.clone())
        .unwrap_or_default();
    // The folder may be gone with the files: the disk is that of its nearest parent.
    let on_disk = destination.ancestors().find(|p| p.exists());
    if let Some(free) = crate::vault::free_space(on_disk.unwrap_or(Path::new("/"))) {
        println!(
            "Space needed: {}. Free on that disk: {}.",
            bytes(totals.bytes_to_restore),
            bytes(free)
        );
    }

    w.step("Where should they go?");
    let destination = match &args.to {
        Some(_) => request.destination.clone(),
        None => {
            println!("  1) Back to their original place. Nothing there is overwritten. (Enter)");
            println!("  2) Into a new folder.");
            let pick = w.ask_until("Your choice [1]:", |answer| {
                number_up_to(answer, 2)
                    .ok_or_else(|| "Please type 1 or 2, or press Enter for 1.".to_owned())
            })?;
            match pick {
                0 => Destination::Original,
                _ => {
                    let dir =
                        w.ask_until("Type the new folder's full path:", |dir| {
                            if dir.is_empty() {
                                Err("Please type the folder's full path, for example /srv/restored."
                                .to_owned())
                            } else {
                                Ok(dir.to_owned())
                            }
                        })?;
                    Destination::Under(super::destination(Path::new(&dir)))
                }
            }
        }
    };
    let restore_args = RestoreArgs {
        to: match &destination {
            Destination::Under(dir) => Some(dir.clone()),
            Destination::Original => None,
        },
        ..restore_args
    };
    if destination != request.destination {
        // Planned again only for a new place: what is already there differs. The
        // selection stays the one shown in step 3, not one re-read at a later moment.
        let selection = request.filter.clone();
        request = Request::from_args(&restore_args, &index)?;
        request.filter = selection;
        plan = restore::plan(&index, &vault, &request.filter, &request.destination)?;
    }
    let copies = plan.encrypted.len() as u64;
    if copies > 0 && !args.move_encrypted_aside && !args.delete_encrypted {
        let Choice::Incident(incident) = &choice else {
            unreachable!("only an incident of files encrypted has encrypted copies")
        };
        let folder = crate::model::encrypted_folder(&incident.code);
        println!(
            "{}",
            wrap(&format!(
                "What should be done with the {} encrypted {} left where the files were?",
                count(copies),
                if copies == 1 { "copy" } else { "copies" }
            ))
        );
        println!("  1) Leave them where they are. (Enter)");
        println!(
            "{}",
            menu_line(
                "2)",
                &format!(
                    "Move them into a folder \"{folder}\" in the protected folder, so \
                     each file takes its own name again."
                )
            )
        );
        let pick = w.ask_until("Your choice for the encrypted copies [1]:", |answer| {
            number_up_to(answer, 2)
                .ok_or_else(|| "Please type 1 or 2, or press Enter for 1.".to_owned())
        })?;
        if pick == 1 {
            request.filter.encrypted = crate::model::EncryptedCopies::MoveAside;
            plan = restore::plan(&index, &vault, &request.filter, &request.destination)?;
        }
    }
    match &plan.destination {
        Destination::Original => println!("The files will go back to their original place."),
        Destination::Under(dir) => println!(
            "{}",
            wrap(&format!("The files will go into {}.", whole_path(dir)))
        ),
    }
    if copies > 0 {
        println!(
            "{}",
            wrap(match request.filter.encrypted {
                crate::model::EncryptedCopies::Leave => {
                    "The encrypted copies will be left where they are."
                }
                crate::model::EncryptedCopies::MoveAside => {
                    "The encrypted copies will be moved aside first."
                }
                crate::model::EncryptedCopies::Delete => {
                    "The encrypted copies will be deleted first."
                }
            })
        );
    }
    let start = w.ask_until(
        "Start now? Press Enter to start, or type n to stop [Y/n]:",
        |answer| match answer.to_ascii_lowercase().as_str() {
            "" | "y" | "yes" => Ok(true),
            "n" | "no" => Ok(false),
            _ => Err("Please press Enter to start, or type n to stop.".to_owned()),
        },
    )?;
    if !start {
        println!("Stopped. Nothing was changed.");
        return Ok(ExitCode::FAILURE);
    }

    w.step("Bringing the files back");
    let command = request.command(vault.root(), Rerun::Emergency, &plan.destination);
    let report = carry_out(&plan, &vault, &request, command, Some(&interrupt), true)?;
    let saved = super::report::save(&report, &vault, config);
    if plan.destination == Destination::Original {
        super::restore::note_brought_back(&vault, &request, &report, saved.as_deref().ok());
    }
    let c = report.counts();
    if saved.is_err() {
        // Nothing else keeps it: the whole report goes on the screen, above the end.
        println!();
        print!("{}", report.text());
    }
    // First what scrolls away (the names), then what is read aloud, last on screen.
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
    if c.beside > 0 {
        println!(
            "{}",
            wrap_line(&format!(
                "{} restored beside a newer file with the same name (see the report).",
                files(c.beside)
            ))
        );
    }
    println!("{}", wrap(&report.verdict()));
    println!();
    match &saved {
        Ok(saved) => {
            println!("To see the full report, with every file:");
            println!(
                "    {}",
                super::report::command(vault.root(), &report, saved)
            );
        }
        Err(why) => println!("{}", wrap(&format!("{why}; it is printed above."))),
    }
    println!("To do exactly this again without questions:");
    println!("    {}", report.command);
    Ok(exit_code(&report))
}

fn choose_what(
    w: &mut Wizard<'_>,
    index: &Index,
    args: &EmergencyArgs,
    now: i64,
) -> anyhow::Result<Choice> {
    if let Some(code) = &args.incident {
        let incident = super::incidents::find(index, code)?;
        println!(
            "{}",
            wrap_line(&format!("Chosen: {}", described(&incident, now)))
        );
        if let Some(who) = crate::incident::who_did_it(&incident) {
            println!("{}", wrap_line(&format!("({who})")));
        }
        println!("(incident code {})", incident.code);
        return Ok(Choice::Incident(Box::new(incident)));
    }
    if let Some(under) = &args.under {
        println!(
            "{}",
            wrap_line(&format!(
                "Chosen: files deleted from {}",
                whole_path(&super::absolute(under))
            ))
        );
        return Ok(Choice::Folder {
            under: super::absolute(under),
            since: args.deleted_after.clone(),
        });
    }
    let mut recent = index.incidents(CHOICES)?;
    // Files encrypted in place are the worst morning: such incidents still open
    // come first, so Enter at every question brings them back.
    recent.sort_by_key(|i| !(i.kind.is_overwrite() && i.missing() > 0));
    if recent.is_empty() {
        println!("No deletions have been recorded.");
        if !w.interactive {
            anyhow::bail!("nothing to restore; nothing was changed");
        }
        return ask_folder(w);
    }
    if recent.iter().any(|i| i.kind.is_overwrite()) {
        println!("These are the most recent files changed beyond use or deleted, newest first:");
    } else {
        println!("These are the most recent deletions, newest first:");
    }
    for (n, incident) in recent.iter().enumerate() {
        println!(
            "{}",
            menu_line(&format!("{})", n + 1), &described(incident, now))
        );
        let mut note = match super::incidents::partly_recoverable(incident) {
            Some(note) => format!("{note}; incident code {}", incident.code),
            None => format!("incident code {}", incident.code),
        };
        if let Some(who) = crate::incident::who_did_it(incident) {
            note = format!("{who}; {note}");
        }
        println!("{}", menu_line("  ", &note));
    }
    println!("  s) Something else: search by a file or folder name.");
    println!("  f) Something else: type a folder and a time.");
    enum Pick {
        Incident(usize),
        Search,
        Folder,
    }
    let accepted = format!(
        "Please type {}, s or f, or press Enter for 1.",
        numbers(recent.len())
    );
    let pick = w.ask_until("Which one? Press Enter for 1:", |answer| {
        match answer.to_ascii_lowercase().as_str() {
            "s" => Ok(Pick::Search),
            "f" => Ok(Pick::Folder),
            other => number_up_to(other, recent.len())
                .map(Pick::Incident)
                .ok_or_else(|| accepted.clone()),
        }
    })?;
    match pick {
        Pick::Incident(n) => Ok(Choice::Incident(Box::new(recent[n].clone()))),
        Pick::Folder => ask_folder(w),
        Pick::Search => search(w, index, now),
    }
}

/// The incident as `incidents` describes it, its folder marked to be kept whole.
fn described(incident: &Incident, now: i64) -> String {
    whole_in(
        &super::incidents::describe(incident, now),
        &[display_path(&incident.folder)],
    )
}
