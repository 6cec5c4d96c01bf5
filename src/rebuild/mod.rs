//! Rebuilding a lost or damaged index from the vault's journal.
//!
//! Plan, then execute: the plan takes the daemon's lock (so no daemon runs or
//! starts meanwhile) and names the files involved; the execution replays the
//! journal into a new index beside the old one, checks that every copy it
//! points at is in the vault, and only then moves the old index aside (never
//! deleting it) and puts the new one in its place. Stopped midway, it leaves
//! the old index where it was.
//!
//! It never changes the journal or the vault's objects.

mod replay;

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use crate::index::MetaKey;
use crate::index::{Index, IndexError};
use crate::model::Totals;
use crate::vault::{LockError, Vault, WriterLock};
pub use replay::{Replayed, replay};

#[derive(Debug, thiserror::Error)]
pub enum RebuildError {
    #[error(
        "the undelete service is running for the vault {vault}. Stop it first (for \
         example: sudo systemctl stop undelete), then run this again"
    )]
    DaemonRunning { vault: PathBuf },
    #[error(
        "the vault {vault} has no journal to rebuild the index from (it was made by an \
         older version of undelete, before journals were kept)"
    )]
    NoJournal { vault: PathBuf },
    #[error("cannot {doing} {path}: {source}")]
    Io {
        doing: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error(transparent)]
    Index(#[from] IndexError),
}

type Result<T> = std::result::Result<T, RebuildError>;

fn io_error(doing: &'static str, path: &Path) -> impl FnOnce(io::Error) -> RebuildError {
    let path = path.to_owned();
    move |source| RebuildError::Io {
        doing,
        path,
        source,
    }
}

/// What a rebuild will do, holding the daemon's lock until dropped.
pub struct RebuildPlan {
    _lock: WriterLock,
    journal_dir: PathBuf,
    /// Where the index goes.
    index: PathBuf,
    /// Where the new index is built before it takes the index's place.
    scratch: PathBuf,
    /// The old index's files that exist (the database, its log, its shared memory).
    old_files: Vec<PathBuf>,
    /// The name the old index is kept under.
    aside: PathBuf,
}

impl RebuildPlan {
    /// Where the old index will be kept, if there is one.
    pub fn kept_as(&self) -> Option<&Path> {
        (!self.old_files.is_empty()).then_some(self.aside.as_path())
    }
}

/// What the rebuilt index holds.
#[derive(Debug)]
pub struct Rebuilt {
    pub replayed: Replayed,
    pub versions: u64,
    pub totals: Totals,
    pub incidents: usize,
    /// Copies the index points at that are not in the vault.
    pub objects_missing: u64,
    pub kept_as: Option<PathBuf>,
}

/// Checks that a rebuild can run, and takes the daemon's lock for it.
pub fn plan(vault: &Vault) -> Result<RebuildPlan> {
    let lock = lock_out_the_daemon(vault)?;
    let journal_dir = vault.journal_dir();
    if !crate::journal::has_records(&journal_dir) {
        return Err(RebuildError::NoJournal {
            vault: vault.root().to_owned(),
        });
    }
    let index = vault.index_path();
    let old_files = index_files(&index)
        .into_iter()
        .filter(|p| p.exists())
        .collect();
    let stamp = chrono::Local::now().format("%Y%m%d-%H%M%S").to_string();
    let mut aside = with_suffix(&index, &format!(".damaged-{stamp}"));
    let mut n = 1;
    while aside.exists() {
        n += 1;
        aside = with_suffix(&index, &format!(".damaged-{stamp}-{n}"));
    }
    Ok(RebuildPlan {
        _lock: lock,
        journal_dir,
        scratch: with_suffix(&index, ".rebuilding"),
        index,
        old_files,
        aside,
    })
}

/// Builds the new index from the journal and puts it in place of the old one.
pub fn execute(plan: &RebuildPlan, vault: &Vault) -> Result<Rebuilt> {
    // Left by a rebuild that was stopped: it is started again from the beginning.
    for leftover in index_files(&plan.scratch) {
        remove_if_there(&leftover)?;
    }
    let mut rebuilt = build(plan, vault)?;
    for old in &plan.old_files {
        let suffix = &old.as_os_str().as_encoded_bytes()[plan.index.as_os_str().len()..];
        let kept = with_suffix(&plan.aside, &String::from_utf8_lossy(suffix));
        std::fs::rename(old, &kept).map_err(io_error("move aside", old))?;
    }
    std::fs::rename(&plan.scratch, &plan.index).map_err(io_error("put in place", &plan.index))?;
    File::open(vault.root())
        .and_then(|d| d.sync_all())
        .map_err(io_error("flush", vault.root()))?;
    rebuilt.kept_as = plan.kept_as().map(Path::to_owned);
    Ok(rebuilt)
}

/// Replays the journal into the scratch index and counts what it holds. The index
/// is closed on return, so its log is folded in and only one file is left.
fn build(plan: &RebuildPlan, vault: &Vault) -> Result<Rebuilt> {
    let index = Index::open(&plan.scratch)?;
    // For incidents the journal holds no code for (written by a daemon stopped
    // between grouping and writing the record).
    let mut codes = crate::ids::CodeSource::new();
    let mut new_code = || codes.next_code();
    let replayed = replay(&plan.journal_dir, &index, &mut new_code)?;
    if let Some(at) = replayed.last_at {
        // Deletions a later scan finds happened after this, the last known change.
        index.set_meta(MetaKey::LastAlive, &at.to_string())?;
    }
    index.set_meta(MetaKey::RebuiltAt, &crate::clock::now().to_string())?;
    // The replay kept them as it went; counted once more, from the rows alone.
    index.recount_totals()?;
    let objects_missing = index
        .objects_with_paths()?
        .iter()
        .filter(|(id, _, _)| !vault.contains(id))
        .count() as u64;
    Ok(Rebuilt {
        versions: index.version_count()?,
        totals: index.totals()?,
        incidents: index.incidents(usize::MAX >> 1)?.len(),
        objects_missing,
        replayed,
        kept_as: None,
    })
}

/// Holds the lock a daemon takes at start, so none runs during the rebuild.
fn lock_out_the_daemon(vault: &Vault) -> Result<WriterLock> {
    vault.lock().map_err(|e| match e {
        LockError::Taken { vault } => RebuildError::DaemonRunning { vault },
        LockError::Io { source, .. } => io_error("lock", &vault.lock_path())(source),
    })
}

/// A database file and the two SQLite keeps beside it.
fn index_files(db: &Path) -> [PathBuf; 3] {
    [
        db.to_owned(),
        with_suffix(db, "-wal"),
        with_suffix(db, "-shm"),
    ]
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

fn remove_if_there(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_error("remove", path)(e)),
        _ => Ok(()),
    }
}
