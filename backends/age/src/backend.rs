//! [`AgeBackend`]: the [`Backend`] face of an [`AgeStore`].

use std::fmt;
use std::sync::Arc;

use hushbox_core::{
    Backend, BackendContext, Capabilities, Document, Error, Result, SecretRef, SecretValue,
    async_trait,
};

use crate::age_store::AgeStore;
use crate::config::{AgeConfig, AgeSettings};
use crate::store::check_secret_path;

/// A store of age-encrypted secrets in passage's layout: secret `a/b` is
/// `<store>/a/b.age`, binary or ASCII-armored, encrypted to the recipients
/// of the nearest `.age-recipients` file, and checked against the store's
/// integrity manifest when it has one.
///
/// Identities are loaded from the identity file on first use, once; a
/// failed load is retried on the next call (so that running `hushbox keygen`
/// fixes a long-running process).
pub struct AgeBackend {
    store: Arc<AgeStore>,
}

impl fmt::Debug for AgeBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let settings = self.store.settings();
        f.debug_struct("AgeBackend")
            .field("name", &self.store.name())
            .field("store", &settings.store)
            .field("identity_file", &settings.identity_file)
            .field("max_size", &settings.max_size)
            .finish_non_exhaustive()
    }
}

impl AgeBackend {
    /// A backend named `name` over resolved settings. Does no I/O.
    pub fn new(name: impl Into<String>, settings: AgeSettings) -> Self {
        Self::from_store(Arc::new(AgeStore::new(name, settings)))
    }

    /// The backend of a store.
    pub fn from_store(store: Arc<AgeStore>) -> Self {
        Self { store }
    }

    /// A backend from `[backends.NAME]` settings (or [`AgeConfig::default`]
    /// without a manifest), resolved against `context` as
    /// [`AgeConfig::resolve`] describes. Does no I/O.
    pub fn from_config(config: &AgeConfig, context: &BackendContext<'_>) -> Result<Self> {
        Ok(Self::new(context.name, config.resolve(context)?))
    }

    /// The resolved settings: where the store and the identity file are.
    pub fn settings(&self) -> &AgeSettings {
        self.store.settings()
    }

    /// The store this backend reads and writes.
    pub fn store(&self) -> &Arc<AgeStore> {
        &self.store
    }

    /// Checks a location and turns it into a store path.
    fn path_of(location: &SecretRef) -> Result<String> {
        let subject = location.location();
        check_secret_path(location.path())
            .map_err(|error| Error::from(error).with_subject(&subject))?;
        if let Some(param) = location.params().keys().next() {
            return Err(Error::config(format!(
                "the age backend takes no parameters (got `{param}`)"
            ))
            .with_subject(&subject));
        }
        Ok(location.path().to_owned())
    }
}

/// Runs blocking work (file I/O, cryptography) on Tokio's blocking pool, so
/// that it never stalls the runtime's own threads.
async fn blocking<T, F>(work: F) -> Result<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => Ok(result),
        Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
        Err(_) => Err(Error::new(
            hushbox_core::ErrorKind::Unavailable,
            "the runtime is shutting down",
        )),
    }
}

#[async_trait]
impl Backend for AgeBackend {
    fn name(&self) -> &str {
        self.store.name()
    }

    /// The identity file, and the variable that named it, if one did.
    fn credential_sources(&self) -> hushbox_core::CredentialSources {
        let settings = self.store.settings();
        hushbox_core::CredentialSources {
            variables: settings
                .identity_variable
                .iter()
                .map(|variable| (*variable).to_owned())
                .collect(),
            files: vec![settings.identity_file.clone()],
        }
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            write: true,
            list: true,
            delete: true,
            fields: true,
            leases: false,
        }
    }

    /// Decrypts `<store>/<path>.age`, after checking it against the store's
    /// integrity manifest.
    ///
    /// # Behavior
    /// - A missing file is `NotFound`; an unsafe path is `Config`.
    /// - A file not encrypted to any identity is `PermissionDenied`.
    /// - A truncated, altered or non-age file is `MalformedPayload`.
    /// - A file that the integrity manifest does not record as this
    ///   secret's (substituted, renamed, deleted, rolled back) is
    ///   `MalformedPayload`, naming what happened.
    /// - A passphrase-encrypted file is `Unsupported`.
    /// - A plaintext over `max_size` is `TooLarge`.
    async fn fetch(&self, location: &SecretRef) -> Result<Document> {
        self.fetch_many(std::slice::from_ref(location))
            .await
            .pop()
            .expect("one result per location")
    }

    /// Reads every location in one blocking task that decrypts across all
    /// cores, loading the integrity manifest and the identities once.
    async fn fetch_many(&self, locations: &[SecretRef]) -> Vec<Result<Document>> {
        let mut results: Vec<Option<Result<Document>>> = Vec::with_capacity(locations.len());
        let mut paths = Vec::new();
        for location in locations {
            match Self::path_of(location) {
                Ok(path) => {
                    tracing::debug!(secret = %location.location(), "reading age file");
                    paths.push(path);
                    results.push(None);
                }
                Err(error) => results.push(Some(Err(error))),
            }
        }
        let store = Arc::clone(&self.store);
        let read = blocking(move || store.read_many(&paths)).await;
        let mut read = match read {
            Ok(read) => read.into_iter(),
            Err(error) => {
                return locations
                    .iter()
                    .map(|location| {
                        Err(Error::new(error.kind(), error.message().to_owned())
                            .with_subject(location.location()))
                    })
                    .collect();
            }
        };
        results
            .into_iter()
            .zip(locations)
            .map(|(result, location)| match result {
                Some(result) => result,
                None => {
                    let (value, version) = read
                        .next()
                        .expect("one read per valid location")
                        .map_err(|error| {
                            self.store
                                .explain_missing(error)
                                .with_subject(location.location())
                        })?;
                    let mut document = Document::new(value);
                    document.version = Some(version);
                    Ok(document)
                }
            })
            .collect()
    }

    /// The integrity manifest's version counter, which every write moves
    /// (see [`AgeStore::change_token`]); unknown for a store without one.
    async fn change_token(&self, location: &SecretRef) -> Result<Option<String>> {
        let _ = location;
        let store = Arc::clone(&self.store);
        blocking(move || store.change_token()).await
    }

    /// Encrypts `value` to `<store>/<path>.age`, creating directories as
    /// needed, and records it in the integrity manifest.
    ///
    /// # Behavior
    /// - Recipients come from the nearest `.age-recipients` walking up from
    ///   the secret's directory to the store root; without one, from the
    ///   loaded identities (passage's rule).
    /// - The file is written to a temporary file in the same directory,
    ///   fsynced and renamed into place: no reader sees a partial file.
    /// - While a `.age-recipients` differs from what the integrity manifest
    ///   records, nothing is written (`MalformedPayload`).
    async fn put(&self, path: &str, value: &SecretValue) -> Result<()> {
        let store = Arc::clone(&self.store);
        let owned_path = path.to_owned();
        // The blocking pool needs a value it owns: copy it into a buffer of
        // exactly its size, which is wiped when the task drops it.
        let plaintext = SecretValue::copy_from_slice(value.expose());
        blocking(move || store.set(&owned_path, &plaintext)).await??;
        tracing::debug!(secret = %path.escape_debug(), "stored age file");
        Ok(())
    }

    /// Lists the secrets whose names start with `prefix`, sorted, without
    /// the `.age` extension.
    async fn list(&self, prefix: &str) -> Result<Vec<String>> {
        let store = Arc::clone(&self.store);
        let owned_prefix = prefix.to_owned();
        blocking(move || store.list(&owned_prefix)).await?
    }

    /// Removes `<store>/<path>.age`, and the directories that leaves empty.
    async fn delete(&self, path: &str) -> Result<()> {
        let store = Arc::clone(&self.store);
        let owned_path = path.to_owned();
        blocking(move || store.remove(&owned_path)).await?
    }
}
