//! `hushbox completions SHELL` and `hushbox man`: shell completions and the
//! manual page, generated from the clap definitions so they never drift.

use std::io::Write;

use hushbox_core::Error;

use super::{Outcome, registry};
use crate::cli::{self, Shell};
use crate::exit;

/// The command as `--version` shows it.
fn command() -> clap::Command {
    cli::command(cli::version_text(registry().kinds()))
}

pub(super) fn completions(shell: Shell) -> Outcome {
    let shell = match shell {
        Shell::Bash => clap_complete::Shell::Bash,
        Shell::Zsh => clap_complete::Shell::Zsh,
        Shell::Fish => clap_complete::Shell::Fish,
    };
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut command(), "hushbox", &mut script);
    write_stdout(&script)
}

pub(super) fn man() -> Outcome {
    let mut page = Vec::new();
    clap_mangen::Man::new(command())
        .render(&mut page)
        .map_err(|error| Error::io("cannot render the manual page", error))?;
    write_stdout(&page)
}

fn write_stdout(bytes: &[u8]) -> Outcome {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(bytes)
        .and_then(|()| stdout.flush())
        .map_err(|error| Error::io("cannot write to stdout", error))?;
    Ok(exit::OK)
}
