//! Building the pooled client, and logging in.
//!
//! Credentials are read from their files at login time (not when the
//! instance is built), into buffers that are wiped when dropped. A token
//! from a login is moved out of `vaultrs`'s answer into a wiped buffer
//! without being copied.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tracing::{debug, warn};
use zeroize::Zeroizing;

use crate::client::{Client, Http};
use crate::config::{AuthSettings, TokenSource, VaultSettings};
use crate::error::VaultError;

/// The largest credential file read (a JWT can be a few KiB).
const CREDENTIAL_LIMIT: u64 = 64 * 1024;

/// A token from a login, and its lifetime.
pub(crate) struct Login {
    pub(crate) token: Zeroizing<String>,
    /// `None` when unknown (a static token).
    pub(crate) ttl: Option<Duration>,
    pub(crate) renewable: bool,
}

/// Installs ring as rustls's process-wide crypto provider, once. Idempotent:
/// when a provider is already installed (by hushbox's `main` or by another
/// backend), that one stays.
pub(crate) fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Builds the pooled client from the settings, through `vaultrs` (which
/// configures reqwest's rustls for CA files, a client identity and
/// verification), reading the CA and client certificate files.
pub(crate) fn build_http(settings: &VaultSettings) -> Result<Http, VaultError> {
    install_crypto_provider();
    let mut ca_certs: Vec<String> = Vec::new();
    for path in &settings.ca_certs {
        ca_certs.push(readable_file(path, "CA certificate file")?);
    }
    if let Some(dir) = &settings.ca_path {
        let entries = std::fs::read_dir(dir).map_err(|source| VaultError::File {
            what: "CA certificate directory",
            path: dir.clone(),
            source,
        })?;
        let mut files: Vec<_> = entries
            .filter_map(|entry| entry.ok().map(|entry| entry.path()))
            .filter(|path| path.is_file())
            .collect();
        files.sort();
        for path in files {
            ca_certs.push(readable_file(&path, "CA certificate file")?);
        }
    }
    let identity = match &settings.client_identity {
        None => None,
        Some((cert, key)) => {
            // reqwest's rustls identity takes certificate and key as one PEM
            // buffer; it is built in a wiped buffer sized for both.
            let cert = read_credential(cert, "client certificate file")?;
            let key = read_credential(key, "client key file")?;
            let mut pem = Zeroizing::new(Vec::with_capacity(cert.len() + key.len() + 1));
            pem.extend_from_slice(cert.as_bytes());
            pem.push(b'\n');
            pem.extend_from_slice(key.as_bytes());
            Some(reqwest::Identity::from_pem(&pem).map_err(|_| {
                VaultError::Config(
                    "the client certificate or key is not a PEM certificate and private key".into(),
                )
            })?)
        }
    };
    if settings.skip_verify {
        warn!(
            address = %settings.address,
            "TLS VERIFICATION IS DISABLED (tls_skip_verify / VAULT_SKIP_VERIFY): any server can pose as Vault and receive the token"
        );
    }
    let mut builder = vaultrs::client::VaultClientSettingsBuilder::default();
    builder
        .address(&settings.address)
        .ca_certs(ca_certs)
        .identity(identity)
        .timeout(Some(settings.timeout))
        .token("")
        .verify(!settings.skip_verify)
        .namespace(settings.namespace.clone());
    let vault_settings = builder.build().map_err(|_| {
        VaultError::Config(format!("the address `{}` is not usable", settings.address))
    })?;
    let client =
        tracing::subscriber::with_default(tracing::subscriber::NoSubscriber::default(), || {
            vaultrs::client::VaultClient::new(vault_settings)
        })
        .map_err(|error| match error {
            vaultrs::error::ClientError::FileReadError { path, source } => VaultError::File {
                what: "CA certificate file",
                path: path.into(),
                source,
            },
            vaultrs::error::ClientError::ParseCertificateError { path, .. } => {
                VaultError::Config(format!("{path} holds no PEM certificate"))
            }
            _ => VaultError::Config(
                "the HTTP client could not be built with these TLS settings".into(),
            ),
        })?;
    Ok(Http {
        reqwest: client.http.http.clone(),
        vaultrs: Arc::new(client),
    })
}

/// Checks that a certificate file is there and readable, and returns its path
/// as `vaultrs` takes it.
fn readable_file(path: &Path, what: &'static str) -> Result<String, VaultError> {
    std::fs::metadata(path).map_err(|source| VaultError::File {
        what,
        path: path.to_owned(),
        source,
    })?;
    path.to_str()
        .map(str::to_owned)
        .ok_or_else(|| VaultError::Config(format!("the path {} is not UTF-8", path.display())))
}

/// Reads a small credential file into a wiped buffer sized from its length,
/// trimming surrounding whitespace (a trailing newline, mostly) in place.
pub(crate) fn read_credential(
    path: &Path,
    what: &'static str,
) -> Result<Zeroizing<String>, VaultError> {
    use std::io::Read;
    let file_error = |source| VaultError::File {
        what,
        path: path.to_owned(),
        source,
    };
    let file = std::fs::File::open(path).map_err(file_error)?;
    let length = file.metadata().map_err(file_error)?.len();
    if length > CREDENTIAL_LIMIT {
        return Err(VaultError::Config(format!(
            "the {what} {} is larger than {CREDENTIAL_LIMIT} bytes",
            path.display()
        )));
    }
    let mut bytes = Zeroizing::new(Vec::with_capacity(length as usize + 1));
    file.take(CREDENTIAL_LIMIT)
        .read_to_end(&mut bytes)
        .map_err(file_error)?;
    let start = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |end| end + 1);
    bytes.truncate(end);
    bytes.drain(..start);
    if bytes.is_empty() {
        return Err(VaultError::Unauthenticated {
            why: format!("the {what} {} is empty", path.display()),
        });
    }
    // Moving the bytes into a String keeps the same buffer.
    let bytes = std::mem::take(&mut *bytes);
    match String::from_utf8(bytes) {
        Ok(text) => Ok(Zeroizing::new(text)),
        Err(error) => {
            // Wipe the rejected bytes before they are dropped.
            drop(Zeroizing::new(error.into_bytes()));
            Err(VaultError::Config(format!(
                "the {what} {} is not UTF-8 text",
                path.display()
            )))
        }
    }
}

/// Logs in with the configured method.
pub(crate) async fn login(client: &Client) -> Result<Login, VaultError> {
    match &client.settings.auth {
        AuthSettings::Token(source) => static_token(source),
        AuthSettings::Approle {
            mount,
            role_id_file,
            secret_id_file,
            remove_secret_id_file,
        } => {
            let role_id = read_credential(role_id_file, "AppRole role id file")?;
            let secret_id = match secret_id_file {
                None => Zeroizing::new(String::new()),
                Some(path) => match read_credential(path, "AppRole secret id file") {
                    Ok(secret_id) => secret_id,
                    // Removed after an earlier login: use the copy kept in
                    // memory, as Vault Agent does.
                    Err(VaultError::File { source, .. })
                        if *remove_secret_id_file
                            && source.kind() == std::io::ErrorKind::NotFound
                            && cached_secret_id(client).is_some() =>
                    {
                        cached_secret_id(client).expect("checked above")
                    }
                    Err(error) => return Err(error),
                },
            };
            let http = client.http()?;
            let info = client
                .retry_vaultrs("approle", || {
                    vaultrs::auth::approle::login(&*http.vaultrs, mount, &role_id, &secret_id)
                })
                .await?;
            if *remove_secret_id_file && let Some(path) = secret_id_file {
                match std::fs::remove_file(path) {
                    Ok(()) => debug!(path = %path.display(), "removed the AppRole secret id file"),
                    Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                    Err(error) => warn!(
                        path = %path.display(),
                        %error,
                        "could not remove the AppRole secret id file"
                    ),
                }
                *client
                    .cached_secret_id
                    .lock()
                    .unwrap_or_else(|e| e.into_inner()) = Some(secret_id);
            }
            Ok(from_auth_info(info))
        }
        AuthSettings::Kubernetes {
            mount,
            role,
            token_file,
        } => {
            let jwt = read_credential(token_file, "Kubernetes service-account token file")?;
            let http = client.http()?;
            let info = client
                .retry_vaultrs("kubernetes", || {
                    vaultrs::auth::kubernetes::login(&*http.vaultrs, mount, role, &jwt)
                })
                .await?;
            Ok(from_auth_info(info))
        }
        AuthSettings::Jwt {
            mount,
            role,
            token_file,
        } => {
            let jwt = read_credential(token_file, "JWT file")?;
            let http = client.http()?;
            let info = client
                .retry_vaultrs("jwt", || {
                    vaultrs::auth::oidc::login(&*http.vaultrs, mount, &jwt, role.clone())
                })
                .await?;
            Ok(from_auth_info(info))
        }
    }
}

fn cached_secret_id(client: &Client) -> Option<Zeroizing<String>> {
    client
        .cached_secret_id
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
}

fn from_auth_info(info: vaultrs::api::AuthInfo) -> Login {
    Login {
        // Moved, not copied: the String's buffer is the one wiped on drop.
        token: Zeroizing::new(info.client_token),
        ttl: Some(Duration::from_secs(info.lease_duration)),
        renewable: info.renewable,
    }
}

/// A static token: read from its source again at every "login", so a token
/// file that a Vault Agent sink rewrites is picked up after a 403.
fn static_token(source: &TokenSource) -> Result<Login, VaultError> {
    let token = match source {
        TokenSource::File(path) => read_credential(path, "token file")?,
        TokenSource::Env { token, .. } => token.clone(),
        TokenSource::HomeFile(path) => match read_credential(path, "token file") {
            Ok(token) => token,
            Err(VaultError::File { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                return Err(no_token());
            }
            Err(error) => return Err(error),
        },
        TokenSource::Missing => return Err(no_token()),
    };
    Ok(Login {
        token,
        ttl: None,
        renewable: false,
    })
}

fn no_token() -> VaultError {
    VaultError::Unauthenticated {
        why: "no Vault token: set VAULT_TOKEN, log in with `vault login` / `bao login` (~/.vault-token), or configure `auth` in the manifest".into(),
    }
}
