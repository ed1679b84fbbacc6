//! The watcher: keeps the output directory's generation fresh while a
//! program runs (`exec --watch`, `run --watch`) or as a sidecar
//! (`inject --watch`).
//!
//! Each secret has its own schedule ([`schedule`]): its `refresh` interval
//! (or `[watch].interval`), sooner when a lease or certificate would expire
//! first. A round takes the secrets that are due, asks their backends for a
//! cheap change signal where one exists (the age store's integrity version),
//! fetches those whose signal moved or is unknown, and compares keyed
//! digests ([`detect`]) with the last committed values. When something
//! changed, the other secrets are fetched too and everything is committed
//! as one generation through [`crate::generation::write`]; when nothing
//! changed, nothing is written and no hook fires. The watcher holds no value
//! between rounds: only digests.
//!
//! A failed round keeps the last good generation, retries with exponential
//! backoff and jitter, and logs once per change of state. The status file
//! ([`status`]) tells `hushbox health` how fresh each secret is.

pub mod detect;
pub mod hooks;
mod inotify;
pub mod metrics;
pub mod schedule;
pub mod status;

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use hushbox_core::{Error, Lease};

use self::detect::{Digester, Tag};
use self::hooks::{HookSink, Pending};
use self::schedule::Schedule;
use self::status::{SecretStatus, Status};
use crate::output::{Commit, GenerationWriter};
use crate::plan::Plan;
use crate::resolve::{Backends, Resolution, resolve};
use crate::template::Templates;

/// Builds the program's environment from fresh values (for a `restart`
/// when secrets are delivered as `env_value`).
pub type EnvBuilder = Box<dyn Fn(&Resolution) -> Result<Vec<(OsString, OsString)>, Error> + Send>;

/// What the watcher needs.
pub struct WatchSetup {
    /// The plan being delivered.
    pub plan: Plan,
    /// Its templates, rendered into every generation with the secrets.
    pub templates: Templates,
    /// Its backends, with their credentials already loaded.
    pub backends: Backends,
    /// The writer of the output directory (`None` when no secret is a
    /// file: changes then only fire hooks).
    pub writer: Option<GenerationWriter>,
    /// Where hooks go.
    pub sink: Box<dyn HookSink>,
    /// Rebuilds the program's environment, when it holds values.
    pub env_builder: Option<EnvBuilder>,
    /// `--metrics-addr`: the bound listener to serve Prometheus text on.
    pub metrics: Option<std::net::TcpListener>,
}

/// What wakes the watcher besides its schedule.
pub(crate) enum Event {
    /// End the watch.
    Stop,
    /// These secrets' local files changed (inotify): due now.
    Changed(Vec<usize>),
}

/// The running watcher; [`WatchHandle::stop`] ends and joins it.
pub struct WatchHandle {
    stop: Sender<Event>,
    thread: Option<JoinHandle<Watcher>>,
}

impl WatchHandle {
    /// Stops the watcher and waits for it; gives back what it owned, for
    /// the shutdown (revoking leases, removing the output).
    pub fn stop(mut self) -> Option<(Backends, Option<GenerationWriter>)> {
        let _ = self.stop.send(Event::Stop);
        let watcher = self.thread.take()?.join().ok()?;
        Some((watcher.backends, watcher.writer))
    }
}

/// Per-secret state. Never a value: a digest.
struct Tracked {
    tag: Option<Tag>,
    token: Option<String>,
    schedule: Schedule,
    last_success: SystemTime,
    failures: u32,
    error: Option<String>,
    lease_expires: Option<SystemTime>,
    /// The lease the values on disk were issued under.
    lease: Option<Lease>,
    stale: bool,
    lease_reported: bool,
}

/// What a lease means for the schedule (as the `lease` argument of
/// [`Schedule`], which waits two thirds of it): a renewable lease, which
/// the backend's keep-alive renews, is looked at every sixth of its TTL
/// (is it still being renewed?); any other is fetched anew at two thirds.
fn check_every(lease: &Lease) -> Duration {
    if is_renewed(lease) {
        lease.ttl / 4
    } else {
        lease.ttl
    }
}

/// Whether the backend renews this lease itself (Vault's keep-alive).
fn is_renewed(lease: &Lease) -> bool {
    lease.renewable && !lease.id.is_empty()
}

struct Watcher {
    plan: Plan,
    templates: Templates,
    backends: Backends,
    writer: Option<GenerationWriter>,
    sink: Box<dyn HookSink>,
    env_builder: Option<EnvBuilder>,
    digester: Digester,
    tracked: Vec<Tracked>,
    generation: u64,
    pending: Option<Pending>,
    stopped_program: bool,
    /// Leases replaced by a committed generation: (backend, lease id).
    retiring: Vec<(String, String)>,
    /// What `--metrics-addr` serves.
    shared: Option<metrics::Shared>,
}

/// What the watcher keeps of the first generation: digests and leases,
/// taken while the values are at hand, so the values can be wiped before
/// the program starts.
pub struct Baseline {
    digester: Digester,
    tags: Vec<Option<Tag>>,
    leases: Vec<Option<Lease>>,
}

impl Baseline {
    /// Digests the first generation's values.
    pub fn of(initial: &Resolution) -> Self {
        let digester = Digester::new();
        let tags = initial
            .values
            .iter()
            .map(|value| value.as_ref().map(|value| digester.tag(value)))
            .collect();
        let leases = initial.leases.clone();
        Self {
            digester,
            tags,
            leases,
        }
    }
}

/// Starts watching on a thread of its own, from the first generation
/// (which fires no hook: the program starts with it).
pub fn start(setup: WatchSetup, baseline: Baseline) -> std::io::Result<WatchHandle> {
    let Baseline {
        digester,
        tags,
        leases,
    } = baseline;
    let now = Instant::now();
    let wall = SystemTime::now();
    let tracked = setup
        .plan
        .secrets
        .iter()
        .enumerate()
        .map(|(index, secret)| {
            let lease = leases.get(index).cloned().flatten();
            let interval = setup.plan.watch.interval_of(secret);
            Tracked {
                tag: tags.get(index).copied().flatten(),
                token: None,
                schedule: Schedule::new(now, interval, lease.as_ref().map(check_every)),
                last_success: wall,
                failures: 0,
                error: None,
                lease_expires: lease.as_ref().map(|lease| wall + lease.ttl),
                lease,
                stale: false,
                lease_reported: false,
            }
        })
        .collect();
    let mut watcher = Watcher {
        plan: setup.plan,
        templates: setup.templates,
        backends: setup.backends,
        writer: setup.writer,
        sink: setup.sink,
        env_builder: setup.env_builder,
        digester,
        tracked,
        generation: 1,
        pending: None,
        stopped_program: false,
        retiring: Vec::new(),
        shared: None,
    };
    if let Some(listener) = setup.metrics {
        let shared = metrics::Shared::default();
        metrics::serve(listener, std::sync::Arc::clone(&shared))?;
        watcher.shared = Some(shared);
    }
    watcher.write_status();
    let (stop, stopped) = channel();
    let files: Vec<(usize, std::path::PathBuf)> = watcher
        .plan
        .secrets
        .iter()
        .enumerate()
        .filter_map(|(index, secret)| {
            let backend = watcher.backends.get(secret.reference.scheme())?;
            Some((index, backend.watch_path(&secret.reference.location())?))
        })
        .collect();
    let followed = inotify::follow(files, stop.clone());
    if followed > 0 {
        tracing::debug!(files = followed, "following local files with inotify");
    }
    let thread = std::thread::Builder::new()
        .name("hushbox-watch".into())
        .spawn(move || {
            watcher.run(&stopped);
            watcher
        })?;
    Ok(WatchHandle {
        stop,
        thread: Some(thread),
    })
}

impl Watcher {
    fn run(&mut self, events: &Receiver<Event>) {
        let runtime = match crate::commands::runtime() {
            Ok(runtime) => runtime,
            Err(error) => {
                tracing::error!(%error, "the watcher cannot start; secrets will not be refreshed");
                return;
            }
        };
        for (index, secret) in self.plan.secrets.iter().enumerate() {
            tracing::debug!(
                secret = %secret.name,
                every = ?self.tracked[index].schedule.interval(),
                "watching"
            );
        }
        loop {
            let wait = self.next_wake().saturating_duration_since(Instant::now());
            match events.recv_timeout(wait) {
                Ok(Event::Stop) | Err(RecvTimeoutError::Disconnected) => return,
                Ok(Event::Changed(indexes)) => {
                    for index in indexes {
                        if let Some(tracked) = self.tracked.get_mut(index) {
                            tracked.schedule.retry_now();
                        }
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
            }
            if self
                .pending
                .as_ref()
                .is_some_and(|pending| pending.fire_at <= Instant::now())
                && let Some(pending) = self.pending.take()
            {
                self.sink.fire(pending);
                runtime.block_on(self.revoke_retired());
            }
            if self.tracked.iter().any(|t| t.schedule.due(Instant::now())) {
                runtime.block_on(self.round());
            }
            self.check_staleness();
            self.write_status();
        }
    }

    /// The next moment something is due: a secret, the pending hooks, or
    /// the next staleness check.
    fn next_wake(&self) -> Instant {
        let secrets = self.tracked.iter().map(|t| t.schedule.next());
        let hooks = self.pending.iter().map(|pending| pending.fire_at);
        secrets
            .chain(hooks)
            .min()
            .unwrap_or_else(|| Instant::now() + self.plan.watch.interval)
    }

    async fn round(&mut self) {
        let now = Instant::now();
        let due: Vec<usize> = (0..self.tracked.len())
            .filter(|&index| self.tracked[index].schedule.due(now))
            .collect();
        // Cheap signals first: a secret whose backend reports the same
        // change token as last time is unchanged without a fetch.
        let mut fetch = Vec::new();
        let mut tokens = Vec::new();
        for &index in &due {
            let secret = &self.plan.secrets[index];
            // A renewed lease: nothing to fetch while the keep-alive keeps
            // it; new values once it runs low (its max TTL is near).
            if let Some(lease) = self.tracked[index].lease.clone().filter(is_renewed) {
                let remaining = self
                    .backends
                    .get(secret.reference.scheme())
                    .and_then(|backend| backend.lease_remaining(&lease.id));
                if let Some(remaining) = remaining
                    && remaining > lease.ttl / 4
                {
                    self.succeeded(index, Some(&lease));
                    self.tracked[index].lease_expires = Some(SystemTime::now() + remaining);
                    continue;
                }
                if remaining.is_some() {
                    tracing::info!(
                        secret = %secret.name,
                        "its lease can no longer be renewed far enough; fetching new values"
                    );
                }
            }
            let token = match self.backends.get(secret.reference.scheme()) {
                Some(backend) => backend
                    .change_token(&secret.reference.location())
                    .await
                    .ok()
                    .flatten(),
                None => None,
            };
            if token.is_some() && token == self.tracked[index].token {
                self.succeeded(index, None);
            } else {
                fetch.push(index);
                tokens.push(token);
            }
        }
        if fetch.is_empty() {
            return;
        }
        let fetched = match resolve(&self.subplan(&fetch), &self.backends).await {
            Ok(resolution) => resolution,
            Err(failure) => {
                self.failed(&fetch, &failure.errors);
                return;
            }
        };
        let mut changed = BTreeSet::new();
        for (position, &index) in fetch.iter().enumerate() {
            let tag = fetched.values[position]
                .as_ref()
                .map(|value| self.digester.tag(value));
            if tag != self.tracked[index].tag {
                changed.insert(index);
            }
            self.tracked[index].token = tokens[position].take();
            let lease = fetched.leases[position].clone();
            self.succeeded(index, lease.as_ref());
        }
        if changed.is_empty() {
            tracing::debug!(fetched = fetch.len(), "round: nothing changed");
            return;
        }
        self.commit_change(&fetch, fetched, &changed).await;
    }

    /// Fetches the secrets that were not due, and commits everything as
    /// one generation. Digests move only once the commit is done, so a
    /// failed commit is tried again next round.
    async fn commit_change(
        &mut self,
        fetched_indexes: &[usize],
        fetched: Resolution,
        changed: &BTreeSet<usize>,
    ) {
        let rest: Vec<usize> = (0..self.plan.secrets.len())
            .filter(|index| !fetched_indexes.contains(index))
            .collect();
        let others = if rest.is_empty() {
            Resolution::default()
        } else {
            match resolve(&self.subplan(&rest), &self.backends).await {
                Ok(resolution) => resolution,
                Err(failure) => {
                    self.failed(&rest, &failure.errors);
                    // The changed ones are not committed yet: fetch them
                    // again with the rest.
                    for &index in fetched_indexes {
                        self.tracked[index].schedule.retry_now();
                    }
                    return;
                }
            }
        };
        let full = merge(
            self.plan.secrets.len(),
            fetched_indexes,
            fetched,
            &rest,
            others,
        );
        let committed = match &self.writer {
            Some(writer) => crate::generation::write(writer, &self.plan, &self.templates, &full),
            None => Ok(Commit::Unchanged),
        };
        let names: Vec<String> = changed
            .iter()
            .map(|&index| self.plan.secrets[index].name.clone())
            .collect();
        match committed {
            Ok(commit) => {
                self.generation += 1;
                if let Commit::Written { generation } = &commit {
                    tracing::info!(
                        generation = self.generation,
                        dir = %generation,
                        changed = %names.join(","),
                        "committed a new generation"
                    );
                }
                for (index, value) in full.values.iter().enumerate() {
                    self.tracked[index].tag = value.as_ref().map(|value| self.digester.tag(value));
                }
                // The leases the new generation replaced, revoked once the
                // hooks have told the program.
                let mut retired: Vec<(String, String)> = Vec::new();
                for (index, lease) in full.leases.iter().enumerate() {
                    let old = std::mem::replace(&mut self.tracked[index].lease, lease.clone());
                    if let Some(old) = old.filter(|old| !old.id.is_empty())
                        && lease.as_ref().is_none_or(|new| new.id != old.id)
                    {
                        let scheme = self.plan.secrets[index].reference.scheme().to_owned();
                        if !retired.iter().any(|(_, id)| *id == old.id) {
                            retired.push((scheme, old.id));
                        }
                    }
                    if let Some(lease) = lease {
                        self.tracked[index]
                            .schedule
                            .succeeded(Instant::now(), Some(check_every(lease)));
                    }
                }
                self.retiring.extend(retired);
                let hooks: Vec<_> = changed
                    .iter()
                    .flat_map(|&index| self.plan.watch.hooks_of(&self.plan.secrets[index]))
                    .cloned()
                    .collect();
                if hooks.is_empty() {
                    self.revoke_retired().await;
                    return;
                }
                if let Some(builder) = &self.env_builder {
                    match builder(&full) {
                        Ok(env) => self.sink.program_env(env),
                        Err(error) => {
                            tracing::warn!(%error, "cannot build the program's new environment")
                        }
                    }
                }
                Pending::add(
                    &mut self.pending,
                    hooks,
                    names,
                    self.generation,
                    self.plan.watch.debounce,
                );
            }
            Err(error) => {
                tracing::warn!(%error, "cannot commit the new generation; the last one stays");
                for &index in changed {
                    self.tracked[index].schedule.failed(Instant::now());
                }
            }
        }
    }

    async fn revoke_retired(&mut self) {
        for (scheme, lease_id) in std::mem::take(&mut self.retiring) {
            let Some(backend) = self.backends.get(&scheme) else {
                continue;
            };
            match backend.release_lease(&lease_id).await {
                Ok(()) => {
                    tracing::info!(backend = %scheme, "revoked the lease the new generation replaced")
                }
                Err(error) => tracing::warn!(%error, "cannot revoke a replaced lease"),
            }
        }
    }

    fn subplan(&self, indexes: &[usize]) -> Plan {
        let mut plan = self.plan.clone();
        plan.secrets = indexes
            .iter()
            .map(|&index| self.plan.secrets[index].clone())
            .collect();
        plan
    }

    fn succeeded(&mut self, index: usize, lease: Option<&Lease>) {
        let name = &self.plan.secrets[index].name;
        let tracked = &mut self.tracked[index];
        if tracked.failures > 0 {
            tracing::warn!(
                secret = %name,
                failures = tracked.failures,
                "fetching works again"
            );
        }
        if tracked.stale {
            tracing::warn!(secret = %name, "no longer stale");
        }
        let wall = SystemTime::now();
        tracked.failures = 0;
        tracked.error = None;
        tracked.stale = false;
        tracked.last_success = wall;
        tracked.lease_reported = false;
        if let Some(lease) = lease {
            tracked.lease_expires = Some(wall + lease.ttl);
        }
        tracked
            .schedule
            .succeeded(Instant::now(), lease.map(check_every));
    }

    fn failed(&mut self, indexes: &[usize], errors: &[Error]) {
        for &index in indexes {
            let secret = &self.plan.secrets[index];
            let reference = secret.reference.to_string();
            let location = secret.reference.location().to_string();
            // The error about this secret, else the first one.
            let error = errors
                .iter()
                .find(|error| {
                    error
                        .subject()
                        .is_some_and(|subject| subject == reference || subject == location)
                })
                .or(errors.first());
            let message = error.map(ToString::to_string);
            let tracked = &mut self.tracked[index];
            if tracked.failures == 0 {
                // Once per change of state, not once per retry.
                tracing::warn!(
                    secret = %secret.name,
                    error = message.as_deref().unwrap_or("unknown"),
                    "cannot refresh; keeping the last good value and retrying with backoff"
                );
            }
            tracked.failures += 1;
            tracked.error = message;
            tracked.schedule.failed(Instant::now());
            if let Some(expires) = tracked.lease_expires
                && expires <= SystemTime::now()
                && !tracked.lease_reported
            {
                tracked.lease_reported = true;
                tracing::error!(
                    secret = %secret.name,
                    "its lease expired while the backend was unreachable; the value on disk is no longer valid"
                );
            }
        }
    }

    fn check_staleness(&mut self) {
        let now = SystemTime::now();
        for (index, secret) in self.plan.secrets.iter().enumerate() {
            let tracked = &mut self.tracked[index];
            let age = now.duration_since(tracked.last_success).unwrap_or_default();
            let limit = self.plan.watch.max_stale_of(secret);
            if age > limit && !tracked.stale {
                tracked.stale = true;
                tracing::error!(
                    secret = %secret.name,
                    seconds = age.as_secs(),
                    "stale: no successful fetch within max_stale"
                );
                if self.plan.watch.fail_on_stale
                    && !self.stopped_program
                    && self.sink.stop_program()
                {
                    self.stopped_program = true;
                    tracing::error!(secret = %secret.name, "fail_on_stale: stopping the program");
                }
            }
        }
    }

    fn write_status(&self) {
        let mut status = Status::new();
        status.generation = self.generation;
        status.updated = status::unix(SystemTime::now());
        if self.stopped_program {
            status.stopped =
                Some("the program was stopped: a secret went stale (fail_on_stale)".into());
        }
        for (index, secret) in self.plan.secrets.iter().enumerate() {
            let tracked = &self.tracked[index];
            status.secrets.insert(
                secret.name.clone(),
                SecretStatus {
                    last_success: status::unix(tracked.last_success),
                    max_stale: status::seconds(self.plan.watch.max_stale_of(secret)),
                    failures: tracked.failures,
                    error: tracked.error.clone(),
                    lease_expires: tracked.lease_expires.map(status::unix),
                },
            );
        }
        if let Err(error) = status.write(&self.plan.watch.status_file) {
            tracing::debug!(%error, "cannot write the status file");
        }
        if let Some(shared) = &self.shared {
            *shared.lock().unwrap_or_else(|p| p.into_inner()) = status;
        }
    }
}

/// One resolution in plan order from two partial ones.
fn merge(
    len: usize,
    first_indexes: &[usize],
    first: Resolution,
    second_indexes: &[usize],
    second: Resolution,
) -> Resolution {
    let mut values: Vec<_> = (0..len).map(|_| None).collect();
    let mut versions = vec![None; len];
    let mut leases = vec![None; len];
    for (indexes, part) in [(first_indexes, first), (second_indexes, second)] {
        for ((&index, value), (version, lease)) in indexes
            .iter()
            .zip(part.values)
            .zip(part.versions.into_iter().zip(part.leases))
        {
            values[index] = value;
            versions[index] = version;
            leases[index] = lease;
        }
    }
    Resolution {
        values,
        versions,
        leases,
    }
}
