//! The resolver: builds the backend instances a plan needs, fetches every
//! distinct location once (concurrently, through each backend's batch path),
//! and selects each secret's field. It fails closed: any required secret that
//! cannot be had fails the whole resolution, and every failure is reported.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use hushbox_core::{
    Backend, BackendContext, Document, Environment, Error, ErrorKind, Lease, Registry, SecretRef,
    SecretValue,
};
use tracing::{debug, warn};

use crate::plan::{BackendPlan, Plan};

/// The backend instances of a plan, by name.
#[derive(Debug, Default, Clone)]
pub struct Backends {
    instances: BTreeMap<String, Arc<dyn Backend>>,
}

impl Backends {
    /// Builds the instances the plan's secrets use, plus every instance the
    /// manifest configures (so `check` validates their settings). Factories
    /// do no I/O; credentials are loaded on first use.
    pub fn build(
        plan: &Plan,
        registry: &Registry,
        env: &Environment,
    ) -> hushbox_core::Result<Self> {
        let mut wanted: Vec<&str> = plan
            .secrets
            .iter()
            .map(|secret| secret.reference.scheme())
            .collect();
        wanted.extend(
            plan.backends
                .iter()
                .filter(|(_, backend)| backend.configured)
                .map(|(name, _)| name.as_str()),
        );
        wanted.sort_unstable();
        wanted.dedup();
        let mut instances = BTreeMap::new();
        for name in wanted {
            let backend = plan
                .backends
                .get(name)
                .ok_or_else(|| Error::config(format!("no backend is named `{name}`")))?;
            let instance = build_one(registry, name, backend, &plan.base_dir, env)?;
            instances.insert(name.to_owned(), instance);
        }
        Ok(Self { instances })
    }

    /// The instance serving `scheme`.
    pub fn get(&self, scheme: &str) -> Option<&Arc<dyn Backend>> {
        self.instances.get(scheme)
    }

    /// The variables the built instances took their credentials from: the
    /// program hushbox starts does not inherit them (unless `[env].inherit`
    /// says so). An instance is built when a secret of the run uses it or
    /// the manifest configures it.
    pub fn credential_variables(&self) -> std::collections::BTreeSet<String> {
        self.instances
            .values()
            .flat_map(|backend| backend.credential_sources().variables)
            .collect()
    }

    /// The files the built instances read credentials from.
    pub fn credential_files(&self) -> Vec<std::path::PathBuf> {
        let mut files: Vec<_> = self
            .instances
            .values()
            .flat_map(|backend| backend.credential_sources().files)
            .collect();
        files.sort();
        files.dedup();
        files
    }

    /// All built instances.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &Arc<dyn Backend>)> {
        self.instances.iter()
    }

    /// Starts renewing tokens and leases for the instances that hold some,
    /// on a thread with a runtime of its own, until the returned guard is
    /// dropped. `None`, and no thread at all, when nothing needs it: the
    /// usual case, in which hushbox runs beside the program with no thread
    /// but the supervisor's.
    pub fn keep_alive(&self) -> Option<KeepAlive> {
        let keepers: Vec<Arc<dyn Backend>> = self
            .instances
            .values()
            .filter(|backend| backend.needs_keep_alive())
            .cloned()
            .collect();
        if keepers.is_empty() {
            return None;
        }
        let (stop, stopped) = tokio::sync::watch::channel(());
        let thread = std::thread::Builder::new()
            .name("hushbox-keep-alive".into())
            .spawn(move || {
                let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                else {
                    warn!("cannot start the keep-alive runtime; leases will not be renewed");
                    return;
                };
                runtime.block_on(futures::future::join_all(keepers.iter().map(|backend| {
                    let mut stopped = stopped.clone();
                    // Completes when the guard drops the sender.
                    backend.keep_alive(Box::pin(
                        async move { while stopped.changed().await.is_ok() {} },
                    ))
                })));
            });
        match thread {
            Ok(thread) => Some(KeepAlive {
                stop: Some(stop),
                thread: Some(thread),
            }),
            Err(error) => {
                warn!(%error, "cannot start the keep-alive thread; leases will not be renewed");
                None
            }
        }
    }

    /// Lets every instance give back what this run obtained, when its
    /// settings ask for it (Vault's `revoke_on_exit`). Returns the errors.
    pub async fn release(&self) -> Vec<Error> {
        let results =
            futures::future::join_all(self.instances.values().map(|backend| async move {
                backend
                    .release()
                    .await
                    .map_err(|error| error.with_subject(format!("[backends.{}]", backend.name())))
            }))
            .await;
        let mut errors = Vec::new();
        for result in results {
            match result {
                Ok(0) => {}
                Ok(count) => debug!(count, "released leases"),
                Err(error) => errors.push(error),
            }
        }
        errors
    }
}

/// Renewal running beside the program; dropping it stops and joins it.
#[derive(Debug)]
pub struct KeepAlive {
    stop: Option<tokio::sync::watch::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for KeepAlive {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Builds one instance through the registry, from its plan.
pub fn build_one(
    registry: &Registry,
    name: &str,
    backend: &BackendPlan,
    base_dir: &Path,
    env: &Environment,
) -> hushbox_core::Result<Arc<dyn Backend>> {
    let context = BackendContext {
        name,
        base_dir,
        env,
    };
    registry
        .build(&backend.kind, &context, backend.settings.clone())
        .map_err(|error| {
            let section = format!("[backends.{name}]");
            if backend.configured || error.subject() != Some(section.as_str()) {
                return error;
            }
            // A backend names its errors `[backends.NAME]`; a default
            // instance has no such section for the user to look for.
            Error::new(error.kind(), error.message().to_owned()).with_subject(format!(
                "the default `{name}` backend (configured from the environment: \
                 no [backends.{name}] in a manifest)"
            ))
        })
}

/// The outcome of resolving a plan: one value per secret of the plan, in the
/// plan's order (`None` for an optional secret that does not exist).
#[derive(Debug, Default)]
pub struct Resolution {
    /// Values aligned with `Plan::secrets`.
    pub values: Vec<Option<SecretValue>>,
    /// The backend's version of each secret's document, when it reports one.
    pub versions: Vec<Option<String>>,
    /// The lease each secret's document was issued under, when it has one
    /// (an empty id: only an expiry, as a PKI certificate's).
    pub leases: Vec<Option<Lease>>,
}

/// Every error that stopped a resolution, in plan order.
#[derive(Debug)]
pub struct ResolveFailure {
    /// The errors; never empty.
    pub errors: Vec<Error>,
}

impl ResolveFailure {
    /// The kind that decides the exit code: the first error's.
    pub fn kind(&self) -> ErrorKind {
        self.errors[0].kind()
    }
}

/// Fetches every secret of `plan`. One fetch per distinct location.
pub async fn resolve(plan: &Plan, backends: &Backends) -> Result<Resolution, ResolveFailure> {
    // Group distinct locations by backend, so each backend sees one batch.
    let mut batches: BTreeMap<&str, Vec<SecretRef>> = BTreeMap::new();
    for secret in &plan.secrets {
        let location = secret.reference.location();
        let batch = batches.entry(secret.reference.scheme()).or_default();
        if !batch.contains(&location) {
            batch.push(location);
        }
    }
    let fetches = batches.iter().map(|(scheme, locations)| async move {
        let Some(backend) = backends.get(scheme) else {
            return locations
                .iter()
                .map(|_| Err(Error::config(format!("no backend is named `{scheme}`"))))
                .collect();
        };
        debug!(backend = %scheme, count = locations.len(), "fetching");
        backend.fetch_many(locations).await
    });
    let results: Vec<Vec<hushbox_core::Result<Document>>> =
        futures::future::join_all(fetches).await;
    let mut documents: BTreeMap<SecretRef, hushbox_core::Result<Document>> = BTreeMap::new();
    for ((_, locations), results) in batches.iter().zip(results) {
        for (location, result) in locations.iter().zip(results) {
            documents.insert(
                location.clone(),
                result.map_err(|error| error.with_subject(location)),
            );
        }
    }

    let mut values = Vec::with_capacity(plan.secrets.len());
    let mut versions = Vec::with_capacity(plan.secrets.len());
    let mut leases = Vec::with_capacity(plan.secrets.len());
    let mut errors = Vec::new();
    for secret in &plan.secrets {
        let selected = match &documents[&secret.reference.location()] {
            Ok(document) => document
                .select(&secret.reference)
                .map(|value| (value, document.version.clone(), document.lease.clone())),
            Err(error) => Err(Error::new(error.kind(), error.message().to_owned())
                .with_subject(error.subject().unwrap_or_default())),
        };
        match selected {
            Ok((value, version, lease)) => {
                values.push(Some(value));
                versions.push(version);
                leases.push(lease);
            }
            Err(error) if secret.optional && error.kind() == ErrorKind::NotFound => {
                warn!(secret = %secret.name, reference = %secret.reference, "optional secret not found; skipped");
                values.push(None);
                versions.push(None);
                leases.push(None);
            }
            Err(error) => errors.push(error),
        }
    }
    if errors.is_empty() {
        Ok(Resolution {
            values,
            versions,
            leases,
        })
    } else {
        Err(ResolveFailure { errors })
    }
}
