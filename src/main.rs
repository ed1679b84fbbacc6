//! The `hushbox` binary: parse, run, exit with a code from `exit`.

use std::process::ExitCode;

use clap::FromArgMatches;
use hushbox::cli::{self, Cli};
use hushbox::{commands, exit, logging};

fn main() -> ExitCode {
    // Before anything can panic: a panic's message may quote a value.
    hushbox::crash::install_panic_hook();
    // Before anything else, and before any thread exists: `run` and `exec`
    // supervise a child and must own every signal from the start.
    let registry = commands::registry();
    let version = cli::version_text(registry.kinds());
    let cli = match Cli::from_arg_matches(&cli::command(version).get_matches()) {
        Ok(cli) => cli,
        Err(error) => error.exit(),
    };
    let signals = match commands::prepare_signals(&cli.command) {
        Ok(signals) => signals,
        Err(error) => {
            eprintln!("hushbox: error: cannot block signals: {error}");
            return ExitCode::from(exit::FAILURE);
        }
    };
    logging::init(cli.global.verbose);
    // From here on hushbox may hold values: no core dumps, not dumpable.
    let hardening = hushbox::harden::harden();
    match commands::dispatch(cli, signals, hardening) {
        Ok(code) => ExitCode::from(code),
        Err(failure) => {
            for error in &failure.errors {
                commands::print_error(error);
            }
            ExitCode::from(failure.exit_code())
        }
    }
}
