//! The circuit breaker: a PC deleting or encrypting en masse over the file share
//! is cut off once its incident crosses the alert threshold, by the real `smbcontrol`
//! against the test's real `smbd`, while another PC keeps working; never twice
//! without an acknowledgement, never the server itself, and nobody while it is off.
//!
//! The PCs have addresses of their own (network namespaces, `common::lan`): a
//! client on the server's loopback is the server itself, which is never cut off.
//! These need the whole-filesystem source, which names the smbd that deleted: where
//! the daemon watches with inotify they say so and stop.

use std::fs;
use std::os::unix::fs::chown;
use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::lan::Pc;
use crate::common::samba::{Client, Samba, User};
use crate::common::smtp::{Mode, SmtpServer};
use crate::common::*;

/// How many files each folder the PC deletes holds, one `del` each: well past the
/// threshold, so a cut-off comes while it is still deleting.
const FILES: usize = 1500;
/// The alert threshold the daemon is given.
const ALERT_FILES: &str = "200";

/// A share served to two office PCs: FRONTDESK, where anna deletes, and
/// BACKOFFICE, where bob works.
struct Office {
    env: TestEnv,
    samba: Samba,
    frontdesk: Pc,
    backoffice: Pc,
    anna: User,
    bob: User,
}

impl Office {
    /// The share with anna's folders `folders` of `FILES` files each and bob's
    /// folder, served by smbd to both PCs. None (the test skips) where it cannot be.
    fn new(test: &str, folders: &[&str]) -> Option<Self> {
        if which("smbcontrol").is_none() {
            eprintln!("SKIPPED {test}: smbcontrol is not installed (package samba-common-bin)");
            return None;
        }
        let frontdesk = Pc::new(test)?;
        let backoffice = Pc::new(test)?;
        let env = TestEnv::new();
        let samba = Samba::start_for_pcs(
            test,
            &[("office", &env.share)],
            &[&frontdesk.server_address, &backoffice.server_address],
        )?;
        let anna = samba.add_user("anna");
        let bob = samba.add_user("bob");
        for folder in folders {
            for n in 0..FILES {
                env.write(format!("{folder}/f{n:04}.txt"), content(n, 200));
            }
        }
        env.write("bob/notes.txt", "bob's notes");
        for entry in walkdir::WalkDir::new(&env.share).min_depth(1) {
            let path = entry.unwrap().into_path();
            let user = match path.strip_prefix(&env.share).unwrap().starts_with("bob") {
                true => &bob,
                false => &anna,
            };
            chown(&path, Some(user.uid), Some(user.gid)).expect("give the files their owner");
        }
        Some(Self {
            env,
            samba,
            frontdesk,
            backoffice,
            anna,
            bob,
        })
    }

    /// The daemon, alerting at `ALERT_FILES`, with the breaker's command pointed at
    /// this smbd (`smbcontrol -s` its settings), on when `on`.
    fn start_daemon(&mut self, test: &str, on: bool, extra: &[&str]) -> bool {
        let command = format!(
            "smbcontrol -s {} smbd kill-client-ip \"$UNDELETE_CLIENT_ADDRESS\"",
            self.samba.conf().display()
        );
        let mut args = vec!["--alert-files", ALERT_FILES, "--breaker-command", &command];
        if on {
            args.push("--breaker");
        }
        args.extend_from_slice(extra);
        self.env.start_daemon_and_sync(&args);
        fanotify_in_use(&self.env, test)
    }

    fn anna_at_frontdesk(&self) -> Client<'_> {
        let pc = &self.frontdesk;
        self.samba
            .client(&self.anna, "office")
            .at_pc(&pc.netns, &pc.server_address)
    }

    fn bob_at_backoffice(&self) -> Client<'_> {
        let pc = &self.backoffice;
        self.samba
            .client(&self.bob, "office")
            .at_pc(&pc.netns, &pc.server_address)
    }

    /// anna deletes every file of `folder` from FRONTDESK, one `del` at a time, in
    /// one session. Returns smbclient's output and how many files she deleted.
    fn anna_deletes(&self, folder: &str) -> (Output, usize) {
        let commands: Vec<String> = (0..FILES)
            .map(|n| format!("del {folder}\\f{n:04}.txt"))
            .collect();
        let out = self.anna_at_frontdesk().run(&commands.join("; "));
        let left = fs::read_dir(self.env.path(folder)).unwrap().count();
        (out, FILES - left)
    }
}

fn which(tool: &str) -> Option<std::path::PathBuf> {
    ["/usr/bin", "/usr/sbin", "/bin", "/sbin"]
        .iter()
        .map(|dir| std::path::Path::new(dir).join(tool))
        .find(|p| p.is_file())
}

/// The incident of `folder` (relative to the share) in `incidents --json`.
fn incident_of(env: &TestEnv, folder: &str) -> Value {
    let folder = env.json_path(folder);
    let all = env.incidents_json();
    all.iter()
        .find(|i| i["folder"] == folder.as_str())
        .cloned()
        .unwrap_or_else(|| panic!("no incident of {folder}: {all:#?}"))
}

/// Waits (bounded) for the file the alert command writes; returns what it holds.
fn wait_for_file(path: &Path) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(text) = fs::read_to_string(path) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "{} was not written",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The open cut-off alerts in `alerts --json`.
fn cut_off_alerts(env: &TestEnv) -> Vec<Value> {
    let alerts: Vec<Value> =
        serde_json::from_str(&env.run_ok(&["alerts", "--json"])).expect("alerts --json");
    alerts
        .into_iter()
        .filter(|a| {
            a["kind"]
                .as_str()
                .is_some_and(|k| k.starts_with("cut_off:"))
                && a["state"] == "open"
        })
        .collect()
}

/// Deleted all, with no error: nobody cut the session.
fn assert_not_cut(out: &Output, deleted: usize, env: &TestEnv) {
    let text = output_text(out);
    assert!(
        deleted == FILES && !text.contains("NT_STATUS_CONNECTION"),
        "the session was cut after {deleted} of {FILES} files: {text}\n{}",
        env.daemon_log()
    );
}

/// Ended with an error before it had deleted everything.
fn assert_cut(out: &Output, deleted: usize, env: &TestEnv) {
    let text = output_text(out);
    assert!(
        deleted < FILES && text.contains("NT_STATUS_"),
        "the session was not cut: {deleted} of {FILES} files deleted: {text}\n{}",
        env.daemon_log()
    );
}

#[test]
fn a_pc_deleting_hundreds_of_files_over_the_share_is_cut_off_while_another_pc_keeps_working() {
    let test =
        "a_pc_deleting_hundreds_of_files_over_the_share_is_cut_off_while_another_pc_keeps_working";
    let Some(mut office) = Office::new(test, &["accounts"]) else {
        return;
    };
    // The owner is told by e-mail and by the alert command, where an SMTP server
    // can run here.
    let smtp = SmtpServer::start(test, Mode::Plain, None);
    let config = office.env.root.join("config.toml");
    let email = smtp.as_ref().map_or(String::new(), |smtp| {
        format!(
            "[alert.email]\nserver = \"127.0.0.1\"\nport = {}\nsecurity = \"none\"\n\
             from = \"undelete <undelete@office.example>\"\nto = \"owner@office.example\"\n",
            smtp.port
        )
    });
    fs::write(&config, email).unwrap();
    let told = office.env.root.join("told.env");
    let alert_command = format!(
        "[ \"$UNDELETE_EVENT\" = started ] && env | grep ^UNDELETE_ > {0}.part && mv {0}.part {0}",
        told.display()
    );
    let config_arg = config.to_str().unwrap().to_owned();
    let extra = ["--config", &config_arg, "--alert-command", &alert_command];
    if !office.start_daemon(test, true, &extra) {
        return;
    }
    // BACKOFFICE is connected all along, as an office PC is.
    let backoffice = office.bob_at_backoffice();
    let bob_session = backoffice.hold();
    bob_session.serving_pid();

    let (out, deleted) = office.anna_deletes("accounts");
    println!(
        "the breaker cut FRONTDESK off after it had deleted {deleted} of {FILES} files \
         (alert threshold {ALERT_FILES})"
    );
    assert_cut(&out, deleted, &office.env);
    let env = &office.env;
    env.sync();

    let incident = incident_of(env, "accounts");
    let cut_off = &incident["cut_off"];
    assert_eq!(cut_off["outcome"], "cut", "{incident:#}");
    assert_eq!(cut_off["address"], office.frontdesk.address.as_str());
    assert_eq!(cut_off["user"], "anna");
    let said = format!(
        "undelete cut off {} from the file share at",
        office.frontdesk.address
    );
    assert!(
        cut_off["said"].as_str().unwrap().starts_with(&said),
        "{cut_off:#}"
    );

    // BACKOFFICE's session lives on, and it still lists and writes.
    bob_session.serving_pid();
    let listed = backoffice.run_ok("ls bob\\*");
    assert!(listed.contains("notes.txt"), "{listed}");
    let local = env.root.join("letter.txt");
    fs::write(&local, "written after the cut-off").unwrap();
    backoffice.run_ok(&format!("put {} bob\\letter.txt", local.display()));
    assert_eq!(
        fs::read_to_string(env.path("bob/letter.txt")).unwrap(),
        "written after the cut-off"
    );
    drop(bob_session);

    // Said to the alert command, in the e-mail, in status, in the incident's line
    // and in the alerts.
    let told = wait_for_file(&told);
    assert!(told.contains("\nUNDELETE_CUT_OFF=cut\n"), "{told}");
    assert!(
        told.contains(&format!(
            "\nUNDELETE_CUT_OFF_ADDRESS={}\n",
            office.frontdesk.address
        )),
        "{told}"
    );
    assert!(
        told.contains("UNDELETE_MESSAGE=Mass deletion") && told.contains(&said),
        "{told}"
    );
    if let Some(smtp) = &smtp {
        let letter = smtp.wait_for(1, Duration::from_secs(60)).remove(0);
        assert!(letter.replace('\n', " ").contains(&said), "{letter}");
    }
    let status = env.run_ok(&["status"]);
    assert!(status.contains("undelete cut off"), "{status}");
    let incidents = env.run_ok(&["incidents"]);
    assert!(incidents.contains(&said), "{incidents}");
    let held = cut_off_alerts(env);
    assert_eq!(held.len(), 1, "{held:#?}");
    assert_eq!(held[0]["address"], office.frontdesk.address.as_str());
    let alerts = env.run_ok(&["alerts"]);
    assert!(
        alerts.contains(&format!(
            "To let undelete cut off {} again",
            office.frontdesk.address
        )),
        "{alerts}"
    );

    // Kept by the journal: a rebuilt index still knows, and still holds the address.
    office.env.stop_daemon();
    let env = &office.env;
    for name in ["index.db", "index.db-wal", "index.db-shm"] {
        let _ = fs::remove_file(env.vault.join(name));
    }
    env.run_ok(&["rebuild-index", "--json"]);
    let rebuilt = incident_of(env, "accounts");
    assert_eq!(rebuilt["cut_off"], incident["cut_off"], "{rebuilt:#}");
    assert_eq!(cut_off_alerts(env).len(), 1);

    // Saying the deletion was wanted makes the cut-off a false alarm: re-armed too.
    let code = incident["code"].as_str().unwrap();
    let said = env.run_ok(&["alerts", "ack", code]);
    assert!(said.contains("it will cut it off again"), "{said}");
    assert!(cut_off_alerts(env).is_empty());
}

#[test]
fn a_pc_cut_off_once_is_not_cut_off_again_until_that_is_acknowledged() {
    let test = "a_pc_cut_off_once_is_not_cut_off_again_until_that_is_acknowledged";
    let Some(mut office) = Office::new(test, &["accounts", "photos", "scans"]) else {
        return;
    };
    if !office.start_daemon(test, true, &[]) {
        return;
    }
    let (out, deleted) = office.anna_deletes("accounts");
    assert_cut(&out, deleted, &office.env);

    // The PC connects again (a cut-off ends sessions, it does not lock out): a
    // second mass deletion is an incident of its own, and alerted, but not cut.
    let (out, deleted) = office.anna_deletes("photos");
    let env = &office.env;
    assert_not_cut(&out, deleted, env);
    env.sync();
    let second = incident_of(env, "photos");
    assert_eq!(second["alerted"], true, "{second:#}");
    assert_eq!(second["cut_off"]["outcome"], "already_cut", "{second:#}");
    let status = env.run_ok(&["status"]);
    assert!(status.contains("did not cut off"), "{status}");

    // Acknowledged, the breaker is armed again for that PC.
    let held = cut_off_alerts(env);
    assert_eq!(held.len(), 1, "{held:#?}");
    let id = held[0]["id"].to_string();
    let said = env.run_ok(&["alerts", "ack", &id]);
    assert!(said.contains("it will cut it off again"), "{said}");
    assert!(cut_off_alerts(env).is_empty());
    let (out, deleted) = office.anna_deletes("scans");
    assert_cut(&out, deleted, &office.env);
    office.env.sync();
    let third = incident_of(&office.env, "scans");
    assert_eq!(third["cut_off"]["outcome"], "cut", "{third:#}");
}

#[test]
fn with_the_breaker_off_nobody_is_cut_off() {
    let test = "with_the_breaker_off_nobody_is_cut_off";
    let Some(mut office) = Office::new(test, &["accounts"]) else {
        return;
    };
    // Its command is set, but the breaker is not turned on: the default.
    if !office.start_daemon(test, false, &[]) {
        return;
    }
    let (out, deleted) = office.anna_deletes("accounts");
    let env = &office.env;
    assert_not_cut(&out, deleted, env);
    env.sync();
    let incident = incident_of(env, "accounts");
    assert_eq!(incident["alerted"], true, "{incident:#}");
    assert_eq!(incident["cut_off"], Value::Null, "{incident:#}");
    assert!(cut_off_alerts(env).is_empty());
}

#[test]
fn a_cut_off_that_fails_is_shown_by_status_and_doctor_and_the_daemon_goes_on() {
    let test = "a_cut_off_that_fails_is_shown_by_status_and_doctor_and_the_daemon_goes_on";
    let Some(mut office) = Office::new(test, &["accounts"]) else {
        return;
    };
    let broken = "echo smbd cannot be reached >&2; exit 7";
    office.env.start_daemon_and_sync(&[
        "--alert-files",
        ALERT_FILES,
        "--breaker",
        "--breaker-command",
        broken,
    ]);
    if !fanotify_in_use(&office.env, test) {
        return;
    }
    let (out, deleted) = office.anna_deletes("accounts");
    let env = &office.env;
    assert_not_cut(&out, deleted, env);
    env.sync();
    let incident = incident_of(env, "accounts");
    assert_eq!(incident["cut_off"]["outcome"], "failed", "{incident:#}");
    let why = incident["cut_off"]["why"].as_str().unwrap_or_default();
    assert!(why.contains("smbd cannot be reached"), "{incident:#}");
    let status = env.run(&["status"]);
    let text = output_text(&status);
    assert!(status.status.success(), "the daemon runs on: {text}");
    assert!(
        text.contains("tried to cut off") && text.contains("smbd cannot be reached"),
        "{text}"
    );
    let doctor = env.run(&["doctor"]);
    let text = output_text(&doctor);
    assert!(!doctor.status.success(), "{text}");
    assert!(text.contains("[breaker] settings"), "{text}");
    assert!(cut_off_alerts(env).is_empty(), "nobody was cut off");
}

#[test]
fn a_client_on_the_server_itself_is_never_cut_off() {
    let test = "a_client_on_the_server_itself_is_never_cut_off";
    let mut env = TestEnv::new();
    let Some(samba) = Samba::start(test, &[("office", &env.share)]) else {
        return;
    };
    let anna = samba.add_user("anna");
    for n in 0..FILES {
        env.write(format!("accounts/f{n:04}.txt"), content(n, 200));
    }
    for entry in walkdir::WalkDir::new(&env.share).min_depth(1) {
        chown(entry.unwrap().path(), Some(anna.uid), Some(anna.gid)).unwrap();
    }
    // A command that would cut anyone: only the breaker's own rule spares loopback.
    let command = format!(
        "smbcontrol -s {} smbd kill-client-ip \"$UNDELETE_CLIENT_ADDRESS\"",
        samba.conf().display()
    );
    env.start_daemon_and_sync(&[
        "--alert-files",
        ALERT_FILES,
        "--breaker",
        "--breaker-command",
        &command,
    ]);
    if !fanotify_in_use(&env, test) {
        return;
    }
    let commands: Vec<String> = (0..FILES)
        .map(|n| format!("del accounts\\f{n:04}.txt"))
        .collect();
    let out = samba.client(&anna, "office").run(&commands.join("; "));
    let deleted = FILES - fs::read_dir(env.path("accounts")).unwrap().count();
    assert_not_cut(&out, deleted, &env);
    env.sync();
    let incident = incident_of(&env, "accounts");
    assert_eq!(incident["deleted_by"]["address"], "127.0.0.1");
    assert_eq!(incident["cut_off"]["outcome"], "spared", "{incident:#}");
    assert_eq!(incident["cut_off"]["why"], "own_address", "{incident:#}");
    let text = env.run_ok(&["incidents"]);
    assert!(text.contains("it is the server's own address"), "{text}");
    assert!(cut_off_alerts(&env).is_empty());
}

/// Ransomware's way over the share: anna's office files rewritten in place with
/// random bytes, from FRONTDESK, in one session. The overwrite incident names her
/// PC, and the breaker cuts it off while it is still at it.
#[test]
fn a_pc_encrypting_files_over_the_share_is_cut_off() {
    use crate::common::ransomware::{Variant, cipher, office_file, smb_commands};
    let test = "a_pc_encrypting_files_over_the_share_is_cut_off";
    let Some(mut office) = Office::new(test, &[]) else {
        return;
    };
    let staged = office.env.root.join("staged");
    fs::create_dir(&staged).unwrap();
    let mut files = Vec::new();
    for k in 0..FILES {
        let (name, bytes) = office_file(k);
        let path = office.env.write(&name, &bytes);
        fs::write(staged.join(k.to_string()), cipher(k, bytes.len())).unwrap();
        files.push((k, path.strip_prefix(&office.env.share).unwrap().to_owned()));
    }
    for entry in walkdir::WalkDir::new(&office.env.share).min_depth(1) {
        let path = entry.unwrap().into_path();
        if !path
            .strip_prefix(&office.env.share)
            .unwrap()
            .starts_with("bob")
        {
            chown(&path, Some(office.anna.uid), Some(office.anna.gid)).unwrap();
        }
    }
    let extra = ["--overwrite-alert-files", ALERT_FILES];
    if !office.start_daemon(test, true, &extra) {
        return;
    }
    let out = office
        .anna_at_frontdesk()
        .run(&smb_commands(Variant::InPlace, &files, &staged));
    let env = &office.env;
    let encrypted = files
        .iter()
        .filter(|(k, path)| {
            let now = fs::read(env.share.join(path)).unwrap();
            now == cipher(*k, now.len())
        })
        .count();
    println!(
        "the breaker cut FRONTDESK off after it had encrypted {encrypted} of {FILES} files \
         (overwrite alert threshold {ALERT_FILES})"
    );
    assert_cut(&out, encrypted, env);
    env.sync();
    let incidents = env.incidents_json();
    let incident = incidents
        .iter()
        .find(|i| i["kind"] != "deleted")
        .unwrap_or_else(|| panic!("no overwrite incident: {incidents:#?}"));
    let cut_off = &incident["cut_off"];
    assert_eq!(cut_off["outcome"], "cut", "{incident:#}");
    assert_eq!(cut_off["address"], office.frontdesk.address.as_str());
    assert_eq!(cut_off["user"], "anna", "{incident:#}");
    let status = env.run_ok(&["status"]);
    assert!(
        status.contains(&format!("undelete cut off {}", office.frontdesk.address)),
        "{status}"
    );
}
