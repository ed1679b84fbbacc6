//! hushbox-vault: the `vault` backend, for HashiCorp Vault and OpenBao
//! (the same HTTP API).
//!
//! - `vault://secret/app/db#password`: KV, version 1 or 2 (detected per
//!   mount, as `vault kv` does), written without `data/`;
//!   `?version=N` pins a KV v2 version.
//! - `vault://database/creds/app#username`: any other engine is a logical
//!   read; `vault://pki/issue/web?common_name=app.internal#certificate`:
//!   parameters make it a write (POST) with the parameters as its body.
//! - All references to one (path, parameters) are one request, so
//!   `#username` and `#password` come from one lease. Leases are kept with
//!   the documents, renewed by [`VaultBackend::keep_alive`] and revoked by
//!   [`VaultBackend::revoke_obtained_leases`] (or [`revoke_on_exit`]).
//! - Auth: token (`token_file`, `VAULT_TOKEN`, `~/.vault-token`), AppRole,
//!   Kubernetes, JWT; the token is renewed at 2/3 of its TTL and replaced by
//!   a new login when it expires.
//!
//! TLS is rustls on ring, the one TLS stack of hushbox. See `README.md`.
#![warn(missing_docs, unreachable_pub)]
#![forbid(unsafe_code)]

mod auth;
mod backend;
mod client;
mod config;
mod document;
mod error;
mod leases;
mod mounts;

use std::sync::Arc;

use hushbox_core::{Backend, BackendContext, Registry, Result, toml};

pub use backend::VaultBackend;
pub use config::{
    AuthConfig, AuthSettings, DEFAULT_ADDRESS, DEFAULT_KUBERNETES_TOKEN_FILE,
    DEFAULT_RETRY_DEADLINE, DEFAULT_TIMEOUT, TokenSource, VaultConfig, VaultSettings,
};
pub use document::BASE64_KEY;

/// The backend's `kind` in the manifest, and the scheme of its default
/// instance (`vault://…` works without a manifest, from `VAULT_ADDR` and
/// `VAULT_TOKEN`).
pub const SCHEME: &str = "vault";

/// Makes `kind = "vault"` known to `registry`.
pub fn register(registry: &mut Registry) {
    registry.register(SCHEME, build);
}

fn build(context: &BackendContext<'_>, settings: toml::Table) -> Result<Arc<dyn Backend>> {
    let config: VaultConfig = context.parse_config(settings)?;
    let backend = VaultBackend::from_config(&config, context)
        .map_err(|error| error.with_subject(format!("[backends.{}]", context.name)))?;
    Ok(Arc::new(backend))
}

/// The live instance named `name` (the newest, if several were built).
///
/// The registry hands instances out as `Arc<dyn Backend>`; this is how the
/// CLI reaches the Vault-specific lifecycle of one it built:
/// [`VaultBackend::keep_alive`], [`VaultBackend::revoke_obtained_leases`].
/// An instance is live while any clone of it exists.
pub fn instance(name: &str) -> Option<VaultBackend> {
    live::instances()
        .into_iter()
        .rev()
        .find(|backend| backend.name() == name)
}

/// Every live instance, oldest first.
pub fn instances() -> Vec<VaultBackend> {
    live::instances()
}

/// Revokes the leases obtained by every live instance whose settings say
/// `revoke_on_exit = true`. Call it once, as hushbox exits (after the child
/// has exited, for `run` and `exec`), on a runtime that can still do I/O.
///
/// Returns how many leases were revoked, or every error (one per instance
/// that could not revoke all of its leases).
pub async fn revoke_on_exit() -> std::result::Result<usize, Vec<hushbox_core::Error>> {
    let mut revoked = 0;
    let mut errors = Vec::new();
    for backend in live::instances() {
        if !backend.revoke_on_exit() {
            continue;
        }
        match backend.revoke_obtained_leases().await {
            Ok(count) => revoked += count,
            Err(error) => errors.push(error),
        }
    }
    if errors.is_empty() {
        Ok(revoked)
    } else {
        Err(errors)
    }
}

/// Runs [`VaultBackend::keep_alive`] for every live instance until
/// `shutdown` completes.
pub async fn keep_alive(shutdown: impl std::future::Future<Output = ()>) {
    let backends = live::instances();
    let loops = futures::future::join_all(
        backends
            .iter()
            .map(|backend| backend.keep_alive(std::future::pending())),
    );
    tokio::select! {
        () = shutdown => {}
        _ = loops => {}
    }
}

/// The instances alive in this process, held weakly so that dropping the
/// last clone of an instance (and with it its token) is not prevented.
mod live {
    use std::sync::{Arc, Mutex, Weak};

    use crate::backend::{Inner, VaultBackend};

    static LIVE: Mutex<Vec<Weak<Inner>>> = Mutex::new(Vec::new());

    pub(crate) fn register(inner: &Arc<Inner>) {
        let mut live = LIVE.lock().unwrap_or_else(|e| e.into_inner());
        live.retain(|weak| weak.strong_count() > 0);
        live.push(Arc::downgrade(inner));
    }

    pub(crate) fn instances() -> Vec<VaultBackend> {
        let live = LIVE.lock().unwrap_or_else(|e| e.into_inner());
        live.iter()
            .filter_map(Weak::upgrade)
            .map(VaultBackend::from_inner)
            .collect()
    }
}
