//! Watch rules to kernel map entries (`PATH_RULES`, an LPM trie).
//!
//! Key layout (see `observer_common::PathKeyData`): the normalised path
//! bytes; exact rules include the terminating NUL so they only match a path
//! that ends there, prefix rules do not.
use aya::maps::lpm_trie::Key;
use observer_common::{PATH_KEY_LEN, PathKeyData, PathRule};

use crate::classify::catalog::{PatternKind, WatchRule};

pub fn path_keys(rules: &[WatchRule]) -> Vec<(Key<PathKeyData>, PathRule)> {
    let mut out: Vec<(Key<PathKeyData>, PathRule)> = Vec::new();
    for rule in rules {
        // Basename and suffix patterns are not in the path trie.
        if !matches!(rule.pattern.kind, PatternKind::Exact | PatternKind::Prefix) {
            continue;
        }
        for pattern in rule.pattern.spellings() {
            let mut bytes = pattern.text.into_bytes();
            if pattern.kind == PatternKind::Exact {
                bytes.push(0);
            }
            // Patterns are validated to fit (catalog::MAX_PATTERN_LEN).
            if bytes.len() > PATH_KEY_LEN {
                continue;
            }
            let mut data = [0u8; PATH_KEY_LEN];
            data[..bytes.len()].copy_from_slice(&bytes);
            let prefix_bits = u32::try_from(bytes.len() * 8).unwrap_or(u32::MAX);
            let key = Key::new(prefix_bits, data);
            // The first rule for a key wins; later duplicates are ignored.
            if !out.iter().any(|(k, _)| same_key(k, &key)) {
                out.push((key, PathRule { rule_id: rule.id, _pad0: 0 }));
            }
        }
    }
    out
}

pub fn same_key(a: &Key<PathKeyData>, b: &Key<PathKeyData>) -> bool {
    let (la, lb) = (a.prefix_len(), b.prefix_len());
    let n = (la / 8) as usize;
    la == lb && a.data()[..n.min(PATH_KEY_LEN)] == b.data()[..n.min(PATH_KEY_LEN)]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::catalog::builtin_rules;

    #[test]
    fn exact_keys_end_in_nul_prefix_keys_do_not() {
        let keys = path_keys(&builtin_rules());
        let find = |text: &[u8]| {
            keys.iter()
                .find(|(k, _)| &k.data()[..text.len()] == text && k.prefix_len() as usize == text.len() * 8)
                .map(|(_, v)| v.rule_id)
        };
        assert!(find(b"~/.aws/credentials\0").is_some());
        assert!(find(b"~/.ssh/id_").is_some());
        assert!(find(b"/run/secrets/kubernetes.io/serviceaccount/token\0").is_some());
        assert!(find(b"/var/run/secrets/kubernetes.io/serviceaccount/token\0").is_some());
    }
}
