//! The conformance suite, run on the file backend with relative and with
//! absolute references. Fixtures are written straight into a temporary
//! directory: the backend cannot write, and should not be trusted to seed
//! its own tests anyway.
//!
//! `#[tokio::test]` is a current-thread runtime, which the canary test's log
//! capture needs.

use std::path::PathBuf;

use hushbox_core::{Error, Result, async_trait};
use hushbox_file::{FileBackend, FileConfig};
use hushbox_testkit::{Seeder, random_prefix, run_all, run_all_under};

/// Writes each fixture to `root.join(path)`; an absolute `path` replaces
/// `root`, as `Path::join` does.
struct DirSeeder(PathBuf);

#[async_trait]
impl Seeder for DirSeeder {
    async fn seed(&self, path: &str, bytes: &[u8]) -> Result<()> {
        let target = self.0.join(path);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|error| Error::io("cannot create the fixture's directory", error))?;
        }
        std::fs::write(&target, bytes)
            .map_err(|error| Error::io("cannot write the fixture", error).with_subject(path))
    }
}

#[tokio::test]
async fn conformance_with_relative_references() {
    let dir = tempfile::tempdir().unwrap();
    let backend = FileBackend::new("file", dir.path(), FileConfig::default()).unwrap();
    run_all(&backend, &DirSeeder(dir.path().to_owned())).await;
}

#[tokio::test]
async fn conformance_with_absolute_references() {
    let dir = tempfile::tempdir().unwrap();
    // An absolute prefix makes every reference `file:///tmp/…`; the base
    // directory points elsewhere so that a relative read would miss.
    let prefix = format!("{}/{}", dir.path().display(), random_prefix());
    let backend = FileBackend::new("host", "/nonexistent", FileConfig::default()).unwrap();
    run_all_under(&backend, &DirSeeder(PathBuf::from("/")), &prefix).await;
}
