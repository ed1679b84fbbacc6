//! [`SecretValue`]: the one type in hushbox that holds a secret.

use std::fmt;
use std::io::{self, Read};

use zeroize::{Zeroize, Zeroizing};

use crate::memory::Block;

/// A secret value: bytes that are wiped from memory when dropped.
///
/// The bytes live in memory kept out of swap and core dumps
/// (`memfd_secret(2)` where the kernel has it, else locked anonymous pages;
/// see the `memory` module), and are wiped over the buffer's whole capacity
/// on drop. There is deliberately no `Clone`, `Display` or `Serialize`, and
/// `Debug` prints a redaction, so a value can only leave this type through
/// [`SecretValue::expose`], which few, named places call.
///
/// Values are built by *moving* a buffer in ([`SecretValue::from_vec`],
/// which copies it into protected memory and wipes it) or by reading into a
/// buffer sized before the read ([`SecretValue::read_bounded`]); never by a
/// conversion that may reallocate and leave an unwiped copy behind.
pub struct SecretValue {
    block: Block,
    len: usize,
}

/// Why [`SecretValue::read_bounded`] gave up.
#[derive(Debug)]
pub enum ReadError {
    /// The source had more bytes than the limit allowed.
    TooLarge {
        /// The limit that was exceeded, in bytes.
        limit: usize,
    },
    /// Reading failed.
    Io(io::Error),
}

impl SecretValue {
    /// Takes ownership of `bytes`: copies them into protected memory and
    /// wipes the `Vec` over its whole capacity.
    pub fn from_vec(bytes: Vec<u8>) -> Self {
        // Wiped when this returns, even if the copy panics.
        let bytes = Zeroizing::new(bytes);
        let mut value = Self::with_capacity(bytes.len());
        value.push_slice(&bytes);
        value
    }

    /// Takes ownership of a `String`'s buffer: copied into protected memory,
    /// then wiped.
    pub fn from_string(text: String) -> Self {
        Self::from_vec(text.into_bytes())
    }

    /// Copies `bytes` into protected memory.
    ///
    /// The caller stays responsible for wiping its own copy.
    pub fn copy_from_slice(bytes: &[u8]) -> Self {
        let mut value = Self::with_capacity(bytes.len());
        value.push_slice(bytes);
        value
    }

    /// An empty value with room for at least `capacity` bytes, to be filled
    /// with [`SecretValue::push_slice`] without reallocating.
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            block: Block::new(capacity),
            len: 0,
        }
    }

    /// Appends bytes. When the buffer is full it moves to a larger one and
    /// wipes the old, so growth never leaves an unwiped copy.
    pub fn push_slice(&mut self, bytes: &[u8]) {
        let needed = self.len + bytes.len();
        if needed > self.block.capacity() {
            self.grow_to(needed.max(self.block.capacity() * 2).max(32));
        }
        self.block.bytes_mut()[self.len..needed].copy_from_slice(bytes);
        self.len = needed;
    }

    /// Reads `reader` to its end into a buffer first sized for `size_hint`
    /// bytes, refusing sources longer than `limit` bytes.
    ///
    /// Pass the real size (a file's length, a ciphertext's length) as the hint:
    /// then the buffer never has to grow. When it must, the old buffer is
    /// wiped after its bytes move to the new one.
    pub fn read_bounded(
        reader: &mut dyn Read,
        size_hint: usize,
        limit: usize,
    ) -> Result<Self, ReadError> {
        // One byte over the limit is how we learn that the source is too long.
        let ceiling = limit.saturating_add(1);
        // One byte beyond the hint lets the final zero-length read land in the
        // same buffer, so an exact hint never grows it.
        let mut value = Self::with_capacity(size_hint.saturating_add(1).max(16).min(ceiling));
        loop {
            if value.len == value.block.capacity() {
                if value.len >= ceiling {
                    return Err(ReadError::TooLarge { limit });
                }
                value.grow_to((value.len * 2).min(ceiling));
            }
            // Every byte of a block is initialised (zero or earlier data), so
            // `read` gets the spare room directly.
            let filled = value.len;
            match reader.read(&mut value.block.bytes_mut()[filled..]) {
                Ok(0) => break,
                Ok(n) => value.len += n,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(ReadError::Io(error)),
            }
        }
        if value.len > limit {
            return Err(ReadError::TooLarge { limit });
        }
        Ok(value)
    }

    fn grow_to(&mut self, capacity: usize) {
        let mut larger = Block::new(capacity);
        larger.bytes_mut()[..self.len].copy_from_slice(self.expose());
        // Assigning drops the old block, which wipes it.
        self.block = larger;
    }

    /// The secret bytes. Every call site is a place a value leaves hushbox's
    /// custody (a file write, a child's environment, stdout of `get`).
    pub fn expose(&self) -> &[u8] {
        &self.block.bytes()[..self.len]
    }

    /// The value's length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the value has no bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Compares with `other` in time that depends only on the lengths.
    pub fn ct_eq(&self, other: &[u8]) -> bool {
        if self.len != other.len() {
            return false;
        }
        let difference = self
            .expose()
            .iter()
            .zip(other)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        difference == 0
    }

    /// Removes one trailing `\n` or `\r\n`, in place (the removed bytes are
    /// wiped).
    pub fn trim_one_trailing_newline(&mut self) {
        if self.expose().last() == Some(&b'\n') {
            self.pop();
            if self.expose().last() == Some(&b'\r') {
                self.pop();
            }
        }
    }

    fn pop(&mut self) {
        self.len -= 1;
        let len = self.len;
        self.block.bytes_mut()[len].zeroize();
    }
}

impl Zeroize for SecretValue {
    fn zeroize(&mut self) {
        self.block.bytes_mut().zeroize();
        self.len = 0;
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretValue(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::proc_maps::{kernel_has_memfd_secret, mapping_of};

    #[test]
    fn a_value_is_kept_out_of_swap_and_core_dumps() {
        let value = SecretValue::copy_from_slice(b"kept out of swap and core dumps");
        let mapping = mapping_of(value.expose().as_ptr());
        if kernel_has_memfd_secret() {
            assert!(
                mapping.is_secretmem(),
                "not in memfd_secret memory: {}",
                mapping.header
            );
        }
        assert!(
            mapping.has("lo"),
            "not locked: {} {:?}",
            mapping.header,
            mapping.flags
        );
        assert!(
            mapping.has("dd"),
            "dumpable: {} {:?}",
            mapping.header,
            mapping.flags
        );
    }

    #[test]
    fn debug_is_redacted() {
        let value = SecretValue::copy_from_slice(b"hunter2");
        assert_eq!(format!("{value:?}"), "SecretValue(<redacted>)");
        assert_eq!(format!("{value:#?}"), "SecretValue(<redacted>)");
    }

    #[test]
    fn from_vec_moves_the_bytes_into_protected_memory() {
        let buffer = b"abc".to_vec();
        let pointer = buffer.as_ptr();
        let value = SecretValue::from_vec(buffer);
        assert_eq!(value.expose(), b"abc");
        assert_ne!(value.expose().as_ptr(), pointer);
        assert!(mapping_of(value.expose().as_ptr()).has("dd"));
    }

    #[test]
    fn read_bounded_reads_exact_hint_without_growing() {
        let data = vec![7u8; 1000];
        let value = SecretValue::read_bounded(&mut &data[..], 1000, 4096).unwrap();
        assert_eq!(value.expose(), &data[..]);
        let sized = SecretValue::with_capacity(1001).block.capacity();
        assert_eq!(value.block.capacity(), sized, "the buffer grew");
    }

    #[test]
    fn read_bounded_grows_past_a_small_hint() {
        let data: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
        let value = SecretValue::read_bounded(&mut &data[..], 10, 10_000).unwrap();
        assert_eq!(value.expose(), &data[..]);
    }

    #[test]
    fn read_bounded_accepts_exactly_the_limit_and_refuses_one_more() {
        let data = [1u8; 64];
        assert_eq!(
            SecretValue::read_bounded(&mut &data[..], 0, 64)
                .unwrap()
                .len(),
            64
        );
        let over = [1u8; 65];
        assert!(matches!(
            SecretValue::read_bounded(&mut &over[..], 65, 64),
            Err(ReadError::TooLarge { limit: 64 })
        ));
    }

    #[test]
    fn tiny_limits_work() {
        assert_eq!(
            SecretValue::read_bounded(&mut &b"abc"[..], 0, 3)
                .unwrap()
                .expose(),
            b"abc"
        );
        assert!(matches!(
            SecretValue::read_bounded(&mut &b"abcd"[..], 100, 3),
            Err(ReadError::TooLarge { limit: 3 })
        ));
        assert_eq!(
            SecretValue::read_bounded(&mut &b""[..], 0, 0)
                .unwrap()
                .len(),
            0
        );
    }

    #[test]
    fn push_slice_grows_and_keeps_content() {
        let mut value = SecretValue::with_capacity(2);
        for chunk in [&b"ab"[..], b"cdef", b"ghijklmnopqrstuvwxyz0123456789"] {
            value.push_slice(chunk);
        }
        assert_eq!(value.expose(), b"abcdefghijklmnopqrstuvwxyz0123456789");
    }

    #[test]
    fn constant_time_compare() {
        let value = SecretValue::copy_from_slice(b"same");
        assert!(value.ct_eq(b"same"));
        assert!(!value.ct_eq(b"sane"));
        assert!(!value.ct_eq(b"same!"));
    }

    #[test]
    fn trims_one_newline_only() {
        let mut value = SecretValue::copy_from_slice(b"v\n\n");
        value.trim_one_trailing_newline();
        assert_eq!(value.expose(), b"v\n");
        let mut crlf = SecretValue::copy_from_slice(b"v\r\n");
        crlf.trim_one_trailing_newline();
        assert_eq!(crlf.expose(), b"v");
    }
}
