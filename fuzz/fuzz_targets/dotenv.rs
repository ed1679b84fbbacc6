//! The `.env` reader (`file://x.env#KEY`, `store import`): never panics,
//! never overflows its stack, and what it produces is bounded by the input
//! plus the expansion budget; `get` agrees with `parse`.
#![no_main]

use hushbox_core::dotenv;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(pairs) = dotenv::parse(data) else {
        // A document `parse` refuses may still serve single keys; `get`
        // must not panic either.
        let _ = dotenv::get(data, "KEY");
        return;
    };
    let total: usize = pairs.iter().map(|(_, value)| value.len()).sum();
    assert!(total <= data.len() + dotenv::EXPANSION_LIMIT, "{total}");
    for (name, value) in pairs.iter().take(16) {
        let got = dotenv::get(data, name)
            .expect("a parsed document serves its keys")
            .expect("a parsed key is found");
        assert_eq!(got.expose(), value.expose(), "{name}");
    }
});
