//! The `meta` table: the daemon's own notes (when it started and was last alive,
//! the settings in use, how the last alert e-mail went), never journaled.
use rusqlite::OptionalExtension;

use super::{Index, Result};

/// A note of the daemon's, stored under `as_str` (the names older versions wrote).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetaKey {
    DaemonStartedAt,
    DaemonStoppedAt,
    DaemonPid,
    /// The last heartbeat of a running daemon.
    LastAlive,
    /// The inotify watch limit when it was reached; empty once it no longer is.
    WatchLimitHit,
    /// The settings in use, as JSON.
    Settings,
    SettingsReadAt,
    RebuiltAt,
    /// How the last alert e-mail went, and the last that failed (JSON).
    EmailSent,
    EmailFailed,
    /// Which event source the daemon uses and why (`EventSourceNote`, JSON).
    EventSource,
}

impl MetaKey {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::DaemonStartedAt => "daemon_started_at",
            Self::DaemonStoppedAt => "daemon_stopped_at",
            Self::DaemonPid => "daemon_pid",
            Self::LastAlive => "last_alive",
            Self::WatchLimitHit => "watch_limit_hit",
            Self::Settings => "settings",
            Self::SettingsReadAt => "settings_read_at",
            Self::RebuiltAt => "rebuilt_at",
            Self::EmailSent => "email_sent",
            Self::EmailFailed => "email_failed",
            Self::EventSource => "event_source",
        }
    }
}

impl Index {
    pub fn set_meta(&self, key: MetaKey, value: &str) -> Result<()> {
        self.conn
            .prepare_cached(
                "INSERT INTO meta (key, value) VALUES (?1, ?2)
                 ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            )?
            .execute([key.as_str(), value])?;
        Ok(())
    }

    pub fn meta(&self, key: MetaKey) -> Result<Option<String>> {
        Ok(self
            .conn
            .prepare_cached("SELECT value FROM meta WHERE key = ?1")?
            .query_row([key.as_str()], |r| r.get(0))
            .optional()?)
    }
}
