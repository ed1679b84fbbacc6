//! hushbox-testkit: the conformance suite every hushbox backend runs.
//!
//! Each behaviour promised in the `# Behavior` lists of
//! [`hushbox_core::Backend`] is one public async function taking
//! `(backend, seeder, prefix)`, so a backend's tests can call them one by one;
//! [`run_all`] runs every one that the backend's [`Capabilities`] select,
//! under a fresh [`random_prefix`] so that suites can share a server.
//!
//! Fixtures go in through a [`Seeder`]: backends that can write use
//! [`PutSeeder`]; the others (or those whose tests should not trust their own
//! write path) seed through the server's API or the file system.
//!
//! # Runtime
//! Run the suite on a **current-thread** Tokio runtime (`#[tokio::test]`'s
//! default). [`canary_never_leaks`] captures logs with a thread-local
//! `tracing` subscriber, which only sees what runs on the test's thread; on
//! a multi-thread runtime it would miss the logs of other workers and pass
//! without having looked, so it refuses to run there.
//!
//! ```ignore
//! #[tokio::test]
//! async fn conformance() {
//!     let backend = MyBackend::new(/* … */);
//!     hushbox_testkit::run_all(&backend, &hushbox_testkit::PutSeeder(&backend)).await;
//! }
//! ```
//!
//! Failures panic with a message naming the behaviour and the backend, and
//! never print fixture bytes (only lengths and offsets), so that a failing
//! canary test does not itself print the canary.
#![warn(missing_docs, unreachable_pub)]
#![forbid(unsafe_code)]

mod canary;
mod check;
mod logs;
mod seed;
mod suite;

#[cfg(test)]
mod selftest;

use hushbox_core::{Backend, Capabilities};

pub use canary::{Canary, canary_never_leaks};
pub use logs::{LogCapture, capture_logs};
pub use seed::{PutSeeder, Seeder};
pub use suite::{
    concurrent_fetches, delete_removes, fetch_many_keeps_order_and_errors, field_extraction,
    list_is_sorted_and_complete, malformed_payload, missing_field_is_not_found,
    missing_path_is_not_found, put_overwrites, unsupported_operations_say_so, values_round_trip,
};

/// A fresh prefix for one run of the suite, `hushbox-test-<16 hex digits>`,
/// so that runs sharing a server (or a directory) never see each other's
/// fixtures.
pub fn random_prefix() -> String {
    format!("hushbox-test-{:016x}", rand::random::<u64>())
}

/// Runs every conformance test that `backend`'s capabilities select, under a
/// fresh [`random_prefix`].
///
/// Always: [`missing_path_is_not_found`], [`values_round_trip`],
/// [`concurrent_fetches`], [`fetch_many_keeps_order_and_errors`],
/// [`unsupported_operations_say_so`], [`canary_never_leaks`].
/// With `fields`: [`field_extraction`], [`missing_field_is_not_found`],
/// [`malformed_payload`]. With `write`: [`put_overwrites`]. With `list`:
/// [`list_is_sorted_and_complete`]. With `delete`: [`delete_removes`].
/// Leases are not exercised: they need a backend that issues them.
///
/// # Panics
/// On the first behaviour the backend gets wrong, naming it; and when
/// called on a multi-thread Tokio runtime (see the crate docs).
pub async fn run_all(backend: &dyn Backend, seeder: &dyn Seeder) {
    run_all_under(backend, seeder, &random_prefix()).await;
}

/// [`run_all`] under a prefix of the caller's choosing, for backends whose
/// paths must start somewhere particular: a KV mount (`secret/<random>`), an
/// absolute directory (`/tmp/…/<random>`). Include a [`random_prefix`] in it
/// so that runs do not share fixtures.
///
/// # Panics
/// As [`run_all`].
pub async fn run_all_under(backend: &dyn Backend, seeder: &dyn Seeder, prefix: &str) {
    let Capabilities {
        write,
        list,
        delete,
        fields,
        leases: _,
    } = backend.capabilities();

    missing_path_is_not_found(backend, seeder, prefix).await;
    values_round_trip(backend, seeder, prefix).await;
    if fields {
        field_extraction(backend, seeder, prefix).await;
        missing_field_is_not_found(backend, seeder, prefix).await;
        malformed_payload(backend, seeder, prefix).await;
    }
    concurrent_fetches(backend, seeder, prefix).await;
    fetch_many_keeps_order_and_errors(backend, seeder, prefix).await;
    unsupported_operations_say_so(backend, seeder, prefix).await;
    if write {
        put_overwrites(backend, seeder, prefix).await;
    }
    if list {
        list_is_sorted_and_complete(backend, seeder, prefix).await;
    }
    if delete {
        delete_removes(backend, seeder, prefix).await;
    }
    canary_never_leaks(backend, seeder, prefix).await;
}
