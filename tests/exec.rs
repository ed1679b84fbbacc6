//! `hushbox exec` as a container entrypoint: as PID 1 in a new PID namespace,
//! and in a real container on the machine's Docker engine.

mod common;

use common::{require_tool, stderr};

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const HUSHBOX: &str = env!("CARGO_BIN_EXE_hushbox");

/// A project with an identity, a store holding `db_password`, and a
/// manifest that writes it to a fresh tmpfs directory.
struct Project {
    dir: tempfile::TempDir,
    out: tempfile::TempDir,
}

impl Project {
    fn new(extra_manifest: &str) -> Self {
        require_tool("unshare", "util-linux");
        let dir = tempfile::tempdir().unwrap();
        let out = tempfile::Builder::new()
            .prefix("hushbox-exec-")
            .tempdir_in("/dev/shm")
            .unwrap();
        let manifest = format!(
            "version = 1\n[backends.age]\nkind = \"age\"\nstore = \"secrets\"\n[output]\ndir = \"{}\"\n\
             [secrets.db_password]\nref = \"age://db\"\nenv = \"DB_PASSWORD_FILE\"\n{extra_manifest}",
            out.path().join("secrets").display()
        );
        std::fs::write(dir.path().join("hushbox.toml"), manifest).unwrap();
        let project = Self { dir, out };
        assert!(
            project
                .hushbox(&["keygen"])
                .output()
                .unwrap()
                .status
                .success()
        );
        assert!(
            project
                .hushbox(&["store", "init"])
                .output()
                .unwrap()
                .status
                .success()
        );
        let mut set = project
            .hushbox(&["store", "set", "db"])
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        std::io::Write::write_all(&mut set.stdin.take().unwrap(), b"hunter2").unwrap();
        assert!(set.wait().unwrap().success());
        project
    }

    fn secrets_dir(&self) -> PathBuf {
        self.out.path().join("secrets")
    }

    fn hushbox(&self, args: &[&str]) -> Command {
        let mut command = common::hushbox_command(self.dir.path(), self.dir.path(), args);
        command.env("HUSHBOX_IDENTITY", self.dir.path().join("identity.txt"));
        command
    }

    /// `hushbox exec ARGS` as PID 1 of a new PID namespace.
    fn exec_as_pid1(&self, args: &[&str]) -> Command {
        let mut command = Command::new("unshare");
        command
            // --kill-child: a failed or killed test leaves no namespace behind.
            .args([
                "--pid",
                "--fork",
                "--kill-child",
                "--mount-proc",
                HUSHBOX,
                "exec",
            ])
            .args(args)
            .current_dir(self.dir.path())
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap())
            .env("HOME", self.dir.path())
            .env("HUSHBOX_IDENTITY", self.dir.path().join("identity.txt"));
        command
    }
}

/// Reads the child's stdout until a line equal to `wanted`, returning all
/// lines read. Panics with what it saw after `timeout`.
fn wait_for_line(child: &mut Child, wanted: &str) -> Vec<String> {
    let mut lines = Vec::new();
    let reader = BufReader::new(child.stdout.as_mut().unwrap());
    for line in reader.lines() {
        let line = line.unwrap();
        let done = line == wanted;
        lines.push(line);
        if done {
            return lines;
        }
    }
    panic!("stdout closed before {wanted:?}: {lines:?}");
}

#[test]
fn pid1_forwards_signals_reaps_orphans_and_passes_the_exit_code() {
    let project = Project::new("");
    let script = r#"
        for s in HUP USR1 INT; do trap "echo got-$s" $s; done
        trap 'echo got-TERM; echo "zombies=$(grep -l "^State:.Z" /proc/[0-9]*/status 2>/dev/null | wc -l)"; exit 3' TERM
        echo "init=$(tr '\0' ' ' < /proc/1/cmdline | cut -d' ' -f2) secret=$(cat "$DB_PASSWORD_FILE")"
        sh -c 'sleep 0.05 & exit 0'
        echo ready
        while :; do sleep 0.05; done
    "#;
    let mut child = project
        .exec_as_pid1(&["--", "sh", "-c", script])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A hang must fail the test, not CI: kill the namespace after a minute.
    let watched = child.id() as i32;
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(60));
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(watched),
            nix::sys::signal::Signal::SIGKILL,
        );
    });
    let lines = wait_for_line(&mut child, "ready");
    assert_eq!(
        lines[0], "init=exec secret=hunter2",
        "hushbox exec is PID 1"
    );
    // unshare does not forward signals: signal hushbox (PID 1 inside the
    // namespace) by its pid outside, the one child of unshare.
    let children =
        std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", child.id())).unwrap();
    let unshare = nix::unistd::Pid::from_raw(children.trim().parse().unwrap());
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    for (signal, name) in [
        (nix::sys::signal::Signal::SIGHUP, "got-HUP"),
        (nix::sys::signal::Signal::SIGUSR1, "got-USR1"),
        (nix::sys::signal::Signal::SIGINT, "got-INT"),
    ] {
        nix::sys::signal::kill(unshare, signal).unwrap();
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        assert_eq!(line.trim(), name);
    }
    // The orphaned `sleep` has been reaped by now or will be before exit.
    nix::sys::signal::kill(unshare, nix::sys::signal::Signal::SIGTERM).unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut reader, &mut rest).unwrap();
    let status = child.wait().unwrap();
    assert!(rest.contains("got-TERM"), "{rest}");
    assert!(rest.contains("zombies=0"), "{rest}");
    assert_eq!(status.code(), Some(3));
}

#[test]
fn stop_and_continue_do_not_confuse_the_supervisor() {
    let project = Project::new("");
    let mut child = project
        .hushbox(&["exec", "--", "sh", "-c", "echo ready; read line; exit 7"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_line(&mut child, "ready");
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP).unwrap();
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGCONT).unwrap();
    drop(child.stdin.take());
    assert_eq!(child.wait().unwrap().code(), Some(7));
}

#[test]
fn exec_drops_privileges_and_gives_the_files_to_the_user() {
    let project = Project::new("");
    let output = project
        .hushbox(&[
            "exec",
            "--user",
            "nobody",
            "--",
            "sh",
            "-c",
            "echo \"$(id -u) $(id -G) $(stat -L -c '%a %u' \"$DB_PASSWORD_FILE\") $(cat \"$DB_PASSWORD_FILE\")\"",
        ])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        "65534 65534 400 65534 hunter2"
    );
}

#[test]
fn exec_bad_input_fails_before_the_child_starts() {
    let project = Project::new("[secrets.missing]\nref = \"age://nope\"\n");
    let marker = project.dir.path().join("started");
    let touch = ["--", "touch", marker.to_str().unwrap()];
    let output = project
        .hushbox(&[&["exec"][..], &touch[..]].concat())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(66), "{}", stderr(&output));
    assert!(!marker.exists(), "the child started without its secrets");
    // The output directory is checked (and created) before anything is
    // fetched; it must hold nothing afterwards.
    let left: Vec<_> = std::fs::read_dir(project.secrets_dir())
        .map(|entries| entries.map(|entry| entry.unwrap().file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "files were left behind: {left:?}");

    let project = Project::new("");
    let output = project
        .hushbox(&["exec", "--", "/no/such/program"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(127), "{}", stderr(&output));
    let output = project
        .hushbox(&["exec", "--user", "no-such-user", "--", "true"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(78), "{}", stderr(&output));
    assert!(stderr(&output).contains("no-such-user"));
    let disk = project.dir.path().join("out");
    let output = project
        .hushbox(&["exec", "--dir", disk.to_str().unwrap(), "--", "true"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(78), "{}", stderr(&output));
    assert!(stderr(&output).contains("not tmpfs"), "{}", stderr(&output));
}

/// Removes a Docker image and its containers when the test ends.
struct DockerImage(String);

impl Drop for DockerImage {
    fn drop(&mut self) {
        let _ = Command::new("docker").args(["rmi", "-f", &self.0]).output();
    }
}

fn docker(args: &[&str]) -> Output {
    let output = Command::new("docker").args(args).output().unwrap();
    assert!(
        output.status.success(),
        "docker {args:?}: {}",
        stderr(&output)
    );
    output
}

/// Fails (never skips) when the Docker engine does not answer.
fn require_docker_engine() {
    require_tool("docker", "docker.io (and a running Docker engine)");
    let info = Command::new("docker").args(["info"]).output().unwrap();
    assert!(
        info.status.success(),
        "these tests need a running Docker engine, and `docker info` failed: {}",
        stderr(&info)
    );
}

/// The container example as the README builds it: an identity, a store
/// holding `db_password` (7 bytes), the pinned integrity key, `build.sh`,
/// `docker build`. The image is removed when the returned guard drops.
fn build_example_image() -> (tempfile::TempDir, DockerImage) {
    require_docker_engine();
    require_tool("busybox", "busybox-static");
    let busybox = busybox_path();
    let work = copy_container_example();
    // What the README tells a user to do: an identity, a store, a secret.
    let run = |args: &[&str], stdin: Option<&[u8]>| {
        let mut command = Command::new(HUSHBOX);
        command
            .args(["--identity", "identity.txt"])
            .args(args)
            .current_dir(work.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::null());
        let mut child = command.spawn().unwrap();
        if let Some(bytes) = stdin {
            std::io::Write::write_all(&mut child.stdin.take().unwrap(), bytes).unwrap();
        }
        drop(child.stdin.take());
        assert!(child.wait().unwrap().success(), "hushbox {args:?}");
    };
    run(&["keygen", "-o", "identity.txt"], None);
    run(&["store", "init"], None);
    run(&["store", "set", "db_password"], Some(b"hunter2"));
    // The key the image pins (the README's step).
    let key = Command::new(HUSHBOX)
        .args([
            "--identity",
            "identity.txt",
            "store",
            "verify",
            "--print-key",
        ])
        .current_dir(work.path())
        .output()
        .unwrap();
    assert!(key.status.success(), "{}", stderr(&key));
    std::fs::write(work.path().join("integrity.key"), &key.stdout).unwrap();
    let build = Command::new(work.path().join("build.sh"))
        .env("HUSHBOX_BIN", HUSHBOX)
        .env("BUSYBOX", busybox.as_str())
        .output()
        .unwrap();
    assert!(build.status.success(), "build.sh: {}", stderr(&build));

    let image = DockerImage(format!(
        "hushbox-test-{}-{}:latest",
        std::process::id(),
        rand_suffix()
    ));
    docker(&["build", "-q", "-t", &image.0, work.path().to_str().unwrap()]);
    (work, image)
}

/// A short random name part, so tests running at once never share a name.
fn rand_suffix() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{nanos:08x}")
}

/// `docker run ARGS` to the end: exit code and everything it printed.
fn docker_run(args: &[&str]) -> (i32, String) {
    let output = Command::new("docker")
        .arg("run")
        .arg("--rm")
        .args(args)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        stderr(&output)
    );
    (output.status.code().unwrap_or(-1), text)
}

/// The identity mounted where the example's manifest reads it.
fn identity_mount(work: &Path, file: &str) -> String {
    format!("{}:/run/hushbox/identity.txt:ro", work.join(file).display())
}

#[test]
fn container_example_runs_as_the_app_user_and_stops_cleanly() {
    let (work, image) = build_example_image();
    let tag = image.0.as_str();
    let mount = identity_mount(work.path(), "identity.txt");
    let started = docker(&[
        "run",
        "-d",
        "--read-only",
        "--tmpfs",
        "/run/secrets:mode=0755",
        "--cap-drop",
        "ALL",
        "--cap-add",
        "CHOWN",
        "--cap-add",
        "SETUID",
        "--cap-add",
        "SETGID",
        "-v",
        &mount,
        tag,
    ]);
    let container = String::from_utf8(started.stdout).unwrap().trim().to_owned();
    let logs = || {
        let output = Command::new("docker")
            .args(["logs", &container])
            .output()
            .unwrap();
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            stderr(&output)
        )
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while !logs().contains("server: ready") {
        assert!(
            Instant::now() < deadline,
            "the server never got ready: {}",
            logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let stopping = Instant::now();
    docker(&["stop", &container]);
    let stop_time = stopping.elapsed();
    eprintln!("docker stop took {stop_time:?}");
    let code =
        String::from_utf8(docker(&["inspect", "-f", "{{.State.ExitCode}}", &container]).stdout)
            .unwrap();
    let all_logs = logs();
    let _ = Command::new("docker")
        .args(["rm", "-f", &container])
        .output();
    assert!(
        all_logs.contains("server: running as uid 1000, gid 1000"),
        "{all_logs}"
    );
    assert!(
        all_logs.contains("is mode 400, owned by 1000"),
        "{all_logs}"
    );
    assert!(all_logs.contains("the password has 7 bytes"), "{all_logs}");
    assert!(
        all_logs.contains("server: SIGTERM, shutting down"),
        "{all_logs}"
    );
    assert_eq!(code.trim(), "42", "{all_logs}");
    assert!(
        stop_time < Duration::from_secs(5),
        "docker stop took {stop_time:?}"
    );
}

/// The example started as its app user (`docker run --user 1000:1000`), as
/// platforms that refuse root containers do: the image's `exec --user app`
/// is then a no-op, the store (integrity file included) is readable, and the
/// tmpfs belongs to the app's user, so no capability is needed at all.
#[test]
fn container_example_runs_without_root_and_without_capabilities() {
    let (work, image) = build_example_image();
    // hushbox reads the identity as the app's user here: it must be theirs.
    let identity = work.path().join("identity-app.txt");
    std::fs::copy(work.path().join("identity.txt"), &identity).unwrap();
    std::os::unix::fs::chown(&identity, Some(1000), Some(1000)).unwrap();
    let mount = identity_mount(work.path(), "identity-app.txt");
    let (code, logs) = docker_run(&[
        "--user",
        "1000:1000",
        "--read-only",
        "--tmpfs",
        "/run/secrets:mode=0700,uid=1000,gid=1000",
        "--cap-drop",
        "ALL",
        "--security-opt",
        "no-new-privileges",
        "-v",
        &mount,
        "--entrypoint",
        "/hushbox",
        &image.0,
        "exec",
        "--user",
        "app",
        "--",
        "/bin/sh",
        "-c",
        "echo \"uid=$(id -u) gid=$(id -g) groups=$(id -G)\"; \
         stat -L -c 'file=%a %u:%g' \"$DB_PASSWORD_FILE\"; wc -c < \"$DB_PASSWORD_FILE\"",
    ]);
    assert_eq!(code, 0, "{logs}");
    assert!(logs.contains("uid=1000 gid=1000 groups=1000"), "{logs}");
    assert!(logs.contains("file=400 1000:1000"), "{logs}");
    assert!(logs.contains("\n7\n"), "{logs}");
    assert!(!logs.contains("setgroups"), "{logs}");
}

/// What a user gets wrong first in a hardened container, each answered by
/// an error that names the fix: a read-only root without a tmpfs for the
/// output directory, and `--cap-drop ALL` without CHOWN while `--user`
/// decides the files' owner.
#[test]
fn container_errors_name_the_missing_tmpfs_and_where_the_owner_came_from() {
    let (work, image) = build_example_image();
    let mount = identity_mount(work.path(), "identity.txt");
    let (code, logs) = docker_run(&[
        "--read-only",
        "--cap-drop",
        "ALL",
        "--cap-add",
        "CHOWN",
        "--cap-add",
        "SETUID",
        "--cap-add",
        "SETGID",
        "-v",
        &mount,
        &image.0,
    ]);
    assert_eq!(code, 74, "{logs}");
    assert!(logs.contains("Read-only file system"), "{logs}");
    assert!(
        logs.contains("mount a tmpfs there (Docker: `--tmpfs /run/secrets:mode=0755`"),
        "{logs}"
    );
    assert!(logs.contains("Compose: `tmpfs:"), "{logs}");

    let (code, logs) = docker_run(&[
        "--read-only",
        "--tmpfs",
        "/run/secrets:mode=0755",
        "--cap-drop",
        "ALL",
        "--cap-add",
        "SETUID",
        "--cap-add",
        "SETGID",
        "-v",
        &mount,
        &image.0,
    ]);
    assert_eq!(code, 77, "{logs}");
    assert!(
        logs.contains("cannot give the secret files to uid 1000, gid 1000 (from `--user app`)"),
        "{logs}"
    );
    assert!(logs.contains("--cap-add CHOWN"), "{logs}");
    assert!(!logs.contains("[output]"), "{logs}");
    assert!(!logs.contains("server: ready"), "{logs}");
}

/// The example's `.dockerignore` keeps everything but the assembled root
/// file system out of the build context: the identity never reaches the
/// daemon, whatever a Dockerfile there copies.
#[test]
fn container_example_build_context_holds_no_identity() {
    require_docker_engine();
    let work = copy_container_example();
    for (file, text) in [
        ("identity.txt", "AGE-SECRET-KEY-1CANARY"),
        ("integrity.key", "00"),
        ("rootfs/marker", "rootfs"),
        ("secrets/db_password.age", "ciphertext"),
    ] {
        let path = work.path().join(file);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    // A Dockerfile that copies the whole context shows what the daemon got.
    std::fs::write(
        work.path().join("Dockerfile"),
        "FROM scratch\nCOPY . /context/\n",
    )
    .unwrap();
    let image = DockerImage(format!("hushbox-test-context-{}", rand_suffix()));
    docker(&["build", "-q", "-t", &image.0, work.path().to_str().unwrap()]);
    let container = String::from_utf8(docker(&["create", &image.0, "/none"]).stdout)
        .unwrap()
        .trim()
        .to_owned();
    let export = Command::new("sh")
        .args(["-c", &format!("docker export {container} | tar -t")])
        .output()
        .unwrap();
    let _ = Command::new("docker").args(["rm", &container]).output();
    let files = String::from_utf8_lossy(&export.stdout).into_owned();
    assert!(export.status.success(), "{}", stderr(&export));
    assert!(files.contains("context/rootfs/marker"), "{files}");
    for absent in [
        "identity.txt",
        "integrity.key",
        "db_password.age",
        "build.sh",
    ] {
        assert!(
            !files.contains(absent),
            "{absent} reached the daemon: {files}"
        );
    }
}

/// `exec` gives the app the ignored signals it was itself started with, as
/// tini does: `nohup hushbox exec -- app` keeps SIGHUP ignored. Every other
/// disposition is the default (hushbox's own SIGTTIN/SIGTTOU and Rust's
/// SIGPIPE ignores do not leak). Compared side by side with tini.
#[test]
fn exec_passes_on_ignored_signals_as_tini_does() {
    require_tool("tini", "tini");
    let project = Project::new("");
    let sig_ign = |ignore: &str, init: &[&str]| -> String {
        let output = Command::new("env")
            .args(if ignore.is_empty() {
                vec![]
            } else {
                vec![ignore]
            })
            .args(init)
            .args(["grep", "^SigIgn:", "/proc/self/status"])
            .current_dir(project.dir.path())
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap())
            .env("HOME", project.dir.path())
            .env("HUSHBOX_IDENTITY", project.dir.path().join("identity.txt"))
            .output()
            .unwrap();
        assert!(output.status.success(), "{init:?}: {}", stderr(&output));
        String::from_utf8(output.stdout).unwrap().trim().to_owned()
    };
    let tini: &[&str] = &["tini", "-s", "--"];
    let hushbox: &[&str] = &[HUSHBOX, "exec", "--"];
    // Each case: what the program sees without any init in between, through
    // tini, and through hushbox. (The test's own parent may leave glibc's
    // signal 32 ignored, as glibc's posix_spawn does: it passes on too.)
    for (ignore, bits) in [
        // SIGHUP (1), SIGINT (2) and SIGTTOU (22): bits 0, 1 and 21.
        ("--ignore-signal=INT,TTOU,HUP", 0x0020_0003),
        // SIGPIPE (13), which Rust's start-up code ignores in hushbox itself.
        ("--ignore-signal=PIPE", 0x1000),
        // Nothing: none of hushbox's own ignores (SIGTTIN, SIGTTOU, SIGPIPE).
        ("", 0),
    ] {
        let direct = sig_ign(ignore, &[]);
        let mask = u64::from_str_radix(direct.trim_start_matches("SigIgn:\t"), 16).unwrap();
        assert_eq!(mask & 0xffff_ffff & !(1 << 31), bits, "{ignore}: {direct}");
        assert_eq!(sig_ign(ignore, tini), direct, "tini, {ignore}");
        assert_eq!(sig_ign(ignore, hushbox), direct, "hushbox, {ignore}");
    }
    // nohup's own way of ignoring SIGHUP.
    let nohup = Command::new("nohup")
        .args([
            HUSHBOX,
            "exec",
            "--",
            "grep",
            "^SigIgn:",
            "/proc/self/status",
        ])
        .current_dir(project.dir.path())
        .env("HUSHBOX_IDENTITY", project.dir.path().join("identity.txt"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(nohup.status.success(), "{}", stderr(&nohup));
    let mask = String::from_utf8_lossy(&nohup.stdout);
    let mask = u64::from_str_radix(mask.trim().trim_start_matches("SigIgn:\t"), 16).unwrap();
    assert_eq!(
        mask & 0xffff,
        1,
        "SIGHUP, as nohup set it, and nothing else"
    );
}

/// `scripts/image`: a FROM scratch image holding the one static binary at
/// `/hushbox`, non-root by default, labelled with version and source; a
/// dynamically linked binary is refused (it could not start there). A
/// static busybox stands in for the static hushbox, whose release build
/// takes minutes.
#[test]
fn image_script_builds_a_non_root_scratch_image() {
    require_docker_engine();
    require_tool("busybox", "busybox-static");
    require_tool("readelf", "binutils");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/image");
    let refused = Command::new(&script)
        .env("HUSHBOX_BIN", HUSHBOX)
        .env("TAG", "hushbox-test-refused:latest")
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(1), "{}", stderr(&refused));
    assert!(
        stderr(&refused).contains("dynamically linked"),
        "{}",
        stderr(&refused)
    );

    let image = DockerImage(format!("hushbox-test-image-{}:latest", rand_suffix()));
    let built = Command::new(&script)
        .env("HUSHBOX_BIN", busybox_path())
        .env("TAG", &image.0)
        .output()
        .unwrap();
    assert!(built.status.success(), "{}", stderr(&built));
    let inspect = |format: &str| {
        String::from_utf8(docker(&["image", "inspect", "-f", format, &image.0]).stdout)
            .unwrap()
            .trim()
            .to_owned()
    };
    assert_eq!(inspect("{{.Config.User}}"), "65532:65532");
    assert_eq!(inspect("{{json .Config.Entrypoint}}"), r#"["/hushbox"]"#);
    assert_eq!(
        inspect(r#"{{index .Config.Labels "org.opencontainers.image.version"}}"#),
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(
        inspect(r#"{{index .Config.Labels "org.opencontainers.image.source"}}"#),
        "https://github.com/hushbox/hushbox"
    );
    // One layer, one file: no shell, no libraries.
    let container = String::from_utf8(docker(&["create", &image.0]).stdout)
        .unwrap()
        .trim()
        .to_owned();
    let export = Command::new("sh")
        .args(["-c", &format!("docker export {container} | tar -t")])
        .output()
        .unwrap();
    let _ = Command::new("docker").args(["rm", &container]).output();
    let files: Vec<String> = String::from_utf8_lossy(&export.stdout)
        .lines()
        // What the engine adds to every container's file system.
        .filter(|file| {
            !file.starts_with("dev/")
                && !file.starts_with("etc/")
                && !file.starts_with("proc/")
                && !file.starts_with("sys/")
                && *file != ".dockerenv"
        })
        .map(str::to_owned)
        .collect();
    assert_eq!(files, ["hushbox"], "{files:?}");
    assert_eq!(inspect("{{len .RootFS.Layers}}"), "1");
}

/// `build.sh` with a static binary (what it builds by default): `ldd` fails
/// on it, and the script must still assemble the whole root filesystem.
#[test]
fn container_build_script_takes_a_static_binary() {
    require_tool("busybox", "busybox-static");
    let busybox = busybox_path();
    let work = copy_container_example();
    std::fs::create_dir(work.path().join("secrets")).unwrap();
    let key = "00112233445566778899aabbccddeeff";
    std::fs::write(work.path().join("integrity.key"), format!("{key}\n")).unwrap();
    // A static executable stands in for a static hushbox.
    let build = Command::new(work.path().join("build.sh"))
        .env("HUSHBOX_BIN", busybox.as_str())
        .env("BUSYBOX", busybox.as_str())
        .output()
        .unwrap();
    assert!(build.status.success(), "build.sh: {}", stderr(&build));
    let rootfs = work.path().join("rootfs");
    for file in [
        "hushbox",
        "bin/sh",
        "etc/passwd",
        "etc/group",
        "app/hushbox.toml",
    ] {
        assert!(rootfs.join(file).exists(), "rootfs lacks {file}");
    }
    // The image's manifest pins the key, in the store's own section.
    let manifest = std::fs::read_to_string(rootfs.join("app/hushbox.toml")).unwrap();
    assert!(
        manifest.contains(&format!("kind = \"age\"\nintegrity_key = \"{key}\"\n")),
        "{manifest}"
    );
    assert!(
        !rootfs.join("lib").exists(),
        "a static binary needs no libraries"
    );
}

/// The static busybox the container example puts in its image.
fn busybox_path() -> String {
    let output = Command::new("sh")
        .args(["-c", "command -v busybox"])
        .output()
        .unwrap();
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

/// A copy of examples/container in a temporary directory.
fn copy_container_example() -> tempfile::TempDir {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/container");
    let work = tempfile::tempdir().unwrap();
    for file in [
        "Dockerfile",
        "hushbox.toml",
        "server.sh",
        "build.sh",
        ".dockerignore",
    ] {
        std::fs::copy(example.join(file), work.path().join(file)).unwrap();
    }
    work
}
