//! Stop signals during setup: TERM, INT, HUP or QUIT before the child exists
//! end hushbox, promptly, with 128+n.
//!
//! `exec` and `run` block every signal before any thread starts (the tini
//! model), so that signals wait for the child and reach it once it runs.
//! Before the child exists, though, nothing would ever take them: a
//! `docker stop` or a Ctrl-C during a hung fetch or a wait for the output
//! directory's lock was ignored until the fetch gave up. So while hushbox
//! sets up, a watcher thread takes the four stop signals (and only those:
//! every other signal stays pending for the child) with `sigtimedwait`, and
//! records the first one here. The setup polls [`received`] where it waits
//! (the async fetch races [`stopped`]; the lock wait asks between tries),
//! cleans up as on any failure, and exits with 128+n. [`finish`] ends the
//! watch just before the child is spawned; a stop signal that arrives after
//! that is forwarded to the child like any other.
//!
//! Should setup be stuck where it cannot be asked (a blocking read the
//! runtime cannot drop), the watcher ends the process itself after
//! [`GRACE`]: nothing is committed by then, and the next `run` sweeps a run
//! directory left behind.

use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sys::signal::{SigSet, Signal};

use super::signals::{self, Wakeup};

/// The signals that end hushbox before the child exists.
pub const STOP_SIGNALS: [Signal; 4] = [
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGHUP,
    Signal::SIGQUIT,
];

/// How long the setup may take to notice a stop signal before the watcher
/// ends the process itself.
const GRACE: Duration = Duration::from_secs(2);
/// How often the watcher looks at its stop flag between waits (a safety
/// net: [`finish`] wakes it at once with [`wake_signal`]).
const POLL: Duration = Duration::from_millis(20);

/// The first stop signal received during setup, or 0.
static RECEIVED: AtomicI32 = AtomicI32::new(0);
/// The running watch, ended by [`finish`].
static WATCH: Mutex<Option<Watch>> = Mutex::new(None);

struct Watch {
    done: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

/// Starts watching for stop signals. Call it after the signals are blocked
/// (the watcher takes them with `sigtimedwait`, which needs them blocked in
/// every thread), once per process.
pub fn watch() -> std::io::Result<()> {
    let done = Arc::new(AtomicBool::new(false));
    let thread = std::thread::Builder::new()
        .name("stop-signals".into())
        .spawn({
            let done = Arc::clone(&done);
            move || watch_loop(&done)
        })?;
    let previous = WATCH
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .replace(Watch { done, thread });
    if let Some(previous) = previous {
        stop_watch(previous);
    }
    Ok(())
}

/// Ends the watch (if one runs) and returns the stop signal received during
/// setup, if any. After this, stop signals stay pending for the child.
pub fn finish() -> Option<i32> {
    let watch = WATCH
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .take();
    if let Some(watch) = watch {
        stop_watch(watch);
    }
    received()
}

/// The stop signal received during setup, if any.
pub fn received() -> Option<i32> {
    match RECEIVED.load(Ordering::SeqCst) {
        0 => None,
        signo => Some(signo),
    }
}

/// Resolves once a stop signal has been received: race it against a setup
/// future so that the future is dropped (and its connections closed) then.
pub async fn stopped() -> i32 {
    loop {
        if let Some(signo) = received() {
            return signo;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The error that ends a setup stopped by `signo`, with 128+n as its code.
pub fn stopped_error(signo: i32) -> hushbox_core::Error {
    hushbox_core::Error::new(
        hushbox_core::ErrorKind::Io,
        format!(
            "stopped by {} before the program started; nothing of this run was committed",
            signals::name(signo)
        ),
    )
}

/// Waits until one of [`STOP_SIGNALS`] arrives and returns it: the main
/// loop of a process with no child to supervise (`inject --watch`). The
/// signals must be blocked, as `block_signals` leaves them; any other
/// signal stays pending and is ignored.
pub fn wait_for_stop() -> std::io::Result<i32> {
    let mut set = SigSet::empty();
    for signal in STOP_SIGNALS {
        set.add(signal);
    }
    loop {
        if let Wakeup::Signal { signo, .. } =
            signals::wait_for_signal(&set, Duration::from_secs(3600))?
        {
            return Ok(signo);
        }
    }
}

/// Waits at most `timeout` for one of [`STOP_SIGNALS`]: `Some(signo)` when
/// one arrived, `None` when the time was up (the rounds of `swarm sync
/// --watch`). As for [`wait_for_stop`], the signals must be blocked.
pub fn wait_for_stop_within(timeout: Duration) -> std::io::Result<Option<i32>> {
    let mut set = SigSet::empty();
    for signal in STOP_SIGNALS {
        set.add(signal);
    }
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return Ok(None);
        }
        if let Wakeup::Signal { signo, .. } = signals::wait_for_signal(&set, left)? {
            return Ok(Some(signo));
        }
    }
}

/// hushbox's exit code for a stop by `signo`: 128+n, as a shell reports it.
pub fn exit_code(signo: i32) -> u8 {
    u8::try_from(128 + signo).unwrap_or(u8::MAX)
}

/// Ends the watcher and waits for it, so that what it recorded is final:
/// a stop signal it took before it saw `done` counts as one during setup,
/// and every later one stays pending for the supervisor. The wake-up is a
/// signal sent to the watcher thread alone, which ends its wait at once:
/// waiting out a poll would add up to [`POLL`] to every start.
fn stop_watch(watch: Watch) {
    watch.done.store(true, Ordering::SeqCst);
    wake(&watch.thread);
    let _ = watch.thread.join();
}

/// The signal [`stop_watch`] wakes the watcher with: the first real-time
/// signal left to applications. It is blocked in every thread (hushbox
/// blocks all but the faults before any thread starts, and threads inherit
/// the mask), and sent to the watcher thread only, so no other thread (the
/// supervisor, which forwards what it takes) ever sees it.
fn wake_signal() -> libc::c_int {
    libc::SIGRTMIN()
}

/// `set` plus [`wake_signal`], which nix's `Signal` cannot name.
#[allow(unsafe_code)]
fn with_wake_signal(set: &SigSet) -> SigSet {
    let mut raw = *set.as_ref();
    // SAFETY: sigaddset(3) on an initialised set with a valid signal number;
    // the result is a valid sigset_t, which is all from_sigset_t_unchecked
    // asks for.
    unsafe {
        libc::sigaddset(&mut raw, wake_signal());
        SigSet::from_sigset_t_unchecked(raw)
    }
}

#[allow(unsafe_code)]
fn wake(thread: &JoinHandle<()>) {
    use std::os::unix::thread::JoinHandleExt;
    // SAFETY: the thread has not been joined, so its pthread_t is valid;
    // pthread_kill(3) only queues a signal for it (an ended thread gives
    // ESRCH, which is fine: it has nothing left to wake).
    unsafe {
        libc::pthread_kill(thread.as_pthread_t(), wake_signal());
    }
}

fn watch_loop(done: &AtomicBool) {
    let mut set = SigSet::empty();
    for signal in STOP_SIGNALS {
        set.add(signal);
    }
    let set = with_wake_signal(&set);
    while !done.load(Ordering::SeqCst) {
        match signals::wait_for_signal(&set, POLL) {
            // Sent by finish(): the loop condition ends the watch.
            Ok(Wakeup::Signal { signo, .. }) if signo == wake_signal() => {}
            Ok(Wakeup::Signal { signo, .. }) => {
                RECEIVED.store(signo, Ordering::SeqCst);
                tracing::debug!(signal = %signals::name(signo), "stop signal during setup");
                break;
            }
            Ok(Wakeup::Nothing) => {}
            Err(error) => {
                tracing::warn!(%error, "cannot wait for stop signals during setup");
                return;
            }
        }
    }
    let Some(signo) = received() else { return };
    // The setup notices within a poll or two; if it does not, it is stuck
    // somewhere no check reaches.
    let since = Instant::now();
    while since.elapsed() < GRACE {
        if done.load(Ordering::SeqCst) {
            return;
        }
        std::thread::sleep(POLL);
    }
    eprintln!(
        "hushbox: error: stopped by {} before the program started (setup did not end within {}s)",
        signals::name(signo),
        GRACE.as_secs()
    );
    exit_now(i32::from(exit_code(signo)));
}

/// Ends the process from the watcher thread without running exit handlers
/// or destructors, which would race with the stuck main thread.
#[allow(unsafe_code)]
fn exit_now(code: i32) -> ! {
    // SAFETY: _exit(2) takes an integer, touches no memory of ours and
    // never returns.
    unsafe { libc::_exit(code) }
}
