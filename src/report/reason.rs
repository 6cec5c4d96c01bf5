//! Why a file did not come back whole: one reason, with the stable code programs
//! read in the JSON report and the customer's wording in one `Display`.
//!
//! It says nothing of what to do about it; the report and the wizard decide that.

use std::path::PathBuf;

use crate::model::{Incomplete, Uncaptured};
use crate::vault::DamageError;

/// Why a file of a restore is lost, left out, stopped or back only in part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LossReason {
    /// It was never copied, and the index says why (a rule, a limit, too fast, …).
    Uncaptured(Uncaptured),
    /// A FIFO, socket or device: recorded, never copied.
    Special,
    /// A file with no copy and no recorded reason.
    NeverCaptured,
    /// Its copy is not in the vault, or could not be read there (the words of the
    /// vault's error).
    Missing(String),
    /// Its copy no longer matches its hash.
    Damaged,
    /// Its way to the destination is blocked (a link planted, a file in a folder's place).
    Blocked(String),
    /// Every name beside the one taken was taken too.
    NoFreeName,
    /// Its recorded name would leave the destination.
    UnsafeName(String),
    /// Its destination folder could not be opened when writing.
    DestinationUnopened,
    /// The disk under this destination filled up.
    DestinationFull { base: PathBuf },
    /// Writing it failed (the system's words).
    WriteFailed(String),
    /// Not written because the restore was stopped first.
    Stopped,
    /// A lock file of a program, left out on purpose.
    ProgramLock,
    /// Brought back, but what was kept does not hold its last content.
    Incomplete(Incomplete),
}

impl LossReason {
    /// The stable code of the JSON report (`too_large`, `excluded`, `damaged`, …).
    pub fn code(&self) -> &'static str {
        match self {
            Self::Uncaptured(why) => why.code(),
            Self::Special => "special",
            Self::NeverCaptured => "never_captured",
            Self::Missing(_) => "missing",
            Self::Damaged => "damaged",
            Self::Blocked(_) | Self::NoFreeName => "blocked",
            Self::UnsafeName(_) => "unsafe_name",
            Self::DestinationUnopened => "destination",
            Self::DestinationFull { .. } => "destination_full",
            Self::WriteFailed(_) => "write_failed",
            Self::Stopped => "stopped",
            Self::ProgramLock => "program_lock",
            Self::Incomplete(why) => why.code(),
        }
    }

    /// For a lost file: true when it was never copied (a rule, a limit, deleted too
    /// fast), false when a copy existed and still could not be brought back.
    pub fn expected(&self) -> bool {
        !matches!(
            self,
            Self::Missing(_)
                | Self::Damaged
                | Self::Blocked(_)
                | Self::NoFreeName
                | Self::UnsafeName(_)
                | Self::DestinationUnopened
                | Self::DestinationFull { .. }
                | Self::WriteFailed(_)
        )
    }

    /// The exclude rule that kept it out, if that is why it was lost.
    pub fn excluding_rule(&self) -> Option<&str> {
        match self {
            Self::Uncaptured(Uncaptured::Excluded { rule }) => Some(rule),
            _ => None,
        }
    }
}

impl std::fmt::Display for LossReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Uncaptured(why) => write!(f, "{why}"),
            Self::Special => f.write_str("not a regular file; it cannot be restored"),
            Self::NeverCaptured => f.write_str("it was never copied"),
            Self::Missing(why) | Self::Blocked(why) | Self::UnsafeName(why) => f.write_str(why),
            Self::Damaged => write!(f, "{}", DamageError::Damaged),
            Self::NoFreeName => f.write_str("no free name to restore it under"),
            Self::DestinationUnopened => f.write_str("its destination folder could not be opened"),
            Self::DestinationFull { base } => write!(
                f,
                "not restored because the disk at {} is full",
                base.display()
            ),
            Self::WriteFailed(error) => write!(f, "could not be written: {error}"),
            Self::Stopped => f.write_str("not restored yet: the restore was stopped"),
            Self::ProgramLock => {
                f.write_str("a lock file of a program, not brought back on purpose")
            }
            Self::Incomplete(why) => write!(f, "{why}"),
        }
    }
}
