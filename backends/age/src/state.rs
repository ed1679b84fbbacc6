//! What this machine remembers about each store's integrity manifest: the
//! store id, the key it trusts, and the newest version it has seen with
//! that version's digests. This is the anchor outside the repository that
//! makes a rollback or a swapped integrity key visible: the repository
//! itself can be rewritten by whoever can push to it.
//!
//! One small text file per store, `<state dir>/stores/<id of the store's
//! path>`, mode 0600 in a 0700 directory. It holds names and digests of
//! ciphertexts: nothing secret.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::integrity::{Digest, Index, KeyId, StoreId, digest, hex, unhex};
use crate::store::write_atomically;

const HEADER: &str = "hushbox-integrity-state 1";

/// The newest manifest of one store that this machine has verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Seen {
    /// The store's id.
    pub(crate) store: StoreId,
    /// The key this machine trusts for it.
    pub(crate) key: KeyId,
    /// The newest version verified.
    pub(crate) version: u64,
    /// That version's secrets and digests.
    pub(crate) secrets: BTreeMap<String, Digest>,
}

impl Seen {
    /// What to remember of a verified `index`.
    pub(crate) fn of(index: &Index) -> Self {
        Self {
            store: index.store,
            key: index.key,
            version: index.version,
            secrets: index
                .secrets
                .iter()
                .map(|(name, entry)| (name.clone(), entry.digest))
                .collect(),
        }
    }
}

/// The state file of the store at `store` (made absolute and resolved, so
/// that `./secrets` and its full path are one store).
pub(crate) fn file_for(state_dir: &Path, store: &Path) -> PathBuf {
    let resolved = fs::canonicalize(store).unwrap_or_else(|_| store.to_path_buf());
    let id = digest(resolved.as_os_str().as_encoded_bytes());
    state_dir.join("stores").join(hex(&id[..16]))
}

/// Reads a state file; `None` when there is none.
pub(crate) fn load(file: &Path) -> io::Result<Option<Seen>> {
    let text = match fs::read_to_string(file) {
        Ok(text) => text,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(error),
    };
    parse(&text).map(Some).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            "not a hushbox integrity state file",
        )
    })
}

pub(crate) fn parse(text: &str) -> Option<Seen> {
    let mut lines = text.lines();
    if lines.next()? != HEADER {
        return None;
    }
    let mut seen = Seen {
        store: [0; 16],
        key: [0; 16],
        version: 0,
        secrets: BTreeMap::new(),
    };
    let mut fields = 0;
    for line in lines {
        let (label, value) = line.split_once(' ')?;
        match label {
            "path" => {}
            "store" => {
                seen.store = unhex(value)?;
                fields += 1;
            }
            "key" => {
                seen.key = unhex(value)?;
                fields += 1;
            }
            "version" => {
                seen.version = value.parse().ok()?;
                fields += 1;
            }
            "secret" => {
                let (digest, name) = value.split_once(' ')?;
                seen.secrets.insert(name.to_owned(), unhex(digest)?);
            }
            _ => return None,
        }
    }
    (fields == 3).then_some(seen)
}

/// Writes a state file atomically, creating its directory (0700).
pub(crate) fn save(file: &Path, store: &Path, seen: &Seen) -> io::Result<()> {
    let dir = file.parent().unwrap_or(Path::new("."));
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let mut text = format!(
        "{HEADER}\npath {}\nstore {}\nkey {}\nversion {}\n",
        store.display(),
        hex(&seen.store),
        hex(&seen.key),
        seen.version
    );
    for (name, digest) in &seen.secrets {
        text.push_str(&format!("secret {} {name}\n", hex(digest)));
    }
    write_atomically(file, |out| {
        out.set_permissions(fs::Permissions::from_mode(0o600))?;
        out.write_all(text.as_bytes())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_then_load_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let file = file_for(dir.path(), Path::new("/some/store"));
        assert_eq!(load(&file).unwrap(), None);
        let seen = Seen {
            store: [1; 16],
            key: [2; 16],
            version: 9,
            secrets: BTreeMap::from([("a b/c".to_owned(), [3; 32])]),
        };
        save(&file, Path::new("/some/store"), &seen).unwrap();
        assert_eq!(load(&file).unwrap(), Some(seen));
        use std::os::unix::fs::MetadataExt;
        assert_eq!(fs::metadata(&file).unwrap().mode() & 0o777, 0o600);
        fs::write(&file, "garbage").unwrap();
        assert!(load(&file).is_err());
    }

    #[test]
    fn one_store_one_file_however_it_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("store");
        fs::create_dir(&store).unwrap();
        let dotted = dir.path().join(".").join("store");
        assert_eq!(file_for(dir.path(), &store), file_for(dir.path(), &dotted));
        assert_ne!(
            file_for(dir.path(), &store),
            file_for(dir.path(), dir.path())
        );
    }
}
