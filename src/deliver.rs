//! Delivery to a child process: the environment it gets. Shared by `run` and
//! `exec`, so the `_FILE` convention and variable handling cannot drift apart.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;

use hushbox_core::{Environment, Error, Result};

use crate::generation::Generation;

/// Variables that point at hushbox's own credentials. The child has no use
/// for them, so it does not inherit them.
pub const OWN_CREDENTIAL_VARIABLES: &[&str] = &["HUSHBOX_IDENTITY", "VAULT_TOKEN"];

/// The child's complete environment: hushbox's own, without the variables
/// that held references or pointed at hushbox's credentials, plus each
/// secret's and template's `env` (a file path) and `env_value` (the value
/// or rendered text itself).
///
/// `credentials` names the variables the run's backends took their
/// credentials from ([`Backends::credential_variables`](crate::resolve::Backends::credential_variables)):
/// they are removed too, except those `[env].inherit` keeps.
/// `path_of` gives a secret file's path from its name.
///
/// Values with a NUL byte cannot be environment variables: that is an error
/// naming the variable, before anything is started.
pub fn child_environment(
    base: &Environment,
    generation: &Generation<'_>,
    credentials: &BTreeSet<String>,
    path_of: impl Fn(&str) -> PathBuf,
) -> Result<Vec<(OsString, OsString)>> {
    let plan = generation.plan();
    let withheld = |name: &str| {
        OWN_CREDENTIAL_VARIABLES.contains(&name)
            || (credentials.contains(name)
                && !plan.inherit_env.iter().any(|pattern| pattern.matches(name)))
    };
    let mut env: Vec<(OsString, OsString)> = base
        .iter()
        .filter(|(name, _)| !plan.consumed_env.contains(name.as_str()) && !withheld(name))
        .map(|(name, value)| (OsString::from(name), value.clone()))
        .collect();
    let secrets = generation.secrets().filter_map(|(secret, value)| {
        Some((
            secret.name.as_str(),
            secret.reference.to_string(),
            value?,
            &secret.env_path,
            &secret.env_value,
        ))
    });
    let templates = generation.templates().map(|(template, value)| {
        (
            template.name.as_str(),
            template.label(),
            value,
            &template.env_path,
            &template.env_value,
        )
    });
    for (name, subject, value, env_path, env_value) in secrets.chain(templates) {
        if let Some(variable) = env_path {
            env.push((variable.into(), path_of(name).into_os_string()));
        }
        if let Some(variable) = env_value {
            if value.expose().contains(&0) {
                return Err(Error::config(format!(
                    "the value contains a NUL byte, which an environment variable cannot hold; deliver it as a file with `env = \"{variable}_FILE\"`"
                ))
                .with_subject(subject));
            }
            // The OS copies the environment into the child; this copy lives
            // only until the child has been spawned.
            env.push((variable.into(), OsString::from_vec(value.expose().to_vec())));
        }
    }
    Ok(env)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::Manifest;
    use crate::plan::{Plan, PlanInputs};
    use crate::resolve::Resolution;
    use crate::template::Templates;
    use hushbox_core::SecretValue;
    use std::path::Path;

    fn plan(env: &Environment) -> Plan {
        let manifest = Manifest::parse(
            "version = 1\n[env]\nresolve = [\"TOKEN\"]\n[secrets.db]\nref = \"age://db\"\nenv = \"DB_FILE\"\n[secrets.key]\nref = \"age://key\"\nenv_value = \"KEY\"\n",
            Path::new("m"),
        )
        .unwrap();
        let inputs = PlanInputs {
            manifest: Some((&manifest, Path::new("/p/m"))),
            cwd: Path::new("/"),
            kinds: vec!["age"],
            env_references: true,
            ..Default::default()
        };
        Plan::build(&inputs, env).unwrap()
    }

    fn generation<'a>(plan: &'a Plan, resolution: &'a Resolution) -> Generation<'a> {
        Generation::build(plan, &Templates::default(), resolution).unwrap()
    }

    #[test]
    fn files_values_and_consumed_variables() {
        let env = Environment::from_pairs([
            ("PATH", "/bin"),
            ("TOKEN", "age://token"),
            ("HUSHBOX_IDENTITY", "/k"),
        ]);
        let plan = plan(&env);
        let values: Vec<_> = plan
            .secrets
            .iter()
            .map(|s| Some(SecretValue::copy_from_slice(s.name.as_bytes())))
            .collect();
        let resolution = Resolution {
            versions: vec![None; values.len()],
            leases: vec![None; values.len()],
            values,
        };
        let child = child_environment(
            &env,
            &generation(&plan, &resolution),
            &BTreeSet::new(),
            |n| Path::new("/s").join(n),
        )
        .unwrap();
        let get = |k: &str| child.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        assert_eq!(get("PATH"), Some("/bin".into()));
        assert_eq!(get("DB_FILE"), Some("/s/db".into()));
        assert_eq!(get("KEY"), Some("key".into()));
        assert_eq!(
            get("TOKEN"),
            Some("TOKEN".into()),
            "the reference is replaced by the value"
        );
        assert_eq!(child.iter().filter(|(n, _)| n == "TOKEN").count(), 1);
        assert_eq!(get("HUSHBOX_IDENTITY"), None);
    }

    #[test]
    fn credential_variables_are_withheld_unless_inherited() {
        let env = Environment::from_pairs([
            ("PATH", "/bin"),
            ("MY_VAULT_TOKEN", "s.x"),
            ("AWS_SECRET_ACCESS_KEY", "k"),
            ("VAULT_TOKEN", "s.y"),
        ]);
        let credentials: BTreeSet<String> = ["MY_VAULT_TOKEN", "AWS_SECRET_ACCESS_KEY"]
            .into_iter()
            .map(str::to_owned)
            .collect();
        let resolution = |plan: &Plan| Resolution {
            versions: vec![None; plan.secrets.len()],
            leases: vec![None; plan.secrets.len()],
            values: plan.secrets.iter().map(|_| None).collect(),
        };
        let names = |plan: &Plan| -> Vec<String> {
            child_environment(
                &env,
                &generation(plan, &resolution(plan)),
                &credentials,
                |n| Path::new("/s").join(n),
            )
            .unwrap()
            .into_iter()
            .map(|(name, _)| name.into_string().unwrap())
            .collect()
        };
        assert_eq!(names(&plan(&env)), ["PATH"]);
        let manifest = Manifest::parse(
            "version = 1\n[env]\ninherit = [\"AWS_*\"]\n",
            Path::new("m"),
        )
        .unwrap();
        let inputs = PlanInputs {
            manifest: Some((&manifest, Path::new("/p/m"))),
            kinds: vec!["age"],
            ..Default::default()
        };
        let inheriting = Plan::build(&inputs, &env).unwrap();
        // VAULT_TOKEN is hushbox's own whatever [env] says.
        assert_eq!(names(&inheriting), ["AWS_SECRET_ACCESS_KEY", "PATH"]);
    }

    #[test]
    fn nul_in_an_env_value_is_an_error_without_the_value() {
        let env = Environment::default();
        let plan = plan(&env);
        let values = vec![
            Some(SecretValue::copy_from_slice(b"ok")),
            Some(SecretValue::copy_from_slice(b"canary\0x")),
        ];
        let resolution = Resolution {
            versions: vec![None, None],
            leases: vec![None, None],
            values,
        };
        let error = child_environment(
            &env,
            &generation(&plan, &resolution),
            &BTreeSet::new(),
            |n| Path::new("/s").join(n),
        )
        .unwrap_err();
        assert!(error.to_string().contains("NUL"));
        assert!(!error.to_string().contains("canary"));
    }
}
