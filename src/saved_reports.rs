//! Saved restore reports: where they are kept, who may read them, and finding
//! one again (the latest, the one for an incident, or one by name).
//!
//! Every restore's report is saved in the vault's `reports/` folder, private to
//! root like the rest of the vault. With a `report_group` setting, each one is
//! also saved in a folder beside the vault (`/var/lib/undelete-reports` for
//! `/var/lib/undelete`), readable by that group and by no one else: the vault
//! itself stays closed, and nothing in it points there. Members of the group see
//! every file name in every report, which is what the setting is for.
//! It reads and writes report files only; it never looks at the index or the
//! copies in the vault.

use std::ffi::OsStr;
use std::fs;
use std::io::{self, Write};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{Gid, Mode, OFlags};

use crate::ids::IncidentCode;
use crate::report::RestoreReport;
use crate::words::display_path;

/// The folder of group-readable reports for the vault at `vault`: beside it, never in it.
pub fn shared_dir(vault: &Path) -> PathBuf {
    let mut name = vault
        .file_name()
        .unwrap_or(OsStr::new("undelete"))
        .to_owned();
    name.push("-reports");
    vault.with_file_name(name)
}

/// Why a report was saved only in the vault, or not at all.
#[derive(Debug, thiserror::Error)]
pub enum SaveError {
    #[error("the vault is read-only, so this report was not saved")]
    ReadOnly,
    #[error("the report could not be saved in {}: {source}", display_path(dir))]
    Vault { dir: PathBuf, source: io::Error },
    #[error(
        "the report was saved in the vault, but not for the group {group} (report_group): {why}"
    )]
    Shared { group: String, why: String },
}

/// Saves `report` in the vault's reports folder `dir`, and also for `group` when
/// one is set. Returns the text report's path in the vault; a failure to save the
/// group's copy is returned beside it, for a warning, since the report itself is kept.
pub fn save(
    report: &RestoreReport,
    dir: &Path,
    vault: &Path,
    group: Option<&str>,
) -> Result<(PathBuf, Option<SaveError>), SaveError> {
    let saved = report.save(dir).map_err(|source| {
        if source.raw_os_error() == Some(libc::EROFS) {
            SaveError::ReadOnly
        } else {
            SaveError::Vault {
                dir: dir.to_owned(),
                source,
            }
        }
    })?;
    let Some(group) = group else {
        return Ok((saved, None));
    };
    let shared = save_for_group(&saved, &shared_dir(vault), group).err();
    Ok((saved, shared))
}

/// Copies the text and JSON reports beside `saved` into the group's folder.
fn save_for_group(saved: &Path, dir: &Path, group: &str) -> Result<(), SaveError> {
    let fail = |why: String| SaveError::Shared {
        group: group.to_owned(),
        why,
    };
    let gid = crate::accounts::group_id(group)
        .ok_or_else(|| fail("there is no group of that name on this system".into()))?;
    let folder = group_folder(dir, gid).map_err(|e| fail(format!("{}: {e}", display_path(dir))))?;
    for path in [saved.to_owned(), saved.with_extension("json")] {
        let data = fs::read(&path).map_err(|e| fail(e.to_string()))?;
        let name = path.file_name().unwrap_or_default();
        write_for_group(&folder, name, gid, &data).map_err(|e| fail(e.to_string()))?;
    }
    Ok(())
}

/// Opens (making it if needed) the group's folder: 0750, ours, the group's. A folder
/// of that name that is a link, or that someone else made, is not written into.
fn group_folder(dir: &Path, gid: u32) -> io::Result<OwnedFd> {
    match rustix::fs::mkdir(dir, Mode::from_raw_mode(0o750)) {
        Ok(()) | Err(rustix::io::Errno::EXIST) => {}
        Err(e) => return Err(e.into()),
    }
    let fd = rustix::fs::open(
        dir,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let st = rustix::fs::fstat(&fd)?;
    if st.st_uid != rustix::process::geteuid().as_raw() {
        return Err(io::Error::other(format!(
            "the folder belongs to {}, not to whoever restores",
            crate::accounts::user_name(st.st_uid)
        )));
    }
    rustix::fs::fchown(&fd, None, Some(Gid::from_raw(gid)))?;
    rustix::fs::fchmod(&fd, Mode::from_raw_mode(0o750))?;
    Ok(fd)
}

fn write_for_group(folder: &OwnedFd, name: &OsStr, gid: u32, data: &[u8]) -> io::Result<()> {
    let fd = rustix::fs::openat(
        folder,
        name,
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
    )?;
    // Given to the group only once it is ours and closed to others.
    rustix::fs::fchown(&fd, None, Some(Gid::from_raw(gid)))?;
    rustix::fs::fchmod(&fd, Mode::from_raw_mode(0o640))?;
    let mut file = fs::File::from(fd);
    file.write_all(data)?;
    file.sync_all()
}

/// Which saved report is wanted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wanted {
    /// The most recent one.
    Last,
    /// The most recent one for this incident.
    Incident(IncidentCode),
    /// One by its file name (or path), as printed when it was saved.
    Named(PathBuf),
}

impl Wanted {
    /// `last`, an incident code as people type it, or a report's file name or path.
    pub fn parse(text: &str) -> Self {
        if text.eq_ignore_ascii_case("last") {
            return Self::Last;
        }
        match text.parse::<IncidentCode>() {
            Ok(code) if !text.contains(['/', '.']) => Self::Incident(code),
            _ => Self::Named(PathBuf::from(text)),
        }
    }
}

/// Why no report could be shown.
#[derive(Debug, thiserror::Error)]
pub enum FindError {
    #[error("no restore report has been saved yet")]
    NoneYet,
    #[error("no saved restore report is for the incident {0} (see: undelete report last)")]
    NoneForIncident(String),
    #[error("no saved restore report is called {} (see: undelete report last)", display_path(.0))]
    NoSuchReport(PathBuf),
    #[error("cannot read the reports in {}: {source}", display_path(dir))]
    Unreadable { dir: PathBuf, source: io::Error },
}

/// Finds the wanted report in `dir` (the text one, or the JSON one with `json`);
/// returns its path and content.
pub fn find(dir: &Path, wanted: &Wanted, json: bool) -> Result<(PathBuf, Vec<u8>), FindError> {
    let ext = if json { "json" } else { "txt" };
    if let Wanted::Named(name) = wanted {
        let stem = Path::new(name.file_name().unwrap_or(name.as_os_str()));
        let path = dir.join(stem).with_extension(ext);
        return match fs::read(&path) {
            Ok(data) => Ok((path, data)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                Err(FindError::NoSuchReport(name.clone()))
            }
            Err(source) => Err(FindError::Unreadable {
                dir: dir.to_owned(),
                source,
            }),
        };
    }
    let unreadable = |source| FindError::Unreadable {
        dir: dir.to_owned(),
        source,
    };
    // Named by the time they were saved, so the newest is the greatest name.
    let mut stems: Vec<PathBuf> = Vec::new();
    for entry in fs::read_dir(dir).map_err(unreadable)? {
        let path = entry.map_err(unreadable)?.path();
        let name = path.file_name().unwrap_or_default().as_bytes();
        if name.starts_with(b"restore-") && name.ends_with(b".json") {
            stems.push(path.with_extension(""));
        }
    }
    stems.sort();
    for stem in stems.iter().rev() {
        if let Wanted::Incident(code) = wanted {
            let Ok(data) = fs::read(stem.with_extension("json")) else {
                continue;
            };
            let value: serde_json::Value = serde_json::from_slice(&data).unwrap_or_default();
            if value["incident"].as_str() != Some(code.as_str()) {
                continue;
            }
        }
        let path = stem.with_extension(ext);
        let data = fs::read(&path).map_err(unreadable)?;
        return Ok((path, data));
    }
    Err(match wanted {
        Wanted::Incident(code) => FindError::NoneForIncident(code.as_str().to_owned()),
        _ => FindError::NoneYet,
    })
}
