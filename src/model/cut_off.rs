//! What the circuit breaker did about an incident: the PC it cut off from the
//! file share, or tried to, or why it left it alone.

/// What the breaker did about one incident's PC, when it crossed the alert threshold.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CutOff {
    pub at: i64,
    /// The PC's network address, as the file share gave it (checked: an IP address).
    pub address: String,
    /// The Samba user and the PC's name, where the file share said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub machine: Option<String>,
    pub outcome: CutOutcome,
}

/// What came of it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum CutOutcome {
    /// The command ran and succeeded: the PC's sessions were ended.
    Cut,
    /// The command could not run, failed, or did not finish in time.
    Failed { why: String },
    /// Cut off before (at `since`), and nobody acknowledged that since: never twice.
    AlreadyCut { since: i64 },
    /// Never cut off: the server's own address, or one the settings spare.
    Spared { why: Spared },
}

/// Why an address is never cut off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Spared {
    /// The server's own (loopback, or an address of one of its interfaces): every
    /// program reaching the share through it, a proxy's users too, would be cut.
    OwnAddress,
    /// Listed in `never_cut` of the `[breaker]` settings.
    Listed,
}

impl CutOutcome {
    /// The stable code scripts read (`UNDELETE_CUT_OFF`, JSON `outcome`).
    pub fn code(&self) -> &'static str {
        match self {
            Self::Cut => "cut",
            Self::Failed { .. } => "failed",
            Self::AlreadyCut { .. } => "already_cut",
            Self::Spared { .. } => "spared",
        }
    }
}

impl CutOff {
    /// "FRONTDESK (192.168.1.23)", or the address alone.
    pub fn pc(&self) -> String {
        match &self.machine {
            Some(machine) => format!("{machine} ({})", self.address),
            None => self.address.clone(),
        }
    }

    /// For programs: `{address, user, machine, at, outcome, why, since, said}`.
    pub fn json(&self) -> serde_json::Value {
        let (why, since) = match &self.outcome {
            CutOutcome::Failed { why } => (Some(why.clone()), None),
            CutOutcome::Spared { why } => (
                Some(
                    match why {
                        Spared::OwnAddress => "own_address",
                        Spared::Listed => "never_cut",
                    }
                    .to_owned(),
                ),
                None,
            ),
            CutOutcome::AlreadyCut { since } => (None, Some(crate::clock::rfc3339(*since))),
            CutOutcome::Cut => (None, None),
        };
        serde_json::json!({
            "address": self.address,
            "user": self.user,
            "machine": self.machine,
            "at": crate::clock::rfc3339(self.at),
            "outcome": self.outcome.code(),
            "why": why,
            "since": since,
            "said": self.to_string(),
        })
    }
}

impl std::fmt::Display for CutOff {
    /// One sentence: "undelete cut off FRONTDESK (192.168.1.23) from the file share
    /// at 02:14.", or what it did instead.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let clock = |ns: i64| crate::clock::to_local(ns).format("%H:%M").to_string();
        let pc = self.pc();
        let at = clock(self.at);
        match &self.outcome {
            CutOutcome::Cut => write!(f, "undelete cut off {pc} from the file share at {at}."),
            CutOutcome::Failed { why } => write!(
                f,
                "undelete tried to cut off {pc} from the file share at {at}, but could not: \
                 {why}."
            ),
            CutOutcome::AlreadyCut { since } => write!(
                f,
                "undelete did not cut off {pc} again: it cut it off at {} and nobody has \
                 acknowledged that yet (undelete alerts).",
                crate::clock::local(*since)
            ),
            CutOutcome::Spared {
                why: Spared::OwnAddress,
            } => write!(
                f,
                "undelete did not cut off {pc}: it is the server's own address, and cutting \
                 it off would disconnect every program that reaches the share through it."
            ),
            CutOutcome::Spared {
                why: Spared::Listed,
            } => write!(
                f,
                "undelete did not cut off {pc}: the settings say never to (never_cut)."
            ),
        }
    }
}
