//! Process hardening while hushbox holds secret values: no core dumps, and
//! not dumpable, so neither a crash nor a same-user `ptrace` or
//! `/proc/PID/environ|mem` reader can copy values out of memory.

use nix::sys::resource::{Resource, getrlimit, setrlimit};

/// The core-size limit hushbox started with, to give back to a child.
#[derive(Debug, Clone, Copy)]
pub struct Hardening {
    core_soft: u64,
    core_hard: u64,
}

/// Makes the process non-dumpable and sets the soft core limit to 0. Only
/// the soft limit changes, so the original can be restored for the child.
pub fn harden() -> Hardening {
    let (core_soft, core_hard) = getrlimit(Resource::RLIMIT_CORE).unwrap_or((0, 0));
    if let Err(errno) = setrlimit(Resource::RLIMIT_CORE, 0, core_hard) {
        tracing::warn!(%errno, "cannot disable core dumps");
    }
    if let Err(errno) = nix::sys::prctl::set_dumpable(false) {
        tracing::warn!(%errno, "cannot mark the process non-dumpable");
    }
    Hardening {
        core_soft,
        core_hard,
    }
}

impl Hardening {
    /// Gives the core limit back, for a child that should keep the user's
    /// setting. Called once hushbox holds no more values.
    pub fn restore_core_limit(&self) {
        let _ = setrlimit(Resource::RLIMIT_CORE, self.core_soft, self.core_hard);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn harden_sets_the_flags_and_restore_gives_the_limit_back() {
        let before = getrlimit(Resource::RLIMIT_CORE).unwrap();
        let hardening = harden();
        assert!(!nix::sys::prctl::get_dumpable().unwrap());
        assert_eq!(getrlimit(Resource::RLIMIT_CORE).unwrap().0, 0);
        hardening.restore_core_limit();
        assert_eq!(getrlimit(Resource::RLIMIT_CORE).unwrap(), before);
        nix::sys::prctl::set_dumpable(true).unwrap();
    }
}
