//! Retention: how long copies of deleted files and older versions are kept, and
//! the purge that removes the rest, so the vault never fills the disk.
//!
//! A plan first (which copies go, and why), then its execution. Only older
//! versions are ever candidates (deleted, moved out or replaced): the copy of a
//! file that still exists is never purged, and an object is removed only when no
//! version at all refers to it any more. Purged versions stay in the history,
//! marked, so a later report says "purged by the retention rules on DATE"
//! instead of "unknown". Oldest first: when space is short, what was deleted
//! longest ago goes first.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

use crate::config::Retention;
use crate::ids::ObjectId;
use crate::index::{Index, IndexError};
use crate::model::{AlertKind, KeptVersion};
use crate::vault::{Vault, VaultError};

/// Why a copy is purged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Why {
    /// Deleted or replaced longer ago than `keep_deleted`.
    Age,
    /// More older versions of the path than `keep_versions`.
    Versions,
    /// The vault is over `max_vault_size`, or its disk under `min_free_disk`.
    Space,
}

impl std::fmt::Display for Why {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Age => "kept for the full retention time",
            Self::Versions => "more older versions than the rules keep",
            Self::Space => "room was needed in the vault",
        })
    }
}

#[derive(Debug, Clone)]
pub struct Purge {
    pub version: KeptVersion,
    pub why: Why,
}

#[derive(Debug, Default)]
pub struct PurgePlan {
    pub purges: Vec<Purge>,
    /// Bytes of objects that no version will refer to after the purge.
    pub bytes_freed: u64,
    /// Space still short after purging everything allowed (0 when none).
    pub still_short: u64,
    /// Older copies the rules would purge but an incident holds: each was current
    /// when the incident (by code) began, and is what its restore brings back.
    pub held: Vec<(KeptVersion, String)>,
    /// The open alert (in words: "the alert of incident K7Q-4MD") that keeps the size
    /// rules from purging anything: a mass alert, or the vault growing unusually
    /// fast. An attacker filling the vault must not push out the past.
    pub space_paused_by: Option<String>,
}

impl PurgePlan {
    pub fn count(&self, why: Why) -> usize {
        self.purges.iter().filter(|p| p.why == why).count()
    }

    /// The version ids the plan purges, as `purge` shows them before asking the
    /// running daemon.
    pub fn version_ids(&self) -> Vec<i64> {
        self.purges.iter().map(|p| p.version.id).collect()
    }

    /// Keeps only the purges of versions in `shown`. Returns how many shown
    /// versions this plan no longer purges: since they were shown, each was held
    /// by a new incident, brought back, or otherwise kept. `bytes_freed` is left as
    /// planned; what a purge frees is counted when it is carried out.
    pub fn limit_to(&mut self, shown: &HashSet<i64>) -> usize {
        self.purges.retain(|p| shown.contains(&p.version.id));
        shown.len().saturating_sub(self.purges.len())
    }
}

/// What `purge` asks of the running daemon: purge by these rules, and only the
/// copies the command showed (`only`). The daemon plans again, since something may
/// have changed since the command planned, and carries out only what both plans
/// name: nothing is purged that the person was not shown, and nothing shown is
/// purged that the rules now keep.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct PurgeAsk {
    pub rules: Retention,
    /// `None`: whatever the rules purge (the daemon's own hourly purge).
    pub only: Option<Vec<i64>>,
}

#[derive(Debug, thiserror::Error)]
pub enum PurgeError {
    #[error(transparent)]
    Index(#[from] IndexError),
    #[error(transparent)]
    Vault(#[from] VaultError),
}

/// Works out what the rules purge now; changes nothing.
pub fn plan(
    index: &Index,
    vault: &Vault,
    rules: &Retention,
    now: i64,
) -> Result<PurgePlan, PurgeError> {
    let mut kept = index.kept_old_versions()?;
    let held: HashMap<i64, String> = index
        .held_versions(rules.hold_after_incident_ns, now)?
        .into_iter()
        .collect();
    // Oldest first, so space is made from what was gone longest.
    kept.sort_by_key(|k| (k.gone_at, k.id));
    let mut references = index.object_references()?;
    let mut plan = PurgePlan::default();
    let mut rest = Vec::new();
    let cutoff = now.saturating_sub(rules.keep_deleted_ns);
    for version in kept {
        if let Some(code) = held.get(&version.id) {
            let would = version.gone_at < cutoff || version.rank > rules.keep_versions;
            if would {
                plan.held.push((version, code.clone()));
            }
            continue;
        }
        let why = if version.gone_at < cutoff {
            Some(Why::Age)
        } else if version.rank > rules.keep_versions {
            Some(Why::Versions)
        } else {
            None
        };
        match why {
            Some(why) => plan.take(version, why, &mut references),
            None => rest.push(version),
        }
    }
    let mut short = space_short(index, vault, rules)?;
    plan.space_paused_by = index.open_alerts()?.iter().find_map(|a| match &a.kind {
        AlertKind::MassDeletion(code) => Some(format!("the alert of incident {code}")),
        AlertKind::VaultGrowth => Some("the alert that the vault grows unusually fast".to_owned()),
        _ => None,
    });
    if short > 0 && plan.space_paused_by.is_some() {
        plan.still_short = short;
        short = 0;
    }
    // For room, a copy goes only with every other version that shares its content,
    // and only if no file that still exists does: purging a version whose copy stays
    // in the vault would make it unrestorable and free nothing.
    let mut groups: Vec<(ObjectId, Vec<KeptVersion>)> = Vec::new();
    let mut group_of: HashMap<ObjectId, usize> = HashMap::new();
    for version in rest {
        let Some(id) = version.object else { continue };
        let at = *group_of.entry(id).or_insert_with(|| {
            groups.push((id, Vec::new()));
            groups.len() - 1
        });
        groups[at].1.push(version);
    }
    for (id, versions) in groups {
        if plan.bytes_freed >= short {
            break;
        }
        let only_these = references
            .get(&id)
            .is_some_and(|&(_, refs)| refs == versions.len() as u64);
        if only_these {
            for version in versions {
                plan.take(version, Why::Space, &mut references);
            }
        }
    }
    if plan.space_paused_by.is_none() {
        plan.still_short = short.saturating_sub(plan.bytes_freed);
    }
    Ok(plan)
}

impl PurgePlan {
    /// Adds a purge; counts the object's bytes once its last reference goes.
    fn take(
        &mut self,
        version: KeptVersion,
        why: Why,
        references: &mut HashMap<ObjectId, (u64, u64)>,
    ) {
        if let Some(id) = &version.object
            && let Some((size, refs)) = references.get_mut(id)
        {
            *refs = refs.saturating_sub(1);
            if *refs == 0 {
                self.bytes_freed += *size;
            }
        }
        self.purges.push(Purge { version, why });
    }
}

/// How many bytes the vault must give back to meet the size and free-space rules.
fn space_short(index: &Index, vault: &Vault, rules: &Retention) -> Result<u64, PurgeError> {
    // Kept by the index as copies come and go; copies it does not know of are swept
    // before every purge, so this is what the disk holds.
    let used = index.totals()?.object_bytes;
    let over_cap = rules
        .max_vault_bytes
        .map_or(0, |max| used.saturating_sub(max));
    let under_free = match (rules.min_free_bytes, crate::vault::free_space(vault.root())) {
        (Some(min), Some(free)) => min.saturating_sub(free),
        _ => 0,
    };
    Ok(over_cap.max(under_free))
}

/// What a purge did.
#[derive(Debug, Default)]
pub struct Purged {
    pub versions: usize,
    /// Copies shown by `purge` that were kept after all (see `PurgePlan::limit_to`).
    pub kept_since_shown: usize,
    pub objects: usize,
    pub bytes: u64,
    /// Objects whose file could not be removed (they are forgotten all the same).
    pub not_removed: Vec<(PathBuf, String)>,
}

/// Carries out the plan. The versions are marked and the objects forgotten in one
/// transaction, then the files are removed: after a crash in between, a file no
/// one refers to is left, never a version whose copy is gone unrecorded.
///
/// The caller makes sure nothing is being captured meanwhile (the daemon runs it
/// between batches; the command line only while the daemon is stopped): a capture
/// could otherwise come to refer to an object this is removing.
pub fn execute(
    plan: &PurgePlan,
    index: &Index,
    vault: &Vault,
    now: i64,
) -> Result<Purged, PurgeError> {
    if plan.purges.is_empty() {
        return Ok(Purged::default());
    }
    let versions: Vec<&KeptVersion> = plan.purges.iter().map(|p| &p.version).collect();
    let forgotten = index.batch(|index| {
        index.mark_purged(&versions, now)?;
        index.forget_unreferenced_objects()
    })?;
    let mut done = Purged {
        versions: versions.len(),
        ..Purged::default()
    };
    for (id, size) in forgotten {
        match vault.remove_object(&id) {
            Ok(()) => {
                done.objects += 1;
                done.bytes += size;
            }
            Err(e) => done
                .not_removed
                .push((vault.object_path(&id), e.to_string())),
        }
    }
    Ok(done)
}

/// One line for people: "Purged 12 older copies (3.4 GB freed)."
pub fn summary(done: &Purged) -> String {
    let mut out = if done.versions == 0 {
        "Nothing needed purging.".to_owned()
    } else {
        format!(
            "Purged {} older {} ({} freed).",
            crate::words::count(done.versions as u64),
            if done.versions == 1 { "copy" } else { "copies" },
            crate::words::bytes(done.bytes)
        )
    };
    if done.kept_since_shown > 0 {
        out.push_str(&format!(
            " {} of the copies listed {} kept: since the list was made, the rules keep {} \
             (brought back, or held by an incident).",
            crate::words::count(done.kept_since_shown as u64),
            if done.kept_since_shown == 1 {
                "was"
            } else {
                "were"
            },
            if done.kept_since_shown == 1 {
                "it"
            } else {
                "them"
            },
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::tests::{deleted_at, file};
    use std::path::Path;

    #[test]
    fn room_is_never_made_by_purging_a_copy_a_live_file_still_uses() {
        let dir = tempfile::tempdir().unwrap();
        let vault = Vault::open(&dir.path().join("vault")).unwrap();
        let index = Index::open(&vault.index_path()).unwrap();
        let root = index.set_roots(&[PathBuf::from("/s")], 1).unwrap()[0].id;
        let gone = deleted_at(10);
        // "old" was deleted, but "copy" still exists with the same content (object 1);
        // "alone" was deleted too, with content no one else has (object 2).
        for (path, object) in [("/s/old", 1), ("/s/copy", 1), ("/s/alone", 2)] {
            index
                .insert_version(Path::new(path), root, &file(object, 1000), 5)
                .unwrap();
        }
        index
            .mark_removed(Path::new("/s/old"), false, &gone)
            .unwrap();
        index
            .mark_removed(Path::new("/s/alone"), false, &gone)
            .unwrap();

        let rules = Retention {
            max_vault_bytes: Some(0),
            ..Retention::default()
        };
        let plan = plan(&index, &vault, &rules, 20).unwrap();
        let purged: Vec<&Path> = plan
            .purges
            .iter()
            .map(|p| p.version.path.as_path())
            .collect();
        assert_eq!(purged, [Path::new("/s/alone")]);
        assert_eq!(plan.bytes_freed, 1000);
        assert_eq!(
            plan.still_short, 1000,
            "the shared copy cannot be given back"
        );
    }

    /// `purge` shows a plan, then the running daemon plans again: a copy deleted in
    /// between was never shown and must not go, and a copy the rules keep by then
    /// (here: rules made kinder) must not go either, and is counted.
    #[test]
    fn a_purge_asked_by_the_command_removes_only_what_it_showed() {
        let dir = tempfile::tempdir().unwrap();
        let vault = Vault::open(&dir.path().join("vault")).unwrap();
        let index = Index::open(&vault.index_path()).unwrap();
        let root = index.set_roots(&[PathBuf::from("/s")], 1).unwrap()[0].id;
        let delete = |path: &str, object: u8, at: i64| {
            index
                .insert_version(Path::new(path), root, &file(object, 10), at - 5)
                .unwrap();
            let gone = deleted_at(at);
            index.mark_removed(Path::new(path), false, &gone).unwrap();
        };
        let rules = Retention {
            keep_deleted_ns: 0,
            ..Retention::default()
        };
        delete("/s/shown", 1, 10);
        let shown: HashSet<i64> = plan(&index, &vault, &rules, 20)
            .unwrap()
            .version_ids()
            .into_iter()
            .collect();
        assert_eq!(shown.len(), 1);

        delete("/s/deleted-since", 2, 30);
        let mut again = plan(&index, &vault, &rules, 40).unwrap();
        assert_eq!(again.purges.len(), 2, "both are due by the rules");
        assert_eq!(again.limit_to(&shown), 0);
        let paths: Vec<&Path> = again
            .purges
            .iter()
            .map(|p| p.version.path.as_path())
            .collect();
        assert_eq!(paths, [Path::new("/s/shown")]);

        let kinder = Retention {
            keep_deleted_ns: 1_000,
            ..rules
        };
        let mut kept = plan(&index, &vault, &kinder, 40).unwrap();
        assert_eq!(kept.limit_to(&shown), 1, "the shown copy is kept now");
        assert!(kept.purges.is_empty());
        let words = summary(&Purged {
            kept_since_shown: 1,
            ..Purged::default()
        });
        assert!(words.contains("1 of the copies listed was kept"), "{words}");
    }
}
