//! The conformance suite, run on the command backend with the example
//! plugin (`examples/plugins/files.py`) in both protocols. Fixtures are
//! written straight into the directory the plugin serves.
//!
//! `#[tokio::test]` is a current-thread runtime, which the canary test's log
//! capture needs.

mod common;

use common::{DirSeeder, config, environment, files_plugin, python, quoted};
use hushbox_command::CommandBackend;
use hushbox_testkit::run_all;

fn backend(dir: &std::path::Path, protocol: &str) -> CommandBackend {
    let command = match protocol {
        "json" => format!(
            "[{}, {}, 'json']",
            quoted(&python()),
            quoted(&files_plugin())
        ),
        _ => format!(
            "[{}, {}, 'get', '{{path}}']",
            quoted(&python()),
            quoted(&files_plugin())
        ),
    };
    // One-shot values are kept raw: trimming a trailing newline is the
    // output's decision in the suite's contract, and `raw` says so here.
    let extra = match protocol {
        "json" => "protocol = 'json'",
        _ => "raw = true\nnot_found_exit_codes = [3]",
    };
    let settings = config(&format!(
        "command = {command}\nenv = ['FILES_PLUGIN_ROOT']\n{extra}"
    ));
    let root = dir.to_str().unwrap();
    CommandBackend::new(
        "plugin",
        &settings,
        &environment(&[("FILES_PLUGIN_ROOT", root)]),
    )
    .unwrap()
}

#[tokio::test]
async fn conformance_one_shot() {
    let dir = tempfile::tempdir().unwrap();
    let backend = backend(dir.path(), "one-shot");
    run_all(&backend, &DirSeeder(dir.path().to_owned())).await;
}

#[tokio::test]
async fn conformance_json_batches() {
    let dir = tempfile::tempdir().unwrap();
    let backend = backend(dir.path(), "json");
    run_all(&backend, &DirSeeder(dir.path().to_owned())).await;
}
