//! `undelete versions FILE`: every version of one file that the vault knows,
//! oldest first, with the command that brings each one back.

use std::path::Path;
use std::process::ExitCode;

use serde_json::json;

use crate::clock;
use crate::config::Config;
use crate::model::{EntryKind, Version};
use crate::words::{CommandLine, bytes, display_path, json_path};

pub fn run(config: &Config, path: &Path, as_json: bool) -> anyhow::Result<ExitCode> {
    let (vault, index) = super::open_vault(config)?;
    let path = super::absolute(path);
    let versions: Vec<Version> = index
        .history(&path)?
        .into_iter()
        .filter(|v| v.observed.kind == EntryKind::File)
        .collect();
    if as_json {
        let rows: Vec<_> = versions.iter().map(version_json).collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(ExitCode::SUCCESS);
    }
    // A row that was seen but never copied (kept changing, excluded, deleted too
    // fast) is a moment the file was looked at, not a version anyone can get back.
    let (kept, not_kept): (Vec<&Version>, Vec<&Version>) = versions
        .iter()
        .partition(|v| v.observed.uncaptured.is_none() && v.observed.object.is_some());
    if versions.is_empty() {
        println!("No versions of {} are recorded.", display_path(&path));
        println!("(Was it in a protected folder? See: undelete status)");
        return Ok(ExitCode::FAILURE);
    }
    let now = clock::now();
    if kept.is_empty() {
        println!("No version of {} is kept.", display_path(&path));
    } else {
        println!("Versions of {}, oldest first:", display_path(&path));
    }
    for (n, v) in kept.iter().enumerate() {
        println!(
            "  {}) saved {}, {}: {}",
            n + 1,
            clock::spoken(v.observed.mtime_ns, now),
            bytes(v.observed.size),
            state(v, now)
        );
        if !v.is_current() {
            let command = CommandLine::undelete(vault.root())
                .arg("restore")
                .path(&path)
                .arg("--as-of")
                .arg(clock::rfc3339_exact(v.seen_at));
            println!("     {command}");
        }
    }
    let mut reasons: std::collections::BTreeMap<String, u64> = Default::default();
    for v in &not_kept {
        if let Some(why) = &v.observed.uncaptured {
            *reasons.entry(why.to_string()).or_default() += 1;
        }
    }
    for (why, times) in reasons {
        let times = match times {
            1 => "once".to_owned(),
            n => format!("{n} times"),
        };
        println!(
            "{}",
            crate::words::wrap_line(&format!(
                "Not kept, so not a version to bring back ({times}): {why}."
            ))
        );
    }
    Ok(if kept.is_empty() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// "the current one", "replaced Today 14:02", "deleted Yesterday 09:10".
fn state(v: &Version, now: i64) -> String {
    match (v.replaced_at, v.deleted_at) {
        (_, Some(at)) => format!(
            "{} {}",
            v.removal.map_or("deleted".to_owned(), |r| r.to_string()),
            clock::spoken(at, now)
        ),
        (Some(at), None) => format!("replaced {}", clock::spoken(at, now)),
        (None, None) => "the current one".to_owned(),
    }
}

fn version_json(v: &Version) -> serde_json::Value {
    let (path, path_bytes) = json_path(&v.path);
    let mut value = json!({
        "path": path,
        "size": v.observed.size,
        "modified_at": clock::rfc3339(v.observed.mtime_ns),
        "seen_at": clock::rfc3339_exact(v.seen_at),
        "replaced_at": v.replaced_at.map(clock::rfc3339),
        "deleted_at": v.deleted_at.map(clock::rfc3339),
        "current": v.is_current(),
        "recoverable": v.observed.uncaptured.is_none() && v.observed.object.is_some(),
        "reason": v.observed.uncaptured.as_ref().map(|u| u.to_string()),
        "reason_code": v.observed.uncaptured.as_ref().map(|u| u.code()),
    });
    if let Some(hex) = path_bytes {
        value["path_bytes"] = json!(hex);
    }
    value
}
