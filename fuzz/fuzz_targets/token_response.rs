//! A token endpoint answer (first byte: status), through oauth2 and the layer checks.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tower_oauth2_login::fuzzing;

fuzz_target!(|data: &[u8]| {
    tower_oauth2_login_fuzz::setup();
    let statuses = [200u16, 201, 400, 401, 500, 503];
    let Some((first, body)) = data.split_first() else {
        return;
    };
    fuzzing::token_response(statuses[usize::from(*first) % statuses.len()], body);
});
