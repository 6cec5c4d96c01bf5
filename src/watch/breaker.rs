//! The circuit breaker: when an incident crosses its alert threshold (a mass
//! deletion, or files rewritten the way ransomware does) and the person who made
//! it is a PC on the file share, the daemon can end that PC's sessions, with
//! `smbcontrol smbd kill-client-ip ADDRESS` or the owner's own command. Off unless
//! the settings turn it on (`[breaker]`, `--breaker`): a false alarm disconnects a
//! real user.
//!
//! Plan, then execute: `plan` decides from the incident's person and the settings
//! alone whether anyone is cut off; only a PC known to be on the file share, with
//! an address that is not the server's own, is. A local program, the kernel's file
//! server, or anyone the event source did not name is never acted on. An address
//! cut off is not cut off again until the cut-off alert is acknowledged. `cut`
//! runs the command, with a bounded wait: a command that hangs costs the loop at
//! most `CUT_TIMEOUT`, once per incident, and a failure is recorded and survived.

use std::io::Read as _;
use std::net::IpAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{Daemon, DaemonError};
use crate::config::Breaker;
use crate::model::{AlertKind, CutOff, CutOutcome, Incident, Person, Spared, Via};

/// The longest the loop waits for the cut-off command.
const CUT_TIMEOUT: Duration = Duration::from_secs(5);

/// What the breaker is to do about an incident's person.
#[derive(Debug, PartialEq, Eq)]
pub enum Plan {
    /// Nobody to act on: not a PC on the file share, or no address known.
    Nothing,
    /// Decided without running anything (spared, or already cut off): recorded as it is.
    Leave(CutOff),
    /// Cut off the PC at this address.
    Cut(CutOff),
}

/// Decides what the breaker does about `person`. `own` says whether an address is
/// the server's own; `cut_since` when an address was cut off and not acknowledged.
pub fn plan(
    person: Option<&Person>,
    settings: &Breaker,
    own: impl Fn(IpAddr) -> bool,
    cut_since: impl Fn(&str) -> Option<i64>,
    now: i64,
) -> Plan {
    let Some(person) = person.filter(|p| p.via == Via::FileShare) else {
        return Plan::Nothing;
    };
    // Only an address that reads as one is ever handed to a command: the session's
    // text comes from the network, and an empty one names nobody.
    let Some(address) = person
        .address
        .as_deref()
        .and_then(|a| a.trim().parse::<IpAddr>().ok())
        .map(|ip| ip.to_canonical())
    else {
        return Plan::Nothing;
    };
    let mut cut_off = CutOff {
        at: now,
        address: address.to_string(),
        user: person.user.clone(),
        machine: person.machine.clone(),
        outcome: CutOutcome::Cut,
    };
    let spared = if own(address) {
        Some(Spared::OwnAddress)
    } else if settings.never_cut.contains(&address) {
        Some(Spared::Listed)
    } else {
        None
    };
    if let Some(why) = spared {
        cut_off.outcome = CutOutcome::Spared { why };
        return Plan::Leave(cut_off);
    }
    if let Some(since) = cut_since(&cut_off.address) {
        cut_off.outcome = CutOutcome::AlreadyCut { since };
        return Plan::Leave(cut_off);
    }
    Plan::Cut(cut_off)
}

/// Runs the cut-off command for `cut_off`'s PC and says how it went.
pub fn cut(settings: &Breaker, mut cut_off: CutOff, incident: &str) -> CutOff {
    let mut command = match &settings.command {
        Some(command) => {
            let mut sh = Command::new("/bin/sh");
            sh.arg("-c").arg(command);
            sh
        }
        None => {
            let mut smbcontrol = Command::new("smbcontrol");
            smbcontrol
                .args(["smbd", "kill-client-ip"])
                .arg(&cut_off.address);
            smbcontrol
        }
    };
    command
        .env("UNDELETE_CLIENT_ADDRESS", &cut_off.address)
        .env(
            "UNDELETE_CLIENT_USER",
            cut_off.user.as_deref().unwrap_or_default(),
        )
        .env(
            "UNDELETE_CLIENT_MACHINE",
            cut_off.machine.as_deref().unwrap_or_default(),
        )
        .env("UNDELETE_INCIDENT", incident);
    if let Err(why) = run_bounded(command) {
        cut_off.outcome = CutOutcome::Failed { why };
    }
    cut_off
}

/// Runs `command` to its end, `CUT_TIMEOUT` at most (then kills it). The error
/// says why in words, with the first line the command wrote, if any.
fn run_bounded(mut command: Command) -> Result<(), String> {
    let name = command.get_program().to_string_lossy().into_owned();
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{name} could not be started ({e})"))?;
    // Read on a thread of its own: a command writing much would otherwise block.
    let mut stderr = child.stderr.take();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        if let Some(stderr) = stderr.as_mut() {
            let _ = stderr.take(64 * 1024).read_to_string(&mut text);
        }
        text
    });
    let deadline = Instant::now() + CUT_TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "the command did not finish within {} seconds",
                    CUT_TIMEOUT.as_secs()
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => return Err(format!("the command could not be waited for ({e})")),
        }
    };
    let said = reader.join().unwrap_or_default();
    if status.success() {
        return Ok(());
    }
    let said = said
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .map(|l| format!(": {l}"))
        .unwrap_or_default();
    Err(format!("the command failed ({status}){said}"))
}

/// Whether `address` is this server's own: loopback, unspecified, or an address of
/// one of its network interfaces.
pub fn is_own_address(address: IpAddr) -> bool {
    let address = address.to_canonical();
    address.is_loopback() || address.is_unspecified() || interface_addresses().contains(&address)
}

/// The addresses of this server's network interfaces.
fn interface_addresses() -> Vec<IpAddr> {
    let mut found = Vec::new();
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `list` with a list it allocates, freed below; each
    // entry is read only while the list lives.
    unsafe {
        if libc::getifaddrs(&mut list) != 0 {
            return found;
        }
        let mut at = list;
        while !at.is_null() {
            let addr = (*at).ifa_addr;
            if !addr.is_null() {
                match i32::from((*addr).sa_family) {
                    libc::AF_INET => {
                        let v4 = &*(addr as *const libc::sockaddr_in);
                        found.push(IpAddr::from(u32::from_be(v4.sin_addr.s_addr).to_be_bytes()));
                    }
                    libc::AF_INET6 => {
                        let v6 = &*(addr as *const libc::sockaddr_in6);
                        found.push(IpAddr::from(v6.sin6_addr.s6_addr).to_canonical());
                    }
                    _ => {}
                }
            }
            at = (*at).ifa_next;
        }
        libc::freeifaddrs(list);
    }
    found
}

impl Daemon {
    /// The breaker, for an incident that has just crossed its alert threshold: cuts
    /// off its PC where the settings and `plan` say so, records what it did (index
    /// and journal), raises the cut-off alert that holds the address until it is
    /// acknowledged, and returns the incident with it, for the alert it is told in.
    pub(super) fn trip_breaker(
        &mut self,
        mut incident: Incident,
        now: i64,
    ) -> Result<Incident, DaemonError> {
        if !self.config.breaker.enabled {
            return Ok(incident);
        }
        let held: Vec<(String, i64)> = self
            .index
            .open_alerts()?
            .into_iter()
            .filter_map(|a| match a.kind {
                AlertKind::CutOff(address) => Some((address, a.raised_at)),
                _ => None,
            })
            .collect();
        let cut_since = |address: &str| {
            held.iter()
                .find(|(a, _)| a == address)
                .map(|&(_, since)| since)
        };
        let settings = &self.config.breaker;
        let cut_off = match plan(
            incident.person.as_ref(),
            settings,
            is_own_address,
            cut_since,
            now,
        ) {
            Plan::Nothing => return Ok(incident),
            Plan::Leave(cut_off) => cut_off,
            Plan::Cut(cut_off) => cut(settings, cut_off, &incident.code),
        };
        match &cut_off.outcome {
            CutOutcome::Cut => tracing::warn!("{cut_off} (incident {})", incident.code),
            CutOutcome::Failed { .. } => tracing::error!("{cut_off} (incident {})", incident.code),
            _ => tracing::info!("{cut_off} (incident {})", incident.code),
        }
        self.index.record_cut_off(incident.id, &cut_off)?;
        if cut_off.outcome == CutOutcome::Cut {
            let message = crate::incident::cut_off_message(&cut_off, &incident);
            self.index
                .raise_alert(&AlertKind::CutOff(cut_off.address.clone()), &message, now)?;
        }
        incident.cut_off = Some(cut_off);
        Ok(incident)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Breaker {
        Breaker {
            enabled: true,
            command: None,
            never_cut: vec!["192.168.1.10".parse().unwrap()],
        }
    }

    fn decide(person: &Person, cut_at: Option<i64>) -> Plan {
        plan(
            Some(person),
            &settings(),
            |a| a.is_loopback(),
            |_| cut_at,
            7,
        )
    }

    fn outcome(plan: Plan) -> Option<CutOutcome> {
        match plan {
            Plan::Nothing => None,
            Plan::Leave(c) | Plan::Cut(c) => Some(c.outcome),
        }
    }

    #[test]
    fn only_a_pc_on_the_file_share_with_an_address_of_its_own_is_cut_off() {
        let anna = Person::anna_over_the_share();
        match decide(&anna, None) {
            Plan::Cut(c) => {
                assert_eq!(c.address, "192.168.1.23");
                assert_eq!(c.machine.as_deref(), Some("FRONTDESK"));
                assert_eq!(c.user.as_deref(), Some("anna"));
            }
            other => panic!("anna's PC was not cut off: {other:?}"),
        }
        // Not a PC: a program on the server, the kernel's server, a process that ended.
        for via in [Via::Local, Via::KernelServer, Via::Ended] {
            let someone = Person {
                via,
                ..anna.clone()
            };
            assert_eq!(decide(&someone, None), Plan::Nothing, "{via:?}");
        }
        assert_eq!(
            plan(None, &settings(), |_| false, |_| None, 7),
            Plan::Nothing
        );
        // No address, an empty one, or text that is not an address: nobody to name.
        for address in [None, Some(""), Some("  "), Some("FRONTDESK; reboot")] {
            let anna = Person {
                address: address.map(str::to_owned),
                ..anna.clone()
            };
            assert_eq!(decide(&anna, None), Plan::Nothing, "{address:?}");
        }
    }

    #[test]
    fn the_servers_own_address_a_spared_one_and_one_cut_already_are_left_alone() {
        let at = |address: &str| Person {
            address: Some(address.to_owned()),
            ..Person::anna_over_the_share()
        };
        let own = Some(CutOutcome::Spared {
            why: Spared::OwnAddress,
        });
        assert_eq!(outcome(decide(&at("127.0.0.1"), None)), own);
        assert_eq!(outcome(decide(&at("::1"), None)), own);
        // An IPv4 address written the IPv6 way is the same address.
        assert_eq!(outcome(decide(&at("::ffff:127.0.0.1"), None)), own);
        assert_eq!(
            outcome(decide(&at("192.168.1.10"), None)),
            Some(CutOutcome::Spared {
                why: Spared::Listed
            })
        );
        assert_eq!(
            outcome(decide(&at("192.168.1.23"), Some(3))),
            Some(CutOutcome::AlreadyCut { since: 3 })
        );
    }

    #[test]
    fn a_command_that_fails_or_hangs_is_a_failure_in_words() {
        let target = || CutOff {
            at: 1,
            address: "192.168.1.23".into(),
            user: Some("anna".into()),
            machine: None,
            outcome: CutOutcome::Cut,
        };
        let with = |command: &str| Breaker {
            enabled: true,
            command: Some(command.into()),
            never_cut: Vec::new(),
        };
        let told = cut(
            &with(
                "test \"$UNDELETE_CLIENT_ADDRESS/$UNDELETE_CLIENT_USER/$UNDELETE_INCIDENT\" = 192.168.1.23/anna/K7Q-4MDX",
            ),
            target(),
            "K7Q-4MDX",
        );
        assert_eq!(told.outcome, CutOutcome::Cut, "the command is told the PC");
        match cut(&with("echo no such client >&2; exit 3"), target(), "K").outcome {
            CutOutcome::Failed { why } => {
                assert!(why.contains("no such client"), "{why}")
            }
            other => panic!("{other:?}"),
        }
        let started = Instant::now();
        match cut(&with("exec sleep 30"), target(), "K").outcome {
            CutOutcome::Failed { why } => assert!(why.contains("did not finish"), "{why}"),
            other => panic!("{other:?}"),
        }
        assert!(started.elapsed() < Duration::from_secs(20));
    }

    #[test]
    fn loopback_and_the_servers_interfaces_are_its_own() {
        assert!(is_own_address("127.0.0.2".parse().unwrap()));
        assert!(is_own_address("0.0.0.0".parse().unwrap()));
        if let Some(own) = interface_addresses().into_iter().find(|a| !a.is_loopback()) {
            assert!(is_own_address(own));
        }
        // TEST-NET-3: documentation only, never given to an interface.
        assert!(!is_own_address("203.0.113.77".parse().unwrap()));
    }
}
