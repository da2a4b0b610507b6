//! OpenID Connect: discovery, ID token verification with a JWKS cache that re-fetches on an
//! unknown key, and verification of back-channel logout tokens.
//!
//! Discovery and ID tokens go through the `openidconnect` crate. It verifies with the keys
//! it is given and does not fetch them, so the cache and its re-fetch on an unknown `kid`
//! are built here. It has no back-channel logout support, so logout tokens are checked here
//! too, with its key types doing the signature check.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Utc};
use openidconnect::core::{
    CoreAuthDisplay, CoreClaimName, CoreClaimType, CoreClientAuthMethod, CoreGenderClaim,
    CoreGrantType, CoreJsonWebKey, CoreJsonWebKeySet, CoreJweContentEncryptionAlgorithm,
    CoreJweKeyManagementAlgorithm, CoreJwsSigningAlgorithm, CoreResponseMode, CoreResponseType,
    CoreSubjectIdentifierType,
};
use openidconnect::{
    AdditionalClaims, AdditionalProviderMetadata, ClaimsVerificationError, ClientId,
    IdTokenVerifier, IssuerUrl, JsonWebKey, JsonWebKeyId, JsonWebKeySet, JsonWebKeySetUrl, Nonce,
    ProviderMetadata, SignatureVerificationError,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::backchannel::Backchannel;
use crate::error::FlowError;
use crate::jwk::{self, Jwks};

/// Metadata fields the layer reads beyond what `openidconnect` types.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub(crate) struct ExtraMetadata {
    #[serde(default)]
    pub(crate) end_session_endpoint: Option<String>,
    #[serde(default)]
    pub(crate) revocation_endpoint: Option<String>,
    #[serde(default)]
    pub(crate) authorization_response_iss_parameter_supported: Option<bool>,
}

impl AdditionalProviderMetadata for ExtraMetadata {}

/// The discovery document as the layer reads it.
pub(crate) type Metadata = ProviderMetadata<
    ExtraMetadata,
    CoreAuthDisplay,
    CoreClientAuthMethod,
    CoreClaimName,
    CoreClaimType,
    CoreGrantType,
    CoreJweContentEncryptionAlgorithm,
    CoreJweKeyManagementAlgorithm,
    CoreJsonWebKey,
    CoreResponseMode,
    CoreResponseType,
    CoreSubjectIdentifierType,
>;

/// The `sid` claim (OpenID Connect Front- and Back-Channel Logout).
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub(crate) struct SidClaim {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) sid: Option<String>,
}

impl AdditionalClaims for SidClaim {}

type IdToken = openidconnect::IdToken<
    SidClaim,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJwsSigningAlgorithm,
>;
type IdTokenClaims = openidconnect::IdTokenClaims<SidClaim, CoreGenderClaim>;

/// The least time between two re-fetches of the JWKS forced by unknown keys. The first
/// fetch does not count, so a key rotated just after start-up is still picked up.
const MIN_REFETCH_INTERVAL: Duration = Duration::from_secs(10);

/// How old an ID token may be when it arrives: it comes straight from the token endpoint.
const MAX_ID_TOKEN_AGE: Duration = Duration::from_secs(10 * 60);

/// The largest clock leeway the configuration accepts.
pub(crate) const MAX_LEEWAY: Duration = Duration::from_secs(5 * 60);

const BACKCHANNEL_LOGOUT_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

/// What [`FlowError::Provider5xx`] says when an ID token may be good but the keys to
/// verify it cannot be fetched (the JWKS endpoint is down during a key rotation).
pub(crate) const KEYS_UNAVAILABLE: &str = "the provider's signing keys could not be fetched";

/// What a forced JWKS re-fetch gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refetch {
    /// New keys (fetched now, or by another caller since).
    New,
    /// No fetch (too soon after the last one, which worked): the keys are what they are.
    Unchanged,
    /// The JWKS could not be fetched, now or at the last try, too recent to try again.
    Unavailable,
}

/// How the nonce of an ID token is checked.
#[derive(Clone, Copy)]
pub(crate) enum NonceCheck<'a> {
    /// At login: the claim must be present and equal.
    Equal(&'a str),
    /// At refresh (OIDC Core 12.2): absent, or equal to the login's.
    AbsentOrEqual(Option<&'a str>),
}

/// An ID token that passed every check.
#[derive(Debug)]
pub(crate) struct VerifiedIdToken {
    pub(crate) subject: String,
    pub(crate) sid: Option<String>,
    pub(crate) claims: Map<String, Value>,
}

/// The provider's keys, as last fetched, and a counter of fetches.
struct Keys {
    set: Arc<Jwks>,
    generation: u64,
}

/// Everything OpenID Connect adds to a layer.
pub(crate) struct Oidc {
    pub(crate) issuer: IssuerUrl,
    client_id: ClientId,
    jwks_uri: JsonWebKeySetUrl,
    keys: RwLock<Keys>,
    /// When an unknown key last forced a re-fetch, and whether that fetch failed; the lock
    /// makes concurrent logins share one fetch.
    last_refetch: tokio::sync::Mutex<Option<(Instant, bool)>>,
    algs: Vec<CoreJwsSigningAlgorithm>,
    leeway: Duration,
    pub(crate) end_session_endpoint: Option<url::Url>,
}

impl std::fmt::Debug for Oidc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Oidc")
            .field("issuer", &self.issuer.as_str())
            .finish_non_exhaustive()
    }
}

impl Oidc {
    pub(crate) fn new(
        issuer: IssuerUrl,
        client_id: ClientId,
        jwks_uri: JsonWebKeySetUrl,
        initial_keys: Option<CoreJsonWebKeySet>,
        algs: Vec<CoreJwsSigningAlgorithm>,
        leeway: Duration,
        end_session_endpoint: Option<url::Url>,
    ) -> Self {
        let fetched = initial_keys.is_some();
        Self {
            issuer,
            client_id,
            jwks_uri,
            keys: RwLock::new(Keys {
                set: Arc::new(
                    initial_keys
                        .as_ref()
                        .map_or_else(|| JsonWebKeySet::new(Vec::new()), jwk::from_core),
                ),
                generation: u64::from(fetched),
            }),
            last_refetch: tokio::sync::Mutex::new(None),
            algs,
            leeway,
            end_session_endpoint,
        }
    }

    /// Behaves as if the last forced JWKS fetch failed just now, so that the next ones
    /// are rate-limited: for the fuzzing entry points, which must not touch the network.
    #[cfg(any(test, feature = "fuzzing"))]
    pub(crate) fn assume_keys_unavailable(&self) {
        if let Ok(mut last) = self.last_refetch.try_lock() {
            *last = Some((Instant::now(), true));
        }
    }

    fn current_keys(&self) -> (Arc<Jwks>, u64) {
        // A poisoned lock only means a panic elsewhere while swapping an Arc: the value
        // inside is still whole.
        let keys = self.keys.read().unwrap_or_else(|e| e.into_inner());
        (Arc::clone(&keys.set), keys.generation)
    }

    /// Fetches the JWKS again, unless another caller did since `seen` (then its result is
    /// used) or the last forced fetch is too recent.
    async fn refetch_keys(&self, http: &Backchannel, seen: u64) -> Refetch {
        let mut last = self.last_refetch.lock().await;
        if self.current_keys().1 != seen {
            return Refetch::New;
        }
        // The first fetch (none at build time) is not rate-limited.
        if let Some((at, failed)) = *last {
            if seen > 0 && at.elapsed() < MIN_REFETCH_INTERVAL {
                tracing::debug!("JWKS re-fetch skipped: too soon after the last one");
                return if failed {
                    Refetch::Unavailable
                } else {
                    Refetch::Unchanged
                };
            }
        }
        match JsonWebKeySet::fetch_async(&self.jwks_uri, http).await {
            Ok(set) => {
                *last = Some((Instant::now(), false));
                let mut keys = self.keys.write().unwrap_or_else(|e| e.into_inner());
                keys.set = Arc::new(set);
                keys.generation += 1;
                tracing::info!("fetched the provider's signing keys (JWKS)");
                Refetch::New
            }
            Err(e) => {
                *last = Some((Instant::now(), true));
                tracing::warn!(error = %e, "could not fetch the provider's signing keys (JWKS)");
                Refetch::Unavailable
            }
        }
    }

    /// Verifies an ID token: signature with an allowed algorithm and the provider's keys,
    /// `iss`, `aud` (no untrusted extra audience), `azp`, `exp` and `iat` within the leeway,
    /// and the nonce. An unknown key triggers one JWKS re-fetch before the token is refused.
    pub(crate) async fn verify_id_token(
        &self,
        http: &Backchannel,
        raw: &str,
        nonce: NonceCheck<'_>,
    ) -> Result<VerifiedIdToken, FlowError> {
        // openidconnect's JWS parser accepts base64url with stray trailing bits, so 16
        // spellings of one signature pass; a token must be in its one canonical form.
        if !is_canonical_jws(raw) {
            return Err(FlowError::IdToken("the ID token is malformed"));
        }
        let token: IdToken = raw
            .parse()
            .map_err(|_| FlowError::IdToken("the ID token is malformed"))?;
        let (mut keys, mut generation) = self.current_keys();
        if generation == 0 {
            self.refetch_keys(http, 0).await;
            (keys, generation) = self.current_keys();
        }
        // A key the cache does not know: one re-fetch (shared, rate-limited), then a
        // second try. Without a `kid`, a bad signature may also mean a rotated key.
        let has_kid = token_has_kid(raw);
        let claims = match self.check(&token, &keys, nonce) {
            Err(ClaimsVerificationError::SignatureVerification(e))
                if matches!(e, SignatureVerificationError::NoMatchingKey) || !has_kid =>
            {
                match self.refetch_keys(http, generation).await {
                    Refetch::New => {
                        let (keys, _) = self.current_keys();
                        self.check(&token, &keys, nonce)
                    }
                    Refetch::Unchanged => Err(ClaimsVerificationError::SignatureVerification(e)),
                    // Not the token's fault: the keys that may verify it cannot be had now.
                    Refetch::Unavailable => return Err(FlowError::Provider5xx(KEYS_UNAVAILABLE)),
                }
            }
            other => other,
        }
        .map_err(|e| {
            tracing::warn!(error = %e, "ID token refused");
            FlowError::IdToken(describe(&e))
        })?;

        // OIDC Core 3.1.3.7 steps 4-5, which `openidconnect` leaves to the caller: with
        // several audiences `azp` is required, and when present it must be this client.
        let audiences = claims.audiences();
        match claims.authorized_party() {
            Some(azp) if **azp != *self.client_id => {
                tracing::warn!("ID token refused: azp names another client");
                return Err(FlowError::IdToken(
                    "the ID token was issued to another party",
                ));
            }
            None if audiences.len() > 1 => {
                tracing::warn!("ID token refused: several audiences and no azp");
                return Err(FlowError::IdToken(
                    "the ID token was issued to another party",
                ));
            }
            _ => {}
        }

        let subject = claims.subject().as_str().to_string();
        if subject.is_empty() || subject.len() > 255 {
            return Err(FlowError::IdToken("the ID token names no user"));
        }
        let sid = claims.additional_claims().sid.clone();
        let claims = match serde_json::to_value(&claims) {
            Ok(Value::Object(map)) => map,
            _ => Map::new(),
        };
        Ok(VerifiedIdToken {
            subject,
            sid,
            claims,
        })
    }

    /// Verifies with the whole key set, or, when the token has no `kid` and several keys
    /// could have signed it (which `openidconnect` refuses as ambiguous), with each key in
    /// turn: DESIGN.md lets a relying party reject or try them all, and trying them keeps
    /// working across a rotation that publishes two keys.
    fn check(
        &self,
        token: &IdToken,
        keys: &Jwks,
        nonce: NonceCheck<'_>,
    ) -> Result<IdTokenClaims, ClaimsVerificationError> {
        match self.check_with(token, keys, nonce) {
            Err(ClaimsVerificationError::SignatureVerification(
                SignatureVerificationError::AmbiguousKeyId(_),
            )) => {
                let mut last = Err(ClaimsVerificationError::SignatureVerification(
                    SignatureVerificationError::NoMatchingKey,
                ));
                for key in keys.keys() {
                    let single = JsonWebKeySet::new(vec![key.clone()]);
                    last = self.check_with(token, &single, nonce);
                    if last.is_ok() {
                        break;
                    }
                }
                last
            }
            other => other,
        }
    }

    fn check_with(
        &self,
        token: &IdToken,
        keys: &Jwks,
        nonce: NonceCheck<'_>,
    ) -> Result<IdTokenClaims, ClaimsVerificationError> {
        let leeway = chrono::Duration::from_std(self.leeway).unwrap_or_default();
        let max_age = chrono::Duration::from_std(MAX_ID_TOKEN_AGE).unwrap_or_default();
        let verifier = IdTokenVerifier::new_public_client(
            self.client_id.clone(),
            self.issuer.clone(),
            keys.clone(),
        )
        .set_allowed_algs(self.algs.iter().cloned())
        // `exp` gets the leeway by checking it against a clock that is behind.
        .set_time_fn(move || Utc::now() - leeway)
        .set_issue_time_verifier_fn(move |iat: DateTime<Utc>| {
            let now = Utc::now();
            if iat > now + leeway {
                Err("issued in the future".to_string())
            } else if iat < now - max_age - leeway {
                Err("issued too long ago".to_string())
            } else {
                Ok(())
            }
        });
        match nonce {
            NonceCheck::Equal(expected) => {
                let expected = Nonce::new(expected.to_string());
                token.clone().into_claims(&verifier, &expected)
            }
            NonceCheck::AbsentOrEqual(original) => {
                token
                    .clone()
                    .into_claims(&verifier, |claim: Option<&Nonce>| match (claim, original) {
                        (None, _) => Ok(()),
                        (Some(c), Some(o)) if constant_time_eq(c.secret(), o) => Ok(()),
                        _ => Err("the nonce changed".to_string()),
                    })
            }
        }
    }

    /// Verifies a back-channel logout token (OIDC Back-Channel Logout 1.0, section 2.6) and
    /// returns the `sub` and `sid` it names.
    pub(crate) async fn verify_logout_token(
        &self,
        http: &Backchannel,
        raw: &str,
    ) -> Result<(Option<String>, Option<String>), &'static str> {
        let jwt = UnverifiedJwt::parse(raw)?;
        if let Some(typ) = &jwt.header.typ {
            if !typ.eq_ignore_ascii_case("logout+jwt") && !typ.eq_ignore_ascii_case("JWT") {
                return Err("unexpected token type");
            }
        }
        let alg: CoreJwsSigningAlgorithm =
            serde_json::from_value(Value::String(jwt.header.alg.clone()))
                .map_err(|_| "unknown algorithm")?;
        if !self.algs.contains(&alg) {
            return Err("algorithm not allowed");
        }
        let kid = jwt.header.kid.clone().map(JsonWebKeyId::new);
        let (keys, generation) = self.current_keys();
        let verified = match jwt.verify(&keys, kid.as_ref(), &alg) {
            Err(SignatureVerificationError::NoMatchingKey)
                if self.refetch_keys(http, generation).await == Refetch::New =>
            {
                jwt.verify(&self.current_keys().0, kid.as_ref(), &alg)
            }
            other => other,
        };
        verified.map_err(|_| "bad signature")?;

        let claims = &jwt.claims;
        if claims.get("iss").and_then(Value::as_str) != Some(self.issuer.as_str()) {
            return Err("wrong issuer");
        }
        let aud_ok = match claims.get("aud") {
            Some(Value::String(a)) => a == self.client_id.as_str(),
            Some(Value::Array(list)) => {
                list.iter()
                    .any(|a| a.as_str() == Some(self.client_id.as_str()))
                    && list
                        .iter()
                        .all(|a| a.as_str() == Some(self.client_id.as_str()))
            }
            _ => false,
        };
        if !aud_ok {
            return Err("wrong audience");
        }
        let now = Utc::now().timestamp();
        let leeway = i64::try_from(self.leeway.as_secs()).unwrap_or(0);
        let iat = claims.get("iat").and_then(Value::as_i64).ok_or("no iat")?;
        if iat > now + leeway
            || iat < now - leeway - i64::try_from(MAX_ID_TOKEN_AGE.as_secs()).unwrap_or(600)
        {
            return Err("iat out of range");
        }
        if let Some(exp) = claims.get("exp") {
            if exp.as_i64().is_none_or(|exp| exp + leeway <= now) {
                return Err("expired");
            }
        }
        if claims
            .get("jti")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            return Err("no jti");
        }
        let event_ok = claims
            .get("events")
            .and_then(Value::as_object)
            .and_then(|e| e.get(BACKCHANNEL_LOGOUT_EVENT))
            .is_some_and(Value::is_object);
        if !event_ok {
            return Err("no back-channel logout event");
        }
        if claims.contains_key("nonce") {
            return Err("a logout token must not carry a nonce");
        }
        let sub = claims
            .get("sub")
            .and_then(Value::as_str)
            .map(str::to_string);
        let sid = claims
            .get("sid")
            .and_then(Value::as_str)
            .map(str::to_string);
        if sub.is_none() && sid.is_none() {
            return Err("neither sub nor sid");
        }
        Ok((sub, sid))
    }
}

/// Fetches the discovery document of `issuer` (its `issuer` must be the same string) and
/// the JWKS it names.
pub(crate) async fn discover<'c, C>(http: &'c C, issuer: &str) -> Result<Metadata, String>
where
    C: openidconnect::AsyncHttpClient<'c>,
{
    let issuer = IssuerUrl::new(issuer.to_string()).map_err(|e| e.to_string())?;
    Metadata::discover_async(issuer, http)
        .await
        .map_err(|e| match e {
            openidconnect::DiscoveryError::Validation(msg) => msg,
            openidconnect::DiscoveryError::Request(e) => e.to_string(),
            openidconnect::DiscoveryError::Response(status, _, msg) => format!("{status}: {msg}"),
            openidconnect::DiscoveryError::Parse(e) => format!("invalid document: {e}"),
            other => other.to_string(),
        })
}

/// What the person is told about a refused ID token: enough to know it was the provider's
/// answer, nothing of its content.
fn describe(e: &ClaimsVerificationError) -> &'static str {
    match e {
        ClaimsVerificationError::Expired(_) => {
            "the ID token has expired or was issued at the wrong time"
        }
        ClaimsVerificationError::InvalidAudience(_) => "the ID token was issued to another party",
        ClaimsVerificationError::InvalidIssuer(_) => "the ID token comes from another issuer",
        ClaimsVerificationError::InvalidNonce(_) => "the ID token does not belong to this sign-in",
        ClaimsVerificationError::SignatureVerification(_) => {
            "the ID token's signature is not valid"
        }
        _ => "the ID token is not valid",
    }
}

/// Whether `raw` is three dot-separated parts of canonical unpadded base64url: the strict
/// decoder refuses padding, other alphabets and non-zero trailing bits.
fn is_canonical_jws(raw: &str) -> bool {
    let mut parts = raw.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    [h, p, s]
        .iter()
        .all(|part| !part.is_empty() && URL_SAFE_NO_PAD.decode(part).is_ok())
}

/// Whether the JOSE header of a compact JWS names a key.
fn token_has_kid(raw: &str) -> bool {
    raw.split('.')
        .next()
        .and_then(|h| URL_SAFE_NO_PAD.decode(h).ok())
        .and_then(|h| serde_json::from_slice::<JoseHeader>(&h).ok())
        .is_some_and(|h| h.kid.is_some())
}

fn constant_time_eq(a: &str, b: &str) -> bool {
    use subtle::ConstantTimeEq;
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

#[derive(Deserialize)]
struct JoseHeader {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    typ: Option<String>,
    #[serde(default)]
    crit: Option<Value>,
}

/// A compact JWS split into its parts, nothing trusted yet.
struct UnverifiedJwt<'a> {
    header: JoseHeader,
    claims: Map<String, Value>,
    signing_input: &'a str,
    signature: Vec<u8>,
}

impl<'a> UnverifiedJwt<'a> {
    fn parse(raw: &'a str) -> Result<Self, &'static str> {
        if raw.len() > 16 * 1024 {
            return Err("token too large");
        }
        let mut parts = raw.split('.');
        let (Some(h), Some(p), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err("not a compact JWS");
        };
        let header: JoseHeader = URL_SAFE_NO_PAD
            .decode(h)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or("bad header")?;
        if header.crit.is_some() {
            return Err("critical header parameters are not supported");
        }
        let claims: Map<String, Value> = URL_SAFE_NO_PAD
            .decode(p)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or("bad claims")?;
        let signature = URL_SAFE_NO_PAD
            .decode(s)
            .map_err(|_| "bad signature encoding")?;
        Ok(Self {
            header,
            claims,
            signing_input: &raw[..h.len() + 1 + p.len()],
            signature,
        })
    }

    /// Checks the signature with the keys named by `kid`, or, without one, with each key
    /// in turn (a JWKS of several keys and a token without `kid`).
    fn verify(
        &self,
        keys: &Jwks,
        kid: Option<&JsonWebKeyId>,
        alg: &CoreJwsSigningAlgorithm,
    ) -> Result<(), SignatureVerificationError> {
        let mut candidates = keys
            .keys()
            .iter()
            .filter(|k| kid.is_none_or(|kid| k.key_id() == Some(kid)))
            .peekable();
        if candidates.peek().is_none() {
            return Err(SignatureVerificationError::NoMatchingKey);
        }
        if candidates.any(|k| {
            k.verify_signature(alg, self.signing_input.as_bytes(), &self.signature)
                .is_ok()
        }) {
            Ok(())
        } else {
            Err(SignatureVerificationError::CryptoError(
                "bad signature".into(),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_canonical_base64url_is_a_jws() {
        let h = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256"}"#);
        let p = URL_SAFE_NO_PAD.encode(br#"{"iss":"x"}"#);
        // One byte of signature: two characters, the second with four unused bits.
        assert!(is_canonical_jws(&format!("{h}.{p}.QA")));
        for bad in ["QB", "QP", "QA==", "Q+", ""] {
            assert!(!is_canonical_jws(&format!("{h}.{p}.{bad}")), "{bad}");
        }
        assert!(!is_canonical_jws(&format!("{h}.{p}")));
        assert!(!is_canonical_jws(&format!("{h}.{p}.QA.QA")));
    }

    #[test]
    fn splits_compact_jws() {
        let h = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","kid":"k1"}"#);
        let p = URL_SAFE_NO_PAD.encode(br#"{"iss":"x"}"#);
        let raw = format!("{h}.{p}.c2ln");
        let jwt = UnverifiedJwt::parse(&raw).unwrap();
        assert_eq!(jwt.header.alg, "RS256");
        assert_eq!(jwt.header.kid.as_deref(), Some("k1"));
        assert_eq!(jwt.claims["iss"], "x");
        assert_eq!(jwt.signature, b"sig");
        assert_eq!(jwt.signing_input, format!("{h}.{p}"));
    }

    #[test]
    fn refuses_malformed_jws() {
        let h = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256"}"#);
        let crit = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","crit":["x"]}"#);
        let p = URL_SAFE_NO_PAD.encode(br#"{"iss":"x"}"#);
        for raw in [
            String::new(),
            "a.b".to_string(),
            format!("{h}.{p}.sig.extra"),
            format!("{h}.!!.sig"),
            format!("{crit}.{p}.c2ln"),
            format!("{h}.{}.c2ln", URL_SAFE_NO_PAD.encode(b"[1]")),
            "x".repeat(20_000),
        ] {
            assert!(UnverifiedJwt::parse(&raw).is_err(), "{raw:.40}");
        }
    }
}
