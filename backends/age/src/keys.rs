//! Identities (what decrypts) and recipients (what encrypts to), and the
//! key-management helpers the CLI's `keygen` and `store init` use.

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};

use age::secrecy::ExposeSecret;
use age::{Recipient, ssh, x25519};
use hushbox_core::{Result, SecretValue};

use crate::error::AgeError;
use crate::root::sync_dir;

/// The largest identity file read, as in the `age` crate.
const IDENTITY_FILE_LIMIT: usize = 16 * 1024 * 1024;

/// The identities of one identity file, loaded once per backend.
pub(crate) struct Identities {
    path: PathBuf,
    keys: Vec<Box<dyn age::Identity + Send + Sync>>,
    /// The public side of each identity, as recipient text: what `put`
    /// encrypts to when no `.age-recipients` file applies.
    recipients: Vec<String>,
}

impl Identities {
    /// Reads and parses an identity file.
    ///
    /// The file's text goes into a [`SecretValue`] sized to the file, so no
    /// unwiped copy of it is left behind by a growing buffer.
    pub(crate) fn load(path: &Path) -> Result<Self, AgeError> {
        let mut file = match File::open(path) {
            Ok(file) => file,
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                return Err(AgeError::IdentityMissing {
                    path: path.to_owned(),
                    defaulted: false,
                });
            }
            Err(source) => {
                return Err(AgeError::IdentityRead {
                    path: path.to_owned(),
                    source,
                });
            }
        };
        let metadata = file.metadata().map_err(|source| AgeError::IdentityRead {
            path: path.to_owned(),
            source,
        })?;
        if metadata.mode() & 0o077 != 0 {
            tracing::warn!(
                identity_file = %path.display(),
                mode = format_args!("{:04o}", metadata.mode() & 0o7777),
                "the identity file is readable or writable by group or others; `chmod 600` it"
            );
        }
        let size_hint = usize::try_from(metadata.len()).unwrap_or(usize::MAX);
        let text = SecretValue::read_bounded(&mut file, size_hint, IDENTITY_FILE_LIMIT).map_err(
            |error| match error {
                hushbox_core::ReadError::TooLarge { .. } => AgeError::IdentityInvalid {
                    path: path.to_owned(),
                    why: "it is larger than 16 MiB".into(),
                },
                hushbox_core::ReadError::Io(source) => AgeError::IdentityRead {
                    path: path.to_owned(),
                    source,
                },
            },
        )?;
        Self::parse(path, text.expose())
    }

    /// Parses the text of an identity file: an OpenSSH private key, or age
    /// identity lines with `#` comments and blank lines.
    ///
    /// age lines are parsed here rather than by `age::IdentityFile`, which
    /// copies each line into a growing `String`, and gives no access to the
    /// public keys that `put` and `store init` need.
    pub(crate) fn parse(path: &Path, text: &[u8]) -> Result<Self, AgeError> {
        let invalid = |why: String| AgeError::IdentityInvalid {
            path: path.to_owned(),
            why,
        };
        let start = text.trim_ascii_start();
        if start.starts_with(b"age-encryption.org/")
            || start.starts_with(b"-----BEGIN AGE ENCRYPTED FILE-----")
        {
            return Err(AgeError::IdentityEncrypted {
                path: path.to_owned(),
            });
        }
        if start.starts_with(b"-----BEGIN") {
            return Self::parse_ssh(path, text);
        }
        let text = std::str::from_utf8(text).map_err(|_| invalid("it is not UTF-8 text".into()))?;
        let mut identities = Identities {
            path: path.to_owned(),
            keys: Vec::new(),
            recipients: Vec::new(),
        };
        for (index, line) in text.lines().enumerate() {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            match x25519::Identity::from_str(line) {
                Ok(identity) => {
                    identities.recipients.push(identity.to_public().to_string());
                    identities.keys.push(Box::new(identity));
                }
                Err(_) if line.starts_with("AGE-PLUGIN-") => {
                    return Err(AgeError::IdentityPlugin {
                        path: path.to_owned(),
                        line: index + 1,
                    });
                }
                Err(_) => {
                    return Err(invalid(format!(
                        "line {} is neither a `#` comment nor an AGE-SECRET-KEY-1… identity",
                        index + 1
                    )));
                }
            }
        }
        if identities.keys.is_empty() {
            return Err(invalid(
                "it holds no identities (expected AGE-SECRET-KEY-1… lines or an OpenSSH private key)"
                    .into(),
            ));
        }
        Ok(identities)
    }

    fn parse_ssh(path: &Path, text: &[u8]) -> Result<Self, AgeError> {
        let identity =
            ssh::Identity::from_buffer(text, Some(path.display().to_string())).map_err(|_| {
                AgeError::IdentityInvalid {
                    path: path.to_owned(),
                    why: "it looks like a PEM or OpenSSH private key but cannot be parsed".into(),
                }
            })?;
        let key = match identity {
            ssh::Identity::Unencrypted(key) => key,
            ssh::Identity::Encrypted(_)
            | ssh::Identity::Unsupported(
                ssh::UnsupportedKey::EncryptedPem | ssh::UnsupportedKey::EncryptedSsh(_),
            ) => {
                return Err(AgeError::SshKeyEncrypted {
                    path: path.to_owned(),
                });
            }
            ssh::Identity::Unsupported(
                ssh::UnsupportedKey::Hardware(key_type) | ssh::UnsupportedKey::Type(key_type),
            ) => {
                return Err(AgeError::SshKeyUnsupported {
                    path: path.to_owned(),
                    key_type,
                });
            }
        };
        let recipient =
            ssh::Recipient::try_from(ssh::Identity::Unencrypted(key.clone())).map_err(|_| {
                AgeError::IdentityInvalid {
                    path: path.to_owned(),
                    why: "the public key inside the OpenSSH private key cannot be used".into(),
                }
            })?;
        Ok(Identities {
            path: path.to_owned(),
            keys: vec![Box::new(ssh::Identity::Unencrypted(key))],
            recipients: vec![recipient.to_string()],
        })
    }

    /// The file the identities came from (named in errors).
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The identities, as `age`'s decryptor takes them.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &dyn age::Identity> {
        self.keys
            .iter()
            .map(|key| key.as_ref() as &dyn age::Identity)
    }

    /// The recipients of the identities, one per line.
    pub(crate) fn recipients(&self) -> &[String] {
        &self.recipients
    }
}

/// Parses a list of recipients, one per line: X25519 `age1…` keys or
/// `ssh-ed25519` / `ssh-rsa` public keys (with or without a comment).
/// Blank lines and lines starting with `#` are skipped, and surrounding
/// whitespace is ignored.
///
/// Errors give the line number and never quote the line: a secret key
/// pasted into the wrong file must not end up in a log.
pub fn parse_recipients(text: &str) -> Result<Vec<Box<dyn Recipient + Send>>> {
    parse_recipients_from(text, "the recipient list").map_err(Into::into)
}

/// [`parse_recipients`], naming `origin` (a file, usually) in errors.
pub(crate) fn parse_recipients_from(
    text: &str,
    origin: &str,
) -> Result<Vec<Box<dyn Recipient + Send>>, AgeError> {
    Ok(RecipientSet::parse(text, origin)?.keys)
}

/// A parsed list of recipients: what age encrypts to, and each recipient's
/// normalized text (what the integrity manifest records and compares).
pub(crate) struct RecipientSet {
    /// The recipients, as age's encryptor takes them.
    pub(crate) keys: Vec<Box<dyn Recipient + Send>>,
    /// Each recipient once, normalized by [`normalize_recipient`].
    pub(crate) normalized: BTreeSet<String>,
}

impl RecipientSet {
    /// Parses recipients one per line (see [`parse_recipients`]); errors
    /// name `origin` and the line, never its text.
    pub(crate) fn parse(text: &str, origin: &str) -> Result<Self, AgeError> {
        let mut set = RecipientSet {
            keys: Vec::new(),
            normalized: BTreeSet::new(),
        };
        for (index, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let key = parse_recipient(line).map_err(|why| AgeError::RecipientInvalid {
                origin: origin.to_owned(),
                line: index + 1,
                why,
            })?;
            // Listed twice, encrypted to once.
            if set.normalized.insert(normalize_recipient(line)) {
                set.keys.push(key);
            }
        }
        if set.keys.is_empty() {
            return Err(AgeError::NoRecipients {
                origin: origin.to_owned(),
            });
        }
        Ok(set)
    }
}

/// A recipient line in the form that identifies the key: `age1…` as is, an
/// ssh public key as its type and base64 without the comment. The line must
/// already have parsed as a recipient.
pub(crate) fn normalize_recipient(line: &str) -> String {
    let line = line.trim();
    if line.starts_with("ssh-") {
        line.split_whitespace()
            .take(2)
            .collect::<Vec<_>>()
            .join(" ")
    } else {
        line.to_owned()
    }
}

fn parse_recipient(line: &str) -> Result<Box<dyn Recipient + Send>, &'static str> {
    if let Ok(recipient) = x25519::Recipient::from_str(line) {
        return Ok(Box::new(recipient));
    }
    match ssh::Recipient::from_str(line) {
        Ok(recipient) => return Ok(Box::new(recipient)),
        Err(ssh::ParseRecipientKeyError::RsaModulusTooSmall) => {
            return Err("the ssh-rsa key is shorter than 2048 bits, which age refuses");
        }
        Err(ssh::ParseRecipientKeyError::RsaModulusTooLarge) => {
            return Err("the ssh-rsa key is longer than age supports");
        }
        Err(ssh::ParseRecipientKeyError::Unsupported(_)) => {
            return Err(
                "this ssh key type cannot be an age recipient (use ssh-ed25519 or ssh-rsa)",
            );
        }
        Err(_) => {}
    }
    Err(if line.starts_with("AGE-SECRET-KEY-") {
        "this is a SECRET key, not a recipient: remove it from this file and treat it as leaked \
         (its recipient is what belongs here: `age-keygen -y`)"
    } else if line.starts_with("age1") {
        "not a valid X25519 recipient (plugin and post-quantum recipients need age plugins, \
         which hushbox does not run)"
    } else {
        "not an age recipient (age1…) or an ssh-ed25519 / ssh-rsa public key"
    })
}

/// Creates a new X25519 identity, returning the text of an identity file in
/// `age-keygen`'s format and the identity's recipient (`age1…`):
///
/// ```text
/// # created: 2025-01-31T12:00:00Z
/// # public key: age1…
/// AGE-SECRET-KEY-1…
/// ```
pub fn generate_identity() -> (SecretValue, String) {
    let identity = x25519::Identity::generate();
    let recipient = identity.to_public().to_string();
    // `to_string` gives a `SecretString`, wiped when it drops at the end of
    // this function; `identity` wipes its key when it drops too.
    let secret_key = identity.to_string();
    let header = format!(
        "# created: {}\n# public key: {recipient}\n",
        rfc3339_utc(SystemTime::now())
    );
    let key = secret_key.expose_secret().as_bytes();
    // Sized up front: pushing never moves the key to a new buffer.
    let mut text = SecretValue::with_capacity(header.len() + key.len() + 1);
    text.push_slice(header.as_bytes());
    text.push_slice(key);
    text.push_slice(b"\n");
    (text, recipient)
}

/// Writes an identity file: mode 0600, created only if nothing is at `path`
/// (an existing identity is never overwritten); missing parent directories
/// are created with mode 0700. The file and its directory are fsynced.
pub fn write_identity_file(path: &Path, identity: &SecretValue) -> Result<()> {
    write_identity_file_inner(path, identity).map_err(Into::into)
}

fn write_identity_file_inner(path: &Path, identity: &SecretValue) -> Result<(), AgeError> {
    let dir = parent_dir(path);
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| {
            AgeError::io(format!("cannot create directory {}", dir.display()), source)
        })?;
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|source| match source.kind() {
            io::ErrorKind::AlreadyExists => AgeError::IdentityExists {
                path: path.to_owned(),
            },
            _ => AgeError::io(format!("cannot create {}", path.display()), source),
        })?;
    // One of the few places a value leaves hushbox's custody: it is the
    // identity file itself.
    let written = file
        .write_all(identity.expose())
        .and_then(|()| file.sync_all());
    if let Err(source) = written {
        // Do not leave a partial identity behind for the next run to trip on.
        let _ = fs::remove_file(path);
        return Err(AgeError::io(
            format!("cannot write {}", path.display()),
            source,
        ));
    }
    sync_dir(dir).map_err(|source| AgeError::io(format!("cannot sync {}", dir.display()), source))
}

/// The recipients (`age1…` or `ssh-… AAAA…`) of the identities in an
/// identity file: what others add to a store's `.age-recipients` so that
/// this identity can decrypt it.
pub fn recipient_of_identity_file(path: &Path) -> Result<Vec<String>> {
    Ok(Identities::load(path)?.recipients.clone())
}

fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    }
}

/// `time` as RFC 3339 in UTC, without a date-time crate for one line of a
/// comment.
fn rfc3339_utc(time: SystemTime) -> String {
    let seconds = time
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs())
        .unwrap_or(0);
    let days = i64::try_from(seconds / 86_400).unwrap_or(0);
    let of_day = seconds % 86_400;
    // Howard Hinnant's days-to-civil algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        of_day / 3_600,
        of_day % 3_600 / 60,
        of_day % 60
    )
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn timestamps_are_rfc3339_utc() {
        assert_eq!(rfc3339_utc(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400 + 3_661);
        assert_eq!(rfc3339_utc(leap), "2000-02-29T01:01:01Z");
        let later = UNIX_EPOCH + Duration::from_secs(1_767_225_599);
        assert_eq!(rfc3339_utc(later), "2025-12-31T23:59:59Z");
    }

    #[test]
    fn generated_identity_is_in_age_keygen_format_and_parses() {
        let (text, recipient) = generate_identity();
        let body = std::str::from_utf8(text.expose()).unwrap();
        let lines: Vec<&str> = body.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("# created: "));
        assert_eq!(lines[1], format!("# public key: {recipient}"));
        assert!(lines[2].starts_with("AGE-SECRET-KEY-1"));
        assert!(body.ends_with('\n'));
        let identities = Identities::parse(Path::new("k"), text.expose()).unwrap();
        assert_eq!(identities.recipients(), [recipient]);
    }

    #[test]
    fn identity_file_errors_name_the_line_not_its_text() {
        let error = Identities::parse(Path::new("/k"), b"# ok\n\nAGE-SECRET-KEY-1CANARY\n")
            .err()
            .unwrap();
        let text = hushbox_core::Error::from(error).to_string();
        assert!(
            text.contains("line 3") && !text.contains("CANARY"),
            "{text}"
        );
    }

    #[test]
    fn plugin_and_encrypted_identity_files_are_unsupported() {
        for text in [
            &b"AGE-PLUGIN-YUBIKEY-1QQQQ\n"[..],
            b"age-encryption.org/v1\n-> scrypt x 18\n",
            b"-----BEGIN AGE ENCRYPTED FILE-----\nYWdl\n",
        ] {
            let error =
                hushbox_core::Error::from(Identities::parse(Path::new("/k"), text).err().unwrap());
            assert_eq!(
                error.kind(),
                hushbox_core::ErrorKind::Unsupported,
                "{error}"
            );
        }
    }

    #[test]
    fn empty_identity_file_is_refused() {
        let error = Identities::parse(Path::new("/k"), b"# nothing\n")
            .err()
            .unwrap();
        assert!(matches!(error, AgeError::IdentityInvalid { .. }));
    }

    #[test]
    fn recipients_allow_comments_blank_lines_and_ssh_keys() {
        let (_, recipient) = generate_identity();
        let text = format!(
            "# team\n\n  {recipient}  \nssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHsKLqeplhpW+uObz5dvMgjz1OxfM/XXUB+VHtZ6isGN alice@example\n"
        );
        assert_eq!(parse_recipients(&text).unwrap().len(), 2);
    }

    #[test]
    fn recipient_errors_give_the_line_and_never_quote_it() {
        let error = parse_recipients("age1ok?\nAGE-SECRET-KEY-1CANARY")
            .err()
            .unwrap();
        assert!(error.to_string().contains("line 1"), "{error}");
        let (_, recipient) = generate_identity();
        let error = parse_recipients(&format!("{recipient}\nAGE-SECRET-KEY-1CANARY"))
            .err()
            .unwrap();
        let text = error.to_string();
        assert!(
            text.contains("line 2") && text.contains("SECRET key"),
            "{text}"
        );
        assert!(!text.contains("CANARY"), "{text}");
        assert!(parse_recipients("# only a comment\n").is_err());
    }
}
