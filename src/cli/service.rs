//! `undelete install-service`: puts the systemd units (the service, and the mount
//! for Previous Versions), an example settings file and the vault folder in place,
//! and says what is left to do.
//!
//! Plan, then execute: `plan` looks at what is already there, `execute` writes.
//! The settings file is never overwritten, so installing again (after an
//! upgrade) keeps the customer's settings; the units are ours and are replaced,
//! but one that differs from ours (edited by hand) is kept beside it first.
//! systemctl is run only for the real system (`--root /` with systemd running);
//! for any other root the commands are printed, to be run on that system.

use std::fs::{self, DirBuilder, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::Context;
use clap::Args;

use crate::words::display_path;

/// The systemd unit, one source with `contrib/`.
pub const UNIT: &str = include_str!("../../contrib/undelete.service");
/// The mount's own unit (see its comments for why it is not part of the service).
pub const MOUNT_UNIT: &str = include_str!("../../contrib/undelete-mount.service");
/// The commented example settings, one source with `docs/`.
pub const EXAMPLE_CONFIG: &str = include_str!("../../docs/config.example.toml");

const CONFIG_PATH: &str = "etc/undelete/config.toml";
const VAULT_PATH: &str = "var/lib/undelete";
/// Where the unit's ExecStart looks for the program.
const PROGRAM_PATH: &str = "usr/local/bin/undelete";

#[derive(Debug, Args)]
pub struct InstallArgs {
    /// Install into this folder as if it were / (for packages and images);
    /// systemctl is then left for you to run on that system.
    #[arg(long, value_name = "DIR", default_value = "/")]
    root: PathBuf,
}

/// What installing will do, decided before anything is written.
#[derive(Debug)]
struct InstallPlan {
    /// The service's unit, then the mount's.
    units: Vec<UnitPlan>,
    config: PathBuf,
    /// False when a settings file is there already: it is kept as it is.
    write_config: bool,
    vault: PathBuf,
    create_vault: bool,
    /// The program is not where the unit starts it from.
    program_missing: Option<PathBuf>,
    /// Installing into the running system, managed by systemd.
    run_systemctl: bool,
}

pub fn run(args: &InstallArgs) -> anyhow::Result<ExitCode> {
    let plan = plan(&args.root);
    execute(&plan)?;
    let reloaded = plan.run_systemctl && daemon_reload();
    print!("{}", summary(&plan, reloaded));
    Ok(ExitCode::SUCCESS)
}

/// One systemd unit to write.
#[derive(Debug)]
struct UnitPlan {
    path: PathBuf,
    text: &'static str,
    /// Its name for `systemctl`.
    name: &'static str,
    /// What it is, in the summary.
    what: &'static str,
    existed: bool,
    /// An installed unit that differs from ours (edited by hand, or older) is copied
    /// here before ours replaces it.
    kept_as: Option<PathBuf>,
}

impl UnitPlan {
    fn new(root: &Path, name: &'static str, text: &'static str, what: &'static str) -> Self {
        let path = root.join(format!("etc/systemd/system/{name}.service"));
        let differs = fs::read(&path).is_ok_and(|installed| installed != text.as_bytes());
        Self {
            existed: path.exists(),
            kept_as: differs.then(|| free_backup_name(&path)),
            path,
            text,
            name,
            what,
        }
    }
}

fn plan(root: &Path) -> InstallPlan {
    let config = root.join(CONFIG_PATH);
    let vault = root.join(VAULT_PATH);
    let program = root.join(PROGRAM_PATH);
    let is_system = root == Path::new("/");
    InstallPlan {
        units: vec![
            UnitPlan::new(root, "undelete", UNIT, "the service"),
            UnitPlan::new(
                root,
                "undelete-mount",
                MOUNT_UNIT,
                "the mount for Previous Versions, off until enabled",
            ),
        ],
        write_config: !config.exists(),
        create_vault: !vault.exists(),
        program_missing: (!program.exists()).then_some(program),
        run_systemctl: is_system && Path::new("/run/systemd/system").is_dir(),
        config,
        vault,
    }
}

/// `undelete.service.bak`, or `.bak.2`, … : the first name not taken.
fn free_backup_name(unit: &Path) -> PathBuf {
    let name = |n: u32| {
        let suffix = if n == 1 {
            ".bak".to_owned()
        } else {
            format!(".bak.{n}")
        };
        let mut path = unit.as_os_str().to_owned();
        path.push(suffix);
        PathBuf::from(path)
    };
    (1..)
        .map(name)
        .find(|p| !p.exists())
        .expect("some name is free")
}

fn execute(plan: &InstallPlan) -> anyhow::Result<()> {
    for unit in &plan.units {
        if let Some(backup) = &unit.kept_as {
            fs::copy(&unit.path, backup).with_context(|| {
                format!(
                    "cannot keep {} as {}",
                    unit.path.display(),
                    backup.display()
                )
            })?;
        }
        write_unit(&unit.path, unit.text)?;
    }
    if plan.write_config {
        write_config(&plan.config)?;
    }
    if plan.create_vault {
        create_vault(&plan.vault)?;
    }
    Ok(())
}

/// Written beside and renamed over, so systemd never reads half a unit.
fn write_unit(path: &Path, text: &str) -> anyhow::Result<()> {
    let parent = parent_of(path);
    fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
    let mut tmp = tempfile::NamedTempFile::new_in(parent)
        .with_context(|| format!("cannot write in {}", parent.display()))?;
    tmp.write_all(text.as_bytes())?;
    tmp.as_file()
        .set_permissions(fs::Permissions::from_mode(0o644))?;
    tmp.persist(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// 0600: an alert command may hold a webhook's secret. `create_new`, so an existing
/// file is never replaced, even one that appeared since the plan.
fn write_config(path: &Path) -> anyhow::Result<()> {
    let parent = parent_of(path);
    fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    file.write_all(EXAMPLE_CONFIG.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// 0700: the copies of every protected file are only root's to read.
fn create_vault(path: &Path) -> anyhow::Result<()> {
    let parent = parent_of(path);
    fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
    DirBuilder::new()
        .mode(0o700)
        .create(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    // The mode above passed through the umask; this one is exact.
    fs::set_permissions(path, fs::Permissions::from_mode(0o700))?;
    Ok(())
}

fn parent_of(path: &Path) -> &Path {
    path.parent().unwrap_or(Path::new("/"))
}

/// `systemctl daemon-reload`, so systemd sees the new unit; false if it failed.
fn daemon_reload() -> bool {
    match Command::new("systemctl").arg("daemon-reload").status() {
        Ok(status) if status.success() => true,
        Ok(status) => {
            eprintln!("undelete: systemctl daemon-reload failed ({status})");
            false
        }
        Err(e) => {
            eprintln!("undelete: cannot run systemctl: {e}");
            false
        }
    }
}

/// This program's own path, to copy where the unit looks for it.
fn this_program() -> String {
    std::env::current_exe()
        .map(|p| crate::words::quote(&p))
        .unwrap_or_else(|_| "undelete".into())
}

fn summary(plan: &InstallPlan, reloaded: bool) -> String {
    let mut out = String::from("Installed:\n");
    for unit in &plan.units {
        let verb = if unit.existed { "updated" } else { "new" };
        out.push_str(&format!(
            "  {}  ({}, {verb})\n",
            display_path(&unit.path),
            unit.what
        ));
        if let Some(backup) = &unit.kept_as {
            out.push_str(&format!(
                "  {}  (the unit that was there, kept: put lasting changes in \
                 `sudo systemctl edit {}` instead)\n",
                display_path(backup),
                unit.name
            ));
        }
    }
    if plan.write_config {
        out.push_str(&format!(
            "  {}  (the settings: an example to edit)\n",
            display_path(&plan.config)
        ));
    } else {
        out.push_str(&format!(
            "  {}  (your settings, kept as they were)\n",
            display_path(&plan.config)
        ));
    }
    let vault_note = if plan.create_vault {
        "the vault, readable only by root"
    } else {
        "the vault, already there"
    };
    out.push_str(&format!(
        "  {}  ({vault_note})\n",
        display_path(&plan.vault)
    ));
    if let Some(program) = &plan.program_missing {
        // Into the root installed, where the unit will find it once that root is the
        // system: for --root /srv/image, /srv/image/usr/local/bin, not this machine's.
        out.push_str(&format!(
            "\nThe service starts the program from /{PROGRAM_PATH},\nwhich is not \
             there yet. Copy it there with:\n       sudo install {} {}\n",
            this_program(),
            crate::words::quote(program)
        ));
    }
    out.push_str("\nWhat is left to do:\n");
    let mut start = Vec::new();
    if !reloaded {
        start.push("sudo systemctl daemon-reload");
    }
    let mut steps: Vec<(String, Vec<&str>)> = Vec::new();
    if plan.write_config {
        steps.push((
            "Name the folders to protect (protect = ...) in the settings:".into(),
            vec!["sudoedit /etc/undelete/config.toml"],
        ));
        start.push("sudo systemctl enable --now undelete");
        steps.push(("Start the service now and at every boot:".into(), start));
    } else {
        start.push("sudo systemctl enable undelete");
        start.push("sudo systemctl restart undelete");
        steps.push((
            "Start the service again, so it runs this version:".into(),
            start,
        ));
    }
    steps.push((
        "Check that protection works:".into(),
        vec!["sudo undelete doctor"],
    ));
    steps.push((
        "If office users should find older versions in Explorer (Previous\n     \
         Versions of a Samba share): start the mount, then add the lines\n     \
         samba-config prints to each share in /etc/samba/smb.conf:"
            .into(),
        vec![
            "sudo systemctl enable --now undelete-mount",
            "sudo undelete samba-config",
        ],
    ));
    for (n, (words, commands)) in steps.iter().enumerate() {
        out.push_str(&format!("  {}. {words}\n", n + 1));
        for command in commands {
            out.push_str(&format!("       {command}\n"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, RawArgs};

    const EXAMPLE_PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/config.example.toml");

    #[test]
    fn the_example_config_is_read_as_it_is() {
        let config = Config::load(RawArgs {
            config: Some(EXAMPLE_PATH.into()),
            ..RawArgs::default()
        })
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(config.vault, PathBuf::from("/var/lib/undelete"));
        assert_eq!(config.protect, vec![PathBuf::from("/srv/share")]);
    }

    /// Every setting shown commented out must work once its # is removed, so a
    /// customer who follows the notes never meets a mistake.
    #[test]
    fn every_commented_setting_in_the_example_is_valid_once_uncommented() {
        let setting = regex::Regex::new(r"^# ?(\[|[a-z_]+ = )").unwrap();
        let mut uncommented = 0;
        let text: String = EXAMPLE_CONFIG
            .lines()
            .map(|line| {
                if setting.is_match(line) {
                    uncommented += 1;
                    format!("{}\n", line.trim_start_matches('#').trim_start())
                } else {
                    format!("{line}\n")
                }
            })
            .collect();
        assert!(uncommented >= 6, "{text}");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        fs::write(&path, &text).unwrap();
        let config = Config::load(RawArgs {
            config: Some(path),
            ..RawArgs::default()
        })
        .unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(config.max_file_size, Some(2_000_000_000));
        assert!(config.incidents.alert_command.is_some());
        assert_eq!(config.folders.len(), 1);
        assert_eq!(config.retention.max_vault_bytes, Some(500_000_000_000));
    }

    #[test]
    fn the_example_names_every_setting_of_today() {
        for key in [
            "vault",
            "protect",
            "exclude",
            "max_file_size",
            "incident_gap",
            "alert_files",
            "alert_size",
            "alert_command",
            "path",
            "keep_deleted",
            "keep_versions",
            "max_vault_size",
            "min_free_disk",
            "report_group",
            "server",
            "port",
            "security",
            "user",
            "password_file",
            "from",
            "to",
            "timeout",
        ] {
            let line = regex::Regex::new(&format!(r"(?m)^(# )?{key} = ")).unwrap();
            assert!(line.is_match(EXAMPLE_CONFIG), "{key} is not in the example");
        }
    }
}
