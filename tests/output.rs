//! Integration tests of the output writer (`hushbox::output`): directory
//! checks, generation commits, cleanup, the per-run directory, and a
//! concurrent-reader hammer test of atomicity.
//!
//! Happy paths run in fresh temp dirs under /dev/shm (tmpfs); refusals of
//! disk directories use /tmp (or the target dir when /tmp is a tmpfs). Tests
//! that need root (chown, mount) check for it and say so when they skip.

use std::fs;
use std::io::{self, Read};
use std::os::fd::AsFd;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;

use hushbox::output::{
    Commit, GenerationWriter, OutputOptions, RunDir, is_memory_filesystem, validate_secret_name,
};
use hushbox_core::{Environment, ErrorKind, SecretValue};
use nix::errno::Errno;
use nix::fcntl::{OFlag, openat};
use nix::sys::stat::Mode;
use tempfile::TempDir;

// ---------------------------------------------------------------- helpers

fn shm_dir() -> TempDir {
    tempfile::Builder::new()
        .prefix("hushbox-output-test.")
        .tempdir_in("/dev/shm")
        .expect("a temp dir on /dev/shm")
}

/// A directory on a disk filesystem: /tmp, unless that is a tmpfs here.
fn disk_dir() -> TempDir {
    let tmp = Path::new("/tmp");
    let base = if is_memory_filesystem(tmp).unwrap() {
        PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
    } else {
        tmp.to_owned()
    };
    assert!(
        !is_memory_filesystem(&base).unwrap(),
        "no disk directory to test with: both /tmp and {} are in memory",
        base.display()
    );
    tempfile::Builder::new()
        .prefix("hushbox-output-test.")
        .tempdir_in(base)
        .unwrap()
}

fn options(dir: &Path) -> OutputOptions {
    OutputOptions {
        dir: dir.to_owned(),
        uid: None,
        gid: None,
        mode: 0o400,
        allow_disk: false,
        lock_timeout: std::time::Duration::from_secs(10),
    }
}

fn open(dir: &Path) -> GenerationWriter {
    GenerationWriter::open(options(dir)).unwrap_or_else(|error| panic!("open: {error}"))
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

fn secret(bytes: &[u8]) -> SecretValue {
    SecretValue::copy_from_slice(bytes)
}

/// Commits `pairs` and returns the new generation's name.
fn commit_written(writer: &GenerationWriter, pairs: &[(&str, &[u8])]) -> String {
    let values: Vec<SecretValue> = pairs.iter().map(|(_, bytes)| secret(bytes)).collect();
    let files: Vec<(&str, &SecretValue)> = pairs
        .iter()
        .zip(&values)
        .map(|((name, _), value)| (*name, value))
        .collect();
    match writer.commit(&files) {
        Ok(Commit::Written { generation }) => generation,
        other => panic!("expected a new generation, got {other:?}"),
    }
}

fn commit(
    writer: &GenerationWriter,
    pairs: &[(&str, &[u8])],
) -> Result<Commit, hushbox_core::Error> {
    let values: Vec<SecretValue> = pairs.iter().map(|(_, bytes)| secret(bytes)).collect();
    let files: Vec<(&str, &SecretValue)> = pairs
        .iter()
        .zip(&values)
        .map(|((name, _), value)| (*name, value))
        .collect();
    writer.commit(&files)
}

/// Every entry of `dir`, sorted, as a reader sees the directory: without
/// the commit lock (`..lock`) and without replaced generations, which stay
/// a moment for readers that resolved `..data` before a swap (that
/// retention is tested in `attack_output.rs` and below).
fn entries(dir: &Path) -> Vec<String> {
    let current = fs::read_link(dir.join("..data")).ok();
    let mut names: Vec<String> = all_entries(dir)
        .into_iter()
        .filter(|name| name != "..lock")
        .filter(|name| !is_generation(name) || current.as_deref() == Some(Path::new(name)))
        .collect();
    names.sort();
    names
}

/// Every entry of `dir`, sorted, generations and lock included.
fn all_entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

/// Whether `name` is a generation directory's (`..YYYY_MM_DD_…`).
fn is_generation(name: &str) -> bool {
    name.starts_with("..") && name[2..].starts_with(|c: char| c.is_ascii_digit())
}

/// The entries hushbox reserves for itself (names starting with `..`).
fn dot_entries(dir: &Path) -> Vec<String> {
    entries(dir)
        .into_iter()
        .filter(|name| name.starts_with(".."))
        .collect()
}

fn data_target(dir: &Path) -> String {
    fs::read_link(dir.join("..data"))
        .unwrap()
        .into_os_string()
        .into_string()
        .unwrap()
}

/// A filesystem mounted on a fresh directory, unmounted on drop. `None`
/// when mounting is not possible here (not root, no CAP_SYS_ADMIN).
struct Mount {
    point: TempDir,
}

impl Mount {
    fn new(fstype: &str, options: &str) -> Option<Self> {
        if !is_root() {
            eprintln!("skipping the {fstype} part: mounting needs root");
            return None;
        }
        let point = disk_dir();
        let status = Command::new("mount")
            .args(["-t", fstype, "-o", options, fstype])
            .arg(point.path())
            .status()
            .expect("run mount");
        if !status.success() {
            eprintln!("skipping the {fstype} part: `mount -t {fstype}` failed ({status})");
            return None;
        }
        Some(Self { point })
    }

    fn path(&self) -> &Path {
        self.point.path()
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let status = Command::new("umount").arg(self.point.path()).status();
        assert!(
            matches!(status, Ok(status) if status.success()),
            "umount {} failed: {status:?}",
            self.point.path().display()
        );
    }
}

// ---------------------------------------------------------------- names

#[test]
fn unsafe_secret_names_are_config_errors() {
    let long = "x".repeat(256);
    for name in ["../x", "a/b", ".hidden", "", "a\0b", "..", ".", &long] {
        let error = validate_secret_name(name).expect_err(name);
        assert_eq!(error.kind(), ErrorKind::Config, "{name:?}");
        // Quoted, with control and invisible characters escaped.
        assert_eq!(
            error.subject(),
            Some(hushbox_core::text::shown(name).as_str())
        );
    }
    assert_eq!(hushbox_core::text::shown("a\0b"), "\"a\\u{0}b\"");
    for name in ["db_password", "api.key", "x", &"x".repeat(255)] {
        validate_secret_name(name).unwrap_or_else(|error| panic!("{name:?}: {error}"));
    }
}

#[test]
fn commit_with_a_bad_or_duplicate_name_writes_nothing() {
    let base = shm_dir();
    let writer = open(base.path());
    for pairs in [
        &[("good", &b"v"[..]), ("../escape", b"v")][..],
        &[("same", &b"1"[..]), ("same", b"2")][..],
    ] {
        let error = commit(&writer, pairs).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Config, "{error}");
        assert!(
            entries(base.path()).is_empty(),
            "{:?}",
            entries(base.path())
        );
    }
}

// ---------------------------------------------------------------- directory checks

#[test]
fn disk_directory_is_refused_with_a_message_naming_the_filesystem() {
    let disk = disk_dir();
    let error = GenerationWriter::open(options(disk.path())).unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Config);
    let message = error.to_string();
    let magic = nix::sys::statfs::statfs(disk.path())
        .unwrap()
        .filesystem_type()
        .0 as u32;
    let expected_fs = match magic {
        0xef53 => "ext2/ext3/ext4".to_owned(),
        0x5846_5342 => "xfs".to_owned(),
        0x9123_683e => "btrfs".to_owned(),
        0x794c_7630 => "overlayfs".to_owned(),
        other => format!("{other:#010x}"),
    };
    for needle in [
        &format!("is on {expected_fs}") as &str,
        "not tmpfs or ramfs",
        "mount a tmpfs",
        "allow_disk = true",
        "--allow-disk",
        &disk.path().display().to_string(),
    ] {
        assert!(message.contains(needle), "{needle:?} not in {message:?}");
    }
    // Refused before anything was created.
    assert!(entries(disk.path()).is_empty());
}

#[test]
fn allow_disk_skips_only_the_filesystem_check() {
    let disk = disk_dir();
    let writer = GenerationWriter::open(OutputOptions {
        allow_disk: true,
        ..options(disk.path())
    })
    .unwrap();
    commit_written(&writer, &[("token", b"on disk, as asked")]);
    assert_eq!(
        fs::read(disk.path().join("token")).unwrap(),
        b"on disk, as asked"
    );

    // A symlinked directory is still refused with allow_disk.
    let link = disk.path().join("link");
    symlink(disk.path(), &link).unwrap();
    let error = GenerationWriter::open(OutputOptions {
        allow_disk: true,
        ..options(&link)
    })
    .unwrap_err();
    assert!(error.to_string().contains("symlink"), "{error}");
}

#[test]
fn symlinked_output_directory_is_refused() {
    let base = shm_dir();
    let real = base.path().join("real");
    fs::create_dir(&real).unwrap();
    let link = base.path().join("secrets");
    symlink(&real, &link).unwrap();
    let error = GenerationWriter::open(options(&link)).unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Config);
    assert_eq!(error.subject(), Some(link.display().to_string().as_str()));
    assert!(error.message().contains("symlink"), "{error}");
    assert!(entries(&real).is_empty());
}

#[test]
fn a_missing_output_directory_is_created_0755() {
    let base = shm_dir();
    let dir = base.path().join("secrets");
    let writer = open(&dir);
    assert_eq!(writer.dir(), dir);
    let metadata = fs::symlink_metadata(&dir).unwrap();
    assert!(metadata.is_dir());
    assert_eq!(metadata.permissions().mode() & 0o7777, 0o755);
}

#[test]
fn foreign_owned_output_directory_is_refused() {
    if !is_root() {
        eprintln!("skipping: giving a directory to another uid needs root");
        return;
    }
    let base = shm_dir();
    let dir = base.path().join("foreign");
    fs::create_dir(&dir).unwrap();
    std::os::unix::fs::chown(&dir, Some(12345), Some(12345)).unwrap();

    let error = GenerationWriter::open(options(&dir)).unwrap_err();
    assert_eq!(error.kind(), ErrorKind::PermissionDenied);
    assert!(error.message().contains("uid 12345"), "{error}");
    assert_eq!(error.subject(), Some(dir.display().to_string().as_str()));

    // The configured owner may own the directory.
    GenerationWriter::open(OutputOptions {
        uid: Some(12345),
        ..options(&dir)
    })
    .unwrap();
}

#[test]
fn ramfs_output_directory_is_accepted() {
    let Some(mount) = Mount::new("ramfs", "mode=0755") else {
        return;
    };
    assert!(is_memory_filesystem(mount.path()).unwrap());
    let writer = open(mount.path());
    commit_written(&writer, &[("key", b"in ram")]);
    assert_eq!(fs::read(mount.path().join("key")).unwrap(), b"in ram");
    writer.remove_all().unwrap();
}

#[test]
fn modes_with_special_bits_are_refused() {
    let base = shm_dir();
    for mode in [0o4400, 0o2440, 0o1444, 0o10000] {
        let error = GenerationWriter::open(OutputOptions {
            mode,
            ..options(base.path())
        })
        .unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Config, "{mode:o}");
    }
}

// ---------------------------------------------------------------- commits

#[test]
fn commit_writes_files_with_exact_mode_and_content_behind_links() {
    let base = shm_dir();
    let writer = GenerationWriter::open(OutputOptions {
        mode: 0o440,
        ..options(base.path())
    })
    .unwrap();
    let generation = commit_written(&writer, &[("db_password", b"hunter2"), ("api_key", b"")]);

    assert_eq!(data_target(base.path()), generation);
    assert_eq!(
        entries(base.path()),
        [generation.as_str(), "..data", "api_key", "db_password"]
    );
    let gen_dir = base.path().join(&generation);
    let gen_meta = fs::symlink_metadata(&gen_dir).unwrap();
    assert!(gen_meta.is_dir());
    assert_eq!(gen_meta.permissions().mode() & 0o7777, 0o755);

    for (name, content) in [("db_password", &b"hunter2"[..]), ("api_key", b"")] {
        let path = writer.path_of(name);
        assert_eq!(path, base.path().join(name));
        assert_eq!(
            fs::read_link(&path).unwrap(),
            Path::new("..data").join(name)
        );
        assert_eq!(fs::read(&path).unwrap(), content);
        let metadata = fs::symlink_metadata(gen_dir.join(name)).unwrap();
        assert!(metadata.is_file());
        assert_eq!(metadata.permissions().mode() & 0o7777, 0o440, "{name}");
        assert_eq!(metadata.uid(), nix::unistd::geteuid().as_raw());
    }
}

#[test]
fn commit_sets_the_configured_owner() {
    let base = shm_dir();
    let writer = GenerationWriter::open(OutputOptions {
        uid: Some(1000),
        gid: Some(1000),
        ..options(base.path())
    })
    .unwrap();
    let result = commit(&writer, &[("owned", b"value")]);
    if !is_root() && nix::unistd::geteuid().as_raw() != 1000 {
        // Without CAP_CHOWN the commit must fail, say why, and leave nothing.
        let error = result.unwrap_err();
        assert_eq!(error.kind(), ErrorKind::PermissionDenied);
        assert!(error.message().contains("CAP_CHOWN"), "{error}");
        assert!(entries(base.path()).is_empty());
        return;
    }
    let Ok(Commit::Written { generation }) = result else {
        panic!("{result:?}");
    };
    let gen_dir = base.path().join(&generation);
    for path in [gen_dir.join("owned"), gen_dir.clone()] {
        let metadata = fs::symlink_metadata(&path).unwrap();
        assert_eq!(
            (metadata.uid(), metadata.gid()),
            (1000, 1000),
            "{}",
            path.display()
        );
    }
    assert_eq!(fs::read(base.path().join("owned")).unwrap(), b"value");
    // Same content and owner: nothing to do.
    assert_eq!(
        commit(&writer, &[("owned", b"value")]).unwrap(),
        Commit::Unchanged
    );

    // The same content under another owner is a change.
    let other = GenerationWriter::open(OutputOptions {
        uid: Some(1001),
        gid: Some(1000),
        ..options(base.path())
    })
    .unwrap();
    let next = commit_written(&other, &[("owned", b"value")]);
    assert_ne!(next, generation);
    let metadata = fs::metadata(base.path().join("owned")).unwrap();
    assert_eq!(metadata.uid(), 1001);
}

#[test]
fn identical_commit_is_unchanged_and_keeps_the_generation() {
    let base = shm_dir();
    let writer = open(base.path());
    let pairs: &[(&str, &[u8])] = &[("a", b"alpha"), ("b", b"beta")];
    let generation = commit_written(&writer, pairs);
    let before = entries(base.path());
    let inode = fs::metadata(base.path().join("a")).unwrap().ino();

    // Order of the files does not matter.
    let reversed: Vec<(&str, &[u8])> = pairs.iter().rev().copied().collect();
    assert_eq!(commit(&writer, &reversed).unwrap(), Commit::Unchanged);
    assert_eq!(data_target(base.path()), generation);
    assert_eq!(entries(base.path()), before);
    assert_eq!(fs::metadata(base.path().join("a")).unwrap().ino(), inode);

    // Same length, different byte: a change.
    let changed = commit_written(&writer, &[("a", b"alphA"), ("b", b"beta")]);
    assert_ne!(changed, generation);
}

#[test]
fn changed_content_makes_a_new_generation_and_prunes_the_old() {
    let base = shm_dir();
    let writer = open(base.path());
    let first = commit_written(&writer, &[("token", b"one")]);
    // A reader that opened the old file keeps reading it whole.
    let mut held = fs::File::open(base.path().join("token")).unwrap();

    let second = commit_written(&writer, &[("token", b"two, longer")]);
    assert_ne!(first, second);
    assert_eq!(data_target(base.path()), second);
    assert_eq!(dot_entries(base.path()), [second.as_str(), "..data"]);
    assert_eq!(fs::read(base.path().join("token")).unwrap(), b"two, longer");
    // The replaced generation stays for readers that resolved `..data`
    // before the swap, until a swap more than a second later prunes it.
    assert!(base.path().join(&first).exists());
    thread::sleep(std::time::Duration::from_millis(1100));
    let third = commit_written(&writer, &[("token", b"three")]);
    let generations: Vec<String> = all_entries(base.path())
        .into_iter()
        .filter(|name| is_generation(name))
        .collect();
    let mut expected = vec![second.clone(), third];
    expected.sort();
    assert_eq!(
        generations, expected,
        "the previous one stays, older ones go"
    );

    let mut old = String::new();
    held.read_to_string(&mut old).unwrap();
    assert_eq!(old, "one");
}

#[test]
fn a_mode_change_makes_a_new_generation() {
    let base = shm_dir();
    let first = commit_written(&open(base.path()), &[("k", b"v")]);
    let wider = GenerationWriter::open(OutputOptions {
        mode: 0o444,
        ..options(base.path())
    })
    .unwrap();
    let second = commit_written(&wider, &[("k", b"v")]);
    assert_ne!(first, second);
    let metadata = fs::metadata(base.path().join("k")).unwrap();
    assert_eq!(metadata.permissions().mode() & 0o7777, 0o444);
}

#[test]
fn a_removed_name_loses_its_link_and_other_entries_are_kept() {
    let base = shm_dir();
    let writer = open(base.path());
    commit_written(&writer, &[("keep", b"1"), ("drop", b"2")]);
    fs::write(base.path().join("user-file"), b"not ours").unwrap();
    symlink("/etc/hostname", base.path().join("user-link")).unwrap();

    let generation = commit_written(&writer, &[("keep", b"1")]);
    assert_eq!(
        entries(base.path()),
        [
            generation.as_str(),
            "..data",
            "keep",
            "user-file",
            "user-link"
        ]
    );
    assert!(fs::symlink_metadata(base.path().join("drop")).is_err());
    assert_eq!(
        fs::read(base.path().join("user-file")).unwrap(),
        b"not ours"
    );

    // An empty generation is allowed and removes every secret link.
    let empty = commit_written(&writer, &[]);
    assert_eq!(
        entries(base.path()),
        [empty.as_str(), "..data", "user-file", "user-link"]
    );
}

#[test]
fn missing_links_are_repaired_without_a_new_generation() {
    let base = shm_dir();
    let writer = open(base.path());
    let generation = commit_written(&writer, &[("a", b"1"), ("b", b"2")]);
    // As if a crash happened between the ..data rename and the linking, and
    // the link of `b` pointed somewhere else.
    fs::remove_file(base.path().join("a")).unwrap();
    fs::remove_file(base.path().join("b")).unwrap();
    symlink("/etc/hostname", base.path().join("b")).unwrap();

    assert_eq!(
        commit(&writer, &[("a", b"1"), ("b", b"2")]).unwrap(),
        Commit::Unchanged
    );
    assert_eq!(data_target(base.path()), generation);
    assert_eq!(fs::read(base.path().join("a")).unwrap(), b"1");
    assert_eq!(fs::read(base.path().join("b")).unwrap(), b"2");
}

#[test]
fn leftovers_of_a_crash_are_cleaned_up_and_foreign_dot_entries_kept() {
    let base = shm_dir();
    let writer = open(base.path());
    commit_written(&writer, &[("a", b"1")]);
    // A half-built generation and temporary links left by a crash.
    let stale = base.path().join("..2020_01_01_00_00_00.crashed");
    fs::create_dir(&stale).unwrap();
    fs::write(stale.join("a"), b"stale secret").unwrap();
    symlink(
        "..2020_01_01_00_00_00.crashed",
        base.path().join("..data_tmp"),
    )
    .unwrap();
    symlink("..data/a", base.path().join("..link_tmp")).unwrap();
    // Not a generation name: not ours to remove.
    fs::create_dir(base.path().join("..other")).unwrap();

    assert_eq!(commit(&writer, &[("a", b"1")]).unwrap(), Commit::Unchanged);
    assert!(
        !stale.exists(),
        "a generation newer than the current one was never committed"
    );
    let current = data_target(base.path());
    assert_eq!(
        dot_entries(base.path()),
        [current.as_str(), "..data", "..other"]
    );
}

#[test]
fn a_dangling_data_link_is_replaced() {
    let base = shm_dir();
    let writer = open(base.path());
    symlink("..2020_01_01_00_00_00.gone", base.path().join("..data")).unwrap();
    let generation = commit_written(&writer, &[("a", b"1")]);
    assert_eq!(data_target(base.path()), generation);
    assert_eq!(fs::read(base.path().join("a")).unwrap(), b"1");
}

// ---------------------------------------------------------------- failures

/// The state a failed commit must leave: the previous generation, whole.
fn assert_previous_generation_intact(dir: &Path, generation: &str) {
    assert_eq!(data_target(dir), generation);
    assert_eq!(dot_entries(dir), [generation, "..data"]);
    assert_eq!(fs::read(dir.join("a")).unwrap(), b"old a");
    assert_eq!(fs::read(dir.join("b")).unwrap(), b"old b");
}

#[test]
fn a_failing_commit_leaves_the_previous_generation() {
    let base = shm_dir();
    let writer = open(base.path());
    let generation = commit_written(&writer, &[("a", b"old a"), ("b", b"old b")]);

    // An invalid name among valid ones.
    let error = commit(&writer, &[("a", b"new a"), ("b/../../x", b"new b")]).unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Config);
    assert_previous_generation_intact(base.path(), &generation);

    // A new name collides with a directory a user made there.
    fs::create_dir(base.path().join("c")).unwrap();
    let error = commit(
        &writer,
        &[("a", b"new a"), ("b", b"new b"), ("c", b"new c")],
    )
    .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Config);
    assert_eq!(
        error.subject(),
        Some(base.path().join("c").display().to_string().as_str())
    );
    assert!(!error.to_string().contains("new c"));
    assert_previous_generation_intact(base.path(), &generation);
    assert!(
        fs::symlink_metadata(base.path().join("c"))
            .unwrap()
            .is_dir()
    );
}

#[test]
fn a_write_failure_midway_removes_the_half_built_generation() {
    // A 64 KiB tmpfs cannot hold a 256 KiB secret: the write fails after
    // the generation directory and the first file exist.
    let Some(mount) = Mount::new("tmpfs", "size=64k,mode=0755") else {
        return;
    };
    let writer = open(mount.path());
    let generation = commit_written(&writer, &[("a", b"old a"), ("b", b"old b")]);

    let big = vec![b'x'; 256 * 1024];
    let error = commit(&writer, &[("a", b"new a"), ("b", &big)]).unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Io, "{error}");
    assert!(error.message().contains("cannot write"), "{error}");
    assert!(
        error
            .subject()
            .is_some_and(|subject| subject.ends_with("/b")),
        "{error}"
    );
    assert_previous_generation_intact(mount.path(), &generation);
    drop(writer);
}

// ---------------------------------------------------------------- no values in logs

/// Collects everything a `tracing` subscriber writes.
#[derive(Clone, Default)]
struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

impl io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn logs_name_dir_generation_and_secrets_but_never_values() {
    const CANARY: &[u8] = b"CANARY-9f8e7d6c";
    let captured = Captured::default();
    let sink = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || sink.clone())
        .finish();
    let base = shm_dir();
    // The process-wide subscriber, not a scoped one: tests on other threads
    // reach the same callsites first, and tracing may then cache them as
    // uninteresting for a scoped subscriber (this test lost its "committed
    // generation" lines that way under load). Other tests' events land in
    // the capture too, which the assertions below allow.
    tracing::subscriber::set_global_default(subscriber)
        .expect("no other test in this binary sets a global subscriber");
    let generation = {
        let writer = open(base.path());
        let generation = commit_written(&writer, &[("canary_secret", CANARY)]);
        assert_eq!(
            commit(&writer, &[("canary_secret", CANARY)]).unwrap(),
            Commit::Unchanged
        );
        commit_written(&writer, &[("other", CANARY)]);
        let error = commit(&writer, &[("bad/name", CANARY)]).unwrap_err();
        assert!(!format!("{error} {error:?}").contains("CANARY"));
        assert!(!format!("{writer:?}").contains("CANARY"));
        writer.remove_all().unwrap();
        generation
    };
    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    for needle in [
        "committed generation",
        "generation unchanged",
        &generation as &str,
        "canary_secret",
        &base.path().display().to_string(),
    ] {
        assert!(logs.contains(needle), "{needle:?} not in logs:\n{logs}");
    }
    assert!(
        !logs.contains("CANARY"),
        "a value reached the logs:\n{logs}"
    );
}

// ---------------------------------------------------------------- remove_all

#[test]
fn remove_all_removes_what_hushbox_made_and_nothing_else() {
    let base = shm_dir();
    let writer = open(base.path());
    commit_written(&writer, &[("a", b"1"), ("b", b"2")]);
    fs::write(base.path().join("user-file"), b"mine").unwrap();
    symlink("elsewhere", base.path().join("user-link")).unwrap();
    fs::create_dir(base.path().join("..2020_01_01_00_00_00.stale")).unwrap();

    writer.remove_all().unwrap();
    assert_eq!(entries(base.path()), ["user-file", "user-link"]);
    // The writer stays usable.
    commit_written(&writer, &[("a", b"again")]);
    assert_eq!(fs::read(base.path().join("a")).unwrap(), b"again");
}

// ---------------------------------------------------------------- run dir

#[test]
fn run_dir_is_private_in_dev_shm_and_removed_on_drop() {
    let env = Environment::from_pairs([("XDG_RUNTIME_DIR", "/tmp")]);
    let run_dir = RunDir::create(&env).unwrap();
    let path = run_dir.path().to_owned();
    assert_eq!(path.parent(), Some(Path::new("/dev/shm")));
    let name = path.file_name().unwrap().to_str().unwrap();
    assert!(name.starts_with("hushbox-run.") && name.len() > "hushbox-run.".len());
    let metadata = fs::symlink_metadata(&path).unwrap();
    assert!(metadata.is_dir());
    assert_eq!(metadata.permissions().mode() & 0o7777, 0o700);
    assert_eq!(metadata.uid(), nix::unistd::geteuid().as_raw());

    // A generation inside it, and a link out of it that must not be followed.
    let outside = shm_dir();
    fs::write(outside.path().join("precious"), b"keep").unwrap();
    let writer = open(&path);
    commit_written(&writer, &[("a", b"1")]);
    symlink(outside.path(), path.join("escape")).unwrap();
    drop(writer);

    let second = RunDir::create(&Environment::default()).unwrap();
    assert_ne!(second.path(), path);
    drop(run_dir);
    assert!(
        fs::symlink_metadata(&path).is_err(),
        "{} still exists",
        path.display()
    );
    assert_eq!(fs::read(outside.path().join("precious")).unwrap(), b"keep");

    let second_path = second.path().to_owned();
    second.remove().unwrap();
    assert!(!second_path.exists());
}

// ---------------------------------------------------------------- hammer

const GENERATIONS: usize = 300;
const READERS: usize = 4;
const BIG: usize = 64 * 1024;
const FILES: [&str; 2] = ["a", "b"];

/// File `file` (0 = a, 1 = b) of generation `generation`: one file is a
/// single byte and the other 64 KiB, swapping every generation, and every
/// byte carries the generation's tag, so a torn, truncated or mixed read
/// cannot pass for a committed value.
fn content(generation: usize, file: usize) -> Vec<u8> {
    let tag = (generation % 200) as u8;
    let big = (generation % 2 == 1) == (file == 0);
    if big {
        (0..BIG).map(|k| pattern(tag, file, k)).collect()
    } else {
        vec![tag]
    }
}

fn pattern(tag: u8, file: usize, k: usize) -> u8 {
    tag.wrapping_add((k % 251) as u8) ^ (file as u8 * 0x55)
}

/// The generation tag of a read, or why it is no committed value.
fn decode(file: usize, bytes: &[u8]) -> Result<u8, String> {
    let (tag, big) = match bytes.len() {
        1 => (bytes[0], false),
        BIG => (bytes[0] ^ (file as u8 * 0x55), true),
        len => return Err(format!("file {} has {len} bytes", FILES[file])),
    };
    // Tags keep the generation's parity, which decides which file is big.
    let generation_odd = tag % 2 == 1;
    if tag >= 200 || big != (generation_odd == (file == 0)) {
        return Err(format!(
            "file {} has {} bytes with tag {tag}",
            FILES[file],
            bytes.len()
        ));
    }
    if big && let Some(k) = (0..BIG).find(|&k| bytes[k] != pattern(tag, file, k)) {
        return Err(format!("file {} torn at byte {k} (tag {tag})", FILES[file]));
    }
    Ok(tag)
}

fn files_of(generation: usize) -> Vec<(&'static str, SecretValue)> {
    FILES
        .iter()
        .enumerate()
        .map(|(file, name)| (*name, SecretValue::from_vec(content(generation, file))))
        .collect()
}

#[derive(Default, Debug, Clone, Copy)]
struct ReaderStats {
    /// Complete reads of one file through its user-visible link.
    reads: usize,
    /// Pairs of files read from one resolution of `..data`.
    pairs: usize,
    /// Opens that lost a race with pruning (the path walk read the old
    /// `..data` target, then the old generation was removed): ENOENT,
    /// never a partial file.
    raced: usize,
    /// Distinct generation tags seen.
    tags_seen: usize,
}

fn read_fd(fd: std::os::fd::OwnedFd) -> Vec<u8> {
    let mut bytes = Vec::new();
    fs::File::from(fd).read_to_end(&mut bytes).unwrap();
    bytes
}

fn reader(dir: &Path, start: &Barrier, stop: &AtomicBool) -> ReaderStats {
    let mut stats = ReaderStats::default();
    let mut seen = [false; 200];
    start.wait();
    while !stop.load(Ordering::Relaxed) {
        // One file at a time, through its user-visible link.
        for (file, name) in FILES.iter().enumerate() {
            match fs::read(dir.join(name)) {
                Ok(bytes) => {
                    let tag = decode(file, &bytes).unwrap_or_else(|why| {
                        panic!("read after {} good reads: {why}", stats.reads)
                    });
                    seen[usize::from(tag)] = true;
                    stats.reads += 1;
                }
                Err(error) if error.kind() == io::ErrorKind::NotFound => stats.raced += 1,
                Err(error) => panic!("reading {name}: {error}"),
            }
        }
        // Both files from one resolution of ..data: they must agree.
        let generation = match fs::File::open(dir.join("..data")) {
            Ok(generation) => generation,
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                stats.raced += 1;
                continue;
            }
            Err(error) => panic!("opening ..data: {error}"),
        };
        let open = |name: &str| {
            openat(
                generation.as_fd(),
                name,
                OFlag::O_RDONLY | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
        };
        match (open(FILES[0]), open(FILES[1])) {
            (Ok(a), Ok(b)) => {
                let tag_a = decode(0, &read_fd(a)).unwrap_or_else(|why| panic!("pair: {why}"));
                let tag_b = decode(1, &read_fd(b)).unwrap_or_else(|why| panic!("pair: {why}"));
                assert_eq!(
                    tag_a, tag_b,
                    "a and b from one ..data resolution come from different generations"
                );
                stats.pairs += 1;
            }
            (Err(Errno::ENOENT), _) | (_, Err(Errno::ENOENT)) => stats.raced += 1,
            (a, b) => panic!("opening a pair: {:?} {:?}", a.err(), b.err()),
        }
    }
    stats.tags_seen = seen.iter().filter(|&&seen| seen).count();
    stats
}

#[test]
fn hammer_readers_never_see_a_partial_or_mixed_generation() {
    let base = shm_dir();
    let writer = GenerationWriter::open(OutputOptions {
        mode: 0o444,
        ..options(base.path())
    })
    .unwrap();
    let commit_generation = |generation: usize| {
        let files = files_of(generation);
        let refs: Vec<(&str, &SecretValue)> =
            files.iter().map(|(name, value)| (*name, value)).collect();
        match writer.commit(&refs) {
            Ok(Commit::Written { .. }) => {}
            other => panic!("generation {generation}: {other:?}"),
        }
    };
    commit_generation(0);

    let stop = Arc::new(AtomicBool::new(false));
    // Commits start only once every reader is running.
    let start = Arc::new(Barrier::new(READERS + 1));
    let readers: Vec<_> = (0..READERS)
        .map(|_| {
            let dir = base.path().to_owned();
            let (start, stop) = (Arc::clone(&start), Arc::clone(&stop));
            thread::spawn(move || reader(&dir, &start, &stop))
        })
        .collect();
    start.wait();
    for generation in 1..=GENERATIONS {
        commit_generation(generation);
    }
    stop.store(true, Ordering::Relaxed);
    let stats: Vec<ReaderStats> = readers
        .into_iter()
        .map(|reader| {
            reader
                .join()
                .expect("a reader saw a bad read (see its panic)")
        })
        .collect();

    let reads: usize = stats.iter().map(|s| s.reads).sum();
    let pairs: usize = stats.iter().map(|s| s.pairs).sum();
    let raced: usize = stats.iter().map(|s| s.raced).sum();
    let most_tags = stats.iter().map(|s| s.tags_seen).max().unwrap_or(0);
    let summary = format!(
        "{GENERATIONS} generations, {READERS} readers: {reads} single reads, {pairs} pair reads, \
         {raced} opens raced with pruning, at most {most_tags} distinct generations seen by one reader"
    );
    eprintln!("{summary}");
    // The test only proves something if the readers overlapped many commits.
    assert!(
        reads >= GENERATIONS,
        "too few reads to mean anything: {summary}"
    );
    assert!(pairs >= GENERATIONS / 4, "too few pair reads: {summary}");
    assert!(
        most_tags >= 10,
        "readers saw too few generations: {summary}"
    );
    // Everything was read whole, and the old generations are gone but for
    // a bounded few replaced within the last second.
    assert_eq!(
        dot_entries(base.path()).len(),
        2,
        "{:?}",
        dot_entries(base.path())
    );
    let generations = all_entries(base.path())
        .into_iter()
        .filter(|name| is_generation(name))
        .count();
    assert!(generations <= 1 + 64, "{generations} generations kept");
}
