//! Driving a command in a pseudo-terminal, the way a customer at a keyboard
//! does: `script(1)` gives it a real terminal; the test reads the screen and
//! types only once the expected question is shown, so nothing depends on timing.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

/// A safety net against a hung program, not a timing assumption: every wait
/// ends as soon as the text appears.
const PATIENCE: Duration = Duration::from_secs(120);

pub struct Terminal {
    child: Child,
    keyboard: Option<ChildStdin>,
    output: Receiver<Vec<u8>>,
    /// Every byte shown so far; decoded whole, since a chunk may split a character.
    shown: Vec<u8>,
    /// `shown` as a person sees it (see `visible`).
    pub screen: String,
    /// How many times `expect` has already seen each text.
    expected: HashMap<String, usize>,
}

impl Terminal {
    /// Starts `words` (the shell-quoted command line) in a pseudo-terminal.
    pub fn start(words: &str) -> Self {
        let mut child = Command::new("script")
            .args(["-qec", words, "/dev/null"])
            .env("UNDELETE_CONFIG", "/dev/null")
            .env("COLUMNS", "80")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start script(1); is util-linux installed?");
        let mut stdout = child.stdout.take().expect("piped stdout");
        let (tx, output) = channel();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = stdout.read(&mut buf) {
                if tx.send(buf[..n].to_vec()).is_err() {
                    break;
                }
            }
        });
        Self {
            keyboard: child.stdin.take(),
            child,
            output,
            shown: Vec::new(),
            screen: String::new(),
            expected: HashMap::new(),
        }
    }

    /// Waits until `text` is shown once more than earlier calls already saw it: the
    /// same prompt asked twice is waited for twice. Counted, not looked for after an
    /// offset: a line redrawn in place can make the screen shorter.
    pub fn expect(&mut self, text: &str) {
        let deadline = Instant::now() + PATIENCE;
        let before = self.expected.get(text).copied().unwrap_or(0);
        loop {
            if self.screen.matches(text).count() > before {
                self.expected.insert(text.to_owned(), before + 1);
                return;
            }
            match self
                .output
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            {
                Ok(chunk) => self.take(&chunk),
                Err(RecvTimeoutError::Timeout) => {
                    panic!("{text:?} never appeared; the screen:\n{}", self.screen)
                }
                Err(RecvTimeoutError::Disconnected) => {
                    panic!(
                        "the program ended before {text:?} appeared; the screen:\n{}",
                        self.screen
                    )
                }
            }
        }
    }

    /// Types `keys` (`"\n"` is Enter, `"\x03"` is Ctrl-C).
    pub fn send(&mut self, keys: &str) {
        let keyboard = self.keyboard.as_mut().expect("keyboard still open");
        keyboard
            .write_all(keys.as_bytes())
            .expect("type into the terminal");
        keyboard.flush().expect("type into the terminal");
    }

    /// Waits for the program to end; returns its exit status and the whole screen.
    pub fn finish(mut self) -> (ExitStatus, String) {
        drop(self.keyboard.take());
        while let Ok(chunk) = self.output.recv_timeout(PATIENCE) {
            self.take(&chunk);
        }
        let status = self.child.wait().expect("wait for script(1)");
        (status, self.screen)
    }

    fn take(&mut self, chunk: &[u8]) {
        self.shown.extend_from_slice(chunk);
        self.screen = visible(&String::from_utf8_lossy(&self.shown));
    }
}

/// What is left on the screen once the terminal has done its work: escape
/// sequences (colours, cursor moves, line erasing) do not show, and a carriage
/// return starts the line over, so a progress bar that was cleared leaves nothing.
pub fn visible(raw: &str) -> String {
    let mut plain = String::with_capacity(raw.len());
    let mut chars = raw.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            // CSI: ESC [ parameters, then one final letter.
            if chars.next_if_eq(&'[').is_some() {
                while chars.next().is_some_and(|c| !c.is_ascii_alphabetic()) {}
            }
            continue;
        }
        plain.push(c);
    }
    plain
        .replace("\r\n", "\n")
        .split('\n')
        .map(|line| line.rsplit('\r').next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}
