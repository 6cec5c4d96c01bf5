//! The rules the other parts follow, as the settings give them: how long copies
//! are kept (retention), when deletions are one incident and when an alert is
//! raised, and where the alert e-mail goes.
//!
//! Checked values only, made by `Config::load`; the parts that follow them
//! never see the settings file or a flag.

use std::path::PathBuf;
use std::time::Duration;

use lettre::message::Mailbox;

const DAY_NS: i64 = 86_400 * 1_000_000_000;

/// The retention rules (the `[retention]` table of the config file).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Retention {
    /// Deleted files and replaced versions are kept this long.
    pub keep_deleted_ns: i64,
    /// At most this many older versions are kept per path.
    pub keep_versions: u64,
    /// The vault's objects may take at most this much.
    pub max_vault_bytes: Option<u64>,
    /// The vault's disk keeps at least this much free.
    pub min_free_bytes: Option<u64>,
    /// After an incident ends (resolved, acknowledged or over), the versions current
    /// when it began are still held this long. While it is open they always are.
    #[serde(default = "week")]
    pub hold_after_incident_ns: i64,
}

fn week() -> i64 {
    7 * DAY_NS
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            keep_deleted_ns: 30 * DAY_NS,
            keep_versions: 10,
            max_vault_bytes: None,
            min_free_bytes: None,
            hold_after_incident_ns: week(),
        }
    }
}

/// Below these, rules the service applies every hour would empty the recycle bin
/// rather than trim it: almost certainly a slip (a missing unit, a 0), refused.
const LEAST_KEEP_DELETED_NS: i64 = 3_600 * 1_000_000_000;
const LEAST_VAULT_BYTES: u64 = 100_000_000;

impl Retention {
    /// Whether the service may run with these rules. `undelete purge` given such rules
    /// on its command line still applies them once, after showing its plan.
    pub fn check_for_service(&self) -> Result<(), String> {
        if self.keep_versions == 0 {
            return Err(
                "keep_versions = 0 would purge every deleted file at once; keep at \
                        least 1 (the default is 10)"
                    .into(),
            );
        }
        if self.keep_deleted_ns < LEAST_KEEP_DELETED_NS {
            return Err(
                "keep_deleted is under an hour, so deleted files would be purged \
                        almost as soon as they are deleted; keep them at least 1h (the \
                        default is 30d)"
                    .into(),
            );
        }
        if let Some(max) = self.max_vault_bytes.filter(|&max| max < LEAST_VAULT_BYTES) {
            return Err(format!(
                "max_vault_size is only {}, so nearly every copy would be purged; give it \
                 at least 100MB, with a unit (for example 500GB)",
                crate::words::bytes(max)
            ));
        }
        Ok(())
    }
}

/// Settings for grouping and alerting.
#[derive(Debug, Clone)]
pub struct IncidentRules {
    /// Deletions further apart than this start a new incident.
    pub gap_ns: i64,
    /// An incident with this many files deleted within `window_ns` raises an alert…
    pub alert_files: u64,
    /// …or this many bytes.
    pub alert_bytes: u64,
    pub window_ns: i64,
    /// This many different files rewritten within `window_ns` with signs of
    /// encryption make an overwrite incident, which raises an alert.
    pub overwrite_files: u64,
    /// The vault growing by more than this percent of the size cap (or, without a
    /// cap, of its own size) within `growth_window_ns` raises an alert.
    pub growth_percent: u64,
    pub growth_window_ns: i64,
    /// Run with the details in environment variables when an alert is raised, and
    /// again when its incident is over.
    pub alert_command: Option<String>,
    /// Where the mass-deletion e-mail goes (the `[alert.email]` table).
    pub email: Option<EmailSettings>,
}

impl Default for IncidentRules {
    fn default() -> Self {
        Self {
            gap_ns: 60 * 1_000_000_000,
            alert_files: 500,
            alert_bytes: 1 << 30,
            window_ns: 5 * 60 * 1_000_000_000,
            overwrite_files: 200,
            growth_percent: 25,
            growth_window_ns: 3600 * 1_000_000_000,
            alert_command: None,
            email: None,
        }
    }
}

/// The circuit breaker (the `[breaker]` table): whether a PC that crosses an
/// incident's alert threshold over the file share is cut off from it, and how.
#[derive(Debug, Clone, Default)]
pub struct Breaker {
    /// Off unless the owner turns it on: a false alarm disconnects a real user.
    pub enabled: bool,
    /// A shell command run instead of `smbcontrol smbd kill-client-ip ADDRESS`,
    /// with the PC in `UNDELETE_CLIENT_ADDRESS`, `_USER` and `_MACHINE`.
    pub command: Option<String>,
    /// Addresses never cut off, whatever they do (the owner's own PC).
    pub never_cut: Vec<std::net::IpAddr>,
}

/// How the connection to the mail server is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    /// Plain at first, then encrypted before anything else is sent (port 587).
    StartTls,
    /// Encrypted from the first byte (port 465).
    Tls,
    /// Not encrypted: only for a relay on the server itself or the office network,
    /// and never with a password.
    None,
}

impl Security {
    pub fn parse(text: &str) -> Option<Self> {
        match text.trim().to_ascii_lowercase().as_str() {
            "starttls" => Some(Self::StartTls),
            "tls" | "ssl" | "smtps" => Some(Self::Tls),
            "none" | "plain" => Some(Self::None),
            _ => None,
        }
    }

    pub fn default_port(self) -> u16 {
        match self {
            Self::StartTls => 587,
            Self::Tls => 465,
            Self::None => 25,
        }
    }
}

/// The checked `[alert.email]` table.
#[derive(Debug, Clone)]
pub struct EmailSettings {
    pub server: String,
    pub port: u16,
    pub security: Security,
    /// The login, with the file holding its password.
    pub login: Option<(String, PathBuf)>,
    pub from: Mailbox,
    pub to: Vec<Mailbox>,
    /// The longest wait for the server at each step (connecting, each reply).
    pub timeout: Duration,
}

impl EmailSettings {
    /// The recipients, as people write them.
    pub fn recipients(&self) -> String {
        self.to
            .iter()
            .map(|m| m.email.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn security_is_read_as_people_write_it() {
        assert_eq!(Security::parse("STARTTLS"), Some(Security::StartTls));
        assert_eq!(Security::parse("ssl"), Some(Security::Tls));
        assert_eq!(Security::parse("none"), Some(Security::None));
        assert_eq!(Security::parse("maybe"), None);
        assert_eq!(Security::Tls.default_port(), 465);
    }
}
