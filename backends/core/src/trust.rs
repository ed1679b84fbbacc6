//! Whether a file may decide what hushbox does: the one ownership check for
//! the manifest, the age store and its `.age-recipients`, and the files that
//! `file://` references read.
//!
//! The model is git's `safe.directory`. A file is trusted when it is owned
//! by the caller (effective uid) or root and is not writable by its group or
//! others, and when no directory on its path lets anyone else replace it: each
//! directory from `/` down is owned by the caller or root and is not writable
//! by group or others, unless it is sticky (`/tmp`), where only an entry's
//! owner may replace it. A user who trusts other owners says so in
//! [`ENV_SAFE_DIRECTORIES`], an environment variable (not a file, which an
//! attacker might write): listed directories, and everything below them, may
//! be owned by anyone. Writability is never waived.
//!
//! The checks are made on descriptors: the walk opens each directory from `/`
//! with `openat(O_DIRECTORY|O_NOFOLLOW)` and `fstat`s the descriptor it then
//! walks on, and the file returned is the one that was checked. Symlinks are
//! followed by the walk itself (kubelet and Compose secret mounts are
//! symlinks), and only when the link could not have been planted: it sits in
//! a directory nobody else can write, or is owned by the caller or root (the
//! kernel's `protected_symlinks` rule for sticky directories).

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, OFlag, fcntl, openat, readlinkat};
use nix::sys::stat::{FileStat, Mode, SFlag, fstat};

use crate::{Environment, Error, ErrorKind, Result};

/// The environment variable listing directories whose files and
/// sub-directories hushbox trusts whoever owns them: absolute paths separated
/// by `:`, or `*` for every directory.
pub const ENV_SAFE_DIRECTORIES: &str = "HUSHBOX_SAFE_DIRECTORIES";

/// How many symlinks one path may pass through (Linux's own limit).
const MAX_SYMLINKS: usize = 40;

/// Who hushbox trusts to decide where secrets come from and go to.
#[derive(Clone, PartialEq, Eq)]
pub struct Trust {
    euid: u32,
    safe: Safe,
}

#[derive(Clone, PartialEq, Eq)]
enum Safe {
    Listed(Vec<PathBuf>),
    Everything,
}

impl fmt::Debug for Trust {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut debug = f.debug_struct("Trust");
        debug.field("euid", &self.euid);
        match &self.safe {
            Safe::Listed(dirs) => debug.field("safe_directories", dirs),
            Safe::Everything => debug.field("safe_directories", &"*"),
        };
        debug.finish_non_exhaustive()
    }
}

impl Default for Trust {
    /// The caller and root, nobody else.
    fn default() -> Self {
        Self::for_user(nix::unistd::geteuid().as_raw())
    }
}

impl Trust {
    /// Trusts `euid` and root only (tests use other uids than their own).
    pub fn for_user(euid: u32) -> Self {
        Self {
            euid,
            safe: Safe::Listed(Vec::new()),
        }
    }

    /// The caller and root, plus the directories listed in
    /// [`ENV_SAFE_DIRECTORIES`].
    ///
    /// # Errors
    /// [`ErrorKind::Config`] when an entry is not an absolute path or `*`:
    /// a relative entry would mean a different directory in every place
    /// hushbox runs.
    pub fn from_env(env: &Environment) -> Result<Self> {
        let mut trust = Self::default();
        let Some(value) = env.get_os(ENV_SAFE_DIRECTORIES) else {
            return Ok(trust);
        };
        let mut dirs = Vec::new();
        for entry in value.as_bytes().split(|byte| *byte == b':') {
            if entry.is_empty() {
                continue;
            }
            if entry == b"*" {
                trust.safe = Safe::Everything;
                return Ok(trust);
            }
            let dir = Path::new(OsStr::from_bytes(entry));
            if !dir.is_absolute() {
                return Err(Error::config(format!(
                    "`{}` is not an absolute path; list absolute directories separated by `:`, or `*`",
                    dir.display()
                ))
                .with_subject(ENV_SAFE_DIRECTORIES));
            }
            dirs.push(lexical(dir));
        }
        trust.safe = Safe::Listed(dirs);
        Ok(trust)
    }

    /// Trusts `dir` and what is below it whoever owns them, as if it were
    /// listed in [`ENV_SAFE_DIRECTORIES`].
    pub fn with_safe_directory(mut self, dir: impl Into<PathBuf>) -> Self {
        if let Safe::Listed(dirs) = &mut self.safe {
            dirs.push(lexical(&dir.into()));
        }
        self
    }

    /// Opens `path` for reading once it and every directory above it pass
    /// the check. `what` names the file in errors ("the manifest").
    ///
    /// # Errors
    /// [`ErrorKind::Config`] naming the file, the reason and the fix when
    /// it is not trusted; the OS error's kind ([`ErrorKind::NotFound`], …)
    /// when it cannot be opened.
    pub fn open_file(&self, path: &Path, what: &str) -> Result<File> {
        let (fd, _) = self.walk(path, what, Target::File)?;
        Ok(File::from(fd))
    }

    /// Opens the directory `path` once it and every directory above it pass
    /// the check. The directory itself must not be writable by group or
    /// others even when sticky: what it holds decides secrets.
    ///
    /// # Errors
    /// As [`Trust::open_file`].
    pub fn open_dir(&self, path: &Path, what: &str) -> Result<OwnedFd> {
        let (fd, _) = self.walk(path, what, Target::Directory)?;
        Ok(fd)
    }

    /// Checks a file already opened below a trusted directory (by
    /// `openat` from a descriptor [`Trust::open_dir`] returned): its owner
    /// and mode, by `fstat` of the descriptor that will be read.
    ///
    /// # Errors
    /// As [`Trust::open_file`].
    pub fn check_opened(&self, file: &impl AsFd, path: &Path, what: &str) -> Result<()> {
        let stat = fstat(file.as_fd()).map_err(|errno| {
            Error::io(
                format!("cannot inspect {what} {}", path.display()),
                errno.into(),
            )
        })?;
        self.check_entry(&stat, path, path, what, true)
    }

    fn owner_trusted(&self, uid: u32, path: &Path) -> bool {
        uid == self.euid
            || uid == 0
            || match &self.safe {
                Safe::Everything => true,
                Safe::Listed(dirs) => dirs.iter().any(|dir| path.starts_with(dir)),
            }
    }

    /// The refusal. It has no subject: the caller names what the file is
    /// for (a reference, a store); the message names the file.
    fn refuse(&self, subject: &Path, what: &str, reason: String, fix: String) -> Error {
        Error::config(format!(
            "refusing to use {what} {}: {reason}; {fix}",
            subject.display()
        ))
    }

    /// Checks a file or directory at `path` (`subject` is what the caller
    /// asked for). `last` is true for the file or directory asked for,
    /// whose own mode must not let others write, sticky or not.
    fn check_entry(
        &self,
        stat: &FileStat,
        path: &Path,
        subject: &Path,
        what: &str,
        last: bool,
    ) -> Result<()> {
        let mode = stat.st_mode & 0o7777;
        let format = SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT;
        if !self.owner_trusted(stat.st_uid, path) {
            return Err(self.refuse(
                subject,
                what,
                format!(
                    "{} owned by uid {} (neither you, uid {}, nor root), so that user decides what it says",
                    name(path, subject),
                    stat.st_uid,
                    self.euid
                ),
                format!(
                    "if you trust that user, set {ENV_SAFE_DIRECTORIES}={} (or list a directory above it; `*` trusts every owner)",
                    path.display()
                ),
            ));
        }
        // A device's mode says who may write to the device, not who decides
        // what reading it gives (/dev/null is 0666 and root's).
        let is_device = format == SFlag::S_IFCHR || format == SFlag::S_IFBLK;
        let writable = mode & 0o022 != 0;
        let sticky = mode & 0o1000 != 0;
        let is_dir = format == SFlag::S_IFDIR;
        if writable && !is_device && (last || !is_dir || !sticky) {
            let why = if is_dir && !last {
                format!(
                    "{} is writable by others (mode {mode:04o}) without the sticky bit, so anyone there can replace {}",
                    path.display(),
                    subject.display()
                )
            } else {
                format!(
                    "{} writable by its group or others (mode {mode:04o})",
                    name(path, subject)
                )
            };
            return Err(self.refuse(
                subject,
                what,
                why,
                format!(
                    "run `chmod go-w {}` if nobody else should change it",
                    path.display()
                ),
            ));
        }
        Ok(())
    }

    /// Walks `path` from `/`, checking every directory and the target, and
    /// following symlinks only where they could not have been planted.
    fn walk(&self, path: &Path, what: &str, target: Target) -> Result<(OwnedFd, PathBuf)> {
        let io_error = |context: &str, at: &Path, errno: Errno| {
            let message = if at == path {
                format!("cannot {context} {what} {}", path.display())
            } else {
                format!(
                    "cannot {context} {what} {}: {context} {} failed",
                    path.display(),
                    at.display()
                )
            };
            // A path through a file names nothing, as a missing one.
            match errno {
                Errno::ENOTDIR => {
                    let os = std::io::Error::from(errno);
                    Error::not_found(format!("{message}: {os}")).with_source(os)
                }
                _ => Error::io(message, errno.into()),
            }
        };
        let absolute = if path.is_absolute() {
            path.to_owned()
        } else {
            std::env::current_dir()
                .map_err(|error| Error::io("cannot read the current directory", error))?
                .join(path)
        };
        let root = Path::new("/");
        let root_fd = open_dir_nofollow(nix::fcntl::AT_FDCWD, root)
            .map_err(|errno| io_error("open", root, errno))?;
        let root_stat = fstat(&root_fd).map_err(|errno| io_error("inspect", root, errno))?;
        let root_is_target = components(&absolute).is_empty();
        self.check_entry(&root_stat, root, path, what, root_is_target)?;
        // The directories walked so far: descriptor, physical path, whether
        // others may write to it (then a symlink in it must be trusted).
        let mut stack: Vec<(OwnedFd, PathBuf, bool)> =
            vec![(root_fd, PathBuf::from("/"), others_may_write(&root_stat))];
        let mut pending = components(&absolute);
        pending.reverse();
        let mut links = 0;
        while let Some(name) = pending.pop() {
            if name == ".." {
                if stack.len() > 1 {
                    stack.pop();
                }
                continue;
            }
            let last = pending.is_empty();
            let (dir, dir_path, dir_shared) = stack.last().expect("the root stays on the stack");
            let here = dir_path.join(&name);
            let want_dir = !last || target == Target::Directory;
            let opened = if want_dir {
                open_dir_nofollow(dir, name.as_os_str())
            } else {
                // O_NONBLOCK: a FIFO planted where a file was expected must
                // not hang hushbox before it is judged; blocking reads are
                // restored once it passes.
                openat(
                    dir,
                    name.as_os_str(),
                    OFlag::O_RDONLY
                        | OFlag::O_NOFOLLOW
                        | OFlag::O_CLOEXEC
                        | OFlag::O_NOCTTY
                        | OFlag::O_NONBLOCK,
                    Mode::empty(),
                )
            };
            let fd = match opened {
                Ok(fd) => fd,
                // A symlink, refused by O_NOFOLLOW (O_DIRECTORY makes some
                // kernels say ENOTDIR): follow it by hand, if it is trusted.
                Err(Errno::ELOOP | Errno::ENOTDIR) => {
                    let link = openat(
                        dir,
                        name.as_os_str(),
                        OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                        Mode::empty(),
                    )
                    .map_err(|errno| io_error("open", &here, errno))?;
                    let stat = fstat(&link).map_err(|errno| io_error("inspect", &here, errno))?;
                    let format = SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT;
                    if format != SFlag::S_IFLNK {
                        return Err(io_error("open", &here, Errno::ENOTDIR));
                    }
                    links += 1;
                    if links > MAX_SYMLINKS {
                        return Err(io_error("resolve", path, Errno::ELOOP));
                    }
                    if *dir_shared && !self.owner_trusted(stat.st_uid, &here) {
                        return Err(self.refuse(
                            path,
                            what,
                            format!(
                                "the symlink {} is owned by uid {} in a directory others can write to, so that user decides where it leads",
                                here.display(),
                                stat.st_uid
                            ),
                            format!(
                                "name the file it points to instead, or set {ENV_SAFE_DIRECTORIES}={} if you trust that user",
                                here.display()
                            ),
                        ));
                    }
                    let target_path = readlinkat(&link, "")
                        .map_err(|errno| io_error("read the symlink", &here, errno))?;
                    let target_path = PathBuf::from(target_path);
                    if !target_path.is_absolute() && last && is_procfs(dir) {
                        // A /proc/<pid>/fd link to a pipe or a socket
                        // (`file:///dev/stdin` fed by a pipe) names no path:
                        // the kernel opens the object the process already
                        // holds, which is then checked as any file.
                        let fd = openat(
                            dir,
                            name.as_os_str(),
                            OFlag::O_RDONLY | OFlag::O_CLOEXEC | OFlag::O_NOCTTY,
                            Mode::empty(),
                        )
                        .map_err(|errno| io_error("open", &here, errno))?;
                        let stat = fstat(&fd).map_err(|errno| io_error("inspect", &here, errno))?;
                        self.check_entry(&stat, &here, path, what, true)?;
                        return Ok((fd, here));
                    }
                    if target_path.is_absolute() {
                        stack.truncate(1);
                    }
                    let mut more = components(&target_path);
                    more.reverse();
                    pending.extend(more);
                    continue;
                }
                Err(errno) => return Err(io_error("open", &here, errno)),
            };
            let stat = fstat(&fd).map_err(|errno| io_error("inspect", &here, errno))?;
            self.check_entry(&stat, &here, path, what, last)?;
            let format = SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT;
            if last {
                if target == Target::File && format == SFlag::S_IFDIR {
                    return Err(Error::new(
                        ErrorKind::Config,
                        format!("{what} {} is a directory, not a file", path.display()),
                    ));
                }
                if !want_dir {
                    fcntl(&fd, FcntlArg::F_SETFL(OFlag::empty()))
                        .map_err(|errno| io_error("open", &here, errno))?;
                }
                return Ok((fd, here));
            }
            let shared = others_may_write(&stat);
            stack.push((fd, here, shared));
        }
        // The path ended in `/` or `..`: the target is the directory reached.
        let (fd, here, _) = stack.pop().expect("the root stays on the stack");
        if target == Target::File {
            return Err(Error::new(
                ErrorKind::Config,
                format!("{what} {} is a directory, not a file", path.display()),
            ));
        }
        let stat = fstat(&fd).map_err(|errno| io_error("inspect", &here, errno))?;
        self.check_entry(&stat, &here, path, what, true)?;
        Ok((fd, here))
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Target {
    File,
    Directory,
}

/// Whether `dir` is on procfs, whose fd links are not paths.
fn is_procfs(dir: impl AsFd) -> bool {
    nix::sys::statfs::fstatfs(dir)
        .is_ok_and(|fs| fs.filesystem_type() == nix::sys::statfs::PROC_SUPER_MAGIC)
}

fn others_may_write(stat: &FileStat) -> bool {
    stat.st_mode & 0o022 != 0
}

fn open_dir_nofollow(dir: impl AsFd, name: &(impl nix::NixPath + ?Sized)) -> nix::Result<OwnedFd> {
    openat(
        dir,
        name,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
}

/// The names of `path` to walk, `.` dropped and `..` kept (the walk resolves
/// `..` physically, after symlinks, as the kernel does).
fn components(path: &Path) -> Vec<OsString> {
    path.components()
        .filter_map(|component| match component {
            Component::Normal(name) => Some(name.to_owned()),
            Component::ParentDir => Some(OsString::from("..")),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
        })
        .collect()
}

/// How a message names `path`: "it is" when it is what was asked for,
/// else its path (a directory above it, a symlink's target).
fn name(path: &Path, subject: &Path) -> String {
    if path == subject {
        "it is".to_owned()
    } else {
        format!("{} is", path.display())
    }
}

/// `dir` without `.` and `..` components, so `starts_with` compares what the
/// walk's physical paths hold.
fn lexical(dir: &Path) -> PathBuf {
    let mut clean = PathBuf::from("/");
    for component in dir.components() {
        match component {
            Component::Normal(name) => clean.push(name),
            Component::ParentDir => {
                clean.pop();
            }
            _ => {}
        }
    }
    clean
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{PermissionsExt, chown, symlink};

    use super::*;

    /// A uid that is neither root nor the test's own.
    const STRANGER: u32 = 4321;

    /// Giving a file away needs root; these tests fail (never skip) without
    /// it, as CI runs them as root.
    fn require_root(what: &str) {
        assert!(
            nix::unistd::geteuid().is_root(),
            "this test needs root ({what}); run the tests as root, as CI does"
        );
    }

    /// A private directory for one test (mode 0700, owned by the test), and
    /// the trust of the test's own user.
    fn setup() -> (tempfile::TempDir, Trust) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), PermissionsExt::from_mode(0o700)).unwrap();
        (dir, Trust::default())
    }

    fn write(path: &Path, mode: u32) {
        std::fs::write(path, "version = 1\n").unwrap();
        std::fs::set_permissions(path, PermissionsExt::from_mode(mode)).unwrap();
    }

    fn chmod(path: &Path, mode: u32) {
        std::fs::set_permissions(path, PermissionsExt::from_mode(mode)).unwrap();
    }

    fn refused(result: Result<File>) -> String {
        let error = result.unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Config, "{error}");
        error.to_string()
    }

    #[test]
    fn a_file_of_the_caller_in_a_private_directory_is_trusted() {
        let (dir, trust) = setup();
        let file = dir.path().join("hushbox.toml");
        write(&file, 0o644);
        let mut text = String::new();
        std::io::Read::read_to_string(
            &mut trust.open_file(&file, "the manifest").unwrap(),
            &mut text,
        )
        .unwrap();
        assert_eq!(text, "version = 1\n");
    }

    #[test]
    fn a_group_or_world_writable_file_is_refused() {
        let (dir, trust) = setup();
        for mode in [0o664, 0o646] {
            let file = dir.path().join(format!("m{mode:o}"));
            write(&file, mode);
            let message = refused(trust.open_file(&file, "the manifest"));
            assert!(
                message.starts_with(&format!(
                    "refusing to use the manifest {}: it is writable",
                    file.display()
                )),
                "{message}"
            );
            assert!(message.contains(&format!("mode {mode:04o}")), "{message}");
            assert!(message.contains("chmod go-w"), "{message}");
        }
    }

    #[test]
    fn a_file_owned_by_another_user_is_refused_unless_its_directory_is_listed_safe() {
        require_root("giving a file away");
        let (dir, trust) = setup();
        let file = dir.path().join("hushbox.toml");
        write(&file, 0o644);
        chown(&file, Some(STRANGER), None).unwrap();
        let trust = Trust {
            euid: 1000,
            ..trust
        };
        let message = refused(trust.open_file(&file, "the manifest"));
        assert!(
            message.contains("it is owned by uid 4321 (neither you, uid 1000, nor root)"),
            "{message}"
        );
        assert!(
            message.contains(&format!("{ENV_SAFE_DIRECTORIES}={}", file.display())),
            "{message}"
        );

        let env = Environment::from_pairs([(ENV_SAFE_DIRECTORIES, dir.path().as_os_str())]);
        let listed = Trust {
            euid: 1000,
            ..Trust::from_env(&env).unwrap()
        };
        listed.open_file(&file, "the manifest").unwrap();
        let everything = Environment::from_pairs([(ENV_SAFE_DIRECTORIES, "/nowhere:*")]);
        let star = Trust {
            euid: 1000,
            ..Trust::from_env(&everything).unwrap()
        };
        star.open_file(&file, "the manifest").unwrap();
        // Listing waives the owner, never the mode.
        chmod(&file, 0o666);
        refused(listed.open_file(&file, "the manifest"));
    }

    #[test]
    fn a_directory_others_can_write_without_the_sticky_bit_is_refused() {
        let (dir, trust) = setup();
        let shared = dir.path().join("shared");
        std::fs::create_dir(&shared).unwrap();
        let file = shared.join("hushbox.toml");
        write(&file, 0o644);
        chmod(&shared, 0o777);
        let message = refused(trust.open_file(&file, "the manifest"));
        assert!(
            message.contains(&format!(
                "{} is writable by others (mode 0777) without the sticky bit",
                shared.display()
            )),
            "{message}"
        );
        chmod(&shared, 0o775);
        refused(trust.open_file(&file, "the manifest"));
        // Sticky (as /tmp): only the file's owner may replace it.
        chmod(&shared, 0o1777);
        trust.open_file(&file, "the manifest").unwrap();
        // But a sticky directory is no place for a store.
        refused(trust.open_dir(&shared, "the store").map(File::from));
    }

    #[test]
    fn a_file_of_another_user_in_a_sticky_directory_is_refused() {
        require_root("giving a file away");
        let (dir, _) = setup();
        chmod(dir.path(), 0o1777);
        let file = dir.path().join("hushbox.toml");
        write(&file, 0o644);
        chown(&file, Some(STRANGER), None).unwrap();
        let trust = Trust::for_user(1000);
        let message = refused(trust.open_file(&file, "the manifest"));
        assert!(message.contains("owned by uid 4321"), "{message}");
    }

    #[test]
    fn symlinks_are_followed_when_nobody_else_could_have_planted_them() {
        let (dir, trust) = setup();
        let data = dir.path().join("..data");
        std::fs::create_dir(&data).unwrap();
        write(&data.join("token"), 0o600);
        symlink("..data/token", dir.path().join("token")).unwrap();
        symlink(dir.path().join("..data"), dir.path().join("abs")).unwrap();
        trust
            .open_file(&dir.path().join("token"), "the file")
            .unwrap();
        trust
            .open_file(&dir.path().join("abs/token"), "the file")
            .unwrap();
        trust
            .open_file(&dir.path().join("abs/../token"), "the file")
            .unwrap();
        // The target is checked as any file: a symlink does not launder it.
        chmod(&data.join("token"), 0o666);
        refused(trust.open_file(&dir.path().join("token"), "the file"));
    }

    #[test]
    fn a_symlink_planted_by_another_user_in_a_sticky_directory_is_refused() {
        require_root("giving a symlink away");
        let (dir, _) = setup();
        chmod(dir.path(), 0o1777);
        let target = dir.path().join("real");
        write(&target, 0o600);
        let link = dir.path().join("link");
        symlink(&target, &link).unwrap();
        nix::unistd::fchownat(
            nix::fcntl::AT_FDCWD,
            &link,
            Some(nix::unistd::Uid::from_raw(STRANGER)),
            None,
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .unwrap();
        let message = refused(Trust::for_user(0).open_file(&link, "the file"));
        assert!(message.contains("the symlink"), "{message}");
    }

    #[test]
    fn missing_files_and_paths_through_files_are_not_found() {
        let (dir, trust) = setup();
        write(&dir.path().join("file"), 0o600);
        for name in ["absent", "file/below"] {
            let error = trust
                .open_file(&dir.path().join(name), "the file")
                .unwrap_err();
            assert_eq!(error.kind(), ErrorKind::NotFound, "{error}");
        }
        let error = trust.open_file(dir.path(), "the file").unwrap_err();
        assert!(error.to_string().contains("is a directory"), "{error}");
    }

    #[test]
    fn relative_safe_directories_are_refused() {
        let env = Environment::from_pairs([(ENV_SAFE_DIRECTORIES, "/ok:relative/dir")]);
        let error = Trust::from_env(&env).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Config);
        assert!(
            error.to_string().starts_with(ENV_SAFE_DIRECTORIES),
            "{error}"
        );
    }

    #[test]
    fn a_pipe_behind_a_proc_fd_link_is_opened_and_checked() {
        let (reader, mut writer) = std::io::pipe().unwrap();
        std::io::Write::write_all(&mut writer, b"piped").unwrap();
        drop(writer);
        let link = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&reader));
        let mut text = String::new();
        std::io::Read::read_to_string(
            &mut Trust::default()
                .open_file(Path::new(&link), "the file")
                .unwrap(),
            &mut text,
        )
        .unwrap();
        assert_eq!(text, "piped");
    }

    #[test]
    fn a_fifo_planted_by_another_user_is_refused_without_waiting_for_a_writer() {
        require_root("giving a FIFO away");
        let (dir, _) = setup();
        chmod(dir.path(), 0o1777);
        let fifo = dir.path().join("hushbox.toml");
        nix::unistd::mkfifo(&fifo, Mode::from_bits_truncate(0o644)).unwrap();
        chown(&fifo, Some(STRANGER), None).unwrap();
        // Without O_NONBLOCK this open would wait forever for a writer.
        let message = refused(Trust::for_user(1000).open_file(&fifo, "the manifest"));
        assert!(message.contains("owned by uid 4321"), "{message}");
    }

    #[test]
    fn devices_are_judged_by_owner_only() {
        // /dev/null is 0666: anyone may write to the device, nobody decides
        // what reading it gives.
        Trust::default()
            .open_file(Path::new("/dev/null"), "the file")
            .unwrap();
    }
}
