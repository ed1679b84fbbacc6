//! Memory for secret values: pages the kernel keeps out of swap and core
//! dumps and, with `memfd_secret(2)`, out of its own direct map, so that
//! neither a swap device, a core file, nor a kernel bug that reads physical
//! memory through the direct map finds a value.
//!
//! Tiers, best first; a tier that fails warns once per process (not per
//! value) and the next one is used, so protection degrades but a run never
//! fails for it:
//! 1. `memfd_secret(2)` pages: locked and never dumped by the kernel, gone
//!    from the direct map, not inherited by a forked child (`MADV_DONTFORK`).
//!    They count against `RLIMIT_MEMLOCK`.
//! 2. Private anonymous pages, `mlock`ed, `MADV_DONTDUMP` and
//!    `MADV_WIPEONFORK`. If `mlock` fails (the limit again) the pages are
//!    kept unlocked: they still stay out of core dumps.
//! 3. The heap, when no page can be mapped at all.
//!
//! Values are many and small (a store of 1,000 API keys), so a page and
//! three system calls per value would cost more than the values: values up
//! to [`MAX_SLOT`] bytes take a slot of a power-of-two size class, carved
//! from [`REGION_PAGES`]-page regions mapped once and shared by every value;
//! larger values get a mapping of their own, unmapped when they drop. Slab
//! regions are kept for the life of the process: their size is the peak
//! of small values held at once, which a manifest bounds.
//!
//! Every byte a [`Block`] hands out is initialised (zero): fresh mappings
//! are zero-filled, heap blocks are allocated zeroed, and a slot is wiped
//! before it goes back on its free list.

use std::alloc::{self, Layout};
use std::io;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};

use zeroize::Zeroize;

/// `memfd_secret(2)`. Numbers from 424 up are the same on every Linux
/// architecture (the syscall tables were unified at 424), and libc has no
/// wrapper.
const SYS_MEMFD_SECRET: libc::c_long = 447;

/// The smallest slot. Smaller classes would save little: the values are
/// API keys and passwords of a few dozen bytes.
const MIN_SLOT: usize = 16;
/// The largest slot; larger values get their own mapping.
const MAX_SLOT: usize = 2048;
/// Size classes 16, 32 … 2048.
const CLASSES: usize = (MAX_SLOT / MIN_SLOT).trailing_zeros() as usize + 1;
/// Pages mapped at once for slots: 64 KiB with 4 KiB pages, room for 2,048
/// values of up to 31 bytes for four system calls.
const REGION_PAGES: usize = 16;

/// Zero-capacity blocks point here and own nothing.
const EMPTY: NonNull<u8> = NonNull::dangling();

/// The arena every [`SecretValue`](crate::SecretValue) takes its bytes from.
static GLOBAL: Arena = Arena::new(Tiers::ALL);

/// Which tiers an arena may use. Only tests build an arena with fewer, to
/// exercise the fallbacks; the global arena always tries every tier.
#[derive(Clone, Copy)]
pub(crate) struct Tiers {
    pub(crate) secretmem: bool,
    pub(crate) mlock: bool,
    pub(crate) mmap: bool,
}

impl Tiers {
    const ALL: Tiers = Tiers {
        secretmem: true,
        mlock: true,
        mmap: true,
    };
}

/// The fallbacks, each warned about at most once per arena.
#[derive(Clone, Copy)]
enum Fallback {
    NoSecretmem,
    SecretmemLimit,
    NotLocked,
    Heap,
}

/// Bytes for one value: a slot, a mapping of its own, or a heap block.
/// Wiped over its whole capacity and given back when dropped.
pub(crate) struct Block {
    ptr: NonNull<u8>,
    capacity: usize,
    home: Home,
    arena: &'static Arena,
}

// SAFETY: a `Block` owns its bytes exclusively, like a `Box<[u8]>`; the
// arena it returns them to is `Sync`.
unsafe impl Send for Block {}
// SAFETY: shared access only reads the bytes (`&self` methods).
unsafe impl Sync for Block {}

enum Home {
    Empty,
    Slot { class: usize },
    Mapping,
    Heap,
}

impl Block {
    /// A zeroed block of at least `capacity` bytes from the global arena.
    pub(crate) fn new(capacity: usize) -> Self {
        GLOBAL.allocate(capacity)
    }

    /// How many bytes the block holds (at least what was asked for).
    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    /// All `capacity` bytes.
    pub(crate) fn bytes(&self) -> &[u8] {
        // SAFETY: `ptr` is valid for `capacity` initialised bytes owned by
        // this block (see the module doc), or dangling with capacity 0.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.capacity) }
    }

    /// All `capacity` bytes, writable.
    pub(crate) fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `bytes`, and `&mut self` makes the access exclusive.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.capacity) }
    }
}

impl Drop for Block {
    fn drop(&mut self) {
        // Volatile writes: the wipe is not optimised away as a dead store.
        self.bytes_mut().zeroize();
        self.arena.release(self);
    }
}

/// Free slots of each size class, and pages not yet cut into slots.
struct Slab {
    free: [Vec<usize>; CLASSES],
    pages: Vec<usize>,
}

/// Where blocks come from. One global instance; tests make their own.
pub(crate) struct Arena {
    tiers: Tiers,
    slab: Mutex<Slab>,
    /// Set once `memfd_secret` fails in a way that will not change (no
    /// such syscall, secretmem disabled), so it is not tried per region.
    no_secretmem: AtomicBool,
    warned: [AtomicBool; 4],
}

impl Arena {
    pub(crate) const fn new(tiers: Tiers) -> Self {
        Self {
            tiers,
            slab: Mutex::new(Slab {
                free: [const { Vec::new() }; CLASSES],
                pages: Vec::new(),
            }),
            no_secretmem: AtomicBool::new(false),
            warned: [const { AtomicBool::new(false) }; 4],
        }
    }

    /// A zeroed block of at least `capacity` bytes.
    pub(crate) fn allocate(&'static self, capacity: usize) -> Block {
        if capacity == 0 {
            return self.block(EMPTY, 0, Home::Empty);
        }
        if capacity <= MAX_SLOT.min(page_size()) {
            let class = class_of(capacity);
            let size = MIN_SLOT << class;
            return match self.slot(class) {
                Some(ptr) => self.block(ptr, size, Home::Slot { class }),
                None => self.heap(size),
            };
        }
        let len = capacity.next_multiple_of(page_size());
        match self.map(len) {
            Some(ptr) => self.block(ptr, len, Home::Mapping),
            None => self.heap(len),
        }
    }

    fn block(&'static self, ptr: NonNull<u8>, capacity: usize, home: Home) -> Block {
        Block {
            ptr,
            capacity,
            home,
            arena: self,
        }
    }

    /// A free slot of `class`, cutting a fresh page (and mapping a fresh
    /// region) when there is none. `None` when no page can be mapped.
    fn slot(&self, class: usize) -> Option<NonNull<u8>> {
        let mut slab = self
            .slab
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        if let Some(address) = slab.free[class].pop() {
            return NonNull::new(address as *mut u8);
        }
        if slab.pages.is_empty() {
            let page = page_size();
            let region = self.map(REGION_PAGES * page)?.as_ptr() as usize;
            // Highest first, so pages are handed out in address order.
            slab.pages
                .extend((0..REGION_PAGES).rev().map(|i| region + i * page));
        }
        let page = slab.pages.pop()?;
        let size = MIN_SLOT << class;
        let slots = page_size() / size;
        slab.free[class].extend((1..slots).rev().map(|i| page + i * size));
        NonNull::new(page as *mut u8)
    }

    fn heap(&'static self, capacity: usize) -> Block {
        let layout = Layout::array::<u8>(capacity).expect("a value's size fits a layout");
        // SAFETY: the layout has a non-zero size (capacity > 0 here).
        let ptr = unsafe { alloc::alloc_zeroed(layout) };
        let Some(ptr) = NonNull::new(ptr) else {
            alloc::handle_alloc_error(layout)
        };
        self.block(ptr, capacity, Home::Heap)
    }

    /// Maps `len` bytes (a multiple of the page size) from the best tier
    /// that works; `None` when only the heap is left.
    fn map(&self, len: usize) -> Option<NonNull<u8>> {
        if self.tiers.secretmem && !self.no_secretmem.load(Ordering::Relaxed) {
            match map_secretmem(len) {
                Ok(ptr) => return Some(ptr),
                Err(error) => match error.raw_os_error() {
                    // Not in this kernel, secretmem disabled (boot option
                    // `secretmem.enable=0`), or refused by a seccomp filter:
                    // it will not come back, stop asking.
                    Some(libc::ENOSYS | libc::EINVAL | libc::EPERM | libc::EOPNOTSUPP) => {
                        self.no_secretmem.store(true, Ordering::Relaxed);
                        self.warn(Fallback::NoSecretmem, &error);
                    }
                    // ENOMEM / EAGAIN: RLIMIT_MEMLOCK reached. Later, smaller
                    // requests may fit again, so keep trying.
                    _ => self.warn(Fallback::SecretmemLimit, &error),
                },
            }
        }
        if !self.tiers.mmap {
            self.warn(Fallback::Heap, &io::Error::from_raw_os_error(libc::ENOMEM));
            return None;
        }
        match map_anonymous(len, self.tiers.mlock) {
            Ok((ptr, locked)) => {
                if let Err(error) = locked {
                    self.warn(Fallback::NotLocked, &error);
                }
                Some(ptr)
            }
            Err(error) => {
                self.warn(Fallback::Heap, &error);
                None
            }
        }
    }

    fn release(&self, block: &Block) {
        match block.home {
            Home::Empty => {}
            Home::Slot { class } => {
                let mut slab = self
                    .slab
                    .lock()
                    .unwrap_or_else(|poison| poison.into_inner());
                slab.free[class].push(block.ptr.as_ptr() as usize);
            }
            Home::Mapping => {
                // SAFETY: the block's mapping was made by `map` with this
                // length and nothing else refers to it. A failure would
                // leave wiped pages mapped: nothing to do about it.
                unsafe { libc::munmap(block.ptr.as_ptr().cast(), block.capacity) };
            }
            Home::Heap => {
                let layout = Layout::array::<u8>(block.capacity).expect("layout as allocated");
                // SAFETY: allocated by `heap` with this same layout.
                unsafe { alloc::dealloc(block.ptr.as_ptr(), layout) };
            }
        }
    }

    fn warn(&self, fallback: Fallback, error: &io::Error) {
        if self.warned[fallback as usize].swap(true, Ordering::Relaxed) {
            return;
        }
        match fallback {
            Fallback::NoSecretmem => tracing::warn!(
                %error,
                "memfd_secret(2) is not available: secret values are held in locked \
                 anonymous memory instead, which the kernel can still read"
            ),
            Fallback::SecretmemLimit => tracing::warn!(
                %error,
                "cannot map more memfd_secret(2) memory (RLIMIT_MEMLOCK, `ulimit -l`, \
                 reached?): further secret values are held in anonymous memory"
            ),
            Fallback::NotLocked => tracing::warn!(
                %error,
                "cannot lock the memory holding secret values: they may be written to \
                 swap; raise RLIMIT_MEMLOCK (`ulimit -l`) to keep them in RAM"
            ),
            Fallback::Heap => tracing::warn!(
                %error,
                "cannot map memory for secret values: they are held on the heap, \
                 unlocked"
            ),
        }
    }

    #[cfg(test)]
    fn warnings(&self) -> usize {
        self.warned
            .iter()
            .filter(|warned| warned.load(Ordering::Relaxed))
            .count()
    }
}

/// The size class holding `capacity` bytes (1 ≤ capacity ≤ MAX_SLOT).
fn class_of(capacity: usize) -> usize {
    let size = capacity.next_power_of_two().max(MIN_SLOT);
    (size / MIN_SLOT).trailing_zeros() as usize
}

fn page_size() -> usize {
    static PAGE: OnceLock<usize> = OnceLock::new();
    *PAGE.get_or_init(|| {
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        usize::try_from(page).unwrap_or(4096)
    })
}

/// `len` bytes of `memfd_secret(2)` memory: a secret-memory fd, sized,
/// mapped shared (the only way secretmem maps), then closed (the mapping
/// keeps the memory). The kernel marks the area locked and not dumped.
fn map_secretmem(len: usize) -> io::Result<NonNull<u8>> {
    // SAFETY: memfd_secret takes one flags argument and returns a new fd or -1.
    let fd = unsafe { libc::syscall(SYS_MEMFD_SECRET, libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = fd as libc::c_int;
    let result = (|| {
        let size =
            libc::off_t::try_from(len).map_err(|_| io::Error::from_raw_os_error(libc::EFBIG))?;
        // SAFETY: `fd` is the descriptor just opened.
        if unsafe { libc::ftruncate(fd, size) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a fresh shared mapping of `fd`, placed by the kernel; it
        // overlaps nothing Rust owns.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        // A shared mapping would stay shared with a forked child until it
        // execs; not copying it at all is safer. The supervisor's child
        // touches no value between fork and exec. Advice only: a failure
        // changes nothing else.
        // SAFETY: advice on the mapping just made.
        unsafe { libc::madvise(ptr, len, libc::MADV_DONTFORK) };
        Ok(NonNull::new(ptr.cast::<u8>()).expect("mmap does not return null here"))
    })();
    // SAFETY: `fd` is ours; the mapping, if any, holds its own reference.
    unsafe { libc::close(fd) };
    result
}

/// `len` bytes of private anonymous memory, not dumped and wiped in a forked
/// child; with the result of locking it (`lock` false: not tried, reported
/// as a failure so the caller warns).
fn map_anonymous(len: usize, lock: bool) -> io::Result<(NonNull<u8>, io::Result<()>)> {
    // SAFETY: a fresh private anonymous mapping placed by the kernel.
    let ptr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if ptr == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    // Advice only: on a kernel without one of them the pages still hold
    // values, so failures are not reported.
    // SAFETY: advice on the mapping just made.
    unsafe {
        libc::madvise(ptr, len, libc::MADV_DONTDUMP);
        libc::madvise(ptr, len, libc::MADV_WIPEONFORK);
    }
    let locked = if !lock {
        Err(io::Error::from_raw_os_error(libc::EPERM))
    } else {
        // SAFETY: locks the mapping just made.
        match unsafe { libc::mlock(ptr, len) } {
            0 => Ok(()),
            _ => Err(io::Error::last_os_error()),
        }
    };
    Ok((
        NonNull::new(ptr.cast::<u8>()).expect("mmap does not return null here"),
        locked,
    ))
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;
    use crate::proc_maps::{kernel_has_memfd_secret, locked_kib, mapping_of};

    fn arena(tiers: Tiers) -> &'static Arena {
        Box::leak(Box::new(Arena::new(tiers)))
    }

    fn filled(arena: &'static Arena, capacity: usize) -> Block {
        let mut block = arena.allocate(capacity);
        assert!(block.capacity() >= capacity);
        assert!(block.bytes().iter().all(|&b| b == 0), "a new block is zero");
        block.bytes_mut().fill(0xA5);
        block
    }

    #[test]
    fn memfd_secret_is_used_where_the_kernel_has_it() {
        let arena = arena(Tiers::ALL);
        for capacity in [1, 33, MAX_SLOT, MAX_SLOT + 1, 300_000] {
            let block = filled(arena, capacity);
            let mapping = mapping_of(block.bytes().as_ptr());
            if kernel_has_memfd_secret() {
                assert!(mapping.is_secretmem(), "{capacity}: {}", mapping.header);
                assert!(
                    mapping.has("dc"),
                    "not kept from a fork: {:?}",
                    mapping.flags
                );
            }
            assert!(
                mapping.has("lo"),
                "{capacity}: not locked: {:?}",
                mapping.flags
            );
            assert!(
                mapping.has("dd"),
                "{capacity}: dumpable: {:?}",
                mapping.flags
            );
        }
        assert_eq!(arena.warnings(), 0);
    }

    #[test]
    fn memfd_secret_memory_cannot_be_read_through_proc_pid_mem() {
        use std::io::{Read, Seek, SeekFrom};
        // What a debugger, a same-user `ptrace` or root reading
        // /proc/PID/mem gets: nothing, where the kernel has memfd_secret.
        let arena = arena(Tiers::ALL);
        let block = filled(arena, 64);
        let mut mem = std::fs::File::open("/proc/self/mem").unwrap();
        mem.seek(SeekFrom::Start(block.bytes().as_ptr() as u64))
            .unwrap();
        let mut copy = [0u8; 64];
        let read = mem.read_exact(&mut copy);
        if kernel_has_memfd_secret() {
            assert!(read.is_err(), "read {:?}", &copy[..8]);
        } else {
            assert_eq!(copy, [0xA5; 64], "the fallback is ordinary memory");
        }
    }

    #[test]
    fn without_memfd_secret_values_are_locked_not_dumped_and_wiped_on_fork() {
        let arena = arena(Tiers {
            secretmem: false,
            ..Tiers::ALL
        });
        let before = locked_kib();
        let block = filled(arena, 1 << 20);
        let mapping = mapping_of(block.bytes().as_ptr());
        assert!(!mapping.is_secretmem(), "{}", mapping.header);
        for flag in ["lo", "dd", "wf"] {
            assert!(mapping.has(flag), "no `{flag}`: {:?}", mapping.flags);
        }
        // Other tests lock and unlock memory at the same time: only a rise
        // of at least the block's size is certain.
        assert!(
            locked_kib() >= before + 1024 - 64,
            "VmLck {before} -> {}",
            locked_kib()
        );
        let small = filled(arena, 40);
        let mapping = mapping_of(small.bytes().as_ptr());
        assert!(
            mapping.has("lo") && mapping.has("dd"),
            "{:?}",
            mapping.flags
        );
        assert_eq!(
            arena.warnings(),
            0,
            "secretmem was switched off, not failed"
        );
    }

    #[test]
    fn memory_that_cannot_be_locked_is_still_kept_out_of_core_dumps() {
        let arena = arena(Tiers {
            secretmem: false,
            mlock: false,
            mmap: true,
        });
        let block = filled(arena, 100);
        let mapping = mapping_of(block.bytes().as_ptr());
        assert!(!mapping.has("lo"), "{:?}", mapping.flags);
        assert!(mapping.has("dd"), "{:?}", mapping.flags);
    }

    #[test]
    fn the_heap_fallback_still_holds_values() {
        let arena = arena(Tiers {
            secretmem: false,
            mlock: false,
            mmap: false,
        });
        let blocks: Vec<Block> = [0, 5, 2000, 5000].map(|c| filled(arena, c)).into();
        for block in &blocks {
            assert!(block.bytes().iter().all(|&b| b == 0xA5));
        }
    }

    #[test]
    fn each_fallback_warns_once_per_process_not_per_value() {
        let arena = arena(Tiers {
            secretmem: false,
            mlock: false,
            mmap: false,
        });
        let blocks: Vec<Block> = (0..500).map(|i| filled(arena, 1 + i * 40)).collect();
        assert_eq!(blocks.len(), 500);
        // The heap warning, once.
        assert_eq!(arena.warnings(), 1);
        let arena = self::arena(Tiers {
            secretmem: false,
            mlock: false,
            mmap: true,
        });
        let blocks: Vec<Block> = (0..500).map(|i| filled(arena, 1 + i * 40)).collect();
        assert_eq!(blocks.len(), 500);
        // The "not locked" warning, once.
        assert_eq!(arena.warnings(), 1);
    }

    #[test]
    fn a_thousand_small_values_share_a_few_pages() {
        let arena = arena(Tiers::ALL);
        let blocks: Vec<Block> = (0..1000).map(|_| filled(arena, 33)).collect();
        let pages: HashSet<usize> = blocks
            .iter()
            .map(|block| block.bytes().as_ptr() as usize / page_size())
            .collect();
        // 33 bytes take a 64-byte slot: 64 to a 4 KiB page.
        assert!(
            pages.len() <= 1000 * 64 / page_size() + 1,
            "{} pages",
            pages.len()
        );
        for block in &blocks {
            assert!(block.bytes().iter().all(|&b| b == 0xA5), "slots overlap");
        }
    }

    #[test]
    fn a_freed_slot_is_wiped_before_it_is_reused() {
        let arena = arena(Tiers::ALL);
        let block = filled(arena, 100);
        let address = block.bytes().as_ptr();
        drop(block);
        let again = arena.allocate(100);
        assert_eq!(again.bytes().as_ptr(), address, "the slot is reused");
        assert!(again.bytes().iter().all(|&b| b == 0));
    }

    #[test]
    fn a_large_value_gives_its_mapping_back() {
        let arena = arena(Tiers::ALL);
        let block = filled(arena, 200_000);
        let header = mapping_of(block.bytes().as_ptr()).header;
        drop(block);
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        // The header names the secretmem inode, unique to this mapping.
        assert!(
            !maps.lines().any(|line| line == header),
            "still mapped: {header}"
        );
    }
}
