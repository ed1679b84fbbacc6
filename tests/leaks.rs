//! Leak tests in one place: every command of the binary runs with a canary
//! secret and trace logging, and every place a value could escape to is
//! searched for the canary, in every form `hushbox_testkit::Canary` knows
//! (text, `Debug` bytes, hex, base64).
//!
//! | place | where the canary may appear |
//! |---|---|
//! | stdout | only of `get`, `store get`, `store export` (asked for) |
//! | stderr: logs at TRACE, errors | never |
//! | a panic's output | never |
//! | a running hushbox's `/proc/PID/environ` and `cmdline` | never |
//! | the memory of a supervising hushbox (`/proc/PID/mem`) | never |
//! | the child's environment | only in variables that asked for the value (`env_value`, `NAME=ref`) |
//! | the child's `cmdline` | never |
//! | `--watch`: the status file, `health`, `--metrics-addr`, an `exec` hook's environment and argv | never |
//!
//! A new place output goes is one more
//! [`Leaks::search`] call in the test that makes hushbox produce it; the
//! backends' own canary test (`hushbox_testkit::canary_never_leaks`) covers
//! `Debug`, error chains and logs of each backend in-process.

mod common;

use common::{code, require_tool, run_with_stdin, stderr, tmpfs_dir};

use std::fmt::Display;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use hushbox_testkit::Canary;

/// What the canary was found in, collected so one failure lists every leak.
struct Leaks {
    canary: Canary,
    found: Vec<String>,
    searched: usize,
}

impl Leaks {
    fn new() -> Self {
        Self {
            canary: Canary::new(),
            found: Vec::new(),
            searched: 0,
        }
    }

    fn value(&self) -> &str {
        self.canary.value()
    }

    /// Records every form of the canary in `bytes`.
    fn search(&mut self, place: impl Display, bytes: &[u8]) {
        self.searched += 1;
        for form in self.canary.forms_in(bytes) {
            self.found.push(format!("{place} ({form})"));
        }
    }

    /// `bytes` must hold the canary: where a value is asked for, the test
    /// makes sure it looked at the real thing.
    fn expect(&self, place: impl Display, bytes: &[u8]) {
        assert!(
            !self.canary.forms_in(bytes).is_empty(),
            "{place}: the value asked for is not there"
        );
    }

    fn assert_none(self) {
        assert!(self.searched > 0, "nothing was searched");
        assert!(
            self.found.is_empty(),
            "the canary leaked into:\n  - {}",
            self.found.join("\n  - ")
        );
    }
}

/// A project whose age store and host files hold the canary: plain, as a
/// JSON field, in malformed JSON and a malformed `.env`; and a manifest that
/// delivers it as a file, through `env_value`, and from a host file.
struct Project {
    dir: tempfile::TempDir,
    out: tempfile::TempDir,
}

impl Project {
    fn new(leaks: &mut Leaks, env_value: bool) -> Self {
        require_tool("age", "age");
        let project = Self {
            dir: tempfile::tempdir().unwrap(),
            out: tmpfs_dir(),
        };
        let canary = leaks.value().to_owned();
        std::fs::write(
            project.path("host.json"),
            format!("{{\"k\": \"{canary}\"}}"),
        )
        .unwrap();
        std::fs::write(
            project.path("broken.env"),
            format!("TOKEN={canary}\nbroken \"{canary}\n"),
        )
        .unwrap();
        std::fs::write(project.path("import.env"), format!("IMPORTED={canary}\n")).unwrap();
        let env_value = if env_value {
            "[secrets.f]\nref = \"age://j#k\"\nenv_value = \"F\"\n"
        } else {
            ""
        };
        let manifest = format!(
            "version = 1\n[backends.age]\nkind = \"age\"\nstore = \"secrets\"\n\
             [output]\ndir = \"{out}\"\n\
             [secrets.c]\nref = \"age://c\"\nenv = \"C_FILE\"\n{env_value}\
             [secrets.h]\nref = \"file://{dir}/host.json#k\"\n\
             [secrets.m]\nref = \"age://j#missing\"\noptional = true\n",
            out = project.out.path().join("secrets").display(),
            dir = project.dir.path().display(),
        );
        std::fs::write(project.path("hushbox.toml"), manifest).unwrap();
        for (args, stdin) in [
            (&["keygen"][..], None),
            (&["store", "init"], None),
            (&["store", "set", "c"], Some(canary.clone())),
            (
                &["store", "set", "--raw", "j"],
                Some(format!("{{\"k\":\"{canary}\"}}")),
            ),
            (&["store", "set", "notjson"], Some(canary.clone())),
            (
                &["store", "set", "--raw", "broken"],
                Some(format!("{{\"k\": \"{canary}\", \"broken")),
            ),
        ] {
            let output = project.run(args, stdin.as_deref().map(str::as_bytes));
            assert!(output.status.success(), "{args:?}: {}", stderr(&output));
            leaks.search(format_args!("stdout of {args:?}"), &output.stdout);
            leaks.search(format_args!("stderr of {args:?}"), &output.stderr);
        }
        project
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = common::hushbox_command(self.dir.path(), self.dir.path(), args);
        command
            .env("HUSHBOX_IDENTITY", self.path("identity.txt"))
            // `store edit` runs the editor through `sh -c`: one that
            // changes nothing.
            .env("EDITOR", "true")
            .env("HUSHBOX_LOG", "trace");
        command
    }

    fn run(&self, args: &[&str], stdin: Option<&[u8]>) -> Output {
        run_with_stdin(self.command(args), stdin)
    }
}

#[test]
fn no_command_prints_the_canary_unless_asked_to() {
    let mut leaks = Leaks::new();
    let project = Project::new(&mut leaks, true);
    let host = format!("file://{}#k", project.path("host.json").display());
    let broken_env = format!("file://{}#TOKEN", project.path("broken.env").display());
    let keygen_identity = project.path("other-identity.txt");

    // Commands whose stdout is the value, because the user asked for it.
    let asked: [&[&str]; 5] = [
        &["get", "age://c"],
        &["get", &host],
        &["store", "get", "c"],
        &["store", "export", "--format", "env", "--force"],
        &["store", "export", "--format", "json", "--force"],
    ];
    // Every other command, succeeding or failing on purpose.
    let quiet: &[&[&str]] = &[
        &["--help"],
        &["exit-codes"],
        &["check"],
        &["check", "--fetch"],
        &["inject"],
        &["run", "--", "true"],
        &["exec", "--", "true"],
        &["get", "age://notjson#field"],
        &["get", "age://j#absent"],
        &["get", "age://broken#k"],
        &["get", &broken_env],
        &["get", "age://absent"],
        &["store", "ls"],
        &["store", "verify"],
        &["store", "recipients", "ls"],
        &["store", "reencrypt"],
        &["store", "accept"],
        &["store", "edit", "c"],
        &[
            "store",
            "import",
            "import.env",
            "--manifest",
            "imported.toml",
        ],
        &["store", "mv", "notjson", "moved"],
        &["store", "rm", "moved"],
    ];
    for args in asked {
        let output = project.run(args, None);
        assert!(output.status.success(), "{args:?}: {}", stderr(&output));
        leaks.expect(format_args!("stdout of {args:?}"), &output.stdout);
        leaks.search(format_args!("stderr of {args:?}"), &output.stderr);
    }
    for args in quiet {
        let output = project.run(args, None);
        leaks.search(format_args!("stdout of {args:?}"), &output.stdout);
        leaks.search(format_args!("stderr of {args:?}"), &output.stderr);
    }
    let output = run_with_stdin(
        {
            let mut command = project.command(&["keygen"]);
            command.env("HUSHBOX_IDENTITY", &keygen_identity);
            command
        },
        None,
    );
    assert!(output.status.success(), "keygen: {}", stderr(&output));
    leaks.search("output of keygen", &[output.stdout, output.stderr].concat());
    // The commands ran (and logged): a run that printed nothing would pass.
    let inject = project.run(&["inject"], None);
    assert!(
        !inject.stderr.is_empty(),
        "trace logging produced no output"
    );
    leaks.expect(
        "the file inject wrote",
        &std::fs::read(project.out.path().join("secrets/c")).unwrap(),
    );
    leaks.assert_none();
}

/// The variables of `env -0` output, as `NAME=value` byte strings.
fn variables(output: &[u8]) -> Vec<&[u8]> {
    output
        .split(|&b| b == 0)
        .filter(|v| !v.is_empty())
        .collect()
}

#[test]
fn the_child_environment_holds_the_value_only_where_asked() {
    for command in ["run", "exec"] {
        // Asked for: `env_value = "F"` and an environment reference `TOKEN=ref`.
        let mut leaks = Leaks::new();
        let project = Project::new(&mut leaks, true);
        let mut hushbox = project.command(&[command, "--", "env", "-0"]);
        hushbox
            .env("TOKEN", "age://c")
            .env("TOKEN_PATH_FILE", "age://notjson");
        let output = run_with_stdin(hushbox, None);
        assert_eq!(code(&output), 0, "{command}: {}", stderr(&output));
        let mut given = Vec::new();
        for variable in variables(&output.stdout) {
            let name = String::from_utf8_lossy(variable.split(|&b| b == b'=').next().unwrap());
            if name == "F" || name == "TOKEN" {
                leaks.expect(format_args!("{command}: the child's {name}"), variable);
                given.push(name.into_owned());
            } else {
                leaks.search(format_args!("{command}: the child's {name}"), variable);
            }
        }
        given.sort();
        assert_eq!(given, ["F", "TOKEN"], "{command}: the variables that asked");
        leaks.search(format_args!("{command}: stderr"), &output.stderr);
        leaks.assert_none();

        // Not asked for: files only.
        let mut leaks = Leaks::new();
        let project = Project::new(&mut leaks, false);
        let mut hushbox = project.command(&[command, "--", "env", "-0"]);
        hushbox.env("TOKEN_FILE", "age://c");
        let output = run_with_stdin(hushbox, None);
        assert_eq!(code(&output), 0, "{command}: {}", stderr(&output));
        let names: Vec<String> = variables(&output.stdout)
            .iter()
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .collect();
        assert!(
            names.iter().any(|v| v.starts_with("TOKEN_FILE=/")),
            "{command}: {names:?}"
        );
        leaks.search(
            format_args!("{command}: the child's environment"),
            &output.stdout,
        );
        leaks.search(format_args!("{command}: stderr"), &output.stderr);
        leaks.assert_none();
    }
}

/// The pids of `pid`'s children.
fn children_of(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

#[test]
fn a_running_hushbox_and_its_child_show_no_value_in_proc_environ_or_cmdline() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "reads a non-dumpable process's /proc/PID/environ: run as root (as CI does)"
    );
    let mut leaks = Leaks::new();
    let project = Project::new(&mut leaks, false);
    let (running, pid, child) = supervising_sleep(&project);
    for (who, pid) in [("hushbox", pid), ("the child", child)] {
        for file in ["environ", "cmdline"] {
            let bytes = std::fs::read(format!("/proc/{pid}/{file}")).unwrap();
            assert!(
                !bytes.is_empty() || file == "environ",
                "{who}'s {file} is empty"
            );
            leaks.search(format_args!("/proc/PID/{file} of {who}"), &bytes);
        }
    }
    let output = stop(running);
    leaks.search("stderr of exec", &output.stderr);
    leaks.assert_none();
}

/// `hushbox exec -- sleep 60` with `TOKEN_FILE=age://c` in its environment,
/// once `sleep` runs: the supervising hushbox, its pid and the child's.
fn supervising_sleep(project: &Project) -> (Child, u32, u32) {
    let mut hushbox = project.command(&["exec", "--", "sleep", "60"]);
    hushbox
        .env("TOKEN_FILE", "age://c")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut running = hushbox.spawn().unwrap();
    let pid = running.id();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let sleeping = children_of(pid).into_iter().find(|child| {
            std::fs::read(format!("/proc/{child}/cmdline")).is_ok_and(|c| c.starts_with(b"sleep\0"))
        });
        if let Some(child) = sleeping {
            return (running, pid, child);
        }
        assert!(
            Instant::now() < deadline && running.try_wait().unwrap().is_none(),
            "hushbox exec did not start `sleep`"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// SIGTERM to the supervisor (it forwards it to `sleep`), and its output.
fn stop(running: Child) -> Output {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(running.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    running.wait_with_output().unwrap()
}

/// How many times `needle` occurs in the memory of `pid` that
/// `/proc/PID/mem` lets root read. `memfd_secret` areas cannot be read this
/// way at all (that is their point) and are skipped with the other
/// unreadable ones.
fn occurrences_in_memory(pid: u32, needle: &[u8]) -> usize {
    use std::io::{Read, Seek, SeekFrom};
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    let mut memory = std::fs::File::open(format!("/proc/{pid}/mem")).unwrap();
    let mut found = 0;
    for line in maps.lines() {
        let mut fields = line.split_whitespace();
        let (Some(range), Some(perms)) = (fields.next(), fields.next()) else {
            continue;
        };
        let (start, end) = range.split_once('-').unwrap();
        let start = u64::from_str_radix(start, 16).unwrap();
        let end = u64::from_str_radix(end, 16).unwrap();
        if !perms.starts_with('r') {
            continue;
        }
        let mut bytes = vec![0u8; (end - start) as usize];
        if memory.seek(SeekFrom::Start(start)).is_err() || memory.read_exact(&mut bytes).is_err() {
            continue;
        }
        // The first byte narrows the search; a full compare confirms.
        found += bytes
            .iter()
            .enumerate()
            .filter(|&(i, &b)| b == needle[0] && bytes[i..].starts_with(needle))
            .count();
    }
    found
}

#[test]
fn a_supervising_hushbox_keeps_no_copy_of_a_value_in_its_memory() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "reads a non-dumpable process's /proc/PID/mem: run as root (as CI does)"
    );
    let mut leaks = Leaks::new();
    // With `env_value`: the value passes through hushbox into the child's
    // environment, the path most likely to leave a copy behind.
    let project = Project::new(&mut leaks, true);
    let (running, pid, child) = supervising_sleep(&project);
    let canary = leaks.value().as_bytes().to_vec();
    let in_child = occurrences_in_memory(child, &canary);
    let in_hushbox = occurrences_in_memory(pid, &canary);
    let output = stop(running);
    // The child has it (its environment): the search works.
    assert!(
        in_child > 0,
        "the search did not find the value in the child"
    );
    assert_eq!(
        in_hushbox, 0,
        "the supervising hushbox still holds {in_hushbox} copies of the value"
    );
    leaks.search("stderr of exec", &output.stderr);
    leaks.assert_none();
}

/// Templates render through filters into files; once the program runs, the
/// supervising hushbox holds no copy of the value in any form a filter
/// produced (text, percent-encoded, JSON, indented, base64), nor of the
/// rendered text. (With `env_value`, the environment handed to the program
/// leaves copies behind: see SECURITY.md, "Environment delivery".)
#[test]
fn a_supervising_hushbox_keeps_no_copy_of_a_rendered_template() {
    use base64::Engine as _;
    assert!(
        nix::unistd::geteuid().is_root(),
        "reads a non-dumpable process's /proc/PID/mem: run as root (as CI does)"
    );
    let mut leaks = Leaks::new();
    let project = Project::new(&mut leaks, false);
    let manifest = format!(
        "version = 1\n[backends.age]\nkind = \"age\"\nstore = \"secrets\"\n\
         [output]\ndir = \"{out}\"\n\
         [secrets.c]\nref = \"age://c\"\n\
         [secrets.j]\nref = \"age://j\"\n\
         [templates.url]\nenv = \"URL_FILE\"\n\
         inline = \"postgres://u:{{{{ secret('c') | urlencode }}}}@db/{{{{ secret('j#k') | base64 }}}}\"\n\
         [templates.\"app.yml\"]\nenv = \"APP_FILE\"\n\
         inline = \"p: {{{{ secret('c') | json }}}}\\nq: |\\n  {{{{ secret('j#k') | trim | indent(2) }}}}\\n\"\n",
        out = project.out.path().join("secrets").display(),
    );
    std::fs::write(project.path("hushbox.toml"), manifest).unwrap();
    let (running, pid, _) = supervising_sleep(&project);
    let canary = leaks.value().as_bytes().to_vec();
    let encoded = base64::engine::general_purpose::STANDARD.encode(&canary);
    let url = format!("postgres://u:{}@db/{encoded}", leaks.value());
    let rendered_file = std::fs::read(project.out.path().join("secrets/app.yml")).unwrap();
    assert!(rendered_file.starts_with(b"p: \""), "{rendered_file:?}");
    // Stretches from the middle: a freed buffer loses its first 16 bytes to
    // the allocator's bookkeeping, and a copy without its head is a copy.
    let middle = |bytes: &[u8]| bytes[16..bytes.len() - 8].to_vec();
    let token = canary["hushbox-canary-".len()..]
        .iter()
        .take(16)
        .copied()
        .collect::<Vec<u8>>();
    let needles: [(&str, Vec<u8>); 4] = [
        ("the value", token),
        ("its base64", middle(encoded.as_bytes())),
        ("the rendered URL", middle(url.as_bytes())),
        ("the rendered file", middle(&rendered_file)),
    ];
    assert_eq!(
        std::fs::read(project.out.path().join("secrets/url")).unwrap(),
        url.as_bytes()
    );
    // A shell that read the rendered URL into a variable: the search finds
    // it there.
    let mut control = Command::new("sh")
        .args([
            "-c",
            "u=$(cat \"$1\"); echo ready; read -r _; echo \"$u\" >/dev/null",
            "sh",
        ])
        .arg(project.out.path().join("secrets/url"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut ready = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(control.stdout.as_mut().unwrap()),
        &mut ready,
    )
    .unwrap();
    let in_control = occurrences_in_memory(control.id(), url.as_bytes());
    drop(control.stdin.take());
    control.wait().unwrap();
    assert!(
        in_control > 0,
        "the search did not find the URL in a shell holding it"
    );
    let in_hushbox: Vec<(&str, usize)> = needles
        .iter()
        .map(|(what, needle)| (*what, occurrences_in_memory(pid, needle)))
        .collect();
    let output = stop(running);
    assert!(
        in_hushbox.iter().all(|(_, count)| *count == 0),
        "the supervising hushbox still holds copies: {in_hushbox:?}"
    );
    leaks.search("stderr of exec", &output.stderr);
    leaks.assert_none();
}

#[test]
fn a_panic_shows_where_it_happened_but_not_a_message_quoting_a_value() {
    let mut leaks = Leaks::new();
    let project = Project::new(&mut leaks, false);
    let mut get = project.command(&["get", "age://c"]);
    get.env("HUSHBOX_DEBUG_PANIC_WITH_VALUE", "1");
    let output = run_with_stdin(get, None);
    if cfg!(debug_assertions) {
        // Debug builds (the tests' own) panic on purpose, with the value in
        // the panic message; the hook must not print it.
        assert_ne!(code(&output), 0, "no panic: {}", stderr(&output));
        let text = stderr(&output);
        assert!(text.contains("hushbox: internal error"), "{text}");
        assert!(text.contains("src/commands/get.rs"), "no location: {text}");
        leaks.search("stderr of a panicking get", &output.stderr);
        assert!(output.stdout.is_empty());
    } else {
        // Release builds have no such switch: the variable does nothing.
        assert_eq!(code(&output), 0, "{}", stderr(&output));
        leaks.expect("stdout of get", &output.stdout);
    }
    leaks.assert_none();
}

/// `inject --watch` through a rotation: its logs at TRACE, the status file,
/// `health`, an `exec` hook's environment and arguments, and the watcher's
/// own `/proc` never hold the canary; only the secret files do.
#[test]
fn a_watching_sidecar_leaks_no_value_into_status_hooks_or_logs() {
    let mut leaks = Leaks::new();
    let project = Project::new(&mut leaks, false);
    let hook_out = project.path("hook.out");
    let manifest = std::fs::read_to_string(project.path("hushbox.toml")).unwrap();
    std::fs::write(
        project.path("hushbox.toml"),
        manifest.replace(
            "[secrets.c]\n",
            &format!(
                "[watch]\ninterval = \"200ms\"\ndebounce = \"50ms\"\n\
                 on_change = {{ exec = [\"sh\", \"-c\", \"{{ env; echo \\\"$@\\\"; }} > {}\", \"hook\"] }}\n\
                 [secrets.c]\n",
                hook_out.display()
            ),
        ),
    )
    .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .unwrap()
        .port();
    let metrics_addr = format!("127.0.0.1:{port}");
    let watcher = project
        .command(&["inject", "--watch", "--metrics-addr", &metrics_addr])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = project.out.path().join("secrets/..status");
    let started = Instant::now();
    while !status.exists() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no status file"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let rotated = format!("{}-rotated", leaks.value());
    let output = project.run(&["store", "set", "c"], Some(rotated.as_bytes()));
    assert!(output.status.success(), "{}", stderr(&output));
    while !hook_out.exists() {
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "the hook did not run"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(200));
    let pid = watcher.id();
    for place in ["environ", "cmdline"] {
        let bytes = std::fs::read(format!("/proc/{pid}/{place}")).unwrap();
        leaks.search(format_args!("the watcher's /proc/PID/{place}"), &bytes);
    }
    leaks.search("the status file", &std::fs::read(&status).unwrap());
    leaks.search("the hook's environment", &std::fs::read(&hook_out).unwrap());
    let metrics = scrape(&metrics_addr);
    assert!(metrics.contains("hushbox_generation 2"), "{metrics}");
    leaks.search("the metrics", metrics.as_bytes());
    let health = project.run(&["health"], None);
    leaks.search("health", &[health.stdout, health.stderr].concat());
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let output = watcher.wait_with_output().unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(!output.stderr.is_empty(), "trace logging produced output");
    leaks.search("the watcher's stdout", &output.stdout);
    leaks.search("the watcher's stderr", &output.stderr);
    leaks.expect(
        "the rotated file",
        &std::fs::read(project.out.path().join("secrets/c")).unwrap(),
    );
    leaks.assert_none();
}

/// One `GET /metrics` over a plain TCP connection.
fn scrape(address: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    answer
}
