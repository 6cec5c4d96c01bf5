//! Writing under a destination folder without ever following a symlink on the way.
//!
//! Every folder below the destination is opened one name at a time with
//! `O_NOFOLLOW | O_DIRECTORY` relative to its parent's descriptor, so a symlink
//! planted where a deleted folder used to be cannot redirect the writes; files
//! are created under a temporary name with `O_EXCL | O_NOFOLLOW` and renamed with
//! `RENAME_NOREPLACE`, so nothing that is there is ever overwritten.
//! Written by hand because no maintained crate offers symlink-safe
//! create-and-rename-without-replace relative to a directory descriptor.

use std::collections::{HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Component, Path, PathBuf};

use rustix::fs::{AtFlags, Mode, OFlags};
use rustix::io::Errno;

/// Temporary names a restore writes before renaming; the daemon ignores them and
/// a later restore removes any left by an interrupted one.
pub const TEMP_PREFIX: &str = ".undelete-restore-";

/// Why a folder on the way to a destination could not be used.
#[derive(Debug, thiserror::Error)]
pub enum PathProblem {
    #[error(
        "a symbolic link now stands where the folder {0} was; it was not followed (restore with --to DIR to put the files elsewhere)"
    )]
    SymlinkInTheWay(PathBuf),
    #[error("a file now stands where the folder {0} was")]
    FileInTheWay(PathBuf),
    #[error("the name {0:?} cannot be restored safely (it would leave the destination)")]
    UnsafeName(PathBuf),
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// Checks that a relative path only goes down: no `..`, no root, no `.`.
pub fn check_relative(relative: &Path) -> Result<(), PathProblem> {
    let ok = relative
        .components()
        .all(|c| matches!(c, Component::Normal(_)));
    if ok && !relative.as_os_str().is_empty() {
        Ok(())
    } else {
        Err(PathProblem::UnsafeName(relative.to_owned()))
    }
}

/// Open folders below one destination, by relative path.
pub struct DirCache {
    base: PathBuf,
    base_fd: OwnedFd,
    open: HashMap<PathBuf, OwnedFd>,
    /// Folders found missing when not creating: a plan asks once per file, and a
    /// deleted folder of thousands of files would otherwise be looked up each time.
    missing: HashSet<PathBuf>,
    /// Folders this restore created, so their metadata may be set afterwards.
    pub created: Vec<PathBuf>,
}

impl DirCache {
    /// Opens the destination folder itself, creating it if `create`. The destination is
    /// trusted (the protected folder, or what the user named with --to).
    pub fn new(base: &Path, create: bool) -> io::Result<Self> {
        // Looked at first: mkdir asks the filesystem for write access even when
        // the folder exists, and a frozen or busy disk would make it wait.
        if create && !base.is_dir() {
            std::fs::create_dir_all(base)?;
        }
        let base_fd = rustix::fs::open(
            base,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(Self {
            base: base.to_owned(),
            base_fd,
            open: HashMap::new(),
            missing: HashSet::new(),
            created: Vec::new(),
        })
    }

    pub fn base(&self) -> &Path {
        &self.base
    }

    /// The descriptor of folder `relative` (empty = the destination itself), opening each
    /// name without following links, and creating missing ones (0700 until finished)
    /// when `create`. `Ok(None)`: it does not exist and `create` is false.
    pub fn dir(&mut self, relative: &Path, create: bool) -> Result<Option<&OwnedFd>, PathProblem> {
        if relative.as_os_str().is_empty() {
            return Ok(Some(&self.base_fd));
        }
        if !create && self.missing.contains(relative) {
            return Ok(None);
        }
        if !self.open.contains_key(relative) {
            let parent = relative.parent().unwrap_or(Path::new(""));
            let name = relative.file_name().unwrap_or(OsStr::new(""));
            let Some(parent_fd) = self.dir(parent, create)? else {
                self.missing.insert(relative.to_owned());
                return Ok(None);
            };
            let fd = match open_child_dir(parent_fd, name) {
                Ok(fd) => fd,
                Err(Errno::NOENT) if create => {
                    match rustix::fs::mkdirat(parent_fd, name, Mode::from_raw_mode(0o700)) {
                        Ok(()) => self.created.push(relative.to_owned()),
                        Err(Errno::EXIST) => {}
                        Err(e) => return Err(PathProblem::Io(e.into())),
                    }
                    let parent_fd = self.dir(parent, create)?.expect("just opened");
                    open_child_dir(parent_fd, name).map_err(|e| self.problem(relative, e))?
                }
                Err(Errno::NOENT) => {
                    self.missing.insert(relative.to_owned());
                    return Ok(None);
                }
                Err(e) => return Err(self.problem(relative, e)),
            };
            self.missing.remove(relative);
            self.open.insert(relative.to_owned(), fd);
        }
        Ok(self.open.get(relative))
    }

    fn problem(&self, relative: &Path, e: Errno) -> PathProblem {
        let full = self.base.join(relative);
        match e {
            Errno::LOOP => PathProblem::SymlinkInTheWay(full),
            Errno::NOTDIR => match std::fs::symlink_metadata(&full) {
                Ok(m) if m.file_type().is_symlink() => PathProblem::SymlinkInTheWay(full),
                _ => PathProblem::FileInTheWay(full),
            },
            e => PathProblem::Io(e.into()),
        }
    }

    /// Looks at `name` in folder `relative` without following links.
    pub fn stat(
        &mut self,
        relative: &Path,
        name: &OsStr,
    ) -> Result<Option<rustix::fs::Stat>, PathProblem> {
        let Some(dir) = self.dir(relative, false)? else {
            return Ok(None);
        };
        match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => Ok(Some(st)),
            Err(Errno::NOENT) => Ok(None),
            Err(e) => Err(PathProblem::Io(e.into())),
        }
    }
}

fn open_child_dir(parent: &OwnedFd, name: &OsStr) -> Result<OwnedFd, Errno> {
    rustix::fs::openat(
        parent,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

/// Removes temporary files an interrupted restore left in a folder: only names of
/// exactly our form, and only those of a process that no longer runs, so neither a
/// user's `.undelete-restore-notes.txt` nor another running restore's file is touched.
/// Call before any worker writes there: our own temporary files look the same.
pub fn remove_leftovers(dir: &OwnedFd) {
    let Ok(dup) = rustix::io::dup(dir) else {
        return;
    };
    let Ok(entries) = rustix::fs::Dir::new(dup) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_bytes();
        let Some(pid) = marked_pid(name, TEMP_PREFIX.as_bytes()) else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = rustix::fs::unlinkat(dir, OsStr::from_bytes(name), AtFlags::empty());
        }
    }
}

/// A fresh temporary name in a folder: the prefix, our pid, a dash, a counter.
pub fn temp_name(counter: u64) -> OsString {
    OsString::from(format!("{TEMP_PREFIX}{}-{counter}", std::process::id()))
}

/// Whether `name` is a restore's temporary name (and nothing else that merely starts
/// like one).
pub fn is_temp_name(name: &OsStr) -> bool {
    marked_pid(name.as_bytes(), TEMP_PREFIX.as_bytes()).is_some()
}

/// For names the program leaves in users' folders, `PREFIX<pid>-<counter>`: the pid,
/// or `None` when `name` is not exactly of that form.
pub fn marked_pid(name: &[u8], prefix: &[u8]) -> Option<u32> {
    let rest = std::str::from_utf8(name.strip_prefix(prefix)?).ok()?;
    let (pid, counter) = rest.split_once('-')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(pid) || !digits(counter) {
        return None;
    }
    pid.parse().ok()
}

/// Renames `temp` to `name` in `dir` unless something is already called `name`.
/// `Ok(false)` when the name is taken.
pub fn rename_no_replace(dir: &impl AsFd, temp: &OsStr, name: &OsStr) -> io::Result<bool> {
    match rustix::fs::renameat_with(dir, temp, dir, name, rustix::fs::RenameFlags::NOREPLACE) {
        Ok(()) => Ok(true),
        Err(Errno::EXIST) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// `report.docx` → `report (deleted 2026-11-22).docx`; with `n` > 1,
/// `report (deleted 2026-11-22 2).docx`.
pub fn beside_name(name: &OsStr, label: &str, n: u32) -> OsString {
    let bytes = name.as_bytes();
    // The extension starts at the last dot, unless that dot starts the name (".profile").
    let split = match bytes.iter().rposition(|&b| b == b'.') {
        Some(0) | None => bytes.len(),
        Some(i) => i,
    };
    let (stem, ext) = bytes.split_at(split);
    let mut out = stem.to_vec();
    let tag = if n > 1 {
        format!(" ({label} {n})")
    } else {
        format!(" ({label})")
    };
    out.extend_from_slice(tag.as_bytes());
    out.extend_from_slice(ext);
    // Stay within the 255-byte name limit by shortening the stem.
    if out.len() > 255 {
        let keep = 255usize
            .saturating_sub(tag.len() + ext.len())
            .min(stem.len());
        let mut cut = stem[..keep].to_vec();
        cut.extend_from_slice(tag.as_bytes());
        cut.extend_from_slice(ext);
        out = cut;
    }
    OsString::from_vec(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn beside_names_keep_the_extension() {
        let n = |s: &str, k| beside_name(OsStr::new(s), "deleted 2026-11-22", k);
        assert_eq!(n("report.docx", 1), "report (deleted 2026-11-22).docx");
        assert_eq!(n("report.docx", 2), "report (deleted 2026-11-22 2).docx");
        assert_eq!(n(".profile", 1), ".profile (deleted 2026-11-22)");
        assert_eq!(n("Makefile", 1), "Makefile (deleted 2026-11-22)");
        let long = "x".repeat(250) + ".jpg";
        assert!(n(&long, 1).len() <= 255);
    }

    #[test]
    fn only_names_of_exactly_our_form_are_temporary() {
        assert!(is_temp_name(&temp_name(7)));
        assert!(is_temp_name(OsStr::new(".undelete-restore-12-3")));
        for user_name in [
            ".undelete-restore-notes.txt",
            ".undelete-restore-12",
            ".undelete-restore-12-",
            ".undelete-restore--3",
            ".undelete-restore-12-3.txt",
        ] {
            assert!(!is_temp_name(OsStr::new(user_name)), "{user_name}");
        }
    }

    #[test]
    fn leftovers_of_a_running_restore_and_user_files_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let names = [
            ".undelete-restore-notes.txt".to_owned(),
            format!(".undelete-restore-{}-1", std::process::id()),
            // Pid 0 is never a process in /proc: this one was left by a dead restore.
            ".undelete-restore-0-1".to_owned(),
        ];
        for name in &names {
            std::fs::write(dir.path().join(name), "x").unwrap();
        }
        let mut cache = DirCache::new(dir.path(), false).unwrap();
        remove_leftovers(cache.dir(Path::new(""), false).unwrap().unwrap());
        assert!(dir.path().join(&names[0]).exists(), "a user's file is kept");
        assert!(
            dir.path().join(&names[1]).exists(),
            "a running restore's file is kept"
        );
        assert!(
            !dir.path().join(&names[2]).exists(),
            "a dead restore's file is removed"
        );
    }

    #[test]
    fn relative_paths_must_only_go_down() {
        assert!(check_relative(Path::new("a/b.txt")).is_ok());
        assert!(check_relative(Path::new("../etc/passwd")).is_err());
        assert!(check_relative(Path::new("/etc/passwd")).is_err());
        assert!(check_relative(Path::new("")).is_err());
    }

    #[test]
    fn a_planted_symlink_is_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("dest");
        let elsewhere = dir.path().join("elsewhere");
        std::fs::create_dir_all(&dest).unwrap();
        std::fs::create_dir_all(&elsewhere).unwrap();
        std::os::unix::fs::symlink(&elsewhere, dest.join("photos")).unwrap();
        let mut cache = DirCache::new(&dest, false).unwrap();
        let err = cache.dir(Path::new("photos/2026"), true).unwrap_err();
        assert!(matches!(err, PathProblem::SymlinkInTheWay(_)), "{err}");
        assert_eq!(std::fs::read_dir(&elsewhere).unwrap().count(), 0);
    }
}
