//! `undelete doctor`: prints the checks of `diagnosis`, each OK or PROBLEM, and
//! for a problem the fix. Exit code 0 when every check is OK, 1 otherwise.

use std::path::Path;
use std::process::ExitCode;

use serde_json::json;

use crate::config::Config;
use crate::diagnosis::{Check, Facts, diagnose};
use crate::index::IndexError;
use crate::vault::Vault;
use crate::words::display_path;

pub fn run(config: &Config, as_json: bool) -> anyhow::Result<ExitCode> {
    // Not ours to read (doctor run without sudo): say so as other commands do,
    // rather than report a vault that is merely hidden as missing.
    if let Err(e) = std::fs::read_dir(&config.vault)
        && e.kind() == std::io::ErrorKind::PermissionDenied
    {
        super::open_vault_folder(config)?;
    }
    let mut facts = Facts::start(config);
    if facts.vault_found {
        match super::open_vault(config) {
            Ok((vault, index)) => facts.read(&vault, Ok(index)),
            Err(err) => {
                let broken = err.downcast::<IndexError>()?;
                let vault = Vault::open_existing(&config.vault)?;
                facts.read(&vault, Err(broken));
            }
        }
    }
    let checks = diagnose(&facts);
    let problems = checks.iter().filter(|c| !c.ok).count();
    if as_json {
        let value = json!({
            "vault": facts.vault,
            "ok": problems == 0,
            "problems": problems,
            "checks": checks,
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        print!("{}", text(&facts.vault, &checks));
    }
    Ok(if problems == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Width of "PROBLEM" plus two spaces: messages and fixes line up after it.
const INDENT: &str = "         ";

fn text(vault: &Path, checks: &[Check]) -> String {
    let mut out = format!("Checking the vault {}\n\n", display_path(vault));
    for check in checks {
        let label = if check.ok { "OK       " } else { "PROBLEM  " };
        out.push_str(&fill(&check.message, label));
        if let Some(fix) = &check.fix {
            out.push_str(&fill(&format!("What to do: {fix}"), INDENT));
        }
        for command in &check.commands {
            out.push_str(&format!("{INDENT}    {command}\n"));
        }
    }
    let problems = checks.iter().filter(|c| !c.ok).count();
    out.push('\n');
    out.push_str(&match problems {
        0 => format!(
            "All {} checks are OK: protection is working.\n",
            checks.len()
        ),
        1 => "1 problem found. Fix it, then run undelete doctor again.\n".to_owned(),
        n => format!("{n} problems found. Fix them, then run undelete doctor again.\n"),
    });
    out
}

/// Wraps to 80 columns after `first` (the label), later lines indented under it.
/// Paths are never split.
fn fill(text: &str, first: &str) -> String {
    let options = textwrap::Options::new(80)
        .initial_indent(first)
        .subsequent_indent(INDENT)
        .break_words(false)
        .word_splitter(textwrap::WordSplitter::NoHyphenation);
    format!("{}\n", textwrap::fill(text, options))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnosis::tests::{healthy, recorded};

    #[test]
    fn the_text_fits_80_columns() {
        let mut facts = healthy();
        facts.daemon_running = false;
        facts.watch_limit = Some(100);
        facts.index_problems = vec![
            "*** in database main *** Tree 4 page 4: btreeInitPage() returns error code 11".into(),
        ];
        recorded(&mut facts).unprotected = vec![("unreadable".into(), 2)];
        let checks = diagnose(&facts);
        let out = text(&facts.vault, &checks);
        for line in out.lines() {
            assert!(line.chars().count() <= 80, "{line:?} in\n{out}");
        }
        assert!(
            out.contains("\nPROBLEM  The undelete service is not running"),
            "{out}"
        );
        assert!(out.ends_with("Fix them, then run undelete doctor again.\n"));
    }
}
