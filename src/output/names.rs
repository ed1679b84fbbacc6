//! Secret names: each is one safe path component under the output dir.
//!
//! The writer joins names onto the output directory and onto a generation
//! directory; a name that could climb out (`..`, `a/b`), hide among the
//! writer's own `..`-entries (`.x`), or confuse a terminal or a log reader
//! (control, bidi or invisible characters) is refused before any file is touched.

use std::collections::BTreeSet;
use std::time::{SystemTime, UNIX_EPOCH};

use hushbox_core::Error;

/// The longest file name Linux accepts (`NAME_MAX`).
const NAME_MAX: usize = 255;

/// Checks that `name` is a single safe path component: non-empty, at most
/// 255 bytes, not starting with `.`, without `/`, NUL, control, bidi or invisible characters,
/// and not `.` or `..`.
///
/// # Errors
/// [`hushbox_core::ErrorKind::Config`], naming the secret.
pub fn validate_secret_name(name: &str) -> Result<(), Error> {
    let problem = if name.is_empty() {
        Some("is empty")
    } else if name == "." || name == ".." {
        Some("is a relative directory reference")
    } else if name.len() > NAME_MAX {
        Some("is longer than 255 bytes")
    } else if name.starts_with('.') {
        // Names starting with '.' are reserved for the writer's own entries
        // (`..data`, generation directories); refusing them means no secret
        // can ever shadow or replace one.
        Some("starts with '.'")
    } else if name.contains('/') {
        Some("contains '/'")
    } else if name.contains('\0') {
        Some("contains a NUL byte")
    } else if hushbox_core::text::has_invisible(name) {
        // Bidi overrides, zero-width and format characters make a name look
        // like another on a terminal; control characters rewrite it.
        Some("contains an invisible, bidi or control character")
    } else {
        None
    };
    match problem {
        // `shown` escapes invisible and control characters, so the message
        // itself shows what is there. A name is never a value, so quoting
        // it is safe.
        Some(problem) => Err(Error::config(format!(
            "secret name {problem}; a name must be a single file name \
             (no '/', not starting with '.', at most 255 bytes, no invisible, \
             bidi or control characters)"
        ))
        .with_subject(hushbox_core::text::shown(name))),
        None => Ok(()),
    }
}

/// Validates every name and refuses duplicates: one generation holds each
/// name once, or which value wins would depend on write order.
pub(crate) fn validate_names<'a>(
    names: impl IntoIterator<Item = &'a str>,
) -> Result<BTreeSet<&'a str>, Error> {
    let mut seen = BTreeSet::new();
    for name in names {
        validate_secret_name(name)?;
        if !seen.insert(name) {
            return Err(
                Error::config("secret name appears more than once in one generation")
                    .with_subject(format_args!("{name:?}")),
            );
        }
    }
    Ok(seen)
}

/// The prefix of every entry the writer makes in the output directory.
/// Secret names cannot start with '.', so nothing a user names collides.
const RESERVED_PREFIX: &str = "..";

/// The name of a new generation directory, on kubelet's pattern:
/// `..YYYY_MM_DD_HH_MM_SS.<suffix>`, in UTC (hushbox reads no time zone
/// database; the stamp is for people listing the directory, the suffix makes
/// it unique).
pub(crate) fn generation_name(now: SystemTime, suffix: &str) -> String {
    // A clock before 1970 is broken; stamping 1970 keeps the name valid.
    let seconds = now
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs());
    let days = i64::try_from(seconds / 86_400).unwrap_or(i64::MAX / 2);
    let in_day = seconds % 86_400;
    let (year, month, day) = civil_from_days(days);
    format!(
        "{RESERVED_PREFIX}{year:04}_{month:02}_{day:02}_{:02}_{:02}_{:02}.{suffix}",
        in_day / 3600,
        in_day / 60 % 60,
        in_day % 60,
    )
}

/// A fresh random suffix for a generation or run directory name.
pub(crate) fn random_suffix() -> String {
    use rand::distr::{Alphanumeric, SampleString};
    Alphanumeric.sample_string(&mut rand::rng(), 12)
}

/// Whether `name` has exactly the shape [`generation_name`] makes. Only such
/// entries are ever pruned, so the writer never removes a directory that it
/// did not make.
pub(crate) fn is_generation_name(name: &str) -> bool {
    let Some(rest) = name.strip_prefix(RESERVED_PREFIX) else {
        return false;
    };
    let Some((stamp, suffix)) = rest.split_once('.') else {
        return false;
    };
    let stamp_ok = stamp.len() == 19
        && stamp.bytes().enumerate().all(|(index, byte)| match index {
            4 | 7 | 10 | 13 | 16 => byte == b'_',
            _ => byte.is_ascii_digit(),
        });
    stamp_ok && !suffix.is_empty() && suffix.bytes().all(|byte| byte.is_ascii_alphanumeric())
}

/// Days since 1970-01-01 to a (year, month, day) in the proleptic Gregorian
/// calendar (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_from_march + 2) / 5 + 1) as u32;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use hushbox_core::ErrorKind;

    use super::*;

    fn refused(name: &str) -> Error {
        let error = validate_secret_name(name).expect_err(name);
        assert_eq!(error.kind(), ErrorKind::Config, "{name:?}");
        error
    }

    #[test]
    fn refuses_unsafe_names() {
        for name in [
            "../x",
            "a/b",
            "/abs",
            ".hidden",
            "",
            ".",
            "..",
            "..data",
            "a\0b",
            "a\nb",
            "tab\t",
            "del\u{7f}",
            "c1\u{85}",
        ] {
            refused(name);
        }
        refused(&"a".repeat(256));
    }

    #[test]
    fn accepts_safe_names() {
        for name in [
            "db_password",
            "api-key.pem",
            "x",
            "with space",
            "ünïcødé",
            "a..b",
            "trailing.",
        ] {
            validate_secret_name(name).unwrap_or_else(|e| panic!("{name:?}: {e}"));
        }
        validate_secret_name(&"a".repeat(255)).unwrap();
    }

    #[test]
    fn length_limit_counts_bytes_not_chars() {
        // 128 two-byte characters: 128 chars, 256 bytes.
        let error = refused(&"é".repeat(128));
        assert!(error.message().contains("255 bytes"), "{error}");
        validate_secret_name(&"é".repeat(127)).unwrap();
    }

    #[test]
    fn error_names_the_secret_with_control_chars_escaped() {
        let error = refused("bad\nname");
        assert_eq!(error.subject(), Some("\"bad\\nname\""));
        assert!(error.message().contains("control character"), "{error}");
    }

    #[test]
    fn duplicates_are_refused() {
        let error = validate_names(["a", "b", "a"]).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Config);
        assert_eq!(error.subject(), Some("\"a\""));
        assert!(error.message().contains("more than once"), "{error}");
        let names = validate_names(["b", "a"]).unwrap();
        assert_eq!(names.into_iter().collect::<Vec<_>>(), ["a", "b"]);
    }

    #[test]
    fn an_invalid_name_among_valid_ones_is_refused() {
        let error = validate_names(["ok", "../etc/passwd"]).unwrap_err();
        assert_eq!(error.subject(), Some("\"../etc/passwd\""));
    }

    #[test]
    fn generation_names_are_utc_stamps() {
        let at = |seconds: u64| UNIX_EPOCH + Duration::from_secs(seconds);
        assert_eq!(generation_name(at(0), "abc"), "..1970_01_01_00_00_00.abc");
        // 2024-02-29T23:59:59Z, a leap day.
        assert_eq!(
            generation_name(at(1_709_251_199), "x1"),
            "..2024_02_29_23_59_59.x1"
        );
        // 2000-03-01T12:34:56Z, just after a 400-year leap day.
        assert_eq!(
            generation_name(at(951_914_096), "Z"),
            "..2000_03_01_12_34_56.Z"
        );
        assert_eq!(
            generation_name(UNIX_EPOCH - Duration::from_secs(5), "a"),
            "..1970_01_01_00_00_00.a"
        );
    }

    #[test]
    fn generation_names_are_recognised_strictly() {
        let name = generation_name(SystemTime::now(), &random_suffix());
        assert!(is_generation_name(&name), "{name}");
        for other in [
            "..data",
            "..data_tmp",
            "..link_tmp",
            "..2024_02_29_23_59_59.",
            "..2024_02_29_23_59_59",
            "..2024-02-29_23_59_59.abc",
            "..2024_02_29_23_59_5x.abc",
            "..2024_02_29_23_59_59.ab/c",
            "..2024_02_29_23_59_59.a.b",
            ".2024_02_29_23_59_59.abc",
            "2024_02_29_23_59_59.abc",
            "../2024_02_29_23_59_59.abc",
        ] {
            assert!(!is_generation_name(other), "{other}");
        }
    }

    #[test]
    fn random_suffixes_differ_and_are_alphanumeric() {
        let (a, b) = (random_suffix(), random_suffix());
        assert_ne!(a, b);
        assert_eq!(a.len(), 12);
        assert!(a.bytes().all(|byte| byte.is_ascii_alphanumeric()));
    }

    /// A name that shows as another on a terminal (bidi override) or hides
    /// a character (zero-width, format) could stand in for a name an
    /// operator trusts.
    #[test]
    fn names_with_bidi_or_invisible_characters_are_refused() {
        for name in [
            "admin\u{202e}txt.pem", // right-to-left override: shows as "adminmep.txt"
            "db\u{200b}password",   // zero-width space: looks like "dbpassword"
            "db\u{200d}x",          // zero-width joiner
            "\u{feff}db",           // byte-order mark
            "db\u{2066}x\u{2069}",  // isolates
            "a\u{061c}b",           // Arabic letter mark
            "soft\u{ad}hyphen",     // invisible unless the line breaks there
            "tag\u{e0041}",         // tag characters
            "fill\u{3164}er",       // Hangul filler, a letter that shows as nothing
            "line\u{2028}sep",      // line separator
            "vs\u{fe0f}",           // variation selector
        ] {
            let error = refused(name);
            assert!(error.message().contains("invisible"), "{name:?}: {error}");
            // The subject escapes the character, so the error itself shows it.
            assert!(error.subject().unwrap().contains("\\u{"), "{error}");
        }
    }
}
