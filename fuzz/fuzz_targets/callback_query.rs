//! The callback query: parsed exactly, or refused for a repeated or oversized parameter.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tower_oauth2_login::fuzzing;

fuzz_target!(|data: &[u8]| {
    tower_oauth2_login_fuzz::setup();
    if let Ok(query) = std::str::from_utf8(data) {
        fuzzing::callback_query(query);
    }
});
