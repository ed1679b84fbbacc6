//! The private per-run directory of `hushbox run`.

use std::ffi::OsString;
use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use hushbox_core::{Environment, Error};
use nix::fcntl::AT_FDCWD;

use super::dirops;
use super::fs_check::is_memory_filesystem;
use super::names::random_suffix;

/// Where the run directory goes when `$XDG_RUNTIME_DIR` does not qualify.
const SHM: &str = "/dev/shm";
/// How many random names to try before giving up.
const NAME_ATTEMPTS: usize = 16;

/// A private per-run directory for `hushbox run`: `$XDG_RUNTIME_DIR` when
/// it is tmpfs/ramfs, else /dev/shm; named `hushbox-run.<random>`, mode
/// 0700; removed (recursively) on drop and by [`RunDir::remove`].
///
/// Removal never follows symlinks, so a link the child left inside cannot
/// make hushbox delete anything outside the directory.
#[derive(Debug)]
pub struct RunDir {
    /// The directory holding the run directory.
    base: PathBuf,
    /// The run directory's own name under `base`.
    name: OsString,
    path: PathBuf,
    removed: bool,
}

impl RunDir {
    /// Creates the directory.
    ///
    /// # Behavior
    /// - Uses `$XDG_RUNTIME_DIR` when it is set to an absolute path of a
    ///   directory on tmpfs or ramfs, else `/dev/shm`.
    /// - Refuses (fails) when `/dev/shm` is needed and is not tmpfs/ramfs:
    ///   `run` exists to keep secrets off the disk.
    /// - The directory is created fresh (never reused) with mode exactly 0700.
    pub fn create(env: &Environment) -> Result<Self, Error> {
        let base = choose_base(env)?;
        for _ in 0..NAME_ATTEMPTS {
            let name = OsString::from(format!("hushbox-run.{}", random_suffix()));
            let path = base.join(&name);
            // mkdir fails on an existing entry, symlinks included, so a name
            // planted in a shared /dev/shm is never taken over.
            match fs::DirBuilder::new().mode(0o700).create(&path) {
                Ok(()) => {
                    let run_dir = Self {
                        base,
                        name,
                        path,
                        removed: false,
                    };
                    // The umask may have narrowed the mode; 0700 is the contract.
                    fs::set_permissions(&run_dir.path, fs::Permissions::from_mode(0o700)).map_err(
                        |error| {
                            Error::io("cannot set the run directory's mode", error)
                                .with_subject(run_dir.path.display())
                        },
                    )?;
                    tracing::debug!(dir = %run_dir.path.display(), "created run directory");
                    return Ok(run_dir);
                }
                Err(error) if error.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(error) => {
                    return Err(Error::io("cannot create the run directory", error)
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
