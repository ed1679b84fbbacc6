//! A `.env` parser that follows Docker Compose's `env_file` rules, reading
//! values straight into [`SecretValue`]s.
//!
//! Rules: blank lines and lines starting with `#` are skipped; an optional
//! `export ` prefix is allowed; unquoted values are trimmed and end at a ` #`
//! comment; single-quoted values are literal; double-quoted values understand
//! `\n`, `\r`, `\t`, `\\`, `\"` and `\$`; both kinds of quotes may span lines.
//! `${VAR}` interpolation is not performed: values are taken literally.

use std::fmt;

use crate::value::SecretValue;

/// Why a `.env` document could not be parsed. It names the line, never the
/// content of the line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// The 1-based line where the problem starts.
    pub line: usize,
    /// What is wrong, in hushbox's words.
    pub reason: &'static str,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.reason)
    }
}

impl std::error::Error for ParseError {}

/// Parses a `.env` document into `(name, value)` pairs in file order.
/// A later duplicate name replaces the earlier one, as in Compose.
pub fn parse(document: &[u8]) -> Result<Vec<(String, SecretValue)>, ParseError> {
    let mut parser = Parser {
        input: document,
        pos: 0,
        line: 1,
    };
    let mut entries: Vec<(String, SecretValue)> = Vec::new();
    while let Some((name, value)) = parser.next_entry()? {
        entries.retain(|(existing, _)| existing != &name);
        entries.push((name, value));
    }
    Ok(entries)
}

struct Parser<'a> {
    input: &'a [u8],
    pos: usize,
    line: usize,
}

impl Parser<'_> {
    fn error(&self, line: usize, reason: &'static str) -> ParseError {
        ParseError { line, reason }
    }

    fn peek(&self) -> Option<u8> {
        self.input.get(self.pos).copied()
    }

    fn skip_inline_space(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.pos += 1;
        }
    }

    fn skip_to_next_line(&mut self) {
        while let Some(byte) = self.peek() {
            self.pos += 1;
            if byte == b'\n' {
                self.line += 1;
                return;
            }
        }
    }

    fn next_entry(&mut self) -> Result<Option<(String, SecretValue)>, ParseError> {
        loop {
            self.skip_inline_space();
            match self.peek() {
                None => return Ok(None),
                Some(b'\n') | Some(b'\r') | Some(b'#') => self.skip_to_next_line(),
                Some(_) => break,
            }
        }
        let line = self.line;
        let mut name = self.take_name();
        if name == "export" && matches!(self.peek(), Some(b' ' | b'\t')) {
            self.skip_inline_space();
            name = self.take_name();
        }
        if name.is_empty() {
            return Err(self.error(line, "expected a variable name"));
        }
        if name.as_bytes()[0].is_ascii_digit() {
            return Err(self.error(line, "a variable name cannot start with a digit"));
        }
        self.skip_inline_space();
        if self.peek() != Some(b'=') {
            return Err(self.error(line, "expected `=` after the variable name"));
        }
        self.pos += 1;
        self.skip_inline_space();
        let value = match self.peek() {
            Some(b'\'') => self.quoted(b'\'', line)?,
            Some(b'"') => self.quoted(b'"', line)?,
            _ => self.unquoted(),
        };
        Ok(Some((name, value)))
    }

    fn take_name(&mut self) -> String {
        let start = self.pos;
        while let Some(byte) = self.peek() {
            if byte.is_ascii_alphanumeric() || b"_.-".contains(&byte) {
                self.pos += 1;
            } else {
                break;
            }
        }
        String::from_utf8_lossy(&self.input[start..self.pos]).into_owned()
    }

    fn unquoted(&mut self) -> SecretValue {
        let start = self.pos;
        let mut end = start;
        while let Some(byte) = self.peek() {
            if byte == b'\n' {
                break;
            }
            // ` #` starts a comment; `a#b` is part of the value.
            if byte == b'#' && self.pos > start && matches!(self.input[self.pos - 1], b' ' | b'\t')
            {
                while !matches!(self.peek(), None | Some(b'\n')) {
                    self.pos += 1;
                }
                break;
            }
            self.pos += 1;
            end = self.pos;
        }
        let mut raw = &self.input[start..end];
        while let [rest @ .., b' ' | b'\t' | b'\r'] = raw {
            raw = rest;
        }
        self.skip_to_next_line();
        SecretValue::copy_from_slice(raw)
    }

    fn quoted(&mut self, quote: u8, line: usize) -> Result<SecretValue, ParseError> {
        self.pos += 1; // the opening quote
        // Find the closing quote first, so the value's buffer is sized once.
        let start = self.pos;
        let mut end = None;
        let mut index = start;
        while index < self.input.len() {
            match self.input[index] {
                b'\\' if quote == b'"' => index += 2,
                byte if byte == quote => {
                    end = Some(index);
                    break;
                }
                _ => index += 1,
            }
        }
        let end = end.ok_or_else(|| self.error(line, "a quoted value is never closed"))?;
        let raw = &self.input[start..end];
        let mut value = SecretValue::with_capacity(raw.len());
        if quote == b'\'' {
            value.push_slice(raw);
        } else {
            let mut bytes = raw.iter();
            while let Some(&byte) = bytes.next() {
                if byte != b'\\' {
                    value.push_slice(&[byte]);
                    continue;
                }
                let escaped = match bytes.next() {
                    Some(b'n') => b'\n',
                    Some(b'r') => b'\r',
                    Some(b't') => b'\t',
                    Some(&other) if b"\\\"$".contains(&other) => other,
                    // Unknown escapes stay as written, as Compose keeps them.
                    Some(&other) => {
                        value.push_slice(b"\\");
                        other
                    }
                    None => b'\\',
                };
                value.push_slice(&[escaped]);
            }
        }
        self.line += raw.iter().filter(|&&byte| byte == b'\n').count();
        self.pos = end + 1;
        self.skip_inline_space();
        match self.peek() {
            None | Some(b'\n') | Some(b'\r') | Some(b'#') => {
                self.skip_to_next_line();
                Ok(value)
            }
            Some(_) => Err(self.error(self.line, "unexpected text after a quoted value")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(text: &str) -> Vec<(String, String)> {
        parse(text.as_bytes())
            .unwrap()
            .into_iter()
            .map(|(k, v)| (k, String::from_utf8(v.expose().to_vec()).unwrap()))
            .collect()
    }

    fn p(k: &str, v: &str) -> (String, String) {
        (k.to_owned(), v.to_owned())
    }

    #[test]
    fn compose_rules() {
        let text = "# comment\n\nA=plain\nexport B=exported\nC = spaced  \nD=a#b\nE=v # comment\n\
                    F='single $x \\n'\nG=\"double\\n\\t\\\"q\\\" \\$x\"\nH=\nI=\"multi\nline\"\nJ=last";
        assert_eq!(
            pairs(text),
            vec![
                p("A", "plain"),
                p("B", "exported"),
                p("C", "spaced"),
                p("D", "a#b"),
                p("E", "v"),
                p("F", "single $x \\n"),
                p("G", "double\n\t\"q\" $x"),
                p("H", ""),
                p("I", "multi\nline"),
                p("J", "last"),
            ]
        );
    }

    #[test]
    fn crlf_and_duplicates() {
        assert_eq!(pairs("A=1\r\nA=2\r\n"), vec![p("A", "2")]);
    }

    #[test]
    fn errors_name_the_line_and_not_the_content() {
        let error = parse(b"A=1\nB=2\nsecret-canary-without-equals\n").unwrap_err();
        assert_eq!(error.line, 3);
        assert!(!error.to_string().contains("canary"));
        assert_eq!(parse(b"A=1\nB=\"open\n\n").unwrap_err().line, 2);
        assert_eq!(parse(b"1A=x").unwrap_err().line, 1);
        assert_eq!(parse(b"A=\"x\" y").unwrap_err().line, 1);
    }
}
