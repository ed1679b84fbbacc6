//! The age store as a team uses it, through the real binary: migrating a
//! `.env`, adding and removing people, interoperating with the reference
//! `age` CLI, the integrity manifest against attacks, `edit`, `export`, and
//! no plaintext on any disk.
//!
//! Each test gets fresh project directories, each person their own home
//! (identity and integrity state). Tools the tests need (age, strace,
//! script) are required, never skipped: a missing one fails the test with
//! what to install.

mod common;

use common::{require_tool, run_with_stdin, stderr, stdout};

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const HUSHBOX: &str = env!("CARGO_BIN_EXE_hushbox");

/// One person on one machine: a home directory with an identity (and
/// hushbox's integrity state), working in a shared project directory.
struct Person {
    home: tempfile::TempDir,
    recipient: String,
}

impl Person {
    fn new() -> Self {
        let home = tempfile::tempdir().unwrap();
        let person = Person {
            home,
            recipient: String::new(),
        };
        let output = person.run_in(person.home.path(), &["keygen"], None);
        assert!(output.status.success(), "{}", stderr(&output));
        Person {
            recipient: stdout(&output).trim().to_owned(),
            ..person
        }
    }

    fn identity(&self) -> PathBuf {
        self.home.path().join("identity.txt")
    }

    fn command_in(&self, dir: &Path, args: &[&str]) -> Command {
        let mut command = Command::new(HUSHBOX);
        command
            .args(args)
            .current_dir(dir)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap())
            .env("HOME", self.home.path())
            .env("HUSHBOX_IDENTITY", self.identity());
        command
    }

    fn run_in(&self, dir: &Path, args: &[&str], stdin: Option<&[u8]>) -> Output {
        run_with_stdin(self.command_in(dir, args), stdin)
    }
}

/// A project directory with a manifest naming `./secrets`, used by people.
struct Project {
    dir: tempfile::TempDir,
}

const MANIFEST: &str = "# the team's project\nversion = 1\n\n[backends.age]\nkind = \"age\"   # the store in git\nstore = \"secrets\"\n";

impl Project {
    /// A project whose store `owner` initialises.
    fn new(owner: &Person) -> Self {
        require_tool("age", "age");
        let project = Project {
            dir: tempfile::tempdir().unwrap(),
        };
        fs::write(project.path("hushbox.toml"), MANIFEST).unwrap();
        project.ok(owner, &["store", "init"], None);
        project
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn run(&self, person: &Person, args: &[&str], stdin: Option<&[u8]>) -> Output {
        person.run_in(self.dir.path(), args, stdin)
    }

    fn ok(&self, person: &Person, args: &[&str], stdin: Option<&[u8]>) -> Output {
        let output = self.run(person, args, stdin);
        assert!(
            output.status.success(),
            "hushbox {args:?} failed: {}\n{}",
            output.status,
            stderr(&output)
        );
        output
    }

    /// Runs hushbox expecting failure with `code`; returns stderr.
    fn fails(&self, person: &Person, args: &[&str], code: i32) -> String {
        let output = self.run(person, args, None);
        assert_eq!(
            output.status.code(),
            Some(code),
            "hushbox {args:?}: {}",
            stderr(&output)
        );
        stderr(&output)
    }

    fn set(&self, person: &Person, name: &str, value: &[u8]) {
        self.ok(person, &["store", "set", "--raw", name], Some(value));
    }

    fn get(&self, person: &Person, name: &str) -> Vec<u8> {
        self.ok(person, &["store", "get", name], None).stdout
    }

    fn secret_file(&self, name: &str) -> PathBuf {
        self.path(&format!("secrets/{name}.age"))
    }
}

fn age_decrypts(identity: &Path, file: &Path) -> Option<Vec<u8>> {
    let output = Command::new("age")
        .arg("-d")
        .arg("-i")
        .arg(identity)
        .arg(file)
        .output()
        .unwrap();
    output.status.success().then_some(output.stdout)
}

fn age_encrypt(recipients: &Path, out: &Path, plaintext: &[u8]) {
    let mut child = Command::new("age")
        .arg("-R")
        .arg(recipients)
        .arg("-o")
        .arg(out)
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(plaintext).unwrap();
    assert!(child.wait().unwrap().success());
}

/// The environment `env -0` printed.
fn parse_env0(bytes: &[u8]) -> BTreeMap<String, String> {
    bytes
        .split(|&byte| byte == 0)
        .filter(|entry| !entry.is_empty())
        .map(|entry| {
            let text = String::from_utf8_lossy(entry);
            let (name, value) = text.split_once('=').unwrap();
            (name.to_owned(), value.to_owned())
        })
        .collect()
}

/// A `.env` written the ways people write them, and what Compose's
/// `env_file` makes of each line.
const DOT_ENV: &str = r#"# Local development settings
export DATABASE_USER=app
DATABASE_PASSWORD='s3cr3t $not-interpolated \n'
DATABASE_URL="postgres://${DATABASE_USER}@db:5432/app"   # interpolated
API_KEY=sk_live_1234 # a comment
GREETING="hello\tworld\n"
MULTILINE="-----BEGIN KEY-----
line two
-----END KEY-----"
HASH_IN_VALUE=a#b
QUOTE_INSIDE="say \"hi\""
EMPTY=
YAML_STYLE: colon
PRICE=5$$
"#;

fn dot_env_expected() -> BTreeMap<&'static str, &'static str> {
    BTreeMap::from([
        ("DATABASE_USER", "app"),
        ("DATABASE_PASSWORD", "s3cr3t $not-interpolated \\n"),
        ("DATABASE_URL", "postgres://app@db:5432/app"),
        ("API_KEY", "sk_live_1234"),
        ("GREETING", "hello\tworld\n"),
        (
            "MULTILINE",
            "-----BEGIN KEY-----\nline two\n-----END KEY-----",
        ),
        ("HASH_IN_VALUE", "a#b"),
        ("QUOTE_INSIDE", "say \"hi\""),
        ("EMPTY", ""),
        ("YAML_STYLE", "colon"),
        ("PRICE", "5$"),
    ])
}

#[test]
fn a_dotenv_project_is_migrated_and_runs_with_the_same_values() {
    let alice = Person::new();
    let project = Project::new(&alice);
    fs::write(project.path(".env"), DOT_ENV).unwrap();

    let output = project.ok(
        &alice,
        &["store", "import", ".env", "--prefix", "dev/", "--delete"],
        None,
    );
    let log = stderr(&output);
    assert!(log.contains("imported 11 secret(s)"), "{log}");
    assert!(!project.path(".env").exists(), "--delete left the .env");
    assert!(!log.contains("sk_live_1234"), "{log}");

    // The manifest kept what the user wrote and gained one entry per key.
    let manifest = fs::read_to_string(project.path("hushbox.toml")).unwrap();
    assert!(manifest.starts_with(MANIFEST), "{manifest}");
    assert!(
        manifest.contains(
            "[secrets.database_url]\nref = \"age://dev/DATABASE_URL\"\nenv_value = \"DATABASE_URL\"\n"
        ),
        "{manifest}"
    );
    assert!(project.secret_file("dev/API_KEY").is_file());

    // The program sees exactly what the .env gave it.
    let output = project.ok(&alice, &["run", "--", "env", "-0"], None);
    let env = parse_env0(&output.stdout);
    for (name, value) in dot_env_expected() {
        assert_eq!(env.get(name).map(String::as_str), Some(value), "{name}");
    }
    let output = project.ok(&alice, &["run", "--", "sh", "-c", "echo $API_KEY"], None);
    assert_eq!(stdout(&output), "sk_live_1234\n");
    // The store verifies, with every import recorded.
    project.ok(&alice, &["store", "verify"], None);
}

#[test]
fn import_refuses_a_file_it_cannot_parse_and_imports_nothing() {
    let alice = Person::new();
    let project = Project::new(&alice);
    // As `store init` left it (with `require_integrity = true`).
    let manifest = fs::read_to_string(project.path("hushbox.toml")).unwrap();
    let env = "GOOD=1\nALSO_GOOD=2\nthis line has a canary-42 but no equals sign\n";
    fs::write(project.path(".env"), env).unwrap();
    let message = project.fails(&alice, &["store", "import", ".env", "--delete"], 78);
    assert!(message.contains("line 3"), "{message}");
    assert!(message.contains("nothing was imported"), "{message}");
    assert!(!message.contains("canary-42"), "{message}");
    assert!(project.path(".env").exists());
    assert_eq!(stdout(&project.ok(&alice, &["store", "ls"], None)), "");
    assert_eq!(
        fs::read_to_string(project.path("hushbox.toml")).unwrap(),
        manifest
    );

    // A name that cannot be a variable, an existing secret: the same.
    fs::write(project.path(".env"), "A=1\nmy.dotted=2\n").unwrap();
    let message = project.fails(&alice, &["store", "import", ".env"], 78);
    assert!(message.contains("line 2"), "{message}");
    project.set(&alice, "A", b"already");
    fs::write(project.path(".env"), "A=1\nB=2\n").unwrap();
    let message = project.fails(&alice, &["store", "import", ".env"], 78);
    assert!(message.contains("A already exists"), "{message}");
    assert_eq!(project.get(&alice, "A"), b"already");
    assert!(!project.secret_file("B").exists());
}

#[test]
fn a_second_person_is_added_and_a_removed_person_loses_access() {
    let alice = Person::new();
    let bob = Person::new();
    let project = Project::new(&alice);
    let values: [(&str, &[u8]); 3] = [("prod/db", b"db"), ("prod/api", b"api"), ("token", b"tok")];
    for (name, value) in values {
        project.set(&alice, name, value);
    }
    fs::write(
        project.path("hushbox.toml"),
        format!("{MANIFEST}[secrets.db]\nref = \"age://prod/db\"\nenv_value = \"DB\"\n"),
    )
    .unwrap();
    // Before: Bob cannot read anything.
    assert_eq!(
        project
            .run(&bob, &["store", "get", "token"], None)
            .status
            .code(),
        Some(77)
    );

    project.ok(
        &alice,
        &["store", "recipients", "add", &bob.recipient],
        None,
    );
    let output = project.ok(&alice, &["store", "reencrypt"], None);
    assert_eq!(stdout(&output), "prod/api\nprod/db\ntoken\n");
    let listed = stdout(&project.ok(&alice, &["store", "recipients", "ls"], None));
    assert!(listed.contains(&bob.recipient), "{listed}");
    for (name, value) in values {
        assert_eq!(project.get(&bob, name), value, "{name}");
        assert_eq!(
            age_decrypts(&bob.identity(), &project.secret_file(name)).as_deref(),
            Some(value)
        );
    }
    let output = project.ok(&bob, &["run", "--", "sh", "-c", "echo $DB"], None);
    assert_eq!(stdout(&output), "db\n");

    // Bob leaves.
    project.ok(&alice, &["store", "recipients", "rm", &bob.recipient], None);
    let output = project.ok(&alice, &["store", "reencrypt"], None);
    assert_eq!(stdout(&output), "prod/api\nprod/db\ntoken\n");
    for (name, value) in values {
        assert_eq!(
            project
                .run(&bob, &["store", "get", name], None)
                .status
                .code(),
            Some(77),
            "{name}"
        );
        assert_eq!(
            age_decrypts(&bob.identity(), &project.secret_file(name)),
            None
        );
        assert_eq!(project.get(&alice, name), value);
    }
}

#[test]
fn reencrypt_with_a_bad_file_reencrypts_the_rest_and_names_what_failed() {
    let alice = Person::new();
    let bob = Person::new();
    let project = Project::new(&alice);
    project.set(&alice, "a", b"first");
    project.set(&alice, "broken", b"second");
    project.set(&alice, "c", b"third");
    fs::write(project.secret_file("broken"), b"not an age file\n").unwrap();
    project.ok(
        &alice,
        &["store", "recipients", "add", &bob.recipient],
        None,
    );

    let output = project.run(&alice, &["store", "reencrypt"], None);
    let errors = stderr(&output);
    assert_eq!(output.status.code(), Some(65), "{errors}");
    assert_eq!(stdout(&output), "a\nc\n");
    // The summary comes last: what was re-encrypted, what failed, by name.
    let summary: Vec<&str> = errors.lines().rev().take(2).collect();
    assert!(summary[1].contains("re-encrypted 2 secret(s)"), "{errors}");
    assert!(
        summary[0].contains("1 secret(s) could not be re-encrypted")
            && summary[0].contains("age://broken"),
        "{errors}"
    );
    assert!(errors.contains("hushbox: error: "), "{errors}");
    // The others are committed: Bob reads them.
    assert_eq!(project.get(&bob, "a"), b"first");
    assert_eq!(project.get(&bob, "c"), b"third");
}

#[test]
fn the_age_cli_reads_and_writes_the_store_and_its_subtrees() {
    let alice = Person::new();
    let ops = Person::new();
    let carol = Person::new();
    let project = Project::new(&alice);

    // set → age -d.
    project.set(&alice, "app/key", b"by hushbox");
    assert_eq!(
        age_decrypts(&alice.identity(), &project.secret_file("app/key")).as_deref(),
        Some(&b"by hushbox"[..])
    );
    // A subtree with its own recipients.
    project.ok(
        &alice,
        &[
            "store",
            "init",
            "--dir",
            "ops",
            "--recipient",
            &ops.recipient,
        ],
        None,
    );
    project.set(&alice, "ops/root", b"ops only");
    let file = project.secret_file("ops/root");
    assert_eq!(
        age_decrypts(&ops.identity(), &file).as_deref(),
        Some(&b"ops only"[..])
    );
    assert_eq!(age_decrypts(&alice.identity(), &file), None);
    assert_eq!(project.get(&ops, "ops/root"), b"ops only");
    assert_eq!(
        project
            .run(&alice, &["store", "get", "ops/root"], None)
            .status
            .code(),
        Some(77)
    );
    // age → hushbox, in the subtree, once accepted.
    age_encrypt(
        &project.path("secrets/ops/.age-recipients"),
        &project.secret_file("ops/from-age"),
        b"by age",
    );
    project.fails(&ops, &["store", "get", "ops/from-age"], 65);
    project.ok(&ops, &["store", "accept", "ops/from-age"], None);
    assert_eq!(project.get(&ops, "ops/from-age"), b"by age");
    // reencrypt → age -d by the new recipient, in the subtree only.
    project.ok(
        &ops,
        &[
            "store",
            "recipients",
            "add",
            "--dir",
            "ops",
            &carol.recipient,
        ],
        None,
    );
    let output = project.ok(&ops, &["store", "reencrypt", "ops/"], None);
    assert_eq!(stdout(&output), "ops/from-age\nops/root\n");
    assert_eq!(
        age_decrypts(&carol.identity(), &project.secret_file("ops/root")).as_deref(),
        Some(&b"ops only"[..])
    );
    assert_eq!(
        age_decrypts(&carol.identity(), &project.secret_file("ops/from-age")).as_deref(),
        Some(&b"by age"[..])
    );
    assert_eq!(
        age_decrypts(&carol.identity(), &project.secret_file("app/key")),
        None
    );
    project.ok(&alice, &["store", "verify"], None);
}

#[test]
fn attacks_on_the_store_fail_the_read_that_they_touch() {
    let alice = Person::new();
    let project = Project::new(&alice);
    for name in ["a", "b", "c", "d"] {
        project.set(&alice, name, format!("value of {name}").as_bytes());
    }
    let recipients = project.path("secrets/.age-recipients");
    let snapshot: Vec<(PathBuf, Vec<u8>)> = ["a", "b", "c", "d"]
        .iter()
        .map(|name| project.secret_file(name))
        .chain([project.path("secrets/.hushbox-integrity")])
        .map(|path| (path.clone(), fs::read(&path).unwrap()))
        .collect();
    project.set(&alice, "d", b"rotated");

    // Substitution: encrypted to the public recipients by someone else.
    age_encrypt(&recipients, &project.secret_file("a"), b"attacker");
    let message = project.fails(&alice, &["store", "get", "a"], 65);
    assert!(
        message.contains("age://a") && message.contains("replaced"),
        "{message}"
    );
    // Rename: b's file under c's name.
    fs::rename(project.secret_file("b"), project.secret_file("c")).unwrap();
    let message = project.fails(&alice, &["get", "age://c"], 65);
    assert!(
        message.contains("age://c") && message.contains("`b`"),
        "{message}"
    );
    // Deletion (b is gone now).
    let message = project.fails(&alice, &["get", "age://b"], 65);
    assert!(
        message.contains("age://b") && message.contains("missing"),
        "{message}"
    );
    // verify names all three; d still reads.
    let message = project.fails(&alice, &["store", "verify"], 65);
    for name in ["age://a", "age://b", "age://c"] {
        assert!(message.contains(name), "{message}");
    }
    assert_eq!(project.get(&alice, "d"), b"rotated");

    // Rollback: the old store restored wholesale, its manifest valid.
    for (path, bytes) in &snapshot {
        fs::write(path, bytes).unwrap();
    }
    let message = project.fails(&alice, &["store", "get", "d"], 65);
    assert!(
        message.contains("age://d") && message.contains("rolled back"),
        "{message}"
    );
    assert_eq!(project.get(&alice, "a"), b"value of a");
    let message = project.fails(&alice, &["store", "set", "e"], 65);
    assert!(message.contains("rolled back"), "{message}");
    // On purpose (an old commit checked out): accepted, it reads.
    project.ok(&alice, &["store", "accept"], None);
    assert_eq!(project.get(&alice, "d"), b"value of d");
}

/// Every file a traced command opened for writing, created, or renamed
/// something to, as absolute paths.
fn written_paths(log: &str) -> Vec<String> {
    let mut paths = Vec::new();
    for line in log.lines() {
        let Some(open) = line.find('(') else { continue };
        let call = line[..open].rsplit(' ').next().unwrap_or("");
        let failed = line
            .rsplit_once(" = ")
            .is_none_or(|(_, result)| result.starts_with('-'));
        if failed {
            continue;
        }
        let args = &line[open + 1..];
        // `DIRFD</dir>, "name"` or `"name"`, in order.
        let mut named = Vec::new();
        let mut rest = args;
        let mut dir = None;
        while let Some(quote) = rest.find('"') {
            let before = &rest[..quote];
            if let Some(start) = before.rfind('<') {
                let end = before[start..]
                    .find('>')
                    .map_or(before.len(), |e| start + e);
                dir = Some(before[start + 1..end].to_owned());
            } else if before.contains("AT_FDCWD") {
                dir = None;
            }
            let after = &rest[quote + 1..];
            let Some(close) = after.find('"') else { break };
            let name = &after[..close];
            let path = if name.starts_with('/') {
                name.to_owned()
            } else {
                format!("{}/{name}", dir.clone().unwrap_or_default())
            };
            named.push(path);
            rest = &after[close + 1..];
        }
        match call {
            "open" | "openat" | "openat2" | "creat" => {
                let writing = ["O_WRONLY", "O_RDWR", "O_CREAT", "O_TRUNC"]
                    .iter()
                    .any(|flag| args.contains(flag))
                    || call == "creat";
                if writing && let Some(path) = named.first() {
                    paths.push(path.clone());
                }
            }
            "rename" | "renameat" | "renameat2" | "link" | "linkat" | "symlink" | "symlinkat" => {
                if let Some(path) = named.last() {
                    paths.push(path.clone());
                }
            }
            _ => {}
        }
    }
    paths
}

/// Runs `args` under strace and checks that nothing was written outside
/// tmpfs except ciphertext, the integrity manifest, hushbox's state, the
/// manifest and the `.env` being removed.
fn run_traced(
    project: &Project,
    person: &Person,
    args: &[&str],
    stdin: Option<&[u8]>,
    env: &[(&str, &str)],
) -> Output {
    require_tool("strace", "strace");
    let log = project.path("strace.log");
    let command = person.command_in(project.dir.path(), args);
    let program = command.get_program().to_owned();
    let mut traced = Command::new("strace");
    traced
        .args(["-f", "-y", "-qq", "-e", "trace=%file", "-o"])
        .arg(&log)
        .arg(program)
        .args(command.get_args())
        .current_dir(project.dir.path())
        .env_clear();
    for (name, value) in command.get_envs() {
        if let Some(value) = value {
            traced.env(name, value);
        }
    }
    for (name, value) in env {
        traced.env(name, value);
    }
    let output = run_with_stdin(traced, stdin);
    assert!(output.status.success(), "{args:?}: {}", stderr(&output));
    let text = fs::read_to_string(&log).unwrap();
    fs::remove_file(&log).unwrap();
    let written = written_paths(&text);
    assert!(!written.is_empty(), "strace saw no writes at all:\n{text}");
    for path in written {
        let name = Path::new(&path)
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let allowed = path.starts_with("/dev/shm/")
            || path == "/dev/null"
            || path == "/dev/tty"
            || name.ends_with(".age")
            || (name.starts_with(".hushbox-") && name.ends_with(".tmp"))
            || name == ".hushbox-integrity"
            || path.contains("/.local/state/hushbox/")
            || name == "hushbox.toml"
            || name == ".env";
        assert!(allowed, "{args:?} wrote {path}, which is not on tmpfs");
    }
    output
}

/// Whether any regular file under `dir` contains `needle`.
fn files_containing(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(current) = stack.pop() {
        for entry in fs::read_dir(&current).unwrap() {
            let entry = entry.unwrap();
            let path = entry.path();
            let kind = entry.file_type().unwrap();
            if kind.is_dir() {
                stack.push(path);
            } else if kind.is_file()
                && fs::read(&path)
                    .unwrap()
                    .windows(needle.len())
                    .any(|window| window == needle)
            {
                found.push(path);
            }
        }
    }
    found
}

#[test]
fn edit_set_and_import_leave_no_plaintext_on_disk() {
    let alice = Person::new();
    let project = Project::new(&alice);
    let canary = b"canary-plaintext-8c1f";

    run_traced(
        &project,
        &alice,
        &["store", "set", "one"],
        Some(canary),
        &[],
    );

    let editor = project.path("editor.sh");
    fs::write(
        &editor,
        "#!/bin/sh\nprintf '%s-edited' \"$(cat \"$1\")\" > \"$1\"\n",
    )
    .unwrap();
    fs::set_permissions(&editor, fs::Permissions::from_mode(0o755)).unwrap();
    run_traced(
        &project,
        &alice,
        &["store", "edit", "one"],
        None,
        &[("EDITOR", editor.to_str().unwrap())],
    );
    assert_eq!(project.get(&alice, "one"), b"canary-plaintext-8c1f-edited");

    fs::write(project.path(".env"), "IMPORTED=canary-plaintext-8c1f\n").unwrap();
    run_traced(
        &project,
        &alice,
        &["store", "import", ".env", "--delete"],
        None,
        &[],
    );
    assert_eq!(project.get(&alice, "IMPORTED"), canary);

    for dir in [project.dir.path(), alice.home.path()] {
        let leaks = files_containing(dir, canary);
        assert!(leaks.is_empty(), "plaintext on disk: {leaks:?}");
    }
}

#[test]
fn edit_works_on_a_private_tmpfs_file_and_saves_only_changes() {
    let alice = Person::new();
    let project = Project::new(&alice);
    project.set(&alice, "db", b"old");
    let editor = project.path("editor.sh");
    // Reports where it was asked to edit, then does what $ACTION says.
    fs::write(
        &editor,
        "#!/bin/sh\n\
         echo \"editing $1 fs=$(stat -f -c %T \"$1\") mode=$(stat -c %a \"$1\") dir=$(stat -c %a \"$(dirname \"$1\")\") content=$(cat \"$1\")\" >&2\n\
         case \"$ACTION\" in\n\
           change) printf 'new value\\n' > \"$1\" ;;\n\
           fail) exit 3 ;;\n\
         esac\n",
    )
    .unwrap();
    fs::set_permissions(&editor, fs::Permissions::from_mode(0o755)).unwrap();
    let edit = |action: &str| {
        let mut command = alice.command_in(project.dir.path(), &["store", "edit", "db"]);
        command.env("EDITOR", &editor).env("ACTION", action);
        run_with_stdin(command, None)
    };

    let output = edit("change");
    let log = stderr(&output);
    assert!(output.status.success(), "{log}");
    assert!(
        log.contains("fs=tmpfs mode=600 dir=700 content=old"),
        "{log}"
    );
    assert!(log.contains("saved db"), "{log}");
    let path = log
        .lines()
        .find_map(|line| line.strip_prefix("editing "))
        .and_then(|rest| rest.split(' ').next())
        .unwrap()
        .to_owned();
    assert!(!Path::new(&path).exists(), "{path} outlived the edit");
    assert!(!Path::new(&path).parent().unwrap().exists());
    // One trailing newline, as editors add, is dropped.
    assert_eq!(project.get(&alice, "db"), b"new value");

    let before = fs::read(project.secret_file("db")).unwrap();
    let output = edit("nothing");
    assert!(
        stderr(&output).contains("db unchanged"),
        "{}",
        stderr(&output)
    );
    assert_eq!(fs::read(project.secret_file("db")).unwrap(), before);

    let output = edit("fail");
    assert_eq!(output.status.code(), Some(3), "{}", stderr(&output));
    assert!(stderr(&output).contains("nothing was saved"));
    assert_eq!(fs::read(project.secret_file("db")).unwrap(), before);

    // A secret that does not exist yet starts empty, and is created.
    let mut command = alice.command_in(project.dir.path(), &["store", "edit", "new/one"]);
    command.env("EDITOR", &editor).env("ACTION", "change");
    let output = run_with_stdin(command, None);
    assert!(
        stderr(&output).contains("content=\n"),
        "{}",
        stderr(&output)
    );
    assert_eq!(project.get(&alice, "new/one"), b"new value");
    project.ok(&alice, &["store", "verify"], None);
}

#[test]
fn export_refuses_a_terminal_and_round_trips_through_import() {
    require_tool("script", "bsdutils");
    let alice = Person::new();
    let project = Project::new(&alice);
    project.set(&alice, "dev/DB_URL", b"postgres://u:p@db/app?x=$y");
    project.set(&alice, "dev/NOTE", b"two\nlines \"quoted\" \\ end");

    // On a terminal: refused.
    let mut command = Command::new("script");
    command
        .args(["-qec"])
        .arg(format!("{HUSHBOX} store export --format env"))
        .arg("/dev/null")
        .current_dir(project.dir.path())
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap())
        .env("HOME", alice.home.path())
        .env("HUSHBOX_IDENTITY", alice.identity());
    let output = run_with_stdin(command, None);
    assert_eq!(output.status.code(), Some(78), "{}", stdout(&output));
    assert!(stdout(&output).contains("refusing to print secrets to a terminal"));
    assert!(!stdout(&output).contains("postgres"));

    let env = project.ok(
        &alice,
        &["store", "export", "--format", "env", "dev/"],
        None,
    );
    let json = project.ok(&alice, &["store", "export", "--format", "json"], None);
    let parsed: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(parsed["dev/NOTE"], "two\nlines \"quoted\" \\ end");

    fs::write(project.path("exported.env"), &env.stdout).unwrap();
    project.ok(
        &alice,
        &["store", "import", "exported.env", "--prefix", "copy"],
        None,
    );
    assert_eq!(
        project.get(&alice, "copy/DB_URL"),
        b"postgres://u:p@db/app?x=$y"
    );
    assert_eq!(
        project.get(&alice, "copy/NOTE"),
        b"two\nlines \"quoted\" \\ end"
    );
}

#[test]
fn ls_mv_rm_and_a_store_made_by_passage() {
    let alice = Person::new();
    let project = Project::new(&alice);
    for name in ["prod/db", "prod/api", "token"] {
        project.set(&alice, name, b"v");
    }
    let tree = stdout(&project.ok(&alice, &["store", "ls", "--tree"], None));
    assert!(
        tree.ends_with("├── prod/\n│   ├── api\n│   └── db\n└── token\n"),
        "{tree}"
    );
    assert_eq!(
        stdout(&project.ok(&alice, &["store", "ls", "prod/"], None)),
        "prod/api\nprod/db\n"
    );
    project.ok(&alice, &["store", "mv", "token", "prod/token"], None);
    project.fails(&alice, &["store", "mv", "prod/token", "prod/db"], 78);
    project.ok(&alice, &["store", "rm", "prod/api"], None);
    assert_eq!(
        stdout(&project.ok(&alice, &["store", "ls"], None)),
        "prod/db\nprod/token\n"
    );
    project.ok(&alice, &["store", "verify"], None);

    // A store made with age alone (passage's layout, no manifest) reads,
    // with a warning, until `accept` protects it.
    let passage = tempfile::tempdir().unwrap();
    let store = passage.path().join("store");
    fs::create_dir_all(&store).unwrap();
    fs::write(
        store.join(".age-recipients"),
        format!("{}\n", alice.recipient),
    )
    .unwrap();
    age_encrypt(
        &store.join(".age-recipients"),
        &store.join("x.age"),
        b"from passage",
    );
    let mut command = alice.command_in(passage.path(), &["store", "get", "x"]);
    command.env("HUSHBOX_STORE", &store);
    let output = run_with_stdin(command, None);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(output.stdout, b"from passage");
    assert!(
        stderr(&output).contains("no integrity manifest"),
        "{}",
        stderr(&output)
    );
}
