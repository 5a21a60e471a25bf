//! Properties every parser keeps on any input (the fuzz targets push the
//! same property much further; these run in every `cargo test`).
use proptest::prelude::*;

use super::*;

fn keyed() -> Keyed {
    Keyed::new(Secret::new([9u8; 32]))
}

proptest! {
    /// Arbitrary bytes: no panic, and a result that is either identities
    /// or a reason, never both empty.
    #[test]
    fn any_bytes_give_identities_or_a_reason(bytes in proptest::collection::vec(any::<u8>(), 0..512), f in 0..ALL.len()) {
        let p = parse(ALL[f], &Secret::new(bytes), "", &keyed());
        prop_assert!(!p.identities.is_empty() || p.unparsed.is_some());
    }

    /// Text that looks like the formats (keywords, separators, PEM armour).
    #[test]
    fn format_shaped_text_never_panics(
        lines in proptest::collection::vec(
            "(\\[[a-z ]{0,8}\\]|[a-z_]{1,12} ?[=:] ?[A-Za-z0-9+/=_.-]{0,24}|machine|login|password|-----BEGIN [A-Z ]{0,16}-----|-----END [A-Z ]{0,16}-----|[A-Za-z0-9+/]{0,64}|\\{\"[a-z]{1,8}\": ?\"[a-z]{0,8}\"\\}|  - name: [a-z]{1,4})",
            0..12),
        f in 0..ALL.len(),
    ) {
        let text = lines.join("\n");
        let p = parse(ALL[f], &Secret::new(text.into_bytes()), "unknown", &keyed());
        prop_assert!(!p.identities.is_empty() || p.unparsed.is_some());
    }
}

#[test]
fn format_names_round_trip() {
    for f in ALL {
        assert_eq!(f.name().parse::<Format>(), Ok(*f));
    }
    assert!("yaml".parse::<Format>().is_err());
}
