//! Bad input: each failure has the right kind and a message that names what
//! to fix, and never quotes key material.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use common::{Fixture, new_identity_file, reference, run_ok};
use hushbox_age::{
    AgeBackend, AgeSettings, RECIPIENTS_FILE, generate_identity, init_store, write_identity_file,
};
use hushbox_core::{Backend, BackendContext, Environment, ErrorKind, Registry, SecretValue};

async fn stored(fixture: &Fixture, path: &str, bytes: &[u8]) -> Vec<u8> {
    fixture
        .backend()
        .put(path, &SecretValue::copy_from_slice(bytes))
        .await
        .unwrap();
    fs::read(fixture.secret_file(path)).unwrap()
}

async fn fetch_kind(backend: &AgeBackend, path: &str) -> (ErrorKind, String) {
    let error = backend.fetch(&reference(path)).await.unwrap_err();
    (error.kind(), error.to_string())
}

#[tokio::test]
async fn missing_identity_file_is_a_config_error_naming_it_and_keygen() {
    let fixture = Fixture::new();
    stored(&fixture, "db", b"value").await;
    let missing = fixture.dir.path().join("nobody.txt");
    let (kind, text) = fetch_kind(&fixture.backend_with(&missing), "db").await;
    assert_eq!(kind, ErrorKind::Config, "{text}");
    assert!(text.contains(&missing.display().to_string()), "{text}");
    assert!(text.contains("hushbox keygen"), "{text}");
    // A missing secret is still NotFound, identity or not.
    let (kind, _) = fetch_kind(&fixture.backend_with(&missing), "absent").await;
    assert_eq!(kind, ErrorKind::NotFound);
}

#[tokio::test]
async fn identity_is_loaded_once_and_a_failed_load_is_retried() {
    let fixture = Fixture::new();
    stored(&fixture, "db", b"value").await;
    let later = fixture.dir.path().join("later.txt");
    let backend = fixture.backend_with(&later);
    assert_eq!(fetch_kind(&backend, "db").await.0, ErrorKind::Config);
    fs::copy(&fixture.identity_file, &later).unwrap();
    backend.fetch(&reference("db")).await.unwrap();
    // Loaded once: removing the file no longer matters to this backend.
    fs::remove_file(&later).unwrap();
    backend.fetch(&reference("db")).await.unwrap();
}

#[tokio::test]
async fn wrong_identity_is_permission_denied() {
    let fixture = Fixture::new();
    stored(&fixture, "db", b"value").await;
    let stranger = fixture.dir.path().join("stranger.txt");
    new_identity_file(&stranger);
    let (kind, text) = fetch_kind(&fixture.backend_with(&stranger), "db").await;
    assert_eq!(kind, ErrorKind::PermissionDenied, "{text}");
    assert!(
        text.contains("age://db") && text.contains(&stranger.display().to_string()),
        "{text}"
    );
}

#[tokio::test]
async fn truncated_tampered_and_foreign_files_are_malformed() {
    let fixture = Fixture::new();
    let backend = fixture.backend();
    let ciphertext = stored(&fixture, "good", &[7u8; 100_000]).await;
    let header_end = ciphertext
        .windows(5)
        .position(|window| window == b"\n--- ")
        .expect("an age header")
        + 1;

    let mut last_byte_flipped = ciphertext.clone();
    *last_byte_flipped.last_mut().unwrap() ^= 0x01;
    let mut payload_byte_flipped = ciphertext.clone();
    payload_byte_flipped[ciphertext.len() / 2] ^= 0x80;
    let mut mac_flipped = ciphertext.clone();
    // The header MAC is the base64 after "--- ".
    mac_flipped[header_end + 5] ^= 0x01;
    let cases: [(&str, Vec<u8>); 7] = [
        (
            "truncated-half",
            ciphertext[..ciphertext.len() / 2].to_vec(),
        ),
        ("truncated-one", ciphertext[..ciphertext.len() - 1].to_vec()),
        ("truncated-header", ciphertext[..header_end / 2].to_vec()),
        ("flipped-last", last_byte_flipped),
        ("flipped-middle", payload_byte_flipped),
        ("flipped-mac", mac_flipped),
        ("not-age", b"DB_PASSWORD=plain text, not age\n".to_vec()),
    ];
    for (name, bytes) in cases {
        fs::write(fixture.secret_file(name), bytes).unwrap();
        let (kind, text) = fetch_kind(&backend, name).await;
        assert_eq!(kind, ErrorKind::MalformedPayload, "{name}: {text}");
        assert!(text.contains(&format!("age://{name}")), "{text}");
    }
    fs::write(fixture.secret_file("empty-file"), b"").unwrap();
    assert_eq!(
        fetch_kind(&backend, "empty-file").await.0,
        ErrorKind::MalformedPayload
    );
    // The intact file is still fine.
    backend.fetch(&reference("good")).await.unwrap();
}

#[tokio::test]
async fn passphrase_encrypted_files_are_unsupported() {
    use std::io::Write;
    let fixture = Fixture::new();
    // `age -p` needs a terminal; the crate's scrypt recipient writes the same
    // format. A low work factor keeps the test fast.
    let mut recipient = age::scrypt::Recipient::new("correct horse".to_owned().into());
    recipient.set_work_factor(2);
    let encryptor =
        age::Encryptor::with_recipients(std::iter::once(&recipient as &dyn age::Recipient))
            .unwrap();
    let mut ciphertext = Vec::new();
    let mut writer = encryptor.wrap_output(&mut ciphertext).unwrap();
    writer.write_all(b"behind a passphrase").unwrap();
    writer.finish().unwrap();
    fs::write(fixture.secret_file("scrypt"), ciphertext).unwrap();
    let (kind, text) = fetch_kind(&fixture.backend(), "scrypt").await;
    assert_eq!(kind, ErrorKind::Unsupported, "{text}");
    assert!(text.contains("passphrase"), "{text}");
}

#[tokio::test]
async fn oversized_values_are_too_large() {
    let fixture = Fixture::new();
    stored(&fixture, "big", &[1u8; 2048]).await;
    let backend = AgeBackend::new(
        "age",
        AgeSettings {
            store: fixture.store.clone(),
            identity_file: fixture.identity_file.clone(),
            max_size: 1024,
            state_dir: None,
            trust: Default::default(),
            identity_variable: None,
            identity_defaulted: false,
            store_defaulted: false,
            require_integrity: false,
            integrity_key: None,
        },
    );
    assert_eq!(fetch_kind(&backend, "big").await.0, ErrorKind::TooLarge);
}

#[tokio::test]
async fn unsafe_paths_are_refused_everywhere_and_touch_nothing() {
    let fixture = Fixture::new();
    let backend = fixture.backend();
    let outside = fixture.dir.path().join("escaped.age");
    let value = SecretValue::copy_from_slice(b"x");
    for path in [
        "",
        "../escaped",
        "a/../../escaped",
        "/tmp/escaped",
        ".hidden",
        "a/.age-recipients",
        "a//b",
        "trailing/",
        "nul\0byte",
        "bell\u{7}",
    ] {
        let put = backend.put(path, &value).await.unwrap_err();
        assert_eq!(put.kind(), ErrorKind::Config, "put {path:?}: {put}");
        let delete = backend.delete(path).await.unwrap_err();
        assert_eq!(
            delete.kind(),
            ErrorKind::Config,
            "delete {path:?}: {delete}"
        );
        if !path.is_empty() && !path.ends_with('/') {
            let list = backend.list(path).await.unwrap_err();
            assert_eq!(list.kind(), ErrorKind::Config, "list {path:?}: {list}");
        }
        if let Ok(location) = format!("age://{path}").parse::<hushbox_core::SecretRef>() {
            let fetch = backend.fetch(&location).await.unwrap_err();
            assert_eq!(fetch.kind(), ErrorKind::Config, "fetch {path:?}: {fetch}");
        }
    }
    assert!(!outside.exists());
    assert!(!std::path::Path::new("/tmp/escaped.age").exists());
}

#[tokio::test]
async fn references_with_parameters_are_refused() {
    let fixture = Fixture::new();
    stored(&fixture, "db", b"v").await;
    let location = "age://db?version=2".parse().unwrap();
    let error = fixture.backend().fetch(&location).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Config, "{error}");
}

#[tokio::test]
async fn passphrase_protected_ssh_keys_are_unsupported() {
    let fixture = Fixture::new();
    let present = Command::new("sh")
        .args(["-c", "command -v ssh-keygen"])
        .output()
        .is_ok_and(|output| output.status.success());
    assert!(
        present,
        "this test needs `ssh-keygen`: install it with `apt-get install -y openssh-client`"
    );
    let key = fixture.dir.path().join("id_locked");
    run_ok(
        Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "a passphrase", "-f"])
            .arg(&key),
    );
    stored(&fixture, "db", b"v").await;
    let (kind, text) = fetch_kind(&fixture.backend_with(&key), "db").await;
    assert_eq!(kind, ErrorKind::Unsupported, "{text}");
    assert!(
        text.contains("passphrase") && text.contains(&key.display().to_string()),
        "{text}"
    );
}

#[tokio::test]
async fn garbage_identity_files_are_config_errors_without_their_text() {
    let fixture = Fixture::new();
    stored(&fixture, "db", b"v").await;
    let bad = fixture.dir.path().join("bad.txt");
    fs::write(&bad, "# comment\nAGE-SECRET-KEY-1NOTAKEYCANARY\n").unwrap();
    let (kind, text) = fetch_kind(&fixture.backend_with(&bad), "db").await;
    assert_eq!(kind, ErrorKind::Config, "{text}");
    assert!(
        text.contains("line 2") && !text.contains("CANARY"),
        "{text}"
    );
}

#[test]
fn identity_files_are_private_and_never_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("new/nested/identity.txt");
    let (text, _) = generate_identity();
    write_identity_file(&path, &text).unwrap();
    let mode = |p: &std::path::Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&path), 0o600);
    assert_eq!(mode(&dir.path().join("new/nested")), 0o700);
    assert_eq!(mode(&dir.path().join("new")), 0o700);

    let before = fs::read(&path).unwrap();
    let (other, _) = generate_identity();
    let error = write_identity_file(&path, &other).unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Config);
    assert!(error.to_string().contains("already exists"), "{error}");
    assert_eq!(fs::read(&path).unwrap(), before);
}

#[test]
fn init_store_validates_recipients_and_refuses_an_existing_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let (_, recipient) = generate_identity();

    let error = init_store(&store, &["not-a-recipient".into()]).unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Config);
    let error = init_store(&store, &["AGE-SECRET-KEY-1PASTEDBYMISTAKECANARY".into()]).unwrap_err();
    assert!(!error.to_string().contains("CANARY"), "{error}");
    assert!(init_store(&store, &[]).is_err());
    assert!(!store.join(RECIPIENTS_FILE).exists());

    init_store(&store, std::slice::from_ref(&recipient)).unwrap();
    assert_eq!(
        fs::read_to_string(store.join(RECIPIENTS_FILE)).unwrap(),
        format!("{recipient}\n")
    );
    let error = init_store(&store, &[recipient]).unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Config);
    assert!(error.to_string().contains("already exists"), "{error}");
}

#[tokio::test]
async fn registry_builds_kind_age_with_identity_precedence() {
    let fixture = Fixture::new();
    stored(&fixture, "db", b"from the registry").await;
    let mut registry = Registry::new();
    hushbox_age::register(&mut registry);
    assert!(registry.kinds().any(|kind| kind == "age"));

    // The manifest names a stranger's identity; HUSHBOX_IDENTITY wins.
    let stranger = fixture.dir.path().join("stranger.txt");
    new_identity_file(&stranger);
    let settings: hushbox_core::toml::Table = hushbox_core::toml::from_str(&format!(
        "store = 'store'\nidentity_file = '{}'",
        stranger.display()
    ))
    .unwrap();
    let env = Environment::from_pairs([("HUSHBOX_IDENTITY", fixture.identity_file.as_os_str())]);
    let context = BackendContext {
        name: "age",
        base_dir: fixture.dir.path(),
        env: &env,
    };
    let backend = registry.build("age", &context, settings.clone()).unwrap();
    let document = backend.fetch(&reference("db")).await.unwrap();
    assert_eq!(document.value.expose(), b"from the registry");

    // Without the variable, the manifest's identity is used (and refused).
    let env = Environment::default();
    let context = BackendContext {
        name: "age",
        base_dir: fixture.dir.path(),
        env: &env,
    };
    let backend = registry.build("age", &context, settings).unwrap();
    let error = backend.fetch(&reference("db")).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::PermissionDenied);

    let unknown: hushbox_core::toml::Table =
        hushbox_core::toml::from_str("recipients = 'x'").unwrap();
    assert_eq!(
        registry.build("age", &context, unknown).unwrap_err().kind(),
        ErrorKind::Config
    );
}

#[tokio::test]
async fn debug_lists_paths_only() {
    let fixture = Fixture::new();
    let backend = fixture.backend();
    stored(&fixture, "db", b"v").await;
    backend.fetch(&reference("db")).await.unwrap();
    let text = format!("{backend:?}");
    assert!(
        text.contains("identity_file") && text.contains("store"),
        "{text}"
    );
    assert!(!text.contains("AGE-SECRET-KEY"), "{text}");
}

#[test]
fn group_readable_identity_files_draw_a_warning_without_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("identity.txt");
    let (text, recipient) = generate_identity();
    write_identity_file(&path, &text).unwrap();

    let (result, logs) =
        hushbox_testkit::capture_logs(|| hushbox_age::recipient_of_identity_file(&path));
    assert_eq!(result.unwrap(), std::slice::from_ref(&recipient));
    assert!(
        !logs.contains("chmod"),
        "a 0600 file drew a warning: {logs}"
    );

    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
    let (result, logs) =
        hushbox_testkit::capture_logs(|| hushbox_age::recipient_of_identity_file(&path));
    assert_eq!(result.unwrap(), [recipient]);
    assert!(
        logs.contains("chmod 600") && logs.contains("0644"),
        "{logs}"
    );
    assert!(!logs.contains("AGE-SECRET-KEY"), "{logs}");
}

#[tokio::test]
async fn a_path_through_a_plain_file_is_not_found() {
    let fixture = Fixture::new();
    fs::write(fixture.store.join("plain"), b"not a directory").unwrap();
    let backend = fixture.backend();
    assert_eq!(
        fetch_kind(&backend, "plain/below").await.0,
        ErrorKind::NotFound
    );
    assert_eq!(
        backend.delete("plain/below").await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
}
