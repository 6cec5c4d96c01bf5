//! Names that are bytes, not text: Linux allows anything but '/' and NUL.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use crate::common::*;

fn odd_names() -> Vec<(&'static str, Vec<u8>)> {
    let mut long = vec![b'n'; 251];
    long.extend_from_slice(b".txt");
    assert_eq!(long.len(), 255);
    vec![
        ("latin-1", b"caf\xe9.txt".to_vec()),
        ("newline", b"line\nbreak.txt".to_vec()),
        ("255 bytes", long),
        ("dash", b"-rf.txt".to_vec()),
        ("double dash", b"--help".to_vec()),
        ("quote and backslash", b"say \"hi\" \\ bye.txt".to_vec()),
        ("invalid UTF-8 folder", b"dir\xff\xfe/inside.txt".to_vec()),
    ]
}

#[test]
fn odd_names_are_captured_and_listed_exactly() {
    let mut env = TestEnv::new();
    // One set found by the start-up scan, one by events.
    let mut files: Vec<(String, PathBuf, Vec<u8>)> = Vec::new();
    for (set, when) in [("before", 0), ("during", 1)] {
        for (n, (what, name)) in odd_names().into_iter().enumerate() {
            let mut bytes = format!("{set}/").into_bytes();
            bytes.extend_from_slice(&name);
            let rel = PathBuf::from(OsStr::from_bytes(&bytes));
            files.push((format!("{what} ({set})"), rel, content(100 * when + n, 50)));
        }
    }
    let (before, during): (Vec<_>, Vec<_>) = files
        .iter()
        .partition(|(what, _, _)| what.ends_with("(before)"));
    for (_, rel, data) in &before {
        env.write(rel, data);
    }
    env.start_daemon(&[]);
    // Folders first, so this test is about names, not about new folders
    // (files_made_in_a_brand_new_folder_at_once_are_captured is).
    for (_, rel, _) in &during {
        fs::create_dir_all(env.path(rel).parent().unwrap()).unwrap();
    }
    env.sync();
    for (_, rel, data) in &during {
        env.write(rel, data);
    }
    env.sync();

    let find = |listed: &'_ [serde_json::Value], full: &std::path::Path| -> Option<usize> {
        match full.to_str() {
            Some(text) => listed.iter().position(|e| e["path"] == text),
            None => listed
                .iter()
                .position(|e| e["path_bytes"] == path_hex(full)),
        }
    };
    let check = |listed: &[serde_json::Value], deleted: bool| {
        let missing: Vec<&String> = files
            .iter()
            .filter(|(_, rel, _)| find(listed, &env.path(rel)).is_none())
            .map(|(what, _, _)| what)
            .collect();
        assert!(missing.is_empty(), "not listed: {missing:?}\n{listed:#?}");
        assert_eq!(listed.len(), files.len(), "{listed:#?}");
        for (what, rel, data) in &files {
            let full = env.path(rel);
            let bytes = full.as_os_str().as_bytes();
            let e = match std::str::from_utf8(bytes) {
                Ok(text) => {
                    let e = listed
                        .iter()
                        .find(|e| e["path"] == text)
                        .unwrap_or_else(|| panic!("{what}: {text:?} is not listed"));
                    assert!(
                        e.get("path_bytes").is_none(),
                        "{what}: a UTF-8 name needs no path_bytes: {e}"
                    );
                    e
                }
                Err(_) => listed
                    .iter()
                    .find(|e| e["path_bytes"] == path_hex(&full))
                    .unwrap_or_else(|| {
                        panic!("{what}: no entry has path_bytes {}", path_hex(&full))
                    }),
            };
            if deleted {
                assert_deleted_and_recoverable(e);
            } else {
                assert_live_and_recoverable(e);
            }
            assert_eq!(e["size"], data.len(), "{what}: {e}");
            assert!(env.object_path(data).is_file(), "{what}: not in the vault");
        }
    };
    check(&env.list_json(&["--all"]), false);

    // The escaped text form, for people (README: quotes, \xNN and \n).
    let text = env.run_ok(&["list", "--all"]);
    let share = env.share.to_str().unwrap();
    for expected in [
        format!("\"{share}/before/caf\\xe9.txt\""),
        format!("\"{share}/during/line\\nbreak.txt\""),
        format!("\"{share}/during/dir\\xff\\xfe/inside.txt\""),
    ] {
        assert!(
            text.contains(&expected),
            "list --all should show {expected}:\n{text}"
        );
    }
    assert!(
        !text.lines().any(|l| l.starts_with("break.txt")),
        "a newline in a name must not split the line:\n{text}"
    );

    fs::remove_dir_all(env.path("before")).unwrap();
    env.remove_and_sync(&["during"]);
    check(&env.list_json(&[]), true);
}
