//! What the program hushbox starts inherits from it (review findings 7 and
//! two low ones): none of the credentials hushbox's backends took, no
//! reference the user did not opt into, no way to gain privileges, and a
//! warning when its user could read hushbox's own credential files.

mod common;

use common::users::LocalUser;
use common::{code, stderr, stdout, tmpfs_dir};

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

/// A project directory with an identity, an age store holding `db`, and a
/// manifest made of `manifest` (the store's backend is `team`).
struct Project {
    dir: tempfile::TempDir,
}

impl Project {
    fn new(manifest: &str) -> Self {
        let project = Self {
            dir: tempfile::tempdir().unwrap(),
        };
        let manifest = format!(
            "version = 1\n[backends.team]\nkind = \"age\"\nstore = \"secrets\"\n\
             identity_file = \"identity.txt\"\n{manifest}"
        );
        std::fs::write(project.path("hushbox.toml"), manifest).unwrap();
        project.ok(&["keygen", "--output", "identity.txt"]);
        project.ok(&["store", "init"]);
        let mut set = project
            .command(&["store", "set", "db"])
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        set.stdin.take().unwrap().write_all(b"db-value").unwrap();
        assert!(set.wait().unwrap().success());
        project
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// hushbox with a clean environment: PATH, HOME and nothing else.
    fn command(&self, args: &[&str]) -> Command {
        common::hushbox_command(self.dir.path(), self.dir.path(), args)
    }

    fn ok(&self, args: &[&str]) {
        let output = self.command(args).output().unwrap();
        assert!(output.status.success(), "{args:?}: {}", stderr(&output));
    }
}

fn run(mut command: Command) -> Output {
    command.stdin(Stdio::null()).output().unwrap()
}

/// The child's environment as `env` printed it, one `NAME=value` per line.
fn child_env(output: &Output) -> Vec<String> {
    assert_eq!(code(output), 0, "{}", stderr(output));
    stdout(output).lines().map(str::to_owned).collect()
}

fn has_variable(env: &[String], name: &str) -> bool {
    env.iter().any(|line| line.starts_with(&format!("{name}=")))
}

/// Vault's token from `token_env`, AWS access keys, and the identity file's
/// variable, all used by the run's backends: the child gets none of them.
const CREDENTIAL_MANIFEST: &str = "[backends.vault]\nkind = \"vault\"\n\
    address = \"http://127.0.0.1:9\"\n\
    auth = { method = \"token\", token_env = \"MY_VAULT_TOKEN\" }\n\
    [backends.aws]\nkind = \"aws\"\nregion = \"eu-west-1\"\n\
    [secrets.db]\nref = \"team://db\"\nenv_value = \"DB\"\n";

fn with_credentials(command: &mut Command, project: &Project) {
    command
        .env("MY_VAULT_TOKEN", "s.CANARYVAULTTOKEN")
        .env("AWS_ACCESS_KEY_ID", "AKIACANARYCANARY")
        .env("AWS_SECRET_ACCESS_KEY", "canary-secret-access-key")
        .env("AWS_SESSION_TOKEN", "canary-session-token")
        .env("PASSAGE_IDENTITIES_FILE", project.path("identity.txt"))
        .env("APP_SETTING", "kept");
}

#[test]
fn the_child_inherits_none_of_the_credentials_its_backends_consumed() {
    let project = Project::new(CREDENTIAL_MANIFEST);
    // The manifest's identity_file wins over PASSAGE_IDENTITIES_FILE, so
    // that one is not consumed here; HUSHBOX_IDENTITY is, below.
    let mut command = project.command(&["run", "--", "env"]);
    with_credentials(&mut command, &project);
    command.env("HUSHBOX_IDENTITY", project.path("identity.txt"));
    let env = child_env(&run(command));
    for consumed in [
        "MY_VAULT_TOKEN",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "HUSHBOX_IDENTITY",
    ] {
        assert!(
            !has_variable(&env, consumed),
            "{consumed} reached the child"
        );
    }
    assert!(env.iter().any(|line| line == "DB=db-value"), "{env:?}");
    assert!(env.iter().any(|line| line == "APP_SETTING=kept"), "{env:?}");
    // Not used by any backend of this run: the program's own business.
    assert!(has_variable(&env, "PASSAGE_IDENTITIES_FILE"), "{env:?}");
}

#[test]
fn the_passage_identities_variable_is_withheld_when_it_named_the_identity() {
    let project = Project::new("[secrets.db]\nref = \"team://db\"\nenv_value = \"DB\"\n");
    // The manifest names no identity file in this case: rewrite it.
    let manifest = std::fs::read_to_string(project.path("hushbox.toml"))
        .unwrap()
        .replace("identity_file = \"identity.txt\"\n", "");
    std::fs::write(project.path("hushbox.toml"), manifest).unwrap();
    let mut command = project.command(&["run", "--", "env"]);
    command.env("PASSAGE_IDENTITIES_FILE", project.path("identity.txt"));
    let env = child_env(&run(command));
    assert!(env.iter().any(|line| line == "DB=db-value"), "{env:?}");
    assert!(!has_variable(&env, "PASSAGE_IDENTITIES_FILE"), "{env:?}");
}

#[test]
fn credentials_listed_in_env_inherit_reach_the_program() {
    let project = Project::new(&format!(
        "[env]\ninherit = [\"AWS_*\"]\n{CREDENTIAL_MANIFEST}"
    ));
    let mut command = project.command(&["run", "--", "env"]);
    with_credentials(&mut command, &project);
    let env = child_env(&run(command));
    assert!(
        env.iter()
            .any(|line| line == "AWS_SECRET_ACCESS_KEY=canary-secret-access-key"),
        "{env:?}"
    );
    assert!(!has_variable(&env, "MY_VAULT_TOKEN"), "{env:?}");
}

#[test]
fn a_file_url_in_the_environment_reaches_the_program_untouched() {
    let project = Project::new("");
    let mut command = project.command(&["run", "--", "env"]);
    command
        .env("SPRING_CONFIG_IMPORT", "file:///etc/hostname")
        .env("CONFIGURED", "team://db");
    let env = child_env(&run(command));
    assert!(
        env.iter()
            .any(|line| line == "SPRING_CONFIG_IMPORT=file:///etc/hostname"),
        "{env:?}"
    );
    // A scheme the manifest configures is a reference the user asked for.
    assert!(
        env.iter().any(|line| line == "CONFIGURED=db-value"),
        "{env:?}"
    );
}

#[test]
fn a_variable_listed_in_env_resolve_is_resolved_through_a_default_instance() {
    let project = Project::new("[env]\nresolve = [\"OPTED_*\"]\n");
    let secret = project.path("opted.txt");
    std::fs::write(&secret, "opted-value").unwrap();
    let mut command = project.command(&["run", "--resolve-env", "FLAGGED", "--", "env"]);
    command
        .env("SPRING_CONFIG_IMPORT", "file:///etc/hostname")
        .env("OPTED_IN", format!("file://{}", secret.display()))
        .env("FLAGGED", format!("file://{}", secret.display()));
    let env = child_env(&run(command));
    assert!(
        env.iter().any(|line| line == "OPTED_IN=opted-value"),
        "{env:?}"
    );
    assert!(
        env.iter().any(|line| line == "FLAGGED=opted-value"),
        "{env:?}"
    );
    assert!(
        env.iter()
            .any(|line| line == "SPRING_CONFIG_IMPORT=file:///etc/hostname"),
        "{env:?}"
    );
}

#[test]
fn a_bad_pattern_in_env_resolve_is_a_config_error() {
    let project = Project::new("[env]\nresolve = [\"API-KEY\"]\n");
    let output = run(project.command(&["run", "--", "true"]));
    assert_eq!(code(&output), 78, "{}", stderr(&output));
    assert!(
        stderr(&output).contains("[env].resolve"),
        "{}",
        stderr(&output)
    );
}

fn no_new_privs_line(output: &Output) -> String {
    assert_eq!(code(output), 0, "{}", stderr(output));
    stdout(output)
        .lines()
        .find(|line| line.starts_with("NoNewPrivs:"))
        .unwrap_or_else(|| panic!("no NoNewPrivs line: {}", stdout(output)))
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn the_program_cannot_gain_privileges_through_setuid_binaries() {
    let project = Project::new("");
    let status = ["cat", "/proc/self/status"];
    let mut args = vec!["run", "--"];
    args.extend(status);
    let output = run(project.command(&args));
    assert_eq!(no_new_privs_line(&output), "NoNewPrivs: 1");
    let mut args = vec!["run", "--allow-new-privileges", "--"];
    args.extend(status);
    let output = run(project.command(&args));
    assert_eq!(no_new_privs_line(&output), "NoNewPrivs: 0");

    // exec, after dropping to another user.
    let victim = LocalUser::victim();
    let user = victim.uid.to_string();
    let mut args = vec!["exec", "--user", &user, "--"];
    args.extend(status);
    let output = run(project.command(&args));
    assert_eq!(no_new_privs_line(&output), "NoNewPrivs: 1");
    let mut args = vec!["exec", "--allow-new-privileges", "--user", &user, "--"];
    args.extend(status);
    let output = run(project.command(&args));
    assert_eq!(no_new_privs_line(&output), "NoNewPrivs: 0");
}

/// `exec --user victim` of a project whose directory the victim can enter,
/// with the identity file at `mode`, owned by root.
fn exec_as_victim_with_identity_mode(mode: u32) -> Output {
    let victim = LocalUser::victim();
    let project = Project::new("");
    std::fs::set_permissions(project.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(
        project.path("identity.txt"),
        std::fs::Permissions::from_mode(mode),
    )
    .unwrap();
    let out = tmpfs_dir();
    let user = victim.uid.to_string();
    let output = run(project.command(&[
        "exec",
        "--user",
        &user,
        "--dir",
        out.path().to_str().unwrap(),
        "--",
        "true",
    ]));
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    output
}

#[test]
fn an_identity_file_the_program_user_can_read_is_warned_about_once() {
    let output = exec_as_victim_with_identity_mode(0o644);
    let text = stderr(&output);
    let warnings: Vec<&str> = text
        .lines()
        .filter(|line| line.contains("identity.txt") && line.contains("can read"))
        .collect();
    assert_eq!(warnings.len(), 1, "{text}");
    assert!(warnings[0].contains("0400"), "{text}");
}

#[test]
fn a_root_owned_0400_identity_file_gives_no_warning() {
    let output = exec_as_victim_with_identity_mode(0o400);
    let text = stderr(&output);
    assert!(!text.contains("can read"), "{text}");
}
