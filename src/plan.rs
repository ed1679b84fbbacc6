//! The plan: manifest + flags + environment references, validated, with no
//! I/O done yet. Everything a run will do is decided here, so it is tested
//! here without files, servers or processes.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use hushbox_core::{Environment, Error, Result, SecretRef};

use crate::manifest::{Manifest, SecretSection, TemplateSection};
use crate::output::validate_secret_name;

/// Where secret files go when neither the manifest nor a flag says.
pub const DEFAULT_OUTPUT_DIR: &str = "/run/secrets";
/// The mode of secret files when the manifest does not say.
pub const DEFAULT_MODE: u32 = 0o400;
/// How long a commit waits for another writer's lock when the manifest does
/// not say (`[output].lock_timeout`).
pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(10);

/// One backend instance to build.
#[derive(Debug, Clone)]
pub struct BackendPlan {
    /// The backend kind (`age`, `file`, …).
    pub kind: String,
    /// Its settings from the manifest (empty for a default instance).
    pub settings: toml::Table,
    /// Whether the manifest configures it (rather than it being a default).
    pub configured: bool,
}

/// Where and how secret files are written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputPlan {
    /// The output directory.
    pub dir: PathBuf,
    /// Owner of the files, if it should be set.
    pub uid: Option<u32>,
    /// Group of the files, if it should be set.
    pub gid: Option<u32>,
    /// File mode.
    pub mode: u32,
    /// Whether a non-memory filesystem is allowed.
    pub allow_disk: bool,
    /// How long a commit waits for another writer's lock on the directory.
    pub lock_timeout: Duration,
}

/// What to do when a watched secret changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OnChange {
    /// Send this signal to the child.
    Signal(nix::sys::signal::Signal),
    /// Stop the child and start it again.
    Restart,
    /// Run this command (argv, no shell), killed after `timeout`.
    Exec {
        /// The program and its arguments.
        command: Vec<String>,
        /// How long it may run.
        timeout: Duration,
    },
}

impl std::fmt::Display for OnChange {
    /// How `check` and the logs show a hook: the signal, `restart`, or the
    /// program's name (its arguments are the user's and are not repeated).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Signal(signal) => write!(f, "signal:{}", signal.as_str()),
            Self::Restart => f.write_str("restart"),
            Self::Exec { command, timeout } => {
                write!(f, "exec {} (timeout {timeout:?})", command[0])
            }
        }
    }
}

/// How long an `exec` hook may run when the manifest does not say.
pub const DEFAULT_HOOK_TIMEOUT: Duration = Duration::from_secs(30);
/// How often `--watch` re-fetches a secret without `refresh`.
pub const DEFAULT_WATCH_INTERVAL: Duration = Duration::from_secs(300);
/// How long hooks wait for more changes before they fire.
pub const DEFAULT_DEBOUNCE: Duration = Duration::from_secs(1);
/// How long `restart` waits for the program to stop before SIGKILL.
pub const DEFAULT_RESTART_GRACE: Duration = Duration::from_secs(10);
/// The status file's name in the output directory unless `[watch]` says.
pub const DEFAULT_STATUS_FILE: &str = "..status";

/// `[watch]`, with defaults applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchPlan {
    /// The refresh interval of secrets without their own.
    pub interval: Duration,
    /// How long hooks wait for more changes.
    pub debounce: Duration,
    /// The staleness limit of secrets without their own (`None`: three of
    /// the secret's intervals).
    pub max_stale: Option<Duration>,
    /// Stop the program when a secret turns stale.
    pub fail_on_stale: bool,
    /// The status file `health` reads.
    pub status_file: PathBuf,
    /// The hook of every change.
    pub on_change: Option<OnChange>,
    /// How long `restart` waits before SIGKILL.
    pub restart_grace: Duration,
    /// Remove the secret files when the watcher stops.
    pub cleanup_on_exit: bool,
    /// Whether the manifest says anything about watching (a `[watch]` key,
    /// a `refresh`, an `on_change` or a `max_stale`): without `--watch`,
    /// that earns a warning.
    pub configured: bool,
}

impl WatchPlan {
    /// A secret's refresh interval.
    pub fn interval_of(&self, secret: &SecretPlan) -> Duration {
        secret.refresh.unwrap_or(self.interval)
    }

    /// A secret's staleness limit.
    pub fn max_stale_of(&self, secret: &SecretPlan) -> Duration {
        secret
            .max_stale
            .or(self.max_stale)
            .unwrap_or_else(|| self.interval_of(secret).saturating_mul(3))
    }

    /// The hooks a change of `secret` fires: its own, then the global one.
    pub fn hooks_of<'a>(&'a self, secret: &'a SecretPlan) -> impl Iterator<Item = &'a OnChange> {
        secret.on_change.iter().chain(self.on_change.iter())
    }
}

/// Where a secret came from, for messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// `[secrets.NAME]` in the manifest.
    Manifest,
    /// An environment variable whose value is a reference.
    Environment(String),
}

/// One secret to deliver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretPlan {
    /// The secret's name: its file name when it is written to a file.
    pub name: String,
    /// What to fetch.
    pub reference: SecretRef,
    /// Whether it is written as a file under the output directory.
    pub file: bool,
    /// A variable that receives the file's path.
    pub env_path: Option<String>,
    /// A variable that receives the value.
    pub env_value: Option<String>,
    /// Whether a missing secret is skipped rather than fatal.
    pub optional: bool,
    /// How often `--watch` re-fetches it.
    pub refresh: Option<Duration>,
    /// What `--watch` does when it changes.
    pub on_change: Option<OnChange>,
    /// How long `--watch` may go without fetching it before `health`
    /// reports unhealthy.
    pub max_stale: Option<Duration>,
    /// Where it was declared.
    pub origin: Origin,
}

/// Where a template's text comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplateSource {
    /// `source = "…"`: a file, made absolute against the manifest's
    /// directory; read when the templates are loaded, not by the plan.
    File(PathBuf),
    /// `inline = "…"`: the text itself.
    Inline(String),
}

/// One template to render into the generation (`[templates.NAME]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplatePlan {
    /// The file name of the rendered output under the output directory.
    pub name: String,
    /// The template text's origin.
    pub source: TemplateSource,
    /// The rendered file's own mode, uid and gid (`None`: `[output]`'s).
    pub mode: Option<u32>,
    /// See `mode`.
    pub uid: Option<u32>,
    /// See `mode`.
    pub gid: Option<u32>,
    /// A variable that receives the rendered file's path.
    pub env_path: Option<String>,
    /// A variable that receives the rendered text.
    pub env_value: Option<String>,
}

impl TemplatePlan {
    /// How the template is named in messages: `[templates.NAME]`.
    pub fn label(&self) -> String {
        format!("[templates.{}]", self.name)
    }
}

/// A validated plan.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The manifest the plan came from, if any.
    pub manifest_path: Option<PathBuf>,
    /// The directory relative paths are resolved against.
    pub base_dir: PathBuf,
    /// Backend instances, by name (= scheme).
    pub backends: BTreeMap<String, BackendPlan>,
    /// The output settings.
    pub output: OutputPlan,
    /// The secrets, manifest ones first (by name), then environment ones.
    pub secrets: Vec<SecretPlan>,
    /// Environment variables that held references: the child does not get
    /// them as they were.
    pub consumed_env: BTreeSet<String>,
    /// `[env].inherit`: credential variables the child keeps although a
    /// backend of this run took its credentials from them.
    pub inherit_env: Vec<VariablePattern>,
    /// `[templates]`, by name: files rendered from the manifest's secrets.
    pub templates: Vec<TemplatePlan>,
    /// What `--watch` does.
    pub watch: WatchPlan,
}

/// A variable name, or a prefix ending in `*`, from `[env]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VariablePattern {
    text: String,
}

impl VariablePattern {
    /// Parses `NAME` or `PREFIX*`; anything else is a configuration error.
    pub fn parse(text: &str) -> Result<Self> {
        let name = text.strip_suffix('*').unwrap_or(text);
        // `"*"` alone is every variable: an explicit opt-in too.
        let valid = (text == "*" || !name.is_empty())
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !name.starts_with(|c: char| c.is_ascii_digit());
        if !valid {
            return Err(Error::config(format!(
                "`{text}` is not a variable name or a prefix ending in `*` (like \"API_KEY\" or \"DB_*\")"
            )));
        }
        Ok(Self {
            text: text.to_owned(),
        })
    }

    /// Whether `variable` is this name, or starts with this prefix.
    pub fn matches(&self, variable: &str) -> bool {
        match self.text.strip_suffix('*') {
            Some(prefix) => variable.starts_with(prefix),
            None => variable == self.text,
        }
    }
}

fn patterns(texts: &[String], key: &str) -> Result<Vec<VariablePattern>> {
    texts
        .iter()
        .map(|text| VariablePattern::parse(text).map_err(|error| error.with_subject(key)))
        .collect()
}

/// What the command line adds to a plan.
#[derive(Debug, Clone)]
pub struct PlanInputs<'a> {
    /// The manifest and its path, if one was found.
    pub manifest: Option<(&'a Manifest, &'a Path)>,
    /// The directory relative paths resolve against without a manifest.
    pub cwd: &'a Path,
    /// Backend kinds that have a default instance (see
    /// `Registry::default_kinds`), named as its kind.
    pub kinds: Vec<&'static str>,
    /// Whether environment variables holding references are resolved (`run`
    /// and `exec`).
    pub env_references: bool,
    /// `--resolve-env` on the command line: more `[env].resolve` patterns.
    pub resolve_env: &'a [String],
    /// `--dir` on the command line.
    pub output_dir: Option<PathBuf>,
    /// `--allow-disk` on the command line.
    pub allow_disk: bool,
}

impl Default for PlanInputs<'_> {
    fn default() -> Self {
        Self {
            manifest: None,
            cwd: Path::new("/"),
            kinds: Vec::new(),
            env_references: false,
            resolve_env: &[],
            output_dir: None,
            allow_disk: false,
        }
    }
}

impl Plan {
    /// Builds and validates a plan. No I/O.
    pub fn build(inputs: &PlanInputs<'_>, env: &Environment) -> Result<Plan> {
        let (manifest, manifest_path) = match inputs.manifest {
            Some((manifest, path)) => (Some(manifest), Some(path)),
            None => (None, None),
        };
        let base_dir = manifest_path
            .and_then(Path::parent)
            .map(Path::to_path_buf)
            .unwrap_or_else(|| inputs.cwd.to_path_buf());

        let mut backends = BTreeMap::new();
        for kind in &inputs.kinds {
            backends.insert(
                (*kind).to_owned(),
                BackendPlan {
                    kind: (*kind).to_owned(),
                    settings: toml::Table::new(),
                    configured: false,
                },
            );
        }
        if let Some(manifest) = manifest {
            for (name, section) in &manifest.backends {
                if SecretRef::new(name, "x").is_err() {
                    return Err(Error::config(
                        "a backend name is used as a reference scheme: lower-case letters, digits, +, ., -, _, starting with a letter",
                    )
                    .with_subject(format!("[backends.{name}]")));
                }
                backends.insert(
                    name.clone(),
                    BackendPlan {
                        kind: section.kind.clone(),
                        settings: section.settings.clone(),
                        configured: true,
                    },
                );
            }
        }

        let output = output_plan(manifest, inputs)?;
        let mut secrets = Vec::new();
        if let Some(manifest) = manifest {
            for (name, section) in &manifest.secrets {
                secrets.push(
                    manifest_secret(name, section, &backends)
                        .map_err(|error| error.with_subject(format!("[secrets.{name}]")))?,
                );
            }
        }
        let empty = crate::manifest::EnvSection::default();
        let env_section = manifest.map_or(&empty, |manifest| &manifest.env);
        let mut resolve = patterns(&env_section.resolve, "[env].resolve")?;
        resolve.extend(patterns(inputs.resolve_env, "--resolve-env")?);
        let inherit_env = patterns(&env_section.inherit, "[env].inherit")?;
        let mut consumed_env = BTreeSet::new();
        if inputs.env_references {
            environment_secrets(env, &backends, &resolve, &mut secrets, &mut consumed_env)?;
        }
        let mut templates = Vec::new();
        if let Some(manifest) = manifest {
            for (name, section) in &manifest.templates {
                templates.push(
                    template_plan(name, section, &base_dir)
                        .map_err(|error| error.with_subject(format!("[templates.{name}]")))?,
                );
            }
        }
        check_conflicts(&secrets, env)?;
        check_template_conflicts(&secrets, &templates, env)?;
        let watch = watch_plan(manifest, &base_dir, &output, &secrets)?;
        Ok(Plan {
            manifest_path: manifest_path.map(Path::to_path_buf),
            base_dir,
            backends,
            output,
            secrets,
            consumed_env,
            inherit_env,
            templates,
            watch,
        })
    }

    /// The secrets that are written as files.
    pub fn file_secrets(&self) -> impl Iterator<Item = &SecretPlan> {
        self.secrets.iter().filter(|secret| secret.file)
    }
}

fn watch_plan(
    manifest: Option<&Manifest>,
    base_dir: &Path,
    output: &OutputPlan,
    secrets: &[SecretPlan],
) -> Result<WatchPlan> {
    let empty = crate::manifest::WatchSection::default();
    let section = manifest.map_or(&empty, |manifest| &manifest.watch);
    let duration = |text: &Option<String>, key: &str, default: Option<Duration>| {
        text.as_deref()
            .map(parse_duration)
            .transpose()
            .map_err(|error| error.with_subject(format!("[watch].{key}")))
            .map(|parsed| parsed.or(default))
    };
    let status_file = match section.status_file.as_deref() {
        None => output.dir.join(DEFAULT_STATUS_FILE),
        Some("") => {
            return Err(
                Error::config("the status file needs a path").with_subject("[watch].status_file")
            );
        }
        // Relative to the manifest's directory, as every path in it.
        Some(path) => base_dir.join(path),
    };
    let configured = section.interval.is_some()
        || section.debounce.is_some()
        || section.max_stale.is_some()
        || section.fail_on_stale
        || section.status_file.is_some()
        || section.on_change.is_some()
        || section.restart_grace.is_some()
        || section.cleanup_on_exit
        || secrets.iter().any(|secret| {
            secret.refresh.is_some() || secret.on_change.is_some() || secret.max_stale.is_some()
        });
    Ok(WatchPlan {
        interval: duration(&section.interval, "interval", Some(DEFAULT_WATCH_INTERVAL))?
            .unwrap_or(DEFAULT_WATCH_INTERVAL),
        debounce: match section.debounce.as_deref() {
            // Zero is a real choice here: fire at once.
            Some("0") | Some("0s") | Some("0ms") => Duration::ZERO,
            _ => duration(&section.debounce, "debounce", Some(DEFAULT_DEBOUNCE))?
                .unwrap_or(DEFAULT_DEBOUNCE),
        },
        max_stale: duration(&section.max_stale, "max_stale", None)?,
        fail_on_stale: section.fail_on_stale,
        status_file,
        on_change: section
            .on_change
            .as_ref()
            .map(parse_on_change)
            .transpose()
            .map_err(|error| error.with_subject("[watch].on_change"))?,
        restart_grace: duration(
            &section.restart_grace,
            "restart_grace",
            Some(DEFAULT_RESTART_GRACE),
        )?
        .unwrap_or(DEFAULT_RESTART_GRACE),
        cleanup_on_exit: section.cleanup_on_exit,
        configured,
    })
}

fn output_plan(manifest: Option<&Manifest>, inputs: &PlanInputs<'_>) -> Result<OutputPlan> {
    let section = manifest.map(|manifest| &manifest.output);
    let dir = match (&inputs.output_dir, section.and_then(|s| s.dir.as_ref())) {
        (Some(flag), _) => flag.clone(),
        (None, Some(dir)) => PathBuf::from(dir),
        (None, None) => PathBuf::from(DEFAULT_OUTPUT_DIR),
    };
    let mode = match section.and_then(|s| s.mode.as_deref()) {
        None => DEFAULT_MODE,
        Some(text) => parse_mode(text).map_err(|error| error.with_subject("[output].mode"))?,
    };
    let lock_timeout = match section.and_then(|s| s.lock_timeout.as_deref()) {
        None => DEFAULT_LOCK_TIMEOUT,
        Some(text) => {
            parse_duration(text).map_err(|error| error.with_subject("[output].lock_timeout"))?
        }
    };
    Ok(OutputPlan {
        dir,
        uid: owner_id(section.and_then(|s| s.uid), "uid")?,
        gid: owner_id(section.and_then(|s| s.gid), "gid")?,
        mode,
        allow_disk: inputs.allow_disk || section.is_some_and(|s| s.allow_disk),
        lock_timeout,
    })
}

/// Refuses 4294967295, which is `(uid_t)-1`: `chown` reads it as "leave
/// unchanged", so the files would silently keep hushbox's own owner.
fn owner_id(id: Option<u32>, key: &str) -> Result<Option<u32>> {
    match id {
        Some(u32::MAX) => Err(Error::config(format!(
            "{key} 4294967295 is (uid_t)-1, which chown reads as \"leave unchanged\", so the \
             files would keep hushbox's own owner; give a real {key} (at most 4294967294), or \
             leave the key out to keep the writer's"
        ))
        .with_subject(format!("[output].{key}"))),
        id => Ok(id),
    }
}

/// Parses an octal file mode such as `"0400"`. Modes that let group or
/// others write are refused: nobody but hushbox should change a secret file.
///
/// Errors here and below say what is expected without repeating the text:
/// a value in the wrong field may be a pasted secret. The caller names the
/// field.
pub fn parse_mode(text: &str) -> Result<u32> {
    let mode = u32::from_str_radix(text.trim_start_matches("0o"), 8)
        .ok()
        .filter(|mode| *mode <= 0o777)
        .ok_or_else(|| Error::config("the value is not an octal file mode like \"0400\""))?;
    if mode & 0o022 != 0 {
        return Err(Error::config(
            "the mode lets group or others write secret files; use a mode like \"0400\" or \"0440\"",
        ));
    }
    Ok(mode)
}

fn parse_reference(text: &str, backends: &BTreeMap<String, BackendPlan>) -> Result<SecretRef> {
    let reference: SecretRef = text.parse()?;
    if !backends.contains_key(reference.scheme()) {
        let known: Vec<&str> = backends.keys().map(String::as_str).collect();
        return Err(Error::config(format!(
            "no backend is named `{}` (known: {})",
            reference.scheme(),
            known.join(", ")
        ))
        .with_subject(&reference));
    }
    Ok(reference)
}

fn manifest_secret(
    name: &str,
    section: &SecretSection,
    backends: &BTreeMap<String, BackendPlan>,
) -> Result<SecretPlan> {
    validate_secret_name(name)?;
    let field = |key: &'static str| {
        move |error: Error| error.with_subject(format!("[secrets.{name}].{key}"))
    };
    if let Some(variable) = &section.env {
        validate_variable_name(variable).map_err(field("env"))?;
    }
    if let Some(variable) = &section.env_value {
        validate_variable_name(variable).map_err(field("env_value"))?;
    }
    Ok(SecretPlan {
        name: name.to_owned(),
        reference: parse_reference(&section.reference, backends)?,
        file: true,
        env_path: section.env.clone(),
        env_value: section.env_value.clone(),
        optional: section.optional,
        refresh: section
            .refresh
            .as_deref()
            .map(parse_duration)
            .transpose()
            .map_err(field("refresh"))?,
        on_change: section
            .on_change
            .as_ref()
            .map(parse_on_change)
            .transpose()
            .map_err(field("on_change"))?,
        max_stale: section
            .max_stale
            .as_deref()
            .map(parse_duration)
            .transpose()
            .map_err(field("max_stale"))?,
        origin: Origin::Manifest,
    })
}

/// Turns the environment variables the user opted into into secrets: those
/// `[env].resolve` lists, and those whose value names an instance the
/// manifest configures under `[backends]`. Any other value is the program's
/// own: a `file:///…` or `https://…` URL in the environment (Spring's
/// `SPRING_CONFIG_IMPORT`, say) reaches it untouched.
fn environment_secrets(
    env: &Environment,
    backends: &BTreeMap<String, BackendPlan>,
    resolve: &[VariablePattern],
    secrets: &mut Vec<SecretPlan>,
    consumed: &mut BTreeSet<String>,
) -> Result<()> {
    for (variable, value) in env.iter() {
        let Some(text) = value.to_str() else { continue };
        if !SecretRef::looks_like_reference(text) {
            continue;
        }
        let scheme = text.split_once("://").map_or("", |(scheme, _)| scheme);
        // Only a scheme hushbox serves makes a variable a reference (an
        // `https://` URL is left alone), and only when the user opted in.
        let Some(backend) = backends.get(scheme) else {
            continue;
        };
        let listed = resolve.iter().any(|pattern| pattern.matches(variable));
        if !listed && !backend.configured {
            continue;
        }
        let reference = parse_reference(text, backends)
            .map_err(|error| error.with_subject(format!("${variable}")))?;
        consumed.insert(variable.clone());
        let base = variable
            .strip_suffix("_FILE")
            .filter(|base| !base.is_empty());
        let plan = match base {
            Some(base) => {
                if env.get_os(base).is_some() {
                    return Err(Error::config(format!(
                        "both {base} and {variable} are set; set only one (the _FILE convention)"
                    )));
                }
                let name = base.to_ascii_lowercase();
                validate_secret_name(&name)
                    .map_err(|error| error.with_subject(format!("${variable}")))?;
                SecretPlan {
                    name,
                    reference,
                    file: true,
                    env_path: Some(variable.clone()),
                    env_value: None,
                    optional: false,
                    refresh: None,
                    on_change: None,
                    max_stale: None,
                    origin: Origin::Environment(variable.clone()),
                }
            }
            None => SecretPlan {
                name: variable.clone(),
                reference,
                file: false,
                env_path: None,
                env_value: Some(variable.clone()),
                optional: false,
                refresh: None,
                on_change: None,
                max_stale: None,
                origin: Origin::Environment(variable.clone()),
            },
        };
        secrets.push(plan);
    }
    Ok(())
}

fn template_plan(name: &str, section: &TemplateSection, base_dir: &Path) -> Result<TemplatePlan> {
    validate_secret_name(name)?;
    let field = |key: &'static str| {
        move |error: Error| error.with_subject(format!("[templates.{name}].{key}"))
    };
    let source = match (&section.source, &section.inline) {
        (Some(path), None) => TemplateSource::File(base_dir.join(path)),
        (None, Some(text)) => TemplateSource::Inline(text.clone()),
        _ => {
            return Err(Error::config(
                "a template takes exactly one of `source = \"FILE\"` or `inline = \"TEXT\"`",
            ));
        }
    };
    for (key, variable) in [("env", &section.env), ("env_value", &section.env_value)] {
        if let Some(variable) = variable {
            validate_variable_name(variable).map_err(field(key))?;
        }
    }
    let owner = |id: Option<u32>, key: &'static str| {
        owner_id(id, key).map_err(|error| {
            let message = error.message().to_owned();
            Error::config(message).with_subject(format!("[templates.{name}].{key}"))
        })
    };
    Ok(TemplatePlan {
        name: name.to_owned(),
        source,
        mode: section
            .mode
            .as_deref()
            .map(parse_mode)
            .transpose()
            .map_err(field("mode"))?,
        uid: owner(section.uid, "uid")?,
        gid: owner(section.gid, "gid")?,
        env_path: section.env.clone(),
        env_value: section.env_value.clone(),
    })
}

/// A template's file and variables must not collide with a secret's, nor
/// with another template's (templates are unique by name already).
fn check_template_conflicts(
    secrets: &[SecretPlan],
    templates: &[TemplatePlan],
    env: &Environment,
) -> Result<()> {
    let mut variables: BTreeSet<&str> = secrets
        .iter()
        .flat_map(|secret| [&secret.env_path, &secret.env_value])
        .flatten()
        .map(String::as_str)
        .collect();
    for template in templates {
        if secrets
            .iter()
            .any(|secret| secret.file && secret.name == template.name)
        {
            return Err(Error::config(format!(
                "a secret and a template would be written to the same file `{}`",
                template.name
            ))
            .with_subject(template.label()));
        }
        for variable in [&template.env_path, &template.env_value]
            .into_iter()
            .flatten()
        {
            if !variables.insert(variable.as_str()) {
                return Err(Error::config(format!(
                    "two secrets or templates set the same variable {variable}"
                ))
                .with_subject(template.label()));
            }
        }
        if let Some(base) = template
            .env_path
            .as_deref()
            .and_then(|variable| variable.strip_suffix("_FILE"))
            && env.get_os(base).is_some()
        {
            return Err(Error::config(format!(
                "{base} is set in the environment while this template sets {base}_FILE; unset {base} (the _FILE convention allows only one)"
            ))
            .with_subject(template.label()));
        }
    }
    Ok(())
}

fn check_conflicts(secrets: &[SecretPlan], env: &Environment) -> Result<()> {
    let mut files = BTreeSet::new();
    let mut variables = BTreeSet::new();
    for secret in secrets {
        let describe = || match &secret.origin {
            Origin::Manifest => format!("[secrets.{}]", secret.name),
            Origin::Environment(variable) => format!("${variable}"),
        };
        if secret.file && !files.insert(secret.name.as_str()) {
            return Err(Error::config(format!(
                "two secrets would be written to the same file `{}`",
                secret.name
            ))
            .with_subject(describe()));
        }
        for variable in [&secret.env_path, &secret.env_value].into_iter().flatten() {
            if !variables.insert(variable.as_str()) {
                return Err(
                    Error::config(format!("two secrets set the same variable {variable}"))
                        .with_subject(describe()),
                );
            }
        }
        let manifest_file_variable = secret
            .env_path
            .as_deref()
            .filter(|_| secret.origin == Origin::Manifest)
            .and_then(|variable| variable.strip_suffix("_FILE"));
        if let Some(base) = manifest_file_variable
            && env.get_os(base).is_some()
        {
            return Err(Error::config(format!(
                "{base} is set in the environment while this secret sets {base}_FILE; unset {base} (the _FILE convention allows only one)"
            ))
            .with_subject(describe()));
        }
    }
    Ok(())
}

fn validate_variable_name(name: &str) -> Result<()> {
    let mut chars = name.chars();
    let valid = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if valid {
        Ok(())
    } else {
        Err(Error::config(
            "the value is not a valid environment variable name \
             (letters, digits and _, not starting with a digit)",
        ))
    }
}

/// Parses `"500ms"`, `"30s"`, `"5m"`, `"1h"`, `"1d"`.
pub fn parse_duration(text: &str) -> Result<Duration> {
    let invalid = || Error::config("the value is not a duration like \"30s\", \"5m\" or \"1h\"");
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(invalid)?;
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().map_err(|_| invalid())?;
    // Checked: a huge number must be refused, not wrap or panic.
    let seconds = |factor: u64| number.checked_mul(factor).map(Duration::from_secs);
    let duration = match unit {
        "ms" => Some(Duration::from_millis(number)),
        "s" => seconds(1),
        "m" => seconds(60),
        "h" => seconds(3600),
        "d" => seconds(86_400),
        _ => None,
    }
    .ok_or_else(invalid)?;
    if duration.is_zero() {
        return Err(invalid());
    }
    Ok(duration)
}

fn parse_on_change(value: &toml::Value) -> Result<OnChange> {
    let invalid = || {
        Error::config(
            "on_change takes \"signal:SIGHUP\", \"restart\" or { exec = [\"cmd\", \"arg\"], timeout = \"30s\" }",
        )
    };
    match value {
        toml::Value::String(text) if text == "restart" => Ok(OnChange::Restart),
        toml::Value::String(text) => {
            let name = text.strip_prefix("signal:").ok_or_else(invalid)?;
            let full = if name.starts_with("SIG") {
                name.to_owned()
            } else {
                format!("SIG{name}")
            };
            nix::sys::signal::Signal::from_str(&full)
                .map(OnChange::Signal)
                .map_err(|_| {
                    Error::config("the value names no signal (expected \"signal:SIGHUP\", \"signal:TERM\", …)")
                })
        }
        toml::Value::Table(table) => {
            if table.keys().any(|key| key != "exec" && key != "timeout") {
                return Err(invalid());
            }
            let command: Vec<String> = table
                .get("exec")
                .and_then(toml::Value::as_array)
                .ok_or_else(invalid)?
                .iter()
                .map(|item| item.as_str().map(str::to_owned))
                .collect::<Option<_>>()
                .ok_or_else(invalid)?;
            if command.is_empty() || command[0].is_empty() {
                return Err(invalid());
            }
            let timeout = match table.get("timeout") {
                None => DEFAULT_HOOK_TIMEOUT,
                Some(toml::Value::String(text)) => parse_duration(text)?,
                Some(_) => return Err(invalid()),
            };
            Ok(OnChange::Exec { command, timeout })
        }
        _ => Err(invalid()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hushbox_core::ErrorKind;

    fn plan_with(manifest: &str, env: &[(&str, &str)], env_references: bool) -> Result<Plan> {
        let manifest = Manifest::parse(manifest, Path::new("/p/hushbox.toml"))?;
        let inputs = PlanInputs {
            manifest: Some((&manifest, Path::new("/p/hushbox.toml"))),
            cwd: Path::new("/cwd"),
            kinds: vec!["age", "file"],
            env_references,
            output_dir: None,
            allow_disk: false,
            ..Default::default()
        };
        Plan::build(&inputs, &Environment::from_pairs(env.iter().copied()))
    }

    #[test]
    fn manifest_secrets_and_defaults() {
        let plan = plan_with(
            "version = 1\n[backends.team]\nkind = \"age\"\n[secrets.db]\nref = \"team://prod/db\"\nenv = \"DB_FILE\"\nrefresh = \"5m\"\non_change = \"signal:HUP\"\n",
            &[],
            false,
        )
        .unwrap();
        assert_eq!(plan.base_dir, Path::new("/p"));
        assert_eq!(plan.output.dir, Path::new(DEFAULT_OUTPUT_DIR));
        assert_eq!(plan.output.mode, 0o400);
        assert!(plan.backends.contains_key("age") && plan.backends.contains_key("team"));
        let db = &plan.secrets[0];
        assert_eq!(db.env_path.as_deref(), Some("DB_FILE"));
        assert_eq!(db.refresh, Some(Duration::from_secs(300)));
        assert_eq!(
            db.on_change,
            Some(OnChange::Signal(nix::sys::signal::Signal::SIGHUP))
        );
    }

    #[test]
    fn environment_references_become_values_and_files() {
        let plan = plan_with(
            "version = 1\n[env]\nresolve = [\"API_KEY\", \"DB_*\", \"HOMEPAGE\"]\n",
            &[
                ("API_KEY", "age://prod/api"),
                ("DB_PASSWORD_FILE", "age://prod/db#password"),
                ("HOMEPAGE", "https://example.org"),
                ("PLAIN", "value"),
                ("NOT_LISTED", "age://prod/other"),
            ],
            true,
        )
        .unwrap();
        assert_eq!(plan.secrets.len(), 2);
        let api = plan.secrets.iter().find(|s| s.name == "API_KEY").unwrap();
        assert!(!api.file);
        assert_eq!(api.env_value.as_deref(), Some("API_KEY"));
        let db = plan
            .secrets
            .iter()
            .find(|s| s.name == "db_password")
            .unwrap();
        assert!(db.file);
        assert_eq!(db.env_path.as_deref(), Some("DB_PASSWORD_FILE"));
        assert_eq!(
            plan.consumed_env,
            BTreeSet::from(["API_KEY".to_owned(), "DB_PASSWORD_FILE".to_owned()])
        );
        // Not resolved for commands that don't start a child.
        assert!(
            plan_with("version = 1", &[("API_KEY", "age://x")], false)
                .unwrap()
                .secrets
                .is_empty()
        );
    }

    #[test]
    fn only_opted_in_variables_are_references() {
        let env = [
            ("SPRING_CONFIG_IMPORT", "file:///etc/hostname"),
            ("DEFAULT", "age://prod/db"),
            ("CONFIGURED", "team://prod/db"),
        ];
        let names = |manifest: &str| -> Vec<String> {
            let plan = plan_with(manifest, &env, true).unwrap();
            plan.secrets.into_iter().map(|s| s.name).collect()
        };
        // A default instance's scheme is not enough; a configured one is.
        assert_eq!(
            names("version = 1\n[backends.team]\nkind = \"age\"\n"),
            ["CONFIGURED"]
        );
        assert_eq!(
            names("version = 1\n[env]\nresolve = [\"DEFAULT\"]\n"),
            ["DEFAULT"]
        );
        assert_eq!(
            names("version = 1\n[env]\nresolve = [\"*\"]\n"),
            ["DEFAULT", "SPRING_CONFIG_IMPORT"]
        );
        for bad in ["A-B", "", "**", "1X", "A*B"] {
            let manifest = format!("version = 1\n[env]\ninherit = [\"{bad}\"]\n");
            let error = plan_with(&manifest, &[], true).unwrap_err();
            assert_eq!(error.kind(), ErrorKind::Config, "{bad}");
            assert!(error.to_string().contains("[env].inherit"), "{error}");
        }
    }

    #[test]
    fn x_and_x_file_together_are_refused() {
        let error = plan_with(
            "version = 1\n[env]\nresolve = [\"DB_FILE\"]\n",
            &[("DB", "plain"), ("DB_FILE", "age://prod/db")],
            true,
        )
        .unwrap_err();
        assert!(error.to_string().contains("both DB and DB_FILE"), "{error}");
        let error = plan_with(
            "version = 1\n[secrets.db]\nref = \"age://db\"\nenv = \"DB_FILE\"\n",
            &[("DB", "plain")],
            false,
        )
        .unwrap_err();
        assert!(error.to_string().contains("unset DB"), "{error}");
    }

    #[test]
    fn bad_manifests_are_refused_with_config_errors() {
        let cases = [
            (
                "version = 1\n[secrets.\"../x\"]\nref = \"age://a\"\n",
                "../x",
            ),
            ("version = 1\n[secrets.\"a/b\"]\nref = \"age://a\"\n", "a/b"),
            (
                "version = 1\n[secrets.\".hidden\"]\nref = \"age://a\"\n",
                ".hidden",
            ),
            (
                "version = 1\n[secrets.\"\"]\nref = \"age://a\"\n",
                "name is empty",
            ),
            (
                "version = 1\n[secrets.a]\nref = \"nope\"\n",
                "invalid reference",
            ),
            (
                "version = 1\n[secrets.a]\nref = \"vaultx://a\"\n",
                "no backend is named `vaultx`",
            ),
            (
                "version = 1\n[secrets.a]\nref = \"age://a\"\nenv = \"1X\"\n",
                "not a valid environment variable",
            ),
            (
                "version = 1\n[secrets.a]\nref = \"age://a\"\nrefresh = \"soon\"\n",
                "not a duration",
            ),
            (
                "version = 1\n[secrets.a]\nref = \"age://a\"\non_change = \"signal:NOPE\"\n",
                "names no signal",
            ),
            (
                "version = 1\n[output]\nmode = \"0666\"\n",
                "lets group or others write",
            ),
            (
                "version = 1\n[output]\nmode = \"banana\"\n",
                "not an octal file mode",
            ),
            (
                "version = 1\n[secrets.a]\nref = \"age://a\"\nenv = \"X\"\n[secrets.b]\nref = \"age://b\"\nenv = \"X\"\n",
                "same variable X",
            ),
            (
                "version = 1\n[backends.Bad]\nkind = \"age\"\n",
                "[backends.Bad]",
            ),
        ];
        for (manifest, expected) in cases {
            let error = plan_with(manifest, &[], true).unwrap_err();
            assert_eq!(error.kind(), ErrorKind::Config, "{manifest}");
            assert!(error.to_string().contains(expected), "{manifest}: {error}");
        }
        let nul = Manifest::parse(
            "version = 1\n[secrets.\"a\\u0000\"]\nref = \"age://a\"\n",
            Path::new("m"),
        );
        let error = match nul {
            Ok(manifest) => {
                let inputs = PlanInputs {
                    manifest: Some((&manifest, Path::new("m"))),
                    cwd: Path::new("/"),
                    kinds: vec!["age"],
                    ..Default::default()
                };
                Plan::build(&inputs, &Environment::default()).unwrap_err()
            }
            Err(error) => error,
        };
        assert_eq!(error.kind(), ErrorKind::Config);
    }

    #[test]
    fn env_file_name_colliding_with_manifest_secret_is_refused() {
        let error = plan_with(
            "version = 1\n[env]\nresolve = [\"DB_FILE\"]\n[secrets.db]\nref = \"age://db\"\n",
            &[("DB_FILE", "age://other")],
            true,
        )
        .unwrap_err();
        assert!(error.to_string().contains("same file `db`"), "{error}");
    }

    #[test]
    fn templates_are_planned_and_their_conflicts_refused() {
        let plan = plan_with(
            "version = 1\n[secrets.db]\nref = \"age://db\"\n\
             [templates.url]\ninline = \"x\"\nmode = \"0440\"\nuid = 7\nenv_value = \"URL\"\n\
             [templates.\"app.yml\"]\nsource = \"config/app.yml.tmpl\"\nenv = \"APP_FILE\"\n",
            &[],
            false,
        )
        .unwrap();
        let names: Vec<&str> = plan.templates.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["app.yml", "url"]);
        assert_eq!(
            plan.templates[0].source,
            TemplateSource::File(PathBuf::from("/p/config/app.yml.tmpl"))
        );
        let url = &plan.templates[1];
        assert_eq!((url.mode, url.uid, url.gid), (Some(0o440), Some(7), None));
        assert_eq!(url.env_value.as_deref(), Some("URL"));

        let cases = [
            ("[templates.t]\n", "exactly one of"),
            (
                "[templates.t]\ninline = \"x\"\nsource = \"y\"\n",
                "exactly one of",
            ),
            ("[templates.\"../t\"]\ninline = \"x\"\n", "../t"),
            ("[templates.db]\ninline = \"x\"\n", "same file `db`"),
            (
                "[templates.t]\ninline = \"x\"\nenv = \"DB_FILE\"\n",
                "same variable DB_FILE",
            ),
            (
                "[templates.t]\ninline = \"x\"\nmode = \"0666\"\n",
                "[templates.t].mode",
            ),
            (
                "[templates.t]\ninline = \"x\"\ngid = 4294967295\n",
                "[templates.t].gid",
            ),
            (
                "[templates.t]\ninline = \"x\"\nenv_value = \"1X\"\n",
                "[templates.t].env_value",
            ),
            (
                "[templates.t]\ninline = \"x\"\nrefresh = \"1s\"\n",
                "refresh",
            ),
        ];
        for (section, expected) in cases {
            let manifest = format!(
                "version = 1\n[secrets.db]\nref = \"age://db\"\nenv = \"DB_FILE\"\n{section}"
            );
            let error = plan_with(&manifest, &[], false).unwrap_err();
            assert_eq!(error.kind(), ErrorKind::Config, "{section}");
            assert!(error.to_string().contains(expected), "{section}: {error}");
        }
        let error = plan_with(
            "version = 1\n[templates.t]\ninline = \"x\"\nenv = \"CONF_FILE\"\n",
            &[("CONF", "set")],
            false,
        )
        .unwrap_err();
        assert!(error.to_string().contains("unset CONF"), "{error}");
    }

    #[test]
    fn flags_override_the_manifest_output() {
        let manifest =
            Manifest::parse("version = 1\n[output]\ndir = \"/m\"\n", Path::new("m")).unwrap();
        let inputs = PlanInputs {
            manifest: Some((&manifest, Path::new("/p/m"))),
            cwd: Path::new("/"),
            kinds: vec!["age"],
            output_dir: Some(PathBuf::from("/flag")),
            allow_disk: true,
            ..Default::default()
        };
        let plan = Plan::build(&inputs, &Environment::default()).unwrap();
        assert_eq!(plan.output.dir, Path::new("/flag"));
        assert!(plan.output.allow_disk);
    }

    fn output_of(section: &str) -> Result<OutputPlan> {
        let manifest = Manifest::parse(
            &format!("version = 1\n[output]\n{section}\n"),
            Path::new("m"),
        )
        .unwrap();
        let inputs = PlanInputs {
            manifest: Some((&manifest, Path::new("/p/m"))),
            cwd: Path::new("/"),
            kinds: vec!["age"],
            ..Default::default()
        };
        Plan::build(&inputs, &Environment::default()).map(|plan| plan.output)
    }

    #[test]
    fn lock_timeout_defaults_and_bad_values_are_refused() {
        assert_eq!(output_of("").unwrap().lock_timeout, DEFAULT_LOCK_TIMEOUT);
        assert_eq!(
            output_of("lock_timeout = \"250ms\"").unwrap().lock_timeout,
            Duration::from_millis(250)
        );
        for bad in ["0s", "-1s", "forever", "99999999999999999d"] {
            let error = output_of(&format!("lock_timeout = \"{bad}\"")).unwrap_err();
            assert_eq!(error.kind(), hushbox_core::ErrorKind::Config, "{bad}");
            assert_eq!(error.subject(), Some("[output].lock_timeout"), "{bad}");
        }
    }

    #[test]
    fn uid_and_gid_minus_one_are_refused() {
        for key in ["uid", "gid"] {
            let error = output_of(&format!("{key} = 4294967295")).unwrap_err();
            assert_eq!(error.subject(), Some(format!("[output].{key}").as_str()));
            assert!(error.message().contains("unchanged"), "{error}");
            let output = output_of(&format!("{key} = 4294967294")).unwrap();
            assert_eq!(output.uid.or(output.gid), Some(4_294_967_294));
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        for bad in ["", "5", "m", "0s", "-1s", "5 m"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    /// A value typed into the wrong field may be a pasted secret: the error
    /// names the key and what is expected, never the text.
    #[test]
    fn manifest_field_errors_name_the_key_and_not_the_value() {
        let canary = "hvs.CANARYtokenCANARYtoken";
        let cases = [
            (
                format!("version = 1\n[secrets.a]\nref = \"age://a\"\nrefresh = \"{canary}\"\n"),
                "[secrets.a].refresh",
            ),
            (
                format!("version = 1\n[output]\nmode = \"{canary}\"\n"),
                "[output].mode",
            ),
            (
                "version = 1\n[output]\nmode = \"0o666\"\n".to_owned(),
                "[output].mode",
            ),
            (
                format!(
                    "version = 1\n[secrets.a]\nref = \"age://a\"\non_change = \"signal:{canary}\"\n"
                ),
                "[secrets.a].on_change",
            ),
            (
                format!("version = 1\n[secrets.a]\nref = \"age://a\"\nenv = \"{canary}\"\n"),
                "[secrets.a].env",
            ),
            (
                format!("version = 1\n[secrets.a]\nref = \"age://a\"\nenv_value = \"{canary}\"\n"),
                "[secrets.a].env_value",
            ),
        ];
        for (manifest, key) in cases {
            let error = plan_with(&manifest, &[], true).unwrap_err();
            let text = error.to_string();
            assert_eq!(error.kind(), ErrorKind::Config, "{manifest}");
            assert!(!text.contains("CANARY"), "{manifest}: {text}");
            assert!(!text.contains("666"), "{manifest}: {text}");
            assert!(text.contains(key), "{manifest}: {text}");
        }
    }
}
