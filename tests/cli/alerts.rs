//! Alerts that end: a restore that brings everything back resolves the alert,
//! `alerts ack` says one needs no restore, the owner is told twice (when the
//! threshold is crossed, and with the final counts when the deleting stops), by
//! the alert command and by e-mail to a real SMTP server on loopback.

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::smtp::{Mode, SmtpServer};
use crate::common::*;

/// A share with `n` photos in `photos/`, protected by a daemon started with `args`,
/// then `photos/` deleted: one incident, alerted when `n` reaches `--alert-files`.
fn photos_deleted(n: usize, args: &[&str]) -> TestEnv {
    let mut env = TestEnv::new();
    for i in 0..n {
        env.write(format!("photos/IMG_{i:04}.jpg"), content(i, 2000));
    }
    env.start_daemon_and_sync(args);
    env.remove_and_sync(&["photos"]);
    env
}

fn alerts(env: &TestEnv) -> Vec<Value> {
    let text = env.run_ok(&["alerts", "--json"]);
    match serde_json::from_str(&text) {
        Ok(Value::Array(rows)) => rows,
        other => panic!("alerts --json is not an array: {other:?}"),
    }
}

fn only_code(env: &TestEnv) -> String {
    let all = env.incidents_json();
    assert_eq!(all.len(), 1, "{all:#?}");
    all[0]["code"].as_str().unwrap().to_owned()
}

/// `doctor --json`: whether it passed, and its answer.
fn doctor(env: &TestEnv) -> (bool, Value) {
    let out = env.run(&["doctor", "--json"]);
    let answer: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("doctor --json is not JSON ({e}):\n{}", output_text(&out)));
    (out.status.success(), answer)
}

fn check<'a>(answer: &'a Value, name: &str) -> &'a Value {
    answer["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == name)
        .unwrap_or_else(|| panic!("no {name} check in {answer:#}"))
}

/// Doctor passes, unless this machine's own disk is nearly full (a check the test
/// cannot make pass); every other check passes either way.
fn assert_doctor_passes(env: &TestEnv) {
    let (ok, answer) = doctor(env);
    for c in answer["checks"].as_array().unwrap() {
        if c["check"] == "vault_space" && c["ok"] == false {
            eprintln!("NOTE: this machine's temporary disk is nearly full: {c:#}");
            continue;
        }
        assert_eq!(c["ok"], true, "{c:#}");
    }
    if check(&answer, "vault_space")["ok"] == true {
        assert!(ok, "{answer:#}");
    }
}

/// Waits (bounded) for a file an alert command writes; returns what it holds.
fn wait_for_file(path: &Path) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(text) = fs::read_to_string(path)
            && text.ends_with('\n')
        {
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

fn variable<'a>(env_vars: &'a str, name: &str) -> &'a str {
    env_vars
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name}=")))
        .unwrap_or_else(|| panic!("no {name} in:\n{env_vars}"))
}

#[test]
fn an_emergency_restore_of_an_incident_ends_its_warning_and_doctor_passes() {
    let env = photos_deleted(6, &["--alert-files", "5"]);
    let code = only_code(&env);
    let status = env.run_ok(&["status"]);
    assert!(status.starts_with("WARNING"), "{status}");
    assert!(!doctor(&env).0, "a fresh mass deletion is a problem");

    let out = env.run(&["emergency", "--yes", "--incident", &code]);
    assert!(out.status.success(), "{}", output_text(&out));

    let status = env.run_ok(&["status"]);
    assert!(!status.contains("WARNING"), "{status}");
    assert_eq!(
        status.matches("Resolved today ").count(),
        1,
        "the alert is shown once, as history:\n{status}"
    );
    let words = status.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        words.contains(&format!(
            "6 of 6 files brought back (incident {code}). Report: "
        )),
        "{status}"
    );
    assert!(
        words.contains("Deleted files that can be brought back: 0"),
        "{status}"
    );
    let json = env.status_json();
    assert_eq!(json["alerts"], Value::Array(vec![]), "{json:#}");
    assert_eq!(json["deleted_restored"], 6, "{json:#}");
    assert_doctor_passes(&env);

    let listed = alerts(&env);
    assert_eq!(listed[0]["state"], "resolved", "{listed:#?}");
    assert_eq!(listed[0]["incident"]["missing"], 0, "{listed:#?}");
    let report = listed[0]["report"].as_str().unwrap();
    assert!(Path::new(report).is_file(), "the report is named: {report}");

    // The recycle bin: nothing is missing; --all shows what came back, and when.
    assert!(env.list_json(&[]).is_empty(), "{:#?}", env.list_json(&[]));
    let all = env.list_json(&["--all"]);
    let path = env.json_path("photos/IMG_0000.jpg");
    let rows: Vec<&Value> = all.iter().filter(|r| r["path"] == path.as_str()).collect();
    assert_eq!(
        rows.len(),
        2,
        "the file there now, and its deletion: {rows:#?}"
    );
    assert!(
        rows.iter().any(|r| r["restored_at"].is_string()),
        "{rows:#?}"
    );
    assert!(rows.iter().any(|r| r["deleted_at"].is_null()), "{rows:#?}");
    let text = env.run_ok(&["list", "--all"]);
    assert!(text.contains("(restored "), "{text}");
}

#[test]
fn a_partial_restore_keeps_the_warning_and_counts_what_is_still_missing() {
    let env = photos_deleted(6, &["--alert-files", "5"]);
    let one = env.path("photos/IMG_0001.jpg");
    let (ok, _, text) = restore_json(&env, &[one.to_str().unwrap()]);
    assert!(ok, "{text}");
    let status = env.run_ok(&["status"]);
    let words = status.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(status.starts_with("WARNING"), "{status}");
    assert!(
        words.contains("1 already brought back. To bring the rest back:"),
        "{status}"
    );
    assert!(
        words.contains("Deleted files that can be brought back: 5"),
        "{status}"
    );
    assert_eq!(env.list_json(&[]).len(), 5);
}

#[test]
fn alerts_ack_ends_a_warning_that_needs_no_restore() {
    let env = photos_deleted(6, &["--alert-files", "5"]);
    let code = only_code(&env);
    let listed = alerts(&env);
    assert_eq!(listed.len(), 1, "{listed:#?}");
    assert_eq!(listed[0]["state"], "open");
    let text = env.run_ok(&["alerts"]);
    assert!(
        text.contains("If the deletion was wanted: undelete alerts ack"),
        "{text}"
    );

    let out = env.run(&["alerts", "ack", "NOT-ACODE"]);
    assert!(!out.status.success(), "{}", output_text(&out));
    let said = env.run_ok(&[
        "alerts",
        "ack",
        &code.to_lowercase(),
        "--note",
        "old photos, deleted on purpose",
    ]);
    assert!(said.contains("Acknowledged"), "{said}");

    let status = env.run_ok(&["status"]);
    assert!(!status.contains("WARNING"), "{status}");
    let words = status.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(status.contains("\nAcknowledged today "), "{status}");
    assert!(
        words.contains("(note: old photos, deleted on purpose)"),
        "{status}"
    );
    assert_doctor_passes(&env);
    let listed = alerts(&env);
    assert_eq!(listed[0]["state"], "acknowledged", "{listed:#?}");
    assert_eq!(listed[0]["note"], "old photos, deleted on purpose");
    // Acknowledged is not restored: the files can still come back.
    assert_eq!(env.list_json(&[]).len(), 6);
    // Nothing is left to acknowledge.
    let again = env.run_ok(&["alerts", "ack", "--all"]);
    assert!(again.contains("nothing to acknowledge"), "{again}");
}

#[test]
fn restored_marks_and_alert_states_survive_a_rebuilt_index() {
    let mut env = TestEnv::new();
    for i in 0..6 {
        env.write(format!("photos/p{i}.jpg"), content(i, 1000));
        env.write(format!("scans/s{i}.pdf"), content(100 + i, 1000));
    }
    env.start_daemon_and_sync(&["--alert-files", "5"]);
    fs::remove_dir_all(env.path("photos")).unwrap();
    env.remove_and_sync(&["scans"]);
    let all = env.incidents_json();
    assert_eq!(all.len(), 2, "{all:#?}");
    let code_of = |folder: &str| {
        all.iter()
            .find(|i| i["folder"].as_str().unwrap().ends_with(folder))
            .unwrap()["code"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let out = env.run(&["restore", "--incident", &code_of("photos")]);
    assert!(out.status.success(), "{}", output_text(&out));
    env.run_ok(&["alerts", "ack", &code_of("scans"), "--note", "wanted"]);
    env.sync();
    let before = (
        env.run_ok(&["alerts", "--json"]),
        env.run_ok(&["list", "--all", "--json"]),
        env.run_ok(&["incidents", "--json"]),
    );
    env.stop_daemon();
    for name in ["index.db", "index.db-wal", "index.db-shm"] {
        let _ = fs::remove_file(env.vault.join(name));
    }
    env.run_ok(&["rebuild-index"]);
    let after = (
        env.run_ok(&["alerts", "--json"]),
        env.run_ok(&["list", "--all", "--json"]),
        env.run_ok(&["incidents", "--json"]),
    );
    assert_eq!(after.0, before.0, "alerts");
    assert_eq!(after.1, before.1, "restored marks");
    assert_eq!(after.2, before.2, "incidents");
    assert!(after.0.contains("\"resolved\"") && after.0.contains("\"acknowledged\""));
}

#[test]
fn a_restore_with_no_daemon_running_records_what_it_brought_back() {
    let mut env = photos_deleted(6, &["--alert-files", "5"]);
    let code = only_code(&env);
    env.stop_daemon();
    let (ok, report, text) = restore_json(&env, &["--incident", &code]);
    assert!(ok, "{text}");
    assert_eq!(report["recovered"], 6);
    // Exits 3 (protection is off), and says the rest as ever.
    let status = String::from_utf8(env.run(&["status"]).stdout).unwrap();
    assert!(!status.contains("WARNING"), "{status}");
    assert!(status.contains("Resolved today"), "{status}");
    // The next daemon finds the incident over and tells no one twice.
    env.start_daemon_and_sync(&["--alert-files", "5"]);
    assert_eq!(alerts(&env)[0]["state"], "resolved");
}

#[test]
fn the_alert_command_is_told_twice_the_second_time_with_the_final_counts() {
    let mut env = TestEnv::new();
    for i in 0..30 {
        env.write(format!("shared/f{i:02}.txt"), format!("file {i}"));
    }
    let config = env.root.join("config.toml");
    let command = format!(
        "env | grep ^UNDELETE_ | sort > {0}/alert-$UNDELETE_EVENT.tmp && mv {0}/alert-$UNDELETE_EVENT.tmp {0}/alert-$UNDELETE_EVENT.txt",
        env.root.display()
    );
    // A long gap first, so both rounds below are one incident however slow the
    // machine; then a short one (by reload), so it ends.
    let (vault, share) = (env.vault.clone(), env.share.clone());
    let settings = |gap: &str| {
        format!(
            "vault = {vault:?}\nprotect = [{share:?}]\nalert_files = 20\nincident_gap = {gap:?}\nalert_command = {command:?}\n"
        )
    };
    fs::write(&config, settings("1h")).unwrap();
    env.start_daemon_with(&["--config", config.to_str().unwrap()]);
    env.sync();
    for i in 0..25 {
        fs::remove_file(env.path(format!("shared/f{i:02}.txt"))).unwrap();
    }
    env.sync();
    let started = wait_for_file(&env.root.join("alert-started.txt"));
    assert_eq!(variable(&started, "UNDELETE_EVENT"), "started");
    let early: u64 = variable(&started, "UNDELETE_FILES").parse().unwrap();
    assert!((20..=25).contains(&early), "{started}");
    for i in 25..30 {
        fs::remove_file(env.path(format!("shared/f{i:02}.txt"))).unwrap();
    }
    env.sync();
    assert!(
        !env.root.join("alert-ended.txt").exists(),
        "not over while the gap is an hour"
    );

    fs::write(&config, settings("1s")).unwrap();
    env.reload_daemon();
    let ended = wait_for_file(&env.root.join("alert-ended.txt"));
    assert_eq!(variable(&ended, "UNDELETE_EVENT"), "ended");
    assert_eq!(variable(&ended, "UNDELETE_FILES"), "30", "{ended}");
    assert_eq!(variable(&ended, "UNDELETE_RECOVERABLE"), "30", "{ended}");
    assert_eq!(
        variable(&ended, "UNDELETE_INCIDENT"),
        variable(&started, "UNDELETE_INCIDENT")
    );
    assert!(
        variable(&ended, "UNDELETE_MESSAGE").starts_with("Ended. Mass deletion: 30 files"),
        "{ended}"
    );
    let all = env.incidents_json();
    assert!(all[0]["ended_at"].is_string(), "{all:#?}");
}

/// The settings of a daemon that e-mails `server`.
fn email_settings(env: &TestEnv, port: u16, extra: &str) -> String {
    format!(
        "vault = {:?}\nprotect = [{:?}]\nalert_files = 3\nincident_gap = \"5s\"\n\n\
         [alert.email]\nserver = \"127.0.0.1\"\nport = {port}\nfrom = \"undelete <undelete@office.example>\"\n\
         to = [\"owner@office.example\"]\n{extra}",
        env.vault, env.share
    )
}

#[test]
fn the_mass_deletion_email_reaches_a_real_mail_server_twice_with_the_counts() {
    let test = "the_mass_deletion_email_reaches_a_real_mail_server_twice_with_the_counts";
    let Some(server) = SmtpServer::start(test, Mode::Plain, None) else {
        return;
    };
    let mut env = TestEnv::new();
    for i in 0..5 {
        env.write(format!("photos/IMG_{i:04}.jpg"), content(i, 3000));
    }
    let config = env.root.join("config.toml");
    fs::write(
        &config,
        email_settings(&env, server.port, "security = \"none\"\n"),
    )
    .unwrap();
    env.start_daemon_with(&["--config", config.to_str().unwrap()]);
    env.sync();
    env.remove_and_sync(&["photos"]);
    let code = only_code(&env);

    let mail = server.wait_for(2, Duration::from_secs(60));
    for raw in server.raw() {
        eprintln!("----- e-mail as received -----\n{raw}");
    }
    let (started, ended) = (&mail[0], &mail[1]);
    let command = format!(
        "sudo undelete --vault {} restore --incident {code}",
        env.vault.display()
    );
    for (mail, subject) in [
        (started, "Subject: Files are being deleted on "),
        (ended, "Subject: Deleting has stopped on "),
    ] {
        assert!(mail.starts_with(subject), "{mail}");
        assert!(mail.contains("To: owner@office.example"), "{mail}");
        assert!(mail.contains(&format!("Code:   {code}")), "{mail}");
        assert!(
            mail.contains(&format!("Where:  {}", env.path("photos").display())),
            "{mail}"
        );
        assert!(
            mail.lines().any(|l| l.trim() == command),
            "the command on a line of its own: {mail}"
        );
    }
    assert!(started.contains("deleted so far"), "{started}");
    assert!(
        ended.contains("What:   5 files (15.0 kB) deleted\n"),
        "the final counts: {ended}"
    );
    let words = ended.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        words.contains("so all of them can be brought back"),
        "{ended}"
    );

    // The test message goes the same way.
    let out = env
        .command()
        .args(["--config", config.to_str().unwrap(), "alerts", "test"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", output_text(&out));
    let mail = server.wait_for(3, Duration::from_secs(60));
    assert!(
        mail[2].starts_with("Subject: Test message from undelete on "),
        "{}",
        mail[2]
    );
    let (_, answer) = doctor_with(&env, &config);
    let email = check(&answer, "alert_email");
    assert_eq!(email["ok"], true, "{email:#}");
}

fn doctor_with(env: &TestEnv, config: &Path) -> (bool, Value) {
    let out = env
        .command()
        .args(["--config", config.to_str().unwrap(), "doctor", "--json"])
        .output()
        .unwrap();
    let answer: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("doctor --json is not JSON ({e}):\n{}", output_text(&out)));
    (out.status.success(), answer)
}

#[test]
fn the_email_goes_over_starttls_with_a_login_from_a_password_file_only_root_reads() {
    use std::os::unix::fs::PermissionsExt;
    let test = "the_email_goes_over_starttls_with_a_login_from_a_password_file_only_root_reads";
    let Some(server) = SmtpServer::start(test, Mode::StartTls, Some(("office", "pa55 word")))
    else {
        return;
    };
    let env = TestEnv::new();
    let password = env.root.join("smtp-password");
    fs::write(&password, "pa55 word\n").unwrap();
    fs::set_permissions(&password, fs::Permissions::from_mode(0o644)).unwrap();
    let config = env.root.join("config.toml");
    let login =
        format!("security = \"starttls\"\nuser = \"office\"\npassword_file = {password:?}\n");
    fs::write(
        &config,
        email_settings(&env, server.port, &login).replace("127.0.0.1", "localhost"),
    )
    .unwrap();
    let test_mail = || {
        env.command()
            .env("SSL_CERT_FILE", server.cert.as_ref().unwrap())
            .args(["--config", config.to_str().unwrap(), "alerts", "test"])
            .output()
            .unwrap()
    };
    let out = test_mail();
    assert!(!out.status.success(), "{}", output_text(&out));
    assert!(
        output_text(&out).contains("sudo chmod 600"),
        "a password others can read is refused: {}",
        output_text(&out)
    );

    fs::set_permissions(&password, fs::Permissions::from_mode(0o600)).unwrap();
    let out = test_mail();
    assert!(out.status.success(), "{}", output_text(&out));
    let mail = server.wait_for(1, Duration::from_secs(60));
    assert!(mail[0].contains("Login: office"), "{}", mail[0]);

    // A server whose certificate is not trusted gets nothing, password included.
    let out = env
        .command()
        .env("SSL_CERT_FILE", "/dev/null")
        .args(["--config", config.to_str().unwrap(), "alerts", "test"])
        .output()
        .unwrap();
    assert!(!out.status.success(), "{}", output_text(&out));
    assert!(
        output_text(&out).contains("NOT sent"),
        "{}",
        output_text(&out)
    );
}

#[test]
fn a_dead_mail_server_never_stalls_capture_and_doctor_says_why_mail_fails() {
    // Takes connections and never says a word: every send waits for its timeout.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let mut env = TestEnv::new();
    for i in 0..5 {
        env.write(format!("photos/p{i}.jpg"), content(i, 1000));
    }
    let config = env.root.join("config.toml");
    fs::write(
        &config,
        email_settings(&env, port, "security = \"none\"\ntimeout = \"600s\"\n"),
    )
    .unwrap();
    env.start_daemon_with(&["--config", config.to_str().unwrap()]);
    env.sync();
    env.remove_and_sync(&["photos"]);
    // The alert was raised and its e-mail hangs; capture goes on regardless.
    assert!(env.run_ok(&["status"]).starts_with("WARNING"));
    env.write("after/new.txt", "written while the mail server hangs");
    env.sync();
    let listed = env.list_by_path(&["--all"]);
    assert_live_and_recoverable(entry(&listed, &env.json_path("after/new.txt")));
    env.stop_daemon();

    // A server that refuses: the failure is kept and shown by doctor.
    drop(silent);
    fs::write(
        &config,
        email_settings(&env, port, "security = \"none\"\ntimeout = \"5s\"\n"),
    )
    .unwrap();
    env.start_daemon_with(&["--config", config.to_str().unwrap()]);
    for i in 0..5 {
        env.write(format!("more/m{i}.jpg"), content(10 + i, 1000));
    }
    env.sync();
    env.remove_and_sync(&["more"]);
    let deadline = Instant::now() + Duration::from_secs(60);
    let problem = loop {
        let (ok, answer) = doctor_with(&env, &config);
        let email = check(&answer, "alert_email").clone();
        if email["ok"] == false {
            assert!(!ok);
            break email;
        }
        assert!(
            Instant::now() < deadline,
            "no e-mail failure shown: {email:#}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let message = problem["message"].as_str().unwrap();
    assert!(
        message.contains("owner@office.example") && message.contains("could not be sent"),
        "{problem:#}"
    );
    let commands: Vec<&str> = problem["commands"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert!(
        commands.iter().any(|c| c.ends_with("alerts test")),
        "{problem:#}"
    );
    // Still protecting.
    env.write("still.txt", "still protected");
    env.sync();
    assert!(env.daemon_log().contains("was not sent"), "logged too");
}

#[test]
fn kill_9_of_a_restore_or_the_daemon_never_leaves_a_file_marked_back_that_is_not() {
    use std::collections::HashMap;
    use std::process::Stdio;
    let iterations = count_from_env("UNDELETE_TEST_ITERATIONS", 4);
    let (mut rng, seed) = Rng::from_env_or_clock("kill_9_never_marks_a_file_back");
    const FILES: usize = 400;
    let mut env = TestEnv::new();
    let mut files: HashMap<String, Vec<u8>> = HashMap::new();
    for n in 0..FILES {
        let rel = format!("docs/d{:02}/f{n:04}.bin", n % 8);
        let data = content(n, rng.range(1, 20_000));
        env.write(&rel, &data);
        files.insert(env.json_path(&rel), data);
    }
    env.start_daemon_and_sync(&[]);
    let under = env.json_path("docs");
    for i in 0..iterations {
        if env.path("docs").exists() {
            fs::remove_dir_all(env.path("docs")).unwrap();
        }
        env.sync();
        let target = rng.range(0, FILES + 1);
        let kill_daemon = rng.range(0, 3) == 0;
        let mut child = env
            .command()
            .args(["restore", "--under", &under])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let started = Instant::now();
        loop {
            let done = walkdir::WalkDir::new(env.path("docs")).into_iter().count();
            if done >= target || child.try_wait().unwrap().is_some() {
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(60), "restore hangs");
            std::thread::yield_now();
        }
        if kill_daemon {
            env.kill_daemon();
        }
        let _ = child.kill();
        child.wait().unwrap();
        let context = format!(
            "seed {seed}, iteration {i}, killed after {target} files{}",
            if kill_daemon { ", the daemon too" } else { "" }
        );
        if kill_daemon {
            env.start_daemon(&[]);
        }
        env.sync();
        // The newest deletion of each path: marked back only if it is there, whole.
        let mut newest: HashMap<String, Value> = HashMap::new();
        for row in env.list_json(&["--all"]) {
            if row["deleted_at"].is_null() {
                continue;
            }
            let path = row["path"].as_str().unwrap().to_owned();
            let newer = newest
                .get(&path)
                .is_none_or(|had| time(&row, "deleted_at") >= time(had, "deleted_at"));
            if newer {
                newest.insert(path, row);
            }
        }
        for (path, row) in &newest {
            if row["restored_at"].is_string() {
                let on_disk = fs::read(path).unwrap_or_default();
                assert!(
                    on_disk == files[path],
                    "{path} is marked back but is not ({context})"
                );
            }
        }
    }
    let (ok, report, text) = restore_json(&env, &["--under", &under]);
    assert!(ok, "{text}");
    assert_eq!(
        report["recovered"].as_u64().unwrap() + report["already_present"].as_u64().unwrap(),
        FILES as u64,
        "{text}"
    );
    for (path, data) in &files {
        assert!(&fs::read(path).unwrap() == data, "{path} (seed {seed})");
    }
}
