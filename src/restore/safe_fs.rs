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

use crate::names;
use crate::words::display_path;

/// Why a folder on the way to a destination could not be used.
#[derive(Debug, thiserror::Error)]
pub enum PathProblem {
    #[error(
        "a symbolic link now stands where the folder {} was; it was not followed (restore with --to DIR to put the files elsewhere)",
        display_path(.0)
    )]
    SymlinkInTheWay(PathBuf),
    #[error("a file now stands where the folder {} was", display_path(.0))]
    FileInTheWay(PathBuf),
    #[error("the name {0:?} cannot be restored safely (it would leave the destination)")]
    UnsafeName(PathBuf),
    #[error(
        "{} is a symbolic link, and a restore never writes through one (anyone who could \
         change it could point it anywhere); name the real folder instead",
        display_path(.0)
    )]
    DestinationIsSymlink(PathBuf),
    #[error(
        "the way to it passes through the symbolic link {}, which belongs to {owner}, not \
         to you or to root; a restore does not follow it. Name the real folder instead",
        display_path(link)
    )]
    UntrustedLink { link: PathBuf, owner: String },
    #[error(
        "{} is not an ordinary file (a folder, a device or a pipe); nothing is written over it",
        display_path(.0)
    )]
    NotAFile(PathBuf),
    #[error("following its symbolic links never ends (a loop of links)")]
    LinkLoop,
    #[error(transparent)]
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

/// How many symbolic links one destination may pass through, as the kernel allows.
const MAX_LINKS: u32 = 40;

/// A destination folder found (or made) by descriptor from `/`.
pub struct Resolved {
    /// Where it really is: no symbolic link, `.` or `..` left in it.
    pub path: PathBuf,
    /// Its descriptor; `None` when it does not exist and was not to be created.
    pub fd: Option<OwnedFd>,
}

/// Finds the folder `path` names one component at a time from `/`, by descriptor,
/// creating missing folders (relative to their parent's descriptor) when `create`.
///
/// A destination is only as safe as the way to it: each name is opened with
/// `O_NOFOLLOW`, so a link swapped in between two steps cannot send the walk
/// elsewhere. The destination itself may not be a symbolic link, and a link on the
/// way is followed only when it belongs to root (the system's own, such as
/// `/var/run`) or to whoever restores: a link is never changed in place, only
/// replaced, and a replacement by anyone else belongs to them. `..` is taken as the
/// kernel takes it (the parent of where the walk really is), except below a folder
/// that does not exist yet, which holds no links and is not created only to be
/// climbed out of.
pub fn resolve(path: &Path, create: bool) -> Result<Resolved, PathProblem> {
    let me = rustix::process::geteuid().as_raw();
    let mut dir = open_dir_at(rustix::fs::CWD, Path::new("/"))?;
    let mut real = PathBuf::from("/");
    let mut todo: std::collections::VecDeque<OsString> = components(path).collect();
    let mut links = 0;
    let mut attempts = 0;
    while let Some(name) = todo.pop_front() {
        if name == ".." {
            dir = open_dir_at(&dir, Path::new(".."))?;
            real.pop();
            continue;
        }
        let last = todo.is_empty();
        match open_child_dir(&dir, &name) {
            Ok(fd) => {
                dir = fd;
                real.push(&name);
            }
            Err(Errno::LOOP | Errno::NOTDIR) => {
                let link = real.join(&name);
                let Some((target, owner)) = link_at(&dir, &name)? else {
                    return Err(PathProblem::FileInTheWay(link));
                };
                if last {
                    return Err(PathProblem::DestinationIsSymlink(link));
                }
                if owner != 0 && owner != me {
                    return Err(PathProblem::UntrustedLink {
                        link,
                        owner: crate::accounts::user_name(owner),
                    });
                }
                links += 1;
                if links > MAX_LINKS {
                    return Err(PathProblem::LinkLoop);
                }
                if target.is_absolute() {
                    dir = open_dir_at(rustix::fs::CWD, Path::new("/"))?;
                    real = PathBuf::from("/");
                }
                for part in components(&target).rev() {
                    todo.push_front(part);
                }
            }
            Err(Errno::NOENT) => {
                // Nothing below a missing folder exists, so its `..` are taken by name.
                let missing = name.clone();
                todo.push_front(name);
                let rest = lexical(todo.drain(..));
                // Climbed out of again by a `..` after it: the walk goes on from here.
                let climbs = rest.first() != Some(&missing);
                if !climbs && !create {
                    real.extend(&rest);
                    return Ok(Resolved {
                        path: real,
                        fd: None,
                    });
                }
                if !climbs {
                    attempts += 1;
                    if attempts > MAX_LINKS {
                        // Made and removed again each time by someone else.
                        return Err(PathProblem::Io(io::Error::from(io::ErrorKind::NotFound)));
                    }
                    match rustix::fs::mkdirat(&dir, rest[0].as_os_str(), Mode::from_raw_mode(0o777))
                    {
                        Ok(()) | Err(Errno::EXIST) => {}
                        Err(e) => return Err(PathProblem::Io(e.into())),
                    }
                }
                // Opened again like any other name: what is there now may not be ours.
                todo.extend(rest);
            }
            Err(e) => return Err(PathProblem::Io(e.into())),
        }
    }
    Ok(Resolved {
        path: real,
        fd: Some(dir),
    })
}

/// The names of an absolute path, `..` kept, `.` and the root left out.
fn components(path: &Path) -> impl DoubleEndedIterator<Item = OsString> + '_ {
    path.components().filter_map(|c| match c {
        Component::Normal(name) => Some(name.to_owned()),
        Component::ParentDir => Some(OsString::from("..")),
        Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
    })
}

/// Names with each `..` taking away the name before it; `..` that climb above the
/// first name stay at the front.
fn lexical(names: impl Iterator<Item = OsString>) -> Vec<OsString> {
    let mut out: Vec<OsString> = Vec::new();
    for name in names {
        if name == ".." && out.last().is_some_and(|last| last != "..") {
            out.pop();
        } else {
            out.push(name);
        }
    }
    out
}

/// The target and owner of the symbolic link `name` in `dir`, `None` when `name` is
/// not a link at all. The link is read through a descriptor of the link itself, so
/// the owner is the owner of the target read.
fn link_at(dir: &OwnedFd, name: &OsStr) -> Result<Option<(PathBuf, u32)>, PathProblem> {
    let fd = rustix::fs::openat(
        dir,
        name,
        OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(io::Error::from)?;
    let st = rustix::fs::statat(&fd, "", AtFlags::EMPTY_PATH | AtFlags::SYMLINK_NOFOLLOW)
        .map_err(io::Error::from)?;
    if rustix::fs::FileType::from_raw_mode(st.st_mode) != rustix::fs::FileType::Symlink {
        return Ok(None);
    }
    let target = rustix::fs::readlinkat(&fd, "", Vec::new()).map_err(io::Error::from)?;
    Ok(Some((
        PathBuf::from(OsString::from_vec(target.into_bytes())),
        st.st_uid,
    )))
}

fn open_dir_at(dir: impl AsFd, path: &Path) -> Result<OwnedFd, PathProblem> {
    rustix::fs::openat(
        dir,
        path,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| PathProblem::Io(e.into()))
}

/// How many folders one cache keeps open at most (each restore worker has its own).
const OPEN_AT_MOST: usize = 64;

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
    /// The destination folder `base`, found by descriptor (see `resolve`); `None`
    /// when it does not exist.
    #[cfg(test)]
    pub fn open(base: &Path) -> Result<Option<Self>, PathProblem> {
        let found = resolve(base, false)?;
        Ok(found.fd.map(|fd| Self::at(found.path, fd)))
    }

    /// The destination folder `base`, found by descriptor and created if missing.
    pub fn create(base: &Path) -> Result<Self, PathProblem> {
        let found = resolve(base, true)?;
        let fd = found.fd.expect("created when missing");
        Ok(Self::at(found.path, fd))
    }

    /// The real path of a destination found by `resolve`, and its cache when it exists.
    pub fn from_resolved(found: Resolved) -> (PathBuf, Option<Self>) {
        let cache = found.fd.map(|fd| Self::at(found.path.clone(), fd));
        (found.path, cache)
    }

    fn at(base: PathBuf, base_fd: OwnedFd) -> Self {
        Self {
            base,
            base_fd,
            open: HashMap::new(),
            missing: HashSet::new(),
            created: Vec::new(),
        }
    }

    /// Another cache for the very same destination folder (not the path, which may
    /// name another folder by now), for another thread.
    pub fn same_destination(&self) -> io::Result<Self> {
        let fd = rustix::io::fcntl_dupfd_cloexec(&self.base_fd, 0)?;
        Ok(Self::at(self.base.clone(), fd))
    }

    pub fn base_fd(&self) -> &OwnedFd {
        &self.base_fd
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
            // Kept open for the files that follow, but not every folder: a restore of
            // 20,000 folders ran out of descriptors (the usual limit is 1,024) and
            // called every later file lost. A folder closed here is opened again
            // from the destination down, by descriptor, when it is needed again.
            if self.open.len() >= OPEN_AT_MOST {
                self.open.clear();
            }
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

pub(super) fn open_child_dir(parent: &OwnedFd, name: &OsStr) -> Result<OwnedFd, Errno> {
    rustix::fs::openat(
        parent,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

/// Writes `data` as the file `path` (a report asked for with `--report`), reaching
/// its folder as a destination is reached (see `resolve`). Only an ordinary file
/// of that name is replaced: the data is written under a temporary name and renamed
/// over it, so a hard link planted there is replaced, never written through. A
/// symbolic link, a pipe or a device there is refused, because renaming over
/// `/dev/null` or `/dev/stdout` as root would break the system and a pipe nobody
/// reads would hold the restore.
pub fn write_replacing(path: &Path, data: &[u8]) -> Result<(), PathProblem> {
    use std::io::Write;
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(PathProblem::UnsafeName(path.to_owned()));
    };
    let parent = if parent.as_os_str().is_empty() {
        Path::new(".")
    } else {
        parent
    };
    let parent = std::path::absolute(parent)?;
    let Some(dir) = resolve(&parent, false)?.fd else {
        return Err(PathProblem::Io(io::Error::new(
            io::ErrorKind::NotFound,
            format!("the folder {} does not exist", display_path(&parent)),
        )));
    };
    match rustix::fs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => match rustix::fs::FileType::from_raw_mode(st.st_mode) {
            rustix::fs::FileType::RegularFile => {}
            rustix::fs::FileType::Symlink => {
                return Err(PathProblem::DestinationIsSymlink(path.to_owned()));
            }
            _ => return Err(PathProblem::NotAFile(path.to_owned())),
        },
        Err(Errno::NOENT) => {}
        Err(e) => return Err(PathProblem::Io(e.into())),
    }
    let mut counter = 0;
    let mark = names::Mark::new();
    let (temp, fd) = loop {
        let temp = names::marked_name(names::RESTORE_TEMP, mark, counter);
        match rustix::fs::openat(
            &dir,
            &temp,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        ) {
            Ok(fd) => break (temp, fd),
            Err(Errno::EXIST) => counter += 1,
            Err(e) => return Err(PathProblem::Io(e.into())),
        }
    };
    let mut file = std::fs::File::from(fd);
    let written = file
        .write_all(data)
        .and_then(|()| file.sync_all())
        .and_then(|()| Ok(rustix::fs::renameat(&dir, &temp, &dir, name)?));
    if let Err(e) = written {
        let _ = rustix::fs::unlinkat(&dir, &temp, AtFlags::empty());
        return Err(PathProblem::Io(e));
    }
    Ok(())
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
        let mut cache = DirCache::open(&dest).unwrap().unwrap();
        let err = cache.dir(Path::new("photos/2026"), true).unwrap_err();
        assert!(matches!(err, PathProblem::SymlinkInTheWay(_)), "{err}");
        assert_eq!(std::fs::read_dir(&elsewhere).unwrap().count(), 0);
    }
}
