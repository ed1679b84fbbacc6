//! The watcher's status file, which `hushbox health` reads: names, times
//! and error messages (which never hold values), and no reference
//! parameters.
//!
//! ```json
//! {"format":1,"pid":7,"generation":3,"updated":1764530000,
//!  "secrets":{"db":{"last_success":1764529990,"max_stale":900,
//!                   "failures":0,"error":null,"lease_expires":null}}}
//! ```
//! Health is decided by the reader at read time, so a watcher that has
//! died (and stopped updating the file) turns unhealthy on its own.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hushbox_core::Error;
use serde::{Deserialize, Serialize};

/// The format version written and read.
const FORMAT: u32 = 1;

/// The whole file.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Status {
    /// The file's format.
    pub format: u32,
    /// The watcher's pid.
    pub pid: u32,
    /// How many generations the watcher has committed (1: the first).
    pub generation: u64,
    /// When the file was written (Unix seconds).
    pub updated: u64,
    /// Per secret, by name.
    pub secrets: BTreeMap<String, SecretStatus>,
    /// Set when the watcher stopped the program because a secret went
    /// stale (`fail_on_stale`).
    #[serde(default)]
    pub stopped: Option<String>,
}

/// One secret's state.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct SecretStatus {
    /// When it was last fetched (or found unchanged) successfully.
    pub last_success: u64,
    /// Seconds without success after which it is stale.
    pub max_stale: u64,
    /// Failed rounds since the last success.
    pub failures: u32,
    /// The last failure's message (names references, never values).
    pub error: Option<String>,
    /// When its lease or certificate expires, if it has one.
    pub lease_expires: Option<u64>,
}

/// Seconds since the Unix epoch.
pub fn unix(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl Status {
    /// A status for the watcher of this process.
    pub fn new() -> Self {
        Self {
            format: FORMAT,
            pid: std::process::id(),
            ..Self::default()
        }
    }

    /// `Ok` when every secret is fresh at `now`, else the reason, in one
    /// line.
    pub fn health(&self, now: SystemTime) -> Result<(), String> {
        if let Some(reason) = &self.stopped {
            return Err(reason.clone());
        }
        let now = unix(now);
        for (name, secret) in &self.secrets {
            let age = now.saturating_sub(secret.last_success);
            if age > secret.max_stale {
                let why = secret
                    .error
                    .as_deref()
                    .map_or_else(String::new, |error| format!(": {error}"));
                return Err(format!(
                    "secret `{name}` is stale: last fetched {age}s ago (max_stale {}s){why}",
                    secret.max_stale
                ));
            }
            if let Some(expires) = secret.lease_expires
                && expires <= now
                && secret.failures > 0
            {
                return Err(format!(
                    "secret `{name}`: its lease expired {}s ago and it could not be renewed",
                    now - expires
                ));
            }
        }
        Ok(())
    }

    /// Writes the file atomically (a temporary file in the same directory,
    /// renamed over it), mode 0644: it holds nothing secret, and `health`
    /// may run as another user.
    pub fn write(&self, path: &Path) -> Result<(), Error> {
        let dir = path.parent().unwrap_or(Path::new("."));
        let fail = |error: std::io::Error| {
            Error::io("cannot write the status file", error).with_subject(path.display())
        };
        let mut file = tempfile::Builder::new()
            .prefix("..status_tmp")
            .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644))
            .tempfile_in(dir)
            .map_err(fail)?;
        let text = serde_json::to_vec(self).expect("a status serializes");
        file.write_all(&text).map_err(fail)?;
        file.persist(path).map_err(|error| fail(error.error))?;
        Ok(())
    }

    /// Reads the file; errors say what `health` prints.
    pub fn read(path: &Path) -> Result<Self, String> {
        let text = std::fs::read(path).map_err(|error| {
            format!(
                "no status at {} ({error}); is a `--watch` running with this manifest?",
                path.display()
            )
        })?;
        let status: Status = serde_json::from_slice(&text)
            .map_err(|_| format!("{} is not a hushbox status file", path.display()))?;
        if status.format != FORMAT {
            return Err(format!(
                "{} has status format {}, this hushbox reads {FORMAT}",
                path.display(),
                status.format
            ));
        }
        Ok(status)
    }
}

/// Where the status of a plan lives.
pub fn path_of(plan: &crate::plan::Plan) -> PathBuf {
    plan.watch.status_file.clone()
}

/// Rounds a duration up to whole seconds for the file.
pub fn seconds(duration: Duration) -> u64 {
    duration.as_secs() + u64::from(duration.subsec_nanos() > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_secrets_and_stops_are_unhealthy() {
        let now = SystemTime::now();
        let mut status = Status::new();
        status.secrets.insert(
            "db".into(),
            SecretStatus {
                last_success: unix(now) - 10,
                max_stale: 60,
                ..Default::default()
            },
        );
        assert_eq!(status.health(now), Ok(()));
        status.secrets.get_mut("db").unwrap().last_success = unix(now) - 61;
        status.secrets.get_mut("db").unwrap().error = Some("vault unavailable".into());
        let reason = status.health(now).unwrap_err();
        assert!(reason.contains("`db` is stale") && reason.contains("vault unavailable"));
        status.secrets.get_mut("db").unwrap().last_success = unix(now);
        status.stopped = Some("stopped".into());
        assert!(status.health(now).is_err());
    }

    #[test]
    fn the_file_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("..status");
        let mut status = Status::new();
        status.generation = 4;
        status.write(&path).unwrap();
        assert_eq!(Status::read(&path).unwrap(), status);
        assert!(Status::read(&dir.path().join("nope")).is_err());
    }
}
