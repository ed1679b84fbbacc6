//! [`SecretRef`]: `SCHEME://PATH[?PARAMS][#FIELD]`, the address of a secret.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};
use crate::registry::{is_credential_name, looks_like_credential};
use crate::text;

/// Which part of a structured secret a reference selects.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Field {
    /// `#name`: a top-level key of a JSON object, or a key of a `.env` file.
    Key(String),
    /// `#/a/b`: an RFC 6901 JSON pointer.
    Pointer(String),
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Field::Key(key) => f.write_str(key),
            Field::Pointer(pointer) => f.write_str(pointer),
        }
    }
}

/// A parsed reference to a secret: `SCHEME://PATH[?PARAMS][#FIELD]`.
///
/// The scheme names a backend instance; the path and parameters are the
/// backend's; the field selects part of a structured secret. A reference
/// never contains a secret value, so its [`Display`](fmt::Display) is safe to
/// log. Displaying a parsed reference gives text that parses to the same
/// reference.
///
/// Examples: `vault://secret/app/db#password`,
/// `aws://arn:aws:secretsmanager:eu-west-1:1:secret:db?version_stage=AWSPREVIOUS#password`,
/// `age://prod/db_password`, `file:///run/host/key.pem`, `file://certs/key.pem`
/// (relative to the manifest).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SecretRef {
    scheme: String,
    path: String,
    params: BTreeMap<String, String>,
    field: Option<Field>,
}

impl SecretRef {
    /// Builds a reference from its parts, validating each as [`FromStr`] does.
    pub fn new(scheme: &str, path: &str) -> Result<Self> {
        format!("{scheme}://{path}").parse()
    }

    /// The scheme: the name of the backend instance.
    pub fn scheme(&self) -> &str {
        &self.scheme
    }

    /// The backend-specific path (for `file:///etc/x`, `/etc/x`).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The query parameters, sorted by name.
    pub fn params(&self) -> &BTreeMap<String, String> {
        &self.params
    }

    /// One query parameter.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.get(name).map(String::as_str)
    }

    /// The selected field, if any.
    pub fn field(&self) -> Option<&Field> {
        self.field.as_ref()
    }

    /// The same reference without its field: what a backend fetches. All
    /// references with the same location are served by one fetch.
    pub fn location(&self) -> SecretRef {
        SecretRef {
            field: None,
            ..self.clone()
        }
    }

    /// The same reference with another scheme.
    pub fn with_scheme(&self, scheme: &str) -> SecretRef {
        SecretRef {
            scheme: scheme.to_owned(),
            ..self.clone()
        }
    }

    /// Whether `text` looks like a reference (`scheme://…`) at all, without
    /// validating the rest. Used to decide whether an environment variable
    /// is meant as a reference.
    pub fn looks_like_reference(text: &str) -> bool {
        text.split_once("://")
            .is_some_and(|(scheme, _)| valid_scheme(scheme))
    }
}

fn valid_scheme(scheme: &str) -> bool {
    let mut chars = scheme.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+.-_".contains(c))
}

/// Refuses control characters, and characters a reader cannot see or that
/// turn text around: a reference is shown in `check`, logs and errors, and
/// must read as what it is.
fn check_text(what: &str, text: &str, reference: &str) -> Result<()> {
    if text::has_invisible(text) {
        return Err(Error::config(format!(
            "the {what} contains an invisible, bidi or control character"
        ))
        .with_subject(text::shown(reference)));
    }
    Ok(())
}

/// Refuses a query parameter that carries a credential: a reference is
/// shown by `check`, in logs and in errors, so one in it would be printed.
/// The error quotes neither the value nor a name shaped like a credential,
/// and its subject is the reference without its query (its path has passed
/// `check_text`).
fn check_not_credential(name: &str, value: &str, scheme: &str, path: &str) -> Result<()> {
    const WHERE: &str = "credentials never go in a reference, which `check`, logs and errors \
         show: give the backend its credential through its `*_file` or `*_env` setting";
    let refuse = |what: String| {
        Err(Error::config(format!("invalid reference: {what}; {WHERE}"))
            .with_subject(format!("{scheme}://{path}")))
    };
    if looks_like_credential(name) || looks_like_credential(value) {
        return refuse("a query parameter looks like a credential".to_owned());
    }
    if is_credential_name(name) {
        // The name matched a credential word, so it is safe to repeat.
        return refuse(format!(
            "the query parameter `{}` is named like a credential",
            name.escape_debug()
        ));
    }
    Ok(())
}

impl FromStr for SecretRef {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self> {
        let invalid = |why: &str| Error::config(format!("invalid reference: {why}"));
        let (scheme, rest) = text
            .split_once("://")
            .ok_or_else(|| invalid("expected SCHEME://PATH"))?;
        if !valid_scheme(scheme) {
            return Err(invalid(
                "the scheme must start with a lower-case letter and hold only a-z, 0-9, +, ., -, _",
            ));
        }
        let (rest, field) = match rest.split_once('#') {
            Some((rest, field)) => (rest, Some(field)),
            None => (rest, None),
        };
        let (path, query) = match rest.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (rest, None),
        };
        check_text("path", path, text)?;
        if path.is_empty() {
            return Err(invalid("the path is empty"));
        }
        let mut params = BTreeMap::new();
        if let Some(query) = query {
            check_text("query", query, text)?;
            for pair in query.split('&').filter(|pair| !pair.is_empty()) {
                let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
                if name.is_empty() {
                    return Err(invalid("a query parameter has no name"));
                }
                check_not_credential(name, value, scheme, path)?;
                if params.insert(name.to_owned(), value.to_owned()).is_some() {
                    return Err(invalid(&format!("the parameter `{name}` is given twice")));
                }
            }
        }
        let field = match field {
            None => None,
            Some("") => return Err(invalid("the field after `#` is empty")),
            Some(field) => {
                check_text("field", field, text)?;
                if field.starts_with('/') {
                    Some(Field::Pointer(field.to_owned()))
                } else {
                    Some(Field::Key(field.to_owned()))
                }
            }
        };
        Ok(SecretRef {
            scheme: scheme.to_owned(),
            path: path.to_owned(),
            params,
            field,
        })
    }
}

impl fmt::Display for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}", self.scheme, self.path)?;
        for (index, (name, value)) in self.params.iter().enumerate() {
            let separator = if index == 0 { '?' } else { '&' };
            write!(f, "{separator}{name}={value}")?;
        }
        if let Some(field) = &self.field {
            write!(f, "#{field}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> SecretRef {
        text.parse().unwrap()
    }

    #[test]
    fn parses_all_parts() {
        let reference = parse("aws://prod/db?version_stage=AWSPREVIOUS#password");
        assert_eq!(reference.scheme(), "aws");
        assert_eq!(reference.path(), "prod/db");
        assert_eq!(reference.param("version_stage"), Some("AWSPREVIOUS"));
        assert_eq!(reference.field(), Some(&Field::Key("password".into())));
    }

    #[test]
    fn json_pointer_field() {
        let reference = parse("vault://secret/app#/db/password");
        assert_eq!(
            reference.field(),
            Some(&Field::Pointer("/db/password".into()))
        );
    }

    #[test]
    fn absolute_file_path_and_arn_with_colons() {
        assert_eq!(
            parse("file:///run/host/key.pem").path(),
            "/run/host/key.pem"
        );
        let arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:db-AbCdEf";
        assert_eq!(parse(&format!("aws://{arn}#user")).path(), arn);
    }

    #[test]
    fn display_round_trips() {
        for text in [
            "age://prod/db_password",
            "vault://pki/issue/web?common_name=app.internal&ttl=1h#certificate",
            "vault://secret/app#/a/b",
            "file:///etc/x",
        ] {
            assert_eq!(parse(text).to_string(), text);
            assert_eq!(parse(&parse(text).to_string()), parse(text));
        }
    }

    #[test]
    fn location_drops_the_field_only() {
        let a = parse("vault://database/creds/app#username");
        let b = parse("vault://database/creds/app#password");
        assert_eq!(a.location(), b.location());
        assert_ne!(
            parse("vault://a?x=1").location(),
            parse("vault://a?x=2").location()
        );
    }

    #[test]
    fn rejects_bad_references() {
        for text in [
            "no-scheme",
            "Vault://x",
            "1x://x",
            "age://",
            "age://x#",
            "age://x?=1",
            "age://x?a=1&a=2",
            "age://x\ny",
            "age://x\0",
        ] {
            let error = text.parse::<SecretRef>().unwrap_err();
            assert_eq!(error.kind(), crate::ErrorKind::Config, "{text}");
        }
    }

    #[test]
    fn looks_like_reference_is_cheap_and_strict_about_the_scheme() {
        assert!(SecretRef::looks_like_reference("age://x"));
        assert!(!SecretRef::looks_like_reference("http is fun"));
        assert!(!SecretRef::looks_like_reference("Hello://x"));
    }

    /// A reference shows in `check`, logs and errors: a bidi override or a
    /// zero-width character could make it read as another.
    #[test]
    fn references_with_bidi_or_invisible_characters_are_refused() {
        for text in [
            "age://prod/\u{202e}bd",
            "age://prod/db\u{200b}",
            "vault://secret/app#pass\u{200d}word",
            "vault://secret/app?version=\u{2066}1",
        ] {
            let error = text.parse::<SecretRef>().unwrap_err();
            assert_eq!(error.kind(), crate::ErrorKind::Config, "{text:?}");
            assert!(error.to_string().contains("invisible"), "{error}");
        }
    }

    /// A reference is shown by `check`, in logs and in errors: a credential
    /// in its query string would be printed. Refused at parse time, by the
    /// parameter's name or by the value's shape, without quoting it.
    #[test]
    fn a_credential_in_the_query_string_is_refused_without_quoting_it() {
        for text in [
            "vault://secret/app?token=CANARY42",
            "vault://secret/app?X-Vault-Token=CANARY42",
            "vault://secret/app?password=CANARY42#user",
            "vault://secret/app?secret_id=CANARY42",
            "vault://secret/app?key=CANARY42",
            "vault://secret/app?api_key=CANARY42",
            "vault://secret/app?client_secret=CANARY42",
            "vault://secret/app?access_token=CANARY42",
            "vault://pki/issue/web?common_name=x&db_password=CANARY42",
            "vault://secret/app?version=hvs.CANARY42aaaaaaaaaaaaaaaa",
            "aws://prod/db?version_id=AKIACANARY42AAAAAAAA",
            "vault://secret/app?x=-----BEGIN%20PRIVATE%20KEY-----CANARY42",
            "vault://secret/app?hvs.CANARY42aaaaaaaaaaaaaaaa",
            "vault://secret/app?AGE-SECRET-KEY-1CANARY42",
        ] {
            let error = text.parse::<SecretRef>().unwrap_err();
            assert_eq!(error.kind(), crate::ErrorKind::Config, "{text}");
            let shown = error.to_string();
            assert!(!shown.contains("CANARY42"), "{text}: {shown}");
            assert!(shown.contains("credential"), "{text}: {shown}");
        }
        // Ordinary parameters, including ones with `key` inside a word.
        for text in [
            "vault://pki/issue/web?common_name=app.internal&ttl=1h#certificate",
            "vault://ssh/sign/role?public_key=ssh-ed25519",
            "vault://transit/keys/app?key_version=2",
            "aws://prod/db?version_stage=AWSPREVIOUS",
            "vault://secret/app?version=3",
        ] {
            text.parse::<SecretRef>()
                .unwrap_or_else(|error| panic!("{text}: {error}"));
        }
    }
}
