//! The report in words: the summary read aloud, the verdict, who deleted the
//! files, and the whole text saved beside the JSON.

use super::*;

impl RestoreReport {
    /// The summary as lines to read out: the count, the lost files by reason and by
    /// kind, the lock files left out, a stop. A dry run says what would happen.
    ///
    /// "Recovered 2,132 of 2,149 files (3.9 GB).", "17 could not be recovered:",
    /// "  14 were larger than the 2 MB capture limit", …,
    /// "Lost, by kind: 14 images, 3 other files."
    pub fn summary_lines(&self) -> Vec<String> {
        let c = self.counts();
        let future = self.dry_run;
        let be = |n: u64| match (future, n == 1) {
            (true, true) => "is",
            (true, false) => "are",
            (false, true) => "was",
            (false, false) => "were",
        };
        let mut lines = Vec::new();
        let mut first = if future {
            format!(
                "{} of {} would be recovered ({}).",
                count(c.recovered),
                files(c.files),
                bytes(c.recovered_bytes)
            )
        } else {
            format!(
                "Recovered {} of {} ({}).",
                count(c.recovered),
                files(c.files),
                bytes(c.recovered_bytes)
            )
        };
        if c.already_present > 0 {
            first.push_str(&format!(
                " {} {} already in place.",
                count(c.already_present),
                be(c.already_present)
            ));
        }
        lines.push(first);
        if let Some(at) = self.as_before {
            lines.push(format!(
                "Each file {} back as it was at {}, before the encryption began.",
                if future { "would come" } else { "came" },
                crate::clock::local(at)
            ));
        }
        lines.extend(self.encrypted_lines());
        if c.lost > 0 {
            lines.push(format!(
                "{} {} be recovered:",
                count(c.lost),
                if future { "would not" } else { "could not" }
            ));
            for (reason, group) in self.lost_by_reason() {
                let n = group.len() as u64;
                // "14 were larger than the capture limit", but "2: the vault disk was full".
                let adjectival = [
                    "larger", "excluded", "deleted", "damaged", "missing", "moved", "not",
                    "purged", "kept",
                ];
                lines.push(if adjectival.iter().any(|w| reason.starts_with(w)) {
                    format!("  {} {} {reason}", count(n), be(n))
                } else {
                    format!("  {}: {reason}", count(n))
                });
            }
            lines.push(format!("Lost, by kind: {}.", self.kinds(Outcome::Lost)));
        }
        if c.left_out > 0 {
            // Brought back, a lock file would only make its program refuse the document.
            lines.push(match c.left_out {
                1 => format!(
                    "1 lock file of a program {} left out on purpose (see the report).",
                    be(1)
                ),
                n => format!(
                    "{} lock files of programs {} left out on purpose (see the report).",
                    count(n),
                    be(n)
                ),
            });
        }
        if c.partial > 0 {
            let parts: Vec<String> = self
                .by_reason(Outcome::Partial)
                .iter()
                .map(|(reason, group)| format!("{}: {reason}", count(group.len() as u64)))
                .collect();
            lines.push(format!(
                "{} {} back only in part: {}.",
                count(c.partial),
                if future { "would come" } else { "came" },
                parts.join("; ")
            ));
        }
        if c.stopped > 0 {
            lines.push(format!(
                "The restore was stopped before the end: {} not restored yet.",
                files(c.stopped)
            ));
        }
        lines
    }

    /// What became of the encrypted copies, in a sentence for each outcome.
    fn encrypted_lines(&self) -> Vec<String> {
        let future = self.dry_run;
        let were = |n: usize| match (future, n == 1) {
            (true, _) => "would be",
            (false, true) => "was",
            (false, false) => "were",
        };
        let copies = |n: usize| match n {
            1 => "1 encrypted copy".to_owned(),
            n => format!("{} encrypted copies", count(n as u64)),
        };
        let mut lines = Vec::new();
        for (heading, group) in self.encrypted_groups() {
            let n = group.len();
            let place = if n == 1 {
                "where it is"
            } else {
                "where they are"
            };
            lines.push(match heading {
                EncryptedGroup::Left => format!("{} {} left {place}.", copies(n), were(n)),
                EncryptedGroup::LeftBecause(why) => {
                    format!("{} {} left {place}: {why}.", copies(n), were(n))
                }
                EncryptedGroup::Moved => {
                    // The folders on lines of their own: a path is never split.
                    let folders: std::collections::BTreeSet<String> = group
                        .iter()
                        .filter_map(|e| self.aside_folder(e))
                        .map(|f| format!("  {}", display_path(&f)))
                        .collect();
                    lines.push(format!("{} {} moved aside, into:", copies(n), were(n)));
                    lines.extend(folders);
                    continue;
                }
                EncryptedGroup::Deleted => format!(
                    "{} {} deleted (the vault keeps a copy of each).",
                    copies(n),
                    were(n)
                ),
            });
        }
        lines
    }

    /// The encrypted copies by what became of them, in a fixed order.
    fn encrypted_groups(&self) -> Vec<(EncryptedGroup, Vec<&EncryptedResult>)> {
        let mut groups: BTreeMap<EncryptedGroup, Vec<&EncryptedResult>> = BTreeMap::new();
        for e in &self.encrypted {
            let group = match (&e.outcome, &e.why_left) {
                (_, Some(why)) => EncryptedGroup::LeftBecause(why.clone()),
                (EncryptedOutcome::Left, None) => EncryptedGroup::Left,
                (EncryptedOutcome::MovedTo(_), None) => EncryptedGroup::Moved,
                (EncryptedOutcome::Deleted, None) => EncryptedGroup::Deleted,
            };
            groups.entry(group).or_default().push(e);
        }
        groups.into_iter().collect()
    }

    /// The incident's folder of encrypted copies that `e` was moved into.
    fn aside_folder(&self, e: &EncryptedResult) -> Option<PathBuf> {
        let EncryptedOutcome::MovedTo(to) = &e.outcome else {
            return None;
        };
        let name = crate::model::encrypted_folder(self.incident.as_deref()?);
        to.ancestors()
            .find(|a| a.file_name().is_some_and(|n| n == name.as_str()))
            .map(Path::to_owned)
    }

    /// "14 images, 1 document, 2 other files": the files of `outcome` by kind.
    pub fn kinds(&self, outcome: Outcome) -> String {
        let parts: Vec<String> = self
            .by_category(outcome)
            .iter()
            .map(|(cat, n)| format!("{} {}", count(*n), cat.noun(*n)))
            .collect();
        parts.join(", ")
    }

    /// Recovered and lost by kind of file: "14 images, 3 documents".
    pub fn by_category(&self, outcome: Outcome) -> Vec<(Category, u64)> {
        let mut m: BTreeMap<Category, u64> = BTreeMap::new();
        for f in self.files.iter().filter(|f| f.outcome == outcome) {
            *m.entry(Category::of(&f.path)).or_default() += 1;
        }
        m.into_iter().collect()
    }

    /// The last line: whether the exit code says "all that could be done was done".
    pub fn verdict(&self) -> String {
        let c = self.counts();
        if self.dry_run {
            return "A dry run: nothing was changed. The same command without --dry-run \
                    restores the files."
                .to_owned();
        }
        let destination_full = self
            .files
            .iter()
            .any(|f| matches!(f.reason, Some(LossReason::DestinationFull { .. })));
        if c.stopped > 0 {
            "Stopped before the end. Run the same command again to finish; \
             nothing is restored twice."
                .to_owned()
        } else if destination_full {
            "The disk the files go to is full. Free some space on it, or choose \
             another folder, then run the same command again: nothing is restored twice."
                .to_owned()
        } else if c.partial > 0 && c.lost_unexpected == 0 {
            format!(
                "Everything that had been kept was brought back, but {} only in part \
                 (see above).",
                files(c.partial)
            )
        } else if c.lost == 0 {
            "Every selected file is in place.".to_owned()
        } else if c.lost_unexpected == 0 {
            format!(
                "All files that had been copied were recovered; the {} lost {} never copied.",
                count(c.lost),
                if c.lost == 1 { "was" } else { "were" }
            )
        } else {
            format!(
                "{} that had been copied could not be recovered (see above); this needs attention.",
                files(c.lost_unexpected)
            )
        }
    }

    /// "Deleted by anna from FRONTDESK (192.168.1.23) over the file share.", or with
    /// several people, each with a count; None when nobody is known.
    pub fn deleted_by_line(&self) -> Option<String> {
        match self.deleted_by().as_slice() {
            [] => None,
            [(person, _)] => Some(format!("Deleted by {person}.")),
            people => Some(format!(
                "Deleted by {}.",
                people
                    .iter()
                    .map(|(p, n)| format!("{p} ({})", files(*n)))
                    .collect::<Vec<_>>()
                    .join("; ")
            )),
        }
    }

    /// The report for people.
    pub fn text(&self) -> String {
        let mut out = String::new();
        for line in self.summary_lines() {
            out.push_str(&wrap_line(&line));
            out.push('\n');
        }
        out.push_str(&format!("Destination: {}.\n", self.destination));
        if let Some(who) = self.deleted_by_line() {
            out.push_str(&wrap_line(&who));
            out.push('\n');
        }
        if let Some(who) = self.changed_by_line() {
            out.push_str(&wrap_line(&who));
            out.push('\n');
        }
        if let Some(cut_off) = &self.cut_off {
            out.push_str(&wrap_line(&cut_off.to_string()));
            out.push('\n');
        }
        let verb = if self.dry_run {
            "Would not be"
        } else {
            "Could not be"
        };
        let paths = |files: &[&FileResult]| files.iter().map(|f| display_path(&f.path)).collect();
        for (reason, group) in self.lost_by_reason() {
            let n = count(group.len() as u64);
            let heading = format!("{verb} recovered ({n}), {reason}:");
            section(&mut out, &heading, paths(&group));
        }
        let left_out = self.left_out();
        let heading = counted("Lock files, not brought back on purpose", left_out.len());
        section(&mut out, &heading, paths(&left_out));
        for (reason, group) in self.by_reason(Outcome::Partial) {
            let heading = counted(
                &format!("Brought back only in part — {reason}"),
                group.len(),
            );
            section(&mut out, &heading, paths(&group));
        }
        let beside: Vec<String> = self
            .files
            .iter()
            .filter(|f| f.outcome == Outcome::Recovered && f.beside)
            .map(|f| {
                let to = f.restored_to.as_deref().map(display_path);
                format!("{} -> {}", display_path(&f.path), to.unwrap_or_default())
            })
            .collect();
        let heading = counted(
            "Restored beside a different file with the same name",
            beside.len(),
        );
        section(&mut out, &heading, beside);
        for (group, copies) in self.encrypted_groups() {
            let heading = match &group {
                EncryptedGroup::Left => "Encrypted copies, left where they are".to_owned(),
                EncryptedGroup::LeftBecause(why) => {
                    format!("Encrypted copies, left where they are: {why}")
                }
                EncryptedGroup::Moved => "Encrypted copies, moved aside".to_owned(),
                EncryptedGroup::Deleted => "Encrypted copies, deleted".to_owned(),
            };
            let lines = copies.iter().map(|e| match &e.outcome {
                EncryptedOutcome::MovedTo(to) if e.why_left.is_none() => {
                    format!("{} -> {}", display_path(&e.path), display_path(to))
                }
                _ => display_path(&e.path),
            });
            section(&mut out, &counted(&heading, copies.len()), lines.collect());
        }
        // Whole on a line of its own, so it can be typed as shown.
        out.push_str(&format!(
            "\nTo repeat this restore:\n    {}\n",
            self.command
        ));
        out.push_str(&wrap(&self.verdict()));
        out.push('\n');
        out
    }
}

/// "Lock files, not brought back on purpose (3):": a list's heading with its count.
fn counted(heading: &str, n: usize) -> String {
    format!("{heading} ({}):", count(n as u64))
}

/// A list in the report, unless it is empty: a blank line, its heading wrapped, then
/// each line (a path, or where it went) on a line of its own, indented, so no path is
/// ever split.
fn section(out: &mut String, heading: &str, lines: Vec<String>) {
    if lines.is_empty() {
        return;
    }
    out.push('\n');
    out.push_str(&wrap_line(heading));
    out.push('\n');
    for line in lines {
        out.push_str(&format!("  {line}\n"));
    }
}
