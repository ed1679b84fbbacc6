//! The first hour of a new user, as the README tells it: in a fresh home
//! (no `~/.passage`) and a fresh git repository, `keygen`, `store init`,
//! `store import .env` leave `secrets/` and `hushbox.toml` ready to commit
//! and nothing in the home but the identity and hushbox's state; a teammate
//! with their own home reads the secrets from a clone once added. And which
//! store `store init` and `store import` choose: the project's, or the
//! passage store when the user asks for it or no project is found.

mod common;

use common::{code, require_tool, run_with_stdin, stderr, stdout};

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// hushbox in `dir` with a clean environment: `PATH`, `HOME`, and `extra`.
fn hushbox(dir: &Path, home: &Path, args: &[&str], extra: &[(&str, &Path)]) -> Output {
    let mut command = common::hushbox_command(dir, home, args);
    for (name, value) in extra {
        command.env(name, value);
    }
    run_with_stdin(command, None)
}

fn ok(dir: &Path, home: &Path, args: &[&str]) -> Output {
    let output = hushbox(dir, home, args, &[]);
    assert!(
        output.status.success(),
        "hushbox {args:?}: {}",
        stderr(&output)
    );
    output
}

fn git(dir: &Path, args: &[&str]) -> String {
    let output = Command::new("git")
        .args(["-c", "user.name=t", "-c", "user.email=t@example.invalid"])
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(output.status.success(), "git {args:?}: {}", stderr(&output));
    stdout(&output)
}

/// Every file under `dir`, relative to it, sorted.
fn files(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(base, &path, out);
            } else {
                out.push(path.strip_prefix(base).unwrap().display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// A fresh home with an identity made by `hushbox keygen`; its recipient.
fn person() -> (tempfile::TempDir, String) {
    let home = tempfile::tempdir().unwrap();
    let output = ok(home.path(), home.path(), &["keygen"]);
    (home, stdout(&output).trim().to_owned())
}

#[test]
fn the_env_journey_ends_with_a_store_in_the_repository_that_a_teammate_reads() {
    require_tool("git", "git");
    let (alice, _) = person();
    let repository = tempfile::tempdir().unwrap();
    let project = repository.path();
    git(project, &["init", "-q", "."]);
    // Saved by a Windows editor: a byte-order mark before the first name.
    fs::write(
        project.join(".env"),
        "\u{feff}API_KEY=abc123\nDATABASE_URL=postgres://app:${API_KEY}@db/app\n",
    )
    .unwrap();

    // `file://…#KEY` reads the same file the same way.
    let output = ok(project, alice.path(), &["get", "file://.env#API_KEY"]);
    assert_eq!(stdout(&output), "abc123");

    // The README's journey.
    ok(project, alice.path(), &["store", "init"]);
    ok(
        project,
        alice.path(),
        &["store", "import", ".env", "--delete"],
    );
    let output = ok(
        project,
        alice.path(),
        &["run", "--", "sh", "-c", "echo \"$API_KEY $DATABASE_URL\""],
    );
    assert_eq!(stdout(&output), "abc123 postgres://app:abc123@db/app\n");

    let manifest = fs::read_to_string(project.join("hushbox.toml")).unwrap();
    assert!(
        manifest.contains("[backends.age]\nkind = \"age\"\nstore = \"secrets\"")
            && manifest.contains("require_integrity = true")
            && manifest.contains("ref = \"age://API_KEY\""),
        "{manifest}"
    );
    let status = git(project, &["status", "--porcelain", "--untracked-files=all"]);
    let mut untracked: Vec<&str> = status.lines().collect();
    untracked.sort_unstable();
    assert_eq!(
        untracked,
        [
            "?? hushbox.toml",
            "?? secrets/.age-recipients",
            "?? secrets/.gitattributes",
            "?? secrets/.hushbox-integrity",
            "?? secrets/API_KEY.age",
            "?? secrets/DATABASE_URL.age",
        ],
        "{status}"
    );
    // Nothing in the home but the identity and the integrity state.
    let home_files = files(alice.path());
    assert_eq!(home_files.len(), 2, "{home_files:?}");
    assert_eq!(home_files[0], ".config/hushbox/identity.txt");
    assert!(
        home_files[1].starts_with(".local/state/hushbox/"),
        "{home_files:?}"
    );
    git(project, &["add", "-A"]);
    git(project, &["commit", "-qm", "secrets"]);

    // Bob clones it: a manifest and secrets he cannot read yet.
    let (bob, bob_recipient) = person();
    let clones = tempfile::tempdir().unwrap();
    git(
        clones.path(),
        &["clone", "-q", &project.display().to_string(), "app"],
    );
    let clone: PathBuf = clones.path().join("app");
    let output = hushbox(&clone, bob.path(), &["get", "age://API_KEY"], &[]);
    assert_eq!(code(&output), 77, "{}", stderr(&output));

    // Alice adds him, re-encrypts and pushes; Bob pulls and reads.
    ok(
        project,
        alice.path(),
        &["store", "recipients", "add", &bob_recipient],
    );
    ok(project, alice.path(), &["store", "reencrypt"]);
    git(project, &["add", "-A"]);
    git(project, &["commit", "-qm", "bob"]);
    git(&clone, &["pull", "-q"]);
    let output = ok(
        &clone,
        bob.path(),
        &["run", "--", "sh", "-c", "echo \"$DATABASE_URL\""],
    );
    assert_eq!(stdout(&output), "postgres://app:abc123@db/app\n");
}

/// Where `store init` put the store, from its message.
fn initialised(output: &Output) -> String {
    let text = stderr(output);
    text.lines()
        .find_map(|line| line.strip_prefix("hushbox: initialised "))
        .and_then(|rest| rest.split(" for ").next())
        .unwrap_or_else(|| panic!("{text}"))
        .to_owned()
}

#[test]
fn init_and_import_use_the_project_store_unless_the_passage_store_is_asked_for() {
    let (home, _) = person();
    let home = home.path();
    let passage = tempfile::tempdir().unwrap();

    // A project without a manifest: ./secrets and a manifest naming it,
    // from a subdirectory of a git repository too (at its root).
    let repository = tempfile::tempdir().unwrap();
    git_init(repository.path());
    let sub = repository.path().join("src");
    fs::create_dir(&sub).unwrap();
    let output = ok(&sub, home, &["store", "init"]);
    assert_eq!(
        initialised(&output),
        repository.path().join("secrets").display().to_string()
    );
    assert!(repository.path().join("hushbox.toml").exists());
    assert!(!sub.join("hushbox.toml").exists());

    // No project (the home directory): the passage store.
    let output = ok(home, home, &["store", "init"]);
    assert_eq!(
        initialised(&output),
        home.join(".passage/store").display().to_string()
    );
    assert!(!home.join("hushbox.toml").exists());

    // HUSHBOX_STORE, PASSAGE_DIR, --passage: the passage store, no manifest.
    for (variable, args) in [
        (Some("HUSHBOX_STORE"), &["store", "init"][..]),
        (Some("PASSAGE_DIR"), &["store", "init"][..]),
        (None, &["store", "init", "--passage"][..]),
    ] {
        let project = tempfile::tempdir().unwrap();
        let store = passage.path().join(format!("{variable:?}"));
        // --passage in a second home (the first one's passage store was
        // made above), with the first one's identity.
        let other_home = tempfile::tempdir().unwrap();
        let identity = home.join(".config/hushbox/identity.txt");
        let extra: Vec<(&str, &Path)> = match variable {
            Some(name) => vec![(name, store.as_path())],
            None => vec![
                ("HOME", other_home.path()),
                ("HUSHBOX_IDENTITY", identity.as_path()),
            ],
        };
        let output = hushbox(project.path(), home, args, &extra);
        assert!(output.status.success(), "{}", stderr(&output));
        let expected = match variable {
            Some(_) => store.clone(),
            None => other_home.path().join(".passage/store"),
        };
        assert!(
            !project.path().join("hushbox.toml").exists()
                && !project.path().join("secrets").exists(),
            "{variable:?}: {}",
            stderr(&output)
        );
        assert_eq!(
            initialised(&output),
            expected.display().to_string(),
            "{variable:?}"
        );
    }

    // import follows the same rule.
    let project = tempfile::tempdir().unwrap();
    fs::write(project.path().join(".env"), "A=1\n").unwrap();
    let output = hushbox(
        project.path(),
        home,
        &["store", "import", ".env"],
        &[("HUSHBOX_STORE", passage.path().join("imported").as_path())],
    );
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(passage.path().join("imported/A.age").exists());
    assert!(!project.path().join("secrets").exists());
    assert!(
        !fs::read_to_string(project.path().join("hushbox.toml"))
            .unwrap()
            .contains("[backends"),
    );
    let project = tempfile::tempdir().unwrap();
    fs::write(project.path().join(".env"), "A=1\n").unwrap();
    let output = ok(project.path(), home, &["store", "import", ".env"]);
    assert!(
        project.path().join("secrets/A.age").exists(),
        "{}",
        stderr(&output)
    );
    let manifest = fs::read_to_string(project.path().join("hushbox.toml")).unwrap();
    assert!(manifest.contains("store = \"secrets\""), "{manifest}");

    // --passage where a manifest decides is refused.
    let output = hushbox(project.path(), home, &["store", "init", "--passage"], &[]);
    assert_eq!(code(&output), 78, "{}", stderr(&output));
    assert!(stderr(&output).contains("--passage"), "{}", stderr(&output));
}

fn git_init(dir: &Path) {
    require_tool("git", "git");
    git(dir, &["init", "-q", "."]);
}
