//! The program's own names in users' folders (a restore's temporary files, the
//! folders it deletes encrypted copies in, the daemon's sync cookies): a user's
//! file that merely has such a name is a user's file like any other. It is
//! recorded, comes back after a deletion, and no restore removes or renames it.

use std::fs;
use std::path::PathBuf;

use crate::common::*;

/// Names a user may give a file that look like the program's own, old forms and
/// new: a count after a pid, a random number after a pid, 64 random bits.
fn lookalikes(daemon_pid: u32) -> Vec<String> {
    vec![
        ".undelete-restore-12-3".into(),
        ".undelete-sync-1-2".into(),
        ".undelete-aside-5-6.report.docx".into(),
        format!(".undelete-sync-{daemon_pid}-8147294715371"),
        ".undelete-restore-0123456789abcdef-0".into(),
        ".undelete-aside-0123456789abcdef-0".into(),
    ]
}

/// `path` (as JSON gives it) is listed by `list --all` as there now, and can come
/// back; a path restored after a deletion is listed deleted too, which is not looked at.
pub fn assert_listed_live(env: &TestEnv, path: &str) {
    let listed = env.list_json(&["--all"]);
    let live = listed
        .iter()
        .find(|e| e["path"] == path && e["deleted_at"].is_null())
        .unwrap_or_else(|| panic!("{path} is not listed as there: {listed:#?}"));
    assert_live_and_recoverable(live);
}

/// A pid no process has now.
fn ended_pid() -> u32 {
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    pid
}

#[test]
fn files_named_like_the_programs_own_are_kept_and_come_back_after_deletion() {
    let mut env = TestEnv::new();
    // Some there before the daemon starts (found by its scan), some made while it watches.
    let mut files: Vec<(PathBuf, String)> = Vec::new();
    for (n, name) in lookalikes(0).iter().enumerate() {
        let rel = PathBuf::from(format!("before/{name}"));
        let data = format!("a file of mine, before, {n}\n");
        env.write(&rel, &data);
        files.push((rel, data));
    }
    env.start_daemon_and_sync(&[]);
    fs::create_dir_all(env.path("during")).unwrap();
    env.sync();
    for (n, name) in lookalikes(env.daemon_pid()).iter().enumerate() {
        let rel = PathBuf::from(format!("during/{name}"));
        let data = format!("a file of mine, written while watched, {n}\n");
        env.write(&rel, &data);
        files.push((rel, data));
    }
    env.sync();
    let live = env.list_by_path(&["--all"]);
    for (rel, _) in &files {
        assert_live_and_recoverable(entry(&live, &env.json_path(rel)));
    }

    for (rel, _) in &files {
        fs::remove_file(env.path(rel)).unwrap();
    }
    env.sync();
    let deleted = env.list_by_path(&[]);
    for (rel, _) in &files {
        assert_deleted_and_recoverable(entry(&deleted, &env.json_path(rel)));
    }
    let (ok, report, text) = restore_json(&env, &["--all-deleted"]);
    assert!(ok, "{text}");
    assert_eq!(report["recovered"], files.len(), "{report:#}");
    for (rel, data) in &files {
        assert_eq!(
            fs::read_to_string(env.path(rel)).unwrap(),
            *data,
            "{}",
            rel.display()
        );
    }
    env.stop_daemon();
}

#[test]
fn files_planted_to_look_like_an_interrupted_restores_leftovers_survive_a_restore() {
    use std::os::unix::fs::{PermissionsExt, chown};
    let mut env = TestEnv::new();
    env.write("docs/a.txt", "a");
    env.start_daemon_and_sync(&[]);
    fs::remove_file(env.path("docs/a.txt")).unwrap();
    env.sync();
    // Named as a restore that died would have left them: by the pid of a process
    // that no longer runs, or in the newer form.
    let dead = ended_pid();
    let planted = [
        format!(".undelete-restore-{dead}-0"),
        format!(".undelete-aside-{dead}-0.report.docx"),
        ".undelete-restore-0123456789abcdef-1".to_owned(),
    ];
    for name in &planted {
        env.write(format!("docs/{name}"), format!("planted: {name}"));
    }
    // A user's own folder named like the one a restore deletes encrypted copies in.
    let theirs = env.path("docs/.undelete-aside-0123456789abcdef-0");
    fs::create_dir(&theirs).unwrap();
    fs::write(theirs.join("budget.xlsx"), "their budget").unwrap();
    fs::set_permissions(&theirs, fs::Permissions::from_mode(0o700)).unwrap();
    if is_root() {
        chown(&theirs, Some(65534), Some(65534)).unwrap();
    }
    env.sync();

    let (ok, report, text) = restore_json(&env, &["--all-deleted"]);
    assert!(ok, "{text}");
    assert_eq!(report["recovered"], 1, "{report:#}");
    assert_eq!(fs::read_to_string(env.path("docs/a.txt")).unwrap(), "a");
    for name in &planted {
        assert_eq!(
            fs::read_to_string(env.path(format!("docs/{name}"))).unwrap(),
            format!("planted: {name}"),
            "{name}"
        );
    }
    assert!(
        !env.path("docs/report.docx").exists(),
        "a user's file was renamed"
    );
    assert_eq!(
        fs::read_to_string(theirs.join("budget.xlsx")).unwrap(),
        "their budget"
    );
    assert!(
        !env.path("docs/budget.xlsx").exists(),
        "moved out of their folder"
    );
    env.sync();
    for name in &planted {
        assert_listed_live(&env, &env.json_path(format!("docs/{name}")));
    }
    env.stop_daemon();
}
