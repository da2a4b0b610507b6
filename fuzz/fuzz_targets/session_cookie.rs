//! Any Cookie header: the session id is found and parsed safely.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tower_oauth2_login::fuzzing;

fuzz_target!(|data: &[u8]| {
    tower_oauth2_login_fuzz::setup();
    fuzzing::session_cookie(data);
});
