//! A local attacker against the output directory, its lock, the per-run
//! directory and the setup phase before the child starts (findings 2–5 of
//! the adversarial review, and the low findings next to them).
//!
//! Each test plays the attack as a real second Unix user
//! (`common::users`), or as the event it stands for (a SIGKILL, a signal
//! during a hung fetch), and asserts what hushbox does. The tests run as
//! root, as CI does.

mod common;

use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::net::TcpListener;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use common::users::LocalUser;
use common::{code, require_tool, stderr, tmpfs_dir};
use hushbox::output::{Commit, GenerationWriter, OutputOptions};
use hushbox_core::SecretValue;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

const HUSHBOX: &str = env!("CARGO_BIN_EXE_hushbox");
/// How long any one step may take before the test calls it a hang.
const HANG: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------- helpers

/// A project directory with a manifest whose one secret, `token`, comes from
/// a file beside it, written to `out`.
struct Project {
    dir: tempfile::TempDir,
}

impl Project {
    fn new(out: &Path, extra_output: &str) -> Self {
        let dir = tmpfs_dir();
        fs::write(dir.path().join("token.txt"), b"value-one").unwrap();
        fs::write(
            dir.path().join("hushbox.toml"),
            format!(
                "version = 1\n[output]\ndir = \"{}\"\n{extra_output}\n\
                 [secrets.token]\nref = \"file://token.txt\"\n",
                out.display()
            ),
        )
        .unwrap();
        Self { dir }
    }

    fn set_token(&self, value: &str) {
        fs::write(self.dir.path().join("token.txt"), value).unwrap();
    }

    fn hushbox(&self, args: &[&str]) -> Command {
        hushbox_in(self.dir.path(), args)
    }
}

fn hushbox_in(cwd: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(HUSHBOX);
    command
        .args(args)
        .current_dir(cwd)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap())
        .env("HOME", cwd);
    command
}

/// Runs `command` to its end, failing the test if it takes longer than
/// [`HANG`] (and killing it then, so nothing is left behind).
fn run_bounded(mut command: impl std::borrow::BorrowMut<Command>) -> (Output, Duration) {
    let started = Instant::now();
    let mut child = command
        .borrow_mut()
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    loop {
        if child.try_wait().unwrap().is_some() {
            return (child.wait_with_output().unwrap(), started.elapsed());
        }
        if started.elapsed() > HANG {
            child.kill().unwrap();
            let output = child.wait_with_output().unwrap();
            panic!(
                "still running after {HANG:?} (killed): stderr {:?}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// Polls `condition` until it holds, or fails after [`HANG`].
fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let started = Instant::now();
    while !condition() {
        assert!(started.elapsed() < HANG, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(5));
    }
}

/// Reads `child`'s stderr until a line contains `needle`; returns the lines.
fn wait_for_stderr_line(child: &mut Child, needle: &str) -> Vec<String> {
    let mut lines = Vec::new();
    let reader = BufReader::new(child.stderr.as_mut().unwrap());
    for line in reader.lines() {
        let line = line.unwrap();
        let done = line.contains(needle);
        lines.push(line);
        if done {
            return lines;
        }
    }
    panic!("stderr closed before a line with {needle:?}: {lines:?}");
}

fn mode_of(path: &Path) -> u32 {
    fs::symlink_metadata(path).unwrap().mode() & 0o7777
}

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

fn generations(dir: &Path) -> Vec<String> {
    entries(dir)
        .into_iter()
        .filter(|name| name.starts_with("..2"))
        .collect()
}

/// A base directory other users can traverse (a test dir is 0700 root).
fn traversable_base() -> tempfile::TempDir {
    let base = tmpfs_dir();
    fs::set_permissions(base.path(), fs::Permissions::from_mode(0o755)).unwrap();
    base
}

// ------------------------------------------- finding 2: mkdir, then chmod

/// The attacker owns nothing but write access to a shared, non-sticky
/// parent. hushbox creates the output directory there; while `mkdir`
/// returns (strace delays its return by half a second, which makes the
/// race deterministic), the attacker replaces the new directory with a
/// symlink to a root-only file. The old code then chmod-ed the path and
/// turned that 0600 file into 0755.
#[test]
fn a_symlink_swapped_in_after_mkdir_is_never_chmod_ed_through() {
    require_tool("strace", "strace");
    let attacker = LocalUser::attacker();
    let base = traversable_base();
    let shared = base.path().join("shared");
    fs::create_dir(&shared).unwrap();
    fs::set_permissions(&shared, fs::Permissions::from_mode(0o777)).unwrap();
    let precious = base.path().join("precious");
    fs::write(&precious, b"root only").unwrap();
    fs::set_permissions(&precious, fs::Permissions::from_mode(0o600)).unwrap();
    let out = shared.join("secrets");
    let project = Project::new(&out, "");

    // The attacker waits for the directory, removes it, plants the link.
    let script = format!(
        "i=0; while [ ! -d '{out}' ] && [ $i -lt 2000000 ]; do i=$((i+1)); done; \
         rmdir '{out}' && ln -s '{precious}' '{out}' && echo swapped",
        out = out.display(),
        precious = precious.display()
    );
    let swapper = attacker
        .command("sh")
        .args(["-c", &script])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();

    let mut traced = Command::new("strace");
    traced
        .args(["-f", "-qq", "-o", "/dev/null"])
        .args(["-e", "trace=mkdir,mkdirat"])
        .args(["-e", "inject=mkdir,mkdirat:delay_exit=500000"])
        .arg(HUSHBOX)
        .arg("inject")
        .current_dir(project.dir.path())
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap());
    let (output, _) = run_bounded(traced);
    let swapped = swapper.wait_with_output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&swapped.stdout).trim(),
        "swapped",
        "the attacker did not get to swap the directory"
    );

    assert_eq!(
        mode_of(&precious),
        0o600,
        "hushbox changed the mode of the symlink's target; stderr: {}",
        stderr(&output)
    );
    assert_eq!(fs::read(&precious).unwrap(), b"root only");
    assert_eq!(code(&output), 78, "{}", stderr(&output));
    assert!(stderr(&output).contains("symlink"), "{}", stderr(&output));
}

// ----------------------------------- finding 3: a trailing slash or `/.`

#[test]
fn a_trailing_slash_or_dot_does_not_reach_through_a_symlinked_output_dir() {
    let base = tmpfs_dir();
    let real = base.path().join("real");
    fs::create_dir(&real).unwrap();
    let link = base.path().join("link");
    symlink(&real, &link).unwrap();
    let project = Project::new(&base.path().join("unused"), "");
    for suffix in ["/", "/.", "//", "/./", "/./."] {
        let dir = format!("{}{suffix}", link.display());
        let (output, _) = run_bounded(project.hushbox(&["inject", "--dir", &dir]));
        assert_eq!(code(&output), 78, "{dir}: {}", stderr(&output));
        assert!(
            stderr(&output).contains("symlink"),
            "{dir}: {}",
            stderr(&output)
        );
        assert!(
            entries(&real).is_empty(),
            "{dir}: wrote {:?}",
            entries(&real)
        );
    }
    // `..` as the last component names a directory by a path that has
    // not been checked component by component: refused with the way out.
    let dotdot = format!("{}/..", real.display());
    let (output, _) = run_bounded(project.hushbox(&["inject", "--dir", &dotdot]));
    assert_eq!(code(&output), 78, "{}", stderr(&output));
    assert!(stderr(&output).contains(".."), "{}", stderr(&output));
}

// ------------------------------------ finding 4: writable output directory

/// In a directory others may write, another user swaps `..data` for a link
/// to their own files and serves their values to the app: refused, with the
/// mount option that fixes Docker's default 1777 `--tmpfs`.
#[test]
fn a_group_or_world_writable_output_dir_is_refused_with_the_tmpfs_hint() {
    let base = traversable_base();
    let out = base.path().join("secrets");
    let project = Project::new(&out, "");
    for mode in [0o1777, 0o777, 0o775, 0o770, 0o757, 0o1733] {
        let _ = fs::remove_dir_all(&out);
        fs::create_dir(&out).unwrap();
        fs::set_permissions(&out, fs::Permissions::from_mode(mode)).unwrap();
        let (output, _) = run_bounded(project.hushbox(&["inject"]));
        let text = stderr(&output);
        assert_eq!(code(&output), 78, "mode {mode:o}: {text}");
        for needle in ["writable", "mode=0755", "chmod", &out.display().to_string()] {
            assert!(
                text.contains(needle),
                "mode {mode:o}: {needle:?} not in {text}"
            );
        }
        assert!(
            entries(&out).is_empty(),
            "mode {mode:o}: {:?}",
            entries(&out)
        );
    }
    // The attack itself: the attacker, who can write the directory, would
    // plant their own `..data`.
    let attacker = LocalUser::attacker();
    fs::set_permissions(&out, fs::Permissions::from_mode(0o1777)).unwrap();
    let planted = attacker
        .command("ln")
        .args(["-s", "/tmp", &out.join("..data").display().to_string()])
        .status()
        .unwrap();
    assert!(planted.success());
    let (output, _) = run_bounded(project.hushbox(&["inject"]));
    assert_eq!(code(&output), 78, "{}", stderr(&output));

    // 0755, as the hint says, works.
    fs::remove_dir_all(&out).unwrap();
    fs::create_dir(&out).unwrap();
    fs::set_permissions(&out, fs::Permissions::from_mode(0o755)).unwrap();
    let (output, _) = run_bounded(project.hushbox(&["inject"]));
    assert_eq!(code(&output), 0, "{}", stderr(&output));
}

// ----------------------------------------------------- finding 5: the lock

/// The old lock was `flock` on the output directory, which any user who can
/// read the directory can take: an attacker held it and `inject` waited
/// forever. The lock is now a 0600 file the attacker cannot even open.
#[test]
fn an_attacker_locking_the_output_dir_does_not_stall_inject() {
    require_tool("perl", "perl");
    let attacker = LocalUser::attacker();
    let base = traversable_base();
    let out = base.path().join("secrets");
    let project = Project::new(&out, "");
    let (output, _) = run_bounded(project.hushbox(&["inject"]));
    assert_eq!(code(&output), 0, "{}", stderr(&output));

    let hold = "open(my $f, '<', $ARGV[0]) or die \"open: $!\"; \
                flock($f, 2) or die \"flock: $!\"; $| = 1; print \"locked\\n\"; sleep 60;";
    let mut holder = attacker
        .command("perl")
        .args(["-e", hold])
        .arg(&out)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(holder.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "locked");

    project.set_token("value-two");
    let outcome = std::panic::catch_unwind(|| run_bounded(project.hushbox(&["inject"])));
    holder.kill().unwrap();
    holder.wait().unwrap();
    let (output, elapsed) = outcome.expect("inject hung behind the attacker's lock");
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
    assert_eq!(fs::read(out.join("token")).unwrap(), b"value-two");

    // The attacker cannot open the lock hushbox does use.
    let lock = out.join("..lock");
    assert_eq!(mode_of(&lock), 0o600);
    let opened = attacker
        .command("perl")
        .args(["-e", "open(my $f, '<', $ARGV[0]) or exit 3; exit 0"])
        .arg(&lock)
        .status()
        .unwrap();
    assert_eq!(opened.code(), Some(3), "the attacker could open {lock:?}");
}

fn hold_lock(out: &Path) -> fs::File {
    let file = fs::File::open(out.join("..lock")).unwrap();
    file.lock().unwrap();
    file
}

/// Another hushbox (here: the test) holds the lock: `inject` waits at most
/// `lock_timeout`, then fails naming the holder.
#[test]
fn a_held_lock_is_waited_for_a_bounded_time_then_the_holder_is_named() {
    let base = traversable_base();
    let out = base.path().join("secrets");
    let project = Project::new(&out, "lock_timeout = \"1s\"");
    let (output, _) = run_bounded(project.hushbox(&["inject"]));
    assert_eq!(code(&output), 0, "{}", stderr(&output));

    let held = hold_lock(&out);
    project.set_token("value-two");
    let (output, elapsed) = run_bounded(project.hushbox(&["inject"]));
    drop(held);
    let text = stderr(&output);
    assert_eq!(code(&output), 74, "{text}");
    assert!(
        elapsed >= Duration::from_millis(900) && elapsed < Duration::from_secs(4),
        "{elapsed:?}"
    );
    for needle in [
        "locked",
        &format!("pid {}", std::process::id()),
        "lock_timeout",
        &out.display().to_string(),
    ] {
        assert!(text.contains(needle), "{needle:?} not in {text}");
    }
    assert_eq!(fs::read(out.join("token")).unwrap(), b"value-one");

    for bad in ["0s", "forever", "-1s"] {
        let project = Project::new(&out, &format!("lock_timeout = \"{bad}\""));
        let (output, _) = run_bounded(project.hushbox(&["inject"]));
        assert_eq!(code(&output), 78, "{bad}: {}", stderr(&output));
        assert!(
            stderr(&output).contains("lock_timeout"),
            "{}",
            stderr(&output)
        );
    }
}

/// `exec` waiting for the lock still ends on SIGTERM at once (128+15), and
/// leaves the previous generation as it was.
#[test]
fn sigterm_while_exec_waits_for_the_lock_ends_it_with_143_at_once() {
    let base = traversable_base();
    let out = base.path().join("secrets");
    let project = Project::new(&out, "lock_timeout = \"60s\"");
    let (output, _) = run_bounded(project.hushbox(&["inject"]));
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    let before = entries(&out);

    let held = hold_lock(&out);
    project.set_token("value-two");
    let mut exec = project
        .hushbox(&["-v", "exec", "--", "true"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_stderr_line(&mut exec, "waiting for the lock");
    let sent = Instant::now();
    kill(Pid::from_raw(exec.id() as i32), Signal::SIGTERM).unwrap();
    let status = wait_bounded(&mut exec);
    let elapsed = sent.elapsed();
    drop(held);
    eprintln!("exec ended {elapsed:?} after SIGTERM during the lock wait");
    assert_eq!(status.code(), Some(143));
    assert!(elapsed < Duration::from_secs(1), "{elapsed:?}");
    assert_eq!(entries(&out), before, "a partial generation was left");
    assert_eq!(fs::read(out.join("token")).unwrap(), b"value-one");
}

fn wait_bounded(child: &mut Child) -> std::process::ExitStatus {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if started.elapsed() > HANG {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("still running after {HANG:?} (killed)");
        }
        thread::sleep(Duration::from_millis(5));
    }
}

// ---------------------------------- finding 5: signals before the child

/// A Vault server that accepts connections and never answers: each accepted
/// connection is reported on the channel and held open.
fn silent_server() -> (String, mpsc::Receiver<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    let (sender, receiver) = mpsc::channel();
    thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            held.push(stream);
            if sender.send(()).is_err() {
                return;
            }
        }
    });
    (address, receiver)
}

/// `exec` blocks every signal for the supervisor; while a fetch hung, the
/// old code ignored SIGTERM and Ctrl-C until the backend timed out. Each
/// of TERM, INT, HUP and QUIT now ends it within a second with 128+n.
#[test]
fn a_stop_signal_while_a_fetch_hangs_ends_exec_within_a_second() {
    let project_dir = tmpfs_dir();
    for (signal, expected) in [
        (Signal::SIGTERM, 143),
        (Signal::SIGINT, 130),
        (Signal::SIGHUP, 129),
        (Signal::SIGQUIT, 131),
    ] {
        let (address, connected) = silent_server();
        let mut exec = hushbox_in(
            project_dir.path(),
            &["exec", "--resolve-env", "DB_PASSWORD", "--", "true"],
        )
        .env("VAULT_ADDR", &address)
        .env("VAULT_TOKEN", "test-token")
        .env("DB_PASSWORD", "vault://secret/app#password")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
        connected
            .recv_timeout(HANG)
            .expect("hushbox never reached the server");
        let sent = Instant::now();
        kill(Pid::from_raw(exec.id() as i32), signal).unwrap();
        let status = wait_bounded(&mut exec);
        let elapsed = sent.elapsed();
        let mut text = String::new();
        exec.stderr
            .take()
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
        eprintln!("{signal}: exec ended {elapsed:?} after the signal");
        assert_eq!(status.code(), Some(expected), "{signal}: {text}");
        assert!(elapsed < Duration::from_secs(1), "{signal}: {elapsed:?}");
        assert!(text.contains(signal.as_str()), "{signal}: {text}");
    }
}

/// Setup stuck where no check reaches (here: the Vault backend opening a
/// CA file that is a FIFO nobody writes, a blocking open on the thread that
/// runs the fetch) still ends on SIGTERM, by the watcher's own exit after
/// its grace of two seconds. The old code ignored SIGTERM for good.
#[test]
fn sigterm_while_setup_is_stuck_in_a_blocking_open_ends_exec_within_the_grace() {
    let base = tmpfs_dir();
    let fifo = base.path().join("ca.pem");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let mut exec = hushbox_in(
        base.path(),
        &["exec", "--resolve-env", "DB_PASSWORD", "--", "true"],
    )
    .env("VAULT_ADDR", "https://127.0.0.1:1")
    .env("VAULT_TOKEN", "test-token")
    .env("VAULT_CACERT", &fifo)
    .env("DB_PASSWORD", "vault://secret/app#password")
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    // Blocked in open(2) on the FIFO: the kernel names the wait.
    let wchan = format!("/proc/{}/wchan", exec.id());
    wait_until("hushbox to block on the FIFO", || {
        fs::read_to_string(&wchan).is_ok_and(|wchan| wchan == "wait_for_partner")
    });
    let sent = Instant::now();
    kill(Pid::from_raw(exec.id() as i32), Signal::SIGTERM).unwrap();
    let status = wait_bounded(&mut exec);
    let elapsed = sent.elapsed();
    let mut text = String::new();
    exec.stderr
        .take()
        .unwrap()
        .read_to_string(&mut text)
        .unwrap();
    assert_eq!(status.code(), Some(143), "{text}");
    assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
    assert!(text.contains("SIGTERM"), "{text}");
}

/// A FIFO as a `file://` reference hung the fetch forever (open blocks until
/// a writer comes); devices are no secrets either. Refused at once.
#[test]
fn a_fifo_or_device_as_a_file_reference_is_refused_at_once() {
    let base = tmpfs_dir();
    let fifo = base.path().join("fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    for target in [fifo.display().to_string(), "/dev/zero".to_owned()] {
        let reference = format!("file://{target}");
        let (output, elapsed) = run_bounded(
            hushbox_in(
                base.path(),
                &["exec", "--resolve-env", "TOKEN", "--", "true"],
            )
            .env("TOKEN", &reference),
        );
        let text = stderr(&output);
        assert_eq!(code(&output), 78, "{target}: {text}");
        assert!(text.contains("not a regular file"), "{target}: {text}");
        assert!(text.contains(&target), "{target}: {text}");
        assert!(elapsed < Duration::from_secs(2), "{target}: {elapsed:?}");
    }
}

// ----------------------------- low: readers see old-or-new, never ENOENT

/// A reader that resolved `..data` just before a swap opens its file after
/// it. The old code pruned the replaced generation at once, so that open
/// failed with ENOENT (seen twice in ~60k opens under load). The previous
/// generation now stays until the next swap.
#[test]
fn a_reader_that_resolved_data_before_a_swap_still_opens_its_file() {
    let base = traversable_base();
    let out = base.path().join("secrets");
    let project = Project::new(&out, "");
    let (output, _) = run_bounded(project.hushbox(&["inject"]));
    assert_eq!(code(&output), 0, "{}", stderr(&output));

    // The reader's path walk, one step at a time: `..data`, then the file.
    let resolved = fs::read_link(out.join("..data")).unwrap();
    project.set_token("value-two");
    let (output, _) = run_bounded(project.hushbox(&["inject"]));
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    assert_eq!(
        fs::read(out.join(&resolved).join("token")).expect("the previous generation was pruned"),
        b"value-one"
    );
    assert_eq!(fs::read(out.join("token")).unwrap(), b"value-two");

    // It stays a second after it was replaced, then the next swap prunes
    // it: the output directory does not grow.
    thread::sleep(Duration::from_millis(1100));
    project.set_token("value-three");
    let (output, _) = run_bounded(project.hushbox(&["inject"]));
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    assert!(!out.join(&resolved).exists());
    assert_eq!(generations(&out).len(), 2, "{:?}", entries(&out));
}

/// Readers opening a secret through its link while generations are swapped
/// every millisecond or so: every open finds a file. Keeping only the
/// generation just replaced was not enough here: a reader preempted inside
/// one open() on a loaded machine outlived ten generations (measured: 9–30
/// ENOENT in ~450k opens with 2 to 10 kept), so replaced generations stay
/// for a second.
#[test]
fn readers_never_see_enoent_across_many_swaps() {
    let base = tmpfs_dir();
    let writer = GenerationWriter::open(OutputOptions {
        dir: base.path().to_owned(),
        uid: None,
        gid: None,
        mode: 0o444,
        allow_disk: false,
        lock_timeout: Duration::from_secs(10),
    })
    .unwrap();
    let commit = |round: usize| {
        let value = SecretValue::copy_from_slice(format!("round {round}").as_bytes());
        assert!(matches!(
            writer.commit(&[("token", &value)]).unwrap(),
            Commit::Written { .. }
        ));
    };
    commit(0);
    let stop = Arc::new(AtomicBool::new(false));
    let (opens, missing) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let path = base.path().join("token");
            let (stop, opens, missing) = (stop.clone(), opens.clone(), missing.clone());
            thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match fs::read(&path) {
                        Ok(bytes) => assert!(bytes.starts_with(b"round "), "{bytes:?}"),
                        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                            missing.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(error) => panic!("{error}"),
                    }
                    opens.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    wait_until("the readers to start", || opens.load(Ordering::Relaxed) > 0);
    for round in 1..=1000 {
        commit(round);
        // Far faster than any refresh, yet a pace: back to back, a reader
        // preempted inside one open() for a whole timeslice outlives any
        // fixed number of generations.
        thread::sleep(Duration::from_millis(1));
    }
    stop.store(true, Ordering::Relaxed);
    for reader in readers {
        reader.join().unwrap();
    }
    let opens = opens.load(Ordering::Relaxed);
    eprintln!("1000 swaps, {opens} opens");
    assert!(opens > 1000, "too few opens to mean anything: {opens}");
    assert_eq!(missing.load(Ordering::Relaxed), 0, "of {opens} opens");
}

// ---------------------------------------------------- low: the run directory

/// The run directory of a `run` that was SIGKILLed (nothing can clean up
/// after SIGKILL) is swept by the next `run` of the same user; a live run's
/// directory, other users' directories and symlinks are left alone.
#[test]
fn a_sigkilled_run_leaves_a_directory_the_next_run_sweeps() {
    let runtime = tmpfs_dir();
    let project = tmpfs_dir();
    fs::write(project.path().join("token.txt"), b"plaintext-canary").unwrap();
    let run = |script: &str| {
        let mut command = hushbox_in(
            project.path(),
            &[
                "run",
                "--resolve-env",
                "TOKEN_FILE",
                "--",
                "sh",
                "-c",
                script,
            ],
        );
        command
            .env("XDG_RUNTIME_DIR", runtime.path())
            .env(
                "TOKEN_FILE",
                format!("file://{}", project.path().join("token.txt").display()),
            )
            .env("REPORT", project.path());
        command
    };

    // A run that is SIGKILLed while its program runs.
    let mut killed =
        run("echo $$ > \"$REPORT/pid\"; dirname \"$TOKEN_FILE\" > \"$REPORT/dir\"; exec sleep 30")
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
    wait_until("the program to start", || {
        project.path().join("dir").exists()
            && fs::read_to_string(project.path().join("dir"))
                .unwrap()
                .ends_with('\n')
    });
    let stale = PathBuf::from(
        fs::read_to_string(project.path().join("dir"))
            .unwrap()
            .trim(),
    );
    assert_eq!(stale.parent(), Some(runtime.path()));
    killed.kill().unwrap();
    killed.wait().unwrap();
    // The program dies with it (PR_SET_PDEATHSIG).
    let program: i32 = fs::read_to_string(project.path().join("pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    wait_until("the program to die with hushbox", || {
        kill(Pid::from_raw(program), None).is_err()
    });
    assert!(stale.join("token").exists(), "the plaintext is left behind");

    // Things that are not a dead run of this user.
    let attacker = LocalUser::attacker();
    let foreign = runtime.path().join("hushbox-run.foreignXYZ00");
    fs::create_dir(&foreign).unwrap();
    fs::write(foreign.join("..run.lock"), b"").unwrap();
    attacker.chown(foreign.join("..run.lock"));
    attacker.chown(&foreign);
    let elsewhere = tmpfs_dir();
    let looks_stale = elsewhere.path().join("hushbox-run.targetXYZ000");
    fs::create_dir(&looks_stale).unwrap();
    fs::write(looks_stale.join("..run.lock"), b"").unwrap();
    symlink(
        &looks_stale,
        runtime.path().join("hushbox-run.linkXYZ00000"),
    )
    .unwrap();
    let mut live = run("touch \"$REPORT/live\"; exec sleep 30")
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    wait_until("the live run", || project.path().join("live").exists());

    let (output, _) = run_bounded(run("true"));
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    live.kill().unwrap();
    live.wait().unwrap();

    assert!(!stale.exists(), "the dead run's directory was not swept");
    assert!(
        foreign.join("..run.lock").exists(),
        "another user's directory was touched"
    );
    assert!(
        looks_stale.join("..run.lock").exists(),
        "a symlink was followed"
    );
    assert!(
        runtime
            .path()
            .join("hushbox-run.linkXYZ00000")
            .symlink_metadata()
            .is_ok()
    );
    let left: Vec<String> = entries(runtime.path())
        .into_iter()
        .filter(|name| !name.contains("XYZ"))
        .collect();
    assert_eq!(
        left.len(),
        1,
        "the live run's directory must stay: {left:?}"
    );
}

/// A program that makes a read-only (0555) or unreadable (0000)
/// subdirectory in its run directory: the old cleanup could not unlink
/// inside it and left the directory, secrets and all. hushbox runs as an
/// ordinary user here, since root ignores directory modes.
#[test]
fn a_read_only_subdirectory_made_by_the_program_is_still_removed() {
    let victim = LocalUser::victim();
    let runtime = tmpfs_dir();
    victim.chown(runtime.path());
    let project = tmpfs_dir();
    victim.chown(project.path());
    let token = project.path().join("token.txt");
    fs::write(&token, b"v").unwrap();
    victim.chown(&token);
    let script = "d=$(dirname \"$TOKEN_FILE\"); mkdir -p \"$d/ro/deeper\" \"$d/closed/inner\"; \
                  echo x > \"$d/ro/deeper/file\"; echo x > \"$d/closed/inner/file\"; \
                  chmod 0555 \"$d/ro/deeper\" \"$d/ro\"; chmod 0 \"$d/closed/inner\" \"$d/closed\"; \
                  chmod 0500 \"$d\"";
    let mut command = victim.command(HUSHBOX);
    command
        .args([
            "run",
            "--resolve-env",
            "TOKEN_FILE",
            "--",
            "sh",
            "-c",
            script,
        ])
        .current_dir(project.path())
        .env("XDG_RUNTIME_DIR", runtime.path())
        .env("TOKEN_FILE", format!("file://{}", token.display()));
    let (output, _) = run_bounded(command);
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    assert!(
        entries(runtime.path()).is_empty(),
        "left behind: {:?}",
        entries(runtime.path())
    );
}

// ------------------------------------------------------- low: uid/gid -1

/// uid or gid 4294967295 is (uid_t)-1, which chown reads as "leave
/// unchanged": files would silently keep hushbox's owner.
#[test]
fn uid_or_gid_4294967295_is_refused() {
    let base = tmpfs_dir();
    for key in ["uid", "gid"] {
        let project = Project::new(&base.path().join("secrets"), &format!("{key} = 4294967295"));
        let (output, _) = run_bounded(project.hushbox(&["inject"]));
        let text = stderr(&output);
        assert_eq!(code(&output), 78, "{key}: {text}");
        assert!(text.contains(&format!("[output].{key}")), "{key}: {text}");
        assert!(text.contains("unchanged"), "{key}: {text}");
        assert!(!base.path().join("secrets").exists());
    }
}
