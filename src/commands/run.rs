//! `hushbox run -- CMD…`: local development. Secrets go into a private
//! per-run tmpfs directory that is removed when CMD exits, however it exits.

use hushbox_core::Error;

use super::{
    ChildPolicy, Failure, Outcome, Session, build_generation, end_setup, or_stopped, release,
    resolve_plan, supervise_child,
};
use crate::cli::RunArgs;
use crate::deliver::child_environment;
use crate::output::{GenerationWriter, OutputOptions, RunDir};
use crate::resolve::Backends;
use crate::supervise::{self, SignalMask, SupervisorOptions, stop};

/// Blocks signals for the commands that supervise a child. Must run before
/// any thread starts, so every thread inherits the mask and signals wait for
/// the supervisor loop instead of killing hushbox mid-write.
pub fn prepare_signals(command: &crate::cli::Command) -> std::io::Result<Option<SignalMask>> {
    match command {
        crate::cli::Command::Run(_) | crate::cli::Command::Exec(_) => {
            let mask = supervise::block_signals()?;
            // Until the child exists, TERM/INT/HUP/QUIT end hushbox.
            supervise::stop::watch()?;
            Ok(Some(mask))
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
    let mut plan = session.plan(Some(&args.resolve_env), None, false)?;
    // The private directory belongs to the user who runs hushbox, and so do
    // its files, as [output].uid/gid do not apply here either.
    for template in &mut plan.templates {
        template.uid = None;
        template.gid = None;
    }
    let templates = session.templates(&plan)?;
    let backends = Backends::build(&plan, &session.registry, &session.env)?;
    let prepared = prepare(session, &plan, &templates, &backends);
    let (run_dir, env) = match prepared {
        Ok(prepared) => prepared,
        Err(failure) => {
            release(&backends);
            return Err(or_stopped(failure));
        }
    };
    if let Err(failure) = end_setup() {
        release(&backends);
        // The private directory goes as it would after the program.
        let _ = run_dir.remove();
        return Err(failure);
    }
    hardening.restore_core_limit();
    let options = SupervisorOptions {
        subreaper: false,
        mask,
    };
    // The program dies with a SIGKILLed hushbox: its secrets' directory
    // is gone (or about to be swept) by then.
    let outcome = supervise_child(
        args.command,
        env,
        &options,
        ChildPolicy {
            foreground_tty: true,
            no_new_privs: !args.allow_new_privileges,
            die_with_supervisor: true,
        },
        &backends,
    );
    // The private directory goes whatever happened to the program.
    let removed = run_dir.remove();
    let code = outcome?;
    removed?;
    Ok(code)
}

/// Fetches, writes the private directory's generation, and builds the
/// child's environment. Every value is wiped when this returns: the child
/// runs while hushbox holds none.
fn prepare(
    session: &Session,
    plan: &crate::plan::Plan,
    templates: &crate::template::Templates,
    backends: &Backends,
) -> Result<(RunDir, Vec<(std::ffi::OsString, std::ffi::OsString)>), Failure> {
    let resolution = resolve_plan(plan, backends)?;
    let generation = build_generation(plan, templates, &resolution)?;
    let run_dir = RunDir::create(&session.env)?;
    let writer = GenerationWriter::open(OutputOptions {
        dir: run_dir.path().to_path_buf(),
        uid: None,
        gid: None,
        mode: plan.output.mode,
        allow_disk: false,
        lock_timeout: plan.output.lock_timeout,
    })?
    .cancel_when(|| stop::received().map(stop::stopped_error));
    let env = child_environment(
        &session.process_env,
        &generation,
        &backends.credential_variables(),
        |name| writer.path_of(name),
    )?;
    generation.commit(&writer)?;
    Ok((run_dir, env))
}
