//! Entry points for the fuzz targets in `fuzz/` (feature `fuzzing`, off by
//! default): the store's parsers, reached without a store on disk. Each
//! takes untrusted bytes, as the store's files are: anyone who can write to
//! the repository can write them.

use std::path::Path;
use std::sync::OnceLock;

use crate::keys::{Identities, RecipientSet};

/// Parses an integrity manifest (`.hushbox-integrity`); on success, checks
/// that what the MAC covers came from the text and that every secret name
/// is a valid path.
pub fn integrity_manifest(text: &str) {
    if let Ok(sealed) = crate::integrity::parse(text) {
        for name in sealed.index.secrets.keys() {
            assert!(crate::store::check_secret_path(name).is_ok());
        }
        // A bad tag verifies under no key.
        let key = crate::integrity::MasterKey::generate();
        assert!(!sealed.verify(&key));
    }
}

/// Parses the plaintext of an integrity manifest's key ring.
pub fn key_ring(payload: &[u8]) {
    if let Ok(ring) = crate::integrity::KeyRing::from_payload(payload) {
        let round_trip = crate::integrity::KeyRing::from_payload(ring.to_payload().expose())
            .expect("a rendered ring parses");
        assert_eq!(round_trip.previous.len(), ring.previous.len());
    }
}

/// Parses an `.age-recipients` file.
pub fn recipients(text: &str) {
    if let Ok(set) = RecipientSet::parse(text, "fuzz") {
        assert!(!set.keys.is_empty());
        assert!(set.keys.len() == set.normalized.len());
    }
}

/// Parses an identity file (age lines or an OpenSSH private key).
pub fn identities(bytes: &[u8]) {
    let _ = Identities::parse(Path::new("fuzz"), bytes);
}

/// Parses a machine's integrity state file.
pub fn state(text: &str) {
    let _ = crate::state::parse(text);
}

/// Checks a secret path, as every store operation does first.
pub fn secret_path(text: &str) {
    if crate::store::check_secret_path(text).is_ok() {
        assert!(!text.is_empty() && !text.starts_with('/'));
        assert!(
            !text
                .split('/')
                .any(|part| part.is_empty() || part.starts_with('.'))
        );
    }
}

/// Reads a secret's file as the store does: the age header, the armor, the
/// stanzas, under a fixed identity that the input was almost surely not
/// encrypted to, within the default size limit.
pub fn secret_file(ciphertext: &[u8]) {
    static IDENTITIES: OnceLock<Identities> = OnceLock::new();
    let identities = IDENTITIES.get_or_init(|| {
        let (identity, _) = crate::keys::generate_identity();
        Identities::parse(Path::new("fuzz"), identity.expose()).expect("a fresh identity parses")
    });
    let _ = crate::crypt::decrypt(ciphertext, identities, hushbox_core::DEFAULT_SIZE_LIMIT);
}
