//! From an API answer to a [`Document`]: the JSON of a secret's `data`,
//! copied once, from the response buffer into a buffer of its exact size.
//!
//! The answer is parsed in place: `serde_json`'s `RawValue` borrows the
//! `data` object from the response buffer, so field values are not copied
//! into intermediate strings. The response buffer is wiped when dropped.
//! serde's own messages quote their input and are never kept.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use hushbox_core::{Document, Format, Lease, SecretValue};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::error::VaultError;

/// The key of the one documented encoding for values that JSON cannot carry
/// byte for byte: a KV secret whose data is exactly
/// `{"hushbox_base64": "<base64>"}` is delivered as the decoded bytes
/// (binary files, exact whitespace).
pub const BASE64_KEY: &str = "hushbox_base64";

/// The KV engine version of a mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KvVersion {
    V1,
    V2,
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow)]
    data: Option<&'a RawValue>,
    #[serde(default)]
    lease_id: Option<String>,
    #[serde(default)]
    lease_duration: Option<u64>,
    #[serde(default)]
    renewable: Option<bool>,
}

#[derive(Deserialize)]
struct KvV2<'a> {
    #[serde(borrow)]
    data: Option<&'a RawValue>,
    metadata: Option<KvV2Metadata>,
}

#[derive(Deserialize)]
struct KvV2Metadata {
    version: Option<u64>,
}

/// What a PKI issue says about itself, besides the certificate.
#[derive(Deserialize)]
struct Issued {
    expiration: Option<i64>,
    serial_number: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Encoded<'a> {
    #[serde(borrow)]
    hushbox_base64: &'a RawValue,
}

const NOT_JSON: VaultError = VaultError::Malformed {
    what: "not the JSON envelope Vault answers with",
};

fn envelope(body: &SecretValue) -> Result<Envelope<'_>, VaultError> {
    let text = std::str::from_utf8(body.expose()).map_err(|_| NOT_JSON)?;
    serde_json::from_str(text).map_err(|_| NOT_JSON)
}

/// The document of a KV read.
pub(crate) fn kv(
    body: &SecretValue,
    version: KvVersion,
    max_size: usize,
) -> Result<Document, VaultError> {
    let envelope = envelope(body)?;
    let data = envelope
        .data
        .ok_or(VaultError::NotFound { version: None })?;
    let (data, kv_version) = match version {
        KvVersion::V1 => (data, None),
        KvVersion::V2 => {
            let inner: KvV2<'_> =
                serde_json::from_str(data.get()).map_err(|_| VaultError::Malformed {
                    what: "a KV version 2 answer without data and metadata",
                })?;
            let number = inner.metadata.and_then(|metadata| metadata.version);
            // A deleted or destroyed version answers 404 with null data; a
            // 200 with null data is treated the same.
            let data = inner.data.ok_or(VaultError::NotFound { version: number })?;
            (data, number)
        }
    };
    let value = document_value(data, max_size)?;
    Ok(Document {
        value,
        format: Format::Json,
        version: kv_version.map(|version| version.to_string()),
        lease: None,
    })
}

/// The document of a logical read or write (database credentials, a PKI
/// issue): the `data` object, with the lease. A PKI certificate issued
/// without a lease gets an expiry-only lease (empty id, not renewable) from
/// its `expiration`, so that it is fetched again before it expires.
pub(crate) fn logical(body: &SecretValue, max_size: usize) -> Result<Document, VaultError> {
    let envelope = envelope(body)?;
    let data = envelope
        .data
        .ok_or(VaultError::NotFound { version: None })?;
    if data.get() == "null" {
        return Err(VaultError::NotFound { version: None });
    }
    let issued: Option<Issued> = if data.get().trim_start().starts_with('{') {
        serde_json::from_str(data.get()).ok()
    } else {
        None
    };
    let lease_id = envelope.lease_id.unwrap_or_default();
    let lease = if !lease_id.is_empty() {
        Some(Lease {
            id: lease_id,
            ttl: Duration::from_secs(envelope.lease_duration.unwrap_or(0)),
            renewable: envelope.renewable.unwrap_or(false),
        })
    } else {
        issued
            .as_ref()
            .and_then(|issued| issued.expiration)
            .map(|expiration| Lease {
                id: String::new(),
                ttl: until(expiration),
                renewable: false,
            })
    };
    let version = issued.and_then(|issued| issued.serial_number);
    let value = document_value(data, max_size)?;
    Ok(Document {
        value,
        format: Format::Json,
        version,
        lease,
    })
}

/// The time from now until the Unix time `expiration` (zero if past).
fn until(expiration: i64) -> Duration {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    u64::try_from(expiration)
        .ok()
        .map_or(Duration::ZERO, |expiration| {
            Duration::from_secs(expiration.saturating_sub(now))
        })
}

/// The delivered bytes of a `data` object: its JSON text as the server sent
/// it, or the decoded bytes of the `hushbox_base64` encoding.
fn document_value(data: &RawValue, max_size: usize) -> Result<SecretValue, VaultError> {
    if let Ok(encoded) = serde_json::from_str::<Encoded<'_>>(data.get()) {
        return decode_base64(encoded.hushbox_base64, max_size);
    }
    let text = data.get().as_bytes();
    if text.len() > max_size {
        return Err(VaultError::TooLarge { limit: max_size });
    }
    Ok(SecretValue::copy_from_slice(text))
}

fn decode_base64(raw: &RawValue, max_size: usize) -> Result<SecretValue, VaultError> {
    const BAD: VaultError = VaultError::Malformed {
        what: "`hushbox_base64` must hold a base64 string",
    };
    let text = raw.get().trim();
    let inner = text
        .strip_prefix('"')
        .and_then(|text| text.strip_suffix('"'))
        .ok_or(BAD)?;
    // Standard base64 never needs a JSON escape except `\/`, which some
    // encoders write for `/`; anything else is not base64.
    let engine = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
    );
    let unescaped;
    let input: &[u8] = if inner.contains('\\') {
        if inner.replace("\\/", "").contains('\\') {
            return Err(BAD);
        }
        unescaped = zeroize::Zeroizing::new(inner.replace("\\/", "/"));
        unescaped.as_bytes()
    } else {
        inner.as_bytes()
    };
    let estimate = base64::decoded_len_estimate(input.len());
    if estimate > max_size.saturating_add(3) {
        return Err(VaultError::TooLarge { limit: max_size });
    }
    // Decoded straight into a buffer of its final size (at most 2 bytes
    // over), which the value then takes (copied into protected memory and
    // wiped by `SecretValue::from_vec`).
    let mut buffer = vec![0u8; estimate];
    let length = match engine.decode_slice(input, &mut buffer) {
        Ok(length) => length,
        Err(_) => {
            drop(zeroize::Zeroizing::new(buffer));
            return Err(BAD);
        }
    };
    buffer.truncate(length);
    if length > max_size {
        drop(zeroize::Zeroizing::new(buffer));
        return Err(VaultError::TooLarge { limit: max_size });
    }
    Ok(SecretValue::from_vec(buffer))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(text: &str) -> SecretValue {
        SecretValue::copy_from_slice(text.as_bytes())
    }

    #[test]
    fn kv2_document_is_the_data_object_with_its_version() {
        let answer = body(
            r#"{"request_id":"x","lease_id":"","data":{"data":{"password":"p\"w","user":"app"},"metadata":{"version":3,"deletion_time":""}}}"#,
        );
        let document = kv(&answer, KvVersion::V2, 1024).unwrap();
        assert_eq!(
            document.value.expose(),
            br#"{"password":"p\"w","user":"app"}"#
        );
        assert_eq!(document.version.as_deref(), Some("3"));
        assert!(document.lease.is_none());
    }

    #[test]
    fn kv1_document_has_no_version_and_no_lease() {
        let answer =
            body(r#"{"lease_id":"","lease_duration":2764800,"renewable":false,"data":{"a":1}}"#);
        let document = kv(&answer, KvVersion::V1, 1024).unwrap();
        assert_eq!(document.value.expose(), br#"{"a":1}"#);
        assert!(document.version.is_none() && document.lease.is_none());
    }

    #[test]
    fn base64_encoding_gives_exact_bytes() {
        let answer =
            body(r#"{"data":{"data":{"hushbox_base64":"AP8KIA=="},"metadata":{"version":1}}}"#);
        let document = kv(&answer, KvVersion::V2, 1024).unwrap();
        assert_eq!(document.value.expose(), &[0, 255, b'\n', b' ']);
        let answer = body(r#"{"data":{"hushbox_base64":""}}"#);
        assert!(kv(&answer, KvVersion::V1, 1024).unwrap().value.is_empty());
        let escaped = body(r#"{"data":{"hushbox_base64":"\/w=="}}"#);
        assert_eq!(
            kv(&escaped, KvVersion::V1, 1024).unwrap().value.expose(),
            &[0xff]
        );
        // With another key next to it, it is an ordinary document.
        let answer = body(r#"{"data":{"hushbox_base64":"AA==","other":"x"}}"#);
        assert_eq!(
            kv(&answer, KvVersion::V1, 1024).unwrap().value.expose(),
            br#"{"hushbox_base64":"AA==","other":"x"}"#
        );
        for bad in [
            r#"{"data":{"hushbox_base64":"!!"}}"#,
            r#"{"data":{"hushbox_base64":1}}"#,
        ] {
            assert!(matches!(
                kv(&body(bad), KvVersion::V1, 1024),
                Err(VaultError::Malformed { .. })
            ));
        }
    }

    #[test]
    fn size_limit() {
        let answer = body(r#"{"data":{"k":"0123456789"}}"#);
        assert!(matches!(
            kv(&answer, KvVersion::V1, 10),
            Err(VaultError::TooLarge { limit: 10 })
        ));
        let answer = body(r#"{"data":{"hushbox_base64":"AAAAAAAAAAAAAAAA"}}"#);
        assert!(matches!(
            kv(&answer, KvVersion::V1, 11),
            Err(VaultError::TooLarge { limit: 11 })
        ));
        assert_eq!(kv(&answer, KvVersion::V1, 12).unwrap().value.len(), 12);
    }

    #[test]
    fn deleted_versions_and_missing_data_are_not_found() {
        let deleted = body(
            r#"{"data":{"data":null,"metadata":{"version":2,"deletion_time":"2024-01-01T00:00:00Z"}}}"#,
        );
        assert!(matches!(
            kv(&deleted, KvVersion::V2, 1024),
            Err(VaultError::NotFound { version: Some(2) })
        ));
        assert!(matches!(
            logical(&body(r#"{"data":null}"#), 1024),
            Err(VaultError::NotFound { .. })
        ));
    }

    #[test]
    fn logical_reads_keep_the_lease() {
        let answer = body(
            r#"{"lease_id":"database/creds/app/abc","lease_duration":30,"renewable":true,"data":{"username":"u","password":"p"}}"#,
        );
        let document = logical(&answer, 1024).unwrap();
        let lease = document.lease.unwrap();
        assert_eq!(lease.id, "database/creds/app/abc");
        assert_eq!(lease.ttl, Duration::from_secs(30));
        assert!(lease.renewable);
    }

    #[test]
    fn a_certificate_without_a_lease_is_scheduled_from_its_expiration() {
        let expiration = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + 30;
        let answer = body(&format!(
            r#"{{"lease_id":"","lease_duration":0,"renewable":false,"data":{{"certificate":"C","private_key":"K","serial_number":"3c:5a","expiration":{expiration}}}}}"#
        ));
        let document = logical(&answer, 1024).unwrap();
        let lease = document.lease.unwrap();
        assert!(lease.id.is_empty() && !lease.renewable);
        assert!(lease.ttl <= Duration::from_secs(30) && lease.ttl >= Duration::from_secs(28));
        assert_eq!(document.version.as_deref(), Some("3c:5a"));
    }

    #[test]
    fn garbage_is_malformed_and_never_quoted() {
        for text in ["not json CANARY", r#"{"data": "CANARY"#, "\u{ff}"] {
            let error = kv(&body(text), KvVersion::V2, 1024).unwrap_err();
            assert!(matches!(error, VaultError::Malformed { .. }));
            assert!(!format!("{error:?}").contains("CANARY"));
        }
    }
}
