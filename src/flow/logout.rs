//! Signing out: locally (the server-side session is deleted, the cookie cleared), at the
//! provider (RFC 7009 revocation of the refresh token; OpenID Connect RP-initiated logout
//! through the end-session endpoint), and from the provider (OpenID Connect back-channel
//! logout).

use std::sync::Arc;

use base64::Engine;
use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Response, StatusCode};
use http_body_util::BodyExt;
use oauth2::AuthType;
use subtle::ConstantTimeEq;

use crate::backchannel::BackchannelError;
use crate::config::Inner;
use crate::error::{FlowError, ProviderError};
use crate::oidc::{LogoutRefusal, LogoutTokenError};
use crate::session::{self, OnceKey, Session, SessionId, SessionMatch};
use crate::{cookie, page};

/// The largest back-channel logout request body read.
const MAX_LOGOUT_BODY: usize = 64 * 1024;

/// How much longer than its own window a logout token's `jti` is remembered: instances
/// that share a store, with clocks up to this far apart, still refuse the replay.
const JTI_CLOCK_MARGIN: std::time::Duration = std::time::Duration::from_secs(60);

/// Answers `POST <logout path>`.
#[tracing::instrument(name = "oauth2_login.logout", skip_all)]
pub(crate) async fn handle(inner: &Arc<Inner>, headers: &HeaderMap) -> Response<Bytes> {
    let wants_json = crate::layer::wants_json(headers);
    // Another site must not be able to sign users out (logout CSRF).
    if is_cross_site(inner, headers) {
        tracing::info!("cross-site logout refused");
        return FlowError::CrossSite.response(wants_json, None);
    }
    let mut failed = false;
    let mut ended: Option<Arc<Session>> = None;
    // The first session cookies only: however many the request carries, the store does a
    // bounded amount of work for it.
    for value in cookie::session_values(headers, &inner.cookies) {
        let Some(id) = SessionId::parse(value) else {
            continue;
        };
        let (key, seal) = id.keys();
        inner.refresh_flights.forget(&key);
        match inner.store.load(&key).await {
            // Its tokens (to revoke, for the ID token hint) only if it opens with this
            // cookie; it is deleted either way.
            Ok(session) => ended = ended.or(session.and_then(|s| session::opened(s, &seal))),
            Err(e) => {
                tracing::error!(error = %e, "could not read the session at logout");
                failed = true;
            }
        }
        if let Err(e) = inner.store.delete(&key).await {
            tracing::error!(error = %e, "could not delete the session at logout");
            failed = true;
        }
    }
    if let Some(session) = &ended {
        revoke_in_background(inner, session);
    }

    let mut res = if failed {
        // The browser forgets the cookie either way, but the person must know the
        // server-side session may still be alive.
        FlowError::Store.response(wants_json, None)
    } else if let Some(end_session) = inner
        .oidc
        .as_ref()
        .and_then(|o| o.end_session_endpoint.as_ref())
    {
        tracing::info!("logged out; continuing at the provider's end-session endpoint");
        rp_initiated_logout(inner, end_session, ended.as_deref())
    } else {
        tracing::info!("logged out");
        page::see_other(&inner.post_logout_redirect)
    };
    res.headers_mut()
        .append(header::SET_COOKIE, inner.cookies.clear_session_cookie());
    res
}

/// The redirect to the end-session endpoint (OpenID Connect RP-Initiated Logout 1.0),
/// with a `state` kept in a short-lived cookie for the way back.
fn rp_initiated_logout(
    inner: &Inner,
    end_session: &url::Url,
    session: Option<&Session>,
) -> Response<Bytes> {
    let state = oauth2::CsrfToken::new_random_len(32);
    let mut url = end_session.clone();
    {
        let mut q = url.query_pairs_mut();
        match session.and_then(Session::id_token) {
            Some(id_token) if inner.id_token_hint => {
                q.append_pair("id_token_hint", id_token);
            }
            _ => {
                q.append_pair("client_id", inner.oauth.client_id().as_str());
            }
        }
        q.append_pair("post_logout_redirect_uri", &inner.post_logout_redirect_uri);
        q.append_pair("state", state.secret());
    }
    let mut res = page::see_other(url.as_str());
    res.headers_mut().append(
        header::SET_COOKIE,
        inner.cookies.logout_state_cookie(state.secret()),
    );
    res
}

/// Answers `GET <logout callback path>`, where the provider sends the browser back after
/// RP-initiated logout: with a `state`, it must be the one this browser left with.
pub(crate) fn finish(inner: &Inner, headers: &HeaderMap, query: &str) -> Response<Bytes> {
    let state = url::form_urlencoded::parse(query.as_bytes())
        .find(|(n, _)| n == "state")
        .map(|(_, v)| v.into_owned());
    let expected = cookie::find(headers, &inner.cookies.logout_state_name).next();
    let ok = match (&state, expected) {
        (Some(state), Some(expected)) => state.as_bytes().ct_eq(expected.as_bytes()).into(),
        (Some(_), None) => false,
        // Providers need not echo the state; the local session is gone either way.
        (None, _) => true,
    };
    let mut res = if ok {
        page::see_other(&inner.post_logout_redirect)
    } else {
        tracing::info!("logout callback with an unknown state");
        page::html(
            StatusCode::BAD_REQUEST,
            "Sign-out response not recognised",
            "This sign-out response does not belong to a sign-out started in this browser. \
             You are signed out of this application.",
            Some(&inner.post_logout_redirect),
        )
    };
    res.headers_mut().append(
        header::SET_COOKIE,
        inner.cookies.clear_logout_state_cookie(),
    );
    res.headers_mut()
        .insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    res
}

/// Revokes the session's refresh token (or, without one, its access token) at the
/// provider (RFC 7009), without making the person wait: local logout is already done, and
/// a provider that is down must not hold it up.
fn revoke_in_background(inner: &Arc<Inner>, session: &Session) {
    let Some(url) = inner.revocation_url.clone() else {
        return;
    };
    let (token, hint) = match (session.refresh_token(), session.access_token()) {
        (Some(t), _) => (t.to_owned(), "refresh_token"),
        (None, Some(t)) => (t.to_owned(), "access_token"),
        (None, None) => return,
    };
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let inner = Arc::clone(inner);
    runtime.spawn(async move {
        match revoke(&inner, &url, &token, hint).await {
            Ok(()) => tracing::debug!("token revoked at the provider"),
            Err(e) => tracing::warn!(error = %e, "could not revoke the token at the provider"),
        }
    });
}

/// The RFC 7009 request, written here rather than through `oauth2`: `oauth2` refuses
/// revocation endpoints that are not https, and this layer allows plain http on loopback
/// for every endpoint (development, tests).
async fn revoke(inner: &Inner, url: &url::Url, token: &str, hint: &str) -> Result<(), RevokeError> {
    let mut form = vec![("token", token), ("token_type_hint", hint)];
    let mut request = http::Request::builder()
        .method(http::Method::POST)
        .uri(url.as_str())
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(header::ACCEPT, "application/json");
    let client_id = inner.oauth.client_id().as_str();
    match (&inner.client_secret, inner.oauth.auth_type()) {
        (Some(secret), AuthType::BasicAuth) => {
            // RFC 6749 2.3.1: both parts form-urlencoded before Basic encoding.
            let enc =
                |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
            let basic = base64::engine::general_purpose::STANDARD.encode(format!(
                "{}:{}",
                enc(client_id),
                enc(secret.secret())
            ));
            request = request.header(header::AUTHORIZATION, format!("Basic {basic}"));
        }
        (Some(secret), _) => {
            form.push(("client_id", client_id));
            form.push(("client_secret", secret.secret()));
        }
        (None, _) => form.push(("client_id", client_id)),
    }
    let body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form)
        .finish();
    let request = request
        .body(body.into_bytes())
        .map_err(|_| RevokeError::Request)?;
    let response = inner.backchannel.execute(request).await?;
    if response.status().is_success() {
        Ok(())
    } else {
        Err(RevokeError::Refused(response.status()))
    }
}

/// Why a revocation (RFC 7009) failed: only logged, the logout goes on without it.
#[derive(Debug, thiserror::Error)]
enum RevokeError {
    /// The request could not be built (the configured URL is not a valid URI).
    #[error("could not build the request")]
    Request,
    /// No answer, or a 5xx.
    #[error(transparent)]
    Backchannel(#[from] BackchannelError),
    /// The provider answered with a status other than 2xx (and not 5xx).
    #[error("the provider answered {0}")]
    Refused(StatusCode),
}

/// Answers `POST <back-channel logout path>` (OpenID Connect Back-Channel Logout 1.0): the
/// provider says a user's session there ended; the matching sessions here end too.
#[tracing::instrument(name = "oauth2_login.backchannel_logout", skip_all)]
pub(crate) async fn backchannel<B>(inner: &Inner, headers: &HeaderMap, body: B) -> Response<Bytes>
where
    B: http_body::Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let Some(oidc) = &inner.oidc else {
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
    let token = match oidc.verify_logout_token(&inner.backchannel, &token).await {
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

/// Whether the request comes from another site, by `Sec-Fetch-Site` (modern browsers) or
/// else by `Origin`. A request with neither is not a browser's cross-site form post
/// (those carry `Origin`), and the `SameSite=Lax` session cookie would not be sent with
/// one anyway.
pub(crate) fn is_cross_site(inner: &Inner, headers: &HeaderMap) -> bool {
    if let Some(site) = headers.get("sec-fetch-site") {
        return !(site == "same-origin" || site == "none");
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        return origin.as_bytes() != inner.app_origin.as_bytes();
    }
    false
}
