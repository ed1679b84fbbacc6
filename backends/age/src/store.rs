//! The store on disk, in passage's layout: secret `a/b` is `<store>/a/b.age`,
//! and the recipients of a directory are in the nearest `.age-recipients`
//! walking up from it to the store root.
//!
//! Everything here is blocking file-system code; the backend runs it on
//! tokio's blocking pool.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use hushbox_core::Result;

use crate::error::AgeError;
use crate::keys::{RecipientSet, parse_recipients_from};

/// The file naming the recipients of its directory and those below it.
pub const RECIPIENTS_FILE: &str = ".age-recipients";
/// The extension of an encrypted secret.
const EXTENSION: &str = ".age";

/// Refuses secret paths that could leave the store, hide from listings or
/// confuse a terminal: empty, absolute, with an empty, `..` or dot-prefixed
/// component, or with a control character (NUL included).
pub(crate) fn check_secret_path(path: &str) -> Result<(), AgeError> {
    let refuse = |why| {
        Err(AgeError::UnsafePath {
            path: path.to_owned(),
            why,
        })
    };
    if path.is_empty() {
        return refuse("it is empty");
    }
    if hushbox_core::text::has_invisible(path) {
        // A name that looks like another on a terminal (`store ls`, errors).
        return refuse("it contains an invisible, bidi or control character");
    }
    if path.starts_with('/') {
        return refuse("it is absolute; secret paths are relative to the store");
    }
    for component in path.split('/') {
        if component.is_empty() {
            return refuse("it has an empty component (`//` or a trailing `/`)");
        }
        if component == ".." || component == "." {
            return refuse("`.` and `..` components are not allowed");
        }
        if component.starts_with('.') {
            return refuse("components starting with `.` are reserved for the store's own files");
        }
    }
    Ok(())
}

/// The file that holds secret `path`.
pub(crate) fn secret_file(store: &Path, path: &str) -> PathBuf {
    store.join(format!("{path}{EXTENSION}"))
}

/// The nearest `.age-recipients` for secret `path`: in the secret's own
/// directory, else in each parent up to and including the store root
/// (passage's rule).
pub(crate) fn nearest_recipients_file(store: &Path, path: &str) -> Option<PathBuf> {
    let relative_dir = Path::new(path).parent().unwrap_or(Path::new(""));
    relative_dir
        .ancestors()
        .map(|dir| store.join(dir).join(RECIPIENTS_FILE))
        .find(|candidate| candidate.is_file())
}

/// The directory (relative to the store, `""` for the root) whose
/// `.age-recipients` applies to secret `path`, if any.
pub(crate) fn nearest_recipients_dir(store: &Path, path: &str) -> Option<String> {
    let relative_dir = Path::new(path).parent().unwrap_or(Path::new(""));
    relative_dir
        .ancestors()
        .find(|dir| store.join(dir).join(RECIPIENTS_FILE).is_file())
        .map(|dir| dir.to_string_lossy().into_owned())
}

/// Reads a recipients file (public keys: read plainly).
pub(crate) fn read_recipients_file(file: &Path) -> Result<RecipientSet, AgeError> {
    let text = fs::read_to_string(file)
        .map_err(|source| AgeError::io(format!("cannot read {}", file.display()), source))?;
    RecipientSet::parse(&text, &file.display().to_string())
}

/// Every directory of the store that holds a `.age-recipients` file,
/// relative to the store (`""` for the root). Like listings, the walk skips
/// dot-directories and does not follow symlinked directories.
pub(crate) fn recipient_dirs(store: &Path) -> Result<Vec<String>, AgeError> {
    fn walk(store: &Path, relative: &str, dirs: &mut Vec<String>) -> io::Result<()> {
        if store.join(relative).join(RECIPIENTS_FILE).is_file() {
            dirs.push(relative.to_owned());
        }
        for entry in fs::read_dir(store.join(relative))? {
            let entry = entry?;
            let Ok(file_name) = entry.file_name().into_string() else {
                continue;
            };
            if file_name.starts_with('.') || !entry.file_type()?.is_dir() {
                continue;
            }
            let name = if relative.is_empty() {
                file_name
            } else {
                format!("{relative}/{file_name}")
            };
            walk(store, &name, dirs)?;
        }
        Ok(())
    }
    let mut dirs = Vec::new();
    match walk(store, "", &mut dirs) {
        Ok(()) => {}
        Err(error) if error.kind() == io::ErrorKind::NotFound => {}
        Err(source) => {
            return Err(AgeError::io(
                format!("cannot walk {}", store.display()),
                source,
            ));
        }
    }
    dirs.sort();
    Ok(dirs)
}

/// The recipients of every `.age-recipients` file of the store, by
/// directory.
pub(crate) fn all_recipient_sets(store: &Path) -> Result<BTreeMap<String, RecipientSet>, AgeError> {
    recipient_dirs(store)?
        .into_iter()
        .map(|dir| {
            let set = read_recipients_file(&store.join(&dir).join(RECIPIENTS_FILE))?;
            Ok((dir, set))
        })
        .collect()
}

/// Takes the store's write lock: an exclusive `flock` on the store
/// directory itself, held until the returned file is dropped. It serialises
/// hushbox's own writers (each of which rewrites the integrity manifest);
/// readers need no lock, since every file is replaced by rename.
pub(crate) fn lock(store: &Path) -> Result<File, AgeError> {
    create_dirs(store)?;
    let dir = File::open(store)
        .map_err(|source| AgeError::io(format!("cannot open {}", store.display()), source))?;
    dir.lock()
        .map_err(|source| AgeError::io(format!("cannot lock {}", store.display()), source))?;
    Ok(dir)
}

/// [`write_atomically`] of `bytes`, leaving the file with `mode`.
pub(crate) fn write_file(target: &Path, bytes: &[u8], mode: u32) -> Result<(), AgeError> {
    write_atomically(target, |file| {
        file.set_permissions(fs::Permissions::from_mode(mode))?;
        file.write_all(bytes)
    })
    .map_err(|source| AgeError::io(format!("cannot write {}", target.display()), source))
}

/// Reads a file that may be absent (`None`).
pub(crate) fn read_optional(path: &Path) -> Result<Option<Vec<u8>>, AgeError> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(error)
            if matches!(
                error.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
            ) =>
        {
            Ok(None)
        }
        Err(source) => Err(AgeError::io(
            format!("cannot read {}", path.display()),
            source,
        )),
    }
}

/// Removes the directories that `path`'s removal left empty, up to (not
/// including) the store root.
pub(crate) fn prune_empty_dirs(store: &Path, path: &str) {
    let mut dir = Path::new(path).parent().unwrap_or(Path::new(""));
    while !dir.as_os_str().is_empty() && fs::remove_dir(store.join(dir)).is_ok() {
        dir = dir.parent().unwrap_or(Path::new(""));
        // Best effort: the secret is gone either way.
        let _ = sync_dir(&store.join(dir));
    }
}

/// Creates `dir` and its missing parents, with mode 0700 as passage's
/// default umask would.
pub(crate) fn create_dirs(dir: &Path) -> Result<(), AgeError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| {
            AgeError::io(format!("cannot create directory {}", dir.display()), source)
        })
}

/// Replaces `target` with what `write` puts in a file, durably and
/// atomically: a temporary file in the same directory (mode 0600, named with
/// a leading `.` so listings skip it), fsync, rename over `target`, fsync of
/// the directory. No reader ever sees a partial file; on failure the
/// temporary file is removed and `target` is untouched.
pub(crate) fn write_atomically(
    target: &Path,
    write: impl FnOnce(&mut File) -> io::Result<()>,
) -> io::Result<()> {
    let dir = target.parent().unwrap_or(Path::new("."));
    let mut temp = tempfile::Builder::new()
        .prefix(".hushbox-")
        .suffix(".tmp")
        .tempfile_in(dir)?;
    write(temp.as_file_mut())?;
    temp.as_file().sync_all()?;
    temp.persist(target).map_err(|error| error.error)?;
    sync_dir(dir)
}

/// Makes a directory's entries (a new or renamed file) durable.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// The secrets whose names start with `prefix`, sorted. Only `*.age` files
/// count; entries starting with `.` (`.age-recipients`, `.git`, temporary
/// files) are skipped, and symlinked directories are not followed.
pub(crate) fn list(store: &Path, prefix: &str) -> Result<Vec<String>, AgeError> {
    // Start the walk at the deepest directory the prefix names fully:
    // "team/db" walks "team/" and keeps names starting with "team/db".
    let start = match prefix.rfind('/') {
        Some(slash) => &prefix[..slash],
        None => "",
    };
    let mut names = Vec::new();
    match walk(store, start, &mut names) {
        Ok(()) => {}
        // An absent store (or prefix directory) holds no secrets.
        Err(error) if error.kind() == io::ErrorKind::NotFound => {}
        Err(error) if error.kind() == io::ErrorKind::NotADirectory => {}
        Err(source) => {
            return Err(AgeError::io(
                format!("cannot list {}", store.join(start).display()),
                source,
            ));
        }
    }
    names.retain(|name| name.starts_with(prefix));
    names.sort();
    Ok(names)
}

fn walk(store: &Path, relative: &str, names: &mut Vec<String>) -> io::Result<()> {
    for entry in fs::read_dir(store.join(relative))? {
        let entry = entry?;
        let Ok(file_name) = entry.file_name().into_string() else {
            // A name that is not UTF-8 cannot be written in a reference.
            continue;
        };
        if file_name.starts_with('.') {
            continue;
        }
        let name = if relative.is_empty() {
            file_name
        } else {
            format!("{relative}/{file_name}")
        };
        let file_type = entry.file_type()?;
        if file_type.is_dir() {
            walk(store, &name, names)?;
        } else if let Some(secret) = name.strip_suffix(EXTENSION) {
            let is_file = file_type.is_file() || fs::metadata(entry.path())?.is_file();
            if is_file && check_secret_path(secret).is_ok() {
                names.push(secret.to_owned());
            }
        }
    }
    Ok(())
}

/// Removes secret `path`, then the directories it leaves empty, up to (not
/// including) the store root, as `pass rm` does.
pub(crate) fn remove(store: &Path, path: &str) -> Result<(), AgeError> {
    let file = secret_file(store, path);
    match fs::remove_file(&file) {
        Ok(()) => {}
        Err(error)
            if matches!(
                error.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
            ) =>
        {
            return Err(AgeError::NotFound {
                store_missing: !store.is_dir(),
                file,
            });
        }
        Err(source) => {
            return Err(AgeError::io(
                format!("cannot remove {}", file.display()),
                source,
            ));
        }
    }
    let dir = Path::new(path).parent().unwrap_or(Path::new(""));
    sync_dir(&store.join(dir)).map_err(|source| {
        AgeError::io(format!("cannot sync {}", store.join(dir).display()), source)
    })?;
    prune_empty_dirs(store, path);
    Ok(())
}

/// Creates an age store at `store_dir` (and missing parents) whose
/// `.age-recipients` lists `recipients`.
///
/// Each recipient must parse as an X25519 `age1…` key or an `ssh-ed25519` /
/// `ssh-rsa` public key. A directory that already holds a `.age-recipients`
/// is an existing store and is refused, never overwritten. The file is
/// created exclusively and fsynced with its directory.
pub fn init_store(store_dir: &Path, recipients: &[String]) -> Result<()> {
    init_store_inner(store_dir, recipients).map_err(Into::into)
}

fn init_store_inner(store_dir: &Path, recipients: &[String]) -> Result<(), AgeError> {
    let text: String = recipients
        .iter()
        .map(|recipient| format!("{}\n", recipient.trim()))
        .collect();
    parse_recipients_from(&text, "the recipients given")?;
    create_recipients_file(store_dir, &text)
}

/// Creates `<dir>/.age-recipients` holding `text` (and `dir`, with missing
/// parents), exclusively: an existing file is [`AgeError::StoreExists`].
pub(crate) fn create_recipients_file(store_dir: &Path, text: &str) -> Result<(), AgeError> {
    let file = store_dir.join(RECIPIENTS_FILE);
    create_dirs(store_dir)?;
    let mut out = OpenOptions::new()
        .write(true)
        .create_new(true)
        // Public keys, meant to be committed alongside the store.
        .mode(0o644)
        .open(&file)
        .map_err(|source| match source.kind() {
            io::ErrorKind::AlreadyExists => AgeError::StoreExists {
                recipients_file: file.clone(),
            },
            _ => AgeError::io(format!("cannot create {}", file.display()), source),
        })?;
    let written = out
        .write_all(text.as_bytes())
        .and_then(|()| out.sync_all())
        .and_then(|()| sync_dir(store_dir));
    if let Err(source) = written {
        let _ = fs::remove_file(&file);
        return Err(AgeError::io(
            format!("cannot write {}", file.display()),
            source,
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn safe_paths_pass() {
        for path in ["db", "prod/db_password", "a/b/c-d.e_f", "with space", "ünï"] {
            check_secret_path(path).unwrap();
        }
    }

    #[test]
    fn unsafe_paths_are_refused() {
        for path in [
            "",
            "/etc/passwd",
            "..",
            "../x",
            "a/../../x",
            "a/./b",
            ".age-recipients",
            "a/.git/config",
            "a//b",
            "a/",
            "nul\0byte",
            "new\nline",
            "esc\u{1b}[31m",
        ] {
            assert!(check_secret_path(path).is_err(), "{path:?} was accepted");
        }
    }

    #[test]
    fn nearest_recipients_file_wins() {
        let store = tempfile::tempdir().unwrap();
        let root = store.path();
        fs::create_dir_all(root.join("team/sub/deeper")).unwrap();
        fs::write(root.join(RECIPIENTS_FILE), "").unwrap();
        fs::write(root.join("team/sub").join(RECIPIENTS_FILE), "").unwrap();
        assert_eq!(
            nearest_recipients_file(root, "top"),
            Some(root.join(RECIPIENTS_FILE))
        );
        assert_eq!(
            nearest_recipients_file(root, "team/x"),
            Some(root.join(RECIPIENTS_FILE))
        );
        assert_eq!(
            nearest_recipients_file(root, "team/sub/deeper/x"),
            Some(root.join("team/sub").join(RECIPIENTS_FILE))
        );
    }

    #[test]
    fn listing_skips_hidden_and_foreign_files() {
        let store = tempfile::tempdir().unwrap();
        let root = store.path();
        fs::create_dir_all(root.join("b/c")).unwrap();
        fs::create_dir_all(root.join(".git")).unwrap();
        for file in [
            "a.age",
            "b/c/d.age",
            "b/e.age",
            "b/notes.txt",
            ".git/x.age",
            "b/.hushbox-1.tmp",
            RECIPIENTS_FILE,
        ] {
            fs::write(root.join(file), "").unwrap();
        }
        assert_eq!(list(root, "").unwrap(), ["a", "b/c/d", "b/e"]);
        assert_eq!(list(root, "b/").unwrap(), ["b/c/d", "b/e"]);
        assert_eq!(list(root, "b/c").unwrap(), ["b/c/d"]);
        assert!(list(root, "zzz/").unwrap().is_empty());
        assert!(list(&root.join("missing"), "").unwrap().is_empty());
    }

    #[test]
    fn remove_prunes_empty_directories_but_not_the_store() {
        let store = tempfile::tempdir().unwrap();
        let root = store.path();
        fs::create_dir_all(root.join("a/b")).unwrap();
        fs::write(root.join("a/b/c.age"), "").unwrap();
        remove(root, "a/b/c").unwrap();
        assert!(!root.join("a").exists());
        assert!(root.is_dir());
        assert!(matches!(
            remove(root, "a/b/c"),
            Err(AgeError::NotFound { .. })
        ));
    }

    #[test]
    fn atomic_write_replaces_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("x.age");
        fs::write(&target, "old").unwrap();
        write_atomically(&target, |file| file.write_all(b"new")).unwrap();
        assert_eq!(fs::read(&target).unwrap(), b"new");
        let failed = write_atomically(&target, |_| Err(io::Error::other("boom")));
        assert!(failed.is_err());
        assert_eq!(fs::read(&target).unwrap(), b"new");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn store_paths_with_bidi_or_invisible_characters_are_refused() {
        for path in [
            "admin\u{202e}txt.pem", // right-to-left override: shows as "adminmep.txt"
            "db\u{200b}password",   // zero-width space: looks like "dbpassword"
            "db\u{200d}x",          // zero-width joiner
            "\u{feff}db",           // byte-order mark
            "db\u{2066}x\u{2069}",  // isolates
            "a\u{061c}b",           // Arabic letter mark
            "soft\u{ad}hyphen",     // invisible unless the line breaks there
            "tag\u{e0041}",         // tag characters
            "fill\u{3164}er",       // Hangul filler, a letter that shows as nothing
            "line\u{2028}sep",      // line separator
            "vs\u{fe0f}",           // variation selector
            "prod/\u{202e}bd",
        ] {
            assert!(check_secret_path(path).is_err(), "{path:?} was accepted");
        }
    }
}
