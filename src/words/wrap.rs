//! Text shaped for where it is read: an 80-column terminal, where each sentence
//! starts a line and a command stands whole on a line of its own, and a letter,
//! 72 columns wide.
//!
//! A path is never split across lines: a customer reads it aloud, a technician
//! copies it. A name may hold spaces, and where it ends cannot be told from the
//! text, so the text says it: a path or a command put into text to be wrapped
//! goes in through `whole_path` or `whole`, which mark where it begins and ends,
//! and the wrap functions keep what is marked on one line, past the width where
//! it is longer (it then has the line to itself). The marks are control
//! characters, which `display_path` always shows escaped, so no name can hold
//! them, and the wrap functions take them out: marked text is only ever for one
//! of them, never printed or stored as it is.

use std::path::Path;

use super::display_path;

/// Where a span to be kept whole begins and ends (STX and ETX).
const WHOLE_START: char = '\u{2}';
const WHOLE_END: char = '\u{3}';

/// `text` (a command, a name), marked to be kept on one line when wrapped.
pub fn whole(text: &str) -> String {
    format!("{WHOLE_START}{text}{WHOLE_END}")
}

/// A path as people see it (`display_path`), marked to be kept on one line when
/// wrapped.
pub fn whole_path(path: &Path) -> String {
    whole(&display_path(path))
}

/// `text` with each place it shows one of `spans` (paths shown, known to the caller)
/// marked to be kept whole: for text made elsewhere that is also used as it is (an
/// alert's message, stored and sent; a sentence also given in JSON).
pub fn whole_in(text: &str, spans: &[String]) -> String {
    let mut spans: Vec<&String> = spans.iter().filter(|s| s.contains(' ')).collect();
    // The longest first: one path may begin with another.
    spans.sort_by_key(|s| std::cmp::Reverse(s.len()));
    spans.dedup();
    let mut out = text.to_owned();
    for span in spans {
        out = out.replace(span.as_str(), &whole(span));
    }
    out
}

/// Marked text (`whole_path`, `whole`) taken apart for where it is stored or shown
/// as it is: the text without its marks, and each outermost span it marked, as
/// `whole_in` takes them back. The daemon stores an alert's message this way, so
/// every command that wraps it later keeps its paths whole.
pub fn marked_spans(text: &str) -> (String, Vec<String>) {
    let mut plain = String::with_capacity(text.len());
    let mut spans = Vec::new();
    let mut inside = 0usize;
    for c in text.chars() {
        match c {
            WHOLE_START => {
                if inside == 0 {
                    spans.push(String::new());
                }
                inside += 1;
            }
            WHOLE_END => inside = inside.saturating_sub(1),
            c => {
                plain.push(c);
                if inside > 0
                    && let Some(span) = spans.last_mut()
                {
                    span.push(c);
                }
            }
        }
    }
    (plain, spans)
}

/// Fills `text` with `fill`, keeping each marked span on one line: its spaces are
/// glued (to a character the text does not hold, one column wide like a space)
/// before filling, so no break falls inside it, and given back after.
fn keeping_whole(text: &str, fill: impl FnOnce(&str) -> String) -> String {
    let glue = ('\u{a0}'..'\u{1100}')
        .find(|c| !text.contains(*c))
        .expect("a text holds fewer than 4,000 different characters");
    let mut glued = String::with_capacity(text.len());
    // How many marked spans the character is in: one may hold another (`whole_in`).
    let mut inside = 0usize;
    for c in text.chars() {
        match c {
            WHOLE_START => inside += 1,
            WHOLE_END => inside = inside.saturating_sub(1),
            ' ' if inside > 0 => glued.push(glue),
            c => glued.push(c),
        }
    }
    fill(&glued).replace(glue, " ")
}

/// Wraps a message for an 80-column terminal: each sentence starts a line, later
/// lines are indented. What is marked (`whole_path`, `whole`) is never split, nor
/// a word, nor the command after ": undelete ", so each stays readable aloud.
pub fn wrap(text: &str) -> String {
    keeping_whole(text, wrap_sentences)
}

fn wrap_sentences(text: &str) -> String {
    let options = textwrap::Options::new(79)
        .subsequent_indent("  ")
        .break_words(false)
        .word_splitter(textwrap::WordSplitter::NoHyphenation);
    let sentences: Vec<String> = sentences(text)
        .into_iter()
        .enumerate()
        .map(|(n, sentence)| {
            let indent = if n == 0 { "" } else { "  " };
            let options = options.clone().initial_indent(indent);
            // A command goes whole on a line of its own, so it can be typed as shown.
            match sentence.trim_end().split_once(": undelete ") {
                Some((words, command)) => format!(
                    "{}:\n    undelete {command}",
                    textwrap::fill(words, options)
                ),
                None => textwrap::fill(sentence.trim_end(), options),
            }
        })
        .collect();
    sentences.join("\n")
}

/// Wraps one line of a list for an 80-column terminal at word boundaries, keeping
/// its indent and indenting what follows by two more; no word, nor what is marked
/// (`whole_path`, `whole`), is ever split.
pub fn wrap_line(line: &str) -> String {
    keeping_whole(line, fill_line)
}

fn fill_line(line: &str) -> String {
    let indent = &line[..line.len() - line.trim_start().len()];
    let more = format!("{indent}  ");
    let options = textwrap::Options::new(79)
        .initial_indent(indent)
        .subsequent_indent(&more)
        .break_words(false)
        .word_splitter(textwrap::WordSplitter::NoHyphenation);
    textwrap::fill(line.trim_start(), options)
}

/// Wraps a paragraph of a letter at 72 columns; no word, nor what is marked
/// (`whole_path`, `whole`), is ever split.
pub fn wrap_letter(text: &str) -> String {
    let options = textwrap::Options::new(72)
        .break_words(false)
        .word_splitter(textwrap::WordSplitter::NoHyphenation);
    keeping_whole(text, |text| textwrap::fill(text, options))
}

/// Wraps to 80 columns after a label ("PROBLEM  "), later lines indented by `indent`
/// under it; no word, nor what is marked (`whole_path`, `whole_in`), is ever split.
pub fn wrap_after(label: &str, text: &str, indent: &str) -> String {
    fill_after(80, label, text, indent)
}

/// Wraps one item of a numbered list ("  1) ") for an 80-column terminal, later
/// lines indented by `indent` under its text, a column short of the edge like
/// `wrap_line`; no word, nor what is marked (`whole_path`, `whole_in`), is ever split.
pub fn wrap_item(label: &str, text: &str, indent: &str) -> String {
    fill_after(79, label, text, indent)
}

fn fill_after(width: usize, label: &str, text: &str, indent: &str) -> String {
    let options = textwrap::Options::new(width)
        .initial_indent(label)
        .subsequent_indent(indent)
        .break_words(false)
        .word_splitter(textwrap::WordSplitter::NoHyphenation);
    keeping_whole(text, |text| textwrap::fill(text, options))
}

/// Splits at each ". " that ends a sentence: one after a word with a '/' in it is
/// part of a path ("/srv/share/Vol. 2 scans"), and a path is never split.
fn sentences(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    for (at, _) in text.match_indices(". ") {
        let word = text[start..at].rsplit(' ').next().unwrap_or_default();
        if !word.contains('/') {
            out.push(&text[start..at + 2]);
            start = at + 2;
        }
    }
    out.push(&text[start..]);
    out.retain(|s| !s.is_empty());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrapped_messages_fit_80_columns_and_keep_commands_whole() {
        let message = "Mass deletion: 2,149 files (4.0 GB) deleted from /srv/share/photos/competition-2026 \
             since 2026-11-22 02:14 (incident K7Q-4MD). To bring them back: undelete --vault \
             /var/lib/undelete restore --incident K7Q-4MD";
        let wrapped = wrap(message);
        let lines: Vec<&str> = wrapped.lines().collect();
        assert_eq!(
            lines.last(),
            Some(&"    undelete --vault /var/lib/undelete restore --incident K7Q-4MD"),
            "{wrapped}"
        );
        assert!(lines.iter().all(|l| l.len() <= 80), "{wrapped}");
        assert_eq!(lines[lines.len() - 2], "  To bring them back:", "{wrapped}");
        assert!(
            wrapped.contains("/srv/share/photos/competition-2026"),
            "{wrapped}"
        );
    }

    #[test]
    fn a_path_with_a_full_stop_and_a_space_is_not_split() {
        let text = "Files in /srv/share/Vol. 2 scans were deleted. Run it again.";
        assert_eq!(
            wrap(text),
            "Files in /srv/share/Vol. 2 scans were deleted.\n  Run it again."
        );
    }

    /// The line of `wrapped` that holds `path` whole, if any does.
    fn line_with<'a>(wrapped: &'a str, path: &str) -> Option<&'a str> {
        wrapped.lines().find(|l| l.contains(path))
    }

    #[test]
    fn a_path_with_spaces_is_never_split_across_lines() {
        let path = "/srv/share/Office files/Tax returns 2025/final version.pdf";
        // Put where the 80th column falls inside it, at every place in turn.
        for lead in 10..75 {
            let text = format!(
                "{} The file {} was deleted. To bring it back: undelete restore",
                "x".repeat(lead),
                whole_path(Path::new(path))
            );
            for wrapped in [wrap(&text), wrap_line(&text), wrap_letter(&text)] {
                assert!(line_with(&wrapped, path).is_some(), "{wrapped}");
                assert!(!wrapped.contains(WHOLE_START), "{wrapped:?}");
                assert!(!wrapped.contains(WHOLE_END), "{wrapped:?}");
            }
        }
    }

    #[test]
    fn a_path_longer_than_the_width_has_a_line_of_its_own() {
        let path = format!(
            "/srv/share/{}Scans of the old ledger.pdf",
            "Archive 1998 ".repeat(6)
        );
        let text = format!(
            "The files in {} were deleted. They can come back.",
            whole_path(Path::new(&path))
        );
        let wrapped = wrap(&text);
        let line = line_with(&wrapped, &path).unwrap_or_else(|| panic!("{wrapped}"));
        assert_eq!(line.trim(), path, "{wrapped}");
        assert_eq!(wrapped.lines().next(), Some("The files in"), "{wrapped}");
        let letter = wrap_letter(&text);
        assert!(letter.lines().any(|l| l.starts_with(&path)), "{letter}");
    }

    #[test]
    fn a_path_at_the_end_of_a_line_moves_down_whole() {
        // Its first word would still fit on the first line, which ends at column 78.
        let text = format!(
            "Mass deletion: 2,149 files (4 GB) were deleted at 02:14 from {}.",
            whole_path(Path::new("/srv/share/Office files"))
        );
        assert_eq!(
            wrap(&text),
            "Mass deletion: 2,149 files (4 GB) were deleted at 02:14 from\n  \
             /srv/share/Office files."
        );
    }

    #[test]
    fn text_without_marks_wraps_as_before_and_a_marked_command_stays_whole() {
        let words = "one two three four five six seven eight nine ten eleven twelve \
                     thirteen fourteen fifteen sixteen";
        assert_eq!(
            wrap_line(words),
            textwrap::fill(
                words,
                textwrap::Options::new(79)
                    .subsequent_indent("  ")
                    .break_words(false)
            )
        );
        let command = "undelete --vault '/srv/my vault' restore --incident K7Q-4MD";
        let text = format!("{} To repeat it: {}", "word ".repeat(12), whole(command));
        let wrapped = wrap_line(&text);
        assert!(line_with(&wrapped, command).is_some(), "{wrapped}");
    }

    #[test]
    fn marked_text_taken_apart_wraps_again_with_its_paths_whole() {
        let path = "/srv/share/Office files/Tax returns 2025/final version.pdf";
        let marked = format!(
            "{} The vault disk ({}) is full.",
            "word ".repeat(9),
            whole_path(Path::new(path))
        );
        let (plain, spans) = marked_spans(&marked);
        assert_eq!(spans, [path]);
        assert!(!plain.contains(WHOLE_START) && !plain.contains(WHOLE_END));
        assert_eq!(plain, marked.replace([WHOLE_START, WHOLE_END], ""));
        for lead in 0..40 {
            let wrapped = wrap(&whole_in(&format!("{}{plain}", "x".repeat(lead)), &spans));
            assert!(line_with(&wrapped, path).is_some(), "{wrapped}");
        }
        assert_eq!(
            marked_spans("no marks"),
            ("no marks".to_owned(), Vec::new())
        );
    }

    #[test]
    fn paths_known_to_the_caller_are_kept_whole_in_text_made_elsewhere() {
        let (outer, inner) = (
            "/srv/share/Office files/Tax 2025",
            "/srv/share/Office files",
        );
        let message = format!(
            "{} Files were deleted from {outer}, next to {inner}.",
            "word ".repeat(11)
        );
        let marked = whole_in(&message, &[inner.to_owned(), outer.to_owned()]);
        for lead in 0..40 {
            let wrapped = wrap(&format!("{}{marked}", "x".repeat(lead)));
            assert!(line_with(&wrapped, outer).is_some(), "{wrapped}");
            assert!(
                line_with(&wrapped, &format!("{inner}.")).is_some(),
                "{wrapped}"
            );
        }
    }
}
