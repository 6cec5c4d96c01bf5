//! Deletions into incidents, incidents that are over, and the mass-deletion and
//! vault-full alerts they raise, told once committed (the commands and e-mails
//! themselves run in `alert`). It never deletes or restores anything.

use super::{Daemon, DaemonError, alert};
use crate::index::MetaKey;
use crate::model::AlertKind;
use crate::model::Uncaptured;

impl Daemon {
    /// Groups new deletions into incidents, raises the mass-deletion alert for an
    /// incident that crosses the threshold, and ends the incidents no deletion joined
    /// for the incident gap.
    pub(super) fn update_incidents(&mut self, now: i64) -> Result<(), DaemonError> {
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
            let incident = self.trip_breaker(incident, now)?;
            self.mass_deletion_alert(&incident, now)?;
        }
        self.update_overwrites(now)?;
        self.watch_vault_growth(now)?;
        self.end_incidents(now)
    }

    /// Groups new versions with signs of encryption into overwrite incidents. Such
    /// an incident exists only once its threshold is crossed, so a new one is
    /// alerted at once.
    fn update_overwrites(&mut self, now: i64) -> Result<(), DaemonError> {
        let rules = crate::index::OverwriteRules {
            files: self.config.incidents.overwrite_files,
            window_ns: self.config.incidents.window_ns,
            gap_ns: self.config.incidents.gap_ns,
        };
        let codes = &mut self.codes;
        let changed = self
            .index
            .group_overwrites(rules, &mut || codes.next_code())?;
        if !changed.is_empty() {
            self.next_end = None;
        }
        for id in changed {
            let Some(incident) = self.index.incident(id)? else {
                continue;
            };
            if incident.alerted_at.is_none() {
                self.index.mark_incident_alerted(id, now, true)?;
                let incident = self.trip_breaker(incident, now)?;
                self.mass_deletion_alert(&incident, now)?;
            }
        }
        Ok(())
    }

    /// Ends the incidents that are over, and tells the end of those that were alerted
    /// (with their final counts). Idle, this costs a comparison per tick: the index
    /// is asked only when the first open incident is due, or something changed.
    pub(super) fn end_incidents(&mut self, now: i64) -> Result<(), DaemonError> {
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

    pub(super) fn mass_deletion_alert(
        &mut self,
        incident: &crate::model::Incident,
        now: i64,
    ) -> Result<(), DaemonError> {
        let message = crate::incident::mass_deletion_message(incident, self.vault.root());
        tracing::warn!("{message}");
        self.index.raise_alert(
            &AlertKind::MassDeletion(incident.code.clone()),
            &message,
            now,
        )?;
        self.notice(crate::incident::AlertEvent::Started, incident.clone());
        Ok(())
    }

    /// Tells the alert command and the e-mail, once what they are told is committed:
    /// the restore command they are handed finds its incident in the index.
    pub(super) fn notice(
        &mut self,
        event: crate::incident::AlertEvent,
        incident: crate::model::Incident,
    ) {
        let rules = &self.config.incidents;
        if rules.alert_command.is_none() && rules.email.is_none() {
            return;
        }
        self.notices.push(alert::Notice {
            event,
            about: alert::About::Incident(Box::new(incident)),
            vault: self.vault.root().to_owned(),
            command: rules.alert_command.clone(),
            email: rules.email.clone(),
        });
    }

    /// Raises the alert that the vault grows unusually fast: by more than the share
    /// of the size cap (or of its own size, and 1 GiB at least) the rules allow,
    /// within their window. Measured from the vault's size as the index sums it,
    /// sampled as the daemon goes, and never across the close of the last such
    /// alert: once acknowledged, only new growth counts. A daemon started anew
    /// measures from its start.
    pub(super) fn watch_vault_growth(&mut self, now: i64) -> Result<(), DaemonError> {
        let rules = &self.config.incidents;
        let window = rules.growth_window_ns.max(1);
        let size = self.index.totals()?.object_bytes;
        let since = (now - window).max(
            self.index
                .last_closed(&AlertKind::VaultGrowth)?
                .unwrap_or(i64::MIN),
        );
        while self.vault_sizes.front().is_some_and(|&(at, _)| at < since) {
            self.vault_sizes.pop_front();
        }
        // A sample every sixtieth of the window bounds the memory, whatever the pace.
        if self
            .vault_sizes
            .back()
            .is_none_or(|&(at, _)| now - at >= window / 60)
        {
            self.vault_sizes.push_back((now, size));
        }
        let Some(&(from_at, from)) = self.vault_sizes.iter().min_by_key(|(_, bytes)| *bytes) else {
            return Ok(());
        };
        let grown = size.saturating_sub(from);
        let cap = self.config.retention.max_vault_bytes;
        let limit = match cap {
            Some(cap) => cap / 100 * rules.growth_percent,
            None => (from / 100 * rules.growth_percent).max(1 << 30),
        };
        if grown <= limit || self.index.alert_open(&AlertKind::VaultGrowth)? {
            return Ok(());
        }
        let growth = crate::model::VaultGrowth {
            grown,
            since: from_at,
            window_ns: window,
            limit,
            percent: rules.growth_percent,
            cap,
            size,
        };
        let message = crate::incident::vault_growth_message(&growth, self.vault.root());
        tracing::warn!("{message}");
        self.index
            .raise_alert(&AlertKind::VaultGrowth, &message, now)?;
        let rules = &self.config.incidents;
        if rules.alert_command.is_some() || rules.email.is_some() {
            self.notices.push(alert::Notice {
                event: crate::incident::AlertEvent::Started,
                about: alert::About::VaultGrowth(growth),
                vault: self.vault.root().to_owned(),
                command: rules.alert_command.clone(),
                email: rules.email.clone(),
            });
        }
        Ok(())
    }

    /// Keeps how the last alert e-mail went, and the last that failed, for `doctor`.
    pub(super) fn delivered(
        &mut self,
        delivery: &crate::model::Delivery,
    ) -> Result<(), DaemonError> {
        let key = if delivery.error.is_some() {
            MetaKey::EmailFailed
        } else {
            MetaKey::EmailSent
        };
        let value = serde_json::to_string(delivery).unwrap_or_default();
        self.index.set_meta(key, &value)?;
        Ok(())
    }

    /// Raises the vault-full alert on the first failure and clears it on the next copy
    /// written (`copied`).
    pub(super) fn note_vault_state(
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
                    crate::words::whole_path(self.vault.root())
                );
                tracing::error!("{}", crate::words::marked_spans(&message).0);
                // Before anything is written down: what follows needs the room.
                self.vault.release_reserve();
                self.index
                    .raise_alert(&AlertKind::VaultFull, &message, now)?;
            }
            None if self.vault_full && copied => {
                self.vault_full = false;
                tracing::info!("the vault has space again; protection resumed");
                self.index.clear_alert(&AlertKind::VaultFull, now)?;
            }
            _ => {}
        }
        Ok(())
    }
}
