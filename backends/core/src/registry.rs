//! How backend crates make themselves known: each registers a factory under
//! its `kind`, and the manifest's `[backends.NAME]` sections are built through
//! it. Adding a backend edits no central `match`.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::de::DeserializeOwned;

use crate::backend::Backend;
use crate::error::{Error, Result};

/// A snapshot of the environment that backends read their standard
/// variables from. Tests build their own; hushbox never changes its own
/// process environment.
#[derive(Clone, Default)]
pub struct Environment {
    vars: BTreeMap<String, OsString>,
}

impl std::fmt::Debug for Environment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Variable values may be credentials: list names only.
        f.debug_set().entries(self.vars.keys()).finish()
    }
}

impl Environment {
    /// The current process's environment.
    pub fn from_process() -> Self {
        Self {
            vars: std::env::vars_os()
                .filter_map(|(name, value)| Some((name.into_string().ok()?, value)))
                .collect(),
        }
    }

    /// An environment with exactly these variables.
    pub fn from_pairs<I, K, V>(pairs: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<OsString>,
    {
        Self {
            vars: pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        }
    }

    /// A variable's value, if set and valid UTF-8.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars.get(name).and_then(|value| value.to_str())
    }

    /// A variable's raw value.
    pub fn get_os(&self, name: &str) -> Option<&OsString> {
        self.vars.get(name)
    }

    /// Sets a variable in this snapshot (not in the process).
    pub fn set(&mut self, name: impl Into<String>, value: impl Into<OsString>) {
        self.vars.insert(name.into(), value.into());
    }

    /// Removes a variable from this snapshot.
    pub fn remove(&mut self, name: &str) -> Option<OsString> {
        self.vars.remove(name)
    }

    /// All variables, sorted by name.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &OsString)> {
        self.vars.iter()
    }

    /// The home directory, from `HOME`.
    pub fn home(&self) -> Option<PathBuf> {
        self.get_os("HOME").map(PathBuf::from)
    }
}

/// What a factory gets to build one backend instance.
#[derive(Debug)]
pub struct BackendContext<'a> {
    /// The instance name (the scheme of its references).
    pub name: &'a str,
    /// The directory relative paths are resolved against: the manifest's
    /// directory, or the current directory without a manifest.
    pub base_dir: &'a Path,
    /// The environment to read standard variables from.
    pub env: &'a Environment,
}

impl BackendContext<'_> {
    /// Resolves a path from the manifest or the environment: `~/` is the
    /// home directory, a relative path is relative to [`Self::base_dir`].
    pub fn resolve_path(&self, path: &str) -> Result<PathBuf> {
        if let Some(rest) = path.strip_prefix("~/") {
            let home = self
                .env
                .home()
                .ok_or_else(|| Error::config(format!("`{path}` needs HOME, which is not set")))?;
            return Ok(home.join(rest));
        }
        let path = Path::new(path);
        Ok(if path.is_absolute() {
            path.to_owned()
        } else {
            self.base_dir.join(path)
        })
    }

    /// Deserializes a backend's settings, refusing unknown keys and inline
    /// credentials. serde's message names the key; values are never quoted.
    pub fn parse_config<T: DeserializeOwned>(&self, settings: toml::Table) -> Result<T> {
        reject_inline_credentials(&settings)
            .map_err(|error| error.with_subject(format!("[backends.{}]", self.name)))?;
        T::deserialize(toml::Value::Table(settings)).map_err(|error| {
            Error::config(redact_quoted(error.message()))
                .with_subject(format!("[backends.{}]", self.name))
        })
    }
}

/// Keys that would hold a credential inline. The manifest takes credentials
/// only from files (`*_file`), variables (`*_env`) or a backend's ambient chain.
const CREDENTIAL_KEYS: &[&str] = &[
    "token",
    "password",
    "secret",
    "secret_id",
    "role_id",
    "client_secret",
    "private_key",
    "identity",
    "access_key_id",
    "secret_access_key",
    "session_token",
    "jwt",
    "api_key",
];

/// Text that only a credential looks like.
const CREDENTIAL_PREFIXES: &[&str] = &[
    "AGE-SECRET-KEY-",
    "-----BEGIN",
    "hvs.",
    "hvb.",
    "s.",
    "AKIA",
    "ASIA",
];

/// Refuses a table (recursively) that holds a credential inline: a key from
/// a list of credential names, or a string value shaped like a known
/// credential. The error names the key, never the value.
pub fn reject_inline_credentials(table: &toml::Table) -> Result<()> {
    for (key, value) in table {
        let lowered = key.to_ascii_lowercase();
        if CREDENTIAL_KEYS.contains(&lowered.as_str()) {
            return Err(Error::config(format!(
                "`{key}` would put a credential inline in the manifest; use `{key}_file` or `{key}_env` instead"
            )));
        }
        match value {
            toml::Value::String(text) if looks_like_credential(text) => {
                return Err(Error::config(format!(
                    "the value of `{key}` looks like a credential; credentials never go inline in the manifest (use a `*_file` or `*_env` setting)"
                )));
            }
            toml::Value::Table(inner) => reject_inline_credentials(inner)?,
            _ => {}
        }
    }
    Ok(())
}

/// Whether `name` (of a setting or a reference's query parameter) says it
/// holds a credential: one of the manifest's credential keys, another common
/// credential word, or a name ending in one (`db_password`,
/// `X-Vault-Token`). `public_key` is not a credential.
pub(crate) fn is_credential_name(name: &str) -> bool {
    const MORE: &[&str] = &[
        "key",
        "apikey",
        "passphrase",
        "passwd",
        "pass",
        "pwd",
        "auth",
        "authorization",
        "credential",
        "credentials",
        "access_token",
        "refresh_token",
        "id_token",
        "client_key",
        "signature",
    ];
    const SUFFIXES: &[&str] = &["_token", "_password", "_passphrase", "_secret", "_key"];
    let name = name.to_ascii_lowercase().replace('-', "_");
    if name == "public_key" || name.ends_with("_public_key") {
        return false;
    }
    CREDENTIAL_KEYS.contains(&name.as_str())
        || MORE.contains(&name.as_str())
        || SUFFIXES.iter().any(|suffix| name.ends_with(suffix))
}

/// Whether `text` is shaped like a known credential (an age identity, a PEM
/// block, a Vault token, an AWS access key id).
pub(crate) fn looks_like_credential(text: &str) -> bool {
    CREDENTIAL_PREFIXES.iter().any(|prefix| {
        text.starts_with(prefix)
            && (prefix.len() > 2
                || (text.len() >= 20 && !text.contains('/') && !text.contains(' ')))
    })
}

/// Masks double-quoted text in a parser's message, where serde and toml put
/// the offending input.
pub fn redact_quoted(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut inside = false;
    for c in message.chars() {
        if c == '"' {
            if inside {
                out.push_str("\"…\"");
            }
            inside = !inside;
        } else if !inside {
            out.push(c);
        }
    }
    if inside {
        out.push_str("\"…");
    }
    out
}

/// Builds one backend instance from its `[backends.NAME]` settings (the
/// table without its `kind` key).
pub type Factory = fn(&BackendContext<'_>, toml::Table) -> Result<Arc<dyn Backend>>;

/// The backend kinds a binary knows, by `kind` name.
#[derive(Default, Clone)]
pub struct Registry {
    kinds: BTreeMap<&'static str, Factory>,
    /// Kinds whose instances are always named in a manifest: there is no
    /// default instance to reach without one (a `command` needs its
    /// command).
    named_only: std::collections::BTreeSet<&'static str>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.kinds.keys()).finish()
    }
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes `kind` known. Backend crates call this from their `register`.
    pub fn register(&mut self, kind: &'static str, factory: Factory) {
        self.kinds.insert(kind, factory);
    }

    /// Makes `kind` known, with no default instance: its instances exist
    /// only as a manifest's `[backends.NAME] kind = "..."`.
    pub fn register_named_only(&mut self, kind: &'static str, factory: Factory) {
        self.kinds.insert(kind, factory);
        self.named_only.insert(kind);
    }

    /// The known kinds, sorted.
    pub fn kinds(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.kinds.keys().copied()
    }

    /// The kinds that have a default instance (their scheme works without
    /// a manifest), sorted.
    pub fn default_kinds(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.kinds().filter(|kind| !self.named_only.contains(kind))
    }

    /// Builds an instance of `kind`.
    pub fn build(
        &self,
        kind: &str,
        context: &BackendContext<'_>,
        settings: toml::Table,
    ) -> Result<Arc<dyn Backend>> {
        let factory = self.kinds.get(kind).ok_or_else(|| {
            let known: Vec<_> = self.kinds().collect();
            Error::config(format!(
                "unknown backend kind `{kind}` (this build knows: {})",
                known.join(", ")
            ))
            .with_subject(format!("[backends.{}]", context.name))
        })?;
        factory(context, settings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_credentials_are_refused_by_key_and_by_shape() {
        let by_key: toml::Table = toml::from_str("token = 'x'").unwrap();
        let error = reject_inline_credentials(&by_key).unwrap_err();
        assert!(error.to_string().contains("token_file"));
        let by_shape: toml::Table =
            toml::from_str("[auth]\nkey = 'AGE-SECRET-KEY-1QQQCANARY'").unwrap();
        let error = reject_inline_credentials(&by_shape).unwrap_err();
        assert!(!error.to_string().contains("CANARY"));
        let fine: toml::Table =
            toml::from_str("token_file = '/run/secrets/t'\naddress = 'https://vault:8200'")
                .unwrap();
        reject_inline_credentials(&fine).unwrap();
    }

    #[test]
    fn quoted_input_is_masked() {
        assert_eq!(
            redact_quoted(r#"invalid type: string "hunter2", expected u32"#),
            r#"invalid type: string "…", expected u32"#
        );
    }

    #[test]
    fn paths_resolve_against_home_and_base() {
        let env = Environment::from_pairs([("HOME", "/home/u")]);
        let context = BackendContext {
            name: "team",
            base_dir: Path::new("/project"),
            env: &env,
        };
        assert_eq!(context.resolve_path("~/k").unwrap(), Path::new("/home/u/k"));
        assert_eq!(
            context.resolve_path("secrets").unwrap(),
            Path::new("/project/secrets")
        );
        assert_eq!(context.resolve_path("/abs").unwrap(), Path::new("/abs"));
    }
}
