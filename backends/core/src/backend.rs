//! The [`Backend`] trait: the one interface every secret source implements.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;

use crate::error::{Error, Result};
use crate::extract::{Format, extract_field};
use crate::reference::SecretRef;
use crate::value::SecretValue;

/// How many fetches one backend runs at once unless it says otherwise.
pub const DEFAULT_CONCURRENCY: usize = 16;

/// What a backend can do beyond reading. The conformance suite picks its
/// tests by these.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// [`Backend::put`] stores values.
    pub write: bool,
    /// [`Backend::list`] lists paths.
    pub list: bool,
    /// [`Backend::delete`] removes values.
    pub delete: bool,
    /// Values are documents with fields that `#field` can select.
    pub fields: bool,
    /// Documents can carry leases that must be renewed or re-fetched.
    pub leases: bool,
}

/// Where an instance takes its own credentials from: what hushbox keeps
/// from the program it starts, and checks that program's user cannot read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CredentialSources {
    /// Environment variables the instance read a credential (or the path of
    /// one) from, such as `VAULT_TOKEN`, a `token_env`, `AWS_SECRET_ACCESS_KEY`
    /// or `HUSHBOX_IDENTITY`. Names only: never their values.
    pub variables: Vec<String>,
    /// Files holding a credential the instance reads: an identity, a token,
    /// an AppRole secret id, a client key.
    pub files: Vec<PathBuf>,
}

/// A lease on a dynamic secret, kept with its values for the watcher.
#[derive(Clone, PartialEq, Eq)]
pub struct Lease {
    /// The backend's lease identifier (not a secret on its own).
    pub id: String,
    /// How long the values are valid from the moment they were fetched.
    pub ttl: Duration,
    /// Whether the lease can be extended without fetching new values.
    pub renewable: bool,
}

impl fmt::Debug for Lease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lease")
            .field("ttl", &self.ttl)
            .field("renewable", &self.renewable)
            .finish_non_exhaustive()
    }
}

/// What a backend returns for one location: the whole secret document, from
/// which the resolver selects fields.
#[derive(Debug)]
pub struct Document {
    /// The secret, whole.
    pub value: SecretValue,
    /// How fields are addressed in it.
    pub format: Format,
    /// The backend's version of the document, when it has one (safe to log).
    pub version: Option<String>,
    /// The lease the document was issued under, if any.
    pub lease: Option<Lease>,
}

impl Document {
    /// A document with no version and no lease, whose fields are JSON keys.
    pub fn new(value: SecretValue) -> Self {
        Self {
            value,
            format: Format::Json,
            version: None,
            lease: None,
        }
    }

    /// Delivers what `reference` asks for: the whole value, or one field.
    ///
    /// Errors name the reference.
    pub fn select(&self, reference: &SecretRef) -> Result<SecretValue> {
        match reference.field() {
            None => Ok(SecretValue::copy_from_slice(self.value.expose())),
            Some(field) => extract_field(&self.value, self.format, field),
        }
        .map_err(|error| error.with_subject(reference))
    }
}

/// A source of secrets. One value of this type is one configured *instance*,
/// whose name is the scheme of the references it serves.
///
/// Implementations hold their credentials privately and must write `Debug`
/// by hand, listing only non-secret settings.
#[async_trait]
pub trait Backend: Send + Sync + fmt::Debug {
    /// The instance name, which is also the scheme of its references.
    fn name(&self) -> &str;

    /// What the backend supports beyond [`Backend::fetch`].
    fn capabilities(&self) -> Capabilities;

    /// Fetches the document at `location` (a reference whose field, if any,
    /// is ignored).
    ///
    /// # Behavior
    /// - A missing path is [`ErrorKind::NotFound`](crate::ErrorKind::NotFound).
    /// - Empty, binary and non-UTF-8 values come back byte for byte.
    /// - Errors name the location and never contain the value or a raw
    ///   server response.
    /// - Safe to call concurrently from many tasks.
    async fn fetch(&self, location: &SecretRef) -> Result<Document>;

    /// Fetches several locations, in the order given. Backends with a batch
    /// API override this; the default runs [`Backend::fetch`] concurrently,
    /// at most [`DEFAULT_CONCURRENCY`] at a time.
    ///
    /// # Behavior
    /// - One result per location, in order; one failure does not hide the others.
    async fn fetch_many(&self, locations: &[SecretRef]) -> Vec<Result<Document>> {
        fetch_each(self, locations).await
    }

    /// A cheap signal of change for `location`, for the watcher: a token
    /// that moves whenever the document may have changed (a version
    /// counter, metadata), fetched without reading the value. The watcher
    /// skips the fetch while the token stays the same.
    ///
    /// # Behavior
    /// - `Ok(None)` means "unknown": the watcher fetches and compares
    ///   digests. The default.
    /// - A token never contains the value or anything derived from it.
    /// - A token may move without a change (the watcher then fetches and
    ///   finds nothing new); it must never stay put across a change.
    async fn change_token(&self, location: &SecretRef) -> Result<Option<String>> {
        let _ = location;
        Ok(None)
    }

    /// A file on this machine whose changes are changes of `location`
    /// (the `file` backend's own file), for the watcher to follow with
    /// inotify instead of waiting for the next round. Default: none.
    fn watch_path(&self, location: &SecretRef) -> Option<PathBuf> {
        let _ = location;
        None
    }

    /// How long a lease this instance obtained has left, counting the
    /// renewals its [`Backend::keep_alive`] made. The watcher fetches new
    /// values when it runs low (a lease that reached its max TTL).
    ///
    /// # Behavior
    /// - `None`: unknown (the default); the watcher re-fetches at two
    ///   thirds of the lease's first TTL instead.
    fn lease_remaining(&self, lease_id: &str) -> Option<Duration> {
        let _ = lease_id;
        None
    }

    /// Revokes one lease this instance obtained, once the watcher has
    /// replaced its values. Default: nothing to revoke.
    async fn release_lease(&self, lease_id: &str) -> Result<()> {
        let _ = lease_id;
        Ok(())
    }

    /// Stores `value` at `path`, replacing what was there.
    ///
    /// # Behavior
    /// - After it returns, [`Backend::fetch`] of the path gives the new value.
    /// - No reader ever sees a partly written value.
    /// - Backends that cannot write return [`ErrorKind::Unsupported`](crate::ErrorKind::Unsupported).
    async fn put(&self, path: &str, value: &SecretValue) -> Result<()> {
        let _ = value;
        Err(
            Error::unsupported(format!("the {} backend cannot store secrets", self.name()))
                .with_subject(path),
        )
    }

    /// Lists the paths under `prefix` (all paths for an empty prefix), sorted.
    ///
    /// # Behavior
    /// - Backends that cannot list return [`ErrorKind::Unsupported`](crate::ErrorKind::Unsupported).
    async fn list(&self, prefix: &str) -> Result<Vec<String>> {
        Err(
            Error::unsupported(format!("the {} backend cannot list secrets", self.name()))
                .with_subject(prefix),
        )
    }

    /// Where this instance takes its credentials from, as configured: the
    /// variables it read them from when it was built, and the files it reads
    /// them from. hushbox removes those variables from the environment of
    /// the program it starts, and warns when that program's user could read
    /// those files. Default: none (a backend without credentials).
    ///
    /// # Behavior
    /// - Names variables and paths only, never a value.
    /// - Lists a variable only when the instance takes a credential from it
    ///   in this environment (an unset `VAULT_TOKEN` is not listed).
    fn credential_sources(&self) -> CredentialSources {
        CredentialSources::default()
    }

    /// Whether the instance holds something that expires while a program
    /// runs (renewable leases, the token that renews them) and so wants
    /// [`Backend::keep_alive`] to run beside the program. Asked after the
    /// fetch. Default: nothing to keep alive.
    fn needs_keep_alive(&self) -> bool {
        false
    }

    /// Renews tokens and leases until `shutdown` completes.
    ///
    /// # Behavior
    /// - Returns once `shutdown` has completed, not before.
    /// - Failures are logged and retried; they never end the loop early.
    async fn keep_alive(&self, shutdown: futures::future::BoxFuture<'static, ()>) {
        shutdown.await;
    }

    /// Gives back what this run obtained, when the user asked for it (such
    /// as Vault's `revoke_on_exit`). Called once, when hushbox is done.
    /// Returns how many leases were released. Default: nothing to release.
    async fn release(&self) -> Result<usize> {
        Ok(0)
    }

    /// Removes the secret at `path`.
    ///
    /// # Behavior
    /// - A missing path is [`ErrorKind::NotFound`](crate::ErrorKind::NotFound).
    /// - Backends that cannot delete return [`ErrorKind::Unsupported`](crate::ErrorKind::Unsupported).
    async fn delete(&self, path: &str) -> Result<()> {
        Err(
            Error::unsupported(format!("the {} backend cannot delete secrets", self.name()))
                .with_subject(path),
        )
    }
}

/// [`Backend::fetch_many`]'s default: one `fetch` per location, at most
/// [`DEFAULT_CONCURRENCY`] at a time, results in order. For a backend whose
/// own `fetch_many` batches only some of the time.
pub async fn fetch_each<B: Backend + ?Sized>(
    backend: &B,
    locations: &[SecretRef],
) -> Vec<Result<Document>> {
    use futures::StreamExt;
    // Collected first: a lazy `map` over the slice trips the compiler's
    // higher-ranked lifetime check under `async_trait`'s `Send` bound.
    let fetches: Vec<_> = locations
        .iter()
        .map(|location| backend.fetch(location))
        .collect();
    futures::stream::iter(fetches)
        .buffered(DEFAULT_CONCURRENCY)
        .collect()
        .await
}
