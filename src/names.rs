//! What a file's name alone says about it.
//!
//! Programs leave small lock files beside what they have open: git's
//! `.git/index.lock`, Microsoft Office's `~$report.docx`, LibreOffice's
//! `.~lock.report.odt#`. Brought back by a restore, such a file tells its
//! program the document is still open (git then refuses to run: "File exists"),
//! so restores leave them out unless asked, and counts of lost files leave them
//! out of the headline.
//!
//! The program leaves names of its own in users' folders for a moment: the
//! folders a restore writes files in and deletes encrypted copies in,
//! marked with 64 random bits drawn for that restore (`Mark`), and the daemon's
//! sync cookies. A name alone never proves a file is the program's own: anyone
//! who may write in a folder can make a file of any name. So these names are
//! only made and recognised here; who made one is decided by who knows the mark
//! (the daemon, told by the restore running now) or the cookie (the daemon, which
//! made it), never by the name's form.
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

/// The folder, 0700, a restore writes files in beside their place before renaming
/// each into place (a report written with `--report` too, as a file).
pub const RESTORE_TEMP: &str = ".undelete-restore-";

/// The folder, 0700, a restore moves encrypted copies into to delete them there,
/// where nobody else can rename a file onto the name it deletes.
pub const ASIDE_TEMP: &str = ".undelete-aside-";

/// The daemon's sync cookies (see `watch::sync`).
pub const SYNC_COOKIE: &str = ".undelete-sync-";

/// 64 bits from the kernel's random source; should it fail, the clock's
/// nanoseconds, which are still not a count anyone can run ahead of.
pub fn unguessable() -> u64 {
    let mut bytes = [0u8; 8];
    // SAFETY: a buffer of 8 bytes, and its length.
    let n = unsafe { libc::getrandom(bytes.as_mut_ptr().cast(), bytes.len(), 0) };
    if n == bytes.len() as isize {
        return u64::from_ne_bytes(bytes);
    }
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or_default()
}

/// What marks the names one restore leaves in users' folders: drawn at random for
/// each restore, so nobody can make such a name before the restore shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Mark(u64);

impl Mark {
    pub fn new() -> Self {
        Self(unguessable())
    }

    /// As it is written in names and told to the daemon: 16 hexadecimal digits.
    pub fn to_hex(self) -> String {
        format!("{:016x}", self.0)
    }

    pub fn from_hex(text: &str) -> Option<Self> {
        (text.len() == 16 && text.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| u64::from_str_radix(text, 16).ok().map(Self))
            .flatten()
    }
}

impl Default for Mark {
    fn default() -> Self {
        Self::new()
    }
}

/// A name of a restore's own: `prefix`, its mark, a dash, a count.
pub fn marked_name(prefix: &str, mark: Mark, counter: u64) -> OsString {
    OsString::from(format!("{prefix}{}-{counter}", mark.to_hex()))
}

/// The mark in `name` when it is exactly of the form `marked_name` makes (either
/// prefix). Whose it is, if anyone's, the name cannot say.
pub fn mark_of(name: &[u8]) -> Option<Mark> {
    let rest = [RESTORE_TEMP, ASIDE_TEMP]
        .iter()
        .find_map(|prefix| name.strip_prefix(prefix.as_bytes()))?;
    let rest = std::str::from_utf8(rest).ok()?;
    let (mark, counter) = rest.split_once('-')?;
    if counter.is_empty() || !counter.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Mark::from_hex(mark)
}

/// Whether `st` is a folder only this account could have made: owned by it and
/// readable by it alone. A folder made 0700 inside a setgid one has the setgid bit
/// too (group shares), which gives nobody else a way in.
pub fn is_own_folder(st: &rustix::fs::Stat) -> bool {
    rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::Directory
        && st.st_uid == rustix::process::geteuid().as_raw()
        && st.st_mode & 0o777 == 0o700
        && st.st_mode & 0o5000 == 0
}

/// A sync cookie's name: the daemon's pid, a dash, a random number.
pub fn cookie_name(random: u64) -> OsString {
    OsString::from(format!("{SYNC_COOKIE}{}-{random}", std::process::id()))
}

/// Whether `path`'s name has the form of a sync cookie. Only the daemon knows
/// whether it is one of its own (see `watch::sync`): this only spares it looking
/// at its own work further.
pub fn is_cookie(path: &Path) -> bool {
    let Some(rest) = path
        .file_name()
        .and_then(|n| n.as_bytes().strip_prefix(SYNC_COOKIE.as_bytes()))
    else {
        return false;
    };
    let digits = |s: &[u8]| !s.is_empty() && s.iter().all(u8::is_ascii_digit);
    match rest.iter().position(|&b| b == b'-') {
        Some(dash) => digits(&rest[..dash]) && digits(&rest[dash + 1..]),
        None => false,
    }
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
    fn a_restores_names_carry_its_mark_and_only_names_of_exactly_that_form_do() {
        let mark = Mark::new();
        for prefix in [RESTORE_TEMP, ASIDE_TEMP] {
            let name = marked_name(prefix, mark, 7);
            assert_eq!(mark_of(name.as_bytes()), Some(mark), "{name:?}");
        }
        assert_eq!(Mark::from_hex(&mark.to_hex()), Some(mark));
        for user_name in [
            ".undelete-restore-notes.txt",
            ".undelete-restore-12-3",
            ".undelete-restore-0123456789abcdef",
            ".undelete-restore-0123456789abcdef-",
            ".undelete-restore-0123456789abcdef-3.txt",
            ".undelete-aside-0123456789abcde-3",
            ".undelete-aside-5-6.report.docx",
            ".undelete-sync-0123456789abcdef-3",
        ] {
            assert_eq!(mark_of(user_name.as_bytes()), None, "{user_name}");
        }
        // A name of the right form says nothing of whose it is: only its mark does.
        assert!(mark_of(b".undelete-restore-0123456789abcdef-3").is_some());
    }

    #[test]
    fn marks_are_drawn_not_counted() {
        let marks: std::collections::HashSet<Mark> = (0..64).map(|_| Mark::new()).collect();
        assert_eq!(marks.len(), 64);
        let cookie = cookie_name(unguessable());
        assert!(is_cookie(Path::new(&cookie)), "{cookie:?}");
        assert!(!is_cookie(Path::new(".undelete-sync-list.txt")));
    }
}
