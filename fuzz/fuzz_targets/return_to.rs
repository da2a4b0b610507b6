//! return_to: anything accepted stays on the origin (url crate, browser reading, decoded).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tower_oauth2_login::fuzzing;

fuzz_target!(|data: &[u8]| {
    tower_oauth2_login_fuzz::setup();
    if let Ok(path) = std::str::from_utf8(data) {
        fuzzing::return_to(path);
    }
});
