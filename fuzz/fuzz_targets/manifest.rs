//! `hushbox.toml`: the manifest's own parser (compiled here from
//! `src/manifest.rs`, so the fuzz build does not build every backend), then
//! what the plan does with each part that comes from text: backend settings
//! checked for inline credentials, references parsed. Never panics; a
//! refused manifest's error never quotes a string from it.
#![no_main]

#[allow(dead_code, unreachable_pub, missing_docs)]
#[path = "../../src/manifest.rs"]
mod manifest;

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let parsed = match manifest::Manifest::parse(text, Path::new("hushbox.toml")) {
        Ok(parsed) => parsed,
        Err(error) => {
            // toml and serde quote input; hushbox masks every quoted span.
            let message = error.message();
            for (index, part) in message.split('"').enumerate() {
                assert!(index % 2 == 0 || part == "…", "{message}");
            }
            return;
        }
    };
    for section in parsed.backends.values() {
        let _ = hushbox_core::reject_inline_credentials(&section.settings);
    }
    for section in parsed.secrets.values() {
        let _ = section.reference.parse::<hushbox_core::SecretRef>();
    }
});
