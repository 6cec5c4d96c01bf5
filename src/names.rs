//! What a file's name alone says about it.
//!
//! Programs leave small lock files beside what they have open: git's
//! `.git/index.lock`, Microsoft Office's `~$report.docx`, LibreOffice's
//! `.~lock.report.odt#`. Brought back by a restore, such a file tells its
//! program the document is still open (git then refuses to run: "File exists"),
//! so restores leave them out unless asked, and counts of lost files leave them
//! out of the headline.
//!
//! The program leaves names of its own in users' folders for a moment: a
//! restore's temporary files, and the daemon's sync cookies. They are never
//! recorded, and a user's file that merely starts like one is not taken for one.
//!
//! Decided by name only, from the patterns the programs themselves use; it
//! never looks at the disk.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Whether `path` names a lock file a program made while it had a document or
/// repository open. `Cargo.lock`, `package-lock.json` and the like are not:
/// they are files people keep, and only `.lock` files inside a `.git` folder count.
pub fn is_program_lock(path: &Path) -> bool {
    let Some(name) = path.file_name().map(OsStr::as_bytes) else {
        return false;
    };
    let inside_git = path
        .parent()
        .is_some_and(|dir| dir.components().any(|c| c.as_os_str() == ".git"));
    // Microsoft Office's owner file, beside the document it locks.
    name.starts_with(b"~$")
        // LibreOffice and OpenOffice.
        || (name.starts_with(b".~lock.") && name.ends_with(b"#"))
        // Emacs: a symbolic link named after the file it locks.
        || (name.starts_with(b".#") && name.len() > 2)
        // git: index.lock, HEAD.lock, refs/heads/main.lock, …
        || (inside_git && name.ends_with(b".lock"))
        // Adobe InDesign and AutoCAD.
        || ends_with_ignoring_case(name, b".idlk")
        || ends_with_ignoring_case(name, b".dwl")
        || ends_with_ignoring_case(name, b".dwl2")
}

/// A restore's temporary files, renamed into place once written; a later restore
/// removes any an interrupted one left.
pub const RESTORE_TEMP: &str = ".undelete-restore-";

/// An encrypted copy a restore is deleting, for the moment between taking it from
/// its name and deleting it: `PREFIX<pid>-<counter>.<its name>`, so that one left by
/// an interrupted restore can be given its name back (see `aside_name`).
pub const ASIDE_TEMP: &str = ".undelete-aside-";

/// The daemon's sync cookies (see `watch::sync`).
pub const SYNC_COOKIE: &str = ".undelete-sync-";

/// A fresh name of the program's own in a folder: `prefix`, our pid, a dash, a number
/// (a count for a restore's temporary files, a random one for sync cookies).
pub fn own_name(prefix: &str, counter: u64) -> OsString {
    OsString::from(format!("{prefix}{}-{counter}", std::process::id()))
}

/// For names the program leaves in users' folders, `PREFIX<pid>-<counter>`: the pid,
/// or `None` when `name` is not exactly of that form.
pub fn marked_pid(name: &[u8], prefix: &str) -> Option<u32> {
    let rest = std::str::from_utf8(name.strip_prefix(prefix.as_bytes())?).ok()?;
    let (pid, counter) = rest.split_once('-')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(pid) || !digits(counter) {
        return None;
    }
    pid.parse().ok()
}

/// The name an encrypted copy called `original` has while a restore deletes it, or
/// `None` when the two do not fit in one name (255 bytes).
pub fn aside_name(counter: u64, original: &OsStr) -> Option<OsString> {
    let mut name = own_name(ASIDE_TEMP, counter);
    name.push(".");
    name.push(original);
    (name.len() <= 255).then_some(name)
}

/// For a name made by `aside_name`: the pid of the restore that made it, and the
/// name the file had.
pub fn aside_original(name: &[u8]) -> Option<(u32, &OsStr)> {
    let rest = name.strip_prefix(ASIDE_TEMP.as_bytes())?;
    let dot = rest.iter().position(|&b| b == b'.')?;
    let (marked, original) = (&rest[..dot], &rest[dot + 1..]);
    let mut own = ASIDE_TEMP.as_bytes().to_vec();
    own.extend_from_slice(marked);
    let pid = marked_pid(&own, ASIDE_TEMP)?;
    (!original.is_empty() && original != b"." && original != b"..")
        .then(|| (pid, OsStr::from_bytes(original)))
}

/// Whether `name` is a restore's temporary name (and nothing else that merely starts
/// like one).
pub fn is_temp_name(name: &OsStr) -> bool {
    marked_pid(name.as_bytes(), RESTORE_TEMP).is_some()
}

/// Whether `path` is one of the daemon's sync cookies.
pub fn is_cookie(path: &Path) -> bool {
    path.file_name()
        .is_some_and(|n| marked_pid(n.as_bytes(), SYNC_COOKIE).is_some())
}

/// Sync cookies and a restore's temporary files (encrypted copies being deleted
/// too): never recorded. Matched exactly, so a user's file that merely starts like
/// one is protected like any other.
pub fn is_internal(path: &Path) -> bool {
    is_cookie(path)
        || path
            .file_name()
            .is_some_and(|name| is_temp_name(name) || aside_original(name.as_bytes()).is_some())
}

fn ends_with_ignoring_case(name: &[u8], suffix: &[u8]) -> bool {
    name.len() > suffix.len() && name[name.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_files_of_programs_are_recognised_by_name() {
        for lock in [
            "/srv/share/repo/.git/index.lock",
            "/srv/share/repo/.git/HEAD.lock",
            "/srv/share/repo/.git/refs/heads/main.lock",
            "/srv/share/office/~$budget.xlsx",
            "/srv/share/office/.~lock.report.odt#",
            "/srv/share/notes/.#todo.txt",
            "/srv/share/print/~brochure.idlk",
            "/srv/share/plans/HOUSE.DWL",
            "/srv/share/plans/house.dwl2",
        ] {
            assert!(is_program_lock(Path::new(lock)), "{lock}");
        }
    }

    #[test]
    fn files_people_keep_are_not_lock_files() {
        for kept in [
            "/srv/share/app/Cargo.lock",
            "/srv/share/app/package-lock.json",
            "/srv/share/app/yarn.lock",
            "/srv/share/repo/.git/config",
            "/srv/share/repo/.gitignore",
            "/srv/share/office/budget.xlsx",
            "/srv/share/office/.~lock.report.odt",
            "/srv/share/notes/.#",
            "/srv/share/money/$100.txt",
            "/srv/share/plans/dwl",
        ] {
            assert!(!is_program_lock(Path::new(kept)), "{kept}");
        }
    }

    #[test]
    fn only_names_of_exactly_our_form_are_temporary() {
        assert!(is_temp_name(&own_name(RESTORE_TEMP, 7)));
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
    fn an_encrypted_copy_being_deleted_keeps_its_name_in_its_temporary_one() {
        let name = aside_name(4, OsStr::new("report.docx.locked")).unwrap();
        let (pid, original) = aside_original(name.as_bytes()).unwrap();
        assert_eq!(pid, std::process::id());
        assert_eq!(original, OsStr::new("report.docx.locked"));
        assert!(is_internal(&Path::new("/srv/share").join(&name)));
        assert!(aside_name(4, OsStr::new(&"x".repeat(240))).is_none());
        for user_name in [
            ".undelete-aside-notes.txt",
            ".undelete-aside-12-3",
            ".undelete-aside-12-3.",
            ".undelete-aside-12.report.docx",
            ".undelete-aside-12-3x.report.docx",
        ] {
            assert!(
                aside_original(user_name.as_bytes()).is_none(),
                "{user_name}"
            );
            assert!(!is_internal(Path::new(user_name)), "{user_name}");
        }
    }
}
