//! The integrity manifest against the attacks it exists for. The attacker
//! can write to the store's directory (a push to its repository) but holds
//! no identity of the store: they encrypt with the reference `age` CLI to
//! the store's public recipients, copy, rename, delete and restore files.
//! Each attack must make the read of the affected secret fail, naming it,
//! while the secrets it did not touch still read.

mod common;

use std::fs;
use std::path::Path;

use common::{Fixture, age_encrypt, new_identity_file, reference, value};
use hushbox_age::{AgeStore, INTEGRITY_FILE, RECIPIENTS_FILE};
use hushbox_core::{Backend, ErrorKind};

/// The error of reading `name`, as text, after checking its kind.
fn refused(store: &AgeStore, name: &str) -> String {
    let error = store.get(name).err().unwrap_or_else(|| {
        panic!("reading {name} succeeded, but the attack should have been detected")
    });
    assert_eq!(error.kind(), ErrorKind::MalformedPayload, "{error}");
    let text = error.to_string();
    assert!(text.contains(&format!("age://{name}")), "{text}");
    text
}

fn read(store: &AgeStore, name: &str) -> Vec<u8> {
    store
        .get(name)
        .unwrap_or_else(|error| panic!("{name}: {error}"))
        .expose()
        .to_vec()
}

/// A copy of every file of a directory tree (the attacker's snapshot).
fn snapshot(dir: &Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(current) = stack.pop() {
        for entry in fs::read_dir(&current).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                files.push((path.clone(), fs::read(&path).unwrap()));
            }
        }
    }
    files
}

fn restore(files: &[(std::path::PathBuf, Vec<u8>)]) {
    for (path, bytes) in files {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, bytes).unwrap();
    }
}

fn seeded() -> (Fixture, AgeStore) {
    let fixture = Fixture::sealed();
    let store = fixture.store();
    store.set("prod/db", &value(b"db-password")).unwrap();
    store.set("prod/api", &value(b"api-key")).unwrap();
    store.set("token", &value(b"token")).unwrap();
    (fixture, store)
}

#[test]
fn a_sealed_store_reads_and_verifies() {
    let (fixture, store) = seeded();
    assert_eq!(read(&store, "prod/db"), b"db-password");
    let report = store.verify().unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(report.checked, 3);
    assert_eq!(report.version, Some(4));
    let manifest = fs::read_to_string(fixture.store.join(INTEGRITY_FILE)).unwrap();
    assert!(manifest.contains("version 4\n"), "{manifest}");
    assert!(manifest.contains(&format!("recipient {}\n", fixture.recipient)));
    assert!(!manifest.contains("db-password"));
}

#[test]
fn substitution_is_detected() {
    let (fixture, store) = seeded();
    // Encrypted to the store's own public recipients: age alone cannot tell.
    age_encrypt(
        &fixture.store.join(RECIPIENTS_FILE),
        false,
        &fixture.secret_file("prod/db"),
        b"attacker's value",
    );
    let text = refused(&store, "prod/db");
    assert!(
        text.contains("prod/db.age") && text.contains("replaced outside hushbox"),
        "{text}"
    );
    assert_eq!(read(&store, "prod/api"), b"api-key");
    let report = store.verify().unwrap();
    assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
    assert!(report.problems[0].to_string().contains("age://prod/db"));
}

#[test]
fn swapping_and_renaming_are_detected() {
    let (fixture, store) = seeded();
    let db = fixture.secret_file("prod/db");
    let api = fixture.secret_file("prod/api");
    let db_bytes = fs::read(&db).unwrap();
    fs::write(&db, fs::read(&api).unwrap()).unwrap();
    fs::write(&api, &db_bytes).unwrap();
    let text = refused(&store, "prod/db");
    assert!(
        text.contains("`prod/api`") && text.contains("renamed or swapped"),
        "{text}"
    );
    refused(&store, "prod/api");

    // A plain rename: the new name is unknown, the old one deleted.
    let (fixture, store) = seeded();
    fs::rename(
        fixture.secret_file("token"),
        fixture.secret_file("prod/token"),
    )
    .unwrap();
    let text = refused(&store, "prod/token");
    assert!(
        text.contains("not recorded") && text.contains("`token`"),
        "{text}"
    );
    let text = refused(&store, "token");
    assert!(text.contains("token.age is missing"), "{text}");
}

#[test]
fn deletion_is_detected() {
    let (fixture, store) = seeded();
    fs::remove_file(fixture.secret_file("prod/api")).unwrap();
    let text = refused(&store, "prod/api");
    assert!(
        text.contains("deleted or renamed outside hushbox"),
        "{text}"
    );
    // A secret that was never there is still simply not found.
    assert_eq!(store.get("never").unwrap_err().kind(), ErrorKind::NotFound);
    // Removing it through hushbox is fine.
    store.remove("prod/db").unwrap();
    assert_eq!(
        store.get("prod/db").unwrap_err().kind(),
        ErrorKind::NotFound
    );
}

#[test]
fn rollback_is_detected_secret_by_secret_and_blocks_writes() {
    let (fixture, store) = seeded();
    let old = snapshot(&fixture.store);
    store
        .set("prod/db", &value(b"rotated, the old one leaked"))
        .unwrap();
    store.set("new", &value(b"new")).unwrap();
    // The attacker restores the old, validly MACed store wholesale.
    fs::remove_file(fixture.secret_file("new")).unwrap();
    restore(&old);
    let text = refused(&store, "prod/db");
    assert!(
        text.contains("version 4") && text.contains("version 6") && text.contains("rolled back"),
        "{text}"
    );
    refused(&store, "new");
    // What the rollback did not change still reads.
    assert_eq!(read(&store, "prod/api"), b"api-key");
    // A write would build on the old manifest: refused.
    let error = store.set("other", &value(b"x")).unwrap_err();
    assert!(error.to_string().contains("rolled back"), "{error}");
    assert!(!store.verify().unwrap().problems.is_empty());

    // Checking out an old commit on purpose: accept, and it reads again.
    let report = store.accept(&[]).unwrap();
    assert!(
        report
            .accepted
            .iter()
            .any(|what| what.contains("version 4")),
        "{report:?}"
    );
    assert_eq!(read(&store, "prod/db"), b"db-password");
    store.set("other", &value(b"x")).unwrap();
}

#[test]
fn a_manifest_recreated_with_another_key_is_refused() {
    let (fixture, store) = seeded();
    assert_eq!(read(&store, "prod/db"), b"db-password");
    // The attacker replaces a secret, then makes a manifest of their own:
    // a fresh key, encrypted to the store's public recipients, which they
    // can do without holding any identity of the store.
    age_encrypt(
        &fixture.store.join(RECIPIENTS_FILE),
        false,
        &fixture.secret_file("prod/db"),
        b"attacker's value",
    );
    fs::remove_file(fixture.store.join(INTEGRITY_FILE)).unwrap();
    let attacker_identity = fixture.dir.path().join("attacker.txt");
    new_identity_file(&attacker_identity);
    let attacker = fixture.store_as(&attacker_identity, "attacker-state");
    attacker.accept(&[]).unwrap();
    assert!(fixture.store.join(INTEGRITY_FILE).exists());

    let error = store.get("prod/db").unwrap_err();
    assert_eq!(error.kind(), ErrorKind::MalformedPayload);
    assert!(
        error.to_string().contains("never seen for this store"),
        "{error}"
    );
    // Every secret is refused: the manifest itself is not trusted.
    assert!(store.get("prod/api").is_err());
}

#[test]
fn deleting_the_manifest_is_detected_where_it_was_seen() {
    let (fixture, store) = seeded();
    fs::remove_file(fixture.store.join(INTEGRITY_FILE)).unwrap();
    let error = store.get("prod/db").unwrap_err();
    assert_eq!(error.kind(), ErrorKind::MalformedPayload, "{error}");
    assert!(
        error
            .to_string()
            .contains("is missing, but this machine has verified version 4"),
        "{error}"
    );
    // A machine that never saw it reads the store as an unprotected one,
    // warning: the documented limit of a first use.
    let fresh = fixture.store_as(&fixture.identity_file, "fresh-state");
    let (result, logs) = hushbox_testkit::capture_logs(|| fresh.get("prod/db"));
    assert_eq!(result.unwrap().expose(), b"db-password");
    assert!(logs.contains("no integrity manifest"), "{logs}");
}

#[test]
fn a_hand_edited_manifest_fails_its_mac() {
    let (fixture, store) = seeded();
    let path = fixture.store.join(INTEGRITY_FILE);
    let text = fs::read_to_string(&path).unwrap();
    fs::write(&path, text.replace("version 4\n", "version 40\n")).unwrap();
    let error = store.get("token").unwrap_err();
    assert!(
        error
            .to_string()
            .contains("does not verify under its own key"),
        "{error}"
    );
    // Conflict markers from a merge: the manifest does not even parse.
    fs::write(&path, format!("<<<<<<< ours\n{text}")).unwrap();
    let error = store.get("token").unwrap_err();
    assert!(error.to_string().contains("line 1"), "{error}");
    // `accept` makes it again, with the same key.
    let report = store.accept(&[]).unwrap();
    assert!(!report.accepted.is_empty(), "{report:?}");
    assert_eq!(read(&store, "token"), b"token");
}

#[test]
fn files_written_by_age_are_refused_until_accepted() {
    let (fixture, store) = seeded();
    age_encrypt(
        &fixture.store.join(RECIPIENTS_FILE),
        true,
        &fixture.secret_file("from-age"),
        b"written by age",
    );
    let text = refused(&store, "from-age");
    assert!(text.contains("hushbox store accept from-age"), "{text}");
    let report = store.accept(&["from-age".to_owned()]).unwrap();
    assert_eq!(report.added, ["from-age"]);
    assert_eq!(read(&store, "from-age"), b"written by age");
    // Accepted as found: `reencrypt` does not know its recipients, so it
    // re-encrypts it.
    let report = store.reencrypt("").unwrap();
    assert_eq!(report.reencrypted, ["from-age"]);
}

#[test]
fn recipients_changed_by_hand_block_new_encryption_until_reencrypt() {
    let (fixture, store) = seeded();
    let intruder = fixture.dir.path().join("intruder.txt");
    let intruder_recipient = new_identity_file(&intruder);
    let recipients = fixture.store.join(RECIPIENTS_FILE);
    let mut text = fs::read_to_string(&recipients).unwrap();
    text.push_str(&intruder_recipient);
    text.push('\n');
    fs::write(&recipients, text).unwrap();

    let error = store.set("prod/new", &value(b"v")).unwrap_err();
    assert!(
        error.to_string().contains("changed outside hushbox"),
        "{error}"
    );
    assert!(!fixture.secret_file("prod/new").exists());
    // Reading is unaffected.
    assert_eq!(read(&store, "prod/db"), b"db-password");
    assert!(!store.verify().unwrap().problems.is_empty());

    // Reviewed and meant: reencrypt accepts it and says so.
    let report = store.reencrypt("").unwrap();
    assert_eq!(report.added_recipients, [intruder_recipient]);
    assert_eq!(report.reencrypted.len(), 3);
    store.set("prod/new", &value(b"v")).unwrap();
}

#[test]
fn reencrypt_touches_exactly_the_files_whose_recipients_changed() {
    let (fixture, store) = seeded();
    let ops_identity = fixture.dir.path().join("ops.txt");
    let ops_recipient = new_identity_file(&ops_identity);
    store
        .init(std::slice::from_ref(&ops_recipient), Some("ops"))
        .unwrap();
    store.set("ops/root-token", &value(b"ops only")).unwrap();
    let untouched = fs::read(fixture.secret_file("prod/db")).unwrap();
    // Only the ops team can re-encrypt what only they can read.
    let ops = fixture.store_as(&ops_identity, "ops-state");

    let alice = fixture.dir.path().join("alice.txt");
    let alice_recipient = new_identity_file(&alice);
    let added = ops
        .add_recipients(Some("ops"), std::slice::from_ref(&alice_recipient))
        .unwrap();
    assert_eq!(added, std::slice::from_ref(&alice_recipient));
    assert_eq!(ops.verify().unwrap().stale, ["ops/root-token"]);
    let report = ops.reencrypt("").unwrap();
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    assert_eq!(report.reencrypted, ["ops/root-token"]);
    assert_eq!(report.unchanged, 3);
    assert_eq!(fs::read(fixture.secret_file("prod/db")).unwrap(), untouched);
    let alice_store = fixture.store_as(&alice, "alice-state");
    assert_eq!(read(&alice_store, "ops/root-token"), b"ops only");
    // Nothing to do twice.
    assert!(ops.reencrypt("").unwrap().reencrypted.is_empty());

    // Alice leaves: the key that MACs the manifest is replaced.
    let key_line = || {
        fs::read_to_string(fixture.store.join(INTEGRITY_FILE))
            .unwrap()
            .lines()
            .find(|line| line.starts_with("key "))
            .unwrap()
            .to_owned()
    };
    let before = key_line();
    ops.remove_recipients(Some("ops"), std::slice::from_ref(&alice_recipient))
        .unwrap();
    assert_ne!(key_line(), before);
    let report = ops.reencrypt("").unwrap();
    assert_eq!(report.reencrypted, ["ops/root-token"]);
    let error = alice_store.get("ops/root-token").unwrap_err();
    assert_eq!(error.kind(), ErrorKind::PermissionDenied, "{error}");
    // Alice's old copy of the key no longer authenticates anything new:
    // the root team, who trusted the old key, follows the rotation.
    assert_eq!(read(&store, "prod/db"), b"db-password");
    // A reencrypt by someone who cannot read a secret reports it.
    ops.add_recipients(Some("ops"), std::slice::from_ref(&alice_recipient))
        .unwrap();
    let report = store.reencrypt("").unwrap();
    assert_eq!(report.failed.len(), 1, "{report:?}");
    assert_eq!(report.failed[0].kind(), ErrorKind::PermissionDenied);
}

#[test]
fn readers_accept_a_key_rotation_they_can_trace() {
    let (fixture, store) = seeded();
    let bob = fixture.dir.path().join("bob.txt");
    let bob_recipient = new_identity_file(&bob);
    let carol = fixture.dir.path().join("carol.txt");
    let carol_recipient = new_identity_file(&carol);
    store
        .add_recipients(None, &[bob_recipient, carol_recipient.clone()])
        .unwrap();
    store.reencrypt("").unwrap();
    let bob_store = fixture.store_as(&bob, "bob-state");
    assert_eq!(read(&bob_store, "token"), b"token");
    // Two rotations while Bob is away.
    store
        .remove_recipients(None, std::slice::from_ref(&carol_recipient))
        .unwrap();
    store.reencrypt("").unwrap();
    store
        .add_recipients(None, std::slice::from_ref(&carol_recipient))
        .unwrap();
    store.remove_recipients(None, &[carol_recipient]).unwrap();
    store.reencrypt("").unwrap();
    assert_eq!(read(&bob_store, "token"), b"token");
}

#[test]
fn a_store_without_a_manifest_reads_with_a_warning_and_accept_creates_one() {
    let fixture = Fixture::new();
    let store = fixture.store();
    store.set("a", &value(b"1")).unwrap();
    let (result, logs) = hushbox_testkit::capture_logs(|| store.get("a"));
    assert_eq!(result.unwrap().expose(), b"1");
    assert!(logs.contains("no integrity manifest"), "{logs}");
    assert!(!store.verify().unwrap().problems.is_empty());
    let report = store.accept(&[]).unwrap();
    assert!(report.created);
    assert_eq!(report.added, ["a"]);
    assert!(store.verify().unwrap().problems.is_empty());
    // Protected from now on.
    age_encrypt(
        &fixture.store.join(RECIPIENTS_FILE),
        false,
        &fixture.secret_file("a"),
        b"evil",
    );
    refused(&store, "a");
}

#[test]
fn rename_moves_or_reencrypts_and_keeps_the_manifest_right() {
    let (fixture, store) = seeded();
    let ops_identity = fixture.dir.path().join("ops.txt");
    let ops_recipient = new_identity_file(&ops_identity);
    store.init(&[ops_recipient], Some("ops")).unwrap();
    let bytes = fs::read(fixture.secret_file("token")).unwrap();
    assert!(!store.rename("token", "prod/token", false).unwrap());
    assert_eq!(fs::read(fixture.secret_file("prod/token")).unwrap(), bytes);
    assert_eq!(read(&store, "prod/token"), b"token");
    assert!(store.rename("prod/token", "prod/db", false).is_err());
    // Into a subtree with other recipients: re-encrypted for them.
    assert!(store.rename("prod/token", "ops/token", false).unwrap());
    let ops = fixture.store_as(&ops_identity, "ops-state");
    assert_eq!(read(&ops, "ops/token"), b"token");
    assert!(store.verify().unwrap().problems.is_empty());
}

#[test]
fn set_many_writes_nothing_when_a_name_exists() {
    let (fixture, store) = seeded();
    let a = value(b"a");
    let db = value(b"new db");
    let error = store
        .set_many(
            &[("fresh".to_owned(), &a), ("prod/db".to_owned(), &db)],
            false,
        )
        .unwrap_err();
    assert!(error.to_string().contains("prod/db"), "{error}");
    assert!(!fixture.secret_file("fresh").exists());
    assert_eq!(read(&store, "prod/db"), b"db-password");
}

#[tokio::test]
async fn conformance_on_a_sealed_store() {
    let fixture = Fixture::sealed();
    let backend = fixture.backend();
    hushbox_testkit::run_all(&backend, &hushbox_testkit::PutSeeder(&backend)).await;
    assert!(fixture.store().verify().unwrap().problems.is_empty());
}

#[tokio::test]
async fn the_backend_reports_integrity_failures_with_the_reference() {
    let (fixture, _) = seeded();
    age_encrypt(
        &fixture.store.join(RECIPIENTS_FILE),
        false,
        &fixture.secret_file("token"),
        b"evil",
    );
    let backend = fixture.backend();
    let results = backend
        .fetch_many(&[reference("prod/db"), reference("token")])
        .await;
    assert_eq!(results[0].as_ref().unwrap().value.expose(), b"db-password");
    let error = results[1].as_ref().unwrap_err();
    assert_eq!(error.kind(), ErrorKind::MalformedPayload);
    assert!(error.to_string().starts_with("age://token: "), "{error}");
}

#[tokio::test]
async fn fetch_many_keeps_order_across_threads() {
    let fixture = Fixture::sealed();
    let store = fixture.store();
    let values: Vec<hushbox_core::SecretValue> =
        (0..60).map(|i| value(format!("v{i}").as_bytes())).collect();
    let entries: Vec<(String, &hushbox_core::SecretValue)> = values
        .iter()
        .enumerate()
        .map(|(i, v)| (format!("s/{i:02}"), v))
        .collect();
    store.set_many(&entries, false).unwrap();
    // Reversed, with a missing one and an unsafe one in the middle.
    let mut locations: Vec<hushbox_core::SecretRef> = (0..60)
        .rev()
        .map(|i| reference(&format!("s/{i:02}")))
        .collect();
    locations.insert(30, reference("s/missing"));
    locations.insert(10, reference("s/..hidden/x"));
    let results = fixture.backend().fetch_many(&locations).await;
    assert_eq!(results.len(), 62);
    for (location, result) in locations.iter().zip(&results) {
        match location.path() {
            "s/missing" => assert_eq!(result.as_ref().unwrap_err().kind(), ErrorKind::NotFound),
            "s/..hidden/x" => assert_eq!(result.as_ref().unwrap_err().kind(), ErrorKind::Config),
            path => {
                let index: usize = path[2..].parse().unwrap();
                let document = result.as_ref().unwrap();
                assert_eq!(document.value.expose(), format!("v{index}").as_bytes());
                assert_eq!(document.version.as_ref().unwrap().len(), 12);
            }
        }
    }
}
