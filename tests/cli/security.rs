//! Security: the vault is private to the daemon's account; a restore never
//! writes through a planted symlink nor outside its destination, whatever `..`
//! the paths given to it contain; someone who cannot read the vault is told to
//! use sudo; restored files get back their owner and mode.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::*;

/// Every folder and file below the vault: private to the daemon's user.
fn assert_private(vault: &Path, when: &str) {
    let me = rustix::process::geteuid().as_raw();
    let mut looked = 0;
    for entry in walkdir::WalkDir::new(vault) {
        let entry = entry.expect("walk the vault");
        let meta = entry.path().symlink_metadata().expect("stat");
        let ft = meta.file_type();
        if !(ft.is_dir() || ft.is_file()) {
            continue;
        }
        looked += 1;
        let mode = meta.mode() & 0o777;
        let wanted = if ft.is_dir() { 0o700 } else { 0o600 };
        assert_eq!(
            mode,
            wanted,
            "{} is {mode:o}, not {wanted:o} ({when})",
            entry.path().display()
        );
        assert_eq!(meta.uid(), me, "{} owner ({when})", entry.path().display());
    }
    assert!(looked > 10, "the vault was not walked ({when})");
}

#[test]
fn the_vault_folders_and_files_are_private_to_the_daemons_user() {
    let mut env = TestEnv::new();
    for n in 0..50 {
        env.write(format!("docs/f{n}.txt"), content(n, 100));
    }
    env.start_daemon_and_sync(&[]);
    env.remove_and_sync(&["docs"]);
    env.run_ok(&[
        "restore",
        "--all-deleted",
        "--to",
        env.root.join("back").to_str().unwrap(),
    ]);
    let names: Vec<String> = fs::read_dir(&env.vault)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    for name in ["index.db", "objects", "reports", "tmp", "daemon.lock"] {
        assert!(names.iter().any(|n| n == name), "{name} in {names:?}");
    }
    assert_private(&env.vault, "while the daemon runs");
    env.stop_daemon();
    assert_private(&env.vault, "after it stopped");
}

/// A share with `c.txt`, `docs/a.txt` and `docs/sub/b.txt` captured and deleted, and a
/// folder `outside/` beside it holding `victim.txt`.
fn deleted_share() -> (TestEnv, PathBuf) {
    let mut env = TestEnv::new();
    env.write("c.txt", "c");
    env.write("docs/a.txt", "a");
    env.write("docs/sub/b.txt", "b");
    env.start_daemon_and_sync(&[]);
    env.remove_and_sync(&["c.txt", "docs"]);
    let outside = env.root.join("outside");
    fs::create_dir(&outside).unwrap();
    fs::write(outside.join("victim.txt"), "precious").unwrap();
    (env, outside)
}

/// Everything in the test's folder except the vault and the daemon logs, which a
/// restore may change.
fn everything_but_the_vault(env: &TestEnv) -> BTreeMap<PathBuf, Node> {
    tree(&env.root)
        .into_iter()
        .filter(|(p, _)| !p.starts_with("vault") && !p.to_string_lossy().starts_with("daemon-"))
        .collect()
}

/// Runs a restore and checks that nothing changed outside `allowed` (relative to the
/// test's folder).
fn restore_changes_only(env: &TestEnv, args: &[&str], allowed: &[&str]) -> (bool, String) {
    let before = everything_but_the_vault(env);
    // Run as restore_json would, but a refused restore prints no report to parse.
    let mut all = vec!["restore"];
    all.extend_from_slice(args);
    all.push("--json");
    let out = env.run(&all);
    let (success, output) = (out.status.success(), output_text(&out));
    let after = everything_but_the_vault(env);
    let inside = |p: &Path| allowed.iter().any(|a| p.starts_with(a));
    for (path, node) in &before {
        if !inside(path) {
            assert_eq!(
                after.get(path),
                Some(node),
                "restore {args:?} changed {path:?}, outside {allowed:?}\n{output}"
            );
        }
    }
    for path in after.keys() {
        assert!(
            before.contains_key(path) || inside(path),
            "restore {args:?} wrote {path:?}, outside {allowed:?}\n{output}"
        );
    }
    (success, output)
}

#[test]
fn a_symlink_planted_at_a_files_name_is_neither_followed_nor_replaced() {
    let (env, outside) = deleted_share();
    symlink(outside.join("victim.txt"), env.path("c.txt")).unwrap();
    // (Named by its folder: a path given by name resolves the link, and selects nothing.)
    let (success, output) =
        restore_changes_only(&env, &["--under", &env.json_path("")], &["share"]);
    assert!(success, "{output}");
    assert_eq!(fs::read(outside.join("victim.txt")).unwrap(), b"precious");
    assert!(
        env.path("c.txt").symlink_metadata().unwrap().is_symlink(),
        "the planted link is left as it is"
    );
    let beside: Vec<_> = fs::read_dir(&env.share)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("c (deleted "))
        .collect();
    assert_eq!(beside.len(), 1, "restored beside the link: {output}");
    assert_eq!(fs::read(env.share.join(&beside[0])).unwrap(), b"c");
}

#[test]
fn a_symlink_planted_inside_the_to_folder_is_not_followed() {
    let (env, outside) = deleted_share();
    let to = env.root.join("dest");
    fs::create_dir(&to).unwrap();
    symlink(&outside, to.join("docs")).unwrap();
    let (success, output) = restore_changes_only(
        &env,
        &["--all-deleted", "--to", to.to_str().unwrap()],
        &["dest"],
    );
    assert!(!success, "files that could not be written fail the run");
    assert!(output.contains("symbolic link"), "{output}");
    assert_eq!(fs::read_dir(&outside).unwrap().count(), 1, "{output}");
    assert_eq!(fs::read(to.join("c.txt")).unwrap(), b"c");
}

#[test]
fn dot_dot_in_any_path_given_to_restore_never_leads_outside_the_destination() {
    let (env, _outside) = deleted_share();
    let share = env.share.to_str().unwrap().to_owned();
    let root = env.root.to_str().unwrap().to_owned();

    // Paths that climb out of the share select nothing, and write nothing.
    for args in [
        vec![format!("{share}/../outside/victim.txt")],
        vec![format!("{share}/docs/../../outside")],
        vec!["--under".to_owned(), format!("{share}/../outside")],
        vec![
            "--under".to_owned(),
            format!("{share}/docs/sub/../../../outside"),
        ],
    ] {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (success, output) = restore_changes_only(&env, &args, &[]);
        assert!(!success, "nothing matches {args:?}: {output}");
    }
    // Everything under / includes the share: restored in place, and only there.
    let (success, output) = restore_changes_only(
        &env,
        &["--under", &format!("{share}/docs/../../../..")],
        &["share"],
    );
    assert!(success, "{output}");
    assert_eq!(fs::read(env.path("docs/sub/b.txt")).unwrap(), b"b");
    fs::remove_dir_all(env.path("docs")).unwrap();
    env.remove_and_sync(&["c.txt"]);

    // `..` inside the share is resolved, and the files go to their own place only.
    let (success, output) = restore_changes_only(
        &env,
        &[&format!("{share}/docs/sub/../../c.txt")],
        &["share/c.txt"],
    );
    assert!(success, "{output}");
    assert_eq!(fs::read(env.path("c.txt")).unwrap(), b"c");

    // `--to` with `..` means the folder it names, and nothing else, even when the
    // folders it climbs out of do not exist.
    fs::create_dir(env.root.join("dest")).unwrap();
    for (to, lands) in [
        (format!("{root}/dest/../dest2"), "dest2"),
        (format!("{root}/missing/../dest3"), "dest3"),
    ] {
        let (success, output) = restore_changes_only(
            &env,
            &["--under", &format!("{share}/docs/sub/.."), "--to", &to],
            &[lands],
        );
        assert!(success, "{output}");
        let landed = env.root.join(lands);
        assert_eq!(fs::read(landed.join("docs/a.txt")).unwrap(), b"a");
        assert_eq!(fs::read(landed.join("docs/sub/b.txt")).unwrap(), b"b");
    }
}

/// `undelete ARGS…` run as the user nobody.
fn as_nobody(env: &TestEnv, args: &[&str]) -> std::process::Output {
    Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", BIN])
        .arg("--vault")
        .arg(&env.vault)
        .args(args)
        .env("UNDELETE_CONFIG", "/dev/null")
        .env("HOME", "/nonexistent")
        .output()
        .expect("run setpriv")
}

#[test]
fn a_user_who_cannot_read_the_vault_is_told_to_use_sudo() {
    if !is_root() {
        eprintln!("SKIPPED a_user_who_cannot_read_the_vault…: needs root to switch users");
        return;
    }
    let (env, _) = deleted_share();
    // Others may reach the vault folder (as /var/lib is), but not into it.
    fs::set_permissions(&env.root, fs::Permissions::from_mode(0o755)).unwrap();
    let share = env.json_path("");
    for args in [
        vec!["status"],
        vec!["status", "--json"],
        vec!["list"],
        vec!["list", "--all", "--json"],
        vec!["incidents"],
        vec!["verify"],
        vec!["sync"],
        vec!["restore", "--dry-run"],
        vec!["restore", "--under", &share],
        vec!["emergency", "--yes"],
    ] {
        let out = as_nobody(&env, &args);
        let text = output_text(&out);
        assert!(!out.status.success(), "{args:?} as nobody: {text}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("run it with sudo") && !stderr.contains("os error"),
            "{args:?} as nobody should say, in plain words, to run it with sudo: {text}"
        );
    }
    assert!(
        env.path("docs").symlink_metadata().is_err(),
        "nothing restored"
    );
}

#[test]
fn restored_files_get_their_owner_and_mode_back_never_more_readable() {
    if !is_root() {
        eprintln!("SKIPPED restored_files_get_their_owner…: needs root to give files away");
        return;
    }
    let mut env = TestEnv::new();
    let own = |rel: &str, mode: u32, uid: u32, gid: u32| {
        let path = env.path(rel);
        rustix::fs::chownat(
            rustix::fs::CWD,
            &path,
            Some(rustix::fs::Uid::from_raw(uid)),
            Some(rustix::fs::Gid::from_raw(gid)),
            rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
        )
        .unwrap();
        if !path.symlink_metadata().unwrap().is_symlink() {
            fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
        }
    };
    fs::create_dir_all(env.path("private/inner")).unwrap();
    fs::create_dir_all(env.path("team")).unwrap();
    env.write("private/secret.txt", "only 1234 reads this");
    env.write("private/inner/deeper.txt", "deeper");
    env.write("team/shared.txt", "1234 writes, group 4321 reads");
    env.write("team/public.txt", "anyone reads");
    env.write("team/nothing.txt", "nobody reads, not even 1234");
    env.write("team/setgid-tool", "#!/bin/sh\n");
    symlink("shared.txt", env.path("team/link")).unwrap();
    own("private/secret.txt", 0o600, 1234, 1234);
    own("private/inner/deeper.txt", 0o400, 1234, 1234);
    own("private/inner", 0o500, 1234, 1234);
    own("private", 0o700, 1234, 1234);
    own("team/shared.txt", 0o640, 1234, 4321);
    own("team/public.txt", 0o644, 4321, 4321);
    own("team/nothing.txt", 0o000, 1234, 1234);
    own("team/setgid-tool", 0o2750, 1234, 4321);
    own("team/link", 0, 1234, 4321);
    own("team", 0o2770, 1234, 4321);
    let original = tree(&env.share);

    env.start_daemon_and_sync(&[]);
    env.remove_and_sync(&["private", "team"]);

    let to = env.root.join("elsewhere");
    for (args, dest) in [
        (vec!["--all-deleted"], env.share.clone()),
        (
            vec!["--all-deleted", "--to", to.to_str().unwrap()],
            to.clone(),
        ),
    ] {
        let (success, _, output) = restore_json(&env, &args);
        assert!(success, "{output}");
        let back = tree(&dest);
        assert_eq!(
            back.keys().collect::<Vec<_>>(),
            original.keys().collect::<Vec<_>>(),
            "{output}"
        );
        for (rel, node) in &original {
            let got = &back[rel];
            let what = format!("{rel:?} restored to {}", dest.display());
            assert_eq!((got.uid, got.gid), (node.uid, node.gid), "{what}: owner");
            if node.kind != "symlink" {
                assert_eq!(got.mode, node.mode, "{what}: mode {:o}", got.mode);
            }
            assert!(got.data == node.data, "{what}: content");
        }
    }
}

/// The uid tests plant things as: an ordinary user with no name on most machines.
const PLANTER: u32 = 4242;

/// Runs `program ARGS…` as the user `PLANTER`, which must succeed.
fn as_planter(program: &str, args: &[&std::ffi::OsStr]) {
    let out = Command::new("setpriv")
        .arg(format!("--reuid={PLANTER}"))
        .arg(format!("--regid={PLANTER}"))
        .args(["--clear-groups", program])
        .args(args)
        .output()
        .expect("run setpriv");
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        output_text(&out)
    );
}

/// `ln -s TARGET LINK` as the user `PLANTER`.
fn plant_link(target: &Path, link: &Path) {
    as_planter("ln", &["-s".as_ref(), target.as_os_str(), link.as_os_str()]);
}

/// A folder `home/` in the test's folder that belongs to `PLANTER`, as a user's home
/// folder would; the test's folder is opened to others so they can reach it.
fn planters_home(env: &TestEnv) -> PathBuf {
    fs::set_permissions(&env.root, fs::Permissions::from_mode(0o755)).unwrap();
    let home = env.root.join("home");
    fs::create_dir(&home).unwrap();
    rustix::fs::chown(
        &home,
        Some(rustix::fs::Uid::from_raw(PLANTER)),
        Some(rustix::fs::Gid::from_raw(PLANTER)),
    )
    .unwrap();
    home
}

#[test]
fn a_to_folder_that_another_user_made_a_symlink_is_refused_and_nothing_written_through_it() {
    if !is_root() {
        eprintln!("SKIPPED a_to_folder_that_another_user_made_a_symlink…: needs root");
        return;
    }
    let (env, outside) = deleted_share();
    let home = planters_home(&env);
    plant_link(&outside, &home.join("restored"));
    // The link itself, a folder below it, and the same reached by `..`.
    for to in [
        home.join("restored"),
        home.join("restored/deeper"),
        home.join("restored/../restored"),
        home.join("elsewhere/../restored"),
    ] {
        let (success, output) =
            restore_changes_only(&env, &["--all-deleted", "--to", to.to_str().unwrap()], &[]);
        assert!(!success, "--to {} was used: {output}", to.display());
        assert!(
            output.contains("symbolic link") && !output.contains("os error"),
            "--to {} is refused in plain words: {output}",
            to.display()
        );
        let plan = env.run(&[
            "restore",
            "--all-deleted",
            "--dry-run",
            "--to",
            to.to_str().unwrap(),
        ]);
        assert!(
            !plan.status.success(),
            "a dry run says so too: {}",
            output_text(&plan)
        );
    }
    assert_eq!(fs::read_dir(&outside).unwrap().count(), 1);
}

#[test]
fn a_link_of_another_user_on_the_way_to_the_to_folder_is_not_followed_but_roots_are() {
    if !is_root() {
        eprintln!("SKIPPED a_link_of_another_user_on_the_way…: needs root");
        return;
    }
    let (env, outside) = deleted_share();
    let home = planters_home(&env);
    plant_link(&outside, &home.join("via"));
    let (success, output) = restore_changes_only(
        &env,
        &[
            "--all-deleted",
            "--to",
            home.join("via/restored").to_str().unwrap(),
        ],
        &[],
    );
    assert!(!success, "{output}");
    assert!(
        output.contains("belongs to the user with uid 4242"),
        "{output}"
    );

    // A link root made (as the system's own /var/run is) is followed, and the files
    // land in the folder it points to.
    let real = env.root.join("real");
    fs::create_dir(&real).unwrap();
    symlink(&real, env.root.join("system-link")).unwrap();
    let to = env.root.join("system-link/restored");
    let (success, output) = restore_changes_only(
        &env,
        &["--all-deleted", "--to", to.to_str().unwrap()],
        &["real/restored"],
    );
    assert!(success, "{output}");
    assert_eq!(fs::read(real.join("restored/docs/a.txt")).unwrap(), b"a");
    assert!(
        output.contains(&format!(
            "\"destination\": \"{}",
            real.join("restored").display()
        )),
        "the report names where the files really are: {output}"
    );
}

#[test]
fn a_protected_folder_replaced_by_a_symlink_is_not_written_through() {
    let (mut env, outside) = deleted_share();
    env.stop_daemon();
    fs::rename(&env.share, env.root.join("share.old")).unwrap();
    symlink(&outside, &env.share).unwrap();
    let (success, output) = restore_changes_only(&env, &["--all-deleted"], &["share"]);
    assert!(!success, "{output}");
    assert!(output.contains("symbolic link"), "{output}");
    assert_eq!(fs::read_dir(&outside).unwrap().count(), 1, "{output}");
}

#[test]
fn a_folder_above_the_protected_one_swapped_for_another_users_link_is_not_followed() {
    if !is_root() {
        eprintln!("SKIPPED a_folder_above_the_protected_one…: needs root");
        return;
    }
    let mut env = TestEnv::new();
    let home = planters_home(&env);
    let share = home.join("work/share");
    fs::create_dir_all(&share).unwrap();
    fs::write(share.join("pay.txt"), "salaries").unwrap();
    env.start_daemon_with(&["--protect", share.to_str().unwrap()]);
    env.sync();
    fs::remove_file(share.join("pay.txt")).unwrap();
    env.sync();
    env.stop_daemon();
    // The owner of home/ moves work/ away and points a link of theirs elsewhere.
    let decoy = home.join("decoy");
    as_planter("mkdir", &["-p".as_ref(), decoy.join("share").as_os_str()]);
    as_planter(
        "mv",
        &[
            home.join("work").as_os_str(),
            home.join("work.old").as_os_str(),
        ],
    );
    plant_link(&decoy, &home.join("work"));
    let (success, _, output) = restore_json(&env, &["--all-deleted"]);
    assert!(!success, "{output}");
    assert!(
        output.contains("belongs to the user with uid 4242"),
        "{output}"
    );
    assert_eq!(
        fs::read_dir(decoy.join("share")).unwrap().count(),
        0,
        "{output}"
    );
}

#[test]
fn a_symlink_planted_at_the_to_folder_between_the_plan_and_the_start_is_refused() {
    if !is_root() {
        eprintln!("SKIPPED a_symlink_planted_at_the_to_folder_between…: needs root");
        return;
    }
    let (env, outside) = deleted_share();
    let home = planters_home(&env);
    for (to, link) in [
        // The folder itself, and a folder on the way to it.
        (home.join("restored"), home.join("restored")),
        (home.join("new/restored"), home.join("new")),
    ] {
        let mut term = crate::common::pty::Terminal::start(&format!(
            "{BIN} --vault {} emergency --to {}",
            env.vault.display(),
            to.display()
        ));
        term.expect("Press Enter for 1:");
        term.send("\n");
        // The plan is shown; before the customer confirms, the link appears.
        term.expect("[Y/n]:");
        plant_link(&outside, &link);
        term.send("\n");
        let (status, screen) = term.finish();
        assert!(!status.success(), "{screen}");
        assert!(screen.contains("symbolic link"), "{screen}");
        assert_eq!(fs::read_dir(&outside).unwrap().count(), 1, "{screen}");
        fs::remove_file(&link).unwrap();
    }
}

#[test]
fn a_to_folder_inside_a_protected_folder_gets_the_files_and_nothing_else() {
    let (env, _outside) = deleted_share();
    let to = env.path("restored");
    let (success, output) = restore_changes_only(
        &env,
        &["--all-deleted", "--to", to.to_str().unwrap()],
        &["share/restored"],
    );
    assert!(success, "{output}");
    assert_eq!(fs::read(to.join("docs/sub/b.txt")).unwrap(), b"b");
    env.sync();
    let listed = env.list_by_path(&["--all"]);
    crate::common::assert_live_and_recoverable(entry(
        &listed,
        &env.json_path("restored/docs/sub/b.txt"),
    ));
}

/// A group and a member of it, made on this system for one test and removed after.
struct TestGroup {
    group: String,
    member: String,
}

impl TestGroup {
    fn new() -> Option<Self> {
        let tag = std::process::id() % 100_000;
        let (group, member) = (format!("udtest-g{tag}"), format!("udtest-u{tag}"));
        let made = Command::new("groupadd").arg(&group).output().ok()?;
        if !made.status.success() {
            eprintln!("SKIPPED: groupadd failed: {}", output_text(&made));
            return None;
        }
        let this = Self { group, member };
        let made = Command::new("useradd")
            .args(["-M", "-N", "-s", "/usr/sbin/nologin", "-G", &this.group])
            .arg(&this.member)
            .output()
            .ok()?;
        assert!(made.status.success(), "useradd: {}", output_text(&made));
        Some(this)
    }

    /// `undelete --vault VAULT ARGS…` as the member, with the groups the system gives it.
    fn as_member(&self, env: &TestEnv, args: &[&str]) -> std::process::Output {
        Command::new("setpriv")
            .args([
                "--reuid",
                &self.member,
                "--regid",
                "nogroup",
                "--init-groups",
                BIN,
            ])
            .arg("--vault")
            .arg(&env.vault)
            .args(args)
            .env("UNDELETE_CONFIG", "/dev/null")
            .env("HOME", "/nonexistent")
            .output()
            .expect("run setpriv")
    }
}

impl Drop for TestGroup {
    fn drop(&mut self) {
        let _ = Command::new("userdel").arg(&self.member).output();
        let _ = Command::new("groupdel").arg(&self.group).output();
    }
}

#[test]
fn report_last_is_readable_by_the_report_group_and_refused_to_anyone_else() {
    if !is_root() {
        eprintln!("SKIPPED report_last_is_readable_by_the_report_group…: needs root");
        return;
    }
    let Some(group) = TestGroup::new() else {
        return;
    };
    // Two incidents: c.txt at the top of the share, and docs/ (unrelated folders
    // are never one). `emergency --yes` brings back the newest, docs/: 2 files.
    let (env, _) = deleted_share();
    fs::set_permissions(&env.root, fs::Permissions::from_mode(0o755)).unwrap();
    let settings = env.root.join("settings.toml");
    fs::write(&settings, format!("report_group = \"{}\"\n", group.group)).unwrap();
    let out = env
        .command()
        .args(["emergency", "--yes"])
        .env("UNDELETE_CONFIG", &settings)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", output_text(&out));
    let code = env.run_ok(&["incidents", "--json"]);
    let code: serde_json::Value = serde_json::from_str(&code).unwrap();
    let code = code[0]["code"].as_str().unwrap().to_owned();

    for args in [
        vec!["report", "last"],
        vec!["report"],
        vec!["report", &code],
        vec!["report", &code.to_lowercase().replace('-', " ")],
    ] {
        let out = group.as_member(&env, &args);
        let text = output_text(&out);
        assert!(out.status.success(), "{args:?} as a member: {text}");
        assert!(text.contains("Recovered 2 of 2 files"), "{args:?}: {text}");
    }
    let out = group.as_member(&env, &["report", "last", "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["recovered"], 2, "{json}");
    assert_eq!(json["incident"], code.as_str(), "{json}");

    let out = as_nobody(&env, &["report", "last"]);
    let text = output_text(&out);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains(&format!(
            "only root and the members of the group {}",
            group.group
        )) && text.contains("sudo")
            && !text.contains("os error"),
        "{text}"
    );
    assert!(!text.contains("Recovered"), "{text}");
    // The vault itself stays closed to the group; its copies are elsewhere.
    assert_private(&env.vault, "with a report group");
    let shared = env.root.join("vault-reports");
    let meta = fs::metadata(&shared).unwrap();
    assert_eq!(meta.mode() & 0o777, 0o750);
    for entry in fs::read_dir(&shared).unwrap() {
        let meta = entry.unwrap().metadata().unwrap();
        assert_eq!(meta.mode() & 0o777, 0o640);
    }
}

#[test]
fn a_folder_swapped_for_a_symlink_during_a_walk_never_brings_in_a_root_only_file() {
    // A user who owns a protected folder makes a new folder and at once replaces it
    // with a link to a folder only root can read: the walk followed the link, copied
    // root's file, and recorded it as that user's, for the next restore to hand over.
    if !is_root() {
        eprintln!("SKIPPED a_folder_swapped_for_a_symlink…: needs root to act as another user");
        return;
    }
    let iterations = count_from_env("UNDELETE_TEST_ITERATIONS", 4);
    for round in 0..iterations {
        let mut env = TestEnv::new();
        let secret = env.root.join("secret");
        fs::create_dir(&secret).unwrap();
        fs::set_permissions(&secret, fs::Permissions::from_mode(0o700)).unwrap();
        let secret_data = format!("ROOT ONLY {round}: the payroll");
        for n in 0..20 {
            fs::write(secret.join(format!("payroll{n}.txt")), &secret_data).unwrap();
        }
        // The user's own protected folder (and the way to it).
        fs::set_permissions(&env.root, fs::Permissions::from_mode(0o755)).unwrap();
        fs::set_permissions(&env.share, fs::Permissions::from_mode(0o755)).unwrap();
        let home = env.path("u");
        fs::create_dir(&home).unwrap();
        rustix::fs::chown(
            &home,
            Some(rustix::fs::Uid::from_raw(65534)),
            Some(rustix::fs::Gid::from_raw(65534)),
        )
        .unwrap();
        let attack = format!(
            "cd {home}; for i in $(seq 1 150); do \
               mkdir new$i && echo mine > new$i/mine.txt && mv new$i gone$i && ln -s {secret} new$i; \
               mkdir -p keep/d$i && mv keep/d$i keep/x$i && ln -s {secret} keep/d$i; \
             done",
            home = home.display(),
            secret = secret.display()
        );
        // Started while the start-up scan walks, and going on after it.
        env.start_daemon(&[]);
        let out = Command::new("setpriv")
            .args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "sh",
                "-c",
                &attack,
            ])
            .output()
            .expect("run setpriv");
        assert!(out.status.success(), "{}", output_text(&out));
        env.sync();
        // A full scan walks every folder again: the links are there now.
        env.stop_daemon();
        env.start_daemon_and_sync(&[]);

        assert!(
            !env.object_path(secret_data.as_bytes()).exists(),
            "round {round}: root's file was copied into the vault"
        );
        let all = env.list_by_path(&["--all"]);
        let leaked: Vec<&String> = all.keys().filter(|p| p.contains("payroll")).collect();
        assert!(
            leaked.is_empty(),
            "round {round}: recorded under the user's folder: {leaked:#?}"
        );
        let mine = all.keys().filter(|p| p.ends_with("/mine.txt")).count();
        assert!(
            mine > 0,
            "round {round}: the user's own files are still protected"
        );
        env.stop_daemon();
    }
}
