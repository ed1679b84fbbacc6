//! A local attacker who can write somewhere on the victim's path: a planted
//! `hushbox.toml` in a shared or group-writable directory, a planted
//! `.age-recipients`, a store others can write, a symlink out of the store.
//! Each attack runs between real Unix users (`common::users`), as the
//! reviewer described it, and must be refused before anything is read from
//! or written for the attacker.

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::users::LocalUser;
use common::{code, run_with_stdin, stderr, stdout};

const HUSHBOX: &str = env!("CARGO_BIN_EXE_hushbox");
const CONFIG: i32 = 78;

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// A directory like `/tmp` itself: root's, mode 1777.
fn sticky_shared_dir() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("hushbox-shared-")
        .tempdir()
        .unwrap();
    chmod(dir.path(), 0o1777);
    dir
}

/// A directory of `user`'s own, mode 0755, at `path`.
fn own_dir(user: &LocalUser, path: &Path) -> PathBuf {
    std::fs::create_dir_all(path).unwrap();
    chmod(path, 0o755);
    user.chown(path);
    path.to_owned()
}

/// Writes `text` to `path` as `user`'s file, mode `mode`.
fn own_file(user: &LocalUser, path: &Path, text: &str, mode: u32) {
    std::fs::write(path, text).unwrap();
    chmod(path, mode);
    user.chown(path);
}

/// A secret of the victim's in their home: what the attacker wants.
struct VictimSecret {
    dir: tempfile::TempDir,
}

const IDENTITY_CANARY: &str = "AGE-SECRET-KEY-1VICTIMCANARYVICTIMCANARYVICTIMCANARY";

impl VictimSecret {
    fn new(victim: &LocalUser) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("hushbox-keys-")
            .tempdir_in(&victim.home)
            .unwrap();
        chmod(dir.path(), 0o700);
        victim.chown(dir.path());
        let secret = Self { dir };
        own_file(victim, &secret.path(), IDENTITY_CANARY, 0o600);
        secret
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("identity.txt")
    }
}

/// hushbox run by `user` in `cwd`, with `env` and nothing else but PATH,
/// HOME and USER.
fn hushbox_as(user: &LocalUser, cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    hushbox_as_with_stdin(user, cwd, args, env, None)
}

fn hushbox_as_with_stdin(
    user: &LocalUser,
    cwd: &Path,
    args: &[&str],
    env: &[(&str, &str)],
    stdin: Option<&[u8]>,
) -> Output {
    let mut command = user.command(HUSHBOX);
    command.args(args).current_dir(cwd);
    for (name, value) in env {
        command.env(name, value);
    }
    run_with_stdin(command, stdin)
}

fn assert_refused(output: &Output, file: &Path, reason: &str) {
    let text = stderr(output);
    assert_eq!(code(output), CONFIG, "{text}");
    assert!(text.contains(&file.display().to_string()), "{text}");
    assert!(text.contains(reason), "{text}");
}

/// Every path below `dir`, for "nothing was written" checks.
fn tree(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            found.push(entry.path());
            if entry.file_type().is_ok_and(|kind| kind.is_dir()) {
                found.extend(tree(&entry.path()));
            }
        }
    }
    found
}

#[test]
fn a_manifest_planted_in_a_sticky_shared_directory_is_refused_and_nothing_is_written() {
    let (victim, attacker) = (LocalUser::victim(), LocalUser::attacker());
    let secret = VictimSecret::new(&victim);
    let shared = sticky_shared_dir();
    // The attacker's drop box on tmpfs: the victim's hushbox would create
    // `loot` in it (so the writer's owner check passes) with mode 0444.
    let drop_box = tempfile::Builder::new()
        .prefix("hushbox-drop-")
        .tempdir_in("/dev/shm")
        .unwrap();
    chmod(drop_box.path(), 0o777);
    attacker.chown(drop_box.path());
    let manifest = shared.path().join("hushbox.toml");
    own_file(
        &attacker,
        &manifest,
        &format!(
            "version = 1\n[output]\ndir = \"{}/loot\"\nmode = \"0444\"\n\
             [secrets.identity]\nref = \"file://{}\"\n",
            drop_box.path().display(),
            secret.path().display()
        ),
        0o644,
    );
    let project = own_dir(&victim, &shared.path().join("victim-project"));

    for args in [
        &["inject"][..],
        &["check"],
        &["get", "file:///etc/hostname"],
    ] {
        let output = hushbox_as(&victim, &project, args, &[]);
        assert_refused(
            &output,
            &manifest,
            &format!("is owned by uid {}", attacker.uid),
        );
        assert!(
            stderr(&output).contains("HUSHBOX_SAFE_DIRECTORIES="),
            "{}",
            stderr(&output)
        );
        assert!(!stdout(&output).contains("VICTIMCANARY"));
    }
    assert_eq!(
        tree(drop_box.path()),
        Vec::<PathBuf>::new(),
        "nothing is written for the attacker"
    );
}

/// A fake Vault that records what reaches it.
struct Recorder {
    address: String,
    received: Arc<std::sync::Mutex<Vec<u8>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Recorder {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let address = format!("http://{}", listener.local_addr().unwrap());
        let received = Arc::new(std::sync::Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (seen, stopped) = (received.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !stopped.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((mut stream, _)) => {
                        stream.set_nonblocking(false).unwrap();
                        stream
                            .set_read_timeout(Some(Duration::from_millis(500)))
                            .unwrap();
                        let mut buffer = [0u8; 8192];
                        let read = stream.read(&mut buffer).unwrap_or(0);
                        seen.lock().unwrap().extend_from_slice(&buffer[..read]);
                        let _ = stream.write_all(
                            b"HTTP/1.1 403 Forbidden\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}",
                        );
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Self {
            address,
            received,
            stop,
            thread: Some(thread),
        }
    }

    fn received(mut self) -> String {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.take().unwrap().join().unwrap();
        String::from_utf8_lossy(&self.received.lock().unwrap()).into_owned()
    }
}

#[test]
fn a_manifest_planted_in_a_group_writable_checkout_does_not_get_the_vault_token() {
    let (victim, attacker) = (LocalUser::victim(), LocalUser::attacker());
    let recorder = Recorder::start();
    let checkout = tempfile::Builder::new()
        .prefix("hushbox-checkout-")
        .tempdir()
        .unwrap();
    // The victim's checkout, shared with the attacker's group (setgid, 2775).
    victim.chown(checkout.path());
    std::os::unix::fs::chown(checkout.path(), None, Some(attacker.gid)).unwrap();
    chmod(checkout.path(), 0o2775);
    let manifest = checkout.path().join("hushbox.toml");
    own_file(
        &attacker,
        &manifest,
        &format!(
            "version = 1\n[backends.vault]\nkind = \"vault\"\naddress = \"{}\"\n",
            recorder.address
        ),
        0o644,
    );
    let src = own_dir(&victim, &checkout.path().join("src"));
    let token = "hvs.VICTIM-TOKEN-CANARY";
    let output = hushbox_as(
        &victim,
        &src,
        &["get", "vault://secret/app#password"],
        &[("VAULT_TOKEN", token), ("VAULT_ADDR", "http://127.0.0.1:9")],
    );
    let received = recorder.received();
    assert!(
        !received.contains("CANARY"),
        "the token reached the attacker: {received}"
    );
    assert_refused(
        &output,
        &manifest,
        "is writable by others (mode 2775) without the sticky bit",
    );
}

#[test]
fn a_manifest_the_victim_owns_in_their_own_directory_still_works() {
    let victim = LocalUser::victim();
    let shared = sticky_shared_dir();
    let project = own_dir(&victim, &shared.path().join("project"));
    own_file(
        &victim,
        &project.join("hushbox.toml"),
        "version = 1\n[backends.here]\nkind = \"file\"\n",
        0o644,
    );
    own_file(&victim, &project.join("token"), "victim-value", 0o600);
    let nested = own_dir(&victim, &project.join("a/b"));
    let output = hushbox_as(&victim, &nested, &["get", "here://token"], &[]);
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    assert_eq!(stdout(&output), "victim-value");
    let output = hushbox_as(&victim, &nested, &["check"], &[]);
    assert_eq!(code(&output), 0, "{}", stderr(&output));
}

#[test]
fn root_trusts_a_checkout_of_another_user_only_when_told_to() {
    // The container case: a bind-mounted checkout of uid 1000, read by
    // hushbox running as root.
    let victim = LocalUser::victim();
    let parent = tempfile::tempdir().unwrap();
    let checkout = own_dir(&victim, &parent.path().join("app"));
    let manifest = checkout.join("hushbox.toml");
    own_file(
        &victim,
        &manifest,
        "version = 1\n[backends.here]\nkind = \"file\"\n",
        0o644,
    );
    own_file(&victim, &checkout.join("token"), "mounted-value", 0o644);
    let root = |env: &[(&str, &std::ffi::OsStr)], args: &[&str]| {
        let mut command = Command::new(HUSHBOX);
        command
            .args(args)
            .current_dir(&checkout)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap())
            .env("HOME", parent.path());
        for (name, value) in env {
            command.env(name, value);
        }
        run_with_stdin(command, None)
    };

    let refused = root(&[], &["get", "here://token"]);
    assert_refused(
        &refused,
        &manifest,
        &format!("is owned by uid {}", victim.uid),
    );
    let fix = format!("HUSHBOX_SAFE_DIRECTORIES={}", checkout.display());
    assert!(stderr(&refused).contains(&fix), "{}", stderr(&refused));
    // Naming the manifest is not trusting its owner (git's rule).
    let named = root(
        &[("HUSHBOX_CONFIG", manifest.as_os_str())],
        &["get", "here://token"],
    );
    assert_refused(&named, &manifest, "is owned by uid");
    let flag = root(&[], &["--config", manifest.to_str().unwrap(), "check"]);
    assert_refused(&flag, &manifest, "is owned by uid");

    for listed in [checkout.as_os_str(), "/nowhere:*".as_ref()] {
        let trusted = root(
            &[("HUSHBOX_SAFE_DIRECTORIES", listed)],
            &["get", "here://token"],
        );
        assert_eq!(code(&trusted), 0, "{}", stderr(&trusted));
        assert_eq!(stdout(&trusted), "mounted-value");
    }
    // Trusting an owner never trusts a file anyone may rewrite.
    chmod(&manifest, 0o666);
    let writable = root(
        &[("HUSHBOX_SAFE_DIRECTORIES", checkout.as_os_str())],
        &["get", "here://token"],
    );
    assert_refused(
        &writable,
        &manifest,
        "writable by its group or others (mode 0666)",
    );
}

#[test]
fn a_file_reference_to_a_file_another_user_can_write_is_refused() {
    let (victim, attacker) = (LocalUser::victim(), LocalUser::attacker());
    let shared = sticky_shared_dir();
    let project = own_dir(&victim, &shared.path().join("project"));
    own_file(
        &victim,
        &project.join("hushbox.toml"),
        "version = 1\n",
        0o644,
    );
    // In the attacker's own directory; then the victim's file made 0666.
    let theirs = own_dir(&attacker, &shared.path().join("attacker"));
    own_file(&attacker, &theirs.join("value"), "attacker-chosen", 0o644);
    own_file(&victim, &project.join("writable"), "attacker-chosen", 0o666);
    for (path, reason) in [
        (
            theirs.join("value"),
            format!("is owned by uid {}", attacker.uid),
        ),
        (project.join("writable"), "mode 0666".to_owned()),
    ] {
        let reference = format!("file://{}", path.display());
        let output = hushbox_as(&victim, &project, &["get", &reference], &[]);
        assert_refused(&output, &path, &reason);
        assert_eq!(stdout(&output), "");
    }
    // Root's files stay readable (Docker's /run/secrets is root's).
    let output = hushbox_as(&victim, &project, &["get", "file:///etc/hostname"], &[]);
    assert_eq!(code(&output), 0, "{}", stderr(&output));
}

/// A victim's project with an identity and an initialised store in
/// `./secrets`.
struct Store {
    _shared: tempfile::TempDir,
    project: PathBuf,
}

impl Store {
    fn new(victim: &LocalUser) -> Self {
        let shared = sticky_shared_dir();
        let project = own_dir(victim, &shared.path().join("project"));
        own_file(
            victim,
            &project.join("hushbox.toml"),
            "version = 1\n[backends.age]\nkind = \"age\"\nstore = \"secrets\"\n",
            0o644,
        );
        let store = Self {
            _shared: shared,
            project,
        };
        store.ok(victim, &["keygen"]);
        store.ok(victim, &["store", "init"]);
        store.set(victim, "first", b"one");
        store
    }

    fn env(&self) -> Vec<(&'static str, String)> {
        vec![(
            "HUSHBOX_IDENTITY",
            self.project.join("identity.txt").display().to_string(),
        )]
    }

    fn run(&self, user: &LocalUser, args: &[&str], stdin: Option<&[u8]>) -> Output {
        let env = self.env();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        hushbox_as_with_stdin(user, &self.project, args, &env, stdin)
    }

    fn ok(&self, user: &LocalUser, args: &[&str]) {
        let output = self.run(user, args, None);
        assert_eq!(code(&output), 0, "{args:?}: {}", stderr(&output));
    }

    fn set(&self, user: &LocalUser, name: &str, value: &[u8]) -> Output {
        let output = self.run(user, &["store", "set", name], Some(value));
        if name == "first" {
            assert_eq!(code(&output), 0, "{}", stderr(&output));
        }
        output
    }

    fn dir(&self) -> PathBuf {
        self.project.join("secrets")
    }
}

#[test]
fn an_age_recipients_file_planted_by_another_user_is_refused_for_store_writes() {
    let (victim, attacker) = (LocalUser::victim(), LocalUser::attacker());
    let store = Store::new(&victim);
    let team = own_dir(&victim, &store.dir().join("team"));
    let planted = team.join(".age-recipients");
    // The attacker's own recipient (any valid key will do for the test).
    let recipient = std::fs::read_to_string(store.dir().join(".age-recipients")).unwrap();
    own_file(&attacker, &planted, &recipient, 0o644);
    let output = store.set(&victim, "team/db", b"victim-db-password");
    assert_refused(
        &output,
        &planted,
        &format!("is owned by uid {}", attacker.uid),
    );
    assert!(!store.dir().join("team/db.age").exists());

    // The victim's own root recipients file, left writable by others.
    std::fs::remove_file(&planted).unwrap();
    let root_file = store.dir().join(".age-recipients");
    chmod(&root_file, 0o666);
    let output = store.set(&victim, "second", b"victim-value");
    assert_refused(&output, &root_file, "mode 0666");
    assert!(!store.dir().join("second.age").exists());
}

#[test]
fn a_store_directory_others_can_write_is_refused() {
    let victim = LocalUser::victim();
    let store = Store::new(&victim);
    chmod(&store.dir(), 0o777);
    let output = store.set(&victim, "second", b"victim-value");
    assert_refused(&output, &store.dir(), "mode 0777");
    assert!(!store.dir().join("second.age").exists());
    let output = store.run(&victim, &["get", "age://first"], None);
    assert_refused(&output, &store.dir(), "mode 0777");
    assert_eq!(stdout(&output), "");
}

#[test]
fn store_set_through_a_symlinked_directory_out_of_the_store_is_refused() {
    let victim = LocalUser::victim();
    let store = Store::new(&victim);
    let outside = tempfile::Builder::new()
        .prefix("hushbox-outside-")
        .tempdir()
        .unwrap();
    victim.chown(outside.path());
    symlink(outside.path(), store.dir().join("lnk")).unwrap();
    victim.chown(store.dir().join("lnk"));
    let output = store.set(&victim, "lnk/x", b"victim-value");
    assert_ne!(code(&output), 0, "{}", stderr(&output));
    assert!(stderr(&output).contains("lnk"), "{}", stderr(&output));
    assert_eq!(
        tree(outside.path()),
        Vec::<PathBuf>::new(),
        "nothing outside the store"
    );
    // Reading through the link is refused the same way.
    std::fs::copy(store.dir().join("first.age"), outside.path().join("y.age")).unwrap();
    let output = store.run(&victim, &["get", "age://lnk/y"], None);
    assert_ne!(code(&output), 0);
    assert_eq!(stdout(&output), "");
    std::fs::remove_file(outside.path().join("y.age")).unwrap();
}

#[test]
fn root_uses_a_store_of_another_user_only_when_told_to() {
    let victim = LocalUser::victim();
    let store = Store::new(&victim);
    let as_root = |safe: Option<&Path>| {
        let mut command = Command::new(HUSHBOX);
        command
            .args(["get", "age://first"])
            .current_dir(&store.project)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap())
            .env("HOME", &store.project)
            .env("HUSHBOX_IDENTITY", store.project.join("identity.txt"));
        if let Some(safe) = safe {
            command.env("HUSHBOX_SAFE_DIRECTORIES", safe);
        }
        run_with_stdin(command, None)
    };
    let refused = as_root(None);
    assert_refused(
        &refused,
        &store.project.join("hushbox.toml"),
        &format!("is owned by uid {}", victim.uid),
    );
    let trusted = as_root(Some(&store.project));
    assert_eq!(code(&trusted), 0, "{}", stderr(&trusted));
    assert_eq!(stdout(&trusted), "one");
}
