//! Entry point for the fuzz target in `fuzz/` (feature `fuzzing`, off by
//! default): the JSON lines reply parser, reached without a plugin. A reply
//! line is untrusted input: any program a manifest names can print it.

/// Parses one reply line as the batch protocol does. Where serde_json reads
/// the line as an object whose only key is a string `value`, the decoded
/// secret must be exactly serde_json's decoding of it (hushbox unescapes
/// the string itself, straight into a `SecretValue`).
pub fn reply_line(line: &[u8]) {
    const LIMIT: usize = 1 << 20;
    let answer = crate::json::parse_reply(line, LIMIT, true);
    let Ok(serde_json::Value::Object(object)) = serde_json::from_slice::<serde_json::Value>(line)
    else {
        return;
    };
    if object.len() != 1 {
        return;
    }
    if let Some(serde_json::Value::String(expected)) = object.get("value") {
        match &answer.value {
            Ok(value) => assert_eq!(value.expose(), expected.as_bytes()),
            Err(_) => assert!(
                expected.len() > LIMIT,
                "serde_json reads a string value, the protocol refuses it"
            ),
        }
    }
}
