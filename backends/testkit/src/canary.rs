//! The canary test: a unique value goes in, every path it could leak out of
//! is searched for it.

use std::error::Error as _;
use std::fmt::Debug;

use hushbox_core::{Backend, Document, Error, Result, SecretValue};
use tokio::runtime::{Handle, RuntimeFlavor};

use crate::check::Check;
use crate::logs::LogCapture;
use crate::seed::Seeder;

/// Logged once under capture, so that a capture which saw nothing (a static
/// `tracing` max level below TRACE, a subscriber set elsewhere) fails instead
/// of passing without having looked.
const PROBE: &str = "hushbox-testkit-log-probe";

/// A unique value, seeded several ways, never appears in the backend's
/// `Debug`, in an error's `Display`, `Debug` or `source()` chain, in the
/// `Debug` of a [`Document`] or [`SecretValue`], in what
/// [`Backend::credential_sources`] reports, or in anything `tracing`
/// logs at TRACE level (events and span fields); and *does* appear in
/// [`SecretValue::expose`], so the test cannot pass by fetching nothing.
///
/// Exercised: fetch of the canary as a plain value, as a field of a JSON
/// document (by key and by pointer), inside malformed JSON and a malformed
/// `.env` file; a missing field, a field of a non-JSON value, a missing path,
/// `fetch` with a field, `fetch_many` over all of them, and `put` when the
/// backend can write. The canary is searched for in every form
/// [`Canary::forms_in`] knows.
///
/// # Panics
/// On a multi-thread Tokio runtime, where the thread-local log capture would
/// miss other workers' logs; run it on a current-thread runtime.
pub async fn canary_never_leaks(backend: &dyn Backend, seeder: &dyn Seeder, prefix: &str) {
    let check = Check::new("canary_never_leaks", backend, seeder, prefix);
    if let Ok(handle) = Handle::try_current()
        && !matches!(handle.runtime_flavor(), RuntimeFlavor::CurrentThread)
    {
        check.fail(
            "it must run on a current-thread Tokio runtime (`#[tokio::test]` without \
             `flavor = \"multi_thread\"`): its log capture is thread-local and would miss \
             what other worker threads log",
        );
    }

    let marker = Canary::new();
    let canary = marker.value();
    let mut seen = Seen::default();
    seen.text(
        "Debug of the backend before any fetch",
        format!("{backend:?}"),
    );

    let capture = LogCapture::start();
    tracing::trace!(target: "hushbox_testkit", probe = PROBE, "log capture started");

    let plain = check.path("plain");
    let json = check.path("json");
    let broken_json = check.path("broken-json");
    let broken_env = check.path("broken.env");
    let missing = check.path("missing");
    check.seed(&plain, canary.as_bytes()).await;
    let document = format!(r#"{{"token": "{canary}", "nested": {{"token": "{canary}"}}}}"#);
    check.seed(&json, document.as_bytes()).await;
    let document = format!(r#"{{"token": "{canary}", "broken"#);
    check.seed(&broken_json, document.as_bytes()).await;
    let document = format!("TOKEN={canary}\nbroken \"{canary}\n");
    check.seed(&broken_env, document.as_bytes()).await;
    let fields = backend.capabilities().fields;

    // The plain canary: it must come back (so the test looked at a real
    // value), and asking it for a field must fail without quoting it.
    let location = check.reference(&plain, None);
    let document = fetch(
        &mut seen,
        &location.to_string(),
        backend.fetch(&location).await,
    );
    match &document {
        Some(document) if document.value.expose() == canary.as_bytes() => {}
        Some(_) => check.fail("the canary fetched as a plain value came back different"),
        None => check.fail("the canary could not be fetched as a plain value"),
    }
    if let Some(document) = &document {
        select(&check, &mut seen, document, &plain, None);
        if fields {
            select(&check, &mut seen, document, &plain, Some("token"));
        }
    }

    // The canary as a JSON field.
    let location = check.reference(&json, None);
    let document = fetch(
        &mut seen,
        &location.to_string(),
        backend.fetch(&location).await,
    );
    if fields {
        let Some(document) = &document else {
            check.fail("the JSON document holding the canary could not be fetched")
        };
        for field in ["token", "/nested/token"] {
            match select(&check, &mut seen, document, &json, Some(field)) {
                Some(value) if value.expose() == canary.as_bytes() => {}
                _ => check.fail(format_args!(
                    "the canary did not come back as the field `{field}`"
                )),
            }
        }
        for field in ["absent", "/token/deeper", "/nested/absent"] {
            select(&check, &mut seen, document, &json, Some(field));
        }
    }

    // Malformed documents: parsers quote their input in their errors.
    for path in [&broken_json, &broken_env] {
        let location = check.reference(path, None);
        let document = fetch(
            &mut seen,
            &location.to_string(),
            backend.fetch(&location).await,
        );
        if let (Some(document), true) = (&document, fields) {
            for field in ["token", "TOKEN", "/token"] {
                select(&check, &mut seen, document, path, Some(field));
            }
        }
    }

    // A missing path next to the canaries, and fetch with a field.
    let location = check.reference(&missing, None);
    fetch(
        &mut seen,
        "the missing path",
        backend.fetch(&location).await,
    );
    let with_field = check.reference(&json, Some("token"));
    fetch(
        &mut seen,
        "fetch with a field",
        backend.fetch(&with_field).await,
    );

    let locations = [&plain, &json, &broken_json, &broken_env, &missing]
        .map(|path| check.reference(path, None));
    let results = backend.fetch_many(&locations).await;
    seen.debug("Debug of the fetch_many results", &results);
    for (location, result) in locations.iter().zip(&results) {
        if let Err(error) = result {
            seen.error(&format!("fetch_many of `{location}`"), error);
        }
    }
    drop(results);

    if backend.capabilities().write {
        let path = check.path("put");
        let value = SecretValue::copy_from_slice(canary.as_bytes());
        if let Err(error) = backend.put(&path, &value).await {
            seen.error(&format!("put of `{path}`"), &error);
        }
        let location = check.reference(&path, None);
        fetch(
            &mut seen,
            &location.to_string(),
            backend.fetch(&location).await,
        );
    }

    seen.text(
        "Debug of the backend after the fetches",
        format!("{backend:?}"),
    );
    seen.text("alternate Debug of the backend", format!("{backend:#?}"));
    // Names and paths only: hushbox logs them and acts on them.
    seen.text(
        "the credential sources the backend reports",
        format!("{:?}", backend.credential_sources()),
    );
    let logs = capture.finish();
    if !logs.contains(PROBE) {
        check.fail(
            "the log capture saw nothing, not even its own probe event: is `tracing` built \
             with a `max_level_*` feature below TRACE, or is this not the test's thread?",
        );
    }
    seen.text("the logs captured at TRACE level", logs);

    let leaks = seen.leaks(&marker);
    if !leaks.is_empty() {
        check.fail(format_args!(
            "the canary value leaked into:\n  - {}",
            leaks.join("\n  - ")
        ));
    }
}

/// Records a fetch's outcome and returns the document, if any.
fn fetch(seen: &mut Seen, what: &str, result: Result<Document>) -> Option<Document> {
    match result {
        Ok(document) => {
            seen.debug(&format!("Debug of the document from `{what}`"), &document);
            Some(document)
        }
        Err(error) => {
            seen.error(&format!("fetch of `{what}`"), &error);
            None
        }
    }
}

/// Records a select's outcome and returns the value, if any.
fn select(
    check: &Check<'_>,
    seen: &mut Seen,
    document: &Document,
    path: &str,
    field: Option<&str>,
) -> Option<SecretValue> {
    let reference = check.reference(path, field);
    match document.select(&reference) {
        Ok(value) => {
            seen.debug(&format!("Debug of the value of `{reference}`"), &value);
            Some(value)
        }
        Err(error) => {
            seen.error(&format!("`{reference}`"), &error);
            None
        }
    }
}

/// Every piece of text the backend produced, with where it came from.
#[derive(Default)]
struct Seen {
    texts: Vec<(String, String)>,
}

impl Seen {
    fn text(&mut self, place: &str, text: String) {
        self.texts.push((place.to_owned(), text));
    }

    fn debug(&mut self, place: &str, value: &dyn Debug) {
        self.text(place, format!("{value:?}"));
        self.text(&format!("{place} (alternate)"), format!("{value:#?}"));
    }

    /// The error's Display and Debug, and those of every error in its
    /// `source()` chain.
    fn error(&mut self, place: &str, error: &Error) {
        self.text(
            &format!("Display of the error from {place}"),
            error.to_string(),
        );
        self.debug(&format!("Debug of the error from {place}"), error);
        let mut depth = 0;
        let mut source = error.source();
        while let Some(cause) = source {
            depth += 1;
            self.text(
                &format!("Display of source #{depth} of the error from {place}"),
                cause.to_string(),
            );
            self.debug(
                &format!("Debug of source #{depth} of the error from {place}"),
                &cause,
            );
            source = cause.source();
        }
    }

    /// The places where the canary shows, in any form [`Canary::forms_in`]
    /// knows.
    fn leaks(&self, canary: &Canary) -> Vec<String> {
        let mut leaks = Vec::new();
        for (place, text) in &self.texts {
            for form in canary.forms_in(text.as_bytes()) {
                leaks.push(format!("{place} ({form})"));
            }
        }
        leaks
    }
}

/// A unique secret value, `hushbox-canary-<32 hex digits>`, and the forms a
/// leak of it takes. Used by [`canary_never_leaks`] for one backend and by
/// the binary's leak tests for every command.
pub struct Canary {
    value: String,
}

impl Default for Canary {
    fn default() -> Self {
        Self::new()
    }
}

impl Canary {
    /// A fresh canary, random for each call.
    pub fn new() -> Self {
        Self {
            value: format!("hushbox-canary-{:032x}", rand::random::<u128>()),
        }
    }

    /// The canary value itself.
    pub fn value(&self) -> &str {
        &self.value
    }

    /// The forms of the canary found in `haystack` (empty: no leak). Searched
    /// for is a 16-character stretch of its random part, enough to identify
    /// it and still catch a value cut short by a "preview" of a payload: as
    /// text, as a Rust `Debug` byte list (`[104, 117, …]`), as hex, and as
    /// standard and URL-safe base64 at each of the three alignments it can
    /// have inside a longer encoded blob.
    pub fn forms_in(&self, haystack: &[u8]) -> Vec<&'static str> {
        let token = &self.value["hushbox-canary-".len()..];
        let needle = &token.as_bytes()[..16];
        let mut forms: Vec<(&'static str, String)> = vec![
            ("as text", String::from_utf8_lossy(needle).into_owned()),
            (
                "as a Debug byte list",
                needle
                    .iter()
                    .map(u8::to_string)
                    .collect::<Vec<_>>()
                    .join(", "),
            ),
            // The needle is ASCII hex digits, whose own hex has no letters,
            // so one case covers both.
            (
                "as hex",
                needle.iter().map(|b| format!("{b:02x}")).collect(),
            ),
        ];
        for (name, alphabet) in [("as base64", STANDARD), ("as URL-safe base64", URL_SAFE)] {
            for offset in 0..3 {
                forms.push((name, base64_core(needle, offset, alphabet)));
            }
        }
        let mut found: Vec<&'static str> = Vec::new();
        for (name, form) in forms {
            if contains(haystack, form.as_bytes()) && !found.contains(&name) {
                found.push(name);
            }
        }
        found
    }
}

const STANDARD: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const URL_SAFE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// The base64 characters that depend only on `bytes` when they sit
/// `offset` bytes into a 3-byte group of a longer input: the groups that
/// share bytes with what comes before or after are dropped.
fn base64_core(bytes: &[u8], offset: usize, alphabet: &[u8; 64]) -> String {
    let skip = (3 - offset) % 3;
    let whole = (bytes.len() - skip) / 3 * 3;
    bytes[skip..skip + whole]
        .chunks(3)
        .flat_map(|group| {
            let n = u32::from(group[0]) << 16 | u32::from(group[1]) << 8 | u32::from(group[2]);
            [18, 12, 6, 0].map(|shift| char::from(alphabet[(n >> shift & 63) as usize]))
        })
        .collect()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_canary_is_found_in_each_form_and_not_elsewhere() {
        let canary = Canary::new();
        let value = canary.value().as_bytes();
        assert_eq!(canary.forms_in(value), ["as text"]);
        assert_eq!(
            canary.forms_in(format!("{value:?}").as_bytes()),
            ["as a Debug byte list"]
        );
        let hex: String = value.iter().map(|b| format!("{b:02X}")).collect();
        assert_eq!(canary.forms_in(hex.to_lowercase().as_bytes()), ["as hex"]);
        // Inside longer blobs, at every alignment, in both alphabets.
        for prefix in 0..3 {
            let mut blob = vec![b'x'; prefix];
            blob.extend_from_slice(value);
            blob.extend_from_slice(b"yz");
            let standard = encode(&blob, STANDARD);
            // Without `+` or `/` in it, the text is URL-safe base64 too.
            let found = canary.forms_in(standard.as_bytes());
            assert!(found.contains(&"as base64"), "{prefix}: {found:?}");
            let url = encode(&blob, URL_SAFE);
            assert!(
                canary
                    .forms_in(url.as_bytes())
                    .contains(&"as URL-safe base64")
            );
        }
        assert!(canary.forms_in(b"hushbox-canary-").is_empty());
        assert!(
            Canary::new().forms_in(value).is_empty(),
            "each canary is unique"
        );
    }

    /// Plain base64 with padding, to check `forms_in` against.
    fn encode(bytes: &[u8], alphabet: &[u8; 64]) -> String {
        let mut out = String::new();
        for group in bytes.chunks(3) {
            let mut padded = [0u8; 3];
            padded[..group.len()].copy_from_slice(group);
            let n = u32::from(padded[0]) << 16 | u32::from(padded[1]) << 8 | u32::from(padded[2]);
            for (i, shift) in [18, 12, 6, 0].into_iter().enumerate() {
                out.push(if i <= group.len() {
                    char::from(alphabet[(n >> shift & 63) as usize])
                } else {
                    '='
                });
            }
        }
        out
    }
}
