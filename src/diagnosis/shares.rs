//! Whether office users can bring back their own files from Windows Explorer:
//! Samba's shares of the protected folders, and the mount their Previous Versions
//! come from. No I/O here: the shares were read with the other facts.

use std::path::Path;

use super::fix::undelete;
use super::{Check, Facts};
use crate::samba::{self, Offered, ShareState};
use crate::words::{display_path, quote};

/// Whether office users can bring back files themselves from Explorer: a check only
/// where Samba shares a protected folder. A share without Previous Versions is
/// told on an OK line with how to offer them (protection works without them); one
/// set up wrongly, or without the mount it reads, is a problem.
pub(super) fn previous_versions_check(facts: &Facts) -> Option<Check> {
    let name = "previous_versions";
    let shares = facts.shares.as_ref().filter(|s| !s.is_empty())?;
    let share_words = |s: &ShareState| {
        format!(
            "Samba's share [{}] ({})",
            s.share.name,
            display_path(&s.share.path)
        )
    };
    let mut problems = Vec::new();
    let mut commands = Vec::new();
    let mut not_mounted = None;
    for state in shares {
        match &state.offered {
            Offered::Wrong(lacks) => {
                let lacks: Vec<String> = lacks.iter().map(ToString::to_string).collect();
                problems.push(format!(
                    "{} is set up for Previous Versions, but {}.",
                    share_words(state),
                    lacks.join(", ")
                ));
                commands.push(undelete(
                    &facts.vault,
                    &format!("samba-config {}", quote(&state.share.path)),
                ));
            }
            Offered::NotMounted(dir) => {
                problems.push(format!(
                    "{} offers Previous Versions from {}, but the vault is not mounted \
                     there: Explorer shows no older versions.",
                    share_words(state),
                    display_path(dir)
                ));
                not_mounted = Some(dir.clone());
            }
            Offered::NotSetUp | Offered::Working(_) => {}
        }
    }
    if !problems.is_empty() {
        let mut fix = Vec::new();
        if !commands.is_empty() {
            fix.push(
                "Put the lines the first command below prints into the share's section of \
                 /etc/samba/smb.conf, then reload Samba (smbcontrol)."
                    .to_owned(),
            );
            commands.push("sudo smbcontrol all reload-config".into());
        }
        if let Some(dir) = not_mounted {
            if dir == Path::new(samba::DEFAULT_MOUNT_POINT) {
                fix.push("Start the mount service, and have it start at every boot.".into());
                commands.push("sudo systemctl enable --now undelete-mount".into());
            } else {
                fix.push(format!(
                    "Mount the vault there (it runs until stopped): {}",
                    undelete(&facts.vault, &format!("mount {}", quote(&dir)))
                ));
            }
        }
        return Some(Check::problem(
            name,
            problems.join(" "),
            fix.join(" "),
            commands,
        ));
    }
    let mut said = Vec::new();
    for state in shares {
        said.push(match &state.offered {
            Offered::Working(dir) => format!(
                "{} offers Previous Versions from {}: office users can bring back \
                 their own files in Explorer.",
                share_words(state),
                display_path(dir)
            ),
            _ => format!(
                "{} does not offer Previous Versions, so office users cannot bring back \
                 files themselves. To offer them: {}",
                share_words(state),
                undelete(
                    &facts.vault,
                    &format!("samba-config {}", quote(&state.share.path))
                )
            ),
        });
    }
    Some(Check::ok(name, said.join(" ")))
}
