//! `hushbox run -- CMD…`: local development. Secrets go into a private
//! per-run tmpfs directory that is removed when CMD exits, however it exits.

use hushbox_core::Error;

use super::inject::commit;
use super::{Failure, Outcome, Session, release, resolve_plan};
use crate::cli::RunArgs;
use crate::deliver::child_environment;
use crate::output::{GenerationWriter, OutputOptions, RunDir};
use crate::resolve::Backends;
use crate::supervise::{self, ChildSpec, SignalMask, SupervisorOptions};

/// Blocks signals for the commands that supervise a child. Must run before
/// any thread starts, so every thread inherits the mask and signals wait for
/// the supervisor loop instead of killing hushbox mid-write.
pub fn prepare_signals(command: &crate::cli::Command) -> std::io::Result<Option<SignalMask>> {
    match command {
        crate::cli::Command::Run(_) | crate::cli::Command::Exec(_) => {
            supervise::block_signals().map(Some)
        }
        _ => Ok(None),
    }
}

pub(super) fn run(
    session: &Session,
    args: RunArgs,
    signals: Option<SignalMask>,
    hardening: crate::harden::Hardening,
) -> Outcome {
    let mask = signals.ok_or_else(|| Error::config("signals were not prepared for `run`"))?;
    let plan = session.plan(true, None, false)?;
    let backends = Backends::build(&plan, &session.registry, &session.env)?;
    let prepared = prepare(session, &plan, &backends);
    let (run_dir, env) = match prepared {
        Ok(prepared) => prepared,
        Err(failure) => {
            release(&backends);
            return Err(failure);
        }
    };
    hardening.restore_core_limit();
    // Leases (database credentials) stay valid while the program runs.
    let keep_alive = backends.keep_alive();

    let mut command = args.command.into_iter();
    let spec = ChildSpec {
        program: command.next().expect("clap requires a command"),
        args: command.collect(),
        env,
        user: None,
        foreground_tty: true,
    };
    let outcome = supervise::run(
        spec,
        &SupervisorOptions {
            subreaper: false,
            mask,
        },
    );
    drop(keep_alive);
    release(&backends);
    let removed = run_dir.remove();
    let code = outcome.map_err(|error| Failure {
        code: Some(u8::try_from(error.code).unwrap_or(crate::exit::FAILURE)),
        errors: vec![Error::config(error.to_string())],
    })?;
    removed?;
    Ok(u8::try_from(code).unwrap_or(crate::exit::FAILURE))
}

/// Fetches, writes the private directory's generation, and builds the
/// child's environment. Every value is wiped when this returns: the child
/// runs while hushbox holds none.
fn prepare(
    session: &Session,
    plan: &crate::plan::Plan,
    backends: &Backends,
) -> Result<(RunDir, Vec<(std::ffi::OsString, std::ffi::OsString)>), Failure> {
    let resolution = resolve_plan(plan, backends)?;
    let run_dir = RunDir::create(&session.env)?;
    let writer = GenerationWriter::open(OutputOptions {
        dir: run_dir.path().to_path_buf(),
        uid: None,
        gid: None,
        mode: plan.output.mode,
        allow_disk: false,
    })?;
    let env = child_environment(&session.process_env, plan, &resolution, |name| {
        writer.path_of(name)
    })?;
    commit(&writer, plan, &resolution)?;
    Ok((run_dir, env))
}
