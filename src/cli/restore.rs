//! `undelete restore`: plan, show or carry out, report.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use crate::announce::Announcer;
use crate::clock;
use crate::config::Config;
use crate::index::{Index, RestoreFilter};
use crate::report::{RestoreReport, display_path};
use crate::restore::{self, Destination, RestorePlan};
use crate::vault::Vault;

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
    /// The same request as command-line words, for "to repeat this restore".
    pub command: String,
}

impl Request {
    pub fn from_args(args: &RestoreArgs, config: &Config, index: &Index) -> anyhow::Result<Self> {
        let now = clock::now();
        let time = |t: &Option<String>| t.as_deref().map(|t| clock::parse(t, now)).transpose();
        let mut scopes: Vec<PathBuf> = args.paths.iter().map(|p| super::absolute(p)).collect();
        if let Some(under) = &args.under {
            scopes.push(super::absolute(under));
        }
        let incident = match &args.incident {
            Some(code) => Some(super::incidents::find(index, code)?.id),
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
            incident,
            as_of: time(&args.as_of)?,
        };
        let destination = match &args.to {
            Some(dir) => Destination::Under(super::absolute(dir)),
            None => Destination::Original,
        };
        // Relative times are written out as the moments they meant, so the command
        // repeats this restore rather than a different one later.
        let mut words = vec![
            "undelete".to_owned(),
            "--vault".to_owned(),
            quote(&config.vault),
            "restore".to_owned(),
        ];
        for p in &args.paths {
            words.push(quote(&super::absolute(p)));
        }
        if let Some(under) = &args.under {
            words.extend(["--under".to_owned(), quote(&super::absolute(under))]);
        }
        if let Some(code) = &args.incident {
            words.extend(["--incident".to_owned(), code.to_uppercase()]);
        }
        for (flag, t) in [
            ("--deleted-after", filter.deleted_after),
            ("--deleted-before", filter.deleted_before),
            ("--as-of", filter.as_of),
        ] {
            if let Some(t) = t {
                words.extend([flag.to_owned(), clock::rfc3339_exact(t)]);
            }
        }
        if let Destination::Under(dir) = &destination {
            words.extend(["--to".to_owned(), quote(dir)]);
        }
        Ok(Self {
            filter,
            destination,
            command: words.join(" "),
        })
    }

    /// Where the files go, in words.
    pub fn destination_words(&self) -> String {
        match &self.destination {
            Destination::Original => "their original place".to_owned(),
            Destination::Under(dir) => display_path(dir),
        }
    }
}

/// Quotes a path for a POSIX shell; bytes that are not UTF-8 use `$'\xNN'`.
pub fn quote(path: &std::path::Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    let bytes = path.as_os_str().as_bytes();
    let plain = |b: &u8| b.is_ascii_alphanumeric() || b"/._-+,:@%".contains(b);
    if !bytes.is_empty() && bytes.iter().all(plain) {
        return String::from_utf8_lossy(bytes).into_owned();
    }
    match std::str::from_utf8(bytes) {
        Ok(text) if !text.chars().any(|c| c.is_control()) => {
            format!("'{}'", text.replace('\'', "'\\''"))
        }
        _ => {
            let mut out = String::from("$'");
            for &b in bytes {
                match b {
                    b'\'' | b'\\' => out.push_str(&format!("\\{}", b as char)),
                    0x20..=0x7e => out.push(b as char),
                    _ => out.push_str(&format!("\\x{b:02x}")),
                }
            }
            out.push('\'');
            out
        }
    }
}

pub fn run(config: &Config, args: RestoreArgs) -> anyhow::Result<ExitCode> {
    let interrupt = Interrupt::install()?;
    let (vault, index) = super::open_vault(config)?;
    let request = Request::from_args(&args, config, &index)?;
    let plan = restore::plan(&index, &vault, &request.filter, &request.destination)?;
    if plan.files().next().is_none() {
        if args.json {
            let empty = carry_out(&plan, &vault, &request, None, false)?;
            println!("{}", serde_json::to_string_pretty(&empty.json())?);
            return Ok(ExitCode::FAILURE);
        }
        println!("Nothing matches: no deleted files were found for that selection.");
        println!("(See what can be brought back with: undelete list)");
        return Ok(ExitCode::FAILURE);
    }
    let run = (!args.dry_run).then_some(&interrupt);
    let report = carry_out(&plan, &vault, &request, run, !args.json)?;
    if let Some(path) = &args.report {
        std::fs::write(path, serde_json::to_string_pretty(&report.json())?)?;
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report.json())?);
    } else {
        print!("{}", report.text());
    }
    if !args.dry_run {
        let saved = report.save(&vault.reports_dir())?;
        if args.json {
            eprintln!("Report saved: {}", saved.display());
        } else {
            println!("Report saved: {}", saved.display());
        }
    }
    Ok(exit_code(&report))
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
/// run) it only reports the plan.
pub fn carry_out(
    plan: &RestorePlan,
    vault: &Vault,
    request: &Request,
    run: Option<&Interrupt>,
    show_progress: bool,
) -> anyhow::Result<RestoreReport> {
    let started_at = clock::now();
    let dry_run = run.is_none();
    let files = if let Some(interrupt) = run {
        interrupt.restore_starts();
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
        // The daemon, if one runs, then records the restored files without reading them.
        let announcer = Announcer::connect(&vault.socket_path());
        let results = restore::execute(
            plan,
            vault,
            &progress,
            interrupt.stop_flag(),
            announcer.as_ref(),
        )?;
        bar.finish_and_clear();
        results
    } else {
        plan.as_results()
    };
    Ok(RestoreReport {
        files,
        dry_run,
        started_at,
        finished_at: clock::now(),
        destination: request.destination_words(),
        command: request.command.clone(),
    })
}
