//! A real Secrets Manager endpoint for the tests: `moto_server` on a free
//! loopback port, one per test, killed when the test ends.
//!
//! Readiness is polled over HTTP, never assumed after a sleep. A missing
//! `moto_server` fails the test with what to install: tests never skip.
//!
//! Calls are counted by the server itself, with moto's request recorder
//! (`/moto-api/recorder/*`): it appends every request it handles, headers
//! included, to a file, and the `X-Amz-Target` header names the operation.
//! That is the count the server saw, retries included, with no proxy in the
//! way. The recorder is per server, which is one more reason for one server
//! per test.

#![allow(dead_code)] // Each test file uses a different part of the support.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_secretsmanager::primitives::Blob;
use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
use hushbox_core::{Environment, Error, Result, async_trait};
use hushbox_testkit::Seeder;

/// What to run when `moto_server` is missing or broken.
pub const INSTALL_HINT: &str = "pip install 'moto[server]'";

/// The region every test uses; moto accepts any.
pub const REGION: &str = "us-east-1";

/// How long moto gets to start. It takes about 1.5 s on an idle machine;
/// two cores busy compiling make it much slower.
const STARTUP_DEADLINE: Duration = Duration::from_secs(90);

/// A running `moto_server`, killed on drop.
pub struct Moto {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Moto {
    /// Starts `moto_server` with no extra environment.
    pub fn start() -> Moto {
        Self::start_with_env(&[])
    }

    /// Starts `moto_server` on a free loopback port, with `env` added to its
    /// environment (for moto's own switches), and waits until it answers.
    pub fn start_with_env(env: &[(&str, &str)]) -> Moto {
        // A port found free may be taken before moto binds it; then moto
        // exits and another port is tried.
        let mut last_log = String::new();
        for _ in 0..3 {
            let dir = tempfile::tempdir().expect("a temporary directory for moto");
            let port = free_port();
            let log_path = dir.path().join("moto.log");
            let log = std::fs::File::create(&log_path).expect("moto's log file");
            let spawned = Command::new("moto_server")
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .env("MOTO_RECORDER_FILEPATH", dir.path().join("recording.jsonl"))
                .envs(env.iter().copied())
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("moto's log file"))
                .stderr(log)
                .spawn();
            let child = match spawned {
                Ok(child) => child,
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => panic!(
                    "`moto_server` is not on PATH. These tests need a real Secrets Manager \
                     endpoint: run `{INSTALL_HINT}` (scripts/test does it for you)"
                ),
                Err(error) => panic!("cannot start `moto_server` ({error}); run `{INSTALL_HINT}`"),
            };
            let mut moto = Moto { child, port, dir };
            if moto.wait_until_ready().is_ok() {
                return moto;
            }
            last_log = std::fs::read_to_string(&log_path).unwrap_or_default();
            if !last_log.contains("Address already in use") {
                panic!(
                    "`moto_server` exited before answering; if it cannot import its server \
                     dependencies (flask, flask_cors), run `{INSTALL_HINT}`. Its output:\n{last_log}"
                );
            }
        }
        panic!("`moto_server` found no free port in three tries. Its output:\n{last_log}");
    }

    /// Polls `GET /moto-api/` until it answers 200. `Err` when moto exited.
    fn wait_until_ready(&mut self) -> Result<(), ()> {
        let started = Instant::now();
        loop {
            if let Ok(Some(_)) = self.child.try_wait() {
                return Err(());
            }
            if let Ok((200, _)) = self.try_http("GET", "/moto-api/", b"") {
                return Ok(());
            }
            if started.elapsed() > STARTUP_DEADLINE {
                panic!(
                    "`moto_server` did not answer on port {} within {STARTUP_DEADLINE:?}",
                    self.port
                );
            }
            // The polling interval, not a guess at readiness.
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The environment a backend under test reads: fake keys (moto checks
    /// no signature), the region, and the endpoint through
    /// `AWS_ENDPOINT_URL`, as a user would set them. Nothing of it is put in
    /// the test process's own environment.
    pub fn env(&self) -> Environment {
        Environment::from_pairs([
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
            ("AWS_REGION", REGION),
            ("AWS_ENDPOINT_URL", self.url().as_str()),
            ("AWS_MAX_ATTEMPTS", "2"),
        ])
    }

    /// A plain SDK client for fixtures, separate from the backend under test.
    pub fn client(&self) -> Client {
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(Provider::Rustls(CryptoMode::Ring))
            .build_https();
        let config = aws_sdk_secretsmanager::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(REGION))
            .endpoint_url(self.url())
            .credentials_provider(Credentials::new("testing", "testing", None, None, "test"))
            .http_client(http)
            .build();
        Client::from_conf(config)
    }

    /// A seeder that writes through the SDK, bypassing the backend.
    pub fn seeder(&self) -> SdkSeeder {
        SdkSeeder(self.client())
    }

    /// One HTTP/1.0 request to moto; the status and the body.
    pub fn http(&self, method: &str, path: &str, body: &[u8]) -> (u16, Vec<u8>) {
        self.try_http(method, path, body)
            .unwrap_or_else(|error| panic!("{method} {path} to moto failed: {error}"))
    }

    fn try_http(&self, method: &str, path: &str, body: &[u8]) -> std::io::Result<(u16, Vec<u8>)> {
        let address = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(1))?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        write!(
            stream,
            "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1:{}\r\nContent-Length: {}\r\n\r\n",
            self.port,
            body.len()
        )?;
        stream.write_all(body)?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response)?;
        let text = String::from_utf8_lossy(&response);
        let status = text
            .split(' ')
            .nth(1)
            .and_then(|code| code.parse().ok())
            .ok_or_else(|| std::io::Error::other("no HTTP status line"))?;
        let body_start = response
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map_or(response.len(), |at| at + 4);
        Ok((status, response[body_start..].to_vec()))
    }

    /// Clears the recording and starts recording every request.
    pub fn start_recording(&self) {
        assert_eq!(
            self.http("POST", "/moto-api/recorder/reset-recording", b"")
                .0,
            200
        );
        assert_eq!(
            self.http("POST", "/moto-api/recorder/start-recording", b"")
                .0,
            200
        );
    }

    /// Stops recording and counts the recorded requests by operation
    /// (`BatchGetSecretValue`, `GetSecretValue`, …).
    pub fn recorded_calls(&self) -> BTreeMap<String, usize> {
        assert_eq!(
            self.http("POST", "/moto-api/recorder/stop-recording", b"")
                .0,
            200
        );
        let (status, body) = self.http("GET", "/moto-api/recorder/download-recording", b"");
        assert_eq!(status, 200);
        let mut calls = BTreeMap::new();
        for line in String::from_utf8(body)
            .unwrap()
            .lines()
            .filter(|l| !l.trim().is_empty())
        {
            let entry: serde_json::Value = serde_json::from_str(line).unwrap();
            let target = entry["headers"]
                .as_object()
                .and_then(|headers| {
                    headers
                        .iter()
                        .find(|(name, _)| name.eq_ignore_ascii_case("x-amz-target"))
                })
                .and_then(|(_, value)| value.as_str())
                .unwrap_or("(no X-Amz-Target)");
            let operation = target.rsplit('.').next().unwrap_or(target).to_owned();
            *calls.entry(operation).or_default() += 1;
        }
        calls
    }

    /// One IAM query-protocol call (form-encoded, unsigned: moto checks no
    /// signature until [`Moto::enforce_iam`]); the XML answer.
    pub fn iam(&self, params: &[(&str, &str)]) -> String {
        let mut body = String::from("Version=2010-05-08");
        for (name, value) in params {
            body.push_str(&format!("&{name}={}", percent_encode(value)));
        }
        let request = format!(
            "POST / HTTP/1.0\r\nHost: 127.0.0.1:{}\r\nContent-Type: application/x-www-form-urlencoded\r\n\
             Authorization: AWS4-HMAC-SHA256 Credential=testing/20260101/{REGION}/iam/aws4_request, SignedHeaders=host, Signature=0\r\n\
             Content-Length: {}\r\n\r\n{body}",
            self.port,
            body.len()
        );
        let address = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(1)).unwrap();
        stream.write_all(request.as_bytes()).unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        assert!(
            response.starts_with("HTTP/1.1 200") || response.starts_with("HTTP/1.0 200"),
            "{response}"
        );
        response
    }

    /// Creates the IAM user `name` with an inline policy (if any) and an
    /// access key; returns the environment a backend authenticates with as
    /// that user.
    pub fn iam_user(&self, name: &str, policy: Option<&str>) -> Environment {
        self.iam(&[("Action", "CreateUser"), ("UserName", name)]);
        if let Some(policy) = policy {
            self.iam(&[
                ("Action", "PutUserPolicy"),
                ("UserName", name),
                ("PolicyName", "hushbox-test"),
                ("PolicyDocument", policy),
            ]);
        }
        let answer = self.iam(&[("Action", "CreateAccessKey"), ("UserName", name)]);
        let element = |tag: &str| {
            let start = answer.find(&format!("<{tag}>")).unwrap() + tag.len() + 2;
            let end = answer[start..].find(&format!("</{tag}>")).unwrap();
            answer[start..start + end].to_owned()
        };
        let mut env = self.env();
        env.set("AWS_ACCESS_KEY_ID", element("AccessKeyId"));
        env.set("AWS_SECRET_ACCESS_KEY", element("SecretAccessKey"));
        env
    }

    /// From now on moto authenticates and authorizes every request against
    /// its IAM users and policies (`/moto-api/reset-auth`).
    pub fn enforce_iam(&self) {
        assert_eq!(self.http("POST", "/moto-api/reset-auth", b"0").0, 200);
    }

    /// The directory moto's log and recording live in.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .expect("a free loopback port")
        .port()
}

/// Writes fixtures with `CreateSecret`, or `PutSecretValue` when the secret
/// exists: UTF-8 bytes as `SecretString`, anything else as `SecretBinary`.
pub struct SdkSeeder(pub Client);

impl SdkSeeder {
    /// Stores `bytes` under `name` and returns the new version's id.
    pub async fn put(&self, name: &str, bytes: &[u8]) -> Result<String> {
        let (string, binary) = match std::str::from_utf8(bytes) {
            Ok(text) => (Some(text.to_owned()), None),
            Err(_) => (None, Some(Blob::new(bytes.to_vec()))),
        };
        let failed = |operation: &str, error: &dyn std::fmt::Debug| {
            Error::config(format!("{operation} of the fixture failed: {error:?}"))
                .with_subject(name)
        };
        let created = self
            .0
            .create_secret()
            .name(name)
            .set_secret_string(string.clone())
            .set_secret_binary(binary.clone())
            .send()
            .await;
        match created {
            Ok(output) => Ok(output.version_id.unwrap_or_default()),
            Err(error)
                if error
                    .as_service_error()
                    .is_some_and(|e| e.is_resource_exists_exception()) =>
            {
                let output = self
                    .0
                    .put_secret_value()
                    .secret_id(name)
                    .set_secret_string(string)
                    .set_secret_binary(binary)
                    .send()
                    .await
                    .map_err(|error| failed("PutSecretValue", &error.into_service_error()))?;
                Ok(output.version_id.unwrap_or_default())
            }
            Err(error) => Err(failed("CreateSecret", &error.into_service_error())),
        }
    }

    /// The ARN of the secret `name`.
    pub async fn arn(&self, name: &str) -> String {
        self.0
            .describe_secret()
            .secret_id(name)
            .send()
            .await
            .expect("DescribeSecret of a fixture")
            .arn
            .expect("an ARN")
    }
}

#[async_trait]
impl Seeder for SdkSeeder {
    async fn seed(&self, path: &str, bytes: &[u8]) -> Result<()> {
        self.put(path, bytes).await.map(drop)
    }
}
