//! Running one plugin process: argv without a shell, a scrubbed environment,
//! its own process group (killed whole on timeout), stdout read by the
//! caller, stderr counted and dropped.

use std::future::Future;
use std::process::{ExitStatus, Stdio};

use hushbox_core::SecretValue;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{ChildStderr, ChildStdout};
use zeroize::Zeroizing;

use crate::config::Settings;
use crate::error::CommandError;

/// How much of stderr is kept, when anything is (for `not_found_pattern`
/// and `debug_stderr`); the rest is counted and dropped.
const STDERR_KEPT: usize = 64 * 1024;

/// The size of the stack buffers pipes are read through; each is wiped
/// when the read ends.
const CHUNK: usize = 8 * 1024;

/// What a finished process left.
pub(crate) struct Finished<T> {
    /// What the caller's reader made of stdout.
    pub(crate) stdout: Result<T, CommandError>,
    pub(crate) status: ExitStatus,
    pub(crate) stderr: Stderr,
}

/// The plugin's stderr: its length, and its first bytes when the instance
/// needs them. Never displayed by hushbox unless `debug_stderr` is set.
pub(crate) struct Stderr {
    pub(crate) len: usize,
    pub(crate) kept: Zeroizing<Vec<u8>>,
}

/// Runs the instance's program with `args`, writing `stdin` to it (or
/// giving it no stdin at all), and reading its stdout with `read_stdout`.
///
/// The whole run, reads included, is bounded by the instance's timeout;
/// when it expires, or when the reader gives up (a value too large), the
/// process group is killed, so helpers the plugin started die with it.
pub(crate) async fn run<T, F, Fut>(
    settings: &Settings,
    args: &[String],
    stdin: Option<Vec<u8>>,
    read_stdout: F,
) -> Result<Finished<T>, CommandError>
where
    F: FnOnce(ChildStdout) -> Fut,
    Fut: Future<Output = Result<T, CommandError>>,
{
    let program = settings.argv.program();
    let mut command = tokio::process::Command::new(program);
    command
        .args(args)
        .env_clear()
        .envs(settings.env.iter().map(|(name, value)| (name, value)))
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own group, so that a timeout kills what it started too.
        .process_group(0)
        .kill_on_drop(true);
    let mut child = command.spawn().map_err(|source| CommandError::Spawn {
        program: program.to_owned(),
        source,
    })?;
    // The group's id is the child's pid (`process_group(0)`).
    let group = child
        .id()
        .and_then(|id| i32::try_from(id).ok())
        .map(Pid::from_raw);
    let kill_group = move || {
        if let Some(group) = group {
            // ESRCH (all gone already) is what we want anyway.
            let _ = killpg(group, Signal::SIGKILL);
        }
    };
    // When this future is dropped half-way (hushbox was told to stop while
    // it fetched), the whole group goes, not only the child.
    let mut guard = GroupGuard(group);
    let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
        kill_group();
        return Err(CommandError::io(
            "open the plugin's pipes",
            std::io::Error::other("a pipe is missing"),
        ));
    };
    let input = child.stdin.take();
    let keep_stderr = if settings.debug_stderr || settings.not_found_pattern.is_some() {
        STDERR_KEPT
    } else {
        0
    };

    let work = async {
        let write = async {
            if let (Some(mut input), Some(bytes)) = (input, stdin) {
                // A plugin that exits without reading everything breaks the
                // pipe; its missing replies say so more precisely.
                let _ = input.write_all(&bytes).await;
                let _ = input.shutdown().await;
            }
        };
        let read = async {
            let result = read_stdout(stdout).await;
            if result.is_err() {
                kill_group();
            }
            result
        };
        let ((), stdout, stderr, status) =
            tokio::join!(write, read, drain_stderr(stderr, keep_stderr), child.wait());
        (stdout, stderr, status)
    };
    let outcome = tokio::time::timeout(settings.timeout, work).await;
    // Past this point the child has been waited for, or is killed below.
    guard.0 = None;
    match outcome {
        Ok((stdout, stderr, status)) => {
            let status = status.map_err(|error| CommandError::io("wait for the plugin", error))?;
            Ok(Finished {
                stdout,
                status,
                stderr,
            })
        }
        Err(_elapsed) => {
            kill_group();
            let _ = child.wait().await;
            Err(CommandError::TimedOut {
                program: program.to_owned(),
                timeout: settings.timeout,
            })
        }
    }
}

/// Kills a process group when dropped, unless disarmed (`.0 = None`).
struct GroupGuard(Option<Pid>);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if let Some(group) = self.0 {
            let _ = killpg(group, Signal::SIGKILL);
        }
    }
}

/// Reads stderr to its end, keeping at most `keep` bytes in a buffer sized
/// up front (so it never reallocates) and wiped on drop.
async fn drain_stderr(mut stderr: ChildStderr, keep: usize) -> Stderr {
    let mut chunk = Zeroizing::new([0u8; CHUNK]);
    let mut kept = Zeroizing::new(Vec::with_capacity(keep));
    let mut len = 0;
    loop {
        match stderr.read(&mut chunk[..]).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                len += n;
                let room = keep - kept.len();
                kept.extend_from_slice(&chunk[..n.min(room)]);
            }
        }
    }
    Stderr { len, kept }
}

/// Reads a one-shot plugin's stdout into a [`SecretValue`], refusing more
/// than `limit` bytes plus a trailing `\r\n` (which trimming may remove).
/// Bytes pass through one stack buffer, wiped when this returns.
pub(crate) async fn read_value(
    mut stdout: ChildStdout,
    limit: usize,
) -> Result<SecretValue, CommandError> {
    let ceiling = limit.saturating_add(2);
    let mut value = SecretValue::with_capacity(CHUNK.min(ceiling));
    let mut chunk = Zeroizing::new([0u8; CHUNK]);
    loop {
        let n = stdout
            .read(&mut chunk[..])
            .await
            .map_err(|error| CommandError::io("read the plugin's output", error))?;
        if n == 0 {
            return Ok(value);
        }
        if value.len() + n > ceiling {
            return Err(CommandError::TooLarge { limit });
        }
        value.push_slice(&chunk[..n]);
    }
}
