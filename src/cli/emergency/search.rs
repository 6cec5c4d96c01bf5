//! Step 2's other ways to say what to bring back, for a customer with no
//! incident to pick: a word from a file or folder name, or a folder's path and
//! since when.

use std::path::{Path, PathBuf};

use super::CHOICES;
use super::Choice;
use super::prompts::{Wizard, menu_line, number_up_to, numbers};
use crate::clock;
use crate::index::Index;
use crate::words::{files, whole_path};

/// For a customer who remembers a name but not where it was: the folders holding
/// deleted files whose name (or folder's name) contains the text.
pub(super) fn search(w: &mut Wizard<'_>, index: &Index, now: i64) -> anyhow::Result<Choice> {
    let (text, found) = w.ask_until("Type part of a file or folder name:", |text| {
        if text.is_empty() {
            return Err("Please type a word from the name, for example photos.".to_owned());
        }
        match folders_matching(index, text) {
            Ok(found) if found.is_empty() => Err(format!(
                "No deleted file or folder has {text:?} in its name. Please try another word."
            )),
            Ok(found) => Ok((text.to_owned(), found)),
            Err(e) => Err(format!("The search failed ({e}). Please try again.")),
        }
    })?;
    println!("Deleted files matching {text:?}, by folder:");
    let shown = found.len().min(CHOICES);
    for (n, hit) in found.iter().take(CHOICES).enumerate() {
        println!(
            "{}",
            menu_line(
                &format!("{})", n + 1),
                &format!(
                    "{} — {} deleted, the last {}",
                    whole_path(&hit.folder),
                    files(hit.files),
                    clock::spoken(hit.last_deleted, now)
                )
            )
        );
    }
    let accepted = format!("Please type {}, or press Enter for 1.", numbers(shown));
    let pick = w.ask_until("Which one? Press Enter for 1:", |answer| {
        number_up_to(answer, shown).ok_or_else(|| accepted.clone())
    })?;
    Ok(Choice::Folder {
        under: found[pick].folder.clone(),
        since: None,
    })
}

struct Hit {
    folder: PathBuf,
    files: u64,
    last_deleted: i64,
}

/// Groups matching deleted files by the folder to restore: the folder whose own
/// name matches, or else the file's folder. Most recently deleted first.
fn folders_matching(index: &Index, text: &str) -> anyhow::Result<Vec<Hit>> {
    let needle = text.to_lowercase();
    let matches = |name: &std::ffi::OsStr| name.to_string_lossy().to_lowercase().contains(&needle);
    let mut by_folder: std::collections::BTreeMap<PathBuf, Hit> = Default::default();
    let deleted = index.select(&crate::model::Selection::default())?;
    let mut counted = std::collections::HashSet::new();
    for v in deleted
        .iter()
        .filter(|v| v.observed.kind == crate::model::EntryKind::File)
    {
        let folder = if v.path.file_name().is_some_and(matches) {
            v.path.parent().map(PathBuf::from)
        } else {
            v.path
                .ancestors()
                .skip(1)
                .find(|a| a.file_name().is_some_and(matches))
                .map(PathBuf::from)
        };
        let (Some(folder), Some(at)) = (folder, v.deleted_at) else {
            continue;
        };
        let hit = by_folder.entry(folder.clone()).or_insert(Hit {
            folder,
            files: 0,
            last_deleted: at,
        });
        // Files, not deletions: a file deleted, put back and deleted again is one.
        if counted.insert(v.path.as_path()) {
            hit.files += 1;
        }
        hit.last_deleted = hit.last_deleted.max(at);
    }
    let mut hits: Vec<Hit> = by_folder.into_values().collect();
    hits.sort_by_key(|h| std::cmp::Reverse(h.last_deleted));
    Ok(hits)
}

pub(super) fn ask_folder(w: &mut Wizard<'_>) -> anyhow::Result<Choice> {
    let folder = w.ask_until(
        "Type the full path of the folder the files were in:",
        |folder| {
            if folder.is_empty() {
                Err("Please type the folder's full path, for example /srv/share/photos.".into())
            } else {
                Ok(folder.to_owned())
            }
        },
    )?;
    let now = clock::now();
    let since = w.ask_until(
        "Since when? For example 2h, 1d or \"2026-11-22 02:00\" [1d]:",
        |since| {
            let since = if since.is_empty() { "1d" } else { since };
            clock::parse(since, now)
                .map(|_| since.to_owned())
                .map_err(|e| format!("{e}. Please type it again."))
        },
    )?;
    Ok(Choice::Folder {
        under: crate::cli::absolute(Path::new(&folder)),
        since: Some(since),
    })
}
