//! [`AwsBackend`]: reads secrets from AWS Secrets Manager.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::config::{Credentials, Region};
use aws_sdk_secretsmanager::primitives::Blob;
use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
use futures::StreamExt;
use hushbox_core::{
    Backend, Capabilities, DEFAULT_CONCURRENCY, Document, Environment, Error, Format, Result,
    SecretRef, SecretValue, async_trait,
};
use tokio::sync::OnceCell;
use tracing::Instrument;
use zeroize::Zeroize;

use crate::config::{AwsConfig, Settings, redact_userinfo};
use crate::error::AwsError;
use crate::target::{CURRENT, Plan, Target, answers};

/// How many `BatchGetSecretValue` calls one `fetch_many` runs at once.
const BATCH_CONCURRENCY: usize = 4;

/// How long a TCP (and TLS) connection may take to open. The SDK's own
/// default for recent behaviour versions.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(3100);

/// How long one attempt of a request may take, the answer included. A
/// batch of twenty 64 KiB secrets is about 1.7 MB.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(20);

/// An `aws` backend instance: `aws://NAME_OR_ARN[?version_stage=S|version_id=V][#field]`.
///
/// Read-only: `put`, `list` and `delete` are
/// [`hushbox_core::ErrorKind::Unsupported`]. Credentials come only from the
/// standard AWS credential chain; the SDK client is built on first use (the
/// chain is asynchronous), so building an instance does no I/O.
pub struct AwsBackend {
    name: String,
    config: AwsConfig,
    settings: Settings,
    client: OnceCell<Connection>,
    /// Set once `BatchGetSecretValue` is refused (an IAM policy that grants
    /// `GetSecretValue` only); later reads then go one by one.
    batch_refused: AtomicBool,
    batching: bool,
}

/// A built client and where it sends requests, for messages.
struct Connection {
    client: Client,
    endpoint: String,
}

/// What [`AwsBackend::check_version`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VersionCheck {
    /// The reference still resolves to the version already held.
    Unchanged,
    /// The reference now resolves to another version, which a fetch returns.
    Changed {
        /// The `VersionId` the reference resolves to now.
        version: String,
    },
}

impl AwsBackend {
    /// An instance named `name` (the scheme of its references), configured
    /// from `config` and, for what it leaves unset, the standard AWS
    /// variables of `env` (`AWS_REGION`, `AWS_ENDPOINT_URL*`, `AWS_PROFILE`,
    /// `AWS_MAX_ATTEMPTS`, and the access keys of the environment link of
    /// the credential chain). The rest of the chain (profile files, web
    /// identity, container credentials, instance metadata) is aws-config's,
    /// which reads the process environment.
    ///
    /// Fails with [`hushbox_core::ErrorKind::Config`] for invalid settings.
    pub fn new(name: impl Into<String>, config: AwsConfig, env: &Environment) -> Result<Self> {
        let settings = Settings::resolve(&config, env)?;
        Ok(Self {
            name: name.into(),
            config,
            settings,
            client: OnceCell::new(),
            batch_refused: AtomicBool::new(false),
            batching: true,
        })
    }

    /// The same instance with `BatchGetSecretValue` turned off, so that
    /// [`Backend::fetch_many`] makes one `GetSecretValue` call per secret.
    /// For benchmarks and for comparing the two paths in tests.
    pub fn without_batching(mut self) -> Self {
        self.batching = false;
        self
    }

    /// The SDK client, built on first use. A failure is not kept: the next
    /// call tries again. Its error has no subject yet; callers name the
    /// reference.
    async fn connection(&self) -> Result<&Connection> {
        self.client
            .get_or_try_init(|| connect(&self.name, &self.settings))
            .await
    }

    /// Whether the secret a reference names has moved to another version
    /// than `held_version` (the [`Document::version`] of the last fetch),
    /// asked with `DescribeSecret`, which returns version ids and stages but
    /// no value: an unchanged secret costs no `GetSecretValue`.
    ///
    /// # Behavior
    /// - A reference pinned with `version_id` never changes: no call is made.
    /// - Otherwise the version carrying the reference's `version_stage`
    ///   (default `AWSCURRENT`) is compared with `held_version`.
    /// - A missing secret, one scheduled for deletion, or a stage no version
    ///   carries is [`hushbox_core::ErrorKind::NotFound`].
    pub async fn check_version(
        &self,
        location: &SecretRef,
        held_version: &str,
    ) -> Result<VersionCheck> {
        let span = tracing::debug_span!("aws.check_version", secret = %location);
        async {
            let target = Target::parse(location)?;
            if let Some(pinned) = &target.version_id {
                return Ok(if pinned == held_version {
                    VersionCheck::Unchanged
                } else {
                    VersionCheck::Changed {
                        version: pinned.clone(),
                    }
                });
            }
            let connection = self
                .connection()
                .await
                .map_err(|e| e.with_subject(location))?;
            let output = connection
                .client
                .describe_secret()
                .secret_id(&target.secret_id)
                .send()
                .await
                .map_err(|error| {
                    Error::from(AwsError::from_sdk(&error, &connection.endpoint))
                        .with_subject(location)
                })?;
            if output.deleted_date().is_some() {
                return Err(
                    Error::not_found("the secret is scheduled for deletion").with_subject(location)
                );
            }
            let stage = target.version_stage.as_deref().unwrap_or(CURRENT);
            let version = output
                .version_ids_to_stages()
                .and_then(|versions| {
                    versions
                        .iter()
                        .find(|(_, stages)| stages.iter().any(|s| s == stage))
                        .map(|(version, _)| version.clone())
                })
                .ok_or_else(|| {
                    Error::not_found(format!("no version of the secret has the stage `{stage}`"))
                        .with_subject(location)
                })?;
            tracing::debug!(changed = version != held_version, "described the secret");
            Ok(if version == held_version {
                VersionCheck::Unchanged
            } else {
                VersionCheck::Changed { version }
            })
        }
        .instrument(span)
        .await
    }

    /// One `GetSecretValue`.
    async fn get(&self, connection: &Connection, target: &Target) -> Result<Document, AwsError> {
        let mut output = connection
            .client
            .get_secret_value()
            .secret_id(&target.secret_id)
            .set_version_id(target.version_id.clone())
            .set_version_stage(target.version_stage.clone())
            .send()
            .await
            .map_err(|error| AwsError::from_sdk(&error, &connection.endpoint))?;
        into_document(
            output.secret_string.take(),
            output.secret_binary.take(),
            output.version_id.take(),
        )
    }

    /// One `GetSecretValue` for one read of a plan.
    async fn single(
        &self,
        connection: &Connection,
        plan: &Plan,
        read: usize,
    ) -> (usize, Result<Document, AwsError>) {
        (read, self.get(connection, &plan.reads[read].target).await)
    }

    /// One `BatchGetSecretValue` for `reads` (indices into `plan.reads`),
    /// with `GetSecretValue` for whatever the batch did not answer. Returns
    /// one outcome per read.
    async fn batch(
        &self,
        connection: &Connection,
        plan: &Plan,
        reads: &[usize],
    ) -> Vec<(usize, Result<Document, AwsError>)> {
        let mut outcomes = Vec::with_capacity(reads.len());
        let mut left: Vec<usize> = Vec::new();
        if self.batch_refused.load(Ordering::Relaxed) {
            left.extend_from_slice(reads);
        } else {
            let ids: Vec<String> = reads
                .iter()
                .map(|&read| plan.reads[read].target.secret_id.clone())
                .collect();
            tracing::debug!(secrets = ids.len(), "BatchGetSecretValue");
            match connection
                .client
                .batch_get_secret_value()
                .set_secret_id_list(Some(ids))
                .send()
                .await
            {
                Ok(mut output) => {
                    // Every value goes into a `SecretValue` at once, before any
                    // matching, so that none is dropped unwiped.
                    let mut entries: Vec<Option<Entry>> = output
                        .secret_values
                        .take()
                        .unwrap_or_default()
                        .into_iter()
                        .map(|mut entry| {
                            Some(Entry {
                                name: entry.name.take(),
                                arn: entry.arn.take(),
                                document: into_document(
                                    entry.secret_string.take(),
                                    entry.secret_binary.take(),
                                    entry.version_id.take(),
                                ),
                            })
                        })
                        .collect();
                    let errors = output.errors.take().unwrap_or_default();
                    if output.next_token.is_some() {
                        tracing::debug!(
                            "the batch answer is paged; unanswered secrets are read one by one"
                        );
                    }
                    for &read in reads {
                        let id = &plan.reads[read].target.secret_id;
                        let entry = entries.iter_mut().find(|entry| {
                            entry
                                .as_ref()
                                .is_some_and(|e| answers(id, e.name.as_deref(), e.arn.as_deref()))
                        });
                        if let Some(entry) = entry.and_then(Option::take) {
                            outcomes.push((read, entry.document));
                        } else if let Some(error) = errors
                            .iter()
                            .find(|error| error.secret_id() == Some(id.as_str()))
                        {
                            outcomes
                                .push((read, Err(AwsError::from_batch_code(error.error_code()))));
                        } else {
                            left.push(read);
                        }
                    }
                }
                Err(error) => {
                    let error = AwsError::from_sdk(&error, &connection.endpoint);
                    if error.is_access_denied() {
                        // Policies written before BatchGetSecretValue existed
                        // grant GetSecretValue only: read one by one, and stop
                        // asking for batches.
                        tracing::debug!("BatchGetSecretValue was refused; reading one by one");
                        self.batch_refused.store(true, Ordering::Relaxed);
                        left.extend_from_slice(reads);
                    } else {
                        outcomes.extend(reads.iter().map(|&read| (read, Err(error.clone()))));
                    }
                }
            }
        }
        let singles: Vec<_> = left
            .into_iter()
            .map(|read| self.single(connection, plan, read))
            .collect();
        outcomes.extend(futures::future::join_all(singles).await);
        outcomes
    }
}

/// A batch entry whose value is already in custody.
struct Entry {
    name: Option<String>,
    arn: Option<String>,
    document: Result<Document, AwsError>,
}

/// Moves the SDK's buffers into a [`Document`]: the bytes of the `String` of
/// `SecretString` or the `Vec` of `SecretBinary` go into the
/// [`SecretValue`]'s protected memory and the SDK's buffer is wiped.
fn into_document(
    string: Option<String>,
    binary: Option<Blob>,
    version: Option<String>,
) -> Result<Document, AwsError> {
    let value = match (string, binary) {
        (Some(string), binary) => {
            // Secrets Manager never sends both; if a server did, the unused
            // one is wiped here rather than dropped.
            if let Some(binary) = binary {
                binary.into_inner().zeroize();
            }
            SecretValue::from_string(string)
        }
        (None, Some(binary)) => SecretValue::from_vec(binary.into_inner()),
        (None, None) => return Err(AwsError::NoValue),
    };
    Ok(Document {
        value,
        format: Format::Json,
        version,
        lease: None,
    })
}

/// Builds the SDK client: one HTTP client on rustls with ring, the standard
/// credential chain, the standard retry mode with bounded attempts.
async fn connect(name: &str, settings: &Settings) -> Result<Connection> {
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::Ring))
        .build_https();
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .http_client(http)
        .retry_config(RetryConfig::standard().with_max_attempts(settings.max_attempts))
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(CONNECT_TIMEOUT)
                .operation_attempt_timeout(ATTEMPT_TIMEOUT)
                .build(),
        );
    if let Some(region) = &settings.region {
        loader = loader.region(Region::new(region.clone()));
    }
    if let Some(profile) = &settings.profile {
        loader = loader.profile_name(profile);
    }
    if let Some(keys) = &settings.static_keys {
        // The first link of the standard chain, read from hushbox's
        // environment snapshot rather than from the process.
        loader = loader.credentials_provider(Credentials::new(
            keys.access_key_id.clone(),
            keys.secret_access_key.clone(),
            keys.session_token.clone(),
            None,
            "Environment",
        ));
    }
    let sdk = loader.load().await;
    let Some(region) = sdk.region().map(|region| region.as_ref().to_owned()) else {
        return Err(Error::config(format!(
            "no AWS region: set `region` in [backends.{name}], AWS_REGION, or `region` in the AWS profile"
        )));
    };
    let mut builder = aws_sdk_secretsmanager::config::Builder::from(&sdk);
    if let Some(url) = &settings.endpoint_url {
        builder = builder.endpoint_url(url);
    }
    let endpoint = settings
        .endpoint_url
        .as_deref()
        .or(sdk.endpoint_url())
        .map(redact_userinfo)
        .unwrap_or_else(|| format!("the regional endpoint of {region}"));
    tracing::debug!(%region, %endpoint, "built the Secrets Manager client");
    Ok(Connection {
        client: Client::from_conf(builder.build()),
        endpoint,
    })
}

impl fmt::Debug for AwsBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwsBackend")
            .field("name", &self.name)
            .field("config", &self.config)
            .field("settings", &self.settings)
            .field("batching", &self.batching)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl Backend for AwsBackend {
    fn name(&self) -> &str {
        &self.name
    }

    /// The access keys of the environment, when the chain takes them from
    /// there (they come first in it); the web identity token file otherwise.
    fn credential_sources(&self) -> hushbox_core::CredentialSources {
        self.settings.credential_sources()
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            fields: true,
            ..Capabilities::default()
        }
    }

    /// Reads one secret version with `GetSecretValue`.
    ///
    /// # Behavior
    /// - `SecretString` is delivered as its UTF-8 bytes, `SecretBinary` as
    ///   its bytes; `#field` selects from either when it is a JSON object.
    /// - The document's version is the `VersionId`.
    /// - Errors name the reference and map the service's error code
    ///   (see the crate's README); the service's message is never kept.
    async fn fetch(&self, location: &SecretRef) -> Result<Document> {
        let span = tracing::debug_span!("aws.fetch", secret = %location);
        async {
            let target = Target::parse(location)?;
            let connection = self
                .connection()
                .await
                .map_err(|e| e.with_subject(location))?;
            self.get(connection, &target)
                .await
                .map_err(|error| Error::from(error).with_subject(location))
        }
        .instrument(span)
        .await
    }

    /// Reads several secrets with the fewest calls: current versions of
    /// distinct secrets with `BatchGetSecretValue`, 20 per call; pinned
    /// versions (`version_id`, or a stage other than `AWSCURRENT`) with one
    /// `GetSecretValue` each. A reference given twice is read once.
    ///
    /// # Behavior
    /// - One result per location, in order. A secret the batch reports as
    ///   failed gets its own error (a missing one is `NotFound`), and hides
    ///   no other secret's value or error.
    /// - When the credentials may not call `BatchGetSecretValue`, the secrets
    ///   are read one by one instead (and from then on).
    async fn fetch_many(&self, locations: &[SecretRef]) -> Vec<Result<Document>> {
        let span = tracing::debug_span!("aws.fetch_many", locations = locations.len());
        async {
            let mut results: Vec<Option<Result<Document>>> = std::iter::repeat_with(|| None)
                .take(locations.len())
                .collect();
            let mut targets = Vec::with_capacity(locations.len());
            for (position, location) in locations.iter().enumerate() {
                match Target::parse(location) {
                    Ok(target) => targets.push((position, target)),
                    Err(error) => results[position] = Some(Err(error)),
                }
            }
            if !targets.is_empty() {
                match self.connection().await {
                    Ok(connection) => {
                        let plan = Plan::new(targets, self.batching);
                        tracing::debug!(
                            reads = plan.reads.len(),
                            batches = plan.batches.len(),
                            singles = plan.singles.len(),
                            "planned the reads"
                        );
                        let plan = &plan;
                        // Collected first: a lazy `map` over borrowed items
                        // trips the higher-ranked lifetime check under
                        // `async_trait`'s `Send` bound (as in the core).
                        let batch_calls: Vec<_> = plan
                            .batches
                            .iter()
                            .map(|reads| self.batch(connection, plan, reads))
                            .collect();
                        let single_calls: Vec<_> = plan
                            .singles
                            .iter()
                            .map(|&read| self.single(connection, plan, read))
                            .collect();
                        let batches = futures::stream::iter(batch_calls)
                            .buffer_unordered(BATCH_CONCURRENCY)
                            .flat_map(futures::stream::iter);
                        let singles = futures::stream::iter(single_calls)
                            .buffer_unordered(DEFAULT_CONCURRENCY);
                        let outcomes: Vec<_> =
                            futures::stream::select(batches, singles).collect().await;
                        for (read, outcome) in outcomes {
                            distribute(&plan.reads[read].serves, outcome, locations, &mut results);
                        }
                    }
                    Err(error) => {
                        for (position, _) in targets {
                            results[position] =
                                Some(Err(Error::new(error.kind(), error.message())
                                    .with_subject(&locations[position])));
                        }
                    }
                }
            }
            results
                .into_iter()
                .zip(locations)
                .map(|(result, location)| {
                    result.unwrap_or_else(|| {
                        Err(Error::from(AwsError::MissingFromBatch).with_subject(location))
                    })
                })
                .collect()
        }
        .instrument(span)
        .await
    }
}

/// Hands one read's outcome to every position it serves: the document
/// itself to the first, copies (each its own wiped buffer) to the others.
fn distribute(
    serves: &[usize],
    outcome: Result<Document, AwsError>,
    locations: &[SecretRef],
    results: &mut [Option<Result<Document>>],
) {
    let Some((&first, rest)) = serves.split_first() else {
        return;
    };
    for &position in rest {
        results[position] = Some(match &outcome {
            Ok(document) => Ok(Document {
                value: SecretValue::copy_from_slice(document.value.expose()),
                format: document.format,
                version: document.version.clone(),
                lease: None,
            }),
            Err(error) => Err(Error::from(error.clone()).with_subject(&locations[position])),
        });
    }
    results[first] =
        Some(outcome.map_err(|error| Error::from(error).with_subject(&locations[first])));
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::Arc;

    use hushbox_core::{BackendContext, ErrorKind, Registry, toml};

    use super::*;

    fn build(settings: &str, env: &[(&str, &str)]) -> Result<Arc<dyn Backend>> {
        let mut registry = Registry::new();
        crate::register(&mut registry);
        let env = Environment::from_pairs(env.iter().copied());
        let context = BackendContext {
            name: "prod",
            base_dir: Path::new("/project"),
            env: &env,
        };
        registry.build("aws", &context, toml::from_str(settings).unwrap())
    }

    #[test]
    fn the_registry_builds_instances_without_io() {
        let backend = build(
            "region = 'eu-west-1'\nendpoint_url = 'http://127.0.0.1:1'",
            &[
                ("AWS_ACCESS_KEY_ID", "AKIDCANARY"),
                ("AWS_SECRET_ACCESS_KEY", "CANARY"),
            ],
        )
        .unwrap();
        assert_eq!(backend.name(), "prod");
        assert_eq!(
            backend.capabilities(),
            Capabilities {
                fields: true,
                ..Capabilities::default()
            }
        );
        let debug = format!("{backend:?}");
        assert!(debug.starts_with("AwsBackend { name: \"prod\""), "{debug}");
        assert!(debug.contains("eu-west-1"), "{debug}");
        assert!(!debug.contains("CANARY"), "{debug}");
        build("", &[]).unwrap();
    }

    #[test]
    fn bad_settings_are_configuration_errors_naming_the_section() {
        for settings in [
            "regoin = 'eu-west-1'",
            "region = 1",
            "access_key_id = 'x'",
            "secret_access_key = 'x'",
            "endpoint_url = 'localhost'",
            "max_attempts = 0",
        ] {
            let error = build(settings, &[]).unwrap_err();
            assert_eq!(error.kind(), ErrorKind::Config, "{settings}");
            assert!(error.to_string().starts_with("[backends.prod]"), "{error}");
        }
    }

    #[test]
    fn documents_take_the_sdk_buffers_into_secret_values() {
        // `SecretValue::from_vec` moves the bytes into protected memory and
        // wipes the SDK's buffer (hushbox-core tests both).
        let text = String::from("{\"k\":\"v\"}");
        let document = into_document(Some(text), None, Some("v1".into())).unwrap();
        assert_eq!(document.value.expose(), b"{\"k\":\"v\"}");
        assert_eq!(document.version.as_deref(), Some("v1"));
        let bytes = vec![0u8, 159, 146, 150];
        let document = into_document(None, Some(Blob::new(bytes)), None).unwrap();
        assert_eq!(document.value.expose(), [0u8, 159, 146, 150]);
        assert_eq!(
            into_document(None, None, None).unwrap_err(),
            AwsError::NoValue
        );
    }

    #[test]
    fn duplicates_get_copies_and_errors_name_each_reference() {
        let locations: Vec<SecretRef> = ["aws://a", "aws://a?version_stage=AWSCURRENT"]
            .iter()
            .map(|r| r.parse().unwrap())
            .collect();
        let mut results = vec![None, None];
        let document = into_document(Some("x".into()), None, Some("v".into()));
        distribute(&[0, 1], document, &locations, &mut results);
        for result in &results {
            let document = result.as_ref().unwrap().as_ref().unwrap();
            assert_eq!(document.value.expose(), b"x");
            assert_eq!(document.version.as_deref(), Some("v"));
        }
        let mut results = vec![None, None];
        let error = AwsError::from_batch_code(Some("ResourceNotFoundException"));
        distribute(&[0, 1], Err(error), &locations, &mut results);
        for (result, location) in results.iter().zip(&locations) {
            let error = result.as_ref().unwrap().as_ref().unwrap_err();
            assert_eq!(error.kind(), ErrorKind::NotFound);
            assert_eq!(error.subject(), Some(location.to_string().as_str()));
        }
    }
}
