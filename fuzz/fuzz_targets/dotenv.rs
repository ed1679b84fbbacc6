//! The `.env` reader (`file://x.env#KEY`, `store import`): never panics,
//! never overflows its stack, and what it produces is bounded by the input
//! plus the expansion budget; `get` agrees with `parse`. The budget is 64 KiB
//! here instead of 16 MiB, so an input that reaches it costs microseconds.
#![no_main]

use hushbox_core::dotenv::{self, Value};
use libfuzzer_sys::fuzz_target;

const LIMIT: usize = 64 * 1024;

fuzz_target!(|data: &[u8]| {
    let Ok(entries) = dotenv::parse_entries_within(data, LIMIT) else {
        return;
    };
    let total: usize = entries
        .iter()
        .filter_map(|entry| entry.value.defined())
        .map(|value| value.len())
        .sum();
    assert!(total <= data.len() + LIMIT, "{total}");
    let mut names = std::collections::HashSet::new();
    for entry in &entries {
        assert!(names.insert(entry.name.as_str()), "a name listed twice");
    }
    // `get` (with the real budget) agrees with the entries, for four names
    // and a document small enough that the real budget is never reached.
    if data.len() + LIMIT < dotenv::EXPANSION_LIMIT && total < LIMIT / 2 {
        for entry in entries.iter().take(4) {
            match (&entry.value, dotenv::get(data, &entry.name)) {
                (Value::Defined(value), Ok(Some(got))) => assert_eq!(got.expose(), value.expose()),
                (Value::FromEnvironment, Ok(None)) | (Value::Invalid(_), Err(_)) => {}
                (_, other) => panic!(
                    "get disagrees with parse_entries: {:?}",
                    other.map(|v| v.is_some())
                ),
            }
        }
    }
});
