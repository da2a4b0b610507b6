//! A session's tokens as the stores see them: sealed with AES-256-GCM under a key derived
//! from the session id.
//!
//! A store (Redis, a database, their dumps, backups, replicas, `MONITOR`) must hold nothing
//! that can be replayed at a provider. Stores are keyed by the
//! SHA-256 of the session id ([`SessionKey`](super::SessionKey)) and never see the id
//! itself; the seal key is HKDF-SHA256 of the id, so a sealed record opens only for the
//! browser that holds the cookie, and a record moved under another key opens for nobody.
//!
//! Sealed form: `1` (the version) ‖ a random 96-bit nonce ‖ ciphertext ‖ 128-bit tag,
//! base64url in the serde form. The additional data is the version and the fields fixed at
//! sign-in (subject, sid, claims, creation time, absolute deadline): a store writer who
//! edits who a session belongs to, or stretches its life past the absolute deadline, gets
//! a record that no longer opens. Deadlines that slide, the access token's expiry and the
//! scopes are left out: they change without the tokens changing, and re-sealing for them
//! would put crypto on every idle-deadline write.

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::hkdf;
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use subtle::ConstantTimeEq;

/// The format byte in front of every sealed value, and the first byte of the additional
/// data: a future format is refused by this one rather than misread.
const VERSION: u8 = 1;
/// HKDF salt and info: the seal key is of this crate and this use only.
const SALT: &[u8] = b"tower-oauth2-login session seal";
const INFO: &[u8] = b"v1 AES-256-GCM session tokens";
const TAG_LEN: usize = 16;

/// The key that seals and opens one session's tokens: HKDF-SHA256 of the session id.
///
/// Derived from the cookie value beside the [`SessionKey`](super::SessionKey) (see
/// `SessionId::keys`) and never stored: a store has only the hash of the id, from which
/// this key cannot be computed. `Copy`, so that work that outlives a request (a refresh, a
/// revocation) can take it along.
#[derive(Clone, Copy)]
pub(crate) struct SealKey([u8; 32]);

impl SealKey {
    /// The seal key of a session id (the cookie value).
    pub(crate) fn for_cookie_value(value: &str) -> SealKey {
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, SALT).extract(value.as_bytes());
        let mut bytes = [0u8; 32];
        let derived = prk
            .expand(&[INFO], &AES_256_GCM)
            .and_then(|okm| okm.fill(&mut bytes));
        if derived.is_err() {
            // Cannot happen (32 bytes is far below HKDF's limit). Should it, a random key
            // fails closed: what it seals opens for nobody, and it opens nothing.
            let _ = SystemRandom::new().fill(&mut bytes);
        }
        SealKey(bytes)
    }

    fn aead(&self) -> Result<LessSafeKey, SealError> {
        UnboundKey::new(&AES_256_GCM, &self.0)
            .map(LessSafeKey::new)
            .map_err(|_| SealError)
    }

    /// Whether two keys are the same, in constant time.
    pub(crate) fn same_as(&self, other: &SealKey) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl fmt::Debug for SealKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SealKey(..)")
    }
}

/// A session's secret material: what is sealed.
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct Tokens {
    // Short names: this JSON is encrypted, and its size is paid for in every stored record.
    #[serde(rename = "a")]
    pub(crate) access_token: String,
    #[serde(rename = "r", default, skip_serializing_if = "Option::is_none")]
    pub(crate) refresh_token: Option<String>,
    #[serde(rename = "i", default, skip_serializing_if = "Option::is_none")]
    pub(crate) id_token: Option<String>,
}

impl fmt::Debug for Tokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Tokens(<redacted>)")
    }
}

/// The sealed tokens: version ‖ nonce ‖ ciphertext ‖ tag.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Sealed(Box<[u8]>);

impl fmt::Debug for Sealed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sealed({} bytes)", self.0.len())
    }
}

impl Serialize for Sealed {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&URL_SAFE_NO_PAD.encode(&self.0))
    }
}

impl<'de> Deserialize<'de> for Sealed {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = std::borrow::Cow::<'de, str>::deserialize(deserializer)?;
        URL_SAFE_NO_PAD
            .decode(text.as_bytes())
            .map(|bytes| Sealed(bytes.into_boxed_slice()))
            .map_err(|_| serde::de::Error::custom("sealed tokens: not base64url"))
    }
}

/// Tokens that could not be sealed, or a sealed value that does not open with this key
/// and these fields (another session's, edited, truncated, of another version). Says
/// nothing more, on purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SealError;

impl fmt::Display for SealError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the session's tokens could not be sealed or opened")
    }
}

/// The fields a sealed value is bound to (see the module documentation).
pub(crate) struct Binding<'a> {
    pub(crate) subject: &'a str,
    pub(crate) sid: Option<&'a str>,
    /// The claims' compact JSON text, as `Claims` keeps it.
    pub(crate) claims: &'a str,
    pub(crate) created_at: u64,
    pub(crate) absolute_expires_at: u64,
}

impl Binding<'_> {
    /// The additional data: each field length-prefixed, so no two bindings give the same
    /// bytes.
    fn aad(&self) -> Vec<u8> {
        let mut aad = Vec::with_capacity(
            64 + self.subject.len() + self.claims.len() + self.sid.map_or(0, str::len),
        );
        aad.extend_from_slice(b"tower-oauth2-login session");
        aad.push(VERSION);
        let mut field = |bytes: Option<&[u8]>| match bytes {
            Some(b) => {
                aad.extend_from_slice(&(b.len() as u64).to_be_bytes());
                aad.extend_from_slice(b);
            }
            None => aad.extend_from_slice(&u64::MAX.to_be_bytes()),
        };
        field(Some(self.subject.as_bytes()));
        field(self.sid.map(str::as_bytes));
        field(Some(self.claims.as_bytes()));
        field(Some(&self.created_at.to_be_bytes()));
        field(Some(&self.absolute_expires_at.to_be_bytes()));
        aad
    }
}

/// Seals `tokens` under `key`, bound to `binding`, with a fresh random nonce.
pub(crate) fn seal(
    tokens: &Tokens,
    key: &SealKey,
    binding: &Binding<'_>,
) -> Result<Sealed, SealError> {
    let mut nonce = [0u8; NONCE_LEN];
    SystemRandom::new()
        .fill(&mut nonce)
        .map_err(|_| SealError)?;
    let plain = serde_json::to_vec(tokens).map_err(|_| SealError)?;
    let mut out = Vec::with_capacity(1 + NONCE_LEN + plain.len() + TAG_LEN);
    out.push(VERSION);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&plain);
    let tag = key.aead()?.seal_in_place_separate_tag(
        Nonce::assume_unique_for_key(nonce),
        Aad::from(binding.aad()),
        &mut out[1 + NONCE_LEN..],
    );
    out.extend_from_slice(tag.map_err(|_| SealError)?.as_ref());
    Ok(Sealed(out.into_boxed_slice()))
}

/// Opens `sealed` with `key`, if it was sealed under that key and bound to `binding`.
pub(crate) fn open(
    sealed: &Sealed,
    key: &SealKey,
    binding: &Binding<'_>,
) -> Result<Tokens, SealError> {
    let bytes = &sealed.0;
    if bytes.len() < 1 + NONCE_LEN + TAG_LEN || bytes[0] != VERSION {
        return Err(SealError);
    }
    let nonce =
        Nonce::try_assume_unique_for_key(&bytes[1..1 + NONCE_LEN]).map_err(|_| SealError)?;
    let mut in_out = bytes[1 + NONCE_LEN..].to_vec();
    let plain = key
        .aead()?
        .open_in_place(nonce, Aad::from(binding.aad()), &mut in_out)
        .map_err(|_| SealError)?;
    serde_json::from_slice(plain).map_err(|_| SealError)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens() -> Tokens {
        Tokens {
            access_token: "access-secret".into(),
            refresh_token: Some("refresh-secret".into()),
            id_token: Some("id.token.secret".into()),
        }
    }

    fn binding() -> Binding<'static> {
        Binding {
            subject: "alice",
            sid: Some("sid-1"),
            claims: r#"{"sub":"alice"}"#,
            created_at: 1000,
            absolute_expires_at: 9000,
        }
    }

    #[test]
    fn opens_with_its_key_and_binding_only() {
        let key = SealKey::for_cookie_value("cookie-a");
        let sealed = seal(&tokens(), &key, &binding()).unwrap();
        let opened = open(&sealed, &key, &binding()).unwrap();
        assert_eq!(opened.access_token, "access-secret");
        assert_eq!(opened.refresh_token.as_deref(), Some("refresh-secret"));
        assert_eq!(opened.id_token.as_deref(), Some("id.token.secret"));

        let other = SealKey::for_cookie_value("cookie-b");
        assert_eq!(open(&sealed, &other, &binding()).unwrap_err(), SealError);
        let rebound = [
            Binding {
                subject: "mallory",
                ..binding()
            },
            Binding {
                sid: None,
                ..binding()
            },
            Binding {
                sid: Some("sid-2"),
                ..binding()
            },
            Binding {
                claims: r#"{"sub":"alice","admin":true}"#,
                ..binding()
            },
            Binding {
                created_at: 1001,
                ..binding()
            },
            Binding {
                absolute_expires_at: 99_000,
                ..binding()
            },
        ];
        for b in &rebound {
            assert!(open(&sealed, &key, b).is_err(), "{}", b.subject);
        }
    }

    #[test]
    fn keys_come_from_the_id_alone() {
        assert!(SealKey::for_cookie_value("x").same_as(&SealKey::for_cookie_value("x")));
        assert!(!SealKey::for_cookie_value("x").same_as(&SealKey::for_cookie_value("y")));
        // Not the SessionKey: a store that has the hash of the id has no seal key.
        let id = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
        let hash = super::super::SessionKey::for_cookie_value(id);
        assert_ne!(&SealKey::for_cookie_value(id).0, hash.as_bytes());
    }

    #[test]
    fn every_altered_byte_and_every_truncation_is_refused() {
        let key = SealKey::for_cookie_value("cookie-a");
        let sealed = seal(&tokens(), &key, &binding()).unwrap();
        for i in 0..sealed.0.len() {
            let mut bytes = sealed.0.to_vec();
            bytes[i] ^= 0x01;
            assert!(
                open(&Sealed(bytes.into()), &key, &binding()).is_err(),
                "byte {i}"
            );
            let cut = Sealed(sealed.0[..i].into());
            assert!(open(&cut, &key, &binding()).is_err(), "cut at {i}");
        }
        let mut longer = sealed.0.to_vec();
        longer.push(0);
        assert!(open(&Sealed(longer.into()), &key, &binding()).is_err());
    }

    #[test]
    fn nonces_are_fresh_and_nothing_shows() {
        let key = SealKey::for_cookie_value("cookie-a");
        let a = seal(&tokens(), &key, &binding()).unwrap();
        let b = seal(&tokens(), &key, &binding()).unwrap();
        assert_ne!(a.0[1..1 + NONCE_LEN], b.0[1..1 + NONCE_LEN]);
        assert_ne!(a, b);
        let text = serde_json::to_string(&a).unwrap();
        for secret in ["access-secret", "refresh-secret", "id.token.secret"] {
            assert!(!text.contains(secret));
            assert!(!format!("{a:?}{key:?}{:?}", tokens()).contains(secret));
        }
        assert_eq!(format!("{key:?}"), "SealKey(..)");
        let back: Sealed = serde_json::from_str(&text).unwrap();
        assert_eq!(back, a);
        assert!(serde_json::from_str::<Sealed>("\"not base64!\"").is_err());
    }
}
