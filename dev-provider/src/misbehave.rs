//! The ways the provider's ID tokens and logout tokens can misbehave on purpose, after the
//! negative cases of the OpenID Foundation's relying party conformance tests.

use serde_json::{json, Map, Value};

use super::keys::Signing;
use super::{random_token, WRONG_ISSUER};

/// The audience, authorized party or subject that is not the client or user in question.
pub(super) const SOMEONE_ELSE: &str = "someone-else";
/// The back-channel logout event (OpenID Connect Back-Channel Logout 1.0 section 2.4).
pub(super) const BACKCHANNEL_LOGOUT_EVENT: &str =
    "http://schemas.openid.net/event/backchannel-logout";
/// The event sent with [`LogoutTokenMisbehavior::WrongEvent`].
pub(super) const OTHER_EVENT: &str = "http://schemas.openid.net/event/other";

/// How the ID token of the `authorization_code` grant is made; see
/// [`DevProvider::set_id_token_behavior`](super::DevProvider::set_id_token_behavior).
///
/// Every variant but [`IdTokenBehavior::Normal`] and [`IdTokenBehavior::NoKidSingleKey`]
/// yields an ID token that a correct relying party must reject
/// ([`IdTokenBehavior::NoKidMultipleKeys`]: reject, or try every key). Only ID tokens are
/// affected: the access and refresh tokens of the response stay valid.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum IdTokenBehavior {
    /// A correct ID token: RS256 with the active key and its `kid`.
    #[default]
    Normal,
    /// `iss` is another issuer (`https://wrong-issuer.example`).
    WrongIss,
    /// No `sub` claim.
    MissingSub,
    /// `aud` is `"someone-else"` (and `azp` is left out).
    WrongAud,
    /// No `aud` claim (and no `azp`).
    MissingAud,
    /// `aud` is `[client_id, "someone-else"]` and there is no `azp`.
    ExtraAudNoAzp,
    /// `aud` contains the client, but `azp` is `"someone-else"`.
    AzpMismatch,
    /// No `iat` claim.
    MissingIat,
    /// `exp` is ten minutes in the past (`iat` one lifetime before it).
    Expired,
    /// `iat` is one hour in the future (`exp` one lifetime after it).
    IatInFuture,
    /// A valid token without `kid` in the header, while `/jwks` serves the active key only.
    /// A correct relying party must **accept** it (OpenID Connect Core section 10.1).
    NoKidSingleKey,
    /// A valid token without `kid` in the header, while `/jwks` serves all three embedded
    /// rotation keys. The relying party may reject it or try every key.
    NoKidMultipleKeys,
    /// Header `alg: none` and an empty signature.
    AlgNone,
    /// An RS256 token (with the right `kid`) whose signature bytes are corrupted.
    BadRs256Signature,
    /// Header `alg: HS256`, the MAC keyed with the client secret (the empty string for a
    /// public client) and no `kid`.
    Hs256,
    /// Header `alg: ES256` (with the active key's `kid`) and a random 64-byte signature.
    Es256BadSignature,
    /// `nonce` is not the one of the authorization request (present even if the request had
    /// none).
    WrongNonce,
    /// No `nonce` claim, even if the authorization request had one.
    MissingNonce,
    /// RS256 signed with a key that `/jwks` never publishes, under an unknown `kid`
    /// (`dev-rsa-unpublished`): even a JWKS re-fetch cannot verify it.
    UnknownKid,
}

/// How the ID token of the `refresh_token` grant is made; see
/// [`DevProvider::set_refresh_id_token_behavior`](super::DevProvider::set_refresh_id_token_behavior).
///
/// A refreshed ID token must keep `iss`, `sub` and `aud`, and its `nonce` must be absent or
/// unchanged (OpenID Connect Core section 12.2): every variant but
/// [`RefreshIdTokenBehavior::Normal`] and [`RefreshIdTokenBehavior::OmitIdToken`] must be
/// rejected.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub enum RefreshIdTokenBehavior {
    /// A new ID token with the same `iss`, `sub`, `aud`, `sid` and `auth_time`, and no `nonce`.
    #[default]
    Normal,
    /// `iss` is another issuer (`https://wrong-issuer.example`); correctly signed.
    OtherIss,
    /// `sub` is `"someone-else"`; correctly signed.
    OtherSub,
    /// `aud` is `"someone-else"`; correctly signed.
    OtherAud,
    /// Carries this `nonce` (a relying party must reject a nonce other than the original one).
    WithNonce(String),
    /// The refresh response has no `id_token` (allowed by OpenID Connect Core section 12.2).
    OmitIdToken,
}

/// A defect to build into a back-channel logout token; see
/// [`DevProvider::backchannel_logout_with`](super::DevProvider::backchannel_logout_with) and
/// [`DevProvider::mint_logout_token`](super::DevProvider::mint_logout_token).
///
/// Every variant but [`LogoutTokenMisbehavior::Normal`] yields a logout token that a correct
/// relying party must reject (OpenID Connect Back-Channel Logout 1.0 section 2.6).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum LogoutTokenMisbehavior {
    /// A correct logout token: RS256 with the active key and its `kid`, `typ: logout+jwt`.
    #[default]
    Normal,
    /// Header `alg: none` and an empty signature.
    AlgNone,
    /// No `events` claim.
    NoEvents,
    /// `events` has another member (`http://schemas.openid.net/event/other`) instead of the
    /// back-channel logout event.
    WrongEvent,
    /// Carries a `nonce` claim, which logout tokens must not.
    WithNonce,
    /// `aud` is `"someone-else"`.
    WrongAud,
    /// `iss` is another issuer (`https://wrong-issuer.example`).
    WrongIss,
    /// Header `alg: HS256`, the MAC keyed with the client secret (the empty string for a
    /// public client).
    Hs256,
    /// Neither `sub` nor `sid`, whatever was asked for.
    NoSubNoSid,
    /// `exp` ten minutes in the past (`iat` two minutes before it).
    Expired,
    /// RS256 with the right `kid`, its signature bytes corrupted.
    BadSignature,
}

/// Alters the claims of a correct ID token (`iss`, `sub`, `aud`, `azp`, `exp`, `iat`, and
/// `nonce` when the request had one) as `behavior` says, and returns how to sign it.
pub(super) fn apply_id_token_behavior(
    behavior: IdTokenBehavior,
    claims: &mut Map<String, Value>,
    now: u64,
    lifetime: u64,
) -> Signing {
    match behavior {
        IdTokenBehavior::Normal => {}
        IdTokenBehavior::WrongIss => {
            claims.insert("iss".into(), json!(WRONG_ISSUER));
        }
        IdTokenBehavior::MissingSub => {
            claims.remove("sub");
        }
        IdTokenBehavior::WrongAud => {
            claims.insert("aud".into(), json!(SOMEONE_ELSE));
            claims.remove("azp");
        }
        IdTokenBehavior::MissingAud => {
            claims.remove("aud");
            claims.remove("azp");
        }
        IdTokenBehavior::ExtraAudNoAzp => {
            let client = claims.get("aud").cloned().unwrap_or(Value::Null);
            claims.insert("aud".into(), json!([client, SOMEONE_ELSE]));
            claims.remove("azp");
        }
        IdTokenBehavior::AzpMismatch => {
            claims.insert("azp".into(), json!(SOMEONE_ELSE));
        }
        IdTokenBehavior::MissingIat => {
            claims.remove("iat");
        }
        IdTokenBehavior::Expired => {
            let exp = now.saturating_sub(10 * 60);
            claims.insert("exp".into(), json!(exp));
            claims.insert("iat".into(), json!(exp.saturating_sub(lifetime)));
        }
        IdTokenBehavior::IatInFuture => {
            let iat = now + 60 * 60;
            claims.insert("iat".into(), json!(iat));
            claims.insert("exp".into(), json!(iat + lifetime));
        }
        IdTokenBehavior::NoKidSingleKey | IdTokenBehavior::NoKidMultipleKeys => {
            return Signing::Rs256NoKid
        }
        IdTokenBehavior::AlgNone => return Signing::None,
        IdTokenBehavior::BadRs256Signature => return Signing::Rs256Corrupted,
        IdTokenBehavior::Hs256 => return Signing::Hs256,
        IdTokenBehavior::Es256BadSignature => return Signing::Es256Garbage,
        IdTokenBehavior::WrongNonce => {
            claims.insert("nonce".into(), json!(format!("wrong-{}", random_token())));
        }
        IdTokenBehavior::MissingNonce => {
            claims.remove("nonce");
        }
        IdTokenBehavior::UnknownKid => return Signing::Rs256Unpublished,
    }
    Signing::Rs256
}

/// Alters the claims of a correct refreshed ID token as `behavior` says. `false`: send no
/// ID token.
pub(super) fn apply_refresh_id_token_behavior(
    behavior: &RefreshIdTokenBehavior,
    claims: &mut Map<String, Value>,
) -> bool {
    match behavior {
        RefreshIdTokenBehavior::Normal => {}
        RefreshIdTokenBehavior::OtherIss => {
            claims.insert("iss".into(), json!(WRONG_ISSUER));
        }
        RefreshIdTokenBehavior::OtherSub => {
            claims.insert("sub".into(), json!(SOMEONE_ELSE));
        }
        RefreshIdTokenBehavior::OtherAud => {
            claims.insert("aud".into(), json!(SOMEONE_ELSE));
        }
        RefreshIdTokenBehavior::WithNonce(nonce) => {
            claims.insert("nonce".into(), json!(nonce));
        }
        RefreshIdTokenBehavior::OmitIdToken => return false,
    }
    true
}

/// Alters the claims of a correct logout token as `misbehavior` says, and returns how to
/// sign it.
pub(super) fn apply_logout_token_misbehavior(
    misbehavior: LogoutTokenMisbehavior,
    claims: &mut Map<String, Value>,
    now: u64,
) -> Signing {
    match misbehavior {
        LogoutTokenMisbehavior::Normal => {}
        LogoutTokenMisbehavior::AlgNone => return Signing::None,
        LogoutTokenMisbehavior::NoEvents => {
            claims.remove("events");
        }
        LogoutTokenMisbehavior::WrongEvent => {
            claims.insert("events".into(), json!({ OTHER_EVENT: {} }));
        }
        LogoutTokenMisbehavior::WithNonce => {
            claims.insert("nonce".into(), json!(random_token()));
        }
        LogoutTokenMisbehavior::WrongAud => {
            claims.insert("aud".into(), json!(SOMEONE_ELSE));
        }
        LogoutTokenMisbehavior::WrongIss => {
            claims.insert("iss".into(), json!(WRONG_ISSUER));
        }
        LogoutTokenMisbehavior::Hs256 => return Signing::Hs256,
        LogoutTokenMisbehavior::NoSubNoSid => {
            claims.remove("sub");
            claims.remove("sid");
        }
        LogoutTokenMisbehavior::Expired => {
            let exp = now.saturating_sub(10 * 60);
            claims.insert("exp".into(), json!(exp));
            claims.insert("iat".into(), json!(exp.saturating_sub(2 * 60)));
        }
        LogoutTokenMisbehavior::BadSignature => return Signing::Rs256Corrupted,
    }
    Signing::Rs256
}
