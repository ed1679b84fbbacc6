//! JSON field selection (`#key`, `#/json/pointer`) on a fetched document:
//! the first line is the field, the rest the document. Never panics; where
//! serde_json reads the document as a value, a selected string must be
//! exactly serde_json's decoding of it (hushbox unescapes strings itself).
#![no_main]

use hushbox_core::{ErrorKind, Field, Format, SecretValue, extract_field};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (field, document) = text.split_once('\n').unwrap_or((text, ""));
    if field.is_empty() {
        return;
    }
    let selector = if field.starts_with('/') {
        Field::Pointer(field.to_owned())
    } else {
        Field::Key(field.to_owned())
    };
    let secret = SecretValue::copy_from_slice(document.as_bytes());
    let ours = extract_field(&secret, Format::Json, &selector);
    // The same bytes read as a .env, for the DotEnv branch.
    let _ = extract_field(&secret, Format::DotEnv, &selector);

    let Ok(value) = serde_json::from_str::<serde_json::Value>(document) else {
        return;
    };
    let selected = match &selector {
        Field::Key(key) => value.as_object().and_then(|object| object.get(key)),
        Field::Pointer(pointer) => value.pointer(pointer),
    };
    match (selected, &ours) {
        (Some(serde_json::Value::String(expected)), Ok(got)) => {
            assert_eq!(got.expose(), expected.as_bytes());
        }
        (Some(serde_json::Value::String(_)), Err(error)) => {
            panic!(
                "serde_json selects a string, hushbox fails: {:?}",
                error.kind()
            );
        }
        (None | Some(serde_json::Value::Null), Ok(_)) if value.is_object() => {
            panic!("hushbox selects what serde_json does not");
        }
        (Some(serde_json::Value::Null), Err(error)) => {
            assert_eq!(error.kind(), ErrorKind::NotFound);
        }
        _ => {}
    }
});
