//! What can go wrong reading a secret file, and how it maps onto the core's
//! error kinds. Messages name the file, never its content: the only source
//! ever attached is the OS error, whose text is the OS's (`errno`) and cannot
//! carry file content.

use std::io;
use std::path::{Path, PathBuf};

use hushbox_core::{Error, ErrorKind, ReadError};

/// Why a read failed.
#[derive(Debug)]
pub(crate) enum FileError {
    /// The OS refused an operation on the file.
    Io {
        path: PathBuf,
        operation: &'static str,
        source: io::Error,
    },
    /// The path names a directory.
    IsDirectory { path: PathBuf },
    /// The path names a FIFO, a device or a socket.
    NotRegular { path: PathBuf, kind: &'static str },
    /// The file is larger than the limit.
    TooLarge { path: PathBuf, limit: usize },
    /// The blocking read did not complete (its task panicked or the runtime
    /// is shutting down).
    Interrupted { path: PathBuf },
    /// The file, or a directory above it, may be changed by a user hushbox
    /// does not trust ([`hushbox_core::Trust`]'s own message).
    Untrusted(Error),
}

impl FileError {
    /// `operation` failed on `path`: `"open"` or `"read"`.
    pub(crate) fn io(path: &Path, operation: &'static str, source: io::Error) -> Self {
        // Some systems refuse to open a directory instead of refusing to
        // read it; either way the user named a directory.
        if source.kind() == io::ErrorKind::IsADirectory {
            return FileError::IsDirectory {
                path: path.to_owned(),
            };
        }
        FileError::Io {
            path: path.to_owned(),
            operation,
            source,
        }
    }

    /// A failure of [`hushbox_core::Trust::open_file`]: a refusal as it is,
    /// an OS error as [`FileError::io`] maps it.
    pub(crate) fn open(path: &Path, error: Error) -> Self {
        let errno = std::error::Error::source(&error)
            .and_then(|source| source.downcast_ref::<io::Error>())
            .and_then(io::Error::raw_os_error);
        match (error.kind(), errno) {
            (ErrorKind::Config, _) | (_, None) => FileError::Untrusted(error),
            (_, Some(errno)) => FileError::io(path, "open", io::Error::from_raw_os_error(errno)),
        }
    }

    /// A failure of [`hushbox_core::SecretValue::read_bounded`].
    pub(crate) fn read(path: &Path, error: ReadError) -> Self {
        match error {
            ReadError::TooLarge { limit } => FileError::TooLarge {
                path: path.to_owned(),
                limit,
            },
            ReadError::Io(source) => FileError::io(path, "read", source),
        }
    }
}

impl From<FileError> for Error {
    fn from(error: FileError) -> Self {
        match error {
            FileError::Io {
                path,
                operation,
                source,
            } => {
                // ENOTDIR: a parent of the path is a file, so the path
                // cannot exist.
                if source.kind() == io::ErrorKind::NotADirectory {
                    return Error::new(
                        ErrorKind::NotFound,
                        format!(
                            "no such file: a parent of {} is not a directory",
                            path.display()
                        ),
                    )
                    .with_source(source);
                }
                Error::io_at(operation, &path, source)
            }
            FileError::IsDirectory { path } => Error::config(format!(
                "{} is a directory; a file reference must name a file",
                path.display()
            )),
            FileError::NotRegular { path, kind } => Error::config(format!(
                "{} is {kind}, not a regular file; a file reference must name a file at rest \
                 (reading a FIFO or a device may never end)",
                path.display()
            )),
            FileError::TooLarge { path, limit } => Error::new(
                ErrorKind::TooLarge,
                format!(
                    "{} is larger than the limit of {limit} bytes (raise `max_size` in the backend's settings if it really is a secret)",
                    path.display()
                ),
            ),
            FileError::Interrupted { path } => Error::new(
                ErrorKind::Io,
                format!("the read of {} did not complete", path.display()),
            ),
            FileError::Untrusted(error) => error,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(error: io::Error) -> Error {
        FileError::io(Path::new("/srv/key.pem"), "open", error).into()
    }

    #[test]
    fn os_errors_map_onto_core_kinds() {
        let cases = [
            (libc::ENOENT, ErrorKind::NotFound),
            (libc::ENOTDIR, ErrorKind::NotFound),
            (libc::EACCES, ErrorKind::PermissionDenied),
            (libc::EPERM, ErrorKind::PermissionDenied),
            (libc::EISDIR, ErrorKind::Config),
            (libc::EIO, ErrorKind::Io),
            (libc::ELOOP, ErrorKind::Io),
        ];
        for (errno, kind) in cases {
            let error = map(io::Error::from_raw_os_error(errno));
            assert_eq!(error.kind(), kind, "errno {errno}");
            assert!(error.to_string().contains("/srv/key.pem"), "{error}");
        }
    }

    #[test]
    fn permission_denied_says_what_to_check_and_keeps_the_os_error() {
        let error = map(io::Error::from_raw_os_error(libc::EACCES));
        assert!(
            error.to_string().starts_with(
                "cannot open /srv/key.pem: Permission denied (os error 13); check its owner and mode, and those of the directories above it"
            ),
            "{error}"
        );
        let source = std::error::Error::source(&error).expect("the OS error is kept");
        assert!(source.to_string().contains("os error 13"), "{source}");
    }

    #[test]
    fn too_large_names_the_path_and_the_limit() {
        let error: Error =
            FileError::read(Path::new("/srv/big"), ReadError::TooLarge { limit: 42 }).into();
        assert_eq!(error.kind(), ErrorKind::TooLarge);
        assert!(error.to_string().contains("/srv/big"));
        assert!(error.to_string().contains("42 bytes"));
    }
}
