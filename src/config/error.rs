//! What can be wrong with the settings, said with the file, the rule or the
//! folder it is about.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the config file {path} has a mistake: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{0:?} is not a size; write it like 500MB, 1MiB or 2GB")]
    Size(String),
    #[error(transparent)]
    Duration(#[from] crate::clock::TimeError),
    #[error("the exclude rule {rule:?} is not a valid pattern: {reason}")]
    Glob { rule: String, reason: String },
    #[error("the retention rules would empty the recycle bin: {0}")]
    Retention(String),
    #[error("the [alert.email] settings have a mistake: {0}")]
    Email(String),
    #[error(
        "never_cut = [{0:?}] in the [breaker] settings is not a network address; write it like \"192.168.1.10\""
    )]
    NeverCut(String),
    #[error("{0:?} is not an event source; write auto, fanotify or inotify")]
    Events(String),
    #[error("the folder {path} cannot be protected: {reason}")]
    Protect { path: PathBuf, reason: String },
    #[error(
        "no vault folder given and no home folder to put one in; pass --vault DIR or set UNDELETE_VAULT"
    )]
    NoVault,
    #[error(
        "the vault {vault} is inside the protected folder {root}; keep the vault outside the folders it protects (for example /var/lib/undelete)"
    )]
    VaultInside { vault: PathBuf, root: PathBuf },
    #[error(
        "the protected folder {root} is inside the vault {vault}; the vault must not hold protected folders"
    )]
    RootInsideVault { vault: PathBuf, root: PathBuf },
}

impl ConfigError {
    /// The paths it names, as its words show them: kept whole where it is wrapped.
    pub fn paths(&self) -> Vec<&Path> {
        match self {
            Self::Read { path, .. } | Self::Parse { path, .. } | Self::Protect { path, .. } => {
                vec![path]
            }
            Self::VaultInside { vault, root } | Self::RootInsideVault { vault, root } => {
                vec![vault, root]
            }
            _ => Vec::new(),
        }
    }
}
