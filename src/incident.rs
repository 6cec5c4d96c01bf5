//! Deletion incidents: deletions close together in time under one protected
//! folder, grouped so a person can say "bring back what was deleted last night".
//!
//! Each incident has a short code a person can read over the phone: Crockford
//! base32 (no I, L, O or U; when typed, O is read as 0 and I or L as 1), in two
//! groups of three, like `K7Q-4MD`.

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use crate::index::{Alert, Index, IndexError};

const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// An incident's phone-friendly code.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IncidentCode(String);

/// Fresh incident codes: each a hash of a seed (the time and the process) and a
/// counter, so codes drawn together differ and a restarted program does not
/// repeat the ones before it.
pub struct CodeSource {
    seed: u64,
    drawn: u64,
}

impl CodeSource {
    pub fn new() -> Self {
        Self {
            seed: (crate::clock::now() as u64) ^ (u64::from(std::process::id()) << 32),
            drawn: 0,
        }
    }

    pub fn next_code(&mut self) -> String {
        self.drawn += 1;
        let hash = blake3::hash(&[self.seed.to_le_bytes(), self.drawn.to_le_bytes()].concat());
        let seed = u64::from_le_bytes(hash.as_bytes()[..8].try_into().expect("8 bytes"));
        IncidentCode::from_seed(seed).to_string()
    }
}

impl Default for CodeSource {
    fn default() -> Self {
        Self::new()
    }
}

impl IncidentCode {
    /// A fresh code from 30 bits of `seed`.
    pub fn from_seed(seed: u64) -> Self {
        let mut s = String::with_capacity(7);
        for i in 0..6 {
            if i == 3 {
                s.push('-');
            }
            let digit = (seed >> (5 * (5 - i))) & 31;
            s.push(ALPHABET[digit as usize] as char);
        }
        Self(s)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for IncidentCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0:?} is not an incident code; codes look like K7Q-4MD (see: undelete incidents)")]
pub struct BadCode(String);

impl FromStr for IncidentCode {
    type Err = BadCode;
    /// Accepts what people type: any case, with or without the dash or spaces,
    /// O for 0 and I or L for 1.
    fn from_str(text: &str) -> Result<Self, BadCode> {
        let mut digits = String::new();
        for c in text.chars().filter(|c| !matches!(c, '-' | ' ')) {
            let c = match c.to_ascii_uppercase() {
                'O' => '0',
                'I' | 'L' => '1',
                c => c,
            };
            if !ALPHABET.contains(&(c as u8)) || !c.is_ascii() {
                return Err(BadCode(text.to_owned()));
            }
            digits.push(c);
        }
        if digits.len() != 6 {
            return Err(BadCode(text.to_owned()));
        }
        Ok(Self(format!("{}-{}", &digits[..3], &digits[3..])))
    }
}

/// Settings for grouping and alerting.
#[derive(Debug, Clone)]
pub struct IncidentRules {
    /// Deletions further apart than this start a new incident.
    pub gap_ns: i64,
    /// An incident with this many files deleted within `window_ns` raises an alert…
    pub alert_files: u64,
    /// …or this many bytes.
    pub alert_bytes: u64,
    pub window_ns: i64,
    /// Run with the details in environment variables when an alert is raised.
    pub alert_command: Option<String>,
}

impl Default for IncidentRules {
    fn default() -> Self {
        Self {
            gap_ns: 60 * 1_000_000_000,
            alert_files: 500,
            alert_bytes: 1 << 30,
            window_ns: 5 * 60 * 1_000_000_000,
            alert_command: None,
        }
    }
}

/// The warning for a mass deletion, with the command that undoes it. `status`
/// words it again from the incident as it is now, which may have grown since.
pub fn mass_deletion_message(incident: &crate::index::Incident, vault: &Path) -> String {
    format!(
        "Mass deletion: {} ({}) deleted from {} since {} (incident {}). \
         To bring them back: {}",
        crate::report::files(incident.files),
        crate::report::bytes(incident.bytes),
        crate::report::display_path(&incident.folder),
        crate::clock::local(incident.first_at),
        incident.code,
        undo_command(incident, vault),
    )
}

/// The command that brings back everything deleted in the incident.
pub fn undo_command(incident: &crate::index::Incident, vault: &Path) -> String {
    format!(
        "undelete --vault {} restore --incident {}",
        crate::cli::quote(vault),
        incident.code
    )
}

const ALERT_PREFIX: &str = "mass_deletion:";

/// The kind of the alert raised for an incident.
pub fn alert_kind(code: &str) -> String {
    format!("{ALERT_PREFIX}{code}")
}

/// Open alerts, each mass deletion's told at its size now: it may have gone on
/// after the alert was raised (`status` and `doctor` show these).
pub fn current_alerts(index: &Index, vault: &Path) -> Result<Vec<Alert>, IndexError> {
    let mut alerts = index.open_alerts()?;
    for alert in &mut alerts {
        if let Some(code) = alerted_code(&alert.kind)
            && let Some(incident) = index.incident_by_code(code)?
        {
            alert.message = mass_deletion_message(&incident, vault);
        }
    }
    Ok(alerts)
}

/// The incident code of a mass-deletion alert's kind.
pub fn alerted_code(kind: &str) -> Option<&str> {
    kind.strip_prefix(ALERT_PREFIX)
}

pub use crate::grouping::common_folder;

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn codes_read_back_whatever_people_type() {
        let code = IncidentCode::from_seed(0x3FFF_FFFF);
        assert_eq!(code.as_str(), "ZZZ-ZZZ");
        let code = IncidentCode::from_seed(0b00001_00000_10010_00000_00000_00001);
        assert_eq!(code.as_str(), "10J-001");
        assert_eq!("ioj 0OL".parse::<IncidentCode>().unwrap(), code);
        assert_eq!("10j001".parse::<IncidentCode>().unwrap(), code);
        assert!("K7Q-4M".parse::<IncidentCode>().is_err());
        assert!("K7Q-4MU".parse::<IncidentCode>().is_err());
    }

    #[test]
    fn the_common_folder_is_the_deepest_shared_one() {
        assert_eq!(
            common_folder(
                Path::new("/s/photos/a/1.jpg"),
                Path::new("/s/photos/b/2.jpg")
            ),
            PathBuf::from("/s/photos")
        );
    }
}
