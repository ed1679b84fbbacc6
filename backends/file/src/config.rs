//! The settings of a `[backends.NAME]` section of kind `file`.

use std::fmt;

use hushbox_core::{DEFAULT_SIZE_LIMIT, Error, Result};
use serde::Deserialize;

/// Settings of a `file` instance. Every key is optional:
///
/// ```toml
/// [backends.host]
/// kind = "file"
/// max_size = 65536   # bytes; default 1 MiB (hushbox_core::DEFAULT_SIZE_LIMIT)
/// ```
#[derive(Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct FileConfig {
    /// The largest file, in bytes, that a fetch accepts. Larger files are
    /// refused with `ErrorKind::TooLarge` before their content is read.
    pub max_size: Option<usize>,
}

impl FileConfig {
    /// Settings with a size limit of `max_size` bytes.
    pub fn with_max_size(max_size: usize) -> Self {
        Self {
            max_size: Some(max_size),
        }
    }

    /// The size limit in force, refusing a limit of zero (which could only
    /// ever deliver empty files, and is surely a mistake).
    pub(crate) fn size_limit(&self) -> Result<usize> {
        match self.max_size {
            None => Ok(DEFAULT_SIZE_LIMIT),
            Some(0) => Err(Error::config("`max_size` must be at least 1 byte")),
            Some(limit) => Ok(limit),
        }
    }
}

// Written by hand, as for every backend's settings: a future setting may be
// sensitive, and a derived Debug would print it without anyone deciding to.
impl fmt::Debug for FileConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileConfig")
            .field("max_size", &self.max_size)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hushbox_core::ErrorKind;

    #[test]
    fn default_limit_and_zero_is_refused() {
        assert_eq!(
            FileConfig::default().size_limit().unwrap(),
            DEFAULT_SIZE_LIMIT
        );
        assert_eq!(FileConfig::with_max_size(10).size_limit().unwrap(), 10);
        let error = FileConfig::with_max_size(0).size_limit().unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Config);
    }
}
