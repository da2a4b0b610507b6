//! Which requests need a signed-in user, and what the others get.

use std::sync::Arc;

use super::LoginLayerBuilder;
use crate::context::{Access, PublicRoutes, UnauthenticatedApi};

/// The access settings as given; nothing in them can be wrong, so they need no checks.
pub(super) struct AccessSettings {
    pub(super) access: Access,
    pub(super) public: PublicRoutes,
    pub(super) unauthenticated_api: UnauthenticatedApi,
    pub(super) realm: String,
}

impl Default for AccessSettings {
    fn default() -> Self {
        Self {
            access: Access::LoginRequired,
            public: PublicRoutes::default(),
            unauthenticated_api: UnauthenticatedApi::Unauthorized,
            realm: "app".to_string(),
        }
    }
}

/// # Which requests need a login
///
/// By default every request needs a signed-in user except on the public paths; a page
/// load without one is sent to the login, an API call gets a 401.
///
/// ```
/// use tower_oauth2_login::{Access, LoginLayer, UnauthenticatedApi};
///
/// // Everything is public except what `LoginLayer::require_login` protects.
/// let open = LoginLayer::builder().with_default_access(Access::Public);
///
/// // Everything needs a login except the health check and the assets.
/// let closed = LoginLayer::builder()
///     .with_public_path("/healthz")
///     .with_public_prefix("/assets/")
///     .with_public_if(|method, _uri| method == http::Method::OPTIONS)
///     .with_unauthenticated_api(UnauthenticatedApi::Unauthorized)
///     .with_realm("my-app");
/// # let _ = (open, closed);
/// ```
impl LoginLayerBuilder {
    /// Whether requests outside the public paths need a signed-in user (the default) or
    /// all pass (to protect routes one by one with
    /// [`LoginLayer::require_login`](crate::LoginLayer::require_login)).
    pub fn with_default_access(mut self, access: Access) -> Self {
        self.access.access = access;
        self
    }

    /// A path that passes without a signed-in user (exact match).
    pub fn with_public_path(mut self, path: impl Into<String>) -> Self {
        self.access.public.exact.push(path.into());
        self
    }

    /// A path prefix under which requests pass without a signed-in user, e.g.
    /// `/assets/`.
    pub fn with_public_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.access.public.prefixes.push(prefix.into());
        self
    }

    /// Requests for which `f` returns true pass without a signed-in user.
    pub fn with_public_if<F>(mut self, f: F) -> Self
    where
        F: Fn(&http::Method, &http::Uri) -> bool + Send + Sync + 'static,
    {
        self.access.public.predicates.push(Arc::new(f));
        self
    }

    /// What an unauthenticated API request gets. Default: 401 with JSON.
    pub fn with_unauthenticated_api(mut self, answer: UnauthenticatedApi) -> Self {
        self.access.unauthenticated_api = answer;
        self
    }

    /// The realm of the `WWW-Authenticate` challenge of 401 answers. Default `app`.
    pub fn with_realm(mut self, realm: impl Into<String>) -> Self {
        self.access.realm = realm.into();
        self
    }
}
