//! Integrity where no state persists (review finding 8): containers and CI
//! start with an empty HOME, so this machine's record of a store cannot
//! catch a deleted or re-keyed integrity manifest there. `require_integrity`
//! and a pinned `integrity_key` can; a reduced protection is said at WARN.

mod common;

use common::users::LocalUser;
use common::{code, stderr, stdout};

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const HUSHBOX: &str = env!("CARGO_BIN_EXE_hushbox");

/// A project with an identity, a store made by `store init` holding `db`
/// and `other`, and a manifest naming it `team`.
struct Project {
    dir: tempfile::TempDir,
}

impl Project {
    fn new(extra: &str) -> Self {
        let project = Self {
            dir: tempfile::tempdir().unwrap(),
        };
        std::fs::write(
            project.path("hushbox.toml"),
            format!(
                "version = 1\n[backends.team]\nkind = \"age\"\nstore = \"secrets\"\n\
                 identity_file = \"identity.txt\"\n{extra}"
            ),
        )
        .unwrap();
        project.ok(&["keygen", "--output", "identity.txt"]);
        project.ok(&["store", "init"]);
        project.set("db", b"the-real-db-password");
        project.set("other", b"attacker-chosen-value");
        project
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// hushbox with `home` as HOME (and so its own state directory).
    fn command_in(&self, home: &Path, args: &[&str]) -> Command {
        let mut command = common::hushbox_command(self.dir.path(), home, args);
        command.stdin(Stdio::null());
        command
    }

    fn command(&self, args: &[&str]) -> Command {
        self.command_in(self.dir.path(), args)
    }

    fn ok(&self, args: &[&str]) -> Output {
        let output = self.command(args).output().unwrap();
        assert!(output.status.success(), "{args:?}: {}", stderr(&output));
        output
    }

    fn set(&self, name: &str, value: &[u8]) {
        let mut set = self
            .command(&["store", "set", name])
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        set.stdin.take().unwrap().write_all(value).unwrap();
        assert!(set.wait().unwrap().success());
    }

    /// What someone with write access to the store does: put another
    /// ciphertext under `db`'s name and delete the integrity manifest.
    fn substitute_db_and_delete_the_manifest(&self) {
        std::fs::copy(self.path("secrets/other.age"), self.path("secrets/db.age")).unwrap();
        std::fs::remove_file(self.path("secrets/.hushbox-integrity")).unwrap();
    }

    fn manifest_text(&self) -> String {
        std::fs::read_to_string(self.path("hushbox.toml")).unwrap()
    }

    fn set_manifest(&self, text: &str) {
        std::fs::write(self.path("hushbox.toml"), text).unwrap();
    }
}

/// A fresh, empty HOME: a container's or a CI job's first run.
fn fresh_home() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

#[test]
fn store_init_writes_require_integrity_into_the_manifest() {
    let project = Project::new("");
    let manifest = project.manifest_text();
    assert!(
        manifest.contains("require_integrity = true"),
        "store init left the manifest as it was:\n{manifest}"
    );
    // Written once, under the store's own section, and the manifest still
    // parses.
    assert_eq!(manifest.matches("require_integrity").count(), 1);
    project.ok(&["check"]);
}

#[test]
fn a_deleted_manifest_and_a_substituted_secret_fail_in_a_fresh_home() {
    let project = Project::new("");
    project.substitute_db_and_delete_the_manifest();
    let home = fresh_home();
    let output = project
        .command_in(home.path(), &["get", "team://db"])
        .output()
        .unwrap();
    assert!(
        !stdout(&output).contains("attacker-chosen-value"),
        "the substituted value was delivered"
    );
    assert_eq!(code(&output), 65, "{}", stderr(&output));
    assert!(
        stderr(&output).contains(".hushbox-integrity"),
        "{}",
        stderr(&output)
    );
    // The same through `run`: the program never starts.
    let output = project
        .command_in(home.path(), &["run", "--", "true"])
        .env("DB", "team://db")
        .output()
        .unwrap();
    assert_eq!(code(&output), 65, "{}", stderr(&output));
}

#[test]
fn without_require_integrity_a_missing_manifest_is_a_warning_as_before() {
    let project = Project::new("require_integrity = false\n");
    assert!(!project.manifest_text().contains("require_integrity = true"));
    std::fs::remove_file(project.path("secrets/.hushbox-integrity")).unwrap();
    let home = fresh_home();
    let output = project
        .command_in(home.path(), &["get", "team://db"])
        .output()
        .unwrap();
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    assert!(
        stderr(&output).contains("WARN") && stderr(&output).contains("no integrity manifest"),
        "{}",
        stderr(&output)
    );
}

fn key_id(project: &Project) -> String {
    let output = project.ok(&["store", "verify", "--print-key"]);
    let key = stdout(&output).trim().to_owned();
    assert_eq!(key.len(), 32, "{key}");
    assert!(key.chars().all(|c| c.is_ascii_hexdigit()), "{key}");
    key
}

/// Replaces the store's integrity manifest with one under a fresh key, as
/// someone who can write to the store but does not hold its key would.
fn rekey(project: &Project) {
    std::fs::remove_file(project.path("secrets/.hushbox-integrity")).unwrap();
    std::fs::copy(
        project.path("secrets/other.age"),
        project.path("secrets/db.age"),
    )
    .unwrap();
    let home = fresh_home();
    let mut accept = project.command_in(home.path(), &["store", "accept"]);
    accept.env("HUSHBOX_CONFIG", project.path("unpinned.toml"));
    let output = accept.output().unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
}

#[test]
fn a_pinned_key_with_an_empty_state_dir_catches_a_rekeyed_manifest() {
    let project = Project::new("");
    let key = key_id(&project);
    let pinned = project.manifest_text().replace(
        "require_integrity = true",
        &format!("integrity_key = \"{key}\""),
    );
    // The attacker's tools use a manifest without the pin.
    std::fs::write(project.path("unpinned.toml"), project.manifest_text()).unwrap();
    project.set_manifest(&pinned);
    // Before the attack, the pin verifies in a fresh HOME.
    let output = project
        .command_in(fresh_home().path(), &["get", "team://db"])
        .output()
        .unwrap();
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    assert_eq!(stdout(&output), "the-real-db-password");

    rekey(&project);
    let output = project
        .command_in(fresh_home().path(), &["get", "team://db"])
        .output()
        .unwrap();
    assert_eq!(code(&output), 65, "{}", stderr(&output));
    assert!(!stdout(&output).contains("attacker-chosen-value"));
    assert!(stderr(&output).contains("pinned"), "{}", stderr(&output));

    // The same pin from the environment, for an image without the key in
    // its manifest.
    project.set_manifest(&std::fs::read_to_string(project.path("unpinned.toml")).unwrap());
    let output = project
        .command_in(fresh_home().path(), &["get", "team://db"])
        .env("HUSHBOX_INTEGRITY_KEY", &key)
        .output()
        .unwrap();
    assert_eq!(code(&output), 65, "{}", stderr(&output));
}

#[test]
fn a_malformed_pinned_key_is_a_config_error() {
    let project = Project::new("");
    let output = project
        .command(&["get", "team://db"])
        .env("HUSHBOX_INTEGRITY_KEY", "not-a-key")
        .output()
        .unwrap();
    assert_eq!(code(&output), 78, "{}", stderr(&output));
    assert!(
        stderr(&output).contains("HUSHBOX_INTEGRITY_KEY"),
        "{}",
        stderr(&output)
    );
}

/// `hushbox get team://db` as the victim, whose state directory cannot be
/// created (a read-only home, as in a container), with `extra` added to the
/// store's section.
fn get_with_an_unwritable_state_dir(extra: &str) -> Output {
    let victim = LocalUser::victim();
    let project = Project::new("");
    let manifest = project
        .manifest_text()
        .replace("require_integrity = true\n", extra);
    project.set_manifest(&manifest);
    std::fs::set_permissions(project.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    for entry in walk(project.dir.path()) {
        victim.chown(&entry);
    }
    let state_parent = tempfile::tempdir().unwrap();
    std::fs::set_permissions(state_parent.path(), std::fs::Permissions::from_mode(0o555)).unwrap();
    let mut command = victim.command(HUSHBOX);
    command
        .args(["get", "team://db"])
        .current_dir(project.dir.path())
        .env("XDG_STATE_HOME", state_parent.path())
        .stdin(Stdio::null());
    command.output().unwrap()
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut all = vec![dir.to_owned()];
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            all.extend(walk(&path));
        } else {
            all.push(path);
        }
    }
    all
}

#[test]
fn an_unwritable_state_dir_is_a_warning_not_a_debug_line() {
    let output = get_with_an_unwritable_state_dir("require_integrity = false\n");
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    let text = stderr(&output);
    assert!(
        text.lines()
            .any(|line| line.contains("WARN") && line.contains("rollback detection is off")),
        "{text}"
    );
}

#[test]
fn an_unwritable_state_dir_without_a_pinned_key_fails_when_integrity_is_required() {
    let output = get_with_an_unwritable_state_dir("require_integrity = true\n");
    assert_eq!(code(&output), 65, "{}", stderr(&output));
    assert!(
        stderr(&output).contains("integrity_key"),
        "{}",
        stderr(&output)
    );
}
