//! The questions of the guided restore: numbered steps, plain numbered prompts
//! that read the same over the phone as on the screen, and a typo asked again,
//! saying what is accepted.

use std::io::{self, BufRead, Write};

use super::STEPS;
use crate::cli::interrupt::Interrupt;
use crate::words::{wrap, wrap_item};

pub(super) struct Wizard<'a> {
    pub(super) interactive: bool,
    pub(super) step: u32,
    pub(super) interrupt: &'a Interrupt,
}

impl Wizard<'_> {
    pub(super) fn step(&mut self, title: &str) {
        self.step += 1;
        println!();
        println!("Step {} of {STEPS}: {title}", self.step);
        println!("{}", "-".repeat(11 + title.len() + 1));
    }

    /// Asks a question; Enter gives the empty answer. Without questions, answers "".
    pub(super) fn ask(&self, question: &str) -> anyhow::Result<String> {
        if !self.interactive {
            return Ok(String::new());
        }
        print!("{question} ");
        io::stdout().flush()?;
        let mut line = String::new();
        if io::stdin().lock().read_line(&mut line)? == 0 {
            // Ctrl-C, with the terminal closed right after it, is still Ctrl-C.
            self.interrupt.stop_if_pressed();
            anyhow::bail!("no answer (input closed); nothing was changed");
        }
        Ok(line.trim().to_owned())
    }

    /// Asks until `accept` takes the answer: a typo is not the end of the call. The
    /// refusal says what is accepted, and the question is asked again.
    pub(super) fn ask_until<T>(
        &self,
        question: &str,
        mut accept: impl FnMut(&str) -> Result<T, String>,
    ) -> anyhow::Result<T> {
        loop {
            let answer = self.ask(question)?;
            match accept(&answer) {
                Ok(value) => return Ok(value),
                Err(_) if !self.interactive => {
                    anyhow::bail!("no choice can be made without questions; nothing was changed")
                }
                Err(why) => println!("{}", wrap(&why)),
            }
        }
    }
}

/// One numbered line of a menu, wrapped under its own text: "  1) Today 02:14 — …".
/// A path in `text` is marked (`whole_path`, `whole_in`) to be kept on one line.
pub(super) fn menu_line(label: &str, text: &str) -> String {
    wrap_item(&format!("  {label} "), text, "     ")
}

/// Takes "", or a number from 1 to `n`, as an index from 0 (Enter is the first).
pub(super) fn number_up_to(answer: &str, n: usize) -> Option<usize> {
    match answer {
        "" => Some(0),
        text => text
            .parse::<usize>()
            .ok()
            .filter(|k| (1..=n).contains(k))
            .map(|k| k - 1),
    }
}

/// "1, 2 or 3" for the accepted numbers.
pub(super) fn numbers(n: usize) -> String {
    let all: Vec<String> = (1..=n).map(|k| k.to_string()).collect();
    match all.split_last() {
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_menu_line_keeps_a_folder_with_spaces_whole() {
        let folder = "/srv/share/Office files/Accounts and tax returns/Year 2025, final";
        let text = format!(
            "Today 02:14 — 2,149 files (4.0 GB) deleted from {}",
            crate::words::whole_path(std::path::Path::new(folder))
        );
        let line = menu_line("1)", &text);
        assert!(line.starts_with("  1) Today 02:14"), "{line}");
        assert!(line.lines().any(|l| l.contains(folder)), "{line}");
        assert!(!line.contains(['\u{2}', '\u{3}']), "{line:?}");
    }
}
