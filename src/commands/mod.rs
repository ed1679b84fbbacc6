//! The commands: each turns parsed arguments into a plan, resolves it, and
//! acts. They return an exit code or a [`Failure`]; `main` prints and exits.

mod check;
mod docs;
mod exec;
mod get;
mod health;
mod inject;
mod keygen;
mod render;
mod run;
mod store;
mod swarm;

use std::path::{Path, PathBuf};

use hushbox_core::{Environment, Error, Registry, Trust};

use crate::cli::{Cli, Command};
use crate::exit;
use crate::manifest::{self, Manifest};
use crate::plan::{Plan, PlanInputs};
use crate::resolve::ResolveFailure;
use crate::supervise::stop;
use crate::template::Templates;

pub use run::prepare_signals;

/// Why a command failed: one or more errors, all printed; the first decides
/// the exit code.
#[derive(Debug)]
pub struct Failure {
    /// The errors, most important first.
    pub errors: Vec<Error>,
    /// An exit code that overrides the one of the first error's kind.
    pub code: Option<u8>,
}

/// Prints an error and its causes to stderr, as hushbox reports every
/// error.
pub fn print_error(error: &Error) {
    eprintln!("hushbox: error: {error}");
    let message = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        // `Error::io` already says the OS's reason in the message.
        let cause_text = cause.to_string();
        if !message.contains(&cause_text) {
            eprintln!("  caused by: {cause_text}");
        }
        source = cause.source();
    }
}

impl Failure {
    /// The exit code for this failure.
    pub fn exit_code(&self) -> u8 {
        self.code.unwrap_or_else(|| {
            self.errors
                .first()
                .map_or(exit::FAILURE, |e| exit::for_kind(e.kind()))
        })
    }
}

impl From<Error> for Failure {
    fn from(error: Error) -> Self {
        Self {
            errors: vec![error],
            code: None,
        }
    }
}

impl From<ResolveFailure> for Failure {
    fn from(failure: ResolveFailure) -> Self {
        Self {
            errors: failure.errors,
            code: None,
        }
    }
}

/// The outcome of a command.
pub type Outcome = Result<u8, Failure>;

/// Every backend kind this binary knows. Adding a backend adds a line here.
pub fn registry() -> Registry {
    let mut registry = Registry::new();
    hushbox_file::register(&mut registry);
    hushbox_age::register(&mut registry);
    hushbox_aws::register(&mut registry);
    hushbox_vault::register(&mut registry);
    hushbox_command::register(&mut registry);
    registry
}

/// What every command starts from: the environment snapshot, the current
/// directory, the manifest if there is one, and the known backends.
pub struct Session {
    /// The environment backends read (with `--identity` applied).
    pub env: Environment,
    /// hushbox's own environment, as the child inherits it.
    pub process_env: Environment,
    /// The current directory.
    pub cwd: PathBuf,
    /// The manifest and its path.
    pub manifest: Option<(Manifest, PathBuf)>,
    /// The backend kinds.
    pub registry: Registry,
    /// Whose files may configure hushbox (the manifest, template sources).
    pub trust: Trust,
}

impl Session {
    /// Loads the manifest and applies global flags.
    pub fn load(cli: &Cli) -> Result<Self, Error> {
        let process_env = Environment::from_process();
        let mut env = process_env.clone();
        let cwd = std::env::current_dir()
            .map_err(|error| Error::io("cannot read the current directory", error))?;
        if let Some(identity) = &cli.global.identity {
            // Backends read the identity from the snapshot, never from
            // hushbox's own process environment, which stays untouched.
            env.set("HUSHBOX_IDENTITY", cwd.join(identity).into_os_string());
        }
        // Whom to trust comes from the environment, never from a file that
        // the check itself would have to trust first.
        let trust = Trust::from_env(&env)?;
        let manifest = match manifest::locate(cli.global.config.as_deref(), &env, &cwd)? {
            Some(path) => Some((Manifest::load(&path, &trust)?, path)),
            None => None,
        };
        Ok(Self {
            env,
            process_env,
            cwd,
            manifest,
            registry: registry(),
            trust,
        })
    }

    /// Reads the plan's templates and checks them with placeholders (syntax,
    /// declared secrets, filters, variables), before anything is fetched.
    pub fn templates(&self, plan: &Plan) -> Result<Templates, Failure> {
        let templates = Templates::load(plan, &self.trust)?;
        templates
            .check(plan)
            .map_err(|errors| Failure { errors, code: None })?;
        Ok(templates)
    }

    /// Builds the plan for a command. `env_references` is `None` for the
    /// commands that start no program, else the `--resolve-env` patterns.
    pub fn plan(
        &self,
        env_references: Option<&[String]>,
        output_dir: Option<PathBuf>,
        allow_disk: bool,
    ) -> Result<Plan, Error> {
        let inputs = PlanInputs {
            manifest: self
                .manifest
                .as_ref()
                .map(|(manifest, path)| (manifest, path.as_path())),
            cwd: &self.cwd,
            kinds: self.registry.default_kinds().collect(),
            env_references: env_references.is_some(),
            resolve_env: env_references.unwrap_or_default(),
            output_dir,
            allow_disk,
        };
        Plan::build(&inputs, &self.env)
    }

    /// The manifest, for a command that has nothing to do without one;
    /// without one, an error that says where hushbox looked.
    pub fn require_manifest(&self) -> Result<&(Manifest, PathBuf), Error> {
        self.manifest
            .as_ref()
            .ok_or_else(|| manifest::not_found_error(&self.cwd))
    }

    /// The manifest's directory, or the current directory.
    pub fn base_dir(&self) -> &Path {
        self.manifest
            .as_ref()
            .and_then(|(_, path)| path.parent())
            .unwrap_or(&self.cwd)
    }
}

/// A runtime for one command. Single-threaded: fetches are I/O-bound and
/// concurrent on one thread; CPU-bound decryption goes to the blocking pool,
/// whose threads end with the runtime, so nothing idles next to a child.
pub fn runtime() -> Result<tokio::runtime::Runtime, Error> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| Error::io("cannot start the async runtime", error))
}

/// Renders a generation's templates; every failing template is reported.
pub(crate) fn build_generation<'a>(
    plan: &'a Plan,
    templates: &Templates,
    resolution: &'a crate::resolve::Resolution,
) -> Result<crate::generation::Generation<'a>, Failure> {
    crate::generation::Generation::build(plan, templates, resolution)
        .map_err(|errors| Failure { errors, code: None })
}

/// Lets every backend give back what this run obtained (`revoke_on_exit`),
/// on a runtime of its own. Failures are logged: they cannot undo a run.
pub(crate) fn release(backends: &crate::resolve::Backends) {
    let errors = match runtime() {
        Ok(runtime) => runtime.block_on(backends.release()),
        Err(error) => vec![error],
    };
    for error in errors {
        tracing::warn!(%error, "could not release what this run obtained");
    }
}

/// Resolves a plan: every value, or every error. An empty plan costs no
/// runtime at all (`exec` with nothing to fetch starts as fast as tini).
///
/// A stop signal during the fetch (see [`crate::supervise::stop`]) drops
/// it at once, however long a backend would have kept it waiting.
pub(crate) fn resolve_plan(
    plan: &crate::plan::Plan,
    backends: &crate::resolve::Backends,
) -> Result<crate::resolve::Resolution, Failure> {
    if plan.secrets.is_empty() {
        return Ok(crate::resolve::Resolution::default());
    }
    let runtime = runtime()?;
    let resolved = runtime.block_on(async {
        tokio::select! {
            resolved = crate::resolve::resolve(plan, backends) => Some(resolved),
            _ = stop::stopped() => None,
        }
    });
    match resolved {
        // The runtime ends with this call: no thread outlives the fetch.
        Some(resolved) => Ok(resolved?),
        None => {
            // A read stuck in the blocking pool (a hung file system) cannot
            // be dropped; waiting for it would hold the stop.
            runtime.shutdown_background();
            Err(stopped_failure().unwrap_or_else(|| Error::config("setup stopped").into()))
        }
    }
}

/// The failure of a setup that a stop signal ended: 128+n, as the shell
/// would report a death by that signal. `None` when no stop signal came.
pub(crate) fn stopped_failure() -> Option<Failure> {
    stop::received().map(|signo| Failure {
        errors: vec![stop::stopped_error(signo)],
        code: Some(stop::exit_code(signo)),
    })
}

/// Ends the setup phase of `exec` and `run`: from here on stop signals stay
/// pending for the child. Fails with 128+n if one arrived during setup.
pub(crate) fn end_setup() -> Result<(), Failure> {
    match stop::finish() {
        Some(_) => Err(stopped_failure().expect("a stop signal was received")),
        None => Ok(()),
    }
}

/// A stop signal received during setup decides the outcome of a failed
/// setup: whatever failed, it failed because hushbox was being stopped.
pub(crate) fn or_stopped(failure: Failure) -> Failure {
    stopped_failure().unwrap_or(failure)
}

/// How `run` and `exec` start their program; each field is that of
/// [`crate::supervise::ChildSpec`].
pub(crate) struct ChildPolicy {
    /// Give the program the terminal's foreground (`run`, interactive).
    pub(crate) foreground_tty: bool,
    /// Set `PR_SET_NO_NEW_PRIVS` in the program.
    pub(crate) no_new_privs: bool,
    /// Kill the program should hushbox die first (`run`: its secrets' directory goes with hushbox).
    pub(crate) die_with_supervisor: bool,
}

/// Warns once when the manifest configures watching and this run does not
/// watch: those settings would otherwise be silently ignored.
pub(crate) fn warn_unwatched(plan: &Plan, watching: bool) {
    if !watching && plan.watch.configured {
        tracing::warn!(
            "refresh, on_change, max_stale and [watch] apply only with --watch; this run \
             fetches once"
        );
    }
}

/// `exec --watch` / `run --watch`: the watcher to start beside the child.
pub(crate) struct Watching {
    setup: crate::watch::WatchSetup,
    baseline: crate::watch::Baseline,
    queue: crate::supervise::control::DirectiveQueue,
}

impl Watching {
    /// The watcher of a program whose environment is `child_env`: hooks go
    /// to the supervisor and start from that environment without the
    /// variables that carry values. `start` is the first generation's
    /// digests and, for `restart` with values in the environment, how to
    /// build the restarted program's environment.
    pub(crate) fn for_program(
        plan: &Plan,
        templates: &crate::template::Templates,
        backends: &crate::resolve::Backends,
        writer: Option<crate::output::GenerationWriter>,
        (baseline, env_builder): (crate::watch::Baseline, Option<crate::watch::EnvBuilder>),
        child_env: &[(std::ffi::OsString, std::ffi::OsString)],
        metrics: Option<std::net::TcpListener>,
    ) -> Self {
        let restarts = plan.watch.on_change == Some(crate::plan::OnChange::Restart)
            || plan
                .secrets
                .iter()
                .any(|secret| secret.on_change == Some(crate::plan::OnChange::Restart));
        let (directives, queue) = crate::supervise::control::channel_pair(restarts);
        let sink = crate::watch::hooks::SupervisorSink {
            directives,
            base_env: hook_environment(plan, child_env),
            grace: plan.watch.restart_grace,
            restart_env: None,
        };
        Self {
            setup: crate::watch::WatchSetup {
                plan: plan.clone(),
                templates: templates.clone(),
                backends: backends.clone(),
                writer,
                sink: Box::new(sink),
                env_builder,
                metrics,
            },
            baseline,
            queue,
        }
    }
}

/// Binds `--metrics-addr` during setup (before any privilege drop), so a
/// taken or forbidden address fails the start, naming it.
pub(crate) fn bind_metrics(
    address: Option<std::net::SocketAddr>,
) -> Result<Option<std::net::TcpListener>, Error> {
    address
        .map(|address| {
            std::net::TcpListener::bind(address).map_err(|error| {
                Error::io("cannot listen for --metrics-addr", error).with_subject(address)
            })
        })
        .transpose()
}

/// The environment hooks start from: `env` without any variable that
/// carries a value (`env_value`).
pub(crate) fn hook_environment(
    plan: &Plan,
    env: &[(std::ffi::OsString, std::ffi::OsString)],
) -> Vec<(std::ffi::OsString, std::ffi::OsString)> {
    let carries_value = |name: &std::ffi::OsStr| {
        plan.secrets
            .iter()
            .any(|secret| secret.env_value.as_deref().is_some_and(|v| name == v))
    };
    env.iter()
        .filter(|(name, _)| !carries_value(name))
        .cloned()
        .collect()
}

/// Runs `command` as the supervised child, with the backends' keep-alive
/// beside it, then lets the backends release what this run obtained.
/// Returns the child's exit code (or 128+n) as hushbox's own.
///
/// `policy` gives the fields of [`crate::supervise::ChildSpec`] that differ
/// between `run` and `exec`.
pub(crate) fn supervise_child(
    command: Vec<std::ffi::OsString>,
    env: Vec<(std::ffi::OsString, std::ffi::OsString)>,
    options: &crate::supervise::SupervisorOptions,
    policy: ChildPolicy,
    backends: &crate::resolve::Backends,
    watching: Option<Watching>,
) -> Outcome {
    // Leases (database credentials) stay valid while the program runs.
    let keep_alive = backends.keep_alive();
    let (watcher, queue) = match watching {
        Some(Watching {
            setup,
            baseline,
            queue,
        }) => {
            let cleanup = setup.plan.watch.cleanup_on_exit;
            match crate::watch::start(setup, baseline) {
                Ok(handle) => (Some((handle, cleanup)), Some(queue)),
                Err(error) => {
                    return Err(Error::io("cannot start the watcher", error).into());
                }
            }
        }
        None => (None, None),
    };
    let mut command = command.into_iter();
    let spec = crate::supervise::ChildSpec {
        program: command.next().expect("clap requires a command"),
        args: command.collect(),
        env,
        // hushbox has already become the user the program runs as, if any.
        user: None,
        foreground_tty: policy.foreground_tty,
        no_new_privs: policy.no_new_privs,
        die_with_supervisor: policy.die_with_supervisor,
    };
    let outcome = crate::supervise::run_controlled(spec, options, queue.as_ref());
    if let Some((handle, cleanup)) = watcher
        && let Some((_, Some(writer))) = handle.stop()
        && cleanup
        && let Err(error) = writer.remove_all()
    {
        tracing::warn!(%error, "cleanup_on_exit: cannot remove the secret files");
    }
    drop(keep_alive);
    release(backends);
    let code = outcome.map_err(|error| Failure {
        code: Some(u8::try_from(error.code).unwrap_or(exit::FAILURE)),
        errors: vec![Error::config(error.to_string())],
    })?;
    Ok(u8::try_from(code).unwrap_or(exit::FAILURE))
}

/// Writes `text` to stdout: a closed stdout (`hushbox … | head -1`) is an
/// I/O error that names the OS's reason, never a panic as `println!` would
/// give.
pub(crate) fn print_stdout(text: &str) -> Result<(), Error> {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        .map_err(|error| Error::io("cannot write to stdout", error))
}

/// Runs the parsed command.
pub fn dispatch(
    cli: Cli,
    signals: Option<crate::supervise::SignalMask>,
    hardening: crate::harden::Hardening,
) -> Outcome {
    // These read no manifest: they work anywhere, even beside a bad one.
    match &cli.command {
        Command::ExitCodes => {
            let table: String = exit::TABLE
                .iter()
                .map(|(code, meaning)| format!("{code:>3}  {meaning}\n"))
                .collect();
            print_stdout(&table)?;
            return Ok(exit::OK);
        }
        Command::Completions(args) => return docs::completions(args.shell),
        Command::Man => return docs::man(),
        _ => {}
    }
    let session = Session::load(&cli)?;
    match cli.command {
        Command::Run(args) => run::run(&session, args, signals, hardening),
        Command::Exec(args) => exec::exec(&session, args, signals, hardening),
        Command::Inject(args) => inject::inject(&session, args),
        Command::Get(args) => get::get(&session, args),
        Command::Check(args) => check::check(&session, args),
        Command::Render(args) => render::render(&session, args),
        Command::Health => health::health(&session),
        Command::Store(command) => store::store(&session, command),
        Command::Keygen(args) => keygen::keygen(&session, args),
        Command::Swarm(crate::cli::SwarmCommand::Sync(args)) => swarm::sync(&session, args),
        Command::ExitCodes | Command::Completions(_) | Command::Man => {
            unreachable!("answered above")
        }
    }
}
