//! The benchmark behind `scripts/bench-aws`: reads N secrets from a
//! Secrets Manager endpoint with `BatchGetSecretValue` (20 per call) or with
//! one `GetSecretValue` per secret (16 at a time, the core's default
//! concurrency), each round on a fresh backend, as a one-shot `hushbox`
//! run does.
//!
//! ```text
//! bench seed  COUNT             create bench/000 … bench/COUNT-1 (idempotent)
//! bench fetch COUNT MODE ROUNDS time ROUNDS reads of all COUNT; MODE is batched or single
//! ```
//!
//! The endpoint, region and keys come from the standard variables
//! (`AWS_ENDPOINT_URL`, `AWS_REGION`, `AWS_ACCESS_KEY_ID`, …). Call counts
//! are the script's business (moto's request recorder), so that what is
//! counted is what the server saw.

use std::time::{Duration, Instant};

use aws_sdk_secretsmanager::Client;
use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
use hushbox_aws::{AwsBackend, AwsConfig};
use hushbox_core::{Backend, Environment, SecretRef};

fn name(index: usize) -> String {
    format!("bench/{index:03}")
}

fn usage() -> ! {
    eprintln!("usage: bench seed COUNT | bench fetch COUNT batched|single ROUNDS");
    std::process::exit(2)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let count = |text: &String| text.parse::<usize>().unwrap_or_else(|_| usage());
    match args.as_slice() {
        [command, n] if command == "seed" => runtime.block_on(seed(count(n))),
        [command, n, mode, rounds] if command == "fetch" => {
            let batched = match mode.as_str() {
                "batched" => true,
                "single" => false,
                _ => usage(),
            };
            runtime.block_on(fetch(count(n), batched, count(rounds)))
        }
        _ => usage(),
    }
}

async fn seed(count: usize) {
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(
            aws_smithy_http_client::Builder::new()
                .tls_provider(Provider::Rustls(CryptoMode::Ring))
                .build_https(),
        )
        .load()
        .await;
    let client = Client::new(&sdk);
    for index in 0..count {
        let value = format!(
            r#"{{"user":"svc-{index}","password":"bench-{index:03}-{}"}}"#,
            "x".repeat(32)
        );
        let created = client
            .create_secret()
            .name(name(index))
            .secret_string(value)
            .send()
            .await;
        if let Err(error) = created {
            let exists = error
                .as_service_error()
                .is_some_and(|e| e.is_resource_exists_exception());
            assert!(exists, "CreateSecret {}: {error:?}", name(index));
        }
    }
    println!("seeded {count} secrets");
}

async fn fetch(count: usize, batched: bool, rounds: usize) {
    let locations: Vec<SecretRef> = (0..count)
        .map(|index| {
            format!("aws://{}", name(index))
                .parse()
                .expect("a reference")
        })
        .collect();
    let env = Environment::from_process();
    let mut times = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        // A fresh backend per round: a new client, credentials and
        // connections, as in a one-shot `hushbox inject`.
        let backend = AwsBackend::new("aws", AwsConfig::default(), &env).expect("the backend");
        let backend = if batched {
            backend
        } else {
            backend.without_batching()
        };
        let started = Instant::now();
        let results = backend.fetch_many(&locations).await;
        times.push(started.elapsed());
        for (location, result) in locations.iter().zip(results) {
            if let Err(error) = result {
                panic!("{location}: {error}");
            }
        }
    }
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let mean = times.iter().map(|d| ms(*d)).sum::<f64>() / times.len() as f64;
    println!(
        "mode={} secrets={count} rounds={rounds} min_ms={:.1} median_ms={:.1} mean_ms={mean:.1} max_ms={:.1}",
        if batched { "batched" } else { "single" },
        ms(times[0]),
        ms(times[times.len() / 2]),
        ms(times[times.len() - 1]),
    );
}
