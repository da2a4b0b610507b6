//! Extractors for handlers: [`AuthUser`], `Option<AuthUser>` and [`AccessToken`].

use std::fmt;
use std::sync::Arc;

use axum_core::extract::{FromRequestParts, OptionalFromRequestParts};
use axum_core::response::{IntoResponse, Response};
use http::request::Parts;
use http::{header, HeaderValue, StatusCode};
use serde::de::DeserializeOwned;

use crate::session::Session;

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
}

impl AuthUser {
    pub(crate) fn new(session: Arc<Session>) -> Self {
        Self { session }
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

    /// The access token, to call the provider's APIs on the user's behalf.
    pub fn access_token(&self) -> AccessToken {
        AccessToken {
            session: Arc::clone(&self.session),
        }
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
/// layer refreshes it before it expires, and a token that expired with no way to refresh
/// it is refused (`401`). Its `Debug` and `Display` never show the token; use
/// [`secret`](Self::secret) where it must be sent.
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
    type Rejection = Unauthenticated;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<AuthUser>()
            .map(AuthUser::access_token)
            .ok_or(Unauthenticated)
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
            .map(AuthUser::access_token))
    }
}

/// The rejection of [`AuthUser`] and [`AccessToken`] when nobody is signed in: `401` with
/// a small JSON body. Seen only on routes the layer lets through unauthenticated.
#[derive(Debug, Clone, Copy)]
pub struct Unauthenticated;

impl IntoResponse for Unauthenticated {
    fn into_response(self) -> Response {
        let mut res = (
            StatusCode::UNAUTHORIZED,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            r#"{"error":"unauthenticated","error_description":"sign in first"}"#,
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
