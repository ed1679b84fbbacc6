//! One generation's content: a plan and its resolved values become the files
//! of one generation (the secrets, and the templates rendered from them)
//! and the values a child's environment takes from them.
//!
//! This is the one step every delivery goes through (`inject`, `exec`,
//! `run`, and the watcher's re-renders), so a template always lands in the
//! same generation as the values it was rendered from.

use hushbox_core::{Error, SecretValue};

use crate::output::{Commit, FileOptions, GenerationWriter, OutputFile};
use crate::plan::{Plan, SecretPlan, TemplatePlan};
use crate::resolve::Resolution;
use crate::template::Templates;

/// The content of one generation, borrowed from the plan and resolution it
/// was built from, plus the rendered templates it owns.
#[derive(Debug)]
pub struct Generation<'a> {
    plan: &'a Plan,
    resolution: &'a Resolution,
    /// One per `plan.templates`, in order.
    rendered: Vec<SecretValue>,
}

impl<'a> Generation<'a> {
    /// Renders every template of `plan` from `resolution`. Nothing is
    /// written; every failing template is reported.
    pub fn build(
        plan: &'a Plan,
        templates: &Templates,
        resolution: &'a Resolution,
    ) -> Result<Self, Vec<Error>> {
        let rendered = templates.render_all(plan, resolution)?;
        Ok(Self {
            plan,
            resolution,
            rendered,
        })
    }

    /// The plan this generation was built from.
    pub fn plan(&self) -> &Plan {
        self.plan
    }

    /// Each secret of the plan with its value (`None`: optional, missing).
    pub fn secrets(&self) -> impl Iterator<Item = (&SecretPlan, Option<&SecretValue>)> {
        self.plan
            .secrets
            .iter()
            .zip(&self.resolution.values)
            .map(|(secret, value)| (secret, value.as_ref()))
    }

    /// Each template of the plan with its rendered text.
    pub fn templates(&self) -> impl Iterator<Item = (&TemplatePlan, &SecretValue)> {
        self.plan.templates.iter().zip(&self.rendered)
    }

    /// The files of the generation: the file secrets, then the templates
    /// with their own mode and owner.
    pub fn files(&self) -> Vec<OutputFile<'_>> {
        let secrets =
            self.secrets()
                .filter(|(secret, _)| secret.file)
                .filter_map(|(secret, value)| {
                    Some(OutputFile {
                        name: &secret.name,
                        value: value?,
                        options: FileOptions::default(),
                    })
                });
        let templates = self.templates().map(|(template, value)| OutputFile {
            name: &template.name,
            value,
            options: FileOptions {
                mode: template.mode,
                uid: template.uid,
                gid: template.gid,
            },
        });
        secrets.chain(templates).collect()
    }

    /// How many files the generation holds.
    pub fn file_count(&self) -> usize {
        self.files().len()
    }

    /// Commits the generation's files through `writer`, atomically.
    pub fn commit(&self, writer: &GenerationWriter) -> Result<Commit, Error> {
        writer.commit_files(&self.files())
    }
}
