//! The daemon: watches the protected folders, copies every file into the vault
//! before it can be deleted, and records versions, deletions and files it could
//! not copy in the index.
//!
//! The event source (`inotify`) converts the kernel's events into `FsEvent` on
//! its own thread and hands them to one channel; everything else happens on the
//! loop's thread, in batches, one transaction each. Events are treated as hints: the loop looks at the
//! path on disk and brings the index up to date with what it finds, so a lost
//! or reordered event costs a rescan, never a wrong record. Each folder's watch
//! is added before the walk reads it, so nothing that changes during a scan is
//! missed. Folders and files are reached by descriptor (`tree`), never through
//! a symlink.
//!
//! It never restores anything.

pub mod alert;
mod capture;
mod event;
mod inotify;
mod sync;
mod tree;

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use crate::announce::Announced;
use crate::clock;
use crate::config::Config;
use crate::config::Retention;
use crate::index::{Index, IndexError};
use crate::model::{EntryKind, Gone, Incomplete, Removal, Root, Uncaptured, Version};
use crate::names::is_internal;
use crate::vault::{Likely, LockError, Vault, VaultError, WriterLock};

pub use event::{FsEvent, Msg, SyncAnswer};

use capture::{Look, Rules};
use inotify::{Held, Inotify, WatchError};
use sync::Syncs;

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
    // Listening from the start: a `sync` sent during the start-up scan waits in the
    // inbox and is answered once the scan is in the index.
    let socket = vault.socket_path();
    let listener = crate::control::bind(&socket).map_err(|source| DaemonError::Socket {
        path: socket.clone(),
        source,
    })?;
    let control_tx = inbox.tx.clone();
    let announced = Arc::new(Announced::default());
    let heard = Arc::clone(&announced);
    std::thread::spawn(move || crate::control::serve(listener, control_tx, heard));
    vault.balance_reserve();
    let leftovers = vault.clean_tmp()?;
    if leftovers > 0 {
        tracing::info!("removed {leftovers} unfinished copies left by an earlier stop");
    }
    let index = Index::open_journaled(&vault.index_path(), &vault.journal_dir())?;
    index.keep_busy_pages_in_memory()?;
    sweep(&vault, &index)?;
    let now = clock::now();
    let roots = index.set_roots(&roots, now)?;
    let previous_alive = index.meta("last_alive")?.and_then(|s| s.parse().ok());
    index.set_meta("daemon_started_at", &now.to_string())?;
    index.set_meta("daemon_pid", &std::process::id().to_string())?;
    record_settings(&index, &config, now)?;

    let mut daemon = Daemon {
        config,
        inotify: None,
        last_purge: None,
        purges_asked: Vec::new(),
        reload_asked: false,
        notices: Vec::new(),
        notifier: alert::Notifier::start(inbox.tx.clone()),
        amended: Vec::new(),
        next_end: None,
        ends_to_tell: true,
        codes: crate::ids::CodeSource::new(),
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
        unwatched: BTreeSet::new(),
        last_limit_check: Instant::now(),
        last_heartbeat: Instant::now(),
        last_fallback_scan: Instant::now(),
        since_commit: 0,
        stopping: false,
        announced,
        announced_used: 0,
    };
    daemon.inotify = Some(Inotify::start(inbox.tx)?);
    for root in &daemon.roots {
        tracing::info!("protecting {}", root.path.display());
    }
    daemon.index.begin()?;
    daemon.full_scan(previous_alive)?;
    daemon.update_incidents(clock::now())?;
    daemon.commit()?;
    daemon.syncs.answer_ready();
    tracing::info!("start-up scan finished; watching for changes");
    daemon.serve()?;
    let _ = std::fs::remove_file(&socket);
    tracing::info!("stopped cleanly");
    Ok(())
}

/// Removes copies in the vault that no version refers to (see `Vault::sweep`): at
/// start, and before every purge, when nothing is staged and everything is committed.
/// Whoever calls it holds the vault's writer lock (`Vault::lock`).
pub fn sweep(vault: &Vault, index: &Index) -> Result<(), DaemonError> {
    let (n, bytes) = vault.sweep(|id| index.refers_to(id).map_err(DaemonError::from))?;
    if n > 0 {
        tracing::warn!(
            "removed {n} copies ({}) from the vault that the index did not account for",
            crate::words::bytes(bytes)
        );
    }
    Ok(())
}

/// Moves the entries at and below `from` to where they are below `to` now.
fn follow_rename<V>(map: &mut HashMap<PathBuf, V>, from: &Path, to: &Path) {
    let moved: Vec<PathBuf> = map
        .keys()
        .filter(|p| p.starts_with(from))
        .cloned()
        .collect();
    for path in moved {
        if let Some(value) = map.remove(&path) {
            map.insert(inotify::below(to, &path, from), value);
        }
    }
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
        "settings",
        &serde_json::json!({
            "exclude": config.excludes.rules(),
            "max_file_size": config.max_file_size,
            "retention": config.retention,
        })
        .to_string(),
    )?;
    index.set_meta("settings_read_at", &now.to_string())
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

/// Paths to look at at the end of a batch, in the order they first came.
#[derive(Default)]
struct Dirty {
    order: Vec<PathBuf>,
    /// Path → whether it is new (folders that are new get walked).
    entries: HashMap<PathBuf, bool>,
}

impl Dirty {
    fn insert(&mut self, path: PathBuf, is_new: bool) {
        match self.entries.get_mut(&path) {
            Some(new) => *new |= is_new,
            None => {
                self.entries.insert(path.clone(), is_new);
                self.order.push(path);
            }
        }
    }

    /// Takes out `path` and, if `subtree`, everything below it; returns what was taken.
    fn take(&mut self, path: &Path, subtree: bool) -> Vec<PathBuf> {
        let mut taken = Vec::new();
        self.order.retain(|p| {
            if p == path || (subtree && p.starts_with(path)) {
                taken.push(p.clone());
                false
            } else {
                true
            }
        });
        for p in &taken {
            self.entries.remove(p);
        }
        taken
    }

    fn drain(&mut self) -> Vec<(PathBuf, bool)> {
        let entries = std::mem::take(&mut self.entries);
        std::mem::take(&mut self.order)
            .into_iter()
            .map(|p| {
                let is_new = entries.get(&p).copied().unwrap_or(false);
                (p, is_new)
            })
            .collect()
    }
}

struct Daemon {
    /// The settings in use; SIGHUP replaces them (see `reload`).
    config: Config,
    /// The event source; walks add the watches of the folders they find.
    inotify: Option<Inotify>,
    /// None until the first purge, which comes right after the start-up scan.
    last_purge: Option<Instant>,
    /// `undelete purge` requests, each with the rules it asks for.
    purges_asked: Vec<(Retention, Sender<Result<String, String>>)>,
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
    vault: Vault,
    index: Index,
    roots: Vec<Root>,
    rx: Receiver<Msg>,
    dirty: Dirty,
    /// Files reported as being written and not closed since (see `FsEvent::Writing`),
    /// with the descriptor the source holds them by, if any.
    writing: HashMap<PathBuf, Option<Held>>,
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
}

impl Daemon {
    /// The watch limit left `path` (and what is below it) unwatched: say so loudly,
    /// keep running, and add the watch once the limit is raised (`retry_unwatched`).
    fn watch_limit_reached(&mut self, path: Option<PathBuf>) -> Result<(), IndexError> {
        let limit = watch_limit().unwrap_or(0);
        if let Some(path) = &path {
            self.unwatched.insert(path.clone());
        }
        let message = format!(
            "The system limit on watched folders ({limit}) was reached{}. Changes in folders \
             beyond the limit are found by a scan every {} minutes instead of at once. To raise \
             the limit: echo fs.inotify.max_user_watches={} | sudo tee /etc/sysctl.d/90-undelete.conf \
             && sudo sysctl --system",
            path.map(|p| format!(" at {}", p.display()))
                .unwrap_or_default(),
            FALLBACK_SCAN.as_secs() / 60,
            (limit * 4).max(524_288),
        );
        if self
            .index
            .raise_alert("watch_limit", &message, clock::now())?
        {
            tracing::error!("{message}");
        }
        // The limit actually hit, for `doctor`: it may be raised meanwhile.
        self.index.set_meta("watch_limit_hit", &limit.to_string())?;
        self.last_limit_check = Instant::now();
        Ok(())
    }

    /// Folders the watch limit left unwatched get their watches once the limit is
    /// raised, without a restart: the limit is read again every few seconds (and at
    /// every sync), and when it changed, those folders are walked again, which adds
    /// the watches and finds what changed in them meanwhile. The alert is cleared
    /// once every folder is watched.
    fn retry_unwatched(&mut self, now: i64, asked: bool) -> Result<(), DaemonError> {
        if self.unwatched.is_empty() || (!asked && self.last_limit_check.elapsed() < LIMIT_CHECK) {
            return Ok(());
        }
        self.last_limit_check = Instant::now();
        let hit: Option<u64> = self
            .index
            .meta("watch_limit_hit")?
            .and_then(|s| s.parse().ok());
        if watch_limit() == hit {
            return Ok(());
        }
        let waiting = std::mem::take(&mut self.unwatched);
        for dir in &waiting {
            if let Some((EntryKind::Dir, _)) = self.look_at(dir, now)? {
                self.walk(dir, now)?;
            }
        }
        if self.unwatched.is_empty() {
            tracing::info!("every protected folder is watched again");
            self.index.clear_alert("watch_limit", now)?;
            self.index.set_meta("watch_limit_hit", "")?;
        }
        Ok(())
    }

    /// The loop, until told to stop: batches of messages, each applied as it comes
    /// (files are copied at once), in a transaction they share. It is committed once
    /// nothing has come for `LINGER`, once it is `GROUP_COMMIT` old, and at once when
    /// someone waits on it (a sync, a purge, a reload, stopping).
    ///
    /// While a restore brings back thousands of files, its events come in batches of
    /// a few dozen: a commit each made 314 commits for a 400 MB restore, each syncing
    /// the journal and writing its index pages to SQLite's log, on the cores and the
    /// disk the restore needs (10 commits now). A killed daemon loses at most
    /// `GROUP_COMMIT` of records; the start-up scan finds again every file still on
    /// disk, so only what was both written and deleted within that moment is lost,
    /// as a power cut loses the last seconds of writes to the share itself.
    fn serve(&mut self) -> Result<(), DaemonError> {
        let mut open_since: Option<Instant> = None;
        while !self.stopping {
            let wait = if open_since.is_some() { LINGER } else { TICK };
            let first = match self.rx.recv_timeout(wait) {
                Ok(msg) => Some(msg),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => break,
            };
            let mut batch: Vec<Msg> = first.into_iter().collect();
            while batch.len() < BATCH {
                match self.rx.try_recv() {
                    Ok(msg) => batch.push(msg),
                    Err(_) => break,
                }
            }
            let quiet = batch.is_empty();
            let since = match open_since {
                Some(since) => since,
                None => {
                    self.index.begin()?;
                    *open_since.insert(Instant::now())
                }
            };
            let waited_on = self.process(batch)?;
            if waited_on || quiet || since.elapsed() >= GROUP_COMMIT {
                self.finish()?;
                open_since = None;
            }
        }
        if open_since.is_some() {
            self.finish()?;
        }
        self.syncs.fail_all("the daemon is stopping");
        self.index
            .set_meta("last_alive", &clock::now().to_string())?;
        self.index
            .set_meta("daemon_stopped_at", &clock::now().to_string())?;
        Ok(())
    }

    /// Applies one batch in the open transaction. Returns whether someone waits for
    /// the commit.
    fn process(&mut self, batch: Vec<Msg>) -> Result<bool, DaemonError> {
        let now = clock::now();
        let mut rescan = false;
        let mut sync_asked = false;
        for msg in batch {
            match msg {
                Msg::Fs(FsEvent::Rescan) => rescan = true,
                Msg::Fs(event) => self.apply(event, now)?,
                Msg::Sync(reply) => {
                    sync_asked = true;
                    // Cookies go into every protected folder; when the kernel reports them
                    // back, every change made before this sync has been seen.
                    let roots: Vec<PathBuf> = self.roots.iter().map(|r| r.path.clone()).collect();
                    self.syncs.start(reply, &roots);
                }
                Msg::Purge(rules, reply) => self.purges_asked.push((rules, reply)),
                Msg::Reload => self.reload_asked = true,
                Msg::Shutdown => self.stopping = true,
                Msg::Amend(json, reply) => {
                    let answer = match serde_json::from_str(&json) {
                        Ok(amendment) => crate::amend::apply(&self.index, &amendment, now)?,
                        Err(e) => Err(format!("not a change this daemon knows ({e})")),
                    };
                    // A restore may have brought back everything an incident held.
                    self.ends_to_tell = true;
                    self.next_end = None;
                    self.amended.push((reply, answer));
                }
                Msg::Delivered(delivery) => self.delivered(&delivery)?,
            }
        }
        self.look_at_dirty(now)?;
        // Looked at by their paths now: nothing more to read through them.
        self.closed.clear();
        self.retry_unwatched(now, sync_asked)?;
        if self.vault_full && sync_asked {
            // Files skipped while the vault was full get no event when space returns:
            // `sync` retries them, so "free space, then sync" resumes protection at once
            // rather than at the next fallback scan.
            self.retry_vault_full(now)?;
        }
        if rescan {
            tracing::warn!("the kernel's event queue overflowed; rescanning to catch up");
            self.full_scan(None)?;
        }
        let fallback_due = (!self.unwatched.is_empty() || self.vault_full)
            && self.last_fallback_scan.elapsed() >= FALLBACK_SCAN;
        if fallback_due {
            self.full_scan(None)?;
        }
        self.update_incidents(now)?;
        Ok(self.syncs.any_ready()
            || !self.notices.is_empty()
            || !self.amended.is_empty()
            || self.stopping
            || self.reload_asked
            || !self.purges_asked.is_empty()
            || self.purge_due())
    }

    fn purge_due(&self) -> bool {
        self.last_purge.is_none_or(|at| at.elapsed() >= PURGE_EVERY)
    }

    /// Commits the open transaction, then does what waited for it.
    fn finish(&mut self) -> Result<(), DaemonError> {
        if self.last_heartbeat.elapsed() >= HEARTBEAT || self.syncs.any_ready() {
            self.index
                .set_meta("last_alive", &clock::now().to_string())?;
            self.last_heartbeat = Instant::now();
        }
        self.commit()?;
        if self.announced_used > 0 {
            tracing::info!(
                "recorded {} restored files as their restore announced them, without reading them",
                self.announced_used
            );
            self.announced_used = 0;
        }
        for notice in std::mem::take(&mut self.notices) {
            self.notifier.tell(notice);
        }
        for (reply, answer) in std::mem::take(&mut self.amended) {
            let _ = reply.send(answer);
        }
        // Answered only after the commit: a sync means "it is in the index".
        self.syncs.answer_ready();
        if self.purge_due() {
            self.last_purge = Some(Instant::now());
            let _ = self.purge(&self.config.retention);
        }
        if std::mem::take(&mut self.reload_asked) {
            self.reload(clock::now())?;
        }
        for (rules, reply) in std::mem::take(&mut self.purges_asked) {
            let _ = reply.send(self.purge(&rules));
        }
        Ok(())
    }

    /// SIGHUP: the settings file is read again, between batches, and its rules
    /// apply from the next batch on. The watches stay in place throughout, so no change is missed; folders
    /// added are watched and scanned, folders removed are no longer recorded. A
    /// mistake keeps the settings in use, with an alert that names the line.
    /// `settings_read_at` is written last, so whoever sees it change sees the rest.
    fn reload(&mut self, now: i64) -> Result<(), DaemonError> {
        let new = self.config.reread().and_then(|new| {
            let roots = new.checked_for_daemon()?;
            Ok((new, roots))
        });
        let (mut new, roots) = match new {
            Ok((_, roots)) if roots.is_empty() => {
                return self.settings_problem("no folder to protect is named", now);
            }
            Ok(found) => found,
            Err(e) => return self.settings_problem(&e.to_string(), now),
        };
        self.index.clear_alert("settings", now)?;
        // The incident gap may have changed.
        self.next_end = None;
        if new.vault != self.config.vault {
            tracing::warn!(
                "the vault cannot move while the service runs; restart it to use {}",
                new.vault.display()
            );
            new.vault = self.config.vault.clone();
        }
        self.config = new;
        let old: Vec<PathBuf> = self.roots.iter().map(|r| r.path.clone()).collect();
        if roots != old {
            self.roots = self.index.set_roots(&roots, now)?;
            for gone in old.iter().filter(|p| !roots.contains(p)) {
                tracing::info!("no longer protecting {}", gone.display());
                if let Some(inotify) = &self.inotify {
                    inotify.unwatch_tree(gone);
                }
                self.unwatched.retain(|dir| !dir.starts_with(gone));
            }
            for added in roots.iter().filter(|p| !old.contains(p)) {
                tracing::info!("protecting {}", added.display());
            }
            // The scan's walk watches each folder before reading it: what changes
            // meanwhile is an event.
            self.index.begin()?;
            self.full_scan(None)?;
            self.commit()?;
        }
        // Files kept out by an exclude rule or a size limit get no event when the rules
        // change: looked at again, those the new rules allow are copied now, not at
        // their next change (a deletion first would lose them).
        self.index.begin()?;
        for reason in ["excluded", "too_large"] {
            for path in self.index.current_uncaptured(reason)? {
                self.look_at(&path, now)?;
                self.maybe_commit()?;
            }
        }
        self.commit()?;
        record_settings(&self.index, &self.config, now)?;
        tracing::info!("settings reloaded");
        Ok(())
    }

    fn settings_problem(&mut self, problem: &str, now: i64) -> Result<(), DaemonError> {
        let message = format!(
            "The settings were read again but have a mistake, so the ones from \
             before are still in use: {problem}"
        );
        tracing::error!("{message}");
        self.index.raise_alert("settings", &message, now)?;
        self.index.set_meta("settings_read_at", &now.to_string())?;
        Ok(())
    }

    /// Applies the retention rules. Between batches, with everything committed and
    /// no copy under way, so no capture can come to refer to an object it removes.
    fn purge(&self, rules: &Retention) -> Result<String, String> {
        if let Err(e) = sweep(&self.vault, &self.index) {
            tracing::error!("cannot sweep the vault: {e}");
        }
        let now = clock::now();
        let outcome =
            crate::retention::plan(&self.index, &self.vault, rules, now).and_then(|plan| {
                let done = crate::retention::execute(&plan, &self.index, &self.vault, now)?;
                Ok((plan, done))
            });
        match outcome {
            Ok((plan, done)) => {
                if done.versions > 0 {
                    tracing::info!(
                        "retention: purged {} older copies, {} freed",
                        done.versions,
                        crate::words::bytes(done.bytes)
                    );
                }
                for (path, why) in &done.not_removed {
                    tracing::warn!("retention: could not remove {}: {why}", path.display());
                }
                if plan.still_short > 0 {
                    tracing::warn!(
                        "retention: the vault still needs {} more room; nothing else may be purged",
                        crate::words::bytes(plan.still_short)
                    );
                }
                Ok(crate::retention::summary(&done))
            }
            Err(e) => {
                tracing::error!("retention: the purge failed: {e}");
                Err(e.to_string())
            }
        }
    }

    fn commit(&mut self) -> Result<(), DaemonError> {
        // Object names must be durable before the index points at them.
        self.vault.flush()?;
        self.vault.balance_reserve();
        self.index.commit()?;
        self.since_commit = 0;
        Ok(())
    }

    /// Commits in the middle of a long scan, keeping the transaction open afterwards.
    fn maybe_commit(&mut self) -> Result<(), DaemonError> {
        self.since_commit += 1;
        if self.since_commit >= SCAN_COMMIT_EVERY {
            self.commit()?;
            self.index.begin()?;
        }
        Ok(())
    }

    fn root_for(&self, path: &Path) -> Option<&Root> {
        self.roots
            .iter()
            .filter(|r| path.starts_with(&r.path))
            .max_by_key(|r| r.path.as_os_str().len())
    }

    fn apply(&mut self, event: FsEvent, now: i64) -> Result<(), DaemonError> {
        match event {
            FsEvent::Changed { path, is_new } => {
                if crate::names::is_cookie(&path) {
                    self.syncs.cookie_seen(&path);
                } else if self.is_protected(&path) {
                    self.dirty.insert(path, is_new);
                }
            }
            FsEvent::Writing { path, held } => {
                if self.is_protected(&path) {
                    self.writing.insert(path, held);
                }
            }
            FsEvent::Closed { path } => {
                let held = self.writing.remove(&path).flatten();
                if !self.is_protected(&path) {
                    return Ok(());
                }
                if let Some(deleted) = self.deleted_open.remove(&path)
                    && self.index.current(&path)?.is_none()
                {
                    // Deleted while it was written, now closed: its last content.
                    self.keep_deleted(&path, deleted, now)?;
                } else if let Some(held) = held {
                    self.closed.insert(path.clone(), held);
                }
                self.dirty.insert(path, false);
            }
            FsEvent::Removed { path, was_dir } => {
                if self.is_protected(&path) {
                    self.removed(&path, was_dir, now)?;
                }
            }
            FsEvent::Renamed { from, to } => self.renamed(&from, &to, now)?,
            FsEvent::MovedOut { path } => {
                if self.is_protected(&path) {
                    self.moved_out(&path, now)?;
                }
            }
            FsEvent::Rescan => {}
            FsEvent::WatchLimit { path } => self.watch_limit_reached(path)?,
            FsEvent::Error { message } => tracing::warn!("watching: {message}"),
        }
        Ok(())
    }

    /// Records what the held descriptor of a file whose name is gone holds, as the
    /// current version of `path`.
    fn look_at_held(&mut self, path: &Path, held: Held, now: i64) -> Result<(), DaemonError> {
        self.held_for_look.insert(path.to_owned(), held);
        self.look_at(path, now)?;
        self.held_for_look.remove(path);
        Ok(())
    }

    /// A file deleted while it was written, closed since: its last content becomes
    /// the newest deleted version of `path`, whole.
    fn keep_deleted(&mut self, path: &Path, held: Held, now: i64) -> Result<(), DaemonError> {
        self.look_at_held(path, held, now)?;
        let gone = Gone {
            at: now,
            approx: false,
            last_seen: None,
            removal: Removal::Deleted,
        };
        self.index.mark_removed(path, false, &gone)?;
        Ok(())
    }

    /// Inside a protected folder, and none of the daemon's own files.
    fn is_protected(&self, path: &Path) -> bool {
        !is_internal(path) && self.root_for(path).is_some()
    }

    fn removed(&mut self, path: &Path, was_dir: bool, now: i64) -> Result<(), DaemonError> {
        if self.explained_by_rename(path, was_dir, now)? {
            return Ok(());
        }
        if let Some(held) = self.closed.remove(path) {
            // Written, closed and unlinked before the daemon looked: its content is
            // still there through the descriptor held since it was written.
            self.dirty.take(path, false);
            self.look_at_held(path, held, now)?;
        }
        if let Some(held) = self.writing.remove(path) {
            if let Some(held) = held {
                self.deleted_open.insert(path.to_owned(), held);
            }
            // Deleted while being written: the version kept does not hold the last
            // content, whether it is a copy of part of it or one from before.
            if let Some(v) = self.index.current(path)?
                && v.observed.kind == EntryKind::File
                && v.observed.object.is_some()
                && v.observed.incomplete.is_none()
            {
                self.index
                    .mark_incomplete(path, Incomplete::LastChangesMissing)?;
            }
        }
        let root_id = self.root_for(path).map(|r| r.id).unwrap_or_default();
        // Created and removed before we got to look: it existed, and it is lost.
        for never_seen in self.dirty.take(path, true) {
            // Not one whose removal this batch already recorded (found missing below
            // a folder that moved): it was seen, and is kept.
            if self.index.current(&never_seen)?.is_none()
                && !self.index.removed_since(&never_seen, now)?
            {
                self.index
                    .record_lost(&never_seen, root_id, EntryKind::File, now)?;
            }
        }
        let current = self.index.current(path)?;
        let subtree = was_dir
            || current
                .as_ref()
                .is_some_and(|v| v.observed.kind == EntryKind::Dir);
        let gone = Gone {
            at: now,
            approx: false,
            last_seen: None,
            removal: Removal::Deleted,
        };
        let marked = self.index.mark_removed(path, subtree, &gone)?;
        if marked == 0
            && current.is_none()
            && !self.index.removed_since(path, now - DUPLICATE_REMOVAL_NS)?
        {
            let kind = if was_dir {
                EntryKind::Dir
            } else {
                EntryKind::File
            };
            self.index.record_lost(path, root_id, kind, now)?;
        }
        Ok(())
    }

    /// A rename inside the protected folders. Decided with the disk, by inode, and
    /// never by the order of events: the kernel reports an exchange of `a` and `b`
    /// (`renameat2(RENAME_EXCHANGE)`, `mv --exchange`) as a rename `a → b` and one
    /// `b → a`, and by the time the daemon reads them the disk may be further on.
    /// When `from` holds the inode of `to`'s record and `to` that of `from`'s, the two
    /// were exchanged, with everything below them (also when `from`'s folder has gone
    /// since: see `from_unknown`). When `from` still holds the inode
    /// of its record (the second half of an exchange already applied, or a rename
    /// undone since), or nothing known moved and `to` still holds its record's,
    /// nothing moves. Otherwise `from` moved over `to`, whose record is replaced.
    /// Whatever is at either name is looked at again.
    fn renamed(&mut self, from: &Path, to: &Path, now: i64) -> Result<(), DaemonError> {
        if is_internal(to) {
            return Ok(());
        }
        if is_internal(from) {
            // A restore renaming its finished temporary file into place.
            self.dirty.insert(to.to_owned(), true);
            return Ok(());
        }
        let from_root = self.root_for(from).map(|r| r.id);
        let Some(to_root) = self.root_for(to).map(|r| r.id) else {
            // Renamed out of every protected folder.
            return self.moved_out(from, now);
        };
        let Some(from_root) = from_root else {
            self.dirty.insert(to.to_owned(), true);
            return Ok(());
        };
        // Files being written, and held open, follow the rename too.
        follow_rename(&mut self.writing, from, to);
        follow_rename(&mut self.closed, from, to);
        follow_rename(&mut self.deleted_open, from, to);
        let moving = self.index.current(from)?;
        let at_to = self.index.current(to)?;
        let inode_at = |p: &Path| tree::lstat(p).ok().map(|st| st.st_ino);
        let (on_from, on_to) = (inode_at(from), inode_at(to));
        let (m, t) = (
            moving.as_ref().map(|v| v.observed.inode),
            at_to.as_ref().map(|v| v.observed.inode),
        );
        // With `from`'s folder gone since (moved on, or out), `from` cannot say whether
        // this was an exchange or a rename over `to`: taken for an exchange, which
        // keeps `to`'s old record (in the recycle bin at worst), where a rename would
        // drop it.
        let from_unknown = on_from.is_none()
            && from
                .parent()
                .is_some_and(|dir| tree::lstat(dir).is_err_and(|e| tree::is_gone(&e)));
        let exchanged = m.is_some() && t.is_some() && on_to == m && (on_from == t || from_unknown);
        let stays = !exchanged
            && ((m.is_some() && on_from == m) || (m.is_none() && t.is_some() && on_to == t));
        if stays {
            self.dirty.insert(from.to_owned(), true);
            self.dirty.insert(to.to_owned(), true);
            // Events may still name it by the other name: they mean this one.
            let (other, kept) = if m.is_some() && on_from == m {
                (to, from)
            } else {
                (from, to)
            };
            self.remember_rename(other, kept);
            return Ok(());
        }
        // Paths waiting to be looked at follow the rename (both ways for an exchange).
        let mut follow = Vec::new();
        for waiting in self.dirty.take(from, true) {
            follow.push(inotify::below(to, &waiting, from));
        }
        if exchanged {
            for waiting in self.dirty.take(to, true) {
                follow.push(inotify::below(from, &waiting, to));
            }
        }
        for path in follow {
            self.dirty.insert(path, true);
        }
        if on_from.is_some() {
            self.dirty.insert(from.to_owned(), true);
        }
        if exchanged {
            self.index.exchange(from, from_root, to, to_root, now)?;
            self.dirty.insert(from.to_owned(), true);
        } else {
            self.index.rename(from, to, to_root, now)?;
        }
        // Walked again: the record moved, but the folder may have changed meanwhile.
        self.dirty.insert(to.to_owned(), true);
        // What was deleted in a moved folder while events still named its old path:
        // what the index has below it and the disk does not is gone. Only when the
        // folder is still there: one that has moved on since gets its own rename.
        let is_dir = |v: &Option<Version>| {
            v.as_ref()
                .is_some_and(|v| v.observed.kind == EntryKind::Dir)
        };
        if let (true, Some(m)) = (is_dir(&moving), m) {
            self.mark_missing_below(to, m, now)?;
        }
        if let (true, true, Some(t)) = (exchanged, is_dir(&at_to), t) {
            self.mark_missing_below(from, t, now)?;
        }
        self.remember_rename(from, to);
        Ok(())
    }

    fn remember_rename(&mut self, from: &Path, to: &Path) {
        self.recent_renames
            .retain(|(_, _, at)| at.elapsed() < RENAME_EXPLAINS);
        self.recent_renames
            .push((from.to_owned(), to.to_owned(), Instant::now()));
    }

    /// A remove event for a path that a recent rename moved away (an event read under
    /// the old name) is no loss: the thing is where the rename put it, or, if it is
    /// not there either, it was deleted there.
    fn explained_by_rename(
        &mut self,
        path: &Path,
        was_dir: bool,
        now: i64,
    ) -> Result<bool, DaemonError> {
        if self.index.current(path)?.is_some() || self.dirty.entries.contains_key(path) {
            return Ok(false);
        }
        // The other name of a recent rename, either way: while the two names are
        // read against a disk that moved on, an event may carry either of them.
        let mut names = Vec::new();
        for (from, to, at) in self.recent_renames.iter().rev() {
            if at.elapsed() >= RENAME_EXPLAINS {
                continue;
            }
            if path.starts_with(from) {
                names.push(inotify::below(to, path, from));
            }
            if path.starts_with(to) {
                names.push(inotify::below(from, path, to));
            }
        }
        let since = now - RENAME_EXPLAINS.as_nanos() as i64;
        let mut moved = None;
        for name in names {
            if self.index.current(&name)?.is_some() {
                moved = Some(name);
                break;
            }
            if self.index.removed_since(&name, since)? {
                // Its deletion is recorded there already.
                return Ok(true);
            }
        }
        let Some(moved) = moved else {
            return Ok(false);
        };
        if tree::lstat(&moved).is_err_and(|e| tree::is_gone(&e)) {
            let gone = Gone {
                at: now,
                approx: false,
                last_seen: None,
                removal: Removal::Deleted,
            };
            self.index
                .mark_removed(&moved, was_dir || self.is_dir_in_index(&moved)?, &gone)?;
        } else {
            self.dirty.insert(moved, was_dir);
        }
        Ok(true)
    }

    fn is_dir_in_index(&self, path: &Path) -> Result<bool, DaemonError> {
        Ok(self
            .index
            .current(path)?
            .is_some_and(|v| v.observed.kind == EntryKind::Dir))
    }

    /// Marks what the index has below the folder `dir` that is not in it on disk as
    /// deleted, when the folder at `dir` is still the one with `inode`. Through the
    /// folder's descriptor: renamed again meanwhile, it still answers for its files.
    fn mark_missing_below(&mut self, dir: &Path, inode: u64, now: i64) -> Result<(), DaemonError> {
        let Ok(held) = tree::open_dir(dir) else {
            return Ok(());
        };
        if rustix::fs::fstat(&held).map(|st| st.st_ino).ok() != Some(inode) {
            return Ok(());
        }
        let gone = Gone {
            at: now,
            approx: false,
            last_seen: None,
            removal: Removal::Deleted,
        };
        self.mark_missing(dir, &gone, |path| match path.strip_prefix(dir) {
            Ok(relative) if !relative.as_os_str().is_empty() => {
                tree::lstat_beneath(&held, relative).is_err_and(|e| tree::is_gone(&e))
            }
            _ => false,
        })?;
        Ok(())
    }

    /// Marks the current versions at and below `dir` that `is_gone` says are not on
    /// disk as gone, dated by `gone`. Returns how many were marked.
    fn mark_missing(
        &mut self,
        dir: &Path,
        gone: &Gone,
        is_gone: impl Fn(&Path) -> bool,
    ) -> Result<usize, DaemonError> {
        let mut missing = 0;
        let mut after: Option<PathBuf> = None;
        // A page at a time: a million paths held at once would be the daemon's
        // largest allocation, and the memory would stay with it.
        loop {
            let page = self
                .index
                .current_paths_page(dir, after.as_deref(), SCAN_PAGE)?;
            let Some(last) = page.last().cloned() else {
                break;
            };
            for path in page {
                if is_gone(&path) {
                    missing += self.index.mark_removed(&path, false, gone)?;
                    self.maybe_commit()?;
                }
            }
            after = Some(last);
        }
        Ok(missing)
    }

    fn moved_out(&mut self, path: &Path, now: i64) -> Result<(), DaemonError> {
        self.dirty.take(path, true);
        let gone = Gone {
            at: now,
            approx: false,
            last_seen: None,
            removal: Removal::MovedOut,
        };
        let n = self.index.mark_removed(path, true, &gone)?;
        tracing::info!(
            "{} moved out of the protected folder ({n} entries)",
            path.display()
        );
        Ok(())
    }

    fn look_at_dirty(&mut self, now: i64) -> Result<(), DaemonError> {
        let dirty = self.dirty.drain();
        for chunk in dirty.chunks(LOOK_CHUNK) {
            let paths: Vec<PathBuf> = chunk.iter().map(|(p, _)| p.clone()).collect();
            let before = paths
                .iter()
                .map(|p| Ok(self.index.current(p)?.and_then(|v| v.observed.object)))
                .collect::<Result<Vec<_>, DaemonError>>()?;
            let found = self.look_at_all(&paths, now)?;
            // A file written through one of its hard links changed under the others
            // too, and inotify named only the one used: those are looked at now.
            let mut linked = Vec::new();
            for (path, before) in paths.iter().zip(before) {
                if let Some(now_current) = self.index.current(path)?
                    && now_current.observed.kind == EntryKind::File
                    && before.is_some()
                    && now_current.observed.object != before
                {
                    linked.extend(
                        self.index
                            .current_with_inode(now_current.observed.inode, path)?,
                    );
                }
            }
            if !linked.is_empty() {
                self.look_at_all(&linked, now)?;
            }
            for ((path, is_new), found) in chunk.iter().zip(found) {
                if let Some((EntryKind::Dir, was_known)) = found
                    && (*is_new || !was_known)
                {
                    // Files made in a new folder before its watch existed are never
                    // reported; its watch is there now, so a walk finds all of them.
                    self.walk(path, now)?;
                }
            }
        }
        Ok(())
    }

    /// Brings the index up to date with `path` on disk. Returns the kind found, and
    /// whether the index already had a current version of it.
    fn look_at(&mut self, path: &Path, now: i64) -> Result<Option<(EntryKind, bool)>, DaemonError> {
        let found = self.look_at_all(&[path.to_owned()], now)?;
        Ok(found.into_iter().next().flatten())
    }

    /// `look_at` for many paths: what the index has is read here, the files are copied
    /// by the capture workers in parallel (hashing and copying is the slow part, and it
    /// touches neither the index nor the daemon), and the results are recorded here, in
    /// order, in the caller's transaction.
    fn look_at_all(
        &mut self,
        paths: &[PathBuf],
        now: i64,
    ) -> Result<Vec<Option<(EntryKind, bool)>>, DaemonError> {
        let mut jobs = Vec::with_capacity(paths.len());
        let mut announced = self.announced.take(paths).into_iter();
        for path in paths {
            let announced = announced.next().flatten();
            let Some(root) = self.root_for(path) else {
                jobs.push(None);
                continue;
            };
            let (root_id, relative) = (
                root.id,
                path.strip_prefix(&root.path).unwrap_or(path).to_owned(),
            );
            let current = self.index.current(path)?;
            // A restore's announcement says more than a guess from the history would,
            // and if the file is no longer as announced, its content may still be.
            let likely = match (&current, &announced) {
                (Some(_), _) => None,
                (None, Some(a)) => Some(Likely {
                    id: a.object,
                    size: a.size,
                }),
                (None, None) => self.index.latest(path)?.and_then(|v| {
                    v.observed.object.map(|id| Likely {
                        id,
                        size: v.observed.size,
                    })
                }),
            };
            let job = Some(capture::Job {
                path: path.clone(),
                root_id,
                relative,
                current,
                likely,
                announced,
                name_gone: self.held_for_look.contains_key(path),
                held: self
                    .held_for_look
                    .get(path)
                    .or_else(|| self.closed.get(path))
                    .cloned(),
            });
            jobs.push(job);
        }
        // Each protected folder's own rules (`[[folder]]` tables), by folder id.
        let rules: HashMap<i64, Rules<'_>> = self
            .roots
            .iter()
            .map(|root| {
                let (excludes, max_file_size) = self.config.rules_for(&root.path);
                (
                    root.id,
                    Rules {
                        excludes,
                        max_file_size,
                    },
                )
            })
            .collect();
        let looks = capture::look_all(&self.vault, &rules, &jobs);
        let mut found = Vec::with_capacity(jobs.len());
        for (job, look) in jobs.into_iter().zip(looks) {
            found.push(match job {
                Some(job) => self.record(job, look, now)?,
                None => None,
            });
        }
        Ok(found)
    }

    /// Records what looking at a path found.
    fn record(
        &mut self,
        job: capture::Job,
        look: Look,
        now: i64,
    ) -> Result<Option<(EntryKind, bool)>, DaemonError> {
        let (observed, copied) = match look {
            Look::Missing => return Ok(None),
            Look::Uninspectable(e) => {
                tracing::warn!("cannot look at {}: {e}", job.path.display());
                return Ok(None);
            }
            Look::Found(observed) => (observed, false),
            // Only a copy actually written proves the vault has room again: a folder, a
            // link, a file whose content is already kept or one a restore announced
            // takes no space.
            Look::Copied(observed) => (observed, true),
            Look::Announced(observed) => {
                self.announced_used += 1;
                (observed, false)
            }
        };
        self.note_vault_state(&observed.uncaptured, copied, now)?;
        let mut observed = observed;
        if observed.kind != EntryKind::File {
            self.writing.remove(&job.path);
        } else if observed.object.is_some() && self.writing.contains_key(&job.path) {
            // Copied while a writer may still be at it: the last content may come later.
            observed.incomplete = Some(Incomplete::WhileWritten);
        }
        let kind = observed.kind;
        let was_known = job.current.is_some();
        match job.current {
            Some(cur)
                if cur.observed.kind == observed.kind
                    && cur.observed.object == observed.object
                    && cur.observed.link_target == observed.link_target
                    && cur.observed.uncaptured == observed.uncaptured =>
            {
                if cur.observed != observed {
                    self.index.update_metadata(cur.id, &observed)?;
                }
            }
            _ => {
                self.index
                    .insert_version(&job.path, job.root_id, &observed, now)?;
            }
        }
        Ok(Some((kind, was_known)))
    }

    /// Copies again the current files that were skipped because the vault was full,
    /// stopping at the first that still does not fit.
    fn retry_vault_full(&mut self, now: i64) -> Result<(), DaemonError> {
        for path in self
            .index
            .current_uncaptured(Uncaptured::VaultFull.code())?
        {
            self.look_at(&path, now)?;
            self.maybe_commit()?;
            if self.vault_full
                && self
                    .index
                    .current(&path)?
                    .is_some_and(|v| v.observed.uncaptured == Some(Uncaptured::VaultFull))
            {
                break;
            }
        }
        Ok(())
    }

    /// Groups new deletions into incidents, raises the mass-deletion alert for an
    /// incident that crosses the threshold, and ends the incidents no deletion joined
    /// for the incident gap.
    fn update_incidents(&mut self, now: i64) -> Result<(), DaemonError> {
        let codes = &mut self.codes;
        let mut new_code = || codes.next_code();
        let changed = self
            .index
            .group_incidents(self.config.incidents.gap_ns, &mut new_code)?;
        if !changed.is_empty() {
            self.next_end = None;
        }
        for id in changed {
            let Some(incident) = self.index.incident(id)? else {
                continue;
            };
            if incident.alerted_at.is_some() {
                continue;
            }
            let since = incident.last_at - self.config.incidents.window_ns;
            let (files, bytes) = self.index.incident_activity_since(id, since)?;
            if files < self.config.incidents.alert_files
                && bytes < self.config.incidents.alert_bytes
            {
                continue;
            }
            self.index.mark_incident_alerted(id, now, true)?;
            self.mass_deletion_alert(&incident, now)?;
        }
        self.end_incidents(now)
    }

    /// Ends the incidents that are over, and tells the end of those that were alerted
    /// (with their final counts). Idle, this costs a comparison per tick: the index
    /// is asked only when the first open incident is due, or something changed.
    fn end_incidents(&mut self, now: i64) -> Result<(), DaemonError> {
        let gap = self.config.incidents.gap_ns;
        let next_end = match self.next_end {
            Some(at) => at,
            None => {
                let at = self.index.next_incident_end(gap)?.unwrap_or(i64::MAX);
                *self.next_end.insert(at)
            }
        };
        if now > next_end {
            for id in self.index.incidents_over(gap, now)? {
                self.index.end_incident(id, now)?;
            }
            self.next_end = None;
            self.ends_to_tell = true;
        }
        if std::mem::take(&mut self.ends_to_tell) {
            for incident in self.index.ends_to_tell()? {
                self.index.mark_end_told(incident.id, now)?;
                self.notice(crate::incident::AlertEvent::Ended, incident);
            }
        }
        Ok(())
    }

    fn mass_deletion_alert(
        &mut self,
        incident: &crate::model::Incident,
        now: i64,
    ) -> Result<(), DaemonError> {
        let message = crate::incident::mass_deletion_message(incident, self.vault.root());
        tracing::warn!("{message}");
        self.index
            .raise_alert(&crate::incident::alert_kind(&incident.code), &message, now)?;
        self.notice(crate::incident::AlertEvent::Started, incident.clone());
        Ok(())
    }

    /// Tells the alert command and the e-mail, once what they are told is committed:
    /// the restore command they are handed finds its incident in the index.
    fn notice(&mut self, event: crate::incident::AlertEvent, incident: crate::model::Incident) {
        let rules = &self.config.incidents;
        if rules.alert_command.is_none() && rules.email.is_none() {
            return;
        }
        self.notices.push(alert::Notice {
            event,
            incident,
            vault: self.vault.root().to_owned(),
            command: rules.alert_command.clone(),
            email: rules.email.clone(),
        });
    }

    /// Keeps how the last alert e-mail went, and the last that failed, for `doctor`.
    fn delivered(&mut self, delivery: &alert::Delivery) -> Result<(), DaemonError> {
        let key = if delivery.error.is_some() {
            "email_failed"
        } else {
            "email_sent"
        };
        let value = serde_json::to_string(delivery).unwrap_or_default();
        self.index.set_meta(key, &value)?;
        Ok(())
    }

    /// Raises the vault-full alert on the first failure and clears it on the next copy
    /// written (`copied`).
    fn note_vault_state(
        &mut self,
        uncaptured: &Option<Uncaptured>,
        copied: bool,
        now: i64,
    ) -> Result<(), DaemonError> {
        match uncaptured {
            Some(Uncaptured::VaultFull) if !self.vault_full => {
                self.vault_full = true;
                let message = format!(
                    "The vault disk ({}) is full: new and changed files are not being protected. \
                     Free space on that disk; protection resumes by itself.",
                    self.vault.root().display()
                );
                tracing::error!("{message}");
                // Before anything is written down: what follows needs the room.
                self.vault.release_reserve();
                self.index.raise_alert("vault_full", &message, now)?;
            }
            None if self.vault_full && copied => {
                self.vault_full = false;
                tracing::info!("the vault has space again; protection resumed");
                self.index.clear_alert("vault_full", now)?;
            }
            _ => {}
        }
        Ok(())
    }

    /// Looks at everything below `dir`, watching each folder before reading it. Each
    /// folder is opened by `tree`, never through a symlink: one swapped in for a
    /// folder during the walk is seen as a link, not followed.
    fn walk(&mut self, dir: &Path, now: i64) -> Result<(), DaemonError> {
        let vault_root = self.vault.root().to_owned();
        let mut folders = vec![dir.to_owned()];
        let mut chunk = Vec::with_capacity(LOOK_CHUNK);
        while let Some(folder) = folders.pop() {
            let fd = match tree::open_dir(&folder) {
                Ok(fd) => fd,
                Err(e) if tree::is_gone(&e) => continue,
                Err(e) => {
                    tracing::warn!(
                        "cannot read the folder {} while scanning: {e}",
                        folder.display()
                    );
                    continue;
                }
            };
            self.watch_folder(&fd, &folder)?;
            let names = match tree::entries(&fd) {
                Ok(names) => names,
                Err(e) => {
                    tracing::warn!(
                        "cannot read the folder {} while scanning: {e}",
                        folder.display()
                    );
                    continue;
                }
            };
            drop(fd);
            for (name, is_dir) in names {
                let path = folder.join(name);
                if is_internal(&path) || (is_dir && path.starts_with(&vault_root)) {
                    continue;
                }
                if is_dir {
                    folders.push(path.clone());
                }
                chunk.push(path);
                if chunk.len() == LOOK_CHUNK {
                    self.look_at_chunk(&mut chunk, now)?;
                }
            }
        }
        self.look_at_chunk(&mut chunk, now)
    }

    /// Adds the watch of a folder a walk holds open.
    fn watch_folder(&mut self, dir: &std::os::fd::OwnedFd, path: &Path) -> Result<(), DaemonError> {
        use std::os::fd::AsFd;
        let Some(inotify) = &self.inotify else {
            return Ok(());
        };
        match inotify.watch(dir.as_fd(), path) {
            Ok(()) => {}
            // Folders below one already waiting are walked again with it.
            Err(WatchError::Limit) if self.unwatched.iter().any(|d| path.starts_with(d)) => {}
            Err(WatchError::Limit) => self.watch_limit_reached(Some(path.to_owned()))?,
            Err(e) => tracing::warn!("{e}"),
        }
        Ok(())
    }

    /// Looks at the paths a walk gathered, and empties `chunk` for the next ones.
    fn look_at_chunk(&mut self, chunk: &mut Vec<PathBuf>, now: i64) -> Result<(), DaemonError> {
        if chunk.is_empty() {
            return Ok(());
        }
        self.look_at_all(chunk, now)?;
        self.since_commit += chunk.len() - 1;
        chunk.clear();
        self.maybe_commit()
    }

    /// Walks every protected folder, then marks what the index has but the disk does not.
    /// `last_alive` is when the daemon was last known running, for deletions found now.
    /// Runs inside the caller's transaction, committing as it goes.
    fn full_scan(&mut self, last_alive: Option<i64>) -> Result<(), DaemonError> {
        let started = Instant::now();
        let now = clock::now();
        let roots: Vec<PathBuf> = self.roots.iter().map(|r| r.path.clone()).collect();
        for root in &roots {
            self.look_at(root, now)?;
            self.walk(root, now)?;
        }
        let gone = Gone {
            at: clock::now(),
            approx: true,
            last_seen: last_alive.or(Some(now)),
            removal: Removal::Deleted,
        };
        let mut missing = 0;
        for root in &roots {
            // Only "not there" is a deletion: a folder that cannot be read
            // (permissions, an I/O error, a share gone away) still holds its files.
            // Reached through a symlink is not there: not in the tree.
            missing += self.mark_missing(root, &gone, |path| {
                tree::lstat(path).is_err_and(|e| tree::is_gone(&e))
            })?;
        }
        self.commit()?;
        self.index.begin()?;
        self.last_fallback_scan = Instant::now();
        // Everything that happened before the scan started is now in the index.
        self.syncs.scan_finished(started);
        tracing::info!(
            "scan finished in {:.1}s; {missing} deletions found by the scan",
            started.elapsed().as_secs_f64()
        );
        Ok(())
    }
}
