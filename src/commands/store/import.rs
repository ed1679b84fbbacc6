//! `hushbox store import FILE.env`: migrate a `.env` file into the store.
//!
//! Every variable becomes the secret `<prefix><NAME>`, and the manifest
//! gains
//!
//! ```toml
//! [secrets.<name in lower case>]
//! ref = "<backend>://<prefix><NAME>"
//! env_value = "<NAME>"
//! ```
//!
//! so that `hushbox run -- CMD` gives CMD the environment the `.env` gave
//! it. Everything is checked before anything is written: a line that does
//! not parse, a name that cannot be a variable, a manifest entry that
//! exists with another meaning, a secret that exists (without `--force`).
//! The manifest is edited in place, keeping its comments and layout, and
//! replaced atomically.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use hushbox_age::AgeStore;
use hushbox_core::{Error, ErrorKind, SecretValue, Trust, dotenv};

use crate::commands::{Outcome, Session};
use crate::exit;
use crate::manifest::{FILE_NAME, Manifest};
use crate::output::validate_secret_name;

/// The largest `.env` file read.
const ENV_FILE_LIMIT: usize = 16 * 1024 * 1024;

/// What `store import` was asked to do.
pub(super) struct ImportArgs {
    pub(super) file: PathBuf,
    pub(super) prefix: String,
    pub(super) manifest: Option<PathBuf>,
    /// The text a manifest that does not exist yet starts from.
    pub(super) new_manifest: &'static str,
    pub(super) delete: bool,
    pub(super) force: bool,
}

/// One variable to import.
struct Planned {
    variable: String,
    line: usize,
    path: String,
    secret: String,
    value: SecretValue,
}

pub(super) fn import(session: &Session, store: &AgeStore, args: &ImportArgs) -> Outcome {
    let file = session.cwd.join(&args.file);
    let shown = file.display().to_string();
    let document = read_env_file(&file)?;
    let entries = dotenv::parse_entries(document.expose()).map_err(|error| {
        Error::config(format!("{error}; nothing was imported")).with_subject(&shown)
    })?;
    drop(document);

    let mut planned = Vec::new();
    let mut by_secret: BTreeMap<String, usize> = BTreeMap::new();
    for entry in entries {
        let value = match entry.value {
            dotenv::Value::Defined(value) => value,
            dotenv::Value::FromEnvironment => {
                // The name alone may be a secret pasted on its own line: the
                // note gives the line, not the name.
                eprintln!(
                    "hushbox: {shown}, line {}: a name without `=` (Compose takes its value \
                     from the environment) was not imported",
                    entry.line
                );
                continue;
            }
            dotenv::Value::Invalid(error) => {
                return Err(Error::config(format!("{error}; nothing was imported"))
                    .with_subject(&shown)
                    .into());
            }
        };
        let at_line = |message: String| {
            Error::config(format!(
                "line {}: {message}; nothing was imported",
                entry.line
            ))
            .with_subject(&shown)
        };
        if !is_variable_name(&entry.name) {
            // Not quoted: a line whose "name" is not a name may be a
            // pasted secret; the line number finds it.
            return Err(at_line(
                "the name is not one a program's environment can carry (letters, digits and _, \
                 not starting with a digit)"
                    .to_owned(),
            )
            .into());
        }
        if value.expose().contains(&0) {
            return Err(at_line(
                "the value holds a NUL byte, which an environment variable cannot".to_owned(),
            )
            .into());
        }
        let path = format!("{}{}", args.prefix, entry.name);
        hushbox_age::validate_secret_path(&path).map_err(|error| {
            at_line(format!(
                "the secret path {path:?} is not valid: {}",
                error.message()
            ))
        })?;
        let secret = entry.name.to_ascii_lowercase();
        validate_secret_name(&secret).map_err(|error| at_line(error.to_string()))?;
        if let Some(&other) = by_secret.get(&secret) {
            let other: &Planned = &planned[other];
            return Err(at_line(format!(
                "{} and {} (line {}) would both be [secrets.{secret}]",
                entry.name, other.variable, other.line
            ))
            .into());
        }
        by_secret.insert(secret.clone(), planned.len());
        planned.push(Planned {
            variable: entry.name,
            line: entry.line,
            path,
            secret,
            value,
        });
    }
    if planned.is_empty() {
        return Err(
            Error::config("the file defines no variables; nothing was imported")
                .with_subject(&shown)
                .into(),
        );
    }

    // The manifest's new text, checked, before anything is written.
    let manifest_path = match (&args.manifest, &session.manifest) {
        (Some(path), _) => session.cwd.join(path),
        (None, Some((_, path))) => path.clone(),
        (None, None) => session.cwd.join(FILE_NAME),
    };
    // The manifest edited is held to the rule of the one read: another
    // user's file is not rewritten with this user's references.
    let trust = Trust::from_env(&session.env)?;
    let (manifest_text, added) = edited_manifest(
        &manifest_path,
        args.new_manifest,
        store.name(),
        &planned,
        &trust,
    )?;

    if !args.force {
        let existing: Vec<&str> = planned
            .iter()
            .filter(|item| store.exists(&item.path))
            .map(|item| item.path.as_str())
            .collect();
        if !existing.is_empty() {
            return Err(Error::config(format!(
                "{} already exist{} in the store; nothing was imported (--force replaces them)",
                existing.join(", "),
                if existing.len() == 1 { "s" } else { "" }
            ))
            .into());
        }
    }
    let values: Vec<(String, &SecretValue)> = planned
        .iter()
        .map(|item| (item.path.clone(), &item.value))
        .collect();
    store.set_many(&values, args.force)?;
    if let Some(text) = &manifest_text {
        write_manifest(&manifest_path, text).map_err(|error| {
            Error::io("cannot write the manifest", error).with_subject(manifest_path.display())
        })?;
    }
    eprintln!(
        "hushbox: imported {} secret(s) into {}{}",
        planned.len(),
        store.settings().store.display(),
        if args.prefix.is_empty() {
            String::new()
        } else {
            format!(" under {}", args.prefix)
        }
    );
    eprintln!(
        "hushbox: {} gained {added} [secrets] entr{}",
        manifest_path.display(),
        if added == 1 { "y" } else { "ies" }
    );
    if args.delete {
        overwrite_and_remove(&file).map_err(|error| {
            Error::io(
                "the secrets are stored, but the .env file could not be removed",
                error,
            )
            .with_subject(&shown)
        })?;
        eprintln!("hushbox: overwrote and removed {shown}");
    } else {
        eprintln!(
            "hushbox: {shown} is left as it was; once `hushbox run -- …` works, remove it \
             (`--delete` overwrites it first)"
        );
    }
    Ok(exit::OK)
}

fn read_env_file(file: &Path) -> Result<SecretValue, Error> {
    let mut handle = File::open(file).map_err(|error| {
        Error::io("cannot read the .env file", error).with_subject(file.display())
    })?;
    let size = handle
        .metadata()
        .map(|metadata| usize::try_from(metadata.len()).unwrap_or(usize::MAX))
        .unwrap_or(0);
    SecretValue::read_bounded(&mut handle, size, ENV_FILE_LIMIT).map_err(|error| match error {
        hushbox_core::ReadError::TooLarge { limit } => Error::new(
            ErrorKind::TooLarge,
            format!("the .env file is larger than {limit} bytes"),
        )
        .with_subject(file.display()),
        hushbox_core::ReadError::Io(error) => {
            Error::io("cannot read the .env file", error).with_subject(file.display())
        }
    })
}

/// What `env_value` accepts (the plan's rule).
fn is_variable_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The manifest with an entry per variable, and how many entries are new
/// (`None` when nothing changes). An entry that exists with the same
/// reference and variable is kept; one that exists otherwise is an error.
fn edited_manifest(
    path: &Path,
    new_manifest: &str,
    scheme: &str,
    planned: &[Planned],
    trust: &Trust,
) -> Result<(Option<String>, usize), Error> {
    let subject = || path.display().to_string();
    let original = match trust.open_file(path, "the manifest") {
        Ok(mut file) => {
            let mut text = String::new();
            io::Read::read_to_string(&mut file, &mut text).map_err(|error| {
                Error::io("cannot read the manifest", error).with_subject(subject())
            })?;
            Some(text)
        }
        Err(error) if error.kind() == hushbox_core::ErrorKind::NotFound => None,
        Err(error) => return Err(error),
    };
    let text = original.clone().unwrap_or_else(|| new_manifest.to_owned());
    if original.is_some() {
        // A manifest hushbox would refuse is reported as hushbox reports it.
        Manifest::parse(&text, path)?;
    }
    let mut document: toml_edit::DocumentMut = text
        .parse()
        .map_err(|_| Error::config("the manifest is not valid TOML").with_subject(subject()))?;
    let secrets = document
        .entry("secrets")
        .or_insert_with(|| {
            let mut table = toml_edit::Table::new();
            // `[secrets.x]` headers only, no empty `[secrets]`.
            table.set_implicit(true);
            toml_edit::Item::Table(table)
        })
        .as_table_like_mut()
        .ok_or_else(|| {
            Error::config("`secrets` in the manifest is not a table").with_subject(subject())
        })?;
    // Variables the manifest already gives programs, and by which entry.
    let mut variables: BTreeMap<String, String> = BTreeMap::new();
    for (name, item) in secrets.iter() {
        if let Some(variable) = item.get("env_value").and_then(|v| v.as_str()) {
            variables.insert(variable.to_owned(), name.to_owned());
        }
    }
    let mut added = 0;
    for item in planned {
        let reference = format!("{scheme}://{}", item.path);
        if let Some(existing) = secrets.get(&item.secret) {
            let same = existing.get("ref").and_then(|v| v.as_str()) == Some(reference.as_str())
                && existing.get("env_value").and_then(|v| v.as_str())
                    == Some(item.variable.as_str());
            if same {
                continue;
            }
            return Err(Error::config(format!(
                "the manifest already has [secrets.{}] with another meaning; nothing was \
                 imported (rename or remove that entry, or import with --prefix)",
                item.secret
            ))
            .with_subject(subject()));
        }
        if let Some(other) = variables.get(&item.variable) {
            return Err(Error::config(format!(
                "[secrets.{other}] already sets {}; nothing was imported",
                item.variable
            ))
            .with_subject(subject()));
        }
        let mut table = toml_edit::Table::new();
        table.insert("ref", toml_edit::value(reference));
        table.insert("env_value", toml_edit::value(item.variable.as_str()));
        secrets.insert(&item.secret, toml_edit::Item::Table(table));
        added += 1;
    }
    if added == 0 {
        return Ok((None, 0));
    }
    let new_text = document.to_string();
    // What is written must be a manifest hushbox reads, whose references
    // reach this store.
    let parsed = Manifest::parse(&new_text, path)?;
    if scheme != hushbox_age::SCHEME && !parsed.backends.contains_key(scheme) {
        return Err(Error::config(format!(
            "the manifest has no [backends.{scheme}], so its new references would reach no \
             store; nothing was imported (add the section, or import into the manifest that has it)"
        ))
        .with_subject(subject()));
    }
    Ok((Some(new_text), added))
}

/// Replaces the manifest atomically: a temporary file in its directory with
/// the original's mode, fsynced, renamed over it, the directory fsynced.
pub(super) fn write_manifest(path: &Path, text: &str) -> io::Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let mode = fs::metadata(path)
        .map(|metadata| metadata.permissions().mode() & 0o7777)
        .unwrap_or(0o644);
    let mut temp = tempfile::Builder::new()
        .prefix(".hushbox-manifest-")
        .suffix(".tmp")
        .tempfile_in(dir)?;
    temp.as_file()
        .set_permissions(fs::Permissions::from_mode(mode))?;
    temp.write_all(text.as_bytes())?;
    temp.as_file().sync_all()?;
    temp.persist(path).map_err(|error| error.error)?;
    File::open(dir)?.sync_all()
}

/// Overwrites a file's bytes with zeros, syncs, and removes it. Refuses a
/// symlink: the file it points to belongs to someone else.
///
/// On a journaling or copy-on-write filesystem (or an SSD) the old blocks
/// may survive the overwrite; this removes the ordinary copy, not every
/// copy. Treat values that sat in a `.env` file as exposed.
fn overwrite_and_remove(path: &Path) -> io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?;
    let metadata = file.metadata()?;
    if !metadata.is_file() {
        return Err(io::Error::other("not a regular file"));
    }
    let mut remaining = metadata.len();
    let zeros = [0u8; 4096];
    while remaining > 0 {
        let chunk = remaining.min(zeros.len() as u64) as usize;
        file.write_all(&zeros[..chunk])?;
        remaining -= chunk as u64;
    }
    file.sync_all()?;
    drop(file);
    fs::remove_file(path)?;
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn planned(variable: &str, path: &str) -> Planned {
        Planned {
            variable: variable.to_owned(),
            line: 1,
            path: path.to_owned(),
            secret: variable.to_ascii_lowercase(),
            value: SecretValue::copy_from_slice(b"v"),
        }
    }

    /// `edited_manifest` for a new manifest of `version = 1`, as the caller's.
    fn edit(
        path: &Path,
        scheme: &str,
        planned: &[Planned],
    ) -> Result<(Option<String>, usize), Error> {
        edited_manifest(path, "version = 1\n", scheme, planned, &Trust::default())
    }

    #[test]
    fn the_manifest_keeps_its_comments_and_gains_entries() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hushbox.toml");
        let original = "# my project\nversion = 1   # always 1\n\n[backends.team]\nkind = \"age\"  # ours\nstore = \"secrets\"\n\n[secrets.existing]\nref = \"team://x\"\n";
        fs::write(&path, original).unwrap();
        let (text, added) =
            edit(&path, "team", &[planned("DB_PASSWORD", "dev/DB_PASSWORD")]).unwrap();
        let text = text.unwrap();
        assert_eq!(added, 1);
        assert!(text.starts_with(original), "{text}");
        assert!(
            text.ends_with(
                "[secrets.db_password]\nref = \"team://dev/DB_PASSWORD\"\nenv_value = \"DB_PASSWORD\"\n"
            ),
            "{text}"
        );
        // Importing the same again changes nothing.
        fs::write(&path, &text).unwrap();
        let (again, added) =
            edit(&path, "team", &[planned("DB_PASSWORD", "dev/DB_PASSWORD")]).unwrap();
        assert!(again.is_none());
        assert_eq!(added, 0);
        // Another meaning for the same entry is refused.
        let error = edit(
            &path,
            "team",
            &[planned("DB_PASSWORD", "other/DB_PASSWORD")],
        )
        .unwrap_err();
        assert!(
            error.to_string().contains("[secrets.db_password]"),
            "{error}"
        );
    }

    #[test]
    fn a_missing_manifest_is_created_and_a_variable_set_twice_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hushbox.toml");
        let (text, _) = edit(&path, "age", &[planned("A", "A")]).unwrap();
        let text = text.unwrap();
        assert!(text.starts_with("version = 1\n"), "{text}");
        assert!(!text.contains("[secrets]\n"), "{text}");
        Manifest::parse(&text, &path).unwrap();
        fs::write(
            &path,
            "version = 1\n[secrets.other]\nref = \"age://o\"\nenv_value = \"A\"\n",
        )
        .unwrap();
        let error = edit(&path, "age", &[planned("A", "A")]).unwrap_err();
        assert!(error.to_string().contains("already sets A"), "{error}");
    }

    #[test]
    fn references_must_reach_a_configured_backend() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("other.toml");
        let error = edit(&path, "team", &[planned("A", "A")]).unwrap_err();
        assert!(error.to_string().contains("[backends.team]"), "{error}");
        fs::write(&path, "version = 1\n[backends.team]\nkind = \"age\"\n").unwrap();
        edit(&path, "team", &[planned("A", "A")]).unwrap();
    }

    #[test]
    fn overwrite_and_remove_refuses_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target");
        fs::write(&target, "keep").unwrap();
        let link = dir.path().join(".env");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert!(overwrite_and_remove(&link).is_err());
        assert_eq!(fs::read(&target).unwrap(), b"keep");
        let file = dir.path().join("real.env");
        fs::write(&file, "A=1").unwrap();
        overwrite_and_remove(&file).unwrap();
        assert!(!file.exists());
    }
}
