//! What a file's name alone says about it.
//!
//! Programs leave small lock files beside what they have open: git's
//! `.git/index.lock`, Microsoft Office's `~$report.docx`, LibreOffice's
//! `.~lock.report.odt#`. Brought back by a restore, such a file tells its
//! program the document is still open (git then refuses to run: "File exists"),
//! so restores leave them out unless asked, and counts of lost files leave them
//! out of the headline.
//!
//! Decided by name only, from the patterns the programs themselves use; it
//! never looks at the disk.

use std::ffi::OsStr;
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
}
