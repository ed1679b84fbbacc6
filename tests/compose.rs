//! The Compose patterns of `examples/compose/`, run as their READMEs say, in
//! the machine's Docker engine with `docker-compose` (1.29). Each asserts,
//! from inside the container, what the app gets (file system type, owner,
//! mode), that `restart` and `down` work, that a rotation reaches the
//! running app where the pattern has `--watch`, and that the secret's value
//! is on no disk under the engine's data root.

mod common;

use common::{require_tool, stderr, stdout};

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const HUSHBOX: &str = env!("CARGO_BIN_EXE_hushbox");
/// Where the engine keeps containers, images and volumes.
const DOCKER_ROOT: &str = "/var/lib/docker";

/// Fails (never skips) when the Docker engine or docker-compose is missing.
fn require_engine() {
    require_tool("docker", "docker.io (and a running Docker engine)");
    require_tool("docker-compose", "docker-compose");
    require_tool("busybox", "busybox-static");
    let info = Command::new("docker").arg("info").output().unwrap();
    assert!(
        info.status.success(),
        "these tests need a running Docker engine, and `docker info` failed: {}",
        stderr(&info)
    );
}

/// A copy of one example directory, with an identity and a store holding
/// `db_password` = a fresh canary, and a unique Compose project name.
struct Example {
    dir: tempfile::TempDir,
    project: String,
    canary: String,
    runtime: tempfile::TempDir,
}

impl Example {
    /// The example `name`, over a copy of `base` (another example
    /// directory, whose manifest and store it uses) when given.
    fn new(name: &str, base: Option<&str>) -> Self {
        require_engine();
        let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
        let dir = tempfile::tempdir().unwrap();
        if let Some(base) = base {
            copy_tree(&examples.join(base), dir.path());
        }
        copy_tree(&examples.join("compose").join(name), dir.path());
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let example = Self {
            dir,
            project: format!("hushboxtest{}x{nanos:x}", std::process::id()),
            canary: format!("canary-{nanos:x}-{}", std::process::id()),
            runtime: common::tmpfs_dir(),
        };
        example.hushbox_ok(&["keygen"], None);
        example.hushbox_ok(&["store", "init"], None);
        example.hushbox_ok(
            &["store", "set", "db_password"],
            Some(example.canary.clone().as_bytes()),
        );
        example
    }

    fn command(&self, program: &str, args: &[&str]) -> Command {
        let mut command = Command::new(program);
        command
            .args(args)
            .current_dir(self.dir.path())
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap())
            .env("HOME", self.dir.path())
            .env("XDG_RUNTIME_DIR", self.runtime.path())
            .env("HUSHBOX_IDENTITY", self.dir.path().join("identity.txt"))
            .env("COMPOSE_PROJECT_NAME", &self.project)
            .env("APP_IMAGE", self.image());
        command
    }

    fn hushbox_ok(&self, args: &[&str], stdin: Option<&[u8]>) -> Output {
        let output = common::run_with_stdin(self.command(HUSHBOX, args), stdin);
        assert!(
            output.status.success(),
            "hushbox {args:?}: {}",
            stderr(&output)
        );
        output
    }

    fn image(&self) -> String {
        format!("{}-app:test", self.project)
    }

    fn container(&self) -> String {
        format!("{}_app_1", self.project)
    }

    /// `docker logs` of the app (no Compose: it would need the variables).
    fn logs(&self) -> String {
        let output = Command::new("docker")
            .args(["logs", &self.container()])
            .output()
            .unwrap();
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            stderr(&output)
        )
    }

    /// Waits until the app has printed `ready` `count` times.
    fn wait_ready(&self, count: usize) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let logs = self.logs();
            if logs.matches("app: ready").count() >= count {
                return logs;
            }
            assert!(Instant::now() < deadline, "the app never got ready: {logs}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The files under the engine's data root that hold the canary, but
    /// for those on tmpfs (a running stack's tmpfs volume is mounted in
    /// there on the host: memory, not disk).
    fn canary_on_disk(&self) -> String {
        let output = Command::new("grep")
            .args(["-r", "-l", "-F", &self.canary, DOCKER_ROOT])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter(|path| {
                let fs_type = Command::new("stat")
                    .args(["-f", "-c", "%T", path])
                    .output()
                    .unwrap();
                String::from_utf8_lossy(&fs_type.stdout).trim() != "tmpfs"
            })
            .map(|path| format!("{path}\n"))
            .collect()
    }
}

impl Drop for Example {
    fn drop(&mut self) {
        // Whatever the test left: the project's containers and network,
        // and its image.
        let _ = Command::new("docker")
            .args(["rm", "-f", &self.container()])
            .output();
        let _ = Command::new("docker")
            .args(["network", "rm", &format!("{}_internal", self.project)])
            .output();
        let _ = Command::new("docker")
            .args(["rmi", "-f", &self.image()])
            .output();
    }
}

fn copy_tree(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target: PathBuf = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// examples/compose/local-dev: `hushbox run --keep -- docker-compose up -d`
/// on the host, Compose `file:` secrets, `--discard` with `down`.
#[test]
fn local_dev_pattern_up_restart_down_leaves_nothing() {
    let example = Example::new("local-dev", None);
    let build = example
        .command(
            example.dir.path().join("app/build.sh").to_str().unwrap(),
            &[],
        )
        .env("TAG", example.image())
        .output()
        .unwrap();
    assert!(build.status.success(), "app/build.sh: {}", stderr(&build));

    // Without hushbox, Compose refuses with the file's own message.
    let bare = example
        .command("docker-compose", &["config", "-q"])
        .output()
        .unwrap();
    assert!(!bare.status.success());
    assert!(
        stderr(&bare).contains("hushbox run --keep"),
        "{}",
        stderr(&bare)
    );

    let started = Instant::now();
    example.hushbox_ok(&["run", "--keep", "--", "docker-compose", "up", "-d"], None);
    let logs = example.wait_ready(1);
    eprintln!(
        "docker-compose up to the app reading its secret: {:?}",
        started.elapsed()
    );
    let expected = format!(
        "app: uid=1000 fs=tmpfs owner=1000:1000 mode=400 bytes={}",
        example.canary.len()
    );
    assert!(logs.contains(&expected), "{logs}");
    // While it runs, the value is in no file of the engine's (the
    // container's config holds the path only).
    assert_eq!(example.canary_on_disk(), "");

    example.hushbox_ok(
        &["run", "--keep", "--", "docker-compose", "restart", "app"],
        None,
    );
    let logs = example.wait_ready(2);
    assert_eq!(logs.matches(&expected).count(), 2, "{logs}");

    example.hushbox_ok(&["run", "--discard", "--", "docker-compose", "down"], None);
    let kept: Vec<_> = std::fs::read_dir(example.runtime.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name())
        .collect();
    assert!(kept.is_empty(), "left after --discard: {kept:?}");
    let gone = Command::new("docker")
        .args(["inspect", &example.container()])
        .output()
        .unwrap();
    assert!(!gone.status.success(), "the container outlived down");
    assert_eq!(example.canary_on_disk(), "");
}

/// examples/compose/entrypoint: the container example's image, whose
/// entrypoint is `hushbox exec --user app`, with the identity as a Compose
/// secret and a per-container tmpfs.
#[test]
fn entrypoint_pattern_up_restart_down_leaves_nothing() {
    // The image as examples/container's README builds it, in the same
    // directory: the identity and store are that example's.
    let example = Example::new("entrypoint", Some("container"));
    let dir = example.dir.path();
    let key = example.hushbox_ok(&["store", "verify", "--print-key"], None);
    std::fs::write(dir.join("integrity.key"), &key.stdout).unwrap();
    let build = example
        .command(dir.join("build.sh").to_str().unwrap(), &[])
        .env("HUSHBOX_BIN", HUSHBOX)
        .output()
        .unwrap();
    assert!(build.status.success(), "build.sh: {}", stderr(&build));
    let image = example.image();
    let built = Command::new("docker")
        .args(["build", "-q", "-t", &image, dir.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(built.status.success(), "{}", stderr(&built));

    // The store is mounted read-only into the container, where the watcher
    // reads it as `app` after the drop: readable by every user, as a git
    // checkout's files are (`store set` writes 0600 files).
    let share_store = || {
        let chmod = Command::new("chmod")
            .args(["-R", "a+rX,go-w", dir.join("secrets").to_str().unwrap()])
            .output()
            .unwrap();
        assert!(chmod.status.success(), "{}", stderr(&chmod));
    };
    share_store();
    let integrity_key = stdout(&key).trim().to_owned();
    let compose = |args: &[&str]| {
        let output = example
            .command("docker-compose", args)
            .env("HUSHBOX_STORE_DIR", dir.join("secrets"))
            .env("HUSHBOX_INTEGRITY_KEY", &integrity_key)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "docker-compose {args:?}: {}",
            stderr(&output)
        );
    };
    let started = Instant::now();
    compose(&["up", "-d"]);
    let ready = |count: usize| {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let logs = example.logs();
            if logs.matches("server: ready").count() >= count {
                return logs;
            }
            assert!(Instant::now() < deadline, "never ready: {logs}");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let logs = ready(1);
    eprintln!(
        "docker-compose up to the app reading its secret: {:?}",
        started.elapsed()
    );
    assert!(
        logs.contains("server: running as uid 1000, gid 1000"),
        "{logs}"
    );
    assert!(
        logs.contains("/run/secrets/db_password is mode 400, owned by 1000"),
        "{logs}"
    );
    assert!(
        logs.contains(&format!("the password has {} bytes", example.canary.len())),
        "{logs}"
    );
    let fs_type = Command::new("docker")
        .args([
            "exec",
            &example.container(),
            "/bin/stat",
            "-f",
            "-c",
            "%T",
            "/run/secrets/db_password",
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&fs_type.stdout).trim(), "tmpfs");
    assert_eq!(example.canary_on_disk(), "");
    // The healthcheck (`hushbox health`) passes.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let health = Command::new("docker")
            .args([
                "inspect",
                "-f",
                "{{.State.Health.Status}} {{json .State.Health.Log}}",
                &example.container(),
            ])
            .output()
            .unwrap();
        let health = stdout(&health);
        if health.starts_with("healthy") {
            break;
        }
        assert!(Instant::now() < deadline, "never healthy: {health}");
        std::thread::sleep(Duration::from_millis(200));
    }

    // A rotation in the store reaches the running app's file, and the app
    // is restarted (watch.toml: on_change = "restart") to read it.
    let rotated = format!("{}-rotated", example.canary);
    let rotated_at = Instant::now();
    example.hushbox_ok(
        &["store", "set", "db_password"],
        Some(rotated.clone().as_bytes()),
    );
    share_store();
    let read_in_app = || {
        let output = Command::new("docker")
            .args([
                "exec",
                "-u",
                "1000:1000",
                &example.container(),
                "/bin/cat",
                "/run/secrets/db_password",
            ])
            .output()
            .unwrap();
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while read_in_app() != rotated {
        assert!(
            Instant::now() < deadline,
            "the rotation never reached the app: {}",
            example.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let logs = ready(2);
    eprintln!(
        "store set to the restarted app reading the new value: {:?}",
        rotated_at.elapsed()
    );
    assert!(
        logs.contains(&format!("the password has {} bytes", rotated.len())),
        "{logs}"
    );
    assert_eq!(example.canary_on_disk(), "");

    compose(&["restart", "app"]);
    ready(3);
    compose(&["down"]);
    assert_eq!(example.canary_on_disk(), "");
}

/// examples/compose/build-time: `hushbox run -- docker build --secret
/// id=npm_token,env=NPM_TOKEN` feeding `RUN --mount=type=secret`, with
/// Debian's Docker client (20.10) and BuildKit. The step saw the token; the
/// image, its history and the engine's data root hold no trace of it.
#[test]
fn build_time_pattern_bakes_no_secret_into_the_image() {
    require_tool(
        "/usr/bin/docker",
        "docker.io (Debian's client, which has BuildKit's --secret)",
    );
    let example = Example::new("build-time", None);
    let dir = example.dir.path();
    example.hushbox_ok(
        &["store", "set", "npm_token"],
        Some(example.canary.clone().as_bytes()),
    );
    // The base image: FROM scratch with a static busybox for the RUN step.
    let base = format!("{}-base:test", example.project);
    let context = tempfile::tempdir().unwrap();
    let bin = context.path().join("rootfs/bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::copy("/bin/busybox", bin.join("busybox")).unwrap();
    for tool in ["sh", "wc", "cat"] {
        std::os::unix::fs::symlink("busybox", bin.join(tool)).unwrap();
    }
    std::fs::write(
        context.path().join("Dockerfile"),
        "FROM scratch\nCOPY rootfs/ /\n",
    )
    .unwrap();
    let built_base = Command::new("docker")
        .args(["build", "-q", "-t", &base, context.path().to_str().unwrap()])
        .output()
        .unwrap();
    assert!(built_base.status.success(), "{}", stderr(&built_base));
    let _base_image = RemoveImage(base.clone());

    let image = example.image();
    let build_arg = format!("BASE={base}");
    let started = Instant::now();
    let built = example.hushbox_ok(
        &[
            "run",
            "--",
            "env",
            "DOCKER_BUILDKIT=1",
            "/usr/bin/docker",
            "build",
            // The step's cache key does not cover the secret: a cached layer
            // of an earlier build would hide this one's token.
            "--no-cache",
            "--secret",
            "id=npm_token,env=NPM_TOKEN",
            "--build-arg",
            &build_arg,
            "-t",
            &image,
            dir.to_str().unwrap(),
        ],
        None,
    );
    eprintln!("build with the secret: {:?}", started.elapsed());
    assert!(!stdout(&built).contains(&example.canary));
    assert!(!stderr(&built).contains(&example.canary));

    // The RUN step had the token (its length is all it kept).
    let length = Command::new("docker")
        .args(["run", "--rm", &image, "cat", "/token-length"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&length.stdout).trim(),
        example.canary.len().to_string()
    );
    // Nothing of it in the history, the layers, or the engine's files.
    let history = Command::new("docker")
        .args(["history", "--no-trunc", &image])
        .output()
        .unwrap();
    assert!(history.status.success());
    assert!(
        !stdout(&history).contains(&example.canary),
        "{}",
        stdout(&history)
    );
    let saved = Command::new("docker")
        .args(["save", &image])
        .output()
        .unwrap();
    assert!(saved.status.success());
    assert!(
        !saved
            .stdout
            .windows(example.canary.len())
            .any(|window| window == example.canary.as_bytes()),
        "the token is in the image's layers"
    );
    assert_eq!(example.canary_on_disk(), "");

    // Without hushbox the variable is missing and the build stops.
    let bare = example
        .command(
            "/usr/bin/docker",
            &[
                "build",
                "--no-cache",
                "--secret",
                "id=npm_token,env=NPM_TOKEN",
                "--build-arg",
                &build_arg,
                dir.to_str().unwrap(),
            ],
        )
        .env("DOCKER_BUILDKIT", "1")
        .output()
        .unwrap();
    assert!(
        !bare.status.success(),
        "a build without the token succeeded"
    );
}

/// Removes an image when the test ends.
struct RemoveImage(String);

impl Drop for RemoveImage {
    fn drop(&mut self) {
        let _ = Command::new("docker").args(["rmi", "-f", &self.0]).output();
    }
}

/// A FROM scratch image holding the test's hushbox at `/hushbox` (with the
/// libraries a dynamically linked build needs), as `scripts/image` builds
/// it from the static binary, whose release build takes minutes.
fn build_hushbox_image(tag: &str) {
    let context = tempfile::tempdir().unwrap();
    let rootfs = context.path().join("rootfs");
    std::fs::create_dir_all(&rootfs).unwrap();
    std::fs::copy(HUSHBOX, rootfs.join("hushbox")).unwrap();
    let ldd = Command::new("ldd").arg(HUSHBOX).output().unwrap();
    for library in String::from_utf8_lossy(&ldd.stdout)
        .split_whitespace()
        .filter(|word| word.starts_with('/'))
    {
        let target = rootfs.join(library.trim_start_matches('/'));
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::copy(library, &target).unwrap();
    }
    std::fs::write(
        context.path().join("Dockerfile"),
        "FROM scratch\nCOPY rootfs/ /\nUSER 65532:65532\nENTRYPOINT [\"/hushbox\"]\n",
    )
    .unwrap();
    let built = Command::new("docker")
        .args(["build", "-q", "-t", tag, context.path().to_str().unwrap()])
        .output()
        .unwrap();
    assert!(built.status.success(), "{}", stderr(&built));
}

/// `docker-compose down -v` when the test ends: the sidecar, its image and
/// the named volume go too.
struct ComposeDown<'a> {
    example: &'a Example,
    sidecar_image: String,
}

impl Drop for ComposeDown<'_> {
    fn drop(&mut self) {
        let _ = self
            .example
            .command("docker-compose", &["down", "-v", "-t", "1"])
            .env("HUSHBOX_IMAGE", &self.sidecar_image)
            // Any value: `down` only needs the file to parse.
            .env("HUSHBOX_INTEGRITY_KEY", "0")
            .output();
        let _ = Command::new("docker")
            .args(["rmi", "-f", &self.sidecar_image])
            .output();
    }
}

/// examples/compose/sidecar: `hushbox inject --watch` keeps a tmpfs named
/// volume fresh, the app (non-root) mounts it read-only once the sidecar's
/// `hushbox health` healthcheck passes; a `store set` on the host reaches
/// the running app's file.
#[test]
fn sidecar_pattern_keeps_the_app_file_fresh() {
    let example = Example::new("sidecar", None);
    let build_app =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/compose/local-dev/app/build.sh");
    let build = example
        .command(build_app.to_str().unwrap(), &[])
        .env("TAG", example.image())
        .output()
        .unwrap();
    assert!(build.status.success(), "app/build.sh: {}", stderr(&build));
    let sidecar_image = format!("{}-sidecar:test", example.project);
    build_hushbox_image(&sidecar_image);
    let key = example.hushbox_ok(&["store", "verify", "--print-key"], None);
    let integrity_key = stdout(&key).trim().to_owned();
    let _down = ComposeDown {
        example: &example,
        sidecar_image: sidecar_image.clone(),
    };
    let compose = |args: &[&str]| {
        let output = example
            .command("docker-compose", args)
            .env("HUSHBOX_IMAGE", &sidecar_image)
            .env("HUSHBOX_INTEGRITY_KEY", &integrity_key)
            .output()
            .unwrap();
        let sidecar = Command::new("docker")
            .args(["logs", &format!("{}_secrets_1", example.project)])
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "docker-compose {args:?}: {}\nthe sidecar's log: {}",
            stderr(&output),
            stderr(&sidecar)
        );
    };
    // What the app's user reads through the path the app was given.
    let read_in_app = || {
        let output = Command::new("docker")
            .args([
                "exec",
                &example.container(),
                "/bin/cat",
                "/run/secrets/db_password",
            ])
            .output()
            .unwrap();
        String::from_utf8_lossy(&output.stdout).into_owned()
    };

    let started = Instant::now();
    compose(&["up", "-d"]);
    let logs = example.wait_ready(1);
    eprintln!(
        "docker-compose up to the app reading its secret: {:?}",
        started.elapsed()
    );
    let expected = format!(
        "app: uid=1000 fs=tmpfs owner=1000:1000 mode=400 bytes={}",
        example.canary.len()
    );
    assert!(logs.contains(&expected), "{logs}");
    assert_eq!(read_in_app(), example.canary);
    // The app's mount is read-only: it cannot change what the sidecar wrote.
    let write = Command::new("docker")
        .args([
            "exec",
            &example.container(),
            "/bin/sh",
            "-c",
            "echo x > /run/secrets/other",
        ])
        .output()
        .unwrap();
    assert!(!write.status.success(), "the app wrote into the volume");
    assert_eq!(example.canary_on_disk(), "");

    // A rotation on the host's store reaches the running app. (The new
    // value holds the canary, so the disk check below covers it too.)
    let rotated = format!("{}-rotated", example.canary);
    let rotated_at = Instant::now();
    example.hushbox_ok(
        &["store", "set", "db_password"],
        Some(rotated.clone().as_bytes()),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while read_in_app() != rotated {
        assert!(
            Instant::now() < deadline,
            "the rotation never reached the app"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!(
        "store set to the app reading the new value: {:?}",
        rotated_at.elapsed()
    );
    assert_eq!(example.canary_on_disk(), "");

    // down, then up again: a fresh volume, filled again before the app starts.
    compose(&["down"]);
    assert_eq!(example.canary_on_disk(), "");
    compose(&["up", "-d"]);
    let logs = example.wait_ready(1);
    assert!(logs.contains(&format!("bytes={}", rotated.len())), "{logs}");
    assert_eq!(read_in_app(), rotated);
    compose(&["down"]);
    assert_eq!(example.canary_on_disk(), "");
}

/// A `hushbox inject --watch` running on the host, stopped (SIGTERM) when
/// the test ends.
struct Watcher(std::process::Child);

impl Drop for Watcher {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .output();
        let _ = self.0.wait();
    }
}

/// examples/compose/host: `hushbox inject --watch` on the host into a tmpfs
/// directory that the app mounts whole; a rotation reaches it. A container
/// given the one file instead keeps the old value (the bind mount pins the
/// inode), as the README warns.
#[test]
fn host_pattern_directory_bind_sees_rotation_single_file_does_not() {
    let example = Example::new("host", None);
    let build_app =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/compose/local-dev/app/build.sh");
    let build = example
        .command(build_app.to_str().unwrap(), &[])
        .env("TAG", example.image())
        .output()
        .unwrap();
    assert!(build.status.success(), "app/build.sh: {}", stderr(&build));
    let secrets = common::tmpfs_dir();
    // The app's user must be able to enter it; nobody else may write it.
    std::fs::set_permissions(
        secrets.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let secrets_dir = secrets.path().to_str().unwrap();

    let started = Instant::now();
    let _watcher = Watcher(
        example
            .command(HUSHBOX, &["inject", "--watch", "--dir", secrets_dir])
            .stdin(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let file = secrets.path().join("db_password");
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::fs::read(&file).ok().as_deref() != Some(example.canary.as_bytes()) {
        assert!(Instant::now() < deadline, "inject --watch wrote nothing");
        std::thread::sleep(Duration::from_millis(20));
    }
    let compose = |args: &[&str]| {
        let output = example
            .command("docker-compose", args)
            .env("HUSHBOX_SECRETS_DIR", secrets_dir)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "docker-compose {args:?}: {}",
            stderr(&output)
        );
    };
    compose(&["up", "-d"]);
    let logs = example.wait_ready(1);
    eprintln!(
        "inject --watch, then docker-compose up, to the app reading its secret: {:?}",
        started.elapsed()
    );
    let expected = format!(
        "app: uid=1000 fs=tmpfs owner=1000:1000 mode=400 bytes={}",
        example.canary.len()
    );
    assert!(logs.contains(&expected), "{logs}");

    // The trap: one file bind-mounted (the path the engine resolves at
    // start is the generation's file, whose inode it keeps).
    let pinned = format!("{}_pinned", example.project);
    let _pinned = RemoveContainer(pinned.clone());
    let single_file = format!("{}:/run/secrets/db_password:ro", file.display());
    let run = Command::new("docker")
        .args([
            "run",
            "-d",
            "--name",
            &pinned,
            "--user",
            "1000:1000",
            "--network",
            "none",
            "-e",
            "DB_PASSWORD_FILE=/run/secrets/db_password",
            "-v",
            &single_file,
            &example.image(),
        ])
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", stderr(&run));

    let read_in = |container: &str| {
        let output = Command::new("docker")
            .args(["exec", container, "/bin/cat", "/run/secrets/db_password"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    assert_eq!(read_in(&example.container()), example.canary);
    assert_eq!(read_in(&pinned), example.canary);

    let rotated = format!("{}-rotated", example.canary);
    let rotated_at = Instant::now();
    example.hushbox_ok(
        &["store", "set", "db_password"],
        Some(rotated.clone().as_bytes()),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while read_in(&example.container()) != rotated {
        assert!(
            Instant::now() < deadline,
            "the rotation never reached the directory bind"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!(
        "store set to the app reading the new value: {:?}",
        rotated_at.elapsed()
    );
    assert_eq!(
        read_in(&pinned),
        example.canary,
        "the single-file bind saw the rotation"
    );

    compose(&["down"]);
    assert_eq!(example.canary_on_disk(), "");
}

/// Removes a container when the test ends.
struct RemoveContainer(String);

impl Drop for RemoveContainer {
    fn drop(&mut self) {
        let _ = Command::new("docker").args(["rm", "-f", &self.0]).output();
    }
}
