//! One test per class of error a user meets, run through the binary: each
//! says what happened, where, why (the OS's reason: "Permission denied" is
//! not "No such file or directory") and what to do, in one or two lines,
//! with the exit code the README documents.
//!
//! A refusal needs a user the OS refuses: the tests run as root, so those
//! commands run as the local user `hushbox-victim` (created with `useradd`,
//! run through `setpriv`, see `common/users.rs`).

mod common;

use common::users::LocalUser;
use common::{HUSHBOX, code, run_with_stdin, stderr};

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

/// The README's exit codes this file checks (`src/exit.rs` defines them).
const DATA: i32 = 65;
const NOT_FOUND: i32 = 66;
const UNAVAILABLE: i32 = 69;
const PERMISSION: i32 = 77;
const CONFIG: i32 = 78;

/// The OS's words for the two failures a user must tell apart.
const DENIED: &str = "Permission denied (os error 13)";
const MISSING: &str = "No such file or directory (os error 2)";
/// What hushbox adds to every refusal.
const CHECK_MODE: &str = "check its owner and mode";

/// Asserts the shape every error has: `hushbox: error: ` first, at most two
/// lines, the exit code, and each of `needles`.
fn assert_error(output: &Output, expected: i32, needles: &[&str]) {
    let text = stderr(output);
    assert_eq!(code(output), expected, "{text}");
    assert!(text.starts_with("hushbox: error: "), "{text}");
    assert!(
        text.trim_end().lines().count() <= 2,
        "more than two lines:\n{text}"
    );
    for needle in needles {
        assert!(text.contains(needle), "`{needle}` missing from:\n{text}");
    }
}

fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

/// A project of the local user `hushbox-victim`, in a directory of its own
/// with its own home: an identity, a store in `secrets/` holding `dev/A`,
/// and a manifest naming the store.
struct Project {
    user: LocalUser,
    _root: tempfile::TempDir,
    home: PathBuf,
    dir: PathBuf,
}

impl Project {
    fn new() -> Self {
        let user = LocalUser::victim();
        let root = tempfile::Builder::new()
            .prefix("hushbox-errors-")
            .tempdir()
            .unwrap();
        user.chown(root.path());
        let home = root.path().join("home");
        let dir = root.path().join("project");
        for path in [&home, &dir] {
            fs::create_dir(path).unwrap();
            user.chown(path);
        }
        let manifest = dir.join("hushbox.toml");
        fs::write(
            &manifest,
            "version = 1\n\n[backends.age]\nkind = \"age\"\nstore = \"secrets\"\n",
        )
        .unwrap();
        user.chown(&manifest);
        let project = Project {
            user,
            _root: root,
            home,
            dir,
        };
        project.ok(&["keygen"], None);
        project.ok(&["store", "init"], None);
        project.ok(&["store", "set", "dev/A"], Some(b"value-a"));
        project
    }

    /// hushbox as the user, in the project, with its home.
    fn run_in(&self, dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut command = self.user.command(HUSHBOX);
        command.args(args).current_dir(dir).env("HOME", &self.home);
        for (name, value) in env {
            command.env(name, value);
        }
        run_with_stdin(command, None)
    }

    fn run(&self, args: &[&str]) -> Output {
        self.run_in(&self.dir, args, &[])
    }

    fn ok(&self, args: &[&str], stdin: Option<&[u8]>) -> Output {
        let mut command = self.user.command(HUSHBOX);
        command
            .args(args)
            .current_dir(&self.dir)
            .env("HOME", &self.home);
        let output = run_with_stdin(command, stdin);
        assert!(
            output.status.success(),
            "hushbox {args:?}: {}",
            stderr(&output)
        );
        output
    }

    fn path(&self, relative: &str) -> PathBuf {
        self.dir.join(relative)
    }

    fn identity(&self) -> PathBuf {
        self.home.join(".config/hushbox/identity.txt")
    }

    /// A file or directory of the user's, made unreadable for one call.
    fn refused<T>(&self, path: &Path, call: impl FnOnce() -> T) -> T {
        let mode = fs::metadata(path).unwrap().permissions().mode() & 0o7777;
        chmod(path, 0o000);
        let result = call();
        chmod(path, mode);
        result
    }

    /// A file moved away for one call.
    fn moved<T>(&self, path: &Path, call: impl FnOnce() -> T) -> T {
        let aside = path.with_extension("aside");
        fs::rename(path, &aside).unwrap();
        let result = call();
        fs::rename(&aside, path).unwrap();
        result
    }
}

#[test]
fn identity_file_refused_and_missing_say_which_and_what_to_do() {
    let project = Project::new();
    let identity = project.identity();
    let shown = identity.display().to_string();

    let output = project.refused(&identity, || project.run(&["get", "age://dev/A"]));
    assert_error(
        &output,
        PERMISSION,
        &[
            "age://dev/A",
            "cannot read identity file",
            &shown,
            DENIED,
            CHECK_MODE,
        ],
    );

    // The default path, filled in because nothing named one, is named as
    // the default, with the settings that would choose another.
    let output = project.moved(&identity, || project.run(&["get", "age://dev/A"]));
    assert_error(
        &output,
        CONFIG,
        &[
            "the default identity file",
            &shown,
            "does not exist",
            "HUSHBOX_IDENTITY",
            "hushbox keygen",
        ],
    );

    // A path the user named is not called a default.
    let named = project.dir.join("elsewhere.txt");
    let output = project.run_in(
        &project.dir,
        &["get", "age://dev/A"],
        &[("HUSHBOX_IDENTITY", named.to_str().unwrap())],
    );
    assert_error(
        &output,
        CONFIG,
        &[&named.display().to_string(), "hushbox keygen"],
    );
    assert!(!stderr(&output).contains("default"), "{}", stderr(&output));
}

#[test]
fn store_file_refused_and_missing_say_which() {
    let project = Project::new();
    let file = project.path("secrets/dev/A.age");
    let output = project.refused(&file, || project.run(&["get", "age://dev/A"]));
    assert_error(
        &output,
        PERMISSION,
        &[
            "age://dev/A",
            "cannot read",
            &file.display().to_string(),
            DENIED,
            CHECK_MODE,
        ],
    );

    let output = project.run(&["get", "age://dev/B"]);
    assert_error(
        &output,
        NOT_FOUND,
        &[
            "age://dev/B",
            "no such secret",
            "secrets/dev/B.age does not exist",
        ],
    );

    // A directory of the store the user may not enter.
    let dir = project.path("secrets/dev");
    let output = project.refused(&dir, || project.run(&["get", "age://dev/A"]));
    assert_error(
        &output,
        PERMISSION,
        &[&dir.display().to_string(), DENIED, CHECK_MODE],
    );
}

#[test]
fn integrity_manifest_refused_and_missing_say_which() {
    let project = Project::new();
    let file = project.path("secrets/.hushbox-integrity");
    let output = project.refused(&file, || project.run(&["get", "age://dev/A"]));
    assert_error(
        &output,
        PERMISSION,
        &[
            "cannot read",
            &file.display().to_string(),
            DENIED,
            CHECK_MODE,
        ],
    );

    // Gone after this machine has verified it: an attack until shown
    // otherwise, with the way back.
    let output = project.moved(&file, || project.run(&["get", "age://dev/A"]));
    assert_error(
        &output,
        DATA,
        &[
            "integrity check failed",
            &file.display().to_string(),
            "is missing",
            "hushbox store accept",
        ],
    );
}

#[test]
fn manifest_refused_and_named_but_missing_say_which_and_where_the_name_came_from() {
    let project = Project::new();
    let manifest = project.path("hushbox.toml");
    let output = project.refused(&manifest, || project.run(&["check"]));
    assert_error(
        &output,
        PERMISSION,
        &[
            "cannot open the manifest",
            &manifest.display().to_string(),
            DENIED,
            CHECK_MODE,
        ],
    );

    let output = project.run(&["--config", "nope.toml", "check"]);
    assert_error(
        &output,
        CONFIG,
        &[
            "cannot open the manifest",
            "nope.toml (from --config)",
            MISSING,
            "fix the path",
        ],
    );
    let output = project.run_in(
        &project.dir,
        &["check"],
        &[("HUSHBOX_CONFIG", "/nope/hushbox.toml")],
    );
    assert_error(
        &output,
        CONFIG,
        &["/nope/hushbox.toml (from HUSHBOX_CONFIG)", MISSING],
    );
}

#[test]
fn no_manifest_says_where_hushbox_looked_not_a_later_symptom() {
    let project = Project::new();
    let nested = project._root.path().join("elsewhere/deeper");
    fs::create_dir_all(&nested).unwrap();
    project.user.chown(nested.parent().unwrap());
    project.user.chown(&nested);
    let output = project.run_in(&nested, &["inject"], &[]);
    let parent = nested.parent().unwrap();
    assert_error(
        &output,
        CONFIG,
        &[
            "no hushbox.toml found",
            &format!("looked in {}, {}, ", nested.display(), parent.display()),
            ", /",
            "neither --config nor HUSHBOX_CONFIG is set",
            "hushbox store init",
        ],
    );
    // Not the output directory's file system, or anything else after it.
    let text = stderr(&output);
    assert!(
        !text.contains("tmpfs") && !text.contains("/run/secrets"),
        "{text}"
    );

    // `check` works without one, and says where it looked too.
    let output = project.run_in(&nested, &["check"], &[]);
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    let text = common::stdout(&output);
    assert!(
        text.contains(&format!(
            "manifest: none (no hushbox.toml in {} or above it",
            nested.display()
        )),
        "{text}"
    );
}

#[test]
fn output_directory_refused_and_missing_parent_say_which() {
    let project = Project::new();
    let locked = project._root.path().join("locked");
    fs::create_dir(&locked).unwrap();
    chmod(&locked, 0o700); // root's, so the user may not enter it
    let target = locked.join("out");
    let output = project.run(&["inject", "--dir", target.to_str().unwrap(), "--allow-disk"]);
    assert_error(
        &output,
        PERMISSION,
        &[
            &target.display().to_string(),
            "output directory",
            DENIED,
            CHECK_MODE,
        ],
    );

    let target = project._root.path().join("missing/out");
    let output = project.run(&["inject", "--dir", target.to_str().unwrap(), "--allow-disk"]);
    assert_error(
        &output,
        NOT_FOUND,
        &[
            &target.display().to_string(),
            "output directory's parent",
            MISSING,
            "create it",
        ],
    );
}

#[test]
fn file_reference_refused_and_missing_say_which() {
    let project = Project::new();
    let file = project.path("token");
    fs::write(&file, "file-value").unwrap();
    project.user.chown(&file);
    chmod(&file, 0o600);
    let reference = format!("file://{}", file.display());
    let output = project.refused(&file, || project.run(&["get", &reference]));
    assert_error(
        &output,
        PERMISSION,
        &[&reference, "cannot open", DENIED, CHECK_MODE],
    );
    assert!(!stderr(&output).contains("file-value"));

    let output = project.run(&["get", "file:///nope/token"]);
    assert_error(
        &output,
        NOT_FOUND,
        &["file:///nope/token", "cannot open /nope/token", MISSING],
    );
}

#[test]
fn env_file_to_import_refused_and_missing_say_which() {
    let project = Project::new();
    let env_file = project.path(".env");
    fs::write(&env_file, "API_KEY=import-value\n").unwrap();
    project.user.chown(&env_file);
    chmod(&env_file, 0o600);
    let output = project.refused(&env_file, || project.run(&["store", "import", ".env"]));
    assert_error(
        &output,
        PERMISSION,
        &[
            &env_file.display().to_string(),
            "cannot read the .env file",
            DENIED,
            CHECK_MODE,
        ],
    );
    let output = project.run(&["store", "import", "missing.env"]);
    assert_error(
        &output,
        NOT_FOUND,
        &["missing.env", "cannot read the .env file", MISSING],
    );
}

#[test]
fn home_unset_names_the_default_age_instance_and_its_default_store() {
    let dir = tempfile::tempdir().unwrap();
    for args in [&["get", "age://dev/A"][..], &["store", "ls"][..]] {
        let output = std::process::Command::new(HUSHBOX)
            .args(args)
            .current_dir(dir.path())
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap())
            .output()
            .unwrap();
        assert_error(
            &output,
            CONFIG,
            &[
                "the default `age` backend",
                "the default store ~/.passage/store",
                "HOME, which is not set",
                "HUSHBOX_STORE",
            ],
        );
        // No section the manifest does not have.
        let text = stderr(&output);
        assert!(!text.contains("error: [backends.age]"), "{args:?}: {text}");
    }
}

#[test]
fn a_defaulted_vault_address_that_refuses_fails_at_once_and_names_vault_addr() {
    // The test needs nothing listening on the default address.
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", 8200)).is_err(),
        "something listens on 127.0.0.1:8200, the address this test needs free"
    );
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let output = std::process::Command::new(HUSHBOX)
        .args(["get", "vault://secret/app#password"])
        .current_dir(dir.path())
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap())
        .env("HOME", dir.path())
        .env("VAULT_TOKEN", "test-token")
        .output()
        .unwrap();
    let took = started.elapsed();
    assert_error(
        &output,
        UNAVAILABLE,
        &[
            "vault://secret/app",
            "cannot connect to https://127.0.0.1:8200: connection refused",
            "VAULT_ADDR (and BAO_ADDR) is unset",
            "default https://127.0.0.1:8200 was assumed",
            "set VAULT_ADDR",
        ],
    );
    // Not the 15 s of retries meant for a server that is starting.
    assert!(took < Duration::from_secs(5), "took {took:?}");

    // An address the user set is retried as ever (here for one second, as
    // its manifest says), and not called a default.
    fs::write(
        dir.path().join("hushbox.toml"),
        "version = 1\n[backends.vault]\nkind = \"vault\"\naddress = \"http://127.0.0.1:8200\"\nretry_deadline = \"1s\"\n",
    )
    .unwrap();
    let output = std::process::Command::new(HUSHBOX)
        .args(["get", "vault://secret/app#password"])
        .current_dir(dir.path())
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap())
        .env("HOME", dir.path())
        .env("VAULT_TOKEN", "test-token")
        .output()
        .unwrap();
    assert_eq!(code(&output), UNAVAILABLE, "{}", stderr(&output));
    let text = stderr(&output);
    assert!(text.contains("gave up after"), "{text}");
    assert!(!text.contains("assumed"), "{text}");
}

#[test]
fn a_missing_default_store_is_named_as_the_default() {
    let home = tempfile::tempdir().unwrap();
    let store = home.path().join(".passage/store");
    for args in [
        &["get", "age://prod/db"][..],
        &["store", "get", "prod/db"][..],
    ] {
        let output = std::process::Command::new(HUSHBOX)
            .args(args)
            .current_dir(home.path())
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap())
            .env("HOME", home.path())
            .output()
            .unwrap();
        assert_eq!(code(&output), NOT_FOUND, "{}", stderr(&output));
        let text = stderr(&output);
        let error = text
            .lines()
            .find(|line| line.starts_with("hushbox: error: "))
            .unwrap_or_else(|| panic!("{args:?}: no error line in {text}"));
        for needle in [
            "no such secret",
            &format!("{} is the default store", store.display()),
            "HUSHBOX_STORE and PASSAGE_DIR are unset",
            "hushbox store init",
        ] {
            assert!(
                error.contains(needle),
                "{args:?}: `{needle}` missing from {error}"
            );
        }
    }
    // A store the user named is not called a default.
    let named = home.path().join("named");
    let output = std::process::Command::new(HUSHBOX)
        .args(["get", "age://prod/db"])
        .current_dir(home.path())
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap())
        .env("HOME", home.path())
        .env("HUSHBOX_STORE", &named)
        .output()
        .unwrap();
    assert_eq!(code(&output), NOT_FOUND, "{}", stderr(&output));
    assert!(
        !stderr(&output).contains("default store"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn writes_the_os_refuses_say_so_store_set_and_keygen() {
    let project = Project::new();
    let dir = project.path("secrets/dev");
    chmod(&dir, 0o500);
    let mut command = project.user.command(HUSHBOX);
    command
        .args(["store", "set", "dev/C"])
        .current_dir(&project.dir)
        .env("HOME", &project.home);
    let output = run_with_stdin(command, Some(b"value-c"));
    chmod(&dir, 0o700);
    assert_error(
        &output,
        PERMISSION,
        &[
            "age://dev/C",
            "cannot write",
            "secrets/dev/C.age",
            DENIED,
            CHECK_MODE,
        ],
    );
    assert!(!project.path("secrets/dev/C.age").exists());

    // An identity file where the user may not write.
    let output = project.run_in(
        &project.dir,
        &["keygen"],
        &[("HUSHBOX_IDENTITY", "/root/hushbox-identity.txt")],
    );
    assert_error(
        &output,
        PERMISSION,
        &[
            "cannot create /root/hushbox-identity.txt",
            DENIED,
            CHECK_MODE,
        ],
    );
    // And one that exists: never overwritten.
    let output = project.run(&["keygen"]);
    assert_error(&output, CONFIG, &["already exists", "never overwrites"]);
}

#[test]
fn a_closed_stdout_is_an_io_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        &["check"][..],
        &["check", "--format", "json"][..],
        &["exit-codes"][..],
    ] {
        // A pipe whose reader is gone before hushbox writes: `check | head -0`.
        let (reader, writer) = nix::unistd::pipe().unwrap();
        drop(reader);
        let output = std::process::Command::new(HUSHBOX)
            .args(args)
            .current_dir(dir.path())
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap())
            .env("HOME", dir.path())
            .stdout(std::process::Stdio::from(writer))
            .output()
            .unwrap();
        assert_error(
            &output,
            74,
            &["cannot write to stdout", "Broken pipe (os error 32)"],
        );
        assert!(
            !stderr(&output).contains("internal error"),
            "{}",
            stderr(&output)
        );
    }
}

#[test]
fn an_unknown_scheme_lists_the_ones_there_are() {
    let dir = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(HUSHBOX)
        .args(["get", "nope://x"])
        .current_dir(dir.path())
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap())
        .env("HOME", dir.path())
        .output()
        .unwrap();
    assert_error(
        &output,
        CONFIG,
        &[
            "nope://x",
            "no backend is named `nope`",
            "age, aws, file, vault",
            "[backends.NAME]",
        ],
    );
}
