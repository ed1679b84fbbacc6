//! The settings of a `[backends.NAME]` section of kind `command`, and what
//! they resolve to: an argv template, limits, and the plugin's environment.

use std::ffi::OsString;
use std::fmt;
use std::time::Duration;

use hushbox_core::{DEFAULT_SIZE_LIMIT, Environment, Error, Result};
use serde::Deserialize;

use crate::argv::ArgvTemplate;

/// How long a plugin may run unless `timeout` says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Settings of a `command` instance, as written in the manifest:
///
/// ```toml
/// [backends.azure]
/// kind = "command"
/// command = ["az", "keyvault", "secret", "show", "--vault-name", "prod-kv",
///            "--name", "{path}", "--query", "value", "-o", "tsv"]
/// timeout = "10s"
/// env = ["AZURE_*"]
/// ```
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct CommandConfig {
    /// The program and its arguments. `{path}` and `{param.NAME}` are
    /// replaced inside an element, which stays one argument.
    pub command: Vec<String>,
    /// `"one-shot"` (default): one process per secret, value on stdout.
    /// `"json"`: one process per batch, JSON lines both ways.
    #[serde(default)]
    pub protocol: Protocol,
    /// How long one process may run: `"500ms"`, `"10s"`, `"2m"`.
    pub timeout: Option<String>,
    /// The largest value accepted, in bytes (default 1 MiB).
    pub max_size: Option<usize>,
    /// Variables of hushbox's environment passed to the plugin, by name or
    /// with `*` wildcards, besides `PATH` and `HOME`.
    #[serde(default)]
    pub env: Vec<String>,
    /// One-shot only: keep a trailing newline instead of trimming one.
    pub raw: Option<bool>,
    /// Log the plugin's stderr at debug level (for plugin authors only).
    #[serde(default)]
    pub debug_stderr: bool,
    /// Exit codes that mean "no such secret".
    #[serde(default)]
    pub not_found_exit_codes: Vec<i32>,
    /// A regular expression which, found in the stderr of a failed run,
    /// means "no such secret".
    pub not_found_pattern: Option<String>,
}

/// How hushbox talks to the plugin.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Protocol {
    /// One process per secret: arguments in, the value on stdout.
    #[default]
    OneShot,
    /// One process per batch: JSON lines on stdin and stdout.
    Json,
}

// Written by hand, as for every backend's settings: a future setting may be
// sensitive, and a derived Debug would print it without anyone deciding to.
impl fmt::Debug for CommandConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CommandConfig")
            .field("command", &self.command)
            .field("protocol", &self.protocol)
            .field("timeout", &self.timeout)
            .field("max_size", &self.max_size)
            .field("env", &self.env)
            .field("raw", &self.raw)
            .field("debug_stderr", &self.debug_stderr)
            .finish_non_exhaustive()
    }
}

/// The settings, checked and resolved against the environment.
pub(crate) struct Settings {
    pub(crate) argv: ArgvTemplate,
    pub(crate) protocol: Protocol,
    pub(crate) timeout: Duration,
    pub(crate) size_limit: usize,
    /// The plugin's whole environment. Values may be credentials.
    pub(crate) env: Vec<(String, OsString)>,
    pub(crate) trim_newline: bool,
    pub(crate) debug_stderr: bool,
    pub(crate) not_found_exit_codes: Vec<i32>,
    pub(crate) not_found_pattern: Option<regex_lite::Regex>,
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let env: Vec<&str> = self.env.iter().map(|(name, _)| name.as_str()).collect();
        f.debug_struct("Settings")
            .field("argv", &self.argv)
            .field("protocol", &self.protocol)
            .field("timeout", &self.timeout)
            .field("size_limit", &self.size_limit)
            .field("env", &env)
            .field("trim_newline", &self.trim_newline)
            .field("debug_stderr", &self.debug_stderr)
            .field("not_found_exit_codes", &self.not_found_exit_codes)
            .finish_non_exhaustive()
    }
}

impl CommandConfig {
    /// A one-shot configuration running `command`, every other setting at
    /// its default.
    pub fn new<I, S>(command: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            command: command.into_iter().map(Into::into).collect(),
            protocol: Protocol::OneShot,
            timeout: None,
            max_size: None,
            env: Vec::new(),
            raw: None,
            debug_stderr: false,
            not_found_exit_codes: Vec::new(),
            not_found_pattern: None,
        }
    }

    /// Checks every setting and takes the plugin's environment from `env`.
    pub(crate) fn resolve(&self, env: &Environment) -> Result<Settings> {
        let argv = ArgvTemplate::parse(&self.command)?;
        if self.protocol == Protocol::Json {
            if argv.has_placeholders() {
                return Err(Error::config(
                    "with `protocol = \"json\"` the command runs once for many secrets, so it \
                     takes no `{path}` or `{param.NAME}`: each request carries its own path and \
                     parameters",
                ));
            }
            if self.raw.is_some() {
                return Err(Error::config(
                    "`raw` applies to the one-shot protocol only: JSON replies carry exact values",
                ));
            }
            if !self.not_found_exit_codes.is_empty() || self.not_found_pattern.is_some() {
                return Err(Error::config(
                    "`not_found_exit_codes` and `not_found_pattern` apply to the one-shot \
                     protocol only: a JSON plugin answers {\"error\": \"not_found\"}",
                ));
            }
        }
        let timeout = match &self.timeout {
            None => DEFAULT_TIMEOUT,
            Some(text) => hushbox_core::parse_duration(text)
                .filter(|duration| !duration.is_zero())
                .ok_or_else(|| {
                    Error::config(
                        "`timeout` must be a duration such as \"500ms\", \"10s\" or \"2m\"",
                    )
                })?,
        };
        let size_limit = match self.max_size {
            None => DEFAULT_SIZE_LIMIT,
            Some(0) => return Err(Error::config("`max_size` must be at least 1 byte")),
            Some(limit) => limit,
        };
        if self.not_found_exit_codes.contains(&0) {
            return Err(Error::config(
                "`not_found_exit_codes` cannot hold 0, the code of success",
            ));
        }
        let not_found_pattern = match &self.not_found_pattern {
            None => None,
            Some(pattern) => Some(regex_lite::Regex::new(pattern).map_err(|_| {
                Error::config("`not_found_pattern` is not a valid regular expression")
            })?),
        };
        Ok(Settings {
            argv,
            protocol: self.protocol,
            timeout,
            size_limit,
            env: plugin_environment(&self.env, env)?,
            trim_newline: !self.raw.unwrap_or(false),
            debug_stderr: self.debug_stderr,
            not_found_exit_codes: self.not_found_exit_codes.clone(),
            not_found_pattern,
        })
    }
}

/// Variables every plugin gets: where to find programs, and where its CLI
/// keeps its login.
const ALWAYS_PASSED: [&str; 2] = ["PATH", "HOME"];

/// The plugin's environment: `PATH`, `HOME` and the variables matching
/// `patterns`, taken from `env` when the instance is built.
fn plugin_environment(patterns: &[String], env: &Environment) -> Result<Vec<(String, OsString)>> {
    for pattern in patterns {
        let valid = !pattern.is_empty()
            && pattern
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '*');
        if !valid {
            return Err(Error::config(
                "each `env` entry is a variable name, with `*` as a wildcard (\"AZURE_*\")",
            ));
        }
    }
    Ok(env
        .iter()
        .filter(|(name, _)| {
            ALWAYS_PASSED.contains(&name.as_str())
                || patterns.iter().any(|pattern| wildcard_match(pattern, name))
        })
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect())
}

/// Whether `name` matches `pattern`, where `*` stands for any run of
/// characters.
pub(crate) fn wildcard_match(pattern: &str, name: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == name,
        Some((head, tail)) => {
            let Some(rest) = name.strip_prefix(head) else {
                return false;
            };
            // `*` takes 0..=len bytes; names are ASCII (checked above for
            // patterns; a non-ASCII name cannot match a literal part).
            (0..=rest.len())
                .filter(|&skip| rest.is_char_boundary(skip))
                .any(|skip| wildcard_match(tail, &rest[skip..]))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hushbox_core::ErrorKind;

    fn config(toml: &str) -> CommandConfig {
        let table: hushbox_core::toml::Table = hushbox_core::toml::from_str(toml).unwrap();
        CommandConfig::deserialize(hushbox_core::toml::Value::Table(table)).unwrap()
    }

    fn refused(toml: &str) -> String {
        let error = config(toml)
            .resolve(&Environment::default())
            .expect_err("refused");
        assert_eq!(error.kind(), ErrorKind::Config);
        error.to_string()
    }

    #[test]
    fn defaults() {
        let settings = config("command = ['cat', '{path}']")
            .resolve(&Environment::default())
            .unwrap();
        assert_eq!(settings.timeout, DEFAULT_TIMEOUT);
        assert_eq!(settings.size_limit, DEFAULT_SIZE_LIMIT);
        assert!(settings.trim_newline);
        assert_eq!(settings.protocol, Protocol::OneShot);
    }

    #[test]
    fn settings_that_cannot_act_are_refused() {
        assert!(refused("command = ['p', '{path}']\nprotocol = 'json'").contains("no `{path}`"));
        assert!(refused("command = ['p']\nprotocol = 'json'\nraw = true").contains("`raw`"));
        assert!(
            refused("command = ['p']\nprotocol = 'json'\nnot_found_exit_codes = [3]")
                .contains("one-shot")
        );
        assert!(refused("command = ['p']\ntimeout = '10'").contains("duration"));
        assert!(refused("command = ['p']\ntimeout = '0s'").contains("duration"));
        assert!(refused("command = ['p']\nmax_size = 0").contains("max_size"));
        assert!(refused("command = ['p']\nnot_found_exit_codes = [0]").contains("success"));
        assert!(refused("command = ['p']\nnot_found_pattern = '('").contains("regular"));
        assert!(refused("command = ['p']\nenv = ['A B']").contains("wildcard"));
    }

    #[test]
    fn the_environment_is_path_home_and_what_env_lists() {
        let env = Environment::from_pairs([
            ("PATH", "/bin"),
            ("HOME", "/root"),
            ("AZURE_CLIENT_ID", "id"),
            ("AZURE_TENANT", "t"),
            ("OP_SERVICE_ACCOUNT_TOKEN", "tok"),
            ("VAULT_TOKEN", "kept from the plugin"),
        ]);
        let mut settings = config("command = ['p']\nenv = ['AZURE_*', 'OP_SERVICE_ACCOUNT_TOKEN']")
            .resolve(&env)
            .unwrap();
        settings.env.sort();
        let names: Vec<&str> = settings.env.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "AZURE_CLIENT_ID",
                "AZURE_TENANT",
                "HOME",
                "OP_SERVICE_ACCOUNT_TOKEN",
                "PATH"
            ]
        );
    }

    #[test]
    fn wildcards() {
        assert!(wildcard_match("AZURE_*", "AZURE_X"));
        assert!(wildcard_match("AZURE_*", "AZURE_"));
        assert!(!wildcard_match("AZURE_*", "XAZURE_"));
        assert!(wildcard_match("*_TOKEN", "OP_TOKEN"));
        assert!(wildcard_match("A*B*C", "AxxBxC"));
        assert!(!wildcard_match("A*B*C", "AxxCxB"));
        assert!(wildcard_match("*", "ANY"));
        assert!(!wildcard_match("EXACT", "EXACTLY"));
    }
}
