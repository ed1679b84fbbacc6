//! `hushbox exec -- CMD…`: the container entrypoint. Secrets are written to
//! `[output].dir` (tmpfs), privileges are dropped, and CMD runs as a
//! supervised child with tini-grade signal forwarding and reaping.

use hushbox_core::Error;

use super::inject::output_options;
use super::{
    ChildPolicy, Failure, Outcome, Session, Watching, build_generation, end_setup, or_stopped,
    release, resolve_plan, supervise_child, warn_unwatched,
};
use crate::cli::ExecArgs;
use crate::deliver::child_environment;
use crate::harden::Hardening;
use crate::output::{GenerationWriter, OwnerOrigin};
use crate::resolve::Backends;
use crate::supervise::{self, SignalMask, SupervisorOptions, resolve_user, stop};

pub(super) fn exec(
    session: &Session,
    args: ExecArgs,
    signals: Option<SignalMask>,
    hardening: Hardening,
) -> Outcome {
    let mask = signals.ok_or_else(|| Error::config("signals were not prepared for `exec`"))?;
    // Resolve --user before anything is fetched: a typo should cost nothing.
    let user = args.user.as_deref().map(resolve_user).transpose()?;
    let mut plan = session.plan(Some(&args.resolve_env), args.dir, args.allow_disk)?;
    warn_unwatched(&plan, args.watch);
    let mut owner_origin = OwnerOrigin::Manifest;
    if let (Some(credentials), Some(spec)) = (&user, &args.user) {
        // Files are owned as the manifest says; when it says nothing, they
        // belong to the user the program runs as, who must be able to read
        // them under a 0400 mode.
        owner_origin = match (plan.output.uid, plan.output.gid) {
            (Some(_), Some(_)) => OwnerOrigin::Manifest,
            (None, None) => OwnerOrigin::User(spec.clone()),
            _ => OwnerOrigin::ManifestAndUser(spec.clone()),
        };
        plan.output.uid = plan.output.uid.or(Some(credentials.uid));
        plan.output.gid = plan.output.gid.or(Some(credentials.gid));
    }
    let templates = session.templates(&plan)?;
    let has_files = plan.file_secrets().next().is_some() || !plan.templates.is_empty();
    // Refuse a bad output directory before fetching anything.
    let writer = if has_files {
        Some(
            GenerationWriter::open(output_options(&plan))?
                .owner_from(owner_origin)
                .cancel_when(|| stop::received().map(stop::stopped_error)),
        )
    } else {
        None
    };

    let metrics = super::bind_metrics(args.metrics_addr)?;
    let backends = Backends::build(&plan, &session.registry, &session.env)?;
    let prepared = prepare(
        session,
        &plan,
        &templates,
        &backends,
        writer.as_ref(),
        args.watch,
    );
    let (env, baseline) = match prepared {
        Ok(prepared) => prepared,
        Err(failure) => {
            release(&backends);
            return Err(or_stopped(failure));
        }
    };
    if let Err(failure) = end_setup() {
        release(&backends);
        return Err(failure);
    }
    if args.watch {
        // The watcher keeps writing after the drop: the output directory
        // (and its lock) must belong to the user it runs as.
        if let (Some(writer), Some(credentials)) = (&writer, &user) {
            writer.hand_over(credentials.uid, credentials.gid)?;
        }
    } else {
        // With --watch, hushbox holds credentials for the life of the
        // program, so it stays without core dumps (and so does the
        // program, which inherits the limit).
        hardening.restore_core_limit();
    }

    match &user {
        Some(credentials) if credentials.uid == 0 => {
            tracing::warn!("--user resolves to root: the program runs with full privileges")
        }
        None if nix::unistd::geteuid().is_root() => tracing::warn!(
            "the program runs as root; pass --user to drop privileges before it starts"
        ),
        _ => {}
    }
    if let Some(credentials) = &user {
        drop_privileges(credentials)?;
        if credentials.uid != 0 {
            warn_about_readable_credentials(&backends);
        }
        // A uid change resets the dumpable flag to the system's
        // suid_dumpable; hushbox may hold credentials still (--watch).
        let _ = nix::sys::prctl::set_dumpable(false);
    }
    let watching = baseline.map(|start| {
        Watching::for_program(&plan, &templates, &backends, writer, start, &env, metrics)
    });
    let options = SupervisorOptions {
        subreaper: true,
        mask,
    };
    // As PID 1 (or its stand-in), hushbox's death ends the container.
    supervise_child(
        args.command,
        env,
        &options,
        ChildPolicy {
            foreground_tty: false,
            no_new_privs: !args.allow_new_privileges,
            die_with_supervisor: false,
        },
        &backends,
        watching,
    )
}

type Env = Vec<(std::ffi::OsString, std::ffi::OsString)>;
/// What `--watch` keeps of the setup: digests, and how to rebuild the
/// program's environment.
type Watch = (crate::watch::Baseline, Option<crate::watch::EnvBuilder>);

/// Fetches, commits the generation, and builds the app's environment.
/// Without `--watch`, every value is wiped when this returns: the
/// supervisor holds no secrets while the app runs.
fn prepare(
    session: &Session,
    plan: &crate::plan::Plan,
    templates: &crate::template::Templates,
    backends: &Backends,
    writer: Option<&GenerationWriter>,
    watch: bool,
) -> Result<(Env, Option<Watch>), Failure> {
    let resolution = resolve_plan(plan, backends)?;
    let generation = build_generation(plan, templates, &resolution)?;
    let env = child_environment(
        &session.process_env,
        &generation,
        &backends.credential_variables(),
        |name| writer.map_or_else(|| plan.output.dir.join(name), |w| w.path_of(name)),
    )?;
    if let Some(writer) = writer {
        generation.commit(writer)?;
    }
    if !watch {
        return Ok((env, None));
    }
    let builder = env_builder(session, plan, templates, backends, writer);
    // Digests only: the values are wiped as this returns.
    Ok((
        env,
        Some((crate::watch::Baseline::of(&resolution), builder)),
    ))
}

/// When a `restart` hook may fire and the program gets values in its
/// environment (`env_value`), the watcher rebuilds that environment from
/// the new values for the restarted program.
pub(super) fn env_builder(
    session: &Session,
    plan: &crate::plan::Plan,
    templates: &crate::template::Templates,
    backends: &Backends,
    writer: Option<&GenerationWriter>,
) -> Option<crate::watch::EnvBuilder> {
    let restarts = plan.watch.on_change == Some(crate::plan::OnChange::Restart)
        || plan
            .secrets
            .iter()
            .any(|secret| secret.on_change == Some(crate::plan::OnChange::Restart));
    let values_in_env = plan.secrets.iter().any(|secret| secret.env_value.is_some())
        || plan
            .templates
            .iter()
            .any(|template| template.env_value.is_some());
    if !(restarts && values_in_env) {
        return None;
    }
    let base = session.process_env.clone();
    let plan = plan.clone();
    let templates = templates.clone();
    let credentials = backends.credential_variables();
    let dir = writer.map_or_else(|| plan.output.dir.clone(), |w| w.dir().to_path_buf());
    Some(Box::new(move |resolution| {
        let generation = crate::generation::Generation::build(&plan, &templates, resolution)
            .map_err(crate::generation::one_error)?;
        child_environment(&base, &generation, &credentials, |name| dir.join(name))
    }))
}

/// Warns, once per file, about each credential file of the run's backends
/// that the program's user can open. Called after the privilege drop, so
/// the kernel itself answers, with every rule it applies (owner, mode,
/// groups, ACLs, the directories on the way): an open that succeeds now
/// would succeed for the program. Nothing is read.
fn warn_about_readable_credentials(backends: &Backends) {
    use std::os::unix::fs::OpenOptionsExt;
    for file in backends.credential_files() {
        let opened = std::fs::OpenOptions::new()
            .read(true)
            // A FIFO planted at the path must not block the start.
            .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
            .open(&file);
        if opened.is_ok() {
            tracing::warn!(
                file = %file.display(),
                "the program's user can read this credential file of hushbox's, and so reach \
                 secrets outside the manifest; make it root-owned with mode 0400 (hushbox reads \
                 it before dropping privileges)"
            );
        }
    }
}

/// Drops hushbox's own privileges (supplementary groups, then gid, then uid)
/// before the child is spawned, so the supervisor runs as the same user as
/// the app. It holds no secrets by then and needs no privilege to reap; and
/// in a container started with `--cap-drop ALL` a root supervisor could not
/// even forward `docker stop`'s SIGTERM to a process of another user, for
/// lack of CAP_KILL.
///
/// When hushbox already runs as exactly that user (`docker run --user app`
/// with `exec --user app` in the image's entrypoint), the drop is a no-op:
/// setgroups(2) needs CAP_SETGID even to set the groups a process already
/// has, so it is skipped when they are the same; setresgid/setresuid to the
/// ids a process already holds need no privilege.
fn drop_privileges(credentials: &supervise::Credentials) -> Result<(), Error> {
    use nix::unistd::{Gid, Uid, getgroups, setgroups, setresgid, setresuid};
    let groups: Vec<Gid> = credentials
        .groups
        .iter()
        .copied()
        .map(Gid::from_raw)
        .collect();
    let gid = Gid::from_raw(credentials.gid);
    let uid = Uid::from_raw(credentials.uid);
    let failed = |what: &str, errno: nix::errno::Errno| {
        Error::new(
            hushbox_core::ErrorKind::PermissionDenied,
            format!("cannot drop privileges ({what}): needs root or CAP_SETUID and CAP_SETGID"),
        )
        .with_source(std::io::Error::from(errno))
    };
    if !same_groups(&getgroups().unwrap_or_default(), &groups, gid) {
        setgroups(&groups).map_err(|errno| failed("setgroups", errno))?;
    }
    setresgid(gid, gid, gid).map_err(|errno| failed("setresgid", errno))?;
    setresuid(uid, uid, uid).map_err(|errno| failed("setresuid", errno))?;
    Ok(())
}

/// Whether the supplementary groups a process has (`current`) are those it
/// is asked to take (`wanted`), order and duplicates aside. The kernel may
/// or may not list the effective gid among them, so `primary` does not count
/// on either side.
fn same_groups(
    current: &[nix::unistd::Gid],
    wanted: &[nix::unistd::Gid],
    primary: nix::unistd::Gid,
) -> bool {
    use std::collections::BTreeSet;
    let set = |groups: &[nix::unistd::Gid]| -> BTreeSet<u32> {
        groups
            .iter()
            .filter(|gid| **gid != primary)
            .map(|gid| gid.as_raw())
            .collect()
    };
    set(current) == set(wanted)
}

#[cfg(test)]
mod tests {
    use nix::unistd::Gid;

    use super::same_groups;

    fn gids(ids: &[u32]) -> Vec<Gid> {
        ids.iter().copied().map(Gid::from_raw).collect()
    }

    #[test]
    fn same_groups_ignores_order_duplicates_and_the_primary_gid() {
        let primary = Gid::from_raw(1000);
        assert!(same_groups(&gids(&[]), &gids(&[]), primary));
        assert!(same_groups(&gids(&[1000]), &gids(&[]), primary));
        assert!(same_groups(&gids(&[29, 10, 10]), &gids(&[10, 29]), primary));
        assert!(!same_groups(&gids(&[0]), &gids(&[]), primary));
        assert!(!same_groups(&gids(&[10]), &gids(&[10, 29]), primary));
    }
}
