//! Characters a name must not hold because a reader cannot see them: what
//! makes one name look like another on a terminal or in a log.
//!
//! Secret names, store paths and references are read by people (`check`,
//! `store ls`, errors, logs) who trust what they see. A right-to-left
//! override shows `admin\u{202e}txt.pem` as `adminmep.txt`; a zero-width
//! space makes `db\u{200b}password` look like `dbpassword`. hushbox has no
//! Unicode tables of its own, so the list below is written out: every
//! control (Cc) and format (Cf) character of Unicode 16, the line and
//! paragraph separators, the spaces that are not the ASCII space, and the
//! characters that render as nothing (fillers, variation selectors).

/// Whether `c` is invisible, changes the direction of text, or is a control
/// character.
pub fn is_invisible(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            // Format (Cf): soft hyphen, Arabic number signs and letter mark,
            // Syriac and Mongolian marks, zero-width space / joiners, LRM /
            // RLM, bidi embeddings, overrides and isolates, word joiner and
            // invisible operators, deprecated format controls, BOM,
            // interlinear annotation, Kaithi / Egyptian / shorthand /
            // musical format controls, tags.
            '\u{ad}'
                | '\u{600}'..='\u{605}'
                | '\u{61c}'
                | '\u{6dd}'
                | '\u{70f}'
                | '\u{890}'..='\u{891}'
                | '\u{8e2}'
                | '\u{180e}'
                | '\u{200b}'..='\u{200f}'
                | '\u{202a}'..='\u{202e}'
                | '\u{2060}'..='\u{2064}'
                | '\u{2066}'..='\u{206f}'
                | '\u{feff}'
                | '\u{fff9}'..='\u{fffb}'
                | '\u{110bd}'
                | '\u{110cd}'
                | '\u{13430}'..='\u{1343f}'
                | '\u{1bca0}'..='\u{1bca3}'
                | '\u{1d173}'..='\u{1d17a}'
                | '\u{e0001}'
                | '\u{e0020}'..='\u{e007f}'
                // Line and paragraph separators (Zl, Zp).
                | '\u{2028}'
                | '\u{2029}'
                // Spaces other than ' ' (Zs): they pass for it.
                | '\u{a0}'
                | '\u{1680}'
                | '\u{2000}'..='\u{200a}'
                | '\u{202f}'
                | '\u{205f}'
                | '\u{3000}'
                // Shown as nothing: combining grapheme joiner, Hangul and
                // Khmer fillers, Mongolian variation selectors, braille
                // blank, variation selectors.
                | '\u{34f}'
                | '\u{115f}'
                | '\u{1160}'
                | '\u{17b4}'
                | '\u{17b5}'
                | '\u{180b}'..='\u{180d}'
                | '\u{180f}'
                | '\u{2800}'
                | '\u{3164}'
                | '\u{ffa0}'
                | '\u{fe00}'..='\u{fe0f}'
                | '\u{e0100}'..='\u{e01ef}'
        )
}

/// Whether `text` holds a character that [`is_invisible`].
pub fn has_invisible(text: &str) -> bool {
    text.chars().any(is_invisible)
}

/// `text` in double quotes, with every invisible character (and what Rust's
/// `{:?}` escapes) written as an escape, so an error that names it shows
/// what is really there.
pub fn shown(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        if is_invisible(c) && !matches!(c, '\t' | '\n' | '\r') {
            out.push_str(&format!("\\u{{{:x}}}", u32::from(c)));
        } else {
            out.extend(c.escape_debug());
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn visible_text_is_not_invisible() {
        for text in [
            "db_password",
            "with space",
            "ünïcødé",
            "日本語",
            "😀",
            "a-b.c",
        ] {
            assert!(!has_invisible(text), "{text}");
        }
    }

    #[test]
    fn bidi_zero_width_and_format_characters_are_invisible() {
        for c in [
            '\u{0}',
            '\u{1b}',
            '\u{7f}',
            '\u{85}',
            '\u{ad}',
            '\u{61c}',
            '\u{200b}',
            '\u{200d}',
            '\u{200e}',
            '\u{202e}',
            '\u{2066}',
            '\u{2069}',
            '\u{2060}',
            '\u{feff}',
            '\u{e0041}',
            '\u{2028}',
            '\u{a0}',
            '\u{3000}',
            '\u{3164}',
            '\u{fe0f}',
        ] {
            assert!(is_invisible(c), "{:x}", u32::from(c));
        }
    }

    #[test]
    fn shown_escapes_what_cannot_be_seen() {
        assert_eq!(shown("a\u{202e}b"), r#""a\u{202e}b""#);
        assert_eq!(shown("fill\u{3164}"), r#""fill\u{3164}""#);
        assert_eq!(shown("new\nline \"q\""), r#""new\nline \"q\"""#);
        assert_eq!(shown("ünï"), "\"ünï\"");
    }
}
