//! Templates: files rendered from declared secrets (`[templates.NAME]`).
//!
//! The engine is minijinja in a bare environment: no loader (no
//! `include`/`import` can reach a file), no built-in filters, tests or
//! globals, strict undefined. A template sees one function, `secret('name')`
//! (`secret('name#field')`, `secret('name#/json/pointer')`), which reads only
//! the secrets `[secrets]` declares, and five filters: `urlencode`, `json`,
//! `base64`, `trim`, `indent`.
//!
//! Secret text never becomes an engine `String`: `secret()` returns an
//! object that holds a [`SecretValue`] and writes its bytes straight into
//! the output, filters read and return such objects, and the output itself
//! is written into a [`SecretValue`]. What the engine still copies into its
//! own strings (text built with `~`, comparisons) is listed in SECURITY.md.
//!
//! Errors name the template and the line, and quote the line from the
//! template's source, never from the output; the engine's own message is
//! kept only for the kinds whose text cannot hold a value.

use std::collections::BTreeMap;
use std::fmt;
use std::io::{self, Read};
use std::path::Path;
use std::sync::Arc;

use base64::Engine as _;
use hushbox_core::{Error, Field, Format, SecretValue, Trust, extract_field};
use minijinja::value::{Kwargs, Object, ObjectRepr, Value};
use minijinja::{Environment, ErrorKind as EngineErrorKind, UndefinedBehavior};

use crate::plan::{Origin, Plan, TemplatePlan, TemplateSource};
use crate::resolve::Resolution;

/// The largest template file hushbox reads: 1 MiB.
const SOURCE_LIMIT: u64 = 1024 * 1024;
/// The engine's steps (and, at about 64 bytes each, memory) one rendering
/// may use: a config file of thousands of lines takes a few hundred
/// thousand; nested loops that would keep `exec` from ever starting its
/// program stop here with an error.
const FUEL: u64 = 2_000_000;

/// The text of every template of a plan, read once (a `source` file through
/// the same ownership checks as the manifest: a template decides what a
/// secret file holds).
#[derive(Clone, Debug, Default)]
pub struct Templates {
    sources: Vec<LoadedTemplate>,
}

#[derive(Clone, Debug)]
struct LoadedTemplate {
    name: String,
    text: String,
    /// The file, or `inline`, for messages.
    origin: String,
}

impl Templates {
    /// Reads the text of every template of `plan`. No secret is involved:
    /// template sources are configuration, like the manifest.
    pub fn load(plan: &Plan, trust: &Trust) -> Result<Self, Error> {
        let mut sources = Vec::with_capacity(plan.templates.len());
        for template in &plan.templates {
            let (text, origin) = match &template.source {
                TemplateSource::Inline(text) => (text.clone(), "inline".to_owned()),
                TemplateSource::File(path) => {
                    (read_source(path, trust)?, path.display().to_string())
                }
            };
            sources.push(LoadedTemplate {
                name: template.name.clone(),
                text,
                origin,
            });
        }
        Ok(Self { sources })
    }

    /// Renders every template of `plan` from `resolution`, in the plan's
    /// order. Every failing template is reported.
    pub fn render_all(
        &self,
        plan: &Plan,
        resolution: &Resolution,
    ) -> Result<Vec<SecretValue>, Vec<Error>> {
        if self.sources.is_empty() {
            return Ok(Vec::new());
        }
        self.render_with(plan, SecretTable::from_resolution(plan, resolution))
    }

    /// The template named `name`, or an error listing the known ones.
    pub fn index_of(&self, plan: &Plan, name: &str) -> Result<usize, Error> {
        self.sources
            .iter()
            .position(|source| source.name == name)
            .ok_or_else(|| unknown_template(plan, name))
    }

    /// Renders one template, by name.
    pub fn render_one(
        &self,
        plan: &Plan,
        resolution: &Resolution,
        name: &str,
    ) -> Result<SecretValue, Error> {
        let index = self.index_of(plan, name)?;
        let environment = environment(
            SecretTable::from_resolution(plan, resolution),
            &self.sources,
        );
        render(&environment, &self.sources[index], &plan.templates[index])
    }

    /// Checks every template without any secret: its syntax, and, rendering
    /// it with placeholders, that each secret it names is declared, each
    /// filter exists and no variable is undefined. A secret named only in
    /// a branch the placeholders do not take is checked when it renders.
    pub fn check(&self, plan: &Plan) -> Result<(), Vec<Error>> {
        self.render_with(plan, SecretTable::placeholders(plan))
            .map(drop)
    }

    fn render_with(&self, plan: &Plan, table: SecretTable) -> Result<Vec<SecretValue>, Vec<Error>> {
        // The sources were loaded from this plan: they pair by position.
        debug_assert_eq!(self.sources.len(), plan.templates.len());
        let environment = environment(table, &self.sources);
        let mut rendered = Vec::with_capacity(self.sources.len());
        let mut errors = Vec::new();
        for (source, template) in self.sources.iter().zip(&plan.templates) {
            match render(&environment, source, template) {
                Ok(value) => rendered.push(value),
                Err(error) => errors.push(error),
            }
        }
        if errors.is_empty() {
            Ok(rendered)
        } else {
            Err(errors)
        }
    }
}

fn unknown_template(plan: &Plan, name: &str) -> Error {
    let known: Vec<&str> = plan.templates.iter().map(|t| t.name.as_str()).collect();
    Error::config(if known.is_empty() {
        "the manifest declares no [templates]".to_owned()
    } else {
        format!(
            "no template is named `{name}` (known: {})",
            known.join(", ")
        )
    })
    .with_subject(format!("[templates.{name}]"))
}

fn read_source(path: &Path, trust: &Trust) -> Result<String, Error> {
    let file = trust.open_file(path, "the template").map_err(|error| {
        // A template named in the manifest but absent is a mistake in the
        // configuration, not a missing secret.
        if error.kind() == hushbox_core::ErrorKind::NotFound || !path.exists() {
            Error::config("the template file does not exist (`source` is relative to the manifest)")
                .with_subject(path.display())
        } else {
            error
        }
    })?;
    let mut text = String::new();
    file.take(SOURCE_LIMIT + 1)
        .read_to_string(&mut text)
        .map_err(|error| {
            Error::io("cannot read the template (it must be UTF-8 text)", error)
                .with_subject(path.display())
        })?;
    if text.len() as u64 > SOURCE_LIMIT {
        return Err(Error::config("the template is larger than 1 MiB").with_subject(path.display()));
    }
    Ok(text)
}

/// The bare environment: one function, five filters, nothing else.
/// `sources` lets `secret()` tell a name written in the template from one
/// computed from values (see [`SecretTable::get`]).
fn environment(table: SecretTable, sources: &[LoadedTemplate]) -> Environment<'static> {
    let mut environment = Environment::empty();
    environment.set_undefined_behavior(UndefinedBehavior::Strict);
    // Output is a configuration file, not HTML: nothing is escaped behind
    // the author's back.
    environment.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
    // A configuration file keeps its final newline, and a line holding only
    // a `{% … %}` tag leaves no blank line behind (Ansible's settings).
    let syntax = minijinja::syntax::SyntaxConfig::builder()
        .keep_trailing_newline(true)
        .trim_blocks(true)
        .build()
        .expect("the default delimiters are valid");
    environment.set_syntax(syntax);
    environment.set_fuel(Some(FUEL));
    let texts: BTreeMap<String, String> = sources
        .iter()
        .map(|source| (source.name.clone(), source.text.clone()))
        .collect();
    environment.add_function("secret", move |state: &minijinja::State, argument: &str| {
        // Written as a string literal of the template itself.
        let written = texts.get(state.name()).is_some_and(|text| {
            text.contains(&format!("'{argument}'")) || text.contains(&format!("\"{argument}\""))
        });
        table.get(argument, written)
    });
    environment.add_filter("urlencode", urlencode);
    environment.add_filter("json", json);
    environment.add_filter("base64", base64_filter);
    environment.add_filter("trim", trim);
    environment.add_filter("indent", indent);
    environment
}

fn render(
    environment: &Environment<'static>,
    source: &LoadedTemplate,
    template: &TemplatePlan,
) -> Result<SecretValue, Error> {
    let compiled = environment
        .template_from_named_str(&source.name, &source.text)
        .map_err(|error| describe(&error, source, template))?;
    let mut output = SecretWriter(SecretValue::with_capacity(source.text.len() + 64));
    compiled
        .render_captured_to(Value::UNDEFINED, &mut output)
        .map_err(|error| describe(&error, source, template))?;
    Ok(output.0)
}

/// The error of a failed render: the template, its origin and line, the
/// line's text from the source, and what went wrong. The engine's detail
/// is kept only where it cannot quote a value (syntax, undefined names,
/// unknown filters, hushbox's own messages); for other kinds (an operation
/// on a secret, say) the engine may print the operand, so only the kind is
/// given.
fn describe(error: &minijinja::Error, source: &LoadedTemplate, template: &TemplatePlan) -> Error {
    let ours = std::error::Error::source(error)
        .is_some_and(|cause| cause.downcast_ref::<OwnMessage>().is_some());
    let detail_is_safe = ours
        || matches!(
            error.kind(),
            EngineErrorKind::SyntaxError
                | EngineErrorKind::UndefinedError
                | EngineErrorKind::UnknownFilter
                | EngineErrorKind::UnknownFunction
                | EngineErrorKind::UnknownTest
                | EngineErrorKind::UnknownMethod
                | EngineErrorKind::MissingArgument
                | EngineErrorKind::TooManyArguments
                | EngineErrorKind::TemplateNotFound
                | EngineErrorKind::BadInclude
        );
    let what = match (error.kind(), error.detail()) {
        (EngineErrorKind::SyntaxError, Some(detail)) => format!("syntax error: {detail}"),
        (EngineErrorKind::UndefinedError, Some(detail)) => format!("undefined value: {detail}"),
        (EngineErrorKind::UndefinedError, None) => "undefined value (a variable or attribute that does not exist; templates read secrets with secret('name'))".to_owned(),
        (EngineErrorKind::TemplateNotFound | EngineErrorKind::BadInclude, _) => {
            "templates cannot include, import or extend other templates".to_owned()
        }
        (EngineErrorKind::OutOfFuel, _) => format!(
            "the template took more than {FUEL} steps to render (nested loops?); a template renders a file, it does not compute"
        ),
        (EngineErrorKind::WriteFailure, _) => {
            "a value is not UTF-8 text and cannot be written as it is; encode it with `| base64`".to_owned()
        }
        (_, Some(detail)) if detail_is_safe => detail.to_owned(),
        (kind, _) => kind.to_string(),
    };
    let mut message = what;
    let mut place = format!("{} ({}", template.label(), source.origin);
    if let Some(line) = error.line() {
        place.push_str(&format!(", line {line}"));
        if let Some(text) = source.text.lines().nth(line - 1) {
            // The template's own text: configuration, never output.
            message.push_str(&format!("\n    {line} | {}", text.trim_end()));
        }
    }
    place.push(')');
    Error::config(message).with_subject(place)
}

/// Marks the errors whose text hushbox wrote (and knows to hold no value).
#[derive(Debug)]
struct OwnMessage;

impl fmt::Display for OwnMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("hushbox")
    }
}

impl std::error::Error for OwnMessage {}

fn own_error(message: impl Into<String>) -> minijinja::Error {
    minijinja::Error::new(EngineErrorKind::InvalidOperation, message.into()).with_source(OwnMessage)
}

/// Collects rendered output in protected memory; growth wipes the old
/// buffer ([`SecretValue::push_slice`]).
struct SecretWriter(SecretValue);

impl io::Write for SecretWriter {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.0.push_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// What `secret()` may read: the manifest's secrets, by name.
struct SecretTable {
    entries: BTreeMap<String, Entry>,
}

enum Entry {
    Value(Arc<SecretText>),
    /// An optional secret that was not found.
    Missing,
    /// `check`: no value was fetched; any field is accepted.
    Placeholder,
}

impl SecretTable {
    fn from_resolution(plan: &Plan, resolution: &Resolution) -> Self {
        let entries = plan
            .secrets
            .iter()
            .zip(&resolution.values)
            .filter(|(secret, _)| secret.origin == Origin::Manifest)
            .map(|(secret, value)| {
                let entry = match value {
                    // A copy into protected memory, wiped with the table.
                    Some(value) => Entry::Value(Arc::new(SecretText(
                        SecretValue::copy_from_slice(value.expose()),
                    ))),
                    None => Entry::Missing,
                };
                (secret.name.clone(), entry)
            })
            .collect();
        Self { entries }
    }

    fn placeholders(plan: &Plan) -> Self {
        let entries = plan
            .secrets
            .iter()
            .filter(|secret| secret.origin == Origin::Manifest)
            .map(|secret| (secret.name.clone(), Entry::Placeholder))
            .collect();
        Self { entries }
    }

    /// `secret('name')`, `secret('name#field')`, `secret('name#/pointer')`.
    ///
    /// `written` says whether `argument` appears in the template's text. A
    /// template can build the argument from values (`secret('db#' ~
    /// secret('key'))`), and then an error quoting it would quote a value:
    /// such an argument is never shown, only the declared name it reached.
    fn get(&self, argument: &str, written: bool) -> Result<Value, minijinja::Error> {
        let shown = |text: String, hidden: &str| {
            if written {
                text
            } else {
                format!("{hidden} (the argument was built from other values, so it is not shown)")
            }
        };
        let (name, field) = match argument.split_once('#') {
            None => (argument, None),
            Some((_, "")) => {
                return Err(own_error(shown(
                    format!("secret('{argument}'): the field after `#` is empty"),
                    "secret(): the field after `#` is empty",
                )));
            }
            Some((name, field)) if field.starts_with('/') => {
                (name, Some(Field::Pointer(field.to_owned())))
            }
            Some((name, field)) => (name, Some(Field::Key(field.to_owned()))),
        };
        let entry = self.entries.get(name).ok_or_else(|| {
            own_error(shown(
                format!(
                    "secret `{name}` is not declared: a template reads only the secrets of [secrets] in the manifest"
                ),
                "secret(): the name is not a declared secret",
            ))
        })?;
        // From here on `name` is a declared secret's: configuration.
        let text = match entry {
            Entry::Missing => {
                return Err(own_error(format!(
                    "secret `{name}` is optional and was not found; a template cannot render without it"
                )));
            }
            Entry::Placeholder => {
                return Ok(Value::from_object(SecretText(
                    SecretValue::copy_from_slice(b"placeholder"),
                )));
            }
            Entry::Value(text) => text,
        };
        match field {
            None => Ok(Value::from_dyn_object(Arc::clone(text))),
            Some(field) => match extract_field(&text.0, Format::Json, &field) {
                Ok(value) => Ok(Value::from_object(SecretText(value))),
                // The core's messages name fields and kinds, never values.
                Err(error) => Err(own_error(shown(
                    format!("secret('{argument}'): {}", error.message()),
                    &format!("secret(): the secret `{name}` has no such field, or no fields"),
                ))),
            },
        }
    }
}

/// A secret's bytes (or bytes derived from it) as an engine value. Written
/// into the output straight from its buffer; its `Debug` is a redaction.
struct SecretText(SecretValue);

impl fmt::Debug for SecretText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<secret>")
    }
}

impl Object for SecretText {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Plain
    }

    fn render(self: &Arc<Self>, f: &mut fmt::Formatter<'_>) -> fmt::Result
    where
        Self: Sized + 'static,
    {
        // Bytes that are not UTF-8 cannot go through the engine's text
        // output; the error says to use `| base64`.
        let text = std::str::from_utf8(self.0.expose()).map_err(|_| fmt::Error)?;
        f.write_str(text)
    }
}

/// The bytes a filter works on: a secret's, or a literal's.
fn with_bytes<T>(
    value: &Value,
    filter: &str,
    f: impl FnOnce(&[u8]) -> T,
) -> Result<T, minijinja::Error> {
    if let Some(text) = value.downcast_object_ref::<SecretText>() {
        return Ok(f(text.0.expose()));
    }
    if let Some(text) = value.as_str() {
        return Ok(f(text.as_bytes()));
    }
    Err(own_error(format!(
        "`{filter}` takes text (a secret or a string)"
    )))
}

fn secret_value(value: SecretValue) -> Value {
    Value::from_object(SecretText(value))
}

/// Percent-encodes every byte outside RFC 3986's unreserved set (letters,
/// digits, `-._~`): `/`, `@`, `:` included, so a password is safe in a URL's
/// userinfo or path.
fn urlencode(value: Value) -> Result<Value, minijinja::Error> {
    const UNRESERVED: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~');
    with_bytes(&value, "urlencode", |bytes| {
        let mut out = SecretValue::with_capacity(bytes.len() * 3);
        for chunk in percent_encoding::percent_encode(bytes, UNRESERVED) {
            out.push_slice(chunk.as_bytes());
        }
        secret_value(out)
    })
}

/// A JSON string literal, quotes included: safe inside JSON and YAML.
fn json(value: Value) -> Result<Value, minijinja::Error> {
    let encoded = with_bytes(&value, "json", |bytes| {
        let text = std::str::from_utf8(bytes).ok()?;
        let mut out = SecretWriter(SecretValue::with_capacity(
            bytes.len() + bytes.len() / 4 + 2,
        ));
        serde_json::to_writer(&mut out, text).ok()?;
        Some(out.0)
    })?;
    encoded
        .map(secret_value)
        .ok_or_else(|| own_error("`json` takes UTF-8 text; encode binary values with `| base64`"))
}

/// Standard base64 with padding.
fn base64_filter(value: Value) -> Result<Value, minijinja::Error> {
    with_bytes(&value, "base64", |bytes| {
        let engine = base64::engine::general_purpose::STANDARD;
        let mut out = SecretValue::with_capacity(bytes.len().div_ceil(3) * 4);
        // Encoded in chunks of 3 input bytes through a small stack buffer
        // that is wiped, so no heap string holds the encoding.
        let mut buffer = zeroize::Zeroizing::new([0u8; 1024]);
        for chunk in bytes.chunks(768) {
            let written = engine
                .encode_slice(chunk, &mut buffer[..])
                .expect("768 bytes encode into 1024");
            out.push_slice(&buffer[..written]);
        }
        secret_value(out)
    })
}

/// Strips leading and trailing whitespace (a secret saved with a newline).
fn trim(value: Value) -> Result<Value, minijinja::Error> {
    with_bytes(&value, "trim", |bytes| {
        secret_value(SecretValue::copy_from_slice(bytes.trim_ascii()))
    })
}

/// Indents every line but the first by `width` spaces (and the first too
/// with `first=true`); blank lines stay empty. For multi-line values in
/// YAML block scalars: `key: |\n  {{ secret('cert') | indent(2) }}`.
fn indent(value: Value, width: usize, kwargs: Kwargs) -> Result<Value, minijinja::Error> {
    let first: Option<bool> = kwargs.get("first")?;
    kwargs.assert_all_used()?;
    if width > 256 {
        return Err(own_error("`indent` takes a width of at most 256"));
    }
    with_bytes(&value, "indent", |bytes| {
        let lines = bytes.split(|byte| *byte == b'\n');
        let mut out = SecretValue::with_capacity(bytes.len() + width * (bytes.len() / 8 + 2));
        for (index, line) in lines.enumerate() {
            if index > 0 {
                out.push_slice(b"\n");
            }
            if (index > 0 || first.unwrap_or(false)) && !line.is_empty() {
                out.push_slice(&b" ".repeat(width));
            }
            out.push_slice(line);
        }
        secret_value(out)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::Manifest;
    use crate::plan::PlanInputs;
    use hushbox_core::Environment;

    fn plan(manifest: &str) -> Plan {
        let manifest = Manifest::parse(manifest, Path::new("/p/hushbox.toml")).unwrap();
        let inputs = PlanInputs {
            manifest: Some((&manifest, Path::new("/p/hushbox.toml"))),
            kinds: vec!["age"],
            ..Default::default()
        };
        Plan::build(&inputs, &Environment::default()).unwrap()
    }

    /// A plan with secrets `user`, `password`, `doc` (JSON) and `cert`, and
    /// one inline template `out`.
    fn render_inline(template: &str) -> Result<String, Error> {
        let manifest = format!(
            "version = 1\n[secrets.user]\nref = \"age://u\"\n[secrets.password]\nref = \"age://p\"\n\
             [secrets.doc]\nref = \"age://d\"\n[secrets.cert]\nref = \"age://c\"\n\
             [templates.out]\ninline = '''{template}'''\n"
        );
        let plan = plan(&manifest);
        let values = [
            b"app".as_slice(),
            b"p@ss:w/rd %&?#CANARY".as_slice(),
            br#"{"host": "db.internal", "port": 5432, "nested": {"key": "v\"q"}}"#.as_slice(),
            b"-----BEGIN-----\nAAAA\n\n-----END-----\n".as_slice(),
        ];
        let resolution = Resolution {
            values: plan
                .secrets
                .iter()
                .map(|secret| {
                    let index = ["user", "password", "doc", "cert"]
                        .iter()
                        .position(|name| *name == secret.name)
                        .unwrap();
                    Some(SecretValue::copy_from_slice(values[index]))
                })
                .collect(),
            versions: vec![None; 4],
            leases: vec![None; 4],
        };
        let templates = Templates::load(&plan, &Trust::default()).unwrap();
        let rendered = templates.render_one(&plan, &resolution, "out")?;
        Ok(String::from_utf8(rendered.expose().to_vec()).unwrap())
    }

    #[test]
    fn every_filter_renders() {
        assert_eq!(
            render_inline(
                "postgres://{{ secret('user') }}:{{ secret('password') | urlencode }}@db/app"
            )
            .unwrap(),
            "postgres://app:p%40ss%3Aw%2Frd%20%25%26%3F%23CANARY@db/app"
        );
        assert_eq!(
            render_inline("{{ 'a-b_c.d~e/f' | urlencode }}").unwrap(),
            "a-b_c.d~e%2Ff"
        );
        assert_eq!(
            render_inline("{\"password\": {{ secret('password') | json }}}").unwrap(),
            "{\"password\": \"p@ss:w/rd %&?#CANARY\"}"
        );
        assert_eq!(
            render_inline("{{ secret('user') | base64 }}").unwrap(),
            "YXBw"
        );
        assert_eq!(render_inline("[{{ '  x \n' | trim }}]").unwrap(), "[x]");
        assert_eq!(
            render_inline("cert: |\n  {{ secret('cert') | trim | indent(2) }}").unwrap(),
            "cert: |\n  -----BEGIN-----\n  AAAA\n\n  -----END-----"
        );
        assert_eq!(
            render_inline("{{ 'a\nb' | indent(1, first=true) }}").unwrap(),
            " a\n b"
        );
        assert_eq!(
            render_inline("{{ secret('doc#host') }}:{{ secret('doc#port') }} {{ secret('doc#/nested/key') | json }}").unwrap(),
            "db.internal:5432 \"v\\\"q\""
        );
    }

    fn error_of(template: &str) -> String {
        let error = render_inline(template).unwrap_err();
        assert_eq!(error.kind(), hushbox_core::ErrorKind::Config);
        let text = error.to_string();
        assert!(!text.contains("CANARY"), "{text}");
        assert!(!text.contains("p@ss"), "{text}");
        text
    }

    #[test]
    fn undefined_secret_field_and_variable_name_the_template_and_line() {
        let text = error_of("a\nb {{ secret('nope') }}");
        assert!(text.contains("[templates.out] (inline, line 2)"), "{text}");
        assert!(text.contains("secret `nope` is not declared"), "{text}");
        assert!(text.contains("2 | b {{ secret('nope') }}"), "{text}");
        let text = error_of("x\n\n{{ secret('doc#missing') }}");
        assert!(text.contains("line 3"), "{text}");
        assert!(text.contains("no field `missing`"), "{text}");
        let text = error_of("{{ secret('password#x') }}");
        assert!(text.contains("not a JSON object"), "{text}");
        let text = error_of("x\n{{ database_url }}");
        assert!(
            text.contains("line 2") && text.contains("undefined"),
            "{text}"
        );
        let text = error_of("{{ secret('user').attribute }}");
        assert!(text.contains("undefined"), "{text}");
        let text = error_of("{{ secret('user') | upper }}");
        assert!(text.contains("unknown"), "{text}");
        let text = error_of("{% if %}");
        assert!(text.contains("syntax error"), "{text}");
    }

    #[test]
    fn operations_on_a_secret_never_quote_it() {
        for template in [
            "{{ secret('password') - 1 }}",
            "{{ -secret('password') }}",
            "{{ secret('password')[0] }}",
            "{{ secret('password') * 2 }}",
            "{{ secret('password') | indent('x') }}",
            "{% for c in secret('password') %}{{ c }}{% endfor %}",
            "{{ secret('password')() }}",
            "{{ secret(secret('password') ~ '') }}",
            "{{ secret('doc#' ~ secret('password')) }}",
            "{{ secret('doc#/' ~ secret('password')) }}",
            "{{ secret(secret('password') ~ '#') }}",
        ] {
            error_of(template);
        }
    }

    #[test]
    fn a_template_reaches_no_file_environment_or_undeclared_secret() {
        for template in [
            "{% include '/etc/passwd' %}",
            "{% import '/etc/passwd' as x %}",
            "{% extends '/etc/hostname' %}",
            "{{ env.HOME }}",
            "{{ environ }}",
            "{{ range(3) }}",
            "{{ secret('../etc/passwd') }}",
            "{{ secret('/etc/passwd') }}",
            "{{ secret('age://other') }}",
            "{{ lookup('file', '/etc/passwd') }}",
        ] {
            let text = error_of(template);
            assert!(!text.contains("root:"), "{template}: {text}");
        }
    }

    #[test]
    fn a_runaway_template_stops_with_an_error() {
        let text = error_of(
            "{% set s = 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx' %}\
             {% for a in s %}{% for b in s %}{% for c in s %}{% for d in s %}{{ secret('password') }}{% endfor %}{% endfor %}{% endfor %}{% endfor %}",
        );
        assert!(text.contains("steps to render"), "{text}");
        // A thousand-line configuration file is far from the limit.
        let big = "key: {{ secret('user') }} {{ secret('password') | urlencode }}\n".repeat(5000);
        assert_eq!(render_inline(&big).unwrap().lines().count(), 5000);
    }

    #[test]
    fn binary_secrets_render_through_base64_only() {
        let plan = plan(
            "version = 1\n[secrets.key]\nref = \"age://k\"\n[templates.b64]\ninline = \"{{ secret('key') | base64 }}\"\n\
             [templates.raw]\ninline = \"{{ secret('key') }}\"\n",
        );
        let resolution = Resolution {
            values: vec![Some(SecretValue::copy_from_slice(&[0xff, 0x00, 0xfe]))],
            versions: vec![None],
            leases: vec![None],
        };
        let templates = Templates::load(&plan, &Trust::default()).unwrap();
        let rendered = templates.render_one(&plan, &resolution, "b64").unwrap();
        assert_eq!(rendered.expose(), b"/wD+");
        let error = templates.render_one(&plan, &resolution, "raw").unwrap_err();
        assert!(error.to_string().contains("| base64"), "{error}");
        // Only the failing template is reported, by name.
        let errors = templates.render_all(&plan, &resolution).unwrap_err();
        assert_eq!(errors.len(), 1);
        assert!(errors[0].to_string().contains("[templates.raw]"));
    }

    #[test]
    fn check_uses_placeholders_and_finds_undeclared_names() {
        let plan = plan(
            "version = 1\n[secrets.a]\nref = \"age://a\"\n[templates.good]\ninline = \"{{ secret('a#f') | urlencode }}\"\n\
             [templates.bad]\ninline = \"{{ secret('b') }}\"\n[templates.var]\ninline = \"{{ x }}\"\n",
        );
        let templates = Templates::load(&plan, &Trust::default()).unwrap();
        let errors = templates.check(&plan).unwrap_err();
        assert_eq!(errors.len(), 2);
        assert!(errors[0].to_string().contains("[templates.bad]"));
        assert!(errors[1].to_string().contains("[templates.var]"));
    }
}
