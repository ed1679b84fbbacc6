//! Settings of a Vault / OpenBao instance: as written in `[backends.NAME]`
//! ([`VaultConfig`]), and resolved against the environment
//! ([`VaultSettings`]).
//!
//! Every setting that the `vault` / `bao` CLI reads from a standard variable
//! falls back to that variable (`VAULT_*` first, then OpenBao's `BAO_*`), so
//! a default instance configured from the environment alone behaves like
//! `vault kv get`. The manifest wins over the environment.
//!
//! Resolving does no I/O: files are named here and read on first use.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use hushbox_core::{BackendContext, DEFAULT_CONCURRENCY, DEFAULT_SIZE_LIMIT, Error, Result};
use serde::Deserialize;

/// The address when neither the manifest nor `VAULT_ADDR` names one: the
/// `vault` CLI's own default.
pub const DEFAULT_ADDRESS: &str = "https://127.0.0.1:8200";
/// How long one HTTP request may take unless `timeout` says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a request is retried (429, 5xx, connection failures) before
/// hushbox gives up with "unavailable", unless `retry_deadline` says otherwise.
pub const DEFAULT_RETRY_DEADLINE: Duration = Duration::from_secs(15);
/// Where Kubernetes mounts a pod's service-account token.
pub const DEFAULT_KUBERNETES_TOKEN_FILE: &str =
    "/var/run/secrets/kubernetes.io/serviceaccount/token";

/// The settings of `[backends.NAME] kind = "vault"`, as written. Every key is
/// optional:
///
/// ```toml
/// [backends.vault]
/// kind = "vault"
/// address = "https://vault:8200"      # else VAULT_ADDR, else https://127.0.0.1:8200
/// namespace = "team-a"                # else VAULT_NAMESPACE
/// ca_cert = "/etc/vault/ca.pem"       # else VAULT_CACERT
/// ca_path = "/etc/vault/cas"          # else VAULT_CAPATH
/// client_cert = "/etc/vault/client.pem"      # else VAULT_CLIENT_CERT
/// client_key_file = "/etc/vault/client.key"  # else VAULT_CLIENT_KEY
/// tls_skip_verify = false             # else VAULT_SKIP_VERIFY
/// auth = { method = "approle", role_id_file = "/run/secrets/role_id", secret_id_file = "/run/secrets/secret_id" }
/// concurrency = 16
/// timeout = "10s"                     # else VAULT_CLIENT_TIMEOUT
/// retry_deadline = "15s"
/// revoke_on_exit = false
/// max_size = 1048576
/// ```
#[derive(Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VaultConfig {
    /// The server's address, `http(s)://host:port`.
    pub address: Option<String>,
    /// The namespace, sent as `X-Vault-Namespace` on every request.
    pub namespace: Option<String>,
    /// A PEM file of CA certificates that sign the server's certificate.
    pub ca_cert: Option<String>,
    /// A directory of PEM CA certificates.
    pub ca_path: Option<String>,
    /// A PEM client certificate, for TLS client authentication.
    pub client_cert: Option<String>,
    /// The PEM private key of `client_cert`.
    pub client_key_file: Option<String>,
    /// Accept any server certificate. Never in production: it is logged as
    /// a warning on every start.
    pub tls_skip_verify: Option<bool>,
    /// How hushbox logs in; a token from the environment without it.
    pub auth: Option<AuthConfig>,
    /// How many requests run at once (default 16).
    pub concurrency: Option<usize>,
    /// The longest one HTTP request may take, e.g. `"10s"`, `"500ms"`.
    pub timeout: Option<String>,
    /// How long failed requests are retried before giving up, e.g. `"15s"`.
    pub retry_deadline: Option<String>,
    /// Revoke the leases hushbox obtained when it exits.
    pub revoke_on_exit: Option<bool>,
    /// The largest secret document accepted, in bytes (default 1 MiB).
    pub max_size: Option<usize>,
}

impl fmt::Debug for VaultConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VaultConfig")
            .field("address", &self.address)
            .field("namespace", &self.namespace)
            .field("ca_cert", &self.ca_cert)
            .field("ca_path", &self.ca_path)
            .field("client_cert", &self.client_cert)
            .field("client_key_file", &self.client_key_file)
            .field("tls_skip_verify", &self.tls_skip_verify)
            .field("auth", &self.auth)
            .field("concurrency", &self.concurrency)
            .field("timeout", &self.timeout)
            .field("retry_deadline", &self.retry_deadline)
            .field("revoke_on_exit", &self.revoke_on_exit)
            .field("max_size", &self.max_size)
            .finish_non_exhaustive()
    }
}

/// How hushbox logs in, as written: `auth = { method = "…", … }`.
///
/// Credentials come from files (or, for a token, a variable), never from the
/// manifest itself.
#[derive(Clone, Deserialize)]
#[serde(tag = "method", rename_all = "lowercase", deny_unknown_fields)]
pub enum AuthConfig {
    /// A token from `token_file`, else the variable `token_env`, else
    /// `VAULT_TOKEN`, else `~/.vault-token`.
    Token {
        /// A file holding the token (a Vault Agent sink, for example).
        token_file: Option<String>,
        /// The name of a variable holding the token (default `VAULT_TOKEN`).
        token_env: Option<String>,
    },
    /// AppRole: role id and secret id from files.
    Approle {
        /// Where the method is mounted (default `approle`).
        mount: Option<String>,
        /// A file holding the role id.
        role_id_file: String,
        /// A file holding the secret id; absent for roles with
        /// `bind_secret_id = false`.
        secret_id_file: Option<String>,
        /// Delete `secret_id_file` after a successful login, as Vault Agent
        /// does. The secret id stays in memory for re-authentication.
        #[serde(default)]
        remove_secret_id_file: bool,
    },
    /// Kubernetes: the pod's service-account token.
    Kubernetes {
        /// Where the method is mounted (default `kubernetes`).
        mount: Option<String>,
        /// The Vault role to log in as.
        role: String,
        /// The service-account token (default
        /// `/var/run/secrets/kubernetes.io/serviceaccount/token`).
        token_file: Option<String>,
    },
    /// JWT: a signed token from a file (a CI job's OIDC token, a projected
    /// service-account token).
    Jwt {
        /// Where the method is mounted (default `jwt`).
        mount: Option<String>,
        /// The Vault role to log in as (the method's default role without it).
        role: Option<String>,
        /// The file holding the JWT.
        token_file: String,
    },
}

impl fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Only paths and names: the structure holds no credential, but it is
        // written by hand like every settings type, so a future field is
        // listed only by decision.
        match self {
            AuthConfig::Token {
                token_file,
                token_env,
            } => f
                .debug_struct("Token")
                .field("token_file", token_file)
                .field("token_env", token_env)
                .finish_non_exhaustive(),
            AuthConfig::Approle {
                mount,
                role_id_file,
                secret_id_file,
                remove_secret_id_file,
            } => f
                .debug_struct("Approle")
                .field("mount", mount)
                .field("role_id_file", role_id_file)
                .field("secret_id_file", secret_id_file)
                .field("remove_secret_id_file", remove_secret_id_file)
                .finish_non_exhaustive(),
            AuthConfig::Kubernetes {
                mount,
                role,
                token_file,
            } => f
                .debug_struct("Kubernetes")
                .field("mount", mount)
                .field("role", role)
                .field("token_file", token_file)
                .finish_non_exhaustive(),
            AuthConfig::Jwt {
                mount,
                role,
                token_file,
            } => f
                .debug_struct("Jwt")
                .field("mount", mount)
                .field("role", role)
                .field("token_file", token_file)
                .finish_non_exhaustive(),
        }
    }
}

/// Where a static token comes from, in the order tried.
#[derive(Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// A file (from `token_file`).
    File(PathBuf),
    /// The token itself, taken from a variable of the environment snapshot
    /// when the instance was built. Held in memory only, wiped on drop.
    Env {
        /// The variable's name (for messages).
        variable: String,
        /// The token.
        token: zeroize::Zeroizing<String>,
    },
    /// `~/.vault-token`, the file `vault login` writes.
    HomeFile(PathBuf),
    /// Nothing: every request fails as unauthenticated.
    Missing,
}

impl fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenSource::File(path) => f.debug_tuple("File").field(path).finish(),
            TokenSource::Env { variable, .. } => f
                .debug_struct("Env")
                .field("variable", variable)
                .finish_non_exhaustive(),
            TokenSource::HomeFile(path) => f.debug_tuple("HomeFile").field(path).finish(),
            TokenSource::Missing => f.write_str("Missing"),
        }
    }
}

/// How hushbox logs in, resolved to paths.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuthSettings {
    /// A static token.
    Token(TokenSource),
    /// AppRole login.
    Approle {
        /// The mount path, without slashes.
        mount: String,
        /// The role id file.
        role_id_file: PathBuf,
        /// The secret id file, if the role needs one.
        secret_id_file: Option<PathBuf>,
        /// Whether to delete the secret id file after a successful login.
        remove_secret_id_file: bool,
    },
    /// Kubernetes login.
    Kubernetes {
        /// The mount path.
        mount: String,
        /// The role.
        role: String,
        /// The service-account token file.
        token_file: PathBuf,
    },
    /// JWT login.
    Jwt {
        /// The mount path.
        mount: String,
        /// The role, if any.
        role: Option<String>,
        /// The JWT file.
        token_file: PathBuf,
    },
}

impl AuthSettings {
    /// Where the token in use comes from, for messages: "the token from
    /// VAULT_TOKEN", "the token of the approle login"…
    pub fn token_origin(&self) -> String {
        match self {
            AuthSettings::Token(TokenSource::File(path) | TokenSource::HomeFile(path)) => {
                format!("the token in {}", path.display())
            }
            AuthSettings::Token(TokenSource::Env { variable, .. }) => {
                format!("the token from {variable}")
            }
            AuthSettings::Token(TokenSource::Missing) => "the token".to_owned(),
            other => format!(
                "the token of a fresh {} login (check the role's policies and token TTL)",
                other.method()
            ),
        }
    }

    /// The method's name as written in the manifest.
    pub fn method(&self) -> &'static str {
        match self {
            AuthSettings::Token(_) => "token",
            AuthSettings::Approle { .. } => "approle",
            AuthSettings::Kubernetes { .. } => "kubernetes",
            AuthSettings::Jwt { .. } => "jwt",
        }
    }
}

/// Everything an instance needs, resolved from the manifest and the
/// environment. Holds no credential except a token taken from a variable.
#[derive(Clone, Debug)]
pub struct VaultSettings {
    /// The address, without a trailing slash.
    pub address: String,
    /// Whether no setting named the address (not the manifest, `VAULT_ADDR`
    /// nor `BAO_ADDR`): [`DEFAULT_ADDRESS`] was filled in, and errors say so.
    pub address_defaulted: bool,
    /// The namespace, if any.
    pub namespace: Option<String>,
    /// CA certificate files to trust, besides the system's.
    pub ca_certs: Vec<PathBuf>,
    /// A CA directory whose PEM files are trusted (read on first use).
    pub ca_path: Option<PathBuf>,
    /// Client certificate and key files.
    pub client_identity: Option<(PathBuf, PathBuf)>,
    /// Accept any server certificate.
    pub skip_verify: bool,
    /// How to log in.
    pub auth: AuthSettings,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// One request's time limit.
    pub timeout: Duration,
    /// How long retries go on.
    pub retry_deadline: Duration,
    /// Revoke obtained leases on exit.
    pub revoke_on_exit: bool,
    /// The largest document accepted.
    pub max_size: usize,
}

impl VaultSettings {
    /// Where this instance's credentials come from: the token's variable,
    /// and every file holding a token, an AppRole id or a client key.
    pub fn credential_sources(&self) -> hushbox_core::CredentialSources {
        let mut sources = hushbox_core::CredentialSources::default();
        match &self.auth {
            AuthSettings::Token(TokenSource::Env { variable, .. }) => {
                sources.variables.push(variable.clone());
            }
            AuthSettings::Token(TokenSource::File(path) | TokenSource::HomeFile(path)) => {
                sources.files.push(path.clone());
            }
            AuthSettings::Token(TokenSource::Missing) => {}
            AuthSettings::Approle {
                role_id_file,
                secret_id_file,
                ..
            } => {
                sources.files.push(role_id_file.clone());
                sources.files.extend(secret_id_file.iter().cloned());
            }
            AuthSettings::Kubernetes { token_file, .. } | AuthSettings::Jwt { token_file, .. } => {
                sources.files.push(token_file.clone());
            }
        }
        if let Some((_, key)) = &self.client_identity {
            sources.files.push(key.clone());
        }
        sources
    }
}

/// A standard variable: `VAULT_<name>`, else OpenBao's `BAO_<name>`; empty
/// counts as unset, as it does for the `vault` CLI.
fn standard_var<'a>(context: &'a BackendContext<'_>, name: &str) -> Option<(String, &'a str)> {
    ["VAULT_", "BAO_"].iter().find_map(|prefix| {
        let variable = format!("{prefix}{name}");
        context
            .env
            .get(&variable)
            .filter(|value| !value.is_empty())
            .map(|value| (variable, value))
    })
}

impl VaultConfig {
    /// Resolves the settings against `context`'s environment and base
    /// directory. Errors are configuration errors naming the setting.
    pub fn resolve(&self, context: &BackendContext<'_>) -> Result<VaultSettings> {
        let address = match &self.address {
            Some(address) => Some(address.clone()),
            None => standard_var(context, "ADDR").map(|(_, value)| value.to_owned()),
        };
        let address_defaulted = address.is_none();
        let address = address.unwrap_or_else(|| DEFAULT_ADDRESS.to_owned());
        let address = check_address(&address)?;

        let namespace = match &self.namespace {
            Some(namespace) => Some(namespace.clone()),
            None => standard_var(context, "NAMESPACE").map(|(_, value)| value.to_owned()),
        }
        .map(|namespace| namespace.trim_matches('/').to_owned())
        .filter(|namespace| !namespace.is_empty());
        if let Some(namespace) = &namespace
            && namespace.chars().any(|c| c.is_control() || c == ' ')
        {
            return Err(Error::config(
                "`namespace` holds a space or a control character",
            ));
        }

        let path_setting = |manifest: &Option<String>, variable: &str| -> Result<Option<PathBuf>> {
            match manifest {
                Some(path) => context.resolve_path(path).map(Some),
                None => match standard_var(context, variable) {
                    Some((_, value)) => context.resolve_path(value).map(Some),
                    None => Ok(None),
                },
            }
        };
        let ca_certs: Vec<PathBuf> = path_setting(&self.ca_cert, "CACERT")?.into_iter().collect();
        let ca_path = path_setting(&self.ca_path, "CAPATH")?;
        let client_cert = path_setting(&self.client_cert, "CLIENT_CERT")?;
        let client_key = path_setting(&self.client_key_file, "CLIENT_KEY")?;
        let client_identity = match (client_cert, client_key) {
            (Some(cert), Some(key)) => Some((cert, key)),
            (None, None) => None,
            _ => {
                return Err(Error::config(
                    "a client certificate needs both `client_cert` and `client_key_file` (or VAULT_CLIENT_CERT and VAULT_CLIENT_KEY)",
                ));
            }
        };

        let skip_verify = match self.tls_skip_verify {
            Some(skip) => skip,
            None => match standard_var(context, "SKIP_VERIFY") {
                Some((variable, value)) => parse_bool(value).ok_or_else(|| {
                    Error::config(format!("{variable} must be true or false (or 1 or 0)"))
                })?,
                None => false,
            },
        };

        let auth = match &self.auth {
            Some(auth) => auth.resolve(context)?,
            None => AuthSettings::Token(token_source(context, None, None)?),
        };

        let concurrency = self.concurrency.unwrap_or(DEFAULT_CONCURRENCY);
        if concurrency == 0 {
            return Err(Error::config("`concurrency` must be at least 1"));
        }
        let timeout = match &self.timeout {
            Some(text) => hushbox_core::parse_duration(text)
                .ok_or_else(|| Error::config(duration_error("timeout")))?,
            None => match standard_var(context, "CLIENT_TIMEOUT") {
                // The vault CLI takes plain seconds here; so do we.
                Some((variable, value)) => hushbox_core::parse_duration(value)
                    .or_else(|| value.parse::<u64>().ok().map(Duration::from_secs))
                    .ok_or_else(|| Error::config(duration_error(&variable)))?,
                None => DEFAULT_TIMEOUT,
            },
        };
        if timeout.is_zero() {
            return Err(Error::config("`timeout` must be longer than zero"));
        }
        let retry_deadline = match &self.retry_deadline {
            Some(text) => hushbox_core::parse_duration(text)
                .ok_or_else(|| Error::config(duration_error("retry_deadline")))?,
            None => DEFAULT_RETRY_DEADLINE,
        };
        let max_size = match self.max_size {
            None => DEFAULT_SIZE_LIMIT,
            Some(0) => return Err(Error::config("`max_size` must be at least 1 byte")),
            Some(limit) => limit,
        };

        Ok(VaultSettings {
            address,
            address_defaulted,
            namespace,
            ca_certs,
            ca_path,
            client_identity,
            skip_verify,
            auth,
            concurrency,
            timeout,
            retry_deadline,
            revoke_on_exit: self.revoke_on_exit.unwrap_or(false),
            max_size,
        })
    }
}

impl AuthConfig {
    fn resolve(&self, context: &BackendContext<'_>) -> Result<AuthSettings> {
        Ok(match self {
            AuthConfig::Token {
                token_file,
                token_env,
            } => AuthSettings::Token(token_source(
                context,
                token_file.as_deref(),
                token_env.as_deref(),
            )?),
            AuthConfig::Approle {
                mount,
                role_id_file,
                secret_id_file,
                remove_secret_id_file,
            } => {
                if *remove_secret_id_file && secret_id_file.is_none() {
                    return Err(Error::config(
                        "`remove_secret_id_file = true` needs a `secret_id_file`",
                    ));
                }
                AuthSettings::Approle {
                    mount: mount_path(mount.as_deref(), "approle")?,
                    role_id_file: context.resolve_path(role_id_file)?,
                    secret_id_file: secret_id_file
                        .as_deref()
                        .map(|path| context.resolve_path(path))
                        .transpose()?,
                    remove_secret_id_file: *remove_secret_id_file,
                }
            }
            AuthConfig::Kubernetes {
                mount,
                role,
                token_file,
            } => AuthSettings::Kubernetes {
                mount: mount_path(mount.as_deref(), "kubernetes")?,
                role: role.clone(),
                token_file: context.resolve_path(
                    token_file
                        .as_deref()
                        .unwrap_or(DEFAULT_KUBERNETES_TOKEN_FILE),
                )?,
            },
            AuthConfig::Jwt {
                mount,
                role,
                token_file,
            } => AuthSettings::Jwt {
                mount: mount_path(mount.as_deref(), "jwt")?,
                role: role.clone(),
                token_file: context.resolve_path(token_file)?,
            },
        })
    }
}

/// The token source: `token_file`, else the variable `token_env` (default
/// `VAULT_TOKEN`, then `BAO_TOKEN`), else `~/.vault-token`.
fn token_source(
    context: &BackendContext<'_>,
    token_file: Option<&str>,
    token_env: Option<&str>,
) -> Result<TokenSource> {
    if let Some(path) = token_file {
        return Ok(TokenSource::File(context.resolve_path(path)?));
    }
    let from_env = match token_env {
        Some(variable) => {
            let token = context.env.get(variable).filter(|t| !t.is_empty());
            if token.is_none() {
                return Err(Error::config(format!(
                    "`token_env` names {variable}, which is not set"
                )));
            }
            token.map(|token| (variable.to_owned(), token))
        }
        None => standard_var(context, "TOKEN"),
    };
    if let Some((variable, token)) = from_env {
        return Ok(TokenSource::Env {
            variable,
            token: zeroize::Zeroizing::new(token.trim().to_owned()),
        });
    }
    Ok(match context.env.home() {
        Some(home) => TokenSource::HomeFile(home.join(".vault-token")),
        None => TokenSource::Missing,
    })
}

fn mount_path(mount: Option<&str>, default: &str) -> Result<String> {
    let mount = mount.unwrap_or(default).trim_matches('/');
    if mount.is_empty() || mount.split('/').any(|part| part.is_empty() || part == "..") {
        return Err(Error::config(format!(
            "the auth mount `{mount}` is not a valid path"
        )));
    }
    Ok(mount.to_owned())
}

fn check_address(address: &str) -> Result<String> {
    let parsed = url::Url::parse(address).map_err(|_| {
        Error::config(format!(
            "the address `{address}` is not a URL (expected http(s)://host:port)"
        ))
    })?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host().is_none() {
        return Err(Error::config(format!(
            "the address `{address}` must be http://… or https://… with a host"
        )));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(Error::config(
            "the address must not hold credentials (user:password@)",
        ));
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(Error::config(format!(
            "the address `{address}` must not have a query or a fragment"
        )));
    }
    Ok(address.trim_end_matches('/').to_owned())
}

fn parse_bool(text: &str) -> Option<bool> {
    match text.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "t" | "yes" => Some(true),
        "0" | "false" | "f" | "no" => Some(false),
        _ => None,
    }
}

fn duration_error(setting: &str) -> String {
    format!("`{setting}` must be a duration such as \"500ms\", \"10s\" or \"2m\"")
}

#[cfg(test)]
mod tests {
    use super::*;
    use hushbox_core::parse_duration;
    use hushbox_core::{Environment, ErrorKind};
    use std::path::Path;

    fn resolve(manifest: &str, env: &[(&str, &str)]) -> Result<VaultSettings> {
        let env = Environment::from_pairs(env.iter().copied());
        let context = BackendContext {
            name: "vault",
            base_dir: Path::new("/project"),
            env: &env,
        };
        let table: hushbox_core::toml::Table = hushbox_core::toml::from_str(manifest).unwrap();
        let config: VaultConfig = context.parse_config(table)?;
        config.resolve(&context)
    }

    #[test]
    fn defaults_come_from_the_standard_variables() {
        let settings = resolve(
            "",
            &[
                ("VAULT_ADDR", "http://127.0.0.1:8200/"),
                ("VAULT_NAMESPACE", "team/"),
                ("VAULT_CACERT", "ca.pem"),
                ("VAULT_SKIP_VERIFY", "1"),
                ("VAULT_TOKEN", "s.FAKEFAKEFAKE"),
                ("VAULT_CLIENT_TIMEOUT", "3"),
            ],
        )
        .unwrap();
        assert_eq!(settings.address, "http://127.0.0.1:8200");
        assert_eq!(settings.namespace.as_deref(), Some("team"));
        assert_eq!(settings.ca_certs, vec![PathBuf::from("/project/ca.pem")]);
        assert!(settings.skip_verify);
        assert_eq!(settings.timeout, Duration::from_secs(3));
        assert!(matches!(
            settings.auth,
            AuthSettings::Token(TokenSource::Env { ref variable, .. }) if variable == "VAULT_TOKEN"
        ));
        assert_eq!(settings.concurrency, 16);
        assert!(!settings.revoke_on_exit);
    }

    #[test]
    fn the_manifest_wins_and_bao_variables_are_a_fallback() {
        let settings = resolve(
            "address = 'https://vault:8200'\nnamespace = 'ns'",
            &[
                ("VAULT_ADDR", "http://ignored:1"),
                ("BAO_NAMESPACE", "other"),
                ("HOME", "/home/u"),
            ],
        )
        .unwrap();
        assert_eq!(settings.address, "https://vault:8200");
        assert_eq!(settings.namespace.as_deref(), Some("ns"));
        assert_eq!(
            settings.auth,
            AuthSettings::Token(TokenSource::HomeFile("/home/u/.vault-token".into()))
        );
        let settings = resolve("", &[("BAO_ADDR", "http://bao:8200")]).unwrap();
        assert_eq!(settings.address, "http://bao:8200");
        assert_eq!(resolve("", &[]).unwrap().address, DEFAULT_ADDRESS);
        assert!(resolve("", &[]).unwrap().address_defaulted);
        assert!(!settings.address_defaulted);
    }

    #[test]
    fn auth_methods_resolve_their_files() {
        let settings = resolve(
            "auth = { method = 'approle', role_id_file = 'role', secret_id_file = '/run/s', remove_secret_id_file = true }",
            &[],
        )
        .unwrap();
        assert_eq!(
            settings.auth,
            AuthSettings::Approle {
                mount: "approle".into(),
                role_id_file: "/project/role".into(),
                secret_id_file: Some("/run/s".into()),
                remove_secret_id_file: true,
            }
        );
        let settings = resolve("auth = { method = 'kubernetes', role = 'app' }", &[]).unwrap();
        assert_eq!(
            settings.auth,
            AuthSettings::Kubernetes {
                mount: "kubernetes".into(),
                role: "app".into(),
                token_file: DEFAULT_KUBERNETES_TOKEN_FILE.into(),
            }
        );
        let settings = resolve(
            "auth = { method = 'jwt', mount = '/ci/jwt/', token_file = '/ci/token' }",
            &[],
        )
        .unwrap();
        assert_eq!(
            settings.auth,
            AuthSettings::Jwt {
                mount: "ci/jwt".into(),
                role: None,
                token_file: "/ci/token".into(),
            }
        );
    }

    #[test]
    fn bad_settings_are_config_errors() {
        for (manifest, env) in [
            ("address = 'vault:8200'", vec![]),
            ("address = 'ftp://vault'", vec![]),
            ("address = 'https://u:p@vault'", vec![]),
            ("timeout = '10'", vec![]),
            ("retry_deadline = 'soon'", vec![]),
            ("concurrency = 0", vec![]),
            ("max_size = 0", vec![]),
            ("unknown = 1", vec![]),
            ("client_cert = 'c.pem'", vec![]),
            ("auth = { method = 'token', token = 'x' }", vec![]),
            ("auth = { method = 'approle' }", vec![]),
            (
                "auth = { method = 'approle', role_id_file = 'r', remove_secret_id_file = true }",
                vec![],
            ),
            ("auth = { method = 'ldap' }", vec![]),
            ("auth = { method = 'token', token_env = 'NOPE' }", vec![]),
            ("", vec![("VAULT_SKIP_VERIFY", "maybe")]),
        ] {
            let error = resolve(manifest, &env).unwrap_err();
            assert_eq!(error.kind(), ErrorKind::Config, "{manifest}: {error}");
        }
    }

    #[test]
    fn inline_tokens_are_refused_without_quoting_them() {
        let error = resolve(
            "auth = { method = 'token', token = 's.SECRETSECRETSECRET' }",
            &[],
        )
        .unwrap_err();
        assert!(!error.to_string().contains("SECRETSECRET"), "{error}");
    }

    #[test]
    fn debug_of_a_token_from_the_environment_hides_it() {
        let settings = resolve("", &[("VAULT_TOKEN", "s.CANARYCANARYCANARY")]).unwrap();
        let debug = format!("{settings:?}");
        assert!(!debug.contains("CANARY"), "{debug}");
        assert!(debug.contains("VAULT_TOKEN"));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("10s"), Some(Duration::from_secs(10)));
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Some(Duration::from_secs(3600)));
        for bad in ["", "s", "10", "1.5s", "-1s", "10 s"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }

    #[test]
    fn credential_sources_name_the_token_variable_and_the_files() {
        let settings = resolve(
            "auth = { method = 'token', token_env = 'MY_VAULT_TOKEN' }",
            &[("MY_VAULT_TOKEN", "s.CANARYCANARYCANARY")],
        )
        .unwrap();
        let sources = settings.credential_sources();
        assert_eq!(sources.variables, ["MY_VAULT_TOKEN"]);
        assert!(!format!("{sources:?}").contains("CANARY"));
        let settings = resolve(
            "client_cert = 'c.pem'\nclient_key_file = 'c.key'\n\
             auth = { method = 'approle', role_id_file = 'role', secret_id_file = '/run/s' }",
            &[("VAULT_TOKEN", "s.unused")],
        )
        .unwrap();
        let sources = settings.credential_sources();
        assert!(sources.variables.is_empty(), "{sources:?}");
        assert_eq!(
            sources.files,
            [
                Path::new("/project/role"),
                Path::new("/run/s"),
                Path::new("/project/c.key")
            ]
        );
        // Without a token anywhere, nothing is named.
        let settings = resolve("", &[]).unwrap();
        assert_eq!(settings.credential_sources(), Default::default());
    }
}
