//! The daemon: watches the protected folders, copies every file into the vault
//! before it can be deleted, and records versions, deletions and files it could
//! not copy in the index.
//!
//! The event source (`whole_fs` or `inotify`) converts the kernel's events into `FsEvent` on
//! its own thread and hands them to one channel; everything else happens on the
//! loop's thread, in batches, one transaction each. Events are treated as hints: the loop looks at the
//! path on disk and brings the index up to date with what it finds, so a lost
//! or reordered event costs a rescan, never a wrong record. Each folder's watch
//! is added before the walk reads it, so nothing that changes during a scan is
//! missed. Folders and files are reached by descriptor (`tree`), never through
//! a symlink.
//!
//! By job: `serve` is the loop and its commit policy, `apply` what each event
//! means (`renames` for renames and exchanges, `dirty` the paths left to look
//! at), `look` looking at paths, walks and scans,
//! `incidents` the incidents and alerts (`alert` runs their commands and
//! e-mails, `breaker` cuts off a PC that crosses a threshold), `socket` the control socket's server side, `hasher` the naming of
//! cloned copies by their hash, later and at low priority. `event` is the daemon's
//! own event type and what it asks of a source; `whole_fs` (over the wrapper
//! `fanotify`) and `inotify` are the two sources, chosen at start (`start_source`).
//!
//! It never restores anything.

pub mod alert;
mod apply;
mod breaker;
mod capture;
mod dirty;
mod event;
mod fanotify;
mod hasher;
mod identify;
mod incidents;
mod inotify;
mod look;
mod own;
mod renames;
mod serve;
mod socket;
mod sync;
#[cfg(test)]
mod test_disk;
mod tree;
mod whole_fs;

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, Sender};
use std::time::{Duration, Instant};

use crate::announce::Announced;
use crate::clock;
use crate::config::Config;
use crate::config::Events;
use crate::index::MetaKey;
use crate::index::{Index, IndexError};
use crate::model::EventSourceNote;
use crate::model::Root;
use crate::retention::PurgeAsk;
use crate::vault::{LockError, Vault, VaultError, WriterLock};

pub use event::{Msg, SyncAnswer};

use dirty::Dirty;
use event::{Held, Source, WatchError};
use inotify::Inotify;
use sync::Syncs;
use whole_fs::WholeFs;

/// How many messages one batch (one transaction) takes at most.
const BATCH: usize = 8192;
/// How many paths are looked at together; the files among them are copied in parallel.
const LOOK_CHUNK: usize = 256;
/// How many paths a scan looks at between commits, so a long scan's work is kept
/// if the daemon is killed, and others can read the index meanwhile.
const SCAN_COMMIT_EVERY: usize = 2000;
/// How many recorded paths a scan checks for deletions at a time.
const SCAN_PAGE: usize = 4096;
/// How long the loop sleeps when idle before housekeeping.
const TICK: Duration = Duration::from_secs(1);
/// With changes recorded but not committed, how long the loop waits for more before
/// committing (see `serve`).
const LINGER: Duration = Duration::from_millis(10);
/// The longest a transaction stays open while changes keep coming (see `serve`).
const GROUP_COMMIT: Duration = Duration::from_millis(250);
/// How often the daemon records that it is alive (the "last seen" of files
/// found deleted after it was down).
const HEARTBEAT: Duration = Duration::from_secs(10);
/// With part of the tree unwatched (inotify limit) or the vault full, rescan this often.
const FALLBACK_SCAN: Duration = Duration::from_secs(300);
/// How often the retention rules are applied.
const PURGE_EVERY: Duration = Duration::from_secs(3600);
/// With folders left unwatched by the watch limit, how often the limit is read again.
const LIMIT_CHECK: Duration = Duration::from_secs(5);
/// How long a rename explains a remove event for its old path (see `removed`).
const RENAME_EXPLAINS: Duration = Duration::from_secs(10);
/// A remove event this soon after a scan already recorded the deletion is the same deletion.
const DUPLICATE_REMOVAL_NS: i64 = 10 * 60 * 1_000_000_000;

/// Errors that stop the daemon. Everything else is logged and survived.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Vault(#[from] VaultError),
    #[error(transparent)]
    Index(#[from] IndexError),
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error("cannot open the control socket {path}: {source}")]
    Socket {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("nothing to protect: name at least one folder with --protect DIR")]
    NothingToProtect,
    #[error(transparent)]
    Watch(#[from] WatchError),
    /// `--events fanotify`, and the kernel refused it.
    #[error("fanotify was asked for (--events fanotify) but cannot be used: {0}")]
    FanotifyRefused(String),
}

/// The daemon's inbox. Create it before `run` so a signal handler can hold a stopper.
pub struct Inbox {
    tx: Sender<Msg>,
    rx: Receiver<Msg>,
}

impl Default for Inbox {
    fn default() -> Self {
        let (tx, rx) = mpsc::channel();
        Self { tx, rx }
    }
}

impl Inbox {
    /// A handle that asks the daemon to finish its work and stop.
    pub fn stopper(&self) -> Stopper {
        Stopper(self.tx.clone())
    }
}

#[derive(Clone)]
pub struct Stopper(Sender<Msg>);

impl Stopper {
    pub fn stop(&self) {
        let _ = self.0.send(Msg::Shutdown);
    }

    /// Asks the daemon to read its settings again (SIGHUP).
    pub fn reload(&self) {
        let _ = self.0.send(Msg::Reload);
    }
}

/// What a command that asked for a change is told: what was done, or why not.
type Answer = Result<String, String>;

/// Runs the daemon until a `Stopper` says stop; returns after committing everything.
pub fn run(config: Config, inbox: Inbox) -> Result<(), DaemonError> {
    let roots = config.checked_for_daemon()?;
    if roots.is_empty() {
        return Err(DaemonError::NothingToProtect);
    }
    let vault = Vault::open(&config.vault)?;
    let _lock = lock_vault_waiting(&vault)?;
    vault.balance_reserve();
    let leftovers = vault.clean_tmp()?;
    if leftovers > 0 {
        tracing::info!("removed {leftovers} unfinished copies left by an earlier stop");
    }
    let index = Index::open_journaled(&vault.index_path(), &vault.journal_dir())?;
    index.keep_busy_pages_in_memory()?;
    // Listening once the index is made and migrated, so a command that finds the
    // socket finds the index ready; one that comes sooner waits, since the vault's
    // lock says a daemon is starting (see `control::request`). Before the start-up
    // scan: a `sync` sent during it waits in the inbox and is answered once the
    // scan is in the index.
    let socket = vault.socket_path();
    let listener = socket::bind(&socket).map_err(|source| DaemonError::Socket {
        path: socket.clone(),
        source,
    })?;
    let control_tx = inbox.tx.clone();
    let announced = Arc::new(Announced::default());
    let heard = Arc::clone(&announced);
    std::thread::spawn(move || socket::serve(listener, control_tx, heard));
    sweep(&vault, &index)?;
    // Where files can be cloned into the vault, a capture is the clone, hashed later.
    vault.hash_clones_later();
    let hasher = hasher::Hasher::start(vault.root(), inbox.tx.clone(), config.hold_hashing);
    let now = clock::now();
    let roots = index.set_roots(&roots, now)?;
    let previous_alive = index.meta(MetaKey::LastAlive)?.and_then(|s| s.parse().ok());
    index.set_meta(MetaKey::DaemonStartedAt, &now.to_string())?;
    index.set_meta(MetaKey::DaemonPid, &std::process::id().to_string())?;
    record_settings(&index, &config, now)?;

    let mut daemon = Daemon {
        config,
        source: None,
        last_purge: None,
        purges_asked: Vec::new(),
        reload_asked: false,
        notices: Vec::new(),
        notifier: alert::Notifier::start(inbox.tx.clone()),
        amended: Vec::new(),
        next_end: None,
        ends_to_tell: true,
        codes: crate::ids::CodeSource::new(),
        identities: Arc::default(),
        vault,
        index,
        roots,
        rx: inbox.rx,
        dirty: Dirty::default(),
        writing: HashMap::new(),
        closed: HashMap::new(),
        deleted_open: HashMap::new(),
        held_for_look: HashMap::new(),
        recent_renames: Vec::new(),
        syncs: Syncs::default(),
        vault_full: false,
        vault_sizes: std::collections::VecDeque::new(),
        unwatched: BTreeSet::new(),
        last_limit_check: Instant::now(),
        last_heartbeat: Instant::now(),
        last_fallback_scan: Instant::now(),
        since_commit: 0,
        stopping: false,
        announced,
        restores: own::Restores::default(),
        announced_used: 0,
        hasher,
        hashing: 0,
        staged_done: Vec::new(),
    };
    daemon.hash_left_over()?;
    let paths: Vec<PathBuf> = daemon.roots.iter().map(|r| r.path.clone()).collect();
    daemon.tell_identities_the_roots();
    let events = identify::forward(inbox.tx, Arc::clone(&daemon.identities));
    let (source, note) = start_source(daemon.config.events, events, &paths, daemon.vault.root())?;
    daemon.source = Some(source);
    tracing::info!("changes are seen with {}: {}", note.source, note.why);
    if daemon.config.breaker.enabled && note.source != "fanotify" {
        // Only fanotify names the smbd of each change, and so the PC.
        tracing::warn!(
            "the circuit breaker is on, but {} does not say which PC made a change, so \
             it cannot cut anyone off",
            note.source
        );
    }
    daemon.index.set_meta(
        MetaKey::EventSource,
        &serde_json::to_string(&note).unwrap_or_default(),
    )?;
    for root in &daemon.roots {
        tracing::info!("protecting {}", root.path.display());
    }
    daemon.index.begin()?;
    daemon.full_scan(previous_alive)?;
    daemon.update_incidents(clock::now())?;
    daemon.commit()?;
    daemon.syncs.answer_ready(daemon.hashing == 0);
    tracing::info!("start-up scan finished; watching for changes");
    daemon.serve()?;
    let _ = std::fs::remove_file(&socket);
    tracing::info!("stopped cleanly");
    Ok(())
}

/// Starts the event source the settings ask for (`--events`): with `auto`,
/// fanotify where the kernel allows it, else inotify, saying why.
fn start_source(
    events: Events,
    tx: mpsc::Sender<Msg>,
    roots: &[PathBuf],
    vault: &std::path::Path,
) -> Result<(Box<dyn Source>, EventSourceNote), DaemonError> {
    let note = |source: &str, why: String| EventSourceNote {
        source: source.to_owned(),
        why,
    };
    if events != Events::Inotify {
        match WholeFs::start(tx.clone(), roots, vault) {
            Ok(source) => {
                let why = match events {
                    Events::Fanotify => "the settings ask for it (events = fanotify).".to_owned(),
                    _ => "one mark covers each protected filesystem, without a watch per \
                          folder, and each change names the process that made it."
                        .to_owned(),
                };
                return Ok((Box::new(source), note("fanotify", why)));
            }
            Err(refused) => {
                let why = fanotify_refused(&refused);
                if events == Events::Fanotify {
                    return Err(DaemonError::FanotifyRefused(why));
                }
                let source = Inotify::start(tx)?;
                let why = format!("fanotify cannot be used here: {why}");
                tracing::info!("using inotify: {why}");
                return Ok((Box::new(source), note("inotify", why)));
            }
        }
    }
    let source = Inotify::start(tx)?;
    let why = "the settings ask for it (events = inotify).".to_owned();
    Ok((Box::new(source), note("inotify", why)))
}

/// Why the kernel refused fanotify, in words.
fn fanotify_refused(refused: &WatchError) -> String {
    let (errno, on) = match refused {
        WatchError::Init(e) => (e.raw_os_error(), None),
        WatchError::Folder { path, source } => (source.raw_os_error(), Some(path)),
        WatchError::Limit => (None, None),
    };
    let on = on
        .map(|p| format!(" ({})", crate::words::display_path(p)))
        .unwrap_or_default();
    match errno {
        Some(libc::EPERM) => {
            "it needs root (the capability CAP_SYS_ADMIN in the first user namespace), \
             and the service does not have it."
                .to_owned()
        }
        Some(libc::ENOSYS) => "this kernel was built without fanotify.".to_owned(),
        Some(libc::EINVAL) => {
            "this kernel is too old: fanotify with file names needs Linux 5.17 or later.".to_owned()
        }
        Some(libc::EXDEV | libc::ENODEV | libc::EOPNOTSUPP) => format!(
            "the filesystem of a protected folder{on} cannot name its files by handle \
             as fanotify needs."
        ),
        _ => format!("{refused}."),
    }
}

impl Daemon {
    /// Who made a change is asked only of processes that change protected files.
    pub(super) fn tell_identities_the_roots(&self) {
        let roots = self.roots.iter().map(|r| r.path.clone()).collect();
        self.identities
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .protecting(roots);
    }
}

/// Removes copies in the vault that no version refers to (see `Vault::sweep`): at
/// start, and before every purge, when nothing is staged and everything is committed.
/// Whoever calls it holds the vault's writer lock (`Vault::lock`).
pub fn sweep(vault: &Vault, index: &Index) -> Result<(), DaemonError> {
    // A restore that planned before a staged copy was hashed still opens it by its
    // staged name (see `hasher`): those stay until no restore runs.
    let restoring = !vault.unless_restoring(|| ());
    let (n, bytes) = vault.sweep(|id| {
        if restoring && id.is_staged() {
            return Ok(true);
        }
        index.refers_to(id).map_err(DaemonError::from)
    })?;
    if n > 0 {
        tracing::warn!(
            "removed {n} copies ({}) from the vault that the index did not account for",
            crate::words::bytes(bytes)
        );
    }
    Ok(())
}

/// The limit on inotify watches this daemon is held to: the system's
/// (`fs.inotify.max_user_watches`), or its user namespace's when that is lower.
pub fn watch_limit() -> Option<u64> {
    [
        "/proc/sys/fs/inotify/max_user_watches",
        "/proc/sys/user/max_inotify_watches",
    ]
    .iter()
    .filter_map(|file| {
        std::fs::read_to_string(file)
            .ok()?
            .trim()
            .parse::<u64>()
            .ok()
    })
    .min()
}

/// What the settings in use are, and when they were read, for `status` and `doctor`.
fn record_settings(index: &Index, config: &Config, now: i64) -> Result<(), IndexError> {
    index.set_meta(
        MetaKey::Settings,
        &serde_json::json!({
            "exclude": config.excludes.rules(),
            "max_file_size": config.max_file_size,
            "retention": config.retention,
        })
        .to_string(),
    )?;
    index.set_meta(MetaKey::SettingsReadAt, &now.to_string())
}

/// The vault's writer lock, waiting a moment for a command that holds it to record
/// a change while no daemon ran (see `amend`): it takes milliseconds.
fn lock_vault_waiting(vault: &Vault) -> Result<WriterLock, LockError> {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        match vault.lock() {
            Err(LockError::Taken { .. }) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(50));
            }
            other => return other,
        }
    }
}

struct Daemon {
    /// The settings in use; SIGHUP replaces them (see `reload`).
    config: Config,
    /// The event source; walks add the watches of the folders they find.
    source: Option<Box<dyn Source>>,
    /// None until the first purge, which comes right after the start-up scan.
    last_purge: Option<Instant>,
    /// `undelete purge` requests, each with the rules it asks for.
    purges_asked: Vec<(PurgeAsk, Sender<Result<String, String>>)>,
    /// A SIGHUP, to act on after the next commit.
    reload_asked: bool,
    /// What to tell of mass deletions (command, e-mail), once their incident is committed.
    notices: Vec<alert::Notice>,
    notifier: alert::Notifier,
    /// Commands' changes made in the open transaction, to answer once committed.
    amended: Vec<(Sender<Answer>, Answer)>,
    /// When the first open incident is over if nothing joins it; None when that is
    /// to be read again from the index (see `end_incidents`).
    next_end: Option<i64>,
    /// Whether an incident may be over without its owner told yet.
    ends_to_tell: bool,
    codes: crate::ids::CodeSource,
    /// The processes that made changes, read once each, as events pass on their
    /// way from the source (see `identify::forward`).
    identities: Arc<std::sync::Mutex<identify::Identities>>,
    vault: Vault,
    index: Index,
    roots: Vec<Root>,
    rx: Receiver<Msg>,
    dirty: Dirty,
    /// Files reported as being written and not closed since (see `FsEvent::Writing`),
    /// with the descriptor the source holds them by, if any, and who began writing.
    writing: HashMap<PathBuf, Writer>,
    /// Files closed after writing, held until their path is looked at: unlinked
    /// first, they are read through this.
    closed: HashMap<PathBuf, Held>,
    /// Files deleted while still being written, held until they are closed: their
    /// last content is read then.
    deleted_open: HashMap<PathBuf, Held>,
    /// The descriptor a look should read through when the path is gone.
    held_for_look: HashMap<PathBuf, Held>,
    /// Folders and files renamed lately: from, to, when (see `removed`).
    recent_renames: Vec<(PathBuf, PathBuf, Instant)>,
    syncs: Syncs,
    vault_full: bool,
    /// The vault's size as it went, for its growth alert (see `watch_vault_growth`).
    vault_sizes: std::collections::VecDeque<(i64, u64)>,
    /// Folders the watch limit left unwatched (with everything below them).
    unwatched: BTreeSet<PathBuf>,
    last_limit_check: Instant,
    last_heartbeat: Instant,
    last_fallback_scan: Instant,
    since_commit: usize,
    stopping: bool,
    /// Files a restore is writing, with their content (see `announce`).
    announced: Arc<Announced>,
    /// How many of them were recorded without reading them, since the last log line.
    announced_used: u64,
    /// Names with a running restore's mark passed over (see `own`).
    restores: own::Restores,
    hasher: hasher::Hasher,
    /// Staged copies handed to the hasher whose result has not come back.
    hashing: usize,
    /// Staged names no version points at since the open transaction: removed once
    /// it is committed.
    staged_done: Vec<crate::ids::ObjectId>,
}

/// A file being written: how the source holds it, and who wrote. The last close
/// can be another process's: a program that starts another (a fork, before the
/// new program runs) hands it its open files for a moment, and if the writer
/// closes first, the kernel reports the close as the other process's. The change
/// is the writer's.
struct Writer {
    held: Option<Held>,
    by: dirty::By,
}
