//! `hushbox get REF`: one secret to stdout.

use std::io::Write;

use hushbox_core::{Error, SecretRef};

use super::{Outcome, Session, runtime};
use crate::cli::GetArgs;
use crate::exit;
use crate::resolve::build_one;

pub(super) fn get(session: &Session, args: GetArgs) -> Outcome {
    let reference: SecretRef = args.reference.parse()?;
    let plan = session.plan(None, None, false)?;
    let backend_plan = plan.backends.get(reference.scheme()).ok_or_else(|| {
        let known: Vec<&str> = plan.backends.keys().map(String::as_str).collect();
        Error::config(format!(
            "no backend is named `{}`; the schemes here are {} (a manifest's \
             [backends.NAME] adds NAME)",
            reference.scheme(),
            known.join(", ")
        ))
        .with_subject(&reference)
    })?;
    let backend = build_one(
        &session.registry,
        reference.scheme(),
        backend_plan,
        &plan.base_dir,
        &session.env,
    )?;
    let document = runtime()?
        .block_on(backend.fetch(&reference.location()))
        .map_err(|error| error.with_subject(&reference))?;
    let value = document.select(&reference)?;
    // Debug builds only: a panic whose message quotes the value, so that the
    // leak tests can check the panic hook withholds it (tests/leaks.rs).
    // Compiled out of release builds, where the variable does nothing.
    #[cfg(debug_assertions)]
    if std::env::var_os("HUSHBOX_DEBUG_PANIC_WITH_VALUE").is_some() {
        panic!(
            "forced panic quoting the value {:?}",
            String::from_utf8_lossy(value.expose())
        );
    }
    // The one place `get` lets a value out: the user asked for it on stdout.
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(value.expose())
        .and_then(|()| stdout.flush())
        .map_err(|error| Error::io("cannot write to stdout", error))?;
    Ok(exit::OK)
}
