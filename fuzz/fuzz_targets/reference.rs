//! `SCHEME://PATH[?PARAMS][#FIELD]`: any text either is refused or parses
//! to a reference whose display parses back to the same reference, holds no
//! invisible character and no credential-looking parameter.
#![no_main]

use hushbox_core::SecretRef;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(reference) = text.parse::<SecretRef>() else {
        return;
    };
    let shown = reference.to_string();
    assert!(!hushbox_core::text::has_invisible(&shown));
    let again: SecretRef = shown.parse().expect("a displayed reference parses");
    assert_eq!(again, reference);
    // The location, what a backend fetches, is a reference too.
    let location = reference.location().to_string();
    assert_eq!(location.parse::<SecretRef>().unwrap(), reference.location());
});
