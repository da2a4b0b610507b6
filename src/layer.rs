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
use crate::session::{now_secs, Session, SessionId, SessionKey};
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

    /// The configuration, for the fuzzing entry points.
    #[cfg(any(test, feature = "fuzzing"))]
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

/// The future of [`LoginService`].
pub type ResponseFuture<B, E> = Pin<Box<dyn Future<Output = Result<Response<B>, E>> + Send>>;

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
    type Future = ResponseFuture<ResBody, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        // The clone that was driven to readiness serves this request (tower's usual swap).
        let clone = self.inner.clone();
        let mut service = std::mem::replace(&mut self.inner, clone);
        let shared = Arc::clone(&self.shared);

        Box::pin(async move {
            let inner = &*shared;
            let path = req.uri().path();
            if path == inner.callback_path {
                let query = req.uri().query().unwrap_or("");
                return Ok(own(handle_callback(
                    inner,
                    req.method(),
                    req.headers(),
                    query,
                )
                .await));
            }
            if path == inner.login_path {
                return Ok(own(handle_login(
                    inner,
                    req.method(),
                    req.headers(),
                    req.uri(),
                )));
            }
            if path == inner.logout_path && req.method() == Method::POST {
                return Ok(own(logout::handle(&shared, req.headers()).await));
            }
            if path == inner.logout_callback_path && req.method() == Method::GET {
                let query = req.uri().query().unwrap_or("");
                return Ok(own(logout::finish(inner, req.headers(), query)));
            }
            if inner.oidc.is_some() && inner.backchannel_logout_path.as_deref() == Some(path) {
                if req.method() != Method::POST {
                    return Ok(own(FlowError::MethodNotAllowed("POST").response(true, None)));
                }
                let (parts, body) = req.into_parts();
                return Ok(own(logout::backchannel(inner, &parts.headers, body).await));
            }

            match lookup(inner, req.headers()).await {
                Lookup::Found(session) => {
                    req.extensions_mut().insert(AuthUser::new(session));
                    service.call(req).await
                }
                Lookup::StoreDown => {
                    // Fail closed: never serve a request as anonymous because the store
                    // could not say who it is.
                    let wants_json = wants_json(req.headers());
                    Ok(own(FlowError::Store.response(wants_json, None)))
                }
                Lookup::ProviderDown => {
                    // Fail closed too: the token has expired, and serving the request
                    // with it (or without a user) would be wrong; the session lives on.
                    let wants_json = wants_json(req.headers());
                    Ok(own(FlowError::RefreshUnavailable.response(wants_json, None)))
                }
                Lookup::None { stale } => {
                    let public = inner.access == Access::Public
                        || inner.public.matches(req.method(), req.uri());
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
        })
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

/// The hot path: one cookie scan, one hash, one store read.
async fn lookup(inner: &Inner, headers: &HeaderMap) -> Lookup {
    let Some(value) = cookie::find(headers, &inner.cookies.session_name).next() else {
        return Lookup::None { stale: false };
    };
    let Some(id) = SessionId::parse(value) else {
        return Lookup::None { stale: true };
    };
    let key = id.key();
    match inner.store.load(&key).await {
        Ok(Some(session)) => {
            let now = now_secs();
            if session.is_expired(now) {
                if let Err(e) = inner.store.delete(&key).await {
                    tracing::warn!(error = %e, "could not delete an expired session");
                }
                return Lookup::None { stale: true };
            }
            let Some(session) = slide_idle_deadline(inner, &key, session, now).await else {
                return Lookup::None { stale: true };
            };
            if !refresh::needs_refresh(&session, inner.refresh_skew, now) {
                return Lookup::Found(session);
            }
            match refresh::refresh(inner, &key, session).await {
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

async fn slide_idle_deadline(
    inner: &Inner,
    key: &SessionKey,
    session: Arc<Session>,
    now: u64,
) -> Option<Arc<Session>> {
    let wanted = now
        .saturating_add(inner.idle_timeout.as_secs())
        .min(session.absolute_expires_at);
    if wanted.saturating_sub(session.expires_at) < TOUCH_INTERVAL_SECS {
        return Some(session);
    }
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
