//! `hushbox check [--fetch]`: validate without delivering anything.

use super::{Outcome, Session, runtime};
use crate::cli::CheckArgs;
use crate::exit;
use crate::resolve::{Backends, resolve};

pub(super) fn check(session: &Session, args: CheckArgs) -> Outcome {
    let plan = session.plan(None, None, false)?;
    let backends = Backends::build(&plan, &session.registry, &session.env)?;
    match &plan.manifest_path {
        Some(path) => println!("manifest: {}", path.display()),
        None => println!("manifest: none (default backends only)"),
    }
    println!(
        "output:   {} (mode {:04o})",
        plan.output.dir.display(),
        plan.output.mode
    );
    let versions = if args.fetch {
        Some(runtime()?.block_on(resolve(&plan, &backends))?)
    } else {
        None
    };
    for (index, secret) in plan.secrets.iter().enumerate() {
        let mut line = format!("secret:   {}  {}", secret.name, secret.reference);
        if let Some(variable) = &secret.env_path {
            line.push_str(&format!("  ${variable}=<path>"));
        }
        if let Some(variable) = &secret.env_value {
            line.push_str(&format!("  ${variable}=<value>"));
        }
        if let Some(resolution) = &versions {
            let status = match (&resolution.values[index], &resolution.versions[index]) {
                (None, _) => "missing (optional)".to_owned(),
                (Some(_), Some(version)) => format!("ok (version {version})"),
                (Some(_), None) => "ok".to_owned(),
            };
            line.push_str(&format!("  {status}"));
        }
        println!("{line}");
    }
    println!(
        "ok: {} secrets, {} backends{}",
        plan.secrets.len(),
        backends.iter().count(),
        if args.fetch { ", all fetched" } else { "" }
    );
    Ok(exit::OK)
}
