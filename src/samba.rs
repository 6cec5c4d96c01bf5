//! Samba's side of Previous Versions: the `smb.conf` lines that make a share offer
//! the mount's points in time through `vfs_shadow_copy2`, and what a share's
//! settings (as `testparm` prints them) lack for it.
//!
//! Never writes Samba's settings: it prints lines for a person to add, and reads.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::index::path_bytes;

/// Where `install-service`'s mount unit mounts the vault.
pub const DEFAULT_MOUNT_POINT: &str = "/run/undelete/versions";
/// The name format the mount uses (the module's default, written out).
pub const FORMAT: &str = "@GMT-%Y.%m.%d-%H.%M.%S";
/// Which Samba settings file to read instead of the system's (tests, other setups).
pub const SMB_CONF_OVERRIDE: &str = "UNDELETE_SMB_CONF";

/// One share of `smb.conf`, with the settings that matter here (lower-cased keys).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Share {
    pub name: String,
    pub path: PathBuf,
    pub settings: Vec<(String, String)>,
}

impl Share {
    fn get(&self, key: &str) -> Option<&str> {
        self.settings
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// What a share's settings lack for Previous Versions from the mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Missing {
    /// `shadow_copy2` is not among its `vfs objects`: Previous Versions is not set up.
    Module,
    /// A setting is absent or says something else.
    Setting {
        key: &'static str,
        wanted: String,
        found: Option<String>,
    },
}

impl std::fmt::Display for Missing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Module => f.write_str("shadow_copy2 is not among its vfs objects"),
            Self::Setting {
                key,
                wanted,
                found: Some(found),
            } => write!(f, "{key} is {found:?}, not {wanted:?}"),
            Self::Setting {
                key,
                wanted,
                found: None,
            } => write!(f, "{key} = {wanted} is missing"),
        }
    }
}

/// The settings a share at `share_path` needs for the mount at `mount`, in order.
pub fn wanted(share_path: &Path, mount: &Path) -> Vec<(&'static str, String)> {
    vec![
        ("vfs objects", "shadow_copy2".into()),
        ("shadow:snapdir", mount.display().to_string()),
        ("shadow:snapsharepath", snap_share_path(share_path)),
        ("shadow:format", FORMAT.into()),
        ("shadow:sort", "desc".into()),
        ("shadow:localtime", "no".into()),
    ]
}

/// Where the share's files are inside each point in time: the mount keeps every
/// protected folder at its full path, so `/srv/share` is `srv/share` there.
pub fn snap_share_path(share_path: &Path) -> String {
    let bytes = path_bytes(share_path);
    let rel = String::from_utf8_lossy(bytes.strip_prefix(b"/").unwrap_or(bytes)).into_owned();
    if rel.is_empty() { ".".into() } else { rel }
}

/// What `share` lacks for Previous Versions from the mount at `mount`.
pub fn missing(share: &Share, mount: &Path) -> Vec<Missing> {
    let mut out = Vec::new();
    for (key, wanted) in wanted(&share.path, mount) {
        let found = share.get(key).map(str::to_owned);
        let fits = match key {
            // Other modules may come before or after it.
            "vfs objects" => found
                .as_deref()
                .is_some_and(|v| v.split([' ', ',']).any(|m| m == "shadow_copy2")),
            "shadow:snapdir" => found
                .as_deref()
                .is_some_and(|v| Path::new(v.trim_end_matches('/')) == mount),
            "shadow:snapsharepath" => found
                .as_deref()
                .is_some_and(|v| v.trim_matches('/') == wanted.trim_matches('/')),
            // Samba's defaults are the values wanted.
            "shadow:format" | "shadow:sort" => found.as_deref().is_none_or(|v| v == wanted),
            "shadow:localtime" => found
                .as_deref()
                .is_none_or(|v| matches!(v, "no" | "false" | "0")),
            _ => found.as_deref() == Some(wanted.as_str()),
        };
        if fits {
            continue;
        }
        if key == "vfs objects" {
            out.push(Missing::Module);
            // Without the module nothing else matters.
            return out;
        }
        out.push(Missing::Setting { key, wanted, found });
    }
    out
}

/// The lines `undelete samba-config` prints for the share at `share_path`.
pub fn config_lines(share_path: &Path, mount: &Path) -> String {
    wanted(share_path, mount)
        .into_iter()
        .map(|(key, value)| format!("    {key} = {value}\n"))
        .collect()
}

/// The shares Samba's settings define (`testparm -s`), or `None` when Samba is not
/// installed here.
pub fn shares() -> Option<Vec<Share>> {
    let testparm = ["/usr/bin/testparm", "/usr/sbin/testparm", "/bin/testparm"]
        .into_iter()
        .find(|p| Path::new(p).is_file())?;
    let mut command = Command::new(testparm);
    command.args(["-s", "--suppress-prompt"]);
    if let Some(conf) = std::env::var_os(SMB_CONF_OVERRIDE) {
        command.arg(conf);
    }
    let out = command.output().ok()?;
    Some(parse(&String::from_utf8_lossy(&out.stdout)))
}

/// The shares of an `smb.conf` as `testparm -s` prints it (global and printer
/// sections left out).
pub fn parse(text: &str) -> Vec<Share> {
    let mut shares: Vec<Share> = Vec::new();
    let mut current: Option<Share> = None;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            shares.extend(current.take());
            let name = name.trim();
            if !matches!(
                name.to_lowercase().as_str(),
                "global" | "printers" | "print$"
            ) {
                current = Some(Share {
                    name: name.to_owned(),
                    ..Share::default()
                });
            }
            continue;
        }
        let (Some(share), Some((key, value))) = (current.as_mut(), line.split_once('=')) else {
            continue;
        };
        let key = key.trim().to_lowercase();
        let value = value.trim().to_owned();
        if key == "path" {
            share.path = PathBuf::from(&value);
        }
        share.settings.push((key, value));
    }
    shares.extend(current);
    shares.retain(|s| !s.path.as_os_str().is_empty());
    shares
}

/// Whether one share of a protected folder offers Previous Versions from the mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Offered {
    /// It does not use `shadow_copy2`: its users cannot look back in time themselves.
    NotSetUp,
    /// It uses `shadow_copy2`, but these lines differ from what the mount needs.
    Wrong(Vec<Missing>),
    /// Set up, but nothing is mounted where it looks (`shadow:snapdir`).
    NotMounted(PathBuf),
    /// Set up, and the vault is mounted where it looks.
    Working(PathBuf),
}

/// One Samba share of (a folder inside) a protected folder, and what it offers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareState {
    pub share: Share,
    pub offered: Offered,
}

/// What each share at or inside one of `roots` offers, with the vault mounted on
/// `mounted` (if it is). A share that names a folder of its own in `shadow:snapdir`
/// while the vault is not mounted is taken at its word: that is where the mount
/// should be.
pub fn previous_versions(
    shares: &[Share],
    roots: &[PathBuf],
    mounted: Option<&Path>,
) -> Vec<ShareState> {
    let mut out = Vec::new();
    for share in shares {
        if !roots.iter().any(|root| share.path.starts_with(root)) {
            continue;
        }
        let snapdir = share.get("shadow:snapdir").map(PathBuf::from);
        let expected = mounted
            .map(Path::to_path_buf)
            .or(snapdir)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_MOUNT_POINT));
        let lacks = missing(share, &expected);
        let offered = if lacks == [Missing::Module] {
            Offered::NotSetUp
        } else if !lacks.is_empty() {
            Offered::Wrong(lacks)
        } else if mounted.is_some() {
            Offered::Working(expected)
        } else {
            Offered::NotMounted(expected)
        };
        out.push(ShareState {
            share: share.clone(),
            offered,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_share_set_up_as_printed_lacks_nothing() {
        let mount = Path::new(DEFAULT_MOUNT_POINT);
        let text = format!(
            "[global]\n\tworkgroup = X\n[office]\n\tpath = /srv/share\n{}",
            config_lines(Path::new("/srv/share"), mount)
        );
        let shares = parse(&text);
        assert_eq!(shares.len(), 1);
        assert_eq!(shares[0].name, "office");
        assert_eq!(missing(&shares[0], mount), vec![]);
    }

    #[test]
    fn what_a_share_lacks_is_named() {
        let mount = Path::new(DEFAULT_MOUNT_POINT);
        let plain = parse("[office]\npath = /srv/share\nvfs objects = acl_xattr\n");
        assert_eq!(missing(&plain[0], mount), vec![Missing::Module]);
        let elsewhere = parse(
            "[office]\npath = /srv/share\nvfs objects = acl_xattr shadow_copy2\n\
             shadow:snapdir = /mnt/snaps\nshadow:snapsharepath = srv/share\nshadow:localtime = yes\n",
        );
        let found = missing(&elsewhere[0], mount);
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(
            found[0].to_string().contains("shadow:snapdir"),
            "{}",
            found[0]
        );
        assert!(
            found[1].to_string().contains("shadow:localtime"),
            "{}",
            found[1]
        );
    }

    #[test]
    fn the_share_path_inside_a_point_is_its_full_path() {
        assert_eq!(snap_share_path(Path::new("/srv/share")), "srv/share");
        assert_eq!(snap_share_path(Path::new("/")), ".");
    }

    #[test]
    fn each_share_of_a_protected_folder_says_what_it_offers() {
        let mount = Path::new(DEFAULT_MOUNT_POINT);
        let lines = config_lines(Path::new("/srv/share/office"), mount);
        let text = format!(
            "[office]\npath = /srv/share/office\n{lines}\
             [plain]\npath = /srv/share\n\
             [elsewhere]\npath = /home/public\n\
             [own]\npath = /srv/share/own\nvfs objects = shadow_copy2\n\
             shadow:snapdir = /mnt/versions\nshadow:snapsharepath = srv/share/own\n"
        );
        let shares = parse(&text);
        let roots = [PathBuf::from("/srv/share")];
        let offered = |mounted: Option<&Path>| -> Vec<(String, Offered)> {
            previous_versions(&shares, &roots, mounted)
                .into_iter()
                .map(|s| (s.share.name, s.offered))
                .collect()
        };
        assert_eq!(
            offered(Some(mount)),
            vec![
                ("office".into(), Offered::Working(mount.into())),
                ("plain".into(), Offered::NotSetUp),
                (
                    "own".into(),
                    Offered::Wrong(vec![Missing::Setting {
                        key: "shadow:snapdir",
                        wanted: DEFAULT_MOUNT_POINT.into(),
                        found: Some("/mnt/versions".into()),
                    }])
                ),
            ]
        );
        // Not mounted: each set-up share waits for the mount where it looks.
        assert_eq!(
            offered(None),
            vec![
                ("office".into(), Offered::NotMounted(mount.into())),
                ("plain".into(), Offered::NotSetUp),
                ("own".into(), Offered::NotMounted("/mnt/versions".into())),
            ]
        );
    }
}
