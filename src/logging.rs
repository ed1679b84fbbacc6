//! Log set-up: human-readable lines on stderr. Logs name secrets and
//! references, never values (every backend's canary test checks this).

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. `HUSHBOX_LOG` (a full filter such as
/// `debug` or `hushbox=trace`) wins over `-v` flags; the default is `warn`.
pub fn init(verbosity: u8) {
    let default = match verbosity {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = std::env::var("HUSHBOX_LOG")
        .ok()
        .and_then(|text| EnvFilter::try_new(text).ok())
        .unwrap_or_else(|| EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .without_time()
        .try_init();
}
