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

/// Renders the plan's templates from `resolution` and commits them with the
/// file secrets as one generation: the call for a caller that needs nothing
/// but the commit (a watcher's round). Nothing is written when a template
/// fails; every failing template is named in the one error returned.
pub fn write(
    writer: &GenerationWriter,
    plan: &Plan,
    templates: &Templates,
    resolution: &Resolution,
) -> Result<Commit, Error> {
    match Generation::build(plan, templates, resolution) {
        Ok(generation) => generation.commit(writer),
        Err(errors) => Err(one_error(errors)),
    }
}

/// Several template errors as one: the first one's kind, every message.
pub fn one_error(mut errors: Vec<Error>) -> Error {
    if errors.len() == 1 {
        return errors.remove(0);
    }
    let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
    Error::new(errors[0].kind(), text.join("\n"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::Manifest;
    use crate::output::OutputOptions;
    use crate::plan::PlanInputs;
    use hushbox_core::{Environment, Trust};
    use std::path::Path;

    fn plan_of(text: &str) -> Plan {
        let manifest = Manifest::parse(text, Path::new("/p/hushbox.toml")).unwrap();
        let inputs = PlanInputs {
            manifest: Some((&manifest, Path::new("/p/hushbox.toml"))),
            kinds: vec!["age"],
            ..Default::default()
        };
        Plan::build(&inputs, &Environment::default()).unwrap()
    }

    fn resolution(values: &[&[u8]]) -> Resolution {
        Resolution {
            values: values
                .iter()
                .map(|value| Some(SecretValue::copy_from_slice(value)))
                .collect(),
            versions: vec![None; values.len()],
            leases: vec![None; values.len()],
        }
    }

    /// A changed secret re-renders the template that uses it into the same
    /// new generation; a failing template writes nothing.
    #[test]
    fn secrets_and_their_renderings_change_together() {
        let out = tempfile::tempdir_in("/dev/shm").unwrap();
        let writer = GenerationWriter::open(OutputOptions {
            dir: out.path().to_owned(),
            uid: None,
            gid: None,
            mode: 0o400,
            allow_disk: false,
            lock_timeout: std::time::Duration::from_secs(1),
        })
        .unwrap();
        let plan = plan_of(
            "version = 1\n[secrets.user]\nref = \"age://u\"\n[secrets.password]\nref = \"age://p\"\n\
             [templates.url]\ninline = \"{{ secret('user') }}:{{ secret('password') }}\"\nmode = \"0440\"\n",
        );
        let templates = Templates::load(&plan, &Trust::default()).unwrap();
        // Plan order: by name (password, user).
        write(&writer, &plan, &templates, &resolution(&[b"one", b"app"])).unwrap();
        let data = out.path().join("..data");
        let first = std::fs::read_link(&data).unwrap();
        assert_eq!(std::fs::read(out.path().join("url")).unwrap(), b"app:one");
        assert_eq!(
            write(&writer, &plan, &templates, &resolution(&[b"one", b"app"])).unwrap(),
            Commit::Unchanged
        );
        write(&writer, &plan, &templates, &resolution(&[b"two", b"app"])).unwrap();
        let second = std::fs::read_link(&data).unwrap();
        assert_ne!(first, second);
        let generation = out.path().join(&second);
        assert_eq!(std::fs::read(generation.join("password")).unwrap(), b"two");
        assert_eq!(std::fs::read(generation.join("url")).unwrap(), b"app:two");

        let broken = plan_of(
            "version = 1\n[secrets.password]\nref = \"age://p\"\n\
             [templates.a]\ninline = \"{{ nope }}\"\n[templates.b]\ninline = \"{{ secret('x') }}\"\n",
        );
        let broken_templates = Templates::load(&broken, &Trust::default()).unwrap();
        let error = write(
            &writer,
            &broken,
            &broken_templates,
            &resolution(&[b"three"]),
        )
        .unwrap_err();
        let text = error.to_string();
        assert!(
            text.contains("[templates.a]") && text.contains("[templates.b]"),
            "{text}"
        );
        assert!(!text.contains("three"), "{text}");
        assert_eq!(std::fs::read_link(&data).unwrap(), second);
    }
}
