//! `hushbox inject`: one generation into the output directory.

use super::{Failure, Outcome, Session, build_generation, runtime};
use crate::cli::InjectArgs;
use crate::exit;
use crate::output::{Commit, GenerationWriter, OutputOptions};
use crate::plan::Plan;
use crate::resolve::{Backends, resolve};

pub(super) fn inject(session: &Session, args: InjectArgs) -> Outcome {
    // Without a manifest there is nothing to write: say so, before any
    // check of the output directory could name a later symptom.
    session.require_manifest()?;
    let plan = session.plan(None, args.dir, args.allow_disk)?;
    super::warn_unwatched(&plan, args.watch);
    let templates = session.templates(&plan)?;
    if args.watch {
        return watch(session, plan, templates, args.metrics_addr);
    }
    // Refuse a bad output directory before fetching anything.
    let writer = GenerationWriter::open(output_options(&plan))?;
    let backends = Backends::build(&plan, &session.registry, &session.env)?;
    let runtime = runtime()?;
    let committed = runtime
        .block_on(resolve(&plan, &backends))
        .map_err(Failure::from)
        .and_then(|resolution| {
            let generation = build_generation(&plan, &templates, &resolution)?;
            let templates = generation.templates().count();
            let secrets = generation.file_count() - templates;
            let what = match templates {
                0 => format!("{secrets} secrets"),
                _ => format!("{secrets} secrets and {templates} templates"),
            };
            Ok((generation.commit(&writer)?, what))
        });
    // `revoke_on_exit = true` (vault): the leases this run obtained are
    // revoked as it exits, whether or not the generation was written.
    for error in runtime.block_on(backends.release()) {
        tracing::warn!(%error, "revoke_on_exit");
    }
    let (commit, what) = committed?;
    match commit {
        Commit::Unchanged => eprintln!("hushbox: {} unchanged ({what})", writer.dir().display(),),
        Commit::Written { generation } => eprintln!(
            "hushbox: wrote {what} to {} (generation {generation})",
            writer.dir().display()
        ),
    }
    Ok(exit::OK)
}

/// The writer options of a plan's `[output]`.
pub(super) fn output_options(plan: &Plan) -> OutputOptions {
    OutputOptions {
        dir: plan.output.dir.clone(),
        uid: plan.output.uid,
        gid: plan.output.gid,
        mode: plan.output.mode,
        allow_disk: plan.output.allow_disk,
        lock_timeout: plan.output.lock_timeout,
    }
}

/// `inject --watch`: the sidecar. Writes the first generation, then keeps
/// it fresh until SIGTERM or SIGINT, running `exec` hooks on changes.
fn watch(
    session: &Session,
    plan: Plan,
    templates: crate::template::Templates,
    metrics: Option<std::net::SocketAddr>,
) -> Outcome {
    use crate::plan::OnChange;
    // A hook that needs a program is refused: the sidecar has none.
    let needs_program = |hook: &OnChange| !matches!(hook, OnChange::Exec { .. });
    let place = plan
        .secrets
        .iter()
        .find(|secret| secret.on_change.as_ref().is_some_and(needs_program))
        .map(|secret| format!("[secrets.{}].on_change", secret.name))
        .or_else(|| {
            plan.watch
                .on_change
                .as_ref()
                .is_some_and(needs_program)
                .then(|| "[watch].on_change".to_owned())
        });
    if let Some(place) = place {
        return Err(hushbox_core::Error::config(
            "`inject --watch` starts no program, so only `{ exec = [...] }` hooks apply; \
             signal and restart hooks need `exec --watch` or `run --watch`",
        )
        .with_subject(place)
        .into());
    }
    if plan.watch.fail_on_stale {
        return Err(hushbox_core::Error::config(
            "`inject --watch` starts no program for fail_on_stale to stop; `hushbox health` \
             reports staleness to whatever depends on the sidecar",
        )
        .with_subject("[watch].fail_on_stale")
        .into());
    }
    let writer = GenerationWriter::open(output_options(&plan))?
        .cancel_when(|| super::stop::received().map(super::stop::stopped_error));
    let metrics = super::bind_metrics(metrics)?;
    let backends = Backends::build(&plan, &session.registry, &session.env)?;
    let first = super::resolve_plan(&plan, &backends).and_then(|resolution| {
        let generation = build_generation(&plan, &templates, &resolution)?;
        let committed = generation.commit(&writer)?;
        drop(generation);
        Ok((committed, resolution))
    });
    let (committed, resolution) = match first {
        Ok(first) => first,
        Err(failure) => {
            super::release(&backends);
            return Err(super::or_stopped(failure));
        }
    };
    let baseline = crate::watch::Baseline::of(&resolution);
    drop(resolution);
    if let Err(failure) = super::end_setup() {
        super::release(&backends);
        return Err(failure);
    }
    if let Commit::Written { generation } = &committed {
        tracing::info!(%generation, dir = %writer.dir().display(), "wrote the first generation");
    }
    let hook_env: Vec<_> = session
        .process_env
        .iter()
        .filter(|(name, _)| !backends.credential_variables().contains(name.as_str()))
        .filter(|(name, _)| !crate::deliver::OWN_CREDENTIAL_VARIABLES.contains(&name.as_str()))
        .map(|(name, value)| (std::ffi::OsString::from(name), value.clone()))
        .collect();
    let cleanup = plan.watch.cleanup_on_exit;
    let setup = crate::watch::WatchSetup {
        plan: plan.clone(),
        templates,
        backends: backends.clone(),
        writer: Some(writer),
        sink: Box::new(crate::watch::hooks::LocalSink { base_env: hook_env }),
        env_builder: None,
        metrics,
    };
    // Leases (database credentials) are renewed beside the watcher.
    let keep_alive = backends.keep_alive();
    let handle = crate::watch::start(setup, baseline)
        .map_err(|error| hushbox_core::Error::io("cannot start the watcher", error))?;
    eprintln!(
        "hushbox: watching {} secrets in {}",
        plan.file_secrets().count(),
        plan.output.dir.display()
    );
    let signal = super::stop::wait_for_stop()
        .map_err(|error| hushbox_core::Error::io("cannot wait for stop signals", error))?;
    tracing::info!(signal, "stopping");
    if let Some((_, Some(writer))) = handle.stop()
        && cleanup
        && let Err(error) = writer.remove_all()
    {
        tracing::warn!(%error, "cleanup_on_exit: cannot remove the secret files");
    }
    drop(keep_alive);
    super::release(&backends);
    Ok(exit::OK)
}
