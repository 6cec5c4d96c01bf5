//! Ransomware on the share: files rewritten in place with random bytes, or copied
//! to `NAME.locked` with the originals deleted. The daemon must alert within the
//! first files, the guided restore must bring every original back byte for byte,
//! retention must never push the last good copy out, and ordinary office work must
//! raise no such alarm.

use std::fs;
use std::path::PathBuf;

use serde_json::Value;

use crate::common::pty::Terminal;
use crate::common::ransomware::{Variant, encrypt, locked, office_file, random};
use crate::common::*;

/// A share of `n` office files, protected by a daemon started with `args`.
fn office(n: usize, args: &[&str]) -> (TestEnv, Vec<(PathBuf, Vec<u8>)>) {
    let mut env = TestEnv::new();
    let mut files = Vec::new();
    for i in 0..n {
        let (name, bytes) = office_file(i);
        files.push((env.write(&name, &bytes), bytes));
    }
    env.start_daemon_and_sync(args);
    (env, files)
}

/// An overwrite incident to work on (see `encrypted`).
struct Encrypted {
    env: TestEnv,
    /// The office files, with their content from before.
    files: Vec<(PathBuf, Vec<u8>)>,
    paths: Vec<PathBuf>,
    /// The code of the one overwrite incident they made.
    code: String,
}

/// A share of `n` office files, protected with an overwrite alert at 20 files,
/// encrypted the `variant` way until an alert is open (looked at every `step` files).
fn encrypted(n: usize, variant: Variant, step: usize) -> Encrypted {
    let (env, files) = office(n, &["--overwrite-alert-files", "20"]);
    let paths: Vec<PathBuf> = files.iter().map(|(p, _)| p.clone()).collect();
    encrypt_until_alerted(&env, variant, &paths, step);
    let code = overwrite_code(&env);
    Encrypted {
        env,
        files,
        paths,
        code,
    }
}

fn alerts(env: &TestEnv) -> Vec<Value> {
    match serde_json::from_str(&env.run_ok(&["alerts", "--json"])) {
        Ok(Value::Array(rows)) => rows,
        other => panic!("alerts --json is not an array: {other:?}"),
    }
}

fn open_alerts(env: &TestEnv) -> Vec<Value> {
    alerts(env)
        .into_iter()
        .filter(|a| a["state"] == "open")
        .collect()
}

fn overwrite_incidents(env: &TestEnv) -> Vec<Value> {
    env.incidents_json()
        .into_iter()
        .filter(|i| i["kind"] != "deleted")
        .collect()
}

/// Encrypts `files` the `variant` way, looking after every `step` files; returns
/// after how many files an alert was first open.
fn encrypt_until_alerted(env: &TestEnv, variant: Variant, files: &[PathBuf], step: usize) -> usize {
    let mut alerted_at = None;
    encrypt(variant, files, |k| {
        if alerted_at.is_none() && k % step == 0 {
            env.sync();
            if !open_alerts(env).is_empty() {
                alerted_at = Some(k);
            }
        }
    });
    env.sync();
    alerted_at.unwrap_or_else(|| panic!("no alert after {} files", files.len()))
}

/// `restore --incident CODE --to DIR` brings back every one of `files` as it was.
fn restore_elsewhere_byte_for_byte(env: &TestEnv, code: &str, files: &[(PathBuf, Vec<u8>)]) {
    let to = env.root.join("back");
    let (ok, report, text) = restore_json(env, &["--incident", code, "--to", to.to_str().unwrap()]);
    assert!(ok, "{text}");
    assert_eq!(report["recovered"], files.len(), "{report:#}");
    for (path, original) in files {
        let relative = path.strip_prefix(&env.share).unwrap();
        let back = fs::read(to.join(relative)).unwrap();
        assert_eq!(&back, original, "{relative:?}");
    }
}

/// `undelete emergency` on a terminal, Enter at every question.
fn emergency_with_enter(env: &TestEnv) -> String {
    let mut term = Terminal::start(&format!(
        "stty rows 24 cols 80; exec {BIN} --vault {} emergency",
        env.vault.display()
    ));
    for question in [
        "Press Enter for 1:",
        "Your choice [1]:",
        "Your choice for the encrypted copies [1]:",
        "[Y/n]:",
    ] {
        term.expect(question);
        term.send("\n");
    }
    let (status, screen) = term.finish();
    assert!(status.success(), "{screen}");
    screen
}

#[test]
fn files_encrypted_in_place_raise_an_overwrite_alert_by_the_200th_file() {
    let record = tempfile::NamedTempFile::new().unwrap();
    let command = format!("env | grep ^UNDELETE_ >> {}", record.path().display());
    let (env, files) = office(500, &["--alert-command", &command]);
    let paths: Vec<PathBuf> = files.iter().map(|(p, _)| p.clone()).collect();
    let started = std::time::SystemTime::now();
    let alerted_after = encrypt_until_alerted(&env, Variant::InPlace, &paths, 25);
    eprintln!(
        "alert first open after {alerted_after} of 500 files encrypted in place \
         ({:?} after the first)",
        started.elapsed().unwrap()
    );
    assert_eq!(alerted_after, 200, "the default threshold is 200 files");
    let incidents = overwrite_incidents(&env);
    assert_eq!(incidents.len(), 1, "{incidents:#?}");
    assert_eq!(incidents[0]["kind"], "overwritten");
    assert_eq!(incidents[0]["files"], 500, "{incidents:#?}");
    assert_eq!(incidents[0]["recoverable"], 500, "{incidents:#?}");
    let code = incidents[0]["code"].as_str().unwrap();
    let status = env.run(&["status"]);
    let text = String::from_utf8_lossy(&status.stdout);
    eprintln!("----- status -----\n{text}");
    assert!(
        text.contains("Files changed beyond use: 500 files"),
        "{text}"
    );
    assert!(
        text.contains(&format!("restore --incident {code}")),
        "{text}"
    );
    // The alert command is told, with the kind.
    env.sync();
    let told = fs::read_to_string(record.path()).unwrap();
    assert!(told.contains("UNDELETE_EVENT=started"), "{told}");
    assert!(told.contains("UNDELETE_KIND=overwritten"), "{told}");
    assert!(
        told.contains(&format!("UNDELETE_INCIDENT={code}")),
        "{told}"
    );
    // No deletion happened: no deletion incident either.
    assert_eq!(env.incidents_json().len(), 1);
}

#[test]
fn emergency_with_enter_brings_every_file_encrypted_in_place_back_as_it_was() {
    let Encrypted { env, files, .. } = encrypted(60, Variant::InPlace, 10);
    let screen = emergency_with_enter(&env);
    assert!(
        screen.contains("60 files changed beyond use in"),
        "step 2 names what happened: {screen}"
    );
    assert!(screen.contains("Recovered 60 of 60 files"), "{screen}");
    for (path, original) in &files {
        // The encrypted file is left where it is, the original comes back beside it.
        let now = fs::read(path).unwrap();
        assert_ne!(&now, original, "{}", path.display());
        let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
        let beside: Vec<PathBuf> = fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| {
                let name = p.file_name().unwrap().to_string_lossy().into_owned();
                name.starts_with(&format!("{stem} (as of "))
            })
            .collect();
        assert_eq!(beside.len(), 1, "{}: {beside:?}", path.display());
        assert_eq!(&fs::read(&beside[0]).unwrap(), original, "{beside:?}");
    }
}

#[test]
fn locked_copies_with_the_originals_deleted_come_back_under_the_original_names() {
    let (env, files) = office(300, &[]);
    let paths: Vec<PathBuf> = files.iter().map(|(p, _)| p.clone()).collect();
    let alerted_after = encrypt_until_alerted(&env, Variant::LockedCopies, &paths, 25);
    eprintln!("alert first open after {alerted_after} of 300 files copied to .locked");
    assert_eq!(
        alerted_after, 200,
        "the overwrite threshold, not the deletion one"
    );
    let kinds: Vec<Value> = env
        .incidents_json()
        .iter()
        .map(|i| i["kind"].clone())
        .collect();
    assert!(kinds.contains(&Value::from("renamed")), "{kinds:?}");
    let screen = emergency_with_enter(&env);
    assert!(screen.contains("Recovered 300 of 300 files"), "{screen}");
    for (path, original) in &files {
        assert_eq!(&fs::read(path).unwrap(), original, "{}", path.display());
        assert!(locked(path).exists(), "the encrypted copy is left in place");
    }
    env.sync();
    let renamed = overwrite_incidents(&env);
    let code = renamed[0]["code"].as_str().unwrap();
    assert_eq!(alert_of(&env, code)["state"], "resolved", "{renamed:#?}");
}

#[test]
fn twenty_rewrites_of_each_file_keep_the_version_from_before_the_incident() {
    let (env, files) = office(
        24,
        &["--overwrite-alert-files", "20", "--keep-versions", "10"],
    );
    let paths: Vec<PathBuf> = files.iter().map(|(p, _)| p.clone()).collect();
    for round in 0..20u64 {
        for (k, path) in paths.iter().enumerate() {
            fs::write(path, random(round * 1000 + k as u64, 4096)).unwrap();
        }
        env.sync();
    }
    assert!(!open_alerts(&env).is_empty());
    let dry = env.run_ok(&["purge", "--dry-run"]);
    assert!(dry.contains("held, not purged"), "{dry}");
    env.run_ok(&["purge"]);
    let code = overwrite_incidents(&env)[0]["code"]
        .as_str()
        .unwrap()
        .to_owned();
    restore_elsewhere_byte_for_byte(&env, &code, &files);
}

#[test]
fn the_size_cap_purges_nothing_while_an_alert_is_open() {
    let Encrypted { env, .. } = encrypted(30, Variant::InPlace, 10);
    // Unrelated older copies the cap would take first.
    for round in 0..3 {
        env.write("notes/todo.txt", format!("todo, take {round}\n").repeat(50));
        env.sync();
    }
    let objects = env.object_count();
    let out = env.run_ok(&["purge", "--max-vault-size", "1"]);
    assert!(out.contains("nothing is purged for room"), "{out}");
    assert_eq!(env.object_count(), objects, "{out}");
}

#[test]
fn unzipping_2000_files_then_saving_300_documents_raises_no_overwrite_alert() {
    let (env, files) = office(300, &[]);
    // An archive unpacked: 2,000 new files, compressed photos among them.
    for i in 0..2000 {
        let (name, bytes) = office_file(10_000 + i);
        env.write(format!("unpacked/{name}"), bytes);
    }
    env.sync();
    // Then each of the 300 documents opened and saved by its program.
    for (n, (path, original)) in files.iter().enumerate() {
        let mut saved = original.clone();
        if saved.starts_with(b"PK") || saved.starts_with(b"\xFF\xD8") {
            // A new ZIP or a re-encoded photo: same header, new compressed body.
            let keep = 12.min(saved.len());
            saved.truncate(keep);
            saved.extend(random(n as u64 + 99, 5000));
        } else {
            saved.extend_from_slice(b"\nP.S. updated after the meeting.\n");
        }
        fs::write(path, saved).unwrap();
    }
    env.sync();
    assert!(
        overwrite_incidents(&env).is_empty(),
        "{:#?}",
        env.incidents_json()
    );
    assert!(open_alerts(&env).is_empty(), "{:#?}", alerts(&env));
}

#[test]
fn a_rebuilt_index_keeps_the_overwrite_incident_and_what_it_brings_back() {
    let Encrypted {
        mut env,
        files,
        code,
        ..
    } = encrypted(30, Variant::InPlace, 10);
    let before = overwrite_incidents(&env);
    env.stop_daemon();
    env.run_ok(&["rebuild-index", "--json"]);
    let after = overwrite_incidents(&env);
    // Who changed them too: who wrote each version is journaled with it.
    let fields = |all: &[Value]| -> Vec<(Value, Value, Value, Value, Value)> {
        all.iter()
            .map(|i| {
                let f = |k: &str| i[k].clone();
                let who = i["deleted_by"]["user"].clone();
                (f("code"), f("kind"), f("files"), f("recoverable"), who)
            })
            .collect()
    };
    assert_eq!(fields(&after), fields(&before), "{after:#?}");
    assert_eq!(after[0]["code"], code.as_str(), "the same code");
    restore_elsewhere_byte_for_byte(&env, &code, &files);
}

#[test]
fn the_owner_is_emailed_that_files_are_being_encrypted_with_the_command_that_undoes_it() {
    use crate::common::smtp::{Mode, SmtpServer};
    let test =
        "the_owner_is_emailed_that_files_are_being_encrypted_with_the_command_that_undoes_it";
    let Some(server) = SmtpServer::start(test, Mode::Plain, None) else {
        return;
    };
    let mut env = TestEnv::new();
    let mut files = Vec::new();
    for i in 0..40 {
        let (name, bytes) = office_file(i);
        files.push(env.write(&name, &bytes));
    }
    let config = env.root.join("config.toml");
    fs::write(
        &config,
        format!(
            "vault = {:?}\nprotect = [{:?}]\noverwrite_alert_files = 20\n\n\
             [alert.email]\nserver = \"127.0.0.1\"\nport = {}\nsecurity = \"none\"\n\
             from = \"undelete <undelete@office.example>\"\nto = [\"owner@office.example\"]\n",
            env.vault, env.share, server.port
        ),
    )
    .unwrap();
    env.start_daemon_with(&["--config", config.to_str().unwrap()]);
    env.sync();
    encrypt_until_alerted(&env, Variant::InPlace, &files, 10);
    let code = overwrite_incidents(&env)[0]["code"]
        .as_str()
        .unwrap()
        .to_owned();
    let mail = server.wait_for(1, std::time::Duration::from_secs(60));
    eprintln!("----- e-mail as received -----\n{}", server.raw()[0]);
    let started = &mail[0];
    assert!(
        started.starts_with("Subject: Files are being encrypted on "),
        "{started}"
    );
    assert!(started.contains(&format!("Code:   {code}")), "{started}");
    assert!(started.contains("changed beyond use so far"), "{started}");
    let command = format!(
        "sudo undelete --vault {} restore --incident {code}",
        env.vault.display()
    );
    assert!(started.lines().any(|l| l.trim() == command), "{started}");
}

/// Text as one line, so what is looked for never depends on where it was wrapped.
fn one_line(text: &[u8]) -> String {
    let words: Vec<&str> = std::str::from_utf8(text)
        .unwrap()
        .split_whitespace()
        .collect();
    words.join(" ")
}

/// The code of the one overwrite incident of `env`.
fn overwrite_code(env: &TestEnv) -> String {
    let incidents = overwrite_incidents(env);
    assert_eq!(incidents.len(), 1, "{incidents:#?}");
    incidents[0]["code"].as_str().unwrap().to_owned()
}

/// The alert of incident `code`, as `alerts --json` shows it.
fn alert_of(env: &TestEnv, code: &str) -> Value {
    alerts(env)
        .into_iter()
        .find(|a| a["incident"]["code"] == code)
        .unwrap_or_else(|| panic!("no alert for {code}: {:#?}", alerts(env)))
}

#[test]
fn a_restore_of_files_encrypted_in_place_resolves_their_alert_and_emergency_offers_them_no_more() {
    let Encrypted { env, code, .. } = encrypted(30, Variant::InPlace, 10);
    let (ok, report, text) = restore_json(&env, &["--incident", &code]);
    assert!(ok, "{text}");
    assert_eq!(report["recovered"], 30, "{report:#}");
    env.sync();
    let alert = alert_of(&env, &code);
    assert_eq!(alert["state"], "resolved", "{alert:#}");
    assert_eq!(alert["incident"]["restored"], 30, "{alert:#}");
    assert_eq!(alert["incident"]["missing"], 0, "{alert:#}");
    let status = one_line(&env.run(&["status"]).stdout);
    assert!(
        status.contains("30 of 30 files changed beyond use brought back as they were before"),
        "{status}"
    );
    assert!(!status.contains("WARNING"), "{status}");
    // A later deletion: once the encrypted files are back, it is the one Enter brings back.
    let later: Vec<PathBuf> = (0..5)
        .map(|n| env.write(format!("later/note-{n}.txt"), format!("note {n}\n")))
        .collect();
    env.sync();
    for path in &later {
        fs::remove_file(path).unwrap();
    }
    env.sync();
    let out = env.run(&["emergency", "--yes"]);
    let screen = output_text(&out);
    assert!(out.status.success(), "{screen}");
    assert!(screen.contains("Recovered 5 of 5 files"), "{screen}");
    for path in &later {
        assert!(path.exists(), "{}: {screen}", path.display());
    }
    // A second restore of the incident finds everything already there.
    let (ok, again, text) = restore_json(&env, &["--incident", &code]);
    assert!(ok, "{text}");
    assert_eq!(again["already_present"], 30, "{again:#}");
    // What was brought back is in the journal: a rebuilt index keeps it resolved.
    let mut env = env;
    env.stop_daemon();
    env.run_ok(&["rebuild-index", "--json"]);
    let alert = alert_of(&env, &code);
    assert_eq!(alert["state"], "resolved", "{alert:#}");
    assert_eq!(alert["incident"]["restored"], 30, "{alert:#}");
}

#[test]
fn an_acknowledged_overwrite_alert_speaks_of_files_changed_not_of_a_deletion() {
    let Encrypted { env, code, .. } = encrypted(30, Variant::InPlace, 10);
    let acked = env.run_ok(&[
        "alerts",
        "ack",
        &code,
        "--note",
        "a test of the backup software",
    ]);
    assert!(
        acked.contains(&format!("the files changed beyond use of incident {code}")),
        "{acked}"
    );
    let alert = alert_of(&env, &code);
    assert_eq!(alert["state"], "acknowledged", "{alert:#}");
    let status = one_line(&env.run(&["status"]).stdout);
    let listed = one_line(env.run_ok(&["alerts"]).as_bytes());
    for text in [&status, &listed] {
        assert!(!text.contains("deletion"), "{text}");
        assert!(text.contains("the 30 files changed in"), "{text}");
        assert!(text.contains("need no restore"), "{text}");
    }
}

#[test]
fn files_renamed_to_a_new_extension_and_rewritten_come_back_under_their_original_names() {
    let (env, files) = office(40, &["--overwrite-alert-files", "20"]);
    for (k, (path, _)) in files.iter().enumerate() {
        let to = locked(path);
        let cipher = random(0xBAD + k as u64, 4096);
        if k % 2 == 0 {
            // Renamed first, then rewritten in place under the new name.
            fs::rename(path, &to).unwrap();
            fs::write(&to, cipher).unwrap();
        } else {
            // Rewritten first, then renamed.
            fs::write(path, cipher).unwrap();
            fs::rename(path, &to).unwrap();
        }
        if k % 10 == 9 {
            env.sync();
        }
    }
    env.sync();
    let code = overwrite_code(&env);
    let (ok, report, text) = restore_json(&env, &["--incident", &code]);
    assert!(ok, "{text}");
    assert_eq!(report["recovered"], 40, "{report:#}");
    for (path, original) in &files {
        let back = fs::read(path).unwrap_or_else(|e| panic!("{}: {e}\n{report:#}", path.display()));
        assert_eq!(&back, original, "{}", path.display());
        assert!(locked(path).exists(), "the encrypted copy is left in place");
    }
    env.sync();
    assert_eq!(alert_of(&env, &code)["state"], "resolved");
}

/// Files of `files` whose encrypted copies were moved aside, then rewritten on
/// disk again while no daemon saw it: changed since, so left alone.
#[test]
fn encrypted_copies_moved_aside_make_room_for_the_originals_under_their_own_names() {
    let Encrypted {
        mut env,
        files,
        paths,
        code,
    } = encrypted(30, Variant::InPlace, 10);
    let encrypted: Vec<Vec<u8>> = paths.iter().map(|p| fs::read(p).unwrap()).collect();
    // By default, nothing on the share is touched: a dry run says they stay.
    let (_, dry, _) = restore_json(&env, &["--incident", &code, "--dry-run"]);
    assert_eq!(dry["encrypted_left"], 30, "{dry:#}");
    // One encrypted file changed again while the service was stopped.
    env.stop_daemon();
    fs::write(&paths[0], random(77, 4096)).unwrap();
    let changed = fs::read(&paths[0]).unwrap();
    let (ok, report, text) = restore_json(&env, &["--incident", &code, "--move-encrypted-aside"]);
    assert!(ok, "{text}");
    assert_eq!(report["recovered"], 30, "{report:#}");
    assert_eq!(report["encrypted_moved"], 29, "{report:#}");
    let aside = env.share.join(format!("Encrypted files (incident {code})"));
    for (k, (path, original)) in files.iter().enumerate().skip(1) {
        assert_eq!(&fs::read(path).unwrap(), original, "{}", path.display());
        let relative = path.strip_prefix(&env.share).unwrap();
        assert_eq!(fs::read(aside.join(relative)).unwrap(), encrypted[k]);
    }
    // The one that changed is left, named in the report, and its original beside it.
    assert_eq!(fs::read(&paths[0]).unwrap(), changed);
    let left: Vec<&Value> = report["encrypted"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["outcome"] == "left")
        .collect();
    assert_eq!(left.len(), 1, "{report:#}");
    assert_eq!(left[0]["path"], paths[0].to_str().unwrap());
    assert_eq!(left[0]["reason"], "it changed since it was encrypted");
    let first = report["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["path"] == paths[0].to_str().unwrap())
        .unwrap();
    let beside = first["restored_to"].as_str().unwrap();
    assert!(beside.contains(" (as of "), "{first:#}");
    assert_eq!(&fs::read(beside).unwrap(), &files[0].1);
    // Every file is back as of the moment the encryption began, and the text says where
    // the copies went.
    assert!(report["as_of"].is_string(), "{report:#}");
    let saved = one_line(env.run_ok(&["report", "last"]).as_bytes());
    assert!(
        saved.contains(&format!(
            "29 encrypted copies were moved aside, into: {}",
            aside.display()
        )),
        "{saved}"
    );
    assert!(
        saved.contains("1 encrypted copy was left where it is: it changed since"),
        "{saved}"
    );
    assert!(saved.contains("before the encryption began"), "{saved}");
}

#[test]
fn encrypted_copies_are_deleted_only_with_the_flag_that_names_it() {
    let Encrypted {
        env,
        files,
        paths,
        code,
    } = encrypted(30, Variant::LockedCopies, 10);
    let (ok, report, text) = restore_json(&env, &["--incident", &code]);
    assert!(ok, "{text}");
    assert_eq!(report["encrypted_left"], 30, "{report:#}");
    for path in &paths {
        assert!(locked(path).exists(), "left by default");
    }
    env.sync();
    let (ok, again, text) = restore_json(&env, &["--incident", &code, "--delete-encrypted"]);
    assert!(ok, "{text}");
    assert_eq!(again["already_present"], 30, "{again:#}");
    assert_eq!(again["encrypted_deleted"], 30, "{again:#}");
    assert!(
        again["command"]
            .as_str()
            .unwrap()
            .ends_with("--delete-encrypted"),
        "{again:#}"
    );
    for (path, original) in &files {
        assert_eq!(&fs::read(path).unwrap(), original);
        assert!(!locked(path).exists(), "{}", path.display());
    }
    // Deleted like any file: the vault still has each.
    env.sync();
    let listed = env.list_by_path(&[]);
    for path in &paths {
        let copy = entry(&listed, locked(path).to_str().unwrap());
        assert_deleted_and_recoverable(copy);
    }
}

#[test]
fn emergency_moves_the_encrypted_copies_aside_when_asked_and_leaves_them_on_enter() {
    let Encrypted {
        env, files, code, ..
    } = encrypted(30, Variant::InPlace, 10);
    let mut term = Terminal::start(&format!(
        "stty rows 24 cols 80; exec {BIN} --vault {} emergency",
        env.vault.display()
    ));
    for (question, answer) in [
        ("Press Enter for 1:", "\n"),
        ("Your choice [1]:", "\n"),
        ("Your choice for the encrypted copies [1]:", "2\n"),
        ("[Y/n]:", "\n"),
    ] {
        term.expect(question);
        term.send(answer);
    }
    let (status, screen) = term.finish();
    assert!(status.success(), "{screen}");
    let flat = one_line(screen.as_bytes());
    assert!(flat.contains("Recovered 30 of 30 files"), "{screen}");
    assert!(
        flat.contains("30 encrypted copies were moved aside, into:"),
        "{screen}"
    );
    assert!(
        flat.contains(&format!(
            "emergency --yes --incident {code} --move-encrypted-aside"
        )),
        "{screen}"
    );
    for (path, original) in &files {
        assert_eq!(&fs::read(path).unwrap(), original, "{}", path.display());
    }
    // Moved within the share, not out of it: nothing is in the recycle bin.
    env.sync();
    assert_eq!(env.list_json(&[]), Vec::<Value>::new());
}

#[test]
fn a_link_planted_at_the_folder_for_encrypted_copies_moves_nothing_outside_the_share() {
    let Encrypted {
        env, files, code, ..
    } = encrypted(24, Variant::InPlace, 12);
    let outside = env.root.join("outside");
    fs::create_dir(&outside).unwrap();
    std::os::unix::fs::symlink(
        &outside,
        env.share.join(format!("Encrypted files (incident {code})")),
    )
    .unwrap();
    env.sync();
    let (ok, report, text) = restore_json(&env, &["--incident", &code, "--move-encrypted-aside"]);
    assert!(ok, "{text}");
    assert_eq!(report["recovered"], 24, "{report:#}");
    assert_eq!(report["encrypted_moved"], 0, "{report:#}");
    assert_eq!(report["encrypted_left"], 24, "{report:#}");
    assert_eq!(fs::read_dir(&outside).unwrap().count(), 0);
    for (path, _) in &files {
        assert!(
            path.exists(),
            "the encrypted copy stays: {}",
            path.display()
        );
    }
}

#[test]
fn the_vault_growing_unusually_fast_raises_its_own_alert_that_holds_the_size_cap_until_acknowledged()
 {
    use crate::common::smtp::{Mode, SmtpServer};
    let test = "the_vault_growing_unusually_fast_raises_its_own_alert";
    let Some(server) = SmtpServer::start(test, Mode::Plain, None) else {
        return;
    };
    let mut env = TestEnv::new();
    env.write("notes/todo.txt", "call the bank\n".repeat(100));
    let record = env.root.join("told.txt");
    let config = env.root.join("config.toml");
    fs::write(
        &config,
        format!(
            "vault = {:?}\nprotect = [{:?}]\nvault_growth_alert = 5\nvault_growth_window = \"1h\"\n\
             alert_command = \"env | grep ^UNDELETE_ >> {}\"\n\n\
             [retention]\nmax_vault_size = \"100MB\"\n\n\
             [alert.email]\nserver = \"127.0.0.1\"\nport = {}\nsecurity = \"none\"\n\
             from = \"undelete <undelete@office.example>\"\nto = [\"owner@office.example\"]\n",
            env.vault,
            env.share,
            record.display(),
            server.port
        ),
    )
    .unwrap();
    env.start_daemon_with(&["--config", config.to_str().unwrap()]);
    env.sync();
    // 3 MB within the hour: under 5% of the 100 MB cap.
    for n in 0..3u64 {
        env.write(format!("scans/scan-{n}.pdf"), random(n, 1_000_000));
    }
    env.sync();
    assert!(open_alerts(&env).is_empty(), "{:#?}", alerts(&env));
    // 3 MB more: 6 MB within the hour.
    for n in 3..6u64 {
        env.write(format!("scans/scan-{n}.pdf"), random(n, 1_000_000));
    }
    env.sync();
    let open = open_alerts(&env);
    assert_eq!(open.len(), 1, "{open:#?}");
    assert_eq!(open[0]["kind"], "vault_growth", "{open:#?}");
    let status = one_line(&env.run(&["status"]).stdout);
    assert!(status.contains("The vault grew unusually fast"), "{status}");
    // While it is open, the size rules purge nothing.
    for round in 0..3 {
        env.write("notes/todo.txt", format!("todo, take {round}\n").repeat(50));
        env.sync();
    }
    let objects = env.object_count();
    let out = one_line(env.run_ok(&["purge", "--max-vault-size", "1"]).as_bytes());
    assert!(out.contains("nothing is purged for room"), "{out}");
    assert!(out.contains("grows unusually fast"), "{out}");
    assert_eq!(env.object_count(), objects, "{out}");
    // Told like the others: the alert command and the e-mail.
    let mail = server.wait_for(1, std::time::Duration::from_secs(60));
    eprintln!("----- e-mail as received -----\n{}", server.raw()[0]);
    assert!(
        mail[0].starts_with("Subject: The vault is growing unusually fast on "),
        "{}",
        mail[0]
    );
    env.sync();
    let told = fs::read_to_string(&record).unwrap();
    assert!(told.contains("UNDELETE_KIND=vault_growth"), "{told}");
    // Acknowledged, it ends, and the size cap works again.
    let id = open[0]["id"].to_string();
    env.run_ok(&["alerts", "ack", &id, "--note", "the yearly scans"]);
    assert!(open_alerts(&env).is_empty(), "{:#?}", alerts(&env));
    let out = one_line(env.run_ok(&["purge", "--max-vault-size", "1"]).as_bytes());
    assert!(!out.contains("nothing is purged for room"), "{out}");
}

/// The two variants over the office's file share: a real smbd on loopback serves
/// the protected folder, and smbclient is the infected PC, 25 files a session
/// with a sync after each: the alert must be open by the 200th file, and
/// emergency with Enter must bring every original back byte for byte.
fn encrypt_over_smb(variant: Variant, files: usize) {
    use crate::common::ransomware::{cipher, smb_commands};
    use crate::common::samba::Samba;
    let test = format!("encrypt_over_smb_{variant:?}");
    let mut env = TestEnv::new();
    let Some(samba) = Samba::start(&test, &[("office", &env.share)]) else {
        return;
    };
    let anna = samba.add_user("anna");
    let mut originals = Vec::new();
    for i in 0..files {
        let (name, bytes) = office_file(i);
        originals.push((env.write(&name, &bytes), bytes));
    }
    // The share is anna's, as the office's files are.
    for entry in walkdir(&env.share) {
        std::os::unix::fs::lchown(&entry, Some(anna.uid), Some(anna.gid)).unwrap();
    }
    env.start_daemon(&[]);
    env.sync();
    let staged = env.root.join("staged");
    fs::create_dir(&staged).unwrap();
    let relative: Vec<(usize, PathBuf)> = originals
        .iter()
        .enumerate()
        .map(|(k, (path, bytes))| {
            fs::write(staged.join(k.to_string()), cipher(k, bytes.len())).unwrap();
            (k, path.strip_prefix(&env.share).unwrap().to_owned())
        })
        .collect();
    let pc = samba.client(&anna, "office").on_pc("FRONTDESK");
    let started = std::time::Instant::now();
    let mut alerted_after = None;
    for batch in relative.chunks(25) {
        pc.run_ok(&smb_commands(variant, batch, &staged));
        env.sync();
        if alerted_after.is_none() && !open_alerts(&env).is_empty() {
            alerted_after = Some((batch.last().unwrap().0 + 1, started.elapsed()));
        }
    }
    let (after, elapsed) = alerted_after.expect("an alert");
    eprintln!(
        "over SMB, {variant:?}: alert first open after {after} of {files} files ({elapsed:?})"
    );
    assert!(
        after <= 200,
        "the alert comes within the first 200 files, not after {after}"
    );
    let screen = emergency_with_enter(&env);
    assert!(
        screen.contains(&format!("Recovered {files} of {files} files")),
        "{screen}"
    );
    for (k, (path, original)) in originals.iter().enumerate() {
        let back = match variant {
            // Rewritten in place: the original comes back beside the encrypted file.
            Variant::InPlace => {
                let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
                let beside: Vec<PathBuf> = fs::read_dir(path.parent().unwrap())
                    .unwrap()
                    .map(|e| e.unwrap().path())
                    .filter(|p| {
                        let name = p.file_name().unwrap().to_string_lossy().into_owned();
                        name.starts_with(&format!("{stem} (as of "))
                    })
                    .collect();
                assert_eq!(beside.len(), 1, "{}: {beside:?}", path.display());
                assert_eq!(fs::read(path).unwrap(), cipher(k, original.len()));
                beside[0].clone()
            }
            Variant::LockedCopies => path.clone(),
        };
        assert_eq!(&fs::read(&back).unwrap(), original, "{}", back.display());
    }
}

/// Every file and folder below `dir`, `dir` included.
fn walkdir(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut out = vec![dir.to_owned()];
    let mut i = 0;
    while i < out.len() {
        if out[i].is_dir() && !out[i].is_symlink() {
            let entries: Vec<PathBuf> = fs::read_dir(&out[i])
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect();
            out.extend(entries);
        }
        i += 1;
    }
    out
}

#[test]
fn five_hundred_files_encrypted_in_place_over_the_share_are_alerted_by_the_200th_and_all_come_back()
{
    encrypt_over_smb(Variant::InPlace, 500);
}

#[test]
fn locked_copies_written_over_the_share_with_the_originals_deleted_are_alerted_and_all_come_back() {
    encrypt_over_smb(Variant::LockedCopies, 500);
}

/// How a user's good file takes the name of an encrypted copy while a restore
/// holds between looking at the copy and acting on it.
#[derive(Debug, Clone, Copy)]
enum Swap {
    /// Saved the way office suites save: a temporary file renamed over the name.
    SavedOver,
    /// `renameat2(RENAME_EXCHANGE)`: the encrypted copy goes on under the other name.
    Exchanged,
}

/// `undelete ARGS` started with its hold (`pause`, the variable naming a fifo the
/// restore opens and reads a line from once it has checked what it will act on)
/// set, and returned once it holds there: the fifo, its writing end (a line or
/// closing it lets the restore go on) and the thread that waits for its output.
fn restore_held(
    env: &TestEnv,
    args: &[&str],
    pause: &str,
) -> (
    PathBuf,
    fs::File,
    std::thread::JoinHandle<std::process::Output>,
) {
    use std::os::unix::fs::OpenOptionsExt;
    let fifo = env.root.join(pause.to_lowercase());
    rustix::fs::mkfifoat(
        rustix::fs::CWD,
        &fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
    )
    .unwrap();
    let child = env
        .command()
        .args(args)
        .env(pause, &fifo)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let waiter = {
        let fifo = fifo.clone();
        std::thread::spawn(move || {
            let out = child.wait_with_output().unwrap();
            let _ = done_tx.send(());
            // A restore that ended without holding leaves the open below waiting
            // for a reader: this one lets it go on, to fail plainly.
            let _ = fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(&fifo);
            out
        })
    };
    // Opened once the restore opened it to wait: it is held between check and act.
    let go = fs::OpenOptions::new().write(true).open(&fifo).unwrap();
    assert!(
        done_rx.try_recv().is_err(),
        "the restore ended without holding: {}",
        output_text(&waiter.join().unwrap())
    );
    (fifo, go, waiter)
}

/// A restore of an overwrite incident with `action` (`--move-encrypted-aside` or
/// `--delete-encrypted`), held (`UNDELETE_TEST_PAUSE_ASIDE`) after it checked the
/// one encrypted copy still as recorded, while a good file is swapped in at its
/// name. Returns the environment, the report, the copy's path and the good content.
fn restore_with_a_file_swapped_in(action: &str, swap: Swap) -> (TestEnv, Value, PathBuf, Vec<u8>) {
    use std::io::Write;
    let Encrypted {
        mut env,
        paths,
        code,
        ..
    } = encrypted(24, Variant::InPlace, 12);
    // Every copy but the first changed since, unseen: only the first is checked as
    // still encrypted, so the restore holds once, at it.
    env.stop_daemon();
    for (k, path) in paths.iter().enumerate().skip(1) {
        fs::write(path, random(500 + k as u64, 3000)).unwrap();
    }
    let target = paths[0].clone();
    let encrypted = fs::read(&target).unwrap();
    let good = b"The letter as it was saved this morning, by hand, again.\n".repeat(20);
    let (_fifo, mut go, waiter) = restore_held(
        &env,
        &["restore", "--incident", &code, action, "--json"],
        "UNDELETE_TEST_PAUSE_ASIDE",
    );
    let saved = target.with_file_name("~letter.tmp");
    fs::write(&saved, &good).unwrap();
    match swap {
        Swap::SavedOver => fs::rename(&saved, &target).unwrap(),
        Swap::Exchanged => rustix::fs::renameat_with(
            rustix::fs::CWD,
            &saved,
            rustix::fs::CWD,
            &target,
            rustix::fs::RenameFlags::EXCHANGE,
        )
        .unwrap(),
    }
    go.write_all(b"go\n").unwrap();
    drop(go);
    let out = waiter.join().unwrap();
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("restore --json is not JSON ({e}):\n{}", output_text(&out)));
    assert!(out.status.success(), "{}", output_text(&out));
    if let Swap::Exchanged = swap {
        assert_eq!(
            fs::read(&saved).unwrap(),
            encrypted,
            "the copy under the other name"
        );
    }
    (env, report, target, good)
}

/// The one encrypted copy's entry in `report`.
fn encrypted_entry<'a>(report: &'a Value, path: &std::path::Path) -> &'a Value {
    report["encrypted"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["path"] == path.to_str().unwrap())
        .unwrap_or_else(|| panic!("{} not in {report:#}", path.display()))
}

/// The good file swapped in is still there, whole, under the name it took.
fn assert_holds_the_good_file(target: &std::path::Path, good: &[u8], report: &Value) {
    let there = fs::read(target).ok();
    assert!(
        there.as_deref() == Some(good),
        "{} holds {:?}, not the good file: {report:#}",
        target.display(),
        there.map(|t| String::from_utf8_lossy(&t[..t.len().min(60)]).into_owned())
    );
}

fn assert_left_because_swapped(report: &Value, target: &std::path::Path) {
    let entry = encrypted_entry(report, target);
    assert_eq!(entry["outcome"], "left", "{report:#}");
    assert_eq!(
        entry["reason"], "another file took its name while it was being set aside",
        "{report:#}"
    );
    assert_eq!(report["encrypted_moved"], 0, "{report:#}");
    assert_eq!(report["encrypted_deleted"], 0, "{report:#}");
}

#[test]
fn a_file_saved_over_an_encrypted_copy_while_it_is_moved_aside_stays_in_its_place() {
    let (env, report, target, good) =
        restore_with_a_file_swapped_in("--move-encrypted-aside", Swap::SavedOver);
    assert_holds_the_good_file(&target, &good, &report);
    let code = report["incident"].as_str().unwrap().to_owned();
    let aside = env.share.join(format!("Encrypted files (incident {code})"));
    let relative = target.strip_prefix(&env.share).unwrap();
    assert!(!aside.join(relative).exists(), "{report:#}");
    assert_left_because_swapped(&report, &target);
}

#[test]
fn a_file_exchanged_with_an_encrypted_copy_while_it_is_moved_aside_stays_in_its_place() {
    let (env, report, target, good) =
        restore_with_a_file_swapped_in("--move-encrypted-aside", Swap::Exchanged);
    assert_holds_the_good_file(&target, &good, &report);
    let code = report["incident"].as_str().unwrap().to_owned();
    let aside = env.share.join(format!("Encrypted files (incident {code})"));
    assert!(
        !aside
            .join(target.strip_prefix(&env.share).unwrap())
            .exists()
    );
    assert_left_because_swapped(&report, &target);
}

#[test]
fn a_file_saved_over_an_encrypted_copy_while_it_is_deleted_is_not_deleted() {
    let (_env, report, target, good) =
        restore_with_a_file_swapped_in("--delete-encrypted", Swap::SavedOver);
    assert_holds_the_good_file(&target, &good, &report);
    assert_left_because_swapped(&report, &target);
}

#[test]
fn a_file_exchanged_with_an_encrypted_copy_while_it_is_deleted_is_not_deleted() {
    let (_env, report, target, good) =
        restore_with_a_file_swapped_in("--delete-encrypted", Swap::Exchanged);
    assert_holds_the_good_file(&target, &good, &report);
    assert_left_because_swapped(&report, &target);
}

#[test]
fn a_copy_left_in_a_folder_of_its_own_by_an_interrupted_restore_gets_its_name_back() {
    use std::os::unix::fs::PermissionsExt;
    let Encrypted {
        mut env,
        files,
        paths,
        code,
    } = encrypted(24, Variant::InPlace, 12);
    env.stop_daemon();
    // A restore deleting it stopped (killed, or the power went) once it had moved
    // the copy into the folder it makes for that, as this account, readable by it alone.
    let name = paths[0].file_name().unwrap();
    let private = paths[0].with_file_name(".undelete-aside-00c0ffee00c0ffee-0");
    fs::create_dir(&private).unwrap();
    fs::set_permissions(&private, fs::Permissions::from_mode(0o700)).unwrap();
    fs::rename(&paths[0], private.join(name)).unwrap();
    let (ok, report, text) = restore_json(&env, &["--incident", &code, "--delete-encrypted"]);
    assert!(ok, "{text}");
    assert!(!private.exists(), "{report:#}");
    assert_eq!(encrypted_entry(&report, &paths[0])["outcome"], "deleted");
    assert_eq!(report["encrypted_deleted"], 24, "{report:#}");
    assert_eq!(
        fs::read(&paths[0]).unwrap(),
        files[0].1,
        "the original in its place"
    );
}

/// `--delete-encrypted` held (`UNDELETE_TEST_PAUSE_DELETE`) once it has checked the
/// copy under the name it deletes it by, just before deleting it: another local user
/// renames a good file onto every name of the program's own in that folder, and
/// plants a file under the mark of this restore's own names. The good file is not
/// deleted, and the planted one is a user's file once the restore has ended.
#[test]
fn a_file_renamed_onto_the_name_an_encrypted_copy_is_deleted_under_is_not_deleted() {
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    if !is_root() {
        eprintln!("skipped: acting as another local user needs root");
        return;
    }
    let Encrypted { mut env, code, .. } = encrypted(24, Variant::InPlace, 12);
    // Another local user may write in every folder, as on a share.
    for dir in walkdir(&env.share).iter().filter(|p| p.is_dir()) {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o777)).unwrap();
    }
    let good = b"The letter as it was saved this morning, by hand, again.\n".repeat(20);
    let saved = env.share.join("~letter.tmp");
    fs::write(&saved, &good).unwrap();
    let (fifo, mut go, waiter) = restore_held(
        &env,
        &[
            "restore",
            "--incident",
            &code,
            "--delete-encrypted",
            "--json",
        ],
        "UNDELETE_TEST_PAUSE_DELETE",
    );
    // Held once: the copies after this one are not held.
    fs::remove_file(&fifo).unwrap();
    let own: Vec<PathBuf> = walkdir(&env.share)
        .into_iter()
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(".undelete-aside-"))
        })
        .collect();
    assert!(!own.is_empty(), "nothing of the restore's own in the share");
    let as_user = |from: &std::path::Path, to: &std::path::Path| {
        std::process::Command::new("mv")
            .arg("-T")
            .arg(from)
            .arg(to)
            .uid(65534)
            .gid(65534)
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap()
    };
    for private in &own {
        as_user(&saved, private);
        // Inside, where the copy is deleted, by the name it has there.
        for inside in walkdir(private).iter().skip(1) {
            as_user(&saved, inside);
        }
    }
    let name = own[0].file_name().unwrap().to_string_lossy().into_owned();
    let mark = name[".undelete-aside-".len()..]
        .split('-')
        .next()
        .unwrap()
        .to_owned();
    let planted = env.share.join(format!(".undelete-restore-{mark}-99"));
    fs::write(&planted, "planted under the restore's own mark").unwrap();
    go.write_all(b"go\n").unwrap();
    drop(go);
    let out = waiter.join().unwrap();
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("restore --json is not JSON ({e}):\n{}", output_text(&out)));
    let kept = walkdir(&env.share)
        .iter()
        .any(|p| p.is_file() && fs::read(p).is_ok_and(|d| d == good));
    assert!(kept, "the good file was deleted: {report:#}");
    assert!(out.status.success(), "{}", output_text(&out));
    assert_eq!(report["encrypted_deleted"], 24, "{report:#}");
    env.sync();
    crate::own_names::assert_listed_live(&env, planted.to_str().unwrap());
    env.stop_daemon();
}

/// Two office PCs encrypting the share at once, each in a session kept open as a
/// PC's is: anna from FRONTDESK and bob from OFFICE2, 30 files each, interleaved.
#[test]
fn two_pcs_encrypting_over_the_share_at_once_are_two_incidents_each_naming_its_person_and_pc() {
    use crate::common::ransomware::cipher;
    use crate::common::samba::Samba;
    use std::time::{Duration, Instant};
    let test = "two_pcs_encrypting_over_the_share_at_once_are_two_incidents";
    let mut env = TestEnv::new();
    let Some(samba) = Samba::start_with_names(test, &[("office", &env.share)]) else {
        return;
    };
    let (anna, bob) = (samba.add_user("anna"), samba.add_user("bob"));
    let mut originals = Vec::new();
    for i in 0..60 {
        let (name, bytes) = office_file(i);
        originals.push((env.write(&name, &bytes), bytes));
    }
    // Each one's files are their own; the folders are everyone's.
    for entry in walkdir(&env.share) {
        if entry.is_dir() {
            fs::set_permissions(&entry, std::os::unix::fs::PermissionsExt::from_mode(0o777))
                .unwrap();
        }
    }
    for (k, (path, _)) in originals.iter().enumerate() {
        let owner = if k % 2 == 0 { &anna } else { &bob };
        std::os::unix::fs::lchown(path, Some(owner.uid), Some(owner.gid)).unwrap();
    }
    let told = env.root.join("told.txt");
    let command = format!("env | grep ^UNDELETE_ >> {}", told.display());
    env.start_daemon(&["--overwrite-alert-files", "20", "--alert-command", &command]);
    env.sync();
    let source = env.status_json()["event_source"]["source"].clone();
    if source != "fanotify" {
        eprintln!(
            "SKIPPED {test}: the daemon does not watch with fanotify ({source}), and inotify never says who made a change"
        );
        return;
    }
    let staged = env.root.join("staged");
    fs::create_dir(&staged).unwrap();
    let (anna_pc, bob_pc) = (
        samba.client(&anna, "office").on_pc("FRONTDESK"),
        samba.client(&bob, "office").on_pc("OFFICE2"),
    );
    let (mut anna_puts, mut bob_puts) = (Vec::new(), Vec::new());
    for (k, (path, bytes)) in originals.iter().enumerate() {
        fs::write(staged.join(k.to_string()), cipher(k, bytes.len())).unwrap();
        let remote = path
            .strip_prefix(&env.share)
            .unwrap()
            .to_string_lossy()
            .replace('/', "\\");
        let put = format!("put {} {remote}", staged.join(k.to_string()).display());
        if k % 2 == 0 {
            anna_puts.push(put);
        } else {
            bob_puts.push(put);
        }
    }
    // Both sessions open before either writes, so they write at the same time, a
    // file each in turn. smbclient takes one command from a pipe at a time: the next
    // is sent once the last is done.
    let (mut at_anna, mut at_bob) = (anna_pc.hold(), bob_pc.hold());
    let deadline = Instant::now() + Duration::from_secs(120);
    for (pair, puts) in anna_puts.iter().zip(&bob_puts).enumerate() {
        at_anna.send(puts.0);
        at_bob.send(puts.1);
        for k in [2 * pair, 2 * pair + 1] {
            let (path, bytes) = &originals[k];
            while fs::read(path).unwrap() != cipher(k, bytes.len()) {
                assert!(
                    Instant::now() < deadline,
                    "smbclient did not write {}: {}",
                    path.display(),
                    samba.log()
                );
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }
    env.sync();
    drop((at_anna, at_bob));

    let mut incidents = overwrite_incidents(&env);
    assert_eq!(incidents.len(), 2, "{incidents:#?}\n{}", env.daemon_log());
    incidents.sort_by_key(|i| i["deleted_by"]["user"].as_str().map(str::to_owned));
    for (incident, (user, pc)) in incidents
        .iter()
        .zip([("anna", "FRONTDESK"), ("bob", "OFFICE2")])
    {
        assert_eq!(incident["files"], 30, "{incident:#}");
        assert_eq!(incident["deleted_by"]["user"], user, "{incident:#}");
        assert_eq!(incident["deleted_by"]["machine"], pc, "{incident:#}");
        assert_eq!(incident["deleted_by"]["via"], "file_share", "{incident:#}");
    }
    let said = "anna from FRONTDESK (127.0.0.1) over the file share";
    let text = one_line(env.run_ok(&["incidents"]).as_bytes());
    assert!(text.contains(&format!("changed by {said}")), "{text}");
    let status = one_line(&env.run(&["status"]).stdout);
    assert!(status.contains(&format!("Changed by {said}.")), "{status}");
    // The alert command runs beside the daemon's loop, one per incident: both
    // have run once the file names both people (bounded, then the asserts say).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let told = loop {
        let text = fs::read_to_string(&told).unwrap_or_default();
        let both = text.contains("UNDELETE_DELETED_BY_USER=anna")
            && text.contains("UNDELETE_DELETED_BY_USER=bob");
        if both || std::time::Instant::now() > deadline {
            break text;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert!(told.contains("UNDELETE_DELETED_BY_USER=anna"), "{told}");
    assert!(told.contains("UNDELETE_DELETED_FROM=OFFICE2"), "{told}");
    // Each incident brings back its person's files, and only those.
    let code = incidents[1]["code"].as_str().unwrap();
    let (ok, report, out) = restore_json(&env, &["--incident", code]);
    assert!(ok, "{out}");
    assert_eq!(report["recovered"], 30, "{report:#}");
    assert_eq!(
        report["encrypted"][0]["changed_by"]["user"], "bob",
        "{report:#}"
    );
    let saved = one_line(env.run_ok(&["report", "last"]).as_bytes());
    assert!(
        saved.contains("Changed by bob from OFFICE2 (127.0.0.1) over the file share."),
        "{saved}"
    );
    // emergency speaks of files changed, and names the one left for it.
    let out = env.run(&[
        "emergency",
        "--yes",
        "--incident",
        incidents[0]["code"].as_str().unwrap(),
    ]);
    let screen = one_line(&out.stdout);
    assert!(screen.contains("What was changed or deleted?"), "{screen}");
    assert!(screen.contains(&format!("(changed by {said})")), "{screen}");
}
