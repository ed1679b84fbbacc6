//! `hushbox swarm sync` on a real single-node swarm: the machine's Docker
//! engine, made a manager for the test (`docker swarm init --advertise-addr
//! 127.0.0.1`) and left again afterwards, with a service running a FROM
//! scratch busybox image.

mod common;

use common::{require_tool, stderr, stdout};

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn docker(args: &[&str]) -> Output {
    let output = Command::new("docker").args(args).output().unwrap();
    assert!(
        output.status.success(),
        "docker {args:?}: {}",
        stderr(&output)
    );
    output
}

fn docker_text(args: &[&str]) -> String {
    stdout(&docker(args)).trim().to_owned()
}

/// The swarm the test made, left (with everything the test created) on drop.
struct Swarm {
    stack: String,
    image: String,
    /// Whether this test initialised the swarm (and so leaves it).
    initialised: bool,
}

impl Swarm {
    fn new() -> Self {
        require_tool("docker", "docker.io (and a running Docker engine)");
        require_tool("busybox", "busybox-static");
        let info = Command::new("docker")
            .args(["info", "--format", "{{.Swarm.LocalNodeState}}"])
            .output()
            .unwrap();
        assert!(
            info.status.success(),
            "these tests need a running Docker engine, and `docker info` failed: {}",
            stderr(&info)
        );
        let initialised = stdout(&info).trim() != "active";
        if initialised {
            docker(&["swarm", "init", "--advertise-addr", "127.0.0.1"]);
        }
        let stack = format!("hbswarm{}", std::process::id());
        let swarm = Self {
            image: format!("{stack}-task:test"),
            stack,
            initialised,
        };
        swarm.build_image();
        swarm
    }

    /// A FROM scratch image with a static busybox: enough for a task that
    /// sleeps and for `docker exec … cat`.
    fn build_image(&self) {
        let context = tempfile::tempdir().unwrap();
        let bin = context.path().join("rootfs/bin");
        std::fs::create_dir_all(&bin).unwrap();
        let busybox = String::from_utf8(
            Command::new("sh")
                .args(["-c", "command -v busybox"])
                .output()
                .unwrap()
                .stdout,
        )
        .unwrap();
        std::fs::copy(busybox.trim(), bin.join("busybox")).unwrap();
        for tool in ["sh", "sleep", "cat", "stat"] {
            std::os::unix::fs::symlink("busybox", bin.join(tool)).unwrap();
        }
        std::fs::write(
            context.path().join("Dockerfile"),
            "FROM scratch\nCOPY rootfs/ /\nCMD [\"/bin/sleep\", \"3600\"]\n",
        )
        .unwrap();
        docker(&[
            "build",
            "-q",
            "-t",
            &self.image,
            context.path().to_str().unwrap(),
        ]);
    }

    fn service(&self) -> String {
        format!("{}_web", self.stack)
    }

    fn create_service(&self) {
        docker(&[
            "service",
            "create",
            "--quiet",
            "--detach=false",
            "--no-resolve-image",
            "--name",
            &self.service(),
            "--stop-grace-period",
            "1s",
            "--update-order",
            "start-first",
            &self.image,
        ]);
    }

    /// Runs `cmd` in the service's running task, waiting for the task that
    /// runs the service's current spec.
    fn exec_in_task(&self, cmd: &[&str]) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let ids = docker_text(&[
                "ps",
                "-q",
                "--filter",
                &format!("label=com.docker.swarm.service.name={}", self.service()),
            ]);
            // During a start-first rollout two tasks run: wait for one.
            if ids.lines().count() == 1 {
                let mut args = vec!["exec", ids.as_str()];
                args.extend_from_slice(cmd);
                let output = Command::new("docker").args(&args).output().unwrap();
                if output.status.success() {
                    return stdout(&output);
                }
            }
            assert!(Instant::now() < deadline, "no single running task");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The names of the Swarm secrets hushbox made for this stack.
    fn secrets(&self) -> Vec<String> {
        let names = docker_text(&[
            "secret",
            "ls",
            "--format",
            "{{.Name}}",
            "--filter",
            &format!("label=io.hushbox.stack={}", self.stack),
        ]);
        let mut names: Vec<String> = names.lines().map(str::to_owned).collect();
        names.sort();
        names
    }
}

impl Drop for Swarm {
    fn drop(&mut self) {
        let quiet = |args: &[&str]| {
            let _ = Command::new("docker")
                .args(args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        };
        quiet(&["service", "rm", &self.service()]);
        for secret in self.secrets() {
            // The service's tasks may hold it a moment longer.
            for _ in 0..50 {
                let removed = Command::new("docker")
                    .args(["secret", "rm", &secret])
                    .output()
                    .is_ok_and(|output| output.status.success());
                if removed {
                    break;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        }
        if self.initialised {
            quiet(&["swarm", "leave", "--force"]);
        }
        quiet(&["rmi", "-f", &self.image]);
    }
}

/// A project whose manifest binds `db_password` to the stack's `web`.
struct Project {
    dir: tempfile::TempDir,
}

impl Project {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("hushbox.toml"),
            "version = 1\n[backends.age]\nkind = \"age\"\nstore = \"secrets\"\n\
             [secrets.db_password]\nref = \"age://db\"\n\
             swarm = { services = [\"web\"], target = \"db_password\", uid = \"1000\", \
             gid = \"1000\", mode = \"0400\" }\n\
             [watch]\ninterval = \"1s\"\n",
        )
        .unwrap();
        let project = Self { dir };
        assert!(project.hushbox(&["keygen"], None).status.success());
        assert!(project.hushbox(&["store", "init"], None).status.success());
        project
    }

    fn hushbox(&self, args: &[&str], stdin: Option<&[u8]>) -> Output {
        let mut command = common::hushbox_command(self.dir.path(), self.dir.path(), args);
        command.env("HUSHBOX_IDENTITY", self.dir.path().join("identity.txt"));
        common::run_with_stdin(command, stdin)
    }

    fn set(&self, value: &[u8]) {
        let output = self.hushbox(&["store", "set", "--raw", "db"], Some(value));
        assert!(output.status.success(), "{}", stderr(&output));
    }

    /// `swarm sync --stack STACK EXTRA…`, logging at every level: no
    /// value may appear in what it prints.
    fn sync(&self, stack: &str, extra: &[&str]) -> Output {
        let mut args = vec!["swarm", "sync", "--stack", stack];
        args.extend_from_slice(extra);
        let mut command = common::hushbox_command(self.dir.path(), self.dir.path(), &args);
        command
            .env("HUSHBOX_IDENTITY", self.dir.path().join("identity.txt"))
            .env("HUSHBOX_LOG", "trace");
        let output = common::run_with_stdin(command, None);
        let printed = format!("{}{}", stdout(&output), stderr(&output));
        for value in ["first-value", "second-value", "xxxxxxxx"] {
            assert!(!printed.contains(value), "a value was printed: {printed}");
        }
        output
    }
}

#[test]
fn swarm_sync_creates_rolls_rotates_and_cleans_up() {
    let swarm = Swarm::new();
    swarm.create_service();
    let project = Project::new();
    let stack = swarm.stack.as_str();
    project.set(b"first-value");

    // --dry-run: the plan, and nothing done.
    let planned = project.sync(stack, &["--dry-run"]);
    assert!(planned.status.success(), "{}", stderr(&planned));
    let plan = stdout(&planned);
    assert!(
        plan.contains(&format!("create secret {stack}_db_password_")),
        "{plan}"
    );
    assert!(
        plan.contains(&format!("update service {}: db_password", swarm.service())),
        "{plan}"
    );
    assert!(!plan.contains("first-value"), "{plan}");
    assert!(swarm.secrets().is_empty(), "a dry run created secrets");

    let synced = project.sync(stack, &[]);
    assert!(synced.status.success(), "{}", stderr(&synced));
    let first = swarm.secrets();
    assert_eq!(first.len(), 1, "{first:?}");
    assert!(first[0].starts_with(&format!("{stack}_db_password_")));
    // The name is no plain hash of the value (HMAC under the swarm's key).
    assert!(!stdout(&synced).contains("first-value"));
    assert!(
        stdout(&synced).contains(&format!("service {} converged", swarm.service())),
        "{}",
        stdout(&synced)
    );
    assert_eq!(
        swarm.exec_in_task(&["cat", "/run/secrets/db_password"]),
        "first-value"
    );
    assert_eq!(
        swarm
            .exec_in_task(&["stat", "-c", "%a %u:%g", "/run/secrets/db_password"])
            .trim(),
        "400 1000:1000"
    );
    // The labels say where it came from, never what it holds.
    let labels = docker_text(&[
        "secret",
        "inspect",
        "-f",
        "{{json .Spec.Labels}}",
        &first[0],
    ]);
    assert!(
        labels.contains(r#""io.hushbox.reference":"age://db""#),
        "{labels}"
    );
    assert!(
        labels.contains(r#""io.hushbox.secret":"db_password""#),
        "{labels}"
    );

    // Nothing changed: nothing done, not even a service update.
    let spec_version = || {
        docker_text(&[
            "service",
            "inspect",
            "-f",
            "{{.Version.Index}}",
            &swarm.service(),
        ])
    };
    let before = spec_version();
    let again = project.sync(stack, &[]);
    assert!(again.status.success(), "{}", stderr(&again));
    assert!(
        stdout(&again).contains("nothing to do"),
        "{}",
        stdout(&again)
    );
    assert_eq!(spec_version(), before);
    assert_eq!(swarm.secrets(), first);

    // A rotation: a new secret, the same path in the task, the old one gone.
    project.set(b"second-value");
    let rotated = project.sync(stack, &[]);
    assert!(rotated.status.success(), "{}", stderr(&rotated));
    let second = swarm.secrets();
    assert_eq!(second.len(), 1, "{second:?}");
    assert_ne!(second, first);
    assert!(
        stdout(&rotated).contains(&format!("removed secret {}", first[0])),
        "{}",
        stdout(&rotated)
    );
    assert_eq!(
        swarm.exec_in_task(&["cat", "/run/secrets/db_password"]),
        "second-value"
    );

    // --watch: a rotation reaches the running task with no further
    // command; SIGTERM ends the watcher with 0, and nothing it printed holds
    // a value.
    let log = project.dir.path().join("watch.log");
    let log_file = std::fs::File::create(&log).unwrap();
    let mut command = common::hushbox_command(
        project.dir.path(),
        project.dir.path(),
        &["swarm", "sync", "--stack", stack, "--watch"],
    );
    let mut watcher = command
        .env("HUSHBOX_IDENTITY", project.dir.path().join("identity.txt"))
        .env("HUSHBOX_LOG", "trace")
        .stdin(std::process::Stdio::null())
        .stdout(log_file.try_clone().unwrap())
        .stderr(log_file)
        .spawn()
        .unwrap();
    project.set(b"third-value");
    let deadline = Instant::now() + Duration::from_secs(120);
    while swarm.exec_in_task(&["cat", "/run/secrets/db_password"]) != "third-value" {
        assert!(
            Instant::now() < deadline,
            "the watcher did not roll the new value out:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // The old secret goes once the rollout is done.
    while swarm.secrets().len() != 1 {
        assert!(Instant::now() < deadline, "{:?}", swarm.secrets());
        std::thread::sleep(Duration::from_millis(200));
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(watcher.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = watcher.wait().unwrap();
    let printed = std::fs::read_to_string(&log).unwrap();
    assert!(status.success(), "{status:?}: {printed}");
    for value in ["second-value", "third-value"] {
        assert!(!printed.contains(value), "a value was printed: {printed}");
    }
    let second = swarm.secrets();

    // Over Swarm's limit: a clear error, and nothing touched.
    project.set(&vec![b'x'; 600 * 1024]);
    let refused = project.sync(stack, &[]);
    assert_eq!(refused.status.code(), Some(65), "{}", stderr(&refused));
    assert!(
        stderr(&refused).contains("a Swarm secret holds 1 to 511999 bytes"),
        "{}",
        stderr(&refused)
    );
    assert_eq!(swarm.secrets(), second);
}
