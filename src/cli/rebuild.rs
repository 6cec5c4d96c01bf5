//! `undelete rebuild-index`: a new index from the journal kept in the vault.

use std::process::ExitCode;

use serde_json::json;

use crate::config::Config;
use crate::rebuild::{self, Rebuilt};
use crate::words::{bytes, count, display_path, whole_path, wrap};

pub fn run(config: &Config, as_json: bool) -> anyhow::Result<ExitCode> {
    let vault = super::open_vault_folder(config)?;
    let plan = rebuild::plan(&vault)?;
    if !as_json {
        println!(
            "Rebuilding the index of the vault {} from its journal…",
            display_path(vault.root())
        );
    }
    let rebuilt = rebuild::execute(&plan, &vault)?;
    if as_json {
        println!("{}", serde_json::to_string_pretty(&summary_json(&rebuilt))?);
    } else {
        print_summary(&rebuilt);
    }
    Ok(ExitCode::SUCCESS)
}

fn summary_json(r: &Rebuilt) -> serde_json::Value {
    json!({
        "records": r.replayed.records,
        "records_skipped": r.replayed.skipped.len(),
        "skipped": r.replayed.skipped,
        "versions_before_journal": r.replayed.versions_before,
        "versions": r.versions,
        "files_protected": r.totals.files_protected,
        "deleted_recoverable": r.totals.deleted_recoverable,
        "deleted_lost": r.totals.deleted_lost,
        "incidents": r.incidents,
        "objects_missing": r.objects_missing,
        "damaged_index_kept_as": r.kept_as,
    })
}

fn print_summary(r: &Rebuilt) {
    let t = &r.totals;
    println!(
        "The index is rebuilt from {} records of the journal.",
        count(r.replayed.records)
    );
    println!(
        "  Files protected: {} ({})",
        count(t.files_protected),
        bytes(t.bytes_protected)
    );
    println!(
        "  Deleted files that can be brought back: {}",
        count(t.deleted_recoverable)
    );
    println!(
        "  Deleted files that cannot be brought back: {}",
        count(t.deleted_lost)
    );
    println!(
        "  Deletion incidents: {} (with the codes they had)",
        count(r.incidents as u64)
    );
    println!(
        "  Copies missing from the vault: {}",
        count(r.objects_missing)
    );
    println!(
        "  Records skipped: {}",
        count(r.replayed.skipped.len() as u64)
    );
    for skipped in &r.replayed.skipped {
        println!(
            "{}",
            wrap(&format!(
                "    line {} of {}: {}",
                skipped.line,
                whole_path(&skipped.file),
                skipped.why
            ))
        );
    }
    if r.replayed.versions_before > 0 {
        println!(
            "{}",
            wrap(&format!(
                "The journal was started when the index already held {} versions \
                 (made by an older version of undelete): those are not in the new index.",
                count(r.replayed.versions_before)
            ))
        );
    }
    if r.objects_missing > 0 {
        println!(
            "{}",
            wrap("Some copies are missing from the vault. To see which files: undelete verify")
        );
    }
    if let Some(kept) = &r.kept_as {
        println!(
            "{}",
            wrap(&format!(
                "The damaged index is kept as {}. It can be deleted once all is well.",
                whole_path(kept)
            ))
        );
    }
    println!(
        "{}",
        wrap(
            "Start the undelete service again. It looks through the protected folders \
             and records whatever changed while it was stopped."
        )
    );
}
