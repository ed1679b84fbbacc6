//! 10,000 generations swapped while 4 readers read continuously through
//! the `..data` link: every read sees one whole generation, never a torn,
//! empty or mixed one. This is what the watcher's rotation rests on.
//!
//! A reader that holds a generation longer than the writer keeps replaced
//! ones (1 s, and at most 64 of them: at this test's pace, well under a
//! second) finds its files gone (ENOENT) and starts over from `..data`, as
//! a reader of kubelet's volumes does; it never reads wrong bytes. Those
//! restarts are counted and must stay rare.

use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use hushbox::output::{Commit, GenerationWriter, OutputOptions};
use hushbox_core::SecretValue;

const GENERATIONS: u64 = 10_000;
const READERS: usize = 4;
/// Each file holds its generation number padded to this size, so a torn
/// read (part old, part new, or cut short) cannot pass for a whole one.
const FILE_SIZE: usize = 4096;
const NAMES: [&str; 3] = ["cert", "key", "ca"];

fn contents(generation: u64, name: &str) -> Vec<u8> {
    let mut text = format!("{generation}:{name}:").into_bytes();
    let fill = b'a' + (generation % 26) as u8;
    text.resize(FILE_SIZE, fill);
    text
}

/// Parses a file back, checking every byte.
fn generation_of(bytes: &[u8], name: &str) -> Result<u64, String> {
    if bytes.len() != FILE_SIZE {
        return Err(format!("{name}: {} bytes", bytes.len()));
    }
    let text = std::str::from_utf8(bytes).map_err(|_| format!("{name}: not text"))?;
    let (number, rest) = text.split_once(':').ok_or(format!("{name}: no number"))?;
    let generation: u64 = number.parse().map_err(|_| format!("{name}: bad number"))?;
    if bytes != contents(generation, name).as_slice() || !rest.starts_with(name) {
        return Err(format!(
            "{name}: torn or mixed contents in generation {generation}"
        ));
    }
    Ok(generation)
}

/// What one attempt found.
#[derive(Debug, PartialEq, Eq)]
enum Attempt {
    Whole(u64),
    /// The generation was pruned under the reader: start over.
    Retired,
}

/// One consistent read: `..data` resolved once (opened as a directory),
/// every file read relative to it.
fn read_generation(dir: &std::path::Path) -> Result<Attempt, String> {
    let data = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY)
        .open(dir.join("..data"))
        .map_err(|error| format!("..data: {error}"))?;
    let base = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&data));
    let mut seen = None;
    for name in NAMES {
        let mut bytes = Vec::new();
        match std::fs::File::open(format!("{base}/{name}")) {
            Ok(mut file) => file
                .read_to_end(&mut bytes)
                .map_err(|error| format!("{name}: {error}"))?,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Attempt::Retired);
            }
            Err(error) => return Err(format!("{name}: {error}")),
        };
        let generation = generation_of(&bytes, name)?;
        match seen {
            None => seen = Some(generation),
            Some(first) if first != generation => {
                return Err(format!("mixed generations {first} and {generation}"));
            }
            Some(_) => {}
        }
    }
    seen.map(Attempt::Whole)
        .ok_or_else(|| "no files".to_owned())
}

#[test]
fn ten_thousand_swaps_under_four_readers_never_tear() {
    let out = tempfile::Builder::new()
        .prefix("hushbox-torn-")
        .tempdir_in("/dev/shm")
        .unwrap();
    let dir = out.path().join("secrets");
    let writer = GenerationWriter::open(OutputOptions {
        dir: dir.clone(),
        uid: None,
        gid: None,
        mode: 0o400,
        allow_disk: false,
        lock_timeout: Duration::from_secs(10),
    })
    .unwrap();
    let commit = |generation: u64| {
        let values: Vec<SecretValue> = NAMES
            .iter()
            .map(|name| SecretValue::copy_from_slice(&contents(generation, name)))
            .collect();
        let files: Vec<(&str, &SecretValue)> = NAMES.iter().copied().zip(values.iter()).collect();
        writer.commit(&files).unwrap()
    };
    assert!(matches!(commit(0), Commit::Written { .. }));

    let done = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicU64::new(0));
    let retired = Arc::new(AtomicU64::new(0));
    let readers: Vec<_> = (0..READERS)
        .map(|_| {
            let (dir, done, reads) = (dir.clone(), Arc::clone(&done), Arc::clone(&reads));
            let retired = Arc::clone(&retired);
            std::thread::spawn(move || {
                let mut last = 0;
                let mut failures = Vec::new();
                while !done.load(Ordering::Relaxed) {
                    match read_generation(&dir) {
                        Ok(Attempt::Whole(generation)) => {
                            if generation < last {
                                failures.push(format!("went back from {last} to {generation}"));
                            }
                            last = generation;
                            reads.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(Attempt::Retired) => {
                            retired.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(error) => failures.push(error),
                    }
                }
                failures
            })
        })
        .collect();
    for generation in 1..=GENERATIONS {
        assert!(matches!(commit(generation), Commit::Written { .. }));
    }
    done.store(true, Ordering::Relaxed);
    let failures: Vec<String> = readers
        .into_iter()
        .flat_map(|reader| reader.join().unwrap())
        .collect();
    assert!(
        failures.is_empty(),
        "{} bad reads: {:?}",
        failures.len(),
        &failures[..failures.len().min(10)]
    );
    let (reads, retired) = (
        reads.load(Ordering::Relaxed),
        retired.load(Ordering::Relaxed),
    );
    assert!(
        reads >= GENERATIONS / 10,
        "the readers really read: {reads}"
    );
    assert!(
        retired * 100 <= reads,
        "generations pruned under a reader stay rare: {retired} of {reads}"
    );
    eprintln!("{reads} whole reads, {retired} restarted after a prune, 0 bad");
    assert_eq!(read_generation(&dir), Ok(Attempt::Whole(GENERATIONS)));
}
