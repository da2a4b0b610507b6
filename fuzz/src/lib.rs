//! What every fuzz target does first: give the library's oracles the development
//! provider's embedded keys, which the library itself does not depend on.

use serde_json::{Map, Value};
use tower_oauth2_login::fuzzing::{install_keys, TestKeys};
use tower_oauth2_login_dev_provider::keys::{key_ring, sign_jwt, Signing};

/// Installs the keys (once per process; later calls do nothing).
pub fn setup() {
    let ring = key_ring().expect("the embedded keys");
    let jwk = |i: usize| ring.rotation_key(i).expect("a rotation key").jwk().clone();
    install_keys(TestKeys {
        jwks: [jwk(0), jwk(1), jwk(2)],
        sign,
    });
}

fn sign(typ: Option<&str>, claims: &Map<String, Value>, with_kid: bool) -> String {
    let ring = key_ring().expect("the embedded keys");
    let signing = if with_kid {
        Signing::Rs256
    } else {
        Signing::Rs256NoKid
    };
    let key = ring.rotation_key(0).expect("a key");
    sign_jwt(typ, claims, signing, key, ring, b"").expect("signing")
}
