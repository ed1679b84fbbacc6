//! The `hushbox` binary as a user runs it: keygen, store, get, check,
//! inject and run, on the embedded default (the age store, no server).
//!
//! Every test gets a fresh project directory with its own identity and store.

mod common;

use common::{code, require_tool, stderr, stdout, tmpfs_dir};

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const HUSHBOX: &str = env!("CARGO_BIN_EXE_hushbox");

/// A project directory with an identity, a store and a manifest.
struct Project {
    dir: tempfile::TempDir,
}

impl Project {
    fn new(manifest: &str) -> Self {
        require_tool("age", "age");
        let project = Self {
            dir: tempfile::tempdir().unwrap(),
        };
        std::fs::write(project.path("hushbox.toml"), manifest).unwrap();
        project.ok(&["keygen"], None);
        project.ok(&["store", "init"], None);
        project
    }

    /// A project whose manifest uses the store in `./secrets`.
    fn with_store() -> Self {
        Self::new("version = 1\n[backends.age]\nkind = \"age\"\nstore = \"secrets\"\n")
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = common::hushbox_command(self.dir.path(), self.dir.path(), args);
        command
            .env("HUSHBOX_IDENTITY", self.path("identity.txt"))
            .env("HUSHBOX_LOG", "trace");
        command
    }

    fn run(&self, args: &[&str], stdin: Option<&[u8]>) -> Output {
        self.run_with(self.command(args), stdin)
    }

    fn run_with(&self, command: Command, stdin: Option<&[u8]>) -> Output {
        common::run_with_stdin(command, stdin)
    }

    fn ok(&self, args: &[&str], stdin: Option<&[u8]>) -> Output {
        let output = self.run(args, stdin);
        assert!(
            output.status.success(),
            "hushbox {args:?} failed: {}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        output
    }

    fn set(&self, name: &str, value: &[u8]) {
        self.ok(&["store", "set", "--raw", name], Some(value));
    }
}

#[test]
fn demo_script_runs_end_to_end() {
    require_tool("age", "age");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let output = Command::new(root.join("scripts/demo"))
        .env("HUSHBOX_BIN", HUSHBOX)
        .output()
        .unwrap();
    let out = stdout(&output);
    assert!(output.status.success(), "{out}\n{}", stderr(&output));
    assert!(
        out.contains("app: the password is: correct horse battery staple"),
        "{out}"
    );
    assert!(out.contains("on a tmpfs filesystem, mode 400"), "{out}");
    assert!(out.contains("db_password.age"), "{out}");
}

#[test]
fn store_set_get_ls_rm() {
    let project = Project::with_store();
    project.ok(&["store", "set", "prod/db"], Some(b"s3cret\n"));
    project.set("prod/raw", b"line\n");
    assert_eq!(
        project.ok(&["store", "get", "prod/db"], None).stdout,
        b"s3cret"
    );
    assert_eq!(
        project.ok(&["store", "get", "prod/raw"], None).stdout,
        b"line\n"
    );
    assert_eq!(
        stdout(&project.ok(&["store", "ls"], None)),
        "prod/db\nprod/raw\n"
    );
    project.ok(&["store", "rm", "prod/raw"], None);
    let missing = project.run(&["store", "get", "prod/raw"], None);
    assert_eq!(code(&missing), 66, "{}", stderr(&missing));
    assert!(project.path("secrets/prod/db.age").is_file());
}

#[test]
fn files_written_by_hushbox_decrypt_with_the_reference_age_cli_and_back() {
    let project = Project::with_store();
    let value: Vec<u8> = (0..=255u8).collect();
    project.set("bin", &value);
    let decrypted = Command::new("age")
        .args(["-d", "-i"])
        .arg(project.path("identity.txt"))
        .arg(project.path("secrets/bin.age"))
        .output()
        .unwrap();
    assert!(decrypted.status.success(), "{}", stderr(&decrypted));
    assert_eq!(decrypted.stdout, value);

    let mut age = Command::new("age")
        .args(["-a", "-R"])
        .arg(project.path("secrets/.age-recipients"))
        .arg("-o")
        .arg(project.path("secrets/from-age.age"))
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    age.stdin.take().unwrap().write_all(b"made by age").unwrap();
    assert!(age.wait().unwrap().success());
    // A file hushbox did not write is refused until it is accepted into
    // the store's integrity manifest (tests/store.rs covers why).
    project.ok(&["store", "accept", "from-age"], None);
    let output = project.ok(&["get", "age://from-age"], None);
    assert_eq!(output.stdout, b"made by age");
}

#[test]
fn run_gives_files_values_and_env_references_and_cleans_up() {
    let project = Project::new(
        "version = 1\n[backends.age]\nkind = \"age\"\nstore = \"secrets\"\n\
         [secrets.db_password]\nref = \"age://db#password\"\nenv = \"DB_PASSWORD_FILE\"\n\
         [secrets.token]\nref = \"age://token\"\nenv_value = \"TOKEN\"\n",
    );
    project.set("db", br#"{"user":"app","password":"pa ss"}"#);
    project.set("token", b"tok-123");
    project.set("api", b"api-value");
    let mut command = project.command(&[
        "run",
        "--",
        "sh",
        "-c",
        "echo \"path=$DB_PASSWORD_FILE\"; echo \"db=$(cat \"$DB_PASSWORD_FILE\")\"; \
         echo \"token=$TOKEN\"; echo \"api=$API_KEY\"; echo \"cert=$(cat \"$CERT_FILE\")\"; \
         echo \"identity=${HUSHBOX_IDENTITY:-unset}\"; exit 3",
    ]);
    command
        .env("API_KEY", "age://api")
        .env("CERT_FILE", "age://token")
        .env("HOMEPAGE", "https://example.org");
    let output = project.run_with(command, None);
    let out = stdout(&output);
    assert_eq!(code(&output), 3, "{out}\n{}", stderr(&output));
    assert!(out.contains("db=pa ss\n"), "{out}");
    assert!(out.contains("token=tok-123\n"), "{out}");
    assert!(out.contains("api=api-value\n"), "{out}");
    assert!(out.contains("cert=tok-123\n"), "{out}");
    assert!(out.contains("identity=unset\n"), "{out}");
    let path = out
        .lines()
        .find_map(|line| line.strip_prefix("path="))
        .unwrap();
    assert!(!Path::new(path).exists(), "{path} outlived the run");
    assert!(
        !Path::new(path).parent().unwrap().exists(),
        "the run directory outlived the run"
    );
}

/// `run --keep` for a Compose stack on a laptop: the files outlive the
/// command in one directory per project, owned as `[output]` says (the
/// container's user reads them through a bind mount), refreshed by the next
/// kept run, and removed by `run --discard` once its command ends.
#[test]
fn run_keep_leaves_the_project_directory_until_discard() {
    let project = Project::new(
        "version = 1\n[backends.age]\nkind = \"age\"\nstore = \"secrets\"\n\
         [output]\nuid = 1000\ngid = 1001\n\
         [secrets.db_password]\nref = \"age://db\"\nenv = \"DB_PASSWORD_FILE\"\n",
    );
    let runtime = tmpfs_dir();
    let kept_run = |flag: &str| {
        let mut command =
            project.command(&["run", flag, "--", "sh", "-c", "echo \"$DB_PASSWORD_FILE\""]);
        command.env("XDG_RUNTIME_DIR", runtime.path());
        let output = project.run_with(command, None);
        assert_eq!(code(&output), 0, "{}", stderr(&output));
        PathBuf::from(stdout(&output).trim())
    };
    let stat = |path: &Path| {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(path).unwrap();
        (meta.uid(), meta.gid(), meta.mode() & 0o7777)
    };

    project.set("db", b"first");
    let file = kept_run("--keep");
    let dir = file.parent().unwrap().to_owned();
    assert!(dir.starts_with(runtime.path()), "{}", dir.display());
    assert_eq!(std::fs::read(&file).unwrap(), b"first");
    assert_eq!(stat(&file), (1000, 1001, 0o400));
    assert_eq!(stat(&dir).2, 0o700);

    // The same directory next time, with the new value.
    project.set("db", b"second");
    assert_eq!(kept_run("--keep"), file);
    assert_eq!(std::fs::read(&file).unwrap(), b"second");
    // A plain run neither uses nor sweeps it.
    let output = project.run(&["run", "--", "true"], None);
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    assert!(file.exists());

    // --discard: the command still gets the files, then they go.
    assert_eq!(kept_run("--discard"), file);
    assert!(!dir.exists(), "{} outlived --discard", dir.display());

    // A directory someone else made at the name is refused, never used.
    std::fs::create_dir(&dir).unwrap();
    std::os::unix::fs::chown(&dir, Some(65534), None).unwrap();
    let mut command = project.command(&["run", "--keep", "--", "true"]);
    command.env("XDG_RUNTIME_DIR", runtime.path());
    let output = project.run_with(command, None);
    assert_eq!(code(&output), 77, "{}", stderr(&output));
    assert!(stderr(&output).contains("refusing"), "{}", stderr(&output));
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
}

#[test]
fn run_passes_exit_codes_through() {
    let project = Project::with_store();
    let not_executable = project.path("hushbox.toml");
    let cases: [(&[&str], i32); 4] = [
        (&["sh", "-c", "exit 0"], 0),
        (&["sh", "-c", "kill -TERM $$"], 128 + 15),
        (&["/nonexistent/program"], 127),
        (&[not_executable.to_str().unwrap()], 126),
    ];
    for (command, expected) in cases {
        let mut args = vec!["run", "--"];
        args.extend_from_slice(command);
        let output = project.run(&args, None);
        assert_eq!(code(&output), expected, "{command:?}: {}", stderr(&output));
    }
}

#[test]
fn run_removes_its_directory_when_hushbox_is_terminated() {
    let project = Project::new(
        "version = 1\n[backends.age]\nkind = \"age\"\nstore = \"secrets\"\n\
         [secrets.a]\nref = \"age://a\"\nenv = \"A_FILE\"\n",
    );
    project.set("a", b"value");
    let mut child = project
        .command(&["run", "--", "sh", "-c", "echo \"$A_FILE\"; exec sleep 30"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.as_mut().unwrap()),
        &mut line,
    )
    .unwrap();
    let path = PathBuf::from(line.trim());
    assert!(path.exists(), "the secret file exists while the child runs");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let started = Instant::now();
    let status = child.wait().unwrap();
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(status.code(), Some(128 + 15));
    assert!(!path.exists(), "{} outlived SIGTERM", path.display());
}

/// A stop signal ends `run` promptly whenever it arrives: before signals
/// are blocked (its default action), during setup (hushbox stops before the
/// program), or once the program runs (it is forwarded), swept over the
/// first 32 ms. (A watcher thread that outlived setup once took such a
/// signal under load, raised it again, and the supervisor dropped it as
/// self-sent; on a quiet machine the supervisor usually takes the signal
/// first, so this sweep guards the behaviour rather than that race.)
#[test]
fn a_sigterm_at_any_moment_of_start_up_ends_run_promptly() {
    let project = Project::with_store();
    project.set("a", b"value");
    for step in 0..80u64 {
        let mut child = project
            .command(&["run", "--", "sleep", "30"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_micros(step * 400));
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        let started = Instant::now();
        let status = child.wait().unwrap();
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "a SIGTERM {} µs after the start was lost",
            step * 400
        );
        // Before hushbox blocks signals, SIGTERM's default action ends it.
        let by_sigterm = std::os::unix::process::ExitStatusExt::signal(&status) == Some(15);
        assert!(
            status.code() == Some(128 + 15) || by_sigterm,
            "{status:?} after {} µs",
            step * 400
        );
    }
}

#[test]
fn both_x_and_x_file_is_a_config_error() {
    let project = Project::with_store();
    project.set("db", b"v");
    let mut command = project.command(&["run", "--", "true"]);
    command.env("DB", "plain").env("DB_FILE", "age://db");
    let output = project.run_with(command, None);
    assert_eq!(code(&output), 78);
    assert!(
        stderr(&output).contains("both DB and DB_FILE are set"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn missing_required_secret_fails_closed_and_keeps_the_previous_generation() {
    let out = tmpfs_dir();
    let manifest = format!(
        "version = 1\n[backends.age]\nkind = \"age\"\nstore = \"secrets\"\n[output]\ndir = \"{}\"\n\
         [secrets.a]\nref = \"age://a\"\n[secrets.b]\nref = \"age://b\"\n[secrets.c]\nref = \"age://c\"\noptional = true\n",
        out.path().display()
    );
    let project = Project::new(&manifest);
    project.set("a", b"one");
    project.set("b", b"two");
    project.ok(&["inject"], None);
    assert_eq!(std::fs::read(out.path().join("a")).unwrap(), b"one");
    assert!(
        !out.path().join("c").exists(),
        "optional and missing: skipped"
    );
    let entries_before = std::fs::read_dir(out.path()).unwrap().count();

    project.set("a", b"changed");
    project.ok(&["store", "rm", "b"], None);
    let output = project.run(&["inject"], None);
    assert_eq!(code(&output), 66, "{}", stderr(&output));
    assert!(stderr(&output).contains("age://b"), "{}", stderr(&output));
    assert_eq!(std::fs::read(out.path().join("a")).unwrap(), b"one");
    assert_eq!(std::fs::read(out.path().join("b")).unwrap(), b"two");
    assert_eq!(
        std::fs::read_dir(out.path()).unwrap().count(),
        entries_before
    );

    // run: the child never starts.
    let marker = project.path("started");
    let output = project.run(&["run", "--", "touch", marker.to_str().unwrap()], None);
    assert_eq!(code(&output), 66);
    assert!(!marker.exists(), "the child started without its secrets");
}

#[test]
fn inject_refuses_a_disk_directory_unless_allowed() {
    let project = Project::with_store();
    let disk = project.path("out");
    std::fs::create_dir(&disk).unwrap();
    let output = project.run(&["inject", "--dir", disk.to_str().unwrap()], None);
    assert_eq!(code(&output), 78, "{}", stderr(&output));
    assert!(
        stderr(&output).contains("--allow-disk"),
        "{}",
        stderr(&output)
    );
    project.ok(
        &["inject", "--dir", disk.to_str().unwrap(), "--allow-disk"],
        None,
    );
}

#[test]
fn inject_writes_mode_and_content_and_skips_unchanged() {
    let out = tmpfs_dir();
    let manifest = format!(
        "version = 1\n[backends.age]\nkind = \"age\"\nstore = \"secrets\"\n[output]\ndir = \"{}\"\nmode = \"0440\"\n\
         [secrets.user]\nref = \"age://db#user\"\n[secrets.password]\nref = \"age://db#password\"\n",
        out.path().display()
    );
    let project = Project::new(&manifest);
    project.set("db", br#"{"user":"app","password":"pw"}"#);
    let first = project.ok(&["inject"], None);
    assert!(
        stderr(&first).contains("wrote 2 secrets"),
        "{}",
        stderr(&first)
    );
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(out.path().join("password")).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o440);
    assert_eq!(std::fs::read(out.path().join("user")).unwrap(), b"app");
    let second = project.ok(&["inject"], None);
    assert!(stderr(&second).contains("unchanged"), "{}", stderr(&second));
}

#[test]
fn manifest_errors_have_codes_and_places() {
    let project = Project::with_store();
    let cases = [
        (
            "version = 1\n[secrets.a]\nref = \"age://a\"\nfoo = 1\n",
            "hushbox.toml:4:1",
        ),
        (
            "version = 1\n[backends.v]\nkind = \"file\"\ntoken = \"x\"\n",
            "token_file",
        ),
        (
            "version = 1\n[secrets.\"../x\"]\nref = \"age://a\"\n",
            "../x",
        ),
        (
            "version = 1\n[secrets.a]\nref = \"nope://a\"\n",
            "no backend is named `nope`",
        ),
    ];
    for (manifest, expected) in cases {
        std::fs::write(project.path("hushbox.toml"), manifest).unwrap();
        let output = project.run(&["check"], None);
        assert_eq!(code(&output), 78, "{manifest}: {}", stderr(&output));
        assert!(
            stderr(&output).contains(expected),
            "{manifest}: {}",
            stderr(&output)
        );
    }
}

#[test]
fn wrong_identity_and_tampered_files_are_refused() {
    let project = Project::with_store();
    project.set("a", b"value");
    let other = project.path("other.txt");
    project.ok(&["keygen", "-o", other.to_str().unwrap()], None);
    let output = project.run(&["--identity", "other.txt", "get", "age://a"], None);
    assert_eq!(code(&output), 77, "{}", stderr(&output));

    let file = project.path("secrets/a.age");
    let mut bytes = std::fs::read(&file).unwrap();
    let last = bytes.len() - 5;
    bytes[last] ^= 1;
    std::fs::write(&file, &bytes).unwrap();
    let output = project.run(&["get", "age://a"], None);
    assert_eq!(code(&output), 65, "{}", stderr(&output));
    std::fs::write(&file, &bytes[..bytes.len() / 2]).unwrap();
    let output = project.run(&["get", "age://a"], None);
    assert_eq!(code(&output), 65, "{}", stderr(&output));

    std::fs::remove_file(project.path("identity.txt")).unwrap();
    let output = project.run(&["get", "age://a"], None);
    assert_eq!(code(&output), 78, "{}", stderr(&output));
    assert!(stderr(&output).contains("keygen"), "{}", stderr(&output));
}

#[test]
fn file_backend_with_fields_and_size_limit() {
    let project = Project::with_store();
    std::fs::write(project.path("app.env"), "USER=app\nPASSWORD=\"p w\"\n").unwrap();
    std::fs::write(project.path("big"), vec![b'x'; 2 * 1024 * 1024]).unwrap();
    assert_eq!(
        project.ok(&["get", "file://app.env#PASSWORD"], None).stdout,
        b"p w"
    );
    let output = project.run(&["get", "file://big"], None);
    assert_eq!(code(&output), 65, "{}", stderr(&output));
    let output = project.run(&["get", "file://absent"], None);
    assert_eq!(code(&output), 66, "{}", stderr(&output));
}
