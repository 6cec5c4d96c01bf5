//! `undelete list`: the recycle bin view.

use std::path::PathBuf;
use std::process::ExitCode;

use serde_json::json;

use crate::clock;
use crate::config::Config;
use crate::model::{EntryKind, Person, Selection, Version};
use crate::words::{bytes, display_path, json_path};

pub fn run(
    config: &Config,
    under: Option<PathBuf>,
    all: bool,
    as_json: bool,
) -> anyhow::Result<ExitCode> {
    let (_vault, index) = super::open_vault(config)?;
    let versions = index.select(&Selection {
        under: under.as_deref().map(super::absolute),
        include_live: all,
        // What a restore brought back is no longer missing: shown with --all only.
        include_restored: all,
        ..Selection::default()
    })?;
    if as_json {
        let rows: Vec<_> = versions.iter().map(entry_json).collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(ExitCode::SUCCESS);
    }
    if versions.is_empty() {
        println!(
            "{}",
            if all {
                "Nothing is recorded yet."
            } else {
                "No deleted files."
            }
        );
        return Ok(ExitCode::SUCCESS);
    }
    let now = clock::now();
    for v in &versions {
        let when = match v.deleted_at {
            Some(at) => clock::spoken(at, now),
            None => "(still there)".to_owned(),
        };
        let mut note = match (&v.observed.uncaptured, recoverable(v), v.restored_at) {
            (_, _, Some(at)) => format!("  (restored {})", clock::local(at)),
            (Some(why), _, _) => format!("  (cannot be brought back: {why})"),
            (None, false, _) => "  (cannot be brought back)".to_owned(),
            _ => String::new(),
        };
        if let (Some(person), Some(_)) = (&v.deleted_by, v.deleted_at) {
            note.push_str(&format!("  (deleted by {person})"));
        }
        println!(
            "{when:<22} {:>9}  {}{note}",
            bytes(v.observed.size),
            display_path(&v.path)
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// A deleted (or live) version can be brought back if its content was kept.
fn recoverable(v: &Version) -> bool {
    v.observed.uncaptured.is_none()
        && match v.observed.kind {
            EntryKind::File => v.observed.object.is_some(),
            EntryKind::Symlink => v.observed.link_target.is_some(),
            EntryKind::Dir => true,
            EntryKind::Special => false,
        }
}

fn entry_json(v: &Version) -> serde_json::Value {
    let (path, path_bytes) = json_path(&v.path);
    let mut value = json!({
        "path": path,
        "size": v.observed.size,
        "kind": match v.observed.kind {
            EntryKind::File => "file",
            EntryKind::Symlink => "symlink",
            EntryKind::Dir => "directory",
            EntryKind::Special => "special",
        },
        "deleted_at": v.deleted_at.map(clock::rfc3339),
        "deleted_at_approximate": v.deleted_approx,
        "last_seen_at": v.last_seen_at.filter(|_| v.deleted_approx).map(clock::rfc3339),
        "how": v.removal.map(|r| r.to_string()),
        "modified_at": clock::rfc3339(v.observed.mtime_ns),
        "recoverable": recoverable(v),
        "reason": v.observed.uncaptured.as_ref().map(|u| u.to_string()),
        "reason_code": v.observed.uncaptured.as_ref().map(|u| u.code()),
        "restored_at": v.restored_at.map(clock::rfc3339),
        "changed_by": v.changed_by.as_ref().map(Person::json),
        "deleted_by": v.deleted_by.as_ref().map(Person::json),
    });
    if let Some(hex) = path_bytes {
        value["path_bytes"] = json!(hex);
    }
    value
}
