//! The store on disk, in passage's layout: secret `a/b` is `<store>/a/b.age`,
//! and the recipients of a directory are in the nearest `.age-recipients`
//! walking up from it to the store root.
//!
//! Everything here is blocking file-system code; the backend runs it on
//! tokio's blocking pool.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use hushbox_core::{Result, Trust};

use crate::error::AgeError;
use crate::keys::{RecipientSet, parse_recipients_from};
use crate::root::{Kind, Root, is_missing, sync_dir};

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
pub(crate) fn nearest_recipients_file(root: &Root, path: &str) -> Option<PathBuf> {
    nearest_recipients_dir(root, path).map(|dir| root.path().join(dir).join(RECIPIENTS_FILE))
}

/// The directory (relative to the store, `""` for the root) whose
/// `.age-recipients` applies to secret `path`, if any. Only a regular file
/// counts, found without following symlinks.
pub(crate) fn nearest_recipients_dir(root: &Root, path: &str) -> Option<String> {
    let relative_dir = Path::new(path).parent().unwrap_or(Path::new(""));
    relative_dir
        .ancestors()
        .find(|dir| root.kind(&root.path().join(dir).join(RECIPIENTS_FILE)) == Some(Kind::File))
        .map(|dir| dir.to_string_lossy().into_owned())
}

/// Reads a recipients file (public keys: read plainly). It decides to whom
/// secrets are encrypted, so it is held to the trust rule: owned by the
/// caller or root, writable by nobody else.
pub(crate) fn read_recipients_file(root: &Root, file: &Path) -> Result<RecipientSet, AgeError> {
    let read = |source| AgeError::io(format!("cannot read {}", file.display()), source);
    let mut opened = root
        .open_trusted(file, "the recipients file")?
        .ok_or_else(|| read(io::Error::from(io::ErrorKind::NotFound)))?;
    let mut text = String::new();
    opened.read_to_string(&mut text).map_err(read)?;
    RecipientSet::parse(&text, &file.display().to_string())
}

/// Every directory of the store that holds a `.age-recipients` file,
/// relative to the store (`""` for the root). Like listings, the walk skips
/// dot-directories and does not follow symlinks.
pub(crate) fn recipient_dirs(root: &Root) -> Result<Vec<String>, AgeError> {
    fn walk(root: &Root, relative: &str, dirs: &mut Vec<String>) -> Result<(), AgeError> {
        let dir = root.path().join(relative);
        for (file_name, kind) in root.entries(&dir)? {
            if file_name == RECIPIENTS_FILE && kind == Kind::File {
                dirs.push(relative.to_owned());
            }
            if file_name.starts_with('.') || kind != Kind::Directory {
                continue;
            }
            let name = if relative.is_empty() {
                file_name
            } else {
                format!("{relative}/{file_name}")
            };
            walk(root, &name, dirs)?;
        }
        Ok(())
    }
    let mut dirs = Vec::new();
    if root.exists() {
        walk(root, "", &mut dirs)?;
    }
    dirs.sort();
    Ok(dirs)
}

/// The recipients of every `.age-recipients` file of the store, by
/// directory.
pub(crate) fn all_recipient_sets(root: &Root) -> Result<BTreeMap<String, RecipientSet>, AgeError> {
    recipient_dirs(root)?
        .into_iter()
        .map(|dir| {
            let file = root.path().join(&dir).join(RECIPIENTS_FILE);
            let set = read_recipients_file(root, &file)?;
            Ok((dir, set))
        })
        .collect()
}

/// Takes the store's write lock: an exclusive `flock` on the store
/// directory itself, held until the returned file is dropped. It serialises
/// hushbox's own writers (each of which rewrites the integrity manifest);
/// readers need no lock, since every file is replaced by rename.
pub(crate) fn lock(root: &Root) -> Result<File, AgeError> {
    let store = root.path();
    let dir = root
        .file()
        .map_err(|source| AgeError::io(format!("cannot open {}", store.display()), source))?;
    dir.lock()
        .map_err(|source| AgeError::io(format!("cannot lock {}", store.display()), source))?;
    Ok(dir)
}

/// [`Root::write_atomically`] of `bytes`, leaving the file with `mode`.
pub(crate) fn write_file(
    root: &Root,
    target: &Path,
    bytes: &[u8],
    mode: u32,
) -> Result<(), AgeError> {
    root.write_atomically(target, |file| {
        file.set_permissions(fs::Permissions::from_mode(mode))?;
        file.write_all(bytes)
    })
}

/// Reads a file below the store that may be absent (`None`), without
/// following a symlink.
pub(crate) fn read_optional(root: &Root, path: &Path) -> Result<Option<Vec<u8>>, AgeError> {
    let Some(mut file) = root.open_file(path)? else {
        return Ok(None);
    };
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)
        .map_err(|source| AgeError::io(format!("cannot read {}", path.display()), source))?;
    Ok(Some(bytes))
}

/// Removes the directories that `path`'s removal left empty, up to (not
/// including) the store root.
pub(crate) fn prune_empty_dirs(root: &Root, path: &str) {
    let mut dir = Path::new(path).parent().unwrap_or(Path::new(""));
    while !dir.as_os_str().is_empty() && root.remove_empty_dir(&root.path().join(dir)) {
        dir = dir.parent().unwrap_or(Path::new(""));
    }
}

/// Creates the directory `dir` below the store and its missing parents,
/// with mode 0700 as passage's default umask would.
pub(crate) fn create_dirs(root: &Root, dir: &Path) -> Result<(), AgeError> {
    root.dir(dir, true).map(drop)
}

/// Replaces `target` (a file outside any store, such as hushbox's state
/// file) with what `write` puts in a file, durably and atomically: a
/// temporary file in the same directory (mode 0600, named with a leading
/// `.`), fsync, rename over `target`, fsync of the directory. No reader ever
/// sees a partial file; on failure the temporary file is removed and
/// `target` is untouched. Files below a store use [`Root::write_atomically`].
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

/// The secrets whose names start with `prefix`, sorted. Only regular `*.age`
/// files count; entries starting with `.` (`.age-recipients`, `.git`,
/// temporary files) are skipped, and symlinks are not followed.
pub(crate) fn list(root: &Root, prefix: &str) -> Result<Vec<String>, AgeError> {
    // Start the walk at the deepest directory the prefix names fully:
    // "team/db" walks "team/" and keeps names starting with "team/db".
    let start = match prefix.rfind('/') {
        Some(slash) => &prefix[..slash],
        None => "",
    };
    let mut names = Vec::new();
    match walk(root, start, &mut names) {
        Ok(()) => {}
        // An absent store (or prefix directory) holds no secrets.
        Err(AgeError::Io { source, .. }) if is_missing(&source) => {}
        Err(error) => return Err(error),
    }
    names.retain(|name| name.starts_with(prefix));
    names.sort();
    Ok(names)
}

fn walk(root: &Root, relative: &str, names: &mut Vec<String>) -> Result<(), AgeError> {
    for (file_name, kind) in root.entries(&root.path().join(relative))? {
        if file_name.starts_with('.') {
            continue;
        }
        let name = if relative.is_empty() {
            file_name
        } else {
            format!("{relative}/{file_name}")
        };
        if kind == Kind::Directory {
            walk(root, &name, names)?;
        } else if let Some(secret) = name.strip_suffix(EXTENSION)
            && kind == Kind::File
            && check_secret_path(secret).is_ok()
        {
            names.push(secret.to_owned());
        }
    }
    Ok(())
}

/// Removes secret `path`, then the directories it leaves empty, up to (not
/// including) the store root, as `pass rm` does.
pub(crate) fn remove(root: &Root, path: &str) -> Result<(), AgeError> {
    let file = secret_file(root.path(), path);
    match root.remove_file(&file) {
        Ok(()) => {}
        Err(AgeError::Io { source, .. }) if is_missing(&source) => {
            return Err(AgeError::NotFound {
                store_missing: !root.exists(),
                file,
            });
        }
        Err(error) => return Err(error),
    }
    prune_empty_dirs(root, path);
    Ok(())
}

/// Creates an age store at `store_dir` (and missing parents) whose
/// `.age-recipients` lists `recipients`.
///
/// Each recipient must parse as an X25519 `age1…` key or an `ssh-ed25519` /
/// `ssh-rsa` public key. A directory that already holds a `.age-recipients`
/// is an existing store and is refused, never overwritten. The file is
/// created exclusively and fsynced with its directory. The store and the
/// directories above it must pass the caller's trust check.
pub fn init_store(store_dir: &Path, recipients: &[String]) -> Result<()> {
    init_store_inner(store_dir, recipients).map_err(Into::into)
}

fn init_store_inner(store_dir: &Path, recipients: &[String]) -> Result<(), AgeError> {
    let text: String = recipients
        .iter()
        .map(|recipient| format!("{}\n", recipient.trim()))
        .collect();
    parse_recipients_from(&text, "the recipients given")?;
    let root = Root::create(store_dir, &Trust::default())?;
    create_recipients_file(&root, store_dir, &text)
}

/// Creates `<dir>/.age-recipients` holding `text` (and `dir`, with missing
/// parents, below the store), exclusively: an existing file is
/// [`AgeError::StoreExists`].
pub(crate) fn create_recipients_file(root: &Root, dir: &Path, text: &str) -> Result<(), AgeError> {
    let file = dir.join(RECIPIENTS_FILE);
    // Public keys, meant to be committed alongside the store.
    root.create_new(&file, text.as_bytes(), 0o644)
        .map_err(|error| match error {
            AgeError::Io { source, .. } if source.kind() == io::ErrorKind::AlreadyExists => {
                AgeError::StoreExists {
                    recipients_file: file.clone(),
                }
            }
            other => other,
        })
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

    fn open(path: &Path) -> Root {
        Root::open(path, &Trust::default()).unwrap()
    }

    #[test]
    fn nearest_recipients_file_wins() {
        let store = tempfile::tempdir().unwrap();
        let root = store.path();
        fs::create_dir_all(root.join("team/sub/deeper")).unwrap();
        fs::write(root.join(RECIPIENTS_FILE), "").unwrap();
        fs::write(root.join("team/sub").join(RECIPIENTS_FILE), "").unwrap();
        let opened = open(root);
        assert_eq!(
            nearest_recipients_file(&opened, "top"),
            Some(root.join(RECIPIENTS_FILE))
        );
        assert_eq!(
            nearest_recipients_file(&opened, "team/x"),
            Some(root.join(RECIPIENTS_FILE))
        );
        assert_eq!(
            nearest_recipients_file(&opened, "team/sub/deeper/x"),
            Some(root.join("team/sub").join(RECIPIENTS_FILE))
        );
    }

    #[test]
    fn listing_skips_hidden_and_foreign_files_and_symlinks() {
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
        let outside = tempfile::tempdir().unwrap();
        fs::write(outside.path().join("o.age"), "").unwrap();
        std::os::unix::fs::symlink(outside.path(), root.join("lnk")).unwrap();
        std::os::unix::fs::symlink(root.join("a.age"), root.join("alias.age")).unwrap();
        let opened = open(root);
        assert_eq!(list(&opened, "").unwrap(), ["a", "b/c/d", "b/e"]);
        assert_eq!(list(&opened, "b/").unwrap(), ["b/c/d", "b/e"]);
        assert_eq!(list(&opened, "b/c").unwrap(), ["b/c/d"]);
        assert!(list(&opened, "zzz/").unwrap().is_empty());
        assert!(list(&open(&root.join("missing")), "").unwrap().is_empty());
    }

    #[test]
    fn remove_prunes_empty_directories_but_not_the_store() {
        let store = tempfile::tempdir().unwrap();
        let root = store.path();
        fs::create_dir_all(root.join("a/b")).unwrap();
        fs::write(root.join("a/b/c.age"), "").unwrap();
        let opened = open(root);
        remove(&opened, "a/b/c").unwrap();
        assert!(!root.join("a").exists());
        assert!(root.is_dir());
        assert!(matches!(
            remove(&opened, "a/b/c"),
            Err(AgeError::NotFound { .. })
        ));
    }

    #[test]
    fn atomic_write_replaces_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("x.age");
        fs::write(&target, "old").unwrap();
        let opened = open(dir.path());
        opened
            .write_atomically(&target, |file| file.write_all(b"new"))
            .unwrap();
        assert_eq!(fs::read(&target).unwrap(), b"new");
        let failed = opened.write_atomically(&target, |_| Err(io::Error::other("boom")));
        assert!(failed.is_err());
        assert_eq!(fs::read(&target).unwrap(), b"new");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_symlinked_directory_inside_the_store_is_not_followed() {
        let store = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), store.path().join("lnk")).unwrap();
        let opened = open(store.path());
        let target = store.path().join("lnk/x.age");
        for error in [
            create_dirs(&opened, &store.path().join("lnk")).unwrap_err(),
            write_file(&opened, &target, b"x", 0o600).unwrap_err(),
            read_optional(&opened, &target).unwrap_err(),
        ] {
            assert!(
                matches!(error, AgeError::SymlinkInStore { .. }),
                "{error:?}"
            );
        }
        assert_eq!(fs::read_dir(outside.path()).unwrap().count(), 0);
    }

    #[test]
    fn a_directory_of_the_store_others_can_write_is_refused() {
        let store = tempfile::tempdir().unwrap();
        fs::create_dir(store.path().join("team")).unwrap();
        fs::set_permissions(store.path().join("team"), fs::Permissions::from_mode(0o777)).unwrap();
        let opened = open(store.path());
        let error = write_file(&opened, &store.path().join("team/x.age"), b"x", 0o600).unwrap_err();
        let message = hushbox_core::Error::from(error).to_string();
        assert!(message.contains("mode 0777"), "{message}");
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
