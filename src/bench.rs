//! Hooks for the benches (`benches/callback.rs`): the callback's own work, without the
//! network. Not part of the API: hidden, behind the feature `dev-provider` (never in
//! production builds), and free to change.

use bytes::Bytes;
use http::{HeaderMap, Response};

use crate::callback::{self, Exchange};
use crate::oidc::NonceCheck;
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
    callback::handle_with(
        layer.shared(),
        headers,
        query,
        Exchange::Recorded(token_response),
    )
    .await
}

/// Verifies an ID token as the callback does (signature with the cached keys, claims,
/// `nonce`) and returns its subject.
pub async fn verify_id_token(layer: &LoginLayer, raw: &str, nonce: &str) -> Result<String, String> {
    let inner = layer.shared();
    let oidc = inner.oidc.as_ref().ok_or("not an OpenID Connect layer")?;
    oidc.verify_id_token(&inner.backchannel, raw, NonceCheck::Equal(nonce))
        .await
        .map(|v| v.subject)
        .map_err(|e| e.to_string())
}

/// Opens a sealed pending-login cookie as the callback does: its JSON, or `None`.
pub fn open_pending_cookie(layer: &LoginLayer, name: &str, sealed: &str) -> Option<String> {
    layer.shared().cookies.open_pending(name, sealed)
}
