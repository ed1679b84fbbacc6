//! `hushbox run -- CMD…`: local development. Secrets go into a private
//! per-run tmpfs directory that is removed when CMD exits, however it exits;
//! with `--keep`, into the project's kept directory, left for what outlives
//! CMD (a Compose stack) until a `--discard` run removes it.

use hushbox_core::Error;

use super::{
    ChildPolicy, Failure, Outcome, Session, Watching, build_generation, end_setup, or_stopped,
    release, resolve_plan, supervise_child, warn_unwatched,
};
use crate::cli::RunArgs;
use crate::deliver::child_environment;
use crate::output::{GenerationWriter, OutputOptions, RunDir};
use crate::resolve::Backends;
use crate::supervise::{self, SignalMask, SupervisorOptions, stop};

/// Blocks signals for the commands that supervise a child. Must run before
/// any thread starts, so every thread inherits the mask and signals wait for
/// the supervisor loop instead of killing hushbox mid-write.
pub fn prepare_signals(command: &crate::cli::Command) -> std::io::Result<Option<SignalMask>> {
    match command {
        crate::cli::Command::Run(_) | crate::cli::Command::Exec(_) => {
            let mask = supervise::block_signals()?;
            // Until the child exists, TERM/INT/HUP/QUIT end hushbox.
            supervise::stop::watch()?;
            Ok(Some(mask))
        }
        // The sidecars take their stop signals synchronously too.
        crate::cli::Command::Inject(crate::cli::InjectArgs { watch: true, .. })
        | crate::cli::Command::Swarm(crate::cli::SwarmCommand::Sync(crate::cli::SwarmSyncArgs {
            watch: true,
            ..
        })) => {
            let mask = supervise::block_signals()?;
            supervise::stop::watch()?;
            Ok(Some(mask))
        }
        _ => Ok(None),
    }
}

pub(super) fn run(
    session: &Session,
    args: RunArgs,
    signals: Option<SignalMask>,
    hardening: crate::harden::Hardening,
) -> Outcome {
    let mask = signals.ok_or_else(|| Error::config("signals were not prepared for `run`"))?;
    let mut plan = session.plan(Some(&args.resolve_env), None, false)?;
    warn_unwatched(&plan, args.watch);
    let templates = session.templates(&plan)?;
    let metrics = super::bind_metrics(args.metrics_addr)?;
    let backends = Backends::build(&plan, &session.registry, &session.env)?;
    let prepared = prepare(session, &plan, &templates, &backends, &args);
    let (run_dir, env, writer, resolution) = match prepared {
        Ok(prepared) => prepared,
        Err(failure) => {
            release(&backends);
            return Err(or_stopped(failure));
        }
    };
    if let Err(failure) = end_setup() {
        release(&backends);
        // The private directory goes as it would after the program; a kept
        // one may still serve a running stack.
        if !(args.keep || args.discard) {
            let _ = run_dir.remove();
        }
        return Err(failure);
    }
    let watching = if args.watch {
        // The private directory holds the status file, unless the manifest
        // puts it elsewhere.
        if plan.watch.status_file == plan.output.dir.join(crate::plan::DEFAULT_STATUS_FILE) {
            plan.watch.status_file = run_dir.path().join(crate::plan::DEFAULT_STATUS_FILE);
        }
        let baseline = crate::watch::Baseline::of(&resolution);
        drop(resolution);
        let builder =
            super::exec::env_builder(session, &plan, &templates, &backends, Some(&writer));
        Some(Watching::for_program(
            &plan,
            &templates,
            &backends,
            Some(writer),
            (baseline, builder),
            &env,
            metrics,
        ))
    } else {
        drop(resolution);
        drop(writer);
        hardening.restore_core_limit();
        None
    };
    let options = SupervisorOptions {
        subreaper: false,
        mask,
    };
    // The program dies with a SIGKILLed hushbox: its secrets' directory
    // is gone (or about to be swept) by then.
    let outcome = supervise_child(
        args.command,
        env,
        &options,
        ChildPolicy {
            foreground_tty: true,
            no_new_privs: !args.allow_new_privileges,
            die_with_supervisor: true,
        },
        &backends,
        watching,
    );
    // The private directory goes whatever happened to the program; a kept
    // one stays until a --discard run.
    let removed = if args.keep {
        tracing::info!(
            dir = %run_dir.path().display(),
            "kept the secrets' directory; `hushbox run --discard -- CMD` removes it"
        );
        Ok(())
    } else {
        run_dir.remove()
    };
    let code = outcome?;
    removed?;
    Ok(code)
}

/// The private directory, the child's environment, the writer and the
/// values (wiped by the caller).
type Prepared = (
    RunDir,
    Vec<(std::ffi::OsString, std::ffi::OsString)>,
    GenerationWriter,
    crate::resolve::Resolution,
);

/// Fetches, writes the private directory's generation, and builds the
/// child's environment. The caller wipes the values (digesting them first
/// under `--watch`) before the child runs.
fn prepare(
    session: &Session,
    plan: &crate::plan::Plan,
    templates: &crate::template::Templates,
    backends: &Backends,
    args: &RunArgs,
) -> Result<Prepared, Failure> {
    let resolution = resolve_plan(plan, backends)?;
    let generation = build_generation(plan, templates, &resolution)?;
    let run_dir = if args.keep || args.discard {
        // One per project: the manifest's path names it (the current
        // directory without a manifest).
        let project = session
            .manifest
            .as_ref()
            .map_or(session.cwd.as_path(), |(_, path)| path.as_path());
        RunDir::kept(&session.env, project)?
    } else {
        RunDir::create(&session.env)?
    };
    // Owned as [output] says: a container's user reads them through a bind
    // mount (Compose `file:` secrets) with the host's owner and mode.
    let writer = GenerationWriter::open(OutputOptions {
        dir: run_dir.path().to_path_buf(),
        uid: plan.output.uid,
        gid: plan.output.gid,
        mode: plan.output.mode,
        allow_disk: false,
        lock_timeout: plan.output.lock_timeout,
    })?
    .cancel_when(|| stop::received().map(stop::stopped_error));
    let env = child_environment(
        &session.process_env,
        &generation,
        &backends.credential_variables(),
        |name| writer.path_of(name),
    )?;
    generation.commit(&writer)?;
    drop(generation);
    Ok((run_dir, env, writer, resolution))
}
