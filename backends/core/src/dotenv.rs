//! A `.env` parser that follows Docker Compose's `env_file` rules
//! (`compose-spec/compose-go`, `dotenv/parser.go` and `template/`), reading
//! values straight into [`SecretValue`]s.
//!
//! # Rules
//! - Blank lines and lines whose first non-blank character is `#` are
//!   skipped. An optional `export ` prefix is allowed.
//! - A name is letters, digits, `_`, `.`, `-`, `[` and `]`; it ends at `=`
//!   or, YAML-style, at `:`. A name alone on its line has no value in the
//!   file (Compose takes it from its own environment): [`parse_entries`]
//!   reports it as [`Value::FromEnvironment`], [`parse`] leaves it out.
//! - **Unquoted** values run to the end of the line, end at the first ` #`
//!   (a space, then `#`: `a#b` is a value), and lose surrounding blanks.
//! - **Single-quoted** values are literal, except that `\'` is a quote; they
//!   may span lines.
//! - **Double-quoted** values may span lines and understand `\n`, `\r`,
//!   `\t`, `\a`, `\b`, `\f`, `\v`, `\\`, `\"`, `\$` and `\0ooo` (octal);
//!   other backslashes stay as written.
//! - **Interpolation**, in unquoted and double-quoted values: `$NAME`,
//!   `${NAME}`, `${NAME:-default}`, `${NAME-default}`, `${NAME:+alt}`,
//!   `${NAME+alt}`, `${NAME:?message}`, `${NAME?message}`, and `$$` for a
//!   literal `$`. Names are looked up among the entries **earlier in the same
//!   file** only. Compose would also look in its own environment; hushbox
//!   does not take values from whatever environment it happens to run in, so
//!   a reference to a name the file does not define (without a default) is
//!   an error rather than a silently empty value. That error spoils its own
//!   entry only ([`Value::Invalid`]): [`parse`] refuses the document, while
//!   [`get`] still reads the other names.
//! - A later duplicate name replaces the earlier one, as in Compose.
//!
//! Stricter than Compose, on purpose: text after a closing quote (other than
//! a `#` comment) is an error; Compose would read it as the next line.
//!
//! Errors name the line and never quote it: a line of a `.env` file is
//! likely to hold a secret, and so is the name in a reference such as the
//! `$word` of `pa$word`.

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

/// One name of a `.env` document.
pub struct Entry {
    /// The variable's name.
    pub name: String,
    /// The 1-based line where the entry starts.
    pub line: usize,
    /// What the file says its value is.
    pub value: Value,
}

/// The value of an [`Entry`].
pub enum Value {
    /// The value the file defines.
    Defined(SecretValue),
    /// A name alone on its line: Compose takes its value from its own
    /// environment; the file does not define one.
    FromEnvironment,
    /// The value refers to a variable that the file does not define before
    /// it (or a required one that is empty): it has no value hushbox will
    /// deliver.
    Invalid(ParseError),
}

impl Value {
    /// The defined value, if there is one.
    pub fn defined(&self) -> Option<&SecretValue> {
        match self {
            Value::Defined(value) => Some(value),
            _ => None,
        }
    }
}

impl fmt::Debug for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let value = match &self.value {
            Value::Defined(_) => "defined",
            Value::FromEnvironment => "from the environment",
            Value::Invalid(_) => "invalid",
        };
        f.debug_struct("Entry")
            .field("name", &self.name)
            .field("line", &self.line)
            .field("value", &value)
            .finish_non_exhaustive()
    }
}

/// Parses a `.env` document into `(name, value)` pairs, in the order of
/// each name's last definition. Names without a value in the file are left
/// out; a value that cannot be interpolated is an error.
pub fn parse(document: &[u8]) -> Result<Vec<(String, SecretValue)>, ParseError> {
    let mut pairs = Vec::new();
    for entry in parse_entries(document)? {
        match entry.value {
            Value::Defined(value) => pairs.push((entry.name, value)),
            Value::FromEnvironment => {}
            Value::Invalid(error) => return Err(error),
        }
    }
    Ok(pairs)
}

/// The value of `name` in a `.env` document: `Ok(None)` when the file does
/// not define it. Only a syntax error anywhere, or a value of `name` itself
/// that cannot be interpolated, is an error: another line's reference to a
/// variable the file lacks does not stop this one from being read.
pub fn get(document: &[u8], name: &str) -> Result<Option<SecretValue>, ParseError> {
    let entry = parse_entries(document)?
        .into_iter()
        .find(|entry| entry.name == name);
    match entry.map(|entry| entry.value) {
        Some(Value::Defined(value)) => Ok(Some(value)),
        Some(Value::Invalid(error)) => Err(error),
        Some(Value::FromEnvironment) | None => Ok(None),
    }
}

/// Parses a `.env` document into its entries, in the order of each name's
/// last definition, including names alone on a line. A syntax error
/// anywhere is an error; a value that cannot be interpolated is an
/// [`Value::Invalid`] entry.
pub fn parse_entries(document: &[u8]) -> Result<Vec<Entry>, ParseError> {
    let mut parser = Parser {
        input: document,
        pos: 0,
        line: 1,
    };
    let mut entries: Vec<Entry> = Vec::new();
    while let Some(entry) = parser.next_entry(&entries)? {
        entries.retain(|existing| existing.name != entry.name);
        entries.push(entry);
    }
    Ok(entries)
}

/// The length of the blank (not a line break) starting at `bytes[0]`, or 0:
/// space, tab, vertical tab, form feed, carriage return, and the UTF-8
/// encodings of U+0085 and U+00A0, as Compose's `isSpace`.
fn blank_len(bytes: &[u8]) -> usize {
    match bytes {
        [b' ' | b'\t' | 0x0b | 0x0c | b'\r', ..] => 1,
        [0xc2, 0x85 | 0xa0, ..] => 2,
        _ => 0,
    }
}

/// Removes trailing blanks (and, as Go's `unicode.IsSpace`, line breaks).
fn trim_end(mut bytes: &[u8]) -> &[u8] {
    loop {
        match bytes {
            [rest @ .., b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r'] => bytes = rest,
            [rest @ .., 0xc2, 0x85 | 0xa0] => bytes = rest,
            _ => return bytes,
        }
    }
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

    /// A value with its references resolved, or why it cannot be.
    fn interpolated(&self, raw: &[u8], line: usize, earlier: &[Entry]) -> Value {
        match interpolate(raw, earlier) {
            Ok(value) => Value::Defined(value),
            Err(reason) => Value::Invalid(self.error(line, reason)),
        }
    }

    fn rest(&self) -> &[u8] {
        &self.input[self.pos.min(self.input.len())..]
    }

    fn skip_blanks(&mut self) {
        loop {
            let n = blank_len(self.rest());
            if n == 0 {
                return;
            }
            self.pos += n;
        }
    }

    fn skip_line(&mut self) {
        match self.rest().iter().position(|&byte| byte == b'\n') {
            Some(offset) => {
                self.pos += offset + 1;
                self.line += 1;
            }
            None => self.pos = self.input.len(),
        }
    }

    fn next_entry(&mut self, earlier: &[Entry]) -> Result<Option<Entry>, ParseError> {
        // Blank lines and comments.
        loop {
            self.skip_blanks();
            match self.rest().first() {
                None => return Ok(None),
                Some(b'\n') => {
                    self.pos += 1;
                    self.line += 1;
                }
                Some(b'#') => self.skip_line(),
                Some(_) => break,
            }
        }
        let line = self.line;
        if let Some(after) = self.rest().strip_prefix(b"export")
            && blank_len(after) > 0
        {
            self.pos += b"export".len();
            self.skip_blanks();
        }
        let name = self.name(line)?;
        match self.rest().first() {
            None | Some(b'\n') => {
                // A name alone: its value comes from Compose's environment.
                self.skip_line();
                return Ok(Some(Entry {
                    name,
                    line,
                    value: Value::FromEnvironment,
                }));
            }
            _ => self.pos += 1, // `=` or `:`
        }
        self.skip_blanks();
        let value = match self.rest().first() {
            Some(&quote @ (b'\'' | b'"')) => self.quoted(quote, line, earlier)?,
            _ => self.unquoted(line, earlier)?,
        };
        Ok(Some(Entry { name, line, value }))
    }

    /// Reads a name up to `=`, `:`, a line break or the end, leaving the
    /// position on that terminator.
    fn name(&mut self, line: usize) -> Result<String, ParseError> {
        let start = self.pos;
        let end = self
            .rest()
            .iter()
            .position(|byte| matches!(byte, b'=' | b':' | b'\n'))
            .map_or(self.input.len(), |offset| self.pos + offset);
        self.pos = end;
        let raw = std::str::from_utf8(trim_end(&self.input[start..end]))
            .map_err(|_| self.error(line, "a variable name is not valid UTF-8"))?;
        if raw.is_empty() {
            return Err(self.error(line, "expected a variable name before `=`"));
        }
        for c in raw.chars() {
            if c.is_whitespace() {
                return Err(self.error(line, "a variable name cannot contain a space"));
            }
            if !(c.is_alphanumeric() || "_.-[]".contains(c)) {
                return Err(self.error(
                    line,
                    "unexpected character in a variable name (expected letters, digits, `_`, `.`, `-`, `[`, `]`, then `=`)",
                ));
            }
        }
        Ok(raw.to_owned())
    }

    fn unquoted(&mut self, line: usize, earlier: &[Entry]) -> Result<Value, ParseError> {
        let rest = self.rest();
        let end = rest
            .iter()
            .position(|&byte| byte == b'\n')
            .unwrap_or(rest.len());
        let mut raw = &rest[..end];
        // ` #` starts a comment; `a#b` is part of the value.
        if let Some(comment) = raw.windows(2).position(|pair| pair == b" #") {
            raw = &raw[..comment];
        }
        let raw = trim_end(raw);
        let value = self.interpolated(raw, line, earlier);
        self.skip_line();
        Ok(value)
    }

    fn quoted(&mut self, quote: u8, line: usize, earlier: &[Entry]) -> Result<Value, ParseError> {
        let start = self.pos + 1; // after the opening quote
        // Find the closing quote first, so the value's buffer is sized once:
        // a quote preceded by an unconsumed backslash is escaped.
        let mut index = start;
        let mut escaped = false;
        let end = loop {
            let Some(&byte) = self.input.get(index) else {
                return Err(self.error(line, "a quoted value is never closed"));
            };
            if byte == quote && !escaped {
                break index;
            }
            escaped = byte == b'\\' && !escaped;
            index += 1;
        };
        let raw = &self.input[start..end];
        // `\<quote>` becomes the quote; every other backslash stays.
        let mut collected = SecretValue::with_capacity(raw.len());
        let mut bytes = raw.iter().copied().peekable();
        while let Some(byte) = bytes.next() {
            if byte == b'\\' {
                match bytes.peek() {
                    Some(&next) if next == quote => {
                        collected.push_slice(&[quote]);
                        bytes.next();
                    }
                    Some(&next) => {
                        collected.push_slice(&[b'\\', next]);
                        bytes.next();
                    }
                    None => collected.push_slice(b"\\"),
                }
            } else {
                collected.push_slice(&[byte]);
            }
        }
        let value = if quote == b'"' {
            let unescaped = expand_escapes(collected.expose());
            self.interpolated(unescaped.expose(), line, earlier)
        } else {
            Value::Defined(collected)
        };
        self.line += raw.iter().filter(|&&byte| byte == b'\n').count();
        self.pos = end + 1;
        self.skip_blanks();
        match self.rest().first() {
            None | Some(b'\n') | Some(b'#') => {
                self.skip_line();
                Ok(value)
            }
            Some(_) => Err(self.error(self.line, "unexpected text after a quoted value")),
        }
    }
}

/// Compose's escapes of double-quoted values. `\$` becomes `$$`, which
/// interpolation then turns into a literal `$`.
fn expand_escapes(raw: &[u8]) -> SecretValue {
    // `\$` is the only escape that grows (by nothing: two bytes for two).
    let mut out = SecretValue::with_capacity(raw.len());
    let mut index = 0;
    while index < raw.len() {
        let byte = raw[index];
        if byte != b'\\' || index + 1 == raw.len() {
            out.push_slice(&[byte]);
            index += 1;
            continue;
        }
        let next = raw[index + 1];
        let simple = match next {
            b'a' => Some(0x07),
            b'b' => Some(0x08),
            b'f' => Some(0x0c),
            b'n' => Some(b'\n'),
            b'r' => Some(b'\r'),
            b't' => Some(b'\t'),
            b'v' => Some(0x0b),
            b'"' => Some(b'"'),
            b'\\' => Some(b'\\'),
            _ => None,
        };
        if let Some(replacement) = simple {
            out.push_slice(&[replacement]);
            index += 2;
        } else if next == b'$' {
            out.push_slice(b"$$");
            index += 2;
        } else if next == b'0' {
            // `\0` and up to three digits; only `\0ooo` (three octal digits,
            // at most 0o377) means a character, as Go's UnquoteChar reads it.
            let digits = raw[index + 2..]
                .iter()
                .take(3)
                .take_while(|byte| byte.is_ascii_digit())
                .count();
            let sequence = &raw[index..index + 2 + digits];
            let octal = &sequence[2..];
            let value = (digits == 3 && octal.iter().all(|digit| (b'0'..=b'7').contains(digit)))
                .then(|| {
                    octal
                        .iter()
                        .fold(0u32, |acc, digit| acc * 8 + u32::from(digit - b'0'))
                })
                .filter(|value| *value <= 0o377);
            match value.and_then(char::from_u32) {
                Some(c) => {
                    let mut buffer = [0u8; 4];
                    out.push_slice(c.encode_utf8(&mut buffer).as_bytes());
                }
                None => out.push_slice(sequence),
            }
            index += sequence.len();
        } else {
            // `\c`, `\x`, `\u`…: kept as written.
            out.push_slice(&[b'\\', next]);
            index += 2;
        }
    }
    out
}

const UNDEFINED: &str = "the value refers to a variable ($NAME or ${NAME}) that is not defined earlier \
     in this file; hushbox takes no values from its own environment: define it above, \
     give a default (${NAME:-default}), write $$ for a literal $, or single-quote the value";

/// Compose's interpolation, looking names up among `earlier` entries only.
fn interpolate(raw: &[u8], earlier: &[Entry]) -> Result<SecretValue, &'static str> {
    let mut out = SecretValue::with_capacity(raw.len());
    let mut index = 0;
    while index < raw.len() {
        let dollar = match raw[index..].iter().position(|&byte| byte == b'$') {
            Some(offset) => index + offset,
            None => {
                out.push_slice(&raw[index..]);
                break;
            }
        };
        out.push_slice(&raw[index..dollar]);
        let after = &raw[dollar + 1..];
        match after.first() {
            Some(b'$') => {
                out.push_slice(b"$");
                index = dollar + 2;
            }
            Some(b'{') => {
                let close = matching_brace(&after[1..])
                    .ok_or("a `${` in the value is never closed with `}`")?;
                let inner = &after[1..1 + close];
                substitute_braced(inner, earlier, &mut out)?;
                index = dollar + 2 + close + 1;
            }
            Some(&first) if first == b'_' || first.is_ascii_alphabetic() => {
                let length = name_length(after);
                let value = lookup(&after[..length], earlier).ok_or(UNDEFINED)?;
                out.push_slice(value.expose());
                index = dollar + 1 + length;
            }
            // `$1`, `$-`, a final `$`: not a reference, kept as written.
            _ => {
                out.push_slice(b"$");
                index = dollar + 1;
            }
        }
    }
    Ok(out)
}

fn name_length(bytes: &[u8]) -> usize {
    bytes
        .iter()
        .take_while(|byte| byte.is_ascii_alphanumeric() || **byte == b'_')
        .count()
}

/// The offset of the `}` closing an opening `{` just before `bytes`.
fn matching_brace(bytes: &[u8]) -> Option<usize> {
    let mut depth = 0usize;
    for (offset, &byte) in bytes.iter().enumerate() {
        match byte {
            b'{' => depth += 1,
            b'}' if depth == 0 => return Some(offset),
            b'}' => depth -= 1,
            _ => {}
        }
    }
    None
}

fn lookup<'e>(name: &[u8], earlier: &'e [Entry]) -> Option<&'e SecretValue> {
    earlier
        .iter()
        .find(|entry| entry.name.as_bytes() == name)
        .and_then(|entry| entry.value.defined())
}

/// `NAME`, `NAME:-default`, `NAME-default`, `NAME:+alt`, `NAME+alt`,
/// `NAME:?message`, `NAME?message` (the inside of `${…}`).
fn substitute_braced(
    inner: &[u8],
    earlier: &[Entry],
    out: &mut SecretValue,
) -> Result<(), &'static str> {
    const INVALID: &str =
        "a `${…}` in the value is not a valid reference (expected ${NAME}, ${NAME:-default}, …)";
    if !inner
        .first()
        .is_some_and(|byte| *byte == b'_' || byte.is_ascii_alphabetic())
    {
        return Err(INVALID);
    }
    let length = name_length(inner);
    let value = lookup(&inner[..length], earlier);
    let operator = &inner[length..];
    let (colon, operator) = match operator.strip_prefix(b":") {
        Some(rest) => (true, rest),
        None => (false, operator),
    };
    // `:` tests "unset or empty"; without it, only "unset".
    let missing = value.is_none_or(|value| colon && value.is_empty());
    match operator.split_first() {
        None if !colon => {
            out.push_slice(value.ok_or(UNDEFINED)?.expose());
        }
        Some((b'-', default)) => match value {
            Some(value) if !missing => out.push_slice(value.expose()),
            _ => out.push_slice(interpolate(default, earlier)?.expose()),
        },
        Some((b'+', alternative)) => {
            if !missing {
                out.push_slice(interpolate(alternative, earlier)?.expose());
            }
        }
        Some((b'?', _message)) => match value {
            Some(value) if !missing => out.push_slice(value.expose()),
            // The message is the file's text: not repeated here.
            _ => return Err("a required variable (${NAME?…} or ${NAME:?…}) is not set"),
        },
        _ => return Err(INVALID),
    }
    Ok(())
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

    fn value(text: &str) -> String {
        let all = pairs(text);
        all.last().unwrap().1.clone()
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

    /// The cases of compose-go's own fixtures (`dotenv/fixtures/quoted.env`
    /// and the parser tests).
    #[test]
    fn compose_fixtures() {
        let text = "OPTION_A='1'\nOPTION_B='2'\nOPTION_C=''\nOPTION_D='\\n'\nOPTION_E=\"1\"\n\
                    OPTION_F=\"2\"\nOPTION_G=\"\"\nOPTION_H=\"\\n\"\nOPTION_I = \"echo 'asd'\" # Inline comment\n\
                    OPTION_J = 'first line\nsecond line\nthird line\nand so on'\nOPTION_K='Let\\'s go!'\n\
                    OPTION_Z = \"last value\"\n";
        assert_eq!(
            pairs(text),
            vec![
                p("OPTION_A", "1"),
                p("OPTION_B", "2"),
                p("OPTION_C", ""),
                p("OPTION_D", "\\n"),
                p("OPTION_E", "1"),
                p("OPTION_F", "2"),
                p("OPTION_G", ""),
                p("OPTION_H", "\n"),
                p("OPTION_I", "echo 'asd'"),
                p("OPTION_J", "first line\nsecond line\nthird line\nand so on"),
                p("OPTION_K", "Let's go!"),
                p("OPTION_Z", "last value"),
            ]
        );
    }

    #[test]
    fn names_yaml_style_and_odd_characters() {
        assert_eq!(
            pairs("a.b-c[0]=1\nKEY: yaml\n  export   X=2\nÜ=u\n"),
            vec![
                p("a.b-c[0]", "1"),
                p("KEY", "yaml"),
                p("X", "2"),
                p("Ü", "u")
            ]
        );
        // `export` alone is a name.
        assert_eq!(pairs("export=1"), vec![p("export", "1")]);
    }

    #[test]
    fn comments_need_a_space_before_the_hash() {
        assert_eq!(value("A=x\t#y"), "x\t#y");
        assert_eq!(value("A=x #y"), "x");
        assert_eq!(value("A= #y"), "#y");
        assert_eq!(value("A=\"x\" # c"), "x");
    }

    #[test]
    fn double_quote_escapes() {
        assert_eq!(value(r#"A="\a\b\f\v\c\x\\""#), "\x07\x08\x0c\x0b\\c\\x\\");
        assert_eq!(value(r#"A="\0123\0\01\0777\0089""#), "S\\0\\01\\0777\\0089");
        assert_eq!(value(r#"A="\0351""#), "é");
        assert_eq!(value(r#"A='a\\'"#), "a\\\\");
        assert_eq!(value("A=\"\\\"\""), "\"");
    }

    #[test]
    fn interpolation_uses_earlier_entries_only() {
        assert_eq!(value("U=app\nA=${U}@$U/$$U"), "app@app/$U");
        assert_eq!(value("U=app\nA=\"${U}\\$U\""), "app$U");
        assert_eq!(value("U=app\nA='${U}'"), "${U}");
        assert_eq!(value("E=\nA=${E:-d}${E-d}${N:-${E}x}"), "dx");
        assert_eq!(
            value("U=u\nE=\nA=${U:+alt}${E:+no}${E+yes}${N+no}"),
            "altyes"
        );
        assert_eq!(value("U=u\nA=${U:?must}${U?must}"), "uu");
        assert_eq!(value("A=$1 $- cost$"), "$1 $- cost$");
        // Later definitions do not count.
        let error = parse(b"A=${B}\nB=1").unwrap_err();
        assert_eq!(error.line, 1);
    }

    #[test]
    fn undefined_references_are_errors_that_do_not_name_them() {
        for text in [
            "A=pa$sw0rd-canary",
            "A=\"${canary}\"",
            "E=\nA=${E:?canary}",
            "A=${canary?x}",
            "A=${canary",
            "A=${1canary}",
        ] {
            let error = parse(text.as_bytes()).unwrap_err();
            assert!(!error.to_string().contains("canary"), "{text}: {error}");
            assert_eq!(error.line, text.matches('\n').count() + 1, "{text}");
        }
    }

    #[test]
    fn get_reads_a_name_despite_another_line_it_cannot_interpolate() {
        let document = b"PATH_EXTRA=$HOME/bin\nKEY=value\nUSES=${KEY}-x\nBAD=${PATH_EXTRA}\n";
        assert_eq!(get(document, "KEY").unwrap().unwrap().expose(), b"value");
        assert_eq!(get(document, "USES").unwrap().unwrap().expose(), b"value-x");
        assert_eq!(get(document, "PATH_EXTRA").unwrap_err().line, 1);
        // An entry that refers to an invalid one is invalid too.
        assert_eq!(get(document, "BAD").unwrap_err().line, 4);
        assert!(get(document, "ABSENT").unwrap().is_none());
        assert_eq!(parse(document).unwrap_err().line, 1);
        // A syntax error anywhere is still fatal.
        assert!(get(b"KEY=v\nA=\"open\n", "KEY").is_err());
    }

    #[test]
    fn names_alone_have_no_value() {
        let entries = parse_entries(b"A=1\nINHERITED\nB=2\nLAST").unwrap();
        let shape: Vec<(&str, usize, bool)> = entries
            .iter()
            .map(|entry| {
                (
                    entry.name.as_str(),
                    entry.line,
                    entry.value.defined().is_some(),
                )
            })
            .collect();
        assert_eq!(
            shape,
            [
                ("A", 1, true),
                ("INHERITED", 2, false),
                ("B", 3, true),
                ("LAST", 4, false)
            ]
        );
        assert_eq!(pairs("A=1\nINHERITED\n"), vec![p("A", "1")]);
    }

    #[test]
    fn crlf_and_duplicates() {
        assert_eq!(pairs("A=1\r\nA=2\r\n"), vec![p("A", "2")]);
        assert_eq!(
            pairs("A=\"x\"\r\nB='y'\r\n"),
            vec![p("A", "x"), p("B", "y")]
        );
    }

    #[test]
    fn line_numbers_follow_multi_line_values() {
        let error = parse(b"A='one\ntwo'\nB=\"three\nfour\"\n\nbad name=x").unwrap_err();
        assert_eq!(error.line, 6);
    }

    #[test]
    fn errors_name_the_line_and_not_the_content() {
        let error = parse(b"A=1\nB=2\nsecret canary with spaces\n").unwrap_err();
        assert_eq!(error.line, 3);
        assert!(!error.to_string().contains("canary"));
        let error = parse(b"A=1\ncanary$=x\n").unwrap_err();
        assert_eq!(error.line, 2);
        assert!(!error.to_string().contains("canary"));
        assert_eq!(parse(b"A=1\nB=\"open\n\n").unwrap_err().line, 2);
        assert_eq!(parse(b"A=\"x\" y").unwrap_err().line, 1);
        assert_eq!(parse(b"=x").unwrap_err().line, 1);
    }

    #[test]
    fn debug_of_an_entry_hides_the_value() {
        let entries = parse_entries(b"A=canary").unwrap();
        let text = format!("{entries:?}");
        assert!(
            !text.contains("canary") && text.contains("value: \"defined\""),
            "{text}"
        );
    }
}
