//! A whole callback request (query, then a newline, then the Cookie header): a 4xx, no session, no network.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tower_oauth2_login::fuzzing;

fuzz_target!(|data: &[u8]| {
    tower_oauth2_login_fuzz::setup();
    let (query, cookies) = fuzzing::split2(data);
    if let Ok(query) = std::str::from_utf8(query) {
        fuzzing::callback_request(query, cookies);
    }
});
