//! Reaching into the protected folders without ever following a symlink.
//!
//! Anything found by walking can be swapped for a symlink between two system
//! calls: a user who owns a protected folder can replace a new folder by a link
//! to a place only root can read, and a daemon that resolves the path again
//! would copy root's file as that user's. So every folder is opened with
//! `RESOLVE_NO_SYMLINKS` (no component of the path may be a link; the protected
//! folders are canonical), the thing itself is looked at with `fstatat` on the
//! opened parent, and a file is opened relative to it with `O_NOFOLLOW`. A path
//! that now passes through a link does not exist inside the tree.
//!
//! It never writes anything.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags, Stat};
use rustix::io::Errno;

/// Opens the folder at `path` (absolute), for reading its entries.
pub fn open_dir(path: &Path) -> io::Result<OwnedFd> {
    open_beneath(path, OFlags::RDONLY | OFlags::DIRECTORY)
}

/// Opens `path` with `flags`, refusing a symlink anywhere on the way or at the end.
fn open_beneath(path: &Path, flags: OFlags) -> io::Result<OwnedFd> {
    let flags = flags | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    match rustix::fs::openat2(
        rustix::fs::CWD,
        path,
        flags,
        Mode::empty(),
        ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
    ) {
        Err(Errno::NOSYS) => open_by_components(path, flags),
        // Interrupted by a rename elsewhere on the filesystem: the kernel asks to retry.
        Err(Errno::AGAIN) => open_by_components(path, flags),
        other => other.map_err(io::Error::from),
    }
}

/// `open_beneath` for kernels without `openat2`: one name at a time.
fn open_by_components(path: &Path, flags: OFlags) -> io::Result<OwnedFd> {
    let dir_flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let mut dir = rustix::fs::open("/", dir_flags, Mode::empty())?;
    let names: Vec<&OsStr> = path
        .components()
        .filter_map(|c| match c {
            Component::Normal(name) => Some(name),
            _ => None,
        })
        .collect();
    let Some((last, parents)) = names.split_last() else {
        return Ok(rustix::fs::open("/", flags, Mode::empty())?);
    };
    for name in parents {
        dir = rustix::fs::openat(&dir, *name, dir_flags, Mode::empty())?;
    }
    Ok(rustix::fs::openat(&dir, *last, flags, Mode::empty())?)
}

/// Opens the regular file at `path` (absolute) for reading, as `open_file_at` does.
pub fn open_file(path: &Path) -> io::Result<File> {
    Ok(File::from(open_beneath(
        path,
        OFlags::RDONLY | OFlags::NONBLOCK,
    )?))
}

/// The folder holding `path`, opened, and the name in it.
pub fn open_parent(path: &Path) -> io::Result<(OwnedFd, OsString)> {
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the top folder has no parent",
        ));
    };
    let dir = open_beneath(parent, OFlags::PATH | OFlags::DIRECTORY)?;
    Ok((dir, name.to_owned()))
}

/// What is at `path`, not following a link at its end.
pub fn lstat(path: &Path) -> io::Result<Stat> {
    let (dir, name) = open_parent(path)?;
    Ok(rustix::fs::statat(&dir, &name, AtFlags::SYMLINK_NOFOLLOW)?)
}

/// What is at `relative` below the folder held by `dir`, whatever that folder is
/// called now, never through a symlink on the way.
pub fn lstat_beneath(dir: &OwnedFd, relative: &Path) -> io::Result<Stat> {
    let name = relative
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no name below the folder"))?;
    let parent = relative.parent().filter(|p| !p.as_os_str().is_empty());
    let st = match parent {
        None => rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)?,
        Some(parent) => {
            let held = rustix::fs::openat2(
                dir,
                parent,
                OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
                ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
            )?;
            rustix::fs::statat(&held, name, AtFlags::SYMLINK_NOFOLLOW)?
        }
    };
    Ok(st)
}

/// Whether an error from this module means nothing is at that path inside the
/// tree: not found, or reached only through a symlink or a file in the way.
pub fn is_gone(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound
        || matches!(
            e.raw_os_error().map(Errno::from_raw_os_error),
            Some(Errno::LOOP | Errno::NOTDIR)
        )
}

/// Opens the regular file `name` in `dir` for reading: never a link, and a FIFO
/// swapped in opens without blocking (and is then seen not to be a file).
pub fn open_file_at(dir: &impl AsFd, name: &OsStr) -> io::Result<File> {
    let fd = rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    Ok(File::from(fd))
}

/// The target of the link `name` in `dir`.
pub fn read_link_at(dir: &impl AsFd, name: &OsStr) -> io::Result<std::path::PathBuf> {
    let target = rustix::fs::readlinkat(dir, name, Vec::new())?;
    Ok(std::path::PathBuf::from(OsStr::from_bytes(
        target.as_bytes(),
    )))
}

/// The names in the folder held by `dir`, each with whether it is a folder (by
/// its entry's type, or by `fstatat` where the filesystem does not say).
pub fn entries(dir: &OwnedFd) -> io::Result<Vec<(OsString, bool)>> {
    let mut out = Vec::new();
    let mut listing = rustix::fs::Dir::read_from(dir)?;
    while let Some(entry) = listing.read() {
        let entry = entry?;
        let name = entry.file_name().to_bytes();
        if name == b"." || name == b".." {
            continue;
        }
        let name = OsStr::from_bytes(name).to_owned();
        let is_dir = match entry.file_type() {
            FileType::Unknown => rustix::fs::statat(dir, &name, AtFlags::SYMLINK_NOFOLLOW)
                .is_ok_and(|st| FileType::from_raw_mode(st.st_mode) == FileType::Directory),
            kind => kind == FileType::Directory,
        };
        out.push((name, is_dir));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_through_a_symlink_is_gone_and_never_followed() {
        let dir = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        std::fs::create_dir(root.join("secret")).unwrap();
        std::fs::write(root.join("secret/key"), "root only").unwrap();
        std::os::unix::fs::symlink(root.join("secret"), root.join("link")).unwrap();
        let err = lstat(&root.join("link/key")).unwrap_err();
        assert!(is_gone(&err), "{err}");
        assert!(open_dir(&root.join("link")).is_err());
        // The link itself is seen, as a link.
        let st = lstat(&root.join("link")).unwrap();
        assert_eq!(FileType::from_raw_mode(st.st_mode), FileType::Symlink);
        assert!(lstat(&root.join("secret/key")).is_ok());
        assert!(open_by_components(&root.join("link/key"), OFlags::RDONLY).is_err());
        let names = entries(&open_dir(&root).unwrap()).unwrap();
        assert!(names.contains(&("secret".into(), true)));
        assert!(names.contains(&("link".into(), false)));
    }
}
