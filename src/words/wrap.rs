//! Text shaped for where it is read: an 80-column terminal, where each sentence
//! starts a line and a command stands whole on a line of its own, and a letter,
//! 72 columns wide. Paths and commands are never split inside a word.

/// Wraps a message for an 80-column terminal: each sentence starts a line, later
/// lines are indented. Paths are never split inside a word and commands not at
/// all, so each stays readable aloud.
pub fn wrap(text: &str) -> String {
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
/// its indent and indenting what follows by two more; no word (a path, a command)
/// is ever split.
pub fn wrap_line(line: &str) -> String {
    let indent = &line[..line.len() - line.trim_start().len()];
    let more = format!("{indent}  ");
    let options = textwrap::Options::new(79)
        .initial_indent(indent)
        .subsequent_indent(&more)
        .break_words(false)
        .word_splitter(textwrap::WordSplitter::NoHyphenation);
    textwrap::fill(line.trim_start(), options)
}

/// Wraps a paragraph of a letter at 72 columns, paths and commands whole.
pub fn wrap_letter(text: &str) -> String {
    let options = textwrap::Options::new(72)
        .break_words(false)
        .word_splitter(textwrap::WordSplitter::NoHyphenation);
    textwrap::fill(text, options)
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
}
