//! The JSON lines batch protocol (`protocol = "json"`; the spec is in the
//! crate's README): one request per line on the plugin's stdin, one reply
//! per line on its stdout, in the same order.
//!
//! Replies are read into one buffer that is wiped when it moves and when it
//! is dropped. A reply is parsed with serde_json into borrowed raw values,
//! and the `value` string is unescaped by this module straight into a
//! [`SecretValue`]; a `value_base64` is decoded into a buffer of exactly the
//! right size, which is moved into a `SecretValue` and wiped.

use std::collections::BTreeMap;

use base64::Engine as _;
use hushbox_core::{ErrorKind, SecretRef, SecretValue};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use tokio::io::AsyncReadExt;
use tokio::process::ChildStdout;
use zeroize::{Zeroize, Zeroizing};

use crate::error::CommandError;

/// One request line.
#[derive(Serialize)]
struct Request<'a> {
    path: &'a str,
    params: &'a BTreeMap<String, String>,
}

/// The requests for `locations`, one JSON line each. Paths and parameters
/// are not secrets.
pub(crate) fn requests(locations: &[SecretRef]) -> Vec<u8> {
    let mut out = Vec::new();
    for location in locations {
        let request = Request {
            path: location.path(),
            params: location.params(),
        };
        // Serializing strings into a Vec cannot fail.
        serde_json::to_writer(&mut out, &request).expect("a request serializes");
        out.push(b'\n');
    }
    out
}

/// One reply line, borrowed from the line buffer: nothing is copied until
/// the value is decoded into its `SecretValue`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Reply<'a> {
    #[serde(borrow, default)]
    value: Option<&'a RawValue>,
    #[serde(borrow, default)]
    value_base64: Option<&'a RawValue>,
    #[serde(borrow, default)]
    error: Option<&'a RawValue>,
    #[serde(borrow, default)]
    message: Option<&'a RawValue>,
}

/// A reply's outcome, and the plugin's `message` for `debug_stderr`.
pub(crate) struct Answer {
    pub(crate) value: Result<SecretValue, CommandError>,
    pub(crate) message: Option<Zeroizing<Vec<u8>>>,
}

/// The largest reply line, for a value limit of `limit` bytes: a JSON
/// escape (`\u0000`) takes six bytes per byte of value.
fn line_limit(limit: usize) -> usize {
    limit.saturating_mul(6).saturating_add(4096)
}

/// Reads up to `asked` replies from `stdout`, in order. A reply line that
/// is not valid is an error for its request only; more lines than requests
/// is an error for the whole batch.
pub(crate) async fn read_replies(
    mut stdout: ChildStdout,
    asked: usize,
    limit: usize,
    keep_messages: bool,
) -> Result<Vec<Answer>, CommandError> {
    let max_line = line_limit(limit);
    let mut answers = Vec::with_capacity(asked);
    let mut buffer = LineBuffer::new();
    let mut chunk = Zeroizing::new([0u8; 8 * 1024]);
    // Set while skipping the rest of a line that was too long.
    let mut skipping = false;
    loop {
        let n = stdout
            .read(&mut chunk[..])
            .await
            .map_err(|error| CommandError::io("read the plugin's replies", error))?;
        if n == 0 {
            break;
        }
        let mut input = &chunk[..n];
        while !input.is_empty() {
            let newline = input.iter().position(|&b| b == b'\n');
            let (part, rest) = match newline {
                Some(index) => (&input[..index], &input[index + 1..]),
                None => (input, &input[input.len()..]),
            };
            input = rest;
            if !skipping {
                if buffer.len() + part.len() > max_line {
                    skipping = true;
                    buffer.clear();
                } else {
                    buffer.push(part);
                }
            }
            if newline.is_none() {
                continue;
            }
            if answers.len() == asked {
                return Err(CommandError::Protocol(format!(
                    "more replies than the {asked} requests"
                )));
            }
            let answer = if skipping {
                Answer {
                    value: Err(CommandError::TooLarge { limit }),
                    message: None,
                }
            } else {
                parse_reply(buffer.line(), limit, keep_messages)
            };
            answers.push(answer);
            skipping = false;
            buffer.clear();
        }
    }
    if skipping || buffer.len() > 0 {
        return Err(CommandError::Protocol(
            "the last reply does not end with a newline".to_owned(),
        ));
    }
    Ok(answers)
}

/// Parses one reply line.
pub(crate) fn parse_reply(line: &[u8], limit: usize, keep_messages: bool) -> Answer {
    let invalid = |why: &str| Answer {
        value: Err(CommandError::Protocol(why.to_owned())),
        message: None,
    };
    // serde_json's error text quotes its input: never kept.
    let Ok(reply) = serde_json::from_slice::<Reply<'_>>(line) else {
        return invalid(
            "a reply is not a JSON object with `value`, `value_base64` or `error` \
             (and `message`)",
        );
    };
    let message = match (keep_messages, reply.message) {
        (true, Some(raw)) => decode_string(raw)
            .ok()
            .map(|value| Zeroizing::new(value.expose().to_vec())),
        _ => None,
    };
    let value = match (reply.value, reply.value_base64, reply.error) {
        (Some(raw), None, None) => decode_string(raw).and_then(|value| check_size(value, limit)),
        (None, Some(raw), None) => decode_base64(raw, limit),
        (None, None, Some(raw)) => Err(reported(raw)),
        _ => Err(CommandError::Protocol(
            "a reply must hold exactly one of `value`, `value_base64` and `error`".to_owned(),
        )),
    };
    Answer { value, message }
}

fn check_size(value: SecretValue, limit: usize) -> Result<SecretValue, CommandError> {
    if value.len() > limit {
        return Err(CommandError::TooLarge { limit });
    }
    Ok(value)
}

/// The error a plugin reported, by its code.
fn reported(raw: &RawValue) -> CommandError {
    let code = raw
        .get()
        .strip_prefix('"')
        .and_then(|text| text.strip_suffix('"'))
        .unwrap_or("");
    let kind = match code {
        "not_found" => ErrorKind::NotFound,
        "permission_denied" => ErrorKind::PermissionDenied,
        "unauthenticated" => ErrorKind::Unauthenticated,
        "unavailable" => ErrorKind::Unavailable,
        "invalid" => ErrorKind::Config,
        _ => {
            return CommandError::Protocol(
                "an `error` is not one of \"not_found\", \"permission_denied\", \
                 \"unauthenticated\", \"unavailable\", \"invalid\""
                    .to_owned(),
            );
        }
    };
    CommandError::Reported {
        kind,
        code: code.to_owned(),
    }
}

/// Decodes a JSON string literal (with its quotes) into a `SecretValue`
/// sized for it up front: unescaped text is never shorter than the literal
/// less its quotes, so the buffer never grows.
fn decode_string(raw: &RawValue) -> Result<SecretValue, CommandError> {
    let not_a_string =
        || CommandError::Protocol("a `value` or `message` is not a JSON string".to_owned());
    let literal = raw.get().as_bytes();
    let inner = literal
        .strip_prefix(b"\"")
        .and_then(|text| text.strip_suffix(b"\""))
        .ok_or_else(not_a_string)?;
    let mut value = SecretValue::with_capacity(inner.len());
    let mut rest = inner;
    while let Some(index) = rest.iter().position(|&b| b == b'\\') {
        value.push_slice(&rest[..index]);
        let escape = rest.get(index + 1).ok_or_else(not_a_string)?;
        rest = &rest[index + 2..];
        let byte = match escape {
            b'"' => b'"',
            b'\\' => b'\\',
            b'/' => b'/',
            b'b' => 0x08,
            b'f' => 0x0c,
            b'n' => b'\n',
            b'r' => b'\r',
            b't' => b'\t',
            b'u' => {
                let (c, after) = decode_unicode_escape(rest)?;
                rest = after;
                let mut utf8 = [0u8; 4];
                value.push_slice(c.encode_utf8(&mut utf8).as_bytes());
                utf8.zeroize();
                continue;
            }
            // serde_json checked the literal; nothing else can follow `\`.
            _ => return Err(not_a_string()),
        };
        value.push_slice(&[byte]);
    }
    value.push_slice(rest);
    Ok(value)
}

/// Decodes the `XXXX` after `\u`, and a low surrogate's `\uXXXX` after a
/// high one. A lone surrogate is refused: it is no character.
fn decode_unicode_escape(rest: &[u8]) -> Result<(char, &[u8]), CommandError> {
    let lone =
        || CommandError::Protocol("a `value` holds a lone UTF-16 surrogate escape".to_owned());
    let (first, rest) = hex4(rest)?;
    let code = match first {
        0xD800..=0xDBFF => {
            let rest_low = rest.strip_prefix(b"\\u").ok_or_else(lone)?;
            let (low, after) = hex4(rest_low)?;
            if !(0xDC00..=0xDFFF).contains(&low) {
                return Err(lone());
            }
            let code = 0x10000 + ((first - 0xD800) << 10) + (low - 0xDC00);
            return char::from_u32(code).map(|c| (c, after)).ok_or_else(lone);
        }
        0xDC00..=0xDFFF => return Err(lone()),
        code => code,
    };
    char::from_u32(code).map(|c| (c, rest)).ok_or_else(lone)
}

fn hex4(rest: &[u8]) -> Result<(u32, &[u8]), CommandError> {
    let invalid = || CommandError::Protocol("a `\\u` escape is not four hex digits".to_owned());
    let digits = rest.get(..4).ok_or_else(invalid)?;
    let mut code = 0;
    for &digit in digits {
        code = code * 16 + char::from(digit).to_digit(16).ok_or_else(invalid)?;
    }
    Ok((code, &rest[4..]))
}

/// Decodes a `value_base64` (standard alphabet, padded) into a buffer of
/// its exact size, then moves it into a `SecretValue`, which wipes it.
fn decode_base64(raw: &RawValue, limit: usize) -> Result<SecretValue, CommandError> {
    let invalid =
        || CommandError::Protocol("a `value_base64` is not a standard base64 string".to_owned());
    let text = raw
        .get()
        .as_bytes()
        .strip_prefix(b"\"")
        .and_then(|text| text.strip_suffix(b"\""))
        .ok_or_else(invalid)?;
    let engine = &base64::engine::general_purpose::STANDARD;
    let estimate = base64::decoded_len_estimate(text.len());
    if estimate > limit.saturating_add(3) {
        return Err(CommandError::TooLarge { limit });
    }
    let mut bytes = Zeroizing::new(vec![0u8; estimate]);
    let len = engine
        .decode_slice(text, &mut bytes[..])
        .map_err(|_| invalid())?;
    if len > limit {
        return Err(CommandError::TooLarge { limit });
    }
    let value = SecretValue::copy_from_slice(&bytes[..len]);
    // `bytes` is wiped over its whole length as it drops.
    Ok(value)
}

/// The reply buffer: grows by moving to a larger buffer and wiping the old
/// one, and wipes itself when dropped.
struct LineBuffer {
    bytes: Zeroizing<Vec<u8>>,
}

impl LineBuffer {
    fn new() -> Self {
        Self {
            bytes: Zeroizing::new(Vec::with_capacity(64 * 1024)),
        }
    }

    fn len(&self) -> usize {
        self.bytes.len()
    }

    fn push(&mut self, part: &[u8]) {
        let needed = self.bytes.len() + part.len();
        if needed > self.bytes.capacity() {
            let mut larger = Vec::with_capacity(needed.max(self.bytes.capacity() * 2));
            larger.extend_from_slice(&self.bytes);
            // The old buffer is wiped (over its capacity) as it is replaced.
            self.bytes = Zeroizing::new(larger);
        }
        self.bytes.extend_from_slice(part);
    }

    fn line(&self) -> &[u8] {
        &self.bytes
    }

    /// Empties the buffer, wiping what it held (the spare capacity holds
    /// nothing yet, or was wiped by an earlier clear).
    fn clear(&mut self) {
        self.bytes.as_mut_slice().zeroize();
        self.bytes.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(line: &str) -> Result<Vec<u8>, String> {
        parse_reply(line.as_bytes(), 1024, false)
            .value
            .map(|value| value.expose().to_vec())
            .map_err(|error| hushbox_core::Error::from(error).to_string())
    }

    #[test]
    fn strings_are_unescaped_exactly() {
        assert_eq!(value(r#"{"value": "plain"}"#).unwrap(), b"plain");
        assert_eq!(
            value(r#"{"value": "q\"b\\s\/n\nt\tr\rb\bf\f"}"#).unwrap(),
            b"q\"b\\s/n\nt\tr\rb\x08f\x0c"
        );
        assert_eq!(
            value(r#"{"value": "\u00e9\u0000\ud83d\ude00"}"#).unwrap(),
            "\u{e9}\0\u{1F600}".as_bytes()
        );
        assert_eq!(value(r#"{"value": ""}"#).unwrap(), b"");
        assert_eq!(
            value(r#"{"value_base64": "/w=="}"#).unwrap(),
            [0xff_u8].as_slice()
        );
    }

    #[test]
    fn bad_replies_are_refused_without_quoting_them() {
        for line in [
            r#"{"value": "\ud800"}"#,
            r#"{"value": "\udc00x"}"#,
            r#"{"value": 5}"#,
            r#"{"value_base64": "not base64!"}"#,
            r#"{"value": "a", "error": "not_found"}"#,
            r#"{"valeu": "secret-typo"}"#,
            r#"{"error": "mystery"}"#,
            r#"{}"#,
            "not json secret-typo",
        ] {
            let error = value(line).unwrap_err();
            assert!(!error.contains("secret-typo"), "{error}");
            assert!(error.contains("JSON protocol"), "{line}: {error}");
        }
    }

    #[test]
    fn reported_errors_map_onto_kinds() {
        let kind = |code: &str| {
            let line = format!(r#"{{"error": "{code}", "message": "details"}}"#);
            let error = parse_reply(line.as_bytes(), 10, false).value.unwrap_err();
            hushbox_core::Error::from(error).kind()
        };
        assert_eq!(kind("not_found"), ErrorKind::NotFound);
        assert_eq!(kind("permission_denied"), ErrorKind::PermissionDenied);
        assert_eq!(kind("unauthenticated"), ErrorKind::Unauthenticated);
        assert_eq!(kind("unavailable"), ErrorKind::Unavailable);
        assert_eq!(kind("invalid"), ErrorKind::Config);
    }

    #[test]
    fn values_over_the_limit_are_too_large() {
        let long = format!(r#"{{"value": "{}"}}"#, "x".repeat(11));
        let error = parse_reply(long.as_bytes(), 10, false).value.unwrap_err();
        assert!(matches!(error, CommandError::TooLarge { limit: 10 }));
        let error = parse_reply(br#"{"value_base64": "AAAAAAAAAAAAAAAA"}"#, 10, false)
            .value
            .unwrap_err();
        assert!(matches!(error, CommandError::TooLarge { limit: 10 }));
    }

    #[test]
    fn requests_are_one_json_line_each() {
        let locations: Vec<SecretRef> = ["p://a b;$(x)?version=2", "p://c\"d"]
            .iter()
            .map(|text| text.parse().unwrap())
            .collect();
        let text = String::from_utf8(requests(&locations)).unwrap();
        assert_eq!(
            text,
            "{\"path\":\"a b;$(x)\",\"params\":{\"version\":\"2\"}}\n{\"path\":\"c\\\"d\",\"params\":{}}\n"
        );
    }
}
