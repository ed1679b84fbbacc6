//! Benchmark of the command backend's two protocols (`scripts/bench-command`):
//! COUNT secrets served by the example plugin (`examples/plugins/files.py`)
//! through one JSON batch, and through one one-shot process per secret, in
//! one run each, every value checked.
//!
//! Usage: bench PYTHON PLUGIN [COUNT]

use std::time::{Duration, Instant};

use hushbox_command::{CommandBackend, CommandConfig};
use hushbox_core::{Backend, Environment, SecretRef};
use serde::Deserialize;

fn backend(python: &str, plugin: &str, root: &str, json: bool) -> CommandBackend {
    let quote = |text: &str| hushbox_core::toml::Value::String(text.to_owned()).to_string();
    let toml = if json {
        format!(
            "command = [{}, {}, 'json']\nprotocol = 'json'\nenv = ['FILES_PLUGIN_ROOT']",
            quote(python),
            quote(plugin)
        )
    } else {
        format!(
            "command = [{}, {}, 'get', '{{path}}']\nraw = true\nenv = ['FILES_PLUGIN_ROOT']",
            quote(python),
            quote(plugin)
        )
    };
    let table: hushbox_core::toml::Table = hushbox_core::toml::from_str(&toml).unwrap();
    let config = CommandConfig::deserialize(hushbox_core::toml::Value::Table(table)).unwrap();
    let mut env = Environment::from_pairs([("FILES_PLUGIN_ROOT", root)]);
    if let Some(path) = std::env::var_os("PATH") {
        env.set("PATH", path);
    }
    CommandBackend::new("bench", &config, &env).unwrap()
}

async fn timed(
    backend: &CommandBackend,
    locations: &[SecretRef],
    expected: &[Vec<u8>],
    one_at_a_time: bool,
) -> Duration {
    let started = Instant::now();
    let results = if one_at_a_time {
        let mut results = Vec::new();
        for location in locations {
            results.push(backend.fetch(location).await);
        }
        results
    } else {
        backend.fetch_many(locations).await
    };
    let elapsed = started.elapsed();
    assert_eq!(results.len(), expected.len());
    for (result, value) in results.into_iter().zip(expected) {
        let document = result.unwrap_or_else(|error| panic!("{error}"));
        assert!(
            document.value.expose() == value.as_slice(),
            "a value came back different"
        );
    }
    elapsed
}

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(python), Some(plugin)) = (args.next(), args.next()) else {
        eprintln!("usage: bench PYTHON PLUGIN [COUNT]");
        std::process::exit(2);
    };
    let count: usize = args
        .next()
        .map_or(100, |text| text.parse().expect("a count"));
    let dir = tempfile::tempdir().unwrap();
    let mut locations = Vec::new();
    let mut expected = Vec::new();
    for index in 0..count {
        let value = format!("bench value {index:04}").into_bytes();
        std::fs::write(dir.path().join(format!("s{index:04}")), &value).unwrap();
        locations.push(format!("bench://s{index:04}").parse::<SecretRef>().unwrap());
        expected.push(value);
    }
    let root = dir.path().to_str().unwrap();
    let batch = backend(&python, &plugin, root, true);
    let one_shot = backend(&python, &plugin, root, false);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        // Not timed: brings Python and the plugin into the page cache, so
        // that neither protocol pays for the first read from disk.
        timed(&one_shot, &locations[..1], &expected[..1], true).await;
        let json = timed(&batch, &locations, &expected, false).await;
        let concurrent = timed(&one_shot, &locations, &expected, false).await;
        let sequential = timed(&one_shot, &locations, &expected, true).await;
        let ms = |duration: Duration| duration.as_secs_f64() * 1000.0;
        let ratio = |duration: Duration| duration.as_secs_f64() / json.as_secs_f64();
        println!("secrets: {count}, plugin: {plugin}, python: {python}");
        println!(
            "json batch (1 process):                  {:8.1} ms",
            ms(json)
        );
        println!(
            "one-shot, {count} processes, 16 at a time: {:8.1} ms  ({:.1}x the batch)",
            ms(concurrent),
            ratio(concurrent)
        );
        println!(
            "one-shot, {count} processes, one by one:   {:8.1} ms  ({:.1}x the batch)",
            ms(sequential),
            ratio(sequential)
        );
    });
}
