//! `undelete emergency`: the guided restore, for a frightened customer with a
//! technician on the phone.
//!
//! Five numbered steps in short sentences. Pressing Enter at every question
//! restores the most recent incident to its original place, never overwriting
//! anything. Every choice has a flag, so `--yes` runs it without questions; with
//! no terminal and no `--yes` it stops at once and names the flags. Plain
//! numbered prompts rather than a menu crate: they read the same over the phone
//! and in a log as on the screen.

use std::io::{self, BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use super::interrupt::Interrupt;
use super::restore::{Request, RestoreArgs, carry_out, exit_code, quote};
use crate::clock;
use crate::config::Config;
use crate::control;
use crate::index::{Incident, Index, RestoreFilter};
use crate::report::{bytes, count, display_path, files, wrap};
use crate::restore::{self, Destination};

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
    /// Do not ask anything: take the defaults and the choices given as flags.
    #[arg(long)]
    yes: bool,
}

/// What the customer chose to bring back.
enum Choice {
    Incident(Incident),
    Folder {
        under: PathBuf,
        since: Option<String>,
    },
}

struct Wizard {
    interactive: bool,
    step: u32,
}

impl Wizard {
    fn step(&mut self, title: &str) {
        self.step += 1;
        println!();
        println!("Step {} of {STEPS}: {title}", self.step);
        println!("{}", "-".repeat(11 + title.len() + 1));
    }

    /// Asks a question; Enter gives the empty answer. Without questions, answers "".
    fn ask(&self, question: &str) -> anyhow::Result<String> {
        if !self.interactive {
            return Ok(String::new());
        }
        print!("{question} ");
        io::stdout().flush()?;
        let mut line = String::new();
        if io::stdin().lock().read_line(&mut line)? == 0 {
            anyhow::bail!("no answer (input closed); nothing was changed");
        }
        Ok(line.trim().to_owned())
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

    w.step("What was deleted?");
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
        ..RestoreArgs::default()
    };
    let mut request = Request::from_args(&restore_args, config, &index)?;
    let mut plan = restore::plan(&index, &vault, &request.filter, &request.destination)?;
    let totals = plan.totals();
    if totals.files == 0 {
        println!("No deleted files were found for that choice.");
        println!("Nothing was changed. Try again and choose another folder or time.");
        return Ok(ExitCode::FAILURE);
    }
    println!(
        "{} deleted. {} can come back ({}).",
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
    };
    for (reason, group) in preview.lost_by_reason() {
        println!("{} cannot come back: {reason}.", files(group.len() as u64));
    }
    let destination = plan
        .items
        .first()
        .map(|i| i.base.clone())
        .unwrap_or_default();
    // The folder may be gone with the files: the disk is that of its nearest parent.
    let on_disk = destination.ancestors().find(|p| p.exists());
    if let Some(free) = crate::vault::free_space(on_disk.unwrap_or(std::path::Path::new("/"))) {
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
            match w.ask("Your choice [1]:")?.as_str() {
                "" | "1" => Destination::Original,
                "2" => {
                    let dir = w.ask("Type the new folder's full path:")?;
                    if dir.is_empty() {
                        anyhow::bail!("no folder given; nothing was changed");
                    }
                    Destination::Under(super::absolute(std::path::Path::new(&dir)))
                }
                other => anyhow::bail!("{other:?} is not one of the choices; nothing was changed"),
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
        request = Request::from_args(&restore_args, config, &index)?;
        request.filter = selection;
        plan = restore::plan(&index, &vault, &request.filter, &request.destination)?;
    }
    match &destination {
        Destination::Original => println!("The files will go back to their original place."),
        Destination::Under(dir) => println!("The files will go into {}.", display_path(dir)),
    }
    let answer = w.ask("Start now? Press Enter to start, or type n to stop [Y/n]:")?;
    if answer.eq_ignore_ascii_case("n") || answer.eq_ignore_ascii_case("no") {
        println!("Stopped. Nothing was changed.");
        return Ok(ExitCode::FAILURE);
    }

    w.step("Bringing the files back");
    let report = carry_out(&plan, &vault, &request, Some(&interrupt), true)?;
    let saved = report.save(&vault.reports_dir())?;
    let c = report.counts();
    println!();
    println!("{}", wrap(&report.summary()));
    for (reason, group) in report.lost_by_reason() {
        println!();
        println!("Not recovered, {reason}:");
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
    if c.beside > 0 {
        println!();
        println!(
            "{} restored beside a newer file with the same name (see the report).",
            files(c.beside)
        );
    }
    println!();
    println!("The full report is saved in:");
    println!("  {}", saved.display());
    println!("To do exactly this again without questions:");
    println!(
        "  {}",
        repeat_command(config, &restore_args, &request.filter)
    );
    println!("{}", wrap(&report.verdict()));
    Ok(exit_code(&report))
}

fn choose_what(
    w: &mut Wizard,
    index: &Index,
    args: &EmergencyArgs,
    now: i64,
) -> anyhow::Result<Choice> {
    if let Some(code) = &args.incident {
        let incident = super::incidents::find(index, code)?;
        println!("Chosen: {}", super::incidents::describe(&incident, now));
        println!("(incident code {})", incident.code);
        return Ok(Choice::Incident(incident));
    }
    if let Some(under) = &args.under {
        println!(
            "Chosen: files deleted from {}",
            display_path(&super::absolute(under))
        );
        return Ok(Choice::Folder {
            under: super::absolute(under),
            since: args.deleted_after.clone(),
        });
    }
    let recent = index.incidents(CHOICES)?;
    if recent.is_empty() {
        println!("No deletions have been recorded.");
        if !w.interactive {
            anyhow::bail!("nothing to restore; nothing was changed");
        }
        return ask_folder(w);
    }
    println!("These are the most recent deletions, newest first:");
    for (n, incident) in recent.iter().enumerate() {
        println!("  {}) {}", n + 1, super::incidents::describe(incident, now));
        match super::incidents::partly_recoverable(incident) {
            Some(note) => println!("     {note}; incident code {}", incident.code),
            None => println!("     incident code {}", incident.code),
        }
    }
    println!("  s) Something else: search by a file or folder name.");
    println!("  f) Something else: type a folder and a time.");
    let answer = w.ask("Which one? Press Enter for 1:")?;
    match answer.as_str() {
        "" => Ok(Choice::Incident(recent[0].clone())),
        "f" | "F" => ask_folder(w),
        "s" | "S" => search(w, index, now),
        n => match n.parse::<usize>() {
            Ok(n) if (1..=recent.len()).contains(&n) => Ok(Choice::Incident(recent[n - 1].clone())),
            _ => anyhow::bail!("{n:?} is not one of the choices; nothing was changed"),
        },
    }
}

/// For a customer who remembers a name but not where it was: the folders holding
/// deleted files whose name (or folder's name) contains the text.
fn search(w: &mut Wizard, index: &Index, now: i64) -> anyhow::Result<Choice> {
    let text = w.ask("Type part of a file or folder name:")?;
    if text.is_empty() {
        anyhow::bail!("no name given; nothing was changed");
    }
    let found = folders_matching(index, &text)?;
    if found.is_empty() {
        anyhow::bail!("no deleted file or folder has {text:?} in its name; nothing was changed");
    }
    println!("Deleted files matching {text:?}, by folder:");
    for (n, hit) in found.iter().take(CHOICES).enumerate() {
        println!(
            "  {}) {} — {} deleted, the last {}",
            n + 1,
            display_path(&hit.folder),
            files(hit.files),
            clock::spoken(hit.last_deleted, now)
        );
    }
    let answer = w.ask("Which one? Press Enter for 1:")?;
    let pick = match answer.as_str() {
        "" => 0,
        n => match n.parse::<usize>() {
            Ok(n) if (1..=found.len().min(CHOICES)).contains(&n) => n - 1,
            _ => anyhow::bail!("{n:?} is not one of the choices; nothing was changed"),
        },
    };
    Ok(Choice::Folder {
        under: found[pick].folder.clone(),
        since: None,
    })
}

struct Hit {
    folder: PathBuf,
    files: u64,
    last_deleted: i64,
}

/// Groups matching deleted files by the folder to restore: the folder whose own
/// name matches, or else the file's folder. Most recently deleted first.
fn folders_matching(index: &Index, text: &str) -> anyhow::Result<Vec<Hit>> {
    let needle = text.to_lowercase();
    let matches = |name: &std::ffi::OsStr| name.to_string_lossy().to_lowercase().contains(&needle);
    let mut by_folder: std::collections::BTreeMap<PathBuf, Hit> = Default::default();
    let deleted = index.select(&crate::index::Selection::default())?;
    for v in deleted
        .iter()
        .filter(|v| v.observed.kind == crate::index::EntryKind::File)
    {
        let folder = if v.path.file_name().is_some_and(matches) {
            v.path.parent().map(PathBuf::from)
        } else {
            v.path
                .ancestors()
                .skip(1)
                .find(|a| a.file_name().is_some_and(matches))
                .map(PathBuf::from)
        };
        let (Some(folder), Some(at)) = (folder, v.deleted_at) else {
            continue;
        };
        let hit = by_folder.entry(folder.clone()).or_insert(Hit {
            folder,
            files: 0,
            last_deleted: at,
        });
        hit.files += 1;
        hit.last_deleted = hit.last_deleted.max(at);
    }
    let mut hits: Vec<Hit> = by_folder.into_values().collect();
    hits.sort_by_key(|h| std::cmp::Reverse(h.last_deleted));
    Ok(hits)
}

fn ask_folder(w: &mut Wizard) -> anyhow::Result<Choice> {
    let folder = w.ask("Type the full path of the folder the files were in:")?;
    if folder.is_empty() {
        anyhow::bail!("no folder given; nothing was changed");
    }
    let since = w.ask("Since when? For example 2h, 1d or \"2026-11-22 02:00\" [1d]:")?;
    Ok(Choice::Folder {
        under: super::absolute(std::path::Path::new(&folder)),
        since: Some(if since.is_empty() {
            "1d".to_owned()
        } else {
            since
        }),
    })
}

/// The non-interactive command that repeats the chosen restore.
/// Times are the moments the selection used, so a relative "1d" repeats this
/// restore rather than a later one.
fn repeat_command(config: &Config, args: &RestoreArgs, filter: &RestoreFilter) -> String {
    let mut words = vec![
        "undelete".to_owned(),
        "--vault".to_owned(),
        quote(&config.vault),
        "emergency".to_owned(),
        "--yes".to_owned(),
    ];
    if let Some(code) = &args.incident {
        words.extend(["--incident".to_owned(), code.clone()]);
    }
    if let Some(under) = &args.under {
        words.extend(["--under".to_owned(), quote(under)]);
    }
    if let Some(at) = filter.deleted_after {
        words.extend(["--deleted-after".to_owned(), clock::rfc3339_exact(at)]);
    }
    if let Some(to) = &args.to {
        words.extend(["--to".to_owned(), quote(to)]);
    }
    words.join(" ")
}
