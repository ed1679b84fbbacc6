//! hushbox-file: the `file` backend, which reads secrets from local files.
//!
//! `file:///abs/path` reads an absolute path; `file://relative/path` is
//! relative to the manifest's directory. Files whose path ends in `.env`
//! are `.env` documents (`file://app.env#DB_PASSWORD`); others are JSON
//! documents for `#field` and whole values otherwise. Reads are refused
//! beyond a size limit. The backend is read-only: it is a source for
//! delivering secrets, not a store. See `README.md` for the reference syntax
//! and settings.
#![warn(missing_docs, unreachable_pub)]
#![forbid(unsafe_code)]

mod backend;
mod config;
mod error;

use std::sync::Arc;

use hushbox_core::{Backend, BackendContext, Registry, Result, Trust, toml};

pub use backend::FileBackend;
pub use config::FileConfig;

/// The backend's `kind` in the manifest, and the scheme of its default
/// instance (`file://…` works without a manifest).
pub const SCHEME: &str = "file";

/// Makes the `file` kind known to `registry`.
pub fn register(registry: &mut Registry) {
    registry.register(SCHEME, build);
}

/// Builds one instance from its `[backends.NAME]` settings.
fn build(context: &BackendContext<'_>, settings: toml::Table) -> Result<Arc<dyn Backend>> {
    let config: FileConfig = context.parse_config(settings)?;
    let subject = || format!("[backends.{}]", context.name);
    let trust = Trust::from_env(context.env).map_err(|error| error.with_subject(subject()))?;
    let backend = FileBackend::new(context.name, context.base_dir, config)
        .map_err(|error| error.with_subject(subject()))?
        .with_trust(trust);
    Ok(Arc::new(backend))
}
