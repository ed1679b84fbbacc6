//! `hushbox inject`: one generation into the output directory.

use super::{Failure, Outcome, Session, build_generation, runtime};
use crate::cli::InjectArgs;
use crate::exit;
use crate::output::{Commit, GenerationWriter, OutputOptions};
use crate::plan::Plan;
use crate::resolve::{Backends, resolve};

pub(super) fn inject(session: &Session, args: InjectArgs) -> Outcome {
    let plan = session.plan(None, args.dir, args.allow_disk)?;
    let templates = session.templates(&plan)?;
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
