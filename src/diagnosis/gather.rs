//! Reading the facts: the system's watch limit, the vault's disk, whether the
//! daemon answers and how it was started, and what the index records.

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::{
    CONFIG_FILE, Disk, Facts, Recorded, RootState, Started, WATCHES_FILE, WATCHES_OVERRIDE,
};
use crate::clock;
use crate::config::Config;
use crate::control;
use crate::index::MetaKey;
use crate::index::{Index, IndexError};
use crate::model::Delivery;
use crate::vault::Vault;

impl Facts {
    /// What is known before the vault is opened: the time, the settings, the
    /// system's watch limit, and whether there is a vault at all.
    pub fn start(config: &Config) -> Self {
        Self {
            now: clock::now(),
            vault: config.vault.clone(),
            // The folder alone is made by install-service before the daemon ever ran.
            vault_found: config.vault.join("objects").is_dir(),
            watch_limit: read_watch_limit(),
            email_to: config.incidents.email.as_ref().map(|e| e.recipients()),
            ..Self::default()
        }
    }

    /// What the vault and its index say. `index` is the index as it opened, or why
    /// it did not: a damaged index is a finding, not a reason to stop, since the
    /// other checks still help.
    pub fn read(&mut self, vault: &Vault, index: Result<Index, IndexError>) {
        self.disk = disk_space(&self.vault);
        self.daemon_running = control::is_running(&vault.socket_path());
        let index = match index {
            Ok(index) => index,
            Err(broken) => {
                self.index_problems.push(index_error_words(&broken));
                return;
            }
        };
        if self.daemon_running {
            self.started = Started::of_daemon(&vault.socket_path());
        }
        match index.check_integrity() {
            Ok(problems) => self.index_problems.extend(problems),
            Err(e) => self.index_problems.push(index_error_words(&e)),
        }
        match recorded(&index, &self.vault) {
            Ok(recorded) => {
                let roots: Vec<PathBuf> = recorded
                    .roots
                    .iter()
                    .filter(|r| r.active)
                    .map(|r| r.path.clone())
                    .collect();
                let mounted = crate::mount::mounted_on(&self.vault);
                self.shares = crate::samba::shares().map(|shares| {
                    crate::samba::previous_versions(&shares, &roots, mounted.as_deref())
                });
                self.recorded = Some(recorded);
            }
            Err(e) => self.index_problems.push(index_error_words(&e)),
        }
        // One damaged page often fails several reads the same way.
        self.index_problems.dedup();
    }
}

impl Started {
    /// Reads what the process that answers on `socket` was started with.
    fn of_daemon(socket: &Path) -> Self {
        let Some(pid) = control::request(socket, "PING", std::time::Duration::from_secs(5))
            .ok()
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            return Self::Unknown;
        };
        let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            return Self::Unknown;
        };
        let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
        let config = args
            .iter()
            .position(|a| *a == b"--config")
            .and_then(|i| args.get(i + 1))
            .map(|a| PathBuf::from(std::ffi::OsStr::from_bytes(a)))
            .or_else(|| {
                args.iter()
                    .find_map(|a| a.strip_prefix(b"--config="))
                    .map(|a| PathBuf::from(std::ffi::OsStr::from_bytes(a)))
            });
        let by_systemd = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
            .is_ok_and(|cgroup| cgroup.contains("/undelete.service"));
        let flags = args.iter().any(|a| *a == b"--protect");
        match (by_systemd, config, flags) {
            (true, settings, _) => Self::Service {
                settings: settings.unwrap_or_else(|| CONFIG_FILE.into()),
            },
            (false, Some(settings), false) => Self::ByHand { settings, pid },
            _ => Self::Flags { pid },
        }
    }
}

/// SQLite's own words: the check's message already says the index is damaged.
fn index_error_words(err: &IndexError) -> String {
    match err {
        IndexError::Sql(e) => e.to_string(),
        other => other.to_string(),
    }
}

fn read_watch_limit() -> Option<u64> {
    let file = std::env::var_os(WATCHES_OVERRIDE)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(WATCHES_FILE));
    std::fs::read_to_string(file).ok()?.trim().parse().ok()
}

fn disk_space(path: &Path) -> Option<Disk> {
    let s = rustix::fs::statvfs(path).ok()?;
    Some(Disk {
        free: s.f_bavail.saturating_mul(s.f_frsize),
        total: s.f_blocks.saturating_mul(s.f_frsize),
    })
}

fn recorded(index: &Index, vault: &Path) -> Result<Recorded, IndexError> {
    let roots: Vec<RootState> = index
        .roots()?
        .into_iter()
        .map(|r| RootState {
            on_disk: r.path.is_dir(),
            path: r.path,
            active: r.active,
        })
        .collect();
    let mut folders = 0;
    for root in roots.iter().filter(|r| r.active && r.on_disk) {
        folders += index.folders_below(&root.path)?;
    }
    let totals = index.totals()?;
    let settings: Value = index
        .meta(MetaKey::Settings)?
        .and_then(|s| serde_json::from_str(&s).ok())
        .unwrap_or_default();
    let meta_time = |key: MetaKey| -> Result<Option<i64>, IndexError> {
        Ok(index.meta(key)?.and_then(|s| s.parse().ok()))
    };
    let delivery = |key: MetaKey| -> Result<Option<Delivery>, IndexError> {
        Ok(index.meta(key)?.and_then(|s| serde_json::from_str(&s).ok()))
    };
    Ok(Recorded {
        roots,
        folders,
        files_protected: totals.files_protected,
        unprotected: index.unprotected_by_reason()?,
        exclude: settings["exclude"]
            .as_array()
            .map(|rules| {
                rules
                    .iter()
                    .filter_map(|r| r.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default(),
        max_file_size: settings["max_file_size"].as_u64(),
        last_capture: totals.last_capture,
        started_at: meta_time(MetaKey::DaemonStartedAt)?,
        last_alive: meta_time(MetaKey::LastAlive)?,
        email_sent: delivery(MetaKey::EmailSent)?,
        email_failed: delivery(MetaKey::EmailFailed)?,
        cut_offs: index
            .incidents(50)?
            .into_iter()
            .filter_map(|i| Some((i.code, i.cut_off?)))
            .collect(),
        watch_limit_hit: index
            .meta(MetaKey::WatchLimitHit)?
            .and_then(|s| s.parse().ok()),
        event_source: index
            .meta(MetaKey::EventSource)?
            .and_then(|s| serde_json::from_str(&s).ok()),
        alerts: crate::incident::current_alerts(index, vault)?,
    })
}
