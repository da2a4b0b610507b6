//! Configuration: the builder, its groups of settings, and what it checks before the first
//! request.
//!
//! Each group of settings is a file with its `with_*` methods and its checks:
//! [`provider`] (the client, the endpoints, OpenID Connect, the back channel),
//! [`discovery`], [`paths`] (where the layer answers), [`access`] (which requests need a
//! login) and [`session`] (store, lifetimes, cookie key). [`LoginLayerBuilder::build`]
//! first gathers every missing required setting into one [`ConfigError::Missing`], then
//! checks and builds each group, and assembles the [`Context`] the steps share.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::context::Context;
use crate::error::ConfigError;
use crate::http::cookie::CookieConfig;
use crate::service::registration::Registration;
use crate::service::LoginLayer;

mod access;
mod check;
mod discovery;
mod paths;
mod provider;
mod session;

use access::AccessSettings;
use check::Missing;
use paths::PathSettings;
use provider::{HttpSettings, ProviderSettings};
use session::SessionSettings;

impl LoginLayer {
    /// Starts the configuration.
    pub fn builder() -> LoginLayerBuilder {
        LoginLayerBuilder::default()
    }
}

/// Builds a [`LoginLayer`]. Start with [`LoginLayer::builder`].
///
/// Required: [`with_client_id`](Self::with_client_id),
/// [`with_redirect_url`](Self::with_redirect_url), and the provider's endpoints, either
/// from [`discover`](Self::discover) or set one by one
/// ([`with_authorization_endpoint`](Self::with_authorization_endpoint),
/// [`with_token_endpoint`](Self::with_token_endpoint), and
/// [`with_userinfo_endpoint`](Self::with_userinfo_endpoint) without OpenID Connect).
/// Everything else has a safe default. [`build`](Self::build) checks it all and returns a
/// [`ConfigError`] rather than failing at the first request; the missing required settings
/// are named all at once.
///
/// The order of the calls does not matter: a setting made explicitly wins over what
/// discovery found, whichever came first.
///
/// ```
/// # fn main() -> Result<(), tower_oauth2_login::ConfigError> {
/// use tower_oauth2_login::LoginLayer;
///
/// let layer = LoginLayer::builder()
///     .with_client_id("my-app")
///     .with_client_secret("s3cret")
///     .with_authorization_endpoint("https://idp.example/authorize")
///     .with_token_endpoint("https://idp.example/token")
///     .with_userinfo_endpoint("https://idp.example/userinfo")
///     .with_redirect_url("https://app.example/auth/callback")
///     .build()?;
///
/// // One call tells everything that is missing.
/// let err = LoginLayer::builder().build().unwrap_err();
/// assert_eq!(
///     err.to_string(),
///     "missing required settings: client id, authorization endpoint, token endpoint, \
///      userinfo endpoint, redirect URL"
/// );
/// # let _ = layer; Ok(()) }
/// ```
#[must_use]
#[derive(Default)]
pub struct LoginLayerBuilder {
    provider: ProviderSettings,
    http: HttpSettings,
    paths: PathSettings,
    access: AccessSettings,
    session: SessionSettings,
}

impl fmt::Debug for LoginLayerBuilder {
    // Names the client and where it answers; never the secret or the cookie key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoginLayerBuilder")
            .field("client_id", &self.provider.client_id)
            .field("discovered", &self.provider.discovered.is_some())
            .finish_non_exhaustive()
    }
}

impl LoginLayerBuilder {
    /// Checks the configuration and builds the layer.
    ///
    /// Fails with [`ConfigError::Missing`] naming every required setting that is missing,
    /// or with the first other mistake found.
    pub fn build(self) -> Result<LoginLayer, ConfigError> {
        let provider = self.provider.resolve()?;
        let mut missing = Missing::default();
        provider.require(&mut missing);
        self.paths.require(&mut missing);
        missing.into_result()?;

        let paths = self.paths.build()?;
        let http = self.http.build()?;
        let refresh_lock_ttl = self.http.timeout + Duration::from_secs(5);
        let provider = provider.build(paths.redirect.clone(), http)?;
        let sessions = self.session.build()?;
        let cookies = CookieConfig::new(
            paths.secure,
            &paths.callback,
            &paths.logout_callback,
            sessions.key,
            sessions.pending_lifetime,
            sessions.absolute_lifetime,
        );

        let context = Context {
            provider,
            store: sessions.store,
            cookies,
            callback_path: paths.callback,
            login_path: paths.login,
            logout_path: paths.logout,
            logout_page: paths.logout_page,
            logout_callback_path: paths.logout_callback,
            backchannel_logout_path: Some(paths.backchannel_logout),
            post_logout_redirect: paths.post_logout_redirect,
            post_logout_redirect_uri: paths.post_logout_redirect_uri,
            app_origin: paths.app_origin,
            access: self.access.access,
            public: self.access.public,
            unauthenticated_api: self.access.unauthenticated_api,
            realm: self.access.realm,
            idle_timeout: sessions.idle_timeout,
            absolute_lifetime: sessions.absolute_lifetime,
            pending_lifetime: sessions.pending_lifetime,
            refresh_skew: sessions.refresh_skew,
            refresh_flights: Default::default(),
            refresh_lock_ttl,
        };
        // Once, at start-up: a URL the provider does not know is the most common reason a
        // first sign-in or sign-out ends on the provider's error page.
        tracing::info!(
            client_id = %context.provider.oauth.client_id().as_str(),
            "register these URLs for this client at the provider:\n{}",
            Registration::of(&context)
        );
        Ok(LoginLayer::from_inner(Arc::new(context)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::oidc::Metadata;

    const ISSUER: &str = "https://idp.example";

    fn metadata(iss_supported: bool) -> Metadata {
        let document = serde_json::json!({
            "issuer": ISSUER,
            "authorization_endpoint": "https://idp.example/authorize",
            "token_endpoint": "https://idp.example/token",
            "userinfo_endpoint": "https://idp.example/userinfo",
            "jwks_uri": "https://idp.example/jwks",
            "end_session_endpoint": "https://idp.example/logout",
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "authorization_response_iss_parameter_supported": iss_supported,
        });
        serde_json::from_value(document).expect("a valid discovery document")
    }

    fn base() -> LoginLayerBuilder {
        LoginLayer::builder()
            .with_client_id("app")
            .with_redirect_url("https://app.example/auth/callback")
            .with_cookie_key([3u8; 64])
    }

    fn discovered(builder: LoginLayerBuilder, iss_supported: bool) -> LoginLayerBuilder {
        builder
            .apply_metadata(ISSUER.to_string(), &metadata(iss_supported))
            .expect("metadata accepted")
    }

    #[tokio::test]
    async fn an_explicit_setting_wins_over_discovery_before_or_after_it() {
        let before = discovered(
            base()
                .with_token_endpoint("https://idp.example/other-token")
                .with_iss_parameter_required(false),
            true,
        );
        let after = discovered(base(), true)
            .with_token_endpoint("https://idp.example/other-token")
            .with_iss_parameter_required(false);
        for builder in [before, after] {
            let layer = builder.build().expect("builds");
            let provider = &layer.shared().provider;
            assert_eq!(
                provider.oauth.token_uri().url().as_str(),
                "https://idp.example/other-token"
            );
            assert!(!provider.require_iss);
            // What was not set explicitly comes from discovery.
            assert_eq!(
                provider.oauth.auth_uri().url().as_str(),
                "https://idp.example/authorize"
            );
            assert_eq!(provider.issuer.as_deref(), Some(ISSUER));
            assert!(provider.oidc.is_some());
        }
        let discovered_only = discovered(base(), true).build().expect("builds");
        assert!(discovered_only.shared().provider.require_iss);
    }

    #[tokio::test]
    async fn an_explicit_issuer_must_be_the_discovered_one() {
        let err = discovered(base().with_issuer("https://elsewhere.example"), false)
            .build()
            .unwrap_err();
        assert!(
            matches!(err, ConfigError::Conflict { field: "issuer" }),
            "{err:?}"
        );
        assert!(discovered(base().with_issuer(ISSUER), false)
            .build()
            .is_ok());
    }

    #[tokio::test]
    async fn the_urls_to_register_follow_the_configuration() {
        let oidc = discovered(base(), false).build().expect("builds");
        let urls = oidc.registration();
        assert_eq!(urls.redirect_uri(), "https://app.example/auth/callback");
        assert_eq!(
            urls.post_logout_redirect_uri(),
            Some("https://app.example/auth/logout-callback")
        );
        assert_eq!(
            urls.backchannel_logout_uri(),
            Some("https://app.example/auth/backchannel-logout")
        );

        // Plain OAuth 2.0: no logout at the provider, no logout tokens.
        let oauth = base()
            .with_authorization_endpoint("https://gh.example/authorize")
            .with_token_endpoint("https://gh.example/token")
            .with_userinfo_endpoint("https://gh.example/user")
            .with_logout_callback_path("/bye")
            .build()
            .expect("builds");
        let urls = oauth.registration();
        assert_eq!(urls.redirect_uri(), "https://app.example/auth/callback");
        assert_eq!(urls.post_logout_redirect_uri(), None);
        assert_eq!(urls.backchannel_logout_uri(), None);
        assert_eq!(
            urls.to_string(),
            "redirect URI: https://app.example/auth/callback"
        );
    }

    #[tokio::test]
    async fn every_missing_required_setting_is_named_at_once() {
        let err = LoginLayer::builder()
            .with_jwks_uri("https://idp.example/jwks")
            .with_id_token_signing_algs(Vec::<String>::new())
            .build()
            .unwrap_err();
        let ConfigError::Missing { settings } = err else {
            panic!("expected Missing, got {err:?}");
        };
        assert_eq!(
            settings,
            [
                "client id",
                "authorization endpoint",
                "token endpoint",
                "issuer (needed for OpenID Connect)",
                "ID token signing algorithm",
                "redirect URL",
            ]
        );
    }
}
