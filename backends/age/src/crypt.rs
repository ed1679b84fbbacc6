//! Reading, decrypting and encrypting age files. Blocking code.

use std::io::{Read, Write};
use std::path::Path;

use age::armor::{ArmoredReader, ArmoredWriter, Format};
use age::{Decryptor, Encryptor};
use hushbox_core::{ReadError, SecretValue};

use crate::error::{AgeError, from_decrypt, from_stream_io};
use crate::keys::Identities;
use crate::root::Root;

/// Room for what age adds around a plaintext: the header (a few hundred
/// bytes per recipient), 16 bytes per 64 KiB chunk, and ASCII armor's
/// 4/3 expansion plus line breaks. A ciphertext larger than twice the
/// plaintext limit plus this is refused before it is decrypted.
const CIPHERTEXT_OVERHEAD: usize = 1024 * 1024;

/// Reads a ciphertext whole; `None` when the file does not exist. It is not
/// secret, so a plain buffer will do; it is read up front so that every
/// error from the decryptor describes the file's contents, not the disk,
/// and so that its digest can be checked before it is decrypted.
pub(crate) fn read_ciphertext(
    root: &Root,
    file_path: &Path,
    limit: usize,
) -> Result<Option<Vec<u8>>, AgeError> {
    // Opened from the store's descriptor without following a symlink; a
    // path through a regular file (`a` existing as a file, asking for `a/b`)
    // is as missing as any other.
    let Some(mut file) = root.open_file(file_path)? else {
        return Ok(None);
    };
    let ceiling = limit.saturating_mul(2).saturating_add(CIPHERTEXT_OVERHEAD);
    let metadata = file
        .metadata()
        .map_err(|source| AgeError::io(format!("cannot stat {}", file_path.display()), source))?;
    if metadata.is_dir() {
        return Ok(None);
    }
    if metadata.len() > ceiling as u64 {
        return Err(AgeError::TooLarge { limit });
    }
    let mut ciphertext = Vec::with_capacity(metadata.len() as usize);
    (&mut file)
        .take((ceiling as u64).saturating_add(1))
        .read_to_end(&mut ciphertext)
        .map_err(|source| AgeError::io(format!("cannot read {}", file_path.display()), source))?;
    if ciphertext.len() > ceiling {
        return Err(AgeError::TooLarge { limit });
    }
    Ok(Some(ciphertext))
}

/// Decrypts a binary or ASCII-armored age file into a [`SecretValue`].
///
/// `age::decrypt` is not used: it grows a `Vec` and leaves unwiped copies
/// of the plaintext behind. The plaintext is never longer than the
/// ciphertext, so a buffer of the ciphertext's length is filled in place
/// and never reallocated.
pub(crate) fn decrypt(
    ciphertext: &[u8],
    identities: &Identities,
    limit: usize,
) -> Result<SecretValue, AgeError> {
    // The decryptor reports a foreign file as a short header; say what it is.
    if ciphertext.is_empty() {
        return Err(AgeError::Malformed {
            why: "the file is empty",
        });
    }
    if !ciphertext.starts_with(b"age-encryption.org/")
        && !ciphertext
            .trim_ascii_start()
            .starts_with(b"-----BEGIN AGE ENCRYPTED FILE-----")
    {
        return Err(AgeError::Malformed {
            why: "it does not start with an age header (age-encryption.org/… or ASCII armor)",
        });
    }
    let decryptor = Decryptor::new_buffered(ArmoredReader::new(ciphertext))
        .map_err(|error| from_decrypt(error, identities.path()))?;
    if decryptor.is_scrypt() {
        return Err(AgeError::Passphrase);
    }
    let mut plaintext = decryptor
        .decrypt(identities.iter())
        .map_err(|error| from_decrypt(error, identities.path()))?;
    SecretValue::read_bounded(&mut plaintext, ciphertext.len(), limit).map_err(
        |error| match error {
            ReadError::TooLarge { limit } => AgeError::TooLarge { limit },
            ReadError::Io(error) => from_stream_io(&error),
        },
    )
}

/// Encrypts `plaintext` to `recipients`: binary (as passage writes) or
/// ASCII-armored. The ciphertext is not secret; it comes back whole so that
/// its digest can be recorded before it is written.
pub(crate) fn encrypt(
    recipients: &[Box<dyn age::Recipient + Send>],
    plaintext: &[u8],
    armored: bool,
) -> Result<Vec<u8>, AgeError> {
    let encryptor = Encryptor::with_recipients(
        recipients
            .iter()
            .map(|recipient| recipient.as_ref() as &dyn age::Recipient),
    )
    .map_err(|error| match error {
        age::EncryptError::Io(source) => AgeError::io("cannot encrypt", source),
        _ => AgeError::RecipientsIncompatible,
    })?;
    let format = if armored {
        Format::AsciiArmor
    } else {
        Format::Binary
    };
    // The header (~200 bytes a recipient) and 16 bytes a 64 KiB chunk.
    let mut ciphertext = Vec::with_capacity(plaintext.len() * if armored { 2 } else { 1 } + 1024);
    let written = (|| {
        let armor = ArmoredWriter::wrap_output(&mut ciphertext, format)?;
        let mut writer = encryptor.wrap_output(armor)?;
        // Where a value leaves hushbox's custody: into the encryptor.
        writer.write_all(plaintext)?;
        writer.finish()?.finish()?.flush()
    })();
    written.map_err(|source| AgeError::io("cannot encrypt", source))?;
    Ok(ciphertext)
}
