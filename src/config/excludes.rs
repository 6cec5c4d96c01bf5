//! The `--exclude` rules, compiled once: which files are never copied.

use std::path::{Path, PathBuf};

use globset::{Glob, GlobBuilder, GlobSet, GlobSetBuilder};

use super::ConfigError;

/// The `--exclude` rules. A rule without a slash matches any file or folder name
/// (`*.tmp`, `node_modules`); a rule with a slash matches the path below the
/// protected folder (`cache/**`, `projects/*/build`).
#[derive(Debug, Clone)]
pub struct Excludes {
    rules: Vec<String>,
    names: GlobSet,
    name_rules: Vec<usize>,
    paths: GlobSet,
    path_rules: Vec<usize>,
}

impl Excludes {
    pub fn new(rules: &[String]) -> Result<Self, ConfigError> {
        let mut names = GlobSetBuilder::new();
        let mut paths = GlobSetBuilder::new();
        let (mut name_rules, mut path_rules) = (Vec::new(), Vec::new());
        for (i, rule) in rules.iter().enumerate() {
            let bad = |e: globset::Error| ConfigError::Glob {
                rule: rule.clone(),
                reason: e.kind().to_string(),
            };
            let pattern = rule.trim_start_matches('/').trim_end_matches('/');
            if pattern.contains('/') {
                let glob = GlobBuilder::new(pattern)
                    .literal_separator(true)
                    .build()
                    .map_err(bad)?;
                paths.add(glob);
                path_rules.push(i);
            } else {
                names.add(Glob::new(pattern).map_err(bad)?);
                name_rules.push(i);
            }
        }
        let build = |b: GlobSetBuilder| {
            b.build().map_err(|e| ConfigError::Glob {
                rule: rules.join(" "),
                reason: e.to_string(),
            })
        };
        Ok(Self {
            rules: rules.to_vec(),
            names: build(names)?,
            name_rules,
            paths: build(paths)?,
            path_rules,
        })
    }

    pub fn rules(&self) -> &[String] {
        &self.rules
    }

    /// The rule that keeps `relative` (a path below its protected folder) out, if any:
    /// a rule matching a folder keeps out everything inside it.
    pub fn matching_rule(&self, relative: &Path) -> Option<&str> {
        if self.rules.is_empty() {
            return None;
        }
        let mut prefix = PathBuf::new();
        for component in relative.components() {
            prefix.push(component);
            let name = Path::new(component.as_os_str());
            if let Some(&i) = self.names.matches(name).first() {
                return Some(&self.rules[self.name_rules[i]]);
            }
            if let Some(&i) = self.paths.matches(&prefix).first() {
                return Some(&self.rules[self.path_rules[i]]);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_rules_match_anywhere_and_folder_rules_cover_their_contents() {
        let ex =
            Excludes::new(&["*.tmp".into(), "cache/**".into(), "node_modules".into()]).unwrap();
        assert_eq!(ex.matching_rule(Path::new("a/b/x.tmp")), Some("*.tmp"));
        assert_eq!(
            ex.matching_rule(Path::new("cache/deep/x")),
            Some("cache/**")
        );
        assert_eq!(
            ex.matching_rule(Path::new("web/node_modules/x/y.js")),
            Some("node_modules")
        );
        assert_eq!(ex.matching_rule(Path::new("a/cache/x")), None);
        assert_eq!(ex.matching_rule(Path::new("a/b/x.txt")), None);
    }
}
