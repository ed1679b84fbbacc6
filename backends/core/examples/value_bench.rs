//! Micro-benchmark of `SecretValue` storage: the cost of holding many small
//! values (the shape of a 1,000-secret store) and a few large ones.
//!
//!     cargo run --release -p hushbox-core --example value_bench

use std::time::Instant;

use hushbox_core::SecretValue;

fn main() {
    const SMALL: usize = 1000;
    const ROUNDS: usize = 50;
    let mut best_small = f64::MAX;
    let mut best_large = f64::MAX;
    let mut first_small = None;
    for _ in 0..ROUNDS {
        // 1,000 values of 33 bytes (a base64'd 24-byte secret and a
        // newline), made the ways backends make them, held at once.
        let start = Instant::now();
        let mut held = Vec::with_capacity(SMALL);
        for i in 0..SMALL {
            let text = format!("{i:032}\n");
            held.push(match i % 3 {
                0 => SecretValue::from_vec(text.into_bytes()),
                1 => SecretValue::copy_from_slice(text.as_bytes()),
                _ => SecretValue::read_bounded(&mut text.as_bytes(), text.len(), 1 << 20)
                    .expect("read"),
            });
        }
        drop(held);
        let elapsed = start.elapsed().as_secs_f64();
        // The first round pays for mapping memory: what a one-shot
        // `hushbox inject` pays.
        first_small.get_or_insert(elapsed);
        best_small = best_small.min(elapsed);

        // Eight values of 256 KiB.
        let start = Instant::now();
        let mut held = Vec::new();
        for _ in 0..8 {
            let big = vec![7u8; 256 * 1024];
            held.push(SecretValue::read_bounded(&mut &big[..], big.len(), 1 << 20).expect("read"));
        }
        drop(held);
        best_large = best_large.min(start.elapsed().as_secs_f64());
    }
    println!(
        "1000 small values made and dropped: {:.1} µs first, {:.1} µs best of {ROUNDS}",
        first_small.unwrap_or_default() * 1e6,
        best_small * 1e6
    );
    println!(
        "8 values of 256 KiB made and dropped: {:.1} µs (best of {ROUNDS})",
        best_large * 1e6
    );
}
