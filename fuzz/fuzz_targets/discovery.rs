//! A discovery document and its JWKS (separated by a newline), through openidconnect and the builder.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tower_oauth2_login::fuzzing;

fuzz_target!(|data: &[u8]| {
    tower_oauth2_login_fuzz::setup();
    let (document, jwks) = fuzzing::split2(data);
    fuzzing::discovery(document, jwks);
});
