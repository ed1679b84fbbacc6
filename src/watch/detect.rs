//! Change detection without keeping values: each value is remembered as an
//! HMAC-SHA256 tag under a random key that lives only in this process, so
//! nothing held between rounds can be compared against a guess offline
//! (a plain hash of a short password could).

use hmac::{Hmac, Mac};
use hushbox_core::SecretValue;
use rand::RngCore;
use sha2::Sha256;
use zeroize::Zeroizing;

/// A keyed digest of one value.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Tag([u8; 32]);

impl std::fmt::Debug for Tag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tag(..)")
    }
}

/// Computes [`Tag`]s under a key made when it is created.
pub struct Digester {
    key: Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for Digester {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Digester").finish_non_exhaustive()
    }
}

impl Default for Digester {
    fn default() -> Self {
        Self::new()
    }
}

impl Digester {
    /// A digester with a fresh random key.
    pub fn new() -> Self {
        let mut key = Zeroizing::new([0u8; 32]);
        rand::rng().fill_bytes(key.as_mut());
        Self { key }
    }

    /// The tag of `value`.
    pub fn tag(&self, value: &SecretValue) -> Tag {
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(self.key.as_ref()).expect("any key length");
        mac.update(value.expose());
        Tag(mac.finalize().into_bytes().into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_values_equal_tags_under_one_key_only() {
        let one = Digester::new();
        let other = Digester::new();
        let a = SecretValue::copy_from_slice(b"hunter2");
        let b = SecretValue::copy_from_slice(b"hunter2");
        let c = SecretValue::copy_from_slice(b"hunter3");
        assert_eq!(one.tag(&a), one.tag(&b));
        assert_ne!(one.tag(&a), one.tag(&c));
        assert_ne!(one.tag(&a), other.tag(&a), "the key is per process");
        assert!(!format!("{:?}", one.tag(&a)).contains("hunter"));
    }
}
