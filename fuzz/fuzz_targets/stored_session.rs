//! A session record as a store could hold it (session id, a newline, the record): read or
//! refused, never a panic, and its tokens open only for the id they were sealed for.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tower_oauth2_login::fuzzing;

fuzz_target!(|data: &[u8]| {
    tower_oauth2_login_fuzz::setup();
    fuzzing::stored_session(data);
});
