//! Extractors for handlers: [`AuthUser`], `Option<AuthUser>` and [`AccessToken`].

use std::fmt;
use std::sync::Arc;

use axum_core::extract::{FromRequestParts, OptionalFromRequestParts};
use axum_core::response::{IntoResponse, Response};
use bytes::Bytes;
use http::request::Parts;
use http::{header, HeaderValue, StatusCode};
use serde::de::DeserializeOwned;

use crate::context::Context;
use crate::flow::login;
use crate::flow::refresh;
use crate::session::{now_secs, Session};

/// The signed-in user. Extracting it fails with `401` when nobody is signed in; take
/// `Option<AuthUser>` on routes that serve both.
///
/// It is cheap to clone (it shares the session) and derefs to [`Session`] for the
/// subject, claims and scopes.
///
/// ```
/// use tower_oauth2_login::AuthUser;
///
/// async fn profile(user: AuthUser) -> String {
///     format!("signed in as {}", user.subject())
/// }
///
/// async fn home(user: Option<AuthUser>) -> String {
///     match user {
///         Some(user) => format!("hello {}", user.subject()),
///         None => "hello stranger".to_string(),
///     }
/// }
/// # let _ = axum::Router::<()>::new()
/// #     .route("/profile", axum::routing::get(profile))
/// #     .route("/", axum::routing::get(home));
/// ```
#[derive(Clone)]
pub struct AuthUser {
    session: Arc<Session>,
    /// The layer's configuration, for the answer to a handler that needs a token this
    /// session no longer has (the login redirect, the 401): carried here rather than in a
    /// second extension, whose insert would cost every request far more than this clone.
    layer: Arc<Context>,
}

impl AuthUser {
    pub(crate) fn new(session: Arc<Session>, layer: Arc<Context>) -> Self {
        Self { session, layer }
    }

    /// The user's claims deserialized into your own type.
    pub fn claims_as<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        self.session.claims.deserialize_into()
    }

    /// One claim, deserialized; `None` when absent or of another type.
    pub fn claim<T: DeserializeOwned>(&self, name: &str) -> Option<T> {
        self.session.claims.get(name)
    }

    /// Whether the provider granted `scope`.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.session.scopes.iter().any(|s| s == scope)
    }

    /// The access token, to call the provider's APIs on the user's behalf; `None` when it
    /// has expired (or expires within the refresh skew) and the provider gave no refresh
    /// token, so the user must sign in again. The [`AccessToken`] extractor answers that
    /// case for you.
    pub fn access_token(&self) -> Option<AccessToken> {
        usable(&self.session, self.layer.refresh_skew, now_secs()).then(|| self.token())
    }

    fn token(&self) -> AccessToken {
        AccessToken {
            session: Arc::clone(&self.session),
        }
    }
}

/// Whether the session's access token may be handed to a handler at `now`.
///
/// The layer refreshes a token that is due (expired, or expiring within the skew) before
/// the request reaches the handler; one that is due still has no refresh token, and will
/// be dead by the time the handler's call reaches the provider, or soon after: refused.
/// With a refresh token, a due token reaches the handler only when the refresh failed and
/// the token still works, and it is served until it expires (the layer's fallback).
fn usable(session: &Session, skew: std::time::Duration, now: u64) -> bool {
    match session.access_expires_at {
        None => true,
        Some(expires_at) if now >= expires_at => false,
        Some(_) => session.refresh_token().is_some() || !refresh::is_due(session, skew, now),
    }
}

impl std::ops::Deref for AuthUser {
    type Target = Session;

    fn deref(&self) -> &Session {
        &self.session
    }
}

impl fmt::Debug for AuthUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthUser")
            .field("subject", &self.session.subject)
            .finish_non_exhaustive()
    }
}

impl<S: Send + Sync> FromRequestParts<S> for AuthUser {
    type Rejection = Unauthenticated;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<AuthUser>()
            .cloned()
            .ok_or(Unauthenticated)
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for AuthUser {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        Ok(parts.extensions.get::<AuthUser>().cloned())
    }
}

/// The signed-in user's access token, for calling APIs, valid when the handler gets it: the
/// layer refreshes it before it expires, and a token that expired (or expires within the
/// refresh skew) with no way to refresh it is refused ([`AccessTokenRejection::Expired`]:
/// as a request without a session, `401` with `WWW-Authenticate` for an API call, the
/// login redirect for a page load). `Option<AccessToken>` is `None` then. Its `Debug` and
/// `Display` never show the token; use [`secret`](Self::secret) where it must be sent.
///
/// ```
/// use tower_oauth2_login::AccessToken;
///
/// async fn repos(token: AccessToken) -> String {
///     // e.g. reqwest::Client::new().get(url).bearer_auth(token.secret())
///     format!("token {token} expires at {:?}", token.expires_at())
/// }
/// # let _ = axum::Router::<()>::new().route("/repos", axum::routing::get(repos));
/// ```
#[derive(Clone)]
pub struct AccessToken {
    session: Arc<Session>,
}

impl AccessToken {
    /// The token itself. Send it to the provider's APIs only; never to the browser.
    pub fn secret(&self) -> &str {
        // The layer hands handlers opened sessions only; a sealed one has no token to give.
        self.session.access_token().unwrap_or_default()
    }

    /// When the token expires, in seconds since the Unix epoch, if the provider said.
    pub fn expires_at(&self) -> Option<u64> {
        self.session.access_expires_at
    }
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AccessToken(<redacted>)")
    }
}

impl fmt::Display for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl<S: Send + Sync> FromRequestParts<S> for AccessToken {
    type Rejection = AccessTokenRejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let Some(user) = parts.extensions.get::<AuthUser>() else {
            return Err(AccessTokenRejection::Unauthenticated(Unauthenticated));
        };
        if let Some(token) = user.access_token() {
            return Ok(token);
        }
        // Behind a nesting router this is the nested path: the layer keeps no copy of the
        // original URI for authenticated requests (it would cost every one of them).
        let return_to = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        let response = login::required(&user.layer, &parts.method, &parts.headers, return_to);
        Err(AccessTokenRejection::Expired(TokenExpired { response }))
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for AccessToken {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        Ok(parts
            .extensions
            .get::<AuthUser>()
            .and_then(AuthUser::access_token))
    }
}

/// The rejection of [`AccessToken`].
///
/// # Example
///
/// A handler that calls an API with the user's token, and answers in its own words when
/// there is none:
///
/// ```
/// use axum_core::response::{IntoResponse, Response};
/// use tower_oauth2_login::{AccessToken, AccessTokenRejection};
///
/// async fn repos(token: Result<AccessToken, AccessTokenRejection>) -> Response {
///     match token {
///         Ok(token) => {
///             let _authorization = format!("Bearer {}", token.secret());
///             "your repositories".into_response()
///         }
///         // Signed out, or the token expired without a refresh token: the layer's own
///         // answer (a 401, or the login redirect for a page load).
///         Err(rejection @ AccessTokenRejection::Expired(_)) => rejection.into_response(),
///         Err(rejection) => (rejection.status(), "sign in to see your repositories").into_response(),
///     }
/// }
/// # let _ = axum::Router::<()>::new().route("/repos", axum::routing::get(repos));
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum AccessTokenRejection {
    /// Nobody is signed in (a route the layer lets through unauthenticated).
    Unauthenticated(Unauthenticated),
    /// Someone is signed in, but the access token has expired and the provider gave no
    /// refresh token: they must sign in again.
    Expired(TokenExpired),
}

impl AccessTokenRejection {
    /// The status of the answer: `401`, or `303` for the login redirect of a page load.
    pub fn status(&self) -> StatusCode {
        match self {
            AccessTokenRejection::Unauthenticated(r) => r.status(),
            AccessTokenRejection::Expired(r) => r.status(),
        }
    }

    /// The body of the answer: JSON for an API call, empty for a redirect.
    pub fn body_text(&self) -> String {
        match self {
            AccessTokenRejection::Unauthenticated(r) => r.body_text(),
            AccessTokenRejection::Expired(r) => r.body_text(),
        }
    }
}

impl IntoResponse for AccessTokenRejection {
    fn into_response(self) -> Response {
        match self {
            AccessTokenRejection::Unauthenticated(r) => r.into_response(),
            AccessTokenRejection::Expired(r) => r.into_response(),
        }
    }
}

impl fmt::Display for AccessTokenRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AccessTokenRejection::Unauthenticated(r) => r.fmt(f),
            AccessTokenRejection::Expired(r) => r.fmt(f),
        }
    }
}

impl std::error::Error for AccessTokenRejection {}

/// The access token has expired and cannot be refreshed. Its response is the layer's
/// answer to a request that needs a login: `401` JSON with `WWW-Authenticate` for an API
/// call, a redirect to the provider (returning to this page) for a page load.
///
/// # Example
///
/// ```
/// use axum_core::response::{IntoResponse, Response};
/// use tower_oauth2_login::{AccessToken, AccessTokenRejection};
///
/// async fn call_api(token: Result<AccessToken, AccessTokenRejection>) -> Response {
///     match token {
///         Ok(_token) => "called".into_response(),
///         Err(AccessTokenRejection::Expired(expired)) => {
///             tracing::info!(status = %expired.status(), "token expired: signing in again");
///             expired.into_response()
///         }
///         Err(other) => other.into_response(),
///     }
/// }
/// # let _ = axum::Router::<()>::new().route("/call", axum::routing::get(call_api));
/// ```
pub struct TokenExpired {
    response: http::Response<Bytes>,
}

impl TokenExpired {
    /// The status of the answer: `401`, or `303` for a login redirect.
    pub fn status(&self) -> StatusCode {
        self.response.status()
    }

    /// The body of the answer: the layer's JSON for an API call, empty for a redirect.
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(self.response.body()).into_owned()
    }
}

impl IntoResponse for TokenExpired {
    fn into_response(self) -> Response {
        self.response.map(axum_core::body::Body::from)
    }
}

impl fmt::Debug for TokenExpired {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The redirect's URL and cookie carry a fresh state: kept out of logs.
        f.debug_struct("TokenExpired")
            .field("status", &self.response.status())
            .finish_non_exhaustive()
    }
}

impl fmt::Display for TokenExpired {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the access token has expired and cannot be refreshed")
    }
}

impl std::error::Error for TokenExpired {}

/// The rejection of [`AuthUser`] (and of [`AccessToken`], inside
/// [`AccessTokenRejection`]) when nobody is signed in: `401` with
/// a small JSON body. Seen only on routes the layer lets through unauthenticated.
///
/// As axum's own rejections, it tells its status and body, for an app that answers in its
/// own way:
///
/// ```
/// use axum_core::response::{IntoResponse, Response};
/// use tower_oauth2_login::{AuthUser, Unauthenticated};
///
/// async fn profile(user: Result<AuthUser, Unauthenticated>) -> Response {
///     match user {
///         Ok(user) => user.subject().to_string().into_response(),
///         Err(rejection) => (rejection.status(), "please sign in").into_response(),
///     }
/// }
/// # let _ = axum::Router::<()>::new().route("/profile", axum::routing::get(profile));
/// ```
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct Unauthenticated;

/// The body of [`Unauthenticated`]'s answer.
const UNAUTHENTICATED_BODY: &str =
    r#"{"error":"unauthenticated","error_description":"sign in first"}"#;

impl Unauthenticated {
    /// The status of the answer: `401 Unauthorized`.
    pub fn status(&self) -> StatusCode {
        StatusCode::UNAUTHORIZED
    }

    /// The body of the answer (JSON).
    pub fn body_text(&self) -> String {
        UNAUTHENTICATED_BODY.to_string()
    }
}

impl IntoResponse for Unauthenticated {
    fn into_response(self) -> Response {
        let mut res = (
            self.status(),
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            UNAUTHENTICATED_BODY,
        )
            .into_response();
        res.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        res
    }
}

impl fmt::Display for Unauthenticated {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("nobody is signed in")
    }
}

impl std::error::Error for Unauthenticated {}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn session(obtained: u64, expires: Option<u64>, refresh: bool) -> Session {
        let mut s = Session::for_tests("s", u64::MAX, u64::MAX);
        s.access_obtained_at = obtained;
        s.access_expires_at = expires;
        s.set_tokens(crate::session::Tokens {
            access_token: "at".into(),
            refresh_token: refresh.then(|| "r".into()),
            id_token: None,
        })
        .unwrap();
        s
    }

    #[test]
    fn rejections_tell_their_status_and_body() {
        let r = Unauthenticated;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        let body: serde_json::Value = serde_json::from_str(&r.body_text()).unwrap();
        assert_eq!(body["error"], "unauthenticated");
        let res = r.into_response();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(res.headers()[header::CACHE_CONTROL], "no-store");
        let wrapped = AccessTokenRejection::Unauthenticated(r);
        assert_eq!(wrapped.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(wrapped.body_text(), r.body_text());
    }

    #[test]
    fn expired_tokens_are_refused_and_unrefreshable_ones_within_the_skew_too() {
        let skew = Duration::from_secs(60);
        // No expiry known: always handed out.
        assert!(usable(&session(1000, None, false), skew, u64::MAX - 1));
        // Without a refresh token, a one-hour token is refused from its last minute (the
        // skew), when the layer would have refreshed it.
        let s = session(1000, Some(4600), false);
        assert!(usable(&s, skew, 4539));
        assert!(!usable(&s, skew, 4540));
        assert!(!usable(&s, skew, 4600));
        assert!(!usable(&s, skew, 9999));
        // A 2-second token: the skew shrinks to nothing, refused at its expiry.
        let s = session(1000, Some(1002), false);
        assert!(usable(&s, skew, 1001));
        assert!(!usable(&s, skew, 1002));
        // With a refresh token, a token within the skew got here because the refresh
        // failed: served while it lives, refused once it has expired.
        let s = session(1000, Some(4600), true);
        assert!(usable(&s, skew, 4599));
        assert!(!usable(&s, skew, 4600));
    }
}
