//! The daemon's loop and its commit policy: batches of messages, one transaction
//! each, committed when a batch is big, when events stop coming for a moment, or
//! at the latest every `GROUP_COMMIT`; the timers (heartbeat, fallback scan,
//! purge, watch-limit retry) and what waits for a commit (syncs, purges, reloads,
//! commands' amendments). It decides when; `apply`, `look` and `incidents` decide what.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::mpsc::RecvTimeoutError;
use std::time::Instant;

use super::event::{FsEvent, Msg};
use super::{
    BATCH, Daemon, DaemonError, FALLBACK_SCAN, GROUP_COMMIT, HEARTBEAT, LIMIT_CHECK, LINGER,
    PURGE_EVERY, SCAN_COMMIT_EVERY, TICK, record_settings, sweep, watch_limit,
};
use crate::clock;
use crate::config::Retention;
use crate::index::IndexError;
use crate::index::MetaKey;
use crate::model::AlertKind;
use crate::model::EntryKind;
use crate::words::{display_path, marked_spans, whole_in, whole_path};

impl Daemon {
    /// The watch limit left `path` (and what is below it) unwatched: say so loudly,
    /// keep running, and add the watch once the limit is raised (`retry_unwatched`).
    pub(super) fn watch_limit_reached(&mut self, path: Option<PathBuf>) -> Result<(), IndexError> {
        let limit = watch_limit().unwrap_or(0);
        if let Some(path) = &path {
            self.unwatched.insert(path.clone());
        }
        let message = format!(
            "The system limit on watched folders ({limit}) was reached{}. Changes in folders \
             beyond the limit are found by a scan every {} minutes instead of at once. To raise \
             the limit: echo fs.inotify.max_user_watches={} | sudo tee /etc/sysctl.d/90-undelete.conf \
             && sudo sysctl --system",
            path.map(|p| format!(" at {}", whole_path(&p)))
                .unwrap_or_default(),
            FALLBACK_SCAN.as_secs() / 60,
            (limit * 4).max(524_288),
        );
        if self
            .index
            .raise_alert(&AlertKind::WatchLimit, &message, clock::now())?
        {
            tracing::error!("{}", marked_spans(&message).0);
        }
        // The limit actually hit, for `doctor`: it may be raised meanwhile.
        self.index
            .set_meta(MetaKey::WatchLimitHit, &limit.to_string())?;
        self.last_limit_check = Instant::now();
        Ok(())
    }

    /// Folders the watch limit left unwatched get their watches once the limit is
    /// raised, without a restart: the limit is read again every few seconds (and at
    /// every sync), and when it changed, those folders are walked again, which adds
    /// the watches and finds what changed in them meanwhile. The alert is cleared
    /// once every folder is watched.
    pub(super) fn retry_unwatched(&mut self, now: i64, asked: bool) -> Result<(), DaemonError> {
        if self.unwatched.is_empty() || (!asked && self.last_limit_check.elapsed() < LIMIT_CHECK) {
            return Ok(());
        }
        self.last_limit_check = Instant::now();
        let hit: Option<u64> = self
            .index
            .meta(MetaKey::WatchLimitHit)?
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
            self.index.clear_alert(&AlertKind::WatchLimit, now)?;
            self.index.set_meta(MetaKey::WatchLimitHit, "")?;
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
    pub(super) fn serve(&mut self) -> Result<(), DaemonError> {
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
            // A quiet second with nothing due opens no transaction: one would take
            // the index's write lock every second for nothing.
            if quiet && open_since.is_none() && !self.quiet_work_due(clock::now()) {
                continue;
            }
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
            .set_meta(MetaKey::LastAlive, &clock::now().to_string())?;
        self.index
            .set_meta(MetaKey::DaemonStoppedAt, &clock::now().to_string())?;
        Ok(())
    }

    /// Applies one batch in the open transaction. Returns whether someone waits for
    /// the commit.
    pub(super) fn process(&mut self, batch: Vec<Msg>) -> Result<bool, DaemonError> {
        let now = clock::now();
        let mut rescan = false;
        let mut sync_asked = false;
        for msg in batch {
            match msg {
                Msg::Fs(FsEvent::Rescan, _) => rescan = true,
                Msg::Fs(event, by) => {
                    // Read already on its way here (see `identify::forward`).
                    let by = by.map(|actor| {
                        self.identities
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .person(&actor)
                    });
                    self.apply(event, by, now)?
                }
                Msg::Sync { reply, hashed } => {
                    sync_asked = true;
                    // Cookies go into every protected folder; when the kernel reports them
                    // back, every change made before this sync has been seen.
                    let roots: Vec<PathBuf> = self.roots.iter().map(|r| r.path.clone()).collect();
                    self.syncs.start(reply, &roots, hashed);
                }
                Msg::Purge(ask, reply) => self.purges_asked.push((ask, reply)),
                Msg::Reload => self.reload_asked = true,
                Msg::Shutdown => self.stopping = true,
                Msg::Hashed { staged, outcome } => self.hashed(staged, outcome)?,
                Msg::Amend(json, reply) => {
                    let answer = match serde_json::from_str(&json) {
                        Ok(crate::amend::Amendment::Hashed { copies }) => {
                            self.hashed_by_restore(&copies)?
                        }
                        Ok(amendment) => crate::amend::apply(&self.index, &amendment, now)?,
                        Err(e) => Err(format!("not a change this daemon knows ({e})")),
                    };
                    // A restore may have brought back everything an incident held.
                    self.ends_to_tell = true;
                    self.next_end = None;
                    self.amended.push((reply, answer));
                }
                Msg::Delivered(delivery) => self.delivered(&delivery)?,
                Msg::RestoreEnded(mark) => self.restore_ended(mark),
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
        Ok(self.syncs.any_ready(self.hashing == 0)
            || !self.notices.is_empty()
            || !self.amended.is_empty()
            || self.stopping
            || self.reload_asked
            || !self.purges_asked.is_empty()
            || self.purge_due())
    }

    /// What a quiet tick can have to do: each timer of `process` and `finish`, and
    /// the end of an incident (its gap passed). Everything else comes as a message.
    fn quiet_work_due(&self, now: i64) -> bool {
        let limit_check =
            !self.unwatched.is_empty() && self.last_limit_check.elapsed() >= LIMIT_CHECK;
        let fallback = (!self.unwatched.is_empty() || self.vault_full)
            && self.last_fallback_scan.elapsed() >= FALLBACK_SCAN;
        self.last_heartbeat.elapsed() >= HEARTBEAT
            || self.purge_due()
            || limit_check
            || fallback
            || self.ends_to_tell
            || self.next_end.is_none_or(|at| now > at)
            // Staged names held back while a restore ran go after a commit.
            || !self.staged_done.is_empty()
    }

    pub(super) fn purge_due(&self) -> bool {
        self.last_purge.is_none_or(|at| at.elapsed() >= PURGE_EVERY)
    }

    /// Commits the open transaction, then does what waited for it.
    pub(super) fn finish(&mut self) -> Result<(), DaemonError> {
        if self.last_heartbeat.elapsed() >= HEARTBEAT || self.syncs.any_ready(self.hashing == 0) {
            self.index
                .set_meta(MetaKey::LastAlive, &clock::now().to_string())?;
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
        self.syncs.answer_ready(self.hashing == 0);
        if self.purge_due() {
            self.last_purge = Some(Instant::now());
            let _ = self.purge(&self.config.retention, None);
        }
        if std::mem::take(&mut self.reload_asked) {
            self.reload(clock::now())?;
        }
        for (ask, reply) in std::mem::take(&mut self.purges_asked) {
            let shown: Option<HashSet<i64>> = ask.only.map(|ids| ids.into_iter().collect());
            let _ = reply.send(self.purge(&ask.rules, shown.as_ref()));
        }
        Ok(())
    }

    /// SIGHUP: the settings file is read again, between batches, and its rules
    /// apply from the next batch on. The watches stay in place throughout, so no change is missed; folders
    /// added are watched and scanned, folders removed are no longer recorded. A
    /// mistake keeps the settings in use, with an alert that names the line.
    /// `settings_read_at` is written last, so whoever sees it change sees the rest.
    pub(super) fn reload(&mut self, now: i64) -> Result<(), DaemonError> {
        let new = self.config.reread().and_then(|new| {
            let roots = new.checked_for_daemon()?;
            Ok((new, roots))
        });
        let (mut new, roots) = match new {
            Ok((_, roots)) if roots.is_empty() => {
                return self.settings_problem("no folder to protect is named", &[], now);
            }
            Ok(found) => found,
            Err(e) => return self.settings_problem(&e.to_string(), &e.paths(), now),
        };
        self.index.clear_alert(&AlertKind::Settings, now)?;
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
            self.tell_identities_the_roots();
            for gone in old.iter().filter(|p| !roots.contains(p)) {
                tracing::info!("no longer protecting {}", gone.display());
                if let Some(source) = &self.source {
                    source.unwatch_tree(gone);
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

    /// The settings read again cannot be used: an alert, whose message keeps the
    /// `paths` the problem names marked, so they are never split when it is shown.
    pub(super) fn settings_problem(
        &mut self,
        problem: &str,
        paths: &[&Path],
        now: i64,
    ) -> Result<(), DaemonError> {
        let shown: Vec<String> = paths.iter().map(|p| display_path(p)).collect();
        let message = format!(
            "The settings were read again but have a mistake, so the ones from \
             before are still in use: {}",
            whole_in(problem, &shown)
        );
        tracing::error!("{}", marked_spans(&message).0);
        self.index
            .raise_alert(&AlertKind::Settings, &message, now)?;
        self.index
            .set_meta(MetaKey::SettingsReadAt, &now.to_string())?;
        Ok(())
    }

    /// Applies the retention rules. Between batches, with everything committed and
    /// no copy under way, so no capture can come to refer to an object it removes.
    /// Asked by `purge`, only the copies it showed may go (`shown`).
    pub(super) fn purge(
        &self,
        rules: &Retention,
        shown: Option<&HashSet<i64>>,
    ) -> Result<String, String> {
        if let Err(e) = sweep(&self.vault, &self.index) {
            tracing::error!("cannot sweep the vault: {e}");
        }
        let now = clock::now();
        let outcome =
            crate::retention::plan(&self.index, &self.vault, rules, now).and_then(|mut plan| {
                let kept_since_shown = shown.map_or(0, |shown| plan.limit_to(shown));
                let mut done = crate::retention::execute(&plan, &self.index, &self.vault, now)?;
                done.kept_since_shown = kept_since_shown;
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

    pub(super) fn commit(&mut self) -> Result<(), DaemonError> {
        // Object names must be durable before the index points at them.
        self.vault.flush()?;
        self.vault.balance_reserve();
        self.index.commit()?;
        self.since_commit = 0;
        self.after_commit_hashing();
        Ok(())
    }

    /// Commits in the middle of a long scan, keeping the transaction open afterwards.
    pub(super) fn maybe_commit(&mut self) -> Result<(), DaemonError> {
        self.since_commit += 1;
        if self.since_commit >= SCAN_COMMIT_EVERY {
            self.commit()?;
            self.index.begin()?;
        }
        Ok(())
    }
}
