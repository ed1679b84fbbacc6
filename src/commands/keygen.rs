//! `hushbox keygen`: a new age identity, written 0600, never overwriting.

use hushbox_core::{BackendContext, Error};

use super::{Outcome, Session};
use crate::cli::KeygenArgs;
use crate::exit;

pub(super) fn keygen(session: &Session, args: KeygenArgs) -> Outcome {
    let path = match args.output {
        Some(path) => session.cwd.join(path),
        None => {
            let context = BackendContext {
                name: "age",
                base_dir: &session.cwd,
                env: &session.env,
            };
            let from_env = session
                .env
                .get(hushbox_age::ENV_IDENTITY)
                .filter(|v| !v.is_empty());
            context.resolve_path(from_env.unwrap_or(hushbox_age::DEFAULT_IDENTITY_FILE))?
        }
    };
    let (identity, recipient) = hushbox_age::generate_identity();
    hushbox_age::write_identity_file(&path, &identity)?;
    drop(identity);
    eprintln!("hushbox: wrote a new identity to {}", path.display());
    eprintln!("hushbox: its public key (share it; it goes in .age-recipients):");
    super::print_stdout(&format!("{recipient}\n"))?;
    if !path.exists() {
        return Err(Error::config("the identity file vanished after writing").into());
    }
    Ok(exit::OK)
}
