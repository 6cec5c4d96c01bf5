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
use super::restore::{Request, RestoreArgs, lock_restores};
use crate::clock;
use crate::config::Config;
use crate::control;
use crate::index::Index;
use crate::model::Incident;
use crate::restore::{self, Destination, RestorePlan};
use crate::vault::Vault;
use crate::words::{bytes, count, display_path, files, whole_in, whole_path, wrap, wrap_line};

mod ending;
mod prompts;
mod search;

use ending::bring_them_back;
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

/// What the customer agreed to, ready to carry out: the request (what a repeat
/// of it says) and the plan made from it.
struct Planned {
    request: Request,
    plan: RestorePlan,
}

impl Planned {
    /// Planned again from the index, with the request as it now stands.
    fn plan_again(&mut self, index: &Index, vault: &Vault) -> anyhow::Result<()> {
        self.plan = restore::plan(
            index,
            vault,
            &self.request.filter,
            &self.request.destination,
        )?;
        Ok(())
    }
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
    let now = clock::now();

    w.step("Is protection working?");
    if !protection_is_working(&vault, &index, now)? {
        return Ok(ExitCode::FAILURE);
    }

    w.step(what_was_lost_asked(&index, &args)?);
    let choice = choose_what(&mut w, &index, &args, now)?;

    w.step("What can come back?");
    let restore_args = restore_args(&choice, &args);
    let request = Request::from_args(&restore_args, &index)?;
    // Held from this plan to the report: a plan made while another restore still
    // writes would be out of date by the time this one starts.
    let _lock = lock_restores(&vault)?;
    let plan = restore::plan(&index, &vault, &request.filter, &request.destination)?;
    if !say_what_can_come_back(&plan, &choice, now) {
        return Ok(ExitCode::FAILURE);
    }

    w.step("Where should they go?");
    let mut planned = Planned { request, plan };
    let destination = ask_where(&mut w, &args, &planned.request)?;
    move_to(&mut planned, destination, restore_args, &index, &vault)?;
    let copies = planned.plan.encrypted.len() as u64;
    if copies > 0 && !args.move_encrypted_aside && !args.delete_encrypted {
        ask_about_encrypted_copies(&mut w, &choice, copies, &mut planned, &index, &vault)?;
    }
    say_where_they_go(&planned, copies);
    if !ask_to_start(&w)? {
        println!("Stopped. Nothing was changed.");
        return Ok(ExitCode::FAILURE);
    }

    w.step("Bringing the files back");
    bring_them_back(config, &vault, &planned, &interrupt)
}

/// Step 1: whether the service runs and when it last copied a file. False, with
/// the one thing that helps, when nothing was ever copied.
fn protection_is_working(vault: &Vault, index: &Index, now: i64) -> anyhow::Result<bool> {
    if control::is_running(&vault.socket_path()) {
        println!("Yes: the undelete service is running.");
    } else {
        println!("The undelete service is NOT running right now.");
        println!("Files deleted while it was stopped may not have been copied.");
    }
    match index.totals()?.last_capture {
        Some(at) => println!("The last copy was made: {}.", clock::spoken(at, now)),
        None => {
            println!("No file was ever copied into this vault, so nothing can be brought back.");
            println!("The one thing that helps most now: stop writing to that disk.");
            println!("Every new file may overwrite what was deleted. Call your IT support.");
            return Ok(false);
        }
    }
    Ok(true)
}

/// Step 2's question. Files encrypted are changed, not deleted: it says so when
/// such an incident is the one chosen, or offered first.
fn what_was_lost_asked(index: &Index, args: &EmergencyArgs) -> anyhow::Result<&'static str> {
    let changed = match &args.incident {
        Some(code) => super::incidents::find(index, code)?.kind.is_overwrite(),
        None if args.under.is_some() => false,
        None => index
            .incidents(CHOICES)?
            .iter()
            .any(|i| i.kind.is_overwrite() && i.missing() > 0),
    };
    Ok(match changed {
        true => "What was changed or deleted?",
        false => "What was deleted?",
    })
}

/// The restore the choice and the flags ask for, as `restore` would be told it.
fn restore_args(choice: &Choice, args: &EmergencyArgs) -> RestoreArgs {
    let (incident, under, deleted_after) = match choice {
        Choice::Incident(i) => (Some(i.code.clone()), None, None),
        Choice::Folder { under, since } => (None, Some(under.clone()), since.clone()),
    };
    RestoreArgs {
        incident,
        under,
        deleted_after,
        to: args.to.clone(),
        include_lock_files: args.include_lock_files,
        move_encrypted_aside: args.move_encrypted_aside,
        delete_encrypted: args.delete_encrypted,
        ..RestoreArgs::default()
    }
}

/// Step 3: how many files can come back, which cannot and why, what is left out
/// on purpose, and the space it takes. False when the choice holds nothing.
fn say_what_can_come_back(plan: &RestorePlan, choice: &Choice, now: i64) -> bool {
    let totals = plan.totals();
    if totals.files == 0 && totals.left_out == 0 {
        println!("No deleted files were found for that choice.");
        println!("Nothing was changed. Try again and choose another folder or time.");
        return false;
    }
    let what = match choice {
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
    true
}

/// Step 4's first question: back to their place, or into a new folder (asked
/// unless `--to` said).
fn ask_where(
    w: &mut Wizard<'_>,
    args: &EmergencyArgs,
    request: &Request,
) -> anyhow::Result<Destination> {
    if args.to.is_some() {
        return Ok(request.destination.clone());
    }
    println!("  1) Back to their original place. Nothing there is overwritten. (Enter)");
    println!("  2) Into a new folder.");
    let pick = w.ask_until("Your choice [1]:", |answer| {
        number_up_to(answer, 2)
            .ok_or_else(|| "Please type 1 or 2, or press Enter for 1.".to_owned())
    })?;
    if pick == 0 {
        return Ok(Destination::Original);
    }
    let dir = w.ask_until("Type the new folder's full path:", |dir| {
        if dir.is_empty() {
            Err("Please type the folder's full path, for example /srv/restored.".to_owned())
        } else {
            Ok(dir.to_owned())
        }
    })?;
    Ok(Destination::Under(super::destination(Path::new(&dir))))
}

/// The request for `destination`, planned again only for a new place: what is
/// already there differs. The selection stays the one shown in step 3, not one
/// re-read at a later moment.
fn move_to(
    planned: &mut Planned,
    destination: Destination,
    restore_args: RestoreArgs,
    index: &Index,
    vault: &Vault,
) -> anyhow::Result<()> {
    if destination == planned.request.destination {
        return Ok(());
    }
    let restore_args = RestoreArgs {
        to: match &destination {
            Destination::Under(dir) => Some(dir.clone()),
            Destination::Original => None,
        },
        ..restore_args
    };
    let selection = planned.request.filter.clone();
    planned.request = Request::from_args(&restore_args, index)?;
    planned.request.filter = selection;
    planned.plan_again(index, vault)
}

/// Step 4's question for files encrypted in place: leave the encrypted copies
/// (Enter), or move them aside so each file takes its own name again.
fn ask_about_encrypted_copies(
    w: &mut Wizard<'_>,
    choice: &Choice,
    copies: u64,
    planned: &mut Planned,
    index: &Index,
    vault: &Vault,
) -> anyhow::Result<()> {
    let Choice::Incident(incident) = choice else {
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
        planned.request.filter.encrypted = crate::model::EncryptedCopies::MoveAside;
        planned.plan_again(index, vault)?;
    }
    Ok(())
}

/// Step 4's answer read back: where the files go, and what becomes of the
/// encrypted copies.
fn say_where_they_go(planned: &Planned, copies: u64) {
    match &planned.plan.destination {
        Destination::Original => println!("The files will go back to their original place."),
        Destination::Under(dir) => println!(
            "{}",
            wrap(&format!("The files will go into {}.", whole_path(dir)))
        ),
    }
    if copies > 0 {
        println!(
            "{}",
            wrap(match planned.request.filter.encrypted {
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
}

/// The last question: Enter starts.
fn ask_to_start(w: &Wizard<'_>) -> anyhow::Result<bool> {
    w.ask_until(
        "Start now? Press Enter to start, or type n to stop [Y/n]:",
        |answer| match answer.to_ascii_lowercase().as_str() {
            "" | "y" | "yes" => Ok(true),
            "n" | "no" => Ok(false),
            _ => Err("Please press Enter to start, or type n to stop.".to_owned()),
        },
    )
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
