//! One reply line of the command backend's JSON lines protocol, as a plugin
//! prints it. Never panics; a string `value` decodes exactly as serde_json
//! decodes it.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    hushbox_command::fuzzing::reply_line(data);
});
