//! Helpers every integration test of the binary uses. Each test binary
//! includes this module and uses only some of it.
#![allow(dead_code)]

pub mod moto;
pub mod users;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

/// The hushbox binary under test.
pub const HUSHBOX: &str = env!("CARGO_BIN_EXE_hushbox");

/// hushbox with `args`, run in `dir` with a clean environment: `PATH`, and
/// `HOME` set to `home`, nothing else.
pub fn hushbox_command(dir: &Path, home: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(HUSHBOX);
    command
        .args(args)
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap())
        .env("HOME", home);
    command
}

/// Fails (never skips) when `tool` is missing, naming the Debian package.
pub fn require_tool(tool: &str, package: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|output| output.status.success());
    assert!(
        found,
        "these tests need `{tool}` (Debian package `{package}`): apt-get install {package}"
    );
}

/// The exit code; panics if the process died of a signal.
pub fn code(output: &Output) -> i32 {
    output.status.code().expect("exited with a code")
}

/// Stdout as text.
pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Stderr as text.
pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A directory on tmpfs, removed after the test.
pub fn tmpfs_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("hushbox-test-")
        .tempdir_in("/dev/shm")
        .unwrap()
}

/// Runs `command` to the end with `stdin` (or nothing) on its standard input,
/// capturing stdout and stderr.
pub fn run_with_stdin(mut command: Command, stdin: Option<&[u8]>) -> Output {
    command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().unwrap();
    let mut pipe = child.stdin.take().unwrap();
    if let Some(bytes) = stdin {
        pipe.write_all(bytes).unwrap();
    }
    drop(pipe);
    child.wait_with_output().unwrap()
}
