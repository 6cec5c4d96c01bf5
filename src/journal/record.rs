//! The records of the journal and the one line each is written as: what each
//! change to the index says (`Record`, and `ObservedRecord` for what a version
//! records of a path), and the checksum that tells a whole line from a damaged
//! one.
//!
//! Apart from the file that holds them, so the words of the journal can grow
//! with the index (every new stored fact is a record here) without touching
//! how the lines are written to disk or read back.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::ids::ObjectId;
use crate::model::{EntryKind, Gone, Incomplete, Observed, Person, Removal, Uncaptured};
use crate::words::JsonPath;

/// The record layout this version writes and reads.
pub const FORMAT: u32 = 1;

/// What a version records of a path, as the journal spells it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ObservedRecord {
    kind: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    object: Option<String>,
    size: u64,
    mtime_ns: i64,
    /// Absent in records written before the change time was recorded.
    #[serde(default, skip_serializing_if = "is_zero")]
    ctime_ns: i64,
    mode: u32,
    uid: u32,
    gid: u32,
    inode: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    link_target: Option<JsonPath>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    uncaptured: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    uncaptured_detail: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    incomplete: Option<String>,
    /// Signs of encryption (`signs::Signs`); absent in older records and when none.
    #[serde(default, skip_serializing_if = "is_zero_u8")]
    signs: u8,
}

impl From<&Observed> for ObservedRecord {
    fn from(o: &Observed) -> Self {
        Self {
            kind: o.kind.code(),
            object: o.object.map(|id| id.to_hex()),
            size: o.size,
            mtime_ns: o.mtime_ns,
            ctime_ns: o.ctime_ns,
            mode: o.mode,
            uid: o.uid,
            gid: o.gid,
            inode: o.inode,
            link_target: o.link_target.as_deref().map(JsonPath::from),
            uncaptured: o.uncaptured.as_ref().map(|u| u.code().to_owned()),
            uncaptured_detail: o.uncaptured.as_ref().and_then(Uncaptured::detail),
            incomplete: o.incomplete.map(|i| i.code().to_owned()),
            signs: o.signs.bits(),
        }
    }
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

fn is_zero_u8(n: &u8) -> bool {
    *n == 0
}

impl ObservedRecord {
    pub fn to_observed(&self) -> std::result::Result<Observed, String> {
        let object = match &self.object {
            Some(hex) => Some(
                hex.parse::<ObjectId>()
                    .map_err(|e| format!("an object name is not valid: {e}"))?,
            ),
            None => None,
        };
        Ok(Observed {
            kind: EntryKind::from_code(self.kind),
            object,
            size: self.size,
            mtime_ns: self.mtime_ns,
            ctime_ns: self.ctime_ns,
            mode: self.mode,
            uid: self.uid,
            gid: self.gid,
            inode: self.inode,
            link_target: self.link_target.clone().map(JsonPath::into_path),
            uncaptured: self
                .uncaptured
                .as_deref()
                .map(|code| Uncaptured::from_columns(code, self.uncaptured_detail.clone())),
            incomplete: self.incomplete.as_deref().and_then(Incomplete::from_code),
            signs: crate::signs::Signs::from_bits(self.signs),
        })
    }
}

/// One change to the index: the name of the index method and its arguments.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Record {
    /// The first record of a journal. `versions_before` counts the versions the
    /// index already held then (a vault made before journals existed): those
    /// cannot be rebuilt from it.
    Start {
        format: u32,
        at: i64,
        versions_before: u64,
    },
    /// `Index::set_roots`.
    Roots { paths: Vec<JsonPath>, at: i64 },
    /// `Index::insert_version`; the protected folder by path, as ids may differ.
    Insert {
        path: JsonPath,
        root: JsonPath,
        observed: ObservedRecord,
        at: i64,
        /// Who made it, where the event source said (absent in older records).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<Person>,
    },
    /// `Index::update_metadata` of the current version of `path`.
    Metadata {
        path: JsonPath,
        observed: ObservedRecord,
    },
    /// `Index::mark_removed`.
    Removed {
        path: JsonPath,
        subtree: bool,
        at: i64,
        approx: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        last_seen: Option<i64>,
        moved_out: bool,
        /// Who removed it, where the event source said (absent in older records).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<Person>,
    },
    /// `Index::record_lost`.
    Lost {
        path: JsonPath,
        root: JsonPath,
        kind: i64,
        at: i64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<Person>,
    },
    /// `Index::rename`.
    Rename {
        from: JsonPath,
        to: JsonPath,
        root: JsonPath,
        at: i64,
    },
    /// `Index::mark_incomplete` of the current version of `path`.
    Incomplete { path: JsonPath, why: String },
    /// `Index::exchange`.
    Exchange {
        a: JsonPath,
        a_root: JsonPath,
        b: JsonPath,
        b_root: JsonPath,
        at: i64,
    },
    /// `Index::group_incidents` that grouped something, with the codes it drew, so
    /// the rebuilt incidents keep the codes people were told, and the rules it
    /// grouped by (`grouping::Rules`; records from before have none: the first).
    Incidents {
        gap_ns: i64,
        codes: Vec<String>,
        #[serde(default = "first_rules")]
        rules: u32,
    },
    /// `Index::group_overwrites` that decided something, with its rules and the
    /// codes it drew.
    Overwrites {
        files: u64,
        window_ns: i64,
        gap_ns: i64,
        codes: Vec<String>,
    },
    /// `Index::end_incident`, by incident code.
    Ended { code: String, at: i64 },
    /// `Index::mark_end_told`, by incident code.
    EndTold { code: String, at: i64 },
    /// `Index::mark_restored`: deleted versions a restore brought back, each by path
    /// and the moment it was deleted, with the restore's report.
    Restored {
        files: Vec<(JsonPath, i64)>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        report: Option<JsonPath>,
        at: i64,
    },
    /// `Index::mark_restored_as_before`: files of an overwrite incident a restore
    /// brought back as they were before it, each by path, with the restore's report.
    RestoredAsBefore {
        code: String,
        files: Vec<JsonPath>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        report: Option<JsonPath>,
        at: i64,
    },
    /// `Index::acknowledge_alert`: the alert by kind and the moment it was raised.
    Acknowledged {
        kind: String,
        raised_at: i64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        note: Option<String>,
        at: i64,
    },
    /// `Index::mark_incident_alerted`, by incident code.
    Alerted {
        code: String,
        at: i64,
        #[serde(default)]
        tells_end: bool,
    },
    /// `Index::record_cut_off`, by incident code.
    CutOff {
        code: String,
        cut_off: crate::model::CutOff,
    },
    /// `Index::raise_alert`.
    Alert {
        kind: String,
        message: String,
        at: i64,
    },
    /// `Index::clear_alert`.
    AlertCleared { kind: String, at: i64 },
    /// `Index::mark_purged`: older versions whose copies retention removed, each by
    /// path, object and the moment it stopped being current (ids may differ in a
    /// rebuilt index; the moment tells apart two versions with the same content).
    Purged {
        versions: Vec<(JsonPath, String, i64)>,
        at: i64,
    },
    /// `Index::record_hashed`: the staged copy (by its provisional name) holds the
    /// content `id`, `size` bytes.
    Hashed {
        staged: String,
        id: String,
        size: u64,
    },
}

/// The rules of incident records written before they named theirs.
fn first_rules() -> u32 {
    crate::grouping::Rules::ByTime.number()
}

impl Record {
    pub fn removed(path: &Path, subtree: bool, gone: &Gone) -> Self {
        Self::Removed {
            path: path.into(),
            subtree,
            at: gone.at,
            approx: gone.approx,
            last_seen: gone.last_seen,
            moved_out: gone.removal == Removal::MovedOut,
            by: gone.by.as_deref().cloned(),
        }
    }

    /// When the change happened, for records that say.
    pub fn at(&self) -> Option<i64> {
        match self {
            Self::Start { at, .. }
            | Self::Roots { at, .. }
            | Self::Insert { at, .. }
            | Self::Removed { at, .. }
            | Self::Lost { at, .. }
            | Self::Rename { at, .. }
            | Self::Exchange { at, .. }
            | Self::Alerted { at, .. }
            | Self::Alert { at, .. }
            | Self::AlertCleared { at, .. }
            | Self::Ended { at, .. }
            | Self::EndTold { at, .. }
            | Self::Restored { at, .. }
            | Self::RestoredAsBefore { at, .. }
            | Self::Acknowledged { at, .. }
            | Self::Purged { at, .. } => Some(*at),
            Self::CutOff { cut_off, .. } => Some(cut_off.at),
            Self::Metadata { .. }
            | Self::Incidents { .. }
            | Self::Overwrites { .. }
            | Self::Incomplete { .. }
            | Self::Hashed { .. } => None,
        }
    }
}

/// The one line a record is written as, newline included.
pub(super) fn encode(record: &Record) -> Vec<u8> {
    let json = serde_json::to_vec(record).expect("records always serialize");
    let mut line = checksum(&json).into_bytes();
    line.push(b' ');
    line.extend_from_slice(&json);
    line.push(b'\n');
    line
}

fn checksum(json: &[u8]) -> String {
    blake3::hash(json).to_hex()[..16].to_owned()
}

/// Why a line could not be read as a record (without its newline).
pub(super) fn decode(line: &[u8]) -> std::result::Result<Record, String> {
    let (sum, json) = line
        .split_at_checked(16)
        .and_then(|(sum, rest)| Some((sum, rest.strip_prefix(b" ")?)))
        .ok_or("too short to be a record")?;
    if sum != checksum(json).as_bytes() {
        return Err("its checksum does not match (damaged or cut short)".into());
    }
    serde_json::from_slice(json).map_err(|e| format!("not a record this version knows ({e})"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::ffi::OsStrExt;

    #[test]
    fn a_record_round_trips_with_a_non_utf8_path() {
        let record = Record::Lost {
            path: Path::new(std::ffi::OsStr::from_bytes(b"/s/caf\xe9\n")).into(),
            root: Path::new("/s").into(),
            kind: 0,
            at: 5,
            by: None,
        };
        let line = encode(&record);
        let text = std::str::from_utf8(&line).unwrap();
        assert!(text.contains(r#""hex":"2f732f636166e90a""#), "{text}");
        match decode(&line[..line.len() - 1]).unwrap() {
            Record::Lost { path, .. } => {
                assert_eq!(path.as_path().as_os_str().as_bytes(), b"/s/caf\xe9\n")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_changed_byte_is_caught_by_the_checksum() {
        let mut line = encode(&Record::AlertCleared {
            kind: "vault_full".into(),
            at: 1,
        });
        let n = line.len();
        line[n - 5] ^= 1;
        assert!(decode(&line[..n - 1]).is_err());
    }
}
