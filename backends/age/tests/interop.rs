//! Interoperability with the reference `age` CLI, both ways: what hushbox
//! writes, `age -d` reads; what `age` writes (binary or armored, to X25519
//! or ssh-ed25519 recipients), hushbox reads. Byte for byte.

mod common;

use std::fs;
use std::path::Path;
use std::process::Command;

use common::{Fixture, age_cli, age_decrypt, age_encrypt, new_identity_file, reference, run_ok};
use hushbox_age::{RECIPIENTS_FILE, init_store, recipient_of_identity_file};
use hushbox_core::{Backend, ErrorKind, SecretValue};

/// Bytes that catch mangling: every byte value, no trailing newline, and
/// more than one 64 KiB age chunk.
fn awkward_bytes() -> Vec<u8> {
    (0..200_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect()
}

fn ssh_keygen(path: &Path, passphrase: &str) -> String {
    let present = Command::new("sh")
        .args(["-c", "command -v ssh-keygen"])
        .output()
        .is_ok_and(|output| output.status.success());
    assert!(
        present,
        "the ssh interoperability tests need `ssh-keygen`: install it with \
         `apt-get install -y openssh-client`"
    );
    run_ok(
        Command::new("ssh-keygen")
            .args([
                "-q",
                "-t",
                "ed25519",
                "-C",
                "test@hushbox",
                "-N",
                passphrase,
                "-f",
            ])
            .arg(path),
    );
    fs::read_to_string(path.with_extension("pub"))
        .unwrap()
        .trim()
        .to_owned()
}

#[tokio::test]
async fn age_decrypts_what_hushbox_stores() {
    let fixture = Fixture::new();
    let backend = fixture.backend();
    for (name, bytes) in [
        ("empty", Vec::new()),
        ("text", b"hunter2\n".to_vec()),
        ("dir/awkward", awkward_bytes()),
    ] {
        backend
            .put(name, &SecretValue::copy_from_slice(&bytes))
            .await
            .unwrap();
        let file = fixture.secret_file(name);
        assert!(
            !fs::read(&file).unwrap().starts_with(b"-----BEGIN"),
            "hushbox writes binary age files, as passage does"
        );
        assert_eq!(
            age_decrypt(&fixture.identity_file, &file),
            bytes,
            "age -d of {name}"
        );
    }
}

#[tokio::test]
async fn hushbox_decrypts_what_age_encrypts_binary_and_armored() {
    let fixture = Fixture::new();
    let backend = fixture.backend();
    let recipients = fixture.store.join(RECIPIENTS_FILE);
    let bytes = awkward_bytes();
    for (name, armor) in [("binary", false), ("armored", true)] {
        let file = fixture.secret_file(name);
        age_encrypt(&recipients, armor, &file, &bytes);
        assert_eq!(
            fs::read(&file)
                .unwrap()
                .starts_with(b"-----BEGIN AGE ENCRYPTED FILE-----"),
            armor
        );
        let document = backend.fetch(&reference(name)).await.unwrap();
        assert!(document.value.expose() == bytes, "fetch of the {name} file");
    }
    // An empty plaintext is a valid age file too.
    age_encrypt(&recipients, false, &fixture.secret_file("empty"), b"");
    let document = backend.fetch(&reference("empty")).await.unwrap();
    assert!(document.value.is_empty());
}

#[tokio::test]
async fn identity_files_match_age_keygen() {
    let dir = tempfile::tempdir().unwrap();
    // Ours, read by age-keygen.
    let ours = dir.path().join("ours.txt");
    let recipient = new_identity_file(&ours);
    let derived = run_ok(age_cli("age-keygen").arg("-y").arg(&ours)).stdout;
    assert_eq!(String::from_utf8(derived).unwrap().trim(), recipient);
    // age-keygen's, read by us.
    let theirs = dir.path().join("theirs.txt");
    run_ok(age_cli("age-keygen").arg("-o").arg(&theirs));
    let derived = run_ok(age_cli("age-keygen").arg("-y").arg(&theirs)).stdout;
    assert_eq!(
        recipient_of_identity_file(&theirs).unwrap(),
        [String::from_utf8(derived).unwrap().trim().to_owned()]
    );
}

#[tokio::test]
async fn ssh_ed25519_identities_work_both_ways() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("id_ed25519");
    let public = ssh_keygen(&key, "");
    assert_eq!(
        recipient_of_identity_file(&key).unwrap(),
        [public.trim_end_matches(" test@hushbox").to_owned()]
    );

    // A store whose recipient is the ssh key, with a comment line.
    let store = dir.path().join("store");
    init_store(&store, std::slice::from_ref(&public)).unwrap();
    let backend = hushbox_age::AgeBackend::new(
        "age",
        hushbox_age::AgeSettings {
            store: store.clone(),
            identity_file: key.clone(),
            max_size: hushbox_core::DEFAULT_SIZE_LIMIT,
            state_dir: None,
            trust: Default::default(),
            identity_variable: None,
            identity_defaulted: false,
            store_defaulted: false,
            require_integrity: false,
            integrity_key: None,
        },
    );
    let bytes = awkward_bytes();

    backend
        .put("ssh/value", &SecretValue::copy_from_slice(&bytes))
        .await
        .unwrap();
    assert_eq!(age_decrypt(&key, &store.join("ssh/value.age")), bytes);

    let file = store.join("from-age.age");
    age_encrypt(
        &store.join(RECIPIENTS_FILE),
        true,
        &file,
        b"from age, via ssh",
    );
    let document = backend.fetch(&reference("from-age")).await.unwrap();
    assert_eq!(document.value.expose(), b"from age, via ssh");
}

#[tokio::test]
async fn without_recipients_file_put_encrypts_to_the_identity() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("id_ed25519");
    ssh_keygen(&key, "");
    let store = dir.path().join("fresh-store");
    let backend = hushbox_age::AgeBackend::new(
        "age",
        hushbox_age::AgeSettings {
            store: store.clone(),
            identity_file: key.clone(),
            max_size: hushbox_core::DEFAULT_SIZE_LIMIT,
            state_dir: None,
            trust: Default::default(),
            identity_variable: None,
            identity_defaulted: false,
            store_defaulted: false,
            require_integrity: false,
            integrity_key: None,
        },
    );
    backend
        .put("a/b/c", &SecretValue::copy_from_slice(b"fallback"))
        .await
        .unwrap();
    assert_eq!(age_decrypt(&key, &store.join("a/b/c.age")), b"fallback");
}

#[tokio::test]
async fn nearest_recipients_file_wins_for_a_subtree() {
    let fixture = Fixture::new();
    // The subtree's own team, who alone may read it.
    let team_identity = fixture.dir.path().join("team.txt");
    let team_recipient = new_identity_file(&team_identity);
    fs::create_dir_all(fixture.store.join("team")).unwrap();
    fs::write(
        fixture.store.join("team").join(RECIPIENTS_FILE),
        format!("# the team only\n{team_recipient}\n"),
    )
    .unwrap();

    let writer = fixture.backend();
    for path in ["root-secret", "team/db", "team/deeper/api"] {
        writer
            .put(path, &SecretValue::copy_from_slice(path.as_bytes()))
            .await
            .unwrap();
    }

    // age itself: the subtree files are encrypted to the team alone.
    for path in ["team/db", "team/deeper/api"] {
        let file = fixture.secret_file(path);
        assert_eq!(age_decrypt(&team_identity, &file), path.as_bytes());
        let refused = age_cli("age")
            .arg("-d")
            .arg("-i")
            .arg(&fixture.identity_file)
            .arg(&file)
            .output()
            .unwrap();
        assert!(
            !refused.status.success(),
            "the root identity decrypted {path}, which only the team should read"
        );
    }
    assert_eq!(
        age_decrypt(&fixture.identity_file, &fixture.secret_file("root-secret")),
        b"root-secret"
    );

    // hushbox, the same way round.
    let root_reader = fixture.backend();
    let team_reader = fixture.backend_with(&team_identity);
    let error = root_reader.fetch(&reference("team/db")).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::PermissionDenied, "{error}");
    let text = error.to_string();
    assert!(
        text.contains("age://team/db")
            && text.contains(&fixture.identity_file.display().to_string()),
        "{text}"
    );
    let document = team_reader.fetch(&reference("team/db")).await.unwrap();
    assert_eq!(document.value.expose(), b"team/db");
    let error = team_reader
        .fetch(&reference("root-secret"))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::PermissionDenied);
}
