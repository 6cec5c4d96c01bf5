//! Versions of overwritten files, bringing a file back as it was, and the
//! retention purge (which never removes the only copy of a file that exists).

use std::fs;

use serde_json::Value;

use crate::common::{TestEnv, entry, flag, output_text};

fn versions_json(env: &TestEnv, relative: &str) -> Vec<Value> {
    let out = env.run_ok(&["versions", env.path(relative).to_str().unwrap(), "--json"]);
    serde_json::from_str::<Value>(&out)
        .expect("versions --json is JSON")
        .as_array()
        .expect("an array")
        .clone()
}

/// Saved three times: first written, then overwritten in place, then saved the way
/// office suites do (a temporary file renamed over the old one).
fn report_saved_three_ways(env: &mut TestEnv) {
    env.write("office/report.docx", "version one");
    env.start_daemon_and_sync(&[]);
    fs::write(env.path("office/report.docx"), "version two, longer").unwrap();
    env.sync();
    // Written whole before it arrives, so the daemon never sees it half-written
    // (an editor's temporary file seen empty would be one more version).
    let staged = env.root.join("staged");
    fs::write(&staged, "version three, the longest").unwrap();
    fs::rename(&staged, env.path("office/~report.docx.tmp")).unwrap();
    fs::rename(
        env.path("office/~report.docx.tmp"),
        env.path("office/report.docx"),
    )
    .unwrap();
    env.sync();
}

#[test]
fn overwritten_and_renamed_over_files_keep_their_older_versions() {
    let mut env = TestEnv::new();
    report_saved_three_ways(&mut env);
    let versions = versions_json(&env, "office/report.docx");
    let sizes: Vec<u64> = versions
        .iter()
        .map(|v| v["size"].as_u64().unwrap())
        .collect();
    assert_eq!(sizes, [11, 19, 26], "{versions:#?}");
    assert!(
        versions.iter().all(|v| flag(v, "recoverable")),
        "{versions:#?}"
    );
    assert_eq!(
        versions
            .iter()
            .map(|v| flag(v, "current"))
            .collect::<Vec<_>>(),
        [false, false, true]
    );
    let text = env.run_ok(&["versions", env.path("office/report.docx").to_str().unwrap()]);
    assert!(text.contains("the current one"), "{text}");
    assert!(
        text.contains("--as-of"),
        "each older version says how: {text}"
    );

    // Each older version comes back as it was, at the moment it was current.
    for (n, want) in [(0, "version one"), (1, "version two, longer")] {
        let out = env.root.join(format!("as-of-{n}"));
        let seen = versions[n]["seen_at"].as_str().unwrap();
        let restored = env
            .command()
            .args(["restore"])
            .arg(env.path("office/report.docx"))
            .args(["--as-of", seen, "--to"])
            .arg(&out)
            .output()
            .unwrap();
        assert!(restored.status.success(), "{}", output_text(&restored));
        assert_eq!(
            fs::read_to_string(out.join("office/report.docx")).unwrap(),
            want
        );
    }
    // And the whole folder as it was, in place: nothing is overwritten, the old
    // version goes beside the current one.
    let seen = versions[0]["seen_at"].as_str().unwrap();
    let out = env.run(&[
        "restore",
        "--under",
        env.path("office").to_str().unwrap(),
        "--as-of",
        seen,
    ]);
    assert!(out.status.success(), "{}", output_text(&out));
    assert_eq!(
        fs::read_to_string(env.path("office/report.docx")).unwrap(),
        "version three, the longest"
    );
    let beside: Vec<String> = fs::read_dir(env.path("office"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("report (as of"))
        .collect();
    assert_eq!(beside.len(), 1, "{beside:?}");
    assert_eq!(
        fs::read_to_string(env.path("office").join(&beside[0])).unwrap(),
        "version one"
    );
}

#[test]
fn purge_keeps_the_only_copy_of_every_live_file_and_says_why_others_are_gone() {
    let mut env = TestEnv::new();
    env.write("keep.txt", "still here");
    env.write("twin-live.txt", "same bytes");
    env.write("twin-gone.txt", "same bytes");
    env.write("gone.txt", "deleted long ago");
    env.start_daemon_and_sync(&[]);
    env.remove_and_sync(&["gone.txt", "twin-gone.txt"]);
    env.stop_daemon();
    let objects_before = env.object_count();

    // The default rules keep everything deleted within 30 days.
    let out = env.run_ok(&["purge", "--dry-run"]);
    assert!(out.contains("Nothing needs purging"), "{out}");
    let out = env.run_ok(&["purge", "--dry-run", "--keep-deleted", "0s"]);
    assert!(out.contains("2 older copies to purge"), "{out}");
    assert!(out.contains("nothing was changed"), "{out}");
    assert_eq!(
        env.object_count(),
        objects_before,
        "a dry run changes nothing"
    );

    let out = env.run_ok(&["purge", "--keep-deleted", "0s"]);
    assert!(out.contains("Purged 2 older copies"), "{out}");
    // "gone.txt" had the only reference to its object; "twin-gone.txt" shares its
    // bytes with a live file, whose copy stays.
    assert_eq!(env.object_count(), objects_before - 1);
    let listed = env.list_by_path(&["--all"]);
    for live in ["keep.txt", "twin-live.txt"] {
        crate::common::assert_live_and_recoverable(entry(&listed, &env.json_path(live)));
    }
    let gone = entry(&listed, &env.json_path("gone.txt"));
    assert!(!flag(gone, "recoverable"), "{gone}");
    assert_eq!(gone["reason_code"], "purged", "{gone}");
    assert!(
        gone["reason"]
            .as_str()
            .unwrap()
            .starts_with("purged by the retention rules on "),
        "{gone}"
    );
    let verify_clean = |env: &TestEnv| {
        let out = env.run_ok(&["verify"]);
        assert!(
            !out.contains("damaged") && !out.contains("missing"),
            "{out}"
        );
    };
    verify_clean(&env);
    // The journal knows about the purge: an index rebuilt from it says the same.
    env.run_ok(&["rebuild-index"]);
    let rebuilt = env.list_by_path(&["--all"]);
    assert_eq!(
        entry(&rebuilt, &env.json_path("gone.txt"))["reason_code"],
        "purged"
    );
    verify_clean(&env);

    // The live files' copies are whole: deleted now, they come back.
    env.start_daemon(&[]);
    fs::remove_file(env.path("twin-live.txt")).unwrap();
    env.remove_and_sync(&["keep.txt"]);
    let out = env.run(&["restore", "--under", env.share.to_str().unwrap(), "--json"]);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["recovered"], 2, "{report}");
    assert_eq!(
        fs::read_to_string(env.path("twin-live.txt")).unwrap(),
        "same bytes"
    );
    let purged: Vec<&Value> = report["files"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["reason_code"] == "purged")
        .collect();
    assert_eq!(
        purged.len(),
        2,
        "the report says why, not 'unknown': {report}"
    );
    assert_eq!(
        report["complete"], true,
        "purging is a rule, not a failure: {report}"
    );
}

#[test]
fn purge_keeps_the_newest_older_versions_and_runs_in_the_daemon_when_it_is_up() {
    let mut env = TestEnv::new();
    report_saved_three_ways(&mut env);
    // The daemon is running: the purge is done by it, between two batches.
    let out = env.run_ok(&["purge", "--keep-versions", "1"]);
    assert!(out.contains("Purged 1 older copy"), "{out}");
    let versions = versions_json(&env, "office/report.docx");
    let kept: Vec<bool> = versions.iter().map(|v| flag(v, "recoverable")).collect();
    assert_eq!(
        kept,
        [false, true, true],
        "the oldest goes first: {versions:#?}"
    );
    assert_eq!(versions[0]["reason_code"], "purged");
    // Protection goes on afterwards.
    env.write("office/new.txt", "new");
    env.sync();
    crate::common::assert_live_and_recoverable(entry(
        &env.list_by_path(&["--all"]),
        &env.json_path("office/new.txt"),
    ));
}

/// Saved as A, B, A again, then C: the two A versions share one copy. Purging the
/// oldest must not purge the newer A, also in an index rebuilt from the journal.
#[test]
fn a_rebuilt_index_purges_only_the_version_that_was_purged() {
    let mut env = TestEnv::new();
    env.write("notes.txt", "A");
    env.start_daemon_and_sync(&[]);
    for content in ["B", "A", "C"] {
        fs::write(env.path("notes.txt"), content).unwrap();
        env.sync();
    }
    env.stop_daemon();
    let out = env.run_ok(&["purge", "--keep-versions", "2"]);
    assert!(out.contains("Purged 1 older copy"), "{out}");
    let recoverable = |env: &TestEnv| -> Vec<bool> {
        versions_json(env, "notes.txt")
            .iter()
            .map(|v| flag(v, "recoverable"))
            .collect()
    };
    assert_eq!(recoverable(&env), [false, true, true, true]);
    env.run_ok(&["rebuild-index"]);
    assert_eq!(recoverable(&env), [false, true, true, true]);
}

/// Without rules on its command line, `purge` uses the service's own, which may come
/// from flags this command never sees, not the defaults.
#[test]
fn purge_without_rules_uses_the_services_own() {
    let mut env = TestEnv::new();
    env.write("notes.txt", "version 0");
    env.start_daemon_and_sync(&["--keep-versions", "50"]);
    // More older versions than the default rules keep (10).
    for n in 1..=12 {
        fs::write(env.path("notes.txt"), format!("version {n}")).unwrap();
        env.sync();
    }
    let out = env.run_ok(&["purge"]);
    assert!(out.contains("Nothing needs purging"), "{out}");
    let versions = versions_json(&env, "notes.txt");
    assert_eq!(versions.len(), 13, "{versions:#?}");
    assert!(
        versions.iter().all(|v| flag(v, "recoverable")),
        "{versions:#?}"
    );
}
