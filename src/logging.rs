//! Log set-up: human-readable lines on stderr. Logs name secrets and
//! references, never values (every backend's canary test checks this).

use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::LevelFilter;

/// Installs the global subscriber. `HUSHBOX_LOG` (a full filter such as
/// `debug` or `hushbox=trace`) wins over `-v` flags; the default is `warn`.
pub fn init(verbosity: u8) {
    let level = match verbosity {
        0 => LevelFilter::WARN,
        1 => LevelFilter::INFO,
        2 => LevelFilter::DEBUG,
        _ => LevelFilter::TRACE,
    };
    // A plain level unless HUSHBOX_LOG asks for more: building an EnvFilter
    // compiles its directive parser, which an entrypoint pays at every start.
    let custom = std::env::var("HUSHBOX_LOG")
        .ok()
        .and_then(|text| EnvFilter::try_new(text).ok());
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_target(false)
        .without_time();
    let _ = match custom {
        Some(filter) => builder.with_env_filter(filter).try_init(),
        None => builder.with_max_level(level).try_init(),
    };
}
