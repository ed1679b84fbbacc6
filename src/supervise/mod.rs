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
pub mod control;
mod signals;
pub mod stop;
mod user;

use std::ffi::OsString;
use std::fmt;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::unistd::{Pid, getpid};

use self::signals::Wakeup;

pub use signals::{SignalMask, block_signals};
pub use user::{Credentials, resolve_user, resolve_user_in};

/// What to run, and how.
#[derive(Clone)]
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
    run_controlled(spec, options, None)
}

/// [`run`], also taking [`control::Directive`]s from `queue` (the
/// watcher's hooks): the child may be signalled, restarted (never two at
/// once: the old one is reaped before the new one starts) or stopped, and
/// helpers run beside it.
pub fn run_controlled(
    spec: ChildSpec,
    options: &SupervisorOptions,
    queue: Option<&control::DirectiveQueue>,
) -> Result<i32, SpawnError> {
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
    let _attached = queue.map(control::DirectiveQueue::attach);
    // Kept only when a restart may come: the environment may hold values.
    let respawn = queue.filter(|queue| queue.restarts).map(|_| spec.clone());
    let started = child::spawn(spec, &options.mask)?;
    let (pid, terminal) = (started.pid.as_raw(), started.took_terminal);
    tracing::debug!(pid, %program, terminal, "started child");

    let mut state = Supervision {
        child: started.pid,
        took_terminal: started.took_terminal,
        respawn,
        queue,
        mask: options.mask,
        stopping: None,
        helpers: Vec::new(),
    };
    let outcome = state.supervise(&set);
    if state.took_terminal {
        child::reclaim_terminal();
    }
    outcome
}

/// A stop the supervisor asked for itself (a restart or a stop directive).
struct Stopping {
    /// When SIGKILL follows the SIGTERM.
    kill_at: Instant,
    killed: bool,
    /// Start the child again once it has been reaped.
    restart: bool,
    env: Option<Vec<(OsString, OsString)>>,
}

/// A running helper.
struct Helper {
    pid: i32,
    label: String,
    kill_at: Instant,
    killed: bool,
}

/// The supervisor loop's state.
struct Supervision<'a> {
    child: Pid,
    took_terminal: bool,
    /// What to start again on a restart (with directives only).
    respawn: Option<ChildSpec>,
    queue: Option<&'a control::DirectiveQueue>,
    mask: SignalMask,
    stopping: Option<Stopping>,
    helpers: Vec<Helper>,
}

impl Supervision<'_> {
    /// The supervisor loop: wait for a signal, forward it or reap, until
    /// the main child has been reaped (and not restarted).
    fn supervise(&mut self, set: &nix::sys::signal::SigSet) -> Result<i32, SpawnError> {
        loop {
            let wakeup = signals::wait_for_signal(set, self.next_timeout())
                .map_err(|error| SpawnError::internal("waiting for signals failed", error))?;
            match wakeup {
                // Not forwarded: it only means "reap".
                Wakeup::Signal { signo, .. } if signo == Signal::SIGCHLD as i32 => {}
                // Raised by hushbox's own doing (SIGPIPE from a log line
                // written to a closed pipe, the watcher's wake-up): it is
                // not addressed to the child.
                Wakeup::Signal {
                    signo,
                    from_self: true,
                } => {
                    if signo != control::wake_signal() {
                        let signal = signals::name(signo);
                        tracing::debug!(%signal, "not forwarding a signal hushbox raised itself");
                    }
                }
                Wakeup::Signal { signo, .. } => {
                    let signal = signals::name(signo);
                    let pid = self.child.as_raw();
                    match signals::forward(signo, self.child) {
                        Ok(()) => tracing::debug!(%signal, pid, "forwarded signal"),
                        Err(errno) => tracing::debug!(%signal, pid, %errno, "could not forward"),
                    }
                    // Someone stops the container during a restart: the
                    // program is not started again.
                    if stop::STOP_SIGNALS.iter().any(|s| *s as i32 == signo)
                        && let Some(stopping) = &mut self.stopping
                    {
                        stopping.restart = false;
                    }
                }
                Wakeup::Nothing => {}
            }
            self.take_directives();

            // After every wakeup, not only SIGCHLD: cheap, and it is what
            // makes the timeout a safety net.
            let reaped = child::reap(self.child)
                .map_err(|error| SpawnError::internal("waiting for the child failed", error))?;
            for (pid, code) in &reaped.others {
                self.helper_ended(*pid, *code);
            }
            if let Some(code) = reaped.main {
                match self.stopping.take() {
                    Some(Stopping {
                        restart: true, env, ..
                    }) => {
                        self.start_again(env)?;
                        continue;
                    }
                    _ => return Ok(code),
                }
            }
            if reaped.no_children {
                // Someone else collected the status (a SIGCHLD set to
                // SIG_IGN behind our back, or another thread's waitpid):
                // the code is lost.
                return Err(SpawnError::internal(
                    "the child's exit status was collected elsewhere",
                    format!("pid {}", self.child.as_raw()),
                ));
            }
            self.enforce_deadlines();
        }
    }

    /// How long the next wait may last: the reaping interval, or less when
    /// a deadline (a restart's SIGKILL, a helper's timeout) comes first.
    fn next_timeout(&self) -> Duration {
        let now = Instant::now();
        let deadlines = self
            .stopping
            .iter()
            .filter(|stopping| !stopping.killed)
            .map(|stopping| stopping.kill_at)
            .chain(
                self.helpers
                    .iter()
                    .filter(|helper| !helper.killed)
                    .map(|helper| helper.kill_at),
            );
        deadlines
            .map(|deadline| deadline.saturating_duration_since(now))
            .fold(REAP_INTERVAL, Duration::min)
            .max(Duration::from_millis(1))
    }

    fn take_directives(&mut self) {
        let Some(queue) = self.queue else { return };
        while let Some(directive) = queue.next() {
            tracing::debug!(?directive, "directive from the watcher");
            match directive {
                control::Directive::Signal(signal) => {
                    if self.stopping.is_some() {
                        continue;
                    }
                    let pid = self.child.as_raw();
                    match signals::forward(signal as i32, self.child) {
                        Ok(()) => tracing::info!(%signal, pid, "signalled the program"),
                        Err(errno) => {
                            tracing::warn!(%signal, pid, %errno, "could not signal the program")
                        }
                    }
                }
                control::Directive::Restart { grace, env } => match &mut self.stopping {
                    // Already stopping: a newer environment wins.
                    Some(stopping) => {
                        if env.is_some() {
                            stopping.env = env;
                        }
                    }
                    None => {
                        tracing::info!(pid = self.child.as_raw(), "restarting the program");
                        self.begin_stop(grace, true, env);
                    }
                },
                control::Directive::Stop { grace } => match &mut self.stopping {
                    Some(stopping) => stopping.restart = false,
                    None => self.begin_stop(grace, false, None),
                },
                control::Directive::Helper(spec) => match control::spawn_helper(&spec) {
                    Ok(helper) => {
                        let pid = helper.id() as i32;
                        // The handle is dropped: this loop reaps by pid.
                        drop(helper);
                        tracing::debug!(pid, hook = %spec.label, "started hook");
                        self.helpers.push(Helper {
                            pid,
                            label: spec.label,
                            kill_at: Instant::now() + spec.timeout,
                            killed: false,
                        });
                    }
                    Err(error) => {
                        tracing::warn!(hook = %spec.label, %error, "cannot start the hook")
                    }
                },
            }
        }
    }

    fn begin_stop(
        &mut self,
        grace: Duration,
        restart: bool,
        env: Option<Vec<(OsString, OsString)>>,
    ) {
        let _ = signals::forward(Signal::SIGTERM as i32, self.child);
        self.stopping = Some(Stopping {
            kill_at: Instant::now() + grace,
            killed: false,
            restart,
            env,
        });
    }

    /// Starts the program again after a restart's stop: first whatever is
    /// left of the old process group is killed, so no two generations of
    /// the program ever run at once.
    fn start_again(&mut self, env: Option<Vec<(OsString, OsString)>>) -> Result<(), SpawnError> {
        let _ = nix::sys::signal::killpg(self.child, Signal::SIGKILL);
        if self.took_terminal {
            child::reclaim_terminal();
        }
        let mut spec = self
            .respawn
            .clone()
            .ok_or_else(|| SpawnError::internal("cannot restart", "no program to start"))?;
        if let Some(env) = env {
            spec.env = env;
            if let Some(respawn) = &mut self.respawn {
                respawn.env = spec.env.clone();
            }
        }
        let started = child::spawn(spec, &self.mask)?;
        self.child = started.pid;
        self.took_terminal = started.took_terminal;
        tracing::info!(pid = started.pid.as_raw(), "restarted the program");
        Ok(())
    }

    fn helper_ended(&mut self, pid: i32, code: i32) {
        let Some(index) = self.helpers.iter().position(|helper| helper.pid == pid) else {
            return;
        };
        let helper = self.helpers.swap_remove(index);
        if helper.killed {
            tracing::warn!(hook = %helper.label, "the hook timed out and was killed");
        } else if code == 0 {
            tracing::info!(hook = %helper.label, "hook succeeded");
        } else {
            tracing::warn!(hook = %helper.label, code, "the hook failed");
        }
    }

    fn enforce_deadlines(&mut self) {
        let now = Instant::now();
        if let Some(stopping) = &mut self.stopping
            && !stopping.killed
            && now >= stopping.kill_at
        {
            tracing::warn!(
                pid = self.child.as_raw(),
                "the program did not stop within its grace period; sending SIGKILL"
            );
            let _ = signals::forward(Signal::SIGKILL as i32, self.child);
            stopping.killed = true;
        }
        for helper in &mut self.helpers {
            if !helper.killed && now >= helper.kill_at {
                let _ = nix::sys::signal::killpg(Pid::from_raw(helper.pid), Signal::SIGKILL);
                helper.killed = true;
            }
        }
    }
}
