//! [`VaultBackend`]: fetches from Vault / OpenBao, and keeps what it fetched
//! alive (token and lease renewal) or revokes it (on exit).

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use hushbox_core::{
    Backend, BackendContext, Capabilities, Document, Error, Lease, Result, SecretRef, SecretValue,
    async_trait,
};
use reqwest::Method;
use tracing::{debug, info, warn};

use crate::client::{Call, Client};
use crate::config::{VaultConfig, VaultSettings};
use crate::document::{self, KvVersion};
use crate::error::VaultError;
use crate::leases::Leases;
use crate::mounts::{Engine, Mounts};

/// A Vault / OpenBao instance. Cheap to clone: clones share one HTTP pool,
/// one token, one mount cache and one set of leases.
///
/// References: `NAME://MOUNT/PATH[?version=N][#field]` for KV (version 1 or
/// 2, detected), `NAME://PATH[?param=value…][#field]` for other engines.
/// See the crate's `README.md`.
#[derive(Clone)]
pub struct VaultBackend {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    name: String,
    settings: Arc<VaultSettings>,
    client: Client,
    mounts: Mounts,
    leases: Leases,
}

impl fmt::Debug for VaultBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let settings = &self.inner.settings;
        f.debug_struct("VaultBackend")
            .field("name", &self.inner.name)
            .field("address", &settings.address)
            .field("namespace", &settings.namespace)
            .field("auth", &settings.auth.method())
            .field("concurrency", &settings.concurrency)
            .field("revoke_on_exit", &settings.revoke_on_exit)
            .finish_non_exhaustive()
    }
}

impl VaultBackend {
    /// An instance named `name` (the scheme of its references). Does no I/O:
    /// certificates and credentials are read on first use.
    pub fn new(name: &str, settings: VaultSettings) -> Self {
        crate::auth::install_crypto_provider();
        let settings = Arc::new(settings);
        let backend = Self {
            inner: Arc::new(Inner {
                name: name.to_owned(),
                client: Client::new(Arc::clone(&settings)),
                settings,
                mounts: Mounts::default(),
                leases: Leases::default(),
            }),
        };
        crate::live::register(&backend.inner);
        backend
    }

    /// An instance from its manifest settings and the environment.
    pub fn from_config(config: &VaultConfig, context: &BackendContext<'_>) -> Result<Self> {
        let settings = config.resolve(context)?;
        Ok(Self::new(context.name, settings))
    }

    pub(crate) fn from_inner(inner: Arc<Inner>) -> Self {
        Self { inner }
    }

    /// The resolved settings.
    pub fn settings(&self) -> &VaultSettings {
        &self.inner.settings
    }

    /// Whether the manifest asks for this instance's leases to be revoked
    /// when hushbox exits (`revoke_on_exit = true`).
    pub fn revoke_on_exit(&self) -> bool {
        self.inner.settings.revoke_on_exit
    }

    /// The leases this instance obtained and has not revoked, with what is
    /// left of their TTL.
    pub fn obtained_leases(&self) -> Vec<Lease> {
        self.inner.leases.active()
    }

    async fn fetch_document(
        &self,
        location: &SecretRef,
    ) -> std::result::Result<Document, VaultError> {
        let inner = &*self.inner;
        let path = location.path().trim_start_matches('/');
        if path.is_empty() || path.split('/').any(|part| part == "..") {
            return Err(VaultError::Config(
                "the path must be MOUNT/PATH, without `..`".into(),
            ));
        }
        let limit = inner
            .settings
            .max_size
            .saturating_mul(6)
            .saturating_add(64 * 1024);
        let mount = inner.mounts.resolve(&inner.client, path).await?;
        match mount.engine {
            Engine::Kv(kv_version) => {
                let mut version = None;
                for (name, value) in location.params() {
                    match (name.as_str(), kv_version) {
                        ("version", KvVersion::V2) => {
                            version = Some(value.parse::<u64>().map_err(|_| {
                                VaultError::Config("`version` must be a version number".into())
                            })?);
                        }
                        ("version", KvVersion::V1) => {
                            return Err(VaultError::Config(format!(
                                "`{}` is a KV version 1 mount, which keeps no versions",
                                mount.path
                            )));
                        }
                        (other, _) => {
                            return Err(VaultError::Config(format!(
                                "KV paths take only ?version=N, not `{other}`"
                            )));
                        }
                    }
                }
                let api_path = match kv_version {
                    KvVersion::V1 => path.to_owned(),
                    KvVersion::V2 => format!("{}data/{}", mount.path, mount.relative(path)),
                };
                let mut call = Call::get(&api_path);
                call.limit = limit;
                if let Some(version) = version {
                    call.query.push(("version", version.to_string()));
                }
                let answer = inner
                    .client
                    .call(&call)
                    .await
                    .map_err(|error| match error {
                        VaultError::NotFound { .. } => VaultError::NotFound { version },
                        other => other,
                    })?;
                document::kv(&answer.body, kv_version, inner.settings.max_size)
            }
            Engine::Logical => {
                // Parameters make it a write: `pki/issue/ROLE`,
                // `aws/sts/ROLE`, `transit/random` take their input as a
                // JSON body. Without parameters it is a read.
                let mut call = if location.params().is_empty() {
                    Call::get(path)
                } else {
                    let body = serde_json::to_vec(location.params())
                        .map_err(|_| VaultError::Config("the parameters cannot be sent".into()))?;
                    Call::with_body(Method::POST, path, body)
                };
                call.limit = limit;
                let answer = inner.client.call(&call).await?;
                if answer.status == reqwest::StatusCode::NO_CONTENT || answer.body.is_empty() {
                    return Err(VaultError::NotFound { version: None });
                }
                let document = document::logical(&answer.body, inner.settings.max_size)?;
                if let Some(lease) = &document.lease {
                    inner.leases.record(lease);
                    debug!(
                        ttl_seconds = lease.ttl.as_secs(),
                        renewable = lease.renewable,
                        expiry_only = lease.id.is_empty(),
                        "the document has a lease"
                    );
                }
                Ok(document)
            }
        }
    }

    /// A KV version 2 secret's `current_version`, from its metadata: the
    /// data is not read. `None` for everything else (KV version 1, leased
    /// and logical paths, and a pinned `?version=N`, which never changes).
    async fn kv2_current_version(
        &self,
        location: &SecretRef,
    ) -> std::result::Result<Option<String>, VaultError> {
        #[derive(serde::Deserialize)]
        struct Metadata {
            data: MetadataData,
        }
        #[derive(serde::Deserialize)]
        struct MetadataData {
            current_version: u64,
        }
        let inner = &*self.inner;
        let path = location.path().trim_start_matches('/');
        if path.is_empty()
            || path.split('/').any(|part| part == "..")
            || !location.params().is_empty()
        {
            return Ok(None);
        }
        let mount = inner.mounts.resolve(&inner.client, path).await?;
        if !matches!(mount.engine, Engine::Kv(KvVersion::V2)) {
            return Ok(None);
        }
        let api_path = format!("{}metadata/{}", mount.path, mount.relative(path));
        let mut call = Call::get(&api_path);
        call.limit = 1024 * 1024;
        let answer = inner.client.call(&call).await?;
        // Metadata holds no value; a body that does not parse says nothing
        // and the caller reads the secret instead.
        Ok(serde_json::from_slice::<Metadata>(answer.body.expose())
            .ok()
            .map(|metadata| metadata.data.current_version.to_string()))
    }

    /// Renews one lease by `increment` (the lease's own default without
    /// one), through `sys/leases/renew`, and returns it with its new TTL.
    ///
    /// # Behavior
    /// - A lease that cannot be renewed (PKI, or past its max TTL) is an
    ///   error of kind `Config`; the caller should fetch the secret again.
    /// - The renewal loop of [`VaultBackend::keep_alive`] uses this for the
    ///   leases the instance obtained.
    pub async fn renew_lease(&self, lease: &Lease, increment: Option<Duration>) -> Result<Lease> {
        self.renew_lease_id(&lease.id, increment)
            .await
            .map_err(|error| {
                Error::from(error).with_subject(format!("lease of {}", self.inner.name))
            })
    }

    async fn renew_lease_id(
        &self,
        id: &str,
        increment: Option<Duration>,
    ) -> std::result::Result<Lease, VaultError> {
        #[derive(serde::Deserialize)]
        struct Renewed {
            lease_id: String,
            #[serde(default)]
            lease_duration: u64,
            #[serde(default)]
            renewable: bool,
        }
        let mut body = serde_json::json!({ "lease_id": id });
        if let Some(increment) = increment {
            body["increment"] = increment.as_secs().into();
        }
        let body = serde_json::to_vec(&body).expect("a JSON value serializes");
        let answer = self
            .inner
            .client
            .call(&Call::with_body(Method::PUT, "sys/leases/renew", body))
            .await?;
        let renewed: Renewed =
            serde_json::from_slice(answer.body.expose()).map_err(|_| VaultError::Malformed {
                what: "the lease renewal is not the expected JSON",
            })?;
        let ttl = Duration::from_secs(renewed.lease_duration);
        self.inner.leases.renewed(id, ttl, renewed.renewable);
        Ok(Lease {
            id: renewed.lease_id,
            ttl,
            renewable: renewed.renewable,
        })
    }

    /// Revokes one lease now (`sys/leases/revoke`).
    pub async fn revoke_lease(&self, lease_id: &str) -> Result<()> {
        self.revoke_lease_id(lease_id).await.map_err(|error| {
            Error::from(error).with_subject(format!("lease of {}", self.inner.name))
        })
    }

    async fn revoke_lease_id(&self, id: &str) -> std::result::Result<(), VaultError> {
        let body = serde_json::to_vec(&serde_json::json!({ "lease_id": id }))
            .expect("a JSON value serializes");
        self.inner
            .client
            .call(&Call::with_body(Method::PUT, "sys/leases/revoke", body))
            .await?;
        self.inner.leases.revoked(id);
        Ok(())
    }

    /// Revokes every lease this instance obtained and has not revoked yet
    /// (database credentials, leased certificates…), concurrently, and
    /// returns how many it revoked.
    ///
    /// # Behavior
    /// - Every lease is tried, even after a failure; the error reports how
    ///   many could not be revoked (they expire at the end of their TTL).
    /// - Called for `revoke_on_exit = true` when hushbox exits; callable
    ///   whatever the setting.
    pub async fn revoke_obtained_leases(&self) -> Result<usize> {
        let ids = self.inner.leases.to_revoke();
        if ids.is_empty() {
            return Ok(0);
        }
        // Collected first: a lazy `map` inside the stream trips the
        // compiler's higher-ranked lifetime check when this future must be
        // `Send` (as `Backend::release` requires).
        let revocations: Vec<_> = ids.iter().map(|id| self.revoke_lease_id(id)).collect();
        let results: Vec<_> = futures::stream::iter(revocations)
            .buffer_unordered(self.inner.settings.concurrency)
            .collect()
            .await;
        let total = results.len();
        let mut failures = results.into_iter().filter_map(std::result::Result::err);
        match failures.next() {
            None => {
                info!(backend = %self.inner.name, count = total, "revoked the leases hushbox obtained");
                Ok(total)
            }
            Some(first) => {
                let failed = 1 + failures.count();
                let first = Error::from(first);
                Err(Error::new(
                    first.kind(),
                    format!(
                        "{failed} of {total} leases could not be revoked (they expire with their TTL): {}",
                        first.message()
                    ),
                )
                .with_subject(format!("[backends.{}]", self.inner.name)))
            }
        }
    }

    /// Renews the client token now (`auth/token/renew-self`); when it
    /// cannot be renewed (not renewable, expired, at its max TTL) logs in
    /// again. Returns the token's TTL from now (`None`: it never expires).
    pub async fn renew_token(&self) -> Result<Option<Duration>> {
        self.refresh_token().await.map_err(|error| {
            Error::from(error).with_subject(format!("[backends.{}]", self.inner.name))
        })
    }

    async fn refresh_token(&self) -> std::result::Result<Option<Duration>, VaultError> {
        let client = &self.inner.client;
        let token = client.token().await?;
        let (ttl, renewable) = match token.ttl {
            Some(ttl) => (ttl, token.renewable),
            None => {
                let (ttl, renewable) = client.lookup_self().await?;
                client.renewed(&token, ttl, renewable).await;
                (ttl, renewable)
            }
        };
        if ttl.is_zero() {
            return Ok(None);
        }
        if renewable {
            match self.renew_self().await {
                Ok((renewed, renewable)) => {
                    // Near its max TTL a token renews for less than it had:
                    // with a method that can log in, the next refresh logs
                    // in again instead of renewing for ever shorter spans.
                    let capped = renewed < ttl && self.can_log_in_again();
                    client.renewed(&token, renewed, renewable && !capped).await;
                    debug!(ttl_seconds = renewed.as_secs(), capped, "renewed the token");
                    if renewed > Duration::from_secs(2) || !self.can_log_in_again() {
                        return Ok(Some(renewed));
                    }
                }
                Err(VaultError::Unavailable { .. }) | Err(VaultError::Tls { .. }) => {}
                Err(error) => debug!(?error, "the token could not be renewed; logging in again"),
            }
        }
        client.invalidate(&token).await;
        let token = client.token().await?;
        match token.ttl {
            Some(ttl) if ttl.is_zero() => Ok(None),
            Some(ttl) => Ok(Some(ttl)),
            None => {
                let (ttl, renewable) = client.lookup_self().await?;
                client.renewed(&token, ttl, renewable).await;
                Ok((!ttl.is_zero()).then_some(ttl))
            }
        }
    }

    fn can_log_in_again(&self) -> bool {
        !matches!(
            self.inner.settings.auth,
            crate::config::AuthSettings::Token(_)
        )
    }

    async fn renew_self(&self) -> std::result::Result<(Duration, bool), VaultError> {
        #[derive(serde::Deserialize)]
        struct Renewed {
            auth: RenewedAuth,
        }
        #[derive(serde::Deserialize)]
        struct RenewedAuth {
            lease_duration: u64,
            #[serde(default)]
            renewable: bool,
        }
        let answer = self
            .inner
            .client
            .call(&Call::with_body(
                Method::POST,
                "auth/token/renew-self",
                b"{}".to_vec(),
            ))
            .await?;
        let renewed: Renewed =
            serde_json::from_slice(answer.body.expose()).map_err(|_| VaultError::Malformed {
                what: "the token renewal is not the expected JSON",
            })?;
        Ok((
            Duration::from_secs(renewed.auth.lease_duration),
            renewed.auth.renewable,
        ))
    }

    /// When the current token is due for renewal: 2/3 of its TTL after it
    /// was obtained or last renewed. `None` when not logged in yet or the
    /// token never expires.
    async fn token_due(&self) -> std::result::Result<Option<Instant>, VaultError> {
        let client = &self.inner.client;
        let Some(token) = client.current_token().await else {
            return Ok(None);
        };
        let ttl = match token.ttl {
            Some(ttl) => ttl,
            None => {
                let (ttl, renewable) = client.lookup_self().await?;
                client.renewed(&token, ttl, renewable).await;
                if !renewable && !ttl.is_zero() && !self.can_log_in_again() {
                    warn!(
                        backend = %self.inner.name,
                        ttl_seconds = ttl.as_secs(),
                        "the Vault token is not renewable and expires; hushbox cannot log in again with a static token"
                    );
                }
                return Ok((!ttl.is_zero()).then(|| Instant::now() + ttl * 2 / 3));
            }
        };
        if ttl.is_zero() {
            return Ok(None);
        }
        if !token.renewable && !self.can_log_in_again() {
            // A static token that cannot be renewed: nothing to do but let
            // it run out (warned about when its TTL was looked up).
            return Ok(None);
        }
        Ok(Some(token.obtained + ttl * 2 / 3))
    }

    /// Keeps what this instance holds alive until `shutdown` completes:
    ///
    /// - the client token is renewed at 2/3 of its TTL; one that cannot be
    ///   renewed any more is replaced by logging in again;
    /// - every renewable lease the instance obtained is renewed at 2/3 of
    ///   its TTL (leases obtained after the call started are picked up).
    ///
    /// Failures are logged and retried with backoff; they never end the
    /// loop. Leases that cannot be renewed are left to expire: the watcher
    /// fetches those secrets again.
    pub async fn keep_alive(&self, shutdown: impl Future<Output = ()>) {
        tokio::select! {
            () = shutdown => {}
            () = self.renewal_loop() => {}
        }
    }

    async fn renewal_loop(&self) {
        let inner = &*self.inner;
        let mut token_retry: Option<Instant> = None;
        loop {
            let now = Instant::now();
            let token_due = match token_retry {
                Some(at) => Some(at),
                None => match self.token_due().await {
                    Ok(due) => due,
                    Err(error) => {
                        warn!(backend = %inner.name, error = %Error::from(error), "cannot look up the token; trying again");
                        Some(now + Duration::from_secs(5))
                    }
                },
            };
            if token_due.is_some_and(|due| due <= now) {
                token_retry = None;
                match self.refresh_token().await {
                    Ok(ttl) => debug!(ttl_seconds = ttl.map(|t| t.as_secs()), "token kept alive"),
                    Err(error) => {
                        warn!(backend = %inner.name, error = %Error::from(error), "cannot renew the token; trying again");
                        token_retry = Some(Instant::now() + Duration::from_secs(5));
                    }
                }
                continue;
            }
            let (due, next_lease) = inner.leases.due(now);
            for id in &due {
                let remaining = inner.leases.remaining(id);
                match self.renew_lease_id(id, None).await {
                    Ok(lease) => debug!(ttl_seconds = lease.ttl.as_secs(), "renewed a lease"),
                    Err(error @ (VaultError::Unavailable { .. } | VaultError::Tls { .. })) => {
                        let wait = (remaining / 3)
                            .clamp(Duration::from_millis(500), Duration::from_secs(10));
                        warn!(backend = %inner.name, error = %Error::from(error), "cannot renew a lease; trying again");
                        inner.leases.renewal_failed(id, Some(wait));
                    }
                    Err(error) => {
                        warn!(backend = %inner.name, error = %Error::from(error), "a lease cannot be renewed; it will expire");
                        inner.leases.renewal_failed(id, None);
                    }
                }
            }
            if !due.is_empty() {
                continue;
            }
            let next = [token_due, next_lease].into_iter().flatten().min();
            let sleep = match next {
                Some(at) => tokio::time::sleep_until(at.into()),
                None => tokio::time::sleep(Duration::from_secs(3600)),
            };
            tokio::select! {
                () = sleep => {}
                () = inner.leases.changed.notified() => {}
                () = inner.client.logged_in.notified() => {}
            }
        }
    }

    /// One fetch per distinct (path, parameters), copied to every position
    /// that asks for it: a dynamic secret asked for twice is one credential.
    async fn fetch_distinct(&self, locations: &[SecretRef]) -> Vec<Result<Document>> {
        let mut distinct: Vec<&SecretRef> = Vec::new();
        let mut slot_of = Vec::with_capacity(locations.len());
        for location in locations {
            let slot = distinct
                .iter()
                .position(|seen| {
                    seen.path() == location.path() && seen.params() == location.params()
                })
                .unwrap_or_else(|| {
                    distinct.push(location);
                    distinct.len() - 1
                });
            slot_of.push(slot);
        }
        let fetches: Vec<_> = distinct
            .iter()
            .map(|location| self.fetch(location))
            .collect();
        let mut fetched: Vec<Option<Result<Document>>> = futures::stream::iter(fetches)
            .buffered(self.inner.settings.concurrency)
            .map(Some)
            .collect()
            .await;
        let mut uses_left = vec![0usize; distinct.len()];
        for &slot in &slot_of {
            uses_left[slot] += 1;
        }
        slot_of
            .into_iter()
            .zip(locations)
            .map(|(slot, location)| {
                uses_left[slot] -= 1;
                if uses_left[slot] == 0 {
                    return fetched[slot].take().expect("each slot is taken once, last");
                }
                match fetched[slot].as_ref().expect("not taken yet") {
                    Ok(document) => Ok(Document {
                        value: SecretValue::copy_from_slice(document.value.expose()),
                        format: document.format,
                        version: document.version.clone(),
                        lease: document.lease.clone(),
                    }),
                    Err(error) => Err(Error::new(error.kind(), error.message().to_owned())
                        .with_subject(
                            error
                                .subject()
                                .map_or_else(|| location.to_string(), str::to_owned),
                        )),
                }
            })
            .collect()
    }
}

#[async_trait]
impl Backend for VaultBackend {
    fn name(&self) -> &str {
        &self.inner.name
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            fields: true,
            leases: true,
            ..Capabilities::default()
        }
    }

    #[tracing::instrument(skip_all, fields(secret = %location))]
    async fn fetch(&self, location: &SecretRef) -> Result<Document> {
        let started = Instant::now();
        let result = self.fetch_document(location).await;
        match &result {
            Ok(document) => debug!(
                version = document.version.as_deref(),
                bytes = document.value.len(),
                ms = started.elapsed().as_millis() as u64,
                "fetched"
            ),
            Err(error) => debug!(?error, "fetch failed"),
        }
        result.map_err(|error| Error::from(error).with_subject(location))
    }

    async fn fetch_many(&self, locations: &[SecretRef]) -> Vec<Result<Document>> {
        self.fetch_distinct(locations).await
    }

    /// What is left of a lease this instance holds, as its renewals keep it.
    fn lease_remaining(&self, lease_id: &str) -> Option<Duration> {
        Some(self.inner.leases.remaining(lease_id))
    }

    /// `sys/leases/revoke` of a lease whose values the watcher replaced.
    async fn release_lease(&self, lease_id: &str) -> Result<()> {
        self.revoke_lease(lease_id).await
    }

    /// KV version 2: the metadata's `current_version`, read before (and
    /// instead of) the data, as Vault Agent polls. Unknown elsewhere.
    async fn change_token(&self, location: &SecretRef) -> Result<Option<String>> {
        self.kv2_current_version(location)
            .await
            .map_err(|error| Error::from(error).with_subject(location))
    }

    /// Renewable leases (database credentials, say) must outlive the fetch
    /// for as long as the program that uses them runs.
    fn credential_sources(&self) -> hushbox_core::CredentialSources {
        self.inner.settings.credential_sources()
    }

    fn needs_keep_alive(&self) -> bool {
        self.obtained_leases().iter().any(|lease| lease.renewable)
    }

    async fn keep_alive(&self, shutdown: futures::future::BoxFuture<'static, ()>) {
        VaultBackend::keep_alive(self, shutdown).await;
    }

    /// Revokes the leases this run obtained, when `revoke_on_exit = true`.
    async fn release(&self) -> Result<usize> {
        if self.revoke_on_exit() {
            self.revoke_obtained_leases().await
        } else {
            Ok(0)
        }
    }
}
