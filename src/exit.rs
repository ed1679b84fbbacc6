//! Exit codes: part of hushbox's contract, defined here and nowhere else.
//!
//! `exec` and `run` exit with the child's own code (or 128+n when it died of
//! signal n) once the child has started; these codes are for hushbox's own
//! failures. They follow BSD `sysexits.h` where one fits, so they rarely
//! collide with an application's small codes.

use hushbox_core::ErrorKind;

/// Success.
pub const OK: u8 = 0;
/// An unexpected internal failure.
pub const FAILURE: u8 = 1;
/// The command line is wrong (clap's own code for usage errors).
pub const USAGE: u8 = 2;
/// A secret's content is not what was asked for: undecryptable, tampered,
/// not JSON where a field was asked for, or too large.
pub const DATA: u8 = 65;
/// A required secret, field or version does not exist.
pub const NOT_FOUND: u8 = 66;
/// A backend could not be reached; trying again later may help.
pub const UNAVAILABLE: u8 = 69;
/// Reading or writing local files failed.
pub const IO: u8 = 74;
/// Authentication failed or access was denied.
pub const PERMISSION: u8 = 77;
/// The manifest, a reference, a flag value or the environment is wrong.
pub const CONFIG: u8 = 78;
/// The command to run exists but cannot be executed.
pub const NOT_EXECUTABLE: u8 = 126;
/// The command to run does not exist.
pub const COMMAND_NOT_FOUND: u8 = 127;

/// The exit code for a failure of this kind.
pub fn for_kind(kind: ErrorKind) -> u8 {
    match kind {
        ErrorKind::NotFound => NOT_FOUND,
        ErrorKind::PermissionDenied | ErrorKind::Unauthenticated => PERMISSION,
        ErrorKind::Unavailable => UNAVAILABLE,
        ErrorKind::Config | ErrorKind::Unsupported => CONFIG,
        ErrorKind::MalformedPayload | ErrorKind::TooLarge => DATA,
        ErrorKind::Io => IO,
        _ => FAILURE,
    }
}

/// The table printed in the README and by `hushbox help exit-codes`.
pub const TABLE: &[(u8, &str)] = &[
    (OK, "success"),
    (FAILURE, "internal error; for `health`: unhealthy"),
    (USAGE, "usage error (bad flags or arguments)"),
    (
        DATA,
        "a secret is undecryptable, tampered with, malformed or too large",
    ),
    (
        NOT_FOUND,
        "a required secret, field or version, or a file named to read, does not exist",
    ),
    (UNAVAILABLE, "a backend is unavailable (retrying may help)"),
    (IO, "local I/O failed"),
    (
        PERMISSION,
        "authentication failed or access was denied (a policy, a file's mode or owner)",
    ),
    (
        CONFIG,
        "the manifest, a reference, a flag, the environment or the output directory is wrong",
    ),
    (NOT_EXECUTABLE, "exec/run: the command cannot be executed"),
    (COMMAND_NOT_FOUND, "exec/run: the command was not found"),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_distinct() {
        let mut codes: Vec<u8> = TABLE.iter().map(|(code, _)| *code).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), TABLE.len());
    }

    #[test]
    fn every_kind_has_a_specific_code() {
        assert_eq!(for_kind(ErrorKind::NotFound), NOT_FOUND);
        assert_eq!(for_kind(ErrorKind::Unauthenticated), PERMISSION);
        assert_eq!(for_kind(ErrorKind::Unavailable), UNAVAILABLE);
        assert_eq!(for_kind(ErrorKind::TooLarge), DATA);
        assert_eq!(for_kind(ErrorKind::Io), IO);
        assert_eq!(for_kind(ErrorKind::Config), CONFIG);
    }
}
