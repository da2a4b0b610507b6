//! [`LoginLayer`] and [`LoginService`]: the dispatch of every request.
//!
//! ```text
//! callback path        → callback::handle (state, iss, code exchange, new session)
//! login path  (GET)    → authorize::start
//! logout path (POST)   → logout::handle
//! session cookie valid → AuthUser in the extensions → inner service
//! otherwise            → public? inner service : browser? login redirect : 401
//! ```

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use tower_layer::Layer;
use tower_service::Service;

use crate::config::{Access, Inner, UnauthenticatedApi};
use crate::error::FlowError;
use crate::extract::AuthUser;
use crate::refresh::{self, Refreshed};
use crate::require_login::RequireLoginLayer;
use crate::session::{self, now_secs, SealKey, Session, SessionId, SessionKey};
use crate::{authorize, callback, cookie, logout, page, LoginLayerBuilder};

/// The login middleware. Build it with [`LoginLayer::builder`] and add it to a router or
/// any Tower service; clones share one configuration and one session store.
#[derive(Clone)]
pub struct LoginLayer {
    inner: Arc<Inner>,
}

impl fmt::Debug for LoginLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("LoginLayer").field(&self.inner).finish()
    }
}

impl LoginLayer {
    /// Starts the configuration.
    pub fn builder() -> LoginLayerBuilder {
        LoginLayerBuilder::default()
    }

    pub(crate) fn from_inner(inner: Arc<Inner>) -> Self {
        Self { inner }
    }

    /// The configuration, for the fuzzing entry points and the benches.
    #[cfg(any(test, feature = "fuzzing", feature = "dev-provider"))]
    pub(crate) fn shared(&self) -> &Arc<Inner> {
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
        self.inner.userinfo_url.as_ref().map(|u| u.as_str())
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

/// The service made by [`LoginLayer`].
#[derive(Clone)]
pub struct LoginService<S> {
    inner: S,
    shared: Arc<Inner>,
}

impl<S: fmt::Debug> fmt::Debug for LoginService<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoginService")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

pin_project_lite::pin_project! {
    /// The future of [`LoginService`].
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

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
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

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
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

/// Which part of the layer answers a request.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Route {
    Callback,
    Login,
    Logout,
    LogoutCallback,
    BackchannelLogout,
    /// Everything else: the app's own routes.
    App,
}

fn route(inner: &Inner, method: &Method, path: &str) -> Route {
    if path == inner.callback_path {
        Route::Callback
    } else if path == inner.login_path {
        Route::Login
    } else if path == inner.logout_path && method == Method::POST {
        Route::Logout
    } else if path == inner.logout_callback_path && method == Method::GET {
        Route::LogoutCallback
    } else if inner.oidc.is_some() && inner.backchannel_logout_path.as_deref() == Some(path) {
        Route::BackchannelLogout
    } else {
        Route::App
    }
}

/// Every request but the hot path's: the layer's own routes, and the app's routes when the
/// session must be awaited, updated or refreshed, or there is none.
async fn serve<S, ReqBody, ResBody>(
    shared: Arc<Inner>,
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
        Route::LogoutCallback => {
            let query = req.uri().query().unwrap_or("");
            return Ok(own(logout::finish(inner, req.headers(), query)));
        }
        Route::BackchannelLogout => {
            if req.method() != Method::POST {
                return Ok(own(FlowError::MethodNotAllowed("POST").response(true, None)));
            }
            let (parts, body) = req.into_parts();
            return Ok(own(Box::pin(logout::backchannel(
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
                own(unauthenticated(
                    inner,
                    req.method(),
                    req.headers(),
                    req.uri(),
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

/// The original path and query of a request that passed through unauthenticated, for
/// [`RequireLogin`](crate::require_login::RequireLogin) behind a nesting router that
/// rewrites the URI.
#[derive(Clone, Debug)]
pub(crate) struct ReturnTo(pub(crate) String);

fn own<B: From<Bytes>>(res: Response<Bytes>) -> Response<B> {
    res.map(B::from)
}

#[tracing::instrument(name = "oauth2_login.callback", skip_all)]
async fn handle_callback(
    inner: &Inner,
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
    inner: &Inner,
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
    authorize::start(inner, headers, &return_to)
}

enum Lookup {
    Found(Arc<Session>),
    None {
        stale: bool,
    },
    StoreDown,
    /// The access token expired and the provider could not refresh it just now.
    ProviderDown,
}

/// The hot path when the store answers at once (the memory store): one cookie scan, one
/// hash, one map read, nothing allocated, nothing awaited. `None` sends the request the
/// long way ([`lookup`]): no session cookie, an unknown or expired session, a store that
/// must be awaited, a session read from a store and not opened yet, an idle deadline to
/// push back or an access token to refresh.
fn lookup_now(inner: &Inner, headers: &HeaderMap) -> Option<Arc<Session>> {
    let value = cookie::find(headers, &inner.cookies.session_name).next()?;
    let key = SessionId::key_of(value)?;
    let session = inner.store.load_now(&key)??;
    let now = now_secs();
    // No crypto here: a session whose tokens are still sealed takes the long way once,
    // which opens it in place (the store's cache then holds it opened).
    let fresh = session.is_open()
        && !session.is_expired(now)
        && idle_deadline_due(inner, &session, now).is_none()
        && !refresh::needs_refresh(&session, inner.refresh_skew, now);
    fresh.then_some(session)
}

/// The session of a request, whatever it takes: one cookie scan, one hash, one store read,
/// opening its tokens when the store gave them sealed, and when due a write of the idle
/// deadline or a token refresh.
async fn lookup(inner: &Arc<Inner>, headers: &HeaderMap) -> Lookup {
    let Some(value) = cookie::find(headers, &inner.cookies.session_name).next() else {
        return Lookup::None { stale: false };
    };
    let Some(key) = SessionId::key_of(value) else {
        return Lookup::None { stale: true };
    };
    match inner.store.load(&key).await {
        Ok(Some(session)) => {
            let now = now_secs();
            if session.is_expired(now) {
                if let Err(e) = inner.store.delete(&key).await {
                    tracing::warn!(error = %e, "could not delete an expired session");
                }
                return Lookup::None { stale: true };
            }
            // Derived only once a session is found, so that a made-up cookie costs no
            // HKDF.
            let seal = SealKey::for_cookie_value(value);
            let Some(session) = session::opened(session, &seal) else {
                return Lookup::None { stale: true };
            };
            let Some(session) = slide_idle_deadline(inner, &key, session, now).await else {
                return Lookup::None { stale: true };
            };
            if !refresh::needs_refresh(&session, inner.refresh_skew, now) {
                return Lookup::Found(session);
            }
            match Box::pin(refresh::refresh(inner, key, session)).await {
                Refreshed::Session(session) => Lookup::Found(session),
                Refreshed::Ended => Lookup::None { stale: true },
                Refreshed::Unavailable => Lookup::ProviderDown,
            }
        }
        Ok(None) => Lookup::None { stale: true },
        Err(e) => {
            tracing::error!(error = %e, "session store unavailable");
            Lookup::StoreDown
        }
    }
}

/// How much of the idle timeout may pass before the deadline is pushed back: bounded
/// writes (at most one a minute per session) rather than one per request.
const TOUCH_INTERVAL_SECS: u64 = 60;

/// The new idle deadline of `session`, when it is due to be pushed back.
fn idle_deadline_due(inner: &Inner, session: &Session, now: u64) -> Option<u64> {
    let wanted = now
        .saturating_add(inner.idle_timeout.as_secs())
        .min(session.absolute_expires_at);
    (wanted.saturating_sub(session.expires_at) >= TOUCH_INTERVAL_SECS).then_some(wanted)
}

async fn slide_idle_deadline(
    inner: &Inner,
    key: &SessionKey,
    session: Arc<Session>,
    now: u64,
) -> Option<Arc<Session>> {
    let Some(wanted) = idle_deadline_due(inner, &session, now) else {
        return Some(session);
    };
    let mut touched = (*session).clone();
    touched.expires_at = wanted;
    let touched = Arc::new(touched);
    match inner.store.update(key, Arc::clone(&touched)).await {
        Ok(true) => Some(touched),
        // Deleted since it was loaded (a logout elsewhere): it stays deleted.
        Ok(false) => None,
        Err(e) => {
            // The session stays valid until its old deadline; the next request tries
            // again.
            tracing::warn!(error = %e, "could not extend the session's idle deadline");
            Some(session)
        }
    }
}

/// The answer to a request that needs a user and has none: a login for a browser
/// navigation, a 401 for an API call.
pub(crate) fn unauthenticated(
    inner: &Inner,
    method: &Method,
    headers: &HeaderMap,
    uri: &http::Uri,
) -> Response<Bytes> {
    let return_to = path_and_query(uri);
    unauthenticated_to(inner, method, headers, return_to)
}

pub(crate) fn unauthenticated_to(
    inner: &Inner,
    method: &Method,
    headers: &HeaderMap,
    return_to: &str,
) -> Response<Bytes> {
    if is_browser_navigation(method, headers)
        || inner.unauthenticated_api == UnauthenticatedApi::Redirect
    {
        return authorize::start(inner, headers, return_to);
    }
    let mut res = page::json(
        StatusCode::UNAUTHORIZED,
        &serde_json::json!({
            "error": "unauthenticated",
            "error_description": "sign in first",
            "login_url": inner.login_path,
        }),
    );
    let challenge = format!("Cookie realm=\"{}\"", inner.realm.replace(['"', '\\'], ""));
    if let Ok(v) = HeaderValue::from_str(&challenge) {
        res.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    res
}

fn path_and_query(uri: &http::Uri) -> &str {
    uri.path_and_query().map(|p| p.as_str()).unwrap_or("/")
}

/// `<login path>?return_to=<path>`, for "Try again" links.
pub(crate) fn login_href(inner: &Inner, return_to: &str) -> String {
    let encoded: String = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("return_to", return_to)
        .finish();
    format!("{}?{}", inner.login_path, encoded)
}

/// A top-level page load by a browser, which can follow a redirect to the provider;
/// anything else (fetch/XHR, JSON clients, non-GET) is an API call.
pub(crate) fn is_browser_navigation(method: &Method, headers: &HeaderMap) -> bool {
    if method != Method::GET && method != Method::HEAD {
        return false;
    }
    if headers.contains_key("x-requested-with") {
        return false;
    }
    if let Some(mode) = headers.get("sec-fetch-mode") {
        return mode == "navigate";
    }
    accepts_html(headers)
}

fn accepts_html(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("text/html"))
}

/// Whether an error should be JSON rather than a page.
pub(crate) fn wants_json(headers: &HeaderMap) -> bool {
    if headers.contains_key("x-requested-with") {
        return true;
    }
    let json = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/json") || v.contains("+json"));
    json && !accepts_html(headers)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            h.append(*n, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn classifies_navigation_and_api_calls() {
        let html = headers(&[("accept", "text/html,application/xhtml+xml,*/*;q=0.8")]);
        assert!(is_browser_navigation(&Method::GET, &html));
        assert!(is_browser_navigation(&Method::HEAD, &html));
        assert!(!is_browser_navigation(&Method::POST, &html));
        assert!(!is_browser_navigation(
            &Method::GET,
            &headers(&[("accept", "application/json")])
        ));
        assert!(!is_browser_navigation(
            &Method::GET,
            &headers(&[
                ("accept", "text/html"),
                ("x-requested-with", "XMLHttpRequest")
            ])
        ));
        assert!(!is_browser_navigation(
            &Method::GET,
            &headers(&[("accept", "text/html"), ("sec-fetch-mode", "cors")])
        ));
        assert!(is_browser_navigation(
            &Method::GET,
            &headers(&[("sec-fetch-mode", "navigate")])
        ));
        assert!(!is_browser_navigation(&Method::GET, &HeaderMap::new()));
    }

    #[test]
    fn json_errors_for_api_clients() {
        assert!(wants_json(&headers(&[("accept", "application/json")])));
        assert!(wants_json(&headers(&[("x-requested-with", "fetch")])));
        assert!(!wants_json(&headers(&[(
            "accept",
            "text/html, application/json"
        )])));
        assert!(!wants_json(&HeaderMap::new()));
    }
}
