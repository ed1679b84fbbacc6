//! What can go wrong talking to Secrets Manager, and how it maps onto the
//! core's error kinds.
//!
//! Messages are hushbox's own words plus, at most, the service's error
//! *code* (an identifier such as `ResourceNotFoundException`). The service's
//! message text, the HTTP body and the SDK's error chain are never kept:
//! they are written by someone else, and the rule is that an error carries
//! nothing a value could hide in. The one exception is an operating-system
//! error code on a connection failure (`connection refused`), which is the
//! OS's text.

use std::error::Error as StdError;

use aws_credential_types::provider::error::CredentialsError;
use aws_sdk_secretsmanager::config::http::HttpResponse;
use aws_sdk_secretsmanager::error::{ProvideErrorMetadata, SdkError};
use hushbox_core::{Error, ErrorKind};

/// The standard AWS credential chain, in the order it is searched, for the
/// message of a run that found no credentials.
pub(crate) const CREDENTIAL_CHAIN: &str = "the standard AWS credential chain found none: \
     (1) the environment (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, with AWS_SESSION_TOKEN \
     for temporary keys), (2) the shared config and credentials files (~/.aws/config, \
     ~/.aws/credentials; profile from `profile` or AWS_PROFILE, including SSO and \
     credential_process), (3) web identity (AWS_WEB_IDENTITY_TOKEN_FILE with AWS_ROLE_ARN), \
     (4) container credentials (AWS_CONTAINER_CREDENTIALS_RELATIVE_URI or _FULL_URI), \
     (5) EC2 instance metadata (IMDSv2)";

/// Why a Secrets Manager call failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AwsError {
    /// The service answered with an error code (a whole call's, with its
    /// HTTP status, or one secret's inside a batch).
    Service { code: String, status: Option<u16> },
    /// The credential chain has no credentials.
    NoCredentials,
    /// A credential provider did not answer in time.
    CredentialsTimedOut,
    /// The credential configuration (profile files, role settings) is invalid.
    CredentialsMisconfigured,
    /// A credential provider failed (an expired SSO session, STS refusing a role).
    CredentialsFailed,
    /// The request, retries included, ran out of time.
    Timeout,
    /// The endpoint could not be reached.
    Unreachable {
        endpoint: String,
        detail: Option<String>,
    },
    /// The response could not be understood.
    BadResponse,
    /// The request could not be built (the SDK refused the settings).
    BadRequest,
    /// The version has neither `SecretString` nor `SecretBinary`.
    NoValue,
    /// A batch answered neither with a value nor with an error for a secret.
    MissingFromBatch,
}

impl AwsError {
    /// Classifies an SDK error, looking through its chain for a credential
    /// failure (which the SDK reports as a failure to dispatch the request).
    /// `endpoint` names where the request went, for connection failures.
    pub(crate) fn from_sdk<E>(error: &SdkError<E, HttpResponse>, endpoint: &str) -> Self
    where
        E: ProvideErrorMetadata + StdError + 'static,
    {
        if let Some(credentials) = find_in_chain::<CredentialsError>(error) {
            return match credentials {
                CredentialsError::CredentialsNotLoaded(_) => AwsError::NoCredentials,
                CredentialsError::ProviderTimedOut(_) => AwsError::CredentialsTimedOut,
                CredentialsError::InvalidConfiguration(_) => AwsError::CredentialsMisconfigured,
                _ => AwsError::CredentialsFailed,
            };
        }
        match error {
            SdkError::ServiceError(context) => {
                // Secrets Manager speaks JSON, and the SDK reads the code
                // from it. Emulators and proxies answer some errors in the
                // query protocol's XML (moto does for rejected keys), whose
                // `<Code>` the SDK does not see: read it from the body, as
                // an identifier only.
                let code = match context.err().code() {
                    Some(code) => code.to_owned(),
                    None => context
                        .raw()
                        .body()
                        .bytes()
                        .and_then(xml_error_code)
                        .unwrap_or_default(),
                };
                AwsError::Service {
                    code,
                    status: Some(context.raw().status().as_u16()),
                }
            }
            SdkError::TimeoutError(_) => AwsError::Timeout,
            SdkError::DispatchFailure(failure) if failure.is_timeout() => AwsError::Timeout,
            SdkError::DispatchFailure(_) => AwsError::Unreachable {
                endpoint: crate::config::redact_userinfo(endpoint),
                detail: connection_detail(error),
            },
            SdkError::ResponseError(_) => AwsError::BadResponse,
            _ => AwsError::BadRequest,
        }
    }

    /// The error of one secret inside a `BatchGetSecretValue` answer.
    pub(crate) fn from_batch_code(code: Option<&str>) -> Self {
        AwsError::Service {
            code: code.unwrap_or("").to_owned(),
            status: None,
        }
    }

    /// Whether the service refused the caller access: `AccessDeniedException`
    /// (Secrets Manager's JSON code), `AccessDenied` (the query protocol's,
    /// which IAM-enforcing emulators answer), or an unknown code with 403.
    pub(crate) fn is_access_denied(&self) -> bool {
        match self {
            AwsError::Service { code, status } => {
                matches!(code.as_str(), "AccessDeniedException" | "AccessDenied")
                    || (safe_code(code).is_none() && *status == Some(403))
            }
            _ => false,
        }
    }
}

/// The first error of type `T` in `error`'s source chain, itself included.
fn find_in_chain<'a, T: StdError + 'static>(error: &'a (dyn StdError + 'static)) -> Option<&'a T> {
    let mut current = Some(error);
    while let Some(error) = current {
        if let Some(found) = error.downcast_ref::<T>() {
            return Some(found);
        }
        current = error.source();
    }
    None
}

/// What the OS or the TLS library said about a failed connection. Only
/// those two are quoted: an OS error's text is the OS's (`errno`), and
/// rustls's errors are its own words about certificates and protocols.
fn connection_detail(error: &(dyn StdError + 'static)) -> Option<String> {
    if let Some(tls) = find_in_chain::<rustls::Error>(error) {
        return Some(format!("TLS: {tls}"));
    }
    let io = find_in_chain::<std::io::Error>(error)?;
    if io.raw_os_error().is_some() {
        return Some(io.to_string());
    }
    // An io::Error made by a library may carry its own text; only the kind
    // is kept.
    Some(io.kind().to_string())
}

/// The `<Code>` of an XML error body, when it is an identifier.
fn xml_error_code(body: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    let start = text.find("<Code>")? + "<Code>".len();
    let length = text[start..].find("</Code>")?;
    safe_code(&text[start..start + length]).map(str::to_owned)
}

/// An error code shown in a message: only identifier characters, so that
/// whatever a server puts in the field cannot smuggle text into hushbox's
/// messages.
fn safe_code(code: &str) -> Option<&str> {
    let ok = !code.is_empty()
        && code.len() <= 64
        && code
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-:#".contains(&b));
    ok.then_some(code)
}

impl From<AwsError> for Error {
    fn from(error: AwsError) -> Self {
        let (kind, message) = match error {
            AwsError::Service { code, status } => service_error(&code, status),
            AwsError::NoCredentials => (
                ErrorKind::Unauthenticated,
                format!("no AWS credentials: {CREDENTIAL_CHAIN}"),
            ),
            AwsError::CredentialsTimedOut => (
                ErrorKind::Unavailable,
                "a provider of the AWS credential chain did not answer in time".to_owned(),
            ),
            AwsError::CredentialsMisconfigured => (
                ErrorKind::Config,
                "the AWS credential configuration is invalid (check the profile in ~/.aws/config \
                 and ~/.aws/credentials, AWS_PROFILE, and the AWS_* variables)"
                    .to_owned(),
            ),
            AwsError::CredentialsFailed => (
                ErrorKind::Unauthenticated,
                "a provider of the AWS credential chain failed to supply credentials (an expired \
                 SSO session needs `aws sso login`; an assumed role may be refused by STS)"
                    .to_owned(),
            ),
            AwsError::Timeout => (
                ErrorKind::Unavailable,
                "Secrets Manager did not answer in time".to_owned(),
            ),
            AwsError::Unreachable { endpoint, detail } => (
                ErrorKind::Unavailable,
                match detail {
                    Some(detail) => format!("cannot reach Secrets Manager at {endpoint} ({detail})"),
                    None => format!("cannot reach Secrets Manager at {endpoint}"),
                },
            ),
            AwsError::BadResponse => (
                ErrorKind::MalformedPayload,
                "Secrets Manager's response could not be understood (is the endpoint really Secrets Manager?)"
                    .to_owned(),
            ),
            AwsError::BadRequest => (
                ErrorKind::Config,
                "the request to Secrets Manager could not be built; check the region and the endpoint"
                    .to_owned(),
            ),
            AwsError::NoValue => (
                ErrorKind::MalformedPayload,
                "the secret version has neither a string nor a binary value".to_owned(),
            ),
            AwsError::MissingFromBatch => (
                ErrorKind::MalformedPayload,
                "BatchGetSecretValue answered neither a value nor an error for the secret".to_owned(),
            ),
        };
        Error::new(kind, message)
    }
}

/// The kind and message for a service error code; for a code hushbox does
/// not know, the HTTP status decides the kind.
fn service_error(code: &str, status: Option<u16>) -> (ErrorKind, String) {
    let shown = safe_code(code).unwrap_or("an unrecognised error code");
    let (kind, what) = match code {
        "ResourceNotFoundException" => (
            ErrorKind::NotFound,
            "no such secret, or no version of it with that stage or id",
        ),
        "AccessDeniedException" | "AccessDenied" => (
            ErrorKind::PermissionDenied,
            "access denied: the credentials may not read this secret (it needs \
             secretsmanager:GetSecretValue, and kms:Decrypt for a customer-managed key)",
        ),
        "DecryptionFailure" => (
            ErrorKind::PermissionDenied,
            "Secrets Manager could not decrypt the secret with its KMS key (check kms:Decrypt on the key)",
        ),
        "InvalidRequestException" => (
            // Reading a secret that is scheduled for deletion is the usual cause.
            ErrorKind::NotFound,
            "Secrets Manager refused to read the secret in its current state (a secret scheduled \
             for deletion is refused this way)",
        ),
        "InvalidParameterException" | "ValidationException" => (
            ErrorKind::Config,
            "Secrets Manager refused a parameter (check the secret name or ARN, version_id and version_stage)",
        ),
        "UnrecognizedClientException"
        | "InvalidClientTokenId"
        | "InvalidSignatureException"
        | "SignatureDoesNotMatch"
        | "IncompleteSignature"
        | "MissingAuthenticationToken"
        | "ExpiredTokenException"
        | "ExpiredToken"
        | "RequestExpired" => (
            ErrorKind::Unauthenticated,
            "the AWS credentials were rejected: expired, invalid, or for another partition (a \
             skewed clock is refused the same way)",
        ),
        "ThrottlingException"
        | "TooManyRequestsException"
        | "RequestLimitExceeded"
        | "InternalServiceError"
        | "InternalFailure"
        | "ServiceUnavailable" => (
            ErrorKind::Unavailable,
            "Secrets Manager is throttling or failing requests, and the retries ran out",
        ),
        _ => (
            match status {
                Some(401) => ErrorKind::Unauthenticated,
                Some(403) => ErrorKind::PermissionDenied,
                Some(404) => ErrorKind::NotFound,
                _ => ErrorKind::Unavailable,
            },
            "Secrets Manager answered with an error hushbox does not know",
        ),
    };
    (kind, format!("{what} ({shown})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(code: &str) -> ErrorKind {
        Error::from(AwsError::Service {
            code: code.into(),
            status: Some(400),
        })
        .kind()
    }

    #[test]
    fn service_codes_map_onto_core_kinds() {
        assert_eq!(kind("ResourceNotFoundException"), ErrorKind::NotFound);
        assert_eq!(kind("AccessDeniedException"), ErrorKind::PermissionDenied);
        assert_eq!(kind("AccessDenied"), ErrorKind::PermissionDenied);
        assert_eq!(kind("DecryptionFailure"), ErrorKind::PermissionDenied);
        assert_eq!(kind("InvalidRequestException"), ErrorKind::NotFound);
        assert_eq!(kind("InvalidParameterException"), ErrorKind::Config);
        for code in [
            "UnrecognizedClientException",
            "InvalidSignatureException",
            "ExpiredTokenException",
        ] {
            assert_eq!(kind(code), ErrorKind::Unauthenticated, "{code}");
        }
        assert_eq!(kind("ThrottlingException"), ErrorKind::Unavailable);
        assert_eq!(kind("InternalServiceError"), ErrorKind::Unavailable);
        assert_eq!(kind("SomethingNew"), ErrorKind::Unavailable);
    }

    #[test]
    fn messages_name_the_code_but_never_strange_text() {
        let error = Error::from(AwsError::Service {
            code: "AccessDeniedException".into(),
            status: Some(400),
        });
        assert!(
            error.to_string().ends_with("(AccessDeniedException)"),
            "{error}"
        );
        let error = Error::from(AwsError::Service {
            code: "Bad code with spaces hunter2".into(),
            status: Some(500),
        });
        assert!(!error.to_string().contains("hunter2"), "{error}");
        assert!(
            error.to_string().contains("an unrecognised error code"),
            "{error}"
        );
        let error = Error::from(AwsError::from_batch_code(None));
        assert!(
            error.to_string().contains("an unrecognised error code"),
            "{error}"
        );
    }

    #[test]
    fn access_denied_is_recognised_in_both_protocols() {
        let denied = |code: &str, status| AwsError::Service {
            code: code.into(),
            status,
        };
        assert!(denied("AccessDeniedException", Some(400)).is_access_denied());
        assert!(denied("AccessDenied", Some(403)).is_access_denied());
        assert!(denied("", Some(403)).is_access_denied());
        assert!(!denied("ResourceNotFoundException", Some(400)).is_access_denied());
        assert!(!denied("InvalidClientTokenId", Some(403)).is_access_denied());
        assert!(!AwsError::Timeout.is_access_denied());
    }

    #[test]
    fn unknown_codes_fall_back_on_the_http_status() {
        let by_status = |status| {
            Error::from(AwsError::Service {
                code: String::new(),
                status: Some(status),
            })
            .kind()
        };
        assert_eq!(by_status(401), ErrorKind::Unauthenticated);
        assert_eq!(by_status(403), ErrorKind::PermissionDenied);
        assert_eq!(by_status(404), ErrorKind::NotFound);
        assert_eq!(by_status(503), ErrorKind::Unavailable);
    }

    #[test]
    fn xml_error_codes_are_read_as_identifiers_only() {
        let body = b"<?xml version=\"1.0\"?><ErrorResponse><Errors><Error><Code>InvalidClientTokenId</Code>\
                     <Message>The security token included in the request is invalid.</Message></Error></Errors></ErrorResponse>";
        assert_eq!(
            xml_error_code(body).as_deref(),
            Some("InvalidClientTokenId")
        );
        assert_eq!(xml_error_code(b"<Code>not an identifier</Code>"), None);
        assert_eq!(xml_error_code(b"{\"message\": \"json\"}"), None);
    }

    #[test]
    fn no_credentials_names_every_link_of_the_chain() {
        let error = Error::from(AwsError::NoCredentials);
        assert_eq!(error.kind(), ErrorKind::Unauthenticated);
        let message = error.to_string();
        for link in [
            "AWS_ACCESS_KEY_ID",
            "~/.aws/credentials",
            "AWS_PROFILE",
            "SSO",
            "AWS_WEB_IDENTITY_TOKEN_FILE",
            "AWS_CONTAINER_CREDENTIALS",
            "IMDSv2",
        ] {
            assert!(message.contains(link), "{link}: {message}");
        }
    }

    #[test]
    fn connection_failures_quote_os_errors_only() {
        let refused = std::io::Error::from_raw_os_error(111);
        assert_eq!(
            connection_detail(&refused).as_deref(),
            Some("Connection refused (os error 111)")
        );
        let custom = std::io::Error::other("payload hunter2");
        assert_eq!(connection_detail(&custom).as_deref(), Some("other error"));
    }
}
