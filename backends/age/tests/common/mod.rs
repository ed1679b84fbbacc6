//! Fixtures shared by the integration tests: a fresh store with its own
//! identity per test, and the reference `age` CLI.

#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use hushbox_age::{AgeBackend, AgeSettings, generate_identity, init_store, write_identity_file};
use hushbox_core::DEFAULT_SIZE_LIMIT;
use tempfile::TempDir;

/// A temporary directory holding `store/` (initialised for one fresh
/// identity) and `identity.txt`.
pub struct Fixture {
    pub dir: TempDir,
    pub store: PathBuf,
    pub identity_file: PathBuf,
    pub recipient: String,
}

impl Fixture {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let store = dir.path().join("store");
        let identity_file = dir.path().join("identity.txt");
        let recipient = new_identity_file(&identity_file);
        init_store(&store, std::slice::from_ref(&recipient)).expect("init_store");
        Fixture {
            dir,
            store,
            identity_file,
            recipient,
        }
    }

    /// A backend named `age` over this store and identity.
    pub fn backend(&self) -> AgeBackend {
        self.backend_with(&self.identity_file)
    }

    /// A backend over this store that decrypts with another identity file.
    pub fn backend_with(&self, identity_file: &Path) -> AgeBackend {
        AgeBackend::new(
            "age",
            AgeSettings {
                store: self.store.clone(),
                identity_file: identity_file.to_owned(),
                max_size: DEFAULT_SIZE_LIMIT,
                state_dir: Some(self.dir.path().join("state")),
            },
        )
    }

    /// The file of secret `path`.
    pub fn secret_file(&self, path: &str) -> PathBuf {
        self.store.join(format!("{path}.age"))
    }
}

/// Writes a fresh identity file at `path`, returning its recipient.
pub fn new_identity_file(path: &Path) -> String {
    let (text, recipient) = generate_identity();
    write_identity_file(path, &text).expect("write_identity_file");
    recipient
}

/// The reference implementation, or a failure that says how to get it.
pub fn age_cli(tool: &str) -> Command {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|output| output.status.success());
    assert!(
        found,
        "these tests need `{tool}`, the reference age implementation, on PATH: \
         install it with `apt-get install -y age` (Debian/Ubuntu) or from https://age-encryption.org"
    );
    Command::new(tool)
}

/// Runs a command, failing the test with its stderr if it fails.
pub fn run_ok(command: &mut Command) -> Output {
    let output = command.output().expect("the command runs");
    assert!(
        output.status.success(),
        "{command:?} failed with {}: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// A reference to `path` in the backend named `age`.
pub fn reference(path: &str) -> hushbox_core::SecretRef {
    format!("age://{path}").parse().expect("a valid reference")
}
