//! hushbox-core: the types every hushbox backend shares.
//!
//! - [`SecretValue`] is the only holder of a secret value.
//! - [`SecretRef`] is the address of a secret, `SCHEME://PATH[?PARAMS][#FIELD]`.
//! - [`Backend`] is the trait every source implements, with a written
//!   contract that the conformance suite (`hushbox-testkit`) checks.
//! - [`Error`] carries a kind and a subject, never a value.
//! - [`Registry`] is how backend crates plug themselves in.
//! - [`Trust`] decides whether a file may configure hushbox (its owner,
//!   its mode, the directories above it).
#![warn(missing_docs, unreachable_pub)]
#![deny(unsafe_code)]

mod backend;
pub mod dotenv;
mod duration;
mod error;
mod extract;
// The one module with `unsafe`: it maps and locks the memory values live in.
#[allow(unsafe_code)]
mod memory;
#[cfg(test)]
mod proc_maps;
mod reference;
mod registry;
pub mod text;
pub mod trust;
mod value;

pub use backend::{
    Backend, Capabilities, CredentialSources, DEFAULT_CONCURRENCY, Document, Lease, fetch_each,
};
pub use duration::parse_duration;
pub use error::{Error, ErrorKind, Result, Source};
pub use extract::{Format, extract_field};
pub use reference::{Field, SecretRef};
pub use registry::{
    BackendContext, Environment, Factory, Registry, redact_quoted, reject_inline_credentials,
};
pub use trust::Trust;
pub use value::{ReadError, SecretValue};

/// Re-exported so backend crates implement [`Backend`] with the same macro.
pub use async_trait::async_trait;
/// Re-exported so backend crates take their settings as the same type.
pub use toml;

/// The largest secret hushbox accepts by default: 1 MiB. Docker Swarm caps
/// secrets at 500 KB; a larger "secret" is almost always a mistake.
pub const DEFAULT_SIZE_LIMIT: usize = 1024 * 1024;
