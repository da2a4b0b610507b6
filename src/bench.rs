//! Hooks for the benches (`benches/callback.rs`): the callback's own work, without the
//! network. Not part of the API: hidden (`#[doc(hidden)]`), and free to change. Nothing
//! here needs the development provider, so it costs a production build no dependency.

use bytes::Bytes;
use http::{HeaderMap, Response};

use crate::error::{FlowError, ProviderError};
use crate::flow::callback;
use crate::provider::oidc::NonceCheck;
use crate::LoginLayer;

/// Answers a callback request (`headers` with the pending-login cookie, `query` as the
/// provider sent it) exactly as the layer does, except that `token_response` is taken as
/// the token endpoint's answer instead of asking it: parameters, pending cookie, state and
/// issuer checks, token checks, ID token verification (keys from the cache), session
/// creation and storage, cookies. A layer without a userinfo endpoint does no network
/// call at all here (once its key cache is filled).
pub async fn callback_with_token_response(
    layer: &LoginLayer,
    headers: &HeaderMap,
    query: &str,
    token_response: Bytes,
) -> Response<Bytes> {
    callback::answer(
        layer.shared(),
        headers,
        query,
        |_code, _verifier| async move {
            serde_json::from_slice(&token_response)
                .map_err(|_| FlowError::ProviderFailed(ProviderError::InvalidAnswer))
        },
    )
    .await
}

/// Verifies an ID token as the callback does (signature with the cached keys, claims,
/// `nonce`) and returns its subject.
pub async fn verify_id_token(layer: &LoginLayer, raw: &str, nonce: &str) -> Result<String, String> {
    let inner = layer.shared();
    let oidc = inner
        .provider
        .oidc
        .as_ref()
        .ok_or("not an OpenID Connect layer")?;
    oidc.verify_id_token(&inner.provider.http, raw, NonceCheck::Equal(nonce))
        .await
        .map(|v| v.subject)
        .map_err(|e| e.to_string())
}

/// Opens a sealed pending-login cookie as the callback does: its JSON, or `None`.
pub fn open_pending_cookie(layer: &LoginLayer, name: &str, sealed: &str) -> Option<String> {
    layer.shared().cookies.open_pending(name, sealed)
}

/// A new session id, a cookie value as a login makes it.
pub fn new_session_id() -> String {
    crate::session::SessionId::generate().as_str().to_owned()
}

/// The store key of the session id `cookie_value`.
pub fn session_key(cookie_value: &str) -> crate::SessionKey {
    crate::SessionKey::for_cookie_value(cookie_value)
}

/// A session as a login makes it for the session id `cookie_value`, from its fields as
/// JSON with the tokens in the clear (`access_token`, `refresh_token`, `id_token`, and the
/// other fields of the stored form): opened, and sealed under the id's key when a store
/// first serializes it.
pub fn session(
    cookie_value: &str,
    fields: serde_json::Value,
) -> Result<crate::Session, serde_json::Error> {
    crate::session::from_plain_json(
        fields,
        crate::session::SealKey::for_cookie_value(cookie_value),
    )
}

/// Opens a session read from a store as the layer does when its cache misses: the seal
/// key derived from `cookie_value`, then the tokens decrypted. Whether they opened.
pub fn open_session(session: &crate::Session, cookie_value: &str) -> bool {
    session
        .open(&crate::session::SealKey::for_cookie_value(cookie_value))
        .is_ok()
}

/// The access token of an opened session, for tests that check what a store gave back.
pub fn access_token(session: &crate::Session) -> Option<&str> {
    session.access_token()
}
