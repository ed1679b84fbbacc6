//! Directory operations relative to a directory descriptor.
//!
//! Everything the writer removes is reached with `*at` calls and
//! `O_NOFOLLOW`, so a symlink planted inside a generation or run directory
//! is unlinked, never followed: removal cannot reach outside the tree. A
//! directory whose mode keeps its owner out (a child's `chmod 0555` or
//! `chmod 0` in a run directory) is opened up through a descriptor before
//! its entries are removed.

use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

use nix::dir::{Dir, Type};
use nix::errno::Errno;
use nix::fcntl::{AT_FDCWD, AtFlags, OFlag, openat};
use nix::sys::stat::{FchmodatFlags, Mode, SFlag, fchmod, fchmodat, fstat, fstatat};
use nix::unistd::{UnlinkatFlags, unlinkat};

/// How deep [`remove_tree_at`] descends. The writer's own trees are one level
/// deep; a limit keeps a pathological tree (made by a child in a run dir)
/// from exhausting the stack or the descriptor table.
const MAX_DEPTH: usize = 64;

/// What a directory entry is, without following symlinks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Directory,
    Symlink,
    File,
    Other,
}

/// Opens `name` under `parent` as a directory, refusing to follow a symlink.
pub(crate) fn open_dir_at(parent: impl AsFd, name: &OsStr) -> nix::Result<OwnedFd> {
    openat(
        parent,
        name,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
}

/// The entries of the directory `fd`, without `.` and `..`, each with its
/// kind. Collected before the caller acts, because unlinking while `readdir`
/// walks a directory may skip entries.
pub(crate) fn list(fd: impl AsFd) -> nix::Result<Vec<(OsString, Kind)>> {
    let fd = fd.as_fd();
    let mut dir = Dir::openat(
        fd,
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
        let kind = match entry.file_type() {
            Some(Type::Directory) => Kind::Directory,
            Some(Type::Symlink) => Kind::Symlink,
            Some(Type::File) => Kind::File,
            Some(_) => Kind::Other,
            // Some filesystems leave d_type unknown: ask lstat.
            None => kind_at(fd, name)?.unwrap_or(Kind::Other),
        };
        entries.push((name.to_owned(), kind));
    }
    Ok(entries)
}

/// The kind of `name` under `parent` (lstat), or `None` when it is missing.
pub(crate) fn kind_at(parent: impl AsFd, name: &OsStr) -> nix::Result<Option<Kind>> {
    match fstatat(parent, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(stat) => {
            let format = SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT;
            Ok(Some(if format == SFlag::S_IFDIR {
                Kind::Directory
            } else if format == SFlag::S_IFLNK {
                Kind::Symlink
            } else if format == SFlag::S_IFREG {
                Kind::File
            } else {
                Kind::Other
            }))
        }
        Err(Errno::ENOENT) => Ok(None),
        Err(errno) => Err(errno),
    }
}

/// Unlinks a non-directory entry; a missing one is not an error.
pub(crate) fn unlink_if_present(parent: impl AsFd, name: &OsStr) -> nix::Result<()> {
    match unlinkat(parent, name, UnlinkatFlags::NoRemoveDir) {
        Ok(()) | Err(Errno::ENOENT) => Ok(()),
        Err(errno) => Err(errno),
    }
}

/// Removes the directory `name` under `parent` and everything in it,
/// without following symlinks. A missing directory is not an error.
pub(crate) fn remove_tree_at(parent: impl AsFd, name: &OsStr) -> nix::Result<()> {
    remove_tree_depth(parent.as_fd(), name, 0)
}

fn remove_tree_depth(parent: BorrowedFd<'_>, name: &OsStr, depth: usize) -> nix::Result<()> {
    if depth > MAX_DEPTH {
        return Err(Errno::ELOOP);
    }
    let fd = match open_dir_at(parent, name) {
        Ok(fd) => fd,
        Err(Errno::ENOENT) => return Ok(()),
        // Unreadable (mode 0 or 0300): made readable through an O_PATH
        // descriptor, which needs no permission on the directory itself.
        Err(Errno::EACCES) => {
            open_up_unreadable(parent, name)?;
            open_dir_at(parent, name)?
        }
        Err(errno) => return Err(errno),
    };
    // Unlinking an entry needs write and search permission on the
    // directory; 0555 would leave everything inside it. Errors are left to
    // the unlinks below, which report them.
    if let Ok(stat) = fstat(&fd)
        && stat.st_mode & 0o700 != 0o700
    {
        let _ = fchmod(&fd, Mode::S_IRWXU);
    }
    for (entry, kind) in list(&fd)? {
        match kind {
            Kind::Directory => remove_tree_depth(fd.as_fd(), &entry, depth + 1)?,
            _ => unlink_if_present(&fd, &entry)?,
        }
    }
    drop(fd);
    match unlinkat(parent, name, UnlinkatFlags::RemoveDir) {
        Ok(()) | Err(Errno::ENOENT) => Ok(()),
        Err(errno) => Err(errno),
    }
}

/// Gives the directory `name` under `parent` mode 0700 without opening it
/// for reading: an `O_PATH|O_NOFOLLOW` descriptor pins the directory itself
/// (a symlink swapped in is refused), and the mode is set through its
/// `/proc/self/fd` entry, which names exactly that inode (`fchmod` refuses
/// O_PATH descriptors).
fn open_up_unreadable(parent: BorrowedFd<'_>, name: &OsStr) -> nix::Result<()> {
    let pinned = openat(
        parent,
        name,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    let path = format!("/proc/self/fd/{}", pinned.as_raw_fd());
    fchmodat(
        AT_FDCWD,
        path.as_str(),
        Mode::S_IRWXU,
        FchmodatFlags::FollowSymlink,
    )
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::os::unix::fs::symlink;

    use nix::fcntl::AT_FDCWD;

    use super::*;

    #[test]
    fn remove_tree_unlinks_symlinks_without_following_them() {
        let base = tempfile::tempdir_in("/dev/shm").unwrap();
        let outside = base.path().join("outside");
        fs::create_dir(&outside).unwrap();
        fs::write(outside.join("keep"), b"k").unwrap();

        let tree = base.path().join("tree");
        fs::create_dir_all(tree.join("sub/deeper")).unwrap();
        fs::write(tree.join("file"), b"f").unwrap();
        fs::write(tree.join("sub/deeper/file"), b"f").unwrap();
        symlink(&outside, tree.join("link-to-dir")).unwrap();
        symlink(outside.join("keep"), tree.join("sub/link-to-file")).unwrap();

        let parent = open_dir_at(AT_FDCWD, base.path().as_os_str()).unwrap();
        remove_tree_at(&parent, OsStr::new("tree")).unwrap();
        assert!(!tree.exists());
        assert_eq!(fs::read(outside.join("keep")).unwrap(), b"k");

        // A second removal finds nothing and is not an error.
        remove_tree_at(&parent, OsStr::new("tree")).unwrap();
    }

    #[test]
    fn remove_tree_refuses_a_symlink_as_the_root() {
        let base = tempfile::tempdir_in("/dev/shm").unwrap();
        fs::create_dir(base.path().join("real")).unwrap();
        fs::write(base.path().join("real/file"), b"f").unwrap();
        symlink("real", base.path().join("link")).unwrap();
        let parent = open_dir_at(AT_FDCWD, base.path().as_os_str()).unwrap();
        // Linux answers O_DIRECTORY|O_NOFOLLOW on a symlink with ENOTDIR.
        assert!(matches!(
            remove_tree_at(&parent, OsStr::new("link")),
            Err(Errno::ENOTDIR | Errno::ELOOP)
        ));
        assert!(base.path().join("real/file").exists());
    }

    #[test]
    fn list_reports_kinds() {
        let base = tempfile::tempdir_in("/dev/shm").unwrap();
        fs::create_dir(base.path().join("d")).unwrap();
        fs::write(base.path().join("f"), b"").unwrap();
        symlink("d", base.path().join("l")).unwrap();
        let fd = open_dir_at(AT_FDCWD, base.path().as_os_str()).unwrap();
        let mut entries = list(&fd).unwrap();
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            entries,
            [
                (OsString::from("d"), Kind::Directory),
                (OsString::from("f"), Kind::File),
                (OsString::from("l"), Kind::Symlink),
            ]
        );
        assert_eq!(kind_at(&fd, OsStr::new("missing")).unwrap(), None);
    }
}
