//! The error every backend returns: a kind, the reference or path it concerns,
//! and a message that never carries a secret value or a server's body.

use std::fmt;

/// What went wrong, in terms a caller can act on.
///
/// Each kind maps onto one exit code of the `hushbox` binary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The path, version or field does not exist.
    NotFound,
    /// The caller is known but not allowed (a policy, a file mode, an age
    /// identity that is not among a file's recipients).
    PermissionDenied,
    /// The caller could not prove who it is (no, expired or wrong credentials).
    Unauthenticated,
    /// The backend could not be reached or asked us to come back later.
    /// Retrying may help.
    Unavailable,
    /// The manifest, a reference or a backend's settings are wrong.
    Config,
    /// The backend answered with something that is not what was asked for:
    /// undecodable, tampered with, not JSON where a field was asked for.
    MalformedPayload,
    /// The value is larger than hushbox accepts.
    TooLarge,
    /// The backend cannot do this (for example, writing to a read-only source).
    Unsupported,
    /// A local file-system operation failed.
    Io,
}

impl ErrorKind {
    /// A short lower-case label, as used in messages.
    pub fn label(self) -> &'static str {
        match self {
            ErrorKind::NotFound => "not found",
            ErrorKind::PermissionDenied => "permission denied",
            ErrorKind::Unauthenticated => "unauthenticated",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Config => "configuration error",
            ErrorKind::MalformedPayload => "malformed payload",
            ErrorKind::TooLarge => "too large",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::Io => "I/O error",
        }
    }
}

/// Boxed source errors. Whoever attaches a source must know that its display
/// carries no value: `std::io::Error` does not; serde and HTTP errors may, and
/// are never attached.
pub type Source = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A hushbox error: a kind, a subject (a reference, a path, a backend name)
/// and a message written by hushbox itself.
#[derive(Debug)]
pub struct Error {
    kind: ErrorKind,
    subject: Option<String>,
    message: String,
    source: Option<Source>,
}

/// The result type of hushbox's backends.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A new error. `message` must be hushbox's own words: never a value, never
    /// text copied from a payload or a server response.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            subject: None,
            message: message.into(),
            source: None,
        }
    }

    /// Shorthand for [`ErrorKind::NotFound`].
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }

    /// Shorthand for [`ErrorKind::Config`].
    pub fn config(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Config, message)
    }

    /// Shorthand for [`ErrorKind::MalformedPayload`].
    pub fn malformed(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::MalformedPayload, message)
    }

    /// Shorthand for [`ErrorKind::Unsupported`].
    pub fn unsupported(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unsupported, message)
    }

    /// An I/O error: `context` says what hushbox tried and on what
    /// (`cannot open the manifest /p/hushbox.toml`); the message goes on with
    /// the OS's reason (`Permission denied (os error 13)`) and, for a
    /// refusal, what to check. The OS error stays attached as the source.
    /// The kind follows the OS error: a missing file is
    /// [`ErrorKind::NotFound`], a refused one [`ErrorKind::PermissionDenied`].
    ///
    /// Every error built from an `io::Error` goes through here (or
    /// [`Error::io_at`]), so none can lose the reason: "Permission denied"
    /// and "No such file or directory" need different fixes.
    pub fn io(context: impl Into<String>, error: std::io::Error) -> Self {
        let kind = match error.kind() {
            std::io::ErrorKind::NotFound => ErrorKind::NotFound,
            std::io::ErrorKind::PermissionDenied => ErrorKind::PermissionDenied,
            _ => ErrorKind::Io,
        };
        // The OS's text is `strerror`'s, which carries no file content.
        let mut message = format!("{}: {error}", context.into());
        if error.raw_os_error() == Some(libc::EACCES) {
            message.push_str(&format!(
                "; check its owner and mode, and those of the directories above it \
                 (hushbox runs as uid {})",
                nix::unistd::geteuid()
            ));
        }
        Self::new(kind, message).with_source(error)
    }

    /// [`Error::io`] for a failed `action` on `path`:
    /// `cannot ACTION PATH: REASON`, with `path` as the subject of nothing
    /// else (callers add a reference as the subject when there is one).
    pub fn io_at(action: &str, path: &std::path::Path, error: std::io::Error) -> Self {
        Self::io(format!("cannot {action} {}", path.display()), error)
    }

    /// Adds what the user can do about it, after the message.
    pub fn with_hint(mut self, hint: impl fmt::Display) -> Self {
        self.message = format!("{}; {hint}", self.message);
        self
    }

    /// Names what the error is about: a reference's display or a path.
    /// An existing subject is kept (the innermost subject is the most precise).
    pub fn with_subject(mut self, subject: impl fmt::Display) -> Self {
        if self.subject.is_none() {
            self.subject = Some(subject.to_string());
        }
        self
    }

    /// Attaches a cause. Only for errors whose text cannot carry a value.
    pub fn with_source(mut self, source: impl Into<Source>) -> Self {
        self.source = Some(source.into());
        self
    }

    /// The kind of failure.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// What the error is about, if known.
    pub fn subject(&self) -> Option<&str> {
        self.subject.as_deref()
    }

    /// The message, without the subject.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Whether trying again later may succeed.
    pub fn is_retryable(&self) -> bool {
        self.kind == ErrorKind::Unavailable
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.subject {
            Some(subject) => write!(f, "{subject}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|source| source as &(dyn std::error::Error + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_subject_then_message() {
        let error = Error::not_found("no such secret").with_subject("age://prod/db");
        assert_eq!(error.to_string(), "age://prod/db: no such secret");
        assert_eq!(error.kind(), ErrorKind::NotFound);
    }

    #[test]
    fn innermost_subject_wins() {
        let error = Error::config("bad")
            .with_subject("inner")
            .with_subject("outer");
        assert_eq!(error.subject(), Some("inner"));
    }

    #[test]
    fn io_kind_follows_the_os_error() {
        let missing = std::io::Error::from(std::io::ErrorKind::NotFound);
        assert_eq!(Error::io("open", missing).kind(), ErrorKind::NotFound);
        let denied = std::io::Error::from(std::io::ErrorKind::PermissionDenied);
        assert_eq!(
            Error::io("open", denied).kind(),
            ErrorKind::PermissionDenied
        );
    }

    #[test]
    fn io_errors_carry_the_os_reason_and_for_a_refusal_what_to_check() {
        let missing = std::io::Error::from_raw_os_error(libc::ENOENT);
        let error = Error::io_at("read", std::path::Path::new("/x/y"), missing);
        assert!(
            error
                .message()
                .starts_with("cannot read /x/y: No such file or directory"),
            "{error}"
        );
        let denied = std::io::Error::from_raw_os_error(libc::EACCES);
        let error = Error::io_at("open", std::path::Path::new("/x/y"), denied);
        assert!(
            error.message().starts_with(
                "cannot open /x/y: Permission denied (os error 13); check its owner and mode"
            ),
            "{error}"
        );
        assert!(std::error::Error::source(&error).is_some());
    }
}
