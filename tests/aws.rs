//! The `hushbox` binary with AWS Secrets Manager, as a new user runs it:
//! `moto_server` as the endpoint (one per test, on a free loopback port,
//! polled until it answers, killed on drop), reached through
//! `AWS_ENDPOINT_URL` and fake keys in hushbox's environment.
//!
//! Fixtures are created with the service's own JSON API over plain HTTP
//! (moto checks no signature), and calls are counted by moto's request
//! recorder. Without `moto_server` the tests fail and say what to install.

mod common;

use common::moto::Moto;
use common::{stderr, stdout, tmpfs_dir};

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn output(mut command: Command) -> Output {
    command.stdin(Stdio::null()).output().unwrap()
}

#[test]
fn inject_delivers_aws_secrets_to_tmpfs_in_one_batch() {
    let moto = Moto::start();
    let canary = format!("hushbox-canary-{:x}", rand::random::<u64>());
    moto.create_secret("prod/api", &format!(r#"{{"key":"{canary}","user":"svc"}}"#));
    moto.create_secret("prod/db", "db-password-1");
    let project = tempfile::tempdir().unwrap();
    std::fs::write(
        project.path().join("hushbox.toml"),
        "version = 1\n\
         [backends.aws]\nkind = \"aws\"\nregion = \"us-east-1\"\n\
         [secrets.api_key]\nref = \"aws://prod/api#key\"\n\
         [secrets.api_user]\nref = \"aws://prod/api#user\"\n\
         [secrets.db_password]\nref = \"aws://prod/db\"\n",
    )
    .unwrap();
    let out = tmpfs_dir();

    moto.start_recording();
    let result = output(moto.hushbox(
        project.path(),
        &["inject", "--dir", out.path().to_str().unwrap()],
    ));
    let operations = moto.recorded_operations();

    assert!(result.status.success(), "{}", stderr(&result));
    assert_eq!(
        std::fs::read(out.path().join("api_key")).unwrap(),
        canary.as_bytes()
    );
    assert_eq!(std::fs::read(out.path().join("api_user")).unwrap(), b"svc");
    assert_eq!(
        std::fs::read(out.path().join("db_password")).unwrap(),
        b"db-password-1"
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(out.path().join("db_password"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o077, 0, "readable by others: {mode:o}");
    // Two secrets (three references), one call.
    assert_eq!(operations, ["BatchGetSecretValue"]);
    // Traced at TRACE level, and still no value in the logs.
    let logs = stderr(&result);
    assert!(!logs.contains(&canary), "the value leaked into stderr");
    assert!(
        !logs.contains("db-password-1"),
        "the value leaked into stderr"
    );
}

#[test]
fn run_resolves_aws_environment_references_without_a_manifest() {
    let moto = Moto::start();
    moto.create_secret("prod/api", r#"{"key":"api-key-1"}"#);
    moto.create_secret("prod/tls", "-----BEGIN CERTIFICATE-----\nMIIB\n");
    moto.call(
        "PutSecretValue",
        serde_json::json!({ "SecretId": "prod/api", "SecretString": r#"{"key":"api-key-2"}"# }),
    );
    let project = tempfile::tempdir().unwrap();
    let mut command = moto.hushbox(
        project.path(),
        &[
            "run",
            // Without a manifest, the variables to resolve are named.
            "--resolve-env",
            "API",
            "--resolve-env",
            "OLD_API",
            "--resolve-env",
            "TLS_FILE",
            "--",
            "sh",
            "-c",
            "echo \"api=$API\"; echo \"old=$OLD_API\"; echo \"path=$TLS_FILE\"; cat \"$TLS_FILE\"",
        ],
    );
    command
        .env("API", "aws://prod/api#key")
        .env("OLD_API", "aws://prod/api?version_stage=AWSPREVIOUS#key")
        .env("TLS_FILE", "aws://prod/tls");
    let result = output(command);
    let out = stdout(&result);
    assert!(result.status.success(), "{out}\n{}", stderr(&result));
    assert!(out.contains("api=api-key-2\n"), "{out}");
    assert!(out.contains("old=api-key-1\n"), "{out}");
    assert!(out.contains("-----BEGIN CERTIFICATE-----\nMIIB\n"), "{out}");
    let path = out
        .lines()
        .find_map(|line| line.strip_prefix("path="))
        .unwrap();
    assert!(!Path::new(path).exists(), "{path} outlived the run");
}

#[test]
fn missing_secrets_and_missing_credentials_fail_closed_with_their_codes() {
    let moto = Moto::start();
    moto.create_secret("prod/present", "here");
    let project = tempfile::tempdir().unwrap();
    let out = tmpfs_dir();
    std::fs::write(
        project.path().join("hushbox.toml"),
        "version = 1\n\
         [secrets.present]\nref = \"aws://prod/present\"\n\
         [secrets.absent]\nref = \"aws://prod/absent\"\n",
    )
    .unwrap();
    let result = output(moto.hushbox(
        project.path(),
        &["inject", "--dir", out.path().to_str().unwrap()],
    ));
    assert_eq!(result.status.code(), Some(66), "{}", stderr(&result));
    assert!(
        stderr(&result).contains("aws://prod/absent: no such secret"),
        "{}",
        stderr(&result)
    );
    assert!(
        std::fs::read_dir(out.path()).unwrap().next().is_none(),
        "a partial generation was written"
    );

    let mut command = moto.hushbox(project.path(), &["get", "aws://prod/present"]);
    command
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY");
    let result = output(command);
    assert_eq!(result.status.code(), Some(77), "{}", stderr(&result));
    let message = stderr(&result);
    assert!(
        message.contains(
            "aws://prod/present: no AWS credentials: the standard AWS credential chain found none"
        ),
        "{message}"
    );
    for link in [
        "AWS_ACCESS_KEY_ID",
        "AWS_PROFILE",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "IMDSv2",
    ] {
        assert!(message.contains(link), "{link}: {message}");
    }
}

/// `inject --watch` over 100 secrets: one round costs at most five calls
/// (batches of twenty), and a `PutSecretValue` lands within the interval.
#[test]
fn watch_picks_up_put_secret_value_with_five_calls_a_round_for_100_secrets() {
    use std::io::BufRead;
    let moto = Moto::start();
    let mut manifest = String::from("version = 1\n[watch]\ninterval = \"2s\"\n");
    for index in 0..100 {
        moto.create_secret(&format!("app/s{index:03}"), &format!("value-{index}"));
        manifest.push_str(&format!(
            "[secrets.s{index:03}]\nref = \"aws://app/s{index:03}\"\n"
        ));
    }
    let dir = tempfile::tempdir().unwrap();
    let out = tmpfs_dir();
    manifest.push_str(&format!("[output]\ndir = \"{}\"\n", out.path().display()));
    std::fs::write(dir.path().join("hushbox.toml"), manifest).unwrap();
    let mut child = moto
        .hushbox(dir.path(), &["inject", "--watch"])
        .env("HUSHBOX_LOG", "hushbox=debug")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (lines, received) = std::sync::mpsc::channel();
    let pipe = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(pipe).lines().map_while(Result::ok) {
            let _ = lines.send(line);
        }
    });
    let wait_for = |wanted: &str| {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut seen = Vec::new();
        while let Ok(line) =
            received.recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            if line.contains(wanted) {
                return;
            }
            seen.push(line);
        }
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
        panic!("no {wanted:?}: {seen:#?}");
    };
    wait_for("watching 100 secrets");
    moto.start_recording();
    wait_for("round: nothing changed");
    let calls = moto.recorded_operations();
    assert!(
        !calls.is_empty() && calls.len() <= 5,
        "one round of 100 secrets: {calls:?}"
    );

    moto.call(
        "PutSecretValue",
        serde_json::json!({ "SecretId": "app/s042", "SecretString": "rotated-42" }),
    );
    let changed = Instant::now();
    while std::fs::read_to_string(out.path().join("s042")).unwrap() != "rotated-42" {
        assert!(changed.elapsed() < Duration::from_secs(6), "not picked up");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(changed.elapsed() < Duration::from_millis(2000 + 1000));
    assert_eq!(
        std::fs::read_to_string(out.path().join("s041")).unwrap(),
        "value-41"
    );
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    assert!(child.wait().unwrap().success());
}
