//! The assertions the suite is written with. Each failure names the test
//! and the backend, and describes bytes by length and offset only: printing
//! fixture bytes would make a failing canary test print the canary.

use std::fmt;

use hushbox_core::{Backend, Document, Error, ErrorKind, Result, SecretRef, SecretValue};

use crate::seed::Seeder;

/// One conformance test's view of the backend under test.
pub(crate) struct Check<'a> {
    pub(crate) test: &'static str,
    pub(crate) backend: &'a dyn Backend,
    pub(crate) seeder: &'a dyn Seeder,
    pub(crate) prefix: &'a str,
}

impl<'a> Check<'a> {
    pub(crate) fn new(
        test: &'static str,
        backend: &'a dyn Backend,
        seeder: &'a dyn Seeder,
        prefix: &'a str,
    ) -> Self {
        Self {
            test,
            backend,
            seeder,
            prefix,
        }
    }

    /// Panics naming the behaviour that failed.
    pub(crate) fn fail(&self, message: impl fmt::Display) -> ! {
        panic!(
            "hushbox-testkit: `{}` failed for backend `{}`: {message}",
            self.test,
            self.backend.name()
        )
    }

    /// `<prefix>/<test>/<name>`: every fixture lives under the run's prefix.
    pub(crate) fn path(&self, name: &str) -> String {
        format!("{}/{}/{name}", self.prefix, self.test)
    }

    /// A reference to `path` in the backend under test, with an optional
    /// `#field`.
    pub(crate) fn reference(&self, path: &str, field: Option<&str>) -> SecretRef {
        let text = match field {
            Some(field) => format!("{}://{path}#{field}", self.backend.name()),
            None => format!("{}://{path}", self.backend.name()),
        };
        text.parse().unwrap_or_else(|error: Error| {
            self.fail(format_args!("cannot build `{text}`: {error}"))
        })
    }

    pub(crate) async fn seed(&self, path: &str, bytes: &[u8]) {
        if let Err(error) = self.seeder.seed(path, bytes).await {
            self.fail(format_args!(
                "the seeder could not store `{path}` ({}): {error}",
                error.kind().label()
            ));
        }
    }

    pub(crate) async fn fetch_ok(&self, location: &SecretRef) -> Document {
        self.backend.fetch(location).await.unwrap_or_else(|error| {
            self.unexpected_error(&format!("fetch of `{location}`"), &error)
        })
    }

    pub(crate) fn select_ok(&self, document: &Document, reference: &SecretRef) -> SecretValue {
        document
            .select(reference)
            .unwrap_or_else(|error| self.unexpected_error(&format!("`{reference}`"), &error))
    }

    pub(crate) fn unexpected_error(&self, what: &str, error: &Error) -> ! {
        self.fail(format_args!(
            "{what} failed ({}): {error}",
            error.kind().label()
        ))
    }

    /// Asserts that `result` is an error of `kind` and returns it.
    pub(crate) fn expect_error<T>(&self, what: &str, result: Result<T>, kind: ErrorKind) -> Error {
        match result {
            Ok(_) => self.fail(format_args!(
                "{what} succeeded; expected an error of kind {kind:?}"
            )),
            Err(error) if error.kind() == kind => error,
            Err(error) => self.fail(format_args!(
                "{what} failed with kind {:?}; expected {kind:?} (error: {error})",
                error.kind()
            )),
        }
    }

    /// Asserts that an error names `path`, as the trait's contract says.
    pub(crate) fn expect_names(&self, what: &str, error: &Error, path: &str) {
        if !error.to_string().contains(path) {
            self.fail(format_args!(
                "the error from {what} does not name the path `{path}`: {error}"
            ));
        }
    }

    /// Asserts byte-for-byte equality without printing either side.
    pub(crate) fn expect_bytes(&self, what: &str, got: &[u8], expected: &[u8]) {
        if got == expected {
            return;
        }
        let first_difference = got
            .iter()
            .zip(expected)
            .position(|(a, b)| a != b)
            .unwrap_or(got.len().min(expected.len()));
        self.fail(format_args!(
            "{what} came back different: {} bytes, expected {}; first difference at byte {first_difference}",
            got.len(),
            expected.len()
        ));
    }
}
