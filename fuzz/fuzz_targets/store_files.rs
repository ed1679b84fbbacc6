//! The age store's other files, chosen by the first byte: `.age-recipients`
//! lists, identity files (age or OpenSSH), secret paths, and `.age` secret
//! files read through age's header, armor and stanza parsers. Never panic.
#![no_main]

use hushbox_age::fuzzing;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let text = std::str::from_utf8(rest).ok();
    match which % 4 {
        0 => {
            if let Some(text) = text {
                fuzzing::recipients(text);
            }
        }
        1 => fuzzing::identities(rest),
        2 => {
            if let Some(text) = text {
                fuzzing::secret_path(text);
            }
        }
        _ => fuzzing::secret_file(rest),
    }
});
