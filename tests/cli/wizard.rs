//! The guided restore as a customer sees it on a real 80×24 terminal: the last
//! screen holds what is read aloud, lines wrap between words, and a typo is
//! asked again instead of ending the call.

use std::fs;

use crate::common::pty::Terminal;
use crate::common::{BIN, TestEnv, content};

const ROWS: usize = 24;
const COLUMNS: usize = 80;

/// `undelete emergency FLAGS` in a terminal of 24 rows and 80 columns.
fn emergency(env: &TestEnv, flags: &str) -> Terminal {
    Terminal::start(&format!(
        "stty rows {ROWS} cols {COLUMNS}; exec {BIN} --vault {} emergency {flags}",
        env.vault.display()
    ))
}

/// The rows the terminal shows last: each line takes as many rows as it needs
/// at 80 columns.
fn last_rows(screen: &str, rows: usize) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for line in screen.trim_end().lines() {
        let chars: Vec<char> = line.chars().collect();
        if chars.is_empty() {
            out.push(String::new());
        }
        for row in chars.chunks(COLUMNS) {
            out.push(row.iter().collect());
        }
    }
    let skip = out.len().saturating_sub(rows);
    out.split_off(skip)
}

/// A folder deleted with files lost for every common reason: too large, excluded
/// by two rules for temporary files, a damaged copy, and a program's lock file.
fn a_bad_night() -> TestEnv {
    let mut env = TestEnv::new();
    let folder = "Clients/Dupont et Fils/Concours régional";
    for i in 0..30 {
        env.write(format!("{folder}/IMG_{i:04}.jpg"), content(i, 1500));
    }
    for i in 0..3 {
        env.write(format!("{folder}/RAW_{i:04}.cr2"), content(100 + i, 5000));
    }
    env.write(format!("{folder}/edit.tmp"), "scratch");
    env.write(format!("{folder}/Thumbs.db"), "thumbs");
    env.write(format!("{folder}/~$contract.docx"), "lock");
    env.write(format!("{folder}/contract.pdf"), "the signed contract");
    env.start_daemon_and_sync(&[
        "--max-file-size",
        "2KiB",
        "--exclude",
        "*.tmp",
        "--exclude",
        "Thumbs.db",
    ]);
    env.remove_and_sync(&["Clients"]);
    fs::write(
        env.object_path(b"the signed contract"),
        "the signed c0ntract",
    )
    .unwrap();
    env
}

#[test]
fn the_wizards_last_screen_on_80_by_24_holds_the_count_the_kinds_and_both_commands() {
    let env = a_bad_night();
    let mut term = emergency(&env, "");
    for question in ["Press Enter for 1:", "Your choice [1]:", "[Y/n]:"] {
        term.expect(question);
        term.send("\n");
    }
    let (_, screen) = term.finish();
    let last = last_rows(&screen, ROWS).join("\n");
    for wanted in [
        "Recovered 30 of 36 files",
        "3 were larger than the 2.0 KiB capture limit",
        "2 were excluded by the rules *.tmp and Thumbs.db: temporary files",
        "Lost, by kind: 3 images, 1 document, 2 other files.",
        "1 lock file of a program was left out on purpose",
        "    undelete --vault",
        " report ",
        " emergency --yes --incident ",
    ] {
        assert!(
            last.contains(wanted),
            "the last {ROWS} rows lack {wanted:?}:\n{last}\n\nthe whole screen:\n{screen}"
        );
    }
    // Every line fits, wrapped between words; only a command, or a path on a line
    // of its own, may be longer: whole, so it can be typed as shown.
    for line in screen.lines() {
        if line.chars().count() > COLUMNS {
            let alone = line.trim_start();
            assert!(
                alone.starts_with("undelete ") || alone.starts_with('/'),
                "too wide: {line:?}"
            );
        }
    }
    // Step 2's incident lines fit too, the long folder name moved whole.
    let step2 = &screen[screen.find("Step 2 of 5").unwrap()..screen.find("Step 3 of 5").unwrap()];
    assert!(
        step2.contains("Dupont et Fils/Concours régional\n"),
        "{step2}"
    );
    assert!(
        step2.lines().all(|l| l.chars().count() <= COLUMNS),
        "{step2}"
    );
}

#[test]
fn a_typo_at_any_question_is_asked_again_saying_what_is_accepted() {
    let env = a_bad_night();
    let mut term = emergency(&env, "");
    term.expect("Press Enter for 1:");
    term.send("x\n");
    term.expect("Please type 1, s or f, or press Enter for 1.");
    term.expect("Press Enter for 1:");
    term.send("\n");
    term.expect("Your choice [1]:");
    term.send("3\n");
    term.expect("Please type 1 or 2, or press Enter for 1.");
    term.expect("Your choice [1]:");
    term.send("1\n");
    term.expect("[Y/n]:");
    term.send("maybe\n");
    term.expect("Please press Enter to start, or type n to stop.");
    term.expect("[Y/n]:");
    term.send("\n");
    let (status, screen) = term.finish();
    assert!(screen.contains("Recovered 30 of 36 files"), "{screen}");
    assert!(!status.success(), "a damaged copy fails the run: {screen}");
    assert!(!screen.contains("nothing was changed"), "{screen}");
}
