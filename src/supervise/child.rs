//! Starting the child (everything it must be given between fork and exec)
//! and collecting exit statuses.

use std::ffi::OsStr;
use std::io;
use std::os::unix::process::CommandExt;
use std::process::Command;

use nix::errno::Errno;
use nix::sys::resource::{Resource, getrlimit};
use nix::sys::signal::{SigSet, SigmaskHow, pthread_sigmask};
use nix::unistd::{
    Gid, Pid, Uid, getpgrp, isatty, setgroups, setpgid, setresgid, setresuid, tcgetpgrp, tcsetpgrp,
};

use super::signals::{KERNEL_HANDLER_WORD, KernelSigaction};
use super::{ChildSpec, Credentials, SignalMask, SpawnError};

/// A kernel `struct sigaction` for SIG_DFL: handler, flags, restorer and
/// mask all zero. 64 bytes, more than the kernel reads on any architecture.
static DEFAULT_KERNEL_SIGACTION: KernelSigaction = [0; 8];

/// A kernel `struct sigaction` for SIG_IGN, with no flags and an empty mask.
static IGNORE_KERNEL_SIGACTION: KernelSigaction = {
    let mut action = [0; 8];
    action[KERNEL_HANDLER_WORD] = libc::SIG_IGN;
    action
};

/// A started child.
pub(super) struct Started {
    /// Its pid, which is also its process group id.
    pub(super) pid: Pid,
    /// Whether the terminal was handed to the child's process group.
    pub(super) took_terminal: bool,
}

/// What the child does between fork and exec, computed before the fork so
/// that the child itself only makes async-signal-safe system calls: no
/// allocation, no locks, nothing another (now vanished) thread could hold.
struct ChildSetup {
    take_terminal: bool,
    no_new_privs: bool,
    /// The supervisor's pid, when the child must die with it.
    die_with: Option<libc::pid_t>,
    credentials: Option<(Uid, Gid, Vec<Gid>)>,
    mask: SigSet,
    /// Signals hushbox's parent had ignored, bit n-1 for signal n: the
    /// program gets them ignored too.
    ignored_at_start: u64,
    highest_signal: libc::c_int,
    /// The kernel's sigset size in bytes, which rt_sigaction(2) insists on.
    kernel_sigset_size: libc::size_t,
    /// Upper bound for the fd loop used where `close_range` is missing.
    fd_limit: libc::c_int,
}

/// Starts the child. Returns once it has exec'd: std's spawn waits on its
/// internal close-on-exec pipe, so an exec or setup failure comes back here as
/// an error, with the errno the child saw.
#[allow(unsafe_code)]
pub(super) fn spawn(spec: ChildSpec, mask: &SignalMask) -> Result<Started, SpawnError> {
    let ChildSpec {
        program,
        args,
        env,
        user,
        foreground_tty,
        no_new_privs,
        die_with_supervisor,
    } = spec;
    let take_terminal = foreground_tty && we_own_the_terminal();
    let uid = user.as_ref().map(|credentials| credentials.uid);
    let setup = ChildSetup {
        take_terminal,
        no_new_privs,
        die_with: die_with_supervisor.then(|| std::process::id() as libc::pid_t),
        credentials: user.map(|Credentials { uid, gid, groups }| {
            let groups = groups.into_iter().map(Gid::from_raw).collect();
            (Uid::from_raw(uid), Gid::from_raw(gid), groups)
        }),
        mask: *mask.as_sigset(),
        ignored_at_start: mask.ignored_at_start(),
        highest_signal: libc::SIGRTMAX(),
        kernel_sigset_size: (libc::SIGRTMAX() as libc::size_t).div_ceil(8),
        fd_limit: fd_limit(),
    };

    let mut command = Command::new(&program);
    command.args(&args).env_clear().envs(env);
    // SAFETY: `prepare_child` runs in the forked child of a possibly
    // multi-threaded process, where only async-signal-safe calls are sound.
    // It makes only raw system calls (setpgid, tcsetpgrp, setgroups,
    // setresgid, setresuid, prctl, close_range/fcntl, rt_sigaction,
    // pthread_sigmask)
    // and reads `setup`, which was fully built (and allocated) before the
    // fork; it allocates nothing and takes no lock.
    unsafe {
        command.pre_exec(move || prepare_child(&setup));
    }
    match command.spawn() {
        // The `Child` handle is dropped on purpose: dropping neither waits nor
        // kills, and the supervisor loop reaps by pid with waitpid(-1), which
        // must see this child's exit like any other.
        Ok(child) => Ok(Started {
            pid: Pid::from_raw(child.id() as libc::pid_t),
            took_terminal: take_terminal,
        }),
        Err(error) => Err(spawn_error(&program, uid, &error)),
    }
}

/// The terminal goes to the child only when stdin is one and hushbox is in
/// its foreground group: a `hushbox run … &` in the background must not steal
/// the terminal from the shell.
fn we_own_the_terminal() -> bool {
    let stdin = io::stdin();
    isatty(&stdin).unwrap_or(false) && tcgetpgrp(&stdin).is_ok_and(|group| group == getpgrp())
}

/// Gives the terminal back to hushbox's own process group after the child
/// has exited, if it is still elsewhere. A job-control shell does this on its
/// own; a non-interactive parent (a script running `hushbox run -- vim` then
/// `read`) would otherwise be left in the background and stopped by SIGTTIN.
/// SIGTTOU must still be blocked (and ignored), as it is while the
/// supervisor runs.
pub(super) fn reclaim_terminal() {
    let stdin = io::stdin();
    let ours = getpgrp();
    if tcgetpgrp(&stdin).is_ok_and(|group| group != ours)
        && let Err(errno) = tcsetpgrp(&stdin, ours)
    {
        tracing::debug!(%errno, "could not take the terminal back");
    }
}

/// The soft RLIMIT_NOFILE, capped: the fd loop walks every number below it.
fn fd_limit() -> libc::c_int {
    const CAP: u64 = 1 << 20; // the kernel's default fs.nr_open
    let soft = getrlimit(Resource::RLIMIT_NOFILE).map_or(CAP, |(soft, _)| soft);
    soft.min(CAP) as libc::c_int
}

/// Runs in the child between fork and exec; see the SAFETY note in [`spawn`].
///
/// The child still has the supervisor's signal mask here (std does not
/// reset it), so no signal reaches it until the mask is restored, last. The
/// order matters: the process group exists before the terminal is handed to
/// it; privileges go in the order setgroups → setresgid → setresuid (after
/// setresuid, the other two are no longer allowed).
#[allow(unsafe_code)]
fn prepare_child(setup: &ChildSetup) -> io::Result<()> {
    // Its own process group, so that forwarding to -pgid reaches everything
    // the program starts, and a terminal's signals can target it alone.
    setpgid(Pid::from_raw(0), Pid::from_raw(0))?;

    if setup.take_terminal {
        // SIGTTOU is blocked (the supervisor's mask) and ignored (inherited
        // from the supervisor, as in tini), so this call from what is still a
        // background group is allowed instead of stopping the child. Failing
        // to get the terminal is
        // not a reason to refuse to run the program (tini does the same for
        // a missing terminal); the program then runs in the background.
        // SAFETY: tcsetpgrp(2) takes integers only; fd 0 may be closed by now
        // only in theory, and then the call fails with EBADF, which is fine.
        let _ = unsafe { libc::tcsetpgrp(0, libc::getpid()) };
    }

    if let Some((uid, gid, groups)) = &setup.credentials {
        setgroups(groups)?;
        setresgid(*gid, *gid, *gid)?;
        setresuid(*uid, *uid, *uid)?;
    }

    if setup.no_new_privs {
        // After the drop (it is what this protects), before exec (which is
        // where a setuid bit or file capability would act). Inherited by
        // everything the program starts, and irreversible.
        // SAFETY: prctl(2) with PR_SET_NO_NEW_PRIVS takes integers only.
        let set = unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
        if set != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    // After the privilege drop, which would clear it. The kernel sends it
    // when the thread that forked us exits: the supervisor loop's, which
    // lives until the child is reaped.
    if let Some(supervisor) = setup.die_with {
        // SAFETY: prctl(2) with PR_SET_PDEATHSIG takes integers only.
        if unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // Died between the fork and the prctl: no signal will come.
        // SAFETY: getppid(2) takes no arguments.
        if unsafe { libc::getppid() } != supervisor {
            return Err(io::Error::from_raw_os_error(libc::ESRCH));
        }
    }

    // Inherited descriptors (fds ≥ 3 of hushbox, or leaked to hushbox by its
    // own parent) must not reach the program. Close-on-exec rather than close:
    // std's error pipe, whose number we do not know, must stay open until the
    // exec succeeds, and the kernel closes it then.
    // SAFETY: close_range(2) takes integers only.
    let marked = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            3 as libc::c_uint,
            libc::c_uint::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    if marked != 0 {
        // Kernels before 5.11 lack close_range's CLOEXEC flag (before 5.9,
        // close_range itself): set the flag one descriptor at a time. EBADF
        // for the numbers that are not open is expected and ignored.
        for fd in 3..setup.fd_limit {
            // SAFETY: fcntl(2) with F_SETFD takes integers only.
            let _ = unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
        }
    }

    // Every disposition back to the default, or to "ignore" for the signals
    // hushbox was started with ignored, as tini leaves them: the supervisor
    // ignores SIGTTIN and SIGTTOU and Rust's start-up code SIGPIPE, and the
    // program must not inherit those; but `nohup hushbox exec -- app` must
    // keep the app's SIGHUP ignored. (Handlers are reset by exec anyway; only
    // "ignore" survives it.) The raw system call rather than sigaction(3):
    // glibc refuses to touch its two reserved signals (32 and 33), yet an
    // ignored one passes through exec like any other. SIGKILL and SIGSTOP
    // refuse with EINVAL, which is fine.
    for signo in 1..=setup.highest_signal {
        let ignored = signo <= 64 && setup.ignored_at_start & (1 << (signo - 1)) != 0;
        let action = if ignored {
            &IGNORE_KERNEL_SIGACTION
        } else {
            &DEFAULT_KERNEL_SIGACTION
        };
        // SAFETY: rt_sigaction(2) reads a kernel `struct sigaction` from the
        // second pointer: SIG_DFL or SIG_IGN in the handler word, no flags
        // and an empty mask, on every architecture, and the buffer is larger
        // than the kernel's struct anywhere. A null old-action pointer is
        // allowed.
        let _ = unsafe {
            libc::syscall(
                libc::SYS_rt_sigaction,
                signo,
                action.as_ptr(),
                std::ptr::null_mut::<libc::c_void>(),
                setup.kernel_sigset_size,
            )
        };
    }

    // Last: the program gets the mask hushbox was started with. A signal that
    // is pending for the child is delivered now, with its default action,
    // which is what the program would have seen had it already exec'd.
    pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&setup.mask), None)?;
    Ok(())
}

/// Maps a failed spawn to the shell's conventions: 127 when the program does
/// not exist, 126 for every other reason it cannot be executed (permission,
/// format, a failed privilege drop).
fn spawn_error(program: &OsStr, uid: Option<u32>, error: &io::Error) -> SpawnError {
    let program = program.to_string_lossy();
    let code = match error.raw_os_error() {
        Some(libc::ENOENT) => 127,
        _ => 126,
    };
    let message = match (error.raw_os_error(), uid) {
        // Only the privilege drop can fail with EPERM: name the user.
        (Some(libc::EPERM), Some(uid)) => {
            format!("cannot execute `{program}` as uid {uid}: {error}")
        }
        (Some(libc::ENOENT), _) => {
            format!("cannot execute `{program}`: command not found ({error})")
        }
        _ => format!("cannot execute `{program}`: {error}"),
    };
    SpawnError::new(code, message)
}

/// What one pass of reaping found.
pub(super) struct Reaped {
    /// The main child's exit code (128+n for signal n), if it was reaped.
    pub(super) main: Option<i32>,
    /// The process has no children left at all.
    pub(super) no_children: bool,
    /// Other processes reaped (orphans, helpers): pid and code.
    pub(super) others: Vec<(i32, i32)>,
}

/// Reaps every child that has exited, the main one and any orphan that was
/// re-parented to us (as PID 1 or as a subreaper), until none is ready or none
/// is left. SIGCHLD coalesces, so one signal may stand for many exits.
///
/// Without WUNTRACED / WCONTINUED a stopped child is not reported at all, so a
/// SIGSTOP of the child (or of us) is never mistaken for an exit.
#[allow(unsafe_code)]
pub(super) fn reap(main: Pid) -> io::Result<Reaped> {
    let mut reaped = Reaped {
        main: None,
        no_children: false,
        others: Vec::new(),
    };
    // On the process's first thread, __WNOTHREAD: only this thread's
    // children (the program, the hooks it started) and the orphans the
    // kernel hands to the process, which go to its first thread. Processes
    // that other threads start (a backend's plugin during a `--watch`
    // round) are waited for by the code that started them: reaping them
    // here would fail that fetch. A supervisor on another thread (the
    // test harness runs one so) waits for every child of the process, or
    // the orphans would stay zombies.
    let on_first_thread = nix::unistd::gettid() == nix::unistd::getpid();
    let flags = if on_first_thread {
        libc::WNOHANG | libc::__WNOTHREAD
    } else {
        libc::WNOHANG
    };
    loop {
        let mut status: libc::c_int = 0;
        // Raw waitpid rather than nix's: nix cannot represent a death by a
        // real-time signal and would return EINVAL after the status was
        // already consumed, losing the exit code.
        //
        // SAFETY: `status` is a live c_int owned by this frame.
        let pid = unsafe { libc::waitpid(-1, &mut status, flags) };
        match pid {
            0 => return Ok(reaped),
            -1 => match Errno::last() {
                Errno::EINTR => continue,
                Errno::ECHILD => {
                    reaped.no_children = true;
                    return Ok(reaped);
                }
                errno => return Err(errno.into()),
            },
            pid => {
                let code = if libc::WIFEXITED(status) {
                    libc::WEXITSTATUS(status)
                } else if libc::WIFSIGNALED(status) {
                    128 + libc::WTERMSIG(status)
                } else {
                    continue;
                };
                if pid == main.as_raw() {
                    tracing::debug!(pid, code, "child exited");
                    reaped.main = Some(code);
                } else {
                    tracing::debug!(pid, code, "reaped another process");
                    reaped.others.push((pid, code));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code_for(errno: i32) -> i32 {
        spawn_error(
            OsStr::new("app"),
            None,
            &io::Error::from_raw_os_error(errno),
        )
        .code
    }

    #[test]
    fn missing_program_is_127_and_everything_else_126() {
        assert_eq!(code_for(libc::ENOENT), 127);
        assert_eq!(code_for(libc::EACCES), 126);
        assert_eq!(code_for(libc::ENOEXEC), 126);
        assert_eq!(code_for(libc::E2BIG), 126);
    }

    #[test]
    fn messages_name_the_program_and_the_user_on_a_failed_drop() {
        let error = spawn_error(
            OsStr::new("app"),
            Some(65534),
            &io::Error::from_raw_os_error(libc::EPERM),
        );
        assert_eq!(error.code, 126);
        let text = error.to_string();
        assert!(
            text.contains("`app`") && text.contains("uid 65534"),
            "{text}"
        );
        let missing = spawn_error(
            OsStr::new("nope"),
            None,
            &io::Error::from_raw_os_error(libc::ENOENT),
        );
        assert!(
            missing.to_string().contains("`nope`: command not found"),
            "{missing}"
        );
    }
}
