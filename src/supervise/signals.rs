//! Signal plumbing: the blocked set, waiting for a signal, forwarding it, and
//! the few dispositions the supervisor changes while it runs.
//!
//! Signals are never handled by a handler here: they stay blocked and are
//! taken synchronously with `sigtimedwait`, so no Rust code ever runs in
//! signal context and every signal arrives in the supervisor loop in order.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::{
    SaFlags, SigAction, SigHandler, SigSet, SigmaskHow, Signal, pthread_sigmask, sigaction,
};
use nix::unistd::Pid;

/// The synchronous faults: raised by the faulting instruction in the thread
/// that executed it. Blocking them would not stop them (the kernel kills the
/// process instead) and forwarding them would be wrong: they belong to the
/// supervisor, not to the child.
const SYNCHRONOUS_FAULTS: [Signal; 7] = [
    Signal::SIGFPE,
    Signal::SIGILL,
    Signal::SIGSEGV,
    Signal::SIGBUS,
    Signal::SIGABRT,
    Signal::SIGTRAP,
    Signal::SIGSYS,
];

/// The signal configuration hushbox was started with, to be given to the
/// child as tini gives it: the mask as it was before [`block_signals`], and
/// the signals its parent had set to SIG_IGN (`nohup` ignores SIGHUP, a
/// shell's background job SIGINT and SIGQUIT).
#[derive(Clone, Copy, Debug)]
pub struct SignalMask {
    mask: SigSet,
    /// Bit n-1 set: signal n was ignored at start.
    ignored: u64,
}

impl SignalMask {
    pub(super) fn as_sigset(&self) -> &SigSet {
        &self.mask
    }

    /// Signals ignored at start, bit n-1 for signal n (1 to 64).
    pub(super) fn ignored_at_start(&self) -> u64 {
        self.ignored
    }
}

/// The signals that were ignored when the process started, as recorded by
/// [`record_ignored_at_start`].
static IGNORED_AT_START: AtomicU64 = AtomicU64::new(0);

/// Runs [`record_ignored_at_start`] before `main`, before Rust's own start-up
/// code sets SIGPIPE to SIG_IGN: read later, an ignored SIGPIPE could not be
/// told apart from one hushbox's parent ignored. The loader (or, in the
/// static binary, libc's start code) runs `.init_array` entries after libc
/// is initialised, with one thread.
#[allow(unsafe_code)]
#[used]
#[unsafe(link_section = ".init_array")]
static RECORD_IGNORED_AT_START: extern "C" fn() = record_ignored_at_start;

/// A kernel `struct sigaction` as raw words, large enough on every
/// architecture (the kernel reads or writes less).
pub(super) type KernelSigaction = [usize; 8];

/// Which word of a [`KernelSigaction`] holds the handler: the first
/// everywhere but MIPS, whose struct starts with the flags.
pub(super) const KERNEL_HANDLER_WORD: usize =
    if cfg!(any(target_arch = "mips", target_arch = "mips64")) {
        1
    } else {
        0
    };

/// Records which signals are set to SIG_IGN, bit n-1 for signal n, with the
/// raw system call: glibc's sigaction(3) refuses to report the two signals
/// it reserves (32 and 33), yet a parent may leave them ignored (glibc's own
/// posix_spawn does) and tini passes that on like any other ignore.
#[allow(unsafe_code)]
extern "C" fn record_ignored_at_start() {
    let mut ignored = 0u64;
    let kernel_sigset_size = (libc::SIGRTMAX() as libc::size_t).div_ceil(8);
    for signo in 1..=libc::SIGRTMAX().min(64) {
        let mut current: KernelSigaction = [0; 8];
        // SAFETY: rt_sigaction(2) with a null new action only writes the
        // current one into `current`, which lives in this frame and is
        // larger than the kernel's struct on any architecture.
        let queried = unsafe {
            libc::syscall(
                libc::SYS_rt_sigaction,
                signo,
                std::ptr::null::<libc::c_void>(),
                current.as_mut_ptr(),
                kernel_sigset_size,
            )
        };
        if queried == 0 && current[KERNEL_HANDLER_WORD] == libc::SIG_IGN {
            ignored |= 1 << (signo - 1);
        }
    }
    IGNORED_AT_START.store(ignored, Ordering::Relaxed);
}

/// Every signal except the synchronous faults. SIGKILL and SIGSTOP are in the
/// set too; the kernel ignores them in masks, and a wait never returns them.
pub(super) fn supervised_set() -> SigSet {
    let mut set = SigSet::all();
    for fault in SYNCHRONOUS_FAULTS {
        set.remove(fault);
    }
    set
}

/// Blocks every signal except the synchronous faults (SIGFPE, SIGILL, SIGSEGV,
/// SIGBUS, SIGABRT, SIGTRAP, SIGSYS) in the calling thread, and returns the
/// mask that was in place before.
///
/// Call it first thing in `main`, before any thread (a tokio runtime) starts:
/// threads inherit the mask, so a signal that arrives while hushbox is still
/// fetching secrets stays pending instead of killing it halfway through a
/// write, and is forwarded to the child once [`run`](super::run) has started
/// it. The returned mask goes into
/// [`SupervisorOptions::mask`](super::SupervisorOptions) so the child gets the
/// mask hushbox was started with, not this one.
pub fn block_signals() -> std::io::Result<SignalMask> {
    // SIG_SETMASK rather than SIG_BLOCK: it also unblocks a fault that our own
    // parent may have left blocked, as tini does. The old mask goes into an
    // initialised set, not SigSet::thread_swap_mask's uninitialised one: the
    // kernel fills only its own 8 bytes of glibc's 128-byte sigset_t.
    let mut previous = SigSet::empty();
    pthread_sigmask(
        SigmaskHow::SIG_SETMASK,
        Some(&supervised_set()),
        Some(&mut previous),
    )?;
    Ok(SignalMask {
        mask: previous,
        ignored: IGNORED_AT_START.load(Ordering::Relaxed),
    })
}

/// What one wait for a signal produced.
pub(super) enum Wakeup {
    /// A signal arrived; `from_self` is true when this process sent it to
    /// itself (a write of ours to a closed pipe raises SIGPIPE that way).
    Signal { signo: i32, from_self: bool },
    /// Nothing arrived in time, or the wait was interrupted (Linux interrupts
    /// `sigtimedwait` with EINTR when the process is stopped and continued).
    Nothing,
}

/// Waits up to `timeout` for one of `set`, which must be blocked.
#[allow(unsafe_code)]
pub(super) fn wait_for_signal(set: &SigSet, timeout: Duration) -> std::io::Result<Wakeup> {
    let timeout = libc::timespec {
        tv_sec: timeout.as_secs().try_into().unwrap_or(libc::time_t::MAX),
        tv_nsec: timeout.subsec_nanos().into(),
    };
    // SAFETY: an all-zero siginfo_t is a valid value of this plain C struct.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: the three pointers refer to live, properly aligned values owned
    // by this frame for the duration of the call; the kernel writes only into
    // `info`.
    let signo = unsafe { libc::sigtimedwait(set.as_ref(), &mut info, &timeout) };
    if signo < 0 {
        return match Errno::last() {
            Errno::EAGAIN | Errno::EINTR => Ok(Wakeup::Nothing),
            errno => Err(errno.into()),
        };
    }
    // Only SI_USER / SI_TKILL / SI_QUEUE carry a sender; for those the kernel
    // sets si_pid to the sender as seen from our PID namespace (0 when the
    // sender is outside it, as for a PID 1 signalled by `docker stop`).
    let user_sent = matches!(
        info.si_code,
        libc::SI_USER | libc::SI_TKILL | libc::SI_QUEUE
    );
    // SAFETY: si_pid reads the sender member of the union, which the kernel
    // fills for exactly the user-sent codes checked just above.
    let from_self = user_sent && unsafe { info.si_pid() } == std::process::id() as libc::pid_t;
    Ok(Wakeup::Signal { signo, from_self })
}

/// Sends `signo` to the child's process group, or to the child itself when
/// the group is gone (the child left it with `setpgid`/`setsid`).
///
/// Raw numbers rather than [`Signal`]: real-time signals have no `Signal`
/// variant and must be forwarded too.
#[allow(unsafe_code)]
pub(super) fn forward(signo: i32, child: Pid) -> Result<(), Errno> {
    let pid = child.as_raw();
    // SAFETY: kill(2) takes two integers and touches no memory of ours.
    if unsafe { libc::kill(-pid, signo) } == 0 {
        return Ok(());
    }
    match Errno::last() {
        // SAFETY: as above.
        Errno::ESRCH => Errno::result(unsafe { libc::kill(pid, signo) }).map(drop),
        errno => Err(errno),
    }
}

/// A signal's name for logs: `SIGTERM`, or `SIGRT+n` for real-time signals.
pub(super) fn name(signo: i32) -> String {
    match Signal::try_from(signo) {
        Ok(signal) => signal.as_str().to_owned(),
        Err(_) if signo >= libc::SIGRTMIN() => format!("SIGRTMIN+{}", signo - libc::SIGRTMIN()),
        Err(_) => format!("signal {signo}"),
    }
}

/// Sets `signal` to a disposition that is not a handler.
#[allow(unsafe_code)]
fn set_disposition(signal: Signal, handler: SigHandler) -> Result<SigAction, Errno> {
    debug_assert!(matches!(handler, SigHandler::SigDfl | SigHandler::SigIgn));
    let action = SigAction::new(handler, SaFlags::empty(), SigSet::empty());
    // SAFETY: SIG_DFL and SIG_IGN run no code of ours in signal context, which
    // is the one hazard nix marks sigaction unsafe for.
    unsafe { sigaction(signal, &action) }
}

/// Restores an action saved by [`set_disposition`].
#[allow(unsafe_code)]
fn restore_disposition(signal: Signal, action: &SigAction) {
    // SAFETY: `action` was returned by sigaction for this very signal, so it
    // is whatever the process had installed before; restoring it installs
    // nothing new.
    let _ = unsafe { sigaction(signal, action) };
}

/// The dispositions the supervisor needs while it runs, restored on drop so a
/// caller that goes on after [`run`](super::run) (to remove a run directory,
/// say) finds the process as it was.
pub(super) struct SupervisorDispositions {
    saved: Vec<(Signal, SigAction)>,
}

impl SupervisorDispositions {
    /// - SIGTTIN and SIGTTOU ignored, as tini does. Being blocked already
    ///   lets the child call `tcsetpgrp` from what is still a background
    ///   group, and the supervisor take the terminal back at the end; being
    ///   ignored too keeps that true should a caller's mask ever lack them.
    ///   The child resets every disposition before exec.
    /// - SIGCHLD at its default. Were it SIG_IGN (inherited through exec from
    ///   a careless parent), the kernel would reap children on its own and
    ///   `waitpid` could never report the child's exit code.
    pub(super) fn install() -> std::io::Result<Self> {
        let mut saved = Vec::with_capacity(3);
        for (signal, handler) in [
            (Signal::SIGTTIN, SigHandler::SigIgn),
            (Signal::SIGTTOU, SigHandler::SigIgn),
            (Signal::SIGCHLD, SigHandler::SigDfl),
        ] {
            match set_disposition(signal, handler) {
                Ok(previous) => saved.push((signal, previous)),
                Err(errno) => {
                    drop(Self { saved });
                    return Err(errno.into());
                }
            }
        }
        Ok(Self { saved })
    }
}

impl Drop for SupervisorDispositions {
    fn drop(&mut self) {
        for (signal, action) in self.saved.iter().rev() {
            restore_disposition(*signal, action);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn supervised_set_leaves_out_exactly_the_synchronous_faults() {
        let set = supervised_set();
        for fault in SYNCHRONOUS_FAULTS {
            assert!(!set.contains(fault), "{fault} must stay unblocked");
        }
        for signal in [
            Signal::SIGTERM,
            Signal::SIGINT,
            Signal::SIGHUP,
            Signal::SIGQUIT,
            Signal::SIGUSR1,
            Signal::SIGUSR2,
            Signal::SIGCHLD,
            Signal::SIGWINCH,
            Signal::SIGCONT,
            Signal::SIGTSTP,
            Signal::SIGPIPE,
        ] {
            assert!(set.contains(signal), "{signal} must be blocked");
        }
    }

    #[test]
    fn a_signal_raised_by_this_process_is_marked_as_ours() {
        // raise() targets this thread alone, so blocking SIGUSR2 here (not in
        // the whole test process) is enough to keep it pending for the wait.
        let mut set = SigSet::empty();
        set.add(Signal::SIGUSR2);
        let mut previous = SigSet::empty();
        pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&set), Some(&mut previous)).unwrap();
        nix::sys::signal::raise(Signal::SIGUSR2).unwrap();
        let wakeup = wait_for_signal(&set, Duration::from_secs(5)).unwrap();
        let nothing = wait_for_signal(&set, Duration::from_millis(10)).unwrap();
        previous.thread_set_mask().unwrap();
        assert!(matches!(
            wakeup,
            Wakeup::Signal { signo, from_self: true } if signo == libc::SIGUSR2
        ));
        assert!(
            matches!(nothing, Wakeup::Nothing),
            "the timeout ends the wait"
        );
    }

    #[test]
    fn names_cover_real_time_signals() {
        assert_eq!(name(libc::SIGTERM), "SIGTERM");
        assert_eq!(name(libc::SIGRTMIN() + 3), "SIGRTMIN+3");
    }
}
