//! Ctrl-C for the commands that restore.
//!
//! Before the restore starts (at a question, while planning) Ctrl-C stops at
//! once: nothing has been changed yet. During the restore the first Ctrl-C lets
//! the files being written finish, so no half-written file is left under a real
//! name, and the report lists what was not restored yet; a second one stops at
//! once (the hidden temporary files it leaves are removed by the next run).
//!
//! A thread waits for the signals rather than a signal handler acting directly,
//! because saying "nothing was changed" and exiting need ordinary code.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

/// Exit code of a command stopped by Ctrl-C, as shells report it (128 + SIGINT).
const STOPPED: i32 = 130;

pub struct Interrupt {
    restoring: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    /// Set by the signal handler itself, at once: a question that finds its input
    /// closed can tell Ctrl-C (the terminal closes right after it) from a script
    /// that ran out of answers, before the waiting thread has had its turn.
    pressed: Arc<AtomicBool>,
}

/// Says that nothing was changed, and exits as a stopped command does.
fn stopped_before_any_change() -> ! {
    println!();
    println!("Stopped. Nothing was changed.");
    std::process::exit(STOPPED);
}

impl Interrupt {
    pub fn install() -> std::io::Result<Self> {
        let restoring = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let pressed = Arc::new(AtomicBool::new(false));
        signal_hook::flag::register(SIGINT, Arc::clone(&pressed))?;
        let mut signals = Signals::new([SIGINT, SIGTERM])?;
        let (r, s) = (Arc::clone(&restoring), Arc::clone(&stop));
        std::thread::spawn(move || {
            for _ in signals.forever() {
                if !r.load(Ordering::SeqCst) {
                    stopped_before_any_change();
                }
                if s.swap(true, Ordering::SeqCst) {
                    eprintln!("Stopped at once. Run the same command again to finish.");
                    std::process::exit(STOPPED);
                }
                eprintln!();
                eprintln!("Stopping: finishing the files being written now…");
            }
        });
        Ok(Self {
            restoring,
            stop,
            pressed,
        })
    }

    /// Before the restore starts: if Ctrl-C was pressed, stops as it would have.
    pub fn stop_if_pressed(&self) {
        if self.pressed.load(Ordering::SeqCst) && !self.restoring.load(Ordering::SeqCst) {
            stopped_before_any_change();
        }
    }

    /// From now on Ctrl-C lets the restore finish what it is writing.
    pub fn restore_starts(&self) {
        self.restoring.store(true, Ordering::SeqCst);
    }

    /// Set once Ctrl-C was pressed during the restore.
    pub fn stop_flag(&self) -> &AtomicBool {
        &self.stop
    }
}
