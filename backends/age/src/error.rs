//! The age backend's own failures, and how each maps onto a
//! [`hushbox_core::ErrorKind`].
//!
//! Every message here is hushbox's own wording. None quotes a line of an
//! identity or recipients file (a user may have pasted a secret key into the
//! wrong file), none carries plaintext, and no error from the `age` crate is
//! attached as a source: its messages are safe today, but the mapping below is
//! the one place that decides what a user reads.

use std::io;
use std::path::{Path, PathBuf};

use hushbox_core::{Error, ErrorKind};

/// What went wrong, before it is turned into a [`hushbox_core::Error`].
///
/// Variants about one secret carry no subject: the backend adds the
/// reference (or `NAME://PATH`) when it converts them.
#[derive(Debug)]
pub(crate) enum AgeError {
    /// The identity file does not exist; `defaulted` when no setting named
    /// it (the default path was filled in).
    IdentityMissing { path: PathBuf, defaulted: bool },
    /// The identity file exists but could not be read.
    IdentityRead { path: PathBuf, source: io::Error },
    /// The identity file is neither an age identity file nor an OpenSSH key.
    IdentityInvalid { path: PathBuf, why: String },
    /// The identity file is itself encrypted with age (a passphrase-protected
    /// identity file).
    IdentityEncrypted { path: PathBuf },
    /// A line of the identity file names an age plugin.
    IdentityPlugin { path: PathBuf, line: usize },
    /// The OpenSSH private key is protected by a passphrase.
    SshKeyEncrypted { path: PathBuf },
    /// The OpenSSH private key is of a type age cannot use.
    SshKeyUnsupported { path: PathBuf, key_type: String },

    /// A secret path that could escape the store or hide from listings.
    UnsafePath { path: String, why: &'static str },
    /// No `<path>.age` file.
    NotFound { file: PathBuf, store_missing: bool },
    /// The file is not encrypted to any loaded identity.
    NoMatchingKeys { identity_file: PathBuf },
    /// The file is encrypted to a passphrase, which hushbox never prompts for.
    Passphrase,
    /// The file is not a valid age file (or was altered).
    Malformed { why: &'static str },
    /// The plaintext (or the ciphertext, before decrypting) exceeds the limit.
    TooLarge { limit: usize },

    /// A line of a recipients list is not a recipient.
    RecipientInvalid {
        origin: String,
        line: usize,
        why: &'static str,
    },
    /// A recipients list holds no recipient.
    NoRecipients { origin: String },
    /// The recipients cannot be used together (age refuses to mix some).
    RecipientsIncompatible,

    /// `init_store` found a store already there.
    StoreExists { recipients_file: PathBuf },
    /// `write_identity_file` found a file already there.
    IdentityExists { path: PathBuf },

    /// The integrity manifest cannot be parsed.
    IntegrityMalformed {
        file: PathBuf,
        line: usize,
        why: &'static str,
    },
    /// None of the identities opens the integrity manifest's key block.
    IntegrityKeyUnreadable {
        file: PathBuf,
        identity_file: PathBuf,
    },
    /// The manifest's MAC does not verify, or its key block does not hold
    /// the key the manifest names.
    IntegrityForged { file: PathBuf, why: &'static str },
    /// The manifest verifies under a key this machine has never trusted.
    IntegrityKeyChanged { file: PathBuf },
    /// The manifest is gone, though this machine has verified one.
    IntegrityMissing { file: PathBuf, seen_version: u64 },
    /// There is no manifest, and `require_integrity` or a pinned key asks
    /// for one.
    IntegrityRequired { file: PathBuf, pinned: bool },
    /// The manifest is signed with another key than the pinned one.
    IntegrityKeyNotPinned {
        file: PathBuf,
        found: String,
        pinned: String,
    },
    /// `require_integrity` without a pinned key, and no state directory to
    /// remember the store's key and version in.
    IntegrityUnanchored { store: PathBuf, why: String },
    /// A write to a store older than one this machine has seen.
    StoreRolledBack {
        file: PathBuf,
        version: u64,
        seen_version: u64,
    },
    /// A secret's file is not in the manifest.
    SecretUnrecorded {
        file: PathBuf,
        name: String,
        same_as: Option<String>,
    },
    /// A secret's file is not the one the manifest records.
    SecretSubstituted {
        file: PathBuf,
        name: String,
        same_as: Option<String>,
    },
    /// The manifest records a secret whose file is gone.
    SecretDeleted { file: PathBuf, name: String },
    /// A secret differs from the newer version this machine has seen.
    SecretRolledBack {
        name: String,
        version: u64,
        seen_version: u64,
    },
    /// `.age-recipients` files changed since the manifest was written.
    RecipientsChanged { store: PathBuf, dirs: Vec<String> },
    /// A write would replace secrets that exist.
    SecretExists { names: Vec<String> },
    /// A recipient to remove is not listed.
    RecipientAbsent { file: PathBuf, recipient: String },
    /// The change would leave a recipients file empty.
    LastRecipient { file: PathBuf },
    /// A directory has no `.age-recipients` of its own.
    NoRecipientsFile { dir: PathBuf },
    /// A conditional write found the secret changed since it was read.
    ChangedMeanwhile,

    /// A file-system operation failed.
    Io { what: String, source: io::Error },
    /// The store, a directory in it or a `.age-recipients` file may be
    /// changed by a user hushbox does not trust ([`hushbox_core::Trust`]'s
    /// own message, which names the file and the fix).
    Untrusted(Error),
    /// A symlink inside the store, which hushbox never follows.
    SymlinkInStore { path: PathBuf },
}

/// The last words of every integrity error about one secret.
const ACCEPT_HINT: &str = "if you (or a teammate) wrote it with age or passage, or restored it on \
     purpose, check it and run `hushbox store accept NAME`";

fn same_as(other: &Option<String>) -> String {
    match other {
        Some(other) => {
            format!(" (its content is what the manifest records for `{other}`: renamed or swapped)")
        }
        None => String::new(),
    }
}

impl AgeError {
    /// An I/O failure while doing `what` (hushbox's words, naming a path).
    pub(crate) fn io(what: impl Into<String>, source: io::Error) -> Self {
        AgeError::Io {
            what: what.into(),
            source,
        }
    }
}

fn shown(path: &Path) -> std::path::Display<'_> {
    path.display()
}

impl From<AgeError> for Error {
    fn from(error: AgeError) -> Self {
        use AgeError::*;
        match error {
            IdentityMissing { path, defaulted } => Error::config(format!(
                "{}identity file {} does not exist{}; `hushbox keygen` creates one \
                 (or point identity_file, HUSHBOX_IDENTITY or --identity at an existing one)",
                if defaulted { "the default " } else { "" },
                shown(&path),
                if defaulted {
                    " (no identity_file in the manifest, HUSHBOX_IDENTITY and \
                     PASSAGE_IDENTITIES_FILE unset, no --identity)"
                } else {
                    ""
                }
            )),
            IdentityRead { path, source } => Error::io_at("read identity file", &path, source),
            IdentityInvalid { path, why } => Error::config(format!(
                "{} is not a usable identity file: {why}",
                shown(&path)
            )),
            IdentityEncrypted { path } => Error::unsupported(format!(
                "identity file {} is itself age-encrypted (passphrase-protected); \
                 hushbox never prompts for passphrases: use an unencrypted identity file \
                 kept at mode 0600, such as one from `hushbox keygen`",
                shown(&path)
            )),
            IdentityPlugin { path, line } => Error::unsupported(format!(
                "line {line} of identity file {} is an age plugin identity (AGE-PLUGIN-…); \
                 hushbox does not run age plugins",
                shown(&path)
            )),
            SshKeyEncrypted { path } => Error::unsupported(format!(
                "the OpenSSH key {} is protected by a passphrase; hushbox never prompts for \
                 passphrases: use an unencrypted ssh-ed25519 key, or an age identity from \
                 `hushbox keygen`",
                shown(&path)
            )),
            SshKeyUnsupported { path, key_type } => Error::unsupported(format!(
                "the OpenSSH key {} is of type {key_type}, which age cannot decrypt with \
                 (use ssh-ed25519 or ssh-rsa, or an age identity from `hushbox keygen`)",
                shown(&path)
            )),
            UnsafePath { path, why } => Error::config(format!(
                "{} is not a valid secret path: {why}",
                hushbox_core::text::shown(&path)
            )),
            NotFound {
                file,
                store_missing,
            } => Error::not_found(if store_missing {
                format!(
                    "no such secret: {} does not exist (and neither does the store directory)",
                    shown(&file)
                )
            } else {
                format!("no such secret: {} does not exist", shown(&file))
            }),
            NoMatchingKeys { identity_file } => Error::new(
                ErrorKind::PermissionDenied,
                format!(
                    "none of the identities in {} can decrypt this secret; someone who can \
                     must add your recipient to the store and re-encrypt it",
                    shown(&identity_file)
                ),
            ),
            Passphrase => Error::unsupported(
                "the file is encrypted with a passphrase (age -p); hushbox never prompts for \
                 passphrases: re-encrypt it to the store's recipients",
            ),
            Malformed { why } => Error::malformed(format!("not a valid age file: {why}")),
            TooLarge { limit } => Error::new(
                ErrorKind::TooLarge,
                format!("the secret is larger than the limit of {limit} bytes (max_size)"),
            ),
            RecipientInvalid { origin, line, why } => {
                Error::config(format!("{origin}, line {line}: {why}"))
            }
            NoRecipients { origin } => Error::config(format!("{origin} holds no recipients")),
            RecipientsIncompatible => Error::config(
                "these recipients cannot be combined in one age file \
                 (age refuses to mix some recipient types)",
            ),
            StoreExists { recipients_file } => Error::config(format!(
                "a store already exists here ({} is present); change its recipients with \
                 `hushbox store recipients`, and protect a store made by age or passage \
                 with an integrity manifest with `hushbox store accept`",
                shown(&recipients_file)
            )),
            IdentityExists { path } => Error::config(format!(
                "identity file {} already exists; hushbox never overwrites an identity \
                 (move it away first if you really mean to replace it)",
                shown(&path)
            )),
            IntegrityMalformed { file, line, why } => Error::malformed(format!(
                "the integrity manifest {}, line {line}: {why}; it was edited by hand or \
                 damaged (a merge?): review the store and run `hushbox store accept`",
                shown(&file)
            )),
            IntegrityKeyUnreadable {
                file,
                identity_file,
            } => Error::new(
                ErrorKind::PermissionDenied,
                format!(
                    "none of the identities in {} opens the key of the integrity manifest {}; \
                     a recipient of the store must run `hushbox store reencrypt` after adding \
                     your recipient",
                    shown(&identity_file),
                    shown(&file)
                ),
            ),
            IntegrityForged { file, why } => Error::malformed(format!(
                "integrity check failed: {} {why}; it was written by someone who does not hold \
                 the store's integrity key, or edited by hand (a merge?): review the store's \
                 history, then `hushbox store accept` if the change is yours",
                shown(&file)
            )),
            IntegrityKeyChanged { file } => Error::malformed(format!(
                "integrity check failed: {} is authenticated with a key this machine has never \
                 seen for this store, and not by a rotation from the key it trusts: the manifest \
                 was replaced wholesale. If a teammate re-created it on purpose, confirm with \
                 them, then run `hushbox store accept`",
                shown(&file)
            )),
            IntegrityMissing { file, seen_version } => Error::malformed(format!(
                "integrity check failed: {} is missing, but this machine has verified version \
                 {seen_version} of it: it was deleted to disable the checks. Restore it (git) or, \
                 if the store was re-created on purpose, run `hushbox store accept`",
                shown(&file)
            )),
            IntegrityRequired { file, pinned } => Error::malformed(format!(
                "integrity check failed: {} is missing, and this store requires one ({}): it was \
                 deleted to disable the checks, or the store never had one. Restore it (git); \
                 for a store that never had one, review it and run `hushbox store accept`",
                shown(&file),
                if pinned {
                    "its integrity_key is pinned"
                } else {
                    "require_integrity = true"
                }
            )),
            IntegrityKeyNotPinned {
                file,
                found,
                pinned,
            } => Error::malformed(format!(
                "integrity check failed: {} is authenticated with key {found}, not the pinned \
                 integrity_key {pinned}: the manifest was replaced. If the store's key was \
                 rotated on purpose (a recipient left), pin the new one, which `hushbox store \
                 verify --print-key` prints",
                shown(&file)
            )),
            IntegrityUnanchored { store, why } => Error::malformed(format!(
                "{} requires integrity (require_integrity = true), but hushbox cannot record \
                 the key and version it trusts ({why}), so a manifest replaced under a new key \
                 would pass: pin the key with `integrity_key = \"…\"` (or \
                 HUSHBOX_INTEGRITY_KEY; `hushbox store verify --print-key` prints it), or give \
                 hushbox a writable XDG_STATE_HOME",
                shown(&store)
            )),
            StoreRolledBack {
                file,
                version,
                seen_version,
            } => Error::malformed(format!(
                "integrity check failed: {} is at version {version}, older than version \
                 {seen_version} that this machine has seen: the store was rolled back. If you \
                 checked out an older commit on purpose, run `hushbox store accept` first",
                shown(&file)
            )),
            SecretUnrecorded {
                file,
                name,
                same_as: other,
            } => Error::malformed(format!(
                "integrity check failed: {} is not recorded in the store's integrity manifest{}: \
                 it was added outside hushbox; {}",
                shown(&file),
                same_as(&other),
                ACCEPT_HINT.replace("NAME", &name)
            )),
            SecretSubstituted {
                file,
                name,
                same_as: other,
            } => Error::malformed(format!(
                "integrity check failed: {} is not the file the store's integrity manifest \
                 records for this secret{}: it was replaced outside hushbox; {}",
                shown(&file),
                same_as(&other),
                ACCEPT_HINT.replace("NAME", &name)
            )),
            SecretDeleted { file, name } => Error::malformed(format!(
                "integrity check failed: the store's integrity manifest records this secret but \
                 {} is missing: it was deleted or renamed outside hushbox; restore it (git), or \
                 run `hushbox store accept {name}` to forget it",
                shown(&file)
            )),
            SecretRolledBack {
                name,
                version,
                seen_version,
            } => Error::malformed(format!(
                "integrity check failed: the store is at version {version}, but this machine has \
                 seen version {seen_version}, in which this secret was different: it was rolled \
                 back. If you checked out an older commit on purpose, run `hushbox store accept` \
                 (or `hushbox store accept {name}`)"
            )),
            RecipientsChanged { store, dirs } => Error::malformed(format!(
                "the recipients of {} in {} changed outside hushbox since its integrity manifest \
                 was written, so nothing new is encrypted to them until you review the change \
                 (`git diff`), then run `hushbox store reencrypt`, which accepts it",
                dirs.iter()
                    .map(|dir| if dir.is_empty() { "." } else { dir.as_str() })
                    .collect::<Vec<_>>()
                    .join(", "),
                shown(&store)
            )),
            SecretExists { names } => Error::config(format!(
                "{} already exist{} in the store; nothing was written (--force replaces)",
                names.join(", "),
                if names.len() == 1 { "s" } else { "" }
            )),
            RecipientAbsent { file, recipient } => Error::config(format!(
                "{recipient} is not a recipient in {}",
                shown(&file)
            )),
            LastRecipient { file } => Error::config(format!(
                "{} would have no recipients left, and nobody could read what is encrypted to it",
                shown(&file)
            )),
            NoRecipientsFile { dir } => Error::config(format!(
                "{} has no .age-recipients of its own; `hushbox store init --dir` creates one",
                shown(&dir)
            )),
            ChangedMeanwhile => Error::new(
                ErrorKind::Unavailable,
                "the secret changed while it was being edited; nothing was written (edit it again)",
            ),
            Io { what, source } => Error::io(what, source),
            Untrusted(error) => error,
            SymlinkInStore { path } => Error::config(format!(
                "{} is a symlink inside the store; hushbox does not follow symlinks below the \
                 store's root, so none can lead a secret out of it (replace it with a directory)",
                shown(&path)
            )),
        }
    }
}

/// Maps the `age` crate's decryption errors. The crate's own messages are
/// not used, so that this mapping alone decides what a user reads.
pub(crate) fn from_decrypt(error: age::DecryptError, identity_file: &Path) -> AgeError {
    use age::DecryptError::*;
    match error {
        NoMatchingKeys => AgeError::NoMatchingKeys {
            identity_file: identity_file.to_owned(),
        },
        // An ssh key whose passphrase would be needed; encrypted keys are
        // refused when loaded, so this means the file asks for one anyway.
        KeyDecryptionFailed => AgeError::NoMatchingKeys {
            identity_file: identity_file.to_owned(),
        },
        ExcessiveWork { .. } => AgeError::Passphrase,
        InvalidHeader => AgeError::Malformed {
            why: "its header is invalid",
        },
        InvalidMac => AgeError::Malformed {
            why: "its header failed authentication (corrupted or tampered with)",
        },
        DecryptionFailed => AgeError::Malformed {
            why: "a recipient stanza failed to decrypt (corrupted or tampered with)",
        },
        UnknownFormat => AgeError::Malformed {
            why: "unknown age format version",
        },
        Io(source) => from_stream_io(&source),
        _ => AgeError::Malformed {
            why: "it cannot be decrypted",
        },
    }
}

/// Maps a read error of the decrypting stream. The ciphertext is read from
/// memory, so every I/O error here describes the file's contents.
pub(crate) fn from_stream_io(error: &io::Error) -> AgeError {
    let why = match error.kind() {
        io::ErrorKind::UnexpectedEof => "it is truncated",
        _ => "its payload failed authentication (truncated, corrupted or tampered with)",
    };
    AgeError::Malformed { why }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_follow_the_failure() {
        let cases: Vec<(AgeError, ErrorKind)> = vec![
            (
                AgeError::IdentityMissing {
                    path: "/k".into(),
                    defaulted: false,
                },
                ErrorKind::Config,
            ),
            (
                AgeError::NoMatchingKeys {
                    identity_file: "/k".into(),
                },
                ErrorKind::PermissionDenied,
            ),
            (AgeError::Passphrase, ErrorKind::Unsupported),
            (
                AgeError::Malformed { why: "x" },
                ErrorKind::MalformedPayload,
            ),
            (AgeError::TooLarge { limit: 1 }, ErrorKind::TooLarge),
            (
                AgeError::NotFound {
                    file: "/s/a.age".into(),
                    store_missing: false,
                },
                ErrorKind::NotFound,
            ),
            (
                AgeError::SshKeyEncrypted { path: "/k".into() },
                ErrorKind::Unsupported,
            ),
            (
                AgeError::UnsafePath {
                    path: "../x".into(),
                    why: "y",
                },
                ErrorKind::Config,
            ),
        ];
        for (error, kind) in cases {
            assert_eq!(Error::from(error).kind(), kind);
        }
    }

    #[test]
    fn missing_identity_names_the_path_and_the_fix() {
        let error = Error::from(AgeError::IdentityMissing {
            path: "/home/u/.config/hushbox/identity.txt".into(),
            defaulted: true,
        });
        let text = error.to_string();
        assert!(
            text.contains("the default identity file /home/u/.config/hushbox/identity.txt"),
            "{text}"
        );
        assert!(text.contains("HUSHBOX_IDENTITY and"), "{text}");
        assert!(text.contains("hushbox keygen"), "{text}");
    }

    #[test]
    fn unsafe_paths_are_escaped_in_messages() {
        let error = Error::from(AgeError::UnsafePath {
            path: "a\nb".into(),
            why: "it contains a control character",
        });
        assert!(!error.to_string().contains('\n'));
    }
}
