//! The provider's signing keys as the layer verifies with them: `openidconnect`'s key, with
//! RSA PKCS#1 v1.5 signatures (RS256, RS384, RS512) checked by `ring`.
//!
//! `openidconnect` checks RSA signatures with the `rsa` crate, whose modular arithmetic
//! (num-bigint-dig) took about 200 µs per RS256 ID token on the bench machine: nearly all
//! of a login's CPU at the callback. `ring` (already in the tree, through rustls) does the
//! same check in a small fraction of that. Everything else stays `openidconnect`'s: which
//! keys are candidates (`kid`, key type, `use`, `alg`), the claims checks, and every other
//! algorithm. The key's own compatibility checks are repeated here as `openidconnect` does
//! them, and a signature `ring` does not accept (a key outside its limits, say, 1024-bit)
//! is checked by `openidconnect` as before, so no token is refused that was accepted.

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use openidconnect::core::{
    CoreJsonWebKey, CoreJsonWebKeySet, CoreJsonWebKeyUse, CoreJwsSigningAlgorithm,
};
use openidconnect::{
    JsonWebKey, JsonWebKeyAlgorithm, JsonWebKeyId, JsonWebKeySet, JsonWebKeyUse,
    JwsSigningAlgorithm, SignatureVerificationError,
};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The key set the layer keeps.
pub(crate) type Jwks = JsonWebKeySet<Jwk>;

/// A key set as discovery read it, for the layer.
pub(crate) fn from_core(set: &CoreJsonWebKeySet) -> Jwks {
    JsonWebKeySet::new(set.keys().iter().cloned().map(Jwk::new).collect())
}

/// A JSON Web Key: `openidconnect`'s, and the RSA public key's raw numbers for `ring`.
#[derive(Clone)]
pub(crate) struct Jwk {
    core: CoreJsonWebKey,
    /// `n` and `e`, big-endian without leading zeros, when this is an RSA key.
    rsa: Option<ring::signature::RsaPublicKeyComponents<Vec<u8>>>,
}

impl Jwk {
    pub(crate) fn new(core: CoreJsonWebKey) -> Self {
        let rsa = rsa_components(&core);
        Jwk { core, rsa }
    }
}

/// `n` and `e` of an RSA key, read back from its JSON form (`openidconnect` does not give
/// them out). Once per key, when the key set is fetched.
fn rsa_components(
    core: &CoreJsonWebKey,
) -> Option<ring::signature::RsaPublicKeyComponents<Vec<u8>>> {
    let json = serde_json::to_value(core).ok()?;
    if json.get("kty")?.as_str()? != "RSA" {
        return None;
    }
    let number = |name: &str| -> Option<Vec<u8>> {
        let bytes = URL_SAFE_NO_PAD.decode(json.get(name)?.as_str()?).ok()?;
        let first = bytes.iter().position(|b| *b != 0)?;
        Some(bytes[first..].to_vec())
    };
    Some(ring::signature::RsaPublicKeyComponents {
        n: number("n")?,
        e: number("e")?,
    })
}

impl fmt::Debug for Jwk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.core.fmt(f)
    }
}

impl Serialize for Jwk {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.core.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Jwk {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        CoreJsonWebKey::deserialize(deserializer).map(Jwk::new)
    }
}

impl JsonWebKey for Jwk {
    type KeyUse = CoreJsonWebKeyUse;
    type SigningAlgorithm = CoreJwsSigningAlgorithm;

    fn key_id(&self) -> Option<&JsonWebKeyId> {
        self.core.key_id()
    }

    fn key_type(&self) -> &<CoreJwsSigningAlgorithm as JwsSigningAlgorithm>::KeyType {
        self.core.key_type()
    }

    fn key_use(&self) -> Option<&CoreJsonWebKeyUse> {
        self.core.key_use()
    }

    fn signing_alg(&self) -> JsonWebKeyAlgorithm<&CoreJwsSigningAlgorithm> {
        self.core.signing_alg()
    }

    fn new_symmetric(key: Vec<u8>) -> Self {
        Jwk::new(CoreJsonWebKey::new_symmetric(key))
    }

    fn verify_signature(
        &self,
        signature_alg: &CoreJwsSigningAlgorithm,
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), SignatureVerificationError> {
        let params = match signature_alg {
            CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256 => {
                Some(&ring::signature::RSA_PKCS1_2048_8192_SHA256)
            }
            CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha384 => {
                Some(&ring::signature::RSA_PKCS1_2048_8192_SHA384)
            }
            CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha512 => {
                Some(&ring::signature::RSA_PKCS1_2048_8192_SHA512)
            }
            _ => None,
        };
        if let (Some(params), Some(rsa)) = (params, &self.rsa) {
            check_key_compatibility(self, signature_alg)
                .map_err(|e| SignatureVerificationError::InvalidKey(e.to_string()))?;
            if rsa.verify(params, message, signature).is_ok() {
                return Ok(());
            }
        }
        // Every other algorithm, and whatever `ring` did not accept: as before.
        self.core
            .verify_signature(signature_alg, message, signature)
    }

    fn hash_bytes(&self, bytes: &[u8], alg: &CoreJwsSigningAlgorithm) -> Result<Vec<u8>, String> {
        self.core.hash_bytes(bytes, alg)
    }
}

/// Why a key cannot check a signature of an algorithm (the texts are `openidconnect`'s,
/// which its `SignatureVerificationError::InvalidKey` carries).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
enum KeyMismatch {
    /// `use` is not `sig`.
    #[error("key usage not permitted for digital signatures")]
    Usage,
    /// `kty` is not the algorithm's.
    #[error("key type does not match signature algorithm")]
    KeyType,
    /// `alg` names no signing algorithm.
    #[error("key algorithm is not a signing algorithm")]
    NotSigning,
    /// `alg` names another algorithm.
    #[error("incompatible key algorithm")]
    Algorithm,
}

/// `openidconnect`'s own check (crate-private there) of a key for a signature algorithm.
fn check_key_compatibility(
    key: &Jwk,
    signing_algorithm: &CoreJwsSigningAlgorithm,
) -> Result<(), KeyMismatch> {
    if let Some(use_) = key.key_use() {
        if !use_.allows_signature() {
            return Err(KeyMismatch::Usage);
        }
    }
    if signing_algorithm.key_type().as_ref() != Some(key.key_type()) {
        return Err(KeyMismatch::KeyType);
    }
    match key.signing_alg() {
        JsonWebKeyAlgorithm::Unspecified => Ok(()),
        JsonWebKeyAlgorithm::Unsupported => Err(KeyMismatch::NotSigning),
        JsonWebKeyAlgorithm::Algorithm(key_alg) if key_alg == signing_algorithm => Ok(()),
        JsonWebKeyAlgorithm::Algorithm(_) => Err(KeyMismatch::Algorithm),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 2048-bit RSA key and an RS256 signature it made, from RFC 7515 appendix A.2.
    const N: &str = "ofgWCuLjybRlzo0tZWJjNiuSfb4p4fAkd_wWJcyQoTbji9k0l8W26mPddxHmfHQp-Vaw-4qPCJrcS2mJPMEzP1Pt0Bm4d4QlL-yRT-SFd2lZS-pCgNMsD1W_YpRPEwOWvG6b32690r2jZ47soMZo9wGzjb_7OMg0LOL-bSf63kpaSHSXndS5z5rexMdbBYUsLA9e-KXBdQOS-UTo7WTBEMa2R2CapHg665xsmtdVMTBQY4uDZlxvb3qCo5ZwKh9kG4LT6_I5IhlJH7aGhyxXFvUK-DWNmoudF8NAco9_h9iaGNj8q2ethFkMLs91kzk2PAcDTW9gb54h4FRWyuXpoQ";
    const E: &str = "AQAB";
    const SIGNING_INPUT: &str = "eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ";
    const SIGNATURE: &str = "cC4hiUPoj9Eetdgtv3hF80EGrhuB__dzERat0XF9g2VtQgr9PJbu3XOiZj5RZmh7AAuHIm4Bh-0Qc_lF5YKt_O8W2Fp5jujGbds9uJdbF9CUAr7t1dnZcAcQjbKBYNX4BAynRFdiuB--f_nZLgrnbyTyWzO75vRK5h6xBArLIARNPvkSjtQBMHlb1L07Qe7K0GarZRmB_eSN9383LcOLn6_dO--xi12jzDwusC-eOkHWEsqtFZESc6BfI7noOPqvhJ1phCnvWh6IeYI2w9QOYEUipUTI8np6LbgGY9Fs98rqVt5AXLIhWkWywlVmtVrBp0igcN_IoypGlUPQGe77Rw";

    fn key(extra: serde_json::Value) -> Jwk {
        let mut json = serde_json::json!({"kty": "RSA", "n": N, "e": E});
        if let (Some(o), serde_json::Value::Object(extra)) = (json.as_object_mut(), extra) {
            o.extend(extra);
        }
        serde_json::from_value(json).unwrap()
    }

    fn signature() -> Vec<u8> {
        URL_SAFE_NO_PAD.decode(SIGNATURE).unwrap()
    }

    #[test]
    fn verifies_rs256_with_ring_and_refuses_what_core_refuses() {
        let rs256 = CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256;
        let k = key(serde_json::json!({}));
        // ring itself accepts it (not the fallback).
        assert!(k
            .rsa
            .as_ref()
            .unwrap()
            .verify(
                &ring::signature::RSA_PKCS1_2048_8192_SHA256,
                SIGNING_INPUT.as_bytes(),
                &signature()
            )
            .is_ok());
        assert!(k
            .verify_signature(&rs256, SIGNING_INPUT.as_bytes(), &signature())
            .is_ok());
        // The core key agrees.
        assert!(k
            .core
            .verify_signature(&rs256, SIGNING_INPUT.as_bytes(), &signature())
            .is_ok());
        // Another message, a changed signature, another algorithm: refused.
        assert!(k
            .verify_signature(&rs256, b"eyJhbGciOiJSUzI1NiJ9.e30", &signature())
            .is_err());
        let mut bad = signature();
        bad[10] ^= 1;
        assert!(k
            .verify_signature(&rs256, SIGNING_INPUT.as_bytes(), &bad)
            .is_err());
        assert!(k
            .verify_signature(
                &CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha512,
                SIGNING_INPUT.as_bytes(),
                &signature()
            )
            .is_err());
        assert!(k
            .verify_signature(
                &CoreJwsSigningAlgorithm::HmacSha256,
                SIGNING_INPUT.as_bytes(),
                &signature()
            )
            .is_err());
    }

    #[test]
    fn key_use_and_alg_are_checked_first() {
        let rs256 = CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256;
        for (extra, ok) in [
            (serde_json::json!({"use": "sig"}), true),
            (serde_json::json!({"alg": "RS256"}), true),
            (serde_json::json!({"use": "enc"}), false),
            (serde_json::json!({"alg": "RS512"}), false),
        ] {
            let k = key(extra.clone());
            assert_eq!(
                k.verify_signature(&rs256, SIGNING_INPUT.as_bytes(), &signature())
                    .is_ok(),
                ok,
                "{extra}"
            );
        }
    }

    #[test]
    fn round_trips_as_the_core_key() {
        let k = key(serde_json::json!({"kid": "k1", "use": "sig"}));
        let json = serde_json::to_value(&k).unwrap();
        assert_eq!(json["kid"], "k1");
        assert_eq!(json["n"], N);
        let set: Jwks = serde_json::from_value(serde_json::json!({"keys": [json]})).unwrap();
        assert_eq!(set.keys()[0].key_id().unwrap().as_str(), "k1");
        let core: CoreJsonWebKeySet =
            serde_json::from_value(serde_json::to_value(&set).unwrap()).unwrap();
        assert_eq!(from_core(&core).keys().len(), 1);
    }
}
