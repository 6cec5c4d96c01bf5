//! The command line: clap definitions, and one file per command.
//!
//! Commands parse, call the library and print; the logic they need lives in
//! the library where tests can reach it.

mod alerts;
mod daemon;
mod doctor;
mod emergency;
mod incidents;
mod interrupt;
mod list;
mod mount;
mod purge;
mod rebuild;
mod report;
mod restore;
mod service;
mod status;
mod sync;
mod verify;
mod versions;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use crate::config::{Config, RawArgs};
use crate::index::{Index, IndexError};
use crate::vault::Vault;
use crate::words::CommandLine;

#[derive(Debug, Parser)]
#[command(
    name = "undelete",
    version,
    about = "A recycle bin for file servers: every file is copied before it can be deleted, and deleted files come back with a report of what was recovered and what was lost."
)]
struct Cli {
    /// The vault folder (default: /var/lib/undelete for root, ~/.local/share/undelete otherwise).
    #[arg(long, global = true, env = "UNDELETE_VAULT", value_name = "DIR")]
    vault: Option<PathBuf>,
    /// A TOML config file (default for root: /etc/undelete/config.toml, if present).
    #[arg(long, global = true, env = "UNDELETE_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

/// `status`'s exit codes, as systemd's tools give theirs (`systemctl status`: 3 for
/// a unit that is not running), so a monitoring script needs no parsing.
const STATUS_EXIT_CODES: &str = "Exit status:
  0  protection is on: the undelete service is running
  1  the status could not be read (no vault here, no permission, a damaged index)
  3  protection is off: the service is not running, or has not started yet";

#[derive(Debug, Subcommand)]
enum Command {
    /// Protect folders: run in the foreground until SIGTERM or SIGINT.
    Daemon(DaemonArgs),
    /// Wait until the daemon has recorded every change made before this call.
    Sync {
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 300, value_name = "SECS")]
        timeout: u64,
        /// Wait also until every copy made by cloning so far is hashed.
        #[arg(long)]
        hashed: bool,
    },
    /// Is protection working? One screen to read out.
    #[command(after_help = STATUS_EXIT_CODES)]
    Status {
        /// Print it as JSON, for programs.
        #[arg(long)]
        json: bool,
    },
    /// Deleted files (the recycle bin); with --all, protected live files too.
    List {
        /// Only files in and below this folder.
        #[arg(long, value_name = "DIR")]
        under: Option<PathBuf>,
        /// Also list files that are still there.
        #[arg(long)]
        all: bool,
        /// Print it as JSON, for programs.
        #[arg(long)]
        json: bool,
    },
    /// Alerts (mass deletions first): open ones, then what became of the others.
    /// `alerts ack ID` says one needs no restore; `alerts test` sends a test message.
    Alerts(alerts::AlertsArgs),
    /// Recent deletion incidents, newest first.
    Incidents {
        /// Print it as JSON, for programs.
        #[arg(long)]
        json: bool,
    },
    /// Bring deleted files back, and report what was recovered and what was lost.
    Restore(restore::RestoreArgs),
    /// The guided restore: step by step, Enter at every question brings back the
    /// most recent deletion.
    Emergency(emergency::EmergencyArgs),
    /// Print a saved restore report: the latest, the one for an incident, or one by name.
    Report {
        /// last (the default), an incident code like K7Q-4MD, or a report's file name.
        #[arg(value_name = "last|CODE|FILE")]
        which: Option<String>,
        /// Print the JSON report instead of the text one.
        #[arg(long)]
        json: bool,
    },
    /// Re-read every copy in the vault and check it is intact.
    Verify {
        /// Print it as JSON, for programs.
        #[arg(long)]
        json: bool,
    },
    /// Every version of a file the vault keeps, and how to bring each one back.
    Versions {
        /// The file (its path, even if it no longer exists).
        path: PathBuf,
        /// Print it as JSON, for programs.
        #[arg(long)]
        json: bool,
    },
    /// Remove copies the retention rules no longer keep (the daemon does this hourly).
    Purge {
        /// Show what would be purged; change nothing.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        retention: RetentionArgs,
    },
    /// Is protection working? Each check OK or PROBLEM, with the fix.
    Doctor {
        /// Print it as JSON, for programs.
        #[arg(long)]
        json: bool,
    },
    /// Install the systemd service, an example settings file and the vault folder.
    InstallService(service::InstallArgs),
    /// Show the vault as read-only folders: a folder per point in time
    /// (@GMT-YYYY.MM.DD-HH.MM.SS, for Windows' Previous Versions through Samba),
    /// incidents/CODE and deleted/. Runs until unmounted (umount DIR) or stopped.
    Mount {
        /// An empty folder to mount on (the service uses /run/undelete/versions).
        dir: PathBuf,
    },
    /// Print the lines a Samba share needs so office users find older versions and
    /// deleted files in Windows Explorer's "Previous Versions".
    SambaConfig {
        /// The share's folder (its `path =`); every protected folder when left out.
        share_path: Option<PathBuf>,
        /// Where the vault is mounted (default: where it is mounted now, or
        /// /run/undelete/versions).
        #[arg(long, value_name = "DIR")]
        mount: Option<PathBuf>,
    },
    /// Rebuild a damaged or lost index from the journal kept in the vault.
    /// The service must be stopped first.
    RebuildIndex {
        /// Print it as JSON, for programs.
        #[arg(long)]
        json: bool,
    },
}

/// The retention rules, overriding the `[retention]` table of the config file.
#[derive(Debug, Args, Clone, Default)]
struct RetentionArgs {
    /// Keep deleted files and older versions this long (default 30d).
    #[arg(long, value_name = "DURATION")]
    keep_deleted: Option<String>,
    /// Keep at most this many older versions of each file (default 10).
    #[arg(long, value_name = "N")]
    keep_versions: Option<u64>,
    /// Purge the oldest copies when the vault grows past this, e.g. 500GB.
    #[arg(long, value_name = "SIZE")]
    max_vault_size: Option<String>,
    /// Purge the oldest copies when the vault's disk has less free than this.
    #[arg(long, value_name = "SIZE")]
    min_free_disk: Option<String>,
}

#[derive(Debug, Args)]
struct DaemonArgs {
    /// A folder to protect (repeatable).
    #[arg(long, value_name = "DIR")]
    protect: Vec<PathBuf>,
    /// Do not copy files matching this pattern (repeatable), e.g. '*.tmp' or 'cache/**'.
    #[arg(long, value_name = "GLOB")]
    exclude: Vec<String>,
    /// Do not copy files larger than this, e.g. 500MB, 2GiB.
    #[arg(long, value_name = "SIZE")]
    max_file_size: Option<String>,
    /// Deletions further apart than this start a new incident (default 60s).
    #[arg(long, value_name = "DURATION")]
    incident_gap: Option<String>,
    /// Alert when this many files are deleted within 5 minutes (default 500).
    #[arg(long, value_name = "N")]
    alert_files: Option<u64>,
    /// Alert when this much is deleted within 5 minutes (default 1GiB).
    #[arg(long, value_name = "SIZE")]
    alert_size: Option<String>,
    /// Alert when this many files are rewritten within 5 minutes in a way that looks
    /// like encryption (default 200).
    #[arg(long, value_name = "N")]
    overwrite_alert_files: Option<u64>,
    /// Alert when the vault grows by more than this percent of its size cap (or,
    /// without one, of its own size, and by 1 GiB at least) within the growth
    /// window (default 25).
    #[arg(long, value_name = "PERCENT")]
    vault_growth_alert: Option<u64>,
    /// The window for --vault-growth-alert (default 1h).
    #[arg(long, value_name = "DURATION")]
    vault_growth_window: Option<String>,
    /// Run this shell command on a mass-deletion alert, and again when it is over
    /// (UNDELETE_EVENT=started, then ended); details are in UNDELETE_* variables.
    #[arg(long, value_name = "COMMAND")]
    alert_command: Option<String>,
    /// Cut off a PC from the file share when it crosses an alert threshold (a mass
    /// deletion or overwrite): off by default, since a false alarm disconnects a
    /// real user (the `[breaker]` settings).
    #[arg(long)]
    breaker: bool,
    /// With --breaker, run this shell command to cut off a PC, instead of
    /// `smbcontrol smbd kill-client-ip ADDRESS` (the PC in UNDELETE_CLIENT_ADDRESS,
    /// UNDELETE_CLIENT_USER and UNDELETE_CLIENT_MACHINE).
    #[arg(long, value_name = "COMMAND")]
    breaker_command: Option<String>,
    /// Where changes are learnt from: fanotify (one mark per filesystem, and who
    /// made each change; root only), inotify (one watch per folder), or auto
    /// (fanotify where allowed, else inotify).
    #[arg(long, value_name = "auto|fanotify|inotify")]
    events: Option<String>,
    #[command(flatten)]
    retention: RetentionArgs,
}

/// The whole program: parse, run, turn the result into an exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Daemon(_)) {
        // `undelete list | head` should end quietly, as other commands do, not panic.
        // SAFETY: called before any other thread exists; restores the default action.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    }
    init_logging();
    match run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("undelete: {}", describe(&err));
            ExitCode::FAILURE
        }
    }
}

/// An error and its causes on one line, each cause said once. The typed errors
/// already name their cause in their own words ("cannot create the folder X: Not
/// a directory"), for the daemon's log; the whole chain printed after it would
/// say the cause a second time.
fn describe(err: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("UNDELETE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .init();
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    // Before the settings are read: installing must work even when they have a mistake.
    if let Command::InstallService(args) = &cli.command {
        return service::run(args);
    }
    let mut raw = RawArgs {
        vault: cli.vault,
        config: cli.config,
        is_root: rustix::process::geteuid().is_root(),
        hold_hashing: std::env::var_os("UNDELETE_HOLD_HASHING").is_some_and(|v| v == "1"),
        home: std::env::var_os("HOME").map(PathBuf::from),
        xdg_data_home: std::env::var_os("XDG_DATA_HOME").map(PathBuf::from),
        ..RawArgs::default()
    };
    if let Command::Daemon(args) = &cli.command {
        raw.protect = args.protect.clone();
        raw.exclude = args.exclude.clone();
        raw.max_file_size = args.max_file_size.clone();
        raw.incident_gap = args.incident_gap.clone();
        raw.alert_files = args.alert_files;
        raw.alert_size = args.alert_size.clone();
        raw.overwrite_alert_files = args.overwrite_alert_files;
        raw.vault_growth_alert = args.vault_growth_alert;
        raw.vault_growth_window = args.vault_growth_window.clone();
        raw.alert_command = args.alert_command.clone();
        raw.breaker = args.breaker;
        raw.breaker_command = args.breaker_command.clone();
        raw.events = args.events.clone();
    }
    let retention = match &cli.command {
        Command::Daemon(args) => Some(&args.retention),
        Command::Purge { retention, .. } => Some(retention),
        _ => None,
    };
    if let Some(r) = retention.cloned() {
        raw.keep_deleted = r.keep_deleted;
        raw.keep_versions = r.keep_versions;
        raw.max_vault_size = r.max_vault_size;
        raw.min_free_disk = r.min_free_disk;
    }
    // The door: from here on, only the checked settings travel inward.
    let config = Config::load(raw)?;
    let vault = config.vault.clone();
    run_command(cli.command, &config).map_err(|err| explain_damaged_index(err, &vault))
}

fn run_command(command: Command, config: &Config) -> anyhow::Result<ExitCode> {
    match command {
        Command::Daemon(_) => daemon::run(config.clone()),
        Command::Sync { timeout, hashed } => sync::run(config, timeout, hashed),
        Command::Status { json } => status::run(config, json),
        Command::List { under, all, json } => list::run(config, under, all, json),
        Command::Verify { json } => verify::run(config, json),
        Command::Incidents { json } => incidents::run(config, json),
        Command::Alerts(args) => alerts::run(config, args),
        Command::Restore(args) => restore::run(config, args),
        Command::Emergency(args) => emergency::run(config, args),
        Command::Report { which, json } => report::run(config, which.as_deref(), json),
        Command::RebuildIndex { json } => rebuild::run(config, json),
        Command::Versions { path, json } => versions::run(config, &path, json),
        Command::Purge { dry_run, .. } => purge::run(config, dry_run),
        Command::Doctor { json } => doctor::run(config, json),
        Command::Mount { dir } => mount::run(config, &dir),
        Command::SambaConfig { share_path, mount } => {
            mount::samba_config(config, share_path.as_deref(), mount.as_deref())
        }
        Command::InstallService(_) => unreachable!("handled before the settings are read"),
    }
}

/// A damaged or missing index, whichever command found it, is explained in plain
/// words with the way back; other errors pass unchanged.
fn explain_damaged_index(err: anyhow::Error, vault: &Path) -> anyhow::Error {
    let Some(problem) = index_damage(&err) else {
        return err;
    };
    let words = format!(
        "undelete: the index of the vault {} is damaged: {problem}. Nothing in the \
         vault is lost: every copy is still there, and the index can be rebuilt from \
         the journal kept in the vault. Stop the undelete service first, then run:",
        vault.display()
    );
    // Wrapped with the prefix `main` prints before it, so the first line fits too.
    let text = crate::words::wrap(&words);
    let text = text.strip_prefix("undelete: ").unwrap_or(&text);
    let command = CommandLine::undelete(vault)
        .with_sudo()
        .arg("rebuild-index");
    anyhow::anyhow!("{text}\n    {command}")
}

/// What is wrong with the index, when `err` says it is damaged or missing.
fn index_damage(err: &anyhow::Error) -> Option<String> {
    err.chain().find_map(|cause| {
        if let Some(e) = cause.downcast_ref::<IndexError>() {
            e.damage()
        } else if let Some(crate::watch::DaemonError::Index(e)) =
            cause.downcast_ref::<crate::watch::DaemonError>()
        {
            e.damage()
        } else if let Some(crate::restore::RestoreError::Index(e)) =
            cause.downcast_ref::<crate::restore::RestoreError>()
        {
            e.damage()
        } else {
            cause
                .downcast_ref::<rusqlite::Error>()
                .and_then(crate::index::sqlite_damage)
        }
    })
}

/// Opens an existing vault and its index for a command, with a message a customer
/// can act on when that is not possible.
fn open_vault(config: &Config) -> anyhow::Result<(Vault, Index)> {
    let vault = open_vault_folder(config)?;
    if is_read_only(vault.root()) {
        // Said once, here: every command that goes on works without writing.
        eprintln!(
            "{}",
            crate::words::wrap(&format!(
                "undelete: the vault {} is on a disk that is now read-only (Linux does \
                 that to a disk it found errors on). Everything in it can still be listed \
                 and brought back, best into a folder on another disk with --to DIR. \
                 Nothing new is recorded meanwhile, and reports are printed, not saved.",
                crate::words::whole_path(vault.root())
            ))
        );
        let index = Index::open_read_only(&vault.index_path())?;
        return Ok((vault, index));
    }
    let index = Index::open_existing(&vault.index_path(), &vault.journal_dir())?;
    Ok((vault, index))
}

/// Whether the disk holding `dir` is mounted read-only.
fn is_read_only(dir: &Path) -> bool {
    rustix::fs::statvfs(dir)
        .is_ok_and(|st| st.f_flag.contains(rustix::fs::StatVfsMountFlags::RDONLY))
}

/// Opens an existing vault folder, without its index.
fn open_vault_folder(config: &Config) -> anyhow::Result<Vault> {
    let root = &config.vault;
    match std::fs::read_dir(root) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            anyhow::bail!(
                "permission denied reading the vault {}; run it with sudo",
                root.display()
            )
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            anyhow::bail!(
                "there is no vault at {}: nothing has been protected with it yet. \
                 Start protection with: undelete daemon --protect DIR",
                root.display()
            )
        }
        Err(e) => {
            return Err(e).with_context(|| format!("cannot open the vault {}", root.display()));
        }
    }
    if !root.join("objects").exists() && !root.join("index.db").exists() {
        return Err(NeverStarted(root.clone()).into());
    }
    Ok(Vault::open_existing(root)?)
}

/// The vault folder is there (`install-service` made it) but the service has never
/// run with it: nothing is protected yet, and the way on is to start it.
#[derive(Debug, thiserror::Error)]
#[error("{}", never_started_words(.0))]
struct NeverStarted(PathBuf);

fn never_started_words(vault: &Path) -> String {
    format!(
        "the undelete service has not started yet, so nothing is protected: the vault \
         {} is still empty. {}",
        crate::words::display_path(vault),
        start_words(vault)
    )
}

/// How to start protecting with the vault at `vault`.
fn start_words(vault: &Path) -> String {
    if vault == Path::new("/var/lib/undelete") {
        "Name the folders to protect (protect = ...) in /etc/undelete/config.toml, then \
         start the service: sudo systemctl enable --now undelete"
            .to_owned()
    } else {
        let command = CommandLine::undelete(vault).arg("daemon --protect DIR");
        format!("Start protection with: {command}")
    }
}

/// A destination given on the command line, made absolute and nothing more: its links
/// and `..` are followed (or refused) by the restore itself, one step at a time,
/// never resolved here where a link could be swapped in after the look.
fn destination(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_owned())
}

/// Makes a path given on the command line absolute, without requiring it to exist
/// (a deleted folder is exactly what people ask about).
fn absolute(path: &Path) -> PathBuf {
    use std::path::Component;
    let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
    // Resolve the longest part that still exists, so /srv/share/../share or a symlinked
    // mount point match what the daemon recorded.
    let parts: Vec<Component> = abs.components().collect();
    let mut existing = parts.len();
    while existing > 0 && !parts[..existing].iter().collect::<PathBuf>().exists() {
        existing -= 1;
    }
    let prefix: PathBuf = parts[..existing].iter().collect();
    let mut out = std::fs::canonicalize(&prefix).unwrap_or(prefix);
    // The rest no longer exists, so it holds no links: its `..` are taken by name.
    // Left in, they would make the path match nothing, or make `--to` create folders
    // that were only named to be climbed out of.
    for part in &parts[existing..] {
        match part {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cause_already_in_the_message_is_not_said_twice() {
        let io = std::io::Error::from_raw_os_error(libc::EEXIST);
        let err = anyhow::Error::new(crate::vault::VaultError::Io {
            doing: "create the folder",
            path: "/v".into(),
            source: io,
        })
        .context("cannot start");
        assert_eq!(
            describe(&err),
            "cannot start: cannot create the folder /v: File exists (os error 17)"
        );
    }
}
