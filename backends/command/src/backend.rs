//! [`CommandBackend`]: secrets from a plugin program, one process per secret
//! (`one-shot`) or one per batch (`json`).

use std::fmt;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::time::Instant;

use hushbox_core::{
    Backend, Capabilities, CredentialSources, DEFAULT_CONCURRENCY, Document, Environment, Error,
    Result, SecretRef, async_trait,
};
use tokio::sync::Semaphore;

use crate::config::{CommandConfig, Protocol, Settings};
use crate::error::{CommandError, NotFoundBy};
use crate::json;
use crate::process::{self, Finished, Stderr};

/// A `command` instance: runs its plugin for each fetch (or each batch).
pub struct CommandBackend {
    name: String,
    settings: Settings,
    /// At most this many plugin processes at once, however many fetches
    /// run concurrently.
    processes: Semaphore,
}

impl fmt::Debug for CommandBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CommandBackend")
            .field("name", &self.name)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl CommandBackend {
    /// An instance named `name` (its references' scheme) running what
    /// `config` says, with its environment taken from `env` now.
    ///
    /// # Errors
    /// [`ErrorKind::Config`](hushbox_core::ErrorKind::Config) for settings
    /// that cannot act, naming the setting.
    pub fn new(name: &str, config: &CommandConfig, env: &Environment) -> Result<Self> {
        let settings = config.resolve(env)?;
        if settings.debug_stderr {
            tracing::warn!(
                backend = name,
                "`debug_stderr` is on: the plugin's stderr and its error messages are logged at \
                 debug level, and CLIs may print secret values there; turn it off outside \
                 plugin development"
            );
        }
        Ok(Self {
            name: name.to_owned(),
            settings,
            processes: Semaphore::new(DEFAULT_CONCURRENCY),
        })
    }

    async fn fetch_one_shot(&self, location: &SecretRef) -> Result<Document> {
        let args = self.settings.argv.args_for(location)?;
        let _permit = self.processes.acquire().await.map_err(|_| closed())?;
        let started = Instant::now();
        let limit = self.settings.size_limit;
        let finished = process::run(&self.settings, &args, None, |stdout| {
            process::read_value(stdout, limit)
        })
        .await?;
        self.log_finished(location, &finished, 1, started);
        // A reader that gave up killed the plugin: its reason comes first.
        let mut value = finished.stdout?;
        self.check_status(finished.status, &finished.stderr)?;
        if self.settings.trim_newline {
            value.trim_one_trailing_newline();
        }
        if value.len() > limit {
            return Err(CommandError::TooLarge { limit }.into());
        }
        Ok(Document::new(value))
    }

    /// Maps a failed exit onto an error; `Ok` for success.
    fn check_status(&self, status: ExitStatus, stderr: &Stderr) -> Result<()> {
        let program = || self.settings.argv.program().to_owned();
        if status.success() {
            return Ok(());
        }
        let Some(code) = status.code() else {
            return Err(CommandError::Signalled {
                program: program(),
                signal: status.signal().unwrap_or(0),
            }
            .into());
        };
        if self.settings.not_found_exit_codes.contains(&code) {
            return Err(CommandError::NotFound {
                program: program(),
                reason: NotFoundBy::ExitCode(code),
            }
            .into());
        }
        if let Some(pattern) = &self.settings.not_found_pattern {
            // A copy for the match, wiped when it drops: stderr may hold
            // values, and regex-lite matches text.
            let text = zeroize::Zeroizing::new(String::from_utf8_lossy(&stderr.kept).into_owned());
            if pattern.is_match(&text) {
                return Err(CommandError::NotFound {
                    program: program(),
                    reason: NotFoundBy::Pattern(code),
                }
                .into());
            }
        }
        Err(CommandError::Exited {
            program: program(),
            code,
            stderr_len: stderr.len,
        }
        .into())
    }

    /// Runs one batch through the JSON protocol.
    async fn fetch_batch(&self, locations: &[SecretRef]) -> Vec<Result<Document>> {
        if locations.is_empty() {
            return Vec::new();
        }
        let _permit = match self.processes.acquire().await {
            Ok(permit) => permit,
            Err(_) => return every(locations, &closed()),
        };
        let started = Instant::now();
        let requests = json::requests(locations);
        let args = self.settings.argv.plain_args();
        let asked = locations.len();
        let limit = self.settings.size_limit;
        let keep_messages = self.settings.debug_stderr;
        let finished = process::run(&self.settings, &args, Some(requests), |stdout| {
            json::read_replies(stdout, asked, limit, keep_messages)
        })
        .await;
        let finished = match finished {
            Ok(finished) => finished,
            Err(error) => return every(locations, &error.into()),
        };
        self.log_finished(&locations[0], &finished, asked, started);
        // A reader that gave up killed the plugin: its reason comes first.
        let answers = match finished.stdout {
            Ok(answers) => answers,
            Err(error) => return every(locations, &error.into()),
        };
        if let Err(error) = self.check_status(finished.status, &finished.stderr) {
            return every(locations, &error);
        }
        let answered = answers.len();
        let mut results: Vec<Result<Document>> = Vec::with_capacity(asked);
        for (location, answer) in locations.iter().zip(answers) {
            if let Some(message) = &answer.message {
                tracing::debug!(
                    secret = %location,
                    message = %String::from_utf8_lossy(message),
                    "the plugin's message (debug_stderr is on)"
                );
            }
            results.push(
                answer
                    .value
                    .map(Document::new)
                    .map_err(|error| Error::from(error).with_subject(location)),
            );
        }
        for location in &locations[answered..] {
            results.push(Err(Error::from(CommandError::Unanswered {
                program: self.settings.argv.program().to_owned(),
                answered,
                asked,
            })
            .with_subject(location)));
        }
        results
    }

    /// Logs how a run ended: exit status, how much it wrote to stderr, how
    /// long it took. Its stderr itself only with `debug_stderr`.
    fn log_finished<T>(
        &self,
        first: &SecretRef,
        finished: &Finished<T>,
        requests: usize,
        started: Instant,
    ) {
        let Stderr { len, kept } = &finished.stderr;
        tracing::debug!(
            backend = %self.name,
            secret = %first,
            requests,
            program = self.settings.argv.program(),
            exit_code = ?finished.status.code(),
            signal = ?finished.status.signal(),
            stderr_bytes = len,
            elapsed_ms = started.elapsed().as_millis(),
            "the plugin finished"
        );
        if self.settings.debug_stderr && *len > 0 {
            tracing::debug!(
                backend = %self.name,
                stderr = %String::from_utf8_lossy(kept),
                "the plugin's stderr (debug_stderr is on)"
            );
        }
    }
}

/// The same error for every location, each naming its own.
fn every(locations: &[SecretRef], error: &Error) -> Vec<Result<Document>> {
    locations
        .iter()
        .map(|location| Err(Error::new(error.kind(), error.message()).with_subject(location)))
        .collect()
}

fn closed() -> Error {
    Error::new(
        hushbox_core::ErrorKind::Unavailable,
        "the backend is shutting down",
    )
}

#[async_trait]
impl Backend for CommandBackend {
    fn name(&self) -> &str {
        &self.name
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            fields: true,
            ..Capabilities::default()
        }
    }

    async fn fetch(&self, location: &SecretRef) -> Result<Document> {
        let location = location.location();
        match self.settings.protocol {
            Protocol::OneShot => self
                .fetch_one_shot(&location)
                .await
                .map_err(|error| error.with_subject(&location)),
            Protocol::Json => self
                .fetch_batch(std::slice::from_ref(&location))
                .await
                .pop()
                .unwrap_or_else(|| Err(closed().with_subject(&location))),
        }
    }

    async fn fetch_many(&self, locations: &[SecretRef]) -> Vec<Result<Document>> {
        match self.settings.protocol {
            Protocol::Json => {
                let locations: Vec<SecretRef> = locations.iter().map(SecretRef::location).collect();
                self.fetch_batch(&locations).await
            }
            Protocol::OneShot => hushbox_core::fetch_each(self, locations).await,
        }
    }

    /// The variables the instance passes to its plugin besides `PATH` and
    /// `HOME`: they are the plugin's credentials (`OP_SERVICE_ACCOUNT_TOKEN`,
    /// `AZURE_*`), so the program hushbox starts does not inherit them.
    fn credential_sources(&self) -> CredentialSources {
        CredentialSources {
            variables: self
                .settings
                .env
                .iter()
                .map(|(name, _)| name.clone())
                .filter(|name| name != "PATH" && name != "HOME")
                .collect(),
            files: Vec::new(),
        }
    }
}
