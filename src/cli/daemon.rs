//! `undelete daemon`: protect folders until SIGTERM or SIGINT; SIGHUP reads the
//! settings again.

use std::process::ExitCode;

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use crate::config::{Config, RawArgs};
use crate::watch::{self, Inbox};

pub fn run(config: Config, raw: RawArgs) -> anyhow::Result<ExitCode> {
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
