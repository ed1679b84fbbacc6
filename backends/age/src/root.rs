//! [`Root`]: the store's directory, opened through the trust check, and every
//! file below it reached from that descriptor.
//!
//! A path below the root is walked one component at a time with
//! `openat(O_DIRECTORY|O_NOFOLLOW)` (and `mkdirat` where a write needs a
//! directory), files are opened, created, renamed and unlinked with `*at`
//! calls relative to their directory's descriptor. A symlink inside the store
//! is never followed, so none leads a read or a write out of it (`store set
//! lnk/x` with `lnk` a symlink elsewhere is refused). Each directory walked
//! through is held to the same rule as the root: owned by the caller or root,
//! writable by nobody else.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use hushbox_core::{ErrorKind, Trust};
use nix::dir::{Dir, Type};
use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, openat, renameat};
use nix::sys::stat::{Mode, SFlag, fstatat, mkdirat};
use nix::unistd::{UnlinkatFlags, fsync, unlinkat};

use crate::error::AgeError;

/// What a directory entry is, without following symlinks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Directory,
    File,
    Other,
}

/// A directory below the root: the root's own descriptor, borrowed, or one
/// opened on the way down.
pub(crate) enum DirFd<'r> {
    Root(BorrowedFd<'r>),
    Owned(OwnedFd),
}

impl AsFd for DirFd<'_> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            DirFd::Root(fd) => fd.as_fd(),
            DirFd::Owned(fd) => fd.as_fd(),
        }
    }
}

/// The store's root directory, checked and opened once per operation.
pub(crate) struct Root {
    path: PathBuf,
    /// `None` when the store does not exist: every path below reads as
    /// missing, as it would by path.
    fd: Option<OwnedFd>,
    trust: Trust,
}

impl Root {
    /// Opens the store at `path` if it exists, after `trust` accepted it and
    /// every directory above it.
    pub(crate) fn open(path: &Path, trust: &Trust) -> Result<Self, AgeError> {
        let fd = match trust.open_dir(path, "the age store") {
            Ok(fd) => Some(fd),
            Err(error) if error.kind() == ErrorKind::NotFound => None,
            Err(error) => return Err(AgeError::Untrusted(error)),
        };
        Ok(Self {
            path: path.to_owned(),
            fd,
            trust: trust.clone(),
        })
    }

    /// Creates the store at `path` (and missing parents, mode 0700) when it
    /// is missing, then opens it as [`Root::open`] does.
    pub(crate) fn create(path: &Path, trust: &Trust) -> Result<Self, AgeError> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(path)
            .map_err(|source| {
                AgeError::io(
                    format!("cannot create directory {}", path.display()),
                    source,
                )
            })?;
        let root = Self::open(path, trust)?;
        if root.fd.is_none() {
            return Err(AgeError::io(
                format!("cannot open {}", path.display()),
                io::Error::from(io::ErrorKind::NotFound),
            ));
        }
        Ok(root)
    }

    /// The store's path, as configured (for messages and for joining).
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the store directory exists.
    pub(crate) fn exists(&self) -> bool {
        self.fd.is_some()
    }

    /// The root's descriptor, as a file (for `flock` and `fsync`).
    pub(crate) fn file(&self) -> io::Result<File> {
        Ok(File::from(self.root_fd()?))
    }

    fn root_fd(&self) -> io::Result<OwnedFd> {
        match &self.fd {
            Some(fd) => fd.try_clone(),
            None => Err(io::Error::from(io::ErrorKind::NotFound)),
        }
    }

    /// The names of `full` below the root. A path outside the store, or one
    /// with `.`/`..` components, is a bug of the caller: refused.
    fn names<'p>(&self, full: &'p Path) -> io::Result<Vec<&'p OsStr>> {
        let relative = full
            .strip_prefix(&self.path)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a path outside the store"))?;
        relative
            .components()
            .map(|component| match component {
                Component::Normal(name) => Ok(name),
                _ => Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "a path with `.` or `..` below the store",
                )),
            })
            .collect()
    }

    /// Opens the directory `full` below the root, creating missing ones
    /// (mode 0700) when `create`. Each directory is opened without following
    /// a symlink and checked as the root is.
    pub(crate) fn dir(&self, full: &Path, create: bool) -> Result<DirFd<'_>, AgeError> {
        let names = self
            .names(full)
            .map_err(|error| self.io_error(full, error))?;
        // The root's own descriptor is borrowed, not duplicated: a read of
        // a thousand secrets is a thousand walks.
        let mut fd = match &self.fd {
            Some(root) => DirFd::Root(root.as_fd()),
            None => return Err(self.io_error(full, io::Error::from(io::ErrorKind::NotFound))),
        };
        let mut here = self.path.clone();
        for name in names {
            here.push(name);
            let opened = match open_dir_nofollow(&fd, name) {
                Err(Errno::ENOENT) if create => {
                    match mkdirat(&fd, name, Mode::from_bits_truncate(0o700)) {
                        Ok(()) | Err(Errno::EEXIST) => open_dir_nofollow(&fd, name),
                        Err(errno) => Err(errno),
                    }
                }
                other => other,
            };
            fd = match opened {
                Ok(next) => DirFd::Owned(next),
                Err(errno @ (Errno::ELOOP | Errno::ENOTDIR)) => {
                    return Err(self.not_followed(&fd, name, &here, errno));
                }
                Err(errno) => return Err(self.io_error(&here, errno.into())),
            };
            self.trust
                .check_opened(&fd, &here, "a directory of the age store")
                .map_err(AgeError::Untrusted)?;
        }
        Ok(fd)
    }

    /// A symlink where a directory was expected is refused by name; a file
    /// there keeps its OS error (the path cannot exist).
    fn not_followed(&self, parent: impl AsFd, name: &OsStr, here: &Path, errno: Errno) -> AgeError {
        match fstatat(parent, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(stat)
                if SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT == SFlag::S_IFLNK =>
            {
                AgeError::SymlinkInStore {
                    path: here.to_owned(),
                }
            }
            _ => self.io_error(here, errno.into()),
        }
    }

    fn io_error(&self, path: &Path, source: io::Error) -> AgeError {
        AgeError::io(format!("cannot open {}", path.display()), source)
    }

    /// The directory of `full` (opened) and its last name.
    fn parent<'p>(&self, full: &'p Path, create: bool) -> Result<(DirFd<'_>, &'p OsStr), AgeError> {
        let name = full
            .file_name()
            .ok_or_else(|| self.io_error(full, io::Error::from(io::ErrorKind::InvalidInput)))?;
        let dir = full.parent().unwrap_or(&self.path);
        Ok((self.dir(dir, create)?, name))
    }

    /// Opens the file `full` for reading, without following a symlink.
    /// `Ok(None)` when it (or a directory on its way) is missing.
    pub(crate) fn open_file(&self, full: &Path) -> Result<Option<File>, AgeError> {
        let (dir, name) = match self.parent(full, false) {
            Ok(found) => found,
            Err(AgeError::Io { source, .. }) if is_missing(&source) => return Ok(None),
            Err(error) => return Err(error),
        };
        match openat(
            &dir,
            name,
            OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NOCTTY,
            Mode::empty(),
        ) {
            Ok(fd) => Ok(Some(File::from(fd))),
            Err(Errno::ENOENT | Errno::ENOTDIR) => Ok(None),
            Err(Errno::ELOOP) => Err(AgeError::SymlinkInStore {
                path: full.to_owned(),
            }),
            Err(errno) => Err(AgeError::io(
                format!("cannot read {}", full.display()),
                errno.into(),
            )),
        }
    }

    /// Opens `full` and checks it with the trust rule (a file that decides
    /// where secrets go, such as `.age-recipients`).
    pub(crate) fn open_trusted(&self, full: &Path, what: &str) -> Result<Option<File>, AgeError> {
        let Some(file) = self.open_file(full)? else {
            return Ok(None);
        };
        self.trust
            .check_opened(&file, full, what)
            .map_err(AgeError::Untrusted)?;
        Ok(Some(file))
    }

    /// What `full` is, without following a symlink; `None` when missing.
    pub(crate) fn kind(&self, full: &Path) -> Option<Kind> {
        let (dir, name) = self.parent(full, false).ok()?;
        let stat = fstatat(&dir, name, AtFlags::AT_SYMLINK_NOFOLLOW).ok()?;
        Some(kind_of(stat.st_mode))
    }

    /// The entries of the directory `full`, each with its kind (symlinks
    /// are [`Kind::Other`]).
    pub(crate) fn entries(&self, full: &Path) -> Result<Vec<(String, Kind)>, AgeError> {
        let fd = self.dir(full, false)?;
        let list = || -> nix::Result<Vec<(String, Kind)>> {
            let mut dir = Dir::openat(
                &fd,
                ".",
                OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
                Mode::empty(),
            )?;
            let mut entries = Vec::new();
            for entry in dir.iter() {
                let entry = entry?;
                let name = OsStr::from_bytes(entry.file_name().to_bytes());
                if name == "." || name == ".." {
                    continue;
                }
                // A name that is not UTF-8 cannot be written in a reference.
                let Some(text) = name.to_str() else {
                    continue;
                };
                let kind = match entry.file_type() {
                    Some(Type::Directory) => Kind::Directory,
                    Some(Type::File) => Kind::File,
                    Some(_) => Kind::Other,
                    None => kind_of(fstatat(&fd, name, AtFlags::AT_SYMLINK_NOFOLLOW)?.st_mode),
                };
                entries.push((text.to_owned(), kind));
            }
            Ok(entries)
        };
        list()
            .map_err(|errno| AgeError::io(format!("cannot list {}", full.display()), errno.into()))
    }

    /// Replaces `full` with what `write` puts in a file, durably and
    /// atomically: a temporary file in the same directory (mode 0600, named
    /// with a leading `.` so listings skip it), fsync, rename over `full`,
    /// fsync of the directory. The directory must exist.
    pub(crate) fn write_atomically(
        &self,
        full: &Path,
        write: impl FnOnce(&mut File) -> io::Result<()>,
    ) -> Result<(), AgeError> {
        let (dir, name) = self.parent(full, false)?;
        let fail =
            |source: io::Error| AgeError::io(format!("cannot write {}", full.display()), source);
        let (temp_name, mut temp) = create_temp(&dir).map_err(fail)?;
        let written = write(&mut temp)
            .and_then(|()| temp.sync_all())
            .and_then(|()| {
                renameat(&dir, temp_name.as_os_str(), &dir, name).map_err(io::Error::from)
            })
            .and_then(|()| fsync(&dir).map_err(io::Error::from));
        if let Err(error) = written {
            let _ = unlinkat(&dir, temp_name.as_os_str(), UnlinkatFlags::NoRemoveDir);
            return Err(fail(error));
        }
        Ok(())
    }

    /// Creates `full` exclusively with `mode` and writes `bytes`, durably,
    /// creating its missing directories. An existing entry is an
    /// [`AgeError::Io`] of kind [`io::ErrorKind::AlreadyExists`].
    pub(crate) fn create_new(&self, full: &Path, bytes: &[u8], mode: u32) -> Result<(), AgeError> {
        let (dir, name) = self.parent(full, true)?;
        let fail =
            |source: io::Error| AgeError::io(format!("cannot create {}", full.display()), source);
        let fd = openat(
            &dir,
            name,
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(mode),
        )
        .map_err(|errno| fail(errno.into()))?;
        let mut file = File::from(fd);
        let written = file
            .write_all(bytes)
            .and_then(|()| file.sync_all())
            .and_then(|()| fsync(&dir).map_err(io::Error::from));
        if let Err(error) = written {
            let _ = unlinkat(&dir, name, UnlinkatFlags::NoRemoveDir);
            return Err(fail(error));
        }
        Ok(())
    }

    /// Unlinks the file `full`.
    pub(crate) fn remove_file(&self, full: &Path) -> Result<(), AgeError> {
        let (dir, name) = self.parent(full, false)?;
        unlinkat(&dir, name, UnlinkatFlags::NoRemoveDir)
            .and_then(|()| fsync(&dir))
            .map_err(|errno| {
                AgeError::io(format!("cannot remove {}", full.display()), errno.into())
            })
    }

    /// Removes the directory `full` if it is empty; whether it did.
    pub(crate) fn remove_empty_dir(&self, full: &Path) -> bool {
        let Ok((dir, name)) = self.parent(full, false) else {
            return false;
        };
        let removed = unlinkat(&dir, name, UnlinkatFlags::RemoveDir).is_ok();
        if removed {
            // Best effort: the secret is gone either way.
            let _ = fsync(&dir);
        }
        removed
    }

    /// Renames `from` to `to` (both files below the root), replacing `to`.
    /// The directory of `to` is created when missing.
    pub(crate) fn rename(&self, from: &Path, to: &Path) -> Result<(), AgeError> {
        let (from_dir, from_name) = self.parent(from, false)?;
        let (to_dir, to_name) = self.parent(to, true)?;
        renameat(&from_dir, from_name, &to_dir, to_name)
            .and_then(|()| fsync(&to_dir))
            .and_then(|()| fsync(&from_dir))
            .map_err(|errno| {
                AgeError::io(
                    format!("cannot rename {} to {}", from.display(), to.display()),
                    errno.into(),
                )
            })
    }
}

/// Whether an OS error means "no such path".
/// Makes the entries of a directory named by path (a new or renamed file)
/// durable, for files outside a store (an identity file).
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

pub(crate) fn is_missing(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
    )
}

fn kind_of(mode: u32) -> Kind {
    let format = SFlag::from_bits_truncate(mode) & SFlag::S_IFMT;
    if format == SFlag::S_IFDIR {
        Kind::Directory
    } else if format == SFlag::S_IFREG {
        Kind::File
    } else {
        Kind::Other
    }
}

fn open_dir_nofollow(dir: impl AsFd, name: &OsStr) -> nix::Result<OwnedFd> {
    openat(
        dir,
        name,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
}

/// A new temporary file in `dir`, mode 0600, with a random dot-name.
fn create_temp(dir: &impl AsFd) -> io::Result<(OsString, File)> {
    for _ in 0..16 {
        let name = OsString::from(format!(".hushbox-{:016x}.tmp", rand::random::<u64>()));
        match openat(
            dir,
            name.as_os_str(),
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o600),
        ) {
            Ok(fd) => return Ok((name, File::from(fd))),
            Err(Errno::EEXIST) => continue,
            Err(errno) => return Err(errno.into()),
        }
    }
    Err(io::Error::from(io::ErrorKind::AlreadyExists))
}

use std::os::unix::fs::DirBuilderExt;
