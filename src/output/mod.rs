//! The output writer: generations of secret files, committed atomically.
//!
//! - [`GenerationWriter`] writes one complete, consistent set of files per
//!   commit into an output directory, on kubelet's `AtomicWriter` model
//!   (generation directory + `..data` symlink swap), with fsync.
//! - [`validate_secret_name`] decides which names may become files.
//! - [`is_memory_filesystem`] is the tmpfs/ramfs check behind the
//!   "no secrets on disk" invariant.
//! - [`RunDir`] is the private per-run directory of `hushbox run`.

mod dirops;
mod fs_check;
mod names;
mod run_dir;
mod writer;

use std::path::PathBuf;
use std::time::Duration;

pub use fs_check::is_memory_filesystem;
pub use names::validate_secret_name;
pub use run_dir::RunDir;
pub use writer::{GenerationWriter, OwnerOrigin};

/// Where and how [`GenerationWriter`] writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputOptions {
    /// The output directory (`/run/secrets`). Created if missing (mode 0755);
    /// must not be a symlink, nor writable by its group or others.
    pub dir: PathBuf,
    /// Owner of written files and generation directories (needs root or
    /// `CAP_CHOWN`); `None` keeps the writing process's uid.
    pub uid: Option<u32>,
    /// Group of written files and generation directories; `None` keeps the
    /// default group.
    pub gid: Option<u32>,
    /// Permission bits of every secret file, e.g. `0o400`; bits outside
    /// `0o777` are refused.
    pub mode: u32,
    /// Allows an output directory that is not on tmpfs or ramfs. Skips only
    /// that check.
    pub allow_disk: bool,
    /// How long a commit waits for the directory's lock while another
    /// writer holds it, before it fails naming the holder.
    pub lock_timeout: Duration,
}

/// One file of a generation, for [`GenerationWriter::commit_files`].
#[derive(Debug)]
pub struct OutputFile<'a> {
    /// The file name (a single safe path component).
    pub name: &'a str,
    /// Its content.
    pub value: &'a hushbox_core::SecretValue,
    /// Its own mode and owner, where they differ from the writer's.
    pub options: FileOptions,
}

/// A file's own mode and owner; `None` takes the writer's
/// ([`OutputOptions`]). A rendered template may be meant for another user
/// than the secrets beside it (`[templates.NAME].uid`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FileOptions {
    /// Permission bits, e.g. `0o440`.
    pub mode: Option<u32>,
    /// Owner (needs root or `CAP_CHOWN`).
    pub uid: Option<u32>,
    /// Group.
    pub gid: Option<u32>,
}

/// What [`GenerationWriter::commit`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Commit {
    /// The current generation already holds exactly these files: nothing was
    /// written, and no hook should fire.
    Unchanged,
    /// A new generation was committed.
    Written {
        /// The new generation directory's name (`..YYYY_MM_DD_HH_MM_SS.<random>`).
        generation: String,
    },
}
