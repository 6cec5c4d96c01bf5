//! SIGHUP (`systemctl reload undelete`): the daemon reads its settings again
//! and goes on, missing no change made meanwhile.

use std::fs;
use std::time::{Duration, Instant};

use crate::common::{TestEnv, assert_live_and_recoverable, entry, flag};

fn settings(env: &TestEnv, protect: &[&std::path::Path], exclude: &str) -> String {
    let folders: Vec<String> = protect.iter().map(|p| format!("{:?}", p)).collect();
    format!(
        "vault = {:?}\nprotect = [{}]\nexclude = [{exclude:?}]\n",
        env.vault,
        folders.join(", ")
    )
}

/// Waits until the daemon says it has read its settings at a new moment.
fn wait_for_reload(env: &TestEnv, before: &serde_json::Value) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let status = env.status_json();
        if status["settings_read_at"] != *before {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "no reload after SIGHUP: {status}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn sighup_reloads_the_settings_and_misses_no_change() {
    let mut env = TestEnv::new();
    let photos = env.root.join("photos");
    fs::create_dir(&photos).unwrap();
    let config = env.root.join("config.toml");
    fs::write(&config, settings(&env, &[&env.share], "*.tmp")).unwrap();
    env.start_daemon_with(&["--config", config.to_str().unwrap()]);
    env.write("before.txt", "before");
    env.write("old-rule.tmp", "kept out by the first rules");
    env.sync();
    let read_at = env.status_json()["settings_read_at"].clone();
    assert!(read_at.is_string(), "{read_at}");

    fs::write(&config, settings(&env, &[&env.share, &photos], "*.log")).unwrap();
    fs::write(photos.join("p.jpg"), "a photo").unwrap();
    env.reload_daemon();
    env.write("during.txt", "written while the settings are read again");
    let status = wait_for_reload(&env, &read_at);
    assert_eq!(
        status["protected_folders"].as_array().unwrap().len(),
        2,
        "{status}"
    );
    env.write("new-rule.tmp", "no longer excluded");
    env.write("new-rule.log", "excluded now");
    fs::write(photos.join("q.jpg"), "another photo").unwrap();
    env.sync();

    let listed = env.list_by_path(&["--all"]);
    for kept in ["before.txt", "during.txt", "new-rule.tmp"] {
        assert_live_and_recoverable(entry(&listed, &env.json_path(kept)));
    }
    for photo in ["p.jpg", "q.jpg"] {
        let path = photos.join(photo).to_str().unwrap().to_owned();
        assert_live_and_recoverable(entry(&listed, &path));
    }
    let excluded = entry(&listed, &env.json_path("new-rule.log"));
    assert!(!flag(excluded, "recoverable"), "{excluded}");
    assert_eq!(excluded["reason"], "excluded by the rule *.log");
}

#[test]
fn a_mistake_in_reloaded_settings_keeps_the_ones_in_use_and_says_where() {
    let mut env = TestEnv::new();
    let config = env.root.join("config.toml");
    fs::write(&config, settings(&env, &[&env.share], "*.tmp")).unwrap();
    env.start_daemon_with(&["--config", config.to_str().unwrap()]);
    env.sync();
    let read_at = env.status_json()["settings_read_at"].clone();

    fs::write(&config, "vault = \"/v\"\nprotekt = [\"/srv\"]\n").unwrap();
    env.reload_daemon();
    let status = wait_for_reload(&env, &read_at);
    let alerts = status["alerts"].as_array().unwrap();
    let alert = alerts
        .iter()
        .find(|a| a["kind"] == "settings")
        .unwrap_or_else(|| panic!("no settings alert: {status}"));
    let message = alert["message"].as_str().unwrap();
    assert!(
        message.contains("line 2") && message.contains("protekt"),
        "{message}"
    );
    assert!(message.contains("still in use"), "{message}");

    // Protection goes on with the old rules.
    env.write("still.txt", "protected");
    env.write("still.tmp", "still excluded");
    env.sync();
    let listed = env.list_by_path(&["--all"]);
    assert_live_and_recoverable(entry(&listed, &env.json_path("still.txt")));
    assert!(!flag(
        entry(&listed, &env.json_path("still.tmp")),
        "recoverable"
    ));

    // Mended, the alert goes.
    fs::write(&config, settings(&env, &[&env.share], "*.tmp")).unwrap();
    let read_at = env.status_json()["settings_read_at"].clone();
    env.reload_daemon();
    let status = wait_for_reload(&env, &read_at);
    assert!(
        !status["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["kind"] == "settings"),
        "{status}"
    );
}

#[test]
fn a_folder_table_gives_that_folder_its_own_rules() {
    let mut env = TestEnv::new();
    let photos = env.root.join("photos");
    fs::create_dir(&photos).unwrap();
    let config = env.root.join("config.toml");
    fs::write(
        &config,
        format!(
            "{}\n[[folder]]\npath = {:?}\nexclude = [\"*.xmp\"]\nmax_file_size = \"10B\"\n",
            settings(&env, &[&env.share], "*.tmp"),
            photos
        ),
    )
    .unwrap();
    env.start_daemon_with(&["--config", config.to_str().unwrap()]);
    for dir in [&env.share, &photos] {
        fs::write(dir.join("a.xmp"), "sidecar").unwrap();
        fs::write(dir.join("b.tmp"), "scratch").unwrap();
        fs::write(dir.join("big.jpg"), "more than ten bytes").unwrap();
    }
    env.sync();
    let listed = env.list_by_path(&["--all"]);
    let reason = |dir: &std::path::Path, name: &str| {
        entry(&listed, dir.join(name).to_str().unwrap())["reason"].clone()
    };
    // The share: only the common rules.
    assert!(reason(&env.share, "a.xmp").is_null());
    assert_eq!(reason(&env.share, "b.tmp"), "excluded by the rule *.tmp");
    assert!(reason(&env.share, "big.jpg").is_null());
    // Photos: the common rules, its own, and its own size limit.
    assert_eq!(reason(&photos, "a.xmp"), "excluded by the rule *.xmp");
    assert_eq!(reason(&photos, "b.tmp"), "excluded by the rule *.tmp");
    assert_eq!(
        reason(&photos, "big.jpg"),
        "larger than the capture limit (10 B)"
    );
}

/// A file kept out by a rule gets no event when the rule goes: the reload itself
/// copies it, so a deletion before its next change does not lose it.
#[test]
fn a_file_a_reload_no_longer_excludes_is_copied_at_once() {
    let mut env = TestEnv::new();
    let config = env.root.join("config.toml");
    fs::write(&config, settings(&env, &[&env.share], "*.tmp")).unwrap();
    env.start_daemon_with(&["--config", config.to_str().unwrap()]);
    env.write("draft.tmp", "kept out by the first rules");
    env.sync();
    let read_at = env.status_json()["settings_read_at"].clone();

    fs::write(&config, settings(&env, &[&env.share], "*.log")).unwrap();
    env.reload_daemon();
    wait_for_reload(&env, &read_at);
    env.remove_and_sync(&["draft.tmp"]);

    let deleted = env.list_by_path(&[]);
    crate::common::assert_deleted_and_recoverable(entry(&deleted, &env.json_path("draft.tmp")));
}

#[test]
fn a_settings_file_gone_at_a_reload_is_named_whole_in_the_warning() {
    let mut env = TestEnv::new();
    let folder = env
        .root
        .join("Settings of the office server/kept by the owner of the shop, do not move");
    fs::create_dir_all(&folder).unwrap();
    let config = folder.join("config.toml");
    assert!(config.to_str().unwrap().len() > 80);
    fs::write(&config, settings(&env, &[&env.share], "*.tmp")).unwrap();
    env.start_daemon_with(&["--config", config.to_str().unwrap()]);
    env.sync();
    let read_at = env.status_json()["settings_read_at"].clone();

    fs::remove_file(&config).unwrap();
    env.reload_daemon();
    let json = wait_for_reload(&env, &read_at);
    let message = json["alerts"][0]["message"].as_str().unwrap_or_default();
    assert!(message.contains(config.to_str().unwrap()), "{json}");
    let status = env.run_ok(&["status"]);
    assert!(status.starts_with("WARNING"), "{status}");
    let path = config.to_str().unwrap();
    assert!(status.lines().any(|l| l.contains(path)), "{status}");
}
