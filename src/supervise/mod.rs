//! The supervisor: runs the child, forwards signals, reaps zombies.
//!
//! It follows tini and catatonit, the standard for a container's PID 1:
//!
//! 1. [`block_signals`] first thing in `main`, so every thread inherits a mask
//!    with all but the synchronous faults blocked;
//! 2. [`run`] spawns the child in its own process group, with the original
//!    mask, the ignored signals it was started with (every other disposition
//!    at its default), fds ≥ 3 close-on-exec and, if asked, the
//!    terminal and lower privileges;
//! 3. then it waits for signals synchronously (`sigtimedwait`): SIGCHLD means
//!    reap with `waitpid(-1, WNOHANG)` until nothing is ready, every other
//!    signal goes to the child's process group;
//! 4. when the child exits, it returns the child's code, or 128+n for a death
//!    by signal n, for hushbox to exit with.
//!
//! When hushbox is not PID 1 it can become a child subreaper, so orphans of
//! the child are re-parented to it and reaped as they would be by an init.
//! Logs name pids and signals, never the child's environment or arguments:
//! those may carry secrets.

mod child;
mod signals;
pub mod stop;
mod user;

use std::ffi::OsString;
use std::fmt;
use std::time::Duration;

use nix::sys::signal::Signal;
use nix::unistd::{Pid, getpid};

use self::signals::Wakeup;

pub use signals::{SignalMask, block_signals};
pub use user::{Credentials, resolve_user, resolve_user_in};

/// What to run, and how.
pub struct ChildSpec {
    /// The program: a path, or a name looked up in the `PATH` of [`env`](Self::env).
    pub program: OsString,
    /// Its arguments, without the program name.
    pub args: Vec<OsString>,
    /// The child's complete environment: it gets exactly these variables and
    /// none of hushbox's own.
    pub env: Vec<(OsString, OsString)>,
    /// Drop to these credentials before exec (hushbox must be root, or hold
    /// CAP_SETUID and CAP_SETGID).
    pub user: Option<Credentials>,
    /// Hand the terminal to the child's process group when stdin is a
    /// terminal and hushbox is in its foreground, so an interactive program
    /// can read it and gets ^C / ^Z directly (for `run`). Taken back when the
    /// child exits.
    pub foreground_tty: bool,
    /// Set `PR_SET_NO_NEW_PRIVS` in the child, after any privilege drop and
    /// before exec: no setuid binary or file capability can raise the
    /// privileges of the program or anything it starts.
    pub no_new_privs: bool,
    /// Kill the child (SIGKILL, `PR_SET_PDEATHSIG`) should hushbox die first
    /// without forwarding anything, as on SIGKILL, so it cannot outlive the
    /// run directory its secrets are in (for `run`). Not for `exec`: as PID
    /// 1, hushbox's death ends the container anyway.
    pub die_with_supervisor: bool,
}

impl fmt::Debug for ChildSpec {
    /// Only the program and the variable names: arguments and values may hold
    /// secrets.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChildSpec")
            .field("program", &self.program)
            .field(
                "env_names",
                &self.env.iter().map(|(name, _)| name).collect::<Vec<_>>(),
            )
            .field("user", &self.user)
            .field("foreground_tty", &self.foreground_tty)
            .field("die_with_supervisor", &self.die_with_supervisor)
            .finish_non_exhaustive()
    }
}

/// How the supervisor itself behaves.
#[derive(Clone, Debug)]
pub struct SupervisorOptions {
    /// Become a child subreaper (`PR_SET_CHILD_SUBREAPER`) when not PID 1, so
    /// that the child's orphans are re-parented to hushbox and reaped. PID 1
    /// needs no such thing: orphans come to it anyway.
    pub subreaper: bool,
    /// The mask [`block_signals`] returned, restored in the child.
    pub mask: SignalMask,
}

/// The child could not be started, or its exit could not be observed.
#[derive(Debug)]
pub struct SpawnError {
    /// The exit code hushbox should exit with: 127 when the program was not
    /// found, 126 when it could not be executed (permission, format, a failed
    /// privilege drop), 1 when the supervisor itself failed.
    pub code: i32,
    message: String,
}

impl SpawnError {
    fn new(code: i32, message: String) -> Self {
        Self { code, message }
    }

    /// The supervisor's own failures, with the generic failure code.
    fn internal(what: &str, error: impl fmt::Display) -> Self {
        Self::new(1, format!("supervisor: {what}: {error}"))
    }
}

impl fmt::Display for SpawnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for SpawnError {}

/// How long one wait for a signal lasts before a reaping pass anyway. SIGCHLD
/// is never lost while it is blocked, so this is only a safety net (tini uses
/// the same second) for a SIGCHLD taken by a thread that should not exist.
const REAP_INTERVAL: Duration = Duration::from_secs(1);

/// Spawns the child and supervises it to the end, in the calling thread.
/// Returns the exit code hushbox should exit with: the child's code, or 128+n
/// if it died of signal n.
///
/// Call it with no other thread running (drop any async runtime first) and
/// after [`block_signals`]. While it runs, it reaps *every* child of this
/// process, so nothing else may wait for children of its own meanwhile.
/// Signals that arrived before the child existed were kept pending by the
/// mask and are forwarded as soon as it does.
pub fn run(spec: ChildSpec, options: &SupervisorOptions) -> Result<i32, SpawnError> {
    let set = signals::supervised_set();
    // block_signals() has done this already for a well-behaved caller; doing
    // it again for this thread is free and makes the wait below sound even if
    // it was not (a blocked signal is the only kind sigtimedwait may take).
    set.thread_block()
        .map_err(|errno| SpawnError::internal("cannot block signals", errno))?;
    let _dispositions = signals::SupervisorDispositions::install()
        .map_err(|error| SpawnError::internal("cannot set signal dispositions", error))?;
    if getpid() != Pid::from_raw(1)
        && options.subreaper
        && let Err(errno) = nix::sys::prctl::set_child_subreaper(true)
    {
        // Orphans then go to the real init, which may or may not reap them.
        tracing::warn!(%errno, "cannot become a child subreaper");
    }

    let program = spec.program.to_string_lossy().into_owned();
    let started = child::spawn(spec, &options.mask)?;
    let (pid, terminal) = (started.pid.as_raw(), started.took_terminal);
    tracing::debug!(pid, %program, terminal, "started child");

    let outcome = supervise(started.pid, &set);
    if started.took_terminal {
        child::reclaim_terminal();
    }
    outcome
}

/// The supervisor loop: wait for a signal, forward it or reap, until the
/// main child has been reaped.
fn supervise(child: Pid, set: &nix::sys::signal::SigSet) -> Result<i32, SpawnError> {
    let pid = child.as_raw();
    loop {
        let wakeup = signals::wait_for_signal(set, REAP_INTERVAL)
            .map_err(|error| SpawnError::internal("waiting for signals failed", error))?;
        match wakeup {
            // Not forwarded: it only means "reap".
            Wakeup::Signal { signo, .. } if signo == Signal::SIGCHLD as i32 => {}
            // Raised by hushbox's own doing (SIGPIPE from a log line written
            // to a closed pipe, say): it is not addressed to the child.
            Wakeup::Signal {
                signo,
                from_self: true,
            } => {
                let signal = signals::name(signo);
                tracing::debug!(%signal, "not forwarding a signal hushbox raised itself");
            }
            Wakeup::Signal { signo, .. } => {
                let signal = signals::name(signo);
                match signals::forward(signo, child) {
                    Ok(()) => tracing::debug!(%signal, pid, "forwarded signal"),
                    Err(errno) => tracing::debug!(%signal, pid, %errno, "could not forward"),
                }
            }
            Wakeup::Nothing => {}
        }

        // After every wakeup, not only SIGCHLD: cheap, and it is what makes
        // the timeout a safety net.
        let reaped = child::reap(child)
            .map_err(|error| SpawnError::internal("waiting for the child failed", error))?;
        if let Some(code) = reaped.main {
            return Ok(code);
        }
        if reaped.no_children {
            // Someone else collected the status (a SIGCHLD set to SIG_IGN
            // behind our back, or another thread's waitpid): the code is lost.
            return Err(SpawnError::internal(
                "the child's exit status was collected elsewhere",
                format!("pid {pid}"),
            ));
        }
    }
}
