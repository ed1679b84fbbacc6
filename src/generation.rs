//! One generation from a plan and its resolved values: the single place
//! where "what the plan says" becomes "the files of one generation". The
//! one-shot commands and the watcher both commit through [`write`], so
//! whatever a generation holds (secret files today) is decided here once.

use hushbox_core::{Error, SecretValue};

use crate::output::{Commit, GenerationWriter};
use crate::plan::Plan;
use crate::resolve::Resolution;

/// Commits the plan's file secrets, with the values of `resolution` (in
/// the plan's order), as one generation. Nothing is written when the
/// current generation already holds exactly these files.
pub fn write(
    writer: &GenerationWriter,
    plan: &Plan,
    resolution: &Resolution,
) -> Result<Commit, Error> {
    let files: Vec<(&str, &SecretValue)> = plan
        .secrets
        .iter()
        .zip(&resolution.values)
        .filter(|(secret, _)| secret.file)
        .filter_map(|(secret, value)| Some((secret.name.as_str(), value.as_ref()?)))
        .collect();
    writer.commit(&files)
}
