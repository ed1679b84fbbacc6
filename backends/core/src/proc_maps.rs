//! Test helper: what `/proc/self/smaps` says about the mapping that holds an
//! address, so memory tests assert what the kernel did, not what we asked.

use std::fs;

/// One mapping of this process, as `/proc/self/smaps` describes it.
pub(crate) struct Mapping {
    /// The header line: `start-end perms offset dev inode [path]`.
    pub(crate) header: String,
    /// The `VmFlags:` two-letter codes (`lo` locked, `dd` not dumped, `wf`
    /// wiped on fork, `dc` not copied on fork…).
    pub(crate) flags: Vec<String>,
}

impl Mapping {
    /// Whether the mapping is a `memfd_secret(2)` area.
    pub(crate) fn is_secretmem(&self) -> bool {
        self.header.contains("secretmem")
    }

    /// Whether `VmFlags` has `flag`.
    pub(crate) fn has(&self, flag: &str) -> bool {
        self.flags.iter().any(|f| f == flag)
    }
}

/// The mapping that contains `address`.
pub(crate) fn mapping_of(address: *const u8) -> Mapping {
    let address = address as usize;
    let smaps = fs::read_to_string("/proc/self/smaps").expect("read /proc/self/smaps");
    let mut current: Option<Mapping> = None;
    for line in smaps.lines() {
        if let Some(flags) = line.strip_prefix("VmFlags:") {
            if let Some(mut mapping) = current.take() {
                mapping.flags = flags.split_whitespace().map(str::to_owned).collect();
                return mapping;
            }
            continue;
        }
        let Some((range, _)) = line.split_once(' ') else {
            continue;
        };
        let Some((start, end)) = range.split_once('-') else {
            continue;
        };
        let (Ok(start), Ok(end)) = (
            usize::from_str_radix(start, 16),
            usize::from_str_radix(end, 16),
        ) else {
            continue;
        };
        if (start..end).contains(&address) {
            current = Some(Mapping {
                header: line.to_owned(),
                flags: Vec::new(),
            });
        }
    }
    panic!("no mapping of /proc/self/smaps holds {address:#x}");
}

/// `VmLck` of /proc/self/status, in KiB: memory this process has locked.
pub(crate) fn locked_kib() -> u64 {
    let status = fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmLck:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmLck in /proc/self/status")
}

/// Whether this kernel has `memfd_secret(2)` enabled: probed directly, so
/// the tests know which storage tier to expect instead of skipping.
pub(crate) fn kernel_has_memfd_secret() -> bool {
    // SAFETY: memfd_secret takes one flags argument and returns a new fd or
    // -1; the fd is closed at once.
    #[allow(unsafe_code)]
    unsafe {
        let fd = libc::syscall(447, libc::O_CLOEXEC);
        if fd < 0 {
            return false;
        }
        libc::close(fd as libc::c_int);
    }
    true
}
