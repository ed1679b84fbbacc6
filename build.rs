//! Links the `hushbox` binary as a non-PIE executable. A PIE of this size
//! carries ~22,000 dynamic relocations that the loader applies, and whose
//! pages it dirties, at every start: about 0.3 ms of the 2.6 ms an
//! entrypoint took to run `true`. Nothing else (tests, the library) changes.
//! A static build (`crt-static`, as examples/container/build.sh makes) is
//! left to rustc's own `-static-pie`, which `-no-pie` would contradict.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let features = std::env::var("CARGO_CFG_TARGET_FEATURE").unwrap_or_default();
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if os == "linux" && !features.split(',').any(|feature| feature == "crt-static") {
        println!("cargo:rustc-link-arg-bins=-no-pie");
    }
}
