//! The private per-run directory of `hushbox run`, and the sweep of those a
//! killed run left behind.

use std::ffi::{OsStr, OsString};
use std::fs::{self, File};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use hushbox_core::{Environment, Error};
use nix::errno::Errno;
use nix::fcntl::{AT_FDCWD, OFlag, openat, renameat};
use nix::sys::stat::{Mode, SFlag, fchmod, fstat, mkdirat};
use nix::unistd::geteuid;

use super::dirops::{self, Kind};
use super::fs_check::is_memory_filesystem;
use super::names::random_suffix;

/// Where the run directory goes when `$XDG_RUNTIME_DIR` does not qualify.
const SHM: &str = "/dev/shm";
/// How many random names to try before giving up.
const NAME_ATTEMPTS: usize = 16;
/// What every run directory's name starts with.
const PREFIX: &str = "hushbox-run.";
/// What a kept directory's name starts with (`run --keep`): followed by 16
/// hex digits that name the project and user. Never swept.
const KEPT_PREFIX: &str = "hushbox-keep.";
/// The lock file inside a run directory, held (`flock`) by the hushbox that
/// made it for as long as it lives: the kernel drops the lock when the
/// process dies, however it dies, which is what marks the directory stale.
const RUN_LOCK: &str = "..run.lock";
/// Where the lock file is made and locked before it is renamed into place,
/// so that no sweeper ever sees `..run.lock` unlocked in a live directory.
const RUN_LOCK_NEW: &str = "..run.lock.new";

/// A private per-run directory for `hushbox run`: `$XDG_RUNTIME_DIR` when
/// it is tmpfs/ramfs, else /dev/shm; named `hushbox-run.<random>`, mode
/// 0700; removed (recursively) on drop and by [`RunDir::remove`].
///
/// Removal never follows symlinks, so a link the child left inside cannot
/// make hushbox delete anything outside the directory; and it opens up
/// directories the child made read-only, so nothing is left inside them.
#[derive(Debug)]
pub struct RunDir {
    /// The directory holding the run directory.
    base: PathBuf,
    /// The run directory's own name under `base`.
    name: OsString,
    path: PathBuf,
    /// `..run.lock`, locked while this run lives; none in a kept directory.
    _lock: Option<File>,
    /// Removed already, or kept: nothing to do on drop.
    removed: bool,
}

impl RunDir {
    /// Creates the directory, after sweeping the stale ones of this user.
    ///
    /// # Behavior
    /// - Uses `$XDG_RUNTIME_DIR` when it is set to an absolute path of a
    ///   directory on tmpfs or ramfs, else `/dev/shm`.
    /// - Refuses (fails) when `/dev/shm` is needed and is not tmpfs/ramfs:
    ///   `run` exists to keep secrets off the disk.
    /// - First removes every stale run directory there: named
    ///   `hushbox-run.<12 letters or digits>`, a real directory (not a
    ///   symlink), owned by the effective user, holding a `..run.lock` that
    ///   no process holds any more (its run was killed, by SIGKILL or a
    ///   crash, before it could clean up). Other users' directories, live
    ///   runs, and directories without the lock file are left alone.
    /// - The directory is created fresh (never reused) with mode exactly
    ///   0700, and holds `..run.lock`, locked until the process ends.
    pub fn create(env: &Environment) -> Result<Self, Error> {
        let base = choose_base(env)?;
        let base_fd = dirops::open_dir_at(AT_FDCWD, base.as_os_str()).map_err(|errno| {
            Error::io("cannot open the run directory's parent", errno.into())
                .with_subject(base.display())
        })?;
        sweep_stale(&base_fd, &base);
        for _ in 0..NAME_ATTEMPTS {
            let name = OsString::from(format!("{PREFIX}{}", random_suffix()));
            let path = base.join(&name);
            // mkdirat fails on an existing entry, symlinks included, so a
            // name planted in a shared /dev/shm is never taken over.
            match mkdirat(&base_fd, name.as_os_str(), Mode::S_IRWXU) {
                Ok(()) => {
                    let lock = lock_new_dir(&base_fd, &name).map_err(|errno| {
                        // Nothing is in it yet: a failed removal leaves an
                        // empty directory at worst.
                        let _ = dirops::remove_tree_at(&base_fd, &name);
                        Error::io("cannot prepare the run directory", errno.into())
                            .with_subject(path.display())
                    })?;
                    tracing::debug!(dir = %path.display(), "created run directory");
                    return Ok(Self {
                        base,
                        name,
                        path,
                        _lock: Some(lock),
                        removed: false,
                    });
                }
                Err(Errno::EEXIST) => continue,
                Err(errno) => {
                    return Err(Error::io("cannot create the run directory", errno.into())
                        .with_subject(path.display()));
                }
            }
        }
        Err(Error::new(
            hushbox_core::ErrorKind::Io,
            "cannot find a free run directory name",
        )
        .with_subject(base.display()))
    }

    /// The kept directory of one project (`run --keep`, `run --discard`):
    /// the same directory for every run of the project by this user, left in
    /// place when the run ends until [`RunDir::remove`] is called.
    ///
    /// # Behavior
    /// - Lives where [`RunDir::create`] would put a run directory, named
    ///   `hushbox-keep.<16 hex digits>`: a hash (FNV-1a, a name, not a
    ///   secret) of the effective uid and `project` (the manifest's path).
    /// - Created with mode 0700 when missing; reused when it is a real
    ///   directory (not a symlink) owned by the effective user with mode
    ///   exactly 0700. Anything else at that name is refused: in a shared
    ///   `/dev/shm` another user could have planted it.
    /// - Dropping it leaves it in place; the sweep of stale run directories
    ///   never touches it.
    pub fn kept(env: &Environment, project: &Path) -> Result<Self, Error> {
        let base = choose_base(env)?;
        let base_fd = dirops::open_dir_at(AT_FDCWD, base.as_os_str()).map_err(|errno| {
            Error::io("cannot open the kept directory's parent", errno.into())
                .with_subject(base.display())
        })?;
        let euid = geteuid().as_raw();
        let name = OsString::from(format!("{KEPT_PREFIX}{:016x}", kept_key(euid, project)));
        let path = base.join(&name);
        match mkdirat(&base_fd, name.as_os_str(), Mode::S_IRWXU) {
            Ok(()) => tracing::debug!(dir = %path.display(), "created kept directory"),
            Err(Errno::EEXIST) => {}
            Err(errno) => {
                return Err(Error::io("cannot create the kept directory", errno.into())
                    .with_subject(path.display()));
            }
        }
        let refused = || {
            Error::new(
                hushbox_core::ErrorKind::PermissionDenied,
                format!(
                    "the kept directory is not a directory of uid {euid} with mode 0700;                      refusing to write secrets into it (remove it if you made it)"
                ),
            )
            .with_subject(path.display())
        };
        // O_NOFOLLOW: a symlink planted at the name is refused, not followed.
        let dir = dirops::open_dir_at(&base_fd, &name).map_err(|_| refused())?;
        let stat = fstat(&dir).map_err(|errno| {
            Error::io("cannot inspect the kept directory", errno.into())
                .with_subject(path.display())
        })?;
        if stat.st_uid != euid {
            return Err(refused());
        }
        // A fresh directory's mode may have been narrowed by the umask only,
        // never widened; an old one must be exactly what hushbox made.
        if stat.st_mode & 0o7777 != 0o700 {
            return Err(refused());
        }
        Ok(Self {
            base,
            name,
            path,
            // No sweeper looks at this name: nothing to hold.
            _lock: None,
            // Left in place unless removed explicitly.
            removed: true,
        })
    }

    /// The directory's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Removes the directory and everything in it, reporting failure
    /// (dropping removes too, but can only log).
    pub fn remove(mut self) -> Result<(), Error> {
        self.removed = true;
        self.remove_tree()
    }

    fn remove_tree(&self) -> Result<(), Error> {
        let base = dirops::open_dir_at(AT_FDCWD, self.base.as_os_str()).map_err(|errno| {
            Error::io("cannot open the run directory's parent", errno.into())
                .with_subject(self.base.display())
        })?;
        dirops::remove_tree_at(&base, &self.name).map_err(|errno| {
            Error::io("cannot remove the run directory", errno.into())
                .with_subject(self.path.display())
        })?;
        tracing::debug!(dir = %self.path.display(), "removed run directory");
        Ok(())
    }
}

impl Drop for RunDir {
    fn drop(&mut self) {
        if !self.removed
            && let Err(error) = self.remove_tree()
        {
            tracing::warn!(%error, "cannot remove the run directory");
        }
    }
}

/// Gives the new directory `name` its exact mode (the umask may have
/// narrowed it) through a descriptor, and its held `..run.lock`: made and
/// locked under another name, then renamed into place.
fn lock_new_dir(base: impl AsFd, name: &OsStr) -> nix::Result<File> {
    let dir = dirops::open_dir_at(base, name)?;
    fchmod(&dir, Mode::S_IRWXU)?;
    let lock = File::from(openat(
        &dir,
        RUN_LOCK_NEW,
        OFlag::O_RDWR | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::S_IRUSR | Mode::S_IWUSR,
    )?);
    // Nobody else can have this fresh file open, so this does not wait.
    lock.lock()
        .map_err(|error| error.raw_os_error().map_or(Errno::EIO, Errno::from_raw))?;
    renameat(&dir, RUN_LOCK_NEW, &dir, RUN_LOCK)?;
    Ok(lock)
}

/// The kept directory's name for `project` and `uid`: 64-bit FNV-1a, stable
/// across releases (std's hasher promises no such thing).
fn kept_key(uid: u32, project: &Path) -> u64 {
    use std::os::unix::ffi::OsStrExt;
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let bytes = uid.to_le_bytes();
    for byte in bytes.iter().chain(project.as_os_str().as_bytes()) {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

/// Whether `name` has the shape [`RunDir::create`] gives its directories.
fn is_run_dir_name(name: &OsStr) -> bool {
    name.to_str()
        .and_then(|name| name.strip_prefix(PREFIX))
        .is_some_and(|suffix| {
            suffix.len() == 12 && suffix.bytes().all(|byte| byte.is_ascii_alphanumeric())
        })
}

/// Removes the run directories under `base` that a dead run of this user
/// left (see [`RunDir::create`]). Best effort: what cannot be inspected or
/// removed is logged and left.
fn sweep_stale(base_fd: &OwnedFd, base: &Path) {
    let entries = match dirops::list(base_fd) {
        Ok(entries) => entries,
        Err(errno) => {
            tracing::debug!(dir = %base.display(), %errno, "cannot list for stale run directories");
            return;
        }
    };
    let euid = geteuid().as_raw();
    for (name, kind) in entries {
        // A symlink is never followed, whatever it points to.
        if kind != Kind::Directory || !is_run_dir_name(&name) {
            continue;
        }
        let Some(_held) = stale_lock(base_fd, &name, euid) else {
            continue;
        };
        // The lock stays held while the directory goes, so a second
        // sweeper skips it.
        let path = base.join(&name);
        match dirops::remove_tree_at(base_fd, &name) {
            Ok(()) => {
                tracing::info!(dir = %path.display(), "removed the run directory of a run that was killed")
            }
            Err(errno) => {
                tracing::warn!(dir = %path.display(), %errno, "cannot remove a stale run directory")
            }
        }
    }
}

/// The lock of the run directory `name` when the directory is ours and its
/// run is dead: a directory owned by `euid` whose `..run.lock` is a regular
/// file of ours that this call could lock. `None` for anything else.
fn stale_lock(base_fd: &OwnedFd, name: &OsStr, euid: u32) -> Option<File> {
    let dir = dirops::open_dir_at(base_fd, name).ok()?;
    if fstat(&dir).ok()?.st_uid != euid {
        return None;
    }
    let lock = openat(
        &dir,
        RUN_LOCK,
        OFlag::O_RDWR | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .ok()?;
    let stat = fstat(&lock).ok()?;
    let regular = SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT == SFlag::S_IFREG;
    if !regular || stat.st_uid != euid {
        return None;
    }
    let lock = File::from(lock);
    lock.try_lock().ok()?;
    Some(lock)
}

/// `$XDG_RUNTIME_DIR` if it is an absolute directory on a memory filesystem,
/// else `/dev/shm` if that is one.
fn choose_base(env: &Environment) -> Result<PathBuf, Error> {
    if let Some(runtime) = env.get_os("XDG_RUNTIME_DIR").map(PathBuf::from) {
        // The XDG spec says to ignore a relative value. The path is resolved
        // now because removal opens it with O_NOFOLLOW.
        if runtime.is_absolute()
            && let Ok(resolved) = fs::canonicalize(&runtime)
            && resolved.is_dir()
            && is_memory_filesystem(&resolved).unwrap_or(false)
        {
            return Ok(resolved);
        }
        tracing::debug!(
            dir = %runtime.display(),
            "XDG_RUNTIME_DIR is not an absolute directory on tmpfs/ramfs; using /dev/shm"
        );
    }
    let shm = PathBuf::from(SHM);
    match is_memory_filesystem(&shm) {
        Ok(true) => Ok(shm),
        Ok(false) => Err(Error::config(
            "neither $XDG_RUNTIME_DIR nor /dev/shm is on tmpfs or ramfs, so `run` has nowhere \
             to keep secrets off the disk; set XDG_RUNTIME_DIR to a tmpfs directory",
        )
        .with_subject(SHM)),
        Err(error) => Err(Error::io("cannot check /dev/shm's filesystem", error).with_subject(SHM)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_or_disk_runtime_dir_falls_back_to_dev_shm() {
        for value in ["relative/dir", "/proc", "/nonexistent/hushbox"] {
            let env = Environment::from_pairs([("XDG_RUNTIME_DIR", value)]);
            assert_eq!(choose_base(&env).unwrap(), Path::new(SHM), "{value}");
        }
        assert_eq!(
            choose_base(&Environment::default()).unwrap(),
            Path::new(SHM)
        );
    }

    #[test]
    fn memory_runtime_dir_is_used() {
        let runtime = tempfile::tempdir_in(SHM).unwrap();
        let env = Environment::from_pairs([("XDG_RUNTIME_DIR", runtime.path())]);
        assert_eq!(choose_base(&env).unwrap(), runtime.path());
        let run_dir = RunDir::create(&env).unwrap();
        assert_eq!(run_dir.path().parent(), Some(runtime.path()));
    }

    #[test]
    fn a_symlinked_runtime_dir_is_resolved_and_removal_works() {
        let runtime = tempfile::tempdir_in(SHM).unwrap();
        let real = runtime.path().join("real");
        fs::create_dir(&real).unwrap();
        let link = runtime.path().join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let env = Environment::from_pairs([("XDG_RUNTIME_DIR", &link)]);
        let run_dir = RunDir::create(&env).unwrap();
        assert_eq!(run_dir.path().parent(), Some(real.as_path()));
        fs::write(run_dir.path().join("file"), b"x").unwrap();
        run_dir.remove().unwrap();
        assert_eq!(fs::read_dir(&real).unwrap().count(), 0);
    }
}
