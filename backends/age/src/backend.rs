//! [`AgeBackend`]: a passage-compatible store of age-encrypted files.

use std::fmt;
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::Path;
use std::sync::Arc;

use age::armor::ArmoredReader;
use age::{Decryptor, Encryptor};
use hushbox_core::{
    Backend, BackendContext, Capabilities, Document, Error, ReadError, Result, SecretRef,
    SecretValue, async_trait,
};
use tokio::sync::OnceCell;

use crate::config::{AgeConfig, AgeSettings};
use crate::error::{AgeError, from_decrypt, from_stream_io};
use crate::keys::{Identities, parse_recipients_from};
use crate::store::{self, check_secret_path, secret_file};

/// Room for what age adds around a plaintext: the header (a few hundred
/// bytes per recipient), 16 bytes per 64 KiB chunk, and ASCII armor's
/// 4/3 expansion plus line breaks. A ciphertext larger than twice the
/// plaintext limit plus this is refused before it is decrypted.
const CIPHERTEXT_OVERHEAD: usize = 1024 * 1024;

/// A store of age-encrypted secrets in passage's layout: secret `a/b` is
/// `<store>/a/b.age`, binary or ASCII-armored, encrypted to the recipients
/// of the nearest `.age-recipients` file.
///
/// Identities are loaded from the identity file on first use, once; a
/// failed load is retried on the next call (so that running `hushbox keygen`
/// fixes a long-running process).
pub struct AgeBackend {
    name: String,
    settings: AgeSettings,
    identities: OnceCell<Arc<Identities>>,
}

impl fmt::Debug for AgeBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AgeBackend")
            .field("name", &self.name)
            .field("store", &self.settings.store)
            .field("identity_file", &self.settings.identity_file)
            .field("max_size", &self.settings.max_size)
            .finish_non_exhaustive()
    }
}

impl AgeBackend {
    /// A backend named `name` over resolved settings. Does no I/O.
    pub fn new(name: impl Into<String>, settings: AgeSettings) -> Self {
        Self {
            name: name.into(),
            settings,
            identities: OnceCell::new(),
        }
    }

    /// A backend from `[backends.NAME]` settings (or [`AgeConfig::default`]
    /// without a manifest), resolved against `context` as
    /// [`AgeConfig::resolve`] describes. Does no I/O.
    pub fn from_config(config: &AgeConfig, context: &BackendContext<'_>) -> Result<Self> {
        Ok(Self::new(context.name, config.resolve(context)?))
    }

    /// The resolved settings: where the store and the identity file are.
    pub fn settings(&self) -> &AgeSettings {
        &self.settings
    }

    /// How errors name a secret that has no parsed reference yet.
    fn subject(&self, path: &str) -> String {
        format!("{}://{}", self.name, path.escape_debug())
    }

    async fn identities(&self) -> Result<Arc<Identities>> {
        self.identities
            .get_or_try_init(|| async {
                let path = self.settings.identity_file.clone();
                let identities = blocking(move || Identities::load(&path)).await?;
                tracing::debug!(
                    backend = %self.name,
                    identity_file = %self.settings.identity_file.display(),
                    "loaded age identities"
                );
                Ok(Arc::new(identities))
            })
            .await
            .cloned()
    }
}

/// Runs blocking work (file I/O, cryptography) on tokio's blocking pool, so
/// that concurrent fetches decrypt on every core and never stall the
/// runtime's own threads.
async fn blocking<T, F>(work: F) -> Result<T>
where
    F: FnOnce() -> Result<T, AgeError> + Send + 'static,
    T: Send + 'static,
{
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => result.map_err(Error::from),
        Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
        Err(_) => Err(Error::new(
            hushbox_core::ErrorKind::Unavailable,
            "the runtime is shutting down",
        )),
    }
}

/// Reads a ciphertext whole. It is not secret, so a plain buffer will do;
/// it is read up front so that every error from the decryptor describes
/// the file's contents, not the disk.
fn read_ciphertext(store: &Path, path: &str, limit: usize) -> Result<Vec<u8>, AgeError> {
    let file_path = secret_file(store, path);
    let mut file = match File::open(&file_path) {
        Ok(file) => file,
        // A path through a regular file (`a` existing as a file, asking for
        // `a/b`) is as missing as any other.
        Err(error)
            if matches!(
                error.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
            ) =>
        {
            return Err(AgeError::NotFound {
                store_missing: !store.is_dir(),
                file: file_path,
            });
        }
        Err(source) => {
            return Err(AgeError::io(
                format!("cannot open {}", file_path.display()),
                source,
            ));
        }
    };
    let ceiling = limit.saturating_mul(2).saturating_add(CIPHERTEXT_OVERHEAD);
    let length = file
        .metadata()
        .map_err(|source| AgeError::io(format!("cannot stat {}", file_path.display()), source))?
        .len();
    if length > ceiling as u64 {
        return Err(AgeError::TooLarge { limit });
    }
    let mut ciphertext = Vec::with_capacity(length as usize);
    (&mut file)
        .take((ceiling as u64).saturating_add(1))
        .read_to_end(&mut ciphertext)
        .map_err(|source| AgeError::io(format!("cannot read {}", file_path.display()), source))?;
    if ciphertext.len() > ceiling {
        return Err(AgeError::TooLarge { limit });
    }
    Ok(ciphertext)
}

/// Decrypts a binary or ASCII-armored age file into a [`SecretValue`].
///
/// `age::decrypt` is not used: it grows a `Vec` and leaves unwiped copies
/// of the plaintext behind. The plaintext is never longer than the
/// ciphertext, so a buffer of the ciphertext's length is filled in place
/// and never reallocated.
fn decrypt(
    ciphertext: &[u8],
    identities: &Identities,
    limit: usize,
) -> Result<SecretValue, AgeError> {
    // The decryptor reports a foreign file as a short header; say what it is.
    if ciphertext.is_empty() {
        return Err(AgeError::Malformed {
            why: "the file is empty",
        });
    }
    if !ciphertext.starts_with(b"age-encryption.org/")
        && !ciphertext
            .trim_ascii_start()
            .starts_with(b"-----BEGIN AGE ENCRYPTED FILE-----")
    {
        return Err(AgeError::Malformed {
            why: "it does not start with an age header (age-encryption.org/… or ASCII armor)",
        });
    }
    let decryptor = Decryptor::new_buffered(ArmoredReader::new(ciphertext))
        .map_err(|error| from_decrypt(error, identities.path()))?;
    if decryptor.is_scrypt() {
        return Err(AgeError::Passphrase);
    }
    let mut plaintext = decryptor
        .decrypt(identities.iter())
        .map_err(|error| from_decrypt(error, identities.path()))?;
    SecretValue::read_bounded(&mut plaintext, ciphertext.len(), limit).map_err(
        |error| match error {
            ReadError::TooLarge { limit } => AgeError::TooLarge { limit },
            ReadError::Io(error) => from_stream_io(&error),
        },
    )
}

/// Encrypts `plaintext` (binary, not armored, as passage writes) to
/// `recipients` and atomically replaces `target` with the result.
fn encrypt_to_file(
    target: &Path,
    recipients: &[Box<dyn age::Recipient + Send>],
    plaintext: &SecretValue,
) -> Result<(), AgeError> {
    let encryptor = Encryptor::with_recipients(
        recipients
            .iter()
            .map(|recipient| recipient.as_ref() as &dyn age::Recipient),
    )
    .map_err(|error| match error {
        age::EncryptError::Io(source) => AgeError::io("cannot encrypt", source),
        _ => AgeError::RecipientsIncompatible,
    })?;
    store::write_atomically(target, |file| {
        let mut writer = encryptor.wrap_output(BufWriter::new(file))?;
        // Where a value leaves hushbox's custody: into the encryptor.
        writer.write_all(plaintext.expose())?;
        writer.finish()?.flush()
    })
    .map_err(|source| AgeError::io(format!("cannot write {}", target.display()), source))
}

#[async_trait]
impl Backend for AgeBackend {
    fn name(&self) -> &str {
        &self.name
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

    /// Decrypts `<store>/<path>.age`.
    ///
    /// # Behavior
    /// - A missing file is `NotFound`; an unsafe path is `Config`.
    /// - A file not encrypted to any identity is `PermissionDenied`.
    /// - A truncated, altered or non-age file is `MalformedPayload`.
    /// - A passphrase-encrypted file is `Unsupported`.
    /// - A plaintext over `max_size` is `TooLarge`.
    async fn fetch(&self, location: &SecretRef) -> Result<Document> {
        let subject = location.location();
        let path = location.path().to_owned();
        check_secret_path(&path).map_err(|error| Error::from(error).with_subject(&subject))?;
        if let Some(param) = location.params().keys().next() {
            return Err(Error::config(format!(
                "the age backend takes no parameters (got `{param}`)"
            ))
            .with_subject(&subject));
        }
        tracing::debug!(secret = %subject, "reading age file");
        let store = self.settings.store.clone();
        let limit = self.settings.max_size;
        let ciphertext = blocking(move || read_ciphertext(&store, &path, limit))
            .await
            .map_err(|error| error.with_subject(&subject))?;
        let identities = self
            .identities()
            .await
            .map_err(|error| error.with_subject(&subject))?;
        let value = blocking(move || decrypt(&ciphertext, &identities, limit))
            .await
            .map_err(|error| error.with_subject(&subject))?;
        Ok(Document::new(value))
    }

    /// Encrypts `value` to `<store>/<path>.age`, creating directories as
    /// needed.
    ///
    /// # Behavior
    /// - Recipients come from the nearest `.age-recipients` walking up from
    ///   the secret's directory to the store root; without one, from the
    ///   loaded identities (passage's rule).
    /// - The file is written to a temporary file in the same directory,
    ///   fsynced and renamed into place: no reader sees a partial file.
    async fn put(&self, path: &str, value: &SecretValue) -> Result<()> {
        let subject = self.subject(path);
        check_secret_path(path).map_err(|error| Error::from(error).with_subject(&subject))?;
        let store = self.settings.store.clone();
        let owned_path = path.to_owned();
        let from_file = blocking(move || {
            store::nearest_recipients_file(&store, &owned_path)
                .map(|file| store::read_recipients_file(&file))
                .transpose()
        })
        .await
        .map_err(|error| error.with_subject(&subject))?;
        let recipients = match from_file {
            Some(recipients) => recipients,
            None => {
                let identities = self
                    .identities()
                    .await
                    .map_err(|error| error.with_subject(&subject))?;
                let origin = format!(
                    "the identities in {} (no .age-recipients applies)",
                    identities.path().display()
                );
                parse_recipients_from(&identities.recipients().join("\n"), &origin)
                    .map_err(|error| Error::from(error).with_subject(&subject))?
            }
        };
        let target = secret_file(&self.settings.store, path);
        // The blocking pool needs a value it owns: copy it into a buffer of
        // exactly its size, which is wiped when the task drops it.
        let plaintext = SecretValue::copy_from_slice(value.expose());
        blocking(move || {
            if let Some(dir) = target.parent() {
                store::create_dirs(dir)?;
            }
            encrypt_to_file(&target, &recipients, &plaintext)
        })
        .await
        .map_err(|error| error.with_subject(&subject))?;
        tracing::debug!(secret = %subject, "stored age file");
        Ok(())
    }

    /// Lists the secrets whose names start with `prefix`, sorted, without
    /// the `.age` extension.
    async fn list(&self, prefix: &str) -> Result<Vec<String>> {
        if !prefix.is_empty() {
            let trimmed = prefix.strip_suffix('/').unwrap_or(prefix);
            check_secret_path(trimmed)
                .map_err(|error| Error::from(error).with_subject(self.subject(prefix)))?;
        }
        let store = self.settings.store.clone();
        let owned_prefix = prefix.to_owned();
        blocking(move || store::list(&store, &owned_prefix))
            .await
            .map_err(|error| error.with_subject(self.subject(prefix)))
    }

    /// Removes `<store>/<path>.age`, and the directories that leaves empty.
    async fn delete(&self, path: &str) -> Result<()> {
        let subject = self.subject(path);
        check_secret_path(path).map_err(|error| Error::from(error).with_subject(&subject))?;
        let store = self.settings.store.clone();
        let owned_path = path.to_owned();
        blocking(move || store::remove(&store, &owned_path))
            .await
            .map_err(|error| error.with_subject(&subject))
    }
}
