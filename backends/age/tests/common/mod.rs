//! Fixtures shared by the integration tests: a fresh store with its own
//! identity per test, and the reference `age` CLI.

#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use hushbox_age::{
    AgeBackend, AgeSettings, AgeStore, generate_identity, init_store, write_identity_file,
};
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

    /// A store made by hushbox (`AgeStore::init`): with an integrity
    /// manifest, and this machine's record of it under `state/`.
    pub fn sealed() -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let store = dir.path().join("store");
        let identity_file = dir.path().join("identity.txt");
        let recipient = new_identity_file(&identity_file);
        let fixture = Fixture {
            dir,
            store,
            identity_file,
            recipient,
        };
        fixture
            .store()
            .init(std::slice::from_ref(&fixture.recipient), None)
            .expect("AgeStore::init");
        fixture
    }

    /// Settings for this store, another identity and a state directory.
    pub fn settings_for(&self, identity_file: &Path, state: &str) -> AgeSettings {
        AgeSettings {
            store: self.store.clone(),
            identity_file: identity_file.to_owned(),
            max_size: DEFAULT_SIZE_LIMIT,
            state_dir: Some(self.dir.path().join(state)),
            trust: Default::default(),
            identity_variable: None,
            identity_defaulted: false,
            store_defaulted: false,
            require_integrity: false,
            integrity_key: None,
        }
    }

    /// The store, managed with this fixture's identity, remembering under
    /// `state/` (this machine).
    pub fn store(&self) -> AgeStore {
        AgeStore::new("age", self.settings_for(&self.identity_file, "state"))
    }

    /// The store as seen from another machine: another identity file and
    /// state directory.
    pub fn store_as(&self, identity_file: &Path, state: &str) -> AgeStore {
        AgeStore::new("age", self.settings_for(identity_file, state))
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
                trust: Default::default(),
                identity_variable: None,
                identity_defaulted: false,
                store_defaulted: false,
                require_integrity: false,
                integrity_key: None,
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

/// `age -d -i <identity> <file>`, failing the test if age fails.
pub fn age_decrypt(identity_file: &Path, file: &Path) -> Vec<u8> {
    run_ok(
        age_cli("age")
            .arg("-d")
            .arg("-i")
            .arg(identity_file)
            .arg(file),
    )
    .stdout
}

/// Whether `age -d -i <identity> <file>` succeeds.
pub fn age_can_decrypt(identity_file: &Path, file: &Path) -> bool {
    age_cli("age")
        .arg("-d")
        .arg("-i")
        .arg(identity_file)
        .arg(file)
        .output()
        .expect("age runs")
        .status
        .success()
}

/// `age -R <recipients> [-a] -o <out>` with `plaintext` on stdin.
pub fn age_encrypt(recipients_file: &Path, armor: bool, out: &Path, plaintext: &[u8]) {
    use std::io::Write;
    use std::process::Stdio;
    let mut command = age_cli("age");
    command.arg("-R").arg(recipients_file).arg("-o").arg(out);
    if armor {
        command.arg("-a");
    }
    let mut child = command
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("age runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(plaintext)
        .expect("age reads stdin");
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "age -R failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A value, for tests.
pub fn value(bytes: &[u8]) -> hushbox_core::SecretValue {
    hushbox_core::SecretValue::copy_from_slice(bytes)
}
