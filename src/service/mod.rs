//! [`LoginLayer`] and [`LoginService`]: which step answers each request.
//!
//! ```text
//! callback path            → flow::callback (state, iss, code exchange, new session)
//! login path (GET)         → flow::login
//! logout path (POST)       → flow::logout; its return → flow::logout::finish
//! back-channel logout path → flow::backchannel_logout
//! session cookie valid     → lookup (refresh when due) → AuthUser → inner service
//! otherwise                → public? inner service : flow::login::required (303 or 401)
//! ```

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;

use bytes::Bytes;
use http::{header, HeaderMap, Method, Request, Response};
use tower_layer::Layer;
use tower_service::Service;

use crate::context::{Access, Context};
use crate::error::FlowError;
use crate::extract::AuthUser;
use crate::flow::{backchannel_logout, callback, login, logout};
use crate::http::classify::wants_json;

pub(crate) mod lookup;
pub(crate) mod registration;
pub(crate) mod require_login;
pub(crate) mod route;

use lookup::{lookup, lookup_now, Lookup};
use require_login::{RequireLoginLayer, ReturnTo};
use route::{route, Route};

/// The login middleware. Build it with [`LoginLayer::builder`] and add it to a router or
/// any Tower service; clones share one configuration and one session store.
///
/// # Example
///
/// ```
/// use axum::{routing::get, Router};
/// use tower_oauth2_login::{AuthUser, LoginLayer};
///
/// # fn main() -> Result<(), tower_oauth2_login::ConfigError> {
/// let login = LoginLayer::builder()
///     .with_client_id("my-app")
///     .with_authorization_endpoint("https://idp.example/authorize")
///     .with_token_endpoint("https://idp.example/token")
///     .with_userinfo_endpoint("https://idp.example/userinfo")
///     .with_redirect_url("https://app.example/auth/callback")
///     .build()?;
/// // A "Sign in" link for pages that show one.
/// assert_eq!(login.login_path(), "/auth/login");
///
/// let app: Router = Router::new()
///     .route("/", get(|user: AuthUser| async move { format!("hello {}", user.subject()) }))
///     .layer(login);
/// # let _ = app; Ok(()) }
/// ```
#[derive(Clone)]
pub struct LoginLayer {
    inner: Arc<Context>,
}

impl fmt::Debug for LoginLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("LoginLayer").field(&self.inner).finish()
    }
}

impl LoginLayer {
    pub(crate) fn from_inner(inner: Arc<Context>) -> Self {
        Self { inner }
    }

    /// The configuration, for the fuzzing entry points and the benches.
    pub(crate) fn shared(&self) -> &Arc<Context> {
        &self.inner
    }

    /// A layer that requires a signed-in user for the routes it wraps, for apps that
    /// build this layer with [`Access::Public`](crate::Access::Public) and protect some
    /// routes only. It must run inside this `LoginLayer`.
    pub fn require_login(&self) -> RequireLoginLayer {
        RequireLoginLayer::new(Arc::clone(&self.inner))
    }

    /// The path that starts a login, e.g. for a "Sign in" link:
    /// `<login path>?return_to=/where/to/go`.
    pub fn login_path(&self) -> &str {
        &self.inner.login_path
    }

    /// The path that signs out on `POST`.
    pub fn logout_path(&self) -> &str {
        &self.inner.logout_path
    }

    /// The provider's userinfo endpoint, configured or discovered, for handlers that want
    /// fresh claims (call it with the [`AccessToken`](crate::AccessToken)).
    pub fn userinfo_endpoint(&self) -> Option<&str> {
        self.inner
            .provider
            .userinfo_url
            .as_ref()
            .map(|u| u.as_str())
    }

    /// The URLs to register for this client at the provider, exactly as the layer sends
    /// them: the redirect URI, and where OpenID Connect uses them the post-logout redirect
    /// URI and the back-channel logout URI. Logged once when the layer is built.
    pub fn registration(&self) -> registration::Registration {
        registration::Registration::of(&self.inner)
    }

    /// The callback path, from the redirect URL.
    pub fn callback_path(&self) -> &str {
        &self.inner.callback_path
    }
}

impl<S> Layer<S> for LoginLayer {
    type Service = LoginService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        LoginService {
            inner,
            shared: Arc::clone(&self.inner),
        }
    }
}

/// The service made by [`LoginLayer`]: the layer applied to a service.
///
/// # Example
///
/// Without a router: the layer around a plain Tower service. A page load without a session
/// is sent to the provider.
///
/// ```
/// use std::convert::Infallible;
///
/// use axum::body::Body;
/// use http::{header, Request, Response, StatusCode};
/// use tower::{service_fn, Layer, ServiceExt};
/// use tower_oauth2_login::LoginLayer;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let login = LoginLayer::builder()
///     .with_client_id("my-app")
///     .with_authorization_endpoint("https://idp.example/authorize")
///     .with_token_endpoint("https://idp.example/token")
///     .with_userinfo_endpoint("https://idp.example/userinfo")
///     .with_redirect_url("https://app.example/auth/callback")
///     .build()?;
/// let app = service_fn(|_req: Request<Body>| async {
///     Ok::<_, Infallible>(Response::new(Body::from("hello")))
/// });
/// let service = login.layer(app);
///
/// let page_load = Request::get("/account")
///     .header(header::ACCEPT, "text/html")
///     .header("sec-fetch-mode", "navigate")
///     .body(Body::empty())?;
/// let response = service.oneshot(page_load).await?;
/// assert_eq!(response.status(), StatusCode::SEE_OTHER);
/// let location = response.headers()[header::LOCATION].to_str()?;
/// assert!(location.starts_with("https://idp.example/authorize?"));
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct LoginService<S> {
    inner: S,
    shared: Arc<Context>,
}

impl<S: fmt::Debug> fmt::Debug for LoginService<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoginService")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

pin_project_lite::pin_project! {
    /// The future of [`LoginService`]; nothing to do with it but await it (or name it in a
    /// `Service` bound).
    ///
    /// A request with a live session in a store that answers at once (the memory store)
    /// gets the inner service's own future, with nothing allocated around it; every other
    /// request (sign-in, callback, logout, a store to wait for, an idle deadline to push
    /// back, a token to refresh, no session) gets a boxed future.
    pub struct ResponseFuture<F, B, E> {
        #[pin]
        kind: Kind<F, B, E>,
    }
}

pin_project_lite::pin_project! {
    #[project = KindProj]
    enum Kind<F, B, E> {
        Inner { #[pin] future: F },
        Boxed { future: BoxedResponse<B, E> },
    }
}

type BoxedResponse<B, E> = Pin<Box<dyn Future<Output = Result<Response<B>, E>> + Send>>;

impl<F, B, E> Future for ResponseFuture<F, B, E>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Inner { future } => future.poll(cx),
            KindProj::Boxed { future } => future.as_mut().poll(cx),
        }
    }
}

impl<F, B, E> fmt::Debug for ResponseFuture<F, B, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.kind {
            Kind::Inner { .. } => "inner",
            Kind::Boxed { .. } => "boxed",
        };
        f.debug_tuple("ResponseFuture").field(&kind).finish()
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for LoginService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ReqBody: http_body::Body + Send + 'static,
    ReqBody::Data: Send,
    ReqBody::Error: Into<Box<dyn std::error::Error + Send + Sync>> + Send,
    ResBody: From<Bytes> + Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody, S::Error>;

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        let route = route(&self.shared, req.method(), req.uri().path());
        if route == Route::App {
            // The hot path, synchronously: the service driven to readiness is called here,
            // so neither it nor this request's work is moved into a boxed future.
            if let Some(session) = lookup_now(&self.shared, req.headers()) {
                req.extensions_mut()
                    .insert(AuthUser::new(session, Arc::clone(&self.shared)));
                return ResponseFuture {
                    kind: Kind::Inner {
                        future: self.inner.call(req),
                    },
                };
            }
        }
        // The clone that was driven to readiness serves this request (tower's usual swap).
        let clone = self.inner.clone();
        let service = std::mem::replace(&mut self.inner, clone);
        let shared = Arc::clone(&self.shared);
        ResponseFuture {
            kind: Kind::Boxed {
                future: Box::pin(serve(shared, service, req, route)),
            },
        }
    }
}

/// Every request but the hot path's: the layer's own routes, and the app's routes when the
/// session must be awaited, updated or refreshed, or there is none.
async fn serve<S, ReqBody, ResBody>(
    shared: Arc<Context>,
    mut service: S,
    mut req: Request<ReqBody>,
    route: Route,
) -> Result<Response<ResBody>, S::Error>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ReqBody: http_body::Body,
    ReqBody::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    ResBody: From<Bytes>,
{
    let inner = &*shared;
    match route {
        Route::Callback => {
            let query = req.uri().query().unwrap_or("");
            // Boxed, as the other rare branches: their futures (a code exchange, a
            // revocation, a refresh) are kilobytes that every request through here would
            // otherwise allocate and copy.
            let callback = Box::pin(handle_callback(inner, req.method(), req.headers(), query));
            return Ok(own(callback.await));
        }
        Route::Login => {
            return Ok(own(handle_login(
                inner,
                req.method(),
                req.headers(),
                req.uri(),
            )));
        }
        Route::Logout => return Ok(own(Box::pin(logout::handle(&shared, req.headers())).await)),
        Route::LogoutPage => return Ok(own(logout::confirmation(inner))),
        Route::LogoutCallback => {
            let query = req.uri().query().unwrap_or("");
            return Ok(own(logout::finish(inner, req.headers(), query)));
        }
        Route::BackchannelLogout => {
            if req.method() != Method::POST {
                return Ok(own(FlowError::MethodNotAllowed("POST").response(true, None)));
            }
            let (parts, body) = req.into_parts();
            return Ok(own(Box::pin(backchannel_logout::handle(
                inner,
                &parts.headers,
                body,
            ))
            .await));
        }
        Route::App => {}
    }

    match lookup(&shared, req.headers()).await {
        Lookup::Found(session) => {
            req.extensions_mut()
                .insert(AuthUser::new(session, Arc::clone(&shared)));
            service.call(req).await
        }
        Lookup::StoreDown => {
            // Fail closed: never serve a request as anonymous because the store could not
            // say who it is.
            let wants_json = wants_json(req.headers());
            Ok(own(FlowError::Store.response(wants_json, None)))
        }
        Lookup::ProviderDown => {
            // Fail closed too: the token has expired, and serving the request with it (or
            // without a user) would be wrong; the session lives on.
            let wants_json = wants_json(req.headers());
            Ok(own(FlowError::RefreshUnavailable.response(wants_json, None)))
        }
        Lookup::None { stale } => {
            let public =
                inner.access == Access::Public || inner.public.matches(req.method(), req.uri());
            let mut res = if public {
                let return_to = ReturnTo(path_and_query(req.uri()).to_string());
                req.extensions_mut().insert(return_to);
                service.call(req).await?
            } else {
                own(login::required(
                    inner,
                    req.method(),
                    req.headers(),
                    path_and_query(req.uri()),
                ))
            };
            if stale {
                // A cookie naming no live session: have the browser forget it.
                res.headers_mut()
                    .append(header::SET_COOKIE, inner.cookies.clear_session_cookie());
            }
            Ok(res)
        }
    }
}

fn own<B: From<Bytes>>(res: Response<Bytes>) -> Response<B> {
    res.map(B::from)
}

#[tracing::instrument(name = "oauth2_login.callback", skip_all)]
async fn handle_callback(
    inner: &Context,
    method: &Method,
    headers: &HeaderMap,
    query: &str,
) -> Response<Bytes> {
    if method != Method::GET && method != Method::HEAD {
        // `response_mode=form_post` is not used, so the provider never POSTs here.
        return FlowError::MethodNotAllowed("GET").response(wants_json(headers), None);
    }
    callback::handle(inner, headers, query).await
}

#[tracing::instrument(name = "oauth2_login.login", skip_all)]
fn handle_login(
    inner: &Context,
    method: &Method,
    headers: &HeaderMap,
    uri: &http::Uri,
) -> Response<Bytes> {
    if method != Method::GET && method != Method::HEAD {
        return FlowError::MethodNotAllowed("GET").response(wants_json(headers), None);
    }
    let return_to = uri
        .query()
        .and_then(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .find(|(name, _)| name == "return_to")
                .map(|(_, value)| value.into_owned())
        })
        .unwrap_or_else(|| "/".to_string());
    login::start(inner, headers, &return_to)
}

fn path_and_query(uri: &http::Uri) -> &str {
    uri.path_and_query().map(|p| p.as_str()).unwrap_or("/")
}
