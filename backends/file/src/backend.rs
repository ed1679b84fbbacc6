//! [`FileBackend`]: reads secrets from files, never beyond a size limit.

use std::fmt;
use std::fs::File;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use hushbox_core::{
    Backend, Capabilities, Document, Error, Format, Result, SecretRef, SecretValue, Trust,
    async_trait,
};
use tracing::Instrument;

use crate::config::FileConfig;
use crate::error::FileError;

/// A `file` backend instance: `file:///abs/path` reads an absolute path,
/// `file://relative/path` a path relative to its base directory (the
/// manifest's directory).
///
/// Read-only: it delivers secrets that something else put on disk (a host
/// mount, a Compose `file:` secret, a kubelet volume), so `put`, `list` and
/// `delete` are [`hushbox_core::ErrorKind::Unsupported`].
pub struct FileBackend {
    name: String,
    base_dir: PathBuf,
    max_size: usize,
    trust: Trust,
}

impl FileBackend {
    /// An instance named `name` (the scheme of its references) that
    /// resolves relative paths against `base_dir`.
    ///
    /// Fails with [`hushbox_core::ErrorKind::Config`] for invalid settings.
    pub fn new(
        name: impl Into<String>,
        base_dir: impl Into<PathBuf>,
        config: FileConfig,
    ) -> Result<Self> {
        Ok(Self {
            name: name.into(),
            base_dir: base_dir.into(),
            max_size: config.size_limit()?,
            trust: Trust::default(),
        })
    }

    /// Whom this instance trusts to write the files it reads (by default
    /// the caller and root; see [`hushbox_core::trust`]).
    pub fn with_trust(mut self, trust: Trust) -> Self {
        self.trust = trust;
        self
    }

    /// The file a location names. The file backend takes no `?parameters`:
    /// refusing them keeps a typo from being silently ignored.
    fn resolve(&self, location: &SecretRef) -> Result<PathBuf> {
        if let Some(name) = location.params().keys().next() {
            return Err(Error::config(format!(
                "the file backend takes no parameters, but `{name}` is given"
            ))
            .with_subject(location));
        }
        let path = Path::new(location.path());
        // `Path::join` would keep an absolute path as it is anyway; the
        // branch says so for the reader.
        Ok(if path.is_absolute() {
            path.to_owned()
        } else {
            self.base_dir.join(path)
        })
    }
}

/// `.env` files are addressed by their keys, everything else as JSON.
fn format_of(location: &SecretRef) -> Format {
    if location.path().ends_with(".env") {
        Format::DotEnv
    } else {
        Format::Json
    }
}

/// Reads `path` whole, refusing more than `limit` bytes, and anything
/// but a regular file, once `trust` accepts it. Blocking.
///
/// A file decides a secret's value, so one that another user owns or may
/// rewrite (or that sits where another user may replace it) is refused, as
/// the manifest is. Symlinks are followed when they could not have been
/// planted: kubelet and Compose secret mounts are symlinks into a data
/// directory.
///
/// The open is non-blocking, so a FIFO (whose open would wait for a writer
/// forever) opens at once and is then refused like a device or a socket:
/// none of them is a secret at rest, and reading one may never end. The
/// file's length sizes the buffer before the read, so the value is never
/// copied by a growing buffer; a file that grows while it is read still
/// cannot go past the limit, since `read_bounded` counts what it reads.
fn read_file(trust: &Trust, path: &Path, limit: usize) -> Result<SecretValue, FileError> {
    let file = trust
        .open_file(path, "the file")
        .map_err(|error| FileError::open(path, error))?;
    read_opened(file, path, limit)
}

/// Reads an opened file whole, refusing more than `limit` bytes.
fn read_opened(mut file: File, path: &Path, limit: usize) -> Result<SecretValue, FileError> {
    // Metadata of the open file, not of the path, so what is checked is what
    // is read even if the path is replaced meanwhile.
    let metadata = file
        .metadata()
        .map_err(|error| FileError::io(path, "inspect", error))?;
    if metadata.is_dir() {
        return Err(FileError::IsDirectory {
            path: path.to_owned(),
        });
    }
    if !metadata.is_file() {
        return Err(FileError::NotRegular {
            path: path.to_owned(),
            kind: kind_of(&metadata.file_type()),
        });
    }
    let length = usize::try_from(metadata.len()).unwrap_or(usize::MAX);
    // A regular file's length is known: refuse before reading a byte. Some
    // (in /proc and /sys) report 0 and are caught by the bounded read.
    if length > limit {
        return Err(FileError::TooLarge {
            path: path.to_owned(),
            limit,
        });
    }
    tracing::debug!(path = %path.display(), "reading the secret file");
    SecretValue::read_bounded(&mut file, length, limit)
        .map_err(|error| FileError::read(path, error))
}

/// What a non-regular, non-directory file is, for the error message.
fn kind_of(file_type: &std::fs::FileType) -> &'static str {
    if file_type.is_fifo() {
        "a FIFO"
    } else if file_type.is_char_device() {
        "a character device"
    } else if file_type.is_block_device() {
        "a block device"
    } else if file_type.is_socket() {
        "a socket"
    } else {
        "a special file"
    }
}

impl fmt::Debug for FileBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileBackend")
            .field("name", &self.name)
            .field("base_dir", &self.base_dir)
            .field("max_size", &self.max_size)
            .field("trust", &self.trust)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl Backend for FileBackend {
    fn name(&self) -> &str {
        &self.name
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            fields: true,
            ..Capabilities::default()
        }
    }

    /// Reads the file a location names.
    ///
    /// # Behavior
    /// - A missing file, or a path through a non-directory, is `NotFound`;
    ///   a file the process may not read is `PermissionDenied`; a directory
    ///   is `Config`; a file over `max_size` is `TooLarge`, refused before
    ///   its content is read.
    /// - The bytes come back exactly as stored: no newline is trimmed.
    /// - Paths ending in `.env` are `.env` documents, others JSON.
    /// - No version and no lease.
    /// The file itself: the watcher follows it (and its directory, for
    /// editors that replace by rename) with inotify.
    fn watch_path(&self, location: &SecretRef) -> Option<PathBuf> {
        self.resolve(location).ok()
    }

    async fn fetch(&self, location: &SecretRef) -> Result<Document> {
        let span = tracing::debug_span!("file.fetch", secret = %location);
        let path = self.resolve(location)?;
        let limit = self.max_size;
        let trust = self.trust.clone();
        async move {
            // The blocking pool runs the read on another thread, which has
            // neither the caller's span nor its subscriber; carry both over
            // so what the read logs lands where the fetch's logs do.
            let span = tracing::Span::current();
            let dispatch = tracing::dispatcher::get_default(Clone::clone);
            let read_path = path.clone();
            let read = tokio::task::spawn_blocking(move || {
                tracing::dispatcher::with_default(&dispatch, || {
                    span.in_scope(|| read_file(&trust, &read_path, limit))
                })
            })
            .await
            .unwrap_or(Err(FileError::Interrupted { path }));
            match read {
                Ok(value) => Ok(Document {
                    format: format_of(location),
                    ..Document::new(value)
                }),
                Err(error) => {
                    let error = Error::from(error).with_subject(location);
                    tracing::debug!(kind = error.kind().label(), "the file could not be read");
                    Err(error)
                }
            }
        }
        .instrument(span)
        .await
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;
    use std::sync::Arc;

    use hushbox_core::{BackendContext, Environment, ErrorKind, Registry, toml};

    use super::*;

    struct Fixture {
        dir: tempfile::TempDir,
        backend: FileBackend,
    }

    fn fixture(config: FileConfig) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let backend = FileBackend::new("file", dir.path(), config).unwrap();
        Fixture { dir, backend }
    }

    impl Fixture {
        fn write(&self, name: &str, bytes: &[u8]) -> PathBuf {
            let path = self.dir.path().join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, bytes).unwrap();
            path
        }

        async fn fetch(&self, reference: &str) -> Result<Document> {
            self.backend.fetch(&reference.parse().unwrap()).await
        }

        async fn get(&self, reference: &str) -> Result<Vec<u8>> {
            let reference: SecretRef = reference.parse().unwrap();
            let document = self.backend.fetch(&reference.location()).await?;
            Ok(document.select(&reference)?.expose().to_vec())
        }
    }

    #[tokio::test]
    async fn relative_paths_resolve_against_the_base_dir() {
        let f = fixture(FileConfig::default());
        f.write("certs/key.pem", b"relative");
        assert_eq!(f.get("file://certs/key.pem").await.unwrap(), b"relative");
        assert_eq!(
            f.get("file://./certs/../certs/key.pem").await.unwrap(),
            b"relative"
        );
    }

    #[tokio::test]
    async fn absolute_paths_ignore_the_base_dir() {
        let f = fixture(FileConfig::default());
        let elsewhere = tempfile::tempdir().unwrap();
        let path = elsewhere.path().join("key");
        std::fs::write(&path, b"absolute").unwrap();
        let reference = format!("file://{}", path.display());
        assert!(reference.starts_with("file:///"));
        assert_eq!(f.get(&reference).await.unwrap(), b"absolute");
    }

    #[tokio::test]
    async fn symlinks_are_followed() {
        // kubelet and Compose secret mounts are symlinks into a data dir.
        let f = fixture(FileConfig::default());
        let target = f.write("..data/token", b"through a link");
        std::os::unix::fs::symlink(&target, f.dir.path().join("token")).unwrap();
        assert_eq!(f.get("file://token").await.unwrap(), b"through a link");
    }

    #[tokio::test]
    async fn the_size_limit_admits_exactly_the_limit() {
        let f = fixture(FileConfig::with_max_size(64));
        f.write("at-limit", &[b'a'; 64]);
        f.write("over-limit", &[b'a'; 65]);
        assert_eq!(f.get("file://at-limit").await.unwrap().len(), 64);
        let error = f.fetch("file://over-limit").await.unwrap_err();
        assert_eq!(error.kind(), ErrorKind::TooLarge);
        let message = error.to_string();
        assert!(message.starts_with("file://over-limit: "), "{message}");
        assert!(message.contains(&f.dir.path().join("over-limit").display().to_string()));
        assert!(message.contains("64 bytes"), "{message}");
    }

    #[test]
    fn a_regular_file_that_reports_no_length_is_still_bounded() {
        // Files in /proc report length 0 and have more to read.
        let error = read_file(&Trust::default(), Path::new("/proc/self/maps"), 16).unwrap_err();
        assert!(matches!(error, FileError::TooLarge { limit: 16, .. }));
    }

    #[test]
    fn fifos_and_devices_are_refused_without_blocking() {
        // Opening a FIFO for reading waits for a writer, forever: the
        // non-blocking open returns at once and the FIFO is refused.
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        for (path, kind) in [
            (fifo.as_path(), "a FIFO"),
            (Path::new("/dev/zero"), "a character device"),
        ] {
            let error = Error::from(read_file(&Trust::default(), path, 1000).unwrap_err());
            assert_eq!(error.kind(), ErrorKind::Config, "{path:?}");
            let message = error.to_string();
            assert!(message.contains("not a regular file"), "{message}");
            assert!(message.contains(kind), "{message}");
            assert!(message.contains(&path.display().to_string()), "{message}");
        }
    }

    #[tokio::test]
    async fn the_default_limit_is_the_core_default() {
        let f = fixture(FileConfig::default());
        let file = std::fs::File::create(f.dir.path().join("big")).unwrap();
        file.set_len(hushbox_core::DEFAULT_SIZE_LIMIT as u64 + 1)
            .unwrap();
        let error = f.fetch("file://big").await.unwrap_err();
        assert_eq!(error.kind(), ErrorKind::TooLarge);
    }

    #[tokio::test]
    async fn dotenv_files_have_fields_and_json_files_too() {
        let f = fixture(FileConfig::default());
        f.write(
            "app.env",
            b"# local\nDB_USER=app\nexport DB_PASSWORD=\"s3 cr#t\"\n",
        );
        f.write("app.json", br#"{"db": {"password": "json"}}"#);
        assert_eq!(
            f.get("file://app.env#DB_PASSWORD").await.unwrap(),
            b"s3 cr#t"
        );
        assert_eq!(
            f.get("file://app.json#/db/password").await.unwrap(),
            b"json"
        );
        let document = f.fetch("file://app.env").await.unwrap();
        assert_eq!(document.format, Format::DotEnv);
        let error = f.get("file://app.env#ABSENT").await.unwrap_err();
        assert_eq!(error.kind(), ErrorKind::NotFound);
        assert!(
            error.to_string().starts_with("file://app.env#ABSENT: "),
            "{error}"
        );
    }

    #[tokio::test]
    async fn a_directory_is_a_configuration_error() {
        let f = fixture(FileConfig::default());
        std::fs::create_dir(f.dir.path().join("certs")).unwrap();
        let error = f.fetch("file://certs").await.unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Config);
        assert!(error.to_string().contains("is a directory"), "{error}");
    }

    #[tokio::test]
    async fn missing_files_and_paths_through_files_are_not_found() {
        let f = fixture(FileConfig::default());
        f.write("file", b"x");
        for reference in ["file://absent", "file://file/below"] {
            let error = f.fetch(reference).await.unwrap_err();
            assert_eq!(error.kind(), ErrorKind::NotFound, "{reference}");
            assert!(error.to_string().starts_with(reference), "{error}");
        }
    }

    #[tokio::test]
    async fn an_unreadable_file_is_permission_denied() {
        // Root reads any file whatever its mode (CAP_DAC_OVERRIDE), so the
        // real EACCES is only observable unprivileged; the mapping itself is
        // tested in `error.rs` on every run.
        if process_is_privileged() {
            eprintln!("skipped: running as root, which reads mode-0000 files");
            return;
        }
        let f = fixture(FileConfig::default());
        let path = f.write("locked", b"x");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o000)).unwrap();
        let error = f.fetch("file://locked").await.unwrap_err();
        assert_eq!(error.kind(), ErrorKind::PermissionDenied);
    }

    /// Whether this process runs as root, read without `unsafe`: `/proc/self`
    /// belongs to the process's effective uid.
    fn process_is_privileged() -> bool {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata("/proc/self").is_ok_and(|metadata| metadata.uid() == 0)
    }

    #[tokio::test]
    async fn a_file_others_can_write_is_refused_by_its_reference() {
        // Whoever can write the file decides the secret's value.
        let f = fixture(FileConfig::default());
        let path = f.write("shared", b"chosen by someone else");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
        let error = f.fetch("file://shared").await.unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Config);
        let message = error.to_string();
        assert!(
            message.starts_with(&format!(
                "file://shared: refusing to use the file {}",
                path.display()
            )),
            "{message}"
        );
        assert!(message.contains("mode 0666"), "{message}");
    }

    #[tokio::test]
    async fn parameters_are_refused() {
        let f = fixture(FileConfig::default());
        f.write("key", b"x");
        let error = f.fetch("file://key?version=2").await.unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Config);
        assert!(error.to_string().contains("`version`"), "{error}");
    }

    #[tokio::test]
    async fn no_error_message_contains_file_contents() {
        let canary = "CANARY-9f1c2b7d";
        let f = fixture(FileConfig::with_max_size(200));
        f.write(
            "big.json",
            format!("{{\"k\": \"{}\"}}", canary.repeat(20)).as_bytes(),
        );
        f.write("broken.json", format!("{{\"k\": \"{canary}\", ").as_bytes());
        f.write("broken.env", format!("K={canary}\n\"{canary}\n").as_bytes());
        f.write("plain", canary.as_bytes());
        f.write("dir/inner", canary.as_bytes());
        let cases = [
            ("file://big.json", ErrorKind::TooLarge),
            ("file://broken.json#k", ErrorKind::MalformedPayload),
            ("file://broken.env#K", ErrorKind::MalformedPayload),
            ("file://plain#k", ErrorKind::MalformedPayload),
            ("file://plain/below", ErrorKind::NotFound),
            ("file://dir", ErrorKind::Config),
        ];
        for (reference, kind) in cases {
            let error = f.get(reference).await.unwrap_err();
            assert_eq!(error.kind(), kind, "{reference}");
            let mut texts = vec![error.to_string(), format!("{error:?}")];
            let mut source = std::error::Error::source(&error);
            while let Some(cause) = source {
                texts.push(cause.to_string());
                texts.push(format!("{cause:?}"));
                source = cause.source();
            }
            for text in texts {
                assert!(!text.contains("CANARY"), "{reference}: {text}");
            }
        }
    }

    #[test]
    fn reads_are_logged_by_path_from_the_blocking_thread() {
        let f = fixture(FileConfig::default());
        f.write("logged", b"value-not-in-logs");
        let (result, logs) = hushbox_testkit::capture_logs(|| {
            tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap()
                .block_on(f.fetch("file://logged"))
        });
        result.unwrap();
        assert!(logs.contains("reading the secret file"), "{logs}");
        assert!(logs.contains("secret=file://logged"), "{logs}");
        assert!(!logs.contains("value-not-in-logs"), "{logs}");
    }

    #[test]
    fn debug_lists_settings_only() {
        let f = fixture(FileConfig::with_max_size(10));
        let debug = format!("{:?}", f.backend);
        assert!(
            debug.starts_with("FileBackend { name: \"file\", base_dir: "),
            "{debug}"
        );
        assert!(debug.contains("max_size: 10, trust: Trust {"), "{debug}");
        assert_eq!(
            format!("{:?}", FileConfig::with_max_size(10)),
            "FileConfig { max_size: Some(10), .. }"
        );
    }

    fn build(settings: &str) -> Result<Arc<dyn Backend>> {
        let mut registry = Registry::new();
        crate::register(&mut registry);
        let env = Environment::default();
        let context = BackendContext {
            name: "host",
            base_dir: Path::new("/project"),
            env: &env,
        };
        registry.build("file", &context, toml::from_str(settings).unwrap())
    }

    #[test]
    fn the_registry_builds_instances_from_settings() {
        let backend = build("max_size = 4096").unwrap();
        assert_eq!(backend.name(), "host");
        assert!(format!("{backend:?}").contains("max_size: 4096"));
        assert_eq!(
            backend.capabilities(),
            Capabilities {
                fields: true,
                ..Capabilities::default()
            }
        );
        assert!(format!("{:?}", build("").unwrap()).contains("base_dir: \"/project\""));
    }

    #[test]
    fn bad_settings_are_configuration_errors() {
        for settings in [
            "max_size = 0",
            "max_size = -1",
            "maxsize = 1",
            "token = 'x'",
        ] {
            let error = build(settings).unwrap_err();
            assert_eq!(error.kind(), ErrorKind::Config, "{settings}");
            assert!(error.to_string().starts_with("[backends.host]"), "{error}");
        }
    }
}
