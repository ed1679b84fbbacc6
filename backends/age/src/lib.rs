//! hushbox-age: hushbox's embedded default store of age-encrypted secrets,
//! in [passage]'s layout.
//!
//! - Secret `a/b` is `<store>/a/b.age`, binary or ASCII-armored.
//! - It is encrypted to the recipients in the nearest `.age-recipients`
//!   walking up from its directory to the store root, or, without one, to
//!   the recipients of the identities in use.
//! - Identities are an age identity file (`AGE-SECRET-KEY-1…` lines) or an
//!   unencrypted OpenSSH ed25519/RSA private key.
//!
//! The files interoperate with the `age` and `rage` command-line tools and
//! with passage, both ways. See `README.md` for settings and their precedence.
//!
//! [passage]: https://github.com/FiloSottile/passage
#![warn(missing_docs, unreachable_pub)]
#![forbid(unsafe_code)]

mod age_store;
mod backend;
mod config;
mod crypt;
mod error;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod integrity;
mod keys;
mod root;
mod state;
mod store;

use std::sync::Arc;

use hushbox_core::{Backend, BackendContext, Registry, Result};

pub use age_store::{
    AcceptReport, AgeStore, RecipientsView, ReencryptReport, Revision, VerifyReport,
};
pub use backend::AgeBackend;
pub use config::{
    AgeConfig, AgeSettings, DEFAULT_IDENTITY_FILE, DEFAULT_STORE, ENV_IDENTITY, ENV_INTEGRITY_KEY,
    ENV_PASSAGE_DIR, ENV_PASSAGE_IDENTITIES, ENV_STATE_HOME, ENV_STORE,
};
pub use keys::{
    generate_identity, parse_recipients, recipient_of_identity_file, write_identity_file,
};
pub use store::{RECIPIENTS_FILE, init_store};

/// Checks that `path` can name a secret: relative, without empty, `.`, `..`
/// or dot-prefixed components, and without control, bidi or invisible characters.
///
/// # Errors
/// [`hushbox_core::ErrorKind::Config`], saying why.
pub fn validate_secret_path(path: &str) -> Result<()> {
    store::check_secret_path(path).map_err(Into::into)
}

/// The integrity manifest's file name, in the store's root.
pub const INTEGRITY_FILE: &str = integrity::INTEGRITY_FILE;

/// The `kind` of this backend in the manifest, and the scheme of its
/// default instance.
pub const SCHEME: &str = "age";

/// Makes `kind = "age"` known to `registry`.
pub fn register(registry: &mut Registry) {
    registry.register(SCHEME, build);
}

fn build(
    context: &BackendContext<'_>,
    settings: hushbox_core::toml::Table,
) -> Result<Arc<dyn Backend>> {
    let config: AgeConfig = context.parse_config(settings)?;
    Ok(Arc::new(AgeBackend::from_config(&config, context)?))
}
