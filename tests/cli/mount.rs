//! `undelete mount`: the vault as read-only folders, mounted for real with FUSE.
//! What each view lists and reads, the owner and mode of every entry, a damaged
//! copy, writes, the end of the mount, and other users' files.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt, chown, symlink};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::common::mount::{Mount, clear_of_the_hour, is_mounted, next_second};
use crate::common::*;

/// A user with no account, for files nobody else may read.
const OWNER: u32 = 65534;
/// Another user, who should see none of them.
const OTHER: u32 = 65533;

/// The vault mounted after `setup` made files and deleted some, with a point in
/// time before the deletion.
fn mounted(test: &str, env: &mut TestEnv) -> Option<Mount> {
    // Others must reach the mount at all: the temporary folder is root's, 0700.
    fs::set_permissions(&env.root, fs::Permissions::from_mode(0o711)).unwrap();
    Mount::start(env, test)
}

/// `cat PATH` as the user `uid`.
fn cat_as(uid: u32, path: &Path) -> Output {
    Command::new("setpriv")
        .args([
            &format!("--reuid={uid}"),
            &format!("--regid={uid}"),
            "--clear-groups",
            "cat",
        ])
        .arg(path)
        .output()
        .expect("run setpriv")
}

fn denied(out: &Output) -> bool {
    !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("Permission denied")
}

/// The only incident's code.
fn incident_code(env: &TestEnv) -> String {
    let incidents = env.incidents_json();
    incidents[0]["code"].as_str().unwrap().to_owned()
}

#[test]
fn each_view_lists_and_reads_what_the_vault_holds() {
    clear_of_the_hour();
    let mut env = TestEnv::new();
    env.start_daemon(&[]);
    let kept = content(1, 5000);
    let report = content(2, 300_000);
    env.write("letter.txt", &kept);
    env.write("docs/report.pdf", &report);
    env.sync();
    next_second();
    env.remove_and_sync(&["docs/report.pdf"]);
    let code = incident_code(&env);
    let Some(mount) = mounted("each_view_lists_and_reads_what_the_vault_holds", &mut env) else {
        return;
    };
    let top: Vec<String> = fs::read_dir(&mount.dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(top.contains(&"incidents".to_owned()), "{top:?}");
    assert!(top.contains(&"deleted".to_owned()), "{top:?}");
    // One incident, so one point in time: just before it.
    let points = mount.points();
    assert_eq!(points.len(), 1, "{top:?}");
    let before = &points[0];

    let share = mount.at(before, &env.share);
    let mut names: Vec<_> = fs::read_dir(&share)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    assert_eq!(names, ["docs", "letter.txt"]);
    assert_eq!(fs::read(share.join("letter.txt")).unwrap(), kept);
    assert_eq!(fs::read(share.join("docs/report.pdf")).unwrap(), report);

    let deleted = mount.at("deleted", &env.share);
    let names: Vec<_> = fs::read_dir(&deleted)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["docs"], "only what was deleted, and its folder");
    assert_eq!(fs::read(deleted.join("docs/report.pdf")).unwrap(), report);

    let incidents: Vec<_> = fs::read_dir(mount.dir.join("incidents"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(incidents, [OsStr::new(&code)]);
    let incident = mount.at(&format!("incidents/{code}"), &env.share);
    assert_eq!(fs::read(incident.join("docs/report.pdf")).unwrap(), report);
    assert!(
        !incident.join("letter.txt").exists(),
        "not part of the incident"
    );
}

#[test]
fn every_entry_keeps_the_owner_and_mode_it_had() {
    let mut env = TestEnv::new();
    if !is_root() {
        eprintln!("SKIPPED every_entry_keeps_the_owner_and_mode_it_had: needs root to chown");
        return;
    }
    env.start_daemon(&[]);
    env.write("open/a.txt", "a");
    env.write("open/team/b.txt", "b");
    env.write("private/c.txt", "c");
    env.write("private/d.sh", "#!/bin/sh\n");
    symlink("c.txt", env.path("private/link")).unwrap();
    for (path, mode, uid) in [
        ("open", 0o755, 0),
        ("open/a.txt", 0o644, 0),
        ("open/team", 0o2770, 1000),
        ("open/team/b.txt", 0o660, 1000),
        ("private", 0o700, OWNER),
        ("private/c.txt", 0o640, OWNER),
        ("private/d.sh", 0o750, OWNER),
    ] {
        let p = env.path(path);
        chown(&p, Some(uid), Some(uid)).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
    }
    env.sync();
    let before = tree(&env.share);
    let mut had: Vec<(PathBuf, u32, u32, u32, u64, i64)> = Vec::new();
    for path in before.keys() {
        let p = env.share.join(path);
        let m = fs::symlink_metadata(&p).unwrap();
        let size = if m.is_dir() { 0 } else { m.len() };
        had.push((path.clone(), m.mode(), m.uid(), m.gid(), size, m.mtime()));
    }
    next_second();
    for dir in ["open", "private"] {
        fs::remove_dir_all(env.path(dir)).unwrap();
    }
    env.sync();
    let Some(mount) = mounted("every_entry_keeps_the_owner_and_mode_it_had", &mut env) else {
        return;
    };
    let point = mount.points()[0].clone();
    // Each folder of the share is an incident of its own.
    let incidents: Vec<String> = env
        .incidents_json()
        .iter()
        .map(|i| format!("incidents/{}", i["code"].as_str().unwrap()))
        .collect();
    assert_eq!(incidents.len(), 2, "{incidents:?}");
    let mut in_incidents = 0;
    for top in [&point, "deleted"]
        .into_iter()
        .chain(incidents.iter().map(String::as_str))
    {
        let view = mount.at(top, &env.share);
        let is_incident = top.starts_with("incidents/");
        for (path, mode, uid, gid, size, mtime) in &had {
            let what = format!("{top}/{}", path.display());
            let m = match fs::symlink_metadata(view.join(path)) {
                Ok(m) => m,
                // An incident holds only its own folder.
                Err(_) if is_incident => continue,
                Err(e) => panic!("{what}: {e}"),
            };
            in_incidents += usize::from(is_incident);
            assert_eq!(m.mode(), *mode, "mode of {what}");
            assert_eq!((m.uid(), m.gid()), (*uid, *gid), "owner of {what}");
            if !m.is_dir() {
                assert_eq!(m.len(), *size, "size of {what}");
                assert_eq!(m.mtime(), *mtime, "mtime of {what}");
            }
        }
        if let Ok(target) = fs::read_link(view.join("private/link")) {
            assert_eq!(target, Path::new("c.txt"), "a link comes back as a link");
        } else {
            assert!(is_incident, "{top}/private/link is missing");
        }
    }
    assert_eq!(in_incidents, had.len(), "every entry is in one incident");
}

#[test]
fn a_damaged_copy_gives_an_io_error_and_a_log_line() {
    let mut env = TestEnv::new();
    env.start_daemon(&[]);
    let big = content(3, 700_000);
    let small = content(4, 100);
    env.write("big.bin", &big);
    env.write("small.txt", &small);
    env.sync();
    next_second();
    fs::remove_file(env.path("big.bin")).unwrap();
    env.remove_and_sync(&["small.txt"]);
    // One byte of each copy changes on the vault's disk, the big one far from its start.
    for (data, at) in [(&big, 500_000u64), (&small, 10)] {
        let object = env.object_path(data);
        fs::set_permissions(&object, fs::Permissions::from_mode(0o600)).unwrap();
        let file = fs::OpenOptions::new().write(true).open(&object).unwrap();
        std::os::unix::fs::FileExt::write_all_at(&file, b"\xff", at).unwrap();
    }
    let Some(mount) = mounted("a_damaged_copy_gives_an_io_error_and_a_log_line", &mut env) else {
        return;
    };
    let deleted = mount.at("deleted", &env.share);
    for name in ["big.bin", "small.txt"] {
        let err = fs::read(deleted.join(name)).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EIO), "{name}: {err}");
    }
    // A read at an offset in a part that is intact still fails: the copy is not whole.
    let file = fs::File::open(deleted.join("big.bin")).unwrap();
    let mut buf = [0u8; 16];
    let err = std::os::unix::fs::FileExt::read_at(&file, &mut buf, 4096).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EIO), "{err}");
    let log = mount.log();
    assert!(
        log.contains("big.bin") && log.contains("damaged"),
        "the log names the file and what is wrong:\n{log}"
    );
}

#[test]
fn nothing_in_the_mount_can_be_written() {
    let mut env = TestEnv::new();
    env.start_daemon(&[]);
    let data = content(5, 1000);
    env.write("docs/a.txt", &data);
    env.sync();
    next_second();
    env.remove_and_sync(&["docs/a.txt"]);
    let Some(mount) = mounted("nothing_in_the_mount_can_be_written", &mut env) else {
        return;
    };
    let point = mount.points()[0].clone();
    for top in [point.as_str(), "deleted"] {
        let docs = mount.at(top, &env.share).join("docs");
        let file = docs.join("a.txt");
        let attempts: Vec<(&str, std::io::Result<()>)> = vec![
            ("create", fs::write(docs.join("new.txt"), "x")),
            (
                "create at the top",
                fs::write(mount.dir.join("new.txt"), "x"),
            ),
            (
                "write",
                fs::OpenOptions::new().write(true).open(&file).map(drop),
            ),
            (
                "append",
                fs::OpenOptions::new().append(true).open(&file).map(drop),
            ),
            (
                "truncate",
                fs::OpenOptions::new()
                    .write(true)
                    .truncate(true)
                    .open(&file)
                    .map(drop),
            ),
            ("mkdir", fs::create_dir(docs.join("sub"))),
            ("unlink", fs::remove_file(&file)),
            ("rmdir", fs::remove_dir(&docs)),
            ("rename", fs::rename(&file, docs.join("b.txt"))),
            (
                "chmod",
                fs::set_permissions(&file, fs::Permissions::from_mode(0o777)),
            ),
            ("chown", chown(&file, Some(OTHER), None)),
            ("symlink", symlink("a.txt", docs.join("l"))),
            ("link", fs::hard_link(&file, docs.join("h"))),
        ];
        for (what, result) in attempts {
            let err = result.expect_err(what);
            assert_eq!(
                err.raw_os_error(),
                Some(libc::EROFS),
                "{what} in {top}: {err}"
            );
        }
        assert_eq!(fs::read(&file).unwrap(), data, "unchanged");
    }
    assert_eq!(fs::read(env.object_path(&data)).unwrap(), data);
}

#[test]
fn the_mount_ends_cleanly_on_sigterm_and_on_umount() {
    let mut env = TestEnv::new();
    env.start_daemon(&[]);
    env.write("a.txt", "a");
    env.sync();
    let Some(mut mount) = mounted("the_mount_ends_cleanly_on_sigterm_and_on_umount", &mut env)
    else {
        return;
    };
    let status = mount.stop();
    assert!(status.success(), "{status}\n{}", mount.log());
    assert!(!is_mounted(&mount.dir), "unmounted on SIGTERM");

    // Stopped while a program is still inside it: it still ends, and unmounts.
    let mut mount = Mount::start_on(&env, &mount.dir);
    let mut inside = Command::new("sleep")
        .arg("600")
        .current_dir(&mount.dir)
        .spawn()
        .unwrap();
    let status = mount.stop();
    let _ = inside.kill();
    let _ = inside.wait();
    assert!(status.success(), "{status}\n{}", mount.log());
    assert!(!is_mounted(&mount.dir), "unmounted while in use");

    // Unmounted by someone else.
    let mut mount = Mount::start_on(&env, &mount.dir);
    let out = Command::new("umount").arg(&mount.dir).output().unwrap();
    assert!(out.status.success(), "{}", output_text(&out));
    let status = mount.wait();
    assert!(status.success(), "{status}\n{}", mount.log());
    assert!(mount.log().contains("was unmounted"), "{}", mount.log());
}

#[test]
fn a_user_who_could_not_read_a_file_reads_no_version_of_it() {
    clear_of_the_hour();
    let mut env = TestEnv::new();
    if !is_root() {
        eprintln!("SKIPPED a_user_who_could_not_read_a_file…: needs root to switch users");
        return;
    }
    env.start_daemon(&[]);
    // A file only its owner may read, and a readable file in a folder only its owner
    // may enter; each in two versions, deleted in the end.
    env.write("public/secret.txt", "version 1");
    env.write("private/notes.txt", "version 1");
    for (path, mode) in [
        ("public", 0o755),
        ("public/secret.txt", 0o600),
        ("private", 0o700),
        ("private/notes.txt", 0o644),
    ] {
        chown(env.path(path), Some(OWNER), Some(OWNER)).unwrap();
        fs::set_permissions(env.path(path), fs::Permissions::from_mode(mode)).unwrap();
    }
    env.write("other.txt", "x");
    env.sync();
    next_second();
    env.remove_and_sync(&["other.txt"]);
    for path in ["public/secret.txt", "private/notes.txt"] {
        fs::write(env.path(path), "version 2").unwrap();
    }
    env.sync();
    next_second();
    fs::remove_file(env.path("public/secret.txt")).unwrap();
    env.remove_and_sync(&["private"]);
    let Some(mount) = mounted(
        "a_user_who_could_not_read_a_file_reads_no_version_of_it",
        &mut env,
    ) else {
        return;
    };
    let points = mount.points();
    assert_eq!(points.len(), 2, "{points:?}");
    let mut tops: Vec<String> = points.clone();
    tops.push("deleted".into());
    for incident in env.incidents_json() {
        tops.push(format!("incidents/{}", incident["code"].as_str().unwrap()));
    }
    let mut seen = 0;
    for top in &tops {
        for file in ["public/secret.txt", "private/notes.txt"] {
            let path = mount.at(top, &env.share.join(file));
            if !path.exists() {
                continue;
            }
            seen += 1;
            let theirs = cat_as(OWNER, &path);
            assert!(
                theirs.status.success(),
                "{top}/{file}: {}",
                output_text(&theirs)
            );
            let others = cat_as(OTHER, &path);
            assert!(
                denied(&others),
                "{top}/{file} as another user: {}",
                output_text(&others)
            );
        }
    }
    // Both versions of both, in the points, deleted/ and the second incident.
    assert!(seen >= 6, "{seen} versions looked at");
}

#[test]
fn a_folder_opened_to_everyone_later_keeps_what_it_held_before_closed() {
    let mut env = TestEnv::new();
    if !is_root() {
        eprintln!("SKIPPED a_folder_opened_to_everyone_later…: needs root to switch users");
        return;
    }
    env.start_daemon(&[]);
    env.write("hr/salaries.xlsx", "secret");
    chown(env.path("hr"), Some(OWNER), Some(OWNER)).unwrap();
    fs::set_permissions(env.path("hr"), fs::Permissions::from_mode(0o700)).unwrap();
    fs::set_permissions(
        env.path("hr/salaries.xlsx"),
        fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    env.sync();
    next_second();
    env.remove_and_sync(&["hr/salaries.xlsx"]);
    // Opened to everyone once the salaries were gone.
    fs::set_permissions(env.path("hr"), fs::Permissions::from_mode(0o755)).unwrap();
    env.write("hr/holidays.txt", "for everyone");
    env.sync();
    let Some(mount) = mounted(
        "a_folder_opened_to_everyone_later_keeps_what_it_held_before_closed",
        &mut env,
    ) else {
        return;
    };
    let before = mount.at(&mount.points()[0], &env.share.join("hr"));
    assert_eq!(fs::metadata(&before).unwrap().mode() & 0o7777, 0o700);
    assert!(denied(&cat_as(OTHER, &before.join("salaries.xlsx"))));
    assert!(
        cat_as(OWNER, &before.join("salaries.xlsx"))
            .status
            .success()
    );
    // deleted/ shows the folder as it is now, open: the file deleted while it was
    // closed is not shown there.
    let deleted = mount.at("deleted", &env.share.join("hr"));
    assert!(
        !deleted.join("salaries.xlsx").exists(),
        "a file deleted from a closed folder shown in the opened one"
    );
}

#[test]
fn odd_names_and_typed_names_are_taken_as_they_are() {
    let mut env = TestEnv::new();
    env.start_daemon(&[]);
    let names: Vec<&[u8]> = vec![
        b"line\nbreak.txt",
        b"latin1-\xe9t\xe9.txt",
        b"@GMT-2020.01.01-00.00.00",
        b"incidents",
        b"deleted",
    ];
    for name in &names {
        let path = env.share.join(OsStr::from_bytes(name));
        fs::write(&path, name).unwrap();
    }
    // A link into the vault, planted in the share.
    symlink(&env.vault, env.path("into-the-vault")).unwrap();
    env.sync();
    next_second();
    env.remove_and_sync(&["incidents"]);
    let code = incident_code(&env);
    let Some(mount) = mounted("odd_names_and_typed_names_are_taken_as_they_are", &mut env) else {
        return;
    };
    let point = mount.points()[0].clone();
    let share = mount.at(&point, &env.share);
    for name in &names {
        let path = share.join(OsStr::from_bytes(name));
        assert_eq!(&fs::read(&path).unwrap(), name, "{}", path.display());
    }
    assert_eq!(
        fs::read_link(share.join("into-the-vault")).unwrap(),
        env.vault,
        "a link comes back as the link it was"
    );
    if is_root() {
        let through = share.join("into-the-vault/index.db");
        assert!(denied(&cat_as(OTHER, &through)), "the vault stays root's");
    }
    // The mount's own names are only at its top.
    assert!(
        mount
            .dir
            .join("deleted")
            .join(env.share.strip_prefix("/").unwrap())
            .join("incidents")
            .exists()
    );
    // Names typed by hand: the code as listed works, other spellings do not.
    assert!(mount.dir.join("incidents").join(&code).is_dir());
    for typed in [code.to_lowercase(), code.replace('-', ""), "AAA-AAA".into()] {
        assert!(
            !mount.dir.join("incidents").join(&typed).exists(),
            "incidents/{typed} opened"
        );
    }
    // Any second that is over opens by name; one to come, or spelled otherwise, not.
    let typed = mount.dir.join("@GMT-2020.01.01-00.00.00");
    assert!(typed.is_dir(), "a past second typed by hand");
    assert_eq!(
        fs::read_dir(&typed).unwrap().count(),
        0,
        "nothing was protected then"
    );
    for not in [
        "@GMT-2999.01.01-00.00.00",
        "@GMT-2020.1.1-0.0.0",
        "@GMT-2020.01.01-00.00.60",
    ] {
        assert!(!mount.dir.join(not).exists(), "{not} opened");
    }
}

#[test]
fn the_mount_refuses_a_folder_it_would_hide_or_copy_itself_into() {
    let mut env = TestEnv::new();
    env.start_daemon(&[]);
    env.write("sub/a.txt", "a");
    env.sync();
    fs::create_dir(env.path("empty")).unwrap();
    let full = env.root.join("full");
    fs::create_dir(&full).unwrap();
    fs::write(full.join("x"), "x").unwrap();
    for (dir, words) in [
        (env.path("empty"), "inside the protected folder"),
        (full, "not empty"),
        (env.vault.join("objects"), "inside the vault"),
        (env.root.join("missing"), "no such folder"),
    ] {
        let out = env.run(&["mount", dir.to_str().unwrap()]);
        let text = output_text(&out);
        assert!(!out.status.success(), "{}: {text}", dir.display());
        assert!(text.contains(words), "{}: {text}", dir.display());
        assert!(!is_mounted(&dir));
    }
}
