//! The one-shot protocol against a real store: `pass` (Debian package
//! `pass`) over a throw-away GnuPG home and password store, configured as
//! the README's ready-to-copy instance.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::{config, environment, which};
use hushbox_command::CommandBackend;
use hushbox_core::{Backend, ErrorKind, SecretRef};

/// The README's `pass` instance, word for word.
const PASS_INSTANCE: &str = r#"
command = ["pass", "show", "{path}"]
env = ["PASSWORD_STORE_DIR", "GNUPGHOME"]
not_found_pattern = "is not in the password store"
"#;

/// A GnuPG home with one key without a passphrase, and a password store
/// encrypted to it. Its gpg-agent is stopped when the store is dropped.
struct PassStore {
    _dir: tempfile::TempDir,
    gnupg: PathBuf,
    store: PathBuf,
}

impl PassStore {
    fn new() -> Self {
        for (tool, package) in [("pass", "pass"), ("gpg", "gnupg"), ("gpgconf", "gnupg")] {
            assert!(
                which(tool).is_some(),
                "this test needs `{tool}` (Debian package `{package}`): apt-get install -y pass gnupg"
            );
        }
        let dir = tempfile::tempdir().unwrap();
        let gnupg = dir.path().join("gnupg");
        let store = dir.path().join("store");
        std::fs::create_dir(&gnupg).unwrap();
        std::fs::set_permissions(&gnupg, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .unwrap();
        let this = Self {
            _dir: dir,
            gnupg,
            store,
        };
        this.run(
            "gpg",
            &[
                "--batch",
                "--passphrase",
                "",
                "--quick-generate-key",
                "hushbox test <test@hushbox.invalid>",
                "default",
                "default",
                "never",
            ],
            None,
        );
        this.run("pass", &["init", "test@hushbox.invalid"], None);
        this
    }

    fn command(&self, program: &str, args: &[&str]) -> Command {
        let mut command = Command::new(program);
        command
            .args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap())
            .env("HOME", self._dir.path())
            .env("GNUPGHOME", &self.gnupg)
            .env("PASSWORD_STORE_DIR", &self.store);
        command
    }

    fn run(&self, program: &str, args: &[&str], stdin: Option<&[u8]>) {
        use std::io::Write;
        let mut child = self
            .command(program, args)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut pipe = child.stdin.take().unwrap();
        if let Some(bytes) = stdin {
            pipe.write_all(bytes).unwrap();
        }
        drop(pipe);
        let output = child.wait_with_output().unwrap();
        assert!(
            output.status.success(),
            "{program} {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    fn insert(&self, path: &str, value: &[u8]) {
        self.run("pass", &["insert", "--multiline", path], Some(value));
    }

    fn backend(&self) -> CommandBackend {
        let env = environment(&[
            ("GNUPGHOME", self.gnupg.to_str().unwrap()),
            ("PASSWORD_STORE_DIR", self.store.to_str().unwrap()),
            ("GPG_AGENT_INFO", "never passed"),
        ]);
        CommandBackend::new("pass", &config(PASS_INSTANCE), &env).unwrap()
    }

    fn home(&self) -> &Path {
        self._dir.path()
    }
}

impl Drop for PassStore {
    fn drop(&mut self) {
        let _ = self
            .command("gpgconf", &["--kill", "gpg-agent"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

fn reference(text: &str) -> SecretRef {
    text.parse().unwrap()
}

#[tokio::test]
async fn pass_serves_values_and_says_what_is_missing() {
    let pass = PassStore::new();
    assert!(pass.home().exists());
    pass.insert("prod/db", b"s3cret value; $(id) 'q' \"d\"\n");
    pass.insert("prod/multi line", b"line one\nline two\n");
    pass.insert("prod/config.json", br#"{"user": "app", "password": "pw"}"#);
    let backend = pass.backend();

    let document = backend.fetch(&reference("pass://prod/db")).await.unwrap();
    assert_eq!(
        document.value.expose(),
        b"s3cret value; $(id) 'q' \"d\"",
        "one trailing newline trimmed"
    );
    let document = backend
        .fetch(&reference("pass://prod/multi line"))
        .await
        .unwrap();
    assert_eq!(document.value.expose(), b"line one\nline two");

    let with_field = reference("pass://prod/config.json#password");
    let document = backend.fetch(&with_field).await.unwrap();
    assert_eq!(document.select(&with_field).unwrap().expose(), b"pw");

    let error = backend
        .fetch(&reference("pass://prod/absent"))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::NotFound, "{error}");
    assert!(
        error.to_string().starts_with("pass://prod/absent: "),
        "{error}"
    );

    // Several at once: one process each, results in order.
    let results = backend
        .fetch_many(&[
            reference("pass://prod/db"),
            reference("pass://prod/absent"),
            reference("pass://prod/multi line"),
        ])
        .await;
    assert!(results[0].is_ok() && results[2].is_ok());
    assert_eq!(results[1].as_ref().unwrap_err().kind(), ErrorKind::NotFound);
    assert_eq!(
        backend.credential_sources().variables,
        ["GNUPGHOME", "PASSWORD_STORE_DIR"]
    );
}
