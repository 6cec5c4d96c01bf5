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

use rustix::fs::{AtFlags, Mode, OFlags, RenameFlags};
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

fn open_child_dir(parent: &OwnedFd, name: &OsStr) -> Result<OwnedFd, Errno> {
    rustix::fs::openat(
        parent,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

/// Gives back what an interrupted restore left in a folder of its own in `dir`
/// (one it made to delete encrypted copies in): each file inside gets its name
/// back, never over another, and the folder is removed once empty. Only a folder
/// of a restore's form that this account made for itself (see `is_ours`),
/// and not this restore's own (`mark`): anything else with such a name is a user's,
/// and is left as it is.
pub fn give_back_leftovers(dir: &OwnedFd, mark: names::Mark) {
    let Ok(dup) = rustix::io::dup(dir) else {
        return;
    };
    let Ok(entries) = rustix::fs::Dir::new(dup) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_bytes();
        if !name.starts_with(names::ASIDE_TEMP.as_bytes())
            || names::mark_of(name).is_none_or(|m| m == mark)
        {
            continue;
        }
        let name = OsStr::from_bytes(name);
        let Ok(left) = open_child_dir(dir, name) else {
            continue;
        };
        let Ok(st) = rustix::fs::fstat(&left) else {
            continue;
        };
        if !is_ours(&st) {
            continue;
        }
        if let Ok(inside) = rustix::io::dup(&left).and_then(rustix::fs::Dir::new) {
            for file in inside.flatten() {
                let file = OsStr::from_bytes(file.file_name().to_bytes());
                if file != "." && file != ".." {
                    let _ =
                        rustix::fs::renameat_with(&left, file, dir, file, RenameFlags::NOREPLACE);
                }
            }
        }
        if let Ok(now) = rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)
            && (now.st_dev, now.st_ino) == (st.st_dev, st.st_ino)
        {
            let _ = rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR);
        }
    }
}

/// Whether a folder is one a restore of this account made for itself: a folder,
/// owned by this account, readable by it alone. Nobody else can make one.
pub fn is_ours(st: &rustix::fs::Stat) -> bool {
    rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::Directory
        && st.st_uid == rustix::process::geteuid().as_raw()
        && st.st_mode & 0o7777 == 0o700
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

/// The folder a restore writes one folder's files in before putting each in place:
/// made 0700 beside them, under a name with the restore's mark, checked through its
/// descriptor to be the one made, and locked while the restore runs. Nobody else can
/// put a file at a name in it, so what the restore changes or removes in it (an
/// owner set on a link, a file given up) is its own; a file is put in place by a
/// rename that never replaces anything.
pub struct Staging {
    dir: OwnedFd,
    parent: OwnedFd,
    name: OsString,
    made: (u64, u64),
}

impl Staging {
    pub fn make(parent: &OwnedFd, mark: names::Mark) -> io::Result<Self> {
        for counter in 0..16 {
            let name = names::marked_name(names::RESTORE_TEMP, mark, counter);
            match rustix::fs::mkdirat(parent, &name, Mode::from_raw_mode(0o700)) {
                Ok(()) => {}
                Err(Errno::EXIST) => continue,
                Err(e) => return Err(e.into()),
            }
            let dir = open_child_dir(parent, &name)?;
            let st = rustix::fs::fstat(&dir)?;
            if !is_ours(&st) {
                return Err(io::Error::other(
                    "another folder took the name of the one made to write in",
                ));
            }
            // Held while this restore runs, so that another one sees it is in use.
            rustix::fs::flock(&dir, rustix::fs::FlockOperation::NonBlockingLockExclusive)?;
            return Ok(Self {
                dir,
                parent: rustix::io::fcntl_dupfd_cloexec(parent, 0)?,
                name,
                made: (st.st_dev, st.st_ino),
            });
        }
        Err(io::Error::other("no free name for a folder to write in"))
    }

    /// A new file `temp` in it, readable and writable, 0600.
    pub fn create(&self, temp: &OsStr) -> io::Result<OwnedFd> {
        Ok(rustix::fs::openat(
            &self.dir,
            temp,
            OFlags::RDWR | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )?)
    }

    pub fn fd(&self) -> &OwnedFd {
        &self.dir
    }

    /// Gives `temp` the name `name` in the folder this one is in, unless something is
    /// already called that. `Ok(false)` when the name is taken.
    pub fn place(&self, temp: &OsStr, name: &OsStr) -> io::Result<bool> {
        match rustix::fs::renameat_with(&self.dir, temp, &self.parent, name, RenameFlags::NOREPLACE)
        {
            Ok(()) => Ok(true),
            Err(Errno::EXIST) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// A file given up.
    pub fn discard(&self, temp: &OsStr) {
        let _ = rustix::fs::unlinkat(&self.dir, temp, AtFlags::empty());
    }

    /// Removed, by its name only while that name is still this folder (and only empty).
    pub fn finish(self) {
        if let Ok(st) = rustix::fs::statat(&self.parent, &self.name, AtFlags::SYMLINK_NOFOLLOW)
            && (st.st_dev, st.st_ino) == self.made
        {
            let _ = rustix::fs::unlinkat(&self.parent, &self.name, AtFlags::REMOVEDIR);
        }
    }
}

/// Removes what an interrupted restore left in its folders to write in (see
/// `Staging`) in `dir`: files half written, in a folder nobody else could put a
/// file in. Only a folder of that form this account made for itself (`is_ours`),
/// that no running restore holds, and not this restore's (`mark`); anything else
/// with such a name is a user's, and is left as it is.
pub fn clear_leftover_staging(dir: &OwnedFd, mark: names::Mark) {
    let Ok(dup) = rustix::io::dup(dir) else {
        return;
    };
    let Ok(entries) = rustix::fs::Dir::new(dup) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_bytes();
        if !name.starts_with(names::RESTORE_TEMP.as_bytes())
            || names::mark_of(name).is_none_or(|m| m == mark)
        {
            continue;
        }
        let name = OsStr::from_bytes(name);
        let Ok(left) = open_child_dir(dir, name) else {
            continue;
        };
        let ours = rustix::fs::fstat(&left).is_ok_and(|st| is_ours(&st));
        let unheld =
            rustix::fs::flock(&left, rustix::fs::FlockOperation::NonBlockingLockExclusive).is_ok();
        if !ours || !unheld {
            continue;
        }
        if let Ok(inside) = rustix::io::dup(&left).and_then(rustix::fs::Dir::new) {
            for file in inside.flatten() {
                let file = OsStr::from_bytes(file.file_name().to_bytes());
                if file != "." && file != ".." {
                    let _ = rustix::fs::unlinkat(&left, file, AtFlags::empty());
                }
            }
        }
        let (Ok(st), Ok(parent)) = (
            rustix::fs::fstat(&left),
            rustix::io::fcntl_dupfd_cloexec(dir, 0),
        ) else {
            continue;
        };
        Staging {
            dir: left,
            parent,
            name: name.to_owned(),
            made: (st.st_dev, st.st_ino),
        }
        .finish();
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
    fn only_a_stopped_restores_own_folder_is_cleared_never_a_users_file_or_folder() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let mark = || names::Mark::new();
        let name = |mark| names::marked_name(names::RESTORE_TEMP, mark, 0);
        // A user's file, and a user's folder (not 0700), named as a restore's.
        let users_file = dir.path().join(name(mark()));
        std::fs::write(&users_file, "mine").unwrap();
        let users_folder = dir.path().join(name(mark()));
        std::fs::create_dir(&users_folder).unwrap();
        std::fs::write(users_folder.join("a.txt"), "mine too").unwrap();
        // What a restore stopped halfway left: its folder, 0700, a file half written.
        let left = dir.path().join(name(mark()));
        std::fs::create_dir(&left).unwrap();
        std::fs::set_permissions(&left, std::fs::Permissions::from_mode(0o700)).unwrap();
        std::fs::write(left.join("7"), "half").unwrap();
        let mut cache = DirCache::open(dir.path()).unwrap().unwrap();
        let fd = cache.dir(Path::new(""), false).unwrap().unwrap();
        // A restore running now, and this one's own.
        let running = Staging::make(fd, mark()).unwrap();
        let this = mark();
        let own = Staging::make(fd, this).unwrap();
        clear_leftover_staging(fd, this);
        assert_eq!(std::fs::read(&users_file).unwrap(), b"mine");
        assert_eq!(
            std::fs::read(users_folder.join("a.txt")).unwrap(),
            b"mine too"
        );
        assert!(!left.exists(), "a stopped restore's folder is cleared");
        assert!(
            dir.path().join(&running.name).exists(),
            "a running one's is kept"
        );
        assert!(dir.path().join(&own.name).exists());
        own.finish();
        running.finish();
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
