//! `hushbox swarm sync`: the manifest's secrets as Swarm secrets.
//!
//! Swarm secrets are immutable, so a new value is a new secret. Each is
//! named `NAME_<hash8>`, content-addressed: the same value always gives the
//! same name, so a sync with nothing changed finds every secret in place
//! and changes nothing. The hash is HMAC-SHA256 under a random key the
//! swarm keeps (a Swarm config, `hushbox-name-key`, created by the first
//! sync), not a plain hash of the value: names are printed, logged and
//! shown by `docker service inspect` to people who cannot read secrets, and
//! a plain hash of a short password would let them test guesses offline.
//! Whoever can read the key can also run a service that mounts any secret,
//! so the key protects against nobody who could not read the values anyway.
//!
//! Services are moved onto the new secret under the same target file name
//! (the path in the container never changes), one `service update` each;
//! the sync waits for each rollout to complete, then removes the secrets of
//! the same origin that no service uses any more.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use base64::Engine;
use bollard::Docker;
use bollard::models::{
    ConfigSpec, SecretSpec, ServiceUpdateStatusStateEnum, TaskSpecContainerSpecFile,
    TaskSpecContainerSpecSecrets,
};
use bollard::query_parameters::{
    ListConfigsOptions, ListSecretsOptions, UpdateServiceOptionsBuilder,
};
use hmac::{Hmac, Mac};
use hushbox_core::{Error, ErrorKind, SecretValue};
use sha2::Sha256;

use super::{Outcome, Session, runtime};
use crate::cli::SwarmSyncArgs;
use crate::exit;
use crate::manifest::SwarmBinding;
use crate::resolve::{Backends, resolve};

/// Swarm refuses a secret of 500 KiB or more (1 to 511,999 bytes).
const SWARM_SECRET_LIMIT: usize = 500 * 1024;
/// The Swarm config holding the key of the names' HMAC.
const NAME_KEY_CONFIG: &str = "hushbox-name-key";
/// Labels on every secret hushbox creates. Names and references only.
const LABEL_ORIGIN: &str = "io.hushbox.origin";
const LABEL_SECRET: &str = "io.hushbox.secret";
const LABEL_REFERENCE: &str = "io.hushbox.reference";
const LABEL_VERSION: &str = "io.hushbox.version";
const LABEL_STACK: &str = "io.hushbox.stack";
/// How long one service's rollout may take.
const CONVERGENCE_TIMEOUT: Duration = Duration::from_secs(180);

/// One secret to hand to Swarm, its value fetched.
struct Wanted {
    /// The manifest's name.
    secret: String,
    /// `[STACK_]NAME_<hash8>`.
    swarm_name: String,
    reference: String,
    version: Option<String>,
    value: SecretValue,
    services: Vec<String>,
    file: TaskSpecContainerSpecFile,
}

pub(super) fn sync(session: &Session, args: SwarmSyncArgs) -> Outcome {
    let bindings = bindings(session)?;
    if bindings.is_empty() {
        return Err(Error::config(
            "no secret has a `swarm` binding: add `swarm = { services = [\"…\"] }` to a \
             [secrets.NAME] section",
        )
        .into());
    }
    let mut plan = session.plan(None, None, true)?;
    plan.secrets
        .retain(|secret| bindings.contains_key(&secret.name));
    let backends = Backends::build(&plan, &session.registry, &session.env)?;
    let runtime = runtime()?;
    let docker = Docker::connect_with_unix_defaults().map_err(docker_error)?;
    let sync = Sync {
        plan: &plan,
        bindings: &bindings,
        backends: &backends,
        docker: &docker,
        stack: args.stack.as_deref(),
        dry_run: args.dry_run,
    };
    let changes = runtime.block_on(sync.round())?;
    if !args.watch {
        if changes == 0 {
            super::print_stdout("nothing to do: every service has its secrets' current values\n")?;
        }
        return Ok(exit::OK);
    }
    super::end_setup()?;
    let interval = plan
        .secrets
        .iter()
        .map(|secret| plan.watch.interval_of(secret))
        .min()
        .unwrap_or(plan.watch.interval);
    tracing::info!(every = ?interval, "swarm sync: watching for changes");
    // A failed round keeps what the swarm has and is tried again next
    // interval; the log says so once per change of state, not per round.
    let mut failing = false;
    loop {
        let wait = super::stop::wait_for_stop_within(interval)
            .map_err(|error| Error::io("cannot wait for stop signals", error))?;
        if let Some(signal) = wait {
            tracing::info!(signal, "stopping");
            return Ok(exit::OK);
        }
        match runtime.block_on(sync.round()) {
            Ok(changes) => {
                if failing {
                    tracing::info!("swarm sync: rounds succeed again");
                }
                failing = false;
                if changes > 0 {
                    tracing::info!(changes, "swarm sync: services rolled onto new values");
                }
            }
            Err(failure) => {
                if !failing {
                    for error in &failure.errors {
                        tracing::warn!(%error, "swarm sync: a round failed; the swarm keeps its current secrets, retrying every interval");
                    }
                }
                failing = true;
            }
        }
    }
}

/// What one sync round needs: the plan's bound secrets, their backends
/// (credentials loaded once) and the engine.
struct Sync<'a> {
    plan: &'a crate::plan::Plan,
    bindings: &'a BTreeMap<String, &'a SwarmBinding>,
    backends: &'a Backends,
    docker: &'a Docker,
    stack: Option<&'a str>,
    dry_run: bool,
}

impl Sync<'_> {
    /// Fetches every bound secret and moves the services onto the values
    /// that changed: the number of changes made (or planned, dry run).
    /// Values live until the round ends.
    async fn round(&self) -> Result<usize, super::Failure> {
        let resolution = resolve(self.plan, self.backends).await?;
        let prefix = self
            .stack
            .map_or_else(String::new, |stack| format!("{stack}_"));
        let key = name_key(self.docker, self.dry_run).await?;

        let mut wanted = Vec::new();
        let mut values = resolution.values.into_iter();
        let mut versions = resolution.versions.into_iter();
        for secret in &self.plan.secrets {
            let (value, version) = (values.next().flatten(), versions.next().flatten());
            let Some(value) = value else {
                tracing::warn!(secret = %secret.name, "optional secret not found; not synced");
                continue;
            };
            let binding = &self.bindings[&secret.name];
            let size = value.expose().len();
            if size == 0 || size >= SWARM_SECRET_LIMIT {
                return Err(Error::new(
                    ErrorKind::TooLarge,
                    format!(
                        "{size} bytes: a Swarm secret holds 1 to {} bytes (under 500 KiB)",
                        SWARM_SECRET_LIMIT - 1
                    ),
                )
                .with_subject(&secret.name)
                .into());
            }
            let hash = match &key {
                Some(key) => name_hash(key, &value),
                None => "<new-key>".to_owned(),
            };
            wanted.push(Wanted {
                secret: secret.name.clone(),
                swarm_name: format!("{prefix}{}_{hash}", secret.name),
                reference: secret.reference.to_string(),
                version,
                value,
                services: binding
                    .services
                    .iter()
                    .map(|service| format!("{prefix}{service}"))
                    .collect(),
                file: task_file(&secret.name, binding)?,
            });
        }
        Ok(apply(self.docker, &wanted, self.stack, self.dry_run).await?)
    }
}

/// The manifest's `swarm` bindings, by secret name.
fn bindings(session: &Session) -> Result<BTreeMap<String, &SwarmBinding>, Error> {
    let Some((manifest, _)) = &session.manifest else {
        return Err(Error::config(
            "`swarm sync` needs a manifest (hushbox.toml) with `swarm` bindings",
        ));
    };
    Ok(manifest
        .secrets
        .iter()
        .filter_map(|(name, section)| Some((name.clone(), section.swarm.as_ref()?)))
        .collect())
}

/// The file a task gets: target name, owner, mode.
fn task_file(name: &str, binding: &SwarmBinding) -> Result<TaskSpecContainerSpecFile, Error> {
    let mode = match &binding.mode {
        Some(mode) => u32::from_str_radix(mode.trim_start_matches("0o"), 8)
            .ok()
            .filter(|mode| mode & !0o777 == 0)
            .ok_or_else(|| {
                Error::config(format!(
                    "swarm mode {mode:?} is not an octal mode of permission bits (\"0400\")"
                ))
                .with_subject(name)
            })?,
        None => 0o444,
    };
    for id in [&binding.uid, &binding.gid].into_iter().flatten() {
        if id.parse::<u32>().is_err() {
            return Err(
                Error::config(format!("swarm uid/gid {id:?} is not a number")).with_subject(name),
            );
        }
    }
    if binding.services.is_empty() {
        return Err(Error::config("swarm services is empty").with_subject(name));
    }
    let target = binding.target.clone().unwrap_or_else(|| name.to_owned());
    crate::output::validate_secret_name(&target).map_err(|error| error.with_subject(name))?;
    Ok(TaskSpecContainerSpecFile {
        name: Some(target),
        uid: Some(binding.uid.clone().unwrap_or_else(|| "0".to_owned())),
        gid: Some(binding.gid.clone().unwrap_or_else(|| "0".to_owned())),
        mode: Some(mode),
    })
}

/// `hash8`: the first 8 hex digits of HMAC-SHA256(key, value).
fn name_hash(key: &[u8], value: &SecretValue) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    // expose(): hashed under the swarm's key; only 32 bits of the MAC leave.
    mac.update(value.expose());
    let digest = mac.finalize().into_bytes();
    digest[..4]
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// The swarm's name key, created on first use (not by a dry run: `None`).
async fn name_key(docker: &Docker, dry_run: bool) -> Result<Option<Vec<u8>>, Error> {
    let filters = HashMap::from([("name".to_owned(), vec![NAME_KEY_CONFIG.to_owned()])]);
    let configs = docker
        .list_configs(Some(ListConfigsOptions {
            filters: Some(filters),
        }))
        .await
        .map_err(docker_error)?;
    let existing = configs.into_iter().find(|config| {
        config.spec.as_ref().and_then(|spec| spec.name.as_deref()) == Some(NAME_KEY_CONFIG)
    });
    if let Some(config) = existing {
        let data = config
            .spec
            .and_then(|spec| spec.data)
            .ok_or_else(|| Error::config("the swarm's name key config has no data"))?;
        let key = base64::engine::general_purpose::STANDARD
            .decode(data)
            .map_err(|_| Error::config("the swarm's name key config is not base64"))?;
        return Ok(Some(key));
    }
    if dry_run {
        super::print_stdout(&format!(
            "create config {NAME_KEY_CONFIG} (the key of the secrets' names)\n"
        ))?;
        return Ok(None);
    }
    let mut key = vec![0u8; 32];
    rand::fill(&mut key[..]);
    docker
        .create_config(ConfigSpec {
            name: Some(NAME_KEY_CONFIG.to_owned()),
            labels: Some(HashMap::from([(
                LABEL_ORIGIN.to_owned(),
                "hushbox".to_owned(),
            )])),
            data: Some(base64::engine::general_purpose::STANDARD.encode(&key)),
            templating: None,
        })
        .await
        .map_err(docker_error)?;
    super::print_stdout(&format!(
        "created config {NAME_KEY_CONFIG} (the key of the secrets' names)\n"
    ))?;
    Ok(Some(key))
}

/// Creates, rolls and removes; prints each step (or, in a dry run, each
/// step it would take). Returns how many changes there were.
async fn apply(
    docker: &Docker,
    wanted: &[Wanted],
    stack: Option<&str>,
    dry_run: bool,
) -> Result<usize, Error> {
    let mut changes = 0;
    let verb = |done: &'static str, planned: &'static str| if dry_run { planned } else { done };
    for secret in wanted {
        let existing = secrets_of(docker, &secret.secret, stack).await?;
        let current = existing.iter().find(|(name, _)| *name == secret.swarm_name);
        let id = match current {
            Some((_, id)) => Some(id.clone()),
            None => {
                changes += 1;
                super::print_stdout(&format!(
                    "{} secret {} for {} ({} bytes)\n",
                    verb("created", "create"),
                    secret.swarm_name,
                    secret.secret,
                    secret.value.expose().len()
                ))?;
                if dry_run {
                    None
                } else {
                    Some(create_secret(docker, secret, stack).await?)
                }
            }
        };

        for service in &secret.services {
            let inspected = docker
                .inspect_service(service, None)
                .await
                .map_err(|error| docker_error(error).with_subject(service))?;
            let version = inspected
                .version
                .as_ref()
                .and_then(|version| version.index)
                .unwrap_or_default();
            // The status of the last update so far: the one that follows
            // ours must be told apart from it (it may read "completed"
            // until the orchestrator takes ours up).
            let previous_update = inspected
                .update_status
                .as_ref()
                .and_then(|status| status.started_at.clone());
            let mut spec = inspected.spec.unwrap_or_default();
            let target = secret.file.name.clone();
            let container = spec
                .task_template
                .get_or_insert_with(Default::default)
                .container_spec
                .get_or_insert_with(Default::default);
            let references = container.secrets.get_or_insert_with(Vec::new);
            let up_to_date = references.iter().any(|reference| {
                reference.secret_name.as_deref() == Some(secret.swarm_name.as_str())
                    && reference.file.as_ref() == Some(&secret.file)
            });
            if up_to_date {
                continue;
            }
            changes += 1;
            super::print_stdout(&format!(
                "{} service {service}: {} -> {} at /run/secrets/{}\n",
                verb("updated", "update"),
                secret.secret,
                secret.swarm_name,
                target.as_deref().unwrap_or_default()
            ))?;
            let Some(id) = &id else { continue };
            // The same target path, the new secret: any other reference
            // to that file name (the old version) goes.
            references.retain(|reference| {
                reference.file.as_ref().and_then(|file| file.name.as_ref()) != target.as_ref()
            });
            references.push(TaskSpecContainerSpecSecrets {
                file: Some(secret.file.clone()),
                secret_id: Some(id.clone()),
                secret_name: Some(secret.swarm_name.clone()),
            });
            let version = i32::try_from(version).unwrap_or(i32::MAX);
            docker
                .update_service(
                    service,
                    spec,
                    UpdateServiceOptionsBuilder::new().version(version).build(),
                    None,
                )
                .await
                .map_err(|error| docker_error(error).with_subject(service))?;
            wait_for_rollout(docker, service, previous_update).await?;
            super::print_stdout(&format!("service {service} converged\n"))?;
        }

        for (name, old_id) in existing {
            if name == secret.swarm_name {
                continue;
            }
            if dry_run {
                changes += 1;
                super::print_stdout(&format!("remove secret {name} (once no service uses it)\n"))?;
                continue;
            }
            match docker.delete_secret(&old_id).await {
                Ok(()) => {
                    changes += 1;
                    super::print_stdout(&format!("removed secret {name}\n"))?;
                }
                // In use by a service this manifest does not list: kept.
                Err(error) => {
                    tracing::info!(secret = %name, error = %docker_error(error), "kept an old secret")
                }
            }
        }
    }
    Ok(changes)
}

/// The Swarm secrets hushbox made for `secret` (of `stack`): name and id.
async fn secrets_of(
    docker: &Docker,
    secret: &str,
    stack: Option<&str>,
) -> Result<Vec<(String, String)>, Error> {
    let mut labels = vec![
        format!("{LABEL_ORIGIN}=hushbox"),
        format!("{LABEL_SECRET}={secret}"),
    ];
    if let Some(stack) = stack {
        labels.push(format!("{LABEL_STACK}={stack}"));
    }
    let filters = HashMap::from([("label".to_owned(), labels)]);
    let secrets = docker
        .list_secrets(Some(ListSecretsOptions {
            filters: Some(filters),
        }))
        .await
        .map_err(docker_error)?;
    Ok(secrets
        .into_iter()
        .filter_map(|found| {
            let spec = found.spec?;
            // Without --stack, a stack's secrets are not ours to touch.
            let labels = spec.labels.unwrap_or_default();
            if stack.is_none() && labels.contains_key(LABEL_STACK) {
                return None;
            }
            Some((spec.name?, found.id?))
        })
        .collect())
}

async fn create_secret(
    docker: &Docker,
    secret: &Wanted,
    stack: Option<&str>,
) -> Result<String, Error> {
    let mut labels = HashMap::from([
        (LABEL_ORIGIN.to_owned(), "hushbox".to_owned()),
        (LABEL_SECRET.to_owned(), secret.secret.clone()),
        (LABEL_REFERENCE.to_owned(), secret.reference.clone()),
    ]);
    if let Some(version) = &secret.version {
        labels.insert(LABEL_VERSION.to_owned(), version.clone());
    }
    if let Some(stack) = stack {
        labels.insert(LABEL_STACK.to_owned(), stack.to_owned());
    }
    // expose(): the value goes to the Swarm's encrypted store. Our base64
    // copy is wiped; the one bollard's request needs (an owned String in
    // SecretSpec, then the JSON body) is not: see SECURITY.md.
    let data = zeroize::Zeroizing::new(
        base64::engine::general_purpose::STANDARD.encode(secret.value.expose()),
    );
    let created = docker
        .create_secret(SecretSpec {
            name: Some(secret.swarm_name.clone()),
            labels: Some(labels),
            data: Some(data.as_str().to_owned()),
            driver: None,
            templating: None,
        })
        .await
        .map_err(|error| docker_error(error).with_subject(&secret.secret))?;
    Ok(created.id)
}

/// Waits until the service's update (the one started after
/// `previous_update`, the start time of the update before it) has completed.
async fn wait_for_rollout(
    docker: &Docker,
    service: &str,
    previous_update: Option<bollard::models::BollardDate>,
) -> Result<(), Error> {
    let deadline = Instant::now() + CONVERGENCE_TIMEOUT;
    loop {
        let inspected = docker
            .inspect_service(service, None)
            .await
            .map_err(|error| docker_error(error).with_subject(service))?;
        let status = inspected.update_status.unwrap_or_default();
        let ours = status.started_at.is_some() && status.started_at != previous_update;
        let state = status.state.filter(|_| ours);
        match state {
            Some(ServiceUpdateStatusStateEnum::COMPLETED) => return Ok(()),
            Some(
                state @ (ServiceUpdateStatusStateEnum::PAUSED
                | ServiceUpdateStatusStateEnum::ROLLBACK_STARTED
                | ServiceUpdateStatusStateEnum::ROLLBACK_PAUSED
                | ServiceUpdateStatusStateEnum::ROLLBACK_COMPLETED),
            ) => {
                return Err(Error::new(
                    ErrorKind::Unavailable,
                    format!("the rollout did not complete: {state}"),
                )
                .with_subject(service));
            }
            // Ours has not begun, or is under way.
            _ => {}
        }
        if Instant::now() > deadline {
            return Err(Error::new(
                ErrorKind::Unavailable,
                format!(
                    "the rollout did not complete in {}s",
                    CONVERGENCE_TIMEOUT.as_secs()
                ),
            )
            .with_subject(service));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// A Docker API failure as a hushbox error. The engine's messages name
/// objects, never secret data (which it never returns).
fn docker_error(error: bollard::errors::Error) -> Error {
    use bollard::errors::Error as Docker;
    match error {
        Docker::DockerResponseServerError {
            status_code,
            message,
        } => {
            let kind = match status_code {
                404 => ErrorKind::NotFound,
                401 | 403 => ErrorKind::PermissionDenied,
                503 => ErrorKind::Unavailable,
                _ => ErrorKind::Io,
            };
            let hint = if status_code == 503 {
                " (is this engine a Swarm manager? `docker swarm init`)"
            } else {
                ""
            };
            Error::new(kind, format!("Docker: {message}{hint}"))
        }
        other => Error::new(
            ErrorKind::Unavailable,
            format!("cannot reach the Docker engine: {other}"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding(mode: Option<&str>, uid: Option<&str>) -> SwarmBinding {
        SwarmBinding {
            services: vec!["web".to_owned()],
            target: None,
            uid: uid.map(str::to_owned),
            gid: None,
            mode: mode.map(str::to_owned),
        }
    }

    #[test]
    fn task_file_defaults_to_swarms_and_parses_octal_modes() {
        let file = task_file("db", &binding(None, None)).unwrap();
        assert_eq!(file.name.as_deref(), Some("db"));
        assert_eq!(file.mode, Some(0o444));
        assert_eq!(file.uid.as_deref(), Some("0"));
        let file = task_file("db", &binding(Some("0400"), Some("1000"))).unwrap();
        assert_eq!(
            (file.mode, file.uid.as_deref()),
            (Some(0o400), Some("1000"))
        );
        for bad in ["0999", "4755", "rw"] {
            assert!(task_file("db", &binding(Some(bad), None)).is_err(), "{bad}");
        }
        assert!(task_file("db", &binding(None, Some("app"))).is_err());
    }

    #[test]
    fn names_depend_on_the_key_and_the_value() {
        let value = |bytes: &[u8]| SecretValue::from_vec(bytes.to_vec());
        let a = name_hash(b"key one", &value(b"hunter2"));
        assert_eq!(a.len(), 8);
        assert_eq!(a, name_hash(b"key one", &value(b"hunter2")));
        assert_ne!(a, name_hash(b"key two", &value(b"hunter2")));
        assert_ne!(a, name_hash(b"key one", &value(b"hunter3")));
    }
}
