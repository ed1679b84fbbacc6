//! Field extraction: `#key` and `#/json/pointer` out of a fetched document.
//!
//! The document is parsed in place: serde_json's `RawValue` borrows every
//! value from the secret buffer, so the fields that were not asked for are
//! never copied, and the one that was is unescaped straight into a buffer of
//! its final size. serde_json's own error messages quote the input, so they
//! are dropped and replaced by hushbox's words.

use std::collections::BTreeMap;

use serde_json::value::RawValue;

use crate::dotenv;
use crate::error::{Error, Result};
use crate::reference::Field;
use crate::value::SecretValue;

/// How a document's fields are addressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// Fields are keys of a JSON object (the default for every backend).
    #[default]
    Json,
    /// Fields are keys of a `.env` file (`KEY=VALUE` lines).
    DotEnv,
}

/// Extracts `field` from `document`.
///
/// # Behavior
/// - A missing key, or a JSON `null`, is [`ErrorKind::NotFound`](crate::ErrorKind::NotFound).
/// - A document that is not of `format` is [`ErrorKind::MalformedPayload`](crate::ErrorKind::MalformedPayload).
/// - A JSON string is delivered unescaped; any other JSON value as its JSON text.
pub fn extract_field(document: &SecretValue, format: Format, field: &Field) -> Result<SecretValue> {
    match format {
        Format::DotEnv => {
            let Field::Key(key) = field else {
                return Err(Error::malformed(
                    "a JSON pointer cannot select from a .env file",
                ));
            };
            // Only the key asked for must be readable: another line's
            // reference to a variable the file lacks does not matter here.
            dotenv::get(document.expose(), key)
                .map_err(|error| Error::malformed(format!("not a valid .env file: {error}")))?
                .ok_or_else(|| Error::not_found(format!("no key `{key}` in the .env file")))
        }
        Format::Json => {
            let not_json =
                || Error::malformed("the secret is not a JSON object, so it has no fields");
            let text = std::str::from_utf8(document.expose()).map_err(|_| not_json())?;
            let raw: &RawValue = serde_json::from_str(text).map_err(|_| not_json())?;
            let selected = match field {
                Field::Key(key) => member(raw, key)?.ok_or_else(|| missing(field))?,
                Field::Pointer(pointer) => follow_pointer(raw, pointer)?,
            };
            raw_to_value(selected, field)
        }
    }
}

fn missing(field: &Field) -> Error {
    Error::not_found(format!("the secret has no field `{field}`"))
}

/// Looks `key` up in a JSON object. `Ok(None)` when the key is missing.
fn member<'a>(raw: &'a RawValue, key: &str) -> Result<Option<&'a RawValue>> {
    let object: BTreeMap<String, &RawValue> = serde_json::from_str(raw.get())
        .map_err(|_| Error::malformed("the secret is not a JSON object, so it has no fields"))?;
    Ok(object.get(key).copied())
}

fn follow_pointer<'a>(root: &'a RawValue, pointer: &str) -> Result<&'a RawValue> {
    let field = Field::Pointer(pointer.to_owned());
    let mut current = root;
    for token in pointer.split('/').skip(1) {
        let token = token.replace("~1", "/").replace("~0", "~");
        let text = current.get().trim_start();
        current = if text.starts_with('[') {
            let items: Vec<&RawValue> = serde_json::from_str(current.get())
                .map_err(|_| Error::malformed("the secret is not valid JSON"))?;
            array_index(&token)
                .and_then(|index| items.get(index).copied())
                .ok_or_else(|| missing(&field))?
        } else if text.starts_with('{') {
            member(current, &token)?.ok_or_else(|| missing(&field))?
        } else {
            return Err(missing(&field));
        };
    }
    Ok(current)
}

/// An RFC 6901 array index: `0`, or digits without a leading zero.
/// `usize::from_str` alone would also take `+1` and `01`.
fn array_index(token: &str) -> Option<usize> {
    let digits_only = !token.is_empty() && token.bytes().all(|byte| byte.is_ascii_digit());
    if !digits_only || (token.len() > 1 && token.starts_with('0')) {
        return None;
    }
    token.parse().ok()
}

fn raw_to_value(raw: &RawValue, field: &Field) -> Result<SecretValue> {
    let text = raw.get().trim();
    if text == "null" {
        return Err(Error::not_found(format!("the field `{field}` is null")));
    }
    match text.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
        Some(inner) => unescape_json_string(inner),
        None => Ok(SecretValue::copy_from_slice(text.as_bytes())),
    }
}

/// Unescapes the inside of a JSON string (already validated by serde_json)
/// into a buffer sized to the escaped text, which is never shorter than the
/// result, so it never reallocates.
fn unescape_json_string(inner: &str) -> Result<SecretValue> {
    let mut out = SecretValue::with_capacity(inner.len());
    let bad = || Error::malformed("the secret holds an invalid JSON string escape");
    let mut chars = inner.chars();
    let mut utf8 = [0u8; 4];
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push_slice(c.encode_utf8(&mut utf8).as_bytes());
            continue;
        }
        let decoded = match chars.next().ok_or_else(bad)? {
            '"' => '"',
            '\\' => '\\',
            '/' => '/',
            'b' => '\u{8}',
            'f' => '\u{c}',
            'n' => '\n',
            'r' => '\r',
            't' => '\t',
            'u' => {
                // serde_json only checked the four hex digits: a high
                // surrogate must be followed by `\u` and a low one, and a
                // low one must not stand alone (`char::from_u32` refuses it).
                let high = hex4(&mut chars).ok_or_else(bad)?;
                if (0xD800..0xDC00).contains(&high) {
                    if chars.next() != Some('\\') || chars.next() != Some('u') {
                        return Err(bad());
                    }
                    let low = hex4(&mut chars)
                        .filter(|low| (0xDC00..0xE000).contains(low))
                        .ok_or_else(bad)?;
                    let combined = 0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00);
                    char::from_u32(combined).ok_or_else(bad)?
                } else {
                    char::from_u32(high).ok_or_else(bad)?
                }
            }
            _ => return Err(bad()),
        };
        out.push_slice(decoded.encode_utf8(&mut utf8).as_bytes());
    }
    utf8.fill(0); // the last character decoded stays in this scratch array otherwise
    Ok(out)
}

fn hex4(chars: &mut std::str::Chars<'_>) -> Option<u32> {
    let mut value = 0;
    for _ in 0..4 {
        value = value * 16 + chars.next()?.to_digit(16)?;
    }
    Some(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    fn json(text: &str, field: &str) -> Result<Vec<u8>> {
        let field = if field.starts_with('/') {
            Field::Pointer(field.into())
        } else {
            Field::Key(field.into())
        };
        extract_field(
            &SecretValue::copy_from_slice(text.as_bytes()),
            Format::Json,
            &field,
        )
        .map(|v| v.expose().to_vec())
    }

    #[test]
    fn top_level_string_is_unescaped() {
        let doc = r#"{"user":"app","password":"p\"a\\ss\n\u00e9\ud83d\ude00"}"#;
        assert_eq!(json(doc, "password").unwrap(), "p\"a\\ss\né😀".as_bytes());
        assert_eq!(json(doc, "user").unwrap(), b"app");
    }

    #[test]
    fn non_string_values_come_as_json_text() {
        assert_eq!(json(r#"{"port": 5432}"#, "port").unwrap(), b"5432");
        assert_eq!(json(r#"{"o": {"a": 1}}"#, "o").unwrap(), br#"{"a": 1}"#);
    }

    #[test]
    fn pointer_walks_objects_and_arrays() {
        let doc = r#"{"db":{"hosts":["a","b"],"a/b":{"~k":"x"}}}"#;
        assert_eq!(json(doc, "/db/hosts/1").unwrap(), b"b");
        assert_eq!(json(doc, "/db/a~1b/~0k").unwrap(), b"x");
        assert_eq!(
            json(doc, "/db/hosts/9").unwrap_err().kind(),
            ErrorKind::NotFound
        );
    }

    #[test]
    fn missing_and_null_are_not_found() {
        assert_eq!(
            json(r#"{"a":1}"#, "b").unwrap_err().kind(),
            ErrorKind::NotFound
        );
        assert_eq!(
            json(r#"{"a":null}"#, "a").unwrap_err().kind(),
            ErrorKind::NotFound
        );
    }

    #[test]
    fn non_json_is_malformed_and_the_error_does_not_quote_it() {
        for doc in [
            "plain-canary-text",
            "[1,2]",
            "{\"a\": canary}",
            "\u{0}\u{1}",
        ] {
            let error = json(doc, "a").unwrap_err();
            assert_eq!(error.kind(), ErrorKind::MalformedPayload, "{doc}");
            assert!(!error.to_string().contains("canary"));
        }
    }

    #[test]
    fn dotenv_fields() {
        let doc = SecretValue::copy_from_slice(b"# c\nA=1\nexport B=\"two words\"\n");
        let b = extract_field(&doc, Format::DotEnv, &Field::Key("B".into())).unwrap();
        assert_eq!(b.expose(), b"two words");
        let error = extract_field(&doc, Format::DotEnv, &Field::Key("C".into())).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::NotFound);
    }

    /// serde_json checks only that `\u` has four hex digits when it skips
    /// a string, so hushbox's own unescaper must refuse surrogates that do
    /// not pair: they used to decode to another character (or overflow).
    #[test]
    fn invalid_surrogates_are_malformed_not_another_character() {
        for escaped in [
            r"\ud800",
            r"\ud800x",
            r"\ud800\u0041",
            r"\ud800\ud800",
            r"\ud800\ue000",
            r"\udc00",
            r"\udfff\ud800",
            r"\ud800\n",
        ] {
            let doc = format!(r#"{{"a":"{escaped}"}}"#);
            let error = json(&doc, "a").unwrap_err();
            assert_eq!(error.kind(), ErrorKind::MalformedPayload, "{escaped}");
        }
        // A real pair, upper- or lower-case, still decodes.
        assert_eq!(
            json(r#"{"a":"\uD83D\uDE00"}"#, "a").unwrap(),
            "😀".as_bytes()
        );
        assert_eq!(
            json(r#"{"a":"\udbff\udfff"}"#, "a").unwrap(),
            "\u{10ffff}".as_bytes()
        );
    }

    /// Found by the `json_field` fuzz target: `usize::from_str` takes a
    /// sign and leading zeros, so `/hosts/+1` and `/hosts/01` selected
    /// `hosts[1]`. RFC 6901 array indexes are `0` or digits without a
    /// leading zero; anything else selects nothing.
    #[test]
    fn pointer_array_indexes_are_rfc_6901_digits_only() {
        let doc = r#"{"hosts":["a","b"]}"#;
        assert_eq!(json(doc, "/hosts/1").unwrap(), b"b");
        assert_eq!(json(doc, "/hosts/0").unwrap(), b"a");
        for pointer in [
            "/hosts/+1",
            "/hosts/01",
            "/hosts/-0",
            "/hosts/ 1",
            "/hosts/",
            "/hosts/-",
        ] {
            assert_eq!(
                json(doc, pointer).unwrap_err().kind(),
                ErrorKind::NotFound,
                "{pointer}"
            );
        }
    }
}
