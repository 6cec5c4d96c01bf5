//! `undelete incidents`: what was deleted together, newest first.

use std::process::ExitCode;

use serde_json::json;

use crate::clock;
use crate::config::Config;
use crate::ids::IncidentCode;
use crate::index::Index;
use crate::model::Incident;
use crate::words::{bytes, count, display_path, files, json_path};

/// How many incidents are shown.
const RECENT: usize = 50;

pub fn run(config: &Config, as_json: bool) -> anyhow::Result<ExitCode> {
    let (_vault, index) = super::open_vault(config)?;
    let incidents = index.incidents(RECENT)?;
    if as_json {
        let rows: Vec<_> = incidents
            .iter()
            .map(|i| {
                json!({
                    "code": i.code,
                    "kind": i.kind.code(),
                    "folder": json_path(&i.folder).0,
                    "first_at": clock::rfc3339(i.first_at),
                    "last_at": clock::rfc3339(i.last_at),
                    "files": i.files,
                    "bytes": i.bytes,
                    "recoverable": i.recoverable,
                    "restored": i.restored,
                    "missing": i.missing(),
                    "alerted": i.alerted_at.is_some(),
                    "ended_at": i.ended_at.map(clock::rfc3339),
                    "deleted_by": i.person.as_ref().map(crate::model::Person::json),
                    "cut_off": i.cut_off.as_ref().map(crate::model::CutOff::json),
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(ExitCode::SUCCESS);
    }
    if incidents.is_empty() {
        println!("No deletions recorded.");
    }
    let now = clock::now();
    for i in &incidents {
        let mut notes: Vec<String> = partly_recoverable(i).into_iter().collect();
        if i.restored > 0 {
            notes.push(format!("{} brought back", count(i.restored)));
        }
        match notes.is_empty() {
            true => println!("{}  {}", i.code, describe(i, now)),
            false => println!("{}  {}; {}", i.code, describe(i, now), notes.join(", ")),
        }
        if let Some(who) = crate::incident::who_did_it(i) {
            println!("{:width$}  {who}", "", width = i.code.len());
        }
        if let Some(cut_off) = &i.cut_off {
            println!("{:width$}  {cut_off}", "", width = i.code.len());
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// "Today 02:14 — 2,149 files (4.0 GB) deleted from /srv/share/photos", or
/// "Today 02:14 — 1,870 files changed beyond use in /srv/share".
pub fn describe(i: &Incident, now: i64) -> String {
    if i.kind.is_overwrite() {
        return format!(
            "{} — {} {} in {}",
            clock::spoken(i.first_at, now),
            files(i.files),
            i.kind,
            display_path(&i.folder)
        );
    }
    format!(
        "{} — {} ({}) deleted from {}",
        clock::spoken(i.first_at, now),
        files(i.files),
        bytes(i.bytes),
        display_path(&i.folder)
    )
}

/// "40 can be brought back", when not all of them can.
pub fn partly_recoverable(i: &Incident) -> Option<String> {
    (i.recoverable < i.files).then(|| format!("{} can be brought back", count(i.recoverable)))
}

/// The incident a person typed the code of.
pub fn find(index: &Index, code: &str) -> anyhow::Result<Incident> {
    let code: IncidentCode = code.parse()?;
    index
        .incident_by_code(code.as_str())?
        .ok_or_else(|| anyhow::anyhow!("no incident has the code {code} (see: undelete incidents)"))
}
