//! The store's integrity manifest, `<store>/.hushbox-integrity`: its
//! format, its keys and its MAC. Pure functions over text and bytes; the
//! file system and the trust decisions are in `age_store.rs`.
//!
//! age authenticates nobody: anyone can encrypt a file to a store's public
//! recipients. The manifest binds every secret's *name* to the SHA-256 of
//! its *ciphertext*, under a version counter, with an HMAC whose key is
//! age-encrypted to the store's recipients, so only a recipient can write a
//! manifest that verifies under the key a reader already trusts.
//!
//! ```text
//! # hushbox integrity manifest: binds each secret's name to its ciphertext.
//! # Written by hushbox; `hushbox store verify` checks it. Do not edit by hand.
//! hushbox-integrity 1
//! store 5f0c…                       16 random bytes, fixed at `store init`
//! version 12                        +1 on every write
//! key 9a3b…                         the id of the MAC key (not the key)
//! recipient age1…                   who can open the key (every .age-recipients)
//! recipients 3c1d… .                the recipient set of each .age-recipients
//! recipients 77aa… ops
//! secret <sha256> <set id|-> prod/db    one line per secret, sorted by name
//! mac <hmac-sha256 of the lines above>
//! -----BEGIN AGE ENCRYPTED FILE-----   the key ring, encrypted to `recipient`s
//! …
//! -----END AGE ENCRYPTED FILE-----
//! ```
//!
//! The MAC covers the lines above `mac` with any `\r` removed, so a
//! checkout that converts line endings does not break it.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use hmac::{Hmac, Mac};
use hushbox_core::SecretValue;
use sha2::{Digest as _, Sha256};
use zeroize::Zeroizing;

/// The manifest's file name, in the store's root.
pub(crate) const INTEGRITY_FILE: &str = ".hushbox-integrity";
const HEADER: &str = "hushbox-integrity 1";
const COMMENT: &str = "# hushbox integrity manifest: binds each secret's name to its ciphertext.\n\
                       # Written by hushbox; `hushbox store verify` checks it. Do not edit by hand.\n";
const PAYLOAD_HEADER: &str = "hushbox-integrity-key 1";
/// How many earlier keys a key ring keeps, so that a machine that last saw
/// the store that many rotations ago still accepts the current key.
const KEPT_KEYS: usize = 16;

/// A SHA-256 digest (of a ciphertext).
pub(crate) type Digest = [u8; 32];
/// The id of a recipient set: 16 bytes of SHA-256 over its sorted,
/// normalized recipients.
pub(crate) type SetId = [u8; 16];
/// The public id of a MAC key.
pub(crate) type KeyId = [u8; 16];
/// A store's random id.
pub(crate) type StoreId = [u8; 16];

/// SHA-256 of `bytes`.
pub(crate) fn digest(bytes: &[u8]) -> Digest {
    Sha256::digest(bytes).into()
}

/// The id of a set of normalized recipients.
pub(crate) fn set_id(recipients: &BTreeSet<String>) -> SetId {
    let mut hasher = Sha256::new();
    hasher.update(b"hushbox recipient set\n");
    for recipient in recipients {
        hasher.update(recipient.as_bytes());
        hasher.update(b"\n");
    }
    let full: [u8; 32] = hasher.finalize().into();
    full[..16].try_into().expect("16 of 32 bytes")
}

/// Lower-case hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    let mut text = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        let _ = write!(text, "{byte:02x}");
    }
    text
}

/// Parses exactly `N` bytes of lower- or upper-case hex.
pub(crate) fn unhex<const N: usize>(text: &str) -> Option<[u8; N]> {
    // Hex digits only: `from_str_radix` alone would also take a sign
    // (`+f`), so one id would have several spellings.
    if text.len() != N * 2 || !text.bytes().all(|byte| byte.is_ascii_hexdigit()) {
        return None;
    }
    let mut out = [0u8; N];
    for (index, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[index * 2..index * 2 + 2], 16).ok()?;
    }
    Some(out)
}

/// What the manifest records about one secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Entry {
    /// SHA-256 of the `.age` file.
    pub(crate) digest: Digest,
    /// The recipient set it was encrypted to, when hushbox encrypted it
    /// (`None` for a file accepted as found).
    pub(crate) set: Option<SetId>,
}

/// The signed content of a manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Index {
    /// The store's id.
    pub(crate) store: StoreId,
    /// Incremented by every write.
    pub(crate) version: u64,
    /// The id of the key that MACs this index.
    pub(crate) key: KeyId,
    /// Who the key ring is encrypted to: every recipient of the store.
    pub(crate) recipients: BTreeSet<String>,
    /// The recipient set of each directory with a `.age-recipients`
    /// (relative to the store, `""` for the root).
    pub(crate) recipient_files: BTreeMap<String, SetId>,
    /// Every secret, by name.
    pub(crate) secrets: BTreeMap<String, Entry>,
}

/// A 32-byte random key from which the MAC key and the key id derive;
/// wiped on drop.
pub(crate) struct MasterKey(Zeroizing<[u8; 32]>);

type HmacSha256 = Hmac<Sha256>;

fn hmac(key: &[u8], message: &[u8]) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(message);
    mac
}

impl MasterKey {
    /// A fresh random key (from the operating system's CSPRNG, through
    /// `rand`'s thread-local generator).
    pub(crate) fn generate() -> Self {
        let mut key = Zeroizing::new([0u8; 32]);
        rand::fill(&mut key[..]);
        Self(key)
    }

    /// The key's public id: it names the key without revealing it.
    pub(crate) fn id(&self) -> KeyId {
        let full: [u8; 32] = hmac(&self.0[..], b"hushbox-integrity/v1 key id")
            .finalize()
            .into_bytes()
            .into();
        full[..16].try_into().expect("16 of 32 bytes")
    }

    fn mac(&self, signed: &[u8]) -> HmacSha256 {
        // A key of its own for the MAC, separate from the id's.
        let mac_key = Zeroizing::<[u8; 32]>::new(
            hmac(&self.0[..], b"hushbox-integrity/v1 mac")
                .finalize()
                .into_bytes()
                .into(),
        );
        hmac(&mac_key[..], signed)
    }

    /// The MAC of `signed`.
    pub(crate) fn tag(&self, signed: &[u8]) -> [u8; 32] {
        self.mac(signed).finalize().into_bytes().into()
    }

    /// Whether `tag` is the MAC of `signed`, compared in constant time.
    pub(crate) fn verify(&self, signed: &[u8], tag: &[u8; 32]) -> bool {
        self.mac(signed).verify_slice(tag).is_ok()
    }
}

/// The current MAC key and the keys it replaced, newest first: what the
/// age-encrypted block holds.
pub(crate) struct KeyRing {
    /// The key that MACs the manifest.
    pub(crate) current: MasterKey,
    /// Earlier keys, newest first, at most [`KEPT_KEYS`].
    pub(crate) previous: Vec<MasterKey>,
}

impl KeyRing {
    /// A ring with one fresh key.
    pub(crate) fn generate() -> Self {
        Self {
            current: MasterKey::generate(),
            previous: Vec::new(),
        }
    }

    /// A fresh current key; the old one joins the previous keys. Done when
    /// a recipient leaves: they knew the old key, so only a key they never
    /// saw authenticates what is written after they left.
    pub(crate) fn rotate(self) -> Self {
        let mut previous = Vec::with_capacity(self.previous.len() + 1);
        previous.push(self.current);
        previous.extend(self.previous);
        previous.truncate(KEPT_KEYS);
        Self {
            current: MasterKey::generate(),
            previous,
        }
    }

    /// Whether `id` is one of the previous keys: a key a reader trusted
    /// that the holder of the current key also held.
    pub(crate) fn succeeds(&self, id: &KeyId) -> bool {
        self.previous.iter().any(|key| key.id() == *id)
    }

    /// The plaintext of the age-encrypted block.
    pub(crate) fn to_payload(&self) -> SecretValue {
        let lines = 2 + self.previous.len();
        // "previous " + 64 hex + "\n" is the longest line.
        let mut payload = SecretValue::with_capacity(PAYLOAD_HEADER.len() + 1 + lines * 74);
        payload.push_slice(PAYLOAD_HEADER.as_bytes());
        payload.push_slice(b"\n");
        let mut push_key = |label: &[u8], key: &MasterKey| {
            payload.push_slice(label);
            let mut digits = Zeroizing::new([0u8; 64]);
            for (index, byte) in key.0.iter().enumerate() {
                digits[index * 2] = HEX[usize::from(byte >> 4)];
                digits[index * 2 + 1] = HEX[usize::from(byte & 0xf)];
            }
            payload.push_slice(&digits[..]);
            payload.push_slice(b"\n");
        };
        push_key(b"key ", &self.current);
        for key in &self.previous {
            push_key(b"previous ", key);
        }
        payload
    }

    /// Parses the plaintext of the age-encrypted block.
    pub(crate) fn from_payload(payload: &[u8]) -> Result<Self, &'static str> {
        const INVALID: &str = "the decrypted key block is not a hushbox key ring";
        let text = std::str::from_utf8(payload).map_err(|_| INVALID)?;
        let mut lines = text.lines();
        if lines.next() != Some(PAYLOAD_HEADER) {
            return Err(INVALID);
        }
        let mut current = None;
        let mut previous = Vec::new();
        for line in lines {
            let (label, value) = line.split_once(' ').ok_or(INVALID)?;
            let key = unhex::<32>(value).ok_or(INVALID)?;
            let key = MasterKey(Zeroizing::new(key));
            match label {
                "key" if current.is_none() => current = Some(key),
                "previous" => previous.push(key),
                _ => return Err(INVALID),
            }
        }
        Ok(Self {
            current: current.ok_or(INVALID)?,
            previous,
        })
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Why a manifest's text is not a manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FormatError {
    /// The 1-based line.
    pub(crate) line: usize,
    /// What is wrong.
    pub(crate) why: &'static str,
}

/// A manifest as read from its file, before its MAC is checked.
pub(crate) struct Sealed {
    /// The signed content.
    pub(crate) index: Index,
    /// The canonical bytes the MAC covers.
    signed: Vec<u8>,
    /// The MAC, as written.
    tag: [u8; 32],
    /// The age-encrypted key ring, ASCII-armored.
    pub(crate) armored_ring: String,
}

impl Sealed {
    /// Whether the MAC verifies under `key`.
    pub(crate) fn verify(&self, key: &MasterKey) -> bool {
        key.verify(&self.signed, &self.tag)
    }
}

/// Parses a manifest. The MAC is not checked here: see [`Sealed::verify`].
pub(crate) fn parse(text: &str) -> Result<Sealed, FormatError> {
    let mut signed = Vec::with_capacity(text.len());
    let mut store = None;
    let mut version = None;
    let mut key = None;
    let mut index = Index {
        store: [0; 16],
        version: 0,
        key: [0; 16],
        recipients: BTreeSet::new(),
        recipient_files: BTreeMap::new(),
        secrets: BTreeMap::new(),
    };
    let mut seen_header = false;
    let mut rest = text;
    let mut number = 0;
    loop {
        number += 1;
        let error = |why| FormatError { line: number, why };
        let (raw, after) = match rest.split_once('\n') {
            Some(split) => split,
            None if rest.is_empty() => return Err(error("the file ends before its `mac` line")),
            None => (rest, ""),
        };
        rest = after;
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        if let Some(tag) = line.strip_prefix("mac ") {
            let tag = unhex::<32>(tag).ok_or(error("the mac is not 64 hex digits"))?;
            let store = store.ok_or(error("no `store` line before the mac"))?;
            let version = version.ok_or(error("no `version` line before the mac"))?;
            let key = key.ok_or(error("no `key` line before the mac"))?;
            index.store = store;
            index.version = version;
            index.key = key;
            let armored_ring = rest.trim().to_owned();
            if !armored_ring.starts_with("-----BEGIN AGE ENCRYPTED FILE-----") {
                return Err(FormatError {
                    line: number + 1,
                    why: "the mac is not followed by the ASCII-armored key block",
                });
            }
            return Ok(Sealed {
                index,
                signed,
                tag,
                armored_ring,
            });
        }
        signed.extend_from_slice(line.as_bytes());
        signed.push(b'\n');
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if !seen_header {
            if line != HEADER {
                return Err(error(
                    "not a hushbox integrity manifest of a version this hushbox reads",
                ));
            }
            seen_header = true;
            continue;
        }
        let (label, value) = line
            .split_once(' ')
            .ok_or(error("a line without a value"))?;
        match label {
            "store" if store.is_none() => {
                store = Some(unhex::<16>(value).ok_or(error("the store id is not 32 hex digits"))?);
            }
            "version" if version.is_none() => {
                version = Some(
                    value
                        .parse()
                        .map_err(|_| error("the version is not a number"))?,
                );
            }
            "key" if key.is_none() => {
                key = Some(unhex::<16>(value).ok_or(error("the key id is not 32 hex digits"))?);
            }
            "recipient" => {
                index.recipients.insert(value.to_owned());
            }
            "recipients" => {
                let (set, dir) = value
                    .split_once(' ')
                    .ok_or(error("a `recipients` line needs a set id and a directory"))?;
                let set = unhex::<16>(set).ok_or(error("a set id is not 32 hex digits"))?;
                let dir = if dir == "." { "" } else { dir };
                if index.recipient_files.insert(dir.to_owned(), set).is_some() {
                    return Err(error("a directory is listed twice"));
                }
            }
            "secret" => {
                let mut fields = value.splitn(3, ' ');
                let (Some(digest), Some(set), Some(name)) =
                    (fields.next(), fields.next(), fields.next())
                else {
                    return Err(error("a `secret` line needs a digest, a set id and a name"));
                };
                let digest = unhex::<32>(digest).ok_or(error("a digest is not 64 hex digits"))?;
                let set = match set {
                    "-" => None,
                    set => Some(unhex::<16>(set).ok_or(error("a set id is not 32 hex digits"))?),
                };
                if crate::store::check_secret_path(name).is_err() {
                    return Err(error("a secret name is not a valid secret path"));
                }
                if index
                    .secrets
                    .insert(name.to_owned(), Entry { digest, set })
                    .is_some()
                {
                    return Err(error("a secret is listed twice"));
                }
            }
            _ => return Err(error("an unknown or repeated line")),
        }
    }
}

/// The text of a manifest for `index`, MACed with `key`, followed by
/// `armored_ring`.
pub(crate) fn render(index: &Index, key: &MasterKey, armored_ring: &str) -> String {
    let mut text = String::with_capacity(256 + index.secrets.len() * 140);
    text.push_str(COMMENT);
    text.push_str(HEADER);
    text.push('\n');
    let _ = writeln!(text, "store {}", hex(&index.store));
    let _ = writeln!(text, "version {}", index.version);
    let _ = writeln!(text, "key {}", hex(&index.key));
    for recipient in &index.recipients {
        let _ = writeln!(text, "recipient {recipient}");
    }
    for (dir, set) in &index.recipient_files {
        let dir = if dir.is_empty() { "." } else { dir };
        let _ = writeln!(text, "recipients {} {dir}", hex(set));
    }
    for (name, entry) in &index.secrets {
        let set = entry.set.map_or_else(|| "-".to_owned(), |set| hex(&set));
        let _ = writeln!(text, "secret {} {set} {name}", hex(&entry.digest));
    }
    let tag = key.tag(text.as_bytes());
    let _ = writeln!(text, "mac {}", hex(&tag));
    text.push_str(armored_ring.trim());
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    const RING: &str = "-----BEGIN AGE ENCRYPTED FILE-----\nYWdl\n-----END AGE ENCRYPTED FILE-----";

    fn sample(key: &MasterKey) -> Index {
        let set = set_id(&BTreeSet::from(["age1x".to_owned()]));
        Index {
            store: [7; 16],
            version: 3,
            key: key.id(),
            recipients: BTreeSet::from(["age1x".to_owned(), "ssh-ed25519 AAAA".to_owned()]),
            recipient_files: BTreeMap::from([(String::new(), set), ("ops".to_owned(), set)]),
            secrets: BTreeMap::from([
                (
                    "prod/db".to_owned(),
                    Entry {
                        digest: digest(b"a"),
                        set: Some(set),
                    },
                ),
                (
                    "with space".to_owned(),
                    Entry {
                        digest: digest(b"b"),
                        set: None,
                    },
                ),
            ]),
        }
    }

    #[test]
    fn render_then_parse_round_trips_and_verifies() {
        let key = MasterKey::generate();
        let index = sample(&key);
        let text = render(&index, &key, RING);
        let sealed = parse(&text).unwrap();
        assert_eq!(sealed.index, index);
        assert!(sealed.verify(&key));
        assert!(!sealed.verify(&MasterKey::generate()));
        assert_eq!(sealed.armored_ring, RING);
        // Line endings converted by a checkout do not matter.
        let crlf = text.replace('\n', "\r\n");
        assert!(parse(&crlf).unwrap().verify(&key));
    }

    #[test]
    fn any_change_to_a_signed_line_breaks_the_mac() {
        let key = MasterKey::generate();
        let text = render(&sample(&key), &key, RING);
        let edits = [
            ("version 3", "version 4"),
            ("prod/db", "prod/dc"),
            ("recipient age1x", "recipient age1y"),
            (" ops\n", " opz\n"),
        ];
        for (from, to) in edits {
            assert!(text.contains(from), "{from}");
            let edited = text.replacen(from, to, 1);
            assert!(!parse(&edited).unwrap().verify(&key), "{from} → {to}");
        }
        // Dropping a secret's line, too.
        let dropped: String = text
            .lines()
            .filter(|line| !line.ends_with(" prod/db"))
            .map(|line| format!("{line}\n"))
            .collect();
        assert!(!parse(&dropped).unwrap().verify(&key));
    }

    #[test]
    fn malformed_manifests_name_the_line() {
        let key = MasterKey::generate();
        let text = render(&sample(&key), &key, RING);
        let cases = [
            (
                text.replacen("hushbox-integrity 1", "hushbox-integrity 9", 1),
                3,
            ),
            (text.replacen("version 3", "version three", 1), 5),
            (text.replacen(" prod/db", " ../x", 1), 11),
            (text.lines().take(8).collect::<Vec<_>>().join("\n"), 9),
        ];
        for (case, line) in cases {
            let error = parse(&case).err().unwrap();
            assert_eq!(error.line, line, "{}", error.why);
        }
    }

    #[test]
    fn key_ring_round_trips_and_rotation_keeps_the_chain() {
        let ring = KeyRing::generate();
        let first = ring.current.id();
        let ring = ring.rotate().rotate();
        assert!(ring.succeeds(&first));
        assert!(!ring.succeeds(&ring.current.id()));
        let parsed = KeyRing::from_payload(ring.to_payload().expose()).unwrap();
        assert_eq!(parsed.current.id(), ring.current.id());
        assert_eq!(parsed.previous.len(), 2);
        assert!(parsed.succeeds(&first));
        assert!(KeyRing::from_payload(b"nonsense").is_err());
        let mut ring = KeyRing::generate();
        for _ in 0..40 {
            ring = ring.rotate();
        }
        assert_eq!(ring.previous.len(), KEPT_KEYS);
    }

    #[test]
    fn key_ids_and_set_ids_are_stable_and_distinct() {
        let key = MasterKey::generate();
        assert_eq!(key.id(), key.id());
        assert_ne!(key.id(), MasterKey::generate().id());
        let a = set_id(&BTreeSet::from(["age1a".to_owned(), "age1b".to_owned()]));
        let b = set_id(&BTreeSet::from(["age1b".to_owned(), "age1a".to_owned()]));
        assert_eq!(a, b);
        assert_ne!(a, set_id(&BTreeSet::from(["age1a".to_owned()])));
        assert_eq!(unhex::<16>(&hex(&a)), Some(a));
        assert_eq!(unhex::<2>("zz00"), None);
        // A sign is not a hex digit, though `from_str_radix` takes one.
        assert_eq!(unhex::<2>("+f+f"), None);
        assert_eq!(unhex::<2>("00é"), None);
    }
}
