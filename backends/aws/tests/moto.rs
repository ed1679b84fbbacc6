//! The aws backend against a real Secrets Manager API: `moto_server`, one
//! per test, reached through `AWS_ENDPOINT_URL` in the backend's
//! environment snapshot. Fixtures go in through the SDK, not the backend.
//!
//! `#[tokio::test]` is a current-thread runtime, which the canary test's
//! log capture needs.

mod support;

use std::path::Path;
use std::sync::Arc;

use hushbox_aws::{AwsBackend, AwsConfig, VersionCheck};
use hushbox_core::{
    Backend, BackendContext, Environment, ErrorKind, Registry, Result, SecretRef, toml,
};
use support::Moto;

/// The backend as the binary builds it: through the registry, from
/// settings and an environment snapshot.
fn backend(env: &Environment, settings: &str) -> Arc<dyn Backend> {
    let mut registry = Registry::new();
    hushbox_aws::register(&mut registry);
    let context = BackendContext {
        name: "aws",
        base_dir: Path::new("/"),
        env,
    };
    registry
        .build("aws", &context, toml::from_str(settings).unwrap())
        .unwrap()
}

fn reference(text: &str) -> SecretRef {
    text.parse().unwrap()
}

/// Fetches `reference` and selects its field, as the resolver does.
async fn get(backend: &dyn Backend, reference_text: &str) -> Result<Vec<u8>> {
    let reference = reference(reference_text);
    let document = backend.fetch(&reference.location()).await?;
    Ok(document.select(&reference)?.expose().to_vec())
}

fn unique(name: &str) -> String {
    format!("{}/{name}", hushbox_testkit::random_prefix())
}

/// The conformance suite, every test the backend's capabilities select,
/// under a fresh prefix: [`hushbox_testkit::run_all`] but for one case.
///
/// Secrets Manager cannot store an empty value (`CreateSecret` and
/// `PutSecretValue` take a non-empty `SecretString` or `SecretBinary`; moto
/// behaves the same), so `values_round_trip`'s `empty` case cannot be
/// seeded. [`values_round_trip_but_empty`] runs its other cases instead.
async fn conformance_suite(backend: &dyn Backend, seeder: &support::SdkSeeder) {
    use hushbox_testkit::*;
    let prefix = random_prefix();
    let prefix = prefix.as_str();
    missing_path_is_not_found(backend, seeder, prefix).await;
    values_round_trip_but_empty(backend, seeder, prefix).await;
    field_extraction(backend, seeder, prefix).await;
    missing_field_is_not_found(backend, seeder, prefix).await;
    malformed_payload(backend, seeder, prefix).await;
    concurrent_fetches(backend, seeder, prefix).await;
    fetch_many_keeps_order_and_errors(backend, seeder, prefix).await;
    unsupported_operations_say_so(backend, seeder, prefix).await;
    canary_never_leaks(backend, seeder, prefix).await;
}

/// `values_round_trip` without its `empty` case: binary, non-UTF-8,
/// whitespace-edged and 64 KiB (Secrets Manager's largest) values come back
/// byte for byte, through `fetch`, `fetch_many` and `select`.
async fn values_round_trip_but_empty(
    backend: &dyn Backend,
    seeder: &support::SdkSeeder,
    prefix: &str,
) {
    let mut large = vec![0u8; 64 * 1024];
    for (index, byte) in large.iter_mut().enumerate() {
        *byte = (index * 7 % 251) as u8;
    }
    let cases: [(&str, Vec<u8>); 4] = [
        ("binary-0-255", (0..=255).collect()),
        (
            "non-utf8",
            vec![0xff, 0xfe, 0x00, 0xc3, 0x28, 0xa0, 0xa1, 0xed, 0xa0, 0x80],
        ),
        ("whitespace", b"  padded value \t\r\n".to_vec()),
        ("64KiB", large),
    ];
    let mut locations = Vec::new();
    for (name, bytes) in &cases {
        let path = format!("{prefix}/values_round_trip/{name}");
        seeder.put(&path, bytes).await.unwrap();
        let location = reference(&format!("aws://{path}"));
        let document = backend.fetch(&location).await.unwrap();
        assert!(
            document.value.expose() == bytes.as_slice(),
            "{name} differs"
        );
        assert!(
            document.select(&location).unwrap().expose() == bytes.as_slice(),
            "{name} differs"
        );
        locations.push(location);
    }
    let results = backend.fetch_many(&locations).await;
    for ((name, bytes), result) in cases.iter().zip(results) {
        assert!(
            result.unwrap().value.expose() == bytes.as_slice(),
            "{name} differs in a batch"
        );
    }
}

#[tokio::test]
async fn conformance() {
    let moto = Moto::start();
    let backend = backend(&moto.env(), "");
    conformance_suite(backend.as_ref(), &moto.seeder()).await;
}

#[tokio::test]
async fn conformance_one_get_per_secret() {
    // The same contract holds with batching off, the path that pinned
    // references and refused batches take.
    let moto = Moto::start();
    let backend = AwsBackend::new("aws", AwsConfig::default(), &moto.env())
        .unwrap()
        .without_batching();
    conformance_suite(&backend, &moto.seeder()).await;
}

#[tokio::test]
async fn stages_follow_put_secret_value() {
    let moto = Moto::start();
    let seeder = moto.seeder();
    let backend = backend(&moto.env(), "");
    let name = unique("db");
    let first = seeder.put(&name, b"first").await.unwrap();
    let second = seeder.put(&name, b"second").await.unwrap();
    assert_ne!(first, second);

    let current = backend
        .fetch(&reference(&format!("aws://{name}")))
        .await
        .unwrap();
    assert_eq!(current.value.expose(), b"second");
    assert_eq!(current.version.as_deref(), Some(second.as_str()));
    let explicit = get(
        backend.as_ref(),
        &format!("aws://{name}?version_stage=AWSCURRENT"),
    )
    .await;
    assert_eq!(explicit.unwrap(), b"second");
    let previous = backend
        .fetch(&reference(&format!(
            "aws://{name}?version_stage=AWSPREVIOUS"
        )))
        .await
        .unwrap();
    assert_eq!(previous.value.expose(), b"first");
    assert_eq!(previous.version.as_deref(), Some(first.as_str()));

    let error = get(
        backend.as_ref(),
        &format!("aws://{name}?version_stage=NOSUCHSTAGE"),
    )
    .await
    .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::NotFound);
    assert!(
        error.to_string().contains("version_stage=NOSUCHSTAGE"),
        "{error}"
    );
}

#[tokio::test]
async fn version_id_pins_a_version() {
    let moto = Moto::start();
    let seeder = moto.seeder();
    let backend = backend(&moto.env(), "");
    let name = unique("api");
    let first = seeder.put(&name, b"{\"key\":\"one\"}").await.unwrap();
    seeder.put(&name, b"{\"key\":\"two\"}").await.unwrap();
    seeder.put(&name, b"{\"key\":\"three\"}").await.unwrap();

    // Three versions on: AWSPREVIOUS has moved on, the id has not.
    let pinned = format!("aws://{name}?version_id={first}#key");
    assert_eq!(get(backend.as_ref(), &pinned).await.unwrap(), b"one");
    assert_eq!(
        get(backend.as_ref(), &format!("aws://{name}#key"))
            .await
            .unwrap(),
        b"three"
    );

    let error = get(
        backend.as_ref(),
        &format!("aws://{name}?version_id=no-such-version"),
    )
    .await
    .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::NotFound, "{error}");
}

#[tokio::test]
async fn json_keys_and_arns_with_colons() {
    let moto = Moto::start();
    let seeder = moto.seeder();
    let backend = backend(&moto.env(), "");
    let name = unique("db");
    seeder
        .put(
            &name,
            br#"{"username":"app","password":"s3cr3t","port":5432,"tls":{"ca":"PEM"}}"#,
        )
        .await
        .unwrap();
    let arn = seeder.arn(&name).await;
    assert!(arn.starts_with("arn:aws:secretsmanager:"), "{arn}");

    for base in [format!("aws://{name}"), format!("aws://{arn}")] {
        assert_eq!(
            get(backend.as_ref(), &format!("{base}#password"))
                .await
                .unwrap(),
            b"s3cr3t"
        );
        assert_eq!(
            get(backend.as_ref(), &format!("{base}#port"))
                .await
                .unwrap(),
            b"5432"
        );
        assert_eq!(
            get(backend.as_ref(), &format!("{base}#/tls/ca"))
                .await
                .unwrap(),
            b"PEM"
        );
        let error = get(backend.as_ref(), &format!("{base}#absent"))
            .await
            .unwrap_err();
        assert_eq!(error.kind(), ErrorKind::NotFound);
        assert!(
            error.to_string().starts_with(&format!("{base}#absent")),
            "{error}"
        );
    }

    // The ARN and the name in one batch: both answered.
    let locations = [
        reference(&format!("aws://{name}")),
        reference(&format!("aws://{arn}")),
    ];
    for result in backend.fetch_many(&locations).await {
        assert_eq!(
            result.unwrap().value.expose(),
            br#"{"username":"app","password":"s3cr3t","port":5432,"tls":{"ca":"PEM"}}"#
        );
    }
}

#[tokio::test]
async fn binary_secrets_are_delivered_as_bytes() {
    let moto = Moto::start();
    let seeder = moto.seeder();
    let backend = backend(&moto.env(), "");
    let name = unique("keystore");
    let bytes: Vec<u8> = (0..=255u8).rev().collect();
    seeder.put(&name, &bytes).await.unwrap();
    assert_eq!(
        get(backend.as_ref(), &format!("aws://{name}"))
            .await
            .unwrap(),
        bytes
    );
    let error = get(backend.as_ref(), &format!("aws://{name}#field"))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::MalformedPayload);

    // A JSON document stored as binary still has fields.
    let json = unique("binary-json");
    let mut document = br#"{"k":"v"}"#.to_vec();
    document.push(0xff); // not UTF-8, so the seeder stores it as SecretBinary
    seeder.put(&json, &document).await.unwrap();
    let fetched = get(backend.as_ref(), &format!("aws://{json}"))
        .await
        .unwrap();
    assert_eq!(fetched, document);
}

#[tokio::test]
async fn forty_five_secrets_take_three_batch_calls() {
    let moto = Moto::start();
    let seeder = moto.seeder();
    let backend = backend(&moto.env(), "");
    let prefix = hushbox_testkit::random_prefix();
    let mut locations = Vec::new();
    for index in 0..45 {
        let name = format!("{prefix}/s{index:02}");
        seeder
            .put(&name, format!("value {index}").as_bytes())
            .await
            .unwrap();
        locations.push(reference(&format!("aws://{name}")));
    }

    moto.start_recording();
    let results = backend.fetch_many(&locations).await;
    let calls = moto.recorded_calls();

    assert_eq!(results.len(), 45);
    for (index, result) in results.into_iter().enumerate() {
        let document = result.unwrap_or_else(|error| panic!("#{index}: {error}"));
        assert_eq!(document.value.expose(), format!("value {index}").as_bytes());
        assert!(document.version.is_some());
    }
    assert_eq!(calls.get("BatchGetSecretValue"), Some(&3), "{calls:?}");
    assert_eq!(calls.values().sum::<usize>(), 3, "{calls:?}");
}

#[tokio::test]
async fn a_missing_secret_inside_a_batch_hides_nothing() {
    let moto = Moto::start();
    let seeder = moto.seeder();
    let backend = backend(&moto.env(), "");
    let a = unique("a");
    let b = unique("b");
    let pinned = unique("pinned");
    seeder.put(&a, b"A").await.unwrap();
    seeder.put(&b, b"B").await.unwrap();
    seeder.put(&pinned, b"old").await.unwrap();
    seeder.put(&pinned, b"new").await.unwrap();
    let locations = [
        reference(&format!("aws://{a}")),
        reference(&format!("aws://{}", unique("missing-1"))),
        reference(&format!("aws://{pinned}?version_stage=AWSPREVIOUS")),
        reference(&format!("aws://{b}")),
        reference(&format!("aws://{}", unique("missing-2"))),
        reference(&format!("aws://{a}")),
    ];

    moto.start_recording();
    let results = backend.fetch_many(&locations).await;
    let calls = moto.recorded_calls();

    let expected: [Option<&[u8]>; 6] =
        [Some(b"A"), None, Some(b"old"), Some(b"B"), None, Some(b"A")];
    for ((result, expected), location) in results.into_iter().zip(expected).zip(&locations) {
        match expected {
            Some(bytes) => assert_eq!(result.unwrap().value.expose(), bytes, "{location}"),
            None => {
                let error = result.unwrap_err();
                assert_eq!(error.kind(), ErrorKind::NotFound, "{location}: {error}");
                assert_eq!(error.subject(), Some(location.to_string().as_str()));
                assert!(
                    error.to_string().contains("ResourceNotFoundException"),
                    "{error}"
                );
            }
        }
    }
    // One batch for a, b and the two missing ones (a once), one
    // GetSecretValue for the pinned stage.
    assert_eq!(calls.get("BatchGetSecretValue"), Some(&1), "{calls:?}");
    assert_eq!(calls.get("GetSecretValue"), Some(&1), "{calls:?}");
    assert_eq!(calls.values().sum::<usize>(), 2, "{calls:?}");
}

#[tokio::test]
async fn describe_secret_detects_changes_without_reading_values() {
    let moto = Moto::start();
    let seeder = moto.seeder();
    let backend = AwsBackend::new("aws", AwsConfig::default(), &moto.env()).unwrap();
    let name = unique("rotating");
    let first = seeder.put(&name, b"one").await.unwrap();
    let current = reference(&format!("aws://{name}"));
    let held = backend.fetch(&current).await.unwrap().version.unwrap();
    assert_eq!(held, first);

    moto.start_recording();
    assert_eq!(
        backend.check_version(&current, &held).await.unwrap(),
        VersionCheck::Unchanged
    );
    let second = seeder.put(&name, b"two").await.unwrap();
    assert_eq!(
        backend.check_version(&current, &held).await.unwrap(),
        VersionCheck::Changed {
            version: second.clone()
        }
    );
    let previous = reference(&format!("aws://{name}?version_stage=AWSPREVIOUS"));
    assert_eq!(
        backend.check_version(&previous, &first).await.unwrap(),
        VersionCheck::Unchanged
    );
    // A pinned version never changes, and costs no call.
    let pinned = reference(&format!("aws://{name}?version_id={first}"));
    assert_eq!(
        backend.check_version(&pinned, &first).await.unwrap(),
        VersionCheck::Unchanged
    );
    let calls = moto.recorded_calls();
    assert_eq!(calls.get("DescribeSecret"), Some(&3), "{calls:?}");
    assert_eq!(calls.get("GetSecretValue"), None, "{calls:?}");

    let missing = reference(&format!("aws://{}", unique("missing")));
    let error = backend.check_version(&missing, "v").await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::NotFound);
    let error = backend
        .check_version(
            &reference(&format!("aws://{name}?version_stage=NONE")),
            &held,
        )
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::NotFound);
}

#[tokio::test]
async fn settings_win_over_the_environment() {
    // The environment points nowhere; the manifest's endpoint is moto.
    let moto = Moto::start();
    let name = unique("x");
    moto.seeder().put(&name, b"via settings").await.unwrap();
    let mut env = moto.env();
    env.set("AWS_ENDPOINT_URL", "http://127.0.0.1:9");
    env.set("AWS_REGION", "eu-west-1");
    let settings = format!("endpoint_url = '{}'\nregion = 'us-east-1'", moto.url());
    let backend = backend(&env, &settings);
    assert_eq!(
        get(backend.as_ref(), &format!("aws://{name}"))
            .await
            .unwrap(),
        b"via settings"
    );

    // AWS_ENDPOINT_URL_SECRETS_MANAGER wins over AWS_ENDPOINT_URL.
    env.set("AWS_ENDPOINT_URL_SECRETS_MANAGER", moto.url());
    env.set("AWS_REGION", "us-east-1");
    let backend = self::backend(&env, "");
    assert_eq!(
        get(backend.as_ref(), &format!("aws://{name}"))
            .await
            .unwrap(),
        b"via settings"
    );
}

#[tokio::test]
async fn an_unreachable_endpoint_is_unavailable_and_named() {
    // Nothing listens on a port just found free.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let env = Environment::from_pairs([
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_REGION", "us-east-1"),
    ]);
    let settings = format!("endpoint_url = 'http://127.0.0.1:{port}'\nmax_attempts = 1");
    let backend = backend(&env, &settings);
    let error = get(backend.as_ref(), "aws://anything").await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Unavailable, "{error}");
    assert!(
        error
            .to_string()
            .starts_with("aws://anything: cannot reach Secrets Manager at http://127.0.0.1:"),
        "{error}"
    );
    assert!(error.to_string().contains("refused"), "{error}");
    let results = backend
        .fetch_many(&[reference("aws://a"), reference("aws://b")])
        .await;
    for result in results {
        assert_eq!(result.unwrap_err().kind(), ErrorKind::Unavailable);
    }
}

#[tokio::test]
async fn rejected_credentials_are_unauthenticated() {
    // With INITIAL_NO_AUTH_ACTION_COUNT=0 moto checks every request
    // against its IAM: the fake keys belong to no user.
    let moto = Moto::start_with_env(&[("INITIAL_NO_AUTH_ACTION_COUNT", "0")]);
    let backend = backend(&moto.env(), "");
    let error = get(backend.as_ref(), "aws://anything").await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Unauthenticated, "{error}");
    assert!(
        error.to_string().contains("credentials were rejected"),
        "{error}"
    );
    let results = backend
        .fetch_many(&[reference("aws://a"), reference("aws://b")])
        .await;
    for result in results {
        let error = result.unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Unauthenticated, "{error}");
    }
}

#[tokio::test]
async fn iam_denials_map_per_secret_and_a_refused_batch_falls_back() {
    let moto = Moto::start();
    let seeder = moto.seeder();
    let names: Vec<String> = ["a", "b", "c"].iter().map(|n| unique(n)).collect();
    for name in &names {
        seeder
            .put(name, format!("value of {name}").as_bytes())
            .await
            .unwrap();
    }
    // A policy from before BatchGetSecretValue existed: GetSecretValue only.
    let reader = moto.iam_user(
        "reader",
        Some(r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"secretsmanager:GetSecretValue","Resource":"*"}]}"#),
    );
    let nobody = moto.iam_user("nobody", None);
    moto.enforce_iam();
    let locations: Vec<SecretRef> = names
        .iter()
        .map(|n| reference(&format!("aws://{n}")))
        .collect();

    let backend = backend(&reader, "");
    moto.start_recording();
    let first = backend.fetch_many(&locations).await;
    let second = backend.fetch_many(&locations).await;
    let calls = moto.recorded_calls();
    for (result, name) in first.into_iter().chain(second).zip(names.iter().cycle()) {
        assert_eq!(
            result.unwrap().value.expose(),
            format!("value of {name}").as_bytes()
        );
    }
    // The refused batch is asked once; every secret is then read alone.
    assert_eq!(calls.get("BatchGetSecretValue"), Some(&1), "{calls:?}");
    assert_eq!(calls.get("GetSecretValue"), Some(&6), "{calls:?}");

    let backend = self::backend(&nobody, "");
    let error = backend.fetch(&locations[0]).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::PermissionDenied, "{error}");
    assert!(
        error
            .to_string()
            .starts_with(&format!("{}: access denied", locations[0])),
        "{error}"
    );
    for (result, location) in backend
        .fetch_many(&locations)
        .await
        .into_iter()
        .zip(&locations)
    {
        let error = result.unwrap_err();
        assert_eq!(error.kind(), ErrorKind::PermissionDenied, "{error}");
        assert_eq!(error.subject(), Some(location.to_string().as_str()));
    }
}

/// Set in the child processes of the tests below, to what they check.
const CHILD_MARKER: &str = "HUSHBOX_AWS_TEST_CHILD";

/// Runs `test` again in a child process with a cleared environment plus
/// `env`, where the backend is built from `Environment::from_process()`, as
/// the binary does. aws-config reads the region chain and the credential
/// links after the environment one (profile files, web identity,
/// container, IMDS) from the process environment, which a test must not
/// change. Instance metadata is disabled: without it the last links would
/// wait for 169.254.169.254 to time out. Returns the child's stdout.
fn run_child(test: &str, home: &Path, env: &[(&str, &str)]) -> String {
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env_clear()
        .env(CHILD_MARKER, test)
        .env("HOME", home)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the child failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("child checked"), "{stdout}");
    stdout
}

fn in_child() -> bool {
    std::env::var_os(CHILD_MARKER).is_some()
}

/// Runs `check` on a current-thread runtime, in the child.
fn child(check: impl std::future::Future<Output = ()>) {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(check);
    println!("child checked");
}

#[test]
fn no_credentials_at_all_names_the_chain() {
    if in_child() {
        return child(async {
            let backend = backend(&Environment::from_process(), "");
            let check = |error: hushbox_core::Error, subject: &str| {
                assert_eq!(error.kind(), ErrorKind::Unauthenticated, "{error}");
                let message = error.to_string();
                assert!(
                    message.starts_with(&format!("{subject}: no AWS credentials")),
                    "{message}"
                );
                for link in [
                    "AWS_ACCESS_KEY_ID",
                    "AWS_PROFILE",
                    "AWS_WEB_IDENTITY_TOKEN_FILE",
                    "AWS_CONTAINER_CREDENTIALS",
                    "IMDSv2",
                ] {
                    assert!(message.contains(link), "{link}: {message}");
                }
            };
            let error = get(backend.as_ref(), "aws://app/db#password")
                .await
                .unwrap_err();
            check(error, "aws://app/db");
            let locations = [reference("aws://a"), reference("aws://b")];
            let results = backend.fetch_many(&locations).await;
            for (result, location) in results.into_iter().zip(&locations) {
                check(result.unwrap_err(), &location.to_string());
            }
        });
    }
    let moto = Moto::start();
    let home = tempfile::tempdir().unwrap();
    moto.start_recording();
    run_child(
        "no_credentials_at_all_names_the_chain",
        home.path(),
        &[
            ("AWS_REGION", support::REGION),
            ("AWS_ENDPOINT_URL", &moto.url()),
        ],
    );
    // No credentials, no request.
    let calls = moto.recorded_calls();
    assert!(calls.is_empty(), "{calls:?}");
}

#[test]
fn no_region_anywhere_is_a_configuration_error() {
    if in_child() {
        return child(async {
            let backend = backend(&Environment::from_process(), "");
            let error = get(backend.as_ref(), "aws://app/db").await.unwrap_err();
            assert_eq!(error.kind(), ErrorKind::Config, "{error}");
            assert_eq!(
                error.to_string(),
                "aws://app/db: no AWS region: set `region` in [backends.aws], AWS_REGION, or \
                 `region` in the AWS profile"
            );
            let results = backend
                .fetch_many(&[reference("aws://a"), reference("aws://b")])
                .await;
            for result in results {
                assert_eq!(result.unwrap_err().kind(), ErrorKind::Config);
            }
        });
    }
    let home = tempfile::tempdir().unwrap();
    run_child(
        "no_region_anywhere_is_a_configuration_error",
        home.path(),
        &[
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
        ],
    );
}
