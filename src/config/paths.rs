//! Where the layer answers: the redirect URL and the layer's own paths beside it.

use url::Url;

use super::check::{check_path, endpoint, required, Missing};
use super::LoginLayerBuilder;
use crate::error::ConfigError;
use crate::flow::return_to::safe_return_to;

/// The path settings as given.
pub(super) struct PathSettings {
    redirect_url: Option<String>,
    login_path: Option<String>,
    logout_path: Option<String>,
    logout_page: bool,
    logout_callback_path: Option<String>,
    backchannel_logout_path: Option<String>,
    post_logout_redirect: String,
}

impl Default for PathSettings {
    fn default() -> Self {
        Self {
            redirect_url: None,
            login_path: None,
            logout_path: None,
            logout_page: true,
            logout_callback_path: None,
            backchannel_logout_path: None,
            post_logout_redirect: "/".to_string(),
        }
    }
}

/// The checked paths, and what the redirect URL says of the application.
pub(super) struct Paths {
    pub(super) redirect: Url,
    /// The redirect URL is https: cookies are `Secure` and take the `__Host-` prefix.
    pub(super) secure: bool,
    pub(super) app_origin: String,
    pub(super) callback: String,
    pub(super) login: String,
    pub(super) logout: String,
    pub(super) logout_page: bool,
    pub(super) logout_callback: String,
    pub(super) backchannel_logout: String,
    pub(super) post_logout_redirect: String,
    pub(super) post_logout_redirect_uri: String,
}

impl PathSettings {
    /// Notes the required path settings that are missing.
    pub(super) fn require(&self, missing: &mut Missing) {
        missing.require(self.redirect_url.is_some(), "redirect URL");
    }

    /// Checks the paths: each absolute and in the form a browser sends it, all different;
    /// the defaults sit beside the callback path.
    pub(super) fn build(self) -> Result<Paths, ConfigError> {
        let redirect = endpoint(
            &required(self.redirect_url, "redirect URL")?,
            "redirect URL",
        )?;
        if redirect.fragment().is_some() {
            return Err(ConfigError::InvalidUrl {
                field: "redirect URL",
                reason: "must not have a fragment".into(),
            });
        }
        let secure = redirect.scheme() == "https";
        let app_origin = redirect.origin().ascii_serialization();
        let callback = redirect.path().to_string();
        let parent = callback.rsplit_once('/').map(|(dir, _)| dir).unwrap_or("");
        let beside =
            |given: Option<String>, name: &str| given.unwrap_or_else(|| format!("{parent}/{name}"));
        let login = beside(self.login_path, "login");
        let logout = beside(self.logout_path, "logout");
        let logout_callback = beside(self.logout_callback_path, "logout-callback");
        let backchannel_logout = beside(self.backchannel_logout_path, "backchannel-logout");
        let all = [
            ("callback path", &callback),
            ("login path", &login),
            ("logout path", &logout),
            ("logout callback path", &logout_callback),
            ("back-channel logout path", &backchannel_logout),
        ];
        for (i, (field, path)) in all.iter().enumerate() {
            check_path(field, path)?;
            if all[..i].iter().any(|(_, other)| other == path) {
                return Err(ConfigError::InvalidPath {
                    field,
                    reason: "must differ from the layer's other paths".into(),
                });
            }
        }
        let post_logout_redirect_uri = format!("{app_origin}{logout_callback}");
        // Kept as the browser resolves it, like a login's return path: `/.//x` passes a
        // check of the path as given and lands on `//x`.
        let Some(post_logout_redirect) = safe_return_to(&self.post_logout_redirect) else {
            return Err(ConfigError::InvalidPath {
                field: "post-logout redirect",
                reason: "must be a same-origin path starting with a single / that does not \
                         resolve to //"
                    .into(),
            });
        };
        Ok(Paths {
            redirect,
            secure,
            app_origin,
            callback,
            login,
            logout,
            logout_page: self.logout_page,
            logout_callback,
            backchannel_logout,
            post_logout_redirect,
            post_logout_redirect_uri,
        })
    }
}

/// # Where the layer answers
///
/// The redirect URL registered with the provider decides the rest: the layer answers its
/// path (the callback) itself, and its other paths default to siblings of it
/// (`/auth/login`, `/auth/logout`, `/auth/logout-callback`, `/auth/backchannel-logout` for
/// `/auth/callback`).
///
/// ```
/// let builder = tower_oauth2_login::LoginLayer::builder()
///     .with_redirect_url("https://app.example/sso/return")
///     .with_login_path("/sign-in")
///     .with_logout_path("/sign-out")
///     .with_post_logout_redirect("/goodbye");
/// # let _ = builder;
/// ```
impl LoginLayerBuilder {
    /// The absolute redirect URL registered with the provider, e.g.
    /// `https://app.example/auth/callback`. Required. The layer answers its path itself,
    /// and cookies are `Secure` (with the `__Host-` prefix) when it is https.
    pub fn with_redirect_url(mut self, url: impl Into<String>) -> Self {
        self.paths.redirect_url = Some(url.into());
        self
    }

    /// The path that starts a login: `GET <path>?return_to=/somewhere`. Defaults to
    /// `login` beside the callback path (`/auth/login` for `/auth/callback`).
    pub fn with_login_path(mut self, path: impl Into<String>) -> Self {
        self.paths.login_path = Some(path.into());
        self
    }

    /// The path that signs out on `POST`. Defaults to `logout` beside the callback path.
    /// A `GET` to it shows a page with a "Sign out" button that sends the `POST`, so that
    /// a plain link to it works (see [`with_logout_page`](Self::with_logout_page)).
    pub fn with_logout_path(mut self, path: impl Into<String>) -> Self {
        self.paths.logout_path = Some(path.into());
        self
    }

    /// Whether the layer answers `GET` on the logout path with its confirmation page (the
    /// default), or passes it to your app, which then shows its own page with a form
    /// that `POST`s to the logout path:
    ///
    /// ```html
    /// <form method="post" action="/auth/logout"><button>Sign out</button></form>
    /// ```
    pub fn with_logout_page(mut self, layer_page: bool) -> Self {
        self.paths.logout_page = layer_page;
        self
    }

    /// The path the provider sends the browser back to after RP-initiated logout
    /// (register `<origin><path>` as a post-logout redirect URI). Defaults to
    /// `logout-callback` beside the callback path.
    pub fn with_logout_callback_path(mut self, path: impl Into<String>) -> Self {
        self.paths.logout_callback_path = Some(path.into());
        self
    }

    /// The path the provider POSTs back-channel logout tokens to (register
    /// `<origin><path>` as the client's `backchannel_logout_uri`). Defaults to
    /// `backchannel-logout` beside the callback path; answered only for OpenID Connect.
    pub fn with_backchannel_logout_path(mut self, path: impl Into<String>) -> Self {
        self.paths.backchannel_logout_path = Some(path.into());
        self
    }

    /// Where the browser goes after signing out (a same-origin path). Default `/`. Kept in
    /// the form a browser resolves it to (`/a/../b` is `/b`); [`build`](Self::build) fails
    /// with a path that is not same-origin or resolves to one starting with `//`.
    pub fn with_post_logout_redirect(mut self, path: impl Into<String>) -> Self {
        self.paths.post_logout_redirect = path.into();
        self
    }
}
