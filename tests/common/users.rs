//! Real Unix users for the local-attacker tests: a victim who runs hushbox
//! and an attacker who shares the machine with them. The tests run as root
//! (as CI does) and create the users once with `useradd`; commands run as a
//! user through util-linux's `setpriv`, so the test binary needs no unsafe
//! `pre_exec`.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;

/// A local account the tests act as.
#[derive(Debug, Clone)]
pub struct LocalUser {
    /// The login name.
    pub name: &'static str,
    /// Its uid.
    pub uid: u32,
    /// Its primary gid.
    pub gid: u32,
    /// Its home directory (created, owned by the user, mode 0700).
    pub home: PathBuf,
}

impl LocalUser {
    /// The other local user: writes where the machine lets it, never holds
    /// the victim's credentials.
    pub fn attacker() -> LocalUser {
        LocalUser::ensure("hushbox-attacker")
    }

    /// The user whose secrets and credentials are at stake.
    pub fn victim() -> LocalUser {
        LocalUser::ensure("hushbox-victim")
    }

    /// Creates the account when it is missing (idempotent, and safe when two
    /// test binaries race: a failed `useradd` is followed by a second look).
    fn ensure(name: &'static str) -> LocalUser {
        assert!(
            nix::unistd::geteuid().is_root(),
            "the local-attacker tests create Unix users and must run as root (as CI does)"
        );
        super::require_tool("useradd", "passwd");
        super::require_tool("setpriv", "util-linux");
        let home = PathBuf::from(format!("/home/{name}"));
        if lookup(name).is_none() {
            let _ = Command::new("useradd")
                .args(["--create-home", "--home-dir"])
                .arg(&home)
                .args(["--shell", "/bin/sh", "--user-group", name])
                .output();
        }
        let (uid, gid) = lookup(name).unwrap_or_else(|| panic!("useradd {name} failed"));
        std::fs::create_dir_all(&home).unwrap();
        let _ = Command::new("chown")
            .arg(format!("{uid}:{gid}"))
            .arg(&home)
            .status();
        let _ = Command::new("chmod").arg("0700").arg(&home).status();
        LocalUser {
            name,
            uid,
            gid,
            home,
        }
    }

    /// `program` run as this user (uid, gid, no supplementary groups), with
    /// `HOME` and `USER` set to the account's and nothing else inherited from
    /// the test's environment but `PATH`.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = Command::new("setpriv");
        command
            .arg(format!("--reuid={}", self.uid))
            .arg(format!("--regid={}", self.gid))
            .arg("--clear-groups")
            .arg("--")
            .arg(program)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", &self.home)
            .env("USER", self.name);
        command
    }

    /// Gives `path` (not following a symlink) to this user.
    pub fn chown(&self, path: impl AsRef<std::path::Path>) {
        std::os::unix::fs::lchown(path, Some(self.uid), Some(self.gid)).unwrap();
    }
}

/// uid and gid of `name`, from the account database.
fn lookup(name: &str) -> Option<(u32, u32)> {
    let user = nix::unistd::User::from_name(name).ok()??;
    Some((user.uid.as_raw(), user.gid.as_raw()))
}
