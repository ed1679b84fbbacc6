//! The age store's integrity manifest (`.hushbox-integrity`), the plaintext
//! of its key ring, and a machine's integrity state file: never panic; a
//! parsed manifest names only valid secret paths and verifies under no
//! fresh key; a parsed key ring round-trips.
#![no_main]

use hushbox_age::fuzzing;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    fuzzing::key_ring(data);
    if let Ok(text) = std::str::from_utf8(data) {
        fuzzing::integrity_manifest(text);
        fuzzing::state(text);
    }
});
