//! The generation writer: kubelet's `AtomicWriter`, with fsync.
//!
//! Layout of an output directory (`/run/secrets`):
//! ```text
//! ..2026_05_01_12_00_00.Xy3kQ9aBc0De/   one complete generation (mode 0755)
//!     db_password                       mode/owner set before the first byte
//! ..data -> ..2026_05_01_12_00_00.Xy3kQ9aBc0De
//! db_password -> ..data/db_password     what users open
//! ..lock                                the commit lock (0600, flock)
//! ```
//! A commit writes a fresh generation, then renames one symlink (`..data`)
//! over the old one. `rename(2)` is atomic, so a reader that resolves
//! `..data` once sees either the whole old generation or the whole new one.
//! Files are never rewritten in place: a reader holding an old file keeps
//! reading it whole after the generation is pruned, and a replaced
//! generation is pruned only once it has been replaced for a second and
//! another swap has followed.

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::fmt::Display;
use std::fs::File;
use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use hushbox_core::{Error, ErrorKind, SecretValue};
use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, openat, readlinkat, renameat};
use nix::sys::stat::{Mode, SFlag, fchmod, fstat, fstatat, mkdirat};
use nix::unistd::{Gid, Uid, fchown, fsync, geteuid, symlinkat};

use super::dirops::{self, Kind};
use super::fs_check::open_output_dir;
use super::names::{generation_name, is_generation_name, random_suffix, validate_names};
use super::{Commit, FileOptions, OutputFile, OutputOptions};

/// The lock file that serialises commits (mode 0600).
const LOCK: &str = "..lock";
/// How long a replaced generation stays for readers that resolved `..data`
/// before the swap (the one just replaced stays until the next swap anyway).
const RETAIN_FOR: Duration = Duration::from_secs(1);
/// The most replaced generations kept, however fast commits come.
const RETAIN_AT_MOST: usize = 64;
/// How long the lock wait sleeps between tries.
const LOCK_RETRY: Duration = Duration::from_millis(10);
/// The symlink whose rename commits a generation.
const DATA: &str = "..data";
/// Where the next `..data` is built before it is renamed into place.
const DATA_TMP: &str = "..data_tmp";
/// Where a user-visible link is built before it is renamed into place.
const LINK_TMP: &str = "..link_tmp";
/// What every user-visible link points into.
const DATA_PREFIX: &str = "..data/";
/// Mode of generation directories: anyone may traverse, the files' own
/// modes decide who reads (as in kubelet).
const GENERATION_DIR_MODE: u32 = 0o755;
/// How many random names to try before giving up on creating a generation.
const NAME_ATTEMPTS: usize = 16;

/// Writes generations of secret files into one output directory.
///
/// Layout: generation directories `..YYYY_MM_DD_HH_MM_SS.<random>/` holding
/// the files, a `..data` symlink to the current one, and one
/// `name -> ..data/name` symlink per secret, which is what users open.
/// Commits from several
/// writers (threads or processes) on one directory are serialised by an
/// exclusive `flock` on `..lock`, a 0600 file in it.
#[derive(Debug)]
pub struct GenerationWriter {
    dir: PathBuf,
    /// The directory as opened and checked in [`GenerationWriter::open`];
    /// every operation is relative to it, so a later swap of the path
    /// cannot redirect writes.
    dir_fd: OwnedFd,
    uid: Option<u32>,
    gid: Option<u32>,
    mode: u32,
    lock_timeout: Duration,
    /// Where `uid`/`gid` came from, for the error when they cannot be set.
    owner_origin: OwnerOrigin,
    /// Asked between tries while the lock is held elsewhere: an error ends
    /// the wait with it (a stop signal during `exec`'s setup).
    cancel: Option<fn() -> Option<Error>>,
}

impl GenerationWriter {
    /// Checks (and creates if missing, mode 0755) the output dir.
    ///
    /// # Behavior
    /// - A missing directory is created (its parent must exist).
    /// - Refuses a symlink, a non-directory, a directory owned by anyone but
    ///   the effective uid, root or `options.uid`.
    /// - Refuses a directory that is not on tmpfs or ramfs, unless
    ///   `options.allow_disk`, which skips that check only.
    /// - Refuses a directory its group or others may write (mode `0o022`).
    /// - Refuses a mode with bits outside `0o777` (setuid, setgid, sticky),
    ///   and a uid or gid of 4294967295, which `chown` reads as "unchanged".
    pub fn open(options: OutputOptions) -> Result<Self, Error> {
        let OutputOptions {
            dir,
            uid,
            gid,
            mode,
            allow_disk,
            lock_timeout,
        } = options;
        if uid == Some(u32::MAX) || gid == Some(u32::MAX) {
            return Err(Error::config(
                "uid/gid 4294967295 is (uid_t)-1, which chown reads as \"leave unchanged\"; \
                 give a real id",
            )
            .with_subject(dir.display()));
        }
        if mode & !0o777 != 0 {
            return Err(Error::config(format!(
                "file mode {mode:#o} has bits outside 0777 (setuid, setgid or sticky); \
                 secret files take permission bits only"
            ))
            .with_subject(dir.display()));
        }
        let dir_fd = open_output_dir(&dir, uid, allow_disk)?;
        tracing::debug!(
            dir = %dir.display(),
            ?uid,
            ?gid,
            mode = %format_args!("{mode:#o}"),
            allow_disk,
            "opened output directory"
        );
        Ok(Self {
            dir,
            dir_fd,
            uid,
            gid,
            mode,
            lock_timeout,
            owner_origin: OwnerOrigin::Manifest,
            cancel: None,
        })
    }

    /// Records where the owner given in the options came from, so that a
    /// failure to set it names the setting to change.
    pub fn owner_from(mut self, origin: OwnerOrigin) -> Self {
        self.owner_origin = origin;
        self
    }

    /// Makes the wait for the directory's lock end early with the error
    /// `check` returns, once it returns one (asked between tries).
    pub fn cancel_when(mut self, check: fn() -> Option<Error>) -> Self {
        self.cancel = Some(check);
        self
    }

    /// Commits one complete generation: exactly these files, atomically.
    ///
    /// # Behavior
    /// - Every name is validated first (and duplicates refused); nothing is
    ///   touched when one is bad.
    /// - When the current generation holds exactly these names, bytes, mode
    ///   and owner, returns [`Commit::Unchanged`] and writes nothing (it only
    ///   recreates user-visible links a crash may have left missing).
    /// - Otherwise writes a fresh generation directory (each file created
    ///   `O_EXCL|O_NOFOLLOW` with mode 0, owner and mode set before the first
    ///   byte, fsynced), fsyncs it, renames a new `..data` symlink over the old
    ///   one, fsyncs the output directory, links each `name -> ..data/name`,
    ///   removes links of names no longer present, and prunes old generations.
    /// - On a failure before the rename, the half-built generation is removed
    ///   and the previous one stays intact and visible.
    pub fn commit(&self, files: &[(&str, &SecretValue)]) -> Result<Commit, Error> {
        let files: Vec<OutputFile<'_>> = files
            .iter()
            .map(|(name, value)| OutputFile {
                name,
                value,
                options: FileOptions::default(),
            })
            .collect();
        self.commit_files(&files)
    }

    /// [`GenerationWriter::commit`] with a mode and owner per file: each
    /// [`FileOptions`] field left `None` takes the writer's own setting.
    ///
    /// # Behavior
    /// As [`GenerationWriter::commit`]; besides, a file mode with bits
    /// outside `0o777` or a uid/gid of 4294967295 is refused before anything
    /// is touched, and a file whose mode or owner differs from the one asked
    /// for makes the generation changed.
    pub fn commit_files(&self, files: &[OutputFile<'_>]) -> Result<Commit, Error> {
        let names = validate_names(files.iter().map(|file| file.name))?;
        for file in files {
            self.check_file_options(file)?;
        }
        let _lock = self.lock()?;
        self.remove_temp_links()?;
        self.check_names_are_free(&names)?;

        let current = self.current_generation()?;
        if let Some(current) = current.as_deref()
            && self.generation_holds(current, files)
        {
            // A crash between the rename and the linking leaves names
            // missing; a healthy directory needs none of this and is left
            // untouched.
            let repaired = self.link_names(&names)? + self.remove_stale_links(&names)?;
            self.prune_generations(current);
            if repaired > 0 {
                self.sync_dir()?;
            }
            tracing::debug!(
                dir = %self.dir.display(),
                generation = current,
                secrets = ?names,
                repaired,
                "generation unchanged"
            );
            return Ok(Commit::Unchanged);
        }

        let built = self.build_generation(files)?;
        let generation = self.swap_data(built)?;
        self.link_names(&names)?;
        self.remove_stale_links(&names)?;
        self.prune_generations(&generation);
        self.sync_dir()?;
        tracing::debug!(
            dir = %self.dir.display(),
            generation = %generation,
            previous = ?current,
            secrets = ?names,
            "committed generation"
        );
        Ok(Commit::Written { generation })
    }

    fn check_file_options(&self, file: &OutputFile<'_>) -> Result<(), Error> {
        let FileOptions { mode, uid, gid } = file.options;
        if uid == Some(u32::MAX) || gid == Some(u32::MAX) {
            return Err(Error::config(
                "uid/gid 4294967295 is (uid_t)-1, which chown reads as \"leave unchanged\"; \
                 give a real id",
            )
            .with_subject(self.dir.join(file.name).display()));
        }
        if mode.is_some_and(|mode| mode & !0o777 != 0) {
            return Err(Error::config(
                "the file mode has bits outside 0777 (setuid, setgid or sticky); \
                 secret files take permission bits only",
            )
            .with_subject(self.dir.join(file.name).display()));
        }
        Ok(())
    }

    /// The mode, uid and gid `file` gets: its own, else the writer's.
    fn effective(&self, file: &OutputFile<'_>) -> (u32, Option<u32>, Option<u32>) {
        (
            file.options.mode.unwrap_or(self.mode),
            file.options.uid.or(self.uid),
            file.options.gid.or(self.gid),
        )
    }

    /// The user-visible path of a secret (dir/name).
    pub fn path_of(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The output directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Gives the output directory and its lock file to `uid:gid`, so a
    /// watcher that has dropped to that user can go on committing (`exec
    /// --watch --user`). Through the descriptor opened and checked in
    /// [`GenerationWriter::open`], never by path. Takes the lock first, so
    /// the lock file exists and no commit runs meanwhile.
    pub fn hand_over(&self, uid: u32, gid: u32) -> Result<(), Error> {
        let lock = self.lock()?;
        let owner = (Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)));
        for fd in [self.dir_fd.as_fd(), lock.as_fd()] {
            fchown(fd, owner.0, owner.1).map_err(|errno| {
                self.os_error(
                    "cannot give the output directory to the program's user",
                    errno,
                    "",
                )
            })?;
        }
        Ok(())
    }

    /// Removes every generation and link hushbox made (used by `run` at exit).
    ///
    /// Removes user-visible links that point into `..data`, then `..data`
    /// and the temporary links, then every generation directory. Other
    /// entries, the lock file (`..lock`: removing a lock file another
    /// writer may wait on would let two writers in at once) and the output
    /// directory itself are left alone. Tries every removal and reports the
    /// first failure.
    pub fn remove_all(&self) -> Result<(), Error> {
        let _lock = self.lock()?;
        let entries = dirops::list(&self.dir_fd)
            .map_err(|errno| self.os_error("cannot list the output directory", errno, ""))?;
        let mut first_error = None;
        let mut note = |result: Result<(), Error>| {
            if let Err(error) = result
                && first_error.is_none()
            {
                first_error = Some(error);
            }
        };
        // Links first, so no user-visible name dangles into a removed tree.
        for (entry, kind) in &entries {
            if kind == &Kind::Symlink && self.is_user_link(entry) {
                note(self.unlink(entry));
            }
        }
        for name in [DATA, DATA_TMP, LINK_TMP] {
            note(self.unlink(OsStr::new(name)));
        }
        for (entry, kind) in &entries {
            if kind == &Kind::Directory && entry.to_str().is_some_and(is_generation_name) {
                note(
                    dirops::remove_tree_at(&self.dir_fd, entry)
                        .map_err(|errno| self.os_error("cannot remove a generation", errno, entry)),
                );
            }
        }
        note(self.sync_dir());
        tracing::debug!(dir = %self.dir.display(), "removed all generations and links");
        first_error.map_or(Ok(()), Err)
    }

    /// Takes the directory's exclusive lock: `flock` on `..lock`, a 0600
    /// file inside it that only its owner (and root) can open. (A lock on
    /// the directory itself could be taken by anyone who may read it, and
    /// would stall every commit for as long as they liked.)
    ///
    /// A fresh open file description per call: `flock` excludes other
    /// descriptions, so this serialises threads of this process as well as
    /// other processes. While another writer holds the lock, tries again
    /// every few milliseconds for at most `lock_timeout`, then fails naming
    /// the holder's pid when the kernel tells it. The lock is released when
    /// the returned file is dropped.
    fn lock(&self) -> Result<File, Error> {
        let fd = openat(
            &self.dir_fd,
            LOCK,
            OFlag::O_RDWR
                | OFlag::O_CREAT
                | OFlag::O_NOFOLLOW
                | OFlag::O_NONBLOCK
                | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o600),
        )
        .map_err(|errno| match errno {
            Errno::EACCES => Error::new(
                ErrorKind::PermissionDenied,
                "cannot open the lock file: it belongs to another user (an earlier hushbox \
                 run as another user?); remove it if no hushbox is writing here",
            )
            .with_subject(self.dir.join(LOCK).display()),
            errno => self.os_error("cannot open the lock file", errno, LOCK),
        })?;
        let stat = fstat(&fd)
            .map_err(|errno| self.os_error("cannot inspect the lock file", errno, LOCK))?;
        if SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT != SFlag::S_IFREG {
            return Err(Error::config(
                "the lock file is not a regular file, so hushbox did not make it; move it away",
            )
            .with_subject(self.dir.join(LOCK).display()));
        }
        if stat.st_mode & 0o077 != 0 {
            // Made by hand, or by an older hushbox: narrowed, so no other
            // user can open it to take the lock from now on.
            fchmod(&fd, Mode::from_bits_truncate(0o600)).map_err(|errno| {
                self.os_error("cannot narrow the lock file's mode", errno, LOCK)
            })?;
        }
        let file = File::from(fd);
        let started = Instant::now();
        let mut announced = false;
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(file),
                Err(std::fs::TryLockError::WouldBlock) => {}
                Err(std::fs::TryLockError::Error(error)) => {
                    return Err(Error::io("cannot lock the output directory", error)
                        .with_subject(self.dir.display()));
                }
            }
            if let Some(error) = self.cancel.and_then(|check| check()) {
                return Err(error);
            }
            let waited = started.elapsed();
            if waited >= self.lock_timeout {
                return Err(self.lock_timed_out(&stat));
            }
            if !announced {
                tracing::info!(
                    dir = %self.dir.display(),
                    timeout = ?self.lock_timeout,
                    "another writer holds the output directory; waiting for the lock"
                );
                announced = true;
            }
            std::thread::sleep(LOCK_RETRY.min(self.lock_timeout - waited));
        }
    }

    fn lock_timed_out(&self, stat: &nix::sys::stat::FileStat) -> Error {
        let holder = lock_holder(stat.st_dev, stat.st_ino)
            .map_or_else(|| "another process".to_owned(), |pid| format!("pid {pid}"));
        Error::new(
            ErrorKind::Io,
            format!(
                "the output directory is locked by {holder} (another hushbox writing to it) and \
                 stayed locked for {:?}; if that process hangs, stop it, or raise \
                 `lock_timeout` in [output]",
                self.lock_timeout
            ),
        )
        .with_subject(self.dir.display())
    }

    /// Removes temporary links a crashed commit may have left.
    fn remove_temp_links(&self) -> Result<(), Error> {
        self.unlink(OsStr::new(DATA_TMP))?;
        self.unlink(OsStr::new(LINK_TMP))
    }

    /// Refuses before writing anything when a name is taken by something
    /// that is not a symlink: replacing a user's file or directory with a
    /// link would destroy it.
    fn check_names_are_free(&self, names: &BTreeSet<&str>) -> Result<(), Error> {
        for name in names {
            match dirops::kind_at(&self.dir_fd, OsStr::new(name)) {
                Ok(None | Some(Kind::Symlink)) => {}
                Ok(Some(_)) => return Err(self.name_taken(name)),
                Err(errno) => {
                    return Err(self.os_error("cannot inspect the secret's path", errno, name));
                }
            }
        }
        Ok(())
    }

    /// The generation `..data` points to, if it points to one hushbox made.
    fn current_generation(&self) -> Result<Option<String>, Error> {
        match readlinkat(&self.dir_fd, DATA) {
            Ok(target) => match target.to_str() {
                Some(target) if is_generation_name(target) => Ok(Some(target.to_owned())),
                _ => {
                    // Not ours: the commit replaces the link and leaves
                    // whatever it pointed to alone.
                    tracing::warn!(
                        dir = %self.dir.display(),
                        "..data points to something hushbox did not make; replacing the link"
                    );
                    Ok(None)
                }
            },
            Err(Errno::ENOENT) => Ok(None),
            Err(Errno::EINVAL) => Err(Error::config(
                "..data exists and is not a symlink, so hushbox did not make it; \
                 move it away",
            )
            .with_subject(self.dir.join(DATA).display())),
            Err(errno) => {
                Err(self.os_error("cannot read the current generation link", errno, DATA))
            }
        }
    }

    /// Whether generation `current` holds exactly `files`: the same names,
    /// regular files with the same bytes, mode and owner. Any doubt (a read
    /// error, an extra entry) answers no: writing a fresh generation is
    /// always correct, skipping one is not.
    fn generation_holds(&self, current: &str, files: &[OutputFile<'_>]) -> bool {
        let Ok(generation) = dirops::open_dir_at(&self.dir_fd, OsStr::new(current)) else {
            return false;
        };
        let Ok(entries) = dirops::list(&generation) else {
            return false;
        };
        if entries.len() != files.len() {
            return false;
        }
        // Names are unique (validated), so equal counts plus every entry
        // being one of them means the sets are equal.
        let all_known = entries.iter().all(|(entry, kind)| {
            *kind == Kind::File && files.iter().any(|file| OsStr::new(file.name) == entry)
        });
        all_known
            && files
                .iter()
                .all(|file| self.file_holds(generation.as_fd(), file))
    }

    fn file_holds(&self, generation: BorrowedFd<'_>, file: &OutputFile<'_>) -> bool {
        let value = file.value;
        let (mode, uid, gid) = self.effective(file);
        let Ok(fd) = openat(
            generation,
            file.name,
            OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK,
            Mode::empty(),
        ) else {
            return false;
        };
        let Ok(stat) = fstat(&fd) else {
            return false;
        };
        let is_regular = SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT == SFlag::S_IFREG;
        // Without a configured uid the files belong to whoever writes them.
        let owner = uid.unwrap_or_else(|| geteuid().as_raw());
        if !is_regular
            || stat.st_mode & 0o7777 != mode
            || stat.st_uid != owner
            || gid.is_some_and(|gid| stat.st_gid != gid)
            || u64::try_from(stat.st_size).ok() != u64::try_from(value.len()).ok()
        {
            return false;
        }
        // The old bytes go into a `SecretValue` sized to the file, so the
        // buffer never grows (no unwiped copies) and is wiped on drop.
        let mut file = File::from(fd);
        // A file that grew since the fstat reads past `value.len()` and then
        // fails the length check of `ct_eq`. The floor of 16 works around
        // `read_bounded` panicking (a `clamp` with min > max) for limits
        // under 15 bytes.
        let limit = value.len().max(16);
        match SecretValue::read_bounded(&mut file, value.len(), limit) {
            Ok(old) => value.ct_eq(old.expose()),
            Err(_) => false,
        }
    }

    /// Writes every file into a fresh generation directory and fsyncs it.
    /// The returned guard removes the directory unless it is committed.
    fn build_generation(&self, files: &[OutputFile<'_>]) -> Result<HalfBuilt<'_>, Error> {
        let built = self.make_generation_dir()?;
        let generation = dirops::open_dir_at(&self.dir_fd, OsStr::new(&built.name))
            .map_err(|errno| self.os_error("cannot open the new generation", errno, &built.name))?;
        let dir_path = || self.dir.join(&built.name);
        // The umask may have narrowed mkdir's mode.
        fchmod(&generation, Mode::from_bits_truncate(GENERATION_DIR_MODE)).map_err(|errno| {
            Error::io("cannot set the generation directory's mode", errno.into())
                .with_subject(dir_path().display())
        })?;
        for (index, file) in files.iter().enumerate() {
            fault::check(index)?;
            self.write_file(generation.as_fd(), &dir_path().join(file.name), file)?;
        }
        // Given away only once it is filled: a root hushbox without
        // CAP_DAC_OVERRIDE (a container with `--cap-drop ALL`) cannot create
        // files in a directory that already belongs to another user.
        self.set_owner(generation.as_fd(), &dir_path(), self.uid, self.gid)?;
        fault::check(files.len())?;
        fsync(&generation).map_err(|errno| {
            Error::io("cannot sync the new generation", errno.into())
                .with_subject(dir_path().display())
        })?;
        Ok(built)
    }

    fn make_generation_dir(&self) -> Result<HalfBuilt<'_>, Error> {
        for _ in 0..NAME_ATTEMPTS {
            let name = generation_name(SystemTime::now(), &random_suffix());
            match mkdirat(
                &self.dir_fd,
                name.as_str(),
                Mode::from_bits_truncate(GENERATION_DIR_MODE),
            ) {
                Ok(()) => {
                    return Ok(HalfBuilt {
                        writer: self,
                        name,
                        armed: true,
                    });
                }
                Err(Errno::EEXIST) => continue,
                Err(errno) => {
                    return Err(self.os_error("cannot create a generation directory", errno, ""));
                }
            }
        }
        Err(Error::new(
            ErrorKind::Io,
            "cannot find a free name for a generation directory",
        )
        .with_subject(self.dir.display()))
    }

    /// Creates one secret file. The file is made with mode 0, then given its
    /// mode and owner, and only then written: no byte is ever readable under
    /// a wider mode or a different owner than configured. The mode comes
    /// first because changing the mode of a file hushbox no longer owns needs
    /// CAP_FOWNER, which a container with `--cap-drop ALL` lacks.
    fn write_file(
        &self,
        generation: BorrowedFd<'_>,
        path: &Path,
        file: &OutputFile<'_>,
    ) -> Result<(), Error> {
        let (mode, uid, gid) = self.effective(file);
        let fd = openat(
            generation,
            file.name,
            OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_WRONLY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|errno| {
            Error::io("cannot create the secret file", errno.into()).with_subject(path.display())
        })?;
        fchmod(&fd, Mode::from_bits_truncate(mode)).map_err(|errno| {
            Error::io("cannot set the secret file's mode", errno.into())
                .with_subject(path.display())
        })?;
        self.set_owner(fd.as_fd(), path, uid, gid)?;
        let mut out = File::from(fd);
        // expose(): the value leaves hushbox's custody into the secret file.
        out.write_all(file.value.expose())
            .and_then(|()| out.sync_all())
            .map_err(|error| {
                Error::io("cannot write the secret file", error).with_subject(path.display())
            })
    }

    fn set_owner(
        &self,
        fd: BorrowedFd<'_>,
        path: &Path,
        uid: Option<u32>,
        gid: Option<u32>,
    ) -> Result<(), Error> {
        if uid.is_none() && gid.is_none() {
            return Ok(());
        }
        fchown(fd, uid.map(Uid::from_raw), gid.map(Gid::from_raw)).map_err(|errno| {
            let owner = describe_owner(uid, gid);
            match errno {
                Errno::EPERM => Error::new(
                    ErrorKind::PermissionDenied,
                    format!(
                        "cannot give the secret files to {owner} ({origin}): setting another \
                         owner needs root or CAP_CHOWN ({remedy})",
                        origin = self.owner_origin.describe(),
                        remedy = self.owner_origin.remedy(),
                    ),
                ),
                errno => Error::io(format!("cannot give the file to {owner}"), errno.into()),
            }
            .with_subject(path.display())
        })
    }

    /// The atomic commit: a new `..data_tmp` link renamed over `..data`.
    /// Returns the committed generation's name.
    fn swap_data(&self, mut built: HalfBuilt<'_>) -> Result<String, Error> {
        symlinkat(built.name.as_str(), &self.dir_fd, DATA_TMP)
            .map_err(|errno| self.os_error("cannot create the generation link", errno, DATA_TMP))?;
        let renamed = fault::check(usize::MAX).and_then(|()| {
            renameat(&self.dir_fd, DATA_TMP, &self.dir_fd, DATA)
                .map_err(|errno| self.os_error("cannot switch to the new generation", errno, DATA))
        });
        if let Err(error) = renamed {
            // Best effort: the next commit removes a leftover link anyway.
            let _ = self.unlink(OsStr::new(DATA_TMP));
            return Err(error);
        }
        // From here on the generation is live: removing it would leave
        // `..data` dangling, so the guard must not.
        built.armed = false;
        let name = std::mem::take(&mut built.name);
        self.sync_dir()?;
        Ok(name)
    }

    /// Makes each `name -> ..data/name` link that is missing or points
    /// elsewhere, atomically. Returns how many links it made.
    ///
    /// A missing name is linked in place: `symlinkat` either creates the
    /// whole link or nothing, so a reader never sees a half-made one. Only
    /// a link that must change is built aside and renamed over the old one.
    /// On a first commit of many secrets this is one system call per name
    /// instead of three.
    fn link_names(&self, names: &BTreeSet<&str>) -> Result<usize, Error> {
        let mut made = 0;
        for name in names {
            let target = format!("{DATA_PREFIX}{name}");
            let missing = match readlinkat(&self.dir_fd, *name) {
                Ok(existing) if existing == OsStr::new(&target) => continue,
                Ok(_) => false,
                Err(Errno::ENOENT) => true,
                Err(Errno::EINVAL) => return Err(self.name_taken(name)),
                Err(errno) => return Err(self.os_error("cannot read the link", errno, name)),
            };
            if missing {
                match symlinkat(target.as_str(), &self.dir_fd, *name) {
                    Ok(()) => {
                        made += 1;
                        continue;
                    }
                    // Taken since the check, by something the flock does
                    // not hold off: replaced below like any other link, and
                    // refused like any other entry that is not one.
                    Err(Errno::EEXIST) if readlinkat(&self.dir_fd, *name).is_ok() => {}
                    Err(Errno::EEXIST) => return Err(self.name_taken(name)),
                    Err(errno) => {
                        return Err(self.os_error("cannot create the secret's link", errno, name));
                    }
                }
            }
            symlinkat(target.as_str(), &self.dir_fd, LINK_TMP)
                .map_err(|errno| self.os_error("cannot create the secret's link", errno, name))?;
            if let Err(errno) = renameat(&self.dir_fd, LINK_TMP, &self.dir_fd, *name) {
                self.unlink(OsStr::new(LINK_TMP))?;
                return Err(self.os_error("cannot create the secret's link", errno, name));
            }
            made += 1;
        }
        Ok(made)
    }

    /// Removes user-visible links into `..data` whose names are not in this
    /// generation. Returns how many it removed.
    fn remove_stale_links(&self, names: &BTreeSet<&str>) -> Result<usize, Error> {
        let entries = dirops::list(&self.dir_fd)
            .map_err(|errno| self.os_error("cannot list the output directory", errno, ""))?;
        let mut removed = 0;
        for (entry, kind) in entries {
            let current = entry.to_str().is_some_and(|entry| names.contains(entry));
            if kind == Kind::Symlink && !current && self.is_user_link(&entry) {
                self.unlink(&entry)?;
                tracing::debug!(dir = %self.dir.display(), secret = ?entry, "removed stale link");
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Removes old generations, keeping `current`, the generation it
    /// replaced, and any generation replaced less than [`RETAIN_FOR`] ago
    /// (at most [`RETAIN_AT_MOST`] in all). Generations newer than
    /// `current` were never committed (a crash left them) and go too.
    ///
    /// Why keep replaced ones: a reader whose path walk read `..data` just
    /// before a swap opens the file inside the generation it named a moment
    /// later. On a loaded machine that moment is a scheduling delay, which
    /// is bounded in time, not in commits: pruning at once made such opens
    /// fail with ENOENT, and so did keeping a fixed number of generations
    /// when commits came fast (measured; see `tests/attack_output.rs`).
    ///
    /// A generation was replaced when the next newer one was committed,
    /// which is when that one was last modified (its files are made just
    /// before its swap). A failure here leaves old files on the tmpfs but
    /// does not undo the commit, so it is logged.
    fn prune_generations(&self, current: &str) {
        let entries = match dirops::list(&self.dir_fd) {
            Ok(entries) => entries,
            Err(errno) => {
                tracing::warn!(
                    dir = %self.dir.display(),
                    error = %errno,
                    "cannot list the output directory to prune old generations"
                );
                return;
            }
        };
        let modified = |name: &str| {
            fstatat(&self.dir_fd, name, AtFlags::AT_SYMLINK_NOFOLLOW)
                .map(|stat| (stat.st_mtime, stat.st_mtime_nsec))
                .unwrap_or((0, 0))
        };
        // Newest first. The name breaks ties, so the order is total.
        let mut generations: Vec<((i64, i64), String)> = entries
            .into_iter()
            .filter_map(|(entry, kind)| {
                let name = entry.into_string().ok()?;
                (kind == Kind::Directory && is_generation_name(&name)).then_some(name)
            })
            .map(|name| (modified(&name), name))
            .collect();
        generations.sort_unstable_by(|a, b| b.cmp(a));
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        let Some(position) = generations.iter().position(|(_, name)| name == current) else {
            return;
        };
        let mut kept = 0;
        let mut replaced_at = generations[position].0;
        let mut prune: Vec<&str> = generations[..position]
            .iter()
            .map(|(_, name)| name.as_str())
            .collect();
        for (modified, name) in &generations[position + 1..] {
            let replaced = Duration::new(
                u64::try_from(replaced_at.0).unwrap_or(0),
                u32::try_from(replaced_at.1).unwrap_or(0),
            );
            let recent = now.saturating_sub(replaced) < RETAIN_FOR;
            if kept < RETAIN_AT_MOST && (kept == 0 || recent) {
                kept += 1;
                replaced_at = *modified;
            } else {
                prune.push(name);
            }
        }
        for name in prune {
            match dirops::remove_tree_at(&self.dir_fd, OsStr::new(name)) {
                Ok(()) => {
                    tracing::debug!(
                        dir = %self.dir.display(),
                        generation = name,
                        "pruned generation"
                    );
                }
                Err(errno) => {
                    tracing::warn!(
                        dir = %self.dir.display(),
                        generation = name,
                        error = %errno,
                        "cannot prune an old generation"
                    );
                }
            }
        }
    }

    /// Whether `entry` is a user-visible link hushbox made: a name a secret
    /// could have, linking into `..data`.
    fn is_user_link(&self, entry: &OsStr) -> bool {
        let could_be_secret = !entry.as_encoded_bytes().starts_with(b".");
        could_be_secret
            && readlinkat(&self.dir_fd, entry).is_ok_and(|target| {
                target
                    .as_encoded_bytes()
                    .starts_with(DATA_PREFIX.as_bytes())
            })
    }

    /// `name` is taken by an entry that is not a link: replacing a user's
    /// file or directory with a link would destroy it.
    fn name_taken(&self, name: &str) -> Error {
        Error::config(
            "a secret's name is taken by an entry that is not a hushbox link; \
             move it away so the secret can be linked there",
        )
        .with_subject(self.path_of(name).display())
    }

    fn unlink(&self, name: &OsStr) -> Result<(), Error> {
        dirops::unlink_if_present(&self.dir_fd, name)
            .map_err(|errno| self.os_error("cannot remove", errno, name))
    }

    fn sync_dir(&self) -> Result<(), Error> {
        fsync(&self.dir_fd)
            .map_err(|errno| self.os_error("cannot sync the output directory", errno, ""))
    }

    /// An I/O error about `name` inside the output directory.
    fn os_error(&self, context: &str, errno: Errno, name: impl AsRef<OsStr>) -> Error {
        let name = name.as_ref();
        let path = if name.is_empty() {
            self.dir.clone()
        } else {
            self.dir.join(name)
        };
        Error::io(context, errno.into()).with_subject(path.display())
    }
}

/// A generation directory that is not (yet) committed: dropping it armed
/// removes it, so every early return before the swap cleans up.
struct HalfBuilt<'a> {
    writer: &'a GenerationWriter,
    name: String,
    armed: bool,
}

impl Drop for HalfBuilt<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let dir = self.writer.dir.display();
        match dirops::remove_tree_at(&self.writer.dir_fd, OsStr::new(&self.name)) {
            Ok(()) => {
                tracing::debug!(%dir, generation = %self.name, "removed unfinished generation");
            }
            Err(errno) => {
                tracing::warn!(
                    %dir,
                    generation = %self.name,
                    error = %errno,
                    "cannot remove unfinished generation"
                );
            }
        }
    }
}

/// Where the owner of the secret files came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OwnerOrigin {
    /// `uid`/`gid` in `[output]`.
    Manifest,
    /// `exec --user SPEC`, the manifest setting neither.
    User(String),
    /// One of `uid`/`gid` from `[output]`, the other from `exec --user SPEC`.
    ManifestAndUser(String),
}

impl OwnerOrigin {
    fn describe(&self) -> String {
        match self {
            Self::Manifest => "from [output] uid/gid".to_owned(),
            Self::User(spec) => format!("from `--user {spec}`"),
            Self::ManifestAndUser(spec) => format!("from [output] and `--user {spec}`"),
        }
    }

    fn remedy(&self) -> &'static str {
        match self {
            Self::Manifest => "run as root, or drop uid/gid from [output]",
            // hushbox gives the files to the user it drops to; the capability
            // is what a container started with `--cap-drop ALL` lacks.
            Self::User(_) | Self::ManifestAndUser(_) => {
                "add it (Docker: `--cap-add CHOWN`; Compose: `cap_add: [CHOWN]`), or start \
                 hushbox as that user (`docker run --user`), which needs no capability"
            }
        }
    }
}

fn describe_owner(uid: Option<u32>, gid: Option<u32>) -> impl Display {
    match (uid, gid) {
        (Some(uid), Some(gid)) => format!("uid {uid}, gid {gid}"),
        (Some(uid), None) => format!("uid {uid}"),
        (None, Some(gid)) => format!("gid {gid}"),
        (None, None) => "the current user".to_owned(),
    }
}

/// Release builds: no faults, and the calls compile away.
#[cfg(not(test))]
mod fault {
    #[inline(always)]
    pub(super) fn check(_step: usize) -> Result<(), hushbox_core::Error> {
        Ok(())
    }
}

/// Test-only fault injection: fail a commit at a chosen step on this thread.
#[cfg(test)]
pub(crate) mod fault {
    use std::cell::Cell;

    use hushbox_core::{Error, ErrorKind};

    thread_local! {
        static FAIL_AT: Cell<Option<usize>> = const { Cell::new(None) };
    }

    /// Makes the next commit on this thread fail before writing file
    /// `step` (`files.len()`: before the fsync; `usize::MAX`: after the
    /// `..data_tmp` link, before the rename).
    pub(crate) fn fail_at(step: Option<usize>) {
        FAIL_AT.set(step);
    }

    pub(super) fn check(step: usize) -> Result<(), Error> {
        if FAIL_AT.get() == Some(step) {
            FAIL_AT.set(None);
            return Err(Error::new(ErrorKind::Io, "injected failure"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    fn writer(dir: &Path) -> GenerationWriter {
        GenerationWriter::open(OutputOptions {
            dir: dir.to_owned(),
            uid: None,
            gid: None,
            mode: 0o400,
            allow_disk: false,
            lock_timeout: Duration::from_secs(10),
        })
        .unwrap()
    }

    fn dot_entries(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().into_string().unwrap())
            .filter(|name| name.starts_with("..") && name != LOCK)
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_failure_at_any_step_before_the_swap_leaves_the_previous_generation() {
        let base = tempfile::tempdir_in("/dev/shm").unwrap();
        let writer = writer(base.path());
        let old = SecretValue::copy_from_slice(b"old");
        let Commit::Written { generation } = writer.commit(&[("a", &old), ("b", &old)]).unwrap()
        else {
            panic!("first commit wrote nothing");
        };
        let new = SecretValue::copy_from_slice(b"new");
        // Before file 0, before file 1, after both (before the fsync), and
        // after `..data_tmp` exists (before the rename).
        for step in [0, 1, 2, usize::MAX] {
            fault::fail_at(Some(step));
            let error = writer.commit(&[("a", &new), ("b", &new)]).unwrap_err();
            assert_eq!(error.message(), "injected failure", "step {step}");
            assert_eq!(
                dot_entries(base.path()),
                [generation.clone(), DATA.to_owned()],
                "step {step}"
            );
            for name in ["a", "b"] {
                assert_eq!(fs::read(base.path().join(name)).unwrap(), b"old");
            }
        }
        // The fault is one-shot: the next commit goes through.
        assert!(matches!(
            writer.commit(&[("a", &new), ("b", &new)]).unwrap(),
            Commit::Written { .. }
        ));
        assert_eq!(fs::read(base.path().join("a")).unwrap(), b"new");
    }

    fn plain<'a>(name: &'a str, value: &'a SecretValue) -> OutputFile<'a> {
        OutputFile {
            name,
            value,
            options: FileOptions::default(),
        }
    }

    #[test]
    fn a_file_keeps_its_own_mode_and_a_mode_change_is_a_new_generation() {
        use std::os::unix::fs::MetadataExt;
        let base = tempfile::tempdir_in("/dev/shm").unwrap();
        let writer = writer(base.path());
        let value = SecretValue::copy_from_slice(b"value");
        let with_mode = |mode: Option<u32>| {
            [
                plain("a", &value),
                OutputFile {
                    name: "b",
                    value: &value,
                    options: FileOptions {
                        mode,
                        ..FileOptions::default()
                    },
                },
            ]
        };
        let mode_of = |name: &str| fs::metadata(base.path().join(name)).unwrap().mode() & 0o7777;
        assert!(matches!(
            writer.commit_files(&with_mode(Some(0o440))).unwrap(),
            Commit::Written { .. }
        ));
        assert_eq!((mode_of("a"), mode_of("b")), (0o400, 0o440));
        assert_eq!(
            writer.commit_files(&with_mode(Some(0o440))).unwrap(),
            Commit::Unchanged
        );
        assert!(matches!(
            writer.commit_files(&with_mode(None)).unwrap(),
            Commit::Written { .. }
        ));
        assert_eq!(mode_of("b"), 0o400);
        let error = writer.commit_files(&with_mode(Some(0o4755))).unwrap_err();
        assert!(error.to_string().contains("outside 0777"), "{error}");
    }

    #[test]
    fn a_file_that_grew_or_changed_type_is_not_unchanged() {
        let base = tempfile::tempdir_in("/dev/shm").unwrap();
        let writer = writer(base.path());
        let value = SecretValue::copy_from_slice(b"value");
        writer.commit(&[("a", &value)]).unwrap();
        let generation = writer.current_generation().unwrap().unwrap();
        let file = base.path().join(&generation).join("a");

        // Longer on disk than the value: read_bounded stops at the limit.
        fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
        fs::write(&file, b"value and more").unwrap();
        fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o400)).unwrap();
        assert!(!writer.generation_holds(&generation, &[plain("a", &value)]));

        // A symlink in place of the file is never followed.
        fs::remove_file(&file).unwrap();
        std::os::unix::fs::symlink(base.path().join("a"), &file).unwrap();
        assert!(!writer.generation_holds(&generation, &[plain("a", &value)]));

        // An extra entry.
        fs::remove_file(&file).unwrap();
        fs::write(&file, b"value").unwrap();
        fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o400)).unwrap();
        assert!(writer.generation_holds(&generation, &[plain("a", &value)]));
        fs::write(base.path().join(&generation).join("extra"), b"").unwrap();
        assert!(!writer.generation_holds(&generation, &[plain("a", &value)]));
    }

    #[test]
    fn a_data_directory_that_is_not_a_link_is_refused() {
        let base = tempfile::tempdir_in("/dev/shm").unwrap();
        fs::create_dir(base.path().join(DATA)).unwrap();
        let writer = writer(base.path());
        let value = SecretValue::copy_from_slice(b"v");
        let error = writer.commit(&[("a", &value)]).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Config);
        assert!(error.message().contains("not a symlink"), "{error}");
        assert_eq!(dot_entries(base.path()), [DATA]);
    }

    #[test]
    fn concurrent_commits_from_two_writers_stay_consistent() {
        // Two writers on one directory, as two processes would be: the lock
        // keeps one from pruning the other's half-built generation.
        let base = tempfile::tempdir_in("/dev/shm").unwrap();
        let (first, second) = (writer(base.path()), writer(base.path()));
        std::thread::scope(|scope| {
            for (index, writer) in [&first, &second].into_iter().enumerate() {
                scope.spawn(move || {
                    for round in 0..100 {
                        let value = SecretValue::copy_from_slice(
                            format!("writer {index} round {round}").as_bytes(),
                        );
                        writer.commit(&[("a", &value)]).unwrap();
                    }
                });
            }
        });
        // ..data, the current generation, and at most RETAIN_AT_MOST
        // replaced ones.
        let dots = dot_entries(base.path());
        assert!((2..=2 + RETAIN_AT_MOST).contains(&dots.len()), "{dots:?}");
        assert_eq!(
            fs::read(base.path().join("a")).unwrap().len(),
            "writer 0 round 99".len()
        );
    }
}

/// The pid holding a `flock` on the file `(dev, ino)`, from `/proc/locks`
/// (`1: FLOCK  ADVISORY  WRITE 1234 00:1a:5678 0 EOF`), if the kernel shows
/// one. Waiters' lines (`1: -> FLOCK …`) are skipped.
fn lock_holder(dev: u64, ino: u64) -> Option<u32> {
    let locks = std::fs::read_to_string("/proc/locks").ok()?;
    let wanted = format!(
        "{:02x}:{:02x}:{ino}",
        nix::sys::stat::major(dev),
        nix::sys::stat::minor(dev)
    );
    locks.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.get(1) != Some(&"FLOCK") {
            return None;
        }
        (fields.get(5) == Some(&wanted.as_str())).then(|| fields.get(4)?.parse().ok())?
    })
}
