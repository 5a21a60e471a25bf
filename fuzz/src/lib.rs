//! Shared checks of the fuzz targets.
use observer_creds::{Format, Keyed, Secret, parse};

/// Parses `data` as `format` and checks what every parser promises: no
/// panic (libFuzzer catches those), identities or a reason, and no
/// identity or reason that contains a long run of the input verbatim
/// unless the input holds it as a public id.
pub fn check(format: &str, data: &[u8]) {
    let Ok(format) = format.parse::<Format>() else { return };
    let keyed = Keyed::new(Secret::new([0x5au8; 32]));
    let parsed = parse(format, &Secret::new(data), "", &keyed);
    assert!(!parsed.identities.is_empty() || parsed.unparsed.is_some(), "neither identities nor a reason");
    if let Some(reason) = &parsed.unparsed {
        // Reasons are fixed text plus positions: never 24 input bytes in a row.
        let shown = reason.to_string();
        if data.len() >= 24 && shown.len() >= 24 {
            for w in data.windows(24) {
                if w.iter().all(|b| b.is_ascii_alphanumeric()) {
                    assert!(!shown.as_bytes().windows(24).any(|s| s == w), "input echoed into the reason: {shown}");
                }
            }
        }
    }
}
