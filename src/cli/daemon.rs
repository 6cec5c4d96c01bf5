//! `undelete daemon`: protect folders until SIGTERM or SIGINT; SIGHUP reads the
//! settings again.

use std::process::ExitCode;

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use crate::config::Config;
use crate::watch::{self, Inbox};

pub fn run(config: Config) -> anyhow::Result<ExitCode> {
    raise_open_file_limit();
    // Before any thread starts: each inherits it (see `step_aside`).
    step_aside();
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
    watch::run(config, inbox)?;
    Ok(ExitCode::SUCCESS)
}

/// The nice value the daemon runs at, unless it was started with a higher one.
const NICE: i32 = 10;

/// Gives the daemon a lower CPU priority than the people using the server, and
/// than a restore they are waiting for. On two cores, recording a restore's 9,188
/// files as they arrived took about 1.0 s of the daemon's CPU; at nice 10 it runs
/// less often, on larger batches, and took 0.6 s, and the restore took 3.03 s
/// instead of 3.36 s (means of five runs each, docs/benchmarks.md). The price: on
/// a CPU busy with other work the daemon falls behind, and a file written and
/// deleted within that delay is not kept.
///
/// On Linux a nice value belongs to a thread, and threads inherit their creator's:
/// this must run before the daemon starts any. Best effort, like any nice.
fn step_aside() {
    use rustix::process::{getpriority_process, setpriority_process};
    if getpriority_process(None).is_ok_and(|nice| nice < NICE)
        && let Err(e) = setpriority_process(None, NICE)
    {
        tracing::debug!("cannot lower the daemon's CPU priority: {e}");
    }
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
