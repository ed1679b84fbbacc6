//! `--watch`: rotation end to end with the age store. A value changed with
//! `store set` while `exec --watch`, `run --watch` or `inject --watch` runs
//! lands as a new generation and fires its hook once; unchanged rounds write
//! nothing and fire nothing; an outage keeps the last good files and turns
//! `health` unhealthy until the store is back.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{code, stderr, stdout};

/// A project: an identity, an initialised store holding `db`, a manifest
/// whose output directory is on tmpfs.
struct Project {
    dir: tempfile::TempDir,
    out: tempfile::TempDir,
}

impl Project {
    /// `secrets` is appended to the manifest after `[output]`.
    fn new(secrets: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let out = common::tmpfs_dir();
        let manifest = format!(
            "version = 1\n[backends.age]\nkind = \"age\"\nstore = \"secrets\"\n[output]\ndir = \"{}\"\n{secrets}",
            out.path().join("secrets").display()
        );
        std::fs::write(dir.path().join("hushbox.toml"), manifest).unwrap();
        let project = Self { dir, out };
        for args in [&["keygen"][..], &["store", "init"]] {
            let output = project.hushbox(args).output().unwrap();
            assert!(output.status.success(), "{}", stderr(&output));
        }
        project.set("db", "first-value");
        project
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn secrets_dir(&self) -> PathBuf {
        self.out.path().join("secrets")
    }

    fn hushbox(&self, args: &[&str]) -> Command {
        let mut command = common::hushbox_command(self.dir.path(), self.dir.path(), args);
        command.env("HUSHBOX_IDENTITY", self.path("identity.txt"));
        command
    }

    fn set(&self, name: &str, value: &str) {
        let output = common::run_with_stdin(
            self.hushbox(&["store", "set", name]),
            Some(value.as_bytes()),
        );
        assert!(output.status.success(), "{}", stderr(&output));
    }

    /// Starts `hushbox ARGS` with stdout and stderr collected line by line.
    fn start(&self, args: &[&str]) -> Running {
        let mut child = self
            .hushbox(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (lines, received) = mpsc::channel();
        for pipe in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let lines = lines.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines() {
                    let Ok(line) = line else { break };
                    let _ = lines.send(line);
                }
            });
        }
        Running {
            child,
            received,
            seen: Vec::new(),
        }
    }

    /// The generation `..data` points to.
    fn generation(&self) -> String {
        std::fs::read_link(self.secrets_dir().join("..data"))
            .map(|target| target.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.secrets_dir().join(name)).unwrap_or_default()
    }

    fn health(&self) -> (i32, String) {
        let output = self.hushbox(&["health"]).output().unwrap();
        (code(&output), stderr(&output))
    }
}

/// A running hushbox and everything it printed so far.
struct Running {
    child: Child,
    received: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Running {
    /// Waits for a line containing `wanted`; panics with what was seen.
    fn wait_for(&mut self, wanted: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        if self.seen.iter().any(|line| line.contains(wanted)) {
            return;
        }
        while let Ok(line) = self
            .received
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            let found = line.contains(wanted);
            self.seen.push(line);
            if found {
                return;
            }
        }
        panic!(
            "no line with {wanted:?} within {timeout:?}: {:#?}",
            self.seen
        );
    }

    /// Everything printed so far.
    fn lines(&mut self) -> &[String] {
        while let Ok(line) = self.received.try_recv() {
            self.seen.push(line);
        }
        &self.seen
    }

    fn count(&mut self, wanted: &str) -> usize {
        self.lines()
            .iter()
            .filter(|line| line.contains(wanted))
            .count()
    }

    /// SIGTERM, then the exit code.
    fn stop(mut self) -> i32 {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code().unwrap_or(-1);
            }
            assert!(Instant::now() < deadline, "hushbox did not stop");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `condition` every 20 ms until it holds; panics naming `what`.
fn wait_until(what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !condition() {
        assert!(
            started.elapsed() < timeout,
            "{what}: not within {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    started.elapsed()
}

/// A program that prints `ready`, then `HUP <contents of $DB_FILE>` on
/// every SIGHUP.
const HUP_PRINTER: &str = "trap 'echo \"HUP $(cat \"$DB_FILE\")\"' HUP; echo ready; \
                           while true; do sleep 0.05; done";

#[test]
fn exec_watch_commits_a_change_once_and_signals_once() {
    let project = Project::new(
        "[watch]\ndebounce = \"100ms\"\n[secrets.db]\nref = \"age://db\"\nenv = \"DB_FILE\"\n\
         refresh = \"500ms\"\non_change = \"signal:HUP\"\n",
    );
    let mut running = project.start(&["-vv", "exec", "--watch", "--", "sh", "-c", HUP_PRINTER]);
    running.wait_for("ready", Duration::from_secs(10));
    let first = project.generation();
    assert_eq!(project.read("db"), "first-value");

    // Unchanged rounds: no new generation, no hook, and (the store's
    // integrity version standing still) not even a decryption.
    std::thread::sleep(Duration::from_millis(1600));
    assert_eq!(
        project.generation(),
        first,
        "an unchanged round wrote nothing"
    );
    assert!(
        !running.lines().iter().any(|line| line.starts_with("HUP")),
        "{:#?}",
        running.lines()
    );
    let reads_before = running.count("reading age file");

    let changed_at = Instant::now();
    project.set("db", "second-value");
    wait_until("the new value on disk", Duration::from_secs(5), || {
        project.read("db") == "second-value"
    });
    let latency = changed_at.elapsed();
    assert!(
        latency < Duration::from_millis(500 + 1000),
        "picked up within the interval (plus the store's own write): {latency:?}"
    );
    assert_ne!(project.generation(), first);
    running.wait_for("HUP second-value", Duration::from_secs(5));
    assert!(running.count("reading age file") > reads_before);

    // Several more rounds: still exactly one signal.
    std::thread::sleep(Duration::from_millis(1500));
    let signals = running
        .lines()
        .iter()
        .filter(|line| line.starts_with("HUP "))
        .count();
    assert_eq!(signals, 1, "{:#?}", running.lines());
    assert_eq!(running.stop(), 128 + 15);
}

#[test]
fn restart_never_runs_two_programs_at_once() {
    let project = Project::new(
        "[watch]\ndebounce = \"50ms\"\nrestart_grace = \"5s\"\n\
         [secrets.db]\nref = \"age://db\"\nenv = \"DB_FILE\"\nrefresh = \"300ms\"\non_change = \"restart\"\n",
    );
    let lock = project.path("program.lock");
    // The program holds a lock for its whole life and takes a while to
    // stop: a second copy started too early finds the lock taken.
    let program = format!(
        "exec 9>{lock}; flock -n 9 || {{ echo TWO-AT-ONCE; exit 3; }}; \
         trap 'sleep 0.4; echo stopping; exit 0' TERM; \
         echo \"started $(cat \"$DB_FILE\")\"; while true; do sleep 0.05; done",
        lock = lock.display()
    );
    let mut running = project.start(&["exec", "--watch", "--", "sh", "-c", &program]);
    running.wait_for("started first-value", Duration::from_secs(10));
    project.set("db", "second-value");
    running.wait_for("started second-value", Duration::from_secs(10));
    project.set("db", "third-value");
    running.wait_for("started third-value", Duration::from_secs(10));
    assert_eq!(running.count("TWO-AT-ONCE"), 0, "{:#?}", running.lines());
    assert_eq!(running.count("stopping"), 2, "{:#?}", running.lines());
    assert_eq!(running.count("started"), 3, "{:#?}", running.lines());
    assert_eq!(running.stop(), 0, "the last program stopped cleanly");
}

#[test]
fn inject_watch_runs_exec_hooks_with_names_never_values() {
    let project = Project::new(
        "[watch]\ndebounce = \"100ms\"\ninterval = \"300ms\"\n\
         on_change = { exec = [\"sh\", \"-c\", \"env > \\\"$0\\\"; echo \\\"$HUSHBOX_CHANGED $HUSHBOX_GENERATION\\\" >> \\\"$0.log\\\"\", \"HOOK\"] }\n\
         [secrets.db]\nref = \"age://db\"\n[secrets.api]\nref = \"age://api\"\n",
    );
    project.set("api", "api-first");
    let hook_file = project.path("hook-env");
    // The hook's argv names its own output file.
    let manifest = std::fs::read_to_string(project.path("hushbox.toml"))
        .unwrap()
        .replace("\"HOOK\"", &format!("\"{}\"", hook_file.display()));
    std::fs::write(project.path("hushbox.toml"), manifest).unwrap();

    let mut running = project.start(&["inject", "--watch"]);
    running.wait_for("watching 2 secrets", Duration::from_secs(10));
    assert_eq!(project.read("db"), "first-value");
    std::thread::sleep(Duration::from_millis(800));
    assert!(!hook_file.exists(), "the first generation fires no hook");

    project.set("db", "canary-db-value");
    let log = PathBuf::from(format!("{}.log", hook_file.display()));
    wait_until("the hook ran", Duration::from_secs(5), || log.exists());
    std::thread::sleep(Duration::from_millis(900));
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "db 2\n", "once");
    let env = std::fs::read_to_string(&hook_file).unwrap();
    assert!(env.contains("HUSHBOX_CHANGED=db"), "{env}");
    assert!(!env.contains("canary-db-value") && !env.contains("api-first"));
    assert_eq!(project.read("db"), "canary-db-value");
    assert_eq!(project.read("api"), "api-first");
    assert_eq!(running.stop(), 0);
    assert_eq!(
        project.read("db"),
        "canary-db-value",
        "files stay by default"
    );
}

#[test]
fn outage_keeps_the_last_good_files_and_health_follows() {
    let project = Project::new(
        "[watch]\ninterval = \"200ms\"\nmax_stale = \"2s\"\ncleanup_on_exit = true\n\
         [secrets.db]\nref = \"age://db\"\n",
    );
    let (code, reason) = project.health();
    assert_eq!(code, 1, "no watcher yet");
    assert!(reason.contains("is a `--watch` running"), "{reason}");

    let mut running = project.start(&["inject", "--watch"]);
    running.wait_for("watching 1 secrets", Duration::from_secs(10));
    wait_until("healthy", Duration::from_secs(5), || {
        project.health().0 == 0
    });

    // The store goes away (an unmounted volume, a broken checkout).
    std::fs::rename(project.path("secrets"), project.path("secrets.away")).unwrap();
    running.wait_for("cannot refresh", Duration::from_secs(5));
    let unhealthy_after = wait_until("unhealthy", Duration::from_secs(10), || {
        project.health().0 == 1
    });
    let (_, reason) = project.health();
    assert!(reason.contains("`db` is stale"), "{reason}");
    assert!(
        unhealthy_after >= Duration::from_millis(1000),
        "{unhealthy_after:?}"
    );
    assert_eq!(
        project.read("db"),
        "first-value",
        "the last good value stays"
    );
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        running.count("cannot refresh"),
        1,
        "logged once per change of state, not per retry: {:#?}",
        running.lines()
    );

    std::fs::rename(project.path("secrets.away"), project.path("secrets")).unwrap();
    wait_until("healthy again", Duration::from_secs(20), || {
        project.health().0 == 0
    });
    assert_eq!(running.stop(), 0);
    assert!(
        !project.secrets_dir().join("db").exists(),
        "cleanup_on_exit removed the files"
    );
}

#[test]
fn exec_watch_after_a_privilege_drop_keeps_the_identity_root_only() {
    let project = Project::new(
        "[watch]\ndebounce = \"50ms\"\n[secrets.db]\nref = \"age://db\"\nenv = \"DB_FILE\"\n\
         refresh = \"300ms\"\non_change = \"signal:HUP\"\n",
    );
    // The safe container setup: the identity is root's alone; the store
    // (ciphertext) is readable.
    let identity = project.path("identity.txt");
    std::fs::set_permissions(
        &identity,
        std::os::unix::fs::PermissionsExt::from_mode(0o400),
    )
    .unwrap();
    for path in [project.dir.path().to_path_buf(), project.path("secrets")] {
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
    }
    for entry in std::fs::read_dir(project.path("secrets")).unwrap() {
        std::fs::set_permissions(
            entry.unwrap().path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o644),
        )
        .unwrap();
    }
    let program = format!(
        "cat {} >/dev/null 2>&1 && echo IDENTITY-READABLE; {HUP_PRINTER}",
        identity.display()
    );
    let mut running = project.start(&[
        "exec", "--watch", "--user", "nobody", "--", "sh", "-c", &program,
    ]);
    running.wait_for("ready", Duration::from_secs(10));
    project.set("db", "rotated");
    // store set rewrites files 0600 as root: give the ciphertext back to
    // everyone, as a git checkout would be.
    for entry in std::fs::read_dir(project.path("secrets")).unwrap() {
        std::fs::set_permissions(
            entry.unwrap().path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o644),
        )
        .unwrap();
    }
    running.wait_for("HUP rotated", Duration::from_secs(10));
    assert_eq!(running.count("IDENTITY-READABLE"), 0);
    let owner = std::os::unix::fs::MetadataExt::uid(
        &std::fs::metadata(project.secrets_dir().join("db")).unwrap(),
    );
    assert_eq!(owner, 65534);
    let status = std::fs::read_to_string(project.secrets_dir().join("..status")).unwrap();
    assert!(status.contains("\"generation\":2"), "{status}");
    running.stop();
}

#[test]
fn watch_settings_without_watch_warn_and_check_shows_the_schedule() {
    let project = Project::new(
        "[watch]\ninterval = \"2m\"\n[secrets.db]\nref = \"age://db\"\nenv = \"DB_FILE\"\n\
         refresh = \"30s\"\non_change = \"signal:HUP\"\n[secrets.other]\nref = \"age://db\"\n",
    );
    let output = project
        .hushbox(&["exec", "--", "sh", "-c", "cat \"$DB_FILE\""])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(stdout(&output), "first-value");
    let warning = "apply only with --watch";
    assert_eq!(
        stderr(&output).matches(warning).count(),
        1,
        "{}",
        stderr(&output)
    );

    let output = project.hushbox(&["check"]).output().unwrap();
    let text = stdout(&output);
    assert!(
        text.contains("--watch: every 30s, stale after 90s, on change: signal:SIGHUP"),
        "{text}"
    );
    assert!(
        text.contains("--watch: every 2m, stale after 6m, on change: nothing"),
        "{text}"
    );
}

#[test]
fn inject_watch_refuses_fail_on_stale_which_has_no_program_to_stop() {
    let project = Project::new("[watch]\nfail_on_stale = true\n[secrets.db]\nref = \"age://db\"\n");
    let output = project.hushbox(&["inject", "--watch"]).output().unwrap();
    assert_eq!(code(&output), 78, "{}", stderr(&output));
    assert!(
        stderr(&output).contains("[watch].fail_on_stale"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn inject_watch_refuses_hooks_that_need_a_program() {
    let project = Project::new("[secrets.db]\nref = \"age://db\"\non_change = \"restart\"\n");
    let output = project.hushbox(&["inject", "--watch"]).output().unwrap();
    assert_eq!(code(&output), 78, "{}", stderr(&output));
    assert!(
        stderr(&output).contains("[secrets.db].on_change")
            && stderr(&output).contains("only `{ exec = [...] }` hooks apply"),
        "{}",
        stderr(&output)
    );
    assert!(
        !project.secrets_dir().join("db").exists(),
        "nothing written"
    );
}

#[test]
fn run_watch_refreshes_the_private_directory() {
    let project = Project::new(
        "[watch]\ndebounce = \"50ms\"\n[secrets.db]\nref = \"age://db\"\nenv = \"DB_FILE\"\n\
         refresh = \"300ms\"\non_change = \"signal:USR1\"\n",
    );
    let program = "trap 'echo \"USR1 $(cat \"$DB_FILE\")\"' USR1; echo ready; \
                   while true; do sleep 0.05; done";
    let mut running = project.start(&["run", "--watch", "--", "sh", "-c", program]);
    running.wait_for("ready", Duration::from_secs(10));
    project.set("db", "second-value");
    running.wait_for("USR1 second-value", Duration::from_secs(10));
    running.stop();
}

#[test]
fn a_file_replaced_by_rename_is_picked_up_through_inotify_well_under_the_interval() {
    let host = tempfile::tempdir().unwrap();
    let file = host.path().join("api.key");
    std::fs::write(&file, "key-one").unwrap();
    let project = Project::new(&format!(
        "[watch]\ninterval = \"1h\"\n[secrets.api]\nref = \"file://{}\"\n",
        file.display()
    ));
    let mut running = project.start(&["inject", "--watch"]);
    running.wait_for("watching 1 secrets", Duration::from_secs(10));
    assert_eq!(project.read("api"), "key-one");
    let first = project.generation();

    let mut latencies = Vec::new();
    for value in ["key-two", "key-three"] {
        // What editors do: write a temporary file, rename it over.
        let temporary = host.path().join(".api.key.swp");
        std::fs::write(&temporary, value).unwrap();
        let replaced = Instant::now();
        std::fs::rename(&temporary, &file).unwrap();
        wait_until("the new file on disk", Duration::from_secs(5), || {
            project.read("api") == value
        });
        latencies.push(replaced.elapsed());
    }
    assert_ne!(project.generation(), first);
    assert!(
        latencies
            .iter()
            .all(|latency| *latency < Duration::from_millis(1000)),
        "inotify, not the 1 h interval: {latencies:?}"
    );
    eprintln!("inotify latencies: {latencies:?}");
    assert_eq!(running.stop(), 0);
}

#[test]
fn fail_on_stale_stops_the_program() {
    let project = Project::new(
        "[watch]\ninterval = \"200ms\"\nmax_stale = \"1s\"\nfail_on_stale = true\n\
         [secrets.db]\nref = \"age://db\"\nenv = \"DB_FILE\"\n",
    );
    let program = "trap 'echo stopped-by-hushbox; exit 7' TERM; echo ready; \
                   while true; do sleep 0.05; done";
    let mut running = project.start(&["exec", "--watch", "--", "sh", "-c", program]);
    running.wait_for("ready", Duration::from_secs(10));
    std::fs::rename(project.path("secrets"), project.path("secrets.away")).unwrap();
    running.wait_for("stopped-by-hushbox", Duration::from_secs(10));
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = running.child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "hushbox did not end");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(7), "the program's own code");
    assert_eq!(
        project.read("db"),
        "first-value",
        "the last good file stays"
    );
}
