//! The HTTP side: one pooled client per instance, the token it sends,
//! retries, and the reading of 403s.
//!
//! - **One pool.** The `reqwest` client that `vaultrs` builds (with the TLS
//!   settings, on rustls + ring) is shared by every request of the instance;
//!   a semaphore bounds the requests in flight (`concurrency`, default 16).
//! - **Retries.** 412, 429, 5xx and connection failures are retried with
//!   exponential backoff and jitter until `retry_deadline`; then the error is
//!   "unavailable". 403 and 404 are answers, never retried. TLS certificate
//!   failures are not retried either: they do not heal.
//! - **403.** Vault says 403 `permission denied` both for a bad or expired
//!   token and for a policy that denies the path. On a 403 the token is
//!   probed with `auth/token/lookup-self` (which the `default` policy
//!   allows): if the probe succeeds the token is fine and the answer is
//!   "permission denied"; if it fails too, the token is bad: hushbox logs in
//!   again once (re-reading a token file, or repeating the AppRole /
//!   Kubernetes / JWT login) and repeats the request, and reports
//!   "unauthenticated" if that does not help. A probe that is itself denied
//!   by policy (a token created without the `default` policy) is recognised
//!   by Vault's policy-denial wording and reported as "permission denied".
//! - **Bodies.** Response bodies are read into a [`SecretValue`] sized from
//!   `Content-Length`, refused beyond a limit, and wiped when dropped. They
//!   are never logged and never put in an error.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hushbox_core::SecretValue;
use reqwest::{Method, StatusCode};
use tokio::sync::{Mutex, Semaphore};
use tracing::{debug, warn};
use zeroize::Zeroizing;

use crate::auth::{self, Login};
use crate::config::VaultSettings;
use crate::error::{VaultError, describe_transport, is_connection_refused, tls_failure};

/// The first retry waits about this long; each next one twice as long.
const BACKOFF_START: Duration = Duration::from_millis(100);
/// No single wait is longer than this.
const BACKOFF_CAP: Duration = Duration::from_secs(2);
/// The most bytes of a response that is not a secret document (a login, a
/// lookup, an error) hushbox reads.
const SMALL_BODY_LIMIT: usize = 256 * 1024;

/// One request to the API.
#[derive(Debug)]
pub(crate) struct Call<'a> {
    /// GET, POST, PUT…
    pub(crate) method: Method,
    /// The path after `/v1/`, unescaped (`secret/data/app/db`).
    pub(crate) path: &'a str,
    /// Query pairs (`version=3`).
    pub(crate) query: Vec<(&'a str, String)>,
    /// A JSON body. Only ever built from references and lease ids, never
    /// from a credential (logins go through `vaultrs`).
    pub(crate) body: Option<Vec<u8>>,
    /// The most body bytes accepted.
    pub(crate) limit: usize,
}

impl<'a> Call<'a> {
    /// A GET of `path`.
    pub(crate) fn get(path: &'a str) -> Self {
        Self {
            method: Method::GET,
            path,
            query: Vec::new(),
            body: None,
            limit: SMALL_BODY_LIMIT,
        }
    }

    /// A request with a JSON body.
    pub(crate) fn with_body(method: Method, path: &'a str, body: Vec<u8>) -> Self {
        Self {
            method,
            path,
            query: Vec::new(),
            body: Some(body),
            limit: SMALL_BODY_LIMIT,
        }
    }
}

/// A successful answer: a 2xx status and its body.
pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    pub(crate) body: SecretValue,
}

/// The token in use, and what is known of its lifetime.
pub(crate) struct Token {
    pub(crate) value: Zeroizing<String>,
    /// Increases with every login, so a failed request invalidates only the
    /// token it used.
    pub(crate) generation: u64,
    /// The TTL the server gave at login (`None` for a static token, whose
    /// TTL is looked up when renewal needs it; zero for one that never
    /// expires).
    pub(crate) ttl: Option<Duration>,
    pub(crate) renewable: bool,
    pub(crate) obtained: Instant,
}

/// The outcome of one attempt, as the retry loop sees it.
enum Attempt<T> {
    Done(T),
    /// Worth trying again: why it failed this time, and how long the server
    /// asked to wait (`Retry-After`), if it did.
    Retry(String, Option<Duration>),
    /// The connection was refused: retried like [`Attempt::Retry`] (same
    /// fields), unless the address is the filled-in default, where nothing
    /// is listening.
    Refused(String, Option<Duration>),
    /// A 403 (or 401).
    Forbidden,
    Fail(VaultError),
}

/// What a 403 probe found.
enum TokenState {
    Valid,
    Invalid,
    /// Denied by policy wording: the token exists but may not look itself up.
    DeniedByPolicy,
}

/// The HTTP client of one instance.
pub(crate) struct Client {
    pub(crate) settings: Arc<VaultSettings>,
    http: std::sync::Mutex<Option<Http>>,
    permits: Semaphore,
    token: Mutex<Option<Arc<Token>>>,
    generation: std::sync::atomic::AtomicU64,
    /// The AppRole secret id after its file was removed, for logging in again.
    pub(crate) cached_secret_id: std::sync::Mutex<Option<Zeroizing<String>>>,
    /// Signalled after every login, so a renewal loop that had no token to
    /// look after starts looking after the new one.
    pub(crate) logged_in: tokio::sync::Notify,
}

/// The pooled HTTP client, built on first use.
#[derive(Clone)]
pub(crate) struct Http {
    pub(crate) reqwest: reqwest::Client,
    /// A `vaultrs` client on the same pool, without a token, for logins.
    pub(crate) vaultrs: Arc<vaultrs::client::VaultClient>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("address", &self.settings.address)
            .field("namespace", &self.settings.namespace)
            .field("auth", &self.settings.auth.method())
            .finish_non_exhaustive()
    }
}

impl Client {
    pub(crate) fn new(settings: Arc<VaultSettings>) -> Self {
        let permits = Semaphore::new(settings.concurrency);
        Self {
            settings,
            http: std::sync::Mutex::new(None),
            permits,
            token: Mutex::new(None),
            generation: std::sync::atomic::AtomicU64::new(0),
            cached_secret_id: std::sync::Mutex::new(None),
            logged_in: tokio::sync::Notify::new(),
        }
    }

    /// The pooled client, built on first use (reading CA and client
    /// certificate files), so that building an instance does no I/O.
    pub(crate) fn http(&self) -> Result<Http, VaultError> {
        let mut slot = self.http.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(http) = slot.as_ref() {
            return Ok(http.clone());
        }
        let http = auth::build_http(&self.settings)?;
        *slot = Some(http.clone());
        Ok(http)
    }

    /// The token to send, logging in first when there is none.
    pub(crate) async fn token(&self) -> Result<Arc<Token>, VaultError> {
        // Held across the login: concurrent requests wait for one login
        // instead of each starting their own.
        let mut current = self.token.lock().await;
        if let Some(token) = current.as_ref() {
            return Ok(Arc::clone(token));
        }
        let Login {
            token,
            ttl,
            renewable,
        } = auth::login(self).await?;
        let generation = self
            .generation
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            + 1;
        let token = Arc::new(Token {
            value: token,
            generation,
            ttl,
            renewable,
            obtained: Instant::now(),
        });
        debug!(
            method = self.settings.auth.method(),
            generation,
            ttl_seconds = ttl.map(|ttl| ttl.as_secs()),
            "logged in"
        );
        *current = Some(Arc::clone(&token));
        self.logged_in.notify_one();
        Ok(token)
    }

    /// Forgets `token` (if it is still the current one), so the next request
    /// logs in again.
    pub(crate) async fn invalidate(&self, token: &Token) {
        let mut current = self.token.lock().await;
        if current
            .as_ref()
            .is_some_and(|now| now.generation == token.generation)
        {
            *current = None;
        }
    }

    /// Replaces the current token's lifetime after a renewal.
    pub(crate) async fn renewed(&self, token: &Token, ttl: Duration, renewable: bool) {
        let mut current = self.token.lock().await;
        if current
            .as_ref()
            .is_some_and(|now| now.generation == token.generation)
        {
            *current = Some(Arc::new(Token {
                value: token.value.clone(),
                generation: token.generation,
                ttl: Some(ttl),
                renewable,
                obtained: Instant::now(),
            }));
        }
    }

    /// The current token, if logged in, without logging in.
    pub(crate) async fn current_token(&self) -> Option<Arc<Token>> {
        self.token.lock().await.clone()
    }

    /// Sends `call` with the token, retrying what is worth retrying, and
    /// reading a 403 as described in the module docs.
    pub(crate) async fn call(&self, call: &Call<'_>) -> Result<Answer, VaultError> {
        let mut logged_in_again = false;
        loop {
            let token = self.token().await?;
            let outcome = self
                .with_retries(call.path, || self.send(call, Some(&token.value)))
                .await;
            match outcome {
                Ok(answer) => return Ok(answer),
                Err(Forbidden) => match self.probe(&token).await? {
                    TokenState::Valid | TokenState::DeniedByPolicy => {
                        return Err(VaultError::Denied);
                    }
                    TokenState::Invalid if !logged_in_again => {
                        debug!(path = call.path, "the token was refused; logging in again");
                        self.invalidate(&token).await;
                        logged_in_again = true;
                    }
                    TokenState::Invalid => {
                        return Err(VaultError::Unauthenticated {
                            why: format!(
                                "the server refused {} as invalid or expired (HTTP 403)",
                                self.settings.auth.token_origin()
                            ),
                        });
                    }
                },
                Err(Failed(error)) => return Err(error),
            }
        }
    }

    /// Sends `call` once per attempt until it succeeds, fails for good, or
    /// the retry deadline passes. A 403 comes back as [`Forbidden`].
    async fn with_retries<T, F, Fut>(&self, what: &str, mut attempt: F) -> Result<T, Outcome>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Attempt<T>>,
    {
        let started = Instant::now();
        let deadline = started + self.settings.retry_deadline;
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            let outcome = match attempt().await {
                // A Vault on this machine that refuses connections is not
                // starting up: nothing was configured, so none will come.
                Attempt::Refused(..) if self.settings.address_defaulted => {
                    return Err(Failed(VaultError::DefaultAddressRefused {
                        address: self.settings.address.clone(),
                    }));
                }
                other => other,
            };
            match outcome {
                Attempt::Done(value) => return Ok(value),
                Attempt::Forbidden => return Err(Forbidden),
                Attempt::Fail(error) => return Err(Failed(error)),
                Attempt::Retry(why, asked) | Attempt::Refused(why, asked) => {
                    let wait = asked
                        .map_or_else(|| backoff(attempts), |asked| asked.max(backoff(attempts)));
                    if Instant::now() + wait > deadline {
                        warn!(path = what, attempts, reason = %why, "giving up");
                        let last = if self.settings.address_defaulted {
                            format!(
                                "{why}; {}",
                                crate::error::default_address_note(&self.settings.address)
                            )
                        } else {
                            why
                        };
                        return Err(Failed(VaultError::Unavailable {
                            last,
                            attempts,
                            elapsed: started.elapsed(),
                        }));
                    }
                    debug!(path = what, attempts, reason = %why, wait_ms = wait.as_millis() as u64, "retrying");
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    /// Runs a `vaultrs` call (a login) with the same retry rules.
    pub(crate) async fn retry_vaultrs<T, F, Fut>(
        &self,
        method: &'static str,
        mut call: F,
    ) -> Result<T, VaultError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, vaultrs::error::ClientError>>,
    {
        let outcome = self
            .with_retries(method, || {
                let future = call();
                async move {
                    let _permit = self.permits.acquire().await;
                    // vaultrs logs the server's error strings at ERROR level;
                    // hushbox reports failures itself, in its own words.
                    let result = tracing::instrument::WithSubscriber::with_subscriber(
                        future,
                        tracing::subscriber::NoSubscriber::default(),
                    )
                    .await;
                    match result {
                        Ok(value) => Attempt::Done(value),
                        Err(error) => classify_vaultrs(&error, method),
                    }
                }
            })
            .await;
        match outcome {
            Ok(value) => Ok(value),
            Err(Forbidden) => Err(VaultError::LoginRefused {
                method,
                status: 403,
            }),
            Err(Failed(error)) => Err(error),
        }
    }

    /// One attempt: send, and read the answer.
    async fn send(&self, call: &Call<'_>, token: Option<&str>) -> Attempt<Answer> {
        let http = match self.http() {
            Ok(http) => http,
            Err(error) => return Attempt::Fail(error),
        };
        let url = match self.url(call.path, &call.query) {
            Ok(url) => url,
            Err(error) => return Attempt::Fail(error),
        };
        let mut request = http
            .reqwest
            .request(call.method.clone(), url)
            .header("X-Vault-Request", "true");
        if let Some(token) = token {
            let Ok(mut value) = reqwest::header::HeaderValue::from_str(token) else {
                return Attempt::Fail(VaultError::Unauthenticated {
                    why: "the token holds characters that cannot be sent in a header".into(),
                });
            };
            value.set_sensitive(true);
            request = request.header("X-Vault-Token", value);
        }
        if let Some(namespace) = &self.settings.namespace {
            request = request.header("X-Vault-Namespace", namespace.as_str());
        }
        if let Some(body) = &call.body {
            request = request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.clone());
        }
        let _permit = self.permits.acquire().await;
        let response = match request.send().await {
            Ok(response) => response,
            Err(error) => return self.transport_failure(&error),
        };
        let status = response.status();
        debug!(path = call.path, method = %call.method, status = status.as_u16(), "answer");
        if status.is_success() {
            return match read_body(response, call.limit).await {
                Ok(body) => Attempt::Done(Answer { status, body }),
                Err(ReadFailure::TooLarge) => {
                    Attempt::Fail(VaultError::TooLarge { limit: call.limit })
                }
                Err(ReadFailure::Transport(error)) => self.transport_failure(&error),
            };
        }
        let code = status.as_u16();
        if (400..500).contains(&code) && !matches!(code, 401 | 403 | 404 | 412 | 429) {
            let body = read_body(response, SMALL_BODY_LIMIT).await.ok();
            log_refusal(call.path, code, body.as_ref());
            return Attempt::Fail(VaultError::Rejected { status: code });
        }
        classify_status(code, response.headers())
    }

    fn transport_failure<T>(&self, error: &reqwest::Error) -> Attempt<T> {
        if let Some(failure) = tls_failure(error) {
            return Attempt::Fail(VaultError::Tls {
                address: self.settings.address.clone(),
                failure,
            });
        }
        refused_or_retry(error)
    }

    fn url(&self, path: &str, query: &[(&str, String)]) -> Result<url::Url, VaultError> {
        let mut url = url::Url::parse(&self.settings.address)
            .map_err(|_| VaultError::Config("the address is not a URL".into()))?;
        {
            let mut segments = url
                .path_segments_mut()
                .map_err(|_| VaultError::Config("the address cannot take a path".into()))?;
            segments.pop_if_empty().push("v1");
            segments.extend(path.split('/'));
        }
        if !query.is_empty() {
            url.query_pairs_mut()
                .extend_pairs(query.iter().map(|(k, v)| (*k, v.as_str())));
        }
        Ok(url)
    }

    /// Is `token` still good? `auth/token/lookup-self` answers.
    async fn probe(&self, token: &Token) -> Result<TokenState, VaultError> {
        let call = Call::get("auth/token/lookup-self");
        let probe = || async {
            let http = match self.http() {
                Ok(http) => http,
                Err(error) => return Attempt::Fail(error),
            };
            let url = match self.url(call.path, &[]) {
                Ok(url) => url,
                Err(error) => return Attempt::Fail(error),
            };
            let Ok(mut value) = reqwest::header::HeaderValue::from_str(&token.value) else {
                return Attempt::Done(TokenState::Invalid);
            };
            value.set_sensitive(true);
            let mut request = http
                .reqwest
                .get(url)
                .header("X-Vault-Request", "true")
                .header("X-Vault-Token", value);
            if let Some(namespace) = &self.settings.namespace {
                request = request.header("X-Vault-Namespace", namespace.as_str());
            }
            let _permit = self.permits.acquire().await;
            let response = match request.send().await {
                Ok(response) => response,
                Err(error) => return self.transport_failure(&error),
            };
            let status = response.status().as_u16();
            match status {
                200..=299 => Attempt::Done(TokenState::Valid),
                401 | 403 => {
                    // Only the wording is looked at, and only to tell the two
                    // 403s apart; the text itself goes nowhere.
                    let body = read_body(response, SMALL_BODY_LIMIT).await.ok();
                    let policy = body.as_ref().is_some_and(|body| {
                        let text = body.expose();
                        text.windows(17).any(|w| w == b"1 error occurred:")
                    });
                    Attempt::Done(if policy {
                        TokenState::DeniedByPolicy
                    } else {
                        TokenState::Invalid
                    })
                }
                _ => classify_status(status, response.headers()),
            }
        };
        match self.with_retries("auth/token/lookup-self", probe).await {
            Ok(state) => {
                debug!(
                    valid = matches!(state, TokenState::Valid | TokenState::DeniedByPolicy),
                    "probed the token after a 403"
                );
                Ok(state)
            }
            Err(Forbidden) => Ok(TokenState::Invalid),
            Err(Failed(error)) => Err(error),
        }
    }

    /// `auth/token/lookup-self`: the current token's remaining TTL and
    /// renewability (zero TTL: it never expires).
    pub(crate) async fn lookup_self(&self) -> Result<(Duration, bool), VaultError> {
        #[derive(serde::Deserialize)]
        struct Lookup {
            data: LookupData,
        }
        #[derive(serde::Deserialize)]
        struct LookupData {
            #[serde(default)]
            ttl: u64,
            #[serde(default)]
            renewable: bool,
        }
        let answer = self.call(&Call::get("auth/token/lookup-self")).await?;
        let lookup: Lookup =
            serde_json::from_slice(answer.body.expose()).map_err(|_| VaultError::Malformed {
                what: "the token lookup is not the expected JSON",
            })?;
        Ok((Duration::from_secs(lookup.data.ttl), lookup.data.renewable))
    }
}

use Outcome::{Failed, Forbidden};

/// How [`Client::with_retries`] ends when it does not succeed.
enum Outcome {
    Forbidden,
    Failed(VaultError),
}

/// The wait before retry number `attempt` (1-based): exponential from
/// [`BACKOFF_START`], capped at [`BACKOFF_CAP`], with "equal jitter" (half
/// fixed, half random), so that many clients retrying together spread out.
fn backoff(attempt: u32) -> Duration {
    let exponential = BACKOFF_START
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
        .min(BACKOFF_CAP);
    let half = exponential / 2;
    half + half.mul_f64(rand::random::<f64>())
}

/// Logs Vault's own reason for refusing a request (a 400 from
/// `pki/issue/…` says which parameter it did not like). It goes to the log
/// as a warning, never into the error: the error carries no server text.
/// The request it answers is built from the reference's path and
/// parameters (which are safe to log) or a lease id, never from a value.
fn log_refusal(path: &str, status: u16, body: Option<&SecretValue>) {
    #[derive(serde::Deserialize)]
    struct Refusal {
        errors: Vec<String>,
    }
    let Some(refusal) = body.and_then(|body| serde_json::from_slice::<Refusal>(body.expose()).ok())
    else {
        return;
    };
    let mut reason: String = refusal
        .errors
        .join("; ")
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(500)
        .collect();
    if reason.is_empty() {
        reason.push_str("(none given)");
    }
    warn!(path, status, reason = %reason, "the server refused the request");
}

/// What a non-2xx status means.
fn classify_status<T>(status: u16, headers: &reqwest::header::HeaderMap) -> Attempt<T> {
    match status {
        401 | 403 => Attempt::Forbidden,
        404 => Attempt::Fail(VaultError::NotFound { version: None }),
        // 412: a performance standby has not caught up yet (Vault's own
        // client retries it). 429: rate limited. 5xx: sealed, standby,
        // overloaded, restarting.
        412 | 429 | 500..=599 => {
            let retry_after = headers
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|value| value.to_str().ok())
                .and_then(|value| value.trim().parse::<u64>().ok());
            Attempt::Retry(
                format!("HTTP {status}"),
                retry_after.map(Duration::from_secs),
            )
        }
        _ => Attempt::Fail(VaultError::Rejected { status }),
    }
}

/// A transport failure to retry: [`Attempt::Refused`] when the server
/// refused the connection.
fn refused_or_retry<T>(error: &reqwest::Error) -> Attempt<T> {
    let why = describe_transport(error);
    if is_connection_refused(error) {
        Attempt::Refused(why, None)
    } else {
        Attempt::Retry(why, None)
    }
}

/// What a failed `vaultrs` call means, by its status or its transport error.
fn classify_vaultrs<T>(error: &vaultrs::error::ClientError, method: &'static str) -> Attempt<T> {
    use vaultrs::error::ClientError;
    let status = match error {
        ClientError::APIError { code, .. } => Some(*code),
        ClientError::RestClientError { source } => match source {
            rustify::errors::ClientError::ServerResponseError { code, .. } => Some(*code),
            rustify::errors::ClientError::RequestError { source, .. } => {
                return match source.downcast_ref::<reqwest::Error>() {
                    Some(error) => match tls_failure(error) {
                        Some(failure) => Attempt::Fail(VaultError::Tls {
                            address: error
                                .url()
                                .map(|url| url.origin().ascii_serialization())
                                .unwrap_or_default(),
                            failure,
                        }),
                        None => refused_or_retry(error),
                    },
                    None => Attempt::Retry("the connection failed".into(), None),
                };
            }
            rustify::errors::ClientError::ResponseError { .. } => {
                return Attempt::Retry(
                    "the connection failed while reading the answer".into(),
                    None,
                );
            }
            _ => None,
        },
        ClientError::ResponseEmptyError | ClientError::ResponseDataEmptyError => {
            return Attempt::Fail(VaultError::Malformed {
                what: "the login answer holds no token",
            });
        }
        _ => None,
    };
    match status {
        Some(status @ (400 | 401 | 403)) => {
            Attempt::Fail(VaultError::LoginRefused { method, status })
        }
        Some(404) => Attempt::Fail(VaultError::Config(format!(
            "no {method} auth method is mounted where the settings say (HTTP 404); check `mount`"
        ))),
        Some(status) => classify_status(status, &reqwest::header::HeaderMap::new()),
        None => Attempt::Fail(VaultError::Malformed {
            what: "the login answer is not the expected JSON",
        }),
    }
}

enum ReadFailure {
    TooLarge,
    Transport(reqwest::Error),
}

/// Reads a body into a buffer sized from `Content-Length` (when the server
/// sends one), so it does not grow; when it must grow, the old buffer is
/// wiped ([`SecretValue::push_slice`]). Refuses more than `limit` bytes.
async fn read_body(
    mut response: reqwest::Response,
    limit: usize,
) -> Result<SecretValue, ReadFailure> {
    let expected = response
        .content_length()
        .and_then(|length| usize::try_from(length).ok());
    if expected.is_some_and(|length| length > limit) {
        return Err(ReadFailure::TooLarge);
    }
    let mut body = SecretValue::with_capacity(expected.unwrap_or(4096));
    while let Some(chunk) = response.chunk().await.map_err(ReadFailure::Transport)? {
        if body.len() + chunk.len() > limit {
            return Err(ReadFailure::TooLarge);
        }
        body.push_slice(&chunk);
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        for attempt in 1..40 {
            let wait = backoff(attempt);
            let ceiling = BACKOFF_START
                .saturating_mul(1u32 << (attempt - 1).min(16))
                .min(BACKOFF_CAP);
            assert!(
                wait >= ceiling / 2 && wait <= ceiling,
                "{attempt}: {wait:?}"
            );
        }
    }

    #[test]
    fn statuses() {
        let headers = reqwest::header::HeaderMap::new();
        assert!(matches!(
            classify_status::<()>(403, &headers),
            Attempt::Forbidden
        ));
        assert!(matches!(
            classify_status::<()>(404, &headers),
            Attempt::Fail(VaultError::NotFound { .. })
        ));
        for status in [412, 429, 500, 502, 503, 504] {
            assert!(
                matches!(
                    classify_status::<()>(status, &headers),
                    Attempt::Retry(_, None)
                ),
                "{status}"
            );
        }
        for status in [400, 405, 409] {
            assert!(
                matches!(
                    classify_status::<()>(status, &headers),
                    Attempt::Fail(VaultError::Rejected { .. })
                ),
                "{status}"
            );
        }
    }
}
