//! `hushbox check [--fetch] [--format text|json]`: validate without
//! delivering anything. Names, references, versions and leases; never values.
//! Templates are checked with placeholders (syntax, declared secrets,
//! filters, variables); with `--fetch` they are rendered too, and the
//! renderings dropped unseen.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hushbox_core::Lease;
use serde_json::{Value, json};

use super::{Outcome, Session, build_generation, print_stdout, runtime};
use crate::cli::{CheckArgs, Format};
use crate::exit;
use crate::resolve::{Backends, Resolution, resolve};

pub(super) fn check(session: &Session, args: CheckArgs) -> Outcome {
    let plan = session.plan(None, None, false)?;
    let templates = session.templates(&plan)?;
    let backends = Backends::build(&plan, &session.registry, &session.env)?;
    let resolution = if args.fetch {
        Some(runtime()?.block_on(resolve(&plan, &backends))?)
    } else {
        None
    };
    if let Some(resolution) = &resolution {
        build_generation(&plan, &templates, resolution)?;
    }
    let template_entries: Vec<(String, String)> = plan
        .templates
        .iter()
        .map(|template| {
            let source = match &template.source {
                crate::plan::TemplateSource::File(path) => path.display().to_string(),
                crate::plan::TemplateSource::Inline(_) => "inline".to_owned(),
            };
            (template.name.clone(), source)
        })
        .collect();
    // Leases count from the fetch, which has just happened.
    let now = SystemTime::now();
    let facts: Vec<Option<Fetched>> = (0..plan.secrets.len())
        .map(|index| resolution.as_ref().map(|r| Fetched::of(r, index, now)))
        .collect();
    if args.format == Format::Json {
        let secrets: Vec<Value> = plan
            .secrets
            .iter()
            .zip(&facts)
            .map(|(secret, fetched)| {
                let mut entry = json!({
                    "name": secret.name,
                    "reference": secret.reference.to_string(),
                    "env_path": secret.env_path,
                    "env_value": secret.env_value,
                    "optional": secret.optional,
                    "watch": {
                        "refresh_seconds": plan.watch.interval_of(secret).as_secs_f64(),
                        "max_stale_seconds": plan.watch.max_stale_of(secret).as_secs_f64(),
                        "on_change": plan.watch.hooks_of(secret).map(ToString::to_string).collect::<Vec<_>>(),
                    },
                });
                if let Some(fetched) = fetched {
                    entry["status"] = json!(if fetched.found { "ok" } else { "missing" });
                    entry["version"] = json!(fetched.version);
                    entry["lease"] = fetched.lease.as_ref().map_or(Value::Null, |lease| {
                        json!({
                            "ttl_seconds": lease.ttl.as_secs(),
                            "renewable": lease.renewable,
                        })
                    });
                    entry["expires_at"] = json!(fetched.expires_at);
                }
                entry
            })
            .collect();
        let document = json!({
            "manifest": plan.manifest_path.as_ref().map(|path| path.to_string_lossy()),
            "output": {
                "dir": plan.output.dir.to_string_lossy(),
                "mode": format!("{:04o}", plan.output.mode),
            },
            "backends": backends.iter().map(|(name, _)| name).collect::<Vec<_>>(),
            "fetched": args.fetch,
            "secrets": secrets,
            "templates": plan.templates.iter().zip(&template_entries).map(|(template, (name, source))| json!({
                "name": name,
                "source": source,
                "mode": template.mode.map(|mode| format!("{mode:04o}")),
                "env_path": template.env_path,
                "env_value": template.env_value,
            })).collect::<Vec<_>>(),
        });
        print_stdout(&format!("{document:#}\n"))?;
        return Ok(exit::OK);
    }
    let mut report = String::new();
    match &plan.manifest_path {
        Some(path) => report.push_str(&format!("manifest: {}\n", path.display())),
        None => report.push_str(&format!(
            "manifest: none (no {} in {} or above it; default backends only)\n",
            crate::manifest::FILE_NAME,
            session.cwd.display()
        )),
    }
    report.push_str(&format!(
        "output:   {} (mode {:04o})\n",
        plan.output.dir.display(),
        plan.output.mode
    ));
    for (secret, fetched) in plan.secrets.iter().zip(&facts) {
        let mut line = format!("secret:   {}  {}", secret.name, secret.reference);
        if let Some(variable) = &secret.env_path {
            line.push_str(&format!("  ${variable}=<path>"));
        }
        if let Some(variable) = &secret.env_value {
            line.push_str(&format!("  ${variable}=<value>"));
        }
        if let Some(fetched) = fetched {
            line.push_str("  ");
            line.push_str(&fetched.text());
        }
        report.push_str(&line);
        report.push('\n');
        let hooks: Vec<String> = plan
            .watch
            .hooks_of(secret)
            .map(ToString::to_string)
            .collect();
        report.push_str(&format!(
            "          --watch: every {}, stale after {}, on change: {}\n",
            human(plan.watch.interval_of(secret)),
            human(plan.watch.max_stale_of(secret)),
            if hooks.is_empty() {
                "nothing".to_owned()
            } else {
                hooks.join(" + ")
            }
        ));
    }
    for (name, source) in &template_entries {
        let rendered = if args.fetch { "  rendered" } else { "" };
        report.push_str(&format!("template: {name}  {source}{rendered}\n"));
    }
    let templates_note = if plan.templates.is_empty() {
        String::new()
    } else {
        format!(", {} templates", plan.templates.len())
    };
    report.push_str(&format!(
        "ok: {} secrets{templates_note}, {} backends{}\n",
        plan.secrets.len(),
        backends.iter().count(),
        if args.fetch { ", all fetched" } else { "" }
    ));
    print_stdout(&report)?;
    Ok(exit::OK)
}

/// A duration as the manifest writes them: `500ms`, `30s`, `5m`, `2h`.
fn human(duration: std::time::Duration) -> String {
    let seconds = duration.as_secs();
    if duration.subsec_millis() != 0 || seconds == 0 {
        format!("{}ms", duration.as_millis())
    } else if seconds.is_multiple_of(3600) {
        format!("{}h", seconds / 3600)
    } else if seconds.is_multiple_of(60) {
        format!("{}m", seconds / 60)
    } else {
        format!("{seconds}s")
    }
}

/// What `--fetch` learnt about one secret: never its value.
struct Fetched {
    found: bool,
    version: Option<String>,
    /// A lease proper (renewable or not); `None` for an expiry alone.
    lease: Option<Lease>,
    /// When the values stop being valid (a lease's end, a certificate's
    /// expiry), as RFC 3339 UTC.
    expires_at: Option<String>,
}

impl Fetched {
    fn of(resolution: &Resolution, index: usize, now: SystemTime) -> Self {
        let lease = resolution.leases.get(index).cloned().flatten();
        Self {
            found: resolution.values[index].is_some(),
            version: resolution.versions[index].clone(),
            expires_at: lease.as_ref().map(|lease| rfc3339(now + lease.ttl)),
            // An expiry-only lease (empty id) is no lease to renew.
            lease: lease.filter(|lease| !lease.id.is_empty()),
        }
    }

    fn text(&self) -> String {
        if !self.found {
            return "missing (optional)".to_owned();
        }
        let mut facts = Vec::new();
        if let Some(version) = &self.version {
            facts.push(format!("version {version}"));
        }
        if let Some(lease) = &self.lease {
            let renewable = if lease.renewable {
                "renewable"
            } else {
                "not renewable"
            };
            facts.push(format!("lease {}s, {renewable}", lease.ttl.as_secs()));
        }
        if let Some(expires_at) = &self.expires_at {
            facts.push(format!("expires {expires_at}"));
        }
        if facts.is_empty() {
            "ok".to_owned()
        } else {
            format!("ok ({})", facts.join("; "))
        }
    }
}

/// `time` as `YYYY-MM-DDTHH:MM:SSZ` (proleptic Gregorian, UTC).
fn rfc3339(time: SystemTime) -> String {
    let seconds = time
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs();
    let (days, rest) = (seconds / 86_400, seconds % 86_400);
    // Howard Hinnant's civil_from_days, for days since 1970-01-01.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3_600,
        rest % 3_600 / 60,
        rest % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_formats_utc() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400 + 3_723);
        assert_eq!(rfc3339(leap), "2000-02-29T01:02:03Z");
        let later = UNIX_EPOCH + Duration::from_secs(1_798_761_599);
        assert_eq!(rfc3339(later), "2026-12-31T23:59:59Z");
    }
}
