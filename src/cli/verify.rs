//! `undelete verify`: re-read every copy in the vault and check its hash. A copy
//! made by cloning and not hashed yet has no hash to check: it is read whole and
//! checked against what it had when it was made (size, modification time, the
//! file itself), and said apart.

use std::process::ExitCode;

use serde_json::json;

use crate::config::Config;
use crate::vault::DamageError;
use crate::words::{bytes, count, display_path, json_path};

pub fn run(config: &Config, as_json: bool) -> anyhow::Result<ExitCode> {
    let (vault, index) = super::open_vault(config)?;
    let mut index_problems = index.check_integrity()?;
    // The sums status shows are kept as rows change; counted again, they must agree.
    let (kept, counted) = (index.totals()?, index.recounted_totals()?);
    let totals_match = kept == counted;
    if !totals_match {
        tracing::warn!("totals kept {kept:?}, counted from the rows {counted:?}");
        index_problems.push(
            "the totals status shows are out of step with the files recorded; \
             rebuild-index counts them again"
                .to_owned(),
        );
    }
    let objects = index.objects_with_paths()?;
    let mut checked_bytes = 0;
    let mut bad = Vec::new();
    let mut staged = 0u64;
    for (id, size, paths) in &objects {
        match vault.verify(id) {
            Ok(_) if id.is_staged() => {
                checked_bytes += size;
                staged += 1;
            }
            Ok(_) => checked_bytes += size,
            Err(damage) => bad.push((damage, paths)),
        }
    }
    // Copies on disk that no version refers to: space taken for nothing, which the
    // service removes when it starts and before it purges.
    let mut unknown = (0u64, 0u64);
    for (id, size) in vault.object_files()? {
        if !index.refers_to(&id)? {
            unknown.0 += 1;
            unknown.1 += size;
        }
    }
    if as_json {
        let value = json!({
            "objects_checked": objects.len(),
            "bytes_checked": checked_bytes,
            "index_problems": index_problems,
            "totals_match": totals_match,
            "unrecorded_objects": unknown.0,
            "unrecorded_bytes": unknown.1,
            "not_hashed_yet": staged,
            "damaged": bad.iter().map(|(damage, paths)| json!({
                "problem": match damage {
                    DamageError::Missing => "missing",
                    DamageError::Damaged => "damaged",
                    DamageError::Unreadable(_) => "unreadable",
                },
                "paths": paths.iter().map(|p| json_path(p).0).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        for problem in &index_problems {
            println!("The index is damaged: {problem}");
        }
        for (damage, paths) in &bad {
            for path in paths.iter() {
                println!("{}: the copy is {damage}", display_path(path));
            }
        }
        if unknown.0 > 0 {
            println!(
                "{} copies in the vault ({}) belong to no file the index knows; the \
                 undelete service removes them when it starts.",
                count(unknown.0),
                bytes(unknown.1)
            );
        }
        if bad.is_empty() && index_problems.is_empty() {
            println!(
                "All {} copies in the vault are intact ({} checked).",
                count(objects.len() as u64),
                bytes(checked_bytes)
            );
            if staged > 0 {
                println!(
                    "{} of them are not hashed yet: each is there, unchanged since it \
                     was made (same size and modification time). The service hashes \
                     them in the background.",
                    count(staged)
                );
            }
        } else {
            println!(
                "{} of {} copies in the vault are damaged or missing.",
                count(bad.len() as u64),
                count(objects.len() as u64)
            );
        }
    }
    Ok(if bad.is_empty() && index_problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
