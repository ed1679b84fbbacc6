//! `hushbox store export --format env|json [PREFIX]`: moving out.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};

use hushbox_age::AgeStore;
use hushbox_core::{Error, SecretValue};

use crate::cli::ExportFormat;
use crate::commands::Outcome;
use crate::exit;

/// Prints every secret under `prefix` to stdout, refusing a terminal
/// unless `force`: an export is for a file or a pipe, not for the screen
/// (and the scroll-back buffer).
pub(super) fn export(store: &AgeStore, format: ExportFormat, prefix: &str, force: bool) -> Outcome {
    let mut stdout = std::io::stdout().lock();
    if stdout.is_terminal() && !force {
        return Err(Error::config(
            "refusing to print secrets to a terminal; redirect stdout to a file or a pipe \
             (`> file`, `| …`), or pass --force",
        )
        .into());
    }
    let names = store.list(prefix)?;
    let mut values = Vec::with_capacity(names.len());
    for name in &names {
        values.push(store.get(name)?);
    }
    let text = match format {
        ExportFormat::Env => as_env(&names, &values, prefix)?,
        ExportFormat::Json => as_json(&names, &values)?,
    };
    // Where the values leave hushbox's custody, as the user asked.
    stdout
        .write_all(text.expose())
        .and_then(|()| stdout.flush())
        .map_err(|error| Error::io("cannot write to stdout", error))?;
    eprintln!("hushbox: exported {} secret(s)", names.len());
    Ok(exit::OK)
}

/// The variable name of a secret in an env export: its name below the
/// prefix, with `/`, `.` and `-` as `_`.
fn variable_name(name: &str, prefix: &str) -> Result<String, Error> {
    let relative = name.strip_prefix(prefix).unwrap_or(name);
    let variable: String = relative
        .chars()
        .map(|c| if matches!(c, '/' | '.' | '-') { '_' } else { c })
        .collect();
    let mut chars = variable.chars();
    let valid = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if valid {
        Ok(variable)
    } else {
        Err(Error::config(format!(
            "`{variable}` is not a valid variable name for an env export; export it as JSON, \
             or rename the secret (`hushbox store mv`)"
        ))
        .with_subject(name))
    }
}

/// `NAME="value"` lines that Compose (and `store import`) read back as the
/// same bytes: `\`, `"` and `$` are escaped, line breaks written as `\n`
/// and `\r`.
fn as_env(names: &[String], values: &[SecretValue], prefix: &str) -> Result<SecretValue, Error> {
    let mut seen = BTreeMap::new();
    let size: usize = names
        .iter()
        .zip(values)
        .map(|(n, v)| n.len() + v.len() * 2 + 4)
        .sum();
    let mut out = SecretValue::with_capacity(size);
    for (name, value) in names.iter().zip(values) {
        let variable = variable_name(name, prefix)?;
        if let Some(other) = seen.insert(variable.clone(), name.clone()) {
            return Err(Error::config(format!(
                "{other} and {name} would both be exported as {variable}"
            )));
        }
        out.push_slice(variable.as_bytes());
        out.push_slice(b"=\"");
        for &byte in value.expose() {
            match byte {
                b'\\' => out.push_slice(b"\\\\"),
                b'"' => out.push_slice(b"\\\""),
                b'$' => out.push_slice(b"\\$"),
                b'\n' => out.push_slice(b"\\n"),
                b'\r' => out.push_slice(b"\\r"),
                other => out.push_slice(&[other]),
            }
        }
        out.push_slice(b"\"\n");
    }
    Ok(out)
}

/// One JSON object, name → value. Values must be UTF-8.
fn as_json(names: &[String], values: &[SecretValue]) -> Result<SecretValue, Error> {
    let size: usize = names
        .iter()
        .zip(values)
        .map(|(n, v)| n.len() + v.len() * 2 + 8)
        .sum();
    let mut out = SecretValue::with_capacity(size + 4);
    out.push_slice(b"{");
    for (index, (name, value)) in names.iter().zip(values).enumerate() {
        let text = std::str::from_utf8(value.expose()).map_err(|_| {
            Error::config("the value is not UTF-8 text, which JSON cannot hold; export it as env")
                .with_subject(name)
        })?;
        out.push_slice(if index == 0 { b"\n  " } else { b",\n  " });
        push_json_string(&mut out, name);
        out.push_slice(b": ");
        push_json_string(&mut out, text);
    }
    out.push_slice(b"\n}\n");
    Ok(out)
}

fn push_json_string(out: &mut SecretValue, text: &str) {
    out.push_slice(b"\"");
    for c in text.chars() {
        match c {
            '"' => out.push_slice(b"\\\""),
            '\\' => out.push_slice(b"\\\\"),
            '\n' => out.push_slice(b"\\n"),
            '\r' => out.push_slice(b"\\r"),
            '\t' => out.push_slice(b"\\t"),
            c if (c as u32) < 0x20 => {
                // Written digit by digit: no `String` copy of the value's byte.
                const HEX: &[u8; 16] = b"0123456789abcdef";
                let byte = c as u8;
                out.push_slice(&[
                    b'\\',
                    b'u',
                    b'0',
                    b'0',
                    HEX[usize::from(byte >> 4)],
                    HEX[usize::from(byte & 0xf)],
                ]);
            }
            c => {
                let mut buffer = [0u8; 4];
                out.push_slice(c.encode_utf8(&mut buffer).as_bytes());
            }
        }
    }
    out.push_slice(b"\"");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(items: &[&[u8]]) -> Vec<SecretValue> {
        items
            .iter()
            .map(|v| SecretValue::copy_from_slice(v))
            .collect()
    }

    #[test]
    fn env_export_reads_back_as_the_same_bytes() {
        let names = vec!["dev/DB_URL".to_owned(), "dev/odd.name-1".to_owned()];
        let originals: [&[u8]; 2] = [b"a\"b\\c$D ${X}\nline2\r\ttab #x", b"'single' \\n"];
        let text = as_env(&names, &values(&originals), "dev/").unwrap();
        let parsed = hushbox_core::dotenv::parse(text.expose()).unwrap();
        assert_eq!(parsed[0].0, "DB_URL");
        assert_eq!(parsed[1].0, "odd_name_1");
        assert_eq!(parsed[0].1.expose(), originals[0]);
        assert_eq!(parsed[1].1.expose(), originals[1]);
    }

    #[test]
    fn env_names_must_be_variables_and_distinct() {
        let names = vec!["a/b".to_owned(), "a_b".to_owned()];
        assert!(as_env(&names, &values(&[b"1", b"2"]), "").is_err());
        assert!(as_env(&["9lives".to_owned()], &values(&[b"1"]), "").is_err());
    }

    #[test]
    fn json_export_is_json() {
        let names = vec!["a".to_owned(), "b/c".to_owned()];
        let text = as_json(&names, &values(&[b"q\"\\\n\x01", b"\xc3\xa9"])).unwrap();
        let parsed: serde_json::Value = serde_json::from_slice(text.expose()).unwrap();
        assert_eq!(parsed["a"], "q\"\\\n\u{1}");
        assert_eq!(parsed["b/c"], "é");
        assert!(as_json(&names[..1], &values(&[b"\xff"])).is_err());
    }
}
