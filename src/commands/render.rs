//! `hushbox render NAME`: one rendered template to stdout, for debugging.

use std::io::{IsTerminal, Write};

use hushbox_core::Error;

use super::{Failure, Outcome, Session, runtime};
use crate::cli::RenderArgs;
use crate::exit;
use crate::resolve::{Backends, resolve};

pub(super) fn render(session: &Session, args: RenderArgs) -> Outcome {
    let plan = session.plan(None, None, false)?;
    let templates = session.templates(&plan)?;
    templates.index_of(&plan, &args.name)?;
    let mut stdout = std::io::stdout().lock();
    // A rendered file holds secrets: it is for a file or a pipe, not for
    // the screen (and the scroll-back buffer). Refused before any fetch.
    if stdout.is_terminal() && !args.force {
        return Err(Error::config(
            "refusing to print a rendered template to a terminal; redirect stdout to a file or \
             a pipe (`> file`, `| …`), or pass --force",
        )
        .into());
    }
    let backends = Backends::build(&plan, &session.registry, &session.env)?;
    let runtime = runtime()?;
    let resolved = runtime.block_on(resolve(&plan, &backends));
    for error in runtime.block_on(backends.release()) {
        tracing::warn!(%error, "revoke_on_exit");
    }
    let resolution = resolved.map_err(Failure::from)?;
    let rendered = templates.render_one(&plan, &resolution, &args.name)?;
    // Where the rendered text leaves hushbox's custody, as the user asked.
    stdout
        .write_all(rendered.expose())
        .and_then(|()| stdout.flush())
        .map_err(|error| Error::io("cannot write to stdout", error))?;
    Ok(exit::OK)
}
