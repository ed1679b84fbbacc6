//! Hooks: what a committed generation sets off, once per generation
//! (debounced), never for the first one. A hook sees the names of the
//! secrets that changed and the generation number, never a value.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::time::{Duration, Instant};

use crate::plan::OnChange;
use crate::supervise::control::{Directive, Directives, HelperSpec, spawn_helper};

/// The hooks of one or more generations, waiting out the debounce.
#[derive(Debug)]
pub struct Pending {
    /// The hooks to fire, each once.
    pub hooks: Vec<OnChange>,
    /// The secrets that changed, by name.
    pub changed: BTreeSet<String>,
    /// The latest generation.
    pub generation: u64,
    /// When they fire.
    pub fire_at: Instant,
}

impl Pending {
    /// Adds a generation's hooks; the debounce starts again.
    pub fn add(
        pending: &mut Option<Self>,
        hooks: impl IntoIterator<Item = OnChange>,
        changed: impl IntoIterator<Item = String>,
        generation: u64,
        debounce: Duration,
    ) {
        let entry = pending.get_or_insert_with(|| Self {
            hooks: Vec::new(),
            changed: BTreeSet::new(),
            generation,
            fire_at: Instant::now(),
        });
        for hook in hooks {
            if !entry.hooks.contains(&hook) {
                entry.hooks.push(hook);
            }
        }
        entry.changed.extend(changed);
        entry.generation = generation;
        entry.fire_at = Instant::now() + debounce;
    }
}

/// Where hooks go: to the supervisor of a child (`exec`/`run --watch`),
/// or run here (`inject --watch`, which has no child).
pub trait HookSink: Send {
    /// Fires one batch.
    fn fire(&mut self, pending: Pending);
    /// Stops the program (`fail_on_stale`); false when there is none.
    fn stop_program(&mut self) -> bool;
    /// The program's environment after a change, for a restart (when it
    /// carries values). Default: no program, nothing to keep.
    fn program_env(&mut self, env: Vec<(OsString, OsString)>) {
        drop(env);
    }
}

/// The variables a hook gets on top of its base environment.
fn hook_env(
    base: &[(OsString, OsString)],
    changed: &BTreeSet<String>,
    generation: u64,
) -> Vec<(OsString, OsString)> {
    let mut env: Vec<(OsString, OsString)> = base
        .iter()
        .filter(|(name, _)| name != "HUSHBOX_CHANGED" && name != "HUSHBOX_GENERATION")
        .cloned()
        .collect();
    let names: Vec<&str> = changed.iter().map(String::as_str).collect();
    env.push(("HUSHBOX_CHANGED".into(), names.join(",").into()));
    env.push(("HUSHBOX_GENERATION".into(), generation.to_string().into()));
    env
}

fn helper(
    command: &[String],
    timeout: Duration,
    base: &[(OsString, OsString)],
    pending: &Pending,
) -> HelperSpec {
    HelperSpec {
        label: command[0].clone(),
        program: command[0].clone().into(),
        args: command[1..].iter().map(OsString::from).collect(),
        env: hook_env(base, &pending.changed, pending.generation),
        timeout,
    }
}

/// Hands hooks to a supervisor.
pub struct SupervisorSink {
    /// The supervisor's queue.
    pub directives: Directives,
    /// The environment hooks start from: the program's, without any value.
    pub base_env: Vec<(OsString, OsString)>,
    /// How long `restart` waits before SIGKILL.
    pub grace: Duration,
    /// The program's environment after a change, when it carries values
    /// (`env_value`): built by the watcher from the committed values.
    pub restart_env: Option<Vec<(OsString, OsString)>>,
}

impl HookSink for SupervisorSink {
    fn fire(&mut self, pending: Pending) {
        let changed: Vec<&str> = pending.changed.iter().map(String::as_str).collect();
        tracing::info!(
            generation = pending.generation,
            changed = %changed.join(","),
            "secrets changed; firing hooks"
        );
        let restart = pending.hooks.contains(&OnChange::Restart);
        for hook in &pending.hooks {
            match hook {
                // A restart gives the program everything anew: a signal
                // on top of it would reach the new program for nothing.
                OnChange::Signal(signal) if !restart => {
                    self.directives.send(Directive::Signal(*signal))
                }
                OnChange::Signal(_) => {}
                OnChange::Restart => self.directives.send(Directive::Restart {
                    grace: self.grace,
                    env: self.restart_env.take(),
                }),
                OnChange::Exec { command, timeout } => self.directives.send(Directive::Helper(
                    helper(command, *timeout, &self.base_env, &pending),
                )),
            }
        }
    }

    fn stop_program(&mut self) -> bool {
        self.directives.send(Directive::Stop { grace: self.grace });
        true
    }

    fn program_env(&mut self, env: Vec<(OsString, OsString)>) {
        self.restart_env = Some(env);
    }
}

/// Runs `exec` hooks itself: `inject --watch`. (Signal and restart hooks
/// are refused before it starts: there is no program to signal.)
pub struct LocalSink {
    /// The environment hooks start from.
    pub base_env: Vec<(OsString, OsString)>,
}

impl HookSink for LocalSink {
    fn fire(&mut self, pending: Pending) {
        for hook in &pending.hooks {
            let OnChange::Exec { command, timeout } = hook else {
                continue;
            };
            let spec = helper(command, *timeout, &self.base_env, &pending);
            // A thread per run: a slow hook must not hold up the rounds.
            let _ = std::thread::Builder::new()
                .name("hook".into())
                .spawn(move || run_to_end(&spec));
        }
    }

    fn stop_program(&mut self) -> bool {
        false
    }
}

/// Runs a helper to its end or its timeout, logging how it ended.
fn run_to_end(spec: &HelperSpec) {
    let mut child = match spawn_helper(spec) {
        Ok(child) => child,
        Err(error) => {
            tracing::warn!(hook = %spec.label, %error, "cannot start the hook");
            return;
        }
    };
    let deadline = Instant::now() + spec.timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => {
                tracing::info!(hook = %spec.label, "hook succeeded");
                return;
            }
            Ok(Some(status)) => {
                tracing::warn!(hook = %spec.label, %status, "the hook failed");
                return;
            }
            Ok(None) if Instant::now() >= deadline => {
                let _ = nix::sys::signal::killpg(
                    nix::unistd::Pid::from_raw(child.id() as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
                let _ = child.wait();
                tracing::warn!(hook = %spec.label, "the hook timed out and was killed");
                return;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(error) => {
                tracing::warn!(hook = %spec.label, %error, "cannot wait for the hook");
                return;
            }
        }
    }
}
