//! `hushbox store …`: manage the age store.

use std::io::{IsTerminal, Read, Write};
use std::sync::Arc;

use hushbox_core::{Backend, BackendContext, DEFAULT_SIZE_LIMIT, Error, ErrorKind, SecretValue};

use super::{Outcome, Session, runtime};
use crate::cli::{StoreArgs, StoreCommand};
use crate::exit;

/// The age instance a store command works on, with its resolved settings.
struct Store {
    backend: Arc<dyn Backend>,
    settings: hushbox_age::AgeSettings,
}

fn open(session: &Session, args: &StoreArgs) -> Result<Store, Error> {
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
        (None, []) => ("age", toml::Table::new()),
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
    let config: hushbox_age::AgeConfig = context.parse_config(settings.clone())?;
    let settings_resolved = config.resolve(&context)?;
    let backend = session.registry.build("age", &context, settings)?;
    Ok(Store {
        backend,
        settings: settings_resolved,
    })
}

pub(super) fn store(session: &Session, command: StoreCommand) -> Outcome {
    match command {
        StoreCommand::Init {
            store,
            recipient,
            dir,
        } => {
            let store = open(session, &store)?;
            let recipients = if recipient.is_empty() {
                hushbox_age::recipient_of_identity_file(&store.settings.identity_file)?
            } else {
                recipient
            };
            let target = match &dir {
                Some(subdir) => {
                    // A subtree is a relative path of safe components, like a secret name.
                    for component in subdir.split('/') {
                        crate::output::validate_secret_name(component)
                            .map_err(|error| error.with_subject(format!("--dir {subdir}")))?;
                    }
                    store.settings.store.join(subdir)
                }
                None => store.settings.store.clone(),
            };
            hushbox_age::init_store(&target, &recipients)?;
            eprintln!(
                "hushbox: initialised {} for {} recipient(s)",
                target.display(),
                recipients.len()
            );
            Ok(exit::OK)
        }
        StoreCommand::Set { store, name, raw } => {
            let store = open(session, &store)?;
            let mut value = read_value(&name)?;
            if !raw {
                value.trim_one_trailing_newline();
            }
            runtime()?.block_on(store.backend.put(&name, &value))?;
            eprintln!("hushbox: stored {name}");
            Ok(exit::OK)
        }
        StoreCommand::Get { store, name } => {
            let store = open(session, &store)?;
            let reference = hushbox_core::SecretRef::new(store.backend.name(), &name)?;
            let document = runtime()?.block_on(store.backend.fetch(&reference))?;
            let mut stdout = std::io::stdout().lock();
            // The user asked for this value on stdout.
            stdout
                .write_all(document.value.expose())
                .and_then(|()| stdout.flush())
                .map_err(|error| Error::io("cannot write to stdout", error))?;
            Ok(exit::OK)
        }
        StoreCommand::Ls { store, prefix } => {
            let store = open(session, &store)?;
            let names = runtime()?.block_on(store.backend.list(prefix.as_deref().unwrap_or("")))?;
            for name in names {
                println!("{name}");
            }
            Ok(exit::OK)
        }
        StoreCommand::Rm { store, name } => {
            let store = open(session, &store)?;
            runtime()?.block_on(store.backend.delete(&name))?;
            eprintln!("hushbox: removed {name}");
            Ok(exit::OK)
        }
    }
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
