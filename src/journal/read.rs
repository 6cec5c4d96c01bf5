//! Reading the journal back, line by line, for `rebuild`: a line cut short or
//! damaged is said and passed over, never fatal.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use super::record::{Record, decode};
use super::{JournalError, Result, files};

/// One line of the journal as read back: where it is, and its record, or why it
/// cannot be read (the line is then skipped, never fatal).
#[derive(Debug)]
pub struct Line {
    pub file: PathBuf,
    /// Counted from 1.
    pub number: u64,
    pub record: std::result::Result<Record, String>,
}

/// Reads the journal in `dir` back, file by file in the order written. A last line
/// cut short by a crash ends its file, said as such; a line whose checksum fails is
/// said and passed over.
pub fn read(dir: &Path) -> Result<Reader> {
    Ok(Reader {
        files: files(dir)?.into_iter(),
        open: None,
        buf: Vec::new(),
    })
}

/// The lines of a journal, as `read` gives them.
pub struct Reader {
    files: std::vec::IntoIter<PathBuf>,
    /// The file being read, and the number of its last line.
    open: Option<(PathBuf, BufReader<File>, u64)>,
    buf: Vec<u8>,
}

impl Iterator for Reader {
    type Item = Result<Line>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let Some((path, reader, number)) = &mut self.open else {
                let path = self.files.next()?;
                match File::open(&path) {
                    Ok(file) => self.open = Some((path, BufReader::new(file), 0)),
                    Err(e) => return Some(Err(JournalError::io("open", &path, e))),
                }
                continue;
            };
            self.buf.clear();
            let n = match reader.read_until(b'\n', &mut self.buf) {
                Ok(n) => n,
                Err(e) => return Some(Err(JournalError::io("read", path, e))),
            };
            if n == 0 {
                self.open = None;
                continue;
            }
            *number += 1;
            let line = |record| Line {
                file: path.clone(),
                number: *number,
                record,
            };
            let Some(text) = self.buf.strip_suffix(b"\n") else {
                let cut = line(Err(
                    "the last record was cut short, most likely by a crash".into()
                ));
                self.open = None;
                return Some(Ok(cut));
            };
            if text.is_empty() {
                continue;
            }
            return Some(Ok(line(decode(text))));
        }
    }
}
