//! Any string as an ID token: refused.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tower_oauth2_login::fuzzing;

fuzz_target!(|data: &[u8]| {
    tower_oauth2_login_fuzz::setup();
    if let Ok(raw) = std::str::from_utf8(data) {
        fuzzing::id_token(raw);
    }
});
