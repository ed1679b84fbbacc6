//! `--watch` against a real OpenBao (`bao server -dev`): a KV version 2
//! update is found from the metadata's `current_version` (the data is read
//! only when it moved), a sealed server keeps the last good files while
//! `health` turns unhealthy and everything recovers without a restart, and
//! a PKI certificate with a 30 s TTL is re-issued before it expires, its
//! certificate and key landing in one generation.

mod common;

#[path = "../backends/vault/tests/common/bao.rs"]
mod bao;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bao::{Bao, ROOT_TOKEN, pem_serial};
use common::{code, stderr, tmpfs_dir};

struct Project {
    dir: tempfile::TempDir,
    out: tempfile::TempDir,
}

impl Project {
    fn new(bao: &Bao, rest: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let out = tmpfs_dir();
        std::fs::write(
            dir.path().join("hushbox.toml"),
            format!(
                "version = 1\n[backends.vault]\nkind = \"vault\"\naddress = \"{}\"\n\
                 [output]\ndir = \"{}\"\n{rest}",
                bao.address,
                out.path().join("secrets").display()
            ),
        )
        .unwrap();
        Self { dir, out }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = common::hushbox_command(self.dir.path(), self.dir.path(), args);
        command.env("VAULT_TOKEN", ROOT_TOKEN);
        command
    }

    fn path_of(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn file(&self, name: &str) -> PathBuf {
        self.out.path().join("secrets").join(name)
    }

    fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.file(name)).unwrap_or_default()
    }

    fn health(&self) -> (i32, String) {
        let output = self.command(&["health"]).output().unwrap();
        (code(&output), stderr(&output))
    }

    /// `hushbox ARGS` with stderr collected.
    fn start(&self, args: &[&str]) -> Running {
        let mut child = self
            .command(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let pipe = child.stderr.take().unwrap();
        let sink = Arc::clone(&lines);
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        Running { child, lines }
    }
}

struct Running {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Running {
    fn count(&self, wanted: &str) -> usize {
        let lines = self.lines.lock().unwrap();
        lines.iter().filter(|line| line.contains(wanted)).count()
    }

    fn text(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }

    fn stop(mut self) -> i32 {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let status = self.child.wait().unwrap();
        status.code().unwrap_or(-1)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_until(what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !condition() {
        assert!(
            started.elapsed() < timeout,
            "{what}: not within {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    started.elapsed()
}

#[test]
fn kv2_changes_are_found_from_metadata_and_a_sealed_server_keeps_the_last_good_files() {
    let bao = Bao::start();
    bao.kv_put("secret", "app/db", r#"{"password":"first-password"}"#);
    let project = Project::new(
        &bao,
        "[watch]\ninterval = \"300ms\"\nmax_stale = \"2s\"\n\
         [secrets.db_password]\nref = \"vault://secret/app/db#password\"\n",
    );
    let running = project.start(&["-vv", "inject", "--watch"]);
    wait_until("the first generation", Duration::from_secs(10), || {
        project.read("db_password") == "first-password"
    });
    // The first round reads the data once more, to pair the metadata's
    // version with what is on disk; after that, unchanged rounds read the
    // metadata only.
    std::thread::sleep(Duration::from_millis(1000));
    let reads = running.count(": fetched version=");
    assert_eq!(reads, 2, "{}", running.text());
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        running.count(": fetched version="),
        reads,
        "{}",
        running.text()
    );
    assert!(
        running.count("secret/metadata/app/db") >= 4,
        "{}",
        running.text()
    );

    bao.kv_put("secret", "app/db", r#"{"password":"second-password"}"#);
    let latency = wait_until("the update on disk", Duration::from_secs(5), || {
        project.read("db_password") == "second-password"
    });
    assert!(latency < Duration::from_millis(300 + 500), "{latency:?}");
    assert_eq!(
        running.count(": fetched version="),
        reads + 1,
        "{}",
        running.text()
    );
    wait_until("healthy", Duration::from_secs(5), || {
        project.health().0 == 0
    });

    // An outage longer than two retry intervals.
    bao.api("PUT", "sys/seal", None);
    let unhealthy = wait_until("unhealthy", Duration::from_secs(10), || {
        project.health().0 == 1
    });
    assert!(unhealthy >= Duration::from_secs(1), "{unhealthy:?}");
    assert!(project.health().1.contains("`db_password` is stale"));
    assert_eq!(
        project.read("db_password"),
        "second-password",
        "last good kept"
    );
    // The client's own retries come first; then one warning for the whole
    // outage, however many rounds fail.
    wait_until("the failure logged", Duration::from_secs(30), || {
        running.count("cannot refresh") > 0
    });
    std::thread::sleep(Duration::from_secs(3));

    // Back: recovered without a restart, and a change made meanwhile lands.
    let unseal = format!("{{\"key\":\"{}\"}}", bao.unseal_key);
    bao.api("PUT", "sys/unseal", Some(&unseal));
    bao.kv_put("secret", "app/db", r#"{"password":"third-password"}"#);
    wait_until(
        "the change after the outage",
        Duration::from_secs(40),
        || project.read("db_password") == "third-password",
    );
    wait_until("healthy again", Duration::from_secs(10), || {
        project.health().0 == 0
    });
    assert_eq!(
        running.count("fetching works again"),
        1,
        "{}",
        running.text()
    );
    assert_eq!(running.count("cannot refresh"), 1, "{}", running.text());
    assert_eq!(running.stop(), 0);
}

#[test]
fn a_30s_certificate_is_reissued_before_expiry_with_its_key() {
    let bao = Bao::start();
    bao.mount_pki();
    let issue = "vault://pki/issue/web?common_name=app.internal&ttl=30s";
    let project = Project::new(
        &bao,
        &format!(
            "[watch]\ninterval = \"1h\"\n\
             [secrets.\"tls.crt\"]\nref = \"{issue}#certificate\"\n\
             [secrets.\"tls.key\"]\nref = \"{issue}#private_key\"\n\
             [secrets.serial]\nref = \"{issue}#serial_number\"\n"
        ),
    );
    let running = project.start(&["inject", "--watch"]);
    wait_until("the first certificate", Duration::from_secs(10), || {
        !project.read("serial").is_empty()
    });
    let (first_serial, first_key) = (project.read("serial"), project.read("tls.key"));
    let issued = Instant::now();
    wait_until("a new certificate", Duration::from_secs(40), || {
        let serial = project.read("serial");
        !serial.is_empty() && serial != first_serial
    });
    let renewed_after = issued.elapsed();
    assert!(
        renewed_after >= Duration::from_secs(15) && renewed_after < Duration::from_secs(28),
        "re-issued at two thirds of 30 s, before expiry: {renewed_after:?}"
    );
    // One generation: the certificate, its serial and its key together.
    let data = std::fs::read_link(project.file("..data")).unwrap();
    let generation = project.out.path().join("secrets").join(data);
    let read = |name: &str| std::fs::read_to_string(generation.join(name)).unwrap();
    assert_eq!(pem_serial(&read("tls.crt")), read("serial"));
    assert_ne!(read("tls.key"), first_key);
    assert_eq!(running.stop(), 0);
}

/// A database credential (6 s TTL, 15 s max) is renewed by the keep-alive
/// past its first TTL, replaced by new credentials before its max TTL, the
/// program restarted with them, and the old lease revoked (its role gone).
#[test]
fn a_database_credential_at_its_max_ttl_is_replaced_the_program_restarted_and_the_old_lease_revoked()
 {
    let pg = bao::Postgres::start();
    let bao = Bao::start();
    bao.mount_database(&pg, "6s");
    let role = serde_json::json!({
        "db_name": "pg",
        "creation_statements": [
            "CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';"
        ],
        "default_ttl": "6s",
        "max_ttl": "15s",
    });
    bao.api("POST", "database/roles/app", Some(&role.to_string()));
    let project = Project::new(
        &bao,
        "revoke_on_exit = true\n[watch]\ndebounce = \"50ms\"\nrestart_grace = \"2s\"\n\
         on_change = \"restart\"\n\
         [secrets.db_user]\nref = \"vault://database/creds/app#username\"\nenv = \"DB_USER_FILE\"\n\
         [secrets.db_password]\nref = \"vault://database/creds/app#password\"\nenv_value = \"DB_PASSWORD\"\n",
    );
    // revoke_on_exit belongs to the backend section: move it there.
    let manifest = std::fs::read_to_string(project.dir.path().join("hushbox.toml"))
        .unwrap()
        .replace("revoke_on_exit = true\n[watch]", "[watch]")
        .replace(
            "kind = \"vault\"\n",
            "kind = \"vault\"\nrevoke_on_exit = true\n",
        );
    std::fs::write(project.dir.path().join("hushbox.toml"), manifest).unwrap();
    let starts = project.path_of("starts");
    let program = format!(
        "echo \"$(cat \"$DB_USER_FILE\") $DB_PASSWORD\" >> {}; trap 'exit 0' TERM; \
         while true; do sleep 0.05; done",
        starts.display()
    );
    let running = project.start(&["-v", "exec", "--watch", "--", "sh", "-c", &program]);
    let read_starts = || -> Vec<(String, String)> {
        std::fs::read_to_string(&starts)
            .unwrap_or_default()
            .lines()
            .filter_map(|line| line.split_once(' '))
            .map(|(user, password)| (user.to_owned(), password.to_owned()))
            .collect()
    };
    wait_until("the program started", Duration::from_secs(15), || {
        read_starts().len() == 1
    });
    let started = Instant::now();
    let (first_user, first_password) = read_starts()[0].clone();
    wait_until(
        "a restart with new credentials",
        Duration::from_secs(30),
        || read_starts().len() >= 2,
    );
    let replaced_after = started.elapsed();
    assert!(
        replaced_after > Duration::from_secs(7),
        "renewed past the first 6 s TTL before being replaced: {replaced_after:?}\n{}",
        running.text()
    );
    let (second_user, second_password) = read_starts()[1].clone();
    assert_ne!(first_user, second_user);
    assert!(
        pg.can_log_in(&second_user, &second_password),
        "one lease for both fields"
    );
    wait_until("the old lease revoked", Duration::from_secs(10), || {
        !pg.role_exists(&first_user)
    });
    let _ = first_password;
    assert_eq!(
        running.count("revoked the lease the new generation replaced"),
        1
    );
    running.stop();
    wait_until("revoke_on_exit", Duration::from_secs(10), || {
        !pg.role_exists(&second_user)
    });
}
