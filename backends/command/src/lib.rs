//! hushbox-command: the `command` backend, which reaches any secret store
//! that has a CLI (Azure Key Vault, 1Password, GCP Secret Manager,
//! Bitwarden, `pass`, an in-house tool) by running it as a plugin.
//!
//! An instance's name is the scheme of its references. With the one-shot
//! protocol, `NAME://PATH?k=v` runs the instance's `command` with `{path}`
//! and `{param.k}` substituted inside single arguments (never through a
//! shell) and takes the value from stdout. With `protocol = "json"`, one
//! process serves a whole batch through JSON lines on stdin and stdout.
//!
//! The plugin runs in its own process group with a scrubbed environment
//! (`PATH`, `HOME` and what `env` lists), no stdin in the one-shot protocol,
//! and a timeout that kills the whole group. Its stdout is read into
//! `SecretValue` buffers through a wiped stack buffer; its stderr never
//! enters hushbox's errors or logs. See `README.md` for the settings and
//! the protocol's spec.
#![warn(missing_docs, unreachable_pub)]
#![forbid(unsafe_code)]

mod argv;
mod backend;
mod config;
mod error;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
mod json;
mod process;

use std::sync::Arc;

use hushbox_core::{Backend, BackendContext, Registry, Result, toml};

pub use backend::CommandBackend;
pub use config::{CommandConfig, DEFAULT_TIMEOUT, Protocol};

/// The backend's `kind` in the manifest. Instances are always named in the
/// manifest (`[backends.azure] kind = "command"`): there is no default
/// `command://` instance to speak of, since it would have no command.
pub const KIND: &str = "command";

/// Makes the `command` kind known to `registry`.
pub fn register(registry: &mut Registry) {
    registry.register_named_only(KIND, build);
}

/// Builds one instance from its `[backends.NAME]` settings.
fn build(context: &BackendContext<'_>, settings: toml::Table) -> Result<Arc<dyn Backend>> {
    let config: CommandConfig = context.parse_config(settings)?;
    let backend = CommandBackend::new(context.name, &config, context.env)
        .map_err(|error| error.with_subject(format!("[backends.{}]", context.name)))?;
    Ok(Arc::new(backend))
}
