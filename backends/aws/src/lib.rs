//! hushbox-aws: the `aws` backend, which reads secrets from AWS Secrets
//! Manager.
//!
//! References are `aws://NAME_OR_ARN[?version_stage=STAGE|version_id=ID][#field]`:
//! the current version by default, another stage (`AWSPREVIOUS`) or one
//! pinned version on request; `#field` selects a key of a JSON secret.
//! String secrets are delivered as their UTF-8 bytes, binary ones as bytes.
//!
//! Credentials come from the standard AWS credential chain only. Several
//! references are read with `BatchGetSecretValue` (20 per call), and
//! [`AwsBackend::check_version`] tells the watcher whether a secret moved
//! with `DescribeSecret`, which returns no value. The HTTP client is
//! rustls with ring: no aws-lc, one TLS stack in the binary. See
//! `README.md` for the settings and the error mapping.
#![warn(missing_docs, unreachable_pub)]
#![forbid(unsafe_code)]

mod backend;
mod config;
mod error;
mod target;

use std::sync::Arc;

use hushbox_core::{Backend, BackendContext, Registry, Result, toml};

pub use backend::{AwsBackend, VersionCheck};
pub use config::AwsConfig;

/// The backend's `kind` in the manifest, and the scheme of its default
/// instance (`aws://…` works without a manifest).
pub const SCHEME: &str = "aws";

/// Makes the `aws` kind known to `registry`.
pub fn register(registry: &mut Registry) {
    registry.register(SCHEME, build);
}

/// Makes ring the process's default rustls crypto provider, unless one is
/// installed already. The HTTP client names ring itself; this is for any
/// other rustls user in the process (the Vault client built with
/// `rustls-no-provider`). Idempotent: a second call, or a provider
/// installed by `main`, is left alone.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Builds one instance from its `[backends.NAME]` settings.
fn build(context: &BackendContext<'_>, settings: toml::Table) -> Result<Arc<dyn Backend>> {
    install_crypto_provider();
    let config: AwsConfig = context.parse_config(settings)?;
    let backend = AwsBackend::new(context.name, config, context.env)
        .map_err(|error| error.with_subject(format!("[backends.{}]", context.name)))?;
    Ok(Arc::new(backend))
}
