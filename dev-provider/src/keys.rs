//! The provider's RSA signing keys and the JSON Web Token primitives it signs and checks its
//! tokens with.
//!
//! The keys were generated once with `openssl genrsa -traditional 2048` and are embedded
//! (generating RSA keys at run time is slow, above all in debug builds). They are public in
//! this source file: tokens they sign prove nothing outside development and tests.

use std::sync::OnceLock;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use openidconnect::core::{
    CoreHmacKey, CoreJsonWebKey, CoreJwsSigningAlgorithm, CoreRsaPrivateSigningKey,
};
use openidconnect::{JsonWebKey as _, JsonWebKeyId, PrivateSigningKey as _};
use rand::RngCore as _;
use serde_json::{json, Map, Value};

/// The `kid` of the first rotation key, the signing key when the provider starts.
pub(super) const KID_1: &str = "dev-rsa-1";
/// The `kid` of the second rotation key.
pub(super) const KID_2: &str = "dev-rsa-2";
/// The `kid` of the third rotation key.
pub(super) const KID_3: &str = "dev-rsa-3";
/// The `kid` of the key that is never published.
pub(super) const UNPUBLISHED_KID: &str = "dev-rsa-unpublished";
/// The number of rotation keys.
pub(super) const ROTATION_KEY_COUNT: usize = 3;

const ROTATION_KIDS: [&str; ROTATION_KEY_COUNT] = [KID_1, KID_2, KID_3];

/// The first rotation key (`kid` [`KID_1`]), active when the provider starts.
const ROTATION_KEY_1_PEM: &str = "\
-----BEGIN RSA PRIVATE KEY-----\n\
MIIEpAIBAAKCAQEAmhcrJV6QjwtOTmUPgi8t1XDb8Khu4Cj+2ZBFNS47DkEDHSfG\n\
MtnNfQ70WINpYoGzaTmXoWnhTfdjk04zi2bUxq9gYcDRpNno1qkZfZ7rbXiDkm8j\n\
gGGFhHWhGIx+xQoptmqkcVOdmBnLGkNu/O75M5NPqN9caioL5hHApjw0nfYclXBQ\n\
9oHBSbZkQRXeB8YsIYhX+ue8Xj1G9NooDFVX0qd7EGJRdpuXiMkaladymGBbUrBO\n\
lS2vcZtXplanVWDs7gjd0spnHrlmG7wrImVOdBXERKQpy0fTPUZ59h0PA2XogP30\n\
Z2M1sFnQSGAeibXIvTXlio09lViOr3HQkgi46QIDAQABAoIBABJbsEhDe/WO40Vz\n\
xOU9ubg0Of/yEUOjnrlM9vHfECoilLxkgLiOOm0r2vCwt12FFlrzAZ25f55KWxKx\n\
vnJdTfxd6J282z1IuPTaMK9Gv8XLFeHcW95vv/iICylhk7jl/RI+oljeHWiBqjD2\n\
18JKtmXupw73jYsYd1JxywIDKkGnYUpQr7jvCVWyO+XaJeDGcZPuvnXKcimxfBEk\n\
oC9bAq4L+AlbeVEKrpnBij6Y3w/h5HbKQLiPqEgS9/sW51/LWwrI+HwU1P2LorxW\n\
YYeRte9XjprQYjMvZojtL3aZp7yafCSBVvx6cO0Qxo1HMt68dDBh6ACPlTZ2JcnE\n\
ti6iwgECgYEA1joXw6AoSOolqm9xWW0TUJL0y/laGOiTXEVWFi2W5BUrPkfSsZIL\n\
cWLtzz8jIzrZB0U76FhjxakKm/Xb61Oz/pv2HPyO/cxVQCbOWkwetoZ8uoMoVRKR\n\
hojhdf+2dMO8oumxagEtpbM/Qd+ul6/qSorpwhPXqoTbS8narnXZwhcCgYEAuCMm\n\
Yw3/KpQrbXz8Q7i4jQ2EQV2W0gMu+Um5AobFNH4N38GgUuRulkPA7wFuWp6L6DoW\n\
QF/sgi+Kb6/9zRkxTAVZ/YYOyT5vrha6edJ/VL7906UwY0sFMa1z9BnGIemOOyHf\n\
kt0+kMqv8iUYV3FscjwQlb5UVgOG06+858VVPP8CgYBeUi+aY065Y9Z3px+aBwtl\n\
A38iu8PuiaAwFRslIqd3/tYOUuMyaaH+J1ebUyouXb+mktYgo6IyKg5Qwrw0baMn\n\
bBW9h3mRx0CVwUBDw5YWOTp7iDne0xEd0fCq2o7D9FZ+yDPj/2bQuQ4V+91MThjy\n\
/xyS5dej7WD8ioBtJdhduwKBgQCXfSuOoKxFvmLAD+yGVolWWkFteW6kVsQliTZx\n\
UqkZV39Yj7azm4UzkIhA2X+NhBR8OJWn3oL4U95jpnl6a/h3n4t6nPi7Lee5ZK+D\n\
m97vvLWckrFtbwHV7eqQb0fnDHvcQDDsZaKcgnQgFc6h2gmrLalDWLOPlBUvQMx8\n\
LYfDxwKBgQC4qPVH/X132F9FSF6RYAR94LSOexFTX6ZARETR/YHuOxOYg7d2VSZf\n\
jLzYlatei0KDpGXwm+xA9bv+GLjkp5tZQ6R5Ekn8uDRz2RJCMVNjXhjULNBZPSlC\n\
SC/qdGwjCHYQkhozX5kfDOdHeJFKf0alefYw1T7ue1di4b30cvtCKA==\n\
-----END RSA PRIVATE KEY-----\n";

/// The second rotation key (`kid` [`KID_2`]).
const ROTATION_KEY_2_PEM: &str = "\
-----BEGIN RSA PRIVATE KEY-----\n\
MIIEpAIBAAKCAQEAyf9uHBgZxN7MZr8OImWew9uvQ5nfA2HvbfAwrJA8Gw3OY0QM\n\
NKMHbznXBkS+prtL5Vw0uTSL06FKhSQjbh3MyIY2OqU9exi4e3WQiNetabWWa2D1\n\
qcFXq5O+orgTdS38mbk3CQfubv+97SB7SNESsZM38oHxfz8n6qCFyBTZjkRMYo09\n\
qSa2DcEdN7Vt40JwYzTgLEtjSi53dszhu63+K7hXR3WYQU8djPuH9AGUcgs2poP5\n\
h5cU8tdbAD0uoOwTGPpm3avIx0YhWiWOWHnXG3jOBSVyD+7H+kjbvC5hCZ3QRpkS\n\
SQNLzMM1AgpUfoCKRkMJnK8c4hgxzcwyrPtZ9QIDAQABAoIBAAcpVqqJUjSQH5gO\n\
8v3WM3xHKB4R8P2qNbZkmx0rGe5tnWEYkwQ0uXlAiDaRLl8z6btuevIMAl8U61Lw\n\
Fo97X/zGAVsv64+XL0c1QlQPrXa/eN9Ct0L291g+azZSp2HyqO98SQ65aMMnrwCe\n\
s7A/tVV1XjjrUXgM8anYWhXfY10vT3xse3XUDbHiGDovNlbAGIbR2GZ8Et48EEi2\n\
K2kbF4ljs0AatPmKUOVEboRo/UiRJu7eZ4FB1BHecsbB3dDgxtG+3BrkyWqAUhYn\n\
DGqi4rpXbLyxPpes9MzAwP5rUJJJbtEczMzAYOmFH39LBtAXvFeXUqV+xqayS6GJ\n\
dDpmFFsCgYEA/RkcaeIAkiVi8PzSUYwm4LRK9U5dmUxCpDrXYOHYPhi0lBjOHnaM\n\
vhLdPzh30CX9+kHqWK3CptYNpjISt4rQOYX914GR1pxdzdyMilaDG0EciKn0Anqk\n\
FfXGORDzrVOKWLO3XTVuk5T0JjSCmIpkah7p5uzRWtZQjdAr9BJcfY8CgYEAzFBU\n\
lEfkJAZcETSdFvIUwTfFCdiIcODlivtYJ6GIjfHvXS2q09X3J9Pgt89enEvIih8m\n\
gW6k9lOZis38IIOduo5zEtR7wB1icw9LRuu6warbTFb0CPXpvaxqpPaq64FpAmTQ\n\
a0BLNmI5RKJkhTyaHzx7+xkKTyH8mbUeeuNN9jsCgYEAlcHX+CbL463Pf3x5Ddt5\n\
3ZeQitmVtHFVNUvDyQWZKBUCNGcA/zFyUb1jwFavPjBcuUlrWpFmDcW2SdJzFLtE\n\
PeU0r+Fw46WeM4L+fZR2+xdpxMubICRlFsFYSsfnB3XY9GdSZgqJpTWLyVdkttGc\n\
XNZx3DvgHHmXLHIyr7Z1l60CgYB+DFEh6fhmAUZrlvoTXeZQDggRuvTyLs1uoQIR\n\
8SY97DSwV6w8ZJTGjYDl5ZmI83gVPoKS95/uGEVxzQLvTEPTBG8Z/t0Z+Qbz1Uur\n\
xWLCeJYy0rJblNtPmT9x5nwsLvqJ74hlopTESHTsUwOQ74JmIvqaPyiNCXq9mW/k\n\
gLdoYQKBgQCKyRMtlWEFW5drOWdORoau/QdlAeypRGRe+g7FOw3ZNTlsaAvd09yM\n\
+IaA5LxJl5Ci/lMIAQUbxTc2osxF7jygRAJfnIEQcWuNM0e9ysbqEwbu7kTsSVL6\n\
1c44o62NR/zOii7JoYEC1s/puEkK9r/9nLkTkGCDTtvECEkXuYfNjg==\n\
-----END RSA PRIVATE KEY-----\n";

/// The third rotation key (`kid` [`KID_3`]).
const ROTATION_KEY_3_PEM: &str = "\
-----BEGIN RSA PRIVATE KEY-----\n\
MIIEowIBAAKCAQEAroFQ6wYmQWNGx3q0rDIOqTm+sIrAgBCgXqV8d6OI9yJMR94m\n\
o2r92erEOjLxHyaUNxnYPi+LBoze1Q0/JgrRna1H/YEJfEp3VxFJQppi1PNb3T9J\n\
jaPFQmlp7Xhh+rhBIvPpu4Rd2p3G2kodEEKXUusI0fu66ma2+MO0BuxsGYMssDgl\n\
XeANUTbfWDwMw+pHlURGaz4KyU0F7LgPM9UlCkoZsfp0pdYkMIKcNJwkn1HVYQiu\n\
9AFTq5neRHw+Fj12wnAQO6YW1D2DQrduVYVXJzrQ6yG6Rnc1ynItbe2/H7umYx0e\n\
N+70+zECVujWJnZg6SxDDqn+NMYqE6fwMloOBwIDAQABAoIBAECQ/1geS9xIt8EK\n\
ETxfPxZ1E62tgQFBZZzvXQjFPOG30oKK2z/+z9Mn7pfcDmQouZFTojOMEsQHLlGl\n\
F5bjTOCq4yaUbmaLBPH1puYaSnQhYP2RM41RKaTjbPqc3p/OOeeNWQ91L+a6Fv/g\n\
iTVhdi0LYpWTLvsYqx2LB5rCMlMTnd6TxeJ/RQaB41Do/8IHSV4JoXkF1w+0vgCP\n\
TEsJyoEaPySnyEQEy/fkwb/Kwm5aJ7L8lWoCsV7FHlaCig9Tzyl/iwmv6F4OnscG\n\
ALUq439W6ENOLo1Gvvhntf/MT1JCibHoYWZzKgAzwRhsMXFHDK7x3/Zso4AQH6//\n\
tqgeZ4kCgYEA2sThrBeC0hAZbM1azi9cH8qh3mAi0c0MOIlM1vrc0B+ddlKAu2gk\n\
5wG0L2YYflgs4EDf56x27M5YwV8N6AvJ6bGwjVwRKXm3viC8nPJSRSoqWPdpM+bv\n\
+tZXIMQmjqtp/aC7pxVJJgYazOMYaLxpJ/V5HH2UY9kILDf8ztypuf8CgYEAzDP8\n\
mXC1RjcaL+QJ5igpl6tv/ADJ2y7LEzYlThq46yNu7uFTkfWMSdQbEeWU/NTJRDAq\n\
od5Uh2Wr222/tMdVmZVMfQxuEfuTOiYgNwQdGUKYmBC0469NPyddb2Pj8j04vTLr\n\
28UTwi3Z2A9nyMnZYuLFPd0YpO9I/2dHrErZ2/kCgYEAmmaGF91oGTX/m8i7o/XN\n\
ASsUX0xehtA/Jc/RiZD4M3N8wLut25a/JMMRFrrp4pH86jEfVfVk4fEotyGNQQ7A\n\
7MzaHIq0Gh+rzOZx+BsWcXY2+R91AoqlKNYKHDgUNnFIlxbQGjZtsAZy99P3sEP5\n\
u5gGaFNBXc8Zc4v4Q09+AqUCgYB61GaD8XzIoIp69iNSMyRZnAC/R8YjtnDmvHIS\n\
GhbTMbwfqp/3MwlQu2oRCNTmhCQQhRyPw0l7LBgE5G4lEqYVvO2GZnyrCnWTy60j\n\
CrFqKVnaVmpIboD7lPUp9J7/bf38KG4hAtmQur3HrfSSnX/KcHeOb7jMNTbmkjxV\n\
kaycGQKBgAf4J9yBSDfstINX8dx/vx1ITTxEDlmUVI1DyDT5055w4mvmPJtf2qjy\n\
ggAkTN+GbRnNvkRaguGWXR2ojaenIDcqqlmacRvMAMZoa4T57XFHBNOXRDxcVApL\n\
KAWUi2YuEIOiFRb1gikvdkDXC3CiLkChGtxJM+L1OZVOmsEsaoke\n\
-----END RSA PRIVATE KEY-----\n";

/// A key that is never published in the JWKS (`kid` [`UNPUBLISHED_KID`]), for
/// [`IdTokenBehavior::UnknownKid`](super::IdTokenBehavior::UnknownKid).
const UNPUBLISHED_KEY_PEM: &str = "\
-----BEGIN RSA PRIVATE KEY-----\n\
MIIEogIBAAKCAQEAxHA5FejIi80elTS8mR06GaO8swsfwPWVCAi8PY5ZZ5bF4jOV\n\
e+9kbo55sN6jsThgIxS5xXEuCrvRKVLnmcG2cmBZuwT57ght2zEUX42dcxtwn71N\n\
EOTHzSrOQr+XEmn9/5x/QqpBPthPt2HNm+saa3r47v7nUapVjmbTMpMAXQ7Qu7MD\n\
/d7nPwLNRK/khtDaLSqpe7crpwKqMo4FnlykQ7DrQ9fRBtzQmUsJFYDfKLjkT5Fd\n\
3J/rdoS15w+0FPiKTFZlkqEFYr6TBsooI+a6saBfsAVEKTjqNcMOTHCqIupYTwnD\n\
Wgc2v6Ebw+qwsgJgW2o4XQy/rlaBIKzN+CvRmwIDAQABAoIBAB5PMn+u60Km45Ei\n\
EfeOCujp2rPFg6DCQ7x5nJHi5OiW2vGMBASba2OjmCMyNw+hIzRGfmN4kyIU2LEH\n\
mbSfrwb21uGEYwvXQRwQ9pPHxgN8uGPtUXbJ1gpSEIE8DpNIx2gpPXmLy4Vm2uXw\n\
sUjdfbYXw1EdA5QWNB1EwFGNXQD+gsvPg1UgyQKD/IRRfdV+t+QJJlAYaXERn55t\n\
ttVM+EWRAKuDeheMwO/niadSc48pT6au4Xwy5+WMqlJrqTiDr6yAJvcY7juy1304\n\
uca7dwFIWckOcUdYOUUhCiim0FyR/4or1AJX1oUYn8BbgFc1q/KZZeKo8ygUkHKl\n\
1NVnFAECgYEA8ptTpwTq6GPVDOYsPCx3vueiKRmo/rEiOvw8qjkVIGRZuxwzjNsG\n\
TleRf3NC9cT+MFDNyTAKgqGAw61rU+80hOMkEyHmshBCHcZqFDSjsBB+WZaf2nyi\n\
fDaThPIf2lIgb4m5xhZFfNFsz9VOcWOKH9e/4WghUyFbPcDk+z90VM8CgYEAz0hq\n\
UlLF3Y6yov6QkK6wQuXpdGbyy4FX6SKJhxDuDr6zYniMoXYyPkpr7baX9x7yocR4\n\
16JYi9vJNxvrxu2KS3ttx1HyFtnABduCVMIqy4Wa24gs2OuJc7wW2H/2QSXK0V/C\n\
Q2MNP63SJginkkafDuMf/5AWnljwHE40MNEfwXUCgYBf1Ej7vS6I8v4x5S1t62a1\n\
asucDn25dQB/aikQWBHnRJxJE3+tUMqx4Vcgj8fQSqrZLOHMaYSNSvwQzwyJEACf\n\
yRTz1b1JcrCbEEfQiWZq4mj2PFASPo70H56vsfAxDaWwSSevfhaekh64DZq5oUbr\n\
Aw7RG4+mRZPD1dDdCZiK8wKBgD3QgqR6OrePzoX9FG+RKM9KcQxdhxpZQDYuLoUw\n\
701GYYiEGqwr61/YIceKJFd1yzWiucbUi0NqD993XCC+xfcsn9hI/8EAvtsAUyWj\n\
oc9/0GaXfYhS9XKmLMnznyReeNVnkS83YsQSuhDNk+tzVAvEf85e0d/29eP7DmVg\n\
d+/hAoGAXykY0LwZOsTiMFn6peF6e9s2a6JSXETCYwvYuH64cSMPUCfzX7mGScII\n\
F69e1Y0UYaj+AGtPOyZEM04Sk7Tzl8gbpO4wmpm+uBcSGyszrwpMWk85iCFOFEOa\n\
Q4/V55J8OBBb6Hf0FHt4UpxCg//GkC7+ikGmCXUyhtaeSXU4L54=\n\
-----END RSA PRIVATE KEY-----\n";

/// The `kid` of rotation key `index` (taken modulo [`ROTATION_KEY_COUNT`]).
pub(super) fn rotation_kid(index: usize) -> &'static str {
    ROTATION_KIDS[index % ROTATION_KEY_COUNT]
}

/// One RSA key pair with its `kid` and its public JWK.
pub struct SigningKey {
    kid: &'static str,
    private: CoreRsaPrivateSigningKey,
    public: CoreJsonWebKey,
    jwk: Value,
}

impl SigningKey {
    fn from_pem(pem: &str, kid: &'static str) -> Result<Self, String> {
        let private = CoreRsaPrivateSigningKey::from_pem(pem, Some(JsonWebKeyId::new(kid.into())))
            .map_err(|e| format!("embedded RSA key {kid}: {e}"))?;
        let public = private.as_verification_key();
        let mut jwk =
            serde_json::to_value(&public).map_err(|e| format!("embedded RSA key {kid}: {e}"))?;
        if let Value::Object(members) = &mut jwk {
            members.insert("alg".into(), Value::from("RS256"));
            members.insert("use".into(), Value::from("sig"));
        }
        Ok(Self {
            kid,
            private,
            public,
            jwk,
        })
    }

    /// The public key as a JWK: `kty`, `use`, `alg`, `kid`, `n`, `e`.
    pub fn jwk(&self) -> &Value {
        &self.jwk
    }

    fn sign_rs256(&self, message: &[u8]) -> Result<Vec<u8>, String> {
        self.private
            .sign(&CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256, message)
            .map_err(|e| format!("RS256 signing failed: {e}"))
    }

    fn verify_rs256(&self, message: &[u8], signature: &[u8]) -> bool {
        self.public
            .verify_signature(
                &CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
                message,
                signature,
            )
            .is_ok()
    }
}

/// All embedded keys, parsed once per process.
pub struct KeyRing {
    rotation: Vec<SigningKey>,
    unpublished: SigningKey,
}

static KEY_RING: OnceLock<Result<KeyRing, String>> = OnceLock::new();

/// The embedded keys. Parsing happens once per process; an error (which would be a bug in
/// the embedded constants) is reported to every caller.
pub fn key_ring() -> Result<&'static KeyRing, String> {
    KEY_RING
        .get_or_init(|| {
            let pems = [ROTATION_KEY_1_PEM, ROTATION_KEY_2_PEM, ROTATION_KEY_3_PEM];
            let rotation = pems
                .iter()
                .zip(ROTATION_KIDS)
                .map(|(pem, kid)| SigningKey::from_pem(pem, kid))
                .collect::<Result<Vec<_>, _>>()?;
            let unpublished = SigningKey::from_pem(UNPUBLISHED_KEY_PEM, UNPUBLISHED_KID)?;
            Ok(KeyRing {
                rotation,
                unpublished,
            })
        })
        .as_ref()
        .map_err(Clone::clone)
}

impl KeyRing {
    /// Rotation key `index` (taken modulo [`ROTATION_KEY_COUNT`]).
    pub fn rotation_key(&self, index: usize) -> Result<&SigningKey, String> {
        self.rotation
            .get(index % ROTATION_KEY_COUNT)
            .ok_or_else(|| "no such rotation key".to_owned())
    }

    /// The three rotation keys.
    pub(super) fn rotation_keys(&self) -> &[SigningKey] {
        &self.rotation
    }
}

/// How a token is signed, and so which `alg` (and `kid`) its header carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signing {
    /// RS256 with the active key, header `kid` included.
    Rs256,
    /// RS256 with the active key, no `kid` in the header.
    Rs256NoKid,
    /// RS256 with the active key and its `kid`, then one signature byte flipped.
    Rs256Corrupted,
    /// RS256 with the never-published key and its `kid`.
    Rs256Unpublished,
    /// `alg: none` and an empty signature.
    None,
    /// HS256, the MAC keyed with the client secret (empty for a public client).
    Hs256,
    /// `alg: ES256` with the active key's `kid` and 64 random bytes as signature.
    Es256Garbage,
}

/// Builds, signs and serializes a JWS in compact form: `typ` (when given) and the header
/// members implied by `signing`, then `claims`.
pub fn sign_jwt(
    typ: Option<&str>,
    claims: &Map<String, Value>,
    signing: Signing,
    active: &SigningKey,
    ring: &KeyRing,
    client_secret: &[u8],
) -> Result<String, String> {
    let (alg, kid) = match signing {
        Signing::Rs256 | Signing::Rs256Corrupted => ("RS256", Some(active.kid)),
        Signing::Rs256NoKid => ("RS256", None),
        Signing::Rs256Unpublished => ("RS256", Some(ring.unpublished.kid)),
        Signing::None => ("none", None),
        Signing::Hs256 => ("HS256", None),
        Signing::Es256Garbage => ("ES256", Some(active.kid)),
    };
    let mut header = Map::new();
    header.insert("alg".into(), Value::from(alg));
    if let Some(typ) = typ {
        header.insert("typ".into(), Value::from(typ));
    }
    if let Some(kid) = kid {
        header.insert("kid".into(), Value::from(kid));
    }
    let header = serde_json::to_vec(&header).map_err(|e| e.to_string())?;
    let claims = serde_json::to_vec(claims).map_err(|e| e.to_string())?;
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(claims)
    );
    let message = signing_input.as_bytes();
    let signature = match signing {
        Signing::Rs256 | Signing::Rs256NoKid => active.sign_rs256(message)?,
        Signing::Rs256Corrupted => {
            let mut signature = active.sign_rs256(message)?;
            let middle = signature.len() / 2;
            if let Some(byte) = signature.get_mut(middle) {
                *byte ^= 0x5A;
            }
            signature
        }
        Signing::Rs256Unpublished => ring.unpublished.sign_rs256(message)?,
        Signing::None => Vec::new(),
        Signing::Hs256 => CoreHmacKey::new(client_secret)
            .sign(&CoreJwsSigningAlgorithm::HmacSha256, message)
            .map_err(|e| format!("HS256 signing failed: {e}"))?,
        Signing::Es256Garbage => {
            let mut garbage = vec![0u8; 64];
            rand::rngs::OsRng.fill_bytes(&mut garbage);
            garbage
        }
    };
    Ok(format!(
        "{signing_input}.{}",
        URL_SAFE_NO_PAD.encode(signature)
    ))
}

/// A compact JWS split and decoded, not verified.
pub(super) struct DecodedJwt<'a> {
    /// The JOSE header.
    pub(super) header: Map<String, Value>,
    /// The claims.
    pub(super) claims: Map<String, Value>,
    /// `base64url(header) "." base64url(claims)`.
    pub(super) signing_input: &'a str,
    /// The signature bytes.
    pub(super) signature: Vec<u8>,
}

/// Splits and decodes a compact JWS without verifying it. `None` if it is malformed.
pub(super) fn decode_jwt(token: &str) -> Option<DecodedJwt<'_>> {
    let (signing_input, signature) = token.rsplit_once('.')?;
    let (header, claims) = signing_input.split_once('.')?;
    let decode_object = |part: &str| -> Option<Map<String, Value>> {
        let bytes = URL_SAFE_NO_PAD.decode(part).ok()?;
        match serde_json::from_slice(&bytes).ok()? {
            Value::Object(members) => Some(members),
            _ => None,
        }
    };
    Some(DecodedJwt {
        header: decode_object(header)?,
        claims: decode_object(claims)?,
        signing_input,
        signature: URL_SAFE_NO_PAD.decode(signature).ok()?,
    })
}

/// Verifies that `token` is an RS256 JWS signed by one of this provider's rotation keys
/// (published now or not; chosen by `kid`, or tried in turn without one) and returns its
/// claims. It checks no claim.
pub(super) fn verify_own_jwt(token: &str) -> Result<Map<String, Value>, &'static str> {
    let ring = key_ring().map_err(|_| "the provider's keys are unavailable")?;
    let jwt = decode_jwt(token).ok_or("not a compact JWS")?;
    if jwt.header.get("alg") != Some(&json!("RS256")) {
        return Err("not signed with RS256");
    }
    let message = jwt.signing_input.as_bytes();
    let valid = match jwt.header.get("kid") {
        Some(kid) => ring
            .rotation_keys()
            .iter()
            .filter(|key| kid == key.kid)
            .any(|key| key.verify_rs256(message, &jwt.signature)),
        None => ring
            .rotation_keys()
            .iter()
            .any(|key| key.verify_rs256(message, &jwt.signature)),
    };
    if valid {
        Ok(jwt.claims)
    } else {
        Err("the signature does not verify with the provider's keys")
    }
}
