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

use crate::error::{DiscoveryError, FlowError, IdTokenError, ProviderError};
use crate::provider::http_client::{Backchannel, BackchannelError};
mod jwk;

use jwk::Jwks;

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

/// The least time between the end of one JWKS fetch forced by an unknown key and the start
/// of the next, whether it worked or failed. Anyone can force one (a back-channel logout
/// token under a made-up `kid` is enough), so this bounds what strangers make the layer
/// send to the provider. Keys fetched at build time (discovery) do not count: a key rotated
/// just after start-up is still picked up at once.
const MIN_REFETCH_INTERVAL: Duration = Duration::from_secs(10);

/// How old an ID token may be when it arrives: it comes straight from the token endpoint.
const MAX_ID_TOKEN_AGE: Duration = Duration::from_secs(10 * 60);

/// The largest clock leeway the configuration accepts.
pub(crate) const MAX_LEEWAY: Duration = Duration::from_secs(5 * 60);

const BACKCHANNEL_LOGOUT_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

/// What a forced JWKS re-fetch gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refetch {
    /// New keys (fetched now, or by another caller since).
    New,
    /// No fetch (too soon after the last one, which worked): the keys are what they are.
    Unchanged,
    /// The JWKS could not be fetched, now or at the last try, too recent to try again; or
    /// another caller's fetch is running and its result is not there yet.
    Unavailable,
}

/// Whether a forced JWKS fetch may start: the rate limit, kept apart from the network so
/// that it is decided under a lock held for no await.
#[derive(Debug, Default)]
struct FetchGate {
    /// When the last forced fetch ended, and whether it failed.
    last: Option<(Instant, bool)>,
    /// A fetch is running: nobody waits for it, and nobody starts another.
    running: bool,
}

/// What [`FetchGate::begin`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Gate {
    /// Fetch now (the gate is marked running until [`FetchGate::end`]).
    Fetch,
    /// No fetch: answer this.
    Skip(Refetch),
}

impl FetchGate {
    fn begin(&mut self, now: Instant) -> Gate {
        if self.running {
            return Gate::Skip(Refetch::Unavailable);
        }
        if let Some((at, failed)) = self.last {
            if now.saturating_duration_since(at) < MIN_REFETCH_INTERVAL {
                return Gate::Skip(if failed {
                    Refetch::Unavailable
                } else {
                    Refetch::Unchanged
                });
            }
        }
        self.running = true;
        Gate::Fetch
    }

    fn end(&mut self, now: Instant, failed: bool) {
        self.running = false;
        self.last = Some((now, failed));
    }
}

/// Ends a running fetch when dropped: a fetch whose request went away (the client hung
/// up) counts as a failed one, rather than leaving the gate running for ever.
struct RunningFetch<'a> {
    gate: &'a std::sync::Mutex<FetchGate>,
    failed: bool,
}

impl Drop for RunningFetch<'_> {
    fn drop(&mut self) {
        self.gate
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .end(Instant::now(), self.failed);
    }
}

/// The longest `jti` a logout token may carry: it is hashed, never stored as it is, but
/// there is no reason to hash a kilobyte of it.
const MAX_JTI_LEN: usize = 256;

/// A back-channel logout token that passed every check.
#[derive(Debug)]
pub(crate) struct LogoutToken {
    /// The user (`sub` claim).
    pub(crate) subject: Option<String>,
    /// The provider's session (`sid` claim).
    pub(crate) sid: Option<String>,
    /// The token's id, to refuse it a second time.
    pub(crate) jti: String,
    /// The last second (Unix time, this clock) at which this token would still pass the
    /// checks: `iat` + leeway + the largest age, or `exp` + leeway, whichever comes first.
    pub(crate) accepted_until: i64,
}

impl LogoutToken {
    /// How long to remember the `jti` from `now` so that a replay is refused for as long
    /// as the token is otherwise accepted, plus `margin` for instances whose clocks
    /// disagree with this one's.
    pub(crate) fn replay_window(&self, now: i64, margin: Duration) -> Duration {
        let left = self
            .accepted_until
            .saturating_sub(now)
            .saturating_add(1)
            .max(1);
        Duration::from_secs(u64::try_from(left).unwrap_or(1)) + margin
    }
}

/// What is wrong with a back-channel logout token: said in the log and in the
/// `error_description` of the 400 answer (the provider's, not a person's, to read).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum LogoutTokenError {
    /// The token is larger than 16 KiB.
    #[error("token too large")]
    TooLarge,
    /// Not three dot-separated parts.
    #[error("not a compact JWS")]
    NotCompactJws,
    /// The JOSE header is not base64url JSON.
    #[error("bad header")]
    BadHeader,
    /// The header has `crit`, which the layer does not support.
    #[error("critical header parameters are not supported")]
    CriticalHeader,
    /// The claims are not a base64url JSON object.
    #[error("bad claims")]
    BadClaims,
    /// The signature is not base64url.
    #[error("bad signature encoding")]
    BadSignatureEncoding,
    /// `typ` is neither `logout+jwt` nor `JWT`.
    #[error("unexpected token type")]
    UnexpectedType,
    /// `alg` names no known algorithm.
    #[error("unknown algorithm")]
    UnknownAlgorithm,
    /// `alg` is not one the configuration allows.
    #[error("algorithm not allowed")]
    AlgorithmNotAllowed,
    /// The signature does not verify with the provider's keys.
    #[error("bad signature")]
    BadSignature,
    /// `iss` is not the configured issuer.
    #[error("wrong issuer")]
    WrongIssuer,
    /// `aud` is not (only) this client.
    #[error("wrong audience")]
    WrongAudience,
    /// No `iat`.
    #[error("no iat")]
    NoIat,
    /// `iat` is in the future or too old.
    #[error("iat out of range")]
    IatOutOfRange,
    /// `exp` has passed.
    #[error("expired")]
    Expired,
    /// `jti` is longer than the layer records.
    #[error("jti too long")]
    JtiTooLong,
    /// No `jti`.
    #[error("no jti")]
    NoJti,
    /// `events` has no back-channel logout event.
    #[error("no back-channel logout event")]
    NoEvent,
    /// The token carries a `nonce` (OIDC Back-Channel Logout 2.4).
    #[error("a logout token must not carry a nonce")]
    Nonce,
    /// Neither `sub` nor `sid`.
    #[error("neither sub nor sid")]
    NoSubject,
}

/// Why a logout token was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LogoutRefusal {
    /// The token is not valid (400): what is wrong with it, for the log and the answer.
    Invalid(LogoutTokenError),
    /// The keys that might verify it cannot be had now (a fetch failed or is running):
    /// not the token's fault (503).
    KeysUnavailable,
}

impl From<LogoutTokenError> for LogoutRefusal {
    fn from(why: LogoutTokenError) -> Self {
        LogoutRefusal::Invalid(why)
    }
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
    /// The rate limit of forced fetches. A plain mutex, never held across an await: a
    /// request that cannot fetch now answers at once instead of queueing for the network.
    fetch_gate: std::sync::Mutex<FetchGate>,
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
            fetch_gate: std::sync::Mutex::new(FetchGate::default()),
            algs,
            leeway,
            end_session_endpoint,
        }
    }

    /// Behaves as if the last forced JWKS fetch failed just now, so that the next ones
    /// are rate-limited: for the fuzzing entry points, which must not touch the network.
    #[cfg(any(test, fuzzing))]
    pub(crate) fn assume_keys_unavailable(&self) {
        self.fetch_gate
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .end(Instant::now(), true);
    }

    fn current_keys(&self) -> (Arc<Jwks>, u64) {
        // A poisoned lock only means a panic elsewhere while swapping an Arc: the value
        // inside is still whole.
        let keys = self.keys.read().unwrap_or_else(|e| e.into_inner());
        (Arc::clone(&keys.set), keys.generation)
    }

    /// Fetches the JWKS again, unless another caller did since `seen` (then its result is
    /// used), another fetch is running (then this one does not wait for it), or the last
    /// forced fetch ended too recently, whether it worked or not.
    async fn refetch_keys(&self, http: &Backchannel, seen: u64) -> Refetch {
        {
            let mut gate = self.fetch_gate.lock().unwrap_or_else(|e| e.into_inner());
            if self.current_keys().1 != seen {
                return Refetch::New;
            }
            if let Gate::Skip(answer) = gate.begin(Instant::now()) {
                tracing::debug!("JWKS re-fetch skipped: one is running or ended too recently");
                return answer;
            }
        }
        let mut running = RunningFetch {
            gate: &self.fetch_gate,
            failed: true,
        };
        match JsonWebKeySet::fetch_async(&self.jwks_uri, http).await {
            Ok(set) => {
                let mut keys = self.keys.write().unwrap_or_else(|e| e.into_inner());
                keys.set = Arc::new(set);
                keys.generation += 1;
                running.failed = false;
                tracing::info!("fetched the provider's signing keys (JWKS)");
                Refetch::New
            }
            Err(e) => {
                // At most once per interval, as the fetches are.
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
            return Err(FlowError::IdToken(IdTokenError::Malformed));
        }
        let token: IdToken = raw
            .parse()
            .map_err(|_| FlowError::IdToken(IdTokenError::Malformed))?;
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
                    Refetch::Unavailable => {
                        return Err(FlowError::ProviderFailed(ProviderError::KeysUnavailable))
                    }
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
                return Err(FlowError::IdToken(IdTokenError::Audience));
            }
            None if audiences.len() > 1 => {
                tracing::warn!("ID token refused: several audiences and no azp");
                return Err(FlowError::IdToken(IdTokenError::Audience));
            }
            _ => {}
        }

        let subject = claims.subject().as_str().to_string();
        if subject.is_empty() || subject.len() > 255 {
            return Err(FlowError::IdToken(IdTokenError::NoSubject));
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
    /// turn: OpenID Connect Core 10.1 lets a relying party reject or try them all, and trying them keeps
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
    /// returns what it names, its `jti` and until when it would be accepted.
    pub(crate) async fn verify_logout_token(
        &self,
        http: &Backchannel,
        raw: &str,
    ) -> Result<LogoutToken, LogoutRefusal> {
        self.check_logout_token(http, raw, Utc::now().timestamp())
            .await
    }

    async fn check_logout_token(
        &self,
        http: &Backchannel,
        raw: &str,
        now: i64,
    ) -> Result<LogoutToken, LogoutRefusal> {
        let jwt = UnverifiedJwt::parse(raw)?;
        if let Some(typ) = &jwt.header.typ {
            if !typ.eq_ignore_ascii_case("logout+jwt") && !typ.eq_ignore_ascii_case("JWT") {
                return Err(LogoutTokenError::UnexpectedType.into());
            }
        }
        let alg: CoreJwsSigningAlgorithm =
            serde_json::from_value(Value::String(jwt.header.alg.clone()))
                .map_err(|_| LogoutRefusal::Invalid(LogoutTokenError::UnknownAlgorithm))?;
        if !self.algs.contains(&alg) {
            return Err(LogoutTokenError::AlgorithmNotAllowed.into());
        }
        let kid = jwt.header.kid.clone().map(JsonWebKeyId::new);
        let (keys, generation) = self.current_keys();
        let verified = match jwt.verify(&keys, kid.as_ref(), &alg) {
            Err(SignatureVerificationError::NoMatchingKey) => {
                match self.refetch_keys(http, generation).await {
                    Refetch::New => jwt.verify(&self.current_keys().0, kid.as_ref(), &alg),
                    Refetch::Unchanged => Err(SignatureVerificationError::NoMatchingKey),
                    // Perhaps a good token under a rotated key: a 5xx lets the provider
                    // send it again once the keys can be had.
                    Refetch::Unavailable => return Err(LogoutRefusal::KeysUnavailable),
                }
            }
            other => other,
        };
        verified.map_err(|_| LogoutRefusal::Invalid(LogoutTokenError::BadSignature))?;

        let claims = &jwt.claims;
        if claims.get("iss").and_then(Value::as_str) != Some(self.issuer.as_str()) {
            return Err(LogoutTokenError::WrongIssuer.into());
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
            return Err(LogoutTokenError::WrongAudience.into());
        }
        let leeway = i64::try_from(self.leeway.as_secs()).unwrap_or(0);
        let max_age = i64::try_from(MAX_ID_TOKEN_AGE.as_secs()).unwrap_or(600);
        let iat = claims
            .get("iat")
            .and_then(Value::as_i64)
            .ok_or(LogoutRefusal::Invalid(LogoutTokenError::NoIat))?;
        if iat > now.saturating_add(leeway)
            || iat < now.saturating_sub(leeway).saturating_sub(max_age)
        {
            return Err(LogoutTokenError::IatOutOfRange.into());
        }
        // The last second at which the checks above and below still pass: a replay must be
        // refused until then, and need not be after.
        let mut accepted_until = iat.saturating_add(leeway).saturating_add(max_age);
        if let Some(exp) = claims.get("exp") {
            match exp.as_i64() {
                Some(exp) if exp.saturating_add(leeway) > now => {
                    accepted_until = accepted_until.min(exp.saturating_add(leeway) - 1);
                }
                _ => return Err(LogoutTokenError::Expired.into()),
            }
        }
        let jti = match claims.get("jti").and_then(Value::as_str) {
            Some(jti) if !jti.is_empty() && jti.len() <= MAX_JTI_LEN => jti.to_string(),
            Some(jti) if !jti.is_empty() => return Err(LogoutTokenError::JtiTooLong.into()),
            _ => return Err(LogoutTokenError::NoJti.into()),
        };
        let event_ok = claims
            .get("events")
            .and_then(Value::as_object)
            .and_then(|e| e.get(BACKCHANNEL_LOGOUT_EVENT))
            .is_some_and(Value::is_object);
        if !event_ok {
            return Err(LogoutTokenError::NoEvent.into());
        }
        if claims.contains_key("nonce") {
            return Err(LogoutTokenError::Nonce.into());
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
            return Err(LogoutTokenError::NoSubject.into());
        }
        Ok(LogoutToken {
            subject: sub,
            sid,
            jti,
            accepted_until,
        })
    }
}

/// Fetches the discovery document of `issuer` (its `issuer` must be the same string) and
/// the JWKS it names.
///
/// The document is fetched and read here rather than by `openidconnect`'s
/// `discover_async`, which does both fetches in one call: so that a failure names the URL
/// that failed and, for another issuer, both issuers, which is what a person needs to fix
/// the configuration. The key set is still fetched and read by `openidconnect`.
pub(crate) async fn discover<'c, C>(http: &'c C, issuer: &str) -> Result<Metadata, DiscoveryError>
where
    C: openidconnect::AsyncHttpClient<'c, Error = BackchannelError>,
{
    let issuer_url = IssuerUrl::new(issuer.to_string()).map_err(DiscoveryError::InvalidIssuer)?;
    let url = issuer_url
        .join(".well-known/openid-configuration")
        .map_err(DiscoveryError::InvalidIssuer)?;
    let response = fetch(http, &url).await?;
    let metadata: Metadata =
        serde_json::from_slice(response.body()).map_err(|e| DiscoveryError::InvalidDocument {
            url: url.to_string(),
            source: Box::new(e),
        })?;
    if metadata.issuer() != &issuer_url {
        return Err(DiscoveryError::IssuerMismatch {
            configured: issuer.to_string(),
            discovered: metadata.issuer().to_string(),
        });
    }
    let jwks_url = metadata.jwks_uri().to_string();
    let jwks = CoreJsonWebKeySet::fetch_async(metadata.jwks_uri(), http)
        .await
        .map_err(|e| match e {
            openidconnect::DiscoveryError::Request(source) => DiscoveryError::Request {
                url: jwks_url.clone(),
                source: Box::new(source),
            },
            // The body is not kept: it is the provider's, of any size.
            openidconnect::DiscoveryError::Response(status, _, reason) => DiscoveryError::Status {
                url: jwks_url.clone(),
                status,
                reason,
            },
            openidconnect::DiscoveryError::Parse(e) => DiscoveryError::InvalidDocument {
                url: jwks_url.clone(),
                source: Box::new(e),
            },
            other => DiscoveryError::InvalidDocument {
                url: jwks_url.clone(),
                source: other.to_string().into(),
            },
        })?;
    Ok(metadata.set_jwks(jwks))
}

/// One GET of the discovery document: a `200` with a JSON body, or the error that names
/// `url`.
async fn fetch<'c, C>(http: &'c C, url: &url::Url) -> Result<oauth2::HttpResponse, DiscoveryError>
where
    C: openidconnect::AsyncHttpClient<'c, Error = BackchannelError>,
{
    let request = http::Request::get(url.as_str())
        .header(http::header::ACCEPT, "application/json")
        .body(Vec::new())
        .map_err(|e| DiscoveryError::InvalidDocument {
            url: url.to_string(),
            source: Box::new(e),
        })?;
    let response = http
        .call(request)
        .await
        .map_err(|source| DiscoveryError::Request {
            url: url.to_string(),
            source: Box::new(source),
        })?;
    if response.status() != http::StatusCode::OK {
        return Err(DiscoveryError::Status {
            url: url.to_string(),
            status: response.status(),
            reason: "expected 200 OK".to_string(),
        });
    }
    let content_type = response
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    // RFC 9110 8.3.1: the media type is case-insensitive and may have parameters.
    if let Some(content_type) = content_type {
        let essence = content_type.split(';').next().unwrap_or("").trim();
        if !essence.eq_ignore_ascii_case("application/json") {
            return Err(DiscoveryError::Status {
                url: url.to_string(),
                status: response.status(),
                reason: format!("expected application/json, got {essence}"),
            });
        }
    }
    Ok(response)
}

/// Which check a refused ID token failed.
fn describe(e: &ClaimsVerificationError) -> IdTokenError {
    match e {
        ClaimsVerificationError::Expired(_) => IdTokenError::Expired,
        ClaimsVerificationError::InvalidAudience(_) => IdTokenError::Audience,
        ClaimsVerificationError::InvalidIssuer(_) => IdTokenError::Issuer,
        ClaimsVerificationError::InvalidNonce(_) => IdTokenError::Nonce,
        ClaimsVerificationError::SignatureVerification(_) => IdTokenError::Signature,
        _ => IdTokenError::Invalid,
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
    fn parse(raw: &'a str) -> Result<Self, LogoutTokenError> {
        if raw.len() > 16 * 1024 {
            return Err(LogoutTokenError::TooLarge);
        }
        let mut parts = raw.split('.');
        let (Some(h), Some(p), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(LogoutTokenError::NotCompactJws);
        };
        let header: JoseHeader = URL_SAFE_NO_PAD
            .decode(h)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or(LogoutTokenError::BadHeader)?;
        if header.crit.is_some() {
            return Err(LogoutTokenError::CriticalHeader);
        }
        let claims: Map<String, Value> = URL_SAFE_NO_PAD
            .decode(p)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or(LogoutTokenError::BadClaims)?;
        let signature = URL_SAFE_NO_PAD
            .decode(s)
            .map_err(|_| LogoutTokenError::BadSignatureEncoding)?;
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
    fn forced_fetches_are_rate_limited_from_the_first_failures_included() {
        let t0 = Instant::now();
        let later = |s| t0 + Duration::from_secs(s);
        let mut gate = FetchGate::default();
        assert_eq!(gate.begin(t0), Gate::Fetch, "the first one goes");
        assert_eq!(
            gate.begin(t0),
            Gate::Skip(Refetch::Unavailable),
            "none beside a running one, and nobody waits for it"
        );
        gate.end(later(1), true);
        assert_eq!(gate.begin(later(2)), Gate::Skip(Refetch::Unavailable));
        assert_eq!(gate.begin(later(10)), Gate::Skip(Refetch::Unavailable));
        assert_eq!(
            gate.begin(later(11)),
            Gate::Fetch,
            "the window counts from the end"
        );
        gate.end(later(11), false);
        assert_eq!(gate.begin(later(12)), Gate::Skip(Refetch::Unchanged));
        assert_eq!(gate.begin(later(21)), Gate::Fetch);
    }

    #[test]
    fn a_dropped_fetch_counts_as_a_failed_one() {
        let gate = std::sync::Mutex::new(FetchGate::default());
        assert_eq!(gate.lock().unwrap().begin(Instant::now()), Gate::Fetch);
        drop(RunningFetch {
            gate: &gate,
            failed: true,
        });
        let mut gate = gate.into_inner().unwrap();
        assert!(!gate.running);
        assert_eq!(gate.begin(Instant::now()), Gate::Skip(Refetch::Unavailable));
    }

    #[test]
    fn the_replay_window_lasts_until_the_token_would_be_refused() {
        let token = |accepted_until| LogoutToken {
            subject: None,
            sid: None,
            jti: "j".into(),
            accepted_until,
        };
        let margin = Duration::from_secs(60);
        assert_eq!(
            token(1_000).replay_window(900, margin),
            Duration::from_secs(101 + 60)
        );
        // Never zero, even for a token in its last second or past it.
        assert_eq!(
            token(1_000).replay_window(1_000, Duration::ZERO),
            Duration::from_secs(1)
        );
        assert_eq!(
            token(1_000).replay_window(5_000, Duration::ZERO),
            Duration::from_secs(1)
        );
    }

    /// `accepted_until` is the verification's own bound: the token passes at that second
    /// and not one second later, by `iat` (no `exp`) and by `exp`.
    #[tokio::test]
    async fn accepted_until_is_the_last_second_the_checks_pass() {
        use tower_oauth2_login_dev_provider::keys::{key_ring, sign_jwt, Signing};
        const ISSUER: &str = "https://idp.example";
        let ring = key_ring().unwrap();
        let jwks: CoreJsonWebKeySet = serde_json::from_value(serde_json::json!({
            "keys": [ring.rotation_key(0).unwrap().jwk().clone()]
        }))
        .unwrap();
        let leeway = Duration::from_secs(30);
        let oidc = Oidc::new(
            IssuerUrl::new(ISSUER.into()).unwrap(),
            ClientId::new("c".into()),
            // A closed port, and the gate shut: no fetch from this test.
            JsonWebKeySetUrl::new("http://127.0.0.1:9/jwks".into()).unwrap(),
            Some(jwks),
            vec![CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256],
            leeway,
            None,
        );
        oidc.assume_keys_unavailable();
        let http = Backchannel::new(Duration::from_secs(1), Duration::from_secs(1), 1024).unwrap();
        let iat = 1_700_000_000_i64;
        let sign = |exp: Option<i64>| {
            let mut claims = serde_json::json!({
                "iss": ISSUER, "aud": "c", "iat": iat, "jti": "j-1", "sub": "alice",
                "events": {BACKCHANNEL_LOGOUT_EVENT: {}},
            });
            if let Some(exp) = exp {
                claims["exp"] = exp.into();
            }
            let Value::Object(claims) = claims else {
                unreachable!()
            };
            let key = ring.rotation_key(0).unwrap();
            sign_jwt(Some("logout+jwt"), &claims, Signing::Rs256, key, ring, b"").unwrap()
        };
        for (exp, until) in [
            (None, iat + 30 + 600),
            (Some(iat + 120), iat + 120 + 30 - 1),
        ] {
            let raw = sign(exp);
            let got = oidc.check_logout_token(&http, &raw, iat).await.unwrap();
            assert_eq!(got.accepted_until, until, "{exp:?}");
            assert_eq!(got.jti, "j-1");
            assert!(oidc.check_logout_token(&http, &raw, until).await.is_ok());
            assert_eq!(
                oidc.check_logout_token(&http, &raw, until + 1)
                    .await
                    .unwrap_err(),
                LogoutRefusal::Invalid(if exp.is_some() {
                    LogoutTokenError::Expired
                } else {
                    LogoutTokenError::IatOutOfRange
                })
            );
        }
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
