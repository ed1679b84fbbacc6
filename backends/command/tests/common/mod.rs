//! What the command backend's tests share: the example plugin, a Python to
//! run it with, and a directory of fixtures it serves.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use hushbox_core::{Environment, Error, Result, async_trait};
use hushbox_testkit::Seeder;

/// The example plugin in `examples/plugins/`, as shipped.
pub fn files_plugin() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/plugins/files.py");
    let path = path
        .canonicalize()
        .unwrap_or_else(|error| panic!("cannot find {}: {error}", path.display()));
    path.to_str().expect("a UTF-8 path").to_owned()
}

/// Debian's Python 3 (the `python3` package), else the first on `PATH`.
pub fn python() -> String {
    if Path::new("/usr/bin/python3").exists() {
        return "/usr/bin/python3".to_owned();
    }
    which("python3").unwrap_or_else(|| {
        panic!("these tests run plugins written in Python: install python3 (Debian: apt-get install -y python3)")
    })
}

/// The full path of `program` on `PATH`, if it is there.
pub fn which(program: &str) -> Option<String> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
        .map(|found| found.to_str().expect("a UTF-8 path").to_owned())
}

/// An environment for building instances: this process's `PATH` and
/// `HOME`, plus `extra`.
pub fn environment(extra: &[(&str, &str)]) -> Environment {
    let mut env = Environment::from_pairs(extra.iter().copied());
    for name in ["PATH", "HOME"] {
        if let Some(value) = std::env::var_os(name) {
            env.set(name, value);
        }
    }
    env
}

/// Writes each fixture to `root/path`, as the example plugin reads it.
pub struct DirSeeder(pub PathBuf);

#[async_trait]
impl Seeder for DirSeeder {
    async fn seed(&self, path: &str, bytes: &[u8]) -> Result<()> {
        let target = self.0.join(path);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|error| Error::io("cannot create the fixture's directory", error))?;
        }
        std::fs::write(&target, bytes)
            .map_err(|error| Error::io("cannot write the fixture", error).with_subject(path))
    }
}

/// Builds a `CommandConfig` from manifest text, as the registry would.
pub fn config(toml: &str) -> hushbox_command::CommandConfig {
    use serde::Deserialize;
    let table: hushbox_core::toml::Table = hushbox_core::toml::from_str(toml).expect("valid TOML");
    hushbox_command::CommandConfig::deserialize(hushbox_core::toml::Value::Table(table))
        .expect("valid settings")
}

/// A TOML string literal for `text`.
pub fn quoted(text: &str) -> String {
    hushbox_core::toml::Value::String(text.to_owned()).to_string()
}
