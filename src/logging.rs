//! Log set-up: human-readable lines on stderr. Logs name secrets and
//! references, never values (every backend's canary test checks this).

use std::fmt;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;

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
        Some(filter) => {
            let quiet = QuietMissingAwsConfig::at(filter.max_level_hint());
            builder
                .with_env_filter(filter)
                .finish()
                .with(quiet)
                .try_init()
        }
        None => {
            let quiet = QuietMissingAwsConfig::at(Some(level));
            builder
                .with_max_level(level)
                .finish()
                .with(quiet)
                .try_init()
        }
    };
}

/// The AWS SDK warns when `AWS_CONFIG_FILE` (or
/// `AWS_SHARED_CREDENTIALS_FILE`) names a file that does not exist, and
/// then reads it as empty: a normal setup (a variable set for every
/// environment, the file only in some) that a user cannot act on. The SDK
/// itself says the same of the default `~/.aws/config` at debug level; this
/// layer holds its warning back unless debug output is on, and lets every
/// other SDK warning through.
struct QuietMissingAwsConfig {
    /// Whether debug output is on, when the warning is shown after all.
    show: bool,
}

impl QuietMissingAwsConfig {
    const TARGET: &'static str = "aws_runtime::env_config";
    const MESSAGE: &'static str = "config file overridden via environment variable not found";

    fn at(max_level: Option<LevelFilter>) -> Self {
        Self {
            show: max_level.is_some_and(|level| level >= LevelFilter::DEBUG),
        }
    }
}

impl<S: Subscriber> Layer<S> for QuietMissingAwsConfig {
    fn event_enabled(&self, event: &Event<'_>, _: Context<'_, S>) -> bool {
        let metadata = event.metadata();
        if self.show
            || *metadata.level() != Level::WARN
            || !metadata.target().starts_with(Self::TARGET)
        {
            return true;
        }
        let mut message = MessageIs {
            expected: Self::MESSAGE,
            matched: false,
        };
        event.record(&mut message);
        !message.matched
    }
}

/// Whether an event's message is exactly `expected`.
struct MessageIs {
    expected: &'static str,
    matched: bool,
}

impl Visit for MessageIs {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.matched = value == self.expected;
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            self.matched = format!("{value:?}") == self.expected;
        }
    }
}
