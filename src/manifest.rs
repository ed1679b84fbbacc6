//! The serde model of `hushbox.toml`, and where to find it.
//!
//! Parsing is strict: unknown keys are errors with a line and column. The
//! manifest never holds a credential: backends take theirs from files,
//! variables or their ambient chain, and inline ones are refused.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use hushbox_core::{Environment, Error, Result, Trust, redact_quoted};
use serde::Deserialize;

/// The file name looked for in the current directory and its ancestors.
pub const FILE_NAME: &str = "hushbox.toml";

/// `hushbox.toml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// The manifest format version; only 1 exists.
    pub version: u32,
    /// Backend instances by name; the name is the scheme of their references.
    #[serde(default)]
    pub backends: BTreeMap<String, BackendSection>,
    /// Where and how secret files are written.
    #[serde(default)]
    pub output: OutputSection,
    /// The secrets to deliver, by name (the file name under the output dir).
    #[serde(default)]
    pub secrets: BTreeMap<String, SecretSection>,
    /// What `run` and `exec` do with the environment they pass on.
    #[serde(default)]
    pub env: EnvSection,
    /// Files rendered from the secrets, by name (the file name under the
    /// output dir), written in the same generation as the secrets.
    #[serde(default)]
    pub templates: BTreeMap<String, TemplateSection>,
    /// Defaults for `--watch`: how often, how stale, which hook.
    #[serde(default)]
    pub watch: WatchSection,
}

/// `[templates.NAME]`: a file rendered from declared secrets.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateSection {
    /// A template file, relative to the manifest's directory.
    pub source: Option<String>,
    /// The template text itself (instead of `source`).
    pub inline: Option<String>,
    /// Octal mode of the rendered file (default: `[output].mode`).
    pub mode: Option<String>,
    /// Owner of the rendered file (default: `[output].uid`).
    pub uid: Option<u32>,
    /// Group of the rendered file (default: `[output].gid`).
    pub gid: Option<u32>,
    /// An environment variable that receives the file's path.
    pub env: Option<String>,
    /// An environment variable that receives the rendered text (opt-in).
    pub env_value: Option<String>,
}

/// `[watch]`: the defaults of `exec --watch`, `run --watch` and
/// `inject --watch`. Each secret's `refresh`, `on_change` and `max_stale`
/// take precedence over these.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WatchSection {
    /// How often a secret without `refresh` is re-fetched (default `"5m"`).
    pub interval: Option<String>,
    /// How long hooks wait for more changes before firing (default `"1s"`).
    pub debounce: Option<String>,
    /// How long a secret may go without a successful fetch before `health`
    /// reports unhealthy (default: three intervals).
    pub max_stale: Option<String>,
    /// Stop the program when a secret turns stale (default false).
    #[serde(default)]
    pub fail_on_stale: bool,
    /// Where the watcher keeps its status file (default `..status` in the
    /// output directory).
    pub status_file: Option<String>,
    /// The hook of every change: `"signal:SIGHUP"`, `"restart"` or
    /// `{ exec = ["cmd", "arg"], timeout = "30s" }`.
    pub on_change: Option<toml::Value>,
    /// How long `restart` waits for the program to stop before SIGKILL
    /// (default `"10s"`).
    pub restart_grace: Option<String>,
    /// Remove the secret files when the watcher stops (default false).
    #[serde(default)]
    pub cleanup_on_exit: bool,
}

/// `[env]`: which variables of the environment are references to resolve,
/// and which credential variables the program may keep.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvSection {
    /// Variables resolved as references whatever their scheme names
    /// (`"API_KEY"`, or a prefix such as `"DB_*"`). A variable whose value
    /// names an instance of `[backends]` is resolved without being listed.
    #[serde(default)]
    pub resolve: Vec<String>,
    /// Variables a backend took its credentials from that the program keeps
    /// anyway (`"AWS_*"`, say). Without this, they are removed.
    #[serde(default)]
    pub inherit: Vec<String>,
}

/// `[backends.NAME]`.
#[derive(Debug, Deserialize)]
pub struct BackendSection {
    /// The backend kind: `age`, `file`, …
    pub kind: String,
    /// The rest of the section, checked by the backend's own factory.
    #[serde(flatten)]
    pub settings: toml::Table,
}

/// `[output]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputSection {
    /// The directory secret files go into (default `/run/secrets`).
    pub dir: Option<String>,
    /// Owner of written files.
    pub uid: Option<u32>,
    /// Group of written files.
    pub gid: Option<u32>,
    /// Octal mode of written files, as a string (default `"0400"`).
    pub mode: Option<String>,
    /// Allow an output directory that is not tmpfs or ramfs.
    #[serde(default)]
    pub allow_disk: bool,
    /// How long a commit waits for another writer's lock, e.g. `"10s"`.
    pub lock_timeout: Option<String>,
}

/// `[secrets.NAME]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretSection {
    /// The reference to fetch: `SCHEME://PATH[?PARAMS][#FIELD]`.
    #[serde(rename = "ref")]
    pub reference: String,
    /// An environment variable that receives the file's path (`X_FILE`).
    pub env: Option<String>,
    /// An environment variable that receives the value itself (opt-in).
    pub env_value: Option<String>,
    /// How often to re-fetch, e.g. `"5m"` (for `--watch`).
    pub refresh: Option<String>,
    /// What to do when the value changes (for `--watch`).
    pub on_change: Option<toml::Value>,
    /// How long it may go without a successful fetch before `health`
    /// reports unhealthy (for `--watch`; default `[watch].max_stale`).
    pub max_stale: Option<String>,
    /// Whether a missing secret is skipped instead of failing the run.
    #[serde(default)]
    pub optional: bool,
    /// The Swarm services that get it as a Swarm secret (`swarm sync`).
    pub swarm: Option<SwarmBinding>,
}

/// `[secrets.NAME] swarm = { … }`: how `hushbox swarm sync` hands a secret
/// to Swarm services.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SwarmBinding {
    /// The services that mount it (with `--stack S`, `S_` is prepended).
    pub services: Vec<String>,
    /// The file name under `/run/secrets` in the task (default: the
    /// secret's name). It never changes across rotations.
    pub target: Option<String>,
    /// Owner of the file in the task (default "0").
    pub uid: Option<String>,
    /// Group of the file in the task (default "0").
    pub gid: Option<String>,
    /// Mode of the file in the task, octal (default "0444", Swarm's).
    pub mode: Option<String>,
}

impl Manifest {
    /// Parses manifest text. `origin` names the file in errors.
    pub fn parse(text: &str, origin: &Path) -> Result<Self> {
        let manifest: Manifest = toml::from_str(text).map_err(|error| {
            let place = match error.span() {
                Some(span) => {
                    let (line, column) = line_and_column(text, span.start);
                    format!("{}:{line}:{column}", origin.display())
                }
                None => origin.display().to_string(),
            };
            // toml and serde quote the offending input; a mistaken value
            // could be a secret, so quoted text is masked.
            let message = redact_quoted(error.message().trim());
            Error::config(message).with_subject(place)
        })?;
        if manifest.version != 1 {
            return Err(Error::config(format!(
                "manifest version {} is not supported (this hushbox reads version 1)",
                manifest.version
            ))
            .with_subject(origin.display()));
        }
        Ok(manifest)
    }

    /// Reads and parses the manifest at `path`, once `trust` accepts it:
    /// a manifest decides where secrets come from and where they go, so one
    /// that another user wrote or could replace is refused (see
    /// [`hushbox_core::trust`]). What is parsed is what was checked: the
    /// text is read from the descriptor that passed.
    pub fn load(path: &Path, trust: &Trust) -> Result<Self> {
        let mut file = trust.open_file(path, "the manifest")?;
        let mut text = String::new();
        file.read_to_string(&mut text).map_err(|error| {
            Error::io("cannot read the manifest", error).with_subject(path.display())
        })?;
        Self::parse(&text, path)
    }
}

fn line_and_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map_or(0, |index| index + 1) + 1;
    (line, column)
}

/// Finds the manifest: `--config FILE`, else `HUSHBOX_CONFIG`, else
/// `hushbox.toml` in `cwd` or its nearest ancestor. `None` when there is none
/// (hushbox then works from the default backend instances alone).
///
/// Finding is not trusting: [`Manifest::load`] checks the file found, and
/// a nearest manifest that fails the check is an error, never skipped for
/// one further up.
pub fn locate(flag: Option<&Path>, env: &Environment, cwd: &Path) -> Result<Option<PathBuf>> {
    let explicit = flag
        .map(Path::to_path_buf)
        // An empty variable counts as unset, as hushbox's other variables.
        .or_else(|| {
            env.get_os("HUSHBOX_CONFIG")
                .filter(|value| !value.is_empty())
                .map(PathBuf::from)
        });
    if let Some(path) = explicit {
        let origin = if flag.is_some() {
            "--config"
        } else {
            "HUSHBOX_CONFIG"
        };
        let path = if path.is_absolute() {
            path
        } else {
            cwd.join(path)
        };
        match std::fs::metadata(&path) {
            Ok(metadata) if metadata.is_file() => {}
            Ok(_) => {
                return Err(Error::config(format!(
                    "the manifest {} (from {origin}) is not a file; name a hushbox.toml",
                    path.display()
                )));
            }
            Err(error) => {
                // Named on purpose, so a missing one is a configuration
                // error (78), not a missing secret.
                let error = Error::io(
                    format!(
                        "cannot open the manifest {} (from {origin})",
                        path.display()
                    ),
                    error,
                );
                return Err(Error::config(error.message().to_owned()).with_hint(
                    "fix the path, or leave --config and HUSHBOX_CONFIG unset to use \
                     the hushbox.toml of this directory or the nearest one above it",
                ));
            }
        }
        return Ok(Some(path));
    }
    Ok(cwd
        .ancestors()
        .map(|dir| dir.join(FILE_NAME))
        .find(|candidate| candidate.is_file()))
}

/// The error of a command that needs a manifest and found none: where
/// hushbox looked, and how to make one.
pub fn not_found_error(cwd: &Path) -> Error {
    let searched: Vec<String> = cwd
        .ancestors()
        .map(|dir| dir.display().to_string())
        .collect();
    Error::config(format!(
        "no {FILE_NAME} found: looked in {} (the current directory and every one above it), \
         and neither --config nor HUSHBOX_CONFIG is set; run this in the project's directory, \
         create one (`hushbox store init` or `hushbox store import .env` writes it), \
         or pass --config FILE",
        searched.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use hushbox_core::ErrorKind;

    fn parse(text: &str) -> Result<Manifest> {
        Manifest::parse(text, Path::new("hushbox.toml"))
    }

    #[test]
    fn full_manifest_parses() {
        let manifest = parse(
            r#"
version = 1
[backends.team]
kind = "age"
store = "./secrets"
[output]
dir = "/run/secrets"
uid = 1000
mode = "0440"
[secrets.db_password]
ref = "team://prod/db"
env = "DB_PASSWORD_FILE"
[secrets.api_key]
ref = "file://api.json#key"
env_value = "API_KEY"
optional = true
"#,
        )
        .unwrap();
        assert_eq!(manifest.backends["team"].kind, "age");
        assert_eq!(
            manifest.backends["team"].settings["store"].as_str(),
            Some("./secrets")
        );
        assert_eq!(manifest.output.uid, Some(1000));
        assert!(manifest.secrets["api_key"].optional);
        assert_eq!(manifest.secrets["db_password"].reference, "team://prod/db");
    }

    #[test]
    fn unknown_key_names_line_and_column() {
        let error =
            parse("version = 1\n[secrets.a]\nref = \"age://a\"\nenvv = \"X\"\n").unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Config);
        assert_eq!(error.subject(), Some("hushbox.toml:4:1"));
        assert!(error.message().contains("envv"), "{error}");
    }

    #[test]
    fn type_errors_do_not_quote_the_value() {
        let error = parse("version = 1\n[output]\nuid = \"hunter2-canary\"\n").unwrap_err();
        assert!(!error.to_string().contains("canary"), "{error}");
        assert_eq!(error.subject(), Some("hushbox.toml:3:7"));
    }

    #[test]
    fn other_versions_are_refused() {
        assert!(
            parse("version = 2")
                .unwrap_err()
                .to_string()
                .contains("version 2")
        );
        assert!(parse("").is_err());
    }

    #[test]
    fn locate_walks_up_and_honours_flag_and_env() {
        let root = tempfile::tempdir().unwrap();
        let nested = root.path().join("a/b");
        std::fs::create_dir_all(&nested).unwrap();
        let manifest = root.path().join(FILE_NAME);
        std::fs::write(&manifest, "version = 1").unwrap();
        let env = Environment::default();
        assert_eq!(locate(None, &env, &nested).unwrap(), Some(manifest.clone()));
        let other = root.path().join("other.toml");
        std::fs::write(&other, "version = 1").unwrap();
        let env_with = Environment::from_pairs([("HUSHBOX_CONFIG", other.as_os_str())]);
        assert_eq!(
            locate(None, &env_with, &nested).unwrap(),
            Some(other.clone())
        );
        let missing = locate(Some(Path::new("nope.toml")), &env, &nested).unwrap_err();
        assert_eq!(missing.kind(), ErrorKind::Config);
    }

    #[test]
    fn a_nearest_manifest_others_can_replace_is_an_error_not_skipped() {
        use std::os::unix::fs::PermissionsExt;
        let root = tempfile::tempdir().unwrap();
        std::fs::write(root.path().join(FILE_NAME), "version = 1").unwrap();
        let shared = root.path().join("shared");
        std::fs::create_dir(&shared).unwrap();
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o777)).unwrap();
        let planted = shared.join(FILE_NAME);
        std::fs::write(&planted, "version = 1").unwrap();
        let found = locate(None, &Environment::default(), &shared).unwrap();
        assert_eq!(found.as_deref(), Some(planted.as_path()));
        let error = Manifest::load(&planted, &Trust::default()).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Config);
        let message = error.to_string();
        assert!(
            message.contains("refusing to use the manifest"),
            "{message}"
        );
        assert!(message.contains("without the sticky bit"), "{message}");
    }
}
