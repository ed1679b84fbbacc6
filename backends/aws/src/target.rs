//! What a reference asks Secrets Manager for, and how a set of references
//! becomes the fewest calls: `BatchGetSecretValue` for the current versions,
//! `GetSecretValue` for pinned ones. Pure logic, planned without I/O.

use std::collections::HashMap;

use hushbox_core::{Error, Result, SecretRef};

/// The most secrets one `BatchGetSecretValue` call takes by id.
pub(crate) const BATCH_LIMIT: usize = 20;

/// The stage every secret's current version carries.
pub(crate) const CURRENT: &str = "AWSCURRENT";

/// One secret version to read: `aws://NAME_OR_ARN[?version_stage=S|version_id=V]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Target {
    /// The secret's name or ARN, as written (ARNs keep their colons).
    pub(crate) secret_id: String,
    pub(crate) version_id: Option<String>,
    pub(crate) version_stage: Option<String>,
}

impl Target {
    /// Reads the location's path and parameters. `version_stage` and
    /// `version_id` may both be given (Secrets Manager then checks that they
    /// agree); any other parameter is a configuration error, so that a typo
    /// is not silently ignored.
    pub(crate) fn parse(location: &SecretRef) -> Result<Self> {
        let mut target = Target {
            secret_id: location.path().to_owned(),
            version_id: None,
            version_stage: None,
        };
        for (name, value) in location.params() {
            let slot = match name.as_str() {
                "version_id" => &mut target.version_id,
                "version_stage" => &mut target.version_stage,
                other => {
                    return Err(Error::config(format!(
                        "unknown parameter `{other}`: aws references take `version_stage` and `version_id`"
                    ))
                    .with_subject(location));
                }
            };
            if value.is_empty() {
                return Err(Error::config(format!("the parameter `{name}` is empty"))
                    .with_subject(location));
            }
            *slot = Some(value.clone());
        }
        Ok(target)
    }

    /// Whether the target is a secret's current version, which is what
    /// `BatchGetSecretValue` returns.
    pub(crate) fn is_current(&self) -> bool {
        self.version_id.is_none()
            && self
                .version_stage
                .as_deref()
                .is_none_or(|stage| stage == CURRENT)
    }

    /// The same target in the form used to deduplicate: the current version
    /// asked for with or without `version_stage=AWSCURRENT` is one read.
    fn normalized(mut self) -> Self {
        if self.is_current() {
            self.version_stage = None;
        }
        self
    }
}

/// One distinct read and the positions (in the caller's list of locations)
/// it serves.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Read {
    pub(crate) target: Target,
    pub(crate) serves: Vec<usize>,
}

/// How a list of targets is fetched.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Plan {
    /// Each distinct read once, in the order first asked for.
    pub(crate) reads: Vec<Read>,
    /// Groups of indices into `reads`, at most [`BATCH_LIMIT`] each, for
    /// `BatchGetSecretValue`.
    pub(crate) batches: Vec<Vec<usize>>,
    /// Indices into `reads` for one `GetSecretValue` each.
    pub(crate) singles: Vec<usize>,
}

impl Plan {
    /// Plans `targets` (each with its position in the caller's list).
    /// Current versions of two or more distinct secrets go in batches;
    /// pinned versions, and a lone current version (one call either way,
    /// and `GetSecretValue` needs one IAM permission fewer), are read one by
    /// one. With `batching` off, everything is.
    pub(crate) fn new(targets: impl IntoIterator<Item = (usize, Target)>, batching: bool) -> Self {
        let mut plan = Plan::default();
        let mut by_target: HashMap<Target, usize> = HashMap::new();
        for (position, target) in targets {
            let target = target.normalized();
            match by_target.get(&target) {
                Some(&read) => plan.reads[read].serves.push(position),
                None => {
                    by_target.insert(target.clone(), plan.reads.len());
                    plan.reads.push(Read {
                        target,
                        serves: vec![position],
                    });
                }
            }
        }
        let (current, pinned): (Vec<usize>, Vec<usize>) =
            (0..plan.reads.len()).partition(|&read| plan.reads[read].target.is_current());
        if batching && current.len() >= 2 {
            plan.batches = current.chunks(BATCH_LIMIT).map(<[usize]>::to_vec).collect();
            plan.singles = pinned;
        } else {
            plan.singles = (0..plan.reads.len()).collect();
        }
        plan
    }
}

/// Whether a `BatchGetSecretValue` entry with `name` and `arn` answers a
/// request for `secret_id`: by name, by full ARN, or by partial ARN (an ARN
/// without the six random characters Secrets Manager appends).
pub(crate) fn answers(secret_id: &str, name: Option<&str>, arn: Option<&str>) -> bool {
    if name == Some(secret_id) || arn == Some(secret_id) {
        return true;
    }
    arn.and_then(|arn| arn.strip_prefix(secret_id))
        .and_then(|suffix| suffix.strip_prefix('-'))
        .is_some_and(|random| {
            random.len() == 6 && random.bytes().all(|b| b.is_ascii_alphanumeric())
        })
        && secret_id.starts_with("arn:")
}

#[cfg(test)]
mod tests {
    use super::*;
    use hushbox_core::ErrorKind;

    fn target(reference: &str) -> Target {
        Target::parse(&reference.parse().unwrap()).unwrap()
    }

    #[test]
    fn parses_names_arns_and_parameters() {
        let t = target("aws://prod/db?version_stage=AWSPREVIOUS#password");
        assert_eq!(t.secret_id, "prod/db");
        assert_eq!(t.version_stage.as_deref(), Some("AWSPREVIOUS"));
        assert!(!t.is_current());
        let arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:prod/db-AbCdEf";
        let t = target(&format!("aws://{arn}?version_id=3f2a#user"));
        assert_eq!(t.secret_id, arn);
        assert_eq!(t.version_id.as_deref(), Some("3f2a"));
        assert!(target("aws://x?version_stage=AWSCURRENT").is_current());
        assert!(target("aws://x").is_current());
        assert!(!target("aws://x?version_id=v&version_stage=AWSCURRENT").is_current());
    }

    #[test]
    fn unknown_and_empty_parameters_are_refused() {
        for reference in [
            "aws://x?stage=AWSPREVIOUS",
            "aws://x?version_id=",
            "aws://x?versionid=1",
        ] {
            let error = Target::parse(&reference.parse().unwrap()).unwrap_err();
            assert_eq!(error.kind(), ErrorKind::Config, "{reference}");
            assert!(error.to_string().starts_with(reference), "{error}");
        }
    }

    fn plan(references: &[&str], batching: bool) -> Plan {
        Plan::new(
            references.iter().enumerate().map(|(i, r)| (i, target(r))),
            batching,
        )
    }

    #[test]
    fn current_versions_batch_and_pinned_ones_do_not() {
        let plan = plan(
            &[
                "aws://a",
                "aws://b?version_stage=AWSPREVIOUS",
                "aws://c",
                "aws://a?version_stage=AWSCURRENT",
                "aws://d?version_id=1",
                "aws://b?version_stage=AWSPREVIOUS",
            ],
            true,
        );
        let ids: Vec<_> = plan
            .reads
            .iter()
            .map(|r| r.target.secret_id.as_str())
            .collect();
        assert_eq!(ids, ["a", "b", "c", "d"]);
        assert_eq!(plan.reads[0].serves, [0, 3]);
        assert_eq!(plan.reads[1].serves, [1, 5]);
        assert_eq!(plan.batches, [vec![0, 2]]);
        assert_eq!(plan.singles, [1, 3]);
    }

    #[test]
    fn batches_hold_at_most_twenty() {
        let references: Vec<String> = (0..45).map(|i| format!("aws://s{i}")).collect();
        let references: Vec<&str> = references.iter().map(String::as_str).collect();
        let plan = plan(&references, true);
        let sizes: Vec<_> = plan.batches.iter().map(Vec::len).collect();
        assert_eq!(sizes, [20, 20, 5]);
        assert!(plan.singles.is_empty());
    }

    #[test]
    fn a_lone_secret_or_disabled_batching_reads_one_by_one() {
        let lone = plan(&["aws://a", "aws://a", "aws://b?version_id=1"], true);
        assert!(lone.batches.is_empty());
        assert_eq!(lone.singles, [0, 1]);
        let off = plan(&["aws://a", "aws://b"], false);
        assert!(off.batches.is_empty());
        assert_eq!(off.singles, [0, 1]);
    }

    #[test]
    fn batch_entries_answer_by_name_full_arn_or_partial_arn() {
        let arn = "arn:aws:secretsmanager:eu-west-1:1:secret:prod/db-AbCdEf";
        assert!(answers("prod/db", Some("prod/db"), Some(arn)));
        assert!(answers(arn, Some("prod/db"), Some(arn)));
        assert!(answers(
            "arn:aws:secretsmanager:eu-west-1:1:secret:prod/db",
            Some("prod/db"),
            Some(arn)
        ));
        assert!(!answers("prod", Some("prod/db"), Some(arn)));
        assert!(!answers(
            "arn:aws:secretsmanager:eu-west-1:1:secret:prod",
            Some("prod/db"),
            Some(arn)
        ));
    }
}
