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

/// Builds the pooled client from the settings, reading the CA and client
/// certificate files.
///
/// As with the `vault` CLI, a CA file or directory *replaces* the system's
/// trust anchors instead of adding to them (and spares loading them); without
/// one, the platform's roots are used. `vaultrs`'s own constructor would
/// merge the two, so the `reqwest` client is built here and handed to a
/// `vaultrs` client for the logins.
pub(crate) fn build_http(settings: &VaultSettings) -> Result<Http, VaultError> {
    install_crypto_provider();
    let mut ca_files = settings.ca_certs.clone();
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
        ca_files.extend(files);
    }
    let mut roots = Vec::new();
    for path in &ca_files {
        let pem = std::fs::read(path).map_err(|source| VaultError::File {
            what: "CA certificate file",
            path: path.clone(),
            source,
        })?;
        let certificates = reqwest::Certificate::from_pem_bundle(&pem)
            .ok()
            .filter(|certificates| !certificates.is_empty())
            .ok_or_else(|| {
                VaultError::Config(format!("{} holds no PEM certificate", path.display()))
            })?;
        roots.extend(certificates);
    }

    let mut builder = reqwest::ClientBuilder::new()
        .tls_backend_rustls()
        .timeout(settings.timeout);
    if settings.address.starts_with("http://") {
        // No TLS at all: load no trust anchors (reqwest#2988, as vaultrs does).
        builder = builder.tls_certs_only(Vec::new());
    } else if !roots.is_empty() {
        builder = builder.tls_certs_only(roots);
    }
    if settings.skip_verify {
        warn!(
            address = %settings.address,
            "TLS VERIFICATION IS DISABLED (tls_skip_verify / VAULT_SKIP_VERIFY): any server can pose as Vault and receive the token"
        );
        builder = builder.tls_danger_accept_invalid_certs(true);
    }
    if let Some((cert, key)) = &settings.client_identity {
        // reqwest's rustls identity takes certificate and key as one PEM
        // buffer; it is built in a wiped buffer sized for both.
        let cert = read_credential(cert, "client certificate file")?;
        let key = read_credential(key, "client key file")?;
        let mut pem = Zeroizing::new(Vec::with_capacity(cert.len() + key.len() + 1));
        pem.extend_from_slice(cert.as_bytes());
        pem.push(b'\n');
        pem.extend_from_slice(key.as_bytes());
        let identity = reqwest::Identity::from_pem(&pem).map_err(|_| {
            VaultError::Config(
                "the client certificate or key is not a PEM certificate and private key".into(),
            )
        })?;
        builder = builder.identity(identity);
    }
    let reqwest = builder.build().map_err(|_| {
        VaultError::Config("the HTTP client could not be built with these TLS settings".into())
    })?;

    let mut vault_settings = vaultrs::client::VaultClientSettingsBuilder::default();
    vault_settings
        .address(&settings.address)
        .ca_certs(Vec::new())
        .identity(None)
        .timeout(Some(settings.timeout))
        .token("")
        .verify(!settings.skip_verify)
        .namespace(settings.namespace.clone());
    let vault_settings = vault_settings.build().map_err(|_| {
        VaultError::Config(format!("the address `{}` is not usable", settings.address))
    })?;
    let vaultrs = vaultrs::client::VaultClient {
        http: rustify::clients::reqwest::Client::new(&settings.address, reqwest.clone()),
        middle: vaultrs::api::EndpointMiddleware {
            token: String::new(),
            version: "v1".to_owned(),
            wrap: None,
            namespace: settings.namespace.clone(),
        },
        settings: vault_settings,
    };
    Ok(Http {
        reqwest,
        vaultrs: Arc::new(vaultrs),
    })
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
