//! `hushbox inject`: one generation into the output directory.

use hushbox_core::SecretValue;

use super::{Outcome, Session, runtime};
use crate::cli::InjectArgs;
use crate::exit;
use crate::output::{Commit, GenerationWriter, OutputOptions};
use crate::plan::Plan;
use crate::resolve::{Backends, Resolution, resolve};

pub(super) fn inject(session: &Session, args: InjectArgs) -> Outcome {
    let plan = session.plan(false, args.dir, args.allow_disk)?;
    // Refuse a bad output directory before fetching anything.
    let writer = GenerationWriter::open(output_options(&plan))?;
    let backends = Backends::build(&plan, &session.registry, &session.env)?;
    let resolution = runtime()?.block_on(resolve(&plan, &backends))?;
    match commit(&writer, &plan, &resolution)? {
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
