//! Checks on the output directory: memory-backed, a real directory, ours.
//!
//! The directory is opened once, with `O_NOFOLLOW`, and every check after the
//! open is made on the descriptor (`fstat`, `fstatfs`), so the directory that
//! was checked is the one the writer uses even if the path is swapped later.

use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Component, Path};

use hushbox_core::{Error, ErrorKind};
use nix::errno::Errno;
use nix::fcntl::{AT_FDCWD, OFlag, openat};
use nix::sys::stat::{Mode, fchmod, fstat, mkdirat};
use nix::sys::statfs::{Statfs, fstatfs, statfs};
use nix::unistd::geteuid;

use super::dirops::{self, Kind};

/// `TMPFS_MAGIC` from `linux/magic.h`.
pub(crate) const TMPFS_MAGIC: u32 = 0x0102_1994;
/// `RAMFS_MAGIC` from `linux/magic.h` (not exported by nix).
pub(crate) const RAMFS_MAGIC: u32 = 0x8584_58f6;

/// Whether `path` lives on tmpfs or ramfs, by its `statfs` magic
/// (`TMPFS_MAGIC` 0x01021994 or `RAMFS_MAGIC` 0x858458f6).
///
/// Symlinks in `path` are followed, as `statfs(2)` does.
pub fn is_memory_filesystem(path: &Path) -> io::Result<bool> {
    let stat = statfs(path).map_err(io::Error::from)?;
    Ok(is_memory_magic(magic_of(&stat)))
}

/// The low 32 bits of `f_type`: the magics are 32-bit values, and `f_type`
/// is a signed long, so a magic with the top bit set (ramfs) is negative on
/// 32-bit targets. Truncating to `u32` compares them right on both.
fn magic_of(stat: &Statfs) -> u32 {
    stat.filesystem_type().0 as u32
}

fn is_memory_magic(magic: u32) -> bool {
    magic == TMPFS_MAGIC || magic == RAMFS_MAGIC
}

/// A name for a filesystem magic, for error messages: users know "ext4",
/// not 0xef53.
pub(crate) fn filesystem_name(magic: u32) -> String {
    let name = match magic {
        TMPFS_MAGIC => "tmpfs",
        RAMFS_MAGIC => "ramfs",
        0xef53 => "ext2/ext3/ext4",
        0x5846_5342 => "xfs",
        0x9123_683e => "btrfs",
        0x794c_7630 => "overlayfs",
        0x2fc1_2fc1 => "zfs",
        0x6969 => "nfs",
        0xff53_4d42 | 0xfe53_4d42 => "cifs/smb",
        0x6573_5546 => "fuse",
        0x0102_1997 => "9p",
        0xf2f5_2010 => "f2fs",
        0x4d44 => "vfat",
        0x5346_544e => "ntfs",
        0x7363_6673 => "securityfs",
        0x0000_9fa0 => "proc",
        0x6265_6572 => "sysfs",
        _ => return format!("filesystem type {magic:#010x}"),
    };
    name.to_owned()
}

/// Opens the output directory after checking it, creating it (mode 0755)
/// when it is missing.
///
/// The path is split into its parent and its last component. The parent is
/// opened by path (symlinks above the output directory, such as
/// `/var/run -> /run`, are the administrator's); the last component is only
/// ever reached relative to the parent's descriptor with `O_NOFOLLOW`:
/// created with `mkdirat`, opened with `O_NOFOLLOW|O_DIRECTORY`, and from
/// then on changed through its own descriptor (`fchmod`). A symlink swapped
/// in between is refused, never followed.
///
/// Refuses a path whose last component is `..`, `.` or the root, a symlink
/// (also when written with a trailing `/` or `/.`), a non-directory, a
/// directory owned by anyone but the effective user, root or `owner`, a
/// directory its group or others may write, and (unless `allow_disk`) a
/// directory that is not on tmpfs or ramfs.
pub(crate) fn open_output_dir(
    dir: &Path,
    owner: Option<u32>,
    allow_disk: bool,
) -> Result<OwnedFd, Error> {
    let subject = dir.display();
    let (parent_path, name) = split_last_component(dir)?;
    let parent = openat(
        AT_FDCWD,
        parent_path,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|errno| {
        let error = Error::io(
            format!(
                "cannot open the output directory's parent {}",
                parent_path.display()
            ),
            errno.into(),
        );
        // hushbox creates the output directory, never the path above it:
        // a mistyped path should fail, not plant directories.
        match errno {
            Errno::ENOENT | Errno::ENOTDIR => error.with_hint(
                "create it, or point [output].dir (or --dir) at a directory whose parent exists",
            ),
            _ => error,
        }
        .with_subject(dir.display())
    })?;

    let created = match dirops::kind_at(&parent, name) {
        Ok(Some(Kind::Symlink)) => return Err(symlink_refused(dir)),
        Ok(Some(Kind::Directory)) => false,
        Ok(Some(_)) => {
            return Err(
                Error::config("the output path exists and is not a directory")
                    .with_subject(subject),
            );
        }
        Ok(None) => create_dir(&parent, name, dir)?,
        Err(errno) => {
            return Err(
                Error::io("cannot inspect the output directory", errno.into())
                    .with_subject(subject),
            );
        }
    };

    // O_NOFOLLOW closes the race with the check above: if the name became a
    // symlink since (swapped in by whoever can write the parent), the open
    // fails instead of following it.
    let fd = dirops::open_dir_at(&parent, name).map_err(|errno| match errno {
        // With O_DIRECTORY, Linux reports a symlink as ENOTDIR.
        Errno::ELOOP | Errno::ENOTDIR => Error::config(
            "the output directory became a symlink or a non-directory while it was checked; \
             hushbox refuses to write through one",
        )
        .with_subject(dir.display()),
        errno => {
            Error::io("cannot open the output directory", errno.into()).with_subject(dir.display())
        }
    })?;

    let stat = fstat(&fd).map_err(|errno| {
        Error::io("cannot inspect the output directory", errno.into()).with_subject(dir.display())
    })?;
    let euid = geteuid().as_raw();
    let dir_owner = stat.st_uid;
    if dir_owner != euid && dir_owner != 0 && Some(dir_owner) != owner {
        // Whoever owns the directory can swap our files and links under us.
        return Err(Error::new(
            ErrorKind::PermissionDenied,
            format!(
                "the output directory is owned by uid {dir_owner}, which is neither this \
                 process (uid {euid}), root, nor the configured owner; refusing to write \
                 secrets where another user controls the directory"
            ),
        )
        .with_subject(subject));
    }
    if created {
        // Through the descriptor: the directory just checked is the one
        // whose mode is set. The umask may have removed bits; the mode is
        // part of the contract (readers of other users must traverse it).
        fchmod(&fd, Mode::from_bits_truncate(0o755)).map_err(|errno| {
            Error::io("cannot set the output directory's mode", errno.into())
                .with_subject(dir.display())
        })?;
    } else if stat.st_mode & 0o022 != 0 {
        // Whoever may write the directory may rename `..data` or a link
        // over ours and serve their own values; the sticky bit does not
        // stop the directory's owner, nor anyone from planting a name
        // hushbox has not made yet.
        return Err(Error::config(format!(
            "the output directory is writable by its group or by others (mode {:04o}), so \
             another user could replace the secrets hushbox writes there; make it writable by \
             its owner only (`chmod go-w {}`), or mount the tmpfs with `mode=0755` \
             (Docker: `--tmpfs /run/secrets:mode=0755`, or `mode=0700,uid=UID` for the app's \
             user alone; Docker's default `--tmpfs` mode is 1777)",
            stat.st_mode & 0o7777,
            dir.display(),
        ))
        .with_subject(subject));
    }

    if !allow_disk {
        let stat = fstatfs(&fd).map_err(|errno| {
            Error::io(
                "cannot find the output directory's filesystem",
                errno.into(),
            )
            .with_subject(dir.display())
        })?;
        let magic = magic_of(&stat);
        if !is_memory_magic(magic) {
            return Err(Error::config(format!(
                "the output directory is on {}, not tmpfs or ramfs: secrets written there \
                 would reach the disk; mount a tmpfs there (for example \
                 `mount -t tmpfs -o mode=0755,size=1m tmpfs {dir}`; in a container, Docker's \
                 `--tmpfs {dir}:mode=0755` or Compose's `tmpfs:`) or set `allow_disk = true` \
                 in [output] / pass `--allow-disk`",
                filesystem_name(magic),
                dir = dir.display(),
            ))
            .with_subject(subject));
        }
    }
    Ok(fd)
}

fn symlink_refused(dir: &Path) -> Error {
    Error::config(
        "the output directory is a symlink; hushbox refuses to write through one \
         (point the output dir at the real directory)",
    )
    .with_subject(dir.display())
}

/// The parent of `dir` and the name of its last component, after the
/// lexical normalisation `Path::components` does (repeated and trailing
/// slashes, and `.` components, vanish). `link/` and `link/.` thus name
/// `link` itself, which is then checked like any other last component,
/// instead of being resolved through by the kernel.
fn split_last_component(dir: &Path) -> Result<(&Path, &OsStr), Error> {
    let mut components = dir.components();
    match components.next_back() {
        Some(Component::Normal(name)) => {
            let parent = components.as_path();
            let parent = if parent.as_os_str().is_empty() {
                Path::new(".")
            } else {
                parent
            };
            Ok((parent, name))
        }
        _ => Err(Error::config(
            "the output directory's path ends in `..`, `.` or `/`, so its last component \
             cannot be checked; name the directory itself (for example /run/secrets)",
        )
        .with_subject(dir.display())),
    }
}

/// Creates `name` under `parent` with mode 0755 (narrowed by the umask
/// until the caller's `fchmod`); returns whether it did. Parents are not
/// created: a mistyped path should fail here, not plant directories.
fn create_dir(parent: impl AsFd, name: &OsStr, dir: &Path) -> Result<bool, Error> {
    match mkdirat(parent, name, Mode::from_bits_truncate(0o755)) {
        Ok(()) => {
            tracing::debug!(dir = %dir.display(), "created output directory");
            Ok(true)
        }
        // Someone created it meanwhile: the checks after this still apply.
        Err(Errno::EEXIST) => Ok(false),
        // A container started with `--read-only` and no tmpfs there: the
        // image's own file system refuses, and a tmpfs is what is missing.
        Err(Errno::EROFS) => Err(Error::io(
            format!(
                "cannot create the output directory: the file system is read-only; mount a \
                 tmpfs there (Docker: `--tmpfs {path}:mode=0755`; Compose: `tmpfs: \
                 [\"{path}:mode=0755\"]`)",
                path = dir.display()
            ),
            Errno::EROFS.into(),
        )
        .with_subject(dir.display())),
        Err(errno) => Err(
            Error::io("cannot create the output directory", errno.into())
                .with_subject(dir.display()),
        ),
    }
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn memory_magics_are_recognised() {
        assert!(is_memory_magic(0x0102_1994));
        assert!(is_memory_magic(0x8584_58f6));
        assert!(!is_memory_magic(0xef53));
        assert!(!is_memory_magic(0));
    }

    #[test]
    fn filesystem_names_are_readable() {
        assert_eq!(filesystem_name(0xef53), "ext2/ext3/ext4");
        assert_eq!(filesystem_name(TMPFS_MAGIC), "tmpfs");
        assert_eq!(filesystem_name(0x1234), "filesystem type 0x00001234");
    }

    #[test]
    fn dev_shm_is_memory_and_proc_is_not() {
        // /dev/shm is tmpfs on every Linux this runs on; /proc never is.
        assert!(is_memory_filesystem(Path::new("/dev/shm")).unwrap());
        assert!(!is_memory_filesystem(Path::new("/proc")).unwrap());
        assert_eq!(
            is_memory_filesystem(Path::new("/nonexistent/hushbox"))
                .unwrap_err()
                .kind(),
            io::ErrorKind::NotFound
        );
    }

    #[test]
    fn missing_directory_is_created_0755_only_one_level() {
        let base = tempfile::tempdir_in("/dev/shm").unwrap();
        let dir = base.path().join("secrets");
        let fd = open_output_dir(&dir, None, false).unwrap();
        drop(fd);
        let metadata = fs::symlink_metadata(&dir).unwrap();
        assert!(metadata.is_dir());
        assert_eq!(metadata.permissions().mode() & 0o7777, 0o755);

        let deep = base.path().join("missing/parent/secrets");
        let error = open_output_dir(&deep, None, false).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::NotFound, "{error}");
        assert!(!base.path().join("missing").exists());
    }

    #[test]
    fn the_last_component_is_split_after_normalisation() {
        for (dir, parent, name) in [
            ("/run/secrets", "/run", "secrets"),
            ("/run/secrets/", "/run", "secrets"),
            ("/run/secrets/.", "/run", "secrets"),
            ("/run//secrets//./", "/run", "secrets"),
            ("secrets", ".", "secrets"),
            ("./secrets/", ".", "secrets"),
        ] {
            let (p, n) = split_last_component(Path::new(dir)).unwrap();
            assert_eq!((p, n), (Path::new(parent), OsStr::new(name)), "{dir}");
        }
        for dir in ["/", ".", "..", "/run/..", "/run/secrets/.."] {
            let error = split_last_component(Path::new(dir)).unwrap_err();
            assert_eq!(error.kind(), ErrorKind::Config, "{dir}");
        }
    }

    #[test]
    fn a_file_is_not_an_output_directory() {
        let base = tempfile::tempdir_in("/dev/shm").unwrap();
        let file = base.path().join("file");
        fs::write(&file, b"x").unwrap();
        let error = open_output_dir(&file, None, false).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Config);
        assert!(error.message().contains("not a directory"), "{error}");
    }
}
