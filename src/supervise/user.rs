//! `--user NAME|UID[:GROUP|GID]`: who the child runs as.
//!
//! Names are resolved by reading `/etc/passwd` and `/etc/group` as plain
//! files, never through NSS: hushbox is a static binary that often runs in a
//! `FROM scratch` image, where NSS modules do not exist. The rules are those
//! of Docker's `--user` (runc's `GetExecUser`), so an image behaves the same
//! with hushbox as its entrypoint as without it.

use hushbox_core::Error;

/// The identity the child runs as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credentials {
    /// Real, effective and saved user id.
    pub uid: u32,
    /// Real, effective and saved group id.
    pub gid: u32,
    /// Supplementary groups; empty drops all of hushbox's own.
    pub groups: Vec<u32>,
}

/// Resolves `--user NAME|UID[:GROUP|GID]` against the system's `/etc/passwd`
/// and `/etc/group`. A missing file counts as empty, as in a `FROM scratch`
/// image: numeric ids still work, names do not.
///
/// See [`resolve_user_in`] for the rules.
pub fn resolve_user(spec: &str) -> Result<Credentials, Error> {
    let passwd = read_database("/etc/passwd")?;
    let group = read_database("/etc/group")?;
    resolve_user_in(spec, &passwd, &group)
}

fn read_database(path: &str) -> Result<String, Error> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(text),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        Err(error) => Err(Error::io("cannot read the user database", error).with_subject(path)),
    }
}

/// Resolves `--user NAME|UID[:GROUP|GID]`, given the contents of
/// `/etc/passwd` and `/etc/group`. Errors are
/// [`ErrorKind::Config`](hushbox_core::ErrorKind::Config) and name what was
/// not found.
///
/// # Behavior
/// - A user given by name must exist in `passwd`; its uid and primary gid
///   come from there.
/// - A user given by number is looked up by uid too; if absent it is still
///   used (an arbitrary uid, as OpenShift assigns), with gid 0, as Docker does.
/// - A group given by name must exist in `group`; a group given by number is
///   used as is. Either way it replaces the primary gid.
/// - Supplementary groups are the `group` entries that list the user's name
///   as a member, and only when no group is given (with an explicit group,
///   there are none), again as Docker does.
/// - Ids are decimal `u32` below 4294967295, which the kernel reads as
///   "leave unchanged".
pub fn resolve_user_in(spec: &str, passwd: &str, group: &str) -> Result<Credentials, Error> {
    let (user_part, group_part) = match spec.split_once(':') {
        Some((user, group)) => (user, Some(group)),
        None => (spec, None),
    };
    if user_part.is_empty() || group_part.is_some_and(str::is_empty) {
        return Err(Error::config(format!(
            "invalid user {spec:?}: expected NAME|UID[:GROUP|GID]"
        )));
    }

    let (uid, account) = match parse_id(user_part, "user")? {
        Some(uid) => (
            uid,
            entries::<PasswdEntry>(passwd).find(|entry| entry.uid == uid),
        ),
        None => {
            let account = entries::<PasswdEntry>(passwd)
                .find(|entry| entry.name == user_part)
                .ok_or_else(|| {
                    Error::config(format!("user {user_part:?} not found in /etc/passwd"))
                })?;
            (account.uid, Some(account))
        }
    };

    let (gid, groups) = match group_part {
        Some(group_part) => {
            let gid = match parse_id(group_part, "group")? {
                Some(gid) => gid,
                None => entries::<GroupEntry>(group)
                    .find(|entry| entry.name == group_part)
                    .map(|entry| entry.gid)
                    .ok_or_else(|| {
                        Error::config(format!("group {group_part:?} not found in /etc/group"))
                    })?,
            };
            (gid, Vec::new())
        }
        None => match &account {
            Some(account) => (account.gid, memberships(group, account.name)),
            None => (0, Vec::new()),
        },
    };
    Ok(Credentials { uid, gid, groups })
}

/// `Some(id)` for an all-digit part, `None` for a name.
fn parse_id(part: &str, what: &str) -> Result<Option<u32>, Error> {
    if !part.bytes().all(|byte| byte.is_ascii_digit()) {
        return Ok(None);
    }
    match part.parse::<u32>() {
        Ok(id) if id != u32::MAX => Ok(Some(id)),
        _ => Err(Error::config(format!(
            "{what} id {part} is out of range (at most {})",
            u32::MAX - 1
        ))),
    }
}

/// The gids of the groups that list `name` as a member, in file order,
/// without duplicates.
fn memberships(group: &str, name: &str) -> Vec<u32> {
    let mut gids = Vec::new();
    for entry in entries::<GroupEntry>(group) {
        if entry.members.split(',').any(|member| member == name) && !gids.contains(&entry.gid) {
            gids.push(entry.gid);
        }
    }
    gids
}

/// One line of a colon-separated database.
trait Entry<'a>: Sized {
    fn parse(fields: &[&'a str]) -> Option<Self>;
}

/// `name:password:uid:gid:gecos:home:shell`
struct PasswdEntry<'a> {
    name: &'a str,
    uid: u32,
    gid: u32,
}

impl<'a> Entry<'a> for PasswdEntry<'a> {
    fn parse(fields: &[&'a str]) -> Option<Self> {
        match fields {
            [name, _, uid, gid, ..] => Some(Self {
                name,
                uid: uid.parse().ok()?,
                gid: gid.parse().ok()?,
            }),
            _ => None,
        }
    }
}

/// `name:password:gid:member,member`
struct GroupEntry<'a> {
    name: &'a str,
    gid: u32,
    members: &'a str,
}

impl<'a> Entry<'a> for GroupEntry<'a> {
    fn parse(fields: &[&'a str]) -> Option<Self> {
        match fields {
            [name, _, gid, rest @ ..] => Some(Self {
                name,
                gid: gid.parse().ok()?,
                members: rest.first().copied().unwrap_or(""),
            }),
            _ => None,
        }
    }
}

/// The well-formed entries of a database, in order. Comments, blank lines,
/// NIS `+`/`-` lines and lines with too few or non-numeric fields are skipped,
/// as glibc's files backend skips them.
fn entries<'a, E: Entry<'a>>(text: &'a str) -> impl Iterator<Item = E> {
    text.lines().filter_map(|line| {
        let line = line.trim_end_matches('\r');
        if line.is_empty() || line.starts_with(['#', '+', '-']) {
            return None;
        }
        let fields: Vec<&str> = line.split(':').collect();
        E::parse(&fields)
    })
}

#[cfg(test)]
mod tests {
    use hushbox_core::ErrorKind;

    use super::*;

    const PASSWD: &str = "\
# comment line
root:x:0:0:root:/root:/bin/bash
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
+nisuser::::::
broken line without fields
app:x:1000:1000:App,,,:/home/app:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
";

    const GROUP: &str = "\
root:x:0:
daemon:x:1:
wheel:x:10:root,app
audio:x:29:app
notnumeric:x:abc:app
app:x:1000:
staff:x:50:app,daemon
nogroup:x:65534:
";

    fn resolve(spec: &str) -> Result<Credentials, Error> {
        resolve_user_in(spec, PASSWD, GROUP)
    }

    fn creds(uid: u32, gid: u32, groups: &[u32]) -> Credentials {
        Credentials {
            uid,
            gid,
            groups: groups.to_vec(),
        }
    }

    #[test]
    fn name_takes_uid_gid_and_memberships_from_the_files() {
        assert_eq!(resolve("app").unwrap(), creds(1000, 1000, &[10, 29, 50]));
        assert_eq!(resolve("nobody").unwrap(), creds(65534, 65534, &[]));
    }

    #[test]
    fn known_uid_is_looked_up_like_a_name() {
        assert_eq!(resolve("1000").unwrap(), creds(1000, 1000, &[10, 29, 50]));
        assert_eq!(resolve("0").unwrap(), creds(0, 0, &[10]));
    }

    #[test]
    fn unknown_uid_is_used_with_gid_zero_as_docker_does() {
        assert_eq!(resolve("4242").unwrap(), creds(4242, 0, &[]));
    }

    #[test]
    fn name_with_group_name_replaces_gid_and_drops_memberships() {
        assert_eq!(resolve("app:staff").unwrap(), creds(1000, 50, &[]));
    }

    #[test]
    fn uid_with_gid_needs_no_database() {
        assert_eq!(
            resolve_user_in("65534:65534", "", "").unwrap(),
            creds(65534, 65534, &[])
        );
        assert_eq!(resolve("4242:4343").unwrap(), creds(4242, 4343, &[]));
    }

    #[test]
    fn name_with_numeric_gid_and_uid_with_group_name() {
        assert_eq!(resolve("app:7").unwrap(), creds(1000, 7, &[]));
        assert_eq!(resolve("4242:audio").unwrap(), creds(4242, 29, &[]));
    }

    #[test]
    fn unknown_user_is_a_config_error_naming_it() {
        let error = resolve("ghost").unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Config);
        assert!(error.to_string().contains("\"ghost\""), "{error}");
        // A missing /etc/passwd (an empty database) gives the same answer.
        let error = resolve_user_in("app", "", "").unwrap_err();
        assert!(error.to_string().contains("\"app\" not found"), "{error}");
    }

    #[test]
    fn unknown_group_is_a_config_error_naming_it() {
        let error = resolve("app:ghosts").unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Config);
        assert!(error.to_string().contains("\"ghosts\""), "{error}");
    }

    #[test]
    fn malformed_specs_are_rejected() {
        for spec in [
            "",
            ":",
            ":1000",
            "app:",
            "4294967295",
            "1:4294967295",
            "99999999999",
        ] {
            let error = resolve(spec).expect_err(spec);
            assert_eq!(error.kind(), ErrorKind::Config, "{spec}");
        }
    }

    #[test]
    fn skipped_lines_do_not_match() {
        // "+nisuser" is a NIS line, "broken" has no fields, "notnumeric" has
        // a bad gid: none of them resolves, and none adds a membership.
        assert!(resolve("+nisuser").is_err());
        assert!(resolve("broken line without fields").is_err());
        assert!(resolve("app:notnumeric").is_err());
    }
}
