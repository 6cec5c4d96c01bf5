//! One checked `Config` from flags, environment and the TOML file.
//!
//! Flags win over the environment, which wins over the file, which wins over
//! the defaults. Everything is validated here once (sizes parsed, globs
//! compiled, folders made absolute) so the rest of the program only ever sees
//! values that make sense. It reads the config file and nothing else.

mod error;
mod excludes;
mod file;
mod rules;

use std::path::{Path, PathBuf};

pub use error::ConfigError;
pub use excludes::Excludes;
pub use rules::{Breaker, EmailSettings, IncidentRules, Retention, Security};

use file::FileConfig;

/// What the command line and environment said; `None` where they said nothing.
#[derive(Debug, Default, Clone)]
pub struct RawArgs {
    pub vault: Option<PathBuf>,
    pub config: Option<PathBuf>,
    pub protect: Vec<PathBuf>,
    pub exclude: Vec<String>,
    pub max_file_size: Option<String>,
    pub incident_gap: Option<String>,
    pub alert_files: Option<u64>,
    pub alert_size: Option<String>,
    pub overwrite_alert_files: Option<u64>,
    pub vault_growth_alert: Option<u64>,
    pub vault_growth_window: Option<String>,
    pub alert_command: Option<String>,
    /// `--breaker`: cut off a PC crossing an alert threshold over the file share.
    pub breaker: bool,
    pub breaker_command: Option<String>,
    /// `--events`: auto, fanotify or inotify.
    pub events: Option<String>,
    pub keep_deleted: Option<String>,
    pub keep_versions: Option<u64>,
    pub max_vault_size: Option<String>,
    pub min_free_disk: Option<String>,
    pub is_root: bool,
    /// `UNDELETE_HOLD_HASHING` is set (see `Config::hold_hashing`).
    pub hold_hashing: bool,
    pub home: Option<PathBuf>,
    pub xdg_data_home: Option<PathBuf>,
}

/// The checked configuration every part of the program works from.
#[derive(Debug, Clone)]
pub struct Config {
    pub vault: PathBuf,
    pub protect: Vec<PathBuf>,
    /// The rules for folders that have none of their own.
    pub excludes: Excludes,
    pub max_file_size: Option<u64>,
    /// Folders with rules of their own (`[[folder]]` tables), also in `protect`;
    /// their paths canonical where they exist.
    pub folders: Vec<FolderRules>,
    pub incidents: IncidentRules,
    /// Whether and how a PC deleting or encrypting en masse is cut off.
    pub breaker: Breaker,
    pub retention: Retention,
    /// The group whose members may read restore reports (see `saved_reports`).
    pub report_group: Option<String>,
    /// Copies captured by a clone stay staged, not hashed, while the daemon runs
    /// (`UNDELETE_HOLD_HASHING=1`): for tests that act on a copy before its hash
    /// exists, and for measuring capture alone. Nothing is lost meanwhile; the next
    /// daemon started without it hashes them.
    pub hold_hashing: bool,
    /// Which event source the daemon asks the kernel for.
    pub events: Events,
    /// What it was made from, to read it again the same way (see `reread`).
    sources: RawArgs,
}

/// Which event source the daemon uses (`--events`, `events =`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Events {
    /// fanotify where the kernel allows it (root, filesystems with file handles),
    /// inotify otherwise.
    #[default]
    Auto,
    /// fanotify or nothing: the daemon stops with the reason when it is refused.
    Fanotify,
    Inotify,
}

impl Events {
    fn parse(s: &str) -> Result<Self, ConfigError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(Self::Auto),
            "fanotify" => Ok(Self::Fanotify),
            "inotify" => Ok(Self::Inotify),
            _ => Err(ConfigError::Events(s.to_owned())),
        }
    }
}

/// A protected folder's own capture rules: the common exclude rules plus its
/// own, and its own size limit where it sets one.
#[derive(Debug, Clone)]
pub struct FolderRules {
    pub path: PathBuf,
    pub excludes: Excludes,
    pub max_file_size: Option<u64>,
}

const SYSTEM_CONFIG: &str = "/etc/undelete/config.toml";

impl Config {
    pub fn load(raw: RawArgs) -> Result<Self, ConfigError> {
        let sources = raw.clone();
        let file = match raw.config.clone() {
            Some(path) => file::read_file(&path)?,
            None if raw.is_root && Path::new(SYSTEM_CONFIG).is_file() => {
                file::read_file(Path::new(SYSTEM_CONFIG))?
            }
            None => FileConfig::default(),
        };
        let vault = raw
            .vault
            .or(file.vault)
            .or_else(|| {
                default_vault(
                    raw.is_root,
                    &raw.xdg_data_home,
                    &raw.home,
                    Path::new(SYSTEM_VAULT),
                )
            })
            .ok_or(ConfigError::NoVault)?;
        let vault = absolute(&vault);
        // Folders named by flags replace the file's, `[[folder]]` tables included
        // (their rules still apply to a flagged folder of the same path).
        let protect_from_file = raw.protect.is_empty();
        let mut protect = if raw.protect.is_empty() {
            file.protect
        } else {
            raw.protect
        };
        let exclude = if raw.exclude.is_empty() {
            file.exclude
        } else {
            raw.exclude
        };
        let max_file_size = raw
            .max_file_size
            .or(file.max_file_size)
            .map(|s| parse_size(&s))
            .transpose()?;
        let mut incidents = IncidentRules::default();
        if let Some(gap) = raw.incident_gap.or(file.incident_gap) {
            incidents.gap_ns = crate::clock::parse_age(&gap)?;
        }
        if let Some(n) = raw.alert_files.or(file.alert_files) {
            incidents.alert_files = n;
        }
        if let Some(size) = raw.alert_size.or(file.alert_size) {
            incidents.alert_bytes = parse_size(&size)?;
        }
        if let Some(n) = raw.overwrite_alert_files.or(file.overwrite_alert_files) {
            incidents.overwrite_files = n;
        }
        if let Some(percent) = raw.vault_growth_alert.or(file.vault_growth_alert) {
            incidents.growth_percent = percent;
        }
        if let Some(window) = raw.vault_growth_window.or(file.vault_growth_window) {
            incidents.growth_window_ns = crate::clock::parse_age(&window)?;
        }
        incidents.alert_command = raw.alert_command.or(file.alert_command);
        incidents.email = file.alert.email.map(file::email_settings).transpose()?;
        let breaker = Breaker {
            enabled: raw.breaker || file.breaker.enabled.unwrap_or(false),
            command: raw
                .breaker_command
                .or(file.breaker.command)
                .filter(|c| !c.trim().is_empty()),
            never_cut: file
                .breaker
                .never_cut
                .iter()
                .map(|a| {
                    a.trim()
                        .parse::<std::net::IpAddr>()
                        .map(|ip| ip.to_canonical())
                        .map_err(|_| ConfigError::NeverCut(a.clone()))
                })
                .collect::<Result<_, _>>()?,
        };
        let mut folders = Vec::new();
        for folder in file.folder {
            let rules: Vec<String> = exclude.iter().chain(&folder.exclude).cloned().collect();
            let path = absolute(&folder.path);
            if protect_from_file && !protect.iter().any(|p| absolute(p) == path) {
                protect.push(path.clone());
            }
            // Compared with the daemon's canonical folder names, so resolved once
            // here rather than at every file it looks at.
            let path = std::fs::canonicalize(&path).unwrap_or(path);
            if folders.iter().any(|f: &FolderRules| f.path == path) {
                return Err(ConfigError::Protect {
                    path,
                    reason: "it has two [[folder]] tables; keep one".into(),
                });
            }
            folders.push(FolderRules {
                path,
                excludes: Excludes::new(&rules)?,
                max_file_size: match folder.max_file_size {
                    Some(size) => Some(parse_size(&size)?),
                    None => max_file_size,
                },
            });
        }
        let mut retention = Retention::default();
        if let Some(age) = raw.keep_deleted.or(file.retention.keep_deleted) {
            retention.keep_deleted_ns = crate::clock::parse_age(&age)?;
        }
        if let Some(n) = raw.keep_versions.or(file.retention.keep_versions) {
            retention.keep_versions = n;
        }
        let size = |s: Option<String>| s.map(|s| parse_size(&s)).transpose();
        retention.max_vault_bytes = size(raw.max_vault_size.or(file.retention.max_vault_size))?;
        retention.min_free_bytes = size(raw.min_free_disk.or(file.retention.min_free_disk))?;
        if let Some(age) = file.retention.hold_after_incident {
            retention.hold_after_incident_ns = crate::clock::parse_age(&age)?;
        }
        let events = match raw.events.or(file.events) {
            Some(s) => Events::parse(&s)?,
            None => Events::Auto,
        };
        Ok(Self {
            vault,
            events,
            protect: protect.iter().map(|p| absolute(p)).collect(),
            excludes: Excludes::new(&exclude)?,
            max_file_size,
            folders,
            incidents,
            breaker,
            retention,
            report_group: file.report_group.filter(|g| !g.trim().is_empty()),
            hold_hashing: raw.hold_hashing,
            sources,
        })
    }

    /// The settings read again as they were read the first time: the same flags,
    /// and the settings file as it is now (flags still win over it). SIGHUP.
    pub fn reread(&self) -> Result<Self, ConfigError> {
        Self::load(self.sources.clone())
    }

    /// Whether retention rules were given as flags, rather than taken from the
    /// settings file or the defaults.
    pub fn retention_from_flags(&self) -> bool {
        let raw = &self.sources;
        raw.keep_deleted.is_some()
            || raw.keep_versions.is_some()
            || raw.max_vault_size.is_some()
            || raw.min_free_disk.is_some()
    }

    /// The capture rules for the protected folder `root` (as the daemon names it:
    /// canonical): its own where it has a `[[folder]]` table, the common ones otherwise.
    pub fn rules_for(&self, root: &Path) -> (&Excludes, Option<u64>) {
        self.folders
            .iter()
            .find(|f| f.path == root)
            .map_or((&self.excludes, self.max_file_size), |f| {
                (&f.excludes, f.max_file_size)
            })
    }

    /// Checks the settings for the daemon: the retention rules would not empty the
    /// recycle bin, and the protected folders exist, are folders, and neither hold the
    /// vault nor sit inside it. Returns the folders canonical.
    pub fn checked_for_daemon(&self) -> Result<Vec<PathBuf>, ConfigError> {
        self.retention
            .check_for_service()
            .map_err(ConfigError::Retention)?;
        let vault = std::fs::canonicalize(&self.vault).unwrap_or_else(|_| self.vault.clone());
        let mut roots = Vec::new();
        for path in &self.protect {
            let err = |reason: String| ConfigError::Protect {
                path: path.clone(),
                reason,
            };
            let root = std::fs::canonicalize(path).map_err(|e| err(e.to_string()))?;
            if !root.is_dir() {
                return Err(err("it is not a folder".into()));
            }
            if vault.starts_with(&root) {
                return Err(ConfigError::VaultInside { vault, root });
            }
            if root.starts_with(&vault) {
                return Err(ConfigError::RootInsideVault { vault, root });
            }
            if !roots.contains(&root) {
                roots.push(root);
            }
        }
        Ok(roots)
    }
}

fn default_vault(
    is_root: bool,
    xdg_data_home: &Option<PathBuf>,
    home: &Option<PathBuf>,
    system: &Path,
) -> Option<PathBuf> {
    if is_root {
        return Some(system.to_owned());
    }
    let own = xdg_data_home
        .clone()
        .filter(|p| p.is_absolute())
        .or_else(|| home.as_ref().map(|h| h.join(".local/share")))
        .map(|d| d.join("undelete"));
    // Someone without a vault of their own on a server that has one means that one
    // (and is then told to use sudo, rather than that nothing was ever protected).
    match own {
        Some(own) if own.exists() || !system.exists() => Some(own),
        Some(_) => Some(system.to_owned()),
        None if system.exists() => Some(system.to_owned()),
        None => None,
    }
}

/// The vault of the system service (see `install-service`).
const SYSTEM_VAULT: &str = "/var/lib/undelete";

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_owned())
}

/// Parses sizes like `1MiB`, `2GB`, `500 KB` or a plain number of bytes.
pub fn parse_size(text: &str) -> Result<u64, ConfigError> {
    text.trim()
        .parse::<bytesize::ByteSize>()
        .map(|b| b.as_u64())
        .map_err(|_| ConfigError::Size(text.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Loads `text` as the settings file, with `args` as the flags.
    fn load_with(text: &str, args: RawArgs) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, text).unwrap();
        Config::load(RawArgs {
            config: Some(path),
            ..args
        })
    }

    fn load(text: &str) -> Result<Config, ConfigError> {
        load_with(text, RawArgs::default())
    }

    #[test]
    fn someone_without_a_vault_of_their_own_means_the_servers() {
        let dir = tempfile::tempdir().unwrap();
        let system = dir.path().join("system-vault");
        let home = Some(dir.path().join("home"));
        let own = dir.path().join("home/.local/share/undelete");
        let pick = || default_vault(false, &None, &home, &system).unwrap();
        assert_eq!(pick(), own, "no vault on this machine: their own, to make");
        std::fs::create_dir(&system).unwrap();
        assert_eq!(
            pick(),
            system,
            "the server's, and then they are told to use sudo"
        );
        std::fs::create_dir_all(&own).unwrap();
        assert_eq!(pick(), own, "their own, once they have one");
        assert_eq!(default_vault(true, &None, &home, &system).unwrap(), system);
    }

    #[test]
    fn sizes_accept_the_usual_spellings() {
        assert_eq!(parse_size("1MiB").unwrap(), 1 << 20);
        assert_eq!(parse_size("2GB").unwrap(), 2_000_000_000);
        assert_eq!(parse_size("500 KB").unwrap(), 500_000);
        assert_eq!(parse_size("1234").unwrap(), 1234);
        assert!(parse_size("lots").is_err());
    }

    #[test]
    fn a_mistake_in_the_file_names_its_line() {
        let err = load("vault = \"/v\"\nprotekt = [\"/srv\"]\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 2"), "{err}");
        assert!(err.contains("protekt"), "{err}");
    }

    #[test]
    fn flags_win_over_the_file() {
        let config = load_with(
            "vault = \"/from/file\"\nmax_file_size = \"1MB\"\n",
            RawArgs {
                vault: Some("/from/flag".into()),
                ..RawArgs::default()
            },
        )
        .unwrap();
        assert_eq!(config.vault, PathBuf::from("/from/flag"));
        assert_eq!(config.max_file_size, Some(1_000_000));
    }

    #[test]
    fn a_folder_table_adds_its_own_rules_to_the_common_ones() {
        let config = load(
            r#"
vault = "/v"
protect = ["/srv/docs"]
exclude = ["*.tmp"]
max_file_size = "1MB"

[[folder]]
path = "/srv/photos"
exclude = ["*.xmp"]
max_file_size = "5GB"

[retention]
keep_deleted = "90d"
keep_versions = 3
"#,
        )
        .unwrap();
        assert_eq!(
            config.protect,
            [PathBuf::from("/srv/docs"), PathBuf::from("/srv/photos")]
        );
        let (excludes, limit) = config.rules_for(Path::new("/srv/photos"));
        assert_eq!(limit, Some(5_000_000_000));
        assert_eq!(excludes.matching_rule(Path::new("a.xmp")), Some("*.xmp"));
        assert_eq!(excludes.matching_rule(Path::new("a.tmp")), Some("*.tmp"));
        let (excludes, limit) = config.rules_for(Path::new("/srv/docs"));
        assert_eq!(limit, Some(1_000_000));
        assert_eq!(excludes.matching_rule(Path::new("a.xmp")), None);
        assert_eq!(config.retention.keep_versions, 3);
        assert_eq!(
            config.retention.keep_deleted_ns,
            90 * 86_400 * 1_000_000_000
        );
    }

    #[test]
    fn the_breaker_is_off_unless_turned_on_and_its_spared_addresses_must_be_addresses() {
        let config = load("vault = \"/v\"\n").unwrap();
        assert!(!config.breaker.enabled, "off by default");
        let config = load(
            "vault = \"/v\"\n[breaker]\nenabled = true\ncommand = \"true\"\n\
             never_cut = [\"192.168.1.10\", \"::ffff:10.0.0.5\"]\n",
        )
        .unwrap();
        assert!(config.breaker.enabled);
        assert_eq!(config.breaker.command.as_deref(), Some("true"));
        // Written the IPv6 way, an IPv4 address is still that address.
        assert_eq!(
            config.breaker.never_cut,
            [
                "192.168.1.10".parse::<std::net::IpAddr>().unwrap(),
                "10.0.0.5".parse().unwrap()
            ]
        );
        let flagged = load_with(
            "vault = \"/v\"\n",
            RawArgs {
                breaker: true,
                ..RawArgs::default()
            },
        )
        .unwrap();
        assert!(flagged.breaker.enabled && flagged.breaker.command.is_none());
        let err = load("vault = \"/v\"\n[breaker]\nnever_cut = [\"frontdesk\"]\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("\"frontdesk\"") && err.contains("not a network address"),
            "{err}"
        );
    }

    #[test]
    fn two_tables_for_one_folder_are_refused() {
        let err =
            load("vault = \"/v\"\n[[folder]]\npath = \"/srv\"\n[[folder]]\npath = \"/srv/\"\n")
                .unwrap_err()
                .to_string();
        assert!(err.contains("two [[folder]] tables"), "{err}");
    }

    #[test]
    fn a_mistake_in_a_folder_table_names_its_line() {
        let err = load("vault = \"/v\"\n\n[[folder]]\npath = \"/srv\"\nmax_size = \"1GB\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 5"), "{err}");
        assert!(err.contains("max_size"), "{err}");
    }

    #[test]
    fn retention_rules_that_would_empty_the_bin_are_refused_for_the_daemon() {
        let dir = tempfile::tempdir().unwrap();
        let settings = |retention: &str| {
            format!(
                "vault = \"/v\"\nprotect = [{:?}]\n[retention]\n{retention}\n",
                dir.path()
            )
        };
        for (rule, words) in [
            ("keep_versions = 0", "keep_versions = 0"),
            ("keep_deleted = \"0s\"", "under an hour"),
            ("keep_deleted = \"30m\"", "under an hour"),
            ("max_vault_size = \"500\"", "500 B"),
        ] {
            let config = load(&settings(rule)).unwrap();
            match config.checked_for_daemon() {
                Err(ConfigError::Retention(why)) => assert!(why.contains(words), "{rule}: {why}"),
                other => panic!("{rule} was accepted: {other:?}"),
            }
        }
        let fine = load(&settings("keep_deleted = \"2h\"\nkeep_versions = 1")).unwrap();
        assert!(fine.checked_for_daemon().is_ok());
    }

    #[test]
    fn a_vault_inside_a_protected_folder_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let share = dir.path().join("share");
        std::fs::create_dir_all(share.join("vault")).unwrap();
        let config = Config::load(RawArgs {
            vault: Some(share.join("vault")),
            protect: vec![share],
            ..RawArgs::default()
        })
        .unwrap();
        assert!(matches!(
            config.checked_for_daemon(),
            Err(ConfigError::VaultInside { .. })
        ));
    }
}
