//! Office PCs on a network of their own: each a network namespace joined to the
//! server by a pair of virtual Ethernet ends (`veth`), with an address of its own
//! that is not the server's, as a PC on the office network has. The server's
//! end has the other address of the pair, and the test's smbd listens there too
//! (`Samba::start_for_pcs`); smbclient runs inside the namespace (`Client::at_pc`).
//!
//! Needs root and a kernel that allows network namespaces; `Pc::new` says why
//! not and the test skips. Everything is removed when the `Pc` is dropped.

use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use super::{is_root, output_text};

/// Numbers the PCs of this run, so tests running at once never share a name or
/// a network.
static NEXT: AtomicU32 = AtomicU32::new(0);

pub struct Pc {
    /// The network namespace smbclient runs in.
    pub netns: String,
    /// The PC's address, as the server sees it.
    pub address: String,
    /// The server's address on this PC's link.
    pub server_address: String,
    host_end: String,
}

impl Pc {
    /// A new PC on its own link to the server. `None`, after printing why, where
    /// network namespaces cannot be made here.
    pub fn new(test: &str) -> Option<Self> {
        if !is_root() {
            eprintln!("SKIPPED {test}: making a network for the office PCs needs root");
            return None;
        }
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let id = std::process::id() % 10_000;
        // In 198.18.0.0/15, kept for testing networks (RFC 2544), so never an office's
        // own: a /24 per test run, a /30 per PC, the server at its first address and
        // the PC at the second.
        let (net, at) = (format!("198.18.{}", id % 250), 4 * (n % 60));
        let pc = Self {
            netns: format!("undelete-pc-{id}-{n}"),
            address: format!("{net}.{}", at + 2),
            server_address: format!("{net}.{}", at + 1),
            host_end: format!("ud{id}s{n}"),
        };
        let pc_end = format!("ud{id}p{n}");
        // Left by a run that was killed: the same names must be free.
        let _ = ip(&["netns", "del", &pc.netns]);
        let _ = ip(&["link", "del", &pc.host_end]);
        let steps: [&[&str]; 8] = [
            &["netns", "add", &pc.netns],
            &[
                "link",
                "add",
                &pc.host_end,
                "type",
                "veth",
                "peer",
                "name",
                &pc_end,
            ],
            &["link", "set", &pc_end, "netns", &pc.netns],
            &[
                "addr",
                "add",
                &format!("{}/30", pc.server_address),
                "dev",
                &pc.host_end,
            ],
            &["link", "set", &pc.host_end, "up"],
            &[
                "-n",
                &pc.netns,
                "addr",
                "add",
                &format!("{}/30", pc.address),
                "dev",
                &pc_end,
            ],
            &["-n", &pc.netns, "link", "set", &pc_end, "up"],
            &["-n", &pc.netns, "link", "set", "lo", "up"],
        ];
        for step in steps {
            if let Err(why) = ip(step) {
                eprintln!(
                    "SKIPPED {test}: cannot make a network for the office PCs (ip {}): {why}",
                    step.join(" ")
                );
                return None;
            }
        }
        Some(pc)
    }
}

impl Drop for Pc {
    fn drop(&mut self) {
        // Deleting the namespace deletes its end of the pair, and so the other.
        let _ = ip(&["netns", "del", &self.netns]);
        let _ = ip(&["link", "del", &self.host_end]);
    }
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run ip: {e}"))?;
    match out.status.success() {
        true => Ok(()),
        false => Err(output_text(&out)),
    }
}
