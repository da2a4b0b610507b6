//! A userinfo answer: names a user or is refused, never echoed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tower_oauth2_login::fuzzing;

fuzz_target!(|data: &[u8]| {
    tower_oauth2_login_fuzz::setup();
    fuzzing::userinfo(data);
});
