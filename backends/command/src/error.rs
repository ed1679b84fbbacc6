//! What can go wrong running a plugin, and how it maps onto the core's error
//! kinds. Messages are hushbox's own words: the plugin's stdout and stderr
//! never enter them (CLIs print values in their errors too), and neither do
//! serde_json's messages, which quote their input. The only source ever
//! attached is an OS error, whose text cannot carry a value.

use std::io;
use std::time::Duration;

use hushbox_core::{Error, ErrorKind};

/// Why a run failed.
#[derive(Debug)]
pub(crate) enum CommandError {
    /// The program could not be started.
    Spawn { program: String, source: io::Error },
    /// The process ran longer than `timeout`; its process group was killed.
    TimedOut { program: String, timeout: Duration },
    /// The process was killed by a signal.
    Signalled { program: String, signal: i32 },
    /// The process exited with a code that means "no such secret".
    NotFound { program: String, reason: NotFoundBy },
    /// The process exited with another non-zero code.
    Exited {
        program: String,
        code: i32,
        stderr_len: usize,
    },
    /// The value is larger than the limit.
    TooLarge { limit: usize },
    /// Talking to the process failed.
    Io {
        operation: &'static str,
        source: io::Error,
    },
    /// The plugin's reply broke the JSON protocol.
    Protocol(String),
    /// The plugin answered a request with `{"error": …}`.
    Reported { kind: ErrorKind, code: String },
    /// The plugin ended before answering this request.
    Unanswered {
        program: String,
        answered: usize,
        asked: usize,
    },
}

/// What told hushbox that a secret does not exist.
#[derive(Debug)]
pub(crate) enum NotFoundBy {
    ExitCode(i32),
    Pattern(i32),
}

impl CommandError {
    pub(crate) fn io(operation: &'static str, source: io::Error) -> Self {
        CommandError::Io { operation, source }
    }
}

const STDERR_HINT: &str =
    "its stderr is never shown; set `debug_stderr = true` to log it at debug level";

impl From<CommandError> for Error {
    fn from(error: CommandError) -> Self {
        match error {
            CommandError::Spawn { program, source } => {
                let message = match source.kind() {
                    io::ErrorKind::NotFound => format!(
                        "cannot start `{program}`: not found (install it, or check `command` \
                         and the PATH hushbox runs with)"
                    ),
                    io::ErrorKind::PermissionDenied => {
                        format!("cannot start `{program}`: permission denied (is it executable?)")
                    }
                    _ => format!("cannot start `{program}`"),
                };
                let kind = match source.kind() {
                    io::ErrorKind::NotFound | io::ErrorKind::PermissionDenied => ErrorKind::Config,
                    _ => ErrorKind::Io,
                };
                Error::new(kind, message).with_source(source)
            }
            CommandError::TimedOut { program, timeout } => Error::new(
                ErrorKind::Unavailable,
                format!(
                    "`{program}` did not finish within {} ms and was killed, with every process \
                     it started (raise `timeout` if the store is slow)",
                    timeout.as_millis()
                ),
            ),
            CommandError::Signalled { program, signal } => Error::new(
                ErrorKind::Unavailable,
                format!("`{program}` was killed by signal {signal}; {STDERR_HINT}"),
            ),
            CommandError::NotFound { program, reason } => Error::not_found(match reason {
                NotFoundBy::ExitCode(code) => format!(
                    "no such secret (`{program}` exited with code {code}, which \
                     `not_found_exit_codes` maps to not found)"
                ),
                NotFoundBy::Pattern(code) => format!(
                    "no such secret (`{program}` exited with code {code} and its stderr matched \
                     `not_found_pattern`)"
                ),
            }),
            CommandError::Exited {
                program,
                code,
                stderr_len,
            } => Error::new(
                ErrorKind::Unavailable,
                format!(
                    "`{program}` exited with code {code} ({stderr_len} bytes on stderr; \
                     {STDERR_HINT})"
                ),
            ),
            CommandError::TooLarge { limit } => Error::new(
                ErrorKind::TooLarge,
                format!(
                    "the value is larger than the limit of {limit} bytes (raise `max_size` in \
                     the backend's settings if it really is a secret)"
                ),
            ),
            CommandError::Io { operation, source } => {
                Error::new(ErrorKind::Io, format!("cannot {operation}")).with_source(source)
            }
            CommandError::Protocol(why) => {
                Error::malformed(format!("the plugin broke the JSON protocol: {why}"))
            }
            CommandError::Reported { kind, code } => Error::new(
                kind,
                format!(
                    "the plugin reported `{code}` (its message is never shown; set \
                     `debug_stderr = true` to log it at debug level)"
                ),
            ),
            CommandError::Unanswered {
                program,
                answered,
                asked,
            } => Error::new(
                ErrorKind::Unavailable,
                format!("`{program}` ended after answering {answered} of {asked} requests"),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds() {
        let program = || "az".to_owned();
        let cases: Vec<(CommandError, ErrorKind, &str)> = vec![
            (
                CommandError::Spawn {
                    program: program(),
                    source: io::Error::from(io::ErrorKind::NotFound),
                },
                ErrorKind::Config,
                "not found (install it",
            ),
            (
                CommandError::TimedOut {
                    program: program(),
                    timeout: Duration::from_millis(1500),
                },
                ErrorKind::Unavailable,
                "within 1500 ms",
            ),
            (
                CommandError::Signalled {
                    program: program(),
                    signal: 11,
                },
                ErrorKind::Unavailable,
                "signal 11",
            ),
            (
                CommandError::NotFound {
                    program: program(),
                    reason: NotFoundBy::ExitCode(3),
                },
                ErrorKind::NotFound,
                "code 3",
            ),
            (
                CommandError::Exited {
                    program: program(),
                    code: 2,
                    stderr_len: 17,
                },
                ErrorKind::Unavailable,
                "17 bytes on stderr",
            ),
            (
                CommandError::TooLarge { limit: 9 },
                ErrorKind::TooLarge,
                "9 bytes",
            ),
        ];
        for (error, kind, says) in cases {
            let error = Error::from(error);
            assert_eq!(error.kind(), kind, "{error}");
            assert!(error.to_string().contains(says), "{error}");
        }
    }
}
