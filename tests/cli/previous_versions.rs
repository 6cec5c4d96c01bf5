//! Windows' "Previous Versions" through a real Samba: `smbd` on loopback serves the
//! protected folder with the lines `undelete samba-config` prints, `vfs_shadow_copy2`
//! reads the points in time from `undelete mount`, and `smbclient` plays the PC.

use std::fs;
use std::os::unix::fs::{PermissionsExt, chown};
use std::path::Path;

use crate::common::mount::{Mount, clear_of_the_hour, next_second};
use crate::common::samba::{Samba, User};
use crate::common::*;

/// The share's settings as `undelete samba-config` prints them, for the mount at `mount`.
fn share_lines(env: &TestEnv, mount: &Path) -> String {
    let printed = env.run_ok(&[
        "samba-config",
        env.share.to_str().unwrap(),
        "--mount",
        mount.to_str().unwrap(),
    ]);
    assert!(printed.contains("vfs objects = shadow_copy2"), "{printed}");
    printed
}

/// Mounts the vault, then serves the share with Previous Versions from it.
fn serve(test: &str, env: &TestEnv) -> Option<(Mount, Samba)> {
    let mount = Mount::start(env, test)?;
    let lines = share_lines(env, &mount.dir);
    let samba = Samba::start_with(test, &[("office", &env.share, &lines)])?;
    crate::common::samba::make_traversable(&mount.dir);
    Some((mount, samba))
}

/// `@GMT-…` names in smbclient's `allinfo` output.
fn versions_in(allinfo: &str) -> Vec<String> {
    allinfo
        .lines()
        .filter_map(|l| l.trim().strip_prefix("@GMT-"))
        .map(|rest| format!("@GMT-{}", rest.trim()))
        .collect()
}

fn give(user: &User, path: &Path, mode: u32) {
    chown(path, Some(user.uid), Some(user.gid)).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn previous_versions_list_the_points_a_file_was_in_and_bring_back_a_deleted_one() {
    let test = "previous_versions_list_the_points_a_file_was_in_and_bring_back_a_deleted_one";
    clear_of_the_hour();
    let mut env = TestEnv::new();
    env.start_daemon(&[]);
    let first = content(1, 20_000);
    let second = content(2, 30_000);
    let pdf = content(3, 250_000);
    env.write("letter.docx", &first);
    env.write("old.txt", "old");
    env.sync();
    next_second();
    env.remove_and_sync(&["old.txt"]);
    fs::write(env.path("letter.docx"), &second).unwrap();
    // Made and deleted between two whole hours: no hourly snapshot would hold it.
    env.write("folder/deleted.pdf", &pdf);
    env.sync();
    next_second();
    env.remove_and_sync(&["folder/deleted.pdf"]);
    let Some((mount, samba)) = serve(test, &env) else {
        return;
    };
    let anna = samba.add_user("anna");
    for path in [
        env.share.clone(),
        env.path("letter.docx"),
        env.path("folder"),
    ] {
        chown(&path, Some(anna.uid), Some(anna.gid)).unwrap();
    }
    let points = mount.points();
    assert_eq!(
        points.len(),
        2,
        "one point before each incident: {points:?}"
    );
    let (after_edit, before_edit) = (&points[0], &points[1]);

    let pc = samba.client(&anna, "office");
    let allinfo = pc.run_ok("allinfo letter.docx");
    eprintln!("----- smbclient allinfo letter.docx -----\n{allinfo}");
    assert_eq!(versions_in(&allinfo), points, "{allinfo}");

    let got = env.root.join("got");
    fs::create_dir_all(&got).unwrap();
    for (point, want) in [(after_edit, &second), (before_edit, &first)] {
        pc.run_ok(&format!(
            "get {point}\\letter.docx {}",
            got.join("letter.docx").display()
        ));
        assert_eq!(&fs::read(got.join("letter.docx")).unwrap(), want, "{point}");
    }
    pc.run_ok(&format!(
        "get {after_edit}\\folder\\deleted.pdf {}",
        got.join("deleted.pdf").display()
    ));
    assert_eq!(
        fs::read(got.join("deleted.pdf")).unwrap(),
        pdf,
        "byte for byte"
    );
    let listing = pc.run_ok(&format!("ls {before_edit}\\*"));
    assert!(!listing.contains("folder"), "not made yet then: {listing}");
    // And doctor, reading the very settings smbd runs with, finds nothing wrong.
    let (_, check) = doctor_on(&env, samba.conf());
    assert_eq!(check["ok"], true, "{check:#}");
}

#[test]
fn a_samba_user_without_read_permission_gets_access_denied_for_its_versions() {
    let test = "a_samba_user_without_read_permission_gets_access_denied_for_its_versions";
    clear_of_the_hour();
    let mut env = TestEnv::new();
    env.start_daemon(&[]);
    env.write("public/salary.xlsx", "anna's only");
    env.write("private/notes.txt", "in anna's folder");
    env.write("public/menu.txt", "for everyone");
    env.write("old.txt", "old");
    env.sync();
    let Some((mount, samba)) = serve(test, &env) else {
        return;
    };
    assert!(mount.points().is_empty(), "nothing deleted yet");
    let anna = samba.add_user("anna");
    let bob = samba.add_user("bob");
    give(&anna, &env.share, 0o777);
    give(&anna, &env.path("public"), 0o755);
    give(&anna, &env.path("public/salary.xlsx"), 0o600);
    give(&anna, &env.path("public/menu.txt"), 0o644);
    give(&anna, &env.path("private"), 0o700);
    give(&anna, &env.path("private/notes.txt"), 0o644);
    env.sync();
    next_second();
    env.remove_and_sync(&["old.txt"]);
    env.remove_and_sync(&["public/salary.xlsx"]);
    // The point just made is listed at once, though the top was listed before.
    let points = mount.points();
    assert_eq!(points.len(), 1, "{points:?}");
    let point = points[0].clone();

    let got = env.root.join("got");
    fs::create_dir_all(&got).unwrap();
    fs::set_permissions(&got, fs::Permissions::from_mode(0o777)).unwrap();
    for (user, allowed) in [(&anna, true), (&bob, false)] {
        let pc = samba.client(user, "office");
        // What everyone could read, everyone can.
        pc.run_ok(&format!(
            "get {point}\\public\\menu.txt {}/{}-menu.txt",
            got.display(),
            user.name
        ));
        for file in ["public\\salary.xlsx", "private\\notes.txt"] {
            let out = pc.run(&format!(
                "get {point}\\{file} {}/{}-{}",
                got.display(),
                user.name,
                file.replace('\\', "-")
            ));
            let text = output_text(&out);
            if allowed {
                assert!(!text.contains("NT_STATUS_"), "{} {file}: {text}", user.name);
            } else {
                assert!(
                    text.contains("NT_STATUS_ACCESS_DENIED"),
                    "{} got {point}\\{file}: {text}",
                    user.name
                );
            }
        }
    }
}

/// `undelete doctor --json` reading the Samba settings in `conf`: the exit code and
/// the `previous_versions` check.
fn doctor_on(env: &TestEnv, conf: &Path) -> (bool, serde_json::Value) {
    let out = env
        .command()
        .args(["doctor", "--json"])
        .env("UNDELETE_SMB_CONF", conf)
        .output()
        .expect("run undelete doctor");
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("doctor --json is not JSON ({e}):\n{}", output_text(&out)));
    let check = answer["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == "previous_versions")
        .unwrap_or_else(|| panic!("no previous_versions check: {answer:#}"))
        .clone();
    (out.status.success(), check)
}

#[test]
fn doctor_says_whether_office_users_can_bring_back_files_from_explorer() {
    let test = "doctor_says_whether_office_users_can_bring_back_files_from_explorer";
    if !Path::new("/usr/bin/testparm").exists() {
        eprintln!("SKIPPED {test}: testparm is not installed (package samba-common-bin)");
        return;
    }
    let mut env = TestEnv::new();
    env.start_daemon(&[]);
    env.write("a.txt", "a");
    env.sync();
    let conf = env.root.join("smb.conf");
    let share = format!("[office]\n  path = {}\n", env.share.display());
    let mount_dir = env.root.join("mnt");
    fs::create_dir_all(&mount_dir).unwrap();

    // A share without Previous Versions: protection works, and doctor says how to offer them.
    fs::write(&conf, &share).unwrap();
    let (_, check) = doctor_on(&env, &conf);
    let message = check["message"].as_str().unwrap();
    assert_eq!(check["ok"], true, "{check:#}");
    assert!(
        message.contains("[office]") && message.contains("does not offer Previous Versions"),
        "{check:#}"
    );
    assert!(message.contains("samba-config"), "{check:#}");

    // Set up as printed, but the vault is not mounted where Samba looks.
    fs::write(&conf, format!("{share}{}", share_lines(&env, &mount_dir))).unwrap();
    let (passed, check) = doctor_on(&env, &conf);
    assert!(!passed, "{check:#}");
    assert_eq!(check["ok"], false, "{check:#}");
    assert!(
        check["message"].as_str().unwrap().contains("not mounted"),
        "{check:#}"
    );
    assert!(
        check["fix"].as_str().unwrap().contains("mount"),
        "{check:#}"
    );
    assert!(
        !check["commands"].to_string().contains("samba-config"),
        "its lines are right: {check:#}"
    );
    let Some(mount) = Mount::start(&env, test) else {
        return;
    };

    // Mounted: office users can help themselves.
    let (_, check) = doctor_on(&env, &conf);
    assert_eq!(check["ok"], true, "{check:#}");
    assert!(
        check["message"]
            .as_str()
            .unwrap()
            .contains("offers Previous Versions"),
        "{check:#}"
    );

    // Pointed at another folder than the mount: named, with the lines to use.
    let elsewhere = share_lines(&env, &env.root.join("elsewhere"));
    fs::write(&conf, format!("{share}{elsewhere}")).unwrap();
    let (passed, check) = doctor_on(&env, &conf);
    assert!(!passed, "{check:#}");
    let message = check["message"].as_str().unwrap();
    assert!(message.contains("shadow:snapdir"), "{check:#}");
    assert!(
        check["commands"].to_string().contains("samba-config"),
        "{check:#}"
    );
    drop(mount);
}
