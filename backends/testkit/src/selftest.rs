//! The suite tested on itself: it passes for a correct in-memory backend and
//! fails, naming the leak, for backends that leak a value each way a real
//! one could.

use std::collections::BTreeMap;
use std::fmt;
use std::panic::AssertUnwindSafe;
use std::sync::Mutex;

use async_trait::async_trait;
use futures::FutureExt;
use hushbox_core::{Backend, Capabilities, Document, Error, Result, SecretRef, SecretValue};

use crate::{PutSeeder, capture_logs, run_all};

#[derive(Clone, Copy, Debug, PartialEq)]
enum Leak {
    /// `Debug` of the backend prints its entries, as a derived `Debug` would.
    Debug,
    /// A "malformed" error quotes the payload, as serde's messages do.
    ErrorMessage,
    /// The error is clean but its `source()` quotes the payload.
    ErrorSource,
    /// The value is logged at TRACE.
    Logs,
    /// The value is recorded as a field of a span with no event in it.
    SpanField,
}

struct Memory {
    entries: Mutex<BTreeMap<String, Vec<u8>>>,
    leak: Option<Leak>,
    read_only: bool,
}

impl Memory {
    fn new(leak: Option<Leak>) -> Self {
        Self {
            entries: Mutex::default(),
            leak,
            read_only: false,
        }
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Vec<u8>>> {
        self.entries.lock().unwrap()
    }
}

impl fmt::Debug for Memory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.leak == Some(Leak::Debug) {
            let texts: Vec<_> = self
                .entries()
                .values()
                .map(|bytes| String::from_utf8_lossy(bytes).into_owned())
                .collect();
            return f.debug_struct("Memory").field("entries", &texts).finish();
        }
        f.debug_struct("Memory")
            .field("entries", &self.entries().len())
            .finish_non_exhaustive()
    }
}

#[derive(Debug)]
struct QuotingError(String);

impl fmt::Display for QuotingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "expected `}}` in {:?}", self.0)
    }
}

impl std::error::Error for QuotingError {}

#[async_trait]
impl Backend for Memory {
    fn name(&self) -> &str {
        "memory"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            write: !self.read_only,
            list: !self.read_only,
            delete: !self.read_only,
            fields: true,
            leases: false,
        }
    }

    async fn fetch(&self, location: &SecretRef) -> Result<Document> {
        let bytes = self
            .entries()
            .get(location.path())
            .cloned()
            .ok_or_else(|| Error::not_found("no such secret").with_subject(location))?;
        let text = String::from_utf8_lossy(&bytes).into_owned();
        // What a backend that validates JSON itself, badly, would do; only
        // for the canary test's broken document, so that the other tests
        // pass and the leak is what the suite has to catch.
        let unterminated = text.starts_with('{') && text.contains("\"broken");
        match self.leak {
            Some(Leak::ErrorMessage) if unterminated => {
                return Err(
                    Error::malformed(format!("invalid JSON: {text}")).with_subject(location)
                );
            }
            Some(Leak::ErrorSource) if unterminated => {
                return Err(Error::malformed("invalid JSON")
                    .with_subject(location)
                    .with_source(QuotingError(text)));
            }
            Some(Leak::Logs) => tracing::trace!(value = %text, "fetched"),
            Some(Leak::SpanField) => {
                let _span = tracing::trace_span!("fetched", value = %text);
            }
            _ => {}
        }
        Ok(Document::new(SecretValue::from_vec(bytes)))
    }

    async fn put(&self, path: &str, value: &SecretValue) -> Result<()> {
        if self.read_only {
            return Err(Error::unsupported("read-only").with_subject(path));
        }
        self.entries()
            .insert(path.to_owned(), value.expose().to_vec());
        Ok(())
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>> {
        if self.read_only {
            return Err(Error::unsupported("read-only").with_subject(prefix));
        }
        Ok(self
            .entries()
            .keys()
            .filter(|path| path.starts_with(prefix))
            .cloned()
            .collect())
    }

    async fn delete(&self, path: &str) -> Result<()> {
        if self.read_only {
            return Err(Error::unsupported("read-only").with_subject(path));
        }
        self.entries()
            .remove(path)
            .map(drop)
            .ok_or_else(|| Error::not_found("no such secret").with_subject(path))
    }
}

/// Seeds a read-only `Memory` from outside, as a file or server seeder would.
struct Direct<'a>(&'a Memory);

#[async_trait]
impl crate::Seeder for Direct<'_> {
    async fn seed(&self, path: &str, bytes: &[u8]) -> Result<()> {
        self.0.entries().insert(path.to_owned(), bytes.to_vec());
        Ok(())
    }
}

/// Runs the whole suite and returns its panic message, if it panicked.
async fn suite_failure(backend: &Memory) -> Option<String> {
    let outcome = AssertUnwindSafe(run_all(backend, &PutSeeder(backend)))
        .catch_unwind()
        .await;
    outcome.err().map(|payload| {
        payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .unwrap_or_default()
    })
}

#[tokio::test]
async fn a_correct_backend_passes() {
    assert_eq!(suite_failure(&Memory::new(None)).await, None);
}

#[tokio::test]
async fn a_correct_read_only_backend_passes_with_an_outside_seeder() {
    let backend = Memory {
        read_only: true,
        ..Memory::new(None)
    };
    run_all(&backend, &Direct(&backend)).await;
}

async fn assert_caught(leak: Leak, place: &str) {
    let message = suite_failure(&Memory::new(Some(leak)))
        .await
        .unwrap_or_else(|| panic!("the suite passed a backend that leaks through {leak:?}"));
    assert!(
        message.contains("`canary_never_leaks` failed for backend `memory`"),
        "{leak:?}: {message}"
    );
    assert!(
        message.contains(place),
        "{leak:?} should be reported in {place}: {message}"
    );
}

#[tokio::test]
async fn a_value_in_debug_is_caught() {
    assert_caught(Leak::Debug, "Debug of the backend after the fetches").await;
}

#[tokio::test]
async fn a_value_in_an_error_message_is_caught() {
    assert_caught(Leak::ErrorMessage, "Display of the error from fetch of").await;
}

#[tokio::test]
async fn a_value_in_an_error_source_is_caught() {
    assert_caught(Leak::ErrorSource, "Display of source #1 of the error").await;
}

#[tokio::test]
async fn a_value_in_the_logs_is_caught() {
    assert_caught(Leak::Logs, "the logs captured at TRACE level").await;
}

#[tokio::test]
async fn a_value_in_a_span_field_is_caught() {
    assert_caught(Leak::SpanField, "the logs captured at TRACE level").await;
}

#[test]
fn the_canary_test_refuses_a_multi_thread_runtime() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .build()
        .unwrap();
    let backend = Memory::new(None);
    let outcome = runtime.block_on(
        AssertUnwindSafe(crate::canary_never_leaks(
            &backend,
            &PutSeeder(&backend),
            &crate::random_prefix(),
        ))
        .catch_unwind(),
    );
    let payload = outcome.expect_err("the canary test ran on a multi-thread runtime");
    let message = payload.downcast_ref::<String>().unwrap();
    assert!(message.contains("current-thread"), "{message}");
}

#[test]
fn capture_logs_sees_tasks_spawned_on_a_current_thread_runtime() {
    let ((), logs) = capture_logs(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        runtime.block_on(async {
            tokio::spawn(async { tracing::trace!("from a spawned task") })
                .await
                .unwrap();
        });
    });
    assert!(logs.contains("from a spawned task"), "{logs}");
    // The capture ended with the closure.
    let ((), later) = capture_logs(|| {});
    assert!(!later.contains("from a spawned task"));
}

#[test]
fn random_prefixes_differ() {
    assert_ne!(crate::random_prefix(), crate::random_prefix());
}

#[test]
fn capture_sees_callsites_first_reached_on_another_thread() {
    // One callsite, reached first by a thread with no capture while this
    // thread captures: `tracing-core` must not cache it as disabled.
    fn log_here() {
        tracing::trace!("callsite shared between threads");
    }
    let ((), logs) = capture_logs(|| {
        std::thread::spawn(log_here).join().unwrap();
        log_here();
    });
    assert!(logs.contains("callsite shared between threads"), "{logs}");
}
