//! Where hushbox keeps secret values in memory, seen from outside: a user
//! who may lock no memory at all still gets every secret, and is told once,
//! not once per value, that the values are less protected.

mod common;

use common::users::LocalUser;
use common::{code, stderr, tmpfs_dir};

use std::fmt::Write as _;

const HUSHBOX: &str = env!("CARGO_BIN_EXE_hushbox");

#[test]
fn without_lockable_memory_every_secret_is_delivered_with_one_warning() {
    const N: usize = 300;
    let victim = LocalUser::victim();
    let work = tmpfs_dir();
    victim.chown(work.path());
    let mut env = String::new();
    let mut manifest = format!(
        "version = 1\n[output]\ndir = \"{}\"\n",
        work.path().join("out").display()
    );
    for i in 0..N {
        writeln!(env, "K{i}=value-{i:04}").unwrap();
        write!(manifest, "[secrets.k{i}]\nref = \"file://app.env#K{i}\"\n").unwrap();
    }
    for (name, text) in [("app.env", &env), ("hushbox.toml", &manifest)] {
        let path = work.path().join(name);
        std::fs::write(&path, text).unwrap();
        victim.chown(&path);
    }
    // `ulimit -l 0`: neither memfd_secret(2) nor mlock can get a page.
    let output = victim
        .command("sh")
        .arg("-c")
        .arg("ulimit -l 0 && exec \"$0\" inject")
        .arg(HUSHBOX)
        .current_dir(work.path())
        .output()
        .unwrap();
    let text = stderr(&output);
    assert_eq!(code(&output), 0, "{text}");
    for i in [0, N / 2, N - 1] {
        let value = std::fs::read(work.path().join(format!("out/k{i}"))).unwrap();
        assert_eq!(value, format!("value-{i:04}").as_bytes());
    }
    let count = |needle: &str| text.lines().filter(|line| line.contains(needle)).count();
    assert_eq!(
        count("cannot lock the memory holding secret values"),
        1,
        "{text}"
    );
    assert_eq!(count("cannot map more memfd_secret(2) memory"), 1, "{text}");
    assert_eq!(count("WARN"), 2, "{text}");
}
