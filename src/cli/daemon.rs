//! `undelete daemon`: protect folders until SIGTERM or SIGINT; SIGHUP reads the
//! settings again.

use std::process::ExitCode;

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use crate::config::{Config, RawArgs};
use crate::watch::{self, Inbox};

pub fn run(config: Config, raw: RawArgs) -> anyhow::Result<ExitCode> {
    raise_open_file_limit();
    let inbox = Inbox::default();
    let stopper = inbox.stopper();
    let mut signals = Signals::new([SIGTERM, SIGINT, SIGHUP])?;
    std::thread::spawn(move || {
        for signal in signals.forever() {
            if signal == SIGHUP {
                tracing::info!("SIGHUP received; reading the settings again");
                stopper.reload();
            } else {
                tracing::info!("signal {signal} received; finishing work in progress");
                stopper.stop();
                break;
            }
        }
    });
    // The same flags and the file as it is now: flags still win over the file.
    let reread = move || Config::load(raw.clone());
    watch::run(config, inbox, Box::new(reread))?;
    Ok(ExitCode::SUCCESS)
}

/// Lets the daemon open as many files as the system allows it. Copies waiting for
/// the vault's next flush each hold a descriptor (see `vault::Incoming`), and the
/// soft limit of 1024 that services start with is a leftover of `select()`, which
/// nothing here uses. Best effort: with the low limit, copies wait under names instead.
fn raise_open_file_limit() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    if limit.current < limit.maximum {
        let raised = rustix::process::Rlimit {
            current: limit.maximum,
            ..limit
        };
        if let Err(e) = setrlimit(Resource::Nofile, raised) {
            tracing::debug!("cannot raise the limit on open files: {e}");
        }
    }
}
