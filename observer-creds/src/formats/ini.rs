//! A borrowing INI reader for the credential formats that use INI
//! (`~/.aws/credentials`, `~/.aws/config`, `.pypirc`, `.npmrc`).
//!
//! Hand-written on purpose: the INI crates copy every value into a `String`,
//! and these values are secrets; here they stay slices of the caller's
//! [`crate::Secret`] buffer until a parser wraps the one it keeps. Covers what
//! these tools write: `[section]`, `key = value` or `key: value`, `#`/`;`
//! comment lines, and indented continuation lines (AWS nested settings),
//! which are skipped.

/// One `key = value` in a section, borrowed from the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry<'a> {
    pub section: &'a str,
    pub key: &'a str,
    pub value: &'a str,
    /// 1-based line number, for error messages.
    pub line: usize,
}

/// All entries of `text`, in order, with `=` or `:` between key and value.
/// Entries before any section header have section "". Lines that are
/// neither are reported by line number.
pub fn entries(text: &str) -> (Vec<Entry<'_>>, Vec<usize>) {
    entries_split(text, &['=', ':'])
}

/// As [`entries`], with only the given separators (`.npmrc` keys hold `:`).
pub fn entries_split<'a>(text: &'a str, separators: &[char]) -> (Vec<Entry<'a>>, Vec<usize>) {
    let mut out = Vec::new();
    let mut bad = Vec::new();
    let mut section = "";
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if raw.starts_with([' ', '\t']) && !section.is_empty() {
            // Continuation of a nested setting (`s3 =` then indented keys).
            continue;
        }
        if let Some(rest) = line.strip_prefix('[') {
            match rest.strip_suffix(']') {
                Some(name) => section = name.trim(),
                None => bad.push(i + 1),
            }
            continue;
        }
        let split = line.find(separators).filter(|&p| p > 0);
        match split {
            Some(p) => out.push(Entry {
                section,
                key: line[..p].trim(),
                value: line[p + 1..].trim(),
                line: i + 1,
            }),
            None => bad.push(i + 1),
        }
    }
    (out, bad)
}

/// Sections in order of first appearance.
pub fn sections<'a>(entries: &[Entry<'a>]) -> Vec<&'a str> {
    let mut out: Vec<&str> = Vec::new();
    for e in entries {
        if !out.contains(&e.section) {
            out.push(e.section);
        }
    }
    out
}

/// The value of `key` in `section` (last one wins, like the tools).
pub fn get<'a>(entries: &[Entry<'a>], section: &str, key: &str) -> Option<&'a str> {
    entries.iter().rev().find(|e| e.section == section && e.key.eq_ignore_ascii_case(key)).map(|e| e.value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_keys_comments_and_nesting() {
        let t = "top=1\n# c\n[default]\naws_access_key_id = AKIA\n s3 =\n    max = 1\n[profile x]\nregion: eu\nbroken line\n[bad\n";
        let (e, bad) = entries(t);
        assert_eq!(get(&e, "", "top"), Some("1"));
        assert_eq!(get(&e, "default", "AWS_ACCESS_KEY_ID"), Some("AKIA"));
        assert_eq!(get(&e, "default", "max"), None);
        assert_eq!(get(&e, "profile x", "region"), Some("eu"));
        assert_eq!(sections(&e), ["", "default", "profile x"]);
        assert_eq!(bad, [9, 10]);
    }
}
