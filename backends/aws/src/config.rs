//! The settings of a `[backends.NAME]` section of kind `aws`, and how they
//! combine with the standard AWS environment variables.

use std::fmt;

use hushbox_core::{Environment, Error, Result};
use serde::Deserialize;

/// The most attempts a request may get, retries included. The SDK's standard
/// retry mode backs off exponentially with jitter; ten attempts already wait
/// for well over a minute in the worst case.
const MAX_ATTEMPTS_CEILING: u32 = 10;

/// The SDK's standard retry mode's own default.
const DEFAULT_MAX_ATTEMPTS: u32 = 3;

/// Settings of an `aws` instance. Every key is optional: without them the
/// instance is configured the way the AWS CLI is, from `AWS_REGION`,
/// `AWS_ENDPOINT_URL*`, `AWS_PROFILE` and the shared config files.
///
/// ```toml
/// [backends.aws]
/// kind = "aws"
/// region = "eu-west-1"                      # else AWS_REGION, AWS_DEFAULT_REGION, the profile
/// endpoint_url = "http://127.0.0.1:5000"    # else AWS_ENDPOINT_URL_SECRETS_MANAGER, AWS_ENDPOINT_URL
/// profile = "prod"                          # else AWS_PROFILE, else "default"
/// max_attempts = 3                          # else AWS_MAX_ATTEMPTS, else 3 (1 to 10)
/// ```
///
/// Credentials never appear here: they come from the standard AWS credential
/// chain only.
#[derive(Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct AwsConfig {
    /// The AWS region, such as `eu-west-1`.
    pub region: Option<String>,
    /// The Secrets Manager endpoint, for a local emulator or a VPC endpoint.
    pub endpoint_url: Option<String>,
    /// The profile of the shared config and credentials files.
    pub profile: Option<String>,
    /// How many attempts a request gets in the SDK's standard retry mode.
    pub max_attempts: Option<u32>,
}

impl AwsConfig {
    /// Settings with `region` set.
    pub fn with_region(mut self, region: impl Into<String>) -> Self {
        self.region = Some(region.into());
        self
    }

    /// Settings with `endpoint_url` set.
    pub fn with_endpoint_url(mut self, endpoint_url: impl Into<String>) -> Self {
        self.endpoint_url = Some(endpoint_url.into());
        self
    }

    /// Settings with `profile` set.
    pub fn with_profile(mut self, profile: impl Into<String>) -> Self {
        self.profile = Some(profile.into());
        self
    }

    /// Settings with `max_attempts` set.
    pub fn with_max_attempts(mut self, max_attempts: u32) -> Self {
        self.max_attempts = Some(max_attempts);
        self
    }
}

// Written by hand, as for every backend's settings: a future setting may be
// sensitive, and a derived Debug would print it without anyone deciding to.
impl fmt::Debug for AwsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwsConfig")
            .field("region", &self.region)
            .field(
                "endpoint_url",
                &self.endpoint_url.as_deref().map(redact_userinfo),
            )
            .field("profile", &self.profile)
            .field("max_attempts", &self.max_attempts)
            .finish_non_exhaustive()
    }
}

/// The settings in force: the manifest's, else the environment's. What is
/// still `None` is left to aws-config (the profile's region, the SDK's
/// endpoint for the region).
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Settings {
    pub(crate) region: Option<String>,
    pub(crate) endpoint_url: Option<String>,
    pub(crate) profile: Option<String>,
    pub(crate) max_attempts: u32,
    /// `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` / `AWS_SESSION_TOKEN`
    /// of the environment snapshot: the first link of the standard chain.
    pub(crate) static_keys: Option<StaticKeys>,
    /// `AWS_WEB_IDENTITY_TOKEN_FILE`, when set: a credential file the chain
    /// reads when there are no static keys.
    pub(crate) web_identity_token_file: Option<std::path::PathBuf>,
}

/// Access keys from the environment snapshot.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct StaticKeys {
    pub(crate) access_key_id: String,
    pub(crate) secret_access_key: String,
    pub(crate) session_token: Option<String>,
}

impl Settings {
    /// The variables and files the credential chain takes this instance's
    /// credentials from. Static keys come first in the chain: when they are
    /// set, they are what the instance uses.
    pub(crate) fn credential_sources(&self) -> hushbox_core::CredentialSources {
        let mut sources = hushbox_core::CredentialSources::default();
        if let Some(keys) = &self.static_keys {
            sources.variables.extend(
                ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"]
                    .into_iter()
                    .map(str::to_owned),
            );
            if keys.session_token.is_some() {
                sources.variables.push("AWS_SESSION_TOKEN".to_owned());
            }
        } else if let Some(file) = &self.web_identity_token_file {
            sources.files.push(file.clone());
        }
        sources
    }

    /// Combines the manifest's settings with the environment snapshot, in
    /// the precedence the AWS SDKs document: the manifest, then the
    /// service-specific variable, then the general one.
    pub(crate) fn resolve(config: &AwsConfig, env: &Environment) -> Result<Self> {
        let var = |name: &str| env.get(name).filter(|value| !value.is_empty());
        let region = first_set("region", config.region.as_deref())?
            .or_else(|| var("AWS_REGION"))
            .or_else(|| var("AWS_DEFAULT_REGION"))
            .map(str::to_owned);
        if let Some(region) = &region {
            check_region(region)?;
        }

        let ignore_env_endpoints = var("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS")
            .is_some_and(|value| value.eq_ignore_ascii_case("true"));
        let endpoint_url = match first_set("endpoint_url", config.endpoint_url.as_deref())? {
            Some(url) => Some((url, "`endpoint_url`")),
            None if ignore_env_endpoints => None,
            None => var("AWS_ENDPOINT_URL_SECRETS_MANAGER")
                .map(|url| (url, "AWS_ENDPOINT_URL_SECRETS_MANAGER"))
                .or_else(|| var("AWS_ENDPOINT_URL").map(|url| (url, "AWS_ENDPOINT_URL"))),
        };
        let endpoint_url = match endpoint_url {
            Some((url, origin)) => Some(check_endpoint_url(url, origin)?),
            None => None,
        };

        let profile = first_set("profile", config.profile.as_deref())?
            .or_else(|| var("AWS_PROFILE"))
            .map(str::to_owned);

        let max_attempts = match config.max_attempts {
            Some(attempts) => check_attempts(attempts, "`max_attempts`")?,
            None => match var("AWS_MAX_ATTEMPTS") {
                Some(text) => {
                    let attempts = text.trim().parse().map_err(|_| {
                        Error::config("AWS_MAX_ATTEMPTS must be a whole number from 1 to 10")
                    })?;
                    check_attempts(attempts, "AWS_MAX_ATTEMPTS")?
                }
                None => DEFAULT_MAX_ATTEMPTS,
            },
        };

        let static_keys = match (var("AWS_ACCESS_KEY_ID"), var("AWS_SECRET_ACCESS_KEY")) {
            (Some(id), Some(secret)) => Some(StaticKeys {
                access_key_id: id.to_owned(),
                secret_access_key: secret.to_owned(),
                session_token: var("AWS_SESSION_TOKEN").map(str::to_owned),
            }),
            (None, None) => None,
            (Some(_), None) => {
                return Err(Error::config(
                    "AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not; set both, or neither to use the rest of the AWS credential chain",
                ));
            }
            (None, Some(_)) => {
                return Err(Error::config(
                    "AWS_SECRET_ACCESS_KEY is set but AWS_ACCESS_KEY_ID is not; set both, or neither to use the rest of the AWS credential chain",
                ));
            }
        };

        let web_identity_token_file = var("AWS_WEB_IDENTITY_TOKEN_FILE").map(Into::into);

        Ok(Self {
            region,
            endpoint_url,
            profile,
            max_attempts,
            static_keys,
            web_identity_token_file,
        })
    }
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("region", &self.region)
            .field(
                "endpoint_url",
                &self.endpoint_url.as_deref().map(redact_userinfo),
            )
            .field("profile", &self.profile)
            .field("max_attempts", &self.max_attempts)
            .field("static_keys", &self.static_keys.is_some())
            .finish_non_exhaustive()
    }
}

/// A manifest setting, refused when empty (an empty string is a mistake,
/// not a request for the default).
fn first_set<'a>(key: &str, value: Option<&'a str>) -> Result<Option<&'a str>> {
    match value {
        Some(value) if value.trim().is_empty() => Err(Error::config(format!(
            "`{key}` is empty; remove it to use the default"
        ))),
        other => Ok(other),
    }
}

/// Regions are lower-case words and digits joined by `-` (`eu-west-1`,
/// `us-gov-west-1`, `cn-north-1`); refusing anything else catches a value
/// put in the wrong key before it becomes part of a host name.
fn check_region(region: &str) -> Result<()> {
    let valid = !region.is_empty()
        && region.len() <= 64
        && region.split('-').all(|part| {
            !part.is_empty()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        });
    if valid {
        Ok(())
    } else {
        Err(Error::config(
            "the AWS region must look like `eu-west-1` (lower-case letters, digits and dashes)",
        ))
    }
}

/// An endpoint must be an `http://` or `https://` URL with a host. The
/// message names where the URL came from but does not repeat it: it may
/// carry credentials in its user-info part.
fn check_endpoint_url(url: &str, origin: &str) -> Result<String> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"));
    match rest {
        Some(rest)
            if !rest.is_empty()
                && !rest.starts_with('/')
                && !rest.contains(char::is_whitespace) =>
        {
            Ok(url.to_owned())
        }
        _ => Err(Error::config(format!(
            "the endpoint URL from {origin} must be an http:// or https:// URL with a host"
        ))),
    }
}

fn check_attempts(attempts: u32, origin: &str) -> Result<u32> {
    if (1..=MAX_ATTEMPTS_CEILING).contains(&attempts) {
        Ok(attempts)
    } else {
        Err(Error::config(format!(
            "{origin} must be from 1 to {MAX_ATTEMPTS_CEILING}"
        )))
    }
}

/// The URL without a `user:password@` part, for `Debug` and logs.
pub(crate) fn redact_userinfo(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((_, host)) => format!("{scheme}://…@{host}{path}"),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hushbox_core::ErrorKind;

    fn resolve(config: AwsConfig, pairs: &[(&str, &str)]) -> Result<Settings> {
        Settings::resolve(&config, &Environment::from_pairs(pairs.iter().copied()))
    }

    #[test]
    fn the_manifest_wins_over_the_environment() {
        let settings = resolve(
            AwsConfig::default()
                .with_region("eu-west-1")
                .with_endpoint_url("http://manifest:1")
                .with_profile("manifest")
                .with_max_attempts(5),
            &[
                ("AWS_REGION", "us-east-1"),
                ("AWS_ENDPOINT_URL", "http://general:2"),
                ("AWS_ENDPOINT_URL_SECRETS_MANAGER", "http://specific:3"),
                ("AWS_PROFILE", "env"),
                ("AWS_MAX_ATTEMPTS", "2"),
            ],
        )
        .unwrap();
        assert_eq!(settings.region.as_deref(), Some("eu-west-1"));
        assert_eq!(settings.endpoint_url.as_deref(), Some("http://manifest:1"));
        assert_eq!(settings.profile.as_deref(), Some("manifest"));
        assert_eq!(settings.max_attempts, 5);
    }

    #[test]
    fn the_service_specific_endpoint_wins_over_the_general_one() {
        let both = [
            ("AWS_ENDPOINT_URL", "http://general:2"),
            ("AWS_ENDPOINT_URL_SECRETS_MANAGER", "http://specific:3"),
        ];
        let settings = resolve(AwsConfig::default(), &both).unwrap();
        assert_eq!(settings.endpoint_url.as_deref(), Some("http://specific:3"));
        let settings = resolve(AwsConfig::default(), &both[..1]).unwrap();
        assert_eq!(settings.endpoint_url.as_deref(), Some("http://general:2"));
        let mut ignored = both.to_vec();
        ignored.push(("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "true"));
        let settings = resolve(AwsConfig::default(), &ignored).unwrap();
        assert_eq!(settings.endpoint_url, None);
        // The manifest's endpoint is not "configured in the environment".
        let settings = resolve(
            AwsConfig::default().with_endpoint_url("https://vpce.example"),
            &ignored,
        )
        .unwrap();
        assert_eq!(
            settings.endpoint_url.as_deref(),
            Some("https://vpce.example")
        );
    }

    #[test]
    fn region_falls_back_to_aws_default_region_and_defaults_stay_unset() {
        let settings = resolve(
            AwsConfig::default(),
            &[("AWS_DEFAULT_REGION", "ap-south-1")],
        )
        .unwrap();
        assert_eq!(settings.region.as_deref(), Some("ap-south-1"));
        let settings = resolve(AwsConfig::default(), &[("AWS_REGION", "")]).unwrap();
        assert_eq!(settings.region, None);
        assert_eq!(settings.endpoint_url, None);
        assert_eq!(settings.profile, None);
        assert_eq!(settings.max_attempts, DEFAULT_MAX_ATTEMPTS);
        assert!(settings.static_keys.is_none());
    }

    #[test]
    fn static_keys_come_in_pairs() {
        let settings = resolve(
            AwsConfig::default(),
            &[
                ("AWS_ACCESS_KEY_ID", "id"),
                ("AWS_SECRET_ACCESS_KEY", "secret"),
                ("AWS_SESSION_TOKEN", "token"),
            ],
        )
        .unwrap();
        let keys = settings.static_keys.unwrap();
        assert_eq!(keys.access_key_id, "id");
        assert_eq!(keys.session_token.as_deref(), Some("token"));
        for half in [
            ("AWS_ACCESS_KEY_ID", "id"),
            ("AWS_SECRET_ACCESS_KEY", "s3cr3t-value"),
        ] {
            let error = resolve(AwsConfig::default(), &[half]).unwrap_err();
            assert_eq!(error.kind(), ErrorKind::Config);
            assert!(!error.to_string().contains("s3cr3t"), "{error}");
        }
    }

    #[test]
    fn bad_values_are_configuration_errors_that_do_not_repeat_them() {
        let cases = [
            AwsConfig::default().with_region("EU West"),
            AwsConfig::default().with_region(""),
            AwsConfig::default().with_region("eu--west"),
            AwsConfig::default().with_endpoint_url("ftp://x"),
            AwsConfig::default().with_endpoint_url("https://"),
            AwsConfig::default().with_endpoint_url("http://user:hunter2@ho st"),
            AwsConfig::default().with_profile(" "),
            AwsConfig::default().with_max_attempts(0),
            AwsConfig::default().with_max_attempts(11),
        ];
        for config in cases {
            let debug = format!("{config:?}");
            let error = resolve(config, &[]).unwrap_err();
            assert_eq!(error.kind(), ErrorKind::Config, "{debug}");
            assert!(!error.to_string().contains("hunter2"), "{error}");
        }
        for value in ["x", "0", "99"] {
            let error = resolve(AwsConfig::default(), &[("AWS_MAX_ATTEMPTS", value)]).unwrap_err();
            assert!(error.to_string().contains("AWS_MAX_ATTEMPTS"), "{error}");
        }
        let error = resolve(
            AwsConfig::default(),
            &[("AWS_ENDPOINT_URL", "localhost:5000")],
        )
        .unwrap_err();
        assert!(
            error.to_string().contains("from AWS_ENDPOINT_URL "),
            "{error}"
        );
    }

    #[test]
    fn debug_hides_endpoint_credentials_and_keys() {
        let config = AwsConfig::default()
            .with_region("eu-west-1")
            .with_endpoint_url("https://user:hunter2@proxy.example:8443/sm");
        assert_eq!(
            format!("{config:?}"),
            "AwsConfig { region: Some(\"eu-west-1\"), endpoint_url: Some(\"https://…@proxy.example:8443/sm\"), profile: None, max_attempts: None, .. }"
        );
        let settings = resolve(
            config,
            &[
                ("AWS_ACCESS_KEY_ID", "AKIDCANARY"),
                ("AWS_SECRET_ACCESS_KEY", "CANARYSECRET"),
            ],
        )
        .unwrap();
        let debug = format!("{settings:?}");
        assert!(!debug.contains("CANARY"), "{debug}");
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(debug.contains("static_keys: true"), "{debug}");
    }

    #[test]
    fn userinfo_redaction_keeps_host_and_path() {
        assert_eq!(
            redact_userinfo("http://127.0.0.1:5000"),
            "http://127.0.0.1:5000"
        );
        assert_eq!(redact_userinfo("http://a:b@h/p@q"), "http://…@h/p@q");
    }

    #[test]
    fn credential_sources_are_the_keys_the_chain_takes_from_the_environment() {
        let keys = [
            ("AWS_ACCESS_KEY_ID", "id"),
            ("AWS_SECRET_ACCESS_KEY", "secret"),
            ("AWS_WEB_IDENTITY_TOKEN_FILE", "/var/run/token"),
        ];
        let sources = resolve(AwsConfig::default(), &keys)
            .unwrap()
            .credential_sources();
        assert_eq!(
            sources.variables,
            ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"]
        );
        assert!(
            sources.files.is_empty(),
            "static keys come first in the chain"
        );
        let mut with_session = keys.to_vec();
        with_session.push(("AWS_SESSION_TOKEN", "token"));
        let sources = resolve(AwsConfig::default(), &with_session)
            .unwrap()
            .credential_sources();
        assert_eq!(sources.variables.len(), 3);
        assert!(!format!("{sources:?}").contains("secret\""));
        let sources = resolve(AwsConfig::default(), &keys[2..])
            .unwrap()
            .credential_sources();
        assert!(sources.variables.is_empty());
        assert_eq!(sources.files, [std::path::Path::new("/var/run/token")]);
    }
}
