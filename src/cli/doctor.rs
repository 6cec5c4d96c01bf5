//! `undelete doctor`: prints the checks of `diagnosis`, each OK or PROBLEM, and
//! for a problem the fix. Exit code 0 when every check is OK, 1 otherwise.

use std::path::Path;
use std::process::ExitCode;

use serde_json::json;

use crate::config::Config;
use crate::diagnosis::{Check, Facts, Started, diagnose};
use crate::index::IndexError;
use crate::samba::Offered;
use crate::vault::Vault;
use crate::words::{display_path, whole_in, wrap_after};

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
        print!("{}", text(&facts, &checks));
    }
    Ok(if problems == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Width of "PROBLEM" plus two spaces: messages and fixes line up after it.
const INDENT: &str = "         ";

fn text(facts: &Facts, checks: &[Check]) -> String {
    let mut out = format!("Checking the vault {}\n\n", display_path(&facts.vault));
    // The paths the checks name, each kept whole on a line however its words wrap.
    let paths = named_paths(facts);
    let fill = |text: &str, label: &str| {
        format!("{}\n", wrap_after(label, &whole_in(text, &paths), INDENT))
    };
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

/// The paths the checks can name, as they show them: the vault, the protected
/// folders, the settings the service was started with, Samba's shares of them and
/// where their Previous Versions come from, and those the alerts name.
fn named_paths(facts: &Facts) -> Vec<String> {
    let roots = facts
        .recorded
        .iter()
        .flat_map(|r| &r.roots)
        .map(|r| r.path.as_path());
    let settings = match &facts.started {
        Started::Service { settings } | Started::ByHand { settings, .. } => {
            Some(settings.as_path())
        }
        Started::Unknown | Started::Flags { .. } => None,
    };
    let shares = facts.shares.iter().flatten().flat_map(|s| {
        let offered = match &s.offered {
            Offered::NotMounted(dir) | Offered::Working(dir) => Some(dir.as_path()),
            Offered::NotSetUp | Offered::Wrong(_) => None,
        };
        std::iter::once(s.share.path.as_path()).chain(offered)
    });
    let alerts = facts
        .recorded
        .iter()
        .flat_map(|r| &r.alerts)
        .flat_map(|a| a.paths.iter().cloned());
    std::iter::once(facts.vault.as_path())
        .chain(roots)
        .chain(settings)
        .chain(shares)
        .map(|p: &Path| display_path(p))
        .chain(alerts)
        .collect()
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
        let out = text(&facts, &checks);
        for line in out.lines() {
            assert!(line.chars().count() <= 80, "{line:?} in\n{out}");
        }
        assert!(
            out.contains("\nPROBLEM  The undelete service is not running"),
            "{out}"
        );
        assert!(out.ends_with("Fix them, then run undelete doctor again.\n"));
    }

    #[test]
    fn a_protected_folder_with_spaces_is_never_split_across_lines() {
        let folder = "/srv/share/Office files/Accounts and tax returns/Year 2025";
        let mut facts = healthy();
        recorded(&mut facts).roots = vec![crate::diagnosis::RootState {
            path: folder.into(),
            active: true,
            on_disk: false,
        }];
        let out = text(&facts, &diagnose(&facts));
        assert!(out.lines().any(|l| l.contains(folder)), "{out}");
        assert!(out.lines().all(|l| l.chars().count() <= 80), "{out}");
    }

    #[test]
    fn a_samba_share_and_its_mount_with_spaces_are_never_split_across_lines() {
        use crate::samba::{Share, ShareState};
        let shared = "/srv/share/Office files/Accounts and tax returns/Year 2025 final";
        let mount = "/mnt/Previous versions of the office share/kept by undelete";
        let share = |offered| ShareState {
            share: Share {
                name: "office".into(),
                path: shared.into(),
                settings: Vec::new(),
            },
            offered,
        };
        for offered in [Offered::NotSetUp, Offered::NotMounted(mount.into())] {
            let mut facts = healthy();
            facts.shares = Some(vec![share(offered)]);
            let out = text(&facts, &diagnose(&facts));
            assert!(out.lines().any(|l| l.contains(shared)), "{out}");
            assert!(out.lines().all(|l| l.chars().count() <= 80), "{out}");
            if out.contains("is not mounted") {
                assert!(out.lines().any(|l| l.contains(mount)), "{out}");
            }
        }
    }

    #[test]
    fn a_path_an_alert_names_is_never_split_across_lines() {
        let folder = "/srv/share/Office files/Accounts and tax returns/Year 2025 final";
        let mut facts = healthy();
        let (message, paths) = crate::words::marked_spans(&format!(
            "The system limit on watched folders (8192) was reached at {}. Changes in \
             folders beyond the limit are found by a scan every 5 minutes instead of at once.",
            crate::words::whole_path(Path::new(folder))
        ));
        recorded(&mut facts).alerts = vec![crate::model::Alert {
            id: 1,
            kind: crate::model::AlertKind::Settings,
            message,
            paths,
            raised_at: facts.now,
            cleared_at: None,
        }];
        let out = text(&facts, &diagnose(&facts));
        assert!(out.contains("was reached at"), "{out}");
        assert!(out.lines().any(|l| l.contains(folder)), "{out}");
    }
}
