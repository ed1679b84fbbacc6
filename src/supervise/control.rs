//! Directives to a running supervisor from the watcher: signal the child,
//! restart it, run a helper (an `exec` hook), or stop it.
//!
//! The supervisor thread owns the child: it alone spawns, signals and reaps
//! (its `waitpid(-1)` would steal any other thread's child), so the watcher
//! never touches a process itself. It queues a [`Directive`] and wakes the
//! supervisor's `sigtimedwait` with [`wake_signal`] sent to that thread
//! alone; the supervisor sees a signal from its own process, which it never
//! forwards, and reads the queue.

use std::ffi::OsString;
use std::fmt;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::Signal;

/// What the watcher asks of the supervisor.
pub enum Directive {
    /// Send this signal to the child's process group.
    Signal(Signal),
    /// Stop the child (SIGTERM, then SIGKILL after `grace`), wait for it,
    /// and start it again, with this environment when given (new values of
    /// `env_value` secrets) or the previous one.
    Restart {
        /// How long the child may take to stop.
        grace: Duration,
        /// The new child's environment, if it changed.
        env: Option<Vec<(OsString, OsString)>>,
    },
    /// Run a helper process beside the child, killed after its timeout.
    Helper(HelperSpec),
    /// Stop the child (SIGTERM, then SIGKILL after `grace`) and end
    /// supervision with its exit code.
    Stop {
        /// How long the child may take to stop.
        grace: Duration,
    },
}

impl fmt::Debug for Directive {
    /// Never the environment: it may hold values.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Signal(signal) => write!(f, "Signal({signal})"),
            Self::Restart { grace, .. } => write!(f, "Restart({grace:?})"),
            Self::Helper(spec) => write!(f, "Helper({})", spec.label),
            Self::Stop { grace } => write!(f, "Stop({grace:?})"),
        }
    }
}

/// A helper process: an `exec` hook.
pub struct HelperSpec {
    /// How logs name it.
    pub label: String,
    /// The program (looked up in the `PATH` of `env`).
    pub program: OsString,
    /// Its arguments.
    pub args: Vec<OsString>,
    /// Its complete environment (names and references only, never values).
    pub env: Vec<(OsString, OsString)>,
    /// How long it may run before SIGKILL.
    pub timeout: Duration,
}

type Target = Arc<Mutex<Option<libc::pthread_t>>>;

/// The watcher's end: cheap to clone.
#[derive(Clone)]
pub struct Directives {
    sender: Sender<Directive>,
    target: Target,
}

impl fmt::Debug for Directives {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Directives").finish_non_exhaustive()
    }
}

/// The supervisor's end.
pub struct DirectiveQueue {
    receiver: Receiver<Directive>,
    target: Target,
    /// Whether a restart may be asked for: only then does the supervisor
    /// keep the program's spec (its environment may hold values).
    pub(super) restarts: bool,
}

/// A connected pair. `restarts`: whether [`Directive::Restart`] may come.
pub fn channel_pair(restarts: bool) -> (Directives, DirectiveQueue) {
    let (sender, receiver) = channel();
    let target = Arc::new(Mutex::new(None));
    (
        Directives {
            sender,
            target: Arc::clone(&target),
        },
        DirectiveQueue {
            receiver,
            target,
            restarts,
        },
    )
}

/// The signal that wakes the supervisor: one real-time signal past the
/// one that ends the setup's stop watch, so the two never meet.
pub(super) fn wake_signal() -> libc::c_int {
    libc::SIGRTMIN() + 1
}

impl Directives {
    /// Queues a directive and wakes the supervisor. A supervisor that has
    /// ended drops it.
    #[allow(unsafe_code)]
    pub fn send(&self, directive: Directive) {
        if self.sender.send(directive).is_err() {
            return;
        }
        let target = self.target.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(thread) = *target {
            // SAFETY: the supervisor clears the target (under this lock)
            // before its thread ends, so `thread` is a live thread here;
            // pthread_kill(3) only queues a signal for it.
            unsafe {
                libc::pthread_kill(thread, wake_signal());
            }
        }
    }
}

impl DirectiveQueue {
    /// Marks the calling thread as the one to wake, until the guard drops.
    #[allow(unsafe_code)]
    pub(super) fn attach(&self) -> Attached<'_> {
        // SAFETY: pthread_self(3) has no preconditions.
        let me = unsafe { libc::pthread_self() };
        *self.target.lock().unwrap_or_else(|p| p.into_inner()) = Some(me);
        Attached(&self.target)
    }

    /// The next queued directive, if any.
    pub(super) fn next(&self) -> Option<Directive> {
        self.receiver.try_recv().ok()
    }
}

/// Clears the wake target when the supervisor ends.
pub(super) struct Attached<'a>(&'a Target);

impl Drop for Attached<'_> {
    fn drop(&mut self) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
}

/// Starts a helper: its own process group (a signal hook to the child's
/// group does not reach it), stdin from /dev/null, stdout and stderr
/// logged line by line under its label by two small threads.
pub fn spawn_helper(spec: &HelperSpec) -> std::io::Result<std::process::Child> {
    use std::io::BufRead;
    use std::os::unix::process::CommandExt;
    use std::process::{Command, Stdio};
    let mut child = Command::new(&spec.program)
        .args(&spec.args)
        .env_clear()
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()?;
    let pipes: [(Option<Box<dyn std::io::Read + Send>>, &'static str); 2] = [
        (
            child
                .stdout
                .take()
                .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
            "stdout",
        ),
        (
            child
                .stderr
                .take()
                .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
            "stderr",
        ),
    ];
    for (pipe, stream) in pipes {
        let Some(pipe) = pipe else { continue };
        let label = spec.label.clone();
        let _ = std::thread::Builder::new()
            .name("hook-output".into())
            .spawn(move || {
                for line in std::io::BufReader::new(pipe).lines() {
                    let Ok(line) = line else { break };
                    tracing::info!(hook = %label, stream, "{line}");
                }
            });
    }
    Ok(child)
}
