//! [`RequireLoginLayer`]: protection for chosen routes, when the [`LoginLayer`] lets
//! everything pass ([`Access::Public`]).
//!
//! [`LoginLayer`]: crate::LoginLayer
//! [`Access::Public`]: crate::Access::Public

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;

use bytes::Bytes;
use http::{Request, Response};
use tower_layer::Layer;
use tower_service::Service;

use crate::context::Context;
use crate::extract::AuthUser;
use crate::flow::login;

/// The original path and query of a request that passed through unauthenticated, for
/// [`RequireLogin`] behind a nesting router that
/// rewrites the URI.
#[derive(Clone, Debug)]
pub(crate) struct ReturnTo(pub(crate) String);

/// Requires a signed-in user for the routes it wraps: browsers are sent to log in,
/// API calls get 401. Made by [`LoginLayer::require_login`](crate::LoginLayer::require_login);
/// it must run inside the `LoginLayer` that made it.
///
/// # Example
///
/// A public site with an account area:
///
/// ```
/// use axum::{routing::get, Router};
/// use tower_oauth2_login::{Access, AuthUser, LoginLayer};
///
/// # fn main() -> Result<(), tower_oauth2_login::ConfigError> {
/// let login = LoginLayer::builder()
///     .with_client_id("my-app")
///     .with_authorization_endpoint("https://idp.example/authorize")
///     .with_token_endpoint("https://idp.example/token")
///     .with_userinfo_endpoint("https://idp.example/userinfo")
///     .with_redirect_url("https://app.example/auth/callback")
///     .with_default_access(Access::Public)
///     .build()?;
///
/// let account = Router::new()
///     .route("/account", get(|user: AuthUser| async move { user.subject().to_string() }))
///     .layer(login.require_login());
/// let app: Router = Router::new()
///     .route("/", get(|| async { "welcome" }))
///     .merge(account)
///     .layer(login);
/// # let _ = app; Ok(()) }
/// ```
#[derive(Clone)]
pub struct RequireLoginLayer {
    inner: Arc<Context>,
}

impl RequireLoginLayer {
    pub(crate) fn new(inner: Arc<Context>) -> Self {
        Self { inner }
    }
}

impl fmt::Debug for RequireLoginLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequireLoginLayer").finish_non_exhaustive()
    }
}

impl<S> Layer<S> for RequireLoginLayer {
    type Service = RequireLogin<S>;

    fn layer(&self, service: S) -> Self::Service {
        RequireLogin {
            service,
            inner: Arc::clone(&self.inner),
        }
    }
}

/// The service made by [`RequireLoginLayer`]: the wrapped service, reached only with a
/// signed-in user.
///
/// # Example
///
/// Around a plain Tower service, inside the `LoginLayer` that made it: an API call
/// without a session gets `401`.
///
/// ```
/// use std::convert::Infallible;
///
/// use axum::body::Body;
/// use http::{Request, Response, StatusCode};
/// use tower::{service_fn, Layer, ServiceExt};
/// use tower_oauth2_login::{Access, LoginLayer};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let login = LoginLayer::builder()
///     .with_client_id("my-app")
///     .with_authorization_endpoint("https://idp.example/authorize")
///     .with_token_endpoint("https://idp.example/token")
///     .with_userinfo_endpoint("https://idp.example/userinfo")
///     .with_redirect_url("https://app.example/auth/callback")
///     .with_default_access(Access::Public)
///     .build()?;
/// let private = service_fn(|_req: Request<Body>| async {
///     Ok::<_, Infallible>(Response::new(Body::from("secret")))
/// });
/// let service = login.layer(login.require_login().layer(private));
///
/// let api_call = Request::get("/api/secret").body(Body::empty())?;
/// let response = service.oneshot(api_call).await?;
/// assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RequireLogin<S> {
    service: S,
    inner: Arc<Context>,
}

impl<S: fmt::Debug> fmt::Debug for RequireLogin<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequireLogin")
            .field("service", &self.service)
            .finish_non_exhaustive()
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for RequireLogin<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ResBody: From<Bytes> + Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future =
        Pin<Box<dyn Future<Output = Result<Response<ResBody>, S::Error>> + Send + 'static>>;

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.service.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        if req.extensions().get::<AuthUser>().is_some() {
            return Box::pin(self.service.call(req));
        }
        // Behind a nesting router the URI is rewritten; the LoginService kept the
        // original for us.
        let return_to = req
            .extensions()
            .get::<ReturnTo>()
            .map(|r| r.0.as_str())
            .or_else(|| req.uri().path_and_query().map(|p| p.as_str()))
            .unwrap_or("/");
        let res: Response<Bytes> =
            login::required(&self.inner, req.method(), req.headers(), return_to);
        let res = res.map(ResBody::from);
        Box::pin(std::future::ready(Ok(res)))
    }
}
