//! [`AgeStore`]: the store as hushbox reads and manages it, with its
//! integrity manifest. Blocking code: the backend runs it on Tokio's
//! blocking pool, the CLI calls it directly.
//!
//! # Trust
//!
//! Reading a store loads its manifest once (again when the file changes),
//! opens the key block with the reader's identities, checks the MAC, checks
//! the key against the one this machine trusts for the store, and compares
//! the version with the newest this machine has seen. Then every secret
//! read is checked against the manifest before it is decrypted.
//!
//! Writing takes the store's lock, loads the manifest the same way (a write
//! never builds on a manifest that fails any check), changes files, and
//! writes a new manifest with the version incremented.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::fs::{self, File};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use hushbox_core::{BackendContext, Error, Result, SecretValue};

use crate::config::{AgeConfig, AgeSettings};
use crate::crypt::{decrypt, encrypt, read_ciphertext};
use crate::error::AgeError;
use crate::integrity::{
    self, Digest, Entry, INTEGRITY_FILE, Index, KeyRing, Sealed, SetId, digest, set_id,
};
use crate::keys::{Identities, RecipientSet, normalize_recipient};
use crate::root::{Kind, Root};
use crate::state::{self, Seen};
use crate::store::{self, RECIPIENTS_FILE, check_secret_path, secret_file};

/// The largest integrity manifest read: 64 MiB is some 400,000 secrets.
const MANIFEST_LIMIT: u64 = 64 * 1024 * 1024;

/// A passage-compatible age store, with hushbox's integrity manifest.
///
/// Every method is blocking. Identities are loaded on first use and kept; a
/// failed load is tried again on the next call.
pub struct AgeStore {
    name: String,
    settings: AgeSettings,
    identities: Mutex<Option<Arc<Identities>>>,
    trust: Mutex<Option<Arc<Trust>>>,
    warned_unprotected: AtomicBool,
    warned_unanchored: AtomicBool,
    /// The newest record this process read or wrote. A long-running
    /// process (`--watch` after a privilege drop) may lose access to the
    /// state file it read at start; the record it holds keeps rollback and
    /// key-swap detection on for its life.
    remembered: Mutex<Option<Seen>>,
    warned_state_unreadable: AtomicBool,
}

impl fmt::Debug for AgeStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AgeStore")
            .field("name", &self.name)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// Where the manifest file stood when it was read: a changed file is
/// read again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp(Option<(u64, u64, i64, i64)>);

impl Stamp {
    fn of(path: &Path) -> Self {
        Stamp(fs::metadata(path).ok().map(|metadata| {
            (
                metadata.ino(),
                metadata.len(),
                metadata.mtime(),
                metadata.mtime_nsec(),
            )
        }))
    }
}

/// What a reader trusts.
enum Trust {
    /// No manifest, and this machine has never seen one for this store:
    /// files are read without integrity checks, with a warning.
    Unprotected { stamp: Stamp },
    /// A verified manifest.
    Verified(Box<Verified>),
}

impl Trust {
    fn stamp(&self) -> Stamp {
        match self {
            Trust::Unprotected { stamp } => *stamp,
            Trust::Verified(verified) => verified.stamp,
        }
    }
}

/// A manifest whose key, MAC and version passed.
struct Verified {
    stamp: Stamp,
    index: Index,
    ring: KeyRing,
    armored_ring: String,
    /// What this machine saw when that is newer than (or forked from)
    /// this manifest: secrets that differ from it are rolled back.
    newer_seen: Option<Seen>,
}

impl Verified {
    fn check(&self, name: &str, file: &Path, found: Option<&Digest>) -> Result<(), AgeError> {
        check_entry(&self.index, self.newer_seen.as_ref(), name, file, found)
    }
}

/// Checks a secret's file (its digest, or `None` when it is missing)
/// against a manifest and, when this machine has seen a newer one, against
/// that.
fn check_entry(
    index: &Index,
    newer_seen: Option<&Seen>,
    name: &str,
    file: &Path,
    found: Option<&Digest>,
) -> Result<(), AgeError> {
    let recorded = index.secrets.get(name);
    let same_as = |digest: &Digest| {
        index
            .secrets
            .iter()
            .find(|(other, entry)| other.as_str() != name && entry.digest == *digest)
            .map(|(other, _)| other.clone())
    };
    match (recorded, found) {
        (None, None) => {}
        (Some(_), None) => {
            return Err(AgeError::SecretDeleted {
                file: file.to_owned(),
                name: name.to_owned(),
            });
        }
        (None, Some(found)) => {
            return Err(AgeError::SecretUnrecorded {
                file: file.to_owned(),
                name: name.to_owned(),
                same_as: same_as(found),
            });
        }
        (Some(entry), Some(found)) if entry.digest != *found => {
            return Err(AgeError::SecretSubstituted {
                file: file.to_owned(),
                name: name.to_owned(),
                same_as: same_as(found),
            });
        }
        (Some(_), Some(_)) => {}
    }
    if let Some(seen) = newer_seen
        && seen.secrets.get(name) != found
    {
        return Err(AgeError::SecretRolledBack {
            name: name.to_owned(),
            version: index.version,
            seen_version: seen.version,
        });
    }
    Ok(())
}

/// A problem with the manifest as a whole, as `verify` and `accept` see it.
enum ManifestIssue {
    Forged(&'static str),
    KeyChanged,
    RolledBack(Seen),
}

/// A manifest read and opened, not yet judged.
struct Opened {
    sealed: Sealed,
    ring: KeyRing,
}

/// What `verify` found.
#[derive(Debug, Default)]
pub struct VerifyReport {
    /// The manifest's version, when there is one that opened.
    pub version: Option<u64>,
    /// How many secrets were checked.
    pub checked: usize,
    /// Integrity failures, each naming what failed.
    pub problems: Vec<Error>,
    /// Secrets whose recipients changed since they were encrypted (what
    /// `reencrypt` would re-encrypt).
    pub stale: Vec<String>,
    /// The id of the manifest's integrity key (32 hex digits), what
    /// `integrity_key` pins.
    pub key: Option<String>,
}

/// What `reencrypt` did.
#[derive(Debug, Default)]
pub struct ReencryptReport {
    /// Secrets re-encrypted, by name.
    pub reencrypted: Vec<String>,
    /// Secrets already encrypted to their current recipients.
    pub unchanged: usize,
    /// Secrets that could not be re-encrypted, with why.
    pub failed: Vec<Error>,
    /// Recipients added to the store (of any `.age-recipients`).
    pub added_recipients: Vec<String>,
    /// Recipients no longer in any `.age-recipients`.
    pub removed_recipients: Vec<String>,
    /// Whether the integrity key was replaced (a recipient left).
    pub key_rotated: bool,
}

/// What `accept` recorded.
#[derive(Debug, Default)]
pub struct AcceptReport {
    /// Whether a manifest was created (the store had none).
    pub created: bool,
    /// Secrets recorded for the first time.
    pub added: Vec<String>,
    /// Secrets whose recorded file changed.
    pub changed: Vec<String>,
    /// Secrets no longer recorded (their files are gone).
    pub removed: Vec<String>,
    /// Manifest-level problems that were accepted (rollback, a new key, a
    /// manifest edited by hand).
    pub accepted: Vec<String>,
    /// The manifest's version afterwards.
    pub version: u64,
}

/// The recipients of a directory, as `store recipients ls` shows them.
#[derive(Debug)]
pub struct RecipientsView {
    /// The `.age-recipients` file that applies, if any.
    pub file: Option<PathBuf>,
    /// Its recipients, normalized (ssh keys without their comment).
    pub recipients: Vec<String>,
}

/// A secret's state when it was read, for a later conditional write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Revision(Option<Digest>);

impl Revision {
    /// The revision of a secret that does not exist.
    pub fn absent() -> Self {
        Revision(None)
    }
}

impl AgeStore {
    /// A store named `name` (the scheme of its references) over resolved
    /// settings. Does no I/O.
    pub fn new(name: impl Into<String>, settings: AgeSettings) -> Self {
        Self {
            name: name.into(),
            settings,
            identities: Mutex::new(None),
            trust: Mutex::new(None),
            warned_unprotected: AtomicBool::new(false),
            warned_unanchored: AtomicBool::new(false),
            remembered: Mutex::new(None),
            warned_state_unreadable: AtomicBool::new(false),
        }
    }

    /// A store from `[backends.NAME]` settings resolved against `context`
    /// (see [`AgeConfig::resolve`]). Does no I/O.
    pub fn from_config(config: &AgeConfig, context: &BackendContext<'_>) -> Result<Self> {
        Ok(Self::new(context.name, config.resolve(context)?))
    }

    /// The instance name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The resolved settings.
    pub fn settings(&self) -> &AgeSettings {
        &self.settings
    }

    /// A "no such secret" from a store that does not exist where no
    /// setting named one: says that the path was the default, and how to
    /// name the store meant. Other errors pass unchanged.
    pub fn explain_missing(&self, error: Error) -> Error {
        if error.kind() != hushbox_core::ErrorKind::NotFound
            || !self.settings.store_defaulted
            || self.settings.store.exists()
        {
            return error;
        }
        error.with_hint(format!(
            "{} is the default store (no manifest names a store; {} and {} are unset): \
             run this in the project whose hushbox.toml names its store, set {}, \
             or create a store with `hushbox store init`",
            self.settings.store.display(),
            crate::config::ENV_STORE,
            crate::config::ENV_PASSAGE_DIR,
            crate::config::ENV_STORE,
        ))
    }

    fn manifest_path(&self) -> PathBuf {
        self.settings.store.join(INTEGRITY_FILE)
    }

    /// The store's directory, checked and opened: everything below it is
    /// reached from this descriptor, never by path.
    fn root(&self) -> Result<Root, AgeError> {
        Root::open(&self.settings.store, &self.settings.trust)
    }

    fn subject(&self, path: &str) -> String {
        format!("{}://{}", self.name, path.escape_debug())
    }

    fn state_file(&self) -> Option<PathBuf> {
        self.settings
            .state_dir
            .as_deref()
            .map(|dir| state::file_for(dir, &self.settings.store))
    }

    fn seen(&self) -> Option<Seen> {
        let held = self
            .remembered
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone();
        let from_file = self.state_file().and_then(|file| match state::load(&file) {
            Ok(seen) => seen,
            Err(error) => {
                if held.is_none() {
                    tracing::warn!(
                        file = %file.display(),
                        %error,
                        "cannot read hushbox's record of this store; rollback detection is off until it is rewritten"
                    );
                } else if !self.warned_state_unreadable.swap(true, Ordering::Relaxed) {
                    tracing::debug!(
                        file = %file.display(),
                        %error,
                        "cannot read hushbox's record of this store any more; using the one held in memory"
                    );
                }
                None
            }
        });
        // The newer of the two: a record never goes backwards.
        let newest = match (from_file, held) {
            (Some(file), Some(held)) if held.version > file.version => Some(held),
            (Some(file), _) => Some(file),
            (None, held) => held,
        };
        if let Some(newest) = &newest {
            self.hold(newest.clone());
        }
        newest
    }

    fn hold(&self, seen: Seen) {
        *self
            .remembered
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(seen);
    }

    /// Records `index` as the newest manifest this machine has verified.
    /// A failure turns rollback and key-swap detection off for this store,
    /// so it is said at WARN (once), never quietly: a read-only home is
    /// normal in a container, and exactly where the checks are lost.
    fn remember(&self, index: &Index) {
        if let Err(why) = self.try_remember(index) {
            self.warn_unanchored(&why);
        }
    }

    /// [`Self::remember`], returning why it could not record instead of
    /// warning.
    fn try_remember(&self, index: &Index) -> Result<(), String> {
        // Held before the file is written: a process that verified the
        // store once is anchored by what it holds, file or not.
        let anchored = self
            .remembered
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .is_some();
        match self.write_record(index) {
            Ok(()) => {
                self.hold(Seen::of(index));
                Ok(())
            }
            Err(why) if anchored => {
                tracing::debug!(why, "keeping the store's record in memory only");
                self.hold(Seen::of(index));
                Ok(())
            }
            Err(why) => Err(why),
        }
    }

    fn write_record(&self, index: &Index) -> Result<(), String> {
        let Some(file) = self.state_file() else {
            return Err(
                "there is no state directory (neither XDG_STATE_HOME nor HOME is set)".to_owned(),
            );
        };
        state::save(&file, &self.settings.store, &Seen::of(index))
            .map_err(|error| format!("cannot write {}: {error}", file.display()))
    }

    fn warn_unanchored(&self, why: &str) {
        if self.warned_unanchored.swap(true, Ordering::Relaxed) {
            return;
        }
        if self.settings.integrity_key.is_some() {
            tracing::warn!(
                store = %self.settings.store.display(),
                why,
                "cannot record the store's integrity version; rollback detection is off (the \
                 pinned integrity_key still refuses a replaced manifest)"
            );
        } else {
            tracing::warn!(
                store = %self.settings.store.display(),
                why,
                "cannot record the store's integrity version; rollback detection is off and a \
                 manifest replaced under a new key goes unnoticed: pin the key with \
                 `integrity_key` (or HUSHBOX_INTEGRITY_KEY) where no state persists"
            );
        }
    }

    pub(crate) fn identities(&self) -> Result<Arc<Identities>, AgeError> {
        let mut slot = self.identities.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(identities) = slot.as_ref() {
            return Ok(Arc::clone(identities));
        }
        let identities = Arc::new(Identities::load(&self.settings.identity_file).map_err(
            |error| match error {
                AgeError::IdentityMissing { path, .. } => AgeError::IdentityMissing {
                    path,
                    defaulted: self.settings.identity_defaulted,
                },
                other => other,
            },
        )?);
        tracing::debug!(
            backend = %self.name,
            identity_file = %self.settings.identity_file.display(),
            "loaded age identities"
        );
        *slot = Some(Arc::clone(&identities));
        Ok(identities)
    }

    /// The integrity manifest's store id and version counter, read without
    /// decrypting anything: every write through hushbox moves the counter,
    /// so the same token means no secret of the store changed. `None`
    /// without a manifest (or one that does not parse): the caller must
    /// then read the secrets to know. A hint only: the reads that follow a
    /// moved token still verify everything.
    pub fn change_token(&self) -> Option<String> {
        let path = self.manifest_path();
        let bytes = store::read_optional(&self.root().ok()?, &path).ok()??;
        let text = std::str::from_utf8(&bytes).ok()?;
        let mut store_id = None;
        let mut version = None;
        for line in text.lines().take(16) {
            if let Some(id) = line.strip_prefix("store ") {
                store_id = Some(id.trim());
            } else if let Some(number) = line.strip_prefix("version ") {
                version = number.trim().parse::<u64>().ok();
            }
        }
        Some(format!("{}:{}", store_id?, version?))
    }

    // ----- loading and judging the manifest -----

    /// Reads and opens the manifest; `None` when there is none.
    fn open_manifest(&self) -> Result<Option<(Stamp, Opened)>, AgeError> {
        let path = self.manifest_path();
        let stamp = Stamp::of(&path);
        let Some(bytes) = store::read_optional(&self.root()?, &path)? else {
            return Ok(None);
        };
        if bytes.len() as u64 > MANIFEST_LIMIT {
            return Err(AgeError::IntegrityMalformed {
                file: path,
                line: 1,
                why: "it is larger than 64 MiB",
            });
        }
        let text = String::from_utf8(bytes).map_err(|_| AgeError::IntegrityMalformed {
            file: path.clone(),
            line: 1,
            why: "it is not UTF-8 text",
        })?;
        let sealed = integrity::parse(&text).map_err(|error| AgeError::IntegrityMalformed {
            file: path.clone(),
            line: error.line,
            why: error.why,
        })?;
        let identities = self.identities()?;
        let payload =
            decrypt(sealed.armored_ring.as_bytes(), &identities, 1024 * 1024).map_err(|error| {
                match error {
                    AgeError::NoMatchingKeys { identity_file } => {
                        AgeError::IntegrityKeyUnreadable {
                            file: path.clone(),
                            identity_file,
                        }
                    }
                    _ => AgeError::IntegrityForged {
                        file: path.clone(),
                        why: "has a key block that is not a valid age file",
                    },
                }
            })?;
        let ring =
            KeyRing::from_payload(payload.expose()).map_err(|why| AgeError::IntegrityForged {
                file: path.clone(),
                why,
            })?;
        Ok(Some((stamp, Opened { sealed, ring })))
    }

    /// The problems of an opened manifest, judged against what this
    /// machine has seen.
    fn judge(opened: &Opened, seen: Option<&Seen>) -> Vec<ManifestIssue> {
        let index = &opened.sealed.index;
        let mut issues = Vec::new();
        if opened.ring.current.id() != index.key {
            issues.push(ManifestIssue::Forged(
                "holds a key block that does not contain the key the manifest names",
            ));
        } else if !opened.sealed.verify(&opened.ring.current) {
            issues.push(ManifestIssue::Forged("does not verify under its own key"));
        }
        if let Some(seen) = seen {
            let same_store = seen.store == index.store;
            let trusted_key = seen.key == index.key || opened.ring.succeeds(&seen.key);
            if !same_store || !trusted_key {
                issues.push(ManifestIssue::KeyChanged);
            } else if seen.version > index.version
                || (seen.version == index.version && *seen != Seen::of(index))
            {
                issues.push(ManifestIssue::RolledBack(seen.clone()));
            }
        }
        issues
    }

    /// Refuses a manifest signed with another key than the pinned one.
    fn check_pinned_key(&self, index: &Index) -> Result<(), AgeError> {
        match self.settings.integrity_key {
            Some(pinned) if pinned != index.key => Err(AgeError::IntegrityKeyNotPinned {
                file: self.manifest_path(),
                found: integrity::hex(&index.key),
                pinned: integrity::hex(&pinned),
            }),
            _ => Ok(()),
        }
    }

    fn issue_error(&self, issue: &ManifestIssue, version: u64) -> AgeError {
        let file = self.manifest_path();
        match issue {
            ManifestIssue::Forged(why) => AgeError::IntegrityForged { file, why },
            ManifestIssue::KeyChanged => AgeError::IntegrityKeyChanged { file },
            ManifestIssue::RolledBack(seen) => AgeError::StoreRolledBack {
                file,
                version,
                seen_version: seen.version,
            },
        }
    }

    /// Loads what a reader or writer trusts. Fails on any manifest-level
    /// problem, except a rollback, which readers check secret by secret.
    fn load_trust(&self) -> Result<Trust, AgeError> {
        let seen = self.seen();
        let Some((stamp, opened)) = self.open_manifest()? else {
            if let Some(seen) = seen {
                return Err(AgeError::IntegrityMissing {
                    file: self.manifest_path(),
                    seen_version: seen.version,
                });
            }
            if self.settings.require_integrity || self.settings.integrity_key.is_some() {
                return Err(AgeError::IntegrityRequired {
                    file: self.manifest_path(),
                    pinned: self.settings.integrity_key.is_some(),
                });
            }
            return Ok(Trust::Unprotected {
                stamp: Stamp::of(&self.manifest_path()),
            });
        };
        let mut newer_seen = None;
        for issue in Self::judge(&opened, seen.as_ref()) {
            match issue {
                ManifestIssue::RolledBack(seen) => newer_seen = Some(seen),
                issue => return Err(self.issue_error(&issue, opened.sealed.index.version)),
            }
        }
        self.check_pinned_key(&opened.sealed.index)?;
        let index = opened.sealed.index;
        let newer = seen
            .as_ref()
            .is_none_or(|seen| index.version > seen.version || index.key != seen.key);
        if newer_seen.is_none() && newer {
            match self.try_remember(&index) {
                Ok(()) => {}
                // Nothing outside the store vouches for this manifest: a
                // wholesale replacement would pass. Required integrity
                // does not settle for that.
                Err(why)
                    if self.settings.require_integrity && self.settings.integrity_key.is_none() =>
                {
                    return Err(AgeError::IntegrityUnanchored {
                        store: self.settings.store.clone(),
                        why,
                    });
                }
                Err(why) => self.warn_unanchored(&why),
            }
        }
        Ok(Trust::Verified(Box::new(Verified {
            stamp,
            index,
            ring: opened.ring,
            armored_ring: opened.sealed.armored_ring,
            newer_seen,
        })))
    }

    /// The trust for reads, cached until the manifest file changes.
    fn trust(&self) -> Result<Arc<Trust>, AgeError> {
        let stamp = Stamp::of(&self.manifest_path());
        let mut slot = self.trust.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(trust) = slot.as_ref()
            && trust.stamp() == stamp
        {
            return Ok(Arc::clone(trust));
        }
        let trust = Arc::new(self.load_trust()?);
        // A store that does not exist has nothing to protect: its reads
        // fail with an error that says so, without a warning before it.
        if matches!(*trust, Trust::Unprotected { .. })
            && self.settings.store.is_dir()
            && !self.warned_unprotected.swap(true, Ordering::Relaxed)
        {
            tracing::warn!(
                store = %self.settings.store.display(),
                "this age store has no integrity manifest, so hushbox cannot tell a secret \
                 substituted by anyone with write access to it; `hushbox store accept` creates one"
            );
        }
        *slot = Some(Arc::clone(&trust));
        Ok(trust)
    }

    // ----- reading -----

    /// Reads, checks and decrypts one secret with a trust already loaded.
    fn read_with(
        &self,
        root: &Root,
        trust: &Trust,
        path: &str,
    ) -> Result<(SecretValue, Digest), AgeError> {
        check_secret_path(path)?;
        let file = secret_file(&self.settings.store, path);
        let ciphertext = read_ciphertext(root, &file, self.settings.max_size)?;
        let found = ciphertext.as_deref().map(digest);
        if let Trust::Verified(verified) = trust {
            verified.check(path, &file, found.as_ref())?;
        }
        let (Some(ciphertext), Some(found)) = (ciphertext, found) else {
            return Err(AgeError::NotFound {
                store_missing: !root.exists(),
                file,
            });
        };
        // Loaded only now, so that a missing secret is reported as missing
        // whatever the state of the identity file.
        let identities = self.identities()?;
        let value = decrypt(&ciphertext, &identities, self.settings.max_size)?;
        Ok((value, found))
    }

    /// Decrypts secret `path`, after checking it against the integrity
    /// manifest.
    pub fn get(&self, path: &str) -> Result<SecretValue> {
        self.get_with_revision(path).map(|(value, _)| value)
    }

    /// [`AgeStore::get`], with the revision it read, for
    /// [`AgeStore::set_if`].
    pub fn get_with_revision(&self, path: &str) -> Result<(SecretValue, Revision)> {
        let subject = self.subject(path);
        let run = || {
            check_secret_path(path)?;
            let root = self.root()?;
            let trust = self.trust()?;
            self.read_with(&root, &trust, path)
        };
        run()
            .map(|(value, found)| (value, Revision(Some(found))))
            .map_err(|error| Error::from(error).with_subject(subject))
    }

    /// Reads many secrets at once, decrypting across every core; one result
    /// per path, in order, with a short version (the ciphertext digest's
    /// first 12 hex digits). The manifest and the identities are loaded
    /// once; errors are per path and carry no subject.
    pub(crate) fn read_many(
        &self,
        paths: &[String],
    ) -> Vec<std::result::Result<(SecretValue, String), Error>> {
        let loaded = self.root().and_then(|root| Ok((root, self.trust()?)));
        let (root, trust) = match loaded {
            Ok(loaded) => loaded,
            Err(error) => {
                // One failure of the whole store: said in full once, then
                // referred to, so that a run of a thousand secrets does not
                // print the same paragraph a thousand times.
                let error = Error::from(error);
                return paths
                    .iter()
                    .enumerate()
                    .map(|(index, _)| {
                        Err(if index == 0 {
                            Error::new(error.kind(), error.message().to_owned())
                        } else {
                            Error::new(
                                error.kind(),
                                "not read: the store could not be opened (the first error says why)",
                            )
                        })
                    })
                    .collect();
            }
        };
        let read_one = |path: &String| {
            self.read_with(&root, &trust, path)
                .map(|(value, found)| (value, integrity::hex(&found[..6])))
                .map_err(Error::from)
        };
        let threads = std::thread::available_parallelism()
            .map_or(1, usize::from)
            .min(paths.len().div_ceil(8))
            .max(1);
        if threads == 1 {
            return paths.iter().map(read_one).collect();
        }
        // Contiguous chunks keep the results in order without sorting; this
        // thread reads the first one itself.
        let chunk = paths.len().div_ceil(threads);
        std::thread::scope(|scope| {
            let mut parts = paths.chunks(chunk);
            let first = parts.next().unwrap_or_default();
            let workers: Vec<_> = parts
                .map(|part| scope.spawn(move || part.iter().map(read_one).collect::<Vec<_>>()))
                .collect();
            let mut results: Vec<_> = first.iter().map(read_one).collect();
            for worker in workers {
                match worker.join() {
                    Ok(part) => results.extend(part),
                    Err(panic) => std::panic::resume_unwind(panic),
                }
            }
            results
        })
    }

    /// The secrets whose names start with `prefix`, sorted.
    pub fn list(&self, prefix: &str) -> Result<Vec<String>> {
        if !prefix.is_empty() {
            let trimmed = prefix.strip_suffix('/').unwrap_or(prefix);
            check_secret_path(trimmed)
                .map_err(|error| Error::from(error).with_subject(self.subject(prefix)))?;
        }
        self.root()
            .and_then(|root| store::list(&root, prefix))
            .map_err(|error| Error::from(error).with_subject(self.subject(prefix)))
    }

    /// Whether secret `path` has a file.
    pub fn exists(&self, path: &str) -> bool {
        check_secret_path(path).is_ok()
            && self.root().is_ok_and(|root| {
                root.kind(&secret_file(&self.settings.store, path)) == Some(Kind::File)
            })
    }

    // ----- writing -----

    fn begin(&self) -> Result<Txn<'_>, AgeError> {
        // A write creates the store when it is missing.
        let root = Root::create(&self.settings.store, &self.settings.trust)?;
        let lock = store::lock(&root)?;
        let sealed = match self.load_trust()? {
            Trust::Unprotected { .. } => None,
            Trust::Verified(verified) => {
                if let Some(seen) = &verified.newer_seen {
                    return Err(AgeError::StoreRolledBack {
                        file: self.manifest_path(),
                        version: verified.index.version,
                        seen_version: seen.version,
                    });
                }
                Some(SealedState {
                    index: verified.index,
                    ring: verified.ring,
                    armored_ring: verified.armored_ring,
                    reseal: false,
                })
            }
        };
        Ok(Txn {
            store: self,
            root,
            _lock: lock,
            sealed,
            dirty: false,
        })
    }

    /// Encrypts `value` to secret `path`, replacing it.
    pub fn set(&self, path: &str, value: &SecretValue) -> Result<()> {
        self.set_many(&[(path.to_owned(), value)], true)
    }

    /// Encrypts `value` to secret `path` only if it is still as it was at
    /// `revision` (from [`AgeStore::get_with_revision`]); otherwise fails
    /// without writing, naming the secret.
    pub fn set_if(&self, path: &str, value: &SecretValue, revision: Revision) -> Result<()> {
        let subject = self.subject(path);
        let run = || {
            let mut txn = self.begin()?;
            let now = store::read_optional(&txn.root, &secret_file(&self.settings.store, path))?;
            if Revision(now.as_deref().map(digest)) != revision {
                return Err(AgeError::ChangedMeanwhile);
            }
            txn.ensure_recipients_unchanged()?;
            txn.write(path, value.expose())?;
            txn.commit()
        };
        run()
            .map(|_| ())
            .map_err(|error| Error::from(error).with_subject(subject))
    }

    /// Encrypts every value to its path, as one change: the manifest is
    /// written once, and if any write fails the files already written are
    /// put back as they were. Without `overwrite`, existing secrets are an
    /// error and nothing is written.
    pub fn set_many(&self, entries: &[(String, &SecretValue)], overwrite: bool) -> Result<()> {
        for (path, _) in entries {
            check_secret_path(path)
                .map_err(|error| Error::from(error).with_subject(self.subject(path)))?;
        }
        let mut txn = self.begin().map_err(Error::from)?;
        if !overwrite {
            let existing: Vec<String> = entries
                .iter()
                .filter(|(path, _)| self.exists(path))
                .map(|(path, _)| path.clone())
                .collect();
            if !existing.is_empty() {
                return Err(AgeError::SecretExists { names: existing }.into());
            }
        }
        txn.ensure_recipients_unchanged().map_err(Error::from)?;
        let mut undo: Vec<(String, Option<Vec<u8>>)> = Vec::new();
        for (path, value) in entries {
            let file = secret_file(&self.settings.store, path);
            let before = match store::read_optional(&txn.root, &file) {
                Ok(before) => before,
                Err(error) => {
                    txn.undo(&undo);
                    return Err(Error::from(error).with_subject(self.subject(path)));
                }
            };
            if let Err(error) = txn.write(path, value.expose()) {
                txn.undo(&undo);
                return Err(Error::from(error).with_subject(self.subject(path)));
            }
            undo.push((path.clone(), before));
        }
        if let Err(error) = txn.commit() {
            // The files are new, the manifest old: put the files back so
            // the two still agree.
            let restore = self
                .root()
                .and_then(|root| Txn::restore_files(&root, &undo));
            if let Err(restore) = restore {
                tracing::warn!(error = %Error::from(restore), "cannot restore the files after a failed write");
            }
            return Err(error.into());
        }
        Ok(())
    }

    /// Removes secret `path` (and the directories that leaves empty).
    pub fn remove(&self, path: &str) -> Result<()> {
        let subject = self.subject(path);
        let run = || {
            check_secret_path(path)?;
            let mut txn = self.begin()?;
            let recorded = txn
                .sealed
                .as_ref()
                .is_some_and(|sealed| sealed.index.secrets.contains_key(path));
            match store::remove(&txn.root, path) {
                Ok(()) => {}
                // Recorded but already gone: forgetting it is the removal.
                Err(AgeError::NotFound { .. }) if recorded => {}
                Err(error) => return Err(error),
            }
            txn.forget(path);
            txn.commit()
        };
        run()
            .map(|_| ())
            .map_err(|error| Error::from(error).with_subject(subject))
    }

    /// Renames secret `from` to `to`. The file is moved as it is when both
    /// names have the same recipients; otherwise it is decrypted and
    /// encrypted to the recipients of `to`. Returns whether it was
    /// re-encrypted. An existing `to` is an error unless `overwrite`.
    pub fn rename(&self, from: &str, to: &str, overwrite: bool) -> Result<bool> {
        let run = || -> Result<bool, AgeError> {
            check_secret_path(from)?;
            check_secret_path(to)?;
            let mut txn = self.begin()?;
            let store_dir = &self.settings.store;
            let source = secret_file(store_dir, from);
            let target = secret_file(store_dir, to);
            let (ciphertext, found) = txn.read(from)?;
            if from == to {
                return Ok(false);
            }
            if !overwrite && txn.root.kind(&target).is_some() {
                return Err(AgeError::SecretExists {
                    names: vec![to.to_owned()],
                });
            }
            let same_recipients = txn.current_set(from)? == txn.current_set(to)?;
            let reencrypted = if same_recipients {
                txn.root.rename(&source, &target)?;
                let set = txn.recorded_set(from);
                txn.record(to, Entry { digest: found, set });
                false
            } else {
                txn.ensure_recipients_unchanged()?;
                let identities = self.identities()?;
                let value = decrypt(&ciphertext, &identities, self.settings.max_size)?;
                txn.write(to, value.expose())?;
                store::remove(&txn.root, from)?;
                true
            };
            store::prune_empty_dirs(&txn.root, from);
            txn.forget(from);
            txn.commit()?;
            Ok(reencrypted)
        };
        run().map_err(|error| Error::from(error).with_subject(self.subject(from)))
    }

    // ----- stores and recipients -----

    /// Creates a store (or, with `subdir`, a subtree with its own
    /// recipients) for `recipients`: writes `.age-recipients` and, for a
    /// new store, the integrity manifest, with the store's `.gitattributes`
    /// (age files are binary). Secrets already in the directory are
    /// recorded as found. An existing `.age-recipients` is never replaced.
    pub fn init(&self, recipients: &[String], subdir: Option<&str>) -> Result<PathBuf> {
        let run = || -> Result<PathBuf, AgeError> {
            let text: String = recipients
                .iter()
                .map(|recipient| format!("{}\n", recipient.trim()))
                .collect();
            RecipientSet::parse(&text, "the recipients given")?;
            match subdir {
                None => {
                    let root = Root::create(&self.settings.store, &self.settings.trust)?;
                    let _lock = store::lock(&root)?;
                    let dir = self.settings.store.clone();
                    store::create_recipients_file(&root, &dir, &text)?;
                    let attributes = dir.join(".gitattributes");
                    if root.kind(&attributes).is_none() {
                        store::write_file(
                            &root,
                            &attributes,
                            b"*.age binary\n.hushbox-integrity -text\n",
                            0o644,
                        )?;
                    }
                    if root.kind(&self.manifest_path()).is_none() {
                        self.seal_new(None)?;
                    }
                    Ok(dir)
                }
                Some(subdir) => {
                    check_secret_path(subdir)?;
                    if !self.settings.store.is_dir() {
                        return Err(AgeError::NotFound {
                            file: self.settings.store.join(RECIPIENTS_FILE),
                            store_missing: true,
                        });
                    }
                    let mut txn = self.begin()?;
                    txn.ensure_recipients_unchanged()?;
                    let dir = self.settings.store.join(subdir);
                    store::create_recipients_file(&txn.root, &dir, &text)?;
                    txn.refresh_recipients()?;
                    txn.commit()?;
                    Ok(dir)
                }
            }
        };
        run().map_err(Error::from)
    }

    /// Writes a first manifest recording the store as it is. The caller
    /// holds the lock.
    fn seal_new(&self, salvaged: Option<Salvaged>) -> Result<Index, AgeError> {
        let (store_id, ring) = match salvaged {
            Some(Salvaged { store, ring }) => (
                store.unwrap_or_else(rand::random),
                ring.unwrap_or_else(KeyRing::generate),
            ),
            None => (rand::random(), KeyRing::generate()),
        };
        let mut index = Index {
            store: store_id,
            version: 0,
            key: ring.current.id(),
            recipients: BTreeSet::new(),
            recipient_files: BTreeMap::new(),
            secrets: BTreeMap::new(),
        };
        let root = self.root()?;
        for name in store::list(&root, "")? {
            if let Some(ciphertext) =
                store::read_optional(&root, &secret_file(&self.settings.store, &name))?
            {
                index.secrets.insert(
                    name,
                    Entry {
                        digest: digest(&ciphertext),
                        set: None,
                    },
                );
            }
        }
        let mut txn = Txn {
            store: self,
            _lock: root.file().map_err(|error| {
                AgeError::io(
                    format!("cannot open {}", self.settings.store.display()),
                    error,
                )
            })?,
            root,
            sealed: Some(SealedState {
                index,
                ring,
                armored_ring: String::new(),
                reseal: true,
            }),
            dirty: true,
        };
        txn.refresh_recipients()?;
        if let Some(sealed) = txn.sealed.as_mut() {
            sealed.reseal = true;
        }
        Ok(txn.commit()?.expect("a new manifest is always written"))
    }

    /// What can be kept of a manifest that does not parse: its store id,
    /// and its key ring if an armored block in it still opens.
    fn salvage(&self) -> Result<Salvaged, AgeError> {
        let text = store::read_optional(&self.root()?, &self.manifest_path())?.unwrap_or_default();
        let text = String::from_utf8_lossy(&text);
        let store = text
            .lines()
            .filter_map(|line| line.strip_prefix("store "))
            .find_map(|id| integrity::unhex::<16>(id.trim()));
        let identities = self.identities()?;
        let mut ring = None;
        let mut rest = text.as_ref();
        while let Some(start) = rest.find("-----BEGIN AGE ENCRYPTED FILE-----") {
            let block = &rest[start..];
            let end = block
                .find("-----END AGE ENCRYPTED FILE-----")
                .map_or(block.len(), |end| {
                    end + "-----END AGE ENCRYPTED FILE-----".len()
                });
            if let Ok(payload) = decrypt(&block.as_bytes()[..end], &identities, 1024 * 1024)
                && let Ok(opened) = KeyRing::from_payload(payload.expose())
            {
                ring = Some(opened);
                break;
            }
            rest = &block[end..];
        }
        Ok(Salvaged { store, ring })
    }

    /// The recipients that apply to `dir` (the store root for `None`): the
    /// nearest `.age-recipients` walking up.
    pub fn recipients(&self, dir: Option<&str>) -> Result<RecipientsView> {
        let run = || -> Result<RecipientsView, AgeError> {
            if let Some(dir) = dir {
                check_secret_path(dir)?;
            }
            // A name inside `dir` finds the nearest file for `dir` itself.
            let probe = match dir {
                Some(dir) => format!("{dir}/x"),
                None => "x".to_owned(),
            };
            let root = self.root()?;
            match store::nearest_recipients_file(&root, &probe) {
                Some(file) => {
                    let set = store::read_recipients_file(&root, &file)?;
                    Ok(RecipientsView {
                        file: Some(file),
                        recipients: set.normalized.into_iter().collect(),
                    })
                }
                None => Ok(RecipientsView {
                    file: None,
                    recipients: self.identities()?.recipients().to_vec(),
                }),
            }
        };
        run().map_err(Error::from)
    }

    /// Adds recipients to the `.age-recipients` of `dir` (the root for
    /// `None`). Returns those that were not there yet. Existing secrets are
    /// not re-encrypted: that is [`AgeStore::reencrypt`].
    pub fn add_recipients(&self, dir: Option<&str>, recipients: &[String]) -> Result<Vec<String>> {
        let run = || -> Result<Vec<String>, AgeError> {
            let mut txn = self.begin()?;
            let file = self.own_recipients_file(&txn.root, dir)?;
            txn.ensure_recipients_unchanged()?;
            let text = read_recipients_text(&txn.root, &file)?;
            let current = RecipientSet::parse(&text, &file.display().to_string())?;
            let mut added = Vec::new();
            let mut new_text = text.clone();
            if !new_text.is_empty() && !new_text.ends_with('\n') {
                new_text.push('\n');
            }
            for recipient in recipients {
                let given = RecipientSet::parse(recipient, "the recipient given")?;
                for normalized in given.normalized {
                    if !current.normalized.contains(&normalized) && !added.contains(&normalized) {
                        new_text.push_str(recipient.trim());
                        new_text.push('\n');
                        added.push(normalized);
                    }
                }
            }
            if added.is_empty() {
                return Ok(added);
            }
            store::write_file(&txn.root, &file, new_text.as_bytes(), 0o644)?;
            txn.refresh_recipients()?;
            txn.commit()?;
            Ok(added)
        };
        run().map_err(Error::from)
    }

    /// Removes recipients from the `.age-recipients` of `dir`. A removal
    /// replaces the integrity key (the removed recipient knew it). Existing
    /// secrets are not re-encrypted: that is [`AgeStore::reencrypt`].
    pub fn remove_recipients(
        &self,
        dir: Option<&str>,
        recipients: &[String],
    ) -> Result<Vec<String>> {
        let run = || -> Result<Vec<String>, AgeError> {
            let mut txn = self.begin()?;
            let file = self.own_recipients_file(&txn.root, dir)?;
            txn.ensure_recipients_unchanged()?;
            let text = read_recipients_text(&txn.root, &file)?;
            let current = RecipientSet::parse(&text, &file.display().to_string())?;
            let mut removing = BTreeSet::new();
            for recipient in recipients {
                let normalized = normalize_recipient(recipient);
                if !current.normalized.contains(&normalized) {
                    return Err(AgeError::RecipientAbsent {
                        file: file.clone(),
                        recipient: normalized,
                    });
                }
                removing.insert(normalized);
            }
            if removing.len() == current.normalized.len() {
                return Err(AgeError::LastRecipient { file });
            }
            let kept: String = text
                .lines()
                .filter(|line| {
                    let trimmed = line.trim();
                    trimmed.is_empty()
                        || trimmed.starts_with('#')
                        || !removing.contains(&normalize_recipient(trimmed))
                })
                .map(|line| format!("{line}\n"))
                .collect();
            store::write_file(&txn.root, &file, kept.as_bytes(), 0o644)?;
            txn.refresh_recipients()?;
            txn.commit()?;
            Ok(removing.into_iter().collect())
        };
        run().map_err(Error::from)
    }

    fn own_recipients_file(&self, root: &Root, dir: Option<&str>) -> Result<PathBuf, AgeError> {
        let dir_path = match dir {
            Some(dir) => {
                check_secret_path(dir)?;
                self.settings.store.join(dir)
            }
            None => self.settings.store.clone(),
        };
        let file = dir_path.join(RECIPIENTS_FILE);
        if root.kind(&file) != Some(Kind::File) {
            return Err(AgeError::NoRecipientsFile { dir: dir_path });
        }
        Ok(file)
    }

    /// Re-encrypts the secrets under `prefix` whose recipients changed since
    /// they were encrypted (every secret, in a store without a manifest,
    /// where that cannot be known), each atomically, and accepts recipient
    /// changes made outside hushbox, reporting them.
    pub fn reencrypt(&self, prefix: &str) -> Result<ReencryptReport> {
        let run = || -> Result<ReencryptReport, AgeError> {
            let mut txn = self.begin()?;
            let mut report = ReencryptReport::default();
            let (added, removed, rotated) = txn.refresh_recipients()?;
            report.added_recipients = added;
            report.removed_recipients = removed;
            report.key_rotated = rotated;
            let identities = self.identities()?;
            for name in store::list(&txn.root, prefix)? {
                let (current, _) = txn.recipients_for(&name)?;
                let recorded = txn.recorded_set(&name);
                if txn.sealed.is_some() && recorded == Some(current) {
                    report.unchanged += 1;
                    continue;
                }
                let result = txn.read(&name).and_then(|(ciphertext, _)| {
                    let value = decrypt(&ciphertext, &identities, self.settings.max_size)?;
                    txn.write(&name, value.expose())
                });
                match result {
                    Ok(_) => report.reencrypted.push(name),
                    Err(error) => report
                        .failed
                        .push(Error::from(error).with_subject(self.subject(&name))),
                }
            }
            txn.commit()?;
            Ok(report)
        };
        run().map_err(Error::from)
    }

    /// Checks the whole store: the manifest, every secret's file against
    /// it, and the recipients files.
    pub fn verify(&self) -> Result<VerifyReport> {
        let mut report = VerifyReport::default();
        let seen = self.seen();
        let opened = match self.open_manifest() {
            Ok(Some((_, opened))) => opened,
            Ok(None) => {
                report.problems.push(match seen {
                    Some(seen) => AgeError::IntegrityMissing {
                        file: self.manifest_path(),
                        seen_version: seen.version,
                    }
                    .into(),
                    None => Error::malformed(format!(
                        "{} has no integrity manifest: nothing to verify against (`hushbox store \
                         accept` creates one, recording the store as it is now)",
                        self.settings.store.display()
                    )),
                });
                return Ok(report);
            }
            Err(error) => {
                report.problems.push(error.into());
                return Ok(report);
            }
        };
        let index = &opened.sealed.index;
        report.version = Some(index.version);
        report.key = Some(integrity::hex(&index.key));
        if let Err(error) = self.check_pinned_key(index) {
            report.problems.push(error.into());
        }
        let mut newer_seen = None;
        for issue in Self::judge(&opened, seen.as_ref()) {
            match issue {
                ManifestIssue::RolledBack(seen) => newer_seen = Some(seen),
                issue => report
                    .problems
                    .push(self.issue_error(&issue, index.version).into()),
            }
        }
        let root = self.root().map_err(Error::from)?;
        let mut names: BTreeSet<String> = store::list(&root, "")
            .map_err(Error::from)?
            .into_iter()
            .collect();
        names.extend(index.secrets.keys().cloned());
        if let Some(seen) = &newer_seen {
            names.extend(seen.secrets.keys().cloned());
        }
        let current_sets = current_sets(&root).map_err(Error::from)?;
        for name in &names {
            let file = secret_file(&self.settings.store, name);
            let found = store::read_optional(&root, &file)
                .map_err(Error::from)?
                .map(|bytes| digest(&bytes));
            report.checked += usize::from(found.is_some());
            if let Err(error) = check_entry(index, newer_seen.as_ref(), name, &file, found.as_ref())
            {
                report
                    .problems
                    .push(Error::from(error).with_subject(self.subject(name)));
                continue;
            }
            let current = store::nearest_recipients_dir(&root, name)
                .and_then(|dir| current_sets.get(&dir).copied());
            let recorded = index.secrets.get(name).and_then(|entry| entry.set);
            if found.is_some() && (recorded.is_none() || current.is_some() && recorded != current) {
                report.stale.push(name.clone());
            }
        }
        let changed = changed_dirs(&index.recipient_files, &current_sets);
        if !changed.is_empty() {
            report.problems.push(
                AgeError::RecipientsChanged {
                    store: self.settings.store.clone(),
                    dirs: changed,
                }
                .into(),
            );
        }
        Ok(report)
    }

    /// Records the store as it is now, after a change made outside hushbox
    /// has been reviewed: with `names`, only those secrets (as found, or
    /// forgotten when their file is gone); without, the whole store,
    /// including its recipients, a rollback or a replaced key. Creates the
    /// manifest of a store that has none.
    pub fn accept(&self, names: &[String]) -> Result<AcceptReport> {
        let run = || -> Result<AcceptReport, AgeError> {
            let root = Root::create(&self.settings.store, &self.settings.trust)?;
            let _lock = store::lock(&root)?;
            let mut report = AcceptReport::default();
            let seen = self.seen();
            let mut salvaged = None;
            let opened = match self.open_manifest() {
                Ok(Some((_, opened))) => Some(opened),
                Ok(None) => None,
                // A manifest that no longer parses (a merge left conflict
                // markers?): made again, keeping its store id and key when
                // its key block still opens.
                Err(AgeError::IntegrityMalformed { .. }) if names.is_empty() => {
                    salvaged = Some(self.salvage()?);
                    report
                        .accepted
                        .push("a manifest that could not be parsed".into());
                    None
                }
                Err(error) => return Err(error),
            };
            let Some(opened) = opened else {
                if !names.is_empty() {
                    return Err(AgeError::IntegrityMissing {
                        file: self.manifest_path(),
                        seen_version: seen.map_or(0, |seen| seen.version),
                    });
                }
                report.created = true;
                let index = self.seal_new(salvaged)?;
                report.added = index.secrets.keys().cloned().collect();
                report.version = index.version;
                self.remember(&index);
                return Ok(report);
            };
            let issues = Self::judge(&opened, seen.as_ref());
            if !names.is_empty() && !issues.is_empty() {
                return Err(self.issue_error(&issues[0], opened.sealed.index.version));
            }
            for issue in &issues {
                report.accepted.push(match issue {
                    ManifestIssue::Forged(_) => "a manifest changed by hand".to_owned(),
                    ManifestIssue::KeyChanged => "a new integrity key".to_owned(),
                    ManifestIssue::RolledBack(seen) => format!(
                        "version {} (this machine had seen version {})",
                        opened.sealed.index.version, seen.version
                    ),
                });
            }
            let forged = issues
                .iter()
                .any(|issue| matches!(issue, ManifestIssue::Forged(_)));
            let ring = if opened.ring.current.id() == opened.sealed.index.key {
                opened.ring
            } else {
                // The key block holds some other key: start a new chain.
                KeyRing::generate()
            };
            let mut txn = Txn {
                store: self,
                _lock: root.file().map_err(|error| {
                    AgeError::io(
                        format!("cannot open {}", self.settings.store.display()),
                        error,
                    )
                })?,
                root,
                sealed: Some(SealedState {
                    index: opened.sealed.index.clone(),
                    armored_ring: opened.sealed.armored_ring.clone(),
                    reseal: ring.current.id() != opened.sealed.index.key,
                    ring,
                }),
                dirty: forged,
            };
            if let Some(sealed) = txn.sealed.as_mut() {
                sealed.index.key = sealed.ring.current.id();
            }
            let targets: Vec<String> = if names.is_empty() {
                let mut all: BTreeSet<String> = store::list(&txn.root, "")?.into_iter().collect();
                all.extend(opened.sealed.index.secrets.keys().cloned());
                all.into_iter().collect()
            } else {
                for name in names {
                    check_secret_path(name)?;
                }
                names.to_vec()
            };
            for name in targets {
                let found =
                    store::read_optional(&txn.root, &secret_file(&self.settings.store, &name))?
                        .map(|bytes| digest(&bytes));
                let recorded = opened.sealed.index.secrets.get(&name).copied();
                match (recorded, found) {
                    (None, None) => {}
                    (Some(_), None) => {
                        txn.forget(&name);
                        report.removed.push(name);
                    }
                    (None, Some(found)) => {
                        txn.record(
                            &name,
                            Entry {
                                digest: found,
                                set: None,
                            },
                        );
                        report.added.push(name);
                    }
                    (Some(entry), Some(found)) if entry.digest != found => {
                        txn.record(
                            &name,
                            Entry {
                                digest: found,
                                set: None,
                            },
                        );
                        report.changed.push(name);
                    }
                    (Some(_), Some(_)) => {}
                }
            }
            if names.is_empty() {
                let (added, removed, _) = txn.refresh_recipients()?;
                for recipient in added {
                    report.accepted.push(format!("new recipient {recipient}"));
                }
                for recipient in removed {
                    report
                        .accepted
                        .push(format!("removed recipient {recipient}"));
                }
            }
            let written = txn.commit()?;
            let index = match written {
                Some(index) => {
                    report.version = index.version;
                    index
                }
                None => {
                    report.version = opened.sealed.index.version;
                    opened.sealed.index
                }
            };
            // Whatever this machine saw before, this is what it trusts now.
            self.remember(&index);
            *self.trust.lock().unwrap_or_else(|e| e.into_inner()) = None;
            Ok(report)
        };
        run().map_err(Error::from)
    }
}

/// What [`AgeStore::salvage`] keeps.
struct Salvaged {
    store: Option<integrity::StoreId>,
    ring: Option<KeyRing>,
}

/// The set id of every `.age-recipients` of the store, by directory.
fn current_sets(root: &Root) -> Result<BTreeMap<String, SetId>, AgeError> {
    Ok(store::all_recipient_sets(root)?
        .into_iter()
        .map(|(dir, set)| (dir, set_id(&set.normalized)))
        .collect())
}

/// The text of a `.age-recipients` file, read through the trust check.
fn read_recipients_text(root: &Root, file: &Path) -> Result<String, AgeError> {
    let read = |source| AgeError::io(format!("cannot read {}", file.display()), source);
    let mut opened = root
        .open_trusted(file, "the recipients file")?
        .ok_or_else(|| read(std::io::Error::from(std::io::ErrorKind::NotFound)))?;
    let mut text = String::new();
    std::io::Read::read_to_string(&mut opened, &mut text).map_err(read)?;
    Ok(text)
}

/// The directories whose recipients differ between two records.
fn changed_dirs(
    recorded: &BTreeMap<String, SetId>,
    current: &BTreeMap<String, SetId>,
) -> Vec<String> {
    let dirs: BTreeSet<&String> = recorded.keys().chain(current.keys()).collect();
    dirs.into_iter()
        .filter(|dir| recorded.get(*dir) != current.get(*dir))
        .cloned()
        .collect()
}

/// The manifest-side state of a write.
struct SealedState {
    index: Index,
    ring: KeyRing,
    armored_ring: String,
    /// The key block must be encrypted again (recipients or key changed).
    reseal: bool,
}

/// One write to the store, under its lock.
struct Txn<'s> {
    store: &'s AgeStore,
    /// The store's directory, locked by `_lock`.
    root: Root,
    _lock: File,
    /// `None` for a store without a manifest.
    sealed: Option<SealedState>,
    dirty: bool,
}

impl Txn<'_> {
    fn store_dir(&self) -> &Path {
        &self.store.settings.store
    }

    /// The recipients secret `path` is encrypted to now, and their set id:
    /// the nearest `.age-recipients`, else the identities' own.
    fn recipients_for(
        &self,
        path: &str,
    ) -> Result<(SetId, Vec<Box<dyn age::Recipient + Send>>), AgeError> {
        let set = match store::nearest_recipients_file(&self.root, path) {
            Some(file) => store::read_recipients_file(&self.root, &file)?,
            None => {
                let identities = self.store.identities()?;
                let origin = format!(
                    "the identities in {} (no .age-recipients applies)",
                    identities.path().display()
                );
                RecipientSet::parse(&identities.recipients().join("\n"), &origin)?
            }
        };
        Ok((set_id(&set.normalized), set.keys))
    }

    fn current_set(&self, path: &str) -> Result<SetId, AgeError> {
        Ok(self.recipients_for(path)?.0)
    }

    fn recorded_set(&self, path: &str) -> Option<SetId> {
        self.sealed
            .as_ref()
            .and_then(|sealed| sealed.index.secrets.get(path))
            .and_then(|entry| entry.set)
    }

    /// Refuses to encrypt anything new while `.age-recipients` files differ
    /// from what the manifest records: someone may have added their own key.
    fn ensure_recipients_unchanged(&self) -> Result<(), AgeError> {
        let Some(sealed) = &self.sealed else {
            return Ok(());
        };
        let changed = changed_dirs(&sealed.index.recipient_files, &current_sets(&self.root)?);
        if changed.is_empty() {
            Ok(())
        } else {
            Err(AgeError::RecipientsChanged {
                store: self.store_dir().to_owned(),
                dirs: changed,
            })
        }
    }

    /// Reads secret `path`'s ciphertext, checked against the manifest.
    fn read(&self, path: &str) -> Result<(Vec<u8>, Digest), AgeError> {
        let file = secret_file(self.store_dir(), path);
        let ciphertext = read_ciphertext(&self.root, &file, self.store.settings.max_size)?;
        let found = ciphertext.as_deref().map(digest);
        if let Some(sealed) = &self.sealed {
            check_entry(&sealed.index, None, path, &file, found.as_ref())?;
        }
        match (ciphertext, found) {
            (Some(ciphertext), Some(found)) => Ok((ciphertext, found)),
            _ => Err(AgeError::NotFound {
                store_missing: !self.root.exists(),
                file,
            }),
        }
    }

    /// Encrypts `plaintext` to secret `path`'s recipients and replaces its
    /// file atomically, recording it.
    fn write(&mut self, path: &str, plaintext: &[u8]) -> Result<Entry, AgeError> {
        let (set, recipients) = self.recipients_for(path)?;
        let ciphertext = encrypt(&recipients, plaintext, false)?;
        let target = secret_file(self.store_dir(), path);
        if let Some(dir) = target.parent() {
            store::create_dirs(&self.root, dir)?;
        }
        store::write_file(&self.root, &target, &ciphertext, 0o600)?;
        let entry = Entry {
            digest: digest(&ciphertext),
            set: Some(set),
        };
        self.record(path, entry);
        Ok(entry)
    }

    fn record(&mut self, path: &str, entry: Entry) {
        if let Some(sealed) = &mut self.sealed {
            sealed.index.secrets.insert(path.to_owned(), entry);
            self.dirty = true;
        }
    }

    fn forget(&mut self, path: &str) {
        if let Some(sealed) = &mut self.sealed
            && sealed.index.secrets.remove(path).is_some()
        {
            self.dirty = true;
        }
    }

    /// Puts files back as they were before this write.
    fn undo(&self, undo: &[(String, Option<Vec<u8>>)]) {
        if let Err(error) = Self::restore_files(&self.root, undo) {
            tracing::warn!(error = %Error::from(error), "cannot restore the files after a failed write");
        }
    }

    fn restore_files(root: &Root, undo: &[(String, Option<Vec<u8>>)]) -> Result<(), AgeError> {
        for (path, before) in undo.iter().rev() {
            match before {
                Some(bytes) => {
                    store::write_file(root, &secret_file(root.path(), path), bytes, 0o600)?;
                }
                None => {
                    let _ = store::remove(root, path);
                }
            }
        }
        Ok(())
    }

    /// Records the current `.age-recipients` files and the union of their
    /// recipients (who can open the key block). When a recipient left, the
    /// key is replaced. Returns the recipients added and removed, and
    /// whether the key was replaced.
    fn refresh_recipients(&mut self) -> Result<(Vec<String>, Vec<String>, bool), AgeError> {
        let Some(sealed) = &mut self.sealed else {
            return Ok((Vec::new(), Vec::new(), false));
        };
        let sets = store::all_recipient_sets(&self.root)?;
        let files: BTreeMap<String, SetId> = sets
            .iter()
            .map(|(dir, set)| (dir.clone(), set_id(&set.normalized)))
            .collect();
        let mut union: BTreeSet<String> =
            sets.into_values().flat_map(|set| set.normalized).collect();
        if !files.contains_key("") {
            // Secrets at the top are encrypted to the identities' own.
            union.extend(self.store.identities()?.recipients().iter().cloned());
        }
        if files != sealed.index.recipient_files {
            sealed.index.recipient_files = files;
            self.dirty = true;
        }
        let added: Vec<String> = union
            .difference(&sealed.index.recipients)
            .cloned()
            .collect();
        let removed: Vec<String> = sealed
            .index
            .recipients
            .difference(&union)
            .cloned()
            .collect();
        let mut rotated = false;
        // A first record (empty) is a creation, not a departure.
        if !removed.is_empty() {
            let ring = std::mem::replace(&mut sealed.ring, KeyRing::generate());
            sealed.ring = ring.rotate();
            sealed.index.key = sealed.ring.current.id();
            rotated = true;
        }
        if !added.is_empty() || !removed.is_empty() {
            sealed.index.recipients = union;
            sealed.reseal = true;
            self.dirty = true;
        }
        Ok((added, removed, rotated))
    }

    /// Writes the new manifest, if anything changed; returns its version.
    fn commit(mut self) -> Result<Option<Index>, AgeError> {
        let store = self.store;
        // Whatever happens, this store's readers load the manifest again.
        *store.trust.lock().unwrap_or_else(|e| e.into_inner()) = None;
        let Some(sealed) = self.sealed.as_mut() else {
            return Ok(None);
        };
        if !self.dirty && !sealed.reseal {
            return Ok(None);
        }
        if sealed.reseal {
            let text = sealed
                .index
                .recipients
                .iter()
                .cloned()
                .collect::<Vec<_>>()
                .join("\n");
            let recipients = RecipientSet::parse(&text, "the store's recipients")?;
            let ciphertext = encrypt(&recipients.keys, sealed.ring.to_payload().expose(), true)?;
            sealed.armored_ring =
                String::from_utf8(ciphertext).map_err(|_| AgeError::Malformed {
                    why: "ASCII armor that is not UTF-8",
                })?;
        }
        let seen_version = store.seen().map_or(0, |seen| seen.version);
        sealed.index.version = sealed.index.version.max(seen_version) + 1;
        let text = integrity::render(&sealed.index, &sealed.ring.current, &sealed.armored_ring);
        store::write_file(&self.root, &store.manifest_path(), text.as_bytes(), 0o644)?;
        store.remember(&sealed.index);
        Ok(Some(sealed.index.clone()))
    }
}
