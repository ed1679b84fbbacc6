//! Settings of an age store: as written in `[backends.NAME]` ([`AgeConfig`]),
//! and resolved against the environment into paths ([`AgeSettings`]).
//!
//! Parsing and resolving are separate steps so that the CLI can build a
//! store from flags and the environment alone, without a manifest.

use std::fmt;
use std::path::PathBuf;

use hushbox_core::{BackendContext, DEFAULT_SIZE_LIMIT, Error, Result, Trust};
use serde::Deserialize;

/// Overrides every other identity setting, including the manifest's: an
/// identity belongs to the person running hushbox, not to the project. The
/// CLI's `--identity` flag arrives through this variable.
pub const ENV_IDENTITY: &str = "HUSHBOX_IDENTITY";
/// The store directory when the manifest names none.
pub const ENV_STORE: &str = "HUSHBOX_STORE";
/// passage's store directory, used after [`ENV_STORE`].
pub const ENV_PASSAGE_DIR: &str = "PASSAGE_DIR";
/// passage's identities file, used after the manifest's `identity_file`.
pub const ENV_PASSAGE_IDENTITIES: &str = "PASSAGE_IDENTITIES_FILE";
/// The pinned integrity key id, used when the manifest pins none: lets an
/// image pin its store's key without a manifest or a state directory.
pub const ENV_INTEGRITY_KEY: &str = "HUSHBOX_INTEGRITY_KEY";

/// The store directory when nothing else names one (passage's default).
pub const DEFAULT_STORE: &str = "~/.passage/store";
/// The identity file when nothing else names one (where `hushbox keygen`
/// writes by default).
pub const DEFAULT_IDENTITY_FILE: &str = "~/.config/hushbox/identity.txt";

/// The settings of `[backends.NAME] kind = "age"`, as written.
///
/// Every key is optional; see [`AgeConfig::resolve`] for where the
/// defaults come from.
#[derive(Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgeConfig {
    /// The store directory: `<store>/<path>.age` per secret. Relative paths
    /// are relative to the manifest's directory.
    pub store: Option<String>,
    /// The file holding the identities that decrypt the store: age
    /// `AGE-SECRET-KEY-1…` lines, or an unencrypted OpenSSH private key.
    pub identity_file: Option<String>,
    /// The largest plaintext accepted, in bytes.
    pub max_size: Option<usize>,
    /// Refuse the store, rather than warn, when its integrity cannot be
    /// checked: no integrity manifest, or no state directory to detect a
    /// rollback or a swapped key in and no pinned `integrity_key`.
    /// `hushbox store init` writes `true` into the manifest.
    pub require_integrity: Option<bool>,
    /// The id of the integrity key the store's manifest must be signed
    /// with (32 hex digits, printed by `hushbox store verify --print-key`):
    /// a trust anchor for images and CI, where no state persists.
    pub integrity_key: Option<String>,
}

impl fmt::Debug for AgeConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AgeConfig")
            .field("store", &self.store)
            .field("identity_file", &self.identity_file)
            .field("max_size", &self.max_size)
            .field("require_integrity", &self.require_integrity)
            .field("integrity_key", &self.integrity_key)
            .finish_non_exhaustive()
    }
}

/// Where an age store and its identities are, resolved to paths.
#[derive(Clone, PartialEq, Eq)]
pub struct AgeSettings {
    /// The store directory.
    pub store: PathBuf,
    /// Whether no setting named the store (not the manifest,
    /// `HUSHBOX_STORE` nor `PASSAGE_DIR`): the default `~/.passage/store`
    /// was filled in, and errors say so.
    pub store_defaulted: bool,
    /// The identity file.
    pub identity_file: PathBuf,
    /// The largest plaintext accepted, in bytes.
    pub max_size: usize,
    /// Where this machine remembers the newest integrity manifest it has
    /// seen of each store (`$XDG_STATE_HOME/hushbox`, else
    /// `~/.local/state/hushbox`): what detects a rollback or a swapped
    /// integrity key. `None` turns those two checks off.
    pub state_dir: Option<PathBuf>,
    /// Who may own the store, its directories and its `.age-recipients`
    /// files (the caller and root, plus `HUSHBOX_SAFE_DIRECTORIES`).
    pub trust: Trust,
    /// The variable the identity file's path came from
    /// (`HUSHBOX_IDENTITY` or `PASSAGE_IDENTITIES_FILE`), if any.
    pub identity_variable: Option<&'static str>,
    /// Whether no setting named the identity file: the default path was
    /// filled in (errors say so).
    pub identity_defaulted: bool,
    /// Whether a store whose integrity cannot be checked is an error
    /// rather than a warning.
    pub require_integrity: bool,
    /// The integrity key id the store's manifest must carry, if pinned.
    pub integrity_key: Option<[u8; 16]>,
}

impl AgeSettings {
    /// Settings for `store` and `identity_file`, with the default size
    /// limit and no state directory.
    pub fn new(store: impl Into<PathBuf>, identity_file: impl Into<PathBuf>) -> Self {
        Self {
            store: store.into(),
            store_defaulted: false,
            identity_file: identity_file.into(),
            max_size: DEFAULT_SIZE_LIMIT,
            state_dir: None,
            trust: Trust::default(),
            identity_variable: None,
            identity_defaulted: false,
            require_integrity: false,
            integrity_key: None,
        }
    }
}

impl fmt::Debug for AgeSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AgeSettings")
            .field("store", &self.store)
            .field("store_defaulted", &self.store_defaulted)
            .field("identity_file", &self.identity_file)
            .field("max_size", &self.max_size)
            .field("state_dir", &self.state_dir)
            .field("trust", &self.trust)
            .field("identity_variable", &self.identity_variable)
            .field("identity_defaulted", &self.identity_defaulted)
            .field("require_integrity", &self.require_integrity)
            .field(
                "integrity_key",
                &self
                    .integrity_key
                    .as_ref()
                    .map(|key| crate::integrity::hex(key)),
            )
            .finish_non_exhaustive()
    }
}

/// The XDG variable naming the directory of per-user state.
pub const ENV_STATE_HOME: &str = "XDG_STATE_HOME";

/// `$XDG_STATE_HOME/hushbox` when that is absolute (the XDG spec ignores a
/// relative value), else `~/.local/state/hushbox`, else `None`.
fn state_dir(context: &BackendContext<'_>) -> Option<PathBuf> {
    let from_xdg = context
        .env
        .get_os(ENV_STATE_HOME)
        .map(PathBuf::from)
        .filter(|dir| dir.is_absolute());
    from_xdg
        .or_else(|| context.env.home().map(|home| home.join(".local/state")))
        .map(|dir| dir.join("hushbox"))
}

impl AgeConfig {
    /// Resolves the settings against `context`'s environment and base
    /// directory.
    ///
    /// - store: the manifest's `store` > `HUSHBOX_STORE` > `PASSAGE_DIR` >
    ///   `~/.passage/store`. A manifest names its own store.
    /// - identity file: `HUSHBOX_IDENTITY` > the manifest's `identity_file` >
    ///   `PASSAGE_IDENTITIES_FILE` > `~/.config/hushbox/identity.txt`.
    ///   Identities are per person, so the person's choice wins.
    /// - max_size: the manifest's, else [`DEFAULT_SIZE_LIMIT`].
    /// - state_dir: `$XDG_STATE_HOME/hushbox`, else `~/.local/state/hushbox`.
    /// - integrity_key: the manifest's, else `HUSHBOX_INTEGRITY_KEY`.
    /// - require_integrity: the manifest's, else `false`.
    ///
    /// Empty variables count as unset. `~/` is the home directory; other
    /// relative paths are relative to [`BackendContext::base_dir`].
    pub fn resolve(&self, context: &BackendContext<'_>) -> Result<AgeSettings> {
        let subject = || format!("[backends.{}]", context.name);
        let from_env = |name: &str| context.env.get(name).filter(|value| !value.is_empty());

        let store = self
            .store
            .as_deref()
            .or_else(|| from_env(ENV_STORE))
            .or_else(|| from_env(ENV_PASSAGE_DIR));
        let store_defaulted = store.is_none();
        let store = store.unwrap_or(DEFAULT_STORE);
        let (identity_file, identity_variable) = match from_env(ENV_IDENTITY) {
            Some(file) => (file, Some(ENV_IDENTITY)),
            None => match self.identity_file.as_deref() {
                Some(file) => (file, None),
                None => match from_env(ENV_PASSAGE_IDENTITIES) {
                    Some(file) => (file, Some(ENV_PASSAGE_IDENTITIES)),
                    None => (DEFAULT_IDENTITY_FILE, None),
                },
            },
        };
        let integrity_key = match self.integrity_key.as_deref() {
            Some(text) => Some((text, "`integrity_key`")),
            None => from_env(ENV_INTEGRITY_KEY).map(|text| (text, ENV_INTEGRITY_KEY)),
        };
        let integrity_key = integrity_key
            .map(|(text, origin)| {
                crate::integrity::unhex::<16>(text.trim()).ok_or_else(|| {
                    Error::config(format!(
                        "{origin} is not an integrity key id (32 hex digits, as `hushbox store verify --print-key` prints)"
                    ))
                    .with_subject(subject())
                })
            })
            .transpose()?;
        let max_size = self.max_size.unwrap_or(DEFAULT_SIZE_LIMIT);
        if max_size == 0 {
            return Err(Error::config("max_size must be at least 1 byte").with_subject(subject()));
        }
        // A path hushbox filled in is named as a default when it fails, so
        // that the user knows which setting would have chosen another.
        let store = context.resolve_path(store).map_err(|error| {
            if store_defaulted {
                Error::config(format!(
                    "the default store {DEFAULT_STORE} (no `store` in the manifest, \
                     {ENV_STORE} and {ENV_PASSAGE_DIR} unset) needs HOME, which is not set; \
                     set HOME, or name the store with {ENV_STORE} or `store`"
                ))
            } else {
                error
            }
            .with_subject(subject())
        })?;
        let identity_defaulted = identity_variable.is_none() && self.identity_file.is_none();
        let identity_file = context.resolve_path(identity_file).map_err(|error| {
            if identity_defaulted {
                Error::config(format!(
                    "the default identity file {DEFAULT_IDENTITY_FILE} (no `identity_file` in \
                     the manifest, {ENV_IDENTITY} and {ENV_PASSAGE_IDENTITIES} unset, no \
                     --identity) needs HOME, which is not set; set HOME, or name the identity \
                     file with {ENV_IDENTITY} or --identity"
                ))
            } else {
                error
            }
            .with_subject(subject())
        })?;
        Ok(AgeSettings {
            store,
            store_defaulted,
            identity_file,
            max_size,
            state_dir: state_dir(context),
            trust: Trust::from_env(context.env).map_err(|error| error.with_subject(subject()))?,
            identity_variable,
            identity_defaulted,
            require_integrity: self.require_integrity.unwrap_or(false),
            integrity_key,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use hushbox_core::{Environment, ErrorKind};

    use super::*;

    fn resolve(config: &AgeConfig, env: &[(&str, &str)]) -> Result<AgeSettings> {
        let mut pairs = vec![("HOME", "/home/u")];
        pairs.extend_from_slice(env);
        let env = Environment::from_pairs(pairs);
        config.resolve(&BackendContext {
            name: "team",
            base_dir: Path::new("/project"),
            env: &env,
        })
    }

    fn manifest(store: &str, identity_file: &str) -> AgeConfig {
        AgeConfig {
            store: Some(store.into()),
            identity_file: Some(identity_file.into()),
            ..AgeConfig::default()
        }
    }

    #[test]
    fn defaults_follow_passage_and_keygen() {
        let settings = resolve(&AgeConfig::default(), &[]).unwrap();
        assert_eq!(settings.store, Path::new("/home/u/.passage/store"));
        assert_eq!(
            settings.identity_file,
            Path::new("/home/u/.config/hushbox/identity.txt")
        );
        assert_eq!(settings.max_size, DEFAULT_SIZE_LIMIT);
        assert_eq!(
            settings.state_dir.as_deref(),
            Some(Path::new("/home/u/.local/state/hushbox"))
        );
    }

    #[test]
    fn state_dir_follows_xdg_and_ignores_relative_values() {
        let settings = resolve(&AgeConfig::default(), &[("XDG_STATE_HOME", "/xdg")]).unwrap();
        assert_eq!(
            settings.state_dir.as_deref(),
            Some(Path::new("/xdg/hushbox"))
        );
        let settings = resolve(&AgeConfig::default(), &[("XDG_STATE_HOME", "rel")]).unwrap();
        assert_eq!(
            settings.state_dir.as_deref(),
            Some(Path::new("/home/u/.local/state/hushbox"))
        );
    }

    #[test]
    fn manifest_store_beats_the_environment() {
        let env = [("HUSHBOX_STORE", "/env/store"), ("PASSAGE_DIR", "/passage")];
        let settings = resolve(&manifest("secrets", "/m/id"), &env).unwrap();
        assert_eq!(settings.store, Path::new("/project/secrets"));
        let settings = resolve(&AgeConfig::default(), &env).unwrap();
        assert_eq!(settings.store, Path::new("/env/store"));
        let settings = resolve(&AgeConfig::default(), &[("PASSAGE_DIR", "/passage")]).unwrap();
        assert_eq!(settings.store, Path::new("/passage"));
    }

    #[test]
    fn hushbox_identity_beats_the_manifest_which_beats_passage() {
        let env = [
            ("HUSHBOX_IDENTITY", "/env/id"),
            ("PASSAGE_IDENTITIES_FILE", "/passage/id"),
        ];
        let settings = resolve(&manifest("s", "~/m/id"), &env).unwrap();
        assert_eq!(settings.identity_file, Path::new("/env/id"));
        let settings = resolve(&manifest("s", "~/m/id"), &env[1..]).unwrap();
        assert_eq!(settings.identity_file, Path::new("/home/u/m/id"));
        let settings = resolve(&AgeConfig::default(), &env[1..]).unwrap();
        assert_eq!(settings.identity_file, Path::new("/passage/id"));
    }

    #[test]
    fn empty_variables_count_as_unset() {
        let env = [("HUSHBOX_IDENTITY", ""), ("HUSHBOX_STORE", "")];
        let settings = resolve(&AgeConfig::default(), &env).unwrap();
        assert_eq!(settings.store, Path::new("/home/u/.passage/store"));
        assert_eq!(
            settings.identity_file,
            Path::new("/home/u/.config/hushbox/identity.txt")
        );
    }

    #[test]
    fn defaults_are_marked_as_defaults_and_named_settings_are_not() {
        let settings = resolve(&AgeConfig::default(), &[]).unwrap();
        assert!(settings.store_defaulted && settings.identity_defaulted);
        let env = [("HUSHBOX_IDENTITY", "/env/id"), ("PASSAGE_DIR", "/p")];
        let settings = resolve(&AgeConfig::default(), &env).unwrap();
        assert!(!settings.store_defaulted && !settings.identity_defaulted);
        let config = AgeConfig {
            store: Some("secrets".into()),
            identity_file: Some("id.txt".into()),
            ..AgeConfig::default()
        };
        let settings = resolve(&config, &[]).unwrap();
        assert!(!settings.store_defaulted && !settings.identity_defaulted);
    }

    #[test]
    fn zero_max_size_is_refused() {
        let config = AgeConfig {
            max_size: Some(0),
            ..AgeConfig::default()
        };
        assert_eq!(resolve(&config, &[]).unwrap_err().kind(), ErrorKind::Config);
    }

    #[test]
    fn unknown_keys_and_inline_keys_are_refused() {
        let env = Environment::default();
        let context = BackendContext {
            name: "team",
            base_dir: Path::new("/p"),
            env: &env,
        };
        let table: hushbox_core::toml::Table = "stor = 'x'".parse().unwrap();
        let error = context.parse_config::<AgeConfig>(table).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Config);
        assert!(error.to_string().contains("stor"), "{error}");
        let table: hushbox_core::toml::Table = "identity_file = 'AGE-SECRET-KEY-1QQQQCANARY'"
            .parse()
            .unwrap();
        let error = context.parse_config::<AgeConfig>(table).unwrap_err();
        assert!(!error.to_string().contains("CANARY"), "{error}");
    }

    #[test]
    fn debug_lists_paths_only() {
        let text = format!("{:?}", manifest("s", "/id"));
        assert!(text.contains("\"/id\"") && text.ends_with(".. }"), "{text}");
    }

    #[test]
    fn the_identity_variable_is_the_one_that_named_the_file() {
        let env = [
            ("HUSHBOX_IDENTITY", "/env/id"),
            ("PASSAGE_IDENTITIES_FILE", "/passage/id"),
        ];
        let settings = resolve(&AgeConfig::default(), &env).unwrap();
        assert_eq!(settings.identity_variable, Some(ENV_IDENTITY));
        let settings = resolve(&AgeConfig::default(), &env[1..]).unwrap();
        assert_eq!(settings.identity_variable, Some(ENV_PASSAGE_IDENTITIES));
        let settings = resolve(&manifest("s", "/m/id"), &env[1..]).unwrap();
        assert_eq!(settings.identity_variable, None);
    }

    #[test]
    fn integrity_key_comes_from_the_manifest_else_the_environment() {
        let key = "00112233445566778899aabbccddeeff";
        let other = "ffeeddccbbaa99887766554433221100";
        let pinned = AgeConfig {
            integrity_key: Some(key.into()),
            require_integrity: Some(true),
            ..AgeConfig::default()
        };
        let settings = resolve(&pinned, &[("HUSHBOX_INTEGRITY_KEY", other)]).unwrap();
        assert_eq!(settings.integrity_key.map(|k| k[0]), Some(0x00));
        assert!(settings.require_integrity);
        let settings = resolve(&AgeConfig::default(), &[("HUSHBOX_INTEGRITY_KEY", other)]).unwrap();
        assert_eq!(settings.integrity_key.map(|k| k[0]), Some(0xff));
        assert!(!settings.require_integrity);
        let settings = resolve(&AgeConfig::default(), &[]).unwrap();
        assert_eq!(settings.integrity_key, None);
        for bad in [
            "abc",
            "zz112233445566778899aabbccddeeff",
            "0011223344556677889",
        ] {
            let error =
                resolve(&AgeConfig::default(), &[("HUSHBOX_INTEGRITY_KEY", bad)]).unwrap_err();
            assert_eq!(error.kind(), ErrorKind::Config);
            assert!(
                error.to_string().contains("HUSHBOX_INTEGRITY_KEY"),
                "{error}"
            );
        }
    }
}
