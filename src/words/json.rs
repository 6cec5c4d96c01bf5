//! Paths for programs, exact to the byte. Two spellings, one rule: a name that is
//! UTF-8 is kept as text, anything else is given as the hex of its bytes.
//!
//! - In a report or a listing (`json_path`): `path` holds the name, or its escaped
//!   text when it is not UTF-8, and `path_bytes` the exact bytes in hex.
//! - In the records the program writes for itself (the journal, the socket's
//!   lines: `JsonPath`): a string, or `{"hex": …}`, read back to the same bytes.

use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The hex spelling of some bytes: `path_bytes`, and the journal's `{"hex": …}`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The JSON fields for a path: `path`, and `path_bytes` (hex) when it is not UTF-8.
/// A UTF-8 name is kept exactly, invisible characters and all: JSON escapes what
/// must be escaped, and programs compare names, they do not look at them.
pub fn json_path(path: &Path) -> (String, Option<String>) {
    let bytes = path.as_os_str().as_bytes();
    match std::str::from_utf8(bytes) {
        Ok(text) => (text.to_owned(), None),
        Err(_) => (super::escape(bytes), Some(hex(bytes))),
    }
}

/// A path as the program's own records spell it: text when it is UTF-8, hex bytes
/// otherwise, so it reads back exactly.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "PathText", try_from = "PathText")]
pub struct JsonPath(PathBuf);

#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum PathText {
    Text(String),
    Bytes { hex: String },
}

impl From<JsonPath> for PathText {
    fn from(path: JsonPath) -> Self {
        match path.0.into_os_string().into_string() {
            Ok(text) => Self::Text(text),
            Err(raw) => Self::Bytes {
                hex: hex(raw.as_bytes()),
            },
        }
    }
}

impl TryFrom<PathText> for JsonPath {
    type Error = String;
    fn try_from(text: PathText) -> Result<Self, String> {
        match text {
            PathText::Text(text) => Ok(Self(PathBuf::from(text))),
            PathText::Bytes { hex } => {
                let bytes = (0..hex.len())
                    .step_by(2)
                    .map(|i| u8::from_str_radix(hex.get(i..i + 2).unwrap_or("?"), 16))
                    .collect::<Result<Vec<u8>, _>>()
                    .map_err(|e| format!("a path in hex is not hex: {e}"))?;
                Ok(Self(PathBuf::from(OsString::from_vec(bytes))))
            }
        }
    }
}

impl From<&Path> for JsonPath {
    fn from(path: &Path) -> Self {
        Self(path.to_owned())
    }
}

impl JsonPath {
    pub fn into_path(self) -> PathBuf {
        self.0
    }

    pub fn as_path(&self) -> &Path {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;

    #[test]
    fn a_path_that_is_not_utf8_reads_back_from_its_hex() {
        let odd = Path::new(OsStr::from_bytes(b"/s/caf\xe9\n"));
        let text = serde_json::to_string(&JsonPath::from(odd)).unwrap();
        assert_eq!(text, r#"{"hex":"2f732f636166e90a"}"#);
        let back: JsonPath = serde_json::from_str(&text).unwrap();
        assert_eq!(back.as_path(), odd);
        let plain: JsonPath = serde_json::from_str(r#""/s/a b""#).unwrap();
        assert_eq!(plain.as_path(), Path::new("/s/a b"));
    }
}
