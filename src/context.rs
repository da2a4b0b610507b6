//! The context every step of a request shares: the provider, the cookies, the session
//! store, the layer's paths and the session policy. Built once by the builder
//! ([`LoginLayerBuilder::build`](crate::LoginLayerBuilder::build)), held in an `Arc` by the
//! layer, its services and the `AuthUser` of each request, and read-only afterwards.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::http::cookie::CookieConfig;
use crate::provider::Provider;
use crate::session::flights::Flights;
use crate::session::SessionStore;

/// Whether requests that match no public path need a signed-in user.
///
/// # Example
///
/// ```
/// use tower_oauth2_login::{Access, LoginLayer};
///
/// // Every route is open; protect the private ones with `LoginLayer::require_login`.
/// let builder = LoginLayer::builder().with_default_access(Access::Public);
/// # let _ = builder;
/// assert_eq!(Access::default(), Access::LoginRequired);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Access {
    /// Every request needs a signed-in user unless its path is public (the default).
    #[default]
    LoginRequired,
    /// Every request passes; the user is available when there is one, and routes are
    /// protected one by one with [`LoginLayer::require_login`](crate::LoginLayer::require_login).
    Public,
}

/// What an unauthenticated API request (not a browser navigation) gets.
///
/// # Example
///
/// ```
/// use tower_oauth2_login::{LoginLayer, UnauthenticatedApi};
///
/// // A single-page app whose fetches should follow the login redirect themselves.
/// let builder = LoginLayer::builder().with_unauthenticated_api(UnauthenticatedApi::Redirect);
/// # let _ = builder;
/// assert_eq!(UnauthenticatedApi::default(), UnauthenticatedApi::Unauthorized);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UnauthenticatedApi {
    /// `401 Unauthorized` with `WWW-Authenticate` and a small JSON body (the default).
    #[default]
    Unauthorized,
    /// A redirect to the login, like a browser navigation.
    Redirect,
}

pub(crate) type PublicPredicate = Arc<dyn Fn(&http::Method, &http::Uri) -> bool + Send + Sync>;

/// Which requests pass without a signed-in user.
#[derive(Clone, Default)]
pub(crate) struct PublicRoutes {
    pub(crate) exact: Vec<String>,
    pub(crate) prefixes: Vec<String>,
    pub(crate) predicates: Vec<PublicPredicate>,
}

impl PublicRoutes {
    pub(crate) fn matches(&self, method: &http::Method, uri: &http::Uri) -> bool {
        let path = uri.path();
        self.exact.iter().any(|p| p == path)
            || self.prefixes.iter().any(|p| path.starts_with(p.as_str()))
            || self.predicates.iter().any(|f| f(method, uri))
    }
}

/// Everything the layer needs, built once and shared by all requests.
pub(crate) struct Context {
    pub(crate) provider: Provider,
    pub(crate) store: Arc<dyn SessionStore>,
    pub(crate) cookies: CookieConfig,
    pub(crate) callback_path: String,
    pub(crate) login_path: String,
    pub(crate) logout_path: String,
    /// Whether the layer answers `GET` on the logout path with its confirmation page.
    pub(crate) logout_page: bool,
    pub(crate) logout_callback_path: String,
    pub(crate) backchannel_logout_path: Option<String>,
    pub(crate) post_logout_redirect: String,
    /// The absolute URL of the logout callback path, for `post_logout_redirect_uri`.
    pub(crate) post_logout_redirect_uri: String,
    /// `scheme://host[:port]` of the app, from the redirect URL, for the logout origin check.
    pub(crate) app_origin: String,
    pub(crate) access: Access,
    pub(crate) public: PublicRoutes,
    pub(crate) unauthenticated_api: UnauthenticatedApi,
    pub(crate) realm: String,
    pub(crate) idle_timeout: Duration,
    pub(crate) absolute_lifetime: Duration,
    pub(crate) pending_lifetime: Duration,
    pub(crate) refresh_skew: Duration,
    pub(crate) refresh_flights: Flights,
    /// How long a refresh lock lives in a shared store: longer than a refresh can take.
    pub(crate) refresh_lock_ttl: Duration,
}

impl fmt::Debug for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // No secret: the client secret and the cookie key are left out.
        f.debug_struct("LoginConfig")
            .field("client_id", self.provider.oauth.client_id())
            .field("callback_path", &self.callback_path)
            .field("login_path", &self.login_path)
            .field("logout_path", &self.logout_path)
            .field("issuer", &self.provider.issuer)
            .field("scopes", &self.provider.scopes)
            .finish_non_exhaustive()
    }
}
