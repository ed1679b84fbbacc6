//! Which secrets engine serves a path: KV version 1, KV version 2, or
//! something else (database, PKI…), detected the way the `vault kv` CLI
//! does, through `sys/internal/ui/mounts/PATH`, and remembered per mount.
//!
//! Vault refuses to mount one engine inside another's path, so a mount
//! prefix, once known, answers for every path under it. Detections of paths
//! that share a first segment run one at a time, so a hundred references
//! under `secret/` cost one detection, not a hundred.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde::Deserialize;
use tracing::debug;

use crate::client::{Call, Client};
use crate::document::KvVersion;
use crate::error::VaultError;

/// The engine behind a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Engine {
    Kv(KvVersion),
    /// Any other engine: the path is read (or written, with parameters) as
    /// it is.
    Logical,
}

/// Where a path lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Mount {
    /// The mount's path with its trailing slash (`secret/`); empty when the
    /// mount could not be detected.
    pub(crate) path: String,
    pub(crate) engine: Engine,
}

impl Mount {
    /// The part of `path` below the mount.
    pub(crate) fn relative<'a>(&self, path: &'a str) -> &'a str {
        path.strip_prefix(&self.path)
            .or_else(|| path.strip_prefix(self.path.trim_end_matches('/')))
            .unwrap_or(path)
    }
}

#[derive(Default)]
pub(crate) struct Mounts {
    known: Mutex<Vec<Mount>>,
    detecting: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

#[derive(Deserialize)]
struct Answer {
    data: MountData,
}

#[derive(Deserialize)]
struct MountData {
    path: String,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    options: Option<MountOptions>,
}

#[derive(Deserialize)]
struct MountOptions {
    version: Option<String>,
}

impl Mounts {
    fn lookup(&self, path: &str) -> Option<Mount> {
        let known = self.known.lock().unwrap_or_else(|e| e.into_inner());
        known
            .iter()
            .filter(|mount| {
                path.starts_with(&mount.path) || path == mount.path.trim_end_matches('/')
            })
            .max_by_key(|mount| mount.path.len())
            .cloned()
    }

    /// The mount of `path`, detecting it on first use.
    pub(crate) async fn resolve(&self, client: &Client, path: &str) -> Result<Mount, VaultError> {
        if let Some(mount) = self.lookup(path) {
            return Ok(mount);
        }
        let first = path.split('/').next().unwrap_or_default().to_owned();
        let gate = {
            let mut detecting = self.detecting.lock().unwrap_or_else(|e| e.into_inner());
            Arc::clone(detecting.entry(first).or_default())
        };
        let _one_at_a_time = gate.lock().await;
        if let Some(mount) = self.lookup(path) {
            return Ok(mount);
        }
        let endpoint = format!("sys/internal/ui/mounts/{path}");
        match client.call(&Call::get(&endpoint)).await {
            Ok(answer) => {
                let answer: Answer =
                    serde_json::from_slice(answer.body.expose()).map_err(|_| {
                        VaultError::Malformed {
                            what: "the mount description is not the expected JSON",
                        }
                    })?;
                let engine = match (
                    answer.data.kind.as_str(),
                    answer
                        .data
                        .options
                        .and_then(|options| options.version)
                        .as_deref(),
                ) {
                    ("kv", Some("2")) => Engine::Kv(KvVersion::V2),
                    ("kv" | "generic", _) => Engine::Kv(KvVersion::V1),
                    _ => Engine::Logical,
                };
                let mut mount_path = answer.data.path;
                if !mount_path.ends_with('/') {
                    mount_path.push('/');
                }
                debug!(mount = %mount_path, ?engine, "detected the mount");
                let mount = Mount {
                    path: mount_path,
                    engine,
                };
                self.known
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(mount.clone());
                Ok(mount)
            }
            // No mount there, or the token may not see it: the path is read
            // as it is, and that read gives the real answer (404 or 403).
            Err(VaultError::NotFound { .. } | VaultError::Denied) => {
                debug!(path, "no mount detected; reading the path as it is");
                Ok(Mount {
                    path: String::new(),
                    engine: Engine::Logical,
                })
            }
            Err(error) => Err(error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longest_known_prefix_wins_and_relative_paths() {
        let mounts = Mounts::default();
        mounts.known.lock().unwrap().extend([
            Mount {
                path: "secret/".into(),
                engine: Engine::Kv(KvVersion::V2),
            },
            Mount {
                path: "team/kv/".into(),
                engine: Engine::Kv(KvVersion::V1),
            },
        ]);
        let mount = mounts.lookup("secret/app/db").unwrap();
        assert_eq!(mount.relative("secret/app/db"), "app/db");
        assert_eq!(mounts.lookup("team/kv/x").unwrap().path, "team/kv/");
        assert!(mounts.lookup("secretive/x").is_none());
        assert!(mounts.lookup("team/other").is_none());
    }
}
