//! What a panic prints: where it happened, never a message that may quote a
//! value.
//!
//! Rust's default hook prints the panic's message, and the messages most
//! likely to reach users are built at run time from data: `Result::expect`
//! appends the error's `Debug`, `assert_eq!` prints both sides, and a
//! parser's error may quote its input. Any of them can hold a secret value,
//! so this hook prints a message only when it is a `&'static str` (text
//! written in the source, as `panic!("literal")` and `unreachable!()` make
//! it) and withholds every message formatted at run time.

use std::backtrace::{Backtrace, BacktraceStatus};

/// Replaces the default panic hook. Call first thing in `main`.
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let location = info.location().map_or_else(
            || "an unknown place".to_owned(),
            |location| format!("{}:{}", location.file(), location.line()),
        );
        let message = info
            .payload()
            .downcast_ref::<&'static str>()
            .copied()
            .unwrap_or("(message withheld: it was formatted at run time and could quote a value)");
        eprintln!("hushbox: internal error (a bug; please report it) at {location}: {message}");
        // Function names and addresses only; on when RUST_BACKTRACE asks.
        let backtrace = Backtrace::capture();
        if backtrace.status() == BacktraceStatus::Captured {
            eprintln!("{backtrace}");
        }
    }));
}
