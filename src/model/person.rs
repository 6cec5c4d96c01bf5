//! Who made a change or a deletion, as far as the event source could tell.

/// How the person who made a change reached the files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Via {
    /// A program run on the server itself (a shell, a backup, a script).
    Local,
    /// Samba's `smbd`, serving a PC of the office.
    FileShare,
    /// The kernel's own file server (NFS, ksmbd): it acts for a client it does not name.
    KernelServer,
    /// Only the process id is known: it had ended before it could be looked at.
    Ended,
}

impl std::fmt::Display for Via {
    /// The way in, as people read it after a name: "over the file share".
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Local => "on the server itself",
            Self::FileShare => "over the file share",
            Self::KernelServer => "through the kernel's file server (NFS or ksmbd)",
            Self::Ended => "(it had ended before it could be asked who it was)",
        })
    }
}

/// Who made a change or a deletion, as far as the event source could tell. `None`
/// where the source cannot say (inotify names no process).
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Person {
    pub via: Via,
    /// The account: the Samba user over the file share, else the Unix user of the
    /// process. None for the kernel's file server, which does not say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The program's name (`rm`, `smbd`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process: Option<String>,
    pub pid: i32,
    /// Its command line, shortened (see `identify`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// The PC's name over the file share, when it gave one (NetBIOS, port 139).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub machine: Option<String>,
    /// The PC's network address over the file share.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
}

impl Person {
    /// A Samba user deleting from her PC, for tests of what is said of a person.
    #[cfg(test)]
    pub fn anna_over_the_share() -> Self {
        Self {
            via: Via::FileShare,
            user: Some("anna".into()),
            process: Some("smbd".into()),
            pid: 4242,
            command: None,
            machine: Some("FRONTDESK".into()),
            address: Some("192.168.1.23".into()),
        }
    }

    /// What tells one person from another for incidents: the way in, the user and the
    /// PC, never the process (one person's `rm` and `find -delete`, or a PC that
    /// connected again, are the same person).
    pub fn same_as(&self, other: &Self) -> bool {
        self.via == other.via
            && self.user == other.user
            && self.machine == other.machine
            && self.address == other.address
            && (self.via != Via::Ended || self.pid == other.pid)
    }

    /// Whether more than a pid is known: one that had ended before it could be
    /// asked tells nothing of who, and is no evidence of another person.
    pub fn is_known(&self) -> bool {
        self.via != Via::Ended
    }

    /// For programs: `{user, process, pid, command, machine, address, via}` (`via`
    /// one of `local`, `file_share`, `kernel_server`, `ended`), with `said`, the
    /// words people read.
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "user": self.user,
            "process": self.process,
            "pid": self.pid,
            "command": self.command,
            "machine": self.machine,
            "address": self.address,
            "via": self.via,
            "said": self.to_string(),
        })
    }

    /// "FRONTDESK (192.168.1.23)", "192.168.1.23", or None: the PC, as people say it.
    pub fn pc(&self) -> Option<String> {
        match (&self.machine, &self.address) {
            (Some(m), Some(a)) => Some(format!("{m} ({a})")),
            (Some(m), None) => Some(m.clone()),
            (None, Some(a)) => Some(a.clone()),
            (None, None) => None,
        }
    }
}

impl std::fmt::Display for Person {
    /// "anna from FRONTDESK (192.168.1.23) over the file share", "bob, running rm on
    /// the server itself", what follows "deleted by".
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let user = self.user.as_deref().unwrap_or("someone");
        match self.via {
            Via::FileShare => match self.pc() {
                Some(pc) => write!(f, "{user} from {pc} {}", self.via),
                None => write!(f, "{user} {}", self.via),
            },
            Via::Local => match &self.process {
                Some(process) => write!(f, "{user}, running {process} {}", self.via),
                None => write!(f, "{user} {}", self.via),
            },
            Via::KernelServer => write!(
                f,
                "a client of the kernel's file server (NFS or ksmbd), which does not say who"
            ),
            Via::Ended => write!(f, "process {} {}", self.pid, self.via),
        }
    }
}
