//! `hushbox inject`: one generation into the output directory.

use hushbox_core::SecretValue;

use super::{Failure, Outcome, Session, runtime};
use crate::cli::InjectArgs;
use crate::exit;
use crate::output::{Commit, GenerationWriter, OutputOptions};
use crate::plan::Plan;
use crate::resolve::{Backends, Resolution, resolve};

pub(super) fn inject(session: &Session, args: InjectArgs) -> Outcome {
    // Without a manifest there is nothing to write: say so, before any
    // check of the output directory could name a later symptom.
    session.require_manifest()?;
    let plan = session.plan(None, args.dir, args.allow_disk)?;
    // Refuse a bad output directory before fetching anything.
    let writer = GenerationWriter::open(output_options(&plan))?;
    let backends = Backends::build(&plan, &session.registry, &session.env)?;
    let runtime = runtime()?;
    let committed = runtime
        .block_on(resolve(&plan, &backends))
        .map_err(Failure::from)
        .and_then(|resolution| Ok(commit(&writer, &plan, &resolution)?));
    // `revoke_on_exit = true` (vault): the leases this run obtained are
    // revoked as it exits, whether or not the generation was written.
    for error in runtime.block_on(backends.release()) {
        tracing::warn!(%error, "revoke_on_exit");
    }
    match committed? {
        Commit::Unchanged => eprintln!(
            "hushbox: {} unchanged ({} secrets)",
            writer.dir().display(),
            plan.file_secrets().count()
        ),
        Commit::Written { generation } => eprintln!(
            "hushbox: wrote {} secrets to {} (generation {generation})",
            plan.file_secrets().count(),
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

/// Commits the plan's file secrets as one generation.
pub(super) fn commit(
    writer: &GenerationWriter,
    plan: &Plan,
    resolution: &Resolution,
) -> Result<Commit, hushbox_core::Error> {
    let files: Vec<(&str, &SecretValue)> = plan
        .secrets
        .iter()
        .zip(&resolution.values)
        .filter(|(secret, _)| secret.file)
        .filter_map(|(secret, value)| Some((secret.name.as_str(), value.as_ref()?)))
        .collect();
    writer.commit(&files)
}
