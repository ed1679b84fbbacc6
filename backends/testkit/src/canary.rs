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
/// backend can write. The canary is searched for as text, as a Rust `Debug`
/// byte list and as hex.
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

    let token = format!("{:032x}", rand::random::<u128>());
    let canary = format!("hushbox-canary-{token}");
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

    let leaks = seen.leaks(&token);
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

    /// The places where the canary's random part shows, in any of the forms
    /// a leak takes: text, a `Debug` byte list (`[104, 117, …]`) or hex. A
    /// 16-character stretch is enough to identify it and still catches a
    /// value cut short by a "preview" of a payload.
    fn leaks(&self, token: &str) -> Vec<String> {
        let needle = &token.as_bytes()[..16];
        let forms = [
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
        let mut leaks = Vec::new();
        for (place, text) in &self.texts {
            for (form, needle) in &forms {
                if text.contains(needle.as_str()) {
                    leaks.push(format!("{place} ({form})"));
                }
            }
        }
        leaks
    }
}
