//! What can go wrong talking to Vault / OpenBao, and how each failure maps
//! onto a [`hushbox_core::ErrorKind`].
//!
//! Every message is hushbox's own wording. A response body never enters an
//! error: Vault's error strings can echo request input, and a body on an
//! error path may be a secret document. No error of `reqwest`, `rustify` or
//! `vaultrs` is attached as a source either: `rustify`'s errors hold the
//! response body (`ServerResponseError { content }`, `ResponseParseError
//! { content }`) and their `Debug` prints it. Transport failures are
//! described from the innermost I/O or TLS error, whose text is the OS's or
//! rustls's own.

use std::error::Error as StdError;
use std::path::PathBuf;
use std::time::Duration;

use hushbox_core::{Error, ErrorKind};

/// A failure, before it is turned into a [`hushbox_core::Error`]. Variants
/// carry no subject: callers add the reference or the path.
#[derive(Debug)]
pub(crate) enum VaultError {
    /// HTTP 404 (or a KV version that was deleted or destroyed).
    NotFound { version: Option<u64> },
    /// HTTP 403 with a token the server accepts: a policy denies the path.
    Denied,
    /// The token is missing, invalid or expired, and logging in again did
    /// not help.
    Unauthenticated { why: String },
    /// A login was refused (wrong role, secret id, JWT…).
    LoginRefused { method: &'static str, status: u16 },
    /// Every attempt within the retry deadline failed with a retryable error.
    Unavailable {
        last: String,
        attempts: u32,
        elapsed: Duration,
    },
    /// The filled-in default address refused the connection.
    DefaultAddressRefused { address: String },
    /// TLS failed: an untrusted or invalid server certificate, or the
    /// server refused the connection (no client certificate, or one it
    /// does not trust).
    Tls {
        address: String,
        failure: TlsFailure,
    },
    /// Another 4xx status: the request itself is wrong.
    Rejected { status: u16 },
    /// The server answered with something that is not what was asked for.
    Malformed { what: &'static str },
    /// The document is larger than `max_size`.
    TooLarge { limit: usize },
    /// A credential or certificate file could not be read.
    File {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    /// A setting or a reference is wrong.
    Config(String),
}

impl From<VaultError> for Error {
    fn from(error: VaultError) -> Self {
        match error {
            VaultError::NotFound { version: None } => {
                Error::not_found("no secret at this path (HTTP 404)")
            }
            VaultError::NotFound {
                version: Some(version),
            } => Error::not_found(format!(
                "version {version} does not exist, or was deleted or destroyed (HTTP 404)"
            )),
            VaultError::Denied => Error::new(
                ErrorKind::PermissionDenied,
                "permission denied: the token is valid, but no policy of it allows this path (HTTP 403)",
            ),
            VaultError::Unauthenticated { why } => Error::new(
                ErrorKind::Unauthenticated,
                format!("unauthenticated: {why}"),
            ),
            VaultError::LoginRefused { method, status } => Error::new(
                ErrorKind::Unauthenticated,
                format!(
                    "unauthenticated: the {method} login was refused (HTTP {status}); check the role and the credential files"
                ),
            ),
            VaultError::Unavailable {
                last,
                attempts,
                elapsed,
            } => Error::new(
                ErrorKind::Unavailable,
                format!(
                    "unavailable: {last} (gave up after {attempts} attempt{} over {:.1} s)",
                    if attempts == 1 { "" } else { "s" },
                    elapsed.as_secs_f64()
                ),
            ),
            VaultError::DefaultAddressRefused { address } => Error::new(
                ErrorKind::Unavailable,
                format!(
                    "unavailable: cannot connect to {address}: connection refused; {}",
                    default_address_note(&address)
                ),
            ),
            VaultError::Tls { address, failure } => Error::config(format!(
                "TLS with {address} failed: {} ({})",
                failure.detail, failure.hint
            )),
            VaultError::Rejected { status: 405 } => Error::unsupported(
                "the server does not support this operation on this path (HTTP 405)",
            ),
            VaultError::Rejected { status } => Error::config(format!(
                "the server refused the request as invalid (HTTP {status}; its reason is logged as a warning); check the path and its ?parameters"
            )),
            VaultError::Malformed { what } => Error::malformed(format!(
                "the server's answer is not what was expected: {what}"
            )),
            VaultError::TooLarge { limit } => Error::new(
                ErrorKind::TooLarge,
                format!(
                    "the secret is larger than the limit of {limit} bytes (raise `max_size` if it really is a secret)"
                ),
            ),
            VaultError::File { what, path, source } => {
                let message = format!("cannot read the {what} {}", path.display());
                // A credential file the process cannot read is a setup
                // problem of the same family as a wrong credential.
                let kind = match source.kind() {
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied => {
                        if what.contains("certificate") {
                            ErrorKind::Config
                        } else {
                            ErrorKind::Unauthenticated
                        }
                    }
                    _ => ErrorKind::Io,
                };
                // `Error::io` words the OS's reason and the hint; the kind
                // is decided above.
                let worded = Error::io(message, source);
                Error::new(kind, worded.message().to_owned())
            }
            VaultError::Config(message) => Error::config(message),
        }
    }
}

/// What to say when the address that failed is the filled-in default.
pub(crate) fn default_address_note(address: &str) -> String {
    format!(
        "VAULT_ADDR (and BAO_ADDR) is unset and the manifest names no `address`, so \
         the vault CLI's default {address} was assumed: set VAULT_ADDR to your Vault or \
         OpenBao server's address (or `address` in [backends.NAME])"
    )
}

/// Whether the server refused the connection (nothing listens there).
pub(crate) fn is_connection_refused(error: &reqwest::Error) -> bool {
    let mut source: Option<&(dyn StdError + 'static)> = error.source();
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::ConnectionRefused
        {
            return true;
        }
        source = cause.source();
    }
    false
}

/// A one-line description of a transport failure, from the innermost error
/// that says something: an I/O error (`Connection refused (os error 111)`),
/// a rustls error (`invalid peer certificate: UnknownIssuer`) or a timeout.
/// None of these carries a body.
pub(crate) fn describe_transport(error: &reqwest::Error) -> String {
    if error.is_timeout() {
        return "the request timed out".to_owned();
    }
    let mut innermost: Option<String> = None;
    let mut source: Option<&(dyn StdError + 'static)> = error.source();
    while let Some(cause) = source {
        if let Some(tls) = rustls_error(cause) {
            innermost = Some(tls.to_string());
        } else if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            innermost = Some(match io.kind() {
                std::io::ErrorKind::ConnectionRefused => "connection refused".to_owned(),
                std::io::ErrorKind::ConnectionReset => "connection reset".to_owned(),
                std::io::ErrorKind::TimedOut => "connection timed out".to_owned(),
                _ => io.to_string(),
            });
        }
        source = cause.source();
    }
    match innermost {
        Some(text) if error.is_connect() => format!("cannot connect: {text}"),
        Some(text) => format!("the connection failed: {text}"),
        None if error.is_connect() => "cannot connect".to_owned(),
        None => "the connection failed".to_owned(),
    }
}

/// What went wrong with TLS, and what the user should look at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TlsFailure {
    /// rustls's description (`invalid peer certificate: UnknownIssuer`,
    /// `received fatal alert: CertificateRequired`).
    pub(crate) detail: String,
    pub(crate) hint: &'static str,
}

const SERVER_CERTIFICATE_HINT: &str =
    "set `ca_cert` or VAULT_CACERT to the CA that signed the server's certificate";
const CLIENT_CERTIFICATE_HINT: &str = "the server wants a client certificate it trusts: set \
     `client_cert` and `client_key_file`, or VAULT_CLIENT_CERT and VAULT_CLIENT_KEY";
const REFUSED_HINT: &str =
    "the server refused the TLS connection; check its listener's TLS settings";

/// rustls's text for an alert from the server. After a TLS 1.3 handshake
/// the server checks the client's certificate and answers the first
/// request with an alert; tokio-rustls passes that on as an `io::Error`
/// holding only this text.
const ALERT_PREFIX: &str = "received fatal alert: ";

/// The TLS failure behind a failed request, if that is what failed. These
/// are not retried: a certificate problem does not go away by itself.
pub(crate) fn tls_failure(error: &reqwest::Error) -> Option<TlsFailure> {
    let mut source: Option<&(dyn StdError + 'static)> = error.source();
    while let Some(cause) = source {
        if let Some(tls) = rustls_error(cause) {
            let hint = match tls {
                rustls::Error::AlertReceived(alert) => alert_hint(&format!("{alert:?}")),
                _ => SERVER_CERTIFICATE_HINT,
            };
            return Some(TlsFailure {
                detail: tls.to_string(),
                hint,
            });
        }
        if let Some(io) = cause.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::InvalidData
            && let Some(alert) = io.to_string().strip_prefix(ALERT_PREFIX)
        {
            return Some(TlsFailure {
                detail: format!("{ALERT_PREFIX}{alert}"),
                hint: alert_hint(alert),
            });
        }
        source = cause.source();
    }
    None
}

/// What to look at when the server sent `alert` (rustls's name for it).
fn alert_hint(alert: &str) -> &'static str {
    match alert {
        "CertificateRequired"
        | "BadCertificate"
        | "UnsupportedCertificate"
        | "CertificateRevoked"
        | "CertificateExpired"
        | "CertificateUnknown"
        | "UnknownCA"
        | "AccessDenied" => CLIENT_CERTIFICATE_HINT,
        _ => REFUSED_HINT,
    }
}

/// A rustls error, directly or inside `io::Error`s (tokio-rustls wraps it
/// so, hyper wraps that again, and `io::Error::source` skips the wrapped
/// error itself).
fn rustls_error<'a>(error: &'a (dyn StdError + 'static)) -> Option<&'a rustls::Error> {
    let mut current = error;
    loop {
        if let Some(tls) = current.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        let inner: &(dyn StdError + 'static) =
            current.downcast_ref::<std::io::Error>()?.get_ref()?;
        current = inner;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds() {
        let cases = [
            (VaultError::NotFound { version: None }, ErrorKind::NotFound),
            (
                VaultError::NotFound { version: Some(3) },
                ErrorKind::NotFound,
            ),
            (VaultError::Denied, ErrorKind::PermissionDenied),
            (
                VaultError::Unauthenticated { why: "x".into() },
                ErrorKind::Unauthenticated,
            ),
            (
                VaultError::LoginRefused {
                    method: "approle",
                    status: 400,
                },
                ErrorKind::Unauthenticated,
            ),
            (
                VaultError::Unavailable {
                    last: "HTTP 503".into(),
                    attempts: 4,
                    elapsed: Duration::from_millis(1500),
                },
                ErrorKind::Unavailable,
            ),
            (
                VaultError::Tls {
                    address: "https://v".into(),
                    failure: TlsFailure {
                        detail: "bad".into(),
                        hint: SERVER_CERTIFICATE_HINT,
                    },
                },
                ErrorKind::Config,
            ),
            (VaultError::Rejected { status: 400 }, ErrorKind::Config),
            (VaultError::Rejected { status: 405 }, ErrorKind::Unsupported),
            (
                VaultError::Malformed { what: "x" },
                ErrorKind::MalformedPayload,
            ),
            (VaultError::TooLarge { limit: 1 }, ErrorKind::TooLarge),
        ];
        for (error, kind) in cases {
            let text = format!("{error:?}");
            let error = Error::from(error);
            assert_eq!(error.kind(), kind, "{text}");
            assert!(error.is_retryable() == (kind == ErrorKind::Unavailable));
        }
    }

    #[test]
    fn unavailable_says_how_long_it_tried() {
        let error = Error::from(VaultError::Unavailable {
            last: "cannot connect: connection refused".into(),
            attempts: 5,
            elapsed: Duration::from_millis(2049),
        });
        assert_eq!(
            error.to_string(),
            "unavailable: cannot connect: connection refused (gave up after 5 attempts over 2.0 s)"
        );
    }
}
