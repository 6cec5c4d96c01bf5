//! `undelete daemon`: protect folders until SIGTERM or SIGINT.

use std::process::ExitCode;

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use crate::config::Config;
use crate::watch::{self, Inbox};

pub fn run(config: &Config) -> anyhow::Result<ExitCode> {
    let inbox = Inbox::default();
    let stopper = inbox.stopper();
    let mut signals = Signals::new([SIGTERM, SIGINT])?;
    std::thread::spawn(move || {
        if let Some(signal) = signals.forever().next() {
            tracing::info!("signal {signal} received; finishing work in progress");
            stopper.stop();
        }
    });
    watch::run(config, inbox)?;
    Ok(ExitCode::SUCCESS)
}
