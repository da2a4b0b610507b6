//! Any JWKS: a good ID token verifies only with its key in the set.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tower_oauth2_login::fuzzing;

fuzz_target!(|data: &[u8]| {
    tower_oauth2_login_fuzz::setup();
    fuzzing::jwks(data);
});
