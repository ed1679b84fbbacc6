//! `hushbox store …`: manage the age store.
//!
//! Every command works on an [`AgeStore`] built from the manifest's age
//! backend (or the default store), and calls it directly: the store's
//! operations are blocking, so no async runtime is started here.

mod edit;
mod export;
mod import;

use std::collections::BTreeMap;
use std::io::{IsTerminal, Read, Write};

use hushbox_age::{AgeConfig, AgeStore};
use hushbox_core::{BackendContext, DEFAULT_SIZE_LIMIT, Error, ErrorKind, SecretValue};

use super::{Failure, Outcome, Session};
use crate::cli::{Format, RecipientsCommand, StoreArgs, StoreCommand};
use crate::exit;
use crate::manifest::FILE_NAME;

/// The age store a command works on: the manifest's only age backend, the
/// one `--backend` names, or the default store.
fn open(session: &Session, args: &StoreArgs) -> Result<AgeStore, Error> {
    let configured: Vec<(&String, &toml::Table)> = session
        .manifest
        .iter()
        .flat_map(|(manifest, _)| manifest.backends.iter())
        .filter(|(_, section)| section.kind == "age")
        .map(|(name, section)| (name, &section.settings))
        .collect();
    let (name, settings) = match (&args.backend, configured.as_slice()) {
        (Some(wanted), _) => match configured.iter().find(|(name, _)| *name == wanted) {
            Some((name, settings)) => (name.as_str(), (*settings).clone()),
            None if wanted == "age" => ("age", toml::Table::new()),
            None => {
                return Err(Error::config(format!(
                    "the manifest has no age backend named `{wanted}`"
                )));
            }
        },
        (None, [(name, settings)]) => (name.as_str(), (*settings).clone()),
        (None, []) => {
            // The default instance: its errors must not name a
            // `[backends.age]` section that no manifest has.
            let context = BackendContext {
                name: hushbox_age::SCHEME,
                base_dir: session.base_dir(),
                env: &session.env,
            };
            return AgeStore::from_config(&AgeConfig::default(), &context).map_err(|error| {
                if error.subject() != Some("[backends.age]") {
                    return error;
                }
                Error::new(error.kind(), error.message().to_owned()).with_subject(
                    "the default `age` backend (configured from the environment: \
                     no [backends.age] in a manifest)",
                )
            });
        }
        (None, _) => {
            return Err(Error::config(
                "the manifest has several age backends; choose one with --backend NAME",
            ));
        }
    };
    let context = BackendContext {
        name,
        base_dir: session.base_dir(),
        env: &session.env,
    };
    let config: AgeConfig = context.parse_config(settings)?;
    AgeStore::from_config(&config, &context)
}

/// The store directory `store init` and `store import` create in a
/// project without a manifest, relative to the project's root.
const PROJECT_STORE: &str = "secrets";

/// The manifest `store init` and `store import` create with the project's
/// store, before `store init` adds `require_integrity`.
const PROJECT_MANIFEST: &str = "version = 1\n\n[backends.age]\nkind = \"age\"\n\
    store = \"secrets\"         # the project's store, committed with the code\n";

/// Where a new store goes when no manifest names one: the root of the
/// project (the nearest directory holding `.git`, else the current
/// directory), so that the secrets are committed with the code. `None`,
/// for the passage store, when the user asked for it (`--passage`,
/// `--backend`, `HUSHBOX_STORE`, `PASSAGE_DIR`), when a manifest was found
/// (it decides), or when there is no project: outside git, in the home
/// directory or `/`.
fn project_root(
    session: &Session,
    args: &StoreArgs,
    passage: bool,
) -> Result<Option<std::path::PathBuf>, Error> {
    if session.manifest.is_some() {
        if passage {
            return Err(Error::config(
                "--passage is for a project without a manifest: this one has a manifest, which \
                 decides the store (use --backend NAME, or --config FILE for another manifest)",
            ));
        }
        return Ok(None);
    }
    let asked = passage
        || args.backend.is_some()
        || ["HUSHBOX_STORE", "PASSAGE_DIR"]
            .iter()
            .any(|name| session.env.get(name).is_some_and(|value| !value.is_empty()));
    if asked {
        return Ok(None);
    }
    if let Some(root) = session
        .cwd
        .ancestors()
        .find(|dir| dir.join(".git").exists())
    {
        return Ok(Some(root.to_path_buf()));
    }
    let home = session.env.get("HOME").map(std::path::Path::new);
    let cwd = session.cwd.as_path();
    if home == Some(cwd) || cwd.parent().is_none() {
        return Ok(None);
    }
    Ok(Some(session.cwd.clone()))
}

/// The store in `<root>/secrets`, as the manifest `store init` writes
/// there will configure it.
fn open_project(session: &Session, root: &std::path::Path) -> Result<AgeStore, Error> {
    let mut settings = toml::Table::new();
    settings.insert(
        "store".to_owned(),
        toml::Value::String(PROJECT_STORE.to_owned()),
    );
    let context = BackendContext {
        name: hushbox_age::SCHEME,
        base_dir: root,
        env: &session.env,
    };
    let config: AgeConfig = context.parse_config(settings)?;
    AgeStore::from_config(&config, &context)
}

/// Makes the store `store init` just gave an integrity manifest refuse to
/// be read without it: `require_integrity = true` in its `[backends.NAME]`
/// section of the manifest (edited in place, comments kept). The setting
/// lives outside the store, where whoever can delete the integrity manifest
/// cannot delete it too. Without a manifest section, says how to set it.
fn require_integrity(session: &Session, store: &AgeStore) -> Result<(), Error> {
    let name = store.name();
    let section = session.manifest.as_ref().filter(|(manifest, _)| {
        manifest
            .backends
            .get(name)
            .is_some_and(|section| section.kind == "age")
    });
    let Some((manifest, path)) = section else {
        eprintln!(
            "hushbox: to refuse this store without its integrity manifest (in CI and containers, \
             where no state persists), configure it in hushbox.toml with `require_integrity = \
             true`, or pin its key (`hushbox store verify --print-key`)"
        );
        return Ok(());
    };
    if manifest.backends[name]
        .settings
        .contains_key("require_integrity")
    {
        return Ok(());
    }
    let text = std::fs::read_to_string(path).map_err(|error| {
        Error::io("cannot read the manifest", error).with_subject(path.display())
    })?;
    let mut document: toml_edit::DocumentMut = text.parse().map_err(|_| {
        Error::config("the manifest is not valid TOML").with_subject(path.display())
    })?;
    let Some(table) = document
        .get_mut("backends")
        .and_then(|backends| backends.get_mut(name))
        .and_then(toml_edit::Item::as_table_like_mut)
    else {
        return Ok(());
    };
    table.insert("require_integrity", toml_edit::value(true));
    import::write_manifest(path, &document.to_string()).map_err(|error| {
        Error::io("cannot update the manifest", error).with_subject(path.display())
    })?;
    eprintln!(
        "hushbox: set require_integrity = true for [backends.{name}] in {}: a missing or \
         unverifiable integrity manifest is now an error",
        path.display()
    );
    Ok(())
}

pub(super) fn store(session: &Session, command: StoreCommand) -> Outcome {
    match command {
        StoreCommand::Init {
            store: args,
            recipient,
            dir,
            passage,
        } => {
            let project = project_root(session, &args, passage)?;
            let new_manifest = project.as_ref().map(|root| root.join(FILE_NAME));
            if let Some(path) = &new_manifest
                && path.exists()
            {
                return Err(Error::config(
                    "a manifest exists here that hushbox did not read (see --config and \
                     HUSHBOX_CONFIG); nothing was initialised",
                )
                .with_subject(path.display())
                .into());
            }
            let store = match &project {
                Some(root) => open_project(session, root)?,
                None => open(session, &args)?,
            };
            let recipients = if recipient.is_empty() {
                hushbox_age::recipient_of_identity_file(&store.settings().identity_file)?
            } else {
                recipient
            };
            let target = store.init(&recipients, dir.as_deref())?;
            eprintln!(
                "hushbox: initialised {} for {} recipient(s); its integrity manifest is {}",
                target.display(),
                recipients.len(),
                store
                    .settings()
                    .store
                    .join(hushbox_age::INTEGRITY_FILE)
                    .display()
            );
            match (&new_manifest, &dir) {
                (Some(path), _) => {
                    let text = format!(
                        "{PROJECT_MANIFEST}require_integrity = true  # no integrity \
                         manifest = exit 65\n"
                    );
                    import::write_manifest(path, &text).map_err(|error| {
                        Error::io("cannot write the manifest", error).with_subject(path.display())
                    })?;
                    eprintln!(
                        "hushbox: created {} naming the store ([backends.age] store = \
                         \"{PROJECT_STORE}\", require_integrity = true); commit it with \
                         {PROJECT_STORE}/",
                        path.display()
                    );
                }
                (None, None) => require_integrity(session, &store)?,
                (None, Some(_)) => {}
            }
            if let Some(dir) = &dir {
                let existing = store.list(&format!("{dir}/"))?.len();
                if existing > 0 {
                    eprintln!(
                        "hushbox: {existing} secret(s) under {dir}/ are still encrypted to the \
                         recipients they had; `hushbox store reencrypt {dir}/` gives them to \
                         these recipients only"
                    );
                }
            }
            Ok(exit::OK)
        }
        StoreCommand::Set { store, name, raw } => {
            let store = open(session, &store)?;
            hushbox_age::validate_secret_path(&name)?;
            let mut value = read_value(&name)?;
            if !raw {
                value.trim_one_trailing_newline();
            }
            store.set(&name, &value)?;
            eprintln!("hushbox: stored {name}");
            Ok(exit::OK)
        }
        StoreCommand::Get { store, name } => {
            let store = open(session, &store)?;
            let value = store
                .get(&name)
                .map_err(|error| store.explain_missing(error))?;
            let mut stdout = std::io::stdout().lock();
            // The user asked for this value on stdout.
            stdout
                .write_all(value.expose())
                .and_then(|()| stdout.flush())
                .map_err(|error| Error::io("cannot write to stdout", error))?;
            Ok(exit::OK)
        }
        StoreCommand::Ls {
            store,
            prefix,
            tree,
            format,
        } => {
            let store = open(session, &store)?;
            let prefix = prefix.unwrap_or_default();
            let names = store.list(&prefix)?;
            let mut stdout = std::io::stdout().lock();
            let text = if format == Some(Format::Json) {
                let document = serde_json::json!({
                    "store": store.settings().store.to_string_lossy(),
                    "names": names,
                });
                format!("{document:#}\n")
            } else if format.is_none() && (tree || stdout.is_terminal()) {
                let root = if prefix.is_empty() {
                    store.settings().store.display().to_string()
                } else {
                    prefix.clone()
                };
                render_tree(&root, &names)
            } else {
                names.iter().map(|name| format!("{name}\n")).collect()
            };
            stdout
                .write_all(text.as_bytes())
                .map_err(|error| Error::io("cannot write to stdout", error))?;
            Ok(exit::OK)
        }
        StoreCommand::Rm { store, name } => {
            let store = open(session, &store)?;
            store.remove(&name)?;
            eprintln!("hushbox: removed {name}");
            Ok(exit::OK)
        }
        StoreCommand::Mv {
            store,
            from,
            to,
            force,
        } => {
            let store = open(session, &store)?;
            let reencrypted = store.rename(&from, &to, force)?;
            eprintln!(
                "hushbox: renamed {from} to {to}{}",
                if reencrypted {
                    " (re-encrypted for the recipients of its new place)"
                } else {
                    ""
                }
            );
            Ok(exit::OK)
        }
        StoreCommand::Edit { store, name, raw } => {
            let store = open(session, &store)?;
            edit::edit(session, &store, &name, raw)
        }
        StoreCommand::Recipients(command) => recipients(session, command),
        StoreCommand::Reencrypt { store, prefix } => {
            let store = open(session, &store)?;
            let report = store.reencrypt(prefix.as_deref().unwrap_or(""))?;
            for recipient in &report.added_recipients {
                eprintln!("hushbox: recipient added to the store: {recipient}");
            }
            for recipient in &report.removed_recipients {
                eprintln!("hushbox: recipient no longer in the store: {recipient}");
            }
            if report.key_rotated {
                eprintln!("hushbox: the integrity key was replaced (a recipient left)");
            }
            let names: String = report
                .reencrypted
                .iter()
                .map(|name| format!("{name}\n"))
                .collect();
            super::print_stdout(&names)?;
            // The errors first, then the summary, so that the last lines
            // say what the store holds now.
            for error in &report.failed {
                super::print_error(error);
            }
            eprintln!(
                "hushbox: re-encrypted {} secret(s); {} already had their recipients",
                report.reencrypted.len(),
                report.unchanged
            );
            let Some(first) = report.failed.first() else {
                return Ok(exit::OK);
            };
            let names: Vec<&str> = report
                .failed
                .iter()
                .map(|error| error.subject().unwrap_or("?"))
                .collect();
            eprintln!(
                "hushbox: {} secret(s) could not be re-encrypted and keep the recipients they \
                 had: {}; the others are committed. Fix or remove those (`hushbox store rm \
                 NAME`), then run `hushbox store reencrypt` again",
                names.len(),
                names.join(", ")
            );
            Ok(exit::for_kind(first.kind()))
        }
        StoreCommand::Import {
            store: args,
            file,
            prefix,
            manifest,
            delete,
            force,
            passage,
        } => {
            let project = if manifest.is_some() {
                None
            } else {
                project_root(session, &args, passage)?
            };
            let store = match &project {
                Some(root) => open_project(session, root)?,
                None => open(session, &args)?,
            };
            import::import(
                session,
                &store,
                &import::ImportArgs {
                    file,
                    // A prefix names a directory of the store: `dev` is `dev/`.
                    prefix: match prefix {
                        Some(prefix) if !prefix.is_empty() && !prefix.ends_with('/') => {
                            format!("{prefix}/")
                        }
                        prefix => prefix.unwrap_or_default(),
                    },
                    manifest: manifest
                        .or_else(|| project.as_ref().map(|root| root.join(FILE_NAME))),
                    new_manifest: if project.is_some() {
                        PROJECT_MANIFEST
                    } else {
                        "version = 1\n"
                    },
                    delete,
                    force,
                },
            )
        }
        StoreCommand::Export {
            store,
            format,
            prefix,
            force,
        } => {
            let store = open(session, &store)?;
            export::export(&store, format, prefix.as_deref().unwrap_or(""), force)
        }
        StoreCommand::Verify { store, print_key } => {
            let store = open(session, &store)?;
            let report = store.verify()?;
            for name in &report.stale {
                eprintln!(
                    "hushbox: note: {name} is not encrypted to its current recipients \
                     (`hushbox store reencrypt` fixes it)"
                );
            }
            if report.problems.is_empty() {
                eprintln!(
                    "hushbox: {} secret(s) verified against the integrity manifest (version {})",
                    report.checked,
                    report.version.unwrap_or_default()
                );
                if print_key && let Some(key) = &report.key {
                    super::print_stdout(&format!("{key}\n"))?;
                }
                Ok(exit::OK)
            } else {
                Err(Failure {
                    errors: report.problems,
                    code: None,
                })
            }
        }
        StoreCommand::Accept { store, names } => {
            let store = open(session, &store)?;
            let report = store.accept(&names)?;
            if report.created {
                eprintln!("hushbox: created the integrity manifest");
            }
            for what in &report.accepted {
                eprintln!("hushbox: accepted {what}");
            }
            for (label, names) in [
                ("recorded", &report.added),
                ("recorded the new file of", &report.changed),
                ("forgot", &report.removed),
            ] {
                for name in names {
                    eprintln!("hushbox: {label} {name}");
                }
            }
            eprintln!(
                "hushbox: the integrity manifest is at version {}",
                report.version
            );
            Ok(exit::OK)
        }
    }
}

fn recipients(session: &Session, command: RecipientsCommand) -> Outcome {
    match command {
        RecipientsCommand::Ls { store, dir } => {
            let store = open(session, &store)?;
            let view = store.recipients(dir.as_deref())?;
            match &view.file {
                Some(file) => eprintln!("hushbox: recipients from {}", file.display()),
                None => eprintln!(
                    "hushbox: no .age-recipients applies; secrets here are encrypted to your identity"
                ),
            }
            let recipients: String = view
                .recipients
                .iter()
                .map(|recipient| format!("{recipient}\n"))
                .collect();
            super::print_stdout(&recipients)?;
            Ok(exit::OK)
        }
        RecipientsCommand::Add {
            store,
            dir,
            recipients,
        } => {
            let store = open(session, &store)?;
            let added = store.add_recipients(dir.as_deref(), &recipients)?;
            if added.is_empty() {
                eprintln!("hushbox: already recipients; nothing changed");
            } else {
                for recipient in &added {
                    eprintln!("hushbox: added {recipient}");
                }
                eprintln!(
                    "hushbox: run `hushbox store reencrypt{}` so that they can read the \
                     existing secrets",
                    dir.as_deref().map(|d| format!(" {d}/")).unwrap_or_default()
                );
            }
            Ok(exit::OK)
        }
        RecipientsCommand::Rm {
            store,
            dir,
            recipients,
        } => {
            let store = open(session, &store)?;
            let removed = store.remove_recipients(dir.as_deref(), &recipients)?;
            for recipient in &removed {
                eprintln!("hushbox: removed {recipient}");
            }
            eprintln!(
                "hushbox: the integrity key was replaced. Run `hushbox store reencrypt{}` so \
                 that they cannot read new versions, and change the values themselves: \
                 they could read them until now",
                dir.as_deref().map(|d| format!(" {d}/")).unwrap_or_default()
            );
            Ok(exit::OK)
        }
    }
}

/// Draws names as a tree, directories with a trailing `/`.
fn render_tree(root: &str, names: &[String]) -> String {
    #[derive(Default)]
    struct Node {
        dirs: BTreeMap<String, Node>,
        leaves: Vec<String>,
    }
    let mut top = Node::default();
    for name in names {
        let mut node = &mut top;
        let mut parts: Vec<&str> = name.split('/').collect();
        let leaf = parts.pop().unwrap_or_default();
        for part in parts {
            node = node.dirs.entry(part.to_owned()).or_default();
        }
        node.leaves.push(leaf.to_owned());
    }
    fn draw(node: &Node, indent: &str, out: &mut String) {
        let mut items: Vec<(String, Option<&Node>)> = node
            .leaves
            .iter()
            .map(|leaf| (leaf.clone(), None))
            .chain(
                node.dirs
                    .iter()
                    .map(|(name, child)| (format!("{name}/"), Some(child))),
            )
            .collect();
        items.sort_by(|a, b| a.0.cmp(&b.0));
        let count = items.len();
        for (index, (label, child)) in items.into_iter().enumerate() {
            let last = index + 1 == count;
            out.push_str(indent);
            out.push_str(if last { "└── " } else { "├── " });
            out.push_str(&label);
            out.push('\n');
            if let Some(child) = child {
                let deeper = format!("{indent}{}", if last { "    " } else { "│   " });
                draw(child, &deeper, out);
            }
        }
    }
    let mut out = format!("{root}\n");
    draw(&top, "", &mut out);
    out
}

/// Reads a value from stdin, or from a no-echo prompt when stdin is a
/// terminal. Never from the command line, where `ps` would show it.
fn read_value(name: &str) -> Result<SecretValue, Error> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        return prompt(name);
    }
    SecretValue::read_bounded(&mut stdin.lock(), 4096, DEFAULT_SIZE_LIMIT).map_err(|error| {
        match error {
            hushbox_core::ReadError::TooLarge { limit } => Error::new(
                ErrorKind::TooLarge,
                format!("the value on stdin is larger than {limit} bytes"),
            ),
            hushbox_core::ReadError::Io(error) => {
                Error::io("cannot read the value from stdin", error)
            }
        }
    })
}

fn prompt(name: &str) -> Result<SecretValue, Error> {
    use nix::sys::termios::{LocalFlags, SetArg, tcgetattr, tcsetattr};
    let mut tty = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")
        .map_err(|error| Error::io("cannot open the terminal for a prompt", error))?;
    let saved = tcgetattr(&tty)
        .map_err(|errno| Error::io("cannot read terminal settings", errno.into()))?;
    let mut quiet = saved.clone();
    quiet.local_flags.remove(LocalFlags::ECHO);
    quiet.local_flags.insert(LocalFlags::ECHONL);
    write!(tty, "Value for {name}: ")
        .map_err(|error| Error::io("cannot write the prompt", error))?;
    tcsetattr(&tty, SetArg::TCSAFLUSH, &quiet)
        .map_err(|errno| Error::io("cannot turn off terminal echo", errno.into()))?;
    let mut value = SecretValue::with_capacity(256);
    let mut byte = [0u8; 1];
    let result = loop {
        match tty.read(&mut byte) {
            Ok(0) => break Ok(()),
            Ok(_) if byte[0] == b'\n' => break Ok(()),
            Ok(_) => value.push_slice(&byte),
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
            Err(error) => break Err(Error::io("cannot read from the terminal", error)),
        }
        if value.len() > DEFAULT_SIZE_LIMIT {
            break Err(Error::new(ErrorKind::TooLarge, "the value is too large"));
        }
    };
    zeroize::Zeroize::zeroize(&mut byte); // the last byte typed stays here otherwise
    let _ = tcsetattr(&tty, SetArg::TCSAFLUSH, &saved);
    result.map(|()| value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trees_show_directories_with_a_slash() {
        let names: Vec<String> = ["a", "a/b", "prod/api", "prod/db", "prod/x/y", "z"]
            .iter()
            .map(|name| (*name).to_owned())
            .collect();
        assert_eq!(
            render_tree("secrets", &names),
            "secrets\n├── a\n├── a/\n│   └── b\n├── prod/\n│   ├── api\n│   ├── db\n│   └── x/\n│       └── y\n└── z\n"
        );
        assert_eq!(render_tree("empty", &[]), "empty\n");
    }
}
