//! Capturing what `tracing` logs, for the canary test and for any test that
//! must prove a value stays out of the logs.

use std::io;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use tracing::Dispatch;
use tracing::subscriber::{DefaultGuard, NoSubscriber};
use tracing_subscriber::fmt::format::FmtSpan;

/// Captures everything `tracing` logs at TRACE level while `f` runs, and
/// returns it as text next to `f`'s result.
///
/// The subscriber is this thread's default only, so parallel tests do not see
/// each other's logs, and only what runs on this thread is captured: to
/// capture async code, build a current-thread runtime inside `f` and
/// `block_on` there (tasks spawned on that runtime run on this thread too).
///
/// ```ignore
/// let (_, logs) = hushbox_testkit::capture_logs(|| {
///     tokio::runtime::Builder::new_current_thread().build().unwrap()
///         .block_on(async { backend.fetch(&reference).await })
/// });
/// ```
pub fn capture_logs<R>(f: impl FnOnce() -> R) -> (R, String) {
    let capture = LogCapture::start();
    let result = f();
    (result, capture.finish())
}

/// A running capture of this thread's `tracing` output, for async tests that
/// cannot wrap their awaits in [`capture_logs`]: it stays installed from
/// [`LogCapture::start`] until [`LogCapture::finish`] (or drop), across awaits.
///
/// It is deliberately not `Send`: a future holding it cannot be spawned onto
/// another thread, where the thread-local subscriber would not follow it.
pub struct LogCapture {
    buffer: Arc<Mutex<Vec<u8>>>,
    guard: DefaultGuard,
    _this_thread_only: PhantomData<*const ()>,
}

impl std::fmt::Debug for LogCapture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The buffer may hold whatever a leaky backend logged.
        f.debug_struct("LogCapture").finish_non_exhaustive()
    }
}

impl LogCapture {
    /// Installs a TRACE-level formatting subscriber as this thread's default.
    /// Span creation and close are logged too, so a value recorded as a span
    /// field is caught even when no event is emitted inside the span.
    pub fn start() -> Self {
        register_anchor_dispatch();
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let writer = SharedBuffer(Arc::clone(&buffer));
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_span_events(FmtSpan::NEW | FmtSpan::CLOSE)
            .with_writer(move || writer.clone())
            .finish();
        // `Dispatch::new` (inside `set_default`) re-evaluates every callsite
        // already seen, so ones another thread marked as disabled before
        // this capture began are enabled again.
        Self {
            buffer,
            guard: tracing::subscriber::set_default(subscriber),
            _this_thread_only: PhantomData,
        }
    }

    /// Uninstalls the subscriber (restoring the previous default) and returns
    /// everything it wrote.
    pub fn finish(self) -> String {
        let Self { buffer, guard, .. } = self;
        drop(guard);
        let bytes = std::mem::take(&mut *buffer.lock().unwrap_or_else(PoisonError::into_inner));
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

/// Keeps a second dispatcher registered for the life of the process.
///
/// `tracing-core` decides once per callsite, at its first use, whether any
/// subscriber wants it, and caches the answer. While only one dispatcher is
/// registered it asks just the *calling thread's* default, so a callsite
/// first reached on a thread without a capture (another test, a blocking
/// pool thread) is cached as disabled, and this thread's capture silently
/// misses it. With two or more registered, it asks all of them, so the
/// capture's interest counts whichever thread gets there first.
fn register_anchor_dispatch() {
    static ANCHOR: OnceLock<Dispatch> = OnceLock::new();
    ANCHOR.get_or_init(|| Dispatch::new(NoSubscriber::default()));
}

#[derive(Clone)]
struct SharedBuffer(Arc<Mutex<Vec<u8>>>);

impl io::Write for SharedBuffer {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
