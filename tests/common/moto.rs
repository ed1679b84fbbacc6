//! `moto_server` (PyPI `moto[server]`), a real AWS Secrets Manager
//! endpoint: one per test, on a free loopback port, polled until it
//! answers, killed on drop. Fixtures are created with the service's own JSON
//! API over plain HTTP (moto checks no signature), and calls are counted by
//! moto's request recorder.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::HUSHBOX;

/// A running `moto_server`, killed on drop.
pub struct Moto {
    child: Child,
    /// The loopback port it listens on.
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Moto {
    pub fn start() -> Moto {
        let dir = tempfile::tempdir().unwrap();
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|listener| listener.local_addr())
            .unwrap()
            .port();
        let log = std::fs::File::create(dir.path().join("moto.log")).unwrap();
        let child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .env("MOTO_RECORDER_FILEPATH", dir.path().join("recording.jsonl"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|error| {
                panic!(
                    "cannot start `moto_server` ({error}): these tests need a real Secrets \
                     Manager endpoint; run `pip install 'moto[server]'`"
                )
            });
        let mut moto = Moto {
            child,
            port,
            _dir: dir,
        };
        let started = Instant::now();
        loop {
            if let Ok(Some(status)) = moto.child.try_wait() {
                let log = std::fs::read_to_string(moto._dir.path().join("moto.log"));
                panic!(
                    "`moto_server` exited ({status}) before answering; run `pip install \
                     'moto[server]'` if it lacks its server dependencies. Its output:\n{}",
                    log.unwrap_or_default()
                );
            }
            if matches!(moto.try_http("GET", "/moto-api/", &[], b""), Ok((200, _))) {
                return moto;
            }
            assert!(
                started.elapsed() < Duration::from_secs(90),
                "`moto_server` did not answer"
            );
            // The polling interval, not a guess at readiness.
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn try_http(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> std::io::Result<(u16, Vec<u8>)> {
        let address = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(1))?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        let mut request = format!(
            "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1:{}\r\nContent-Length: {}\r\n",
            self.port,
            body.len()
        );
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        stream.write_all(request.as_bytes())?;
        stream.write_all(body)?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response)?;
        let status = String::from_utf8_lossy(&response)
            .split(' ')
            .nth(1)
            .and_then(|code| code.parse().ok())
            .unwrap_or(0);
        let body_start = response
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map_or(response.len(), |at| at + 4);
        Ok((status, response[body_start..].to_vec()))
    }

    pub fn http(&self, method: &str, path: &str) -> Vec<u8> {
        let (status, body) = self.try_http(method, path, &[], b"").unwrap();
        assert_eq!(status, 200, "{method} {path}");
        body
    }

    /// One Secrets Manager call through its JSON API.
    pub fn call(&self, operation: &str, body: serde_json::Value) {
        let target = format!("secretsmanager.{operation}");
        let headers = [
            ("X-Amz-Target", target.as_str()),
            ("Content-Type", "application/x-amz-json-1.1"),
            // moto picks the service from the credential scope.
            (
                "Authorization",
                "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/secretsmanager/aws4_request, SignedHeaders=host, Signature=0",
            ),
        ];
        let (status, response) = self
            .try_http("POST", "/", &headers, body.to_string().as_bytes())
            .unwrap();
        assert_eq!(
            status,
            200,
            "{operation}: {}",
            String::from_utf8_lossy(&response)
        );
    }

    pub fn create_secret(&self, name: &str, value: &str) {
        self.call(
            "CreateSecret",
            serde_json::json!({ "Name": name, "SecretString": value }),
        );
    }

    pub fn start_recording(&self) {
        self.http("POST", "/moto-api/recorder/reset-recording");
        self.http("POST", "/moto-api/recorder/start-recording");
    }

    /// The operations the server handled since `start_recording`, in order.
    pub fn recorded_operations(&self) -> Vec<String> {
        self.http("POST", "/moto-api/recorder/stop-recording");
        let recording = self.http("GET", "/moto-api/recorder/download-recording");
        String::from_utf8(recording)
            .unwrap()
            .lines()
            .filter(|line| !line.trim().is_empty())
            .map(|line| {
                let entry: serde_json::Value = serde_json::from_str(line).unwrap();
                let headers = entry["headers"].as_object().unwrap();
                headers
                    .iter()
                    .find(|(name, _)| name.eq_ignore_ascii_case("x-amz-target"))
                    .and_then(|(_, value)| value.as_str())
                    .and_then(|target| target.rsplit('.').next())
                    .unwrap_or("?")
                    .to_owned()
            })
            .collect()
    }

    /// `hushbox ARGS` in `dir` with a clean environment: fake keys, the
    /// region and the endpoint, as a user with a local endpoint sets them.
    pub fn hushbox(&self, dir: &Path, args: &[&str]) -> Command {
        let mut command = Command::new(HUSHBOX);
        command
            .args(args)
            .current_dir(dir)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap())
            .env("HOME", dir)
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ENDPOINT_URL", self.url())
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("HUSHBOX_LOG", "trace");
        command
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
