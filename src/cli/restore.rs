//! `undelete restore`: plan, show or carry out, report.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use crate::announce::Announcer;
use crate::clock;
use crate::config::Config;
use crate::index::Index;
use crate::model::{EncryptedCopies, RestoreFilter};
use crate::report::RestoreReport;
use crate::restore::{self, Destination, RestorePlan};
use crate::vault::Vault;
use crate::words::{Repeat, Rerun};
use crate::words::{display_path, wrap};

use super::interrupt::Interrupt;

#[derive(Debug, Args, Clone, Default)]
pub struct RestoreArgs {
    /// Files or folders to bring back (their paths before deletion).
    #[arg(value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// Everything deleted in and below this folder.
    #[arg(long, value_name = "DIR")]
    pub under: Option<PathBuf>,
    /// Everything deleted in this incident (see `undelete incidents`).
    #[arg(long, value_name = "CODE")]
    pub incident: Option<String>,
    /// Only files deleted at or after this time (2026-11-22T02:00:00Z, "2026-11-22 02:00", 3h).
    #[arg(long, value_name = "T")]
    pub deleted_after: Option<String>,
    /// Only files deleted before this time.
    #[arg(long, value_name = "T")]
    pub deleted_before: Option<String>,
    /// Bring back the folder as it was at this time (every file that existed then).
    /// It selects by time alone, so the deletion filters do not combine with it.
    #[arg(long, value_name = "T", conflicts_with_all = ["incident", "deleted_after", "deleted_before"])]
    pub as_of: Option<String>,
    /// Every deleted file of every protected folder (a restore names what it brings
    /// back: this is the way to say "everything").
    #[arg(long, conflicts_with_all = ["paths", "under", "incident", "as_of"])]
    pub all_deleted: bool,
    /// Also bring back lock files of programs (git's index.lock, Office's ~$ files),
    /// which are left out by default: brought back, they tell their program that
    /// the document is still open.
    #[arg(long)]
    pub include_lock_files: bool,
    /// With --incident of files encrypted: move the encrypted copies into a folder
    /// of their own, "Encrypted files (incident CODE)" in the protected folder, at
    /// the same paths below it, so each original takes its own name again. By
    /// default they are left where they are.
    #[arg(long, requires = "incident", conflicts_with = "delete_encrypted")]
    pub move_encrypted_aside: bool,
    /// With --incident of files encrypted: delete the encrypted copies (the vault
    /// keeps a copy of each, as of any deleted file). Never done without this flag.
    #[arg(long, requires = "incident")]
    pub delete_encrypted: bool,
    /// Put the files under this folder instead of their original place.
    #[arg(long, value_name = "DIR")]
    pub to: Option<PathBuf>,
    /// Show what would be done; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Also write the JSON report to this file.
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// Print the JSON report instead of the text one.
    #[arg(long)]
    pub json: bool,
}

/// A restore request, with times resolved and paths made absolute.
pub struct Request {
    pub filter: RestoreFilter,
    pub destination: Destination,
    /// The incident's code as the index spells it (`RGA-HY8`, however it was typed).
    pub incident_code: Option<String>,
    /// The code of the overwrite incident it brings back as it was before, if so.
    pub as_before: Option<String>,
    /// What the circuit breaker did about the incident's PC, for the report.
    pub cut_off: Option<crate::model::CutOff>,
    /// The paths asked for, made absolute.
    paths: Vec<PathBuf>,
    under: Option<PathBuf>,
    all_deleted: bool,
}

/// A restore without a selection would bring back every deliberate deletion of the
/// last weeks into the customer's folders: it is refused, and the choices named.
#[derive(Debug, thiserror::Error)]
#[error(
    "restore needs to be told what to bring back; nothing was changed. Choose one of:\n\
     \x20 PATH...                the files or folders, by their path before deletion\n\
     \x20 --under DIR            everything deleted in and below a folder\n\
     \x20 --incident CODE        one deletion incident (see: undelete incidents)\n\
     \x20 --deleted-after T      what was deleted since a time (and --deleted-before T)\n\
     \x20 --as-of T              the folders as they were at a time\n\
     \x20 --all-deleted          every deleted file in every protected folder"
)]
pub struct NoSelection;

impl RestoreArgs {
    /// Whether it says what to bring back.
    fn selects(&self) -> bool {
        !self.paths.is_empty()
            || self.under.is_some()
            || self.incident.is_some()
            || self.deleted_after.is_some()
            || self.deleted_before.is_some()
            || self.as_of.is_some()
            || self.all_deleted
    }
}

impl Request {
    pub fn from_args(args: &RestoreArgs, index: &Index) -> anyhow::Result<Self> {
        if !args.selects() {
            return Err(NoSelection.into());
        }
        let now = clock::now();
        let time = |t: &Option<String>| t.as_deref().map(|t| clock::parse(t, now)).transpose();
        let paths: Vec<PathBuf> = args.paths.iter().map(|p| super::absolute(p)).collect();
        let under = args.under.as_deref().map(super::absolute);
        let mut scopes = paths.clone();
        scopes.extend(under.clone());
        let incident = match &args.incident {
            Some(code) => Some(super::incidents::find(index, code)?),
            None => None,
        };
        let (deleted_after, deleted_before) =
            (time(&args.deleted_after)?, time(&args.deleted_before)?);
        if let (Some(after), Some(before)) = (deleted_after, deleted_before)
            && after >= before
        {
            anyhow::bail!(
                "--deleted-after ({}) is not before --deleted-before ({}): no deletion can match",
                clock::local(after),
                clock::local(before)
            );
        }
        let filter = RestoreFilter {
            scopes,
            deleted_after,
            deleted_before,
            incident: incident.as_ref().map(|i| i.id),
            as_of: time(&args.as_of)?,
            include_lock_files: args.include_lock_files,
            encrypted: if args.move_encrypted_aside {
                EncryptedCopies::MoveAside
            } else if args.delete_encrypted {
                EncryptedCopies::Delete
            } else {
                EncryptedCopies::Leave
            },
        };
        let destination = match &args.to {
            Some(dir) => Destination::Under(super::destination(dir)),
            None => Destination::Original,
        };
        Ok(Self {
            filter,
            destination,
            as_before: incident
                .as_ref()
                .filter(|i| i.kind.is_overwrite())
                .map(|i| i.code.clone()),
            cut_off: incident.as_ref().and_then(|i| i.cut_off.clone()),
            incident_code: incident.map(|i| i.code),
            paths,
            under,
            all_deleted: args.all_deleted,
        })
    }

    /// The command that repeats this restore without questions, to `destination`
    /// (the plan's: where the files really go), for both commands.
    pub fn command(&self, vault: &Path, rerun: Rerun, destination: &Destination) -> String {
        Repeat {
            rerun,
            paths: &self.paths,
            under: self.under.as_deref(),
            incident: self.incident_code.as_deref(),
            all_deleted: self.all_deleted,
            deleted_after: self.filter.deleted_after,
            deleted_before: self.filter.deleted_before,
            as_of: self.filter.as_of,
            include_lock_files: self.filter.include_lock_files,
            encrypted: match self.filter.encrypted {
                EncryptedCopies::Leave => None,
                EncryptedCopies::MoveAside => Some("--move-encrypted-aside"),
                EncryptedCopies::Delete => Some("--delete-encrypted"),
            },
            to: match destination {
                Destination::Under(dir) => Some(dir),
                Destination::Original => None,
            },
        }
        .command(vault)
    }
}

/// Where the files go, in words.
pub fn destination_words(destination: &Destination) -> String {
    match destination {
        Destination::Original => "their original place".to_owned(),
        Destination::Under(dir) => display_path(dir),
    }
}

pub fn run(config: &Config, args: RestoreArgs) -> anyhow::Result<ExitCode> {
    let interrupt = Interrupt::install()?;
    let (vault, index) = super::open_vault(config)?;
    let request = Request::from_args(&args, &index)?;
    // Taken before the plan, which would be out of date if another restore were
    // still writing; a dry run changes nothing and needs none.
    let lock = match args.dry_run {
        true => None,
        false => Some(lock_restores(&vault)?),
    };
    let plan = restore::plan(&index, &vault, &request.filter, &request.destination)?;
    let command = request.command(vault.root(), Rerun::Restore, &plan.destination);
    if plan.files().next().is_none() {
        if args.json {
            let empty = carry_out(&plan, &vault, &request, command, None, false)?;
            println!("{}", serde_json::to_string_pretty(&empty.json())?);
            return Ok(ExitCode::FAILURE);
        }
        println!("Nothing matches: no deleted files were found for that selection.");
        match never_protected(&index, &request.filter.scopes)? {
            Some(words) => println!("{}", wrap(&words)),
            None => println!("(See what can be brought back with: undelete list)"),
        }
        return Ok(ExitCode::FAILURE);
    }
    let run = (!args.dry_run).then_some(&interrupt);
    let report = carry_out(&plan, &vault, &request, command, run, !args.json)?;
    let saved = (!args.dry_run).then(|| super::report::save(&report, &vault, config));
    if let Some(saved) = &saved
        && plan.destination == Destination::Original
    {
        note_brought_back(&vault, &request, &report, saved.as_deref().ok());
    }
    // The files are back and noted: the next restore may start. Printing comes after,
    // since a reader that is slow or gone (a pager, a full pipe) must not hold it.
    drop(lock);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report.json())?);
    } else {
        print!("{}", report.text());
    }
    if let Some(saved) = &saved {
        if args.json {
            eprintln!("{}", super::report::saved_words(saved));
        } else {
            println!("{}", super::report::saved_words(saved));
        }
    }
    // Last: the files are back and the report is shown whatever becomes of this copy.
    if let Some(path) = &args.report {
        let json = serde_json::to_string_pretty(&report.json())?;
        if let Err(problem) = restore::write_replacing(path, json.as_bytes()) {
            eprintln!(
                "{}",
                wrap(&format!(
                    "undelete: the JSON report could not be written to {}: {problem}.",
                    crate::words::whole_path(path)
                ))
            );
        }
    }
    Ok(exit_code(&report))
}

/// Takes the vault's restore lock, saying plainly why it waits when another
/// restore holds it.
pub fn lock_restores(vault: &Vault) -> anyhow::Result<restore::RestoreLock> {
    restore::lock(vault.root(), || {
        eprintln!(
            "Another restore from this vault is running. This one waits until it has \
             finished, then brings back only what is still missing…"
        );
    })
    .with_context(|| {
        format!(
            "cannot lock the vault {} for a restore",
            vault.root().display()
        )
    })
}

/// When a folder asked for was never inside a protected folder: says so, naming the
/// protected folders, so nobody searches for files that were never copied.
fn never_protected(index: &Index, scopes: &[PathBuf]) -> anyhow::Result<Option<String>> {
    let roots = index.roots()?;
    let outside: Vec<&PathBuf> = scopes
        .iter()
        .filter(|s| {
            !roots
                .iter()
                .any(|r| s.starts_with(&r.path) || r.path.starts_with(s))
        })
        .collect();
    let Some(first) = outside.first() else {
        return Ok(None);
    };
    let protected: Vec<String> = roots
        .iter()
        .filter(|r| r.active)
        .map(|r| crate::words::whole_path(&r.path))
        .collect();
    // Only ever wrapped for the terminal: the paths are marked to be kept whole.
    Ok(Some(format!(
        "{} was never in a protected folder, so nothing in it was ever copied. \
         The protected folders are: {}.",
        crate::words::whole_path(first),
        if protected.is_empty() {
            "none yet".to_owned()
        } else {
            protected.join(", ")
        }
    )))
}

/// Notes in the vault which files this restore brought back to their place (a
/// restore elsewhere leaves them missing there): the deleted ones, and those of an
/// overwrite incident brought back as they were before it. So `status` and `list`
/// count what is still missing and an incident all back ends its alert. The files
/// are on disk by now (the restore flushed them before its report). Best effort:
/// they are back either way, and a vault that cannot take the note (read only, say)
/// is told in one sentence.
pub fn note_brought_back(
    vault: &Vault,
    request: &Request,
    report: &RestoreReport,
    saved: Option<&std::path::Path>,
) {
    use crate::report::Outcome;
    let back = report
        .files
        .iter()
        .filter(|f| matches!(f.outcome, Outcome::Recovered | Outcome::AlreadyPresent));
    let deleted: Vec<(PathBuf, i64)> = back
        .clone()
        .filter_map(|f| Some((f.path.clone(), f.deleted_at?)))
        .collect();
    let mut amendments = crate::amend::Amendment::restored(&deleted, saved);
    if let Some(code) = &request.as_before {
        let files: Vec<PathBuf> = back.map(|f| f.path.clone()).collect();
        amendments.extend(crate::amend::Amendment::restored_as_before(
            code, &files, saved,
        ));
    }
    for amendment in amendments {
        if let Err(e) = crate::amend::make(vault, &amendment) {
            eprintln!(
                "{}",
                crate::words::wrap(&format!(
                    "Note: the files are back, but the vault could not record it ({e}), so \
                     status still counts them as deleted."
                ))
            );
            return;
        }
    }
}

/// 0 when all that could be done was done, 130 when stopped by Ctrl-C (as shells
/// report it), 1 otherwise.
pub fn exit_code(report: &RestoreReport) -> ExitCode {
    if report.counts().stopped > 0 {
        ExitCode::from(130)
    } else if report.complete() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Executes the plan, with a progress bar on a terminal; without `run` (a dry
/// run) it only reports the plan. `command` is the one that repeats it.
pub fn carry_out(
    plan: &RestorePlan,
    vault: &Vault,
    request: &Request,
    command: String,
    run: Option<&Interrupt>,
    show_progress: bool,
) -> anyhow::Result<RestoreReport> {
    let started_at = clock::now();
    let dry_run = run.is_none();
    let (files, encrypted) = if let Some(interrupt) = run {
        interrupt.restore_starts();
        // The daemon, if one runs, is told the mark of this restore's own names first,
        // then records the restored files without reading them.
        let mark = crate::names::Mark::new();
        let announcer = Announcer::connect(&vault.socket_path(), mark);
        // First, so that an original can take its own name again.
        let encrypted = restore::set_aside(plan, vault, mark, &|| {
            // Best effort: without a daemon nothing needs to see the folders.
            let _ = crate::control::request(
                &vault.socket_path(),
                "SYNC",
                std::time::Duration::from_secs(60),
            );
        });
        let total = plan.files().count() as u64;
        let bar = if show_progress && std::io::IsTerminal::is_terminal(&std::io::stderr()) {
            let bar = indicatif::ProgressBar::new(total);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "Restoring {bar:40} {pos}/{len} files ({eta} left)",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            bar
        } else {
            indicatif::ProgressBar::hidden()
        };
        let progress = |n: u64| bar.inc(n);
        let results = restore::execute(
            plan,
            vault,
            &progress,
            interrupt.stop_flag(),
            announcer.as_ref(),
            mark,
        );
        // The daemon has seen every change this restore made before its mark stops
        // being the restore's: its last renames may still be in the kernel's queue.
        if announcer.is_some() {
            let _ = crate::control::request(
                &vault.socket_path(),
                "SYNC",
                std::time::Duration::from_secs(60),
            );
        }
        drop(announcer);
        let results = results?;
        bar.finish_and_clear();
        (results, encrypted)
    } else {
        (plan.as_results(), plan.encrypted_as_results())
    };
    Ok(RestoreReport {
        files,
        dry_run,
        started_at,
        finished_at: clock::now(),
        destination: destination_words(&plan.destination),
        command,
        incident: request.incident_code.clone(),
        as_before: plan.as_before,
        encrypted,
        cut_off: request.cut_off.clone(),
    })
}
