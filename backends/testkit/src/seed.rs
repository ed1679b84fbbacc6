//! How fixtures get into the backend under test.

use async_trait::async_trait;
use hushbox_core::{Backend, Result, SecretValue};

/// How a test puts a fixture into the backend under test, bypassing
/// hushbox's own write path when the backend has one (the vault and aws
/// tests seed through the server's API, the file tests write files).
#[async_trait]
pub trait Seeder: Send + Sync {
    /// Stores `bytes` so that a later fetch of `path` returns them, replacing
    /// what was there. Intermediate "directories" are the seeder's business.
    async fn seed(&self, path: &str, bytes: &[u8]) -> Result<()>;
}

/// A [`Seeder`] that uses [`Backend::put`], for backends that can write.
pub struct PutSeeder<'a>(pub &'a dyn Backend);

impl std::fmt::Debug for PutSeeder<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("PutSeeder").field(&self.0.name()).finish()
    }
}

#[async_trait]
impl Seeder for PutSeeder<'_> {
    async fn seed(&self, path: &str, bytes: &[u8]) -> Result<()> {
        self.0.put(path, &SecretValue::copy_from_slice(bytes)).await
    }
}
