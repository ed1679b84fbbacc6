//! Links the `hushbox` binary as a non-PIE executable. A PIE of this size
//! carries ~22,000 dynamic relocations that the loader applies, and whose
//! pages it dirties, at every start: about 0.3 ms of the 2.6 ms an
//! entrypoint took to run `true`. Nothing else (tests, the library) changes.
//! A static build (`crt-static`, as examples/container/build.sh makes) is
//! left to rustc's own `-static-pie`, which `-no-pie` would contradict.
//!
//! It also records the commit the binary is built from, for `--version`:
//! `$HUSHBOX_COMMIT` when set (a build from a tarball can say), else
//! `git rev-parse --short HEAD`, else `unknown`.

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=HUSHBOX_COMMIT");
    let commit = std::env::var("HUSHBOX_COMMIT")
        .ok()
        .filter(|commit| !commit.is_empty())
        .or_else(git_commit)
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=HUSHBOX_COMMIT={commit}");
    let features = std::env::var("CARGO_CFG_TARGET_FEATURE").unwrap_or_default();
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if os == "linux" && !features.split(',').any(|feature| feature == "crt-static") {
        println!("cargo:rustc-link-arg-bins=-no-pie");
    }
}

/// The short hash of HEAD, and rebuild when HEAD moves; `None` outside a
/// git checkout or without git.
fn git_commit() -> Option<String> {
    let git = |args: &[&str]| -> Option<String> {
        let output = Command::new("git").args(args).output().ok()?;
        let text = String::from_utf8(output.stdout).ok()?;
        (output.status.success() && !text.trim().is_empty()).then(|| text.trim().to_owned())
    };
    let commit = git(&["rev-parse", "--short", "HEAD"])?;
    // HEAD names the branch; the branch's ref (loose or packed) names the
    // commit. In a worktree these live in different directories: ask git.
    for path in ["HEAD", "packed-refs"] {
        if let Some(path) = git(&["rev-parse", "--git-path", path]) {
            println!("cargo:rerun-if-changed={path}");
        }
    }
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"])
        && let Some(path) = git(&["rev-parse", "--git-path", &branch])
    {
        println!("cargo:rerun-if-changed={path}");
    }
    Some(commit)
}
