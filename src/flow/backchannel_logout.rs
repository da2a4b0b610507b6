//! Back-channel logout (OpenID Connect Back-Channel Logout 1.0): the provider says that a
//! user's session there ended, with a signed logout token; the matching sessions here end
//! too, and the token cannot be used twice.

use bytes::Bytes;
use http::{header, HeaderMap, Response, StatusCode};
use http_body_util::BodyExt;

use crate::context::Context;
use crate::error::{FlowError, ProviderError};
use crate::http::page;
use crate::provider::oidc::{LogoutRefusal, LogoutTokenError};
use crate::session::{OnceKey, SessionMatch};

/// The largest back-channel logout request body read.
const MAX_LOGOUT_BODY: usize = 64 * 1024;

/// How much longer than its own window a logout token's `jti` is remembered: instances
/// that share a store, with clocks up to this far apart, still refuse the replay.
const JTI_CLOCK_MARGIN: std::time::Duration = std::time::Duration::from_secs(60);

/// Answers `POST <back-channel logout path>` (OpenID Connect Back-Channel Logout 1.0): the
/// provider says a user's session there ended; the matching sessions here end too.
#[tracing::instrument(name = "oauth2_login.backchannel_logout", skip_all)]
pub(crate) async fn handle<B>(inner: &Context, headers: &HeaderMap, body: B) -> Response<Bytes>
where
    B: http_body::Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let Some(oidc) = &inner.provider.oidc else {
        return bad_logout_request(BadLogoutRequest::NotOidc);
    };
    let form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if !form {
        return bad_logout_request(BadLogoutRequest::NotAForm);
    }
    let Ok(collected) = http_body_util::Limited::new(body, MAX_LOGOUT_BODY)
        .collect()
        .await
    else {
        return bad_logout_request(BadLogoutRequest::Body);
    };
    let body = collected.to_bytes();
    let mut token = None;
    for (name, value) in url::form_urlencoded::parse(&body) {
        if name == "logout_token" {
            if token.is_some() {
                return bad_logout_request(BadLogoutRequest::RepeatedToken);
            }
            token = Some(value.into_owned());
        }
    }
    let Some(token) = token else {
        return bad_logout_request(BadLogoutRequest::MissingToken);
    };
    let token = match oidc.verify_logout_token(&inner.provider.http, &token).await {
        Ok(found) => found,
        Err(LogoutRefusal::Invalid(why)) => {
            tracing::warn!(reason = %why, "back-channel logout token refused");
            return bad_logout_request(BadLogoutRequest::Token(why));
        }
        Err(LogoutRefusal::KeysUnavailable) => {
            tracing::warn!(
                "back-channel logout token not checked: the provider's keys are unavailable"
            );
            return page::json(
                StatusCode::SERVICE_UNAVAILABLE,
                &serde_json::json!({
                    "error": "temporarily_unavailable",
                    "error_description": ProviderError::KeysUnavailable.to_string(),
                }),
            );
        }
    };

    // A token acts once: a replay inside its window would end the
    // sessions the user made since. Its `jti` is recorded only once its sessions are
    // deleted, so that a refusal as "already used" always means the logout took effect:
    // a failed delete records nothing, and the provider's retry goes through. Two copies
    // that race past the check both delete the same sessions, at the same moment.
    let once = OnceKey::logout_token(oidc.issuer.as_str(), &token.jti);
    match inner.store.is_remembered(&once).await {
        Ok(false) => {}
        Ok(true) => {
            tracing::warn!("back-channel logout token refused: already used");
            return bad_logout_request(BadLogoutRequest::AlreadyUsed);
        }
        Err(e) => {
            tracing::error!(error = %e, "could not check the logout token's jti");
            return FlowError::Store.response(true, None);
        }
    }
    let target = SessionMatch {
        subject: token.subject.as_deref(),
        sid: token.sid.as_deref(),
    };
    let deleted = match inner.store.delete_matching(&target).await {
        Ok(n) => n,
        Err(e) => {
            tracing::error!(error = %e, "could not delete sessions at back-channel logout");
            // 5xx lets the provider try again later.
            return FlowError::Store.response(true, None);
        }
    };
    let now = chrono::Utc::now().timestamp();
    if let Err(e) = inner
        .store
        .remember_once(&once, token.replay_window(now, JTI_CLOCK_MARGIN))
        .await
    {
        // The sessions are gone, but a replay would not be refused: a 5xx has the
        // provider send it again, and that delivery records it.
        tracing::error!(error = %e, sessions = deleted, "could not record the logout token's jti");
        return FlowError::Store.response(true, None);
    }
    tracing::info!(sessions = deleted, "back-channel logout");
    let mut res = Response::new(Bytes::new());
    page::no_store(&mut res);
    res
}

/// Why a back-channel logout request is refused with a 400: said in its
/// `error_description`, for the provider's operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
enum BadLogoutRequest {
    /// The layer has no OpenID Connect configuration, so no keys to verify a token with.
    #[error("back-channel logout needs OpenID Connect")]
    NotOidc,
    /// Not `application/x-www-form-urlencoded`.
    #[error("expected a form body")]
    NotAForm,
    /// Over the limit, or the body failed.
    #[error("the body is too large or could not be read")]
    Body,
    /// Two `logout_token` fields.
    #[error("logout_token is repeated")]
    RepeatedToken,
    /// No `logout_token` field.
    #[error("logout_token is missing")]
    MissingToken,
    /// The token's `jti` was seen: a replay.
    #[error("the logout token was already used")]
    AlreadyUsed,
    /// The token itself is not valid.
    #[error(transparent)]
    Token(LogoutTokenError),
}

fn bad_logout_request(why: BadLogoutRequest) -> Response<Bytes> {
    page::json(
        StatusCode::BAD_REQUEST,
        &serde_json::json!({"error": "invalid_request", "error_description": why.to_string()}),
    )
}
