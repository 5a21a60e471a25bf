//! Watch rules to kernel map entries.
//!
//! - `PATH_RULES` (LPM trie, failed opens): the normalised path bytes; exact
//!   rules include the terminating NUL so they only match a path that ends
//!   there, prefix rules do not.
//! - `NAME_GATE` (bitmap): exact names (basename rules and the last
//!   component of exact path rules), name prefixes (the last component of
//!   `prefix*` rules) and suffixes (`*suffix` rules), hashed exactly as the
//!   kernel hashes the name of an opened file.
//! - `PATH_GATE` (bitmap): the first bytes of every `PATH_RULES` key
//!   ([`PathGate`]); a failed open whose key starts otherwise is not looked
//!   up.
//! - `INODE_GATE` + `WATCHED_INODES`: from [`crate::classify::watch`]'s
//!   expansion of the rules over the file system.
use aya::maps::lpm_trie::Key;
use observer_common::{
    AFFIX_EXACT_BASE, AFFIX_GATE_WORDS, AFFIX_PREFIX_BASE, GATE_AFFIX_LENS, GATE_AFFIX_MAX, GATE_NAME_MAX, GATE_PREFIX, GATE_SUFFIX,
    GATE_WORDS, PATH_KEY_LEN, PathKeyData, PathRule, first_bytes, gate_affix_bit, gate_inode_bit, gate_name_bit,
    path_gate_bit,
};

use crate::classify::{
    catalog::{PatternKind, WatchRule},
    watch::InodeEntry,
};

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

/// A gate bitmap, as the kernel's array of u64 words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bitmap(pub Vec<u64>);

impl Default for Bitmap {
    fn default() -> Self {
        Self(vec![0; GATE_WORDS as usize])
    }
}

impl Bitmap {
    pub fn with_words(words: u32) -> Self {
        Self(vec![0; words as usize])
    }

    pub fn set(&mut self, bit: u32) {
        self.0[(bit / 64) as usize] |= 1 << (bit % 64);
    }

    #[cfg(test)]
    pub fn test(&self, bit: u32) -> bool {
        self.0[(bit / 64) as usize] & (1 << (bit % 64)) != 0
    }
}

/// The path gate (`PATH_GATE`) in front of the path-rule trie: the first
/// `len` bytes of every key (`len`: the shortest key's length, at most 8),
/// hashed into a bitmap as the kernel hashes the same bytes of a failed
/// open's key (`observer_common::path_gate_bit`). A key can only match a
/// path whose first `len` bytes are its own, so a path whose first bytes
/// are not in the gate is looked up in vain: the kernel skips it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathGate {
    pub bits: Bitmap,
    /// 1..=8; with no keys, 8 and an empty bitmap (every lookup skipped).
    pub len: u32,
}

impl PathGate {
    pub fn build(keys: &[(Key<PathKeyData>, PathRule)]) -> Self {
        let len = keys.iter().map(|(k, _)| (k.prefix_len() / 8).clamp(1, 8)).min().unwrap_or(8);
        let mut bits = Bitmap::default();
        for (key, _) in keys {
            bits.set(path_gate_bit(u64::from(len), path_gate_word(&key.data(), len)));
        }
        Self { bits, len }
    }

    /// Whether the kernel looks a key starting with `bytes` up.
    #[cfg(test)]
    pub fn passes(&self, bytes: &[u8]) -> bool {
        let mut data = [0u8; PATH_KEY_LEN];
        data[..bytes.len()].copy_from_slice(bytes);
        self.bits.test(path_gate_bit(u64::from(self.len), path_gate_word(&data, self.len)))
    }
}

/// A key's first `len` bytes as the kernel reads them: one little-endian
/// word, zero above them.
fn path_gate_word(data: &[u8; PATH_KEY_LEN], len: u32) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&data[..8]);
    first_bytes(u64::from_le_bytes(w), u64::from(len))
}

/// The name gate: its bitmap and the prefix/suffix lengths the kernel must
/// test (ascending, 0-terminated, at most [`GATE_AFFIX_LENS`] each).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameGate {
    pub bits: Bitmap,
    /// The affix pre-filter: pairs of first bytes of prefixes and of last
    /// bytes of suffixes (see `observer_common::AFFIX_GATE_BITS`).
    pub affix: Bitmap,
    pub prefix_lens: [u8; GATE_AFFIX_LENS],
    pub suffix_lens: [u8; GATE_AFFIX_LENS],
}

/// The lengths the kernel will test for a set of wanted affix lengths: the
/// [`GATE_AFFIX_LENS`] smallest. A longer affix is tested through the
/// longest kept length below it (a shorter prefix or suffix of it: more
/// candidates, never a miss).
fn kept_lengths(mut wanted: Vec<usize>) -> [u8; GATE_AFFIX_LENS] {
    wanted.sort_unstable();
    wanted.dedup();
    let mut out = [0u8; GATE_AFFIX_LENS];
    for (slot, n) in out.iter_mut().zip(wanted) {
        *slot = u8::try_from(n).unwrap_or(0);
    }
    out
}

fn tested_length(kept: &[u8; GATE_AFFIX_LENS], n: usize) -> usize {
    kept.iter().map(|&k| usize::from(k)).filter(|&k| k != 0 && k <= n).max().unwrap_or(n)
}

/// Little-endian words of a name, zero-padded; `None` past the gate's limit.
pub fn name_words(name: &[u8]) -> Option<[u64; GATE_NAME_MAX / 8]> {
    if name.is_empty() || name.len() > GATE_NAME_MAX {
        return None;
    }
    let mut bytes = [0u8; GATE_NAME_MAX];
    bytes[..name.len()].copy_from_slice(name);
    let mut words = [0u64; GATE_NAME_MAX / 8];
    for (w, chunk) in words.iter_mut().zip(bytes.chunks_exact(8)) {
        let mut b = [0u8; 8];
        b.copy_from_slice(chunk);
        *w = u64::from_le_bytes(b);
    }
    Some(words)
}

/// The pre-filter's pairs for a prefix starting `first`, `second` (a
/// one-byte prefix: `first` then any byte, or nothing).
fn pairs(first: u8, second: Option<u8>) -> Vec<u32> {
    match second {
        Some(b) => vec![u32::from(first) | u32::from(b) << 8],
        None => (0..=255u32).map(|b| u32::from(first) | b << 8).collect(),
    }
}

fn affix_word(bytes: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    b[..bytes.len()].copy_from_slice(bytes);
    u64::from_le_bytes(b)
}

impl NameGate {
    pub fn build(rules: &[WatchRule]) -> Self {
        let max_affix = GATE_AFFIX_MAX as usize;
        let mut exact: Vec<&[u8]> = Vec::new();
        let mut prefixes: Vec<&[u8]> = Vec::new();
        let mut suffixes: Vec<&[u8]> = Vec::new();
        for rule in rules {
            let text = rule.pattern.text.as_bytes();
            let tail = text.rsplit(|&c| c == b'/').next().unwrap_or(text);
            match rule.pattern.kind {
                PatternKind::Exact | PatternKind::Basename => exact.push(tail),
                // `dir/` rules have no name; their directories are watched.
                PatternKind::Prefix if !tail.is_empty() => prefixes.push(&tail[..tail.len().min(max_affix)]),
                PatternKind::Prefix => {}
                PatternKind::Suffix => suffixes.push(&text[text.len().saturating_sub(max_affix)..]),
            }
        }
        let mut gate = NameGate {
            bits: Bitmap::default(),
            affix: Bitmap::with_words(AFFIX_GATE_WORDS),
            prefix_lens: kept_lengths(prefixes.iter().map(|p| p.len()).collect()),
            suffix_lens: kept_lengths(suffixes.iter().map(|s| s.len()).collect()),
        };
        for name in exact {
            gate.add_exact(name);
        }
        for p in prefixes {
            let n = tested_length(&gate.prefix_lens, p.len());
            gate.bits.set(gate_affix_bit(GATE_PREFIX, n as u64, affix_word(&p[..n])));
            // First two bytes; a one-byte prefix may be followed by any byte.
            for pair in pairs(p[0], p.get(1).copied()) {
                gate.affix.set(AFFIX_PREFIX_BASE + pair);
            }
        }
        for s in suffixes {
            let n = tested_length(&gate.suffix_lens, s.len());
            gate.bits.set(gate_affix_bit(GATE_SUFFIX, n as u64, affix_word(&s[s.len() - n..])));
            // Last two bytes, as a little-endian pair (second-to-last low);
            // a one-byte suffix may follow any byte (or none).
            let last = s[s.len() - 1];
            match s.len() {
                1 => (0..=255u32).for_each(|b| gate.affix.set(b | u32::from(last) << 8)),
                _ => gate.affix.set(u32::from(s[s.len() - 2]) | u32::from(last) << 8),
            }
        }
        gate
    }

    /// Whether the affix pre-filter lets a name through to the prefix
    /// (`prefix`) or suffix tests, as the kernel checks it.
    #[cfg(test)]
    fn affix_passes(&self, name: &[u8], prefix: bool) -> bool {
        let byte = |i: usize| u32::from(name.get(i).copied().unwrap_or(0));
        if prefix {
            self.affix.test(AFFIX_PREFIX_BASE + (byte(0) | byte(1) << 8))
        } else {
            let n = name.len();
            let second_last = if n >= 2 { byte(n - 2) } else { 0 };
            self.affix.test(second_last | byte(n - 1) << 8)
        }
    }

    fn add_exact(&mut self, name: &[u8]) {
        if let Some(words) = name_words(name) {
            self.bits.set(gate_name_bit(name.len() as u64, &words));
            for pair in pairs(name[0], name.get(1).copied().or(Some(0))) {
                self.affix.set(AFFIX_EXACT_BASE + pair);
            }
        }
    }

    /// What the kernel computes for a file name: whether it passes (the
    /// kernel's side spelled out, for tests).
    #[cfg(test)]
    pub fn passes(&self, name: &[u8]) -> bool {
        let Some(words) = name_words(name) else { return false };
        let first2 = u32::from(name[0]) | u32::from(name.get(1).copied().unwrap_or(0)) << 8;
        if self.affix.test(AFFIX_EXACT_BASE + first2) && self.bits.test(gate_name_bit(name.len() as u64, &words)) {
            return true;
        }
        let lens = |kept: &[u8; GATE_AFFIX_LENS]| {
            kept.iter().map(|&n| usize::from(n)).take_while(|&n| n != 0).filter(|&n| n <= name.len()).collect::<Vec<_>>()
        };
        (self.affix_passes(name, true)
            && lens(&self.prefix_lens)
                .into_iter()
                .any(|n| self.bits.test(gate_affix_bit(GATE_PREFIX, n as u64, affix_word(&name[..n])))))
            || (self.affix_passes(name, false)
                && lens(&self.suffix_lens)
                    .into_iter()
                    .any(|n| self.bits.test(gate_affix_bit(GATE_SUFFIX, n as u64, affix_word(&name[name.len() - n..])))))
    }
}

/// The inode gate's bitmap for a set of watched inodes.
pub fn inode_gate(entries: &[InodeEntry]) -> Bitmap {
    let mut bits = Bitmap::default();
    for e in entries {
        bits.set(gate_inode_bit(e.key.ino));
    }
    bits
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::catalog::builtin_rules;

    use crate::classify::catalog::test_rule as rule;

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

    /// Every path a built-in path rule matches passes the path gate (each
    /// key's own bytes, and longer paths below a prefix rule); library
    /// search paths and imports, which no rule names, do not; a rule
    /// shorter than a word makes the gate test only its length.
    #[test]
    fn path_gate_passes_every_rule_key_and_skips_other_paths() {
        let keys = path_keys(&builtin_rules());
        let gate = PathGate::build(&keys);
        assert!((1..=8).contains(&gate.len), "{}", gate.len);
        for (key, _) in &keys {
            let n = (key.prefix_len() / 8) as usize;
            let own = &key.data()[..n];
            assert!(gate.passes(own), "{}", String::from_utf8_lossy(own));
            let mut below = own.to_vec();
            below.extend_from_slice(b"more/x");
            assert!(gate.passes(&below), "{}", String::from_utf8_lossy(&below));
        }
        let mut passed = Vec::new();
        for no in [
            "~/.rustup/toolchains/stable-x86_64-unknown-linux-gnu/lib/libc.so.6",
            "/usr/lib/x86_64-linux-gnu/glibc-hwcaps/x86-64-v3/libc.so.6",
            "/usr/local/lib/python3.11/site-packages/requests/__init__.py",
            "~/.cache/pip/http/x",
            "/work/main/target/release/deps/libc.so.6",
            "/proc/self/status",
            "/tmp/x",
        ] {
            if gate.passes(no.as_bytes()) {
                passed.push(no);
            }
        }
        // The gate is a hash: a stray bit may let one through, never many.
        assert!(passed.len() <= 1, "{passed:?}");
        // A short rule: its length is all the gate compares.
        let short = PathGate::build(&path_keys(&[rule(1, "/x/"), rule(2, "~/.aws/credentials")]));
        assert_eq!(short.len, 3);
        assert!(short.passes(b"/x/y") && short.passes(b"~/.aws/credentials\0"));
        assert!(!short.passes(b"/y/x") || !short.passes(b"/z/x"));
        // No path rules: nothing is looked up.
        let none = PathGate::build(&[]);
        assert_eq!((none.len, none.bits.0.iter().all(|&w| w == 0)), (8, true));
    }

    #[test]
    fn name_gate_passes_what_the_rules_name_and_little_else() {
        let rules = [
            rule(1, "~/.aws/credentials"),
            rule(2, "~/.ssh/id_*"),
            rule(3, "*.pem"),
            rule(4, ".git-credentials"),
            rule(5, "/etc/kubernetes/pki/"),
            rule(6, "*.verylongsuffix"),
        ];
        let gate = NameGate::build(&rules);
        for yes in ["credentials", "id_rsa", "id_ed25519", "server.pem", ".pem", ".git-credentials", "x.verylongsuffix", "ongsuffix"] {
            assert!(gate.passes(yes.as_bytes()), "{yes} must pass");
        }
        // Long names fall back to the first/last 8 bytes: "maybe" is fine.
        let mut false_positives = 0;
        for no in ["config", "main.rs", "id", "pem", "credential", "readme.md", "Cargo.toml", "lib.rs", "token"] {
            false_positives += usize::from(gate.passes(no.as_bytes()));
        }
        assert_eq!(false_positives, 0);
        assert_eq!(gate.prefix_lens, [3, 0, 0, 0]);
        assert_eq!(gate.suffix_lens, [4, 8, 0, 0]);
        assert!(!gate.passes(&[b'a'; 65]));
    }

    /// More distinct lengths than the kernel tests: longer affixes are
    /// tested through a shorter kept length, so nothing is missed.
    #[test]
    fn surplus_affix_lengths_fall_back_to_shorter_ones() {
        let rules: Vec<_> = ["*.a", "*.ab", "*.abc", "*.abcd", "*.abcdef", "/x/p1*", "/x/p12*", "/x/p123*", "/x/p1234*", "/x/p123456*"]
            .iter()
            .enumerate()
            .map(|(i, p)| rule(i as u32 + 1, p))
            .collect();
        let gate = NameGate::build(&rules);
        assert_eq!(gate.suffix_lens, [2, 3, 4, 5]);
        assert_eq!(gate.prefix_lens, [2, 3, 4, 5]);
        assert!(gate.passes(b"x.abcdef") && gate.passes(b"p123456-key"));
    }

    /// The pre-filter stops names whose first/last two bytes start/end no
    /// prefix/suffix, and never a name that matches one (one-byte affixes
    /// included).
    #[test]
    fn affix_prefilter_has_no_false_negatives() {
        let gate = NameGate::build(&[rule(1, "*.pem"), rule(2, "*x"), rule(3, "/d/k*"), rule(4, "/d/id_*")]);
        for yes in ["a.pem", "box", "x", "k", "kfile", "id_rsa"] {
            assert!(gate.passes(yes.as_bytes()), "{yes}");
        }
        for stopped in ["main.rs", "notes.txt", "data.json"] {
            assert!(!gate.affix_passes(stopped.as_bytes(), false), "suffix pre-filter let {stopped} through");
            assert!(!gate.affix_passes(stopped.as_bytes(), true), "prefix pre-filter let {stopped} through");
        }
    }

    /// Guards the shared hash: the kernel hashes the name words of an
    /// opened file with `gate_name_bit`; if the agent padded or ordered
    /// bytes differently, nothing would ever pass.
    #[test]
    fn name_words_are_little_endian_and_zero_padded() {
        let w = name_words(b"credentials").unwrap();
        assert_eq!(w[0], u64::from_le_bytes(*b"credenti"));
        assert_eq!(w[1], u64::from_le_bytes([b'a', b'l', b's', 0, 0, 0, 0, 0]));
        assert!(w[2..].iter().all(|&x| x == 0));
    }
}
