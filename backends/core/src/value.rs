//! [`SecretValue`]: the one type in hushbox that holds a secret.

use std::fmt;
use std::io::{self, Read};

use zeroize::{Zeroize, Zeroizing};

/// A secret value: bytes that are wiped from memory when dropped.
///
/// The buffer is zeroized over its whole capacity on drop (`zeroize` wipes a
/// `Vec`'s spare capacity too). There is deliberately no `Clone`, `Display`
/// or `Serialize`, and `Debug` prints a redaction, so a value can only leave
/// this type through [`SecretValue::expose`], which few, named places call.
///
/// Values are built by *moving* a buffer in ([`SecretValue::from_vec`]) or by
/// reading into a buffer sized before the read ([`SecretValue::read_bounded`]);
/// never by a conversion that may reallocate and leave an unwiped copy behind.
pub struct SecretValue {
    bytes: Zeroizing<Vec<u8>>,
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
    /// Takes ownership of `bytes` without copying or reallocating them.
    pub fn from_vec(bytes: Vec<u8>) -> Self {
        Self {
            bytes: Zeroizing::new(bytes),
        }
    }

    /// Takes ownership of a `String`'s buffer without copying it.
    pub fn from_string(text: String) -> Self {
        Self::from_vec(text.into_bytes())
    }

    /// Copies `bytes` into a buffer of exactly their length.
    ///
    /// The caller stays responsible for wiping its own copy.
    pub fn copy_from_slice(bytes: &[u8]) -> Self {
        let mut buffer = Vec::with_capacity(bytes.len());
        buffer.extend_from_slice(bytes);
        Self::from_vec(buffer)
    }

    /// An empty value with room for `capacity` bytes, to be filled with
    /// [`SecretValue::push_slice`] without reallocating.
    pub fn with_capacity(capacity: usize) -> Self {
        Self::from_vec(Vec::with_capacity(capacity))
    }

    /// Appends bytes. When the buffer is full it moves to a larger one and
    /// wipes the old, so growth never leaves an unwiped copy.
    pub fn push_slice(&mut self, bytes: &[u8]) {
        let needed = self.bytes.len() + bytes.len();
        if needed > self.bytes.capacity() {
            self.grow_to(needed.max(self.bytes.capacity() * 2).max(32));
        }
        self.bytes.extend_from_slice(bytes);
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
        let mut filled = 0;
        loop {
            if filled == value.bytes.capacity() {
                if filled >= ceiling {
                    return Err(ReadError::TooLarge { limit });
                }
                value.grow_to((filled * 2).min(ceiling));
            }
            // Zero-fill the spare room (no reallocation: it is within capacity)
            // so `read` gets an initialised slice.
            let capacity = value.bytes.capacity();
            value.bytes.resize(capacity, 0);
            match reader.read(&mut value.bytes[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(ReadError::Io(error)),
            }
            value.bytes.truncate(filled);
        }
        value.bytes.truncate(filled);
        if filled > limit {
            return Err(ReadError::TooLarge { limit });
        }
        Ok(value)
    }

    fn grow_to(&mut self, capacity: usize) {
        let mut larger = Vec::with_capacity(capacity);
        larger.extend_from_slice(&self.bytes);
        // Assigning drops the old `Zeroizing` buffer, which wipes it.
        self.bytes = Zeroizing::new(larger);
    }

    /// The secret bytes. Every call site is a place a value leaves hushbox's
    /// custody (a file write, a child's environment, stdout of `get`).
    pub fn expose(&self) -> &[u8] {
        &self.bytes
    }

    /// The value's length in bytes.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Whether the value has no bytes.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Compares with `other` in time that depends only on the lengths.
    pub fn ct_eq(&self, other: &[u8]) -> bool {
        if self.bytes.len() != other.len() {
            return false;
        }
        let difference = self
            .bytes
            .iter()
            .zip(other)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        difference == 0
    }

    /// Removes one trailing `\n` or `\r\n`, in place.
    pub fn trim_one_trailing_newline(&mut self) {
        if self.bytes.last() == Some(&b'\n') {
            self.bytes.pop();
            if self.bytes.last() == Some(&b'\r') {
                self.bytes.pop();
            }
        }
    }
}

impl Zeroize for SecretValue {
    fn zeroize(&mut self) {
        self.bytes.zeroize();
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

    #[test]
    fn debug_is_redacted() {
        let value = SecretValue::copy_from_slice(b"hunter2");
        assert_eq!(format!("{value:?}"), "SecretValue(<redacted>)");
        assert_eq!(format!("{value:#?}"), "SecretValue(<redacted>)");
    }

    #[test]
    fn from_vec_keeps_the_buffer() {
        let buffer = b"abc".to_vec();
        let pointer = buffer.as_ptr();
        let value = SecretValue::from_vec(buffer);
        assert_eq!(value.expose().as_ptr(), pointer);
    }

    #[test]
    fn read_bounded_reads_exact_hint_without_growing() {
        let data = vec![7u8; 1000];
        let value = SecretValue::read_bounded(&mut &data[..], 1000, 4096).unwrap();
        assert_eq!(value.expose(), &data[..]);
        assert_eq!(value.bytes.capacity(), 1001);
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
