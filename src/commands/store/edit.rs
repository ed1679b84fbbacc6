//! `hushbox store edit NAME`: decrypt into a private file on tmpfs, run the
//! user's editor on it, re-encrypt only if it changed, wipe the file.
//!
//! No plaintext touches a disk: the file is in a fresh 0700 directory under
//! `$XDG_RUNTIME_DIR` or `/dev/shm` (refused unless it is tmpfs or ramfs),
//! and every file left in that directory (the editor's backups too) is
//! overwritten with zeros before it is removed. The editor runs supervised,
//! as `run`'s program does, so a ^C or a SIGTERM reaches it and hushbox
//! still cleans up.

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use hushbox_age::{AgeStore, Revision};
use hushbox_core::{Error, ErrorKind, SecretValue};

use crate::commands::{Failure, Outcome, Session};
use crate::deliver::OWN_CREDENTIAL_VARIABLES;
use crate::exit;
use crate::output::RunDir;
use crate::supervise::{self, ChildSpec, SupervisorOptions};

pub(super) fn edit(session: &Session, store: &AgeStore, name: &str, raw: bool) -> Outcome {
    hushbox_age::validate_secret_path(name)?;
    // Before anything else: the editor is supervised like `run`'s program,
    // and the signal mask must be in place before any thread exists.
    let mask = supervise::block_signals()
        .map_err(|error| Error::io("cannot block signals for the editor", error))?;
    let (original, revision) = match store.get_with_revision(name) {
        Ok(found) => found,
        Err(error) if error.kind() == ErrorKind::NotFound => {
            (SecretValue::with_capacity(0), Revision::absent())
        }
        Err(error) => return Err(error.into()),
    };
    let run_dir = RunDir::create(&session.env)?;
    let file_name = name.rsplit('/').next().unwrap_or(name);
    let path = run_dir.path().join(file_name);
    let outcome = write_private(&path, original.expose())
        .map_err(|error| Failure::from(Error::io("cannot write the file to edit", error)))
        .and_then(|()| run_editor(session, &path, mask))
        .and_then(|()| read_back(&path, store.settings().max_size).map_err(Failure::from));
    // The plaintext goes before anything else can fail.
    let wiped = wipe_dir(run_dir.path());
    let removed = run_dir.remove();
    let mut edited = outcome?;
    wiped.map_err(|error| Error::io("cannot wipe the edited file", error))?;
    removed?;

    if edited.ct_eq(original.expose()) {
        eprintln!("hushbox: {name} unchanged");
        return Ok(exit::OK);
    }
    if !raw {
        edited.trim_one_trailing_newline();
    }
    if edited.ct_eq(original.expose()) || (revision == Revision::absent() && edited.is_empty()) {
        eprintln!("hushbox: {name} unchanged");
        return Ok(exit::OK);
    }
    store.set_if(name, &edited, revision)?;
    eprintln!("hushbox: saved {name}");
    Ok(exit::OK)
}

/// Creates `path` (which must not exist) with mode 0600 and writes `bytes`.
fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?;
    // The umask may have narrowed the mode; 0600 is the contract.
    file.set_permissions(fs::Permissions::from_mode(0o600))?;
    file.write_all(bytes)
}

/// `$VISUAL`, else `$EDITOR`, else `vi`, run through `sh -c` as git does, so
/// that `EDITOR="code --wait"` works.
fn run_editor(session: &Session, path: &Path, mask: supervise::SignalMask) -> Result<(), Failure> {
    let env = &session.process_env;
    let editor = ["VISUAL", "EDITOR"]
        .into_iter()
        .filter_map(|name| env.get(name))
        .find(|value| !value.trim().is_empty())
        .unwrap_or("vi")
        .to_owned();
    let child_env: Vec<(OsString, OsString)> = env
        .iter()
        .filter(|(name, _)| !OWN_CREDENTIAL_VARIABLES.contains(&name.as_str()))
        .map(|(name, value)| (OsString::from(name), value.clone()))
        .collect();
    let spec = ChildSpec {
        program: "sh".into(),
        args: vec![
            "-c".into(),
            format!("{editor} \"$@\"").into(),
            editor.clone().into(),
            path.as_os_str().to_owned(),
        ],
        env: child_env,
        user: None,
        foreground_tty: true,
        // The user's own editor, run as the user: nothing to protect.
        no_new_privs: false,
        // The plaintext is in the run directory: the editor goes with us.
        die_with_supervisor: true,
    };
    let code = supervise::run(
        spec,
        &SupervisorOptions {
            subreaper: false,
            mask,
        },
    )
    .map_err(|error| Failure {
        code: Some(u8::try_from(error.code).unwrap_or(exit::FAILURE)),
        errors: vec![Error::config(format!(
            "cannot run the editor `{editor}`: {error}"
        ))],
    })?;
    if code != 0 {
        return Err(Failure {
            code: Some(u8::try_from(code).unwrap_or(exit::FAILURE)),
            errors: vec![Error::config(format!(
                "the editor `{editor}` exited with code {code}; nothing was saved"
            ))],
        });
    }
    Ok(())
}

/// Reads the edited file back, refusing a symlink or anything but a
/// regular file.
fn read_back(path: &Path, limit: usize) -> Result<SecretValue, Error> {
    let mut file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(|error| Error::io("cannot read the edited file back", error))?;
    let metadata = file
        .metadata()
        .map_err(|error| Error::io("cannot read the edited file back", error))?;
    if !metadata.is_file() {
        return Err(Error::config("the edited file is no longer a regular file"));
    }
    let size = usize::try_from(metadata.len()).unwrap_or(usize::MAX);
    SecretValue::read_bounded(&mut file, size, limit).map_err(|error| match error {
        hushbox_core::ReadError::TooLarge { limit } => Error::new(
            ErrorKind::TooLarge,
            format!("the edited value is larger than the limit of {limit} bytes"),
        ),
        hushbox_core::ReadError::Io(error) => Error::io("cannot read the edited file back", error),
    })
}

/// Overwrites every regular file under `dir` with zeros (without following
/// symlinks), syncs it, and removes it.
fn wipe_dir(dir: &Path) -> io::Result<()> {
    let mut result = Ok(());
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let file_type = entry.file_type()?;
        let path = entry.path();
        let wiped = if file_type.is_dir() {
            wipe_dir(&path)
        } else if file_type.is_file() {
            wipe_file(&path)
        } else {
            Ok(())
        };
        if result.is_ok() {
            result = wiped;
        }
    }
    result
}

fn wipe_file(path: &Path) -> io::Result<()> {
    let mut file: File = OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?;
    let mut remaining = file.metadata()?.len();
    let zeros = [0u8; 4096];
    while remaining > 0 {
        let chunk = remaining.min(zeros.len() as u64) as usize;
        file.write_all(&zeros[..chunk])?;
        remaining -= chunk as u64;
    }
    file.sync_all()?;
    fs::remove_file(path)
}
