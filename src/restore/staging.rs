//! The folders a restore makes for itself beside the files it brings back: one to
//! write in (`Staging`), and one to delete encrypted copies in (see `aside`).
//! Each is made 0700 under a name with the restore's mark, and checked through its
//! descriptor to be a folder this account made, which nobody else can make; so
//! what a restore changes or removes inside is its own. What an interrupted
//! restore left is cleared or given back from such a folder only, never from a
//! name of that form alone: a user's file or folder so named is left as it is.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;

use rustix::fs::{AtFlags, Mode, OFlags, RenameFlags};
use rustix::io::Errno;

use super::safe_fs::open_child_dir;
use crate::names;

/// Gives back what an interrupted restore left in a folder of its own in `dir`
/// (one it made to delete encrypted copies in): each file inside gets its name
/// back, never over another, and the folder is removed once empty. Only a folder
/// of a restore's form that this account made for itself (see `is_ours`),
/// and not this restore's own (`mark`): anything else with such a name is a user's,
/// and is left as it is.
pub fn give_back_leftovers(dir: &OwnedFd, mark: names::Mark) {
    for (name, left) in left_by_others(dir, names::ASIDE_TEMP, mark) {
        let Ok(st) = rustix::fs::fstat(&left) else {
            continue;
        };
        if !is_ours(&st) {
            continue;
        }
        for file in names_in(&left) {
            let _ = rustix::fs::renameat_with(&left, &file, dir, &file, RenameFlags::NOREPLACE);
        }
        if let Ok(now) = rustix::fs::statat(dir, &name, AtFlags::SYMLINK_NOFOLLOW)
            && (now.st_dev, now.st_ino) == (st.st_dev, st.st_ino)
        {
            let _ = rustix::fs::unlinkat(dir, &name, AtFlags::REMOVEDIR);
        }
    }
}

/// The folders in `dir` named `prefix` with another restore's mark than `mark`,
/// each opened without following a link, one at a time (a user may have made
/// thousands): what an interrupted restore may have left there. Whether one
/// really is (`is_ours`) is each caller's to check.
fn left_by_others<'a>(
    dir: &'a OwnedFd,
    prefix: &'a str,
    mark: names::Mark,
) -> impl Iterator<Item = (OsString, OwnedFd)> + 'a {
    let entries = rustix::io::dup(dir).and_then(rustix::fs::Dir::new).ok();
    entries
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(move |entry| {
            let name = entry.file_name().to_bytes();
            if !name.starts_with(prefix.as_bytes())
                || names::mark_of(name).is_none_or(|m| m == mark)
            {
                return None;
            }
            let name = OsStr::from_bytes(name).to_owned();
            let fd = open_child_dir(dir, &name).ok()?;
            Some((name, fd))
        })
}

/// The names in the folder `dir`, but `.` and `..`.
fn names_in(dir: &OwnedFd) -> Vec<OsString> {
    let Ok(entries) = rustix::io::dup(dir).and_then(rustix::fs::Dir::new) else {
        return Vec::new();
    };
    entries
        .flatten()
        .map(|e| OsStr::from_bytes(e.file_name().to_bytes()).to_owned())
        .filter(|n| n != "." && n != "..")
        .collect()
}

/// Whether a folder is one a restore of this account made for itself (see
/// `names::is_own_folder`). Nobody else can make one.
pub fn is_ours(st: &rustix::fs::Stat) -> bool {
    names::is_own_folder(st)
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
    for (name, left) in left_by_others(dir, names::RESTORE_TEMP, mark) {
        let ours = rustix::fs::fstat(&left).is_ok_and(|st| is_ours(&st));
        let unheld =
            rustix::fs::flock(&left, rustix::fs::FlockOperation::NonBlockingLockExclusive).is_ok();
        if !ours || !unheld {
            continue;
        }
        for file in names_in(&left) {
            let _ = rustix::fs::unlinkat(&left, &file, AtFlags::empty());
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
            name,
            made: (st.st_dev, st.st_ino),
        }
        .finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::restore::safe_fs::DirCache;
    use std::path::Path;

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
}
