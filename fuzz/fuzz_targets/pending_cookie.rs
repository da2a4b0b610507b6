//! A pending cookie value not sealed by the layer never opens (state, newline, value); any plaintext is checked after the seal.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tower_oauth2_login::fuzzing;

fuzz_target!(|data: &[u8]| {
    tower_oauth2_login_fuzz::setup();
    let (state, value) = fuzzing::split2(data);
    if let Ok(state) = std::str::from_utf8(state) {
        fuzzing::forged_pending(state, value);
    }
    fuzzing::pending_json(data);
});
