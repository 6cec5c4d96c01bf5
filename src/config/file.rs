//! The settings file as people write it (TOML), read into the shapes `Config`
//! is made from. Unknown keys are mistakes, never silence; toml's own message
//! names the line.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::rules::{EmailSettings, Security};
use super::{ConfigError, absolute};

/// The TOML file, as written by people. Unknown keys are mistakes, not silence.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileConfig {
    pub(super) vault: Option<PathBuf>,
    #[serde(default)]
    pub(super) protect: Vec<PathBuf>,
    #[serde(default)]
    pub(super) exclude: Vec<String>,
    pub(super) max_file_size: Option<String>,
    pub(super) incident_gap: Option<String>,
    pub(super) alert_files: Option<u64>,
    pub(super) alert_size: Option<String>,
    pub(super) overwrite_alert_files: Option<u64>,
    pub(super) vault_growth_alert: Option<u64>,
    pub(super) vault_growth_window: Option<String>,
    pub(super) alert_command: Option<String>,
    /// Which event source the daemon uses: auto, fanotify or inotify.
    pub(super) events: Option<String>,
    /// The `[alert]` table, which holds `[alert.email]`.
    #[serde(default)]
    pub(super) alert: FileAlert,
    #[serde(default)]
    pub(super) retention: FileRetention,
    /// The `[breaker]` table: cutting off a PC that deletes or encrypts en masse.
    #[serde(default)]
    pub(super) breaker: FileBreaker,
    /// `[[folder]]` tables: a protected folder with rules of its own.
    #[serde(default)]
    pub(super) folder: Vec<FileFolder>,
    /// A group whose members may read the restore reports without root.
    pub(super) report_group: Option<String>,
}

/// One `[[folder]]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileFolder {
    pub(super) path: PathBuf,
    /// Added to the rules for every folder.
    #[serde(default)]
    pub(super) exclude: Vec<String>,
    /// Instead of the limit for every folder.
    pub(super) max_file_size: Option<String>,
}

/// The `[alert]` table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileAlert {
    pub(super) email: Option<FileEmail>,
}

/// The `[alert.email]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileEmail {
    pub(super) server: String,
    pub(super) port: Option<u16>,
    pub(super) security: Option<String>,
    pub(super) user: Option<String>,
    pub(super) password_file: Option<PathBuf>,
    pub(super) from: String,
    pub(super) to: Recipients,
    pub(super) timeout: Option<String>,
}

/// One address, or a list of them.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum Recipients {
    One(String),
    Many(Vec<String>),
}

/// The `[retention]` table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileRetention {
    pub(super) keep_deleted: Option<String>,
    pub(super) keep_versions: Option<u64>,
    pub(super) max_vault_size: Option<String>,
    pub(super) min_free_disk: Option<String>,
    pub(super) hold_after_incident: Option<String>,
}

/// The `[breaker]` table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileBreaker {
    pub(super) enabled: Option<bool>,
    pub(super) command: Option<String>,
    #[serde(default)]
    pub(super) never_cut: Vec<String>,
}

/// How long the daemon waits for the mail server at each step, unless told.
const EMAIL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Checks the `[alert.email]` table. The password is read when a message is sent,
/// from its own file: never from the settings, which more people get to see.
pub(super) fn email_settings(file: FileEmail) -> Result<EmailSettings, ConfigError> {
    let bad = |what: String| ConfigError::Email(what);
    let security = match &file.security {
        Some(text) => Security::parse(text).ok_or_else(|| {
            bad(format!(
                "security = {text:?} is not one of \"starttls\", \"tls\" or \"none\""
            ))
        })?,
        None => Security::StartTls,
    };
    let login = match (file.user, file.password_file) {
        (Some(user), Some(password_file)) => Some((user, absolute(&password_file))),
        (None, None) => None,
        (Some(_), None) => {
            return Err(bad(
                "user is set but password_file is not: name the file that holds the \
                 password (readable only by root)"
                    .into(),
            ));
        }
        (None, Some(_)) => return Err(bad("password_file is set but user is not".into())),
    };
    if login.is_some() && security == Security::None {
        return Err(bad(
            "a password is never sent unencrypted: use security = \"starttls\" or \"tls\"".into(),
        ));
    }
    let mailbox = |field: &str, text: &str| {
        text.parse::<lettre::message::Mailbox>()
            .map_err(|e| bad(format!("{field} = {text:?} is not an e-mail address ({e})")))
    };
    let to = match file.to {
        Recipients::One(one) => vec![one],
        Recipients::Many(many) => many,
    };
    if to.is_empty() {
        return Err(bad("to names nobody: give at least one address".into()));
    }
    let timeout = match file.timeout {
        Some(text) => {
            std::time::Duration::from_nanos(crate::clock::parse_age(&text)?.max(1) as u64)
        }
        None => EMAIL_TIMEOUT,
    };
    Ok(EmailSettings {
        port: file.port.unwrap_or(security.default_port()),
        server: file.server,
        security,
        login,
        from: mailbox("from", &file.from)?,
        to: to
            .iter()
            .map(|t| mailbox("to", t))
            .collect::<Result<_, _>>()?,
        timeout,
    })
}

pub(super) fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    // toml's message already names the line and column and shows the offending text.
    toml::from_str(&text).map_err(|e| ConfigError::Parse {
        path: path.to_owned(),
        message: e.to_string(),
    })
}
